"""docs/openapi.yaml against a live lootlog.

test_openapi_conformance: a real `lootlog serve` (the `server` fixture, on the real Kafka of
the test stack) is driven by `schemathesis run` with docs/openapi.yaml, all four phases
(examples, coverage, fuzzing, stateful through the spec's links), positive and negative
data. It fails on any 5xx but the documented 503s (Kafka unavailable, overloaded, timed
out, too many waiting) and 504 (fold_timeout), on any status code, content type, header or
body the spec does not describe, on invalid input the server accepts, on valid input it
refuses, and on a wrong answer to a method a path does not take.

The run is bounded: a few examples per operation and phase (about 1000 requests, most of
them invalid ones that never reach Kafka), `timeout_ms` pinned to 150 so `?after=` and
`?wait=applied` never wait long, a fixed seed, and a hard deadline on the subprocess.
Generated user ids are whatever hypothesis draws; the shared `events` topic only gains
valid events, which any other test's fold replays harmlessly.

Some rules of the API are stated in the spec's words only, and generated requests that
break them would count as "valid input refused"; the hooks (`before_call`) keep such
requests inside the rules without making invalid ones valid: tokens name partitions the
topic has (`at_token` the player's own), `at` and `at_token` are not sent together,
`until` is not before `from`, `If-Match: *` is sent only for a player the server has
folded (else `"0"`), and an `Idempotency-Key` is sent again only with the same request
(else it gets a fresh suffix). 412 counts as a rejection of invalid input (a weak
`If-Match`).

test_edge_cases_match_spec / test_point_in_time_answers_match_spec /
test_no_fold_answers_match_spec: hand-made requests for the answers random generation
reaches only by luck (each fold outcome, paging, fold timeouts, size limits, idempotency,
If-Match forms, point-in-time reads, --no-fold), each checked against the spec the same way.

This file is also the schemathesis hooks module: the generated config names it, and the
CLI loads it under the module name `_schemathesis_hooks` (see the end of the file).
"""
import datetime
import json as jsonlib
import os
import re
import subprocess
import sys
import time

import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SPEC = os.path.join(ROOT, "docs", "openapi.yaml")

# Bounds of the run (overridable from the environment for a longer local soak).
MAX_EXAMPLES = int(os.environ.get("LOOTLOG_OPENAPI_EXAMPLES", "5"))  # per operation and phase
STATEFUL_STEPS = int(os.environ.get("LOOTLOG_OPENAPI_STATEFUL_STEPS", "6"))
SEED = os.environ.get("LOOTLOG_OPENAPI_SEED", "20261129")
DEADLINE_S = float(os.environ.get("LOOTLOG_OPENAPI_DEADLINE", "90"))
# ?after= / ?wait=applied wait at most this long (the spec allows 0..30000).
TIMEOUT_MS = 150

CHECKS = [
    "not_a_server_error",
    "status_code_conformance",
    "content_type_conformance",
    "response_headers_conformance",
    "response_schema_conformance",
    "negative_data_rejection",
    "positive_data_acceptance",
    "missing_required_header",
    "unsupported_method",
    "allow_header_conformance",
]

CONFIG = """\
hooks = "{hooks}"
seed = {seed}
workers = 1
request-timeout = 10
continue-on-failure = true
max-failures = 50
parameters = {{ "query.timeout_ms" = {timeout_ms} }}

[cache]
enabled = false

[generation]
mode = "all"
max-examples = {examples}
database = "none"
deterministic = false
# jansson refuses U+0000 anywhere in a body (400 invalid_json; see the spec).
allow-x00 = false

[phases.examples]
enabled = true

[phases.coverage]
enabled = true
# QUERY is unknown to libevent 2.1 and refused with 501 (see the spec's description);
# every method libevent knows must get the JSON 405 with Allow, TRACE included.
# (A body sent with GET/DELETE/OPTIONS/TRACE is left unread by libevent 2.1; the server
# closes such a connection after answering, so it cannot be parsed as a next request.)
unexpected-methods = ["get", "put", "post", "delete", "options", "patch", "trace"]

[phases.fuzzing]
enabled = true

[phases.stateful]
enabled = true
max-steps = {steps}

[checks]
enabled = false
{checks}

[checks.not_a_server_error]
enabled = true
# 503 (kafka_unavailable, overloaded) and 504 (fold_timeout) are documented answers;
# status_code_conformance still requires them to be documented for the operation.
expected-statuses = ["2xx", "3xx", "4xx", "503", "504"]

[checks.negative_data_rejection]
enabled = true
# The default rejections, plus 412: a weak If-Match (W/"7") is refused as a failed
# precondition (RFC 9110 strong comparison), which is what the spec documents.
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "412", "415", "422",
                     "428", "429", "5xx"]
"""


