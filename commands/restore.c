/* restore: `lootlog restore` installs a snapshot's stores from HDFS into a new folder;
 * `serve` on it then catches up from the stores' offsets. */
#include "commands/commands.h"
#include "commands/shared.h"
#include "hdfs/snapshot.h"
#include "state/store.h"

#include <stdio.h>

int command_restore(cli_options *opt) {
    char errstr[512], work_dir[1024], id[32];
    if (!opt->snapshot_url) {
        fprintf(stderr, "lootlog: restore needs --snapshot-url\n");
        return 2;
    }
    command_folder_of(opt->db, work_dir, sizeof work_dir);
    int32_t only[STORE_MAX_PARTITIONS]; /* --partitions A-B: a shard's snapshot */
    size_t only_count = 0;
    for (int p = opt->partition_first; p >= 0 && p <= opt->partition_last; p++) only[only_count++] = p;
    if (snapshot_restore(opt->snapshot_url, opt->snapshot_id, opt->topic, only, only_count,
                         opt->db, work_dir, 30000, id, errstr, sizeof errstr)) {
        fprintf(stderr, "lootlog: restore failed: %s\n", errstr);
        return 1;
    }
    printf("restore: snapshot %s installed as %s; `lootlog serve --db %s` catches up from its "
           "offsets\n",
           id, opt->db, opt->db);
    return 0;
}
