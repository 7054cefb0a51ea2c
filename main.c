#define _GNU_SOURCE /* renameat2 */
/* lootlog: one binary, several verbs (design.md "CLI"). main parses options (flags, then
 * LOOTLOG_<NAME> from the environment, then defaults), wires the modules of state/ and
 * server/ together, and owns the event loop and the shutdown order. */
#include "server/gen.h"
#include "server/http.h"
#include "server/producer.h"
#include "server/routes.h"
#include "state/catalog.h"
#include "state/consumer.h"
#include "state/log.h"
#include "state/migrate.h"
#include "state/replay.h"
#include "state/snapshot.h"
#include "state/store.h"
#include "state/store_set.h"
#include "state/waiters.h"

#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <curl/curl.h>
#include <limits.h>
#include <unistd.h>
#include <event2/event.h>
#include <getopt.h>
#include <sys/stat.h>
#include <jansson.h>
#include <malloc.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef LOOTLOG_VERSION
#define LOOTLOG_VERSION "0.0.0"
#endif

#define MAX_KAFKA_PROPS 64

typedef struct {
    const char *http;
    const char *brokers;
    const char *topic;
    const char *db;
    const char *catalog_path;
    const char *snapshot_url;
    const char *admin_token_file;
    int snapshot_interval_s;
    int partition_first, partition_last;
    int no_fold, no_http;
    int delivery_timeout_ms;
    int wait_ms;
    int64_t guild_capacity;
    int64_t ready_max_lag;
    int batch_events, batch_ms;
    int fold_threads;
    int fold_nice;
    int http_set, brokers_set; /* given explicitly (gen picks its target by them) */
    double gen_rate, gen_duration_s;
    int gen_users, gen_connections;
    long long gen_seed;
    const char *gen_user_prefix;
    int64_t from_offset, until_offset, from_time_ms, until_time_ms;
    const char *verify_path;
    int swap;
    int migrate_to;
    int retain;
    const char *snapshot_id;
    const char *kafka_props[MAX_KAFKA_PROPS];
    size_t kafka_prop_count;
} options;

static const char usage_text[] =
    "lootlog " LOOTLOG_VERSION " — event-sourced player state on Kafka and SQLite\n"
    "\n"
    "usage:\n"
    "  lootlog serve   [--http ADDR] [--brokers LIST] [--topic events] [--db DIR]\n"
    "                  [--catalog FILE] [--partitions A-B] [--no-fold] [--no-http]\n"
    "                  [--guild-capacity N] [--request-timeout-ms MS] [--wait-ms MS]\n"
    "                  [--ready-max-lag N] [--batch-events N] [--batch-ms MS]\n"
    "                  [--fold-threads N] [--fold-nice N]\n"
    "                  [--snapshot-url URL] [--snapshot-interval SEC] [--retain K]\n"
    "                  [--admin-token-file F]\n"
    "                  [-X librdkafka.key=value ...]\n"
    "  lootlog migrate --db DIR|FILE [--to VERSION]\n"
    "  lootlog replay  --db NEWDIR [--from-offset N | --from-time ISO]\n"
    "                  [--until-offset N | --until-time ISO] [--verify LIVEDIR]\n"
    "                  [--fold-threads N]\n"
    "                  [--swap --http ADDR]   (admin token: LOOTLOG_ADMIN_TOKEN)\n"
    "  lootlog snapshot --db DIR --snapshot-url URL [--retain K]\n"
    "  lootlog restore --snapshot-url URL [--id ID|latest] --db DIR\n"
    "  lootlog gen     --rate N --users N --duration SEC [--http URL | --brokers LIST]\n"
    "                  [--topic events] [--connections N] [--seed N] [--user-prefix P]\n"
    "  lootlog --help | --version\n"
    "\n"
    "Every option also reads LOOTLOG_<NAME> from the environment (--db: LOOTLOG_DB,\n"
    "--request-timeout-ms: LOOTLOG_REQUEST_TIMEOUT_MS); a flag wins over the environment.\n"
    "--db names a folder holding one store per partition (p0.db, p1.db, ...).\n";

/* The environment's value for a long option name, e.g. "db" -> $LOOTLOG_DB. */
static const char *env_option(const char *name) {
    char key[64] = "LOOTLOG_";
    size_t n = strlen(key);
    for (const char *p = name; *p && n + 1 < sizeof key; p++)
        key[n++] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    key[n] = '\0';
    return getenv(key);
}

static int parse_partitions(const char *text, options *opt) {
    int first, last;
    char extra;
    if (sscanf(text, "%d-%d%c", &first, &last, &extra) == 2 && first >= 0 && last >= first &&
        last < STORE_MAX_PARTITIONS) {
        opt->partition_first = first;
        opt->partition_last = last;
        return 0;
    }
    if (sscanf(text, "%d%c", &first, &extra) == 1 && first >= 0 && first < STORE_MAX_PARTITIONS) {
        opt->partition_first = opt->partition_last = first;
        return 0;
    }
    fprintf(stderr, "lootlog: --partitions '%s' is not A-B\n", text);
    return -1;
}

