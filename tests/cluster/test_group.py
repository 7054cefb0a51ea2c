"""lootlog nodes as one Kafka consumer group on the 3-broker cluster (issue 10):
- one URL: every node answers every read, forwarding to the owner the group names (or
  421 `wrong_node` with the owner's address with --no-forward); writes through any node;
- (b) a node SIGKILLed under write load: its partitions move to the others within the
  group's session timeout, its players' reads answer again through any node (how soon is
  measured and printed), no 2xx write is lost, and the final state equals the oracle;
- a new node bootstraps the partitions it is given from the HDFS snapshots (not from the
  whole log), and (c) a node restarted on its old folder catches up from its local stores
  instead of restoring."""
import random
import signal
import time
import uuid

import requests

import json

from conftest import (ThreadedLoad, hdfs_list, hdfs_read, stored_offsets, topic_event_ids,
                      wait_until)

from .conftest import (TOPIC, Node, compare_with_oracle, new_group, owners, wait_owned,
                       wait_settled)

TOKEN = "cluster-admin-token"


def start_nodes(cluster, tmp_path, names, group, extra=None, env=None):
    made = [Node(tmp_path, name, cluster.bootstrap, group,
                 extra_args=(extra or {}).get(name, ())) for name in names]
    for n in made:
        n.env.update(env or {})
        n.start(wait_ready=False)
    return made


def stop_all(nodes):
    for n in nodes:
        if n.proc:
            n.stop(signal.SIGKILL)


def write(node, user, item="sword", quantity=1):
    r = node.buy(user, item, quantity)
    assert r.status_code == 202, (node.name, r.status_code, r.text)
    return r.json()["partition"]


def players_by_partition(nodes, prefix, per_partition, partitions):
    """One purchase (through the nodes in turn) for new players until each partition has
    per_partition of them; returns {user: partition}."""
    found, k = {}, 0
    while any(sum(1 for p in found.values() if p == q) < per_partition for q in partitions):
        user = f"{prefix}{k}"
        p = write(nodes[k % len(nodes)], user)
        if p in partitions:
            found[user] = p
        k += 1
        assert k < 5000, "the partitioner never reached some partition"
    return found


def address(node):
    return f"127.0.0.1:{node.port}"


