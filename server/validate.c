/* validate: request bodies -> event fields, with the contract's error codes. */
#include "validate.h"

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

int validate_if_match(const char *header, long long *version, validate_error *err) {
    const char *p = header;
    while (*p == ' ') p++;
    if (strncmp(p, "W/", 2) == 0) p += 2;
    int quoted = *p == '"';
    if (quoted) p++;
    if (*p < '0' || *p > '9') goto bad;
    char *end;
    long long v = strtoll(p, &end, 10);
    if (quoted) {
        if (*end != '"') goto bad;
        end++;
    }
    while (*end == ' ') end++;
    if (*end != '\0' || v < 0 || end - p > 19) goto bad;
    *version = v;
    return 0;
bad:
    return validate_fail(err, 400, "invalid_if_match",
                         "If-Match must be a player version such as \"7\"");
}
