/* Unit tests of state/codec: encode -> decode round trip, and every reason the decoder
 * refuses a message (those become dead letters). */
#include "check.h"
#include "state/codec.h"

#include <stdlib.h>

static event sample_purchase(void) {
    event ev;
    memset(&ev, 0, sizeof ev);
    ev.version = 1;
    snprintf(ev.event_id, sizeof ev.event_id, "evt-1");
    ev.type = EVENT_PURCHASE_ITEM;
    snprintf(ev.user_id, sizeof ev.user_id, "alice");
    snprintf(ev.ts, sizeof ev.ts, "2026-11-29T08:14:00.123Z");
    ev.item_count = 2;
    snprintf(ev.items[0].item_type, sizeof ev.items[0].item_type, "sword");
    ev.items[0].quantity = 1;
    ev.items[0].unit_price = 100;
    ev.items[0].has_unit_price = 1;
    snprintf(ev.items[1].item_type, sizeof ev.items[1].item_type, "potion");
    ev.items[1].quantity = 5;
    snprintf(ev.metadata.host, sizeof ev.metadata.host, "game.example \"quoted\"");
    return ev;
}

static void test_round_trip(void) {
    char err[256];
    size_t len;
    event in = sample_purchase(), out;
    char *json = codec_encode(&in, &len, err, sizeof err);
    CHECK(json != NULL);
    /* The contract's top-level fields, in the contract's order. */
    CHECK(strncmp(json, "{\"v\":1,\"event_id\":\"evt-1\",\"event_type\":\"purchase_item\"", 52) == 0);
    CHECK(strstr(json, "\"guild_id\":null") != NULL);
    CHECK(strstr(json, "\"expected_version\":null") != NULL);
    CHECK(codec_decode(json, len, &out, err, sizeof err) == 0);
    CHECK_STR(out.event_id, "evt-1");
    CHECK(out.type == EVENT_PURCHASE_ITEM);
    CHECK_STR(out.user_id, "alice");
    CHECK(out.item_count == 2);
    CHECK_STR(out.items[1].item_type, "potion");
    CHECK(out.items[1].quantity == 5);
    CHECK(out.items[0].has_unit_price && out.items[0].unit_price == 100);
    CHECK(!out.items[1].has_unit_price);
    CHECK_STR(out.metadata.host, "game.example \"quoted\"");
    CHECK(!out.has_expected_version);
    free(json);

    in.type = EVENT_JOIN_GUILD;
    in.item_count = 0;
    snprintf(in.guild_id, sizeof in.guild_id, "knights");
    in.has_expected_version = 1;
    in.expected_version = 7;
    json = codec_encode(&in, &len, err, sizeof err);
    CHECK(codec_decode(json, len, &out, err, sizeof err) == 0);
    CHECK_STR(out.guild_id, "knights");
    CHECK(out.has_expected_version && out.expected_version == 7);
    free(json);
}

/* Each bad message must be refused, and the reason must mention what is wrong. */
static void expect_refused(const char *json, const char *reason_part) {
    char err[256] = "";
    event ev;
    int rc = codec_decode(json, strlen(json), &ev, err, sizeof err);
    CHECK(rc == -1);
    if (rc == -1 && !strstr(err, reason_part))
        fprintf(stderr, "  reason '%s' lacks '%s'\n", err, reason_part), check_failures++;
}

static void test_refusals(void) {
    const char *ok_tail = "\"user_id\":\"bob\",\"ts\":\"t\",\"items\":[{\"item_type\":\"axe\",\"quantity\":1}]}";
    char buf[512];
    expect_refused("", "empty");
    expect_refused("{not json", "invalid JSON");
    expect_refused("[1,2]", "not a JSON object");
    expect_refused("{\"event_id\":\"a\"}", "'v'");
    snprintf(buf, sizeof buf, "{\"v\":2,\"event_id\":\"a\",\"event_type\":\"purchase_item\",%s", ok_tail);
    expect_refused(buf, "unknown event version 2");
    snprintf(buf, sizeof buf, "{\"v\":1,\"event_id\":\"a\",\"event_type\":\"steal\",%s", ok_tail);
    expect_refused(buf, "unknown event_type");
    snprintf(buf, sizeof buf, "{\"v\":1,\"event_id\":5,\"event_type\":\"purchase_item\",%s", ok_tail);
    expect_refused(buf, "event_id");
    expect_refused("{\"v\":1,\"event_id\":\"a\",\"event_type\":\"purchase_item\",\"user_id\":\"b o b\",\"ts\":\"t\"}",
                   "user_id");
    expect_refused("{\"v\":1,\"event_id\":\"a\",\"event_type\":\"purchase_item\",\"user_id\":\"bob\",\"ts\":\"t\",\"items\":[]}",
                   "needs 1..50 items");
    expect_refused("{\"v\":1,\"event_id\":\"a\",\"event_type\":\"consume_item\",\"user_id\":\"bob\",\"ts\":\"t\",\"items\":[{\"item_type\":\"axe\",\"quantity\":0}]}",
                   "quantity");
    expect_refused("{\"v\":1,\"event_id\":\"a\",\"event_type\":\"consume_item\",\"user_id\":\"bob\",\"ts\":\"t\",\"items\":[{\"item_type\":\"axe\",\"quantity\":\"1\"}]}",
                   "quantity");
    expect_refused("{\"v\":1,\"event_id\":\"a\",\"event_type\":\"join_guild\",\"user_id\":\"bob\",\"ts\":\"t\",\"guild_id\":null}",
                   "guild_id");
    expect_refused("{\"v\":1,\"v\":1}", "invalid JSON"); /* duplicate keys */
}

