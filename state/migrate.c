/* migrate: schema upgrades from the migrations embedded at build time. */
#include "state/migrate.h"

#include "state/embedded.h"
#include "state/history_block.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The NNNN of "NNNN_name.sql", or -1. */
static int migration_number(const char *name) {
    char *end;
    long n = strtol(name, &end, 10);
    if (end == name || *end != '_' || n <= 0 || n > 9999) return -1;
    return (int)n;
}

int migrate_latest_version(void) {
    int latest = 0;
    for (int i = 0; i < embedded_migrations_count; i++) {
        int n = migration_number(embedded_migrations[i].name);
        if (n > latest) latest = n;
    }
    return latest;
}

static int read_user_version(sqlite3 *db, int *version, char *errstr, size_t errstr_size) {
    sqlite3_stmt *stmt = NULL;
    int rc = sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &stmt, NULL);
    if (rc == SQLITE_OK) rc = sqlite3_step(stmt);
    if (rc != SQLITE_ROW) {
        snprintf(errstr, errstr_size, "reading user_version: %s", sqlite3_errmsg(db));
        sqlite3_finalize(stmt);
        return -1;
    }
    *version = sqlite3_column_int(stmt, 0);
    sqlite3_finalize(stmt);
    return 0;
}

/* ---- steps in C: what a migration needs beyond SQL, run in its transaction ---- */

/* A table being packed into a table of blocks: the insert, the block being filled and
 * the key its row gets (a history block's last offset, a player index row's player). */
typedef struct {
    sqlite3_stmt *insert;
    history_block block;
    int64_t key;
    char *errstr;
    size_t errstr_size;
} packer;

/* Writes the block being filled, if any, as a row (?1 key, ?2 its first offset, ?3 its
 * bytes) and empties it. Returns 0, or -1 with errstr. */
static int pack_flush(packer *pk) {
    if (!pk->block.count) return 0;
    sqlite3_bind_int64(pk->insert, 1, pk->key);
    sqlite3_bind_int64(pk->insert, 2, pk->block.first_offset);
    sqlite3_bind_blob(pk->insert, 3, pk->block.bytes, (int)pk->block.len, SQLITE_STATIC);
    int rc = sqlite3_step(pk->insert);
    sqlite3_reset(pk->insert);
    history_block_reset(&pk->block);
    if (rc == SQLITE_DONE) return 0;
    snprintf(pk->errstr, pk->errstr_size, "writing a packed row: %s",
             sqlite3_errmsg(sqlite3_db_handle(pk->insert)));
    return -1;
}

/* How one old table is packed: its rows (select), where blocks go (insert, ?1 key, ?2
 * first offset, ?3 bytes), how one row is added to the packer (flushing full blocks),
 * and the statement that drops it. */
typedef struct {
    const char *old_table, *select_sql, *insert_sql, *drop_sql;
    int (*pack_row)(sqlite3_stmt *read, packer *pk);
} pack_plan;

/* Packs every row of plan's old table, writes the last block, and drops the old table.
 * Returns 0, or -1 with errstr. */
static int pack_table(sqlite3 *db, const pack_plan *plan, char *errstr, size_t errstr_size) {
    sqlite3_stmt *read = NULL;
    packer pk = {.errstr = errstr, .errstr_size = errstr_size};
    int rc = SQLITE_OK;
    if (sqlite3_prepare_v2(db, plan->select_sql, -1, &read, NULL) != SQLITE_OK ||
        sqlite3_prepare_v2(db, plan->insert_sql, -1, &pk.insert, NULL) != SQLITE_OK)
        goto sql_fail;
    while ((rc = sqlite3_step(read)) == SQLITE_ROW)
        if (plan->pack_row(read, &pk)) goto fail;
    if (rc != SQLITE_DONE) goto sql_fail;
    if (pack_flush(&pk)) goto fail;
    if (sqlite3_exec(db, plan->drop_sql, NULL, NULL, NULL) != SQLITE_OK) goto sql_fail;
    sqlite3_finalize(read);
    sqlite3_finalize(pk.insert);
    history_block_free(&pk.block);
    return 0;
sql_fail:
    snprintf(errstr, errstr_size, "packing the old %s table: %s", plan->old_table,
             sqlite3_errmsg(db));
fail:
    sqlite3_finalize(read);
    sqlite3_finalize(pk.insert);
    history_block_free(&pk.block);
    return -1;
}

/* The text of a column, NULL when it is NULL or empty (as the fold stores them). */
static const char *column_text_or_null(sqlite3_stmt *s, int col) {
    const char *text = (const char *)sqlite3_column_text(s, col);
    return text && text[0] ? text : NULL;
}

/* One row of the old history table into history blocks. The old columns hold ids that
 * are UUIDs as 16-byte BLOBs and canonical times as integer ms already, so each row
 * carries over as it is. */
