/* loadgen: the HTTP load tool of bench/run.py.
 *
 * Open loop (--rate R > 0): request k of a worker is due at start + k / R. It goes out on
 * the first idle keep-alive connection at or after that instant, and its latency is
 * measured from the instant it was DUE, not from when it could be sent, so a server that
 * stalls is charged for every request that queued behind the stall (the coordinated
 * omission correction of wrk2). Closed loop (--rate 0): every connection sends its next
 * request as soon as the previous answer arrives, for --duration seconds (max throughput).
 *
 * Targets: --url 'http://HOST:PORT/inventory/{u}' with {u} = PREFIX + a uniform random
 * index below --users, or --urls FILE (one path per line, picked uniformly at random).
 * --follow 'http://HOST:PORT/inventory/{u}?after={token}&timeout_ms=2000': after each 2xx
 * answer, take "token" from its JSON body and GET this URL at once; its latency, from the
 * 2xx to its answer, is reported as "follow" (write -> visible in reads).
 * --acks-out FILE writes "<user> <2xx count>" per user that got a 2xx.
 *
 * Prints one JSON object: count, errors, status counts, p50/p90/p99/p999/max in ms.
 *
 *   cc -O2 -Wall -Wextra -Werror bench/loadgen.c -levent -lpthread -o loadgen
 */
#define _GNU_SOURCE
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <getopt.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define MAX_STATUS 600
#define MAX_WORKERS 16

typedef struct {
    char host[256];
    int port;
    char *path_template; /* with {u} */
    char **paths;        /* --urls */
    size_t path_count;
    char *follow_template; /* path with {u} and {token}, or NULL */
    enum evhttp_cmd_type method;
    const char *method_name;
    const char *body;
    const char *prefix;
    int users;
    double rate; /* total over all workers; 0: closed loop */
    double duration_s;
    int connections; /* per worker */
    int follow_connections;
    int threads;
    int timeout_ms;
    unsigned long long seed;
    const char *acks_out;
} config;

static config cfg;

typedef struct {
    double *v;
    size_t n, cap;
} samples;

typedef struct worker worker;

typedef struct {
    worker *w;
    struct evhttp_connection *conn;
    int follow; /* belongs to the follow pool */
} conn_t;

typedef struct {
    conn_t *c;
    double from_ms; /* primary: when it was due; follow: when the 2xx arrived */
    int user;
} req_ctx;

typedef struct follow_job {
    struct follow_job *next;
    double acked_ms;
    int user;
    char token[48];
} follow_job;

struct worker {
    int id;
    struct event_base *base;
    struct event *timer;
    struct event *deadline;
    conn_t *conns, *fconns;
    conn_t **idle, **fidle; /* stacks of idle connections */
    int idle_count, fidle_count;
    double interval_ms; /* open loop: time between two requests of this worker */
    uint64_t total;     /* open loop: requests to send */
    uint64_t sent, done;
    double start_ms, end_ms;
    uint64_t rng;
    samples lat, flat;
    uint64_t status[MAX_STATUS], fstatus[MAX_STATUS];
    uint64_t errors, ferrors, fsent, fdone, tokens_missing;
    uint64_t *acks;
    follow_job *fq_head, *fq_tail;
    int finished;
};

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000.0 + ts.tv_nsec / 1e6;
}

static void die(const char *msg) {
    fprintf(stderr, "loadgen: %s\n", msg);
    exit(2);
}

static void push(samples *s, double v) {
    if (s->n == s->cap) {
        size_t grown = s->cap ? s->cap * 2 : 65536;
        double *nv = realloc(s->v, grown * sizeof *nv);
        if (!nv) die("out of memory");
        s->v = nv;
        s->cap = grown;
    }
    s->v[s->n++] = v;
}

static uint64_t next_random(worker *w) {
    w->rng ^= w->rng >> 12;
    w->rng ^= w->rng << 25;
    w->rng ^= w->rng >> 27;
    return w->rng * 2685821657736338717ULL;
}