static int parse_int(const char *name, const char *text, long long min, long long max,
                     long long *out) {
    char *end;
    long long v = strtoll(text, &end, 10);
    if (end == text || *end || v < min || v > max) {
        fprintf(stderr, "lootlog: --%s '%s' is not a number in %lld..%lld\n", name, text, min, max);
        return -1;
    }
    *out = v;
    return 0;
}

enum {
    OPT_HTTP = 256, OPT_BROKERS, OPT_TOPIC, OPT_DB, OPT_CATALOG, OPT_SNAPSHOT_URL,
    OPT_SNAPSHOT_INTERVAL, OPT_PARTITIONS, OPT_NO_FOLD, OPT_NO_HTTP, OPT_ADMIN_TOKEN_FILE,
    OPT_GUILD_CAPACITY, OPT_REQUEST_TIMEOUT_MS, OPT_WAIT_MS, OPT_READY_MAX_LAG,
    OPT_BATCH_EVENTS, OPT_BATCH_MS, OPT_RATE, OPT_USERS, OPT_DURATION, OPT_CONNECTIONS,
    OPT_SEED, OPT_USER_PREFIX, OPT_FROM_OFFSET, OPT_UNTIL_OFFSET, OPT_FROM_TIME,
    OPT_UNTIL_TIME, OPT_VERIFY, OPT_SWAP, OPT_TO, OPT_RETAIN, OPT_ID, OPT_FOLD_THREADS, OPT_FOLD_NICE,
};

static const struct option long_options[] = {
    {"http", required_argument, NULL, OPT_HTTP},
    {"brokers", required_argument, NULL, OPT_BROKERS},
    {"topic", required_argument, NULL, OPT_TOPIC},
    {"db", required_argument, NULL, OPT_DB},
    {"catalog", required_argument, NULL, OPT_CATALOG},
    {"snapshot-url", required_argument, NULL, OPT_SNAPSHOT_URL},
    {"snapshot-interval", required_argument, NULL, OPT_SNAPSHOT_INTERVAL},
    {"partitions", required_argument, NULL, OPT_PARTITIONS},
    {"no-fold", no_argument, NULL, OPT_NO_FOLD},
    {"no-http", no_argument, NULL, OPT_NO_HTTP},
    {"admin-token-file", required_argument, NULL, OPT_ADMIN_TOKEN_FILE},
    {"guild-capacity", required_argument, NULL, OPT_GUILD_CAPACITY},
    {"request-timeout-ms", required_argument, NULL, OPT_REQUEST_TIMEOUT_MS},
    {"wait-ms", required_argument, NULL, OPT_WAIT_MS},
    {"ready-max-lag", required_argument, NULL, OPT_READY_MAX_LAG},
    {"batch-events", required_argument, NULL, OPT_BATCH_EVENTS},
    {"batch-ms", required_argument, NULL, OPT_BATCH_MS},
    {"fold-threads", required_argument, NULL, OPT_FOLD_THREADS},
    {"fold-nice", required_argument, NULL, OPT_FOLD_NICE},
    {"rate", required_argument, NULL, OPT_RATE},
    {"users", required_argument, NULL, OPT_USERS},
    {"duration", required_argument, NULL, OPT_DURATION},
    {"connections", required_argument, NULL, OPT_CONNECTIONS},
    {"seed", required_argument, NULL, OPT_SEED},
    {"user-prefix", required_argument, NULL, OPT_USER_PREFIX},
    {"from-offset", required_argument, NULL, OPT_FROM_OFFSET},
    {"until-offset", required_argument, NULL, OPT_UNTIL_OFFSET},
    {"from-time", required_argument, NULL, OPT_FROM_TIME},
    {"until-time", required_argument, NULL, OPT_UNTIL_TIME},
    {"verify", required_argument, NULL, OPT_VERIFY},
    {"swap", no_argument, NULL, OPT_SWAP},
    {"to", required_argument, NULL, OPT_TO},
    {"retain", required_argument, NULL, OPT_RETAIN},
    {"id", required_argument, NULL, OPT_ID},
    {"help", no_argument, NULL, 'h'},
    {NULL, 0, NULL, 0},
};

