"""Options come from one table (commands/options.c): the parser, `lootlog --help`,
`lootlog VERB --help` and the options table of docs/operations.md. The docs' copy must be
exactly what `lootlog options --markdown` prints; a bad value is one line naming the option
with exit status 2.

To refresh the docs' copy after changing the table:
    .cache/venv/bin/python tests/test_options.py --write [path/to/lootlog]
"""
import os
import re
import subprocess
import sys
import time

import pytest
import requests

from conftest import BIN, BROKERS, ROOT, create_topic, wait_until

DOC = os.path.join(ROOT, "docs", "operations.md")
BEGIN = "<!-- options table:"
END = "<!-- end of options table -->"
VERBS = ["serve", "topic", "replay", "migrate", "snapshot", "restore", "gen", "options"]


def lootlog(*args, env=None, timeout=30):
    return subprocess.run([BIN, *args], capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, **(env or {})))


def doc_table(text):
    """The Markdown table between the markers of docs/operations.md."""
    start = text.index(BEGIN)
    start = text.index("-->", start) + len("-->\n")
    return text[start:text.index(END, start)]


def table_rows(markdown):
    """[(option cell, env, default, [verbs], meaning)] of the printed table."""
    rows = []
    for line in markdown.splitlines()[2:]:
        cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
        rows.append((cells[0], cells[1].strip("`"), cells[2],
                     [v.strip() for v in cells[3].split(",")], cells[4]))
    return rows


def test_docs_table_is_what_the_binary_prints():
    printed = lootlog("options", "--markdown")
    assert printed.returncode == 0, printed.stderr
    with open(DOC, encoding="utf-8") as f:
        documented = doc_table(f.read())
    assert documented == printed.stdout, (
        "docs/operations.md's options table differs from `lootlog options --markdown`; "
        "refresh it with `.cache/venv/bin/python tests/test_options.py --write`")
    rows = table_rows(printed.stdout)
    flags = [r[0] for r in rows]
    # Every flag that tests, bench/ and dev pass is in the table.
    for flag in ["--http", "--brokers", "--topic", "--db", "--catalog", "--partitions A-B",
                 "--guild-capacity", "--request-timeout-ms", "--wait-ms", "--ready-max-lag",
                 "--batch-events", "--batch-ms", "--fold-threads", "--fold-nice", "--no-fold",
                 "--no-http", "--snapshot-url", "--snapshot-interval", "--retain",
                 "--admin-token-file", "--from-offset", "--until-offset", "--from-time",
                 "--until-time", "--verify", "--swap", "--to", "--id", "--rate", "--users",
                 "--duration", "--connections", "--seed", "--user-prefix", "-X",
                 "--log-format", "--access-log", "--partitions N", "--replication"]:
        assert any(cell.strip("`").startswith(flag) for cell in flags), flag
    envs = [r[1] for r in rows]
    assert "LOOTLOG_DB" in envs and "LOOTLOG_ADMIN_TOKEN" in envs
    assert len(set(e for e in envs if e)) == len([e for e in envs if e]), "an env var twice"


def test_help_lists_each_verbs_options_from_the_table():
    rows = table_rows(lootlog("options", "--markdown").stdout)
    top = lootlog("--help")
    assert top.returncode == 0
    for verb in VERBS:
        assert re.search(rf"^  {verb}\s", top.stdout, re.M), verb
    for verb in VERBS:
        helped = lootlog(verb, "--help")
        assert helped.returncode == 0, helped.stderr
        assert helped.stdout.startswith(f"usage: lootlog {verb}")
        listed = set(re.findall(r"^  (--[a-z-]+|-X|LOOTLOG_[A-Z_]+)", helped.stdout, re.M))
        expected = set()
        for cell, env, _, verbs, _ in rows:
            if verb in verbs:
                name = cell.strip("`").split()[0]
                expected.add(env if name == "(environment" else name)
        assert listed == expected, (verb, listed ^ expected)
        for cell, env, _, verbs, _ in rows:  # the defaults and variables are shown too
            if verb in verbs and env and cell.startswith("`--"):
                assert env in helped.stdout, (verb, env)