/* Copies template into out with {u} and {token} replaced. */
static void expand(const char *template, const char *user, const char *token, char *out,
                   size_t size) {
    size_t used = 0;
    for (const char *p = template; *p && used + 1 < size;) {
        const char *with = NULL;
        size_t skip = 0;
        if (strncmp(p, "{u}", 3) == 0) with = user, skip = 3;
        else if (strncmp(p, "{token}", 7) == 0) with = token, skip = 7;
        if (with) {
            used += (size_t)snprintf(out + used, size - used, "%s", with);
            if (used >= size) used = size - 1;
            p += skip;
        } else {
            out[used++] = *p++;
        }
    }
    out[used] = '\0';
}

static void dispatch(worker *w);
static void dispatch_follow(worker *w);
static void maybe_finish(worker *w);

static void release(worker *w, conn_t *c) {
    if (c->follow) w->fidle[w->fidle_count++] = c;
    else w->idle[w->idle_count++] = c;
}

static struct evhttp_request *new_request(void (*cb)(struct evhttp_request *, void *),
                                          req_ctx *ctx, int with_body) {
    struct evhttp_request *req = evhttp_request_new(cb, ctx);
    if (!req) die("out of memory");
    struct evkeyvalq *headers = evhttp_request_get_output_headers(req);
    char host[300];
    snprintf(host, sizeof host, "%s:%d", cfg.host, cfg.port);
    evhttp_add_header(headers, "Host", host);
    evhttp_add_header(headers, "User-Agent", "lootlog-bench-loadgen");
    if (with_body && cfg.body) {
        evhttp_add_header(headers, "Content-Type", "application/json");
        evbuffer_add(evhttp_request_get_output_buffer(req), cfg.body, strlen(cfg.body));
    }
    return req;
}

/* Finds the "token":"..." of a write's 202 body. Returns 0 or -1. */
static int find_token(struct evhttp_request *req, char *token, size_t size) {
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t len = evbuffer_get_length(in);
    const char *text = (const char *)evbuffer_pullup(in, -1);
    static const char key[] = "\"token\":\"";
    if (!text) return -1;
    const char *at = memmem(text, len, key, sizeof key - 1);
    if (!at) return -1;
    at += sizeof key - 1;
    const char *end = memchr(at, '"', len - (size_t)(at - text));
    if (!end || (size_t)(end - at) >= size) return -1;
    memcpy(token, at, (size_t)(end - at));
    token[end - at] = '\0';
    return 0;
}

static void on_follow_done(struct evhttp_request *req, void *arg) {
    req_ctx *ctx = arg;
    worker *w = ctx->c->w;
    int code = req ? evhttp_request_get_response_code(req) : 0;
    if (code <= 0 || code >= MAX_STATUS) {
        w->ferrors++;
    } else {
        w->fstatus[code]++;
        push(&w->flat, now_ms() - ctx->from_ms);
    }
    w->fdone++;
    release(w, ctx->c);
    free(ctx);
    dispatch_follow(w);
    maybe_finish(w);
}

static void dispatch_follow(worker *w) {
    while (w->fq_head && w->fidle_count > 0) {
        follow_job *job = w->fq_head;
        w->fq_head = job->next;
        if (!w->fq_head) w->fq_tail = NULL;
        conn_t *c = w->fidle[--w->fidle_count];
        req_ctx *ctx = malloc(sizeof *ctx);
        if (!ctx) die("out of memory");
        *ctx = (req_ctx){.c = c, .from_ms = job->acked_ms, .user = job->user};
        char user[128], path[2048];
        snprintf(user, sizeof user, "%s%d", cfg.prefix, job->user);
        expand(cfg.follow_template, user, job->token, path, sizeof path);
        struct evhttp_request *req = new_request(on_follow_done, ctx, 0);
        w->fsent++;
        free(job);
        if (evhttp_make_request(c->conn, req, EVHTTP_REQ_GET, path)) {
            w->ferrors++;
            w->fdone++;
            release(w, c);
            free(ctx);
        }
    }
}

