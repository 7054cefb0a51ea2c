"""compose/compose.yaml: validated by `docker-compose config` (Debian's docker-compose), then
checked as a structure: the services ./dev up --cluster also runs, their healthchecks, the
one-shot topic service, volumes, and what each lootlog node is told.

No Docker engine is needed: `config` only reads and resolves the file. These tests skip,
with the reason printed, where the client is missing.
"""
import os
import re
import shutil
import subprocess

import pytest

yaml = pytest.importorskip("yaml", reason="PyYAML is not installed (tests/requirements.txt)")

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
COMPOSE = os.path.join(ROOT, "compose", "compose.yaml")
CLIENT = shutil.which("docker-compose")
BROKERS = {"kafka1", "kafka2", "kafka3"}

if CLIENT is None:
    print("test_compose: skipped: docker-compose (Debian package docker-compose) is not installed")
pytestmark = pytest.mark.skipif(
    CLIENT is None, reason="docker-compose (Debian package docker-compose) is not installed")


def run_config(*args, env=None):
    # a fixed project folder and no inherited COMPOSE_* or LOOTLOG_* overrides: the
    # file's own defaults are what is checked
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("COMPOSE_", "LOOTLOG_", "KAFKA_", "DOCKER_"))}
    clean.update(env or {})
    return subprocess.run([CLIENT, "-f", COMPOSE, *args, "config"], capture_output=True,
                          text=True, timeout=60, env=clean, cwd=ROOT)


@pytest.fixture(scope="module")
def config():
    out = run_config()
    assert out.returncode == 0, f"docker-compose config failed:\n{out.stderr}"
    doc = yaml.safe_load(out.stdout)
    assert isinstance(doc, dict) and "services" in doc, out.stdout[:500]
    return doc


def image_of(svc):
    return svc.get("build", {}).get("dockerfile", "")


def by_image(config, dockerfile):
    return {n: s for n, s in config["services"].items() if image_of(s) == dockerfile}


def env_of(svc):
    env = svc.get("environment") or {}
    if isinstance(env, list):   # KEY=VALUE list form
        env = dict(e.split("=", 1) for e in env)
    return {k: "" if v is None else str(v) for k, v in env.items()}


def command_of(svc):
    cmd = svc.get("command") or []
    return cmd if isinstance(cmd, list) else [cmd]


def one_shots(config):
    """Services some other service waits for with service_completed_successfully."""
    names = set()
    for svc in config["services"].values():
        deps = svc.get("depends_on") or {}
        if isinstance(deps, dict):
            names |= {n for n, d in deps.items()
                      if (d or {}).get("condition") == "service_completed_successfully"}
    return names


def test_config_is_valid_and_complete(config):
    services = config["services"]
    kafka = by_image(config, "compose/kafka/Dockerfile")
    hdfs = by_image(config, "compose/hdfs/Dockerfile")
    lootlog = by_image(config, "compose/lootlog/Dockerfile")
    namenodes = [n for n, s in hdfs.items() if command_of(s) == ["namenode"]]
    datanodes = [n for n, s in hdfs.items() if command_of(s) == ["datanode"]]
    servers = {n: s for n, s in lootlog.items() if n not in one_shots(config)}
    counts = {"brokers": len(kafka), "namenodes": len(namenodes),
              "datanodes": len(datanodes), "lootlog nodes": len(servers),
              "services": len(services)}
    print(f"compose: {counts}")
    assert set(kafka) == BROKERS
    assert len(namenodes) == 1 and len(datanodes) == 2
    assert len(servers) == 3
    assert len(services) == 3 + 1 + 2 + 3 + 1   # + the one-shot topic service
    # every Dockerfile the file names exists in the repository
    for svc in services.values():
        assert os.path.isfile(os.path.join(svc["build"]["context"], image_of(svc))), image_of(svc)


def test_every_service_has_a_healthcheck_or_is_a_one_shot(config):
    shots = one_shots(config)
    assert shots == {"topic-init"}
    for name, svc in config["services"].items():
        if name in shots:
            assert svc.get("restart", "no") == "no", name
            continue
        hc = svc.get("healthcheck")
        assert hc and not hc.get("disable") and hc.get("test"), f"{name} has no healthcheck"
        assert svc.get("restart") in ("unless-stopped", "always", "on-failure"), name


def test_kafka_nodes_form_one_quorum_with_replication_3(config):
    kafka = by_image(config, "compose/kafka/Dockerfile")
    ids, clusters = set(), set()
    for name, svc in kafka.items():
        env = env_of(svc)
        ids.add(env["KAFKA_NODE_ID"])
        clusters.add(env["KAFKA_CLUSTER_ID"])
        voters = dict(v.split("@") for v in env["KAFKA_CONTROLLER_QUORUM_VOTERS"].split(","))
        assert voters == {"1": "kafka1:9093", "2": "kafka2:9093", "3": "kafka3:9093"}, name
        assert env["KAFKA_REPLICATION"] == "3" and env["KAFKA_MIN_INSYNC_REPLICAS"] == "2", name
        assert voters[env["KAFKA_NODE_ID"]].startswith(svc.get("hostname", name) + ":"), name
    assert ids == {"1", "2", "3"}
    assert len(clusters) == 1 and re.fullmatch(r"[A-Za-z0-9_-]{22}", clusters.pop())


