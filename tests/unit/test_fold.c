/* Unit tests of state/fold over a real SQLite file: a table of event sequences, each
 * with the outcome every event must get and the state that must result. */
#include "check.h"
#include "state/fold.h"
#include "temp_store.h"

#include <stdlib.h>
#include <unistd.h>

typedef struct {
    const char *type;      /* event type name */
    const char *event_id;
    const char *user;
    const char *items;     /* "sword:2,potion:1" or NULL */
    const char *guild;     /* or NULL */
    long long expected;    /* -1: no expected_version */
    const char *outcome;   /* expected outcome; for "deliver", the delivered events' */
    const char *reason;    /* expected reason, or NULL */
} step;

typedef struct {
    const char *user;
    const char *item; /* NULL: check the guild instead */
    long long quantity;
    const char *guild; /* "" for none */
} expectation;

typedef struct {
    const char *name;
    int64_t capacity;
    step steps[16];
    expectation expect[6];
} scenario;

static const scenario scenarios[] = {
    {"purchase adds, cart applies together", 100,
     {{"purchase_item", "e1", "alice", "sword:1", NULL, -1, "applied", NULL},
      {"purchase_item", "e2", "alice", "sword:2,potion:3,sword:1", NULL, -1, "applied", NULL},
      {"purchase_sword", "e3", "alice", "sword:1", NULL, -1, "applied", NULL}},
     {{"alice", "sword", 5, NULL}, {"alice", "potion", 3, NULL}}},
    {"consume subtracts; too much is rejected and changes nothing", 100,
     {{"purchase_item", "e1", "bob", "potion:2,gem:1", NULL, -1, "applied", NULL},
      {"consume_item", "e2", "bob", "potion:1", NULL, -1, "applied", NULL},
      {"consume_item", "e3", "bob", "potion:2", NULL, -1, "rejected", "insufficient_quantity"},
      {"consume_item", "e4", "bob", "gem:1", NULL, -1, "applied", NULL},
      {"consume_item", "e5", "nobody", "gem:1", NULL, -1, "rejected", "insufficient_quantity"}},
     {{"bob", "potion", 1, NULL}, {"bob", "gem", 0, NULL}}},
    {"duplicates change nothing", 100,
     {{"purchase_item", "same", "carol", "axe:1", NULL, -1, "applied", NULL},
      {"purchase_item", "same", "carol", "axe:1", NULL, -1, "duplicate", NULL},
      {"consume_item", "same", "carol", "axe:1", NULL, -1, "duplicate", NULL}},
     {{"carol", "axe", 1, NULL}}},
    /* One store plays both the players' and the guild's partition here; "deliver"
     * folds what the fold emitted (the outbox) back in, round after round, and lists the
     * outcomes of what it folded. */
    {"guild exchange", 2,
     {{"join_guild", "g1", "dan", NULL, "owls", -1, "pending", NULL},
      {"join_guild", "g2", "dan", NULL, "owls", -1, "rejected", "guild_join_pending"},
      {"leave_guild", "g2l", "dan", NULL, NULL, -1, "rejected", "guild_join_pending"},
      {"deliver", NULL, NULL, NULL, NULL, -1, "applied applied", NULL},
      {"join_guild", "g3", "dan", NULL, "bats", -1, "rejected", "already_in_guild"},
      {"join_guild", "g3b", "dan", NULL, "owls", -1, "applied", NULL},
      {"join_guild", "g4", "eve", NULL, "owls", -1, "pending", NULL},
      {"join_guild", "g5", "fay", NULL, "owls", -1, "pending", NULL},
      {"deliver", NULL, NULL, NULL, NULL, -1,
       "applied rejected:guild_full applied rejected:guild_full", NULL},
      {"leave_guild", "g6", "dan", NULL, NULL, -1, "applied", NULL},
      {"leave_guild", "g7", "dan", NULL, NULL, -1, "rejected", "not_in_guild"},
      {"join_guild", "g8", "fay", NULL, "owls", -1, "pending", NULL},
      {"deliver", NULL, NULL, NULL, NULL, -1, "applied applied applied", NULL},
      {"deliver", NULL, NULL, NULL, NULL, -1, "", NULL}},
     {{"dan", NULL, 0, ""}, {"eve", NULL, 0, "owls"}, {"fay", NULL, 0, "owls"}}},
    {"expected_version", 100,
     {{"purchase_item", "v1", "gus", "bow:1", NULL, 0, "applied", NULL},
      {"purchase_item", "v2", "gus", "bow:1", NULL, 0, "rejected", "version_conflict"},
      {"purchase_item", "v3", "gus", "bow:1", NULL, 1, "applied", NULL},
      {"default", "v4", "gus", NULL, NULL, -1, "applied", NULL},
      {"purchase_item", "v5", "gus", "bow:1", NULL, 2, "applied", NULL}},
     {{"gus", "bow", 3, NULL}}},
};

