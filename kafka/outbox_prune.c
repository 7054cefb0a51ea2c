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
    const outbox_lookup *lookup;
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
    store *st = pw->lookup->receiver_for ? pw->lookup->receiver_for(pw->lookup->receiver_arg, partition) : NULL;
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

/* A row of the chunk being looked at. Ids are at most STORE_ID_SIZE - 1 bytes (the fold
 * wrote them); a longer one would be cut, never found, and so kept. */
typedef struct {
    int64_t seq;
    int32_t partition; /* its receiver */
    char user_id[STORE_ID_SIZE];
    char event_id[STORE_ID_SIZE];
    unsigned char found;
} chunk_row;

/* Rows looked at together: those of one receiving player are found with one walk of
 * the player's index (store_find_events). Row by row, each decision for a busy player
 * walked its whole index again, the prune's largest cost. */
#define PRUNE_CHUNK_ROWS 8192

typedef struct {
    prune_walk *pw;
    chunk_row *rows;
    size_t count;
    chunk_row **order; /* by receiver, then user */
    const char **ids;
    unsigned char *found;
} prune_chunk;

static int collect_row(void *arg, const store_outbox_row *r) {
    prune_chunk *ch = arg;
    chunk_row *row = &ch->rows[ch->count++];
    row->seq = r->seq;
    row->partition = rd_kafka_msg_partitioner_murmur2(NULL, r->msg_key, strlen(r->msg_key),
                                                      ch->pw->partition_count, NULL, NULL);
    snprintf(row->user_id, sizeof row->user_id, "%s", r->user_id);
    snprintf(row->event_id, sizeof row->event_id, "%s", r->event_id);
    row->found = 0;
    return 0;
}

static int by_receiver_and_user(const void *a, const void *b) {
    const chunk_row *x = *(chunk_row *const *)a, *y = *(chunk_row *const *)b;
    if (x->partition != y->partition) return (x->partition > y->partition) - (x->partition < y->partition);
    return strcmp(x->user_id, y->user_id);
}

/* Marks the chunk's rows whose event their receiver folded. */
static void find_in_receivers(prune_chunk *ch) {
    prune_walk *pw = ch->pw;
    for (size_t i = 0; i < ch->count; i++) ch->order[i] = &ch->rows[i];
    qsort(ch->order, ch->count, sizeof *ch->order, by_receiver_and_user);
    for (size_t first = 0, n; first < ch->count; first += n) {
        chunk_row *lead = ch->order[first];
        for (n = 1; first + n < ch->count && by_receiver_and_user(&ch->order[first + n], &lead) == 0; n++)
            ;
        int32_t p = lead->partition;
        for (size_t k = 0; k < n; k++) ch->ids[k] = ch->order[first + k]->event_id;
        const outbox_lookup *lookup = pw->lookup;
        if (lookup->found_in &&
            lookup->found_in(lookup->found_arg, p, lead->user_id, ch->ids, n, ch->found) == 0) {
            for (size_t k = 0; k < n; k++) ch->order[first + k]->found = ch->found[k];
            continue;
        }
        store *receiver = p >= 0 && p < STORE_MAX_PARTITIONS ? receiver_in_read(pw, p) : NULL;
        if (!receiver) continue; /* kept */
        if (store_find_events(receiver, lead->user_id, ch->ids, n, ch->found)) {
            log_warn("fold", "outbox: reading partition %d: %s", (int)p, store_errmsg(receiver));
            pw->unreadable[p] = 1; /* one warning; its read transaction still ends at the end */
            continue;
        }
        for (size_t k = 0; k < n; k++) ch->order[first + k]->found = ch->found[k];
    }
}

/* Walks the sender's outbox a chunk at a time, noting the runs of rows to drop. Returns
 * 0, or -1 (the sender could not be read: errstr, or out of memory). */
static int walk_outbox(prune_walk *pw, store *sender) {
    prune_chunk ch = {.pw = pw};
    int rc = -1;
    ch.rows = malloc(PRUNE_CHUNK_ROWS * sizeof *ch.rows);
    ch.order = malloc(PRUNE_CHUNK_ROWS * sizeof *ch.order);
    ch.ids = malloc(PRUNE_CHUNK_ROWS * sizeof *ch.ids);
    ch.found = malloc(PRUNE_CHUNK_ROWS);
    if (!ch.rows || !ch.order || !ch.ids || !ch.found) {
        pw->out_of_memory = 1;
        goto done;
    }
    for (int64_t after = 0;;) {
        ch.count = 0;
        if (store_outbox_walk(sender, after, PRUNE_CHUNK_ROWS, collect_row, &ch)) goto done;
        if (!ch.count) break;
        find_in_receivers(&ch);
        for (size_t i = 0; i < ch.count; i++) { /* in seq order */
            pw->walked++;
            if (!ch.rows[i].found) {
                pw->run_open = 0; /* kept: the next run starts after it */
                continue;
            }
            if (drop_seq(pw, ch.rows[i].seq)) {
                pw->out_of_memory = 1;
                goto done;
            }
            pw->dropped++;
        }
        after = ch.rows[ch.count - 1].seq;
        if (ch.count < PRUNE_CHUNK_ROWS) break;
    }
    rc = 0;
done:
    free(ch.rows);
    free(ch.order);
    free(ch.ids);
    free(ch.found);
    return rc;
}

int outbox_prune(store *sender, int32_t partition_count, const outbox_lookup *lookup,
                 outbox_prune_result *result, char *errstr, size_t errstr_size) {
    prune_walk *pw = calloc(1, sizeof *pw);
    int rc = -1, began = 0;
    *result = (outbox_prune_result){0};
    if (!pw) {
        snprintf(errstr, errstr_size, "out of memory pruning the outbox");
        return -1;
    }
    pw->partition_count = partition_count;
    pw->lookup = lookup;
    if (partition_count <= 0) goto done; /* no partitioner yet: every row is kept */
    if (walk_outbox(pw, sender)) {
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