static void on_primary_done(struct evhttp_request *req, void *arg) {
    req_ctx *ctx = arg;
    worker *w = ctx->c->w;
    double now = now_ms();
    int code = req ? evhttp_request_get_response_code(req) : 0;
    if (code <= 0 || code >= MAX_STATUS) {
        w->errors++;
    } else {
        w->status[code]++;
        push(&w->lat, now - ctx->from_ms);
        if (code >= 200 && code < 300) {
            if (ctx->user >= 0) w->acks[ctx->user]++;
            if (cfg.follow_template) {
                follow_job *job = calloc(1, sizeof *job);
                if (!job) die("out of memory");
                job->acked_ms = now;
                job->user = ctx->user;
                if (find_token(req, job->token, sizeof job->token)) {
                    w->tokens_missing++;
                    free(job);
                } else {
                    if (w->fq_tail) w->fq_tail->next = job;
                    else w->fq_head = job;
                    w->fq_tail = job;
                }
            }
        }
    }
    w->done++;
    release(w, ctx->c);
    free(ctx);
    if (cfg.follow_template) dispatch_follow(w);
    dispatch(w);
    maybe_finish(w);
}

static void send_primary(worker *w, conn_t *c, double due_ms) {
    char user[128], path[2048];
    int index = -1;
    if (cfg.paths) {
        snprintf(path, sizeof path, "%s", cfg.paths[next_random(w) % cfg.path_count]);
    } else {
        index = (int)(next_random(w) % (uint64_t)cfg.users);
        snprintf(user, sizeof user, "%s%d", cfg.prefix, index);
        expand(cfg.path_template, user, "", path, sizeof path);
    }
    req_ctx *ctx = malloc(sizeof *ctx);
    if (!ctx) die("out of memory");
    *ctx = (req_ctx){.c = c, .from_ms = due_ms, .user = index};
    struct evhttp_request *req = new_request(on_primary_done, ctx, 1);
    w->sent++;
    if (evhttp_make_request(c->conn, req, cfg.method, path)) {
        w->errors++;
        w->done++;
        release(w, c);
        free(ctx);
    }
}

static struct timeval ms_to_timeval(double ms) {
    if (ms < 0) ms = 0;
    time_t sec = (time_t)(ms / 1000);
    struct timeval tv = {sec, (suseconds_t)((ms - sec * 1000.0) * 1000)};
    return tv;
}

static void arm_timer(worker *w, double at_ms) {
    struct timeval tv = ms_to_timeval(at_ms - now_ms());
    event_add(w->timer, &tv);
}

/* Sends every request that is due on the idle connections; arms the timer for the next. */
static void dispatch(worker *w) {
    double now = now_ms();
    if (cfg.rate > 0) {
        while (w->sent < w->total) {
            double due = w->start_ms + (double)w->sent * w->interval_ms;
            if (due > now) {
                arm_timer(w, due);
                return;
            }
            if (w->idle_count == 0) return; /* the next answer frees one; latency counts on */
            send_primary(w, w->idle[--w->idle_count], due);
        }
    } else {
        if (now >= w->end_ms) return;
        while (w->idle_count > 0) send_primary(w, w->idle[--w->idle_count], now_ms());
        arm_timer(w, w->end_ms);
    }
}

static int schedule_done(worker *w) {
    return cfg.rate > 0 ? w->sent >= w->total : now_ms() >= w->end_ms;
}

static void maybe_finish(worker *w) {
    if (w->finished || !schedule_done(w)) return;
    if (w->done < w->sent || w->fq_head || w->fdone < w->fsent) return;
    w->finished = 1;
    event_base_loopexit(w->base, NULL);
}

static void on_timer(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    worker *w = arg;
    dispatch(w);
    maybe_finish(w);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg) {
    (void)fd;
    (void)what;
    worker *w = arg;
    event_base_loopexit(w->base, NULL);
}

static conn_t *make_pool(worker *w, int count, int follow) {
    conn_t *pool = calloc((size_t)count, sizeof *pool);
    if (!pool) die("out of memory");
    struct timeval timeout = {cfg.timeout_ms / 1000, (cfg.timeout_ms % 1000) * 1000};
    for (int i = 0; i < count; i++) {
        pool[i].w = w;
        pool[i].follow = follow;
        pool[i].conn = evhttp_connection_base_new(w->base, NULL, cfg.host, (ev_uint16_t)cfg.port);
        if (!pool[i].conn) die("cannot create a connection");
        evhttp_connection_set_timeout_tv(pool[i].conn, &timeout);
        release(w, &pool[i]);
    }
    return pool;
}

