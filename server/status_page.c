/* status_page: a small self-contained HTML page (no scripts, no external assets) that
 * refreshes itself every 5 s. Every value is a number or a fixed word, so nothing
 * needs escaping. */
#include "status_page.h"

#include <stdio.h>
#include <stdlib.h>

char *status_page_render(const metrics_view *v, const char *version, int ready) {
    size_t cap = 8192;
    char *html = malloc(cap);
    if (!html) return NULL;
    unsigned long long requests = 0;
    for (size_t i = 0; i < v->route_count; i++) requests += v->routes[i].requests;
    int n = snprintf(
        html, cap,
        "<!doctype html><html><head><meta charset=\"utf-8\"><meta http-equiv=\"refresh\" "
        "content=\"5\"><title>lootlog status</title><style>body{font-family:sans-serif;"
        "margin:2em}table{border-collapse:collapse}td,th{padding:4px 12px;border-bottom:1px "
        "solid #ddd;text-align:left}.ok{color:#070}.bad{color:#b00}</style></head><body>"
        "<h1>lootlog %s</h1><p class=\"%s\">%s</p><table>"
        "<tr><th>broker</th><td>%s</td></tr>"
        "<tr><th>HTTP requests</th><td>%llu</td></tr>"
        "<tr><th>writes acknowledged</th><td>%llu</td></tr>"
        "<tr><th>writes failed (503)</th><td>%llu</td></tr>"
        "<tr><th>writes refused (4xx)</th><td>%llu</td></tr>"
        "<tr><th>requests waiting for the fold</th><td>%zu</td></tr>"
        "<tr><th>producer queue</th><td>%d</td></tr>",
        version, ready ? "ok" : "bad", ready ? "ready" : "not ready",
        v->broker_ready ? "reachable, all partitions led" : "not reachable", requests,
        (unsigned long long)v->writes_acked, (unsigned long long)v->writes_failed,
        (unsigned long long)v->requests_invalid, v->parked, v->producer_queue);
    if (n < 0 || (size_t)n >= cap) goto fail;
    size_t used = (size_t)n;
    if (v->has_fold) {
        n = snprintf(html + used, cap - used,
                     "<tr><th>fold lag (records)</th><td>%lld</td></tr>"
                     "<tr><th>events applied</th><td>%llu</td></tr>"
                     "<tr><th>events rejected</th><td>%llu</td></tr>"
                     "<tr><th>duplicates</th><td>%llu</td></tr>"
                     "<tr><th>dead letters</th><td>%llu</td></tr>"
                     "<tr><th>fold transactions</th><td>%llu</td></tr>",
                     (long long)v->fold.lag, (unsigned long long)v->fold.applied,
                     (unsigned long long)v->fold.rejected, (unsigned long long)v->fold.duplicates,
                     (unsigned long long)v->fold.dead_letters, (unsigned long long)v->fold.batches);
    } else {
        n = snprintf(html + used, cap - used, "<tr><th>fold</th><td>off (--no-fold)</td></tr>");
    }
    if (n < 0 || (size_t)n >= cap - used) goto fail;
    used += (size_t)n;
    if (v->has_snapshots) {
        n = snprintf(html + used, cap - used,
                     "<tr><th>snapshots taken / failed</th><td>%llu / %llu</td></tr>",
                     (unsigned long long)v->snapshots_taken, (unsigned long long)v->snapshots_failed);
        if (n < 0 || (size_t)n >= cap - used) goto fail;
        used += (size_t)n;
    }
    n = snprintf(html + used, cap - used,
                 "</table><p><a href=\"/metrics\">metrics</a> · <a href=\"/readyz\">readyz</a> · "
                 "<a href=\"/v1/items\">catalog</a></p></body></html>\n");
    if (n < 0 || (size_t)n >= cap - used) goto fail;
    return html;
fail:
    free(html);
    return NULL;
}
