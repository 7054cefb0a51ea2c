/* history_block: the byte layout of a history block. Each entry is
 *   varint  offset minus the previous entry's (the first: minus the block's first offset)
 *   varint  player_key
 *   byte    event_type, byte outcome, byte flags (FLAG_*)
 *   id      16 bytes (FLAG_UUID) or a text
 *   ts      varint ms (FLAG_TS_MS) or a text
 *   then reason, items and guild_id as texts, each only when its flag is set,
 * where a text is a varint length, its bytes and a NUL (so a decoded entry points into
 * the block instead of copying). LEB128 varints: offsets and keys are small deltas. */
#include "state/history_block.h"

#include <stdlib.h>
#include <string.h>

enum {
    FLAG_UUID = 1,
    FLAG_TS_MS = 2,
    FLAG_REASON = 4,
    FLAG_ITEMS = 8,
    FLAG_GUILD = 16,
};

/* The most an entry's fixed part takes: two varints, three bytes, the UUID and the ts. */
#define ENTRY_FIXED_MAX (10 + 10 + 3 + 16 + 10)

static size_t put_varint(unsigned char *out, uint64_t value) {
    size_t n = 0;
    while (value >= 0x80) {
        out[n++] = (unsigned char)(value | 0x80);
        value >>= 7;
    }
    out[n++] = (unsigned char)value;
    return n;
}

static size_t text_size(const char *text) { return text ? 10 + strlen(text) + 1 : 0; }

static size_t put_text(unsigned char *out, const char *text) {
    size_t len = strlen(text);
    size_t n = put_varint(out, len);
    memcpy(out + n, text, len + 1);
    return n + len + 1;
}

static int reserve_bytes(history_block *b, size_t need);

static size_t varint_size(uint64_t value) {
    size_t n = 1;
    while (value >= 0x80) {
        value >>= 7;
        n++;
    }
    return n;
}

/* The bytes put_text takes for text; 0 for NULL. */
static size_t text_bytes(const char *text) {
    if (!text) return 0;
    size_t len = strlen(text);
    return varint_size(len) + len + 1;
}

/* The exact bytes entry takes after an entry at previous_offset. */
static size_t entry_bytes(const history_entry *entry, int64_t previous_offset) {
    size_t n = varint_size((uint64_t)(entry->offset - previous_offset)) +
               varint_size((uint64_t)entry->player_key) + 3;
    n += entry->id_is_uuid ? 16 : text_bytes(entry->id_text);
    n += entry->ts_ms >= 0 ? varint_size((uint64_t)entry->ts_ms) : text_bytes(entry->ts_text);
    return n + text_bytes(entry->reason) + text_bytes(entry->items) + text_bytes(entry->guild_id);
}

int history_block_fits(const history_block *b, const history_entry *entry) {
    if (!b->count) return 1;
    if (entry->offset <= b->last_offset) return 1; /* add refuses it anyway */
    return b->len + entry_bytes(entry, b->last_offset) <= HISTORY_BLOCK_MAX_BYTES;
}

int history_block_add(history_block *b, const history_entry *entry) {
    if (entry->offset < 0 || entry->player_key < 0 || (b->count && entry->offset <= b->last_offset))
        return -1; /* the reader refuses what a negative value would encode to */
    const char *id_text = entry->id_is_uuid ? NULL : entry->id_text;
    const char *ts_text = entry->ts_ms >= 0 ? NULL : entry->ts_text;
    if ((!entry->id_is_uuid && !id_text) || (entry->ts_ms < 0 && !ts_text)) return -1;
    size_t need = ENTRY_FIXED_MAX + text_size(id_text) + text_size(ts_text) +
                  text_size(entry->reason) + text_size(entry->items) + text_size(entry->guild_id);
    if (reserve_bytes(b, need)) return -1;
    if (!b->count) b->first_offset = b->last_offset = entry->offset;
    unsigned char *out = b->bytes + b->len;
    size_t n = put_varint(out, (uint64_t)(entry->offset - b->last_offset));
    n += put_varint(out + n, (uint64_t)entry->player_key);
    int flags = (entry->id_is_uuid ? FLAG_UUID : 0) | (entry->ts_ms >= 0 ? FLAG_TS_MS : 0) |
                (entry->reason ? FLAG_REASON : 0) | (entry->items ? FLAG_ITEMS : 0) |
                (entry->guild_id ? FLAG_GUILD : 0);
    out[n++] = (unsigned char)entry->event_type;
    out[n++] = (unsigned char)entry->outcome;
    out[n++] = (unsigned char)flags;
    if (entry->id_is_uuid) {
        memcpy(out + n, entry->id_uuid, 16);
        n += 16;
    } else {
        n += put_text(out + n, id_text);
    }
    if (entry->ts_ms >= 0)
        n += put_varint(out + n, (uint64_t)entry->ts_ms);
    else
        n += put_text(out + n, ts_text);
    if (entry->reason) n += put_text(out + n, entry->reason);
    if (entry->items) n += put_text(out + n, entry->items);
    if (entry->guild_id) n += put_text(out + n, entry->guild_id);
    b->len += n;
    b->count++;
    b->last_offset = entry->offset;
    return 0;
}

