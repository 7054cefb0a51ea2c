/* validate: request bodies -> event fields, with the contract's error codes. */
#include "server/validate.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int validate_fail(validate_error *err, int status, const char *code, const char *fmt, ...) {
    va_list ap;
    err->status = status;
    snprintf(err->code, sizeof err->code, "%s", code);
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return -1;
}

int validate_identifier(const char *what, const char *value, validate_error *err) {
    if (codec_identifier_ok(value)) return 0;
    return validate_fail(err, 400, "invalid_identifier",
                         "%s must match ^[A-Za-z0-9_.-]{1,64}$", what);
}

int validate_content_type(const char *content_type, validate_error *err) {
    static const char json_type[] = "application/json";
    if (content_type && strncasecmp(content_type, json_type, sizeof json_type - 1) == 0) {
        char next = content_type[sizeof json_type - 1];
        if (next == '\0' || next == ';' || next == ' ') return 0;
    }
    return validate_fail(err, 415, "unsupported_media_type",
                         "the body must be JSON (Content-Type: application/json)");
}

/* Parses a JSON object body. Returns the object (caller decrefs) or NULL with err. */
static json_t *parse_object(const char *body, size_t len, validate_error *err) {
    json_error_t jerr;
    if (len > VALIDATE_BODY_MAX) {
        validate_fail(err, 413, "body_too_large", "the body exceeds %d bytes", VALIDATE_BODY_MAX);
        return NULL;
    }
    json_t *root = json_loadb(body ? body : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        validate_fail(err, 400, "invalid_json", "malformed JSON: %s", jerr.text);
        return NULL;
    }
    if (!json_is_object(root)) {
        json_decref(root);
        validate_fail(err, 400, "invalid_json", "the body must be a JSON object");
        return NULL;
    }
    return root;
}

/* One {"item_type","quantity","unit_price"?} line into *line. where names it in errors. */
static int parse_line(json_t *obj, const catalog *cat, int allow_price, const char *where,
                      event_item *line, validate_error *err) {
    json_t *type = json_object_get(obj, "item_type");
    json_t *quantity = json_object_get(obj, "quantity");
    json_t *price = json_object_get(obj, "unit_price");
    if (!json_is_object(obj))
        return validate_fail(err, 400, "invalid_request", "%s must be an object", where);
    if (!json_is_string(type))
        return validate_fail(err, 400, "invalid_request", "%s.item_type must be a string", where);
    if (!codec_identifier_ok(json_string_value(type)))
        return validate_fail(err, 400, "invalid_identifier",
                             "%s.item_type must match ^[A-Za-z0-9_.-]{1,64}$", where);
    if (!catalog_find(cat, json_string_value(type)))
        return validate_fail(err, 422, "unknown_item_type", "%s.item_type '%s' is not in the catalog",
                             where, json_string_value(type));
    if (!json_is_integer(quantity))
        return validate_fail(err, 422, "invalid_quantity", "%s.quantity must be an integer", where);
    json_int_t q = json_integer_value(quantity);
    if (q < 1 || q > CODEC_QUANTITY_MAX)
        return validate_fail(err, 422, "invalid_quantity", "%s.quantity must be in 1..%d", where,
                             CODEC_QUANTITY_MAX);
    snprintf(line->item_type, sizeof line->item_type, "%s", json_string_value(type));
    line->quantity = q;
    line->has_unit_price = 0;
    if (price && !json_is_null(price)) {
        if (!allow_price)
            return validate_fail(err, 400, "invalid_request", "%s.unit_price is not accepted here",
                                 where);
        if (!json_is_integer(price) || json_integer_value(price) < 0 ||
            json_integer_value(price) > 1000000000LL)
            return validate_fail(err, 422, "invalid_price",
                                 "%s.unit_price must be an integer in 0..1000000000", where);
        line->unit_price = json_integer_value(price);
        line->has_unit_price = 1;
    }
    return 0;
}

int validate_purchase(const char *body, size_t len, const catalog *cat, event *ev,
                      validate_error *err) {
    json_t *root = parse_object(body, len, err);
    int rc = -1;
    if (!root) return -1;
    json_t *items = json_object_get(root, "items");
    if (items) {
        if (!json_is_array(items)) {
            validate_fail(err, 400, "invalid_request", "items must be an array");
            goto done;
        }
        size_t n = json_array_size(items);
        if (n == 0 || n > CODEC_MAX_ITEMS) {
            validate_fail(err, 422, "invalid_cart", "a cart holds 1..%d lines, not %zu",
                          CODEC_MAX_ITEMS, n);
            goto done;
        }
        for (size_t i = 0; i < n; i++) {
            char where[32];
            snprintf(where, sizeof where, "items[%zu]", i);
            if (parse_line(json_array_get(items, i), cat, 1, where, &ev->items[i], err)) goto done;
        }
        ev->item_count = n;
    } else {
        if (parse_line(root, cat, 1, "body", &ev->items[0], err)) goto done;
        ev->item_count = 1;
    }
    rc = 0;
done:
    json_decref(root);
    return rc;
}