def write_config(tmp_path):
    checks = "\n".join(f"{name}.enabled = true" for name in CHECKS
                       if name not in ("not_a_server_error", "negative_data_rejection"))
    text = CONFIG.format(hooks=os.path.abspath(__file__), seed=SEED, timeout_ms=TIMEOUT_MS,
                         examples=MAX_EXAMPLES, steps=STATEFUL_STEPS, checks=checks)
    path = tmp_path / "schemathesis.toml"
    path.write_text(text)
    return path


def topic_partitions():
    """The test topic's partition count (tokens naming others are a 400)."""
    from conftest import BROKERS, TOPIC
    out = subprocess.run(["kcat", "-L", "-b", BROKERS, "-t", TOPIC], capture_output=True,
                         text=True, timeout=30, check=True).stdout
    return max(1, sum(1 for line in out.splitlines() if line.strip().startswith("partition ")))


def seed_state(server):
    """Gives the spec's examples (user `alice`, guild `knights`) something to read, so the
    200 shapes of the reads are checked and not only their 404s."""
    r = server.post("/v1/users/alice/purchases?wait=applied&timeout_ms=5000",
                    {"items": [{"item_type": "sword", "quantity": 1},
                               {"item_type": "potion", "quantity": 3}]})
    assert r.status_code in (200, 409), r.text
    r = server.session.put(server.url + "/v1/users/alice/guild?wait=applied&timeout_ms=5000",
                           json={"guild_id": "knights"}, timeout=15)
    assert r.status_code in (200, 409), r.text


def test_openapi_conformance(server, tmp_path):
    seed_state(server)
    config = write_config(tmp_path)
    args = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config),
            "--no-color", "run", SPEC, "--url", server.url,
            "--report", "junit", "--report-junit-path", str(tmp_path / "junit.xml")]
    env = dict(os.environ, PYTHONHASHSEED="0",
               LOOTLOG_OPENAPI_PARTITIONS=str(topic_partitions()),
               LOOTLOG_OPENAPI_URL=server.url)
    started = time.monotonic()
    try:
        proc = subprocess.run(args, cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=DEADLINE_S)
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"schemathesis did not finish within {DEADLINE_S}s:\n"
                             f"{exc.stdout or ''}\n{exc.stderr or ''}") from None
    elapsed = time.monotonic() - started
    output = proc.stdout + proc.stderr
    print(output)
    print(f"schemathesis took {elapsed:.1f}s")
    assert server.proc.poll() is None, "lootlog died during the run:\n" + server.tail()
    assert requests.get(server.url + "/healthz", timeout=2).status_code == 200
    assert proc.returncode == 0, (
        f"schemathesis found responses that do not match docs/openapi.yaml "
        f"(exit {proc.returncode}):\n{output[-20000:]}\nserver log:\n{server.tail()}")


# ---------------------------------------------------------------- helpers

def murmur2_partition(key, partitions):
    """Kafka's default partitioner (murmur2 of the key, sign bit cleared), which
    lootlog's producer uses: the partition a player's events and tokens are on."""
    data = key.encode("utf-8")
    m, mask = 0x5BD1E995, 0xFFFFFFFF
    h = (0x9747B28C ^ len(data)) & mask
    whole = len(data) - len(data) % 4
    for i in range(0, whole, 4):
        k = int.from_bytes(data[i:i + 4], "little")
        k = (k * m) & mask
        k ^= k >> 24
        k = (k * m) & mask
        h = ((h * m) & mask) ^ k
    tail = data[whole:]
    if len(tail) >= 3:
        h ^= tail[2] << 16
    if len(tail) >= 2:
        h ^= tail[1] << 8
    if tail:
        h ^= tail[0]
        h = (h * m) & mask
    h ^= h >> 13
    h = (h * m) & mask
    h ^= h >> 15
    return (h & 0x7FFFFFFF) % partitions


