/* topic: the `topic ensure` verb. The topic's metadata says whether it exists and with how
 * many partitions; CreateTopics (librdkafka's Admin API) makes it when it does not. The
 * stores in --db say what count the state was folded with. */
#include "commands/commands.h"
#include "lib/clock.h"

#include "kafka/config.h"
#include "lib/log.h"
#include "state/store.h"

#include <librdkafka/rdkafka.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#define TOPIC_DEFAULT_PARTITIONS 6
#define TOPIC_TIMEOUT_MS 30000

typedef struct {
    int partitions;
    int replication; /* replicas of partition 0 */
    int led;         /* 1 when every partition has a leader */
} topic_info;

/* What the stores in the folder say about the partition count. */
typedef struct {
    size_t count;      /* stores found */
    int32_t highest;   /* the highest partition with a store; -1: none */
    int exact;         /* the stores are p0..p<count-1>: the count is exactly count */
} store_census;

static int count_stores(const char *dir, store_census *census, char *errstr, size_t errstr_size) {
    int32_t partitions[STORE_MAX_PARTITIONS];
    memset(census, 0, sizeof *census);
    census->highest = -1;
    if (store_list_partitions(dir, partitions, STORE_MAX_PARTITIONS, &census->count, errstr,
                              errstr_size))
        return -1;
    if (census->count == 0) return 0;
    census->highest = partitions[census->count - 1];
    census->exact = partitions[0] == 0 && (size_t)census->highest + 1 == census->count;
    return 0;
}

/* Checks a partition count against the stores. Returns 0, or -1 with errstr. */
static int check_against_stores(int partitions, const char *dir, const store_census *census,
                                char *errstr, size_t errstr_size) {
    if (census->count == 0) return 0;
    if (census->exact && (size_t)partitions != census->count) {
        snprintf(errstr, errstr_size,
                 "%s holds stores for %zu partitions (p0.db..p%d.db), not %d: each player's "
                 "partition depends on the count, so these stores would no longer match",
                 dir, census->count, (int)census->highest, partitions);
        return -1;
    }
    if (!census->exact && partitions <= census->highest) {
        snprintf(errstr, errstr_size,
                 "%s holds a store for partition %d, which a topic of %d partitions lacks", dir,
                 (int)census->highest, partitions);
        return -1;
    }
    return 0;
}

/* Reads the topic's metadata. Returns 1 when it exists (info filled), 0 when the broker
 * does not know it, -1 on error (errstr). */
static int describe_topic(rd_kafka_t *rk, rd_kafka_topic_t *topic, topic_info *info,
                          char *errstr, size_t errstr_size) {
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t err = rd_kafka_metadata(rk, 0, topic, &md, 10000);
    if (err) {
        snprintf(errstr, errstr_size, "reading metadata: %s", rd_kafka_err2str(err));
        return -1;
    }
    int found = -1;
    memset(info, 0, sizeof *info);
    if (md->topic_cnt == 1) {
        const struct rd_kafka_metadata_topic *t = &md->topics[0];
        if (t->err == RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART ||
            t->err == RD_KAFKA_RESP_ERR__UNKNOWN_TOPIC) {
            found = 0;
        } else if (t->partition_cnt > 0) {
            found = 1;
            info->partitions = t->partition_cnt;
            info->replication = t->partitions[0].replica_cnt;
            info->led = 1;
            for (int i = 0; i < t->partition_cnt; i++)
                if (t->partitions[i].leader < 0) info->led = 0;
        } else {
            snprintf(errstr, errstr_size, "topic metadata: %s",
                     rd_kafka_err2str(t->err ? t->err : RD_KAFKA_RESP_ERR__PARTITION_EOF));
        }
    } else {
        snprintf(errstr, errstr_size, "topic metadata: no answer for the topic");
    }
    rd_kafka_metadata_destroy(md);
    return found;
}

/* Creates the topic. Returns 0 (also when another client created it meanwhile), or -1. */
static int create_topic(rd_kafka_t *rk, const char *name, int partitions, int replication,
                        char *errstr, size_t errstr_size) {
    char why[256];
    int rc = -1;
    rd_kafka_queue_t *queue = rd_kafka_queue_new(rk);
    rd_kafka_AdminOptions_t *options = rd_kafka_AdminOptions_new(rk, RD_KAFKA_ADMIN_OP_CREATETOPICS);
    rd_kafka_NewTopic_t *new_topic =
        rd_kafka_NewTopic_new(name, partitions, replication, why, sizeof why);
    rd_kafka_event_t *event = NULL;
    if (!new_topic) {
        snprintf(errstr, errstr_size, "creating the topic: %s", why);
        goto done;
    }
    if (rd_kafka_AdminOptions_set_operation_timeout(options, TOPIC_TIMEOUT_MS, why, sizeof why)) {
        snprintf(errstr, errstr_size, "creating the topic: %s", why);
        goto done;
    }
    rd_kafka_CreateTopics(rk, &new_topic, 1, options, queue);
    event = rd_kafka_queue_poll(queue, TOPIC_TIMEOUT_MS + 10000);
    if (!event) {
        snprintf(errstr, errstr_size, "creating the topic: no answer from Kafka in %d s",
                 TOPIC_TIMEOUT_MS / 1000 + 10);
        goto done;
    }
    if (rd_kafka_event_error(event)) {
        snprintf(errstr, errstr_size, "creating the topic: %s", rd_kafka_event_error_string(event));
        goto done;
    }
    size_t count = 0;
    const rd_kafka_topic_result_t **results =
        rd_kafka_CreateTopics_result_topics(rd_kafka_event_CreateTopics_result(event), &count);
    rd_kafka_resp_err_t err = count == 1 ? rd_kafka_topic_result_error(results[0])
                                         : RD_KAFKA_RESP_ERR__BAD_MSG;
    if (err && err != RD_KAFKA_RESP_ERR_TOPIC_ALREADY_EXISTS) {
        const char *text = count == 1 ? rd_kafka_topic_result_error_string(results[0]) : NULL;
        snprintf(errstr, errstr_size, "creating the topic: %s", text ? text : rd_kafka_err2str(err));
        goto done;
    }
    rc = 0;
done:
    if (event) rd_kafka_event_destroy(event);
    if (new_topic) rd_kafka_NewTopic_destroy(new_topic);
    rd_kafka_AdminOptions_destroy(options);
    rd_kafka_queue_destroy(queue);
    return rc;
}

