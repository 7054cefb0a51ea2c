/* migrate: `lootlog migrate --db PATH` brings a store file, or every store of a state
 * folder, to the current schema (migrations/, state/migrate). */
#include "commands/commands.h"
#include "lib/log.h"
#include "state/migrate.h"
#include "state/store.h"

#include <limits.h>
#include <sqlite3.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

/* Migrates one SQLite file. Returns 0 or 1. */
static int migrate_file(const cli_options *opt, const char *path) {
    char errstr[512];
    sqlite3 *db = NULL;
    int from, to;
    if (sqlite3_open(path, &db) != SQLITE_OK) {
        fprintf(stderr, "lootlog: opening %s: %s\n", path, sqlite3_errmsg(db));
        sqlite3_close(db);
        return 1;
    }
    int rc = migrate_apply_to(db, opt->migrate_to > 0 ? opt->migrate_to : migrate_latest_version(),
                              &from, &to, errstr, sizeof errstr);
    sqlite3_close(db);
    if (rc) {
        fprintf(stderr, "lootlog: %s\n", errstr);
        return 1;
    }
    printf("%s: schema version %d -> %d\n", path, from, to);
    return 0;
}

/* --db names a folder of stores (each is migrated) or one store file. */
int command_migrate(cli_options *opt) {
    char errstr[512], path[PATH_MAX];
    int32_t partitions[STORE_MAX_PARTITIONS];
    size_t count = 0;
    struct stat info;
    if (stat(opt->db, &info) != 0 || !S_ISDIR(info.st_mode)) return migrate_file(opt, opt->db);
    if (store_list_partitions(opt->db, partitions, STORE_MAX_PARTITIONS, &count, errstr,
                              sizeof errstr)) {
        fprintf(stderr, "lootlog: %s\n", errstr);
        return 1;
    }
    int rc = 0;
    for (size_t i = 0; i < count && rc == 0; i++) {
        store_path(opt->db, partitions[i], path, sizeof path);
        rc = migrate_file(opt, path);
    }
    if (count == 0) printf("%s: no stores yet\n", opt->db);
    return rc;
}
