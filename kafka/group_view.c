/* group_view: the partition -> owner map read from the consumer group's description. */
#define _GNU_SOURCE /* pthread_setname_np */
#include "kafka/group_view.h"
#include "lib/clock.h"

#include "kafka/fold_engine.h"
#include "kafka/config.h"
#include "lib/log.h"
#include "state/store.h"

#include <librdkafka/rdkafka.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define REFRESH_EVERY_MS 1000
#define DESCRIBE_TIMEOUT_MS 5000

struct group_view {
    const char *group_id;
    const char *topic;
    rd_kafka_t *rk; /* an admin handle of its own */
    rd_kafka_queue_t *results;
    pthread_t thread;
    int started;
    pthread_mutex_t lock;
    pthread_cond_t wake;
    int stopping, refresh;
    /* under lock */
    char owner[STORE_MAX_PARTITIONS][GROUP_VIEW_ADDRESS_SIZE]; /* "": unknown */
    char state[32];
    int members;
    int64_t answered_ms; /* monotonic time of the last answer; 0: none */
    char scratch[STORE_MAX_PARTITIONS][GROUP_VIEW_ADDRESS_SIZE]; /* the view's thread's */
};

/* Applies one group description: a stable group's assignment replaces the map; while
 * the group rebalances the last stable map stays (its owners answer 503 meanwhile for
 * what they gave up, and the caller retries). */
static void apply(group_view *v, const rd_kafka_ConsumerGroupDescription_t *group) {
    rd_kafka_consumer_group_state_t state = rd_kafka_ConsumerGroupDescription_state(group);
    size_t members = rd_kafka_ConsumerGroupDescription_member_count(group);
    char(*owner)[GROUP_VIEW_ADDRESS_SIZE] = v->scratch;
    memset(v->scratch, 0, sizeof v->scratch);
    for (size_t m = 0; m < members; m++) {
        const rd_kafka_MemberDescription_t *member =
            rd_kafka_ConsumerGroupDescription_member(group, m);
        const char *client_id = rd_kafka_MemberDescription_client_id(member);
        size_t prefix = strlen(FOLD_ENGINE_CLIENT_ID_PREFIX);
        if (!client_id || strncmp(client_id, FOLD_ENGINE_CLIENT_ID_PREFIX, prefix) != 0 ||
            !client_id[prefix] || strlen(client_id + prefix) >= GROUP_VIEW_ADDRESS_SIZE)
            continue; /* not a lootlog node, or one without an address */
        const rd_kafka_topic_partition_list_t *parts =
            rd_kafka_MemberAssignment_partitions(rd_kafka_MemberDescription_assignment(member));
        for (int i = 0; parts && i < parts->cnt; i++) {
            int32_t p = parts->elems[i].partition;
            if (strcmp(parts->elems[i].topic, v->topic) != 0 || p < 0 || p >= STORE_MAX_PARTITIONS)
                continue;
            snprintf(owner[p], sizeof owner[p], "%s", client_id + prefix);
        }
    }
    pthread_mutex_lock(&v->lock);
    snprintf(v->state, sizeof v->state, "%s", rd_kafka_consumer_group_state_name(state));
    v->members = (int)members;
    v->answered_ms = clock_ms();
    if (state == RD_KAFKA_CONSUMER_GROUP_STATE_STABLE) memcpy(v->owner, v->scratch, sizeof v->owner);
    else if (state == RD_KAFKA_CONSUMER_GROUP_STATE_EMPTY ||
             state == RD_KAFKA_CONSUMER_GROUP_STATE_DEAD)
        memset(v->owner, 0, sizeof v->owner);
    pthread_mutex_unlock(&v->lock);
}

/* One DescribeConsumerGroups round trip. */
static void describe(group_view *v) {
    const char *groups[1] = {v->group_id};
    rd_kafka_AdminOptions_t *options =
        rd_kafka_AdminOptions_new(v->rk, RD_KAFKA_ADMIN_OP_DESCRIBECONSUMERGROUPS);
    char why[256];
    rd_kafka_AdminOptions_set_request_timeout(options, DESCRIBE_TIMEOUT_MS, why, sizeof why);
    rd_kafka_DescribeConsumerGroups(v->rk, groups, 1, options, v->results);
    rd_kafka_AdminOptions_destroy(options);
    rd_kafka_event_t *event = rd_kafka_queue_poll(v->results, DESCRIBE_TIMEOUT_MS + 1000);
    if (!event) return;
    const rd_kafka_DescribeConsumerGroups_result_t *result =
        rd_kafka_event_DescribeConsumerGroups_result(event);
    if (rd_kafka_event_error(event)) {
        log_warn("group", "describing group %s: %s", v->group_id, rd_kafka_event_error_string(event));
    } else if (result) {
        size_t count = 0;
        const rd_kafka_ConsumerGroupDescription_t **found =
            rd_kafka_DescribeConsumerGroups_result_groups(result, &count);
        for (size_t i = 0; i < count; i++) {
            const rd_kafka_error_t *error = rd_kafka_ConsumerGroupDescription_error(found[i]);
            if (error) log_warn("group", "group %s: %s", v->group_id, rd_kafka_error_string(error));
            else apply(v, found[i]);
        }
    }
    rd_kafka_event_destroy(event);
}

