#!/usr/bin/env python3
"""lootlog's benchmark suite (issue 8): every measure beside its peer and its ceiling,
in one run on one machine, written to docs/benchmarks.md with one SVG chart per
benchmark (bench/charts/). Every benchmark checks its answer, so a fast wrong fold fails.

  .cache/venv/bin/python bench/run.py [--quick] [--out docs/benchmarks.md]
        [--only live,replay,reads,freshness,writes,footprint,pit,scale] [--fold-threads N]
        [--guild-capacity N] [--build | --bin PATH] [--keep] [--keep-stack]

  1. fold and replay: `lootlog replay` of a `lootlog gen` topic (>= 1M events; --quick
     ~100k) beside `kcat` consume-only (ceiling) and bench/peer_fold.py (a Python fold of
     the same rules); state compared with the peer's through GET /inventory
  2. live fold: `lootlog serve` folding while `lootlog gen` produces (100k/s for 20 s);
     lag from GET /metrics every 250 ms
  3. reads: open-loop GET /inventory at 10k/s over 1M seeded players (--quick 20k),
     idle and while the fold drains a backlog; GET /healthz at the same rate as ceiling
  4. freshness: POST purchases at 10k/s, each 202 followed by GET ?after=<token>
  5. writes over HTTP: lootlog, the Flask + kafka-python peer under gunicorn and under the
     Flask dev server, and the no-HTTP produce ceiling (`lootlog gen --brokers`)
  6. footprint: database bytes per event, peak RSS of serve, snapshot restore time
  7. pit: GET /inventory/{u}?at=T (issue 14) for one player with 1,000 and one with 10,000
     events (--quick 200 / 2,000); GET /inventory now as ceiling, `lootlog replay
     --until-time T` + reading the store as peer; answers checked against the events and
     against those replays
  8. scale: 1, 2 and 3 `lootlog serve --group` nodes of a new consumer group drain the gen
     topic from its start (time to a Stable group and to every owner at the topic end; 1
     node as peer, kcat as ceiling); open-loop GET /inventory through node 1 of 3 (about
     2/3 forwarded) beside one node owning all partitions; state compared with the peer's
     through node 1 and the owners' stores
  9. encode: state/codec's hand-written event encoder beside jansson (the library it
     replaced) and beside copying the same bytes; every event's bytes checked against
     jansson's (build/bench_encode, from bench/encode.c)

--only runs a subset; when --out exists it rewrites only their sections and goals.

It starts its own Kafka + HDFS (stack/stack, .dev/bench-stack, ports 29xxx), works in
.dev/bench-work, installs what it lacks (bench/requirements.txt into this Python, kcat),
builds bench/loadgen.c, and stops everything it started, also on failure. Exit status:
1 when a benchmark could not run or answered wrong; never because of a speed."""
import argparse
import bisect
import dataclasses
import glob
import http.client
import importlib.util
import json
import math
import os
import platform
import random
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import traceback
import urllib.error
import urllib.request
import uuid

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import svgchart  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCH = os.path.join(ROOT, "bench")
PY = sys.executable
BIN = os.path.join(ROOT, "build", "lootlog")
LOADGEN = os.path.join(ROOT, ".cache", "bench", "loadgen")
STACK = os.path.join(ROOT, "stack", "stack")
STACK_DIR = os.path.join(ROOT, ".dev", "bench-stack")
WORK = os.path.join(ROOT, ".dev", "bench-work")
CHARTS = os.path.join(BENCH, "charts")
PORTS = ["--kafka-port", "29292", "--controller-port", "29293", "--nn-rpc-port", "28220",
         "--nn-http-port", "29270", "--dn-port", "29266", "--dn-http-port", "29264",
         "--dn-ipc-port", "29267"]
BROKERS = "127.0.0.1:29292"
WEBHDFS = "127.0.0.1:29270"
PARTITIONS = 6
ITEM_TYPES = ["sword", "axe", "bow", "shield", "helmet", "armor", "potion", "elixir", "scroll",
              "arrow", "gem", "mount"]
HISTORY_MARK = "<!-- bench/run.py keeps everything below this line -->"
STARTED = time.monotonic()


class WrongAnswer(Exception):
    """The benchmark ran, and lootlog's state is not what the events say."""


class CannotRun(Exception):
    """The benchmark could not run (a process failed, a wait timed out)."""


def log(msg):
    print(f"[bench {time.monotonic() - STARTED:6.1f}s] {msg}", file=sys.stderr, flush=True)


# ------------------------------------------------------------------ parameters

@dataclasses.dataclass
class Params:
    quick: bool
    live_rate: int           # gen --rate while serve folds (benchmark 2)
    live_seconds: int
    gen_users: int           # gen --users (Zipf: fewer distinct players)
    replay_min_events: int   # the replayed topic is topped up to at least this
    read_players: int        # seeded distinct players: reads (3) and peak RSS (6)
    read_rate: int
    read_seconds: float
    backlog_cap: int         # events queued for the fold during "reads while folding"
    fresh_rate: int
    fresh_seconds: float
    fresh_users: int
    write_seconds: float
    write_connections: int
    write_users: int
    snapshot_players: int
    sample: int              # players compared one by one through GET /inventory
    guild_capacity: int
    pit_events: tuple = (1_000, 10_000)  # events of each of the two players (benchmark 7)
    pit_requests: int = 1000  # GET ?at= per player, and plain GETs as its ceiling
    pit_replays: int = 3      # replay --until-time runs (the peer, and the answer check)
    scale_read_rate: int = 2000     # GET /inventory/s through node 1 of the group (8)
    scale_read_seconds: float = 10
    fresh_low_rate: int = 2000      # the same freshness run at a rate this machine carries (4)
    encode_events: int = 200_000    # events encoded by each encoder, best of three passes (9)
    warm_up_seconds: int = 8        # produce (and a read back) before benchmark 2 measures


def make_params(quick, guild_capacity):
    if quick:
        return Params(quick=True, live_rate=20_000, live_seconds=5, gen_users=20_000,
                      replay_min_events=100_000, read_players=20_000, read_rate=10_000,
                      read_seconds=4, backlog_cap=150_000, fresh_rate=10_000, fresh_seconds=4,
                      fresh_users=10_000, write_seconds=4, write_connections=64,
                      write_users=1000, snapshot_players=10_000, sample=200,
                      guild_capacity=guild_capacity, pit_events=(200, 2_000), pit_requests=200,
                      pit_replays=2, scale_read_seconds=3, encode_events=20_000, warm_up_seconds=2)
    # live_rate: gen's achieved rate (acknowledged records over its whole run, the last
    # acks included) falls ~1 % short of --rate, and the goal is ≥ 100k/s achieved
    return Params(quick=False, live_rate=102_000, live_seconds=20, gen_users=100_000,
                  replay_min_events=1_000_000, read_players=1_000_000, read_rate=10_000,
                  read_seconds=15, backlog_cap=3_000_000, fresh_rate=10_000, fresh_seconds=15,
                  fresh_users=100_000, write_seconds=10, write_connections=64,
                  write_users=1000, snapshot_players=100_000, sample=200,
                  guild_capacity=guild_capacity)


# ------------------------------------------------------------------ processes and tools

def run(cmd, timeout=None, env=None, check=False):
    """Runs cmd; returns (wall seconds, CompletedProcess)."""
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    wall = time.monotonic() - start
    if check and proc.returncode != 0:
        raise CannotRun(f"{os.path.basename(cmd[0])} {cmd[1] if len(cmd) > 1 else ''} exited "
                        f"{proc.returncode}: {last_line(proc.stderr or proc.stdout)}")
    return wall, proc


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def process_cpu_s(pid):
    """CPU seconds (user + system, all threads) a running process has used; None when it
    is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    except (OSError, IndexError, ValueError):
        return None


def broker_pid():
    try:
        with open(os.path.join(STACK_DIR, "kafka", "kafka.pid")) as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def children_cpu_s():
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


class CpuWindow:
    """Where the machine's CPU went during one measured window: the commands run() waited
    for ("tools": replay, kcat, gen, loadgen), the Kafka broker, and the named running
    processes (a serve). All on this machine's cores, so the sum against cores x wall
    time shows how much room was left."""

    def __init__(self, **running):
        self.running = {name: proc.pid for name, proc in running.items()}
        self.pids = dict(self.running, broker=broker_pid())
        self.t0 = time.monotonic()
        self.tools0 = children_cpu_s()
        self.cpu0 = {name: process_cpu_s(pid) for name, pid in self.pids.items() if pid}

    def stop(self):
        """{"wall_s", "tools_s", "broker_s", <each named process>_s, "cores"}"""
        wall = time.monotonic() - self.t0
        out = {"wall_s": round(wall, 2), "tools_s": round(children_cpu_s() - self.tools0, 2)}
        for name, before in self.cpu0.items():
            after = process_cpu_s(self.pids[name])
            out[f"{name}_s"] = (round(after - before, 2)
                                if after is not None and before is not None else None)
        out["cores"] = os.cpu_count() or 1
        return out


def cpu_us(seconds, count):
    """CPU seconds spent on count things, as microseconds each."""
    return seconds * 1e6 / count if seconds is not None and count else None


def last_line(text):
    lines = [line for line in (text or "").strip().splitlines() if line.strip()]
    return lines[-1].strip()[:300] if lines else "(no output)"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ensure_tools(force_build):
    """Python packages into this interpreter, kcat, the lootlog binary and the loadgen."""
    if not all(importlib.util.find_spec(m) for m in ("flask", "gunicorn", "kafka")):
        log("installing bench/requirements.txt")
        subprocess.run([PY, "-m", "pip", "install", "-q", "-r",
                        os.path.join(BENCH, "requirements.txt")], check=True)
    if not shutil.which("kcat"):
        log("installing kcat")
        if subprocess.run(["apt-get", "install", "-y", "-qq", "kcat"]).returncode != 0:
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            subprocess.run(["apt-get", "install", "-y", "-qq", "kcat"], check=True)
    if force_build or not os.path.exists(BIN):
        log("building lootlog (ninja -C build)")
        if not os.path.exists(os.path.join(ROOT, "build", "build.ninja")):
            # the options ./dev builds with (its PRODUCT_BUILD)
            subprocess.run(["meson", "setup", "build", "-Ddebug=true", "-Doptimization=3",
                            "-Db_lto=true"], cwd=ROOT, check=True)
        subprocess.run(["ninja", "-C", "build"], cwd=ROOT, check=True)
    source = os.path.join(BENCH, "loadgen.c")
    if not os.path.exists(LOADGEN) or os.path.getmtime(LOADGEN) < os.path.getmtime(source):
        log("building bench/loadgen.c")
        os.makedirs(os.path.dirname(LOADGEN), exist_ok=True)
        subprocess.run(["cc", "-O2", "-Wall", "-Wextra", "-Werror", source, "-levent",
                        "-lpthread", "-o", LOADGEN], check=True)


class Procs:
    """Every long-running process this run started, stopped at the end by its pid."""

    def __init__(self):
        self.running = []

    def start(self, name, cmd, env=None):
        logfile = open(os.path.join(WORK, f"{name}.log"), "w")
        proc = subprocess.Popen(cmd, stdout=logfile, stderr=subprocess.STDOUT, env=env,
                                cwd=ROOT)
        proc.logfile = logfile
        proc.logpath = logfile.name
        self.running.append(proc)
        return proc

    def stop(self, proc, timeout=30):
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        proc.logfile.close()
        if proc in self.running:
            self.running.remove(proc)

    def stop_all(self):
        for proc in list(self.running):
            self.stop(proc)


def log_tail(path, lines=5):
    try:
        with open(path, errors="replace") as f:
            return " | ".join(line.strip() for line in f.readlines()[-lines:])
    except OSError:
        return ""


# ------------------------------------------------------------------ Kafka

def admin():
    from confluent_kafka.admin import AdminClient
    return AdminClient({"bootstrap.servers": BROKERS, "log_level": 3})


def create_topic(name, partitions=PARTITIONS):
    from confluent_kafka.admin import NewTopic
    client = admin()  # kept alive until the future resolves
    client.create_topics([NewTopic(name, num_partitions=partitions,
                                   replication_factor=1)])[name].result(30)


def delete_topics(names):
    if names:
        client = admin()
        for future in client.delete_topics(list(names)).values():
            try:
                future.result(30)
            except Exception:  # noqa: BLE001 - best effort clean-up
                pass


def watermarks(topic):
    """{partition: (low, high)} of the topic now."""
    from confluent_kafka import Consumer, TopicPartition
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": "bench-watermarks", "log_level": 3})
    try:
        parts = c.list_topics(topic, timeout=10).topics[topic].partitions
        return {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in parts}
    finally:
        c.close()


def record_count(topic):
    return sum(hi - lo for lo, hi in watermarks(topic).values())


def seed_item(i):
    """What seeded player i bought: one line, known without reading anything back."""
    return ITEM_TYPES[i % len(ITEM_TYPES)], 1 + i % 5


def seed_players(topic, prefix, count):
    """Produces one purchase_item event for each of count distinct players (prefix0..),
    keyed and partitioned (murmur2) the way lootlog's producer does."""
    from confluent_kafka import Producer
    failed = []
    producer = Producer({"bootstrap.servers": BROKERS, "acks": "all", "enable.idempotence": True,
                         "partitioner": "murmur2_random", "linger.ms": 20,
                         "compression.type": "lz4", "queue.buffering.max.messages": 1_000_000})
    ts = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime())
    template = ('{"v":1,"event_id":"%s","event_type":"purchase_item","user_id":"%s","ts":"' + ts +
                '","items":[{"item_type":"%s","quantity":%d,"unit_price":10}],"guild_id":null,'
                '"expected_version":null,"metadata":{"remote_addr":null,"host":null,'
                '"user_agent":null,"accept_language":null}}')

    def delivered(err, _msg):
        if err:
            failed.append(err)
    for i in range(count):
        user = f"{prefix}{i}"
        item, quantity = seed_item(i)
        value = template % (uuid.uuid4(), user, item, quantity)
        while True:
            try:
                producer.produce(topic, value=value, key=user, on_delivery=delivered)
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10000 == 0:
            producer.poll(0)
    if producer.flush(120) or failed:
        raise CannotRun(f"seeding {topic}: {len(failed)} failed deliveries {failed[:1]}")
    if record_count(topic) != count:
        raise CannotRun(f"seeding {topic}: {record_count(topic)} records, expected {count}")


def seed_expect(prefix, count):
    """The expected GET /inventory answer of a seeded player: (version, guild, items)."""
    def expect(user):
        if not user.startswith(prefix) or not user[len(prefix):].isdigit():
            return None
        i = int(user[len(prefix):])
        if i >= count:
            return None
        item, quantity = seed_item(i)
        return 1, None, {item: quantity}
    return expect


GEN_LINE = re.compile(r"gen: sent (\d+), ok (\d+), failed (\d+), ([\d.]+) s, achieved (\d+)/s")


def gen(topic, rate, seconds, users, seed, prefix):
    """lootlog gen straight to Kafka; returns its summary."""
    wall, proc = run([BIN, "gen", "--brokers", BROKERS, "--topic", topic, "--rate", str(rate),
                      "--users", str(users), "--duration", str(seconds), "--seed", str(seed),
                      "--user-prefix", prefix], timeout=seconds + 120)
    m = GEN_LINE.search(proc.stdout)
    if not m:
        raise CannotRun(f"gen: {last_line(proc.stderr or proc.stdout)}")
    sent, ok, failed = int(m.group(1)), int(m.group(2)), int(m.group(3))
    return {"sent": sent, "ok": ok, "failed": failed, "seconds": float(m.group(4)),
            "achieved_per_s": int(m.group(5)), "target_per_s": rate, "wall_s": round(wall, 2)}


# ------------------------------------------------------------------ lootlog serve, HTTP

class Http:
    """One keep-alive connection for checks."""

    def __init__(self, port):
        self.port = port
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def get(self, path):
        for attempt in (0, 1):
            try:
                self.conn.request("GET", path)
                r = self.conn.getresponse()
                return r.status, r.read()
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self):
        self.conn.close()


def parse_metrics(text):
    """[(name, labels, value)] of a Prometheus text exposition."""
    out = []
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)", line)
        if m:
            try:
                out.append((m.group(1), m.group(2) or "", float(m.group(3))))
            except ValueError:
                pass
    return out


def fold_lag(samples):
    """The fold's lag in events: the sum of per-partition lag series when serve exports
    them, else the single lootlog_fold_lag gauge. None while unknown (-1)."""
    series = [(n, lab, v) for n, lab, v in samples if n.startswith("lootlog_fold") and "lag" in n
              and not n.endswith(("_seconds", "_ms"))]
    per_partition = [v for _, lab, v in series if "partition=" in lab]
    if per_partition:
        return None if any(v < 0 for v in per_partition) else sum(per_partition)
    plain = [v for n, lab, v in series if n == "lootlog_fold_lag" and not lab]
    return plain[0] if plain and plain[0] >= 0 else None


