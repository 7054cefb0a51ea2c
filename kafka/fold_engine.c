/* fold_engine: the fold engine. Partitions are always fetched from the offsets their
 * stores hold, because those offsets commit in the same transaction as the state they
 * produced — that, not Kafka's committed offsets (never used), is what makes a crash at
 * any instant lose nothing and apply nothing twice. Which partitions: a fixed range
 * (assigned explicitly), or with config.group_id those the consumer group gives this
 * node (cooperative-sticky; see "the group" below).
 *
 * Threads: an engine thread waits for the topic, opens one store per partition, hands
 * the partitions round-robin to the fold threads (each partition's queue is forwarded
 * to its thread's queue, so one thread alone ever folds a partition) and then watches
 * errors, lag and WAL checkpoints. Checkpoints run there, on connections of their own,
 * so no fold commit ever pays for one.
 *
 * Outbox: with config.emit, each fold thread produces the rows its commits added to its
 * partitions' outboxes (an idempotent producer of the engine's own) and deletes them,
 * in a small transaction of its own, once Kafka acknowledged them. A crash anywhere in
 * between produces a row again at the next start; its receiver dedupes it by id.
 *
 * A serve that starts behind the log (a new or restored store) folds again exchanges
 * whose events are in the log already, and its outboxes fill with them. So nothing is
 * produced until every partition here has caught up with the log's end as it was at
 * the start; each fold thread then drops the rows whose event the receiving partition's
 * store already holds (read through reader connections of its own), and produces the
 * rest: only what is missing from the log goes out. */
#define _GNU_SOURCE /* gettid, setpriority on a thread */
#include "kafka/fold_engine.h"
#include "lib/clock.h"

#include "kafka/config.h"
#include "kafka/outbox_prune.h"
#include "lib/log.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define CHECKPOINT_EVERY_MS 1000
#define RETRY_PAUSE_MS 500
#define WORKER_TAKE_MAX 1024 /* records taken from the queue per round */
#define FOLD_DEFAULT_THREADS_MAX 32

typedef struct worker worker;

/* A worker's two speeds (fold_engine_config.live_nice): which of its threads runs it. */
enum { SPEED_CATCH_UP = 0, SPEED_LIVE = 1, SPEED_COUNT };
#define SPEED_CHECK_MS 100 /* a worker's speed is looked at this often, and kept this long */
#define COLLECT_IDLE_MS 200 /* a waiting fold thread has its heap collected this often */

/* One of a worker's threads: the one at config.nice, or the one at config.live_nice. */
typedef struct {
    worker *w;
    int speed;
    pthread_t thread;
    int started;
} fold_runner;

/* One partition being folded. Owned by its worker's thread after the start. */
typedef struct {
    int32_t partition;
    store *st;
    store *checkpointer; /* the engine thread's connection (none with sync_at_end) */
    fold_partition *fold;
    worker *owner;
    int64_t resume_offset; /* where to read from after a failure (committed, or start) */
    int64_t next;          /* the offset after the last record folded (-1: none yet) */
    int64_t end;           /* stop before this offset; -1: never */
    int done;
    int commit_failing; /* the last commit failed (disk full, I/O error) */
    int whole;          /* at the fold thread's end: committed and flushed, nothing lost */
    int64_t batch_started_ms;
    uint64_t counts[FOLD_PENDING + 1];
    uint64_t type_counts[EVENT_TYPE_COUNT]; /* this batch's records by event type */
    /* outbox (with config.emit): rows up to produced_seq are with the producer; acked
     * holds the rows Kafka acknowledged, to delete (ack_lock: the delivery reports come
     * from the thread that polls the producer) */
    int64_t produced_seq;
    atomic_int outbox_retry; /* a delivery failed: produce every row still there again */
    pthread_mutex_t ack_lock;
    int64_t *acked;
    size_t acked_count, acked_cap;
    int64_t catchup_end; /* the log's end at the start (-1: not known yet) */
    int pruned;          /* the rows already in the log were dropped: produce freely */
    atomic_int emit_ok;  /* with a group: this partition caught up, its outbox may go out */
    int open;            /* store open and folded here (the engine thread's view) */
    fold_engine_partition_source source; /* where its state came from when it was opened */
    int64_t opened_at;   /* its next offset then */
    char snapshot_id[32];
    uint64_t opening;    /* counts the openings of this slot (outbox_message) */
} part;

struct worker {
    fold_engine *c;
    /* With two speeds, a worker has a thread for each and one of them at a time runs its
     * loop (holder, under park_lock): a thread's niceness can be raised without privilege
     * but not lowered again, so the way back from catching up is the other thread. */
    fold_runner runners[SPEED_COUNT];
    int holder;
    int began; /* the holder drained the outboxes left by a previous run */
    int started; /* the threads were started */
    rd_kafka_queue_t *queue;
    part *parts[STORE_MAX_PARTITIONS];
    size_t part_count;
    int64_t last_position_check_ms;
    store *receivers[STORE_MAX_PARTITIONS]; /* readers of other stores (outbox pruning) */
    part *mine[STORE_MAX_PARTITIONS];       /* by partition: those this thread folds */
    /* With a group, the engine thread changes parts/mine only while the worker is parked:
     * it sets park_request; the worker commits its batches, says parked and waits. */
    atomic_int park_request;
    pthread_mutex_t park_lock;
    pthread_cond_t park_cond;
    int parked, exited;
    int nice_extra; /* replay: added to config.nice, by the work it has (share_by_work) */
};

struct fold_engine {
    fold_engine_config config;
    rd_kafka_t *rk;
    rd_kafka_t *outbox_rk; /* the producer of emitted events (config.emit) */
    atomic_int caught_up;  /* every partition reached its catchup_end: outboxes may go out */
    rd_kafka_queue_t *main_queue;
    pthread_t engine;
    int engine_started;
    atomic_int stopping;
    part parts[STORE_MAX_PARTITIONS]; /* by partition number; .open: folded here */
    size_t part_count;                /* open ones */
    worker *workers;
    int worker_count;
    pthread_mutex_t error_lock;
    char error[512];
    char commit_error[512]; /* the last failed commit's reason (error_lock) */
    atomic_int commits_failing; /* partitions whose last commit failed */
    /* published for other threads */
    atomic_int assigned, finished, failed;
    atomic_int workers_running;
    int two_speeds;                /* config.live_nice != config.nice */
    atomic_int workers_catching_up; /* two speeds: workers held by their catch-up thread */
    atomic_ullong speed_changes;
    /* fold threads past their partitions' ends, for config.at_end (end_lock, end_cond) */
    pthread_mutex_t end_lock;
    pthread_cond_t end_cond;
    int workers_folded;
    atomic_size_t partition_count;
    atomic_llong lag;
    atomic_ullong batches, applied, rejected, duplicates, dead_letters, pending;
    atomic_ullong folded_by_type[EVENT_TYPE_COUNT];
    atomic_llong next_offset[STORE_MAX_PARTITIONS];
    atomic_llong partition_lag[STORE_MAX_PARTITIONS]; /* -1: unknown or not folded here */
    atomic_int owned[STORE_MAX_PARTITIONS]; /* store open, partition assigned: reads here */
    atomic_ullong generation[STORE_MAX_PARTITIONS]; /* counts the partition's openings */
    pthread_mutex_t info_lock; /* guards parts[].source/opened_at/snapshot_id for readers */
    int32_t retry_open[STORE_MAX_PARTITIONS]; /* group: assigned, but opening failed */
    size_t retry_open_count;
    int64_t last_retry_ms;
    int32_t wake_next; /* the partition wake_fetchers asks about next */
    int64_t last_wake_ms;
};

/* Records the error that stops the engine. */
static void set_failed(fold_engine *c, const char *what) {
    pthread_mutex_lock(&c->error_lock);
    snprintf(c->error, sizeof c->error, "%s", what);
    pthread_mutex_unlock(&c->error_lock);
    log_error("fold", "%s", what);
    atomic_store(&c->failed, 1);
}

/* ---------------------------------------------------------------- fold threads */

/* One emitted event on its way to Kafka: the delivery report finds its row by this. */
typedef struct {
    part *pt;
    uint64_t opening; /* pt->opening when produced: a report for an earlier opening of
                         the partition's store must not delete a row of this one */
    int64_t seq;
} outbox_message;

/* librdkafka's delivery report (on the thread that polls outbox_rk). */
static void outbox_delivered(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque) {
    (void)rk;
    (void)opaque;
    outbox_message *om = msg->_private;
    if (!om) return;
    part *pt = om->pt;
    if (om->opening != pt->opening || !pt->open) {
        /* given up (and perhaps taken again) since: its rows are another store's now */
    } else if (msg->err) {
        log_warn("fold", "partition %d: emitted event not delivered (%s); producing it again",
                 (int)pt->partition, rd_kafka_err2str(msg->err));
        atomic_store(&pt->outbox_retry, 1);
    } else {
        pthread_mutex_lock(&pt->ack_lock);
        if (pt->acked_count == pt->acked_cap) {
            size_t cap = pt->acked_cap ? pt->acked_cap * 2 : 64;
            int64_t *bigger = realloc(pt->acked, cap * sizeof *bigger);
            if (bigger) {
                pt->acked = bigger;
                pt->acked_cap = cap;
            }
        }
        /* Out of memory: the row stays, and is produced again at the next start. */
        if (pt->acked_count < pt->acked_cap) pt->acked[pt->acked_count++] = om->seq;
        pthread_mutex_unlock(&pt->ack_lock);
    }
    free(om);
}

typedef struct {
    fold_engine *c;
    part *pt;
    int full; /* the producer's queue is full: stop for now */
} outbox_walk;

