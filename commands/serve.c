#define _GNU_SOURCE /* renameat2 */
/* serve: `lootlog serve` wires the service together — the HTTP application
 * (server/api) on a libevent loop, the producer, the fold engine (a fixed range of
 * partitions, or those a consumer group assigns), the snapshot thread — and owns the
 * shutdown order and the swap of a rebuilt state folder (POST /admin/swap, on a thread
 * of its own). */
#include "commands/commands.h"
#include "commands/shared.h"
#include "hdfs/snapshot.h"
#include "kafka/fold_engine.h"
#include "kafka/group_view.h"
#include "kafka/producer.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "lib/wakeup.h"
#include "server/api.h"
#include "server/forward.h"
#include "server/http.h"
#include "server/metrics.h"
#include "state/catalog.h"
#include "state/store.h"
#include "state/store_set.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <event2/event.h>
#ifdef LOOTLOG_MIMALLOC
#include <mimalloc.h>
#endif

typedef struct swap_job swap_job;

typedef struct {
    struct event_base *base;
    producer *prod;
    api *rts;
    fold_engine *fold;
    swap_job *swap;          /* a POST /admin/swap in progress on its thread, or NULL */
    pthread_t swap_thread;
    store_set *readers;
    fold_engine_config fold_config;
    const char *db_path;
    wakeup *fold_wakeup;
    int64_t drain_deadline_ms;
    int fold_failed; /* the fold engine stopped on an error: serve exits with status 1 */
} serve_state;

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
    wakeup_drain(s->fold_wakeup);
    finish_swap(s); /* the swap thread wakes the loop through the same fd */
    if (s->rts) api_on_fold_commit(s->rts);
}

static void notify_fold_commit(void *opaque) { wakeup_notify(opaque); }

/* fold_engine_config.collect_memory: mimalloc (meson.build) keeps a block freed by another
 * thread on its page until the thread that allocated it looks; a fold thread waiting for
 * its turn looks here. The sanitizer builds' allocator needs nothing. */
static void collect_fold_memory(int force) {
#ifdef LOOTLOG_MIMALLOC
    mi_collect(force != 0);
#else
    (void)force;
#endif
}

/* Twice a second: a fold engine that stopped on an error it cannot retry (a store that
 * cannot be opened, a topic of more partitions than lootlog folds) ends serve, rather
 * than leave it answering reads from state that will never advance. */
