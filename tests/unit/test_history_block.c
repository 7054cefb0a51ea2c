/* test_history_block: entries packed into a block decode to what went in (UUID and text
 * ids, ms and text times, optional texts, big offsets and keys, gaps between offsets);
 * the size bound; order refused; and damaged bytes (every cut, a missing NUL) answered
 * -1 without reading past the end. */
#include "state/history_block.h"
#include "check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static const unsigned char some_uuid[16] = {0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3,
                                            4,    5,    6,    7,    8, 9, 10, 0xff};

static history_entry entry_at(int64_t offset) {
    return (history_entry){.offset = offset, .player_key = 7, .event_type = 1, .outcome = 0,
                           .id_is_uuid = 1, .ts_ms = 1796000000123LL, .items = "sword:1"};
}

/* The bytes the last decode_all read, which its entries point into. */
static unsigned char *decoded_bytes;

/* Decodes len bytes from first_offset; returns the number of entries, or -1 when the
 * block is refused. The bytes are copied to a buffer of exactly len so that ASan sees a
 * read past the end; the copy lives until the next call. */
static int decode_all(const unsigned char *bytes, size_t len, int64_t first_offset,
                      history_entry *out, size_t max) {
    free(decoded_bytes);
    unsigned char *copy = decoded_bytes = malloc(len ? len : 1);
    memcpy(copy, bytes, len);
    history_block_reader r;
    history_block_read_start(&r, copy, len, first_offset);
    int n = 0, got;
    history_entry e;
    while ((got = history_block_next(&r, &e)) == 1)
        if ((size_t)n < max) out[n++] = e;
    return got < 0 ? -1 : n;
}

