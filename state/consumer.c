/* consumer: the fold engine. librdkafka is used without a consumer group: partitions are
 * assigned explicitly at the offsets their stores hold, because those offsets commit in
 * the same transaction as the state they produced — that, not Kafka's committed
 * offsets, is what makes a crash at any instant lose nothing and apply nothing twice.
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
#include "consumer.h"

#include "kafka_conf.h"
#include "log.h"

#include <errno.h>
#include <librdkafka/rdkafka.h>
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

/* One partition being folded. Owned by its worker's thread after the start. */
typedef struct {
    int32_t partition;
    store *st;
    store *checkpointer; /* the engine thread's connection */
    fold_partition *fold;
    worker *owner;
    int64_t resume_offset; /* where to read from after a failure (committed, or start) */
    int64_t next;          /* the offset after the last record folded (-1: none yet) */
    int64_t end;           /* stop before this offset; -1: never */
    int done;
    int commit_failing; /* the last commit failed (disk full, I/O error) */
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
} part;

struct worker {
    consumer *c;
    pthread_t thread;
    int started;
    rd_kafka_queue_t *queue;
    part *parts[STORE_MAX_PARTITIONS];
    size_t part_count;
    int64_t last_position_check_ms;
    store *receivers[STORE_MAX_PARTITIONS]; /* readers of other stores (outbox pruning) */
};

struct consumer {
    consumer_config config;
    rd_kafka_t *rk;
    rd_kafka_t *outbox_rk; /* the producer of emitted events (config.emit) */
    atomic_int caught_up;  /* every partition reached its catchup_end: outboxes may go out */
    rd_kafka_queue_t *main_queue;
    pthread_t engine;
    int engine_started;
    atomic_int stopping;
    part parts[STORE_MAX_PARTITIONS];
    size_t part_count;
    part *by_partition[STORE_MAX_PARTITIONS];
    worker *workers;
    int worker_count;
    pthread_mutex_t error_lock;
    char error[512];
    char commit_error[512]; /* the last failed commit's reason (error_lock) */
    atomic_int commits_failing; /* partitions whose last commit failed */
    /* published for other threads */
    atomic_int assigned, finished, failed;
    atomic_int workers_running;
    atomic_size_t partition_count;
    atomic_llong lag;
    atomic_ullong batches, applied, rejected, duplicates, dead_letters, pending;
    atomic_ullong folded_by_type[EVENT_TYPE_COUNT];
    atomic_llong next_offset[STORE_MAX_PARTITIONS];
    atomic_llong partition_lag[STORE_MAX_PARTITIONS]; /* -1: unknown or not folded here */
};

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void pause_ms(int ms) {
    struct timespec pause = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&pause, NULL);
}

/* Records the error that stops the engine. */
static void set_failed(consumer *c, const char *what) {
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
    int64_t seq;
} outbox_message;

