/* store: one partition's SQLite file with its prepared statements. The SQL text of
 * every statement is in the table below; nothing is assembled at run time. History is
 * stored compactly, many events to a row (migrations/0006, state/history_block): ids
 * that are UUIDs as 16 bytes, canonical times as integer ms; the conversions both ways
 * live here, so no caller sees them. */
#define _GNU_SOURCE /* timegm */
#include "state/store.h"

#include "state/codec.h"
#include "state/history_block.h"
#include "state/migrate.h"

#include <dirent.h>
#include <errno.h>
#include <sched.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <time.h>

#define TEXT_OF(x) #x
#define NUMBER_TEXT(x) TEXT_OF(x)
#define CACHE_KIB_TEXT NUMBER_TEXT(STORE_DEFAULT_CACHE_KIB)

enum {
    SQL_BEGIN,
    SQL_BEGIN_IMMEDIATE,
    SQL_COMMIT,
    SQL_ROLLBACK,
    SQL_MAX_PLAYER_KEY,
    SQL_GET_PLAYER,
    SQL_GET_LINES,
    SQL_PUT_PLAYER,
    SQL_SET_LINE,
    SQL_DELETE_LINE,
    SQL_GET_GUILD_COUNT,
    SQL_SET_GUILD_COUNT,
    SQL_DELETE_GUILD,
    SQL_ADD_MEMBER,
    SQL_REMOVE_MEMBER,
    SQL_INDEX_OF_KEY,
    SQL_INDEX_OF_USER,
    SQL_APPEND_BLOCK,
    SQL_BLOCK_AT,
    SQL_BLOCKS_FROM,
    SQL_USER_OF_KEY,
    SQL_APPEND_INDEX_ROW,
    SQL_RECORD_DEAD_LETTER,
    SQL_SET_OFFSET,
    SQL_GET_OFFSET,
    SQL_READ_MEMBERS,
    SQL_ALL_PLAYERS,
    SQL_ALL_LINES,
    SQL_WALK_MEMBERS,
    SQL_WALK_PLAYERS,
    SQL_IS_MEMBER,
    SQL_OUTBOX_ADD,
    SQL_OUTBOX_DELETE,
    SQL_OUTBOX_WALK,
    SQL_RECENT_DEAD_LETTERS,
    SQL_ITEM_TOTALS,
    SQL_GET_TOPIC,
    SQL_SET_TOPIC,
    SQL_READ_INVENTORY,
    SQL_COUNT
};

static const char *const sql_text[SQL_COUNT] = {
    [SQL_BEGIN] = "BEGIN",
    [SQL_BEGIN_IMMEDIATE] = "BEGIN IMMEDIATE",
    [SQL_COMMIT] = "COMMIT",
    [SQL_ROLLBACK] = "ROLLBACK",
    [SQL_MAX_PLAYER_KEY] = "SELECT coalesce(max(player_key), 0) FROM players",
    [SQL_GET_PLAYER] = "SELECT player_key, version, guild_id, created_ts, updated_ts, "
                       "pending_guild_id, pending_cause FROM players WHERE user_id = ?1",
    [SQL_GET_LINES] =
        "SELECT item_type, quantity FROM inventory WHERE player_key = ?1 ORDER BY item_type",
    [SQL_PUT_PLAYER] =
        "INSERT INTO players (player_key, user_id, version, guild_id, created_ts, updated_ts, "
        "pending_guild_id, pending_cause) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) "
        "ON CONFLICT (player_key) DO UPDATE SET "
        "version = excluded.version, guild_id = excluded.guild_id, "
        "created_ts = excluded.created_ts, updated_ts = excluded.updated_ts, "
        "pending_guild_id = excluded.pending_guild_id, pending_cause = excluded.pending_cause",
    [SQL_SET_LINE] = "INSERT INTO inventory (player_key, item_type, quantity) VALUES (?1, ?2, ?3) "
                     "ON CONFLICT (player_key, item_type) DO UPDATE SET quantity = excluded.quantity",
    [SQL_DELETE_LINE] = "DELETE FROM inventory WHERE player_key = ?1 AND item_type = ?2",
    [SQL_GET_GUILD_COUNT] = "SELECT member_count FROM guilds WHERE guild_id = ?1",
    [SQL_SET_GUILD_COUNT] = "INSERT INTO guilds (guild_id, member_count) VALUES (?1, ?2) "
                            "ON CONFLICT (guild_id) DO UPDATE SET member_count = excluded.member_count",
    [SQL_DELETE_GUILD] = "DELETE FROM guilds WHERE guild_id = ?1",
    [SQL_ADD_MEMBER] = "INSERT INTO guild_members (guild_id, user_id, joined_ts) VALUES (?1, ?2, ?3)",
    [SQL_REMOVE_MEMBER] = "DELETE FROM guild_members WHERE guild_id = ?1 AND user_id = ?2",
    /* A player's index rows, oldest first: rows never overlap, so their pairs in this
     * order are the player's events in offset order. */
    [SQL_INDEX_OF_KEY] = "SELECT first_offset, ids FROM player_index WHERE player_key = ?1 "
                         "ORDER BY first_offset",
    [SQL_INDEX_OF_USER] = "SELECT i.first_offset, i.ids FROM players p JOIN player_index i "
                          "ON i.player_key = p.player_key WHERE p.user_id = ?1 "
                          "ORDER BY i.first_offset",
    [SQL_APPEND_BLOCK] =
        "INSERT INTO history_blocks (last_offset, first_offset, records) VALUES (?1, ?2, ?3)",
    /* The block holding offset ?1, if any: the first that ends at or after it. */
    [SQL_BLOCK_AT] = "SELECT first_offset, records, last_offset FROM history_blocks "
                     "WHERE last_offset >= ?1 ORDER BY last_offset LIMIT 1",
    [SQL_BLOCKS_FROM] = "SELECT first_offset, records, last_offset FROM history_blocks "
                        "WHERE last_offset >= ?1 AND first_offset < ?2 ORDER BY last_offset",
    [SQL_USER_OF_KEY] = "SELECT user_id FROM players WHERE player_key = ?1",
    [SQL_APPEND_INDEX_ROW] =
        "INSERT INTO player_index (player_key, first_offset, ids) VALUES (?1, ?2, ?3)",
    [SQL_RECORD_DEAD_LETTER] =
        "INSERT INTO dead_letters (offset, reason, msg_key, payload) VALUES (?1, ?2, ?3, ?4)",
    [SQL_SET_OFFSET] = "INSERT INTO offsets (partition, next_offset) VALUES (?1, ?2) "
                       "ON CONFLICT (partition) DO UPDATE SET next_offset = excluded.next_offset",
    [SQL_GET_OFFSET] = "SELECT next_offset FROM offsets WHERE partition = ?1",
    [SQL_READ_MEMBERS] = "SELECT user_id FROM guild_members WHERE guild_id = ?1 AND user_id > ?2 "
                         "ORDER BY user_id LIMIT ?3",
    [SQL_ALL_PLAYERS] = "SELECT user_id, version, guild_id, player_key, pending_guild_id, "
                        "pending_cause FROM players WHERE version > 0 OR pending_guild_id "
                        "IS NOT NULL ORDER BY user_id",
    [SQL_ALL_LINES] = "SELECT p.user_id, i.item_type, i.quantity FROM inventory i "
                      "JOIN players p ON p.player_key = i.player_key "
                      "ORDER BY p.user_id, i.item_type",
    [SQL_WALK_MEMBERS] = "SELECT guild_id, user_id, joined_ts FROM guild_members "
                         "ORDER BY guild_id, user_id",
    [SQL_WALK_PLAYERS] = "SELECT user_id, version, guild_id, created_ts, updated_ts "
                         "FROM players WHERE version > 0 ORDER BY user_id",
    [SQL_IS_MEMBER] = "SELECT 1 FROM guild_members WHERE guild_id = ?1 AND user_id = ?2",
    [SQL_OUTBOX_ADD] = "INSERT INTO outbox (msg_key, event_id, user_id, payload) VALUES (?1, ?2, ?3, ?4)",
    [SQL_OUTBOX_DELETE] = "DELETE FROM outbox WHERE seq BETWEEN ?1 AND ?2",
    [SQL_OUTBOX_WALK] = "SELECT seq, msg_key, event_id, user_id, payload FROM outbox WHERE seq > ?1 "
                        "ORDER BY seq LIMIT ?2",
    [SQL_GET_TOPIC] = "SELECT value FROM meta WHERE key = 'topic'",
    [SQL_SET_TOPIC] = "INSERT INTO meta (key, value) VALUES ('topic', ?1)",
    [SQL_RECENT_DEAD_LETTERS] = "SELECT offset, reason FROM dead_letters ORDER BY offset DESC LIMIT ?1",
    [SQL_ITEM_TOTALS] = "SELECT item_type, count(*), sum(quantity) FROM inventory GROUP BY item_type",
    /* GET /inventory in one statement, so one implicit read transaction covers the
     * player, the lines and the offset without BEGIN/COMMIT: a row per line (one row
     * with NULL item_type when the player holds nothing), none when the player is not in
     * the store. */
    [SQL_READ_INVENTORY] =
        "SELECT p.player_key, p.version, p.guild_id, p.created_ts, p.updated_ts, "
        "p.pending_guild_id, p.pending_cause, "
        "(SELECT next_offset FROM offsets WHERE partition = ?2), i.item_type, i.quantity "
        "FROM players p LEFT JOIN inventory i ON i.player_key = p.player_key "
        "WHERE p.user_id = ?1 ORDER BY i.item_type",
};