def test_every_node_answers_every_request(cluster, tmp_path):
    count = cluster.partition_count()
    nodes = start_nodes(cluster, tmp_path, ["node1", "node2", "node3"], new_group(),
                        extra={"node3": ["--no-forward"]})
    try:
        found = wait_owned(nodes, count, 60)
        assert all(len([p for p, n in found.items() if n is node]) == count // 3 for node in nodes), \
            {p: n.name for p, n in found.items()}
        prefix = "one" + uuid.uuid4().hex[:6] + "-"
        users = players_by_partition(nodes, prefix, 2, range(count))
        wait_settled(nodes, TOPIC, 60)
        forwarded = refused = 0
        for user, p in users.items():
            owner = found[p]
            for n in nodes:
                r = n.inventory(user)
                if n is owner:
                    assert r.status_code == 200, r.text
                    assert "X-Lootlog-Served-By" not in r.headers
                elif "--no-forward" in n.extra_args:
                    assert r.status_code == 421, (n.name, r.status_code, r.text)
                    body = r.json()
                    assert body == {"error": "wrong_node", "partition": p,
                                    "owner": f"http://{address(owner)}",
                                    "message": body["message"]}, body
                    refused += 1
                    continue
                else:
                    assert r.status_code == 200, (n.name, r.status_code, r.text)
                    assert r.headers["X-Lootlog-Served-By"] == address(owner), r.headers
                    forwarded += 1
                assert [(i["item_type"], i["quantity"]) for i in r.json()["items"]] == [("sword", 1)]
                assert r.headers["ETag"] == '"1"'
        relayed = sum(n.metrics()['lootlog_forwarded_total{result="relayed"}'] for n in nodes[:2])
        assert relayed == forwarded, (relayed, forwarded)
        assert [n.metrics()["lootlog_group_partitions_owned"] for n in nodes] == [count // 3] * 3
        # A write that waits for the fold, sent to a node that does not own the player, is
        # answered by the owner once applied; history and guild reads go the same way.
        user, p = next(iter(users.items()))
        (other,) = [n for n in nodes[:2] if n is not found[p]][:1]
        r = other.post(f"/v1/users/{user}/purchases?wait=applied",
                       {"item_type": "potion", "quantity": 2})
        assert r.status_code == 200, r.text
        assert r.json()["outcome"] == "applied"
        assert {i["item_type"]: i["quantity"] for i in r.json()["inventory"]["items"]} == \
            {"sword": 1, "potion": 2}
        assert r.headers["X-Lootlog-Served-By"] == address(found[p])
        r = other.get(f"/v1/users/{user}/history")
        assert r.status_code == 200 and len(r.json()["events"]) == 2, r.text
        r = other.get(f"/v1/guilds/{prefix}g")   # no such guild: its owner says so
        assert r.status_code == 404 and r.json()["error"] == "not_found", r.text
        print(f"\n{len(users)} players over {count} partitions on 3 nodes of one group: every "
              f"owner answered, {forwarded} reads forwarded to the owner (Served-By checked), "
              f"{refused} answered 421 wrong_node with the owner's address by the --no-forward "
              f"node; a ?wait=applied write through a non-owner answered 200 by the owner")
    finally:
        stop_all(nodes)


class Load(ThreadedLoad):
    """Writers posting purchases through a random running node each time; keeps the event
    id of every 2xx and counts the rest."""

    def __init__(self, nodes, prefix, threads=6):
        self.nodes, self.prefix = nodes, prefix
        self.acked, self.failed = [], 0
        super().__init__(threads)

    def run(self, i):
        rng = random.Random(i)
        session = requests.Session()
        while not self.stop.is_set():
            node = rng.choice([n for n in self.nodes if n.running()])
            user = f"{self.prefix}w{i}-p{rng.randrange(50)}"
            try:
                r = session.post(f"{node.url}/v1/users/{user}/purchases",
                                 json={"item_type": "arrow", "quantity": 1}, timeout=30)
                ok = r.status_code == 202
            except requests.RequestException:
                ok = False
            with self.lock:
                if ok:
                    self.acked.append(r.json()["event_id"])
                else:
                    self.failed += 1


def test_node_sigkilled_under_load_its_partitions_move(cluster, tmp_path):
    count = cluster.partition_count()
    nodes = start_nodes(cluster, tmp_path, ["node1", "node2", "node3"], new_group())
    try:
        found = wait_owned(nodes, count, 60)
        victim = nodes[1]
        survivors = [nodes[0], nodes[2]]
        moving = sorted(p for p, n in found.items() if n is victim)
        prefix = "kill" + uuid.uuid4().hex[:6] + "-"
        probes = players_by_partition(survivors, prefix + "probe", 1, moving)
        wait_settled(nodes, TOPIC, 60)
        with Load(nodes, prefix) as load:
            time.sleep(3.0)   # load before the kill (the load is what is measured)
            victim.stop(signal.SIGKILL)
            killed = time.monotonic()
            back = {}
            while len(back) < len(probes) and time.monotonic() - killed < 60:
                for user in probes:
                    if user in back:
                        continue
                    r = survivors[len(back) % 2].inventory(user)
                    if r.status_code == 200:
                        back[user] = time.monotonic() - killed
                time.sleep(0.05)
            assert len(back) == len(probes), f"reads did not come back: {back}"
            moved = wait_owned(nodes, count, 30)
            time.sleep(2.0)   # load after the move
        assert set(moved[p] for p in moving) <= set(survivors)
        ends = wait_settled(nodes, TOPIC, 90)
        seen = topic_event_ids(cluster.bootstrap, TOPIC)
        missing = [e for e in load.acked if e not in seen]
        doubled = [e for e in load.acked if seen.get(e, 0) > 1]
        assert not missing and not doubled, (len(missing), len(doubled))
        players, items = compare_with_oracle(nodes, TOPIC, ends)
        for user in probes:   # through either survivor, forwarded or not
            for n in survivors:
                assert n.quantities(user) == {"sword": 1}, (n.name, user)
        print(f"\nnode2 (partitions {moving}) SIGKILLed under {len(load.threads)} writers: "
              f"{len(load.acked)} writes answered 202 ({load.failed} refused or cut, the "
              f"killed node's), 0 missing, 0 doubled in the topic; its partitions moved to "
              f"{sorted({moved[p].name for p in moving})}; its players' reads answered again "
              f"through the survivors after {min(back.values()):.1f}-{max(back.values()):.1f} s "
              f"(session timeout 6 s); final state equals the oracle ({players} players, "
              f"{items} items)")
    finally:
        stop_all(nodes)


def admin(node, method="GET"):
    return requests.request(method, node.url + "/admin/snapshots",
                            headers={"Authorization": f"Bearer {TOKEN}"}, timeout=15)


def take_snapshot(node):
    before = admin(node).json()["taken"]
    assert admin(node, "POST").status_code == 202
    wait_until(lambda: admin(node).json()["taken"] > before, 90, f"{node.name}'s snapshot",
               interval=0.2)


def test_new_node_restores_from_snapshots_and_restarted_node_catches_up(cluster, tmp_path):
    count = cluster.partition_count()
    root = "/lootlog-" + uuid.uuid4().hex[:8]
    url = f"webhdfs://127.0.0.1:{cluster.env['NN_HTTP_PORT']}{root}"
    group = new_group()
    extra = {name: ["--snapshot-url", url, "--retain", "1"] for name in ("node1", "node2", "node3")}
    env = {"LOOTLOG_ADMIN_TOKEN": TOKEN}
    first = start_nodes(cluster, tmp_path, ["node1", "node2"], group, extra, env)
    nodes = list(first)
    try:
        wait_owned(nodes, count, 60)
        prefix = "boot" + uuid.uuid4().hex[:6] + "-"
        users = players_by_partition(nodes, prefix, 3, range(count))
        wait_settled(nodes, TOPIC, 60)
        for n in nodes:   # each node snapshots the partitions it owns
            take_snapshot(n)
        for user in users:   # more after the snapshots: the new node must catch up on them
            write(nodes[0], user)
        ends = wait_settled(nodes, TOPIC, 60)

        # A node with an empty folder: what it is given comes from the snapshots.
        (third,) = start_nodes(cluster, tmp_path, ["node3"], group, extra, env)
        nodes.append(third)
        wait_owned(nodes, count, 60)
        given = third.owned()
        assert given, "the new node got no partition"
        for p, entry in given.items():
            assert entry["source"] == "snapshot" and entry["snapshot_id"], entry
            assert 0 < entry["opened_at"] <= ends[p][1], (entry, ends[p])
        ends = wait_settled(nodes, TOPIC, 60)
        folded = third.folded_since_start()
        from_snapshot = sum(ends[p][1] - e["opened_at"] for p, e in given.items())
        from_start = sum(ends[p][1] - ends[p][0] for p in given)
        assert folded == from_snapshot < from_start, (folded, from_snapshot, from_start)
        compare_with_oracle(nodes, TOPIC, ends)
        print(f"\nnew node3 got partitions {sorted(given)}, restored from snapshots "
              f"{sorted({e['snapshot_id'] for e in given.values()})} at offsets "
              f"{ {p: e['opened_at'] for p, e in given.items()} }; it folded {folded} records "
              f"(the whole log of those partitions: {from_start})")

        # (c) SIGKILL it and start it again at once on its old folder: it gets its
        # partitions back when its old membership expires, and catches up from its stores
        # (further on than the snapshots) instead of restoring.
        for user in users:
            write(nodes[0], user)
        wait_settled(nodes, TOPIC, 60)
        third.stop(signal.SIGKILL)
        at_kill = stored_offsets(third.db)
        for user in users:
            write(nodes[0], user)
        third.start(wait_ready=False)
        wait_owned(nodes, count, 60)
        again = third.owned()
        local = {p: e for p, e in again.items() if p in at_kill}
        assert local, f"node3 got none of its old partitions back: {sorted(again)} vs {sorted(at_kill)}"
        for p, e in again.items():
            if p in at_kill:
                assert e["source"] == "local" and e["opened_at"] == at_kill[p], (p, e, at_kill)
            else:
                assert e["source"] == "snapshot", (p, e)
        ends = wait_settled(nodes, TOPIC, 60)
        folded = third.folded_since_start()
        new_records = sum(ends[p][1] - e["opened_at"] for p, e in again.items())
        assert folded == new_records, (folded, new_records)
        players, items = compare_with_oracle(nodes, TOPIC, ends)
        print(f"node3 SIGKILLed and restarted on its old folder: got {sorted(again)} back, "
              f"{sorted(local)} caught up from its local stores at {at_kill} (not restored), "
              f"folding {folded} new records; state equals the oracle ({players} players, "
              f"{items} items); owners now { {p: n.name for p, n in owners(nodes).items()} }")

        # Retention in a group (--retain 1): once every node has snapshotted what it owns
        # now, the earlier snapshots go, as each partition they hold is in a newer one;
        # the newest copy of every partition stays, whoever took it.
        before = [i for i in hdfs_list(f"{root}/snapshots") if not i.startswith("_")]
        for n in nodes:
            take_snapshot(n)
        after = [i for i in hdfs_list(f"{root}/snapshots") if not i.startswith("_")]
        held = {}
        for snap in after:
            manifest = json.loads(hdfs_read(f"{root}/snapshots/{snap}/manifest.json"))
            for p in manifest["offsets"]:
                held.setdefault(int(p), []).append(snap)
        assert not set(before) & set(after), (before, after)
        assert len(after) == 3 and sorted(held) == list(range(count)) and \
            all(len(v) == 1 for v in held.values()), held
        print(f"retention (--retain 1) over 3 nodes: {len(before)} earlier snapshots deleted, "
              f"{len(after)} left, each partition in exactly one")
    finally:
        stop_all(nodes)