static int produce_outbox_row(void *arg, const store_outbox_row *r) {
    outbox_walk *walk = arg;
    outbox_message *om = malloc(sizeof *om);
    if (!om) return -1;
    om->pt = walk->pt;
    om->opening = walk->pt->opening;
    om->seq = r->seq;
    rd_kafka_resp_err_t err = rd_kafka_producev(
        walk->c->outbox_rk, RD_KAFKA_V_TOPIC(walk->c->config.topic),
        RD_KAFKA_V_KEY(r->msg_key, strlen(r->msg_key)),
        RD_KAFKA_V_VALUE((void *)r->payload, strlen(r->payload)),
        RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_OPAQUE(om), RD_KAFKA_V_END);
    if (err) {
        free(om);
        if (err == RD_KAFKA_RESP_ERR__QUEUE_FULL) walk->full = 1;
        else log_warn("fold", "producing an emitted event: %s", rd_kafka_err2str(err));
        return -1;
    }
    walk->pt->produced_seq = r->seq;
    return 0;
}

typedef struct {
    fold_engine *c;
    worker *w;
} receiver_lookup;

/* outbox_prune's receiver_for: the worker's reader of partition's store, opened once. */
static store *receiver_here(void *arg, int32_t partition) {
    receiver_lookup *look = arg;
    fold_engine *c = look->c;
    /* Without a group only partitions folded here have stores. With one, any local store
     * will do, even a stale copy of a partition owned elsewhere now: it holds only events
     * that were in the log, so a row it holds is in the log. */
    if (!c->config.group_id && !c->parts[partition].open) return NULL;
    store **receiver = &look->w->receivers[partition];
    if (!*receiver) {
        char path[4096], why[256];
        if (store_path(c->config.db_dir, partition, path, sizeof path) ||
            !(*receiver = store_open(path, partition, STORE_READER, why, sizeof why)))
            return NULL; /* kept: produced again, deduped by its receiver */
    }
    return *receiver;
}

/* Once caught up: drops the partition's outbox rows whose event the receiving store
 * here already holds (they are in the log). A failure only keeps rows. */
static void prune_outbox(fold_engine *c, part *pt) {
    receiver_lookup look = {.c = c, .w = pt->owner};
    outbox_lookup lookup = {.receiver_for = receiver_here, .receiver_arg = &look};
    outbox_prune_result pruned;
    char why[512];
    if (outbox_prune(pt->st, (int32_t)atomic_load(&c->partition_count), &lookup, &pruned, why,
                     sizeof why))
        log_warn("fold", "partition %d: pruning the outbox: %s", (int)pt->partition, why);
    else if (pruned.dropped)
        log_info("fold", "partition %d: %zu emitted events were in the log already",
                 (int)pt->partition, pruned.dropped);
    pt->pruned = 1;
}

/* Produces the partition's outbox rows not yet with the producer (unless only_clear),
 * and deletes the rows Kafka acknowledged. On the partition's fold thread, between
 * batches, or at shutdown once the fold threads are gone. */
static void drain_outbox(fold_engine *c, part *pt, int only_clear) {
    if (!c->outbox_rk) return;
    if (!pt->pruned && !only_clear) {
        int may_emit = c->config.group_id ? atomic_load(&pt->emit_ok) : atomic_load(&c->caught_up);
        if (!may_emit) only_clear = 1; /* not yet: see the top */
        else prune_outbox(c, pt);
    }
    if (!only_clear && atomic_exchange(&pt->outbox_retry, 0)) pt->produced_seq = 0;
    outbox_walk walk = {.c = c, .pt = pt};
    for (int round = 0; round < 64 && !only_clear; round++) {
        int64_t before = pt->produced_seq;
        if (store_outbox_walk(pt->st, pt->produced_seq, 256, produce_outbox_row, &walk) &&
            !walk.full && pt->produced_seq == before)
            log_warn("fold", "partition %d: outbox: %s", (int)pt->partition, store_errmsg(pt->st));
        if (walk.full || pt->produced_seq == before) break;
    }
    int64_t *acked = NULL;
    size_t acked_count = 0;
    pthread_mutex_lock(&pt->ack_lock);
    if (pt->acked_count) {
        acked = pt->acked;
        acked_count = pt->acked_count;
        pt->acked = NULL;
        pt->acked_count = pt->acked_cap = 0;
    }
    pthread_mutex_unlock(&pt->ack_lock);
    if (!acked_count) return;
    int failed = store_begin(pt->st);
    for (size_t i = 0, run; i < acked_count && !failed; i += run) {
        /* seq is AUTOINCREMENT: no row lies between two consecutive numbers */
        for (run = 1; i + run < acked_count && acked[i + run] == acked[i + run - 1] + 1; run++)
            ;
        failed = store_outbox_delete(pt->st, acked[i], acked[i + run - 1]);
    }
    if (failed || store_commit(pt->st)) {
        /* The rows stay and go out again at the next start; their receiver dedupes. */
        log_warn("fold", "partition %d: clearing the outbox: %s", (int)pt->partition,
                 store_errmsg(pt->st));
        store_rollback(pt->st);
    }
    free(acked);
}

/* Forgets the partition's uncommitted batch and reads it again from its stored offset
 * after a pause (the store failed: disk full, I/O error). */
static void retry_partition(fold_engine *c, part *pt) {
    log_error("fold", "partition %d: batch rolled back: %s", (int)pt->partition,
              fold_partition_errmsg(pt->fold));
    pthread_mutex_lock(&c->error_lock);
    snprintf(c->commit_error, sizeof c->commit_error, "partition %d: %s", (int)pt->partition,
             fold_partition_errmsg(pt->fold));
    pthread_mutex_unlock(&c->error_lock);
    if (!pt->commit_failing) atomic_fetch_add(&c->commits_failing, 1);
    pt->commit_failing = 1;
    fold_partition_discard(pt->fold);
    if (fold_partition_lost(pt->fold)) {
        /* write-back (replay) held changes past their commits: nothing to read again from */
        char errstr[512];
        snprintf(errstr, sizeof errstr,
                 "partition %d: %.300s (the changes held in memory since their commits are "
                 "lost with the batch)", (int)pt->partition, fold_partition_errmsg(pt->fold));
        set_failed(c, errstr);
        pt->done = 1;
        return;
    }
    memset(pt->counts, 0, sizeof pt->counts);
    memset(pt->type_counts, 0, sizeof pt->type_counts);
    pt->next = pt->resume_offset >= 0 ? pt->resume_offset : -1;
    clock_sleep_ms(RETRY_PAUSE_MS);
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(list, c->config.topic, pt->partition)->offset =
        pt->resume_offset >= 0 ? pt->resume_offset : RD_KAFKA_OFFSET_BEGINNING;
    rd_kafka_error_t *error = rd_kafka_seek_partitions(c->rk, list, 5000);
    if (error) {
        log_error("fold", "partition %d: seek back failed: %s", (int)pt->partition,
                  rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    rd_kafka_topic_partition_list_destroy(list);
}

/* Commits the partition's batch. Returns 0, or -1 after arranging a retry. */
static int commit_partition(fold_engine *c, part *pt) {
    if (fold_partition_pending(pt->fold) == 0) return 0;
    struct timespec commit_started;
    clock_gettime(CLOCK_MONOTONIC, &commit_started);
    if (fold_partition_commit(pt->fold, pt->next)) {
        retry_partition(c, pt);
        return -1;
    }
    histogram_observe_since(c->config.commit_seconds, &commit_started);
    pt->resume_offset = pt->next;
    if (pt->commit_failing) atomic_fetch_sub(&c->commits_failing, 1);
    pt->commit_failing = 0;
    atomic_store(&c->next_offset[pt->partition], pt->next);
    atomic_fetch_add(&c->applied, pt->counts[FOLD_APPLIED]);
    atomic_fetch_add(&c->rejected, pt->counts[FOLD_REJECTED]);
    atomic_fetch_add(&c->duplicates, pt->counts[FOLD_DUPLICATE]);
    atomic_fetch_add(&c->dead_letters, pt->counts[FOLD_DEAD_LETTER]);
    atomic_fetch_add(&c->pending, pt->counts[FOLD_PENDING]);
    for (int t = 0; t < EVENT_TYPE_COUNT; t++)
        if (pt->type_counts[t]) atomic_fetch_add(&c->folded_by_type[t], pt->type_counts[t]);
    atomic_fetch_add(&c->batches, 1);
    memset(pt->counts, 0, sizeof pt->counts);
    memset(pt->type_counts, 0, sizeof pt->type_counts);
    if (c->config.on_commit) c->config.on_commit(c->config.on_commit_opaque);
    drain_outbox(c, pt, 0);
    /* After the commit and its outbox: a read never waits on it (store_reuse_wal). */
    if (store_reuse_wal(pt->st)) log_warn("fold", "%s", store_errmsg(pt->st));
    return 0;
}

static void finish_partition(fold_engine *c, part *pt) {
    if (commit_partition(c, pt) == 0) pt->done = 1;
}

/* Folds one record of the worker's partitions. */
static void fold_record(fold_engine *c, worker *w, rd_kafka_message_t *msg,
                        const fold_look_ahead *ahead, int64_t now) {
    if (msg->err) {
        if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            log_warn("fold", "consume: %s", rd_kafka_message_errstr(msg));
        return;
    }
    if (msg->partition < 0 || msg->partition >= STORE_MAX_PARTITIONS) return;
    part *pt = w->mine[msg->partition]; /* NULL: a record of a partition moved away */
    /* Records before the resume point are from before a seek back: skip them. */
    if (!pt || pt->done || (pt->next >= 0 && msg->offset < pt->next)) return;
    if (pt->end >= 0 && msg->offset >= pt->end) {
        finish_partition(c, pt);
        return;
    }
    fold_result result;
    if (fold_partition_message_ahead(pt->fold, msg->offset, msg->key, msg->key_len,
                                     msg->payload, msg->len, ahead, &result)) {
        retry_partition(c, pt);
        return;
    }
    if (c->config.on_guild_event && result.outcome != FOLD_DEAD_LETTER &&
        codec_type_is_emitted((event_type)result.event_type))
        c->config.on_guild_event(c->config.on_guild_event_opaque, msg->partition, result.user_id,
                                 result.event_id);
    if (result.outcome == FOLD_DEAD_LETTER)
        log_with(LOG_WARN, "fold",
                 LOG_FIELDS(LOG_NUM("partition", msg->partition), LOG_NUM("offset", msg->offset)),
                 "dead letter: %s", result.reason);
    if (fold_partition_pending(pt->fold) == 1) pt->batch_started_ms = now;
    pt->counts[result.outcome]++;
    if (result.event_type >= 0 && result.event_type < EVENT_TYPE_COUNT)
        pt->type_counts[result.event_type]++;
    pt->next = msg->offset + 1;
    if (pt->end >= 0 && pt->next >= pt->end)
        finish_partition(c, pt);
    else if (fold_partition_pending(pt->fold) >= c->config.batch_max_events ||
             fold_partition_players(pt->fold) >= c->config.batch_max_players)
        commit_partition(c, pt);
}

/* With end offsets: a partition whose last offsets hold no record (transaction markers,
 * compaction) is done once the consumer's position passed its end. */
static void check_positions(fold_engine *c, worker *w) {
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)w->part_count);
    for (size_t i = 0; i < w->part_count; i++)
        if (!w->parts[i]->done && w->parts[i]->end >= 0)
            rd_kafka_topic_partition_list_add(list, c->config.topic, w->parts[i]->partition);
    if (list->cnt && rd_kafka_position(c->rk, list) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int k = 0; k < list->cnt; k++) {
            part *pt = w->mine[list->elems[k].partition];
            if (pt && list->elems[k].offset >= pt->end) finish_partition(c, pt);
        }
    }
    rd_kafka_topic_partition_list_destroy(list);
}

