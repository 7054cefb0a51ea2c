/* fold_engine: the fold engine. Reads the topic from the offsets stored in each partition's
 * store (never from Kafka's committed offsets), folds each partition into its own store
 * on a pool of fold threads, in batches bounded by count and time, and commits state,
 * outcomes and the partition's next offset together. serve runs it without an end;
 * replay runs it over fixed slices of the log until each partition reaches its end.
 * Which partitions it folds: a fixed range, or (serve --group) those a Kafka fold_engine
 * group assigns this node, taken and given up as the group rebalances. */
#ifndef LOOTLOG_KAFKA_FOLD_ENGINE_H
#define LOOTLOG_KAFKA_FOLD_ENGINE_H

#include "state/fold.h"
#include "lib/histogram.h"
#include "state/store.h"

#include <stddef.h>
#include <stdint.h>

typedef struct fold_engine fold_engine;

/* With a group, a node's client id is this prefix and its HTTP address (HOST:PORT). */
#define FOLD_ENGINE_CLIENT_ID_PREFIX "lootlog@"

/* Where an opened partition's state came from. */
typedef enum {
    FOLD_ENGINE_SOURCE_LOCAL = 0, /* the store already here: caught up from its offset */
    FOLD_ENGINE_SOURCE_SNAPSHOT,  /* restored from an HDFS snapshot, then caught up */
    FOLD_ENGINE_SOURCE_LOG,       /* no store anywhere: folded from the log's start */
} fold_engine_partition_source;

typedef struct {
    const char *brokers;
    const char *topic;
    const char *db_dir;  /* the folder of per-partition stores (created if missing) */
    fold_config fold;
    int partition_first; /* -1: every partition of the topic (or of the group's choice) */
    int partition_last;
    int threads;             /* fold threads; 0: one per partition (at most 32) */
    int nice;                /* niceness of the fold threads (with live_nice: while catching up) */
    /* niceness of a fold thread while its partitions keep up (none more than
     * FOLD_CATCH_UP_LAG behind); when it differs from nice, each worker has a thread at
     * each and the one its partitions ask for folds (serve: a write shows soon even on a
     * busy machine, a backlog still lets reads go first) */
    int live_nice;
    size_t batch_max_events; /* events per transaction at most */
    /* and at most this many players in memory (cached and the batch's), per partition;
     * 0: FOLD_BATCH_MAX_PLAYERS */
    size_t batch_max_players;
    int store_cache_kib;     /* each writer's SQLite page cache; 0: STORE_DEFAULT_CACHE_KIB */
    size_t fetch_queue_kbytes; /* records fetched ahead, per partition; 0: 512 */
    int batch_max_ms;        /* and no longer than this before committing */
    /* Fixed slices (replay): per partition, where to start when its store holds no
     * offset (-1: the log's start) and where to stop (-1: never). NULL: no slices. */
    const int64_t *start_offsets; /* [STORE_MAX_PARTITIONS] */
    const int64_t *end_offsets;   /* [STORE_MAX_PARTITIONS] */
    /* extra librdkafka properties, "key=value" strings */
    const char *const *kafka_props;
    size_t kafka_prop_count;
    /* Replay: the folder is new and read by no one before the end, so the stores are
     * not synced while the fold goes (a crash means replaying again); each fold thread
     * syncs its stores to disk once it has folded them (store_sync_to_disk), before the
     * engine says it has finished. Meanwhile each store is marked unfinished
     * (store_set_unfinished), which fold.write_back needs too; the mark is removed once
     * its fold is committed, flushed and synced, and left on a store whose changes were
     * lost. */
    int sync_at_end;
    /* Produce the events the fold emits (the outbox) to the topic: serve. Replay leaves
     * them in the stores' outboxes (replay_run keeps only those missing from the log). */
    int emit;
    /* Join this consumer group (NULL: fold the fixed range above). advertise: this node's
     * HTTP address for the other nodes, carried in the client id. */
    const char *group_id;
    const char *advertise;
    /* With a group, called on the engine thread before a newly assigned partition's store
     * opens: restore it from a snapshot further on than local_offset (the local store's
     * next offset, -1: none). Returns 1 restored (snapshot_id >= 32 bytes, *offset), 0
     * nothing better, -1 with errstr (the engine goes on with what it has). NULL: none. */
    int (*restore_partition)(void *opaque, int32_t partition, int64_t local_offset,
                             char *snapshot_id, int64_t *offset, char *errstr,
                             size_t errstr_size);
    void *restore_opaque;
    /* Called on a fold thread for each record of a guild-side type (codec_type_is_emitted)
     * it folded, whatever its outcome (dead letters aside): what the partition's history
     * holds under user_id once committed (replay's outbox prune). NULL: none. */
    void (*on_guild_event)(void *opaque, int32_t partition, const char *user_id,
                           const char *event_id);
    void *on_guild_event_opaque;
    /* With end offsets: called on a fold thread for each of its partitions folded whole
     * (committed and flushed), with the fold's own connection to its store, once every
     * fold thread has reached its partitions' ends (what on_guild_event noted is then
     * complete). With sync_at_end the store is synced after it (and, when the thread
     * had to wait for others, once before too). Replay drops there the outbox rows the
     * log already holds. Returns 0, or -1 with errstr: the fold fails and the store keeps
     * its unfinished mark. NULL: none. */
    int (*at_end)(void *opaque, int32_t partition, store *st, char *errstr, size_t errstr_size);
    void *at_end_opaque;
    /* Called on a fold thread after every commit, e.g. to wake the HTTP loop. */
    void (*on_commit)(void *opaque);
    void *on_commit_opaque;
    histogram *commit_seconds; /* when not NULL, times every commit (server/metrics) */
    /* With two speeds, called on a fold thread as it hands its worker to the other thread
     * (force 1) and every COLLECT_IDLE_MS while it waits (force 0): the allocator's
     * per-thread heap takes back what the other thread freed of its blocks and gives
     * empty pages back (mimalloc: a block freed by another thread returns to its page only
     * when the owning thread looks). NULL: nothing. */
    void (*collect_memory)(int force);
} fold_engine_config;

