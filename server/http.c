/* http: evhttp setup and reply helpers. Every connection is watched: one that does not
 * deliver a complete request within read_timeout_ms of its first byte (or of being
 * accepted) is cut, and connections beyond max_connections are refused with a 503;
 * idle keep-alive connections are closed by evhttp's own timeout. Bodies and headers
 * have hard size limits. */
#include "server/http.h"
#include "lib/clock.h"
#include "lib/json_text.h"

#include "lib/log.h"
#include "server/access_log.h"

#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define HTTP_DEFAULT_READ_TIMEOUT_MS 5000
#define HTTP_DEFAULT_MAX_CONNECTIONS 1000
#define HTTP_SWEEP_MS 100

/* One accepted connection. evhttp owns the bufferevent; the extra reference taken at
 * accept keeps it readable here after evhttp freed it, which is how a closed connection
 * is noticed (its callbacks are then cleared). */
typedef struct {
    struct bufferevent *bev;
    size_t index;        /* in http_server.conns */
    int64_t started_ms;  /* when the request being read began; -1: idle, between requests */
    int busy;            /* a complete request is being answered */
    int bytes_seen;      /* bytes arrived since the last request completed */
    int refused;         /* over the cap: answered 503 and closed */
    int cut;             /* already cut by the sweep */
} http_conn;

struct http_server {
    struct evhttp *http;
    struct event_base *base;
    struct evhttp_bound_socket *bound;
    void (*handler)(struct evhttp_request *, void *);
    void *handler_arg;
    int read_timeout_ms;
    int max_connections;
    int access_log;
    void (*request_done)(struct evhttp_request *, void *);
    void *request_done_arg;
    http_conn **conns; /* every connection evhttp has not yet freed, plus refused ones */
    size_t conn_count, conn_cap;
    /* the same connections by bufferevent (open addressing, a power of two, at most half
     * full): each request finds its connection in O(1), not by walking up to
     * --max-connections of them twice */
    http_conn **by_bev;
    size_t by_bev_cap;
    size_t served;     /* connections in conns that are not refused */
    struct event *sweep;
    int64_t last_refusal_log_ms;
    int stopping;      /* shutting down: new requests get 503 and their connection closes */
    uint64_t refused_total, cut_total;
};

static const char *reason_phrase(int status) {
    switch (status) {
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 204: return "No Content";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 408: return "Request Timeout";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 415: return "Unsupported Media Type";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 500: return "Internal Server Error";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    default: return "Status";
    }
}

/* ---------------------------------------------------------------- connection watch */

static size_t bev_slot(const struct bufferevent *bev, size_t cap) {
    uint64_t mixed = (uint64_t)(uintptr_t)bev * 0x9e3779b97f4a7c15ULL;
    return (size_t)(mixed >> 32) & (cap - 1);
}

static void by_bev_put(http_conn **slots, size_t cap, http_conn *c) {
    size_t i = bev_slot(c->bev, cap);
    while (slots[i]) i = (i + 1) & (cap - 1);
    slots[i] = c;
}

/* Makes room in by_bev for one more connection. Returns 0 or -1 (out of memory). */
static int by_bev_reserve(http_server *srv) {
    if ((srv->conn_count + 1) * 2 <= srv->by_bev_cap) return 0;
    size_t cap = srv->by_bev_cap ? srv->by_bev_cap * 2 : 128;
    http_conn **slots = calloc(cap, sizeof *slots);
    if (!slots) return -1;
    for (size_t i = 0; i < srv->conn_count; i++) by_bev_put(slots, cap, srv->conns[i]);
    free(srv->by_bev);
    srv->by_bev = slots;
    srv->by_bev_cap = cap;
    return 0;
}

/* Takes c out of by_bev, moving back the entries of its probe run that the hole would
 * otherwise hide (no tombstones). */
static void by_bev_delete(http_server *srv, const http_conn *c) {
    size_t mask = srv->by_bev_cap - 1, hole = bev_slot(c->bev, srv->by_bev_cap);
    while (srv->by_bev[hole] != c) hole = (hole + 1) & mask;
    for (size_t j = (hole + 1) & mask; srv->by_bev[j]; j = (j + 1) & mask) {
        size_t home = bev_slot(srv->by_bev[j]->bev, srv->by_bev_cap);
        if (((j - home) & mask) >= ((j - hole) & mask)) {
            srv->by_bev[hole] = srv->by_bev[j];
            hole = j;
        }
    }
    srv->by_bev[hole] = NULL;
}

static http_conn *conn_of(http_server *srv, struct evhttp_request *req) {
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    struct bufferevent *bev = evcon ? evhttp_connection_get_bufferevent(evcon) : NULL;
    if (!bev || !srv->by_bev_cap) return NULL;
    for (size_t i = bev_slot(bev, srv->by_bev_cap); srv->by_bev[i];
         i = (i + 1) & (srv->by_bev_cap - 1))
        if (srv->by_bev[i]->bev == bev) return srv->by_bev[i];
    return NULL;
}

