"""Fixtures of the cluster pass: three `lootlog serve --group` nodes on the real cluster stack
that `./dev test --cluster` (and the end of a plain `./dev test`) started with
`stack/stack start DIR --brokers 3 --datanodes 2`. That run names the stack in:

  LOOTLOG_CLUSTER_STACK_ENV  its stack.env (bootstrap list, ports, pid files)
  LOOTLOG_CLUSTER_STACK_DIR  its folder (the DIR of `stack/stack stop-broker DIR I`)
  LOOTLOG_CLUSTER_STACK_CMD  the stack script

Without all three, this folder is not collected at all: a plain `pytest tests/` neither
runs nor skips these tests, and `pytest tests/cluster` alone collects nothing (pytest's
status 5, which `./dev test` counts as a failure)."""
import os
import re
import shlex
import signal
import subprocess
import time
import uuid

import pytest
import requests

from conftest import BIN, Server, store_files, wait_until

ENV_VARS = ("LOOTLOG_CLUSTER_STACK_ENV", "LOOTLOG_CLUSTER_STACK_DIR", "LOOTLOG_CLUSTER_STACK_CMD")
TOPIC = "events"   # the stack's topic: replication factor 3, min.insync.replicas 2

if not all(os.environ.get(k) for k in ENV_VARS):
    collect_ignore_glob = ["*"]


def read_stack_env(path):
    """stack.env's KEY=VALUE lines (values shell-quoted by the stack script)."""
    env = {}
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#") or "=" not in line:
                continue
            key, _, value = line.partition("=")
            words = shlex.split(value)
            env[key] = words[0] if words else ""
    return env


class Cluster:
    """The running cluster stack: its bootstrap list, brokers and the stack script."""

    def __init__(self):
        self.env_path = os.environ["LOOTLOG_CLUSTER_STACK_ENV"]
        self.dir = os.environ["LOOTLOG_CLUSTER_STACK_DIR"]
        self.cmd = os.environ["LOOTLOG_CLUSTER_STACK_CMD"]
        self.env = read_stack_env(self.env_path)
        self.bootstrap = self.env["LOOTLOG_BROKERS"]
        self.brokers = int(self.env.get("BROKERS", "1"))
        self.replication = int(self.env.get("REPLICATION_FACTOR", "1"))
        self.min_isr = int(self.env.get("MIN_INSYNC_REPLICAS", "1"))

    def stack(self, verb, *args, timeout=300):
        """Runs `stack VERB DIR ARGS...`; returns how long it took (seconds)."""
        started = time.monotonic()
        subprocess.run([self.cmd, verb, self.dir, *args], check=True, timeout=timeout)
        return time.monotonic() - started

    def all_running(self):
        """`stack status` exits 0 only when every process of the stack runs."""
        return subprocess.run([self.cmd, "status", self.dir], capture_output=True,
                              timeout=30).returncode == 0

    def admin(self):
        from confluent_kafka.admin import AdminClient
        return AdminClient({"bootstrap.servers": self.bootstrap})

    def leaders(self, topic=TOPIC):
        """{partition: leading broker id} of topic (-1: no leader)."""
        md = self.admin().list_topics(topic, timeout=10).topics[topic]
        assert md.error is None, md.error
        return {p: info.leader for p, info in md.partitions.items()}

    def partition_count(self, topic=TOPIC):
        return len(self.leaders(topic))


@pytest.fixture(scope="session")
def cluster():
    missing = [k for k in ENV_VARS if not os.environ.get(k)]
    if missing:
        pytest.fail(f"the cluster tests need {', '.join(missing)} (run `./dev test --cluster`)")
    c = Cluster()
    assert c.brokers == 3 and c.replication == 3 and c.min_isr == 2, \
        f"expected 3 brokers, RF 3, min ISR 2; {c.env_path} says {c.brokers}, " \
        f"{c.replication}, {c.min_isr}"
    # The suite's oracle reads Kafka at conftest.BROKERS: point it at this cluster.
    import oracle
    oracle.BROKERS = c.bootstrap
    return c


@pytest.fixture(autouse=True)
def whole_cluster(cluster):
    """Every test starts (and must end) with all brokers, the NameNode and DataNodes up."""
    assert cluster.all_running(), f"a stack process is down before the test:\n" + \
        subprocess.run([cluster.cmd, "status", cluster.dir], capture_output=True,
                       text=True).stdout
    yield
    assert cluster.all_running(), "the test left a stack process down"


