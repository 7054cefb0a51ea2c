/* api: the HTTP application — request -> handler dispatch, the write path (validate,
 * encode, produce, answer from the delivery report) and the read path (one read
 * transaction per answer). */
#include "server/api.h"
#include "lib/clock.h"

#include "state/codec.h"
#include "state/fold.h"
#include "lib/log.h"
#include "kafka/replay.h"
#include "server/wait_index.h"
#include "server/http.h"
#include "server/idempotency.h"
#include "server/metrics.h"
#include "server/status_page.h"
#include "server/validate.h"

#include <event2/buffer.h>
#include <event2/http.h>
#include <librdkafka/rdkafka.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_WAIT_MS 30000
#define DEFAULT_MAX_PARKED 10000

/* A request waiting for the fold to pass (partition, offset). */
typedef struct parked {
    struct parked *prev, *next;
    waiter wait;    /* in routes.waits, by partition and offset */
    api *owner;
    struct evhttp_request *req;
    struct event *timer;
    int32_t partition;
    int64_t offset;
    int is_write;   /* a write with ?wait=applied, else GET /inventory?after= */
    json_t *ack;    /* write: the 202 body, extended with the outcome */
    char user_id[CODEC_ID_MAX + 1];
    char event_id[CODEC_ID_MAX + 1];
    char *item_types; /* inventory filters, owned */
    char *category;
} parked;


struct api {
    api_config config;
    parked *parked_head;
    size_t parked_count;
    waiter_queue *waits;   /* the parked requests, by partition and offset */
    size_t wait_reserved;  /* ?wait=applied writes in flight: each will park */
    uint64_t parked_refused, writes_timed_out;
    status_board *board;   /* the status page's store reads; NULL without a fold */
    uint64_t writes_acked, writes_failed, requests_invalid;
    idempotency *idempotency_keys; /* Idempotency-Key -> its first request */
    store *scratch; /* point-in-time reads fold a player here, and roll back (":memory:") */
};

#define IDEMPOTENCY_KEYS 32768 /* players' keys remembered (~5.5 MB when all are in use) */

/* ---------------------------------------------------------------- path matching */

#define MAX_SEGMENTS 8

typedef struct {
    char *segment[MAX_SEGMENTS];
    int count;
    char buf[1024];
} path_parts;

/* Splits "/v1/users/alice/purchases" into segments. Returns -1 for an overlong path. */
static int split_path(const char *path, path_parts *parts) {
    parts->count = 0;
    if (!path || strlen(path) >= sizeof parts->buf) return -1;
    strcpy(parts->buf, path);
    char *save = NULL;
    for (char *seg = strtok_r(parts->buf, "/", &save); seg; seg = strtok_r(NULL, "/", &save)) {
        if (parts->count == MAX_SEGMENTS) return -1;
        parts->segment[parts->count++] = seg;
    }
    return 0;
}

/* Matches parts against a pattern such as "v1/users/ * /purchases" written without
 * spaces; '*' takes one segment, whose value goes to captures in order. */
static int match(const path_parts *parts, const char *pattern, const char **captures) {
    int i = 0, n = 0;
    /* Walked in place: every request tries the patterns in turn. */
    for (const char *p = pattern; *p; i++) {
        size_t len = strcspn(p, "/");
        if (i >= parts->count) return 0;
        if (len == 1 && p[0] == '*')
            captures[n++] = parts->segment[i];
        else if (strncmp(parts->segment[i], p, len) != 0 || parts->segment[i][len] != '\0')
            return 0;
        p += len;
        if (*p == '/') p++;
    }
    return i == parts->count;
}

/* ---------------------------------------------------------------- helpers */

static void reply_validation(struct evhttp_request *req, const validate_error *err) {
    http_reply_error(req, err->status, err->code, err->message);
}

/* A write that validation refused: counted, answered. */
static void reply_invalid_write(api *r, struct evhttp_request *req, const validate_error *err) {
    r->requests_invalid++;
    reply_validation(req, err);
}

static const char *header_or_empty(struct evhttp_request *req, const char *name) {
    const char *v = http_header(req, name);
    return v ? v : "";
}

/* Builds the event fields every write shares: id, type, user, time, metadata. */
static int start_event(struct evhttp_request *req, event_type type, const char *user_id,
                       event *ev, validate_error *err) {
    memset(ev, 0, sizeof *ev);
    ev->version = CODEC_EVENT_VERSION;
    ev->type = type;
    if (validate_identifier("user_id", user_id, err)) return -1;
    snprintf(ev->user_id, sizeof ev->user_id, "%s", user_id);
    const char *key = http_header(req, "Idempotency-Key");
    if (key) {
        if (!codec_identifier_ok(key))
            return validate_fail(err, 400, "invalid_idempotency_key",
                                 "Idempotency-Key must match ^[A-Za-z0-9_.-]{1,64}$");
        snprintf(ev->event_id, sizeof ev->event_id, "%s", key);
    } else if (codec_uuid4(ev->event_id, sizeof ev->event_id)) {
        return validate_fail(err, 500, "internal", "no randomness for an event id");
    }
    const char *if_match = http_header(req, "If-Match");
    if (if_match) {
        int64_t version = 0;
        int any;
        if (validate_if_match(if_match, &version, &any, err)) return -1;
        ev->has_expected_version = !any; /* "*" is checked in refuse_write */
        ev->expected_version = version;
    }
    clock_iso8601_now(ev->ts, sizeof ev->ts);
    char *peer = NULL;
    ev_uint16_t port = 0;
    struct evhttp_connection *evcon = evhttp_request_get_connection(req);
    if (evcon) evhttp_connection_get_peer(evcon, &peer, &port);
    codec_copy_utf8(ev->metadata.remote_addr, sizeof ev->metadata.remote_addr, peer ? peer : "");
    codec_copy_utf8(ev->metadata.host, sizeof ev->metadata.host, header_or_empty(req, "Host"));
    codec_copy_utf8(ev->metadata.user_agent, sizeof ev->metadata.user_agent,
                    header_or_empty(req, "User-Agent"));
    codec_copy_utf8(ev->metadata.accept_language, sizeof ev->metadata.accept_language,
                    header_or_empty(req, "Accept-Language"));
    return 0;
}

/* Checks Content-Type and size, returning the body, or NULL after answering. */
static const char *json_body(struct evhttp_request *req, size_t *len) {
    validate_error err;
    const char *body = http_body(req, len);
    if (*len > VALIDATE_BODY_MAX) {
        http_reply_error(req, 413, "body_too_large", "the body exceeds 65536 bytes");
        return NULL;
    }
    if (validate_content_type(http_header(req, "Content-Type"), &err)) {
        reply_validation(req, &err);
        return NULL;
    }
    return body;
}

/* Parses ?timeout_ms= (default: the configured wait; clamped to 0..30000).
 * Returns the value, or -1 after answering 400 for a malformed one. */
static int wait_ms_param(api *r, struct evhttp_request *req) {
    char *value = http_query_param(req, "timeout_ms");
    int ms = r->config.default_wait_ms;
    if (value) {
        char *end;
        long v = strtol(value, &end, 10);
        int ok = end != value && *end == '\0' && v >= 0;
        free(value);
        if (!ok) {
            http_reply_error(req, 400, "invalid_timeout", "timeout_ms must be a whole number of ms");
            return -1;
        }
        ms = v > MAX_WAIT_MS ? MAX_WAIT_MS : (int)v;
    }
    return ms;
}

/* 1 when the fold has committed past offset on partition. */
static int fold_passed(api *r, int32_t partition, int64_t offset) {
    return r->config.fold && fold_engine_next_offset(r->config.fold, partition) > offset;
}

/* ---------------------------------------------------------------- inventory */

static int32_t player_partition(api *r, const char *user_id);
static int route_to_owner(api *r, struct evhttp_request *req, int32_t p);

/* 1 when item_type is in the comma-separated list. */
static int in_list(const char *list, const char *item_type) {
    size_t n = strlen(item_type);
    for (const char *p = list; *p;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (len == n && strncmp(p, item_type, n) == 0) return 1;
        if (!comma) break;
        p = comma + 1;
    }
    return 0;
}

/* Appends a string literal (its length known at compile time). */
#define add_literal(out, text) evbuffer_add((out), (text), sizeof(text) - 1)

/* Writes the GET /inventory shape of a player's row and lines, filtered by item_types
 * and category (NULL: all), to out as compact JSON; as_of names partition's next_offset
 * (< 0: none). This is the one definition of the shape: GET /inventory sends it as
 * written, without building a jansson tree (the hot read path), and player_body parses
 * it for answers that embed it. Returns 0, or -1 when out of memory. */
static int player_text(api *r, struct evbuffer *out, const char *user_id,
                       const store_player *player, const store_line *lines, size_t line_count,
                       const char *item_types, const char *category, int32_t partition,
                       int64_t next_offset) {
    /* One append per statement: the operands of | are not evaluated in order. */
    int rc = add_literal(out, "{\"user_id\":");
    rc |= http_json_string(out, user_id);
    rc |= add_literal(out, ",\"guild_id\":");
    if (player->guild_id[0])
        rc |= http_json_string(out, player->guild_id);
    else
        rc |= add_literal(out, "null");
    rc |= add_literal(out, ",\"items\":[");
    int first = 1;
    for (size_t i = 0; i < line_count; i++) {
        const store_line *line = &lines[i];
        const catalog_item *entry = catalog_find(r->config.cat, line->item_type);
        const char *line_category = entry ? entry->category : "unknown";
        if (item_types && !in_list(item_types, line->item_type)) continue;
        if (category && strcmp(category, line_category) != 0) continue;
        if (!first) rc |= add_literal(out, ",");
        first = 0;
        rc |= add_literal(out, "{\"item_type\":");
        rc |= http_json_string(out, line->item_type);
        rc |= add_literal(out, ",\"category\":");
        rc |= http_json_string(out, line_category);
        rc |= add_literal(out, ",\"quantity\":");
        rc |= http_json_integer(out, line->quantity);
        rc |= add_literal(out, "}");
    }
    rc |= add_literal(out, "],\"as_of\":{");
    if (next_offset >= 0) {
        rc |= add_literal(out, "\"");
        rc |= http_json_integer(out, partition);
        rc |= add_literal(out, "\":");
        rc |= http_json_integer(out, next_offset);
    }
    rc |= add_literal(out, "},\"version\":");
    rc |= http_json_integer(out, player->version);
    rc |= add_literal(out, "}");
    return rc ? -1 : 0;
}

