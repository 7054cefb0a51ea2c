/* idempotency: Idempotency-Key -> fingerprint of its first request, in a bounded
 * set-associative table owned by the HTTP loop thread (no locking). */
#include "server/idempotency.h"

#include <openssl/evp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define WAYS 4 /* keys per set: a new key evicts the least recently used of its set */

typedef struct {
    char user_id[CODEC_ID_MAX + 1]; /* whose key it is: keys are per player */
    char key[CODEC_ID_MAX + 1];     /* "" when the slot is free */
    unsigned char fingerprint[IDEMPOTENCY_FINGERPRINT_SIZE];
    uint64_t last_used; /* the memory's clock when the key was last checked */
} slot;

struct idempotency {
    slot *slots; /* sets * WAYS; calloc'ed, so pages are only touched as keys arrive */
    size_t sets;
    uint64_t clock;
};

idempotency *idempotency_new(size_t capacity) {
    idempotency *m = calloc(1, sizeof *m);
    if (!m) return NULL;
    m->sets = capacity / WAYS ? capacity / WAYS : 1;
    m->slots = calloc(m->sets * WAYS, sizeof *m->slots);
    if (!m->slots) {
        free(m);
        return NULL;
    }
    return m;
}

void idempotency_free(idempotency *m) {
    if (!m) return;
    free(m->slots);
    free(m);
}

/* Adds one line of the fingerprint's input. Identifiers hold no '\n' or '|', so the
 * lines cannot be shifted into each other to make two requests look alike. */
static int digest_line(EVP_MD_CTX *md, const char *tag, const char *text, long long a,
                       long long b) {
    char line[CODEC_ID_MAX + 80];
    int n = snprintf(line, sizeof line, "%s|%s|%lld|%lld\n", tag, text, a, b);
    return n > 0 && (size_t)n < sizeof line && EVP_DigestUpdate(md, line, (size_t)n) ? 0 : -1;
}

int idempotency_fingerprint(const event *ev, unsigned char out[IDEMPOTENCY_FINGERPRINT_SIZE]) {
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    unsigned int len = 0;
    int rc = -1;
    if (!md || !EVP_DigestInit_ex(md, EVP_sha256(), NULL)) goto done;
    if (digest_line(md, "type", "", (long long)ev->type, 0) ||
        digest_line(md, "user", ev->user_id, 0, 0) || digest_line(md, "guild", ev->guild_id, 0, 0) ||
        digest_line(md, "expected", "", ev->has_expected_version, ev->expected_version))
        goto done;
    for (size_t i = 0; i < ev->item_count && i < CODEC_MAX_ITEMS; i++) {
        const event_item *it = &ev->items[i];
        if (digest_line(md, "item", it->item_type, (long long)it->quantity,
                        it->has_unit_price ? (long long)it->unit_price : -1LL))
            goto done;
    }
    if (EVP_DigestFinal_ex(md, out, &len) && len == IDEMPOTENCY_FINGERPRINT_SIZE) rc = 0;
done:
    EVP_MD_CTX_free(md);
    return rc;
}

/* FNV-1a over user and key: spreads keys over the sets; a hostile client can only crowd
 * the sets its own keys fall in. */
static size_t key_set(const idempotency *m, const char *user_id, const char *key) {
    uint64_t h = 1469598103934665603ULL;
    for (const unsigned char *p = (const unsigned char *)user_id; *p; p++) h = (h ^ *p) * 1099511628211ULL;
    h = (h ^ '/') * 1099511628211ULL;
    for (const unsigned char *p = (const unsigned char *)key; *p; p++) h = (h ^ *p) * 1099511628211ULL;
    return (size_t)(h % m->sets);
}

int idempotency_check(idempotency *m, const char *key, const event *ev) {
    unsigned char fingerprint[IDEMPOTENCY_FINGERPRINT_SIZE];
    if (idempotency_fingerprint(ev, fingerprint)) return -1;
    slot *set = &m->slots[key_set(m, ev->user_id, key) * WAYS], *oldest = &set[0];
    m->clock++;
    for (int i = 0; i < WAYS; i++) {
        if (set[i].key[0] && strcmp(set[i].key, key) == 0 && strcmp(set[i].user_id, ev->user_id) == 0) {
            if (memcmp(set[i].fingerprint, fingerprint, sizeof fingerprint) != 0) return 1;
            set[i].last_used = m->clock;
            return 0;
        }
        if (set[i].last_used < oldest->last_used) oldest = &set[i];
    }
    snprintf(oldest->user_id, sizeof oldest->user_id, "%s", ev->user_id);
    snprintf(oldest->key, sizeof oldest->key, "%s", key);
    memcpy(oldest->fingerprint, fingerprint, sizeof fingerprint);
    oldest->last_used = m->clock;
    return 0;
}
