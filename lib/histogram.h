/* histogram: a latency histogram with fixed bucket bounds that any thread updates
 * without a lock (one atomic add on a bucket, one on the sum), read by the Prometheus
 * exposition (server/metrics.c). It sits in this layer so that the fold engine can time
 * its commits without knowing about HTTP or metrics. */
#ifndef LOOTLOG_HISTOGRAM_H
#define LOOTLOG_HISTOGRAM_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

/* Upper bounds in seconds, 0.5 ms .. 30 s: fine around the targets the service is built
 * for (2 ms GET p99, 50 ms freshness p99) and wide enough for a stalled broker. */
#define HISTOGRAM_BUCKETS 16

typedef struct histogram histogram;

/* A histogram with the bounds above, all counts 0. NULL when out of memory. */
histogram *histogram_new(void);
void histogram_free(histogram *h);

/* Any thread: counts one observation of seconds (negative counts as 0). */
void histogram_observe(histogram *h, double seconds);

/* Any thread: observes the time elapsed since start (a CLOCK_MONOTONIC reading). A NULL
 * h is a no-op, so callers can time unconditionally. */
void histogram_observe_since(histogram *h, const struct timespec *start);

/* The seconds elapsed since start (CLOCK_MONOTONIC). */
double histogram_seconds_since(const struct timespec *start);

typedef struct {
    const double *upper_bounds;             /* HISTOGRAM_BUCKETS, ascending (+Inf apart) */
    uint64_t cumulative[HISTOGRAM_BUCKETS]; /* observations <= upper_bounds[i] */
    uint64_t count;                         /* all observations (the +Inf bucket) */
    double sum_seconds;
} histogram_view;

/* Any thread: a copy of the counts. Buckets are read one by one while others may add,
 * so the copy is not one instant, but its cumulative counts never decrease between
 * reads and never exceed count. */
void histogram_read(const histogram *h, histogram_view *view);

/* The upper bound of the bucket holding quantile q (0..1) of view's observations, an
 * estimate from above; 0 when there are none, +Inf beyond the last bound. */
double histogram_quantile(const histogram_view *view, double q);

#endif
