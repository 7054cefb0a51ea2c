/* metrics: the registry and its text exposition. HTTP series are created on first use
 * (route x method x status) on the loop thread; the histograms are lock-free (see
 * lib/histogram.h), so the fold threads and the loop never wait on each other. */
#include "server/metrics.h"

#include "state/codec.h"
#include "git_commit.h" /* generated: LOOTLOG_GIT_COMMIT */

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <inttypes.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#define MAX_ROUTES 64
#define MAX_HTTP_SERIES 256
#define FRESH_RING 256 /* writes awaiting the fold, per partition, whose freshness is timed */

/* The request's route and start travel with the request itself, in an input header that
 * metrics_track_request sets (after removing any a client sent): libevent frees a request
 * without calling its completion callback when the client went away first, so nothing
 * allocated per request could be freed reliably. */
#define TIMING_HEADER "X-Lootlog-Internal-Timing"

typedef struct {
    const char *route;
    int method;
    int status;
    histogram *latency;
} http_series;

typedef struct {
    int64_t offset;
    struct timespec acked_at;
} fresh_write;

typedef struct {
    fresh_write writes[FRESH_RING];
    size_t head, count;
} fresh_ring;

struct metrics {
    const char *version, *git_commit;
    const char *routes[MAX_ROUTES];
    size_t route_count;
    http_series http[MAX_HTTP_SERIES];
    size_t http_count;
    uint64_t http_untimed; /* requests beyond MAX_HTTP_SERIES series */
    histogram *produce_ack, *commit_seconds, *freshness;
    uint64_t produced_by_type[EVENT_TYPE_COUNT];
    uint64_t freshness_unsampled;
    fresh_ring *fresh[STORE_MAX_PARTITIONS]; /* allocated on a partition's first write */
    /* the status page's history */
    struct event *sample_timer;
    void (*collect)(void *arg, metrics_view *view);
    void *collect_arg;
    metrics_sample samples[METRICS_SAMPLES];
    size_t sample_head, sample_count;
};

static const char *const method_names[] = {"GET", "HEAD", "POST", "PUT", "DELETE", "OTHER"};
#define METHOD_OTHER 5

static int method_index(enum evhttp_cmd_type cmd) {
    switch (cmd) {
    case EVHTTP_REQ_GET: return 0;
    case EVHTTP_REQ_HEAD: return 1;
    case EVHTTP_REQ_POST: return 2;
    case EVHTTP_REQ_PUT: return 3;
    case EVHTTP_REQ_DELETE: return 4;
    default: return METHOD_OTHER;
    }
}

metrics *metrics_new(char *errstr, size_t errstr_size) {
    metrics *m = calloc(1, sizeof *m);
    if (!m) goto fail;
    m->version = LOOTLOG_VERSION;
    m->git_commit = LOOTLOG_GIT_COMMIT[0] ? LOOTLOG_GIT_COMMIT : "unknown";
    m->produce_ack = histogram_new();
    m->commit_seconds = histogram_new();
    m->freshness = histogram_new();
    if (!m->produce_ack || !m->commit_seconds || !m->freshness) goto fail;
    return m;
fail:
    metrics_free(m);
    snprintf(errstr, errstr_size, "out of memory");
    return NULL;
}

void metrics_free(metrics *m) {
    if (!m) return;
    metrics_stop_sampling(m);
    for (size_t i = 0; i < m->http_count; i++) histogram_free(m->http[i].latency);
    for (size_t p = 0; p < STORE_MAX_PARTITIONS; p++) free(m->fresh[p]);
    histogram_free(m->produce_ack);
    histogram_free(m->commit_seconds);
    histogram_free(m->freshness);
    free(m);
}

histogram *metrics_commit_histogram(metrics *m) { return m ? m->commit_seconds : NULL; }

/* ---------------------------------------------------------------- HTTP */

static int route_id(metrics *m, const char *route) {
    for (size_t i = 0; i < m->route_count; i++)
        if (m->routes[i] == route || strcmp(m->routes[i], route) == 0) return (int)i;
    if (m->route_count == MAX_ROUTES) return -1;
    m->routes[m->route_count] = route;
    return (int)m->route_count++;
}

static histogram *http_histogram(metrics *m, const char *route, int method, int status) {
    for (size_t i = 0; i < m->http_count; i++) {
        http_series *s = &m->http[i];
        if (s->route == route && s->method == method && s->status == status) return s->latency;
    }
    if (m->http_count == MAX_HTTP_SERIES) return NULL;
    histogram *h = histogram_new();
    if (!h) return NULL;
    m->http[m->http_count++] = (http_series){route, method, status, h};
    return h;
}

