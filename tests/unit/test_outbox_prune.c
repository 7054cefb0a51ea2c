/* Unit test of kafka/outbox_prune over a real SQLite file: the rows whose event the
 * receiver folded go, the others stay, whatever their order in the outbox. */
#include "check.h"
#include "kafka/outbox_prune.h"
#include "state/fold.h"
#include "temp_store.h"

#include <stdlib.h>
#include <unistd.h>

/* receiver_for: the one reader the test hands over, or none. */
static store *the_reader(void *arg, int32_t partition) {
    (void)partition;
    return arg;
}

typedef struct {
    char ids[16][16];
    size_t count;
} id_list;

static int collect_id(void *arg, const store_outbox_row *r) {
    id_list *list = arg;
    if (list->count == 16) return -1;
    snprintf(list->ids[list->count++], sizeof list->ids[0], "%s", r->event_id);
    return 0;
}

/* The event ids left in st's outbox, in seq order, space-separated, into out. */
static void outbox_ids(store *st, char *out, size_t out_size) {
    id_list list = {.count = 0};
    CHECK(store_outbox_walk(st, 0, 16, collect_id, &list) == 0);
    size_t used = 0;
    out[0] = '\0';
    for (size_t i = 0; i < list.count && used < out_size; i++)
        used += (size_t)snprintf(out + used, out_size - used, "%s%s", i ? " " : "", list.ids[i]);
}

typedef struct {
    size_t rows, in_log; /* rows left, and of them ids the log has (b<even>) */
    int in_order;
    int64_t last_seq;
} left_count;

static int count_left(void *arg, const store_outbox_row *r) {
    left_count *c = arg;
    c->rows++;
    if (r->event_id[0] == 'b') c->in_log++;
    if (r->seq <= c->last_seq) c->in_order = 0;
    c->last_seq = r->seq;
    return 0;
}

/* More rows than one chunk of the prune, most of them of one busy player (each chunk
 * finds a player's rows with one walk of its index), mixed with rows the log does not
 * have, of that player and of another: exactly the rows in the log go. */
static void test_many_rows_of_one_player(void) {
    char path[64], errstr[512];
    store *st = open_temp_store(path, sizeof path, 0);
    if (!st) return;
    fold_config config = {.guild_capacity = 100};
    fold_partition *fp = fold_partition_new(st, &config, errstr, sizeof errstr);
    enum { EVENTS = 12000 };
    for (int i = 0; i < EVENTS; i++) {
        char payload[256];
        fold_result result;
        int len = snprintf(payload, sizeof payload,
                           "{\"v\":1,\"event_id\":\"b%d\",\"event_type\":\"purchase_item\","
                           "\"user_id\":\"bo\",\"ts\":\"2026-11-29T00:00:00.000Z\","
                           "\"items\":[{\"item_type\":\"gem\",\"quantity\":1}]}",
                           i);
        CHECK(fold_partition_message(fp, i, "bo", 2, payload, (size_t)len, &result) == 0);
        if (i % 3000 == 2999) CHECK(fold_partition_commit(fp, i + 1) == 0);
    }
    /* rows: bo's even events (in the log), bo's ids the log lacks, and cy's with ids bo
     * has (recorded under bo, not cy: not in the log as cy's) */
    size_t expect_dropped = 0, rows = 0;
    CHECK(store_begin(st) == 0);
    for (int i = 0; i < EVENTS; i++) {
        char id[32];
        int64_t seq;
        const char *user = i % 5 == 4 ? "cy" : "bo";
        if (i % 2 == 0) snprintf(id, sizeof id, "b%d", i);
        else snprintf(id, sizeof id, "n%d", i);
        CHECK(store_outbox_add(st, user, id, user, "{}", &seq) == 0);
        rows++;
        if (id[0] == 'b' && user[0] == 'b') expect_dropped++;
    }
    CHECK(store_commit(st) == 0);
    store *reader = store_open(path, 0, STORE_READER, errstr, sizeof errstr);
    outbox_prune_result pruned;
    CHECK(outbox_prune(st, 1, &(outbox_lookup){.receiver_for = the_reader, .receiver_arg = reader}, &pruned,
                       errstr, sizeof errstr) == 0);
    CHECK(pruned.walked == rows && pruned.dropped == expect_dropped);
    left_count left = {.in_order = 1, .last_seq = 0};
    CHECK(store_outbox_walk(st, 0, INT32_MAX, count_left, &left) == 0);
    CHECK(left.rows == rows - expect_dropped && left.in_order);
    CHECK(left.in_log == (size_t)(EVENTS / 2) - expect_dropped); /* cy's b ids stay */
    store_close(reader);
    fold_partition_free(fp);
    remove_temp_store(st, path);
}

/* found_in: the events whose id ends in an even digit were folded; -1 when the test's
 * flag says it cannot tell. */
static int even_ids_found(void *arg, int32_t partition, const char *user_id,
                          const char *const *event_ids, size_t n, unsigned char *found) {
    (void)partition;
    (void)user_id;
    if (*(int *)arg) return -1;
    for (size_t i = 0; i < n; i++) found[i] = (event_ids[i][strlen(event_ids[i]) - 1] - '0') % 2 == 0;
    return 0;
}

/* What the caller knows answers first (replay's set of folded guild events): the stores
 * are not asked; when it cannot tell, they are. */
