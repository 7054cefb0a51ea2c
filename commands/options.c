/* options: the table of lootlog's options and what reads it (the parser, the help
 * texts, the Markdown table of the operations guide). To add an option, add a row and a
 * field of cli_options; nothing else lists options. */
#include "commands/options.h"
#include "commands/commands.h"

#include "state/fold.h"
#include "kafka/replay.h"
#include "state/store.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#ifndef LOOTLOG_VERSION
#define LOOTLOG_VERSION "0.0.0"
#endif

#define STRINGIFY(x) #x
#define NUMBER_TEXT(x) STRINGIFY(x)
#define ALL_VERBS (CLI_SERVE | CLI_TOPIC | CLI_REPLAY | CLI_MIGRATE | CLI_SNAPSHOT | CLI_RESTORE | CLI_GEN)
#define KAFKA_VERBS (CLI_SERVE | CLI_TOPIC | CLI_REPLAY | CLI_GEN)
#define HELP_WIDTH 92

typedef enum {
    KIND_STRING,   /* const char * */
    KIND_INT,      /* int, min..max */
    KIND_INT64,    /* int64_t, min..max */
    KIND_NUMBER,   /* double, > 0 and <= max */
    KIND_SWITCH,   /* int, 1 when given; no value */
    KIND_RANGE,    /* int[2]: "A-B" or "N" (partition numbers) */
    KIND_TIME,     /* int64_t ms since the epoch, from ISO 8601 */
    KIND_CHOICE,   /* int: the index of the value in choices */
    KIND_KAFKA,    /* -X key=value, repeatable, into kafka_props */
} option_kind;

typedef struct {
    const char *flag;      /* --flag; for -X the letter; NULL: environment only */
    const char *env;       /* NULL: LOOTLOG_<FLAG>; "": none */
    const char *metavar;   /* the value's name in help; NULL for a switch */
    option_kind kind;
    size_t offset;         /* of the field in cli_options */
    const char *default_value; /* parsed like a given value (not range-checked); NULL: unset */
    const char *default_doc;   /* what help and docs show as the default, when not the value */
    long long min, max;
    const char *choices;   /* KIND_CHOICE: "a|b|c" */
    unsigned verbs;
    const char *help;
} option_row;

#define AT(field) offsetof(cli_options, field)