static void build_event(const step *s, event *ev) {
    memset(ev, 0, sizeof *ev);
    ev->version = 1;
    codec_type_parse(s->type, &ev->type);
    snprintf(ev->event_id, sizeof ev->event_id, "%s", s->event_id);
    snprintf(ev->user_id, sizeof ev->user_id, "%s", s->user);
    snprintf(ev->ts, sizeof ev->ts, "2026-11-29T00:00:00.000Z");
    if (s->guild) snprintf(ev->guild_id, sizeof ev->guild_id, "%s", s->guild);
    if (s->expected >= 0) {
        ev->has_expected_version = 1;
        ev->expected_version = s->expected;
    }
    if (s->items) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s", s->items);
        char *save = NULL;
        for (char *tok = strtok_r(buf, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
            char *colon = strchr(tok, ':');
            *colon = '\0';
            event_item *it = &ev->items[ev->item_count++];
            snprintf(it->item_type, sizeof it->item_type, "%s", tok);
            it->quantity = atoll(colon + 1);
        }
    }
}

/* What the store says user holds of item (0 when none). */
static int64_t held(store *st, const char *user, const char *item, store_player *player) {
    store_inventory inv;
    int64_t quantity = 0;
    CHECK(store_read_inventory(st, user, &inv) == 0);
    for (size_t i = 0; item && i < inv.line_count; i++)
        if (strcmp(inv.lines[i].item_type, item) == 0) quantity = inv.lines[i].quantity;
    if (player) *player = inv.player;
    store_inventory_clear(&inv);
    return quantity;
}

typedef struct {
    char key[80];
    char *payload;
} emitted;

typedef struct {
    emitted rows[64];
    int64_t seqs[64];
    size_t count;
} emitted_list;

static int collect_emitted(void *arg, const store_outbox_row *r) {
    emitted_list *list = arg;
    if (list->count == 64) return -1;
    snprintf(list->rows[list->count].key, sizeof list->rows[0].key, "%s", r->msg_key);
    list->rows[list->count].payload = strdup(r->payload);
    list->seqs[list->count++] = r->seq;
    return 0;
}

/* Commits, then folds what the outbox holds back in, as Kafka would deliver it, until it
 * is empty; writes the outcomes ("applied rejected:guild_full ...") into log. */
static void deliver(fold_partition *fp, store *st, int64_t *offset, char *log, size_t log_size) {
    size_t used = 0;
    log[0] = '\0';
    for (;;) {
        emitted_list list = {.count = 0};
        CHECK(fold_partition_commit(fp, *offset) == 0);
        CHECK(store_outbox_walk(st, 0, 64, collect_emitted, &list) == 0);
        if (!list.count) break;
        CHECK(store_begin(st) == 0);
        for (size_t i = 0; i < list.count; i++) CHECK(store_outbox_delete(st, list.seqs[i], list.seqs[i]) == 0);
        CHECK(store_commit(st) == 0);
        for (size_t i = 0; i < list.count; i++) {
            fold_result result;
            const emitted *e = &list.rows[i];
            CHECK(fold_partition_message(fp, (*offset)++, e->key, strlen(e->key), e->payload,
                                         strlen(e->payload), &result) == 0);
            used += (size_t)snprintf(log + used, log_size - used, "%s%s%s%s", used ? " " : "",
                                     fold_outcome_name(result.outcome),
                                     result.outcome == FOLD_REJECTED ? ":" : "",
                                     result.outcome == FOLD_REJECTED ? result.reason : "");
            free(list.rows[i].payload);
        }
    }
}

/* Runs a scenario in one batch (commit_every = 0) or committing after every
 * commit_every events, so the rules over cached and freshly read players both run; with
 * write_back, the players are written when evicted and by the flush at the end. */