def folded_total(samples):
    return sum(v for n, _, v in samples if n == "lootlog_fold_events_total")


class Serve:
    """A `lootlog serve` of this run on a free port."""

    def __init__(self, bench, name, db, topic, extra=()):
        self.bench, self.name, self.db, self.topic = bench, name, db, topic
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        cmd = [BIN, "serve", "--http", f"127.0.0.1:{self.port}", "--brokers", BROKERS,
               "--topic", topic, "--db", db, *bench.fold_flags, *extra]
        self.proc = bench.procs.start(f"serve-{name}", cmd)

    def alive_or_raise(self):
        if self.proc.poll() is not None:
            raise CannotRun(f"serve ({self.name}) exited {self.proc.returncode}: "
                            f"{log_tail(self.proc.logpath)}")

    def status(self, path, timeout=5):
        try:
            with urllib.request.urlopen(self.base + path, timeout=timeout) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()
        except OSError:
            return None, b""

    def wait_for(self, path, timeout=120):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.alive_or_raise()
            if self.status(path)[0] == 200:
                return
            time.sleep(0.1)
        raise CannotRun(f"serve ({self.name}): {path} not 200 within {timeout} s")

    def wait_ready(self, timeout=120):
        self.wait_for("/readyz", timeout)

    def metrics(self):
        status, body = self.status("/metrics")
        return parse_metrics(body.decode()) if status == 200 else []

    def wait_folded(self, timeout):
        """Until the fold has passed the last record of every partition as it is now:
        GET /inventory/<any>?after=<p>:<last offset> answers (200 or 404) once it has."""
        deadline = time.monotonic() + timeout
        http_ = Http(self.port)
        try:
            for p, (lo, hi) in sorted(watermarks(self.topic).items()):
                while hi > lo:
                    self.alive_or_raise()
                    if time.monotonic() > deadline:
                        raise CannotRun(f"serve ({self.name}): fold did not reach the end of "
                                        f"partition {p} within {timeout} s")
                    status, _ = http_.get(f"/inventory/bench-probe?after={p}:{hi - 1}"
                                          "&timeout_ms=2000")
                    if status in (200, 404):
                        break
                    if status == 400:  # tokens not understood: fall back on the lag gauge
                        return self._wait_lag_zero(deadline)
                    if status != 504:
                        time.sleep(0.1)
        finally:
            http_.close()

    def wait_quiescent(self, timeout):
        """Until the fold has folded the whole topic and emitted nothing new: the guild
        exchange goes on after the last client event (requests, then decisions), so the
        topic's end moves until every store's outbox is empty and folded."""
        deadline = time.monotonic() + timeout
        while True:
            before = watermarks(self.topic)
            self.wait_folded(max(1, deadline - time.monotonic()))
            if outbox_rows(self.db) == 0 and watermarks(self.topic) == before:
                return
            if time.monotonic() > deadline:
                raise CannotRun(f"serve ({self.name}): the guild exchange did not settle "
                                f"within {timeout} s")
            time.sleep(0.2)

    def _wait_lag_zero(self, deadline):
        zeros = 0
        while zeros < 3:
            self.alive_or_raise()
            if time.monotonic() > deadline:
                raise CannotRun(f"serve ({self.name}): lag not 0 in time")
            zeros = zeros + 1 if fold_lag(self.metrics()) == 0 else 0
            time.sleep(0.25)

    def memory_kb(self, field="VmHWM"):
        try:
            with open(f"/proc/{self.proc.pid}/status") as f:
                for line in f:
                    if line.startswith(field + ":"):
                        return int(line.split()[1])
        except OSError:
            pass
        return None

    def stop(self):
        self.bench.procs.stop(self.proc)


class LagSampler(threading.Thread):
    """GET /metrics every 250 ms: (seconds since start, lag events, folded records)."""

    def __init__(self, serve, every=0.25):
        super().__init__(daemon=True)
        self.serve, self.every = serve, every
        self.points = []
        self.halt = threading.Event()
        self.t0 = time.monotonic()

    def run(self):
        next_at = self.t0
        while not self.halt.is_set():
            samples = self.serve.metrics()
            self.points.append((time.monotonic() - self.t0, fold_lag(samples),
                                folded_total(samples)))
            next_at += self.every
            self.halt.wait(max(0.0, next_at - time.monotonic()))

    def stop(self):
        self.halt.set()
        self.join()


def loadgen(url, rate, seconds, connections=32, threads=1, users=1, prefix="", method="GET",
            body=None, follow=None, follow_connections=512, acks_out=None, timeout_ms=10000):
    cmd = [LOADGEN, "--url", url, "--rate", str(rate), "--duration", str(seconds),
           "--connections", str(connections), "--threads", str(threads), "--users", str(users),
           "--prefix", prefix, "--method", method, "--timeout-ms", str(timeout_ms)]
    if body:
        cmd += ["--body", body]
    if follow:
        cmd += ["--follow", follow, "--follow-connections", str(follow_connections)]
    if acks_out:
        cmd += ["--acks-out", acks_out]
    _, proc = run(cmd, timeout=seconds + 3 * timeout_ms / 1000 + 60, check=True)
    return json.loads(proc.stdout)


def non_2xx(status_counts):
    return sum(n for code, n in status_counts.items() if not code.startswith("2"))


# ------------------------------------------------------------------ stores and checks

def store_files(path):
    """The SQLite files of a store: the file itself, or the p<N>.db of a folder (or a
    list of store files, e.g. each partition's owner's p<N>.db in a group, as given)."""
    if isinstance(path, (list, tuple)):
        return [f for f in path if os.path.exists(f)]
    if os.path.isdir(path):
        return sorted(glob.glob(os.path.join(path, "**", "*.db"), recursive=True))
    return [path] if os.path.exists(path) else []


def outbox_rows(path):
    """Emitted events not acknowledged by Kafka yet, over a state folder's stores (0 for a
    layout without an outbox)."""
    rows = 0
    for f in store_files(path):
        con = sqlite3.connect(f"file:{f}?mode=ro", uri=True, timeout=10)
        try:
            rows += con.execute("SELECT count(*) FROM outbox").fetchone()[0]
        except sqlite3.OperationalError:
            pass  # no outbox table (yet)
        finally:
            con.close()
    return rows


def du_bytes(path):
    """Bytes on disk of a store, file (with its -wal) or folder (recursive)."""
    total = 0
    for p in [path, path + "-wal"]:
        if os.path.isdir(p):
            _, proc = run(["du", "-sb", p])
            total += int(proc.stdout.split()[0])
        elif os.path.exists(p):
            total += os.path.getsize(p)
    return total


def store_counts(path):
    """{"players": players with version > 0, "inventory_rows": n} over a store's files,
    or None when the tables are not there (a layout this script does not know)."""
    totals = {"players": 0, "inventory_rows": 0}
    files = store_files(path)
    if not files:
        return None
    for f in files:
        con = sqlite3.connect(f"file:{f}?mode=ro", uri=True)
        try:
            tables = {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            if not {"players", "inventory"} <= tables:
                continue
            totals["players"] += con.execute(
                "SELECT count(*) FROM players WHERE version > 0").fetchone()[0]
            totals["inventory_rows"] += con.execute("SELECT count(*) FROM inventory").fetchone()[0]
        except sqlite3.Error:
            return None
        finally:
            con.close()
    return totals


def check_sample(port, users, expect, check_version=lambda u: True):
    """GET /inventory of each user against expect(user) -> None (404) or
    (version, guild_id, {item_type: quantity}). Returns the mismatches."""
    client = Http(port)
    mismatches = []
    try:
        for user in users:
            want = expect(user)
            status, body = client.get(f"/inventory/{user}")
            if want is None:
                if status != 404:
                    mismatches.append(f"{user}: expected 404, got {status}")
                continue
            if status != 200:
                mismatches.append(f"{user}: expected 200, got {status} {body[:100]!r}")
                continue
            got = json.loads(body)
            items = {i["item_type"]: i["quantity"] for i in got.get("items", [])}
            version, guild, want_items = want
            if items != want_items:
                mismatches.append(f"{user}: items {items} != expected {want_items}")
            elif check_version(user) and (got.get("version") != version
                                          or got.get("guild_id") != guild):
                mismatches.append(f"{user}: version/guild {got.get('version')}/"
                                  f"{got.get('guild_id')} != expected {version}/{guild}")
    finally:
        client.close()
    return mismatches


class PeerDb:
    """Read side of bench/peer_fold.py's SQLite file: the expected state."""

    def __init__(self, path):
        self.con = sqlite3.connect(f"file:{path}?mode=ro", uri=True)

    def players(self):
        return [r[0] for r in self.con.execute(
            "SELECT user_id FROM players WHERE version > 0 ORDER BY user_id")]

    def guild_users(self):
        return {r[0] for r in self.con.execute(
            "SELECT DISTINCT user_id FROM outcomes WHERE event_type IN ('join_guild','leave_guild')")}

    def counts(self):
        return {"players": self.con.execute(
                    "SELECT count(*) FROM players WHERE version > 0").fetchone()[0],
                "inventory_rows": self.con.execute("SELECT count(*) FROM inventory").fetchone()[0]}

    def expect(self, user):
        row = self.con.execute("SELECT version, guild_id FROM players WHERE user_id=? "
                               "AND version > 0", (user,)).fetchone()
        if not row:
            return None
        items = dict(self.con.execute("SELECT item_type, quantity FROM inventory WHERE user_id=?",
                                      (user,)))
        return row[0], row[1], items

    def close(self):
        self.con.close()


# ------------------------------------------------------------------ the run

class Bench:
    def __init__(self, params, args):
        self.p = params
        self.args = args
        self.procs = Procs()
        self.run_id = time.strftime("%Y%m%d-%H%M%S")
        self.topics = []
        self.shared = {}       # values one benchmark hands to another
        self.results = {}      # benchmark key -> section of the report
        self.goals = []        # (goal, target, this run, met)
        self.soft_failures = []
        self.rng = random.Random(1)
        _, proc = run([BIN, "--help"])
        self.help_text = proc.stdout + proc.stderr
        self.has_capacity_flag = "--guild-capacity" in self.help_text
        self.has_fold_threads = "--fold-threads" in self.help_text
        self.fold_flags = []
        if self.has_capacity_flag:
            self.fold_flags += ["--guild-capacity", str(params.guild_capacity)]
        if args.fold_threads and self.has_fold_threads:
            self.fold_flags += ["--fold-threads", str(args.fold_threads)]
        # Guild seats are decided in the guild's partition, in its log order, so lootlog
        # and the peer must agree on every player whatever order the partitions were
        # folded in.
        self.deterministic = True

    def topic(self, name):
        t = f"bench-{self.run_id}-{name}"
        create_topic(t)
        self.topics.append(t)
        return t

    def serve(self, name, db, topic, extra=()):
        return Serve(self, name, db, topic, extra)

    def goal(self, name, target, value, met):
        self.goals.append((name, target, value, met))

    # ---- the peer fold of the gen topic, shared by benchmarks 1 and 2

    def peer_fold(self, topic):
        # Folded again when the topic grew since (a serve emitted guild decisions into it).
        records = record_count(topic)
        if self.shared.get("peer_topic") != topic or self.shared.get("peer_records") != records:
            db = os.path.join(WORK, "peer-fold.db")
            for f in glob.glob(db + "*"):
                os.remove(f)
            log(f"peer fold of {topic} (bench/peer_fold.py)")
            wall, proc = run([PY, os.path.join(BENCH, "peer_fold.py"), BROKERS, topic, db,
                              "--guild-capacity", str(self.p.guild_capacity), "--json"],
                             timeout=3600, check=True)
            result = json.loads(proc.stdout.strip().splitlines()[-1])
            result.update(wall_s=round(wall, 2), wall_rate=round(result["events"] / wall),
                          db=db, bytes=du_bytes(db))
            self.shared.update(peer_topic=topic, peer=result, peer_records=records)
        return self.shared["peer"]

    def gen_topic(self):
        """The topic of benchmarks 1 and 2 (made by benchmark 2; made here if it failed)."""
        if "gen_topic" not in self.shared:
            topic = self.topic("gen")
            g = gen(topic, self.p.live_rate, self.p.live_seconds, self.p.gen_users, 1, "g")
            self.shared.update(gen_topic=topic, gen=g)
        topic = self.shared["gen_topic"]
        return topic

    def check_against_peer(self, serve, store, topic):
        """lootlog's state (through GET /inventory, row counts from its store) against the
        peer's fold of the same topic. Raises WrongAnswer on any difference."""
        peer = self.peer_fold(topic)
        db = PeerDb(peer["db"])
        try:
            players = db.players()
            users = self.rng.sample(players, min(len(players), self.p.sample - 30))
            users += [f"g{i}" for i in range(10)]                    # the busiest players
            users += [f"g{self.rng.randrange(self.p.gen_users)}" for _ in range(15)]
            users += [f"g{self.p.gen_users + i}" for i in range(5)]  # never seen: 404
            loose = set() if self.deterministic else db.guild_users()
            mismatches = check_sample(serve.port, users, db.expect, lambda u: u not in loose)
            want_counts = db.counts()
        finally:
            db.close()
        got_counts = store_counts(store)
        problems = list(mismatches)
        if got_counts is not None:
            if got_counts["inventory_rows"] != want_counts["inventory_rows"]:
                problems.append(f"inventory rows {got_counts['inventory_rows']} != peer "
                                f"{want_counts['inventory_rows']}")
            if self.deterministic and got_counts["players"] != want_counts["players"]:
                problems.append(f"players {got_counts['players']} != peer {want_counts['players']}")
        check = {"players_sampled": len(users), "mismatches": len(mismatches),
                 "lootlog_rows": got_counts, "peer_rows": want_counts,
                 "versions_checked": "all sampled players" if not loose else
                 "players without guild events"}
        if problems:
            raise WrongAnswer("; ".join(problems[:5]) + (f" (+{len(problems) - 5} more)"
                                                         if len(problems) > 5 else ""))
        return check


def section(title, about, rows, check, chart=None, raw=None, notes=()):
    return {"title": title, "about": about, "rows": rows, "check": check, "chart": chart,
            "raw": raw or {}, "notes": list(notes), "status": "ok"}


def row(measure, unit, lootlog, peer=None, ceiling=None, goal="", peer_name="", ceiling_name=""):
    return {"measure": measure, "unit": unit, "lootlog": lootlog, "peer": peer, "ceiling": ceiling,
            "goal": goal, "peer_name": peer_name, "ceiling_name": ceiling_name}


def write_chart(b, name, svg):
    """Writes one chart beside the report: bench/charts/ for docs/benchmarks.md, else a
    charts/ folder next to --out (so a quick run in ./dev test leaves the repo alone)."""
    os.makedirs(b.charts_dir, exist_ok=True)
    path = os.path.join(b.charts_dir, name)
    with open(path, "w") as f:
        f.write(svg)
    return path


# ------------------------------------------------------------------ 2. live fold

def warm_up_broker(b):
    """The broker is a JVM started moments ago: until its JIT has compiled the produce and
    fetch paths it takes about twice the CPU per record (7.2 against 3.3-3.8 µs in the
    first and later runs of session 15). Benchmark 2 measures a fold's lag on two cores
    shared with the broker, so it runs against a warm one: a few seconds of the same
    produce into a scratch topic, read back once."""
    topic = b.topic("warm-up")
    log(f"live: warming the broker up: gen {b.p.live_rate}/s for {b.p.warm_up_seconds} s, "
        "then kcat reads it")
    gen(topic, b.p.live_rate, b.p.warm_up_seconds, b.p.gen_users, 9, "w")
    kcat_read_all(topic, "warm-up")


def bench_live(b):
    p = b.p
    warm_up_broker(b)
    topic = b.topic("gen")
    store = os.path.join(WORK, "live-store")
    serve = b.serve("live", store, topic)
    serve.wait_ready()
    sampler = LagSampler(serve)
    sampler.start()
    log(f"live: gen {p.live_rate}/s for {p.live_seconds} s while serve folds")
    cpu, cpu_to_caught_up = CpuWindow(serve=serve.proc), CpuWindow(serve=serve.proc)
    g = gen(topic, p.live_rate, p.live_seconds, p.gen_users, 1, "g")
    gen_end = time.monotonic() - sampler.t0
    produce_cpu = cpu.stop()
    records = record_count(topic)
    serve.wait_folded(timeout=max(120, records / 5000))
    caught_up = time.monotonic() - sampler.t0
    fold_cpu = cpu_to_caught_up.stop()
    sampler.stop()
    b.shared.update(gen_topic=topic, gen=g)

    lags = [(t, lag) for t, lag, _ in sampler.points if lag is not None]
    max_lag = max((lag for _, lag in lags), default=None)
    produce_rate = g["ok"] / g["seconds"] if g["seconds"] else None
    max_lag_s = max_lag / produce_rate if max_lag is not None and produce_rate else None
    fold_rate = records / caught_up if caught_up else None
    b.shared["fold_rate_live"] = fold_rate
    log(f"live: max lag {max_lag} events, caught up {caught_up - gen_end:.1f} s after gen")

    if records < 0.95 * p.replay_min_events:  # top up for benchmark 1 (not measured here)
        need = p.replay_min_events - records
        seconds = max(1, math.ceil(need / 100_000))
        log(f"live: topping the topic up by ~{need:,} events for the replay benchmark")
        gen(topic, math.ceil(need / seconds), seconds, p.gen_users, 2, "g")
        records = record_count(topic)
        serve.wait_folded(timeout=max(120, records / 5000))
    # The guild requests and decisions serve emitted are in the topic too, and the peer
    # must fold the same log: wait until serve has emitted and folded all of them.
    serve.wait_quiescent(timeout=max(120, records / 5000))
    records = record_count(topic)
    check = b.check_against_peer(serve, store, topic)
    b.shared["live_store"] = store
    b.shared["live_records"] = records
    serve.stop()

    note = (f"max lag {max_lag:,.0f} events = {max_lag_s:.2f} s of traffic; caught up "
            f"{caught_up - gen_end:.1f} s after produce ended" if max_lag_s is not None
            else "no lag samples (GET /metrics exported no fold lag)")
    chart = write_chart(b, "live-lag.svg", svgchart.line_chart(
        f"2. Fold lag while gen produces {g['achieved_per_s']:,}/s",
        [(t, lag) for t, lag in lags], "seconds", "lag (events not folded yet)",
        band=(0, gen_end, "gen producing"),
        hline=(produce_rate, "1 s of traffic (goal: lag below)") if produce_rate else None,
        note=note))
    # What 100k events/s would take of this machine at the CPU per event measured here:
    # producing (gen and the broker while gen ran) and folding (serve, gen start to caught up)
    produced = g["ok"]
    produce_us = cpu_us((produce_cpu["tools_s"] or 0) + (produce_cpu["broker_s"] or 0), produced)
    fold_us = cpu_us(fold_cpu["serve_s"], records)
    need_produce = 100_000 * produce_us / 1e6 if produce_us else None
    need_fold = 100_000 * fold_us / 1e6 if fold_us else None
    busy_cores = sum(produce_cpu[k] or 0 for k in ("tools_s", "broker_s", "serve_s")) / produce_cpu["wall_s"]
    b.goal("live fold under sustained produce", "lag < 1 s of traffic at ≥ 100k events/s",
           (f"max {max_lag_s:.2f} s at {produce_rate:,.0f}/s (at this run's CPU per event, "
            f"100k/s would take {need_produce:.1f} cores to produce and {need_fold:.1f} to "
            f"fold, of {produce_cpu['cores']})") if max_lag_s is not None and need_fold else "n/a",
           None if max_lag_s is None else max_lag_s < 1 and produce_rate >= 100_000)
    rows = [
        row("produce rate achieved (gen --brokers)", "events/s", produce_rate,
            goal=f"target {p.live_rate:,}/s"),
        row("max fold lag", "events", max_lag),
        row("max fold lag in seconds of traffic", "s", max_lag_s, goal="< 1 s"),
        row("caught up after produce ended", "s", caught_up - gen_end),
        row("live fold rate (records / time to catch up)", "events/s", fold_rate,
            ceiling=produce_rate, ceiling_name="produce rate"),
        row("CPU per produced event: gen and the broker (while gen ran)", "µs", produce_us),
        row("CPU per folded event: serve (gen start to caught up)", "µs", fold_us),
        row(f"cores busy while gen ran: gen + broker + serve (this machine: {produce_cpu['cores']})",
            "cores", busy_cores),
        row("cores 100,000 events/s would take at this CPU per event: producing / folding", "cores",
            f"{need_produce:.2f} / {need_fold:.2f}" if need_produce and need_fold else None),
    ]
    return section(
        "2. Live fold under sustained produce",
        f"`lootlog serve` folds a fresh topic while `lootlog gen --brokers` produces "
        f"{p.live_rate:,} events/s for {p.live_seconds} s ({p.gen_users:,} Zipf users, seed 1); "
        "the fold lag is read from GET /metrics every 250 ms (the per-partition lag series "
        "summed when serve exports them, else `lootlog_fold_lag`). Before it, the broker is "
        f"warmed up: {p.warm_up_seconds} s of the same produce into a scratch topic, read "
        "back once with kcat (a JVM's first seconds cost it about twice the CPU per record).",
        rows, check, chart,
        raw={"gen": g, "records": records, "samples": len(sampler.points),
             "cpu_while_producing": produce_cpu, "cpu_until_caught_up": fold_cpu,
             "lag_points": [[round(t, 2), lag] for t, lag in lags]})


# ------------------------------------------------------------------ 1. fold and replay

REPLAY_LINE = re.compile(r"(\d+) events in ([\d.]+) s \((\d+)/s\)")
REPLAY_TIMING = re.compile(r"in [\d.]+ s \(\d+/s\)")
REPLAY_OUTCOMES = re.compile(r"(\d+) applied, (\d+) rejected, (\d+) duplicates?, (\d+) dead")


def kcat_consume(b, topic):
    """kcat -C of the whole topic (the consume-only ceiling); returns (records, wall s)
    and keeps the rate for later benchmarks (b.shared["kcat_rate"])."""
    log(f"kcat consume-only of {record_count(topic):,} records")
    cpu = CpuWindow()
    records, wall = kcat_read_all(topic, "kcat")
    b.shared["kcat_cpu"] = cpu.stop()
    b.shared.update(kcat_rate=records / wall, kcat_topic=topic)
    return records, wall


def kcat_read_all(topic, what):
    """kcat -C of the whole topic, one "." per record; returns (records, wall s), or raises
    CannotRun (what: the step, for the message) unless it read every record."""
    records = record_count(topic)
    wall, proc = run(["kcat", "-C", "-b", BROKERS, "-t", topic, "-e", "-o", "beginning",
                      "-q", "-f", "."], timeout=3600)
    consumed = len(proc.stdout)
    if proc.returncode != 0 or consumed != records:
        raise CannotRun(f"{what}: kcat read {consumed} of {records} records: "
                        f"{last_line(proc.stderr)}")
    return records, wall


REPLAY_BATCH_EVENTS = 20_000  # lootlog replay's --batch-events default


def sqlite_floor(store_dir, batch_events=REPLAY_BATCH_EVENTS):
    """SQLite alone writing the rows a replay's fold writes: the replayed stores'
    `history_blocks` rows (one per block of ~90 events) and `player_index` rows (one per
    player per batch), copied into fresh stores with the same schema and writer pragmas,
    in the replay's batches (one transaction per batch_events records: a row goes with
    the batch that holds its first offset; player_index in key order as the fold writes
    it). The rows are first loaded into memory, untimed, so the time is SQLite's
    inserting and committing alone: no Kafka, no decoding, no rules, no packing. Every row
    is checked to be copied. Returns the CPU seconds."""
    cpu_s = 0.0
    tables = (("history_blocks", "last_offset"), ("player_index", "player_key, first_offset"))
    for src in sorted(glob.glob(os.path.join(store_dir, "p*.db"))):
        if not re.fullmatch(r"p\d+\.db", os.path.basename(src)):
            continue
        dst = os.path.join(WORK, "sqlite-floor.db")
        for suffix in ("", "-wal", "-shm"):
            if os.path.exists(dst + suffix):
                os.remove(dst + suffix)
        con = sqlite3.connect(dst, isolation_level=None)
        try:
            # The pragmas replay builds its stores with (store_sync_later): no WAL, no fsync
            # until the end, the file locked once.
            for pragma in ("synchronous=OFF", "locking_mode=EXCLUSIVE", "journal_mode=MEMORY",
                           "cache_size=-1000", "temp_store=MEMORY"):
                con.execute(f"PRAGMA {pragma}")
            con.execute("ATTACH ? AS old", (src,))
            for table, _ in tables:
                (sql,) = con.execute("SELECT sql FROM old.sqlite_master WHERE type = 'table' "
                                     "AND name = ?", (table,)).fetchone()
                con.execute(sql)
                con.execute(f"CREATE TEMP TABLE t_{table} AS SELECT * FROM old.{table}")
                con.execute(f"CREATE INDEX temp.t_{table}_first ON t_{table}(first_offset)")
            con.execute("DETACH old")
            low, high = con.execute("SELECT min(first_offset), max(first_offset) "
                                    "FROM t_history_blocks").fetchone()
            if low is None:
                continue
            started = time.process_time()
            for first in range(low, high + 1, batch_events):
                bounds = (first, first + batch_events)
                con.execute("BEGIN")
                for table, order in tables:
                    con.execute(f"INSERT INTO {table} SELECT * FROM t_{table} WHERE first_offset "
                                f">= ? AND first_offset < ? ORDER BY {order}", bounds)
                con.execute("COMMIT")
            cpu_s += time.process_time() - started
            for table, _ in tables:
                copied = con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]
                if copied != con.execute(f"SELECT count(*) FROM t_{table}").fetchone()[0]:
                    raise WrongAnswer(f"SQLite floor: copied {copied} {table} rows of {src}")
        finally:
            con.close()
    return cpu_s


