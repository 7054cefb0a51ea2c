/* options: every option of every lootlog verb, declared once in one table (flag,
 * environment variable, default, help, the verbs it applies to), as Redis's config.c
 * declares its settings. Parsing, `lootlog --help`, `lootlog VERB --help` and the
 * options table of docs/operations.md (`lootlog options --markdown`) all read it. */
#ifndef LOOTLOG_CLI_OPTIONS_H
#define LOOTLOG_CLI_OPTIONS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CLI_MAX_KAFKA_PROPS 64
#define CLI_MAX_POSITIONAL 4
#define CLI_MAX_OPTIONS 64

/* The verbs, as bits: an option row names the verbs it applies to. */
enum {
    CLI_SERVE = 1 << 0,
    CLI_TOPIC = 1 << 1,
    CLI_REPLAY = 1 << 2,
    CLI_MIGRATE = 1 << 3,
    CLI_SNAPSHOT = 1 << 4,
    CLI_RESTORE = 1 << 5,
    CLI_GEN = 1 << 6,
    CLI_OPTIONS = 1 << 7,
};

typedef enum { CLI_LOG_TEXT = 0, CLI_LOG_JSON = 1 } cli_log_format;

/* Every verb's settings after parsing. Fields a verb does not use keep their defaults. */
typedef struct {
    const char *http;
    const char *brokers;
    const char *topic;
    const char *db;
    const char *catalog_path;
    const char *snapshot_url;
    const char *admin_token_file;
    const char *admin_token; /* from the environment only */
    int snapshot_interval_s;
    int partition_first, partition_last; /* serve --partitions A-B; -1: all */
    int no_fold, no_http;
    const char *group;     /* serve --group: the consumer group; NULL: none */
    const char *advertise; /* serve --advertise; NULL: --http */
    int no_forward;
    int delivery_timeout_ms;
    int wait_ms;
    int64_t guild_capacity;
    int64_t ready_max_lag;
    int batch_events, batch_ms;
    int fold_threads;
    int prune_memory_mib; /* replay --prune-memory-mib */
    int fold_nice;
    int fold_live_nice;
    int max_connections;
    int read_timeout_ms;
    int max_parked; /* serve --max-parked */
    int log_format; /* cli_log_format */
    int access_log;
    double gen_rate, gen_duration_s;
    int gen_users, gen_connections;
    int64_t gen_seed;
    const char *gen_user_prefix;
    int64_t from_offset, until_offset, from_time_ms, until_time_ms;
    const char *verify_path;
    int swap;
    int migrate_to;
    int retain;
    const char *snapshot_id;
    int topic_partitions;  /* topic ensure --partitions; 0: not given */
    int topic_replication; /* topic ensure --replication; -1: the broker's default */
    int markdown;
    const char *kafka_props[CLI_MAX_KAFKA_PROPS];
    size_t kafka_prop_count;
    const char *positional[CLI_MAX_POSITIONAL]; /* arguments that are not options */
    size_t positional_count;
    unsigned char given[CLI_MAX_OPTIONS]; /* per table row: set by a flag or the environment */
} cli_options;

/* The verb bit for name ("serve"), or 0 when lootlog has no such verb. */
unsigned cli_verb_find(const char *name);

/* Fills opt with the defaults, then LOOTLOG_<NAME> values from the environment, then the
 * flags in argv (argv[0] is the verb's name), each only for the options of verb. Returns
 * 0; 1 after printing the verb's help (--help); or 2 after a one-line error on stderr
 * naming the option (the exit status lootlog then returns). */
int cli_parse(unsigned verb, int argc, char **argv, cli_options *opt);

/* 1 when the option with this flag name was given for the verb (flag or environment). */
int cli_given(const cli_options *opt, unsigned verb, const char *flag);

/* `lootlog --help`: the verbs and every option. */
void cli_print_usage(FILE *out);

/* `lootlog VERB --help`: the verb's synopsis and its options. */
void cli_print_verb_help(unsigned verb, FILE *out);

/* The options table of docs/operations.md, in Markdown. */
void cli_print_markdown(FILE *out);

#endif