static void run_scenario(const scenario *sc, int commit_every, size_t cached_players,
                         int write_back) {
    char path[64], errstr[512];
    store *st = open_temp_store(path, sizeof path, 3);
    if (!st) return;
    fold_config config = {.guild_capacity = sc->capacity, .cached_players = cached_players,
                          .write_back = write_back};
    fold_partition *fp = fold_partition_new(st, &config, errstr, sizeof errstr);
    CHECK(fp != NULL);
    int i;
    int64_t offset = 0;
    for (i = 0; i < 16 && sc->steps[i].type; i++) {
        const step *s = &sc->steps[i];
        event ev;
        fold_result result;
        if (strcmp(s->type, "deliver") == 0) {
            char log[512];
            deliver(fp, st, &offset, log, sizeof log);
            if (strcmp(log, s->outcome) != 0) {
                fprintf(stderr, "%s (commit every %d%s): step %d delivered: got '%s', want '%s'\n",
                        sc->name, commit_every, write_back ? ", write-back" : "", i, log, s->outcome);
                check_failures++;
            }
            check_count++;
            continue;
        }
        build_event(s, &ev);
        CHECK(fold_partition_event(fp, &ev, offset++, &result) == 0);
        const char *got = fold_outcome_name(result.outcome);
        if (strcmp(got, s->outcome) != 0 ||
            (s->reason && strcmp(result.reason, s->reason) != 0)) {
            fprintf(stderr, "%s (commit every %d%s): step %d (%s %s): got %s/%s, want %s/%s\n",
                    sc->name, commit_every, write_back ? ", write-back" : "", i, s->type,
                    s->event_id, got, result.reason,
                    s->outcome, s->reason ? s->reason : "");
            check_failures++;
        }
        check_count++;
        if (commit_every && (i + 1) % commit_every == 0) CHECK(fold_partition_commit(fp, offset) == 0);
    }
    CHECK(fold_partition_commit(fp, offset) == 0);
    CHECK(fold_partition_flush(fp) == 0);
    for (int k = 0; k < 6 && sc->expect[k].user; k++) {
        const expectation *e = &sc->expect[k];
        store_player player;
        int64_t quantity = held(st, e->user, e->item, &player);
        if (e->item && quantity != e->quantity) {
            fprintf(stderr, "%s%s: %s holds %lld %s, want %lld\n", sc->name,
                    write_back ? " (write-back)" : "", e->user, (long long)quantity, e->item,
                    e->quantity);
            check_failures++;
        }
        if (!e->item && strcmp(player.guild_id, e->guild) != 0) {
            fprintf(stderr, "%s%s: %s in guild '%s', want '%s'\n", sc->name,
                    write_back ? " (write-back)" : "", e->user, player.guild_id, e->guild);
            check_failures++;
        }
        check_count++;
    }
    fold_partition_free(fp);
    remove_temp_store(st, path);
}

/* Versions count applied events only; bad records are dead-lettered while the
 * partition's offset still advances; a discarded batch leaves no trace. */
static void test_versions_dead_letters_and_discard(void) {
    char path[64], errstr[512];
    store *st = open_temp_store(path, sizeof path, 3);
    if (!st) return;
    fold_config config = {.guild_capacity = 100};
    fold_partition *fp = fold_partition_new(st, &config, errstr, sizeof errstr);
    fold_result result;
    const char *good = "{\"v\":1,\"event_id\":\"m1\",\"event_type\":\"purchase_item\",\"user_id\":\"hal\","
                       "\"ts\":\"2026-11-29T00:00:00.000Z\",\"items\":[{\"item_type\":\"gem\",\"quantity\":4}]}";
    const char *bad = "{\"v\":9}";
    CHECK(fold_partition_message(fp, 10, "hal", 3, good, strlen(good), &result) == 0);
    CHECK(result.outcome == FOLD_APPLIED);
    CHECK(fold_partition_message(fp, 11, "hal", 3, bad, strlen(bad), &result) == 0);
    CHECK(result.outcome == FOLD_DEAD_LETTER);
    CHECK(fold_partition_message(fp, 12, "zed", 3, good, strlen(good), &result) == 0);
    CHECK(result.outcome == FOLD_DEAD_LETTER && strstr(result.reason, "key") != NULL);
    CHECK(fold_partition_message(fp, 13, "hal", 3, "", 0, &result) == 0);
    CHECK(result.outcome == FOLD_DEAD_LETTER);
    CHECK(fold_partition_pending(fp) == 4);
    CHECK(fold_partition_commit(fp, 14) == 0);
    int64_t next = -1;
    CHECK(store_get_next_offset(st, &next) == 0 && next == 14);
    store_player player;
    CHECK(held(st, "hal", "gem", &player) == 4 && player.version == 1);

    /* The same id again, then a discard: nothing of it stays, in memory or on disk. */
    CHECK(fold_partition_message(fp, 14, "hal", 3, good, strlen(good), &result) == 0);
    CHECK(result.outcome == FOLD_DUPLICATE);
    const char *more = "{\"v\":1,\"event_id\":\"m2\",\"event_type\":\"purchase_item\",\"user_id\":\"hal\","
                       "\"ts\":\"2026-11-29T00:00:00.000Z\",\"items\":[{\"item_type\":\"gem\",\"quantity\":1}]}";
    CHECK(fold_partition_message(fp, 15, "hal", 3, more, strlen(more), &result) == 0);
    CHECK(result.outcome == FOLD_APPLIED);
    fold_partition_discard(fp);
    CHECK(held(st, "hal", "gem", &player) == 4 && player.version == 1);
    CHECK(fold_partition_message(fp, 15, "hal", 3, more, strlen(more), &result) == 0);
    CHECK(result.outcome == FOLD_APPLIED);
    CHECK(fold_partition_commit(fp, 16) == 0);
    CHECK(held(st, "hal", "gem", &player) == 5 && player.version == 2);
    store_event_outcome outcome;
    CHECK(store_read_event(st, "m2", "hal", &outcome) == 1 && outcome.offset == 15 &&
          outcome.partition == 3 && strcmp(outcome.outcome, "applied") == 0);
    CHECK(store_read_event(st, "m1", NULL, &outcome) == 1 && outcome.offset == 10);
    fold_partition_free(fp);
    remove_temp_store(st, path);
}

