/* gen: `lootlog gen` runs the traffic generator (tools/gen) from the options. */
#include "commands/commands.h"
#include "state/catalog.h"
#include "tools/gen.h"

#include <stdio.h>

int command_gen(cli_options *opt) {
    char errstr[512];
    catalog *cat = catalog_load(opt->catalog_path, errstr, sizeof errstr);
    if (!cat) {
        fprintf(stderr, "lootlog: %s\n", errstr);
        return 2;
    }
    gen_config config = {
        .rate = opt->gen_rate,
        .users = opt->gen_users,
        .duration_s = opt->gen_duration_s,
        .http_url = cli_given(opt, CLI_GEN, "brokers") && !cli_given(opt, CLI_GEN, "http")
                        ? NULL
                        : opt->http,
        .brokers = opt->brokers,
        .topic = opt->topic,
        .connections = opt->gen_connections,
        .seed = (uint64_t)opt->gen_seed,
        .user_prefix = opt->gen_user_prefix,
        .kafka_props = opt->kafka_props,
        .kafka_prop_count = opt->kafka_prop_count,
        .cat = cat,
    };
    int rc = gen_run(&config, errstr, sizeof errstr);
    catalog_free(cat);
    if (rc < 0) {
        fprintf(stderr, "lootlog: %s\n", errstr);
        return 2;
    }
    return rc;
}
