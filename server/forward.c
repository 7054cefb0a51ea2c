/* forward: relays requests to the node that owns their partition with libevent's own
 * HTTP client, so the loop never blocks. Each owner gets up to FORWARD_POOL_SIZE
 * persistent connections (an evhttp_connection sends its requests one after another);
 * each exchange has its own deadline, and its client may go away at any time. */
#include "server/forward.h"

#include "server/access_log.h"
#include "server/http.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/dns.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/queue.h>

#define FORWARD_POOL_SIZE 8        /* connections per owner */
#define FORWARD_MAX_OWNERS 32      /* owners remembered; idle ones are evicted beyond */
#define FORWARD_ADDRESS_MAX 255    /* HOST:PORT, as a DNS name is at most 253 */
#define FORWARD_MAX_ANSWER_BODY (16 * 1024 * 1024)
#define FORWARD_MAX_ANSWER_HEADERS (64 * 1024)

/* What travels between nodes: only what a route reads (conditions, idempotency, auth,
 * content negotiation) and what a client needs back (caching, retry hints, redirects). */
static const char *const request_headers[] = {
    "Content-Type", "If-Match", "If-None-Match", "Idempotency-Key", "Authorization", "Accept",
};
static const char *const answer_headers[] = {
    "Content-Type", "ETag", "Retry-After", "Location", "Cache-Control",
};

typedef struct {
    struct evhttp_connection *evcon;
    size_t in_flight;  /* exchanges queued on or being sent over it */
    uint64_t answered; /* answers received over it */
} pool_conn;

/* The connections to one owner. Freed (evicted) only when none is in flight, so the
 * exchanges can point into it. */
typedef struct owner_pool {
    struct owner_pool *next;
    char owner[FORWARD_ADDRESS_MAX + 1]; /* as given: HOST:PORT */
    char host[FORWARD_ADDRESS_MAX + 1];  /* without the IPv6 brackets */
    uint16_t port;
    pool_conn conns[FORWARD_POOL_SIZE];
    size_t conn_count;
    size_t in_flight;
    uint64_t last_used; /* forwarder.relay_seq at its latest relay, for eviction */
} owner_pool;

/* One client request on its way to an owner and back. */
typedef struct exchange {
    struct exchange *prev, *next;
    forwarder *f;
    struct evhttp_request *req;            /* the client's; NULL once answered or gone */
    struct evhttp_connection *client_conn; /* its connection, whose close callback is ours */
    struct evhttp_request *out;            /* to the owner; NULL once libevent let go of it */
    owner_pool *pool;
    pool_conn *conn;
    struct event *deadline;
    enum evhttp_request_error error; /* why libevent failed it, when has_error */
    int has_error;
    int sending;     /* inside evhttp_make_request, which may fail it synchronously */
    int sync_failed; /* ... and did */
    int retried;     /* already sent a second time after a stale connection */
    int reused;      /* the connection had answered before this was sent */
} exchange;

struct forwarder {
    struct event_base *base;
    struct evdns_base *dns; /* owners named by host name resolve without blocking */
    char self[FORWARD_ADDRESS_MAX + 1];
    int timeout_ms;
    owner_pool *owners;
    size_t owner_count;
    uint64_t relay_seq;
    exchange *pending;
    uint64_t relayed, failed;
};

/* ---------------------------------------------------------------- addresses */

static int is_host_char(char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           c == '.' || c == '-' || c == '_';
}

