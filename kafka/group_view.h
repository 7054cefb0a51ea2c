/* group_view: who owns which partition, as the Kafka consumer group of the lootlog nodes
 * says. A thread asks Kafka for the group's description (DescribeGroups) every second,
 * or sooner when asked, and keeps the last stable assignment: partition -> the owner's
 * HTTP address, which each node carries in its client id (fold_engine.h). Nothing of it is
 * home-made coordination: the group's coordinator decides, this only reads. */
#ifndef LOOTLOG_GROUP_VIEW_H
#define LOOTLOG_GROUP_VIEW_H

#include <stddef.h>
#include <stdint.h>

typedef struct group_view group_view;

#define GROUP_VIEW_ADDRESS_SIZE 256

/* kafka_props: "key=value" librdkafka overrides (security settings and the like); all
 * strings must outlive the view. NULL with errstr on failure. */
group_view *group_view_start(const char *brokers, const char *group_id, const char *topic,
                             const char *const *kafka_props, size_t kafka_prop_count,
                             char *errstr, size_t errstr_size);

/* The owner's HOST:PORT of partition into address (GROUP_VIEW_ADDRESS_SIZE bytes).
 * Returns 1, or 0 when no stable assignment names one (yet). Any thread. */
int group_view_owner(group_view *v, int32_t partition, char *address, size_t address_size);

/* Any thread: look again now (an owner did not answer as one, a rebalance happened). */
void group_view_refresh(group_view *v);

/* Any thread: the group's state as Kafka last told it ("Stable", "PreparingRebalance",
 * ...; "" before the first answer), its member count, and the age of that answer in ms
 * (-1: none yet). */
void group_view_state(group_view *v, char *state, size_t state_size, int *members,
                      int64_t *age_ms);

void group_view_stop(group_view *v);

#endif