struct store {
    sqlite3 *db;
    store_role role;
    int32_t partition;
    sqlite3_stmt *stmt[SQL_COUNT];
    int wal_frames; /* the writer's WAL length after its last commit (wal_hook) */
    history_block block; /* the writer's block being packed (store_append_history) */
    char path[4096];     /* the database file's */
    char errmsg[512];
};

const char *store_errmsg(const store *st) { return st->errmsg; }
int32_t store_partition(const store *st) { return st->partition; }

int store_path(const char *dir, int32_t partition, char *buf, size_t buf_size) {
    int n = snprintf(buf, buf_size, "%s/p%d.db", dir, (int)partition);
    return n > 0 && (size_t)n < buf_size ? 0 : -1;
}

static int compare_partitions(const void *a, const void *b) {
    int32_t x = *(const int32_t *)a, y = *(const int32_t *)b;
    return (x > y) - (x < y);
}

int store_list_partitions(const char *dir, int32_t *partitions, size_t max, size_t *count,
                          char *errstr, size_t errstr_size) {
    *count = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return 0;
        snprintf(errstr, errstr_size, "reading %s: %s", dir, strerror(errno));
        return -1;
    }
    struct dirent *entry;
    while ((entry = readdir(d)) != NULL) {
        int partition, used = 0;
        if (sscanf(entry->d_name, "p%d.db%n", &partition, &used) == 1 &&
            entry->d_name[used] == '\0' && partition >= 0 && partition < STORE_MAX_PARTITIONS &&
            *count < max)
            partitions[(*count)++] = partition;
    }
    closedir(d);
    qsort(partitions, *count, sizeof *partitions, compare_partitions);
    return 0;
}

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
    /* memcpy rather than snprintf: reads copy several columns per request. */
    size_t len = text ? (size_t)sqlite3_column_bytes(s, col) : 0;
    if (len >= dst_size) len = dst_size - 1;
    if (len) memcpy(dst, text, len);
    dst[len] = '\0';
}

/* ---------------------------------------------------------------- compact columns */

/* A lowercase hex digit's value plus one; 0 for any other character. A lookup, because
 * comparing ranges mispredicts on random digits (perf: uuid_to_bytes at 3 % of replay,
 * twice per event). */
static const unsigned char hex_digit_plus_one[256] = {
    ['0'] = 1, ['1'] = 2, ['2'] = 3, ['3'] = 4, ['4'] = 5, ['5'] = 6, ['6'] = 7, ['7'] = 8,
    ['8'] = 9, ['9'] = 10, ['a'] = 11, ['b'] = 12, ['c'] = 13, ['d'] = 14, ['e'] = 15, ['f'] = 16,
};

/* 1 and the 16 bytes when id is a lowercase 8-4-4-4-12 UUID (what lootlog generates),
 * else 0: such ids are kept as text. */
static int uuid_to_bytes(const char *id, unsigned char bytes[16]) {
    /* where each byte's two digits start */
    static const unsigned char at[16] = {0, 2, 4, 6, 9, 11, 14, 16, 19, 21, 24, 26, 28, 30, 32, 34};
    if (strnlen(id, 37) != 36 || id[8] != '-' || id[13] != '-' || id[18] != '-' || id[23] != '-')
        return 0;
    unsigned missing = 0;
    for (int n = 0; n < 16; n++) {
        unsigned hi = hex_digit_plus_one[(unsigned char)id[at[n]]];
        unsigned lo = hex_digit_plus_one[(unsigned char)id[at[n] + 1]];
        missing |= (hi == 0) | (lo == 0);
        bytes[n] = (unsigned char)((hi - 1) << 4 | (lo - 1));
    }
    return !missing;
}

static void bytes_to_uuid(const unsigned char bytes[16], char *out) {
    static const char digits[] = "0123456789abcdef";
    int n = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10) out[n++] = '-';
        out[n++] = digits[bytes[i] >> 4];
        out[n++] = digits[bytes[i] & 15];
    }
    out[n] = '\0';
}

/* Days from 1970-01-01 to y-m-d in the proleptic Gregorian calendar (the civil-date
 * arithmetic that timegm does, without its locking and normalising). */
static int64_t days_from_civil(int64_t y, int m, int d) {
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    int64_t year_of_era = y - era * 400;
    int64_t day_of_year = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    int64_t day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    return era * 146097 + day_of_era - 719468;
}

static int digits_at(const char *s, int count) {
    int v = 0;
    for (int i = 0; i < count; i++) v = v * 10 + (s[i] - '0');
    return v;
}

/* ms since the epoch when ts is exactly "YYYY-MM-DDTHH:MM:SS.mmmZ" and a real instant
 * (so that formatting it back gives the same text), else -1. */
static int64_t canonical_ts_ms(const char *ts) {
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    for (size_t i = 0; i < sizeof shape - 1; i++) {
        if (shape[i] == 'd' ? (ts[i] < '0' || ts[i] > '9') : ts[i] != shape[i]) return -1;
    }
    if (ts[sizeof shape - 1] != '\0') return -1;
    static const int month_days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int year = digits_at(ts, 4), month = digits_at(ts + 5, 2), day = digits_at(ts + 8, 2);
    int hour = digits_at(ts + 11, 2), minute = digits_at(ts + 14, 2), second = digits_at(ts + 17, 2);
    int leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    if (year < 1970 || month < 1 || month > 12 || day < 1 || day > month_days[month - 1] ||
        (month == 2 && day == 29 && !leap) || hour > 23 || minute > 59 || second > 59)
        return -1;
    int64_t seconds = days_from_civil(year, month, day) * 86400 + hour * 3600 + minute * 60 + second;
    return seconds * 1000 + digits_at(ts + 20, 3);
}

static const char *outcome_name(int outcome) {
    /* fold_outcome's values; dead letters have no history row */
    static const char *const names[] = {"applied", "rejected", "duplicate", "dead_lettered",
                                        "pending"};
    return outcome >= 0 && outcome < 5 ? names[outcome] : "unknown";
}

/* One history entry converted to text. */
typedef struct {
    char event_id[STORE_ID_SIZE];
    char ts[STORE_TS_SIZE];
    store_history_row row;
} history_text;

/* The entry's id as text, into out (STORE_ID_SIZE). */
static void entry_event_id(const history_entry *e, char *out) {
    if (e->id_is_uuid)
        bytes_to_uuid(e->id_uuid, out);
    else
        snprintf(out, STORE_ID_SIZE, "%s", e->id_text);
}

/* Fills out->row from e (its texts point into e's block). Without with_ts_text, row.ts is
 * NULL whenever ts_ms is set: a point-in-time fold needs only ts_ms, and formatting it
 * cost a fifth of the time. */
static void history_row_of(const store *st, const history_entry *e, int with_ts_text,
                           history_text *out) {
    entry_event_id(e, out->event_id);
    const char *ts = e->ts_text;
    if (e->ts_ms >= 0) {
        ts = NULL;
        if (with_ts_text) {
            store_format_ts(e->ts_ms, out->ts);
            ts = out->ts;
        }
    }
    const char *type_name = codec_type_name((event_type)e->event_type);
    out->row = (store_history_row){
        .type = e->event_type,
        .ts_ms = e->ts_ms,
        .event_id = out->event_id,
        .event_type = type_name ? type_name : "unknown",
        .outcome = outcome_name(e->outcome),
        .reason = e->reason,
        .ts = ts,
        .items = e->items,
        .guild_id = e->guild_id,
        .partition = st->partition,
        .offset = e->offset,
    };
}

/* ---------------------------------------------------------------- open / close */

/* Readers never sleep in a busy handler: a reader meets SQLITE_BUSY only while another
 * connection is in the middle of resetting the WAL, which takes microseconds, so it
 * yields the CPU and tries again a bounded number of times, then gives up. */
