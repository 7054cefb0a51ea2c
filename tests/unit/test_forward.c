/* The forwarder over real sockets, in one process and one event base: an "owner" evhttp
 * server that echoes what reached it (or stalls, or hangs up), a "front" server whose
 * handler relays to it, and evhttp clients. Checks what a client and the owner see:
 * statuses, bodies byte for byte, the copied headers and no others, the marker and
 * Served-By headers, the 502/503/504 failures, clients or servers going away mid-exchange,
 * and 200 concurrent requests sharing the per-owner pool. */
#include "server/forward.h"
#include "server/http.h"

#include "check.h"

#include <arpa/inet.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CONCURRENT 200
#define FORWARD_TEST_QUEUED 10 /* more than a pool's 8 connections: some queue */
#define MAX_PEERS 1024

typedef struct {
    struct event_base *base;
    struct evhttp *owner, *front;
    int owner_port, front_port;
    char owner_addr[64], front_addr[64];
    forwarder *fwd;             /* what the front relays with */
    int slow_seen, close_seen;  /* requests the owner left unanswered */
    int front_saw_forwarded;    /* forwarded requests that reached a front */
    uint16_t peers[MAX_PEERS];  /* distinct client ports the owner served */
    size_t peer_count;
} env;

typedef struct {
    int done;
    int status; /* -1: the request failed on the client side */
    char *body;
    size_t body_len;
    struct evkeyvalq headers;
} answer;

/* ---------------------------------------------------------------- the owner */

/* Notes the connection req came on; returns 1 if it had brought one before. */
static int note_peer(env *e, struct evhttp_request *req) {
    char *address = NULL;
    ev_uint16_t port = 0;
    evhttp_connection_get_peer(evhttp_request_get_connection(req), &address, &port);
    for (size_t i = 0; i < e->peer_count; i++)
        if (e->peers[i] == port) return 1;
    if (e->peer_count < MAX_PEERS) e->peers[e->peer_count++] = port;
    return 0;
}

/* Answers with what arrived as JSON: method, URI, body, headers, and whether the
 * forwarder recognises it as forwarded. ?status= sets the status. */
static void owner_echo(struct evhttp_request *req) {
    size_t len;
    const char *body = http_body(req, &len);
    json_t *echo = json_object(), *headers = json_object();
    struct evkeyval *header;
    TAILQ_FOREACH(header, evhttp_request_get_input_headers(req), next)
        json_object_set_new(headers, header->key, json_string(header->value));
    const char *method = "OTHER";
    switch (evhttp_request_get_command(req)) {
    case EVHTTP_REQ_GET: method = "GET"; break;
    case EVHTTP_REQ_POST: method = "POST"; break;
    case EVHTTP_REQ_PUT: method = "PUT"; break;
    case EVHTTP_REQ_PATCH: method = "PATCH"; break;
    case EVHTTP_REQ_DELETE: method = "DELETE"; break;
    default: break;
    }
    json_object_set_new(echo, "method", json_string(method));
    json_object_set_new(echo, "uri", json_string(evhttp_request_get_uri(req)));
    json_object_set_new(echo, "body", json_stringn(body, len));
    json_object_set_new(echo, "forwarded", json_boolean(forwarder_is_forwarded(req)));
    json_object_set_new(echo, "headers", headers);
    char *status_text = http_query_param(req, "status");
    int status = status_text ? atoi(status_text) : 200;
    free(status_text);
    struct evkeyvalq *out = evhttp_request_get_output_headers(req);
    evhttp_add_header(out, "ETag", "\"v7\"");
    evhttp_add_header(out, "Cache-Control", "no-store");
    evhttp_add_header(out, "Retry-After", "3");
    evhttp_add_header(out, "Location", "/v1/elsewhere");
    evhttp_add_header(out, "X-Owner-Private", "not for clients");
    http_reply_json(req, status, echo);
}

static void on_owner_delay(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    owner_echo(arg);
}