/* player_text as a jansson object, for answers that add to it or embed it. NULL when
 * out of memory. */
static json_t *player_body(api *r, const char *user_id, const store_player *player,
                           const store_line *lines, size_t line_count, const char *item_types,
                           const char *category, int32_t partition, int64_t next_offset) {
    struct evbuffer *out = evbuffer_new();
    json_t *body = NULL;
    if (out && player_text(r, out, user_id, player, lines, line_count, item_types, category,
                           partition, next_offset) == 0) {
        size_t len = evbuffer_get_length(out);
        body = json_loadb((const char *)evbuffer_pullup(out, -1), len, 0, NULL);
    }
    if (out) evbuffer_free(out);
    return body;
}

/* Reads user_id's inventory (one read transaction) and writes its GET /inventory body to
 * out, its ETag version to *version. Returns 1 written, 0 no such player, -1 on a read
 * error (logged) or when out of memory. */
static int read_inventory(api *r, const char *user_id, const char *item_types,
                          const char *category, struct evbuffer *out, int64_t *version) {
    store_inventory inv;
    char errstr[512];
    int32_t partition = player_partition(r, user_id);
    store *st = store_set_get(r->config.readers, partition, errstr, sizeof errstr);
    if (!st) {
        if (!errstr[0]) return 0; /* no store for the partition yet: no such player */
        log_error("http", "inventory read: %s", errstr);
        return -1;
    }
    if (store_read_inventory(st, user_id, &inv)) {
        log_error("http", "inventory read: %s", store_errmsg(st));
        return -1;
    }
    int rc = 0;
    if (inv.found) {
        rc = player_text(r, out, user_id, &inv.player, inv.lines, inv.line_count, item_types,
                         category, partition, inv.next_offset)
                 ? -1
                 : 1;
        *version = inv.player.version;
    }
    store_inventory_clear(&inv);
    return rc;
}

/* The GET /inventory body of user_id as a jansson object; writes the ETag version to
 * *version. Returns NULL when the player does not exist (or on a read error, with
 * *failed set). */
static json_t *inventory_body(api *r, const char *user_id, const char *item_types,
                              const char *category, int64_t *version, int *failed) {
    struct evbuffer *out = evbuffer_new();
    json_t *body = NULL;
    int rc = out ? read_inventory(r, user_id, item_types, category, out, version) : -1;
    if (rc > 0) {
        size_t len = evbuffer_get_length(out);
        body = json_loadb((const char *)evbuffer_pullup(out, -1), len, 0, NULL);
        if (!body) rc = -1;
    }
    *failed = rc < 0;
    if (out) evbuffer_free(out);
    return body;
}

static void set_etag(struct evhttp_request *req, int64_t version) {
    char etag[32];
    snprintf(etag, sizeof etag, "\"%lld\"", (long long)version);
    evhttp_add_header(evhttp_request_get_output_headers(req), "ETag", etag);
}

static void reply_inventory(api *r, struct evhttp_request *req, const char *user_id,
                            const char *item_types, const char *category) {
    int64_t version = 0;
    struct evbuffer *out = evbuffer_new();
    int rc = out ? read_inventory(r, user_id, item_types, category, out, &version) : -1;
    if (rc < 0) {
        http_reply_error(req, 500, "internal", "reading the inventory failed");
    } else if (rc == 0) {
        http_reply_error(req, 404, "not_found", "no such player");
    } else {
        set_etag(req, version);
        http_reply_buffer(req, 200, "application/json", out);
        return; /* out is the reply's now */
    }
    if (out) evbuffer_free(out);
}

/* Parses "<partition>:<offset>". Returns 0 or -1. */
static int parse_token(const char *token, int32_t *partition, int64_t *offset) {
    validate_error err;
    return validate_token(token, STORE_MAX_PARTITIONS, partition, offset, &err);
}

/* ---------------------------------------------------------------- parking */

static void unpark(parked *pk) {
    api *r = pk->owner;
    if (pk->prev) pk->prev->next = pk->next;
    else r->parked_head = pk->next;
    if (pk->next) pk->next->prev = pk->prev;
    r->parked_count--;
    waiter_queue_remove(r->waits, &pk->wait);
    if (pk->timer) event_free(pk->timer);
    json_decref(pk->ack);
    free(pk->item_types);
    free(pk->category);
    free(pk);
}

static int join_decision(api *r, const char *user_id, store_event_outcome *outcome);

/* Answers a parked write once its event is folded: 200 applied / 409 rejected. A join
 * is answered once its guild's decision is folded too. Returns 0 answered, 1 still
 * waiting for the decision (nothing answered). */
static int answer_applied_write(api *r, parked *pk) {
    store_event_outcome outcome;
    char errstr[512];
    store *st = store_set_get(r->config.readers, pk->partition, errstr, sizeof errstr);
    int found = st ? store_read_event(st, pk->event_id, pk->user_id, &outcome) : 0;
    if (found > 0 && join_decision(r, pk->user_id, &outcome) == 0 &&
        strcmp(outcome.outcome, "pending") == 0)
        return 1;
    json_t *ack = pk->ack;
    pk->ack = NULL;
    if (found <= 0) {
        /* Folded past it but no record: it was dead-lettered. */
        json_object_set_new(ack, "outcome", json_string("dead_lettered"));
        http_reply_json(pk->req, 500, ack);
        return 0;
    }
    json_object_set_new(ack, "outcome", json_string(outcome.outcome));
    if (strcmp(outcome.outcome, "applied") == 0) {
        int64_t version = 0;
        int failed;
        json_t *inv = inventory_body(r, pk->user_id, NULL, NULL, &version, &failed);
        json_object_set_new(ack, "inventory", inv ? inv : json_null());
        if (inv) set_etag(pk->req, version);
        http_reply_json(pk->req, 200, ack);
    } else {
        json_object_set_new(ack, "reason", json_string(outcome.reason));
        http_reply_json(pk->req, 409, ack);
    }
    return 0;
}

static void on_park_timeout(evutil_socket_t fd, short what, void *arg);

static void answer_parked(api *r, parked *pk) {
    if (pk->is_write) {
        if (answer_applied_write(r, pk)) {
            /* A join whose decision is not folded yet: the decision comes later in the
             * same partition, so wait for the fold to pass where it is now. */
            pk->wait.offset = fold_engine_next_offset(r->config.fold, pk->partition);
            if (waiter_queue_push(r->waits, &pk->wait) == 0) return;
            on_park_timeout(-1, 0, pk); /* out of memory: answered as a timeout */
            return;
        }
    } else {
        reply_inventory(r, pk->req, pk->user_id, pk->item_types, pk->category);
    }
    unpark(pk);
}

static void on_park_timeout(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    parked *pk = arg;
    if (pk->is_write) {
        json_t *ack = pk->ack;
        pk->ack = NULL;
        json_object_set_new(ack, "outcome", json_string("pending"));
        json_object_set_new(ack, "error", json_string("fold_timeout"));
        json_object_set_new(ack, "message",
                            json_string("the event is in the log but was not folded in time"));
        http_reply_json(pk->req, 504, ack);
    } else {
        int64_t version = 0;
        int failed;
        json_t *body = inventory_body(pk->owner, pk->user_id, pk->item_types, pk->category,
                                      &version, &failed);
        json_t *err = json_object();
        json_object_set_new(err, "error", json_string("fold_timeout"));
        json_object_set_new(err, "message",
                            json_string("the fold did not reach the token in time"));
        json_object_set_new(err, "as_of", body ? json_incref(json_object_get(body, "as_of"))
                                               : json_object());
        json_decref(body);
        http_reply_json(pk->req, 504, err);
    }
    unpark(pk);
}

/* 1 when another request may wait for the fold (the cap counts parked requests and
 * the ?wait=applied writes still waiting for Kafka, each of which will park). Else
 * answers 503 with Retry-After and returns 0. */
static int parking_allowed(api *r, struct evhttp_request *req) {
    if (r->parked_count + r->wait_reserved < (size_t)r->config.max_parked) return 1;
    r->parked_refused++;
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
    http_reply_error(req, 503, "too_many_waiting",
                     "too many requests are waiting for the fold; retry shortly");
    return 0;
}

/* Parks req until the fold passes (partition, offset) or wait_ms runs out. */
static int park(api *r, parked *pk, int wait_ms) {
    pk->owner = r;
    pk->wait.partition = pk->partition;
    pk->wait.offset = pk->offset;
    pk->timer = evtimer_new(r->config.base, on_park_timeout, pk);
    struct timeval tv = {wait_ms / 1000, (wait_ms % 1000) * 1000};
    if (!pk->timer || evtimer_add(pk->timer, &tv)) return -1;
    if (waiter_queue_push(r->waits, &pk->wait)) return -1;
    pk->next = r->parked_head;
    if (pk->next) pk->next->prev = pk;
    r->parked_head = pk;
    r->parked_count++;
    return 0;
}

/* Only the waits a commit ends are looked at: per partition, the heap's lowest offsets
 * below the fold's next offset. */
void api_on_fold_commit(api *r) {
    if (!r->config.fold) return;
    metrics_fold_committed(r->config.metrics, r->config.fold);
    int32_t span = waiter_queue_partition_span(r->waits);
    for (int32_t p = 0; p < span; p++) {
        int64_t next = fold_engine_next_offset(r->config.fold, p);
        waiter *w;
        while ((w = waiter_queue_pop_passed(r->waits, p, next)) != NULL) {
            parked *pk = (parked *)((char *)w - offsetof(parked, wait));
            answer_parked(r, pk);
        }
    }
}

/* ---------------------------------------------------------------- writes */