static void *run_worker(void *arg) {
    worker *w = arg;
    struct event_config *ec = event_config_new();
    event_config_set_flag(ec, EVENT_BASE_FLAG_PRECISE_TIMER);
    w->base = event_base_new_with_config(ec);
    event_config_free(ec);
    if (!w->base) die("event_base_new failed");
    w->idle = calloc((size_t)cfg.connections, sizeof *w->idle);
    w->fidle = calloc((size_t)cfg.follow_connections + 1, sizeof *w->fidle);
    w->acks = calloc((size_t)cfg.users + 1, sizeof *w->acks);
    if (!w->idle || !w->fidle || !w->acks) die("out of memory");
    w->conns = make_pool(w, cfg.connections, 0);
    if (cfg.follow_template) w->fconns = make_pool(w, cfg.follow_connections, 1);
    w->timer = event_new(w->base, -1, 0, on_timer, w);
    w->deadline = event_new(w->base, -1, 0, on_deadline, w);
    double per_worker_rate = cfg.rate / cfg.threads;
    if (cfg.rate > 0) {
        w->interval_ms = 1000.0 / per_worker_rate;
        w->total = (uint64_t)(per_worker_rate * cfg.duration_s + 0.5);
    }
    /* Workers interleave their schedules rather than firing together. */
    w->start_ms = now_ms() + (cfg.rate > 0 ? w->id * (1000.0 / cfg.rate) : 0);
    w->end_ms = w->start_ms + cfg.duration_s * 1000;
    double drain_ms = cfg.duration_s * 1000 + 2.0 * cfg.timeout_ms + 1000;
    struct timeval dl = ms_to_timeval(drain_ms);
    event_add(w->deadline, &dl);
    dispatch(w);
    event_base_dispatch(w->base);
    w->end_ms = now_ms();
    return NULL;
}

static int compare_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double pct(const samples *s, double p) {
    if (s->n == 0) return 0;
    double rank = p * (double)s->n; /* nearest rank: the ceiling of p * n */
    size_t i = (size_t)rank;
    if ((double)i < rank) i++;
    if (i > 0) i--;
    if (i >= s->n) i = s->n - 1;
    return s->v[i];
}

static void print_stats(const char *name, samples *s, const uint64_t *status, uint64_t errors,
                        double seconds) {
    qsort(s->v, s->n, sizeof *s->v, compare_double);
    uint64_t count = 0;
    double sum = 0;
    for (size_t i = 0; i < s->n; i++) sum += s->v[i];
    printf("\"%s\":{\"status\":{", name);
    int first = 1;
    for (int code = 0; code < MAX_STATUS; code++) {
        if (!status[code]) continue;
        printf("%s\"%d\":%llu", first ? "" : ",", code, (unsigned long long)status[code]);
        count += status[code];
        first = 0;
    }
    printf("},\"count\":%llu,\"errors\":%llu,\"rate\":%.1f,\"mean_ms\":%.4f,\"p50_ms\":%.4f,"
           "\"p90_ms\":%.4f,\"p99_ms\":%.4f,\"p999_ms\":%.4f,\"max_ms\":%.4f}",
           (unsigned long long)count, (unsigned long long)errors, seconds > 0 ? count / seconds : 0,
           s->n ? sum / s->n : 0, pct(s, 0.50), pct(s, 0.90), pct(s, 0.99), pct(s, 0.999),
           s->n ? s->v[s->n - 1] : 0);
}

static void merge(samples *into, const samples *from) {
    for (size_t i = 0; i < from->n; i++) push(into, from->v[i]);
}

static void parse_url(const char *url) {
    if (strncmp(url, "http://", 7) != 0) die("--url must start with http://");
    const char *host = url + 7;
    const char *slash = strchr(host, '/');
    const char *colon = strchr(host, ':');
    if (!colon || (slash && colon > slash)) die("--url needs an explicit port");
    size_t host_len = (size_t)(colon - host);
    if (host_len >= sizeof cfg.host) die("host too long");
    memcpy(cfg.host, host, host_len);
    cfg.host[host_len] = '\0';
    cfg.port = atoi(colon + 1);
    cfg.path_template = strdup(slash ? slash : "/");
}

