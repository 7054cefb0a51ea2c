/* shared: what several commands need: the admin token, the folder beside the state,
 * and the snapshot settings taken from the options. */
#include "commands/shared.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The admin token: $LOOTLOG_ADMIN_TOKEN, else the first line of --admin-token-file.
 * Returns 0 with *token (malloc'ed, or NULL when none is configured), or -1. */
int command_admin_token(const cli_options *opt, char **token, char *errstr, size_t errstr_size) {
    const char *env = opt->admin_token;
    *token = NULL;
    if (env && *env) {
        *token = strdup(env);
        return *token ? 0 : -1;
    }
    if (!opt->admin_token_file) return 0;
    FILE *f = fopen(opt->admin_token_file, "r");
    char line[512];
    if (!f || !fgets(line, sizeof line, f)) {
        snprintf(errstr, errstr_size, "cannot read --admin-token-file %s", opt->admin_token_file);
        if (f) fclose(f);
        return -1;
    }
    fclose(f);
    line[strcspn(line, "\r\n")] = '\0';
    if (!line[0]) {
        snprintf(errstr, errstr_size, "--admin-token-file %s is empty", opt->admin_token_file);
        return -1;
    }
    *token = strdup(line);
    return *token ? 0 : -1;
}

/* The folder of path, into dir (for scratch files on the database's file system). */
void command_folder_of(const char *path, char *dir, size_t dir_size) {
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, dir_size, ".");
    else if (slash == path) snprintf(dir, dir_size, "/");
    else snprintf(dir, dir_size, "%.*s", (int)(slash - path), path);
}

snapshot_config command_snapshot_config(const cli_options *opt, const catalog *cat,
                                            char *work_dir, size_t work_dir_size) {
    command_folder_of(opt->db, work_dir, work_dir_size);
    snapshot_config config = {
        .db_path = opt->db,
        .url = opt->snapshot_url,
        .topic = opt->topic,
        .work_dir = work_dir,
        .retain = opt->retain,
        .lootlog_version = LOOTLOG_VERSION,
        .timeout_ms = 30000,
        .cat = cat,
    };
    return config;
}
