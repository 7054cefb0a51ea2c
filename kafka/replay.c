/* replay: a one-shot fold of a slice of the topic into a new folder of stores, with the
 * same fold engine as serve. Start and end offsets
 * are fixed per partition before the first record is read, so "the end" means the log
 * as it was when the replay began, and --verify compares at exactly the live offsets. */
#define _GNU_SOURCE /* strptime, timegm */
#include "kafka/replay.h"
#include "lib/clock.h"

#include "kafka/fold_engine.h"
#include "kafka/config.h"
#include "kafka/outbox_prune.h"
#include "lib/log.h"
#include "state/store.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    int32_t partition;
    int64_t start; /* first offset to fold */
    int64_t end;   /* stop before this offset */
} slice;

typedef struct {
    char *user_id;
    uint64_t digest;
} player_digest;

typedef struct {
    player_digest *rows;
    size_t count, cap;
    int failed;
} digest_list;

/* ---------------------------------------------------------------- the outbox after a replay
 * The replay folded the log as it is, emitting again every guild request and decision
 * into the stores' outboxes. Most of them are in the log already, folded by their
 * receiving partition in this very replay; only the others must go out (the next serve
 * on these stores produces what is left). */

/* The guild-side events each partition folded in this replay, as (partition, user,
 * event id): what the prune would otherwise look up in the new stores, whose history
 * holds every record folded but the dead letters. Half of the prune's time went to those
 * lookups (B-tree descents per player). The fold threads fill it (on_guild_event) and
 * read it at their end (prune_own_outbox). Past its memory (max_bytes) or out of memory,
 * it gives up, frees its keys, and the prune asks the stores after the fold. */
typedef struct {
    pthread_mutex_t lock;
    char **keys; /* open addressing over "partition/user/id"; NULL: empty */
    size_t count, cap;
    size_t bytes, max_bytes; /* the keys and the table, about */
    int given_up;
} guild_event_set;

static uint64_t key_hash(const char *key) {
    uint64_t hash = 0xcbf29ce484222325ULL; /* FNV-1a; a table hash, never persisted */
    for (const unsigned char *p = (const unsigned char *)key; *p; p++)
        hash = (hash ^ *p) * 0x100000001b3ULL;
    return hash;
}

/* "partition/user/id" into buf ('/' cannot be in an identifier). */
static void guild_event_key(char *buf, size_t size, int32_t partition, const char *user_id,
                            const char *event_id) {
    snprintf(buf, size, "%d/%s/%s", (int)partition, user_id, event_id);
}

static char **slot_of(char **keys, size_t cap, const char *key) {
    size_t i = (size_t)key_hash(key) & (cap - 1);
    while (keys[i] && strcmp(keys[i], key) != 0) i = (i + 1) & (cap - 1);
    return &keys[i];
}

static void free_keys(guild_event_set *set) {
    for (size_t i = 0; i < set->cap; i++) free(set->keys[i]);
    free(set->keys);
    set->keys = NULL;
    set->count = set->cap = set->bytes = 0;
}

static void note_guild_event(void *opaque, int32_t partition, const char *user_id,
                             const char *event_id) {
    guild_event_set *set = opaque;
    char key[3 * STORE_ID_SIZE + 16];
    guild_event_key(key, sizeof key, partition, user_id, event_id);
    size_t key_bytes = strlen(key) + 1 + 16; /* and the allocator's header, about */
    pthread_mutex_lock(&set->lock);
    if (set->given_up) goto done;
    if ((set->count + 1) * 2 > set->cap) {
        size_t cap = set->cap ? set->cap * 2 : 4096;
        char **keys = set->bytes + cap * sizeof *keys <= set->max_bytes
                          ? calloc(cap, sizeof *keys) : NULL;
        if (!keys) goto give_up;
        for (size_t i = 0; i < set->cap; i++)
            if (set->keys[i]) *slot_of(keys, cap, set->keys[i]) = set->keys[i];
        free(set->keys);
        set->bytes += (cap - set->cap) * sizeof *keys;
        set->keys = keys;
        set->cap = cap;
    }
    char **slot = slot_of(set->keys, set->cap, key);
    if (!*slot) {
        if (set->bytes + key_bytes > set->max_bytes || !(*slot = strdup(key))) goto give_up;
        set->bytes += key_bytes;
        set->count++;
    }
    goto done;
give_up:
    set->given_up = 1;
    free_keys(set);
done:
    pthread_mutex_unlock(&set->lock);
}

