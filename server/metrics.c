/* metrics: text exposition format 0.0.4, written into a growing buffer. */
#include "metrics.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

typedef struct {
    char *text;
    size_t len, cap;
    int failed;
} out_buf;

static void emit(out_buf *out, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void emit(out_buf *out, const char *fmt, ...) {
    va_list ap;
    for (;;) {
        if (out->failed) return;
        va_start(ap, fmt);
        int n = vsnprintf(out->text + out->len, out->cap - out->len, fmt, ap);
        va_end(ap);
        if (n >= 0 && (size_t)n < out->cap - out->len) {
            out->len += (size_t)n;
            return;
        }
        size_t grown = out->cap * 2 + (n > 0 ? (size_t)n : 0);
        char *text = realloc(out->text, grown);
        if (!text) {
            out->failed = 1;
            return;
        }
        out->text = text;
        out->cap = grown;
    }
}

static void metric(out_buf *out, const char *name, const char *type, const char *help) {
    emit(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

char *metrics_render(const metrics_view *v) {
    out_buf out = {.text = malloc(4096), .cap = 4096};
    if (!out.text) return NULL;
    out.text[0] = '\0';
    metric(&out, "lootlog_http_requests_total", "counter", "HTTP requests by route.");
    for (size_t i = 0; i < v->route_count; i++)
        emit(&out, "lootlog_http_requests_total{route=\"%s\"} %llu\n", v->routes[i].route,
             (unsigned long long)v->routes[i].requests);
    metric(&out, "lootlog_writes_total", "counter",
           "Write requests by result: acked by Kafka, failed (503), invalid (4xx).");
    emit(&out, "lootlog_writes_total{result=\"acked\"} %llu\n",
         (unsigned long long)v->writes_acked);
    emit(&out, "lootlog_writes_total{result=\"failed\"} %llu\n",
         (unsigned long long)v->writes_failed);
    emit(&out, "lootlog_writes_total{result=\"invalid\"} %llu\n",
         (unsigned long long)v->requests_invalid);
    metric(&out, "lootlog_parked_requests", "gauge", "Requests waiting for the fold.");
    emit(&out, "lootlog_parked_requests %zu\n", v->parked);
    metric(&out, "lootlog_producer_queue", "gauge", "Events queued or in flight to Kafka.");
    emit(&out, "lootlog_producer_queue %d\n", v->producer_queue);
    metric(&out, "lootlog_broker_ready", "gauge", "1 when every partition has a leader.");
    emit(&out, "lootlog_broker_ready %d\n", v->broker_ready);
    if (v->has_fold) {
        metric(&out, "lootlog_fold_events_total", "counter", "Records folded by outcome.");
        emit(&out, "lootlog_fold_events_total{outcome=\"applied\"} %llu\n",
             (unsigned long long)v->fold.applied);
        emit(&out, "lootlog_fold_events_total{outcome=\"rejected\"} %llu\n",
             (unsigned long long)v->fold.rejected);
        emit(&out, "lootlog_fold_events_total{outcome=\"duplicate\"} %llu\n",
             (unsigned long long)v->fold.duplicates);
        emit(&out, "lootlog_fold_events_total{outcome=\"dead_lettered\"} %llu\n",
             (unsigned long long)v->fold.dead_letters);
        metric(&out, "lootlog_fold_batches_total", "counter", "Fold transactions committed.");
        emit(&out, "lootlog_fold_batches_total %llu\n", (unsigned long long)v->fold.batches);
        metric(&out, "lootlog_fold_lag", "gauge",
               "Records in the topic not folded yet (-1: unknown).");
        emit(&out, "lootlog_fold_lag %lld\n", (long long)v->fold.lag);
    }
    if (v->has_snapshots) {
        metric(&out, "lootlog_snapshots_total", "counter", "Snapshot attempts by result.");
        emit(&out, "lootlog_snapshots_total{result=\"taken\"} %llu\n",
             (unsigned long long)v->snapshots_taken);
        emit(&out, "lootlog_snapshots_total{result=\"failed\"} %llu\n",
             (unsigned long long)v->snapshots_failed);
    }
    if (out.failed) {
        free(out.text);
        return NULL;
    }
    return out.text;
}