typedef struct {
    api *owner;
    struct evhttp_request *req;
    event_type type;
    char event_id[CODEC_ID_MAX + 1];
    char user_id[CODEC_ID_MAX + 1];
    const char *seed_reply; /* plain-text reply of a seed endpoint, else NULL */
    int wait_applied;
    int wait_ms;
    struct event *timer; /* --request-timeout-ms: answer 503 if Kafka has not answered */
    int timed_out;       /* the client got its 503; the delivery report only frees */
    struct timespec produced_at; /* for the produce-acknowledgement histogram */
} pending_write;

static void free_pending_write(pending_write *pw) {
    if (pw->timer) event_free(pw->timer);
    free(pw);
}

/* Kafka has not acknowledged within the request timeout (librdkafka may hold an
 * in-flight batch longer while a broker is away): the client gets its 503 now. The event
 * may still land in the log later, which a 503 allows; a retry with the same
 * Idempotency-Key is then a duplicate, not a second event. */
static void on_write_timeout(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    pending_write *pw = arg;
    api *r = pw->owner;
    pw->timed_out = 1;
    r->writes_timed_out++;
    r->writes_failed++;
    if (pw->wait_applied) r->wait_reserved--;
    evhttp_add_header(evhttp_request_get_output_headers(pw->req), "Retry-After", "1");
    http_reply_error(pw->req, 503, "kafka_timeout",
                     "Kafka did not acknowledge the event within the request timeout; "
                     "retry with the same Idempotency-Key");
    pw->req = NULL;
}

static void on_delivered(void *opaque, const char *err, int32_t partition, int64_t offset) {
    pending_write *pw = opaque;
    api *r = pw->owner;
    if (pw->timed_out) { /* answered already */
        free_pending_write(pw);
        return;
    }
    if (pw->timer) evtimer_del(pw->timer);
    if (pw->wait_applied) r->wait_reserved--;
    if (err) r->writes_failed++;
    else r->writes_acked++;
    if (!err)
        metrics_write_acked(r->config.metrics, pw->type, partition, offset, &pw->produced_at,
                            r->config.fold);
    if (err) {
        evhttp_add_header(evhttp_request_get_output_headers(pw->req), "Retry-After", "1");
        char message[256];
        snprintf(message, sizeof message, "Kafka did not take the event: %s", err);
        http_reply_error(pw->req, 503, "kafka_unavailable", message);
        free_pending_write(pw);
        return;
    }
    if (pw->seed_reply) {
        http_reply_text(pw->req, 200, "text/html; charset=utf-8", pw->seed_reply,
                        strlen(pw->seed_reply));
        free_pending_write(pw);
        return;
    }
    char token[48];
    snprintf(token, sizeof token, "%d:%lld", (int)partition, (long long)offset);
    json_t *ack = json_object();
    json_object_set_new(ack, "event_id", json_string(pw->event_id));
    json_object_set_new(ack, "event_type", json_string(codec_type_name(pw->type)));
    json_object_set_new(ack, "partition", json_integer(partition));
    json_object_set_new(ack, "offset", json_integer(offset));
    json_object_set_new(ack, "token", json_string(token));
    if (!pw->wait_applied) {
        http_reply_json(pw->req, 202, ack);
        free_pending_write(pw);
        return;
    }
    parked *pk = calloc(1, sizeof *pk);
    if (!pk) {
        http_reply_json(pw->req, 202, ack);
        free_pending_write(pw);
        return;
    }
    pk->req = pw->req;
    pk->partition = partition;
    pk->offset = offset;
    pk->is_write = 1;
    pk->ack = ack;
    snprintf(pk->user_id, sizeof pk->user_id, "%s", pw->user_id);
    snprintf(pk->event_id, sizeof pk->event_id, "%s", pw->event_id);
    int wait_ms = pw->wait_ms;
    free_pending_write(pw);
    if (fold_passed(r, partition, offset) && answer_applied_write(r, pk) == 0) {
        free(pk); /* already folded: answered now */
        return;
    }
    if (park(r, pk, wait_ms)) {
        http_reply_json(pk->req, 202, json_incref(pk->ack));
        if (pk->timer) event_free(pk->timer);
        json_decref(pk->ack);
        free(pk);
    }
}

/* Encodes ev and hands it to the producer; the answer comes from on_delivered. */
static int require_fold_for(api *r, struct evhttp_request *req, const char *user_id);

/* The checks of a valid write against what this server knows, just before Kafka:
 * If-Match: * needs the player to exist here (412 precondition_failed while no applied
 * event of theirs is folded: a player never stops existing, so a yes is never wrong, and
 * a no may only be the fold's lag), and an Idempotency-Key already used for another
 * request is refused (422 idempotency_key_reused). Returns 1 after answering, else 0. */
static int refuse_write(api *r, struct evhttp_request *req, const event *ev) {
    if (http_header(req, "If-Match") && !ev->has_expected_version) {
        int64_t version;
        int failed;
        if (require_fold_for(r, req, ev->user_id)) return 1;
        json_t *inv = inventory_body(r, ev->user_id, NULL, NULL, &version, &failed);
        json_decref(inv);
        if (failed) {
            http_reply_error(req, 500, "internal", "reading the player failed");
            return 1;
        }
        if (!inv) {
            r->requests_invalid++;
            http_reply_error(req, 412, "precondition_failed",
                             "If-Match: * needs an existing player, and this one has no applied event");
            return 1;
        }
    }
    if (http_header(req, "Idempotency-Key")) {
        int reused = idempotency_check(r->idempotency_keys, ev->event_id, ev);
        if (reused) {
            r->requests_invalid += reused == 1;
            http_reply_error(req, reused == 1 ? 422 : 500,
                             reused == 1 ? "idempotency_key_reused" : "internal",
                             reused == 1 ? "this Idempotency-Key was used for another request"
                                         : "cannot fingerprint the request");
            return 1;
        }
    }
    return 0;
}

static void produce_event(api *r, struct evhttp_request *req, const event *ev,
                          const char *seed_reply) {
    char errstr[256];
    size_t len;
    int wait_ms = wait_ms_param(r, req);
    if (wait_ms < 0 || refuse_write(r, req, ev)) return;
    char *value = codec_encode(ev, &len, errstr, sizeof errstr);
    if (!value) {
        http_reply_error(req, 500, "internal", errstr);
        return;
    }
    pending_write *pw = calloc(1, sizeof *pw);
    if (!pw) {
        free(value);
        http_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    pw->owner = r;
    pw->req = req;
    pw->type = ev->type;
    pw->seed_reply = seed_reply;
    snprintf(pw->event_id, sizeof pw->event_id, "%s", ev->event_id);
    snprintf(pw->user_id, sizeof pw->user_id, "%s", ev->user_id);
    char *wait = http_query_param(req, "wait");
    pw->wait_applied = wait && strcmp(wait, "applied") == 0 && r->config.fold;
    free(wait);
    pw->wait_ms = wait_ms;
    if (pw->wait_applied && !parking_allowed(r, req)) {
        free(pw);
        free(value);
        return;
    }
    pw->timer = evtimer_new(r->config.base, on_write_timeout, pw);
    int timeout_ms = r->config.write_timeout_ms;
    struct timeval tv = {timeout_ms / 1000, (timeout_ms % 1000) * 1000};
    if (!pw->timer || evtimer_add(pw->timer, &tv)) {
        free_pending_write(pw);
        free(value);
        http_reply_error(req, 500, "internal", "cannot time the write");
        return;
    }

    int queue_full;
    clock_gettime(CLOCK_MONOTONIC, &pw->produced_at);
    if (producer_send(r->config.prod, ev->user_id, value, len, on_delivered, pw, &queue_full,
                      errstr, sizeof errstr)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        http_reply_error(req, 503, queue_full ? "overloaded" : "kafka_unavailable", errstr);
        r->writes_failed++;
        free_pending_write(pw);
    } else if (pw->wait_applied) {
        r->wait_reserved++;
    }
    free(value);
}

typedef int (*body_parser)(api *r, const char *body, size_t len, event *ev,
                           validate_error *err);

static int parse_purchase(api *r, const char *body, size_t len, event *ev,
                          validate_error *err) {
    return validate_purchase(body, len, r->config.cat, ev, err);
}

static int parse_consumption(api *r, const char *body, size_t len, event *ev,
                             validate_error *err) {
    return validate_consumption(body, len, r->config.cat, ev, err);
}

static int parse_guild(api *r, const char *body, size_t len, event *ev, validate_error *err) {
    (void)r;
    return validate_guild_join(body, len, ev, err);
}

/* A JSON write: type, user from the path, fields from the body (parser may be NULL). */
static void handle_write(api *r, struct evhttp_request *req, event_type type,
                         const char *user_id, body_parser parser) {
    event ev;
    validate_error err;
    if (r->config.group && codec_identifier_ok(user_id)) {
        /* A write that waits for the fold waits where the player is folded: the owner
         * produces it and answers. Other writes are produced by whichever node got them. */
        char *wait = http_query_param(req, "wait");
        int wait_applied = wait && strcmp(wait, "applied") == 0;
        free(wait);
        if (wait_applied && route_to_owner(r, req, player_partition(r, user_id))) return;
    }
    if (start_event(req, type, user_id, &ev, &err)) {
        reply_invalid_write(r, req, &err);
        return;
    }
    if (parser) {
        size_t len;
        const char *body = json_body(req, &len);
        if (!body) return;
        if (parser(r, body, len, &ev, &err)) {
            reply_invalid_write(r, req, &err);
            return;
        }
    }
    produce_event(r, req, &ev, NULL);
}

/* The seed endpoints: GET, ?user_id= (default anonymous), plain-text replies. */
static void handle_seed(api *r, struct evhttp_request *req, event_type type,
                        const char *reply) {
    event ev;
    validate_error err;
    char *user_id = http_query_param(req, "user_id");
    int rc = start_event(req, type, user_id ? user_id : "anonymous", &ev, &err);
    free(user_id);
    if (rc == 0 && type == EVENT_PURCHASE_SWORD) {
        snprintf(ev.items[0].item_type, sizeof ev.items[0].item_type, "sword");
        ev.items[0].quantity = 1;
        ev.item_count = 1;
    }
    if (rc == 0 && type == EVENT_JOIN_GUILD) {
        char *guild = http_query_param(req, "guild_id");
        if (!guild) rc = validate_fail(&err, 400, "missing_guild_id", "?guild_id= is required");
        else rc = validate_identifier("guild_id", guild, &err);
        if (rc == 0) snprintf(ev.guild_id, sizeof ev.guild_id, "%s", guild);
        free(guild);
    }
    if (rc) {
        reply_validation(req, &err);
        return;
    }
    produce_event(r, req, &ev, reply);
}

/* ---------------------------------------------------------------- reads */

/* Kafka's murmur2 partition of a player, as the producer computes it; -1 while the
 * topic's partition count is unknown. */
static int32_t player_partition(api *r, const char *user_id) {
    int partitions = producer_partition_count(r->config.prod);
    if (partitions <= 0 || !user_id) return -1;
    return rd_kafka_msg_partitioner_murmur2(NULL, user_id, strlen(user_id), partitions, NULL,
                                            NULL);
}

/* With --no-fold, reads answer 421 (with the player's partition when there is one). */
static int require_fold_for(api *r, struct evhttp_request *req, const char *user_id) {
    if (r->config.readers) return 0;
    json_t *body = json_object();
    json_object_set_new(body, "error", json_string("no_state_here"));
    json_object_set_new(body, "message",
                        json_string("this lootlog runs with --no-fold and answers writes only"));
    int32_t p = user_id && codec_identifier_ok(user_id) ? player_partition(r, user_id) : -1;
    if (p >= 0) json_object_set_new(body, "partition", json_integer(p));
    http_reply_json(req, 421, body);
    return -1;
}

static int require_fold(api *r, struct evhttp_request *req) {
    return require_fold_for(r, req, NULL);
}

/* serve --group: a request about partition p is served here when this node owns p;
 * else it goes to the owner the group names (forwarded, or 421 with the owner's address
 * with --no-forward). A request another node forwarded is never forwarded again: while
 * a partition moves, the two nodes' views can disagree for a moment, and the answer is
 * then 503 with Retry-After rather than a loop. Returns 0 (serve here) or -1 (answered). */
static int route_to_owner(api *r, struct evhttp_request *req, int32_t p) {
    char owner[GROUP_VIEW_ADDRESS_SIZE], message[160];
    if (p < 0) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        http_reply_error(req, 503, "not_ready", "the topic's partition count is not known yet");
        return -1;
    }
    if (r->config.fold && fold_engine_owns(r->config.fold, p)) return 0;
    int known = group_view_owner(r->config.group, p, owner, sizeof owner) &&
                strcmp(owner, r->config.self) != 0;
    if (!known || forwarder_is_forwarded(req)) {
        group_view_refresh(r->config.group);
        json_t *body = json_object();
        snprintf(message, sizeof message,
                 "partition %d is moving between nodes; ask again in a moment", (int)p);
        json_object_set_new(body, "error", json_string("partition_moving"));
        json_object_set_new(body, "message", json_string(message));
        json_object_set_new(body, "partition", json_integer(p));
        evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
        http_reply_json(req, 503, body);
        return -1;
    }
    if (!r->config.forward) {
        char url[GROUP_VIEW_ADDRESS_SIZE + 8];
        snprintf(url, sizeof url, "http://%s", owner);
        snprintf(message, sizeof message, "partition %d is served by %.100s", (int)p, owner);
        json_t *body = json_object();
        json_object_set_new(body, "error", json_string("wrong_node"));
        json_object_set_new(body, "message", json_string(message));
        json_object_set_new(body, "partition", json_integer(p));
        json_object_set_new(body, "owner", json_string(url));
        http_reply_json(req, 421, body);
        return -1;
    }
    forwarder_relay(r->config.forward, req, owner);
    return -1;
}

