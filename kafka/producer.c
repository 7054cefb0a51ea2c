/* producer: librdkafka producer wired into libevent. acks=all + enable.idempotence so a
 * 202 means the event is in the log exactly once; linger batches writes of many
 * concurrent requests into few produce requests. */
#include "kafka/producer.h"

#include "kafka/config.h"
#include "lib/log.h"

#include <errno.h>
#include <fcntl.h>
#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

typedef struct {
    producer_done_fn done;
    void *opaque;
} delivery;

struct producer {
    rd_kafka_t *rk;
    rd_kafka_topic_t *topic;
    char *topic_name;
    rd_kafka_queue_t *main_queue;
    int wake_fds[2];
    struct event *wake_event;
    struct event *poll_timer;
    pthread_t health_thread;
    int health_started;
    atomic_int stopping;
    atomic_int broker_ready;
    atomic_int partition_count;
    atomic_int topic_missing; /* the last metadata check: the broker has no such topic */
};

static void on_delivery(rd_kafka_t *rk, const rd_kafka_message_t *msg, void *conf_opaque) {
    (void)rk;
    (void)conf_opaque;
    delivery *d = msg->_private;
    if (!d) return;
    if (msg->err)
        d->done(d->opaque, rd_kafka_err2str(msg->err), -1, -1);
    else
        d->done(d->opaque, NULL, msg->partition, msg->offset);
    free(d);
}

static void on_error(rd_kafka_t *rk, int err, const char *reason, void *opaque) {
    (void)rk;
    (void)opaque;
    log_warn("producer", "%s: %s", rd_kafka_err2name(err), reason);
}

/* librdkafka wrote to the pipe: serve every queued callback, then drain the pipe. */
static void on_wake(evutil_socket_t fd, short what, void *arg) {
    (void)what;
    producer *p = arg;
    char buf[256];
    while (read(fd, buf, sizeof buf) > 0) {
    }
    rd_kafka_poll(p->rk, 0);
}

/* Checks once a second whether the topic's partitions all have leaders. A blocking
 * metadata call is fine here: it is off the loop thread. */
static void *health_thread(void *arg) {
    producer *p = arg;
    while (!atomic_load(&p->stopping)) {
        const struct rd_kafka_metadata *md = NULL;
        int ready = 0, partitions = 0;
        if (rd_kafka_metadata(p->rk, 0, p->topic, &md, 1000) == RD_KAFKA_RESP_ERR_NO_ERROR) {
            atomic_store(&p->topic_missing,
                         md->topic_cnt == 1 &&
                             md->topics[0].err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART);
            if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR) {
                partitions = md->topics[0].partition_cnt;
                ready = partitions > 0;
                for (int i = 0; i < partitions; i++)
                    if (md->topics[0].partitions[i].leader < 0) ready = 0;
            }
            rd_kafka_metadata_destroy(md);
        }
        atomic_store(&p->broker_ready, ready);
        if (partitions > 0) atomic_store(&p->partition_count, partitions);
        for (int i = 0; i < 10 && !atomic_load(&p->stopping); i++) {
            struct timespec pause = {0, 100 * 1000000L};
            nanosleep(&pause, NULL);
        }
    }
    return NULL;
}

