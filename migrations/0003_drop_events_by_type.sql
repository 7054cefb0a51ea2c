-- 0003: the per-type extracts read events by (partition, offset), the primary key, and
-- filter the type as they go; the index 0002 made for them cost every fold insert and
-- served no query. Dropped.
DROP INDEX IF EXISTS events_by_type;
