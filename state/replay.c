/* replay: a one-shot fold of a slice of the topic into a new file. Start and end offsets
 * are fixed per partition before the first record is read, so "the end" means the log
 * as it was when the replay began, and --verify compares at exactly the live offsets. */
#define _GNU_SOURCE /* strptime, timegm */
#include "replay.h"

#include "kafka_conf.h"
#include "log.h"
#include "store.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int32_t partition;
    int64_t start; /* first offset to fold */
    int64_t end;   /* stop before this offset */
    int64_t next;  /* next offset to store at the batch's commit; -1: nothing new */
    int done;
} slice;

/* Stores each slice's next offset (once per batch) and commits. */
static int commit_batch(store *st, slice *slices, size_t count) {
    for (size_t i = 0; i < count; i++) {
        if (slices[i].next < 0) continue;
        if (store_set_offset(st, slices[i].partition, slices[i].next)) return -1;
        slices[i].next = -1;
    }
    return store_commit(st);
}

typedef struct {
    char *user_id;
    uint64_t digest;
} player_digest;

typedef struct {
    player_digest *rows;
    size_t count, cap;
    int failed;
} digest_list;

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

int replay_parse_time(const char *text, int64_t *ms) {
    struct tm tm;
    memset(&tm, 0, sizeof tm);
    const char *rest = strptime(text, "%Y-%m-%dT%H:%M:%S", &tm);
    if (!rest) return -1;
    int64_t millis = 0;
    if (*rest == '.') {
        int digits = 0;
        for (rest++; *rest >= '0' && *rest <= '9'; rest++, digits++)
            if (digits < 3) millis = millis * 10 + (*rest - '0');
        for (; digits < 3; digits++) millis *= 10;
    }
    int64_t offset_s = 0;
    if (*rest == 'Z') {
        rest++;
    } else if (*rest == '+' || *rest == '-') {
        int hh, mm;
        if (sscanf(rest + 1, "%2d:%2d", &hh, &mm) != 2) return -1;
        offset_s = (hh * 3600 + mm * 60) * (*rest == '+' ? 1 : -1);
        rest += 6;
    }
    if (*rest) return -1;
    *ms = ((int64_t)timegm(&tm) - offset_s) * 1000 + millis;
    return 0;
}

/* Turns a timestamp into each slice's offset via Kafka's offsets-for-times: the first
 * offset whose timestamp is >= ms, or the log end when there is none. */
static int offsets_for_time(rd_kafka_t *rk, const char *topic, slice *slices, size_t count,
                            int64_t ms, int64_t *out, char *errstr, size_t errstr_size) {
    rd_kafka_topic_partition_list_t *list = rd_kafka_topic_partition_list_new((int)count);
    for (size_t i = 0; i < count; i++)
        rd_kafka_topic_partition_list_add(list, topic, slices[i].partition)->offset = ms;
    rd_kafka_resp_err_t err = rd_kafka_offsets_for_times(rk, list, 10000);
    if (err) {
        snprintf(errstr, errstr_size, "offsets for time: %s", rd_kafka_err2str(err));
        rd_kafka_topic_partition_list_destroy(list);
        return -1;
    }
    for (size_t i = 0; i < count; i++) {
        int64_t o = list->elems[i].offset;
        out[i] = o >= 0 ? o : -1; /* -1: no record at or after the time */
    }
    rd_kafka_topic_partition_list_destroy(list);
    return 0;
}

static void collect_digest(void *arg, const char *user_id, uint64_t digest) {
    digest_list *list = arg;
    if (list->count == list->cap) {
        size_t grown = list->cap ? list->cap * 2 : 1024;
        player_digest *rows = realloc(list->rows, grown * sizeof *rows);
        if (!rows) {
            list->failed = 1;
            return;
        }
        list->rows = rows;
        list->cap = grown;
    }
    list->rows[list->count].user_id = strdup(user_id);
    list->rows[list->count].digest = digest;
    list->count++;
}

static void free_digests(digest_list *list) {
    for (size_t i = 0; i < list->count; i++) free(list->rows[i].user_id);
    free(list->rows);
    memset(list, 0, sizeof *list);
}

/* Merges the two ordered lists; prints each differing player. Returns how many. */
static uint64_t compare_digests(const digest_list *live, const digest_list *rebuilt,
                                uint64_t *compared) {
    size_t i = 0, j = 0;
    uint64_t differing = 0;
    *compared = 0;
    while (i < live->count || j < rebuilt->count) {
        int cmp = i == live->count      ? 1
                  : j == rebuilt->count ? -1
                                        : strcmp(live->rows[i].user_id, rebuilt->rows[j].user_id);
        (*compared)++;
        if (cmp < 0) {
            printf("differs: %s (only in the live database)\n", live->rows[i++].user_id);
            differing++;
        } else if (cmp > 0) {
            printf("differs: %s (only in the rebuilt database)\n", rebuilt->rows[j++].user_id);
            differing++;
        } else {
            if (live->rows[i].digest != rebuilt->rows[j].digest) {
                printf("differs: %s (state)\n", live->rows[i].user_id);
                differing++;
            }
            i++;
            j++;
        }
    }
    return differing;
}

