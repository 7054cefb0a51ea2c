"""Black-box fixtures: the real lootlog binary against the real Kafka and HDFS that
`./dev test` started (their addresses come in LOOTLOG_TEST_* variables)."""
import json
import os
import signal
import socket
import subprocess
import time
import uuid

import pytest
import requests

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BIN = os.environ.get("LOOTLOG_BIN", os.path.join(ROOT, "build", "lootlog"))
BROKERS = os.environ.get("LOOTLOG_TEST_BROKERS", "127.0.0.1:19092")
WEBHDFS = os.environ.get("LOOTLOG_TEST_WEBHDFS", "http://127.0.0.1:19870")
STACK_DIR = os.environ.get("LOOTLOG_TEST_STACK_DIR", os.path.join(ROOT, ".dev", "test-stack"))
STACK_CMD = os.environ.get("LOOTLOG_TEST_STACK_CMD", os.path.join(ROOT, "stack", "stack"))
TOPIC = "events"
# Pairs of history blocks of one store whose offset ranges overlap: an offset recorded in
# two blocks, i.e. one record's outcome written twice (within a block offsets only go up).
OVERLAPPING_BLOCKS = ("SELECT count(*) FROM history_blocks a JOIN history_blocks b "
                      "ON b.last_offset > a.last_offset AND b.first_offset <= a.last_offset")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def store_files(db_dir):
    """The per-partition stores of a lootlog state folder: {partition: path}."""
    import glob
    found = {}
    for path in glob.glob(os.path.join(str(db_dir), "p*.db")):
        name = os.path.basename(path)[1:-3]
        if name.isdigit():
            found[int(name)] = path
    return found


def query_stores(db_dir, sql, params=()):
    """Runs one query on every store of a state folder; returns all rows together."""
    import sqlite3
    rows = []
    for _, path in sorted(store_files(db_dir).items()):
        con = sqlite3.connect(path, timeout=10)
        try:
            rows.extend(con.execute(sql, params).fetchall())
        finally:
            con.close()
    return rows


def stored_offsets(db_dir):
    """{partition: next_offset} as the stores hold them ({} before any commit)."""
    import sqlite3
    try:
        return dict(query_stores(db_dir, "SELECT partition, next_offset FROM offsets"))
    except sqlite3.OperationalError:  # a store being created: no schema yet
        return {}


def derived_event_id(cause_event_id, event_type):
    """The id lootlog gives an event the fold emits (docs/design.md, "Guilds are decided in
    the log"): a version-8 UUID from SHA-256 of "<cause>/<type>"."""
    import hashlib
    b = bytearray(hashlib.sha256(f"{cause_event_id}/{event_type}".encode()).digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x80
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def outbox_rows(db_dir):
    """Events the fold emitted that Kafka has not acknowledged yet, over every store."""
    import sqlite3
    try:
        return sum(n for (n,) in query_stores(db_dir, "SELECT count(*) FROM outbox"))
    except sqlite3.OperationalError:  # a store being created: no schema yet
        return 1


def wait_quiescent(db_dir, topic, timeout):
    """Waits until the fold has folded every record of topic and emitted nothing new: the
    guild exchange goes on after the last client event (requests, then decisions), so the
    end of the topic moves until every outbox is empty and folded. Returns the ends."""
    from oracle import end_offsets
    deadline = time.monotonic() + timeout
    while True:
        ends = end_offsets(topic)
        got = stored_offsets(db_dir)
        if all(got.get(p, low) >= high for p, (low, high) in ends.items()) and \
                outbox_rows(db_dir) == 0 and end_offsets(topic) == ends:
            return ends
        if time.monotonic() > deadline:
            raise AssertionError(f"not quiescent after {timeout}s: ends {ends}, folded {got}, "
                                 f"outbox {outbox_rows(db_dir)}")
        time.sleep(0.2)


def held_in(db_dir, user, item=None):
    """What a state folder says user holds (of item: (quantity,) or None; else all)."""
    sql = ("SELECT i.quantity FROM inventory i JOIN players p ON p.player_key = i.player_key "
           "WHERE p.user_id = ?")
    params = (user,)
    if item:
        sql += " AND i.item_type = ?"
        params = (user, item)
    rows = query_stores(db_dir, sql, params)
    return rows[0] if rows else None


def hdfs_list(path):
    """The names in an HDFS folder ([] when it does not exist), over WebHDFS."""
    r = requests.get(f"{WEBHDFS}/webhdfs/v1{path}?op=LISTSTATUS&user.name=root", timeout=30)
    if r.status_code == 404:
        return []
    r.raise_for_status()
    return sorted(s["pathSuffix"] for s in r.json()["FileStatuses"]["FileStatus"])


def hdfs_read(path):
    r = requests.get(f"{WEBHDFS}/webhdfs/v1{path}?op=OPEN&user.name=root", timeout=60)
    r.raise_for_status()
    return r.content


class ThreadedLoad:
    """count threads running self.run(i) from the start of a with-block until its end;
    self.lock guards what they record."""

    def __init__(self, count):
        import threading
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self.run, args=(i,)) for i in range(count)]

    def run(self, i):
        raise NotImplementedError

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(60)