static int pack_history_row(sqlite3_stmt *read, packer *pk) {
    history_entry e = {
        .offset = sqlite3_column_int64(read, 0),
        .player_key = sqlite3_column_int64(read, 1),
        .event_type = sqlite3_column_int(read, 3),
        .outcome = sqlite3_column_int(read, 4),
        .ts_ms = -1,
        .reason = column_text_or_null(read, 5),
        .items = column_text_or_null(read, 7),
        .guild_id = column_text_or_null(read, 8),
    };
    if (sqlite3_column_type(read, 2) == SQLITE_BLOB && sqlite3_column_bytes(read, 2) == 16) {
        e.id_is_uuid = 1;
        memcpy(e.id_uuid, sqlite3_column_blob(read, 2), 16);
    } else {
        e.id_text = (const char *)sqlite3_column_text(read, 2);
    }
    if (sqlite3_column_type(read, 6) == SQLITE_INTEGER)
        e.ts_ms = sqlite3_column_int64(read, 6);
    else
        e.ts_text = (const char *)sqlite3_column_text(read, 6);
    if (!e.id_text && !e.id_is_uuid) e.id_text = "";
    if (e.ts_ms < 0 && !e.ts_text) e.ts_text = "";
    if (!history_block_fits(&pk->block, &e) && pack_flush(pk)) return -1;
    if (history_block_add(&pk->block, &e)) {
        snprintf(pk->errstr, pk->errstr_size, "packing history at offset %lld: out of memory "
                 "or out of order", (long long)e.offset);
        return -1;
    }
    pk->key = e.offset; /* a history block's key is its last offset */
    return 0;
}

/* 0006: packs the old history table into history_blocks, then drops it. */
static int pack_history_into_blocks(sqlite3 *db, char *errstr, size_t errstr_size) {
    static const pack_plan plan = {
        .old_table = "history",
        .select_sql = "SELECT offset, player_key, event_id, event_type, outcome, reason, ts, "
                      "items, guild_id FROM history ORDER BY offset",
        .insert_sql = "INSERT INTO history_blocks (last_offset, first_offset, records) "
                      "VALUES (?1, ?2, ?3)",
        .drop_sql = "DROP TABLE history",
        .pack_row = pack_history_row,
    };
    return pack_table(db, &plan, errstr, errstr_size);
}

/* One row of player_events into player_index: each player's pairs in offset order, up to
 * HISTORY_IDS_MAX to a row. */
static int pack_player_event_row(sqlite3_stmt *read, packer *pk) {
    int64_t player_key = sqlite3_column_int64(read, 0);
    if (pk->block.count && (player_key != pk->key || pk->block.count >= HISTORY_IDS_MAX) &&
        pack_flush(pk))
        return -1;
    pk->key = player_key;
    if (history_block_add_id(&pk->block, (uint32_t)sqlite3_column_int64(read, 1),
                             sqlite3_column_int64(read, 2))) {
        snprintf(pk->errstr, pk->errstr_size, "packing player_events of player %lld: out of "
                 "memory or an offset twice", (long long)player_key);
        return -1;
    }
    return 0;
}

/* 0007: packs player_events into player_index, then drops it. */
static int pack_player_events(sqlite3 *db, char *errstr, size_t errstr_size) {
    static const pack_plan plan = {
        .old_table = "player_events",
        .select_sql = "SELECT player_key, id_hash, offset FROM player_events "
                      "ORDER BY player_key, offset",
        .insert_sql = "INSERT INTO player_index (player_key, first_offset, ids) "
                      "VALUES (?1, ?2, ?3)",
        .drop_sql = "DROP TABLE player_events",
        .pack_row = pack_player_event_row,
    };
    return pack_table(db, &plan, errstr, errstr_size);
}

static const struct {
    int number;
    int (*run)(sqlite3 *db, char *errstr, size_t errstr_size);
} c_steps[] = {
    {6, pack_history_into_blocks},
    {7, pack_player_events},
};

/* Runs migration number's step in C, if it has one. Returns 0 or -1 with errstr. */
static int run_c_step(sqlite3 *db, int number, char *errstr, size_t errstr_size) {
    for (size_t i = 0; i < sizeof c_steps / sizeof c_steps[0]; i++)
        if (c_steps[i].number == number) return c_steps[i].run(db, errstr, errstr_size);
    return 0;
}

int migrate_apply(sqlite3 *db, int *from_version, int *to_version, char *errstr,
                  size_t errstr_size) {
    return migrate_apply_to(db, migrate_latest_version(), from_version, to_version, errstr,
                            errstr_size);
}

int migrate_apply_to(sqlite3 *db, int target_version, int *from_version, int *to_version,
                     char *errstr, size_t errstr_size) {
    int current;
    int latest = migrate_latest_version();
    char *sql_err = NULL;

    if (read_user_version(db, &current, errstr, errstr_size)) return -1;
    if (from_version) *from_version = current;
    if (current > latest) {
        snprintf(errstr, errstr_size,
                 "database schema is version %d, newer than this lootlog knows (%d); "
                 "refusing to touch it",
                 current, latest);
        return -1;
    }
    /* Embedded migrations are sorted by name, so numbers ascend. */
    for (int i = 0; i < embedded_migrations_count; i++) {
        const embedded_file *m = &embedded_migrations[i];
        int number = migration_number(m->name);
        if (number < 0) {
            snprintf(errstr, errstr_size, "migration '%s' is not named NNNN_name.sql", m->name);
            return -1;
        }
        if (number <= current || number > target_version) continue;
        char set_version[64];
        snprintf(set_version, sizeof set_version, "PRAGMA user_version = %d", number);
        char step_err[256] = "";
        if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &sql_err) != SQLITE_OK ||
            sqlite3_exec(db, m->contents, NULL, NULL, &sql_err) != SQLITE_OK ||
            run_c_step(db, number, step_err, sizeof step_err) ||
            sqlite3_exec(db, set_version, NULL, NULL, &sql_err) != SQLITE_OK ||
            sqlite3_exec(db, "COMMIT", NULL, NULL, &sql_err) != SQLITE_OK) {
            snprintf(errstr, errstr_size, "migration %s failed: %s", m->name,
                     step_err[0] ? step_err : sql_err ? sql_err : sqlite3_errmsg(db));
            sqlite3_free(sql_err);
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
        current = number;
    }
    if (to_version) *to_version = current;
    return 0;
}
