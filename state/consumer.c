/* consumer: the fold thread. librdkafka is used without a consumer group: partitions are
 * assigned explicitly at the offsets SQLite holds, because those offsets commit in the
 * same transaction as the state they produced — that, not Kafka's committed offsets, is
 * what makes a crash at any instant lose nothing and apply nothing twice. */
#include "consumer.h"

#include "kafka_conf.h"
#include "log.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

struct consumer {
    consumer_config config;
    store *st;
    rd_kafka_t *rk;
    rd_kafka_queue_t *queue;
    pthread_t thread;
    int thread_started;
    atomic_int stopping;
    /* published for other threads */
    atomic_int assigned;
    atomic_size_t partition_count;
    atomic_llong lag;
    atomic_ullong batches, applied, rejected, duplicates, dead_letters;
    atomic_llong next_offset[STORE_MAX_PARTITIONS];
    /* fold thread only */
    int32_t partitions[STORE_MAX_PARTITIONS];
    size_t assigned_count;
};

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Waits for the topic's metadata and assigns its partitions (or the configured range)
 * at the offsets stored in SQLite. Returns 0, or -1 when stopping. */
static int assign_from_store(consumer *c) {
    int64_t last_warn = 0;
    rd_kafka_topic_t *topic = rd_kafka_topic_new(c->rk, c->config.topic, NULL);
    while (!atomic_load(&c->stopping)) {
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err = rd_kafka_metadata(c->rk, 0, topic, &md, 1000);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topic_cnt == 1 &&
            md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR && md->topics[0].partition_cnt > 0) {
            size_t count = 0;
            for (int i = 0; i < md->topics[0].partition_cnt && count < STORE_MAX_PARTITIONS; i++) {
                int32_t p = md->topics[0].partitions[i].id;
                if (c->config.partition_first >= 0 &&
                    (p < c->config.partition_first || p > c->config.partition_last))
                    continue;
                c->partitions[count++] = p;
            }
            atomic_store(&c->partition_count, (size_t)md->topics[0].partition_cnt);
            rd_kafka_metadata_destroy(md);
            c->assigned_count = count;
            break;
        }
        if (md) rd_kafka_metadata_destroy(md);
        if (now_ms() - last_warn > 10000) {
            log_warn("fold", "waiting for topic '%s' metadata: %s", c->config.topic,
                     err ? rd_kafka_err2str(err) : "topic not found yet");
            last_warn = now_ms();
        }
        struct timespec pause = {0, 200 * 1000000L};
        nanosleep(&pause, NULL); /* metadata failed fast (e.g. refused); don't spin */
    }
    rd_kafka_topic_destroy(topic);
    if (atomic_load(&c->stopping)) return -1;

    store_offset stored[STORE_MAX_PARTITIONS];
    size_t stored_count = 0;
    if (store_load_offsets(c->st, stored, STORE_MAX_PARTITIONS, &stored_count)) {
        log_error("fold", "%s", store_errmsg(c->st));
        return -1;
    }
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)c->assigned_count);
    for (size_t i = 0; i < c->assigned_count; i++) {
        int64_t start = RD_KAFKA_OFFSET_BEGINNING;
        for (size_t j = 0; j < stored_count; j++)
            if (stored[j].partition == c->partitions[i]) start = stored[j].next_offset;
        rd_kafka_topic_partition_list_add(list, c->config.topic, c->partitions[i])->offset = start;
        if (start >= 0) atomic_store(&c->next_offset[c->partitions[i]], start);
    }
    rd_kafka_resp_err_t err = rd_kafka_assign(c->rk, list);
    rd_kafka_topic_partition_list_destroy(list);
    if (err) {
        log_error("fold", "assign failed: %s", rd_kafka_err2str(err));
        return -1;
    }
    atomic_store(&c->assigned, 1);
    log_info("fold", "folding %zu partition(s) of '%s' from stored offsets", c->assigned_count,
             c->config.topic);
    return 0;
}

/* Refreshes the lag from the watermarks librdkafka caches from fetch responses. */
static void update_lag(consumer *c) {
    int64_t lag = 0;
    for (size_t i = 0; i < c->assigned_count; i++) {
        int64_t low, high;
        int32_t p = c->partitions[i];
        if (rd_kafka_get_watermark_offsets(c->rk, c->config.topic, p, &low, &high) ||
            high < 0) {
            atomic_store(&c->lag, -1);
            return;
        }
        int64_t next = atomic_load(&c->next_offset[p]);
        if (next < low) next = low;
        if (high > next) lag += high - next;
    }
    atomic_store(&c->lag, lag);
}

/* Folds one batch that starts with first (already consumed). Returns 0 when committed,
 * -1 when the store failed (the batch was rolled back). */
