"""The analysts' guide (docs/analysts.md) executed: its pandas, DuckDB and Spark examples
are read out of the guide and run as written against a snapshot on the real HDFS, with
only the addresses given. Their numbers are checked against what the test sent and
against GET /inventory.

The events go to a topic of this module's own, so the snapshot's extracts hold exactly
them: every count is known in advance."""
import collections
import glob
import os
import re
import subprocess
import uuid

import pytest
from confluent_kafka import Producer

from conftest import BIN, BROKERS, ROOT, WEBHDFS, Server, create_topic, wait_until

NAMENODE = os.environ.get("HADOOP_NAMENODE", "127.0.0.1:18020")  # hdfs:// (RPC) address
GUIDE = os.path.join(ROOT, "docs", "analysts.md")
# pyspark warns that it is not tested with pandas 3; the examples use no pandas in Spark.
pytestmark = pytest.mark.filterwarnings("ignore:PySpark does not yet fully support pandas")
JARS = os.path.join(os.environ.get("LOOTLOG_JAR_CACHE", os.path.join(ROOT, ".cache", "jars")),
                    "spark")


def guide_example(name):
    """The code of the guide's ```python <name> block (pandas: the plain ```python one)."""
    text = open(GUIDE).read()
    fence = "```python\n" if name == "pandas" else f"```python {name}\n"
    blocks = re.findall(re.escape(fence) + r"(.*?)```", text, re.S)
    assert len(blocks) == 1, f"docs/analysts.md has {len(blocks)} {fence.strip()} blocks"
    return blocks[0]


def run_example(name, scope):
    exec(compile(guide_example(name), f"docs/analysts.md ({name})", "exec"), scope)
    return scope


@pytest.fixture(scope="module")
def shipped(tmp_path_factory):
    """One lootlog on a topic of its own, known traffic, settled, one snapshot on HDFS.
    Returns what the checks need: the snapshot root, the players, the expected counts
    per (event_type, outcome, reason) and GET /inventory's totals per category."""
    tmp = tmp_path_factory.mktemp("analysts")
    topic = create_topic("analysts-" + uuid.uuid4().hex[:8])
    root = f"/lootlog-test/analysts-{uuid.uuid4().hex[:8]}"
    s = Server(tmp, name="analysts", topic=topic).start()
    try:
        expected = collections.Counter()
        prefix = "an-" + uuid.uuid4().hex[:8]
        players = [f"{prefix}-{i}" for i in range(6)]

        def write(path, body, outcome, reason=None, headers=None, event_type=None):
            r = s.post(path, body, headers=headers)
            assert r.status_code == 202, r.text
            expected[(event_type or r.json()["event_type"], outcome, reason)] += 1

        for i, u in enumerate(players):
            write(f"/v1/users/{u}/purchases", {"items": [{"item_type": "sword", "quantity": 1},
                                                         {"item_type": "potion", "quantity": 5}]},
                  "applied")
            write(f"/v1/users/{u}/consumptions", {"item_type": "potion", "quantity": 2}, "applied")
            write(f"/v1/users/{u}/consumptions", {"item_type": "gem", "quantity": 1},
                  "rejected", "insufficient_quantity")
            if i % 2 == 0:  # a retried request: the same Idempotency-Key twice
                key = {"Idempotency-Key": f"k-{u}"}
                write(f"/v1/users/{u}/purchases", {"item_type": "gem", "quantity": i + 1},
                      "applied", headers=key)
                write(f"/v1/users/{u}/purchases", {"item_type": "gem", "quantity": i + 1},
                      "duplicate", headers=key)
            write(f"/v1/users/{u}/purchases", {"item_type": "arrow", "quantity": 10},
                  "rejected", "version_conflict", headers={"If-Match": '"0"'})
            # The seed endpoints: plain-text answers, events all the same.
            for path, event_type in (("/purchase_a_sword", "purchase_sword"), ("/", "default")):
                r = s.get(path, params={"user_id": u})
                assert r.status_code == 200, r.text
                expected[(event_type, "applied", None)] += 1
        # A record that is not an event: dead-lettered, in no extract.
        p = Producer({"bootstrap.servers": BROKERS})
        p.produce(topic, key=b"junk", value=b"{not json")
        assert p.flush(30) == 0

        wait_until(lambda: s.get("/readyz").json().get("fold_lag") == 0, 60, "fold lag 0")
        totals = collections.Counter()
        for u in players:
            r = s.inventory(u)
            assert r.status_code == 200, r.text
            for line in r.json()["items"]:
                totals[line["category"]] += line["quantity"]
        out = subprocess.run([BIN, "snapshot", "--db", s.db, "--topic", topic,
                              "--snapshot-url", f"webhdfs://{WEBHDFS[len('http://'):]}{root}"],
                             capture_output=True, text=True, timeout=180)
        assert out.returncode == 0, out.stderr
        snap_id = re.search(r"snapshot: (\S+) written", out.stdout).group(1)
    finally:
        s.stop()
    # The traffic as planned: 6 players, every kind of outcome the extracts carry.
    assert sum(expected.values()) == 6 * 6 + 3 * 2
    assert totals == {"weapon": 12, "consumable": 18, "treasure": 1 + 3 + 5}
    return {"root": root, "id": snap_id, "players": players, "expected": expected,
            "totals": totals}


