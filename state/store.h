/* store: one partition's SQLite file (DIR/p<N>.db). The partition is the unit of state:
 * its players, inventory, guild rows, history, dedupe memory and next offset live in
 * this file alone. One writer connection (that partition's fold, one transaction per
 * batch) and any number of readers (WAL: readers never wait on the writer). Every
 * statement is prepared once at open; no SQL is built at run time. Row-level calls
 * report failure as -1; store_errmsg says why. */
#ifndef LOOTLOG_STORE_H
#define LOOTLOG_STORE_H

#include <stddef.h>
#include <stdint.h>

#define STORE_MAX_PARTITIONS 256
#define STORE_ID_SIZE 65
#define STORE_TS_SIZE 32

typedef struct store store;

typedef enum { STORE_READER = 0, STORE_WRITER = 1 } store_role;

/* Writes "DIR/p<N>.db" into buf. Returns 0, or -1 when it does not fit. */
int store_path(const char *dir, int32_t partition, char *buf, size_t buf_size);

/* Lists the partitions with a store in dir, ascending, into partitions (up to max) and
 * writes their number to *count. A missing dir is an empty list. Returns 0 or -1. */
int store_list_partitions(const char *dir, int32_t *partitions, size_t max, size_t *count,
                          char *errstr, size_t errstr_size);

/* Opens partition's store at path (created if missing for a writer). A writer applies
 * pending migrations; a reader refuses a file whose schema is not current. NULL with
 * errstr on failure. */
store *store_open(const char *path, int32_t partition, store_role role, char *errstr,
                  size_t errstr_size);
void store_close(store *st);

/* The partition this store holds. */
int32_t store_partition(const store *st);

/* The last error on this connection, as a sentence. */
const char *store_errmsg(const store *st);

/* ---- transactions (writer: one per fold batch; reader: one per consistent read) ---- */
int store_begin(store *st);
int store_commit(store *st);
void store_rollback(store *st);

/* Copies committed WAL frames into the database file without waiting on anyone
 * (SQLite's PASSIVE checkpoint). The writer never checkpoints inside its commits;
 * a separate connection calls this. Returns 0 or -1. */
int store_checkpoint(store *st);

/* A writer that commits without pause never finds its WAL fully copied when it begins
 * (the checkpoints elsewhere always trail its newest commit), so SQLite never starts
 * the WAL over: it grew to 550 MB beside a 49 MB store, and every commit paid for
 * extending the file (the kernel zeroes each new block: a tenth of the live fold's
 * CPU). So after its commit the writer itself checkpoints once the WAL passes this
 * many frames (8 MB with 4 KB pages); the next transaction then reuses the WAL from
 * its start. Returns 0 or -1 with the store's error. */
#define STORE_WAL_REUSE_FRAMES 2048
int store_reuse_wal(store *st);

/* A store being built that nobody reads until it is whole (replay's new folder): its
 * commits write their pages straight into the database file, with the rollback journal
 * in memory, no fsync and the file locked for this connection alone; no WAL, so no
 * page is written twice (once to the WAL, once more by its checkpoint). A crash leaves
 * a store to build again, which replay's new folder asks for anyway. The connection
 * must be the store's only one. Then store_sync_to_disk once it is done. Returns 0 or
 * -1 with the store's error. */
int store_sync_later(store *st);

/* Sets the connection's page cache to kib KiB. A writer opens with 1 MB (serve keeps
 * its memory bounded with 1M players); a one-shot rebuild buys speed with more: its
 * store's B-tree pages then stay in memory instead of being read back from the OS. */
#define STORE_DEFAULT_CACHE_KIB 1000
int store_set_cache_kib(store *st, int kib);
/* Puts the store back in WAL mode (what every other connection expects), copies any WAL
 * into the database file and syncs both to disk (synchronous=FULL), so the store
 * survives a power cut from here on. No other connection may checkpoint the store
 * meanwhile. Returns 0 or -1 with the store's error. */
int store_sync_to_disk(store *st);

/* ---- the fold's calls (writer, inside a transaction) ---- */

