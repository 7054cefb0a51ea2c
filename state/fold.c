/* fold: the deterministic fold rules (docs/architecture.md, "The fold") over one partition's
 * players held in memory. Every check happens before the first change of an event, so a
 * rejected event leaves no trace but its outcome. The catalog is deliberately not
 * consulted: validity of item types is decided at the HTTP edge, so a replay gives the
 * same state whatever the catalog file says today.
 *
 * Why an in-memory table of players instead of SQL per event: a batch touches the same
 * hot players many times; reading each once, applying the rules in memory and writing
 * each changed row once at commit turns ~6 statements per event into ~2 inserts per
 * event plus one write per changed row (bench/ measures the difference). Players stay
 * cached between batches up to a bound, since this fold is the store's only writer. */
#include "state/fold.h"
#include "state/history_block.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *fold_outcome_name(fold_outcome outcome) {
    switch (outcome) {
    case FOLD_APPLIED: return "applied";
    case FOLD_REJECTED: return "rejected";
    case FOLD_DUPLICATE: return "duplicate";
    case FOLD_DEAD_LETTER: return "dead_lettered";
    case FOLD_PENDING: return "pending";
    }
    return "unknown";
}

/* ---------------------------------------------------------------- in-memory state */

typedef struct {
    char item_type[STORE_ID_SIZE];
    int64_t quantity; /* 0: the row is gone (deleted at commit when dirty) */
    int dirty;
} held_line;

/* An event of a player not yet in the store's player index (write-back). */
typedef struct {
    int64_t offset;
    uint32_t id_hash;
} pending_pair;

/* write_back: player index pairs held per partition before they are all written at
 * the next commit; 256k pairs (4 MB) let each player's pairs gather over many batches
 * into one row instead of one row per batch. */
#define FOLD_PENDING_PAIRS_BUDGET (256u * 1024)

/* What a cached player's id hashes tell about its recorded events. */
enum { IDS_UNKNOWN = 0, IDS_KNOWN, IDS_TOO_MANY };
#define FOLD_MAX_CACHED_IDS (1u << 20) /* per player; beyond, dedupe asks the store each time */
#define FOLD_ID_SLOTS_BUDGET (4u << 20) /* per partition: at most 16 MB of id sets */

/* The fields every event reads come first, the texts last: a player not folded for a
 * while costs a cache miss per line the event touches (the hash, the dedupe set and the
 * lines first, then the name, then the row). */
typedef struct {
    uint64_t hash;
    /* The id hashes of all its recorded events (with IDS_KNOWN), a set by open
     * addressing: a hash that is not here is an event id never seen, with no store
     * lookup. A hot player folds hundreds of thousands of events (a 1M-event gen topic:
     * one player has 135k), so the set must not cost more per event as it grows; a
     * sorted array did (memmove), and a cap of 16,384 sent that player's every event to
     * the store. 0 marks an empty slot. */
    uint32_t *ids;
    size_t id_count, id_cap; /* id_cap: a power of two, or 0 */
    held_line *lines;
    size_t line_count;
    uint64_t last_batch;  /* the batch that last touched it (eviction) */
    int ids_state;
    int dirty;            /* row changed since the last commit */
    char user_id[STORE_ID_SIZE];
    int evicted;          /* marked by evict_players for the rebuild that drops it */
    size_t line_cap;
    size_t batch_rank;    /* at commit: its place among the batch's players by player_key */
    /* write_back: its committed events not yet in the store's player index, in offset
     * order (written with the player) */
    pending_pair *pend;
    size_t pend_count, pend_cap;
    store_player row;
} cached_player;

/* A slot of the player table. The hash sits beside the pointer so that a probe past
 * another player's slot costs no visit to that player (each one a cache miss: perf put
 * find_player at 4 % of replay). player NULL: empty. */
typedef struct {
    uint64_t hash;
    cached_player *player;
} player_slot;

/* A guild's member count (the guild's seats are decided in its own partition), read
 * once per batch. */
typedef struct {
    char guild_id[STORE_ID_SIZE];
    int64_t count;
    int dirty;
} guild_count;

/* An event the fold emits, kept for the commit's outbox. */
typedef struct {
    char msg_key[STORE_ID_SIZE];
    char event_id[STORE_ID_SIZE];
    char user_id[STORE_ID_SIZE];
    char *payload; /* the JSON, malloc'ed */
} pending_emit;

typedef struct {
    int add; /* 1 join, 0 leave */
    char guild_id[STORE_ID_SIZE];
    char user_id[STORE_ID_SIZE];
    char ts[STORE_TS_SIZE];
} member_change;

/* An outcome waiting for the commit; its strings live in the batch's text arena. */
typedef struct {
    int64_t offset;
    int64_t player_key;
    cached_player *player; /* in this batch's touched list until the commit */
    uint32_t id_hash;
    int event_type;
    int outcome;
    size_t event_id_at, ts_at, items_at, guild_at, reason_at; /* arena offsets; NONE: none */
} pending_outcome;

typedef struct {
    int64_t offset;
    char reason[FOLD_REASON_MAX];
    void *key, *payload;
    size_t key_len, payload_len;
} pending_dead_letter;

#define NONE ((size_t)-1)

struct fold_partition {
    store *st;
    fold_config config;
    int in_txn;
    int64_t next_player_key; /* 0: not read from the store yet */
    /* 1 while the cache holds every player the store has: the store held none when this
     * fold began (a replay's new folder, a new partition) and no player was evicted
     * since. A player not in the cache is then new, and get_player asks the store
     * nothing: each new player's lookup was a B-tree probe (3 % of a replay). */
    int cache_whole;
    uint64_t batch;

    /* players: open addressing; capacity a power of two */
    player_slot *players;
    size_t player_count, player_cap;
    /* the players this batch touched, once each: what a commit writes and marks clean
     * without walking the whole table (a live fold commits hundreds of times a second,
     * a few players each, and perf showed the two table walks at 7 % of serve's CPU) */
    cached_player **touched;
    size_t touched_count, touched_cap;

    /* this batch */
    pending_outcome *outcomes;
    size_t outcome_count, outcome_cap;
    store_player_event *sorted; /* the outcomes' index pairs by player and offset, at commit */
    size_t sorted_cap;
    size_t *rank_next; /* at commit: per touched player, where its next pair goes in sorted */
    size_t rank_next_cap;
    size_t *seen_slots; /* open addressing over outcome indices + 1 (0: empty) */
    size_t seen_cap;
    size_t seen_indexed; /* outcomes [0, seen_indexed) are in seen_slots (index_batch) */
    pending_dead_letter *dead;
    size_t dead_count, dead_cap;
    guild_count *guilds;
    size_t guild_count_used, guild_cap;
    member_change *members;
    size_t member_count, member_cap;
    pending_emit *emits;
    size_t emit_count, emit_cap;
    char *arena;
    size_t arena_used, arena_cap;
    uint64_t *batch_scratch; /* the cached players' last batches, for eviction */
    size_t batch_scratch_cap;
    uint32_t *ids_scratch; /* for loading a player's hashes */
    size_t ids_scratch_cap;
    size_t id_slots; /* held by the cached players' id sets (FOLD_ID_SLOTS_BUDGET) */
    cached_player **writing; /* write_back: the changed players a write picked */
    size_t writing_cap;
    int held_past_commit; /* write_back: a commit left changed players unwritten */
    size_t pend_total; /* write_back: the cached players' pending pairs */
    int lost; /* write_back: a discard lost changes held in memory (fold_partition_lost) */
    char errmsg[256];
};

/* Copies text into dst (size bytes), cut to fit and always terminated: snprintf's "%s"
 * without its format parsing, which perf showed at ~4 % of the fold. */
static void copy_text(char *dst, size_t size, const char *text) {
    size_t len = strlen(text);
    if (len >= size) len = size - 1;
    memcpy(dst, text, len);
    dst[len] = '\0';
}

/* The error every call gives once fold_partition_lost. */
static int refuse_lost(fold_partition *fp) {
    snprintf(fp->errmsg, sizeof fp->errmsg,
             "a failed commit lost the changes held in memory since their commits (write-back)");
    return -1;
}

/* FNV-1a, 64 bits: the table hash (never persisted). */
static uint64_t hash_bytes(const unsigned char *bytes, size_t len) {
    uint64_t hash = 0xcbf29ce484222325ULL;
    while (len--) {
        hash ^= *bytes++;
        hash *= 0x100000001b3ULL;
    }
    return hash;
}

static uint64_t hash_text(const char *text) {
    return hash_bytes((const unsigned char *)text, strlen(text));
}