def instant_ms(text):
    """Milliseconds since 1970 of a `Time` as the server reckons it: the fields as
    written (31 February is 3 March), milliseconds from the first 3 fraction digits,
    minus the offset."""
    date, _, clock = text.partition("T")
    y, mo, d = (int(part) for part in date.split("-"))
    zone = re.search(r"(Z|[+-][0-9]{2}:[0-9]{2})$", clock)
    offset_s = 0
    if zone:
        clock = clock[:zone.start()]
        if zone.group(1) != "Z":
            sign = 1 if zone.group(1)[0] == "+" else -1
            offset_s = sign * (int(zone.group(1)[1:3]) * 3600 + int(zone.group(1)[4:6]) * 60)
    whole, _, fraction = clock.partition(".")
    h, mi, sec = (int(part) for part in whole.split(":"))
    # Days from 1970-01-01 to y-mo-01 (proleptic Gregorian), then the day as written.
    yy = y - (mo <= 2)
    era = yy // 400
    yoe = yy - era * 400
    doy = (153 * (mo + (-3 if mo > 2 else 9)) + 2) // 5
    days = era * 146097 + yoe * 365 + yoe // 4 - yoe // 100 + doy - 719468 + (d - 1)
    millis = int((fraction + "000")[:3])
    return ((days * 86400 + h * 3600 + mi * 60 + sec) - offset_s) * 1000 + millis


# ---------------------------------------------------------------- hand-picked cases

def spec_client(server):
    """call(method, path, ...) sends one request and checks its answer against the spec:
    documented status code, content type, headers and body schema."""
    import schemathesis
    from schemathesis.specs.openapi.checks import (content_type_conformance,
                                                   response_headers_conformance,
                                                   response_schema_conformance,
                                                   status_code_conformance)
    schema = schemathesis.openapi.from_path(SPEC)
    checks = [status_code_conformance, content_type_conformance, response_headers_conformance,
              response_schema_conformance]

    def call(method, path, path_parameters=None, query=None, headers=None, json=None, raw=None):
        operation = schema[path][method]
        case = operation.Case(path_parameters=path_parameters or {}, query=query or {},
                              headers=headers or {},
                              **({"body": json} if json is not None else {}))
        if raw is None and json is not None:
            raw = jsonlib.dumps(json)
        response = requests.request(method, server.url + case.formatted_path, params=query,
                                    headers={"Content-Type": "application/json",
                                             **(headers or {})}, data=raw, timeout=15)
        assert response.status_code < 500 or response.status_code in (503, 504), (
            f"{method} {case.formatted_path} {query}: {response.status_code} {response.text}")
        case.validate_response(response, checks=checks)
        return response

    return call