static void on_fold_watch(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    serve_state *s = arg;
    fold_engine_stats stats;
    char why[512];
    if (!s->fold) return;
    fold_engine_get_stats(s->fold, &stats);
    if (!stats.failed) return;
    fold_engine_error(s->fold, why, sizeof why);
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
    if (producer_outstanding(s->prod) == 0 || clock_ms() >= s->drain_deadline_ms)
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

static uint64_t readable_generation(void *opaque, int32_t partition) {
    return fold_engine_partition_generation(opaque, partition);
}

/* With --group, readers are fenced by fold: a partition is read only while this node
 * owns it and its fold has opened the store (the folder may hold a stale copy of a
 * partition owned elsewhere), and reopened when it is restored anew. Without a group
 * every store in the folder is this node's to read. */
static void fence_readers(store_set *readers, fold_engine *fold, int group) {
    if (group) store_set_fence(readers, readable_generation, fold);
}

/* The HTTP loop's readers of dir, fenced by fold as fence_readers says. */
static store_set *readers_of(fold_engine *fold, int group, const char *dir, char *errstr,
                             size_t errstr_size) {
    store_set *readers = store_set_new(dir, errstr, errstr_size);
    if (readers) fence_readers(readers, fold, group);
    return readers;
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
    fold_engine *old_fold;
    char path[PATH_MAX];
    void (*done)(void *arg, int rc, const char *errstr);
    void *done_arg;
    fold_engine *new_fold;
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
    fold_engine_stop(job->old_fold);
    if (renameat2(AT_FDCWD, job->path, AT_FDCWD, s->db_path, RENAME_EXCHANGE)) {
        job->rc = -1;
        snprintf(job->errstr, sizeof job->errstr, "exchanging %s and %s failed: %s", job->path,
                 s->db_path, strerror(errno));
    }
    job->new_fold = fold_engine_start(&s->fold_config, start_err, sizeof start_err);
    if (job->new_fold)
        job->new_readers = readers_of(job->new_fold, s->fold_config.group_id != NULL, s->db_path,
                                      start_err, sizeof start_err);
    if (!job->new_fold || !job->new_readers) {
        job->fatal = 1;
        job->rc = -1;
        snprintf(job->errstr, sizeof job->errstr, "reopening failed: %s", start_err);
    }
    atomic_store(&job->finished, 1);
    wakeup_notify(s->fold_wakeup);
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
        fold_engine_stop(job->new_fold);
        store_set_free(job->new_readers);
        event_base_loopexit(s->base, NULL);
    } else {
        store_set *previous = s->readers;
        s->fold = job->new_fold;
        s->readers = job->new_readers;
        api_set_state(s->rts, s->readers, s->fold);
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
    /* The previous fold is the swap thread's from now on; reads keep the previous readers,
     * no longer fenced by that fold (it stops and is freed on the swap thread): their open
     * files are the previous stores, which no writer changes any more. */
    s->fold = NULL;
    store_set_fence(s->readers, NULL, NULL);
    api_set_state(s->rts, s->readers, NULL);
    if (pthread_create(&s->swap_thread, NULL, swap_thread_main, job)) {
        s->fold = job->old_fold;
        fence_readers(s->readers, s->fold, s->fold_config.group_id != NULL);
        api_set_state(s->rts, s->readers, s->fold);
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

static int owned_here(void *opaque, int32_t partition) { return fold_engine_owns(opaque, partition); }

int command_serve(cli_options *opt) {
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
    s.fold_wakeup = wakeup_new(errstr, sizeof errstr);
    if (!s.fold_wakeup) goto fail;
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
        fold_engine_config cc = {
            .brokers = opt->brokers,
            .topic = opt->topic,
            .db_dir = opt->db,
            .fold = {.guild_capacity = opt->guild_capacity},
            .threads = opt->fold_threads,
            .nice = opt->fold_nice,
            .live_nice = opt->fold_live_nice,
            .partition_first = opt->partition_first,
            .partition_last = opt->partition_last,
            .batch_max_events = (size_t)opt->batch_events,
            .batch_max_ms = opt->batch_ms,
            .kafka_props = opt->kafka_props,
            .kafka_prop_count = opt->kafka_prop_count,
            .emit = 1, /* the guild exchange's events go out from serve's outboxes */
            .on_commit = notify_fold_commit,
            .on_commit_opaque = s.fold_wakeup,
            .commit_seconds = metrics_commit_histogram(registry),
            .collect_memory = collect_fold_memory,
            .group_id = opt->group,
            .advertise = self,
        };
        if (opt->group && opt->snapshot_url) {
            command_folder_of(opt->db, restorer.work_dir, sizeof restorer.work_dir);
            cc.restore_partition = restore_partition_from_snapshot;
            cc.restore_opaque = &restorer;
        }
        s.fold_config = cc;
        s.db_path = opt->db;
        s.fold = fold_engine_start(&cc, errstr, sizeof errstr);
        if (!s.fold) goto fail;
        s.readers = readers_of(s.fold, opt->group != NULL, opt->db, errstr, sizeof errstr);
        if (!s.readers) goto fail;
    }
    if (opt->group) {
        view = group_view_start(opt->brokers, opt->group, opt->topic, opt->kafka_props,
                                opt->kafka_prop_count, errstr, sizeof errstr);
        if (!view) goto fail;
        if (!opt->no_forward && !(forward = forwarder_new(s.base, self, 5000, errstr, sizeof errstr)))
            goto fail;
    }
    if (command_admin_token(opt, &admin_token, errstr, sizeof errstr)) goto fail;
    if (opt->snapshot_url && !opt->no_fold) {
        snapshot_config sc = command_snapshot_config(opt, cat, snapshot_work_dir,
                                                  sizeof snapshot_work_dir);
        if (opt->group) { /* the folder may hold stale copies of others' partitions */
            sc.owned = owned_here;
            sc.owned_opaque = s.fold;
        }
        snapshots = snapshot_scheduler_start(&sc, opt->snapshot_interval_s, errstr, sizeof errstr);
        if (!snapshots) goto fail;
    }

    api_config rc_config = {
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
    s.rts = api_new(&rc_config, errstr, sizeof errstr);
    if (!s.rts) goto fail;
    if (!opt->no_http) {
        http_config hc = {.address = opt->http, .request_timeout_s = 30,
                          .read_timeout_ms = opt->read_timeout_ms,
                          .max_connections = opt->max_connections,
                          .access_log = opt->access_log,
                          .request_done = metrics_request_done, .request_done_arg = registry};
        http = http_server_new(s.base, &hc, api_handle, s.rts, errstr, sizeof errstr);
        if (!http) goto fail;
    }

    wake_ev = event_new(s.base, wakeup_fd(s.fold_wakeup), EV_READ | EV_PERSIST,
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
    s.drain_deadline_ms = clock_ms() + 5000;
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
    api_free(s.rts);          /* parked requests are answered */
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
        fold_engine_stop(s.swap->new_fold);
        store_set_free(s.swap->new_readers);
        free(s.swap);
    }
    group_view_stop(view);
    fold_engine_stop(s.fold);
    store_set_free(s.readers);
    free(admin_token);
    if (drain_ev) event_free(drain_ev);
    if (wake_ev) event_free(wake_ev);
    if (watch_ev) event_free(watch_ev);
    if (sigint_ev) event_free(sigint_ev);
    if (sigterm_ev) event_free(sigterm_ev);
    wakeup_free(s.fold_wakeup);
    metrics_free(registry); /* after the HTTP server and the fold: both report to it */
    catalog_free(cat);
    event_base_free(s.base);
    if (rc == 0) log_info("serve", "stopped cleanly");
    return rc;
}
