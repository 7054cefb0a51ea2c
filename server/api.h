/* api: the HTTP application — every endpoint of the contract (docs/design.md, "HTTP
 * API"). Writes become events handed to the producer and are answered from its delivery
 * report; reads come from a reader connection; requests that wait for the fold are
 * parked, not blocked; in a consumer group, requests about partitions owned elsewhere go
 * to their owner. */
#ifndef LOOTLOG_SERVER_API_H
#define LOOTLOG_SERVER_API_H

#include "state/catalog.h"
#include "kafka/fold_engine.h"
#include "kafka/group_view.h"
#include "hdfs/snapshot.h"
#include "state/store_set.h"
#include "server/forward.h"
#include "server/metrics.h"
#include "kafka/producer.h"

#include <event2/event.h>
#include <event2/http.h>
#include <stddef.h>

typedef struct api api;

typedef struct {
    struct event_base *base;
    const catalog *cat;
    producer *prod;
    store_set *readers; /* the stores' readers; NULL with --no-fold */
    fold_engine *fold; /* NULL with --no-fold */
    int default_wait_ms;  /* ?after= / ?wait=applied bound unless timeout_ms says */
    int max_parked;       /* requests waiting for the fold at most; beyond, 503. 0: 10000 */
    int write_timeout_ms; /* a write not acknowledged by Kafka in this gets 503. 0: 5000 */
    int64_t ready_max_lag; /* /readyz fails while the fold is further behind */
    int partition_first;   /* a shard: reads only for players of these partitions; */
    int partition_last;    /* -1: every partition */
    const char *admin_token; /* Bearer token of the admin routes; NULL disables them */
    /* Starts replacing the state folder with the rebuilt one at path (POST /admin/swap):
     * returns 0, then calls done(done_arg, rc, errstr) on the loop thread when it is over;
     * or -1 with errstr when it cannot start (done is then never called). */
    int (*swap_db)(void *opaque, const char *path,
                   void (*done)(void *arg, int rc, const char *errstr), void *done_arg,
                   char *errstr, size_t errstr_size);
    void *swap_opaque;
    snapshot_scheduler *snapshots; /* NULL without --snapshot-url */
    metrics *metrics; /* the registry main created (outlives the routes); NULL: no /metrics */
    /* serve --group: who owns which partition; reads (and ?wait=applied writes) of
     * partitions owned elsewhere go to the owner through forward, or answer 421 with the
     * owner's address when forward is NULL (--no-forward). self: this node's address. */
    group_view *group;
    forwarder *forward;
    const char *self;
    const char *group_id;
} api_config;

api *api_new(const api_config *config, char *errstr, size_t errstr_size);

/* The evhttp handler; arg is the routes. */
void api_handle(struct evhttp_request *req, void *arg);

/* Loop thread, after the fold committed: answers parked requests that can be. */
void api_on_fold_commit(api *r);

/* After a swap: the reader and fold that now serve the state. */
void api_set_state(api *r, store_set *readers, fold_engine *fold);

/* Answers every parked request (503) and frees. */
void api_free(api *r);

#endif
