/* store_set: lazily opened readers, one per partition store of a folder. */
#include "state/store_set.h"

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

struct store_set {
    const char *dir;
    store *readers[STORE_MAX_PARTITIONS];
    uint64_t opened_generation[STORE_MAX_PARTITIONS];
    uint64_t (*generation)(void *opaque, int32_t partition);
    void *generation_opaque;
};

store_set *store_set_new(const char *dir, char *errstr, size_t errstr_size) {
    store_set *set = calloc(1, sizeof *set);
    if (!set) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    set->dir = dir;
    return set;
}

void store_set_free(store_set *set) {
    if (!set) return;
    for (int p = 0; p < STORE_MAX_PARTITIONS; p++) store_close(set->readers[p]);
    free(set);
}

const char *store_set_dir(const store_set *set) { return set->dir; }

void store_set_fence(store_set *set, uint64_t (*generation)(void *opaque, int32_t partition),
                     void *opaque) {
    set->generation = generation;
    set->generation_opaque = opaque;
}

store *store_set_get(store_set *set, int32_t partition, char *errstr, size_t errstr_size) {
    char path[4096];
    if (errstr_size) errstr[0] = '\0';
    if (partition < 0 || partition >= STORE_MAX_PARTITIONS) return NULL;
    if (set->generation) {
        uint64_t now = set->generation(set->generation_opaque, partition);
        if (now != set->opened_generation[partition]) {
            /* Given up, or taken again (perhaps restored into a new file): a reader of
             * the file as it was must not answer. */
            store_close(set->readers[partition]);
            set->readers[partition] = NULL;
            set->opened_generation[partition] = now;
        }
        if (now == 0) return NULL;
    }
    if (set->readers[partition]) return set->readers[partition];
    if (store_path(set->dir, partition, path, sizeof path) || access(path, F_OK) != 0) return NULL;
    set->readers[partition] = store_open(path, partition, STORE_READER, errstr, errstr_size);
    return set->readers[partition];
}
