"""GET /status opened in headless Chromium (Debian's chromium): a self-contained page whose
numbers match /metrics, with inline-SVG charts of rates and lag per partition, recent
snapshots, dead letters and the top item types. A screenshot is kept among the test
outputs (.dev/test-outputs/status-page.png; the path is printed)."""
import os
import re
import shutil
import subprocess
import uuid
from html.parser import HTMLParser

from confluent_kafka import Producer

from conftest import BROKERS, ROOT, WEBHDFS, create_topic, wait_until
from test_metrics import parse, tool

TOKEN = "status-" + uuid.uuid4().hex
OUTPUTS = os.path.join(ROOT, ".dev", "test-outputs")


class Page(HTMLParser):
    """What the test reads from the DOM Chromium rendered."""

    def __init__(self):
        super().__init__()
        self.metric_values = {}  # data-metric -> text of the <td> it labels
        self.tags = []
        self.external = []  # src/href that leave the page
        self.svg_lines = {}  # svg id -> polyline point lists
        self.tables = {}  # table id -> rows of cell texts
        self.ids = set()
        self._metric = None
        self._in_td = False
        self._svg = None
        self._table = None
        self._row = None
        self._cell = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if "id" in a:
            self.ids.add(a["id"])
        for key in ("src", "href"):
            if key in a and re.match(r"^(https?:)?//", a[key] or ""):
                self.external.append(a[key])
        if "data-metric" in a:
            self._metric = a["data-metric"]
        if tag == "td" and self._metric:
            self._in_td = True
            self.metric_values[self._metric] = ""
        if tag == "svg":
            self._svg = a.get("id")
            self.svg_lines[self._svg] = []
        if tag == "polyline" and self._svg:
            self.svg_lines[self._svg].append(a.get("points", "").split())
        if tag == "table":
            self._table = a.get("id")
            self.tables[self._table] = []
        if tag == "tr" and self._table is not None:
            self._row = []
            self.tables[self._table].append(self._row)
        if tag in ("td", "th") and self._row is not None:
            self._cell = ""

    def handle_endtag(self, tag):
        if tag == "td" and self._in_td:
            self._in_td = False
            self._metric = None
        if tag == "svg":
            self._svg = None
        if tag in ("td", "th") and self._cell is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        if tag == "tr":
            self._row = None
            self._metric = None if not self._in_td else self._metric
        if tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._in_td:
            self.metric_values[self._metric] += data
        if self._cell is not None:
            self._cell += data


def chromium(*args):
    """Runs headless Chromium (as root it needs --no-sandbox); returns its stdout."""
    profile = os.path.join(OUTPUTS, f"chromium-profile-{uuid.uuid4().hex[:8]}")
    try:
        out = subprocess.run(
            [tool("chromium"), "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-dev-shm-usage", "--no-first-run", f"--user-data-dir={profile}", *args],
            capture_output=True, text=True, timeout=120)
    finally:
        shutil.rmtree(profile, ignore_errors=True)
    assert out.returncode == 0, out.stderr[-2000:]
    return out.stdout


def metric_lines(text):
    """/metrics as {'name{labels}': value}, with labels as written."""
    values = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, number = line.rpartition(" ")
            values[key] = float(number)
    return values


