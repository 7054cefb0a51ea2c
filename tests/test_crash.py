"""The headline test of the fold: a stream of generated events, the fold killed with
SIGKILL at many random instants and restarted, and at the end every table equal to an
independent oracle — a fold written here in Python, fed from the topic by
confluent-kafka, not by lootlog's code."""
import json
import os
import random
import signal
import subprocess
import threading
import time
import uuid

from confluent_kafka import Consumer, TopicPartition

from conftest import BIN, BROKERS, create_topic, query_stores, stored_offsets, wait_until

EVENTS = int(os.environ.get("LOOTLOG_CRASH_EVENTS", "200000"))
KILLS = int(os.environ.get("LOOTLOG_CRASH_KILLS", "20"))


def end_offsets(topic):
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": "oracle-" + uuid.uuid4().hex})
    md = c.list_topics(topic, timeout=10)
    ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
            for p in md.topics[topic].partitions}
    c.close()
    return ends  # partition -> (low, high)


def oracle_fold(topic, prefix, ends):
    """Folds the records of players named prefix* from the topic, by design.md's rules
    (guild capacity is unbounded here: the serve under test runs with a huge one)."""
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": "oracle-" + uuid.uuid4().hex,
                  "enable.auto.commit": False, "enable.partition.eof": True})
    c.assign([TopicPartition(topic, p, low) for p, (low, high) in ends.items() if high > low])
    remaining = {p for p, (low, high) in ends.items() if high > low}
    seen, version, guild, inventory = set(), {}, {}, {}
    while remaining:
        msg = c.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == -191:  # partition EOF
                remaining.discard(msg.partition())
            continue
        if msg.offset() + 1 >= ends[msg.partition()][1]:
            remaining.discard(msg.partition())
        key = (msg.key() or b"").decode()
        if not key.startswith(prefix):
            continue
        ev = json.loads(msg.value())
        user = ev["user_id"]
        assert user == key
        if (ev["event_id"], user) in seen:
            continue
        seen.add((ev["event_id"], user))
        kind = ev["event_type"]
        if kind == "default":
            continue
        lines = {}
        for line in ev.get("items") or []:
            lines[line["item_type"]] = lines.get(line["item_type"], 0) + line["quantity"]
        applied = True
        if kind in ("purchase_item", "purchase_sword"):
            for item, q in lines.items():
                inventory[(user, item)] = inventory.get((user, item), 0) + q
        elif kind == "consume_item":
            if all(inventory.get((user, item), 0) >= q for item, q in lines.items()):
                for item, q in lines.items():
                    inventory[(user, item)] -= q
            else:
                applied = False
        elif kind == "join_guild":
            current = guild.get(user)
            applied = current is None or current == ev["guild_id"]
            if current is None:
                guild[user] = ev["guild_id"]
        elif kind == "leave_guild":
            applied = guild.get(user) is not None
            guild.pop(user, None)
        if applied:
            version[user] = version.get(user, 0) + 1
    c.close()
    players = {u: (v, guild.get(u)) for u, v in version.items()}
    items = {k: q for k, q in inventory.items() if q > 0}
    members = {(g, u) for u, g in guild.items()}
    return players, items, members


def lootlog_tables(db, prefix):
    """Every partition store's tables, merged (a player lives in one store only)."""
    like = prefix + "%"
    players = {u: (v, g) for u, v, g in query_stores(
        db, "SELECT user_id, version, guild_id FROM players WHERE version > 0 AND user_id LIKE ?",
        (like,))}
    items = {(u, i): q for u, i, q in query_stores(
        db, "SELECT p.user_id, i.item_type, i.quantity FROM inventory i JOIN players p "
            "ON p.player_key = i.player_key WHERE p.user_id LIKE ?", (like,))}
    members = set(query_stores(
        db, "SELECT guild_id, user_id FROM guild_members WHERE user_id LIKE ?", (like,)))
    counts = {}
    for g, n in query_stores(db, "SELECT guild_id, member_count FROM guilds WHERE guild_id LIKE ?",
                             (like,)):
        counts[g] = counts.get(g, 0) + n
    # An outcome recorded twice for one record would mean a record applied twice.
    twice = sum(n for (n,) in query_stores(
        db, "SELECT count(*) FROM (SELECT offset FROM player_events GROUP BY offset "
            "HAVING count(*) > 1)"))
    offsets = stored_offsets(db)
    return players, items, members, counts, twice, offsets


def test_sigkill_at_random_instants_loses_nothing_and_applies_nothing_twice(server_factory,
                                                                            tmp_path):
    prefix = "crash" + uuid.uuid4().hex[:6] + "-"
    # A topic of its own: 200k events in the shared topic would make every later test's
    # fresh database fold them all before it is ready.
    topic = create_topic("crash-" + uuid.uuid4().hex[:8])
    db = str(tmp_path / "crash-state")
    # The stream lasts about 30 s, so that the kills land while events still arrive.
    rate = max(1000, min(25000, EVENTS // 30))
    gen = subprocess.Popen([BIN, "gen", "--brokers", BROKERS, "--topic", topic, "--rate", str(rate),
                            "--users", "3000", "--duration", str(EVENTS / rate), "--seed", "42",
                            "--user-prefix", prefix], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    rng = random.Random(2026)
    kills = []

    def folded():
        return stored_offsets(db)

    for i in range(KILLS):
        s = server_factory(name=f"crash{i}", db=db, topic=topic,
                           extra_args=["--guild-capacity", "1000000000"])
        before = sum(folded().values())
        s.start(wait_ready=False)
        # Kill mid-stream: once this life has committed something, at a random instant.
        wait_until(lambda: sum(folded().values()) > before or gen.poll() is not None, 60,
                   "the fold to commit")
        time.sleep(rng.uniform(0.0, 0.3))
        s.stop(signal.SIGKILL)
        kills.append(folded())
    gen_out, _ = gen.communicate(timeout=300)
    assert gen.returncode == 0, gen_out
    ends = end_offsets(topic)
    final = server_factory(name="crash-final", db=db, topic=topic,
                           extra_args=["--guild-capacity", "1000000000"]).start(wait_ready=False)

    def caught_up():
        got = stored_offsets(db)
        return all(got.get(p, low) >= high for p, (low, high) in ends.items())

    wait_until(caught_up, 180, "the fold to reach the end of the topic", interval=0.2)
    final.stop()
    print(f"\ncrash test: {len(kills)} SIGKILLs; stored offsets at each kill:")
    for i, at in enumerate(kills):
        print(f"  kill {i + 1}: {sum(at.values())} records folded, {at}")
    print(gen_out.strip().splitlines()[-1])

    players, items, members, counts, twice, offsets = lootlog_tables(db, prefix)
    o_players, o_items, o_members = oracle_fold(topic, prefix, ends)
    assert len(kills) >= 20 or KILLS < 20
    assert len(set(tuple(sorted(k.items())) for k in kills)) > KILLS // 2, \
        "kills should land at many different points of the stream"
    assert twice == 0
    assert len(o_players) > 1000
    assert players == o_players
    assert items == o_items
    assert members == o_members
    expected_counts = {}
    for g, _ in o_members:
        expected_counts[g] = expected_counts.get(g, 0) + 1
    assert counts == expected_counts