def test_pandas_and_duckdb_examples(shipped):
    scope = run_example("pandas", {"WEBHDFS": WEBHDFS, "ROOT": shipped["root"]})
    assert scope["latest"] == shipped["id"]
    assert scope["per_category"].to_dict() == shipped["totals"]

    run_example("duckdb", scope)  # continues the pandas example, as the guide says
    assert dict(scope["duck_per_category"].fetchall()) == shipped["totals"]
    got = {(t, o, r): n for t, o, r, n in scope["duck_events"].fetchall()}
    assert got == shipped["expected"]


@pytest.fixture(scope="module")
def spark():
    """One local Spark (one core) for the module, with the spark-avro jar that
    stack/install fetched for this pyspark version."""
    import pyspark
    from pyspark.sql import SparkSession
    jars = glob.glob(os.path.join(JARS, "spark-avro_*.jar"))
    assert jars, f"no spark-avro jar in {JARS}: run stack/install"
    version = re.search(r"spark-avro_[\d.]+-([\d.]+)\.jar$", jars[0]).group(1)
    assert version == pyspark.__version__, \
        f"{jars[0]} does not match pyspark {pyspark.__version__}: run stack/install"
    session = (SparkSession.builder.master("local[1]").appName("lootlog-analysts")
               .config("spark.jars", jars[0])
               .config("spark.ui.enabled", "false")
               .config("spark.ui.showConsoleProgress", "false")
               .config("spark.sql.shuffle.partitions", "1")
               .config("spark.driver.memory", "512m")
               # C1 only: half the CPU of a JVM start with the full JIT (as the test
               # stack's Kafka); the data here is small.
               .config("spark.driver.extraJavaOptions", "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()


def test_spark_example(shipped, spark):
    scope = run_example("spark", {"spark": spark, "NAMENODE": NAMENODE, "ROOT": shipped["root"]})
    assert scope["latest"] == shipped["id"]
    # Inventory per category from inventory.avro = the sum of GET /inventory of the players.
    per_category = {r["category"]: r["quantity"] for r in scope["spark_per_category"].collect()}
    assert per_category == shipped["totals"]
    # Events by type and outcome from the per-type extracts = the events sent.
    got = {(r["event_type"], r["outcome"], r["reason"]): r["events"]
           for r in scope["spark_events"].collect()}
    assert got == shipped["expected"]
    # The event_type folders (a partition column) hold the players' events of that type.
    pairs = scope["events"].select("event_type", "user_id").distinct().collect()
    assert {r["event_type"] for r in pairs} == {t for t, _, _ in shipped["expected"]}
    assert {r["user_id"] for r in pairs} == set(shipped["players"])
    assert scope["events"].where("event_type = 'consume_item'").count() == 12


def test_guide_names_only_what_is_installed():
    """The versions the guide tells analysts to install are the ones the tests run."""
    import duckdb
    import pyspark
    text = open(GUIDE).read()
    assert f"duckdb=={duckdb.__version__} duckdb-extension-avro=={duckdb.__version__}" in text
    assert f"pyspark=={pyspark.__version__}" in text
    assert f"spark-avro_2.13:{pyspark.__version__}" in text
    reqs = open(os.path.join(ROOT, "tests", "requirements.txt")).read()
    assert f"pyspark=={pyspark.__version__}" in reqs and f"duckdb=={duckdb.__version__}" in reqs
    pom = open(os.path.join(ROOT, "stack", "spark", "pom.xml")).read()
    assert f"<spark.version>{pyspark.__version__}</spark.version>" in pom