# This machine's speed moves by a quarter within minutes (the same replay took 4.1 and
# 5.4 s in one series): kcat and replay run in turns, three times each, and the medians
# are the reading; every replay's outcomes are checked.
REPLAY_RUNS = 3


def replay_once(b, topic, store, records):
    """One lootlog replay of topic into the new folder store: (wall s, CPU window, summary)."""
    cpu = CpuWindow()
    wall, proc = run([BIN, "replay", "--brokers", BROKERS, "--topic", topic, "--db", store,
                      *b.fold_flags], timeout=7200)
    replay_cpu = cpu.stop()
    if proc.returncode != 0:
        raise CannotRun(f"replay exited {proc.returncode}: {last_line(proc.stderr or proc.stdout)}")
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else ""
    m = REPLAY_LINE.search(summary)
    if not m or int(m.group(1)) != records:
        raise WrongAnswer(f"replay folded {m.group(1) if m else '?'} of {records} records: {summary}")
    return wall, replay_cpu, summary


def median_run(runs):
    """The run of median wall time (runs: tuples whose first item is the wall time)."""
    return sorted(runs, key=lambda r: r[0])[len(runs) // 2]


def bench_replay(b):
    topic = b.gen_topic()
    store = os.path.join(WORK, "replay-store")
    kcat_runs, replay_runs = [], []
    for i in range(REPLAY_RUNS):
        records, wall_kcat = kcat_consume(b, topic)
        kcat_runs.append((wall_kcat, b.shared["kcat_cpu"]))
        # The first run's folder is the one checked below; the others must print the
        # same outcomes, and are removed.
        folder = store if i == 0 else f"{store}-{i + 1}"
        log(f"replay: lootlog replay, run {i + 1} of {REPLAY_RUNS}")
        replay_runs.append(replay_once(b, topic, folder, records))
        if i:
            shutil.rmtree(folder)
            untimed = [REPLAY_TIMING.sub("", r[2]) for r in (replay_runs[0], replay_runs[i])]
            if untimed[0] != untimed[1]:
                raise WrongAnswer(f"replay run {i + 1} printed {replay_runs[i][2]}, run 1 "
                                  f"{replay_runs[0][2]}")
    wall_kcat, kcat_cpu = median_run(kcat_runs)
    b.shared.update(kcat_rate=records / wall_kcat, kcat_cpu=kcat_cpu)
    wall, replay_cpu, summary = median_run(replay_runs)
    m, mo = REPLAY_LINE.search(summary), REPLAY_OUTCOMES.search(summary)
    reported_rate = int(m.group(3))
    ours = records / wall
    b.shared["replay_rate"] = ours

    peer = b.peer_fold(topic)
    if peer["events"] != records:
        raise CannotRun(f"peer folded {peer['events']} of {records} records")
    outcomes = None
    if mo:
        outcomes = dict(zip(["applied", "rejected", "duplicate", "dead_lettered"],
                            map(int, mo.groups())))
        pending = re.search(r"(\d+) pending", summary)
        outcomes["pending"] = int(pending.group(1)) if pending else 0
        peer["outcomes"].setdefault("pending", 0)
        if b.deterministic and outcomes != peer["outcomes"]:
            raise WrongAnswer(f"replay outcomes {outcomes} != peer {peer['outcomes']}")
    log("replay: comparing the replayed store with the peer through GET /inventory")
    serve = b.serve("replayed", store, topic)
    try:
        serve.wait_ready()
        # A replay leaves in its outboxes the guild events missing from the log (a topic
        # only `gen` wrote has no decisions); serve sends and folds them first.
        serve.wait_quiescent(timeout=max(120, records / 5000))
        check = b.check_against_peer(serve, store, topic)
    finally:
        serve.stop()
    check["outcomes"] = ("equal to the peer's" if outcomes and b.deterministic
                         else outcomes or "not printed by replay")
    b.shared["replay_store"] = store
    b.shared["replay_bytes"] = du_bytes(store)
    b.shared["replay_records"] = records
    b.shared["kafka_bytes"] = sum(os.path.getsize(f) for f in glob.glob(  # segments, not indexes
        os.path.join(STACK_DIR, "kafka", "data", f"{topic}-*", "*.log")))

    kcat_rate = records / wall_kcat
    # CPU per event of each side, and what 300k events/s would take of this machine at it
    ours_us, ours_broker_us = (cpu_us(replay_cpu["tools_s"], records),
                               cpu_us(replay_cpu["broker_s"], records))
    kcat_us, kcat_broker_us = (cpu_us(kcat_cpu["tools_s"], records),
                               cpu_us(kcat_cpu["broker_s"], records))
    cores = replay_cpu["cores"]

    def cores_at(rate, *per_event_us):
        return rate * sum(us or 0 for us in per_event_us) / 1e6
    need_ours, need_kcat = cores_at(300_000, ours_us, ours_broker_us), cores_at(300_000, kcat_us, kcat_broker_us)
    log("replay: SQLite alone writing the replayed stores' history blocks and player index rows")
    floor_cpu_s = sqlite_floor(store)
    floor_us = cpu_us(floor_cpu_s, records)
    half_kcat = kcat_rate / 2
    # What 0.5x kcat would take before any decoding or rule: consuming as kcat does, the
    # broker serving it, and SQLite writing the rows the fold writes (history blocks and
    # player index rows).
    need_half_kcat = cores_at(half_kcat, kcat_us, kcat_broker_us, floor_us)
    b.goal("replay of a gen topic", "≥ 300,000 events/s",
           f"{ours:,.0f} events/s ({ours_us + (ours_broker_us or 0):.1f} µs of CPU per event with "
           f"the broker's: 300k/s would take {need_ours:.1f} of the {cores} cores)",
           ours >= 300_000)
    b.goal("replay vs kcat consume-only", "≥ 0.5×",
           f"{ours / kcat_rate:.2f}× (0.5× is {half_kcat:,.0f}/s: consuming it as kcat does, "
           f"the broker serving it and SQLite alone writing the replay's history blocks and "
           f"player index rows "
           f"({floor_us:.1f} µs) would take {need_half_kcat:.1f} of the {cores} cores, "
           f"leaving {max(0.0, cores - need_half_kcat) * 1e6 / half_kcat:.2f} µs per event for "
           f"decoding, the rules and the dedupe check; replay's own CPU is {ours_us:.1f} µs per "
           "event in all)",
           ours / kcat_rate >= 0.5)
    b.goal("replay vs the same-rules Python fold", "≥ 10×", f"{ours / peer['wall_rate']:.1f}×",
           ours / peer["wall_rate"] >= 10)
    chart = write_chart(b, "replay.svg", svgchart.bar_chart(
        f"1. Fold of {records:,} gen events (events/s, wall time)",
        [("replay / fold", [("lootlog", ours, None), ("peer", peer["wall_rate"], None),
                            ("ceiling", kcat_rate, None)])],
        "events/s (higher is better)",
        note="lootlog = lootlog replay; peer = bench/peer_fold.py (same rules); "
             "ceiling = kcat -C consume-only"))
    rows = [
        row("events folded per second (wall time)", "events/s", ours, peer["wall_rate"], kcat_rate,
            "≥ 300,000; ≥ 0.5× ceiling; ≥ 10× peer", "bench/peer_fold.py", "kcat -C"),
        row("events/s as printed by the tool itself", "events/s", reported_rate, peer["rate"]),
        row("wall time", "s", wall, peer["wall_s"], wall_kcat),
        row("CPU per event: the tool itself", "µs", ours_us, ceiling=kcat_us),
        row("CPU per event: the Kafka broker serving it", "µs", ours_broker_us,
            ceiling=kcat_broker_us),
        row(f"cores 300,000 events/s would take at that CPU per event (this machine: {cores})",
            "cores", need_ours, ceiling=need_kcat),
        row("CPU per event: SQLite alone writing the replay's history blocks and player index "
            "rows "
            "(ceiling column; no Kafka, no decoding, no rules)", "µs", None, ceiling=floor_us),
        row(f"cores 0.5× kcat ({half_kcat:,.0f} events/s) would take: kcat's consume + the "
            "broker's + SQLite alone (ceiling column)", "cores", None, ceiling=need_half_kcat),
    ]
    return section(
        "1. Fold and replay",
        f"`lootlog replay` of the {records:,}-event topic that benchmark 2 produced with "
        f"`lootlog gen` (seed 1, {b.p.gen_users:,} Zipf users; carts, consumes, guild joins and "
        "leaves, 1% retried event ids), into a new store; beside it `kcat -C -e -o beginning` "
        "reading the same topic (consume-only ceiling) and `bench/peer_fold.py`, a Python fold "
        "applying the same rules (dedupe forever, versions, expected_version, stock checks, "
        "guild rules, outcomes recorded, commits of 5000 events, SQLite WAL). kcat and "
        f"replay ran in turns, {REPLAY_RUNS} times each (the machine's speed moves by a "
        "quarter within minutes); their rows are the runs of median wall time, and every "
        "replay's outcomes were the same.",
        rows, check, chart,
        raw={"records": records, "replay_summary": summary, "replay_wall_s": round(wall, 2),
             "kcat_wall_s": round(wall_kcat, 2),
             "replay_walls_s": [round(r[0], 2) for r in replay_runs],
             "kcat_walls_s": [round(r[0], 2) for r in kcat_runs], "replay_cpu": replay_cpu, "kcat_cpu": kcat_cpu,
             "sqlite_floor": {"events": records, "cpu_s": round(floor_cpu_s, 3),
                              "batch_events": REPLAY_BATCH_EVENTS}, "peer": {k: v for k, v in peer.items() if k != "db"}})


# ------------------------------------------------------------------ 3. reads (+ RSS for 6)

def bench_reads(b):
    p = b.p
    topic = b.topic("players")
    log(f"reads: seeding {p.read_players:,} distinct players")
    seed_players(topic, "r", p.read_players)
    store = os.path.join(WORK, "reads-store")
    serve = b.serve("reads", store, topic)
    serve.wait_for("/healthz")
    start = time.monotonic()
    serve.wait_folded(timeout=max(120, p.read_players / 2000))
    fold_s = time.monotonic() - start
    rss_folded = serve.memory_kb()
    expect = seed_expect("r", p.read_players)
    sample = [f"r{b.rng.randrange(p.read_players)}" for _ in range(p.sample - 10)]
    sample += [f"r{p.read_players + i}" for i in range(10)]
    mismatches = check_sample(serve.port, sample, expect)
    if mismatches:
        raise WrongAnswer(f"after folding the seeded players: {mismatches[:3]}")

    url = serve.base + "/inventory/{u}"
    log(f"reads: idle, {p.read_rate}/s open loop for {p.read_seconds} s")
    loadgen(url, p.read_rate, 1, users=p.read_players, prefix="r")  # warm-up, not measured
    idle = loadgen(url, p.read_rate, p.read_seconds, users=p.read_players, prefix="r")
    ceiling = loadgen(serve.base + "/healthz", p.read_rate, p.read_seconds)
    rss_idle = serve.memory_kb()
    serve.stop()

    fold_rate = b.shared.get("replay_rate") or b.shared.get("fold_rate_live") or 20_000
    # enough for two windows while folding: GET /inventory, then GET /healthz
    backlog = int(min(p.backlog_cap, max(50_000, fold_rate * (2 * p.read_seconds + 2) * 1.5)))
    log(f"reads: queueing a backlog of ~{backlog:,} events for the fold")
    g = gen(topic, 150_000, max(1, math.ceil(backlog / 100_000)), 100_000, 3, "bk")
    busy_serve = b.serve("reads-busy", store, topic)
    busy_serve.wait_for("/healthz")
    loadgen(busy_serve.base + "/inventory/{u}", p.read_rate, 1, users=p.read_players,
            prefix="r")  # warm-up, not measured (the fold is draining meanwhile)
    sampler = LagSampler(busy_serve)
    sampler.start()
    log(f"reads: while the fold drains the backlog, {p.read_rate}/s for {p.read_seconds} s")
    busy = loadgen(busy_serve.base + "/inventory/{u}", p.read_rate, p.read_seconds,
                   users=p.read_players, prefix="r")
    log(f"reads: the ceiling while the fold drains, GET /healthz {p.read_rate}/s for "
        f"{p.read_seconds} s")
    ceiling_busy = loadgen(busy_serve.base + "/healthz", p.read_rate, p.read_seconds)
    sampler.stop()
    lags = [lag for t, lag, _ in sampler.points if t <= p.read_seconds]
    folding_share = (sum(1 for lag in lags if lag and lag > 0) / len(lags)) if lags else None
    ceiling_lags = [lag for t, lag, _ in sampler.points if t > p.read_seconds + 0.5]
    ceiling_folding_share = (sum(1 for lag in ceiling_lags if lag and lag > 0) / len(ceiling_lags)
                             if ceiling_lags else None)
    busy_serve.wait_folded(timeout=max(120, g["ok"] / 2000))
    rss_busy = busy_serve.memory_kb()
    mismatches = check_sample(busy_serve.port, sample, expect)
    busy_serve.stop()
    if mismatches:
        raise WrongAnswer(f"after the backlog: {mismatches[:3]}")
    for name, res in (("idle", idle), ("while folding", busy)):
        wrong = {c: n for c, n in res["primary"]["status"].items() if c == "404"}
        if wrong:
            raise WrongAnswer(f"reads {name}: {wrong} for seeded players")
    b.shared.update(rss_players=p.read_players, rss_folded_kb=rss_folded, rss_idle_kb=rss_idle,
                    rss_busy_kb=rss_busy, players_fold_s=fold_s)

    b.goal(f"GET /inventory p99 at {p.read_rate:,}/s while the fold runs flat out", "≤ 2 ms",
           f"{busy['p99_ms']:.2f} ms (the empty GET /healthz at the same rate: "
           f"{ceiling_busy['p99_ms']:.2f} ms while folding, {ceiling['p99_ms']:.2f} ms idle)",
           busy["p99_ms"] <= 2)
    groups = []
    for pct in ("p50_ms", "p99_ms", "p999_ms"):
        groups.append((pct.replace("_ms", ""), [("lootlog", idle[pct], f"{idle[pct]:.2f}"),
                                                ("lootlog while folding", busy[pct], f"{busy[pct]:.2f}"),
                                                ("ceiling", ceiling[pct], f"{ceiling[pct]:.2f}"),
                                                ("ceiling while folding", ceiling_busy[pct],
                                                 f"{ceiling_busy[pct]:.2f}")]))
    chart = write_chart(b, "reads.svg", svgchart.bar_chart(
        f"3. GET /inventory latency at {p.read_rate:,}/s open loop ({p.read_players:,} players)",
        groups, "milliseconds from the intended send time (lower is better)",
        note="ceiling = GET /healthz at the same rate (HTTP path without a store read)"))

    def rows_of(label, res, ceil=None, goal=""):
        return [row(f"{label}: p50", "ms", res["p50_ms"], ceiling=ceil and ceil["p50_ms"],
                    ceiling_name="GET /healthz"),
                row(f"{label}: p99", "ms", res["p99_ms"], ceiling=ceil and ceil["p99_ms"], goal=goal),
                row(f"{label}: p99.9", "ms", res["p999_ms"], ceiling=ceil and ceil["p999_ms"]),
                row(f"{label}: max", "ms", res["max_ms"], ceiling=ceil and ceil["max_ms"]),
                row(f"{label}: answered / non-2xx / errors", "count",
                    f"{res['count']:,} / {non_2xx(res['primary']['status'])} / {res['errors']}")]
    rows = rows_of("idle", idle, ceiling) + rows_of("while folding", busy, ceiling_busy, "≤ 2 ms")
    rows.append(row("share of the loaded window with the fold behind (lag > 0)", "%",
                    folding_share * 100 if folding_share is not None else None,
                    ceiling=ceiling_folding_share * 100 if ceiling_folding_share is not None
                    else None))
    return section(
        "3. Reads",
        f"Open-loop GET /inventory/<player> at a fixed {p.read_rate:,} requests/s for "
        f"{p.read_seconds} s over {p.read_players:,} seeded players picked uniformly at random "
        "(bench/loadgen.c: 32 keep-alive connections, latency from each request's intended "
        "send time, so stalls are charged to every request queued behind them). Idle: the fold "
        f"has caught up. While folding: serve restarted with ~{g['ok']:,} `gen` events queued, "
        "so the fold drains a backlog flat out during the reads. The ceiling is GET /healthz "
        "(an answer without a store read) at the same rate: idle, and right after the "
        "reads while the fold is still draining, on the same two cores as Kafka, the fold "
        "and the load tool.",
        rows, {"players_sampled": len(sample), "mismatches": 0,
               "statuses": {"idle": idle["primary"]["status"], "busy": busy["primary"]["status"]}},
        chart, raw={"idle": idle, "while_folding": busy, "ceiling_healthz": ceiling,
                    "ceiling_healthz_while_folding": ceiling_busy,
                    "backlog_gen": g, "lag_samples": len(lags)},
        notes=[f"The fold was behind during {folding_share * 100:.0f}% of the loaded window."
               if folding_share is not None else "No lag samples."])


# ------------------------------------------------------------------ 4. freshness

def fresh_run(b, serve, rate, prefix):
    """Open-loop POST purchases at rate for fresh_seconds, each 202 followed by GET
    ?after=<token>; returns (loadgen's result, its CPU window, the answer check)."""
    p = b.p
    body = '{"item_type":"gem","quantity":1}'
    acks_file = os.path.join(WORK, f"{prefix}-acks.txt")
    log(f"freshness: POST at {rate}/s for {p.fresh_seconds} s, each 202 followed by "
        "GET ?after=<token>")
    cpu = CpuWindow(serve=serve.proc)
    res = loadgen(serve.base + "/v1/users/{u}/purchases", rate, p.fresh_seconds, connections=64,
                  users=p.fresh_users, prefix=prefix, method="POST", body=body,
                  follow=serve.base + "/inventory/{u}?after={token}&timeout_ms=2000",
                  acks_out=acks_file)
    window = cpu.stop()
    serve.wait_folded(timeout=300)
    follow = res["follow"]
    if "404" in follow["status"]:
        raise WrongAnswer(f"GET ?after=<token of an acked purchase> answered 404 "
                          f"{follow['status']['404']} times")
    check = check_acks(b, serve, acks_file, "gem", slack=res["errors"] + non_2xx(res["primary"]["status"]))
    return res, window, check


def fresh_cpu(res, window):
    """Writes acknowledged per second of the run's wall time, CPU µs per acknowledged write
    (serve / the broker / the load tool) and the cores they kept busy."""
    acked = res["primary"]["status"].get("202", 0)
    per_write = {k: cpu_us(window[k], acked) for k in ("serve_s", "broker_s", "tools_s")}
    busy = sum(window[k] or 0 for k in ("serve_s", "broker_s", "tools_s")) / window["wall_s"]
    return acked / res["wall_s"], per_write, busy


def bench_freshness(b):
    p = b.p
    topic = b.topic("fresh")
    serve = b.serve("fresh", os.path.join(WORK, "fresh-store"), topic)
    serve.wait_ready()
    loadgen(serve.base + "/v1/users/{u}/purchases", 1000, 1, users=100, prefix="warm",
            method="POST", body='{"item_type":"gem","quantity":1}')  # warm-up
    res, window, check = fresh_run(b, serve, p.fresh_rate, "fr")
    low, low_window, low_check = fresh_run(b, serve, p.fresh_low_rate, "fl")
    serve.stop()
    follow, low_follow = res["follow"], low["follow"]
    achieved, per_write, busy = fresh_cpu(res, window)
    low_achieved, low_per_write, low_busy = fresh_cpu(low, low_window)
    # What the goal's rate would ask of this machine at the CPU per write of the run.
    need = sum(v or 0 for v in per_write.values()) * p.fresh_rate / 1e6
    b.goal(f"freshness p99 at {p.fresh_rate:,} writes/s", "≤ 50 ms",
           f"{follow['p99_ms']:.1f} ms ({achieved:,.0f} writes/s achieved, {busy:.2f} of "
           f"{window['cores']} cores busy; at this run's CPU per write, serve, the broker and "
           f"the load tool would need {need:.1f} cores for {p.fresh_rate:,}/s; at "
           f"{p.fresh_low_rate:,}/s, {low_busy:.2f} cores busy: {low_follow['p99_ms']:.1f} ms)",
           follow["p99_ms"] <= 50)
    chart = write_chart(b, "freshness.svg", svgchart.bar_chart(
        f"4. Freshness at {p.fresh_rate:,} and {p.fresh_low_rate:,} writes/s (ms)",
        [(pct.replace("_ms", ""),
          [(f"lootlog at {p.fresh_rate:,}/s", follow[pct], f"{follow[pct]:.1f}"),
           (f"lootlog at {p.fresh_low_rate:,}/s", low_follow[pct], f"{low_follow[pct]:.1f}"),
           (f"write 202 at {p.fresh_rate:,}/s", res["primary"][pct],
            f"{res['primary'][pct]:.1f}")])
         for pct in ("p50_ms", "p99_ms", "p999_ms")],
        "milliseconds (lower is better)",
        note="lootlog = 202 received -> GET ?after=<token> answered; write 202 = POST latency "
             "from its intended send time"))

    def cpu_text(pw):
        return " / ".join(fmt(pw[k], "µs") for k in ("serve_s", "broker_s", "tools_s"))

    rows = [
        row("202 -> visible (GET ?after=token answered): p50", "ms", follow["p50_ms"]),
        row("202 -> visible: p99", "ms", follow["p99_ms"], goal="≤ 50 ms"),
        row("202 -> visible: p99.9 / max", "ms",
            f"{follow['p999_ms']:.1f} / {follow['max_ms']:.1f}"),
        row("visible within 2 s / not (504) / errors", "count",
            f"{follow['status'].get('200', 0):,} / {follow['status'].get('504', 0)} / "
            f"{follow['errors']}"),
        row("POST 202 latency from intended send: p50 / p99", "ms",
            f"{res['primary']['p50_ms']:.1f} / {res['primary']['p99_ms']:.1f}"),
        row("writes acked / scheduled", "count", f"{res['primary']['status'].get('202', 0):,} / "
                                                 f"{res['scheduled']:,}"),
        row("writes acked per second of the run (the schedule's rate when the machine keeps up)",
            "writes/s", achieved, goal=f"{p.fresh_rate:,}"),
        row("CPU per acknowledged write and its GET: serve / the broker / the load tool", "µs",
            cpu_text(per_write)),
        row(f"cores busy during the run (this machine: {window['cores']})", "cores", busy),
        row(f"cores {p.fresh_rate:,} writes/s would take at that CPU per write", "cores", need),
        row(f"at {p.fresh_low_rate:,} writes/s: 202 -> visible p50 / p99 / p99.9", "ms",
            f"{low_follow['p50_ms']:.1f} / {low_follow['p99_ms']:.1f} / "
            f"{low_follow['p999_ms']:.1f}", goal="≤ 50 ms"),
        row(f"at {p.fresh_low_rate:,} writes/s: writes acked per second / cores busy", "",
            f"{low_achieved:,.0f} / {low_busy:.2f}"),
        row(f"at {p.fresh_low_rate:,} writes/s: CPU per write: serve / the broker / the load "
            "tool", "µs", cpu_text(low_per_write)),
    ]
    return section(
        "4. Freshness under write load",
        f"Open-loop POST /v1/users/<u>/purchases at {p.fresh_rate:,}/s for {p.fresh_seconds} s "
        f"({p.fresh_users:,} players, 64 connections); the moment each 202 arrives, loadgen "
        "sends GET /inventory/<u>?after=<its token>&timeout_ms=2000 on a second pool of 512 "
        "connections (a parked GET holds its connection until the fold passes the token). "
        "The time from the 202 to that answer is the write's time to visible (an upper bound: "
        "it includes one GET round trip). The same run follows at "
        f"{p.fresh_low_rate:,} writes/s on the same serve, a rate this machine carries with "
        "the broker and the load tool on it; the CPU rows say what each rate asked of it.",
        rows, {"at_goal_rate": check, f"at_{p.fresh_low_rate}": low_check}, chart,
        raw={"at_goal_rate": dict(res, cpu=window),
             f"at_{p.fresh_low_rate}": dict(low, cpu=low_window)})


def check_acks(b, serve, acks_file, item_type, slack):
    """Each player's quantity of item_type must equal its acked writes, give or take the
    writes whose answer was lost (slack = errors + non-2xx in the run)."""
    acked = {}
    with open(acks_file) as f:
        for line in f:
            user, n = line.split()
            acked[user] = int(n)
    users = list(acked)
    sample = b.rng.sample(users, min(len(users), b.p.sample))
    client = Http(serve.port)
    problems = []
    try:
        for user in sample:
            status, body = client.get(f"/inventory/{user}")
            items = ({i["item_type"]: i["quantity"] for i in json.loads(body)["items"]}
                     if status == 200 else {})
            q = items.get(item_type, 0)
            if not acked[user] <= q <= acked[user] + slack:
                problems.append(f"{user}: {item_type} {q}, acked {acked[user]}")
    finally:
        client.close()
    if problems:
        raise WrongAnswer(f"inventory vs acked writes: {problems[:3]}")
    return {"players_sampled": len(sample), "mismatches": 0, "players_written": len(users),
            "acked_writes": sum(acked.values())}


# ------------------------------------------------------------------ 5. writes

def bench_writes(b):
    p = b.p
    secs, conns = p.write_seconds, p.write_connections
    results = {}
    topic = b.topic("writes")
    serve = b.serve("writes", os.path.join(WORK, "writes-store"), topic)
    serve.wait_ready()
    loadgen(serve.base + "/healthz", 0, 1, connections=conns)
    log(f"writes: lootlog POST purchases and GET /purchase_a_sword, closed loop, {conns} "
        f"connections, {secs} s each")
    post_acks, sword_acks = os.path.join(WORK, "post-acks.txt"), os.path.join(WORK, "sword-acks.txt")
    cpu = CpuWindow(serve=serve.proc)
    results["post"] = loadgen(serve.base + "/v1/users/{u}/purchases", 0, secs, connections=conns,
                              threads=2, users=p.write_users, prefix="wp", method="POST",
                              body='{"item_type":"potion","quantity":1}', acks_out=post_acks)
    results["post_cpu"] = cpu.stop()
    results["sword"] = loadgen(serve.base + "/purchase_a_sword?user_id={u}", 0, secs,
                               connections=conns, threads=2, users=p.write_users, prefix="ws",
                               acks_out=sword_acks)
    log("writes: the HTTP ceiling, GET /healthz closed loop")
    results["healthz"] = loadgen(serve.base + "/healthz", 0, secs, connections=conns, threads=2)
    serve.wait_folded(timeout=300)
    check = {
        "post": check_acks(b, serve, post_acks, "potion", results["post"]["errors"] +
                           non_2xx(results["post"]["primary"]["status"])),
        "sword": check_acks(b, serve, sword_acks, "sword", results["sword"]["errors"] +
                            non_2xx(results["sword"]["primary"]["status"])),
    }
    serve.stop()

    workers = 2 * (os.cpu_count() or 1) + 1
    for key, label, cmd in (
            ("gunicorn", f"gunicorn, {workers} sync workers",
             [PY, "-m", "gunicorn", "-w", str(workers), "--chdir", BENCH, "--log-level", "warning",
              "peer_flask:app"]),
            ("flask_dev", "Flask dev server (threaded)",
             [PY, os.path.join(BENCH, "peer_flask.py")])):
        ptopic = b.topic(f"peer-{key.replace('_', '-')}")
        port = free_port()
        env = dict(os.environ, PEER_BROKERS=BROKERS, PEER_TOPIC=ptopic)
        if key == "gunicorn":
            cmd = cmd[:-1] + ["-b", f"127.0.0.1:{port}", cmd[-1]]
        else:
            cmd = cmd + ["--port", str(port), "--brokers", BROKERS, "--topic", ptopic]
        proc = b.procs.start(f"peer-{key}", cmd, env=env)
        try:
            wait_http(proc, f"http://127.0.0.1:{port}/healthz")
            log(f"writes: peer ({label}) GET /purchase_a_sword")
            url = f"http://127.0.0.1:{port}/purchase_a_sword?user_id={{u}}"
            warm = loadgen(url, 0, 1, connections=conns, users=p.write_users, prefix="pw")
            res = loadgen(url, 0, secs, connections=conns, threads=2, users=p.write_users,
                          prefix="pw")
        finally:
            b.procs.stop(proc)
        acked = sum(n for c, n in list(warm["primary"]["status"].items()) +
                    list(res["primary"]["status"].items()) if c.startswith("2"))
        records = record_count(ptopic)
        if not acked <= records <= warm["sent"] + res["sent"]:
            raise WrongAnswer(f"peer {label}: {records} records in its topic for {acked} acked")
        res["label"], res["records"] = label, records
        results[key] = res

    ctopic = b.topic("ceiling")
    log("writes: produce ceiling (lootlog gen --brokers, max rate)")
    ceiling = gen(ctopic, 1_000_000, max(2, int(secs)), 100_000, 4, "c")
    if record_count(ctopic) != ceiling["ok"]:
        raise WrongAnswer(f"ceiling: {record_count(ctopic)} records for {ceiling['ok']} acked")
    results["ceiling"] = ceiling

    def rate(res):
        return sum(n for c, n in res["primary"]["status"].items() if c.startswith("2")) / secs
    post, sword = rate(results["post"]), rate(results["sword"])
    guni, dev, ceil = rate(results["gunicorn"]), rate(results["flask_dev"]), ceiling["achieved_per_s"]
    healthz = rate(results["healthz"])
    post_cpu = results["post_cpu"]
    acked_post = post * secs
    # The CPU a write may cost at the goal's rate, beside what the broker (acking it) and
    # the load tool (sending it) took per acknowledged POST in this run, before serve.
    budget_us = post_cpu["cores"] * 1e6 / (ceil / 2)
    per_post_us = {k: cpu_us(post_cpu[k], acked_post) for k in ("serve_s", "broker_s", "tools_s")}
    others_us = (per_post_us["broker_s"] or 0) + (per_post_us["tools_s"] or 0)
    b.goal("acknowledged HTTP writes vs the no-HTTP produce ceiling", "≥ 0.5×",
           f"{max(post, sword) / ceil:.2f}× ({max(post, sword):,.0f} of {ceil:,.0f}/s; the "
           f"empty GET /healthz tops out at {healthz:,.0f}/s = {healthz / ceil:.2f}× here; "
           f"at 0.5× ({ceil / 2:,.0f}/s) the {post_cpu['cores']} cores give {budget_us:.0f} µs "
           f"of CPU per write, and the broker and the load tool took {others_us:.0f} µs per "
           f"acknowledged POST before serve's {per_post_us['serve_s'] or 0:.0f})",
           max(post, sword) / ceil >= 0.5)
    chart = write_chart(b, "writes.svg", svgchart.bar_chart(
        "5. Acknowledged writes/s over HTTP",
        [("POST /v1/users/{u}/purchases", [("lootlog", post, None), ("ceiling", ceil, None)]),
         ("GET /purchase_a_sword", [("lootlog", sword, None), ("peer", guni, None),
                                    ("peer (Flask dev server)", dev, None),
                                    ("ceiling", ceil, None)])],
        "acknowledged writes per second (higher is better)",
        note=f"peer = Flask + kafka-python under gunicorn ({workers} workers); ceiling = lootlog "
             "gen --brokers (no HTTP)"))
    rows = [
        row("POST /v1/users/{u}/purchases", "writes/s", post, None, ceil, "≥ 0.5× ceiling",
            ceiling_name="gen --brokers"),
        row("GET /purchase_a_sword", "writes/s", sword, guni, ceil, "≥ 0.5× ceiling",
            f"Flask+kafka-python, gunicorn -w {workers}", "gen --brokers"),
        row("GET /purchase_a_sword vs the Flask dev server", "writes/s", sword, dev, None,
            peer_name="Flask dev server"),
        row("any HTTP request: GET /healthz, same connections", "requests/s", healthz, None,
            ceil),
        row("CPU per acknowledged POST: serve / the broker / the load tool", "µs",
            " / ".join(fmt(us, "µs") for us in per_post_us.values())),
        row(f"cores busy during the POST run (this machine: {post_cpu['cores']})", "cores",
            sum(post_cpu[k] or 0 for k in ("serve_s", "broker_s", "tools_s")) / post_cpu["wall_s"]),
        row("POST p50 / p99 latency", "ms",
            f"{results['post']['p50_ms']:.1f} / {results['post']['p99_ms']:.1f}"),
        row("GET /purchase_a_sword p50 / p99 latency", "ms",
            f"{results['sword']['p50_ms']:.1f} / {results['sword']['p99_ms']:.1f}",
            f"{results['gunicorn']['p50_ms']:.1f} / {results['gunicorn']['p99_ms']:.1f}"),
        row("non-2xx / errors", "count",
            f"{non_2xx(results['post']['primary']['status']) + non_2xx(results['sword']['primary']['status'])}"
            f" / {results['post']['errors'] + results['sword']['errors']}",
            f"{non_2xx(results['gunicorn']['primary']['status'])} / {results['gunicorn']['errors']}"),
    ]
    return section(
        "5. Writes over HTTP",
        f"Closed loop (each of {conns} connections sends its next request when the previous "
        f"answer arrives; bench/loadgen.c with --rate 0, 2 threads) for {secs} s, writes spread "
        f"over {p.write_users:,} players. lootlog answers 202 only after Kafka acked (acks=all, "
        "idempotent); the peer is the classic game API (bench/peer_flask.py: Flask + kafka-python, "
        "waits for acks=all too), served by gunicorn the way a team would deploy it and by the "
        "Flask dev server. The ceiling is the no-HTTP produce rate of `lootlog gen --brokers` at "
        "an unreachable target rate (the same events, librdkafka, acks=all). GET /healthz, "
        "closed loop on the same connections, is the most HTTP requests this machine carries "
        "with the load tool on it.",
        rows, check, chart, raw=results)


def wait_http(proc, url, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise CannotRun(f"{url}: process exited {proc.returncode}: {log_tail(proc.logpath)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise CannotRun(f"{url} not ready within {timeout} s")


# ------------------------------------------------------------------ 6. footprint

def bench_footprint(b):
    p = b.p
    rows, raw, notes = [], {}, []
    records = b.shared.get("replay_records")
    if records:
        ours = b.shared["replay_bytes"] / records
        peer = b.shared["peer"]["bytes"] / records
        kafka = b.shared["kafka_bytes"] / records if b.shared.get("kafka_bytes") else None
        live = du_bytes(b.shared["live_store"]) / b.shared["live_records"] \
            if b.shared.get("live_store") else None
        rows.append(row("database bytes per event (replayed store)", "bytes", ours, peer, kafka,
                        "≤ 100", "peer_fold.py SQLite", "Kafka log (lz4)"))
        if live:
            rows.append(row("database bytes per event (live store)", "bytes", live))
        b.goal("database bytes per event", "≤ 100", f"{ours:.0f}", ours <= 100)
        raw.update(replay_store_bytes=b.shared["replay_bytes"], records=records,
                   peer_bytes=b.shared["peer"]["bytes"], kafka_bytes=b.shared.get("kafka_bytes"))
        chart = write_chart(b, "footprint.svg", svgchart.bar_chart(
            f"6. Bytes on disk per event ({records:,} gen events)",
            [("bytes / event", [("lootlog", ours, f"{ours:.0f}"), ("peer", peer, f"{peer:.0f}"),
                                ("ceiling", kafka, f"{kafka:.0f}" if kafka else None)])],
            "bytes per event (lower is better)",
            note="lootlog = du of the replayed store; peer = peer_fold.py's SQLite; "
                 "ceiling = the topic's Kafka log segments"))
    else:
        chart = None
        notes.append("bytes per event: no replayed store (benchmark 1 did not run)")

    if b.shared.get("rss_folded_kb"):
        players = b.shared["rss_players"]
        mb = b.shared["rss_idle_kb"] / 1024
        rows.append(row(f"serve peak RSS (VmHWM), {players:,} players folded + idle reads", "MB",
                        mb, goal="≤ 100 MB at 1M players"))
        rows.append(row("serve peak RSS right after folding them", "MB",
                        b.shared["rss_folded_kb"] / 1024))
        rows.append(row("serve peak RSS, backlog fold + reads (second process)", "MB",
                        b.shared["rss_busy_kb"] / 1024))
        rows.append(row(f"time to fold {players:,} new players (serve)", "s",
                        b.shared["players_fold_s"]))
        b.goal(f"serve peak RSS with {players:,} players", "≤ 100 MB (1M players)", f"{mb:.0f} MB",
               mb <= 100 if players >= 1_000_000 else None)
    else:
        notes.append("peak RSS: benchmark 3 did not run")

    try:
        snap = snapshot_restore(b)
    except CannotRun as e:
        snap = {"failed": str(e)}
    raw["snapshot"] = snap
    failed = f"failed: {snap['failed']}" if "failed" in snap else None
    rows.append(row(f"restore of a {p.snapshot_players:,}-player snapshot", "s",
                    snap.get("restore_s", failed)))
    rows.append(row("taking that snapshot (lootlog snapshot)", "s", snap.get("snapshot_s", failed)))
    if "failed" in snap:
        b.soft_failures.append(f"6. snapshot/restore: {snap['failed']}")
    return section(
        "6. Footprint",
        "Bytes per event: a recursive `du` of the store that `lootlog replay` built in "
        "benchmark 1 (a file, or a folder of per-partition stores), over the events folded. "
        f"Peak RSS: VmHWM of the `serve` of benchmark 3 after folding {p.read_players:,} "
        "distinct players and serving the idle reads. Restore: `lootlog snapshot` of a store "
        f"replayed from {p.snapshot_players:,} seeded players to WebHDFS, then "
        "`lootlog restore` into a new path, timed; the restored store is checked through "
        "GET /inventory and its row counts.",
        rows, snap.get("check", {}), chart, raw=raw, notes=notes)


def snapshot_restore(b):
    """Snapshot and restore; {"failed": reason} when the verbs fail (recorded, not fatal);
    a restored store with the wrong state raises WrongAnswer."""
    p = b.p
    topic = b.topic("snap")
    seed_players(topic, "s", p.snapshot_players)
    store, restored = os.path.join(WORK, "snap-store"), os.path.join(WORK, "restored-store")
    run([BIN, "replay", "--brokers", BROKERS, "--topic", topic, "--db", store, *b.fold_flags],
        timeout=3600, check=True)
    url = f"webhdfs://{WEBHDFS}/bench/{b.run_id}"
    log("footprint: lootlog snapshot + restore")
    snap_s, proc = run([BIN, "snapshot", "--db", store, "--snapshot-url", url], timeout=1800)
    if proc.returncode != 0:
        return {"failed": f"snapshot: {last_line(proc.stderr or proc.stdout)}"}
    m = re.search(r"snapshot: (\S+) written", proc.stdout)
    restore_cmd = [BIN, "restore", "--snapshot-url", url, "--db", restored]
    if m:
        restore_cmd += ["--id", m.group(1)]
    restore_s, proc = run(restore_cmd, timeout=1800)
    if proc.returncode != 0:
        return {"failed": f"restore: {last_line(proc.stderr or proc.stdout)}",
                "snapshot_s": snap_s}
    want, got = store_counts(store), store_counts(restored)
    if want != got:
        raise WrongAnswer(f"restored store rows {got} != snapshotted store {want}")
    serve = b.serve("restored", restored, topic)
    try:
        serve.wait_ready()
        sample = [f"s{b.rng.randrange(p.snapshot_players)}" for _ in range(p.sample - 5)]
        sample += [f"s{p.snapshot_players + i}" for i in range(5)]
        mismatches = check_sample(serve.port, sample, seed_expect("s", p.snapshot_players))
    finally:
        serve.stop()
    if mismatches:
        raise WrongAnswer(f"restored store: {mismatches[:3]}")
    return {"snapshot_s": round(snap_s, 2), "restore_s": round(restore_s, 2),
            "snapshot_id": m.group(1) if m else None, "bytes": du_bytes(restored),
            "check": {"rows": got, "players_sampled": len(sample), "mismatches": 0}}


# ------------------------------------------------------------------ 7. point-in-time reads

PIT_ITEMS = ITEM_TYPES[:6]  # few types, so consumes often find (and often miss) what was bought


def iso_ms(ms):
    """The canonical ts of a millisecond time: YYYY-MM-DDTHH:MM:SS.mmmZ."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ms // 1000)) + f".{ms % 1000:03d}Z"


class PitPlayer:
    """One player's made-up history, and the state the fold rules give after each of its
    events, computed here from the events alone (not from anything lootlog wrote):
    dedupe on event_id, expected_version, purchases add, a consume of more than is held
    is rejected whole, version = applied events."""

    def __init__(self, user, count, start_ms, span_ms, rng):
        self.user = user
        self.values, self.ts, self.states, self.offsets = [], [], [], []
        self.partition = None
        self.outcomes = {"applied": 0, "rejected": 0, "duplicate": 0}
        version, held, seen, previous = 0, {}, set(), None
        t = start_ms
        for i in range(count):
            if previous and rng.random() < 0.02:  # a producer retry: the same event again
                event_id, ts_ms, value, kind, lines, expected = previous
            else:
                t += max(2, int(span_ms / count * rng.uniform(0.5, 1.5)))
                ts_ms, event_id = t, str(uuid.UUID(int=rng.getrandbits(128), version=4))
                kind = "purchase_item" if i == 0 or rng.random() < 0.55 else "consume_item"
                lines = [(rng.choice(PIT_ITEMS), rng.randint(1, 5 if kind == "purchase_item" else 4))
                         for _ in range(rng.randint(1, 3 if kind == "purchase_item" else 2))]
                expected = None
                if i and rng.random() < 0.06:  # half of them stale: version_conflict
                    expected = version if rng.random() < 0.5 else abs(version - 1)
                value = json.dumps({
                    "v": 1, "event_id": event_id, "event_type": kind, "user_id": user,
                    "ts": iso_ms(ts_ms), "guild_id": None, "expected_version": expected,
                    "items": [{"item_type": it, "quantity": q, "unit_price": 10} for it, q in lines],
                    "metadata": {"remote_addr": None, "host": None, "user_agent": None,
                                 "accept_language": None}}, separators=(",", ":"))
                previous = (event_id, ts_ms, value, kind, lines, expected)
            if event_id in seen:
                outcome = "duplicate"
            else:
                seen.add(event_id)
                merged = {}
                for it, q in lines:
                    merged[it] = merged.get(it, 0) + q
                if expected is not None and expected != version:
                    outcome = "rejected"
                elif kind == "consume_item" and any(held.get(it, 0) < q for it, q in merged.items()):
                    outcome = "rejected"
                else:
                    sign = 1 if kind == "purchase_item" else -1
                    held = dict(held)
                    for it, q in merged.items():
                        held[it] = held.get(it, 0) + sign * q
                        if not held[it]:
                            del held[it]
                    version += 1
                    outcome = "applied"
            self.outcomes[outcome] += 1
            self.values.append(value)
            self.ts.append(ts_ms)
            self.states.append((version, held))

    def _state(self, index):
        """(version, items, ts of the last event counted) after the first index events,
        or None while the player does not exist (no applied event yet: 404)."""
        if index == 0 or self.states[index - 1][0] == 0:
            return None
        version, items = self.states[index - 1]
        return version, items, iso_ms(self.ts[index - 1])

    def at_time(self, t_ms):
        return self._state(bisect.bisect_right(self.ts, t_ms))

    def at_offset(self, offset):
        return self._state(bisect.bisect_right(self.offsets, offset))

    def free_point(self, t_ms, taken):
        """A time on no event of the topic (so "at or before T" and Kafka's "timestamp
        before T" cut at the same events)."""
        while t_ms in taken:
            t_ms += 1
        return t_ms


def produce_pit(topic, players):
    """Both players' events in time order, keyed by player (murmur2, as lootlog's producer
    does), each message's Kafka timestamp = its event's ts (what replay --until-time cuts
    on); records each event's partition and offset."""
    from confluent_kafka import Producer
    order = sorted((ts, pi, k) for pi, pl in enumerate(players) for k, ts in enumerate(pl.ts))
    placed, failed = {}, []
    producer = Producer({"bootstrap.servers": BROKERS, "acks": "all", "enable.idempotence": True,
                         "partitioner": "murmur2_random", "linger.ms": 20,
                         "compression.type": "lz4"})

    def delivered(where):
        def report(err, msg):
            if err:
                failed.append(err)
            else:
                placed[where] = (msg.partition(), msg.offset())
        return report
    for n, (ts, pi, k) in enumerate(order):
        pl = players[pi]
        while True:
            try:
                producer.produce(topic, value=pl.values[k], key=pl.user, timestamp=ts,
                                 on_delivery=delivered((pi, k)))
                break
            except BufferError:
                producer.poll(0.05)
        if n % 1000 == 0:
            producer.poll(0)
    if producer.flush(120) or failed or len(placed) != len(order):
        raise CannotRun(f"producing {topic}: {len(failed)} failed deliveries {failed[:1]}")
    for pi, pl in enumerate(players):
        spots = [placed[(pi, k)] for k in range(len(pl.ts))]
        if len({p for p, _ in spots}) != 1:
            raise CannotRun(f"{pl.user}: events on more than one partition")
        pl.partition = spots[0][0]
        pl.offsets = [o for _, o in spots]


def pit_mismatch(label, status, body, want):
    """None when a GET answer is want (None: 404), else what differs."""
    if want is None:
        return None if status == 404 else f"{label}: expected 404, got {status} {body[:120]!r}"
    if status != 200:
        return f"{label}: expected 200, got {status} {body[:120]!r}"
    got = json.loads(body)
    version, items, last_ts = want
    got_items = {i["item_type"]: i["quantity"] for i in got.get("items", [])}
    if got_items != items or got.get("version") != version or got.get("guild_id") is not None:
        return (f"{label}: version {got.get('version')} items {got_items} guild "
                f"{got.get('guild_id')} != expected {version} {items} None")
    as_of = got.get("as_of_event") or {}
    if last_ts is not None and as_of.get("ts") != last_ts:  # None: a plain GET
        return f"{label}: as_of_event.ts {as_of.get('ts')} != last event at or before {last_ts}"
    return None


def replayed_state(folder, user):
    """(version, items) of user in a replayed folder (its SQLite stores), or None."""
    for f in store_files(folder):
        con = sqlite3.connect(f"file:{f}?mode=ro", uri=True)
        try:
            row = con.execute("SELECT version, guild_id FROM players WHERE user_id=? AND "
                              "version > 0", (user,)).fetchone()
            if row:
                items = dict(con.execute(
                    "SELECT i.item_type, i.quantity FROM inventory i JOIN players p ON "
                    "p.player_key = i.player_key WHERE p.user_id = ?", (user,)))
                return row[0], row[1], items
        finally:
            con.close()
    return None


def timed_gets(client, paths):
    """Closed loop on one keep-alive connection: [(ms, status, body)] in order."""
    out = []
    for path in paths:
        start = time.perf_counter()
        status, body = client.get(path)
        out.append(((time.perf_counter() - start) * 1000, status, body))
    return out


def percentiles(ms):
    s = sorted(ms)

    def pct(q):
        return s[min(len(s) - 1, max(0, math.ceil(q * len(s)) - 1))]
    return {"count": len(s), "p50_ms": pct(0.5), "p99_ms": pct(0.99), "p999_ms": pct(0.999),
            "max_ms": s[-1], "mean_ms": sum(s) / len(s)}


def bench_pit(b):
    p = b.p
    rng = random.Random(14)
    sizes = p.pit_events
    span_ms = 10 * 3600 * 1000  # ten hours of play, ending an hour ago (Kafka keeps it)
    start_ms = (int(time.time()) - 11 * 3600) * 1000
    players = [PitPlayer(f"pit-{n}", n, start_ms, span_ms, rng) for n in sizes]
    topic = b.topic("pit")
    log(f"point-in-time: producing {' and '.join(f'{n:,}' for n in sizes)} events of two players")
    produce_pit(topic, players)
    store = os.path.join(WORK, "pit-store")
    serve = b.serve("pit", store, topic)
    serve.wait_for("/healthz")
    serve.wait_folded(timeout=300)
    taken = {t for pl in players for t in pl.ts}
    client = Http(serve.port)
    problems, checked = [], 0
    results, raw = {}, {}
    try:
        # The answers first: before the first event, after the last, at tokens.
        for pl in players:
            first, last = pl.ts[0], pl.ts[-1]
            for t in (first - 1000, first, last, last + 60_000):
                status, body = client.get(f"/inventory/{pl.user}?at={iso_ms(t)}")
                problems.append(pit_mismatch(f"{pl.user} at {iso_ms(t)}", status, body,
                                             pl.at_time(t)))
            status, body = client.get(f"/inventory/{pl.user}")
            problems.append(pit_mismatch(f"{pl.user} now", status, body,
                                         pl.at_time(last)[:2] + (None,)))
            for k in rng.sample(range(len(pl.offsets)), 10):
                status, body = client.get(f"/inventory/{pl.user}?at_token="
                                          f"{pl.partition}:{pl.offsets[k]}")
                problems.append(pit_mismatch(f"{pl.user} at_token {pl.partition}:{pl.offsets[k]}",
                                             status, body, pl.at_offset(pl.offsets[k])))
            checked += 15

        # The latency: random points over each player's span, closed loop, every answer
        # checked against the events too (after the clock stopped).
        for pl in players:
            first, last = pl.ts[0], pl.ts[-1]
            points = [pl.free_point(rng.randrange(first, last), taken) for _ in range(p.pit_requests)]
            timed_gets(client, [f"/inventory/{pl.user}?at={iso_ms(t)}" for t in points[:20]])
            log(f"point-in-time: {p.pit_requests} GET ?at= for {pl.user}")
            answers = timed_gets(client, [f"/inventory/{pl.user}?at={iso_ms(t)}" for t in points])
            for t, (_, status, body) in zip(points, answers):
                problems.append(pit_mismatch(f"{pl.user} at {iso_ms(t)}", status, body,
                                             pl.at_time(t)))
            checked += len(points)
            now = timed_gets(client, [f"/inventory/{pl.user}"] * p.pit_requests)
            early = [ms for t, (ms, _, _) in zip(points, answers) if t < first + (last - first) / 10]
            late = [ms for t, (ms, _, _) in zip(points, answers) if t > last - (last - first) / 10]
            results[pl.user] = {
                "events": len(pl.ts), "at": percentiles([ms for ms, _, _ in answers]),
                "now": percentiles([ms for ms, _, _ in now]),
                "first_tenth_p50_ms": percentiles(early)["p50_ms"] if early else None,
                "last_tenth_p50_ms": percentiles(late)["p50_ms"] if late else None}
    finally:
        client.close()

    # The peer: a replay up to T into a new folder, then reading the player there; each
    # replayed state is also the check of ?at=T for both players.
    replays = []
    for i in range(p.pit_replays):
        lo, hi = min(pl.ts[0] for pl in players), max(pl.ts[-1] for pl in players)
        t = players[0].free_point(lo + (hi - lo) * (i + 1) // (p.pit_replays + 1) +
                                  rng.randrange(-60_000, 60_000), taken)
        folder = os.path.join(WORK, f"pit-replay-{i}")
        log(f"point-in-time: lootlog replay --until-time {iso_ms(t)}")
        start = time.monotonic()
        run([BIN, "replay", "--brokers", BROKERS, "--topic", topic, "--until-time", iso_ms(t),
             "--db", folder, *b.fold_flags], timeout=1800, check=True)
        replay_s = time.monotonic() - start
        states = {pl.user: replayed_state(folder, pl.user) for pl in players}
        total_s = time.monotonic() - start
        replays.append({"at": iso_ms(t), "replay_s": round(replay_s, 3),
                        "replay_and_read_s": round(total_s, 3)})
        client = Http(serve.port)
        try:
            for pl in players:
                want = pl.at_time(t)
                got = states[pl.user]
                if (got and (got[0], got[2])) != (want and (want[0], want[1])) or \
                        (got and got[1] is not None):
                    problems.append(f"{pl.user}: replay --until-time {iso_ms(t)} gives {got}, "
                                    f"the events give {want and want[:2]}")
                status, body = client.get(f"/inventory/{pl.user}?at={iso_ms(t)}")
                problems.append(pit_mismatch(f"{pl.user} at {iso_ms(t)} (replayed)", status, body,
                                             want))
                checked += 1
        finally:
            client.close()
    serve.stop()
    problems = [x for x in problems if x]
    if problems:
        raise WrongAnswer(f"{len(problems)} wrong point-in-time answers: " + "; ".join(problems[:3]))

    replay_ms = sorted(r["replay_and_read_s"] * 1000 for r in replays)
    replay_median = replay_ms[len(replay_ms) // 2]
    big, small = (results[pl.user] for pl in (players[-1], players[0]))
    b.goal(f"GET /inventory?at= p99, one player with {len(players[-1].ts):,} events",
           "milliseconds (issue 14; here p99 ≤ 50 ms)", f"{big['at']['p99_ms']:.1f} ms",
           big["at"]["p99_ms"] <= 50 if not p.quick else None)
    rows = []
    for pl in players:
        res = results[pl.user]
        n = f"{len(pl.ts):,} events"
        rows += [
            row(f"{n}: GET ?at=T p50", "ms", res["at"]["p50_ms"], replay_median,
                res["now"]["p50_ms"], peer_name="replay --until-time T, then read the store",
                ceiling_name="GET /inventory now"),
            row(f"{n}: GET ?at=T p99", "ms", res["at"]["p99_ms"], None, res["now"]["p99_ms"],
                goal="milliseconds" if pl is players[-1] else ""),
            row(f"{n}: GET ?at=T p99.9 / max", "ms",
                f"{res['at']['p999_ms']:.2f} / {res['at']['max_ms']:.2f}", None,
                f"{res['now']['p999_ms']:.2f} / {res['now']['max_ms']:.2f}"),
            row(f"{n}: p50 with T in the first / last tenth of the history", "ms",
                f"{res['first_tenth_p50_ms']:.2f} / {res['last_tenth_p50_ms']:.2f}"
                if res["first_tenth_p50_ms"] and res["last_tenth_p50_ms"] else None),
        ]
    rows.append(row("replay --until-time T + read: median / max of "
                    f"{len(replays)}", "ms", None, f"{replay_median:,.0f} / {replay_ms[-1]:,.0f}"))
    groups = [(f"{len(pl.ts):,} events", [
        ("?at= p50", results[pl.user]["at"]["p50_ms"], f"{results[pl.user]['at']['p50_ms']:.2f}"),
        ("lootlog", results[pl.user]["at"]["p99_ms"], f"{results[pl.user]['at']['p99_ms']:.2f}"),
        ("ceiling", results[pl.user]["now"]["p99_ms"], f"{results[pl.user]['now']['p99_ms']:.2f}")])
        for pl in players]
    chart = write_chart(b, "pit.svg", svgchart.bar_chart(
        "7. GET /inventory/{u}?at=T latency by the player's history (ms)", groups,
        "milliseconds, closed loop (lower is better)",
        note=f"lootlog = ?at=T p99; ceiling = GET /inventory now, p99; the peer "
             f"(replay --until-time T) took {replay_median / 1000:.2f} s per question"))
    outcomes = {pl.user: pl.outcomes for pl in players}
    total = sum(len(pl.ts) for pl in players)
    return section(
        "7. Point-in-time reads",
        f"Two players with {' and '.join(f'{len(pl.ts):,}' for pl in players)} events over "
        "ten hours (purchases and consumes of 6 item types; some consumes of more than is held "
        "and some stale `expected_version`s rejected, 2% producer retries deduplicated), "
        f"produced straight to a {PARTITIONS}-partition topic ({total:,} events in all) with "
        "each message's Kafka timestamp = its event's `ts`, folded by `lootlog serve`. Then, "
        f"for each player, {p.pit_requests} `GET /inventory/<u>?at=T` for T uniform over "
        "the player's span, one keep-alive connection, closed loop (the client is Python: "
        "its ~0.1 ms per request is in every number, ceiling included). Ceiling: the same "
        "number of plain `GET /inventory/<u>` (the current state, one row read). Peer: what "
        "answering took before: `lootlog replay --until-time T --db <new folder>` of the same "
        "topic, then reading the player from the replayed stores (sqlite3); its time grows "
        "with the whole topic, ?at= only with the player's own history.",
        rows, {"answers_checked": checked, "mismatches": 0,
               "against": "the events produced (Python), and for each replay point the "
                          "replay --until-time state of both players",
               "outcomes": outcomes},
        chart, raw={"results": results, "replays": replays, "topic_events": total})


# ------------------------------------------------------------------ 8. scale-out

SCALE_NODES = (1, 2, 3)


class Group:
    """k `lootlog serve --group` nodes of one new consumer group, started at once, each
    with its own new folder. Who owns what comes from each node's GET /v1/cluster."""

    def __init__(self, b, k, topic):
        self.k, self.topic = k, topic
        self.name = f"bench-{b.run_id}-scale{k}-{uuid.uuid4().hex[:6]}"
        self.nodes = []
        try:
            for i in range(k):
                name = f"scale{k}-node{i + 1}"
                self.nodes.append(b.serve(name, os.path.join(WORK, name), topic,
                                          ["--group", self.name, "-X", "session.timeout.ms=6000"]))
        except Exception:
            self.stop()
            raise

    def views(self):
        """Each node's GET /v1/cluster (None while it does not answer 200)."""
        out = []
        for node in self.nodes:
            node.alive_or_raise()
            status, body = node.status("/v1/cluster", timeout=2)
            out.append(json.loads(body) if status == 200 else None)
        return out

    def owners(self, partitions):
        """{partition: (node, next_offset)} once the group has settled: every node's view
        Stable with k members, each partition here on exactly one node, and every view
        naming that node as its owner. None before."""
        views = self.views()
        if any(v is None or v.get("state") != "Stable" or v.get("members") != self.k
               for v in views):
            return None
        found = {}
        for node, view in zip(self.nodes, views):
            for e in view["partitions"]:
                if e.get("here"):
                    if e["partition"] in found:
                        return None
                    found[e["partition"]] = (node, e.get("next_offset", -1))
        if set(found) != set(partitions):
            return None
        for view in views:
            named = {e["partition"]: e.get("owner") for e in view["partitions"]}
            if any(named.get(p) != f"127.0.0.1:{node.port}" for p, (node, _) in found.items()):
                return None
        return found

    @staticmethod
    def folded(found, ends):
        """Whether each partition's owner has folded up to ends[p] = (low, high)."""
        return all(hi <= lo or found[p][1] >= hi for p, (lo, hi) in ends.items())

    def wait_drained(self, ends, t0, timeout):
        """Polls every 100 ms until the group has settled and every owner has folded its
        partitions to ends. Returns (seconds to settled, seconds to drained) since t0,
        and the owners."""
        settled_at = None
        while True:
            found = self.owners(ends)
            now = time.monotonic()
            if found is not None:
                if settled_at is None:
                    settled_at = now - t0
                if self.folded(found, ends):
                    return settled_at, now - t0, found
            if now - t0 > timeout:
                raise CannotRun(f"{self.k} node(s): " + (
                    "the group did not settle" if settled_at is None else
                    "the owners did not fold to the topic end") + f" within {timeout:.0f} s")
            time.sleep(0.1)

    @staticmethod
    def owner_files(found):
        """Each partition's store at its owner only: a node keeps the stale copy of a
        partition it folded for a while before a rebalance moved it."""
        return [os.path.join(node.db, f"p{p}.db") for p, (node, _) in sorted(found.items())]

    def wait_quiescent(self, timeout):
        """As Serve.wait_quiescent, over the owners: every partition folded to the topic's
        end, the owners' outboxes empty, and the end not moving meanwhile."""
        deadline = time.monotonic() + timeout
        while True:
            before = watermarks(self.topic)
            found = self.owners(before)
            if found is not None and self.folded(found, before) and \
                    outbox_rows(self.owner_files(found)) == 0 and watermarks(self.topic) == before:
                return found
            if time.monotonic() > deadline:
                raise CannotRun(f"{self.k} node(s): the group's fold and guild exchange did not "
                                f"settle within {timeout:.0f} s")
            time.sleep(0.2)

    def stop(self):
        """SIGTERM to every node first: one by one, each leaving would hand its
        partitions to the others for nothing."""
        for node in self.nodes:
            if node.proc.poll() is None:
                node.proc.send_signal(signal.SIGTERM)
        for node in self.nodes:
            node.stop()


def forwarded_count(serve):
    return sum(v for n, lab, v in serve.metrics()
               if n == "lootlog_forwarded_total" and 'result="relayed"' in lab)


def scale_reads(b, node):
    """Open-loop GET /inventory/g<random> through one node (hits and 404s alike: the same
    users for every k); with the node's forwarded count over the measured run."""
    p = b.p
    url = node.base + "/inventory/{u}"
    loadgen(url, p.scale_read_rate, 1, users=p.gen_users, prefix="g")  # warm-up, not measured
    before = forwarded_count(node)
    res = loadgen(url, p.scale_read_rate, p.scale_read_seconds, users=p.gen_users, prefix="g")
    res["forwarded"] = forwarded_count(node) - before
    res["wrong"] = {c: n for c, n in res["primary"]["status"].items() if c not in ("200", "404")}
    return res


def bench_scale(b):
    p = b.p
    topic = b.gen_topic()
    if b.shared.get("kcat_topic") == topic:
        kcat_rate = b.shared["kcat_rate"]
    else:
        kcat_records, kcat_wall = kcat_consume(b, topic)
        kcat_rate = kcat_records / kcat_wall
    runs, reads, checks = {}, {}, {}
    for k in SCALE_NODES:
        ends = watermarks(topic)
        records = sum(hi - lo for lo, hi in ends.values())
        log(f"scale: {k} node(s) of a new group drain {records:,} records")
        load = load_average()
        t0 = time.monotonic()
        group = Group(b, k, topic)
        try:
            settled_s, drained_s, found = group.wait_drained(ends, t0, max(180, records / 2000))
            owned = [sorted(pt for pt, (node, _) in found.items() if node is n)
                     for n in group.nodes]
            runs[k] = {"records": records, "settled_s": round(settled_s, 2),
                       "drained_s": round(drained_s, 2), "rate": records / drained_s,
                       "partitions_per_node": [",".join(map(str, o)) for o in owned],
                       "load_average_at_start": load, "group": group.name}
            log(f"scale: {k} node(s): settled after {settled_s:.1f} s, drained after "
                f"{drained_s:.1f} s ({records / drained_s:,.0f} records/s), partitions {owned}")
            if k in (1, SCALE_NODES[-1]):
                # Settled first: with a group, a partition's outbox goes out once it caught up.
                found = group.wait_quiescent(max(120, records / 5000))
                checks[k] = b.check_against_peer(group.nodes[0], group.owner_files(found), topic)
                checks[k]["store_rows_from"] = "each partition's owner only"
                log(f"scale: {k} node(s): open-loop GET /inventory at {p.scale_read_rate:,}/s "
                    f"for {p.scale_read_seconds} s through node 1")
                load = load_average()
                reads[k] = scale_reads(b, group.nodes[0])
                reads[k].update(node1_partitions=owned[0], load_average_at_start=load)
        finally:
            group.stop()
    for k, res in reads.items():  # 200 and 404 are answers; anything else is a failed read
        if sum(res["wrong"].values()) + res["errors"] > 0.01 * max(1, res["count"]):
            raise CannotRun(f"reads through node 1 with {k} node(s): statuses {res['wrong']}, "
                            f"{res['errors']} errors of {res['count']:,}")

    one, top = runs[1], runs[SCALE_NODES[-1]]
    r1, r3 = reads[1], reads[SCALE_NODES[-1]]
    fwd_share = r3["forwarded"] / r3["count"] if r3["count"] else None
    n1_parts = len(r3["node1_partitions"])
    per_partition = (b.shared["replay_rate"] / PARTITIONS if b.shared.get("replay_rate")
                     else None)
    labels = {k: f"{k} node{'s' if k > 1 else ''}" for k in SCALE_NODES}
    n3 = labels[SCALE_NODES[-1]]
    groups = [(labels[k] + (" (peer)" if k == 1 else ""),
               [("peer" if k == 1 else "lootlog", runs[k]["rate"],
                 f"{svgchart.short(runs[k]['rate'])} ({runs[k]['rate'] / one['rate']:.2f}×)")])
              for k in SCALE_NODES]
    groups.append(("kcat -C", [("ceiling", kcat_rate, None)]))
    chart = write_chart(b, "scale.svg", svgchart.bar_chart(
        f"8. Drain of {one['records']:,} records by 1, 2 and 3 nodes of a group (records/s)",
        groups, "records/s folded, start to every partition at the topic end (higher is better)",
        note="2 cores for Kafka, HDFS and every node: more nodes share the same cores here; "
             "ceiling = kcat -C consume-only"))
    rows = []
    for k in SCALE_NODES:
        run_ = runs[k]
        rows.append(row(f"drain rate, {labels[k]}", "records/s", run_["rate"],
                        one["rate"] if k > 1 else None, kcat_rate,
                        peer_name="1 node (k=1)", ceiling_name="kcat -C"))
    rows += [
        row("drain wall time, " + " / ".join(labels[k] for k in SCALE_NODES), "s",
            " / ".join(f"{runs[k]['drained_s']:.1f}" for k in SCALE_NODES)),
        row("group Stable with every partition owned, after start", "s",
            " / ".join(f"{runs[k]['settled_s']:.1f}" for k in SCALE_NODES)),
        row("partitions per node", "count",
            " / ".join("+".join(str(len(o.split(","))) for o in runs[k]["partitions_per_node"])
                       for k in SCALE_NODES)),
        row("records in the topic at the start", "count",
            " / ".join(f"{runs[k]['records']:,}" for k in SCALE_NODES)),
        row("load average (1 min) at the start", "",
            " / ".join(f"{runs[k]['load_average_at_start']:.2f}" for k in SCALE_NODES)),
        row(f"GET /inventory via node 1 of {n3}: p50", "ms", r3["p50_ms"], r1["p50_ms"],
            peer_name="1 node (k=1)"),
        row(f"GET /inventory via node 1 of {n3}: p99", "ms", r3["p99_ms"], r1["p99_ms"]),
        row(f"GET /inventory via node 1 of {n3}: p99.9 / max", "ms",
            f"{r3['p999_ms']:.2f} / {r3['max_ms']:.2f}", f"{r1['p999_ms']:.2f} / {r1['max_ms']:.2f}"),
        row(f"GET /inventory via node 1 of {n3}: forwarded to another node", "%",
            fwd_share * 100 if fwd_share is not None else None,
            r1["forwarded"] / r1["count"] * 100 if r1["count"] else None,
            goal=f"node 1 owns {n1_parts} of {PARTITIONS} partitions"),
        row(f"GET /inventory via node 1 of {n3}: load average (1 min) at the start", "",
            f"{r3['load_average_at_start']:.2f}", f"{r1['load_average_at_start']:.2f}"),
        row(f"GET /inventory via node 1 of {n3}: 200 / 404 / other / errors", "count",
            f"{r3['primary']['status'].get('200', 0):,} / {r3['primary']['status'].get('404', 0):,}"
            f" / {sum(r3['wrong'].values())} / {r3['errors']}",
            f"{r1['primary']['status'].get('200', 0):,} / {r1['primary']['status'].get('404', 0):,}"
            f" / {sum(r1['wrong'].values())} / {r1['errors']}"),
    ]
    model = (
        "Model: this machine has 2 cores, so 2 and 3 nodes share them with Kafka and each "
        "other; each node adds its own HTTP loop, consumer and group-view threads, so the "
        "ratios to one node here measure the group's overhead (joining, rebalancing, a "
        "partition folded twice when a rebalance moves it early in the drain), not the "
        "speed-up. On separate machines each node brings its own cores: the fold then scales "
        "with the nodes until the partition count limits it (one fold thread per partition, "
        "~30k events/s each" + (f"; {per_partition:,.0f}/s per partition in this run's "
                                f"benchmark 1" if per_partition else "") +
        f"; {PARTITIONS} partitions here) or the broker does (`kcat -C` read "
        f"{kcat_rate:,.0f} records/s here). docs/deployment.md (Sizing partitions and nodes) "
        "works this through for a million players.")
    return section(
        "8. Scale-out: 1, 2 and 3 nodes",
        f"On the bench's own single-broker stack, k = 1, 2 and 3 `lootlog serve --group <new "
        "group> --db <new folder per node> -X session.timeout.ms=6000` nodes are started at "
        f"once and fold the {one['records']:,}-record topic of benchmarks 1 and 2 "
        f"({PARTITIONS} partitions) from its start (the topic grows by a few hundred to a "
        "few thousand records per run: in a group a partition's outbox goes out as soon as "
        "that partition caught up, so guild requests and decisions already in the log are "
        "produced again; their receivers drop them as duplicates). Drain time: from starting the processes "
        "until every node's GET /v1/cluster (polled every 100 ms) shows the group Stable with "
        "k members, each partition owned by exactly one node, and each owner's `next_offset` "
        "at the topic's end; rate = records / drain time. Peer: one node (k = 1); ceiling: "
        "`kcat -C` consume-only of the same topic. Then, with the group's guild exchange "
        f"settled, open-loop GET /inventory/g<random> at {p.scale_read_rate:,}/s for "
        f"{p.scale_read_seconds} s over the {p.gen_users:,} gen user ids (hits and 404s; "
        "bench/loadgen.c, 32 connections) through node 1 only: with 3 nodes it owns about a "
        "third of the partitions and forwards the other reads to their owners; the peer is "
        "the same run against one node owning every partition. Everything shares this "
        "machine's 2 cores, so this benchmark is CPU-bound.",
        rows, {k: checks[k] for k in checks}, chart,
        raw={"runs": runs, "kcat_rate": round(kcat_rate),
             "reads": {k: {f: v for f, v in res.items() if f != "follow"}
                       for k, res in reads.items()}},
        notes=[model])


# ------------------------------------------------------------------ 9. encoding an event

def bench_encode(b):
    """state/codec's hand-written encoder beside jansson, the library it replaced, and
    beside copying the same bytes; bench/encode.c checks every event's bytes against
    jansson's."""
    p = b.p
    tool = os.path.join(ROOT, "build", "bench_encode")
    log("encode: building build/bench_encode")
    if subprocess.run(["ninja", "-C", os.path.join(ROOT, "build"), "bench_encode"],
                      capture_output=True).returncode != 0 or not os.access(tool, os.X_OK):
        raise CannotRun("ninja -C build bench_encode failed")
    log(f"encode: {p.encode_events:,} events, best of three passes each")
    proc = subprocess.run([tool, str(p.encode_events)], capture_output=True, text=True,
                          timeout=600)
    try:
        res = json.loads(proc.stdout)
    except ValueError:
        raise CannotRun(f"bench_encode printed no result: {last_line(proc.stderr)}")
    check = {"events": res["events"], "identical_to_jansson": res["identical"],
             "refused": res["refused"]}
    if res["identical"] != res["events"] or res["refused"] or proc.returncode != 0:
        raise WrongAnswer(f"{res['identical']} of {res['events']} events encoded as jansson "
                          f"encodes them, {res['refused']} refused")
    ours, peer, ceiling = res["lootlog_ns"], res["jansson_ns"], res["copy_ns"]
    rows = [row("CPU per event encoded", "ns", ours, peer, ceiling, peer_name="jansson",
                ceiling_name="copying the same bytes"),
            row("bytes per event", "bytes", res["bytes_per_event"])]
    chart = write_chart(b, "encode.svg", svgchart.bar_chart(
        f"9. Encoding an event ({res['events']:,} events, {res['bytes_per_event']:.0f} bytes each)",
        [("ns / event", [("lootlog", ours, f"{ours:.0f}"), ("peer", peer, f"{peer:.0f}"),
                         ("ceiling", ceiling, f"{ceiling:.0f}")])],
        "ns of CPU per event (lower is better)",
        note="lootlog = codec_encode; peer = a jansson tree dumped compact and in order; "
             "ceiling = memcpy of the same bytes"))
    return section(
        TITLES["encode"],
        "Every HTTP write, every `gen` record and every event the fold emits is encoded once "
        "by `codec_encode` (state/codec.c), which writes the JSON directly instead of building "
        "a jansson tree and dumping it. bench/encode.c builds the events HTTP writes bring "
        "(purchases of one to three items, consumptions and guild joins, each with a client "
        "event id and the request's metadata), then times, in turn and three times over, "
        "`codec_encode` on every event, jansson's compact, order-preserving dump of the same "
        "fields (the peer: what lootlog used before), and copying the encoded bytes into "
        "place (the ceiling). Best pass of each, per event; one thread. The answer check: "
        "every event's bytes equal jansson's.",
        rows, check, chart, raw=res)


# ------------------------------------------------------------------ report

def machine_info():
    cpu = "unknown"
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    with open("/proc/meminfo") as f:
        mem_kb = int(f.readline().split()[1])
    os_name = platform.platform()
    if os.path.exists("/etc/os-release"):
        with open("/etc/os-release") as f:
            for line in f:
                if line.startswith("PRETTY_NAME="):
                    os_name = line.split("=", 1)[1].strip().strip('"')
    return {"cores (nproc)": os.cpu_count(), "CPU": cpu, "memory": f"{mem_kb / 1024 / 1024:.1f} GiB",
            "OS": f"{os_name}, kernel {platform.release()}",
            "placement": "Kafka, HDFS, lootlog, the peers and the load tools on this one machine"}


def load_average():
    """1-minute load average: other work on the machine skews every number here."""
    with open("/proc/loadavg") as f:
        return float(f.read().split()[0])


def versions():
    def out(cmd):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            return last_line(proc.stdout or proc.stderr) if proc.returncode == 0 else "n/a"
        except OSError:
            return "n/a"

    def first(cmd):
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, timeout=30)
            lines = (proc.stdout or proc.stderr).strip().splitlines()
            return lines[0].strip() if lines else "n/a"
        except OSError:
            return "n/a"

    from importlib.metadata import version as pkg_version
    import confluent_kafka
    jars = glob.glob(os.path.join(ROOT, ".cache", "jars", "kafka", "kafka_2.13-*.jar"))
    kafka = re.search(r"kafka_2\.13-(.+)\.jar", jars[0]).group(1) if jars else "n/a"
    commit = out(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"])
    # The run's own outputs (this report and its charts) are written before this is
    # asked: they do not make the measured code uncommitted.
    dirty = out(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no", "--", ".",
                 ":!bench/charts", ":!docs/benchmarks.md"])
    return {
        "lootlog": f"{first([BIN, '--version'])} (commit {commit}"
                   f"{', with uncommitted changes' if dirty not in ('', 'n/a', '(no output)') else ''})",
        "Kafka": f"{kafka} (jar), one KRaft node",
        "SQLite": out(["pkg-config", "--modversion", "sqlite3"]),
        "librdkafka": out(["pkg-config", "--modversion", "rdkafka"]),
        "libevent": out(["pkg-config", "--modversion", "libevent"]),
        "Python": platform.python_version(),
        "confluent-kafka (peer fold)": f"{pkg_version('confluent-kafka')} "
                                       f"(librdkafka {confluent_kafka.libversion()[0]})",
        "Flask / kafka-python / gunicorn (peer API)": " / ".join(
            pkg_version(n) for n in ("flask", "kafka-python", "gunicorn")),
        "kcat": kcat_version(),
        "Java": first(["java", "-version"]),
        "compiler (loadgen)": first(["cc", "--version"]),
    }


def kcat_version():
    proc = subprocess.run(["kcat", "-V"], capture_output=True, text=True)
    m = re.search(r"Version (\S+).*?(librdkafka \S+)", proc.stdout + proc.stderr)
    return f"{m.group(1)} ({m.group(2)})" if m else "n/a"


def fmt(value, unit=""):
    if value is None:
        return "—"
    if isinstance(value, str):
        return value
    if unit in ("ms", "s"):
        return f"{value:.3f}" if abs(value) < 1 else f"{value:.2f}" if abs(value) < 100 else f"{value:,.0f}"
    if unit in ("MB", "%"):
        return f"{value:.1f}"
    if isinstance(value, float) and abs(value) < 10:
        return f"{value:.2f}"
    return f"{value:,.0f}"


def ratio(a, b):
    if isinstance(a, (int, float)) and isinstance(b, (int, float)) and b:
        r = a / b
        if 0 < r < 0.1:  # far below: "1/73×" says more than "0.01×"
            return f"1/{1 / r:,.0f}×"
        return f"{r:.2f}×" if r < 10 else f"{r:.1f}×"
    return ""


DEFAULT_HISTORY = """## History

Before/after measurements of changes, written by hand; bench/run.py keeps this section.

### Before issue 8 (commit 7c27837: one SQLite file for all partitions)

Measured with the previous bench/run.py (wrk, closed loop) and for issue 8, on the same
2-core machine:

| measure | before |
|---|---|
| `lootlog replay` of a 1.7M-event gen topic | 32k events/s (`kcat -C` 620k records/s; a naive Python fold without dedupe, versions or outcomes 52k/s) |
| live fold draining a backlog | ~17k events/s; 15 s behind after a 4-second burst |
| `GET /inventory` p99 (wrk, 32 connections, closed loop) | 1.8 ms idle, 18 ms while the fold drains a burst |
| acknowledged HTTP writes | POST 11.4k/s; `GET /purchase_a_sword` 9.0k/s vs 503/s for the Flask + kafka-python peer (Flask dev server) |
| database size | ~260 bytes per event |
| `serve` RSS | 166 MB at 50k players |
"""


REPORT_ORDER = ("replay", "live", "reads", "freshness", "writes", "footprint", "pit", "scale",
                "encode")


def section_lines(sec, path, stamp=None):
    """The markdown of one benchmark's section (from its "## " heading on)."""
    lines = [f"## {sec['title']}", ""]
    if stamp:
        lines += [stamp, ""]
    if sec["status"] != "ok":
        lines += [f"**{sec['status']}**", ""]
    if sec.get("about"):
        lines += [sec["about"], ""]
    if sec.get("rows"):
        peer_name = next((r["peer_name"] for r in sec["rows"] if r["peer_name"]), "")
        ceil_name = next((r["ceiling_name"] for r in sec["rows"] if r["ceiling_name"]), "")
        lines += [f"| measure | unit | lootlog | peer{f' ({peer_name})' if peer_name else ''} | "
                  f"ceiling{f' ({ceil_name})' if ceil_name else ''} | lootlog / peer | "
                  "lootlog / ceiling | goal |", "|---|---|---|---|---|---|---|---|"]
        for r in sec["rows"]:
            lines.append(f"| {r['measure']} | {r['unit']} | {fmt(r['lootlog'], r['unit'])} | "
                         f"{fmt(r['peer'], r['unit'])} | {fmt(r['ceiling'], r['unit'])} | "
                         f"{ratio(r['lootlog'], r['peer'])} | {ratio(r['lootlog'], r['ceiling'])} | "
                         f"{r['goal']} |")
        lines.append("")
    if sec.get("chart"):
        link = os.path.relpath(sec["chart"], os.path.dirname(os.path.abspath(path)))
        lines += [f"![{sec['title']}]({link})", ""]
    if sec.get("check"):
        lines += [f"Answer check: `{json.dumps(sec['check'], default=str)}`", ""]
    for note in sec.get("notes", []):
        lines += [note, ""]
    if sec.get("raw"):
        lines += ["<details><summary>raw numbers</summary>", "", "```json",
                  json.dumps(sec["raw"], indent=1, default=str)[:20000], "```", "", "</details>",
                  ""]
    return lines


def goal_line(name, target, value, met):
    mark = "—" if met is None else "yes" if met else "**no**"
    return f"| {name} | {target} | {value} | {mark} |"


def merge_report(b, path, text, only_cmd):
    """The report of an --only run into an existing one: the sections of the benchmarks
    that ran replace theirs (or are added in their place), each stamped with this run;
    their goals replace or join the goals table; everything else stays as it was."""
    generated, history = text.split(HISTORY_MARK, 1)
    blocks = [[]]  # blocks[0]: before the first "## "
    for line in generated.rstrip("\n").split("\n"):
        if line.startswith("## "):
            blocks.append([line])
        else:
            blocks[-1].append(line)
    stamp = (f"*This section was rewritten by `{only_cmd}` on "
             f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} ({versions()['lootlog']}; "
             f"load average {b.load_before:.2f} before / {b.load_after:.2f} after); the rest "
             "of the file is from the run described at its top.*")

    def number(heading):
        return heading[3:].split(" ", 1)[0]  # "7." of "## 7. Point-in-time reads"
    for key in REPORT_ORDER:
        sec = b.results.get(key)
        if not sec:
            continue
        new = section_lines(sec, path, stamp)
        at = next((i for i, blk in enumerate(blocks[1:], 1)
                   if number(blk[0]) == number(new[0])), None)
        if at is None:  # a new section: after the last numbered one before it
            at = next((i for i, blk in enumerate(blocks[1:], 1)
                       if blk[0] == "## How to run"), len(blocks))
            blocks.insert(at, new)
        else:
            blocks[at] = new
    for blk in blocks[1:]:
        if blk[0].startswith("## Goals"):
            rows = [i for i, line in enumerate(blk) if line.startswith("| ")][1:]  # no header
            sep = next((i for i, line in enumerate(blk) if line.startswith("|---")), len(blk) - 1)
            for name, target, value, met in b.goals:
                hit = next((i for i in rows if blk[i].split(" | ", 1)[0] == f"| {name}"), None)
                if hit is not None:
                    blk[hit] = goal_line(name, target, value, met)
                else:
                    end = (rows[-1] if rows else sep) + 1
                    blk.insert(end, goal_line(name, target, value, met))
                    rows.append(end)
    out = []
    for blk in blocks:
        while blk and not blk[-1].strip():
            blk.pop()
        out += blk + [""]
    return out + [HISTORY_MARK, "", history.strip("\n"), ""]


def write_report(b, path, wall_s, failures):
    p = b.p
    cmd = ".cache/venv/bin/python bench/run.py" + (" --quick" if p.quick else "")
    if b.args.only and os.path.exists(path):
        with open(path) as f:
            text = f.read()
        if text.startswith("# lootlog benchmarks") and HISTORY_MARK in text:
            lines = merge_report(b, path, text, f"{cmd} --only {b.args.only}")
            with open(path, "w") as f:
                f.write("\n".join(lines))
            return
    lines = ["# lootlog benchmarks", "",
             f"Written by `{cmd}` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} in "
             f"{wall_s / 60:.1f} min" + (" — **a --quick run: small sizes, numbers are "
                                         "indicative only**" if p.quick else "") + ". "
             "Every benchmark checks its answer against an independent expectation (the Python "
             "peer's fold of the same events, or the seeded state) and fails the run when it "
             "differs; speed never fails it.", ""]
    if failures:
        lines += ["**Failed in this run:**", ""] + [f"- {f}" for f in failures] + [""]
    if b.soft_failures:
        lines += ["**Could not be measured in this run:**", ""] + \
                 [f"- {f}" for f in b.soft_failures] + [""]
    lines += ["## Goals (issues 8 and 14)", "", "| measure | goal | this run | met |", "|---|---|---|---|"]
    for name, target, value, met in b.goals:
        lines.append(goal_line(name, target, value, met))
    lines += ["", "## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in machine_info().items()]
    lines.append(f"| load average (1 min) before the stack started / at the end | "
                 f"{b.load_before:.2f} / {b.load_after:.2f} |")
    lines += ["", "## Versions", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in versions().items()]
    lines += ["", "## Parameters", "", "| | |", "|---|---|"]
    for k, v in dataclasses.asdict(p).items():
        lines.append(f"| {k} | {v:,} |" if isinstance(v, int) and not isinstance(v, bool)
                     else f"| {k} | {v} |")
    lines.append(f"| lootlog flags for serve and replay | `{' '.join(b.fold_flags) or '(none)'}` |")
    lines.append(f"| --fold-threads | {'accepted by this binary' if b.has_fold_threads else 'not in this binary'}"
                 f"{' (given: ' + str(b.args.fold_threads) + ')' if b.args.fold_threads else ' (its default)'} |")
    lines.append(f"| answer checks | {'every sampled player: items, version and guild' if b.deterministic else 'items of every sampled player; version and guild of players without guild events'} |")
    lines.append("")
    for key in REPORT_ORDER:
        if b.results.get(key):
            lines += section_lines(b.results[key], path)
    lines += ["## How to run", "",
              "```", ".cache/venv/bin/python bench/run.py           # full sizes (>= 1M events, "
              "1M players; roughly 20-30 min on 2 cores)", ".cache/venv/bin/python bench/run.py --quick   # small sizes, a few "
              "minutes (CI)", "```", "",
              "It starts its own Kafka + HDFS (`stack/stack`, `.dev/bench-stack`, ports 29xxx), "
              "keeps its stores and logs in `.dev/bench-work`, writes this file and "
              "`bench/charts/*.svg`, and exits 1 only when a benchmark could not run or answered "
              "wrong. Load tool: `bench/loadgen.c` (libevent; open loop at a fixed rate with "
              "latency from the intended send time, as wrk2 does; `--rate 0` for closed loop). "
              "`--only KEY,...` runs some benchmarks and, when the report exists, rewrites only "
              "their sections (stamped with that run) and their goals, keeping the rest; "
              "`--bin PATH` measures another lootlog binary than build/lootlog.",
              ""]
    history = ""
    if os.path.exists(path):
        with open(path) as f:
            text = f.read()
        if HISTORY_MARK in text:
            history = text.split(HISTORY_MARK, 1)[1].lstrip("\n")
    if not history:
        history = DEFAULT_HISTORY
    lines += [HISTORY_MARK, "", history.rstrip("\n"), ""]
    with open(path, "w") as f:
        f.write("\n".join(lines))


# ------------------------------------------------------------------ main

BENCHMARKS = [  # run order; the report lists them by number
    ("live", bench_live),
    ("replay", bench_replay),
    ("reads", bench_reads),
    ("freshness", bench_freshness),
    ("writes", bench_writes),
    ("footprint", bench_footprint),
    ("pit", bench_pit),
    ("scale", bench_scale),
    ("encode", bench_encode),
]
TITLES = {"replay": "1. Fold and replay", "live": "2. Live fold under sustained produce",
          "reads": "3. Reads", "freshness": "4. Freshness under write load",
          "writes": "5. Writes over HTTP", "footprint": "6. Footprint",
          "pit": "7. Point-in-time reads", "scale": "8. Scale-out: 1, 2 and 3 nodes",
          "encode": "9. Encoding an event"}


def clean_up(b):
    """Deletes this run's topics and snapshots (best effort: the stack goes down anyway)."""
    try:
        delete_topics(b.topics)
    except Exception:  # noqa: BLE001
        pass
    try:
        req = urllib.request.Request(f"http://{WEBHDFS}/webhdfs/v1/bench/{b.run_id}?op=DELETE"
                                     "&recursive=true&user.name=" + os.environ.get("USER", "root"),
                                     method="DELETE")
        urllib.request.urlopen(req, timeout=10).close()
    except OSError:
        pass


def main():
    global BIN  # --bin: every helper here reads the module's BIN
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a few minutes (CI)")
    parser.add_argument("--only", default="", help="comma-separated: " +
                        ",".join(k for k, _ in BENCHMARKS) + " (others skipped)")
    parser.add_argument("--out", default=os.path.join(ROOT, "docs", "benchmarks.md"))
    parser.add_argument("--guild-capacity", type=int, default=100,
                        help="for lootlog and the peer (guilds are decided in the log, so "
                             "any capacity gives one answer whatever the interleaving)")
    parser.add_argument("--fold-threads", type=int, default=0,
                        help="passed to serve and replay when the binary has the flag")
    parser.add_argument("--build", action="store_true", help="run ninja -C build first")
    parser.add_argument("--bin", default=BIN,
                        help="the lootlog binary to measure (default: build/lootlog)")
    parser.add_argument("--keep", action="store_true", help="keep this run's topics")
    parser.add_argument("--keep-stack", action="store_true",
                        help="leave Kafka + HDFS running (stop: stack/stack stop .dev/bench-stack)")
    args = parser.parse_args()

    if os.path.abspath(args.bin) != BIN:
        BIN = os.path.abspath(args.bin)
        if args.build or not os.access(BIN, os.X_OK):
            raise SystemExit(f"bench: --bin {args.bin}: not an executable (--build builds "
                             "build/lootlog only)")
    ensure_tools(args.build)
    shutil.rmtree(WORK, ignore_errors=True)
    os.makedirs(WORK)
    params = make_params(args.quick, args.guild_capacity)
    b = Bench(params, args)
    default_out = os.path.abspath(args.out) == os.path.join(ROOT, "docs", "benchmarks.md")
    b.charts_dir = CHARTS if default_out else os.path.join(os.path.dirname(os.path.abspath(args.out)), "charts")
    only = {s for s in args.only.split(",") if s}
    failures = []
    b.load_before = load_average()
    log(f"starting Kafka + HDFS in {os.path.relpath(STACK_DIR, ROOT)}")
    try:
        if subprocess.run([STACK, "start", STACK_DIR, *PORTS]).returncode != 0:
            raise SystemExit("bench: the stack did not start")
        for key, fn in BENCHMARKS:
            if only and key not in only:
                continue
            log(f"--- {TITLES[key]}")
            try:
                b.results[key] = fn(b)
            except Exception as e:  # noqa: BLE001 - every failure is reported, the run goes on
                kind = ("wrong answer" if isinstance(e, WrongAnswer) else "could not run")
                if not isinstance(e, (WrongAnswer, CannotRun)):
                    traceback.print_exc()
                msg = f"{TITLES[key]}: {kind}: {e}"
                log(msg)
                failures.append(msg)
                b.results[key] = {"title": TITLES[key], "status": f"{kind}: {e}", "rows": [],
                                  "check": None, "chart": None, "raw": {}, "notes": []}
            finally:
                b.procs.stop_all()
    finally:
        b.procs.stop_all()
        if not args.keep:
            clean_up(b)
        b.load_after = load_average()
        if not args.keep_stack:
            subprocess.run([STACK, "stop", STACK_DIR])
    write_report(b, args.out, time.monotonic() - STARTED, failures)
    with open(os.path.join(WORK, "results.json"), "w") as f:
        json.dump({"params": dataclasses.asdict(params), "goals": b.goals, "results": b.results,
                   "failures": failures, "soft_failures": b.soft_failures}, f, indent=1, default=str)
    print(f"\nbench: wrote {os.path.relpath(args.out, ROOT)} and {os.path.relpath(b.charts_dir, ROOT)}/ in "
          f"{(time.monotonic() - STARTED) / 60:.1f} min")
    for name, target, value, met in b.goals:
        print(f"  {name}: {value} (goal {target}){'' if met is None else ' ok' if met else ' MISSED'}")
    for f in b.soft_failures:
        print(f"  not measured: {f}")
    for f in failures:
        print(f"  FAILED: {f}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
