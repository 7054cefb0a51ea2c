/* Unit tests of state/codec: encode -> decode round trip, and every reason the decoder
 * refuses a message (those become dead letters). */
#include "check.h"
#include "state/codec.h"
#include "tests/unit/reference_encode.h"

#include <stdint.h>
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
    const char *ok_tail = "\"user_id\":\"bob\",\"ts\":\"2026-11-29T08:14:00.123Z\",\"items\":[{\"item_type\":\"axe\",\"quantity\":1}]}";
    char buf[512];
    expect_refused("", "empty");
    expect_refused("{not json", "invalid JSON");
    expect_refused("[1,2]", "not a JSON object");
    expect_refused("\"v\":1,\"x\":2}", "invalid JSON"); /* a value, then more: a reason too */
    expect_refused("{\"event_id\":\"a\"}", "'v'");
    snprintf(buf, sizeof buf, "{\"v\":2,\"event_id\":\"a\",\"event_type\":\"purchase_item\",%s", ok_tail);
    expect_refused(buf, "unknown event version 2");
    snprintf(buf, sizeof buf, "{\"v\":1,\"event_id\":\"a\",\"event_type\":\"steal\",%s", ok_tail);
    expect_refused(buf, "unknown event_type");
    snprintf(buf, sizeof buf, "{\"v\":1,\"event_id\":5,\"event_type\":\"purchase_item\",%s", ok_tail);
    expect_refused(buf, "event_id");
    expect_refused("{\"v\":1,\"event_id\":\"a\",\"event_type\":\"purchase_item\",\"user_id\":\"b o b\",\"ts\":\"2026-11-29T08:14:00.123Z\"}",
                   "user_id");
    expect_refused("{\"v\":1,\"event_id\":\"a\",\"event_type\":\"purchase_item\",\"user_id\":\"bob\",\"ts\":\"2026-11-29T08:14:00.123Z\",\"items\":[]}",
                   "needs 1..50 items");
    expect_refused("{\"v\":1,\"event_id\":\"a\",\"event_type\":\"consume_item\",\"user_id\":\"bob\",\"ts\":\"2026-11-29T08:14:00.123Z\",\"items\":[{\"item_type\":\"axe\",\"quantity\":0}]}",
                   "quantity");
    expect_refused("{\"v\":1,\"event_id\":\"a\",\"event_type\":\"consume_item\",\"user_id\":\"bob\",\"ts\":\"2026-11-29T08:14:00.123Z\",\"items\":[{\"item_type\":\"axe\",\"quantity\":\"1\"}]}",
                   "quantity");
    expect_refused("{\"v\":1,\"event_id\":\"a\",\"event_type\":\"join_guild\",\"user_id\":\"bob\",\"ts\":\"2026-11-29T08:14:00.123Z\",\"guild_id\":null}",
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
    /* Every byte, alone and inside an identifier, against the rule [A-Za-z0-9_.-]. */
    int wrong = 0;
    for (int c = 1; c < 256; c++) {
        int allowed = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                      (c >= '0' && c <= '9') || c == '_' || c == '.' || c == '-';
        char alone[2] = {(char)c, '\0'}, inside[4] = {'a', (char)c, 'z', '\0'};
        wrong += codec_identifier_ok(alone) != allowed;
        wrong += codec_identifier_ok(inside) != allowed;
    }
    CHECK(wrong == 0);
    char uuid[37];
    CHECK(codec_uuid4(uuid, sizeof uuid) == 0);
    CHECK(strlen(uuid) == 36 && uuid[14] == '4' && codec_identifier_ok(uuid));
    /* Derived ids are persisted (the receivers dedupe by them): the bytes never change.
     * Python: sha256(b"evt-1/guild_join_requested")[:16], version 8 and variant set. */
    CHECK(codec_derived_event_id("evt-1", EVENT_GUILD_JOIN_REQUESTED, uuid, sizeof uuid) == 0);
    CHECK_STR(uuid, "15aaf2bf-9994-8b3d-81e8-e1ca54f45c38");
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
        "\"event_type\":\"purchase_item\",\"user_id\":\"bob\",\"ts\":\"2026-11-29T08:14:00.123Z\",\"items\":"
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
                     "\"ts\":\"2026-11-29T08:14:00.123Z\",\"metadata\":{\"host\":\"");
    for (int i = 0; i < 200; i++) n += snprintf(big + n, sizeof big - (size_t)n, "\xc3\xa9");
    snprintf(big + n, sizeof big - (size_t)n, "\"}}");
    CHECK(codec_decode(big, strlen(big), &ev, err, sizeof err) == 0);
    CHECK(strlen(ev.metadata.host) == CODEC_META_MAX - 2); /* 127 two-byte characters */
}