/* Grows *array (of elem_size items) to hold at least need. Returns 0 or -1. */
static int reserve(void **array, size_t *cap, size_t need, size_t elem_size) {
    if (need <= *cap) return 0;
    size_t grown = *cap ? *cap * 2 : 4; /* small: every cached player has arrays */
    while (grown < need) grown *= 2;
    void *bigger = realloc(*array, grown * elem_size);
    if (!bigger) return -1;
    *array = bigger;
    *cap = grown;
    return 0;
}

/* Copies text into the batch arena; returns its offset, or NONE when out of memory. */
static size_t arena_put(fold_partition *fp, const char *text) {
    size_t len = strlen(text) + 1;
    if (reserve((void **)&fp->arena, &fp->arena_cap, fp->arena_used + len, 1)) return NONE;
    memcpy(fp->arena + fp->arena_used, text, len);
    fp->arena_used += len;
    return fp->arena_used - len;
}

static const char *arena_get(const fold_partition *fp, size_t at) {
    return at == NONE ? NULL : fp->arena + at;
}

static void free_player(fold_partition *fp, cached_player *p) {
    if (!p) return;
    fp->id_slots -= p->id_cap;
    fp->pend_total -= p->pend_count;
    free(p->pend);
    free(p->lines);
    free(p->ids);
    free(p);
}

/* Inserts p into a table of cap slots (no growth). */
static void table_insert(player_slot *table, size_t cap, cached_player *p) {
    size_t i = p->hash & (cap - 1);
    while (table[i].player) i = (i + 1) & (cap - 1);
    table[i] = (player_slot){p->hash, p};
}

/* Rebuilds the table with room for want players (and for every player kept, however
 * many that is), keeping those keep() says. */
static int rebuild_players(fold_partition *fp, size_t want, int (*keep)(fold_partition *, cached_player *)) {
    size_t keeping = 0;
    for (size_t i = 0; i < fp->player_cap; i++)
        if (fp->players[i].player && (!keep || keep(fp, fp->players[i].player))) keeping++;
    if (want < keeping) want = keeping;
    size_t cap = 1024;
    while (cap < want * 2) cap *= 2;
    player_slot *table = calloc(cap, sizeof *table);
    if (!table) return -1;
    size_t kept = 0;
    for (size_t i = 0; i < fp->player_cap; i++) {
        cached_player *p = fp->players[i].player;
        if (!p) continue;
        if (keep && !keep(fp, p)) {
            free_player(fp, p);
            continue;
        }
        table_insert(table, cap, p);
        kept++;
    }
    free(fp->players);
    fp->players = table;
    fp->player_cap = cap;
    fp->player_count = kept;
    return 0;
}

/* The cached player of user_id, whose table hash is hash; with user_id NULL, the first
 * with that hash, names not compared (a guess, for the look ahead). */
static cached_player *find_player(const fold_partition *fp, const char *user_id,
                                  uint64_t hash) {
    if (!fp->player_cap) return NULL;
    for (size_t i = hash & (fp->player_cap - 1); fp->players[i].player;
         i = (i + 1) & (fp->player_cap - 1)) {
        if (fp->players[i].hash != hash) continue;
        cached_player *p = fp->players[i].player;
        if (!user_id || strcmp(p->user_id, user_id) == 0) return p;
    }
    return NULL;
}

static int begin_if_needed(fold_partition *fp) {
    if (fp->in_txn) return 0;
    if (store_begin(fp->st)) return -1;
    fp->in_txn = 1;
    if (fp->next_player_key == 0) {
        int64_t max_key;
        if (store_max_player_key(fp->st, &max_key)) return -1;
        fp->next_player_key = max_key + 1;
        fp->cache_whole = max_key == 0 && fp->player_count == 0;
    }
    return 0;
}

/* The player of user_id: from the cache, else read from the store, else a new one.
 * NULL on a store error or out of memory (fp->errmsg). */
static cached_player *get_player(fold_partition *fp, const char *user_id, uint64_t hash) {
    cached_player *p = find_player(fp, user_id, hash);
    if (p) {
        if (p->last_batch != fp->batch) {
            if (reserve((void **)&fp->touched, &fp->touched_cap, fp->touched_count + 1,
                        sizeof *fp->touched))
                goto oom;
            fp->touched[fp->touched_count++] = p;
            p->last_batch = fp->batch;
        }
        return p;
    }
    if ((fp->player_count + 1) * 2 > fp->player_cap &&
        rebuild_players(fp, fp->player_count + 1 > 512 ? (fp->player_count + 1) * 2 : 1024, NULL))
        goto oom;
    if (reserve((void **)&fp->touched, &fp->touched_cap, fp->touched_count + 1, sizeof *fp->touched))
        goto oom;
    p = calloc(1, sizeof *p);
    if (!p) goto oom;
    copy_text(p->user_id, sizeof p->user_id, user_id);
    p->hash = hash;
    p->last_batch = fp->batch;
    store_line *lines = NULL;
    size_t line_count = 0;
    int found = fp->cache_whole ? 0 : store_load_player(fp->st, user_id, &p->row, &lines, &line_count);
    if (found < 0) {
        copy_text(fp->errmsg, sizeof fp->errmsg, store_errmsg(fp->st));
        free(p);
        return NULL;
    }
    if (found) {
        if (line_count && !(p->lines = calloc(line_count, sizeof *p->lines))) {
            free(lines);
            free(p);
            goto oom;
        }
        p->line_cap = p->line_count = line_count;
        for (size_t i = 0; i < line_count; i++) {
            memcpy(p->lines[i].item_type, lines[i].item_type, sizeof p->lines[i].item_type);
            p->lines[i].quantity = lines[i].quantity;
        }
        free(lines);
    } else {
        p->row.player_key = fp->next_player_key++;
        p->dirty = 1; /* a new row, even before anything applies */
        p->ids_state = IDS_KNOWN; /* no events recorded yet */
    }
    table_insert(fp->players, fp->player_cap, p);
    fp->player_count++;
    fp->touched[fp->touched_count++] = p; /* room reserved above */
    return p;
oom:
    snprintf(fp->errmsg, sizeof fp->errmsg, "out of memory in the fold");
    return NULL;
}

static held_line *find_line(cached_player *p, const char *item_type) {
    for (size_t i = 0; i < p->line_count; i++) /* the first letter settles most misses */
        if (p->lines[i].item_type[0] == item_type[0] && strcmp(p->lines[i].item_type, item_type) == 0)
            return &p->lines[i];
    return NULL;
}

static held_line *add_line(cached_player *p, const char *item_type) {
    if (reserve((void **)&p->lines, &p->line_cap, p->line_count + 1, sizeof *p->lines)) return NULL;
    held_line *line = &p->lines[p->line_count++];
    memset(line, 0, sizeof *line);
    memcpy(line->item_type, item_type, strnlen(item_type, sizeof line->item_type - 1));
    return line;
}

/* The batch's entry for a guild's member count in this partition (read on first use).
 * NULL on error. */
static guild_count *get_guild(fold_partition *fp, const char *guild_id) {
    for (size_t i = 0; i < fp->guild_count_used; i++)
        if (strcmp(fp->guilds[i].guild_id, guild_id) == 0) return &fp->guilds[i];
    if (reserve((void **)&fp->guilds, &fp->guild_cap, fp->guild_count_used + 1, sizeof *fp->guilds)) {
        snprintf(fp->errmsg, sizeof fp->errmsg, "out of memory in the fold");
        return NULL;
    }
    guild_count *g = &fp->guilds[fp->guild_count_used];
    memset(g, 0, sizeof *g);
    copy_text(g->guild_id, sizeof g->guild_id, guild_id);
    if (store_get_guild_count(fp->st, guild_id, &g->count)) {
        copy_text(fp->errmsg, sizeof fp->errmsg, store_errmsg(fp->st));
        return NULL;
    }
    fp->guild_count_used++;
    return g;
}

static int record_member_change(fold_partition *fp, int add, const char *guild_id,
                                const char *user_id, const char *ts) {
    if (reserve((void **)&fp->members, &fp->member_cap, fp->member_count + 1, sizeof *fp->members)) {
        snprintf(fp->errmsg, sizeof fp->errmsg, "out of memory in the fold");
        return -1;
    }
    member_change *m = &fp->members[fp->member_count++];
    m->add = add;
    copy_text(m->guild_id, sizeof m->guild_id, guild_id);
    copy_text(m->user_id, sizeof m->user_id, user_id);
    copy_text(m->ts, sizeof m->ts, ts);
    return 0;
}