class Node(Server):
    """One `lootlog serve --group GROUP` node with all brokers of the cluster. Kafka's group
    assigns its partitions; /v1/cluster says which it owns. A short session timeout (6 s,
    the brokers' minimum) so a dead node's partitions move quickly."""

    def __init__(self, tmp_path, name, bootstrap, group, topic=TOPIC, extra_args=()):
        super().__init__(tmp_path, name=name, extra_args=extra_args, topic=topic)
        self.bootstrap = bootstrap
        self.group = group
        self.node_name = name

    def start(self, wait_ready=True):
        args = [BIN, "serve", "--http", f"127.0.0.1:{self.port}", "--brokers", self.bootstrap,
                "--topic", self.topic, "--db", self.db, "--group", self.group,
                "-X", "session.timeout.ms=6000", *self.extra_args]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        wait_until(self.healthy, 20, f"{self.name} /healthz")
        if wait_ready:
            wait_until(self.ready, 60, f"{self.name} /readyz", interval=0.1)
        return self

    @property
    def name(self):
        return self.node_name

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def view(self):
        """GET /v1/cluster."""
        r = requests.get(self.url + "/v1/cluster", timeout=5)
        assert r.status_code == 200, r.text
        return r.json()

    def owned(self):
        """{partition: its /v1/cluster entry} of the partitions this node folds and serves;
        {} when it is not running."""
        if not self.running():
            return {}
        return {e["partition"]: e for e in self.view()["partitions"] if e["here"]}

    def owns(self, partition):
        return partition in self.owned()

    def metrics(self):
        """/metrics as {'name{labels}': value}."""
        r = requests.get(self.url + "/metrics", timeout=5)
        assert r.status_code == 200, r.text
        out = {}
        for line in r.text.splitlines():
            if line and not line.startswith("#"):
                key, _, value = line.rpartition(" ")
                out[key] = float(value)
        return out

    def folded_since_start(self):
        """Records this process has folded, every outcome (lootlog_fold_events_total)."""
        return int(sum(v for k, v in self.metrics().items()
                       if re.match(r"lootlog_fold_events_total\{", k)))

    def store_query(self, partition, sql):
        """Rows of sql on this node's store of partition ([] when it has none)."""
        import sqlite3
        path = store_files(self.db).get(partition)
        if not path:
            return []
        con = sqlite3.connect(path, timeout=10)
        try:
            return con.execute(sql).fetchall()
        finally:
            con.close()

    def tables(self, partition):
        """(players {user: (version, guild)}, items {(user, item): quantity}) of its store
        of partition."""
        players = {u: (v, g) for u, v, g in self.store_query(
            partition, "SELECT user_id, version, guild_id FROM players WHERE version > 0")}
        items = {(u, i): q for u, i, q in self.store_query(
            partition, "SELECT p.user_id, i.item_type, i.quantity FROM inventory i "
                       "JOIN players p ON p.player_key = i.player_key")}
        return players, items


def owners(nodes, settled=True):
    """{partition: the running node that owns it}. When two claim one it fails, or with
    settled=False returns None: right after a coordinator moves (a broker died), a node the
    group dropped keeps its partitions until its next heartbeat tells it, while another
    node already took them (docs/deployment.md, "Fencing")."""
    found = {}
    for n in nodes:
        for p in n.owned():
            if p in found:
                assert not settled, f"partition {p} owned by {found[p].name} and {n.name}"
                return None
            found[p] = n
    return found


def wait_owned(nodes, partitions, timeout, what="every partition owned"):
    """Waits until the running nodes own every partition between them, each exactly once,
    and every running node's view of the group is Stable with those owners. Returns
    {partition: node}."""
    def settled():
        found = owners(nodes, settled=False)
        if found is None or set(found) != set(range(partitions)):
            return None
        addresses = {p: f"127.0.0.1:{n.port}" for p, n in found.items()}
        running = sum(1 for n in nodes if n.running())
        for n in nodes:
            if not n.running():
                continue
            v = n.view()
            # every running node a member (a node just started may not have joined yet,
            # or a dead one not yet expired), and the group settled on these owners
            if v["state"] != "Stable" or v["members"] != running or \
                    {e["partition"]: e["owner"] for e in v["partitions"]} != addresses:
                return None
        return found
    return wait_until(settled, timeout, what, interval=0.1)