/* A valid purchase with one part replaced: the text of fmt with %s for that part. */
static const char *with(char *buf, size_t size, const char *fmt, const char *part) {
    snprintf(buf, size, fmt, part);
    return buf;
}

static int decodes(const char *json) {
    char err[256];
    event ev;
    return codec_decode(json, strlen(json), &ev, err, sizeof err) == 0;
}

/* Keys are compared as decoded text: a U+0000 inside one is refused, not cut short. */
static void test_hostile_keys(void) {
    char buf[512];
    const char *base = "{\"v\":1,\"event_id\":\"a\",\"event_type\":\"purchase_item\",%s,"
                       "\"ts\":\"2026-11-29T08:14:00.123Z\","
                       "\"items\":[{\"item_type\":\"axe\",\"quantity\":1}]}";
    CHECK(decodes(with(buf, sizeof buf, base, "\"user_id\":\"bob\"")));
    expect_refused(with(buf, sizeof buf, base, "\"user_id\\u0000x\":\"bob\""), "U+0000");
    expect_refused(with(buf, sizeof buf, base, "\"user_id\":\"bob\",\"x\\u0000\":1"), "U+0000");
    /* An escaped spelling of a known key is that key, so it counts as a repeat. */
    expect_refused(with(buf, sizeof buf, base, "\"user_id\":\"bob\",\"user_\\u0069d\":\"eve\""),
                   "duplicate object key 'user_id'");
    /* A long key, escaped or not, is still compared as a whole. */
    expect_refused(with(buf, sizeof buf, base,
                        "\"user_id\":\"bob\",\"k234567890123456789012345678901234567890123456789012345678901234567890\":1,"
                        "\"k234567890123456789012345678901234567890123456789012345678901234567\\u0038\\u00390\":2"),
                   "duplicate object key");
    CHECK(decodes(with(buf, sizeof buf, base,
                       "\"user_id\":\"bob\",\"k234567890123456789012345678901234567890123456789012345678901234567890\":1,"
                       "\"k234567890123456789012345678901234567890123456789012345678901234567890x\":2")));
    CHECK(decodes(with(buf, sizeof buf, base, "\"user_id\":\"bob\",\"\\ud83d\\ude00\":1,\"\\ud83d\\ude01\":1")));
    expect_refused(with(buf, sizeof buf, base,
                        "\"user_id\":\"bob\",\"\\ud83d\\ude00\":1,\"\xf0\x9f\x98\x80\":1"),
                   "duplicate");
    /* Repeats anywhere: an unknown top-level key, a cart line, metadata, deeper down. */
    expect_refused(with(buf, sizeof buf, base, "\"user_id\":\"bob\",\"x\":1,\"x\":2"), "duplicate");
    expect_refused(with(buf, sizeof buf, base, "\"user_id\":\"bob\",\"x\":{\"a\":[{\"b\":1,\"b\":1}]}"),
                   "duplicate object key 'b'");
    expect_refused(with(buf, sizeof buf, base,
                        "\"user_id\":\"bob\",\"metadata\":{\"host\":\"a\",\"host\":\"b\"}"),
                   "duplicate object key 'host'");
    expect_refused("{\"v\":1,\"event_id\":\"a\",\"event_type\":\"purchase_item\",\"user_id\":\"bob\","
                   "\"ts\":\"2026-11-29T08:14:00.123Z\",\"items\":[{\"item_type\":\"axe\","
                   "\"item_type\":\"gem\",\"quantity\":1}]}",
                   "duplicate object key 'item_type'");
    /* More members than any event object has is refused before the repeats check gets dear. */
    char many[2048];
    int n = snprintf(many, sizeof many, "{\"v\":1");
    for (int i = 0; i < 64; i++) n += snprintf(many + n, sizeof many - (size_t)n, ",\"k%d\":0", i);
    snprintf(many + n, sizeof many - (size_t)n, "}");
    expect_refused(many, "more than 64 members");
}

