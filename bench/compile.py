#!/usr/bin/env python3
"""Compile time of whole models (issue 11): kiln cold (empty cache of compiled code) and
warm (a second process, the cache filled by the first) against onnxruntime's session
creation for the same model, on the same machine and thread count, in one run.

Usage (bench/compile.sh sets up the peer and the environment):
    bench/compile.py [--models minilm,resnet50,mobilenetv2] [--rounds 3] [--threads 2]

The models are bench/models.py's (seeded random weights, written as a kiln program +
safetensors and as an ONNX model, batch 1; the encoder at 128 tokens). kiln: `kiln bench
FILE --weights W.safetensors --dim N=1 --device=cpu --json --runs=1` in a fresh process;
its compile_ms is everything before the first run (reading the program and the weights,
the passes, fusion, device code, packing the weights), its cache_hits and
kernels_distinct say where the device code came from. Cold: KILN_CACHE is a new empty
folder for every round; warm: the same folder again. onnxruntime: the time of
InferenceSession(...) (all graph optimisations, intra_op_num_threads = threads) in a
fresh process. A cell is the best of the rounds; every figure, the load average before
and after and the CPU go to build/bench-compile.json.
"""
import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import models  # noqa: E402  (bench/models.py: the networks)

ROOT = Path(__file__).resolve().parent.parent
KILN = ROOT / "build" / "kiln"

ORT_SESSION = """
import sys, time, json
import onnxruntime as ort
so = ort.SessionOptions()
so.intra_op_num_threads = int(sys.argv[2])
so.inter_op_num_threads = 1
so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
t0 = time.perf_counter()
ort.InferenceSession(sys.argv[1], so, providers=["CPUExecutionProvider"])
print(json.dumps({"ms": (time.perf_counter() - t0) * 1e3, "version": ort.__version__}))
"""


def kiln_compile(kfile, wfile, cache):
    env = dict(os.environ, KILN_CACHE=cache)
    cmd = [str(KILN), "bench", str(kfile), "--weights", str(wfile), "--dim", "N=1", "--device=cpu", "--json",
           "--runs=1"]
    t0 = time.perf_counter()
    r = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = (time.perf_counter() - t0) * 1e3
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip()[-2000:])
    j = json.loads(r.stdout)
    return {"compile_ms": j["compile_ms"], "cache_hits": j["cache_hits"], "distinct": j["kernels_distinct"],
            "compiled": j["kernels_compiled"], "kernels": len(j["kernels"]), "process_ms": wall}


def ort_session(ofile, threads):
    r = subprocess.run([sys.executable, "-c", ORT_SESSION, str(ofile), str(threads)], capture_output=True,
                       text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip()[-2000:])
    return json.loads(r.stdout)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="minilm,resnet50,mobilenetv2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("KILN_THREADS", "2")))
    args = ap.parse_args()
    res = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
           "machine": platform.processor() or platform.machine(), "threads": args.threads,
           "load_before": os.getloadavg(), "cases": []}
    try:
        res["cpu"] = [ln.split(":", 1)[1].strip() for ln in open("/proc/cpuinfo") if ln.startswith("model name")][0]
    except (OSError, IndexError):
        res["cpu"] = platform.processor()
    ort_version = "?"
    for name in [m for m in args.models.split(",") if m]:
        net, kfile, wfile, ofile = models.write_model(name, 128)
        case = {"model": name, "cold": [], "warm": [], "ort": []}
        for _ in range(args.rounds):
            cache = tempfile.mkdtemp(prefix="kiln-bench-cache.")
            try:
                case["cold"].append(kiln_compile(kfile, wfile, cache))
                case["warm"].append(kiln_compile(kfile, wfile, cache))
            finally:
                shutil.rmtree(cache, ignore_errors=True)
            o = ort_session(ofile, args.threads)
            ort_version = o["version"]
            case["ort"].append(o["ms"])
        res["cases"].append(case)
        best = lambda rows: min(rows, key=lambda r: r["compile_ms"])  # noqa: E731
        c, w = best(case["cold"]), best(case["warm"])
        print(f"[bench] {name}: kiln cold {c['compile_ms']:.0f} ms ({c['compiled']} of {c['kernels']} kernels "
              f"compiled), warm {w['compile_ms']:.0f} ms ({w['cache_hits']} from the cache), onnxruntime "
              f"session {min(case['ort']):.0f} ms", file=sys.stderr)
    res["load_after"] = os.getloadavg()
    res["onnxruntime"] = ort_version
    (ROOT / "build" / "bench-compile.json").write_text(json.dumps(res, indent=1))
    print(f"compile time, best of {args.rounds}; {res['cpu']}, {args.threads} threads, {res['date']}, "
          f"load {res['load_before'][0]:.1f} -> {res['load_after'][0]:.1f}; onnxruntime {ort_version}")
    print(f"{'model':<12} {'kernels':>8} {'distinct':>8} {'kiln cold ms':>13} {'kiln warm ms':>13} "
          f"{'ort session ms':>15} {'cold ratio':>11} {'warm ratio':>11}")
    for case in res["cases"]:
        c = min(case["cold"], key=lambda r: r["compile_ms"])
        w = min(case["warm"], key=lambda r: r["compile_ms"])
        o = min(case["ort"])
        print(f"{case['model']:<12} {c['kernels']:>8} {c['distinct']:>8} {c['compile_ms']:>13.0f} "
              f"{w['compile_ms']:>13.0f} {o:>15.0f} {o / c['compile_ms']:>11.2f} {o / w['compile_ms']:>11.2f}")
    print("ratio = onnxruntime's session creation / kiln's compile (above 1: kiln is faster)")


if __name__ == "__main__":
    main()
