/* store: the SQLite file behind lootlog. One writer connection (the fold, inside batch
 * transactions) and any number of reader connections (WAL: readers never wait on the
 * writer). Every statement is prepared once at open; no SQL is built at run time.
 * Row-level calls report failure as -1; store_errmsg says why. */
#ifndef LOOTLOG_STORE_H
#define LOOTLOG_STORE_H

#include <stddef.h>
#include <stdint.h>

#define STORE_MAX_PARTITIONS 256
#define STORE_ID_SIZE 65

typedef struct store store;

typedef enum { STORE_READER = 0, STORE_WRITER = 1 } store_role;

/* Opens path (created if missing for a writer). A writer applies pending migrations;
 * a reader refuses a file whose schema is not current. NULL with errstr on failure. */
store *store_open(const char *path, store_role role, char *errstr, size_t errstr_size);
void store_close(store *st);

/* The last error on this connection, as a sentence. */
const char *store_errmsg(const store *st);

/* ---- transactions (writer: one per fold batch; reader: one per consistent read) ---- */
int store_begin(store *st);
int store_commit(store *st);
void store_rollback(store *st);

/* ---- writer calls, used by the fold inside a transaction ---- */

typedef struct {
    int64_t version;
    char guild_id[STORE_ID_SIZE]; /* "" when in no guild */
} store_player;

/* Records event_id of user_id as first seen at (partition, offset). Returns 1 when
 * claimed, 0 when that player's event id was seen before (a duplicate), -1 on error. */
int store_claim_event_id(store *st, const char *event_id, const char *user_id, int32_t partition,
                         int64_t offset);
/* Returns 1 and fills *player when user_id exists, 0 when not, -1 on error. */
int store_get_player(store *st, const char *user_id, store_player *player);
int store_put_player(store *st, const char *user_id, const store_player *player,
                     int32_t partition, const char *ts);
/* Writes the quantity held (0 when none). */
int store_get_quantity(store *st, const char *user_id, const char *item_type, int64_t *quantity);
/* Sets the quantity held; 0 deletes the row. */
int store_set_quantity(store *st, const char *user_id, const char *item_type, int64_t quantity);
/* Writes the member count (0 for a guild with no members). */
int store_get_guild_count(store *st, const char *guild_id, int64_t *member_count);
int store_add_member(store *st, const char *guild_id, const char *user_id, const char *ts,
                     int64_t new_member_count);
int store_remove_member(store *st, const char *guild_id, const char *user_id,
                        int64_t new_member_count);

typedef struct {
    int32_t partition;
    int64_t offset;
    const char *event_id;
    const char *event_type;
    const char *user_id;
    const char *outcome; /* "applied", "rejected", "duplicate" */
    const char *reason;  /* NULL unless rejected */
    const char *ts;
    const char *items_json; /* NULL when the event has no items */
    const char *guild_id;   /* NULL when the event has none */
} store_event_record;

int store_record_event(store *st, const store_event_record *rec);
int store_record_dead_letter(store *st, int32_t partition, int64_t offset, const char *reason,
                             const void *key, size_t key_len, const void *payload,
                             size_t payload_len);
int store_set_offset(store *st, int32_t partition, int64_t next_offset);

/* ---- reads (any role) ---- */

typedef struct {
    int32_t partition;
    int64_t next_offset;
} store_offset;

/* Fills offsets (up to max) with the stored next offsets, ascending by partition, and
 * writes their number to *count. */
int store_load_offsets(store *st, store_offset *offsets, size_t max, size_t *count);

typedef struct {
    char item_type[STORE_ID_SIZE];
    int64_t quantity;
} store_line;

typedef struct {
    int found;
    store_player player;
    size_t line_count;
    store_line *lines; /* malloc'ed; store_inventory_clear frees */
    size_t offset_count;
    store_offset offsets[STORE_MAX_PARTITIONS];
} store_inventory;

/* Reads a player's inventory, guild and the offsets it reflects, from one read
 * transaction. Returns 0 (inv->found says whether the player exists) or -1. */
int store_read_inventory(store *st, const char *user_id, store_inventory *inv);
void store_inventory_clear(store_inventory *inv);

typedef struct {
    char event_id[STORE_ID_SIZE];
    char event_type[32];
    char outcome[16];
    char reason[64];
    int32_t partition;
    int64_t offset;
} store_event_outcome;

/* Looks up the outcome of the first record of event_id — of user_id's events when
 * user_id is not NULL (ids are unique per player), else the earliest of any player's.
 * Returns 1 found, 0 not, -1. */
int store_read_event(store *st, const char *event_id, const char *user_id,
                     store_event_outcome *out);

/* Guild members in user_id order after after_user ("" from the start), at most limit,
 * each passed to row(arg, user_id). *member_count gets the guild's size (0: no such
 * guild). One read transaction. Returns 0 or -1. */
int store_read_guild(store *st, const char *guild_id, const char *after_user, int limit,
                     int64_t *member_count, void (*row)(void *arg, const char *user_id),
                     void *arg);

typedef struct {
    const char *event_id, *event_type, *outcome, *reason, *ts, *items_json, *guild_id;
    int32_t partition;
    int64_t offset;
} store_history_row;

/* A player's recorded events, newest first, with offset < before_offset (-1: from the
 * newest), at most limit, each passed to row (pointers valid during the call only).
 * Returns 0 or -1. */
int store_read_history(store *st, const char *user_id, int64_t before_offset, int limit,
                       void (*row)(void *arg, const store_history_row *entry), void *arg);

/* Walks every player in user_id order with a digest of their whole state (version,
 * guild, inventory lines), calling row(arg, user_id, digest). Run inside a read
 * transaction for a consistent view. Returns 0 or -1. */
int store_player_digests(store *st, void (*row)(void *arg, const char *user_id, uint64_t digest),
                         void *arg);

/* Copies the whole database, as of one moment, into a new file dest_path (which must
 * not exist) with SQLite's online backup in a single step, so the copy is one consistent
 * read of the source while the fold keeps writing. Returns 0 or -1 (store_errmsg). */
int store_backup_to(store *st, const char *dest_path);

/* Table walks for analyst exports, in key order. Each row's strings are valid during the
 * callback only; a NULL column comes as NULL. A callback returning non-zero stops the
 * walk with -1 (its own error is the caller's to report). Return 0 or -1. */
typedef struct {
    const char *text[6];
    int64_t number[6];
} store_row;

/* inventory: text[0] user_id, text[1] item_type, number[0] quantity */
int store_walk_inventory(store *st, int (*row)(void *arg, const store_row *r), void *arg);
/* guild_members: text[0] guild_id, text[1] user_id, text[2] joined_ts */
int store_walk_guild_members(store *st, int (*row)(void *arg, const store_row *r), void *arg);
/* players: text[0] user_id, number[0] version, text[1] guild_id, number[1] partition,
 * text[2] created_ts, text[3] updated_ts */
int store_walk_players(store *st, int (*row)(void *arg, const store_row *r), void *arg);
/* events of one partition with first <= offset < end: number[0] partition, number[1] offset,
 * text[0] event_id, text[1] event_type, text[2] user_id, text[3] ts, text[4] outcome,
 * text[5] reason; items and guild_id come in row->text via the extra pointers below. */
typedef struct {
    store_row base;
    const char *items_json;
    const char *guild_id;
} store_event_row;
int store_walk_events(store *st, int32_t partition, int64_t first, int64_t end,
                      int (*row)(void *arg, const store_event_row *r), void *arg);

#endif
