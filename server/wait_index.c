/* wait_index: a binary min-heap of waits per partition; each wait knows its position, so
 * a wait that times out leaves in O(log n) too. */
#include "server/wait_index.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    waiter **items;
    size_t count, cap;
} waiter_heap;

struct waiter_queue {
    waiter_heap *heaps; /* indexed by partition */
    int32_t span;
    size_t total;
};

waiter_queue *waiter_queue_new(char *errstr, size_t errstr_size) {
    waiter_queue *q = calloc(1, sizeof *q);
    if (!q) snprintf(errstr, errstr_size, "out of memory");
    return q;
}

void waiter_queue_free(waiter_queue *q) {
    if (!q) return;
    for (int32_t p = 0; p < q->span; p++) free(q->heaps[p].items);
    free(q->heaps);
    free(q);
}

static void heap_place(waiter_heap *h, size_t i, waiter *w) {
    h->items[i] = w;
    w->position = i;
}

static void heap_up(waiter_heap *h, size_t i) {
    waiter *w = h->items[i];
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (h->items[parent]->offset <= w->offset) break;
        heap_place(h, i, h->items[parent]);
        i = parent;
    }
    heap_place(h, i, w);
}

static void heap_down(waiter_heap *h, size_t i) {
    waiter *w = h->items[i];
    for (;;) {
        size_t child = 2 * i + 1;
        if (child >= h->count) break;
        if (child + 1 < h->count && h->items[child + 1]->offset < h->items[child]->offset)
            child++;
        if (h->items[child]->offset >= w->offset) break;
        heap_place(h, i, h->items[child]);
        i = child;
    }
    heap_place(h, i, w);
}

int waiter_queue_push(waiter_queue *q, waiter *w) {
    w->position = SIZE_MAX;
    if (w->partition < 0) return -1;
    if (w->partition >= q->span) {
        int32_t span = w->partition + 1;
        waiter_heap *bigger = realloc(q->heaps, (size_t)span * sizeof *bigger);
        if (!bigger) return -1;
        memset(bigger + q->span, 0, (size_t)(span - q->span) * sizeof *bigger);
        q->heaps = bigger;
        q->span = span;
    }
    waiter_heap *h = &q->heaps[w->partition];
    if (h->count == h->cap) {
        size_t grown = h->cap ? h->cap * 2 : 16;
        waiter **items = realloc(h->items, grown * sizeof *items);
        if (!items) return -1;
        h->items = items;
        h->cap = grown;
    }
    h->count++;
    heap_place(h, h->count - 1, w);
    heap_up(h, h->count - 1);
    q->total++;
    return 0;
}

void waiter_queue_remove(waiter_queue *q, waiter *w) {
    if (w->position == SIZE_MAX || w->partition < 0 || w->partition >= q->span) return;
    waiter_heap *h = &q->heaps[w->partition];
    size_t i = w->position;
    w->position = SIZE_MAX;
    q->total--;
    waiter *last = h->items[--h->count];
    if (i == h->count) return;
    heap_place(h, i, last);
    /* The moved wait may belong above or below its new place. */
    heap_up(h, i);
    heap_down(h, last->position);
}

waiter *waiter_queue_pop_passed(waiter_queue *q, int32_t partition, int64_t next_offset) {
    if (partition < 0 || partition >= q->span) return NULL;
    waiter_heap *h = &q->heaps[partition];
    if (h->count == 0 || h->items[0]->offset >= next_offset) return NULL;
    waiter *w = h->items[0];
    waiter_queue_remove(q, w);
    return w;
}

size_t waiter_queue_count(const waiter_queue *q) { return q->total; }

int32_t waiter_queue_partition_span(const waiter_queue *q) { return q->span; }
