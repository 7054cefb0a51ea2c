/* wait_index: the index of the requests that wait for the fold, per partition a min-heap
 * by offset, so a commit looks only at the waits it ends. Owned by the HTTP loop. */
#ifndef LOOTLOG_SERVER_WAIT_INDEX_H
#define LOOTLOG_SERVER_WAIT_INDEX_H

#include <stddef.h>
#include <stdint.h>

/* One wait, embedded in the caller's own struct: until the fold of partition has
 * passed offset. position is the queue's (SIZE_MAX while not queued). */
typedef struct {
    int32_t partition;
    int64_t offset;
    size_t position;
} waiter;

/* Waits indexed by partition and offset. Owned by one thread (the loop). */
typedef struct waiter_queue waiter_queue;

/* NULL with errstr when out of memory. */
waiter_queue *waiter_queue_new(char *errstr, size_t errstr_size);
/* Frees the index only; the waits are the caller's. */
void waiter_queue_free(waiter_queue *q);

/* Queues w (w->partition >= 0 and w->offset set). Returns 0, or -1 out of memory. */
int waiter_queue_push(waiter_queue *q, waiter *w);

/* Takes w out of the queue; a no-op when it is not queued. */
void waiter_queue_remove(waiter_queue *q, waiter *w);

/* The queued wait of partition with the lowest offset if that offset is below
 * next_offset (the fold passed it), taken out of the queue; NULL when there is none. */
waiter *waiter_queue_pop_passed(waiter_queue *q, int32_t partition, int64_t next_offset);

/* How many waits are queued. */
size_t waiter_queue_count(const waiter_queue *q);

/* One more than the highest partition that ever had a wait (to walk them). */
int32_t waiter_queue_partition_span(const waiter_queue *q);

#endif
