#!/usr/bin/env python3
"""lootlog's benchmarks, side by side with peers in the same run, written to
docs/benchmarks.md as ratios. Starts its own Kafka + HDFS stack (stack/stack) on bench
ports, a fresh topic, lootlog and the peers; tears everything down at the end.

  .cache/venv/bin/python bench/run.py [--duration 10] [--connections 64]

Needs wrk (Debian) and flask + kafka-python (bench/requirements.txt); installs them when
missing. Not part of ./dev test: numbers are measured here, never asserted in tests."""
import argparse
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
BIN = os.path.join(ROOT, "build", "lootlog")
STACK = os.path.join(ROOT, "stack", "stack")
STACK_DIR = os.path.join(ROOT, ".dev", "bench-stack")
PORTS = ["--kafka-port", "29292", "--controller-port", "29293", "--nn-rpc-port", "28220",
         "--nn-http-port", "29270", "--dn-port", "29266", "--dn-http-port", "29264",
         "--dn-ipc-port", "29267"]
BROKERS = "127.0.0.1:29292"


def sh(*args, **kw):
    return subprocess.run(args, check=True, text=True, capture_output=True, **kw).stdout


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url, timeout=60):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.1)
    raise SystemExit(f"bench: {url} not ready")


def ensure_tools():
    if not shutil.which("wrk"):
        subprocess.run(["apt-get", "install", "-y", "-qq", "wrk"], check=True)
    try:
        import flask  # noqa: F401
        import kafka  # noqa: F401
    except ImportError:
        subprocess.run([PY, "-m", "pip", "install", "-q", "-r",
                        os.path.join(ROOT, "bench", "requirements.txt")], check=True)