/* Makes room for need more bytes. Returns 0 or -1. */
static int reserve_bytes(history_block *b, size_t need) {
    if (b->len + need <= b->cap) return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap < b->len + need) cap *= 2;
    unsigned char *bigger = realloc(b->bytes, cap);
    if (!bigger) return -1;
    b->bytes = bigger;
    b->cap = cap;
    return 0;
}

int history_block_add_id(history_block *b, uint32_t id_hash, int64_t offset) {
    if (offset < 0 || (b->count && offset <= b->last_offset) || reserve_bytes(b, 10 + 4))
        return -1;
    if (!b->count) b->first_offset = b->last_offset = offset;
    unsigned char *out = b->bytes + b->len;
    size_t n = put_varint(out, (uint64_t)(offset - b->last_offset));
    for (int i = 0; i < 4; i++) out[n++] = (unsigned char)(id_hash >> (8 * i));
    b->len += n;
    b->count++;
    b->last_offset = offset;
    return 0;
}

void history_block_reset(history_block *b) {
    b->len = b->count = 0;
    b->first_offset = b->last_offset = 0;
}

void history_block_free(history_block *b) {
    free(b->bytes);
    *b = (history_block){0};
}

void history_block_read_start(history_block_reader *r, const void *bytes, size_t len,
                              int64_t first_offset) {
    r->at = bytes;
    r->end = bytes ? r->at + len : r->at; /* NULL + 0 is undefined behaviour */
    r->offset = first_offset;
    r->started = 0;
}

/* Reads a varint; -1 when it runs past the end or past 64 bits. */
static int get_varint(history_block_reader *r, uint64_t *value) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->at >= r->end) return -1;
        unsigned char byte = *r->at++;
        v |= (uint64_t)(byte & 0x7f) << shift;
        if (!(byte & 0x80)) {
            *value = v;
            return 0;
        }
    }
    return -1;
}

/* Reads a text; -1 when its length runs past the end or it lacks its NUL. */
static int get_text(history_block_reader *r, const char **text) {
    uint64_t len;
    if (get_varint(r, &len) || len >= (uint64_t)(r->end - r->at) || r->at[len] != '\0')
        return -1;
    *text = (const char *)r->at;
    r->at += len + 1;
    return 0;
}

int history_block_next(history_block_reader *r, history_entry *entry) {
    if (r->offset < 0) return -1; /* a damaged row's first offset */
    if (r->at >= r->end) return 0;
    uint64_t delta, player_key;
    if (get_varint(r, &delta) || get_varint(r, &player_key) || r->end - r->at < 3) return -1;
    if ((r->started && delta == 0) || delta > (uint64_t)(INT64_MAX - r->offset) ||
        player_key > (uint64_t)INT64_MAX)
        return -1;
    *entry = (history_entry){.offset = r->offset + (int64_t)delta,
                             .player_key = (int64_t)player_key,
                             .event_type = r->at[0],
                             .outcome = r->at[1],
                             .ts_ms = -1};
    int flags = r->at[2];
    r->at += 3;
    if (flags & FLAG_UUID) {
        if (r->end - r->at < 16) return -1;
        entry->id_is_uuid = 1;
        memcpy(entry->id_uuid, r->at, 16);
        r->at += 16;
    } else if (get_text(r, &entry->id_text)) {
        return -1;
    }
    if (flags & FLAG_TS_MS) {
        uint64_t ms;
        if (get_varint(r, &ms) || ms > (uint64_t)INT64_MAX) return -1;
        entry->ts_ms = (int64_t)ms;
    } else if (get_text(r, &entry->ts_text)) {
        return -1;
    }
    if ((flags & FLAG_REASON) && get_text(r, &entry->reason)) return -1;
    if ((flags & FLAG_ITEMS) && get_text(r, &entry->items)) return -1;
    if ((flags & FLAG_GUILD) && get_text(r, &entry->guild_id)) return -1;
    r->offset = entry->offset;
    r->started = 1;
    return 1;
}

int history_block_next_id(history_block_reader *r, uint32_t *id_hash, int64_t *offset) {
    if (r->offset < 0) return -1; /* a damaged row's first offset */
    if (r->at >= r->end) return 0;
    uint64_t delta;
    if (get_varint(r, &delta) || r->end - r->at < 4) return -1;
    if ((r->started && delta == 0) || delta > (uint64_t)(INT64_MAX - r->offset)) return -1;
    *id_hash = (uint32_t)r->at[0] | (uint32_t)r->at[1] << 8 | (uint32_t)r->at[2] << 16 |
               (uint32_t)r->at[3] << 24;
    r->at += 4;
    r->offset += (int64_t)delta;
    r->started = 1;
    *offset = r->offset;
    return 1;
}