static int worker_done(const worker *w) {
    if (w->c->config.group_id) return 0; /* partitions come and go until the stop */
    for (size_t i = 0; i < w->part_count; i++)
        if (!w->parts[i]->done) return 0;
    return 1;
}

/* The worker's side of worker_park: commits, produces what it may, then waits. */
static void worker_park_here(fold_engine *c, worker *w) {
    for (size_t i = 0; i < w->part_count; i++) {
        commit_partition(c, w->parts[i]);
        drain_outbox(c, w->parts[i], 0);
    }
    pthread_mutex_lock(&w->park_lock);
    w->parked = 1;
    pthread_cond_broadcast(&w->park_cond);
    while (atomic_load(&w->park_request) && !atomic_load(&c->stopping))
        pthread_cond_wait(&w->park_cond, &w->park_lock);
    w->parked = 0;
    pthread_mutex_unlock(&w->park_lock);
}

/* 1 when pt is more than FOLD_CATCH_UP_LAG records behind the high watermark librdkafka
 * cached from its last fetch response (no request to the broker). */
static int catching_up(fold_engine *c, const part *pt) {
    int64_t low, high;
    if (rd_kafka_get_watermark_offsets(c->rk, c->config.topic, pt->partition, &low, &high) ||
        high < 0 || pt->next < 0)
        return 0;
    return high - pt->next > FOLD_CATCH_UP_LAG;
}

/* Whether pt's pending batch commits now (fold_engine_batch_rule), asking librdkafka's
 * cached watermark only when the answer depends on it. */
static int batch_due(fold_engine *c, const part *pt, int idle, int64_t now) {
    fold_engine_batch batch = {.pending = fold_partition_pending(pt->fold),
                               .players = fold_partition_batch_players(pt->fold),
                               .age_ms = now - pt->batch_started_ms,
                               .queue_ran_dry = idle};
    switch (fold_engine_batch_rule(&batch, c->config.batch_max_ms)) {
    case FOLD_BATCH_COMMIT: return 1;
    case FOLD_BATCH_COMMIT_UNLESS_CATCHING_UP: return !catching_up(c, pt);
    default: return 0;
    }
}

fold_engine_batch_decision fold_engine_batch_rule(const fold_engine_batch *batch,
                                                  int batch_max_ms) {
    if (batch->pending == 0) return FOLD_BATCH_WAIT;
    if (!batch->queue_ran_dry && batch->age_ms < batch_max_ms) return FOLD_BATCH_WAIT;
    int catch_up_ms = batch_max_ms > FOLD_CATCH_UP_BATCH_MS ? batch_max_ms : FOLD_CATCH_UP_BATCH_MS;
    if (batch->age_ms >= catch_up_ms || batch->players >= FOLD_CATCH_UP_BATCH_PLAYERS)
        return FOLD_BATCH_COMMIT;
    return FOLD_BATCH_COMMIT_UNLESS_CATCHING_UP;
}

/* Asks for the first lines of a record's payload ahead of its decoding. librdkafka's
 * broker thread wrote them (decompressing) on another core, so the decoder's first look
 * at each line may wait for it to come over. Measured: the decoder's share of replay's
 * samples 20.7 -> 18.5 %, the replay's wall time the same within this machine's noise. */
static void prefetch_record(const rd_kafka_message_t *msg) {
    const char *bytes = msg->payload;
    size_t len = msg->len < 512 ? msg->len : 512;
    for (size_t at = 0; bytes && at < len; at += 64) __builtin_prefetch(bytes + at);
    if (msg->key) __builtin_prefetch(msg->key);
}

/* Records taken together are looked at ahead of their turn: record i + 3 - step takes
 * its step while record i folds (fold_partition_look_ahead), and record i + 4 is asked
 * for (step 0 reads its key and the start of its payload). */
#define LOOK_AHEAD_STEPS 3

static void look_ahead(worker *w, const rd_kafka_message_t *msg, fold_look_ahead *ahead,
                       int step) {
    if (step == 0) *ahead = (fold_look_ahead){.key = NULL}; /* nothing known yet */
    if (msg->err || msg->partition < 0 || msg->partition >= STORE_MAX_PARTITIONS) return;
    part *pt = w->mine[msg->partition];
    if (!pt || !pt->fold) return;
    fold_partition_look_ahead(pt->fold, ahead, step, msg->key, msg->key_len, msg->payload,
                              msg->len);
}

/* Folds the records taken, in order, each looked at ahead of its turn; the first
 * rounds (i < 0) only look ahead. */
static void fold_taken(fold_engine *c, worker *w, rd_kafka_message_t **msgs, ssize_t taken,
                       int64_t now) {
    fold_look_ahead ahead[LOOK_AHEAD_STEPS + 1];
    for (ssize_t i = -LOOK_AHEAD_STEPS - 1; i < taken; i++) {
        ssize_t asked = i + LOOK_AHEAD_STEPS + 1;
        if (asked < taken) prefetch_record(msgs[asked]);
        for (int step = 0; step < LOOK_AHEAD_STEPS; step++) {
            ssize_t k = i + LOOK_AHEAD_STEPS - step;
            if (k >= 0 && k < taken)
                look_ahead(w, msgs[k], &ahead[k % (LOOK_AHEAD_STEPS + 1)], step);
        }
        if (i < 0) continue;
        fold_record(c, w, msgs[i], &ahead[i % (LOOK_AHEAD_STEPS + 1)], now);
        rd_kafka_message_destroy(msgs[i]);
    }
}

static void partition_failed(fold_engine *c, part *pt, const char *why) {
    char errstr[512];
    snprintf(errstr, sizeof errstr, "partition %d: %.400s", (int)pt->partition, why);
    set_failed(c, errstr);
    pt->whole = 0;
}

/* Whether every fold thread has folded its partitions to their ends: then what
 * on_guild_event noted is complete. With wait, until it is (or the engine stops). A
 * thread that stopped or failed counts too (end_partitions), and fold_engine_stop wakes
 * the waiters: none waits forever. */
static int all_folded(fold_engine *c, int wait) {
    pthread_mutex_lock(&c->end_lock);
    while (wait && c->workers_folded < c->worker_count && !atomic_load(&c->stopping))
        pthread_cond_wait(&c->end_cond, &c->end_lock);
    int all = c->workers_folded >= c->worker_count;
    pthread_mutex_unlock(&c->end_lock);
    return all;
}

/* config.at_end for w's whole partitions, once every partition is folded. */
static void run_at_end(fold_engine *c, worker *w) {
    if (!all_folded(c, 1) || atomic_load(&c->failed)) return;
    for (size_t i = 0; i < w->part_count; i++) {
        part *pt = w->parts[i];
        char why[400];
        if (pt->whole &&
            c->config.at_end(c->config.at_end_opaque, pt->partition, pt->st, why, sizeof why))
            partition_failed(c, pt, why);
    }
}

/* The fold thread's end. The batch in hand is committed, not thrown away, and with
 * write-back the players still changed in memory are written: the store is whole at its
 * offset. Then config.at_end, and with sync_at_end the sync to disk, and the unfinished
 * mark goes last; a store whose changes were lost keeps it: nobody opens it.
 * at_end waits for the partitions still folding; the store is synced first meanwhile,
 * and once more after at_end's few changes. Synced only after the wait, the six stores
 * of a replay took 0.1 s to sync together at its end; after at_end alone (run once the
 * fold had ended, it opened the stores again), closing them took a WAL checkpoint and
 * an fsync each on top. */
