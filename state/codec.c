/* codec: event struct <-> JSON. The decoder is the gate between the topic and the fold:
 * anything it refuses is dead-lettered, so it checks every field the fold relies on. */
#include "state/codec.h"

#include "lib/json_text.h"

#include <openssl/evp.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

static const char *const type_names[EVENT_TYPE_COUNT] = {
    [EVENT_DEFAULT] = "default",
    [EVENT_PURCHASE_SWORD] = "purchase_sword",
    [EVENT_PURCHASE_ITEM] = "purchase_item",
    [EVENT_CONSUME_ITEM] = "consume_item",
    [EVENT_JOIN_GUILD] = "join_guild",
    [EVENT_LEAVE_GUILD] = "leave_guild",
    [EVENT_GUILD_JOIN_REQUESTED] = "guild_join_requested",
    [EVENT_GUILD_JOIN_DECIDED] = "guild_join_decided",
    [EVENT_GUILD_LEAVE_REQUESTED] = "guild_leave_requested",
};

int codec_type_is_emitted(event_type type) {
    return type == EVENT_GUILD_JOIN_REQUESTED || type == EVENT_GUILD_JOIN_DECIDED ||
           type == EVENT_GUILD_LEAVE_REQUESTED;
}

const char *codec_event_key(const event *ev) {
    return ev->type == EVENT_GUILD_JOIN_REQUESTED || ev->type == EVENT_GUILD_LEAVE_REQUESTED
               ? ev->guild_id
               : ev->user_id;
}

/* Writes 16 bytes as a UUID's 36 characters and a NUL into buf. By hand: snprintf's 16
 * conversions were a tenth of `gen`'s time per event. */
static void format_uuid(const unsigned char b[16], char *buf) {
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        *buf++ = hex[b[i] >> 4];
        *buf++ = hex[b[i] & 15];
        if (i == 3 || i == 5 || i == 7 || i == 9) *buf++ = '-';
    }
    *buf = '\0';
}

int codec_derived_event_id(const char *cause_event_id, event_type type, char *buf,
                           size_t buf_size) {
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    char input[CODEC_ID_MAX + 64];
    const char *type_name = codec_type_name(type);
    if (buf_size < 37 || !type_name) return -1;
    int n = snprintf(input, sizeof input, "%s/%s", cause_event_id, type_name);
    if (n < 0 || (size_t)n >= sizeof input ||
        !EVP_Digest(input, (size_t)n, digest, &digest_len, EVP_sha256(), NULL) || digest_len < 16)
        return -1;
    digest[6] = (unsigned char)((digest[6] & 0x0f) | 0x80); /* version 8: custom */
    digest[8] = (unsigned char)((digest[8] & 0x3f) | 0x80); /* RFC variant */
    format_uuid(digest, buf);
    return 0;
}

const char *codec_type_name(event_type type) {
    if ((int)type < 0 || type >= EVENT_TYPE_COUNT) return NULL;
    return type_names[type];
}

int codec_type_parse(const char *name, event_type *type) {
    for (int i = 0; i < EVENT_TYPE_COUNT; i++) {
        if (name[0] == type_names[i][0] && strcmp(name, type_names[i]) == 0) {
            *type = (event_type)i;
            return 0;
        }
    }
    return -1;
}

/* The identifier characters [A-Za-z0-9_.-], one table lookup per character. Two 64-bit
 * masks chosen by c < 64 cost a mispredicted branch on most characters of a UUID
 * (digits and letters at random): perf put that at 3 % of replay, every event checking
 * three or four identifiers. */
static const unsigned char identifier_char[256] = {
    ['-'] = 1, ['.'] = 1, ['0' ... '9'] = 1, ['A' ... 'Z'] = 1, ['_'] = 1, ['a' ... 'z'] = 1,
};

int codec_identifier_ok(const char *s) {
    size_t n = 0;
    while (identifier_char[(unsigned char)s[n]]) n++; /* the NUL is no identifier char */
    return n > 0 && n <= CODEC_ID_MAX && s[n] == '\0';
}

