/* wakeup: how one thread tells an event loop "something changed" without locks: an
 * eventfd any thread writes and the loop watches (serve: the fold thread after every
 * commit, so the HTTP loop re-checks its parked requests; the fold never touches one). */
#ifndef LOOTLOG_LIB_WAKEUP_H
#define LOOTLOG_LIB_WAKEUP_H

#include <stddef.h>
#include <stdint.h>

typedef struct wakeup wakeup;

wakeup *wakeup_new(char *errstr, size_t errstr_size);
void wakeup_free(wakeup *w);

/* The fd to watch for readability. */
int wakeup_fd(const wakeup *w);

/* Any thread: wake the watcher. Cheap; coalesces. */
void wakeup_notify(wakeup *w);

/* Loop thread: consume pending wake-ups before re-checking. */
void wakeup_drain(wakeup *w);

#endif
