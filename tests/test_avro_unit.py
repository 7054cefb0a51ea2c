"""The Avro files of hdfs/avro_export, decoded by an independent reader (fastavro): runs
the compiled unit test with --keep DIR and checks codec, schema and every value. The data
below mirrors tests/unit/test_avro_export.c; keep the two in step. Builds nothing."""
import json
import os
import subprocess

import fastavro
from fastavro.schema import to_parsing_canonical_form

from conftest import BIN

UNIT_BIN = os.path.join(os.path.dirname(BIN), "test_avro_export")

LONG_MAX = 2**63 - 1
LONG_MIN = -2**63

INVENTORY = [
    {"user_id": "alice", "item_type": "sword", "category": "weapon", "quantity": 1},
    {"user_id": "bøb", "item_type": "potion", "category": "épée ⚔ 剣", "quantity": LONG_MAX},
    {"user_id": "😀-player", "item_type": "gem", "category": "trésor", "quantity": LONG_MIN},
    {"user_id": "", "item_type": "arrow", "category": "ammo", "quantity": -1},
] + [
    {"user_id": f"user-{n:05d}", "item_type": ("sword", "axe", "bow", "shield")[n % 4],
     "category": f"cat-{n % 7}", "quantity": n * 1000003}
    for n in range(20000)
]

GUILD_MEMBERS = [
    {"guild_id": "knights", "user_id": "alice", "joined_ts": "2026-11-29T08:14:00.123Z"},
    {"guild_id": "Ritter der Tafelrunde ä", "user_id": "bøb",
     "joined_ts": "2026-11-30T00:00:00.000Z"},
    {"guild_id": "ギルド", "user_id": "😀-player", "joined_ts": "2026-12-01T23:59:59.999Z"},
]

USERS = [
    {"user_id": "alice", "version": 3, "guild_id": "knights", "partition": 0,
     "created_ts": "2026-11-29T08:00:00.000Z", "updated_ts": "2026-11-29T08:14:00.123Z"},
    {"user_id": "bøb", "version": 1, "guild_id": None, "partition": 5, "created_ts": None,
     "updated_ts": "2026-11-30T00:00:00.000Z"},
    {"user_id": "😀-player", "version": LONG_MAX, "guild_id": None, "partition": 2,
     "created_ts": None, "updated_ts": "2026-12-01T23:59:59.999Z"},
]

EVENTS = [
    {"partition": 0, "offset": 0, "event_id": "evt-1", "event_type": "purchase_item",
     "user_id": "alice", "ts": "2026-11-29T08:14:00.123Z", "outcome": "applied",
     "reason": None, "items": '[{"item_type":"sword","quantity":1,"unit_price":100}]',
     "guild_id": None},
    {"partition": 5, "offset": 9007199254740993, "event_id": "évènement-2",
     "event_type": "join_guild", "user_id": "bøb", "ts": "2026-11-30T00:00:00.000Z",
     "outcome": "rejected", "reason": "already_in_guild", "items": None, "guild_id": "ギルド"},
    {"partition": 2, "offset": 77, "event_id": "evt-3", "event_type": "consume_item",
     "user_id": "😀-player", "ts": "2026-12-01T23:59:59.999Z", "outcome": "duplicate",
     "reason": None, "items": '[{"item_type":"épée","quantity":2}]', "guild_id": None},
    {"partition": 1, "offset": 1000, "event_id": "evt-big", "event_type": "purchase_item",
     "user_id": "alice", "ts": "2026-11-29T08:14:00.123Z", "outcome": "applied",
     "reason": None, "items": "x" * 65466, "guild_id": None},
]

FILES = {  # file -> (table whose schema it carries, expected rows)
    "inventory.avro": ("inventory", INVENTORY),
    "guild_members.avro": ("guild_members", GUILD_MEMBERS),
    "users.avro": ("users", USERS),
    "events.avro": ("events", EVENTS),
    "empty.avro": ("guild_members", []),
}


def kept_files(tmp_path):
    """Runs the C unit test, keeping its files; returns their directory."""
    assert os.access(UNIT_BIN, os.X_OK), f"{UNIT_BIN} is missing: build test_avro_export"
    out_dir = tmp_path / "avro"
    run = subprocess.run([UNIT_BIN, "--keep", str(out_dir)], capture_output=True, text=True,
                         timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    assert "0 failed" in run.stdout, run.stdout
    return out_dir


def test_fastavro_reads_what_avro_export_wrote(tmp_path):
    out_dir = kept_files(tmp_path)
    for name, (table, expected) in FILES.items():
        with open(out_dir / name, "rb") as f:
            reader = fastavro.reader(f)
            assert reader.codec == "deflate", name
            assert reader.metadata["avro.codec"] == "deflate", name
            rows = list(reader)
            header_schema = json.loads(reader.metadata["avro.schema"])
        assert len(rows) == len(expected), name
        for i, (got, want) in enumerate(zip(rows, expected)):
            assert got == want, f"{name} row {i}"

        # The header carries the documented schema as avro-c re-serialises it (no docs or
        # defaults, primitives spelled {"type": "string"}): equal in Parsing Canonical Form.
        documented = json.loads((out_dir / f"{table}.avsc").read_text(encoding="utf-8"))
        canonical = to_parsing_canonical_form(documented)
        assert to_parsing_canonical_form(header_schema) == canonical, name
        assert '"name":"lootlog.' in canonical


def test_rows_span_several_deflate_blocks(tmp_path):
    out_dir = kept_files(tmp_path)
    with open(out_dir / "inventory.avro", "rb") as f:
        blocks = list(fastavro.block_reader(f))
    assert len(blocks) >= 5
    assert all(block.codec == "deflate" for block in blocks)
    assert sum(block.num_records for block in blocks) == len(INVENTORY)