/* The path of a URL (or the text itself when it already is a path). */
static char *path_of(const char *url) {
    if (strncmp(url, "http://", 7) == 0) {
        const char *slash = strchr(url + 7, '/');
        return strdup(slash ? slash : "/");
    }
    return strdup(url);
}

static void read_urls(const char *file) {
    FILE *f = fopen(file, "r");
    if (!f) die("cannot open --urls file");
    char line[4096];
    size_t cap = 0;
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\r\n")] = '\0';
        if (!line[0]) continue;
        if (cfg.path_count == cap) {
            cap = cap ? cap * 2 : 1024;
            cfg.paths = realloc(cfg.paths, cap * sizeof *cfg.paths);
            if (!cfg.paths) die("out of memory");
        }
        cfg.paths[cfg.path_count++] = path_of(line);
    }
    fclose(f);
    if (cfg.path_count == 0) die("--urls file is empty");
}

static const char usage[] =
    "usage: loadgen --url http://HOST:PORT/path/{u} [--users N] [--prefix P] | --urls FILE\n"
    "               --rate R (0: closed loop) --duration S [--connections C] [--threads T]\n"
    "               [--method GET|POST|PUT|DELETE] [--body JSON] [--timeout-ms MS]\n"
    "               [--follow URL-with-{u}-and-{token}] [--follow-connections C]\n"
    "               [--acks-out FILE] [--seed N]\n";