/* Length of the valid UTF-8 sequence at s (1..4), or 0 when it is not one. */
static size_t utf8_sequence(const unsigned char *s) {
    size_t len;
    uint32_t cp;
    if (s[0] < 0x80) return 1;
    if ((s[0] & 0xE0) == 0xC0) len = 2, cp = s[0] & 0x1F;
    else if ((s[0] & 0xF0) == 0xE0) len = 3, cp = s[0] & 0x0F;
    else if ((s[0] & 0xF8) == 0xF0) len = 4, cp = s[0] & 0x07;
    else return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        cp = (cp << 6) | (s[i] & 0x3F);
    }
    static const uint32_t min_for_len[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (cp < min_for_len[len] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return 0;
    return len;
}

/* As utf8_sequence, for a buffer with avail bytes left (no NUL terminator needed). */
static size_t utf8_sequence_bounded(const unsigned char *s, size_t avail) {
    size_t need = s[0] < 0x80            ? 1
                  : (s[0] & 0xE0) == 0xC0 ? 2
                  : (s[0] & 0xF0) == 0xE0 ? 3
                  : (s[0] & 0xF8) == 0xF0 ? 4
                                          : 0;
    if (need == 0 || need > avail) return 0;
    return utf8_sequence(s);
}

void codec_copy_utf8(char *dst, size_t dst_size, const char *src) {
    size_t used = 0;
    const unsigned char *p = (const unsigned char *)src;
    while (*p) {
        size_t n = utf8_sequence(p);
        if (n == 0) {
            if (used + 1 >= dst_size) break;
            dst[used++] = '?';
            p++;
            continue;
        }
        if (used + n >= dst_size) break;
        memcpy(dst + used, p, n);
        used += n;
        p += n;
    }
    dst[used] = '\0';
}

int codec_uuid4(char *buf, size_t buf_size) {
    unsigned char b[16];
    if (buf_size < 37 || getrandom(b, sizeof b, 0) != (ssize_t)sizeof b) return -1;
    b[6] = (unsigned char)((b[6] & 0x0f) | 0x40);
    b[8] = (unsigned char)((b[8] & 0x3f) | 0x80);
    format_uuid(b, buf);
    return 0;
}

/* ---------------------------------------------------------------- encoding
 * A direct writer in place of building a jansson tree and dumping it: every HTTP write,
 * every `gen` record and every event the fold emits is encoded here once, and the tree
 * (an allocation per field, a hash table per object, then a walk to dump it) cost more
 * than the rest of `gen`'s work per event (docs/benchmarks.md, "Encoding an event").
 * Its output is byte for byte jansson's compact, order-preserving dump of the same
 * fields (tests/unit/test_codec.c holds the two side by side on random events). */

/* The JSON goes into a buffer on the stack first (an event is ~400 bytes; the largest
 * possible one spills to the heap), then into one allocation of its exact size: the
 * caller may hand it to librdkafka, which holds it until the broker has it. */
#define WRITER_STACK_BYTES 2048

typedef struct {
    char *buf;
    size_t used, cap;
    int on_heap, out_of_memory;
} json_writer;

/* Makes room for more bytes (and a NUL). 0, or -1 when out of memory (then sticky). */
static int writer_reserve(json_writer *w, size_t more) {
    if (w->out_of_memory) return -1;
    if (w->used + more + 1 <= w->cap) return 0;
    size_t cap = w->cap * 2;
    while (cap < w->used + more + 1) cap *= 2;
    char *bigger = w->on_heap ? realloc(w->buf, cap) : malloc(cap);
    if (!bigger) {
        w->out_of_memory = 1;
        return -1;
    }
    if (!w->on_heap) memcpy(bigger, w->buf, w->used);
    w->buf = bigger;
    w->cap = cap;
    w->on_heap = 1;
    return 0;
}

static void write_bytes(json_writer *w, const char *bytes, size_t n) {
    if (writer_reserve(w, n)) return;
    memcpy(w->buf + w->used, bytes, n);
    w->used += n;
}

#define WRITE_LITERAL(w, text) write_bytes((w), (text), sizeof(text) - 1)

/* How every message codec_encode writes begins, up to the version's value, and what
 * follows that value; codec_peek_event_id looks for them. */
#define ENCODED_HEAD "{\"v\":"
#define ENCODED_EVENT_ID ",\"event_id\":"

static void write_int(json_writer *w, int64_t value) {
    char digits[JSON_TEXT_INT_MAX];
    write_bytes(w, digits, json_text_int(value, digits));
}

/* A JSON string of value, escaped as jansson escapes: '"', '\\' and the control
 * characters, the usual five by name and the others as \u00XX; everything else as it is.
 * Returns -1 when value is not valid UTF-8 (jansson refuses such a string). */
static int write_string(json_writer *w, const char *value) {
    size_t len = strlen(value);
    if (writer_reserve(w, len * 6 + 2)) return 0; /* out of memory: the caller sees it */
    char *out = w->buf + w->used;
    const unsigned char *p = (const unsigned char *)value, *end = p + len;
    *out++ = '"';
    while (p < end) {
        unsigned char c = *p;
        if (c >= 0x80) {
            size_t n = utf8_sequence(p);
            if (n == 0) return -1;
            memcpy(out, p, n);
            out += n;
            p += n;
            continue;
        }
        p++;
        if (json_text_plain(c)) *out++ = (char)c;
        else out += json_text_escape(c, out);
    }
    *out++ = '"';
    w->used = (size_t)(out - w->buf);
    return 0;
}

/* A string, or null for an empty one. Returns -1 when value is not valid UTF-8. */
static int write_string_or_null(json_writer *w, const char *value) {
    if (value[0]) return write_string(w, value);
    WRITE_LITERAL(w, "null");
    return 0;
}

const char *codec_peek_event_id(const char *json, size_t len, size_t *id_len) {
    static const char head[] = ENCODED_HEAD, field[] = ENCODED_EVENT_ID "\"";
    size_t at = sizeof head - 1;
    if (len < at || memcmp(json, head, at) != 0) return NULL;
    while (at < len && json[at] >= '0' && json[at] <= '9') at++;
    if (len - at < sizeof field - 1 || memcmp(json + at, field, sizeof field - 1) != 0) return NULL;
    at += sizeof field - 1;
    size_t room = len - at < CODEC_ID_MAX + 1 ? len - at : CODEC_ID_MAX + 1;
    const char *id = json + at, *end = memchr(id, '"', room);
    if (!end) return NULL;
    *id_len = (size_t)(end - id);
    return id;
}

char *codec_encode(const event *ev, size_t *len, char *errstr, size_t errstr_size) {
    char first[WRITER_STACK_BYTES];
    json_writer w = {.buf = first, .cap = sizeof first};
    const char *type_name = codec_type_name(ev->type);
    const char *bad_field = NULL;
    if (!type_name) {
        snprintf(errstr, errstr_size, "invalid event type %d", (int)ev->type);
        return NULL;
    }
    WRITE_LITERAL(&w, ENCODED_HEAD);
    write_int(&w, ev->version);
    WRITE_LITERAL(&w, ENCODED_EVENT_ID);
    if (write_string(&w, ev->event_id)) bad_field = "event_id";
    WRITE_LITERAL(&w, ",\"event_type\":");
    write_string(&w, type_name);
    WRITE_LITERAL(&w, ",\"user_id\":");
    if (write_string(&w, ev->user_id)) bad_field = "user_id";
    WRITE_LITERAL(&w, ",\"ts\":");
    if (write_string(&w, ev->ts)) bad_field = "ts";
    WRITE_LITERAL(&w, ",\"items\":[");
    for (size_t i = 0; i < ev->item_count; i++) {
        const event_item *it = &ev->items[i];
        if (i) WRITE_LITERAL(&w, ",");
        WRITE_LITERAL(&w, "{\"item_type\":");
        if (write_string(&w, it->item_type)) bad_field = "item_type";
        WRITE_LITERAL(&w, ",\"quantity\":");
        write_int(&w, it->quantity);
        if (it->has_unit_price) {
            WRITE_LITERAL(&w, ",\"unit_price\":");
            write_int(&w, it->unit_price);
        }
        WRITE_LITERAL(&w, "}");
    }
    WRITE_LITERAL(&w, "],\"guild_id\":");
    if (write_string_or_null(&w, ev->guild_id)) bad_field = "guild_id";
    WRITE_LITERAL(&w, ",\"expected_version\":");
    if (ev->has_expected_version) write_int(&w, ev->expected_version);
    else WRITE_LITERAL(&w, "null");
    if (codec_type_is_emitted(ev->type)) {
        WRITE_LITERAL(&w, ",\"cause_event_id\":");
        if (write_string(&w, ev->cause_event_id)) bad_field = "cause_event_id";
    }
    if (ev->type == EVENT_GUILD_JOIN_DECIDED) {
        if (ev->decision_granted) WRITE_LITERAL(&w, ",\"decision\":\"granted\",\"reason\":");
        else WRITE_LITERAL(&w, ",\"decision\":\"refused\",\"reason\":");
        if (write_string_or_null(&w, ev->decision_granted ? "" : ev->decision_reason))
            bad_field = "reason";
    }
    WRITE_LITERAL(&w, ",\"metadata\":{\"remote_addr\":");
    int bad_metadata = write_string_or_null(&w, ev->metadata.remote_addr);
    WRITE_LITERAL(&w, ",\"host\":");
    bad_metadata |= write_string_or_null(&w, ev->metadata.host);
    WRITE_LITERAL(&w, ",\"user_agent\":");
    bad_metadata |= write_string_or_null(&w, ev->metadata.user_agent);
    WRITE_LITERAL(&w, ",\"accept_language\":");
    bad_metadata |= write_string_or_null(&w, ev->metadata.accept_language);
    WRITE_LITERAL(&w, "}}");
    if (w.out_of_memory) snprintf(errstr, errstr_size, "out of memory encoding event");
    else if (bad_metadata) snprintf(errstr, errstr_size, "event metadata is not valid UTF-8");
    else if (bad_field) snprintf(errstr, errstr_size, "event field %s is not valid UTF-8", bad_field);
    else {
        char *out = w.on_heap ? realloc(w.buf, w.used + 1) : malloc(w.used + 1);
        if (!out) {
            snprintf(errstr, errstr_size, "out of memory encoding event");
        } else {
            if (!w.on_heap) memcpy(out, w.buf, w.used);
            out[w.used] = '\0';
            *len = w.used;
            return out;
        }
    }
    if (w.on_heap) free(w.buf);
    return NULL;
}

/* ---------------------------------------------------------------- decoding
 * A strict scanner for the event's JSON, in place of a general parser: the fold decodes
 * every record, and building a jansson tree cost more than the rest of the fold per
 * event. It reads RFC 8259 JSON within lootlog's bounds — nesting at most SCAN_MAX_DEPTH
 * deep, each known field no longer than its slot in the struct, integers within 64 bits —
 * checks UTF-8 and decodes escapes, reads the fields it knows into the struct as it goes,
 * and skips the rest. Valid JSON beyond those bounds is refused (a dead letter), never
 * misread. */

typedef struct {
    const char *p, *end;
    char *errstr;
    size_t errstr_size;
} scanner;

#define SCAN_MAX_DEPTH 32

static int scan_fail(scanner *sc, const char *fmt, const char *what) {
    snprintf(sc->errstr, sc->errstr_size, fmt, what);
    return -1;
}

/* Message text a reason quotes: at most EXCERPT_CHARS bytes, printable ASCII as is and
 * every other byte (control characters, quotes, backslashes, UTF-8) as \xHH, so that a
 * dead-letter reason, which is logged and stored, can never carry a payload's newline. */
#define EXCERPT_CHARS 24
#define EXCERPT_SIZE (EXCERPT_CHARS * 4 + 4)
static const char *excerpt(char out[EXCERPT_SIZE], const char *text) {
    size_t used = 0, i = 0;
    for (; text[i] && i < EXCERPT_CHARS; i++) {
        unsigned char c = (unsigned char)text[i];
        if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\')
            out[used++] = (char)c;
        else
            used += (size_t)snprintf(out + used, EXCERPT_SIZE - used, "\\x%02x", c);
    }
    if (text[i]) memcpy(out + used, "...", 3), used += 3;
    out[used] = '\0';
    return out;
}

static int syntax(scanner *sc, const char *what) {
    return scan_fail(sc, "invalid JSON: %s", what);
}

/* Inline, with the common case first: a compact message has no white space, and every
 * ':', ',' and bracket looks for some (the loop as a call was 3 % of replay). */
static inline void skip_ws(scanner *sc) {
    if (sc->p < sc->end && (unsigned char)*sc->p > ' ') return;
    while (sc->p < sc->end && (*sc->p == ' ' || *sc->p == '\t' || *sc->p == '\n' || *sc->p == '\r'))
        sc->p++;
}

/* Consumes c after optional white space. Returns 1 when it was there. */
static int accept(scanner *sc, char c) {
    skip_ws(sc);
    if (sc->p < sc->end && *sc->p == c) {
        sc->p++;
        return 1;
    }
    return 0;
}

static int hex4(const char *p, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        char c = p[i];
        v <<= 4;
        if (c >= '0' && c <= '9') v |= (uint32_t)(c - '0');
        else if (c >= 'a' && c <= 'f') v |= (uint32_t)(c - 'a' + 10);
        else if (c >= 'A' && c <= 'F') v |= (uint32_t)(c - 'A' + 10);
        else return -1;
    }
    *out = v;
    return 0;
}

