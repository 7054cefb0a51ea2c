/* lootlog: one binary, several verbs (docs/design.md, "CLI"). main reads the options
 * through the table of commands/options.c (flags, then LOOTLOG_<NAME> from the
 * environment, then defaults), sets what is process-wide, and hands the verb to its
 * command (commands/), found in the table below. */
#include "commands/commands.h"
#include "lib/log.h"

#include <curl/curl.h>
#include <sqlite3.h>
#ifdef LOOTLOG_MIMALLOC
#include <mimalloc.h>
#endif
#include <stdio.h>
#include <string.h>

#ifndef LOOTLOG_VERSION
#define LOOTLOG_VERSION "0.0.0"
#endif

/* Every verb and its command. The verbs' names, help and options are in the option
 * table (commands/options.c). */
static const struct {
    unsigned verb;
    int (*run)(cli_options *opt);
} verbs[] = {
    {CLI_SERVE, command_serve},       {CLI_TOPIC, command_topic},
    {CLI_MIGRATE, command_migrate},   {CLI_GEN, command_gen},
    {CLI_REPLAY, command_replay},     {CLI_SNAPSHOT, command_snapshot},
    {CLI_RESTORE, command_restore},   {CLI_OPTIONS, command_options},
};

int main(int argc, char **argv) {
    cli_options opt;
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        cli_print_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("lootlog %s\n", LOOTLOG_VERSION);
        return 0;
    }
    unsigned verb = cli_verb_find(argv[1]);
    if (!verb) {
        fprintf(stderr, "lootlog: unknown verb '%s' (lootlog --help lists them)\n", argv[1]);
        return 2;
    }
    int rc = cli_parse(verb, argc - 1, argv + 1, &opt);
    if (rc) return rc == 1 ? 0 : 2;
    if (verb != CLI_TOPIC && opt.positional_count) {
        fprintf(stderr, "lootlog: unexpected argument '%s'\n", opt.positional[0]);
        return 2;
    }
    log_set_format(opt.log_format == CLI_LOG_JSON ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT);
    curl_global_init(CURL_GLOBAL_DEFAULT); /* once, before any thread: WebHDFS and --swap */
    /* SQLite's memory statistics take one process-wide mutex on every allocation: the
     * fold threads, each with its own connections, would queue on it. Nothing reads
     * them, so they are off (before any connection opens). */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
#ifdef LOOTLOG_MIMALLOC
    /* serve lives within a memory bound: mimalloc (meson.build says why) gives its freed
     * pages back at once rather than 25 ms later. Serve's peak RSS folding 2M events:
     * 128-131 -> 112-117 MB (glibc's malloc: 114-121 MB); with 1M players 100 -> 82 MB.
     * A replay, one-shot, keeps its freed pages instead: librdkafka's fetch buffers and
     * the batches' arrays are freed and allocated again all the time, and each page given
     * back was faulted in again (a 2.02M-event replay: 168-178k minor faults -> 120-126k,
     * median CPU 6.55 -> 6.28 s, peak RSS 392-422 -> 470-495 MB; docs/benchmarks.md,
     * session 16). Giving them back at once had cost it 10 % (session 14). */
    if (verb == CLI_SERVE) mi_option_set(mi_option_decommit_delay, 0);
    if (verb == CLI_REPLAY) mi_option_set(mi_option_allow_decommit, 0);
#endif
    for (size_t i = 0; i < sizeof verbs / sizeof verbs[0]; i++)
        if (verbs[i].verb == verb) return verbs[i].run(&opt);
    return 2;
}
