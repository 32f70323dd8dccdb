#!/usr/bin/env python3
"""Bytes moved per run, without the load: one model run by kiln (and by onnxruntime) under
valgrind's callgrind with its cache simulation, split per run and, for kiln, per kernel
launch, summed per layer kind.  Figures that do not move with the other tenants of the
host (docs/performance.md, "Session 11: bytes moved").

    bench/cachesim.py [--model resnet50] [--batch 1] [--ll 33554432] [--peer] [--models DIR]

Needs build/kiln, build/bench-models/MODEL.{kiln,safetensors,onnx} (bench/models.sh writes
them) and valgrind; --peer needs onnxruntime (run it with build/bench-venv/bin/python).
The simulated caches: D1 48 KiB 12-way (this Intel guest's), LL --ll bytes 16-way: 32 MiB
for the share of the L3 this guest gets, 2 MiB for a core's L2.  A line missed in LL is
64 bytes from the next level.  Both run one thread.  valgrind has no AVX-512: under it
kiln compiles for x86-64-v3 and onnxruntime's MLAS picks its AVX2 kernels (by CPUID), so
the counts are of the AVX2 forms, with the same blockings.  kiln: `--dump-before=
cpu_launch` (runtime/cpu.c) cuts a part per launch; onnxruntime: the driver calls
getppid() between session runs.  Slow: ResNet-50 b1 is ~5 min for kiln, ~10 for
onnxruntime (set-up included); run it through /work/wt/bin/heavy.
"""
import argparse
import glob
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
EVENTS = ["Ir", "Dr", "Dw", "I1mr", "D1mr", "D1mw", "ILmr", "DLmr", "DLmw"]

PEER = r"""
import os, sys
import numpy as np
import onnxruntime as ort
path, batch, runs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
so = ort.SessionOptions()
so.intra_op_num_threads = 1
so.inter_op_num_threads = 1
so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
x = np.random.default_rng(0).standard_normal((batch, 3, 224, 224)).astype(np.float32)
feeds = {sess.get_inputs()[0].name: x}
for i in range(runs):
    os.getppid()  # callgrind --dump-before=getppid: a part per run
    sess.run(None, feeds)
os.getppid()
"""


def callgrind(cmd, marker, ll, env=None):
    """The parts of one run of cmd under callgrind, in order: each a dict of EVENTS."""
    with tempfile.TemporaryDirectory(prefix="kiln-cachesim-") as d:
        vg = ["valgrind", "--tool=callgrind", "--cache-sim=yes", "--D1=49152,12,64", f"--LL={ll},16,64",
              f"--dump-before={marker}", f"--callgrind-out-file={d}/cg.%p"]
        r = subprocess.run(vg + cmd, env=env, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"cachesim: {' '.join(cmd)} failed under valgrind:\n{r.stderr[-2000:]}")
        parts = {}
        for f in glob.glob(f"{d}/cg.*"):
            tail = os.path.basename(f).split(".")[2:]  # cg.PID[.N]: the last file has no N
            events = totals = None
            for line in open(f):
                if line.startswith("events:"):
                    events = line.split()[1:]
                elif line.startswith("totals:"):
                    totals = [int(x) for x in line.split()[1:]]
            part = dict.fromkeys(EVENTS, 0)
            part.update(zip(events, totals))  # trailing zeros are left out
            parts[int(tail[0]) if tail else 1 << 30] = part
        return [parts[k] for k in sorted(parts)], r.stdout


def summed(parts):
    return {e: sum(p[e] for p in parts) for e in EVENTS}


def row(name, c, n=""):
    return (f"| {name} | {n} | {c['Ir'] / 1e6:.1f} | {(c['D1mr'] + c['D1mw']) / 1e3:.0f} | "
            f"{(c['DLmr'] + c['DLmw']) * 64 / 1e6:.2f} |")