static const option_row option_table[] = {
    {"http", NULL, "ADDR", KIND_STRING, AT(http), "127.0.0.1:8080", NULL, 0, 0, NULL,
     CLI_SERVE | CLI_GEN | CLI_REPLAY,
     "serve: where the HTTP API listens (HOST:PORT); gen: the API to send to (unless only "
     "`--brokers` is given); replay `--swap`: the serve to hand the rebuilt folder to"},
    {"brokers", NULL, "LIST", KIND_STRING, AT(brokers), "127.0.0.1:9092", NULL, 0, 0, NULL,
     KAFKA_VERBS, "Kafka bootstrap servers; gen given only `--brokers` produces straight to Kafka"},
    {"topic", NULL, "NAME", KIND_STRING, AT(topic), "events", NULL, 0, 0, NULL,
     CLI_SERVE | CLI_TOPIC | CLI_REPLAY | CLI_SNAPSHOT | CLI_RESTORE | CLI_GEN,
     "the event topic (`lootlog topic ensure` creates it); restore: the topic whose snapshot "
     "to take"},
    {"db", NULL, "DIR", KIND_STRING, AT(db), "lootlog-state", NULL, 0, 0, NULL,
     CLI_SERVE | CLI_TOPIC | CLI_REPLAY | CLI_MIGRATE | CLI_SNAPSHOT | CLI_RESTORE,
     "the state folder: one SQLite store per partition, `p<N>.db` (WAL; `-wal`/`-shm` beside "
     "each); replay and restore: a new folder; migrate: also one store file"},
    {"catalog", NULL, "FILE", KIND_STRING, AT(catalog_path), NULL, "built in (`data/catalog.json`)",
     0, 0, NULL, CLI_SERVE | CLI_SNAPSHOT | CLI_GEN, "the item catalog (gen: the item types it sends)"},
    {"partitions", NULL, "A-B", KIND_RANGE, AT(partition_first), NULL, "all", 0,
     STORE_MAX_PARTITIONS - 1, NULL, CLI_SERVE | CLI_RESTORE,
     "restore: the snapshot of exactly these partitions (a shard's); serve: a shard: folds only those partitions (and keeps only their stores); reads for players "
     "of other partitions answer 421 `wrong_shard` with the owning `partition` (Kafka murmur2 "
     "of the user id)"},
    {"partitions", "LOOTLOG_TOPIC_PARTITIONS", "N", KIND_INT, AT(topic_partitions), "0",
     "the stores in `--db`, else 6", 1, STORE_MAX_PARTITIONS, NULL, CLI_TOPIC,
     "partitions of the topic to create, or that an existing topic must have; refused when "
     "it differs from the topic's or from the stores in `--db` (at most "
     NUMBER_TEXT(STORE_MAX_PARTITIONS) ")"},
    {"replication", "LOOTLOG_TOPIC_REPLICATION", "R", KIND_INT, AT(topic_replication), "-1",
     "the broker's default", 1, 32767, NULL, CLI_TOPIC,
     "replication factor of a topic to create (an existing topic is left as it is)"},
    {"group", NULL, "NAME", KIND_STRING, AT(group), NULL, "none", 0, 0, NULL, CLI_SERVE,
     "join the Kafka consumer group NAME (cooperative-sticky): the group assigns this node "
     "its partitions, a newly assigned one is restored from the newest HDFS snapshot holding "
     "it when there is no local store, and reads of other partitions go to their owner "
     "(exclusive with `--partitions`)"},
    {"advertise", NULL, "ADDR", KIND_STRING, AT(advertise), NULL, "the `--http` address", 0, 0,
     NULL, CLI_SERVE,
     "with `--group`: the HOST:PORT other nodes reach this node's HTTP API on (carried in "
     "its Kafka client id)"},
    {"no-forward", NULL, NULL, KIND_SWITCH, AT(no_forward), NULL, NULL, 0, 0, NULL, CLI_SERVE,
     "with `--group`: answer reads of partitions owned elsewhere 421 `wrong_node` with the "
     "owner's address instead of forwarding them"},
    {"no-fold", NULL, NULL, KIND_SWITCH, AT(no_fold), NULL, NULL, 0, 0, NULL, CLI_SERVE,
     "write-only front end: no fold; reads answer 421"},
    {"no-http", NULL, NULL, KIND_SWITCH, AT(no_http), NULL, NULL, 0, 0, NULL, CLI_SERVE,
     "fold only: no HTTP listener"},
    {"guild-capacity", NULL, "N", KIND_INT64, AT(guild_capacity),
     NUMBER_TEXT(FOLD_DEFAULT_GUILD_CAPACITY), NULL, 1, 1000000000, NULL, CLI_SERVE | CLI_REPLAY,
     "members per guild (see Known limits below)"},
    {"request-timeout-ms", NULL, "MS", KIND_INT, AT(delivery_timeout_ms), "5000", NULL, 100,
     600000, NULL, CLI_SERVE, "how long Kafka may take before a write gets 503"},
    {"wait-ms", NULL, "MS", KIND_INT, AT(wait_ms), "2000", NULL, 1, 30000, NULL, CLI_SERVE,
     "default bound for `?after=` and `?wait=applied`"},
    {"ready-max-lag", NULL, "N", KIND_INT64, AT(ready_max_lag), "10000", NULL, 0, 1LL << 40, NULL,
     CLI_SERVE,
     "`/readyz` fails while the fold is more records behind (summed over partitions); 0: "
     "ready only when it has caught up"},
    {"batch-events", NULL, "N", KIND_INT, AT(batch_events), "20000", NULL, 1, 1000000, NULL,
     CLI_SERVE | CLI_REPLAY, "records in one partition's fold transaction at most"},
    {"batch-ms", NULL, "MS", KIND_INT, AT(batch_ms), "20", NULL, 1, 60000, NULL, CLI_SERVE,
     "how long one partition's fold transaction may stay open while the partition keeps up; "
     "one more than 10,000 records behind batches for up to 250 ms or 2,000 players"},
    {"fold-threads", NULL, "N", KIND_INT, AT(fold_threads), "0", "one per partition (at most 32)",
     0, STORE_MAX_PARTITIONS, NULL, CLI_SERVE | CLI_REPLAY,
     "fold threads (never more than the partitions folded); 0: one per partition"},
    {"prune-memory-mib", NULL, "MIB", KIND_INT, AT(prune_memory_mib), "256", NULL, 0, 1 << 20,
     NULL, CLI_REPLAY,
     "memory for the guild-side events the fold notes to prune the outboxes at its end; "
     "past it, the prune reads the new stores after the fold instead (slower)"},
    {"fold-nice", NULL, "N", KIND_INT, AT(fold_nice), "19", NULL, 0, 19, NULL, CLI_SERVE,
     "niceness of serve's fold threads while a partition catches up a backlog: at 19 the "
     "HTTP loop's reads go first on a busy machine; where producers or other work share "
     "the cores, a lower value trades read latency for fold lag (docs/benchmarks.md)"},
    {"fold-live-nice", NULL, "N", KIND_INT, AT(fold_live_nice), "10", NULL, 0, 19, NULL,
     CLI_SERVE,
     "niceness of a fold thread while its partitions keep up with the log; `--fold-nice` "
     "holds while one is more than 10,000 records behind. At 10 a write shows in reads "
     "within milliseconds on a busy machine (docs/benchmarks.md)"},
    {"max-connections", NULL, "N", KIND_INT, AT(max_connections), "1000", NULL, 1, 1000000, NULL,
     CLI_SERVE, "open HTTP connections at most; beyond, 503 `too_many_connections` and close"},
    {"max-parked", NULL, "N", KIND_INT, AT(max_parked), "10000", NULL, 1, 10000000, NULL,
     CLI_SERVE,
     "requests waiting for the fold (`?after=`, `?wait=applied`) at most; beyond, 503 "
     "`too_many_waiting` with Retry-After"},
    {"read-timeout-ms", NULL, "MS", KIND_INT, AT(read_timeout_ms), "5000", NULL, 100, 600000,
     NULL, CLI_SERVE,
     "a complete request must arrive within this of its first byte, else 408 and close"},
    {"snapshot-url", NULL, "URL", KIND_STRING, AT(snapshot_url), NULL, "none", 0, 0, NULL,
     CLI_SERVE | CLI_SNAPSHOT | CLI_RESTORE,
     "`webhdfs://HOST:PORT/ROOT`: where snapshots are kept (serve: enables them)"},
    {"snapshot-interval", NULL, "SEC", KIND_INT, AT(snapshot_interval_s), "0", NULL, 0,
     86400 * 365, NULL, CLI_SERVE, "seconds between periodic snapshots (0: on demand only)"},
    {"retain", NULL, "K", KIND_INT, AT(retain), "5", NULL, 1, 100000, NULL,
     CLI_SERVE | CLI_SNAPSHOT,
     "snapshots kept on HDFS, per partition: an older one goes once each partition it holds "
     "is in K newer ones"},
    {"admin-token-file", NULL, "FILE", KIND_STRING, AT(admin_token_file), NULL, NULL, 0, 0, NULL,
     CLI_SERVE | CLI_REPLAY,
     "file whose first line is the admin bearer token (`LOOTLOG_ADMIN_TOKEN` wins)"},
    {NULL, "LOOTLOG_ADMIN_TOKEN", NULL, KIND_STRING, AT(admin_token), NULL, NULL, 0, 0, NULL,
     CLI_SERVE | CLI_REPLAY,
     "the admin bearer token (environment only, so it never shows in a process list); "
     "serve: enables the admin routes; replay: for `--swap`"},
    {"log-format", NULL, "text|json", KIND_CHOICE, AT(log_format), "text", NULL, 0, 0,
     "text|json", ALL_VERBS,
     "log lines on stderr: text, or one JSON object per line (`ts`, `level`, `module`, `msg`, "
     "and fields such as `partition`, `offset`)"},
    {"access-log", NULL, NULL, KIND_SWITCH, AT(access_log), NULL, NULL, 0, 0, NULL, CLI_SERVE,
     "log a line per HTTP request: method, path (query parameter names only), status, "
     "duration"},
    {"from-offset", NULL, "N", KIND_INT64, AT(from_offset), "-1", "the log's start", 0, INT64_MAX,
     NULL, CLI_REPLAY, "fold each partition from this offset"},
    {"until-offset", NULL, "N", KIND_INT64, AT(until_offset), "-1", "the log's end at the start",
     0, INT64_MAX, NULL, CLI_REPLAY, "stop each partition before this offset"},
    {"from-time", NULL, "ISO", KIND_TIME, AT(from_time_ms), NULL, NULL, 0, 0, NULL, CLI_REPLAY,
     "fold from the first record at or after this time (Kafka's offsets for times)"},
    {"until-time", NULL, "ISO", KIND_TIME, AT(until_time_ms), NULL, NULL, 0, 0, NULL, CLI_REPLAY,
     "stop before the first record at or after this time, e.g. 2026-11-28T18:00:00Z"},
    {"verify", NULL, "LIVEDIR", KIND_STRING, AT(verify_path), NULL, NULL, 0, 0, NULL, CLI_REPLAY,
     "replay each partition to the live folder's offset and compare every player"},
    {"swap", NULL, NULL, KIND_SWITCH, AT(swap), NULL, NULL, 0, 0, NULL, CLI_REPLAY,
     "then ask the serve at `--http` to take the rebuilt folder (needs the admin token)"},
    {"to", NULL, "VERSION", KIND_INT, AT(migrate_to), "0", "the latest", 1, 9999, NULL,
     CLI_MIGRATE, "the schema version to migrate to"},
    {"id", NULL, "ID", KIND_STRING, AT(snapshot_id), "latest", NULL, 0, 0, NULL, CLI_RESTORE,
     "the snapshot to restore (`latest`: the newest complete one)"},
    {"rate", NULL, "N", KIND_NUMBER, AT(gen_rate), "1000", NULL, 0, 10000000, NULL, CLI_GEN,
     "events per second to send"},
    {"users", NULL, "N", KIND_INT, AT(gen_users), "1000", NULL, 1, 100000000, NULL, CLI_GEN,
     "distinct players (Zipf: a few are busy)"},
    {"duration", NULL, "SEC", KIND_NUMBER, AT(gen_duration_s), "10", NULL, 0, 10000000, NULL,
     CLI_GEN, "how long to send"},
    {"connections", NULL, "N", KIND_INT, AT(gen_connections), "32", NULL, 1, 10000, NULL, CLI_GEN,
     "HTTP connections to the API"},
    {"seed", NULL, "N", KIND_INT64, AT(gen_seed), "0", NULL, 0, 1LL << 62, NULL, CLI_GEN,
     "random seed: the same seed sends the same traffic"},
    {"user-prefix", NULL, "P", KIND_STRING, AT(gen_user_prefix), "player", NULL, 0, 0, NULL,
     CLI_GEN, "player ids are this prefix and a number"},
    {"markdown", NULL, NULL, KIND_SWITCH, AT(markdown), NULL, NULL, 0, 0, NULL, CLI_OPTIONS,
     "print the options as the Markdown table of docs/operations.md"},
    {"X", "", "key=value", KIND_KAFKA, AT(kafka_props), NULL, NULL, 0, 0, NULL, KAFKA_VERBS,
     "any librdkafka setting for the producer, the fold and the tools; repeatable"},
};

