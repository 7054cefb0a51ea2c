"""The HTTP API against the real binary and a real Kafka: fold rules, error codes,
idempotency, read-your-writes, If-Match, history, the seed endpoints and the catalog."""
import http.client
import json
import re
import select
import subprocess
import threading
import time
import uuid

import requests

from conftest import BROKERS, TOPIC, derived_event_id, kcat_read, wait_until

ERROR_KEYS = {"error", "message"}


# --------------------------------------------------------------------------- helpers

def uid(prefix):
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def assert_error(r, status, code):
    """An error answer: the status, JSON {"error": code, "message": str} and nothing else."""
    assert r.status_code == status, f"want {status} {code}, got {r.status_code}: {r.text}"
    assert r.headers.get("Content-Type", "").startswith("application/json"), r.headers
    body = r.json()
    assert set(body) == ERROR_KEYS, body
    assert body["error"] == code, body
    assert isinstance(body["message"], str) and body["message"], body
    return body


def write(server, method, path, body=None, wait=True, headers=None, timeout_ms=10000):
    """A JSON write; with wait, ?wait=applied (answered after the fold)."""
    h = {"Content-Type": "application/json"}
    h.update(headers or {})
    params = {"wait": "applied", "timeout_ms": str(timeout_ms)} if wait else None
    data = None if body is None else json.dumps(body)
    return server.session.request(method, server.url + path, data=data, headers=h,
                                  params=params, timeout=20)


def buy(server, user, item_type, quantity, **kw):
    return write(server, "POST", f"/v1/users/{user}/purchases",
                 {"item_type": item_type, "quantity": quantity}, **kw)


def consume(server, user, item_type, quantity, **kw):
    return write(server, "POST", f"/v1/users/{user}/consumptions",
                 {"item_type": item_type, "quantity": quantity}, **kw)


def join(server, user, guild, **kw):
    return write(server, "PUT", f"/v1/users/{user}/guild", {"guild_id": guild}, **kw)


def leave(server, user, **kw):
    return write(server, "DELETE", f"/v1/users/{user}/guild", **kw)


def applied(r):
    """Asserts a ?wait=applied answer is 200 applied and returns its inventory."""
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["outcome"] == "applied", body
    assert body["token"] == f'{body["partition"]}:{body["offset"]}'
    inv = body["inventory"]
    assert isinstance(inv, dict), body
    return inv


def rejected(r, reason):
    assert r.status_code == 409, r.text
    body = r.json()
    assert body["outcome"] == "rejected", body
    assert body["reason"] == reason, body
    assert "inventory" not in body, body
    return body


def items_of(inv):
    return {line["item_type"]: line["quantity"] for line in inv["items"]}