static void conn_remove(http_server *srv, http_conn *c) {
    by_bev_delete(srv, c);
    size_t last = --srv->conn_count;
    if (c->index != last) {
        srv->conns[c->index] = srv->conns[last];
        srv->conns[c->index]->index = c->index;
    }
    if (!c->refused) srv->served--;
    bufferevent_decref(c->bev); /* evhttp freed it: this closes the socket */
    free(c);
}

/* 1 once evhttp has freed the connection's bufferevent (bufferevent_free clears the
 * callbacks; while evhttp uses a connection its error callback is always set). */
static int conn_closed(const http_conn *c) {
    bufferevent_event_cb eventcb = NULL;
    bufferevent_getcb(c->bev, NULL, NULL, &eventcb, NULL);
    return eventcb == NULL;
}

/* Writes a complete JSON response straight to the socket and shuts it: evhttp then
 * sees the end of the connection and frees it. For connections no request of which
 * evhttp will ever answer (refused, or cut mid-request). status 0: close without a word
 * (an idle connection, whose client would take any bytes as the answer to its next
 * request). */
static void conn_close_with(http_conn *c, int status, const char *code, const char *message) {
    evutil_socket_t fd = bufferevent_getfd(c->bev);
    char body[256], text[512];
    if (fd < 0) return;
    if (status) {
        int body_len = snprintf(body, sizeof body, "{\"error\":\"%s\",\"message\":\"%s\"}",
                                code, message);
        int len = snprintf(text, sizeof text,
                           "HTTP/1.1 %d %s\r\nContent-Type: application/json\r\n%s"
                           "Connection: close\r\nContent-Length: %d\r\n\r\n%s",
                           status, reason_phrase(status),
                           status == 503 ? "Retry-After: 1\r\n" : "", body_len, body);
        /* Best effort: the client may be gone already. */
        ssize_t sent = send(fd, text, (size_t)len, MSG_NOSIGNAL | MSG_DONTWAIT);
        (void)sent;
    }
    shutdown(fd, SHUT_RDWR);
}

/* The input buffer of a connection grew: the first bytes of a request start its clock. */
static void on_conn_input(struct evbuffer *buf, const struct evbuffer_cb_info *info, void *arg) {
    (void)buf;
    http_conn *c = arg;
    if (info->n_added == 0) return;
    c->bytes_seen = 1;
    if (c->started_ms < 0) c->started_ms = clock_ms();
}

/* Runs once the accepted socket is attached: a refused connection gets its answer. */
static void on_refuse(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    conn_close_with(arg, 503, "too_many_connections",
                    "the server's connection limit is reached; retry shortly");
}

/* evhttp asks for the bufferevent of each accepted connection: it is made here so the
 * connection can be counted and watched. */
static struct bufferevent *on_accept(struct event_base *base, void *arg) {
    http_server *srv = arg;
    struct bufferevent *bev = bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
    http_conn *c = calloc(1, sizeof *c);
    if (!bev || !c) goto fail;
    if (srv->conn_count == srv->conn_cap) {
        size_t grown = srv->conn_cap ? srv->conn_cap * 2 : 64;
        http_conn **bigger = realloc(srv->conns, grown * sizeof *bigger);
        if (!bigger) goto fail;
        srv->conns = bigger;
        srv->conn_cap = grown;
    }
    c->bev = bev;
    c->started_ms = clock_ms();
    /* Count only connections evhttp still serves: forget the closed ones first. */
    for (size_t i = srv->conn_count; i-- > 0;)
        if (conn_closed(srv->conns[i])) conn_remove(srv, srv->conns[i]);
    if (by_bev_reserve(srv)) goto fail;
    c->refused = srv->served >= (size_t)srv->max_connections;
    if (!evbuffer_add_cb(bufferevent_get_input(bev), on_conn_input, c)) goto fail;
    if (c->refused) {
        struct timeval now = {0, 0};
        if (event_base_once(base, -1, EV_TIMEOUT, on_refuse, c, &now)) goto fail;
        srv->refused_total++;
        int64_t t = clock_ms();
        if (t - srv->last_refusal_log_ms >= 1000) {
            srv->last_refusal_log_ms = t;
            log_warn("http", "refusing connections: %zu open, --max-connections %d "
                     "(%llu refused so far)", srv->served, srv->max_connections,
                     (unsigned long long)srv->refused_total);
        }
    } else {
        srv->served++;
    }
    bufferevent_incref(bev);
    c->index = srv->conn_count;
    srv->conns[srv->conn_count++] = c;
    by_bev_put(srv->by_bev, srv->by_bev_cap, c); /* room reserved above */
    return bev;
fail:
    /* evhttp makes a bufferevent of its own: the connection is served, unwatched. */
    if (bev) bufferevent_free(bev);
    free(c);
    return NULL;
}