#define OPTION_COUNT (sizeof option_table / sizeof option_table[0])
_Static_assert(OPTION_COUNT <= CLI_MAX_OPTIONS, "cli_options.given needs more room");

typedef struct {
    const char *name;
    unsigned bit;
    const char *synopsis; /* after "lootlog NAME" */
    const char *summary;
} verb_row;

static const verb_row verb_table[] = {
    {"serve", CLI_SERVE, "[options]",
     "the HTTP API, the fold of the topic into per-partition stores, scheduled snapshots"},
    {"topic", CLI_TOPIC, "ensure [--partitions N] [--replication R] [options]",
     "create the event topic, or check an existing one against --partitions and the stores "
     "in --db"},
    {"replay", CLI_REPLAY, "--db NEWDIR [options]",
     "rebuild state from the topic into a new folder (--verify compares it with a live one, "
     "--swap hands it to a running serve)"},
    {"migrate", CLI_MIGRATE, "--db DIR|FILE [--to VERSION]",
     "apply schema migrations to every store of a folder, or to one store file"},
    {"snapshot", CLI_SNAPSHOT, "--db DIR --snapshot-url URL [options]",
     "take one snapshot of a state folder to HDFS now"},
    {"restore", CLI_RESTORE, "--snapshot-url URL [--id ID|latest] --db DIR",
     "install a snapshot from HDFS into a new state folder"},
    {"gen", CLI_GEN, "--rate N --users N --duration SEC [--http URL | --brokers LIST] [options]",
     "send game traffic, through the HTTP API or straight to Kafka"},
    {"options", CLI_OPTIONS, "[--markdown]",
     "list every option (--markdown: the table of docs/operations.md)"},
};

