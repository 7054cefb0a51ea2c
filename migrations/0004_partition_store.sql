-- 0004: one store per partition (docs/architecture.md "Partitions and state"). Each file
-- holds what the fold derives from one partition of the topic, written once per dirty
-- row per batch. The single-file tables of 0001-0003 are replaced; a file that still
-- holds folded state in them is refused (rebuild it with `lootlog replay`, see
-- docs/operations.md), so this migration never drops data.
CREATE TEMP TABLE refuse_old_layout (
    old_layout_rows_rebuild_with_replay INTEGER CHECK (old_layout_rows_rebuild_with_replay = 0));
INSERT INTO refuse_old_layout
    SELECT (SELECT count(*) FROM players) + (SELECT count(*) FROM events)
         + (SELECT count(*) FROM dead_letters);
DROP TABLE refuse_old_layout;

DROP TABLE players;
DROP TABLE inventory;
DROP TABLE guilds;
DROP TABLE guild_members;
DROP INDEX IF EXISTS events_by_user;
DROP TABLE events;
DROP TABLE event_ids;
DROP TABLE dead_letters;

-- Every user seen in this partition. player_key is the compact handle history and
-- inventory use. version = applied non-default events; the player exists (GET 200)
-- once version > 0.
CREATE TABLE players (
    player_key INTEGER PRIMARY KEY,
    user_id    TEXT NOT NULL UNIQUE,
    version    INTEGER NOT NULL,
    guild_id   TEXT,
    created_ts TEXT,
    updated_ts TEXT
);

-- A row exists only while quantity > 0.
CREATE TABLE inventory (
    player_key INTEGER NOT NULL,
    item_type  TEXT NOT NULL,
    quantity   INTEGER NOT NULL CHECK (quantity > 0),
    PRIMARY KEY (player_key, item_type)
) WITHOUT ROWID;

-- Guild membership of this partition's players.
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

-- The outcome of every valid event consumed, keyed by its offset: append-only, so the
-- fold's inserts always land on the last page. Compact on purpose (<= 100 bytes/event):
--   event_id   16-byte BLOB for a lowercase RFC 4122 UUID, else the TEXT as sent
--   event_type 0 default, 1 purchase_sword, 2 purchase_item, 3 consume_item,
--              4 join_guild, 5 leave_guild
--   outcome    0 applied, 1 rejected, 2 duplicate
--   ts         INTEGER ms since the epoch when the event's ts is canonical
--              (2026-11-29T08:14:00.123Z), else the TEXT as sent
--   items      "sword:1,arrow:20" (lines as sent), NULL for events without items
CREATE TABLE history (
    offset     INTEGER PRIMARY KEY,
    player_key INTEGER NOT NULL,
    event_id   BLOB NOT NULL,
    event_type INTEGER NOT NULL,
    outcome    INTEGER NOT NULL,
    reason     TEXT,
    ts         BLOB NOT NULL,
    items      TEXT,
    guild_id   TEXT
);

-- The dedupe memory and the per-player index of history in one: a 32-bit hash of the
-- event id under the player's key. Keyed by player, so a batch's inserts cluster on
-- the pages of the players it touched; a hash match is confirmed against history.
CREATE TABLE player_events (
    player_key INTEGER NOT NULL,
    id_hash    INTEGER NOT NULL,
    offset     INTEGER NOT NULL,
    PRIMARY KEY (player_key, id_hash, offset)
) WITHOUT ROWID;

-- Records that are not valid events. The fold records them and moves on.
CREATE TABLE dead_letters (
    offset  INTEGER PRIMARY KEY,
    reason  TEXT NOT NULL,
    msg_key BLOB,
    payload BLOB
);
