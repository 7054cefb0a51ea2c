/* fold: the rules that turn one partition's events into that partition's state. The
 * rules run over players held in memory; a batch of events changes them there, and
 * fold_partition_commit writes each changed row once, with the events' outcomes and the
 * partition's next offset, in one transaction. The live fold, replay and the unit tests
 * all call this same code. */
#ifndef LOOTLOG_FOLD_H
#define LOOTLOG_FOLD_H

#include "state/codec.h"
#include "state/store.h"

#include <stddef.h>
#include <stdint.h>

#define FOLD_DEFAULT_GUILD_CAPACITY 100
#define FOLD_DEAD_LETTER_PAYLOAD_MAX 4096 /* bytes of a bad payload kept */
#define FOLD_MESSAGE_MAX (64 * 1024) /* a valid event is < 8 KiB; larger is dead-lettered */
#define FOLD_REASON_MAX 160
#define FOLD_DEFAULT_CACHED_PLAYERS 2000 /* per partition, kept between batches */

typedef struct {
    int64_t guild_capacity; /* seats a guild's partition grants; 0: the default */
    size_t cached_players; /* players kept in memory between batches; 0: the default */
    /* Write-back (replay): a commit writes the batch's history, guild rows and offset,
     * but a changed player stays changed in memory, with its player index pairs,
     * written once when it leaves the cache or at fold_partition_flush (the pairs also
     * when they fill a row, or past a budget). A store nobody reads until it is whole
     * (replay's new folder) is spared rewriting a busy player at every commit: a 2M-event
     * replay wrote 306k player rows and 577k lines for 70k players and 245k lines, and
     * those writes were a quarter of its CPU. Until the flush the store's tables lag its
     * offset, so its owner keeps it marked unfinished meanwhile (store_set_unfinished;
     * the engine does for its sync_at_end stores); a failed commit loses what memory
     * held, and the fold then refuses to go on (fold_partition_lost). */
    int write_back;
} fold_config;

typedef enum {
    FOLD_APPLIED = 0,
    FOLD_REJECTED,
    FOLD_DUPLICATE,
    FOLD_DEAD_LETTER,
    FOLD_PENDING, /* a join waiting for its guild's decision */
} fold_outcome;

typedef struct {
    fold_outcome outcome;
    char reason[FOLD_REASON_MAX]; /* rejection code, or the dead-letter reason */
    char user_id[CODEC_ID_MAX + 1];
    char event_id[CODEC_ID_MAX + 1]; /* "" for a dead letter */
    int event_type; /* codec's event_type; -1 for a dead letter */
} fold_result;

/* The contract's name of an outcome ("applied", ...). */
const char *fold_outcome_name(fold_outcome outcome);

typedef struct fold_partition fold_partition;

/* The fold of one partition over its store st (a writer; the caller keeps it open
 * longer than the fold). config is copied. NULL with errstr on failure. */
fold_partition *fold_partition_new(store *st, const fold_config *config, char *errstr,
                                   size_t errstr_size);
void fold_partition_free(fold_partition *fp);

/* Folds one Kafka record of the partition into memory: decodes it, dead-letters it if
 * invalid, else applies the rules. Nothing reaches the store before the commit.
 * Returns 0 with *result filled, or -1 on a store error while reading (then call
 * fold_partition_discard; no rule outcome is an error). */
int fold_partition_message(fold_partition *fp, int64_t offset, const void *key, size_t key_len,
                           const void *value, size_t value_len, fold_result *result);

/* A record looked at before its turn (fold_partition_look_ahead). */
typedef struct {
    const void *key;    /* the key step 0 hashed (NULL: none) */
    size_t key_len;
    uint64_t user_hash; /* of the key */
    const char *id;     /* the peeked event id (in the payload), or NULL */
    size_t id_len;
    uint32_t id_hash;   /* its store_event_id_hash */
} fold_look_ahead;

/* Asks for the memory a record's fold will read, in three steps a record or so apart
 * (0, 1, 2, the last just before the record's turn): the player table's slot, the
 * player, its dedupe slot and inventory lines. A player not folded for a while cost a
 * cache miss at each of them, one after the other (the dedupe slot alone was 8 % of the
 * fold's time). The key is taken for the user (a player's events are keyed by their
 * user) and the event id is peeked (codec_peek_event_id): a wrong guess only asks for
 * memory that is not needed. Changes nothing; ahead carries what step 0 found. */
