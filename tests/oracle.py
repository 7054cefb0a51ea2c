"""An independent fold of the topic, written from the documented rules (docs/design.md,
"Fold rules" and "Guilds are decided in the log"), not from lootlog's code: the crash
and guild tests compare every table lootlog builds with what this computes from the
same records, read straight from Kafka with confluent-kafka.

State is kept per partition, as the rules say: a player's events (and the guild
decisions sent to the player) are folded in the player's partition, a guild's requests
in the guild's partition, and nothing of one partition is read while folding another.
The partitions may therefore be read in any interleaving."""
import json
import uuid

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from conftest import BROKERS, wait_until

GUILD_SIDE = ("guild_join_requested", "guild_leave_requested")


class Oracle:
    def __init__(self, capacity=100, wanted=lambda user: True):
        self.capacity = capacity
        self.wanted = wanted
        self.seen = set()          # (partition, user, event_id)
        self.version = {}          # user -> applied events (default excluded)
        self.guild = {}            # user -> guild the player is in
        self.pending = {}          # user -> (guild, join event id)
        self.inventory = {}        # (user, item) -> quantity
        self.members = {}          # guild -> {user: joined ts}, in the guild's partition
        self.outcomes = {}         # (partition, offset) -> (outcome, reason)

    def fold(self, partition, offset, ev):
        """Applies one event; returns (outcome, reason)."""
        user, kind = ev["user_id"], ev["event_type"]
        if not self.wanted(user):
            return None
        key = (partition, user, ev["event_id"])
        if key in self.seen:
            result = ("duplicate", None)
        else:
            self.seen.add(key)
            result = self._rules(user, kind, ev)
        self.outcomes[(partition, offset)] = result
        return result

    def _rules(self, user, kind, ev):
        if kind in GUILD_SIDE:
            seats = self.members.setdefault(ev["guild_id"], {})
            if kind == "guild_join_requested":
                if user not in seats and len(seats) >= self.capacity:
                    return ("rejected", "guild_full")
                seats.setdefault(user, ev["ts"])
                return ("applied", None)
            if user not in seats:
                return ("rejected", "not_in_guild")
            del seats[user]
            return ("applied", None)
        if kind == "default":
            return ("applied", None)
        expected = ev.get("expected_version")
        if expected is not None and expected != self.version.get(user, 0):
            return ("rejected", "version_conflict")
        outcome = self._player_rules(user, kind, ev)
        if outcome[0] == "applied":
            self.version[user] = self.version.get(user, 0) + 1
        return outcome

    def _player_rules(self, user, kind, ev):
        lines = {}
        for line in ev.get("items") or []:
            lines[line["item_type"]] = lines.get(line["item_type"], 0) + line["quantity"]
        if kind in ("purchase_item", "purchase_sword"):
            for item, q in lines.items():
                self.inventory[(user, item)] = self.inventory.get((user, item), 0) + q
            return ("applied", None)
        if kind == "consume_item":
            if not all(self.inventory.get((user, item), 0) >= q for item, q in lines.items()):
                return ("rejected", "insufficient_quantity")
            for item, q in lines.items():
                self.inventory[(user, item)] -= q
            return ("applied", None)
        if kind == "join_guild":
            if user in self.pending:
                return ("rejected", "guild_join_pending")
            current = self.guild.get(user)
            if current is not None:
                return ("applied", None) if current == ev["guild_id"] else \
                    ("rejected", "already_in_guild")
            self.pending[user] = (ev["guild_id"], ev["event_id"])
            return ("pending", None)
        if kind == "leave_guild":
            if user in self.pending:
                return ("rejected", "guild_join_pending")
            if self.guild.pop(user, None) is None:
                return ("rejected", "not_in_guild")
            return ("applied", None)
        if kind == "guild_join_decided":
            if self.pending.get(user) != (ev["guild_id"], ev["cause_event_id"]):
                return ("rejected", "no_pending_join")
            del self.pending[user]
            if ev["decision"] != "granted":
                return ("rejected", ev["reason"])
            self.guild[user] = ev["guild_id"]
            return ("applied", None)
        raise AssertionError(f"unknown event type {kind}")

    # --- the tables lootlog keeps, in the shape the tests compare ---------------------
    def players(self):
        """{user: (version, guild or None)} of the players that exist (version > 0)."""
        return {u: (v, self.guild.get(u)) for u, v in self.version.items() if v > 0}

    def items(self):
        return {k: q for k, q in self.inventory.items() if q > 0}

    def seats(self):
        return {(g, u) for g, users in self.members.items() for u in users}


LEADER_MOVED = (KafkaError.NOT_LEADER_FOR_PARTITION, KafkaError.LEADER_NOT_AVAILABLE)


def end_offsets(topic, deadline_s=60):
    """partition -> (low, high). A leader that just moved (a broker restarted, or the
    preferred leader taking its partitions back) answers NOT_LEADER until the client's
    metadata catches up: such errors are asked again, with fresh metadata, until
    deadline_s has passed."""
    def ask():
        c = Consumer({"bootstrap.servers": BROKERS, "group.id": "oracle-" + uuid.uuid4().hex})
        try:
            md = c.list_topics(topic, timeout=10)
            return ({p: c.get_watermark_offsets(TopicPartition(topic, p), timeout=10)
                     for p in md.topics[topic].partitions},)  # truthy even when empty
        except KafkaException as exc:
            err = exc.args[0]
            if err.retriable() or err.code() in LEADER_MOVED:
                return None
            raise
        finally:
            c.close()
    return wait_until(ask, deadline_s, f"the end offsets of {topic}")[0]


def fold_topic(topic, ends, oracle):
    """Feeds every record of topic up to ends into oracle; returns oracle."""
    c = Consumer({"bootstrap.servers": BROKERS, "group.id": "oracle-" + uuid.uuid4().hex,
                  "enable.auto.commit": False, "enable.partition.eof": True})
    c.assign([TopicPartition(topic, p, low) for p, (low, high) in ends.items() if high > low])
    remaining = {p for p, (low, high) in ends.items() if high > low}
    while remaining:
        msg = c.poll(1.0)
        if msg is None:
            continue
        if msg.error():
            if msg.error().code() == -191:  # partition EOF
                remaining.discard(msg.partition())
            continue
        if msg.offset() >= ends[msg.partition()][1]:
            continue
        if msg.offset() + 1 >= ends[msg.partition()][1]:
            remaining.discard(msg.partition())
        ev = json.loads(msg.value())
        key = (msg.key() or b"").decode()
        expected_key = ev["guild_id"] if ev["event_type"] in GUILD_SIDE else ev["user_id"]
        assert key == expected_key, (key, ev)
        oracle.fold(msg.partition(), msg.offset(), ev)
    c.close()
    return oracle