def kinds(src, kernels, run, batch):
    """kiln's launches of one run summed per layer kind, read off the program's conv2d calls
    (in order: a conv2d call the pattern misses would shift every label after it)."""
    shapes = {m.group(1): [int(x) for x in m.group(2).split(",")]
              for m in re.finditer(r"(\w+): f32\[([\d, ]+)\]", src)}
    convs = [(m.group(1), int(m.group(2))) for m in re.finditer(r"conv2d\(\w+, (\w+), \w+, stride=(\d+)", src)]
    out, ci = {}, 0
    for k, c in zip(kernels, run):
        if "conv2d" in k["name"] and ci < len(convs):
            w, s = convs[ci]
            ci += 1
            co, cin, kh, kw = shapes[w]
            side = int(round(math.sqrt(k["flops"] / (2.0 * batch * co * cin * kh * kw))))
            kind = f"{kh}x{kw} s{s} {cin}->{co} to {side}"
        else:
            kind = k["name"].split("_", 1)[-1]
        out.setdefault(kind, []).append(c)
    conv_kernels = sum("conv2d" in k["name"] for k in kernels)
    if conv_kernels != len(convs):
        sys.exit(f"cachesim: {len(convs)} conv2d calls read off the program (conv2d(x, w, b, stride=S)) "
                 f"against {conv_kernels} conv2d kernels: the labels would be wrong")
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="resnet50")
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--ll", type=int, default=32 << 20, help="simulated last level, bytes (16-way)")
    ap.add_argument("--models", default=str(ROOT / "build" / "bench-models"), help="where MODEL.* are")
    ap.add_argument("--peer", action="store_true", help="onnxruntime too (this interpreter imports it)")
    ap.add_argument("--kiln", default=str(ROOT / "build" / "kiln"))
    args = ap.parse_args()
    if shutil.which("valgrind") is None:
        sys.exit("cachesim: valgrind is not installed (apt-get install valgrind)")
    models = Path(args.models)
    kfile, wfile, ofile = (models / f"{args.model}.{x}" for x in ("kiln", "safetensors", "onnx"))
    for f in (kfile, wfile) + ((ofile,) if args.peer else ()):
        if not f.is_file():
            sys.exit(f"cachesim: {f}: no such file (bench/models.sh writes the models)")
    print(f"{args.model} batch {args.batch}, 1 thread, D1 48 KiB, LL {args.ll >> 10} KiB; per run: "
          "instructions (M), D1 misses (k, read + write), lines missed in LL (MB, read + write)")
    print("| what | launches | Ir M | D1 misses k | LL misses MB |\n|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="kiln-cachesim-cache-") as cache:
        env = dict(os.environ, KILN_THREADS="1", KILN_CACHE=cache)
        cmd = [args.kiln, "bench", str(kfile), "--weights", str(wfile), "--dim", f"N={args.batch}",
               "--device=cpu", "--cpu=x86-64-v3", "--json", "--runs=2"]
        r = subprocess.run(cmd, env=env, capture_output=True, text=True)  # compiled once, outside valgrind
        if r.returncode != 0:
            sys.exit(f"cachesim: {' '.join(cmd)} failed:\n{r.stderr[-2000:]}")
        parts, out = callgrind(cmd, "cpu_launch", args.ll, env)
    kernels = json.loads(out)["kernels"]
    # parts[0]: the set-up; then a part per launch: the warm-up run and two timed runs (the
    # last launch's part holds the exit too): the first timed run
    nk = len(kernels)
    run = parts[1 + nk:1 + 2 * nk]
    if len(run) != nk:
        sys.exit(f"cachesim: {len(parts)} parts for {nk} kernels: not one part per launch")
    for kind, cs in kinds(kfile.read_text(), kernels, run, args.batch).items():
        print(row(f"kiln {kind}", summed(cs), len(cs)))
    print(row("kiln run", summed(run), nk))
    if args.peer:
        with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
            f.write(PEER)
        try:
            parts, _ = callgrind([sys.executable, f.name, str(ofile), str(args.batch), "2"], "getppid", args.ll)
        finally:
            os.unlink(f.name)
        # the set-up, the two runs, the exit: the second run
        print(row("onnxruntime run", parts[-2]))


if __name__ == "__main__":
    main()