/* The code point of a one-letter JSON escape (\n, \", ...); 0 for any other letter. */
static uint32_t short_escape(char e) {
    switch (e) {
    case '"': return '"';
    case '\\': return '\\';
    case '/': return '/';
    case 'b': return '\b';
    case 'f': return '\f';
    case 'n': return '\n';
    case 'r': return '\r';
    case 't': return '\t';
    default: return 0;
    }
}

/* Appends code point cp as UTF-8 at dst[*used] when it fits; *overflow when not. */
static void put_utf8(char *dst, size_t dst_size, size_t *used, uint32_t cp, int *overflow) {
    char buf[4];
    size_t n;
    if (cp < 0x80) buf[0] = (char)cp, n = 1;
    else if (cp < 0x800) buf[0] = (char)(0xC0 | cp >> 6), buf[1] = (char)(0x80 | (cp & 0x3F)), n = 2;
    else if (cp < 0x10000)
        buf[0] = (char)(0xE0 | cp >> 12), buf[1] = (char)(0x80 | ((cp >> 6) & 0x3F)),
        buf[2] = (char)(0x80 | (cp & 0x3F)), n = 3;
    else
        buf[0] = (char)(0xF0 | cp >> 18), buf[1] = (char)(0x80 | ((cp >> 12) & 0x3F)),
        buf[2] = (char)(0x80 | ((cp >> 6) & 0x3F)), buf[3] = (char)(0x80 | (cp & 0x3F)), n = 4;
    if (!dst || *overflow) return;
    if (*used + n >= dst_size) {
        *overflow = 1;
        return;
    }
    memcpy(dst + *used, buf, n);
    *used += n;
}

/* The characters a JSON string holds as they are: printable ASCII but the quote and the
 * backslash. One lookup per character instead of four comparisons: every byte of every
 * message's strings goes through here (scan_string was the decoder's largest part). */
static const unsigned char json_plain[256] = {
    [0x20 ... 0x21] = 1, [0x23 ... 0x5B] = 1, [0x5D ... 0x7F] = 1,
};

/* Skips whole 8-byte words of plain string text from p on; returns where the first word
 * holding anything else (or too short a tail) starts. Each test has a set high bit in a
 * byte iff some byte of the word is in its class (a borrow runs only upwards from a byte
 * that is), so a word with none of them is plain throughout: control characters (below
 * 0x20), the quote, the backslash, non-ASCII (high bit). Ids, times and keys make the
 * decoder spend most of its time in string runs; a word at a time halves them. */
static const char *plain_words_end(const char *p, const char *end) {
    const uint64_t ones = 0x0101010101010101ULL, highs = 0x8080808080808080ULL;
    while (end - p >= 8) {
        uint64_t word, quote, backslash;
        memcpy(&word, p, sizeof word);
        quote = word ^ (ones * '"');
        backslash = word ^ (ones * '\\');
        if ((((word - ones * 0x20) & ~word) | ((quote - ones) & ~quote) |
             ((backslash - ones) & ~backslash) | word) & highs)
            break;
        p += 8;
    }
    return p;
}

/* Scans a string at sc->p (which must be at its opening quote) into dst (NULL: skip).
 * *overflow is set when it did not fit (dst then holds a whole-character prefix);
 * *has_nul when it contained U+0000, *escaped when it had an escape (each may be NULL).
 * Returns 0, or -1 on a syntax error. */
