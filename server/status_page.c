/* status_page: the page is written into an evbuffer on the loop thread from the
 * registry's samples and current figures; the store reads it shows come from the board's
 * thread, so no page view ever scans a table on the loop. Every text that does not come
 * from this file (reasons, item types, snapshot ids) is HTML-escaped. */
#define _GNU_SOURCE /* gettid, for the board thread's niceness */
#include "server/status_page.h"
#include "lib/clock.h"

#include "state/store.h"

#include <event2/buffer.h>
#include <jansson.h>
#include <stdarg.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#define BOARD_DEAD_LETTERS 10
#define BOARD_ITEM_TYPES 10
#define BOARD_ITEM_SLOTS 128   /* distinct item types summed; the catalog has fewer */
#define BOARD_VIEWED_FOR_MS 60000 /* keep reading this long after the last view */
#define BOARD_NICE 19          /* the scans yield to the loop and the fold */

/* ---------------------------------------------------------------- the board */

typedef struct {
    int32_t partition;
    int64_t offset;
    char reason[160];
} board_dead_letter;

typedef struct {
    char item_type[STORE_ID_SIZE];
    int64_t holders, quantity;
} board_item;

typedef struct {
    board_dead_letter dead[BOARD_DEAD_LETTERS * 4];
    size_t dead_count;
    board_item items[BOARD_ITEM_SLOTS];
    size_t item_count;
    int64_t read_at_ms; /* Unix ms; 0: never read */
    char error[256];
} board_result;

struct status_board {
    const char *dir;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stopping;
    int64_t viewed_ms; /* monotonic ms of the last page view */
    int64_t read_ms;   /* monotonic ms of the last read */
    board_result result; /* under lock */
};

static int64_t unix_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

typedef struct {
    board_result *result;
    int32_t partition;
} board_read;

static void add_dead_letter(void *arg, int64_t offset, const char *reason) {
    board_read *rd = arg;
    board_result *res = rd->result;
    if (res->dead_count == sizeof res->dead / sizeof res->dead[0]) return;
    board_dead_letter *d = &res->dead[res->dead_count++];
    d->partition = rd->partition;
    d->offset = offset;
    snprintf(d->reason, sizeof d->reason, "%s", reason ? reason : "");
}

static void add_item_total(void *arg, const char *item_type, int64_t holders, int64_t quantity) {
    board_read *rd = arg;
    board_result *res = rd->result;
    if (!item_type) return;
    size_t i = 0;
    while (i < res->item_count && strcmp(res->items[i].item_type, item_type) != 0) i++;
    if (i == res->item_count) {
        if (i == BOARD_ITEM_SLOTS) return;
        snprintf(res->items[i].item_type, sizeof res->items[i].item_type, "%s", item_type);
        res->items[i].holders = res->items[i].quantity = 0;
        res->item_count++;
    }
    res->items[i].holders += holders;
    res->items[i].quantity += quantity;
}

static int newer_dead_letter_first(const void *a, const void *b) {
    const board_dead_letter *x = a, *y = b;
    if (x->offset != y->offset) return x->offset > y->offset ? -1 : 1;
    return x->partition - y->partition;
}

static int most_held_first(const void *a, const void *b) {
    const board_item *x = a, *y = b;
    if (x->quantity != y->quantity) return x->quantity > y->quantity ? -1 : 1;
    return strcmp(x->item_type, y->item_type);
}