#define VERB_COUNT (sizeof verb_table / sizeof verb_table[0])

unsigned cli_verb_find(const char *name) {
    for (size_t i = 0; i < VERB_COUNT; i++)
        if (strcmp(verb_table[i].name, name) == 0) return verb_table[i].bit;
    return 0;
}

static const char *verb_name(unsigned bit) {
    for (size_t i = 0; i < VERB_COUNT; i++)
        if (verb_table[i].bit == bit) return verb_table[i].name;
    return "?";
}

/* The row's environment variable into buf ("" when it has none). */
static const char *env_name(const option_row *row, char *buf, size_t buf_size) {
    if (row->env) return row->env;
    size_t n = (size_t)snprintf(buf, buf_size, "LOOTLOG_");
    for (const char *p = row->flag; *p && n + 1 < buf_size; p++)
        buf[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    buf[n] = '\0';
    return buf;
}

/* "--http", "-X", or the variable of an environment-only row. */
static const char *flag_text(const option_row *row, char *buf, size_t buf_size) {
    char env[64];
    if (!row->flag) snprintf(buf, buf_size, "%s", env_name(row, env, sizeof env));
    else if (row->kind == KIND_KAFKA) snprintf(buf, buf_size, "-%s", row->flag);
    else snprintf(buf, buf_size, "--%s", row->flag);
    return buf;
}

/* Writes where a value came from for error messages: "--wait-ms '0'" or
 * "LOOTLOG_WAIT_MS='0' (--wait-ms)". */
static void value_origin(const option_row *row, const char *value, int from_env, char *buf,
                         size_t buf_size) {
    char flag[64], env[64];
    flag_text(row, flag, sizeof flag);
    if (from_env && row->flag)
        snprintf(buf, buf_size, "%s='%s' (%s)", env_name(row, env, sizeof env), value, flag);
    else if (from_env)
        snprintf(buf, buf_size, "%s", flag); /* never echo a secret's value */
    else
        snprintf(buf, buf_size, "%s '%s'", flag, value);
}

static int parse_integer(const char *text, long long *out) {
    char *end;
    errno = 0;
    long long v = strtoll(text, &end, 10);
    if (end == text || *end || errno == ERANGE || isspace((unsigned char)text[0])) return -1;
    *out = v;
    return 0;
}

/* Stores value into opt for row. checked: apply the row's bounds (given values; a
 * default is trusted). Returns 0, or -1 after printing a one-line error. */
static int apply_value(const option_row *row, const char *value, int checked, int from_env,
                       cli_options *opt) {
    char *field = (char *)opt + row->offset;
    char origin[600];
    long long n = 0;
    value_origin(row, value, from_env, origin, sizeof origin);
    switch (row->kind) {
    case KIND_STRING:
        if (checked && !*value) {
            fprintf(stderr, "lootlog: %s is empty\n", origin);
            return -1;
        }
        *(const char **)field = value;
        return 0;
    case KIND_INT:
    case KIND_INT64:
        if (parse_integer(value, &n) || (checked && (n < row->min || n > row->max))) {
            fprintf(stderr, "lootlog: %s is not a whole number in %lld..%lld\n", origin, row->min,
                    row->max);
            return -1;
        }
        if (row->kind == KIND_INT) *(int *)field = (int)n;
        else *(int64_t *)field = n;
        return 0;
    case KIND_NUMBER: {
        char *end;
        double v = strtod(value, &end);
        if (end == value || *end || !(v > 0) || v > (double)row->max) {
            fprintf(stderr, "lootlog: %s is not a number above 0 and up to %lld\n", origin,
                    row->max);
            return -1;
        }
        *(double *)field = v;
        return 0;
    }
    case KIND_SWITCH:
        /* Only the environment gives a switch a value. */
        if (strcmp(value, "1") == 0 || strcmp(value, "true") == 0 || strcmp(value, "yes") == 0)
            *(int *)field = 1;
        else if (strcmp(value, "0") == 0 || strcmp(value, "false") == 0 ||
                 strcmp(value, "no") == 0)
            *(int *)field = 0;
        else {
            fprintf(stderr, "lootlog: %s is not 1/true/yes or 0/false/no\n", origin);
            return -1;
        }
        return 0;
    case KIND_RANGE: {
        int *range = (int *)field;
        int first, last;
        char extra;
        if (sscanf(value, "%d-%d%c", &first, &last, &extra) == 2 && first >= 0 &&
            last >= first && last <= row->max) {
            range[0] = first;
            range[1] = last;
            return 0;
        }
        if (sscanf(value, "%d%c", &first, &extra) == 1 && first >= 0 && first <= row->max) {
            range[0] = range[1] = first;
            return 0;
        }
        fprintf(stderr, "lootlog: %s is not a partition range A-B (or one partition N) within "
                        "0..%lld\n", origin, row->max);
        return -1;
    }
    case KIND_TIME:
        if (replay_parse_time(value, (int64_t *)field)) {
            fprintf(stderr, "lootlog: %s is not an ISO time like 2026-11-29T18:00:00Z\n", origin);
            return -1;
        }
        return 0;
    case KIND_CHOICE: {
        const char *p = row->choices;
        size_t len = strlen(value);
        for (int index = 0; *p; index++) {
            size_t word = strcspn(p, "|");
            if (word == len && strncmp(p, value, len) == 0) {
                *(int *)field = index;
                return 0;
            }
            p += word + (p[word] == '|');
        }
        fprintf(stderr, "lootlog: %s is not one of %s\n", origin, row->choices);
        return -1;
    }
    case KIND_KAFKA:
        if (!strchr(value, '=') || value[0] == '=') {
            fprintf(stderr, "lootlog: %s is not key=value\n", origin);
            return -1;
        }
        if (opt->kafka_prop_count == CLI_MAX_KAFKA_PROPS) {
            fprintf(stderr, "lootlog: more than %d -X settings\n", CLI_MAX_KAFKA_PROPS);
            return -1;
        }
        opt->kafka_props[opt->kafka_prop_count++] = value;
        return 0;
    }
    return -1;
}

static void set_unset(const option_row *row, cli_options *opt) {
    char *field = (char *)opt + row->offset;
    switch (row->kind) {
    case KIND_STRING: *(const char **)field = NULL; break;
    case KIND_RANGE: ((int *)field)[0] = ((int *)field)[1] = -1; break;
    case KIND_TIME: *(int64_t *)field = -1; break;
    default: break; /* zero, from the memset */
    }
}

/* The row of --name for verb; *elsewhere set when the name exists for other verbs only. */
static const option_row *find_flag(const char *name, size_t name_len, unsigned verb,
                                   const option_row **elsewhere) {
    *elsewhere = NULL;
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        const option_row *row = &option_table[i];
        if (!row->flag || row->kind == KIND_KAFKA || strlen(row->flag) != name_len ||
            strncmp(row->flag, name, name_len) != 0)
            continue;
        if (row->verbs & verb) return row;
        *elsewhere = row;
    }
    return NULL;
}

