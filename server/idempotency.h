/* idempotency: what each Idempotency-Key was first used for. A key stands for one request
 * (IETF draft-ietf-httpapi-idempotency-key-header): the same request again is answered as
 * before (the event is produced again under the key, and the fold records it as a
 * duplicate), but the key reused for another request is refused with 422
 * idempotency_key_reused instead of being mistaken for the first. Keys are per player,
 * as the fold's dedupe is (docs/architecture.md): two players' equal keys are two keys. */
#ifndef LOOTLOG_IDEMPOTENCY_H
#define LOOTLOG_IDEMPOTENCY_H

#include "state/codec.h"

#include <stddef.h>

#define IDEMPOTENCY_FINGERPRINT_SIZE 32 /* SHA-256 */

typedef struct idempotency idempotency;

/* A memory of up to capacity keys (the least recently used are forgotten first; a
 * forgotten key is taken as new). Returns NULL when out of memory. */
idempotency *idempotency_new(size_t capacity);
void idempotency_free(idempotency *m);

/* The request an event stands for, as a SHA-256 over what decides its outcome: type,
 * user, items (type, quantity, price), guild and expected version. The time, metadata and
 * event id are left out: a retry differs in those and is still the same request.
 * Returns 0, -1 when libcrypto failed. */
int idempotency_fingerprint(const event *ev, unsigned char out[IDEMPOTENCY_FINGERPRINT_SIZE]);

/* Checks key (the event's id, from the Idempotency-Key header) of player ev->user_id
 * against the request of ev and remembers it. Returns 0 for a new key or the same request
 * again, 1 when the player used the key for another request (nothing is changed then),
 * -1 when the fingerprint failed. */
int idempotency_check(idempotency *m, const char *key, const event *ev);

#endif
