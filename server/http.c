/* http: evhttp setup and reply helpers. Slow clients are cut off by evhttp's
 * per-connection timeout; bodies and headers have hard size limits. */
#include "http.h"

#include "../state/log.h"

#include <event2/buffer.h>
#include <event2/keyvalq_struct.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct http_server {
    struct evhttp *http;
    struct evhttp_bound_socket *bound;
    void (*handler)(struct evhttp_request *, void *);
    void *handler_arg;
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

static void on_request(struct evhttp_request *req, void *arg) {
    http_server *srv = arg;
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
    if (!srv || !srv->bound) return;
    evhttp_del_accept_socket(srv->http, srv->bound);
    srv->bound = NULL;
}

void http_server_free(http_server *srv) {
    if (!srv) return;
    if (srv->http) evhttp_free(srv->http);
    free(srv);
}

void http_reply_text(struct evhttp_request *req, int status, const char *content_type,
                     const char *text, size_t len) {
    struct evbuffer *out = evbuffer_new();
    evhttp_add_header(evhttp_request_get_output_headers(req), "Content-Type", content_type);
    if (out) evbuffer_add(out, text, len);
    evhttp_send_reply(req, status, reason_phrase(status), out);
    if (out) evbuffer_free(out);
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