/* Reads every store of dir into *res: its newest dead letters and its item totals. */
static void read_board(const char *dir, board_result *res) {
    int32_t partitions[STORE_MAX_PARTITIONS];
    size_t count = 0;
    char path[4096];
    memset(res, 0, sizeof *res);
    if (store_list_partitions(dir, partitions, STORE_MAX_PARTITIONS, &count, res->error,
                              sizeof res->error))
        return;
    for (size_t i = 0; i < count; i++) {
        board_read rd = {res, partitions[i]};
        char why[256];
        if (store_path(dir, partitions[i], path, sizeof path)) continue;
        store *st = store_open(path, partitions[i], STORE_READER, why, sizeof why);
        if (!st) {
            snprintf(res->error, sizeof res->error, "%s", why);
            continue;
        }
        if (store_read_dead_letters(st, BOARD_DEAD_LETTERS, add_dead_letter, &rd) ||
            store_read_item_totals(st, add_item_total, &rd))
            snprintf(res->error, sizeof res->error, "%s", store_errmsg(st));
        store_close(st);
    }
    if (res->dead_count) qsort(res->dead, res->dead_count, sizeof res->dead[0], newer_dead_letter_first);
    if (res->dead_count > BOARD_DEAD_LETTERS) res->dead_count = BOARD_DEAD_LETTERS;
    if (res->item_count) qsort(res->items, res->item_count, sizeof res->items[0], most_held_first);
    res->read_at_ms = unix_ms();
}

static void *board_thread(void *arg) {
    status_board *b = arg;
    board_result *fresh = malloc(sizeof *fresh);
    if (!fresh) return NULL;
    setpriority(PRIO_PROCESS, (id_t)gettid(), BOARD_NICE);
    pthread_mutex_lock(&b->lock);
    while (!b->stopping) {
        int64_t now = clock_ms();
        int watched = b->viewed_ms && now - b->viewed_ms < BOARD_VIEWED_FOR_MS;
        if (!watched || (b->read_ms && now - b->read_ms < STATUS_BOARD_EVERY_S * 1000)) {
            struct timespec until;
            clock_deadline_in(1000, &until);
            pthread_cond_timedwait(&b->wake, &b->lock, &until);
            continue;
        }
        pthread_mutex_unlock(&b->lock);
        read_board(b->dir, fresh);
        pthread_mutex_lock(&b->lock);
        b->result = *fresh;
        b->read_ms = clock_ms();
    }
    pthread_mutex_unlock(&b->lock);
    free(fresh);
    return NULL;
}

status_board *status_board_start(const char *db_dir, char *errstr, size_t errstr_size) {
    status_board *b = calloc(1, sizeof *b);
    if (!b) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    b->dir = db_dir;
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->wake, NULL);
    if (pthread_create(&b->thread, NULL, board_thread, b)) {
        snprintf(errstr, errstr_size, "starting the status page's reader thread failed");
        pthread_mutex_destroy(&b->lock);
        pthread_cond_destroy(&b->wake);
        free(b);
        return NULL;
    }
    return b;
}

void status_board_stop(status_board *b) {
    if (!b) return;
    pthread_mutex_lock(&b->lock);
    b->stopping = 1;
    pthread_cond_signal(&b->wake);
    pthread_mutex_unlock(&b->lock);
    pthread_join(b->thread, NULL);
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->wake);
    free(b);
}

/* Marks the page as viewed (waking the thread when it has nothing yet) and copies the
 * last result into *out. */
static void board_view(status_board *b, board_result *out) {
    pthread_mutex_lock(&b->lock);
    b->viewed_ms = clock_ms();
    if (!b->read_ms || b->viewed_ms - b->read_ms >= STATUS_BOARD_EVERY_S * 1000)
        pthread_cond_signal(&b->wake);
    *out = b->result;
    pthread_mutex_unlock(&b->lock);
}

/* ---------------------------------------------------------------- HTML */

typedef struct {
    struct evbuffer *buf;
    int failed;
} page;

