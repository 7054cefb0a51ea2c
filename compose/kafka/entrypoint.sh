#!/bin/sh
# One Kafka node of a KRaft cluster: combined broker + controller, static quorum
# (controller.quorum.voters). Writes /etc/kafka/server.properties from the environment,
# formats the data folder on the first start (every node with the same cluster id, no
# --standalone: the voters are fixed), then becomes the broker (exec: it gets SIGTERM and
# shuts down in a controlled way).
#
#   KAFKA_NODE_ID                    this node's id, e.g. 1 (required)
#   KAFKA_CLUSTER_ID                 22-character cluster id, the same on every node (required)
#   KAFKA_CONTROLLER_QUORUM_VOTERS   id@host:9093,... of all three nodes (required)
#   KAFKA_ADVERTISED_HOST            the name clients reach this node by (default: hostname)
#   KAFKA_REPLICATION                replication of new topics and internal topics (3)
#   KAFKA_MIN_INSYNC_REPLICAS        min.insync.replicas for them (2)
#   KAFKA_NUM_PARTITIONS             partitions of a topic created without a count (6)
#   KAFKA_LOG_RETENTION_MS           -1: keep events forever (the log is lootlog's truth)
#   KAFKA_BROKER_SESSION_TIMEOUT_MS  how soon the controller fences a broker that stopped
#                                    heartbeating and moves its leaderships (3000)
#   KAFKA_HEAP                       JVM heap options (-Xmx512m)
set -eu

: "${KAFKA_NODE_ID:?set KAFKA_NODE_ID}"
: "${KAFKA_CLUSTER_ID:?set KAFKA_CLUSTER_ID (the same on every node)}"
: "${KAFKA_CONTROLLER_QUORUM_VOTERS:?set KAFKA_CONTROLLER_QUORUM_VOTERS (id@host:9093,...)}"
HOST=${KAFKA_ADVERTISED_HOST:-$(hostname)}
RF=${KAFKA_REPLICATION:-3}
MIN_ISR=${KAFKA_MIN_INSYNC_REPLICAS:-2}
PARTITIONS=${KAFKA_NUM_PARTITIONS:-6}
RETENTION_MS=${KAFKA_LOG_RETENTION_MS:--1}
SESSION_MS=${KAFKA_BROKER_SESSION_TIMEOUT_MS:-3000}
HEAP=${KAFKA_HEAP:--Xmx512m}
DATA=/var/lib/kafka/data
CONF=/etc/kafka/server.properties
CP='/opt/kafka/jars/*'
LOG4J=-Dlog4j2.configurationFile=/opt/kafka/log4j2.yaml

cat >"$CONF" <<PROPS
# written by kafka-entrypoint from the container's environment
process.roles=broker,controller
node.id=$KAFKA_NODE_ID
controller.quorum.voters=$KAFKA_CONTROLLER_QUORUM_VOTERS
listeners=PLAINTEXT://0.0.0.0:9092,CONTROLLER://0.0.0.0:9093
advertised.listeners=PLAINTEXT://$HOST:9092,CONTROLLER://$HOST:9093
inter.broker.listener.name=PLAINTEXT
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT
log.dirs=$DATA
num.partitions=$PARTITIONS
# a write acknowledged with acks=all (lootlog's producer) is on at least MIN_ISR brokers
default.replication.factor=$RF
min.insync.replicas=$MIN_ISR
offsets.topic.replication.factor=$RF
transaction.state.log.replication.factor=$RF
transaction.state.log.min.isr=$MIN_ISR
share.coordinator.state.topic.replication.factor=$RF
share.coordinator.state.topic.min.isr=$MIN_ISR
unclean.leader.election.enable=false
# lootlog creates its topic itself (lootlog topic ensure); no implicit topics
auto.create.topics.enable=false
log.retention.ms=$RETENTION_MS
# A broker killed outright keeps its partitions' leaderships until the controller fences
# it: 9 s by default, longer than lootlog's 5 s --request-timeout-ms, so writes to those
# partitions would get 503 meanwhile. Fenced after 3 s they only wait (as stack/stack).
broker.heartbeat.interval.ms=1000
broker.session.timeout.ms=$SESSION_MS
PROPS

if [ ! -f "$DATA/meta.properties" ]; then
    echo "kafka-entrypoint: formatting $DATA (node $KAFKA_NODE_ID, cluster $KAFKA_CLUSTER_ID)"
    java -Xmx256m $LOG4J -cp "$CP" kafka.tools.StorageTool format \
        -t "$KAFKA_CLUSTER_ID" -c "$CONF"
fi

# shellcheck disable=SC2086  # $HEAP may hold several options
exec java $HEAP -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -XX:InitiatingHeapOccupancyPercent=35 \
    -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    $LOG4J -Dkafka.logs.dir=/var/lib/kafka -cp "$CP" kafka.Kafka "$CONF"
