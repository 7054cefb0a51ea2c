/* shared: helpers several commands use. */
#ifndef LOOTLOG_COMMANDS_SHARED_H
#define LOOTLOG_COMMANDS_SHARED_H

#include "commands/options.h"
#include "hdfs/snapshot.h"
#include "state/catalog.h"

#include <stddef.h>

#ifndef LOOTLOG_VERSION
#define LOOTLOG_VERSION "0.0.0"
#endif

/* The admin token: $LOOTLOG_ADMIN_TOKEN, else the first line of --admin-token-file.
 * Returns 0 with *token (malloc'ed, or NULL when none is configured), or -1. */
int command_admin_token(const cli_options *opt, char **token, char *errstr, size_t errstr_size);

/* The folder of path, into dir (for scratch files on the database's file system). */
void command_folder_of(const char *path, char *dir, size_t dir_size);

/* The snapshot settings of the options; work_dir receives the scratch folder beside --db. */
snapshot_config command_snapshot_config(const cli_options *opt, const catalog *cat,
                                        char *work_dir, size_t work_dir_size);

#endif
