"""The fold engine on the real stack: dead letters, replay slices, shadow verify,
migrations."""
import json
import os
import re
import sqlite3
import subprocess
import time
import uuid

from conftest import (BIN, BROKERS, TOPIC, Server, create_topic, free_port, held_in,
                      query_stores, store_files, stored_offsets, wait_quiescent, wait_until)
from oracle import Oracle, end_offsets, fold_topic


def produce_raw(partition, records):
    """Produces (key, value) pairs with an independent Kafka client (confluent-kafka),
    bypassing lootlog: to one partition, or by key with Kafka's murmur2 (partition None)
    as lootlog's producer does. A value of None is sent as a null message. Returns the
    partitions the records landed on."""
    from confluent_kafka import Producer
    producer = Producer({"bootstrap.servers": BROKERS, "message.max.bytes": 2000000,
                         "partitioner": "murmur2_random"})
    errors, landed = [], []

    def delivered(err, msg):
        if err:
            errors.append(err)
        else:
            landed.append(msg.partition())
    for key, value in records:
        extra = {} if partition is None else {"partition": partition}
        producer.produce(TOPIC, key=key.encode(), value=value, on_delivery=delivered, **extra)
    assert producer.flush(30) == 0
    assert not errors, errors
    return landed


def produce_to(topic, key, value):
    from confluent_kafka import Producer
    producer = Producer({"bootstrap.servers": BROKERS, "partitioner": "murmur2_random"})
    producer.produce(topic, key=key.encode(), value=value)
    assert producer.flush(30) == 0


def valid_event(user, event_id=None, item="gem", quantity=1):
    return json.dumps({"v": 1, "event_id": event_id or uuid.uuid4().hex, "event_type": "purchase_item",
                       "user_id": user, "ts": "2026-11-29T10:00:00.000Z",
                       "items": [{"item_type": item, "quantity": quantity}], "guild_id": None,
                       "expected_version": None, "metadata": {}}).encode()


def test_poison_messages_are_dead_lettered_and_the_fold_goes_on(server, user):
    mark = uuid.uuid4().hex
    bad = [
        (f"{user}", b"{not json " + mark.encode()),
        (f"{user}", json.dumps({"v": 1, "event_id": mark, "event_type": "purchase_item",
                                "user_id": user, "ts": "2026-11-29T10:00:00.000Z",
                                "items": "lots"}).encode()),
        (f"{user}", json.dumps({"v": 7, "event_id": mark, "event_type": "purchase_item",
                                "user_id": user, "ts": "t"}).encode()),
        (f"someone-else-{mark}", valid_event(user)),
        (f"empty-{mark}", None),
        (f"{user}", b'{"pad":"' + mark.encode() + b"x" * 70000 + b'"}'),
    ]
    # All on the player's partition (where its store is), misfits and all.
    (partition,) = produce_raw(None, bad[:1])
    produce_raw(partition, bad[1:])
    produce_raw(partition, [(user, valid_event(user, quantity=4))])
    wait_until(lambda: server.quantities(user) == {"gem": 4}, 30, "the valid event after the poison")
    con = sqlite3.connect(store_files(server.db)[partition])
    rows = con.execute("SELECT ?, offset, reason, msg_key, length(payload) FROM dead_letters "
                       "WHERE CAST(msg_key AS TEXT) IN (?, ?, ?) ORDER BY offset",
                       (partition, user, f"someone-else-{mark}", f"empty-{mark}")).fetchall()
    con.close()
    reasons = [r[2] for r in rows]
    assert len(rows) == 6, rows
    assert all(r[0] == partition for r in rows)
    assert "invalid JSON" in reasons[0]
    assert "items" in reasons[1]
    assert "unknown event version 7" in reasons[2]
    assert "key" in reasons[3]
    assert "empty" in reasons[4]
    assert "oversize" in reasons[5]
    assert rows[5][4] == 4096  # a bounded copy of the payload is kept
    assert server.get("/readyz").status_code == 200


def run(*args, check=True):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=300, check=check)