static int scan_string(scanner *sc, char *dst, size_t dst_size, int *overflow, int *has_nul,
                       int *escaped) {
    size_t used = 0;
    *overflow = 0;
    if (has_nul) *has_nul = 0;
    if (escaped) *escaped = 0;
    if (sc->p >= sc->end || *sc->p != '"') return syntax(sc, "a string was expected");
    sc->p++;
    while (sc->p < sc->end) {
        unsigned char c = (unsigned char)*sc->p;
        if (c == '"') {
            sc->p++;
            if (dst) dst[used] = '\0';
            return 0;
        }
        if (c < 0x20) return syntax(sc, "control character in a string");
        if (c == '\\') {
            if (sc->end - sc->p < 2) break;
            char e = sc->p[1];
            uint32_t cp;
            sc->p += 2;
            if (escaped) *escaped = 1;
            switch (e) {
            case 'u':
                if (sc->end - sc->p < 4 || hex4(sc->p, &cp)) return syntax(sc, "bad \\u escape");
                sc->p += 4;
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    uint32_t low;
                    if (sc->end - sc->p < 6 || sc->p[0] != '\\' || sc->p[1] != 'u' ||
                        hex4(sc->p + 2, &low) || low < 0xDC00 || low > 0xDFFF)
                        return syntax(sc, "unpaired surrogate in a \\u escape");
                    sc->p += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    return syntax(sc, "unpaired surrogate in a \\u escape");
                }
                if (cp == 0 && has_nul) *has_nul = 1;
                break;
            default:
                if (!(cp = short_escape(e))) return syntax(sc, "bad escape in a string");
            }
            put_utf8(dst, dst_size, &used, cp, overflow);
            continue;
        }
        size_t n;
        if (c < 0x80) {
            /* A run of plain ASCII is copied at once. */
            const char *run = plain_words_end(sc->p, sc->end);
            while (run < sc->end && json_plain[(unsigned char)*run]) run++;
            n = (size_t)(run - sc->p);
        } else {
            n = utf8_sequence_bounded((const unsigned char *)sc->p, (size_t)(sc->end - sc->p));
            if (n == 0) return syntax(sc, "invalid UTF-8 in a string");
        }
        if (dst && !*overflow) {
            if (used + n >= dst_size) {
                /* Keep the whole characters that fit (a run is ASCII, so any cut is). */
                if (c < 0x80 && used + 1 < dst_size) {
                    memcpy(dst + used, sc->p, dst_size - 1 - used);
                    used = dst_size - 1;
                }
                *overflow = 1;
            } else {
                memcpy(dst + used, sc->p, n);
                used += n;
            }
        }
        sc->p += n;
    }
    return syntax(sc, "unterminated string");
}

/* Scans a number. *is_integer says whether it was a plain integer that fits int64. */
static int scan_number(scanner *sc, int64_t *value, int *is_integer) {
    const char *start = sc->p;
    int negative = 0, digits = 0, overflow = 0;
    uint64_t magnitude = 0;
    *is_integer = 1;
    if (sc->p < sc->end && *sc->p == '-') negative = 1, sc->p++;
    if (sc->p < sc->end && *sc->p == '0') {
        sc->p++;
        digits = 1;
    } else {
        while (sc->p < sc->end && *sc->p >= '0' && *sc->p <= '9') {
            uint64_t d = (uint64_t)(*sc->p - '0');
            if (magnitude > (UINT64_MAX - d) / 10) overflow = 1;
            else magnitude = magnitude * 10 + d;
            sc->p++;
            digits++;
        }
    }
    if (!digits) return syntax(sc, "a value was expected");
    if (sc->p < sc->end && *sc->p == '.') {
        *is_integer = 0;
        sc->p++;
        if (sc->p >= sc->end || *sc->p < '0' || *sc->p > '9') return syntax(sc, "bad number");
        while (sc->p < sc->end && *sc->p >= '0' && *sc->p <= '9') sc->p++;
    }
    if (sc->p < sc->end && (*sc->p == 'e' || *sc->p == 'E')) {
        *is_integer = 0;
        sc->p++;
        if (sc->p < sc->end && (*sc->p == '+' || *sc->p == '-')) sc->p++;
        if (sc->p >= sc->end || *sc->p < '0' || *sc->p > '9') return syntax(sc, "bad number");
        while (sc->p < sc->end && *sc->p >= '0' && *sc->p <= '9') sc->p++;
    }
    if (overflow || magnitude > (uint64_t)INT64_MAX + (uint64_t)negative) *is_integer = 0;
    if (*is_integer)
        *value = negative ? (int64_t)(0 - magnitude) : (int64_t)magnitude;
    (void)start;
    return 0;
}

static int scan_literal(scanner *sc, const char *word) {
    size_t n = strlen(word);
    if ((size_t)(sc->end - sc->p) < n || memcmp(sc->p, word, n) != 0)
        return syntax(sc, "a value was expected");
    sc->p += n;
    return 0;
}

static int skip_value(scanner *sc, int depth);

/* The next code point of a string the scanner has already checked, from *p (inside the
 * quotes) on; moves *p past it. Returns -1 at the closing quote. */
static int32_t string_next(const char **p) {
    const unsigned char *s = (const unsigned char *)*p;
    uint32_t cp = 0, low = 0xDC00; /* set by hex4 on text the scanner checked */
    size_t n;
    if (s[0] == '"') return -1;
    if (s[0] == '\\') {
        switch (s[1]) {
        case 'u':
            hex4((const char *)s + 2, &cp);
            if (cp >= 0xD800 && cp <= 0xDBFF) { /* checked: a low surrogate follows */
                hex4((const char *)s + 8, &low);
                cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                *p += 6;
            }
            *p += 6;
            return (int32_t)cp;
        default: cp = short_escape((char)s[1]); break; /* checked by the scanner */
        }
        *p += 2;
        return (int32_t)cp;
    }
    n = s[0] < 0x80 ? 1 : (s[0] & 0xE0) == 0xC0 ? 2 : (s[0] & 0xF0) == 0xE0 ? 3 : 4;
    cp = n == 1 ? s[0] : n == 2 ? s[0] & 0x1Fu : n == 3 ? s[0] & 0x0Fu : s[0] & 0x07u;
    for (size_t i = 1; i < n; i++) cp = (cp << 6) | (s[i] & 0x3Fu);
    *p += n;
    return (int32_t)cp;
}

/* A key as it appears in the message: the text between its quotes, escapes and all. */
typedef struct {
    const char *raw;
    size_t raw_len;
    int escaped; /* holds a backslash: its decoded text may equal another spelling */
} raw_key;

/* 1 when two checked keys decode to the same text: byte-equal, or equal once the escapes
 * of either are decoded ("a" and "\u0061" are one key). */
