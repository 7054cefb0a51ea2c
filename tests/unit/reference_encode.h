/* reference_encode: jansson's compact, order-preserving dump of an event's fields, the
 * reference that state/codec's hand-written encoder must match byte for byte. The codec
 * unit test compares the two on random events; bench/encode.c times them side by side. */
#ifndef LOOTLOG_REFERENCE_ENCODE_H
#define LOOTLOG_REFERENCE_ENCODE_H

#include "state/codec.h"

#include <jansson.h>

/* Adds key: value, or key: null for an empty value; -1 when jansson refuses value. */
static inline int ref_string_or_null(json_t *obj, const char *key, const char *value) {
    json_t *v = value[0] ? json_string(value) : json_null();
    return v ? json_object_set_new(obj, key, v) : -1;
}

/* The event as jansson dumps it; NULL when jansson refuses a string (invalid UTF-8). */
static inline char *reference_encode(const event *ev) {
    json_t *root = json_object(), *items = json_array(), *meta = json_object();
    int refused = 0;
    for (size_t i = 0; i < ev->item_count; i++) {
        json_t *line = json_object();
        json_array_append_new(items, line);
        json_object_set_new(line, "item_type", json_string(ev->items[i].item_type));
        json_object_set_new(line, "quantity", json_integer(ev->items[i].quantity));
        if (ev->items[i].has_unit_price)
            json_object_set_new(line, "unit_price", json_integer(ev->items[i].unit_price));
    }
    refused |= ref_string_or_null(meta, "remote_addr", ev->metadata.remote_addr);
    refused |= ref_string_or_null(meta, "host", ev->metadata.host);
    refused |= ref_string_or_null(meta, "user_agent", ev->metadata.user_agent);
    refused |= ref_string_or_null(meta, "accept_language", ev->metadata.accept_language);
    json_t *ts = json_string(ev->ts);
    refused |= ts == NULL;
    json_object_set_new(root, "v", json_integer(ev->version));
    json_object_set_new(root, "event_id", json_string(ev->event_id));
    json_object_set_new(root, "event_type", json_string(codec_type_name(ev->type)));
    json_object_set_new(root, "user_id", json_string(ev->user_id));
    json_object_set_new(root, "ts", ts);
    json_object_set(root, "items", items);
    ref_string_or_null(root, "guild_id", ev->guild_id);
    json_object_set_new(root, "expected_version",
                        ev->has_expected_version ? json_integer(ev->expected_version) : json_null());
    if (codec_type_is_emitted(ev->type))
        json_object_set_new(root, "cause_event_id", json_string(ev->cause_event_id));
    if (ev->type == EVENT_GUILD_JOIN_DECIDED) {
        json_object_set_new(root, "decision", json_string(ev->decision_granted ? "granted" : "refused"));
        ref_string_or_null(root, "reason", ev->decision_granted ? "" : ev->decision_reason);
    }
    json_object_set(root, "metadata", meta);
    char *out = refused ? NULL : json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(items);
    json_decref(meta);
    json_decref(root);
    return out;
}

#endif
