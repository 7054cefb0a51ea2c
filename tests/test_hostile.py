"""Hostile input on the real stack (issue 11): records a client could never send through
lootlog but anyone who can write to the topic can (dead-lettered, with clean reasons),
and HTTP requests that must be refused with the contract's errors: a reused
Idempotency-Key, If-Match values that do not fit or cannot match, tokens that would
saturate, and the admin token."""
import json
import sqlite3
import time
import uuid

from confluent_kafka import Producer

from conftest import BROKERS, TOPIC, store_files, wait_until

TS = "2026-11-29T08:14:00.123Z"
JSON_H = {"Content-Type": "application/json"}


def produce(records):
    """Produces (key, value bytes) with an independent client, keyed like lootlog's own
    producer (murmur2), so each record lands on its key's partition. Returns partitions."""
    producer = Producer({"bootstrap.servers": BROKERS, "partitioner": "murmur2_random"})
    landed, errors = [], []

    def delivered(err, msg):
        (errors if err else landed).append(err or msg.partition())
    for key, value in records:
        producer.produce(TOPIC, key=key.encode(), value=value, on_delivery=delivered)
    assert producer.flush(30) == 0
    assert not errors, errors
    return landed


def event_text(user, event_id, event_type="purchase_item", **fields):
    """A valid event as JSON text, with fields replaced; raw_members (text) is spliced in
    before the closing brace, for what json.dumps cannot write (repeated keys)."""
    raw = fields.pop("raw_members", None)
    ev = {"v": 1, "event_id": event_id, "event_type": event_type, "user_id": user, "ts": TS,
          "items": [{"item_type": "gem", "quantity": 1}], "guild_id": None,
          "expected_version": None, "metadata": {}}
    ev.update(fields)
    text = json.dumps(ev)
    if raw:
        text = text[:-1] + ", " + raw + "}"
    return text.encode()


def dead_letters(server, partition, key):
    con = sqlite3.connect(store_files(server.db)[partition], timeout=10)
    try:
        return con.execute("SELECT offset, reason FROM dead_letters WHERE CAST(msg_key AS TEXT) = ? "
                           "ORDER BY offset", (key,)).fetchall()
    finally:
        con.close()


# --------------------------------------------------------------------------- the decoder

def test_hostile_records_are_dead_lettered_with_clean_reasons(server, user):
    mark = uuid.uuid4().hex[:8]
    forged = f"E forged-{mark}"  # short enough to fit the decoder's event_type buffer
    bad = [
        # "user_id\u0000x" is not user_id: the record has no user_id
        event_text(user, f"nul-{mark}", user_id=None, raw_members=f'"user_id\\u0000x": "{user}"')
        .replace(b'"user_id": null, ', b""),
        # a key twice: at the top, in a cart line, in metadata
        event_text(user, f"dup-{mark}", raw_members=f'"user_id": "{user}"'),
        event_text(user, f"dupline-{mark}", items=[]).replace(
            b'"items": []', b'"items": [{"item_type": "gem", "item_type": "sword", "quantity": 1}]'),
        event_text(user, f"dupmeta-{mark}").replace(
            b'"metadata": {}', b'"metadata": {"host": "a", "host": "b"}'),
        # guild_id on a purchase; ts empty and ts with a path and a newline
        event_text(user, f"guild-{mark}", guild_id="knights"),
        event_text(user, f"tsempty-{mark}", ts=""),
        event_text(user, f"tspath-{mark}", ts="../\n\u00e9"),
        event_text(user, f"tsoffset-{mark}", ts="2026-11-29T08:14:00.123+00:00"),
        # a reason that would quote a newline from the payload
        event_text(user, f"type-{mark}", event_type="x\n" + forged),
    ]
    partitions = produce([(user, value) for value in bad])
    produce([(user, event_text(user, f"good-{mark}", items=[{"item_type": "gem", "quantity": 3}]))])
    # The valid record after them is applied, and none of the hostile ones was.
    wait_until(lambda: server.quantities(user) == {"gem": 3}, 30, "the valid event after the bad ones")
    rows = dead_letters(server, partitions[0], user)
    reasons = [reason for _, reason in rows]
    print(f"hostile: {len(bad)} records produced, {len(rows)} dead-lettered: {reasons}")
    assert len(rows) == len(bad), reasons
    assert "an object key contains U+0000" in reasons[0]
    assert "duplicate object key 'user_id'" in reasons[1]
    assert "duplicate object key 'item_type'" in reasons[2]
    assert "duplicate object key 'host'" in reasons[3]
    assert "purchase_item takes no guild_id" in reasons[4]
    assert all("ts is not a UTC time" in r for r in reasons[5:8]), reasons[5:8]
    assert reasons[8] == f"unknown event_type 'x\\x0a{forged}'"
    for reason in reasons:
        assert all(0x20 <= ord(c) < 0x7f for c in reason), reason
        assert len(reason) < 160
    # No log line was forged by the payload: the forged text never starts a line.
    log = open(server.log_path, encoding="utf-8", errors="replace").read()
    assert not any(line.startswith(forged) for line in log.splitlines())
    history = server.get(f"/v1/users/{user}/history").json()["events"]
    assert [e["event_id"] for e in history] == [f"good-{mark}"]


# --------------------------------------------------------------------------- Idempotency-Key