static void end_partitions(fold_engine *c, worker *w) {
    pthread_mutex_lock(&c->end_lock);
    c->workers_folded++;
    pthread_cond_broadcast(&c->end_cond);
    pthread_mutex_unlock(&c->end_lock);
    for (size_t i = 0; i < w->part_count; i++) {
        part *pt = w->parts[i];
        pt->whole = commit_partition(c, pt) == 0 && !fold_partition_lost(pt->fold);
        if (pt->whole && fold_partition_flush(pt->fold))
            partition_failed(c, pt, fold_partition_errmsg(pt->fold));
    }
    int sync_twice = c->config.sync_at_end && c->config.at_end && !all_folded(c, 0);
    for (size_t i = 0; sync_twice && i < w->part_count; i++)
        if (w->parts[i]->whole && store_sync_to_disk(w->parts[i]->st))
            partition_failed(c, w->parts[i], store_errmsg(w->parts[i]->st));
    if (c->config.at_end) run_at_end(c, w);
    for (size_t i = 0; c->config.sync_at_end && i < w->part_count; i++) {
        part *pt = w->parts[i];
        if (pt->whole && (store_sync_to_disk(pt->st) || store_set_unfinished(pt->st, NULL)))
            partition_failed(c, pt, store_errmsg(pt->st));
    }
    /* Partitions at their ends fold nothing more: their memory goes now, on this thread,
     * rather than on the engine's at the stop (20k cached players each: 4 ms). */
    for (size_t i = 0; worker_done(w) && i < w->part_count; i++) {
        fold_partition_free(w->parts[i]->fold);
        w->parts[i]->fold = NULL;
    }
}

/* Waits until runner r's thread holds its worker's loop. Returns 1 then, or 0 when the
 * worker has ended (or the engine stops) while it waited. The other thread frees what
 * this one allocated (cached players, batches): every COLLECT_IDLE_MS the waiting thread
 * has its heap take those blocks back, else their pages would stay with it until its
 * next turn (serve draining 2M events: peak RSS +15-20 MB). */
static int take_turn(fold_runner *r) {
    worker *w = r->w;
    fold_engine *c = w->c;
    pthread_mutex_lock(&w->park_lock);
    while (w->holder != r->speed && !w->exited && !atomic_load(&c->stopping)) {
        if (!c->config.collect_memory) {
            pthread_cond_wait(&w->park_cond, &w->park_lock);
            continue;
        }
        struct timespec until;
        clock_deadline_in(COLLECT_IDLE_MS, &until);
        if (pthread_cond_timedwait(&w->park_cond, &w->park_lock, &until) == ETIMEDOUT) {
            pthread_mutex_unlock(&w->park_lock);
            c->config.collect_memory(0);
            pthread_mutex_lock(&w->park_lock);
        }
    }
    int mine = w->holder == r->speed && !w->exited;
    pthread_mutex_unlock(&w->park_lock);
    return mine;
}

static void hand_turn(worker *w, int speed) {
    fold_engine *c = w->c;
    pthread_mutex_lock(&w->park_lock);
    w->holder = speed;
    pthread_cond_broadcast(&w->park_cond);
    pthread_mutex_unlock(&w->park_lock);
    atomic_fetch_add(&c->workers_catching_up, speed == SPEED_CATCH_UP ? 1 : -1);
    atomic_fetch_add(&c->speed_changes, 1);
}

/* The speed w's partitions ask for: catching up while one of them is more than
 * FOLD_CATCH_UP_LAG records behind (the batch rule's test), else live. */
static int wanted_speed(fold_engine *c, const worker *w) {
    for (size_t i = 0; i < w->part_count; i++)
        if (!w->parts[i]->done && catching_up(c, w->parts[i])) return SPEED_CATCH_UP;
    return SPEED_LIVE;
}

/* Takes records from the worker's queue, folds them and commits the batches due. */
static void fold_round(fold_engine *c, worker *w) {
    /* Wait for one record, then take what is queued without waiting (one lock for
     * many records), up to a bound, and look at the clock. */
    rd_kafka_message_t *msgs[WORKER_TAKE_MAX];
    msgs[0] = rd_kafka_consume_queue(w->queue, c->config.batch_max_ms);
    ssize_t taken = msgs[0] ? 1 : 0;
    if (taken) {
        ssize_t more = rd_kafka_consume_batch_queue(w->queue, 0, msgs + 1, WORKER_TAKE_MAX - 1);
        if (more > 0) taken += more;
    }
    int idle = taken < WORKER_TAKE_MAX; /* ran dry, rather than hit the bound */
    int64_t now = clock_ms();
    fold_taken(c, w, msgs, taken, now);
    now = clock_ms();
    for (size_t i = 0; i < w->part_count; i++)
        if (batch_due(c, w->parts[i], idle, now)) commit_partition(c, w->parts[i]);
    if (taken == 0 && now - w->last_position_check_ms >= 1000) {
        w->last_position_check_ms = now;
        check_positions(c, w);
    }
    if (idle)
        for (size_t i = 0; i < w->part_count; i++)
            if (!fold_partition_pending(w->parts[i]->fold)) drain_outbox(c, w->parts[i], 0);
}

/* A worker's thread. With two speeds, the thread whose speed the partitions ask for runs
 * the loop: a partition catching up a backlog folds at config.nice (serve: 19, so the
 * HTTP loop's reads go first while the fold takes every spare cycle), one that keeps up
 * at config.live_nice, so a write shows in reads soon on a busy machine too. */
static void *fold_thread(void *arg) {
    fold_runner *r = arg;
    worker *w = r->w;
    fold_engine *c = w->c;
    int nice = r->speed == SPEED_LIVE ? c->config.live_nice : c->config.nice + w->nice_extra;
    if (nice) setpriority(PRIO_PROCESS, (id_t)gettid(), nice);
    char name[16]; /* the kernel keeps 15 characters: "fold-<n>" in top, ps and /proc */
    snprintf(name, sizeof name, r->speed == SPEED_LIVE ? "fold-%d-live" : "fold-%d",
             (int)(w - c->workers));
    pthread_setname_np(pthread_self(), name);
    if (!take_turn(r)) return NULL;
    if (!w->began) { /* what a previous run committed to the outbox but may not have produced */
        w->began = 1;
        for (size_t i = 0; i < w->part_count; i++) drain_outbox(c, w->parts[i], 0);
    }
    int64_t speed_checked_ms = clock_ms();
    while (!atomic_load(&c->stopping) && !worker_done(w)) {
        if (atomic_load(&w->park_request)) worker_park_here(c, w);
        int64_t now = c->two_speeds ? clock_ms() : 0;
        if (c->two_speeds && now - speed_checked_ms >= SPEED_CHECK_MS) {
            speed_checked_ms = now;
            int speed = wanted_speed(c, w);
            if (speed != r->speed) {
                hand_turn(w, speed);
                if (c->config.collect_memory) c->config.collect_memory(1);
                if (!take_turn(r)) return NULL;
                speed_checked_ms = clock_ms();
                continue;
            }
        }
        fold_round(c, w);
    }
    end_partitions(c, w);
    pthread_mutex_lock(&w->park_lock);
    w->exited = 1;
    pthread_cond_broadcast(&w->park_cond); /* the engine, and the worker's other thread */
    pthread_mutex_unlock(&w->park_lock);
    /* The last one out wakes the engine thread, which then says the fold has finished
     * (rather than at the end of its wait for a consumer event, up to 100 ms later). */
    if (atomic_fetch_sub(&c->workers_running, 1) == 1) rd_kafka_queue_yield(c->main_queue);
    return NULL;
}

/* The engine thread: waits until worker w stands still with every batch committed, so
 * its partitions can be handed over or closed. Returns at once when w has exited. */
static void worker_park(worker *w) {
    pthread_mutex_lock(&w->park_lock);
    atomic_store(&w->park_request, 1);
    while (!w->parked && !w->exited && w->started) pthread_cond_wait(&w->park_cond, &w->park_lock);
    pthread_mutex_unlock(&w->park_lock);
}

static void worker_unpark(worker *w) {
    pthread_mutex_lock(&w->park_lock);
    atomic_store(&w->park_request, 0);
    pthread_cond_broadcast(&w->park_cond);
    pthread_mutex_unlock(&w->park_lock);
}

/* ---------------------------------------------------------------- the engine thread */

/* Waits for the topic's metadata; fills the partitions to fold. Returns 0, or -1 when
 * stopping. */
static int wait_for_topic(fold_engine *c, int32_t *partitions, size_t *count) {
    int64_t last_warn = 0;
    rd_kafka_topic_t *topic = rd_kafka_topic_new(c->rk, c->config.topic, NULL);
    *count = 0;
    while (!atomic_load(&c->stopping)) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err = rd_kafka_metadata(c->rk, 0, topic, &md, 1000);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 &&
            md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topics[0].partition_cnt > 0) {
            for (int i = 0; i < md->topics[0].partition_cnt && *count < STORE_MAX_PARTITIONS; i++) {
                int32_t p = md->topics[0].partitions[i].id;
                if (p < 0 || p >= STORE_MAX_PARTITIONS) continue;
                if (c->config.partition_first >= 0 &&
                    (p < c->config.partition_first || p > c->config.partition_last))
                    continue;
                partitions[(*count)++] = p;
            }
            atomic_store(&c->partition_count, (size_t)md->topics[0].partition_cnt);
            int topic_partitions = md->topics[0].partition_cnt;
            rd_kafka_metadata_destroy(md);
            if (topic_partitions > STORE_MAX_PARTITIONS) { /* refused, not folded in part */
                char why[512];
                snprintf(why, sizeof why, "topic '%s' has %d partitions; lootlog folds at most %d",
                         c->config.topic, topic_partitions, STORE_MAX_PARTITIONS);
                set_failed(c, why);
                *count = 0;
            }
            break;
        }
        if (md) rd_kafka_metadata_destroy(md);
        if (clock_ms() - last_warn > 10000) {
            log_warn("fold", "waiting for topic '%s' metadata: %s", c->config.topic,
                     err ? rd_kafka_err2str(err)
                         : "no such topic yet (`lootlog topic ensure` creates it)");
            last_warn = clock_ms();
        }
        clock_sleep_ms(200); /* metadata failed fast (e.g. refused); don't spin */
    }
    rd_kafka_topic_destroy(topic);
    return atomic_load(&c->stopping) || atomic_load(&c->failed) ? -1 : 0;
}