static const option_row *kafka_row(void) {
    for (size_t i = 0; i < OPTION_COUNT; i++)
        if (option_table[i].kind == KIND_KAFKA) return &option_table[i];
    return NULL;
}

/* The verbs of a row, "serve, gen" into buf. */
static const char *verb_list(unsigned verbs, char *buf, size_t buf_size) {
    size_t n = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < VERB_COUNT && n < buf_size; i++)
        if (verbs & verb_table[i].bit)
            n += (size_t)snprintf(buf + n, buf_size - n, "%s%s", n ? ", " : "", verb_table[i].name);
    return buf;
}

static void mark_given(cli_options *opt, const option_row *row) {
    opt->given[row - option_table] = 1;
}

/* One option as the command line gave it. */
typedef struct {
    const option_row *row;
    const char *value;
} flag_value;

#define MAX_FLAGS 256

/* Reads argv into flags (and positional arguments into opt). Returns 0, 1 after --help
 * printed the verb's help, or 2 after a one-line error. */
static int read_flags(unsigned verb, int argc, char **argv, flag_value *flags, size_t *flag_count,
                      cli_options *opt) {
    *flag_count = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        const option_row *row;
        const char *value;
        if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
            cli_print_verb_help(verb, stdout);
            return 1;
        }
        if (*flag_count == MAX_FLAGS) {
            fprintf(stderr, "lootlog: more than %d options\n", MAX_FLAGS);
            return 2;
        }
        if (strncmp(arg, "-X", 2) == 0) {
            row = kafka_row();
            value = arg[2] ? arg + 2 : i + 1 < argc ? argv[++i] : NULL;
            if (!(row->verbs & verb)) {
                fprintf(stderr, "lootlog: -X does not apply to %s\n", verb_name(verb));
                return 2;
            }
            if (!value) {
                fprintf(stderr, "lootlog: -X needs a key=value\n");
                return 2;
            }
            flags[(*flag_count)++] = (flag_value){row, value};
            continue;
        }
        if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0') {
            if (arg[0] == '-' && arg[1] != '\0') {
                fprintf(stderr, "lootlog: unknown option %s (lootlog %s --help lists them)\n", arg,
                        verb_name(verb));
                return 2;
            }
            if (opt->positional_count == CLI_MAX_POSITIONAL) {
                fprintf(stderr, "lootlog: unexpected argument '%s'\n", arg);
                return 2;
            }
            opt->positional[opt->positional_count++] = arg;
            continue;
        }
        const char *name = arg + 2, *eq = strchr(name, '=');
        size_t name_len = eq ? (size_t)(eq - name) : strlen(name);
        const option_row *elsewhere;
        row = find_flag(name, name_len, verb, &elsewhere);
        if (!row) {
            char verbs[128];
            if (elsewhere)
                fprintf(stderr, "lootlog: --%.*s does not apply to %s (only to %s)\n",
                        (int)name_len, name, verb_name(verb),
                        verb_list(elsewhere->verbs, verbs, sizeof verbs));
            else
                fprintf(stderr, "lootlog: unknown option --%.*s (lootlog %s --help lists them)\n",
                        (int)name_len, name, verb_name(verb));
            return 2;
        }
        if (row->kind == KIND_SWITCH) {
            if (eq) {
                fprintf(stderr, "lootlog: --%s takes no value\n", row->flag);
                return 2;
            }
            value = "1";
        } else if (eq) {
            value = eq + 1;
        } else if (i + 1 < argc) {
            value = argv[++i];
        } else {
            fprintf(stderr, "lootlog: --%s needs a value (%s)\n", row->flag, row->metavar);
            return 2;
        }
        flags[(*flag_count)++] = (flag_value){row, value};
    }
    return 0;
}