/* The decoder takes the keys codec_encode writes, in its order, by one comparison each,
 * and scans any other spelling, order or spacing: the event must come out the same
 * either way (compared by encoding both), and a repeat must be refused however each of
 * its two keys was read. */
static void test_keys_as_written_and_otherwise(void) {
    static const char *const spellings[] = {
        /* as codec_encode writes it */
        "{\"v\":1,\"event_id\":\"a\",\"event_type\":\"purchase_item\",\"user_id\":\"bob\","
        "\"ts\":\"2026-11-29T08:14:00.123Z\",\"items\":[{\"item_type\":\"axe\",\"quantity\":2,"
        "\"unit_price\":5}],\"guild_id\":null,\"expected_version\":3,\"metadata\":{"
        "\"remote_addr\":null,\"host\":\"h\",\"user_agent\":null,\"accept_language\":null}}",
        /* another order, spaces, members left out */
        "{ \"metadata\" : {\"host\":\"h\"}, \"items\":[{\"unit_price\":5, \"quantity\" :2,"
        "\"item_type\":\"axe\"}], \"ts\":\"2026-11-29T08:14:00.123Z\",\"user_id\":\"bob\","
        "\"expected_version\":3 ,\"event_type\":\"purchase_item\",\"event_id\":\"a\",\"v\":1 }",
        /* escaped spellings of the same keys, in order */
        "{\"\\u0076\":1,\"event_\\u0069d\":\"a\",\"event_type\":\"purchase_item\",\"user_id\":\"bob\","
        "\"ts\":\"2026-11-29T08:14:00.123Z\",\"items\":[{\"item_typ\\u0065\":\"axe\",\"quantity\":2,"
        "\"unit_price\":5}],\"expected_version\":3,\"metadata\":{\"h\\u006fst\":\"h\"}}",
    };
    char err[256], *first = NULL;
    for (size_t i = 0; i < sizeof spellings / sizeof spellings[0]; i++) {
        event ev;
        size_t len;
        int rc = codec_decode(spellings[i], strlen(spellings[i]), &ev, err, sizeof err);
        if (rc) fprintf(stderr, "  spelling %zu: %s\n", i, err);
        CHECK(rc == 0);
        if (rc) continue;
        char *text = codec_encode(&ev, &len, err, sizeof err);
        CHECK(text != NULL);
        if (i == 0) {
            CHECK(text && strcmp(text, spellings[0]) == 0);
            first = text;
            continue;
        }
        CHECK(first && text && strcmp(text, first) == 0);
        free(text);
    }
    free(first);
    /* repeats after the keys taken as written, before them, and inside metadata */
    char buf[1024];
    snprintf(buf, sizeof buf, "%.*s,\"v\":1}", (int)strlen(spellings[0]) - 1, spellings[0]);
    expect_refused(buf, "duplicate object key 'v'");
    snprintf(buf, sizeof buf, "{\"\\u0076\":1,%s", spellings[0] + 1);
    expect_refused(buf, "duplicate object key 'v'");
    snprintf(buf, sizeof buf, "{\"metadata\":{},%s", spellings[0] + 1);
    expect_refused(buf, "duplicate object key 'metadata'");
    expect_refused("{\"v\":1,\"event_id\":\"a\",\"event_type\":\"purchase_item\",\"user_id\":\"bob\","
                   "\"ts\":\"2026-11-29T08:14:00.123Z\",\"items\":[{\"item_type\":\"axe\",\"quantity\":2}],"
                   "\"metadata\":{\"remote_addr\":null,\"host\":null,\"user_agent\":null,"
                   "\"accept_language\":null,\"host\":null}}",
                   "duplicate object key 'host'");
    /* the metadata of nulls taken whole still ends where the event must end */
    const char *nulls = "{\"v\":1,\"event_id\":\"a\",\"event_type\":\"purchase_item\",\"user_id\":\"bob\","
                        "\"ts\":\"2026-11-29T08:14:00.123Z\",\"items\":[{\"item_type\":\"axe\",\"quantity\":2}],"
                        "\"metadata\":{\"remote_addr\":null,\"host\":null,\"user_agent\":null,"
                        "\"accept_language\":null}";
    snprintf(buf, sizeof buf, "%s}", nulls);
    CHECK(decodes(buf));
    snprintf(buf, sizeof buf, "%s}x", nulls);
    expect_refused(buf, "text after the event");
    expect_refused(nulls, "'}' was expected");
}