static int busy_retry_without_sleeping(void *arg, int attempts) {
    (void)arg;
    if (attempts >= 1000) return 0;
    sched_yield();
    return 1;
}

/* SQLite calls this after each commit with the WAL's length in frames (pages). */
static int note_wal_length(void *arg, sqlite3 *db, const char *schema, int frames) {
    (void)db;
    (void)schema;
    ((store *)arg)->wal_frames = frames;
    return SQLITE_OK;
}

/* The mark of an unfinished store: a file beside it, "<path>-unfinished", holding who
 * set it. A file, not a row: a crash can leave the database file torn (commits without
 * a journal on disk), and the mark must still be read, and read first. */
static int unfinished_mark_path(const char *path, char *buf, size_t size) {
    int n = snprintf(buf, size, "%s-unfinished", path);
    return n > 0 && (size_t)n < size ? 0 : -1;
}

/* A store marked unfinished (store_set_unfinished) by a writer that stopped before its
 * end may be torn or hold an offset its tables do not match: nobody may open it, to
 * serve it or to fold on. Returns 0, or -1 with errstr. */
static int refuse_unfinished(const char *path, char *errstr, size_t errstr_size) {
    char mark[4200], by[32] = "";
    if (unfinished_mark_path(path, mark, sizeof mark)) {
        snprintf(errstr, errstr_size, "%s: the path is too long", path);
        return -1;
    }
    FILE *f = fopen(mark, "r");
    if (!f) return 0;
    if (!fgets(by, sizeof by, f)) by[0] = '\0';
    fclose(f);
    size_t n = 0; /* a word of lowercase letters, as store_set_unfinished wrote it */
    while (by[n] >= 'a' && by[n] <= 'z') n++;
    by[n] = '\0';
    snprintf(errstr, errstr_size,
             "%s was left unfinished by a %s that stopped before its end: delete the folder "
             "and run it again", path, n ? by : "writer");
    return -1;
}

store *store_open(const char *path, int32_t partition, store_role role, char *errstr,
                  size_t errstr_size) {
    store *st = calloc(1, sizeof *st);
    char *sql_err = NULL;
    if (!st) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    st->role = role;
    st->partition = partition;
    if (refuse_unfinished(path, errstr, errstr_size)) goto fail;
    if (snprintf(st->path, sizeof st->path, "%s", path) >= (int)sizeof st->path) {
        snprintf(errstr, errstr_size, "%.200s...: the path is too long", path);
        goto fail;
    }
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX;
    if (role == STORE_WRITER) flags |= SQLITE_OPEN_CREATE;
    if (sqlite3_open_v2(path, &st->db, flags, NULL) != SQLITE_OK) {
        snprintf(errstr, errstr_size, "opening %s: %s", path,
                 st->db ? sqlite3_errmsg(st->db) : "out of memory");
        goto fail;
    }
    if (role == STORE_WRITER)
        sqlite3_busy_timeout(st->db, 5000); /* only another writer (a misuse) can block it */
    else
        sqlite3_busy_handler(st->db, busy_retry_without_sleeping, NULL);
    /* WAL lets readers run beside the writer; NORMAL syncs at checkpoints only, which
     * keeps commits cheap and is still durable against process crashes (the offset
     * commits with the state, so anything lost to a power cut is re-read from Kafka).
     * The writer never checkpoints in its commit: store_checkpoint runs elsewhere. */
    const char *pragmas = role == STORE_WRITER
                              ? "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL; "
                                "PRAGMA wal_autocheckpoint=0; PRAGMA cache_size=-" CACHE_KIB_TEXT "; "
                                "PRAGMA temp_store=MEMORY;"
                              : "PRAGMA cache_size=-" CACHE_KIB_TEXT "; PRAGMA query_only=1;";
    if (sqlite3_exec(st->db, pragmas, NULL, NULL, &sql_err) != SQLITE_OK) {
        snprintf(errstr, errstr_size, "configuring %s: %s", path, sql_err);
        goto fail;
    }
    if (role == STORE_WRITER) sqlite3_wal_hook(st->db, note_wal_length, st);
    if (role == STORE_WRITER) {
        if (migrate_apply(st->db, NULL, NULL, errstr, errstr_size)) {
            if (strstr(errstr, "old_layout_rows"))
                snprintf(errstr, errstr_size,
                         "%s holds state in the single-file layout of lootlog 0.1; rebuild it "
                         "into a folder of per-partition stores with `lootlog replay --db DIR`",
                         path);
            goto fail;
        }
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
    history_block_free(&st->block);
    free(st);
}

int store_begin(store *st) {
    int which = st->role == STORE_WRITER ? SQL_BEGIN_IMMEDIATE : SQL_BEGIN;
    return exec_stmt(st, stmt_get(st, which), "begin");
}

static int flush_block(store *st);

int store_commit(store *st) {
    if (flush_block(st)) return -1; /* the history block still being packed */
    return exec_stmt(st, stmt_get(st, SQL_COMMIT), "commit");
}

void store_rollback(store *st) {
    history_block_reset(&st->block);
    if (!sqlite3_get_autocommit(st->db)) exec_stmt(st, stmt_get(st, SQL_ROLLBACK), "rollback");
}

int store_checkpoint(store *st) {
    int rc = sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    return rc == SQLITE_OK || rc == SQLITE_BUSY ? 0 : fail_with(st, "checkpoint");
}

int store_reuse_wal(store *st) {
    if (st->wal_frames < STORE_WAL_REUSE_FRAMES) return 0;
    /* PASSIVE: copies what no reader still needs and waits on no one. Once everything is
     * copied, SQLite starts the next transaction at the WAL's beginning again. */
    int rc = sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_PASSIVE, NULL, NULL);
    if (rc != SQLITE_OK && rc != SQLITE_BUSY) return fail_with(st, "checkpoint");
    st->wal_frames = 0; /* asked again after the next commit, if it is still long */
    return 0;
}

/* Runs a journal_mode pragma and checks the mode it reports (SQLite answers with the
 * mode in force, and keeps the old one when it cannot switch). */
static int set_journal_mode(store *st, const char *mode) {
    char sql[64];
    snprintf(sql, sizeof sql, "PRAGMA journal_mode=%s", mode);
    sqlite3_stmt *s = NULL;
    int ok = sqlite3_prepare_v2(st->db, sql, -1, &s, NULL) == SQLITE_OK &&
             sqlite3_step(s) == SQLITE_ROW &&
             sqlite3_stricmp((const char *)sqlite3_column_text(s, 0), mode) == 0;
    sqlite3_finalize(s);
    if (ok) return 0;
    snprintf(st->errmsg, sizeof st->errmsg, "setting journal_mode=%s: %s", mode,
             sqlite3_errmsg(st->db));
    return -1;
}

