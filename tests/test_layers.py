"""The layout shows the architecture (docs/architecture.md, "Modules"): each folder is a
layer, and no module includes a header of a layer above its own. tools/module_map.py reads
the includes from the code; this test runs its check on the tree, shows the check catches
a violation (a copy of the tree where the domain includes the HTTP server, and one where
it includes librdkafka), and compares the map in docs/architecture.md with the code's."""
import os
import shutil
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAP = os.path.join(ROOT, "tools", "module_map.py")


def module_map(*args, root=ROOT):
    return subprocess.run([sys.executable, MAP, "--root", root, *args], capture_output=True,
                          text=True, timeout=60)


def test_no_module_reaches_a_layer_above_its_own():
    r = module_map("--check")
    assert r.returncode == 0 and r.stdout == "", r.stdout + r.stderr


def copy_of_sources(tmp_path):
    """The C sources and the map script, in a scratch tree the test may break."""
    tree = tmp_path / "tree"
    for folder in ("lib", "state", "kafka", "hdfs", "server", "tools", "commands", "docs"):
        shutil.copytree(os.path.join(ROOT, folder), tree / folder)
    shutil.copy(os.path.join(ROOT, "main.c"), tree / "main.c")
    return tree


def test_the_check_catches_a_lower_layer_including_a_higher_one(tmp_path):
    tree = copy_of_sources(tmp_path)
    fold = tree / "state" / "fold.c"
    fold.write_text('#include "server/api.h"\n' + fold.read_text())
    store = tree / "state" / "store.c"
    store.write_text("#include <librdkafka/rdkafka.h>\n" + store.read_text())
    clock = tree / "lib" / "clock.c"
    clock.write_text('#include "../state/codec.h"\n' + clock.read_text())
    r = module_map("--check", root=str(tree))
    assert r.returncode == 1, r.stdout
    lines = r.stdout.splitlines()
    assert any(l.startswith("state/fold.c:") and "server/api.h" in l for l in lines), lines
    assert any(l.startswith("state/store.c:") and "librdkafka" in l for l in lines), lines
    assert any(l.startswith("lib/clock.c:") and '".."' in l for l in lines), lines
    assert len(lines) == 3, lines


def test_docs_carry_the_map_the_code_gives():
    r = module_map()
    assert r.returncode == 0, r.stderr
    with open(os.path.join(ROOT, "docs", "architecture.md"), encoding="utf-8") as f:
        doc = f.read()
    begin = next(l for l in doc.splitlines() if l.startswith("<!-- module map:"))
    copy = doc.split(begin, 1)[1].split("<!-- end of module map -->", 1)[0].strip("\n") + "\n"
    assert copy == r.stdout, ("docs/architecture.md's module map differs from the code; "
                              "refresh it with `python3 tools/module_map.py --write`")
    # every folder of the layout is in the map
    for folder in ("lib/", "state/", "kafka/", "hdfs/", "server/", "tools/", "commands/"):
        assert f"{folder} :" in copy, folder