/* guild_id belongs to the guild events only; other types with one are refused. */
static void test_guild_id_scope(void) {
    char buf[512];
    const char *fmt = "{\"v\":1,\"event_id\":\"a\",\"event_type\":\"%s\",\"user_id\":\"bob\","
                      "\"ts\":\"2026-11-29T08:14:00.123Z\",\"guild_id\":\"knights\","
                      "\"items\":[{\"item_type\":\"axe\",\"quantity\":1}]}";
    expect_refused(with(buf, sizeof buf, fmt, "purchase_item"), "purchase_item takes no guild_id");
    expect_refused(with(buf, sizeof buf, fmt, "consume_item"), "takes no guild_id");
    expect_refused(with(buf, sizeof buf, fmt, "default"), "takes no guild_id");
    const char *join = "{\"v\":1,\"event_id\":\"a\",\"event_type\":\"%s\",\"user_id\":\"bob\","
                       "\"ts\":\"2026-11-29T08:14:00.123Z\",\"guild_id\":\"knights\"}";
    CHECK(decodes(with(buf, sizeof buf, join, "join_guild")));
    CHECK(decodes(with(buf, sizeof buf, join, "leave_guild")));
    expect_refused("{\"v\":1,\"event_id\":\"a\",\"event_type\":\"leave_guild\",\"user_id\":\"bob\","
                   "\"ts\":\"2026-11-29T08:14:00.123Z\",\"guild_id\":\"../x\"}",
                   "guild_id is not a valid identifier");
    /* "" is no guild id either, on a guild event or not */
    expect_refused("{\"v\":1,\"event_id\":\"a\",\"event_type\":\"default\",\"user_id\":\"bob\","
                   "\"ts\":\"2026-11-29T08:14:00.123Z\",\"guild_id\":\"\"}",
                   "guild_id");
    CHECK(decodes("{\"v\":1,\"event_id\":\"a\",\"event_type\":\"default\",\"user_id\":\"bob\","
                  "\"ts\":\"2026-11-29T08:14:00.123Z\",\"guild_id\":null}"));
}

/* ts: exactly the form lootlog writes, and a real instant. */
static void test_ts(void) {
    char buf[512];
    const char *fmt = "{\"v\":1,\"event_id\":\"a\",\"event_type\":\"default\",\"user_id\":\"bob\","
                      "\"ts\":\"%s\"}";
    const char *good[] = {"2026-11-29T08:14:00.123Z", "1970-01-01T00:00:00.000Z",
                          "2024-02-29T23:59:59.999Z", "2000-02-29T12:00:00.000Z",
                          "9999-12-31T23:59:59.999Z"};
    const char *bad[] = {"", "t", "../\\n\\u00e9", "2026-11-29T08:14:00Z", "2026-11-29T08:14:00.12Z",
                         "2026-11-29T08:14:00.1234Z", "2026-11-29 08:14:00.123Z",
                         "2026-11-29T08:14:00.123+00:00", "2026-11-29t08:14:00.123z",
                         "2026-11-29T08:14:00.123Z ", " 2026-11-29T08:14:00.123Z",
                         "2026-13-01T00:00:00.000Z", "2026-00-01T00:00:00.000Z",
                         "2026-04-31T00:00:00.000Z", "2025-02-29T00:00:00.000Z",
                         "1900-02-29T00:00:00.000Z", "2026-11-29T24:00:00.000Z",
                         "2026-11-29T08:60:00.000Z", "2026-11-29T08:14:60.000Z",
                         "1969-12-31T23:59:59.999Z", "+2026-11-29T08:14:00.123Z",
                         "2026-11-29T08:14:00.123Z\\u0000"};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        int ok = decodes(with(buf, sizeof buf, fmt, good[i]));
        CHECK(ok);
        if (!ok) fprintf(stderr, "  refused ts %s\n", good[i]);
    }
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_refused(with(buf, sizeof buf, fmt, bad[i]), "ts");
}

