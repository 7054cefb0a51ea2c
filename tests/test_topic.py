"""`lootlog topic ensure` against the real broker: it creates a topic, checks an existing
one without changing it, refuses a partition count that differs from the topic's or from
the stores in --db, and serve on a missing topic says so in /readyz and names the
command. lootlog folds at most 256 partitions: more is refused, not silently skipped."""
import subprocess
import uuid

import requests
from confluent_kafka.admin import AdminClient, NewTopic

from conftest import BIN, BROKERS, store_files, wait_until


def lootlog(*args, timeout=120):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout)


def ensure(topic, *args):
    return lootlog("topic", "ensure", "--brokers", BROKERS, "--topic", topic, *args)


def partitions_of(topic):
    md = AdminClient({"bootstrap.servers": BROKERS}).list_topics(topic, timeout=10)
    t = md.topics.get(topic)
    return None if t is None or t.error else len(t.partitions)


def fresh_name(what):
    return f"topic-{what}-{uuid.uuid4().hex[:8]}"


def test_create_then_check_then_refuse_another_count(tmp_path):
    topic = fresh_name("new")
    db = str(tmp_path / "no-stores-yet")
    assert partitions_of(topic) is None
    created = ensure(topic, "--partitions", "3", "--replication", "1", "--db", db)
    assert created.returncode == 0, created.stderr
    assert f"topic '{topic}' created: 3 partitions, replication 1" in created.stdout
    assert partitions_of(topic) == 3

    # Again, with or without the count: checked, nothing changes, exit 0.
    for args in ([], ["--partitions", "3"]):
        again = ensure(topic, *args, "--db", db)
        assert again.returncode == 0, again.stderr
        assert f"topic '{topic}' exists: 3 partitions" in again.stdout
    assert partitions_of(topic) == 3

    # Another count: refused, one line that says both numbers; the topic is untouched.
    other = ensure(topic, "--partitions", "4", "--db", db)
    assert other.returncode == 2
    assert "3 partitions" in other.stderr and "4" in other.stderr, other.stderr
    assert len(other.stderr.splitlines()) == 1
    assert partitions_of(topic) == 3


def test_counts_that_do_not_match_the_stores_are_refused(server_factory, tmp_path):
    topic = fresh_name("stores")
    assert ensure(topic, "--partitions", "3", "--db", str(tmp_path / "none")).returncode == 0
    # A serve on the 3-partition topic leaves three stores.
    s = server_factory(name="three", topic=topic).start()
    s.stop()
    assert sorted(store_files(s.db)) == [0, 1, 2]

    # A new topic of another count for these stores: refused before anything is created.
    six = fresh_name("six")
    refused = ensure(six, "--partitions", "6", "--db", s.db)
    assert refused.returncode == 2
    assert "3 partitions" in refused.stderr and "p0.db..p2.db" in refused.stderr, refused.stderr
    assert partitions_of(six) is None
    # Without --partitions the stores decide the count.
    fits = ensure(six, "--db", s.db)
    assert fits.returncode == 0, fits.stderr
    assert partitions_of(six) == 3

    # An existing topic whose count differs from the stores: refused.
    big = fresh_name("big")
    assert ensure(big, "--partitions", "5", "--db", str(tmp_path / "none")).returncode == 0
    mismatch = ensure(big, "--db", s.db)
    assert mismatch.returncode == 2
    assert "5 partitions" in mismatch.stderr and "p0.db..p2.db" in mismatch.stderr


def test_serve_on_a_missing_topic_says_so_and_becomes_ready_once_it_exists(server_factory):
    topic = fresh_name("missing")
    s = server_factory(name="missing", topic=topic).start(wait_ready=False)

    def says_missing():
        r = requests.get(s.url + "/readyz", timeout=5)
        body = r.json()
        return r.status_code == 503 and "does not exist" in body.get("reason", "") and body
    body = wait_until(says_missing, 30, "/readyz to say the topic is missing")
    assert body["ready"] is False
    assert f"lootlog topic ensure --topic {topic}" in body["reason"]

    created = ensure(topic, "--partitions", "2", "--db", s.db)
    assert created.returncode == 0, created.stderr
    wait_until(s.ready, 60, "ready once the topic exists (no restart)")
    body = requests.get(s.url + "/readyz", timeout=5).json()
    assert "reason" not in body and body["ready"] is True
    assert sorted(store_files(s.db)) == [0, 1]


def test_more_than_256_partitions_is_refused(server_factory, tmp_path):
    topic = fresh_name("257")
    refused = ensure(topic, "--partitions", "257", "--db", str(tmp_path / "none"))
    assert refused.returncode == 2 and "--partitions" in refused.stderr
    assert partitions_of(topic) is None

    admin = AdminClient({"bootstrap.servers": BROKERS})
    admin.create_topics([NewTopic(topic, num_partitions=257, replication_factor=1)])[topic].result(60)
    try:
        wait_until(lambda: partitions_of(topic) == 257, 60, "the 257-partition topic")
        checked = ensure(topic, "--db", str(tmp_path / "none"))
        assert checked.returncode == 2 and "at most 256" in checked.stderr, checked.stderr

        # serve used to fold partitions 0..255, skip the rest and report ready; now it
        # stops at start-up with the reason, and exit status 1.
        s = server_factory(name="s257", topic=topic)  # its port, folder and log file
        log = open(s.log_path, "wb")
        proc = subprocess.Popen([BIN, "serve", "--http", f"127.0.0.1:{s.port}", "--brokers",
                                 BROKERS, "--topic", topic, "--db", s.db],
                                stdout=log, stderr=subprocess.STDOUT)
        try:
            rc = proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            log.close()
        text = open(s.log_path, encoding="utf-8", errors="replace").read()
        assert rc == 1, text
        assert "257 partitions" in text and "at most 256" in text, text
        assert store_files(s.db) == {}  # not one partition was folded
    finally:
        admin.delete_topics([topic])[topic].result(60)


def test_no_topic_action_is_a_usage_error():
    out = lootlog("topic")
    assert out.returncode == 2 and "topic ensure" in out.stderr