def partition_count():
    out = subprocess.run(["kcat", "-L", "-b", BROKERS, "-t", TOPIC], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    return int(re.search(rf'topic "{TOPIC}" with (\d+) partitions', out).group(1))


def end_offsets():
    """{partition: end offset} of the topic, from Kafka itself (kcat -Q, time -1 = end)."""
    args = ["kcat", "-Q", "-b", BROKERS]
    for p in range(partition_count()):
        args += ["-t", f"{TOPIC}:{p}:-1"]
    out = subprocess.run(args, capture_output=True, text=True, timeout=30, check=True).stdout
    offsets = {int(p): int(o) for p, o in re.findall(r"\[(\d+)\] offset (-?\d+)", out)}
    assert len(offsets) == partition_count(), out
    return offsets


def records_since(start):
    """Every record appended to the topic since the end offsets `start`."""
    records = []
    for p, end in end_offsets().items():
        if end > start.get(p, 0):
            records += kcat_read(p, start.get(p, 0), end - start.get(p, 0))
    return records


# --------------------------------------------------------------------------- 1. fold rules

def test_cart_purchase_consume_and_rows_reaching_zero(server, user):
    r = write(server, "POST", f"/v1/users/{user}/purchases",
              {"items": [{"item_type": "sword", "quantity": 2, "unit_price": 100},
                         {"item_type": "arrow", "quantity": 10},
                         {"item_type": "sword", "quantity": 3}]})
    inv = applied(r)
    assert r.json()["event_type"] == "purchase_item"
    assert inv["user_id"] == user and inv["guild_id"] is None
    assert sorted(inv["items"], key=lambda l: l["item_type"]) == [
        {"item_type": "arrow", "category": "ammunition", "quantity": 10},
        {"item_type": "sword", "category": "weapon", "quantity": 5}]
    assert r.headers["ETag"] == '"1"'

    inv = applied(consume(server, user, "arrow", 4))
    assert items_of(inv) == {"arrow": 6, "sword": 5}

    # More than held: rejected, nothing changes (not even the version).
    body = rejected(consume(server, user, "sword", 6), "insufficient_quantity")
    after = server.inventory(user, after=body["token"])
    assert after.status_code == 200
    assert items_of(after.json()) == {"arrow": 6, "sword": 5}
    assert after.headers["ETag"] == '"2"'

    # A row that reaches 0 disappears.
    inv = applied(consume(server, user, "arrow", 6))
    assert inv["items"] == [{"item_type": "sword", "category": "weapon", "quantity": 5}]
    assert server.get(f"/inventory/{user}", params={"item_type": "arrow"}).json()["items"] == []


def test_player_with_only_rejected_events_does_not_exist(server, user):
    body = rejected(consume(server, user, "potion", 1), "insufficient_quantity")
    r = server.inventory(user, after=body["token"])
    assert_error(r, 404, "not_found")


def test_guild_join_rejoin_other_leave(server, user):
    guild, other = uid("g"), uid("g")
    inv = applied(join(server, user, guild))
    assert inv["guild_id"] == guild
    g = server.get(f"/v1/guilds/{guild}")
    assert g.status_code == 200, g.text
    assert g.json() == {"guild_id": guild, "member_count": 1, "members": [user],
                        "next_cursor": None}

    # The same guild again: applied, nothing changes.
    inv = applied(join(server, user, guild))
    assert inv["guild_id"] == guild
    assert server.get(f"/v1/guilds/{guild}").json()["member_count"] == 1

    # Another guild while in one: rejected.
    body = rejected(join(server, user, other), "already_in_guild")
    assert server.inventory(user, after=body["token"]).json()["guild_id"] == guild
    assert_error(server.get(f"/v1/guilds/{other}"), 404, "not_found")

    inv = applied(leave(server, user))
    assert inv["guild_id"] is None
    # The leave is decided in the player's partition; the guild's partition frees the seat
    # when it folds the request the leave emitted.
    wait_until(lambda: server.get(f"/v1/guilds/{guild}").status_code == 404, 10,
               "the guild's partition to free the seat")
    assert_error(server.get(f"/v1/guilds/{guild}"), 404, "not_found")

    rejected(leave(server, user), "not_in_guild")

    # Free again: the other guild takes them now.
    assert applied(join(server, user, other))["guild_id"] == other


def test_guild_capacity(server_factory):
    s = server_factory(name="cap2", extra_args=["--guild-capacity", "2"]).start()
    guild = uid("full")
    users = [uid("cap") for _ in range(3)]
    applied(join(s, users[0], guild))
    applied(join(s, users[1], guild))
    body = rejected(join(s, users[2], guild), "guild_full")
    assert_error(s.inventory(users[2], after=body["token"]), 404, "not_found")
    g = s.get(f"/v1/guilds/{guild}").json()
    assert g["member_count"] == 2
    assert g["members"] == sorted(users[:2])
    # A place frees up: the third gets in.
    applied(leave(s, users[0]))
    assert applied(join(s, users[2], guild))["guild_id"] == guild


# --------------------------------------------------------------------------- 2. errors

def test_invalid_requests_get_their_codes_and_never_reach_kafka(server, user):
    first = buy(server, user, "gem", 1, wait=False)
    assert first.status_code == 202, first.text
    before = end_offsets()
    purchases = f"/v1/users/{user}/purchases"
    json_h = {"Content-Type": "application/json"}

    assert_error(server.post(purchases, "{not json"), 400, "invalid_json")
    assert_error(server.post(purchases, "[1, 2]"), 400, "invalid_json")
    assert_error(server.post("/v1/users/bad!user/purchases", {"item_type": "sword", "quantity": 1}),
                 400, "invalid_identifier")
    assert_error(server.post(f"/v1/users/{'a' * 65}/purchases",
                             {"item_type": "sword", "quantity": 1}), 400, "invalid_identifier")
    for q in (0, 1000001, "1", 1.5, -3, None):
        assert_error(server.post(purchases, {"item_type": "sword", "quantity": q}),
                     422, "invalid_quantity")
    assert_error(server.post(f"/v1/users/{user}/consumptions",
                             {"item_type": "gem", "quantity": 0}), 422, "invalid_quantity")
    assert_error(server.post(purchases, {"items": [{"item_type": "arrow", "quantity": 1}] * 51}),
                 422, "invalid_cart")
    assert_error(server.post(purchases, {"items": []}), 422, "invalid_cart")
    assert_error(server.post(purchases, {"item_type": "laser", "quantity": 1}),
                 422, "unknown_item_type")
    assert_error(server.post(purchases, {"items": [{"item_type": "sword", "quantity": 1},
                                                   {"item_type": "laser", "quantity": 1}]}),
                 422, "unknown_item_type")
    big = json.dumps({"item_type": "sword", "quantity": 1, "pad": "x" * (64 * 1024)})
    assert len(big) > 65536
    assert_error(server.post(purchases, big), 413, "body_too_large")
    assert_error(server.post(purchases, json.dumps({"item_type": "sword", "quantity": 1}),
                             headers={"Content-Type": "text/plain"}), 415, "unsupported_media_type")
    assert_error(server.get("/v1/nope"), 404, "not_found")
    assert_error(server.get(f"/v1/users/{user}/purchases/extra"), 404, "not_found")
    r = server.get(f"/v1/users/{user}/purchases")
    assert_error(r, 405, "method_not_allowed")
    assert "POST" in r.headers["Allow"]
    r = server.session.post(server.url + f"/inventory/{user}", data="{}", headers=json_h)
    assert_error(r, 405, "method_not_allowed")
    assert "GET" in r.headers["Allow"]
    for bad in ("abc", '"abc"', '"1', "-1", '"1" x'):
        assert_error(server.post(purchases, {"item_type": "sword", "quantity": 1},
                                 headers={"If-Match": bad}), 400, "invalid_if_match")
    assert_error(server.post(purchases, {"item_type": "sword", "quantity": 1},
                             headers={"Idempotency-Key": "no spaces allowed"}),
                 400, "invalid_idempotency_key")
    assert_error(write(server, "PUT", f"/v1/users/{user}/guild", {"guild_id": "bad guild"},
                       wait=False), 400, "invalid_identifier")

    # Nothing of the above is in the log: the end offsets did not move, and the next
    # write of this user lands right after the first one on the same partition.
    assert end_offsets() == before
    second = buy(server, user, "gem", 1, wait=False)
    assert second.status_code == 202, second.text
    assert second.json()["partition"] == first.json()["partition"]
    assert second.json()["offset"] == first.json()["offset"] + 1
    assert server.quantities(user, after=second.json()["token"]) == {"gem": 2}


# --------------------------------------------------------------------------- 3. idempotency

def test_idempotency_key_counts_once_across_restart_and_rebuild(server, server_factory, user):
    key = uid("idem")
    r1 = buy(server, user, "gem", 5, wait=False, headers={"Idempotency-Key": key})
    r2 = buy(server, user, "gem", 5, wait=False, headers={"Idempotency-Key": key})
    assert r1.status_code == 202 and r2.status_code == 202, (r1.text, r2.text)
    assert r1.json()["event_id"] == r2.json()["event_id"] == key
    assert server.quantities(user, after=r2.json()["token"]) == {"gem": 5}
    ev = server.get(f"/v1/events/{key}")
    assert ev.status_code == 200, ev.text
    ev = ev.json()
    assert ev["event_id"] == key and ev["outcome"] == "applied" and ev["reason"] is None
    assert (ev["partition"], ev["offset"]) == (r1.json()["partition"], r1.json()["offset"])

    # Restart on the same database; the retry still counts once.
    server.stop()
    server.start()
    r3 = buy(server, user, "gem", 5, headers={"Idempotency-Key": key})
    assert r3.status_code == 200, r3.text
    assert r3.json()["event_id"] == key
    assert items_of(r3.json()["inventory"]) == {"gem": 5}
    last = buy(server, user, "gem", 1)
    assert items_of(applied(last)) == {"gem": 6}
    assert server.get(f"/v1/events/{key}").json()["outcome"] == "applied"

    # A brand-new database folds the whole topic from the start: the same answer.
    fresh = server_factory(name="fresh").start()
    r = fresh.get(f"/inventory/{user}",
                  params={"after": last.json()["token"], "timeout_ms": "20000"})
    assert r.status_code == 200, r.text
    assert items_of(r.json()) == {"gem": 6}
    assert r.headers["ETag"] == '"2"'
    assert fresh.get(f"/v1/events/{key}").json()["outcome"] == "applied"


# --------------------------------------------------------------------------- 4. read-your-writes

def test_after_token_returns_the_write(server, user):
    r = buy(server, user, "shield", 1, wait=False)
    assert r.status_code == 202
    ack = r.json()
    inv = server.get(f"/v1/users/{user}/inventory", params={"after": ack["token"]})
    assert inv.status_code == 200, inv.text
    assert items_of(inv.json()) == {"shield": 1}
    assert inv.json()["as_of"][str(ack["partition"])] > ack["offset"]


def test_many_parked_waiters_do_not_block_the_loop(server, user):
    ack = buy(server, user, "sword", 1, wait=False).json()
    p, o = ack["partition"], ack["offset"]
    server.quantities(user, after=ack["token"])
    token = f"{p}:{o + 1}"     # the next record of this partition: not written yet
    conns = []
    try:
        for _ in range(200):
            c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            c.request("GET", f"/inventory/{user}?after={token}&timeout_ms=20000")
            conns.append(c)
        # The event loop still answers other requests promptly.
        for _ in range(5):
            t0 = time.monotonic()
            h = requests.get(server.url + "/healthz", timeout=2)
            assert h.status_code == 200
            assert time.monotonic() - t0 < 0.5
        # A request without a token is not held back either.
        t0 = time.monotonic()
        assert server.quantities(user) == {"sword": 1}
        assert time.monotonic() - t0 < 0.5
        # None of the waiters has been answered: they wait for the token.
        readable, _, _ = select.select([c.sock for c in conns], [], [], 0)
        assert readable == [], f"{len(readable)} waiters answered before the token was reached"

        w = buy(server, user, "sword", 2, wait=False)
        assert w.status_code == 202
        assert (w.json()["partition"], w.json()["offset"]) == (p, o + 1)
        for c in conns:
            resp = c.getresponse()
            body = json.loads(resp.read())
            assert resp.status == 200, body
            assert items_of(body) == {"sword": 3}
            assert body["as_of"][str(p)] > o + 1
    finally:
        for c in conns:
            c.close()


def test_after_timeout_and_invalid_token(server, user):
    ack = buy(server, user, "bow", 1, wait=False).json()
    server.quantities(user, after=ack["token"])
    t0 = time.monotonic()
    r = server.get(f"/inventory/{user}",
                   params={"after": f'{ack["partition"]}:{ack["offset"] + 10**9}',
                           "timeout_ms": "200"})
    elapsed = time.monotonic() - t0
    assert r.status_code == 504, r.text
    body = r.json()
    assert body["error"] == "fold_timeout" and isinstance(body["message"], str)
    assert isinstance(body["as_of"], dict)
    assert body["as_of"][str(ack["partition"])] > ack["offset"]
    assert 0.19 <= elapsed < 1.5, elapsed
    for bad in ("abc", "1", "1:", ":5", "1:x", "-1:5", "1:-5", "1:5x", "99999:1"):
        assert_error(server.get(f"/inventory/{user}", params={"after": bad}), 400, "invalid_token")


def test_wait_applied_under_concurrent_load(server):
    """20 players written by 20 threads, 10 writes each with ?wait=applied: every answer
    carries the outcome and, when applied, exactly that player's state at that point."""
    users = [uid("load") for _ in range(20)]
    failures = []

    def run(u):
        try:
            s = requests.Session()
            held, version = 0, 0
            for i in range(10):
                if i % 2 == 0:
                    body, delta = {"item_type": "potion", "quantity": 2}, 2
                    path = f"/v1/users/{u}/purchases"
                elif i % 4 == 1:
                    body, delta = {"item_type": "potion", "quantity": 1}, -1
                    path = f"/v1/users/{u}/consumptions"
                else:
                    body, delta = {"item_type": "potion", "quantity": 1000}, None
                    path = f"/v1/users/{u}/consumptions"
                r = s.post(server.url + path, data=json.dumps(body),
                           params={"wait": "applied", "timeout_ms": "10000"},
                           headers={"Content-Type": "application/json"}, timeout=20)
                got = r.json()
                if delta is None:
                    assert r.status_code == 409, r.text
                    assert got["outcome"] == "rejected"
                    assert got["reason"] == "insufficient_quantity"
                else:
                    held += delta
                    version += 1
                    assert r.status_code == 200, r.text
                    assert got["outcome"] == "applied"
                    assert items_of(got["inventory"]) == {"potion": held}, got
                    assert r.headers["ETag"] == f'"{version}"'
        except Exception as exc:  # noqa: BLE001 - reported below
            failures.append(f"{u}: {exc!r}")

    threads = [threading.Thread(target=run, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert failures == []


# --------------------------------------------------------------------------- 5. If-Match

def test_if_match_sets_expected_version(server, user):
    applied(buy(server, user, "helmet", 1))
    applied(buy(server, user, "helmet", 1))
    r = server.inventory(user)
    etag = r.headers["ETag"]
    assert etag == '"2"'
    ok = buy(server, user, "helmet", 1, headers={"If-Match": etag})
    assert items_of(applied(ok)) == {"helmet": 3}
    assert ok.headers["ETag"] == '"3"'
    stale = rejected(buy(server, user, "helmet", 1, headers={"If-Match": etag}),
                     "version_conflict")
    r = server.inventory(user, after=stale["token"])
    assert items_of(r.json()) == {"helmet": 3}
    assert r.headers["ETag"] == '"3"'
    # If-Match compares strongly (RFC 9110): a weak tag never matches, even the current one.
    weak = consume(server, user, "helmet", 1, headers={"If-Match": 'W/"3"'})
    assert weak.status_code == 412 and weak.json()["error"] == "precondition_failed"
    assert items_of(applied(consume(server, user, "helmet", 1, headers={"If-Match": '"3"'}))) \
        == {"helmet": 2}


# --------------------------------------------------------------------------- 6. history

def test_history_pages_newest_first(server, user):
    guild = uid("hg")
    steps = [
        (buy(server, user, "sword", 1), None),
        (consume(server, user, "sword", 5), "insufficient_quantity"),
        (leave(server, user), "not_in_guild"),
        (join(server, user, guild), None),
        (join(server, user, uid("hg")), "already_in_guild"),
        (consume(server, user, "sword", 1), None),
        (buy(server, user, "potion", 3), None),
    ]
    for r, reason in steps:
        if reason:
            rejected(r, reason)
        else:
            applied(r)
    expected = [(r.json()["event_id"], r.json()["event_type"], reason) for r, reason in steps]
    # The join waits for its guild's decision, which the player's partition records as an
    # event of its own, right after the join.
    join_id = steps[3][0].json()["event_id"]
    expected.insert(4, (derived_event_id(join_id, "guild_join_decided"), "guild_join_decided", None))
    outcomes = ["rejected" if reason else "applied" for _, _, reason in expected]
    outcomes[3] = "pending"
    expected.reverse()
    outcomes.reverse()

    pages, cursor = [], None
    for _ in range(5):
        params = {"limit": "3"}
        if cursor is not None:
            params["cursor"] = cursor
        r = server.get(f"/v1/users/{user}/history", params=params)
        assert r.status_code == 200, r.text
        page = r.json()
        pages.append(page["events"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
        assert isinstance(cursor, str)
    assert [len(p) for p in pages] == [3, 3, 2]
    events = [e for p in pages for e in p]
    assert len(events) == 8
    assert [(e["event_id"], e["event_type"], e["reason"]) for e in events] == expected
    assert [e["outcome"] for e in events] == outcomes
    assert all(e["ts"] for e in events)
    offsets = [e["offset"] for e in events]
    assert offsets == sorted(offsets, reverse=True)

    assert_error(server.get(f"/v1/users/{user}/history", params={"limit": "0"}),
                 400, "invalid_limit")
    assert_error(server.get(f"/v1/users/{user}/history", params={"limit": "x"}),
                 400, "invalid_limit")
    assert_error(server.get(f"/v1/users/{user}/history", params={"cursor": "x"}),
                 400, "invalid_cursor")
    assert_error(server.get(f"/v1/users/{uid('nobody')}/history"), 404, "not_found")


# --------------------------------------------------------------------------- 7. seed endpoints

def test_seed_endpoints(server, user):
    guild = uid("seedg")
    agent = uid("seed-agent")
    h = {"User-Agent": agent, "Accept-Language": "de-CH,de;q=0.9", "Host": "game.example:5000"}
    before = end_offsets()

    r = server.get("/", headers=h)
    assert r.status_code == 200
    assert r.text == "This is the default response!\n"
    assert r.headers["Content-Type"].startswith("text/")

    r = server.get("/purchase_a_sword", params={"user_id": user}, headers=h)
    assert r.status_code == 200
    assert r.text == "Sword Purchased!\n"
    wait_until(lambda: server.quantities(user) == {"sword": 1}, 10, "the seed sword")

    r = server.get("/join_guild", params={"guild_id": guild, "user_id": user}, headers=h)
    assert r.status_code == 200
    assert r.text == "Joined guild!\n"
    wait_until(lambda: server.inventory(user).json()["guild_id"] == guild, 10, "the seed join")

    r = server.get("/join_guild", params={"user_id": user}, headers=h)
    assert r.status_code == 400, r.text
    assert r.json()["error"] == "missing_guild_id"

    mine = [v for _, v in records_since(before) if v["metadata"]["user_agent"] == agent]
    by_type = {v["event_type"]: v for v in mine}
    assert sorted(v["event_type"] for v in mine) == ["default", "join_guild", "purchase_sword"]
    assert by_type["default"]["user_id"] == "anonymous"
    assert by_type["purchase_sword"]["user_id"] == user
    assert by_type["purchase_sword"]["items"] == [{"item_type": "sword", "quantity": 1}]
    assert by_type["join_guild"]["user_id"] == user
    assert by_type["join_guild"]["guild_id"] == guild
    for v in mine:
        assert v["v"] == 1 and v["event_id"] and v["ts"]
        assert v["metadata"] == {"remote_addr": "127.0.0.1", "host": "game.example:5000",
                                 "user_agent": agent, "accept_language": "de-CH,de;q=0.9"}


# --------------------------------------------------------------------------- 8. catalog, filters

def test_catalog_filters_and_unknown_event(server, user):
    r = server.get("/v1/items")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("application/json")
    items = r.json()["items"]
    assert len(items) >= 12
    for it in items:
        assert it["item_type"] and it["category"] and it["rarity"], it
    assert {"sword", "axe", "bow", "shield", "helmet", "armor", "potion", "elixir", "scroll",
            "arrow", "gem", "mount"} <= {it["item_type"] for it in items}
    category = {it["item_type"]: it["category"] for it in items}

    r = write(server, "POST", f"/v1/users/{user}/purchases",
              {"items": [{"item_type": t, "quantity": n} for t, n in
                         [("sword", 1), ("bow", 2), ("axe", 3), ("potion", 4), ("gem", 5)]]})
    inv = applied(r)
    for line in inv["items"]:
        assert line["category"] == category[line["item_type"]]

    r = server.get(f"/inventory/{user}", params={"item_type": "sword,bow"})
    assert r.status_code == 200
    assert items_of(r.json()) == {"sword": 1, "bow": 2}
    r = server.get(f"/inventory/{user}", params={"category": "weapon"})
    assert items_of(r.json()) == {"sword": 1, "bow": 2, "axe": 3}
    assert all(l["category"] == "weapon" for l in r.json()["items"])
    r = server.get(f"/inventory/{user}", params={"category": "weapon", "item_type": "axe,gem"})
    assert items_of(r.json()) == {"axe": 3}
    r = server.get(f"/inventory/{user}", params={"item_type": "mount"})
    assert r.status_code == 200 and r.json()["items"] == []

    assert_error(server.get(f"/v1/events/{uid('never')}"), 404, "not_found")


# --------------------------------------------------------------------------- found bugs

def test_sigterm_answers_parked_requests_and_exits_cleanly(server, user):
    """Parked ?after= requests at SIGTERM get the 503 shutting_down that routes_free()
    means to send, and serve exits 0 (it must not crash on its way out)."""
    ack = buy(server, user, "scroll", 1, wait=False).json()
    server.quantities(user, after=ack["token"])
    token = f'{ack["partition"]}:{ack["offset"] + 1000}'   # far ahead: stays parked
    conns = []
    try:
        for _ in range(10):
            c = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
            c.request("GET", f"/inventory/{user}?after={token}&timeout_ms=20000")
            conns.append(c)
        for _ in range(2):
            assert requests.get(server.url + "/healthz", timeout=2).status_code == 200
        assert select.select([c.sock for c in conns], [], [], 0)[0] == []
        rc = server.stop()
        answers = []
        for c in conns:
            try:
                resp = c.getresponse()
                answers.append((resp.status, json.loads(resp.read()).get("error")))
            except (http.client.HTTPException, OSError) as exc:
                answers.append(("no answer", type(exc).__name__))
    finally:
        for c in conns:
            c.close()
    assert rc == 0, f"serve exited with {rc} on SIGTERM with parked requests:\n{server.tail(5)}"
    assert answers == [(503, "shutting_down")] * 10


def test_shared_idempotency_key_wait_applied_reports_own_outcome(server):
    """Dedupe is per player (docs/architecture.md), so two players may use the same
    Idempotency-Key; a ?wait=applied write must answer with its own event's outcome."""
    a, b = uid("ka"), uid("kb")
    ra, rb = buy(server, a, "gem", 1), buy(server, b, "gem", 1)
    applied(ra)
    applied(rb)
    if ra.json()["partition"] > rb.json()["partition"]:
        a, b = b, a          # a's records sort first by (partition, offset)
    key = uid("shared")
    applied(buy(server, a, "elixir", 1, headers={"Idempotency-Key": key}))
    # b holds no elixir: b's event is rejected by the fold ...
    r = consume(server, b, "elixir", 1, headers={"Idempotency-Key": key})
    hist = server.get(f"/v1/users/{b}/history", params={"limit": "1"}).json()["events"][0]
    assert (hist["event_id"], hist["outcome"], hist["reason"]) == \
        (key, "rejected", "insufficient_quantity")
    # ... and the write's answer must say so, not report a's outcome.
    assert r.status_code == 409, f"b's rejected event answered {r.status_code}: {r.text}"
    assert r.json()["reason"] == "insufficient_quantity"


def test_long_utf8_user_agent_is_kept_in_metadata(server, user):
    """Header values longer than the metadata field are truncated; a cut inside a UTF-8
    sequence must not make the whole field vanish from the event."""
    ua = "Mozilla/5.0 (Linux; " + "é" * 300 + ")"
    r = server.session.post(server.url + f"/v1/users/{user}/purchases",
                            data=json.dumps({"item_type": "sword", "quantity": 1}),
                            headers={"Content-Type": "application/json",
                                     "User-Agent": ua.encode("utf-8")}, timeout=15)
    assert r.status_code == 202, r.text
    [(_, value)] = kcat_read(r.json()["partition"], r.json()["offset"])
    meta = value["metadata"]
    assert "user_agent" in meta, f"user_agent dropped from the event's metadata: {meta}"
    assert meta["user_agent"] and ua.startswith(meta["user_agent"]), meta


def test_body_on_a_bodiless_method_does_not_poison_the_connection(server):
    """libevent leaves a GET's body unread; it must not be parsed as a next request."""
    import socket
    host, port = server.url[len("http://"):].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(b"GET /v1/items HTTP/1.1\r\nHost: x\r\nContent-Length: 20\r\n\r\n"
                     b"GET /nope HTTP/1.1\r\n")
        data = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode()
    assert head.startswith("HTTP/1.1 200")
    assert "Connection: close" in head
    assert data.count(b"HTTP/1.1 ") == 1  # the body was not answered as a request