/* ---------------------------------------------------------------- the rules */

static void reject(fold_result *result, const char *reason) {
    result->outcome = FOLD_REJECTED;
    copy_text(result->reason, sizeof result->reason, reason);
}

/* A cart line merged by item type: carts may name a type twice. */
typedef struct {
    const char *item_type;
    int64_t quantity;
} merged_line;

static size_t merge_lines(const event *ev, merged_line *merged) {
    size_t count = 0;
    for (size_t i = 0; i < ev->item_count; i++) {
        size_t j = 0;
        while (j < count && strcmp(merged[j].item_type, ev->items[i].item_type) != 0) j++;
        if (j == count) {
            merged[count].item_type = ev->items[i].item_type;
            merged[count].quantity = 0;
            count++;
        }
        /* At most 50 lines of at most 1e6: no overflow here. */
        merged[j].quantity += ev->items[i].quantity;
    }
    return count;
}

/* Purchases and consumptions: all lines are checked, then all are changed. Returns 0,
 * or -1 out of memory. */
static int apply_items(fold_partition *fp, cached_player *p, const event *ev, int sign,
                       fold_result *result) {
    merged_line merged[CODEC_MAX_ITEMS];
    size_t count = merge_lines(ev, merged);
    for (size_t i = 0; i < count; i++) {
        const held_line *line = find_line(p, merged[i].item_type);
        int64_t held = line ? line->quantity : 0;
        if (sign < 0 && held < merged[i].quantity) {
            reject(result, "insufficient_quantity");
            return 0;
        }
        if (sign > 0 && held > INT64_MAX - merged[i].quantity) {
            reject(result, "quantity_overflow");
            return 0;
        }
    }
    for (size_t i = 0; i < count; i++) {
        /* Found again by name: add_line may have moved the array since the checks. */
        held_line *line = find_line(p, merged[i].item_type);
        if (!line && !(line = add_line(p, merged[i].item_type))) {
            snprintf(fp->errmsg, sizeof fp->errmsg, "out of memory in the fold");
            return -1;
        }
        line->quantity += sign * merged[i].quantity;
        line->dirty = 1;
    }
    return 0;
}

/* Builds the event that cause gives rise to (type: a request for the guild's partition
 * or a decision for the player's), with its id derived from the client event that began
 * the exchange, and keeps it for the outbox. Returns 0, or -1 (fp->errmsg). */
static int emit_event(fold_partition *fp, event_type type, const event *cause, int granted,
                      const char *reason) {
    event out; /* ~6 KB, like the caller's: the fold thread's stack holds both */
    char errstr[128];
    memset(&out, 0, sizeof out);
    out.version = CODEC_EVENT_VERSION;
    out.type = type;
    copy_text(out.user_id, sizeof out.user_id, cause->user_id);
    copy_text(out.guild_id, sizeof out.guild_id, cause->guild_id);
    copy_text(out.ts, sizeof out.ts, cause->ts);
    /* A decision answers a request, whose own cause is the client's join. */
    snprintf(out.cause_event_id, sizeof out.cause_event_id, "%s",
             codec_type_is_emitted(cause->type) ? cause->cause_event_id : cause->event_id);
    out.decision_granted = granted;
    if (reason) copy_text(out.decision_reason, sizeof out.decision_reason, reason);
    if (codec_derived_event_id(out.cause_event_id, type, out.event_id, sizeof out.event_id)) {
        snprintf(fp->errmsg, sizeof fp->errmsg, "cannot derive an emitted event id");
        return -1;
    }
    if (reserve((void **)&fp->emits, &fp->emit_cap, fp->emit_count + 1, sizeof *fp->emits)) goto oom;
    size_t len;
    char *payload = codec_encode(&out, &len, errstr, sizeof errstr);
    if (!payload) {
        snprintf(fp->errmsg, sizeof fp->errmsg, "encoding an emitted event: %s", errstr);
        return -1;
    }
    pending_emit *e = &fp->emits[fp->emit_count++];
    copy_text(e->msg_key, sizeof e->msg_key, codec_event_key(&out));
    copy_text(e->event_id, sizeof e->event_id, out.event_id);
    copy_text(e->user_id, sizeof e->user_id, out.user_id);
    e->payload = payload;
    return 0;
oom:
    snprintf(fp->errmsg, sizeof fp->errmsg, "out of memory in the fold");
    return -1;
}

/* join_guild, on the player's partition: the player's own rules; a join that passes
 * them waits (pending) for the guild's partition to grant or refuse a seat. */
static int apply_join(fold_partition *fp, cached_player *p, const event *ev,
                      fold_result *result) {
    if (p->row.pending_guild_id[0]) {
        reject(result, "guild_join_pending");
        return 0;
    }
    if (p->row.guild_id[0]) {
        if (strcmp(p->row.guild_id, ev->guild_id) != 0) reject(result, "already_in_guild");
        return 0; /* joining the guild one is in: applied, nothing changes */
    }
    if (emit_event(fp, EVENT_GUILD_JOIN_REQUESTED, ev, 0, NULL)) return -1;
    copy_text(p->row.pending_guild_id, sizeof p->row.pending_guild_id, ev->guild_id);
    copy_text(p->row.pending_cause, sizeof p->row.pending_cause, ev->event_id);
    p->dirty = 1;
    result->outcome = FOLD_PENDING;
    return 0;
}

/* leave_guild, on the player's partition: decided here at once; the guild's partition
 * is told to free the seat. */
static int apply_leave(fold_partition *fp, cached_player *p, const event *ev,
                       fold_result *result) {
    if (p->row.pending_guild_id[0]) {
        reject(result, "guild_join_pending");
        return 0;
    }
    if (!p->row.guild_id[0]) {
        reject(result, "not_in_guild");
        return 0;
    }
    event leave = *ev; /* the request names the guild being left */
    copy_text(leave.guild_id, sizeof leave.guild_id, p->row.guild_id);
    if (emit_event(fp, EVENT_GUILD_LEAVE_REQUESTED, &leave, 0, NULL)) return -1;
    p->row.guild_id[0] = '\0';
    return 0;
}

/* 1 when user_id holds a seat in guild_id as of this point of the batch, 0 when not, -1
 * on a store error. The batch's own changes come first (latest wins), then the store. */
static int holds_seat(fold_partition *fp, const char *guild_id, const char *user_id) {
    for (size_t i = fp->member_count; i > 0; i--) {
        const member_change *m = &fp->members[i - 1];
        if (strcmp(m->user_id, user_id) == 0 && strcmp(m->guild_id, guild_id) == 0) return m->add;
    }
    int member = store_is_member(fp->st, guild_id, user_id);
    if (member < 0) copy_text(fp->errmsg, sizeof fp->errmsg, store_errmsg(fp->st));
    return member;
}

/* guild_join_requested, on the guild's partition: a seat, in this partition's log order,
 * while there is one. Granted or refused, the decision goes back to the player. */
static int decide_join(fold_partition *fp, const event *ev, fold_result *result) {
    int member = holds_seat(fp, ev->guild_id, ev->user_id);
    if (member < 0) return -1;
    if (!member) {
        guild_count *g = get_guild(fp, ev->guild_id);
        if (!g) return -1;
        if (g->count >= fp->config.guild_capacity) {
            reject(result, "guild_full");
        } else {
            if (record_member_change(fp, 1, ev->guild_id, ev->user_id, ev->ts)) return -1;
            g->count++;
            g->dirty = 1;
        }
    }
    int granted = result->outcome == FOLD_APPLIED;
    return emit_event(fp, EVENT_GUILD_JOIN_DECIDED, ev, granted, granted ? NULL : result->reason);
}

/* guild_leave_requested, on the guild's partition: frees the seat. */
static int release_seat(fold_partition *fp, const event *ev, fold_result *result) {
    int member = holds_seat(fp, ev->guild_id, ev->user_id);
    if (member <= 0) {
        if (member == 0) reject(result, "not_in_guild");
        return member;
    }
    guild_count *g = get_guild(fp, ev->guild_id);
    if (!g) return -1;
    if (record_member_change(fp, 0, ev->guild_id, ev->user_id, ev->ts)) return -1;
    if (g->count > 0) g->count--;
    g->dirty = 1;
    return 0;
}

/* guild_join_decided, on the player's partition: the answer to the join it waits for. A
 * refusal is a rejected outcome that still ends the wait. */
