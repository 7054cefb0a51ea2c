/* store_set: the reader connections of one folder of per-partition stores, opened on
 * first use (a partition's store appears once its fold starts). Owned by one thread:
 * serve's HTTP loop. */
#ifndef LOOTLOG_STORE_SET_H
#define LOOTLOG_STORE_SET_H

#include "store.h"

#include <stddef.h>
#include <stdint.h>

typedef struct store_set store_set;

/* dir must outlive the set. NULL with errstr when out of memory. */
store_set *store_set_new(const char *dir, char *errstr, size_t errstr_size);
void store_set_free(store_set *set);

/* The folder the set reads. */
const char *store_set_dir(const store_set *set);

/* partition's reader, opened on first use. NULL when the partition has no store yet
 * (errstr "") or it cannot be opened (errstr says why). */
store *store_set_get(store_set *set, int32_t partition, char *errstr, size_t errstr_size);

#endif