def test_a_full_cart_of_long_item_types_keeps_its_history(server, user):
    """50 lines of 64-character item types (the largest cart a record can carry; such
    types can only come straight from Kafka, since HTTP checks the catalog) are folded
    and shown whole in the player's history."""
    items = [{"item_type": f"{i:02d}" + "x" * 62, "quantity": 1_000_000} for i in range(50)]
    record = json.dumps({"v": 1, "event_id": uuid.uuid4().hex, "event_type": "purchase_item",
                         "user_id": user, "ts": "2026-11-29T10:00:00.000Z", "items": items,
                         "guild_id": None, "expected_version": None, "metadata": {}}).encode()
    produce_raw(None, [(user, record)])
    wait_until(lambda: len(server.quantities(user)) == 50, 30, "the cart to be folded")
    history = server.get(f"/v1/users/{user}/history").json()["events"]
    assert len(history) == 1
    assert history[0]["items"] == [{"item_type": i["item_type"], "quantity": 1_000_000}
                                   for i in items]


def test_replay_slices_and_verify(server, user, tmp_path):
    tokens = []
    for q in (1, 2, 3, 4):
        r = server.buy(user, "potion", q)
        assert r.status_code == 202
        tokens.append(r.json())
    assert server.quantities(user, after=tokens[-1]["token"]) == {"potion": 10}
    partition = tokens[0]["partition"]

    # Until the third purchase's offset: the state before it (1 + 2).
    until = tmp_path / "until.db"
    out = run("replay", "--brokers", BROKERS, "--db", str(until),
              "--until-offset", str(tokens[2]["offset"]))
    assert "replay:" in out.stdout
    held = held_in(until, user, "potion")
    # Other partitions' offsets are cut at the same number, this one exactly so.
    assert held == (3,)

    # From the second purchase's offset on: only 2 + 3 + 4 are folded.
    since = tmp_path / "since.db"
    run("replay", "--brokers", BROKERS, "--db", str(since), "--from-offset", str(tokens[1]["offset"]))
    held = held_in(since, user, "potion")
    assert held == (9,)
    # Replay builds its stores without a WAL and hands them over in WAL mode, synced, with
    # no journal, WAL or shared-memory file left beside them.
    leftovers = [f for f in os.listdir(since) if f.endswith(("-journal", "-wal", "-shm"))]
    assert leftovers == [], leftovers
    for path in store_files(str(since)).values():
        con = sqlite3.connect(path)
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        con.close()

    # --verify against something that holds no stores is an error, not "0 differ".
    nowhere = run("replay", "--brokers", BROKERS, "--db", str(tmp_path / "v"), "--verify",
                  str(tmp_path / "nowhere"), check=False)
    assert nowhere.returncode != 0 and "holds no partition stores" in nowhere.stderr

    # A replay into a file that already holds state is refused.
    again = run("replay", "--brokers", BROKERS, "--db", str(since), check=False)
    assert again.returncode != 0 and "new folder" in again.stderr

    # Shadow rebuild: the rebuilt state equals the live one at the live offsets.
    shadow = tmp_path / "shadow.db"
    ok = run("replay", "--brokers", BROKERS, "--db", str(shadow), "--verify", server.db)
    assert ", 0 differ" in ok.stdout, ok.stdout

    # A live file that drifted (as a non-deterministic fold would make it) is caught.
    server.stop()
    con = sqlite3.connect(store_files(server.db)[partition])
    con.execute("UPDATE inventory SET quantity = quantity + 1 WHERE player_key = "
                "(SELECT player_key FROM players WHERE user_id = ?)", (user,))
    con.commit()
    con.close()
    bad = run("replay", "--brokers", BROKERS, "--db", str(tmp_path / "shadow2.db"),
              "--verify", server.db, check=False)
    assert bad.returncode == 1
    assert f"differs: {user} (state)" in bad.stdout
    assert ", 1 differ" in bad.stdout


def test_replay_until_time(server, user, tmp_path):
    first = server.buy(user, "scroll", 5).json()
    assert server.quantities(user, after=first["token"]) == {"scroll": 5}
    # The broker stamps records at append; wait until the clock has moved past the first.
    cut = time.time()
    wait_until(lambda: time.time() - cut > 0.05, 1, "the clock")
    cut_iso = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(cut)) + ".%03dZ" % int((cut % 1) * 1000)
    second = server.buy(user, "scroll", 7).json()
    assert server.quantities(user, after=second["token"]) == {"scroll": 12}
    db = tmp_path / "yesterday.db"
    run("replay", "--brokers", BROKERS, "--db", str(db), "--until-time", cut_iso)
    held = held_in(db, user)
    assert held == (5,)
    # And from that instant on: only the second purchase.
    since = tmp_path / "since-time.db"
    run("replay", "--brokers", BROKERS, "--db", str(since), "--from-time", cut_iso)
    held = held_in(since, user)
    assert held == (7,)


