/* webhdfs: WebHDFS over one reused curl handle. Each call is one or two HTTP exchanges
 * (NameNode, then the DataNode it redirects to); an exchange records what came back and
 * the helpers below turn curl codes and RemoteException answers into sentences. */
#include "hdfs/webhdfs.h"

#include <curl/curl.h>
#include <errno.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Largest answer kept in memory (JSON, error pages): a LISTSTATUS of ~200k entries. */
#define MAX_ANSWER_BYTES ((size_t)64 << 20)
#define LABEL_SIZE 512
#define ORIGIN_SIZE 256 /* "scheme://host:port" of a DataNode */

struct webhdfs {
    CURL *curl;
    char *base_url;    /* "http://host:port[/prefix]", no trailing slash; named in errors */
    char *user_query;  /* "&user.name=<escaped>", or "" */
    long timeout_ms;
    char curl_error[CURL_ERROR_SIZE];
};

/* One HTTP request and what came back. Zero-initialise, fill the request part, run it
 * with perform(), release with exchange_free(). */
typedef struct {
    const char *method;      /* "GET", "PUT" or "DELETE" */
    char *url;               /* malloc'ed; freed with the exchange */
    int to_datanode;         /* bytes flow: a stall limit instead of a total deadline */
    const char *body_data;   /* PUT body from memory (body_len bytes), or */
    size_t body_len;
    size_t body_pos;
    FILE *body_file;         /* PUT body from this open file (body_file_size bytes) */
    curl_off_t body_file_size;
    curl_off_t body_file_left;
    FILE *sink_file;         /* a 200 answer's body goes here instead of into answer */
    const char *local_path;  /* the file behind body_file or sink_file, for errors */

    long status;             /* HTTP status, 0 when none arrived */
    char *location;          /* malloc'ed Location of a redirect, or NULL */
    char *answer;            /* malloc'ed, NUL-terminated body (unless it went to sink_file) */
    size_t answer_len;
    int answer_too_big;
    int local_errno;         /* reading body_file or writing sink_file failed with this */
    int local_shrank;        /* body_file ended before its size at open time */
} exchange;

static void exchange_free(exchange *x) {
    free(x->url);
    free(x->location);
    free(x->answer);
    x->url = x->location = x->answer = NULL;
}

/* Returns a malloc'ed string formatted like printf, or NULL when out of memory. */
static char *str_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *str_printf(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0) return NULL;
    char *s = malloc((size_t)n + 1);
    if (!s) return NULL;
    va_start(ap, fmt);
    vsnprintf(s, (size_t)n + 1, fmt, ap);
    va_end(ap);
    return s;
}

/* Returns path percent-encoded segment by segment ("/a b/c" -> "/a%20b/c"), malloc'ed, or
 * NULL when out of memory. */
static char *encode_path(CURL *curl, const char *path) {
    size_t cap = strlen(path) * 3 + 1; /* every byte may become %XX */
    char *out = malloc(cap);
    if (!out) return NULL;
    size_t len = 0;
    const char *p = path;
    while (*p) {
        if (*p == '/') {
            out[len++] = *p++;
            continue;
        }
        size_t seg = strcspn(p, "/");
        char *escaped = curl_easy_escape(curl, p, (int)seg);
        if (!escaped) {
            free(out);
            return NULL;
        }
        size_t n = strlen(escaped);
        memcpy(out + len, escaped, n);
        len += n;
        curl_free(escaped);
        p += seg;
    }
    out[len] = '\0';
    return out;
}

/* Writes "scheme://host[:port]" of url into out (the whole url when it has no path). */
static void origin_of(const char *url, char *out, size_t out_size) {
    const char *host = strstr(url, "://");
    size_t n = host ? (size_t)(host + 3 - url) + strcspn(host + 3, "/?#") : strlen(url);
    snprintf(out, out_size, "%.*s", (int)n, url);
}

/* Copies text into out with control characters (newlines, tabs) as spaces. */
static void one_line(const char *text, char *out, size_t out_size) {
    size_t i = 0;
    for (; text[i] && i + 1 < out_size; i++) out[i] = (unsigned char)text[i] < 0x20 ? ' ' : text[i];
    if (out_size) out[i] = '\0';
}

/* ---- the HTTP exchange ------------------------------------------------------------------ */

static size_t on_body(char *data, size_t size, size_t nmemb, void *userdata) {
    exchange *x = userdata;
    size_t n = size * nmemb;
    if (x->sink_file && x->status == 200) {
        if (fwrite(data, 1, n, x->sink_file) != n) {
            x->local_errno = errno ? errno : EIO;
            return 0;
        }
        return n;
    }
    if (n > MAX_ANSWER_BYTES - x->answer_len) {
        x->answer_too_big = 1;
        return 0;
    }
    char *grown = realloc(x->answer, x->answer_len + n + 1);
    if (!grown) {
        x->answer_too_big = 1;
        return 0;
    }
    memcpy(grown + x->answer_len, data, n);
    x->answer = grown;
    x->answer_len += n;
    x->answer[x->answer_len] = '\0';
    return n;
}

