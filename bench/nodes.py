#!/usr/bin/env python3
"""Per-node times of kiln and of onnxruntime *without its profiler*: every convolution
(with the Add/Clip it owns) and the head of a bench/models.py model cut out as a graph of
its own and timed alone by both, in the same process round, interleaved; beside them
kiln's per-kernel times in the whole model (what the model's cache state costs each
kernel) and onnxruntime's whole run.

    bench/nodes.sh [--model mobilenetv2] [--batch 1] [--threads 1,2] [--rounds 3] [--runs 200]

Why: bench/layers.sh reads onnxruntime's per-node times from its profiler, which slows
each node (MobileNetV2 b1: 2.49 ms profiled against 1.8-2.0 ms unprofiled), so its
per-layer ratios flatter kiln.

kiln, alone: one ONNX graph per node group (the Conv and the Add/Clip after it, or the
head's GlobalAveragePool/Reshape/MatMul/Add) cut from the model's .onnx (same
initializers), `kiln bench --json --runs=R` in a fresh process each round; the node's time
is the sum of the graph's kernels (one kernel per convolution).
kiln, in the model: `kiln bench` of the whole .onnx, each kernel's median.
onnxruntime, alone: the model optimized once by onnxruntime itself (ORT_ENABLE_ALL: its
NCHWc convolutions, Clip and Add fused) and saved; each node of that graph (a
com.microsoft.nchwc Conv on blocked tensors, the head's nodes) cut out with the real
tensors it reads as inputs (one run of the optimized model with every tensor an output)
and timed with optimizations off, through an IOBinding (no copies, no allocation), the
median of R timed runs per round minus the median of the same loop on a one-element Relu
graph (the Python call and session run's fixed cost); so the node's time holds what it
costs inside a run: the node's kernel and its dispatch to the pool.
onnxruntime, whole: the optimized model run the same way (minus the same fixed cost).
Every cell is the median over rounds.  Prints one row per node group and the sums by kind
(the kinds of bench/layers.py); every figure goes to build/bench-nodes.json.  Not part of
the test suite.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import layers  # noqa: E402
import models  # noqa: E402

OUT = models.ROOT / "build" / "bench-nodes"


def groups_of(model):
    """[(key, [node index])]: convN with the Add/Clip/Relu nodes after it, then 'head'."""
    out, owner_of = [], {}
    conv = -1
    for i, node in enumerate(model.graph.node):
        if node.op_type == "Conv":
            conv += 1
            out.append((f"conv{conv}", [i]))
            owner_of[node.output[0]] = len(out) - 1
        elif node.op_type in ("Add", "Relu", "Clip") and node.input[0] in owner_of \
                and out[owner_of[node.input[0]]][1][-1] == i - 1:
            g = owner_of[node.input[0]]
            out[g][1].append(i)
            owner_of[node.output[0]] = g
        else:
            if not out or out[-1][0] != "head":
                out.append(("head", []))
            out[-1][1].append(i)
            owner_of[node.output[0]] = len(out) - 1
    return out


def cut(model, idx, shapes, name):
    """A model of nodes idx of model: inputs what they read that no node of theirs writes and
    no initializer holds, output the last node's output."""
    import onnx
    from onnx import helper
    g = model.graph
    nodes = [g.node[i] for i in idx]
    made = {o for n in nodes for o in n.output}
    inits = {t.name: t for t in g.initializer}
    used = [x for n in nodes for x in n.input if x]
    ins, seen = [], set()
    for x in used:
        if x not in made and x not in inits and x not in seen:
            seen.add(x)
            ins.append(shapes[x])
    init = [inits[x] for x in dict.fromkeys(used) if x in inits]
    out = nodes[-1].output[0]
    gr = helper.make_graph(nodes, name, ins, [shapes[out]], init)
    m = helper.make_model(gr, opset_imports=list(model.opset_import))
    m.ir_version = model.ir_version
    return m


def ort_opts(threads, opt):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL if opt else \
        ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    return so


class Bound:
    """A session run through an IOBinding on fixed inputs and a preallocated output."""

    def __init__(self, model_bytes, feeds, threads):
        import onnxruntime as ort
        self.sess = ort.InferenceSession(model_bytes, ort_opts(threads, False), providers=["CPUExecutionProvider"])
        outs = self.sess.run(None, feeds)  # the output's shape
        self.io = self.sess.io_binding()
        self.keep = []
        for k, v in feeds.items():
            ov = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(v))
            self.keep.append(ov)
            self.io.bind_ortvalue_input(k, ov)
        for o, v in zip(self.sess.get_outputs(), outs):
            ov = ort.OrtValue.ortvalue_from_numpy(np.empty_like(v))
            self.keep.append(ov)
            self.io.bind_ortvalue_output(o.name, ov)

    def time(self, runs, warm=10):
        run = self.sess.run_with_iobinding
        io = self.io
        for _ in range(warm):
            run(io)
        t = []
        pc = time.perf_counter_ns
        for _ in range(runs):
            t0 = pc()
            run(io)
            t.append(pc() - t0)
        return statistics.median(t) / 1e6  # ms