int main(void) {
    history_block b = {0};
    history_entry in[4];
    in[0] = entry_at(100);
    memcpy(in[0].id_uuid, some_uuid, 16);
    in[1] = (history_entry){.offset = 101, .player_key = INT64_C(1) << 40, .event_type = 3,
                            .outcome = 1, .id_text = "legacy id", .ts_ms = -1,
                            .ts_text = "2026-11-29T08:14:00Z", .reason = "insufficient_quantity",
                            .items = "arrow:20,bow:1"};
    in[2] = (history_entry){.offset = 5000000000LL, .player_key = 0, .event_type = 4,
                            .outcome = 4, .id_text = "", .ts_ms = 0, .guild_id = "owls"};
    in[3] = entry_at(5000000001LL);
    in[3].reason = "";
    for (int i = 0; i < 4; i++) CHECK(history_block_add(&b, &in[i]) == 0);
    CHECK(b.count == 4 && b.first_offset == 100 && b.last_offset == 5000000001LL);

    /* Order: an offset not above the last is refused and leaves the block as it was. */
    size_t len_before = b.len;
    history_entry late = entry_at(5000000001LL);
    CHECK(history_block_add(&b, &late) == -1);
    late.offset = 50;
    CHECK(history_block_add(&b, &late) == -1);
    CHECK(b.len == len_before && b.count == 4);

    history_entry out[8];
    CHECK(decode_all(b.bytes, b.len, b.first_offset, out, 8) == 4);
    CHECK(out[0].offset == 100 && out[0].player_key == 7 && out[0].event_type == 1);
    CHECK(out[0].id_is_uuid && memcmp(out[0].id_uuid, some_uuid, 16) == 0);
    CHECK(out[0].id_text == NULL && out[0].ts_ms == 1796000000123LL && out[0].ts_text == NULL);
    CHECK(out[0].reason == NULL && out[0].guild_id == NULL);
    CHECK_STR(out[0].items, "sword:1");
    CHECK(out[1].offset == 101 && out[1].player_key == INT64_C(1) << 40);
    CHECK(out[1].event_type == 3 && out[1].outcome == 1 && !out[1].id_is_uuid);
    CHECK_STR(out[1].id_text, "legacy id");
    CHECK(out[1].ts_ms == -1);
    CHECK_STR(out[1].ts_text, "2026-11-29T08:14:00Z");
    CHECK_STR(out[1].reason, "insufficient_quantity");
    CHECK_STR(out[1].items, "arrow:20,bow:1");
    CHECK(out[1].guild_id == NULL);
    CHECK(out[2].offset == 5000000000LL && out[2].player_key == 0 && out[2].outcome == 4);
    CHECK_STR(out[2].id_text, "");
    CHECK(out[2].ts_ms == 0 && out[2].items == NULL);
    CHECK_STR(out[2].guild_id, "owls");
    CHECK(out[3].offset == 5000000001LL);
    CHECK_STR(out[3].reason, ""); /* an empty text is kept, apart from an absent one */

    /* A block read from another first offset moves every entry with it. */
    CHECK(decode_all(b.bytes, b.len, 200, out, 8) == 4);
    CHECK(out[0].offset == 200 && out[1].offset == 201 && out[3].offset == 5000000101LL);

    /* Every cut that is not at an entry's end is refused; those at an end decode the
     * entries before it. */
    size_t ends[4], n_ends = 0;
    {
        history_block one = {0};
        for (int i = 0; i < 4; i++) {
            history_block_add(&one, &in[i]);
            ends[n_ends++] = one.len;
        }
        history_block_free(&one);
    }
    int cuts_refused = 0, cuts_whole = 0;
    for (size_t len = 0; len < b.len; len++) {
        int at_end = len == 0;
        for (size_t i = 0; i < n_ends; i++) at_end |= ends[i] == len;
        int n = decode_all(b.bytes, len, b.first_offset, out, 8);
        if (at_end) {
            cuts_whole += n >= 0;
        } else {
            cuts_refused += n == -1;
            CHECK(n == -1);
        }
    }
    CHECK(cuts_whole == 4 && cuts_refused == (int)b.len - 4);

    /* A text that lost its NUL is refused. */
    unsigned char *broken = malloc(b.len);
    memcpy(broken, b.bytes, b.len);
    unsigned char *nul = memchr(broken + ends[0], '\0', b.len - ends[0]); /* "legacy id"'s */
    CHECK(nul != NULL);
    *nul = 'x';
    CHECK(decode_all(broken, b.len, b.first_offset, out, 8) == -1);
    free(broken);
    /* A varint that never ends is refused. */
    unsigned char endless[12];
    memset(endless, 0xff, sizeof endless);
    CHECK(decode_all(endless, sizeof endless, 0, out, 8) == -1);
    /* Two entries at one offset are refused (offsets only go up). */
    unsigned char twice[256];
    CHECK(2 * ends[0] <= sizeof twice);
    memcpy(twice, b.bytes, ends[0]);
    memcpy(twice + ends[0], b.bytes, ends[0]);
    CHECK(decode_all(twice, 2 * ends[0], 0, out, 8) == -1);

    /* A negative first offset (a damaged row) is refused, not overflowed; so is a
     * negative player key, which would encode to what the reader refuses. */
    CHECK(decode_all(b.bytes, b.len, -5, out, 8) == -1);
    {
        history_block_reader r;
        uint32_t hash;
        int64_t at;
        history_block_read_start(&r, b.bytes, b.len, -1);
        CHECK(history_block_next_id(&r, &hash, &at) == -1);
    }
    history_entry negative = entry_at(b.last_offset + 1);
    negative.player_key = -1;
    len_before = b.len;
    CHECK(history_block_add(&b, &negative) == -1 && b.len == len_before);

    /* Reset empties the block and it packs afresh from any offset. */
    history_block_reset(&b);
    CHECK(b.count == 0 && b.len == 0);
    CHECK(decode_all(b.bytes, b.len, 0, out, 8) == 0);
    history_entry again = entry_at(3);
    CHECK(history_block_add(&b, &again) == 0 && b.first_offset == 3 && b.last_offset == 3);

    /* The size bound: entries fit until the next would pass HISTORY_BLOCK_MAX_BYTES; an
     * empty block takes any entry, however big. */
    history_block_reset(&b);
    int64_t offset = 0;
    for (;;) {
        history_entry e = entry_at(offset++);
        if (!history_block_fits(&b, &e)) break;
        CHECK(history_block_add(&b, &e) == 0);
    }
    CHECK(b.len <= HISTORY_BLOCK_MAX_BYTES && b.len > HISTORY_BLOCK_MAX_BYTES - 64);
    char *huge = malloc(HISTORY_BLOCK_MAX_BYTES * 2);
    memset(huge, 'a', HISTORY_BLOCK_MAX_BYTES * 2 - 1);
    huge[HISTORY_BLOCK_MAX_BYTES * 2 - 1] = '\0';
    history_entry big = entry_at(offset);
    big.items = huge;
    CHECK(!history_block_fits(&b, &big));
    history_block_reset(&b);
    CHECK(history_block_fits(&b, &big) && history_block_add(&b, &big) == 0);
    CHECK(decode_all(b.bytes, b.len, b.first_offset, out, 8) == 1);
    CHECK(out[0].items && strlen(out[0].items) == HISTORY_BLOCK_MAX_BYTES * 2 - 1);
    free(huge);
    /* Player index rows: (hash, offset) pairs round-trip, in order only. */
    history_block_reset(&b);
    CHECK(history_block_add_id(&b, 0xdeadbeefu, 40) == 0);
    CHECK(history_block_add_id(&b, 0, 41) == 0);
    CHECK(history_block_add_id(&b, 0xffffffffu, INT64_C(1) << 50) == 0);
    CHECK(history_block_add_id(&b, 7, INT64_C(1) << 50) == -1);
    CHECK(history_block_add_id(&b, 7, 39) == -1);
    CHECK(b.count == 3 && b.first_offset == 40 && b.last_offset == INT64_C(1) << 50);
    {
        uint32_t hash;
        int64_t at;
        history_block_reader r;
        history_block_read_start(&r, b.bytes, b.len, b.first_offset);
        CHECK(history_block_next_id(&r, &hash, &at) == 1 && hash == 0xdeadbeefu && at == 40);
        CHECK(history_block_next_id(&r, &hash, &at) == 1 && hash == 0 && at == 41);
        CHECK(history_block_next_id(&r, &hash, &at) == 1 && hash == 0xffffffffu &&
              at == INT64_C(1) << 50);
        CHECK(history_block_next_id(&r, &hash, &at) == 0);
        /* A pair cut short is refused. */
        history_block_read_start(&r, b.bytes, b.len - 1, b.first_offset);
        int got;
        while ((got = history_block_next_id(&r, &hash, &at)) == 1)
            ;
        CHECK(got == -1);
    }

    history_block_free(&b);
    free(decoded_bytes);
    return check_finish("history_block");
}
