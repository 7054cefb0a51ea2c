/* access_log: query values can carry tokens or personal data, so only the parameter
 * names are kept; the logger escapes whatever the path holds. */
#include "server/access_log.h"

#include "lib/log.h"

#include <event2/keyvalq_struct.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *method_name(enum evhttp_cmd_type method) {
    switch (method) {
    case EVHTTP_REQ_GET: return "GET";
    case EVHTTP_REQ_POST: return "POST";
    case EVHTTP_REQ_HEAD: return "HEAD";
    case EVHTTP_REQ_PUT: return "PUT";
    case EVHTTP_REQ_DELETE: return "DELETE";
    case EVHTTP_REQ_OPTIONS: return "OPTIONS";
    case EVHTTP_REQ_TRACE: return "TRACE";
    case EVHTTP_REQ_CONNECT: return "CONNECT";
    case EVHTTP_REQ_PATCH: return "PATCH";
    }
    return "OTHER";
}

/* "after,wait" from "after=0:17&wait=applied" into buf ("" when there is no query). */
static void query_names(const char *query, char *buf, size_t buf_size) {
    size_t n = 0;
    buf[0] = '\0';
    while (query && *query && n + 1 < buf_size) {
        size_t name_len = strcspn(query, "=&");
        if (name_len) {
            int wrote = snprintf(buf + n, buf_size - n, "%s%.*s", n ? "," : "", (int)name_len,
                                 query);
            if (wrote < 0 || (size_t)wrote >= buf_size - n) break;
            n += (size_t)wrote;
        }
        query += strcspn(query, "&");
        if (*query == '&') query++;
    }
}

/* The arrival time rides in the request's own input headers: libevent frees them with
 * the request however it ends (answered, or its client gone), so nothing can leak, and
 * no other code on the request's path needs to know. */
#define ACCESS_HEADER "X-Lootlog-Access-Start"

static int64_t monotonic_us(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

void access_log_begin(struct evhttp_request *req, int enabled) {
    struct evkeyvalq *headers = evhttp_request_get_input_headers(req);
    char mark[32];
    while (evhttp_remove_header(headers, ACCESS_HEADER) == 0) {
    }
    if (!enabled) return;
    snprintf(mark, sizeof mark, "%lld", (long long)monotonic_us());
    evhttp_add_header(headers, ACCESS_HEADER, mark);
}

void access_log_end(struct evhttp_request *req, int status) {
    const char *mark = evhttp_find_header(evhttp_request_get_input_headers(req), ACCESS_HEADER);
    if (!mark) return;
    const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
    const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
    char names[256];
    query_names(uri ? evhttp_uri_get_query(uri) : NULL, names, sizeof names);
    const char *method = method_name(evhttp_request_get_command(req));
    double duration_ms = (double)(monotonic_us() - strtoll(mark, NULL, 10)) / 1000.0;
    log_with(LOG_INFO, "access",
             LOG_FIELDS(LOG_STR("method", method), LOG_STR("path", path ? path : ""),
                        LOG_STR("query", names), LOG_NUM("status", status),
                        LOG_NUM("duration_us", (int64_t)(duration_ms * 1000))),
             "%s %s %d %.1f ms", method, path ? path : "", status, duration_ms);
}