static int same_key(const raw_key *a, const raw_key *b) {
    if (!a->escaped && !b->escaped)
        return a->raw_len == b->raw_len && memcmp(a->raw, b->raw, a->raw_len) == 0;
    const char *pa = a->raw, *pb = b->raw;
    for (;;) {
        int32_t ca = string_next(&pa), cb = string_next(&pb);
        if (ca != cb) return 0;
        if (ca < 0) return 1;
    }
}

/* Members one object may have. The event's objects have at most a dozen; the cap keeps
 * the duplicate check (each key against the ones before it) cheap on hostile input. */
#define SCAN_MAX_MEMBERS 64

/* A key as codec_encode writes it, with its quotes and colon: "\"name\":". */
typedef struct {
    const char *text;
    size_t len;
} key_literal;
#define KEY_LITERAL(name) {"\"" name "\":", sizeof(name) + 2}

/* The keys of each object in the order codec_encode writes them (optional ones too). */
static const key_literal top_order[] = {
    KEY_LITERAL("v"), KEY_LITERAL("event_id"), KEY_LITERAL("event_type"),
    KEY_LITERAL("user_id"), KEY_LITERAL("ts"), KEY_LITERAL("items"),
    KEY_LITERAL("guild_id"), KEY_LITERAL("expected_version"), KEY_LITERAL("cause_event_id"),
    KEY_LITERAL("decision"), KEY_LITERAL("reason"), KEY_LITERAL("metadata"), {NULL, 0}};
static const key_literal line_order[] = {
    KEY_LITERAL("item_type"), KEY_LITERAL("quantity"), KEY_LITERAL("unit_price"), {NULL, 0}};
static const key_literal meta_order[] = {
    KEY_LITERAL("remote_addr"), KEY_LITERAL("host"), KEY_LITERAL("user_agent"),
    KEY_LITERAL("accept_language"), {NULL, 0}};

/* Walks an object, calling member(sc, key, key_len, arg) with sc->p at each value (which
 * the callback must consume). Every object of a message goes through here, so here its keys
 * are held to what jansson and the contract expect: no key contains U+0000 (so a key
 * that compares equal to a known name is that name, not "user_id\u0000x"), and no key
 * appears twice (else which value counts would be the reader's guess). order (or NULL):
 * the keys as lootlog writes them, which are taken by one comparison each, quotes and
 * colon included, instead of being scanned as strings; a key that is not the next of
 * them (or is spelled otherwise) is scanned, and either way it is checked alike.
 * Returns 0 or -1. */
static int scan_object(scanner *sc, int depth,
                       int (*member)(scanner *sc, const char *key, size_t key_len, void *arg,
                                     int depth),
                       void *arg, const key_literal *order) {
    raw_key keys[SCAN_MAX_MEMBERS];
    size_t count = 0;
    /* A bit per (length, first and last byte) of the plain keys so far: a new plain key
     * whose bit is clear repeats none of them, and skips the comparisons. */
    uint64_t plain_seen = 0;
    int any_escaped = 0;
    if (depth > SCAN_MAX_DEPTH) return syntax(sc, "nested too deeply");
    if (!accept(sc, '{')) return syntax(sc, "an object was expected");
    if (accept(sc, '}')) return 0;
    do {
        char key[64];
        int overflow, has_nul;
        skip_ws(sc);
        if (count == SCAN_MAX_MEMBERS) {
            snprintf(sc->errstr, sc->errstr_size, "an object has more than %d members",
                     SCAN_MAX_MEMBERS);
            return -1;
        }
        const char *start = sc->p;
        const key_literal *known = NULL;
        for (const key_literal *k = order; k && k->text && !known; k++)
            if ((size_t)(sc->end - sc->p) >= k->len && memcmp(sc->p, k->text, k->len) == 0)
                known = k;
        if (known) {
            /* the literal's quotes and colon are its own: past them, as after accept(':') */
            order = known + 1;
            overflow = 0;
            keys[count].escaped = 0;
            memcpy(key, known->text + 1, known->len - 3);
            key[known->len - 3] = '\0';
            sc->p += known->len;
        } else if (scan_string(sc, key, sizeof key, &overflow, &has_nul, &keys[count].escaped)) {
            return -1;
        } else if (has_nul) {
            return syntax(sc, "an object key contains U+0000");
        }
        keys[count].raw = start + 1;
        keys[count].raw_len = known ? known->len - 3 : (size_t)(sc->p - start) - 2;
        size_t raw_len = keys[count].raw_len;
        uint64_t bit = raw_len == 0 ? 1
                       : 1ULL << ((raw_len * 7u + (unsigned char)start[1] * 3u +
                                   (unsigned char)start[raw_len]) & 63u);
        int may_repeat = any_escaped || keys[count].escaped || (plain_seen & bit);
        plain_seen |= bit;
        any_escaped |= keys[count].escaped;
        for (size_t i = 0; may_repeat && i < count; i++) {
            if (same_key(&keys[i], &keys[count])) {
                char shown[EXCERPT_SIZE];
                return scan_fail(sc, "invalid JSON: duplicate object key '%s'",
                                 excerpt(shown, key));
            }
        }
        count++;
        if (overflow) key[0] = '\0'; /* a long key is no key we know: skipped below */
        size_t key_len = overflow ? 0 : keys[count - 1].escaped ? strlen(key) : raw_len;
        if (!known && !accept(sc, ':')) return syntax(sc, "':' was expected");
        skip_ws(sc);
        if (member(sc, key, key_len, arg, depth)) return -1;
    } while (accept(sc, ','));
    if (!accept(sc, '}')) return syntax(sc, "',' or '}' was expected");
    return 0;
}

static int skip_member(scanner *sc, const char *key, size_t key_len, void *arg, int depth) {
    (void)key;
    (void)key_len;
    (void)arg;
    return skip_value(sc, depth + 1);
}

static int skip_value(scanner *sc, int depth) {
    int overflow;
    int64_t number;
    int is_integer;
    skip_ws(sc);
    if (depth > SCAN_MAX_DEPTH) return syntax(sc, "nested too deeply");
    if (sc->p >= sc->end) return syntax(sc, "a value was expected");
    switch (*sc->p) {
    case '"': return scan_string(sc, NULL, 0, &overflow, NULL, NULL);
    case '{': return scan_object(sc, depth, skip_member, NULL, NULL);
    case '[':
        sc->p++;
        if (accept(sc, ']')) return 0;
        do {
            if (skip_value(sc, depth + 1)) return -1;
        } while (accept(sc, ','));
        return accept(sc, ']') ? 0 : syntax(sc, "',' or ']' was expected");
    case 't': return scan_literal(sc, "true");
    case 'f': return scan_literal(sc, "false");
    case 'n': return scan_literal(sc, "null");
    default: return scan_number(sc, &number, &is_integer);
    }
}

/* What the scanner found for each known field before validation. */
typedef struct {
    event *ev;
    int has_v, v_is_int;
    int64_t v;
    int event_id_state, event_type_state, user_id_state, ts_state, guild_state; /* see below */
    char type_name[32];
    int items_state; /* 0 absent/null, 1 array, -1 not an array */
    int items_error; /* a bad line: errstr already holds why */
    int expected_state; /* 0 absent/null, 1 integer, -1 bad */
    int cause_state, decision_state, reason_state; /* the emitted guild events' fields */
    char decision[16];
} decode_ctx;