static void owner_handler(struct evhttp_request *req, void *arg) {
    env *e = arg;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    int reused = note_peer(e, req);
    if (strcmp(path, "/slow") == 0) {
        e->slow_seen++; /* never answered; freed with the owner server */
        return;
    }
    /* /stale: as an owner that closed a kept-alive connection just as this request came
     * on it; on a new connection it is answered. */
    if (strcmp(path, "/close") == 0 || (strcmp(path, "/stale") == 0 && reused)) {
        /* Hangs up without a word. */
        struct evhttp_connection *conn = evhttp_request_get_connection(req);
        shutdown(bufferevent_getfd(evhttp_connection_get_bufferevent(conn)), SHUT_RDWR);
        e->close_seen++;
        return;
    }
    if (strcmp(path, "/raw") == 0) {
        /* The body back as it came, byte for byte. */
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type",
                          "application/octet-stream");
        evhttp_send_reply(req, 200, "OK", in);
        return;
    }
    if (strcmp(path, "/delay") == 0) {
        char *ms_text = http_query_param(req, "ms");
        int ms = ms_text ? atoi(ms_text) : 0;
        free(ms_text);
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};
        if (event_base_once(e->base, -1, EV_TIMEOUT, on_owner_delay, req, &tv) == 0) return;
    }
    owner_echo(req);
}

/* ---------------------------------------------------------------- the front */

static void front_handler(struct evhttp_request *req, void *arg) {
    env *e = arg;
    if (forwarder_is_forwarded(req)) {
        /* What a node does with a forwarded request it cannot answer: never forward. */
        e->front_saw_forwarded++;
        http_reply_error(req, 421, "not_owner", "forwarded here, not forwarded again");
        return;
    }
    if (http_header(req, "X-Test-Read-Body")) {
        size_t len;
        http_body(req, &len); /* as a route would before deciding to forward */
    }
    if (http_header(req, "X-Test-Null-Owner")) {
        forwarder_relay(e->fwd, req, NULL);
        return;
    }
    const char *owner = http_header(req, "X-Test-Owner");
    forwarder_relay(e->fwd, req, owner ? owner : e->owner_addr);
}

/* ---------------------------------------------------------------- the client */

static void on_answer(struct evhttp_request *req, void *arg) {
    answer *a = arg;
    a->done = 1;
    if (!req || evhttp_request_get_response_code(req) == 0) {
        a->status = -1;
        return;
    }
    a->status = evhttp_request_get_response_code(req);
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    a->body_len = evbuffer_get_length(in);
    a->body = malloc(a->body_len + 1);
    evbuffer_remove(in, a->body, a->body_len);
    a->body[a->body_len] = '\0';
    struct evkeyval *header;
    TAILQ_FOREACH(header, evhttp_request_get_input_headers(req), next)
        evhttp_add_header(&a->headers, header->key, header->value);
}

static void answer_init(answer *a) {
    memset(a, 0, sizeof *a);
    TAILQ_INIT(&a->headers);
}

static void answer_clear(answer *a) {
    free(a->body);
    evhttp_clear_headers(&a->headers);
    answer_init(a);
}

static const char *answer_header(answer *a, const char *name) {
    return evhttp_find_header(&a->headers, name);
}

/* Sends a request to port; the extra headers are name, value pairs ending with NULL. */
static void send_request(struct evhttp_connection *conn, answer *a, enum evhttp_cmd_type method,
                         const char *uri, const char *body, size_t body_len, ...) {
    struct evhttp_request *req = evhttp_request_new(on_answer, a);
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    va_list args;
    va_start(args, body_len);
    for (const char *name = va_arg(args, const char *); name; name = va_arg(args, const char *))
        evhttp_add_header(headers, name, va_arg(args, const char *));
    va_end(args);
    evhttp_add_header(headers, "Host", "test");
    if (body_len) evbuffer_add(evhttp_request_get_output_buffer(req), body, body_len);
    if (body_len && method != EVHTTP_REQ_POST && method != EVHTTP_REQ_PUT) {
        char text[24];
        snprintf(text, sizeof text, "%zu", body_len);
        evhttp_add_header(headers, "Content-Length", text);
    }
    CHECK(evhttp_make_request(conn, req, method, uri) == 0);
}

static int64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    (void)arg;
}

/* Runs the loop until *count reaches want or limit_ms passes; returns 1 if it did. */
static int run_until(env *e, const int *count, int want, int limit_ms) {
    /* A ticking timer so the loop wakes up to look at the clock. */
    struct event *tick = event_new(e->base, -1, EV_PERSIST, on_tick, NULL);
    struct timeval every = {0, 10 * 1000};
    event_add(tick, &every);
    int64_t until = now_ms() + limit_ms;
    while (*count < want && now_ms() < until) event_base_loop(e->base, EVLOOP_ONCE);
    event_free(tick);
    return *count >= want;
}

