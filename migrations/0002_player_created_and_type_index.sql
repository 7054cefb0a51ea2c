-- 0002: when each player first appeared (for analysts' cohort questions), and an index
-- to pull the events of one type in log order (the per-type event extracts).
ALTER TABLE players ADD COLUMN created_ts TEXT;
UPDATE players SET created_ts = updated_ts WHERE created_ts IS NULL;
CREATE INDEX events_by_type ON events (event_type, partition, offset);