/* Applies one option (from a flag or the environment). Returns 0 or -1. */
static int apply_option(options *opt, int code, const char *value) {
    long long n;
    switch (code) {
    case OPT_HTTP:
        opt->http = value;
        opt->http_set = 1;
        return 0;
    case OPT_BROKERS:
        opt->brokers = value;
        opt->brokers_set = 1;
        return 0;
    case OPT_FROM_OFFSET:
    case OPT_UNTIL_OFFSET:
        if (parse_int(code == OPT_FROM_OFFSET ? "from-offset" : "until-offset", value, 0,
                      INT64_MAX, &n))
            return -1;
        *(code == OPT_FROM_OFFSET ? &opt->from_offset : &opt->until_offset) = n;
        return 0;
    case OPT_FROM_TIME:
    case OPT_UNTIL_TIME:
        if (replay_parse_time(value, code == OPT_FROM_TIME ? &opt->from_time_ms
                                                           : &opt->until_time_ms)) {
            fprintf(stderr, "lootlog: '%s' is not an ISO time like 2026-11-29T18:00:00Z\n",
                    value);
            return -1;
        }
        return 0;
    case OPT_VERIFY: opt->verify_path = value; return 0;
    case OPT_SWAP: opt->swap = 1; return 0;
    case OPT_ID: opt->snapshot_id = value; return 0;
    case OPT_RETAIN:
        if (parse_int("retain", value, 1, 100000, &n)) return -1;
        opt->retain = (int)n;
        return 0;
    case OPT_TO:
        if (parse_int("to", value, 1, 9999, &n)) return -1;
        opt->migrate_to = (int)n;
        return 0;
    case OPT_USER_PREFIX:
        opt->gen_user_prefix = value;
        return 0;
    case OPT_RATE:
    case OPT_DURATION: {
        char *end;
        double v = strtod(value, &end);
        if (end == value || *end || v <= 0 || v > 1e7) {
            fprintf(stderr, "lootlog: --%s '%s' is not a positive number\n",
                    code == OPT_RATE ? "rate" : "duration", value);
            return -1;
        }
        if (code == OPT_RATE) opt->gen_rate = v;
        else opt->gen_duration_s = v;
        return 0;
    }
    case OPT_USERS:
        if (parse_int("users", value, 1, 100000000, &n)) return -1;
        opt->gen_users = (int)n;
        return 0;
    case OPT_CONNECTIONS:
        if (parse_int("connections", value, 1, 10000, &n)) return -1;
        opt->gen_connections = (int)n;
        return 0;
    case OPT_SEED:
        if (parse_int("seed", value, 0, 1LL << 62, &n)) return -1;
        opt->gen_seed = n;
        return 0;
    case OPT_TOPIC: opt->topic = value; return 0;
    case OPT_DB: opt->db = value; return 0;
    case OPT_CATALOG: opt->catalog_path = value; return 0;
    case OPT_SNAPSHOT_URL: opt->snapshot_url = value; return 0;
    case OPT_ADMIN_TOKEN_FILE: opt->admin_token_file = value; return 0;
    case OPT_PARTITIONS: return parse_partitions(value, opt);
    case OPT_NO_FOLD: opt->no_fold = 1; return 0;
    case OPT_NO_HTTP: opt->no_http = 1; return 0;
    case OPT_SNAPSHOT_INTERVAL:
        if (parse_int("snapshot-interval", value, 0, 86400 * 365, &n)) return -1;
        opt->snapshot_interval_s = (int)n;
        return 0;
    case OPT_GUILD_CAPACITY:
        if (parse_int("guild-capacity", value, 1, 1000000000, &n)) return -1;
        opt->guild_capacity = n;
        return 0;
    case OPT_REQUEST_TIMEOUT_MS:
        if (parse_int("request-timeout-ms", value, 100, 600000, &n)) return -1;
        opt->delivery_timeout_ms = (int)n;
        return 0;
    case OPT_WAIT_MS:
        if (parse_int("wait-ms", value, 1, 30000, &n)) return -1;
        opt->wait_ms = (int)n;
        return 0;
    case OPT_READY_MAX_LAG:
        if (parse_int("ready-max-lag", value, 0, 1LL << 40, &n)) return -1;
        opt->ready_max_lag = n;
        return 0;
    case OPT_BATCH_EVENTS:
        if (parse_int("batch-events", value, 1, 1000000, &n)) return -1;
        opt->batch_events = (int)n;
        return 0;
    case OPT_BATCH_MS:
        if (parse_int("batch-ms", value, 1, 60000, &n)) return -1;
        opt->batch_ms = (int)n;
        return 0;
    case OPT_FOLD_THREADS:
        if (parse_int("fold-threads", value, 0, STORE_MAX_PARTITIONS, &n)) return -1;
        opt->fold_threads = (int)n;
        return 0;
    case OPT_FOLD_NICE:
        if (parse_int("fold-nice", value, 0, 19, &n)) return -1;
        opt->fold_nice = (int)n;
        return 0;
    }
    return -1;
}

