/* topic: `lootlog topic ensure` — creates the event topic with librdkafka's Admin API, or
 * checks an existing one, and refuses a partition count that differs from the topic's or
 * from the stores already in --db (a topic's partition count decides which partition,
 * and so which store, holds each player). */
#ifndef LOOTLOG_CLI_TOPIC_H
#define LOOTLOG_CLI_TOPIC_H

#include "options.h"

/* Runs the verb; returns the exit status: 0 done, 1 Kafka failed or is unreachable,
 * 2 refused (usage, or a partition count that does not match). */
int topic_command(const cli_options *opt);

#endif