static int apply_decision(cached_player *p, const event *ev, fold_result *result) {
    if (strcmp(p->row.pending_guild_id, ev->guild_id) != 0 ||
        strcmp(p->row.pending_cause, ev->cause_event_id) != 0) {
        reject(result, "no_pending_join");
        return 0;
    }
    p->row.pending_guild_id[0] = '\0';
    p->row.pending_cause[0] = '\0';
    p->dirty = 1;
    if (ev->decision_granted)
        copy_text(p->row.guild_id, sizeof p->row.guild_id, ev->guild_id);
    else
        reject(result, ev->decision_reason);
    return 0;
}

/* ---------------------------------------------------------------- dedupe */

/* The slot where hash starts its probe in a set of cap slots (a power of two): the high
 * bits of a multiplicative mix, since the low bits of FNV-1a alone cluster. */
static size_t ids_slot(uint32_t hash, size_t cap) {
    uint64_t mixed = (uint64_t)hash * 0x9e3779b97f4a7c15ULL;
    return (size_t)(mixed >> 32) & (cap - 1);
}

/* A hash as kept in the set: 0 marks empty slots, so 0 is kept as 1 (a false match only
 * costs the exact check that follows every match). */
static uint32_t ids_key(uint32_t hash) { return hash ? hash : 1; }

static int ids_contains(const cached_player *p, uint32_t hash) {
    if (!p->id_cap) return 0;
    uint32_t key = ids_key(hash);
    for (size_t i = ids_slot(key, p->id_cap); p->ids[i]; i = (i + 1) & (p->id_cap - 1))
        if (p->ids[i] == key) return 1;
    return 0;
}

/* Puts key (already ids_key'd) in slots unless there. Returns 1 added, 0 there. */
static int ids_put(uint32_t *slots, size_t cap, uint32_t key) {
    size_t i = ids_slot(key, cap);
    for (; slots[i]; i = (i + 1) & (cap - 1))
        if (slots[i] == key) return 0;
    slots[i] = key;
    return 1;
}

/* Stops keeping p's ids (too many, or the partition's budget is spent): its dedupe asks
 * the store from now on. */
static void ids_give_up(fold_partition *fp, cached_player *p) {
    fp->id_slots -= p->id_cap;
    free(p->ids);
    p->ids = NULL;
    p->id_count = p->id_cap = 0;
    p->ids_state = IDS_TOO_MANY;
}

/* Makes p's set hold at least want ids at a load of at most one half. Returns 0, or -1
 * when that is beyond the bounds (the caller gives up keeping them). */
static int ids_reserve(fold_partition *fp, cached_player *p, size_t want) {
    if (want * 2 <= p->id_cap) return 0;
    size_t cap = p->id_cap ? p->id_cap : 8;
    while (cap < want * 2) cap *= 2;
    if (want > FOLD_MAX_CACHED_IDS || fp->id_slots - p->id_cap + cap > FOLD_ID_SLOTS_BUDGET)
        return -1;
    uint32_t *slots = calloc(cap, sizeof *slots);
    if (!slots) return -1;
    for (size_t i = 0; i < p->id_cap; i++)
        if (p->ids[i]) ids_put(slots, cap, p->ids[i]);
    free(p->ids);
    fp->id_slots += cap - p->id_cap;
    p->ids = slots;
    p->id_cap = cap;
    return 0;
}

/* Reads a stored player's id hashes into its set. Returns 0 or -1. */
static int ids_load(fold_partition *fp, cached_player *p) {
    size_t count = 0;
    /* Read into the fold's scratch buffer; when it is too small, the first read says how
     * many there are, and one more read fills a buffer of that size. */
    for (int pass = 0; pass < 2; pass++) {
        if (store_event_id_hashes(fp->st, p->row.player_key, fp->ids_scratch,
                                  fp->ids_scratch_cap, FOLD_MAX_CACHED_IDS + 1, &count)) {
            copy_text(fp->errmsg, sizeof fp->errmsg, store_errmsg(fp->st));
            return -1;
        }
        if (count <= fp->ids_scratch_cap) break;
        if (count > FOLD_MAX_CACHED_IDS) {
            p->ids_state = IDS_TOO_MANY;
            return 0;
        }
        size_t cap = fp->ids_scratch_cap ? fp->ids_scratch_cap : 1024;
        while (cap < count) cap *= 2;
        uint32_t *bigger = realloc(fp->ids_scratch, cap * sizeof *bigger);
        if (!bigger) goto oom;
        fp->ids_scratch = bigger;
        fp->ids_scratch_cap = cap;
    }
    if (count > fp->ids_scratch_cap) { /* cannot happen: this fold is the only writer */
        p->ids_state = IDS_TOO_MANY;
        return 0;
    }
    p->ids_state = IDS_KNOWN;
    if (ids_reserve(fp, p, count + 1)) {
        ids_give_up(fp, p);
        return 0;
    }
    for (size_t i = 0; i < count; i++)
        p->id_count += (size_t)ids_put(p->ids, p->id_cap, ids_key(fp->ids_scratch[i]));
    return 0;
oom:
    snprintf(fp->errmsg, sizeof fp->errmsg, "out of memory in the fold");
    return -1;
}

/* Adds a recorded event's hash; past the bounds, the player stops keeping them. */
static void ids_add(fold_partition *fp, cached_player *p, uint32_t hash) {
    if (p->ids_state != IDS_KNOWN) return;
    if (ids_reserve(fp, p, p->id_count + 1)) {
        ids_give_up(fp, p);
        return;
    }
    p->id_count += (size_t)ids_put(p->ids, p->id_cap, ids_key(hash));
}

static uint64_t seen_hash(int64_t player_key, uint32_t id_hash) {
    return ((uint64_t)player_key * 0x9e3779b97f4a7c15ULL) ^ id_hash;
}

static void seen_put(size_t *slots, size_t cap, const pending_outcome *outcomes, size_t k) {
    size_t i = seen_hash(outcomes[k].player_key, outcomes[k].id_hash) & (cap - 1);
    while (slots[i]) i = (i + 1) & (cap - 1);
    slots[i] = k + 1;
}

/* Brings the batch's seen table up to date: the outcomes appended since the last look,
 * but for duplicates (their id is in the table already). Lazily, because only a hash
 * match asks the table (about one event in a hundred for a gen topic): indexing each
 * event as it came cost a cache miss per event (perf: ~2 % of replay), and a run of
 * inserts here overlaps its misses. Returns 0 or -1 (out of memory). */
static int index_batch(fold_partition *fp) {
    if (fp->seen_indexed == fp->outcome_count) return 0;
    if (fp->outcome_count * 2 > fp->seen_cap) {
        size_t cap = fp->seen_cap ? fp->seen_cap * 2 : 4096;
        while (cap < fp->outcome_count * 2) cap *= 2;
        size_t *slots = calloc(cap, sizeof *slots);
        if (!slots) return -1;
        free(fp->seen_slots);
        fp->seen_slots = slots;
        fp->seen_cap = cap;
        fp->seen_indexed = 0;
    }
    for (size_t k = fp->seen_indexed; k < fp->outcome_count; k++)
        if (fp->outcomes[k].outcome != FOLD_DUPLICATE)
            seen_put(fp->seen_slots, fp->seen_cap, fp->outcomes, k);
    fp->seen_indexed = fp->outcome_count;
    return 0;
}

/* 1 when this batch already holds player_key's event_id, 0 when not, -1 when out of
 * memory. */
static int seen_in_batch(fold_partition *fp, int64_t player_key, uint32_t id_hash,
                         const char *event_id) {
    if (index_batch(fp)) return -1;
    if (!fp->seen_cap) return 0;
    for (size_t i = seen_hash(player_key, id_hash) & (fp->seen_cap - 1); fp->seen_slots[i];
         i = (i + 1) & (fp->seen_cap - 1)) {
        const pending_outcome *o = &fp->outcomes[fp->seen_slots[i] - 1];
        if (o->player_key == player_key && o->id_hash == id_hash &&
            strcmp(arena_get(fp, o->event_id_at), event_id) == 0)
            return 1;
    }
    return 0;
}

/* 1 when p already has an event with event_id (recorded or in this batch), 0 when not,
 * -1 on a store error. Most answers come from the player's id hashes in memory; a hash
 * match is confirmed exactly, in the batch or in the store. */