static void run_for(env *e, int ms) {
    int never = 0;
    run_until(e, &never, 1, ms);
}

/* One request through the front, waited for. */
#define FRONT(e, a, method, uri, body, body_len, ...)                                        \
    do {                                                                                   \
        struct evhttp_connection *conn_ =                                                  \
            evhttp_connection_base_new((e)->base, NULL, "127.0.0.1", (e)->front_port);     \
        answer_init(a);                                                                    \
        send_request(conn_, a, method, uri, body, body_len, __VA_ARGS__);                  \
        CHECK(run_until(e, &(a)->done, 1, 10000));                                         \
        evhttp_connection_free(conn_);                                                     \
    } while (0)

static int listen_on(env *e, struct evhttp **http, int *port,
                     void (*handler)(struct evhttp_request *, void *)) {
    *http = evhttp_new(e->base);
    if (!*http) return -1;
    evhttp_set_allowed_methods(*http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_PUT |
                                          EVHTTP_REQ_DELETE | EVHTTP_REQ_HEAD |
                                          EVHTTP_REQ_PATCH);
    evhttp_set_gencb(*http, handler, e);
    struct evhttp_bound_socket *bound = evhttp_bind_socket_with_handle(*http, "127.0.0.1", 0);
    if (!bound) return -1;
    struct sockaddr_in sin;
    socklen_t sin_len = sizeof sin;
    if (getsockname(evhttp_bound_socket_get_fd(bound), (struct sockaddr *)&sin, &sin_len))
        return -1;
    *port = ntohs(sin.sin_port);
    return 0;
}

/* A port nothing listens on: bound, then closed. */
static int closed_port(void) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in sin = {.sin_family = AF_INET, .sin_port = 0};
    socklen_t sin_len = sizeof sin;
    sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    int port = -1;
    if (fd >= 0 && bind(fd, (struct sockaddr *)&sin, sizeof sin) == 0 &&
        getsockname(fd, (struct sockaddr *)&sin, &sin_len) == 0)
        port = ntohs(sin.sin_port);
    if (fd >= 0) close(fd);
    return port;
}

static json_t *answer_json(answer *a) {
    return a->body ? json_loadb(a->body, a->body_len, 0, NULL) : NULL;
}

/* The error code of a JSON error answer ("" when it is not one). */
static const char *error_code(answer *a, char *buf, size_t size) {
    json_t *body = answer_json(a);
    const char *code = body ? json_string_value(json_object_get(body, "error")) : NULL;
    snprintf(buf, size, "%s", code ? code : "");
    json_decref(body);
    return buf;
}

/* ---------------------------------------------------------------- the checks */