static int fold_batch(consumer *c, rd_kafka_message_t *first) {
    int64_t deadline = now_ms() + c->config.batch_max_ms;
    int64_t touched[STORE_MAX_PARTITIONS];
    uint64_t counts[FOLD_DEAD_LETTER + 1] = {0};
    size_t events = 0;
    rd_kafka_message_t *msg = first;

    for (int i = 0; i < STORE_MAX_PARTITIONS; i++) touched[i] = -1;
    if (store_begin(c->st)) goto store_failed;
    while (msg) {
        if (msg->err) {
            if (msg->err != RD_KAFKA_RESP_ERR__PARTITION_EOF)
                log_warn("fold", "consume: %s", rd_kafka_message_errstr(msg));
        } else if (msg->partition >= 0 && msg->partition < STORE_MAX_PARTITIONS) {
            fold_result result;
            if (fold_message(c->st, &c->config.fold, msg->partition, msg->offset, msg->key,
                             msg->key_len, msg->payload, msg->len, &result)) {
                rd_kafka_message_destroy(msg);
                goto store_failed;
            }
            if (result.outcome == FOLD_DEAD_LETTER)
                log_warn("fold", "dead letter at %d:%lld: %s", (int)msg->partition,
                         (long long)msg->offset, result.reason);
            counts[result.outcome]++;
            touched[msg->partition] = msg->offset + 1;
            events++;
        }
        rd_kafka_message_destroy(msg);
        if (events >= c->config.batch_max_events || now_ms() >= deadline) break;
        msg = rd_kafka_consume_queue(c->queue, 0);
    }
    for (int p = 0; p < STORE_MAX_PARTITIONS; p++)
        if (touched[p] >= 0 && store_set_offset(c->st, p, touched[p])) goto store_failed;
    if (store_commit(c->st)) goto store_failed;
    for (int p = 0; p < STORE_MAX_PARTITIONS; p++)
        if (touched[p] >= 0) atomic_store(&c->next_offset[p], touched[p]);
    atomic_fetch_add(&c->applied, counts[FOLD_APPLIED]);
    atomic_fetch_add(&c->rejected, counts[FOLD_REJECTED]);
    atomic_fetch_add(&c->duplicates, counts[FOLD_DUPLICATE]);
    atomic_fetch_add(&c->dead_letters, counts[FOLD_DEAD_LETTER]);
    atomic_fetch_add(&c->batches, 1);
    if (c->config.on_commit) c->config.on_commit(c->config.on_commit_opaque);
    return 0;
store_failed:
    log_error("fold", "batch rolled back: %s", store_errmsg(c->st));
    store_rollback(c->st);
    return -1;
}

static void *fold_thread(void *arg) {
    consumer *c = arg;
    if (assign_from_store(c)) return NULL;
    int64_t last_lag_update = 0;
    while (!atomic_load(&c->stopping)) {
        rd_kafka_message_t *msg = rd_kafka_consume_queue(c->queue, 100);
        if (msg && fold_batch(c, msg)) {
            /* The consumed records were not committed: re-read them from the stored
             * offsets after a pause, rather than skip them. */
            struct timespec pause = {0, 500 * 1000000L};
            nanosleep(&pause, NULL);
            rd_kafka_assign(c->rk, NULL);
            if (assign_from_store(c)) break;
        }
        if (now_ms() - last_lag_update >= 100) {
            update_lag(c);
            last_lag_update = now_ms();
        }
    }
    return NULL;
}

consumer *consumer_start(const consumer_config *config, char *errstr, size_t errstr_size) {
    static const char *const defaults[] = {
        "group.id", "lootlog-fold", /* needed by librdkafka; no group is joined (assign) */
        "enable.auto.commit", "false",
        "enable.auto.offset.store", "false",
        "enable.partition.eof", "false",
        "fetch.wait.max.ms", "10", /* a write shows in GET within tens of ms */
        "queued.max.messages.kbytes", "16384",
        "client.id", "lootlog-fold",
        NULL};
    consumer *c = calloc(1, sizeof *c);
    rd_kafka_conf_t *conf = NULL;
    char why[512];
    if (!c) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    c->config = *config;
    if (c->config.batch_max_events == 0) c->config.batch_max_events = 5000;
    if (c->config.batch_max_ms <= 0) c->config.batch_max_ms = 20;
    atomic_store(&c->lag, -1);
    for (int i = 0; i < STORE_MAX_PARTITIONS; i++) atomic_store(&c->next_offset[i], -1);

    c->st = store_open(config->db_path, STORE_WRITER, errstr, errstr_size);
    if (!c->st) goto fail;
    conf = kafka_conf_new(config->brokers, defaults, config->kafka_props, config->kafka_prop_count,
                          errstr, errstr_size);
    if (!conf) goto fail;
    c->rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
    if (!c->rk) {
        snprintf(errstr, errstr_size, "creating consumer: %s", why);
        goto fail;
    }
    conf = NULL; /* owned by rk now */
    c->queue = rd_kafka_queue_get_consumer(c->rk);
    if (pthread_create(&c->thread, NULL, fold_thread, c)) {
        snprintf(errstr, errstr_size, "starting fold thread failed");
        goto fail;
    }
    c->thread_started = 1;
    return c;
fail:
    if (conf) rd_kafka_conf_destroy(conf);
    consumer_stop(c);
    return NULL;
}

void consumer_get_stats(consumer *c, consumer_stats *stats) {
    stats->assigned = atomic_load(&c->assigned);
    stats->partition_count = atomic_load(&c->partition_count);
    stats->lag = atomic_load(&c->lag);
    stats->batches = atomic_load(&c->batches);
    stats->applied = atomic_load(&c->applied);
    stats->rejected = atomic_load(&c->rejected);
    stats->duplicates = atomic_load(&c->duplicates);
    stats->dead_letters = atomic_load(&c->dead_letters);
}

int64_t consumer_next_offset(consumer *c, int32_t partition) {
    if (partition < 0 || partition >= STORE_MAX_PARTITIONS) return -1;
    return atomic_load(&c->next_offset[partition]);
}

void consumer_stop(consumer *c) {
    if (!c) return;
    atomic_store(&c->stopping, 1);
    if (c->thread_started) pthread_join(c->thread, NULL);
    if (c->queue) rd_kafka_queue_destroy(c->queue);
    if (c->rk) {
        rd_kafka_consumer_close(c->rk);
        rd_kafka_destroy(c->rk);
    }
    store_close(c->st);
    free(c);
}
