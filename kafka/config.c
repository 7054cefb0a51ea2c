/* config: one place where lootlog's librdkafka settings are assembled, and where
 * librdkafka's own log lines are handed to lootlog's logger. */
#include "kafka/config.h"

#include "lib/log.h"

#include <stdio.h>
#include <string.h>

/* librdkafka's log callback: runs on its internal threads, so it only formats a line
 * (rd_kafka_name reads a field; no other librdkafka call). level is syslog's. */
static void on_kafka_log(const rd_kafka_t *rk, int level, const char *facility,
                         const char *text) {
    log_level ours = level <= 3 ? LOG_ERROR : level == 4 ? LOG_WARN : level <= 6 ? LOG_INFO
                                                                                 : LOG_DEBUG;
    log_with(ours, "kafka",
             LOG_FIELDS(LOG_STR("client", rk ? rd_kafka_name(rk) : ""),
                        LOG_STR("facility", facility)),
             "%s", text);
}

static int set_one(rd_kafka_conf_t *conf, const char *key, const char *value, char *errstr,
                   size_t errstr_size) {
    char why[256];
    if (rd_kafka_conf_set(conf, key, value, why, sizeof why) != RD_KAFKA_CONF_OK) {
        snprintf(errstr, errstr_size, "kafka setting %s=%s: %s", key, value, why);
        return -1;
    }
    return 0;
}

rd_kafka_conf_t *kafka_config_new(const char *brokers, const char *const *defaults,
                                const char *const *overrides, size_t override_count,
                                char *errstr, size_t errstr_size) {
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    rd_kafka_conf_set_log_cb(conf, on_kafka_log);
    if (set_one(conf, "bootstrap.servers", brokers, errstr, errstr_size)) goto fail;
    for (size_t i = 0; defaults && defaults[i]; i += 2)
        if (set_one(conf, defaults[i], defaults[i + 1], errstr, errstr_size)) goto fail;
    for (size_t i = 0; i < override_count; i++) {
        char key[256];
        const char *eq = strchr(overrides[i], '=');
        if (!eq || eq == overrides[i] || (size_t)(eq - overrides[i]) >= sizeof key) {
            snprintf(errstr, errstr_size, "kafka setting '%s' is not key=value", overrides[i]);
            goto fail;
        }
        memcpy(key, overrides[i], (size_t)(eq - overrides[i]));
        key[eq - overrides[i]] = '\0';
        if (set_one(conf, key, eq + 1, errstr, errstr_size)) goto fail;
    }
    return conf;
fail:
    rd_kafka_conf_destroy(conf);
    return NULL;
}