def topic_event_ids(bootstrap, topic):
    """Every record of topic, read back from Kafka: {event_id: times seen}."""
    seen = {}
    for event_id, _, _ in read_topic(bootstrap, topic):
        seen[event_id] = seen.get(event_id, 0) + 1
    return seen


def topic_records(topic):
    """Where each event id of topic first lies: {event_id: (partition, offset)}."""
    first = {}
    for event_id, p, offset in read_topic(BROKERS, topic):
        if event_id not in first or offset < first[event_id][1]:
            first[event_id] = (p, offset)
    return first


def read_topic(bootstrap, topic):
    """Every record of topic, read back from Kafka: [(event_id, partition, offset)]."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": "read-" + uuid.uuid4().hex,
                  "enable.auto.commit": False})
    parts = c.list_topics(topic, timeout=10).topics[topic].partitions
    ends = {}
    for p in parts:
        low, high = c.get_watermark_offsets(TopicPartition(topic, p), timeout=30)
        if high > low:
            ends[p] = (low, high)
    c.assign([TopicPartition(topic, p, low) for p, (low, high) in ends.items()])
    records, left = [], {p: high for p, (low, high) in ends.items()}
    deadline = time.monotonic() + 60
    while left and time.monotonic() < deadline:
        msg = c.poll(1.0)
        if msg is None or msg.error():
            continue
        if msg.offset() >= ends[msg.partition()][1]:
            continue
        records.append((json.loads(msg.value())["event_id"], msg.partition(), msg.offset()))
        if msg.offset() + 1 >= left.get(msg.partition(), 0):
            left.pop(msg.partition(), None)
    c.close()
    assert not left, f"reading the topic back stalled: {left}"
    return records


def wait_until(predicate, timeout, what, interval=0.05):
    """Polls predicate until it returns a truthy value; fails the test at the deadline."""
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            last = predicate()
            if last:
                return last
        except (requests.RequestException, OSError) as exc:
            last = exc
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class Server:
    """One `lootlog serve` process with its own port, database and log file."""

    def __init__(self, tmp_path, name="serve", extra_args=(), env=None, db=None, topic=TOPIC):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.db = db or str(tmp_path / f"{name}.db")
        self.log_path = str(tmp_path / f"{name}.log")
        self.extra_args = list(extra_args)
        self.topic = topic
        self.env = dict(os.environ, **(env or {}))
        self.proc = None
        self.session = requests.Session()

    def start(self, wait_ready=True):
        args = [BIN, "serve", "--http", f"127.0.0.1:{self.port}", "--brokers", BROKERS,
                "--topic", self.topic, "--db", self.db, *self.extra_args]
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(args, stdout=self.log, stderr=subprocess.STDOUT, env=self.env)
        wait_until(self.healthy, 20, "lootlog /healthz")
        if wait_ready:
            wait_until(self.ready, 60, "lootlog /readyz")
        return self

    def healthy(self):
        if self.proc.poll() is not None:
            raise AssertionError(f"lootlog exited with {self.proc.returncode}:\n{self.tail()}")
        return requests.get(self.url + "/healthz", timeout=1).status_code == 200

    def ready(self):
        return requests.get(self.url + "/readyz", timeout=2).status_code == 200

    def stop(self, sig=signal.SIGTERM, timeout=20):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("lootlog did not stop on SIGTERM:\n" + self.tail())
        rc = self.proc.returncode if self.proc else None
        if self.proc:
            self.log.close()
        self.proc = None
        return rc

    def tail(self, lines=40):
        try:
            with open(self.log_path, "rb") as f:
                return b"\n".join(f.read().splitlines()[-lines:]).decode(errors="replace")
        except OSError:
            return ""

    # --- client helpers -------------------------------------------------------------
    def post(self, path, body, headers=None, **kw):
        h = {"Content-Type": "application/json"}
        h.update(headers or {})
        data = body if isinstance(body, (bytes, str)) else json.dumps(body)
        return self.session.post(self.url + path, data=data, headers=h, timeout=15, **kw)

    def get(self, path, **kw):
        return self.session.get(self.url + path, timeout=15, **kw)

    def buy(self, user, item_type="sword", quantity=1, **kw):
        return self.post(f"/v1/users/{user}/purchases",
                         {"item_type": item_type, "quantity": quantity}, **kw)

    def inventory(self, user, after=None):
        params = {"after": after} if after else None
        return self.get(f"/inventory/{user}", params=params)

    def quantities(self, user, after=None):
        r = self.inventory(user, after)
        if r.status_code == 404:
            return {}
        assert r.status_code == 200, r.text
        return {line["item_type"]: line["quantity"] for line in r.json()["items"]}


@pytest.fixture
def server_factory(tmp_path):
    servers = []

    def make(**kw):
        s = Server(tmp_path, name=kw.pop("name", f"serve{len(servers)}"), **kw)
        servers.append(s)
        return s

    yield make
    for s in servers:
        s.stop(signal.SIGKILL) if s.proc else None


@pytest.fixture
def server(server_factory):
    return server_factory().start()


@pytest.fixture
def user():
    """A player name no other test uses (the topic is shared across tests)."""
    return "u-" + uuid.uuid4().hex[:12]


def kcat_read(partition, offset, count=1):
    """Reads records straight from Kafka with kcat: [(key, value_json)]."""
    out = subprocess.run(
        ["kcat", "-C", "-b", BROKERS, "-t", TOPIC, "-p", str(partition), "-o", str(offset),
         "-c", str(count), "-e", "-f", "%k\\t%s\\n"],
        capture_output=True, text=True, timeout=30, check=True).stdout
    records = []
    for line in out.splitlines():
        key, _, value = line.partition("\t")
        records.append((key, json.loads(value)))
    return records


def stack(*args):
    subprocess.run([STACK_CMD, *args, STACK_DIR], check=True, timeout=300)


def create_topic(name, partitions=6):
    """Creates a topic of its own for a test that must not flood the shared one."""
    from confluent_kafka.admin import AdminClient, NewTopic
    admin = AdminClient({"bootstrap.servers": BROKERS})
    futures = admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)])
    futures[name].result(30)
    # Ready once every partition has a leader.
    def led():
        md = admin.list_topics(name, timeout=5).topics.get(name)
        return md and not md.error and len(md.partitions) == partitions and \
            all(p.leader >= 0 for p in md.partitions.values())
    wait_until(led, 30, f"topic {name} to have leaders")
    return name
