/* replay: `lootlog replay` rebuilds a state folder from a slice of the log (kafka/replay),
 * optionally verifies it against a live folder and hands it to a running serve (--swap). */
#include "commands/commands.h"
#include "commands/shared.h"
#include "kafka/replay.h"
#include "lib/log.h"

#include <curl/curl.h>
#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* replay --swap: asks the serve at --http to take the rebuilt file (POST /admin/swap). */
static int swap_into_server(cli_options *opt) {
    char errstr[512], url[512], body[PATH_MAX + 32], auth[600], abs_path[PATH_MAX];
    char *token = NULL;
    long status = 0;
    if (command_admin_token(opt, &token, errstr, sizeof errstr) || !token) {
        fprintf(stderr, "lootlog: --swap needs the admin token (LOOTLOG_ADMIN_TOKEN or "
                        "--admin-token-file)\n");
        free(token);
        return 2;
    }
    if (!realpath(opt->db, abs_path)) {
        fprintf(stderr, "lootlog: %s: cannot resolve path\n", opt->db);
        free(token);
        return 2;
    }
    snprintf(url, sizeof url, "%s%s/admin/swap", strncmp(opt->http, "http", 4) ? "http://" : "",
             opt->http);
    json_t *payload = json_pack("{s:s}", "db", abs_path);
    char *text = json_dumps(payload, JSON_COMPACT);
    json_decref(payload);
    snprintf(body, sizeof body, "%s", text ? text : "{}");
    free(text);
    snprintf(auth, sizeof auth, "Authorization: Bearer %s", token);
    free(token);
    CURL *curl = curl_easy_init();
    struct curl_slist *headers = curl_slist_append(NULL, auth);
    headers = curl_slist_append(headers, "Content-Type: application/json");
    curl_easy_setopt(curl, CURLOPT_URL, url);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(curl, CURLOPT_TIMEOUT, 60L);
    CURLcode res = curl_easy_perform(curl);
    if (res == CURLE_OK) curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
    curl_slist_free_all(headers);
    curl_easy_cleanup(curl);
    if (res != CURLE_OK || status != 200) {
        fprintf(stderr, "lootlog: swap via %s failed: %s (HTTP %ld)\n", url,
                res != CURLE_OK ? curl_easy_strerror(res) : "refused", status);
        return 2;
    }
    printf("swap: %s now serves %s\n", opt->http, abs_path);
    return 0;
}

int command_replay(cli_options *opt) {
    char errstr[512];
    replay_summary summary;
    replay_config config = {
        .brokers = opt->brokers,
        .topic = opt->topic,
        .db_path = opt->db,
        .fold = {.guild_capacity = opt->guild_capacity},
        .from_offset = opt->from_offset,
        .from_time_ms = opt->from_time_ms,
        .until_offset = opt->until_offset,
        .until_time_ms = opt->until_time_ms,
        .verify_path = opt->verify_path,
        .batch_events = (size_t)opt->batch_events,
        .threads = opt->fold_threads,
        .prune_memory_bytes = (size_t)opt->prune_memory_mib << 20,
        .kafka_props = opt->kafka_props,
        .kafka_prop_count = opt->kafka_prop_count,
    };
    int rc = replay_run(&config, &summary, errstr, sizeof errstr);
    if (rc < 0) {
        fprintf(stderr, "lootlog: replay failed: %s\n", errstr);
        return 2;
    }
    printf("replay: %llu events in %.1f s (%.0f/s): %llu applied, %llu rejected, "
           "%llu duplicate, %llu dead-lettered",
           (unsigned long long)summary.events, summary.seconds,
           summary.seconds > 0 ? summary.events / summary.seconds : 0.0,
           (unsigned long long)summary.applied, (unsigned long long)summary.rejected,
           (unsigned long long)summary.duplicates, (unsigned long long)summary.dead_letters);
    if (summary.pending) printf(", %llu pending", (unsigned long long)summary.pending);
    if (summary.emitted_missing)
        printf("; %llu emitted guild events not in the log yet (serve produces them)",
               (unsigned long long)summary.emitted_missing);
    if (opt->verify_path)
        printf("; verify: %llu players compared, %llu differ",
               (unsigned long long)summary.players_compared,
               (unsigned long long)summary.players_differing);
    printf("\n");
    if (rc == 0 && opt->swap) return swap_into_server(opt);
    return rc;
}