int validate_consumption(const char *body, size_t len, const catalog *cat, event *ev,
                         validate_error *err) {
    json_t *root = parse_object(body, len, err);
    if (!root) return -1;
    int rc = parse_line(root, cat, 0, "body", &ev->items[0], err);
    if (rc == 0) ev->item_count = 1;
    json_decref(root);
    return rc;
}

int validate_guild_join(const char *body, size_t len, event *ev, validate_error *err) {
    json_t *root = parse_object(body, len, err);
    int rc = -1;
    if (!root) return -1;
    json_t *guild = json_object_get(root, "guild_id");
    if (!json_is_string(guild)) {
        validate_fail(err, 400, "invalid_request", "guild_id must be a string");
    } else if (validate_identifier("guild_id", json_string_value(guild), err) == 0) {
        snprintf(ev->guild_id, sizeof ev->guild_id, "%s", json_string_value(guild));
        rc = 0;
    }
    json_decref(root);
    return rc;
}

/* The value of the decimal number s[0..len): digits only (no sign, no space), with
 * leading zeros only when zeros_ok, and at most max_digits digits after them.
 * max_digits <= 18 keeps every accepted value below INT64_MAX: nothing saturates or
 * wraps. Returns 0 with *value, -1 for anything else (too many digits: -2). */
static int parse_decimal(const char *s, size_t len, int zeros_ok, size_t max_digits,
                         int64_t *value) {
    int64_t v = 0;
    if (len == 0 || (!zeros_ok && s[0] == '0' && len > 1)) return -1;
    for (size_t i = 0; i < len; i++)
        if (s[i] < '0' || s[i] > '9') return -1;
    while (len > 1 && s[0] == '0') s++, len--;
    if (len > max_digits) return -2;
    for (size_t i = 0; i < len; i++) v = v * 10 + (s[i] - '0');
    *value = v;
    return 0;
}

/* Strong comparison only (RFC 9110 13.1.1, 8.8.3.2): our ETag is the player's version as
 * a strong tag ("7"), so the one form that can match it is "<version>".
 *   "7"          -> *version = 7
 *   *            -> *any = 1: the write needs the player to exist (the caller checks)
 *   W/"7"        -> 412 precondition_failed: a weak tag never matches a strong comparison
 *   "<19+ digits>" -> 400 if_match_out_of_range (no version gets there; never saturated)
 *   anything else (7 unquoted, "07", "x", lists) -> 400 invalid_if_match
 * Surrounding spaces and tabs are ignored (optional white space of a field value). */
int validate_if_match(const char *header, int64_t *version, int *any, validate_error *err) {
    const char *p = header;
    size_t len;
    *any = 0;
    while (*p == ' ' || *p == '\t') p++;
    len = strlen(p);
    while (len > 0 && (p[len - 1] == ' ' || p[len - 1] == '\t')) len--;
    if (len == 1 && p[0] == '*') {
        *any = 1;
        return 0;
    }
    if (len >= 2 && p[0] == 'W' && p[1] == '/')
        return validate_fail(err, 412, "precondition_failed",
                             "If-Match compares strongly: a weak entity-tag (W/\"...\") never matches");
    if (len >= 2 && p[0] == '"' && p[len - 1] == '"') {
        int rc = parse_decimal(p + 1, len - 2, 0, 18, version);
        if (rc == 0) return 0;
        if (rc == -2)
            return validate_fail(err, 400, "if_match_out_of_range",
                                 "If-Match holds more digits than any player version can have");
    }
    return validate_fail(err, 400, "invalid_if_match",
                         "If-Match must be one player version such as \"7\" (quoted), or *");
}

int validate_token(const char *text, int max_partitions, int32_t *partition, int64_t *offset,
                   validate_error *err) {
    const char *colon = strchr(text, ':');
    int64_t p, o;
    if (colon && parse_decimal(text, (size_t)(colon - text), 1, 9, &p) == 0 && p < max_partitions &&
        parse_decimal(colon + 1, strlen(colon + 1), 1, 18, &o) == 0) {
        *partition = (int32_t)p;
        *offset = o;
        return 0;
    }
    return validate_fail(err, 400, "invalid_token", "after must be a write's token \"<p>:<o>\"");
}