def test_edge_cases_match_spec(server, user):
    """Answers schemathesis reaches only by luck: every fold outcome of `?wait=applied`,
    paging, fold timeouts, the size limits. Each must be documented by the spec."""
    call = spec_client(server)
    wait = {"wait": "applied", "timeout_ms": "5000"}
    buy = "/v1/users/{user}/purchases"
    u = {"user": user}

    r = call("POST", buy, u, wait, {"If-Match": '"0"'}, {"item_type": "gem", "quantity": 2})
    assert r.status_code == 200 and r.headers["ETag"] == '"1"', r.text
    r = call("POST", buy, u, wait, {"If-Match": '"0"'}, {"item_type": "gem", "quantity": 2})
    assert (r.status_code, r.json()["reason"]) == (409, "version_conflict"), r.text
    r = call("POST", "/v1/users/{user}/consumptions", u, wait, json={"item_type": "gem",
                                                                    "quantity": 3})
    assert (r.status_code, r.json()["reason"]) == (409, "insufficient_quantity"), r.text

    guild, other = f"g-{user}", f"h-{user}"
    for member in (user, user + "-2"):
        r = call("PUT", "/v1/users/{user}/guild", {"user": member}, wait,
                 json={"guild_id": guild})
        assert r.status_code == 200, r.text
    r = call("PUT", "/v1/users/{user}/guild", u, wait, json={"guild_id": other})
    assert (r.status_code, r.json()["reason"]) == (409, "already_in_guild"), r.text
    r = call("GET", "/v1/guilds/{guild}", {"guild": guild}, {"limit": "1"})
    assert r.status_code == 200 and r.json()["next_cursor"], r.text
    r = call("GET", "/v1/guilds/{guild}", {"guild": guild},
             {"limit": "1", "cursor": r.json()["next_cursor"]})
    assert r.status_code == 200 and r.json()["next_cursor"] is None, r.text
    r = call("DELETE", "/v1/users/{user}/guild", u, wait)
    assert r.status_code == 200 and r.json()["inventory"]["guild_id"] is None, r.text
    r = call("DELETE", "/v1/users/{user}/guild", u, wait)
    assert (r.status_code, r.json()["reason"]) == (409, "not_in_guild"), r.text

    r = call("GET", "/v1/users/{user}/history", u, {"limit": "2"})
    assert r.status_code == 200 and r.json()["next_cursor"], r.text
    first_id = r.json()["events"][0]["event_id"]
    r = call("GET", "/v1/users/{user}/history", u, {"cursor": r.json()["next_cursor"]})
    assert r.status_code == 200 and r.json()["next_cursor"] is None, r.text
    r = call("GET", "/v1/events/{event_id}", {"event_id": first_id})
    assert r.status_code == 200 and r.json()["outcome"] == "rejected", r.text

    # Fold timeouts: a token far ahead; a write that may not wait at all.
    r = call("GET", "/inventory/{user}", u, {"after": "0:999999999999", "timeout_ms": "0"})
    assert r.status_code == 504 and r.json()["error"] == "fold_timeout", r.text
    r = call("POST", buy, u, {"wait": "applied", "timeout_ms": "0"},
             json={"item_type": "gem", "quantity": 1})
    assert r.status_code in (200, 504), r.text

    # Size and media-type limits.
    pad = '{"item_type": "gem", "quantity": 1, "pad": "%s"}'
    r = call("POST", buy, u, raw=pad % ("x" * 70000))
    assert r.status_code == 413, r.text
    r = call("POST", buy, u, raw=pad % ("x" * (1 << 20)))
    assert r.status_code == 413, r.text
    r = call("POST", buy, u, headers={"Content-Type": "text/plain"}, raw=pad % "")
    assert r.status_code == 415, r.text

    # Idempotency-Key: a retry of the same player's write is a duplicate answered with
    # the first outcome; another player's event with the same key is its own event.
    key = "k-" + user
    for target in (user, user, user + "-3"):
        r = call("POST", buy, {"user": target}, wait, {"Idempotency-Key": key},
                 {"item_type": "gem", "quantity": 1})
        assert r.status_code == 200 and r.json()["inventory"]["user_id"] == target, r.text
    r = call("GET", "/v1/events/{event_id}", {"event_id": key}, {"user_id": user + "-3"})
    assert r.status_code == 200 and r.json()["outcome"] == "applied", r.text
    r = call("GET", "/v1/users/{user}/history", u, {"limit": "1"})
    assert r.json()["events"][0]["outcome"] == "duplicate", r.text

    # The same player's key for another request (another type, body or If-Match) is a
    # 422, on every kind of write; nothing is produced.
    join = "/v1/users/{user}/guild"
    for method, path, query, json in [
            ("POST", buy, None, {"item_type": "gem", "quantity": 2}),
            ("POST", "/v1/users/{user}/consumptions", None, {"item_type": "gem", "quantity": 1}),
            ("PUT", join, None, {"guild_id": guild}),
            ("DELETE", join, None, None),
            ("GET", "/join_guild", {"user_id": user, "guild_id": guild}, None)]:
        r = call(method, path, None if query else u, query, {"Idempotency-Key": key}, json)
        assert (r.status_code, r.json()["error"]) == (422, "idempotency_key_reused"), r.text

    # If-Match: a weak tag never matches (412); * needs a player this server has folded
    # (412 for one it has not, also on a seed endpoint); 19 digits are out of range.
    gem = {"item_type": "gem", "quantity": 1}
    nobody = {"user": user + "-nobody"}
    r = call("POST", buy, nobody, headers={"If-Match": "*"}, json=gem)
    assert (r.status_code, r.json()["error"]) == (412, "precondition_failed"), r.text
    r = call("GET", "/purchase_a_sword", query={"user_id": user + "-nobody"},
             headers={"If-Match": "*"})
    assert (r.status_code, r.json()["error"]) == (412, "precondition_failed"), r.text
    r = call("POST", buy, u, headers={"If-Match": 'W/"1"'}, json=gem)
    assert (r.status_code, r.json()["error"]) == (412, "precondition_failed"), r.text
    r = call("DELETE", join, u, headers={"If-Match": '"1234567890123456789"'})
    assert (r.status_code, r.json()["error"]) == (400, "if_match_out_of_range"), r.text
    r = call("PUT", join, u, headers={"If-Match": "7"}, json={"guild_id": guild})
    assert (r.status_code, r.json()["error"]) == (400, "invalid_if_match"), r.text
    r = call("POST", buy, u, wait, {"If-Match": "*"}, gem)
    assert r.status_code == 200, r.text
    assert call("GET", "/inventory/{user}", nobody).status_code == 404