void metrics_request_done(struct evhttp_request *req, void *arg) {
    metrics *m = arg;
    if (!m) return;
    const char *timing = evhttp_find_header(evhttp_request_get_input_headers(req), TIMING_HEADER);
    int id;
    long long sec, nsec;
    if (!timing || sscanf(timing, "%d %lld %lld", &id, &sec, &nsec) != 3 || id < 0 ||
        (size_t)id >= m->route_count)
        return;
    struct timespec start = {(time_t)sec, (long)nsec};
    histogram *h = http_histogram(m, m->routes[id], method_index(evhttp_request_get_command(req)),
                                  evhttp_request_get_response_code(req));
    if (h)
        histogram_observe_since(h, &start);
    else
        m->http_untimed++;
}

void metrics_track_request(metrics *m, struct evhttp_request *req, const char *route) {
    if (!m) return;
    int id = route_id(m, route);
    if (id < 0) {
        m->http_untimed++;
        return;
    }
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    char timing[64];
    snprintf(timing, sizeof timing, "%d %lld %ld", id, (long long)now.tv_sec, (long)now.tv_nsec);
    struct evkeyvalq *headers = evhttp_request_get_input_headers(req);
    while (evhttp_remove_header(headers, TIMING_HEADER) == 0) {
    }
    /* read back in metrics_request_done, which the HTTP server calls at completion */
    evhttp_add_header(headers, TIMING_HEADER, timing);
}

/* ---------------------------------------------------------------- writes and freshness */

/* Observes the freshness of partition's remembered writes below next_offset. */
static void pass_fresh(metrics *m, int32_t partition, int64_t next_offset) {
    fresh_ring *ring = m->fresh[partition];
    while (ring && ring->count > 0 && ring->writes[ring->head].offset < next_offset) {
        histogram_observe_since(m->freshness, &ring->writes[ring->head].acked_at);
        ring->head = (ring->head + 1) % FRESH_RING;
        ring->count--;
    }
}

void metrics_write_acked(metrics *m, int event_type, int32_t partition, int64_t offset,
                         const struct timespec *produced_at, fold_engine *fold) {
    if (!m) return;
    histogram_observe_since(m->produce_ack, produced_at);
    if (event_type >= 0 && event_type < EVENT_TYPE_COUNT) m->produced_by_type[event_type]++;
    if (!fold || partition < 0 || partition >= STORE_MAX_PARTITIONS) return;
    int64_t next = fold_engine_next_offset(fold, partition);
    if (next < 0 && fold_engine_partition_lag(fold, partition) < 0) return; /* not folded here */
    if (next > offset) {
        histogram_observe(m->freshness, 0); /* folded before Kafka's answer reached us */
        return;
    }
    if (!m->fresh[partition]) m->fresh[partition] = calloc(1, sizeof *m->fresh[partition]);
    fresh_ring *ring = m->fresh[partition];
    if (!ring || ring->count == FRESH_RING) {
        /* Bounded memory: while the fold is this far behind, further writes go untimed
         * (counted); the ones timed already say how late it is. */
        m->freshness_unsampled++;
        return;
    }
    fresh_write *w = &ring->writes[(ring->head + ring->count) % FRESH_RING];
    w->offset = offset;
    clock_gettime(CLOCK_MONOTONIC, &w->acked_at);
    ring->count++;
}

void metrics_fold_committed(metrics *m, fold_engine *fold) {
    if (!m || !fold) return;
    for (int32_t p = 0; p < STORE_MAX_PARTITIONS; p++)
        if (m->fresh[p] && m->fresh[p]->count > 0) pass_fresh(m, p, fold_engine_next_offset(fold, p));
}

/* ---------------------------------------------------------------- sampling */

static int64_t unix_ms_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void take_sample(metrics *m) {
    metrics_view view;
    memset(&view, 0, sizeof view);
    m->collect(m->collect_arg, &view);
    metrics_sample *s = &m->samples[(m->sample_head + m->sample_count) % METRICS_SAMPLES];
    if (m->sample_count == METRICS_SAMPLES)
        m->sample_head = (m->sample_head + 1) % METRICS_SAMPLES;
    else
        m->sample_count++;
    memset(s, 0, sizeof *s);
    s->unix_ms = unix_ms_now();
    s->writes_acked = view.writes_acked;
    if (!view.fold) return;
    fold_engine_stats stats;
    fold_engine_get_stats(view.fold, &stats);
    s->folded = stats.applied + stats.rejected + stats.duplicates + stats.dead_letters;
    /* The first METRICS_SAMPLE_PARTITIONS partitions are charted; /metrics has them all. */
    size_t partitions = stats.partition_count;
    s->partition_count = partitions < METRICS_SAMPLE_PARTITIONS ? partitions
                                                                : METRICS_SAMPLE_PARTITIONS;
    for (size_t p = 0; p < s->partition_count; p++)
        s->lag[p] = fold_engine_partition_lag(view.fold, (int32_t)p);
}

