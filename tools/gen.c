/* gen: a load generator shaped like a real game. One libevent loop drives either a pool
 * of keep-alive HTTP connections or a librdkafka producer; a 2 ms tick releases the
 * requests that are due so the rate holds without bursts. */
#include "tools/gen.h"
#include "lib/clock.h"

#include "state/codec.h"
#include "kafka/config.h"

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <librdkafka/rdkafka.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define GUILD_COUNT 40

/* How often gen buys an item type, by its rarity in the catalog (the catalog is the one
 * list of item types: the server's, so gen never sends a type the server refuses). */
static int rarity_weight(const char *rarity) {
    static const struct {
        const char *rarity;
        int weight;
    } weights[] = {{"common", 20}, {"uncommon", 8}, {"rare", 4}, {"epic", 2}, {"legendary", 1}};
    for (size_t i = 0; i < sizeof weights / sizeof weights[0]; i++)
        if (rarity && strcmp(rarity, weights[i].rarity) == 0) return weights[i].weight;
    return 1;
}

typedef struct gen gen;

typedef struct {
    gen *owner;
    struct evhttp_connection *conn;
    int busy;
    double started_ms;
} gen_conn;

struct gen {
    const gen_config *config;
    struct event_base *base;
    struct event *tick;
    uint64_t rng;
    double *zipf_cdf;
    int item_total_weight;
    char **recent_ids; /* ring of recent "event_id user_id", replayed as retries */
    size_t recent_count, recent_next;
    /* HTTP */
    gen_conn *conns;
    char host[256];
    int port;
    /* Kafka */
    rd_kafka_t *rk;
    rd_kafka_topic_t *topic;
    /* accounting */
    double start_ms, last_progress_ms;
    uint64_t due_total, sent, ok, failed, behind;
    double *latencies;
    size_t latency_count, latency_cap;
    int tty;
    int finishing;
};

/* xorshift64*: fast, reproducible from --seed. */
static uint64_t next_random(gen *g) {
    g->rng ^= g->rng >> 12;
    g->rng ^= g->rng << 25;
    g->rng ^= g->rng >> 27;
    return g->rng * 2685821657736338717ULL;
}

static double uniform(gen *g) { return (next_random(g) >> 11) * (1.0 / 9007199254740992.0); }

static int pick_user(gen *g) {
    double u = uniform(g);
    int lo = 0, hi = g->config->users - 1;
    while (lo < hi) {
        int mid = (lo + hi) / 2;
        if (g->zipf_cdf[mid] < u) lo = mid + 1;
        else hi = mid;
    }
    return lo;
}

static const char *pick_item(gen *g) {
    int r = (int)(uniform(g) * g->item_total_weight);
    size_t kinds = catalog_count(g->config->cat);
    for (size_t i = 0; i < kinds; i++) {
        const catalog_item *item = catalog_at(g->config->cat, i);
        int weight = rarity_weight(item->rarity);
        if (r < weight) return item->item_type;
        r -= weight;
    }
    return catalog_at(g->config->cat, 0)->item_type;
}

static void remember_id(gen *g, const char *event_id, const char *user_id) {
    size_t cap = 1024;
    char entry[2 * CODEC_ID_MAX + 2];
    snprintf(entry, sizeof entry, "%s %s", event_id, user_id);
    free(g->recent_ids[g->recent_next]);
    g->recent_ids[g->recent_next] = strdup(entry);
    g->recent_next = (g->recent_next + 1) % cap;
    if (g->recent_count < cap) g->recent_count++;
}