static void test_echo_and_headers(env *e) {
    answer a;
    const char *body = "{\"qty\":2}";
    FRONT(e, &a, EVHTTP_REQ_POST, "/echo?status=201&x=a%20b", body, strlen(body),
          "Content-Type", "application/json", "If-Match", "\"v6\"", "If-None-Match", "*",
          "Idempotency-Key", "key-1", "Authorization", "Bearer t0k", "Accept",
          "application/json", "X-Not-Copied", "no", NULL);
    CHECK(a.status == 201);
    CHECK_STR(answer_header(&a, "Content-Type"), "application/json");
    CHECK_STR(answer_header(&a, "ETag"), "\"v7\"");
    CHECK_STR(answer_header(&a, "Cache-Control"), "no-store");
    CHECK_STR(answer_header(&a, "Retry-After"), "3");
    CHECK_STR(answer_header(&a, "Location"), "/v1/elsewhere");
    CHECK_STR(answer_header(&a, FORWARD_SERVED_BY_HEADER), e->owner_addr);
    CHECK(answer_header(&a, "X-Owner-Private") == NULL);
    json_t *echo = answer_json(&a);
    CHECK(echo != NULL);
    json_t *headers = json_object_get(echo, "headers");
    CHECK_STR(json_string_value(json_object_get(echo, "method")), "POST");
    CHECK_STR(json_string_value(json_object_get(echo, "uri")), "/echo?status=201&x=a%20b");
    CHECK_STR(json_string_value(json_object_get(echo, "body")), body);
    CHECK(json_is_true(json_object_get(echo, "forwarded")));
    CHECK_STR(json_string_value(json_object_get(headers, "Content-Type")), "application/json");
    CHECK_STR(json_string_value(json_object_get(headers, "If-Match")), "\"v6\"");
    CHECK_STR(json_string_value(json_object_get(headers, "If-None-Match")), "*");
    CHECK_STR(json_string_value(json_object_get(headers, "Idempotency-Key")), "key-1");
    CHECK_STR(json_string_value(json_object_get(headers, "Authorization")), "Bearer t0k");
    CHECK_STR(json_string_value(json_object_get(headers, "Accept")), "application/json");
    CHECK_STR(json_string_value(json_object_get(headers, FORWARD_BY_HEADER)), e->front_addr);
    CHECK_STR(json_string_value(json_object_get(headers, "Host")), e->owner_addr);
    CHECK(json_object_get(headers, "X-Not-Copied") == NULL);
    CHECK(json_object_get(headers, "X-Test-Owner") == NULL);
    json_decref(echo);
    answer_clear(&a);

    /* An error answer of the owner is relayed as it is. */
    FRONT(e, &a, EVHTTP_REQ_GET, "/echo?status=404", NULL, 0, NULL);
    CHECK(a.status == 404);
    echo = answer_json(&a);
    CHECK_STR(json_string_value(json_object_get(echo, "method")), "GET");
    CHECK_STR(json_string_value(json_object_get(echo, "body")), "");
    CHECK(json_is_true(json_object_get(echo, "forwarded")));
    json_decref(echo);
    answer_clear(&a);
}

static void test_marker(env *e) {
    answer a;
    /* The owner sees the marker on what it is sent. */
    FRONT(e, &a, EVHTTP_REQ_GET, "/echo", NULL, 0, "X-Test-Owner", e->owner_addr, NULL);
    json_t *echo = answer_json(&a);
    CHECK(json_is_true(json_object_get(echo, "forwarded")));
    json_decref(echo);
    answer_clear(&a);
    /* Relayed to a front (as to a node that lost the partition meanwhile): it sees the
     * marker and answers itself instead of forwarding again. */
    int before = e->front_saw_forwarded;
    FRONT(e, &a, EVHTTP_REQ_GET, "/v1/users/u1/inventory", NULL, 0, "X-Test-Owner",
          e->front_addr, NULL);
    char code[64];
    CHECK(a.status == 421);
    CHECK_STR(error_code(&a, code, sizeof code), "not_owner");
    CHECK_STR(answer_header(&a, FORWARD_SERVED_BY_HEADER), e->front_addr);
    CHECK(e->front_saw_forwarded == before + 1);
    answer_clear(&a);
}

static void test_bodies(env *e) {
    answer a;
    size_t big_len = 60 * 1024;
    char *big = malloc(big_len);
    for (size_t i = 0; i < big_len; i++) big[i] = (char)((i * 131 + 7) % 256); /* NULs too */
    FRONT(e, &a, EVHTTP_REQ_POST, "/raw", big, big_len, "Content-Type",
          "application/octet-stream", NULL);
    CHECK(a.status == 200);
    CHECK(a.body_len == big_len && memcmp(a.body, big, big_len) == 0);
    CHECK_STR(answer_header(&a, "Content-Type"), "application/octet-stream");
    answer_clear(&a);
    /* A route that read the body first (http_body adds a NUL) still sends it exactly. */
    FRONT(e, &a, EVHTTP_REQ_PUT, "/raw", big, 1000, "X-Test-Read-Body", "1", NULL);
    CHECK(a.status == 200);
    CHECK(a.body_len == 1000 && memcmp(a.body, big, 1000) == 0);
    answer_clear(&a);
    /* Methods libevent gives no Content-Length of its own. */
    FRONT(e, &a, EVHTTP_REQ_PATCH, "/raw", "patch-body", 10, NULL);
    CHECK(a.status == 200);
    CHECK(a.body_len == 10 && memcmp(a.body, "patch-body", 10) == 0);
    answer_clear(&a);
    FRONT(e, &a, EVHTTP_REQ_DELETE, "/echo", NULL, 0, NULL);
    json_t *echo = answer_json(&a);
    CHECK(a.status == 200);
    CHECK_STR(json_string_value(json_object_get(echo, "method")), "DELETE");
    json_decref(echo);
    answer_clear(&a);
    free(big);
}