typedef struct {
    int assigned;           /* partitions assigned and fetching */
    int finished;           /* with end offsets: every partition reached its end */
    int failed;             /* the engine stopped on an error it cannot retry */
    size_t partition_count; /* of the topic, once known */
    int64_t lag;            /* sum over partitions of high watermark - next offset; -1 unknown */
    uint64_t batches, applied, rejected, duplicates, dead_letters, pending;
    int threads_catching_up; /* with two speeds: fold threads at config.nice, not live_nice */
    uint64_t speed_changes;  /* with two speeds: times a fold thread changed speed */
} fold_engine_stats;

/* Starts the engine (its threads open the stores). config strings and arrays must
 * outlive the consumer. NULL with errstr on failure (bad config). */
fold_engine *fold_engine_start(const fold_engine_config *config, char *errstr, size_t errstr_size);

/* A snapshot of the counters, readable from any thread. */
void fold_engine_get_stats(fold_engine *c, fold_engine_stats *stats);

/* The error that stopped the engine (stats.failed), as a sentence; "" when none. */
void fold_engine_error(fold_engine *c, char *errstr, size_t errstr_size);

/* How many partitions' last commit failed (disk full, read-only, I/O error: the batch
 * is rolled back and read again), with the latest such error in errstr ("" when 0). */
int fold_engine_commit_error(fold_engine *c, char *errstr, size_t errstr_size);

/* Records of event type type folded and committed so far (valid events, any outcome);
 * any thread. */
uint64_t fold_engine_folded_of_type(fold_engine *c, int type);

/* The next offset committed for partition, or -1 before anything was; any thread. */
int64_t fold_engine_next_offset(fold_engine *c, int32_t partition);

/* The partition's lag as last measured (high watermark - next offset), or -1 when
 * unknown or not folded here; any thread. */
int64_t fold_engine_partition_lag(fold_engine *c, int32_t partition);

/* 1 when partition is folded here and assigned to this node (reads of it are served
 * here); any thread. */
int fold_engine_owns(fold_engine *c, int32_t partition);

/* 0 while partition is not owned here; else a number that changes each time its store
 * is opened anew (store_set_fence). Any thread. */
uint64_t fold_engine_partition_generation(fold_engine *c, int32_t partition);

typedef struct {
    fold_engine_partition_source source;
    int64_t opened_at;   /* its next offset when it was opened (-1: none) */
    char snapshot_id[32]; /* with FOLD_ENGINE_SOURCE_SNAPSHOT */
} fold_engine_partition_info_t;

/* How an owned partition was opened. Returns 1, or 0 when it is not owned here. */
int fold_engine_partition_info(fold_engine *c, int32_t partition, fold_engine_partition_info_t *info);

/* "local", "snapshot", "log". */
const char *fold_engine_source_name(fold_engine_partition_source source);

/* Asks the threads to finish their batches, joins them, closes the stores and frees. */
void fold_engine_stop(fold_engine *c);

/* ---- when a partition's batch commits (pure, so that it can be tested alone) ----
 * A batch commits when its worker's queue ran dry or it is batch_max_ms old, which keeps
 * a write visible within tens of ms. Except while the partition drains a backlog (more
 * than FOLD_CATCH_UP_LAG records behind the newest offset Kafka reported): then a write
 * waits for the backlog anyway, and every commit rewrites the B-tree pages it touched,
 * so the batch grows until it is FOLD_CATCH_UP_BATCH_MS old or holds
 * FOLD_CATCH_UP_BATCH_PLAYERS players (the players bound memory: a backlog of new
 * players fills a batch with them). serve draining 2.28M gen events, alternating runs:
 * 20.4-24.2 s to catch up and 30-38 s of CPU with 20 ms batches, 14.5-20.2 s and 20-28 s
 * with these; 1M new players: the same time and peak RSS either way. players is the
 * batch's own (fold_partition_batch_players): counted with the players cached between
 * batches (2,000 once warm) it ended every catch-up batch at its first look. Draining
 * 3M gen events: 595 commits and 26-27 s of CPU before, 340 and 22-23 s after; 1M new
 * players: 89-94 MB peak RSS either way. The event and player caps of the fold
 * (batch_max_events, FOLD_BATCH_MAX_PLAYERS) commit whatever this says. */
#define FOLD_CATCH_UP_LAG 10000
#define FOLD_CATCH_UP_BATCH_MS 250
#define FOLD_CATCH_UP_BATCH_PLAYERS 2000

typedef struct {
    size_t pending;    /* events in the batch */
    size_t players;    /* players the batch changed */
    int64_t age_ms;    /* since its first event */
    int queue_ran_dry; /* the worker took every record its queue held */
} fold_engine_batch;

typedef enum {
    FOLD_BATCH_WAIT,                     /* keep folding into it */
    FOLD_BATCH_COMMIT,                   /* commit now */
    FOLD_BATCH_COMMIT_UNLESS_CATCHING_UP /* commit unless more than FOLD_CATCH_UP_LAG behind */
} fold_engine_batch_decision;

fold_engine_batch_decision fold_engine_batch_rule(const fold_engine_batch *batch,
                                                  int batch_max_ms);

#endif
