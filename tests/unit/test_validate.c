/* Unit tests of server/validate: request bodies and headers -> event fields or the
 * contract's error code and status. */
#include "check.h"
#include "server/validate.h"

static const catalog *cat;

static void expect_error(int rc, const validate_error *err, int status, const char *code) {
    CHECK(rc == -1);
    CHECK(err->status == status);
    CHECK_STR(err->code, code);
}

static void test_purchase(void) {
    event ev;
    validate_error err;
    memset(&ev, 0, sizeof ev);
    const char *one = "{\"item_type\":\"sword\",\"quantity\":2,\"unit_price\":100}";
    CHECK(validate_purchase(one, strlen(one), cat, &ev, &err) == 0);
    CHECK(ev.item_count == 1 && ev.items[0].quantity == 2 && ev.items[0].unit_price == 100);

    const char *cart = "{\"items\":[{\"item_type\":\"bow\",\"quantity\":1},{\"item_type\":\"arrow\",\"quantity\":50}]}";
    CHECK(validate_purchase(cart, strlen(cart), cat, &ev, &err) == 0);
    CHECK(ev.item_count == 2 && strcmp(ev.items[1].item_type, "arrow") == 0);

    const char *bad_json = "{\"item_type\":";
    expect_error(validate_purchase(bad_json, strlen(bad_json), cat, &ev, &err), &err, 400, "invalid_json");
    const char *unknown = "{\"item_type\":\"laser\",\"quantity\":1}";
    expect_error(validate_purchase(unknown, strlen(unknown), cat, &ev, &err), &err, 422, "unknown_item_type");
    const char *zero = "{\"item_type\":\"sword\",\"quantity\":0}";
    expect_error(validate_purchase(zero, strlen(zero), cat, &ev, &err), &err, 422, "invalid_quantity");
    const char *huge = "{\"item_type\":\"sword\",\"quantity\":1000001}";
    expect_error(validate_purchase(huge, strlen(huge), cat, &ev, &err), &err, 422, "invalid_quantity");
    const char *bad_id = "{\"item_type\":\"sw ord\",\"quantity\":1}";
    expect_error(validate_purchase(bad_id, strlen(bad_id), cat, &ev, &err), &err, 400, "invalid_identifier");
    const char *empty_cart = "{\"items\":[]}";
    expect_error(validate_purchase(empty_cart, strlen(empty_cart), cat, &ev, &err), &err, 422, "invalid_cart");

    char big[4096] = "{\"items\":[";
    for (int i = 0; i < 51; i++) strcat(big, i ? ",{\"item_type\":\"gem\",\"quantity\":1}" : "{\"item_type\":\"gem\",\"quantity\":1}");
    strcat(big, "]}");
    expect_error(validate_purchase(big, strlen(big), cat, &ev, &err), &err, 422, "invalid_cart");
}

static void test_other_bodies(void) {
    event ev;
    validate_error err;
    memset(&ev, 0, sizeof ev);
    const char *use = "{\"item_type\":\"potion\",\"quantity\":1}";
    CHECK(validate_consumption(use, strlen(use), cat, &ev, &err) == 0);
    const char *priced = "{\"item_type\":\"potion\",\"quantity\":1,\"unit_price\":3}";
    expect_error(validate_consumption(priced, strlen(priced), cat, &ev, &err), &err, 400, "invalid_request");
    const char *guild = "{\"guild_id\":\"knights\"}";
    CHECK(validate_guild_join(guild, strlen(guild), &ev, &err) == 0);
    CHECK_STR(ev.guild_id, "knights");
    const char *bad_guild = "{\"guild_id\":\"\"}";
    expect_error(validate_guild_join(bad_guild, strlen(bad_guild), &ev, &err), &err, 400, "invalid_identifier");
}

static void test_headers(void) {
    validate_error err;
    CHECK(validate_content_type("application/json", &err) == 0);
    CHECK(validate_content_type("application/json; charset=utf-8", &err) == 0);
    expect_error(validate_content_type("text/plain", &err), &err, 415, "unsupported_media_type");
    expect_error(validate_content_type(NULL, &err), &err, 415, "unsupported_media_type");
    expect_error(validate_content_type("application/jsonx", &err), &err, 415, "unsupported_media_type");
}