/* A fold over a new temporary store whose cache keeps 10 players between batches, for
 * the cache tests; NULL (nothing left open) when either cannot be made. */
static fold_partition *small_cache_fold(char *path, size_t path_size, store **st) {
    char errstr[512];
    fold_config config = {.guild_capacity = 100, .cached_players = 10};
    if (!(*st = open_temp_store(path, path_size, 3))) return NULL;
    fold_partition *fp = fold_partition_new(*st, &config, errstr, sizeof errstr);
    CHECK(fp != NULL);
    if (!fp) remove_temp_store(*st, path);
    return fp;
}

/* Folds a purchase of one gem by user u<user> with event id id at *offset (then moved on);
 * returns its outcome, or -1 when the fold failed. */
static int buy_gem(fold_partition *fp, const char *id, int user, int64_t *offset) {
    event ev;
    fold_result result;
    char name[32];
    snprintf(name, sizeof name, "u%d", user);
    step s = {"purchase_item", id, name, "gem:1", NULL, -1, "applied", NULL};
    build_event(&s, &ev);
    if (fold_partition_event(fp, &ev, (*offset)++, &result)) return -1;
    return (int)result.outcome;
}

/* A batch that touches more players than the cache keeps: after the commit the cache
 * holds three quarters of its bound (the most recently touched players) without losing
 * any change, and the next batch must see every committed change, cached or not. */
static void test_batch_larger_than_the_cache(void) {
    char path[64];
    store *st;
    fold_partition *fp = small_cache_fold(path, sizeof path, &st);
    if (!fp) return;
    int64_t offset = 0;
    for (int round = 0; round < 2; round++) {
        for (int i = 0; i < 3000; i++) {
            char id[32];
            snprintf(id, sizeof id, "r%d-%d", round, i);
            CHECK(buy_gem(fp, id, i, &offset) == FOLD_APPLIED);
            if (i == 99) {
                /* the batch's own players, apart from those cached from the last batch
                 * (the engine's catch-up bound counts these) */
                CHECK(fold_partition_batch_players(fp) == 100);
                CHECK(fold_partition_players(fp) >= 100u &&
                      fold_partition_players(fp) <= (round ? 108u : 100u));
                /* a player touched again is counted once */
                CHECK(buy_gem(fp, id, i, &offset) == FOLD_DUPLICATE);
                CHECK(fold_partition_batch_players(fp) == 100);
            }
        }
        CHECK(fold_partition_commit(fp, offset) == 0);
        CHECK(fold_partition_batch_players(fp) == 0);
        CHECK(fold_partition_players(fp) == 8); /* 10 - 10 / 4 */
    }
    store_player player;
    CHECK(held(st, "u0", "gem", &player) == 2 && player.version == 2);
    CHECK(held(st, "u2999", "gem", &player) == 2 && player.version == 2);
    fold_partition_free(fp);
    remove_temp_store(st, path);
}

/* A fold over an empty store knows a player it has not cached is new, without asking the
 * store, only until a player leaves its cache: then a player met again must be read back
 * (a player taken for new would be applied from version 0 and its row would collide). */
static void test_evicted_player_is_read_back(void) {
    char path[64];
    store *st;
    fold_partition *fp = small_cache_fold(path, sizeof path, &st);
    if (!fp) return;
    int64_t offset = 0;
    /* batch 1: u0..u4 (the cache keeps them); batch 2: 20 others (u0..u4 evicted);
     * batch 3: u0..u4 again, and one player never seen */
    static const struct {
        int first, count;
    } batches[] = {{0, 5}, {100, 20}, {0, 5}, {500, 1}};
    for (size_t b = 0; b < sizeof batches / sizeof batches[0]; b++) {
        for (int i = batches[b].first; i < batches[b].first + batches[b].count; i++) {
            char id[32];
            snprintf(id, sizeof id, "b%zu-%d", b, i);
            CHECK(buy_gem(fp, id, i, &offset) == FOLD_APPLIED);
        }
        CHECK(fold_partition_commit(fp, offset) == 0);
    }
    store_player player;
    CHECK(held(st, "u0", "gem", &player) == 2 && player.version == 2);
    CHECK(held(st, "u4", "gem", &player) == 2 && player.version == 2);
    CHECK(held(st, "u100", "gem", &player) == 1 && player.version == 1);
    CHECK(held(st, "u500", "gem", &player) == 1 && player.version == 1);
    fold_partition_free(fp);
    remove_temp_store(st, path);
}

