/* test_batching: when a partition's batch commits (fold_engine_batch_rule). A caught-up
 * partition commits as soon as its queue runs dry or its batch is batch_max_ms old, so
 * writes show within tens of ms; a partition draining a backlog keeps folding into the
 * same batch until FOLD_CATCH_UP_BATCH_MS or FOLD_CATCH_UP_BATCH_PLAYERS, whatever the
 * queue does. */
#include "kafka/fold_engine.h"
#include "check.h"

static fold_engine_batch_decision rule(size_t pending, size_t players, int64_t age_ms, int dry,
                                       int batch_max_ms) {
    fold_engine_batch b = {.pending = pending, .players = players, .age_ms = age_ms,
                           .queue_ran_dry = dry};
    return fold_engine_batch_rule(&b, batch_max_ms);
}

int main(void) {
    /* nothing pending: nothing to commit, whatever else holds */
    CHECK(rule(0, 0, 0, 1, 20) == FOLD_BATCH_WAIT);
    CHECK(rule(0, 0, 10000, 1, 20) == FOLD_BATCH_WAIT);

    /* young batch, queue still delivering: keep folding */
    CHECK(rule(500, 40, 5, 0, 20) == FOLD_BATCH_WAIT);
    CHECK(rule(500, 40, 19, 0, 20) == FOLD_BATCH_WAIT);

    /* queue ran dry or the batch reached batch_max_ms: commit, unless catching up */
    CHECK(rule(500, 40, 5, 1, 20) == FOLD_BATCH_COMMIT_UNLESS_CATCHING_UP);
    CHECK(rule(500, 40, 20, 0, 20) == FOLD_BATCH_COMMIT_UNLESS_CATCHING_UP);
    CHECK(rule(500, 40, FOLD_CATCH_UP_BATCH_MS - 1, 0, 20) == FOLD_BATCH_COMMIT_UNLESS_CATCHING_UP);

    /* the catch-up bounds commit even a partition that is behind */
    CHECK(rule(500, 40, FOLD_CATCH_UP_BATCH_MS, 0, 20) == FOLD_BATCH_COMMIT);
    CHECK(rule(500, 40, FOLD_CATCH_UP_BATCH_MS, 1, 20) == FOLD_BATCH_COMMIT);
    CHECK(rule(5000, FOLD_CATCH_UP_BATCH_PLAYERS, 21, 0, 20) == FOLD_BATCH_COMMIT);
    CHECK(rule(5000, FOLD_CATCH_UP_BATCH_PLAYERS - 1, 21, 0, 20) ==
          FOLD_BATCH_COMMIT_UNLESS_CATCHING_UP);
    /* ...but the player bound does not cut a young batch whose queue still delivers */
    CHECK(rule(5000, FOLD_CATCH_UP_BATCH_PLAYERS, 5, 0, 20) == FOLD_BATCH_WAIT);

    /* a batch_max_ms above the catch-up bound (replay's 1000 ms) is the bound itself */
    CHECK(rule(500, 40, FOLD_CATCH_UP_BATCH_MS, 0, 1000) == FOLD_BATCH_WAIT);
    CHECK(rule(500, 40, FOLD_CATCH_UP_BATCH_MS, 1, 1000) == FOLD_BATCH_COMMIT_UNLESS_CATCHING_UP);
    CHECK(rule(500, 40, 1000, 0, 1000) == FOLD_BATCH_COMMIT);
    return check_finish("batching");
}
