/* forward: relays a request this node cannot answer to the node that owns its partition
 * (cluster mode), over a small pool of persistent HTTP connections per owner, and
 * answers the client with the owner's answer. Everything runs on the HTTP loop. */
#ifndef LOOTLOG_FORWARD_H
#define LOOTLOG_FORWARD_H

#include <event2/event.h>
#include <event2/http.h>
#include <stddef.h>
#include <stdint.h>

typedef struct forwarder forwarder;

/* The request header a node adds when it forwards, and the answer header naming the node
 * that served a relayed answer. */
#define FORWARD_BY_HEADER "X-Lootlog-Forwarded-By"
#define FORWARD_SERVED_BY_HEADER "X-Lootlog-Served-By"

/* A forwarder on base (the HTTP loop's event base). self: this node's HOST:PORT, sent
 * with every forwarded request (copied). timeout_ms (> 0) bounds the whole exchange with
 * an owner, from the relay to the owner's complete answer. NULL with errstr on a bad self
 * or when the resolver cannot be set up. */
forwarder *forwarder_new(struct event_base *base, const char *self, int timeout_ms,
                         char *errstr, size_t errstr_size);

/* Frees the forwarder and all its connections. The clients of exchanges still pending
 * are answered 503 shutting_down (with Retry-After): call it before http_server_free
 * for them to get that answer (after it is safe too; they are gone then). NULL is a
 * no-op. */
void forwarder_free(forwarder *f);

/* 1 when req was itself forwarded by another node (it carries FORWARD_BY_HEADER), else
 * 0. Such a request must never be forwarded again, so that no request loops between
 * nodes while ownership moves; forwarder_relay does not check it, the caller does. */
int forwarder_is_forwarded(struct evhttp_request *req);

/* Sends req (method, URI with query, body, and the headers Content-Type, If-Match,
 * If-None-Match, Idempotency-Key, Authorization, Accept, plus FORWARD_BY_HEADER) to
 * http://owner (HOST:PORT, or [IPv6]:PORT), and answers req later with the owner's
 * status, body and headers Content-Type, ETag, Retry-After, Location, Cache-Control,
 * plus FORWARD_SERVED_BY_HEADER: owner. req is always answered, maybe before this
 * returns. The body sent is req's input buffer, cut to its Content-Length when one was
 * given (so a NUL added by http_body is not sent). Failures answer req with
 * {"error", "message", "owner"}:
 *   502 bad_owner          owner is not HOST:PORT (port 1-65535, no spaces, < 256 chars)
 *   502 owner_unreachable  connection refused, reset or closed before a complete answer
 *   502 owner_bad_answer   the owner's answer was not valid HTTP or was too large
 *   504 owner_timeout      no complete answer within timeout_ms
 *   503 forward_overloaded too many distinct owners have exchanges in flight
 *   500 internal           out of memory
 * A GET or HEAD that dies with EOF on a kept-alive connection (the owner may have closed
 * it as it was reused) is sent once more; nothing else is ever sent twice. When req's
 * client goes away first, the owner's answer is dropped: to learn of that, the forwarder
 * holds the close callback of req's connection (evhttp_connection_set_closecb) until req
 * is answered, so nothing else may set it meanwhile. */
void forwarder_relay(forwarder *f, struct evhttp_request *req, const char *owner);

/* Counters since forwarder_new (for /metrics): relayed, answers the owner gave (also
 * those dropped because their client had gone); failed, exchanges answered with one of
 * the errors above. Either pointer may be NULL; f NULL gives zeros. */
void forwarder_counts(const forwarder *f, uint64_t *relayed, uint64_t *failed);

#endif
