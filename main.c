#define _GNU_SOURCE /* renameat2 */
/* lootlog: one binary, several verbs (docs/design.md, "CLI"). main reads the options through
 * the table of cli/options.c (flags, then LOOTLOG_<NAME> from the environment, then
 * defaults), wires the modules of state/ and server/ together, and owns the event loop
 * and the shutdown order. */
#include "cli/options.h"
#include "cli/topic.h"
#include "server/gen.h"
#include "server/http.h"
#include "server/producer.h"
#include "server/routes.h"
#include "state/catalog.h"
#include "state/consumer.h"
#include "state/group_view.h"
#include "state/log.h"
#include "state/migrate.h"
#include "state/replay.h"
#include "state/snapshot.h"
#include "state/store.h"
#include "state/store_set.h"
#include "state/waiters.h"

#include <errno.h>
#include <fcntl.h>
#include <curl/curl.h>
#include <limits.h>
#include <unistd.h>
#include <event2/event.h>
#include <sys/stat.h>
#include <jansson.h>
#include <malloc.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifndef LOOTLOG_VERSION
#define LOOTLOG_VERSION "0.0.0"
#endif

/* Every verb's settings, parsed from the option table of cli/options.c. */
typedef cli_options options;

/* Migrates one SQLite file. Returns 0 or 1. */
static int migrate_file(const options *opt, const char *path) {
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
static int cmd_migrate(options *opt) {
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

static int cmd_gen(options *opt) {
    char errstr[512];
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
    };
    int rc = gen_run(&config, errstr, sizeof errstr);
    if (rc < 0) {
        fprintf(stderr, "lootlog: %s\n", errstr);
        return 2;
    }
    return rc;
}

/* The admin token: $LOOTLOG_ADMIN_TOKEN, else the first line of --admin-token-file.
 * Returns 0 with *token (malloc'ed, or NULL when none is configured), or -1. */
static int load_admin_token(const options *opt, char **token, char *errstr, size_t errstr_size) {
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

/* replay --swap: asks the serve at --http to take the rebuilt file (POST /admin/swap). */
static int swap_into_server(options *opt) {
    char errstr[512], url[512], body[PATH_MAX + 32], auth[600], abs_path[PATH_MAX];
    char *token = NULL;
    long status = 0;
    if (load_admin_token(opt, &token, errstr, sizeof errstr) || !token) {
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

static int cmd_replay(options *opt) {
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

/* The folder of path, into dir (for scratch files on the database's file system). */
static void folder_of(const char *path, char *dir, size_t dir_size) {
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, dir_size, ".");
    else if (slash == path) snprintf(dir, dir_size, "/");
    else snprintf(dir, dir_size, "%.*s", (int)(slash - path), path);
}

static snapshot_config snapshot_config_from(const options *opt, const catalog *cat,
                                            char *work_dir, size_t work_dir_size) {
    folder_of(opt->db, work_dir, work_dir_size);
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

static int cmd_snapshot(options *opt) {
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
    snapshot_config config = snapshot_config_from(opt, cat, work_dir, sizeof work_dir);
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

static int cmd_restore(options *opt) {
    char errstr[512], work_dir[1024], id[32];
    if (!opt->snapshot_url) {
        fprintf(stderr, "lootlog: restore needs --snapshot-url\n");
        return 2;
    }
    folder_of(opt->db, work_dir, sizeof work_dir);
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

/* ---------------------------------------------------------------- serve */

typedef struct swap_job swap_job;

typedef struct {
    struct event_base *base;
    producer *prod;
    routes *rts;
    consumer *fold;
    swap_job *swap;          /* a POST /admin/swap in progress on its thread, or NULL */
    pthread_t swap_thread;
    store_set *readers;
    consumer_config fold_config;
    const char *db_path;
    waiters *fold_waiters;
    int64_t drain_deadline_ms;
    int fold_failed; /* the fold engine stopped on an error: serve exits with status 1 */
} serve_state;

static int64_t monotonic_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_signal(evutil_socket_t sig, short what, void *arg) {
    (void)what;
    serve_state *s = arg;
    log_info("serve", "signal %d: shutting down", (int)sig);
    event_base_loopexit(s->base, NULL);
}

static void finish_swap(serve_state *s);

static void on_fold_commit_fd(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    serve_state *s = arg;
    waiters_drain(s->fold_waiters);
    finish_swap(s); /* the swap thread wakes the loop through the same fd */
    if (s->rts) routes_on_fold_commit(s->rts);
}

static void notify_fold_commit(void *opaque) { waiters_notify(opaque); }

/* Twice a second: a fold engine that stopped on an error it cannot retry (a store that
 * cannot be opened, a topic of more partitions than lootlog folds) ends serve, rather
 * than leave it answering reads from state that will never advance. */
static void on_fold_watch(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    serve_state *s = arg;
    consumer_stats stats;
    char why[512];
    if (!s->fold) return;
    consumer_get_stats(s->fold, &stats);
    if (!stats.failed) return;
    consumer_error(s->fold, why, sizeof why);
    log_error("serve", "the fold stopped: %s; shutting down", why);
    s->fold_failed = 1;
    event_base_loopexit(s->base, NULL);
}

/* During shutdown: keep the loop running until every produced event has its delivery
 * report (so each waiting client gets its answer) or the deadline passes. */
static void on_drain_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    serve_state *s = arg;
    if (producer_outstanding(s->prod) == 0 || monotonic_ms() >= s->drain_deadline_ms)
        event_base_loopexit(s->base, NULL);
}

/* 1 when dir holds at least one store with folded state, and every store there holds
 * topic's state. */
static int folder_holds_state(const char *dir, const char *topic, char *errstr,
                              size_t errstr_size) {
    int32_t partitions[STORE_MAX_PARTITIONS];
    size_t count = 0;
    int found = 0;
    char path[PATH_MAX];
    if (store_list_partitions(dir, partitions, STORE_MAX_PARTITIONS, &count, errstr, errstr_size))
        return 0;
    for (size_t i = 0; i < count; i++) {
        int64_t next = -1;
        store_path(dir, partitions[i], path, sizeof path);
        store *probe = store_open(path, partitions[i], STORE_READER, errstr, errstr_size);
        if (!probe) return 0;
        char held[256] = "";
        int rc = store_get_next_offset(probe, &next) || store_get_topic(probe, held, sizeof held);
        store_close(probe);
        if (rc == 0 && held[0] && strcmp(held, topic) != 0) {
            snprintf(errstr, errstr_size, "%s holds the state of topic '%s', not '%s'", path,
                     held, topic);
            return 0;
        }
        if (rc == 0 && next >= 0) found = 1;
    }
    if (!found) snprintf(errstr, errstr_size, "%s holds no folded state", dir);
    return found;
}

/* POST /admin/swap: the fold finishes its batches and stops, the rebuilt folder and the
 * live one trade places in one atomic rename (each store keeps its WAL beside it, so
 * nothing is deleted under another reader), and a new fold resumes from the rebuilt
 * stores' offsets. The previous state stays at the rebuilt folder's path for the
 * operator to inspect or delete.
 *
 * Stopping and starting the fold's Kafka clients takes time (closing, flushing the
 * outbox), so it runs on a thread of its own while the HTTP loop goes on serving: reads
 * are answered from the previous state's readers (their open files are the previous
 * stores, wherever the rename puts them) until the new fold and readers take over on the
 * loop thread; writes go on; requests waiting for the fold wait for the new one. */
struct swap_job {
    serve_state *s;
    consumer *old_fold;
    char path[PATH_MAX];
    void (*done)(void *arg, int rc, const char *errstr);
    void *done_arg;
    consumer *new_fold;
    store_set *new_readers;
    int rc;        /* 0 swapped; -1 not (errstr), the previous state serving again */
    int fatal;     /* no state could be opened afterwards: serve stops */
    char errstr[PATH_MAX * 2 + 600];
    atomic_int finished;
};

static void *swap_thread_main(void *arg) {
    swap_job *job = arg;
    serve_state *s = job->s;
    char start_err[512];
    consumer_stop(job->old_fold);
    if (renameat2(AT_FDCWD, job->path, AT_FDCWD, s->db_path, RENAME_EXCHANGE)) {
        job->rc = -1;
        snprintf(job->errstr, sizeof job->errstr, "exchanging %s and %s failed: %s", job->path,
                 s->db_path, strerror(errno));
    }
    job->new_fold = consumer_start(&s->fold_config, start_err, sizeof start_err);
    if (job->new_fold) job->new_readers = store_set_new(s->db_path, start_err, sizeof start_err);
    if (!job->new_fold || !job->new_readers) {
        job->fatal = 1;
        job->rc = -1;
        snprintf(job->errstr, sizeof job->errstr, "reopening failed: %s", start_err);
    }
    atomic_store(&job->finished, 1);
    waiters_notify(s->fold_waiters);
    return NULL;
}

/* On the loop thread, once the swap thread is done: the new fold and readers serve. */
static void finish_swap(serve_state *s) {
    swap_job *job = s->swap;
    if (!job || !atomic_load(&job->finished)) return;
    pthread_join(s->swap_thread, NULL);
    s->swap = NULL;
    if (job->fatal) {
        /* Without state we cannot serve reads honestly: stop cleanly. */
        log_error("serve", "swap: %s", job->errstr);
        consumer_stop(job->new_fold);
        store_set_free(job->new_readers);
        event_base_loopexit(s->base, NULL);
    } else {
        store_set *previous = s->readers;
        s->fold = job->new_fold;
        s->readers = job->new_readers;
        routes_set_state(s->rts, s->readers, s->fold);
        store_set_free(previous);
        log_info("serve", "swap: done%s", job->rc ? " (exchange failed; kept the old state)"
                                                  : "; the previous state is at the rebuilt path");
    }
    job->done(job->done_arg, job->rc, job->errstr);
    free(job);
}

static int swap_state(void *opaque, const char *path,
                      void (*done)(void *arg, int rc, const char *errstr), void *done_arg,
                      char *errstr, size_t errstr_size) {
    serve_state *s = opaque;
    if (s->swap) {
        snprintf(errstr, errstr_size, "a swap is in progress");
        return -1;
    }
    if (!s->fold) {
        snprintf(errstr, errstr_size, "this server does not fold");
        return -1;
    }
    if (!folder_holds_state(path, s->fold_config.topic, errstr, errstr_size)) return -1;
    swap_job *job = calloc(1, sizeof *job);
    if (!job || strlen(path) >= sizeof job->path) {
        free(job);
        snprintf(errstr, errstr_size, "cannot start the swap");
        return -1;
    }
    job->s = s;
    job->old_fold = s->fold;
    snprintf(job->path, sizeof job->path, "%s", path);
    job->done = done;
    job->done_arg = done_arg;
    log_info("serve", "swap: replacing %s with %s", s->db_path, path);
    /* The previous fold is the swap thread's from now on; reads keep the previous readers. */
    s->fold = NULL;
    routes_set_state(s->rts, s->readers, NULL);
    if (pthread_create(&s->swap_thread, NULL, swap_thread_main, job)) {
        s->fold = job->old_fold;
        routes_set_state(s->rts, s->readers, s->fold);
        free(job);
        snprintf(errstr, errstr_size, "cannot start the swap thread");
        return -1;
    }
    s->swap = job;
    return 0;
}

/* serve --group: where a newly assigned partition's store may come from (HDFS). */
typedef struct {
    const char *url, *topic, *db;
    char work_dir[1024];
} partition_restorer;

static int restore_partition_from_snapshot(void *opaque, int32_t partition, int64_t local_offset,
                                           char *snapshot_id, int64_t *offset, char *errstr,
                                           size_t errstr_size) {
    partition_restorer *pr = opaque;
    return snapshot_restore_partition(pr->url, pr->topic, partition, local_offset, pr->db,
                                      pr->work_dir, 30000, snapshot_id, offset, errstr,
                                      errstr_size);
}

static int owned_here(void *opaque, int32_t partition) { return consumer_owns(opaque, partition); }

static uint64_t readable_generation(void *opaque, int32_t partition) {
    return consumer_partition_generation(opaque, partition);
}

static int cmd_serve(options *opt) {
    char errstr[512];
    int rc = 1;
    serve_state s = {0};
    catalog *cat = NULL;
    metrics *registry = NULL;
    char *admin_token = NULL;
    char snapshot_work_dir[1024];
    snapshot_scheduler *snapshots = NULL;
    http_server *http = NULL;
    struct event *sigint_ev = NULL, *sigterm_ev = NULL, *wake_ev = NULL, *drain_ev = NULL;
    struct event *watch_ev = NULL;
    group_view *view = NULL;
    forwarder *forward = NULL;
    partition_restorer restorer = {.url = opt->snapshot_url, .topic = opt->topic, .db = opt->db};
    const char *self = opt->advertise ? opt->advertise : opt->http;

    signal(SIGPIPE, SIG_IGN);
    if (opt->group && (opt->partition_first >= 0 || opt->no_fold)) {
        fprintf(stderr, "lootlog: --group takes its partitions from the group: not with %s\n",
                opt->no_fold ? "--no-fold" : "--partitions");
        return 2;
    }
    /* The changelist folds the per-request event changes of evhttp (stop reading, start
     * writing, and back) into one epoll_ctl per loop pass; it is unsafe only with
     * dup()ed descriptors, which serve never makes. */
    struct event_config *base_config = event_config_new();
    if (base_config)
        event_config_set_flag(base_config, EVENT_BASE_FLAG_EPOLL_USE_CHANGELIST);
    s.base = base_config ? event_base_new_with_config(base_config) : NULL;
    if (base_config) event_config_free(base_config);
    if (!s.base) {
        fprintf(stderr, "lootlog: event_base_new failed\n");
        return 1;
    }
    cat = catalog_load(opt->catalog_path, errstr, sizeof errstr);
    if (!cat) goto fail;
    s.fold_waiters = waiters_new(errstr, sizeof errstr);
    if (!s.fold_waiters) goto fail;
    registry = metrics_new(errstr, sizeof errstr);
    if (!registry) goto fail;

    producer_config pc = {
        .brokers = opt->brokers,
        .topic = opt->topic,
        .delivery_timeout_ms = opt->delivery_timeout_ms,
        .kafka_props = opt->kafka_props,
        .kafka_prop_count = opt->kafka_prop_count,
    };
    s.prod = producer_new(s.base, &pc, errstr, sizeof errstr);
    if (!s.prod) goto fail;

    if (!opt->no_fold) {
        consumer_config cc = {
            .brokers = opt->brokers,
            .topic = opt->topic,
            .db_dir = opt->db,
            .fold = {.guild_capacity = opt->guild_capacity},
            .threads = opt->fold_threads,
            .nice = opt->fold_nice,
            .partition_first = opt->partition_first,
            .partition_last = opt->partition_last,
            .batch_max_events = (size_t)opt->batch_events,
            .batch_max_ms = opt->batch_ms,
            .kafka_props = opt->kafka_props,
            .kafka_prop_count = opt->kafka_prop_count,
            .emit = 1, /* the guild exchange's events go out from serve's outboxes */
            .on_commit = notify_fold_commit,
            .on_commit_opaque = s.fold_waiters,
            .commit_seconds = metrics_commit_histogram(registry),
            .group_id = opt->group,
            .advertise = self,
        };
        if (opt->group && opt->snapshot_url) {
            folder_of(opt->db, restorer.work_dir, sizeof restorer.work_dir);
            cc.restore_partition = restore_partition_from_snapshot;
            cc.restore_opaque = &restorer;
        }
        s.fold_config = cc;
        s.db_path = opt->db;
        s.fold = consumer_start(&cc, errstr, sizeof errstr);
        if (!s.fold) goto fail;
        s.readers = store_set_new(opt->db, errstr, sizeof errstr);
        if (!s.readers) goto fail;
        if (opt->group) store_set_fence(s.readers, readable_generation, s.fold);
    }
    if (opt->group) {
        view = group_view_start(opt->brokers, opt->group, opt->topic, opt->kafka_props,
                                opt->kafka_prop_count, errstr, sizeof errstr);
        if (!view) goto fail;
        if (!opt->no_forward && !(forward = forwarder_new(s.base, self, 5000, errstr, sizeof errstr)))
            goto fail;
    }
    if (load_admin_token(opt, &admin_token, errstr, sizeof errstr)) goto fail;
    if (opt->snapshot_url && !opt->no_fold) {
        snapshot_config sc = snapshot_config_from(opt, cat, snapshot_work_dir,
                                                  sizeof snapshot_work_dir);
        if (opt->group) { /* the folder may hold stale copies of others' partitions */
            sc.owned = owned_here;
            sc.owned_opaque = s.fold;
        }
        snapshots = snapshot_scheduler_start(&sc, opt->snapshot_interval_s, errstr, sizeof errstr);
        if (!snapshots) goto fail;
    }

    routes_config rc_config = {
        .base = s.base,
        .cat = cat,
        .prod = s.prod,
        .readers = s.readers,
        .fold = s.fold,
        .default_wait_ms = opt->wait_ms,
        .max_parked = opt->max_parked,
        .write_timeout_ms = opt->delivery_timeout_ms,
        .ready_max_lag = opt->ready_max_lag,
        .partition_first = opt->partition_first,
        .partition_last = opt->partition_last,
        .admin_token = admin_token,
        .swap_db = swap_state,
        .swap_opaque = &s,
        .snapshots = snapshots,
        .metrics = registry,
        .group = view,
        .forward = forward,
        .self = self,
        .group_id = opt->group,
    };
    s.rts = routes_new(&rc_config, errstr, sizeof errstr);
    if (!s.rts) goto fail;
    if (!opt->no_http) {
        http_config hc = {.address = opt->http, .request_timeout_s = 30,
                          .read_timeout_ms = opt->read_timeout_ms,
                          .max_connections = opt->max_connections,
                          .access_log = opt->access_log,
                          .request_done = metrics_request_done, .request_done_arg = registry};
        http = http_server_new(s.base, &hc, routes_handle, s.rts, errstr, sizeof errstr);
        if (!http) goto fail;
    }

    wake_ev = event_new(s.base, waiters_fd(s.fold_waiters), EV_READ | EV_PERSIST,
                        on_fold_commit_fd, &s);
    sigint_ev = evsignal_new(s.base, SIGINT, on_signal, &s);
    sigterm_ev = evsignal_new(s.base, SIGTERM, on_signal, &s);
    if (!wake_ev || !sigint_ev || !sigterm_ev || event_add(wake_ev, NULL) ||
        event_add(sigint_ev, NULL) || event_add(sigterm_ev, NULL)) {
        snprintf(errstr, sizeof errstr, "registering loop events failed");
        goto fail;
    }
    struct timeval watch_every = {0, 500 * 1000};
    watch_ev = event_new(s.base, -1, EV_PERSIST, on_fold_watch, &s);
    if (!watch_ev || event_add(watch_ev, &watch_every)) {
        snprintf(errstr, sizeof errstr, "registering the fold watch failed");
        goto fail;
    }
    log_info("serve", "lootlog %s: http %s, brokers %s, topic %s, db %s%s", LOOTLOG_VERSION,
             opt->no_http ? "off" : opt->http, opt->brokers, opt->topic, opt->db,
             opt->no_fold ? " (no fold)" : "");

    event_base_dispatch(s.base);

    /* Shutdown: stop taking connections; keep the loop running until in-flight produces
     * have their delivery reports (each waiting client gets its answer); fail what is
     * left in the producer; answer parked requests; let the loop flush those replies;
     * only then free the HTTP server, which frees its requests. */
    http_server_stop_accepting(http);
    s.drain_deadline_ms = monotonic_ms() + 5000;
    drain_ev = event_new(s.base, -1, EV_PERSIST, on_drain_tick, &s);
    struct timeval tick = {0, 20 * 1000};
    if (drain_ev && event_add(drain_ev, &tick) == 0 && producer_outstanding(s.prod) > 0)
        event_base_dispatch(s.base);
    rc = s.fold_failed ? 1 : 0;
    goto cleanup;
fail:
    log_error("serve", "%s", errstr);
cleanup:
    if (drain_ev) event_free(drain_ev);
    drain_ev = NULL;
    producer_free(s.prod, 2000); /* remaining deliveries fail: their clients get a 503 */
    routes_free(s.rts);          /* parked requests are answered */
    s.rts = NULL;                /* fold commits during the flush below must not reach it */
    forwarder_free(forward);     /* requests still with an owner are answered 503 */
    if (http) {
        struct timeval flush = {0, 200 * 1000};
        event_base_loopexit(s.base, &flush);
        event_base_dispatch(s.base);
    }
    http_server_free(http);
    snapshot_scheduler_stop(snapshots);
    if (s.swap) { /* stopped during a swap: its request went with the HTTP server */
        pthread_join(s.swap_thread, NULL);
        consumer_stop(s.swap->new_fold);
        store_set_free(s.swap->new_readers);
        free(s.swap);
    }
    group_view_stop(view);
    consumer_stop(s.fold);
    store_set_free(s.readers);
    free(admin_token);
    if (drain_ev) event_free(drain_ev);
    if (wake_ev) event_free(wake_ev);
    if (watch_ev) event_free(watch_ev);
    if (sigint_ev) event_free(sigint_ev);
    if (sigterm_ev) event_free(sigterm_ev);
    waiters_free(s.fold_waiters);
    metrics_free(registry); /* after the HTTP server and the fold: both report to it */
    catalog_free(cat);
    event_base_free(s.base);
    if (rc == 0) log_info("serve", "stopped cleanly");
    return rc;
}

int main(int argc, char **argv) {
    options opt;
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        cli_print_usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 2 : 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("lootlog %s\n", LOOTLOG_VERSION);
        return 0;
    }
    unsigned verb = cli_verb_find(argv[1]);
    if (!verb) {
        fprintf(stderr, "lootlog: unknown verb '%s' (lootlog --help lists them)\n", argv[1]);
        return 2;
    }
    int rc = cli_parse(verb, argc - 1, argv + 1, &opt);
    if (rc) return rc == 1 ? 0 : 2;
    if (verb != CLI_TOPIC && opt.positional_count) {
        fprintf(stderr, "lootlog: unexpected argument '%s'\n", opt.positional[0]);
        return 2;
    }
    log_set_format(opt.log_format == CLI_LOG_JSON ? LOG_FORMAT_JSON : LOG_FORMAT_TEXT);
    curl_global_init(CURL_GLOBAL_DEFAULT); /* once, before any thread: WebHDFS and --swap */
    /* SQLite's memory statistics take one process-wide mutex on every allocation: the
     * fold threads, each with its own connections, would queue on it. Nothing reads
     * them, so they are off (before any connection opens). */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    /* One malloc arena per fold thread keeps each thread's freed memory to itself, and
     * with a thread per partition the resident set grows with the partitions; two arenas
     * serve them as fast (bench/: replay rate unchanged) with far less held memory. */
    mallopt(M_ARENA_MAX, 2);
    switch (verb) {
    case CLI_SERVE: return cmd_serve(&opt);
    case CLI_TOPIC: return topic_command(&opt);
    case CLI_MIGRATE: return cmd_migrate(&opt);
    case CLI_GEN: return cmd_gen(&opt);
    case CLI_REPLAY: return cmd_replay(&opt);
    case CLI_SNAPSHOT: return cmd_snapshot(&opt);
    case CLI_RESTORE: return cmd_restore(&opt);
    case CLI_OPTIONS:
        if (opt.markdown) cli_print_markdown(stdout);
        else cli_print_usage(stdout);
        return 0;
    }
    return 2;
}
