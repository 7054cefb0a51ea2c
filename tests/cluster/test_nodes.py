"""Three static shards on the cluster (`--partitions 0-1`, `2-3`, `4-5`): reads go to the
owner and others answer 421 `wrong_shard` with the partition; writes land through any
node; a shard SIGKILLed and started again on its old folder catches up from its stored
offsets (issue 10, failure (c), in today's static-shard world) and how long its players
were unreadable is measured and printed."""
import signal
import time
import uuid

import requests

from conftest import stored_offsets, wait_until

from .conftest import TOPIC, compare_with_oracle, wait_settled


def write(node, user, item="sword", quantity=1):
    r = node.buy(user, item, quantity)
    assert r.status_code == 202, (node.name, r.status_code, r.text)
    return r.json()["partition"]


def owner_of(nodes, partition):
    (node,) = [n for n in nodes if n.owns(partition)]
    return node


def players_by_partition(nodes, prefix, want_per_partition, partitions=None):
    """Writes one purchase (through the nodes in turn) for new players until each wanted
    partition has want_per_partition of them; returns {user: partition}."""
    partitions = partitions or range(min(n.first for n in nodes), max(n.last for n in nodes) + 1)
    found, k = {}, 0
    while any(sum(1 for p in found.values() if p == q) < want_per_partition for q in partitions):
        user = f"{prefix}{k}"
        p = write(nodes[k % len(nodes)], user)
        if p in partitions:
            found[user] = p
        k += 1
        assert k < 5000, "the partitioner never reached some partition"
    return found


def test_reads_go_to_the_owner_and_writes_land_through_any_node(cluster, nodes):
    prefix = "sh" + uuid.uuid4().hex[:6] + "-"
    users = players_by_partition(nodes, prefix, 3)
    # Then one purchase each through every node: the answers name the same partition.
    for user, p in users.items():
        for n in nodes:
            assert write(n, user) == p
    wrong = 0
    for user, p in users.items():
        owner = owner_of(nodes, p)
        # The owner's fold has all four writes soon, whichever node took them.
        wait_until(lambda: owner.quantities(user) == {"sword": 4}, 30,
                   f"{user} (partition {p}) to hold 4 swords on {owner.name}", interval=0.1)
        for other in nodes:
            if other is owner:
                continue
            r = other.inventory(user)
            assert r.status_code == 421, (other.name, user, p, r.status_code, r.text)
            body = r.json()
            assert body["error"] == "wrong_shard" and body["partition"] == p, body
            wrong += 1
    print(f"\n{len(users)} players over {len(set(users.values()))} partitions, 4 writes each "
          f"through all 3 nodes: every owner reads 4, {wrong} reads elsewhere answered 421 "
          f"wrong_shard with the partition")
    assert set(users.values()) == set(range(6))


def test_restarted_node_catches_up_from_its_stored_offsets(cluster, nodes):
    victim = nodes[1]
    others = [nodes[0], nodes[2]]
    mine = range(victim.first, victim.last + 1)
    prefix = "rs" + uuid.uuid4().hex[:6] + "-"
    users = players_by_partition(nodes, prefix, 10, partitions=mine)
    expected = {u: 1 for u in users}
    wait_settled(nodes, TOPIC, 60)

    victim.stop(signal.SIGKILL)
    killed = time.monotonic()
    at_kill = stored_offsets(victim.db)
    assert sorted(at_kill) == list(mine) and all(o > 0 for o in at_kill.values()), at_kill

    # While it is down: its players take writes through the other two nodes, the others
    # still send its readers away, and nothing listens on its port.
    probe = next(iter(users))
    while time.monotonic() - killed < 3.0:
        for i, user in enumerate(users):
            write(others[i % 2], user)
            expected[user] += 1
    r = others[0].inventory(probe)
    assert r.status_code == 421 and r.json()["partition"] == users[probe], r.text
    try:
        victim.inventory(probe)
        raise AssertionError("the killed node still answered")
    except requests.ConnectionError:
        pass
    written_while_down = sum(expected.values()) - len(users)

    restarting = time.monotonic()
    victim.start(wait_ready=False)
    first_answer = readable = ready = None
    deadline = restarting + 60
    while time.monotonic() < deadline and not (readable and ready):
        now = time.monotonic()
        try:
            r = victim.inventory(probe)
            if r.status_code == 200 and first_answer is None:
                first_answer = now
            if readable is None and r.status_code == 200 and \
                    r.json()["items"][0]["quantity"] == expected[probe]:
                readable = now
            if ready is None and victim.ready():
                ready = now
        except requests.RequestException:
            pass
        time.sleep(0.02)
    assert readable, f"{victim.name} did not answer {probe}'s reads again within 60 s:\n" + victim.tail()
    ends = wait_settled(nodes, TOPIC, 60)
    for user, n in expected.items():
        assert victim.quantities(user) == {"sword": n}, user
    folded = victim.folded_since_start()
    new_records = sum(ends[p][1] - at_kill[p] for p in mine)
    print(f"\n{victim.name} (partitions {victim.first}-{victim.last}) SIGKILLed with stored "
          f"offsets {at_kill} ({sum(at_kill.values())} records folded); {written_while_down} "
          f"writes for its players through the other nodes while it was down; restarted on "
          f"its old folder after {restarting - killed:.1f} s, it folded {folded} records "
          f"(its partitions grew by {new_records} since the kill)\n"
          f"its players unreadable for {readable - killed:.2f} s (kill to a read with every "
          f"write); from the restart: first 200 after {(first_answer or readable) - restarting:.2f} s, "
          f"reads complete after {readable - restarting:.2f} s, /readyz after "
          f"{(ready or float('nan')) - restarting:.2f} s")
    # From its stored offsets (all > 0, checked above), not from the start: a refold would
    # be sum(at_kill) records more.
    assert folded == new_records, \
        f"after the restart it folded {folded} records; only {new_records} were new " \
        f"({sum(at_kill.values())} were folded before the kill)"
    compare_with_oracle(nodes, TOPIC, ends)