/* Defaults, then the environment, then flags. Returns 0, 1 after --help, -1 on error. */
static int parse_options(int argc, char **argv, options *opt) {
    memset(opt, 0, sizeof *opt);
    opt->http = "127.0.0.1:8080";
    opt->brokers = "127.0.0.1:9092";
    opt->topic = "events";
    opt->db = "lootlog-state";
    opt->partition_first = opt->partition_last = -1;
    opt->delivery_timeout_ms = 5000;
    opt->wait_ms = 2000;
    opt->guild_capacity = FOLD_DEFAULT_GUILD_CAPACITY;
    opt->ready_max_lag = 10000;
    opt->batch_events = 20000;
    /* On a busy machine the HTTP loop's reads go first: GET /inventory p99 at 10k/s
     * while 6 fold threads drain a backlog on 2 cores fell from ~2 s at nice 5 to
     * ~40-65 ms at nice 19. The price, where producers share the cores, is lag
     * (docs/benchmarks.md); --fold-nice moves the balance. */
    opt->fold_nice = 19;
    opt->batch_ms = 20;
    opt->gen_rate = 1000;
    opt->gen_duration_s = 10;
    opt->gen_users = 1000;
    opt->gen_connections = 32;
    opt->gen_user_prefix = "player";
    opt->retain = 5;
    opt->from_offset = opt->until_offset = opt->from_time_ms = opt->until_time_ms = -1;

    for (const struct option *o = long_options; o->name; o++) {
        const char *value = o->val >= OPT_HTTP ? env_option(o->name) : NULL;
        if (!value || !*value) continue;
        if (o->has_arg == no_argument) {
            if (strcmp(value, "0") == 0 || strcmp(value, "false") == 0) continue;
            value = NULL;
        }
        if (apply_option(opt, o->val, value)) {
            fprintf(stderr, "lootlog: (from the environment, LOOTLOG_ for --%s)\n", o->name);
            return -1;
        }
    }
    optind = 1;
    int code;
    while ((code = getopt_long(argc, argv, "hX:", long_options, NULL)) != -1) {
        if (code == 'h') {
            fputs(usage_text, stdout);
            return 1;
        }
        if (code == 'X') {
            if (opt->kafka_prop_count == MAX_KAFKA_PROPS) {
                fprintf(stderr, "lootlog: too many -X settings\n");
                return -1;
            }
            opt->kafka_props[opt->kafka_prop_count++] = optarg;
            continue;
        }
        if (code == '?' || apply_option(opt, code, optarg)) {
            fputs(usage_text, stderr);
            return -1;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "lootlog: unexpected argument '%s'\n", argv[optind]);
        return -1;
    }
    return 0;
}