def new_group():
    return "t-" + uuid.uuid4().hex[:10]


@pytest.fixture
def nodes(cluster, tmp_path):
    """Three fresh nodes in a consumer group of their own, started together; the group
    spreads the topic's partitions over them, and each folds the whole history of what it
    got first."""
    group = new_group()
    made = [Node(tmp_path, f"node{i + 1}", cluster.bootstrap, group) for i in range(3)]
    try:
        for n in made:
            n.start(wait_ready=False)
        wait_owned(made, cluster.partition_count(), 60)
        for n in made:
            wait_until(n.ready, 90, f"{n.name} /readyz", interval=0.1)
        yield made
    finally:
        for n in made:
            if n.proc:
                n.stop(signal.SIGKILL)


def wait_settled(nodes, topic, timeout):
    """Waits until the owner of every partition has folded it up to the topic's end and no
    owner holds emitted events Kafka has not acknowledged (guild decisions go on after the
    last client write), with the end and the owners unchanged across the check. Returns
    the ends."""
    from oracle import end_offsets
    deadline = time.monotonic() + timeout
    while True:
        ends = end_offsets(topic)
        found = owners(nodes, settled=False)
        if found is None:
            if time.monotonic() > deadline:
                owners(nodes)  # fails, naming the partition two nodes still claim
            time.sleep(0.2)
            continue
        behind, outbox = {}, {}
        for p, (low, high) in ends.items():
            n = found.get(p)
            got = dict(n.store_query(p, "SELECT partition, next_offset FROM offsets")) if n else {}
            if got.get(p, low) < high or (n is None and high > low):
                behind[p] = (got.get(p), high)
            if n:
                rows = n.store_query(p, "SELECT count(*) FROM outbox")
                if rows and rows[0][0]:
                    outbox[p] = rows[0][0]
        if not behind and not outbox and end_offsets(topic) == ends and \
                {p: n.name for p, n in (owners(nodes, settled=False) or {}).items()} == \
                {p: n.name for p, n in found.items()}:
            return ends
        if time.monotonic() > deadline:
            raise AssertionError(f"not settled after {timeout}s: behind {behind}, outbox {outbox}")
        time.sleep(0.2)


def compare_with_oracle(nodes, topic, ends):
    """Folds the topic up to ends with the suite's oracle and checks that the owner of each
    partition holds exactly that partition's players and items, as the oracle has them
    (stale copies of partitions a node no longer owns are not state: nobody reads them).
    Returns (players, items) compared in all."""
    from oracle import GUILD_SIDE, Oracle, fold_topic

    class HomeOracle(Oracle):
        """The oracle, also noting each player's partition from the player's own records."""

        def __init__(self):
            super().__init__(capacity=100)   # lootlog's default --guild-capacity
            self.home = {}

        def fold(self, partition, offset, ev):
            if ev["event_type"] not in GUILD_SIDE:
                self.home[ev["user_id"]] = partition
            return super().fold(partition, offset, ev)

    want = fold_topic(topic, ends, HomeOracle())
    players, items = want.players(), want.items()

    # The owners wait_settled saw may have changed since: a broker restarted after a
    # kill takes back the group's coordinator, and the group rebalances (a partition is
    # then owned by no one for a moment, and its next owner first catches up).
    def owned_and_folded():
        found = owners(nodes, settled=False)
        if not found or not set(ends) <= set(found):
            return None
        for p, (low, high) in ends.items():
            got = dict(found[p].store_query(p, "SELECT partition, next_offset FROM offsets"))
            if got.get(p, low) < high:
                return None
        return found
    found = wait_until(owned_and_folded, 90, "every partition owned and folded to its end")
    for p in ends:
        n = found[p]
        got_players, got_items = n.tables(p)
        mine = {u for u, home in want.home.items() if home == p}
        want_players = {u: v for u, v in players.items() if u in mine}
        want_items = {k: q for k, q in items.items() if k[0] in mine}
        assert got_players == want_players, \
            f"partition {p} on {n.name}: {len(got_players)} players, oracle {len(want_players)}; " \
            f"first differences {sorted(set(got_players.items()) ^ set(want_players.items()))[:5]}"
        assert got_items == want_items, \
            f"partition {p} on {n.name}: items differ: " \
            f"{sorted(set(got_items.items()) ^ set(want_items.items()))[:5]}"
    return len(players), len(items)