static int given_as_flag(const option_row *row, const flag_value *flags, size_t flag_count) {
    for (size_t i = 0; i < flag_count; i++)
        if (flags[i].row == row) return 1;
    return 0;
}

int cli_parse(unsigned verb, int argc, char **argv, cli_options *opt) {
    flag_value flags[MAX_FLAGS];
    size_t flag_count;
    memset(opt, 0, sizeof *opt);
    int rc = read_flags(verb, argc, argv, flags, &flag_count, opt);
    if (rc) return rc;
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        const option_row *row = &option_table[i];
        if (row->default_value) apply_value(row, row->default_value, 0, 0, opt);
        else set_unset(row, opt);
    }
    /* The environment, for what the command line does not say (a flag wins, so a stale
     * variable under a flag is never read). */
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        const option_row *row = &option_table[i];
        char env[64];
        const char *name = env_name(row, env, sizeof env);
        if (!*name || !(row->verbs & verb) || given_as_flag(row, flags, flag_count)) continue;
        const char *value = getenv(name);
        if (!value || !*value) continue;
        if (apply_value(row, value, 1, 1, opt)) return 2;
        mark_given(opt, row);
    }
    for (size_t i = 0; i < flag_count; i++) {
        if (apply_value(flags[i].row, flags[i].value, 1, 0, opt)) return 2;
        mark_given(opt, flags[i].row);
    }
    return 0;
}

