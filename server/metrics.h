/* metrics: the registry behind GET /metrics (Prometheus text format 0.0.4) and the
 * history the status page charts. main creates one registry and hands it down: the
 * routes time requests and writes on the loop thread, the fold engine times its commits
 * on its own threads (metrics_commit_histogram), and every histogram is lock-free, so
 * no thread waits on another to be measured. The series are listed in
 * docs/operations.md, "Metrics". */
#ifndef LOOTLOG_METRICS_H
#define LOOTLOG_METRICS_H

#include "kafka/fold_engine.h"
#include "lib/histogram.h"
#include "hdfs/snapshot.h"

#include <event2/event.h>
#include <event2/http.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

typedef struct metrics metrics;

/* What the routes know at the moment of a scrape or a sample. */
typedef struct {
    uint64_t writes_acked, writes_failed, requests_invalid;
    size_t parked;
    int producer_queue;
    int broker_ready;
    fold_engine *fold;                /* NULL with --no-fold */
    snapshot_scheduler *snapshots; /* NULL without --snapshot-url */
    int in_group;                  /* serve --group: the forwarding series below apply */
    uint64_t forwarded, forward_failed; /* reads relayed to their owner; answered 502/504/503 */
    int partitions_owned;          /* partitions this node folds and serves */
} metrics_view;

/* A registry with every count at 0. NULL with errstr when out of memory. */
metrics *metrics_new(char *errstr, size_t errstr_size);
/* Stops sampling and frees. Call after the HTTP server is freed (a request completing
 * reports here). NULL is a no-op. */
void metrics_free(metrics *m);

/* The fold engine's commit-duration histogram (fold_engine_config.commit_seconds); owned
 * by m. */
histogram *metrics_commit_histogram(metrics *m);

/* Loop thread: times req from now until its reply has been sent, then counts it under
 * route (a template such as "/inventory/{user}", never the raw path; static storage),
 * its method and its status. m NULL is a no-op. */
void metrics_track_request(metrics *m, struct evhttp_request *req, const char *route);
/* The HTTP server's completion hook (http_config.request_done, arg: the metrics): observes
 * the latency of a request metrics_track_request started timing. */
void metrics_request_done(struct evhttp_request *req, void *arg);

/* Loop thread, when Kafka acknowledged a write produced at produced_at (monotonic):
 * observes the produce acknowledgement, counts the event under its type (event_type of
 * state/codec.h), and remembers (partition, offset, now) to observe freshness once fold
 * (NULL: no fold here, nothing to wait for) has committed past the offset. */
void metrics_write_acked(metrics *m, int event_type, int32_t partition, int64_t offset,
                         const struct timespec *produced_at, fold_engine *fold);

/* Loop thread, after the fold committed: observes the freshness of every remembered
 * write it has now passed. */
void metrics_fold_committed(metrics *m, fold_engine *fold);

/* Starts a timer on base that every METRICS_SAMPLE_EVERY_S seconds asks collect for a
 * view and keeps a sample of it (the status page's charts). Returns 0 or -1. */
#define METRICS_SAMPLE_EVERY_S 5
#define METRICS_SAMPLES 120 /* 10 minutes */
#define METRICS_SAMPLE_PARTITIONS 32 /* the first partitions charted; /metrics has all */
int metrics_start_sampling(metrics *m, struct event_base *base,
                           void (*collect)(void *arg, metrics_view *view), void *arg);
/* Stops the timer (before collect's arg goes away). NULL is a no-op. */
void metrics_stop_sampling(metrics *m);

typedef struct {
    int64_t unix_ms;
    uint64_t writes_acked; /* running totals: the rates are their differences */
    uint64_t folded;       /* records folded: applied + rejected + duplicate + dead */
    size_t partition_count;
    int64_t lag[METRICS_SAMPLE_PARTITIONS]; /* -1: unknown */
} metrics_sample;

/* Copies the samples, oldest first, into out (up to max); returns their number. */
size_t metrics_history(const metrics *m, metrics_sample *out, size_t max);

/* The figures the status page shows beside its charts; what /metrics says too. */
typedef struct {
    uint64_t http_requests; /* answered since start, every route */
    /* p99 estimates: the upper bound of the bucket holding the 99th percentile */
    double freshness_p99_seconds, commit_p99_seconds, produce_p99_seconds;
} metrics_summary;
void metrics_summarize(metrics *m, metrics_summary *summary);

/* Renders every series. Returns a malloc'ed string the caller frees, or NULL. */
char *metrics_render(metrics *m, const metrics_view *view);

#endif
