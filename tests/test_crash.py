"""The headline test of the fold: a stream of generated events, the fold killed with
SIGKILL at many random instants and restarted, and at the end every table equal to an
independent oracle — a fold written here in Python from the documented rules
(tests/oracle.py), fed from the topic by confluent-kafka, not by lootlog's code. Guilds
have the default capacity (100), so joins are granted and refused by the guilds'
partitions while the kills land, between the steps of the exchanges too."""
import json
import os
import random
import re
import signal
import subprocess
import threading
import time
import uuid

from conftest import (BIN, BROKERS, OVERLAPPING_BLOCKS, create_topic, query_stores,
                      stored_offsets, wait_quiescent, wait_until)
from oracle import Oracle, fold_topic

EVENTS = int(os.environ.get("LOOTLOG_CRASH_EVENTS", "200000"))
KILLS = int(os.environ.get("LOOTLOG_CRASH_KILLS", "20"))


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
    pending = query_stores(
        db, "SELECT user_id FROM players WHERE pending_guild_id IS NOT NULL AND user_id LIKE ?",
        (like,))
    counts = {}
    for g, n in query_stores(db, "SELECT guild_id, member_count FROM guilds WHERE guild_id LIKE ?",
                             (like,)):
        counts[g] = counts.get(g, 0) + n
    # An outcome recorded twice for one record would mean a record applied twice. Within
    # a history block offsets only go up (the decoder refuses anything else), so two
    # outcomes of one offset would be two blocks whose ranges overlap.
    twice = sum(n for (n,) in query_stores(db, OVERLAPPING_BLOCKS))
    offsets = stored_offsets(db)
    return players, items, members, counts, twice, offsets, pending


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
        s = server_factory(name=f"crash{i}", db=db, topic=topic)
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
    final = server_factory(name="crash-final", db=db, topic=topic).start(wait_ready=False)
    ends = wait_quiescent(db, topic, 180)
    final.stop()
    print(f"\ncrash test: {len(kills)} SIGKILLs; stored offsets at each kill:")
    for i, at in enumerate(kills):
        print(f"  kill {i + 1}: {sum(at.values())} records folded, {at}")
    print(gen_out.strip().splitlines()[-1])

    players, items, members, counts, twice, offsets, pending = lootlog_tables(db, prefix)
    oracle = fold_topic(topic, ends, Oracle(capacity=100, wanted=lambda u: u.startswith(prefix)))
    o_players, o_items, o_members = oracle.players(), oracle.items(), oracle.seats()
    refused = sum(1 for o in oracle.outcomes.values() if o == ("rejected", "guild_full"))
    print(f"guild seats: {len(o_members)}, joins refused guild_full: {refused}")
    assert len(kills) >= 20 or KILLS < 20
    assert len(set(tuple(sorted(k.items())) for k in kills)) > KILLS // 2, \
        "kills should land at many different points of the stream"
    assert twice == 0
    assert len(o_players) > 1000
    assert players == o_players
    assert items == o_items
    assert members == o_members
    assert pending == [] and not oracle.pending
    # Every player's guild agrees with the guild's member list, and no guild is over.
    assert {(g, u) for u, (_, g) in players.items() if g} == members
    assert max(counts.values()) <= 100
    expected_counts = {}
    for g, _ in o_members:
        expected_counts[g] = expected_counts.get(g, 0) + 1
    assert counts == expected_counts


def metric(server, name):
    for line in server.get("/metrics").text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


def test_fold_threads_change_speed_mid_stream_and_lose_nothing(server_factory, tmp_path):
    """A fold thread catching up a backlog hands its partitions to the worker's live
    thread once they keep up, and takes them back when they fall behind again (more than
    10,000 records). serve is stopped (SIGSTOP) while a burst goes to the log, three times,
    with a steady stream going on all along, so the hand-overs happen while records keep
    coming; at the end every table equals the oracle's and no record was applied twice."""
    prefix = "speed" + uuid.uuid4().hex[:6] + "-"
    topic = create_topic("speed-" + uuid.uuid4().hex[:8])
    db = str(tmp_path / "speed-state")
    serve = server_factory(name="speed", db=db, topic=topic).start()
    steady = subprocess.Popen([BIN, "gen", "--brokers", BROKERS, "--topic", topic,
                               "--rate", "2000", "--users", "3000", "--duration", "600",
                               "--seed", "5", "--user-prefix", prefix],
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    caught_up_seen = []
    try:
        for burst in range(3):
            changes = metric(serve, "lootlog_fold_speed_changes_total")
            serve.proc.send_signal(signal.SIGSTOP)
            try:
                # 150k records: 25k a partition on average, past the 10,000 of catching up.
                sent, runs = 0, 0
                while sent < 150_000:
                    gen = subprocess.run([BIN, "gen", "--brokers", BROKERS, "--topic", topic,
                                          "--rate", "100000", "--users", "3000",
                                          "--duration", "1.5", "--seed", str(100 + burst * 10 + runs),
                                          "--user-prefix", prefix],
                                         capture_output=True, text=True, timeout=300)
                    m = re.search(r"ok (\d+), failed 0", gen.stdout)
                    assert gen.returncode == 0 and m, gen.stdout + gen.stderr
                    sent += int(m.group(1))
                    runs += 1
            finally:
                serve.proc.send_signal(signal.SIGCONT)
            wait_until(lambda: metric(serve, "lootlog_fold_threads_catching_up") > 0, 30,
                       "a fold thread catching up the burst")
            caught_up_seen.append(metric(serve, "lootlog_fold_threads_catching_up"))
            wait_until(lambda: metric(serve, "lootlog_fold_threads_catching_up") == 0, 300,
                       "every fold thread keeping up again")
            assert metric(serve, "lootlog_fold_speed_changes_total") >= changes + 2
        assert steady.poll() is None, "the steady stream should still be going"
    finally:
        steady.terminate()
        steady_out, _ = steady.communicate(timeout=60)
    ends = wait_quiescent(db, topic, 180)
    serve.stop()
    print(f"\nfold threads catching up after each burst: {caught_up_seen}")

    players, items, members, counts, twice, offsets, pending = lootlog_tables(db, prefix)
    oracle = fold_topic(topic, ends, Oracle(capacity=100, wanted=lambda u: u.startswith(prefix)))
    assert twice == 0
    assert len(players) > 1000
    assert players == oracle.players()
    assert items == oracle.items()
    assert members == oracle.seats()
    assert pending == [] and not oracle.pending
