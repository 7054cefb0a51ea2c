-- 0005: guilds are decided in the log (docs/design.md, "Guilds are decided in the log").
-- A guild's seats now live in the store of the guild's own partition, and a join waits
-- for that partition's decision. Guild rows written under the earlier rule (members kept
-- beside the player) mean something else, so a store that holds any is refused: rebuild
-- it with `lootlog replay` (docs/operations.md). Stores without guild rows carry over.
CREATE TEMP TABLE refuse_old_guilds (
    old_guild_rows_rebuild_with_replay INTEGER CHECK (old_guild_rows_rebuild_with_replay = 0));
INSERT INTO refuse_old_guilds SELECT (SELECT count(*) FROM guild_members);
DROP TABLE refuse_old_guilds;

-- A join waiting for the guild's decision: the guild asked for and the join's event id.
ALTER TABLE players ADD COLUMN pending_guild_id TEXT;
ALTER TABLE players ADD COLUMN pending_cause TEXT;

-- Events the fold emitted, written in the same transaction as the state that caused
-- them and deleted once Kafka acknowledged them. msg_key is the Kafka key; event_id and
-- user_id say where the receiver will record it (replay drops rows already in the log).
-- AUTOINCREMENT: a sequence number is never used twice, even once the table has been
-- emptied, since the fold produces the rows past the last one it handed to Kafka.
CREATE TABLE outbox (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    msg_key  TEXT NOT NULL,
    event_id TEXT NOT NULL,
    user_id  TEXT NOT NULL,
    payload  TEXT NOT NULL
);
