#!/usr/bin/env python3
"""Where a model's time goes against onnxruntime, layer by layer: kiln's per-kernel times
(`kiln bench --json`) beside onnxruntime's per-node times (SessionOptions.enable_profiling,
its `*_kernel_time` events), on the same model, batch and thread count.

    bench/layers.sh [--models resnet18,resnet50,mobilenetv2] [--batches 1,8] [--threads 2] [--rounds 5]

The models are bench/models.py's (the same seeded weights); the ONNX file here names its
nodes (`conv7`: the 8th convolution in graph order, the order kiln numbers its kernels in,
so kernel and node pair up).  kiln: `rounds` processes of `bench --json --runs=R`, a
kernel's time the median over the rounds.  onnxruntime: one session, warmed up, then
R * rounds profiled runs, a node's time the median of its runs; nodes onnxruntime adds
(NCHWc reorders) and fuses (a Conv's Add and Relu) count with the convolution whose name
they carry, other nodes as "other".  The rounds alternate kiln and onnxruntime.
Prints, per model and batch, one row per convolution (layer, kiln kernel, both times,
onnxruntime / kiln, kiln's loss in ms) then the losses summed by kind of layer, largest
first; every figure goes to build/bench-layers.json.  onnxruntime's times here carry its
profiler's own cost (ResNet-18 batch 1 on one thread: 26.3 against 23.3 ms unprofiled,
session 9): compare whole runs, or one thread against two, with bench/models.sh and
bench/scaling.sh.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import models  # noqa: E402

OUT = models.ROOT / "build" / "bench-layers"


def named_model(net, result):
    """The ONNX model with every node named (convN for the Nth Conv, convN_add/_relu for
    what follows it, opI otherwise) and {node or output name: N} for the convolutions'
    nodes: onnxruntime's NCHWc nodes are named after their output (`v10_0_nchwc`)."""
    m = net.onnx_model(result)
    conv, owners, prev = -1, {}, None
    for i, node in enumerate(m.graph.node):
        if node.op_type == "Conv":
            conv += 1
            node.name = f"conv{conv}"
        elif node.op_type in ("Add", "Relu", "Clip") and prev is not None and owners.get(prev.name) == conv \
                and node.input[0] == prev.output[0]:
            node.name = f"conv{conv}_{node.op_type.lower()}"
        else:
            node.name = f"{node.op_type.lower()}{i}"
        if node.name.startswith("conv"):
            owners[node.name] = conv
            for o in node.output:
                owners[o] = conv
        prev = node
    return m, owners


def kind(desc, hin):
    """A convolution's kind for the summary: window, stride and input size; depthwise
    and grouped layers marked `dw`, 1x1 layers that reduce their channels `proj`
    (MobileNetV2's projections, ResNet's reductions)."""
    k, rest = desc.split(" ", 1)
    stride = rest.split(" s")[1].split(" ")[0]
    cin, cout = (int(c) for c in rest.split(" ")[0].split("->"))
    mark = " dw" if " g" in rest else " proj" if k == "1x1" and cout < cin else ""
    return f"{k} s{stride}{mark} at {hin}"


def kiln_times(kfile, wfile, batch, threads, runs):
    env = dict(os.environ, KILN_THREADS=str(threads))
    r = subprocess.run([str(models.KILN), "bench", str(kfile), "--weights", str(wfile), "--dim", f"N={batch}",
                        "--device=cpu", "--json", f"--runs={runs}"], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"layers: kiln bench failed:\n{r.stderr[-2000:]}")
    rep = json.loads(r.stdout)
    return rep["run_ms"], [(k["name"], k["ms"]) for k in rep["kernels"]]


def ort_session(ofile, threads, prefix):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.enable_profiling = True
    so.profile_file_prefix = prefix
    return ort.InferenceSession(str(ofile), so, providers=["CPUExecutionProvider"])


def ort_node_times(path):
    """{node: [us per run]} and [run us] from a profile."""
    events = json.loads(Path(path).read_text())
    nodes, runs = {}, []
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            nodes.setdefault(e["name"][:-len("_kernel_time")], []).append(e["dur"])
        elif e.get("cat") == "Session" and e["name"] == "model_run":
            runs.append(e["dur"])
    return nodes, runs


def owner(node, owners):
    """The convolution a profiled node's time counts with, or None."""
    return owners.get(node[:-len("_nchwc")] if node.endswith("_nchwc") else node)


