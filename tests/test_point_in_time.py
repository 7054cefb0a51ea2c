"""Point-in-time reads (docs/design.md, "Point-in-time reads"): GET /inventory/<u>?at=<time>
and ?at_token=<p>:<o>, and GET /v1/users/<u>/changes, rebuilt from the player's own
history. The reference is what an operator did before: `lootlog replay --until-time T`
of the same topic, whose stores are read here field by field."""
import datetime
import random
import re
import subprocess
import time
import uuid

from conftest import (BIN, BROKERS, create_topic, query_stores, wait_quiescent, wait_until)

CAPACITY = 3


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def replayed_state(db, user):
    """(version, guild_id, {item: quantity}) of user in a replayed state folder, or None."""
    # version > 0: a guild's partition keeps a row (version 0) for the players whose
    # requests it decided; the player's own row is in the player's partition.
    rows = query_stores(db, "SELECT version, guild_id FROM players WHERE user_id = ? "
                            "AND version > 0", (user,))
    if not rows:
        return None
    version, guild = rows[0]
    items = dict(query_stores(db, "SELECT i.item_type, i.quantity FROM inventory i JOIN players p "
                                  "ON p.player_key = i.player_key WHERE p.user_id = ?", (user,)))
    return version, guild, items


def state_at(server, user, **params):
    r = server.get(f"/inventory/{user}", params=params)
    if r.status_code == 404:
        return None
    assert r.status_code == 200, r.text
    body = r.json()
    assert r.headers["ETag"] == f'"{body["version"]}"'
    return body["version"], body["guild_id"], {i["item_type"]: i["quantity"] for i in body["items"]}


def play_phase(server, users, guilds, rng, tokens):
    """One burst of a game's traffic: carts, uses that may fail, joins that race for
    seats, leaves, stale If-Match writes. Joins wait for their guild's decision."""
    for user in users:
        kind = rng.random()
        if kind < 0.35:
            items = [{"item_type": rng.choice(["sword", "potion", "arrow", "gem"]),
                      "quantity": rng.randint(1, 5)} for _ in range(rng.randint(1, 3))]
            r = server.post(f"/v1/users/{user}/purchases", {"items": items})
        elif kind < 0.6:
            r = server.post(f"/v1/users/{user}/consumptions",
                            {"item_type": rng.choice(["sword", "potion", "arrow"]),
                             "quantity": rng.randint(1, 4)})
        elif kind < 0.75:
            r = server.session.put(f"{server.url}/v1/users/{user}/guild",
                                   params={"wait": "applied", "timeout_ms": 20000},
                                   json={"guild_id": rng.choice(guilds)}, timeout=30)
        elif kind < 0.85:
            r = server.session.delete(f"{server.url}/v1/users/{user}/guild",
                                      params={"wait": "applied", "timeout_ms": 20000}, timeout=30)
        else:
            r = server.post(f"/v1/users/{user}/purchases", {"item_type": "gem", "quantity": 1},
                            headers={"If-Match": '"999"'})  # a stale version: rejected
        assert r.status_code in (200, 202, 409), r.text
        tokens.setdefault(user, []).append(r.json()["token"])


