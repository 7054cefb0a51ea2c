-- 0007: the per-player index of history in blocks too (docs/architecture.md "Partitions
-- and state"). player_events held one row per event, a random B-tree insert each, and
-- was the largest single cost of a replay after 0006; a batch holds about eight events of
-- a busy player, so one row per player per batch packs them: the (id hash, offset) pairs
-- of the player's events in the batch, in offset order (state/history_block.c). Still the
-- dedupe memory and the way from a player to their history. The rows of the old table are
-- packed by the migration step in C in this same transaction (state/migrate.c), which
-- then drops it.
CREATE TABLE player_index (
    player_key   INTEGER NOT NULL,
    first_offset INTEGER NOT NULL,
    ids          BLOB NOT NULL,
    PRIMARY KEY (player_key, first_offset)
) WITHOUT ROWID;