static void put(page *pg, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(page *pg, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    if (evbuffer_add_vprintf(pg->buf, fmt, ap) < 0) pg->failed = 1;
    va_end(ap);
}

/* Writes text with &, <, >, " and ' escaped. */
static void put_text(page *pg, const char *text) {
    for (const char *c = text; *c; c++) {
        switch (*c) {
        case '&': put(pg, "&amp;"); break;
        case '<': put(pg, "&lt;"); break;
        case '>': put(pg, "&gt;"); break;
        case '"': put(pg, "&quot;"); break;
        case '\'': put(pg, "&#39;"); break;
        default: put(pg, "%c", *c);
        }
    }
}

/* A row of the figures table whose value is the series `metric` of /metrics (the test
 * compares the two through the data-metric attribute). */
static void figure(page *pg, const char *label, const char *metric, const char *value_fmt,
                   double value) {
    put(pg, "<tr data-metric='%s'><th>%s</th><td>", metric, label);
    put(pg, value_fmt, value);
    put(pg, "</td></tr>");
}

typedef struct {
    const char *name;
    char color[32];
    double values[METRICS_SAMPLES];
    int known[METRICS_SAMPLES];
} chart_line;

#define CHART_W 640
#define CHART_H 150
#define CHART_LEFT 56
#define CHART_BOTTOM 20

/* An inline SVG line chart of lines over the sample times t (Unix ms, ascending). */
static void svg_chart(page *pg, const char *id, const char *unit, const int64_t *t, size_t n,
                      const chart_line *lines, size_t line_count) {
    double top = 1;
    for (size_t l = 0; l < line_count; l++)
        for (size_t i = 0; i < n; i++)
            if (lines[l].known[i] && lines[l].values[i] > top) top = lines[l].values[i];
    double span_ms = n > 1 ? (double)(t[n - 1] - t[0]) : 1;
    if (span_ms <= 0) span_ms = 1;
    double plot_w = CHART_W - CHART_LEFT - 8, plot_h = CHART_H - CHART_BOTTOM - 8;
    put(pg,
        "<svg id='%s' class='chart' width='%d' height='%d' viewBox='0 0 %d %d' "
        "xmlns='http://www.w3.org/2000/svg' role='img'>"
        "<rect x='%d' y='8' width='%.0f' height='%.0f' fill='#fafafa' stroke='#ccc'/>"
        "<text x='%d' y='16' text-anchor='end' font-size='11'>%.3g</text>"
        "<text x='%d' y='%.0f' text-anchor='end' font-size='11'>0</text>"
        "<text x='%d' y='%d' font-size='11'>%s</text>"
        "<text x='%d' y='%d' font-size='11'>-%.0f s</text>"
        "<text x='%d' y='%d' text-anchor='end' font-size='11'>now</text>",
        id, CHART_W, CHART_H, CHART_W, CHART_H, CHART_LEFT, plot_w, plot_h, CHART_LEFT - 4, top,
        CHART_LEFT - 4, 8 + plot_h, 2, CHART_H / 2, unit, CHART_LEFT, CHART_H - 4,
        span_ms / 1000, CHART_W - 8, CHART_H - 4);
    for (size_t l = 0; l < line_count; l++) {
        put(pg, "<polyline fill='none' stroke='%s' stroke-width='1.5' points='", lines[l].color);
        for (size_t i = 0; i < n; i++) {
            if (!lines[l].known[i]) continue;
            double x = CHART_LEFT + plot_w * (double)(t[i] - t[0]) / span_ms;
            double y = 8 + plot_h - plot_h * lines[l].values[i] / top;
            put(pg, "%.1f,%.1f ", x, y);
        }
        put(pg, "'><title>");
        put_text(pg, lines[l].name);
        put(pg, "</title></polyline>");
    }
    put(pg, "</svg><p class='legend'>");
    for (size_t l = 0; l < line_count; l++) {
        put(pg, "<span style='color:%s'>&#9632; ", lines[l].color);
        put_text(pg, lines[l].name);
        put(pg, "</span> ");
    }
    put(pg, "</p>");
}

/* Write and fold rates (per second, between consecutive samples) and lag per partition. */
static void charts(page *pg, metrics *registry) {
    metrics_sample *samples = malloc(sizeof *samples * METRICS_SAMPLES);
    chart_line *lines = malloc(sizeof *lines * METRICS_SAMPLE_PARTITIONS);
    int64_t t[METRICS_SAMPLES];
    if (!samples || !lines) {
        pg->failed = 1;
        goto done;
    }
    size_t n = metrics_history(registry, samples, METRICS_SAMPLES);
    put(pg, "<h2>Rates, last %.0f s (sampled every %d s)</h2>",
        n > 1 ? (double)(samples[n - 1].unix_ms - samples[0].unix_ms) / 1000 : 0.0,
        METRICS_SAMPLE_EVERY_S);
    if (n < 2) {
        put(pg, "<p>Collecting samples…</p>");
        goto done;
    }
    memset(lines, 0, sizeof *lines * 2);
    lines[0].name = "writes acknowledged /s";
    snprintf(lines[0].color, sizeof lines[0].color, "#1f6fb4");
    lines[1].name = "records folded /s";
    snprintf(lines[1].color, sizeof lines[1].color, "#c0392b");
    for (size_t i = 1; i < n; i++) {
        double dt = (double)(samples[i].unix_ms - samples[i - 1].unix_ms) / 1000;
        t[i - 1] = samples[i].unix_ms;
        if (dt <= 0) continue;
        /* A counter that went down (a fold restarted after a swap) gives no point. */
        lines[0].known[i - 1] = samples[i].writes_acked >= samples[i - 1].writes_acked;
        lines[0].values[i - 1] = (double)(samples[i].writes_acked - samples[i - 1].writes_acked) / dt;
        lines[1].known[i - 1] = samples[i].folded >= samples[i - 1].folded;
        lines[1].values[i - 1] = (double)(samples[i].folded - samples[i - 1].folded) / dt;
    }
    svg_chart(pg, "rates", "per s", t, n - 1, lines, 2);

    size_t partitions = samples[n - 1].partition_count;
    put(pg, "<h2>Fold lag per partition (records)</h2>");
    if (partitions == 0) {
        put(pg, "<p>No partitions folded yet.</p>");
        goto done;
    }
    memset(lines, 0, sizeof *lines * partitions);
    static const char *const names[] = {
        "p0", "p1", "p2", "p3", "p4", "p5", "p6", "p7", "p8", "p9", "p10",
        "p11", "p12", "p13", "p14", "p15", "p16", "p17", "p18", "p19", "p20", "p21",
        "p22", "p23", "p24", "p25", "p26", "p27", "p28", "p29", "p30", "p31"};
    _Static_assert(sizeof names / sizeof names[0] == METRICS_SAMPLE_PARTITIONS, "names");
    for (size_t p = 0; p < partitions; p++) {
        lines[p].name = names[p];
        snprintf(lines[p].color, sizeof lines[p].color, "hsl(%zu,65%%,42%%)",
                 p * 360 / partitions);
        for (size_t i = 0; i < n; i++) {
            t[i] = samples[i].unix_ms;
            lines[p].known[i] = p < samples[i].partition_count && samples[i].lag[p] >= 0;
            lines[p].values[i] = lines[p].known[i] ? (double)samples[i].lag[p] : 0;
        }
    }
    svg_chart(pg, "lag", "records", t, n, lines, partitions);
done:
    free(samples);
    free(lines);
}

static void figures(page *pg, const status_page_input *in) {
    const metrics_view *v = in->view;
    metrics_summary sum;
    metrics_summarize(in->registry, &sum);
    put(pg, "<h2>Figures</h2><table id='figures'>");
    put(pg, "<tr><th>broker</th><td>%s</td></tr>",
        v->broker_ready ? "reachable, all partitions led" : "not reachable");
    put(pg, "<tr><th>HTTP requests answered</th><td>%llu</td></tr>",
        (unsigned long long)sum.http_requests);
    figure(pg, "writes acknowledged", "lootlog_writes_total{result=\"acked\"}", "%.0f",
           (double)v->writes_acked);
    figure(pg, "writes failed (503)", "lootlog_writes_total{result=\"failed\"}", "%.0f",
           (double)v->writes_failed);
    figure(pg, "writes refused (4xx)", "lootlog_writes_total{result=\"invalid\"}", "%.0f",
           (double)v->requests_invalid);
    figure(pg, "requests waiting for the fold", "lootlog_parked_requests", "%.0f",
           (double)v->parked);
    figure(pg, "producer queue", "lootlog_producer_queue", "%.0f", (double)v->producer_queue);
    put(pg, "<tr><th>produce acknowledgement p99</th><td>≤ %.4g s</td></tr>",
        sum.produce_p99_seconds);
    if (v->fold) {
        fold_engine_stats st;
        fold_engine_get_stats(v->fold, &st);
        figure(pg, "fold lag (records)", "lootlog_fold_lag", "%.0f", (double)st.lag);
        figure(pg, "events applied", "lootlog_fold_events_total{outcome=\"applied\"}", "%.0f",
               (double)st.applied);
        figure(pg, "events rejected", "lootlog_fold_events_total{outcome=\"rejected\"}", "%.0f",
               (double)st.rejected);
        figure(pg, "duplicates", "lootlog_fold_events_total{outcome=\"duplicate\"}", "%.0f",
               (double)st.duplicates);
        figure(pg, "dead letters", "lootlog_fold_events_total{outcome=\"dead_lettered\"}",
               "%.0f", (double)st.dead_letters);
        figure(pg, "fold transactions", "lootlog_fold_batches_total", "%.0f",
               (double)st.batches);
        put(pg, "<tr><th>fold commit p99</th><td>≤ %.4g s</td></tr>", sum.commit_p99_seconds);
        put(pg, "<tr><th>freshness p99 (202 → folded)</th><td>≤ %.4g s</td></tr>",
            sum.freshness_p99_seconds);
    } else {
        put(pg, "<tr><th>fold</th><td>off (--no-fold)</td></tr>");
    }
    put(pg, "</table>");
    if (!v->fold) return;
    fold_engine_stats st;
    fold_engine_get_stats(v->fold, &st);
    put(pg, "<h2>Partitions</h2><table id='partitions'><tr><th>partition</th><th>lag</th>"
            "<th>next offset</th></tr>");
    for (size_t p = 0; p < st.partition_count && p < STORE_MAX_PARTITIONS; p++) {
        int64_t lag = fold_engine_partition_lag(v->fold, (int32_t)p);
        int64_t next = fold_engine_next_offset(v->fold, (int32_t)p);
        if (lag < 0 && next < 0) continue; /* not folded here */
        put(pg,
            "<tr><th>%zu</th><td data-metric='lootlog_fold_partition_lag{partition=\"%zu\"}'>%lld"
            "</td><td data-metric='lootlog_fold_partition_next_offset{partition=\"%zu\"}'>%lld"
            "</td></tr>",
            p, p, (long long)lag, p, (long long)next);
    }
    put(pg, "</table>");
}

static void snapshots(page *pg, snapshot_scheduler *s) {
    uint64_t taken = 0, failed = 0;
    double seconds = 0;
    int64_t finished = 0;
    snapshot_scheduler_counts(s, &taken, &failed);
    snapshot_scheduler_last_success(s, &seconds, &finished);
    put(pg, "<h2>Snapshots</h2><table id='snapshots'>");
    figure(pg, "taken", "lootlog_snapshots_total{result=\"taken\"}", "%.0f", (double)taken);
    figure(pg, "failed", "lootlog_snapshots_total{result=\"failed\"}", "%.0f", (double)failed);
    if (finished) {
        char when[32];
        time_t at = (time_t)finished;
        struct tm tm;
        strftime(when, sizeof when, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&at, &tm));
        put(pg, "<tr><th>last success</th><td>%s (%.1f s, %lld s ago)</td></tr>", when, seconds,
            (long long)(time(NULL) - at));
    }
    put(pg, "</table>");
    char *status = snapshot_scheduler_status_json(s);
    json_t *root = status ? json_loads(status, 0, NULL) : NULL;
    free(status);
    json_t *list = json_object_get(root, "snapshots");
    size_t count = json_array_size(list);
    if (count) {
        put(pg, "<table id='recent-snapshots'><tr><th>recent snapshots (newest first)</th></tr>");
        for (size_t i = 0; i < count && i < 5; i++) {
            const char *id = json_string_value(json_object_get(json_array_get(list, count - 1 - i), "id"));
            put(pg, "<tr><td>");
            put_text(pg, id ? id : "?");
            put(pg, "</td></tr>");
        }
        put(pg, "</table>");
    }
    const char *last_error = json_string_value(json_object_get(root, "last_error"));
    if (last_error) {
        put(pg, "<p class='bad'>last error: ");
        put_text(pg, last_error);
        put(pg, "</p>");
    }
    json_decref(root);
}