static int already_seen(fold_partition *fp, cached_player *p, uint32_t id_hash,
                        const char *event_id) {
    if (p->ids_state == IDS_UNKNOWN && ids_load(fp, p)) return -1;
    if (p->ids_state == IDS_KNOWN && !ids_contains(p, id_hash)) return 0;
    int in_batch = seen_in_batch(fp, p->row.player_key, id_hash, event_id);
    if (in_batch) {
        if (in_batch < 0) snprintf(fp->errmsg, sizeof fp->errmsg, "out of memory in the fold");
        return in_batch;
    }
    /* write_back: committed events whose index pairs wait in memory, checked in history */
    for (size_t i = 0; i < p->pend_count; i++) {
        if (p->pend[i].id_hash != id_hash) continue;
        int has = store_history_has_id(fp->st, p->pend[i].offset, event_id);
        if (has < 0) copy_text(fp->errmsg, sizeof fp->errmsg, store_errmsg(fp->st));
        if (has) return has;
    }
    int seen = store_event_seen(fp->st, p->row.player_key, id_hash, event_id);
    if (seen < 0) copy_text(fp->errmsg, sizeof fp->errmsg, store_errmsg(fp->st));
    return seen;
}

/* ---------------------------------------------------------------- folding */

/* Appends the decimal digits of value (>= 0 as every quantity is; a negative one is
 * written with its sign) at out; returns how many were written (<= 20). */