/* outbox_prune's found_in. Read once every fold thread has folded its partitions to their
 * ends (fold_engine_config.at_end): nothing writes the set any more, no lock. */
static int found_in_set(void *arg, int32_t partition, const char *user_id,
                        const char *const *event_ids, size_t n, unsigned char *found) {
    const guild_event_set *set = arg;
    char key[3 * STORE_ID_SIZE + 16];
    if (set->given_up) return -1;
    for (size_t i = 0; i < n; i++) {
        guild_event_key(key, sizeof key, partition, user_id, event_ids[i]);
        found[i] = set->cap && *slot_of(set->keys, set->cap, key) != NULL;
    }
    return 0;
}

static void guild_event_set_free(guild_event_set *set) {
    free_keys(set);
    pthread_mutex_destroy(&set->lock);
}

/* The prune in the fold threads, at the fold's end (fold_engine_config.at_end). */
typedef struct {
    const guild_event_set *folded;
    int32_t partition_count;
    atomic_uint_fast64_t kept; /* rows left in the outboxes */
} prune_at_end;

/* Drops, with the fold's own connection and before the store's last sync, the outbox rows
 * whose event the set says its receiver folded. Run after the fold, the prune opened
 * every store again, and closing them cost a WAL checkpoint and an fsync each: 0.11 s
 * of a 2.3 s replay. A set that gave up leaves the rows to prune_outboxes. */
static int prune_own_outbox(void *opaque, int32_t partition, store *st, char *errstr,
                            size_t errstr_size) {
    prune_at_end *pe = opaque;
    (void)partition;
    if (pe->folded->given_up) return 0;
    outbox_lookup lookup = {.found_in = found_in_set, .found_arg = (void *)pe->folded};
    outbox_prune_result pruned;
    if (outbox_prune(st, pe->partition_count, &lookup, &pruned, errstr, errstr_size)) return -1;
    atomic_fetch_add(&pe->kept, pruned.walked - pruned.dropped);
    return 0;
}

/* The readers one prune thread asks, one per partition (NULL: that receiver could not
 * be opened, and the rows keyed to it are kept). */
typedef struct {
    store *receivers[STORE_MAX_PARTITIONS];
} replay_receivers;

/* outbox_prune's receiver_for. */
static store *receiver_in_folder(void *arg, int32_t partition) {
    replay_receivers *rr = arg;
    return rr->receivers[partition];
}

/* The prune of the folder's outboxes, shared by its threads. */
typedef struct {
    const slice *slices;
    size_t slice_count;
    store *senders[STORE_MAX_PARTITIONS]; /* writers, by slice */
    atomic_size_t next;                   /* the next slice to prune */
    atomic_uint_fast64_t kept;
    pthread_mutex_t error_lock;
    int failed;
    char errstr[512];                     /* the first failure */
} prune_job;

typedef struct {
    prune_job *job;
    replay_receivers *readers;
} prune_worker;

static void prune_failed(prune_job *job, const char *what) {
    pthread_mutex_lock(&job->error_lock);
    if (!job->failed) snprintf(job->errstr, sizeof job->errstr, "%.500s", what);
    job->failed = 1;
    pthread_mutex_unlock(&job->error_lock);
}

/* One prune thread: takes senders until none is left, each outbox against its own
 * readers (each in one read transaction per walk). */
static void *prune_thread(void *arg) {
    prune_worker *pw = arg;
    prune_job *job = pw->job;
    char why[512], errstr[600];
    for (size_t i; (i = atomic_fetch_add(&job->next, 1)) < job->slice_count;) {
        outbox_prune_result pruned;
        outbox_lookup lookup = {.receiver_for = receiver_in_folder, .receiver_arg = pw->readers};
        if (outbox_prune(job->senders[i], (int32_t)job->slice_count, &lookup, &pruned, why,
                         sizeof why)) {
            snprintf(errstr, sizeof errstr, "pruning an outbox: %s", why);
            prune_failed(job, errstr);
            break;
        }
        atomic_fetch_add(&job->kept, pruned.walked - pruned.dropped);
    }
    return NULL;
}

