/* config: builds a librdkafka configuration from defaults, the broker list and the
 * user's -X key=value overrides, for the producer, the fold and replay alike. librdkafka's
 * own log lines go through log.h (module "kafka", fields client and facility). */
#ifndef LOOTLOG_KAFKA_CONFIG_H
#define LOOTLOG_KAFKA_CONFIG_H

#include <librdkafka/rdkafka.h>
#include <stddef.h>

/* defaults: NULL-terminated key, value, key, value... pairs applied first.
 * overrides: "key=value" strings applied last. Returns a conf the caller owns (or
 * hands to rd_kafka_new), or NULL with errstr. */
rd_kafka_conf_t *kafka_config_new(const char *brokers, const char *const *defaults,
                                const char *const *overrides, size_t override_count,
                                char *errstr, size_t errstr_size);

#endif