static void test_failures(env *e) {
    answer a;
    char code[64], owner[64];
    uint64_t failed_before, failed_after, relayed;
    forwarder_counts(e->fwd, &relayed, &failed_before);

    int port = closed_port();
    CHECK(port > 0);
    snprintf(owner, sizeof owner, "127.0.0.1:%d", port);
    FRONT(e, &a, EVHTTP_REQ_GET, "/echo", NULL, 0, "X-Test-Owner", owner, NULL);
    CHECK(a.status == 502);
    CHECK_STR(error_code(&a, code, sizeof code), "owner_unreachable");
    json_t *body = answer_json(&a);
    CHECK_STR(json_string_value(json_object_get(body, "owner")), owner);
    CHECK(json_string_value(json_object_get(body, "message")) != NULL);
    json_decref(body);
    answer_clear(&a);

    /* The owner hangs up mid-exchange. A GET over a kept-alive connection is sent once
     * more, on a new one (the owner may have closed the old one as it was reused): the
     * owner hangs up twice. A POST is never sent twice. */
    int closes = e->close_seen;
    FRONT(e, &a, EVHTTP_REQ_GET, "/close", NULL, 0, NULL);
    CHECK(a.status == 502);
    CHECK_STR(error_code(&a, code, sizeof code), "owner_unreachable");
    CHECK(e->close_seen == closes + 2);
    answer_clear(&a);
    closes = e->close_seen;
    FRONT(e, &a, EVHTTP_REQ_POST, "/close", "x", 1, NULL);
    CHECK(a.status == 502);
    CHECK_STR(error_code(&a, code, sizeof code), "owner_unreachable");
    CHECK(e->close_seen == closes + 1);
    answer_clear(&a);
    /* The stale connection case itself: answered from the second try. */
    FRONT(e, &a, EVHTTP_REQ_GET, "/echo", NULL, 0, NULL); /* opens the connection again */
    CHECK(a.status == 200);
    answer_clear(&a);
    closes = e->close_seen;
    FRONT(e, &a, EVHTTP_REQ_GET, "/stale", NULL, 0, NULL);
    CHECK(a.status == 200);
    CHECK(e->close_seen == closes + 1);
    answer_clear(&a);

    const char *bad[] = {
        "nonsense", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "127.0.0.1:80x",
        "127.0.0.1:", ":8080", "bad host:8080", "a:b:8080", "[::1]", "[::1]8080",
        "[zz]:8080", "127.0.0.1:123456", "",
        "hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh"
        "hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh"
        "hhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhhh:8080",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        FRONT(e, &a, EVHTTP_REQ_GET, "/echo", NULL, 0, "X-Test-Owner", bad[i], NULL);
        CHECK(a.status == 502);
        CHECK_STR(error_code(&a, code, sizeof code), "bad_owner");
        if (a.status != 502) fprintf(stderr, "  owner '%s' was accepted\n", bad[i]);
        answer_clear(&a);
    }
    FRONT(e, &a, EVHTTP_REQ_GET, "/echo", NULL, 0, "X-Test-Null-Owner", "1", NULL);
    CHECK(a.status == 502);
    CHECK_STR(error_code(&a, code, sizeof code), "bad_owner");
    answer_clear(&a);
    forwarder_counts(e->fwd, NULL, &failed_after);
    CHECK(failed_after == failed_before + 3 + sizeof bad / sizeof bad[0] + 1);

    /* A well-formed name that does not resolve is unreachable, not a crash. */
    FRONT(e, &a, EVHTTP_REQ_GET, "/echo", NULL, 0, "X-Test-Owner", "no-such-host.invalid:8080",
          NULL);
    CHECK(a.status == 502);
    CHECK_STR(error_code(&a, code, sizeof code), "owner_unreachable");
    answer_clear(&a);
}