static void test_identifiers(void) {
    char id65[66];
    memset(id65, 'a', 65);
    id65[65] = '\0';
    CHECK(codec_identifier_ok("alice_01.x-y"));
    CHECK(!codec_identifier_ok(""));
    CHECK(!codec_identifier_ok("al ice"));
    CHECK(!codec_identifier_ok("al/ice"));
    CHECK(!codec_identifier_ok(id65));
    id65[64] = '\0';
    CHECK(codec_identifier_ok(id65));
    char uuid[37];
    CHECK(codec_uuid4(uuid, sizeof uuid) == 0);
    CHECK(strlen(uuid) == 36 && uuid[14] == '4' && codec_identifier_ok(uuid));
}

static void test_utf8_copy(void) {
    char dst[8];
    codec_copy_utf8(dst, sizeof dst, "caf\xc3\xa9!");
    CHECK_STR(dst, "caf\xc3\xa9!");
    codec_copy_utf8(dst, sizeof dst, "caf\xe9");     /* latin-1 byte */
    CHECK_STR(dst, "caf?");
    codec_copy_utf8(dst, sizeof dst, "abcdef\xc3\xa9"); /* never split a character */
    CHECK_STR(dst, "abcdef");
    codec_copy_utf8(dst, sizeof dst, "\xed\xa0\x80x"); /* a surrogate is not UTF-8 */
    CHECK_STR(dst, "???x");
}

/* The scanner against JSON's corners: escapes, unknown members, numbers, nesting. */
static void test_scanner(void) {
    char err[256];
    event ev;
    const char *ok =
        " {\"extra\":[1,{\"a\":[true,false,null,-0.5e3]}],\"v\":1,\"event_id\":\"e\\u0031\","
        "\"event_type\":\"purchase_item\",\"user_id\":\"bob\",\"ts\":\"t\",\"items\":"
        "[{\"quantity\":2,\"item_type\":\"gem\",\"note\":\"x\"}],\"metadata\":"
        "{\"host\":\"caf\\u00e9 \\ud83d\\ude00\",\"user_agent\":7}} ";
    CHECK(codec_decode(ok, strlen(ok), &ev, err, sizeof err) == 0);
    CHECK_STR(ev.event_id, "e1");
    CHECK(ev.item_count == 1 && ev.items[0].quantity == 2);
    CHECK_STR(ev.metadata.host, "caf\xc3\xa9 \xf0\x9f\x98\x80");
    CHECK_STR(ev.metadata.user_agent, "");
    expect_refused("{\"v\":1.0}", "'v'");
    expect_refused("{\"v\":1} x", "invalid JSON");
    expect_refused("{\"v\":1,}", "invalid JSON");
    expect_refused("{\"v\":01}", "invalid JSON");
    expect_refused("{\"ts\":\"\xff\"}", "invalid JSON");
    expect_refused("{\"ts\":\"\\ud800\"}", "invalid JSON");
    expect_refused("{\"ts\":\"a\nb\"}", "invalid JSON");
    expect_refused("{\"a\":[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}",
                   "nested too deeply");
    expect_refused("{\"v\":1,\"event_id\":\"a\\u0000b\"}", "NUL");
    /* A long metadata value is cut at a character, never refused. */
    char big[700];
    int n = snprintf(big, sizeof big,
                     "{\"v\":1,\"event_id\":\"a\",\"event_type\":\"default\",\"user_id\":\"u\","
                     "\"ts\":\"t\",\"metadata\":{\"host\":\"");
    for (int i = 0; i < 200; i++) n += snprintf(big + n, sizeof big - (size_t)n, "\xc3\xa9");
    snprintf(big + n, sizeof big - (size_t)n, "\"}}");
    CHECK(codec_decode(big, strlen(big), &ev, err, sizeof err) == 0);
    CHECK(strlen(ev.metadata.host) == CODEC_META_MAX - 2); /* 127 two-byte characters */
}

int main(void) {
    test_utf8_copy();
    test_scanner();
    test_round_trip();
    test_refusals();
    test_identifiers();
    return check_finish("codec");
}
