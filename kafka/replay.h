/* replay: rebuilds state into a new folder of per-partition stores by folding the topic from a start point
 * (offset or time) to an end point (offset, time, or the end of the log as it was when
 * the replay began), with the same fold code as the live consumer. Optionally compares
 * the result with a live database at the same offsets. */
#ifndef LOOTLOG_REPLAY_H
#define LOOTLOG_REPLAY_H

#include "state/fold.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *brokers;
    const char *topic;
    const char *db_path;      /* the new folder of stores; must not hold state yet */
    fold_config fold;
    int64_t from_offset;      /* -1: from the beginning (or from_time) */
    int64_t from_time_ms;     /* -1: unused */
    int64_t until_offset;     /* -1: unused; else stop before this offset */
    int64_t until_time_ms;    /* -1: unused; else stop before the first record at/after */
    const char *verify_path;  /* live database to compare with, or NULL */
    size_t batch_events;
    int threads;              /* fold threads; 0: one per partition (at most 32) */
    /* memory for the guild-side events noted to prune the outboxes (guild_event_set);
     * past it the prune reads the new stores after the fold */
    size_t prune_memory_bytes;
    const char *const *kafka_props;
    size_t kafka_prop_count;
} replay_config;

typedef struct {
    uint64_t events;          /* records folded */
    uint64_t applied, rejected, duplicates, dead_letters, pending;
    uint64_t emitted_missing; /* emitted events not in the log: left in the outboxes */
    double seconds;
    uint64_t players_compared; /* with verify_path */
    uint64_t players_differing;
} replay_summary;

/* Runs the replay, printing a progress line on a terminal and a summary. When
 * verify_path is set, players that differ are printed one per line. Returns 0 (and 1
 * when verification found differences), or -1 with errstr. */
int replay_run(const replay_config *config, replay_summary *summary, char *errstr,
               size_t errstr_size);

/* Parses "2026-11-29T18:00:00Z" (fraction and offset allowed) to ms since the epoch.
 * Returns 0 or -1. */
int replay_parse_time(const char *text, int64_t *ms);

#endif
