"""GET /metrics under real traffic: counters and histograms move with the writes, reads,
folds and snapshots that caused them; a real scrape passes `promtool check metrics`; and
every series the shipped Grafana dashboard queries exists in a real scrape."""
import json
import os
import re
import shutil
import subprocess
import time
import uuid

import pytest

from conftest import ROOT, WEBHDFS, create_topic, wait_until

TOKEN = "metrics-" + uuid.uuid4().hex
INSTALL_TOOLS = os.path.join(ROOT, "tests", "tools", "install-test-tools")
DASHBOARD = os.path.join(ROOT, "docs", "grafana-dashboard.json")
SERIES = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)$')
LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def tool(name):
    """The path of a test tool, installed by tests/tools/install-test-tools if missing."""
    if not shutil.which(name):
        subprocess.run([INSTALL_TOOLS], check=True, timeout=900)
    path = shutil.which(name)
    assert path, f"{name} is missing after {INSTALL_TOOLS}"
    return path


def parse(text):
    """The exposition as ({(name, frozenset(labels)): value}, {family: type})."""
    samples, types = {}, {}
    for line in text.splitlines():
        if line.startswith("# TYPE "):
            _, _, family, kind = line.split(" ", 3)
            types[family] = kind
            continue
        if not line or line.startswith("#"):
            continue
        m = SERIES.match(line)
        assert m, f"not an exposition line: {line!r}"
        labels = frozenset(LABEL.findall(m.group(3) or ""))
        samples[(m.group(1), labels)] = float(m.group(4))
    return samples, types


