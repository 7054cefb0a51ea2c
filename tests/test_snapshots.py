"""Snapshots, event extracts, restore and HDFS outages, checked with an independent
reader of HDFS (WebHDFS from Python + fastavro) and of the topic (confluent-kafka)."""
import hashlib
import io
import json
import os
import re
import subprocess
import uuid

import fastavro
import requests
from confluent_kafka import Consumer, TopicPartition

from conftest import BIN, BROKERS, ROOT, TOPIC, WEBHDFS, hdfs_list, hdfs_read, stack, wait_until

API = f"{WEBHDFS}/webhdfs/v1"
TOKEN = "snap-" + uuid.uuid4().hex


def avro_rows(data):
    reader = fastavro.reader(io.BytesIO(data))
    assert reader.codec == "deflate"
    return list(reader)


def snapshot_server(server_factory, root, *extra):
    return server_factory(name="snap", env={"LOOTLOG_ADMIN_TOKEN": TOKEN},
                          extra_args=["--snapshot-url", f"webhdfs://{WEBHDFS[len('http://'):]}{root}",
                                      *extra]).start()


def admin(server, method="GET"):
    return server.session.request(method, server.url + "/admin/snapshots",
                                  headers={"Authorization": f"Bearer {TOKEN}"}, timeout=15)


def settled(server):
    """Waits until the fold has everything the topic holds (no one else writes now)."""
    wait_until(lambda: server.get("/readyz").json().get("fold_lag") == 0, 60, "fold lag 0")


def take_snapshot(server):
    """Triggers one snapshot and waits until the scheduler reports it taken."""
    settled(server)
    before = admin(server).json()["taken"]
    assert admin(server, "POST").status_code == 202
    status = wait_until(lambda: (lambda s: s if s["taken"] > before else None)(admin(server).json()),
                        90, "the snapshot", interval=0.2)
    return status["last_id"]


def verified_files(root, snap_id):
    """Downloads every file of a snapshot's manifest and checks its sha256."""
    base = f"{root}/snapshots/{snap_id}"
    names = hdfs_list(base)
    assert "_SUCCESS" in names and "manifest.json" in names
    manifest = json.loads(hdfs_read(f"{base}/manifest.json"))
    files = {}
    for name, meta in manifest["files"].items():
        data = hdfs_read(f"{base}/{name}")
        assert hashlib.sha256(data).hexdigest() == meta["sha256"], name
        assert len(data) == meta["bytes"]
        files[name] = data
    # One store per partition of the topic (6 in the test stack), then the analyst tables.
    assert set(manifest["files"]) == {f"p{p}.db" for p in range(6)} | \
        {"inventory.avro", "guild_members.avro", "users.avro"}
    assert manifest["schema_version"] == 2
    assert sorted(manifest["offsets"], key=int) == [str(p) for p in range(6)]
    return manifest, files


def partition_of(server, user):
    """The partition that holds user: their inventory's as_of names only it."""
    as_of = server.inventory(user).json()["as_of"]
    assert len(as_of) == 1, as_of
    return next(iter(as_of))


def topic_records(start, end):
    """(partition, offset) -> event_type for the records in [start[p], end[p]), read from
    Kafka by an independent client; records that are not valid JSON events are skipped."""
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": "snap-" + uuid.uuid4().hex,
                  "enable.auto.commit": False})
    want = {int(p): (start.get(p, 0), n) for p, n in end.items() if n > start.get(p, 0)}
    c.assign([TopicPartition(TOPIC, p, lo) for p, (lo, hi) in want.items()])
    out, remaining = {}, set(want)
    while remaining:
        msg = c.poll(2.0)
        assert msg is not None, f"topic read stalled, partitions left {remaining}"
        if msg.error():
            continue
        p, o = msg.partition(), msg.offset()
        if o >= want[p][1]:
            remaining.discard(p)
            continue
        try:
            ev = json.loads(msg.value() or b"")
            if ev.get("v") == 1 and (msg.key() or b"").decode() == ev.get("user_id"):
                out[(p, o)] = ev["event_type"]
        except (ValueError, AttributeError):
            pass
        if o + 1 >= want[p][1]:
            remaining.discard(p)
    c.close()
    return out