/* One hot player with many events: every new id applies and every id seen before is a
 * duplicate, in the batch, after a commit, and after the player was read back from the
 * store (a new fold: its id set rebuilt from the store, then grown again). */
static void test_hot_player_dedupe(void) {
    char path[64], errstr[512];
    store *st = open_temp_store(path, sizeof path, 3);
    if (!st) return;
    fold_config config = {.guild_capacity = 100, .cached_players = 10};
    int64_t offset = 0;
    int applied = 0, duplicates = 0;
    enum { EVENTS = 40000 };
    for (int fold_round = 0; fold_round < 2; fold_round++) {
        fold_partition *fp = fold_partition_new(st, &config, errstr, sizeof errstr);
        for (int i = 0; i < EVENTS; i++) {
            event ev;
            fold_result result;
            char id[48];
            int n = fold_round * EVENTS + i;
            /* every 7th event repeats an id from before (this batch, or an earlier one) */
            snprintf(id, sizeof id, "hot-%d", (n % 7 == 6) ? n / 2 : n);
            step s = {"purchase_item", id, "hot", "gem:1", NULL, -1, NULL, NULL};
            build_event(&s, &ev);
            CHECK(fold_partition_event(fp, &ev, offset++, &result) == 0);
            int repeat = n % 7 == 6 && (n / 2) % 7 != 6;
            CHECK(result.outcome == (repeat ? FOLD_DUPLICATE : FOLD_APPLIED));
            if (result.outcome == FOLD_APPLIED) applied++;
            if (result.outcome == FOLD_DUPLICATE) duplicates++;
            if (i % 5000 == 4999) CHECK(fold_partition_commit(fp, offset) == 0);
        }
        CHECK(fold_partition_commit(fp, offset) == 0);
        fold_partition_free(fp);
    }
    store_player player;
    CHECK(held(st, "hot", "gem", &player) == applied && player.version == applied);
    CHECK(duplicates > 0 && applied + duplicates == 2 * EVENTS);
    remove_temp_store(st, path);
}

/* Write-back (replay): commits write the history but leave the changed players in
 * memory; a player leaving the cache is written as it goes, and the flush writes the
 * rest. A discard after a commit loses what memory held: the fold says so and refuses
 * to go on, rather than folding on from a store that lags its offset. */
