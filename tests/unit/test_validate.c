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
    long long v;
    CHECK(validate_content_type("application/json", &err) == 0);
    CHECK(validate_content_type("application/json; charset=utf-8", &err) == 0);
    expect_error(validate_content_type("text/plain", &err), &err, 415, "unsupported_media_type");
    expect_error(validate_content_type(NULL, &err), &err, 415, "unsupported_media_type");
    expect_error(validate_content_type("application/jsonx", &err), &err, 415, "unsupported_media_type");
    CHECK(validate_if_match("\"7\"", &v, &err) == 0 && v == 7);
    CHECK(validate_if_match("12", &v, &err) == 0 && v == 12);
    CHECK(validate_if_match("W/\"3\"", &v, &err) == 0 && v == 3);
    expect_error(validate_if_match("\"x\"", &v, &err), &err, 400, "invalid_if_match");
    expect_error(validate_if_match("\"7", &v, &err), &err, 400, "invalid_if_match");
    expect_error(validate_if_match("-1", &v, &err), &err, 400, "invalid_if_match");
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
    catalog_free(loaded);
    return check_finish("validate");
}