/* Opens partition p's store and fold (restoring it first with a group, see the top) and
 * reads where it resumes. Returns 0, or -1 with errstr (the slot is left closed). */
static int open_part(fold_engine *c, int32_t p, char *errstr, size_t errstr_size) {
    char path[4096];
    part *pt = &c->parts[p];
    if (store_path(c->config.db_dir, p, path, sizeof path)) {
        snprintf(errstr, errstr_size, "store path too long");
        return -1;
    }
    fold_engine_partition_source source = FOLD_ENGINE_SOURCE_LOCAL;
    char snapshot_id[32] = "";
    if (c->config.restore_partition) {
        /* The local copy's offset (-1: none); the restorer replaces it only with a
         * snapshot that is further on. */
        int64_t local = -1;
        if (access(path, F_OK) == 0) {
            char why[256];
            store *peek = store_open(path, p, STORE_READER, why, sizeof why);
            if (peek && store_get_next_offset(peek, &local)) local = -1;
            store_close(peek);
        }
        int64_t restored_at = -1;
        char why[512];
        int rc = c->config.restore_partition(c->config.restore_opaque, p, local, snapshot_id,
                                             &restored_at, why, sizeof why);
        if (rc > 0) {
            source = FOLD_ENGINE_SOURCE_SNAPSHOT;
            log_info("fold", "partition %d: restored from snapshot %s (offset %lld; local copy: %lld)",
                     (int)p, snapshot_id, (long long)restored_at, (long long)local);
        } else if (rc < 0) {
            /* HDFS down or a bad snapshot: the local copy or the log still give the right
             * state, only later. */
            log_warn("fold", "partition %d: no restore from HDFS (%s); %s", (int)p, why,
                     local >= 0 ? "catching up from the local store" : "folding from the log's start");
            snapshot_id[0] = '\0';
        }
        if (rc <= 0) source = local >= 0 ? FOLD_ENGINE_SOURCE_LOCAL : FOLD_ENGINE_SOURCE_LOG;
    }
    pthread_mutex_t keep = pt->ack_lock; /* initialised once, for the consumer's life */
    uint64_t opening = pt->opening + 1;
    memset(pt, 0, sizeof *pt);
    pt->ack_lock = keep;
    pt->opening = opening;
    pt->catchup_end = -1;
    pt->partition = p;
    pt->end = c->config.end_offsets ? c->config.end_offsets[p] : -1;
    pt->st = store_open(path, p, STORE_WRITER, errstr, errstr_size);
    if (!pt->st) goto fail;
    /* A store folds one topic only: another topic's offsets would mean nothing here. */
    if ((c->config.store_cache_kib && store_set_cache_kib(pt->st, c->config.store_cache_kib)) ||
        store_claim_topic(pt->st, c->config.topic)) {
        snprintf(errstr, errstr_size, "%s", store_errmsg(pt->st));
        goto fail;
    }
    if (c->config.sync_at_end) {
        /* Nobody reads the store meanwhile: no WAL and no checkpointer (its commits go
         * straight to the database file), and the sync at the end runs alone. Until then
         * nothing may open it: a commit cut short by a crash can leave its file torn, and
         * with write-back its tables lag its offset. */
        if (store_set_unfinished(pt->st, "replay") || store_sync_later(pt->st)) {
            snprintf(errstr, errstr_size, "%s", store_errmsg(pt->st));
            goto fail;
        }
    } else {
        pt->checkpointer = store_open(path, p, STORE_READER, errstr, errstr_size);
        if (!pt->checkpointer) goto fail;
    }
    int64_t stored;
    if (store_get_next_offset(pt->st, &stored)) {
        snprintf(errstr, errstr_size, "%s", store_errmsg(pt->st));
        goto fail;
    }
    if (!c->config.restore_partition && stored < 0) source = FOLD_ENGINE_SOURCE_LOG;
    int64_t start = c->config.start_offsets ? c->config.start_offsets[p] : -1;
    pt->resume_offset = stored >= 0 ? stored : start;
    pt->next = pt->resume_offset;
    atomic_store(&c->next_offset[p], stored);
    if (pt->end >= 0 && pt->resume_offset >= 0 && pt->resume_offset >= pt->end) pt->done = 1;
    pt->fold = fold_partition_new(pt->st, &c->config.fold, errstr, errstr_size);
    if (!pt->fold) goto fail;
    pthread_mutex_lock(&c->info_lock);
    pt->source = source;
    pt->opened_at = stored;
    snprintf(pt->snapshot_id, sizeof pt->snapshot_id, "%s", snapshot_id);
    pthread_mutex_unlock(&c->info_lock);
    pt->open = 1;
    c->part_count++;
    atomic_fetch_add(&c->generation[p], 1);
    return 0;
fail:
    store_close(pt->checkpointer);
    store_close(pt->st);
    pt->checkpointer = pt->st = NULL;
    return -1;
}

/* Closes partition p's store (its batches committed, its fold thread no longer has it). */
static void close_part(fold_engine *c, int32_t p) {
    part *pt = &c->parts[p];
    if (!pt->open) return;
    fold_partition_free(pt->fold);
    store_close(pt->checkpointer);
    store_close(pt->st);
    pt->fold = NULL;
    pt->checkpointer = pt->st = NULL;
    pthread_mutex_lock(&pt->ack_lock);
    free(pt->acked);
    pt->acked = NULL;
    pt->acked_count = pt->acked_cap = 0;
    pthread_mutex_unlock(&pt->ack_lock);
    pt->open = 0;
    c->part_count--;
    atomic_store(&c->next_offset[p], -1);
    atomic_store(&c->partition_lag[p], -1);
}

/* Without a group: opens the stores of the partitions to fold. Returns 0 or -1. */
static int open_partitions(fold_engine *c, const int32_t *partitions, size_t count) {
    char errstr[512];
    for (size_t i = 0; i < count; i++) {
        if (open_part(c, partitions[i], errstr, sizeof errstr)) {
            set_failed(c, errstr);
            return -1;
        }
    }
    return 0;
}

/* Hands open partition p to worker w (parked, or not started yet) and forwards the
 * partition's queue to the worker's, before the partition is assigned, so no record of
 * it reaches the main queue. Returns 0 or -1. */
static int give_part(fold_engine *c, worker *w, int32_t p) {
    part *pt = &c->parts[p];
    rd_kafka_queue_t *pq = rd_kafka_queue_get_partition(c->rk, c->config.topic, p);
    if (!pq) return -1;
    rd_kafka_queue_forward(pq, w->queue);
    rd_kafka_queue_destroy(pq);
    pt->owner = w;
    w->parts[w->part_count++] = pt;
    w->mine[p] = pt;
    return 0;
}

/* Takes partition p from its worker (parked). */
static void take_part(worker *w, int32_t p) {
    for (size_t i = 0; i < w->part_count; i++) {
        if (w->parts[i]->partition != p) continue;
        w->parts[i] = w->parts[--w->part_count];
        break;
    }
    w->mine[p] = NULL;
}

/* Creates the fold threads' state and queues; threads: how many. Returns 0 or -1. */
static int make_workers(fold_engine *c, int threads) {
    c->workers = calloc((size_t)threads, sizeof *c->workers);
    if (!c->workers) {
        set_failed(c, "out of memory");
        return -1;
    }
    c->worker_count = threads;
    for (int i = 0; i < threads; i++) {
        worker *w = &c->workers[i];
        w->c = c;
        w->queue = rd_kafka_queue_new(c->rk);
        pthread_mutex_init(&w->park_lock, NULL);
        pthread_cond_init(&w->park_cond, NULL);
    }
    return 0;
}

/* Starts each worker's thread, or its two (two speeds: the catch-up one holds it first). */
static int run_workers(fold_engine *c) {
    atomic_store(&c->workers_running, c->worker_count);
    atomic_store(&c->workers_catching_up, c->two_speeds ? c->worker_count : 0);
    for (int i = 0; i < c->worker_count; i++) {
        worker *w = &c->workers[i];
        w->holder = SPEED_CATCH_UP;
        for (int speed = 0; speed < (c->two_speeds ? SPEED_COUNT : 1); speed++) {
            fold_runner *r = &w->runners[speed];
            *r = (fold_runner){.w = w, .speed = speed};
            if (pthread_create(&r->thread, NULL, fold_thread, r)) {
                if (speed == 0) atomic_fetch_sub(&c->workers_running, c->worker_count - i);
                set_failed(c, "starting a fold thread failed");
                return -1;
            }
            r->started = 1;
        }
        w->started = 1;
    }
    return 0;
}

/* The offset to fetch partition p from. */
static int64_t fetch_offset(const part *pt) {
    return pt->resume_offset >= 0 ? pt->resume_offset : RD_KAFKA_OFFSET_BEGINNING;
}

/* A fold with end offsets (replay) knows each thread's work from the start. The kernel
 * shares the cores equally between runnable threads, so the thread of a big partition (a
 * hot player's) got a sixth of two cores like the rest, and finished last, alone, with
 * a core idle. Each thread's niceness is raised by how much less work it has than the
 * busiest (a step of niceness is ~1.25x of CPU weight), so shares follow the work and
 * the partitions finish together. Raising niceness needs no privilege; nothing lowers it. */