int cli_given(const cli_options *opt, unsigned verb, const char *flag) {
    const option_row *elsewhere;
    const option_row *row = find_flag(flag, strlen(flag), verb, &elsewhere);
    return row ? opt->given[row - option_table] : 0;
}

/* ---------------------------------------------------------------- help and docs */

/* Writes prefix and text wrapped at HELP_WIDTH, the lines after the first indented by
 * indent spaces. */
static void print_hanging(FILE *out, const char *prefix, int indent, const char *text) {
    const char *p = text;
    fputs(prefix, out);
    size_t column = strlen(prefix);
    while (*p) {
        size_t room = HELP_WIDTH > column ? HELP_WIDTH - column : 1, len = strlen(p);
        size_t take = len;
        if (len > room) {
            take = room;
            while (take > 0 && p[take] != ' ') take--;
            if (take == 0) take = strcspn(p, " ");
        }
        fprintf(out, "%.*s\n", (int)take, p);
        p += take;
        while (*p == ' ') p++;
        if (*p) fprintf(out, "%*s", indent, "");
        column = (size_t)indent;
    }
}

static void print_wrapped(FILE *out, int indent, const char *text) {
    char prefix[32];
    snprintf(prefix, sizeof prefix, "%*s", indent, "");
    print_hanging(out, prefix, indent, text);
}