static void test_found_in_answers_first(void) {
    char path[64], errstr[512], left[256];
    store *st = open_temp_store(path, sizeof path, 0);
    if (!st) return;
    CHECK(store_begin(st) == 0);
    for (int i = 1; i <= 6; i++) {
        char id[16];
        int64_t seq;
        snprintf(id, sizeof id, "g%d", i);
        CHECK(store_outbox_add(st, "ana", id, "ana", "{}", &seq) == 0);
    }
    CHECK(store_commit(st) == 0);
    int cannot_tell = 1;
    outbox_prune_result pruned;
    /* it cannot tell, and no store is there: every row stays */
    outbox_lookup lookup = {.found_in = even_ids_found, .found_arg = &cannot_tell,
                            .receiver_for = the_reader, .receiver_arg = NULL};
    CHECK(outbox_prune(st, 1, &lookup, &pruned, errstr, sizeof errstr) == 0);
    CHECK(pruned.walked == 6 && pruned.dropped == 0);
    cannot_tell = 0;
    CHECK(outbox_prune(st, 1, &lookup, &pruned, errstr, sizeof errstr) == 0);
    CHECK(pruned.walked == 6 && pruned.dropped == 3);
    outbox_ids(st, left, sizeof left);
    CHECK_STR(left, "g1 g3 g5");
    remove_temp_store(st, path);
}

int main(void) {
    test_many_rows_of_one_player();
    test_found_in_answers_first();
    char path[64], errstr[512], left[256];
    store *st = open_temp_store(path, sizeof path, 0);
    if (!st) return check_finish("outbox_prune");
    fold_config config = {.guild_capacity = 100};
    fold_partition *fp = fold_partition_new(st, &config, errstr, sizeof errstr);
    CHECK(fp != NULL);
    if (!fp) return check_finish("outbox_prune");

    /* ana's events e1..e4 are in the log: folded and committed. */
    for (int i = 1; i <= 4; i++) {
        char payload[256];
        fold_result result;
        int len = snprintf(payload, sizeof payload,
                           "{\"v\":1,\"event_id\":\"e%d\",\"event_type\":\"purchase_item\","
                           "\"user_id\":\"ana\",\"ts\":\"2026-11-29T00:00:00.000Z\","
                           "\"items\":[{\"item_type\":\"gem\",\"quantity\":1}]}",
                           i);
        CHECK(fold_partition_message(fp, i - 1, "ana", 3, payload, (size_t)len, &result) == 0);
        CHECK(result.outcome == FOLD_APPLIED);
    }
    CHECK(fold_partition_commit(fp, 4) == 0);

    /* The outbox holds them among two events the log does not have (x1, x2): the kept
     * rows split the dropped ones into three runs. */
    const char *emitted[] = {"e1", "e2", "x1", "e3", "x2", "e4"};
    CHECK(store_begin(st) == 0);
    for (size_t i = 0; i < sizeof emitted / sizeof *emitted; i++) {
        int64_t seq;
        CHECK(store_outbox_add(st, "ana", emitted[i], "ana", "{}", &seq) == 0);
    }
    CHECK(store_commit(st) == 0);

    /* Without a receiver here, every row stays. */
    outbox_prune_result pruned;
    CHECK(outbox_prune(st, 1, &(outbox_lookup){.receiver_for = the_reader, .receiver_arg = NULL}, &pruned,
                       errstr, sizeof errstr) == 0);
    CHECK(pruned.walked == 6 && pruned.dropped == 0);
    outbox_ids(st, left, sizeof left);
    CHECK_STR(left, "e1 e2 x1 e3 x2 e4");

    store *reader = store_open(path, 0, STORE_READER, errstr, sizeof errstr);
    CHECK(reader != NULL);
    CHECK(outbox_prune(st, 1, &(outbox_lookup){.receiver_for = the_reader, .receiver_arg = reader}, &pruned,
                       errstr, sizeof errstr) == 0);
    CHECK(pruned.walked == 6 && pruned.dropped == 4);
    outbox_ids(st, left, sizeof left);
    CHECK_STR(left, "x1 x2");

    /* Again: nothing more to drop. And the prune ended its read transaction on the
     * reader: an event committed after it is seen. */
    CHECK(outbox_prune(st, 1, &(outbox_lookup){.receiver_for = the_reader, .receiver_arg = reader}, &pruned,
                       errstr, sizeof errstr) == 0);
    CHECK(pruned.walked == 2 && pruned.dropped == 0);
    const char *e5 = "{\"v\":1,\"event_id\":\"e5\",\"event_type\":\"purchase_item\","
                     "\"user_id\":\"ana\",\"ts\":\"2026-11-29T00:00:00.000Z\","
                     "\"items\":[{\"item_type\":\"gem\",\"quantity\":1}]}";
    fold_result result;
    CHECK(fold_partition_message(fp, 4, "ana", 3, e5, strlen(e5), &result) == 0);
    CHECK(fold_partition_commit(fp, 5) == 0);
    store_event_outcome outcome;
    CHECK(store_read_event(reader, "e5", "ana", &outcome) == 1);

    store_close(reader);
    fold_partition_free(fp);
    remove_temp_store(st, path);
    return check_finish("outbox_prune");
}