/* Every HTTP_SWEEP_MS: forgets closed connections and cuts those whose request has
 * not arrived in time. A connection whose request is being answered is left alone:
 * its handler has bounds of its own. */
static void on_sweep(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    http_server *srv = arg;
    int64_t now = clock_ms();
    for (size_t i = srv->conn_count; i-- > 0;) {
        http_conn *c = srv->conns[i];
        if (conn_closed(c)) {
            conn_remove(srv, c);
            continue;
        }
        if (c->busy || c->refused || c->cut || c->started_ms < 0 ||
            now - c->started_ms < srv->read_timeout_ms)
            continue;
        c->cut = 1;
        srv->cut_total++;
        log_warn("http", "closed a connection that sent no complete request in %d ms",
                 srv->read_timeout_ms);
        if (c->bytes_seen)
            conn_close_with(c, 408, "request_timeout", "no complete request arrived in time");
        else
            conn_close_with(c, 0, NULL, NULL);
    }
}

static void on_request_done(struct evhttp_request *req, void *arg) {
    http_server *srv = arg;
    if (srv->request_done) srv->request_done(req, srv->request_done_arg);
    http_conn *c = conn_of(srv, req);
    if (!c) return;
    c->busy = 0;
    c->bytes_seen = 0;
    c->started_ms = -1; /* idle until the next request's first byte */
}

static void on_request(struct evhttp_request *req, void *arg) {
    http_server *srv = arg;
    if (srv->stopping) {
        /* The handler's state may already be gone; in-flight requests are answered. */
        evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        http_reply_error(req, 503, "shutting_down", "lootlog is stopping");
        return;
    }
    http_conn *c = conn_of(srv, req);
    if (c) c->busy = 1;
    evhttp_request_set_on_complete_cb(req, on_request_done, srv);
    access_log_begin(req, srv->access_log);
    srv->handler(req, srv->handler_arg);
}

http_server *http_server_new(struct event_base *base, const http_config *config,
                             void (*handler)(struct evhttp_request *, void *), void *arg,
                             char *errstr, size_t errstr_size) {
    http_server *srv = calloc(1, sizeof *srv);
    char host[256];
    if (!srv) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    const char *colon = strrchr(config->address, ':');
    if (!colon || colon == config->address || (size_t)(colon - config->address) >= sizeof host) {
        snprintf(errstr, errstr_size, "--http '%s' is not HOST:PORT", config->address);
        goto fail;
    }
    memcpy(host, config->address, (size_t)(colon - config->address));
    host[colon - config->address] = '\0';
    int port = atoi(colon + 1);
    if (port <= 0 || port > 65535) {
        snprintf(errstr, errstr_size, "--http '%s' has no valid port", config->address);
        goto fail;
    }
    srv->http = evhttp_new(base);
    if (!srv->http) {
        snprintf(errstr, errstr_size, "evhttp_new failed");
        goto fail;
    }
    srv->handler = handler;
    srv->handler_arg = arg;
    srv->access_log = config->access_log;
    srv->request_done = config->request_done;
    srv->request_done_arg = config->request_done_arg;
    srv->base = base;
    srv->read_timeout_ms =
        config->read_timeout_ms > 0 ? config->read_timeout_ms : HTTP_DEFAULT_READ_TIMEOUT_MS;
    srv->max_connections =
        config->max_connections > 0 ? config->max_connections : HTTP_DEFAULT_MAX_CONNECTIONS;
    evhttp_set_bevcb(srv->http, on_accept, srv);
    srv->sweep = event_new(base, -1, EV_PERSIST, on_sweep, srv);
    struct timeval every = {0, HTTP_SWEEP_MS * 1000};
    if (!srv->sweep || event_add(srv->sweep, &every)) {
        snprintf(errstr, errstr_size, "registering the connection sweep failed");
        goto fail;
    }
    /* Idle keep-alive connections (and stalled writes to a client) are closed by
     * evhttp's per-connection timeout. */
    evhttp_set_timeout(srv->http, config->request_timeout_s);
    evhttp_set_max_headers_size(srv->http, 16 * 1024);
    /* Bodies up to 1 MiB are read so that 64 KiB..1 MiB gets the contract's JSON 413;
     * beyond that evhttp refuses on its own. */
    evhttp_set_max_body_size(srv->http, 1024 * 1024);
    /* Every method libevent knows reaches the router, so unsupported ones get the JSON
     * 405 with Allow rather than libevent's HTML 501. */
    evhttp_set_allowed_methods(srv->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                              EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD |
                                              EVHTTP_REQ_PATCH | EVHTTP_REQ_OPTIONS |
                                              EVHTTP_REQ_TRACE | EVHTTP_REQ_CONNECT);
    evhttp_set_gencb(srv->http, on_request, srv);
    srv->bound = evhttp_bind_socket_with_handle(srv->http, host, (ev_uint16_t)port);
    if (!srv->bound) {
        snprintf(errstr, errstr_size, "cannot listen on %s (in use, or not an address)",
                 config->address);
        goto fail;
    }
    return srv;
fail:
    http_server_free(srv);
    return NULL;
}

