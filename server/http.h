/* http: the evhttp server and the reply helpers every route uses. */
#ifndef LOOTLOG_HTTP_H
#define LOOTLOG_HTTP_H

#include <event2/event.h>
#include <event2/http.h>
#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct http_server http_server;

typedef struct {
    const char *address; /* "127.0.0.1:8080" */
    int request_timeout_s; /* idle keep-alive and stalled-write timeout of a connection */
    int read_timeout_ms;   /* a complete request must arrive within this of its first
                              byte (or of the accept); else 408 and close. 0: 5000 */
    int max_connections;   /* open connections at most; beyond, 503 too_many_connections
                              and close. 0: 1000 */
    int access_log;        /* 1: a log line per answered request (access_log.h) */
    /* Called once a request's answer went out (libevent keeps one completion callback per
     * request, so this is where others hook in, e.g. latency metrics); NULL: none. */
    void (*request_done)(struct evhttp_request *req, void *arg);
    void *request_done_arg;
} http_config;

typedef struct {
    size_t open;       /* connections being served */
    uint64_t refused;  /* refused over max_connections, since start */
    uint64_t cut;      /* closed for not sending a complete request in time */
} http_counts;

/* Binds and starts serving; each request goes to handler(req, arg). NULL with errstr. */
http_server *http_server_new(struct event_base *base, const http_config *config,
                             void (*handler)(struct evhttp_request *, void *), void *arg,
                             char *errstr, size_t errstr_size);

/* Stops accepting new connections. Requests already being handled are answered; new
 * ones on open connections get 503 shutting_down and the connection closes, so none
 * reaches the handler after this. NULL is a no-op. */
void http_server_stop_accepting(http_server *srv);

/* The connection counters (for /metrics); srv NULL gives zeros. */
void http_server_counts(const http_server *srv, http_counts *counts);

/* Frees the server; open connections and their pending requests are closed. */
void http_server_free(http_server *srv);

/* Sends body (decref'ed here) as JSON with status. */
void http_reply_json(struct evhttp_request *req, int status, json_t *body);

/* Sends {"error": code, "message": message} with status. */
void http_reply_error(struct evhttp_request *req, int status, const char *code,
                      const char *message);

/* Sends a text/plain body. */
void http_reply_text(struct evhttp_request *req, int status, const char *content_type,
                     const char *text, size_t len);

/* Sends body (freed here; NULL answers 500) with status and content_type. For answers
 * written straight into a buffer, such as GET /inventory's. */
void http_reply_buffer(struct evhttp_request *req, int status, const char *content_type,
                       struct evbuffer *body);

/* Append text as a JSON string (quoted, escaped as jansson's compact dump escapes it)
 * and a JSON integer to out. Return 0, or -1 when out of memory. Written by hand for the
 * hottest answer, GET /inventory: building and dumping a jansson tree cost ~35k of the
 * ~105k instructions of one GET (its dump formats every container's address for loop
 * detection); benchmark 3 in docs/benchmarks.md shows the GET rate before and after, and
 * tests/unit/test_http_json.c checks the bytes against jansson's. */
int http_json_string(struct evbuffer *out, const char *text);
int http_json_integer(struct evbuffer *out, int64_t value);

/* The request body as a NUL-terminated string (pulled up in the input buffer), its length
 * in *len. Never NULL: an empty body gives "". */
const char *http_body(struct evhttp_request *req, size_t *len);

/* The value of header name, or NULL. */
const char *http_header(struct evhttp_request *req, const char *name);

/* The value of query parameter name (decoded; freed by the caller), or NULL. */
char *http_query_param(struct evhttp_request *req, const char *name);

#endif