/* When the set gave up (past its memory, or out of it): drops the outbox rows whose event its receiving
 * partition's new store holds, after the fold, on as many threads as there are cores.
 * Every store is opened before the
 * threads start and closed after they end: a store opened or closed beside another
 * connection's first read of it can find it locked for a moment (a reader opening the
 * store a writer was opening was refused, and its rows kept). Writes how many rows stay
 * to *kept. Returns 0 or -1. */
static int prune_outboxes(const char *db_dir, const slice *slices, size_t slice_count,
                          uint64_t *kept, char *errstr, size_t errstr_size) {
    prune_job job = {.slices = slices, .slice_count = slice_count};
    pthread_t threads[STORE_MAX_PARTITIONS];
    prune_worker workers[STORE_MAX_PARTITIONS];
    replay_receivers *readers = NULL;
    char path[4096], why[512];
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    size_t wanted = cores > 0 ? (size_t)cores : 1, started = 0;
    int rc = -1;
    if (wanted > slice_count) wanted = slice_count;
    atomic_init(&job.next, 0);
    atomic_init(&job.kept, 0);
    pthread_mutex_init(&job.error_lock, NULL);
    *kept = 0;
    if (!slice_count) return 0;
    if (!(readers = calloc(wanted, sizeof *readers))) {
        snprintf(errstr, errstr_size, "out of memory pruning the outboxes");
        goto done;
    }
    for (size_t i = 0; i < slice_count; i++) {
        int32_t p = slices[i].partition;
        if (store_path(db_dir, p, path, sizeof path)) {
            snprintf(errstr, errstr_size, "a store path is too long");
            goto done;
        }
        if (!(job.senders[i] = store_open(path, p, STORE_WRITER, errstr, errstr_size))) goto done;
        for (size_t t = 0; t < wanted; t++)
            if (!(readers[t].receivers[p] = store_open(path, p, STORE_READER, why, sizeof why)))
                log_warn("replay", "outbox: %s", why);
    }
    for (; started < wanted; started++) {
        workers[started] = (prune_worker){&job, &readers[started]};
        if (pthread_create(&threads[started], NULL, prune_thread, &workers[started])) break;
    }
    if (started == 0) { /* no thread to be had: here */
        workers[0] = (prune_worker){&job, &readers[0]};
        prune_thread(&workers[0]);
    }
    for (size_t t = 0; t < started; t++) pthread_join(threads[t], NULL);
    *kept = atomic_load(&job.kept);
    if (job.failed) snprintf(errstr, errstr_size, "%s", job.errstr);
    else rc = 0;
done:
    for (size_t i = 0; i < slice_count; i++) store_close(job.senders[i]);
    for (size_t t = 0; readers && t < wanted; t++)
        for (int p = 0; p < STORE_MAX_PARTITIONS; p++) store_close(readers[t].receivers[p]);
    free(readers);
    pthread_mutex_destroy(&job.error_lock);
    return rc;
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
        /* exactly "+hh:mm" or "-hh:mm", checked character by character (no sscanf: it
         * would take "+1:1" and leave the cursor past the end) */
        const char *z = rest + 1;
        for (int i = 0; i < 5; i++)
            if (i == 2 ? z[i] != ':' : (z[i] < '0' || z[i] > '9')) return -1;
        int hh = (z[0] - '0') * 10 + (z[1] - '0'), mm = (z[3] - '0') * 10 + (z[4] - '0');
        if (hh > 23 || mm > 59) return -1;
        offset_s = (hh * 3600 + mm * 60) * (*rest == '+' ? 1 : -1);
        rest += 6;
    }
    if (*rest) return -1;
    int64_t result = ((int64_t)timegm(&tm) - offset_s) * 1000 + millis;
    /* Nothing lootlog records is older than the epoch, and -1 means "no bound" to the
     * callers: an earlier time is the epoch. */
    *ms = result < 0 ? 0 : result;
    return 0;
}