/* A reason quotes message text only as a short excerpt, with no control character or
 * quote in it: the reason is logged and stored, and must not forge a line. */
static void test_reason_excerpts(void) {
    char err[256];
    event ev;
    const char *tricks[] = {
        "{\"v\":1,\"event_id\":\"a\",\"event_type\":\"x\\n2026 error forged\",\"user_id\":\"b\","
        "\"ts\":\"2026-11-29T08:14:00.123Z\"}",
        "{\"v\":1,\"event_id\":\"a\",\"event_type\":\"x\\r\\u001b[31m'\\\\\\u00e9\",\"user_id\":\"b\","
        "\"ts\":\"2026-11-29T08:14:00.123Z\"}",
        "{\"a\\nforged line\\u2028\":1,\"a\\nforged line\\u2028\":1}",
        "{\"v\":1,\"event_id\":\"a\",\"event_type\":\"zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz\"}",
    };
    for (size_t i = 0; i < sizeof tricks / sizeof tricks[0]; i++) {
        CHECK(codec_decode(tricks[i], strlen(tricks[i]), &ev, err, sizeof err) == -1);
        int clean = 1;
        for (const char *c = err; *c; c++)
            if ((unsigned char)*c < 0x20 || (unsigned char)*c >= 0x7f) clean = 0;
        CHECK(clean);
        CHECK(strlen(err) < 140);
        if (!clean) fprintf(stderr, "  reason not clean: %s\n", err);
    }
    CHECK(codec_decode(tricks[0], strlen(tricks[0]), &ev, err, sizeof err) == -1);
    CHECK_STR(err, "unknown event_type 'x\\x0a2026 error forged'");
    CHECK(codec_decode(tricks[2], strlen(tricks[2]), &ev, err, sizeof err) == -1);
    CHECK_STR(err, "invalid JSON: duplicate object key 'a\\x0aforged line\\xe2\\x80\\xa8'");
}

static void random_identifier(unsigned *seed, char *out, size_t size) {
    static const char chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-";
    size_t n = 1 + (size_t)rand_r(seed) % (size - 1);
    for (size_t i = 0; i < n; i++) out[i] = chars[rand_r(seed) % (sizeof chars - 1)];
    out[n] = '\0';
}

/* Text of every kind a header can bring: plain ASCII, quotes, backslashes, slashes,
 * control characters and DEL, 2-, 3- and 4-byte UTF-8, and (1 time in 8) a byte that
 * is no UTF-8 at all; or empty (a null). */
static void random_text(unsigned *seed, char *out, size_t size) {
    static const char *const pieces[] = {"a", "Z", "9", " ", "\"", "\\", "/", "\b", "\f", "\n",
                                         "\r", "\t", "\x01", "\x1f", "\x7f", "\xc3\xa9",
                                         "\xe2\x82\xac", "\xf0\x9f\x8e\xae", "\xe2\x80\xa8"};
    size_t used = 0, want = (size_t)rand_r(seed) % 40;
    for (size_t i = 0; i < want; i++) {
        const char *piece = pieces[rand_r(seed) % (sizeof pieces / sizeof *pieces)];
        size_t n = strlen(piece);
        if (used + n + 2 > size) break;
        memcpy(out + used, piece, n);
        used += n;
    }
    if (used && rand_r(seed) % 8 == 0) out[rand_r(seed) % used] = (char)0xff;
    out[used] = '\0';
}

