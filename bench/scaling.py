#!/usr/bin/env python3
"""What a second thread gains kiln and onnxruntime on one model, by wall time: both at 1 and
2 threads in alternating rounds, each run timed alone, onnxruntime without its profiler
(bench/layers.py profiles every node, which costs onnxruntime's runs time of their own),
and two 1-thread processes of each at once, pinned one to a core, to tell what the machine
takes from a core when both are busy (shared L3, memory, the hypervisor) from what kiln's
split takes.

    bench/scaling.sh [--model build/bench-models/resnet18.onnx] [--batch 1] [--rounds 12] [--runs 30]

The .onnx file and its input (`NAME.in.x.npy`, the first `batch` images) are bench/models.py's
(bench/models.sh writes them).  kiln: `kiln bench FILE --dim N=batch --trace` per round and
thread count, its runs' and kernels' durations from the trace; onnxruntime: one session per
thread count in this process, warmed up, then `runs` timed calls.  Prints per case the
fastest run and the median of the rounds' medians, each case's speed-up from 1 to 2 threads,
the load per round, and per kiln kernel its fastest launch on 1 and 2 threads.  Wall times:
run it on a quiet machine (the load it prints says how quiet).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def load_input(model, batch):
    import numpy as np
    x = np.load(str(model).replace(".onnx", ".in.x.npy"))
    return np.ascontiguousarray(x[:batch])


def ort_session(model, threads):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(str(model), so, providers=["CPUExecutionProvider"])


def ort_times(sess, x, runs):
    """[ms] of `runs` timed calls after 3 untimed ones."""
    name = sess.get_inputs()[0].name
    for _ in range(3):
        sess.run(None, {name: x})
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        sess.run(None, {name: x})
        times.append((time.perf_counter() - t0) * 1e3)
    return times


def kiln_start(kiln, model, batch, threads, runs, trace, cpu=None):
    env = dict(os.environ, KILN_THREADS=str(threads))
    cmd = [str(kiln), "bench", str(model), "--dim", f"N={batch}", f"--runs={runs}", "--trace", str(trace)]
    if cpu is not None:
        cmd = ["taskset", "-c", str(cpu)] + cmd
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def kiln_finish(proc, trace):
    """([run ms], {kernel: [launch ms]}) from a finished `kiln bench --trace`."""
    _, err = proc.communicate()
    if proc.returncode != 0:
        sys.exit(f"scaling: kiln bench failed:\n{err[-2000:]}")
    t = json.loads(Path(trace).read_text())
    events = t["traceEvents"] if isinstance(t, dict) else t
    runs, kernels = [], {}
    for e in events:
        if e.get("ph") != "X":
            continue
        if e.get("name", "").startswith("run "):
            runs.append(e["dur"] / 1e3)
        elif e.get("cat") == "kernel" and e.get("args", {}).get("run", 0) > 0:
            kernels.setdefault(e["name"], []).append(e["dur"] / 1e3)
    return runs, kernels


ORT_ALONE = """
import sys
sys.path.insert(0, %r)
import scaling
x = scaling.load_input(%r, %d)
print(" ".join("%%.4f" %% t for t in scaling.ort_times(scaling.ort_session(%r, 1), x, %d)))
"""


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default=str(ROOT / "build" / "bench-models" / "resnet18.onnx"))
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=12)
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--kiln", default=str(ROOT / "build" / "kiln"))
    ap.add_argument("--no-pairs", action="store_true", help="leave out the two 1-thread processes at once")
    a = ap.parse_args()
    if a.rounds < 1 or a.runs < 1:
        sys.exit("scaling: --rounds and --runs must be at least 1")
    if not Path(a.model).exists():
        sys.exit(f"scaling: no {a.model} (bench/models.sh writes build/bench-models/)")
    x = load_input(a.model, a.batch)
    sessions = {t: ort_session(a.model, t) for t in (1, 2)}
    cases = ["kiln 1", "kiln 2", "ort 1", "ort 2"] + ([] if a.no_pairs else ["kiln 1+1", "ort 1+1"])
    fastest = {c: [] for c in cases}
    medians = {c: [] for c in cases}
    kern = {1: {}, 2: {}}
    loads = []
    tmp = Path(tempfile.mkdtemp(prefix="kiln-scaling-"))
    try:
        measure(a, x, sessions, cases, fastest, medians, kern, loads, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(a, cases, fastest, medians, kern, loads)


def measure(a, x, sessions, cases, fastest, medians, kern, loads, tmp):
    """The alternating rounds: every case's runs into fastest/medians, kiln's kernels into kern."""

    def note(case, times):
        fastest[case].append(min(times))
        medians[case].append(statistics.median(times))

    for r in range(a.rounds):
        loads.append(os.getloadavg()[0])
        for t in (1, 2) if r % 2 == 0 else (2, 1):
            trace = tmp / f"k{t}.json"
            runs, kernels = kiln_finish(kiln_start(a.kiln, a.model, a.batch, t, a.runs, trace), trace)
            note(f"kiln {t}", runs)
            for name, v in kernels.items():
                kern[t].setdefault(name, []).append(min(v))
            note(f"ort {t}", ort_times(sessions[t], x, a.runs))
        if a.no_pairs:
            continue
        procs = [(kiln_start(a.kiln, a.model, a.batch, 1, a.runs, tmp / f"p{c}.json", cpu=c), tmp / f"p{c}.json")
                 for c in (0, 1)]
        both = [kiln_finish(p, tr)[0] for p, tr in procs]
        note("kiln 1+1", both[0] + both[1])
        code = ORT_ALONE % (str(ROOT / "bench"), a.model, a.batch, a.model, a.runs)
        ops = [subprocess.Popen(["taskset", "-c", str(c), sys.executable, "-c", code], stdout=subprocess.PIPE,
                                text=True) for c in (0, 1)]
        outs = [(p.communicate()[0], p.returncode) for p in ops]
        if any(rc != 0 for _, rc in outs):
            sys.exit(f"scaling: a pinned onnxruntime process failed (exit {[rc for _, rc in outs]})")
        note("ort 1+1", [float(v) for out, _ in outs for v in out.split()])


def report(a, cases, fastest, medians, kern, loads):
    """The tables: every case, the speed-ups, kiln's kernels on 1 and 2 threads."""
    print(f"{Path(a.model).name} batch {a.batch}: {a.rounds} rounds of {a.runs} runs, "
          f"load {min(loads):.2f}-{max(loads):.2f} (1-minute average at each round's start)")
    print("| case | fastest run ms | median of the rounds' medians ms |")
    print("|---|---|---|")
    for c in cases:
        print(f"| {c} | {min(fastest[c]):.3f} | {statistics.median(medians[c]):.3f} |")
    for who in ("kiln", "ort"):
        f = min(fastest[f"{who} 1"]) / min(fastest[f"{who} 2"])
        m = statistics.median(medians[f"{who} 1"]) / statistics.median(medians[f"{who} 2"])
        print(f"{who}: 2 threads {f:.2f}x faster than 1 (fastest runs), {m:.2f}x (medians)")
    if not a.no_pairs:
        for who in ("kiln", "ort"):
            f = min(fastest[f"{who} 1+1"]) / min(fastest[f"{who} 1"])
            print(f"{who}: a 1-thread run with the other core running the same {f:.3f}x the time of one alone "
                  f"(fastest runs)")
    print("| kiln kernel | fastest 1 thread ms | 2 threads ms | speed-up |")
    print("|---|---|---|---|")
    for name in kern[1]:
        one, two = min(kern[1][name]), min(kern[2].get(name, [float("nan")]))
        print(f"| {name} | {one:.4f} | {two:.4f} | {one / two:.2f}x |")


if __name__ == "__main__":
    main()