def utc_now_ms():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def test_point_in_time_answers_match_spec(server, user):
    """GET /inventory?at= / ?at_token= and GET /v1/users/{user}/changes: each answer the
    spec documents, with the values the spec's descriptions promise."""
    call = spec_client(server)
    wait = {"wait": "applied", "timeout_ms": "5000"}
    u = {"user": user}
    r = call("POST", "/v1/users/{user}/purchases", u, wait,
             json={"item_type": "sword", "quantity": 2})
    assert r.status_code == 200, r.text
    first = r.json()
    partitions = topic_partitions()
    # The partitioner the schemathesis hooks use to aim at_token at a player's partition.
    assert first["partition"] == murmur2_partition(user, partitions)
    time.sleep(0.02)
    between = utc_now_ms()
    time.sleep(0.02)
    r = call("POST", "/v1/users/{user}/consumptions", u, wait,
             json={"item_type": "sword", "quantity": 1})
    assert r.status_code == 200, r.text
    second = r.json()
    guild = "g-" + user
    r = call("PUT", "/v1/users/{user}/guild", u, wait, json={"guild_id": guild})
    assert r.status_code == 200, r.text

    for path, point in [("/inventory/{user}", {"at_token": first["token"]}),
                        ("/v1/users/{user}/inventory", {"at": between})]:
        r = call("GET", path, u, point)
        assert r.status_code == 200 and r.headers["ETag"] == '"1"', r.text
        body = r.json()
        assert body["at"] == next(iter(point.values())), body
        assert body["items"] == [{"item_type": "sword", "category": "weapon", "quantity": 2}]
        assert body["as_of_event"]["event_id"] == first["event_id"], body
        assert body["as_of_event"]["offset"] == first["offset"], body
        assert body["as_of"] == {str(first["partition"]): first["offset"] + 1}, body
    r = call("GET", "/inventory/{user}", u, {"at": "2000-01-01T00:00:00Z"})
    assert (r.status_code, r.json()["error"]) == (404, "not_found"), r.text
    for point, code in [({"at": between, "at_token": first["token"]}, "invalid_point"),
                        ({"at": "yesterday"}, "invalid_time"),
                        ({"at_token": "x"}, "invalid_token")] + (
                       [({"at_token": f"{(first['partition'] + 1) % partitions}:0"},
                         "invalid_token")] if partitions > 1 else []):
        r = call("GET", "/inventory/{user}", u, point)
        assert (r.status_code, r.json()["error"]) == (400, code), (point, r.text)

    changes = "/v1/users/{user}/changes"
    r = call("GET", changes, u, {"from": between})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["from"], body["until"]) == (between, None), body
    assert (body["version_before"], body["version_after"]) == (1, 3), body
    [sword] = body["items"]
    assert (sword["item_type"], sword["before"], sword["after"]) == ("sword", 2, 1), body
    assert [(e["event_id"], e["change"]) for e in sword["events"]] == [(second["event_id"], -1)]
    assert (body["guild"]["before"], body["guild"]["after"]) == (None, guild), body
    assert {e["event_type"] for e in body["guild"]["events"]} >= {"join_guild",
                                                                   "guild_join_decided"}, body
    r = call("GET", changes, u, {"from": "2000-01-01T00:00:00Z", "until": between})
    assert r.status_code == 200, r.text
    assert [(i["item_type"], i["before"], i["after"]) for i in r.json()["items"]] == [
        ("sword", 0, 2)], r.text
    for query in [{"until": between}, {"from": "soon"},
                  {"from": between, "until": "2000-01-01T00:00:00Z"}]:
        r = call("GET", changes, u, query)
        assert (r.status_code, r.json()["error"]) == (400, "invalid_time"), (query, r.text)
    r = call("GET", changes, {"user": user + "-nobody"}, {"from": between})
    assert (r.status_code, r.json()["error"]) == (404, "not_found"), r.text


