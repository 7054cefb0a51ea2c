/* waiters: an eventfd in counter mode; many notifications read back as one. */
#include "waiters.h"

#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <unistd.h>

struct waiters {
    int fd;
};

waiters *waiters_new(char *errstr, size_t errstr_size) {
    waiters *w = malloc(sizeof *w);
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

void waiters_free(waiters *w) {
    if (!w) return;
    close(w->fd);
    free(w);
}

int waiters_fd(const waiters *w) { return w->fd; }

void waiters_notify(waiters *w) {
    uint64_t one = 1;
    /* EAGAIN means the counter is saturated: a wake-up is pending anyway. */
    ssize_t written = write(w->fd, &one, sizeof one);
    (void)written;
}

void waiters_drain(waiters *w) {
    uint64_t count;
    ssize_t got = read(w->fd, &count, sizeof count);
    (void)got;
}
