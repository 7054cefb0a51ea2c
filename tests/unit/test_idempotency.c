/* Unit tests of server/idempotency: a player's key stands for one request; the same
 * request again passes, another request under the key is refused, and the memory stays
 * bounded. */
#include "check.h"
#include "server/idempotency.h"

static event purchase(const char *user, const char *item, int64_t quantity) {
    event ev;
    memset(&ev, 0, sizeof ev);
    ev.version = CODEC_EVENT_VERSION;
    ev.type = EVENT_PURCHASE_ITEM;
    snprintf(ev.user_id, sizeof ev.user_id, "%s", user);
    snprintf(ev.ts, sizeof ev.ts, "2026-11-29T08:14:00.123Z");
    snprintf(ev.items[0].item_type, sizeof ev.items[0].item_type, "%s", item);
    ev.items[0].quantity = quantity;
    ev.item_count = 1;
    return ev;
}

static void test_reuse(void) {
    idempotency *m = idempotency_new(64);
    CHECK(m != NULL);
    if (!m) return;
    event first = purchase("alice", "sword", 1);
    CHECK(idempotency_check(m, "k1", &first) == 0);
    /* A retry: other time and metadata, same request. */
    event retry = first;
    snprintf(retry.ts, sizeof retry.ts, "2026-11-29T08:15:00.000Z");
    snprintf(retry.metadata.user_agent, sizeof retry.metadata.user_agent, "retrying client");
    CHECK(idempotency_check(m, "k1", &retry) == 0);
    /* Another body, another type, an If-Match, a price: refused. */
    event other = purchase("alice", "sword", 2);
    CHECK(idempotency_check(m, "k1", &other) == 1);
    other = first;
    other.type = EVENT_CONSUME_ITEM;
    CHECK(idempotency_check(m, "k1", &other) == 1);
    other = first;
    other.has_expected_version = 1;
    CHECK(idempotency_check(m, "k1", &other) == 1);
    other = first;
    other.items[0].has_unit_price = 1;
    CHECK(idempotency_check(m, "k1", &other) == 1);
    /* A refused reuse does not replace what the key stands for. */
    CHECK(idempotency_check(m, "k1", &first) == 0);
    /* Other keys are independent, and so are other players' keys (the fold dedupes per
     * player): bob's k1 is not alice's. */
    CHECK(idempotency_check(m, "k2", &other) == 0);
    event bobs = purchase("bob", "axe", 9);
    CHECK(idempotency_check(m, "k1", &bobs) == 0);
    CHECK(idempotency_check(m, "k1", &first) == 0);
    bobs.items[0].quantity = 8;
    CHECK(idempotency_check(m, "k1", &bobs) == 1);
    idempotency_free(m);
}

static void test_fingerprint(void) {
    unsigned char a[IDEMPOTENCY_FINGERPRINT_SIZE], b[IDEMPOTENCY_FINGERPRINT_SIZE];
    event one = purchase("ab", "c", 1), two = purchase("a", "bc", 1);
    CHECK(idempotency_fingerprint(&one, a) == 0 && idempotency_fingerprint(&two, b) == 0);
    CHECK(memcmp(a, b, sizeof a) != 0); /* fields cannot slide into each other */
    two = one;
    two.item_count = 2;
    two.items[1] = two.items[0];
    CHECK(idempotency_fingerprint(&two, b) == 0 && memcmp(a, b, sizeof a) != 0);
}

/* Bounded: past its capacity the least recently used keys are forgotten (taken as new). */
static void test_bounded(void) {
    idempotency *m = idempotency_new(8);
    event first = purchase("alice", "sword", 1), other = purchase("alice", "sword", 2);
    char key[32];
    CHECK(idempotency_check(m, "old", &first) == 0);
    for (int i = 0; i < 1000; i++) {
        snprintf(key, sizeof key, "k%d", i);
        CHECK(idempotency_check(m, key, &first) == 0);
    }
    CHECK(idempotency_check(m, "old", &other) == 0); /* forgotten */
    CHECK(idempotency_check(m, "k999", &other) == 1); /* the most recent is kept */
    idempotency_free(m);
}

int main(void) {
    test_reuse();
    test_fingerprint();
    test_bounded();
    return check_finish("idempotency");
}
