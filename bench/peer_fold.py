#!/usr/bin/env python3
"""The fold peer: the fold of lootlog's rules (docs/design.md, "Fold rules") written the way a Python team would
write it as a script or batch job — confluent-kafka consumer, json.loads, sqlite3 (WAL),
one transaction per 5000 events — applying the SAME rules as lootlog's fold
(state/fold.c), so the comparison is work for work:

  - dedupe per player on (user_id, event_id), kept forever: a repeat is `duplicate`;
  - version = the player's applied non-default events; `expected_version` set and
    different -> rejected `version_conflict`;
  - purchase: all cart lines apply together (lines of one type merged);
  - consume: holding fewer of any line -> rejected `insufficient_quantity`, nothing
    changes; a row that reaches 0 is deleted;
  - join_guild: a join still waiting -> `guild_join_pending`; in another guild ->
    `already_in_guild`; the same one -> applied, no-op; else `pending`, and a request to
    the guild's partition is written to an outbox; guild_join_requested (the guild's
    partition): a seat while under capacity, else `guild_full`, and the decision to the
    outbox; guild_join_decided: the waiting player joins (or not); leave_guild outside a
    guild -> `not_in_guild`, else applied and a request to free the seat;
  - `default` events are recorded but touch no player; invalid messages are
    dead-lettered; every outcome is recorded with its partition and offset.

It folds the topic as it is when it starts (end offsets fixed then), into DB, and prints
`peer-fold: N events in S s (R/s): A applied, B rejected, C duplicate, D dead-lettered,
P pending`
(with --json, one JSON object instead).

  python bench/peer_fold.py BROKERS TOPIC DB [--guild-capacity 100] [--batch 5000] [--json]
"""
import argparse
import json
import re
import sqlite3
import time

from confluent_kafka import Consumer, TopicPartition

EVENT_TYPES = {"default", "purchase_sword", "purchase_item", "consume_item", "join_guild",
               "leave_guild", "guild_join_requested", "guild_join_decided",
               "guild_leave_requested"}
GUILD_SIDE = {"guild_join_requested", "guild_leave_requested"}
IDENTIFIER = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
# lootlog's rule checks the date is real too; the generator only writes real ones
CANONICAL_TS = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}\.[0-9]{3}Z$")
INT64_MAX = 2 ** 63 - 1

SCHEMA = """
CREATE TABLE IF NOT EXISTS players (user_id TEXT PRIMARY KEY, version INTEGER NOT NULL,
                                    guild_id TEXT, pending_guild_id TEXT, pending_cause TEXT);
CREATE TABLE IF NOT EXISTS guild_members (guild_id TEXT NOT NULL, user_id TEXT NOT NULL,
                                          PRIMARY KEY (guild_id, user_id));
CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY, msg_key TEXT NOT NULL,
                                   payload TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS inventory (user_id TEXT NOT NULL, item_type TEXT NOT NULL,
                                      quantity INTEGER NOT NULL,
                                      PRIMARY KEY (user_id, item_type));
CREATE TABLE IF NOT EXISTS guilds (guild_id TEXT PRIMARY KEY, member_count INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS seen (user_id TEXT NOT NULL, event_id TEXT NOT NULL,
                                 PRIMARY KEY (user_id, event_id));
CREATE TABLE IF NOT EXISTS outcomes (partition INTEGER NOT NULL, offset INTEGER NOT NULL,
                                     event_id TEXT, user_id TEXT, event_type TEXT,
                                     outcome TEXT NOT NULL, reason TEXT,
                                     PRIMARY KEY (partition, offset));
CREATE TABLE IF NOT EXISTS offsets (partition INTEGER PRIMARY KEY, next_offset INTEGER NOT NULL);
"""


class Invalid(Exception):
    pass