static void test_write_back(void) {
    char path[64], errstr[512];
    store *st = open_temp_store(path, sizeof path, 3);
    if (!st) return;
    fold_config config = {.guild_capacity = 100, .cached_players = 10, .write_back = 1};
    fold_partition *fp = fold_partition_new(st, &config, errstr, sizeof errstr);
    int64_t offset = 0, next = -1;
    store_player player;
    store_event_outcome outcome;
    CHECK(buy_gem(fp, "w1", 0, &offset) == FOLD_APPLIED);
    CHECK(buy_gem(fp, "w2", 0, &offset) == FOLD_APPLIED);
    CHECK(fold_partition_commit(fp, offset) == 0);
    /* committed: the history and the offset are in the store, the player is not yet */
    CHECK(store_get_next_offset(st, &next) == 0 && next == 2);
    CHECK(store_read_event(st, "w2", NULL, &outcome) == 1 && outcome.offset == 1);
    CHECK(held(st, "u0", "gem", &player) == 0 && player.version == 0);
    /* the player held in memory still dedupes and applies on top of its changes */
    CHECK(buy_gem(fp, "w1", 0, &offset) == FOLD_DUPLICATE);
    CHECK(buy_gem(fp, "w3", 0, &offset) == FOLD_APPLIED);
    CHECK(fold_partition_commit(fp, offset) == 0);
    CHECK(held(st, "u0", "gem", &player) == 0);
    /* 20 other players pass the cache's bound of 10: u0, touched least recently, leaves
     * it, written as it goes; those kept stay unwritten */
    for (int i = 1; i <= 20; i++) {
        char id[16];
        snprintf(id, sizeof id, "x%d", i);
        CHECK(buy_gem(fp, id, i, &offset) == FOLD_APPLIED);
    }
    CHECK(fold_partition_commit(fp, offset) == 0);
    CHECK(held(st, "u0", "gem", &player) == 3 && player.version == 3);
    CHECK(held(st, "u20", "gem", &player) == 0);
    /* read back from the store, u0 goes on from what was written */
    CHECK(buy_gem(fp, "w4", 0, &offset) == FOLD_APPLIED);
    CHECK(fold_partition_commit(fp, offset) == 0);
    CHECK(fold_partition_flush(fp) == 0);
    CHECK(held(st, "u0", "gem", &player) == 4 && player.version == 4);
    CHECK(held(st, "u20", "gem", &player) == 1 && player.version == 1);
    /* a line that went to 0 is deleted by the write that follows */
    step use = {"consume_item", "c1", "u1", "gem:1", NULL, -1, NULL, NULL};
    event ev;
    fold_result result;
    build_event(&use, &ev);
    CHECK(fold_partition_event(fp, &ev, offset++, &result) == 0 && result.outcome == FOLD_APPLIED);
    CHECK(fold_partition_commit(fp, offset) == 0);
    CHECK(held(st, "u1", "gem", &player) == 1);
    CHECK(fold_partition_flush(fp) == 0);
    CHECK(held(st, "u1", "gem", &player) == 0 && player.version == 2);
    /* a flush with a batch pending is refused */
    CHECK(buy_gem(fp, "w5", 0, &offset) == FOLD_APPLIED);
    CHECK(fold_partition_flush(fp) == -1);
    CHECK(fold_partition_commit(fp, offset) == 0);
    /* a discard now loses w5's change, held past its commit: every call fails after it */
    CHECK(fold_partition_lost(fp) == 0);
    CHECK(buy_gem(fp, "w6", 0, &offset) == FOLD_APPLIED);
    fold_partition_discard(fp);
    CHECK(fold_partition_lost(fp) == 1);
    CHECK(buy_gem(fp, "w6", 0, &offset) == -1);
    CHECK(strstr(fold_partition_errmsg(fp), "lost") != NULL);
    CHECK(fold_partition_commit(fp, offset) == -1 && fold_partition_flush(fp) == -1);
    CHECK(held(st, "u0", "gem", &player) == 4);
    fold_partition_free(fp);

    /* Without write-back a discard loses nothing committed: the fold goes on. */
    config.write_back = 0;
    fp = fold_partition_new(st, &config, errstr, sizeof errstr);
    CHECK(buy_gem(fp, "s1", 0, &offset) == FOLD_APPLIED);
    CHECK(fold_partition_commit(fp, offset) == 0);
    CHECK(held(st, "u0", "gem", &player) == 5);
    CHECK(buy_gem(fp, "s2", 0, &offset) == FOLD_APPLIED);
    fold_partition_discard(fp);
    CHECK(fold_partition_lost(fp) == 0 && buy_gem(fp, "s2", 0, &offset) == FOLD_APPLIED);
    fold_partition_free(fp);
    remove_temp_store(st, path);
}

typedef struct {
    uint32_t hash;
    int n;
} hashed_id;

static int by_hash(const void *x, const void *y) {
    const hashed_id *a = x, *b = y;
    return (a->hash > b->hash) - (a->hash < b->hash);
}

/* Write-back keeps each player's index pairs in memory across commits (a row per player
 * once, not per batch), so dedupe must also confirm a hash match against the history of
 * those pending events: a repeat from an earlier batch is a duplicate, and a different
 * id with the same 32-bit hash is not. With a small cache, players leave it (their
 * pairs written) and come back (their hashes read from the store). */
