"""The fold peer: a straightforward Python fold of the same topic into SQLite (the way a
script or a batch job would do it): confluent-kafka consumer, json.loads, one
transaction per 5000 events. Prints events/s."""
import json
import sqlite3
import sys
import time

from confluent_kafka import Consumer, TopicPartition

brokers, topic, db = sys.argv[1], sys.argv[2], sys.argv[3]
c = Consumer({"bootstrap.servers": brokers, "group.id": f"peer-{time.time()}",
              "enable.auto.commit": False})
md = c.list_topics(topic, timeout=10).topics[topic]
ends = {p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10) for p in md.partitions}
total = sum(hi - lo for lo, hi in ends.values())
c.assign([TopicPartition(topic, p, lo) for p, (lo, hi) in ends.items() if hi > lo])
con = sqlite3.connect(db)
con.execute("PRAGMA journal_mode=WAL")
con.execute("PRAGMA synchronous=NORMAL")
con.execute("CREATE TABLE IF NOT EXISTS inventory (user_id TEXT, item_type TEXT, quantity INTEGER, "
            "PRIMARY KEY (user_id, item_type))")
con.execute("CREATE TABLE IF NOT EXISTS events (partition INTEGER, offset INTEGER, event_id TEXT, "
            "outcome TEXT, PRIMARY KEY (partition, offset))")
start = time.monotonic()
done = 0
pending = 0
con.execute("BEGIN")
while done < total:
    msg = c.poll(1.0)
    if msg is None or msg.error():
        continue
    done += 1
    try:
        ev = json.loads(msg.value())
    except ValueError:
        continue
    outcome = "applied"
    for line in ev.get("items") or []:
        sign = -1 if ev.get("event_type") == "consume_item" else 1
        row = con.execute("SELECT quantity FROM inventory WHERE user_id=? AND item_type=?",
                          (ev["user_id"], line["item_type"])).fetchone()
        held = row[0] if row else 0
        if held + sign * line["quantity"] < 0:
            outcome = "rejected"
            break
        con.execute("INSERT INTO inventory VALUES (?,?,?) ON CONFLICT DO UPDATE SET quantity=excluded.quantity",
                    (ev["user_id"], line["item_type"], held + sign * line["quantity"]))
    con.execute("INSERT OR REPLACE INTO events VALUES (?,?,?,?)",
                (msg.partition(), msg.offset(), ev.get("event_id"), outcome))
    pending += 1
    if pending >= 5000:
        con.execute("COMMIT")
        con.execute("BEGIN")
        pending = 0
con.execute("COMMIT")
elapsed = time.monotonic() - start
print(f"peer-fold: {done} events in {elapsed:.1f} s ({done / elapsed:.0f}/s)")