static void print_progress(uint64_t done, uint64_t total, double started, int final) {
    double elapsed = now_s() - started;
    double rate = elapsed > 0 ? done / elapsed : 0;
    double eta = rate > 0 && total > done ? (total - done) / rate : 0;
    fprintf(stderr, "\rreplay: %llu/%llu events, %.0f/s, ETA %.0fs   %s",
            (unsigned long long)done, (unsigned long long)total, rate, eta, final ? "\n" : "");
}

int replay_run(const replay_config *config, replay_summary *summary, char *errstr,
               size_t errstr_size) {
    static const char *const defaults[] = {
        "group.id", "lootlog-replay", "enable.auto.commit", "false",
        "enable.auto.offset.store", "false", "enable.partition.eof", "false",
        "client.id", "lootlog-replay", NULL};
    char why[512];
    int rc = -1;
    rd_kafka_t *rk = NULL;
    rd_kafka_queue_t *queue = NULL;
    rd_kafka_topic_t *topic = NULL;
    const struct rd_kafka_metadata *md = NULL;
    store *st = NULL, *live = NULL;
    slice slices[STORE_MAX_PARTITIONS];
    size_t slice_count = 0;
    digest_list live_digests = {0}, new_digests = {0};
    int tty = isatty(STDERR_FILENO);

    memset(summary, 0, sizeof *summary);
    double started = now_s();

    st = store_open(config->db_path, STORE_WRITER, errstr, errstr_size);
    if (!st) goto done;
    store_offset existing[STORE_MAX_PARTITIONS];
    size_t existing_count = 0;
    if (store_load_offsets(st, existing, STORE_MAX_PARTITIONS, &existing_count)) goto store_fail;
    if (existing_count > 0) {
        snprintf(errstr, errstr_size, "%s already holds folded state; replay needs a new file",
                 config->db_path);
        goto done;
    }

    rd_kafka_conf_t *conf = kafka_conf_new(config->brokers, defaults, config->kafka_props,
                                           config->kafka_prop_count, errstr, errstr_size);
    if (!conf) goto done;
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errstr_size, "creating consumer: %s", why);
        goto done;
    }
    topic = rd_kafka_topic_new(rk, config->topic, NULL);
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, topic, &md, 10000);
    if (err || md->topic_cnt != 1 || md->topics[0].err) {
        snprintf(errstr, errstr_size, "metadata for topic '%s': %s", config->topic,
                 rd_kafka_err2str(err ? err : md->topics[0].err));
        goto done;
    }
    for (int i = 0; i < md->topics[0].partition_cnt && slice_count < STORE_MAX_PARTITIONS; i++) {
        slice *s = &slices[slice_count++];
        s->partition = md->topics[0].partitions[i].id;
        s->next = -1;
        int64_t low, high;
        err = rd_kafka_query_watermark_offsets(rk, config->topic, s->partition, &low, &high, 10000);
        if (err) {
            snprintf(errstr, errstr_size, "watermarks of partition %d: %s", (int)s->partition,
                     rd_kafka_err2str(err));
            goto done;
        }
        s->start = config->from_offset >= 0 ? config->from_offset : low;
        if (s->start < low) s->start = low;
        s->end = high;
        if (config->until_offset >= 0 && config->until_offset < s->end) s->end = config->until_offset;
    }
    if (config->from_time_ms >= 0 || config->until_time_ms >= 0) {
        int64_t found[STORE_MAX_PARTITIONS];
        if (config->from_time_ms >= 0) {
            if (offsets_for_time(rk, config->topic, slices, slice_count, config->from_time_ms,
                                 found, errstr, errstr_size))
                goto done;
            for (size_t i = 0; i < slice_count; i++)
                slices[i].start = found[i] >= 0 ? found[i] : slices[i].end;
        }
        if (config->until_time_ms >= 0) {
            if (offsets_for_time(rk, config->topic, slices, slice_count, config->until_time_ms,
                                 found, errstr, errstr_size))
                goto done;
            for (size_t i = 0; i < slice_count; i++)
                if (found[i] >= 0 && found[i] < slices[i].end) slices[i].end = found[i];
        }
    }
    if (config->verify_path) {
        /* One read transaction on the live file for the whole replay: its snapshot is the
         * state at the offsets read here, however far the live fold goes meanwhile. */
        live = store_open(config->verify_path, STORE_READER, errstr, errstr_size);
        if (!live) goto done;
        store_offset live_offsets[STORE_MAX_PARTITIONS];
        size_t live_count = 0;
        if (store_begin(live) ||
            store_load_offsets(live, live_offsets, STORE_MAX_PARTITIONS, &live_count)) {
            snprintf(errstr, errstr_size, "%s", store_errmsg(live));
            goto done;
        }
        for (size_t i = 0; i < slice_count; i++) {
            int64_t live_next = slices[i].start; /* live folded nothing there: nor do we */
            for (size_t j = 0; j < live_count; j++)
                if (live_offsets[j].partition == slices[i].partition)
                    live_next = live_offsets[j].next_offset;
            slices[i].end = live_next;
        }
    }

    uint64_t total = 0;
    rd_kafka_topic_partition_list_t *assignment =
        rd_kafka_topic_partition_list_new((int)slice_count);
    for (size_t i = 0; i < slice_count; i++) {
        slice *s = &slices[i];
        s->done = s->start >= s->end;
        if (s->done) continue;
        total += (uint64_t)(s->end - s->start);
        rd_kafka_topic_partition_list_add(assignment, config->topic, s->partition)->offset = s->start;
    }
    err = rd_kafka_assign(rk, assignment);
    rd_kafka_topic_partition_list_destroy(assignment);
    if (err) {
        snprintf(errstr, errstr_size, "assign: %s", rd_kafka_err2str(err));
        goto done;
    }
    queue = rd_kafka_queue_get_consumer(rk);

    size_t remaining = 0;
    for (size_t i = 0; i < slice_count; i++) remaining += !slices[i].done;
    size_t in_batch = 0;
    double last_progress = 0;
    if (remaining && store_begin(st)) goto store_fail;
    while (remaining > 0) {
        rd_kafka_message_t *msg = rd_kafka_consume_queue(queue, 1000);
        if (!msg) {
            /* Quiet for a second: a slice whose last offsets hold no record (e.g.
             * transaction markers) is done once the consumer's position passed its end. */
            rd_kafka_topic_partition_list_t *pos = rd_kafka_topic_partition_list_new(1);
            for (size_t i = 0; i < slice_count; i++)
                if (!slices[i].done)
                    rd_kafka_topic_partition_list_add(pos, config->topic, slices[i].partition);
            if (rd_kafka_position(rk, pos) == RD_KAFKA_RESP_ERR_NO_ERROR) {
                for (int k = 0; k < pos->cnt; k++)
                    for (size_t i = 0; i < slice_count; i++)
                        if (slices[i].partition == pos->elems[k].partition && !slices[i].done &&
                            pos->elems[k].offset >= slices[i].end) {
                            slices[i].done = 1;
                            remaining--;
                        }
            }
            rd_kafka_topic_partition_list_destroy(pos);
            if (remaining == 0) {
                if (commit_batch(st, slices, slice_count)) goto store_fail;
            }
            continue;
        }
        if (msg->err) {
            log_warn("replay", "%s", rd_kafka_message_errstr(msg));
            rd_kafka_message_destroy(msg);
            continue;
        }
        slice *s = NULL;
        for (size_t i = 0; i < slice_count; i++)
            if (slices[i].partition == msg->partition) s = &slices[i];
        if (s && !s->done && msg->offset < s->end) {
            fold_result result;
            if (fold_message(st, &config->fold, msg->partition, msg->offset, msg->key,
                             msg->key_len, msg->payload, msg->len, &result)) {
                rd_kafka_message_destroy(msg);
                goto store_fail;
            }
            summary->events++;
            summary->applied += result.outcome == FOLD_APPLIED;
            summary->rejected += result.outcome == FOLD_REJECTED;
            summary->duplicates += result.outcome == FOLD_DUPLICATE;
            summary->dead_letters += result.outcome == FOLD_DEAD_LETTER;
            s->next = msg->offset + 1;
            in_batch++;
        }
        if (s && !s->done && msg->offset + 1 >= s->end) {
            s->done = 1;
            remaining--;
        }
        rd_kafka_message_destroy(msg);
        if (in_batch >= config->batch_events || remaining == 0) {
            if (commit_batch(st, slices, slice_count)) goto store_fail;
            in_batch = 0;
            if (remaining && store_begin(st)) goto store_fail;
        }
        if (tty && now_s() - last_progress > 0.25) {
            print_progress(summary->events, total, started, 0);
            last_progress = now_s();
        }
    }
    if (tty) print_progress(summary->events, total, started, 1);

    if (live) {
        if (store_begin(st) || store_player_digests(st, collect_digest, &new_digests) ||
            store_commit(st))
            goto store_fail;
        if (store_player_digests(live, collect_digest, &live_digests)) {
            snprintf(errstr, errstr_size, "%s", store_errmsg(live));
            goto done;
        }
        store_rollback(live);
        if (live_digests.failed || new_digests.failed) {
            snprintf(errstr, errstr_size, "out of memory comparing players");
            goto done;
        }
        summary->players_differing =
            compare_digests(&live_digests, &new_digests, &summary->players_compared);
    }
    summary->seconds = now_s() - started;
    rc = summary->players_differing ? 1 : 0;
    goto done;
store_fail:
    snprintf(errstr, errstr_size, "%s", store_errmsg(st));
    store_rollback(st);
    rc = -1;
done:
    free_digests(&live_digests);
    free_digests(&new_digests);
    if (md) rd_kafka_metadata_destroy(md);
    if (queue) rd_kafka_queue_destroy(queue);
    if (topic) rd_kafka_topic_destroy(topic);
    if (rk) {
        rd_kafka_consumer_close(rk);
        rd_kafka_destroy(rk);
    }
    store_close(live);
    store_close(st);
    return rc;
}
