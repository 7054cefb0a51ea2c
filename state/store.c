/* store: SQLite connections with their prepared statements. The SQL text of every
 * statement is in the table below; nothing is assembled at run time. */
#include "store.h"

#include "migrate.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    SQL_BEGIN,
    SQL_BEGIN_IMMEDIATE,
    SQL_COMMIT,
    SQL_ROLLBACK,
    SQL_CLAIM_EVENT_ID,
    SQL_GET_PLAYER,
    SQL_PUT_PLAYER,
    SQL_GET_QUANTITY,
    SQL_SET_QUANTITY,
    SQL_DELETE_QUANTITY,
    SQL_GET_GUILD_COUNT,
    SQL_SET_GUILD_COUNT,
    SQL_DELETE_GUILD,
    SQL_ADD_MEMBER,
    SQL_REMOVE_MEMBER,
    SQL_RECORD_EVENT,
    SQL_RECORD_DEAD_LETTER,
    SQL_SET_OFFSET,
    SQL_LOAD_OFFSETS,
    SQL_READ_LINES,
    SQL_READ_EVENT,
    SQL_READ_MEMBERS,
    SQL_READ_HISTORY,
    SQL_ALL_PLAYERS,
    SQL_ALL_LINES,
    SQL_WALK_INVENTORY,
    SQL_WALK_MEMBERS,
    SQL_WALK_PLAYERS,
    SQL_WALK_EVENTS,
    SQL_COUNT
};

