#!/usr/bin/env python3
"""What an image costs at batch 1 and at batch 8, kiln and onnxruntime, by CPU time on one
thread: for a loaded machine, where the wall time of the same run moves by 20-50 % and a
per-layer table taken minutes apart (bench/layers.sh) can show batch 8 dearer per image
when it is not (docs/performance.md, "Session 10: batch 8 by images").

    bench/batchcpu.sh [--model resnet50] [--batches 1,8] [--rounds 5] [--images 64]

The model files are bench/models.py's (build/bench-models/NAME.kiln, .safetensors and
.onnx: bench/models.sh writes them).  Each round runs, per batch, kiln and then
onnxruntime.  kiln: `kiln bench --runs=R+2` and `--runs=2` as two processes
(KILN_THREADS=1, KILN_CACHE=off), their CPU time (user + system, os.wait4) subtracted and
divided by R, so that compiling and binding drop out (bench/abcpu.py's method).
onnxruntime: one session per model with one intra-op thread, which computes on the
calling thread, warmed up, then R runs timed by that thread's CPU time
(time.thread_time).  R = max(4, images / batch).  Prints per round every figure and the
load, then per batch and runner the median and min over the rounds, per run and per
image, and onnxruntime / kiln (above 1: kiln is faster, as bench/models.sh's ratio).  One thread only:
with two, CPU time counts the threads' spinning, not the work.
"""
import argparse
import os
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))
from abcpu import cpu_ms  # noqa: E402  (bench/ is not a package)


def kiln_cpu_ms(kiln, kfile, wfile, batch, runs):
    """CPU ms of one `kiln bench` process of `runs` runs (compile and bind included), 1 thread."""
    return cpu_ms(str(kiln), [str(kfile), "--weights", str(wfile), "--dim", f"N={batch}", "--device=cpu"], runs, 1)


def ort_session(onnx_file):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(onnx_file), so, providers=["CPUExecutionProvider"])


def ort_cpu_ms(sess, x, runs):
    """CPU ms of one onnxruntime run: `runs` runs after 2 untimed ones, by the calling
    thread's CPU time (the only thread computing with one intra-op thread)."""
    name = sess.get_inputs()[0].name
    for _ in range(2):
        sess.run(None, {name: x})
    t0 = time.thread_time()
    for _ in range(runs):
        sess.run(None, {name: x})
    return (time.thread_time() - t0) * 1000.0 / runs


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet50", help="a model of bench/models.py (default resnet50)")
    ap.add_argument("--dir", default=str(ROOT / "build" / "bench-models"), help="where its files are")
    ap.add_argument("--kiln", default=str(ROOT / "build" / "kiln"))
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--images", type=int, default=64, help="images per timed process (runs = images / batch, >= 4)")
    args = ap.parse_args()
    try:
        batches = [int(b) for b in args.batches.split(",")]
    except ValueError:
        ap.error(f"--batches: comma-separated integers, not '{args.batches}'")
    if not batches or min(batches) < 1 or args.rounds < 1 or args.images < 1:
        ap.error("--batches >= 1, --rounds >= 1 and --images >= 1")
    base = Path(args.dir) / args.model
    kfile, wfile, ofile = (base.with_suffix(s) for s in (".kiln", ".safetensors", ".onnx"))
    if not Path(args.kiln).is_file():
        sys.exit(f"batchcpu: {args.kiln}: no such kiln binary (make builds build/kiln)")
    for f in (kfile, wfile, ofile):
        if not f.is_file():
            sys.exit(f"batchcpu: {f} is missing (bench/models.sh --models {args.model} writes it)")
    import numpy as np
    sess = ort_session(ofile)
    shape = [d if isinstance(d, int) else 1 for d in sess.get_inputs()[0].shape]
    rng = np.random.default_rng(0)
    inputs = {b: rng.standard_normal([b] + shape[1:]).astype(np.float32) for b in batches}
    per = {}  # (runner, batch) -> [CPU ms per run]
    for r in range(args.rounds):
        line = []
        for b in batches:
            runs = max(4, args.images // b)
            k = (kiln_cpu_ms(args.kiln, kfile, wfile, b, runs + 2) - kiln_cpu_ms(args.kiln, kfile, wfile, b, 2)) / runs
            o = ort_cpu_ms(sess, inputs[b], runs)
            per.setdefault(("kiln", b), []).append(k)
            per.setdefault(("onnxruntime", b), []).append(o)
            line.append(f"b{b} kiln {k:.1f} ort {o:.1f}")
        print(f"round {r}, load {os.getloadavg()[0]:.1f}: " + ", ".join(line) + " (CPU ms per run)", flush=True)
    print(f"\n{args.model}, 1 thread, {args.rounds} rounds: CPU ms per run and per image (median / min over rounds)")
    print("| batch | runner | per run median | min | per image median | min |")
    print("|---|---|---|---|---|---|")
    for b in batches:
        for who in ("kiln", "onnxruntime"):
            v = per[(who, b)]
            med, low = statistics.median(v), min(v)
            print(f"| {b} | {who} | {med:.1f} | {low:.1f} | {med / b:.2f} | {low / b:.2f} |")
    for b in batches:
        km, om = statistics.median(per[("kiln", b)]), statistics.median(per[("onnxruntime", b)])
        kl, ol = min(per[("kiln", b)]), min(per[("onnxruntime", b)])
        print(f"batch {b}: onnxruntime / kiln {om / km:.2f}x (medians), {ol / kl:.2f}x (mins)")
    if len(batches) > 1:
        b0, b1 = batches[0], batches[-1]
        for who in ("kiln", "onnxruntime"):
            m0, m1 = statistics.median(per[(who, b0)]) / b0, statistics.median(per[(who, b1)]) / b1
            l0, l1 = min(per[(who, b0)]) / b0, min(per[(who, b1)]) / b1
            print(f"{who}: an image at batch {b1} / at batch {b0}: {m1 / m0:.2f} (medians), {l1 / l0:.2f} (mins)")


if __name__ == "__main__":
    main()