/* The player's partition is read here: answers 421 on a shard (--partitions A-B) with
 * the owning partition for a player whose events land elsewhere, so a router can send
 * the request to the right shard (the partition is Kafka's murmur2 of the key, as the
 * producer computes it); 503 not_ready while serve starts, before it knows the topic's
 * partition count or while the partition's store is still being made (a 404 would say
 * an existing player does not exist, a failed read a 500). */
/* Whether partition p's store can answer reads: no fold during a swap (the previous
 * stores answer until the new fold takes over), the fold has opened the store, or the
 * store is already at this schema (a restart answers from it at once; the fold catches
 * it up). A store still being created or migrated cannot, nor one not there yet. */
static int partition_readable(api *r, int32_t p) {
    char ignored[256];
    return !r->config.fold || fold_engine_partition_generation(r->config.fold, p) ||
           store_set_get(r->config.readers, p, ignored, sizeof ignored);
}

/* 503 not_ready with Retry-After: serve is starting, the answer is not known yet. */
static void reply_not_ready(struct evhttp_request *req, const char *message) {
    evhttp_add_header(evhttp_request_get_output_headers(req), "Retry-After", "1");
    http_reply_error(req, 503, "not_ready", message);
}

static int require_shard(api *r, struct evhttp_request *req, const char *user_id) {
    if (r->config.group) return route_to_owner(r, req, player_partition(r, user_id));
    int32_t p = player_partition(r, user_id);
    char message[128];
    int elsewhere = p >= 0 && r->config.partition_first >= 0 &&
                    (p < r->config.partition_first || p > r->config.partition_last);
    if (!elsewhere) {
        if (p >= 0 && partition_readable(r, p)) return 0;
        if (p < 0)
            snprintf(message, sizeof message, "the topic's partition count is not known yet");
        else
            snprintf(message, sizeof message, "partition %d's store is not open yet", (int)p);
        reply_not_ready(req, message);
        return -1;
    }
    json_t *body = json_object();
    snprintf(message, sizeof message, "player is on partition %d; this shard holds %d-%d",
             (int)p, r->config.partition_first, r->config.partition_last);
    json_object_set_new(body, "error", json_string("wrong_shard"));
    json_object_set_new(body, "message", json_string(message));
    json_object_set_new(body, "partition", json_integer(p));
    http_reply_json(req, 421, body);
    return -1;
}

/* The checks every read about one player shares: this server folds, the id is valid,
 * and the player's partition is folded here. Returns 0, or -1 after answering. */
static int require_player_here(api *r, struct evhttp_request *req, const char *user_id) {
    validate_error err;
    if (require_fold_for(r, req, user_id)) return -1;
    if (validate_identifier("user_id", user_id, &err)) {
        reply_validation(req, &err);
        return -1;
    }
    return require_shard(r, req, user_id);
}

/* The fields every listing of a recorded event starts with. */
static json_t *history_entry(const store_history_row *row) {
    json_t *entry = json_object();
    json_object_set_new(entry, "event_id", json_string(row->event_id));
    json_object_set_new(entry, "event_type", json_string(row->event_type));
    json_object_set_new(entry, "outcome", json_string(row->outcome));
    json_object_set_new(entry, "reason", row->reason ? json_string(row->reason) : json_null());
    json_object_set_new(entry, "ts", json_string(row->ts));
    return entry;
}

/* ---------------------------------------------------------------- point-in-time reads
 * A player's state at a past point, rebuilt from the player's own history by the fold's
 * rules (fold_player_at), in the player's partition store: no replay of the log. */

/* Reads the point of ?<time_name>=<ISO 8601> or ?<token_name>=<p>:<o> (the player's
 * partition) into *point; *given says whether one was. Returns 0, or -1 after 400. */
static int point_param(api *r, struct evhttp_request *req, const char *user_id,
                       const char *time_name, const char *token_name, fold_point *point,
                       json_t **asked, int *given) {
    char *at = http_query_param(req, time_name);
    char *token = token_name ? http_query_param(req, token_name) : NULL;
    int rc = 0;
    point->until_offset = point->until_ms = -1;
    *given = at || token;
    *asked = NULL;
    if (at && token) {
        http_reply_error(req, 400, "invalid_point", "give one point: a time or a token");
        rc = -1;
    } else if (at) {
        int64_t ms;
        if (replay_parse_time(at, &ms)) {
            char message[160];
            snprintf(message, sizeof message,
                     "%s must be an ISO 8601 time such as 2026-11-29T08:14:00.123Z", time_name);
            http_reply_error(req, 400, "invalid_time", message);
            rc = -1;
        } else {
            point->until_ms = ms;
            *asked = json_string(at);
        }
    } else if (token) {
        int32_t partition;
        int64_t offset;
        if (parse_token(token, &partition, &offset) || partition != player_partition(r, user_id)) {
            http_reply_error(req, 400, "invalid_token",
                             "at_token must be a token \"<p>:<o>\" of the player's partition");
            rc = -1;
        } else {
            point->until_offset = offset;
            *asked = json_string(token);
        }
    }
    free(at);
    free(token);
    return rc;
}

/* The player's state at point into *state. Returns 0, or -1 after answering 500. */
static int player_at(api *r, struct evhttp_request *req, const char *user_id,
                     const fold_point *point, fold_player_state *state) {
    char errstr[512];
    memset(state, 0, sizeof *state);
    state->last_offset = -1;
    store *st = store_set_get(r->config.readers, player_partition(r, user_id), errstr,
                              sizeof errstr);
    if (!st && !errstr[0]) return 0; /* nothing folded in that partition: no player */
    if (st && !r->scratch)
        r->scratch = store_open(":memory:", 0, STORE_WRITER, errstr, sizeof errstr);
    if (!st || !r->scratch ||
        fold_player_at(st, r->scratch, user_id, point, state, errstr, sizeof errstr)) {
        log_error("http", "point-in-time read of %s: %s", user_id, errstr);
        http_reply_error(req, 500, "internal", "rebuilding the player's state failed");
        return -1;
    }
    return 0;
}