int main(int argc, char **argv) {
    static const struct option options[] = {
        {"url", required_argument, NULL, 'u'},     {"urls", required_argument, NULL, 'U'},
        {"users", required_argument, NULL, 'n'},   {"prefix", required_argument, NULL, 'p'},
        {"rate", required_argument, NULL, 'r'},    {"duration", required_argument, NULL, 'd'},
        {"connections", required_argument, NULL, 'c'},
        {"threads", required_argument, NULL, 't'}, {"method", required_argument, NULL, 'm'},
        {"body", required_argument, NULL, 'b'},    {"timeout-ms", required_argument, NULL, 'T'},
        {"follow", required_argument, NULL, 'f'},
        {"follow-connections", required_argument, NULL, 'F'},
        {"acks-out", required_argument, NULL, 'a'}, {"seed", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},          {NULL, 0, NULL, 0}};
    const char *url = NULL, *urls = NULL, *follow = NULL;
    cfg.prefix = "";
    cfg.users = 1;
    cfg.connections = 32;
    cfg.threads = 1;
    cfg.timeout_ms = 10000;
    cfg.method = EVHTTP_REQ_GET;
    cfg.method_name = "GET";
    cfg.seed = 1;
    cfg.duration_s = -1;
    cfg.rate = -1;
    int opt;
    while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
        switch (opt) {
        case 'u': url = optarg; break;
        case 'U': urls = optarg; break;
        case 'n': cfg.users = atoi(optarg); break;
        case 'p': cfg.prefix = optarg; break;
        case 'r': cfg.rate = atof(optarg); break;
        case 'd': cfg.duration_s = atof(optarg); break;
        case 'c': cfg.connections = atoi(optarg); break;
        case 't': cfg.threads = atoi(optarg); break;
        case 'b': cfg.body = optarg; break;
        case 'T': cfg.timeout_ms = atoi(optarg); break;
        case 'f': follow = optarg; break;
        case 'F': cfg.follow_connections = atoi(optarg); break;
        case 'a': cfg.acks_out = optarg; break;
        case 's': cfg.seed = strtoull(optarg, NULL, 10); break;
        case 'm':
            cfg.method_name = optarg;
            if (strcmp(optarg, "GET") == 0) cfg.method = EVHTTP_REQ_GET;
            else if (strcmp(optarg, "POST") == 0) cfg.method = EVHTTP_REQ_POST;
            else if (strcmp(optarg, "PUT") == 0) cfg.method = EVHTTP_REQ_PUT;
            else if (strcmp(optarg, "DELETE") == 0) cfg.method = EVHTTP_REQ_DELETE;
            else die("--method must be GET, POST, PUT or DELETE");
            break;
        default: fputs(usage, stderr); return opt == 'h' ? 0 : 2;
        }
    }
    if (!url || cfg.rate < 0 || cfg.duration_s <= 0 || cfg.connections < 1 || cfg.users < 1 ||
        cfg.threads < 1 || cfg.threads > MAX_WORKERS || cfg.timeout_ms < 1) {
        fputs(usage, stderr);
        return 2;
    }
    parse_url(url);
    if (urls) read_urls(urls);
    if (follow) {
        if (urls) die("--follow needs --url with {u}, not --urls");
        cfg.follow_template = path_of(follow);
        if (cfg.follow_connections < 1) cfg.follow_connections = cfg.connections;
    }

    worker *workers = calloc((size_t)cfg.threads, sizeof *workers);
    pthread_t tids[MAX_WORKERS];
    if (!workers) die("out of memory");
    double started = now_ms();
    for (int i = 0; i < cfg.threads; i++) {
        workers[i].id = i;
        workers[i].rng = (cfg.seed + 1) * 0x9E3779B97F4A7C15ULL + (uint64_t)i * 0xBF58476D1CE4E5B9ULL;
        if (pthread_create(&tids[i], NULL, run_worker, &workers[i])) die("pthread_create failed");
    }
    for (int i = 0; i < cfg.threads; i++) pthread_join(tids[i], NULL);
    double seconds = (now_ms() - started) / 1000.0;

    samples lat = {0}, flat = {0};
    uint64_t status[MAX_STATUS] = {0}, fstatus[MAX_STATUS] = {0};
    uint64_t errors = 0, ferrors = 0, sent = 0, scheduled = 0, unfinished = 0, funfinished = 0;
    uint64_t tokens_missing = 0;
    for (int i = 0; i < cfg.threads; i++) {
        worker *w = &workers[i];
        merge(&lat, &w->lat);
        merge(&flat, &w->flat);
        for (int c = 0; c < MAX_STATUS; c++) status[c] += w->status[c], fstatus[c] += w->fstatus[c];
        errors += w->errors;
        ferrors += w->ferrors;
        sent += w->sent;
        scheduled += cfg.rate > 0 ? w->total : w->sent;
        unfinished += w->sent - w->done;
        tokens_missing += w->tokens_missing;
        for (follow_job *j = w->fq_head; j; j = j->next) funfinished++;
        funfinished += w->fsent - w->fdone;
    }
    /* Requests still unanswered at the drain deadline count as errors. */
    errors += unfinished + (scheduled - sent);
    ferrors += funfinished;

    double run_s = cfg.duration_s;
    printf("{\"method\":\"%s\",\"target_rate\":%.1f,\"duration_s\":%.3f,\"wall_s\":%.3f,"
           "\"connections\":%d,\"threads\":%d,\"scheduled\":%llu,\"sent\":%llu,"
           "\"unsent\":%llu,\"unfinished\":%llu,\"tokens_missing\":%llu,",
           cfg.method_name, cfg.rate, run_s, seconds, cfg.connections, cfg.threads,
           (unsigned long long)scheduled, (unsigned long long)sent,
           (unsigned long long)(scheduled - sent), (unsigned long long)unfinished,
           (unsigned long long)tokens_missing);
    print_stats("primary", &lat, status, errors, run_s);
    if (cfg.follow_template) {
        printf(",");
        print_stats("follow", &flat, fstatus, ferrors, run_s);
    }
    /* The headline numbers of the primary requests at the top level too. */
    uint64_t count = 0;
    for (int c = 0; c < MAX_STATUS; c++) count += status[c];
    printf(",\"count\":%llu,\"errors\":%llu,\"p50_ms\":%.4f,\"p99_ms\":%.4f,\"p999_ms\":%.4f,"
           "\"max_ms\":%.4f}\n",
           (unsigned long long)count, (unsigned long long)errors, pct(&lat, 0.5), pct(&lat, 0.99),
           pct(&lat, 0.999), lat.n ? lat.v[lat.n - 1] : 0);

    if (cfg.acks_out && !cfg.paths) {
        FILE *f = fopen(cfg.acks_out, "w");
        if (!f) die("cannot write --acks-out");
        for (int u = 0; u < cfg.users; u++) {
            uint64_t n = 0;
            for (int i = 0; i < cfg.threads; i++) n += workers[i].acks[u];
            if (n) fprintf(f, "%s%d %llu\n", cfg.prefix, u, (unsigned long long)n);
        }
        fclose(f);
    }
    return 0;
}