void http_server_stop_accepting(http_server *srv) {
    if (!srv) return;
    srv->stopping = 1;
    if (!srv->bound) return;
    evhttp_del_accept_socket(srv->http, srv->bound);
    srv->bound = NULL;
}

void http_server_free(http_server *srv) {
    if (!srv) return;
    if (srv->sweep) event_free(srv->sweep);
    if (srv->http) evhttp_free(srv->http); /* frees every connection's bufferevent */
    while (srv->conn_count) conn_remove(srv, srv->conns[srv->conn_count - 1]);
    free(srv->conns);
    free(srv->by_bev);
    free(srv);
}

void http_server_counts(const http_server *srv, http_counts *counts) {
    memset(counts, 0, sizeof *counts);
    if (!srv) return;
    counts->open = srv->served;
    counts->refused = srv->refused_total;
    counts->cut = srv->cut_total;
}

void http_reply_buffer(struct evhttp_request *req, int status, const char *content_type,
                       struct evbuffer *body) {
    static const char oom[] = "{\"error\":\"internal\",\"message\":\"out of memory\"}";
    if (!body) {
        http_reply_text(req, 500, "application/json", oom, sizeof oom - 1);
        return;
    }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", content_type);
    access_log_end(req, status);
    evhttp_send_reply(req, status, reason_phrase(status), body);
    evbuffer_free(body);
}

void http_reply_text(struct evhttp_request *req, int status, const char *content_type,
                     const char *text, size_t len) {
    struct evbuffer *out = evbuffer_new();
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", content_type);
    if (out) evbuffer_add(out, text, len);
    access_log_end(req, status);
    evhttp_send_reply(req, status, reason_phrase(status), out);
    if (out) evbuffer_free(out);
}

int http_json_string(struct evbuffer *out, const char *text) {
    const char *run = text; /* bytes not yet written that need no escape */
    int rc = evbuffer_add(out, "\"", 1);
    for (const char *p = text;; p++) {
        unsigned char c = (unsigned char)*p;
        if (json_text_plain(c)) continue;
        if (p > run) rc |= evbuffer_add(out, run, (size_t)(p - run));
        if (c == '\0') break;
        char escape[6];
        rc |= evbuffer_add(out, escape, json_text_escape(c, escape));
        run = p + 1;
    }
    rc |= evbuffer_add(out, "\"", 1);
    return rc ? -1 : 0;
}

int http_json_integer(struct evbuffer *out, int64_t value) {
    char digits[JSON_TEXT_INT_MAX];
    return evbuffer_add(out, digits, json_text_int(value, digits)) ? -1 : 0;
}

void http_reply_json(struct evhttp_request *req, int status, json_t *body) {
    char *text = json_dumps(body, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(body);
    if (!text) {
        static const char oom[] = "{\"error\":\"internal\",\"message\":\"out of memory\"}";
        http_reply_text(req, 500, "application/json", oom, sizeof oom - 1);
        return;
    }
    http_reply_text(req, status, "application/json", text, strlen(text));
    free(text);
}

void http_reply_error(struct evhttp_request *req, int status, const char *code,
                      const char *message) {
    json_t *body = json_object();
    json_object_set_new(body, "error", json_string(code));
    json_object_set_new(body, "message", json_string(message));
    http_reply_json(req, status, body);
}

const char *http_body(struct evhttp_request *req, size_t *len) {
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    *len = evbuffer_get_length(in);
    /* A NUL after the body, so parsers can treat it as a string; not part of *len. */
    evbuffer_add(in, "", 1);
    const char *body = (const char *)evbuffer_pullup(in, -1);
    return body ? body : "";
}

const char *http_header(struct evhttp_request *req, const char *name) {
    return evhttp_find_header(evhttp_request_get_input_headers(req), name);
}

char *http_query_param(struct evhttp_request *req, const char *name) {
    const char *query = evhttp_uri_get_query(evhttp_request_get_evhttp_uri(req));
    struct evkeyvalq params;
    char *value = NULL;
    if (!query) return NULL;
    memset(&params, 0, sizeof params); /* evhttp_parse_query_str initialises it */
    if (evhttp_parse_query_str(query, &params) == 0) {
        const char *v = evhttp_find_header(&params, name);
        if (v) value = strdup(v);
    }
    evhttp_clear_headers(&params);
    return value;
}