/* Remembers the status of the final response before its body arrives, so on_body knows
 * whether the body is the file (200) or an error to keep. */
static size_t on_header(char *data, size_t size, size_t nmemb, void *userdata) {
    exchange *x = userdata;
    size_t n = size * nmemb;
    long status;
    if (n > 9 && memcmp(data, "HTTP/", 5) == 0 && sscanf(data, "HTTP/%*s %ld", &status) == 1)
        x->status = status;
    return n;
}

static size_t on_upload(char *buffer, size_t size, size_t nitems, void *userdata) {
    exchange *x = userdata;
    size_t room = size * nitems;
    if (!x->body_file) {
        size_t n = x->body_len - x->body_pos;
        if (n > room) n = room;
        if (n) memcpy(buffer, x->body_data + x->body_pos, n);
        x->body_pos += n;
        return n;
    }
    if (x->body_file_left <= 0) return 0;
    if ((curl_off_t)room > x->body_file_left) room = (size_t)x->body_file_left;
    size_t n = fread(buffer, 1, room, x->body_file);
    if (n == 0) {
        if (ferror(x->body_file))
            x->local_errno = errno ? errno : EIO;
        else
            x->local_shrank = 1;
        return CURL_READFUNC_ABORT;
    }
    x->body_file_left -= (curl_off_t)n;
    return n;
}

/* Rewinds the body when curl has to send it again (a connection lost before sending). */
static int on_seek(void *userdata, curl_off_t offset, int origin) {
    exchange *x = userdata;
    if (origin != SEEK_SET || offset < 0) return CURL_SEEKFUNC_CANTSEEK;
    if (!x->body_file) {
        if ((size_t)offset > x->body_len) return CURL_SEEKFUNC_FAIL;
        x->body_pos = (size_t)offset;
        return CURL_SEEKFUNC_OK;
    }
    if (offset > x->body_file_size || fseeko(x->body_file, (off_t)offset, SEEK_SET) != 0)
        return CURL_SEEKFUNC_FAIL;
    x->body_file_left = x->body_file_size - offset;
    return CURL_SEEKFUNC_OK;
}

/* How long a DataNode transfer may make no progress: the timeout in whole seconds, as
 * curl's low-speed limit counts them. */
static long stall_seconds(const webhdfs *w) {
    return (w->timeout_ms + 999) / 1000;
}

/* Writes the sentence for a request that got no complete HTTP answer. */
static void describe_transport_failure(webhdfs *w, const exchange *x, CURLcode code,
                                       const char *label, char *errstr, size_t errstr_size) {
    char where[LABEL_SIZE];
    char origin[ORIGIN_SIZE];
    if (x->to_datanode) {
        origin_of(x->url, origin, sizeof origin);
        snprintf(where, sizeof where, "the DataNode at %s", origin);
    } else {
        snprintf(where, sizeof where, "WebHDFS at %s", w->base_url);
    }
    const char *detail = w->curl_error[0] ? w->curl_error : curl_easy_strerror(code);
    long os_errno = 0;
    curl_off_t pretransfer_us = 0;
    curl_easy_getinfo(w->curl, CURLINFO_OS_ERRNO, &os_errno);
    curl_easy_getinfo(w->curl, CURLINFO_PRETRANSFER_TIME_T, &pretransfer_us);

    if (x->local_errno) {
        snprintf(errstr, errstr_size, "%s: cannot %s %s: %s", label,
                 x->body_file ? "read" : "write", x->local_path, strerror(x->local_errno));
    } else if (x->local_shrank) {
        snprintf(errstr, errstr_size, "%s: %s got shorter while it was being sent", label,
                 x->local_path);
    } else if (x->answer_too_big) {
        snprintf(errstr, errstr_size, "%s: %s sent an answer larger than %zu MiB", label, where,
                 MAX_ANSWER_BYTES >> 20);
    } else if (code == CURLE_COULDNT_CONNECT) {
        snprintf(errstr, errstr_size, "%s: cannot reach %s: %s", label, where,
                 os_errno ? strerror((int)os_errno) : detail);
    } else if (code == CURLE_COULDNT_RESOLVE_HOST) {
        snprintf(errstr, errstr_size, "%s: cannot reach %s: unknown host name", label, where);
    } else if (code == CURLE_OPERATION_TIMEDOUT && pretransfer_us == 0) {
        snprintf(errstr, errstr_size, "%s: cannot reach %s: no connection within %ld ms", label,
                 where, w->timeout_ms);
    } else if (code == CURLE_OPERATION_TIMEDOUT && x->to_datanode) {
        snprintf(errstr, errstr_size, "%s: the transfer with %s stalled (nothing moved for %ld s)",
                 label, where, stall_seconds(w));
    } else if (code == CURLE_OPERATION_TIMEDOUT) {
        snprintf(errstr, errstr_size, "%s: %s did not answer within %ld ms", label, where,
                 w->timeout_ms);
    } else {
        snprintf(errstr, errstr_size, "%s: talking to %s failed: %s", label, where, detail);
    }
}