def test_status_page_in_chromium_matches_metrics(server_factory):
    os.makedirs(OUTPUTS, exist_ok=True)
    topic = create_topic("status-" + uuid.uuid4().hex[:10])
    root = f"/lootlog-status-{uuid.uuid4().hex[:8]}"
    s = server_factory(name="status", topic=topic, env={"LOOTLOG_ADMIN_TOKEN": TOKEN},
                       extra_args=["--snapshot-url",
                                   f"webhdfs://{WEBHDFS[len('http://'):]}{root}"]).start()
    # traffic: purchases of two item types, a rejected consumption, a bad record
    users = [f"st-{uuid.uuid4().hex[:8]}-{i}" for i in range(8)]
    for user in users:
        assert s.buy(user, "arrow", 30).status_code == 202
    for user in users[:3]:
        assert s.buy(user, "potion", 2).status_code == 202
    assert s.post(f"/v1/users/{users[0]}/consumptions",
                  {"item_type": "gem", "quantity": 1}).status_code == 202
    producer = Producer({"bootstrap.servers": BROKERS})
    delivered = []
    producer.produce(topic, key=b"st-bad", value=b"{not json",
                     on_delivery=lambda err, msg: delivered.append((err, msg.partition(), msg.offset())))
    producer.flush(30)
    assert delivered and delivered[0][0] is None
    _, bad_partition, bad_offset = delivered[0]
    wait_until(lambda: s.get("/readyz").json().get("fold_lag") == 0, 60, "fold lag 0")
    headers = {"Authorization": f"Bearer {TOKEN}"}
    assert s.session.post(s.url + "/admin/snapshots", headers=headers, timeout=15).status_code == 202
    wait_until(lambda: s.session.get(s.url + "/admin/snapshots", headers=headers,
                                     timeout=15).json()["taken"] >= 1, 120, "a snapshot")
    # the page's store reads start with its first view; the rate chart needs two samples
    s.get("/status")
    wait_until(lambda: "id='item-types'" in s.get("/status").text, 30, "the board's reads")

    def charted():
        """The page as served has two rate lines and, per partition, a lag line of at
        least two points (the sampler takes one a second)."""
        served = Page()
        served.feed(s.get("/status").text)
        lines = served.svg_lines
        return len(lines.get("rates", [])) == 2 and len(lines.get("lag", [])) == 6 and \
            all(len(points) >= 2 for points in lines["lag"])
    wait_until(charted, 30, "two samples on every chart line", interval=0.5)

    dom = chromium("--dump-dom", s.url + "/status")
    scraped = metric_lines(s.get("/metrics").text)
    page = Page()
    page.feed(dom)

    # self-contained: no script, no stylesheet or image from elsewhere
    assert "script" not in page.tags and "link" not in page.tags and "img" not in page.tags
    assert page.external == [], page.external
    assert "readiness" in page.ids and ">ready<" in dom

    # every number labelled with a series equals that series in /metrics
    assert len(page.metric_values) >= 20, page.metric_values
    for series, shown in page.metric_values.items():
        assert series in scraped, f"{series} is on the page but not in /metrics"
        assert float(shown) == scraped[series], (series, shown, scraped[series])
    assert float(page.metric_values['lootlog_writes_total{result="acked"}']) == 12
    assert float(page.metric_values['lootlog_fold_events_total{outcome="dead_lettered"}']) == 1
    assert float(page.metric_values['lootlog_fold_events_total{outcome="rejected"}']) == 1
    assert float(page.metric_values['lootlog_snapshots_total{result="taken"}']) == 1
    for p in range(6):
        assert f'lootlog_fold_partition_lag{{partition="{p}"}}' in page.metric_values

    # charts: rates (writes and folds) and one lag line per partition, with points
    assert len(page.svg_lines["rates"]) == 2
    assert all(len(points) >= 1 for points in page.svg_lines["rates"])
    assert len(page.svg_lines["lag"]) == 6
    assert all(len(points) >= 2 for points in page.svg_lines["lag"])

    # snapshots, dead letters, top item types
    assert len(page.tables["recent-snapshots"]) >= 2
    dead = page.tables["dead-letters"][1:]
    assert [str(bad_partition), str(bad_offset)] == dead[0][:2], dead
    items = {row[0]: row[1:] for row in page.tables["item-types"][1:]}
    assert items["arrow"] == ["8", "240"], items
    assert items["potion"] == ["3", "6"], items
    assert list(items)[0] == "arrow"  # most held first

    shot = os.path.join(OUTPUTS, "status-page.png")
    if os.path.exists(shot):
        os.remove(shot)
    chromium(f"--screenshot={shot}", "--window-size=1100,2400", s.url + "/status")
    with open(shot, "rb") as f:
        png = f.read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10000
    print(f"\nstatus page screenshot: {shot}")