static void *view_thread(void *arg) {
    group_view *v = arg;
    pthread_setname_np(pthread_self(), "group-view");
    pthread_mutex_lock(&v->lock);
    while (!v->stopping) {
        v->refresh = 0;
        pthread_mutex_unlock(&v->lock);
        describe(v);
        pthread_mutex_lock(&v->lock);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_nsec += (long)REFRESH_EVERY_MS * 1000000L;
        until.tv_sec += until.tv_nsec / 1000000000L;
        until.tv_nsec %= 1000000000L;
        while (!v->stopping && !v->refresh &&
               pthread_cond_timedwait(&v->wake, &v->lock, &until) == 0) {
        }
    }
    pthread_mutex_unlock(&v->lock);
    return NULL;
}

group_view *group_view_start(const char *brokers, const char *group_id, const char *topic,
                             const char *const *kafka_props, size_t kafka_prop_count,
                             char *errstr, size_t errstr_size) {
    group_view *v = calloc(1, sizeof *v);
    rd_kafka_conf_t *conf = NULL;
    char why[512];
    if (!v) {
        snprintf(errstr, errstr_size, "out of memory");
        return NULL;
    }
    v->group_id = group_id;
    v->topic = topic;
    pthread_mutex_init(&v->lock, NULL);
    pthread_cond_init(&v->wake, NULL);
    const char *const defaults[] = {"client.id", "lootlog-group-view", NULL};
    conf = kafka_config_new(brokers, defaults, kafka_props, kafka_prop_count, errstr, errstr_size);
    if (!conf) goto fail;
    v->rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    if (!v->rk) {
        snprintf(errstr, errstr_size, "creating the group view's client: %s", why);
        goto fail;
    }
    conf = NULL;
    v->results = rd_kafka_queue_new(v->rk);
    if (pthread_create(&v->thread, NULL, view_thread, v)) {
        snprintf(errstr, errstr_size, "starting the group view thread failed");
        goto fail;
    }
    v->started = 1;
    return v;
fail:
    if (conf) rd_kafka_conf_destroy(conf);
    group_view_stop(v);
    return NULL;
}

int group_view_owner(group_view *v, int32_t partition, char *address, size_t address_size) {
    if (!v || partition < 0 || partition >= STORE_MAX_PARTITIONS) return 0;
    pthread_mutex_lock(&v->lock);
    int known = v->owner[partition][0] != '\0';
    snprintf(address, address_size, "%s", v->owner[partition]);
    pthread_mutex_unlock(&v->lock);
    return known;
}

void group_view_refresh(group_view *v) {
    if (!v) return;
    pthread_mutex_lock(&v->lock);
    v->refresh = 1;
    pthread_cond_signal(&v->wake);
    pthread_mutex_unlock(&v->lock);
}

void group_view_state(group_view *v, char *state, size_t state_size, int *members,
                      int64_t *age_ms) {
    pthread_mutex_lock(&v->lock);
    snprintf(state, state_size, "%s", v->state);
    *members = v->members;
    *age_ms = v->answered_ms ? clock_ms() - v->answered_ms : -1;
    pthread_mutex_unlock(&v->lock);
}

void group_view_stop(group_view *v) {
    if (!v) return;
    if (v->started) {
        pthread_mutex_lock(&v->lock);
        v->stopping = 1;
        pthread_cond_signal(&v->wake);
        pthread_mutex_unlock(&v->lock);
        pthread_join(v->thread, NULL);
    }
    if (v->results) rd_kafka_queue_destroy(v->results);
    if (v->rk) rd_kafka_destroy(v->rk);
    pthread_cond_destroy(&v->wake);
    pthread_mutex_destroy(&v->lock);
    free(v);
}