/* Runs x. Returns 0 when a complete HTTP answer arrived (any status: x->status, x->answer,
 * x->location hold it), -1 with a sentence in errstr when none did. */
static int perform(webhdfs *w, exchange *x, const char *label, char *errstr,
                   size_t errstr_size) {
    CURL *curl = w->curl;
    struct curl_slist *headers = NULL;
    int is_put = strcmp(x->method, "PUT") == 0;

    curl_easy_reset(curl);
    w->curl_error[0] = '\0';
    curl_easy_setopt(curl, CURLOPT_URL, x->url);
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, w->curl_error);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    curl_easy_setopt(curl, CURLOPT_USERAGENT, "lootlog-webhdfs");
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, w->timeout_ms);
    if (x->to_datanode) {
        curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
        curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, stall_seconds(w));
    } else {
        curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, w->timeout_ms);
    }
    curl_easy_setopt(curl, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(curl, CURLOPT_HEADERDATA, x);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, x);
    if (is_put) {
        /* An upload even when empty, so Content-Length: 0 goes out. With a body, curl
         * sends Expect: 100-continue and the DataNode answers a refusal before the bytes. */
        curl_off_t size = x->body_file ? x->body_file_size : (curl_off_t)x->body_len;
        curl_easy_setopt(curl, CURLOPT_UPLOAD, 1L);
        curl_easy_setopt(curl, CURLOPT_INFILESIZE_LARGE, size);
        curl_easy_setopt(curl, CURLOPT_READFUNCTION, on_upload);
        curl_easy_setopt(curl, CURLOPT_READDATA, x);
        curl_easy_setopt(curl, CURLOPT_SEEKFUNCTION, on_seek);
        curl_easy_setopt(curl, CURLOPT_SEEKDATA, x);
        if (x->to_datanode) {
            headers = curl_slist_append(NULL, "Content-Type: application/octet-stream");
            if (!headers) {
                snprintf(errstr, errstr_size, "%s: out of memory", label);
                return -1;
            }
            curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
        }
    } else if (strcmp(x->method, "DELETE") == 0) {
        curl_easy_setopt(curl, CURLOPT_CUSTOMREQUEST, "DELETE");
    }

    x->status = 0;
    CURLcode code = curl_easy_perform(curl);
    curl_slist_free_all(headers);
    curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &x->status);
    if (code != CURLE_OK) {
        describe_transport_failure(w, x, code, label, errstr, errstr_size);
        return -1;
    }
    char *location = NULL;
    if (curl_easy_getinfo(curl, CURLINFO_REDIRECT_URL, &location) == CURLE_OK && location) {
        x->location = strdup(location);
        if (!x->location) {
            snprintf(errstr, errstr_size, "%s: out of memory", label);
            return -1;
        }
    }
    return 0;
}

/* Builds x->url for op on path at the NameNode (extra: more "&key=value", already encoded)
 * and runs x. Returns as perform(). */
static int namenode_call(webhdfs *w, exchange *x, const char *method, const char *op,
                         const char *path, const char *extra, const char *label, char *errstr,
                         size_t errstr_size) {
    char *encoded = encode_path(w->curl, path);
    if (encoded)
        x->url = str_printf("%s/webhdfs/v1%s?op=%s%s%s", w->base_url, encoded, op, extra,
                            w->user_query);
    free(encoded);
    if (!x->url) {
        snprintf(errstr, errstr_size, "%s: out of memory", label);
        return -1;
    }
    x->method = method;
    return perform(w, x, label, errstr, errstr_size);
}

/* Returns the answer parsed as a JSON object (the caller json_decref's it), or NULL with a
 * sentence in errstr. */
static json_t *answer_json(webhdfs *w, const exchange *x, const char *label, char *errstr,
                           size_t errstr_size) {
    json_t *root = x->answer ? json_loadb(x->answer, x->answer_len, 0, NULL) : NULL;
    if (!json_is_object(root)) {
        char snippet[121];
        one_line(x->answer ? x->answer : "", snippet, sizeof snippet);
        snprintf(errstr, errstr_size, "%s: WebHDFS at %s answered %ld with something that is not "
                 "a JSON object: \"%s\"", label, w->base_url, x->status, snippet);
        json_decref(root);
        return NULL;
    }
    return root;
}

