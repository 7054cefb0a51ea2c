/* test_histogram: bucket placement, cumulative reads, the p99 estimate, and exact counts
 * when several threads observe at once (the fold threads and the loop do). */
#include "lib/histogram.h"
#include "check.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>

#define THREADS 4
#define PER_THREAD 100000

static void *observe_many(void *arg) {
    histogram *h = arg;
    for (int i = 0; i < PER_THREAD; i++) histogram_observe(h, (i % 2) ? 0.0015 : 0.04);
    return NULL;
}

int main(void) {
    histogram_view v;
    histogram *h = histogram_new();
    CHECK(h != NULL);
    histogram_read(h, &v);
    CHECK(v.count == 0 && v.sum_seconds == 0);
    CHECK(histogram_quantile(&v, 0.99) == 0);

    histogram_observe(h, 0.0005); /* on a bound: in that bucket (le is inclusive) */
    histogram_observe(h, 0.003);
    histogram_observe(h, -1);     /* counted as 0 */
    histogram_observe(h, 100);    /* beyond every bound: +Inf only */
    histogram_read(h, &v);
    CHECK(v.upper_bounds[0] == 0.0005 && v.upper_bounds[HISTOGRAM_BUCKETS - 1] == 30);
    CHECK(v.cumulative[0] == 2);                 /* -1 -> 0, and 0.0005 */
    CHECK(v.cumulative[2] == 2);                 /* <= 2 ms */
    CHECK(v.cumulative[3] == 3);                 /* <= 5 ms */
    CHECK(v.cumulative[HISTOGRAM_BUCKETS - 1] == 3);
    CHECK(v.count == 4);
    CHECK(fabs(v.sum_seconds - 100.0035) < 1e-6);
    CHECK(histogram_quantile(&v, 0.5) == 0.0005);
    CHECK(isinf(histogram_quantile(&v, 0.99)));
    histogram_free(h);

    h = histogram_new();
    pthread_t threads[THREADS];
    for (int i = 0; i < THREADS; i++) pthread_create(&threads[i], NULL, observe_many, h);
    for (int i = 0; i < THREADS; i++) pthread_join(threads[i], NULL);
    histogram_read(h, &v);
    CHECK(v.count == (uint64_t)THREADS * PER_THREAD);
    CHECK(v.cumulative[2] == (uint64_t)THREADS * PER_THREAD / 2); /* the 1.5 ms half */
    CHECK(v.cumulative[6] == v.count);                            /* all <= 50 ms */
    CHECK(fabs(v.sum_seconds - THREADS * (PER_THREAD / 2) * (0.0015 + 0.04)) < 1e-3);
    CHECK(histogram_quantile(&v, 0.99) == 0.05);
    histogram_free(h);

    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    CHECK(histogram_seconds_since(&start) >= 0);
    histogram_observe_since(NULL, &start); /* a NULL histogram is a no-op */
    return check_finish("histogram");
}
