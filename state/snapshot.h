/* snapshot: consistent copies of the state, shipped to HDFS over WebHDFS — every
 * partition's store (p<N>.db), Avro analyst tables covering all partitions, the per-type
 * event extracts of each partition folded since the previous snapshot, a manifest with
 * sha256 of every file, and _SUCCESS last — written under a temporary name and renamed
 * into place; older snapshots beyond a retention count are deleted. And the way back:
 * restore a snapshot's stores into a folder without stores. */
#ifndef LOOTLOG_SNAPSHOT_H
#define LOOTLOG_SNAPSHOT_H

#include "catalog.h"

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