def test_no_fold_answers_match_spec(server_factory, user):
    """A write-only front end (--no-fold): reads are 421, `wait=applied` is ignored."""
    front = server_factory(name="front", extra_args=["--no-fold"]).start()
    call = spec_client(front)
    r = call("POST", "/v1/users/{user}/purchases", {"user": user}, {"wait": "applied"},
             json={"item_type": "gem", "quantity": 1})
    assert r.status_code == 202, r.text
    for path, params in [("/inventory/{user}", {"user": user}),
                         ("/v1/users/{user}/inventory", {"user": user}),
                         ("/v1/users/{user}/history", {"user": user}),
                         ("/v1/guilds/{guild}", {"guild": "g"}),
                         ("/v1/users/{user}/changes", {"user": user}),
                         ("/v1/events/{event_id}", {"event_id": r.json()["event_id"]})]:
        r = call("GET", path, params, {"from": "2026-01-01T00:00:00Z"}
                 if path.endswith("/changes") else None)
        assert r.status_code == 421 and r.json()["error"] == "no_state_here", (path, r.text)
    # If-Match: * asks whether the player exists, which a front without state cannot tell.
    r = call("POST", "/v1/users/{user}/purchases", {"user": user}, headers={"If-Match": "*"},
             json={"item_type": "gem", "quantity": 1})
    assert r.status_code == 421 and r.json()["error"] == "no_state_here", r.text
    assert call("GET", "/readyz").status_code == 200


# ---------------------------------------------------------------- schemathesis hooks