static void handle_inventory_at(api *r, struct evhttp_request *req, const char *user_id,
                                const fold_point *point, json_t *asked, const char *item_types,
                                const char *category) {
    fold_player_state state;
    if (player_at(r, req, user_id, point, &state)) {
        json_decref(asked);
        return;
    }
    if (!state.exists) {
        json_decref(asked);
        fold_player_state_clear(&state);
        http_reply_error(req, 404, "not_found", "the player did not exist at that point");
        return;
    }
    int32_t partition = player_partition(r, user_id);
    json_t *body = player_body(r, user_id, &state.player, state.lines, state.line_count,
                               item_types, category, partition, state.last_offset + 1);
    json_t *last = json_object();
    json_object_set_new(last, "event_id", json_string(state.last_event_id));
    json_object_set_new(last, "ts", json_string(state.last_ts));
    json_object_set_new(last, "partition", json_integer(partition));
    json_object_set_new(last, "offset", json_integer(state.last_offset));
    json_object_set_new(body, "at", asked);
    json_object_set_new(body, "as_of_event", last);
    set_etag(req, state.player.version);
    fold_player_state_clear(&state);
    http_reply_json(req, 200, body);
}

/* What GET /v1/users/<u>/changes gathers while walking the player's history. */
typedef struct {
    int64_t from_ms, until_ms;
    json_t *by_item;     /* item_type -> [change, ...] */
    json_t *guild_events;
} change_walk;

static int collect_change(void *arg, const store_history_row *row) {
    change_walk *walk = arg;
    if (row->ts_ms <= walk->from_ms || (walk->until_ms >= 0 && row->ts_ms > walk->until_ms))
        return 0;
    int applied = strcmp(row->outcome, "applied") == 0;
    int guild_event = row->type == EVENT_JOIN_GUILD || row->type == EVENT_LEAVE_GUILD ||
                      row->type == EVENT_GUILD_JOIN_DECIDED;
    if (!row->items && !guild_event) return 0;
    json_t *entry = history_entry(row);
    json_object_set_new(entry, "offset", json_integer(row->offset));
    if (guild_event) {
        json_object_set_new(entry, "guild_id", row->guild_id ? json_string(row->guild_id) : json_null());
        json_array_append_new(walk->guild_events, entry);
        return 0;
    }
    /* One entry per item type the event names, with what it changed (0 when rejected). */
    for (const char *p = row->items; p && *p;) {
        const char *colon = strchr(p, ':');
        if (!colon) break;
        char item_type[CODEC_ID_MAX + 1];
        size_t len = (size_t)(colon - p) < CODEC_ID_MAX ? (size_t)(colon - p) : CODEC_ID_MAX;
        memcpy(item_type, p, len);
        item_type[len] = '\0';
        long long quantity = strtoll(colon + 1, NULL, 10);
        int sign = row->type == EVENT_CONSUME_ITEM ? -1 : 1;
        json_t *line = json_deep_copy(entry);
        json_object_set_new(line, "change", json_integer(applied ? sign * quantity : 0));
        json_t *list = json_object_get(walk->by_item, item_type);
        if (!list) {
            list = json_array();
            json_object_set_new(walk->by_item, item_type, list);
        }
        json_array_append_new(list, line);
        const char *comma = strchr(colon, ',');
        p = comma ? comma + 1 : NULL;
    }
    json_decref(entry);
    return 0;
}

static int64_t held_of(const fold_player_state *state, const char *item_type) {
    for (size_t i = 0; i < state->line_count; i++)
        if (strcmp(state->lines[i].item_type, item_type) == 0) return state->lines[i].quantity;
    return 0;
}

/* GET /v1/users/<u>/changes?from=<time>[&until=<time>]: per item type, what the player
 * held at each point and the events between them that named it; the same for the guild. */
static void handle_changes(api *r, struct evhttp_request *req, const char *user_id) {
    if (require_player_here(r, req, user_id)) return;
    fold_point from, until;
    json_t *from_text = NULL, *until_text = NULL;
    int from_given, until_given;
    if (point_param(r, req, user_id, "from", NULL, &from, &from_text, &from_given)) return;
    if (!from_given) {
        http_reply_error(req, 400, "invalid_time", "from= is required (an ISO 8601 time)");
        return;
    }
    if (point_param(r, req, user_id, "until", NULL, &until, &until_text, &until_given)) {
        json_decref(from_text);
        return;
    }
    if (until_given && until.until_ms < from.until_ms) {
        json_decref(from_text);
        json_decref(until_text);
        http_reply_error(req, 400, "invalid_time", "until must not be before from");
        return;
    }
    fold_player_state before, after;
    if (player_at(r, req, user_id, &from, &before)) goto free_text;
    if (player_at(r, req, user_id, &until, &after)) {
        fold_player_state_clear(&before);
        goto free_text;
    }
    if (after.events_counted == 0) {
        http_reply_error(req, 404, "not_found", "no such player (by the end of that span)");
        goto free_states;
    }
    change_walk walk = {.from_ms = from.until_ms, .until_ms = until.until_ms,
                        .by_item = json_object(), .guild_events = json_array()};
    char errstr[512];
    store *st = store_set_get(r->config.readers, player_partition(r, user_id), errstr, sizeof errstr);
    if (!st || store_walk_player_history(st, user_id, -1, 1, collect_change, &walk)) {
        json_decref(walk.by_item);
        json_decref(walk.guild_events);
        http_reply_error(req, 500, "internal", "reading the player's history failed");
        goto free_states;
    }
    /* Item types whose quantity moved or that an event named, in item_type order. */
    json_t *names = json_object(); /* a set */
    for (size_t i = 0; i < before.line_count; i++) json_object_set(names, before.lines[i].item_type, json_true());
    for (size_t i = 0; i < after.line_count; i++) json_object_set(names, after.lines[i].item_type, json_true());
    const char *name;
    json_t *unused;
    json_object_foreach(walk.by_item, name, unused) json_object_set(names, name, json_true());
    size_t count = json_object_size(names), n = 0;
    const char **sorted = calloc(count ? count : 1, sizeof *sorted);
    json_object_foreach(names, name, unused) if (sorted) sorted[n++] = name;
    for (size_t i = 1; sorted && i < n; i++)
        for (size_t j = i; j > 0 && strcmp(sorted[j - 1], sorted[j]) > 0; j--) {
            const char *t = sorted[j];
            sorted[j] = sorted[j - 1];
            sorted[j - 1] = t;
        }
    json_t *items = json_array();
    for (size_t i = 0; sorted && i < n; i++) {
        int64_t was = held_of(&before, sorted[i]), is = held_of(&after, sorted[i]);
        json_t *events = json_object_get(walk.by_item, sorted[i]);
        if (was == is && !events) continue;
        const catalog_item *entry = catalog_find(r->config.cat, sorted[i]);
        json_t *line = json_object();
        json_object_set_new(line, "item_type", json_string(sorted[i]));
        json_object_set_new(line, "category", json_string(entry ? entry->category : "unknown"));
        json_object_set_new(line, "before", json_integer(was));
        json_object_set_new(line, "after", json_integer(is));
        json_object_set_new(line, "events", events ? json_incref(events) : json_array());
        json_array_append_new(items, line);
    }
    free(sorted);
    json_decref(names);
    json_t *guild = json_object();
    json_object_set_new(guild, "before", before.player.guild_id[0] ? json_string(before.player.guild_id) : json_null());
    json_object_set_new(guild, "after", after.player.guild_id[0] ? json_string(after.player.guild_id) : json_null());
    json_object_set_new(guild, "events", walk.guild_events);
    json_t *body = json_object();
    json_object_set_new(body, "user_id", json_string(user_id));
    json_object_set_new(body, "from", from_text);
    json_object_set_new(body, "until", until_text ? until_text : json_null());
    from_text = until_text = NULL;
    json_object_set_new(body, "version_before", json_integer(before.player.version));
    json_object_set_new(body, "version_after", json_integer(after.player.version));
    json_object_set_new(body, "items", items);
    json_object_set_new(body, "guild", guild);
    json_decref(walk.by_item);
    http_reply_json(req, 200, body);
free_states:
    fold_player_state_clear(&before);
    fold_player_state_clear(&after);
free_text:
    json_decref(from_text);
    json_decref(until_text);
}

static void handle_inventory(api *r, struct evhttp_request *req, const char *user_id) {
    if (require_player_here(r, req, user_id)) return;
    fold_point point;
    json_t *asked;
    int at_given;
    if (point_param(r, req, user_id, "at", "at_token", &point, &asked, &at_given)) return;
    if (at_given) {
        char *item_types = http_query_param(req, "item_type");
        char *category = http_query_param(req, "category");
        handle_inventory_at(r, req, user_id, &point, asked, item_types, category);
        free(item_types);
        free(category);
        return;
    }
    char *after = http_query_param(req, "after");
    char *item_types = http_query_param(req, "item_type");
    char *category = http_query_param(req, "category");
    int32_t partition;
    int64_t offset;
    int partitions = producer_partition_count(r->config.prod);
    int wait_ms = after ? wait_ms_param(r, req) : 0;
    if (wait_ms < 0) {
        /* answered: malformed timeout_ms */
    } else if (after && (parse_token(after, &partition, &offset) ||
                         (partitions > 0 && partition >= partitions))) {
        http_reply_error(req, 400, "invalid_token", "after must be a write's token \"<p>:<o>\"");
    } else if (after && !fold_passed(r, partition, offset) && !parking_allowed(r, req)) {
        /* answered: too many requests waiting */
    } else if (after && !fold_passed(r, partition, offset)) {
        parked *pk = calloc(1, sizeof *pk);
        if (pk) {
            pk->req = req;
            pk->partition = partition;
            pk->offset = offset;
            snprintf(pk->user_id, sizeof pk->user_id, "%s", user_id);
            pk->item_types = item_types;
            pk->category = category;
            item_types = category = NULL;
        }
        if (!pk || park(r, pk, wait_ms)) {
            if (pk) {
                if (pk->timer) event_free(pk->timer);
                free(pk->item_types);
                free(pk->category);
                free(pk);
            }
            http_reply_error(req, 500, "internal", "cannot park the request");
        }
    } else {
        reply_inventory(r, req, user_id, item_types, category);
    }
    free(after);
    free(item_types);
    free(category);
}

