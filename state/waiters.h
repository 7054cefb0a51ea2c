/* waiters: how the fold thread tells the HTTP loop "I committed": an eventfd the fold
 * writes after every commit and the loop watches. Parked requests are then re-checked
 * on the loop thread; the fold never touches a request. */
#ifndef LOOTLOG_WAITERS_H
#define LOOTLOG_WAITERS_H

#include <stddef.h>

typedef struct waiters waiters;

waiters *waiters_new(char *errstr, size_t errstr_size);
void waiters_free(waiters *w);

/* The fd to watch for readability. */
int waiters_fd(const waiters *w);

/* Any thread: wake the watcher. Cheap; coalesces. */
void waiters_notify(waiters *w);

/* Loop thread: consume pending wake-ups before re-checking. */
void waiters_drain(waiters *w);

#endif
