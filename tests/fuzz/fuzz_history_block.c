/* fuzz_history_block: the two decoders of packed rows (history_block_next for history
 * blocks, history_block_next_id for player index rows), which read what a store file
 * holds, so a damaged file reaches them; both read the same bytes. Properties: no crash
 * and no read outside the bytes; they answer only -1, 0 or 1; offsets strictly increase;
 * every text returned lies inside the bytes with its NUL; and packing what was decoded
 * gives bytes that decode to the same. */
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

/* The bytes as a player index row: pairs decode, and pack back to the same bytes up to
 * where decoding stopped (the encoding of a pair is unique but for a varint's padding,
 * so the pairs are compared, not the bytes). */
static void index_row(const uint8_t *data, size_t size) {
    static uint32_t hashes[MAX_ENTRIES];
    static int64_t offsets[MAX_ENTRIES];
    history_block_reader r;
    history_block_read_start(&r, data, size, FIRST_OFFSET);
    size_t count = 0;
    int got;
    while (count < MAX_ENTRIES &&
           (got = history_block_next_id(&r, &hashes[count], &offsets[count])) == 1) {
        FUZZ_ASSERT(offsets[count] >= FIRST_OFFSET);
        FUZZ_ASSERT(count == 0 || offsets[count] > offsets[count - 1]);
        count++;
    }
    if (count < MAX_ENTRIES) FUZZ_ASSERT(got == -1 || got == 0);
    history_block b = {0};
    for (size_t i = 0; i < count; i++) FUZZ_ASSERT(history_block_add_id(&b, hashes[i], offsets[i]) == 0);
    history_block_reader again;
    history_block_read_start(&again, b.bytes, b.len, count ? offsets[0] : 0);
    for (size_t i = 0; i < count; i++) {
        uint32_t id_hash;
        int64_t offset;
        FUZZ_ASSERT(history_block_next_id(&again, &id_hash, &offset) == 1);
        FUZZ_ASSERT(id_hash == hashes[i] && offset == offsets[i]);
    }
    uint32_t id_hash;
    int64_t offset;
    FUZZ_ASSERT(history_block_next_id(&again, &id_hash, &offset) == 0);
    history_block_free(&b);
}

/* Read from a first offset near the top of int64 or below zero (a damaged row): the
 * offsets never wrap and a negative start is refused. */
static void extreme_first_offsets(const uint8_t *data, size_t size) {
    history_block_reader r;
    history_entry e;
    uint32_t id_hash;
    int64_t offset;
    int got;
    history_block_read_start(&r, data, size, INT64_MAX - 3);
    while ((got = history_block_next(&r, &e)) == 1) FUZZ_ASSERT(e.offset >= INT64_MAX - 3);
    history_block_read_start(&r, data, size, INT64_MAX - 3);
    while ((got = history_block_next_id(&r, &id_hash, &offset)) == 1)
        FUZZ_ASSERT(offset >= INT64_MAX - 3);
    history_block_read_start(&r, data, size, -1);
    FUZZ_ASSERT(history_block_next(&r, &e) == -1);
    history_block_read_start(&r, data, size, -1);
    FUZZ_ASSERT(history_block_next_id(&r, &id_hash, &offset) == -1);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static history_entry entries[MAX_ENTRIES];
    index_row(data, size);
    extreme_first_offsets(data, size);
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
