-- 0001_init: the folded state, the outcome of every consumed record, and the offsets
-- those were folded up to. All of it is written by the fold in one transaction per batch.

-- One row per player with at least one applied event. version = applied events so far.
CREATE TABLE players (
    user_id    TEXT PRIMARY KEY,
    version    INTEGER NOT NULL,
    guild_id   TEXT,
    partition  INTEGER NOT NULL,
    updated_ts TEXT NOT NULL
) WITHOUT ROWID;

-- A row exists only while quantity > 0.
CREATE TABLE inventory (
    user_id   TEXT NOT NULL,
    item_type TEXT NOT NULL,
    quantity  INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (user_id, item_type)
) WITHOUT ROWID;

CREATE TABLE guilds (
    guild_id     TEXT PRIMARY KEY,
    member_count INTEGER NOT NULL CHECK (member_count > 0)
) WITHOUT ROWID;

CREATE TABLE guild_members (
    guild_id  TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    joined_ts TEXT NOT NULL,
    PRIMARY KEY (guild_id, user_id)
) WITHOUT ROWID;

-- The outcome of every valid event consumed: applied, rejected (+ reason) or duplicate.
CREATE TABLE events (
    partition  INTEGER NOT NULL,
    offset     INTEGER NOT NULL,
    event_id   TEXT NOT NULL,
    event_type TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    reason     TEXT,
    ts         TEXT NOT NULL,
    items      TEXT,
    guild_id   TEXT,
    PRIMARY KEY (partition, offset)
) WITHOUT ROWID;
CREATE INDEX events_by_user ON events (user_id, offset);

-- First record of each (event_id, user_id): the dedupe memory (docs/architecture.md).
-- Scoped per player: a player's events share one partition, so "first" is decided by
-- that partition's order alone and the fold stays deterministic across partitions.
CREATE TABLE event_ids (
    event_id  TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    partition INTEGER NOT NULL,
    offset    INTEGER NOT NULL,
    PRIMARY KEY (event_id, user_id)
) WITHOUT ROWID;

-- Records that are not valid events. The fold records them and moves on.
CREATE TABLE dead_letters (
    partition INTEGER NOT NULL,
    offset    INTEGER NOT NULL,
    reason    TEXT NOT NULL,
    msg_key   BLOB,
    payload   BLOB,
    PRIMARY KEY (partition, offset)
) WITHOUT ROWID;

-- The next offset to consume per partition, committed with the state it produced.
CREATE TABLE offsets (
    partition   INTEGER PRIMARY KEY,
    next_offset INTEGER NOT NULL
);

-- Facts about this database (topic name, ...).
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