def test_lootlog_nodes_name_all_brokers_and_form_one_group(config):
    lootlog = by_image(config, "compose/lootlog/Dockerfile")
    shots = one_shots(config)
    published, advertised = [], []
    for name, svc in sorted(lootlog.items()):
        env = env_of(svc)
        brokers = {b.split(":")[0] for b in env["LOOTLOG_BROKERS"].split(",")}
        assert brokers == BROKERS, f"{name}: LOOTLOG_BROKERS={env['LOOTLOG_BROKERS']}"
        if name in shots:
            script = " ".join(command_of(svc))
            assert "topic ensure --partitions 6 --replication 3" in script
            assert {d: c["condition"] for d, c in svc["depends_on"].items()} == \
                {b: "service_healthy" for b in BROKERS}
            continue
        assert svc["depends_on"]["topic-init"]["condition"] == "service_completed_successfully"
        assert env["LOOTLOG_SNAPSHOT_URL"] == "webhdfs://namenode:9870/lootlog"
        assert env["LOOTLOG_HTTP"] == "0.0.0.0:8080"
        assert env["LOOTLOG_GROUP"] == "lootlog" and "LOOTLOG_PARTITIONS" not in env, name
        advertised.append(env["LOOTLOG_ADVERTISE"])
        assert env["LOOTLOG_ADVERTISE"] == f"{svc.get('hostname', name)}:8080", name
        for port in svc["ports"]:
            if isinstance(port, dict):   # long form
                published.append((int(port["published"]), int(port["target"])))
            else:
                m = re.fullmatch(r"(?:[\d.]+:)?(\d+):(\d+)(?:/tcp)?", port)
                assert m, port
                published.append((int(m.group(1)), int(m.group(2))))
        assert "/readyz" in " ".join(svc["healthcheck"]["test"]), name
    assert sorted(published) == [(8080, 8080), (8081, 8080), (8082, 8080)]
    assert advertised == ["lootlog1:8080", "lootlog2:8080", "lootlog3:8080"]


def test_named_volumes_for_every_node_with_state(config):
    declared = set(config.get("volumes") or {})
    mounts = {}
    for name, svc in config["services"].items():
        for v in svc.get("volumes") or []:
            source, target = (v["source"], v["target"]) if isinstance(v, dict) else v.split(":")[:2]
            mounts[name] = (source, target)
    for name in ("kafka1", "kafka2", "kafka3"):
        assert mounts[name][1] == "/var/lib/kafka/data", name
    assert mounts["namenode"][1] == "/var/lib/hdfs/name"
    assert mounts["datanode1"][1] == mounts["datanode2"][1] == "/var/lib/hdfs/data"
    for name in ("lootlog1", "lootlog2", "lootlog3"):
        assert mounts[name][1] == "/var/lib/lootlog", name
    sources = [s for s, _ in mounts.values()]
    assert len(sources) == len(set(sources)) == 9, "each node needs its own volume"
    assert set(sources) <= declared, f"undeclared: {set(sources) - declared}"


def test_a_broken_file_is_refused():
    """The validation is real: the same client refuses a dependency on a missing service."""
    with open(COMPOSE) as f:
        text = f.read()
    text = text.replace("condition: service_completed_successfully",
                        "condition: service_completed_successfully\n  no-such-service:\n"
                        "    condition: service_healthy", 1)
    # placed in compose/ so that the relative build contexts still resolve
    broken = os.path.join(ROOT, "compose", f".test-broken-{os.getpid()}.yaml")
    try:
        with open(broken, "w") as f:
            f.write(text)
        out = subprocess.run([CLIENT, "-f", broken, "config"], capture_output=True,
                             text=True, timeout=60, cwd=ROOT)
    finally:
        os.unlink(broken)
    assert out.returncode != 0
    assert "no-such-service" in out.stderr, out.stderr


def test_lootlog_image_copies_every_source_folder_the_build_reads():
    """The image builds from meson.build: every folder it names must be copied into the
    build stage and let through by the build context's ignore file."""
    root = os.path.join(os.path.dirname(__file__), "..")
    with open(os.path.join(root, "meson.build")) as f:
        named = {m.split("/")[0] for m in re.findall(r"'([a-z_]+/[^']+)'", f.read())}
    with open(os.path.join(root, "compose", "lootlog", "Dockerfile")) as f:
        copied = set(re.findall(r"^COPY (?:--from=\S+ )?([a-z_]+)/", f.read(), re.M))
    with open(os.path.join(root, "compose", "lootlog", "Dockerfile.dockerignore")) as f:
        allowed = {line[1:].split("/")[0] for line in f.read().splitlines() if line.startswith("!")}
    assert named, "meson.build names no source folder"
    assert named <= copied, f"the Dockerfile does not copy {sorted(named - copied)}"
    assert named <= allowed, f"the ignore file keeps out {sorted(named - allowed)}"