/* librdkafka's delivery report (on the thread that polls outbox_rk). */
static void outbox_delivered(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque) {
    (void)rk;
    (void)opaque;
    outbox_message *om = msg->_private;
    if (!om) return;
    part *pt = om->pt;
    if (msg->err) {
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
    consumer *c;
    part *pt;
    int full; /* the producer's queue is full: stop for now */
} outbox_walk;

static int produce_outbox_row(void *arg, const store_outbox_row *r) {
    outbox_walk *walk = arg;
    outbox_message *om = malloc(sizeof *om);
    if (!om) return -1;
    om->pt = walk->pt;
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
    consumer *c;
    worker *w;
    int64_t *drop;
    size_t drop_count, drop_cap;
} outbox_prune;

static int note_if_in_log(void *arg, const store_outbox_row *r) {
    outbox_prune *prune = arg;
    consumer *c = prune->c;
    size_t partitions = atomic_load(&c->partition_count);
    if (partitions == 0) return 0;
    int32_t p = rd_kafka_msg_partitioner_murmur2(NULL, r->msg_key, strlen(r->msg_key),
                                                 (int32_t)partitions, NULL, NULL);
    if (p < 0 || p >= STORE_MAX_PARTITIONS || !c->by_partition[p]) return 0; /* not here */
    store **receiver = &prune->w->receivers[p];
    if (!*receiver) {
        char path[4096], why[256];
        if (store_path(c->config.db_dir, p, path, sizeof path) ||
            !(*receiver = store_open(path, p, STORE_READER, why, sizeof why)))
            return 0; /* kept: produced again, deduped by its receiver */
    }
    store_event_outcome outcome;
    if (store_read_event(*receiver, r->event_id, r->user_id, &outcome) <= 0) return 0;
    if (prune->drop_count == prune->drop_cap) {
        size_t cap = prune->drop_cap ? prune->drop_cap * 2 : 256;
        int64_t *bigger = realloc(prune->drop, cap * sizeof *bigger);
        if (!bigger) return 0;
        prune->drop = bigger;
        prune->drop_cap = cap;
    }
    prune->drop[prune->drop_count++] = r->seq;
    return 0;
}

/* Once caught up: drops the partition's outbox rows whose event the receiving store
 * here already holds (they are in the log). A failure only keeps rows. */
static void prune_outbox(consumer *c, part *pt) {
    outbox_prune prune = {.c = c, .w = pt->owner};
    if (store_outbox_walk(pt->st, 0, INT32_MAX, note_if_in_log, &prune) == 0 && prune.drop_count) {
        int failed = store_begin(pt->st);
        for (size_t i = 0; i < prune.drop_count && !failed; i++)
            failed = store_outbox_delete(pt->st, prune.drop[i]);
        if (failed || store_commit(pt->st)) {
            log_warn("fold", "partition %d: pruning the outbox: %s", (int)pt->partition,
                     store_errmsg(pt->st));
            store_rollback(pt->st);
        } else {
            log_info("fold", "partition %d: %zu emitted events were in the log already",
                     (int)pt->partition, prune.drop_count);
        }
    }
    free(prune.drop);
    pt->pruned = 1;
}

/* Produces the partition's outbox rows not yet with the producer (unless only_clear),
 * and deletes the rows Kafka acknowledged. On the partition's fold thread, between
 * batches, or at shutdown once the fold threads are gone. */
static void drain_outbox(consumer *c, part *pt, int only_clear) {
    if (!c->outbox_rk) return;
    if (!pt->pruned && !only_clear) {
        if (!atomic_load(&c->caught_up)) only_clear = 1; /* not yet: see the top */
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
    for (size_t i = 0; i < acked_count && !failed; i++) failed = store_outbox_delete(pt->st, acked[i]);
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
static void retry_partition(consumer *c, part *pt) {
    log_error("fold", "partition %d: batch rolled back: %s", (int)pt->partition,
              fold_partition_errmsg(pt->fold));
    pthread_mutex_lock(&c->error_lock);
    snprintf(c->commit_error, sizeof c->commit_error, "partition %d: %s", (int)pt->partition,
             fold_partition_errmsg(pt->fold));
    pthread_mutex_unlock(&c->error_lock);
    if (!pt->commit_failing) atomic_fetch_add(&c->commits_failing, 1);
    pt->commit_failing = 1;
    fold_partition_discard(pt->fold);
    memset(pt->counts, 0, sizeof pt->counts);
    memset(pt->type_counts, 0, sizeof pt->type_counts);
    pt->next = pt->resume_offset >= 0 ? pt->resume_offset : -1;
    pause_ms(RETRY_PAUSE_MS);
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
static int commit_partition(consumer *c, part *pt) {
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
    return 0;
}

static void finish_partition(consumer *c, part *pt) {
    if (commit_partition(c, pt) == 0) pt->done = 1;
}

/* Folds one record of the worker's partitions. */
static void fold_record(consumer *c, rd_kafka_message_t *msg, int64_t now) {
    if (msg->err) {
        if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
            log_warn("fold", "consume: %s", rd_kafka_message_errstr(msg));
        return;
    }
    if (msg->partition < 0 || msg->partition >= STORE_MAX_PARTITIONS) return;
    part *pt = c->by_partition[msg->partition];
    /* Records before the resume point are from before a seek back: skip them. */
    if (!pt || pt->done || (pt->next >= 0 && msg->offset < pt->next)) return;
    if (pt->end >= 0 && msg->offset >= pt->end) {
        finish_partition(c, pt);
        return;
    }
    fold_result result;
    if (fold_partition_message(pt->fold, msg->offset, msg->key, msg->key_len, msg->payload,
                               msg->len, &result)) {
        retry_partition(c, pt);
        return;
    }
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
    else if (fold_partition_pending(pt->fold) >= c->config.batch_max_events)
        commit_partition(c, pt);
}

/* With end offsets: a partition whose last offsets hold no record (transaction markers,
 * compaction) is done once the consumer's position passed its end. */
static void check_positions(consumer *c, worker *w) {
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)w->part_count);
    for (size_t i = 0; i < w->part_count; i++)
        if (!w->parts[i]->done && w->parts[i]->end >= 0)
            rd_kafka_topic_partition_list_add(list, c->config.topic, w->parts[i]->partition);
    if (list->cnt && rd_kafka_position(c->rk, list) == RD_KAFKA_RESP_ERR_NO_ERROR) {
        for (int k = 0; k < list->cnt; k++) {
            part *pt = c->by_partition[list->elems[k].partition];
            if (pt && list->elems[k].offset >= pt->end) finish_partition(c, pt);
        }
    }
    rd_kafka_topic_partition_list_destroy(list);
}

static int worker_done(const worker *w) {
    for (size_t i = 0; i < w->part_count; i++)
        if (!w->parts[i]->done) return 0;
    return 1;
}

static void *fold_thread(void *arg) {
    worker *w = arg;
    consumer *c = w->c;
    if (c->config.nice) setpriority(PRIO_PROCESS, (id_t)gettid(), c->config.nice);
    char name[16]; /* the kernel keeps 15 characters: "fold-<n>" in top, ps and /proc */
    snprintf(name, sizeof name, "fold-%d", (int)(w - c->workers));
    pthread_setname_np(pthread_self(), name);
    /* What a previous run committed to the outbox but may not have produced. */
    for (size_t i = 0; i < w->part_count; i++) drain_outbox(c, w->parts[i], 0);
    while (!atomic_load(&c->stopping) && !worker_done(w)) {
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
        int64_t now = now_ms();
        for (ssize_t i = 0; i < taken; i++) {
            fold_record(c, msgs[i], now);
            rd_kafka_message_destroy(msgs[i]);
        }
        now = now_ms();
        for (size_t i = 0; i < w->part_count; i++) {
            part *pt = w->parts[i];
            if (fold_partition_pending(pt->fold) &&
                (idle || now - pt->batch_started_ms >= c->config.batch_max_ms))
                commit_partition(c, pt);
        }
        if (taken == 0 && now - w->last_position_check_ms >= 1000) {
            w->last_position_check_ms = now;
            check_positions(c, w);
        }
        if (idle)
            for (size_t i = 0; i < w->part_count; i++)
                if (!fold_partition_pending(w->parts[i]->fold)) drain_outbox(c, w->parts[i], 0);
    }
    /* Stopping: the batch in hand is committed, not thrown away. */
    for (size_t i = 0; i < w->part_count; i++) commit_partition(c, w->parts[i]);
    atomic_fetch_sub(&c->workers_running, 1);
    return NULL;
}

/* ---------------------------------------------------------------- the engine thread */

/* Waits for the topic's metadata; fills the partitions to fold. Returns 0, or -1 when
 * stopping. */
static int wait_for_topic(consumer *c, int32_t *partitions, size_t *count) {
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
        if (now_ms() - last_warn > 10000) {
            log_warn("fold", "waiting for topic '%s' metadata: %s", c->config.topic,
                     err ? rd_kafka_err2str(err)
                         : "no such topic yet (`lootlog topic ensure` creates it)");
            last_warn = now_ms();
        }
        pause_ms(200); /* metadata failed fast (e.g. refused); don't spin */
    }
    rd_kafka_topic_destroy(topic);
    return atomic_load(&c->stopping) || atomic_load(&c->failed) ? -1 : 0;
}

/* Opens the stores and the folds of the partitions; reads where each resumes. */
static int open_partitions(consumer *c, const int32_t *partitions, size_t count) {
    char errstr[512], path[4096];
    if (mkdir(c->config.db_dir, 0755) && errno != EEXIST) {
        snprintf(errstr, sizeof errstr, "creating %s: %s", c->config.db_dir, strerror(errno));
        set_failed(c, errstr);
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        part *pt = &c->parts[c->part_count];
        int32_t p = partitions[i];
        memset(pt, 0, sizeof *pt);
        pthread_mutex_init(&pt->ack_lock, NULL);
        pt->catchup_end = -1;
        pt->partition = p;
        pt->end = c->config.end_offsets ? c->config.end_offsets[p] : -1;
        if (store_path(c->config.db_dir, p, path, sizeof path)) {
            set_failed(c, "store path too long");
            return -1;
        }
        c->part_count++;
        pt->st = store_open(path, p, STORE_WRITER, errstr, sizeof errstr);
        if (!pt->st) goto fail;
        /* A store folds one topic only: another topic's offsets would mean nothing here. */
        if (store_claim_topic(pt->st, c->config.topic)) {
            snprintf(errstr, sizeof errstr, "%s", store_errmsg(pt->st));
            goto fail;
        }
        pt->checkpointer = store_open(path, p, STORE_READER, errstr, sizeof errstr);
        if (!pt->checkpointer) goto fail;
        int64_t stored;
        if (store_get_next_offset(pt->st, &stored)) {
            snprintf(errstr, sizeof errstr, "%s", store_errmsg(pt->st));
            goto fail;
        }
        int64_t start = c->config.start_offsets ? c->config.start_offsets[p] : -1;
        pt->resume_offset = stored >= 0 ? stored : start;
        pt->next = pt->resume_offset;
        if (stored >= 0) atomic_store(&c->next_offset[p], stored);
        if (pt->end >= 0 && pt->resume_offset >= 0 && pt->resume_offset >= pt->end) pt->done = 1;
        c->by_partition[p] = pt;
    }
    return 0;
fail:
    set_failed(c, errstr);
    return -1;
}

/* Starts the fold threads, each with the queue its partitions are forwarded to, and
 * assigns the partitions. Returns 0 or -1. */
static int start_workers(consumer *c) {
    char errstr[512];
    /* By default one thread per partition: partitions differ in size (a hot player makes
     * its partition big), and with a thread each the kernel spreads the work over the
     * cores, where a fixed split of partitions between per-core threads leaves a core
     * idle once its share is done (1M-event replay: 9.1 s with 2 threads, 5.3 s with 6). */
    int threads = c->config.threads > 0 ? c->config.threads : FOLD_DEFAULT_THREADS_MAX;
    if (threads < 1) threads = 1;
    if ((size_t)threads > c->part_count) threads = c->part_count ? (int)c->part_count : 1;
    c->workers = calloc((size_t)threads, sizeof *c->workers);
    if (!c->workers) {
        set_failed(c, "out of memory");
        return -1;
    }
    c->worker_count = threads;
    for (int i = 0; i < threads; i++) {
        c->workers[i].c = c;
        c->workers[i].queue = rd_kafka_queue_new(c->rk);
    }
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)c->part_count);
    for (size_t i = 0; i < c->part_count; i++) {
        part *pt = &c->parts[i];
        worker *w = &c->workers[i % (size_t)threads];
        pt->owner = w;
        w->parts[w->part_count++] = pt;
        pt->fold = fold_partition_new(pt->st, &c->config.fold, errstr, sizeof errstr);
        if (!pt->fold) {
            rd_kafka_topic_partition_list_destroy(list);
            set_failed(c, errstr);
            return -1;
        }
        if (pt->done) continue;
        rd_kafka_topic_partition_list_add(list, c->config.topic, pt->partition)->offset =
            pt->resume_offset >= 0 ? pt->resume_offset : RD_KAFKA_OFFSET_BEGINNING;
        /* Forwarded before the assignment, so no record reaches the main queue. */
        rd_kafka_queue_t *pq = rd_kafka_queue_get_partition(c->rk, c->config.topic, pt->partition);
        if (!pq) {
            rd_kafka_topic_partition_list_destroy(list);
            set_failed(c, "no queue for a partition");
            return -1;
        }
        rd_kafka_queue_forward(pq, w->queue);
        rd_kafka_queue_destroy(pq);
    }
    rd_kafka_resp_err_t err = rd_kafka_assign(c->rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (err) {
        snprintf(errstr, sizeof errstr, "assign failed: %s", rd_kafka_err2str(err));
        set_failed(c, errstr);
        return -1;
    }
    atomic_store(&c->workers_running, threads);
    for (int i = 0; i < threads; i++) {
        if (pthread_create(&c->workers[i].thread, NULL, fold_thread, &c->workers[i])) {
            atomic_fetch_sub(&c->workers_running, threads - i);
            set_failed(c, "starting a fold thread failed");
            return -1;
        }
        c->workers[i].started = 1;
    }
    atomic_store(&c->assigned, 1);
    log_info("fold", "folding %zu partition(s) of '%s' into %s on %d thread(s)", c->part_count,
             c->config.topic, c->config.db_dir, threads);
    return 0;
}