static void share_by_work(fold_engine *c) {
    int64_t work[FOLD_DEFAULT_THREADS_MAX * 8], most = 0;
    if (c->worker_count < 2 || c->worker_count > (int)(sizeof work / sizeof *work)) return;
    for (int i = 0; i < c->worker_count; i++) {
        const worker *w = &c->workers[i];
        work[i] = 0;
        for (size_t k = 0; k < w->part_count; k++) {
            const part *pt = w->parts[k];
            if (pt->done) continue;
            if (pt->end < 0 || pt->resume_offset < 0) return; /* not known: leave it be */
            if (pt->end > pt->resume_offset) work[i] += pt->end - pt->resume_offset;
        }
        if (work[i] > most) most = work[i];
    }
    for (int i = 0; i < c->worker_count && most > 0; i++) {
        int extra = work[i] > 0 ? (int)lround(log((double)most / (double)work[i]) / log(1.25)) : 0;
        int room = 19 - c->config.nice;
        c->workers[i].nice_extra = extra < 0 ? 0 : extra > room ? room : extra;
    }
}

/* Without a group: starts the fold threads, each with the queue its partitions are
 * forwarded to, and assigns the partitions. Returns 0 or -1. */
static int start_workers(fold_engine *c) {
    char errstr[512];
    /* By default one thread per partition: partitions differ in size (a hot player makes
     * its partition big), and with a thread each the kernel spreads the work over the
     * cores, where a fixed split of partitions between per-core threads leaves a core
     * idle once its share is done (1M-event replay: 9.1 s with 2 threads, 5.3 s with 6). */
    int threads = c->config.threads > 0 ? c->config.threads : FOLD_DEFAULT_THREADS_MAX;
    if (threads < 1) threads = 1;
    if ((size_t)threads > c->part_count) threads = c->part_count ? (int)c->part_count : 1;
    if (make_workers(c, threads)) return -1;
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)c->part_count);
    size_t handed = 0;
    for (int32_t p = 0; p < STORE_MAX_PARTITIONS; p++) {
        part *pt = &c->parts[p];
        if (!pt->open) continue;
        worker *w = &c->workers[handed++ % (size_t)threads];
        if (pt->done) { /* nothing to fetch: the worker only needs to know it */
            pt->owner = w;
            w->parts[w->part_count++] = pt;
            w->mine[p] = pt;
            continue;
        }
        if (give_part(c, w, p)) {
            rd_kafka_topic_partition_list_destroy(list);
            set_failed(c, "no queue for a partition");
            return -1;
        }
        rd_kafka_topic_partition_list_add(list, c->config.topic, p)->offset = fetch_offset(pt);
    }
    rd_kafka_resp_err_t err = rd_kafka_assign(c->rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (err) {
        snprintf(errstr, sizeof errstr, "assign failed: %s", rd_kafka_err2str(err));
        set_failed(c, errstr);
        return -1;
    }
    for (int32_t p = 0; p < STORE_MAX_PARTITIONS; p++)
        if (c->parts[p].open) atomic_store(&c->owned[p], 1);
    share_by_work(c);
    if (run_workers(c)) return -1;
    atomic_store(&c->assigned, 1);
    log_info("fold", "folding %zu partition(s) of '%s' into %s on %d thread(s)", c->part_count,
             c->config.topic, c->config.db_dir, threads);
    return 0;
}

/* ---------------------------------------------------------------- the group
 * With config.group_id the partitions come from the consumer group: librdkafka calls
 * on_rebalance on the engine thread (it polls the consumer queue) with partitions to take
 * or to give up, cooperatively (only those that move). */

/* The worker with the fewest partitions. */
static worker *least_busy(fold_engine *c) {
    worker *best = &c->workers[0];
    for (int i = 1; i < c->worker_count; i++)
        if (c->workers[i].part_count < best->part_count) best = &c->workers[i];
    return best;
}

/* Opens the partitions of list (restoring where needed), hands each to a fold thread
 * and assigns them at their stores' offsets. Those that fail to open are retried later
 * (retry_open): the group believes this node has them, so it must fold them. */
static void take_partitions(fold_engine *c, const rd_kafka_topic_partition_list_t *given) {
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new(given->cnt);
    char errstr[512];
    for (int i = 0; i < given->cnt; i++) {
        int32_t p = given->elems[i].partition;
        if (p < 0 || p >= STORE_MAX_PARTITIONS || c->parts[p].open) continue;
        if (open_part(c, p, errstr, sizeof errstr)) {
            log_error("fold", "partition %d: assigned, but its store cannot be opened (%s); "
                      "trying again", (int)p, errstr);
            if (c->retry_open_count < STORE_MAX_PARTITIONS) c->retry_open[c->retry_open_count++] = p;
            continue;
        }
        worker *w = least_busy(c);
        worker_park(w);
        int failed = give_part(c, w, p);
        worker_unpark(w);
        if (failed) {
            log_error("fold", "partition %d: no queue for it", (int)p);
            close_part(c, p);
            continue;
        }
        rd_kafka_topic_partition_list_add(list, c->config.topic, p)->offset =
            fetch_offset(&c->parts[p]);
        log_info("fold", "partition %d: taken over (%s), folding from offset %lld", (int)p,
                 fold_engine_source_name(c->parts[p].source), (long long)c->parts[p].next);
    }
    {   /* called even with nothing to add: the rebalance completes only with the call */
        rd_kafka_error_t *error = rd_kafka_incremental_assign(c->rk, list);
        if (error) {
            log_error("fold", "incremental assign: %s", rd_kafka_error_string(error));
            rd_kafka_error_destroy(error);
        } else {
            for (int i = 0; i < list->cnt; i++) atomic_store(&c->owned[list->elems[i].partition], 1);
        }
    }
    rd_kafka_topic_partition_list_destroy(list);
    atomic_store(&c->assigned, 1);
}

/* Gives up the partitions of list: reads stop being served here first (the fence: see
 * docs/deployment.md), then each fold thread commits and lets go of them, the fetch
 * stops, emitted events still in flight get a moment to be acknowledged, and the stores
 * close. A lost assignment (this node was thrown out of the group) is given up the same
 * way: the local stores are right, only no longer this node's to serve. */
static void give_up_partitions(fold_engine *c, const rd_kafka_topic_partition_list_t *taken,
                               int lost) {
    int workers_alive = !atomic_load(&c->stopping);
    for (int i = 0; i < taken->cnt; i++) {
        int32_t p = taken->elems[i].partition;
        if (p >= 0 && p < STORE_MAX_PARTITIONS) atomic_store(&c->owned[p], 0);
    }
    for (int k = 0; k < c->worker_count && workers_alive; k++) {
        worker *w = &c->workers[k];
        int has = 0;
        for (int i = 0; i < taken->cnt && !has; i++) {
            int32_t p = taken->elems[i].partition;
            has = p >= 0 && p < STORE_MAX_PARTITIONS && w->mine[p];
        }
        if (!has) continue;
        worker_park(w);
        for (int i = 0; i < taken->cnt; i++) {
            int32_t p = taken->elems[i].partition;
            if (p >= 0 && p < STORE_MAX_PARTITIONS && w->mine[p]) take_part(w, p);
        }
        worker_unpark(w);
    }
    rd_kafka_error_t *error = rd_kafka_incremental_unassign(c->rk, taken);
    if (error) {
        log_warn("fold", "incremental unassign: %s", rd_kafka_error_string(error));
        rd_kafka_error_destroy(error);
    }
    if (c->outbox_rk && rd_kafka_flush(c->outbox_rk, 2000))
        log_warn("fold", "emitted events still unacknowledged while giving up partitions; "
                 "the next owner produces them again");
    for (int i = 0; i < taken->cnt; i++) {
        int32_t p = taken->elems[i].partition;
        if (p < 0 || p >= STORE_MAX_PARTITIONS) continue;
        for (size_t k = 0; k < c->retry_open_count; k++)
            if (c->retry_open[k] == p) c->retry_open[k--] = c->retry_open[--c->retry_open_count];
        if (!c->parts[p].open) continue;
        if (workers_alive) { /* else fold_engine_stop clears outboxes and closes */
            drain_outbox(c, &c->parts[p], 1);
            close_part(c, p);
        }
        log_info("fold", "partition %d: %s, next offset %lld", (int)p,
                 lost ? "lost (this node left the group)" : "handed over",
                 (long long)c->parts[p].next);
    }
}

/* librdkafka's rebalance callback (engine thread, or fold_engine_stop's close). */
static void on_rebalance(rd_kafka_t *rk, rd_kafka_resp_err_t err,
                         rd_kafka_topic_partition_list_t *partitions, void *opaque) {
    fold_engine *c = opaque;
    if (err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS) {
        if (atomic_load(&c->stopping)) {
            rd_kafka_topic_partition_list_t *none = rd_kafka_topic_partition_list_new(0);
            rd_kafka_error_t *error = rd_kafka_incremental_assign(rk, none);
            if (error) rd_kafka_error_destroy(error);
            rd_kafka_topic_partition_list_destroy(none);
            return;
        }
        take_partitions(c, partitions);
    } else if (err == RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS) {
        give_up_partitions(c, partitions, rd_kafka_assignment_lost(rk));
    } else {
        log_error("fold", "rebalance: %s", rd_kafka_err2str(err));
        rd_kafka_assign(rk, NULL);
    }
}