/* Makes the next event: the mix of a game's traffic. */
static void make_event(gen *g, event *ev) {
    memset(ev, 0, sizeof *ev);
    ev->version = CODEC_EVENT_VERSION;
    snprintf(ev->user_id, sizeof ev->user_id, "%s%d", g->config->user_prefix, pick_user(g));
    clock_iso8601_now(ev->ts, sizeof ev->ts);
    double kind = uniform(g);
    if (kind < 0.45) {
        ev->type = EVENT_PURCHASE_ITEM;
        ev->item_count = 1;
    } else if (kind < 0.60) {
        ev->type = EVENT_PURCHASE_ITEM;
        ev->item_count = 2 + (size_t)(uniform(g) * 4);
    } else if (kind < 0.88) {
        ev->type = EVENT_CONSUME_ITEM;
        ev->item_count = 1;
    } else if (kind < 0.94) {
        ev->type = EVENT_JOIN_GUILD;
        /* Guilds carry the player prefix, so separate runs never share a guild. */
        snprintf(ev->guild_id, sizeof ev->guild_id, "%sguild%d", g->config->user_prefix,
                 (int)(uniform(g) * GUILD_COUNT));
    } else if (kind < 0.99) {
        ev->type = EVENT_LEAVE_GUILD;
    } else {
        ev->type = EVENT_DEFAULT;
    }
    for (size_t i = 0; i < ev->item_count; i++) {
        snprintf(ev->items[i].item_type, sizeof ev->items[i].item_type, "%s", pick_item(g));
        ev->items[i].quantity = ev->type == EVENT_CONSUME_ITEM ? 1 : 1 + (int64_t)(uniform(g) * 3);
    }
    /* 1% are a player's retry of a recent request: the same player, the same event id. */
    const char *retry = g->recent_count > 0 && uniform(g) < 0.01
                            ? g->recent_ids[(size_t)(uniform(g) * g->recent_count)]
                            : NULL;
    if (retry) {
        const char *space = strchr(retry, ' ');
        snprintf(ev->event_id, sizeof ev->event_id, "%.*s", (int)(space - retry), retry);
        snprintf(ev->user_id, sizeof ev->user_id, "%s", space + 1);
    } else {
        codec_uuid4(ev->event_id, sizeof ev->event_id);
        remember_id(g, ev->event_id, ev->user_id);
    }
}

static void record_latency(gen *g, double ms) {
    if (g->latency_count == g->latency_cap) {
        size_t grown = g->latency_cap ? g->latency_cap * 2 : 65536;
        double *l = realloc(g->latencies, grown * sizeof *l);
        if (!l) return;
        g->latencies = l;
        g->latency_cap = grown;
    }
    g->latencies[g->latency_count++] = ms;
}

/* ---------------------------------------------------------------- HTTP */

static void on_http_done(struct evhttp_request *req, void *arg) {
    gen_conn *c = arg;
    gen *g = c->owner;
    c->busy = 0;
    int status = req ? evhttp_request_get_response_code(req) : 0;
    if (status >= 200 && status < 300) {
        g->ok++;
        record_latency(g, (clock_seconds() * 1000.0) - c->started_ms);
    } else {
        g->failed++;
    }
}

/* Sends ev over an idle connection. Returns 0, or -1 when none is idle. */
static int send_http(gen *g, const event *ev) {
    gen_conn *c = NULL;
    for (int i = 0; i < g->config->connections; i++)
        if (!g->conns[i].busy) {
            c = &g->conns[i];
            break;
        }
    if (!c) return -1;
    char path[256], body[4096];
    const char *method_body = NULL;
    enum evhttp_cmd_type method = EVHTTP_REQ_POST;
    size_t used = 0;
    switch (ev->type) {
    case EVENT_PURCHASE_ITEM:
    case EVENT_CONSUME_ITEM:
        snprintf(path, sizeof path, "/v1/users/%s/%s", ev->user_id,
                 ev->type == EVENT_PURCHASE_ITEM ? "purchases" : "consumptions");
        if (ev->type == EVENT_CONSUME_ITEM || ev->item_count == 1) {
            snprintf(body, sizeof body, "{\"item_type\":\"%s\",\"quantity\":%lld}",
                     ev->items[0].item_type, (long long)ev->items[0].quantity);
        } else {
            used = (size_t)snprintf(body, sizeof body, "{\"items\":[");
            for (size_t i = 0; i < ev->item_count; i++)
                used += (size_t)snprintf(body + used, sizeof body - used,
                                         "%s{\"item_type\":\"%s\",\"quantity\":%lld}", i ? "," : "",
                                         ev->items[i].item_type, (long long)ev->items[i].quantity);
            snprintf(body + used, sizeof body - used, "]}");
        }
        method_body = body;
        break;
    case EVENT_JOIN_GUILD:
        snprintf(path, sizeof path, "/v1/users/%s/guild", ev->user_id);
        snprintf(body, sizeof body, "{\"guild_id\":\"%s\"}", ev->guild_id);
        method = EVHTTP_REQ_PUT;
        method_body = body;
        break;
    case EVENT_LEAVE_GUILD:
        snprintf(path, sizeof path, "/v1/users/%s/guild", ev->user_id);
        method = EVHTTP_REQ_DELETE;
        break;
    default:
        snprintf(path, sizeof path, "/?user_id=%s", ev->user_id);
        method = EVHTTP_REQ_GET;
        break;
    }
    struct evhttp_request *req = evhttp_request_new(on_http_done, c);
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    evhttp_add_header(headers, "Host", g->host);
    evhttp_add_header(headers, "User-Agent", "lootlog-gen");
    evhttp_add_header(headers, "Idempotency-Key", ev->event_id);
    if (method_body) {
        evhttp_add_header(headers, "Content-Type", "application/json");
        evbuffer_add(evhttp_request_get_output_buffer(req), method_body, strlen(method_body));
    }
    c->busy = 1;
    c->started_ms = (clock_seconds() * 1000.0);
    if (evhttp_make_request(c->conn, req, method, path)) {
        c->busy = 0;
        g->failed++;
    }
    return 0;
}