static const char *const sql_text[SQL_COUNT] = {
    [SQL_BEGIN] = "BEGIN",
    [SQL_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [SQL_COMMIT] = "COMMIT",
    [SQL_ROLLBACK] = "ROLLBACK",
    [SQL_CLAIM_EVENT_ID] =
        "INSERT OR IGNORE INTO event_ids (event_id, user_id, partition, offset) "
        "VALUES (?1, ?4, ?2, ?3)",
    [SQL_GET_PLAYER] = "SELECT version, guild_id FROM players WHERE user_id = ?1",
    [SQL_PUT_PLAYER] =
        "INSERT INTO players (user_id, version, guild_id, partition, updated_ts, created_ts) "
        "VALUES (?1, ?2, ?3, ?4, ?5, ?5) ON CONFLICT (user_id) DO UPDATE SET "
        "version = excluded.version, guild_id = excluded.guild_id, "
        "partition = excluded.partition, updated_ts = excluded.updated_ts",
    [SQL_GET_QUANTITY] = "SELECT quantity FROM inventory WHERE user_id = ?1 AND item_type = ?2",
    [SQL_SET_QUANTITY] = "INSERT INTO inventory (user_id, item_type, quantity) VALUES (?1, ?2, ?3) "
                         "ON CONFLICT (user_id, item_type) DO UPDATE SET quantity = excluded.quantity",
    [SQL_DELETE_QUANTITY] = "DELETE FROM inventory WHERE user_id = ?1 AND item_type = ?2",
    [SQL_GET_GUILD_COUNT] = "SELECT member_count FROM guilds WHERE guild_id = ?1",
    [SQL_SET_GUILD_COUNT] = "INSERT INTO guilds (guild_id, member_count) VALUES (?1, ?2) "
                            "ON CONFLICT (guild_id) DO UPDATE SET member_count = excluded.member_count",
    [SQL_DELETE_GUILD] = "DELETE FROM guilds WHERE guild_id = ?1",
    [SQL_ADD_MEMBER] = "INSERT INTO guild_members (guild_id, user_id, joined_ts) VALUES (?1, ?2, ?3)",
    [SQL_REMOVE_MEMBER] = "DELETE FROM guild_members WHERE guild_id = ?1 AND user_id = ?2",
    [SQL_RECORD_EVENT] =
        "INSERT INTO events (partition, offset, event_id, event_type, user_id, outcome, reason, "
        "ts, items, guild_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    [SQL_RECORD_DEAD_LETTER] =
        "INSERT INTO dead_letters (partition, offset, reason, msg_key, payload) "
        "VALUES (?1, ?2, ?3, ?4, ?5)",
    [SQL_SET_OFFSET] = "INSERT INTO offsets (partition, next_offset) VALUES (?1, ?2) "
                       "ON CONFLICT (partition) DO UPDATE SET next_offset = excluded.next_offset",
    [SQL_LOAD_OFFSETS] = "SELECT partition, next_offset FROM offsets ORDER BY partition",
    [SQL_READ_LINES] =
        "SELECT item_type, quantity FROM inventory WHERE user_id = ?1 ORDER BY item_type",
    [SQL_READ_EVENT] = "SELECT e.event_id, e.event_type, e.outcome, e.reason, e.partition, "
                       "e.offset FROM event_ids i JOIN events e "
                       "ON e.partition = i.partition AND e.offset = i.offset "
                       "WHERE i.event_id = ?1 AND (?2 IS NULL OR i.user_id = ?2) "
                       "ORDER BY i.partition, i.offset LIMIT 1",
    [SQL_READ_MEMBERS] = "SELECT user_id FROM guild_members WHERE guild_id = ?1 AND user_id > ?2 "
                         "ORDER BY user_id LIMIT ?3",
    [SQL_READ_HISTORY] = "SELECT event_id, event_type, outcome, reason, ts, items, guild_id, "
                         "partition, offset FROM events WHERE user_id = ?1 AND offset < ?2 "
                         "ORDER BY offset DESC LIMIT ?3",
    [SQL_ALL_PLAYERS] = "SELECT user_id, version, guild_id FROM players ORDER BY user_id",
    [SQL_ALL_LINES] = "SELECT user_id, item_type, quantity FROM inventory "
                      "ORDER BY user_id, item_type",
    [SQL_WALK_INVENTORY] = "SELECT user_id, item_type, quantity FROM inventory "
                           "ORDER BY user_id, item_type",
    [SQL_WALK_MEMBERS] = "SELECT guild_id, user_id, joined_ts FROM guild_members "
                         "ORDER BY guild_id, user_id",
    [SQL_WALK_PLAYERS] = "SELECT user_id, version, guild_id, partition, created_ts, updated_ts "
                         "FROM players ORDER BY user_id",
    [SQL_WALK_EVENTS] = "SELECT partition, offset, event_id, event_type, user_id, ts, outcome, "
                        "reason, items, guild_id FROM events "
                        "WHERE partition = ?1 AND offset >= ?2 AND offset < ?3 ORDER BY offset",
};

struct store {
    sqlite3 *db;
    store_role role;
    sqlite3_stmt *stmt[SQL_COUNT];
    char errmsg[512];
};

const char *store_errmsg(const store *st) { return st->errmsg; }

/* Records the connection's error with a word on what was being done; returns -1. */
static int fail_with(store *st, const char *what) {
    snprintf(st->errmsg, sizeof st->errmsg, "%s: %s", what, sqlite3_errmsg(st->db));
    return -1;
}

/* Resets and clears a statement so it can be bound afresh. */
static sqlite3_stmt *stmt_get(store *st, int which) {
    sqlite3_stmt *s = st->stmt[which];
    sqlite3_reset(s);
    sqlite3_clear_bindings(s);
    return s;
}

/* Steps a statement that returns no rows. */
static int exec_stmt(store *st, sqlite3_stmt *s, const char *what) {
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : fail_with(st, what);
}

static void bind_text_or_null(sqlite3_stmt *s, int index, const char *text) {
    if (text && text[0])
        sqlite3_bind_text(s, index, text, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(s, index);
}

static void copy_column_text(sqlite3_stmt *s, int col, char *dst, size_t dst_size) {
    const unsigned char *text = sqlite3_column_text(s, col);
    snprintf(dst, dst_size, "%s", text ? (const char *)text : "");
}

store *store_open(const char *path, store_role role, char *errstr, size_t errstr_size) {
    store *st = calloc(1, sizeof *st);
    char *sql_err = NULL;
    if (!st) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    st->role = role;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
    if (role == STORE_WRITER) flags |= SQLITE_OPEN_CREATE;
    if (sqlite3_open_v2(path, &st->db, flags, NULL) != SQLITE_OK) {
        snprintf(errstr, errstr_size, "opening %s: %s", path,
                 st->db ? sqlite3_errmsg(st->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(st->db, 5000);
    /* WAL lets readers run beside the writer; NORMAL syncs at checkpoints only, which
     * keeps commits cheap and is still durable against process crashes (the offsets
     * commit with the state, so anything lost to a power cut is re-read from Kafka). */
    const char *pragmas = role == STORE_WRITER
                              ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                                "PRAGMA cache_size=-32000; PRAGMA temp_store=MEMORY;"
                              : "PRAGMA cache_size=-8000; PRAGMA query_only=1;";
    if (sqlite3_exec(st->db, pragmas, NULL, NULL, &sql_err) != SQLITE_OK) {
        snprintf(errstr, errstr_size, "configuring %s: %s", path, sql_err);
        goto fail;
    }
    if (role == STORE_WRITER) {
        if (migrate_apply(st->db, NULL, NULL, errstr, errstr_size)) goto fail;
    } else {
        sqlite3_stmt *v = NULL;
        int version = -1;
        if (sqlite3_prepare_v2(st->db, "PRAGMA user_version", -1, &v, NULL) == SQLITE_OK &&
            sqlite3_step(v) == SQLITE_ROW)
            version = sqlite3_column_int(v, 0);
        sqlite3_finalize(v);
        if (version != migrate_latest_version()) {
            snprintf(errstr, errstr_size, "%s has schema version %d, expected %d (run migrate)",
                     path, version, migrate_latest_version());
            goto fail;
        }
    }
    for (int i = 0; i < SQL_COUNT; i++) {
        if (sqlite3_prepare_v3(st->db, sql_text[i], -1, SQLITE_PREPARE_PERSISTENT, &st->stmt[i],
                               NULL) != SQLITE_OK) {
            snprintf(errstr, errstr_size, "preparing statement %d: %s", i,
                     sqlite3_errmsg(st->db));
            goto fail;
        }
    }
    return st;
fail:
    sqlite3_free(sql_err);
    store_close(st);
    return NULL;
}

void store_close(store *st) {
    if (!st) return;
    for (int i = 0; i < SQL_COUNT; i++) sqlite3_finalize(st->stmt[i]);
    sqlite3_close(st->db);
    free(st);
}

int store_begin(store *st) {
    int which = st->role == STORE_WRITER ? SQL_BEGIN_IMMEDIATE : SQL_BEGIN;
    return exec_stmt(st, stmt_get(st, which), "begin");
}

int store_commit(store *st) { return exec_stmt(st, stmt_get(st, SQL_COMMIT), "commit"); }

void store_rollback(store *st) {
    if (!sqlite3_get_autocommit(st->db)) exec_stmt(st, stmt_get(st, SQL_ROLLBACK), "rollback");
}

int store_claim_event_id(store *st, const char *event_id, const char *user_id, int32_t partition,
                         int64_t offset) {
    sqlite3_stmt *s = stmt_get(st, SQL_CLAIM_EVENT_ID);
    sqlite3_bind_text(s, 1, event_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, user_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, partition);
    sqlite3_bind_int64(s, 3, offset);
    if (exec_stmt(st, s, "claiming event id")) return -1;
    return sqlite3_changes(st->db) == 1 ? 1 : 0;
}

int store_get_player(store *st, const char *user_id, store_player *player) {
    sqlite3_stmt *s = stmt_get(st, SQL_GET_PLAYER);
    sqlite3_bind_text(s, 1, user_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        player->version = sqlite3_column_int64(s, 0);
        copy_column_text(s, 1, player->guild_id, sizeof player->guild_id);
        sqlite3_reset(s);
        return 1;
    }
    sqlite3_reset(s);
    if (rc == SQLITE_DONE) {
        memset(player, 0, sizeof *player);
        return 0;
    }
    return fail_with(st, "reading player");
}

int store_put_player(store *st, const char *user_id, const store_player *player,
                     int32_t partition, const char *ts) {
    sqlite3_stmt *s = stmt_get(st, SQL_PUT_PLAYER);
    sqlite3_bind_text(s, 1, user_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, player->version);
    bind_text_or_null(s, 3, player->guild_id);
    sqlite3_bind_int(s, 4, partition);
    sqlite3_bind_text(s, 5, ts, -1, SQLITE_STATIC);
    return exec_stmt(st, s, "writing player");
}

int store_get_quantity(store *st, const char *user_id, const char *item_type, int64_t *quantity) {
    sqlite3_stmt *s = stmt_get(st, SQL_GET_QUANTITY);
    sqlite3_bind_text(s, 1, user_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, item_type, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    *quantity = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? 0 : fail_with(st, "reading quantity");
}

int store_set_quantity(store *st, const char *user_id, const char *item_type, int64_t quantity) {
    sqlite3_stmt *s = stmt_get(st, quantity > 0 ? SQL_SET_QUANTITY : SQL_DELETE_QUANTITY);
    sqlite3_bind_text(s, 1, user_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, item_type, -1, SQLITE_STATIC);
    if (quantity > 0) sqlite3_bind_int64(s, 3, quantity);
    return exec_stmt(st, s, "writing quantity");
}

int store_get_guild_count(store *st, const char *guild_id, int64_t *member_count) {
    sqlite3_stmt *s = stmt_get(st, SQL_GET_GUILD_COUNT);
    sqlite3_bind_text(s, 1, guild_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    *member_count = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? 0 : fail_with(st, "reading guild");
}

/* Stores a guild's member count; a guild with no members has no row. */
static int set_guild_count(store *st, const char *guild_id, int64_t member_count) {
    sqlite3_stmt *s = stmt_get(st, member_count > 0 ? SQL_SET_GUILD_COUNT : SQL_DELETE_GUILD);
    sqlite3_bind_text(s, 1, guild_id, -1, SQLITE_STATIC);
    if (member_count > 0) sqlite3_bind_int64(s, 2, member_count);
    return exec_stmt(st, s, "writing guild");
}

int store_add_member(store *st, const char *guild_id, const char *user_id, const char *ts,
                     int64_t new_member_count) {
    sqlite3_stmt *s = stmt_get(st, SQL_ADD_MEMBER);
    sqlite3_bind_text(s, 1, guild_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, user_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, ts, -1, SQLITE_STATIC);
    if (exec_stmt(st, s, "adding guild member")) return -1;
    return set_guild_count(st, guild_id, new_member_count);
}

int store_remove_member(store *st, const char *guild_id, const char *user_id,
                        int64_t new_member_count) {
    sqlite3_stmt *s = stmt_get(st, SQL_REMOVE_MEMBER);
    sqlite3_bind_text(s, 1, guild_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, user_id, -1, SQLITE_STATIC);
    if (exec_stmt(st, s, "removing guild member")) return -1;
    return set_guild_count(st, guild_id, new_member_count);
}

int store_record_event(store *st, const store_event_record *rec) {
    sqlite3_stmt *s = stmt_get(st, SQL_RECORD_EVENT);
    sqlite3_bind_int(s, 1, rec->partition);
    sqlite3_bind_int64(s, 2, rec->offset);
    sqlite3_bind_text(s, 3, rec->event_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, rec->event_type, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 5, rec->user_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 6, rec->outcome, -1, SQLITE_STATIC);
    bind_text_or_null(s, 7, rec->reason);
    sqlite3_bind_text(s, 8, rec->ts, -1, SQLITE_STATIC);
    bind_text_or_null(s, 9, rec->items_json);
    bind_text_or_null(s, 10, rec->guild_id);
    return exec_stmt(st, s, "recording event outcome");
}

int store_record_dead_letter(store *st, int32_t partition, int64_t offset, const char *reason,
                             const void *key, size_t key_len, const void *payload,
                             size_t payload_len) {
    sqlite3_stmt *s = stmt_get(st, SQL_RECORD_DEAD_LETTER);
    sqlite3_bind_int(s, 1, partition);
    sqlite3_bind_int64(s, 2, offset);
    sqlite3_bind_text(s, 3, reason, -1, SQLITE_STATIC);
    if (key)
        sqlite3_bind_blob(s, 4, key, (int)key_len, SQLITE_STATIC);
    if (payload)
        sqlite3_bind_blob(s, 5, payload, (int)payload_len, SQLITE_STATIC);
    return exec_stmt(st, s, "recording dead letter");
}

int store_set_offset(store *st, int32_t partition, int64_t next_offset) {
    sqlite3_stmt *s = stmt_get(st, SQL_SET_OFFSET);
    sqlite3_bind_int(s, 1, partition);
    sqlite3_bind_int64(s, 2, next_offset);
    return exec_stmt(st, s, "storing offset");
}

int store_load_offsets(store *st, store_offset *offsets, size_t max, size_t *count) {
    sqlite3_stmt *s = stmt_get(st, SQL_LOAD_OFFSETS);
    int rc;
    *count = 0;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (*count < max) {
            offsets[*count].partition = sqlite3_column_int(s, 0);
            offsets[*count].next_offset = sqlite3_column_int64(s, 1);
            (*count)++;
        }
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : fail_with(st, "reading offsets");
}

void store_inventory_clear(store_inventory *inv) {
    free(inv->lines);
    memset(inv, 0, sizeof *inv);
}

/* Appends the player's lines to inv->lines. */
static int read_lines(store *st, const char *user_id, store_inventory *inv) {
    sqlite3_stmt *s = stmt_get(st, SQL_READ_LINES);
    size_t capacity = 0;
    int rc;
    sqlite3_bind_text(s, 1, user_id, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (inv->line_count == capacity) {
            size_t grown = capacity ? capacity * 2 : 16;
            store_line *lines = realloc(inv->lines, grown * sizeof *lines);
            if (!lines) {
                sqlite3_reset(s);
                snprintf(st->errmsg, sizeof st->errmsg, "out of memory reading inventory");
                return -1;
            }
            inv->lines = lines;
            capacity = grown;
        }
        store_line *line = &inv->lines[inv->line_count++];
        copy_column_text(s, 0, line->item_type, sizeof line->item_type);
        line->quantity = sqlite3_column_int64(s, 1);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : fail_with(st, "reading inventory");
}

int store_read_inventory(store *st, const char *user_id, store_inventory *inv) {
    memset(inv, 0, sizeof *inv);
    if (store_begin(st)) return -1;
    int found = store_get_player(st, user_id, &inv->player);
    if (found < 0) goto fail;
    inv->found = found;
    if (found && read_lines(st, user_id, inv)) goto fail;
    if (store_load_offsets(st, inv->offsets, STORE_MAX_PARTITIONS, &inv->offset_count)) goto fail;
    if (store_commit(st)) goto fail;
    return 0;
fail:
    store_rollback(st);
    store_inventory_clear(inv);
    return -1;
}

int store_read_event(store *st, const char *event_id, const char *user_id,
                     store_event_outcome *out) {
    sqlite3_stmt *s = stmt_get(st, SQL_READ_EVENT);
    sqlite3_bind_text(s, 1, event_id, -1, SQLITE_STATIC);
    bind_text_or_null(s, 2, user_id);
    int rc = sqlite3_step(s);
    if (rc == SQLITE_ROW) {
        copy_column_text(s, 0, out->event_id, sizeof out->event_id);
        copy_column_text(s, 1, out->event_type, sizeof out->event_type);
        copy_column_text(s, 2, out->outcome, sizeof out->outcome);
        copy_column_text(s, 3, out->reason, sizeof out->reason);
        out->partition = sqlite3_column_int(s, 4);
        out->offset = sqlite3_column_int64(s, 5);
    }
    sqlite3_reset(s);
    if (rc == SQLITE_ROW) return 1;
    return rc == SQLITE_DONE ? 0 : fail_with(st, "reading event");
}

int store_read_guild(store *st, const char *guild_id, const char *after_user, int limit,
                     int64_t *member_count, void (*row)(void *arg, const char *user_id),
                     void *arg) {
    int rc;
    if (store_begin(st)) return -1;
    if (store_get_guild_count(st, guild_id, member_count)) goto fail;
    sqlite3_stmt *s = stmt_get(st, SQL_READ_MEMBERS);
    sqlite3_bind_text(s, 1, guild_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, after_user, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 3, limit);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) row(arg, (const char *)sqlite3_column_text(s, 0));
    sqlite3_reset(s);
    if (rc != SQLITE_DONE) {
        fail_with(st, "reading guild members");
        goto fail;
    }
    return store_commit(st);
fail:
    store_rollback(st);
    return -1;
}

int store_read_history(store *st, const char *user_id, int64_t before_offset, int limit,
                       void (*row)(void *arg, const store_history_row *entry), void *arg) {
    sqlite3_stmt *s = stmt_get(st, SQL_READ_HISTORY);
    int rc;
    sqlite3_bind_text(s, 1, user_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 2, before_offset < 0 ? INT64_MAX : before_offset);
    sqlite3_bind_int(s, 3, limit);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        store_history_row entry = {
            .event_id = (const char *)sqlite3_column_text(s, 0),
            .event_type = (const char *)sqlite3_column_text(s, 1),
            .outcome = (const char *)sqlite3_column_text(s, 2),
            .reason = (const char *)sqlite3_column_text(s, 3),
            .ts = (const char *)sqlite3_column_text(s, 4),
            .items_json = (const char *)sqlite3_column_text(s, 5),
            .guild_id = (const char *)sqlite3_column_text(s, 6),
            .partition = sqlite3_column_int(s, 7),
            .offset = sqlite3_column_int64(s, 8),
        };
        row(arg, &entry);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : fail_with(st, "reading history");
}

/* FNV-1a over bytes, continuing from hash. */
static uint64_t fnv1a(uint64_t hash, const void *data, size_t len) {
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++) {
        hash ^= p[i];
        hash *= 0x100000001b3ULL;
    }
    return hash;
}

static uint64_t fnv1a_text(uint64_t hash, const char *text) {
    return fnv1a(hash, text ? text : "", (text ? strlen(text) : 0) + 1);
}

int store_player_digests(store *st, void (*row)(void *arg, const char *user_id, uint64_t digest),
                         void *arg) {
    /* Two ordered scans merged: players, and inventory lines grouped by player. */
    sqlite3_stmt *players = stmt_get(st, SQL_ALL_PLAYERS);
    sqlite3_stmt *lines = stmt_get(st, SQL_ALL_LINES);
    int prc, lrc = sqlite3_step(lines);
    while ((prc = sqlite3_step(players)) == SQLITE_ROW) {
        const char *user_id = (const char *)sqlite3_column_text(players, 0);
        int64_t version = sqlite3_column_int64(players, 1);
        uint64_t digest = fnv1a(0xcbf29ce484222325ULL, &version, sizeof version);
        digest = fnv1a_text(digest, (const char *)sqlite3_column_text(players, 2));
        while (lrc == SQLITE_ROW &&
               strcmp((const char *)sqlite3_column_text(lines, 0), user_id) < 0)
            lrc = sqlite3_step(lines); /* lines of a player with no row: skipped */
        while (lrc == SQLITE_ROW &&
               strcmp((const char *)sqlite3_column_text(lines, 0), user_id) == 0) {
            int64_t quantity = sqlite3_column_int64(lines, 2);
            digest = fnv1a_text(digest, (const char *)sqlite3_column_text(lines, 1));
            digest = fnv1a(digest, &quantity, sizeof quantity);
            lrc = sqlite3_step(lines);
        }
        row(arg, user_id, digest);
    }
    sqlite3_reset(players);
    sqlite3_reset(lines);
    if (prc != SQLITE_DONE || (lrc != SQLITE_ROW && lrc != SQLITE_DONE))
        return fail_with(st, "computing player digests");
    return 0;
}

int store_backup_to(store *st, const char *dest_path) {
    sqlite3 *dest = NULL;
    if (sqlite3_open_v2(dest_path, &dest, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL) !=
        SQLITE_OK) {
        snprintf(st->errmsg, sizeof st->errmsg, "creating %s: %s", dest_path,
                 dest ? sqlite3_errmsg(dest) : "out of memory");
        sqlite3_close(dest);
        return -1;
    }
    sqlite3_backup *backup = sqlite3_backup_init(dest, "main", st->db, "main");
    int rc = backup ? sqlite3_backup_step(backup, -1) : SQLITE_ERROR;
    if (backup) sqlite3_backup_finish(backup);
    if (rc != SQLITE_DONE) {
        snprintf(st->errmsg, sizeof st->errmsg, "backup to %s: %s", dest_path,
                 sqlite3_errmsg(dest));
        sqlite3_close(dest);
        return -1;
    }
    /* The copy is a plain rollback-journal file: one self-contained state.db. */
    sqlite3_exec(dest, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL);
    sqlite3_close(dest);
    return 0;
}

/* Steps s, handing each row to the caller as a store_row of its columns. */
static int walk(store *st, sqlite3_stmt *s, int (*row)(void *arg, const store_row *r),
                void *arg, const char *what) {
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        store_row r;
        memset(&r, 0, sizeof r);
        int text_i = 0, number_i = 0;
        for (int c = 0; c < sqlite3_column_count(s) && text_i < 6 && number_i < 6; c++) {
            if (sqlite3_column_type(s, c) == SQLITE_INTEGER)
                r.number[number_i++] = sqlite3_column_int64(s, c);
            else
                r.text[text_i++] = (const char *)sqlite3_column_text(s, c);
        }
        if (row(arg, &r)) {
            sqlite3_reset(s);
            snprintf(st->errmsg, sizeof st->errmsg, "%s stopped by its consumer", what);
            return -1;
        }
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : fail_with(st, what);
}

int store_walk_inventory(store *st, int (*row)(void *arg, const store_row *r), void *arg) {
    return walk(st, stmt_get(st, SQL_WALK_INVENTORY), row, arg, "walking inventory");
}

int store_walk_guild_members(store *st, int (*row)(void *arg, const store_row *r), void *arg) {
    return walk(st, stmt_get(st, SQL_WALK_MEMBERS), row, arg, "walking guild members");
}

int store_walk_players(store *st, int (*row)(void *arg, const store_row *r), void *arg) {
    /* Columns are typed explicitly here: guild_id and created_ts may be NULL, which
     * the generic walk would not place. */
    sqlite3_stmt *s = stmt_get(st, SQL_WALK_PLAYERS);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        store_row r;
        memset(&r, 0, sizeof r);
        r.text[0] = (const char *)sqlite3_column_text(s, 0);
        r.number[0] = sqlite3_column_int64(s, 1);
        r.text[1] = (const char *)sqlite3_column_text(s, 2);
        r.number[1] = sqlite3_column_int64(s, 3);
        r.text[2] = (const char *)sqlite3_column_text(s, 4);
        r.text[3] = (const char *)sqlite3_column_text(s, 5);
        if (row(arg, &r)) {
            sqlite3_reset(s);
            snprintf(st->errmsg, sizeof st->errmsg, "walking players stopped by its consumer");
            return -1;
        }
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : fail_with(st, "walking players");
}

int store_walk_events(store *st, int32_t partition, int64_t first, int64_t end,
                      int (*row)(void *arg, const store_event_row *r), void *arg) {
    sqlite3_stmt *s = stmt_get(st, SQL_WALK_EVENTS);
    int rc;
    sqlite3_bind_int(s, 1, partition);
    sqlite3_bind_int64(s, 2, first);
    sqlite3_bind_int64(s, 3, end);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        store_event_row r;
        memset(&r, 0, sizeof r);
        r.base.number[0] = sqlite3_column_int64(s, 0);
        r.base.number[1] = sqlite3_column_int64(s, 1);
        for (int c = 0; c < 6; c++) r.base.text[c] = (const char *)sqlite3_column_text(s, 2 + c);
        r.items_json = (const char *)sqlite3_column_text(s, 8);
        r.guild_id = (const char *)sqlite3_column_text(s, 9);
        if (row(arg, &r)) {
            sqlite3_reset(s);
            snprintf(st->errmsg, sizeof st->errmsg, "walking events stopped by its consumer");
            return -1;
        }
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : fail_with(st, "walking events");
}