def measure(name, batch, threads, rounds, runs):
    net, result = models.MODELS[name](128)
    OUT.mkdir(parents=True, exist_ok=True)
    kfile, wfile, ofile = OUT / f"{name}.kiln", OUT / f"{name}.safetensors", OUT / f"{name}.onnx"
    kfile.write_text(net.kiln_source(result))
    models.save_safetensors(wfile, net.weights)
    model, owners = named_model(net, result)
    ofile.write_bytes(model.SerializeToString())
    feeds = models.make_inputs(net, batch)
    kiln_rounds, kiln_run = [], []
    with tempfile.TemporaryDirectory() as tmp:
        sess = ort_session(ofile, threads, str(Path(tmp) / "p"))
        for _ in range(3):
            sess.run(None, feeds)
        for _ in range(rounds):
            run_ms, ks = kiln_times(kfile, wfile, batch, threads, runs)
            kiln_run.append(run_ms)
            kiln_rounds.append(ks)
            for _ in range(runs):
                sess.run(None, feeds)
        nodes, ort_runs = ort_node_times(sess.end_profiling())
    # the profile's first 3 runs are the warm-up
    ort_conv = {}
    ort_other = 0.0
    for node, durs in nodes.items():
        us = statistics.median(durs[3:] if len(durs) > 3 else durs) / 1000.0
        c = owner(node, owners)
        if c is None:
            ort_other += us
        else:
            ort_conv[c] = ort_conv.get(c, 0.0) + us
    knames = [k for k, _ in kiln_rounds[0]]
    kmed = {k: statistics.median(r[i][1] for r in kiln_rounds) for i, k in enumerate(knames)}
    kconv = [k for k in knames if "conv2d" in k]
    rows = []
    for i, ((desc, cin, cout, k, stride, groups, hin, hout), kn) in enumerate(zip(net.convs, kconv)):
        rows.append({"conv": i, "layer": desc, "in": hin, "kind": kind(desc, hin), "kernel": kn,
                     "kiln_ms": kmed[kn], "ort_ms": ort_conv.get(i, 0.0)})
    kiln_other = sum(v for k, v in kmed.items() if k not in kconv)
    return {"model": name, "batch": batch, "threads": threads, "rows": rows,
            "kiln_other_ms": kiln_other, "ort_other_ms": ort_other,
            "kiln_run_ms": statistics.median(kiln_run),
            "ort_run_ms": statistics.median(ort_runs[3:]) / 1000.0 if len(ort_runs) > 3 else None,
            "load": os.getloadavg()[0]}


def report(c):
    print(f"\n{c['model']} batch {c['batch']}, {c['threads']} thread(s), load {c['load']:.1f}: "
          f"kiln run {c['kiln_run_ms']:.2f} ms, onnxruntime run {c['ort_run_ms']:.2f} ms")
    print("| conv | layer | in | kiln kernel | kiln ms | onnxruntime ms | ort/kiln | kiln loss ms |")
    print("|---|---|---|---|---|---|---|---|")
    for r in c["rows"]:
        ratio = r["ort_ms"] / r["kiln_ms"] if r["kiln_ms"] > 0 else float("nan")
        print(f"| {r['conv']} | {r['layer']} | {r['in']} | {r['kernel']} | {r['kiln_ms']:.3f} | {r['ort_ms']:.3f} | "
              f"{ratio:.2f}x | {r['kiln_ms'] - r['ort_ms']:+.3f} |")
    print(f"| | other kernels | | | {c['kiln_other_ms']:.3f} | {c['ort_other_ms']:.3f} | "
          f"{c['ort_other_ms'] / max(c['kiln_other_ms'], 1e-9):.2f}x | "
          f"{c['kiln_other_ms'] - c['ort_other_ms']:+.3f} |")
    by = {}
    for r in c["rows"]:
        s = by.setdefault(r["kind"], [0, 0.0, 0.0])
        s[0] += 1
        s[1] += r["kiln_ms"]
        s[2] += r["ort_ms"]
    kt = sum(r["kiln_ms"] for r in c["rows"]) + c["kiln_other_ms"]
    ot = sum(r["ort_ms"] for r in c["rows"]) + c["ort_other_ms"]
    print(f"\nby kind, largest loss first (kernel sums: kiln {kt:.2f} ms, onnxruntime {ot:.2f} ms, "
          f"loss {kt - ot:+.2f})")
    print("| kind | layers | kiln ms | onnxruntime ms | ort/kiln | kiln loss ms |")
    print("|---|---|---|---|---|---|")
    for k, (n, km, om) in sorted(by.items(), key=lambda kv: -(kv[1][1] - kv[1][2])):
        print(f"| {k} | {n} | {km:.3f} | {om:.3f} | {om / km:.2f}x | {km - om:+.3f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet18,resnet50")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--threads", type=int, default=int(os.environ.get("KILN_THREADS", "2")))
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=0, help="runs per round (default 20 at batch 1, 4 above)")
    args = ap.parse_args()
    cases = []
    for name in args.models.split(","):
        for batch in (int(b) for b in args.batches.split(",")):
            runs = args.runs or (20 if batch == 1 else 4)
            c = measure(name, batch, args.threads, args.rounds, runs)
            report(c)
            sys.stdout.flush()
            cases.append(c)
    (models.ROOT / "build" / "bench-layers.json").write_text(json.dumps(cases, indent=1))


if __name__ == "__main__":
    main()
