/* metrics: the Prometheus text exposition of GET /metrics, from counters the routes
 * keep on the loop thread and the fold's stats. */
#ifndef LOOTLOG_METRICS_H
#define LOOTLOG_METRICS_H

#include "../state/consumer.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *route; /* route name, e.g. "purchases" */
    uint64_t requests;
} metrics_route;

typedef struct {
    const metrics_route *routes;
    size_t route_count;
    uint64_t writes_acked, writes_failed, requests_invalid;
    size_t parked;
    int producer_queue;
    int broker_ready;
    int has_fold;
    consumer_stats fold;
    int has_snapshots;
    uint64_t snapshots_taken, snapshots_failed;
} metrics_view;

/* Renders the view. Returns a malloc'ed string the caller frees, or NULL. */
char *metrics_render(const metrics_view *view);

#endif
