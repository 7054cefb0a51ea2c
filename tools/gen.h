/* gen: synthetic game traffic — Zipf-distributed players, the catalog's item types
 * weighted by rarity, carts,
 * consumption, guild churn, a few retried (duplicate) requests — sent at a target rate
 * to the HTTP API or straight to Kafka. Prints achieved rate, latency percentiles and
 * errors; a progress line on a terminal. */
#ifndef LOOTLOG_GEN_H
#define LOOTLOG_GEN_H

#include "state/catalog.h"

#include <stddef.h>
#include <stdint.h>

typedef struct {
    double rate;          /* events per second to aim for */
    int users;            /* distinct players */
    double duration_s;    /* how long to send */
    const char *http_url; /* "http://127.0.0.1:8080", or NULL */
    const char *brokers;  /* used when http_url is NULL */
    const char *topic;
    int connections;      /* HTTP keep-alive connections */
    uint64_t seed;
    const char *user_prefix; /* players are named <prefix><n> */
    const catalog *cat;      /* the item types to buy and use, weighted by rarity */
    const char *const *kafka_props;
    size_t kafka_prop_count;
} gen_config;

/* Runs to completion. Returns 0 when every request got an answer (2xx, or a 4xx that
 * the traffic is expected to cause), 1 when some failed, -1 with errstr on setup error. */
int gen_run(const gen_config *config, char *errstr, size_t errstr_size);

#endif
