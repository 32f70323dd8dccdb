#!/usr/bin/env python3
"""tests/viz/check_viz.py --kiln BUILD/kiln: the pictures of what kiln did.

emit --emit=dot / --emit=svg (the fused kernels as Graphviz clusters): the
Graphviz text is read back by Graphviz itself (`dot -Tjson`) and compared with
`emit --emit=kernels`, an independent print of the same kernel program:
  - one cluster per kernel, labelled with its name and kind, holding a box for
    every graph node the kernel fuses (constants may be folded into their user);
  - every edge between two clusters carries a buffer: its label is that
    buffer's size in bytes and its tooltip names the buffer;
  - every parameter and result is drawn, apart from the kernels;
  - the picture is connected: every kernel is reached from a parameter;
on examples/transformer_block.kiln, a generated ResNet-50-shaped program
(tests/viz/gen_resnet.py) and a -O0 program (a kernel per node).  --emit=svg
is well-formed SVG marked as kiln's, -o replaces only what kiln wrote, and
without Graphviz the error is clear (exit 3).  The REPL's :emit dot draws the
same clusters.

Prints one line per failure and ends with "viz: N passed, N failed".
"""
import argparse
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RESULTS = {}  # check -> failures; a check with none passed
SKIP = 0


def ok(cond, what, check=None):
    """Records one assertion of `check` (default: what itself); prints what failed."""
    fails = RESULTS.setdefault(check or what, [])
    if not cond:
        fails.append(what)
        if len(fails) <= 5:
            print("FAIL:", what)
    return cond


def skip(what):
    global SKIP
    SKIP += 1
    print("skip:", what)


def run(args, **kw):
    return subprocess.run(args, capture_output=True, text=True, **kw)


DTYPE_BYTES = {"f32": 4, "f16": 2, "bf16": 2, "f64": 8, "i32": 4, "i64": 8, "bool": 1}
KINDS = {"elementwise", "reduce", "row", "matmul", "conv", "pool", "copy"}


def fmt_bytes(n):
    """A byte count as codegen/dot.c prints it (binary units)."""
    units = ["B", "KiB", "MiB", "GiB", "TiB"]
    v, u = float(n), 0
    while v >= 1024 and u < 4:
        v /= 1024
        u += 1
    if u == 0 or v == math.floor(v):
        return "%.0f %s" % (v, units[u])
    return ("%.2f %s" if v < 10 else "%.1f %s" if v < 100 else "%.0f %s") % (v, units[u])


def parse_kernels(text):
    """`emit --emit=kernels`: kernels (name, kind, [(node, op)]) and buffers {name: bytes}."""
    kernels, bufs = [], {}
    for line in text.splitlines():
        m = re.match(r"  buffer (\S+): (\w+) (\w+)\[(\d+)\]", line)
        if m:
            bufs[m.group(1)] = (m.group(2), int(m.group(4)) * DTYPE_BYTES[m.group(3)])
        m = re.match(r"  kernel (\S+) \((\w+)\), outer \d+, fuses(.*)", line)
        if m:
            nodes = [(int(a), b) for a, b in re.findall(r"%(\d+):(\w+)", m.group(3))]
            kernels.append((m.group(1), m.group(2), nodes))
    return kernels, bufs


def graphviz_json(dot_text):
    r = run(["dot", "-Tjson"], input=dot_text)
    if r.returncode != 0:
        return None, r.stderr
    return json.loads(r.stdout), ""