/* For a moment after a topic is created, or while a broker restarts, the leaders of
 * its partitions move, and Kafka answers "not leader" or "leader not available". Replay
 * is a one-shot command, run at any time (by a script, right after `topic ensure`): it
 * asks again for up to SETTLE_MS rather than fail on an answer that is about to change. */
#define SETTLE_MS 30000
#define ASK_MS 2000 /* one request's wait; a broker that is up answers in milliseconds */

static int leadership_moving(rd_kafka_resp_err_t err) {
    return err == RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION ||
           err == RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE ||
           err == RD_KAFKA_RESP_ERR_FENCED_LEADER_EPOCH ||
           err == RD_KAFKA_RESP_ERR_UNKNOWN_LEADER_EPOCH ||
           err == RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT || err == RD_KAFKA_RESP_ERR__TRANSPORT ||
           err == RD_KAFKA_RESP_ERR__TIMED_OUT; /* no broker answered (restarting) */
}

/* 1, after a short pause, when err may pass and deadline_ms is not reached; says so
 * in the log the first time (*asked counts the times). */
static int ask_again(rd_kafka_resp_err_t err, const char *what, int64_t deadline_ms, int *asked) {
    if (!leadership_moving(err) || clock_ms() >= deadline_ms) return 0;
    if ((*asked)++ == 0)
        log_warn("replay", "%s: %s; asking again for up to %d s", what, rd_kafka_err2str(err),
                 SETTLE_MS / 1000);
    struct timespec pause = {0, 200 * 1000000L};
    nanosleep(&pause, NULL);
    return 1;
}

/* Turns a timestamp into each slice's offset via Kafka's offsets-for-times: the first
 * offset whose timestamp is >= ms, or the log end when there is none. */
static int offsets_for_time(rd_kafka_t *rk, const char *topic, const slice *slices, size_t count,
                            int64_t ms, int64_t *out, char *errstr, size_t errstr_size) {
    rd_kafka_topic_partition_list_t *list = NULL;
    rd_kafka_resp_err_t err;
    int64_t deadline = clock_ms() + SETTLE_MS;
    int asked = 0;
    do {
        if (list) rd_kafka_topic_partition_list_destroy(list);
        list = rd_kafka_topic_partition_list_new((int)count);
        for (size_t i = 0; i < count; i++)
            rd_kafka_topic_partition_list_add(list, topic, slices[i].partition)->offset = ms;
        err = rd_kafka_offsets_for_times(rk, list, ASK_MS);
        for (int i = 0; !err && i < list->cnt; i++) err = list->elems[i].err;
    } while (err && ask_again(err, "offsets for time", deadline, &asked));
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
    double elapsed = clock_seconds() - started;
    double rate = elapsed > 0 ? done / elapsed : 0;
    double eta = rate > 0 && total > done ? (total - done) / rate : 0;
    fprintf(stderr, "\rreplay: %llu/%llu events, %.0f/s, ETA %.0fs   %s",
            (unsigned long long)done, (unsigned long long)total, rate, eta, final ? "\n" : "");
}


/* Fixes each partition's slice from the topic's watermarks, the offsets and the times
 * asked for. Returns 0 or -1 with errstr. */