/* Assigned partitions whose store failed to open: tries again every few seconds. */
static void retry_opens(fold_engine *c) {
    if (!c->retry_open_count || clock_ms() - c->last_retry_ms < 5000) return;
    c->last_retry_ms = clock_ms();
    rd_kafka_topic_partition_list_t *list =
        rd_kafka_topic_partition_list_new((int)c->retry_open_count);
    for (size_t k = 0; k < c->retry_open_count; k++)
        rd_kafka_topic_partition_list_add(list, c->config.topic, c->retry_open[k]);
    c->retry_open_count = 0;
    take_partitions(c, list);
    rd_kafka_topic_partition_list_destroy(list);
}

/* With a group: starts the fold threads with nothing to fold and joins the group. */
static int start_group(fold_engine *c) {
    char errstr[512];
    size_t partitions = atomic_load(&c->partition_count);
    int threads = c->config.threads > 0 ? c->config.threads : FOLD_DEFAULT_THREADS_MAX;
    if ((size_t)threads > partitions) threads = partitions ? (int)partitions : 1;
    if (make_workers(c, threads) || run_workers(c)) return -1;
    rd_kafka_topic_partition_list_t *topics = rd_kafka_topic_partition_list_new(1);
    rd_kafka_topic_partition_list_add(topics, c->config.topic, RD_KAFKA_PARTITION_UA);
    rd_kafka_resp_err_t err = rd_kafka_subscribe(c->rk, topics);
    rd_kafka_topic_partition_list_destroy(topics);
    if (err) {
        snprintf(errstr, sizeof errstr, "joining group %s: %s", c->config.group_id,
                 rd_kafka_err2str(err));
        set_failed(c, errstr);
        return -1;
    }
    log_info("fold", "joined consumer group '%s' for '%s' (%d fold thread(s)); partitions "
             "come from the group", c->config.group_id, c->config.topic, threads);
    return 0;
}

/* Refreshes the lag from the watermarks librdkafka caches from fetch responses. */
static void update_lag(fold_engine *c) {
    int64_t lag = 0;
    for (int32_t p = 0; p < STORE_MAX_PARTITIONS; p++) {
        int64_t low, high;
        part *pt = &c->parts[p];
        if (!pt->open || pt->done) continue;
        if (rd_kafka_get_watermark_offsets(c->rk, c->config.topic, p, &low, &high) || high < 0) {
            atomic_store(&c->partition_lag[p], -1);
            atomic_store(&c->lag, -1);
            return;
        }
        int64_t next = atomic_load(&c->next_offset[p]);
        if (next < low) next = low;
        if (high > next) lag += high - next;
        atomic_store(&c->partition_lag[p], high > next ? high - next : 0);
    }
    atomic_store(&c->lag, lag);
}

/* librdkafka 2.0.2 stops fetching a partition whose queue is full and looks at it again
 * only when its broker thread wakes — at most a second later when nothing else happens —
 * so a partition drained in 100 ms then waits 900 ms: the fetch queue had to hold a
 * second of records, most of serve's memory (docs/architecture.md, "Memory"). A request
 * to the broker wakes its thread; asking a partition's watermarks every 100 ms is such a
 * request, cheap, and it lets the queues stay small. */
static void wake_fetchers(fold_engine *c) {
    /* a few partitions a round, in turn, so every leader's thread is woken within a few
     * rounds whatever the partition count; a round every 100 ms at most */
    if (clock_ms() - c->last_wake_ms < 100) return;
    c->last_wake_ms = clock_ms();
    int asked = 0;
    for (int32_t k = 0; k < STORE_MAX_PARTITIONS && asked < 4; k++) {
        int32_t p = (c->wake_next + k) % STORE_MAX_PARTITIONS;
        if (!c->parts[p].open || c->parts[p].done) continue;
        int64_t low, high;
        rd_kafka_query_watermark_offsets(c->rk, c->config.topic, p, &low, &high, 100);
        c->wake_next = (p + 1) % STORE_MAX_PARTITIONS;
        asked++;
    }
}

/* With emit: records each partition's end when it was opened, then says when it has
 * folded up to it (see the top): without a group, once every partition has; with one,
 * partition by partition, as they come and go. */
static void check_caught_up(fold_engine *c) {
    if (!c->outbox_rk || atomic_load(&c->caught_up)) return;
    int all = 1;
    for (int32_t p = 0; p < STORE_MAX_PARTITIONS; p++) {
        part *pt = &c->parts[p];
        int64_t low, high;
        if (!pt->open || atomic_load(&pt->emit_ok)) continue;
        if (pt->catchup_end < 0) {
            if (rd_kafka_query_watermark_offsets(c->rk, c->config.topic, p, &low, &high, 1000)) {
                all = 0;
                continue;
            }
            pt->catchup_end = high;
        }
        int64_t next = atomic_load(&c->next_offset[p]);
        if (pt->catchup_end > 0 && next < pt->catchup_end) {
            all = 0;
            continue;
        }
        if (c->config.group_id) {
            atomic_store(&pt->emit_ok, 1);
            log_info("fold", "partition %d: caught up with the log: its emitted events go out "
                     "from now on", (int)p);
        }
    }
    if (!all || c->config.group_id) return;
    atomic_store(&c->caught_up, 1);
    log_info("fold", "caught up with the log: emitted events go out from now on");
}

static void *engine_thread(void *arg) {
    fold_engine *c = arg;
    int32_t partitions[STORE_MAX_PARTITIONS];
    size_t count;
    if (mkdir(c->config.db_dir, 0755) && errno != EEXIST) {
        char errstr[512];
        snprintf(errstr, sizeof errstr, "creating %s: %s", c->config.db_dir, strerror(errno));
        set_failed(c, errstr);
        return NULL;
    }
    if (wait_for_topic(c, partitions, &count)) return NULL;
    if (c->config.group_id ? start_group(c) : open_partitions(c, partitions, count) || start_workers(c))
        return NULL;
    int64_t last_checkpoint = clock_ms();
    while (!atomic_load(&c->stopping)) {
        /* Errors that concern no partition (brokers down, ...) arrive here, and, with a
         * group, the rebalances (on_rebalance runs inside this call). */
        rd_kafka_message_t *msg = rd_kafka_consume_queue(c->main_queue, 100);
        if (c->outbox_rk) rd_kafka_poll(c->outbox_rk, 0); /* delivery reports */
        if (msg) {
            if (msg->err && msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                log_warn("fold", "consumer: %s", rd_kafka_message_errstr(msg));
            rd_kafka_message_destroy(msg);
        }
        if (c->config.group_id) retry_opens(c);
        wake_fetchers(c);
        update_lag(c);
        check_caught_up(c);
        if (clock_ms() - last_checkpoint >= CHECKPOINT_EVERY_MS) {
            for (int32_t p = 0; p < STORE_MAX_PARTITIONS; p++)
                if (c->parts[p].checkpointer && store_checkpoint(c->parts[p].checkpointer))
                    log_warn("fold", "%s", store_errmsg(c->parts[p].checkpointer));
            last_checkpoint = clock_ms();
        }
        if (atomic_load(&c->workers_running) == 0) {
            update_lag(c);
            atomic_store(&c->finished, 1);
            break;
        }
    }
    return NULL;
}


/* ---------------------------------------------------------------- interface */

fold_engine *fold_engine_start(const fold_engine_config *config, char *errstr, size_t errstr_size) {
    /* The fetch queue is per partition, since each partition's queue is forwarded on its
     * own, and it is most of the process's memory: serve folding 1M new players peaked
     * at 853 MB with 64 MB queues, 155 MB with 2 MB, 77 MB with 512 KB — as fast as with
     * 2 MB (10.2 s) once wake_fetchers keeps the fetcher from sleeping on a full queue.
     * Replay asks for more (a one-shot rebuild); serve keeps the default. */
    size_t queue_kbytes = config->fetch_queue_kbytes ? config->fetch_queue_kbytes : 512;
    char queue_text[32], fetch_text[32];
    snprintf(queue_text, sizeof queue_text, "%zu", queue_kbytes);
    snprintf(fetch_text, sizeof fetch_text, "%zu", queue_kbytes * 512); /* half the queue */
    /* With a group, this node's HTTP address rides in its client id, where every other
     * node reads it from the group's description (server/group_view). The session
     * timeout bounds how long a dead node's partitions stay without a fold. */
    char client_id[300];
    snprintf(client_id, sizeof client_id, "%s%s", FOLD_ENGINE_CLIENT_ID_PREFIX,
             config->advertise ? config->advertise : "");
    const char *const group_defaults[] = {
        "partition.assignment.strategy", "cooperative-sticky",
        "session.timeout.ms", "10000",
        "heartbeat.interval.ms", "1000",
        NULL};
    const char *const defaults[] = {
        "group.id", config->group_id ? config->group_id : "lootlog-fold", /* without a group:
                                  needed by librdkafka, but no group is joined (assign) */
        "enable.auto.commit", "false",
        "enable.auto.offset.store", "false",
        "enable.partition.eof", "false",
        "fetch.wait.max.ms", "10", /* a write shows in GET within tens of ms */
        "queued.max.messages.kbytes", queue_text,
        "fetch.message.max.bytes", fetch_text,
        "fetch.max.bytes", "16777216",
        "client.id", config->group_id ? client_id : "lootlog-fold",
        NULL};
    struct stat info;
    if (stat(config->db_dir, &info) == 0 && !S_ISDIR(info.st_mode)) {
        snprintf(errstr, errstr_size,
                 "%s is a file: lootlog 0.1 kept one database file, lootlog now keeps a folder "
                 "of per-partition stores; rebuild it with `lootlog replay --db NEWDIR` "
                 "(docs/operations.md)",
                 config->db_dir);
        return NULL;
    }
    fold_engine *c = calloc(1, sizeof *c);
    rd_kafka_conf_t *conf = NULL;
    char why[512];
    if (!c) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&c->error_lock, NULL);
    pthread_mutex_init(&c->info_lock, NULL);
    pthread_mutex_init(&c->end_lock, NULL);
    pthread_cond_init(&c->end_cond, NULL);
    for (int p = 0; p < STORE_MAX_PARTITIONS; p++) pthread_mutex_init(&c->parts[p].ack_lock, NULL);
    c->config = *config;
    c->two_speeds = config->live_nice != config->nice;
    if (c->config.batch_max_events == 0) c->config.batch_max_events = 20000;
    if (c->config.batch_max_players == 0) c->config.batch_max_players = FOLD_BATCH_MAX_PLAYERS;
    if (c->config.batch_max_ms <= 0) c->config.batch_max_ms = 20;
    atomic_store(&c->lag, -1);
    for (int i = 0; i < STORE_MAX_PARTITIONS; i++) atomic_store(&c->next_offset[i], -1);
    for (int i = 0; i < STORE_MAX_PARTITIONS; i++) atomic_store(&c->partition_lag[i], -1);

    conf = kafka_config_new(config->brokers, defaults, config->kafka_props, config->kafka_prop_count,
                          errstr, errstr_size);
    if (!conf) goto fail;
    if (config->group_id) {
        /* group settings first, so -X overrides (applied by kafka_config_new) win: set
         * only those the user did not give */
        for (size_t i = 0; group_defaults[i]; i += 2) {
            int given = 0;
            size_t n = strlen(group_defaults[i]);
            for (size_t k = 0; k < config->kafka_prop_count; k++)
                given |= !strncmp(config->kafka_props[k], group_defaults[i], n) &&
                         config->kafka_props[k][n] == '=';
            if (!given && rd_kafka_conf_set(conf, group_defaults[i], group_defaults[i + 1], why,
                                            sizeof why) != RD_KAFKA_CONF_OK) {
                snprintf(errstr, errstr_size, "%s", why);
                goto fail;
            }
        }
        rd_kafka_conf_set_rebalance_cb(conf, on_rebalance);
        rd_kafka_conf_set_opaque(conf, c);
    }
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
    if (!c->rk) {
        snprintf(errstr, errstr_size, "creating consumer: %s", why);
        goto fail;
    }
    conf = NULL; /* owned by rk now */
    c->main_queue = rd_kafka_queue_get_consumer(c->rk);
    if (config->emit) {
        /* Same partitioner as the HTTP producer, so a guild's requests land on the
         * guild's partition whoever sends them. */
        const char *const outbox_defaults[] = {
            "acks", "all",
            "enable.idempotence", "true",
            "partitioner", "murmur2_random",
            "linger.ms", "2",
            "client.id", "lootlog-fold-outbox",
            NULL};
        conf = kafka_config_new(config->brokers, outbox_defaults, config->kafka_props,
                              config->kafka_prop_count, errstr, errstr_size);
        if (!conf) goto fail;
        rd_kafka_conf_set_dr_msg_cb(conf, outbox_delivered);
        c->outbox_rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
        if (!c->outbox_rk) {
            snprintf(errstr, errstr_size, "creating the outbox producer: %s", why);
            goto fail;
        }
        conf = NULL;
    }
    if (pthread_create(&c->engine, NULL, engine_thread, c)) {
        snprintf(errstr, errstr_size, "starting the fold engine failed");
        goto fail;
    }
    c->engine_started = 1;
    return c;
fail:
    if (conf) rd_kafka_conf_destroy(conf);
    fold_engine_stop(c);
    return NULL;
}

