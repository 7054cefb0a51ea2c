/* codec: event struct <-> JSON. The decoder is the gate between the topic and the fold:
 * anything it refuses is dead-lettered, so it checks every field the fold relies on. */
#include "codec.h"

#include <jansson.h>
#include <stdio.h>
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
};

const char *codec_type_name(event_type type) {
    if ((int)type < 0 || type >= EVENT_TYPE_COUNT) return NULL;
    return type_names[type];
}

int codec_type_parse(const char *name, event_type *type) {
    for (int i = 0; i < EVENT_TYPE_COUNT; i++) {
        if (strcmp(name, type_names[i]) == 0) {
            *type = (event_type)i;
            return 0;
        }
    }
    return -1;
}

int codec_identifier_ok(const char *s) {
    size_t n = 0;
    for (; s[n]; n++) {
        char c = s[n];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                 c == '_' || c == '.' || c == '-';
        if (!ok || n >= CODEC_ID_MAX) return 0;
    }
    return n > 0;
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
    snprintf(buf, buf_size,
             "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
             b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14],
             b[15]);
    return 0;
}

void codec_now_iso8601(char *buf, size_t buf_size) {
    struct timespec now;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &now);
    gmtime_r(&now.tv_sec, &tm);
    char seconds[24];
    strftime(seconds, sizeof seconds, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(buf, buf_size, "%s.%03ldZ", seconds, now.tv_nsec / 1000000L);
}

/* Adds key: string, or key: null for an empty string. Returns -1 when value is not
 * valid UTF-8 (jansson refuses it), so no field is ever dropped silently. */
static int set_string_or_null(json_t *obj, const char *key, const char *value) {
    json_t *v = value[0] ? json_string(value) : json_null();
    return v ? json_object_set_new(obj, key, v) : -1;
}

char *codec_encode(const event *ev, size_t *len, char *errstr, size_t errstr_size) {
    json_t *root = NULL, *items = NULL, *meta = NULL;
    char *out = NULL;
    const char *type_name = codec_type_name(ev->type);
    if (!type_name) {
        snprintf(errstr, errstr_size, "invalid event type %d", (int)ev->type);
        goto fail;
    }
    root = json_object();
    items = json_array();
    meta = json_object();
    if (!root || !items || !meta) goto oom;
    for (size_t i = 0; i < ev->item_count; i++) {
        const event_item *it = &ev->items[i];
        json_t *line = json_object();
        if (!line || json_array_append_new(items, line)) goto oom;
        json_object_set_new(line, "item_type", json_string(it->item_type));
        json_object_set_new(line, "quantity", json_integer(it->quantity));
        if (it->has_unit_price) json_object_set_new(line, "unit_price", json_integer(it->unit_price));
    }
    if (set_string_or_null(meta, "remote_addr", ev->metadata.remote_addr) ||
        set_string_or_null(meta, "host", ev->metadata.host) ||
        set_string_or_null(meta, "user_agent", ev->metadata.user_agent) ||
        set_string_or_null(meta, "accept_language", ev->metadata.accept_language)) {
        snprintf(errstr, errstr_size, "event metadata is not valid UTF-8");
        goto fail;
    }

    json_object_set_new(root, "v", json_integer(ev->version));
    json_object_set_new(root, "event_id", json_string(ev->event_id));
    json_object_set_new(root, "event_type", json_string(type_name));
    json_object_set_new(root, "user_id", json_string(ev->user_id));
    json_object_set_new(root, "ts", json_string(ev->ts));
    json_object_set(root, "items", items);
    set_string_or_null(root, "guild_id", ev->guild_id);
    json_object_set_new(root, "expected_version",
                        ev->has_expected_version ? json_integer(ev->expected_version) : json_null());
    json_object_set(root, "metadata", meta);
    out = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!out) goto oom;
    *len = strlen(out);
    json_decref(items);
    json_decref(meta);
    json_decref(root);
    return out;
oom:
    snprintf(errstr, errstr_size, "out of memory encoding event");
fail:
    json_decref(items);
    json_decref(meta);
    json_decref(root);
    return NULL;
}

/* Copies a string member into dst. Missing or null gives "" when optional.
 * Returns 0, or -1 with the reason in errstr. */
static int get_string(json_t *obj, const char *key, char *dst, size_t dst_size, int optional,
                      char *errstr, size_t errstr_size) {
    json_t *v = json_object_get(obj, key);
    dst[0] = '\0';
    if (!v || json_is_null(v)) {
        if (optional) return 0;
        snprintf(errstr, errstr_size, "missing field '%s'", key);
        return -1;
    }
    if (!json_is_string(v)) {
        snprintf(errstr, errstr_size, "field '%s' is not a string", key);
        return -1;
    }
    if (json_string_length(v) >= dst_size) {
        snprintf(errstr, errstr_size, "field '%s' is too long", key);
        return -1;
    }
    memcpy(dst, json_string_value(v), json_string_length(v) + 1);
    if (strlen(dst) != json_string_length(v)) {
        snprintf(errstr, errstr_size, "field '%s' contains a NUL byte", key);
        return -1;
    }
    return 0;
}

/* Copies a metadata string, truncating: metadata is informational, never a reason to
 * dead-letter an otherwise valid event. */
static void get_meta(json_t *meta, const char *key, char *dst, size_t dst_size) {
    json_t *v = json_object_get(meta, key);
    dst[0] = '\0';
    if (json_is_string(v)) snprintf(dst, dst_size, "%s", json_string_value(v));
}

