/* codec: the lootlog event, as a C struct and as the JSON that travels in Kafka.
 * Encoding builds the contract's JSON shape (docs/design.md, "Event"); decoding validates
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
#define CODEC_REASON_MAX 32

typedef enum {
    EVENT_DEFAULT = 0,
    EVENT_PURCHASE_SWORD,
    EVENT_PURCHASE_ITEM,
    EVENT_CONSUME_ITEM,
    EVENT_JOIN_GUILD,
    EVENT_LEAVE_GUILD,
    /* Emitted by the fold itself (docs/design.md, "Guilds are decided in the log"); their
     * values follow the client types because history stores the number. */
    EVENT_GUILD_JOIN_REQUESTED, /* key: guild_id, folded on the guild's partition */
    EVENT_GUILD_JOIN_DECIDED,   /* key: user_id, folded on the player's partition */
    EVENT_GUILD_LEAVE_REQUESTED, /* key: guild_id */
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
    char cause_event_id[CODEC_ID_MAX + 1]; /* emitted events: the client event behind them */
    int decision_granted;                  /* guild_join_decided: 1 granted, 0 refused */
    char decision_reason[CODEC_REASON_MAX]; /* guild_join_decided refused: "guild_full" */
    int has_expected_version;
    int64_t expected_version;
    event_metadata metadata;
} event;

/* The contract's name of an event type ("purchase_item"); NULL for an invalid value. */
const char *codec_type_name(event_type type);

/* 1 for the types the fold emits (never accepted from HTTP clients), else 0. */
int codec_type_is_emitted(event_type type);

/* The Kafka key an event travels under: the guild_id for the requests a guild's
 * partition decides, the user_id for everything else. */
const char *codec_event_key(const event *ev);

/* Writes the id of the event of type that cause_event_id gives rise to: a UUID (RFC 9562
 * version 8) from the first 16 bytes of SHA-256("<cause_event_id>/<type name>"), so every
 * fold that emits it, again and again, emits the same id and the receiver can dedupe.
 * buf_size >= 37. Returns 0, -1 if the hash could not be computed. */
int codec_derived_event_id(const char *cause_event_id, event_type type, char *buf,
                           size_t buf_size);

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


/* Encodes ev as compact JSON. Returns a malloc'ed NUL-terminated string the caller
 * frees, and writes its length to *len; NULL with errstr filled on failure. */
char *codec_encode(const event *ev, size_t *len, char *errstr, size_t errstr_size);

/* Decodes and validates one message value into *ev (fully overwritten).
 * Returns 0, or -1 with a short reason in errstr (used as the dead-letter reason). */
int codec_decode(const char *json, size_t len, event *ev, char *errstr, size_t errstr_size);

/* Where the event id of a message written as codec_encode writes it (`{"v":N,"event_id":"`
 * first) lies, without decoding it: its first byte, and its length in *id_len. NULL for
 * any other message. A hint only (nothing is checked): the fold looks ahead with it. */
const char *codec_peek_event_id(const char *json, size_t len, size_t *id_len);

#endif