/* The outcome of event_id: in the player's store when user_id is given, else the first
 * store (by partition) of this server that holds it. *unready counts the partitions
 * that could not be asked yet (serve is starting). Returns 1 found, 0 not, -1 on a read
 * error. */
static int read_event_anywhere(api *r, const char *event_id, const char *user_id,
                               store_event_outcome *outcome, int *unready) {
    char errstr[512];
    int partitions = producer_partition_count(r->config.prod);
    int32_t first = 0, last = partitions - 1;
    if (!user_id && r->config.partition_first >= 0) { /* a shard asks its own partitions */
        first = r->config.partition_first;
        last = r->config.partition_last < last ? r->config.partition_last : last;
    }
    if (user_id) first = last = player_partition(r, user_id);
    *unready = partitions <= 0;
    for (int32_t p = first; p >= 0 && p <= last; p++) {
        if (!r->config.group && !partition_readable(r, p)) {
            (*unready)++;
            continue;
        }
        store *st = store_set_get(r->config.readers, p, errstr, sizeof errstr);
        if (!st) {
            if (errstr[0]) log_error("http", "event read: %s", errstr);
            continue;
        }
        int found = store_read_event(st, event_id, user_id, outcome);
        if (found < 0) log_error("http", "event read: %s", store_errmsg(st));
        if (found) return found;
    }
    return 0;
}

/* A join waits (outcome "pending") for its guild's decision, which its partition records
 * as a guild_join_decided event whose id derives from the join's: once that is folded,
 * its outcome is the join's. Returns 1 decided (outcome updated), 0 still pending or not
 * a join, -1 on a read error. */
static int join_decision(api *r, const char *user_id, store_event_outcome *outcome) {
    char decision_id[CODEC_ID_MAX + 1], errstr[512];
    store_event_outcome decision;
    if (strcmp(outcome->outcome, "pending") != 0) return 0;
    if (codec_derived_event_id(outcome->event_id, EVENT_GUILD_JOIN_DECIDED, decision_id,
                               sizeof decision_id))
        return -1;
    store *st = store_set_get(r->config.readers, outcome->partition, errstr, sizeof errstr);
    if (!st) return -1;
    int found = store_read_event(st, decision_id, user_id, &decision);
    if (found <= 0) return found;
    snprintf(outcome->outcome, sizeof outcome->outcome, "%s", decision.outcome);
    snprintf(outcome->reason, sizeof outcome->reason, "%s", decision.reason);
    return 1;
}

static void handle_event(api *r, struct evhttp_request *req, const char *event_id) {
    validate_error err;
    store_event_outcome outcome;
    if (require_fold(r, req)) return;
    if (validate_identifier("event_id", event_id, &err)) {
        reply_validation(req, &err);
        return;
    }
    char *user_id = http_query_param(req, "user_id");
    if (user_id && validate_identifier("user_id", user_id, &err)) {
        free(user_id);
        reply_validation(req, &err);
        return;
    }
    /* A lookup that names the player is its partition's to answer (in a group, the
     * owner's; on a shard, 421 for another shard's player; 503 while its store is not
     * open yet); one by id alone searches the partitions held here. */
    if (user_id && require_shard(r, req, user_id)) {
        free(user_id);
        return;
    }
    int unready = 0;
    int found = read_event_anywhere(r, event_id, user_id, &outcome, &unready);
    if (found > 0 && join_decision(r, user_id, &outcome) < 0) found = -1;
    free(user_id);
    if (found < 0) {
        http_reply_error(req, 500, "internal", "reading the event failed");
        return;
    }
    if (!found && unready) {
        /* Not in the stores that answered, and some could not be asked yet: a 404 would
         * say an event that may be folded is not. */
        reply_not_ready(req, "serve is starting: not every partition's store is open yet");
        return;
    }
    if (!found) {
        http_reply_error(req, 404, "not_found", "no such event folded (yet)");
        return;
    }
    json_t *body = json_object();
    json_object_set_new(body, "event_id", json_string(outcome.event_id));
    json_object_set_new(body, "event_type", json_string(outcome.event_type));
    json_object_set_new(body, "outcome", json_string(outcome.outcome));
    json_object_set_new(body, "reason", outcome.reason[0] ? json_string(outcome.reason)
                                                          : json_null());
    json_object_set_new(body, "partition", json_integer(outcome.partition));
    json_object_set_new(body, "offset", json_integer(outcome.offset));
    http_reply_json(req, 200, body);
}

/* Reads ?limit= (default 50, 1..1000). Returns -1 after answering 400. */
static int limit_param(struct evhttp_request *req, int *limit) {
    char *value = http_query_param(req, "limit");
    *limit = 50;
    if (!value) return 0;
    char *end;
    long v = strtol(value, &end, 10);
    int ok = end != value && *end == '\0' && v >= 1 && v <= 1000;
    free(value);
    if (ok) {
        *limit = (int)v;
        return 0;
    }
    http_reply_error(req, 400, "invalid_limit", "limit must be an integer in 1..1000");
    return -1;
}

typedef struct {
    json_t *members;
    int limit;
    int seen;
    char last[CODEC_ID_MAX + 1];
} guild_page;

static void add_member(void *arg, const char *user_id) {
    guild_page *page = arg;
    /* One row more than the page is read, to know whether there is a next page. */
    if (++page->seen > page->limit) return;
    json_array_append_new(page->members, json_string(user_id));
    snprintf(page->last, sizeof page->last, "%s", user_id);
}

/* A guild's seats are decided, and its members kept, in the guild's own partition
 * (docs/design.md, "Guilds are decided in the log"): one store answers. */
static int read_guild(api *r, const char *guild_id, const char *cursor, guild_page *page,
                      int64_t *member_count) {
    char errstr[512];
    *member_count = 0;
    int32_t p = player_partition(r, guild_id);
    store *st = p >= 0 ? store_set_get(r->config.readers, p, errstr, sizeof errstr) : NULL;
    if (!st) return 0; /* nothing folded there yet */
    if (store_read_guild(st, guild_id, cursor, page->limit + 1, member_count, add_member, page)) {
        log_error("http", "guild read: %s", store_errmsg(st));
        return -1;
    }
    return 0;
}

static void handle_guild_info(api *r, struct evhttp_request *req, const char *guild_id) {
    validate_error err;
    int64_t member_count = 0;
    if (require_fold(r, req)) return;
    if (validate_identifier("guild_id", guild_id, &err)) {
        reply_validation(req, &err);
        return;
    }
    guild_page page = {.members = json_array()};
    if (limit_param(req, &page.limit)) {
        json_decref(page.members);
        return;
    }
    char *cursor = http_query_param(req, "cursor");
    if (cursor && !codec_identifier_ok(cursor)) {
        free(cursor);
        json_decref(page.members);
        http_reply_error(req, 400, "invalid_cursor", "cursor must come from next_cursor");
        return;
    }
    if (require_shard(r, req, guild_id)) { /* the guild's partition is folded elsewhere */
        free(cursor);
        json_decref(page.members);
        return;
    }
    int rc = read_guild(r, guild_id, cursor ? cursor : "", &page, &member_count);
    free(cursor);
    if (rc) {
        json_decref(page.members);
        http_reply_error(req, 500, "internal", "reading the guild failed");
        return;
    }
    if (member_count == 0) {
        json_decref(page.members);
        http_reply_error(req, 404, "not_found", "no such guild (or it has no members)");
        return;
    }
    json_t *body = json_object();
    json_object_set_new(body, "guild_id", json_string(guild_id));
    json_object_set_new(body, "member_count", json_integer(member_count));
    json_object_set_new(body, "members", page.members);
    json_object_set_new(body, "next_cursor",
                        page.seen > page.limit ? json_string(page.last) : json_null());
    http_reply_json(req, 200, body);
}

typedef struct {
    json_t *events;
    int limit;
    int seen;
    int64_t last_offset;
} history_page;

/* History keeps lines as "sword:1,arrow:20"; the API shows [{"item_type","quantity"}]. */
static json_t *history_items(const char *items) {
    json_t *lines = json_array();
    for (const char *p = items; p && *p;) {
        const char *colon = strchr(p, ':');
        if (!colon) break;
        json_t *line = json_object();
        json_object_set_new(line, "item_type", json_stringn(p, (size_t)(colon - p)));
        json_object_set_new(line, "quantity", json_integer(strtoll(colon + 1, NULL, 10)));
        json_array_append_new(lines, line);
        const char *comma = strchr(colon, ',');
        p = comma ? comma + 1 : NULL;
    }
    return lines;
}

static void add_history(void *arg, const store_history_row *row) {
    history_page *page = arg;
    if (++page->seen > page->limit) return;
    json_t *entry = history_entry(row);
    json_object_set_new(entry, "items", history_items(row->items));
    json_object_set_new(entry, "guild_id", row->guild_id ? json_string(row->guild_id) : json_null());
    json_object_set_new(entry, "partition", json_integer(row->partition));
    json_object_set_new(entry, "offset", json_integer(row->offset));
    json_array_append_new(page->events, entry);
    page->last_offset = row->offset;
}

static void handle_history(api *r, struct evhttp_request *req, const char *user_id) {
    if (require_player_here(r, req, user_id)) return;
    history_page page = {.events = json_array(), .last_offset = -1};
    if (limit_param(req, &page.limit)) {
        json_decref(page.events);
        return;
    }
    int64_t before = -1;
    char *cursor = http_query_param(req, "cursor");
    if (cursor) {
        char *end;
        long long v = strtoll(cursor, &end, 10);
        int ok = end != cursor && *end == '\0' && v >= 0;
        free(cursor);
        if (!ok) {
            json_decref(page.events);
            http_reply_error(req, 400, "invalid_cursor", "cursor must come from next_cursor");
            return;
        }
        before = v;
    }
    char errstr[512];
    store *st = store_set_get(r->config.readers, player_partition(r, user_id), errstr,
                              sizeof errstr);
    if (st && store_read_history(st, user_id, before, page.limit + 1, add_history, &page)) {
        json_decref(page.events);
        http_reply_error(req, 500, "internal", store_errmsg(st));
        return;
    }
    if (page.seen == 0 && before < 0) {
        json_decref(page.events);
        http_reply_error(req, 404, "not_found", "no events recorded for this player");
        return;
    }
    json_t *body = json_object();
    json_object_set_new(body, "user_id", json_string(user_id));
    json_object_set_new(body, "events", page.events);
    if (page.seen > page.limit) {
        char next[32];
        snprintf(next, sizeof next, "%lld", (long long)page.last_offset);
        json_object_set_new(body, "next_cursor", json_string(next));
    } else {
        json_object_set_new(body, "next_cursor", json_null());
    }
    http_reply_json(req, 200, body);
}