static void test_write_back_dedupe(size_t cached_players) {
    char path[64], errstr[512];
    store *st = open_temp_store(path, sizeof path, 3);
    if (!st) return;
    fold_config config = {.guild_capacity = 100, .cached_players = cached_players, .write_back = 1};
    fold_partition *fp = fold_partition_new(st, &config, errstr, sizeof errstr);
    int64_t offset = 0;
    int applied[50] = {0};
    for (int round = 0; round < 12; round++) {
        for (int u = 0; u < 50; u++) {
            char id[32];
            for (int k = 0; k < 3; k++) {
                snprintf(id, sizeof id, "r%d-u%d-%d", round, u, k);
                CHECK(buy_gem(fp, id, u, &offset) == FOLD_APPLIED);
                applied[u]++;
            }
            if (round >= 2) { /* an id of two rounds before: committed, not yet indexed */
                snprintf(id, sizeof id, "r%d-u%d-1", round - 2, u);
                CHECK(buy_gem(fp, id, u, &offset) == FOLD_DUPLICATE);
            }
        }
        CHECK(fold_partition_commit(fp, offset) == 0);
    }
    /* two ids with the same hash (about eight pairs turn up among 2^18 scrambled numbers,
     * by the birthday bound on 32 bits; "c0".."c262143" happen to have none under
     * FNV-1a): the second is new, whatever its hash says */
    char a[32] = "", b[32] = "";
    enum { TRIES = 1 << 18 };
    hashed_id *all = malloc(TRIES * sizeof *all);
    for (int i = 0; all && i < TRIES; i++) {
        char id[32];
        snprintf(id, sizeof id, "c%u", (unsigned)i * 2654435761u);
        all[i] = (hashed_id){store_event_id_hash(id), i};
    }
    if (all) qsort(all, TRIES, sizeof *all, by_hash);
    for (int i = 1; all && i < TRIES && !b[0]; i++)
        if (all[i].hash == all[i - 1].hash)
            snprintf(a, sizeof a, "c%u", (unsigned)all[i - 1].n * 2654435761u),
                snprintf(b, sizeof b, "c%u", (unsigned)all[i].n * 2654435761u);
    free(all);
    CHECK(b[0] && store_event_id_hash(a) == store_event_id_hash(b) && strcmp(a, b) != 0);
    if (b[0]) {
        CHECK(buy_gem(fp, a, 7, &offset) == FOLD_APPLIED);
        CHECK(fold_partition_commit(fp, offset) == 0);
        CHECK(buy_gem(fp, b, 7, &offset) == FOLD_APPLIED);
        CHECK(fold_partition_commit(fp, offset) == 0);
        CHECK(buy_gem(fp, a, 7, &offset) == FOLD_DUPLICATE);
        CHECK(buy_gem(fp, b, 7, &offset) == FOLD_DUPLICATE);
        applied[7] += 2;
    }
    CHECK(fold_partition_commit(fp, offset) == 0);
    CHECK(fold_partition_flush(fp) == 0);
    fold_partition_free(fp);
    /* a new fold over the flushed store: every id is known from the store alone */
    fp = fold_partition_new(st, &config, errstr, sizeof errstr);
    CHECK(buy_gem(fp, "r0-u3-0", 3, &offset) == FOLD_DUPLICATE);
    CHECK(buy_gem(fp, "r11-u49-2", 49, &offset) == FOLD_DUPLICATE);
    CHECK(fold_partition_commit(fp, offset) == 0 && fold_partition_flush(fp) == 0);
    for (int u = 0; u < 50; u++) {
        char name[16];
        store_player player;
        snprintf(name, sizeof name, "u%d", u);
        CHECK(held(st, name, "gem", &player) == applied[u] && player.version == applied[u]);
    }
    fold_partition_free(fp);
    remove_temp_store(st, path);
}

/* A store marked unfinished is opened by nobody until the mark is cleared. */
static void test_unfinished_store_is_refused(void) {
    char path[64], errstr[512];
    store *st = open_temp_store(path, sizeof path, 3);
    if (!st) return;
    CHECK(store_set_unfinished(st, "replay") == 0);
    store *other = store_open(path, 3, STORE_READER, errstr, sizeof errstr);
    CHECK(other == NULL && strstr(errstr, "unfinished by a replay") != NULL);
    store_close(other);
    CHECK(store_set_unfinished(st, NULL) == 0);
    other = store_open(path, 3, STORE_READER, errstr, sizeof errstr);
    CHECK(other != NULL);
    store_close(other);
    remove_temp_store(st, path);
}

/* The look ahead only saves work: the same records folded with it (as the engine takes
 * its steps) and without it give the same outcomes and state, whatever the guesses:
 * repeats, a key that is not the user's, an id spelled with an escape (the peeked bytes
 * are not the id), another record's look ahead. */
