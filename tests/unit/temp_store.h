/* temp_store: a writer store on a fresh temporary file for the C unit tests, and its
 * removal with the WAL files beside it. Include after check.h. */
#ifndef LOOTLOG_TEMP_STORE_H
#define LOOTLOG_TEMP_STORE_H

#include "state/store.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Opens a writer store of partition on a fresh temporary file; path (>= 32 bytes) gets
 * its name, for more connections to it. */
static inline store *open_temp_store(char *path, size_t path_size, int32_t partition) {
    char errstr[512];
    snprintf(path, path_size, "/tmp/lootlog-store-XXXXXX");
    int fd = mkstemp(path);
    close(fd);
    unlink(path);
    store *st = store_open(path, partition, STORE_WRITER, errstr, sizeof errstr);
    if (!st) fprintf(stderr, "store_open: %s\n", errstr);
    CHECK(st != NULL);
    return st;
}

static inline void remove_temp_store(store *st, const char *path) {
    char side[600];
    store_close(st);
    unlink(path);
    snprintf(side, sizeof side, "%s-wal", path);
    unlink(side);
    snprintf(side, sizeof side, "%s-shm", path);
    unlink(side);
}

#endif
