/* The wait index: waits leave in offset order per partition, a commit pops only the
 * waits it passed, and a wait removed out of order (a timeout) leaves the heap sound. */
#include "server/wait_index.h"

#include "check.h"

#include <stdlib.h>

#define N 2000

int main(void) {
    char errstr[128];
    waiter_queue *q = waiter_queue_new(errstr, sizeof errstr);
    static waiter w[N];
    CHECK(q != NULL);
    srand(7);
    for (int i = 0; i < N; i++) {
        w[i].partition = i % 3;
        w[i].offset = rand() % 500;
        CHECK(waiter_queue_push(q, &w[i]) == 0);
    }
    CHECK(waiter_queue_count(q) == N);
    CHECK(waiter_queue_partition_span(q) == 3);
    /* Every third wait times out. */
    size_t removed = 0;
    for (int i = 0; i < N; i += 3) {
        waiter_queue_remove(q, &w[i]);
        removed++;
    }
    waiter_queue_remove(q, &w[0]); /* twice: a no-op */
    CHECK(waiter_queue_count(q) == N - removed);
    /* A commit to 250 on partition 1 ends exactly its waits below 250, lowest first. */
    size_t expected = 0, popped = 0;
    for (int i = 0; i < N; i++)
        if (i % 3 != 0 && w[i].partition == 1 && w[i].offset < 250) expected++;
    int64_t last = -1;
    waiter *got;
    while ((got = waiter_queue_pop_passed(q, 1, 250)) != NULL) {
        CHECK(got->partition == 1 && got->offset < 250 && got->offset >= last);
        last = got->offset;
        popped++;
    }
    CHECK(popped == expected);
    CHECK(waiter_queue_pop_passed(q, 7, 1000) == NULL); /* never had a wait */
    /* Everything else drains in order. */
    for (int32_t p = 0; p < 3; p++) {
        last = -1;
        while ((got = waiter_queue_pop_passed(q, p, 1000)) != NULL) {
            CHECK(got->offset >= last);
            last = got->offset;
        }
    }
    CHECK(waiter_queue_count(q) == 0);
    waiter_queue_free(q);
    return check_finish("wait_index");
}