producer *producer_new(struct event_base *base, const producer_config *config, char *errstr,
                       size_t errstr_size) {
    char timeout[32], why[512];
    snprintf(timeout, sizeof timeout, "%d", config->delivery_timeout_ms);
    const char *const defaults[] = {
        "acks", "all",
        "enable.idempotence", "true",
        "partitioner", "murmur2_random", /* same partition as Java clients for a key */
        "linger.ms", "2",
        "message.timeout.ms", timeout,
        "queue.buffering.max.messages", "200000",
        "compression.type", "lz4",
        "client.id", "lootlog-producer",
        NULL};
    producer *p = calloc(1, sizeof *p);
    rd_kafka_conf_t *conf = NULL;
    if (!p) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    p->wake_fds[0] = p->wake_fds[1] = -1;
    conf = kafka_config_new(config->brokers, defaults, config->kafka_props,
                          config->kafka_prop_count, errstr, errstr_size);
    if (!conf) goto fail;
    rd_kafka_conf_set_dr_msg_cb(conf, on_delivery);
    rd_kafka_conf_set_error_cb(conf, on_error);
    p->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    if (!p->rk) {
        snprintf(errstr, errstr_size, "creating producer: %s", why);
        goto fail;
    }
    conf = NULL;
    p->topic_name = strdup(config->topic);
    p->topic = rd_kafka_topic_new(p->rk, config->topic, NULL);
    if (!p->topic_name || !p->topic) {
        snprintf(errstr, errstr_size, "creating topic handle for %s", config->topic);
        goto fail;
    }
    if (pipe2(p->wake_fds, O_NONBLOCK | O_CLOEXEC)) {
        snprintf(errstr, errstr_size, "pipe: %s", strerror(errno));
        goto fail;
    }
    p->main_queue = rd_kafka_queue_get_main(p->rk);
    rd_kafka_queue_io_event_enable(p->main_queue, p->wake_fds[1], "1", 1);
    p->wake_event = event_new(base, p->wake_fds[0], EV_READ | EV_PERSIST, on_wake, p);
    /* A timer as well: librdkafka signals only on empty -> non-empty transitions. */
    p->poll_timer = event_new(base, -1, EV_PERSIST, on_wake, p);
    struct timeval every = {0, 50 * 1000};
    if (!p->wake_event || !p->poll_timer || event_add(p->wake_event, NULL) ||
        event_add(p->poll_timer, &every)) {
        snprintf(errstr, errstr_size, "registering producer events failed");
        goto fail;
    }
    if (pthread_create(&p->health_thread, NULL, health_thread, p)) {
        snprintf(errstr, errstr_size, "starting producer health thread failed");
        goto fail;
    }
    p->health_started = 1;
    return p;
fail:
    if (conf) rd_kafka_conf_destroy(conf);
    producer_free(p, 0);
    return NULL;
}

int producer_send(producer *p, const char *key, const char *value, size_t value_len,
                  producer_done_fn done, void *opaque, int *queue_full, char *errstr,
                  size_t errstr_size) {
    delivery *d = malloc(sizeof *d);
    *queue_full = 0;
    if (!d) {
        snprintf(errstr, errstr_size, "out of memory");
        return -1;
    }
    d->done = done;
    d->opaque = opaque;
    rd_kafka_resp_err_t err = rd_kafka_producev(
        p->rk, RD_KAFKA_V_RKT(p->topic), RD_KAFKA_V_KEY(key, strlen(key)),
        RD_KAFKA_V_VALUE((void *)value, value_len), RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
        RD_KAFKA_V_OPAQUE(d), RD_KAFKA_V_END);
    if (err) {
        free(d);
        *queue_full = err == RD_KAFKA_RESP_ERR__QUEUE_FULL;
        snprintf(errstr, errstr_size, "%s", rd_kafka_err2str(err));
        return -1;
    }
    return 0;
}

int producer_broker_ready(producer *p) { return atomic_load(&p->broker_ready); }

int producer_topic_missing(producer *p, char *reason, size_t reason_size) {
    if (!atomic_load(&p->topic_missing)) return 0;
    snprintf(reason, reason_size,
             "topic '%s' does not exist: create it with `lootlog topic ensure --topic %s`",
             p->topic_name, p->topic_name);
    return 1;
}

int producer_partition_count(producer *p) { return atomic_load(&p->partition_count); }

int producer_outstanding(producer *p) { return rd_kafka_outq_len(p->rk); }

void producer_free(producer *p, int timeout_ms) {
    if (!p) return;
    atomic_store(&p->stopping, 1);
    if (p->health_started) pthread_join(p->health_thread, NULL);
    if (p->rk) {
        if (rd_kafka_flush(p->rk, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR)
            log_warn("producer", "%d message(s) not delivered at shutdown",
                     rd_kafka_outq_len(p->rk));
        /* Fail what is left so every pending request is answered before we go. */
        rd_kafka_purge(p->rk, RD_KAFKA_PURGE_F_QUEUE | RD_KAFKA_PURGE_F_INFLIGHT);
        rd_kafka_poll(p->rk, 0);
    }
    if (p->wake_event) event_free(p->wake_event);
    if (p->poll_timer) event_free(p->poll_timer);
    if (p->main_queue) {
        rd_kafka_queue_io_event_enable(p->main_queue, -1, NULL, 0);
        rd_kafka_queue_destroy(p->main_queue);
    }
    if (p->topic) rd_kafka_topic_destroy(p->topic);
    if (p->rk) rd_kafka_destroy(p->rk);
    if (p->wake_fds[0] >= 0) close(p->wake_fds[0]);
    if (p->wake_fds[1] >= 0) close(p->wake_fds[1]);
    free(p->topic_name);
    free(p);
}
