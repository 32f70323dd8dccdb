#!/usr/bin/env python3
"""Compile time of whole models (issue 11): kiln cold (empty cache of compiled code) and
warm (a second process, the cache filled by the first) against onnxruntime's session
creation for the same model, on the same machine and thread count, in one run.

Usage (bench/compile.sh sets up the peer and the environment):
    bench/compile.py [--models minilm,resnet50,mobilenetv2] [--rounds 3] [--threads 2]

The models are bench/models.py's (seeded random weights, written as an ONNX model and as a
kiln program + safetensors, batch 1; the encoder at 128 tokens). kiln runs the .onnx file
(--source onnx, the default, as issue 11 asks) or the kiln program with its safetensors
(--source kiln): `kiln bench FILE --dim N=1 --device=cpu --json --runs=1` in a fresh
process; its compile_ms is everything before the first run (reading the model and the
weights, the passes, fusion, device code, packing the weights), its cache_hits,
kernels_distinct and packed_from_cache say where the device code and the packed weights
came from. Cold: KILN_CACHE is a new empty folder for every round; warm: the same folder
again. onnxruntime: the time of InferenceSession(...) (all graph optimisations,
intra_op_num_threads = threads) in a fresh process. Peak memory: the process's maximum
resident set (GNU time's %M; mapped file pages it touched count). A cell is the
best of the rounds; every figure, the load average before and after and the CPU go to
build/bench-compile.json.
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


def run_child(cmd, env=None):
    """Runs cmd; returns (returncode, stdout, stderr, wall ms, peak resident MB).  The peak comes
    from /usr/bin/time (GNU time, %M) around the command: a child of this Python reports the
    forked Python's resident set in its own maximum (it is kept across exec)."""
    t0 = time.perf_counter()
    timed = ["/usr/bin/time", "-f", "PEAK_KB %M"] if os.path.exists("/usr/bin/time") else []  # else no peak
    r = subprocess.run(timed + cmd, capture_output=True, text=True, env=env)
    wall = (time.perf_counter() - t0) * 1e3
    lines = r.stderr.rstrip("\n").split("\n")
    peak = float(lines[-1].split()[1]) / 1024 if lines and lines[-1].startswith("PEAK_KB ") else float("nan")
    return r.returncode, r.stdout, "\n".join(lines[:-1]), wall, peak


def kiln_compile(source, kfile, wfile, ofile, cache):
    env = dict(os.environ, KILN_CACHE=cache)
    what = [str(ofile)] if source == "onnx" else [str(kfile), "--weights", str(wfile)]
    cmd = [str(KILN), "bench"] + what + ["--dim", "N=1", "--device=cpu", "--json", "--runs=1"]
    rc, out, err, wall, peak = run_child(cmd, env)
    if rc != 0:
        raise RuntimeError(err.strip()[-2000:])
    j = json.loads(out)
    return {"compile_ms": j["compile_ms"], "cache_hits": j["cache_hits"], "distinct": j["kernels_distinct"],
            "compiled": j["kernels_compiled"], "kernels": len(j["kernels"]), "packed": j.get("packed_operands", 0),
            "packed_cached": j.get("packed_from_cache", 0), "process_ms": wall, "peak_mb": peak}


def ort_session(ofile, threads):
    rc, out, err, _, peak = run_child([sys.executable, "-c", ORT_SESSION, str(ofile), str(threads)])
    if rc != 0:
        raise RuntimeError(err.strip()[-2000:])
    return dict(json.loads(out), peak_mb=peak)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="minilm,resnet50,mobilenetv2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("KILN_THREADS", "2")))
    ap.add_argument("--source", default="onnx", choices=["onnx", "kiln"],
                    help="what kiln compiles: the .onnx file, or the kiln program + safetensors")
    args = ap.parse_args()
    res = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
           "machine": platform.processor() or platform.machine(), "threads": args.threads, "source": args.source,
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
                case["cold"].append(kiln_compile(args.source, kfile, wfile, ofile, cache))
                case["warm"].append(kiln_compile(args.source, kfile, wfile, ofile, cache))
            finally:
                shutil.rmtree(cache, ignore_errors=True)
            o = ort_session(ofile, args.threads)
            ort_version = o["version"]
            case["ort"].append(o["ms"])
            case.setdefault("ort_peak_mb", []).append(o["peak_mb"])
        res["cases"].append(case)
        best = lambda rows: min(rows, key=lambda r: r["compile_ms"])  # noqa: E731
        c, w = best(case["cold"]), best(case["warm"])
        print(f"[bench] {name}: kiln cold {c['compile_ms']:.0f} ms ({c['compiled']} of {c['kernels']} kernels "
              f"compiled), warm {w['compile_ms']:.0f} ms ({w['cache_hits']} from the cache), onnxruntime "
              f"session {min(case['ort']):.0f} ms", file=sys.stderr)
    res["load_after"] = os.getloadavg()
    res["onnxruntime"] = ort_version
    (ROOT / "build" / "bench-compile.json").write_text(json.dumps(res, indent=1))
    print(f"compile time, best of {args.rounds}; kiln on the {args.source} files; {res['cpu']}, {args.threads} "
          f"threads, {res['date']}, load {res['load_before'][0]:.1f} -> {res['load_after'][0]:.1f}; "
          f"onnxruntime {ort_version}")
    print(f"{'model':<12} {'kernels':>8} {'distinct':>8} {'kiln cold ms':>13} {'kiln warm ms':>13} "
          f"{'ort session ms':>15} {'cold ratio':>11} {'warm ratio':>11} {'kiln peak MB':>13} {'ort peak MB':>12}")
    for case in res["cases"]:
        c = min(case["cold"], key=lambda r: r["compile_ms"])
        w = min(case["warm"], key=lambda r: r["compile_ms"])
        o = min(case["ort"])
        peak = max(r["peak_mb"] for r in case["warm"])
        print(f"{case['model']:<12} {c['kernels']:>8} {c['distinct']:>8} {c['compile_ms']:>13.0f} "
              f"{w['compile_ms']:>13.0f} {o:>15.0f} {o / c['compile_ms']:>11.2f} {o / w['compile_ms']:>11.2f} "
              f"{peak:>13.0f} {max(case['ort_peak_mb']):>12.0f}")
    print("ratio = onnxruntime's session creation / kiln's compile (above 1: kiln is faster; the bar: cold >= 1, "
          "warm >= 10); peak = the warm process's largest resident set")


if __name__ == "__main__":
    main()
