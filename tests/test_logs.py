"""Logs: `--log-format json` makes every line one JSON object (ts, level, module, msg and
the call site's fields), librdkafka's own lines go through the same logger, the access
log has one line per request, and no line holds a secret or a raw payload byte."""
import json
import re
import socket
import subprocess
import time
import uuid

import requests
from confluent_kafka import Producer

from conftest import BIN, BROKERS, create_topic, wait_until

TS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
LEVELS = {"debug", "info", "warn", "error"}


def json_lines(raw):
    """Every line of raw (bytes) as a JSON object; fails on any line that is not one."""
    text = raw.decode("utf-8")  # strict: a raw invalid byte fails here
    lines = []
    for line in text.splitlines():
        obj = json.loads(line)
        assert isinstance(obj, dict), line
        assert TS.match(obj["ts"]) and obj["level"] in LEVELS, line
        assert isinstance(obj["module"], str) and isinstance(obj["msg"], str), line
        lines.append(obj)
    return lines


def raw_request(port, request):
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        s.sendall(request)
        return s.recv(4096)


def test_serve_json_logs(server_factory):
    topic = create_topic(f"logs-{uuid.uuid4().hex[:8]}")
    token = "adm-" + uuid.uuid4().hex
    secret_query = "q-" + uuid.uuid4().hex
    # A consumer-only setting passed to every client makes each producer's librdkafka say
    # so (CONFWARN) at start: a librdkafka line on every run, whatever the broker does.
    s = server_factory(name="json", topic=topic, env={"LOOTLOG_ADMIN_TOKEN": token},
                       extra_args=["--log-format", "json", "--access-log",
                                   "-X", "fetch.error.backoff.ms=500"]).start()
    user = "u-" + uuid.uuid4().hex[:10]
    assert s.buy(user, "sword", 1).status_code == 202
    r = s.get(f"/inventory/{user}", params={"after": secret_query, "wait_ms": "5"})
    assert r.status_code in (200, 400, 404)
    admin = s.session.get(s.url + "/admin/snapshots", headers={"Authorization": f"Bearer {token}"},
                          timeout=10)
    assert admin.status_code < 500
    # A path with a raw invalid byte, a control byte and a quote.
    assert raw_request(s.port, b"GET /inventory/a\xff\x01b\"c HTTP/1.1\r\nHost: x\r\n"
                               b"Connection: close\r\n\r\n").startswith(b"HTTP/1.1 ")

    # A dead letter produced straight to Kafka: bytes that are no event.
    payload = b"not an event \xff\xfe\x00 \n{\"user_id\": \"forged\"}"
    delivered = []
    producer = Producer({"bootstrap.servers": BROKERS})
    producer.produce(topic, key=b"dead-" + user.encode(), value=payload,
                     on_delivery=lambda err, msg: delivered.append((err, msg.partition(),
                                                                    msg.offset())))
    producer.flush(30)
    err, partition, offset = delivered[0]
    assert err is None

    def dead_letter_logged():
        for line in json_lines(open(s.log_path, "rb").read()):
            if line["module"] == "fold" and line["msg"].startswith("dead letter"):
                return line
    dead = wait_until(dead_letter_logged, 30, "the dead letter's log line")
    assert dead["level"] == "warn"
    assert dead["partition"] == partition and dead["offset"] == offset

    def access_logged():
        lines = json_lines(open(s.log_path, "rb").read())
        return len([x for x in lines if x["module"] == "access"]) >= 4 and lines
    wait_until(access_logged, 10, "the access log lines")
    assert s.stop() == 0
    raw = open(s.log_path, "rb").read()
    lines = json_lines(raw)

    # Startup, librdkafka, access: all there, as JSON.
    assert any(x["module"] == "serve" and x["msg"].startswith("lootlog ") for x in lines)
    kafka = [x for x in lines if x["module"] == "kafka"]
    assert kafka and all("facility" in x and "client" in x for x in kafka)
    assert any(x["facility"] == "CONFWARN" and x["level"] == "warn" for x in kafka), kafka
    access = {(x["method"], x["path"]): x for x in lines if x["module"] == "access"}
    buy = access[("POST", f"/v1/users/{user}/purchases")]
    assert buy["status"] == 202 and buy["duration_us"] >= 0 and buy["query"] == ""
    read = access[("GET", f"/inventory/{user}")]
    assert read["query"] == "after,wait_ms" and read["status"] == r.status_code
    assert access[("GET", "/admin/snapshots")]["status"] == admin.status_code
    odd = [x for x in lines if x["module"] == "access" and x["path"].startswith("/inventory/a")]
    assert odd and odd[0]["path"] == "/inventory/a\ufffd\x01b\"c"  # escaped on the wire

    # No secret and no raw payload byte on any line.
    assert token.encode() not in raw and secret_query.encode() not in raw
    assert b"Bearer" not in raw and b"Authorization" not in raw
    assert b"\xff" not in raw and b"\x00" not in raw and b"\x01" not in raw
    assert not any(c < 0x20 and c != 0x0a for c in raw)


def test_librdkafka_errors_and_cli_errors_are_json_lines(tmp_path):
    """A client pointed at a closed port: librdkafka's connection failures (once
    `%3|…|FAIL|…`) and the verb's own error are JSON lines of the same logger."""
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    started = time.monotonic()
    out = subprocess.run([BIN, "topic", "ensure", "--brokers", f"127.0.0.1:{closed}",
                          "--topic", "never", "--db", str(tmp_path / "none"),
                          "--log-format", "json"],
                         capture_output=True, timeout=60)
    assert out.returncode == 1
    assert time.monotonic() - started < 30
    lines = json_lines(out.stderr)
    fails = [x for x in lines if x["module"] == "kafka" and x["facility"] == "FAIL"]
    assert fails and all(x["level"] == "error" for x in fails), lines
    assert "Connection refused" in fails[0]["msg"]
    assert not any(line.startswith(b"%") for line in out.stderr.splitlines())
    assert any(x["module"] == "topic" and x["level"] == "error" and "never" in x["msg"]
               for x in lines), lines


def test_text_lines_cannot_be_forged(server_factory):
    """In the default text format, a request path holding a carriage return, a control
    byte and invalid UTF-8 stays on its one line, escaped."""
    s = server_factory(name="text", extra_args=["--access-log"]).start()
    raw_request(s.port, b"GET /x\x0d\x0b\xc3\x28evil HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    requests.get(s.url + "/healthz", timeout=5)
    wait_until(lambda: b"/healthz" in open(s.log_path, "rb").read(), 10, "the access lines")
    s.stop()
    raw = open(s.log_path, "rb").read()
    line = [x for x in raw.split(b"\n") if b" access: " in x and b"/x" in x]
    assert len(line) == 1, raw
    assert b"/x\\r\\x0b\\xc3(evil" in line[0], line[0]
    raw.decode("utf-8")  # nothing invalid written raw
