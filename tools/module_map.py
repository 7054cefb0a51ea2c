#!/usr/bin/env python3
"""The module map of lootlog, read from the code: every C module (a .c/.h pair) and the
project headers each one includes. It prints the map that docs/architecture.md carries
(a Mermaid diagram of the folders and the modules in them, and a table of who includes
whom), and checks the layering rules below.

  python3 tools/module_map.py            print the map (Markdown)
  python3 tools/module_map.py --check    exit 1, naming each include that breaks a rule
  python3 tools/module_map.py --write    rewrite the map in docs/architecture.md
  (--root DIR: another copy of the tree)

tests/test_layers.py runs --check and compares the copy in docs/architecture.md."""
import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOC = os.path.join(ROOT, "docs", "architecture.md")
BEGIN = "<!-- module map: written by tools/module_map.py --write; tests/test_layers.py fails when it differs -->"
END = "<!-- end of module map -->"

# The layers, lowest first, and what each folder may include (besides itself). A folder
# never reaches one above it.
LAYERS = {
    "lib": [],
    "state": ["lib"],
    "kafka": ["lib", "state"],
    "hdfs": ["lib", "state"],
    "server": ["lib", "state", "kafka", "hdfs"],
    "tools": ["lib", "state", "kafka"],
    "commands": ["lib", "state", "kafka", "hdfs", "server", "tools"],
    ".": ["commands", "lib"],  # main.c: the table of verbs
}
ABOUT = {
    "lib": "utilities with no knowledge of lootlog: log, clock, histograms, wake-ups",
    "state": "the domain and its store: events, catalog, fold rules, SQLite stores",
    "kafka": "the Kafka side: producer, fold engine, replay, consumer group, topic admin",
    "hdfs": "the HDFS side: WebHDFS client, Avro files, snapshots and restore",
    "server": "the HTTP application: routes, validation, metrics, status page, forwarding",
    "tools": "tools beside the service: the traffic generator",
    "commands": "one file per verb of the CLI, and the option table",
    ".": "main.c: dispatches a verb to its command",
}
# System headers that say a module talks to Kafka or HDFS: the domain may not.
FOREIGN = {"state": ["librdkafka/", "curl/", "avro.h", "event2/"],
           "lib": ["librdkafka/", "curl/", "avro.h", "sqlite3.h", "jansson.h"]}

INCLUDE = re.compile(r'^\s*#\s*include\s+([<"])([^>"]+)[>"]', re.M)


def sources():
    """{module path without extension: [file paths]} for every folder of LAYERS."""
    found = {}
    for folder in LAYERS:
        base = os.path.join(ROOT, folder)
        names = sorted(os.listdir(base)) if folder != "." else ["main.c"]
        for name in names:
            if not name.endswith((".c", ".h")) or name.endswith(".in"):
                continue
            rel = os.path.normpath(os.path.join(folder, name))
            found.setdefault(rel.rsplit(".", 1)[0], []).append(rel)
    return found


def folder_of(path):
    return os.path.dirname(path) or "."


def includes(rel):
    """[(kind, target)]: kind '"' for a project header (as written), '<' for a system one."""
    with open(os.path.join(ROOT, rel), encoding="utf-8") as f:
        return INCLUDE.findall(f.read())


def graph():
    """({module: set of modules it includes}, [broken rule sentences])."""
    mods = sources()
    known = {m for m in mods}
    edges, problems = {}, []
    for mod, files in sorted(mods.items()):
        here = folder_of(mod)
        edges[mod] = set()
        for rel in files:
            for kind, target in includes(rel):
                if kind == "<":
                    for bad in FOREIGN.get(here, []):
                        if target.startswith(bad):
                            problems.append(f"{rel}: includes <{target}>: {here}/ may not "
                                            f"talk to {bad.rstrip('/.h')}")
                    continue
                if "/" not in target and target.rsplit(".", 1)[0] != os.path.basename(mod) \
                        and not target.endswith(".h.in"):
                    target_path = os.path.normpath(os.path.join(here, target))
                    if target_path.rsplit(".", 1)[0] in known and here != ".":
                        problems.append(f'{rel}: #include "{target}": spell project headers '
                                        f'from the root ("{target_path}")')
                    continue
                if target.startswith(".."):
                    problems.append(f'{rel}: #include "{target}": no ".." in includes')
                    continue
                dep = target.rsplit(".", 1)[0]
                if dep not in known:
                    if not os.path.exists(os.path.join(ROOT, target)):
                        continue  # generated (git_commit.h) or a system-like header
                if dep == mod:
                    continue
                there = folder_of(dep)
                if there != here and there not in LAYERS[here]:
                    problems.append(f'{rel}: #include "{target}": {here}/ may include only '
                                    f'{", ".join(x + "/" for x in LAYERS[here]) or "itself"}')
                edges[mod].add(dep)
    return edges, problems


def render(edges):
    folders = [f for f in LAYERS if any(folder_of(m) == f for m in edges)]
    out = ["```mermaid", "flowchart TD"]
    ids = {}
    for f in folders:
        fid = "root" if f == "." else f
        out.append(f'  subgraph {fid}["{f}/ : {ABOUT[f]}"]' if f != "." else
                   f'  subgraph {fid}["{ABOUT[f]}"]')
        for m in sorted(m for m in edges if folder_of(m) == f):
            ids[m] = m.replace("/", "_").replace(".", "_")
            out.append(f'    {ids[m]}["{os.path.basename(m)}"]')
        out.append("  end")
    folder_edges = sorted({(folder_of(a), folder_of(b)) for a, deps in edges.items()
                           for b in deps if folder_of(a) != folder_of(b)},
                          key=lambda e: (list(LAYERS).index(e[0]), list(LAYERS).index(e[1])))
    for a, b in folder_edges:
        out.append(f"  {'root' if a == '.' else a} --> {'root' if b == '.' else b}")
    out.append("```")
    out += ["", "| module | includes (project headers) |", "|---|---|"]
    for m in sorted(edges, key=lambda m: (list(LAYERS).index(folder_of(m)), m)):
        deps = ", ".join(f"`{d}`" for d in sorted(edges[m])) or "—"
        out.append(f"| `{m}` | {deps} |")
    return "\n".join(out) + "\n"


def doc_copy(text):
    if BEGIN not in text or END not in text:
        return None
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip("\n") + "\n"


def main(argv):
    global ROOT, DOC
    if "--root" in argv:  # a copy of the tree (tests/test_layers.py)
        ROOT = os.path.abspath(argv[argv.index("--root") + 1])
        DOC = os.path.join(ROOT, "docs", "architecture.md")
    edges, problems = graph()
    if "--check" in argv:
        for p in problems:
            print(p)
        return 1 if problems else 0
    text = render(edges)
    if "--write" in argv:
        with open(DOC, encoding="utf-8") as f:
            doc = f.read()
        if doc_copy(doc) is None:
            print(f"{DOC} has no module map markers", file=sys.stderr)
            return 1
        head, rest = doc.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        with open(DOC, "w", encoding="utf-8") as f:
            f.write(head + BEGIN + "\n" + text + END + tail)
        print(f"rewrote the module map of {DOC}")
        return 0
    sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