/* Refreshes the lag from the watermarks librdkafka caches from fetch responses. */
static void update_lag(consumer *c) {
    int64_t lag = 0;
    for (size_t i = 0; i < c->part_count; i++) {
        int64_t low, high;
        part *pt = &c->parts[i];
        if (pt->done) continue;
        if (rd_kafka_get_watermark_offsets(c->rk, c->config.topic, pt->partition, &low, &high) ||
            high < 0) {
            atomic_store(&c->partition_lag[pt->partition], -1);
            atomic_store(&c->lag, -1);
            return;
        }
        int64_t next = atomic_load(&c->next_offset[pt->partition]);
        if (next < low) next = low;
        if (high > next) lag += high - next;
        atomic_store(&c->partition_lag[pt->partition], high > next ? high - next : 0);
    }
    atomic_store(&c->lag, lag);
}

/* With emit: records each partition's end at the start, then says when every partition
 * has folded up to it (see the top). Once that is so it does nothing more. */
static void check_caught_up(consumer *c) {
    if (!c->outbox_rk || atomic_load(&c->caught_up)) return;
    for (size_t i = 0; i < c->part_count; i++) {
        part *pt = &c->parts[i];
        int64_t low, high;
        if (pt->catchup_end < 0) {
            if (rd_kafka_query_watermark_offsets(c->rk, c->config.topic, pt->partition, &low,
                                                 &high, 1000))
                return;
            pt->catchup_end = high;
        }
        int64_t next = atomic_load(&c->next_offset[pt->partition]);
        if (pt->catchup_end > 0 && next < pt->catchup_end) return;
    }
    atomic_store(&c->caught_up, 1);
    log_info("fold", "caught up with the log: emitted events go out from now on");
}

