/* catalog: the item types players can hold, with category and rarity. Loaded once at
 * start from a JSON file (or the copy built into the binary) and read-only after. */
#ifndef LOOTLOG_CATALOG_H
#define LOOTLOG_CATALOG_H

#include <stddef.h>

typedef struct catalog catalog;

typedef struct {
    const char *item_type;
    const char *category;
    const char *rarity;
    const char *name;
} catalog_item;

/* Loads the catalog from path, or from the built-in copy when path is NULL.
 * Returns a handle freed with catalog_free, or NULL with errstr filled. */
catalog *catalog_load(const char *path, char *errstr, size_t errstr_size);

/* The entry for item_type, or NULL when the type is unknown. Valid until catalog_free. */
const catalog_item *catalog_find(const catalog *cat, const char *item_type);

/* Number of entries, and entry i (0 <= i < count), in file order. */
size_t catalog_count(const catalog *cat);
const catalog_item *catalog_at(const catalog *cat, size_t i);

/* The catalog as the JSON text served at GET /v1/items (owned by the catalog). */
const char *catalog_json(const catalog *cat);

void catalog_free(catalog *cat);

#endif