/* Field states: 0 absent or null, 1 string, 2 too long, 3 contains NUL, -1 not a string */
static int scan_field_string(scanner *sc, char *dst, size_t dst_size, int *state) {
    int overflow, has_nul;
    if (sc->p < sc->end && *sc->p == 'n') {
        *state = 0;
        return scan_literal(sc, "null");
    }
    if (sc->p < sc->end && *sc->p == '"') {
        if (scan_string(sc, dst, dst_size, &overflow, &has_nul, NULL)) return -1;
        *state = overflow ? 2 : has_nul ? 3 : 1;
        return 0;
    }
    *state = -1;
    return skip_value(sc, 1);
}

static int field_error(const char *key, int state, char *errstr, size_t errstr_size, int optional) {
    switch (state) {
    case 1: return 0;
    case 0:
        if (optional) return 0;
        snprintf(errstr, errstr_size, "missing field '%s'", key);
        return -1;
    case 2: snprintf(errstr, errstr_size, "field '%s' is too long", key); return -1;
    case 3: snprintf(errstr, errstr_size, "field '%s' contains a NUL byte", key); return -1;
    default: snprintf(errstr, errstr_size, "field '%s' is not a string", key); return -1;
    }
}

typedef struct {
    decode_ctx *ctx;
    event_item *line;
    size_t index;
    int type_state, has_quantity, quantity_ok, price_state;
    char errstr[160];
} line_ctx;

/* 1 when a key of key_len bytes is the literal name: lengths first, then the bytes (a
 * strcmp per known name showed at 3 % of replay). */
#define KEY_IS(key, key_len, name) \
    ((key_len) == sizeof(name) - 1 && memcmp((key), (name), sizeof(name) - 1) == 0)

static int line_member(scanner *sc, const char *key, size_t key_len, void *arg, int depth) {
    line_ctx *lc = arg;
    int64_t number;
    int is_integer;
    if (KEY_IS(key, key_len, "item_type"))
        return scan_field_string(sc, lc->line->item_type, sizeof lc->line->item_type,
                                 &lc->type_state);
    if (KEY_IS(key, key_len, "quantity") || KEY_IS(key, key_len, "unit_price")) {
        int is_quantity = key[0] == 'q';
        if (sc->p < sc->end && ((*sc->p >= '0' && *sc->p <= '9') || *sc->p == '-')) {
            if (scan_number(sc, &number, &is_integer)) return -1;
        } else {
            is_integer = 0;
            if (sc->p < sc->end && *sc->p == 'n' && !is_quantity) {
                lc->price_state = 0;
                return scan_literal(sc, "null");
            }
            if (skip_value(sc, depth + 1)) return -1;
        }
        if (is_quantity) {
            lc->has_quantity = 1;
            lc->quantity_ok = is_integer && number >= 1 && number <= CODEC_QUANTITY_MAX;
            if (lc->quantity_ok) lc->line->quantity = number;
        } else {
            lc->price_state = is_integer && number >= 0 ? 1 : -1;
            if (lc->price_state == 1) {
                lc->line->unit_price = number;
                lc->line->has_unit_price = 1;
            }
        }
        return 0;
    }
    return skip_value(sc, depth + 1);
}

/* Scans the items array into ev->items, validating each line as the old decoder did. */
static int scan_items(scanner *sc, decode_ctx *ctx, int depth) {
    event *ev = ctx->ev;
    if (sc->p < sc->end && *sc->p == 'n') {
        ctx->items_state = 0;
        return scan_literal(sc, "null");
    }
    if (sc->p >= sc->end || *sc->p != '[') {
        ctx->items_state = -1;
        return skip_value(sc, depth + 1);
    }
    ctx->items_state = 1;
    sc->p++;
    ev->item_count = 0;
    if (accept(sc, ']')) return 0;
    size_t i = 0;
    do {
        skip_ws(sc);
        if (i >= CODEC_MAX_ITEMS) {
            if (!ctx->items_error)
                snprintf(sc->errstr, sc->errstr_size, "more than %d items", CODEC_MAX_ITEMS);
            ctx->items_error = 1;
            if (skip_value(sc, depth + 1)) return -1;
            i++;
            continue;
        }
        event_item *line = &ev->items[i];
        memset(line, 0, sizeof *line);
        if (sc->p >= sc->end || *sc->p != '{') {
            if (!ctx->items_error)
                snprintf(sc->errstr, sc->errstr_size, "items[%zu] is not an object", i);
            ctx->items_error = 1;
            if (skip_value(sc, depth + 1)) return -1;
            i++;
            continue;
        }
        line_ctx lc = {.ctx = ctx, .line = line, .index = i};
        if (scan_object(sc, depth + 1, line_member, &lc, line_order)) return -1;
        if (!ctx->items_error) {
            if (lc.type_state != 1) {
                if (lc.type_state == 0) snprintf(sc->errstr, sc->errstr_size, "missing field 'item_type'");
                else field_error("item_type", lc.type_state, sc->errstr, sc->errstr_size, 0);
                ctx->items_error = 1;
            } else if (!codec_identifier_ok(line->item_type)) {
                snprintf(sc->errstr, sc->errstr_size,
                         "items[%zu].item_type is not a valid identifier", i);
                ctx->items_error = 1;
            } else if (!lc.has_quantity || !lc.quantity_ok) {
                snprintf(sc->errstr, sc->errstr_size, "items[%zu].quantity is not an integer in 1..%d",
                         i, CODEC_QUANTITY_MAX);
                ctx->items_error = 1;
            } else if (lc.price_state == -1) {
                snprintf(sc->errstr, sc->errstr_size,
                         "items[%zu].unit_price is not a non-negative integer", i);
                ctx->items_error = 1;
            }
        }
        i++;
    } while (accept(sc, ','));
    if (!accept(sc, ']')) return syntax(sc, "',' or ']' was expected");
    if (!ctx->items_error) ev->item_count = i;
    return 0;
}

static int meta_member(scanner *sc, const char *key, size_t key_len, void *arg, int depth) {
    event_metadata *m = arg;
    char *dst = NULL;
    size_t size = 0;
    int overflow;
    if (KEY_IS(key, key_len, "remote_addr")) dst = m->remote_addr, size = sizeof m->remote_addr;
    else if (KEY_IS(key, key_len, "host")) dst = m->host, size = sizeof m->host;
    else if (KEY_IS(key, key_len, "user_agent")) dst = m->user_agent, size = sizeof m->user_agent;
    else if (KEY_IS(key, key_len, "accept_language"))
        dst = m->accept_language, size = sizeof m->accept_language;
    /* Metadata is informational: a long value is cut (at a character), a non-string is
     * ignored; neither dead-letters a valid event. */
    if (dst && sc->p < sc->end && *sc->p == '"') return scan_string(sc, dst, size, &overflow, NULL, NULL);
    return skip_value(sc, depth + 1);
}