static void handle_items(api *r, struct evhttp_request *req) {
    const char *text = catalog_json(r->config.cat);
    http_reply_text(req, 200, "application/json", text, strlen(text));
}

/* Ready: every partition led, and the fold (if any) assigned and within the lag bound.
 * Writes the parts into body when it is not NULL. */
static int readiness(api *r, json_t *body) {
    int broker = producer_broker_ready(r->config.prod);
    int fold_ok = 1;
    char missing[512];
    if (body) json_object_set_new(body, "broker", json_boolean(broker));
    if (body && producer_topic_missing(r->config.prod, missing, sizeof missing))
        json_object_set_new(body, "reason", json_string(missing));
    if (r->config.fold) {
        fold_engine_stats stats;
        fold_engine_get_stats(r->config.fold, &stats);
        fold_ok = stats.assigned && stats.lag >= 0 && stats.lag <= r->config.ready_max_lag;
        if (body) {
            json_object_set_new(body, "fold_assigned", json_boolean(stats.assigned));
            json_object_set_new(body, "fold_lag", json_integer(stats.lag));
        }
        /* A store that cannot commit (disk full, read-only) stops its partition's fold
         * while reads go on: not ready, and the reason says why. */
        char why[512];
        if (fold_engine_commit_error(r->config.fold, why, sizeof why)) {
            fold_ok = 0;
            if (body) json_object_set_new(body, "fold_commit_error", json_string(why));
        }
        /* The engine stopped on what it cannot retry (e.g. a store of another topic). */
        if (stats.failed) {
            fold_ok = 0;
            fold_engine_error(r->config.fold, why, sizeof why);
            if (body) json_object_set_new(body, "fold_error", json_string(why));
        }
    }
    return broker && fold_ok;
}

static int is_ready(api *r) { return readiness(r, NULL); }

static void handle_readyz(api *r, struct evhttp_request *req) {
    json_t *body = json_object();
    int ready = readiness(r, body);
    json_object_set_new(body, "ready", json_boolean(ready));
    http_reply_json(req, ready ? 200 : 503, body);
}

/* ---------------------------------------------------------------- dispatch */

/* Fills view from the counters and the fold. */
static void metrics_collect(api *r, metrics_view *view) {
    memset(view, 0, sizeof *view);
    view->writes_acked = r->writes_acked;
    view->writes_failed = r->writes_failed;
    view->requests_invalid = r->requests_invalid;
    view->parked = r->parked_count;
    view->producer_queue = producer_outstanding(r->config.prod);
    view->broker_ready = producer_broker_ready(r->config.prod);
    view->fold = r->config.fold;
    view->snapshots = r->config.snapshots;
    if (r->config.group) {
        view->in_group = 1;
        if (r->config.forward)
            forwarder_counts(r->config.forward, &view->forwarded, &view->forward_failed);
        for (int32_t p = 0; p < STORE_MAX_PARTITIONS && r->config.fold; p++)
            view->partitions_owned += fold_engine_owns(r->config.fold, p);
    }
}

static void collect_sample(void *arg, metrics_view *view) { metrics_collect(arg, view); }

