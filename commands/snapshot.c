/* snapshot: `lootlog snapshot` takes one snapshot of a state folder to HDFS now. */
#include "commands/commands.h"
#include "commands/shared.h"
#include "hdfs/snapshot.h"
#include "state/catalog.h"

#include <stdio.h>

int command_snapshot(cli_options *opt) {
    char errstr[512], work_dir[1024];
    snapshot_result result;
    if (!opt->snapshot_url) {
        fprintf(stderr, "lootlog: snapshot needs --snapshot-url\n");
        return 2;
    }
    catalog *cat = catalog_load(opt->catalog_path, errstr, sizeof errstr);
    if (!cat) {
        fprintf(stderr, "lootlog: %s\n", errstr);
        return 2;
    }
    snapshot_config config = command_snapshot_config(opt, cat, work_dir, sizeof work_dir);
    int rc = snapshot_take(&config, &result, errstr, sizeof errstr);
    catalog_free(cat);
    if (rc) {
        fprintf(stderr, "lootlog: snapshot failed: %s\n", errstr);
        return 1;
    }
    printf("snapshot: %s written in %.1f s (%llu events extracted)\n", result.id, result.seconds,
           (unsigned long long)result.events_extracted);
    return 0;
}