typedef struct {
    int64_t player_key; /* the store's compact handle of the user */
    int64_t version;    /* applied non-default events; the player exists once > 0 */
    char guild_id[STORE_ID_SIZE];  /* "" when in no guild */
    char created_ts[STORE_TS_SIZE]; /* ts of the first applied event; "" before */
    char updated_ts[STORE_TS_SIZE];
    char pending_guild_id[STORE_ID_SIZE]; /* a join waiting for the guild's decision; "" none */
    char pending_cause[STORE_ID_SIZE];    /* that join's event id */
} store_player;

typedef struct {
    char item_type[STORE_ID_SIZE];
    int64_t quantity;
} store_line;

/* The largest player_key in the store (0 when none): new players count on from it. */
int store_max_player_key(store *st, int64_t *max_key);

/* Reads user_id's row and its inventory lines (in item_type order) into *player and a
 * malloc'ed *lines array the caller frees (NULL when none). Returns 1 found, 0 not, -1. */
int store_load_player(store *st, const char *user_id, store_player *player, store_line **lines,
                      size_t *line_count);

/* Writes a player's row (insert or update by player_key). */
int store_put_player(store *st, const char *user_id, const store_player *player);
/* Sets a line's quantity; 0 deletes the row. */
int store_put_line(store *st, int64_t player_key, const char *item_type, int64_t quantity);

/* Writes the member count of a guild (0: none). */
int store_get_guild_count(store *st, const char *guild_id, int64_t *member_count);
/* Stores a guild's member count; 0 deletes the guild's row. */
int store_set_guild_count(store *st, const char *guild_id, int64_t member_count);
int store_add_member(store *st, const char *guild_id, const char *user_id, const char *ts);
int store_remove_member(store *st, const char *guild_id, const char *user_id);
/* 1 when user_id holds a seat in guild_id (committed state), 0 when not, -1 on error. */
int store_is_member(store *st, const char *guild_id, const char *user_id);

/* ---- the outbox: events the fold emitted, until Kafka has them ---- */

/* Adds an emitted event (its Kafka key, id, the user it is recorded under, and its JSON)
 * inside the fold's transaction; writes its sequence number to *seq. */
int store_outbox_add(store *st, const char *msg_key, const char *event_id, const char *user_id,
                     const char *payload, int64_t *seq);
/* Deletes the emitted events with first_seq <= seq <= last_seq, once Kafka acknowledged
 * them or they were found in the log (inside a writer transaction). */
int store_outbox_delete(store *st, int64_t first_seq, int64_t last_seq);

typedef struct {
    int64_t seq;
    const char *msg_key, *event_id, *user_id, *payload;
} store_outbox_row;

/* Walks up to limit outbox rows with seq > after_seq in seq order (pointers valid in the
 * callback only; a non-zero return stops the walk with -1). Returns 0 or -1. */
int store_outbox_walk(store *st, int64_t after_seq, int limit,
                      int (*row)(void *arg, const store_outbox_row *r), void *arg);

/* The 32-bit hash under which an event id is kept in the dedupe memory (FNV-1a over
 * its bytes). Persisted: it must never change. */
uint32_t store_event_id_hash(const char *event_id);
/* The same over len bytes (no NUL needed). */
uint32_t store_event_id_hash_bytes(const char *event_id, size_t len);

/* 1 when player_key already has a recorded event with event_id (whose hash is
 * id_hash), 0 when not, -1 on error. */
int store_event_seen(store *st, int64_t player_key, uint32_t id_hash, const char *event_id);

/* 1 when the history entry at offset has event_id, 0 when it has another or there is
 * none, -1 on error (a dedupe check of an event not in the player index yet). */
int store_history_has_id(store *st, int64_t offset, const char *event_id);

/* Writes up to max of player_key's recorded id hashes into hashes and their number to
 * *count, counting on (without writing) up to count_limit: *count > max means there
 * are more, and then says how many (or count_limit, when there are at least that many),
 * so a caller can size its buffer once. Returns 0 or -1. */
int store_event_id_hashes(store *st, int64_t player_key, uint32_t *hashes, size_t max,
                          size_t count_limit, size_t *count);

