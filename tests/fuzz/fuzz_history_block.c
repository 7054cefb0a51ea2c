/* fuzz_history_block: the history block decoder (history_block_next), which reads what a
 * store file holds, so a damaged file reaches it. Properties: no crash and no read outside
 * the bytes; it answers only -1, 0 or 1; offsets strictly increase; every text it returns
 * lies inside the bytes with its NUL; and packing the entries it decoded gives a block
 * that decodes to the same entries. */
#include "fuzz_check.h"
#include "state/history_block.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define FIRST_OFFSET 1000
#define MAX_ENTRIES 4096

static int inside(const char *text, const uint8_t *data, size_t size) {
    if (!text) return 1;
    const uint8_t *p = (const uint8_t *)text;
    if (p < data || p >= data + size) return 0;
    return memchr(p, '\0', (size_t)(data + size - p)) != NULL;
}

static int same_text(const char *a, const char *b) {
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

static void same_entry(const history_entry *a, const history_entry *b) {
    FUZZ_ASSERT(a->offset == b->offset && a->player_key == b->player_key);
    FUZZ_ASSERT(a->event_type == b->event_type && a->outcome == b->outcome);
    FUZZ_ASSERT(a->id_is_uuid == b->id_is_uuid);
    if (a->id_is_uuid)
        FUZZ_ASSERT(memcmp(a->id_uuid, b->id_uuid, 16) == 0);
    else
        FUZZ_ASSERT(same_text(a->id_text, b->id_text));
    FUZZ_ASSERT(a->ts_ms == b->ts_ms);
    if (a->ts_ms < 0) FUZZ_ASSERT(same_text(a->ts_text, b->ts_text));
    FUZZ_ASSERT(same_text(a->reason, b->reason) && same_text(a->items, b->items) &&
                same_text(a->guild_id, b->guild_id));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static history_entry entries[MAX_ENTRIES];
    history_block_reader r;
    history_block_read_start(&r, data, size, FIRST_OFFSET);
    size_t count = 0;
    int got;
    int64_t previous = FIRST_OFFSET - 1;
    while (count < MAX_ENTRIES && (got = history_block_next(&r, &entries[count])) == 1) {
        const history_entry *e = &entries[count];
        FUZZ_ASSERT(e->offset > previous && e->offset >= FIRST_OFFSET && e->player_key >= 0);
        FUZZ_ASSERT(e->event_type >= 0 && e->event_type < 256 && e->outcome >= 0 &&
                    e->outcome < 256);
        FUZZ_ASSERT(e->id_is_uuid ? e->id_text == NULL : inside(e->id_text, data, size));
        FUZZ_ASSERT(e->ts_ms >= 0 ? e->ts_text == NULL : inside(e->ts_text, data, size));
        FUZZ_ASSERT(inside(e->reason, data, size) && inside(e->items, data, size) &&
                    inside(e->guild_id, data, size));
        previous = e->offset;
        count++;
    }
    if (count < MAX_ENTRIES) FUZZ_ASSERT(got == -1 || got == 0);

    /* What was decoded packs back into a block that decodes to the same entries. */
    history_block b = {0};
    for (size_t i = 0; i < count; i++) FUZZ_ASSERT(history_block_add(&b, &entries[i]) == 0);
    FUZZ_ASSERT(b.count == count);
    history_block_reader again;
    history_block_read_start(&again, b.bytes, b.len, count ? entries[0].offset : 0);
    history_entry e;
    for (size_t i = 0; i < count; i++) {
        FUZZ_ASSERT(history_block_next(&again, &e) == 1);
        same_entry(&e, &entries[i]);
    }
    FUZZ_ASSERT(history_block_next(&again, &e) == 0);
    history_block_free(&b);
    return 0;
}
