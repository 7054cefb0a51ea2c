/* fuzz_codec: the event decoder (codec_decode), the gate between the topic and the fold.
 * Properties: it never crashes; a refusal's reason is short printable ASCII (it is logged
 * and stored); and whatever it accepts, jansson parses to the same fields, and encoding
 * the decoded event decodes back to the same event. */
#include "fuzz_check.h"
#include "state/codec.h"

#include <jansson.h>
#include <stdint.h>
#include <string.h>

/* A top-level string field as jansson sees it against the decoder's copy ("" for absent
 * or null, which the decoder stores as ""). */
static void same_string(json_t *root, const char *key, const char *decoded) {
    json_t *v = json_object_get(root, key);
    if (!v || json_is_null(v)) {
        FUZZ_ASSERT(decoded[0] == '\0');
        return;
    }
    FUZZ_ASSERT(json_is_string(v));
    FUZZ_ASSERT(json_string_length(v) == strlen(decoded));
    FUZZ_ASSERT(strcmp(json_string_value(v), decoded) == 0);
}

static void cross_check(const uint8_t *data, size_t size, const event *ev) {
    json_error_t jerr;
    json_t *root = json_loadb((const char *)data, size, JSON_ALLOW_NUL, &jerr);
    if (!root) {
        /* jansson cannot hold integers beyond int64 or reals beyond double; the decoder
         * skips such numbers in fields it does not read. Anything else is a mismatch. */
        FUZZ_ASSERT(json_error_code(&jerr) == json_error_numeric_overflow);
        return;
    }
    FUZZ_ASSERT(json_is_object(root));
    FUZZ_ASSERT(json_integer_value(json_object_get(root, "v")) == CODEC_EVENT_VERSION);
    same_string(root, "event_id", ev->event_id);
    same_string(root, "user_id", ev->user_id);
    same_string(root, "ts", ev->ts);
    same_string(root, "guild_id", ev->guild_id);
    same_string(root, "cause_event_id", ev->cause_event_id);
    same_string(root, "event_type", codec_type_name(ev->type));
    json_t *expected = json_object_get(root, "expected_version");
    if (ev->has_expected_version)
        FUZZ_ASSERT(json_is_integer(expected) && json_integer_value(expected) == ev->expected_version);
    else
        FUZZ_ASSERT(!expected || json_is_null(expected));
    json_t *items = json_object_get(root, "items");
    if (!items || json_is_null(items)) {
        FUZZ_ASSERT(ev->item_count == 0);
    } else {
        FUZZ_ASSERT(json_is_array(items) && json_array_size(items) == ev->item_count);
        for (size_t i = 0; i < ev->item_count; i++) {
            json_t *line = json_array_get(items, i);
            json_t *price = json_object_get(line, "unit_price");
            FUZZ_ASSERT(json_is_object(line));
            same_string(line, "item_type", ev->items[i].item_type);
            FUZZ_ASSERT(json_integer_value(json_object_get(line, "quantity")) == ev->items[i].quantity);
            if (ev->items[i].has_unit_price)
                FUZZ_ASSERT(json_is_integer(price) && json_integer_value(price) == ev->items[i].unit_price);
            else
                FUZZ_ASSERT(!price || json_is_null(price));
        }
    }
    json_decref(root);
}

/* encode(decode(x)) decodes to the same event: the fold and the producer agree. */
static void round_trip(const event *ev) {
    char errstr[256];
    size_t len;
    event again;
    char *json = codec_encode(ev, &len, errstr, sizeof errstr);
    FUZZ_ASSERT(json != NULL);
    FUZZ_ASSERT(codec_decode(json, len, &again, errstr, sizeof errstr) == 0);
    FUZZ_ASSERT(again.type == ev->type && again.item_count == ev->item_count);
    FUZZ_ASSERT(strcmp(again.event_id, ev->event_id) == 0 && strcmp(again.user_id, ev->user_id) == 0);
    FUZZ_ASSERT(strcmp(again.ts, ev->ts) == 0 && strcmp(again.guild_id, ev->guild_id) == 0);
    FUZZ_ASSERT(again.has_expected_version == ev->has_expected_version &&
                again.expected_version == ev->expected_version);
    for (size_t i = 0; i < ev->item_count; i++) {
        const event_item *a = &again.items[i], *b = &ev->items[i];
        FUZZ_ASSERT(strcmp(a->item_type, b->item_type) == 0 && a->quantity == b->quantity);
        FUZZ_ASSERT(a->has_unit_price == b->has_unit_price &&
                    (!a->has_unit_price || a->unit_price == b->unit_price));
    }
    free(json);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static event ev; /* ~6 KB: kept off the fuzzer's stack */
    char errstr[256];
    /* The fold's look ahead peeks at any record: within its bytes, and when the record
     * decodes with an id spelled plainly, at exactly that id. */
    size_t id_len = 0;
    const char *peeked = codec_peek_event_id((const char *)data, size, &id_len);
    if (peeked) FUZZ_ASSERT(peeked >= (const char *)data && peeked + id_len < (const char *)data + size);
    if (codec_decode((const char *)data, size, &ev, errstr, sizeof errstr) == 0) {
        if (peeked && !memchr(peeked, '\\', id_len))
            FUZZ_ASSERT(id_len == strlen(ev.event_id) && memcmp(peeked, ev.event_id, id_len) == 0);
        cross_check(data, size, &ev);
        round_trip(&ev);
        return 0;
    }
    FUZZ_ASSERT(errstr[0] != '\0' && strlen(errstr) < 200);
    for (const char *c = errstr; *c; c++) FUZZ_ASSERT((unsigned char)*c >= 0x20 && (unsigned char)*c < 0x7f);
    return 0;
}
