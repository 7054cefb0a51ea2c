/* consumer: the fold engine. librdkafka is used without a consumer group: partitions are
 * assigned explicitly at the offsets their stores hold, because those offsets commit in
 * the same transaction as the state they produced — that, not Kafka's committed
 * offsets, is what makes a crash at any instant lose nothing and apply nothing twice.
 *
 * Threads: an engine thread waits for the topic, opens one store per partition, hands
 * the partitions round-robin to the fold threads (each partition's queue is forwarded
 * to its thread's queue, so one thread alone ever folds a partition) and then watches
 * errors, lag and WAL checkpoints. Checkpoints run there, on connections of their own,
 * so no fold commit ever pays for one. */
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
    int64_t batch_started_ms;
    uint64_t counts[FOLD_DEAD_LETTER + 1];
} part;

struct worker {
    consumer *c;
    pthread_t thread;
    int started;
    rd_kafka_queue_t *queue;
    part *parts[STORE_MAX_PARTITIONS];
    size_t part_count;
    store *others[STORE_MAX_PARTITIONS]; /* readers of other partitions (guild counts) */
    int64_t last_position_check_ms;
};

struct consumer {
    consumer_config config;
    rd_kafka_t *rk;
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
    /* published for other threads */
    atomic_int assigned, finished, failed;
    atomic_int workers_running;
    atomic_size_t partition_count;
    atomic_llong lag;
    atomic_ullong batches, applied, rejected, duplicates, dead_letters;
    atomic_llong next_offset[STORE_MAX_PARTITIONS];
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

/* The guild's members in the other partitions' committed state (fold_config's interim
 * capacity rule), read through this worker's own reader connections. */
static int64_t members_elsewhere(void *opaque, int32_t partition, const char *guild_id) {
    worker *w = opaque;
    consumer *c = w->c;
    int64_t total = 0;
    for (size_t i = 0; i < c->part_count; i++) {
        int32_t p = c->parts[i].partition;
        if (p == partition) continue;
        if (!w->others[p]) {
            char path[4096], why[256];
            if (store_path(c->config.db_dir, p, path, sizeof path)) continue;
            w->others[p] = store_open(path, p, STORE_READER, why, sizeof why);
            if (!w->others[p]) continue;
        }
        int64_t count = 0;
        if (store_get_guild_count(w->others[p], guild_id, &count) == 0) total += count;
    }
    return total;
}

/* Forgets the partition's uncommitted batch and reads it again from its stored offset
 * after a pause (the store failed: disk full, I/O error). */
static void retry_partition(consumer *c, part *pt) {
    log_error("fold", "partition %d: batch rolled back: %s", (int)pt->partition,
              fold_partition_errmsg(pt->fold));
    fold_partition_discard(pt->fold);
    memset(pt->counts, 0, sizeof pt->counts);
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
    if (fold_partition_commit(pt->fold, pt->next)) {
        retry_partition(c, pt);
        return -1;
    }
    pt->resume_offset = pt->next;
    atomic_store(&c->next_offset[pt->partition], pt->next);
    atomic_fetch_add(&c->applied, pt->counts[FOLD_APPLIED]);
    atomic_fetch_add(&c->rejected, pt->counts[FOLD_REJECTED]);
    atomic_fetch_add(&c->duplicates, pt->counts[FOLD_DUPLICATE]);
    atomic_fetch_add(&c->dead_letters, pt->counts[FOLD_DEAD_LETTER]);
    atomic_fetch_add(&c->batches, 1);
    memset(pt->counts, 0, sizeof pt->counts);
    if (c->config.on_commit) c->config.on_commit(c->config.on_commit_opaque);
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
        log_warn("fold", "dead letter at %d:%lld: %s", (int)msg->partition,
                 (long long)msg->offset, result.reason);
    if (fold_partition_pending(pt->fold) == 1) pt->batch_started_ms = now;
    pt->counts[result.outcome]++;
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
            rd_kafka_metadata_destroy(md);
            break;
        }
        if (md) rd_kafka_metadata_destroy(md);
        if (now_ms() - last_warn > 10000) {
            log_warn("fold", "waiting for topic '%s' metadata: %s", c->config.topic,
                     err ? rd_kafka_err2str(err) : "topic not found yet");
            last_warn = now_ms();
        }
        pause_ms(200); /* metadata failed fast (e.g. refused); don't spin */
    }
    rd_kafka_topic_destroy(topic);
    return atomic_load(&c->stopping) ? -1 : 0;
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
        pt->partition = p;
        pt->end = c->config.end_offsets ? c->config.end_offsets[p] : -1;
        if (store_path(c->config.db_dir, p, path, sizeof path)) {
            set_failed(c, "store path too long");
            return -1;
        }
        c->part_count++;
        pt->st = store_open(path, p, STORE_WRITER, errstr, sizeof errstr);
        if (!pt->st) goto fail;
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
        fold_config fc = c->config.fold;
        fc.members_elsewhere = members_elsewhere;
        fc.members_elsewhere_opaque = w;
        pt->fold = fold_partition_new(pt->st, &fc, errstr, sizeof errstr);
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
            atomic_store(&c->lag, -1);
            return;
        }
        int64_t next = atomic_load(&c->next_offset[pt->partition]);
        if (next < low) next = low;
        if (high > next) lag += high - next;
    }
    atomic_store(&c->lag, lag);
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
        if (msg) {
            if (msg->err && msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                log_warn("fold", "consumer: %s", rd_kafka_message_errstr(msg));
            rd_kafka_message_destroy(msg);
        }
        update_lag(c);
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
}

void consumer_error(consumer *c, char *errstr, size_t errstr_size) {
    pthread_mutex_lock(&c->error_lock);
    snprintf(errstr, errstr_size, "%s", c->error);
    pthread_mutex_unlock(&c->error_lock);
}

int64_t consumer_next_offset(consumer *c, int32_t partition) {
    if (partition < 0 || partition >= STORE_MAX_PARTITIONS) return -1;
    return atomic_load(&c->next_offset[partition]);
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
    for (int i = 0; i < c->worker_count; i++) {
        worker *w = &c->workers[i];
        if (w->queue) rd_kafka_queue_destroy(w->queue);
        for (int p = 0; p < STORE_MAX_PARTITIONS; p++) store_close(w->others[p]);
    }
    free(c->workers);
    if (c->main_queue) rd_kafka_queue_destroy(c->main_queue);
    if (c->rk) {
        rd_kafka_consumer_close(c->rk);
        rd_kafka_destroy(c->rk);
    }
    for (size_t i = 0; i < c->part_count; i++) {
        fold_partition_free(c->parts[i].fold);
        store_close(c->parts[i].checkpointer);
        store_close(c->parts[i].st);
    }
    pthread_mutex_destroy(&c->error_lock);
    free(c);
}