def ort_nodes(ofile, feeds, threads):
    """onnxruntime's own optimized graph of ofile and every tensor's value on feeds."""
    import onnx
    import onnxruntime as ort
    optfile = OUT / f"{ofile.stem}.ort-opt.onnx"
    so = ort_opts(threads, True)
    so.optimized_model_filepath = str(optfile)
    ort.InferenceSession(str(ofile), so, providers=["CPUExecutionProvider"])
    opt = onnx.load(str(optfile))
    probe = onnx.ModelProto()
    probe.CopyFrom(opt)
    have = {o.name for o in probe.graph.output}
    for n in probe.graph.node:
        for o in n.output:
            if o not in have:
                probe.graph.output.append(onnx.helper.make_tensor_value_info(o, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(probe.SerializeToString(), ort_opts(threads, False),
                                providers=["CPUExecutionProvider"])
    vals = dict(zip([o.name for o in sess.get_outputs()], sess.run(None, feeds)))
    vals.update(feeds)
    return opt, vals


def ort_cut(opt, i, vals):
    """Node i of onnxruntime's optimized graph alone, and its feeds."""
    from onnx import helper, TensorProto
    g = opt.graph
    n = g.node[i]
    inits = {t.name: t for t in g.initializer}
    feeds = {x: vals[x] for x in n.input if x and x not in inits}
    ins = [helper.make_tensor_value_info(x, TensorProto.FLOAT, list(v.shape)) for x, v in feeds.items()]
    out = helper.make_tensor_value_info(n.output[0], TensorProto.FLOAT, list(vals[n.output[0]].shape))
    init = [inits[x] for x in dict.fromkeys(n.input) if x in inits]
    gr = helper.make_graph([n], f"n{i}", ins, [out], init)
    m = helper.make_model(gr, opset_imports=list(opt.opset_import))
    m.ir_version = opt.ir_version
    return m.SerializeToString(), feeds


def relu_one():
    from onnx import helper, TensorProto
    gr = helper.make_graph([helper.make_node("Relu", ["a"], ["b"])], "one",
                           [helper.make_tensor_value_info("a", TensorProto.FLOAT, [1])],
                           [helper.make_tensor_value_info("b", TensorProto.FLOAT, [1])])
    m = helper.make_model(gr, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m.SerializeToString(), {"a": np.ones(1, np.float32)}


def kiln_bench(path, batch, threads, runs):
    env = dict(os.environ, KILN_THREADS=str(threads))
    r = subprocess.run([str(models.KILN), "bench", str(path), "--dim", f"N={batch}", "--device=cpu", "--json",
                        f"--runs={runs}"], capture_output=True, text=True, env=env)
    if r.returncode != 0:
        sys.exit(f"nodes: kiln bench {path} failed:\n{r.stderr[-2000:]}")
    rep = json.loads(r.stdout)
    return rep["run_ms"], [(k["name"], k["ms"]) for k in rep["kernels"]]


def measure(name, batch, threads, rounds, runs):
    import onnx
    net, result = models.MODELS[name](128)
    OUT.mkdir(parents=True, exist_ok=True)
    model, _ = layers.named_model(net, result)
    ofile = OUT / f"{name}.onnx"
    ofile.write_bytes(model.SerializeToString())
    feeds = models.make_inputs(net, batch)
    # kiln's one-node graphs, cut from the model (symbolic batch kept)
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {v.name: v for v in list(inferred.graph.value_info) + list(inferred.graph.input)
              + list(inferred.graph.output)}
    groups = groups_of(model)
    kfiles = []
    for key, idx in groups:
        p = OUT / f"{name}.{key}.onnx"
        p.write_bytes(cut(model, idx, shapes, key).SerializeToString())
        kfiles.append(p)
    # onnxruntime's nodes: its NCHWc Convs in graph order are the model's convolutions
    opt, vals = ort_nodes(ofile, feeds, threads)
    ort_groups = {}
    conv = -1
    for i, n in enumerate(opt.graph.node):
        if n.op_type == "Conv":
            conv += 1
            ort_groups.setdefault(f"conv{conv}", []).append(i)
        else:
            ort_groups.setdefault("head", []).append(i)
    assert conv + 1 == sum(1 for k, _ in groups if k != "head"), "convolution counts differ"
    bound = {k: [Bound(*ort_cut(opt, i, vals), threads) for i in idx] for k, idx in ort_groups.items()}
    whole = Bound(opt.SerializeToString(), feeds, threads)
    fixed = Bound(*relu_one(), threads)
    k_alone = {k: [] for k, _ in groups}
    o_alone = {k: [] for k, _ in groups}
    k_model, k_run, o_run, o_fixed = [], [], [], []
    for _ in range(rounds):
        run_ms, ks = kiln_bench(ofile, batch, threads, max(runs // 10, 10))
        k_run.append(run_ms)
        k_model.append(ks)
        o_fixed.append(fixed.time(runs))
        o_run.append(whole.time(max(runs // 10, 10)))
        for (key, _), p in zip(groups, kfiles):
            _, ks1 = kiln_bench(p, batch, threads, runs)
            k_alone[key].append(sum(ms for _, ms in ks1))
            o_alone[key].append(sum(b.time(runs) for b in bound[key]))
    fx = statistics.median(o_fixed)
    names = [k for k, _ in k_model[0]]
    kmed = {k: statistics.median(r[i][1] for r in k_model) for i, k in enumerate(names)}
    kconv = [k for k in names if "conv2d" in k]
    rows = []
    for key, _ in groups:
        if key == "head":
            desc, kind, inmodel = "head (mean, reshape, matmul, add)", "head", \
                sum(v for k, v in kmed.items() if k not in kconv)
        else:
            ci = int(key[4:])
            desc, _, _, _, _, _, hin, _ = net.convs[ci]
            kind, inmodel = layers.kind(desc, hin), kmed[kconv[ci]]
        nb = len(ort_groups[key])
        rows.append({"node": key, "layer": desc, "kind": kind, "kiln_model_ms": inmodel,
                     "kiln_alone_ms": statistics.median(k_alone[key]),
                     "ort_alone_ms": statistics.median(o_alone[key]) - nb * fx, "ort_nodes": nb})
    return {"model": name, "batch": batch, "threads": threads, "rows": rows, "ort_fixed_ms": fx,
            "kiln_run_ms": statistics.median(k_run), "ort_run_ms": statistics.median(o_run) - fx,
            "load": os.getloadavg()[0]}


def report(c):
    rows = c["rows"]
    ks, ka, oa = (sum(r[f] for r in rows) for f in ("kiln_model_ms", "kiln_alone_ms", "ort_alone_ms"))
    print(f"\n{c['model']} batch {c['batch']}, {c['threads']} thread(s), load {c['load']:.1f}: "
          f"kiln run {c['kiln_run_ms']:.3f} ms (kernels alone {ka:.3f}), onnxruntime run {c['ort_run_ms']:.3f} ms "
          f"unprofiled (nodes alone {oa:.3f}; fixed cost of a run {c['ort_fixed_ms'] * 1e3:.1f} us taken off)")
    print("| node | layer | kind | kiln in model us | kiln alone us | ort alone us | ort/kiln alone | "
          "kiln loss alone us |")
    print("|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['node']} | {r['layer']} | {r['kind']} | {r['kiln_model_ms'] * 1e3:.1f} | "
              f"{r['kiln_alone_ms'] * 1e3:.1f} | {r['ort_alone_ms'] * 1e3:.1f} | "
              f"{r['ort_alone_ms'] / max(r['kiln_alone_ms'], 1e-9):.2f}x | "
              f"{(r['kiln_alone_ms'] - r['ort_alone_ms']) * 1e3:+.1f} |")
    by = {}
    for r in rows:
        s = by.setdefault(r["kind"], [0, 0.0, 0.0, 0.0])
        s[0] += 1
        s[1] += r["kiln_model_ms"]
        s[2] += r["kiln_alone_ms"]
        s[3] += r["ort_alone_ms"]
    print(f"\nby kind, largest loss (alone) first: sums kiln in model {ks * 1e3:.0f} us, kiln alone {ka * 1e3:.0f} us, "
          f"onnxruntime alone {oa * 1e3:.0f} us")
    print("| kind | nodes | kiln in model us | kiln alone us | ort alone us | ort/kiln alone | kiln loss alone us |")
    print("|---|---|---|---|---|---|---|")
    for k, (n, km, ka1, oa1) in sorted(by.items(), key=lambda kv: -(kv[1][2] - kv[1][3])):
        print(f"| {k} | {n} | {km * 1e3:.1f} | {ka1 * 1e3:.1f} | {oa1 * 1e3:.1f} | {oa1 / max(ka1, 1e-9):.2f}x | "
              f"{(ka1 - oa1) * 1e3:+.1f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="mobilenetv2")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--threads", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--runs", type=int, default=200, help="timed runs of each node per round")
    args = ap.parse_args()
    cases = []
    for t in (int(x) for x in args.threads.split(",")):
        c = measure(args.model, args.batch, t, args.rounds, args.runs)
        report(c)
        sys.stdout.flush()
        cases.append(c)
    (models.ROOT / "build" / "bench-nodes.json").write_text(json.dumps(cases, indent=1))


if __name__ == "__main__":
    main()