enum {
    KEY_V = 1 << 0,
    KEY_EVENT_ID = 1 << 1,
    KEY_EVENT_TYPE = 1 << 2,
    KEY_USER_ID = 1 << 3,
    KEY_TS = 1 << 4,
    KEY_ITEMS = 1 << 5,
    KEY_GUILD_ID = 1 << 6,
    KEY_EXPECTED = 1 << 7,
    KEY_METADATA = 1 << 8,
    KEY_CAUSE = 1 << 9,
    KEY_DECISION = 1 << 10,
    KEY_REASON = 1 << 11,
};

static int top_member(scanner *sc, const char *key, size_t key_len, void *arg, int depth) {
    decode_ctx *ctx = arg;
    event *ev = ctx->ev;
    /* By length first, then bytes of a known size, which the compiler compares inline (a
     * table of names walked with memcmp of a variable length called libc per key). */
    static const struct {
        const char *name;
        unsigned bit;
    } eight[] = {{"event_id", KEY_EVENT_ID}, {"guild_id", KEY_GUILD_ID},
                 {"metadata", KEY_METADATA}, {"decision", KEY_DECISION}};
    unsigned bit = 0;
    switch (key_len) {
    case 1: bit = key[0] == 'v' ? KEY_V : 0; break;
    case 2: bit = KEY_IS(key, key_len, "ts") ? KEY_TS : 0; break;
    case 5: bit = KEY_IS(key, key_len, "items") ? KEY_ITEMS : 0; break;
    case 6: bit = KEY_IS(key, key_len, "reason") ? KEY_REASON : 0; break;
    case 7: bit = KEY_IS(key, key_len, "user_id") ? KEY_USER_ID : 0; break;
    case 8:
        for (size_t i = 0; i < sizeof eight / sizeof eight[0] && !bit; i++)
            if (memcmp(key, eight[i].name, 8) == 0) bit = eight[i].bit;
        break;
    case 10: bit = KEY_IS(key, key_len, "event_type") ? KEY_EVENT_TYPE : 0; break;
    case 14: bit = KEY_IS(key, key_len, "cause_event_id") ? KEY_CAUSE : 0; break;
    case 16: bit = KEY_IS(key, key_len, "expected_version") ? KEY_EXPECTED : 0; break;
    default: break;
    }
    if (!bit) return skip_value(sc, depth + 1); /* scan_object refused a repeated key */
    int64_t number;
    int is_integer;
    switch (bit) {
    case KEY_V:
    case KEY_EXPECTED:
        if (sc->p < sc->end && *sc->p == 'n') {
            if (bit == KEY_EXPECTED) ctx->expected_state = 0;
            return scan_literal(sc, "null");
        }
        if (sc->p < sc->end && ((*sc->p >= '0' && *sc->p <= '9') || *sc->p == '-')) {
            if (scan_number(sc, &number, &is_integer)) return -1;
        } else {
            is_integer = 0;
            if (skip_value(sc, depth + 1)) return -1;
        }
        if (bit == KEY_V) {
            ctx->has_v = 1;
            ctx->v_is_int = is_integer;
            ctx->v = number;
        } else {
            ctx->expected_state = is_integer && number >= 0 ? 1 : -1;
            if (ctx->expected_state == 1) {
                ev->has_expected_version = 1;
                ev->expected_version = number;
            }
        }
        return 0;
    case KEY_EVENT_ID:
        return scan_field_string(sc, ev->event_id, sizeof ev->event_id, &ctx->event_id_state);
    case KEY_EVENT_TYPE:
        return scan_field_string(sc, ctx->type_name, sizeof ctx->type_name, &ctx->event_type_state);
    case KEY_USER_ID:
        return scan_field_string(sc, ev->user_id, sizeof ev->user_id, &ctx->user_id_state);
    case KEY_TS: return scan_field_string(sc, ev->ts, sizeof ev->ts, &ctx->ts_state);
    case KEY_GUILD_ID:
        return scan_field_string(sc, ev->guild_id, sizeof ev->guild_id, &ctx->guild_state);
    case KEY_ITEMS: return scan_items(sc, ctx, depth);
    case KEY_CAUSE:
        return scan_field_string(sc, ev->cause_event_id, sizeof ev->cause_event_id, &ctx->cause_state);
    case KEY_DECISION:
        return scan_field_string(sc, ctx->decision, sizeof ctx->decision, &ctx->decision_state);
    case KEY_REASON:
        return scan_field_string(sc, ev->decision_reason, sizeof ev->decision_reason, &ctx->reason_state);
    default: /* KEY_METADATA */
        if (sc->p < sc->end && *sc->p == '{') {
            /* What every record gen writes and most others carry: nothing to read (the
             * fields are cleared already), so no member is walked. */
            static const char all_null[] = "{\"remote_addr\":null,\"host\":null,"
                                           "\"user_agent\":null,\"accept_language\":null}";
            if ((size_t)(sc->end - sc->p) >= sizeof all_null - 1 &&
                memcmp(sc->p, all_null, sizeof all_null - 1) == 0) {
                sc->p += sizeof all_null - 1;
                return 0;
            }
            return scan_object(sc, depth + 1, meta_member, &ev->metadata, meta_order);
        }
        return skip_value(sc, depth + 1);
    }
}

/* 1 for the types that carry a guild_id: join_guild, leave_guild and every "guild_"
 * type (the guild-side events the fold emits). Any other type with a guild_id is refused,
 * so no stray guild_id can reach history or a guild's partition. */
static int is_guild_type(event_type type) {
    const char *name = codec_type_name(type);
    return type == EVENT_JOIN_GUILD || type == EVENT_LEAVE_GUILD ||
           (name && strncmp(name, "guild_", 6) == 0);
}

/* 1 when ts is the one form lootlog writes (clock_iso8601_now): exactly
 * "YYYY-MM-DDTHH:MM:SS.mmmZ", 24 characters, UTC ("Z", no offset), milliseconds always
 * three digits, and a real instant: year 1970..9999, a day that exists in its month (leap
 * years counted), hours 00-23, minutes and seconds 00-59 (no leap second). Anything else
 * (other RFC 3339 spellings included) is refused: history, the extracts and the analysts
 * sort and compare ts as text, which is right only for this one form. */