/* Returns the exception name of a RemoteException answer ("FileNotFoundException") into
 * out (empty when the answer is not one), and its message's first line into message. */
static void remote_exception(const exchange *x, char *name, size_t name_size, char *message,
                             size_t message_size) {
    name[0] = message[0] = '\0';
    json_t *root = x->answer ? json_loadb(x->answer, x->answer_len, 0, NULL) : NULL;
    json_t *remote = json_object_get(root, "RemoteException");
    const char *exception = json_string_value(json_object_get(remote, "exception"));
    const char *text = json_string_value(json_object_get(remote, "message"));
    if (exception) {
        one_line(exception, name, name_size);
        /* DataNodes append the Java stack trace to the message: keep the first line. */
        if (text) {
            size_t first = strcspn(text, "\r\n");
            if (first + 1 < message_size) message_size = first + 1;
            one_line(text, message, message_size);
        }
    }
    json_decref(root);
}

/* Writes the sentence for an HTTP answer that is not the expected one: HDFS's
 * RemoteException when there is one ("HDFS refused (403 X: why)"), else the status. */
static void describe_refusal(webhdfs *w, const exchange *x, const char *label, char *errstr,
                             size_t errstr_size) {
    char exception[128];
    char message[LABEL_SIZE];
    char at[LABEL_SIZE] = "";
    char where[LABEL_SIZE];
    if (x->to_datanode) {
        char origin[ORIGIN_SIZE];
        origin_of(x->url, origin, sizeof origin);
        snprintf(at, sizeof at, " at the DataNode %s", origin);
        snprintf(where, sizeof where, "the DataNode at %s", origin);
    } else {
        snprintf(where, sizeof where, "WebHDFS at %s", w->base_url);
    }
    remote_exception(x, exception, sizeof exception, message, sizeof message);
    if (exception[0]) {
        snprintf(errstr, errstr_size, "%s: HDFS refused%s (%ld %s%s%s)", label, at, x->status,
                 exception, message[0] ? ": " : "", message);
    } else if (x->status == 404) {
        snprintf(errstr, errstr_size, "%s: %s answered 404 without a RemoteException; is that a "
                 "NameNode's HTTP address?", label, where);
    } else {
        char snippet[121];
        one_line(x->answer ? x->answer : "", snippet, sizeof snippet);
        snprintf(errstr, errstr_size, "%s: %s answered HTTP %ld without a RemoteException: \"%s\"",
                 label, where, x->status, snippet);
    }
}

/* 1 when x is a 404 whose RemoteException is a FileNotFoundException, else 0. */
static int is_not_found(const exchange *x) {
    char exception[128];
    char message[8];
    if (x->status != 404) return 0;
    remote_exception(x, exception, sizeof exception, message, sizeof message);
    return strcmp(exception, "FileNotFoundException") == 0;
}

/* Reads {"boolean": b} from a 200 answer into *value. Returns 0, or -1 with a sentence. */
static int answer_boolean(webhdfs *w, const exchange *x, int *value, const char *label,
                          char *errstr, size_t errstr_size) {
    json_t *root = answer_json(w, x, label, errstr, errstr_size);
    if (!root) return -1;
    json_t *b = json_object_get(root, "boolean");
    int ok = json_is_boolean(b);
    if (ok) *value = json_is_true(b);
    else
        snprintf(errstr, errstr_size, "%s: WebHDFS at %s answered without a \"boolean\"", label,
                 w->base_url);
    json_decref(root);
    return ok ? 0 : -1;
}

/* Fills *entry from a FileStatus object. Returns 0, or -1 with a sentence. */
static int read_file_status(json_t *status, webhdfs_entry *entry, const char *label,
                            char *errstr, size_t errstr_size) {
    const char *name = json_string_value(json_object_get(status, "pathSuffix"));
    const char *type = json_string_value(json_object_get(status, "type"));
    json_t *length = json_object_get(status, "length");
    json_t *mtime = json_object_get(status, "modificationTime");
    if (!name || !type || !json_is_integer(length) || !json_is_integer(mtime)) {
        snprintf(errstr, errstr_size, "%s: a FileStatus lacks pathSuffix, type, length or "
                 "modificationTime", label);
        return -1;
    }
    if (strlen(name) >= sizeof entry->name) {
        snprintf(errstr, errstr_size, "%s: the name \"%.40s...\" is longer than %zu bytes", label,
                 name, sizeof entry->name - 1);
        return -1;
    }
    memset(entry, 0, sizeof *entry);
    strcpy(entry->name, name);
    entry->is_dir = strcmp(type, "DIRECTORY") == 0;
    entry->length = json_integer_value(length);
    entry->modification_time_ms = json_integer_value(mtime);
    return 0;
}