static void on_sample_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    take_sample(arg);
}

int metrics_start_sampling(metrics *m, struct event_base *base,
                           void (*collect)(void *arg, metrics_view *view), void *arg) {
    if (!m) return 0;
    metrics_stop_sampling(m);
    m->collect = collect;
    m->collect_arg = arg;
    m->sample_timer = event_new(base, -1, EV_PERSIST, on_sample_tick, m);
    struct timeval every = {METRICS_SAMPLE_EVERY_S, 0};
    if (!m->sample_timer || event_add(m->sample_timer, &every)) {
        metrics_stop_sampling(m);
        return -1;
    }
    take_sample(m); /* the page has a starting point at once */
    return 0;
}

void metrics_stop_sampling(metrics *m) {
    if (!m || !m->sample_timer) return;
    event_free(m->sample_timer);
    m->sample_timer = NULL;
}

size_t metrics_history(const metrics *m, metrics_sample *out, size_t max) {
    size_t n = m->sample_count < max ? m->sample_count : max;
    size_t first = m->sample_count - n; /* the newest n */
    for (size_t i = 0; i < n; i++)
        out[i] = m->samples[(m->sample_head + first + i) % METRICS_SAMPLES];
    return n;
}

void metrics_summarize(metrics *m, metrics_summary *summary) {
    histogram_view v;
    memset(summary, 0, sizeof *summary);
    for (size_t i = 0; i < m->http_count; i++) {
        histogram_read(m->http[i].latency, &v);
        summary->http_requests += v.count;
    }
    histogram_read(m->freshness, &v);
    summary->freshness_p99_seconds = histogram_quantile(&v, 0.99);
    histogram_read(m->commit_seconds, &v);
    summary->commit_p99_seconds = histogram_quantile(&v, 0.99);
    histogram_read(m->produce_ack, &v);
    summary->produce_p99_seconds = histogram_quantile(&v, 0.99);
}

/* ---------------------------------------------------------------- exposition */

/* The page being written; a failed append marks it (the answer becomes a 500). */
typedef struct {
    struct evbuffer *buf;
    int failed;
} out_buf;