void fold_partition_look_ahead(fold_partition *fp, fold_look_ahead *ahead, int step,
                               const void *key, size_t key_len, const void *value,
                               size_t value_len);

/* fold_partition_message for a record that took the three steps of the look ahead: the
 * hashes those computed are not computed again where the event proves them right (its
 * key is its user_id; its event id is the one peeked). */
int fold_partition_message_ahead(fold_partition *fp, int64_t offset, const void *key,
                                 size_t key_len, const void *value, size_t value_len,
                                 const fold_look_ahead *ahead, fold_result *result);

/* Applies one decoded event at offset (no message checks). Exposed for unit tests. */
int fold_partition_event(fold_partition *fp, const event *ev, int64_t offset,
                         fold_result *result);

/* The last error, as a sentence. */
const char *fold_partition_errmsg(const fold_partition *fp);

/* Records folded since the last commit (0: nothing to commit). */
size_t fold_partition_pending(const fold_partition *fp);
/* Players held in memory now (the batch's, and those cached between batches). A batch
 * that touched many distinct players holds them all until its commit, so the engine
 * commits once this passes FOLD_BATCH_MAX_PLAYERS: memory is bounded by players, not
 * only by events (1M new players folded in 20,000-event batches held 120,000). */
size_t fold_partition_players(const fold_partition *fp);
/* Distinct players the current batch touched (what its commit will write). */
size_t fold_partition_batch_players(const fold_partition *fp);
#define FOLD_BATCH_MAX_PLAYERS 8000


/* Events this fold emits (the guild exchange of docs/design.md, "Guilds are decided in
 * the log") are built during the batch and written to the store's outbox by the commit,
 * in the same transaction; producing them is the caller's (store_outbox_walk). */

/* Writes every changed row, the outcomes, the emitted events and next_offset (the offset after the last
 * record folded) in one transaction. Returns 0, or -1 with the store's error (then call
 * fold_partition_discard). */
int fold_partition_commit(fold_partition *fp, int64_t next_offset);

/* Forgets everything since the last commit (and the cache, which may hold it), so the
 * records can be folded again from the stored offset. With write_back, the changes
 * held in memory since their commits are lost with it: see fold_partition_lost. */
void fold_partition_discard(fold_partition *fp);

/* 1 when a discard lost changes that write_back held in memory beyond their commits:
 * the store's tables lag its offset for good and every call fails (a replay then fails,
 * its stores left marked unfinished, and is run again). */
int fold_partition_lost(const fold_partition *fp);

/* write_back: writes every player still changed in memory in one transaction, after the
 * last commit (nothing pending); the store's tables then match its offset. Without
 * write_back there is nothing to write. Returns 0, or -1 (fold_partition_errmsg). */
int fold_partition_flush(fold_partition *fp);

/* ---- point-in-time reads: one player's state as of a point of its own history ---- */

typedef struct {
    int64_t until_offset; /* the player's events with offset <= this count; -1: all */
    int64_t until_ms;     /* and with ts <= this (ms since the epoch); -1: any time */
} fold_point;

typedef struct {
    int exists;            /* an event other than default was applied by then */
    store_player player;   /* version, guild_id, pending join, created/updated ts */
    store_line *lines;     /* malloc'ed, item_type order; fold_player_state_clear frees */
    size_t line_count;
    size_t events_counted; /* the player's recorded events at or before the point */
    int64_t last_offset;   /* the last of them: offset (-1: none), id and ts */
    char last_event_id[STORE_ID_SIZE];
    char last_ts[STORE_TS_SIZE];
    int64_t last_ts_ms;    /* (internal: the last ts until it is formatted) */
} fold_player_state;

/* Rebuilds user_id's state as it was at point, from the player's own history in
 * history_store (a reader of the player's partition), by the fold rules above over a
 * player in memory: scratch is a writer store that only ever holds a transaction rolled
 * back (e.g. ":memory:"), kept by the caller between calls. Each recorded outcome is
 * folded again and must come out the same. Returns 0 with *out filled (free it with
 * fold_player_state_clear), or -1 with errstr. */
int fold_player_at(store *history_store, store *scratch, const char *user_id,
                   const fold_point *point, fold_player_state *out, char *errstr,
                   size_t errstr_size);
void fold_player_state_clear(fold_player_state *state);

#endif