@pytest.mark.parametrize("args, env, named", [
    (["serve", "--wait-ms", "0"], {}, "--wait-ms"),
    (["serve", "--fold-nice", "20"], {}, "--fold-nice"),
    (["serve", "--ready-max-lag", "-1"], {}, "--ready-max-lag"),
    (["serve", "--partitions", "5-2"], {}, "--partitions"),
    (["serve", "--partitions", "0-256"], {}, "--partitions"),
    (["serve", "--log-format", "xml"], {}, "--log-format"),
    (["serve", "--db", ""], {}, "--db"),
    (["serve", "--no-fold=1"], {}, "--no-fold"),
    (["serve", "--batch-ms"], {}, "--batch-ms"),
    (["serve", "--rate", "5"], {}, "--rate"),          # gen's option
    (["serve", "--bogus"], {}, "--bogus"),
    (["serve", "-X", "no-equals-sign"], {}, "-X"),
    (["gen", "--rate", "0"], {}, "--rate"),
    (["replay", "--until-time", "yesterday"], {}, "--until-time"),
    (["topic", "ensure", "--partitions", "257"], {}, "--partitions"),
    (["topic", "ensure", "--replication", "0"], {}, "--replication"),
    (["serve"], {"LOOTLOG_WAIT_MS": "soon"}, "LOOTLOG_WAIT_MS"),
    (["serve"], {"LOOTLOG_NO_FOLD": "maybe"}, "LOOTLOG_NO_FOLD"),
    (["topic", "ensure"], {"LOOTLOG_TOPIC_PARTITIONS": "x"}, "LOOTLOG_TOPIC_PARTITIONS"),
])
def test_a_bad_value_is_one_line_naming_the_option_exit_2(args, env, named):
    out = lootlog(*args, env=env)
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    lines = out.stderr.splitlines()
    assert len(lines) == 1 and named in lines[0], out.stderr
    assert out.stdout == ""


def test_environment_is_read_and_a_flag_wins(tmp_path):
    db = str(tmp_path / "one.db")
    # LOOTLOG_TO is read: a bad value stops migrate...
    bad = lootlog("migrate", "--db", db, env={"LOOTLOG_TO": "abc"})
    assert bad.returncode == 2 and "LOOTLOG_TO" in bad.stderr and "--to" in bad.stderr
    # ...a good one is used...
    ok = lootlog("migrate", "--db", db, env={"LOOTLOG_TO": "1"})
    assert ok.returncode == 0 and "0 -> 1" in ok.stdout, ok.stdout + ok.stderr
    # ...and a flag wins over it (the variable is then not even read).
    flagged = lootlog("migrate", "--db", db, "--to", "2", env={"LOOTLOG_TO": "abc"})
    assert flagged.returncode == 0 and "1 -> 2" in flagged.stdout, flagged.stdout + flagged.stderr
    # --name=value is the same as --name value; LOOTLOG_DB names the store.
    eq = lootlog("migrate", "--to=3", env={"LOOTLOG_DB": db})
    assert eq.returncode == 0 and "2 -> 3" in eq.stdout, eq.stdout + eq.stderr


def test_unknown_verb_and_stray_arguments():
    out = lootlog("frobnicate")
    assert out.returncode == 2 and "frobnicate" in out.stderr and len(out.stderr.splitlines()) == 1
    out = lootlog("serve", "extra")
    assert out.returncode == 2 and "'extra'" in out.stderr
    out = lootlog("topic", "create")
    assert out.returncode == 2 and "topic ensure" in out.stderr
    out = subprocess.run([BIN], capture_output=True, text=True, timeout=10)
    assert out.returncode == 2 and "usage: lootlog VERB" in out.stderr


def test_ready_max_lag_zero_means_caught_up(server_factory):
    """--ready-max-lag 0 is kept as 0 (it once became 10000): while the fold is behind by
    any number of records, /readyz is 503; it is 200 only once the fold has caught up."""
    topic = create_topic(f"options-lag-{int(time.time() * 1000)}")
    gen = subprocess.run([BIN, "gen", "--brokers", BROKERS, "--topic", topic, "--rate", "20000",
                          "--users", "2000", "--duration", "1.5", "--seed", "7"],
                         capture_output=True, text=True, timeout=120)
    assert gen.returncode == 0, gen.stdout + gen.stderr
    # One thread, small transactions: the backlog takes a while to fold.
    s = server_factory(name="lag0", topic=topic,
                       extra_args=["--ready-max-lag", "0", "--fold-threads", "1",
                                   "--batch-events", "50"]).start(wait_ready=False)
    seen_behind = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        r = requests.get(s.url + "/readyz", timeout=5)
        body = r.json()
        lag = body.get("fold_lag", -1)
        if body["ready"]:
            assert lag == 0, body  # never ready while behind, however little
            break
        assert r.status_code == 503
        if 0 < lag <= 10000:
            seen_behind.append(lag)
        time.sleep(0.01)
    else:
        raise AssertionError("never ready:\n" + s.tail())
    # The old default of 10000 would have said ready at each of these.
    assert seen_behind, "the fold was never seen between 1 and 10000 records behind"


def write_docs(binary):
    printed = subprocess.run([binary, "options", "--markdown"], capture_output=True, text=True,
                             check=True).stdout
    with open(DOC, encoding="utf-8") as f:
        text = f.read()
    old = doc_table(text)
    start = text.index(old, text.index(BEGIN))
    with open(DOC, "w", encoding="utf-8") as f:
        f.write(text[:start] + printed + text[start + len(old):])


if __name__ == "__main__":
    if len(sys.argv) >= 2 and sys.argv[1] == "--write":
        write_docs(sys.argv[2] if len(sys.argv) > 2 else BIN)
        print(f"rewrote the options table of {DOC}")
    else:
        sys.exit(__doc__)