/* Checks an existing topic against --partitions and the stores. Returns the exit status. */
static int check_existing(const cli_options *opt, const topic_info *info,
                          const store_census *census) {
    char errstr[512];
    if (opt->topic_partitions && opt->topic_partitions != info->partitions) {
        log_error("topic",
                  "topic '%s' has %d partitions, not the %d asked: lootlog does not change "
                  "a topic's partition count (each player's partition depends on it)",
                  opt->topic, info->partitions, opt->topic_partitions);
        return 2;
    }
    if (info->partitions > STORE_MAX_PARTITIONS) {
        log_error("topic", "topic '%s' has %d partitions; lootlog folds at most %d",
                  opt->topic, info->partitions, STORE_MAX_PARTITIONS);
        return 2;
    }
    if (check_against_stores(info->partitions, opt->db, census, errstr, sizeof errstr)) {
        log_error("topic", "topic '%s' has %d partitions, but %s", opt->topic,
                  info->partitions, errstr);
        return 2;
    }
    if (opt->topic_replication > 0 && opt->topic_replication != info->replication)
        log_warn("topic", "topic '%s' has replication %d, not %d; an existing "
                 "topic is left as it is",
                 opt->topic, info->replication, opt->topic_replication);
    printf("topic '%s' exists: %d partitions, replication %d%s\n", opt->topic, info->partitions,
           info->replication, census->count ? "; it matches the stores in --db" : "");
    return 0;
}

int command_topic(cli_options *opt) {
    char errstr[512], why[512];
    store_census census;
    topic_info info;
    int status = 1;
    rd_kafka_t *rk = NULL;
    rd_kafka_topic_t *topic = NULL;
    if (opt->positional_count != 1 || strcmp(opt->positional[0], "ensure") != 0) {
        log_error("topic", "usage: lootlog topic ensure [--partitions N] [--replication R]"
                  " (lootlog topic --help)");
        return 2;
    }
    if (count_stores(opt->db, &census, errstr, sizeof errstr)) {
        log_error("topic", "--db %s: %s", opt->db, errstr);
        return 2;
    }
    if (opt->topic_partitions &&
        check_against_stores(opt->topic_partitions, opt->db, &census, errstr, sizeof errstr)) {
        log_error("topic", "--partitions %d refused: %s", opt->topic_partitions, errstr);
        return 2;
    }
    /* No automatic creation by a metadata request: only CreateTopics below makes topics. */
    const char *const defaults[] = {"client.id", "lootlog-topic", "allow.auto.create.topics",
                                    "false", NULL};
    rd_kafka_conf_t *conf = kafka_config_new(opt->brokers, defaults, opt->kafka_props,
                                           opt->kafka_prop_count, errstr, sizeof errstr);
    if (!conf) {
        log_error("topic", "%s", errstr);
        return 2;
    }
    rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, why, sizeof why);
    if (!rk) {
        rd_kafka_conf_destroy(conf);
        log_error("topic", "creating a Kafka client: %s", why);
        return 1;
    }
    topic = rd_kafka_topic_new(rk, opt->topic, NULL);
    int found = describe_topic(rk, topic, &info, errstr, sizeof errstr);
    if (found < 0) {
        log_error("topic", "topic '%s' at %s: %s", opt->topic, opt->brokers, errstr);
        goto done;
    }
    if (found) {
        status = check_existing(opt, &info, &census);
        goto done;
    }
    int partitions = opt->topic_partitions;
    if (!partitions && census.count && !census.exact) {
        log_error("topic", "%s holds a shard's stores (up to p%d.db): say the topic's "
                  "partition count with --partitions N",
                  opt->db, (int)census.highest);
        status = 2;
        goto done;
    }
    if (!partitions) partitions = census.count ? (int)census.count : TOPIC_DEFAULT_PARTITIONS;
    if (create_topic(rk, opt->topic, partitions, opt->topic_replication, errstr, sizeof errstr)) {
        log_error("topic", "topic '%s' at %s: %s", opt->topic, opt->brokers, errstr);
        goto done;
    }
    /* Wait until every partition is led, so a serve started next is ready at once. */
    int64_t deadline = clock_ms() + TOPIC_TIMEOUT_MS;
    do {
        found = describe_topic(rk, topic, &info, errstr, sizeof errstr);
        if (found == 1 && info.led) break;
        struct timespec pause = {0, 200 * 1000000L};
        nanosleep(&pause, NULL);
    } while (clock_ms() < deadline);
    if (found != 1 || !info.led) {
        log_error("topic", "topic '%s' was created but its partitions have no leader "
                  "after %d s",
                  opt->topic, TOPIC_TIMEOUT_MS / 1000);
        goto done;
    }
    if (info.partitions != partitions) {
        /* Another client created it meanwhile, with another count. */
        status = check_existing(opt, &info, &census);
        goto done;
    }
    printf("topic '%s' created: %d partitions, replication %d\n", opt->topic, info.partitions,
           info.replication);
    status = 0;
done:
    if (topic) rd_kafka_topic_destroy(topic);
    rd_kafka_destroy(rk);
    return status;
}
