/* log: builds each line in a buffer of its own and writes it with one fwrite, so lines
 * of different threads (fold threads, librdkafka's, the loop) never interleave. */
#include "lib/log.h"
#include "lib/clock.h"


#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <string.h>

#define LINE_MAX_BYTES 8192
#define MESSAGE_MAX_BYTES 2048
#define LINE_RESERVE 8 /* room always kept for closing a string and the object: "}\n */

/* The one setting of the logger: written once at start-up, read by every thread. */
static atomic_int current_format = LOG_FORMAT_TEXT;

void log_set_format(log_format format) { atomic_store(&current_format, (int)format); }

typedef struct {
    char bytes[LINE_MAX_BYTES];
    size_t len;
    int json;
} line;

/* Appends n bytes if they fit before the reserve; returns 0, or -1 (nothing appended). */
static int append(line *out, const char *bytes, size_t n) {
    if (out->len + n + LINE_RESERVE > sizeof out->bytes) return -1;
    memcpy(out->bytes + out->len, bytes, n);
    out->len += n;
    return 0;
}

static int append_str(line *out, const char *text) { return append(out, text, strlen(text)); }

/* Appends one byte into the reserve: closing quotes, the closing brace, the newline. */
static void append_closing(line *out, char c) { out->bytes[out->len++] = c; }

/* The length of the valid UTF-8 sequence at s (1..4), or 0 when s[0] starts none. */
static size_t utf8_sequence(const unsigned char *s, size_t left) {
    size_t n;
    unsigned char lo = 0x80, hi = 0xBF; /* the range of the second byte */
    if (s[0] < 0x80) return 1;
    if (s[0] >= 0xC2 && s[0] <= 0xDF) n = 2;
    else if (s[0] >= 0xE0 && s[0] <= 0xEF) n = 3;
    else if (s[0] >= 0xF0 && s[0] <= 0xF4) n = 4;
    else return 0;
    if (s[0] == 0xE0) lo = 0xA0;      /* overlong */
    else if (s[0] == 0xED) hi = 0x9F; /* UTF-16 surrogates */
    else if (s[0] == 0xF0) lo = 0x90; /* overlong */
    else if (s[0] == 0xF4) hi = 0x8F; /* beyond U+10FFFF */
    if (left < n || s[1] < lo || s[1] > hi) return 0;
    for (size_t i = 2; i < n; i++)
        if (s[i] < 0x80 || s[i] > 0xBF) return 0;
    return n;
}

/* Appends text escaped for the line's format (inside a JSON string, or a text line):
 * control characters, quotes and backslashes escaped, invalid UTF-8 replaced. Stops at
 * a whole character when the line is full. */
static void append_escaped(line *out, const char *text) {
    const unsigned char *s = (const unsigned char *)text;
    size_t left = strlen(text);
    while (left > 0) {
        char esc[16];
        size_t n = utf8_sequence(s, left);
        int rc;
        if (n > 1) {
            rc = append(out, (const char *)s, n);
        } else if (n == 0) {
            if (out->json) snprintf(esc, sizeof esc, "\\ufffd");
            else snprintf(esc, sizeof esc, "\\x%02x", s[0]);
            rc = append(out, esc, strlen(esc));
            n = 1;
        } else if (s[0] == '"' || s[0] == '\\') {
            esc[0] = '\\';
            esc[1] = (char)s[0];
            rc = append(out, esc, 2);
        } else if (s[0] == '\n' || s[0] == '\r' || s[0] == '\t') {
            esc[0] = '\\';
            esc[1] = s[0] == '\n' ? 'n' : s[0] == '\r' ? 'r' : 't';
            rc = append(out, esc, 2);
        } else if (s[0] < 0x20 || s[0] == 0x7f) {
            snprintf(esc, sizeof esc, out->json ? "\\u%04x" : "\\x%02x", s[0]);
            rc = append(out, esc, strlen(esc));
        } else {
            rc = append(out, (const char *)s, 1);
        }
        if (rc) return;
        s += n;
        left -= n;
    }
}

/* A text-format value: bare when it is one word, else in quotes. */
static void append_text_value(line *out, const char *value) {
    int bare = value[0] != '\0';
    for (const char *p = value; *p && bare; p++)
        if (*p == ' ' || *p == '"' || *p == '=' || (unsigned char)*p < 0x20) bare = 0;
    if (!bare && append_str(out, "\"")) return;
    append_escaped(out, value);
    if (!bare) append_closing(out, '"');
}

static const char *level_name(log_level level) {
    switch (level) {
    case LOG_DEBUG: return "debug";
    case LOG_INFO: return "info";
    case LOG_WARN: return "warn";
    case LOG_ERROR: return "error";
    }
    return "info";
}

static void log_line(log_level level, const char *module, const log_field *fields,
                     size_t field_count, const char *fmt, va_list ap) {
    char ts[32], message[MESSAGE_MAX_BYTES], number[32];
    line out;
    out.len = 0;
    out.json = atomic_load(&current_format) == LOG_FORMAT_JSON;
    clock_iso8601_now(ts, sizeof ts);
    vsnprintf(message, sizeof message, fmt, ap);
    if (out.json) {
        append_str(&out, "{\"ts\":\"");
        append_str(&out, ts);
        append_str(&out, "\",\"level\":\"");
        append_str(&out, level_name(level));
        append_str(&out, "\",\"module\":\"");
        append_escaped(&out, module);
        append_str(&out, "\",\"msg\":\"");
        append_escaped(&out, message);
        append_closing(&out, '"');
    } else {
        append_str(&out, ts);
        append_str(&out, " ");
        append_str(&out, level_name(level));
        append_str(&out, " ");
        append_escaped(&out, module);
        append_str(&out, ": ");
        append_escaped(&out, message);
    }
    for (size_t i = 0; i < field_count; i++) {
        const log_field *f = &fields[i];
        size_t mark = out.len;
        snprintf(number, sizeof number, "%lld", (long long)f->number);
        /* A field's key whole or not at all, and a value cut at a whole character, so a
         * full line stays well-formed. */
        if (append(&out, out.json ? ",\"" : " ", out.json ? 2 : 1) ||
            append(&out, f->key, strlen(f->key)) ||
            append(&out, out.json ? "\":" : "=", out.json ? 2 : 1)) {
            out.len = mark;
            break;
        }
        if (!f->is_text) {
            if (append(&out, number, strlen(number))) out.len = mark;
        } else if (out.json) {
            if (append(&out, "\"", 1)) {
                out.len = mark;
                break;
            }
            append_escaped(&out, f->text ? f->text : "");
            append_closing(&out, '"');
        } else {
            append_text_value(&out, f->text ? f->text : "");
        }
    }
    if (out.json) append_closing(&out, '}');
    append_closing(&out, '\n');
    fwrite(out.bytes, 1, out.len, stderr);
}

void log_with(log_level level, const char *module, const log_field *fields, size_t field_count,
              const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    log_line(level, module, fields, field_count, fmt, ap);
    va_end(ap);
}

#define LOG_AT(name, level)                                                                   \
    void name(const char *module, const char *fmt, ...) {                                     \
        va_list ap;                                                                           \
        va_start(ap, fmt);                                                                    \
        log_line(level, module, NULL, 0, fmt, ap);                                            \
        va_end(ap);                                                                           \
    }

LOG_AT(log_info, LOG_INFO)
LOG_AT(log_warn, LOG_WARN)
LOG_AT(log_error, LOG_ERROR)