def check_picture(kiln, name, args, tmp):
    """emit --emit=dot of one program against its --emit=kernels."""
    r = run([kiln, "emit", "--emit=kernels"] + args)
    if not ok(r.returncode == 0, f"{name}: emit --emit=kernels failed: {r.stderr}"):
        return
    kernels, bufs = parse_kernels(r.stdout)
    r = run([kiln, "emit", "--emit=dot"] + args)
    if not ok(r.returncode == 0 and r.stdout.startswith("digraph "), f"{name}: emit --emit=dot: {r.stderr}"):
        return
    g, err = graphviz_json(r.stdout)
    if not ok(g is not None, f"{name}: Graphviz refuses the dot text: {err}"):
        return
    objs = g.get("objects", [])
    clusters = {o["name"]: o for o in objs if o["name"].startswith("cluster_")}
    nodes = {o["_gvid"]: o for o in objs if "nodes" not in o and "edges" not in o}
    ok(len(clusters) == len(kernels), f"{name}: {len(clusters)} clusters for {len(kernels)} kernels")
    cluster_of = {}
    for i, (kname, kind, fused) in enumerate(kernels):
        c = clusters.get(f"cluster_k{i}")
        if not ok(c is not None, f"{name}: kernel {kname} has no cluster", f"{name}: a cluster per kernel"):
            continue
        label = c.get("label", "").split("\\n")
        ok(label[0] == kname and label[1].split(" ")[0] == kind,
           f"{name}: cluster of {kname} is labelled {label}, not name and kind ({kind})",
           f"{name}: clusters labelled with the kernel's name and kind")
        members = c.get("nodes", [])
        ok(len(members) >= 1, f"{name}: cluster of {kname} is empty", f"{name}: no empty cluster")
        tips = " ".join(nodes[m].get("tooltip", "") for m in members if m in nodes)
        for node, op in fused:
            shown = re.search(rf"%{node} = {op}\b", tips) is not None
            ok(shown or op == "const", f"{name}: {kname}: node %{node} ({op}) is not drawn in its cluster",
               f"{name}: every fused node drawn in its kernel's cluster")
        for m in members:
            cluster_of[m] = i
    # edges: between clusters a buffer (bytes + name); into the clusters from parameters
    temps = {b: v[1] for b, v in bufs.items()}
    crossing = 0
    adj = {}
    for e in g.get("edges", []):
        t, h = e["tail"], e["head"]
        adj.setdefault(t, set()).add(h)
        adj.setdefault(h, set()).add(t)
        if t in cluster_of and h in cluster_of and cluster_of[t] != cluster_of[h]:
            crossing += 1
            buf = e.get("tooltip", "").split(":")[0]
            ok(buf in temps and e.get("label") == fmt_bytes(temps[buf]),
               f"{name}: edge between kernels labelled {e.get('label')!r} (tooltip {e.get('tooltip')!r}) "
               f"is not a buffer's size", f"{name}: edges between kernels labelled with their buffer's bytes")
    ok(len(kernels) < 2 or crossing >= 1, f"{name}: no edge between kernels")
    params = [o for o in nodes.values() if re.fullmatch(r"[pq]\d+", o["name"])]
    results = [o for o in nodes.values() if re.fullmatch(r"r\d+", o["name"])]
    ok(params and all(p.get("fillcolor") == "#dbeafe" for p in params), f"{name}: parameters not drawn apart")
    ok(results and all(p.get("fillcolor") == "#dcfce7" for p in results), f"{name}: results not drawn apart")
    # every kernel can be reached from a parameter
    seen = set(p["_gvid"] for p in params)
    todo = list(seen)
    while todo:
        for n in adj.get(todo.pop(), ()):
            if n not in seen:
                seen.add(n)
                todo.append(n)
    lost = sorted(set(kernels[i][0] for m, i in cluster_of.items() if m not in seen))
    ok(not lost, f"{name}: kernels not connected to the parameters: {lost[:5]}")
    return len(kernels), len(nodes)


def check_svg(kiln, tmp):
    tb = ["examples/transformer_block.kiln", "--dim", "B=2", "--dim", "T=8"]
    out = os.path.join(tmp, "tb.svg")
    r = run([kiln, "emit", "--emit=svg", "-o", out] + tb)
    if not ok(r.returncode == 0, f"emit --emit=svg -o: exit {r.returncode}: {r.stderr}"):
        return
    text = open(out).read()
    ok(text.startswith("<?xml") and "<!-- generated by kiln" in text[:300], "svg: not marked as kiln's")
    try:
        root = ET.fromstring(text)
        ns = "{http://www.w3.org/2000/svg}"
        titles = [t.text for t in root.iter(ns + "title")]
        ok(root.tag == ns + "svg", "svg: the root is not <svg>")
        ok(sum(1 for t in titles if t and t.startswith("cluster_k")) == 11, "svg: 11 kernel clusters expected")
    except ET.ParseError as e:
        ok(False, f"svg is not well-formed XML: {e}")
    r = run([kiln, "emit", "--emit=svg", "-o", out] + tb)
    ok(r.returncode == 0, f"emit --emit=svg -o replaces its own svg: {r.stderr}")
    other = os.path.join(tmp, "mine.svg")
    with open(other, "w") as f:
        f.write('<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg"></svg>\n')
    r = run([kiln, "emit", "--emit=svg", "-o", other] + tb)
    ok(r.returncode == 2 and "refusing" in r.stderr and open(other).read().endswith("</svg>\n"),
       f"emit -o over an svg kiln did not write: exit {r.returncode}, {r.stderr}")
    # without Graphviz: exit 3, saying what is missing; stdout untouched
    env = dict(os.environ, PATH=os.path.join(tmp, "empty-path"))
    r = run([kiln, "emit", "--emit=svg"] + tb, env=env)
    ok(r.returncode == 3 and "graphviz" in r.stderr.lower() and r.stdout == "",
       f"emit --emit=svg without Graphviz: exit {r.returncode}, {r.stderr!r}")
    r = run([kiln, "emit", "--emit=dot"] + tb, env=env)
    ok(r.returncode == 0 and "cluster_k0" in r.stdout, "emit --emit=dot needs no Graphviz")


