/* codec: the lootlog event, as a C struct and as the JSON that travels in Kafka.
 * Encoding builds the contract's JSON shape (design.md "Event"); decoding validates
 * a message from the topic strictly, so a bad one can be dead-lettered with a reason. */
#ifndef LOOTLOG_CODEC_H
#define LOOTLOG_CODEC_H

#include <stddef.h>
#include <stdint.h>

#define CODEC_EVENT_VERSION 1
#define CODEC_ID_MAX 64          /* identifiers: ^[A-Za-z0-9_.-]{1,64}$ */
#define CODEC_MAX_ITEMS 50       /* lines in one cart */
#define CODEC_QUANTITY_MAX 1000000
#define CODEC_TS_MAX 32
#define CODEC_META_MAX 256

typedef enum {
    EVENT_DEFAULT = 0,
    EVENT_PURCHASE_SWORD,
    EVENT_PURCHASE_ITEM,
    EVENT_CONSUME_ITEM,
    EVENT_JOIN_GUILD,
    EVENT_LEAVE_GUILD,
    EVENT_TYPE_COUNT
} event_type;

typedef struct {
    char item_type[CODEC_ID_MAX + 1];
    int64_t quantity;
    int64_t unit_price;
    int has_unit_price;
} event_item;

typedef struct {
    char remote_addr[64];
    char host[CODEC_META_MAX];
    char user_agent[CODEC_META_MAX];
    char accept_language[CODEC_META_MAX];
} event_metadata;

typedef struct {
    int version;
    char event_id[CODEC_ID_MAX + 1];
    event_type type;
    char user_id[CODEC_ID_MAX + 1];
    char ts[CODEC_TS_MAX];
    size_t item_count;
    event_item items[CODEC_MAX_ITEMS];
    char guild_id[CODEC_ID_MAX + 1];   /* "" when the event has none */
    int has_expected_version;
    int64_t expected_version;
    event_metadata metadata;
} event;

/* The contract's name of an event type ("purchase_item"); NULL for an invalid value. */
const char *codec_type_name(event_type type);

/* Parses a type name; returns 0 and writes *type, or -1 for an unknown name. */
int codec_type_parse(const char *name, event_type *type);

/* 1 when s is a valid identifier (user, guild, item type, event id), else 0. */
int codec_identifier_ok(const char *s);

/* Copies src into dst (dst_size >= 1) as valid UTF-8: invalid bytes become '?', and a
 * cut at dst_size never splits a character. For free text from clients (headers). */
void codec_copy_utf8(char *dst, size_t dst_size, const char *src);

/* Fills buf with a random RFC 4122 version-4 UUID (buf_size >= 37). Returns 0, -1 when
 * no randomness could be read. */
int codec_uuid4(char *buf, size_t buf_size);

/* Fills buf with the current UTC time as "2026-11-29T08:14:00.123Z" (buf_size >= 25). */
void codec_now_iso8601(char *buf, size_t buf_size);

/* Encodes ev as compact JSON. Returns a malloc'ed NUL-terminated string the caller
 * frees, and writes its length to *len; NULL with errstr filled on failure. */
char *codec_encode(const event *ev, size_t *len, char *errstr, size_t errstr_size);

/* Decodes and validates one message value into *ev (fully overwritten).
 * Returns 0, or -1 with a short reason in errstr (used as the dead-letter reason). */
int codec_decode(const char *json, size_t len, event *ev, char *errstr, size_t errstr_size);

#endif
