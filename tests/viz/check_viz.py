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
(tests/viz/gen_resnet.py) and a -O0 program (a kernel per node); weights
(--weights, ONNX initializers) are drawn apart from the inputs.  The same
ResNet-50 as an ONNX model (as PyTorch exports it) gets its picture, a trace
and a report once this kiln lowers ONNX graphs (skipped, saying so, before).
--emit=svg is well-formed SVG marked as kiln's, -o replaces only what kiln
wrote, and without Graphviz the error is clear (exit 3).  The REPL's :emit dot
draws the same clusters.

bench --trace: every trace is checked against the trace-event format (as
Perfetto and chrome://tracing read it) and against bench --json: compile
phases, a code-generation span per kernel, every launch of every run in order
on the device's track; on cpu, cuda-emu, kir, ref and on cuda through the
checking stand-in driver (a cold, then a warm kernel cache); misuse of the
output file.  bench --report / REPL :report: the page is self-contained, has
every section, its table is bench's, the roofline places every kernel that
computes by its numbers, the timelines and the graph are there (or the page
says why not); rendered in headless Chromium where installed (make test-long
installs it and then requires it).

Prints one line per failure and ends with "viz: N passed, N failed".
"""
import argparse
import html.parser
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


def weight_box(o):
    """Whether a parameter box of the picture is drawn as weights (constant parameters)."""
    return "dashed" in o.get("style", "")


def check_picture(kiln, name, args, tmp, weights=None):
    """emit --emit=dot of one program against its --emit=kernels; `weights`: the names
    of the parameters bound as constants (weights files, initializers)."""
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
    # each box's tooltip quotes the source line of its nodes (a kiln statement; an ONNX node)
    quoted = 0
    source = open(args[0], encoding="utf-8").read().splitlines() if args[0].endswith(".kiln") else None
    for o in nodes.values():
        for entry in o.get("tooltip", "").replace("\\n", "\n").split("\n"):
            m = re.search(r"\(line (\d+): (.*)\)$", entry)
            if not m:
                continue
            quoted += 1
            if source is not None:
                want = source[int(m.group(1)) - 1].strip()
                ok(m.group(2) == want or (m.group(2).endswith(" …") and want.startswith(m.group(2)[:-2])),
                   f"{name}: tooltip quotes line {m.group(1)} as {m.group(2)!r}, the file has {want!r}",
                   f"{name}: tooltips quote the source lines")
    ok(quoted > 0, f"{name}: no tooltip quotes a source line")
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
    params = [o for o in nodes.values() if re.fullmatch(r"[pqw]\d+", o["name"])]
    results = [o for o in nodes.values() if re.fullmatch(r"r\d+", o["name"])]
    ok(params and all(p.get("fillcolor") == ("#eef2f7" if weight_box(p) else "#dbeafe") for p in params),
       f"{name}: parameters not drawn apart")
    if weights is not None:  # names of the constant parameters: drawn as weights, never with an input
        for p in params:
            names = [ln.split()[0] for ln in p.get("label", "").replace("\\l", "\n").replace("\\n", "\n").split("\n")
                     if ln.strip()]
            if re.fullmatch(r"p\d+", p["name"]):
                names = names[:1]
            ok(all((n in weights) == weight_box(p) for n in names),
               f"{name}: box {p['name']} holds {names}: weights and inputs mixed or mislabelled",
               f"{name}: weights drawn apart from the inputs")
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


def check_long_line(kiln, tmp):
    """A source line longer than a tooltip quotes (with multi-byte characters where it is
    cut): the quote ends between characters, and Graphviz's SVG of it is well-formed."""
    path = os.path.join(tmp, "long.kiln")
    with open(path, "w", encoding="utf-8") as f:  # the 200-byte cut falls inside an é (2 bytes)
        f.write(f"graph long(x: f32[4]) -> f32[4] {{\n    return relu(x * 0.25)  # {'é' * 150}\n}}\n")
    r = run([kiln, "emit", "--emit=svg", path])
    try:
        root = ET.fromstring(r.stdout.encode("utf-8"))
        tips = [a.get("{http://www.w3.org/1999/xlink}title", "") for a in root.iter()]
        ok(r.returncode == 0 and any(re.search(r"\(line 2: return relu\(x \* 0\.25\)\s+# (é){87}\s…\)$", t, re.M)
                                     for t in tips),
           f"long line: the tooltip does not quote its start, cut between characters: {r.stderr} "
           f"{[t for t in tips if 'line 2' in t][:1]}")
    except ET.ParseError as e:
        ok(False, f"long line: the SVG is not well-formed: {e} {r.stderr}")


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


TB = ["examples/transformer_block.kiln", "--dim", "B=2", "--dim", "T=8"]


def check_trace(kiln, device, tmp, runs=3, prog=TB, graph="block", label="", report=None, env=None):
    """bench --trace on one device: the format, the compile phases, every launch of every run
    (and, with `report`, the page bench --report wrote in the same run)."""
    name = f"trace {label}{device}"
    path = os.path.join(tmp, f"trace-{label.strip()}{device}.json")
    also = ["--report", report] if report else []
    r = run([kiln, "bench"] + prog + [f"--runs={runs}", f"--device={device}", "--json", "--trace", path] + also,
            env=env)
    if not ok(r.returncode == 0, f"{name}: bench --trace failed (exit {r.returncode}): {r.stderr}"):
        return
    bench = json.loads(r.stdout)
    if report:
        check_page_content(f"report {label}{device}", report, bench)
    doc = json.load(open(path))
    errs = schema_errors(doc)
    ok(not errs, f"{name}: not the trace-event format: {errs[:5]}", f"{name}: the trace-event format")
    ev = doc["traceEvents"]
    procs = {e["pid"]: e["args"]["name"] for e in ev if e.get("name") == "process_name"}
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in ev if e.get("name") == "thread_name"}
    spans = [e for e in ev if e.get("ph") == "X"]
    ok(all((e["pid"], e["tid"]) in threads and e["pid"] in procs for e in spans),
       f"{name}: a span on a track without a process or thread name")
    ok(doc["otherData"].get("device") == device and doc["otherData"].get("graph") == graph,
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
    # cpu: a span per kernel saying how its code came (compiled, from the cache of
    # compiled code, shared with an identical kernel: runtime/cpu_code.c)
    per_kernel = {"cpu": "code of ", "cuda-emu": "CUDA C ", "cuda": "CUDA C "}.get(device)
    if per_kernel:
        missing = [k for k in kernels if not any(n == per_kernel + k or n.startswith(per_kernel + k + ":")
                                                 for n in names)]
        ok(not missing, f"{name}: no code generation span for {missing[:3]}")
        backend = {"cpu": ("LLVM machine code", "cache load"), "cuda-emu": ("host C++ compiler",),
                   "cuda": ("NVRTC", "kernel cache: PTX found")}[device]
        ok(any(n.startswith(backend) for n in names), f"{name}: no {' or '.join(backend)} span")
        if device == "cuda":
            ok(any(n.startswith("cuModuleLoad") for n in names), f"{name}: no span loading the module")
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
    if device == "cpu":
        # every launch's chunks (runtime/cpu.c trace_chunk): spans on the pool threads' tracks
        # inside the launch, whose ranges follow each other from 0 (the split loses and
        # repeats nothing)
        pool = {k for k, v in threads.items() if procs.get(k[0]) == "device cpu" and v.startswith("pool thread")}
        chunks = [e for e in dev if e.get("cat") == "chunk"]
        ok(chunks and all((e["pid"], e["tid"]) in pool for e in chunks),
           f"{name}: no chunk spans, or some off the pool threads' tracks")
        bad = []
        for e in launches:
            mine = [c for c in chunks if c["name"] == e["name"] and e["ts"] - 0.002 <= c["ts"]
                    and c["ts"] + c["dur"] <= e["ts"] + e["dur"] + 0.002]
            ranges = sorted(next(v for k, v in c["args"].items() if k != "thread") for c in mine)
            if not ranges or ranges[0][0] != 0 or any(p[1] != q[0] for p, q in zip(ranges, ranges[1:])):
                bad.append(f"{e['name']} (run {e['args']['run']}): {ranges[:6]}")
        ok(not bad, f"{name}: launches whose chunks do not cover a range from 0: {bad[:3]}",
           f"{name}: every launch holds its chunks, one after another from 0")
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


def check_trace_cuda(kiln, tmp):
    """bench --trace on the cuda device, run by the checking stand-in driver (tests/standin):
    NVRTC (or the kernel cache) and the module load among the compile phases, the launches
    on the device's track -- the stand-in's report must stay empty (no misuse of the driver)."""
    standin = os.path.join(os.path.dirname(kiln), "standin", "libcuda.so.1")
    problem = run([kiln, "env", "KILN_NVRTC_PROBLEM"]).stdout.strip()
    if not os.path.exists(standin) or problem:
        skip(f"no stand-in driver or no NVRTC ({problem or standin}): bench --trace on cuda not checked")
        return
    report = os.path.join(tmp, "standin-report")
    env = dict(os.environ, KILN_LIBCUDA=standin, KILN_STANDIN=f"report={report}")
    env["KILN_CACHE"] = os.path.join(tmp, "kcache")  # a fresh kernel cache: NVRTC runs, then is not needed
    for cache, span in (("cold", "NVRTC: CUDA C to PTX"), ("warm", "kernel cache: PTX found")):
        check_trace(kiln, "cuda", tmp, env=env, label=f"{cache} ")
        try:
            names = [e["name"] for e in json.load(open(os.path.join(tmp, f"trace-{cache}cuda.json")))["traceEvents"]]
        except (OSError, ValueError):
            names = []
        ok(any(n.startswith(span) for n in names), f"trace cuda, {cache} kernel cache: no span '{span}'")
    ok(not os.path.exists(report) or os.path.getsize(report) == 0,
       f"trace cuda: the stand-in driver reports misuse: {open(report).read()[:300] if os.path.exists(report) else ''}")


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


# ---------------------------------------------------------------- bench --report

class PageParser(html.parser.HTMLParser):
    """Collects what the report checks need: tags, external references, headings, table rows, SVGs."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags, self.refs, self.h2 = [], [], []
        self.rows, self._row, self._cell, self._in = [], None, None, []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self._in.append(tag)
        for k, v in attrs:
            if k in ("src", "href", "xlink:href", "action", "srcset", "poster", "data") and v \
                    and not v.startswith("#"):
                self.refs.append(f"<{tag} {k}={v}>")
        if tag == "tr":
            self._row = []
        if tag in ("td", "th"):
            self._cell = ""

    def handle_endtag(self, tag):
        if self._in and self._in[-1] == tag:
            self._in.pop()
        if tag in ("td", "th") and self._row is not None:
            self._row.append(self._cell.strip())
            self._cell = None
        if tag == "tr" and self._row is not None:
            self.rows.append(self._row)
            self._row = None

    def handle_data(self, data):
        if self._cell is not None:
            self._cell += data
        if self._in and self._in[-1] == "h2":
            self.h2.append(data.strip())


def svg_blocks(page):
    """Every inline <svg ...>...</svg>, parsed as XML (SVG inside HTML must still be well-formed here)."""
    out = []
    for m in re.finditer(r"<svg\b.*?</svg>", page, re.S):
        out.append(ET.fromstring(m.group(0)))
    return out


def local(tag):
    return tag.split("}")[-1]


def check_report(kiln, tmp):
    name = "report"
    path = os.path.join(tmp, "report.html")
    tb = TB + ["--runs=3", "--device=cpu"]
    if not check_page(kiln, name, path, tb):
        return
    check_render(path, tmp, required=bool(os.environ.get("KILN_LONG")))
    # replacing: its own page yes (here by the REPL's :report, which writes the same page), another file no
    # (and without Graphviz on PATH: the page says the graph is not drawn, and why)
    script = f"x = randn([64, 64])\n:report {path} softmax(x @ x)\n:report {path} nosuch(x)\n"
    r = run([kiln, "repl", "--device=cpu"], input=script, cwd=tmp,
            env=dict(os.environ, PATH=os.path.join(tmp, "empty-path")))
    again = open(path).read()
    ok("<h2>Roofline</h2>" in again and "softmax(x @ x)" in again and f"wrote {path}" in r.stdout
       and r.returncode == 1 and "nosuch" in r.stderr,
       f"REPL :report replaces bench's page with its own (and a bad expression is an error): {r.stdout} {r.stderr}")
    ok(re.search(r"The graph is not drawn: [^<]*Graphviz", again) is not None and "<svg" in again,
       "report without Graphviz: the page says why the graph is missing and shows the rest")
    other = os.path.join(tmp, "index.html")
    with open(other, "w") as f:
        f.write("<!DOCTYPE html><p>mine</p>\n")
    r = run([kiln, "bench", "--report", other] + tb)
    ok(r.returncode == 2 and "refusing" in r.stderr and "mine" in open(other).read(),
       f"{name}: bench --report over a page kiln did not write: exit {r.returncode} {r.stderr}")
    r = run([kiln, "bench", "--report", path, "--trace", path] + tb)
    ok(r.returncode == 2, f"{name}: --trace and --report naming one file is a usage error: {r.stderr}")
    r = run([kiln, "run", "--report", path] + tb[:-2])
    ok(r.returncode == 2 and "bench" in r.stderr, f"run --report is a usage error: {r.stderr}")


def check_page(kiln, name, path, args):
    """bench --report's page for `args` against bench --json of the same run."""
    r = run([kiln, "bench", "--json", "--report", path] + args)
    if not ok(r.returncode == 0, f"{name}: bench --report failed (exit {r.returncode}): {r.stderr}"):
        return False
    return check_page_content(name, path, json.loads(r.stdout))


def check_page_content(name, path, bench):
    """The report page at `path` against `bench`, bench --json of the run it shows."""
    page = open(path, encoding="utf-8").read()
    ok(page.startswith("<!DOCTYPE html>\n<!-- generated by kiln"), f"{name}: not marked as kiln's page")
    p = PageParser()
    p.feed(page)
    # self-contained: no script, no stylesheet link, nothing fetched
    ok("script" not in p.tags and "link" not in p.tags and "iframe" not in p.tags and not p.refs
       and "@import" not in page and "url(" not in page,
       f"{name}: the page refers outside itself: {p.refs[:3]} {sorted(set(p.tags) & {'script', 'link', 'iframe'})}")
    for h in ("Summary", "This machine, measured by kiln for this report", "Roofline", "Kernels", "Timeline",
              "Fused kernels"):
        ok(h in p.h2, f"{name}: no section '{h}' (sections: {p.h2})", f"{name}: every section is there")
    # the machine's limits: stated with how they were measured
    limits = {row[0]: row for row in p.rows if row and row[0] in ("memory bandwidth", "peak arithmetic")}
    bw = re.match(r"([0-9.e+]+) GB/s", limits.get("memory bandwidth", ["", ""])[1])
    peak = re.match(r"([0-9.e+]+) GFLOP/s", limits.get("peak arithmetic", ["", ""])[1])
    ok(bw and float(bw.group(1)) > 0 and "f32" in limits["memory bandwidth"][2],
       f"{name}: the bandwidth is not stated with how it was measured: {limits.get('memory bandwidth')}")
    ok(peak and float(peak.group(1)) > 0 and "matmul" in limits["peak arithmetic"][2],
       f"{name}: the peak is not stated with how it was measured: {limits.get('peak arithmetic')}")
    # the kernel table: bench's kernels, in order, with bench's medians
    krows = [row for row in p.rows if len(row) == 12 and row[0].isdigit()]
    ok([row[1] for row in krows] == [k["name"] for k in bench["kernels"]],
       f"{name}: the table's kernels {[row[1] for row in krows][:3]}... are not bench's")
    for row, k in zip(krows, bench["kernels"]):
        # bench --json and the page each round the median to a few significant digits: 0.5% apart at most
        ok(abs(float(row[3]) - k["ms"]) <= 5e-3 * k["ms"] + 1e-9, f"{name}: {k['name']}: table {row[3]} ms, bench {k['ms']}",
           f"{name}: the table's times are bench's medians")
    # the SVGs are well-formed; the roofline places every kernel that computes
    try:
        svgs = svg_blocks(page)
    except ET.ParseError as e:
        ok(False, f"{name}: an inline SVG is not well-formed: {e}")
        return False
    roof = [s for s in svgs if s.get("class") == "roofline"]
    if ok(len(roof) == 1, f"{name}: {len(roof)} roofline charts"):
        dots = {}
        for g in roof[0].iter():
            if local(g.tag) != "g":
                continue
            title = next((c.text for c in g if local(c.tag) == "title"), None)
            circle = next((c for c in g if local(c.tag) == "circle"), None)
            if title and circle is not None:
                dots[title.split(":")[0]] = (float(circle.get("cx")), float(circle.get("cy")))
        placed = [k for k in bench["kernels"] if k["flops"] > 0 and k["ms"] > 0]
        ok(sorted(dots) == sorted(k["name"] for k in placed), f"{name}: the chart's dots {sorted(dots)[:3]} are not "
           f"the kernels that compute")
        ok(any(local(e.tag) == "polyline" for e in roof[0].iter()), f"{name}: the roofline has no roof")
        # placement follows the numbers: more FLOP/byte further right, more GFLOP/s higher up
        pairs = [(a, b) for a in placed for b in placed if a["name"] in dots and b["name"] in dots]
        ai = lambda k: k["flops"] / k["bytes"]
        gf = lambda k: k["flops"] / k["ms"]
        ok(all(dots[a["name"]][0] < dots[b["name"]][0] + 0.2 for a, b in pairs if ai(a) < ai(b) * 0.999),
           f"{name}: dots are not ordered by arithmetic intensity")
        ok(all(dots[a["name"]][1] > dots[b["name"]][1] - 0.2 for a, b in pairs if gf(a) < gf(b) * 0.999),
           f"{name}: dots are not ordered by GFLOP/s")
    timelines = [s for s in svgs if s.get("class") == "timeline"]
    ok(len(timelines) == 2, f"{name}: {len(timelines)} timelines (the compilation and one run expected)")
    if timelines:
        bars = [g for g in timelines[-1].iter() if local(g.tag) == "rect"]
        ok(len(bars) == len(bench["kernels"]), f"{name}: the run's timeline has {len(bars)} launches for "
           f"{len(bench['kernels'])} kernels")
    if shutil.which("dot"):
        clusters = [t.text for s in svgs for t in s.iter() if local(t.tag) == "title" and t.text
                    and t.text.startswith("cluster_k")]
        ok(len(clusters) == len(bench["kernels"]), f"{name}: the graph has {len(clusters)} kernel clusters")
        labels = " ".join(t.text or "" for s in svgs for t in s.iter() if local(t.tag) == "text")
        ok(re.search(r"\b(%s) · [0-9.]+ (us|ms)" % "|".join(KINDS), labels) is not None,
           f"{name}: the graph's clusters show no time")
    return True


def check_render(path, tmp, required):
    """The page in headless Chromium: it loads without errors and draws something."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if not browser:
        if required:
            ok(False, "headless Chromium is not installed (make test-long installs it)")
        else:
            skip("Chromium is not installed: the report is not rendered (make test-long installs it)")
        return
    png = os.path.join(tmp, "report.png")
    profile = os.path.join(tmp, "chromium-profile")
    r = run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
             "--user-data-dir=" + profile, "--enable-logging=stderr", "--v=0", "--window-size=1200,2400",
             "--screenshot=" + png, "file://" + path], timeout=120)
    errors = [l for l in r.stderr.splitlines() if "CONSOLE" in l or "Failed to load" in l
              or "net::ERR" in l]
    ok(r.returncode == 0 and os.path.exists(png), f"Chromium did not render the report: {r.stderr[-500:]}")
    ok(not errors, f"Chromium reported errors loading the report: {errors[:3]}")
    if os.path.exists(png):
        import struct, zlib
        data = open(png, "rb").read()
        w, h = struct.unpack(">II", data[16:24])
        # decode the first rows to see that the page is not blank
        idat = b"".join(data[i + 8:i + 8 + struct.unpack(">I", data[i:i + 4])[0]]
                        for i in [m.start() - 4 for m in re.finditer(b"IDAT", data)])
        raw = zlib.decompress(idat)
        ok(w == 1200 and h == 2400 and len(set(raw[: min(len(raw), 1200 * 4 * 400)])) > 8,
           f"Chromium's screenshot of the report is {w}x{h} and looks blank")


def write_safetensors(path, tensors):
    """A .safetensors file of f32 arrays (header: JSON of dtype, shape, offsets)."""
    import numpy as np
    header, blobs, at = {}, [], 0
    for k, a in tensors.items():
        b = np.ascontiguousarray(a, dtype=np.float32).tobytes()
        header[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(len(h).to_bytes(8, "little") + h + b"".join(blobs))


def check_weights(kiln, tmp):
    """Weights (parameters bound from --weights) are drawn apart from the inputs, in emit and in the report."""
    import numpy as np
    rng = np.random.default_rng(16)
    path = os.path.join(tmp, "mlp.safetensors")
    write_safetensors(path, {"w1": rng.standard_normal((784, 256)), "b1": rng.standard_normal(256),
                             "w2": rng.standard_normal((256, 10))})
    args = ["examples/mlp.kiln", "--weights", path]
    check_picture(kiln, "mlp --weights", args + ["--dim", "B=2"], tmp, weights={"w1", "b1", "w2"})
    # the weights bind nothing symbolic here: B stays unbound, and emit says so
    r = run([kiln, "emit", "--emit=dot"] + args)
    ok(r.returncode == 0 and "--dim B=SIZE" in r.stdout, f"emit --weights without --dim B: {r.stderr}")
    bad = os.path.join(tmp, "bad.safetensors")
    write_safetensors(bad, {"w1": rng.standard_normal((10, 256))})
    r = run([kiln, "emit", "--emit=dot", "examples/mlp.kiln", "--weights", bad, "--dim", "B=2"])
    ok(r.returncode != 0 and "w1" in r.stderr and r.stdout == "",
       f"emit --emit=dot with a weight of the wrong shape is an error naming it: exit {r.returncode} {r.stderr}")


def onnx_supported(kiln, model):
    """Whether this build of kiln lowers ONNX graphs (the importer, issue 9)."""
    r = run([kiln, "check", model])
    if r.returncode != 0 and "cannot yet lower" in r.stderr:
        skip("this kiln reads ONNX files but does not lower them yet: the ONNX ResNet-50 is not drawn")
        return False
    return ok(r.returncode == 0, f"kiln check of the generated ONNX ResNet-50: {r.stderr}")


def check_onnx(kiln, tmp):
    """A ResNet-50-shaped ONNX model (as PyTorch exports torchvision's): the picture with its
    initializers drawn as weights, a trace, a report."""
    model = os.path.join(tmp, "resnet50.onnx")
    r = run([sys.executable, os.path.join(HERE, "gen_resnet.py"), model, "--width", "8", "--size", "64"])
    if not ok(r.returncode == 0, f"gen_resnet.py could not write the ONNX model (python3-onnx): {r.stderr[-300:]}"):
        return
    if not onnx_supported(kiln, model):
        return
    import onnx
    weights = {t.name for t in onnx.load(model).graph.initializer}
    args = [model, "--dim", "N=1"]
    if shutil.which("dot"):
        nk = check_picture(kiln, "resnet50.onnx", args, tmp, weights=weights)
        ok(nk and nk[0] >= 53, f"resnet50.onnx: at least 53 kernels expected, got {nk}")
    check_trace(kiln, "cpu", tmp, runs=2, prog=args, graph="torch_jit", label="resnet50.onnx ",
                report=os.path.join(tmp, "resnet50.html"))


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
            check_long_line(kiln, tmp)
        else:
            skip("Graphviz's dot is not installed (tools/install-deps.sh installs it): pictures not checked")
        check_symbolic(kiln)
        check_repl(kiln, tmp)
        for device in ("cpu", "cuda-emu", "kir", "ref"):
            check_trace(kiln, device, tmp)
        check_trace_cuda(kiln, tmp)
        check_trace_misuse(kiln, tmp)
        check_report(kiln, tmp)
        check_weights(kiln, tmp)
        check_onnx(kiln, tmp)
    failed = sum(1 for f in RESULTS.values() if f)
    print(f"viz: {len(RESULTS) - failed} passed, {failed} failed" + (f", {SKIP} skipped" if SKIP else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