static int is_ipv6_char(char c) {
    return (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') || (c >= '0' && c <= '9') ||
           c == ':' || c == '.';
}

/* Splits "host:port" or "[v6]:port" into host (brackets dropped) and port. The text
 * comes from other nodes and ends up in a header and a connect, so it is held to a
 * strict shape: no spaces or control characters, a numeric port 1-65535, bounded length.
 * Returns 0, or -1 when address is not of that shape. */
static int parse_address(const char *address, char host[FORWARD_ADDRESS_MAX + 1],
                         uint16_t *port) {
    size_t len = address ? strnlen(address, FORWARD_ADDRESS_MAX + 1) : 0;
    const char *host_start = address, *host_end, *port_text;
    if (len == 0 || len > FORWARD_ADDRESS_MAX) return -1;
    if (address[0] == '[') {
        host_start = address + 1;
        host_end = strchr(host_start, ']');
        if (!host_end || host_end[1] != ':') return -1;
        for (const char *c = host_start; c < host_end; c++)
            if (!is_ipv6_char(*c)) return -1;
        port_text = host_end + 2;
    } else {
        host_end = strchr(address, ':');
        if (!host_end) return -1;
        for (const char *c = host_start; c < host_end; c++)
            if (!is_host_char(*c)) return -1;
        port_text = host_end + 1;
    }
    if (host_end == host_start) return -1;
    size_t digits = strlen(port_text);
    if (digits == 0 || digits > 5 || strspn(port_text, "0123456789") != digits) return -1;
    long value = strtol(port_text, NULL, 10);
    if (value < 1 || value > 65535) return -1;
    memcpy(host, host_start, (size_t)(host_end - host_start));
    host[host_end - host_start] = '\0';
    *port = (uint16_t)value;
    return 0;
}

/* ---------------------------------------------------------------- owner pools */

static void pool_free(owner_pool *pool) {
    /* Requests still queued on a connection are freed with it, without callbacks. */
    for (size_t i = 0; i < pool->conn_count; i++) evhttp_connection_free(pool->conns[i].evcon);
    free(pool);
}

/* Status of pool_get when it returns NULL. */
enum { POOL_BAD_OWNER = 1, POOL_FULL, POOL_NO_MEMORY };

/* The pool of owner, made on first use. When FORWARD_MAX_OWNERS pools exist, the least
 * recently used one with nothing in flight makes room (owners change as nodes restart on
 * other ports). NULL with *why set. */
static owner_pool *pool_get(forwarder *f, const char *owner, int *why) {
    char host[FORWARD_ADDRESS_MAX + 1];
    uint16_t port;
    owner_pool *pool, **victim = NULL;
    if (parse_address(owner, host, &port)) {
        *why = POOL_BAD_OWNER;
        return NULL;
    }
    for (owner_pool **at = &f->owners; *at; at = &(*at)->next) {
        if (strcmp((*at)->owner, owner) == 0) return *at;
        if ((*at)->in_flight == 0 && (!victim || (*at)->last_used < (*victim)->last_used))
            victim = at;
    }
    if (f->owner_count >= FORWARD_MAX_OWNERS) {
        if (!victim) {
            *why = POOL_FULL;
            return NULL;
        }
        owner_pool *evicted = *victim;
        *victim = evicted->next;
        f->owner_count--;
        pool_free(evicted);
    }
    pool = calloc(1, sizeof *pool);
    if (!pool) {
        *why = POOL_NO_MEMORY;
        return NULL;
    }
    snprintf(pool->owner, sizeof pool->owner, "%s", owner);
    memcpy(pool->host, host, sizeof pool->host);
    pool->port = port;
    pool->next = f->owners;
    f->owners = pool;
    f->owner_count++;
    return pool;
}

/* The connection for the next exchange with pool's owner: an idle one, else a new one
 * while the pool has room, else the least loaded (requests queue on it). NULL when none
 * exists and none can be made. */
static pool_conn *pool_pick(forwarder *f, owner_pool *pool) {
    pool_conn *best = NULL;
    for (size_t i = 0; i < pool->conn_count; i++)
        if (!best || pool->conns[i].in_flight < best->in_flight) best = &pool->conns[i];
    if ((best && best->in_flight == 0) || pool->conn_count == FORWARD_POOL_SIZE) return best;
    struct evhttp_connection *evcon =
        evhttp_connection_base_new(f->base, f->dns, pool->host, pool->port);
    if (!evcon) return best;
    /* No connection timeout of ours: each exchange has its deadline, and libevent's
     * default (50 s) closes idle connections rather than every timeout_ms. */
    evhttp_connection_set_retries(evcon, 0);
    evhttp_connection_set_max_body_size(evcon, FORWARD_MAX_ANSWER_BODY);
    evhttp_connection_set_max_headers_size(evcon, FORWARD_MAX_ANSWER_HEADERS);
    pool_conn *made = &pool->conns[pool->conn_count++];
    made->evcon = evcon;
    made->in_flight = 0;
    made->answered = 0;
    return made;
}

/* ---------------------------------------------------------------- exchanges */

static void copy_headers(struct evkeyvalq *from, struct evkeyvalq *to,
                         const char *const *names, size_t name_count) {
    struct evkeyval *header;
    TAILQ_FOREACH(header, from, next) {
        for (size_t i = 0; i < name_count; i++)
            if (strcasecmp(header->key, names[i]) == 0)
                evhttp_add_header(to, header->key, header->value);
    }
}

/* The body's length: its Content-Length when the client gave one that fits in the input
 * buffer (http_body appends a NUL that is no part of the body), else the whole buffer. */
static size_t body_length(struct evhttp_request *req) {
    size_t buffered = evbuffer_get_length(evhttp_request_get_input_buffer(req));
    const char *declared = http_header(req, "Content-Length");
    if (!declared) return buffered;
    char *end = NULL;
    errno = 0;
    unsigned long long value = strtoull(declared, &end, 10);
    if (errno || end == declared || *end != '\0' || value > buffered) return buffered;
    return (size_t)value;
}

/* Stops listening for the close of the client's connection and hands its request back:
 * the caller answers it (or it is gone). */
static struct evhttp_request *take_client(exchange *ex) {
    struct evhttp_request *req = ex->req;
    if (ex->client_conn) evhttp_connection_set_closecb(ex->client_conn, NULL, NULL);
    ex->client_conn = NULL;
    ex->req = NULL;
    return req;
}

/* Answers the client (if still there) with {"error", "message", "owner"}; counts it. */
static void answer_error(exchange *ex, int status, const char *code, const char *message) {
    struct evhttp_request *req = take_client(ex);
    ex->f->failed++;
    if (!req) return;
    json_t *body = json_object();
    json_object_set_new(body, "error", json_string(code));
    json_object_set_new(body, "message", json_string(message));
    json_object_set_new(body, "owner", json_string(ex->pool ? ex->pool->owner : ""));
    if (status == 503)
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
    http_reply_json(req, status, body);
}

/* Answers the client (if still there) with the owner's answer. */
static void answer_relayed(exchange *ex, struct evhttp_request *answer) {
    struct evhttp_request *req = take_client(ex);
    ex->f->relayed++;
    if (!req) return; /* the client went away: the answer is dropped */
    int status = evhttp_request_get_response_code(answer);
    const char *reason = evhttp_request_get_response_code_line(answer);
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    copy_headers(evhttp_request_get_input_headers(answer), out, answer_headers,
                 sizeof answer_headers / sizeof answer_headers[0]);
    evhttp_add_header(out, FORWARD_SERVED_BY_HEADER, ex->pool->owner);
    access_log_end(req, status);
    /* The body moves from the owner's answer into the reply, uncopied. */
    evhttp_send_reply(req, status, reason && *reason ? reason : "Relayed",
                      evhttp_request_get_input_buffer(answer));
}

/* Forgets a finished exchange: its client was answered (or is gone) and libevent holds
 * no request pointing at it. */
static void exchange_end(exchange *ex) {
    forwarder *f = ex->f;
    take_client(ex);
    if (ex->prev) ex->prev->next = ex->next;
    else f->pending = ex->next;
    if (ex->next) ex->next->prev = ex->prev;
    if (ex->deadline) event_free(ex->deadline);
    if (ex->conn) ex->conn->in_flight--;
    if (ex->pool) ex->pool->in_flight--;
    free(ex);
}

/* Answers a failed exchange from why libevent gave up on it, and ends it. */
static void fail_exchange(exchange *ex) {
    char message[FORWARD_ADDRESS_MAX + 128];
    const char *owner = ex->pool->owner;
    if (ex->has_error && ex->error == EVREQ_HTTP_TIMEOUT) {
        snprintf(message, sizeof message, "node %s did not answer in time", owner);
        answer_error(ex, 504, "owner_timeout", message);
    } else if (ex->has_error && (ex->error == EVREQ_HTTP_INVALID_HEADER ||
                                 ex->error == EVREQ_HTTP_DATA_TOO_LONG ||
                                 ex->error == EVREQ_HTTP_BUFFER_ERROR)) {
        snprintf(message, sizeof message, "node %s sent an invalid or oversized answer",
                 owner);
        answer_error(ex, 502, "owner_bad_answer", message);
    } else if (ex->has_error) {
        snprintf(message, sizeof message,
                 "node %s closed the connection before answering", owner);
        answer_error(ex, 502, "owner_unreachable", message);
    } else {
        /* libevent reports a failed connect with no error kind. */
        snprintf(message, sizeof message, "cannot connect to node %s", owner);
        answer_error(ex, 502, "owner_unreachable", message);
    }
    exchange_end(ex);
}

static void on_owner_answer(struct evhttp_request *answer, void *arg);
static void on_owner_error(enum evhttp_request_error error, void *arg);

/* Sends the client's request to the owner over ex->conn. Returns 0 when it is on its
 * way (on_owner_answer follows), -1 when it failed at once (nothing follows; the caller
 * answers). */
static int exchange_send(exchange *ex) {
    struct evhttp_request *req = ex->req;
    struct evhttp_request *out = evhttp_request_new(on_owner_answer, ex);
    if (!out) return -1;
    evhttp_request_set_error_cb(out, on_owner_error);
    struct evkeyvalq *headers = evhttp_request_get_output_headers(out);
    copy_headers(evhttp_request_get_input_headers(req), headers, request_headers,
                 sizeof request_headers / sizeof request_headers[0]);
    evhttp_add_header(headers, "Host", ex->pool->owner);
    evhttp_add_header(headers, FORWARD_BY_HEADER, ex->f->self);
    enum evhttp_cmd_type method = evhttp_request_get_command(req);
    size_t len = body_length(req);
    if (len > 0) {
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        evbuffer_add(evhttp_request_get_output_buffer(out), evbuffer_pullup(in, (ev_ssize_t)len),
                     len);
    }
    /* libevent adds a Content-Length to POST and PUT only. */
    if (len > 0 || method == EVHTTP_REQ_POST || method == EVHTTP_REQ_PUT ||
        method == EVHTTP_REQ_PATCH) {
        char text[24];
        snprintf(text, sizeof text, "%zu", len);
        evhttp_add_header(headers, "Content-Length", text);
    }
    ex->out = out;
    ex->has_error = 0;
    /* Open and answered before: the owner may have closed it by now (a reset
     * connection has no socket until this request opens one). */
    ex->reused = ex->conn->answered > 0 &&
                 bufferevent_getfd(evhttp_connection_get_bufferevent(ex->conn->evcon)) >= 0;
    /* evhttp_make_request fails the request through its callbacks, before returning,
     * when a connect cannot even start: those are noted, not acted on, here. */
    ex->sending = 1;
    ex->sync_failed = 0;
    int rc = evhttp_make_request(ex->conn->evcon, out, method, evhttp_request_get_uri(req));
    ex->sending = 0;
    if (rc != 0) ex->out = NULL; /* libevent freed it (or, out of memory, dropped it) */
    return rc != 0 || ex->sync_failed ? -1 : 0;
}

/* A GET or HEAD over a kept-alive connection the owner had closed fails at once with
 * EOF; sending it once more, on a fresh connection, is safe and what a client expects. */
static int may_resend(const exchange *ex) {
    enum evhttp_cmd_type method = ex->req ? evhttp_request_get_command(ex->req) : 0;
    return ex->req && !ex->retried && ex->reused && ex->has_error &&
           ex->error == EVREQ_HTTP_EOF && (method == EVHTTP_REQ_GET || method == EVHTTP_REQ_HEAD);
}

/* libevent calls this before on_owner_answer (with a NULL answer) when it failed the
 * request, and alone when the request was cancelled (the deadline did that). */
static void on_owner_error(enum evhttp_request_error error, void *arg) {
    exchange *ex = arg;
    if (error == EVREQ_HTTP_REQUEST_CANCEL) return;
    ex->error = error;
    ex->has_error = 1;
}

/* The owner answered, or the exchange failed (answer NULL, or with no status). libevent
 * frees answer once this returns. */
static void on_owner_answer(struct evhttp_request *answer, void *arg) {
    exchange *ex = arg;
    ex->out = NULL;
    if (ex->sending) {
        ex->sync_failed = 1;
        return;
    }
    if (!answer || evhttp_request_get_response_code(answer) == 0) {
        if (may_resend(ex)) {
            ex->retried = 1;
            if (exchange_send(ex) == 0) return;
        }
        fail_exchange(ex);
        return;
    }
    ex->conn->answered++;
    answer_relayed(ex, answer);
    exchange_end(ex);
}

/* timeout_ms passed without a complete answer: 504, and the request to the owner is
 * cancelled (which resets its connection if it was on the wire; libevent then carries
 * on with the requests queued behind it on a fresh one). */
static void on_deadline(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    exchange *ex = arg;
    char message[FORWARD_ADDRESS_MAX + 64];
    snprintf(message, sizeof message, "node %s did not answer within %d ms", ex->pool->owner,
             ex->f->timeout_ms);
    answer_error(ex, 504, "owner_timeout", message);
    if (ex->out) {
        struct evhttp_request *out = ex->out;
        ex->out = NULL;
        evhttp_cancel_request(out);
    }
    exchange_end(ex);
}

/* The client's connection is being freed (it closed, or the server is shutting down).
 * Where libevent detached the unanswered request rather than freeing it with the
 * connection, it is left for us to free; either way it is never touched again. */
static void on_client_close(struct evhttp_connection *evcon, void *arg) {
    (void)evcon;
    exchange *ex = arg;
    if (ex->req && evhttp_request_get_connection(ex->req) == NULL) evhttp_request_free(ex->req);
    ex->req = NULL;
    ex->client_conn = NULL;
}

/* ---------------------------------------------------------------- interface */

forwarder *forwarder_new(struct event_base *base, const char *self, int timeout_ms,
                         char *errstr, size_t errstr_size) {
    char host[FORWARD_ADDRESS_MAX + 1];
    uint16_t port;
    forwarder *f = NULL;
    if (parse_address(self, host, &port)) {
        snprintf(errstr, errstr_size, "this node's address '%s' is not HOST:PORT",
                 self ? self : "");
        goto fail;
    }
    if (timeout_ms <= 0) {
        snprintf(errstr, errstr_size, "the forwarding timeout must be positive (got %d ms)",
                 timeout_ms);
        goto fail;
    }
    f = calloc(1, sizeof *f);
    if (!f) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    f->base = base;
    f->timeout_ms = timeout_ms;
    snprintf(f->self, sizeof f->self, "%s", self);
    /* Reads resolv.conf and /etc/hosts now, at start-up; lookups later are async. It
     * keeps the loop alive only while a lookup runs. */
    f->dns = evdns_base_new(base, EVDNS_BASE_INITIALIZE_NAMESERVERS |
                                      EVDNS_BASE_DISABLE_WHEN_INACTIVE);
    if (!f->dns) {
        snprintf(errstr, errstr_size, "cannot set up the DNS resolver for forwarding");
        goto fail;
    }
    return f;
fail:
    forwarder_free(f);
    return NULL;
}

void forwarder_free(forwarder *f) {
    if (!f) return;
    while (f->pending) {
        exchange *ex = f->pending;
        /* Its request to the owner is freed with the connection below, silently. */
        ex->out = NULL;
        answer_error(ex, 503, "shutting_down", "lootlog is stopping");
        exchange_end(ex);
    }
    while (f->owners) {
        owner_pool *pool = f->owners;
        f->owners = pool->next;
        pool_free(pool);
    }
    if (f->dns) evdns_base_free(f->dns, 0);
    free(f);
}

int forwarder_is_forwarded(struct evhttp_request *req) {
    return http_header(req, FORWARD_BY_HEADER) != NULL;
}

void forwarder_relay(forwarder *f, struct evhttp_request *req, const char *owner) {
    char message[FORWARD_ADDRESS_MAX + 128];
    int why = 0;
    owner_pool *pool = pool_get(f, owner, &why);
    if (!pool) {
        json_t *body = json_object();
        const char *code = "internal";
        int status = 500;
        if (why == POOL_BAD_OWNER) {
            status = 502;
            code = "bad_owner";
            /* Not echoed in the message: it may be anything, even invalid UTF-8. */
            snprintf(message, sizeof message, "the partition's owner is not HOST:PORT");
        } else if (why == POOL_FULL) {
            status = 503;
            code = "forward_overloaded";
            snprintf(message, sizeof message,
                     "requests to %d other nodes are in flight; retry shortly",
                     FORWARD_MAX_OWNERS);
            evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        } else {
            snprintf(message, sizeof message, "out of memory");
        }
        f->failed++;
        json_object_set_new(body, "error", json_string(code));
        json_object_set_new(body, "message", json_string(message));
        size_t owner_len = owner ? strnlen(owner, FORWARD_ADDRESS_MAX) : 0;
        /* json_stringn gives NULL for invalid UTF-8: then "owner" is left out. */
        json_object_set_new(body, "owner", json_stringn(owner ? owner : "", owner_len));
        http_reply_json(req, status, body);
        return;
    }
    pool->last_used = ++f->relay_seq;
    exchange *ex = calloc(1, sizeof *ex);
    if (!ex) {
        f->failed++;
        http_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    ex->f = f;
    ex->req = req;
    ex->pool = pool;
    pool->in_flight++;
    ex->next = f->pending;
    if (ex->next) ex->next->prev = ex;
    f->pending = ex;
    ex->conn = pool_pick(f, pool);
    if (ex->conn) ex->conn->in_flight++;
    ex->deadline = evtimer_new(f->base, on_deadline, ex);
    struct timeval timeout = {f->timeout_ms / 1000, (f->timeout_ms % 1000) * 1000};
    if (!ex->conn || !ex->deadline || evtimer_add(ex->deadline, &timeout)) {
        answer_error(ex, 500, "internal", "cannot start the exchange with the owner");
        exchange_end(ex);
        return;
    }
    /* libevent keeps the request until it is answered, but frees it with its connection
     * (server shutdown, or a client gone while it was being read): the close callback
     * says so. An incoming connection carries one request at a time. */
    ex->client_conn = evhttp_request_get_connection(req);
    if (ex->client_conn) evhttp_connection_set_closecb(ex->client_conn, on_client_close, ex);
    if (exchange_send(ex)) fail_exchange(ex);
}

void forwarder_counts(const forwarder *f, uint64_t *relayed, uint64_t *failed) {
    if (relayed) *relayed = f ? f->relayed : 0;
    if (failed) *failed = f ? f->failed : 0;
}