static void board(page *pg, status_board *b) {
    board_result *res = malloc(sizeof *res);
    if (!res) {
        pg->failed = 1;
        return;
    }
    board_view(b, res);
    put(pg, "<h2>Recent dead letters</h2>");
    if (!res->read_at_ms) {
        put(pg, "<p id='board-pending'>Reading the stores…</p>");
        free(res);
        return;
    }
    if (res->dead_count == 0) put(pg, "<p id='dead-letters'>None.</p>");
    else put(pg, "<table id='dead-letters'><tr><th>partition</th><th>offset</th><th>reason</th></tr>");
    for (size_t i = 0; i < res->dead_count; i++) {
        put(pg, "<tr><td>%d</td><td>%lld</td><td>", (int)res->dead[i].partition,
            (long long)res->dead[i].offset);
        put_text(pg, res->dead[i].reason);
        put(pg, "</td></tr>");
    }
    if (res->dead_count) put(pg, "</table>");
    put(pg, "<h2>Top item types held</h2><table id='item-types'><tr><th>item type</th>"
            "<th>players</th><th>quantity</th></tr>");
    for (size_t i = 0; i < res->item_count && i < BOARD_ITEM_TYPES; i++) {
        put(pg, "<tr><td>");
        put_text(pg, res->items[i].item_type);
        put(pg, "</td><td>%lld</td><td>%lld</td></tr>", (long long)res->items[i].holders,
            (long long)res->items[i].quantity);
    }
    put(pg, "</table><p class='note'>Read from the stores %lld s ago",
        (long long)((unix_ms() - res->read_at_ms) / 1000));
    if (res->error[0]) {
        put(pg, "; ");
        put_text(pg, res->error);
    }
    put(pg, ".</p>");
    free(res);
}