def test_at_equals_a_replay_until_that_time(server_factory, tmp_path):
    topic = create_topic("pit-" + uuid.uuid4().hex[:8])
    s = server_factory(topic=topic, extra_args=["--guild-capacity", str(CAPACITY)]).start()
    rng = random.Random(14)
    prefix = "t" + uuid.uuid4().hex[:6]
    users = [f"{prefix}-{i}" for i in range(30)]
    guilds = [f"{prefix}-g{i}" for i in range(3)]
    points, tokens = [], {}
    for phase in range(4):
        play_phase(s, users, guilds, rng, tokens)
        for user in users:  # every write of the phase folded before the point
            wait_until(lambda: s.inventory(user, after=tokens[user][-1]).status_code in (200, 404),
                       20, "the phase to be folded")
        time.sleep(0.2)
        points.append(utc_now())
        time.sleep(0.2)
    wait_quiescent(s.db, topic, 60)

    compared = differing = rejected = 0
    for point in points:
        rebuilt = str(tmp_path / f"until-{len(point)}-{points.index(point)}")
        out = subprocess.run([BIN, "replay", "--brokers", BROKERS, "--topic", topic, "--db",
                              rebuilt, "--until-time", point], capture_output=True, text=True,
                             timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
        for user in rng.sample(users, 20):
            want = replayed_state(rebuilt, user)
            got = state_at(s, user, at=point)
            compared += 1
            differing += want != got
            assert got == want, (user, point, got, want)
    for user in users:
        history = s.get(f"/v1/users/{user}/history", params={"limit": "1000"}).json()["events"]
        rejected += sum(1 for e in history if e["outcome"] == "rejected")
    print(f"\npoint-in-time: {compared} (player, time) pairs equal to replay --until-time, "
          f"{differing} differing; {rejected} rejected events among them")
    assert rejected > 0
    guild_players = {u for u in users if state_at(s, u, at=points[-1]) and
                     state_at(s, u, at=points[-1])[1]}
    assert guild_players, "some players should be in guilds"

    # at_token: the state right after one of the player's own writes.
    user = users[0]
    token = tokens[user][1]
    by_token = s.get(f"/inventory/{user}", params={"at_token": token})
    if by_token.status_code == 200:
        body = by_token.json()
        assert body["at"] == token
        assert body["as_of_event"]["offset"] <= int(token.split(":")[1])
    # Before the player's first event: 404; an unparsable point or a foreign token: 400.
    assert s.get(f"/inventory/{user}", params={"at": "2000-01-01T00:00:00Z"}).status_code == 404
    assert s.get(f"/inventory/{user}", params={"at": "1969-12-31T23:59:59.999Z"}).status_code == 404
    assert s.get(f"/inventory/{user}", params={"at": "yesterday"}).json()["error"] == "invalid_time"
    for loose in ("2026-11-29T08:00:00+1:1", "2026-11-29T08:00:00+-1:-1", "2026-11-29T08:00:00+01"):
        assert s.get(f"/inventory/{user}", params={"at": loose}).json()["error"] == "invalid_time"
    # An offset is honoured: the same instant written two ways gives the same answer.
    instant = datetime.datetime.strptime(points[-1], "%Y-%m-%dT%H:%M:%S.%fZ")
    shifted = (instant + datetime.timedelta(hours=2)).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "+02:00"
    assert state_at(s, user, at=shifted) == state_at(s, user, at=points[-1])
    other_partition = (int(token.split(":")[0]) + 1) % 6
    r = s.get(f"/inventory/{user}", params={"at_token": f"{other_partition}:1"})
    assert r.status_code == 400 and r.json()["error"] == "invalid_token"
    r = s.get(f"/inventory/{user}", params={"at": points[0], "at_token": token})
    assert r.status_code == 400


def test_changes_between_two_points(server_factory):
    s = server_factory().start()
    user = "c" + uuid.uuid4().hex[:10]
    guild = "g" + uuid.uuid4().hex[:10]
    assert s.buy(user, "sword", 2).status_code == 202
    last = s.buy(user, "potion", 5).json()["token"]
    s.inventory(user, after=last)
    time.sleep(0.05)
    start = utc_now()
    time.sleep(0.05)
    steps = [s.post(f"/v1/users/{user}/consumptions", {"item_type": "potion", "quantity": 3}),
             s.post(f"/v1/users/{user}/consumptions", {"item_type": "sword", "quantity": 9}),
             s.buy(user, "arrow", 20)]
    join = s.session.put(f"{s.url}/v1/users/{user}/guild", params={"wait": "applied"},
                         json={"guild_id": guild}, timeout=30)
    assert join.status_code == 200
    s.inventory(user, after=steps[-1].json()["token"])
    time.sleep(0.05)
    end = utc_now()
    s.buy(user, "gem", 1)  # after the span: not in the answer

    r = s.get(f"/v1/users/{user}/changes", params={"from": start, "until": end})
    assert r.status_code == 200, r.text
    body = r.json()
    lines = {line["item_type"]: line for line in body["items"]}
    assert set(lines) == {"potion", "sword", "arrow"}
    assert (lines["potion"]["before"], lines["potion"]["after"]) == (5, 2)
    assert (lines["arrow"]["before"], lines["arrow"]["after"]) == (0, 20)
    sword = lines["sword"]
    assert (sword["before"], sword["after"]) == (2, 2)  # the use was refused: no change
    assert [(e["outcome"], e["reason"], e["change"]) for e in sword["events"]] == \
        [("rejected", "insufficient_quantity", 0)]
    for line in lines.values():
        assert line["after"] - line["before"] == sum(e["change"] for e in line["events"])
    assert body["guild"]["before"] is None and body["guild"]["after"] == guild
    assert [e["event_type"] for e in body["guild"]["events"]] == ["join_guild", "guild_join_decided"]
    assert body["version_after"] - body["version_before"] == 3  # use, arrows, the decided join

    assert s.get(f"/v1/users/{user}/changes").json()["error"] == "invalid_time"
    r = s.get(f"/v1/users/{user}/changes", params={"from": end, "until": start})
    assert r.status_code == 400
    assert s.get(f"/v1/users/{user}x/changes", params={"from": start}).status_code == 404


def test_support_guide_examples_run(server_factory):
    """The curl examples of docs/support.md, run as written against a real serve (only
    the address, the player and the times filled in): each answers 200 with JSON."""
    import json
    import os
    s = server_factory().start()
    user = "s" + uuid.uuid4().hex[:10]
    s.buy(user, "sword", 1)
    t0 = utc_now()
    time.sleep(0.05)
    token = s.post(f"/v1/users/{user}/consumptions", {"item_type": "sword", "quantity": 1}).json()["token"]
    s.inventory(user, after=token)
    time.sleep(0.05)
    t1 = utc_now()
    doc = open(os.path.join(os.path.dirname(__file__), "..", "docs", "support.md")).read()
    commands = re.findall(r"^(curl .+)$", doc, flags=re.M)
    assert len(commands) >= 4
    for command in commands:
        command = (command.replace("http://127.0.0.1:8080", s.url).replace("alice", user)
                   .replace("2026-11-28T20:00:00Z", t0).replace("2026-11-29T09:00:00Z", t1)
                   .replace("3:1042", token))
        out = subprocess.run(["bash", "-c", command + " -sS -w '\\n%{http_code}'"],
                             capture_output=True, text=True, timeout=30)
        body, _, code = out.stdout.rpartition("\n")
        assert code == "200", (command, out.stdout, out.stderr)
        json.loads(body)