/* Migrates one SQLite file. Returns 0 or 1. */
static int migrate_file(const options *opt, const char *path) {
    char errstr[512];
    sqlite3 *db = NULL;
    int from, to;
    if (sqlite3_open(path, &db) != SQLITE_OK) {
        fprintf(stderr, "lootlog: opening %s: %s\n", path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return 1;
    }
    int rc = migrate_apply_to(db, opt->migrate_to > 0 ? opt->migrate_to : migrate_latest_version(),
                              &from, &to, errstr, sizeof errstr);
    sqlite3_close(db);
    if (rc) {
        fprintf(stderr, "lootlog: %s\n", errstr);
        return 1;
    }
    printf("%s: schema version %d -> %d\n", path, from, to);
    return 0;
}

/* --db names a folder of stores (each is migrated) or one store file. */
static int cmd_migrate(options *opt) {
    char errstr[512], path[PATH_MAX];
    int32_t partitions[STORE_MAX_PARTITIONS];
    size_t count = 0;
    struct stat info;
    if (stat(opt->db, &info) != 0 || !S_ISDIR(info.st_mode)) return migrate_file(opt, opt->db);
    if (store_list_partitions(opt->db, partitions, STORE_MAX_PARTITIONS, &count, errstr,
                              sizeof errstr)) {
        fprintf(stderr, "lootlog: %s\n", errstr);
        return 1;
    }
    int rc = 0;
    for (size_t i = 0; i < count && rc == 0; i++) {
        store_path(opt->db, partitions[i], path, sizeof path);
        rc = migrate_file(opt, path);
    }
    if (count == 0) printf("%s: no stores yet\n", opt->db);
    return rc;
}

static int cmd_gen(options *opt) {
    char errstr[512];
    gen_config config = {
        .rate = opt->gen_rate,
        .users = opt->gen_users,
        .duration_s = opt->gen_duration_s,
        .http_url = opt->brokers_set && !opt->http_set ? NULL : opt->http,
        .brokers = opt->brokers,
        .topic = opt->topic,
        .connections = opt->gen_connections,
        .seed = (uint64_t)opt->gen_seed,
        .user_prefix = opt->gen_user_prefix,
        .kafka_props = opt->kafka_props,
        .kafka_prop_count = opt->kafka_prop_count,
    };
    int rc = gen_run(&config, errstr, sizeof errstr);
    if (rc < 0) {
        fprintf(stderr, "lootlog: %s\n", errstr);
        return 2;
    }
    return rc;
}

/* The admin token: $LOOTLOG_ADMIN_TOKEN, else the first line of --admin-token-file.
 * Returns 0 with *token (malloc'ed, or NULL when none is configured), or -1. */
static int load_admin_token(const options *opt, char **token, char *errstr, size_t errstr_size) {
    const char *env = getenv("LOOTLOG_ADMIN_TOKEN");
    *token = NULL;
    if (env && *env) {
        *token = strdup(env);
        return *token ? 0 : -1;
    }
    if (!opt->admin_token_file) return 0;
    FILE *f = fopen(opt->admin_token_file, "r");
    char line[512];
    if (!f || !fgets(line, sizeof line, f)) {
        snprintf(errstr, errstr_size, "cannot read --admin-token-file %s", opt->admin_token_file);
        if (f) fclose(f);
        return -1;
    }
    fclose(f);
    line[strcspn(line, "\r\n")] = '\0';
    if (!line[0]) {
        snprintf(errstr, errstr_size, "--admin-token-file %s is empty", opt->admin_token_file);
        return -1;
    }
    *token = strdup(line);
    return *token ? 0 : -1;
}

/* replay --swap: asks the serve at --http to take the rebuilt file (POST /admin/swap). */
static int swap_into_server(options *opt) {
    char errstr[512], url[512], body[PATH_MAX + 32], auth[600], abs_path[PATH_MAX];
    char *token = NULL;
    long status = 0;
    if (load_admin_token(opt, &token, errstr, sizeof errstr) || !token) {
        fprintf(stderr, "lootlog: --swap needs the admin token (LOOTLOG_ADMIN_TOKEN or "
                        "--admin-token-file)\n");
        free(token);
        return 2;
    }
    if (!realpath(opt->db, abs_path)) {
        fprintf(stderr, "lootlog: %s: cannot resolve path\n", opt->db);
        free(token);
        return 2;
    }
    snprintf(url, sizeof url, "%s%s/admin/swap", strncmp(opt->http, "http", 4) ? "http://" : "",
             opt->http);
    json_t *payload = json_pack("{s:s}", "db", abs_path);
    char *text = json_dumps(payload, JSON_COMPACT);
    json_decref(payload);
    snprintf(body, sizeof body, "%s", text ? text : "{}");
    free(text);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    free(token);
    CURL *curl = curl_easy_init();
    struct curl_slist *headers = curl_slist_append(NULL, auth);
    headers = curl_slist_append(headers, "Content-Type: application/json");
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
    CURLcode res = curl_easy_perform(curl);
    if (res == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    if (res != CURLE_OK || status != 200) {
        fprintf(stderr, "lootlog: swap via %s failed: %s (HTTP %ld)\n", url,
                res != CURLE_OK ? curl_easy_strerror(res) : "refused", status);
        return 2;
    }
    printf("swap: %s now serves %s\n", opt->http, abs_path);
    return 0;
}

static int cmd_replay(options *opt) {
    char errstr[512];
    replay_summary summary;
    replay_config config = {
        .brokers = opt->brokers,
        .topic = opt->topic,
        .db_path = opt->db,
        .fold = {.guild_capacity = opt->guild_capacity},
        .from_offset = opt->from_offset,
        .from_time_ms = opt->from_time_ms,
        .until_offset = opt->until_offset,
        .until_time_ms = opt->until_time_ms,
        .verify_path = opt->verify_path,
        .batch_events = (size_t)opt->batch_events,
        .threads = opt->fold_threads,
        .kafka_props = opt->kafka_props,
        .kafka_prop_count = opt->kafka_prop_count,
    };
    int rc = replay_run(&config, &summary, errstr, sizeof errstr);
    if (rc < 0) {
        fprintf(stderr, "lootlog: replay failed: %s\n", errstr);
        return 2;
    }
    printf("replay: %llu events in %.1f s (%.0f/s): %llu applied, %llu rejected, "
           "%llu duplicate, %llu dead-lettered",
           (unsigned long long)summary.events, summary.seconds,
           summary.seconds > 0 ? summary.events / summary.seconds : 0.0,
           (unsigned long long)summary.applied, (unsigned long long)summary.rejected,
           (unsigned long long)summary.duplicates, (unsigned long long)summary.dead_letters);
    if (opt->verify_path)
        printf("; verify: %llu players compared, %llu differ",
               (unsigned long long)summary.players_compared,
               (unsigned long long)summary.players_differing);
    printf("\n");
    if (rc == 0 && opt->swap) return swap_into_server(opt);
    return rc;
}

/* The folder of path, into dir (for scratch files on the database's file system). */
static void folder_of(const char *path, char *dir, size_t dir_size) {
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, dir_size, ".");
    else if (slash == path) snprintf(dir, dir_size, "/");
    else snprintf(dir, dir_size, "%.*s", (int)(slash - path), path);
}

static snapshot_config snapshot_config_from(const options *opt, const catalog *cat,
                                            char *work_dir, size_t work_dir_size) {
    folder_of(opt->db, work_dir, work_dir_size);
    snapshot_config config = {
        .db_path = opt->db,
        .url = opt->snapshot_url,
        .topic = opt->topic,
        .work_dir = work_dir,
        .retain = opt->retain,
        .lootlog_version = LOOTLOG_VERSION,
        .timeout_ms = 30000,
        .cat = cat,
    };
    return config;
}

static int cmd_snapshot(options *opt) {
    char errstr[512], work_dir[1024];
    snapshot_result result;
    if (!opt->snapshot_url) {
        fprintf(stderr, "lootlog: snapshot needs --snapshot-url\n");
        return 2;
    }
    catalog *cat = catalog_load(opt->catalog_path, errstr, sizeof errstr);
    if (!cat) {
        fprintf(stderr, "lootlog: %s\n", errstr);
        return 2;
    }
    snapshot_config config = snapshot_config_from(opt, cat, work_dir, sizeof work_dir);
    int rc = snapshot_take(&config, &result, errstr, sizeof errstr);
    catalog_free(cat);
    if (rc) {
        fprintf(stderr, "lootlog: snapshot failed: %s\n", errstr);
        return 1;
    }
    printf("snapshot: %s written in %.1f s (%llu events extracted)\n", result.id, result.seconds,
           (unsigned long long)result.events_extracted);
    return 0;
}

static int cmd_restore(options *opt) {
    char errstr[512], work_dir[1024], id[32];
    if (!opt->snapshot_url) {
        fprintf(stderr, "lootlog: restore needs --snapshot-url\n");
        return 2;
    }
    folder_of(opt->db, work_dir, sizeof work_dir);
    if (snapshot_restore(opt->snapshot_url, opt->snapshot_id ? opt->snapshot_id : "latest",
                         opt->db, work_dir, 30000, id, errstr, sizeof errstr)) {
        fprintf(stderr, "lootlog: restore failed: %s\n", errstr);
        return 1;
    }
    printf("restore: snapshot %s installed as %s; `lootlog serve --db %s` catches up from its "
           "offsets\n",
           id, opt->db, opt->db);
    return 0;
}

/* ---------------------------------------------------------------- serve */

typedef struct {
    struct event_base *base;
    producer *prod;
    routes *rts;
    consumer *fold;
    store_set *readers;
    consumer_config fold_config;
    const char *db_path;
    waiters *fold_waiters;
    int64_t drain_deadline_ms;
} serve_state;

static int64_t monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
    (void)what;
    serve_state *s = arg;
    log_info("serve", "signal %d: shutting down", (int)sig);
    event_base_loopexit(s->base, NULL);
}

