/* histogram: per-bucket atomic counters (not cumulative: one add per observation) and
 * the sum kept in whole nanoseconds, so that no float needs an atomic update. */
#include "lib/histogram.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>

static const double upper_bounds[HISTOGRAM_BUCKETS] = {
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 30};

struct histogram {
    atomic_ullong buckets[HISTOGRAM_BUCKETS + 1]; /* the last: beyond every bound */
    atomic_ullong sum_ns;
};

histogram *histogram_new(void) {
    histogram *h = malloc(sizeof *h);
    if (!h) return NULL;
    for (int i = 0; i <= HISTOGRAM_BUCKETS; i++) atomic_init(&h->buckets[i], 0);
    atomic_init(&h->sum_ns, 0);
    return h;
}

void histogram_free(histogram *h) { free(h); }

void histogram_observe(histogram *h, double seconds) {
    if (!h) return;
    if (!(seconds > 0)) seconds = 0; /* also NaN */
    int i = 0;
    while (i < HISTOGRAM_BUCKETS && seconds > upper_bounds[i]) i++;
    atomic_fetch_add_explicit(&h->buckets[i], 1, memory_order_relaxed);
    double ns = seconds * 1e9;
    atomic_fetch_add_explicit(&h->sum_ns, ns < 1e18 ? (unsigned long long)ns : 1000000000000000000ULL,
                              memory_order_relaxed);
}

double histogram_seconds_since(const struct timespec *start) {
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

void histogram_observe_since(histogram *h, const struct timespec *start) {
    if (h) histogram_observe(h, histogram_seconds_since(start));
}

void histogram_read(const histogram *h, histogram_view *view) {
    uint64_t running = 0;
    view->upper_bounds = upper_bounds;
    for (int i = 0; i < HISTOGRAM_BUCKETS; i++) {
        running += atomic_load_explicit(&h->buckets[i], memory_order_relaxed);
        view->cumulative[i] = running;
    }
    view->count = running + atomic_load_explicit(&h->buckets[HISTOGRAM_BUCKETS],
                                                 memory_order_relaxed);
    view->sum_seconds = (double)atomic_load_explicit(&h->sum_ns, memory_order_relaxed) / 1e9;
}

double histogram_quantile(const histogram_view *view, double q) {
    if (view->count == 0) return 0;
    double rank = q * (double)view->count;
    for (int i = 0; i < HISTOGRAM_BUCKETS; i++)
        if ((double)view->cumulative[i] >= rank) return view->upper_bounds[i];
    return INFINITY;
}