# ---------------------------------------------------------------- bench --trace

# The Trace Event Format (JSON object form) as chrome://tracing and Perfetto
# read it: what each event kind must carry, and the keys an event may have.
EVENT_KEYS = {"name", "cat", "ph", "ts", "tts", "dur", "tdur", "pid", "tid", "args", "id", "bp", "s", "cname",
              "sf", "stack", "id2", "scope"}
METADATA_NAMES = {"process_name": str, "process_labels": str, "thread_name": str, "process_sort_index": int,
                  "thread_sort_index": int}
PHASES = set("BEXiIbneCMPOND()sftRcv") | {"(", ")"}


def schema_errors(doc):
    """Every way `doc` departs from the trace-event format (empty when it conforms)."""
    errs = []
    if not isinstance(doc, dict) or not isinstance(doc.get("traceEvents"), list):
        return ["the top level is not an object with a traceEvents array"]
    if doc.get("displayTimeUnit", "ms") not in ("ms", "ns"):
        errs.append(f"displayTimeUnit {doc['displayTimeUnit']!r} is neither ms nor ns")
    if not isinstance(doc.get("otherData", {}), dict):
        errs.append("otherData is not an object")
    for i, e in enumerate(doc["traceEvents"]):
        where = f"event {i} {e.get('name')!r}" if isinstance(e, dict) else f"event {i}"
        if not isinstance(e, dict):
            errs.append(f"{where} is not an object")
            continue
        if set(e) - EVENT_KEYS:
            errs.append(f"{where} has keys outside the format: {sorted(set(e) - EVENT_KEYS)}")
        if e.get("ph") not in PHASES:
            errs.append(f"{where}: ph {e.get('ph')!r} is no event type")
        if not isinstance(e.get("name"), str):
            errs.append(f"{where}: name is not a string")
        for k in ("pid", "tid"):
            if not isinstance(e.get(k), int) or isinstance(e.get(k), bool):
                errs.append(f"{where}: {k} is not an integer")
        if "args" in e and not isinstance(e["args"], dict):
            errs.append(f"{where}: args is not an object")
        if "cat" in e and not isinstance(e["cat"], str):
            errs.append(f"{where}: cat is not a string")
        if e.get("ph") == "X":
            for k in ("ts", "dur"):
                v = e.get(k)
                if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0 or v != v:
                    errs.append(f"{where}: {k} is not a non-negative number")
        if e.get("ph") == "M":
            want = METADATA_NAMES.get(e.get("name"))
            key = "sort_index" if want is int else "name"
            if want is None:
                errs.append(f"{where}: unknown metadata event")
            elif not isinstance(e.get("args", {}).get(key), want):
                errs.append(f"{where}: args.{key} is not a {want.__name__}")
    return errs