char *status_page_render(const status_page_input *in) {
    page pg = {.buf = evbuffer_new()};
    char *html = NULL;
    if (!pg.buf) return NULL;
    put(&pg,
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" "
        "content=\"5\"><title>lootlog status</title><style>body{font-family:sans-serif;"
        "margin:2em;max-width:60em}table{border-collapse:collapse;margin-bottom:1em}"
        "td,th{padding:3px 12px;border-bottom:1px solid #ddd;text-align:left}"
        ".ok{color:#070}.bad{color:#b00}.legend span{margin-right:1em;font-size:90%%}"
        ".note{color:#666;font-size:90%%}</style></head><body>");
    put(&pg, "<h1>lootlog ");
    put_text(&pg, in->version);
    put(&pg, "</h1><p id='readiness' class=\"%s\">%s</p>", in->ready ? "ok" : "bad",
        in->ready ? "ready" : "not ready");
    charts(&pg, in->registry);
    figures(&pg, in);
    if (in->view->snapshots) snapshots(&pg, in->view->snapshots);
    if (in->board) board(&pg, in->board);
    put(&pg, "<p><a href=\"/metrics\">metrics</a> · <a href=\"/readyz\">readyz</a> · "
             "<a href=\"/v1/items\">catalog</a></p></body></html>\n");
    size_t len = evbuffer_get_length(pg.buf);
    if (!pg.failed && (html = malloc(len + 1)) != NULL) {
        evbuffer_remove(pg.buf, html, len);
        html[len] = '\0';
    }
    evbuffer_free(pg.buf);
    return html;
}
