/* access_log: serve --access-log. One log line per answered HTTP request with its method,
 * path, the names (never the values) of its query parameters, status and duration (from
 * the complete request to its answer). No header (Authorization included) and no body
 * byte is ever logged. */
#ifndef LOOTLOG_ACCESS_LOG_H
#define LOOTLOG_ACCESS_LOG_H

#include <event2/http.h>

/* Before the request's handler runs: removes any mark a client sent and, when enabled,
 * marks the request with the time it arrived. */
void access_log_begin(struct evhttp_request *req, int enabled);

/* When the request is answered with status: logs its line if it was marked. */
void access_log_end(struct evhttp_request *req, int status);

#endif