static void test_encoder_matches_jansson(void) {
    unsigned seed = 20261204;
    int refused = 0, emitted = 0;
    for (int round = 0; round < 3000; round++) {
        event ev;
        memset(&ev, 0, sizeof ev);
        ev.version = 1 + rand_r(&seed) % 3;
        ev.type = (event_type)(1 + rand_r(&seed) % (EVENT_TYPE_COUNT - 1));
        random_identifier(&seed, ev.event_id, sizeof ev.event_id);
        random_identifier(&seed, ev.user_id, sizeof ev.user_id);
        random_text(&seed, ev.ts, sizeof ev.ts);
        if (rand_r(&seed) % 2) random_identifier(&seed, ev.guild_id, sizeof ev.guild_id);
        random_identifier(&seed, ev.cause_event_id, sizeof ev.cause_event_id);
        ev.decision_granted = rand_r(&seed) % 2;
        if (rand_r(&seed) % 4) snprintf(ev.decision_reason, sizeof ev.decision_reason, "guild_full");
        ev.has_expected_version = rand_r(&seed) % 2;
        ev.expected_version = (int64_t)rand_r(&seed) * (rand_r(&seed) % 2 ? 1 : -4000000);
        if (round < 2) ev.expected_version = round ? INT64_MAX : INT64_MIN; /* the extremes */
        ev.has_expected_version |= round < 2;
        ev.item_count = (size_t)rand_r(&seed) % (CODEC_MAX_ITEMS + 1);
        for (size_t i = 0; i < ev.item_count; i++) {
            random_identifier(&seed, ev.items[i].item_type, sizeof ev.items[i].item_type);
            ev.items[i].quantity = rand_r(&seed) % (CODEC_QUANTITY_MAX + 1);
            ev.items[i].has_unit_price = rand_r(&seed) % 2;
            ev.items[i].unit_price = (int64_t)rand_r(&seed) << (rand_r(&seed) % 32);
        }
        random_text(&seed, ev.metadata.remote_addr, sizeof ev.metadata.remote_addr);
        random_text(&seed, ev.metadata.host, sizeof ev.metadata.host);
        random_text(&seed, ev.metadata.user_agent, sizeof ev.metadata.user_agent);
        random_text(&seed, ev.metadata.accept_language, sizeof ev.metadata.accept_language);
        char errstr[256] = "";
        size_t len = 0;
        char *ours = codec_encode(&ev, &len, errstr, sizeof errstr);
        char *reference = reference_encode(&ev);
        if (!reference) {
            refused++;
            CHECK(ours == NULL && strstr(errstr, "not valid UTF-8") != NULL);
        } else if (!ours || strcmp(ours, reference) != 0 || len != strlen(reference)) {
            check_failures++;
            fprintf(stderr, "round %d: encoded\n  %s\nwhere jansson gives\n  %s\n", round,
                    ours ? ours : errstr, reference);
        }
        emitted += codec_type_is_emitted(ev.type) && reference != NULL;
        free(ours);
        free(reference);
    }
    /* both kinds of answer, and the emitted types' extra fields, were exercised */
    CHECK(refused > 100 && refused < 2900);
    CHECK(emitted > 100);
}

/* The event id is found where codec_encode writes it, and nowhere else is guessed. */
static void test_peek_event_id(void) {
    char err[256];
    size_t len, id_len = 0;
    event in = sample_purchase();
    char *json = codec_encode(&in, &len, err, sizeof err);
    CHECK(json != NULL);
    const char *id = codec_peek_event_id(json, len, &id_len);
    CHECK(id != NULL && id_len == 5 && memcmp(id, "evt-1", 5) == 0);
    static const char *const others[] = {
        "{ \"v\":1,\"event_id\":\"e\"}",      /* spaced */
        "{\"event_id\":\"e\",\"v\":1}",        /* in another order */
        "{\"v\":1,\"event_id\":\"e",           /* cut */
        "{\"v\":1,\"event_id\":7}",             /* not a string */
        "{\"v\":",                                /* cut short */
    };
    for (size_t i = 0; i < sizeof others / sizeof others[0]; i++)
        CHECK(codec_peek_event_id(others[i], strlen(others[i]), &id_len) == NULL);
    /* only the bytes given are read */
    CHECK(codec_peek_event_id(json, 20, &id_len) == NULL);
    free(json);
}

int main(void) {
    test_peek_event_id();
    test_encoder_matches_jansson();
    test_hostile_keys();
    test_keys_as_written_and_otherwise();
    test_guild_id_scope();
    test_ts();
    test_reason_excerpts();
    test_utf8_copy();
    test_scanner();
    test_round_trip();
    test_refusals();
    test_identifiers();
    return check_finish("codec");
}