def value(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


def total(samples, name, **labels):
    """Sum over the series of name whose labels include labels."""
    want = set(labels.items())
    return sum(v for (n, lab), v in samples.items() if n == name and want <= set(lab))


def scrape(server):
    r = server.get("/metrics")
    assert r.status_code == 200
    assert r.headers["Content-Type"].startswith("text/plain; version=0.0.4")
    return r.text


@pytest.fixture
def metered(server_factory, tmp_path):
    """A serve with snapshots on a topic of its own, so the counts are this test's."""
    topic = create_topic("metrics-" + uuid.uuid4().hex[:10])
    root = f"/lootlog-metrics-{uuid.uuid4().hex[:8]}"
    return server_factory(name="metrics", topic=topic, env={"LOOTLOG_ADMIN_TOKEN": TOKEN},
                          extra_args=["--snapshot-url",
                                      f"webhdfs://{WEBHDFS[len('http://'):]}{root}"]).start()


def test_metrics_move_under_traffic_and_pass_promtool(metered):
    s = metered
    before, types = parse(scrape(s))
    assert value(before, "lootlog_build_info", version="0.1.0",
                 commit=next(dict(l)["commit"] for (n, l) in before if n == "lootlog_build_info")) == 1

    users = [f"m-{uuid.uuid4().hex[:8]}-{i}" for i in range(12)]
    tokens = []
    for user in users:
        r = s.buy(user, "sword", 2)
        assert r.status_code == 202, r.text
        tokens.append(r.json()["token"])
    assert s.post(f"/v1/users/{users[0]}/consumptions", {"item_type": "sword", "quantity": 1},
                  params={"wait": "applied"}).status_code == 200
    assert s.post(f"/v1/users/{users[1]}/consumptions",
                  {"item_type": "sword", "quantity": 99}).status_code == 202  # folds: rejected
    assert s.buy(users[2], "laser", 1).status_code == 422
    for user, token in zip(users, tokens):
        assert s.get(f"/inventory/{user}", params={"after": token}).status_code == 200
    assert s.get("/no/such/route").status_code == 404
    s.session.request("PUT", s.url + "/v1/items", timeout=5)  # 405

    wait_until(lambda: s.get("/readyz").json().get("fold_lag") == 0, 60, "fold lag 0")
    after, types = parse(scrape(s))

    # writes: by result, by event type, and the produce acknowledgement histogram
    assert value(after, "lootlog_writes_total", result="acked") - \
        value(before, "lootlog_writes_total", result="acked") == 14
    assert value(after, "lootlog_writes_total", result="invalid") - \
        value(before, "lootlog_writes_total", result="invalid") == 1
    assert value(after, "lootlog_events_produced_total", event_type="purchase_item") - \
        value(before, "lootlog_events_produced_total", event_type="purchase_item") == 12
    assert value(after, "lootlog_events_produced_total", event_type="consume_item") - \
        value(before, "lootlog_events_produced_total", event_type="consume_item") == 2
    assert value(after, "lootlog_produce_ack_seconds_count") - \
        value(before, "lootlog_produce_ack_seconds_count") == 14
    assert value(after, "lootlog_produce_ack_seconds_sum") > value(before, "lootlog_produce_ack_seconds_sum")

    # HTTP: route templates, never raw paths; method and status
    route = "/v1/users/{user}/purchases"
    assert value(after, "lootlog_http_request_duration_seconds_count", route=route,
                 method="POST", status="202") - \
        value(before, "lootlog_http_request_duration_seconds_count", route=route,
              method="POST", status="202") == 12
    assert value(after, "lootlog_http_request_duration_seconds_count", route=route,
                 method="POST", status="422") >= 1
    assert value(after, "lootlog_http_request_duration_seconds_count",
                 route="/v1/users/{user}/consumptions", method="POST", status="200") >= 1
    assert value(after, "lootlog_http_request_duration_seconds_count", route="/inventory/{user}",
                 method="GET", status="200") >= 12
    assert value(after, "lootlog_http_request_duration_seconds_count", route="unmatched",
                 method="GET", status="404") >= 1
    assert value(after, "lootlog_http_request_duration_seconds_count", route="unmatched",
                 method="PUT", status="405") >= 1
    routes = {dict(l).get("route") for (n, l) in after if n.startswith("lootlog_http_request")}
    assert not any(u in (r or "") for r in routes for u in users), routes
    # a histogram's buckets are cumulative and end at its count
    buckets = sorted((float(dict(l)["le"]), v) for (n, l), v in after.items()
                     if n == "lootlog_http_request_duration_seconds_bucket"
                     and dict(l)["route"] == route and dict(l)["status"] == "202")
    assert [v for _, v in buckets] == sorted(v for _, v in buckets)
    assert buckets[-1] == (float("inf"), value(after, "lootlog_http_request_duration_seconds_count",
                                               route=route, method="POST", status="202"))

    # the fold: outcomes, commits, freshness, lag and next offset per partition
    assert value(after, "lootlog_fold_events_total", outcome="applied") - \
        value(before, "lootlog_fold_events_total", outcome="applied") == 13
    assert value(after, "lootlog_fold_events_total", outcome="rejected") - \
        value(before, "lootlog_fold_events_total", outcome="rejected") == 1
    # ... and by event type: every valid record folded counts once under its type
    by_type = sum(value(after, "lootlog_fold_events_by_type_total", event_type=t) -
                  value(before, "lootlog_fold_events_by_type_total", event_type=t)
                  for t in ("default", "purchase_sword", "purchase_item", "consume_item",
                            "join_guild", "leave_guild", "guild_join_requested",
                            "guild_join_decided", "guild_leave_requested"))
    by_outcome = sum(value(after, "lootlog_fold_events_total", outcome=o) -
                     value(before, "lootlog_fold_events_total", outcome=o)
                     for o in ("applied", "rejected", "duplicate", "pending"))
    assert by_type == by_outcome >= 14
    assert value(after, "lootlog_fold_commit_seconds_count") > value(before, "lootlog_fold_commit_seconds_count")
    assert value(after, "lootlog_fold_commit_seconds_count") <= value(after, "lootlog_fold_batches_total")
    # every acknowledged write is timed once the loop hears of the commit that passed it
    def timed(samples):
        return value(samples, "lootlog_freshness_seconds_count") - \
            value(before, "lootlog_freshness_seconds_count") + \
            value(samples, "lootlog_freshness_unsampled_total")
    wait_until(lambda: timed(parse(scrape(s))[0]) == 14, 10, "freshness of 14 writes")
    lags = {dict(l)["partition"]: v for (n, l), v in after.items() if n == "lootlog_fold_partition_lag"}
    nexts = {dict(l)["partition"]: v for (n, l), v in after.items()
             if n == "lootlog_fold_partition_next_offset"}
    assert sorted(lags) == sorted(nexts) == [str(p) for p in range(6)]
    assert all(v == 0 for v in lags.values()), lags
    assert sum(v for v in nexts.values() if v > 0) == 14  # a fresh topic: one record per write
    assert types["lootlog_fold_commit_seconds"] == "histogram"
    assert types["lootlog_fold_partition_lag"] == "gauge"

    # snapshots: duration and the time of the last success
    assert value(after, "lootlog_snapshot_last_success_timestamp_seconds") == 0
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert s.session.post(s.url + "/admin/snapshots", headers=headers, timeout=15).status_code == 202
    wait_until(lambda: s.session.get(s.url + "/admin/snapshots", headers=headers,
                                     timeout=15).json()["taken"] >= 1, 120, "a snapshot")
    snap, _ = parse(scrape(s))
    assert value(snap, "lootlog_snapshots_total", result="taken") == 1
    assert value(snap, "lootlog_snapshot_last_duration_seconds") > 0
    assert abs(value(snap, "lootlog_snapshot_last_success_timestamp_seconds") - time.time()) < 120

    # promtool on the real scrape
    text = scrape(s)
    check = subprocess.run([tool("promtool"), "check", "metrics"], input=text, text=True,
                           capture_output=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr
    assert check.stdout.strip() == "" and check.stderr.strip() == "", check.stdout + check.stderr


def dashboard_metric_names():
    with open(DASHBOARD) as f:
        board = json.load(f)
    exprs = []

    def walk(node):
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                exprs.append(node["expr"])
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(board)
    names = {n for e in exprs for n in re.findall(r"\b(lootlog_[a-z0-9_]+)", e)}
    return board, exprs, names


def test_grafana_dashboard_queries_only_real_series(metered):
    board, exprs, names = dashboard_metric_names()
    assert board["title"] and board["panels"], "the dashboard has panels"
    assert len(exprs) >= 7
    wanted = ["lootlog_writes_total", "lootlog_fold_events_total", "lootlog_fold_partition_lag",
              "lootlog_http_request_duration_seconds_bucket", "lootlog_freshness_seconds_bucket",
              "lootlog_fold_commit_seconds_bucket", "lootlog_snapshot_last_success_timestamp_seconds"]
    assert set(wanted) <= names, set(wanted) - names
    s = metered
    r = s.buy("dash-" + uuid.uuid4().hex[:8], "bow", 1)
    assert r.status_code == 202
    samples, types = parse(scrape(s))
    present = {n for (n, _) in samples}
    missing = sorted(n for n in names if n not in present)
    assert not missing, f"the dashboard queries series /metrics does not export: {missing}"