int store_set_cache_kib(store *st, int kib) {
    char sql[48];
    snprintf(sql, sizeof sql, "PRAGMA cache_size=-%d", kib);
    if (sqlite3_exec(st->db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return fail_with(st, "setting cache_size");
    return 0;
}

int store_sync_later(store *st) {
    if (sqlite3_exec(st->db, "PRAGMA synchronous=OFF; PRAGMA locking_mode=EXCLUSIVE", NULL,
                     NULL, NULL) != SQLITE_OK)
        return fail_with(st, "setting synchronous=OFF");
    return set_journal_mode(st, "MEMORY");
}

int store_sync_to_disk(store *st) {
    /* At synchronous=FULL the commit that switches the file to WAL syncs the database
     * file, and with it every page written without a sync before; NORMAL locking lets
     * other connections in once this one is done. */
    if (sqlite3_exec(st->db, "PRAGMA synchronous=FULL; PRAGMA locking_mode=NORMAL", NULL, NULL,
                     NULL) != SQLITE_OK)
        return fail_with(st, "setting synchronous=FULL");
    if (set_journal_mode(st, "WAL")) return -1;
    /* (BUSY at once, without the busy handler, while another connection checkpoints:
     * the caller makes sure none does.) */
    int rc = sqlite3_wal_checkpoint_v2(st->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, NULL, NULL);
    if (rc != SQLITE_OK) return fail_with(st, "syncing to disk");
    return 0;
}

/* ---------------------------------------------------------------- fold calls */

int store_max_player_key(store *st, int64_t *max_key) {
    sqlite3_stmt *s = stmt_get(st, SQL_MAX_PLAYER_KEY);
    int rc = sqlite3_step(s);
    *max_key = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return rc == SQLITE_ROW ? 0 : fail_with(st, "reading player keys");
}

/* Reads user_id's row into *player. Returns 1 found, 0 not (player zeroed), -1. */
/* A player row's seven columns, first to last in the order of SQL_GET_PLAYER (and of
 * SQL_READ_INVENTORY's first seven). */
static void player_from_columns(sqlite3_stmt *s, store_player *player) {
    player->player_key = sqlite3_column_int64(s, 0);
    player->version = sqlite3_column_int64(s, 1);
    copy_column_text(s, 2, player->guild_id, sizeof player->guild_id);
    copy_column_text(s, 3, player->created_ts, sizeof player->created_ts);
    copy_column_text(s, 4, player->updated_ts, sizeof player->updated_ts);
    copy_column_text(s, 5, player->pending_guild_id, sizeof player->pending_guild_id);
    copy_column_text(s, 6, player->pending_cause, sizeof player->pending_cause);
}

static int get_player(store *st, const char *user_id, store_player *player) {
    sqlite3_stmt *s = stmt_get(st, SQL_GET_PLAYER);
    sqlite3_bind_text(s, 1, user_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    memset(player, 0, sizeof *player);
    if (rc == SQLITE_ROW) player_from_columns(s, player);
    sqlite3_reset(s);
    if (rc == SQLITE_ROW) return 1;
    return rc == SQLITE_DONE ? 0 : fail_with(st, "reading player");
}

/* Reads a player's lines into a malloc'ed array. Returns 0 or -1. */
static int get_lines(store *st, int64_t player_key, store_line **lines, size_t *line_count) {
    sqlite3_stmt *s = stmt_get(st, SQL_GET_LINES);
    size_t capacity = 0;
    int rc;
    *lines = NULL;
    *line_count = 0;
    sqlite3_bind_int64(s, 1, player_key);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (*line_count == capacity) {
            size_t grown = capacity ? capacity * 2 : 8;
            store_line *bigger = realloc(*lines, grown * sizeof *bigger);
            if (!bigger) {
                sqlite3_reset(s);
                snprintf(st->errmsg, sizeof st->errmsg, "out of memory reading inventory");
                return -1;
            }
            *lines = bigger;
            capacity = grown;
        }
        store_line *line = &(*lines)[(*line_count)++];
        copy_column_text(s, 0, line->item_type, sizeof line->item_type);
        line->quantity = sqlite3_column_int64(s, 1);
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : fail_with(st, "reading inventory");
}

int store_load_player(store *st, const char *user_id, store_player *player, store_line **lines,
                      size_t *line_count) {
    *lines = NULL;
    *line_count = 0;
    int found = get_player(st, user_id, player);
    if (found <= 0) return found;
    if (get_lines(st, player->player_key, lines, line_count)) {
        free(*lines);
        *lines = NULL;
        return -1;
    }
    return 1;
}

int store_put_player(store *st, const char *user_id, const store_player *player) {
    sqlite3_stmt *s = stmt_get(st, SQL_PUT_PLAYER);
    sqlite3_bind_int64(s, 1, player->player_key);
    sqlite3_bind_text(s, 2, user_id, -1, SQLITE_STATIC);
    sqlite3_bind_int64(s, 3, player->version);
    bind_text_or_null(s, 4, player->guild_id);
    bind_text_or_null(s, 5, player->created_ts);
    bind_text_or_null(s, 6, player->updated_ts);
    bind_text_or_null(s, 7, player->pending_guild_id);
    bind_text_or_null(s, 8, player->pending_cause);
    return exec_stmt(st, s, "writing player");
}

int store_put_line(store *st, int64_t player_key, const char *item_type, int64_t quantity) {
    sqlite3_stmt *s = stmt_get(st, quantity > 0 ? SQL_SET_LINE : SQL_DELETE_LINE);
    sqlite3_bind_int64(s, 1, player_key);
    sqlite3_bind_text(s, 2, item_type, -1, SQLITE_STATIC);
    if (quantity > 0) sqlite3_bind_int64(s, 3, quantity);
    return exec_stmt(st, s, "writing inventory line");
}

int store_get_guild_count(store *st, const char *guild_id, int64_t *member_count) {
    sqlite3_stmt *s = stmt_get(st, SQL_GET_GUILD_COUNT);
    sqlite3_bind_text(s, 1, guild_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    *member_count = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : 0;
    sqlite3_reset(s);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? 0 : fail_with(st, "reading guild");
}

int store_set_guild_count(store *st, const char *guild_id, int64_t member_count) {
    sqlite3_stmt *s = stmt_get(st, member_count > 0 ? SQL_SET_GUILD_COUNT : SQL_DELETE_GUILD);
    sqlite3_bind_text(s, 1, guild_id, -1, SQLITE_STATIC);
    if (member_count > 0) sqlite3_bind_int64(s, 2, member_count);
    return exec_stmt(st, s, "writing guild");
}

int store_add_member(store *st, const char *guild_id, const char *user_id, const char *ts) {
    sqlite3_stmt *s = stmt_get(st, SQL_ADD_MEMBER);
    sqlite3_bind_text(s, 1, guild_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, user_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, ts, -1, SQLITE_STATIC);
    return exec_stmt(st, s, "adding guild member");
}

int store_remove_member(store *st, const char *guild_id, const char *user_id) {
    sqlite3_stmt *s = stmt_get(st, SQL_REMOVE_MEMBER);
    sqlite3_bind_text(s, 1, guild_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, user_id, -1, SQLITE_STATIC);
    return exec_stmt(st, s, "removing guild member");
}

int store_get_topic(store *st, char *buf, size_t buf_size) {
    sqlite3_stmt *s = stmt_get(st, SQL_GET_TOPIC);
    int rc = sqlite3_step(s);
    buf[0] = '\0';
    if (rc == SQLITE_ROW) copy_column_text(s, 0, buf, buf_size);
    sqlite3_reset(s);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : fail_with(st, "reading the store's topic");
}

int store_claim_topic(store *st, const char *topic) {
    char held[256];
    if (store_get_topic(st, held, sizeof held)) return -1;
    if (held[0]) {
        if (strcmp(held, topic) == 0) return 0;
        snprintf(st->errmsg, sizeof st->errmsg,
                 "store of partition %d holds the state of topic '%s', not '%s'",
                 (int)st->partition, held, topic);
        return -1;
    }
    sqlite3_stmt *s = stmt_get(st, SQL_SET_TOPIC);
    sqlite3_bind_text(s, 1, topic, -1, SQLITE_STATIC);
    return exec_stmt(st, s, "recording the store's topic");
}

int store_set_unfinished(store *st, const char *by) {
    char mark[4200];
    if (unfinished_mark_path(st->path, mark, sizeof mark)) {
        snprintf(st->errmsg, sizeof st->errmsg, "the store's path is too long");
        return -1;
    }
    if (!by) {
        if (unlink(mark) == 0 || errno == ENOENT) return 0;
        snprintf(st->errmsg, sizeof st->errmsg, "clearing %.300s: %s", mark, strerror(errno));
        return -1;
    }
    FILE *f = fopen(mark, "w");
    int failed = !f || fprintf(f, "%s\n", by) < 0;
    if (f && fclose(f)) failed = 1;
    if (failed) {
        snprintf(st->errmsg, sizeof st->errmsg, "marking %.300s: %s", mark, strerror(errno));
        return -1;
    }
    return 0;
}

int store_is_member(store *st, const char *guild_id, const char *user_id) {
    sqlite3_stmt *s = stmt_get(st, SQL_IS_MEMBER);
    sqlite3_bind_text(s, 1, guild_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, user_id, -1, SQLITE_STATIC);
    int rc = sqlite3_step(s);
    sqlite3_reset(s);
    if (rc == SQLITE_ROW) return 1;
    return rc == SQLITE_DONE ? 0 : fail_with(st, "reading guild member");
}

int store_outbox_add(store *st, const char *msg_key, const char *event_id, const char *user_id,
                     const char *payload, int64_t *seq) {
    sqlite3_stmt *s = stmt_get(st, SQL_OUTBOX_ADD);
    sqlite3_bind_text(s, 1, msg_key, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 2, event_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 3, user_id, -1, SQLITE_STATIC);
    sqlite3_bind_text(s, 4, payload, -1, SQLITE_STATIC);
    if (exec_stmt(st, s, "adding to the outbox")) return -1;
    *seq = sqlite3_last_insert_rowid(st->db);
    return 0;
}

int store_outbox_delete(store *st, int64_t first_seq, int64_t last_seq) {
    sqlite3_stmt *s = stmt_get(st, SQL_OUTBOX_DELETE);
    sqlite3_bind_int64(s, 1, first_seq);
    sqlite3_bind_int64(s, 2, last_seq);
    return exec_stmt(st, s, "deleting from the outbox");
}

int store_outbox_walk(store *st, int64_t after_seq, int limit,
                      int (*row)(void *arg, const store_outbox_row *r), void *arg) {
    sqlite3_stmt *s = stmt_get(st, SQL_OUTBOX_WALK);
    sqlite3_bind_int64(s, 1, after_seq);
    sqlite3_bind_int(s, 2, limit);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        store_outbox_row r = {
            .seq = sqlite3_column_int64(s, 0),
            .msg_key = (const char *)sqlite3_column_text(s, 1),
            .event_id = (const char *)sqlite3_column_text(s, 2),
            .user_id = (const char *)sqlite3_column_text(s, 3),
            .payload = (const char *)sqlite3_column_text(s, 4),
        };
        if (row(arg, &r)) {
            sqlite3_reset(s);
            return -1;
        }
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : fail_with(st, "reading the outbox");
}

uint32_t store_event_id_hash_bytes(const char *event_id, size_t len) {
    uint32_t hash = 0x811c9dc5u;
    for (const unsigned char *p = (const unsigned char *)event_id; len--; p++) {
        hash ^= *p;
        hash *= 0x01000193u;
    }
    return hash;
}

uint32_t store_event_id_hash(const char *event_id) {
    return store_event_id_hash_bytes(event_id, strlen(event_id));
}

/* ---------------------------------------------------------------- history blocks */

/* A copy of the block a read fetched last, so that the events of one walk that share a
 * block cost one SQLite read. It lives for one call only: a committed block never
 * changes, but one the writer rolled back is rewritten. */
typedef struct {
    unsigned char *bytes;
    size_t len, cap;
    int64_t first_offset, last_offset;
} block_cursor;

static void block_cursor_free(block_cursor *c) { free(c->bytes); }

static int corrupt_block(store *st, int64_t last_offset) {
    snprintf(st->errmsg, sizeof st->errmsg,
             "the history block ending at offset %lld is damaged", (long long)last_offset);
    return -1;
}

/* Copies the block in the current row of s (first_offset, records, last_offset). */
static int block_cursor_take(store *st, block_cursor *c, sqlite3_stmt *s) {
    const void *bytes = sqlite3_column_blob(s, 1);
    size_t len = (size_t)sqlite3_column_bytes(s, 1);
    if (len > c->cap || !c->bytes) {
        size_t cap = len > 4096 ? len : 4096;
        unsigned char *bigger = realloc(c->bytes, cap);
        if (!bigger) {
            snprintf(st->errmsg, sizeof st->errmsg, "out of memory reading history");
            return -1;
        }
        c->bytes = bigger;
        c->cap = cap;
    }
    if (len) memcpy(c->bytes, bytes, len);
    c->len = len;
    c->first_offset = sqlite3_column_int64(s, 0);
    c->last_offset = sqlite3_column_int64(s, 2);
    return 0;
}

/* Decodes the history entry at offset into *entry (its texts point into c). Returns 1,
 * 0 when no block holds it, -1 on error. */
static int history_entry_at(store *st, block_cursor *c, int64_t offset, history_entry *entry) {
    if (!c->bytes || offset < c->first_offset || offset > c->last_offset) {
        sqlite3_stmt *s = stmt_get(st, SQL_BLOCK_AT);
        sqlite3_bind_int64(s, 1, offset);
        int rc = sqlite3_step(s);
        int took = rc == SQLITE_ROW ? block_cursor_take(st, c, s) : 0;
        sqlite3_reset(s);
        if (rc == SQLITE_DONE) return 0;
        if (rc != SQLITE_ROW) return fail_with(st, "reading history");
        if (took) return -1;
        if (offset < c->first_offset) return 0;
    }
    history_block_reader r;
    history_block_read_start(&r, c->bytes, c->len, c->first_offset);
    int got;
    while ((got = history_block_next(&r, entry)) == 1 && entry->offset < offset)
        ;
    if (got < 0) return corrupt_block(st, c->last_offset);
    return got == 1 && entry->offset == offset;
}

/* An event id as history_entry_id_is compares it: its 16 bytes when it is a UUID. */
typedef struct {
    const char *text;
    int is_uuid;
    unsigned char uuid[16];
} id_key;

static id_key id_key_of(const char *event_id) {
    id_key k = {.text = event_id};
    k.is_uuid = uuid_to_bytes(event_id, k.uuid);
    return k;
}

static int history_entry_id_is(const history_entry *e, const id_key *k) {
    if (e->id_is_uuid) return k->is_uuid && memcmp(e->id_uuid, k->uuid, 16) == 0;
    return !k->is_uuid && strcmp(e->id_text, k->text) == 0;
}

/* The guild-side events a guild's partition records under a player are not the
 * player's own history. */
static int is_guild_side(int type) {
    return type == EVENT_GUILD_JOIN_REQUESTED || type == EVENT_GUILD_LEAVE_REQUESTED;
}

/* Calls pair(arg, id_hash, offset) for every pair of the player index rows s gives
 * (first_offset, ids), in offset order, until pair returns non-zero; resets s. Returns
 * 0, or -1 with errmsg (pair's own -1 included). */
static int walk_index(store *st, sqlite3_stmt *s,
                      int (*pair)(void *arg, uint32_t id_hash, int64_t offset), void *arg,
                      const char *what) {
    int rc, got = 0, stop = 0;
    int64_t first_offset = 0;
    while (!stop && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        history_block_reader r;
        uint32_t id_hash;
        int64_t offset;
        first_offset = sqlite3_column_int64(s, 0);
        history_block_read_start(&r, sqlite3_column_blob(s, 1), (size_t)sqlite3_column_bytes(s, 1),
                                 first_offset);
        while (!stop && (got = history_block_next_id(&r, &id_hash, &offset)) == 1)
            stop = pair(arg, id_hash, offset);
        if (got < 0) break;
    }
    sqlite3_reset(s);
    if (stop < 0) return -1;
    if (got < 0) {
        snprintf(st->errmsg, sizeof st->errmsg,
                 "the player index row from offset %lld is damaged", (long long)first_offset);
        return -1;
    }
    return stop || rc == SQLITE_DONE ? 0 : fail_with(st, what);
}

/* Offsets picked from a player's index: those in [low, high], with one hash when
 * only_hash is set. */
typedef struct {
    store *st;
    int64_t *offsets;
    size_t count, cap;
    int64_t low, high;
    int only_hash;
    uint32_t id_hash;
} offset_pick;

/* Makes room for one more of *count elements of elem_size in *array (doubling, from 64).
 * Returns 0, or -1 with st's errmsg. */
static int room_for_one(store *st, void **array, size_t *cap, size_t count, size_t elem_size) {
    if (count < *cap) return 0;
    size_t grown = *cap ? *cap * 2 : 64;
    void *bigger = realloc(*array, grown * elem_size);
    if (!bigger) {
        snprintf(st->errmsg, sizeof st->errmsg, "out of memory reading history");
        return -1;
    }
    *array = bigger;
    *cap = grown;
    return 0;
}

static int pick_offset(void *arg, uint32_t id_hash, int64_t offset) {
    offset_pick *pick = arg;
    if (offset < pick->low || offset > pick->high || (pick->only_hash && id_hash != pick->id_hash))
        return 0;
    if (room_for_one(pick->st, (void **)&pick->offsets, &pick->cap, pick->count,
                     sizeof *pick->offsets))
        return -1;
    pick->offsets[pick->count++] = offset;
    return 0;
}

/* Reads the history entries at the picked offsets (newest first when newest_first),
 * passing those that have the id k (when k is not NULL) and are not guild-side (when
 * own_only) to visit, until visit returns non-zero. Frees the pick. Returns 0 or -1. */
static int walk_picked(store *st, offset_pick *pick, int newest_first, const id_key *k,
                       int own_only, int (*visit)(void *arg, const history_entry *e),
                       void *arg) {
    block_cursor c = {0};
    history_entry e;
    int got = 0;
    for (size_t i = 0; i < pick->count; i++) {
        int64_t offset = pick->offsets[newest_first ? pick->count - 1 - i : i];
        got = history_entry_at(st, &c, offset, &e);
        if (got < 0) break;
        if (!got || (k && !history_entry_id_is(&e, k)) || (own_only && is_guild_side(e.event_type)))
            continue;
        if (visit(arg, &e)) break;
    }
    block_cursor_free(&c);
    free(pick->offsets);
    pick->offsets = NULL;
    return got < 0 ? -1 : 0;
}

/* Picks from the index rows s gives; on error frees the pick. Returns 0 or -1. */
static int pick_offsets(store *st, sqlite3_stmt *s, offset_pick *pick, const char *what) {
    if (walk_index(st, s, pick_offset, pick, what) == 0) return 0;
    free(pick->offsets);
    pick->offsets = NULL;
    return -1;
}

static int note_found(void *arg, const history_entry *e) {
    (void)e;
    *(int *)arg = 1;
    return 1;
}

int store_event_seen(store *st, int64_t player_key, uint32_t id_hash, const char *event_id) {
    sqlite3_stmt *s = stmt_get(st, SQL_INDEX_OF_KEY);
    sqlite3_bind_int64(s, 1, player_key);
    offset_pick pick = {.st = st, .high = INT64_MAX, .only_hash = 1, .id_hash = id_hash};
    if (pick_offsets(st, s, &pick, "looking up event id")) return -1;
    id_key k = id_key_of(event_id); /* a hash match is only a candidate */
    int seen = 0;
    if (walk_picked(st, &pick, 0, &k, 0, note_found, &seen)) return -1;
    return seen;
}

int store_history_has_id(store *st, int64_t offset, const char *event_id) {
    block_cursor c = {0};
    history_entry e;
    id_key k = id_key_of(event_id);
    int got = history_entry_at(st, &c, offset, &e);
    int same = got == 1 && history_entry_id_is(&e, &k);
    block_cursor_free(&c);
    return got < 0 ? -1 : same;
}

typedef struct {
    uint32_t *hashes;
    size_t max, count_limit, count;
} hash_copy;

static int copy_hash(void *arg, uint32_t id_hash, int64_t offset) {
    hash_copy *copy = arg;
    (void)offset;
    if (copy->count < copy->max) copy->hashes[copy->count] = id_hash;
    /* past count_limit (and the buffer) the caller only needs to know there are that many */
    return ++copy->count >= copy->count_limit && copy->count > copy->max;
}

int store_event_id_hashes(store *st, int64_t player_key, uint32_t *hashes, size_t max,
                          size_t count_limit, size_t *count) {
    sqlite3_stmt *s = stmt_get(st, SQL_INDEX_OF_KEY);
    sqlite3_bind_int64(s, 1, player_key);
    hash_copy copy = {.hashes = hashes, .max = max, .count_limit = count_limit};
    int rc = walk_index(st, s, copy_hash, &copy, "reading event ids");
    *count = copy.count;
    return rc;
}

/* Writes a packed block with statement which (?1 key, ?2 the block's first offset, ?3
 * its bytes) and empties it: a history block keyed by its last offset, a player index
 * row by its player. */
static int write_packed(store *st, int which, int64_t key, history_block *b, const char *what) {
    sqlite3_stmt *s = stmt_get(st, which);
    sqlite3_bind_int64(s, 1, key);
    sqlite3_bind_int64(s, 2, b->first_offset);
    sqlite3_bind_blob(s, 3, b->bytes, (int)b->len, SQLITE_STATIC);
    int rc = exec_stmt(st, s, what);
    history_block_reset(b);
    return rc;
}

/* Writes the block being packed, if any, as one row. */
static int flush_block(store *st) {
    history_block *b = &st->block;
    if (!b->count) return 0;
    return write_packed(st, SQL_APPEND_BLOCK, b->last_offset, b, "recording event outcomes");
}

static const char *text_or_null(const char *text) { return text && text[0] ? text : NULL; }

int store_append_history(store *st, const store_history_record *recs, size_t count) {
    for (size_t i = 0; i < count; i++) {
        const store_history_record *rec = &recs[i];
        history_entry e = {
            .offset = rec->offset,
            .player_key = rec->player_key,
            .event_type = rec->event_type,
            .outcome = rec->outcome,
            .id_text = rec->event_id,
            .ts_ms = canonical_ts_ms(rec->ts),
            .ts_text = rec->ts,
            .reason = text_or_null(rec->reason),
            .items = text_or_null(rec->items),
            .guild_id = text_or_null(rec->guild_id),
        };
        e.id_is_uuid = uuid_to_bytes(rec->event_id, e.id_uuid);
        if (!history_block_fits(&st->block, &e) && flush_block(st)) return -1;
        if (history_block_add(&st->block, &e)) {
            history_block_reset(&st->block);
            snprintf(st->errmsg, sizeof st->errmsg,
                     "packing history: out of memory, or offset %lld out of order",
                     (long long)rec->offset);
            return -1;
        }
    }
    return 0;
}

/* Writes the player's packed pairs as one player_index row and empties the block. */
static int write_index_row(store *st, int64_t player_key, history_block *ids) {
    return write_packed(st, SQL_APPEND_INDEX_ROW, player_key, ids, "recording event ids");
}

int store_add_player_events(store *st, const store_player_event *events, size_t count) {
    history_block ids = {0};
    for (size_t i = 0; i < count; i++) {
        const store_player_event *e = &events[i];
        if (ids.count && (e->player_key != events[i - 1].player_key || ids.count >= HISTORY_IDS_MAX) &&
            write_index_row(st, events[i - 1].player_key, &ids))
            goto fail;
        if (history_block_add_id(&ids, e->id_hash, e->offset)) {
            snprintf(st->errmsg, sizeof st->errmsg,
                     "indexing event ids: out of memory, or offset %lld out of order",
                     (long long)e->offset);
            goto fail;
        }
    }
    if (ids.count && write_index_row(st, events[count - 1].player_key, &ids)) goto fail;
    history_block_free(&ids);
    return 0;
fail:
    history_block_free(&ids);
    return -1;
}

int store_record_dead_letter(store *st, int64_t offset, const char *reason, const void *key,
                             size_t key_len, const void *payload, size_t payload_len) {
    sqlite3_stmt *s = stmt_get(st, SQL_RECORD_DEAD_LETTER);
    sqlite3_bind_int64(s, 1, offset);
    sqlite3_bind_text(s, 2, reason, -1, SQLITE_STATIC);
    if (key) sqlite3_bind_blob(s, 3, key, (int)key_len, SQLITE_STATIC);
    if (payload) sqlite3_bind_blob(s, 4, payload, (int)payload_len, SQLITE_STATIC);
    return exec_stmt(st, s, "recording dead letter");
}

int store_set_next_offset(store *st, int64_t next_offset) {
    sqlite3_stmt *s = stmt_get(st, SQL_SET_OFFSET);
    sqlite3_bind_int(s, 1, st->partition);
    sqlite3_bind_int64(s, 2, next_offset);
    return exec_stmt(st, s, "storing offset");
}

int store_get_next_offset(store *st, int64_t *next_offset) {
    sqlite3_stmt *s = stmt_get(st, SQL_GET_OFFSET);
    sqlite3_bind_int(s, 1, st->partition);
    int rc = sqlite3_step(s);
    *next_offset = rc == SQLITE_ROW ? sqlite3_column_int64(s, 0) : -1;
    sqlite3_reset(s);
    return (rc == SQLITE_ROW || rc == SQLITE_DONE) ? 0 : fail_with(st, "reading offset");
}

/* ---------------------------------------------------------------- reads */

void store_inventory_clear(store_inventory *inv) {
    free(inv->lines);
    memset(inv, 0, sizeof *inv);
}

int store_read_inventory(store *st, const char *user_id, store_inventory *inv) {
    sqlite3_stmt *s = stmt_get(st, SQL_READ_INVENTORY);
    size_t capacity = 0;
    int rows = 0, rc;
    memset(inv, 0, sizeof *inv);
    inv->next_offset = -1;
    sqlite3_bind_text(s, 1, user_id, -1, SQLITE_STATIC);
    sqlite3_bind_int(s, 2, st->partition);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        if (rows++ == 0) {
            player_from_columns(s, &inv->player);
            if (sqlite3_column_type(s, 7) != SQLITE_NULL)
                inv->next_offset = sqlite3_column_int64(s, 7);
            inv->found = inv->player.version > 0;
        }
        if (!inv->found || sqlite3_column_type(s, 8) == SQLITE_NULL) continue;
        if (inv->line_count == capacity) {
            size_t grown = capacity ? capacity * 2 : 8;
            store_line *bigger = realloc(inv->lines, grown * sizeof *bigger);
            if (!bigger) {
                snprintf(st->errmsg, sizeof st->errmsg, "out of memory reading inventory");
                goto fail;
            }
            inv->lines = bigger;
            capacity = grown;
        }
        store_line *line = &inv->lines[inv->line_count++];
        copy_column_text(s, 8, line->item_type, sizeof line->item_type);
        line->quantity = sqlite3_column_int64(s, 9);
    }
    if (rc != SQLITE_DONE) {
        fail_with(st, "reading inventory");
        goto fail;
    }
    sqlite3_reset(s);
    /* No such player: the offset comes from a read of its own (nothing to agree with). */
    if (rows == 0 && store_get_next_offset(st, &inv->next_offset)) goto fail;
    return 0;
fail:
    sqlite3_reset(s);
    store_inventory_clear(inv);
    return -1;
}

typedef struct {
    const store *st;
    store_event_outcome *out;
    int found;
} event_lookup;

/* Copies the first entry found into the caller's outcome. */
static int take_outcome(void *arg, const history_entry *e) {
    event_lookup *look = arg;
    history_text h;
    history_row_of(look->st, e, 0, &h);
    store_event_outcome *out = look->out;
    snprintf(out->event_id, sizeof out->event_id, "%s", h.row.event_id);
    snprintf(out->event_type, sizeof out->event_type, "%s", h.row.event_type);
    snprintf(out->outcome, sizeof out->outcome, "%s", h.row.outcome);
    snprintf(out->reason, sizeof out->reason, "%s", h.row.reason ? h.row.reason : "");
    out->partition = h.row.partition;
    out->offset = h.row.offset;
    look->found = 1;
    return 1;
}

/* Decodes every block that may hold an offset in [first, end) in offset order, passing
 * each entry in range to visit until it returns non-zero (then *stopped is set). The
 * entry's texts live during the call only. Returns 0 or -1. */
static int walk_blocks(store *st, int64_t first, int64_t end,
                       int (*visit)(void *arg, const history_entry *e), void *arg,
                       int *stopped) {
    sqlite3_stmt *s = stmt_get(st, SQL_BLOCKS_FROM);
    sqlite3_bind_int64(s, 1, first);
    sqlite3_bind_int64(s, 2, end);
    int rc, got = 0;
    int64_t last_offset = 0;
    *stopped = 0;
    while (!*stopped && (rc = sqlite3_step(s)) == SQLITE_ROW) {
        history_block_reader r;
        history_entry e;
        last_offset = sqlite3_column_int64(s, 2);
        history_block_read_start(&r, sqlite3_column_blob(s, 1), (size_t)sqlite3_column_bytes(s, 1),
                                 sqlite3_column_int64(s, 0));
        while ((got = history_block_next(&r, &e)) == 1)
            if (e.offset >= first && e.offset < end && visit(arg, &e)) {
                *stopped = 1;
                break;
            }
        if (got < 0) break;
    }
    if (*stopped) rc = SQLITE_DONE;
    sqlite3_reset(s);
    if (got < 0) return corrupt_block(st, last_offset);
    return rc == SQLITE_DONE ? 0 : fail_with(st, "reading history");
}

typedef struct {
    id_key key;
    event_lookup *look;
} id_search;

static int take_outcome_if_id(void *arg, const history_entry *e) {
    id_search *search = arg;
    return history_entry_id_is(e, &search->key) ? take_outcome(search->look, e) : 0;
}

int store_read_event(store *st, const char *event_id, const char *user_id,
                     store_event_outcome *out) {
    event_lookup look = {.st = st, .out = out};
    if (user_id) { /* the player's events with the id's hash: an index lookup */
        sqlite3_stmt *s = stmt_get(st, SQL_INDEX_OF_USER);
        sqlite3_bind_text(s, 1, user_id, -1, SQLITE_STATIC);
        offset_pick pick = {.st = st, .high = INT64_MAX, .only_hash = 1,
                            .id_hash = store_event_id_hash(event_id)};
        if (pick_offsets(st, s, &pick, "reading event")) return -1;
        id_key k = id_key_of(event_id);
        if (walk_picked(st, &pick, 0, &k, 0, take_outcome, &look)) return -1;
    } else { /* any player's: a scan of history, the earliest first */
        id_search search = {.key = id_key_of(event_id), .look = &look};
        int stopped;
        if (walk_blocks(st, 0, INT64_MAX, take_outcome_if_id, &search, &stopped)) return -1;
    }
    return look.found;
}

/* store_find_events: the wanted ids by hash, and the user's index pairs with one of
 * those hashes. */
typedef struct {
    uint32_t hash;
    size_t index; /* into the caller's event_ids */
} wanted_id;

typedef struct {
    int64_t offset;
    uint32_t hash;
} hashed_offset;

typedef struct {
    store *st;
    const wanted_id *wanted;
    size_t wanted_count;
    hashed_offset *picked;
    size_t count, cap;
} hash_pick;

static int by_wanted_hash(const void *a, const void *b) {
    uint32_t x = ((const wanted_id *)a)->hash, y = ((const wanted_id *)b)->hash;
    return (x > y) - (x < y);
}

/* The first of the wanted ids with hash, or wanted_count when none has it. */
static size_t first_wanted(const hash_pick *pick, uint32_t hash) {
    size_t low = 0, high = pick->wanted_count;
    while (low < high) {
        size_t mid = low + (high - low) / 2;
        if (pick->wanted[mid].hash < hash) low = mid + 1;
        else high = mid;
    }
    return low < pick->wanted_count && pick->wanted[low].hash == hash ? low : pick->wanted_count;
}

static int pick_wanted_hash(void *arg, uint32_t id_hash, int64_t offset) {
    hash_pick *pick = arg;
    if (first_wanted(pick, id_hash) == pick->wanted_count) return 0;
    if (room_for_one(pick->st, (void **)&pick->picked, &pick->cap, pick->count,
                     sizeof *pick->picked))
        return -1;
    pick->picked[pick->count++] = (hashed_offset){offset, id_hash};
    return 0;
}

int store_find_events(store *st, const char *user_id, const char *const *event_ids, size_t n,
                      unsigned char *found) {
    hash_pick pick = {.st = st, .wanted_count = n};
    block_cursor c = {0};
    int rc = -1;
    memset(found, 0, n);
    wanted_id *wanted = malloc((n ? n : 1) * sizeof *wanted);
    if (!wanted) {
        snprintf(st->errmsg, sizeof st->errmsg, "out of memory reading history");
        return -1;
    }
    for (size_t i = 0; i < n; i++) wanted[i] = (wanted_id){store_event_id_hash(event_ids[i]), i};
    qsort(wanted, n, sizeof *wanted, by_wanted_hash);
    pick.wanted = wanted;
    sqlite3_stmt *s = stmt_get(st, SQL_INDEX_OF_USER);
    sqlite3_bind_text(s, 1, user_id, -1, SQLITE_STATIC);
    if (walk_index(st, s, pick_wanted_hash, &pick, "reading events")) goto done;
    /* the candidates in offset order (the index's), each history block read once */
    for (size_t i = 0; i < pick.count; i++) {
        history_entry e;
        int got = history_entry_at(st, &c, pick.picked[i].offset, &e);
        if (got < 0) goto done;
        for (size_t w = first_wanted(&pick, pick.picked[i].hash);
             got && w < n && wanted[w].hash == pick.picked[i].hash; w++) {
            id_key k = id_key_of(event_ids[wanted[w].index]);
            if (history_entry_id_is(&e, &k)) found[wanted[w].index] = 1;
        }
    }
    rc = 0;
done:
    block_cursor_free(&c);
    free(pick.picked);
    free(wanted);
    return rc;
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

typedef struct {
    const store *st;
    int with_ts_text;
    int left; /* rows still wanted; < 0: no limit */
    int stopped_by_caller;
    void (*row)(void *arg, const store_history_row *entry);
    int (*row_until)(void *arg, const store_history_row *entry);
    void *arg;
} history_walk;

static int pass_row(void *arg, const history_entry *e) {
    history_walk *w = arg;
    history_text h;
    history_row_of(w->st, e, w->with_ts_text, &h);
    if (w->row_until) {
        w->stopped_by_caller = w->row_until(w->arg, &h.row) != 0;
        return w->stopped_by_caller;
    }
    w->row(w->arg, &h.row);
    return w->left > 0 && --w->left == 0;
}

int store_read_history(store *st, const char *user_id, int64_t before_offset, int limit,
                       void (*row)(void *arg, const store_history_row *entry), void *arg) {
    if (limit <= 0) return 0;
    sqlite3_stmt *s = stmt_get(st, SQL_INDEX_OF_USER);
    sqlite3_bind_text(s, 1, user_id, -1, SQLITE_STATIC);
    offset_pick pick = {.st = st, .high = before_offset < 0 ? INT64_MAX : before_offset - 1};
    if (pick_offsets(st, s, &pick, "reading history")) return -1;
    history_walk w = {.st = st, .with_ts_text = 1, .left = limit, .row = row, .arg = arg};
    return walk_picked(st, &pick, 1, NULL, 1, pass_row, &w);
}

int store_walk_player_history(store *st, const char *user_id, int64_t until_offset,
                              int with_ts_text,
                              int (*row)(void *arg, const store_history_row *entry), void *arg) {
    sqlite3_stmt *s = stmt_get(st, SQL_INDEX_OF_USER);
    sqlite3_bind_text(s, 1, user_id, -1, SQLITE_STATIC);
    offset_pick pick = {.st = st, .high = until_offset < 0 ? INT64_MAX : until_offset};
    if (pick_offsets(st, s, &pick, "reading a player's history")) return -1;
    history_walk w = {.st = st, .with_ts_text = with_ts_text, .left = -1, .row_until = row,
                      .arg = arg};
    return walk_picked(st, &pick, 0, NULL, 1, pass_row, &w);
}

int64_t store_ts_ms(const char *ts) { return canonical_ts_ms(ts); }

void store_format_ts(int64_t ms, char *out) {
    time_t seconds = (time_t)(ms / 1000);
    struct tm tm;
    char whole[24];
    gmtime_r(&seconds, &tm);
    strftime(whole, sizeof whole, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out, STORE_TS_SIZE, "%s.%03dZ", whole, (int)(ms % 1000));
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
    /* The guilds whose seats this partition decides, one row each named "#guild/<id>"
     * ('#' sorts before every identifier, so the rows stay in one ascending order). */
    sqlite3_stmt *members = stmt_get(st, SQL_WALK_MEMBERS);
    char guild[STORE_ID_SIZE] = "", name[STORE_ID_SIZE + 8];
    uint64_t guild_digest = 0;
    int mrc;
    while ((mrc = sqlite3_step(members)) == SQLITE_ROW) {
        const char *guild_id = (const char *)sqlite3_column_text(members, 0);
        if (strcmp(guild_id, guild) != 0) {
            if (guild[0]) {
                snprintf(name, sizeof name, "#guild/%s", guild);
                row(arg, name, guild_digest);
            }
            snprintf(guild, sizeof guild, "%s", guild_id);
            guild_digest = 0xcbf29ce484222325ULL;
        }
        guild_digest = fnv1a_text(guild_digest, (const char *)sqlite3_column_text(members, 1));
        guild_digest = fnv1a_text(guild_digest, (const char *)sqlite3_column_text(members, 2));
    }
    sqlite3_reset(members);
    if (mrc != SQLITE_DONE) return fail_with(st, "computing guild digests");
    if (guild[0]) {
        snprintf(name, sizeof name, "#guild/%s", guild);
        row(arg, name, guild_digest);
    }

    /* Two scans in user_id order merged: players, and inventory lines by player. */
    sqlite3_stmt *players = stmt_get(st, SQL_ALL_PLAYERS);
    sqlite3_stmt *lines = stmt_get(st, SQL_ALL_LINES);
    int prc, lrc = sqlite3_step(lines);
    while ((prc = sqlite3_step(players)) == SQLITE_ROW) {
        const char *user_id = (const char *)sqlite3_column_text(players, 0);
        int64_t version = sqlite3_column_int64(players, 1);
        uint64_t digest = fnv1a(0xcbf29ce484222325ULL, &version, sizeof version);
        digest = fnv1a_text(digest, (const char *)sqlite3_column_text(players, 2));
        digest = fnv1a_text(digest, (const char *)sqlite3_column_text(players, 4));
        digest = fnv1a_text(digest, (const char *)sqlite3_column_text(players, 5));
        while (lrc == SQLITE_ROW &&
               strcmp((const char *)sqlite3_column_text(lines, 0), user_id) < 0)
            lrc = sqlite3_step(lines); /* lines of a player that does not exist: skipped */
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
    /* The copy is a plain rollback-journal file: one self-contained store. */
    sqlite3_exec(dest, "PRAGMA journal_mode=DELETE", NULL, NULL, NULL);
    sqlite3_close(dest);
    return 0;
}

/* Steps s, handing each row to the caller as the store_row fill(s, &row) makes of it. */
static int walk(store *st, sqlite3_stmt *s, void (*fill)(const store *st, sqlite3_stmt *s,
                                                         store_row *r),
                int (*row)(void *arg, const store_row *r), void *arg, const char *what) {
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW) {
        store_row r;
        memset(&r, 0, sizeof r);
        fill(st, s, &r);
        if (row(arg, &r)) {
            sqlite3_reset(s);
            snprintf(st->errmsg, sizeof st->errmsg, "%s stopped by its consumer", what);
            return -1;
        }
    }
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : fail_with(st, what);
}

static const char *column_text(sqlite3_stmt *s, int column) {
    return (const char *)sqlite3_column_text(s, column);
}

/* SQL_ALL_LINES: user_id, item_type, quantity */
static void fill_line(const store *st, sqlite3_stmt *s, store_row *r) {
    (void)st;
    r->user_id = column_text(s, 0);
    r->item_type = column_text(s, 1);
    r->quantity = sqlite3_column_int64(s, 2);
}

/* SQL_WALK_MEMBERS: guild_id, user_id, joined_ts */
static void fill_member(const store *st, sqlite3_stmt *s, store_row *r) {
    (void)st;
    r->guild_id = column_text(s, 0);
    r->user_id = column_text(s, 1);
    r->joined_ts = column_text(s, 2);
}

/* SQL_WALK_PLAYERS: user_id, version, guild_id, created_ts, updated_ts */
static void fill_player(const store *st, sqlite3_stmt *s, store_row *r) {
    r->user_id = column_text(s, 0);
    r->version = sqlite3_column_int64(s, 1);
    r->guild_id = column_text(s, 2);
    r->partition = st->partition;
    r->created_ts = column_text(s, 3);
    r->updated_ts = column_text(s, 4);
}

int store_walk_inventory(store *st, int (*row)(void *arg, const store_row *r), void *arg) {
    return walk(st, stmt_get(st, SQL_ALL_LINES), fill_line, row, arg, "walking inventory");
}

int store_walk_guild_members(store *st, int (*row)(void *arg, const store_row *r), void *arg) {
    return walk(st, stmt_get(st, SQL_WALK_MEMBERS), fill_member, row, arg,
                "walking guild members");
}

int store_walk_players(store *st, int (*row)(void *arg, const store_row *r), void *arg) {
    return walk(st, stmt_get(st, SQL_WALK_PLAYERS), fill_player, row, arg, "walking players");
}

typedef struct {
    store *st;
    int (*row)(void *arg, const store_event_row *r);
    void *arg;
    int failed; /* the player lookup failed (errmsg says why) */
} event_walk;

static int pass_event(void *arg, const history_entry *e) {
    event_walk *w = arg;
    sqlite3_stmt *s = stmt_get(w->st, SQL_USER_OF_KEY);
    sqlite3_bind_int64(s, 1, e->player_key);
    int rc = sqlite3_step(s);
    if (rc != SQLITE_ROW) { /* every recorded event's player is in the store */
        sqlite3_reset(s);
        if (rc == SQLITE_DONE)
            snprintf(w->st->errmsg, sizeof w->st->errmsg,
                     "history at offset %lld names player key %lld, which is not stored",
                     (long long)e->offset, (long long)e->player_key);
        else
            fail_with(w->st, "reading the player of an event");
        w->failed = 1;
        return 1;
    }
    history_text h;
    history_row_of(w->st, e, 1, &h);
    store_event_row r = {
        .partition = w->st->partition,
        .offset = h.row.offset,
        .event_id = h.row.event_id,
        .event_type = h.row.event_type,
        .user_id = (const char *)sqlite3_column_text(s, 0),
        .ts = h.row.ts,
        .outcome = h.row.outcome,
        .reason = h.row.reason,
        .items = h.row.items,
        .guild_id = h.row.guild_id,
    };
    int stop = w->row(w->arg, &r);
    sqlite3_reset(s);
    return stop;
}

int store_walk_events(store *st, int64_t first, int64_t end,
                      int (*row)(void *arg, const store_event_row *r), void *arg) {
    event_walk w = {.st = st, .row = row, .arg = arg};
    int stopped;
    if (walk_blocks(st, first, end, pass_event, &w, &stopped)) return -1;
    if (w.failed) return -1;
    if (stopped) {
        snprintf(st->errmsg, sizeof st->errmsg, "walking events stopped by its consumer");
        return -1;
    }
    return 0;
}

int store_read_dead_letters(store *st, int limit,
                            void (*row)(void *arg, int64_t offset, const char *reason), void *arg) {
    sqlite3_stmt *s = stmt_get(st, SQL_RECENT_DEAD_LETTERS);
    int rc;
    sqlite3_bind_int(s, 1, limit);
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        row(arg, sqlite3_column_int64(s, 0), (const char *)sqlite3_column_text(s, 1));
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : fail_with(st, "reading dead letters");
}

int store_read_item_totals(store *st,
                           void (*row)(void *arg, const char *item_type, int64_t holders,
                                       int64_t quantity),
                           void *arg) {
    sqlite3_stmt *s = stmt_get(st, SQL_ITEM_TOTALS);
    int rc;
    while ((rc = sqlite3_step(s)) == SQLITE_ROW)
        row(arg, (const char *)sqlite3_column_text(s, 0), sqlite3_column_int64(s, 1),
            sqlite3_column_int64(s, 2));
    sqlite3_reset(s);
    return rc == SQLITE_DONE ? 0 : fail_with(st, "reading item totals");
}
