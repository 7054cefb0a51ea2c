/* migrate: schema upgrades from the migrations embedded at build time. */
#include "state/migrate.h"

#include "state/embedded.h"

#include <stdio.h>
#include <stdlib.h>

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
        if (sqlite3_exec(db, "BEGIN IMMEDIATE", NULL, NULL, &sql_err) != SQLITE_OK ||
            sqlite3_exec(db, m->contents, NULL, NULL, &sql_err) != SQLITE_OK ||
            sqlite3_exec(db, set_version, NULL, NULL, &sql_err) != SQLITE_OK ||
            sqlite3_exec(db, "COMMIT", NULL, NULL, &sql_err) != SQLITE_OK) {
            snprintf(errstr, errstr_size, "migration %s failed: %s", m->name,
                     sql_err ? sql_err : sqlite3_errmsg(db));
            sqlite3_free(sql_err);
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return -1;
        }
        current = number;
    }
    if (to_version) *to_version = current;
    return 0;
}