static int decode_items(json_t *items, event *ev, char *errstr, size_t errstr_size) {
    if (!items || json_is_null(items)) return 0;
    if (!json_is_array(items)) {
        snprintf(errstr, errstr_size, "field 'items' is not an array");
        return -1;
    }
    if (json_array_size(items) > CODEC_MAX_ITEMS) {
        snprintf(errstr, errstr_size, "more than %d items", CODEC_MAX_ITEMS);
        return -1;
    }
    size_t i;
    json_t *line;
    json_array_foreach(items, i, line) {
        event_item *it = &ev->items[i];
        if (!json_is_object(line)) {
            snprintf(errstr, errstr_size, "items[%zu] is not an object", i);
            return -1;
        }
        if (get_string(line, "item_type", it->item_type, sizeof it->item_type, 0, errstr,
                       errstr_size))
            return -1;
        if (!codec_identifier_ok(it->item_type)) {
            snprintf(errstr, errstr_size, "items[%zu].item_type is not a valid identifier", i);
            return -1;
        }
        json_t *q = json_object_get(line, "quantity");
        if (!json_is_integer(q) || json_integer_value(q) < 1 ||
            json_integer_value(q) > CODEC_QUANTITY_MAX) {
            snprintf(errstr, errstr_size, "items[%zu].quantity is not an integer in 1..%d", i,
                     CODEC_QUANTITY_MAX);
            return -1;
        }
        it->quantity = json_integer_value(q);
        json_t *p = json_object_get(line, "unit_price");
        if (p && !json_is_null(p)) {
            if (!json_is_integer(p) || json_integer_value(p) < 0) {
                snprintf(errstr, errstr_size, "items[%zu].unit_price is not a non-negative integer",
                         i);
                return -1;
            }
            it->unit_price = json_integer_value(p);
            it->has_unit_price = 1;
        }
        ev->item_count = i + 1;
    }
    return 0;
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
    default:
        return 0;
    }
}

int codec_decode(const char *json, size_t len, event *ev, char *errstr, size_t errstr_size) {
    json_error_t jerr;
    json_t *root = NULL;
    char type_name[32];
    int rc = -1;

    memset(ev, 0, sizeof *ev);
    if (len == 0) {
        snprintf(errstr, errstr_size, "empty message");
        return -1;
    }
    root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        snprintf(errstr, errstr_size, "invalid JSON: %s", jerr.text);
        return -1;
    }
    if (!json_is_object(root)) {
        snprintf(errstr, errstr_size, "event is not a JSON object");
        goto done;
    }
    json_t *v = json_object_get(root, "v");
    if (!json_is_integer(v)) {
        snprintf(errstr, errstr_size, "missing or non-integer field 'v'");
        goto done;
    }
    if (json_integer_value(v) != CODEC_EVENT_VERSION) {
        snprintf(errstr, errstr_size, "unknown event version %lld",
                 (long long)json_integer_value(v));
        goto done;
    }
    ev->version = CODEC_EVENT_VERSION;
    if (get_string(root, "event_id", ev->event_id, sizeof ev->event_id, 0, errstr, errstr_size))
        goto done;
    if (!codec_identifier_ok(ev->event_id)) {
        snprintf(errstr, errstr_size, "event_id is not a valid identifier");
        goto done;
    }
    if (get_string(root, "event_type", type_name, sizeof type_name, 0, errstr, errstr_size))
        goto done;
    if (codec_type_parse(type_name, &ev->type)) {
        snprintf(errstr, errstr_size, "unknown event_type '%s'", type_name);
        goto done;
    }
    if (get_string(root, "user_id", ev->user_id, sizeof ev->user_id, 0, errstr, errstr_size))
        goto done;
    if (!codec_identifier_ok(ev->user_id)) {
        snprintf(errstr, errstr_size, "user_id is not a valid identifier");
        goto done;
    }
    if (get_string(root, "ts", ev->ts, sizeof ev->ts, 0, errstr, errstr_size)) goto done;
    if (decode_items(json_object_get(root, "items"), ev, errstr, errstr_size)) goto done;
    if (get_string(root, "guild_id", ev->guild_id, sizeof ev->guild_id, 1, errstr, errstr_size))
        goto done;
    json_t *expected = json_object_get(root, "expected_version");
    if (expected && !json_is_null(expected)) {
        if (!json_is_integer(expected) || json_integer_value(expected) < 0) {
            snprintf(errstr, errstr_size, "expected_version is not a non-negative integer");
            goto done;
        }
        ev->has_expected_version = 1;
        ev->expected_version = json_integer_value(expected);
    }
    json_t *meta = json_object_get(root, "metadata");
    if (json_is_object(meta)) {
        get_meta(meta, "remote_addr", ev->metadata.remote_addr, sizeof ev->metadata.remote_addr);
        get_meta(meta, "host", ev->metadata.host, sizeof ev->metadata.host);
        get_meta(meta, "user_agent", ev->metadata.user_agent, sizeof ev->metadata.user_agent);
        get_meta(meta, "accept_language", ev->metadata.accept_language,
                 sizeof ev->metadata.accept_language);
    }
    if (check_type_shape(ev, errstr, errstr_size)) goto done;
    rc = 0;
done:
    json_decref(root);
    return rc;
}
