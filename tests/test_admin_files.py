"""Hostile files and shared snapshot roots: a planted manifest cannot make `restore` write
outside its folder or install a file of the wrong size, a stale -wal blocks a restore,
and deployments sharing one --snapshot-url (shards with their own partition sets, other
topics) keep to their own snapshots."""
import hashlib
import json
import os
import subprocess
import uuid

import requests

from conftest import BIN, WEBHDFS, wait_until
from test_snapshots import admin, hdfs_list, hdfs_read, snapshot_server, take_snapshot

API = f"{WEBHDFS}/webhdfs/v1"
HOST = WEBHDFS[len("http://"):]


def hdfs_put(path, data):
    r = requests.put(f"{API}{path}?op=CREATE&overwrite=true&user.name=root",
                     allow_redirects=False, timeout=30)
    assert r.status_code == 307, r.text
    assert requests.put(r.headers["Location"], data=data, timeout=30).status_code == 201


def plant(root, snap_id, files, manifest_files, topic="events"):
    """A complete-looking snapshot written straight to HDFS."""
    base = f"{root}/snapshots/{snap_id}"
    for name, data in files.items():
        hdfs_put(f"{base}/{name}", data)
    manifest = {"id": snap_id, "topic": topic, "schema_version": 2, "offsets": {"0": 0},
                "files": manifest_files, "extracts": []}
    hdfs_put(f"{base}/manifest.json", json.dumps(manifest).encode())
    hdfs_put(f"{base}/_SUCCESS", b"")


def restore(root, snap_id, db, *extra):
    return subprocess.run([BIN, "restore", "--snapshot-url", f"webhdfs://{HOST}{root}",
                           "--id", snap_id, "--db", str(db), *extra],
                          capture_output=True, text=True, timeout=120)


def test_planted_manifest_cannot_escape_or_mismatch(tmp_path):
    root = f"/lootlog-test/planted-{uuid.uuid4().hex[:8]}"
    data = b"SQLite format 3\0" + b"x" * 100
    digest = hashlib.sha256(data).hexdigest()
    target = tmp_path / "restored"
    # 1. A name with ../ : refused before anything is fetched or written.
    plant(root, "20260101T000000000Z", {"p0.db": data},
          {"../escaped.db": {"sha256": digest, "bytes": len(data)}})
    out = restore(root, "20260101T000000000Z", target)
    assert out.returncode != 0 and "not a file of a snapshot" in out.stderr, out.stderr
    assert not (tmp_path / "escaped.db").exists() and not target.exists()
    # 2. The right name, the right hash, the wrong size: refused, nothing installed.
    plant(root, "20260101T000000001Z", {"p0.db": data},
          {"p0.db": {"sha256": digest, "bytes": len(data) + 1}})
    out = restore(root, "20260101T000000001Z", target)
    assert out.returncode != 0 and "bytes, manifest says" in out.stderr, out.stderr
    assert not target.exists() or os.listdir(target) == []
    # 3. The wrong hash: refused.
    plant(root, "20260101T000000002Z", {"p0.db": data},
          {"p0.db": {"sha256": "0" * 64, "bytes": len(data)}})
    out = restore(root, "20260101T000000002Z", target)
    assert out.returncode != 0 and "sha256" in out.stderr, out.stderr
    # 4. Another topic's snapshot is not restored as this one's.
    plant(root, "20260101T000000003Z", {"p0.db": data},
          {"p0.db": {"sha256": digest, "bytes": len(data)}}, topic="other")
    out = restore(root, "20260101T000000003Z", target)
    assert out.returncode != 0 and "is of topic 'other'" in out.stderr, out.stderr
    # 5. A stale -wal beside the target blocks the install of that store.
    plant(root, "20260101T000000004Z", {"p0.db": data},
          {"p0.db": {"sha256": digest, "bytes": len(data)}})
    target.mkdir(exist_ok=True)
    (target / "p0.db-wal").write_bytes(b"stale")
    out = restore(root, "20260101T000000004Z", target)
    assert out.returncode != 0 and "p0.db-wal exists" in out.stderr, out.stderr
    assert sorted(os.listdir(target)) == ["p0.db-wal"]
    # Without it, the same snapshot installs.
    (target / "p0.db-wal").unlink()
    out = restore(root, "20260101T000000004Z", target)
    assert out.returncode == 0, out.stderr
    assert (target / "p0.db").read_bytes() == data
    print("planted manifests: ../ name, wrong size, wrong hash, other topic and stale -wal "
          "refused; the honest one installed")


def test_shards_share_one_snapshot_root(server_factory, tmp_path):
    root = f"/lootlog-test/shared-{uuid.uuid4().hex[:8]}"
    a = snapshot_server(server_factory, root, "--partitions", "0-2", "--retain", "1")
    first_a = take_snapshot(a)
    b = server_factory(name="shard-b", env={"LOOTLOG_ADMIN_TOKEN": a.env["LOOTLOG_ADMIN_TOKEN"]},
                       extra_args=["--snapshot-url", f"webhdfs://{HOST}{root}",
                                   "--partitions", "3-5", "--retain", "1"]).start()
    only_b = take_snapshot(b)
    second_a = take_snapshot(a)
    kept = [n for n in hdfs_list(f"{root}/snapshots") if not n.startswith("_")]
    # Retention 1 per shard: A's first is gone, B's survives A's retention.
    assert kept == sorted([only_b, second_a]), kept
    m_a = json.loads(hdfs_read(f"{root}/snapshots/{second_a}/manifest.json"))
    m_b = json.loads(hdfs_read(f"{root}/snapshots/{only_b}/manifest.json"))
    assert sorted(m_a["offsets"]) == ["0", "1", "2"] and sorted(m_b["offsets"]) == ["3", "4", "5"]
    # A's chain continues from A's own snapshot, not from B's (which is newer than A's first).
    assert m_a["previous_snapshot"] == first_a
    # restore --partitions picks the shard's own newest snapshot.
    out = subprocess.run([BIN, "restore", "--snapshot-url", f"webhdfs://{HOST}{root}",
                          "--partitions", "3-5", "--db", str(tmp_path / "b")],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and only_b in out.stdout, out.stderr
    assert sorted(os.listdir(tmp_path / "b")) == ["p3.db", "p4.db", "p5.db"]
    # A deployment of another topic is refused under this root (extract names would clash).
    out = subprocess.run([BIN, "snapshot", "--db", a.db, "--topic", "other-topic",
                          "--snapshot-url", f"webhdfs://{HOST}{root}"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode != 0 and "holds snapshots of topic 'events'" in out.stderr, out.stderr
    assert [n for n in hdfs_list(f"{root}/snapshots") if not n.startswith("_")] == kept
    print(f"shared root: kept {kept}; A's previous {m_a['previous_snapshot']}; B restored")