/* The default as help and docs show it; "" when none. */
static const char *default_text(const option_row *row) {
    if (row->default_doc) return row->default_doc;
    if (row->default_value) return row->default_value;
    return "";
}

static void print_option(FILE *out, const option_row *row, int with_verbs) {
    char flag[64], env[64], verbs[128], line[1024], tail[512];
    const char *env_text = env_name(row, env, sizeof env);
    flag_text(row, flag, sizeof flag);
    if (row->flag && row->metavar) fprintf(out, "  %s %s", flag, row->metavar);
    else fprintf(out, "  %s", flag);
    if (with_verbs) fprintf(out, "   [%s]", verb_list(row->verbs, verbs, sizeof verbs));
    fputc('\n', out);
    size_t n = 0;
    tail[0] = '\0';
    if (row->flag && *env_text)
        n += (size_t)snprintf(tail + n, sizeof tail - n, "%s", env_text);
    if (*default_text(row))
        snprintf(tail + n, sizeof tail - n, "%sdefault %s", n ? "; " : "", default_text(row));
    snprintf(line, sizeof line, "%s%s%s%s", row->help, tail[0] ? " (" : "", tail,
             tail[0] ? ")" : "");
    print_wrapped(out, 8, line);
}

void cli_print_usage(FILE *out) {
    fprintf(out, "lootlog " LOOTLOG_VERSION
                 " — event-sourced player state on Kafka and SQLite\n\n"
                 "usage: lootlog VERB [options]     (lootlog VERB --help: one verb's options)\n"
                 "       lootlog --help | --version\n\n");
    fprintf(out, "verbs:\n");
    for (size_t i = 0; i < VERB_COUNT; i++) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "  %-9s ", verb_table[i].name);
        print_hanging(out, prefix, 12, verb_table[i].summary);
    }
    fprintf(out, "\noptions (each also read from the environment variable named; a flag wins "
                 "over it):\n");
    for (size_t i = 0; i < OPTION_COUNT; i++) print_option(out, &option_table[i], 1);
    fprintf(out, "\n--db names a folder holding one store per partition (p0.db, p1.db, ...).\n");
}

void cli_print_verb_help(unsigned verb, FILE *out) {
    for (size_t i = 0; i < VERB_COUNT; i++) {
        if (verb_table[i].bit != verb) continue;
        fprintf(out, "usage: lootlog %s %s\n\n", verb_table[i].name, verb_table[i].synopsis);
        print_wrapped(out, 2, verb_table[i].summary);
    }
    fprintf(out, "\noptions (each also read from the environment variable named; a flag wins "
                 "over it):\n");
    for (size_t i = 0; i < OPTION_COUNT; i++)
        if (option_table[i].verbs & verb) print_option(out, &option_table[i], 0);
}

/* A table cell: pipes escaped, so help text may mention "text|json". */
static void print_cell(FILE *out, const char *text) {
    for (const char *p = text; *p; p++) {
        if (*p == '|') fputc('\\', out);
        fputc(*p, out);
    }
}

void cli_print_markdown(FILE *out) {
    fprintf(out, "| option | environment | default | verbs | meaning |\n"
                 "|---|---|---|---|---|\n");
    for (size_t i = 0; i < OPTION_COUNT; i++) {
        const option_row *row = &option_table[i];
        char flag[64], env[64], verbs[128], cell[256];
        const char *env_text = env_name(row, env, sizeof env);
        flag_text(row, flag, sizeof flag);
        fputs("| ", out);
        if (!row->flag) snprintf(cell, sizeof cell, "(environment only)");
        else if (row->metavar) snprintf(cell, sizeof cell, "`%s %s`", flag, row->metavar);
        else snprintf(cell, sizeof cell, "`%s`", flag);
        print_cell(out, cell);
        fputs(" | ", out);
        if (*env_text) fprintf(out, "`%s`", env_text);
        fputs(" | ", out);
        print_cell(out, default_text(row));
        fprintf(out, " | %s | ", verb_list(row->verbs, verbs, sizeof verbs));
        print_cell(out, row->help);
        fputs(" |\n", out);
    }
}

int command_options(cli_options *opt) {
    if (opt->markdown) cli_print_markdown(stdout);
    else cli_print_usage(stdout);
    return 0;
}