def test_a_killed_replay_leaves_a_folder_nothing_opens(tmp_path):
    """A replay writes its new folder without a journal on disk and keeps changed players
    in memory past its commits (write-back), so a replay killed halfway leaves stores that
    may be torn and whose tables lag their offsets. Each is marked unfinished from its
    start: serve refuses the folder, saying why, where it would have folded on from a
    wrong state. A replay that ends clears the marks, and serve takes its folder."""
    topic = create_topic("killed-" + uuid.uuid4().hex[:8], partitions=1)
    gen = run("gen", "--brokers", BROKERS, "--topic", topic, "--rate", "100000", "--users",
              "5000", "--duration", "2", "--seed", "3", check=False)
    # (what the topic holds counts, whatever gen's report says of its last sends)
    ends = end_offsets(topic)
    sent = sum(high - low for low, high in ends.values())
    assert sent >= 20_000, gen.stdout + gen.stderr
    folder = tmp_path / "killed"
    # Small batches: many commits, so the kill lands after some of them and before the end.
    replay = subprocess.Popen([BIN, "replay", "--brokers", BROKERS, "--topic", topic, "--db",
                               str(folder), "--batch-events", "100", "--fold-threads", "1"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    store = folder / "p0.db"
    wait_until(lambda: replay.poll() is not None or
               (store.exists() and store.stat().st_size > 512 * 1024), 120,
               "the replay's first commits")
    ended = replay.poll() is not None
    replay.kill()
    out, err = replay.communicate()
    assert not ended, f"the replay ended before the kill: {out.decode()} {err.decode()[-2000:]}"
    served = subprocess.run([BIN, "serve", "--brokers", BROKERS, "--topic", topic, "--db",
                             str(folder), "--http", f"127.0.0.1:{free_port()}"],
                            capture_output=True, text=True, timeout=120)
    assert served.returncode != 0
    assert "left unfinished by a replay" in served.stderr, served.stderr[-2000:]
    again = run("replay", "--brokers", BROKERS, "--topic", topic, "--db", str(folder), check=False)
    assert again.returncode != 0

    # A replay that ends: no mark left, and every player written (the flush), equal to the
    # independent oracle's fold of the same records.
    whole = tmp_path / "whole"
    done = run("replay", "--brokers", BROKERS, "--topic", topic, "--db", str(whole),
               "--batch-events", "100")
    assert f"replay: {sent} events" in done.stdout, done.stdout
    assert not list(whole.glob("*unfinished*")), list(whole.iterdir())
    assert list(folder.glob("p*.db-unfinished")), list(folder.iterdir())
    oracle = fold_topic(topic, ends, Oracle(capacity=100))
    players = {u: (v, g) for u, v, g in query_stores(
        str(whole), "SELECT user_id, version, guild_id FROM players WHERE version > 0")}
    items = {(u, i): q for u, i, q in query_stores(
        str(whole), "SELECT p.user_id, i.item_type, i.quantity FROM inventory i "
                    "JOIN players p ON p.player_key = i.player_key")}
    pending = {u for (u,) in query_stores(
        str(whole), "SELECT user_id FROM players WHERE pending_guild_id IS NOT NULL")}
    assert len(players) > 1000
    assert players == oracle.players()
    assert items == oracle.items()
    assert pending == set(oracle.pending)
    # and serve takes the folder
    server = Server(tmp_path, name="whole", db=str(whole), topic=topic).start()
    server.stop()


def test_migrations_upgrade_refuse_and_roll_back(tmp_path):
    db = str(tmp_path / "old.db")
    assert "0 -> 1" in run("migrate", "--db", db, "--to", "1").stdout
    con = sqlite3.connect(db)
    con.execute("INSERT INTO players (user_id, version, guild_id, partition, updated_ts) "
                "VALUES ('old-timer', 3, 'owls', 2, '2026-01-01T00:00:00.000Z')")
    con.execute("INSERT INTO inventory VALUES ('old-timer', 'sword', 9)")
    con.commit()
    con.close()
    assert "1 -> 3" in run("migrate", "--db", db, "--to", "3").stdout
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone() == (3,)
    assert not con.execute("SELECT 1 FROM sqlite_master WHERE name = 'events_by_type'").fetchall()
    assert con.execute("SELECT version, guild_id, created_ts FROM players").fetchall() == \
        [(3, "owls", "2026-01-01T00:00:00.000Z")]
    assert con.execute("SELECT * FROM inventory").fetchall() == [("old-timer", "sword", 9)]
    con.close()

    # The per-partition layout (0004) refuses a file that holds single-file state, and
    # names the way over (a replay); the file is left as it was.
    refused = run("migrate", "--db", db, check=False)
    assert refused.returncode != 0 and "old_layout_rows_rebuild_with_replay" in refused.stderr
    con = sqlite3.connect(db)
    assert con.execute("PRAGMA user_version").fetchone() == (3,)
    serve = subprocess.run([BIN, "serve", "--db", db, "--brokers", BROKERS, "--http", "127.0.0.1:0"],
                           capture_output=True, text=True, timeout=60)
    assert serve.returncode != 0 and "replay" in serve.stderr
    fresh = str(tmp_path / "fresh")
    os.mkdir(fresh)
    assert "0 -> 7" in run("migrate", "--db", fresh + "/p0.db").stdout
    assert "schema version 7 -> 7" in run("migrate", "--db", fresh).stdout

    # Guilds decided in the log (0005): a store holding guild rows of the earlier rule is
    # refused and left as it was; a store without any is carried over.
    guilds_kept = str(tmp_path / "p1.db")
    assert "0 -> 4" in run("migrate", "--db", guilds_kept, "--to", "4").stdout
    old = sqlite3.connect(guilds_kept)
    old.execute("INSERT INTO guild_members VALUES ('owls', 'old-timer', '2026-01-01T00:00:00.000Z')")
    old.commit()
    old.close()
    refused = run("migrate", "--db", guilds_kept, check=False)
    assert refused.returncode != 0 and "old_guild_rows_rebuild_with_replay" in refused.stderr
    old = sqlite3.connect(guilds_kept)
    assert old.execute("PRAGMA user_version").fetchone() == (4,)
    old.close()
    no_guilds = str(tmp_path / "p2.db")
    run("migrate", "--db", no_guilds, "--to", "4")
    old = sqlite3.connect(no_guilds)
    old.execute("INSERT INTO players (player_key, user_id, version) VALUES (1, 'old-timer', 3)")
    old.commit()
    old.close()
    assert "4 -> 7" in run("migrate", "--db", no_guilds).stdout
    old = sqlite3.connect(no_guilds)
    assert old.execute("SELECT user_id, version, pending_guild_id FROM players").fetchall() == \
        [("old-timer", 3, None)]
    old.close()

    # A database from a newer lootlog is refused and left alone.
    con.execute("PRAGMA user_version = 99")
    con.commit()
    con.close()
    newer = run("migrate", "--db", db, check=False)
    assert newer.returncode != 0 and "newer than this lootlog" in newer.stderr

    # A failing migration leaves the file exactly as it was.
    broken = str(tmp_path / "broken.db")
    run("migrate", "--db", broken, "--to", "1")
    con = sqlite3.connect(broken)
    con.execute("INSERT INTO inventory VALUES ('keeper', 'gem', 1)")
    con.execute("CREATE TABLE events_by_type (x)")  # collides with 0002's index name
    con.commit()
    con.close()
    before = open(broken, "rb").read()
    failed = run("migrate", "--db", broken, check=False)
    assert failed.returncode != 0 and "0002" in failed.stderr
    con = sqlite3.connect(broken)
    assert con.execute("PRAGMA user_version").fetchone() == (1,)
    assert "created_ts" not in [r[1] for r in con.execute("PRAGMA table_info(players)")]
    assert con.execute("SELECT * FROM inventory").fetchall() == [("keeper", "gem", 1)]
    con.close()
    assert open(broken, "rb").read() == before
    os.unlink(broken)


def fnv1a_32(text):
    """The 32-bit FNV-1a hash lootlog keys its dedupe memory by (store_event_id_hash)."""
    h = 0x811c9dc5
    for byte in text.encode():
        h = ((h ^ byte) * 0x01000193) & 0xffffffff
    return h


def test_migrations_0006_0007_pack_history_and_the_player_index(tmp_path, server_factory):
    """A store of schema 5 with one history row and one player_events row per event is
    carried over in place: every row is packed into history_blocks and player_index, the
    old tables are gone, and serve answers the player's history and the events by id
    from the blocks with every field as it was."""
    topic = create_topic("mig6-" + uuid.uuid4().hex[:8], partitions=1)  # every user on p0
    folder = tmp_path / "mig6"
    folder.mkdir()
    store = str(folder / "p0.db")
    assert "0 -> 5" in run("migrate", "--db", store, "--to", "5").stdout
    user = "mig6-" + uuid.uuid4().hex[:8]
    ms = 1796026440123 - 86_400_000  # 2026-11-29T08:14:00.123Z
    special = [  # offset, event id, type, outcome, reason, ts, items, guild_id
        (0, str(uuid.uuid4()), 1, 0, None, ms, "sword:1", None),
        (1, "legacy-id-one", 3, 1, "insufficient_quantity", "2026-11-29T08:14:00Z",
         "arrow:20", None),
        (2, str(uuid.uuid4()).upper(), 4, 4, None, ms + 1, None, "owls"),
    ]
    bulk = [(o, str(uuid.uuid4()), 2, 0, None, ms + o, f"potion:{o}", None)
            for o in range(3, 600)]
    rows = special + bulk
    con = sqlite3.connect(store)
    con.execute("INSERT INTO players (player_key, user_id, version, created_ts, updated_ts) "
                "VALUES (1, ?, 598, '2026-11-29T08:14:00.123Z', '2026-11-29T08:14:00.123Z')",
                (user,))
    for offset, event_id, etype, outcome, reason, ts, items, guild in rows:
        stored_id = uuid.UUID(event_id).bytes if event_id == event_id.lower() and \
            len(event_id) == 36 else event_id
        con.execute("INSERT INTO history VALUES (?, 1, ?, ?, ?, ?, ?, ?, ?)",
                    (offset, stored_id, etype, outcome, reason, ts, items, guild))
        con.execute("INSERT INTO player_events VALUES (1, ?, ?)", (fnv1a_32(event_id), offset))
    con.commit()
    con.close()

    assert "5 -> 7" in run("migrate", "--db", str(folder)).stdout
    con = sqlite3.connect(store)
    for old in ("history", "player_events"):
        assert not con.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (old,)).fetchall()
    index = con.execute("SELECT player_key, first_offset, length(ids) FROM player_index "
                        "ORDER BY first_offset").fetchall()
    blocks = con.execute("SELECT first_offset, last_offset FROM history_blocks "
                         "ORDER BY last_offset").fetchall()
    con.close()
    assert len(blocks) > 1 and blocks[0][0] == 0 and blocks[-1][1] == 599
    # 600 pairs of one player: two rows of at most 512 pairs, from offsets 0 and 512.
    assert [(k, first) for k, first, _ in index] == [(1, 0), (1, 512)]
    assert all(a[1] < b[0] for a, b in zip(blocks, blocks[1:]))  # in order, no overlap

    s = server_factory(name="mig6", db=str(folder), topic=topic).start()
    names = {1: "purchase_sword", 2: "purchase_item", 3: "consume_item", 4: "join_guild"}
    outcomes = {0: "applied", 1: "rejected", 4: "pending"}

    def as_served(row):
        offset, event_id, etype, outcome, reason, ts, items, guild = row
        return {"event_id": event_id, "event_type": names[etype], "outcome": outcomes[outcome],
                "reason": reason, "offset": offset, "partition": 0, "guild_id": guild,
                "ts": "2026-11-29T08:14:00.%03dZ" % (123 + ts - ms) if isinstance(ts, int) else ts}

    served, cursor = [], None
    while True:
        params = {"limit": "120"}
        if cursor:
            params["cursor"] = cursor
        r = s.get(f"/v1/users/{user}/history", params=params)
        assert r.status_code == 200, r.text
        served += r.json()["events"]
        cursor = r.json().get("next_cursor")
        if not cursor:
            break
    assert [e["offset"] for e in served] == list(range(599, -1, -1))
    by_offset = {e["offset"]: e for e in served}
    for row in rows:
        e = by_offset[row[0]]
        assert {k: e.get(k) for k in as_served(row)} == as_served(row)
        lines = [ln.split(":") for ln in row[6].split(",")] if row[6] else []
        assert e["items"] == [{"item_type": t, "quantity": int(q)} for t, q in lines]
    # Events by id: through the player's dedupe index, and by a scan of every block.
    for offset, event_id, *_ in (special[0], special[1], special[2], bulk[-1]):
        for params in ({"user_id": user}, {}):
            r = s.get(f"/v1/events/{event_id}", params=params)
            assert r.status_code == 200, (event_id, params, r.text)
            assert r.json()["offset"] == offset and r.json()["partition"] == 0
    assert s.get(f"/v1/events/{uuid.uuid4()}", params={"user_id": user}).status_code == 404


def test_shard_folds_its_partitions_and_redirects_the_rest(server_factory):
    shard = server_factory(name="shard", extra_args=["--partitions", "0-2"]).start()
    placed = {}
    for i in range(24):
        u = f"shard-{uuid.uuid4().hex[:8]}-{i}"
        ack = shard.buy(u, "bow", 1).json()
        placed[u] = ack
    mine = [u for u, a in placed.items() if a["partition"] <= 2]
    theirs = [u for u, a in placed.items() if a["partition"] > 2]
    assert mine and theirs
    for u in mine:
        assert shard.quantities(u, after=placed[u]["token"]) == {"bow": 1}
    for u in theirs:
        r = shard.inventory(u)
        assert r.status_code == 421
        body = r.json()
        assert body["error"] == "wrong_shard"
        # The shard computes the same partition as the producer placed the event on.
        assert body["partition"] == placed[u]["partition"]
    as_of = shard.inventory(mine[0]).json()["as_of"]
    assert set(as_of) <= {"0", "1", "2"}


def test_swap_under_load_loses_nothing(server_factory, tmp_path):
    """replay --swap hands a rebuilt file to a running serve while clients keep writing
    and reading: no request fails, no event is lost across the switch."""
    import threading
    token = "swap-" + uuid.uuid4().hex
    live = server_factory(name="live", env={"LOOTLOG_ADMIN_TOKEN": token}).start()
    users = [f"swap-{uuid.uuid4().hex[:8]}-{i}" for i in range(5)]
    sent = {u: 0 for u in users}
    last = {}
    failures = []
    stop = threading.Event()

    def load():
        import requests as rq
        s = rq.Session()
        i = 0
        while not stop.is_set():
            u = users[i % len(users)]
            i += 1
            try:
                r = s.post(f"{live.url}/v1/users/{u}/purchases", json={"item_type": "gem", "quantity": 1},
                           timeout=10)
                if r.status_code != 202:
                    failures.append(("write", r.status_code, r.text))
                    continue
                sent[u] += 1
                last[u] = r.json()["token"]
                g = s.get(f"{live.url}/inventory/{u}", timeout=10)
                if g.status_code not in (200, 404):
                    failures.append(("read", g.status_code, g.text))
            except Exception as exc:  # a dropped connection is a failure too
                failures.append(("error", repr(exc)))

    # The swap stops and starts the fold's Kafka clients on a thread of its own: the HTTP
    # loop goes on answering meanwhile. A probe measures the longest answer.
    probe_times = []

    def probe():
        import requests as rq
        s = rq.Session()
        while not stop.is_set():
            started = time.monotonic()
            s.get(f"{live.url}/healthz", timeout=10)
            probe_times.append(time.monotonic() - started)
            time.sleep(0.005)

    worker = threading.Thread(target=load)
    worker.start()
    prober = threading.Thread(target=probe)
    prober.start()
    try:
        wait_until(lambda: sum(sent.values()) > 50, 30, "some load")
        rebuilt = tmp_path / "rebuilt"
        out = subprocess.run([BIN, "replay", "--brokers", BROKERS, "--db", str(rebuilt), "--swap",
                              "--http", live.url], capture_output=True, text=True, timeout=300,
                             env=dict(os.environ, LOOTLOG_ADMIN_TOKEN=token))
        assert out.returncode == 0, out.stdout + out.stderr
        assert "swap:" in out.stdout
        wait_until(lambda: sum(sent.values()) > 100, 30, "load after the swap")
    finally:
        stop.set()
        worker.join()
        prober.join()
    assert not failures, failures[:5]
    print(f"\nswap: longest /healthz answer during the run {max(probe_times) * 1000:.0f} ms "
          f"over {len(probe_times)} probes")
    assert max(probe_times) < 1.0
    # The folders traded places: the previous state waits at the rebuilt path.
    assert store_files(rebuilt) and stored_offsets(rebuilt)
    for u in users:
        assert live.quantities(u, after=last[u]) == {"gem": sent[u]}
    bad = live.post("/admin/swap", {"db": str(rebuilt)}, headers={"Authorization": "Bearer nope"})
    assert bad.status_code == 401

    # A folder rebuilt from another topic is refused, and the live state stays.
    other_topic = create_topic("swap-other-" + uuid.uuid4().hex[:8])
    other = tmp_path / "other-topic"
    produce_to(other_topic, users[0], valid_event(users[0]))
    out = subprocess.run([BIN, "replay", "--brokers", BROKERS, "--topic", other_topic, "--db",
                          str(other)], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    refused = live.post("/admin/swap", {"db": str(other)},
                        headers={"Authorization": f"Bearer {token}"})
    assert refused.status_code >= 400 and other_topic in refused.text, refused.text
    assert live.quantities(users[0]) == {"gem": sent[users[0]]}
    # And serve will not fold a store of another topic either: readiness says why.
    wrong = server_factory(name="wrong-topic", db=str(other)).start(wait_ready=False)
    wait_until(lambda: other_topic in wrong.get("/readyz").text, 30, "readiness to name the topic")
    assert wrong.get("/readyz").status_code == 503


def test_reads_while_serve_starts_never_fail_nor_deny_a_player(server_factory, tmp_path):
    """serve answers from the moment it listens, while its fold is still creating and
    migrating a new folder's stores, or reopening an existing folder. A read of a
    partition whose store the fold has not opened yet is 503 not_ready with Retry-After:
    never a 500 from a reader that found a half-made file, and never a 404 for a player
    the folder already holds, nor for an event it holds (looked up by id alone, which
    asks every partition, or with its player)."""
    from conftest import ThreadedLoad
    import requests as rq
    topic = create_topic("starting-" + uuid.uuid4().hex[:8], partitions=12)
    users = [f"starting-{i}" for i in range(48)]  # every one of the 12 partitions, likely
    event_ids = [uuid.uuid4().hex for _ in users]
    for u, event_id in zip(users, event_ids):
        produce_to(topic, u, valid_event(u, event_id))

    class Reads(ThreadedLoad):
        def __init__(self, url):
            super().__init__(4)
            self.url, self.statuses, self.bad = url, {}, []

        def run(self, i):
            session = rq.Session()
            n = i
            while not self.stop.is_set():
                n += 4
                k = n % len(users)
                what = ("inventory", "event", "event of player")[(n // 4) % 3]
                path = f"/inventory/{users[k]}" if what == "inventory" else \
                    f"/v1/events/{event_ids[k]}"
                params = {"user_id": users[k]} if what == "event of player" else None
                try:
                    r = session.get(self.url + path, params=params, timeout=10)
                except rq.ConnectionError:
                    continue  # not listening yet
                if r.status_code == 503 and (r.json().get("error") != "not_ready" or
                                             r.headers.get("Retry-After") != "1"):
                    self.bad.append(r.text)
                with self.lock:
                    counts = self.statuses.setdefault(what, {})
                    counts[r.status_code] = counts.get(r.status_code, 0) + 1

    def start_reading(name, db):
        s = server_factory(name=name, db=db, topic=topic)
        with Reads(s.url) as reads:
            s.start(wait_ready=False)
            wait_until(s.ready, 60, "readiness")
            wait_until(lambda: all(reads.statuses.get(what, {}).get(200, 0) > 0 for what in
                                   ("inventory", "event", "event of player")),
                       30, "a player and an event answered")
            wait_until(lambda: sum(stored_offsets(db).values()) == len(users), 30,
                       "every event folded")
        s.stop()
        assert not reads.bad, reads.bad[:3]
        return reads.statuses

    def add(total, statuses):
        for what, counts in statuses.items():
            for status, n in counts.items():
                total.setdefault(what, {})
                total[what][status] = total[what].get(status, 0) + n

    new_folders, restarts = {}, {}
    for start in range(3):
        add(new_folders, start_reading(f"new{start}", str(tmp_path / f"new{start}")))
    db = str(tmp_path / "new0")  # holds every player and event
    for start in range(3):
        add(restarts, start_reading(f"again{start}", db))
    print(f"\nreads while 3 new folders of 12 stores were made: {new_folders}; "
          f"while serve reopened one 3 times: {restarts}")
    for what in ("inventory", "event", "event of player"):
        assert set(new_folders[what]) <= {200, 404, 503}, new_folders
        # every player and event exists: never a 404
        assert set(restarts[what]) <= {200, 503}, restarts
    # Some reads came before the fold had opened the stores.
    assert sum(counts.get(503, 0) for counts in new_folders.values()) + \
        sum(counts.get(503, 0) for counts in restarts.values()) > 0


def thread_nice_values(pid, fold=None):
    """The nice value of each of a process's threads (field 19 of /proc/<pid>/task/*/stat):
    of its fold threads when fold is "catch-up" (named fold-<n>) or "live" (fold-<n>-live),
    of the others when False."""
    values = []
    for tid in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{tid}/stat") as f:
            stat = f.read()
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        kind = ("live" if name.endswith("-live") else "catch-up") if name.startswith("fold-") \
            else False
        if fold is not None and kind != fold:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        values.append(int(fields[16]))  # after "pid (comm)": state is fields[0], nice fields[16]
    return sorted(values)


def test_fold_threads_yield_to_reads_by_their_niceness(server_factory, user):
    """serve's fold threads catch up a backlog at nice 19 by default, so the HTTP loop's
    reads go first on a busy machine, and fold a partition that keeps up at nice 10, so a
    write shows soon; --fold-nice and --fold-live-nice set other values. A worker has a
    thread at each niceness (a thread cannot lower its niceness again without privilege);
    with the two equal, one thread per partition."""
    default = server_factory(name="nice-default").start()
    assert default.buy(user, "gem", 1).status_code == 202
    # The test topic has 6 partitions: six fold threads at 19 and six at 10; the HTTP
    # loop, the engine and librdkafka's threads at 0.
    wait_until(lambda: thread_nice_values(default.proc.pid, fold="catch-up") == [19] * 6, 30,
               "six catch-up fold threads at nice 19")
    assert thread_nice_values(default.proc.pid, fold="live") == [10] * 6
    assert 0 in thread_nice_values(default.proc.pid, fold=False)
    chosen = server_factory(name="nice-7", extra_args=["--fold-nice", "7",
                                                       "--fold-live-nice", "3"]).start()
    wait_until(lambda: thread_nice_values(chosen.proc.pid, fold="catch-up") == [7] * 6, 30,
               "six catch-up fold threads at nice 7")
    assert thread_nice_values(chosen.proc.pid, fold="live") == [3] * 6
    one = server_factory(name="nice-one", extra_args=["--fold-nice", "5",
                                                      "--fold-live-nice", "5"]).start()
    wait_until(lambda: thread_nice_values(one.proc.pid, fold="catch-up") == [5] * 6, 30,
               "six fold threads at nice 5")
    assert thread_nice_values(one.proc.pid, fold="live") == []
    for flag in ("--fold-nice", "--fold-live-nice"):
        bad = subprocess.run([BIN, "serve", flag, "20"], capture_output=True, text=True,
                             timeout=30)
        assert bad.returncode != 0 and flag in bad.stderr


WAL_BOUND = 24 * 1024 * 1024  # STORE_WAL_REUSE_FRAMES (8 MB) plus room for a few commits


def test_the_wal_is_reused_while_the_fold_never_pauses(server_factory, tmp_path):
    """A fold that commits without pause never finds its WAL fully copied, so SQLite never
    starts it over and it grows with every commit (550 MB beside a 49 MB store). The
    writer checkpoints after its commit once the WAL passes 8 MB, and the WAL stays near
    that size however long the backlog. (SQLite keeps a WAL file at its largest size
    until the store closes, so its size once the fold has caught up is its peak.)"""
    topic = create_topic("wal-" + uuid.uuid4().hex[:8])
    db = str(tmp_path / "wal-state")
    # serve folds while gen produces: live commits, each small and right after the last.
    serve = server_factory(name="wal", db=db, topic=topic).start()
    # gen sends what the machine lets it in 3 s (60k/s on a quiet machine, a third of that
    # under ASan beside the fold), so it runs again until the backlog is big enough that a
    # WAL never started over would pass the bound several times.
    events, runs = 0, 0
    while events < 150_000:
        assert runs < 20, f"gen sent only {events} events in {runs} runs"
        gen = subprocess.run([BIN, "gen", "--brokers", BROKERS, "--topic", topic,
                              "--rate", "60000", "--users", "50000", "--duration", "3",
                              "--seed", str(7 + runs), "--user-prefix", "wal-"],
                             capture_output=True, text=True, timeout=300)
        sent = re.search(r"ok (\d+), failed 0", gen.stdout)
        assert gen.returncode == 0 and sent, gen.stdout + gen.stderr
        events += int(sent.group(1))
        runs += 1
    wait_quiescent(db, topic, 300)
    wal_sizes = {p: os.path.getsize(path + "-wal") for p, path in store_files(db).items()}
    db_sizes = {p: os.path.getsize(path) for p, path in store_files(db).items()}
    serve.stop()
    print(f"\nWAL bytes per partition after folding {events} events: {wal_sizes}; "
          f"stores: {db_sizes}")
    assert sum(stored_offsets(db).values()) >= events
    assert max(wal_sizes.values()) <= WAL_BOUND, wal_sizes
