/* consumer: the fold thread. Reads the topic from the offsets stored in SQLite (never
 * from a consumer group), folds records in batches — many per transaction, bounded by
 * count and time — and commits state, outcomes and next offsets together. */
#ifndef LOOTLOG_CONSUMER_H
#define LOOTLOG_CONSUMER_H

#include "fold.h"
#include "store.h"

#include <stddef.h>
#include <stdint.h>

typedef struct consumer consumer;

typedef struct {
    const char *brokers;
    const char *topic;
    const char *db_path;
    fold_config fold;
    int partition_first; /* -1: every partition of the topic */
    int partition_last;
    size_t batch_max_events; /* events per transaction at most */
    int batch_max_ms;        /* and no longer than this before committing */
    /* extra librdkafka properties, "key=value" strings */
    const char *const *kafka_props;
    size_t kafka_prop_count;
    /* Called on the fold thread after every commit, e.g. to wake the HTTP loop. */
    void (*on_commit)(void *opaque);
    void *on_commit_opaque;
} consumer_config;

typedef struct {
    int assigned;           /* partitions assigned and fetching */
    size_t partition_count; /* of the topic, once known */
    int64_t lag;            /* sum over partitions of high watermark - next offset; -1 unknown */
    uint64_t batches, applied, rejected, duplicates, dead_letters;
} consumer_stats;

/* Opens the writer store and starts the fold thread. config strings must outlive the
 * consumer. NULL with errstr on failure (bad config, unusable database). */
consumer *consumer_start(const consumer_config *config, char *errstr, size_t errstr_size);

/* A snapshot of the counters, readable from any thread. */
void consumer_get_stats(consumer *c, consumer_stats *stats);

/* The next offset committed for partition, or -1 before anything was; any thread. */
int64_t consumer_next_offset(consumer *c, int32_t partition);

/* Asks the thread to finish its batch, joins it, closes the store and frees. */
void consumer_stop(consumer *c);

#endif
