/* producer: sends events to Kafka without ever blocking the libevent loop. librdkafka's
 * main queue wakes the loop through a pipe; delivery reports run on the loop thread and
 * complete the HTTP request that produced the event. */
#ifndef LOOTLOG_PRODUCER_H
#define LOOTLOG_PRODUCER_H

#include <event2/event.h>
#include <stddef.h>
#include <stdint.h>

typedef struct producer producer;

/* Called on the loop thread once Kafka acknowledged (err == NULL, partition/offset set)
 * or gave up on (err = a sentence) the message. */
typedef void (*producer_done_fn)(void *opaque, const char *err, int32_t partition,
                                 int64_t offset);

typedef struct {
    const char *brokers;
    const char *topic;
    int delivery_timeout_ms; /* how long Kafka may take before the request gets a 503 */
    const char *const *kafka_props; /* "key=value" overrides */
    size_t kafka_prop_count;
} producer_config;

/* NULL with errstr on failure. */
producer *producer_new(struct event_base *base, const producer_config *config, char *errstr,
                       size_t errstr_size);

/* Queues value (copied) under key. done runs later with opaque. Returns 0 when queued;
 * -1 with errstr when not (then done never runs): *queue_full says whether the cause
 * was a full local queue (answer 503 at once rather than wait). */
int producer_send(producer *p, const char *key, const char *value, size_t value_len,
                  producer_done_fn done, void *opaque, int *queue_full, char *errstr,
                  size_t errstr_size);

/* 1 when the last metadata check saw every partition of the topic with a leader. The
 * check runs on a background thread every second, so this never blocks. */
int producer_broker_ready(producer *p);

/* 1 when the last metadata check found that the topic does not exist; reason then says
 * so and names the command that creates it. */
int producer_topic_missing(producer *p, char *reason, size_t reason_size);

/* Partition count of the topic as last seen (0 before metadata arrived). */
int producer_partition_count(producer *p);

/* Messages queued or in flight. */
int producer_outstanding(producer *p);

/* Waits up to timeout_ms for in-flight messages, then frees everything. Delivery
 * reports for messages still pending are served with an error. */
void producer_free(producer *p, int timeout_ms);

#endif