static void test_look_ahead(void) {
    static const struct {
        const char *key, *payload;
    } records[] = {
        {"hal", "{\"v\":1,\"event_id\":\"a1\",\"event_type\":\"purchase_item\",\"user_id\":\"hal\","
                "\"ts\":\"2026-11-29T00:00:00.000Z\",\"items\":[{\"item_type\":\"gem\",\"quantity\":4}]}"},
        {"hal", "{\"v\":1,\"event_id\":\"a3\",\"event_type\":\"consume_item\",\"user_id\":\"hal\","
                "\"ts\":\"2026-11-29T00:00:00.000Z\",\"items\":[{\"item_type\":\"gem\",\"quantity\":1}]}"},
        {"bo", "{\"v\":1,\"event_id\":\"b1\",\"event_type\":\"purchase_item\",\"user_id\":\"bo\","
               "\"ts\":\"2026-11-29T00:00:00.000Z\",\"items\":[{\"item_type\":\"gem\",\"quantity\":2}]}"},
        {"hal", "{\"v\":1,\"event_id\":\"a1\",\"event_type\":\"purchase_item\",\"user_id\":\"hal\","
                "\"ts\":\"2026-11-29T00:00:00.000Z\",\"items\":[{\"item_type\":\"gem\",\"quantity\":4}]}"},
        {"bo", "{\"v\":1,\"event_id\":\"a\\u0031\",\"event_type\":\"consume_item\",\"user_id\":\"bo\","
               "\"ts\":\"2026-11-29T00:00:00.000Z\",\"items\":[{\"item_type\":\"gem\",\"quantity\":1}]}"},
        {"hal", "{\"v\":1,\"event_id\":\"b1\",\"event_type\":\"consume_item\",\"user_id\":\"bo\","
                "\"ts\":\"2026-11-29T00:00:00.000Z\",\"items\":[{\"item_type\":\"gem\",\"quantity\":1}]}"},
        {"bo", "{ \"v\":1,\"event_id\":\"b2\",\"event_type\":\"consume_item\",\"user_id\":\"bo\","
               "\"ts\":\"2026-11-29T00:00:00.000Z\",\"items\":[{\"item_type\":\"gem\",\"quantity\":1}]}"},
        {"bo", "{\"v\":1,\"event_id\":\"a\\u0031\",\"event_type\":\"consume_item\",\"user_id\":\"bo\","
               "\"ts\":\"2026-11-29T00:00:00.000Z\",\"items\":[{\"item_type\":\"gem\",\"quantity\":1}]}"},
        {"hal", "{\"v\":1,\"event_id\":\"a2\",\"event_type\":\"consume_item\",\"user_id\":\"hal\","
                "\"ts\":\"2026-11-29T00:00:00.000Z\",\"items\":[{\"item_type\":\"gem\",\"quantity\":3}]}"},
    };
    enum { N = sizeof records / sizeof records[0] };
    char outcomes[3][N][FOLD_REASON_MAX + 32];
    for (int way = 0; way < 3; way++) { /* without, with its own, with another's */
        char path[64], errstr[512];
        store *st = open_temp_store(path, sizeof path, 3);
        if (!st) return;
        fold_config config = {.guild_capacity = 100, .cached_players = 1};
        fold_partition *fp = fold_partition_new(st, &config, errstr, sizeof errstr);
        fold_look_ahead ahead[N];
        for (int i = 0; i < N; i++) {
            for (int step = 0; step < 3 && way; step++) {
                /* way 2: every other record gets the look ahead of another user's */
                const char *key = way == 2 && i % 2 ? "zed" : records[i].key;
                const char *payload = way == 2 && i % 2 ? records[1].payload : records[i].payload;
                fold_partition_look_ahead(fp, &ahead[i], step, key, strlen(key), payload,
                                          strlen(payload));
            }
            fold_result result;
            CHECK(fold_partition_message_ahead(fp, i, records[i].key, strlen(records[i].key),
                                               records[i].payload, strlen(records[i].payload),
                                               way ? &ahead[i] : NULL, &result) == 0);
            snprintf(outcomes[way][i], sizeof outcomes[way][i], "%s %s",
                     fold_outcome_name(result.outcome), result.reason);
            if (i == 4) CHECK(fold_partition_commit(fp, i + 1) == 0); /* the cache evicts */
        }
        CHECK(fold_partition_commit(fp, N) == 0);
        store_player player;
        CHECK(held(st, "hal", "gem", &player) == 0 && player.version == 3);
        CHECK(held(st, "bo", "gem", &player) == 0 && player.version == 3);
        fold_partition_free(fp);
        remove_temp_store(st, path);
    }
    CHECK(strncmp(outcomes[0][1], "applied", 7) == 0);    /* hal's gems, in memory */
    CHECK(strncmp(outcomes[0][3], "duplicate", 9) == 0);  /* a1 again */
    CHECK(strncmp(outcomes[0][5], "dead_letter", 11) == 0); /* keyed to another user */
    CHECK(strncmp(outcomes[0][7], "duplicate", 9) == 0);  /* "a\u0031" is a1 of bo's */
    for (int i = 0; i < N; i++) {
        CHECK(strcmp(outcomes[0][i], outcomes[1][i]) == 0);
        CHECK(strcmp(outcomes[0][i], outcomes[2][i]) == 0);
    }
}

int main(void) {
    for (size_t i = 0; i < sizeof scenarios / sizeof scenarios[0]; i++) {
        run_scenario(&scenarios[i], 0, 0, 0); /* one batch */
        run_scenario(&scenarios[i], 1, 0, 0); /* a commit after each event */
        run_scenario(&scenarios[i], 2, 1, 0); /* evicting the cache between batches */
        run_scenario(&scenarios[i], 1, 0, 1); /* write-back, commits after each event */
        run_scenario(&scenarios[i], 2, 1, 1); /* write-back, evicting between batches */
    }
    test_write_back();
    test_write_back_dedupe(1000); /* every player stays cached */
    test_write_back_dedupe(10);   /* players leave the cache and come back */
    test_unfinished_store_is_refused();
    test_versions_dead_letters_and_discard();
    test_batch_larger_than_the_cache();
    test_evicted_player_is_read_back();
    test_hot_player_dedupe();
    test_look_ahead();
    return check_finish("fold");
}
