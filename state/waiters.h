/* waiters: how the fold thread tells the HTTP loop "I committed": an eventfd the fold
 * writes after every commit and the loop watches. Parked requests are then re-checked
 * on the loop thread; the fold never touches a request. And the index of what waits:
 * per partition, a min-heap by offset, so a commit looks only at the waits it ends. */
#ifndef LOOTLOG_WAITERS_H
#define LOOTLOG_WAITERS_H

#include <stddef.h>
#include <stdint.h>

typedef struct waiters waiters;

waiters *waiters_new(char *errstr, size_t errstr_size);
void waiters_free(waiters *w);

/* The fd to watch for readability. */
int waiters_fd(const waiters *w);

/* Any thread: wake the watcher. Cheap; coalesces. */
void waiters_notify(waiters *w);

/* Loop thread: consume pending wake-ups before re-checking. */
void waiters_drain(waiters *w);

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
