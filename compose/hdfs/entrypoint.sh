#!/bin/sh
# An HDFS NameNode or DataNode: writes core-site.xml and hdfs-site.xml (the settings
# stack/stack writes, with the compose network's host names instead of 127.0.0.1),
# formats the NameNode's folder on its first start, then becomes the Java process (exec:
# it gets SIGTERM). The java command lines are those of stack/stack, which are what
# `hdfs namenode` / `hdfs datanode` run.
#
#   hdfs-entrypoint namenode | datanode
#   HDFS_NAMENODE_HOST      the NameNode's host name (namenode)
#   HDFS_DATANODE_HOSTNAME  the name a DataNode registers under: WebHDFS redirects a
#                           client (lootlog) there, so it must resolve for clients
#                           (default: hostname)
#   HDFS_REPLICATION        dfs.replication (2: one copy on each of two DataNodes)
#   HDFS_HEAP               JVM heap options (-Xmx512m)
set -eu

ROLE=${1:-}
case $ROLE in
    namenode) MAIN=org.apache.hadoop.hdfs.server.namenode.NameNode ;;
    datanode) MAIN=org.apache.hadoop.hdfs.server.datanode.DataNode ;;
    *) echo "usage: hdfs-entrypoint namenode|datanode" >&2; exit 2 ;;
esac
NN=${HDFS_NAMENODE_HOST:-namenode}
DN_HOST=${HDFS_DATANODE_HOSTNAME:-$(hostname)}
REPLICATION=${HDFS_REPLICATION:-2}
HEAP=${HDFS_HEAP:--Xmx512m}
BASE=/var/lib/hdfs
CONF=/etc/hadoop
mkdir -p "$BASE/tmp"

prop() { printf '  <property><name>%s</name><value>%s</value></property>\n' "$1" "$2"; }
{
    echo '<?xml version="1.0"?>'
    echo '<!-- written by hdfs-entrypoint -->'
    echo '<configuration>'
    prop fs.defaultFS "hdfs://$NN:8020"
    prop hadoop.tmp.dir "$BASE/tmp"
    echo '</configuration>'
} >"$CONF/core-site.xml"
{
    echo '<?xml version="1.0"?>'
    echo '<!-- written by hdfs-entrypoint -->'
    echo '<configuration>'
    prop dfs.replication "$REPLICATION"
    prop dfs.namenode.name.dir "file://$BASE/name"
    prop dfs.datanode.data.dir "file://$BASE/data"
    prop dfs.namenode.rpc-address "$NN:8020"
    prop dfs.namenode.rpc-bind-host 0.0.0.0
    prop dfs.namenode.http-address "$NN:9870"
    prop dfs.namenode.http-bind-host 0.0.0.0
    prop dfs.datanode.address 0.0.0.0:9866
    prop dfs.datanode.http.address 0.0.0.0:9864
    prop dfs.datanode.ipc.address 0.0.0.0:9867
    echo '  <!-- WebHDFS redirects (307) name the DataNode by this host -->'
    prop dfs.datanode.hostname "$DN_HOST"
    prop dfs.namenode.datanode.registration.ip-hostname-check false
    prop dfs.permissions.enabled false
    prop dfs.namenode.safemode.extension 0
    echo '</configuration>'
} >"$CONF/hdfs-site.xml"

# What Hadoop's own launcher passes on JDK 9+ (hadoop-functions.sh), as stack/stack does
OPENS=-XX:+IgnoreUnrecognizedVMOptions
for p in java.io java.lang java.lang.reflect java.math java.net java.text java.util \
         java.util.concurrent java.util.zip sun.security.util sun.security.x509; do
    OPENS="$OPENS --add-opens=java.base/$p=ALL-UNNAMED"
done
# Jetty unpacks the web apps into java.io.tmpdir
# shellcheck disable=SC2086  # $HEAP and $OPENS hold several options
set -- $HEAP -Djava.net.preferIPv4Stack=true $OPENS \
    -Dlog4j.configuration=file:/opt/hadoop/log4j.properties \
    -Dhadoop.log.dir="$BASE" -Djava.io.tmpdir="$BASE/tmp" \
    -cp "$CONF:/opt/hadoop/jars/*"

if [ "$ROLE" = namenode ] && [ ! -f "$BASE/name/current/VERSION" ]; then
    echo "hdfs-entrypoint: formatting $BASE/name"
    java "$@" "$MAIN" -format -nonInteractive
fi
exec java "$@" "$MAIN"