typedef struct {
    int64_t offset;
    int64_t player_key;
    const char *event_id;
    uint32_t id_hash;
    int event_type; /* codec's event_type */
    int outcome;    /* fold_outcome: 0 applied, 1 rejected, 2 duplicate, 4 pending */
    const char *reason; /* NULL unless rejected */
    const char *ts;
    const char *items;    /* "sword:1,arrow:20" or NULL */
    const char *guild_id; /* NULL when the event has none */
} store_history_record;

/* Appends count events' outcomes to history (id_hash is not used here), in ascending
 * offset order within and across calls: they are packed into blocks (state/history_block)
 * and each full block is written as one row; the last, partly filled one is written by
 * store_commit, so a batch handed over in several calls still fills whole blocks.
 * store_rollback drops it. */
int store_append_history(store *st, const store_history_record *recs, size_t count);

typedef struct {
    int64_t player_key;
    uint32_t id_hash;
    int64_t offset;
} store_player_event;

/* Indexes recorded events under their players: the dedupe memory and the players'
 * history index. events must be sorted by player_key, then offset; each player's pairs
 * become one player_index row (up to HISTORY_IDS_MAX pairs a row), so a batch pays one
 * insert per player it touched instead of one per event. */
int store_add_player_events(store *st, const store_player_event *events, size_t count);

int store_record_dead_letter(store *st, int64_t offset, const char *reason, const void *key,
                             size_t key_len, const void *payload, size_t payload_len);

/* Binds the store to topic: records it in the store's meta table the first time, and
 * afterwards refuses (-1 with errmsg) a store that holds another topic's state. Writer. */
int store_claim_topic(store *st, const char *topic);
/* Writes the topic the store holds ("" when none was recorded) into buf. Any role. */
int store_get_topic(store *st, char *buf, size_t buf_size);

/* Marks the store unfinished, by whom (a lowercase word: "replay"): its writer commits
 * without a journal on disk (store_sync_later) or holds changes in memory beyond what its
 * commits wrote (fold_config.write_back), so until it is done its file may be torn by a
 * crash or its tables lag its offset. store_open refuses a store so marked, so a writer
 * that dies first leaves a store nobody serves or folds on. The mark is a file beside the
 * store ("<path>-unfinished"), read before the database is: a torn file is refused with
 * the same words. by NULL clears it. Returns 0 or -1. */
int store_set_unfinished(store *st, const char *by);

/* The next offset to consume, stored with the state it produced. */
int store_set_next_offset(store *st, int64_t next_offset);
/* Writes it, or -1 when nothing was folded yet. Returns 0 or -1 on error. */
int store_get_next_offset(store *st, int64_t *next_offset);

/* ---- reads (any role) ---- */

typedef struct {
    int found; /* the player exists: version > 0 */
    store_player player;
    size_t line_count;
    store_line *lines; /* malloc'ed; store_inventory_clear frees */
    int64_t next_offset; /* of this partition, in the same read transaction; -1: none */
} store_inventory;

/* Reads a player's inventory, guild and the offset it reflects from one read
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
 * user_id is not NULL (ids are unique per player; an index lookup), else the earliest
 * of any player's in this store (a scan of history). Returns 1 found, 0 not, -1. */
int store_read_event(store *st, const char *event_id, const char *user_id,
                     store_event_outcome *out);

/* For each of n event ids of user_id's, found[i] = 1 when this store recorded it, else 0:
 * what store_read_event says of each, with one walk of the player's index for all of
 * them (a busy player's index holds hundreds of thousands of events). Returns 0 or -1. */
int store_find_events(store *st, const char *user_id, const char *const *event_ids, size_t n,
                      unsigned char *found);

/* Guild members of this store in user_id order after after_user ("" from the start),
 * at most limit, each passed to row(arg, user_id). *member_count gets this store's
 * count for the guild. One read transaction. Returns 0 or -1. */
int store_read_guild(store *st, const char *guild_id, const char *after_user, int limit,
                     int64_t *member_count, void (*row)(void *arg, const char *user_id),
                     void *arg);

