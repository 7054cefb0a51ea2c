/* wakeup: an eventfd in counter mode; many notifications read back as one. */
#include "lib/wakeup.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct wakeup {
    int fd;
};

wakeup *wakeup_new(char *errstr, size_t errstr_size) {
    wakeup *w = malloc(sizeof *w);
    if (!w) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    w->fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (w->fd < 0) {
        snprintf(errstr, errstr_size, "eventfd: %s", strerror(errno));
        free(w);
        return NULL;
    }
    return w;
}

void wakeup_free(wakeup *w) {
    if (!w) return;
    close(w->fd);
    free(w);
}

int wakeup_fd(const wakeup *w) { return w->fd; }

void wakeup_notify(wakeup *w) {
    uint64_t one = 1;
    /* EAGAIN means the counter is saturated: a wake-up is pending anyway. */
    ssize_t written = write(w->fd, &one, sizeof one);
    (void)written;
}

void wakeup_drain(wakeup *w) {
    uint64_t count;
    ssize_t got = read(w->fd, &count, sizeof count);
    (void)got;
}
