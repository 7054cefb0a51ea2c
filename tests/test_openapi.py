"""docs/openapi.yaml against a live lootlog.

test_openapi_conformance: a real `lootlog serve` (the `server` fixture, on the real Kafka of
the test stack) is driven by `schemathesis run` with docs/openapi.yaml, all four phases
(examples, coverage, fuzzing, stateful through the spec's links), positive and negative
data. It fails on any 5xx but the documented 503 (Kafka unavailable / overloaded) and 504
(fold_timeout), on any status code, content type, header or body the spec does not
describe, on invalid input the server accepts, on valid input it refuses, and on a wrong
answer to a method a path does not take.

The run is bounded: a few examples per operation and phase (about 800 requests, most of
them invalid ones that never reach Kafka), `timeout_ms` pinned to 150 so `?after=` and
`?wait=applied` never wait long, a fixed seed, and a hard deadline on the subprocess.
Generated user ids are whatever hypothesis draws; the shared `events` topic only gains
valid events, which any other test's fold replays harmlessly.

test_edge_cases_match_spec / test_no_fold_answers_match_spec: hand-made requests for the
answers random generation reaches only by luck (each fold outcome, paging, fold timeouts,
size limits, idempotency, --no-fold), each checked against the spec the same way.

This file is also the schemathesis hooks module: the generated config names it, and the
CLI loads it under the module name `_schemathesis_hooks` (see the end of the file).
"""
import json as jsonlib
import os
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
"""


def write_config(tmp_path):
    checks = "\n".join(f"{name}.enabled = true" for name in CHECKS
                       if name != "not_a_server_error")
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
               LOOTLOG_OPENAPI_PARTITIONS=str(topic_partitions()))
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
                         ("/v1/events/{event_id}", {"event_id": r.json()["event_id"]})]:
        r = call("GET", path, params)
        assert r.status_code == 421 and r.json()["error"] == "no_state_here", (path, r.text)
    assert call("GET", "/readyz").status_code == 200


# ---------------------------------------------------------------- schemathesis hooks

if __name__ == "_schemathesis_hooks":
    import re

    import schemathesis

    PARTITIONS = int(os.environ.get("LOOTLOG_OPENAPI_PARTITIONS") or 1)
    TOKEN = re.compile(r"^0*([0-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-5]):[0-9]+$")

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

    @schemathesis.deserializer("text/html")
    def deserialize_html(ctx, response):
        """The seed endpoints answer text/html; validate their text against the spec."""
        return response.content.decode("utf-8")
