/* snapshot: consistent copies of the state, shipped to HDFS over WebHDFS — every
 * partition's store (p<N>.db), Avro analyst tables covering all partitions, the per-type
 * event extracts of each partition folded since the previous snapshot, a manifest with
 * sha256 of every file, and _SUCCESS last — written under a temporary name and renamed
 * into place; older snapshots beyond a retention count are deleted. And the way back:
 * restore a snapshot's stores into a folder without stores, or one partition's store
 * into a folder of live ones (serve --group, when a partition moves to this node). */
#ifndef LOOTLOG_SNAPSHOT_H
#define LOOTLOG_SNAPSHOT_H

#include "state/catalog.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    const char *db_path;   /* the folder of live stores, p<N>.db (each read through one
                              backup step) */
    const char *url;       /* webhdfs://HOST:PORT/ROOT (or http://HOST:PORT/ROOT) */
    const char *topic;
    const char *work_dir;  /* local scratch folder for the files before upload */
    int retain;            /* newest snapshots to keep (>= 1) */
    const char *lootlog_version;
    long timeout_ms;       /* per WebHDFS request */
    const catalog *cat;    /* categories for inventory.avro; NULL: "unknown" */
    /* When not NULL: only partitions for which owned(owned_opaque, p) returns 1 are
     * snapshotted (serve --group: the folder may hold stale copies of partitions now
     * owned elsewhere). A snapshot with no owned partition fails with a clear errstr. */
    int (*owned)(void *opaque, int32_t partition);
    void *owned_opaque;
} snapshot_config;

typedef struct {
    char id[32];
    uint64_t events_extracted;
    double seconds;
} snapshot_result;

/* Takes one snapshot now. Returns 0 with *result, or -1 with errstr; on failure nothing
 * visible is left behind (the temporary folder is removed when HDFS allows). */
int snapshot_take(const snapshot_config *config, snapshot_result *result, char *errstr,
                  size_t errstr_size);

/* Lists complete snapshots (those with _SUCCESS), oldest first, as a malloc'ed JSON
 * array text of {"id","path"} the caller frees. NULL with errstr on failure. */
char *snapshot_list_json(const char *url, long timeout_ms, char *errstr, size_t errstr_size);

/* Downloads snapshot id ("latest": the newest complete one of topic, and of exactly the
 * only_count partitions in only_partitions when only_count > 0), refuses one of another
 * topic, checks every name its manifest lists (p<N>.db or an analyst table) before
 * fetching anything and the size and sha256 of every file before installing any, and
 * moves its stores (p<N>.db) into the folder db_path, created if missing and refused when
 * it already holds a store or a leftover -wal/-shm/-journal of one; `serve` on it then
 * catches up from the stores' offsets. work_dir (scratch) must be on db_path's file
 * system. Writes the id restored to id_out (>= 32 bytes). Returns 0 or -1 with errstr. */
int snapshot_restore(const char *url, const char *id, const char *topic,
                     const int32_t *only_partitions, size_t only_count, const char *db_path,
                     const char *work_dir, long timeout_ms, char *id_out, char *errstr,
                     size_t errstr_size);

/* Restores partition's store alone into the folder db_path (which may hold other
 * partitions' stores): from the complete snapshot of topic whose manifest holds
 * p<partition>.db at the highest offset for that partition (ties: the newest), when that
 * offset is > min_offset (the local store's next offset, -1: none). Checks the manifest
 * names, size and sha256 as snapshot_restore does; downloads into work_dir (same file
 * system as db_path) first, and only then replaces a local p<N>.db (removing it and its
 * -wal/-shm/-journal) by a rename. Returns 1 restored (id_out >= 32 bytes, *offset_out =
 * the restored store's next offset), 0 when no snapshot is ahead of min_offset (nothing
 * touched), -1 with errstr. Snapshots of other topics under the URL are passed over; a
 * root without snapshots is 0. No connection may have partition's store open; calls for
 * different partitions may run at the same time (each has its own scratch folder). On
 * -1 the local store is as it was. The store is opened (and migrated, as serve would)
 * in the scratch folder before it is installed, to check its topic and next offset. */
int snapshot_restore_partition(const char *url, const char *topic, int32_t partition,
                               int64_t min_offset, const char *db_path, const char *work_dir,
                               long timeout_ms, char *id_out, int64_t *offset_out,
                               char *errstr, size_t errstr_size);

/* Checks a manifest's text as restore does before fetching anything: JSON, and its
 * "files" only names restore may write (p<N>.db, the analyst tables), each with a sha256.
 * Returns the number of partition stores listed, or -1 with errstr. (For the fuzz test.) */
int snapshot_manifest_check(const char *text, size_t len, char *errstr, size_t errstr_size);

/* The periodic snapshotter of `serve`: a thread that takes a snapshot every
 * interval_s (0: only when triggered), retrying a failed one with exponential backoff
 * (1 s doubling, at most 60 s); failures are logged and counted, never fatal. */
typedef struct snapshot_scheduler snapshot_scheduler;

/* config strings must outlive the scheduler. NULL with errstr on failure. */
snapshot_scheduler *snapshot_scheduler_start(const snapshot_config *config, int interval_s,
                                             char *errstr, size_t errstr_size);
/* Any thread: take a snapshot as soon as possible. */
void snapshot_scheduler_trigger(snapshot_scheduler *s);
/* Any thread: {"snapshots":[...],"in_progress","taken","failed","last_id","last_error"}
 * as malloc'ed JSON text (caller frees), from memory: never touches HDFS. */
char *snapshot_scheduler_status_json(snapshot_scheduler *s);
/* Any thread: the counters, for /metrics. */
void snapshot_scheduler_counts(snapshot_scheduler *s, uint64_t *taken, uint64_t *failed);
/* Any thread: the last successful snapshot's duration and Unix finish time (0, 0: none
 * yet), for /metrics. */
void snapshot_scheduler_last_success(snapshot_scheduler *s, double *seconds, int64_t *unix_time);
/* Finishes a snapshot in progress, joins the thread, frees. */
void snapshot_scheduler_stop(snapshot_scheduler *s);

#endif