static void *engine_thread(void *arg) {
    consumer *c = arg;
    int32_t partitions[STORE_MAX_PARTITIONS];
    size_t count;
    if (wait_for_topic(c, partitions, &count) || open_partitions(c, partitions, count) ||
        start_workers(c))
        return NULL;
    int64_t last_checkpoint = now_ms();
    while (!atomic_load(&c->stopping)) {
        /* Errors that concern no partition (brokers down, ...) arrive here. */
        rd_kafka_message_t *msg = rd_kafka_consume_queue(c->main_queue, 100);
        if (c->outbox_rk) rd_kafka_poll(c->outbox_rk, 0); /* delivery reports */
        if (msg) {
            if (msg->err && msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                log_warn("fold", "consumer: %s", rd_kafka_message_errstr(msg));
            rd_kafka_message_destroy(msg);
        }
        update_lag(c);
        check_caught_up(c);
        if (now_ms() - last_checkpoint >= CHECKPOINT_EVERY_MS) {
            for (size_t i = 0; i < c->part_count; i++)
                if (store_checkpoint(c->parts[i].checkpointer))
                    log_warn("fold", "%s", store_errmsg(c->parts[i].checkpointer));
            last_checkpoint = now_ms();
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

consumer *consumer_start(const consumer_config *config, char *errstr, size_t errstr_size) {
    /* The fetch queue is per partition, since each partition's queue is forwarded on its
     * own, and it is most of the process's memory: serve folding 1M events of 100k
     * players peaked at 853 MB with 64 MB queues, 148 MB with 2 MB. Replay asks for more
     * (it halves a rebuild's time); serve keeps the default. */
    size_t queue_kbytes = config->fetch_queue_kbytes ? config->fetch_queue_kbytes : 2048;
    char queue_text[32], fetch_text[32];
    snprintf(queue_text, sizeof queue_text, "%zu", queue_kbytes);
    snprintf(fetch_text, sizeof fetch_text, "%zu", queue_kbytes * 512); /* half the queue */
    const char *const defaults[] = {
        "group.id", "lootlog-fold", /* needed by librdkafka; no group is joined (assign) */
        "enable.auto.commit", "false",
        "enable.auto.offset.store", "false",
        "enable.partition.eof", "false",
        "fetch.wait.max.ms", "10", /* a write shows in GET within tens of ms */
        "queued.max.messages.kbytes", queue_text,
        "fetch.message.max.bytes", fetch_text,
        "fetch.max.bytes", "16777216",
        "client.id", "lootlog-fold",
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
    consumer *c = calloc(1, sizeof *c);
    rd_kafka_conf_t *conf = NULL;
    char why[512];
    if (!c) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&c->error_lock, NULL);
    c->config = *config;
    if (c->config.batch_max_events == 0) c->config.batch_max_events = 20000;
    if (c->config.batch_max_ms <= 0) c->config.batch_max_ms = 20;
    atomic_store(&c->lag, -1);
    for (int i = 0; i < STORE_MAX_PARTITIONS; i++) atomic_store(&c->next_offset[i], -1);
    for (int i = 0; i < STORE_MAX_PARTITIONS; i++) atomic_store(&c->partition_lag[i], -1);

    conf = kafka_conf_new(config->brokers, defaults, config->kafka_props, config->kafka_prop_count,
                          errstr, errstr_size);
    if (!conf) goto fail;
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
        conf = kafka_conf_new(config->brokers, outbox_defaults, config->kafka_props,
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
    consumer_stop(c);
    return NULL;
}

void consumer_get_stats(consumer *c, consumer_stats *stats) {
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
}

void consumer_error(consumer *c, char *errstr, size_t errstr_size) {
    pthread_mutex_lock(&c->error_lock);
    snprintf(errstr, errstr_size, "%s", c->error);
    pthread_mutex_unlock(&c->error_lock);
}

int consumer_commit_error(consumer *c, char *errstr, size_t errstr_size) {
    int failing = atomic_load(&c->commits_failing);
    pthread_mutex_lock(&c->error_lock);
    snprintf(errstr, errstr_size, "%s", failing ? c->commit_error : "");
    pthread_mutex_unlock(&c->error_lock);
    return failing;
}

uint64_t consumer_folded_of_type(consumer *c, int type) {
    if (type < 0 || type >= EVENT_TYPE_COUNT) return 0;
    return atomic_load(&c->folded_by_type[type]);
}

int64_t consumer_next_offset(consumer *c, int32_t partition) {
    if (partition < 0 || partition >= STORE_MAX_PARTITIONS) return -1;
    return atomic_load(&c->next_offset[partition]);
}

int64_t consumer_partition_lag(consumer *c, int32_t partition) {
    if (partition < 0 || partition >= STORE_MAX_PARTITIONS) return -1;
    return atomic_load(&c->partition_lag[partition]);
}

void consumer_stop(consumer *c) {
    if (!c) return;
    atomic_store(&c->stopping, 1);
    if (c->engine_started) pthread_join(c->engine, NULL);
    for (int i = 0; i < c->worker_count; i++) {
        worker *w = &c->workers[i];
        if (w->started) pthread_join(w->thread, NULL);
    }
    if (c->rk) rd_kafka_assign(c->rk, NULL);
    if (c->outbox_rk) {
        /* The last batches' emitted events: delivered now if Kafka takes them in time,
         * else at the next start from the outbox. */
        if (rd_kafka_flush(c->outbox_rk, 5000))
            log_warn("fold", "emitted events still unacknowledged at shutdown; they go out at the next start");
        for (size_t i = 0; i < c->part_count; i++)
            if (c->parts[i].st) drain_outbox(c, &c->parts[i], 1);
    }
    for (int i = 0; i < c->worker_count; i++) {
        worker *w = &c->workers[i];
        if (w->queue) rd_kafka_queue_destroy(w->queue);
        for (int p = 0; p < STORE_MAX_PARTITIONS; p++) store_close(w->receivers[p]);
    }
    free(c->workers);
    if (c->main_queue) rd_kafka_queue_destroy(c->main_queue);
    if (c->rk) {
        rd_kafka_consumer_close(c->rk);
        rd_kafka_destroy(c->rk);
    }
    if (c->outbox_rk) rd_kafka_destroy(c->outbox_rk); /* after the flush above */
    for (size_t i = 0; i < c->part_count; i++) {
        fold_partition_free(c->parts[i].fold);
        store_close(c->parts[i].checkpointer);
        store_close(c->parts[i].st);
        free(c->parts[i].acked);
        pthread_mutex_destroy(&c->parts[i].ack_lock);
    }
    pthread_mutex_destroy(&c->error_lock);
    free(c);
}
