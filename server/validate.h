/* validate: turns a client's request body into the items or guild of an event, or into
 * the precise HTTP error the contract names. Nothing that fails here reaches Kafka. */
#ifndef LOOTLOG_VALIDATE_H
#define LOOTLOG_VALIDATE_H

#include "state/catalog.h"
#include "state/codec.h"

#include <stddef.h>
#include <stdint.h>

#define VALIDATE_BODY_MAX (64 * 1024)

typedef struct {
    int status;       /* HTTP status: 400, 413, 415, 422 */
    char code[40];    /* the JSON error code, e.g. "unknown_item_type" */
    char message[256];
} validate_error;

/* Fills err and returns -1: a helper for callers that build their own errors. */
int validate_fail(validate_error *err, int status, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Checks a path identifier (user, guild, event id). Returns 0, or -1 with a 400. */
int validate_identifier(const char *what, const char *value, validate_error *err);

/* Content-Type must be application/json (parameters such as charset allowed).
 * Returns 0, or -1 with a 415. */
int validate_content_type(const char *content_type, validate_error *err);

/* A purchase body: {"item_type","quantity","unit_price"?} or {"items":[...]} of 1..50
 * lines. Fills ev->items and ev->item_count. Returns 0 or -1 with err. */
int validate_purchase(const char *body, size_t len, const catalog *cat, event *ev,
                      validate_error *err);

/* A consumption body: {"item_type","quantity"}. */
int validate_consumption(const char *body, size_t len, const catalog *cat, event *ev,
                         validate_error *err);

/* A guild join body: {"guild_id"}. Fills ev->guild_id. */
int validate_guild_join(const char *body, size_t len, event *ev, validate_error *err);

/* An If-Match header, compared strongly: "7" gives 0 with *version = 7 and *any = 0; *
 * gives 0 with *any = 1 (the player must exist). Else -1 with err: 412
 * precondition_failed for a weak tag (W/"7"), 400 if_match_out_of_range for more than 18
 * digits, 400 invalid_if_match for anything else (7 unquoted, "07", lists). */
int validate_if_match(const char *header, int64_t *version, int *any, validate_error *err);

/* A read-your-writes token "<partition>:<offset>" as a write's answer gives it: decimal
 * digits only (leading zeros allowed, no sign or space), partition < max_partitions,
 * offset of at most 18 digits after its leading zeros (no value saturates).
 * Returns 0 with *partition and *offset, -1 with a 400 invalid_token. */
int validate_token(const char *text, int max_partitions, int32_t *partition, int64_t *offset,
                   validate_error *err);

#endif