static size_t put_decimal(char *out, long long value) {
    char digits[24];
    size_t n = 0, len = 0;
    unsigned long long v = value < 0 ? 0ULL - (unsigned long long)value : (unsigned long long)value;
    do {
        digits[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    if (value < 0) out[len++] = '-';
    while (n) out[len++] = digits[--n];
    return len;
}

/* "sword:1,arrow:20": the lines as the event carried them, for history. out_size holds
 * every line an event may carry (CODEC_MAX_ITEMS of at most CODEC_ID_MAX + 22 bytes);
 * a line that would not fit is left out rather than cut. */
static void items_text(const event *ev, char *out, size_t out_size) {
    size_t used = 0;
    for (size_t i = 0; i < ev->item_count; i++) {
        size_t name = strlen(ev->items[i].item_type);
        if (used + name + 23 >= out_size) break;
        if (i) out[used++] = ',';
        memcpy(out + used, ev->items[i].item_type, name);
        used += name;
        out[used++] = ':';
        used += put_decimal(out + used, (long long)ev->items[i].quantity);
    }
    out[used] = '\0';
}

/* Each step reads only what the step before asked for, and what it finds is asked
 * afresh from the table each time (the batch between may have evicted a player). */
void fold_partition_look_ahead(fold_partition *fp, fold_look_ahead *ahead, int step,
                               const void *key, size_t key_len, const void *value,
                               size_t value_len) {
    if (step == 0) {
        ahead->key = key;
        ahead->key_len = key_len;
        ahead->user_hash = key ? hash_bytes(key, key_len) : 0;
        ahead->id = value ? codec_peek_event_id(value, value_len, &ahead->id_len) : NULL;
        if (ahead->id) ahead->id_hash = store_event_id_hash_bytes(ahead->id, ahead->id_len);
        if (fp->player_cap)
            __builtin_prefetch(&fp->players[ahead->user_hash & (fp->player_cap - 1)]);
        return;
    }
    cached_player *p = find_player(fp, NULL, ahead->user_hash);
    if (!p) return;
    if (step == 1) {
        __builtin_prefetch(p);
        __builtin_prefetch((const char *)p + 64); /* its name */
        return;
    }
    if (ahead->id && p->id_cap)
        __builtin_prefetch(&p->ids[ids_slot(ids_key(ahead->id_hash), p->id_cap)]);
    if (p->lines) __builtin_prefetch(p->lines);
}

/* The hashes an event's fold needs, when known already (fold_look_ahead). */
typedef struct {
    int user_known, id_known;
    uint64_t user_hash;
    uint32_t id_hash;
} known_hashes;

static int apply_event(fold_partition *fp, const event *ev, int64_t offset,
                       const known_hashes *known, fold_result *result);

int fold_partition_event(fold_partition *fp, const event *ev, int64_t offset,
                         fold_result *result) {
    known_hashes none = {0};
    return apply_event(fp, ev, offset, &none, result);
}

static int apply_event(fold_partition *fp, const event *ev, int64_t offset,
                       const known_hashes *known, fold_result *result) {
    memset(result, 0, sizeof *result);
    if (fp->lost) return refuse_lost(fp);
    copy_text(result->user_id, sizeof result->user_id, ev->user_id);
    copy_text(result->event_id, sizeof result->event_id, ev->event_id);
    result->outcome = FOLD_APPLIED;
    result->event_type = (int)ev->type;
    if (begin_if_needed(fp)) {
        copy_text(fp->errmsg, sizeof fp->errmsg, store_errmsg(fp->st));
        return -1;
    }
    cached_player *p = get_player(fp, ev->user_id,
                                  known->user_known ? known->user_hash : hash_text(ev->user_id));
    if (!p) return -1;

    uint32_t id_hash = known->id_known ? known->id_hash : store_event_id_hash(ev->event_id);
    /* The player's id set is large and cold (a hot player's holds 100k+ hashes): its slot
     * is fetched while the outcome's texts go to the arena, which the rules' decision does
     * not change (perf put the stall on that slot at 4 % of replay), unless the look
     * ahead, which computed the hash, asked for it already. */
    if (p->id_cap && !known->id_known) __builtin_prefetch(&p->ids[ids_slot(ids_key(id_hash), p->id_cap)]);
    if (reserve((void **)&fp->outcomes, &fp->outcome_cap, fp->outcome_count + 1,
                sizeof *fp->outcomes))
        goto oom;
    char items[CODEC_MAX_ITEMS * (CODEC_ID_MAX + 24) + 1];
    items_text(ev, items, sizeof items);
    pending_outcome o = {
        .offset = offset,
        .player_key = p->row.player_key,
        .player = p,
        .id_hash = id_hash,
        .event_type = (int)ev->type,
        .reason_at = NONE,
        .event_id_at = arena_put(fp, ev->event_id),
        .ts_at = arena_put(fp, ev->ts),
        .items_at = items[0] ? arena_put(fp, items) : NONE,
        .guild_at = ev->guild_id[0] ? arena_put(fp, ev->guild_id) : NONE,
    };
    if (o.event_id_at == NONE || o.ts_at == NONE || (items[0] && o.items_at == NONE) ||
        (ev->guild_id[0] && o.guild_at == NONE))
        goto oom;

    int seen = already_seen(fp, p, id_hash, ev->event_id);
    if (seen < 0) return -1;
    int rc = 0;
    if (seen) {
        result->outcome = FOLD_DUPLICATE;
    } else if (ev->type == EVENT_GUILD_JOIN_REQUESTED || ev->type == EVENT_GUILD_LEAVE_REQUESTED) {
        /* The guild's side: recorded under the player for dedupe, never in its version. */
        rc = ev->type == EVENT_GUILD_JOIN_REQUESTED ? decide_join(fp, ev, result)
                                                    : release_seat(fp, ev, result);
        if (rc) return -1;
    } else if (ev->type != EVENT_DEFAULT) {
        if (ev->has_expected_version && ev->expected_version != p->row.version) {
            reject(result, "version_conflict");
        } else {
            switch (ev->type) {
            case EVENT_PURCHASE_SWORD:
            case EVENT_PURCHASE_ITEM: rc = apply_items(fp, p, ev, +1, result); break;
            case EVENT_CONSUME_ITEM: rc = apply_items(fp, p, ev, -1, result); break;
            case EVENT_JOIN_GUILD: rc = apply_join(fp, p, ev, result); break;
            case EVENT_LEAVE_GUILD: rc = apply_leave(fp, p, ev, result); break;
            case EVENT_GUILD_JOIN_DECIDED: rc = apply_decision(p, ev, result); break;
            default: break;
            }
            if (rc) return -1;
            if (result->outcome == FOLD_APPLIED) {
                if (p->row.version == 0) copy_text(p->row.created_ts, sizeof p->row.created_ts, ev->ts);
                p->row.version++;
                copy_text(p->row.updated_ts, sizeof p->row.updated_ts, ev->ts);
                p->dirty = 1;
            }
        }
    }

    o.outcome = (int)result->outcome;
    if (result->outcome == FOLD_REJECTED && (o.reason_at = arena_put(fp, result->reason)) == NONE)
        goto oom;
    fp->outcomes[fp->outcome_count++] = o;
    if (!seen) ids_add(fp, p, id_hash);
    return 0;
oom:
    snprintf(fp->errmsg, sizeof fp->errmsg, "out of memory in the fold");
    return -1;
}

int fold_partition_message(fold_partition *fp, int64_t offset, const void *key, size_t key_len,
                           const void *value, size_t value_len, fold_result *result) {
    return fold_partition_message_ahead(fp, offset, key, key_len, value, value_len, NULL, result);
}

int fold_partition_message_ahead(fold_partition *fp, int64_t offset, const void *key,
                                 size_t key_len, const void *value, size_t value_len,
                                 const fold_look_ahead *ahead, fold_result *result) {
    char reason[FOLD_REASON_MAX];
    event ev; /* ~6 KB; the fold thread's stack holds it comfortably */

    memset(result, 0, sizeof *result);
    if (fp->lost) return refuse_lost(fp);
    if (!value || value_len == 0) {
        snprintf(reason, sizeof reason, "empty message");
    } else if (value_len > FOLD_MESSAGE_MAX) {
        snprintf(reason, sizeof reason, "oversize message (%zu bytes)", value_len);
    } else if (codec_decode(value, value_len, &ev, reason, sizeof reason) == 0) {
        const char *expected_key = codec_event_key(&ev);
        if (!key || key_len != strlen(expected_key) || memcmp(key, expected_key, key_len) != 0)
            snprintf(reason, sizeof reason, "message key is not the event's %s",
                     expected_key == ev.user_id ? "user_id" : "guild_id");
        else {
            known_hashes known = {0};
            /* the key hashed is this one, and it is the user's id */
            if (ahead && ahead->key && ahead->key == key && ahead->key_len == key_len &&
                expected_key == ev.user_id)
                known.user_known = 1, known.user_hash = ahead->user_hash;
            if (ahead && ahead->id && ahead->id_len == strlen(ev.event_id) &&
                memcmp(ahead->id, ev.event_id, ahead->id_len) == 0)
                known.id_known = 1, known.id_hash = ahead->id_hash;
            return apply_event(fp, &ev, offset, &known, result);
        }
    }
    result->outcome = FOLD_DEAD_LETTER;
    result->event_type = -1;
    copy_text(result->reason, sizeof result->reason, reason);
    if (reserve((void **)&fp->dead, &fp->dead_cap, fp->dead_count + 1, sizeof *fp->dead)) goto oom;
    pending_dead_letter *d = &fp->dead[fp->dead_count];
    memset(d, 0, sizeof *d);
    d->offset = offset;
    copy_text(d->reason, sizeof d->reason, reason);
    d->payload_len = value_len < FOLD_DEAD_LETTER_PAYLOAD_MAX ? value_len : FOLD_DEAD_LETTER_PAYLOAD_MAX;
    d->key_len = key_len < 256 ? key_len : 256;
    if (key && !(d->key = malloc(d->key_len ? d->key_len : 1))) goto oom;
    if (value && !(d->payload = malloc(d->payload_len ? d->payload_len : 1))) {
        free(d->key);
        goto oom;
    }
    if (key) memcpy(d->key, key, d->key_len);
    if (value) memcpy(d->payload, value, d->payload_len);
    fp->dead_count++;
    return 0;
oom:
    snprintf(fp->errmsg, sizeof fp->errmsg, "out of memory in the fold");
    return -1;
}

const char *fold_partition_errmsg(const fold_partition *fp) { return fp->errmsg; }

size_t fold_partition_pending(const fold_partition *fp) {
    return fp->outcome_count + fp->dead_count;
}

size_t fold_partition_players(const fold_partition *fp) { return fp->player_count; }

size_t fold_partition_batch_players(const fold_partition *fp) { return fp->touched_count; }

/* Empties the batch's lists (not the player cache). */
static void clear_batch(fold_partition *fp) {
    for (size_t i = 0; i < fp->dead_count; i++) {
        free(fp->dead[i].key);
        free(fp->dead[i].payload);
    }
    fp->dead_count = 0;
    for (size_t i = 0; i < fp->emit_count; i++) free(fp->emits[i].payload);
    fp->emit_count = 0;
    fp->outcome_count = 0;
    if (fp->seen_indexed) memset(fp->seen_slots, 0, fp->seen_cap * sizeof *fp->seen_slots);
    fp->seen_indexed = 0;
    fp->guild_count_used = 0;
    fp->member_count = 0;
    fp->arena_used = 0;
    fp->touched_count = 0;
}

static int not_evicted(fold_partition *fp, cached_player *p) {
    (void)fp;
    return !p->evicted;
}

static int later_batch_first(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x < y) - (x > y);
}

/* Eviction: marks the players to drop, keeping the keep players touched most recently
 * (rebuild_players then drops the marked ones, after the commit, by then written). It
 * used to keep the last batch's players only, which in serve's live fold (batches of a
 * few hundred events) emptied the cache down to those few hundred each time it passed
 * its bound: a reload per player met again, 17 % of serve's CPU under 100k events/s.
 * Returns 0 or -1 (out of memory). */
static int mark_evictions(fold_partition *fp, size_t keep) {
    if (keep == 0 || fp->player_count == 0) {
        for (size_t i = 0; i < fp->player_cap; i++)
            if (fp->players[i].player) fp->players[i].player->evicted = 1;
        return 0;
    }
    if (reserve((void **)&fp->batch_scratch, &fp->batch_scratch_cap, fp->player_count,
                sizeof *fp->batch_scratch))
        return -1;
    size_t n = 0;
    for (size_t i = 0; i < fp->player_cap; i++)
        if (fp->players[i].player) fp->batch_scratch[n++] = fp->players[i].player->last_batch;
    if (n <= keep) return 0;
    qsort(fp->batch_scratch, n, sizeof *fp->batch_scratch, later_batch_first);
    uint64_t threshold = fp->batch_scratch[keep - 1];
    size_t ties = 0; /* players of the threshold's batch that still fit */
    for (size_t k = keep; k-- > 0 && fp->batch_scratch[k] == threshold;) ties++;
    for (size_t i = 0; i < fp->player_cap; i++) {
        cached_player *p = fp->players[i].player;
        if (!p) continue;
        p->evicted = !(p->last_batch > threshold || (p->last_batch == threshold && ties > 0));
        if (p->last_batch == threshold && ties > 0) ties--;
    }
    return 0;
}

/* How many players the cache keeps when it passes its bound: three quarters of it, so
 * that a few new players per batch do not make every commit evict. */
static size_t players_kept(const fold_partition *fp) {
    return fp->config.cached_players - fp->config.cached_players / 4;
}

/* write_back: writes p's pending index pairs (one player_index row per HISTORY_IDS_MAX)
 * and forgets them. Returns 0 or -1. */
static int write_pending(fold_partition *fp, cached_player *p) {
    if (!p->pend_count) return 0;
    if (reserve((void **)&fp->sorted, &fp->sorted_cap, p->pend_count, sizeof *fp->sorted)) {
        snprintf(fp->errmsg, sizeof fp->errmsg, "out of memory in the fold");
        return -1;
    }
    for (size_t i = 0; i < p->pend_count; i++)
        fp->sorted[i] = (store_player_event){p->row.player_key, p->pend[i].id_hash, p->pend[i].offset};
    if (store_add_player_events(fp->st, fp->sorted, p->pend_count)) {
        copy_text(fp->errmsg, sizeof fp->errmsg, store_errmsg(fp->st));
        return -1;
    }
    fp->pend_total -= p->pend_count;
    p->pend_count = 0;
    return 0;
}

/* Writes one player's changed row and lines (a line at 0 deletes its row), and holds
 * them as written: a commit that fails afterwards discards the whole cache anyway. */
static int write_player(fold_partition *fp, cached_player *p) {
    if (p->dirty && store_put_player(fp->st, p->user_id, &p->row)) return -1;
    size_t kept_lines = 0;
    for (size_t i = 0; i < p->line_count; i++) {
        held_line *line = &p->lines[i];
        if (line->dirty && store_put_line(fp->st, p->row.player_key, line->item_type, line->quantity))
            return -1;
        line->dirty = 0;
        if (line->quantity > 0) p->lines[kept_lines++] = *line;
    }
    p->line_count = kept_lines;
    p->dirty = 0;
    return 0;
}

static int player_changed(const cached_player *p) {
    if (p->dirty) return 1;
    for (size_t i = 0; i < p->line_count; i++)
        if (p->lines[i].dirty) return 1;
    return 0;
}

static int compare_player_keys(const void *a, const void *b) {
    const cached_player *x = *(cached_player *const *)a, *y = *(cached_player *const *)b;
    return (x->row.player_key > y->row.player_key) - (x->row.player_key < y->row.player_key);
}

/* Gathers into fp->writing the cached players pick() takes, in player_key order (the
 * order of the players, inventory and index B-trees). Returns how many, or -1 (out of
 * memory, fp->errmsg). */
static long players_in_key_order(fold_partition *fp, int (*pick)(const cached_player *p)) {
    size_t n = 0;
    if (reserve((void **)&fp->writing, &fp->writing_cap, fp->player_count ? fp->player_count : 1,
                sizeof *fp->writing)) {
        snprintf(fp->errmsg, sizeof fp->errmsg, "out of memory in the fold");
        return -1;
    }
    for (size_t i = 0; i < fp->player_cap; i++)
        if (fp->players[i].player && pick(fp->players[i].player))
            fp->writing[n++] = fp->players[i].player;
    if (n) qsort(fp->writing, n, sizeof *fp->writing, compare_player_keys);
    return (long)n;
}

static int holds_unwritten(const cached_player *p) { return player_changed(p) || p->pend_count; }

static int evicted_and_unwritten(const cached_player *p) { return p->evicted && holds_unwritten(p); }

static int holds_pending_pairs(const cached_player *p) { return p->pend_count > 0; }

/* write_back: writes the changed players of the cache that the eviction marked
 * (only_evicted) or all of them, with their pending index pairs. Returns 0 or -1. */
static int write_changed(fold_partition *fp, int only_evicted) {
    long n = players_in_key_order(fp, only_evicted ? evicted_and_unwritten : holds_unwritten);
    if (n < 0) return -1;
    for (long i = 0; i < n; i++) {
        if (write_player(fp, fp->writing[i])) {
            copy_text(fp->errmsg, sizeof fp->errmsg, store_errmsg(fp->st));
            return -1;
        }
        if (write_pending(fp, fp->writing[i])) return -1;
    }
    return 0;
}

/* write_back: the batch's index pairs go to their players' pending pairs instead of a
 * row per player per batch (a player in every batch had one small row each time: 300k
 * rows for 98k players in a 2.02M-event replay). A player whose pairs fill a row has it
 * written now, which keeps the pending pairs a dedupe check walks short; past
 * FOLD_PENDING_PAIRS_BUDGET all are written. The touched list is in player_key order. */
static int hold_player_events(fold_partition *fp) {
    for (size_t i = 0; i < fp->outcome_count; i++) {
        const pending_outcome *o = &fp->outcomes[i];
        cached_player *p = o->player;
        if (reserve((void **)&p->pend, &p->pend_cap, p->pend_count + 1, sizeof *p->pend)) {
            snprintf(fp->errmsg, sizeof fp->errmsg, "out of memory in the fold");
            return -1;
        }
        p->pend[p->pend_count++] = (pending_pair){o->offset, o->id_hash};
        fp->pend_total++;
    }
    for (size_t i = 0; i < fp->touched_count; i++)
        if (fp->touched[i]->pend_count >= HISTORY_IDS_MAX && write_pending(fp, fp->touched[i]))
            return -1;
    if (fp->pend_total <= FOLD_PENDING_PAIRS_BUDGET) return 0;
    long n = players_in_key_order(fp, holds_pending_pairs);
    for (long i = 0; i < n; i++)
        if (write_pending(fp, fp->writing[i])) return -1;
    return n < 0 ? -1 : 0;
}

/* The batch's player index pairs, by player and offset (see store_add_player_events).
 * The touched list is in player_key order by now, so a counting sort does it: count each
 * player's pairs, give each player its run, and place the outcomes in offset order (the
 * order they came in). It replaced a qsort of all the pairs (3 % of replay). */
static int write_player_events(fold_partition *fp) {
    if (fp->config.write_back) return hold_player_events(fp);
    if (reserve((void **)&fp->sorted, &fp->sorted_cap, fp->outcome_count, sizeof *fp->sorted) ||
        reserve((void **)&fp->rank_next, &fp->rank_next_cap, fp->touched_count + 1,
                sizeof *fp->rank_next)) {
        snprintf(fp->errmsg, sizeof fp->errmsg, "out of memory in the fold");
        return -1;
    }
    size_t *next = fp->rank_next;
    memset(next, 0, fp->touched_count * sizeof *next);
    for (size_t i = 0; i < fp->outcome_count; i++) next[fp->outcomes[i].player->batch_rank]++;
    size_t start = 0;
    for (size_t r = 0; r < fp->touched_count; r++) {
        size_t count = next[r];
        next[r] = start;
        start += count;
    }
    for (size_t i = 0; i < fp->outcome_count; i++) {
        const pending_outcome *o = &fp->outcomes[i];
        fp->sorted[next[o->player->batch_rank]++] =
            (store_player_event){o->player_key, o->id_hash, o->offset};
    }
    return store_add_player_events(fp->st, fp->sorted, fp->outcome_count);
}

/* The batch's history rows, in offset order, handed to the store a chunk at a time. */
static int write_history(fold_partition *fp) {
    store_history_record chunk[256];
    size_t used = 0;
    for (size_t i = 0; i < fp->outcome_count; i++) {
        const pending_outcome *o = &fp->outcomes[i];
        chunk[used++] = (store_history_record){
            .offset = o->offset,
            .player_key = o->player_key,
            .event_id = arena_get(fp, o->event_id_at),
            .id_hash = o->id_hash,
            .event_type = o->event_type,
            .outcome = o->outcome,
            .reason = arena_get(fp, o->reason_at),
            .ts = arena_get(fp, o->ts_at),
            .items = arena_get(fp, o->items_at),
            .guild_id = arena_get(fp, o->guild_at),
        };
        if (used == sizeof chunk / sizeof chunk[0] || i + 1 == fp->outcome_count) {
            if (store_append_history(fp->st, chunk, used)) return -1;
            used = 0;
        }
    }
    return 0;
}

int fold_partition_commit(fold_partition *fp, int64_t next_offset) {
    if (fp->lost) return refuse_lost(fp);
    if (begin_if_needed(fp)) goto fail;
    /* In player_key order, the order of the players and inventory B-trees: consecutive
     * writes land on the same or neighbouring pages, and new players append. The player
     * index pairs are put in the same order (write_player_events). */
    if (fp->touched_count)
        qsort(fp->touched, fp->touched_count, sizeof *fp->touched, compare_player_keys);
    for (size_t i = 0; i < fp->touched_count; i++) fp->touched[i]->batch_rank = i;
    if (write_history(fp)) goto fail;
    if (write_player_events(fp)) goto fail;
    for (size_t i = 0; i < fp->dead_count; i++) {
        const pending_dead_letter *d = &fp->dead[i];
        if (store_record_dead_letter(fp->st, d->offset, d->reason, d->key, d->key_len, d->payload,
                                     d->payload_len))
            goto fail;
    }
    int evicting = fp->player_count > fp->config.cached_players;
    if (!fp->config.write_back) {
        for (size_t i = 0; i < fp->touched_count; i++)
            if (write_player(fp, fp->touched[i])) goto fail;
    } else if (evicting) {
        /* the players leaving the cache take their changes to the store with them */
        if (mark_evictions(fp, players_kept(fp))) goto oom;
        if (write_changed(fp, 1)) return -1;
    }
    for (size_t i = 0; i < fp->member_count; i++) {
        const member_change *m = &fp->members[i];
        if (m->add ? store_add_member(fp->st, m->guild_id, m->user_id, m->ts)
                   : store_remove_member(fp->st, m->guild_id, m->user_id))
            goto fail;
    }
    for (size_t i = 0; i < fp->guild_count_used; i++) {
        const guild_count *g = &fp->guilds[i];
        if (g->dirty && store_set_guild_count(fp->st, g->guild_id, g->count)) goto fail;
    }
    for (size_t i = 0; i < fp->emit_count; i++) {
        const pending_emit *e = &fp->emits[i];
        int64_t seq;
        if (store_outbox_add(fp->st, e->msg_key, e->event_id, e->user_id, e->payload, &seq))
            goto fail;
    }
    if (store_set_next_offset(fp->st, next_offset) || store_commit(fp->st)) goto fail;
    fp->in_txn = 0;
    if (fp->config.write_back) fp->held_past_commit = 1;

    clear_batch(fp);
    if (evicting) {
        fp->cache_whole = 0; /* players leave the cache: a miss must ask the store again */
        /* Serve's players were all written above; write-back marked and wrote its own. */
        if ((!fp->config.write_back && mark_evictions(fp, players_kept(fp))) ||
            rebuild_players(fp, players_kept(fp), not_evicted))
            fold_partition_discard(fp); /* out of memory: start from the store again */
    }
    fp->batch++;
    return 0;
oom:
    snprintf(fp->errmsg, sizeof fp->errmsg, "out of memory in the fold");
    return -1;
fail:
    copy_text(fp->errmsg, sizeof fp->errmsg, store_errmsg(fp->st));
    return -1;
}

int fold_partition_flush(fold_partition *fp) {
    if (fp->lost) return refuse_lost(fp);
    if (!fp->config.write_back) return 0;
    if (fold_partition_pending(fp)) {
        snprintf(fp->errmsg, sizeof fp->errmsg, "a flush with a batch not committed");
        return -1;
    }
    if (begin_if_needed(fp)) goto fail;
    if (write_changed(fp, 0)) return -1;
    if (store_commit(fp->st)) goto fail;
    fp->in_txn = 0;
    fp->held_past_commit = 0;
    return 0;
fail:
    copy_text(fp->errmsg, sizeof fp->errmsg, store_errmsg(fp->st));
    return -1;
}

int fold_partition_lost(const fold_partition *fp) { return fp->lost; }

void fold_partition_discard(fold_partition *fp) {
    store_rollback(fp->st);
    fp->in_txn = 0;
    fp->next_player_key = 0;
    if (fp->held_past_commit) fp->lost = 1;
    clear_batch(fp);
    for (size_t i = 0; i < fp->player_cap; i++) free_player(fp, fp->players[i].player);
    free(fp->players);
    fp->players = NULL;
    fp->player_cap = fp->player_count = 0;
    fp->batch++;
}

fold_partition *fold_partition_new(store *st, const fold_config *config, char *errstr,
                                   size_t errstr_size) {
    fold_partition *fp = calloc(1, sizeof *fp);
    if (!fp) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    fp->st = st;
    fp->config = *config;
    if (fp->config.guild_capacity <= 0) fp->config.guild_capacity = FOLD_DEFAULT_GUILD_CAPACITY;
    if (fp->config.cached_players == 0) fp->config.cached_players = FOLD_DEFAULT_CACHED_PLAYERS;
    fp->batch = 1;
    return fp;
}

void fold_partition_free(fold_partition *fp) {
    if (!fp) return;
    fold_partition_discard(fp);
    free(fp->outcomes);
    free(fp->sorted);
    free(fp->batch_scratch);
    free(fp->rank_next);
    free(fp->touched);
    free(fp->seen_slots);
    free(fp->dead);
    free(fp->guilds);
    free(fp->members);
    free(fp->emits);
    free(fp->arena);
    free(fp->ids_scratch);
    free(fp->writing);
    free(fp);
}

/* ---------------------------------------------------------------- point-in-time reads */

static int compare_lines(const void *a, const void *b) {
    return strcmp(((const store_line *)a)->item_type, ((const store_line *)b)->item_type);
}

typedef struct {
    fold_partition *fp;
    const char *user_id;
    const fold_point *point;
    fold_player_state *out;
    int failed;
} timeline_walk;

/* "sword:1,arrow:20" back into the event's lines. */
static void items_from_text(const char *text, event *ev) {
    for (const char *p = text; p && *p && ev->item_count < CODEC_MAX_ITEMS;) {
        const char *colon = strchr(p, ':');
        if (!colon) break;
        event_item *it = &ev->items[ev->item_count++];
        size_t len = (size_t)(colon - p) < CODEC_ID_MAX ? (size_t)(colon - p) : CODEC_ID_MAX;
        memcpy(it->item_type, p, len);
        it->item_type[len] = '\0';
        it->quantity = strtoll(colon + 1, NULL, 10);
        const char *comma = strchr(colon, ',');
        p = comma ? comma + 1 : NULL;
    }
}

/* Folds one recorded event of the player again. Rows that changed nothing (duplicates,
 * rejections) are skipped, but for a refused guild decision, which ends a wait; the rest
 * must get the outcome they got when they were first folded. */
static int timeline_row(void *arg, const store_history_row *row) {
    timeline_walk *walk = arg;
    fold_player_state *out = walk->out;
    if (walk->point->until_ms >= 0 && row->ts_ms > walk->point->until_ms) return 0;
    out->events_counted++;
    out->last_offset = row->offset;
    copy_text(out->last_event_id, sizeof out->last_event_id, row->event_id);
    /* formatted once, at the end: most rows are not the last */
    out->last_ts_ms = row->ts ? -1 : row->ts_ms;
    if (row->ts) copy_text(out->last_ts, sizeof out->last_ts, row->ts);
    int decision = row->type == EVENT_GUILD_JOIN_DECIDED;
    if (strcmp(row->outcome, "duplicate") == 0 ||
        (strcmp(row->outcome, "rejected") == 0 &&
         (!decision || (row->reason && strcmp(row->reason, "no_pending_join") == 0))))
        return 0;
    event ev;
    memset(&ev, 0, sizeof ev);
    ev.version = CODEC_EVENT_VERSION;
    ev.type = (event_type)row->type;
    copy_text(ev.event_id, sizeof ev.event_id, row->event_id);
    copy_text(ev.user_id, sizeof ev.user_id, walk->user_id);
    /* ts only fills the player row's created/updated times, which no answer shows */
    if (row->ts) copy_text(ev.ts, sizeof ev.ts, row->ts);
    if (row->guild_id) copy_text(ev.guild_id, sizeof ev.guild_id, row->guild_id);
    items_from_text(row->items, &ev);
    if (decision) {
        /* The decision answers the join the player waits for: history keeps its id, from
         * which the decision's own id derives. */
        cached_player *p = find_player(walk->fp, walk->user_id, hash_text(walk->user_id));
        if (p) copy_text(ev.cause_event_id, sizeof ev.cause_event_id, p->row.pending_cause);
        ev.decision_granted = strcmp(row->outcome, "applied") == 0;
        if (row->reason) copy_text(ev.decision_reason, sizeof ev.decision_reason, row->reason);
    }
    fold_result result;
    if (fold_partition_event(walk->fp, &ev, row->offset, &result)) {
        walk->failed = 1;
        return 1;
    }
    if (strcmp(fold_outcome_name(result.outcome), row->outcome) != 0) {
        snprintf(walk->fp->errmsg, sizeof walk->fp->errmsg,
                 "history of %s at offset %lld: recorded %s, folds as %s", walk->user_id,
                 (long long)row->offset, row->outcome, fold_outcome_name(result.outcome));
        walk->failed = 1;
        return 1;
    }
    return 0;
}

int fold_player_at(store *history_store, store *scratch, const char *user_id,
                   const fold_point *point, fold_player_state *out, char *errstr,
                   size_t errstr_size) {
    fold_config config = {.guild_capacity = FOLD_DEFAULT_GUILD_CAPACITY, .cached_players = 1};
    memset(out, 0, sizeof *out);
    out->last_offset = out->last_ts_ms = -1;
    fold_partition *fp = fold_partition_new(scratch, &config, errstr, errstr_size);
    if (!fp) return -1;
    timeline_walk walk = {.fp = fp, .user_id = user_id, .point = point, .out = out};
    int rc = -1;
    if (store_walk_player_history(history_store, user_id, point->until_offset, 0, timeline_row,
                                  &walk)) {
        snprintf(errstr, errstr_size, "%s", store_errmsg(history_store));
        goto done;
    }
    if (walk.failed) {
        snprintf(errstr, errstr_size, "%s", fp->errmsg);
        goto done;
    }
    if (out->last_ts_ms >= 0) store_format_ts(out->last_ts_ms, out->last_ts);
    cached_player *p = find_player(fp, user_id, hash_text(user_id));
    if (p) {
        out->player = p->row;
        out->exists = p->row.version > 0;
        size_t kept = 0;
        for (size_t i = 0; i < p->line_count; i++) kept += p->lines[i].quantity > 0;
        if (kept && !(out->lines = calloc(kept, sizeof *out->lines))) {
            snprintf(errstr, errstr_size, "out of memory");
            goto done;
        }
        for (size_t i = 0; i < p->line_count; i++) {
            if (p->lines[i].quantity <= 0) continue;
            store_line *line = &out->lines[out->line_count++];
            memcpy(line->item_type, p->lines[i].item_type, sizeof line->item_type);
            line->quantity = p->lines[i].quantity;
        }
        if (out->line_count) qsort(out->lines, out->line_count, sizeof *out->lines, compare_lines);
    }
    rc = 0;
done:
    fold_partition_free(fp); /* rolls the scratch store back: it never keeps anything */
    return rc;
}

void fold_player_state_clear(fold_player_state *state) {
    free(state->lines);
    state->lines = NULL;
    state->line_count = 0;
}