def unique_keys(pairs):
    """json object hook: a key given twice makes the record invalid, as in lootlog."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        raise Invalid("duplicate object key")
    return obj


def decode(key, value):
    """The event in a message, or Invalid (dead-lettered) with the reason."""
    try:
        ev = json.loads(value, object_pairs_hook=unique_keys)
    except (ValueError, TypeError):
        raise Invalid("invalid JSON")
    if not isinstance(ev, dict):
        raise Invalid("event is not a JSON object")
    if ev.get("v") != 1 or isinstance(ev.get("v"), bool):
        raise Invalid("missing or unknown version")
    for field in ("event_id", "user_id"):
        if not isinstance(ev.get(field), str) or not IDENTIFIER.match(ev[field]):
            raise Invalid(f"{field} is not a valid identifier")
    if ev.get("event_type") not in EVENT_TYPES:
        raise Invalid("unknown event_type")
    if not isinstance(ev.get("ts"), str):
        raise Invalid("missing field 'ts'")
    items = ev.get("items") or []
    if not isinstance(items, list):
        raise Invalid("field 'items' is not an array")
    for line in items:
        q = line.get("quantity") if isinstance(line, dict) else None
        if (not isinstance(line.get("item_type"), str) or not isinstance(q, int)
                or isinstance(q, bool) or not 1 <= q <= 1_000_000):
            raise Invalid("bad item line")
    guild = ev.get("guild_id")
    if guild is not None and not (isinstance(guild, str) and IDENTIFIER.match(guild)):
        raise Invalid("guild_id is not a valid identifier")
    expected = ev.get("expected_version")
    if expected is not None and (not isinstance(expected, int) or isinstance(expected, bool)
                                 or expected < 0):
        raise Invalid("expected_version is not a non-negative integer")
    kind = ev["event_type"]
    if kind in ("purchase_sword", "purchase_item", "consume_item") and not items:
        raise Invalid(f"{kind} needs items")
    if kind == "join_guild" and guild is None:
        raise Invalid("join_guild needs a valid guild_id")
    if guild is not None and kind not in ("join_guild", "leave_guild") and \
            not kind.startswith("guild_"):
        raise Invalid(f"{kind} takes no guild_id")
    if not CANONICAL_TS.match(ev["ts"]):
        raise Invalid("ts is not a UTC time such as 2026-11-29T08:14:00.123Z")
    if kind in GUILD_SIDE or kind == "guild_join_decided":
        if not isinstance(ev.get("cause_event_id"), str) or guild is None:
            raise Invalid(f"{kind} needs a valid guild_id and cause_event_id")
    expected_key = ev["guild_id"] if kind in GUILD_SIDE else ev["user_id"]
    if key is None or key.decode("utf-8", "replace") != expected_key:
        raise Invalid("message key is not the event's key")
    return ev


def derived_id(cause, kind):
    """The id lootlog gives an emitted event (a version-8 UUID from SHA-256)."""
    import hashlib
    b = bytearray(hashlib.sha256(f"{cause}/{kind}".encode()).digest()[:16])
    b[6] = (b[6] & 0x0F) | 0x80
    b[8] = (b[8] & 0x3F) | 0x80
    h = b.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


class Fold:
    def __init__(self, con, guild_capacity):
        self.con = con
        self.capacity = guild_capacity
        self.counts = {"applied": 0, "rejected": 0, "duplicate": 0, "dead_lettered": 0,
                       "pending": 0}

    def held(self, user, item_type):
        row = self.con.execute("SELECT quantity FROM inventory WHERE user_id=? AND item_type=?",
                               (user, item_type)).fetchone()
        return row[0] if row else 0

    def set_quantity(self, user, item_type, quantity):
        if quantity == 0:
            self.con.execute("DELETE FROM inventory WHERE user_id=? AND item_type=?",
                             (user, item_type))
        else:
            self.con.execute("INSERT INTO inventory VALUES (?,?,?) ON CONFLICT DO UPDATE "
                             "SET quantity=excluded.quantity", (user, item_type, quantity))

    def apply_items(self, user, items, sign):
        """None when applied, else the rejection reason. Checks every line, then writes."""
        merged = {}
        for line in items:
            merged[line["item_type"]] = merged.get(line["item_type"], 0) + line["quantity"]
        held = {t: self.held(user, t) for t in merged}
        for t, q in merged.items():
            if sign < 0 and held[t] < q:
                return "insufficient_quantity"
            if sign > 0 and held[t] > INT64_MAX - q:
                return "quantity_overflow"
        for t, q in merged.items():
            self.set_quantity(user, t, held[t] + sign * q)
        return None

    def members(self, guild):
        row = self.con.execute("SELECT member_count FROM guilds WHERE guild_id=?",
                               (guild,)).fetchone()
        return row[0] if row else 0

    def set_members(self, guild, count):
        if count <= 0:
            self.con.execute("DELETE FROM guilds WHERE guild_id=?", (guild,))
        else:
            self.con.execute("INSERT INTO guilds VALUES (?,?) ON CONFLICT DO UPDATE "
                             "SET member_count=excluded.member_count", (guild, count))

    def emit(self, kind, cause, ev, key, **extra):
        """Writes the event the exchange sends next to the outbox (as lootlog does)."""
        out = {"v": 1, "event_id": derived_id(cause, kind), "event_type": kind,
               "user_id": ev["user_id"], "ts": ev["ts"], "items": [],
               "guild_id": ev["guild_id"], "expected_version": None, "cause_event_id": cause,
               **extra, "metadata": {}}
        self.con.execute("INSERT INTO outbox (msg_key, payload) VALUES (?,?)",
                         (key, json.dumps(out)))

    def guild_side(self, ev):
        """A request folded in the guild's partition: a seat, or its release."""
        user, guild = ev["user_id"], ev["guild_id"]
        member = self.con.execute("SELECT 1 FROM guild_members WHERE guild_id=? AND user_id=?",
                                  (guild, user)).fetchone() is not None
        if ev["event_type"] == "guild_leave_requested":
            if not member:
                return "rejected", "not_in_guild"
            self.con.execute("DELETE FROM guild_members WHERE guild_id=? AND user_id=?",
                             (guild, user))
            self.set_members(guild, self.members(guild) - 1)
            return "applied", None
        reason = None
        if not member:
            count = self.members(guild)
            if count >= self.capacity:
                reason = "guild_full"
            else:
                self.con.execute("INSERT INTO guild_members VALUES (?,?)", (guild, user))
                self.set_members(guild, count + 1)
        self.emit("guild_join_decided", ev["cause_event_id"], ev, user,
                  decision="refused" if reason else "granted", reason=reason)
        return ("rejected", reason) if reason else ("applied", None)

    def apply(self, ev):
        """Returns (outcome, reason) and writes the state change of one decoded event."""
        user, kind = ev["user_id"], ev["event_type"]
        cur = self.con.execute("INSERT OR IGNORE INTO seen VALUES (?,?)", (user, ev["event_id"]))
        if cur.rowcount == 0:
            return "duplicate", None
        if kind in GUILD_SIDE:
            return self.guild_side(ev)
        if kind == "default":
            return "applied", None
        row = self.con.execute("SELECT version, guild_id, pending_guild_id, pending_cause "
                               "FROM players WHERE user_id=?", (user,)).fetchone()
        version, guild, pending_guild, pending_cause = row if row else (0, None, None, None)
        expected = ev.get("expected_version")
        if expected is not None and expected != version:
            return "rejected", "version_conflict"
        reason, outcome = None, "applied"
        if kind in ("purchase_sword", "purchase_item"):
            reason = self.apply_items(user, ev["items"], +1)
        elif kind == "consume_item":
            reason = self.apply_items(user, ev["items"], -1)
        elif kind == "join_guild":
            if pending_guild is not None:
                reason = "guild_join_pending"
            elif guild is not None:
                if guild != ev["guild_id"]:
                    reason = "already_in_guild"
            else:
                self.emit("guild_join_requested", ev["event_id"], ev, ev["guild_id"])
                pending_guild, pending_cause, outcome = ev["guild_id"], ev["event_id"], "pending"
        elif kind == "leave_guild":
            if pending_guild is not None:
                reason = "guild_join_pending"
            elif guild is None:
                reason = "not_in_guild"
            else:
                self.emit("guild_leave_requested", ev["event_id"], dict(ev, guild_id=guild),
                          guild)
                guild = None
        elif kind == "guild_join_decided":
            if (pending_guild, pending_cause) != (ev["guild_id"], ev["cause_event_id"]):
                reason = "no_pending_join"
            else:
                pending_guild = pending_cause = None
                if ev["decision"] == "granted":
                    guild = ev["guild_id"]
                else:
                    reason = ev["reason"]
                    outcome = "rejected"
        if reason and outcome != "rejected":
            return "rejected", reason
        self.con.execute("INSERT INTO players VALUES (?,?,?,?,?) ON CONFLICT DO UPDATE "
                         "SET version=excluded.version, guild_id=excluded.guild_id, "
                         "pending_guild_id=excluded.pending_guild_id, "
                         "pending_cause=excluded.pending_cause",
                         (user, version + (outcome == "applied"), guild, pending_guild,
                          pending_cause))
        return outcome, reason

    def fold_message(self, msg):
        try:
            ev = decode(msg.key(), msg.value())
        except Invalid as e:
            outcome, reason, ev = "dead_lettered", str(e), {}
        else:
            outcome, reason = self.apply(ev)
        self.counts[outcome] += 1
        self.con.execute("INSERT INTO outcomes VALUES (?,?,?,?,?,?,?)",
                         (msg.partition(), msg.offset(), ev.get("event_id"), ev.get("user_id"),
                          ev.get("event_type"), outcome, reason))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("brokers")
    parser.add_argument("topic")
    parser.add_argument("db")
    parser.add_argument("--guild-capacity", type=int, default=100)
    parser.add_argument("--batch", type=int, default=5000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    start = time.monotonic()
    consumer = Consumer({"bootstrap.servers": args.brokers, "group.id": f"peer-fold-{time.time()}",
                         "enable.auto.commit": False, "enable.partition.eof": False})
    meta = consumer.list_topics(args.topic, timeout=10).topics[args.topic]
    ends = {p: consumer.get_watermark_offsets(TopicPartition(args.topic, p), timeout=10)
            for p in meta.partitions}
    remaining = {p: hi for p, (lo, hi) in ends.items() if hi > lo}
    consumer.assign([TopicPartition(args.topic, p, ends[p][0]) for p in remaining])

    con = sqlite3.connect(args.db, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("PRAGMA synchronous=NORMAL")
    con.executescript(SCHEMA)
    fold = Fold(con, args.guild_capacity)
    next_offset = {}
    done = pending = 0

    def commit():
        for p, o in next_offset.items():
            con.execute("INSERT OR REPLACE INTO offsets VALUES (?,?)", (p, o))
        con.execute("COMMIT")

    con.execute("BEGIN")
    while remaining:
        batch = consumer.consume(num_messages=1000, timeout=1.0)
        if not batch:
            # Quiet: a partition whose position passed its end (no records left) is done.
            for tp in consumer.position([TopicPartition(args.topic, p) for p in remaining]):
                if tp.offset >= remaining.get(tp.partition, 0):
                    remaining.pop(tp.partition, None)
            continue
        for msg in batch:
            if msg.error():
                continue
            p, o = msg.partition(), msg.offset()
            end = remaining.get(p)
            if end is None or o >= end:
                continue
            fold.fold_message(msg)
            next_offset[p] = o + 1
            done += 1
            pending += 1
            if o + 1 >= end:
                del remaining[p]
            if pending >= args.batch:
                commit()
                con.execute("BEGIN")
                pending = 0
    commit()
    consumer.close()
    con.close()
    elapsed = time.monotonic() - start
    c = fold.counts
    if args.json:
        print(json.dumps({"events": done, "seconds": round(elapsed, 3),
                          "rate": round(done / elapsed) if elapsed else 0, "outcomes": c}))
    else:
        print(f"peer-fold: {done} events in {elapsed:.1f} s ({done / elapsed:.0f}/s): "
              f"{c['applied']} applied, {c['rejected']} rejected, {c['duplicate']} duplicate, "
              f"{c['dead_lettered']} dead-lettered, {c['pending']} pending")


if __name__ == "__main__":
    main()