/* If-Match compares strongly: "<version>" only, * for "the player exists", a weak tag
 * never matches (412), and no value saturates to INT64_MAX. */
static void test_if_match(void) {
    validate_error err;
    int64_t v = -1;
    int any = -1;
    CHECK(validate_if_match("\"7\"", &v, &any, &err) == 0 && v == 7 && any == 0);
    CHECK(validate_if_match(" \t\"0\" ", &v, &any, &err) == 0 && v == 0 && any == 0);
    CHECK(validate_if_match("\"999999999999999999\"", &v, &any, &err) == 0 &&
          v == 999999999999999999LL);
    CHECK(validate_if_match("*", &v, &any, &err) == 0 && any == 1);
    CHECK(validate_if_match(" * ", &v, &any, &err) == 0 && any == 1);
    expect_error(validate_if_match("W/\"3\"", &v, &any, &err), &err, 412, "precondition_failed");
    expect_error(validate_if_match("W/\"x\"", &v, &any, &err), &err, 412, "precondition_failed");
    /* 19 digits and more: 400, never a saturated INT64_MAX */
    expect_error(validate_if_match("\"1000000000000000000\"", &v, &any, &err), &err, 400,
                 "if_match_out_of_range");
    expect_error(validate_if_match("\"9223372036854775807\"", &v, &any, &err), &err, 400,
                 "if_match_out_of_range");
    expect_error(validate_if_match("\"99999999999999999999999\"", &v, &any, &err), &err, 400,
                 "if_match_out_of_range");
    const char *bad[] = {"12", "\"x\"", "\"7", "-1", "\"-1\"", "\"+7\"", "\"07\"", "\" 7\"",
                         "\"7\" x", "\"7\", \"8\"", "**", "", "\"\"", "\"1e3\"", "W/"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = validate_if_match(bad[i], &v, &any, &err);
        if (strcmp(bad[i], "W/") == 0) {
            expect_error(rc, &err, 412, "precondition_failed");
            continue;
        }
        expect_error(rc, &err, 400, "invalid_if_match");
        if (rc != -1 || strcmp(err.code, "invalid_if_match") != 0) fprintf(stderr, "  If-Match: %s\n", bad[i]);
    }
}

/* The read-your-writes token: only what a write's answer holds. */
static void test_token(void) {
    validate_error err;
    int32_t p = -1;
    int64_t o = -1;
    CHECK(validate_token("3:17", 256, &p, &o, &err) == 0 && p == 3 && o == 17);
    CHECK(validate_token("0:0", 256, &p, &o, &err) == 0 && p == 0 && o == 0);
    CHECK(validate_token("255:999999999999999999", 256, &p, &o, &err) == 0 && p == 255 &&
          o == 999999999999999999LL);
    /* leading zeros are allowed (the spec's pattern has them), not more digits */
    CHECK(validate_token("003:000000000000000000000017", 256, &p, &o, &err) == 0 && p == 3 && o == 17);
    const char *bad[] = {"", ":", "3", "3:", ":7", "256:1", "-1:5", "3:-5", "+3:5", "3:+5", " 3:5",
                         "3:5 ", "3:5:7", "3:9223372036854775807", "3:1000000000000000000",
                         "3:99999999999999999999", "99999999999:1", "3:0x10", "3:1e3"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        int rc = validate_token(bad[i], 256, &p, &o, &err);
        expect_error(rc, &err, 400, "invalid_token");
        if (rc != -1) fprintf(stderr, "  token accepted: %s\n", bad[i]);
    }
}

int main(void) {
    char errstr[256];
    catalog *loaded = catalog_load(NULL, errstr, sizeof errstr);
    CHECK(loaded != NULL);
    if (!loaded) return check_finish("validate");
    CHECK(catalog_count(loaded) >= 12);
    CHECK_STR(catalog_find(loaded, "sword")->category, "weapon");
    cat = loaded;
    test_purchase();
    test_other_bodies();
    test_headers();
    test_if_match();
    test_token();
    catalog_free(loaded);
    return check_finish("validate");
}