static int ts_canonical(const char *ts) {
    static const char shape[] = "dddd-dd-ddTdd:dd:dd.dddZ";
    static const int month_days[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    int v[6] = {0}; /* year month day hour minute second */
    static const int at[6] = {0, 5, 8, 11, 14, 17}, width[6] = {4, 2, 2, 2, 2, 2};
    for (size_t i = 0; i < sizeof shape - 1; i++) {
        if (shape[i] == 'd' ? (ts[i] < '0' || ts[i] > '9') : ts[i] != shape[i]) return 0;
    }
    if (ts[sizeof shape - 1] != '\0') return 0;
    for (int f = 0; f < 6; f++)
        for (int i = 0; i < width[f]; i++) v[f] = v[f] * 10 + (ts[at[f] + i] - '0');
    int leap = (v[0] % 4 == 0 && v[0] % 100 != 0) || v[0] % 400 == 0;
    return v[0] >= 1970 && v[1] >= 1 && v[1] <= 12 && v[2] >= 1 &&
           v[2] <= month_days[v[1] - 1] && !(v[1] == 2 && v[2] == 29 && !leap) && v[3] <= 23 &&
           v[4] <= 59 && v[5] <= 59;
}

/* Checks the fields each type needs, once the generic fields are known good. */
static int check_type_shape(const event *ev, char *errstr, size_t errstr_size) {
    switch (ev->type) {
    case EVENT_PURCHASE_SWORD:
    case EVENT_PURCHASE_ITEM:
    case EVENT_CONSUME_ITEM:
        if (ev->item_count == 0) {
            snprintf(errstr, errstr_size, "%s needs 1..%d items", codec_type_name(ev->type),
                     CODEC_MAX_ITEMS);
            return -1;
        }
        return 0;
    case EVENT_JOIN_GUILD:
        if (!codec_identifier_ok(ev->guild_id)) {
            snprintf(errstr, errstr_size, "join_guild needs a valid guild_id");
            return -1;
        }
        return 0;
    case EVENT_GUILD_JOIN_REQUESTED:
    case EVENT_GUILD_JOIN_DECIDED:
    case EVENT_GUILD_LEAVE_REQUESTED:
        if (!codec_identifier_ok(ev->guild_id) || !codec_identifier_ok(ev->cause_event_id)) {
            snprintf(errstr, errstr_size, "%s needs a valid guild_id and cause_event_id",
                     codec_type_name(ev->type));
            return -1;
        }
        return 0;
    default:
        return 0;
    }
}

int codec_decode(const char *json, size_t len, event *ev, char *errstr, size_t errstr_size) {
    decode_ctx ctx;
    scanner sc = {.p = json, .end = json + len, .errstr = errstr, .errstr_size = errstr_size};

    /* Only the fixed fields are cleared: the items array is written line by line. */
    memset(ev, 0, offsetof(event, items));
    ev->item_count = 0;
    memset(ev->guild_id, 0, sizeof *ev - offsetof(event, guild_id));
    memset(&ctx, 0, sizeof ctx);
    ctx.ev = ev;
    if (len == 0) {
        snprintf(errstr, errstr_size, "empty message");
        return -1;
    }
    skip_ws(&sc);
    if (sc.p < sc.end && *sc.p != '{') {
        /* Still tell invalid JSON from valid non-objects, as a reader would expect. */
        if (skip_value(&sc, 0) == 0) {
            skip_ws(&sc);
            if (sc.p == sc.end) snprintf(errstr, errstr_size, "event is not a JSON object");
            else syntax(&sc, "text after the value"); /* found by fuzzing: no reason was set */
        }
        return -1;
    }
    if (scan_object(&sc, 0, top_member, &ctx, top_order)) return -1;
    skip_ws(&sc);
    if (sc.p != sc.end) return syntax(&sc, "text after the event");

    if (!ctx.has_v || !ctx.v_is_int) {
        snprintf(errstr, errstr_size, "missing or non-integer field 'v'");
        return -1;
    }
    if (ctx.v != CODEC_EVENT_VERSION) {
        snprintf(errstr, errstr_size, "unknown event version %lld", (long long)ctx.v);
        return -1;
    }
    ev->version = CODEC_EVENT_VERSION;
    if (field_error("event_id", ctx.event_id_state, errstr, errstr_size, 0)) return -1;
    if (!codec_identifier_ok(ev->event_id)) {
        snprintf(errstr, errstr_size, "event_id is not a valid identifier");
        return -1;
    }
    if (field_error("event_type", ctx.event_type_state, errstr, errstr_size, 0)) return -1;
    if (codec_type_parse(ctx.type_name, &ev->type)) {
        char shown[EXCERPT_SIZE];
        snprintf(errstr, errstr_size, "unknown event_type '%s'", excerpt(shown, ctx.type_name));
        return -1;
    }
    if (field_error("user_id", ctx.user_id_state, errstr, errstr_size, 0)) return -1;
    if (!codec_identifier_ok(ev->user_id)) {
        snprintf(errstr, errstr_size, "user_id is not a valid identifier");
        return -1;
    }
    if (field_error("ts", ctx.ts_state, errstr, errstr_size, 0)) return -1;
    if (ctx.items_state == -1) {
        snprintf(errstr, errstr_size, "field 'items' is not an array");
        return -1;
    }
    if (ctx.items_error) return -1; /* errstr holds the first bad line's reason */
    if (field_error("guild_id", ctx.guild_state, errstr, errstr_size, 1)) return -1;
    if (ctx.guild_state == 1 && !is_guild_type(ev->type)) {
        snprintf(errstr, errstr_size, "%s takes no guild_id", codec_type_name(ev->type));
        return -1;
    }
    if (ev->guild_id[0] && !codec_identifier_ok(ev->guild_id)) {
        snprintf(errstr, errstr_size, "guild_id is not a valid identifier");
        return -1;
    }
    if (ctx.expected_state == -1) {
        snprintf(errstr, errstr_size, "expected_version is not a non-negative integer");
        return -1;
    }
    if (field_error("cause_event_id", ctx.cause_state, errstr, errstr_size, 1) ||
        field_error("decision", ctx.decision_state, errstr, errstr_size, 1) ||
        field_error("reason", ctx.reason_state, errstr, errstr_size, 1))
        return -1;
    if (!codec_type_is_emitted(ev->type) && (ctx.cause_state || ctx.decision_state || ctx.reason_state)) {
        snprintf(errstr, errstr_size, "%s takes no cause_event_id, decision or reason",
                 codec_type_name(ev->type));
        return -1;
    }
    if (ev->type == EVENT_GUILD_JOIN_DECIDED) {
        /* granted carries no reason; refused carries one, which the player's fold records */
        ev->decision_granted = strcmp(ctx.decision, "granted") == 0;
        if (!(ev->decision_granted ? ctx.reason_state == 0
                                   : strcmp(ctx.decision, "refused") == 0 && ctx.reason_state == 1 &&
                                         codec_identifier_ok(ev->decision_reason))) {
            snprintf(errstr, errstr_size,
                     "guild_join_decided needs decision granted, or refused with a reason");
            return -1;
        }
    } else if (ctx.decision_state || ctx.reason_state) {
        snprintf(errstr, errstr_size, "%s takes no decision or reason", codec_type_name(ev->type));
        return -1;
    }
    if (!ts_canonical(ev->ts)) {
        snprintf(errstr, errstr_size, "ts is not a UTC time such as 2026-11-29T08:14:00.123Z");
        return -1;
    }
    return check_type_shape(ev, errstr, errstr_size);
}