typedef struct {
    const char *event_id, *event_type, *outcome, *reason, *ts, *guild_id;
    const char *items; /* "sword:1,arrow:20" or NULL */
    int32_t partition;
    int64_t offset;
    int type;      /* codec's event_type */
    int64_t ts_ms; /* ts as ms since the epoch; -1 when ts is not canonical */
} store_history_row;

/* A player's recorded events (the guild-side events a guild's partition records under
 * the player are left out), newest first, with offset < before_offset (-1: from the
 * newest), at most limit, each passed to row (pointers valid during the call only).
 * Returns 0 or -1. */
int store_read_history(store *st, const char *user_id, int64_t before_offset, int limit,
                       void (*row)(void *arg, const store_history_row *entry), void *arg);

/* A player's own recorded events (as store_read_history) with offset <= until_offset,
 * oldest first, each passed to row; a non-zero return stops the walk. One statement, so
 * one consistent read. Without with_ts_text, entry->ts is NULL whenever ts_ms is set
 * (cheaper). Returns 0 or -1. */
int store_walk_player_history(store *st, const char *user_id, int64_t until_offset,
                              int with_ts_text,
                              int (*row)(void *arg, const store_history_row *entry), void *arg);

/* ms since the epoch of a canonical ts ("2026-11-29T08:14:00.123Z"), else -1. */
int64_t store_ts_ms(const char *ts);
/* The canonical text of ms since the epoch into out (STORE_TS_SIZE bytes). */
void store_format_ts(int64_t ms, char *out);

/* Walks every existing player in user_id order with a digest of their whole state
 * (version, guild, inventory lines), calling row(arg, user_id, digest). Run inside a
 * read transaction for a consistent view. Returns 0 or -1. */
int store_player_digests(store *st, void (*row)(void *arg, const char *user_id, uint64_t digest),
                         void *arg);

/* Copies the whole store, as of one moment, into a new file dest_path (which must not
 * exist) with SQLite's online backup in a single step: one consistent read while the
 * fold keeps writing. Returns 0 or -1 (store_errmsg). */
int store_backup_to(store *st, const char *dest_path);

/* Table walks for analyst exports, in key order. Each row's strings are valid during the
 * callback only; a NULL column comes as NULL. A callback returning non-zero stops the
 * walk with -1 (its own error is the caller's to report). Return 0 or -1. Rows carry
 * named fields, so no caller depends on a statement's column order; a walk fills only
 * the fields its table has. */
typedef struct {
    const char *user_id, *item_type, *guild_id, *joined_ts, *created_ts, *updated_ts;
    int64_t quantity, version, partition;
} store_row;

/* inventory: user_id, item_type, quantity */
int store_walk_inventory(store *st, int (*row)(void *arg, const store_row *r), void *arg);
/* guild_members: guild_id, user_id, joined_ts */
int store_walk_guild_members(store *st, int (*row)(void *arg, const store_row *r), void *arg);
/* existing players: user_id, version, guild_id (NULL: none), partition, created_ts,
 * updated_ts */
int store_walk_players(store *st, int (*row)(void *arg, const store_row *r), void *arg);
/* events with first <= offset < end, in offset order; reason, items ("sword:1,...") and
 * guild_id may be NULL. */
typedef struct {
    int64_t partition, offset;
    const char *event_id, *event_type, *user_id, *ts, *outcome, *reason, *items, *guild_id;
} store_event_row;
int store_walk_events(store *st, int64_t first, int64_t end,
                      int (*row)(void *arg, const store_event_row *r), void *arg);

/* The newest dead letters, newest first, at most limit, each passed to row (reason valid
 * during the call only). Returns 0 or -1. */
int store_read_dead_letters(store *st, int limit,
                            void (*row)(void *arg, int64_t offset, const char *reason), void *arg);
/* Per item type over every inventory line: players holding it and the quantity held. A
 * scan of the whole table: never on the HTTP loop. Returns 0 or -1. */
int store_read_item_totals(store *st,
                           void (*row)(void *arg, const char *item_type, int64_t holders,
                                       int64_t quantity),
                           void *arg);

#endif
