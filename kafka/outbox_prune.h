/* outbox_prune: drops a store's outbox rows whose emitted event is in the log already.
 * A fold that reads the log again (a replay, or serve on a store that lost its outbox
 * acknowledgements) emits again every guild request and decision; those the receiving
 * partition's store already folded from the log need not go out twice. Serve, once
 * caught up, and replay, once done, prune the same way: this module. */
#ifndef LOOTLOG_KAFKA_OUTBOX_PRUNE_H
#define LOOTLOG_KAFKA_OUTBOX_PRUNE_H

#include "state/store.h"

#include <stddef.h>
#include <stdint.h>

/* The store here that holds partition's folded events (a reader), or NULL when there is
 * none: the rows keyed to it are kept. The caller owns the stores it hands out and may
 * hand the same one again. */
typedef store *outbox_receiver_fn(void *arg, int32_t partition);

/* What the caller already knows (replay notes the guild-side events each partition
 * folds): found[i] = 1 for each of n event ids of user_id's that partition folded, 0
 * for the others. Returns 0, or -1 when it cannot tell (the stores are asked then). */
typedef int outbox_found_fn(void *arg, int32_t partition, const char *user_id,
                            const char *const *event_ids, size_t n, unsigned char *found);

typedef struct {
    outbox_found_fn *found_in; /* NULL, or asked first */
    void *found_arg;
    outbox_receiver_fn *receiver_for; /* the stores, asked otherwise */
    void *receiver_arg;
} outbox_lookup;

typedef struct {
    size_t walked;  /* outbox rows looked at */
    size_t dropped; /* of them, found in their receiver's store and deleted */
} outbox_prune_result;

/* Walks sender's whole outbox, finds each row's receiving partition (Kafka's default
 * key partitioner over partition_count partitions) and asks lookup whether that
 * partition folded the row's event; deletes the rows it did, in one transaction of
 * sender. A row whose receiver cannot be read is kept (it goes out again and its
 * receiver dedupes it). Returns 0, or -1 with errstr when sender's outbox could not be
 * read or changed (then nothing was deleted). */
int outbox_prune(store *sender, int32_t partition_count, const outbox_lookup *lookup,
                 outbox_prune_result *result, char *errstr, size_t errstr_size);

#endif