static int plan_slices(const replay_config *config, rd_kafka_t *rk, slice *slices,
                       size_t *slice_count, char *errstr, size_t errstr_size) {
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_topic_t *topic = rd_kafka_topic_new(rk, config->topic, NULL);
    int rc = -1;
    *slice_count = 0;
    int64_t deadline = clock_ms() + SETTLE_MS;
    int asked = 0;
    rd_kafka_resp_err_t err;
    do {
        if (md) rd_kafka_metadata_destroy(md);
        md = NULL;
        err = rd_kafka_metadata(rk, 0, topic, &md, ASK_MS);
        if (!err) err = md->topic_cnt != 1 ? RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART
                                            : md->topics[0].err;
    } while (err && ask_again(err, "topic metadata", deadline, &asked));
    if (err) {
        snprintf(errstr, errstr_size, "metadata for topic '%s': %s", config->topic,
                 rd_kafka_err2str(err));
        goto done;
    }
    for (int i = 0; i < md->topics[0].partition_cnt && *slice_count < STORE_MAX_PARTITIONS; i++) {
        int32_t p = md->topics[0].partitions[i].id;
        if (p < 0 || p >= STORE_MAX_PARTITIONS) continue;
        slice *s = &slices[(*slice_count)++];
        s->partition = p;
        int64_t low, high;
        do err = rd_kafka_query_watermark_offsets(rk, config->topic, p, &low, &high, ASK_MS);
        while (err && ask_again(err, "partition watermarks", deadline, &asked));
        if (err) {
            snprintf(errstr, errstr_size, "watermarks of partition %d: %s", (int)p,
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
            if (offsets_for_time(rk, config->topic, slices, *slice_count, config->from_time_ms,
                                 found, errstr, errstr_size))
                goto done;
            for (size_t i = 0; i < *slice_count; i++)
                slices[i].start = found[i] >= 0 ? found[i] : slices[i].end;
        }
        if (config->until_time_ms >= 0) {
            if (offsets_for_time(rk, config->topic, slices, *slice_count, config->until_time_ms,
                                 found, errstr, errstr_size))
                goto done;
            for (size_t i = 0; i < *slice_count; i++)
                if (found[i] >= 0 && found[i] < slices[i].end) slices[i].end = found[i];
        }
    }
    rc = 0;
done:
    if (md) rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(topic);
    return rc;
}

/* Refuses a folder that already holds folded state. Returns 0 or -1. */
static int require_new_folder(const char *dir, char *errstr, size_t errstr_size) {
    int32_t partitions[STORE_MAX_PARTITIONS];
    size_t count = 0;
    if (store_list_partitions(dir, partitions, STORE_MAX_PARTITIONS, &count, errstr, errstr_size))
        return -1;
    for (size_t i = 0; i < count; i++) {
        char path[4096];
        int64_t next = -1;
        store_path(dir, partitions[i], path, sizeof path);
        store *st = store_open(path, partitions[i], STORE_READER, errstr, errstr_size);
        if (!st) return -1;
        int rc = store_get_next_offset(st, &next);
        store_close(st);
        if (rc || next >= 0) {
            snprintf(errstr, errstr_size, "%s already holds folded state; replay needs a new folder",
                     dir);
            return -1;
        }
    }
    return 0;
}

/* The live stores of --verify, each held in one read transaction for the whole replay:
 * its snapshot is the state at the offsets read here, however far the live fold goes. */
typedef struct {
    store *stores[STORE_MAX_PARTITIONS];
} live_set;

static void close_live(live_set *live) {
    for (int p = 0; p < STORE_MAX_PARTITIONS; p++) {
        if (!live->stores[p]) continue;
        store_rollback(live->stores[p]);
        store_close(live->stores[p]);
        live->stores[p] = NULL;
    }
}

/* Opens the live stores and cuts each slice at the live store's next offset. */
static int open_live(const char *dir, slice *slices, size_t slice_count, live_set *live,
                     char *errstr, size_t errstr_size) {
    int32_t partitions[STORE_MAX_PARTITIONS];
    size_t store_count = 0;
    if (store_list_partitions(dir, partitions, STORE_MAX_PARTITIONS, &store_count, errstr,
                              errstr_size))
        return -1;
    if (store_count == 0) {
        snprintf(errstr, errstr_size, "%s holds no partition stores (p<N>.db) to verify against",
                 dir);
        return -1;
    }
    for (size_t i = 0; i < slice_count; i++) {
        char path[4096];
        int64_t live_next = -1;
        int32_t p = slices[i].partition;
        store_path(dir, p, path, sizeof path);
        if (access(path, F_OK) == 0) {
            live->stores[p] = store_open(path, p, STORE_READER, errstr, errstr_size);
            if (!live->stores[p]) return -1;
            if (store_begin(live->stores[p]) ||
                store_get_next_offset(live->stores[p], &live_next)) {
                snprintf(errstr, errstr_size, "%s", store_errmsg(live->stores[p]));
                return -1;
            }
        }
        /* Where live folded nothing, neither does the rebuild. */
        slices[i].end = live_next >= 0 ? live_next : slices[i].start;
        if (slices[i].end < slices[i].start) slices[i].start = slices[i].end;
    }
    return 0;
}

/* Compares every partition's players of the rebuilt folder with the live stores. */
static int verify_against_live(const char *dir, const slice *slices, size_t slice_count,
                               live_set *live, replay_summary *summary, char *errstr,
                               size_t errstr_size) {
    int rc = -1;
    for (size_t i = 0; i < slice_count; i++) {
        int32_t p = slices[i].partition;
        digest_list live_digests = {0}, new_digests = {0};
        char path[4096];
        store_path(dir, p, path, sizeof path);
        store *rebuilt = store_open(path, p, STORE_READER, errstr, errstr_size);
        if (!rebuilt) return -1;
        int failed = store_begin(rebuilt) ||
                     store_player_digests(rebuilt, collect_digest, &new_digests);
        if (failed) snprintf(errstr, errstr_size, "%s", store_errmsg(rebuilt));
        store_rollback(rebuilt);
        store_close(rebuilt);
        if (!failed && live->stores[p] &&
            store_player_digests(live->stores[p], collect_digest, &live_digests)) {
            snprintf(errstr, errstr_size, "%s", store_errmsg(live->stores[p]));
            failed = 1;
        }
        if (!failed && (live_digests.failed || new_digests.failed)) {
            snprintf(errstr, errstr_size, "out of memory comparing players");
            failed = 1;
        }
        if (!failed) {
            uint64_t compared = 0;
            summary->players_differing += compare_digests(&live_digests, &new_digests, &compared);
            summary->players_compared += compared;
        }
        free_digests(&live_digests);
        free_digests(&new_digests);
        if (failed) goto done;
    }
    rc = 0;
done:
    return rc;
}

/* A rebuild is one-shot and nobody reads its folder meanwhile, so it buys speed with
 * memory where serve keeps its bounds (FOLD_DEFAULT_CACHED_PLAYERS, FOLD_BATCH_MAX_PLAYERS,
 * STORE_DEFAULT_CACHE_KIB): each partition keeps more players between batches (a player
 * evicted and met again is read back with all its event id hashes), its batches may hold
 * more players (a batch ended at 8,000 rewrote each player once per 20k events), and its
 * store's pages stay in memory. A 1.99M-event gen topic of 100k players replayed with
 * 10-15 % less CPU and peaked at 414 MB instead of 282 MB (docs/benchmarks.md). */
#define REPLAY_CACHED_PLAYERS 20000
#define REPLAY_BATCH_MAX_PLAYERS 40000
#define REPLAY_STORE_CACHE_KIB 16384

/* rd_kafka_destroy of the consumer that planned the slices takes ~25 ms (its broker
 * threads notice in their own time): off the replay's path, beside the fold. */
static void *destroy_consumer(void *rk) {
    rd_kafka_destroy(rk);
    return NULL;
}

int replay_run(const replay_config *config, replay_summary *summary, char *errstr,
               size_t errstr_size) {
    static const char *const defaults[] = {"group.id", "lootlog-replay", "client.id",
                                           "lootlog-replay", NULL};
    char why[512];
    int rc = -1;
    rd_kafka_t *rk = NULL;
    pthread_t destroyer;
    int destroying = 0;
    fold_engine *engine = NULL;
    /* zeroed: at -O3 gcc cannot see that plan_slices fills every slice it counts */
    slice slices[STORE_MAX_PARTITIONS] = {0};
    size_t slice_count = 0;
    live_set live;
    guild_event_set folded = {.max_bytes = config->prune_memory_bytes};
    prune_at_end at_end = {.folded = &folded};
    int tty = isatty(STDERR_FILENO);
    int64_t start_offsets[STORE_MAX_PARTITIONS], end_offsets[STORE_MAX_PARTITIONS];

    memset(&live, 0, sizeof live);
    memset(summary, 0, sizeof *summary);
    pthread_mutex_init(&folded.lock, NULL);
    double started = clock_seconds();
    if (require_new_folder(config->db_path, errstr, errstr_size)) goto done;

    rd_kafka_conf_t *conf = kafka_config_new(config->brokers, defaults, config->kafka_props,
                                           config->kafka_prop_count, errstr, errstr_size);
    if (!conf) goto done;
    rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, why, sizeof why);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errstr_size, "creating consumer: %s", why);
        goto done;
    }
    if (plan_slices(config, rk, slices, &slice_count, errstr, errstr_size)) goto done;
    if (pthread_create(&destroyer, NULL, destroy_consumer, rk) == 0) { /* else at the end */
        destroying = 1;
        rk = NULL;
    }
    if (config->verify_path &&
        open_live(config->verify_path, slices, slice_count, &live, errstr, errstr_size))
        goto done;

    uint64_t total = 0;
    for (int p = 0; p < STORE_MAX_PARTITIONS; p++) start_offsets[p] = end_offsets[p] = 0;
    for (size_t i = 0; i < slice_count; i++) {
        start_offsets[slices[i].partition] = slices[i].start;
        end_offsets[slices[i].partition] = slices[i].end;
        if (slices[i].end > slices[i].start) total += (uint64_t)(slices[i].end - slices[i].start);
    }
    at_end.partition_count = (int32_t)slice_count; /* the partitioner's, as prune_outboxes */
    fold_config fold = config->fold;
    if (fold.cached_players == 0) fold.cached_players = REPLAY_CACHED_PLAYERS;
    fold.write_back = 1; /* the new folder is read by no one before its end */
    fold_engine_config cc = {
        .brokers = config->brokers,
        .topic = config->topic,
        .db_dir = config->db_path,
        .fold = fold,
        .partition_first = -1,
        .partition_last = -1,
        .threads = config->threads,
        .batch_max_events = config->batch_events,
        .batch_max_ms = 1000, /* replay: batches bounded by count, not by freshness */
        .batch_max_players = REPLAY_BATCH_MAX_PLAYERS,
        .store_cache_kib = REPLAY_STORE_CACHE_KIB,
        .fetch_queue_kbytes = 4096, /* a one-shot rebuild: speed over memory */
        .sync_at_end = 1,           /* a new folder: synced once, when whole */
        .start_offsets = start_offsets,
        .end_offsets = end_offsets,
        .kafka_props = config->kafka_props,
        .kafka_prop_count = config->kafka_prop_count,
        .on_guild_event = note_guild_event,
        .on_guild_event_opaque = &folded,
        .at_end = prune_own_outbox,
        .at_end_opaque = &at_end,
    };
    engine = fold_engine_start(&cc, errstr, errstr_size);
    if (!engine) goto done;
    fold_engine_stats stats;
    for (unsigned looks = 0;; looks++) {
        /* A look at the engine's counters is cheap; a coarse one would add up to its
         * period to every replay. */
        struct timespec pause = {0, 10 * 1000000L};
        nanosleep(&pause, NULL);
        fold_engine_get_stats(engine, &stats);
        uint64_t done_events = stats.applied + stats.rejected + stats.duplicates +
                               stats.dead_letters + stats.pending;
        int last = stats.finished || stats.failed;
        if (tty && (last || looks % 10 == 0)) print_progress(done_events, total, started, last);
        if (last) break;
    }
    if (stats.failed) {
        fold_engine_error(engine, errstr, errstr_size);
        goto done;
    }
    summary->applied = stats.applied;
    summary->rejected = stats.rejected;
    summary->duplicates = stats.duplicates;
    summary->dead_letters = stats.dead_letters;
    summary->pending = stats.pending;
    summary->events = stats.applied + stats.rejected + stats.duplicates + stats.dead_letters +
                      stats.pending;
    fold_engine_stop(engine);
    engine = NULL;
    summary->emitted_missing = atomic_load(&at_end.kept);
    if (folded.given_up && prune_outboxes(config->db_path, slices, slice_count,
                                          &summary->emitted_missing, errstr, errstr_size))
        goto done;

    if (config->verify_path &&
        verify_against_live(config->db_path, slices, slice_count, &live, summary, errstr,
                            errstr_size))
        goto done;
    summary->seconds = clock_seconds() - started;
    rc = summary->players_differing ? 1 : 0;
done:
    fold_engine_stop(engine);
    guild_event_set_free(&folded);
    close_live(&live);
    if (rk) rd_kafka_destroy(rk);
    if (destroying) pthread_join(destroyer, NULL);
    return rc;
}