static void test_timeout(env *e) {
    char errstr[256], code[64];
    answer a;
    forwarder *main_fwd = e->fwd;
    e->fwd = forwarder_new(e->base, e->front_addr, 300, errstr, sizeof errstr);
    CHECK(e->fwd != NULL);
    int64_t started = now_ms();
    FRONT(e, &a, EVHTTP_REQ_GET, "/slow", NULL, 0, NULL);
    int64_t took = now_ms() - started;
    CHECK(a.status == 504);
    CHECK_STR(error_code(&a, code, sizeof code), "owner_timeout");
    CHECK(took >= 250 && took < 3000);
    answer_clear(&a);
    /* The cancelled exchange's connection is fine for the next one. */
    FRONT(e, &a, EVHTTP_REQ_GET, "/echo?status=200", NULL, 0, NULL);
    CHECK(a.status == 200);
    answer_clear(&a);
    /* More stalled exchanges than the pool has connections: those queued behind a
     * stalled one time out as well, and none blocks the loop. */
    answer slow[FORWARD_TEST_QUEUED];
    struct evhttp_connection *conns[FORWARD_TEST_QUEUED];
    int done = 0;
    for (int i = 0; i < FORWARD_TEST_QUEUED; i++) {
        conns[i] = evhttp_connection_base_new(e->base, NULL, "127.0.0.1", e->front_port);
        answer_init(&slow[i]);
        send_request(conns[i], &slow[i], EVHTTP_REQ_GET, "/slow", NULL, 0, NULL);
    }
    int64_t until = now_ms() + 5000;
    while (done < FORWARD_TEST_QUEUED && now_ms() < until) {
        run_for(e, 20);
        done = 0;
        for (int i = 0; i < FORWARD_TEST_QUEUED; i++) done += slow[i].done;
    }
    CHECK(done == FORWARD_TEST_QUEUED);
    for (int i = 0; i < FORWARD_TEST_QUEUED; i++) {
        CHECK(slow[i].status == 504);
        answer_clear(&slow[i]);
        evhttp_connection_free(conns[i]);
    }
    forwarder_free(e->fwd);
    e->fwd = main_fwd;
}

static void test_client_gone(env *e) {
    uint64_t relayed_before, relayed_after, failed_before, failed_after;
    forwarder_counts(e->fwd, &relayed_before, &failed_before);
    /* The client hangs up while the owner takes its time: the owner's answer finds no one,
     * and is dropped. */
    answer a;
    answer_init(&a);
    struct evhttp_connection *conn =
        evhttp_connection_base_new(e->base, NULL, "127.0.0.1", e->front_port);
    send_request(conn, &a, EVHTTP_REQ_POST, "/delay?ms=200", "gone", 4, NULL);
    run_for(e, 50);
    evhttp_connection_free(conn); /* frees the pending request: a is never answered */
    run_for(e, 400);
    CHECK(!a.done);
    forwarder_counts(e->fwd, &relayed_after, &failed_after);
    CHECK(relayed_after == relayed_before + 1);
    CHECK(failed_after == failed_before);

    /* The front server itself goes away mid-exchange: libevent frees the client's request
     * with its connection, and the forwarder must not touch it afterwards. */
    struct evhttp *front2;
    int front2_port;
    CHECK(listen_on(e, &front2, &front2_port, front_handler) == 0);
    answer_init(&a);
    conn = evhttp_connection_base_new(e->base, NULL, "127.0.0.1", front2_port);
    send_request(conn, &a, EVHTTP_REQ_GET, "/delay?ms=200", NULL, 0, NULL);
    run_for(e, 50);
    evhttp_free(front2);
    run_for(e, 400);
    forwarder_counts(e->fwd, &relayed_after, NULL);
    CHECK(relayed_after == relayed_before + 2);
    CHECK(a.done && a.status == -1); /* the client saw its connection close */
    answer_clear(&a);
    evhttp_connection_free(conn);

    /* Still serving. */
    FRONT(e, &a, EVHTTP_REQ_GET, "/echo", NULL, 0, NULL);
    CHECK(a.status == 200);
    answer_clear(&a);
}

static void test_shutdown(env *e) {
    char errstr[256], code[64];
    forwarder *main_fwd = e->fwd;
    e->fwd = forwarder_new(e->base, e->front_addr, 10000, errstr, sizeof errstr);
    CHECK(e->fwd != NULL);
    answer a;
    answer_init(&a);
    struct evhttp_connection *conn =
        evhttp_connection_base_new(e->base, NULL, "127.0.0.1", e->front_port);
    int slow = e->slow_seen;
    send_request(conn, &a, EVHTTP_REQ_GET, "/slow", NULL, 0, NULL);
    CHECK(run_until(e, &e->slow_seen, slow + 1, 5000));
    forwarder_free(e->fwd);
    e->fwd = main_fwd;
    CHECK(run_until(e, &a.done, 1, 5000));
    CHECK(a.status == 503);
    CHECK_STR(error_code(&a, code, sizeof code), "shutting_down");
    CHECK_STR(answer_header(&a, "Retry-After"), "1");
    answer_clear(&a);
    evhttp_connection_free(conn);
}