void fold_engine_get_stats(fold_engine *c, fold_engine_stats *stats) {
    stats->assigned = atomic_load(&c->assigned);
    stats->finished = atomic_load(&c->finished);
    stats->failed = atomic_load(&c->failed);
    stats->partition_count = atomic_load(&c->partition_count);
    stats->lag = atomic_load(&c->lag);
    stats->batches = atomic_load(&c->batches);
    stats->applied = atomic_load(&c->applied);
    stats->rejected = atomic_load(&c->rejected);
    stats->duplicates = atomic_load(&c->duplicates);
    stats->dead_letters = atomic_load(&c->dead_letters);
    stats->pending = atomic_load(&c->pending);
    stats->threads_catching_up = atomic_load(&c->workers_catching_up);
    stats->speed_changes = atomic_load(&c->speed_changes);
}

void fold_engine_error(fold_engine *c, char *errstr, size_t errstr_size) {
    pthread_mutex_lock(&c->error_lock);
    snprintf(errstr, errstr_size, "%s", c->error);
    pthread_mutex_unlock(&c->error_lock);
}

int fold_engine_commit_error(fold_engine *c, char *errstr, size_t errstr_size) {
    int failing = atomic_load(&c->commits_failing);
    pthread_mutex_lock(&c->error_lock);
    snprintf(errstr, errstr_size, "%s", failing ? c->commit_error : "");
    pthread_mutex_unlock(&c->error_lock);
    return failing;
}

uint64_t fold_engine_folded_of_type(fold_engine *c, int type) {
    if (type < 0 || type >= EVENT_TYPE_COUNT) return 0;
    return atomic_load(&c->folded_by_type[type]);
}

int64_t fold_engine_next_offset(fold_engine *c, int32_t partition) {
    if (partition < 0 || partition >= STORE_MAX_PARTITIONS) return -1;
    return atomic_load(&c->next_offset[partition]);
}

int fold_engine_owns(fold_engine *c, int32_t partition) {
    if (partition < 0 || partition >= STORE_MAX_PARTITIONS) return 0;
    return atomic_load(&c->owned[partition]);
}

uint64_t fold_engine_partition_generation(fold_engine *c, int32_t partition) {
    if (partition < 0 || partition >= STORE_MAX_PARTITIONS || !atomic_load(&c->owned[partition]))
        return 0;
    return atomic_load(&c->generation[partition]);
}

const char *fold_engine_source_name(fold_engine_partition_source source) {
    switch (source) {
    case FOLD_ENGINE_SOURCE_LOCAL: return "local";
    case FOLD_ENGINE_SOURCE_SNAPSHOT: return "snapshot";
    case FOLD_ENGINE_SOURCE_LOG: return "log";
    }
    return "?";
}

int fold_engine_partition_info(fold_engine *c, int32_t partition, fold_engine_partition_info_t *info) {
    memset(info, 0, sizeof *info);
    if (partition < 0 || partition >= STORE_MAX_PARTITIONS || !atomic_load(&c->owned[partition]))
        return 0;
    pthread_mutex_lock(&c->info_lock);
    info->source = c->parts[partition].source;
    info->opened_at = c->parts[partition].opened_at;
    snprintf(info->snapshot_id, sizeof info->snapshot_id, "%s", c->parts[partition].snapshot_id);
    pthread_mutex_unlock(&c->info_lock);
    return 1;
}

int64_t fold_engine_partition_lag(fold_engine *c, int32_t partition) {
    if (partition < 0 || partition >= STORE_MAX_PARTITIONS) return -1;
    return atomic_load(&c->partition_lag[partition]);
}

void fold_engine_stop(fold_engine *c) {
    if (!c) return;
    atomic_store(&c->stopping, 1);
    pthread_mutex_lock(&c->end_lock); /* a worker waiting for the others in all_folded */
    pthread_cond_broadcast(&c->end_cond);
    pthread_mutex_unlock(&c->end_lock);
    for (int i = 0; i < c->worker_count; i++) { /* a parked worker waits for this */
        pthread_mutex_lock(&c->workers[i].park_lock);
        pthread_cond_broadcast(&c->workers[i].park_cond);
        pthread_mutex_unlock(&c->workers[i].park_lock);
    }
    if (c->engine_started) pthread_join(c->engine, NULL);
    for (int i = 0; i < c->worker_count; i++)
        for (int speed = 0; speed < SPEED_COUNT; speed++)
            if (c->workers[i].runners[speed].started)
                pthread_join(c->workers[i].runners[speed].thread, NULL);
    if (c->rk && !c->config.group_id) rd_kafka_assign(c->rk, NULL);
    if (c->rk && c->config.group_id) rd_kafka_consumer_close(c->rk); /* leaves the group now:
                                                  the partitions move without a timeout */
    if (c->outbox_rk) {
        /* The last batches' emitted events: delivered now if Kafka takes them in time,
         * else at the next start from the outbox. */
        if (rd_kafka_flush(c->outbox_rk, 5000))
            log_warn("fold", "emitted events still unacknowledged at shutdown; they go out at the next start");
        for (int p = 0; p < STORE_MAX_PARTITIONS; p++)
            if (c->parts[p].open) drain_outbox(c, &c->parts[p], 1);
    }
    for (int i = 0; i < c->worker_count; i++) {
        worker *w = &c->workers[i];
        if (w->queue) rd_kafka_queue_destroy(w->queue);
        for (int p = 0; p < STORE_MAX_PARTITIONS; p++) store_close(w->receivers[p]);
        pthread_mutex_destroy(&w->park_lock);
        pthread_cond_destroy(&w->park_cond);
    }
    free(c->workers);
    if (c->main_queue) rd_kafka_queue_destroy(c->main_queue);
    if (c->rk) {
        if (!c->config.group_id) rd_kafka_consumer_close(c->rk);
        rd_kafka_destroy(c->rk);
    }
    if (c->outbox_rk) rd_kafka_destroy(c->outbox_rk); /* after the flush above */
    for (int p = 0; p < STORE_MAX_PARTITIONS; p++) {
        close_part(c, p);
        pthread_mutex_destroy(&c->parts[p].ack_lock);
    }
    pthread_mutex_destroy(&c->info_lock);
    pthread_mutex_destroy(&c->end_lock);
    pthread_cond_destroy(&c->end_cond);
    pthread_mutex_destroy(&c->error_lock);
    free(c);
}
