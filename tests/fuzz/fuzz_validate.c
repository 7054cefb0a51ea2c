/* fuzz_validate: request validation (server/validate.c) with any bytes as the body, the
 * path identifier and the headers. Properties: no crash; a refusal has one of the
 * contract's statuses and a code; what is accepted is what the fold can take (valid
 * identifiers, catalog items, quantities and carts in range). */
#include "fuzz_check.h"
#include "server/validate.h"

#include <stdint.h>
#include <string.h>
#include <strings.h>

static const catalog *load_catalog(void) {
    static catalog *cat;
    char errstr[256];
    if (!cat) cat = catalog_load(NULL, errstr, sizeof errstr);
    FUZZ_ASSERT(cat != NULL);
    return cat;
}

static void refused_well(const validate_error *err) {
    FUZZ_ASSERT(err->status == 400 || err->status == 412 || err->status == 413 ||
                err->status == 415 || err->status == 422);
    FUZZ_ASSERT(err->code[0] != '\0');
}

static void lines_ok(const event *ev, const catalog *cat, int allow_price) {
    FUZZ_ASSERT(ev->item_count >= 1 && ev->item_count <= CODEC_MAX_ITEMS);
    for (size_t i = 0; i < ev->item_count; i++) {
        const event_item *it = &ev->items[i];
        FUZZ_ASSERT(codec_identifier_ok(it->item_type) && catalog_find(cat, it->item_type));
        FUZZ_ASSERT(it->quantity >= 1 && it->quantity <= CODEC_QUANTITY_MAX);
        FUZZ_ASSERT(!it->has_unit_price || (allow_price && it->unit_price >= 0));
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static event ev;
    validate_error err;
    const catalog *cat = load_catalog();
    const char *body = (const char *)data;

    memset(&ev, 0, sizeof ev);
    if (validate_purchase(body, size, cat, &ev, &err) == 0) lines_ok(&ev, cat, 1);
    else refused_well(&err);
    memset(&ev, 0, sizeof ev);
    if (validate_consumption(body, size, cat, &ev, &err) == 0) lines_ok(&ev, cat, 0);
    else refused_well(&err);
    memset(&ev, 0, sizeof ev);
    if (validate_guild_join(body, size, &ev, &err) == 0) FUZZ_ASSERT(codec_identifier_ok(ev.guild_id));
    else refused_well(&err);

    /* The same bytes as a path segment and as header values (text up to a NUL, as
     * libevent hands them over). */
    char text[512];
    size_t n = size < sizeof text - 1 ? size : sizeof text - 1;
    memcpy(text, data, n);
    text[n] = '\0';
    if (validate_identifier("user_id", text, &err) == 0) {
        size_t len = strlen(text);
        FUZZ_ASSERT(len >= 1 && len <= CODEC_ID_MAX && strspn(text, "abcdefghijklmnopqrstuvwxyz"
                                                                   "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                                                   "0123456789_.-") == len);
    } else {
        refused_well(&err);
    }
    if (validate_content_type(text, &err) == 0) FUZZ_ASSERT(strncasecmp(text, "application/json", 16) == 0);
    else refused_well(&err);
    int64_t version;
    int any;
    if (validate_if_match(text, &version, &any, &err) == 0) FUZZ_ASSERT(any || version >= 0);
    else refused_well(&err);
    return 0;
}