def test_snapshot_contents_extracts_restore_and_retention(server_factory, user, tmp_path):
    root = f"/lootlog-test/snap-{uuid.uuid4().hex[:8]}"
    s = snapshot_server(server_factory, root, "--retain", "2")
    # Some state: a cart, a consumption, a guild.
    s.post(f"/v1/users/{user}/purchases", {"items": [{"item_type": "sword", "quantity": 2},
                                                     {"item_type": "potion", "quantity": 5}]})
    s.post(f"/v1/users/{user}/consumptions", {"item_type": "potion", "quantity": 1})
    last = s.session.put(f"{s.url}/v1/users/{user}/guild", json={"guild_id": f"g-{user}"},
                         timeout=15).json()
    s.quantities(user, after=last["token"])
    # The join is decided by the guild's partition, in events of its own: wait for them.
    wait_until(lambda: s.get(f"/v1/events/{last['event_id']}", params={"user_id": user})
               .json().get("outcome") == "applied", 30, "the guild's decision")

    first_id = take_snapshot(s)
    assert not [n for n in hdfs_list(f"{root}/snapshots") if n.startswith("_tmp")]
    manifest, files = verified_files(root, first_id)
    inv = s.inventory(user).json()
    # Nothing was written meanwhile: the snapshot's offset of the player's partition is
    # the inventory's as_of (which names that partition only).
    part = partition_of(s, user)
    assert inv["as_of"] == {part: manifest["offsets"][part]}
    assert manifest["topic"] == TOPIC and manifest["id"] == first_id
    inventory = [r for r in avro_rows(files["inventory.avro"]) if r["user_id"] == user]
    assert {r["item_type"]: (r["quantity"], r["category"]) for r in inventory} == \
        {"sword": (2, "weapon"), "potion": (4, "consumable")}
    users = [r for r in avro_rows(files["users.avro"]) if r["user_id"] == user]
    assert users and users[0]["version"] == 3 and users[0]["guild_id"] == f"g-{user}"
    members = [r for r in avro_rows(files["guild_members.avro"]) if r["user_id"] == user]
    assert [(r["guild_id"]) for r in members] == [f"g-{user}"]
    assert manifest["row_counts"]["inventory"] == len(avro_rows(files["inventory.avro"]))
    # The first extract of the player's partition starts at 0 and holds the cart, its
    # items as JSON text (the stores keep "sword:2,potion:5").
    cart_file, = [x["path"] for x in manifest["extracts"]
                  if x["event_type"] == "purchase_item" and str(x["partition"]) == part]
    assert cart_file.endswith(f"/p{part}-0-{manifest['offsets'][part] - 1}.avro")
    carts = [json.loads(r["items"]) for r in avro_rows(hdfs_read(cart_file)) if r["user_id"] == user]
    assert carts == [[{"item_type": "sword", "quantity": 2}, {"item_type": "potion", "quantity": 5}]]

    # More events, a second snapshot: its extracts hold exactly the records between.
    for q in (1, 2, 3):
        last = s.buy(user, "gem", q).json()
    s.quantities(user, after=last["token"])
    second_id = take_snapshot(s)
    manifest2, _ = verified_files(root, second_id)
    assert manifest2["previous_snapshot"] == first_id
    assert manifest2["previous_offsets"] == manifest["offsets"]
    expected = topic_records(manifest["offsets"], manifest2["offsets"])
    got, mine = {}, []
    for extract in manifest2["extracts"]:
        # Named by the partition's offset range: p<N>-<first>-<last>.avro, first = the
        # previous snapshot's next offset, last = this one's next offset - 1.
        m = re.search(r"/events/event_type=([a-z_]+)/p(\d+)-(\d+)-(\d+)\.avro$", extract["path"])
        assert m, extract["path"]
        p, first, last = m.group(2), int(m.group(3)), int(m.group(4))
        assert m.group(1) == extract["event_type"] and int(p) == extract["partition"]
        assert (first, last) == (manifest["offsets"][p], manifest2["offsets"][p] - 1)
        data = hdfs_read(extract["path"])
        assert hashlib.sha256(data).hexdigest() == extract["sha256"]
        rows = avro_rows(data)
        assert len(rows) == extract["rows"]
        for r in rows:
            assert (r["partition"], r["offset"]) not in got  # exactly once
            assert r["event_type"] == extract["event_type"] and r["partition"] == int(p)
            assert first <= r["offset"] <= last
            got[(r["partition"], r["offset"])] = r["event_type"]
            if r["user_id"] == user:
                mine.append((r["offset"], r["items"]))
    assert got == expected
    # Items as the analysts' files have always had them: JSON text of the lines.
    assert [json.loads(items) for _, items in sorted(mine)] == \
        [[{"item_type": "gem", "quantity": q}] for q in (1, 2, 3)]
    assert list(expected.values()).count("purchase_item") >= 3

    # Restore the latest into a new folder; a serve on it catches up to the live state.
    restored = tmp_path / "restored"
    out = subprocess.run([BIN, "restore", "--snapshot-url",
                          f"webhdfs://{WEBHDFS[len('http://'):]}{root}", "--id", "latest",
                          "--db", str(restored)], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert second_id in out.stdout
    assert sorted(os.listdir(restored)) == sorted(f"p{p}.db" for p in range(6))
    # A folder that already holds stores is refused, and left as it was.
    again = subprocess.run([BIN, "restore", "--snapshot-url",
                            f"webhdfs://{WEBHDFS[len('http://'):]}{root}", "--id", second_id,
                            "--db", str(restored)], capture_output=True, text=True, timeout=120)
    assert again.returncode != 0 and "already holds" in again.stderr, again.stderr
    assert sorted(os.listdir(restored)) == sorted(f"p{p}.db" for p in range(6))
    last = s.buy(user, "gem", 10).json()  # after the snapshot: must come from Kafka
    replica = server_factory(name="replica", db=str(restored)).start()
    assert replica.quantities(user, after=last["token"]) == s.quantities(user, after=last["token"])
    assert replica.quantities(user)["gem"] == 16

    # Retention 2: a third snapshot removes the first.
    third_id = take_snapshot(s)
    kept = [n for n in hdfs_list(f"{root}/snapshots") if not n.startswith("_")]
    assert kept == sorted([second_id, third_id])

    # The analysts' guide's pandas example, run as written, sees the same numbers.
    guide = open(os.path.join(ROOT, "docs", "analysts.md")).read()
    code = re.search(r"```python\n(.*?)```", guide, re.S).group(1)
    scope = {"WEBHDFS": WEBHDFS, "ROOT": root}
    exec(compile(code, "docs/analysts.md", "exec"), scope)
    frame = scope["inventory"]
    mine = frame[frame.user_id == user]
    assert dict(zip(mine.item_type, mine.quantity)) == {"sword": 2, "potion": 4, "gem": 16}
    assert scope["latest"] == third_id


# HDFS going away (before or while a snapshot is written) is tests/test_faults.py's
# test_hdfs_stopped_during_a_snapshot.


def test_refused_write_fails_cleanly(server_factory):
    """HDFS refuses the write (the root is a file, so no folder can be made under it):
    the snapshot fails with a sentence, and nothing is left behind."""
    root = f"/lootlog-test/refused-{uuid.uuid4().hex[:8]}"
    r = requests.put(f"{API}/lootlog-test?op=MKDIRS&user.name=root", timeout=10)
    assert r.status_code == 200
    r = requests.put(f"{API}{root}?op=CREATE&user.name=root", allow_redirects=False, timeout=10)
    assert requests.put(r.headers["Location"], data=b"not a folder", timeout=10).status_code == 201
    s = snapshot_server(server_factory, root)
    assert admin(s, "POST").status_code == 202
    wait_until(lambda: admin(s).json()["failed"] >= 1, 60, "the refused snapshot")
    status = admin(s).json()
    assert status["taken"] == 0 and "HDFS refused" in status["last_error"]
    assert hdfs_read(root) == b"not a folder"  # untouched
    assert s.get("/readyz").status_code == 200