/* Writes "OP path" into label; returns 0, or -1 with a sentence when path is not absolute. */
static int make_label(char *label, const char *op, const char *path, char *errstr,
                      size_t errstr_size) {
    snprintf(label, LABEL_SIZE, "%s %s", op, path ? path : "(null)");
    if (!path || path[0] != '/') {
        snprintf(errstr, errstr_size, "%s: HDFS paths must be absolute (start with '/')", label);
        return -1;
    }
    return 0;
}

/* ---- the client ------------------------------------------------------------------------- */

webhdfs *webhdfs_new(const char *base_url, const char *user, long timeout_ms, char *errstr,
                     size_t errstr_size) {
    webhdfs *w = NULL;
    CURLU *url = NULL;
    char *scheme = NULL, *host = NULL, *port = NULL, *path = NULL, *query = NULL, *login = NULL;
    char *escaped_user = NULL;

    if (timeout_ms <= 0) {
        snprintf(errstr, errstr_size, "WebHDFS timeout must be positive, got %ld ms", timeout_ms);
        goto fail;
    }
    w = calloc(1, sizeof *w);
    url = curl_url();
    if (!w || !url) {
        snprintf(errstr, errstr_size, "out of memory");
        goto fail;
    }
    w->timeout_ms = timeout_ms;
    if (!base_url ||
        curl_url_set(url, CURLUPART_URL, base_url, CURLU_NON_SUPPORT_SCHEME) != CURLUE_OK ||
        curl_url_get(url, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
        curl_url_get(url, CURLUPART_HOST, &host, 0) != CURLUE_OK) {
        snprintf(errstr, errstr_size, "WebHDFS address \"%s\" is not a URL like "
                 "http://127.0.0.1:9870", base_url ? base_url : "(null)");
        goto fail;
    }
    curl_url_get(url, CURLUPART_PORT, &port, 0);
    curl_url_get(url, CURLUPART_PATH, &path, 0);
    curl_url_get(url, CURLUPART_QUERY, &query, 0);
    curl_url_get(url, CURLUPART_USER, &login, 0);
    const char *http_scheme = NULL;
    const char *default_port = NULL;
    if (strcmp(scheme, "http") == 0 || strcmp(scheme, "https") == 0) {
        http_scheme = scheme;
    } else if (strcmp(scheme, "webhdfs") == 0) {
        http_scheme = "http";
        default_port = "9870";
    } else if (strcmp(scheme, "swebhdfs") == 0) {
        http_scheme = "https";
        default_port = "9871";
    }
    if (!http_scheme || query || login) {
        snprintf(errstr, errstr_size, "WebHDFS address \"%s\" must be http://, https://, "
                 "webhdfs:// or swebhdfs://host:port with no user or query", base_url);
        goto fail;
    }
    /* Keep a path prefix (a gateway's), minus trailing slashes and "/webhdfs/v1". */
    size_t path_len = path ? strlen(path) : 0;
    while (path_len > 0 && path[path_len - 1] == '/') path_len--;
    if (path_len >= 11 && memcmp(path + path_len - 11, "/webhdfs/v1", 11) == 0) path_len -= 11;
    const char *port_text = port ? port : default_port;
    w->base_url = str_printf("%s://%s%s%s%.*s", http_scheme, host, port_text ? ":" : "",
                             port_text ? port_text : "", (int)path_len, path ? path : "");
    w->curl = curl_easy_init();
    if (user && user[0]) escaped_user = curl_easy_escape(w->curl, user, 0);
    w->user_query = user && user[0] ? str_printf("&user.name=%s", escaped_user ? escaped_user : "")
                                    : strdup("");
    if (!w->base_url || !w->curl || !w->user_query || (user && user[0] && !escaped_user)) {
        snprintf(errstr, errstr_size, "cannot set up a curl handle for WebHDFS (out of memory, "
                 "or curl_global_init was not called)");
        goto fail;
    }
    curl_free(escaped_user);
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_url_cleanup(url);
    return w;

fail:
    curl_free(escaped_user);
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    curl_free(login);
    curl_url_cleanup(url);
    webhdfs_free(w);
    return NULL;
}

void webhdfs_free(webhdfs *w) {
    if (!w) return;
    if (w->curl) curl_easy_cleanup(w->curl);
    free(w->base_url);
    free(w->user_query);
    free(w);
}

int webhdfs_mkdirs(webhdfs *w, const char *path, char *errstr, size_t errstr_size) {
    char label[LABEL_SIZE];
    exchange x = {0};
    int created = 0;
    int rc = -1;
    if (make_label(label, "MKDIRS", path, errstr, errstr_size) != 0) goto fail;
    if (namenode_call(w, &x, "PUT", "MKDIRS", path, "", label, errstr, errstr_size) != 0)
        goto fail;
    if (x.status != 200) {
        describe_refusal(w, &x, label, errstr, errstr_size);
        goto fail;
    }
    if (answer_boolean(w, &x, &created, label, errstr, errstr_size) != 0) goto fail;
    if (!created) {
        snprintf(errstr, errstr_size, "%s: HDFS answered false (the folder was not created)",
                 label);
        goto fail;
    }
    rc = 0;
fail:
    exchange_free(&x);
    return rc;
}

/* Step one of CREATE and OPEN: asks the NameNode which DataNode serves path. Returns 0 and
 * the malloc'ed redirect target in *location (the caller frees it), or -1 with a sentence. */
static int ask_for_datanode(webhdfs *w, const char *method, const char *op, const char *path,
                            const char *extra, char **location, const char *label,
                            char *errstr, size_t errstr_size) {
    exchange ask = {0};
    int rc = -1;
    *location = NULL;
    if (namenode_call(w, &ask, method, op, path, extra, label, errstr, errstr_size) != 0)
        goto fail;
    if (ask.status >= 400) {
        describe_refusal(w, &ask, label, errstr, errstr_size);
        goto fail;
    }
    if (ask.status != 307) {
        snprintf(errstr, errstr_size, "%s: WebHDFS at %s answered %ld instead of a 307 redirect "
                 "to a DataNode", label, w->base_url, ask.status);
        goto fail;
    }
    if (!ask.location) {
        snprintf(errstr, errstr_size, "%s: WebHDFS at %s redirected (307) without a Location "
                 "header", label, w->base_url);
        goto fail;
    }
    *location = ask.location;
    ask.location = NULL;
    rc = 0;
fail:
    exchange_free(&ask);
    return rc;
}

/* The two steps of CREATE: ask the NameNode where to write, then PUT data's body (set up
 * in data by the caller) to that DataNode. Returns 0, or -1 with a sentence. */
static int create_with(webhdfs *w, const char *hdfs_path, exchange *data, int overwrite,
                       const char *label, char *errstr, size_t errstr_size) {
    const char *extra = overwrite ? "&overwrite=true" : "&overwrite=false";
    if (ask_for_datanode(w, "PUT", "CREATE", hdfs_path, extra, &data->url, label, errstr,
                         errstr_size) != 0)
        return -1;
    data->method = "PUT";
    data->to_datanode = 1;
    if (perform(w, data, label, errstr, errstr_size) != 0) return -1;
    if (data->status != 201 && data->status != 200) {
        describe_refusal(w, data, label, errstr, errstr_size);
        return -1;
    }
    return 0;
}

int webhdfs_create_from_file(webhdfs *w, const char *hdfs_path, const char *local_path,
                             int overwrite, char *errstr, size_t errstr_size) {
    char label[LABEL_SIZE];
    exchange data = {0};
    FILE *file = NULL;
    struct stat st;
    int rc = -1;
    if (make_label(label, "CREATE", hdfs_path, errstr, errstr_size) != 0) goto fail;
    file = fopen(local_path, "rb");
    if (!file || fstat(fileno(file), &st) != 0) {
        snprintf(errstr, errstr_size, "%s: cannot open %s: %s", label, local_path,
                 strerror(errno));
        goto fail;
    }
    if (!S_ISREG(st.st_mode)) {
        snprintf(errstr, errstr_size, "%s: %s is not a regular file", label, local_path);
        goto fail;
    }
    data.body_file = file;
    data.body_file_size = data.body_file_left = (curl_off_t)st.st_size;
    data.local_path = local_path;
    rc = create_with(w, hdfs_path, &data, overwrite, label, errstr, errstr_size);
fail:
    exchange_free(&data);
    if (file) fclose(file);
    return rc;
}

int webhdfs_create_from_buffer(webhdfs *w, const char *hdfs_path, const void *data, size_t len,
                               int overwrite, char *errstr, size_t errstr_size) {
    char label[LABEL_SIZE];
    exchange body = {0};
    int rc = -1;
    if (make_label(label, "CREATE", hdfs_path, errstr, errstr_size) != 0) goto fail;
    if (!data && len) {
        snprintf(errstr, errstr_size, "%s: no data for %zu bytes", label, len);
        goto fail;
    }
    body.body_data = len ? data : "";
    body.body_len = len;
    rc = create_with(w, hdfs_path, &body, overwrite, label, errstr, errstr_size);
fail:
    exchange_free(&body);
    return rc;
}

/* Explains why HDFS answered {"boolean":false} to RENAME from to, looking both up. */
static void explain_failed_rename(webhdfs *w, const char *from, const char *to,
                                  const char *label, char *errstr, size_t errstr_size) {
    char lookup_error[LABEL_SIZE];
    webhdfs_entry target = {0};
    const char *why = "HDFS answered false";
    char parent[LABEL_SIZE];
    const char *slash = strrchr(to, '/');
    snprintf(parent, sizeof parent, "%.*s", slash == to ? 1 : (int)(slash - to), to);

    int source = webhdfs_status(w, from, NULL, lookup_error, sizeof lookup_error);
    int destination = source == 1 ? webhdfs_status(w, to, &target, lookup_error,
                                                   sizeof lookup_error) : -1;
    int destination_parent = destination == 0 ? webhdfs_status(w, parent, NULL, lookup_error,
                                                               sizeof lookup_error) : -1;
    if (source == 0)
        why = "the source does not exist";
    else if (destination == 1 && !target.is_dir)
        why = "the destination already exists";
    else if (destination == 1)
        why = "the destination is a folder that already holds that name, or lies inside the "
              "source";
    else if (destination_parent == 0)
        why = "the destination's parent folder does not exist";
    else if (source == 1 && destination == 0 && strncmp(to, from, strlen(from)) == 0)
        why = "the destination lies inside the source";
    snprintf(errstr, errstr_size, "%s: HDFS did not rename: %s", label, why);
}

/* The label "RENAME from to to" for both renames. */
static int rename_label(char *label, const char *from, const char *to, char *errstr,
                        size_t errstr_size) {
    if (make_label(label, "RENAME", from, errstr, errstr_size) != 0) return -1;
    snprintf(label, LABEL_SIZE, "RENAME %s to %s", from, to ? to : "(null)");
    if (!to || to[0] != '/') {
        snprintf(errstr, errstr_size, "%s: HDFS paths must be absolute (start with '/')", label);
        return -1;
    }
    return 0;
}

/* Runs op=RENAME with extra query text after the destination. */
static int rename_call(webhdfs *w, exchange *x, const char *from, const char *to,
                       const char *options, const char *label, char *errstr,
                       size_t errstr_size) {
    char *encoded_to = encode_path(w->curl, to);
    char *extra = encoded_to ? str_printf("&destination=%s%s", encoded_to, options) : NULL;
    int rc = -1;
    if (!extra)
        snprintf(errstr, errstr_size, "%s: out of memory", label);
    else
        rc = namenode_call(w, x, "PUT", "RENAME", from, extra, label, errstr, errstr_size);
    free(encoded_to);
    free(extra);
    return rc;
}

int webhdfs_rename(webhdfs *w, const char *from, const char *to, char *errstr,
                   size_t errstr_size) {
    char label[LABEL_SIZE];
    exchange x = {0};
    int renamed = 0;
    int rc = -1;
    if (rename_label(label, from, to, errstr, errstr_size) != 0) goto fail;
    if (rename_call(w, &x, from, to, "", label, errstr, errstr_size) != 0) goto fail;
    if (x.status != 200) {
        describe_refusal(w, &x, label, errstr, errstr_size);
        goto fail;
    }
    if (answer_boolean(w, &x, &renamed, label, errstr, errstr_size) != 0) goto fail;
    if (!renamed) {
        explain_failed_rename(w, from, to, label, errstr, errstr_size);
        goto fail;
    }
    rc = 0;
fail:
    exchange_free(&x);
    return rc;
}

int webhdfs_rename_strict(webhdfs *w, const char *from, const char *to, int overwrite,
                          char *errstr, size_t errstr_size) {
    char label[LABEL_SIZE];
    exchange x = {0};
    int rc = -1;
    if (rename_label(label, from, to, errstr, errstr_size) != 0) goto fail;
    const char *options = overwrite ? "&renameoptions=OVERWRITE" : "&renameoptions=NONE";
    if (rename_call(w, &x, from, to, options, label, errstr, errstr_size) != 0) goto fail;
    if (x.status != 200) {
        describe_refusal(w, &x, label, errstr, errstr_size);
        goto fail;
    }
    rc = 0;
fail:
    exchange_free(&x);
    return rc;
}

int webhdfs_delete(webhdfs *w, const char *path, int recursive, char *errstr,
                   size_t errstr_size) {
    char label[LABEL_SIZE];
    exchange x = {0};
    int deleted = 0;
    int rc = -1;
    if (make_label(label, "DELETE", path, errstr, errstr_size) != 0) goto fail;
    const char *extra = recursive ? "&recursive=true" : "&recursive=false";
    if (namenode_call(w, &x, "DELETE", "DELETE", path, extra, label, errstr, errstr_size) != 0)
        goto fail;
    if (x.status != 200) {
        describe_refusal(w, &x, label, errstr, errstr_size);
        goto fail;
    }
    /* false means there was nothing to delete: what the caller wanted. */
    if (answer_boolean(w, &x, &deleted, label, errstr, errstr_size) != 0) goto fail;
    rc = 0;
fail:
    exchange_free(&x);
    return rc;
}

/* A read-only NameNode call answered with JSON (LISTSTATUS, GETFILESTATUS): runs it and
 * parses the answer into *root (caller decrefs). Returns 1 with *root, 0 when HDFS says
 * the path does not exist, -1 with errstr on any other failure. */
static int namenode_read_json(webhdfs *w, exchange *x, const char *op, const char *path,
                              const char *label, json_t **root, char *errstr,
                              size_t errstr_size) {
    *root = NULL;
    if (namenode_call(w, x, "GET", op, path, "", label, errstr, errstr_size) != 0) return -1;
    if (is_not_found(x)) return 0;
    if (x->status != 200) {
        describe_refusal(w, x, label, errstr, errstr_size);
        return -1;
    }
    *root = answer_json(w, x, label, errstr, errstr_size);
    return *root ? 1 : -1;
}

int webhdfs_list(webhdfs *w, const char *path, webhdfs_entry **entries, size_t *count,
                 int *missing, char *errstr, size_t errstr_size) {
    char label[LABEL_SIZE];
    exchange x = {0};
    json_t *root = NULL;
    webhdfs_entry *list = NULL;
    int rc = -1;
    *entries = NULL;
    *count = 0;
    if (missing) *missing = 0;
    if (make_label(label, "LISTSTATUS", path, errstr, errstr_size) != 0) goto fail;
    int found = namenode_read_json(w, &x, "LISTSTATUS", path, label, &root, errstr, errstr_size);
    if (found < 0) goto fail;
    if (found == 0) {
        snprintf(errstr, errstr_size, "%s: the folder does not exist", label);
        if (missing) *missing = 1;
        goto fail;
    }
    json_t *statuses = json_object_get(json_object_get(root, "FileStatuses"), "FileStatus");
    if (!json_is_array(statuses)) {
        snprintf(errstr, errstr_size, "%s: WebHDFS at %s answered without FileStatuses.FileStatus",
                 label, w->base_url);
        goto fail;
    }
    size_t n = json_array_size(statuses);
    if (n > 0) {
        list = calloc(n, sizeof *list);
        if (!list) {
            snprintf(errstr, errstr_size, "%s: out of memory for %zu entries", label, n);
            goto fail;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (read_file_status(json_array_get(statuses, i), &list[i], label, errstr,
                             errstr_size) != 0)
            goto fail;
    }
    *entries = list;
    *count = n;
    list = NULL;
    rc = 0;
fail:
    free(list);
    json_decref(root);
    exchange_free(&x);
    return rc;
}

int webhdfs_status(webhdfs *w, const char *path, webhdfs_entry *entry, char *errstr,
                   size_t errstr_size) {
    char label[LABEL_SIZE];
    exchange x = {0};
    json_t *root = NULL;
    webhdfs_entry found;
    int rc = -1;
    if (make_label(label, "GETFILESTATUS", path, errstr, errstr_size) != 0) goto fail;
    rc = namenode_read_json(w, &x, "GETFILESTATUS", path, label, &root, errstr, errstr_size);
    if (rc <= 0) goto fail;
    rc = -1;
    if (read_file_status(json_object_get(root, "FileStatus"), &found, label, errstr,
                         errstr_size) != 0)
        goto fail;
    if (entry) *entry = found;
    rc = 1;
fail:
    json_decref(root);
    exchange_free(&x);
    return rc;
}

int webhdfs_open_to_file(webhdfs *w, const char *hdfs_path, const char *local_path,
                         char *errstr, size_t errstr_size) {
    char label[LABEL_SIZE];
    exchange data = {0};
    FILE *file = NULL;
    int rc = -1;
    if (make_label(label, "OPEN", hdfs_path, errstr, errstr_size) != 0) goto fail;
    if (ask_for_datanode(w, "GET", "OPEN", hdfs_path, "", &data.url, label, errstr,
                         errstr_size) != 0)
        goto fail;
    file = fopen(local_path, "wb");
    if (!file) {
        snprintf(errstr, errstr_size, "%s: cannot create %s: %s", label, local_path,
                 strerror(errno));
        goto fail;
    }
    data.method = "GET";
    data.to_datanode = 1;
    data.sink_file = file;
    data.local_path = local_path;
    if (perform(w, &data, label, errstr, errstr_size) != 0) goto fail;
    if (data.status != 200) {
        describe_refusal(w, &data, label, errstr, errstr_size);
        goto fail;
    }
    FILE *closing = file;
    file = NULL;
    if (fclose(closing) != 0) {
        snprintf(errstr, errstr_size, "%s: cannot write %s: %s", label, local_path,
                 strerror(errno));
        goto fail;
    }
    rc = 0;
fail:
    if (file) fclose(file);
    if (rc != 0 && data.sink_file) unlink(local_path);
    exchange_free(&data);
    return rc;
}