def test_idempotency_key_reused_for_another_request_is_422(server, user):
    key = "idem-" + uuid.uuid4().hex
    path = f"/v1/users/{user}/purchases"
    first = server.post(path + "?wait=applied", {"item_type": "gem", "quantity": 2},
                        headers={"Idempotency-Key": key})
    assert first.status_code == 200, first.text
    assert first.json()["event_id"] == key
    # The same request again: the same event, still applied once.
    again = server.post(path + "?wait=applied", {"item_type": "gem", "quantity": 2},
                        headers={"Idempotency-Key": key})
    assert again.status_code == 200, again.text
    assert again.json()["event_id"] == key and again.json()["outcome"] == "applied"
    # Another body, another kind of write of the player under the key: 422.
    for method, p, body in [("POST", path, {"item_type": "gem", "quantity": 5}),
                            ("POST", path, {"item_type": "sword", "quantity": 2}),
                            ("POST", f"/v1/users/{user}/consumptions", {"item_type": "gem", "quantity": 2}),
                            ("PUT", f"/v1/users/{user}/guild", {"guild_id": "knights"})]:
        r = server.session.request(method, server.url + p, data=json.dumps(body),
                                   headers={**JSON_H, "Idempotency-Key": key}, timeout=15)
        assert r.status_code == 422, (p, body, r.status_code, r.text)
        assert r.json()["error"] == "idempotency_key_reused"
    assert server.quantities(user) == {"gem": 2}
    # Keys are per player, as the fold's dedupe is: another player's equal key is theirs.
    other = server.post(f"/v1/users/{user}-other/purchases?wait=applied",
                        {"item_type": "gem", "quantity": 7}, headers={"Idempotency-Key": key})
    assert other.status_code == 200 and other.json()["outcome"] == "applied", other.text
    assert server.quantities(f"{user}-other") == {"gem": 7}
    # ... and the key still stands for its first request.
    third = server.post(path, {"item_type": "gem", "quantity": 2}, headers={"Idempotency-Key": key})
    assert third.status_code == 202 and third.json()["event_id"] == key


# --------------------------------------------------------------------------- If-Match

def test_if_match_is_a_strong_comparison_that_never_saturates(server, user):
    path = f"/v1/users/{user}/purchases"
    buy = {"item_type": "gem", "quantity": 1}
    # *: the player must exist; before its first applied event it does not.
    r = server.post(path + "?wait=applied", buy, headers={"If-Match": "*"})
    assert r.status_code == 412 and r.json()["error"] == "precondition_failed", r.text
    r = server.post(path + "?wait=applied", buy)
    assert r.status_code == 200 and r.headers["ETag"] == '"1"'
    r = server.post(path + "?wait=applied", buy, headers={"If-Match": "*"})
    assert r.status_code == 200 and r.json()["outcome"] == "applied", r.text
    # A weak tag never matches a strong comparison, even with the current version.
    r = server.post(path + "?wait=applied", buy, headers={"If-Match": 'W/"2"'})
    assert r.status_code == 412 and r.json()["error"] == "precondition_failed", r.text
    # 19 digits and more: refused, not turned into INT64_MAX.
    for big in ('"9223372036854775807"', '"9999999999999999999"', '"123456789012345678901234"'):
        r = server.post(path, buy, headers={"If-Match": big})
        assert r.status_code == 400 and r.json()["error"] == "if_match_out_of_range", (big, r.text)
    for bad in ("2", '"02"', '"+2"', '"2", "3"', "**"):
        r = server.post(path, buy, headers={"If-Match": bad})
        assert r.status_code == 400 and r.json()["error"] == "invalid_if_match", (bad, r.text)
    r = server.post(path + "?wait=applied", buy, headers={"If-Match": '"2"'})
    assert r.status_code == 200 and r.json()["outcome"] == "applied", r.text
    assert server.quantities(user) == {"gem": 3}


# --------------------------------------------------------------------------- tokens

def test_read_your_writes_token_is_exactly_p_colon_o(server, user):
    ack = server.buy(user, "gem", 1)
    assert ack.status_code == 202
    token = ack.json()["token"]
    assert server.inventory(user, after=token).status_code == 200
    p = token.split(":")[0]
    for bad in (f"{p}:99999999999999999999", f"{p}:9223372036854775807", f"+{p}:1", f" {p}:1",
                f"{p}:+1", f"{p}:0x10", f"{p}:1:2", "-1:1", f"{p}:1000000000000000000"):
        started = time.monotonic()
        r = server.get(f"/inventory/{user}", params={"after": bad, "timeout_ms": 3000})
        assert r.status_code == 400 and r.json()["error"] == "invalid_token", (bad, r.status_code, r.text)
        assert time.monotonic() - started < 2, "a bad token must be refused, not waited on"


# --------------------------------------------------------------------------- admin token

def test_admin_token_compared_whole(server_factory):
    token = "adm-" + uuid.uuid4().hex
    server = server_factory(env={"LOOTLOG_ADMIN_TOKEN": token}).start()
    ok = server.get("/admin/snapshots", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 409 and ok.json()["error"] == "snapshots_disabled"  # past the token
    for wrong in (token[:-1], token + "x", token[:-1] + ("0" if token[-1] != "0" else "1"), "",
                  token.upper(), "x" + token):
        r = server.get("/admin/snapshots", headers={"Authorization": f"Bearer {wrong}"})
        assert r.status_code == 401 and r.json()["error"] == "unauthorized", (wrong, r.text)
        assert r.headers.get("WWW-Authenticate") == "Bearer"