static void test_concurrent(env *e) {
    static answer answers[CONCURRENT];
    static struct evhttp_connection *conns[CONCURRENT];
    char uri[64], body[32];
    e->peer_count = 0;
    for (int i = 0; i < CONCURRENT; i++) {
        conns[i] = evhttp_connection_base_new(e->base, NULL, "127.0.0.1", e->front_port);
        answer_init(&answers[i]);
        snprintf(uri, sizeof uri, "/delay?ms=5&n=%d", i);
        snprintf(body, sizeof body, "body-%d", i);
        send_request(conns[i], &answers[i], EVHTTP_REQ_POST, uri, body, strlen(body), NULL);
    }
    int done = 0;
    int64_t until = now_ms() + 20000;
    while (done < CONCURRENT && now_ms() < until) {
        run_for(e, 20);
        done = 0;
        for (int i = 0; i < CONCURRENT; i++) done += answers[i].done;
    }
    CHECK(done == CONCURRENT);
    int right = 0;
    for (int i = 0; i < CONCURRENT; i++) {
        json_t *echo = answer_json(&answers[i]);
        snprintf(uri, sizeof uri, "/delay?ms=5&n=%d", i);
        snprintf(body, sizeof body, "body-%d", i);
        const char *got_uri = json_string_value(json_object_get(echo, "uri"));
        const char *got_body = json_string_value(json_object_get(echo, "body"));
        if (answers[i].status == 200 && got_uri && strcmp(got_uri, uri) == 0 && got_body &&
            strcmp(got_body, body) == 0)
            right++;
        else
            fprintf(stderr, "  request %d: status %d\n", i, answers[i].status);
        json_decref(echo);
        answer_clear(&answers[i]);
        evhttp_connection_free(conns[i]);
    }
    CHECK(right == CONCURRENT);
    /* The owner saw the pool: several connections, never more than 8. */
    CHECK(e->peer_count >= 2 && e->peer_count <= 8);
    printf("%d concurrent requests came to the owner over %zu connections\n", CONCURRENT,
           e->peer_count);
}

int main(void) {
    char errstr[256];
    env e;
    memset(&e, 0, sizeof e);
    e.base = event_base_new();
    CHECK(e.base != NULL);
    CHECK(listen_on(&e, &e.owner, &e.owner_port, owner_handler) == 0);
    CHECK(listen_on(&e, &e.front, &e.front_port, front_handler) == 0);
    snprintf(e.owner_addr, sizeof e.owner_addr, "127.0.0.1:%d", e.owner_port);
    snprintf(e.front_addr, sizeof e.front_addr, "127.0.0.1:%d", e.front_port);

    CHECK(forwarder_new(e.base, "not an address", 1000, errstr, sizeof errstr) == NULL);
    CHECK(strstr(errstr, "HOST:PORT") != NULL);
    CHECK(forwarder_new(e.base, e.front_addr, 0, errstr, sizeof errstr) == NULL);
    e.fwd = forwarder_new(e.base, e.front_addr, 2000, errstr, sizeof errstr);
    CHECK(e.fwd != NULL);
    if (!e.fwd) {
        fprintf(stderr, "forwarder_new: %s\n", errstr);
        return check_finish("forward");
    }

    test_echo_and_headers(&e);
    test_marker(&e);
    test_bodies(&e);
    test_failures(&e);
    test_timeout(&e);
    test_client_gone(&e);
    test_shutdown(&e);
    test_concurrent(&e);

    uint64_t relayed, failed;
    forwarder_counts(e.fwd, &relayed, &failed);
    CHECK(relayed > CONCURRENT);
    forwarder_counts(NULL, &relayed, &failed);
    CHECK(relayed == 0 && failed == 0);
    forwarder_free(e.fwd);
    evhttp_free(e.front);
    evhttp_free(e.owner);
    event_base_free(e.base);
    return check_finish("forward");
}
