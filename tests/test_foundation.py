"""The walking skeleton on the real stack: HTTP -> Kafka -> SQLite -> HTTP."""
import random
import signal
import time
import uuid

import requests

from conftest import OVERLAPPING_BLOCKS, WEBHDFS, kcat_read, query_stores, stack, wait_until


def test_purchase_shows_in_inventory(server, user):
    r = server.buy(user, "sword", 2)
    assert r.status_code == 202, r.text
    ack = r.json()
    assert ack["event_type"] == "purchase_item"
    assert ack["token"] == f'{ack["partition"]}:{ack["offset"]}'
    inv = server.inventory(user, after=ack["token"])
    assert inv.status_code == 200, inv.text
    body = inv.json()
    assert body["user_id"] == user
    assert body["items"] == [{"item_type": "sword", "category": "weapon", "quantity": 2}]
    assert body["as_of"][str(ack["partition"])] > ack["offset"]
    assert inv.headers["ETag"] == '"1"'


def test_unknown_player_is_404(server, user):
    r = server.inventory(user)
    assert r.status_code == 404
    assert r.json()["error"] == "not_found"


def test_event_is_in_the_topic(server, user):
    ack = server.post(f"/v1/users/{user}/purchases",
                      {"items": [{"item_type": "bow", "quantity": 1, "unit_price": 40},
                                 {"item_type": "arrow", "quantity": 20}]},
                      headers={"User-Agent": "pytest-agent", "Accept-Language": "fr"}).json()
    [(key, value)] = kcat_read(ack["partition"], ack["offset"])
    assert key == user
    assert value["event_type"] == "purchase_item"
    assert value["user_id"] == user
    assert value["event_id"] == ack["event_id"]
    assert value["v"] == 1
    assert value["items"] == [{"item_type": "bow", "quantity": 1, "unit_price": 40},
                              {"item_type": "arrow", "quantity": 20}]
    assert value["metadata"]["user_agent"] == "pytest-agent"
    assert value["metadata"]["accept_language"] == "fr"
    assert value["metadata"]["remote_addr"] == "127.0.0.1"


def test_restart_mid_stream_applies_each_event_once(server_factory, tmp_path):
    """Writes keep coming while serve is stopped (SIGTERM and SIGKILL) and restarted on
    the same database; at the end every acknowledged purchase counts exactly once."""
    users = [f"r-{uuid.uuid4().hex[:8]}-{i}" for i in range(8)]
    expected = {u: 0 for u in users}
    db = str(tmp_path / "restart.db")
    writer = server_factory(name="writer", extra_args=["--no-fold"]).start()
    rng = random.Random(7)
    last_token = {}
    for round_no, sig in enumerate([signal.SIGTERM, signal.SIGKILL, signal.SIGKILL, None]):
        folder = server_factory(name=f"fold{round_no}", db=db).start()
        for _ in range(60):
            u = rng.choice(users)
            q = rng.randint(1, 5)
            r = writer.buy(u, "gem", q)
            assert r.status_code == 202, r.text
            expected[u] += q
            last_token[u] = r.json()["token"]
        if sig is None:
            break
        folder.stop(sig)
    # The last server folds to the end; wait for each user's last token.
    for u in users:
        assert folder.quantities(u, after=last_token[u]) == {"gem": expected[u]}
    # And the database agrees: one outcome row per consumed record, none twice.
    dupes = query_stores(db, OVERLAPPING_BLOCKS)
    assert dupes and all(n == 0 for (n,) in dupes)


def test_serve_waits_for_kafka(server_factory, user):
    """Started while Kafka is down: alive but not ready; ready once Kafka is back."""
    stack("stop-kafka")
    try:
        s = server_factory(name="early").start(wait_ready=False)
        r = s.get("/readyz")
        assert r.status_code == 503
        assert r.json()["ready"] is False
        # Writes while Kafka is down get a 503 with Retry-After, never a 2xx.
        w = s.buy(user, "axe", 1)
        assert w.status_code == 503, w.text
        assert w.headers.get("Retry-After")
    finally:
        stack("start-kafka")
    wait_until(s.ready, 90, "readiness after Kafka came back")
    r = s.buy(user, "axe", 3)
    assert r.status_code == 202, r.text
    assert s.quantities(user, after=r.json()["token"]) == {"axe": 3}


def test_webhdfs_round_trip():
    """The HDFS of the stack takes a file and gives it back (two-step CREATE)."""
    path = f"/lootlog-test/roundtrip-{uuid.uuid4().hex}.txt"
    payload = b"lootlog " + uuid.uuid4().bytes.hex().encode()
    base = f"{WEBHDFS}/webhdfs/v1"
    r = requests.put(f"{base}/lootlog-test?op=MKDIRS&user.name=root", timeout=10)
    assert r.status_code == 200 and r.json()["boolean"] is True
    r = requests.put(f"{base}{path}?op=CREATE&overwrite=false&user.name=root",
                     allow_redirects=False, timeout=10)
    assert r.status_code == 307
    r = requests.put(r.headers["Location"], data=payload, timeout=10)
    assert r.status_code == 201
    r = requests.get(f"{base}{path}?op=OPEN&user.name=root", timeout=10)
    assert r.status_code == 200 and r.content == payload
    requests.delete(f"{base}{path}?op=DELETE&user.name=root", timeout=10)


def metric_value(text, name):
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    raise AssertionError(f"{name} not in /metrics")


def test_metrics_count_writes_and_folds(server, user):
    before = server.get("/metrics")
    assert before.status_code == 200
    assert before.headers["Content-Type"].startswith("text/plain")
    acked = metric_value(before.text, 'lootlog_writes_total{result="acked"}')
    invalid = metric_value(before.text, 'lootlog_writes_total{result="invalid"}')
    token = server.buy(user, "shield", 1).json()["token"]
    assert server.buy(user, "laser", 1).status_code == 422
    server.quantities(user, after=token)
    after = server.get("/metrics").text
    assert metric_value(after, 'lootlog_writes_total{result="acked"}') == acked + 1
    assert metric_value(after, 'lootlog_writes_total{result="invalid"}') == invalid + 1
    assert metric_value(after, 'lootlog_fold_events_total{outcome="applied"}') >= 1
    assert metric_value(after, "lootlog_broker_ready") == 1


def test_status_page(server, user):
    token = server.buy(user, "helmet", 1).json()["token"]
    server.quantities(user, after=token)
    r = server.get("/status")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/html")
    page = r.text
    assert page.startswith("<!doctype html>") and page.rstrip().endswith("</html>")
    assert ">ready<" in page
    applied = int(page.split("events applied</th><td>")[1].split("<")[0])
    assert applied >= 1


def test_serve_allocates_with_mimalloc(server):
    """The plain build links mimalloc so that a block freed by another thread goes back
    without a lock (meson.build); a sanitizer build keeps the sanitizer's allocator.
    Whichever binary runs, exactly one of the two is in serve's address space."""
    with open(f"/proc/{server.proc.pid}/maps") as maps:
        mapped = maps.read()
    sanitized = "libasan" in mapped
    assert ("libmimalloc" in mapped) != sanitized, \
        f"sanitized={sanitized}, mimalloc mapped={'libmimalloc' in mapped}"