def wrk(url, duration, connections, script=None):
    """Runs wrk; returns (requests/s, p50 ms, p99 ms, non-2xx count)."""
    args = ["wrk", "-t2", f"-c{connections}", f"-d{duration}s", "--latency"]
    if script:
        args += ["-s", script]
    out = sh(*args, url)
    rate = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))

    def pct(p):
        m = re.search(rf"\s{p}%\s+([\d.]+)(us|ms|s)", out)
        value, unit = float(m.group(1)), m.group(2)
        return value / 1000 if unit == "us" else value * 1000 if unit == "s" else value
    bad = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", out)
    errors = re.search(r"Socket errors:.*", out)
    return rate, pct(50), pct(99), int(bad.group(1)) if bad else 0, errors.group(0) if errors else ""


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--duration", type=int, default=10)
    parser.add_argument("--connections", type=int, default=64)
    args = parser.parse_args()
    ensure_tools()
    procs = []
    results = []
    subprocess.run([STACK, "start", STACK_DIR, *PORTS], check=True)
    try:
        from confluent_kafka.admin import AdminClient, NewTopic
        topic = f"bench-{int(time.time())}"
        admin = AdminClient({"bootstrap.servers": BROKERS})  # kept alive until the future resolves
        admin.create_topics([NewTopic(topic, num_partitions=6, replication_factor=1)])[topic].result(30)
        work = os.path.join(ROOT, ".dev", "bench-work")
        shutil.rmtree(work, ignore_errors=True)
        os.makedirs(work)
        lport, pport = free_port(), free_port()
        log = open(os.path.join(work, "lootlog.log"), "w")
        procs.append(subprocess.Popen([BIN, "serve", "--http", f"127.0.0.1:{lport}", "--brokers", BROKERS,
                                       "--topic", topic, "--db", os.path.join(work, "live.db")],
                                      stdout=log, stderr=log))
        procs.append(subprocess.Popen([PY, os.path.join(ROOT, "bench", "peer_flask.py"), "--port", str(pport),
                                       "--brokers", BROKERS, "--topic", topic],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        wait_http(f"http://127.0.0.1:{lport}/readyz")
        wait_http(f"http://127.0.0.1:{pport}/")

        # 1. Acknowledged writes over HTTP with keep-alive: the seed endpoint on both.
        d, c = args.duration, args.connections
        ours = wrk(f"http://127.0.0.1:{lport}/purchase_a_sword?user_id=bench", d, c)
        peer = wrk(f"http://127.0.0.1:{pport}/purchase_a_sword?user_id=bench", d, c)
        results.append(("acknowledged writes/s, GET /purchase_a_sword (wrk, "
                        f"{c} connections, {d} s)", ours[0], peer[0], "≥ 25,000 (≈ 50× the peer)"))
        results.append(("  p50 / p99 latency ms", f"{ours[1]:.2f} / {ours[2]:.2f}",
                         f"{peer[1]:.2f} / {peer[2]:.2f}", ""))
        script = os.path.join(work, "post.lua")
        with open(script, "w") as f:
            f.write('wrk.method = "POST"\nwrk.body = \'{"item_type":"potion","quantity":1}\'\n'
                    'wrk.headers["Content-Type"] = "application/json"\n')
        post = wrk(f"http://127.0.0.1:{lport}/v1/users/bench2/purchases", d, c, script)
        results.append(("acknowledged writes/s, POST /v1/users/{u}/purchases", post[0], "—", "≥ 25,000"))

        # 2. Reads while the fold runs flat out (gen straight to Kafka meanwhile).
        gen = subprocess.Popen([BIN, "gen", "--brokers", BROKERS, "--topic", topic, "--rate", "20000",
                                "--duration", str(d + 2), "--users", "50000"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        reads = wrk(f"http://127.0.0.1:{lport}/inventory/bench", d, c)
        gen.wait()
        results.append(("GET /inventory reads/s while the fold runs", reads[0], "—", "10,000 at p99 ≤ 2 ms"))
        results.append(("  p50 / p99 latency ms", f"{reads[1]:.2f} / {reads[2]:.2f}", "—", ""))

        # 3. Fold / replay throughput over the whole topic, against the Python peer fold.
        out = sh(BIN, "replay", "--brokers", BROKERS, "--topic", topic, "--db", os.path.join(work, "replay.db"))
        m = re.search(r"replay: (\d+) events in [\d.]+ s \((\d+)/s\)", out)
        peer_out = sh(PY, os.path.join(ROOT, "bench", "peer_fold.py"), BROKERS, topic,
                      os.path.join(work, "peer.db"))
        pm = re.search(r"\((\d+)/s\)", peer_out)
        results.append((f"replay events/s ({m.group(1)} events)", int(m.group(2)), int(pm.group(1)),
                        "≥ 300,000"))
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(20)
            except subprocess.TimeoutExpired:
                p.kill()
        subprocess.run([STACK, "stop", STACK_DIR])
    write_report(results, args)


def fmt(v):
    return f"{v:,.0f}" if isinstance(v, (int, float)) else str(v)


def write_report(results, args):
    cpu = sh("sh", "-c", "grep -m1 'model name' /proc/cpuinfo | cut -d: -f2").strip()
    lines = ["# lootlog benchmarks", "",
             f"Written by `bench/run.py` on {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
             f"{os.cpu_count()} cores ({cpu}); Kafka, HDFS, lootlog, the peers and the load "
             "generator all on this one machine. Peers: the classic Flask + kafka-python game API "
             "(`bench/peer_flask.py`, waits for acks=all like lootlog) and a plain Python fold "
             "(`bench/peer_fold.py`: json.loads + sqlite3, far less work per event than lootlog's "
             "fold, which also records outcomes, dedupe and versions).", "",
             "| measure | lootlog | peer | lootlog / peer | design target |", "|---|---|---|---|---|"]
    for name, ours, peer, target in results:
        ratio = f"{ours / peer:.1f}×" if isinstance(ours, (int, float)) and isinstance(peer, (int, float)) and peer else ""
        lines.append(f"| {name} | {fmt(ours)} | {fmt(peer)} | {ratio} | {target} |")
    lines += ["", f"Run: `.cache/venv/bin/python bench/run.py --duration {args.duration} "
              f"--connections {args.connections}`.", ""]
    path = os.path.join(ROOT, "docs", "benchmarks.md")
    with open(path, "w") as f:
        f.write("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