if __name__ == "_schemathesis_hooks":
    import schemathesis

    PARTITIONS = int(os.environ.get("LOOTLOG_OPENAPI_PARTITIONS") or 1)
    SERVER_URL = os.environ.get("LOOTLOG_OPENAPI_URL", "")
    TOKEN = re.compile(r"^0*([0-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-5]):0*[0-9]{1,18}$")
    IDENTIFIER = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
    IF_MATCH = re.compile(r'^(\*|"(0|[1-9][0-9]{0,17})")$')
    TIME = re.compile(r"^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3])"
                      r":[0-5][0-9]:[0-5][0-9](\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})?$")
    KEYS_SEEN = {}  # Idempotency-Key -> the request it was first sent with
    KEY_SERIAL = iter(range(1, 1 << 62))

    def _case_user(case):
        """The player a request is about: the `user` path segment, or a seed endpoint's
        `user_id` (default `anonymous`)."""
        if "user" in (case.path_parameters or {}):
            return str(case.path_parameters["user"])
        if case.operation.path in ("/", "/purchase_a_sword", "/join_guild"):
            return str((case.query or {}).get("user_id", "anonymous"))
        return None

    def _player_exists(user):
        """Whether this server's fold has an applied event of user (what If-Match: *
        asks). A player never stops existing, so a yes stays true until the request."""
        if not SERVER_URL or not IDENTIFIER.match(user):
            return False
        import requests as http
        r = http.get(f"{SERVER_URL}/v1/users/{user}/inventory", timeout=10)
        return r.status_code == 200

    def _as_jansson_reads_it(value):
        """Whole floats as integers; integers clamped to 64 bits. Neither changes whether
        a body matches the spec (its bounds lie well inside 64 bits)."""
        if isinstance(value, float) and value.is_integer() and abs(value) < 2**63:
            return int(value)
        if isinstance(value, int) and not isinstance(value, bool):
            return max(-2**63, min(2**63 - 1, value))
        if isinstance(value, list):
            return [_as_jansson_reads_it(v) for v in value]
        if isinstance(value, dict):
            return {k: _as_jansson_reads_it(v) for k, v in value.items()}
        return value

    @schemathesis.hook
    def filter_case(context, case):
        """`.` and `..` are valid identifiers, but HTTP clients (urllib3 here) resolve them
        as dot segments before sending, so the request would reach another path."""
        return not any(str(v) in (".", "..") for v in (case.path_parameters or {}).values())

    @schemathesis.hook
    def before_call(context, case, kwargs):
        """JSON Schema counts 7.0 as an integer, and any integer as valid in a member the
        spec leaves open; lootlog (jansson) wants integer literals for quantities and
        prices (else 422) and refuses integers beyond 64 bits anywhere in a body (400), as
        the spec says in words. Send bodies the way the spec's words allow."""
        if isinstance(case.body, (dict, list)):
            case.body = _as_jansson_reads_it(case.body)
        # A header value with control characters is not HTTP (RFC 9110 field-value);
        # libevent refuses such a request with its own 400 before any route sees it.
        for name, value in list((case.headers or {}).items()):
            if isinstance(value, str) and any(ord(ch) < 0x20 or ord(ch) == 0x7f for ch in value):
                case.headers[name] = "".join(ch for ch in value
                                             if 0x20 <= ord(ch) != 0x7f) or "x"

        # A well-formed token must also name a partition the topic has, which the spec
        # can only say in words: keep generated tokens on the test topic's partitions.
        after = (case.query or {}).get("after")
        if isinstance(after, str) and TOKEN.match(after):
            partition, offset = after.split(":", 1)
            if int(partition) >= PARTITIONS:
                case.query["after"] = f"{int(partition) % PARTITIONS}:{offset}"

        # Rules of the point-in-time reads the spec states in words only. `at` and
        # `at_token` are one or the other: of the two, a malformed one is kept (a negative
        # case stays negative), else `at`. An `at_token` names the player's own partition.
        # `until` is not before `from`.
        query = case.query or {}
        if "at" in query and "at_token" in query:
            at_ok = isinstance(query["at"], str) and TIME.match(query["at"])
            token_ok = isinstance(query["at_token"], str) and TOKEN.match(query["at_token"])
            del query["at" if at_ok and not token_ok else "at_token"]
        at_token, user = query.get("at_token"), _case_user(case)
        if isinstance(at_token, str) and TOKEN.match(at_token) and user is not None:
            offset = at_token.split(":", 1)[1]
            query["at_token"] = f"{murmur2_partition(user, PARTITIONS)}:{offset}"
        start, end = query.get("from"), query.get("until")
        if all(isinstance(t, str) and TIME.match(t) for t in (start, end)):
            if instant_ms(end) < instant_ms(start):
                query["from"], query["until"] = end, start

        # The coverage phase narrows generated header values to [A-Za-z0-9] and so, for
        # its "required and optional properties" case, sends If-Match: 0 as a valid
        # value although it does not match the spec's pattern (the quotes are part of
        # the value). Send the value the case means: a quoted version.
        headers = case.headers or {}
        if_match = headers.get("If-Match")
        positive = case.meta is not None and case.meta.generation.mode.is_positive
        if positive and isinstance(if_match, str) and not IF_MATCH.match(if_match):
            headers["If-Match"] = f'"{if_match}"' if IF_MATCH.match(f'"{if_match}"') else '"0"'

        # If-Match: * asks that the player exist, which no schema can say; for a player
        # this server has not folded, ask for version "0" instead (also well-formed, and
        # the answer is then the fold's version_conflict, not a 412).
        if headers.get("If-Match") == "*" and user is not None and not _player_exists(user):
            headers["If-Match"] = '"0"'

        # An Idempotency-Key is the player's for one request: sent again for another
        # request it is a 422 idempotency_key_reused. Generation reuses values freely, so a
        # well-formed key sent before with a different request gets a fresh suffix; a
        # resend of the same request keeps its key (a retry, which must go through).
        key = headers.get("Idempotency-Key")
        if isinstance(key, str) and IDENTIFIER.match(key):
            request = jsonlib.dumps([case.method, case.operation.path, case.path_parameters,
                                     user, query, headers.get("If-Match"), case.body],
                                    sort_keys=True, default=repr)
            if KEYS_SEEN.setdefault(key, request) != request:
                key = f"{key[:40]}-{next(KEY_SERIAL):x}"
                headers["Idempotency-Key"] = key
                KEYS_SEEN[key] = request

    @schemathesis.deserializer("text/html")
    def deserialize_html(ctx, response):
        """The seed endpoints answer text/html; validate their text against the spec."""
        return response.content.decode("utf-8")
