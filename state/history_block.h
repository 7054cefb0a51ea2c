/* history_block: a partition's history packed many events to a row. The fold writes
 * each batch's outcomes as a few blocks instead of one SQLite row per event (a row cost
 * the fold a fifth of replay's time: binding nine columns, building the record and a
 * B-tree insert each); readers find an event's block by offset and decode it here.
 * Pure bytes: no SQLite, no I/O. */
#ifndef LOOTLOG_HISTORY_BLOCK_H
#define LOOTLOG_HISTORY_BLOCK_H

#include <stddef.h>
#include <stdint.h>

/* A block holds at most this many bytes (unless a single entry is bigger), so that its
 * row fills one 4 KiB SQLite page: a bigger row spills to overflow pages that every point
 * read follows, and a row of 3,000 bytes left a quarter of each page empty. */
#define HISTORY_BLOCK_MAX_BYTES 4000

/* One event's outcome, as stored. Text fields are NUL-terminated; in a decoded entry
 * they point into the block's bytes and live as long as they do. */
typedef struct {
    int64_t offset;
    int64_t player_key;
    int event_type; /* codec's event_type, 0..255 */
    int outcome;    /* fold_outcome, 0..255 */
    int id_is_uuid; /* the id is a lowercase RFC 4122 UUID, held as its 16 bytes */
    unsigned char id_uuid[16];
    const char *id_text; /* the id as sent when !id_is_uuid */
    int64_t ts_ms;       /* ms since the epoch when ts is canonical, else -1 */
    const char *ts_text; /* the ts as sent when ts_ms < 0 */
    const char *reason;   /* NULL when none */
    const char *items;    /* NULL when none */
    const char *guild_id; /* NULL when none */
} history_entry;

/* A block being built: entries in ascending offset order. */
typedef struct {
    unsigned char *bytes;
    size_t len, cap;
    size_t count;
    int64_t first_offset, last_offset;
} history_block;

/* Appends entry, whose offset must be above the block's last (and player_key not
 * negative). Returns 0, or -1 when out of memory or out of order (the block is then
 * unchanged). */
int history_block_add(history_block *b, const history_entry *entry);
/* 1 when entry can join b within HISTORY_BLOCK_MAX_BYTES (always when b is empty), 0
 * when b should be written first. */
int history_block_fits(const history_block *b, const history_entry *entry);
/* Empties b for the next block, keeping its buffer. */
void history_block_reset(history_block *b);
void history_block_free(history_block *b);

/* The player index packs the same way: a player's (id hash, offset) pairs in offset
 * order, one row per player per batch (a batch holds ~8 events of a busy player: one
 * B-tree insert instead of eight). Each pair is a varint offset delta and the hash's 4
 * bytes. A row holds at most HISTORY_IDS_MAX pairs. */
#define HISTORY_IDS_MAX 512

/* Appends a pair to b (whose entries are all pairs). Returns 0, or -1 when out of memory
 * or out of order. */
int history_block_add_id(history_block *b, uint32_t id_hash, int64_t offset);

/* Walks a stored block's entries in offset order. */
typedef struct {
    const unsigned char *at, *end;
    int64_t offset; /* of the last entry read */
    int started;
} history_block_reader;

void history_block_read_start(history_block_reader *r, const void *bytes, size_t len,
                              int64_t first_offset);
/* Decodes the next entry into *entry. Returns 1, 0 at the end, -1 when the bytes are
 * not a well-formed block or its first offset is negative. */
int history_block_next(history_block_reader *r, history_entry *entry);

/* Decodes the next pair of a player index row. Returns 1, 0 at the end, -1 when the
 * bytes are not well formed. */
int history_block_next_id(history_block_reader *r, uint32_t *id_hash, int64_t *offset);

#endif