/* ---------------------------------------------------------------- Kafka */

static void on_kafka_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *opaque) {
    (void)rk;
    gen *g = opaque;
    double *started = msg->_private;
    if (msg->err) {
        g->failed++;
    } else {
        g->ok++;
        if (started) record_latency(g, (clock_seconds() * 1000.0) - *started);
    }
    free(started);
}

static int send_kafka(gen *g, const event *ev) {
    char errstr[256];
    size_t len;
    char *value = codec_encode(ev, &len, errstr, sizeof errstr);
    double *started = malloc(sizeof *started);
    if (!value || !started) {
        free(value);
        free(started);
        g->failed++;
        return 0;
    }
    *started = (clock_seconds() * 1000.0);
    if (rd_kafka_producev(g->rk, RD_KAFKA_V_RKT(g->topic),
                          RD_KAFKA_V_KEY(ev->user_id, strlen(ev->user_id)),
                          RD_KAFKA_V_VALUE(value, len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_FREE),
                          RD_KAFKA_V_OPAQUE(started), RD_KAFKA_V_END)) {
        free(value);
        free(started);
        return -1; /* queue full: try again next tick */
    }
    return 0;
}

/* ---------------------------------------------------------------- loop */

static size_t in_flight(gen *g) { return g->sent - g->ok - g->failed; }

static void print_progress(gen *g, int final) {
    double elapsed = ((clock_seconds() * 1000.0) - g->start_ms) / 1000.0;
    double total = g->config->rate * g->config->duration_s;
    double rate = elapsed > 0 ? g->ok / elapsed : 0;
    double eta = rate > 0 && total > g->sent ? (total - g->sent) / g->config->rate : 0;
    fprintf(stderr, "%sgen: %llu/%.0f sent, %llu ok, %llu failed, %.0f/s, ETA %.0fs%s",
            g->tty ? "\r" : "", (unsigned long long)g->sent, total, (unsigned long long)g->ok,
            (unsigned long long)g->failed, rate, eta, final || !g->tty ? "\n" : "   ");
}

static void on_tick(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    gen *g = arg;
    double now = (clock_seconds() * 1000.0);
    double elapsed_s = (now - g->start_ms) / 1000.0;
    if (g->rk) rd_kafka_poll(g->rk, 0);
    if (elapsed_s >= g->config->duration_s) {
        g->finishing = 1;
        if (in_flight(g) == 0 || elapsed_s >= g->config->duration_s + 30) {
            event_base_loopexit(g->base, NULL);
        }
    } else {
        uint64_t due = (uint64_t)(elapsed_s * g->config->rate);
        while (g->sent < due) {
            event ev;
            make_event(g, &ev);
            int rc = g->rk ? send_kafka(g, &ev) : send_http(g, &ev);
            if (rc) {
                g->behind++;
                break;
            }
            g->sent++;
        }
    }
    if (now - g->last_progress_ms >= (g->tty ? 250 : 5000)) {
        print_progress(g, 0);
        g->last_progress_ms = now;
    }
}

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double percentile(const gen *g, double p) {
    if (g->latency_count == 0) return 0;
    size_t i = (size_t)(p * (g->latency_count - 1));
    return g->latencies[i];
}

static int setup_http(gen *g, char *errstr, size_t errstr_size) {
    const char *url = g->config->http_url;
    if (strncmp(url, "http://", 7) == 0) url += 7;
    const char *colon = strchr(url, ':');
    if (!colon || (size_t)(colon - url) >= sizeof g->host) {
        snprintf(errstr, errstr_size, "--http '%s' is not http://HOST:PORT", g->config->http_url);
        return -1;
    }
    memcpy(g->host, url, (size_t)(colon - url));
    g->host[colon - url] = '\0';
    g->port = atoi(colon + 1);
    g->conns = calloc((size_t)g->config->connections, sizeof *g->conns);
    if (!g->conns) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    for (int i = 0; i < g->config->connections; i++) {
        g->conns[i].owner = g;
        g->conns[i].conn =
            evhttp_connection_base_new(g->base, NULL, g->host, (ev_uint16_t)g->port);
        if (!g->conns[i].conn) {
            snprintf(errstr, errstr_size, "cannot create HTTP connection");
            return -1;
        }
        evhttp_connection_set_timeout(g->conns[i].conn, 30);
    }
    return 0;
}

