/* fold: the rules that turn events into state. Pure over the store: the live consumer,
 * replay and the unit tests all call fold_message, inside a transaction they own. */
#ifndef LOOTLOG_FOLD_H
#define LOOTLOG_FOLD_H

#include "codec.h"
#include "store.h"

#include <stddef.h>
#include <stdint.h>

#define FOLD_DEFAULT_GUILD_CAPACITY 100
#define FOLD_DEAD_LETTER_PAYLOAD_MAX 4096 /* bytes of a bad payload kept */
#define FOLD_MESSAGE_MAX (64 * 1024) /* a valid event is < 8 KiB; larger is dead-lettered */
#define FOLD_REASON_MAX 160

typedef struct {
    int64_t guild_capacity;
} fold_config;

typedef enum {
    FOLD_APPLIED = 0,
    FOLD_REJECTED,
    FOLD_DUPLICATE,
    FOLD_DEAD_LETTER,
} fold_outcome;

typedef struct {
    fold_outcome outcome;
    char reason[FOLD_REASON_MAX]; /* rejection code, or the dead-letter reason */
    char user_id[CODEC_ID_MAX + 1];
} fold_result;

/* The contract's name of an outcome ("applied", ...). */
const char *fold_outcome_name(fold_outcome outcome);

/* Folds one Kafka record (partition, offset, key, value) into the store: decodes it,
 * dead-letters it if invalid, else applies the rules and records the outcome. Must run
 * inside a writer transaction; the caller stores each partition's next offset
 * (store_set_offset) once per batch, in the same transaction, before committing.
 * Returns 0 with *result filled, or -1 on a store error (the caller rolls the batch
 * back and retries; no rule outcome is an error). */
int fold_message(store *st, const fold_config *config, int32_t partition, int64_t offset,
                 const void *key, size_t key_len, const void *value, size_t value_len,
                 fold_result *result);

/* Applies one decoded event (no offset bookkeeping). Exposed for unit tests. */
int fold_event(store *st, const fold_config *config, const event *ev, int32_t partition,
               int64_t offset, fold_result *result);

#endif