static void on_fold_commit_fd(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    serve_state *s = arg;
    waiters_drain(s->fold_waiters);
    if (s->rts) routes_on_fold_commit(s->rts);
}

static void notify_fold_commit(void *opaque) { waiters_notify(opaque); }

/* During shutdown: keep the loop running until every produced event has its delivery
 * report (so each waiting client gets its answer) or the deadline passes. */
static void on_drain_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    serve_state *s = arg;
    if (producer_outstanding(s->prod) == 0 || monotonic_ms() >= s->drain_deadline_ms)
        event_base_loopexit(s->base, NULL);
}

/* 1 when dir holds at least one store with folded state. */
static int folder_holds_state(const char *dir, char *errstr, size_t errstr_size) {
    int32_t partitions[STORE_MAX_PARTITIONS];
    size_t count = 0;
    char path[PATH_MAX];
    if (store_list_partitions(dir, partitions, STORE_MAX_PARTITIONS, &count, errstr, errstr_size))
        return 0;
    for (size_t i = 0; i < count; i++) {
        int64_t next = -1;
        store_path(dir, partitions[i], path, sizeof path);
        store *probe = store_open(path, partitions[i], STORE_READER, errstr, errstr_size);
        if (!probe) return 0;
        int rc = store_get_next_offset(probe, &next);
        store_close(probe);
        if (rc == 0 && next >= 0) return 1;
    }
    snprintf(errstr, errstr_size, "%s holds no folded state", dir);
    return 0;
}

/* POST /admin/swap: the fold finishes its batches and stops, the rebuilt folder and the
 * live one trade places in one atomic rename (each store keeps its WAL beside it, so
 * nothing is deleted under another reader), and a new fold resumes from the rebuilt
 * stores' offsets. The previous state stays at the rebuilt folder's path for the
 * operator to inspect or delete. It runs on the loop thread, so no request sees a
 * half-swapped state; they wait for the ms the fold needs to finish its batches. */
