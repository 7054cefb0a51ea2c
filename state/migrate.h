/* migrate: brings a SQLite file's schema to the version this binary knows, applying
 * migrations/NNNN_name.sql in order, each in its own transaction, tracked with
 * PRAGMA user_version. */
#ifndef LOOTLOG_MIGRATE_H
#define LOOTLOG_MIGRATE_H

#include <sqlite3.h>
#include <stddef.h>

/* The schema version the built-in migrations reach. */
int migrate_latest_version(void);

/* Applies every migration newer than the file's user_version. A file from a newer
 * lootlog is refused; a failed migration is rolled back, leaving the file as it was.
 * Returns 0 and writes the versions before and after (either may be NULL), or -1. */
int migrate_apply(sqlite3 *db, int *from_version, int *to_version, char *errstr,
                  size_t errstr_size);

/* As migrate_apply, but stops at target_version (for tests and staged upgrades). */
int migrate_apply_to(sqlite3 *db, int target_version, int *from_version, int *to_version,
                     char *errstr, size_t errstr_size);

#endif