static void emit(out_buf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void emit(out_buf *out, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (evbuffer_add_vprintf(out->buf, fmt, ap) < 0) out->failed = 1;
    va_end(ap);
}

static void family(out_buf *out, const char *name, const char *type, const char *help) {
    emit(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Writes a label value with the format's escapes (backslash, quote, newline). */
static void label_value(out_buf *out, const char *value) {
    for (const char *c = value; *c; c++) {
        if (*c == '\\') emit(out, "\\\\");
        else if (*c == '"') emit(out, "\\\"");
        else if (*c == '\n') emit(out, "\\n");
        else emit(out, "%c", *c);
    }
}

/* One histogram's _bucket, _sum and _count lines; labels is "" or `a="b",c="d"`. */
static void histogram_lines(out_buf *out, const char *name, const char *labels,
                            const histogram *h) {
    histogram_view v;
    histogram_read(h, &v);
    const char *sep = labels[0] ? "," : "";
    for (int i = 0; i < HISTOGRAM_BUCKETS; i++)
        emit(out, "%s_bucket{%s%sle=\"%g\"} %" PRIu64 "\n", name, labels, sep, v.upper_bounds[i],
             v.cumulative[i]);
    emit(out, "%s_bucket{%s%sle=\"+Inf\"} %" PRIu64 "\n", name, labels, sep, v.count);
    emit(out, "%s_sum%s%s%s %.9f\n", name, sep[0] ? "{" : "", labels, sep[0] ? "}" : "",
         v.sum_seconds);
    emit(out, "%s_count%s%s%s %" PRIu64 "\n", name, sep[0] ? "{" : "", labels, sep[0] ? "}" : "",
         v.count);
}

static void render_http(metrics *m, out_buf *out) {
    family(out, "lootlog_http_request_duration_seconds", "histogram",
           "Time from a request's dispatch to its reply being sent, by route template, "
           "method and status.");
    for (size_t i = 0; i < m->http_count; i++) {
        const http_series *s = &m->http[i];
        char labels[512];
        if (strchr(s->route, '"') || strchr(s->route, '\\') || strchr(s->route, '\n'))
            continue; /* route templates are ours and plain; never write a broken line */
        snprintf(labels, sizeof labels, "route=\"%s\",method=\"%s\",status=\"%d\"", s->route,
                 method_names[s->method], s->status);
        histogram_lines(out, "lootlog_http_request_duration_seconds", labels, s->latency);
    }
    family(out, "lootlog_http_untimed_requests_total", "counter",
           "Requests not timed because the series table was full.");
    emit(out, "lootlog_http_untimed_requests_total %" PRIu64 "\n", m->http_untimed);
}

static void render_writes(metrics *m, const metrics_view *v, out_buf *out) {
    family(out, "lootlog_writes_total", "counter",
           "Write requests by result: acked by Kafka, failed (503), invalid (4xx).");
    emit(out, "lootlog_writes_total{result=\"acked\"} %" PRIu64 "\n", v->writes_acked);
    emit(out, "lootlog_writes_total{result=\"failed\"} %" PRIu64 "\n", v->writes_failed);
    emit(out, "lootlog_writes_total{result=\"invalid\"} %" PRIu64 "\n", v->requests_invalid);
    family(out, "lootlog_events_produced_total", "counter",
           "Events of HTTP writes acknowledged by Kafka, by event type.");
    for (int t = 0; t < EVENT_TYPE_COUNT; t++) {
        const char *name = codec_type_name((event_type)t);
        if (name && !codec_type_is_emitted((event_type)t))
            emit(out, "lootlog_events_produced_total{event_type=\"%s\"} %" PRIu64 "\n", name,
                 m->produced_by_type[t]);
    }
    family(out, "lootlog_produce_ack_seconds", "histogram",
           "Time from handing a write's event to the producer to Kafka's acknowledgement.");
    histogram_lines(out, "lootlog_produce_ack_seconds", "", m->produce_ack);
    family(out, "lootlog_parked_requests", "gauge", "Requests waiting for the fold.");
    emit(out, "lootlog_parked_requests %zu\n", v->parked);
    family(out, "lootlog_producer_queue", "gauge", "Events queued or in flight to Kafka.");
    emit(out, "lootlog_producer_queue %d\n", v->producer_queue);
    family(out, "lootlog_broker_ready", "gauge", "1 when every partition has a leader.");
    emit(out, "lootlog_broker_ready %d\n", v->broker_ready);
    if (v->in_group) {
        family(out, "lootlog_group_partitions_owned", "gauge",
               "Partitions the consumer group assigned this node (folded and served here).");
        emit(out, "lootlog_group_partitions_owned %d\n", v->partitions_owned);
        family(out, "lootlog_forwarded_total", "counter",
               "Requests for partitions owned elsewhere, by how the owner answered: relayed "
               "(any status), or failed (502/504/503 from this node).");
        emit(out, "lootlog_forwarded_total{result=\"relayed\"} %" PRIu64 "\n", v->forwarded);
        emit(out, "lootlog_forwarded_total{result=\"failed\"} %" PRIu64 "\n", v->forward_failed);
    }
}

static void render_fold(metrics *m, fold_engine *fold, out_buf *out) {
    fold_engine_stats st;
    fold_engine_get_stats(fold, &st);
    family(out, "lootlog_fold_events_total", "counter", "Records folded by outcome.");
    emit(out, "lootlog_fold_events_total{outcome=\"applied\"} %" PRIu64 "\n", st.applied);
    emit(out, "lootlog_fold_events_total{outcome=\"rejected\"} %" PRIu64 "\n", st.rejected);
    emit(out, "lootlog_fold_events_total{outcome=\"duplicate\"} %" PRIu64 "\n", st.duplicates);
    emit(out, "lootlog_fold_events_total{outcome=\"dead_lettered\"} %" PRIu64 "\n",
         st.dead_letters);
    emit(out, "lootlog_fold_events_total{outcome=\"pending\"} %" PRIu64 "\n", st.pending);
    family(out, "lootlog_fold_events_by_type_total", "counter",
           "Valid records folded (any outcome), by event type, the guild exchange's included.");
    for (int t = 0; t < EVENT_TYPE_COUNT; t++)
        emit(out, "lootlog_fold_events_by_type_total{event_type=\"%s\"} %" PRIu64 "\n",
             codec_type_name((event_type)t), fold_engine_folded_of_type(fold, t));
    family(out, "lootlog_fold_batches_total", "counter", "Fold transactions committed.");
    emit(out, "lootlog_fold_batches_total %" PRIu64 "\n", st.batches);
    family(out, "lootlog_fold_threads_catching_up", "gauge",
           "Fold threads folding at --fold-nice because a partition of theirs is more than "
           "10,000 records behind (the others fold at --fold-live-nice).");
    emit(out, "lootlog_fold_threads_catching_up %d\n", st.threads_catching_up);
    family(out, "lootlog_fold_speed_changes_total", "counter",
           "Times a fold thread went from catching up to keeping up or back.");
    emit(out, "lootlog_fold_speed_changes_total %" PRIu64 "\n", st.speed_changes);
    family(out, "lootlog_fold_lag", "gauge",
           "Records in the topic not folded yet, summed over partitions (-1: unknown).");
    emit(out, "lootlog_fold_lag %" PRId64 "\n", st.lag);
    family(out, "lootlog_fold_partition_lag", "gauge",
           "Records of the partition not folded yet: high watermark - next offset (-1: unknown).");
    for (size_t p = 0; p < st.partition_count && p < STORE_MAX_PARTITIONS; p++) {
        int64_t lag = fold_engine_partition_lag(fold, (int32_t)p);
        int64_t next = fold_engine_next_offset(fold, (int32_t)p);
        if (lag >= 0 || next >= 0)
            emit(out, "lootlog_fold_partition_lag{partition=\"%zu\"} %" PRId64 "\n", p, lag);
    }
    family(out, "lootlog_fold_partition_next_offset", "gauge",
           "The partition's next offset committed with its state (-1: nothing folded yet).");
    for (size_t p = 0; p < st.partition_count && p < STORE_MAX_PARTITIONS; p++) {
        int64_t lag = fold_engine_partition_lag(fold, (int32_t)p);
        int64_t next = fold_engine_next_offset(fold, (int32_t)p);
        if (lag >= 0 || next >= 0)
            emit(out, "lootlog_fold_partition_next_offset{partition=\"%zu\"} %" PRId64 "\n", p,
                 next);
    }
    family(out, "lootlog_fold_commit_seconds", "histogram",
           "Duration of one partition's fold transaction commit (rows, outcomes, offset).");
    histogram_lines(out, "lootlog_fold_commit_seconds", "", m->commit_seconds);
    family(out, "lootlog_freshness_seconds", "histogram",
           "Time from a write's 202 to the HTTP loop learning that the fold committed past "
           "its offset (when a GET ?after= of its token is answered).");
    histogram_lines(out, "lootlog_freshness_seconds", "", m->freshness);
    family(out, "lootlog_freshness_unsampled_total", "counter",
           "Acknowledged writes not timed for freshness (too many awaiting the fold).");
    emit(out, "lootlog_freshness_unsampled_total %" PRIu64 "\n", m->freshness_unsampled);
}

static void render_snapshots(snapshot_scheduler *s, out_buf *out) {
    uint64_t taken = 0, failed = 0;
    double seconds = 0;
    int64_t unix_time = 0;
    snapshot_scheduler_counts(s, &taken, &failed);
    snapshot_scheduler_last_success(s, &seconds, &unix_time);
    family(out, "lootlog_snapshots_total", "counter", "Snapshot attempts by result.");
    emit(out, "lootlog_snapshots_total{result=\"taken\"} %" PRIu64 "\n", taken);
    emit(out, "lootlog_snapshots_total{result=\"failed\"} %" PRIu64 "\n", failed);
    family(out, "lootlog_snapshot_last_duration_seconds", "gauge",
           "How long the last successful snapshot took (0: none yet).");
    emit(out, "lootlog_snapshot_last_duration_seconds %.3f\n", seconds);
    family(out, "lootlog_snapshot_last_success_timestamp_seconds", "gauge",
           "Unix time the last successful snapshot finished (0: none yet).");
    emit(out, "lootlog_snapshot_last_success_timestamp_seconds %" PRId64 "\n", unix_time);
}

char *metrics_render(metrics *m, const metrics_view *v) {
    out_buf out = {.buf = evbuffer_new()};
    char *text = NULL;
    if (!out.buf) return NULL;
    family(&out, "lootlog_build_info", "gauge", "Always 1; the labels say which build runs.");
    emit(&out, "lootlog_build_info{version=\"");
    label_value(&out, m->version);
    emit(&out, "\",commit=\"");
    label_value(&out, m->git_commit);
    emit(&out, "\"} 1\n");
    render_http(m, &out);
    render_writes(m, v, &out);
    if (v->fold) render_fold(m, v->fold, &out);
    if (v->snapshots) render_snapshots(v->snapshots, &out);
    size_t len = evbuffer_get_length(out.buf);
    if (!out.failed && (text = malloc(len + 1)) != NULL) {
        evbuffer_remove(out.buf, text, len);
        text[len] = '\0';
    }
    evbuffer_free(out.buf);
    return text;
}
