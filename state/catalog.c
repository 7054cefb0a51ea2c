/* catalog: item types from data/catalog.json. Kept as the parsed jansson tree so entry
 * strings stay valid for the catalog's lifetime without copying. */
#include "state/catalog.h"

#include "state/codec.h"
#include "state/embedded.h"

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct catalog {
    json_t *root;
    catalog_item *items;
    size_t count;
    char *json_text;
};

static const char *member(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

catalog *catalog_load(const char *path, char *errstr, size_t errstr_size) {
    json_error_t jerr = {.line = 0, .text = "no built-in catalog"};
    catalog *cat = calloc(1, sizeof *cat);
    if (!cat) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    if (path) {
        cat->root = json_load_file(path, 0, &jerr);
    } else if (embedded_catalog_count > 0) {
        cat->root = json_loads(embedded_catalog[0].contents, 0, &jerr);
    }
    if (!cat->root) {
        snprintf(errstr, errstr_size, "catalog %s: %s (line %d)", path ? path : "(built in)",
                 jerr.text, jerr.line);
        goto fail;
    }
    json_t *items = json_object_get(cat->root, "items");
    if (!json_is_array(items) || json_array_size(items) == 0) {
        snprintf(errstr, errstr_size, "catalog: 'items' must be a non-empty array");
        goto fail;
    }
    cat->count = json_array_size(items);
    cat->items = calloc(cat->count, sizeof *cat->items);
    if (!cat->items) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    size_t i;
    json_t *entry;
    json_array_foreach(items, i, entry) {
        catalog_item *it = &cat->items[i];
        it->item_type = member(entry, "item_type");
        it->category = member(entry, "category");
        it->rarity = member(entry, "rarity");
        it->name = member(entry, "name");
        if (!it->item_type || !codec_identifier_ok(it->item_type) || !it->category ||
            !it->rarity) {
            snprintf(errstr, errstr_size,
                     "catalog: entry %zu needs item_type (identifier), category and rarity", i);
            goto fail;
        }
        if (!it->name) it->name = it->item_type;
        for (size_t j = 0; j < i; j++) {
            if (strcmp(cat->items[j].item_type, it->item_type) == 0) {
                snprintf(errstr, errstr_size, "catalog: item_type '%s' appears twice",
                         it->item_type);
                goto fail;
            }
        }
    }
    cat->json_text = json_dumps(cat->root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!cat->json_text) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    return cat;
fail:
    catalog_free(cat);
    return NULL;
}

const catalog_item *catalog_find(const catalog *cat, const char *item_type) {
    /* A dozen-odd entries: a linear scan beats hashing here. */
    for (size_t i = 0; i < cat->count; i++)
        if (strcmp(cat->items[i].item_type, item_type) == 0) return &cat->items[i];
    return NULL;
}

size_t catalog_count(const catalog *cat) { return cat->count; }

const catalog_item *catalog_at(const catalog *cat, size_t i) {
    return i < cat->count ? &cat->items[i] : NULL;
}

const char *catalog_json(const catalog *cat) { return cat->json_text; }

void catalog_free(catalog *cat) {
    if (!cat) return;
    free(cat->json_text);
    free(cat->items);
    json_decref(cat->root);
    free(cat);
}