static int setup_kafka(gen *g, char *errstr, size_t errstr_size) {
    static const char *const defaults[] = {
        "acks", "all", "enable.idempotence", "true", "partitioner", "murmur2_random",
        "linger.ms", "5", "queue.buffering.max.messages", "500000",
        "compression.type", "lz4", "client.id", "lootlog-gen", NULL};
    char why[512];
    rd_kafka_conf_t *conf = kafka_config_new(g->config->brokers, defaults, g->config->kafka_props,
                                           g->config->kafka_prop_count, errstr, errstr_size);
    if (!conf) return -1;
    rd_kafka_conf_set_dr_msg_cb(conf, on_kafka_delivery);
    rd_kafka_conf_set_opaque(conf, g);
    g->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    if (!g->rk) {
        rd_kafka_conf_destroy(conf);
        snprintf(errstr, errstr_size, "creating producer: %s", why);
        return -1;
    }
    g->topic = rd_kafka_topic_new(g->rk, g->config->topic, NULL);
    return 0;
}

int gen_run(const gen_config *config, char *errstr, size_t errstr_size) {
    gen g;
    int rc = -1;
    memset(&g, 0, sizeof g);
    g.config = config;
    g.rng = config->seed ? config->seed : 0x9E3779B97F4A7C15ULL;
    g.tty = isatty(STDERR_FILENO);
    g.base = event_base_new();
    g.zipf_cdf = malloc((size_t)config->users * sizeof *g.zipf_cdf);
    g.recent_ids = calloc(1024, sizeof *g.recent_ids);
    if (!g.base || !g.zipf_cdf || !g.recent_ids) {
        snprintf(errstr, errstr_size, "out of memory");
        goto done;
    }
    /* Zipf with s = 1.1: a few players make most of the traffic, as in real games. */
    double sum = 0;
    for (int i = 0; i < config->users; i++) sum += 1.0 / pow(i + 1, 1.1);
    double acc = 0;
    for (int i = 0; i < config->users; i++) {
        acc += 1.0 / pow(i + 1, 1.1) / sum;
        g.zipf_cdf[i] = acc;
    }
    g.zipf_cdf[config->users - 1] = 1.0;
    if (!config->cat || catalog_count(config->cat) == 0) {
        snprintf(errstr, errstr_size, "gen needs a catalog with at least one item type");
        return -1;
    }
    for (size_t i = 0; i < catalog_count(config->cat); i++)
        g.item_total_weight += rarity_weight(catalog_at(config->cat, i)->rarity);

    if (config->http_url ? setup_http(&g, errstr, errstr_size)
                         : setup_kafka(&g, errstr, errstr_size))
        goto done;
    g.tick = event_new(g.base, -1, EV_PERSIST, on_tick, &g);
    struct timeval every = {0, 2000};
    event_add(g.tick, &every);
    g.start_ms = g.last_progress_ms = (clock_seconds() * 1000.0);
    event_base_dispatch(g.base);
    if (g.rk) rd_kafka_flush(g.rk, 30000), rd_kafka_poll(g.rk, 0);

    print_progress(&g, 1);
    if (g.latency_count) qsort(g.latencies, g.latency_count, sizeof *g.latencies, compare_double);
    double elapsed = ((clock_seconds() * 1000.0) - g.start_ms) / 1000.0;
    printf("gen: sent %llu, ok %llu, failed %llu, %.1f s, achieved %.0f/s (target %.0f/s), "
           "latency ms p50 %.2f p90 %.2f p99 %.2f max %.2f\n",
           (unsigned long long)g.sent, (unsigned long long)g.ok, (unsigned long long)g.failed,
           elapsed, elapsed > 0 ? g.ok / elapsed : 0, config->rate, percentile(&g, 0.5),
           percentile(&g, 0.9), percentile(&g, 0.99),
           g.latency_count ? g.latencies[g.latency_count - 1] : 0.0);
    rc = g.failed || g.ok < g.sent ? 1 : 0;
done:
    if (g.tick) event_free(g.tick);
    for (int i = 0; g.conns && i < config->connections; i++)
        if (g.conns[i].conn) evhttp_connection_free(g.conns[i].conn);
    free(g.conns);
    if (g.topic) rd_kafka_topic_destroy(g.topic);
    if (g.rk) rd_kafka_destroy(g.rk);
    for (size_t i = 0; g.recent_ids && i < 1024; i++) free(g.recent_ids[i]);
    free(g.recent_ids);
    free(g.zipf_cdf);
    free(g.latencies);
    if (g.base) event_base_free(g.base);
    return rc;
}