static int swap_state(void *opaque, const char *path, char *errstr, size_t errstr_size) {
    serve_state *s = opaque;
    if (!folder_holds_state(path, errstr, errstr_size)) return -1;
    log_info("serve", "swap: replacing %s with %s", s->db_path, path);
    routes_set_state(s->rts, NULL, NULL);
    consumer_stop(s->fold);
    store_set_free(s->readers);
    s->fold = NULL;
    s->readers = NULL;
    int renamed = renameat2(AT_FDCWD, path, AT_FDCWD, s->db_path, RENAME_EXCHANGE);
    if (renamed)
        snprintf(errstr, errstr_size, "exchanging %s and %s failed: %s", path, s->db_path,
                 strerror(errno));
    char start_err[512];
    s->fold = consumer_start(&s->fold_config, start_err, sizeof start_err);
    if (s->fold) s->readers = store_set_new(s->db_path, start_err, sizeof start_err);
    if (!s->fold || !s->readers) {
        /* Without state we cannot serve reads honestly: stop cleanly. */
        log_error("serve", "swap: cannot reopen state: %s", start_err);
        event_base_loopexit(s->base, NULL);
        snprintf(errstr, errstr_size, "reopening failed: %s", start_err);
        return -1;
    }
    routes_set_state(s->rts, s->readers, s->fold);
    log_info("serve", "swap: done%s", renamed ? " (exchange failed; kept the old state)"
                                              : "; the previous state is at the rebuilt path");
    return renamed ? -1 : 0;
}