def check_trace(kiln, device, tmp, runs=3):
    """bench --trace on one device: the format, the compile phases, every launch of every run."""
    name = f"trace {device}"
    path = os.path.join(tmp, f"trace-{device}.json")
    r = run([kiln, "bench", "examples/transformer_block.kiln", "--dim", "B=2", "--dim", "T=8", f"--runs={runs}",
             f"--device={device}", "--json", "--trace", path])
    if not ok(r.returncode == 0, f"{name}: bench --trace failed (exit {r.returncode}): {r.stderr}"):
        return
    bench = json.loads(r.stdout)
    doc = json.load(open(path))
    errs = schema_errors(doc)
    ok(not errs, f"{name}: not the trace-event format: {errs[:5]}", f"{name}: the trace-event format")
    ev = doc["traceEvents"]
    procs = {e["pid"]: e["args"]["name"] for e in ev if e.get("name") == "process_name"}
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in ev if e.get("name") == "thread_name"}
    spans = [e for e in ev if e.get("ph") == "X"]
    ok(all((e["pid"], e["tid"]) in threads and e["pid"] in procs for e in spans),
       f"{name}: a span on a track without a process or thread name")
    ok(doc["otherData"].get("device") == device and doc["otherData"].get("graph") == "block",
       f"{name}: otherData does not name the graph and device: {doc['otherData']}")
    # spans on one track nest or follow each other, never overlap in part
    by_track = {}
    for e in spans:
        by_track.setdefault((e["pid"], e["tid"]), []).append((e["ts"], e["ts"] + e["dur"], e["name"]))
    bad = []
    for track, ss in by_track.items():
        ss.sort(key=lambda x: (x[0], -(x[1] - x[0])))
        stack = []
        for a, b, n in ss:
            while stack and stack[-1][1] <= a + 0.002:
                stack.pop()
            if stack and b > stack[-1][1] + 0.002:
                bad.append(f"{n} overlaps {stack[-1][2]}")
            stack.append((a, b, n))
    ok(not bad, f"{name}: spans overlap in part on a track: {bad[:3]}", f"{name}: spans nest on every track")
    host = [e for e in spans if procs.get(e["pid"]) == "kiln (host)"]
    cats = {e.get("cat") for e in host}
    kernels = [k["name"] for k in bench["kernels"]]
    want_cats = {"parse", "passes", "compile"} | ({"fusion", "codegen"} if kernels else set())
    ok(want_cats <= cats, f"{name}: compile phases missing: {sorted(want_cats - cats)}")
    names = [e["name"] for e in host]
    ok(any(n.startswith("pass ") for n in names), f"{name}: no span per optimisation pass")
    per_kernel = {"cpu": "LLVM IR ", "cuda-emu": "CUDA C ", "cuda": "CUDA C "}.get(device)
    if per_kernel:
        missing = [k for k in kernels if per_kernel + k not in names]
        ok(not missing, f"{name}: no code generation span for {missing[:3]}")
        backend = {"cpu": "LLVM machine code", "cuda-emu": "host C++ compiler", "cuda": "NVRTC"}[device]
        ok(any(n.startswith(backend) for n in names), f"{name}: no {backend} span")
    # the device's timeline: warm-up + runs, each with every kernel in order, inside its run
    dev = [e for e in spans if procs.get(e["pid"]) == f"device {device}"]
    run_spans = sorted([e for e in dev if e.get("cat") == "run"], key=lambda e: e["ts"])
    ok(len(run_spans) == runs + 1 and run_spans[0]["name"] == "warm-up run",
       f"{name}: {len(run_spans)} run spans for {runs} runs and a warm-up")
    launches = sorted([e for e in dev if e.get("cat") == "kernel"], key=lambda e: e["ts"])
    ok(len(launches) == len(kernels) * (runs + 1),
       f"{name}: {len(launches)} kernel launches for {len(kernels)} kernels x {runs + 1} runs")
    for i, rs in enumerate(run_spans):
        inside = [e for e in launches if rs["ts"] - 0.002 <= e["ts"] and e["ts"] + e["dur"] <= rs["ts"] + rs["dur"] + 0.002]
        ok([e["name"] for e in inside] == kernels and all(e["args"]["run"] == i for e in inside),
           f"{name}: run {i} holds {[e['name'] for e in inside][:4]}..., not every kernel in order",
           f"{name}: every run holds every kernel launch in order")
    # the trace agrees with bench's own numbers
    for k in bench["kernels"]:
        mine = sorted(e["dur"] / 1e3 for e in launches if e["name"] == k["name"] and e["args"]["run"] > 0)
        med = (mine[len(mine) // 2] if len(mine) % 2 else (mine[len(mine) // 2 - 1] + mine[len(mine) // 2]) / 2) \
            if mine else -1
        args = next((e["args"] for e in launches if e["name"] == k["name"]), {})
        ok(abs(med - k["ms"]) <= 2e-6 + 1e-6 * k["ms"] and args.get("bytes") == k["bytes"]
           and args.get("flops") == k["flops"],
           f"{name}: {k['name']}: trace median {med} ms, bytes {args.get('bytes')} vs bench {k}",
           f"{name}: kernel durations, bytes and flops agree with bench --json")


def check_trace_misuse(kiln, tmp):
    tb = ["examples/transformer_block.kiln", "--dim", "B=2", "--dim", "T=8", "--runs=1", "--device=ref"]
    other = os.path.join(tmp, "notes.json")
    with open(other, "w") as f:
        f.write('{"mine": true}\n')
    r = run([kiln, "bench", "--trace", other] + tb)
    ok(r.returncode == 2 and "refusing" in r.stderr and open(other).read() == '{"mine": true}\n',
       f"bench --trace over a file kiln did not write: exit {r.returncode} {r.stderr}")
    r = run([kiln, "bench", "--trace", "examples/transformer_block.kiln"] + tb)
    ok(r.returncode == 2 and "input" in r.stderr, f"bench --trace onto its own program: exit {r.returncode} {r.stderr}")
    r = run([kiln, "bench", "--trace", os.path.join(tmp, "no", "such", "dir", "t.json")] + tb)
    ok(r.returncode == 2 and "no folder" in r.stderr, f"bench --trace into a missing folder: {r.stderr}")
    r = run([kiln, "run", "--trace", os.path.join(tmp, "t.json")] + tb[:-2])
    ok(r.returncode == 2 and "bench" in r.stderr, f"run --trace is a usage error: {r.stderr}")
    path = os.path.join(tmp, "again.json")
    r1 = run([kiln, "bench", "--trace", path] + tb)
    r2 = run([kiln, "bench", "--trace", path] + tb)
    ok(r1.returncode == 0 and r2.returncode == 0, f"bench --trace replaces its own trace: {r2.stderr}")


def check_symbolic(kiln):
    r = run([kiln, "emit", "--emit=dot", "examples/transformer_block.kiln"])
    ok(r.returncode == 0 and "cluster" not in r.stdout and "--dim B=SIZE" in r.stdout,
       f"emit --emit=dot with unbound dims: graph nodes, saying which --dim shows the kernels ({r.stderr})")


def check_repl(kiln, tmp):
    script = "x = ones([4, 8])\nw = ones([8, 8])\n:emit dot relu(x @ w + 1.0)\n"
    r = run([kiln, "repl", "--device=ref"], input=script, cwd=tmp)
    ok(r.returncode == 0 and "subgraph cluster_k0" in r.stdout and "matmul" in r.stdout,
       f"REPL :emit dot draws the kernels as clusters: {r.stdout[:200]} {r.stderr}")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", required=True)
    a = ap.parse_args()
    kiln = os.path.abspath(a.kiln)
    os.chdir(ROOT)
    with tempfile.TemporaryDirectory() as tmp:
        if shutil.which("dot"):
            check_picture(kiln, "transformer_block", ["examples/transformer_block.kiln", "--dim", "B=2",
                                                     "--dim", "T=8"], tmp)
            check_picture(kiln, "transformer_block -O0", ["examples/transformer_block.kiln", "--dim", "B=2",
                                                         "--dim", "T=8", "-O0"], tmp)
            resnet = os.path.join(tmp, "resnet50.kiln")
            subprocess.run([sys.executable, os.path.join(HERE, "gen_resnet.py"), resnet, "--width", "8",
                            "--size", "64"], check=True)
            nk = check_picture(kiln, "resnet50", [resnet, "--dim", "N=1"], tmp)
            ok(nk and nk[0] >= 53, f"resnet50: at least 53 kernels expected, got {nk}")
            check_svg(kiln, tmp)
        else:
            skip("Graphviz's dot is not installed (tools/install-deps.sh installs it): pictures not checked")
        check_symbolic(kiln)
        check_repl(kiln, tmp)
        for device in ("cpu", "cuda-emu", "kir", "ref"):
            check_trace(kiln, device, tmp)
        check_trace_misuse(kiln, tmp)
    failed = sum(1 for f in RESULTS.values() if f)
    print(f"viz: {len(RESULTS) - failed} passed, {failed} failed" + (f", {SKIP} skipped" if SKIP else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