static void handle_metrics(api *r, struct evhttp_request *req) {
    metrics_view view;
    metrics_collect(r, &view);
    char *text = r->config.metrics ? metrics_render(r->config.metrics, &view) : NULL;
    if (!text) {
        http_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    http_reply_text(req, 200, "text/plain; version=0.0.4", text, strlen(text));
    free(text);
}

static int is_ready(api *r);

static void on_status(api *r, struct evhttp_request *req, const char *unused) {
    metrics_view view;
    (void)unused;
    metrics_collect(r, &view);
    status_page_input in = {LOOTLOG_VERSION, is_ready(r), r->config.metrics, &view, r->board};
    char *html = r->config.metrics ? status_page_render(&in) : NULL;
    if (!html) {
        http_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    http_reply_text(req, 200, "text/html; charset=utf-8", html, strlen(html));
    free(html);
}

/* 1 when given is the admin token. Both are hashed and the digests compared with
 * CRYPTO_memcmp, so the time taken tells neither how many leading bytes matched nor the
 * token's length (a plain memcmp stops at the first difference). */
static int admin_token_equal(const char *given, const char *token) {
    unsigned char a[EVP_MAX_MD_SIZE], b[EVP_MAX_MD_SIZE];
    unsigned int a_len = 0, b_len = 0;
    if (!EVP_Digest(given, strlen(given), a, &a_len, EVP_sha256(), NULL) ||
        !EVP_Digest(token, strlen(token), b, &b_len, EVP_sha256(), NULL) || a_len != b_len)
        return 0;
    return CRYPTO_memcmp(a, b, a_len) == 0;
}

/* 1 when the request carries the admin bearer token; else answers 401/403. */
static int admin_ok(api *r, struct evhttp_request *req) {
    const char *auth = http_header(req, "Authorization");
    if (auth && !r->config.admin_token) {
        http_reply_error(req, 403, "admin_disabled",
                         "no admin token configured (LOOTLOG_ADMIN_TOKEN or --admin-token-file)");
        return 0;
    }
    if (!auth || !r->config.admin_token || strncmp(auth, "Bearer ", 7) != 0 ||
        !admin_token_equal(auth + 7, r->config.admin_token)) {
        evhttp_add_header(evhttp_request_get_output_headers(req), "WWW-Authenticate", "Bearer");
        http_reply_error(req, 401, "unauthorized", "a valid admin bearer token is required");
        return 0;
    }
    return 1;
}

/* POST /admin/swap {"db": "/path/rebuilt.db"}: the rebuilt file becomes the state. */
/* The swap's answer, once it is done (on the loop thread; arg: the request). */
static void swap_answered(void *arg, int rc, const char *errstr) {
    struct evhttp_request *req = arg;
    if (rc) http_reply_error(req, 409, "swap_failed", errstr);
    else http_reply_json(req, 200, json_pack("{s:s}", "status", "swapped"));
}

static void handle_swap(api *r, struct evhttp_request *req) {
    char errstr[512];
    size_t len;
    if (!admin_ok(r, req)) return;
    if (!r->config.swap_db || !r->config.readers) {
        http_reply_error(req, 409, "no_fold", "this server does not fold, nothing to swap");
        return;
    }
    const char *body = json_body(req, &len);
    if (!body) return;
    json_t *root = json_loadb(body, len, 0, NULL);
    json_t *path = json_object_get(root, "db");
    if (!json_is_string(path)) {
        json_decref(root);
        http_reply_error(req, 400, "invalid_request", "body must be {\"db\": \"/path/to/rebuilt.db\"}");
        return;
    }
    int rc = r->config.swap_db(r->config.swap_opaque, json_string_value(path), swap_answered,
                               req, errstr, sizeof errstr);
    json_decref(root);
    if (rc) http_reply_error(req, 409, "swap_failed", errstr);
}

/* POST /admin/snapshots: schedule one now (202); GET: the list and the last outcome. */
static void on_admin_snapshots(api *r, struct evhttp_request *req, const char *unused) {
    (void)unused;
    if (!admin_ok(r, req)) return;
    if (!r->config.snapshots) {
        http_reply_error(req, 409, "snapshots_disabled", "serve runs without --snapshot-url");
        return;
    }
    if (evhttp_request_get_command(req) == EVHTTP_REQ_POST) {
        snapshot_scheduler_trigger(r->config.snapshots);
        http_reply_json(req, 202, json_pack("{s:s}", "status", "scheduled"));
        return;
    }
    char *text = snapshot_scheduler_status_json(r->config.snapshots);
    if (!text) {
        http_reply_error(req, 500, "internal", "out of memory");
        return;
    }
    http_reply_text(req, 200, "application/json", text, strlen(text));
    free(text);
}

void api_set_state(api *r, store_set *readers, fold_engine *fold) {
    r->config.readers = readers;
    r->config.fold = fold;
}

/* ---------------------------------------------------------------- route table */

typedef void (*route_fn)(api *r, struct evhttp_request *req, const char *capture);

static void on_purchases(api *r, struct evhttp_request *req, const char *user_id) {
    handle_write(r, req, EVENT_PURCHASE_ITEM, user_id, parse_purchase);
}
static void on_consumptions(api *r, struct evhttp_request *req, const char *user_id) {
    handle_write(r, req, EVENT_CONSUME_ITEM, user_id, parse_consumption);
}
static void on_guild_join(api *r, struct evhttp_request *req, const char *user_id) {
    handle_write(r, req, EVENT_JOIN_GUILD, user_id, parse_guild);
}
static void on_guild_leave(api *r, struct evhttp_request *req, const char *user_id) {
    handle_write(r, req, EVENT_LEAVE_GUILD, user_id, NULL);
}
static void on_seed_default(api *r, struct evhttp_request *req, const char *unused) {
    (void)unused;
    handle_seed(r, req, EVENT_DEFAULT, "This is the default response!\n");
}
static void on_seed_sword(api *r, struct evhttp_request *req, const char *unused) {
    (void)unused;
    handle_seed(r, req, EVENT_PURCHASE_SWORD, "Sword Purchased!\n");
}
static void on_seed_join(api *r, struct evhttp_request *req, const char *unused) {
    (void)unused;
    handle_seed(r, req, EVENT_JOIN_GUILD, "Joined guild!\n");
}
static void on_items(api *r, struct evhttp_request *req, const char *unused) {
    (void)unused;
    handle_items(r, req);
}
static void on_healthz(api *r, struct evhttp_request *req, const char *unused) {
    (void)r;
    (void)unused;
    http_reply_json(req, 200, json_pack("{s:s}", "status", "ok"));
}
static void on_readyz(api *r, struct evhttp_request *req, const char *unused) {
    (void)unused;
    handle_readyz(r, req);
}
static void on_metrics(api *r, struct evhttp_request *req, const char *unused) {
    (void)unused;
    handle_metrics(r, req);
}
static void on_swap(api *r, struct evhttp_request *req, const char *unused) {
    (void)unused;
    if (r->config.group) { /* a node's folder is the group's to fill, partition by partition */
        http_reply_error(req, 409, "in_a_group",
                         "a node of a consumer group takes its partitions from the group and "
                         "HDFS snapshots; swap is for a single node (docs/operations.md)");
        return;
    }
    handle_swap(r, req);
}

/* GET /v1/cluster: this node, the group as Kafka describes it, and every partition's
 * owner; for the partitions owned here, where their state came from. */
static void on_cluster(api *r, struct evhttp_request *req, const char *unused) {
    (void)unused;
    json_t *body = json_object();
    json_object_set_new(body, "node", r->config.self ? json_string(r->config.self) : json_null());
    json_object_set_new(body, "group", r->config.group_id ? json_string(r->config.group_id) : json_null());
    if (r->config.group) {
        char state[32];
        int members;
        int64_t age_ms;
        group_view_state(r->config.group, state, sizeof state, &members, &age_ms);
        json_object_set_new(body, "state", json_string(state));
        json_object_set_new(body, "members", json_integer(members));
        json_object_set_new(body, "described_ms_ago", json_integer(age_ms));
    }
    json_t *list = json_array();
    int partitions = producer_partition_count(r->config.prod);
    for (int32_t p = 0; p < partitions && p < STORE_MAX_PARTITIONS; p++) {
        json_t *entry = json_object();
        char owner[GROUP_VIEW_ADDRESS_SIZE];
        json_object_set_new(entry, "partition", json_integer(p));
        int here = r->config.fold && fold_engine_owns(r->config.fold, p);
        if (r->config.group)
            json_object_set_new(entry, "owner",
                                group_view_owner(r->config.group, p, owner, sizeof owner)
                                    ? json_string(owner)
                                    : json_null());
        json_object_set_new(entry, "here", json_boolean(here));
        fold_engine_partition_info_t info;
        if (here && fold_engine_partition_info(r->config.fold, p, &info)) {
            json_object_set_new(entry, "source", json_string(fold_engine_source_name(info.source)));
            json_object_set_new(entry, "opened_at", json_integer(info.opened_at));
            if (info.snapshot_id[0])
                json_object_set_new(entry, "snapshot_id", json_string(info.snapshot_id));
            json_object_set_new(entry, "next_offset",
                                json_integer(fold_engine_next_offset(r->config.fold, p)));
        }
        json_array_append_new(list, entry);
    }
    json_object_set_new(body, "partitions", list);
    http_reply_json(req, 200, body);
}

enum { M_GET = 1, M_HEAD = 2, M_POST = 4, M_PUT = 8, M_DELETE = 16 };
#define M_READ (M_GET | M_HEAD)

/* Path patterns: '*' takes one segment, handed to the handler. The seed endpoints write
 * events, so they take GET only: a HEAD must not change state. */
static const struct {
    const char *name; /* the route template: the route label of /metrics */
    const char *pattern;
    int methods;
    route_fn handler;
} route_table[] = {
    {"/v1/users/{user}/purchases", "v1/users/*/purchases", M_POST, on_purchases},
    {"/v1/users/{user}/consumptions", "v1/users/*/consumptions", M_POST, on_consumptions},
    {"/v1/users/{user}/guild", "v1/users/*/guild", M_PUT, on_guild_join},
    {"/v1/users/{user}/guild", "v1/users/*/guild", M_DELETE, on_guild_leave},
    {"/inventory/{user}", "inventory/*", M_READ, handle_inventory},
    {"/v1/users/{user}/inventory", "v1/users/*/inventory", M_READ, handle_inventory},
    {"/v1/users/{user}/history", "v1/users/*/history", M_READ, handle_history},
    {"/v1/users/{user}/changes", "v1/users/*/changes", M_READ, handle_changes},
    {"/v1/events/{event_id}", "v1/events/*", M_READ, handle_event},
    {"/v1/guilds/{guild}", "v1/guilds/*", M_READ, handle_guild_info},
    {"/v1/items", "v1/items", M_READ, on_items},
    {"/", "", M_GET, on_seed_default},
    {"/purchase_a_sword", "purchase_a_sword", M_GET, on_seed_sword},
    {"/join_guild", "join_guild", M_GET, on_seed_join},
    {"/healthz", "healthz", M_READ, on_healthz},
    {"/readyz", "readyz", M_READ, on_readyz},
    {"/v1/cluster", "v1/cluster", M_READ, on_cluster},
    {"/metrics", "metrics", M_READ, on_metrics},
    {"/status", "status", M_READ, on_status},
    {"/admin/swap", "admin/swap", M_POST, on_swap},
    {"/admin/snapshots", "admin/snapshots", M_READ | M_POST, on_admin_snapshots},
};
#define ROUTE_COUNT (sizeof route_table / sizeof route_table[0])

static int method_bit(enum evhttp_cmd_type method) {
    switch (method) {
    case EVHTTP_REQ_GET: return M_GET;
    case EVHTTP_REQ_HEAD: return M_HEAD;
    case EVHTTP_REQ_POST: return M_POST;
    case EVHTTP_REQ_PUT: return M_PUT;
    case EVHTTP_REQ_DELETE: return M_DELETE;
    default: return 0;
    }
}

/* 405 with an Allow header naming the methods the path takes. */
static void method_not_allowed(struct evhttp_request *req, int allowed) {
    static const struct {
        int bit;
        const char *name;
    } names[] = {{M_GET, "GET"}, {M_HEAD, "HEAD"}, {M_POST, "POST"}, {M_PUT, "PUT"},
                 {M_DELETE, "DELETE"}};
    char allow[64] = "";
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (allowed & names[i].bit) {
            if (allow[0]) strcat(allow, ", ");
            strcat(allow, names[i].name);
        }
    evhttp_add_header(evhttp_request_get_output_headers(req), "Allow", allow);
    http_reply_error(req, 405, "method_not_allowed", "this path does not take that method");
}

void api_handle(struct evhttp_request *req, void *arg) {
    api *r = arg;
    path_parts parts;
    const char *path = evhttp_uri_get_path(evhttp_request_get_evhttp_uri(req));
    int method = method_bit(evhttp_request_get_command(req));
    int allowed = 0;

    /* libevent 2.1 reads a body only for POST, PUT and PATCH. Content sent with another
     * method stays in the connection and would be parsed as the next request; answer
     * this one, then close, so a confused client cannot poison its own keep-alive. */
    if (!(method & (M_POST | M_PUT)) && evhttp_request_get_command(req) != EVHTTP_REQ_PATCH) {
        const char *length = http_header(req, "Content-Length");
        if ((length && strcmp(length, "0") != 0) || http_header(req, "Transfer-Encoding"))
            evhttp_add_header(evhttp_request_get_output_headers(req), "Connection", "close");
    }

    if (split_path(path, &parts) == 0) {
        for (size_t i = 0; i < ROUTE_COUNT; i++) {
            const char *capture[4] = {0};
            if (!match(&parts, route_table[i].pattern, capture)) continue;
            if (route_table[i].methods & method) {
                metrics_track_request(r->config.metrics, req, route_table[i].name);
                route_table[i].handler(r, req, capture[0]);
                return;
            }
            allowed |= route_table[i].methods;
        }
    }
    metrics_track_request(r->config.metrics, req, "unmatched");
    if (allowed)
        method_not_allowed(req, allowed);
    else
        http_reply_error(req, 404, "not_found", "no such route");
}

api *api_new(const api_config *config, char *errstr, size_t errstr_size) {
    api *r = calloc(1, sizeof *r);
    if (!r) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    r->config = *config;
    if (r->config.default_wait_ms <= 0) r->config.default_wait_ms = 2000;
    if (r->config.ready_max_lag < 0) r->config.ready_max_lag = 10000; /* 0: caught up */
    if (r->config.max_parked <= 0) r->config.max_parked = DEFAULT_MAX_PARKED;
    if (r->config.write_timeout_ms <= 0) r->config.write_timeout_ms = 5000;
    r->waits = waiter_queue_new(errstr, errstr_size);
    if (!r->waits) {
        free(r);
        return NULL;
    }
    if (!(r->idempotency_keys = idempotency_new(IDEMPOTENCY_KEYS))) {
        snprintf(errstr, errstr_size, "out of memory");
        api_free(r);
        return NULL;
    }
    if (r->config.readers && !(r->board = status_board_start(store_set_dir(r->config.readers),
                                                             errstr, errstr_size))) {
        api_free(r);
        return NULL;
    }
    if (metrics_start_sampling(r->config.metrics, r->config.base, collect_sample, r)) {
        snprintf(errstr, errstr_size, "starting the metrics sampler failed");
        api_free(r);
        return NULL;
    }
    return r;
}

void api_free(api *r) {
    if (!r) return;
    metrics_stop_sampling(r->config.metrics);
    status_board_stop(r->board);
    while (r->parked_head) {
        parked *pk = r->parked_head;
        if (pk->is_write) {
            /* The event is in the log; only its outcome is unknown here. */
            json_object_set_new(pk->ack, "outcome", json_string("pending"));
            http_reply_json(pk->req, 202, json_incref(pk->ack));
        } else {
            http_reply_error(pk->req, 503, "shutting_down", "lootlog is stopping");
        }
        unpark(pk);
    }
    waiter_queue_free(r->waits);
    idempotency_free(r->idempotency_keys);
    store_close(r->scratch);
    free(r);
}