static int cmd_serve(options *opt) {
    char errstr[512];
    int rc = 1;
    serve_state s = {0};
    catalog *cat = NULL;
    char *admin_token = NULL;
    char snapshot_work_dir[1024];
    snapshot_scheduler *snapshots = NULL;
    http_server *http = NULL;
    struct event *sigint_ev = NULL, *sigterm_ev = NULL, *wake_ev = NULL, *drain_ev = NULL;

    signal(SIGPIPE, SIG_IGN);
    s.base = event_base_new();
    if (!s.base) {
        fprintf(stderr, "lootlog: event_base_new failed\n");
        return 1;
    }
    cat = catalog_load(opt->catalog_path, errstr, sizeof errstr);
    if (!cat) goto fail;
    s.fold_waiters = waiters_new(errstr, sizeof errstr);
    if (!s.fold_waiters) goto fail;

    producer_config pc = {
        .brokers = opt->brokers,
        .topic = opt->topic,
        .delivery_timeout_ms = opt->delivery_timeout_ms,
        .kafka_props = opt->kafka_props,
        .kafka_prop_count = opt->kafka_prop_count,
    };
    s.prod = producer_new(s.base, &pc, errstr, sizeof errstr);
    if (!s.prod) goto fail;

    if (!opt->no_fold) {
        consumer_config cc = {
            .brokers = opt->brokers,
            .topic = opt->topic,
            .db_dir = opt->db,
            .fold = {.guild_capacity = opt->guild_capacity},
            .threads = opt->fold_threads,
            .nice = opt->fold_nice,
            .partition_first = opt->partition_first,
            .partition_last = opt->partition_last,
            .batch_max_events = (size_t)opt->batch_events,
            .batch_max_ms = opt->batch_ms,
            .kafka_props = opt->kafka_props,
            .kafka_prop_count = opt->kafka_prop_count,
            .on_commit = notify_fold_commit,
            .on_commit_opaque = s.fold_waiters,
        };
        s.fold_config = cc;
        s.db_path = opt->db;
        s.fold = consumer_start(&cc, errstr, sizeof errstr);
        if (!s.fold) goto fail;
        s.readers = store_set_new(opt->db, errstr, sizeof errstr);
        if (!s.readers) goto fail;
    }
    if (load_admin_token(opt, &admin_token, errstr, sizeof errstr)) goto fail;
    if (opt->snapshot_url && !opt->no_fold) {
        snapshot_config sc = snapshot_config_from(opt, cat, snapshot_work_dir,
                                                  sizeof snapshot_work_dir);
        snapshots = snapshot_scheduler_start(&sc, opt->snapshot_interval_s, errstr, sizeof errstr);
        if (!snapshots) goto fail;
    }

    routes_config rc_config = {
        .base = s.base,
        .cat = cat,
        .prod = s.prod,
        .readers = s.readers,
        .fold = s.fold,
        .default_wait_ms = opt->wait_ms,
        .ready_max_lag = opt->ready_max_lag,
        .partition_first = opt->partition_first,
        .partition_last = opt->partition_last,
        .admin_token = admin_token,
        .swap_db = swap_state,
        .swap_opaque = &s,
        .snapshots = snapshots,
    };
    s.rts = routes_new(&rc_config, errstr, sizeof errstr);
    if (!s.rts) goto fail;
    if (!opt->no_http) {
        http_config hc = {.address = opt->http, .request_timeout_s = 30};
        http = http_server_new(s.base, &hc, routes_handle, s.rts, errstr, sizeof errstr);
        if (!http) goto fail;
    }

    wake_ev = event_new(s.base, waiters_fd(s.fold_waiters), EV_READ | EV_PERSIST,
                        on_fold_commit_fd, &s);
    sigint_ev = evsignal_new(s.base, SIGINT, on_signal, &s);
    sigterm_ev = evsignal_new(s.base, SIGTERM, on_signal, &s);
    if (!wake_ev || !sigint_ev || !sigterm_ev || event_add(wake_ev, NULL) ||
        event_add(sigint_ev, NULL) || event_add(sigterm_ev, NULL)) {
        snprintf(errstr, sizeof errstr, "registering loop events failed");
        goto fail;
    }
    log_info("serve", "lootlog %s: http %s, brokers %s, topic %s, db %s%s", LOOTLOG_VERSION,
             opt->no_http ? "off" : opt->http, opt->brokers, opt->topic, opt->db,
             opt->no_fold ? " (no fold)" : "");

    event_base_dispatch(s.base);

    /* Shutdown: stop taking connections; keep the loop running until in-flight produces
     * have their delivery reports (each waiting client gets its answer); fail what is
     * left in the producer; answer parked requests; let the loop flush those replies;
     * only then free the HTTP server, which frees its requests. */
    http_server_stop_accepting(http);
    s.drain_deadline_ms = monotonic_ms() + 5000;
    drain_ev = event_new(s.base, -1, EV_PERSIST, on_drain_tick, &s);
    struct timeval tick = {0, 20 * 1000};
    if (drain_ev && event_add(drain_ev, &tick) == 0 && producer_outstanding(s.prod) > 0)
        event_base_dispatch(s.base);
    rc = 0;
    goto cleanup;
fail:
    fprintf(stderr, "lootlog: %s\n", errstr);
cleanup:
    if (drain_ev) event_free(drain_ev);
    drain_ev = NULL;
    producer_free(s.prod, 2000); /* remaining deliveries fail: their clients get a 503 */
    routes_free(s.rts);          /* parked requests are answered */
    s.rts = NULL;                /* fold commits during the flush below must not reach it */
    if (http) {
        struct timeval flush = {0, 200 * 1000};
        event_base_loopexit(s.base, &flush);
        event_base_dispatch(s.base);
    }
    http_server_free(http);
    snapshot_scheduler_stop(snapshots);
    consumer_stop(s.fold);
    store_set_free(s.readers);
    free(admin_token);
    if (drain_ev) event_free(drain_ev);
    if (wake_ev) event_free(wake_ev);
    if (sigint_ev) event_free(sigint_ev);
    if (sigterm_ev) event_free(sigterm_ev);
    waiters_free(s.fold_waiters);
    catalog_free(cat);
    event_base_free(s.base);
    if (rc == 0) log_info("serve", "stopped cleanly");
    return rc;
}

int main(int argc, char **argv) {
    options opt;
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        fputs(usage_text, argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("lootlog %s\n", LOOTLOG_VERSION);
        return 0;
    }
    const char *verb = argv[1];
    curl_global_init(CURL_GLOBAL_DEFAULT); /* once, before any thread: WebHDFS and --swap */
    /* SQLite's memory statistics take one process-wide mutex on every allocation: the
     * fold threads, each with its own connections, would queue on it. Nothing reads
     * them, so they are off (before any connection opens). */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    /* One malloc arena per fold thread keeps each thread's freed memory to itself, and
     * with a thread per partition the resident set grows with the partitions; two arenas
     * serve them as fast (bench/: replay rate unchanged) with far less held memory. */
    mallopt(M_ARENA_MAX, 2);
    int rc = parse_options(argc - 1, argv + 1, &opt);
    if (rc) return rc > 0 ? 0 : 2;
    if (strcmp(verb, "serve") == 0) return cmd_serve(&opt);
    if (strcmp(verb, "migrate") == 0) return cmd_migrate(&opt);
    if (strcmp(verb, "gen") == 0) return cmd_gen(&opt);
    if (strcmp(verb, "replay") == 0) return cmd_replay(&opt);
    if (strcmp(verb, "snapshot") == 0) return cmd_snapshot(&opt);
    if (strcmp(verb, "restore") == 0) return cmd_restore(&opt);
    fprintf(stderr, "lootlog: unknown command '%s'\n%s", verb, usage_text);
    return 2;
}
