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

/* Reads the partitions of topic from a member's assignment, as the consumer protocol
 * encodes it (the group's coordinator hands these bytes out verbatim): int16 version,
 * int32 topic count, then per topic an int16-length name, an int32 partition count and
 * the int32 partitions (big-endian); user data follows and is not needed. Calls
 * take(p) for each partition of topic. Returns 0, or -1 when the bytes are not such an
 * assignment (the member is then ignored). */
typedef struct {
    const unsigned char *p, *end;
} byte_reader;

static int read_be(byte_reader *r, int bytes, int64_t *out) {
    if (r->end - r->p < bytes) return -1;
    int64_t v = 0;
    for (int i = 0; i < bytes; i++) v = (v << 8) | r->p[i];
    r->p += bytes;
    if (bytes == 2) v = (int16_t)v;
    if (bytes == 4) v = (int32_t)v;
    *out = v;
    return 0;
}

static int assignment_partitions(const void *bytes, int size, const char *topic,
                                 char (*owner)[GROUP_VIEW_ADDRESS_SIZE], const char *address) {
    byte_reader r = {bytes, (const unsigned char *)bytes + (size > 0 ? size : 0)};
    int64_t version, topics;
    if (!bytes || read_be(&r, 2, &version) || version < 0 || read_be(&r, 4, &topics) ||
        topics < 0)
        return -1;
    size_t topic_len = strlen(topic);
    for (int64_t t = 0; t < topics; t++) {
        int64_t name_len, count;
        if (read_be(&r, 2, &name_len) || name_len < 0 || r.end - r.p < name_len) return -1;
        int ours = (size_t)name_len == topic_len && memcmp(r.p, topic, topic_len) == 0;
        r.p += name_len;
        if (read_be(&r, 4, &count) || count < 0) return -1;
        for (int64_t i = 0; i < count; i++) {
            int64_t partition;
            if (read_be(&r, 4, &partition)) return -1;
            if (ours && partition >= 0 && partition < STORE_MAX_PARTITIONS)
                snprintf(owner[partition], GROUP_VIEW_ADDRESS_SIZE, "%s", address);
        }
    }
    return 0;
}

/* Applies one group description: a stable group's assignment replaces the map; while
 * the group rebalances the last stable map stays (its owners answer 503 meanwhile for
 * what they gave up, and the caller retries). */
static void apply(group_view *v, const struct rd_kafka_group_info *group) {
    char(*owner)[GROUP_VIEW_ADDRESS_SIZE] = v->scratch;
    memset(v->scratch, 0, sizeof v->scratch);
    size_t prefix = strlen(FOLD_ENGINE_CLIENT_ID_PREFIX);
    for (int m = 0; m < group->member_cnt; m++) {
        const struct rd_kafka_group_member_info *member = &group->members[m];
        const char *client_id = member->client_id;
        if (!client_id || strncmp(client_id, FOLD_ENGINE_CLIENT_ID_PREFIX, prefix) != 0 ||
            !client_id[prefix] || strlen(client_id + prefix) >= GROUP_VIEW_ADDRESS_SIZE)
            continue; /* not a lootlog node, or one without an address */
        if (assignment_partitions(member->member_assignment, member->member_assignment_size,
                                  v->topic, owner, client_id + prefix))
            log_warn("group", "group %s: member %s: an assignment lootlog cannot read",
                     v->group_id, client_id);
    }
    const char *state = group->state ? group->state : "";
    pthread_mutex_lock(&v->lock);
    snprintf(v->state, sizeof v->state, "%s", state);
    v->members = group->member_cnt;
    v->answered_ms = clock_ms();
    if (strcmp(state, "Stable") == 0) memcpy(v->owner, v->scratch, sizeof v->owner);
    else if (strcmp(state, "Empty") == 0 || strcmp(state, "Dead") == 0)
        memset(v->owner, 0, sizeof v->owner);
    pthread_mutex_unlock(&v->lock);
}

/* One look at the group. Through librdkafka's classic group listing (ListGroups +
 * DescribeGroups to the brokers), not the Admin API's DescribeConsumerGroups: with
 * librdkafka 2.0.2 the latter aborts the process (`eonce->refcnt > 0`) when a request
 * times out while a broker is down — the cluster pass's broker SIGKILL hit it. */
static void describe(group_view *v) {
    const struct rd_kafka_group_list *list = NULL;
    rd_kafka_resp_err_t err = rd_kafka_list_groups(v->rk, v->group_id, &list, DESCRIBE_TIMEOUT_MS);
    if (err && !list) {
        log_warn("group", "describing group %s: %s", v->group_id, rd_kafka_err2str(err));
        return;
    }
    for (int i = 0; list && i < list->group_cnt; i++) {
        const struct rd_kafka_group_info *group = &list->groups[i];
        if (!group->group || strcmp(group->group, v->group_id) != 0) continue;
        if (group->err) {
            log_warn("group", "group %s: %s", v->group_id, rd_kafka_err2str(group->err));
            continue;
        }
        apply(v, group);
    }
    if (list) rd_kafka_group_list_destroy(list);
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
        clock_deadline_in(REFRESH_EVERY_MS, &until);
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
    if (v->rk) rd_kafka_destroy(v->rk);
    pthread_cond_destroy(&v->wake);
    pthread_mutex_destroy(&v->lock);
    free(v);
}
