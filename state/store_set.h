/* store_set: the reader connections of one folder of per-partition stores, opened on
 * first use (a partition's store appears once its fold starts). Owned by one thread:
 * serve's HTTP loop. */
#ifndef LOOTLOG_STORE_SET_H
#define LOOTLOG_STORE_SET_H

#include "state/store.h"

#include <stddef.h>
#include <stdint.h>

typedef struct store_set store_set;

/* dir must outlive the set. NULL with errstr when out of memory. */
store_set *store_set_new(const char *dir, char *errstr, size_t errstr_size);
void store_set_free(store_set *set);

/* The folder the set reads. */
const char *store_set_dir(const store_set *set);

/* Fences the set: generation(opaque, p) is 0 while p is not to be read here, and changes
 * whenever p's store is (re)opened by its owner; the set then drops the reader it had.
 * (serve --group: a folder may hold stale copies of partitions owned elsewhere.)
 * Unfenced (generation NULL), any store file of the folder at this schema is read. */
void store_set_fence(store_set *set, uint64_t (*generation)(void *opaque, int32_t partition),
                     void *opaque);

/* partition's reader, opened on first use. NULL when the partition has no store yet
 * (errstr "") or it cannot be opened (errstr says why). */
store *store_set_get(store_set *set, int32_t partition, char *errstr, size_t errstr_size);

#endif
