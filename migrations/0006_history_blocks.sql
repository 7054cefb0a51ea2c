-- 0006: history in blocks (docs/architecture.md "Partitions and state"). The fold wrote
-- one history row per event, and the row cost it a fifth of a replay's time; it now
-- writes each batch's outcomes a few dozen to a row, packed (state/history_block.c),
-- keyed by the offset of the block's last event so that the block holding an offset is
-- one index step away. Rows of the old history table are packed into blocks by the
-- migration step in C that runs in this same transaction (state/migrate.c), which then
-- drops that table: nothing is lost and no replay is needed.
CREATE TABLE history_blocks (
    last_offset  INTEGER PRIMARY KEY,
    first_offset INTEGER NOT NULL,
    records      BLOB NOT NULL
);
