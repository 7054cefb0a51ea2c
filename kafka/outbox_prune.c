/* outbox_prune: see outbox_prune.h. */
#include "kafka/outbox_prune.h"

#include "lib/log.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Runs of rows to delete, each first..last in seq order with no kept row between: a
 * replay drops almost every row, and a run takes one statement instead of one a row. */
typedef struct {
    int64_t first, last;
} seq_run;

typedef struct {
    int32_t partition_count;
    outbox_receiver_fn *receiver_for;
    void *arg;
    /* The receivers asked so far, each inside one read transaction for the whole walk:
     * a statement outside one takes and drops the WAL's read lock each time, which was
     * half the prune's cost. */
    store *reading[STORE_MAX_PARTITIONS];
    unsigned char unreadable[STORE_MAX_PARTITIONS]; /* failed once: its rows are kept */
    seq_run *runs;
    size_t run_count, run_cap;
    int run_open; /* the last row looked at was dropped: runs[run_count - 1] grows */
    size_t walked, dropped;
    int out_of_memory;
} prune_walk;

static store *receiver_in_read(prune_walk *pw, int32_t partition) {
    if (pw->unreadable[partition]) return NULL;
    if (pw->reading[partition]) return pw->reading[partition];
    store *st = pw->receiver_for(pw->arg, partition);
    if (st && store_begin(st)) {
        log_warn("fold", "outbox: reading partition %d: %s", (int)partition, store_errmsg(st));
        st = NULL;
    }
    if (!st) {
        pw->unreadable[partition] = 1;
        return NULL;
    }
    pw->reading[partition] = st;
    return st;
}

static int drop_seq(prune_walk *pw, int64_t seq) {
    if (pw->run_open) {
        pw->runs[pw->run_count - 1].last = seq;
        return 0;
    }
    if (pw->run_count == pw->run_cap) {
        size_t cap = pw->run_cap ? pw->run_cap * 2 : 64;
        seq_run *bigger = realloc(pw->runs, cap * sizeof *bigger);
        if (!bigger) return -1;
        pw->runs = bigger;
        pw->run_cap = cap;
    }
    pw->runs[pw->run_count++] = (seq_run){seq, seq};
    pw->run_open = 1;
    return 0;
}

static int note_if_in_log(void *arg, const store_outbox_row *r) {
    prune_walk *pw = arg;
    pw->walked++;
    int32_t p = rd_kafka_msg_partitioner_murmur2(NULL, r->msg_key, strlen(r->msg_key),
                                                 pw->partition_count, NULL, NULL);
    store *receiver = p >= 0 && p < STORE_MAX_PARTITIONS ? receiver_in_read(pw, p) : NULL;
    store_event_outcome outcome;
    int found = receiver ? store_read_event(receiver, r->event_id, r->user_id, &outcome) : 0;
    if (found < 0) {
        log_warn("fold", "outbox: reading partition %d: %s", (int)p, store_errmsg(receiver));
        pw->unreadable[p] = 1; /* one warning; its read transaction still ends at the end */
    }
    if (found <= 0) {
        pw->run_open = 0; /* kept: the next run starts after it */
        return 0;
    }
    if (drop_seq(pw, r->seq)) {
        pw->out_of_memory = 1;
        return -1;
    }
    pw->dropped++;
    return 0;
}

int outbox_prune(store *sender, int32_t partition_count, outbox_receiver_fn *receiver_for,
                 void *arg, outbox_prune_result *result, char *errstr, size_t errstr_size) {
    prune_walk *pw = calloc(1, sizeof *pw);
    int rc = -1, began = 0;
    *result = (outbox_prune_result){0};
    if (!pw) {
        snprintf(errstr, errstr_size, "out of memory pruning the outbox");
        return -1;
    }
    pw->partition_count = partition_count;
    pw->receiver_for = receiver_for;
    pw->arg = arg;
    if (partition_count <= 0) goto done; /* no partitioner yet: every row is kept */
    if (store_outbox_walk(sender, 0, INT32_MAX, note_if_in_log, pw)) {
        snprintf(errstr, errstr_size, "%s",
                 pw->out_of_memory ? "out of memory pruning the outbox" : store_errmsg(sender));
        goto out;
    }
    if (pw->run_count) {
        if (store_begin(sender)) goto store_failed;
        began = 1;
        for (size_t i = 0; i < pw->run_count; i++)
            if (store_outbox_delete(sender, pw->runs[i].first, pw->runs[i].last)) goto store_failed;
        if (store_commit(sender)) goto store_failed;
        began = 0;
    }
done:
    result->walked = pw->walked;
    result->dropped = pw->dropped;
    rc = 0;
    goto out;
store_failed:
    snprintf(errstr, errstr_size, "%s", store_errmsg(sender));
    if (began) store_rollback(sender);
out:
    for (int p = 0; p < STORE_MAX_PARTITIONS; p++)
        if (pw->reading[p]) store_commit(pw->reading[p]); /* ends the read */
    free(pw->runs);
    free(pw);
    return rc;
}
