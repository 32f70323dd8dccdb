#!/usr/bin/python3
"""End-to-end tests: runs kiln on every case written by tests/gen/generate.py and
compares its results with NumPy's.

    /usr/bin/python3 tests/gen/generate.py OUTDIR
    /usr/bin/python3 tests/e2e.py --kiln build/kiln --data OUTDIR --device ref [--filter SUBSTR] [-j 2]

Each case runs
    kiln run FILE -g GRAPH --device=DEV --in NAME=PATH ... --dim NAME=N ... --out TMPDIR
and each result TMPDIR/<i>.npy must match OUTDIR/<case>/expected/<i>.npy: same shape,
same kind of dtype (float, integer or bool; bf16 results come back as f32 files; with
--strict-dtype the exact dtype), integers and bool exactly, floats within
|actual - expected| <= atol + rtol * |expected| (tolerances from case.json).
A case kiln answers with a diagnostic fails and shows kiln's standard error.

Prints one line per failure, then `e2e-DEV: N passed, N failed` last.  Exit status 0
when all passed, 1 otherwise, 2 for a bad command line.
"""
import argparse
import concurrent.futures
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
NUMPY_DTYPE = {"f32": "float32", "f16": "float16", "bf16": "float32", "f64": "float64",
               "i32": "int32", "i64": "int64", "bool": "bool"}
STDERR_LINES = 30  # of kiln's standard error shown per failed case


@dataclass
class Outcome:
    name: str
    passed: bool
    skipped: bool = False
    lines: list = field(default_factory=list)  # printed when the case failed


def kind(dtype):
    return {"b": "bool", "i": "integer", "u": "integer", "f": "float"}.get(dtype.kind, str(dtype))


def show_path(path):
    """A path as short as it can be written from the current directory."""
    rel = os.path.relpath(path)
    return rel if not rel.startswith("..") else str(path)


def compare(actual, expected, meta, strict):
    """None when actual matches expected, else what is wrong."""
    if actual.shape != expected.shape:
        return f"shape {list(actual.shape)}, expected {list(expected.shape)}"
    if kind(actual.dtype) != kind(expected.dtype):
        return (f"dtype {actual.dtype} ({kind(actual.dtype)}), "
                f"expected {meta['dtype']} ({kind(expected.dtype)})")
    if strict and actual.dtype != np.dtype(NUMPY_DTYPE[meta["dtype"]]):
        return f"dtype {actual.dtype}, expected {NUMPY_DTYPE[meta['dtype']]} for {meta['dtype']}"
    if kind(expected.dtype) != "float":
        bad = actual != expected
        if not bad.any():
            return None
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        return (f"{int(bad.sum())} of {bad.size} elements differ, first at {list(first)}: "
                f"{actual[first]} instead of {expected[first]}")
    a = actual.astype(np.float64)
    e = expected.astype(np.float64)
    rtol, atol = meta["rtol"], meta["atol"]
    with np.errstate(invalid="ignore", over="ignore"):
        err = np.abs(a - e)
        same = (a == e) | (np.isnan(a) & np.isnan(e))
        bad = ~same & ~(err <= atol + rtol * np.abs(e))
    if not bad.any():
        return None
    err = np.where(np.isnan(err) & ~same, np.inf, np.where(same, 0.0, err))
    rel = err / np.maximum(np.abs(e), np.finfo(np.float64).tiny)
    first = tuple(int(i) for i in np.argwhere(bad)[0])
    return (f"{int(bad.sum())} of {bad.size} elements off, max abs err {err.max():.3g}, "
            f"max rel err {rel.max():.3g} (rtol {rtol:g}, atol {atol:g}); "
            f"first at {list(first)}: {a[first]:.7g} instead of {e[first]:.7g}")


def run_case(case_dir, args):
    name = case_dir.name
    info = json.loads((case_dir / "case.json").read_text())
    if args.device in info.get("devices_skip", []):
        return Outcome(name, passed=True, skipped=True)
    out = Path(tempfile.mkdtemp(prefix=f"kiln-e2e-{name}-"))
    cmd = [args.kiln, "run", show_path(ROOT / info["file"]), "-g", info["graph"],
           f"--device={args.device}"]
    for param in info["params"]:
        cmd += ["--in", f"{param}={show_path(case_dir / 'in' / f'{param}.npy')}"]
    for dim, size in info["dims"].items():
        cmd += ["--dim", f"{dim}={size}"]
    cmd += args.flag
    cmd += ["--out", str(out)]
    shown = shlex.join(cmd)
    try:
        try:
            proc = subprocess.run(cmd, capture_output=True, text=True, errors="replace",
                                  timeout=args.timeout)
        except subprocess.TimeoutExpired:
            return Outcome(name, False,
                           lines=[f"FAIL {name}: timed out after {args.timeout:g} s: {shown}"])
        except OSError as e:
            return Outcome(name, False, lines=[f"FAIL {name}: cannot run kiln ({e}): {shown}"])
        if proc.returncode != 0:
            stderr = proc.stderr.rstrip().splitlines()
            if len(stderr) > STDERR_LINES:
                stderr = stderr[:STDERR_LINES] + [f"... ({len(stderr) - STDERR_LINES} more lines)"]
            return Outcome(name, False, lines=[f"FAIL {name}: kiln exited with status "
                                               f"{proc.returncode}: {shown}"]
                           + ["    " + line for line in stderr])
        problems = []
        results = info["results"]
        written = sorted(p.name for p in out.glob("*.npy"))
        if len(written) != len(results):
            problems.append(f"kiln wrote {len(written)} result files, expected {len(results)}")
        for i, meta in enumerate(results):
            path = out / f"{i}.npy"
            if not path.exists():
                problems.append(f"result {i}: no {i}.npy")
                continue
            try:
                actual = np.load(path, allow_pickle=False)
            except (ValueError, OSError) as e:
                problems.append(f"result {i}: unreadable .npy ({e})")
                continue
            expected = np.load(case_dir / "expected" / f"{i}.npy", allow_pickle=False)
            problem = compare(actual, expected, meta, args.strict_dtype)
            if problem:
                problems.append(f"result {i}: {problem}")
        if problems:
            return Outcome(name, False, lines=[f"FAIL {name}: {'; '.join(problems)}: {shown}"])
        return Outcome(name, True)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def find_kiln(path):
    if os.sep in path or os.path.exists(path):
        return path if os.path.isfile(path) and os.access(path, os.X_OK) else None
    return shutil.which(path)


def main():
    ap = argparse.ArgumentParser(description="Compare kiln's results with NumPy's.")
    ap.add_argument("--kiln", default="build/kiln", help="the kiln binary (default build/kiln)")
    ap.add_argument("--data", required=True, help="the folder tests/gen/generate.py wrote")
    ap.add_argument("--device", default="ref", help="ref, cpu, cuda or cuda-emu (default ref)")
    ap.add_argument("--filter", default="", help="only cases whose name contains SUBSTR")
    ap.add_argument("-j", "--jobs", type=int, default=2, help="cases run at once (default 2)")
    ap.add_argument("--timeout", type=float, default=120, help="seconds per case (default 120)")
    ap.add_argument("--flag", action="append", default=[],
                    help="an extra kiln option such as -O0 (repeatable)")
    ap.add_argument("--label", default="", help="suffix of the summary label, e.g. O0")
    ap.add_argument("--strict-dtype", action="store_true",
                    help="require the exact dtype, not only its kind")
    args = ap.parse_args()
    label = f"e2e-{args.device}" + (f"-{args.label}" if args.label else "")

    data = Path(args.data)
    case_dirs = sorted(p.parent for p in data.glob("*/case.json")) if data.is_dir() else []
    if not case_dirs:
        print(f"{label}: no cases in {data}: write them with "
              f"/usr/bin/python3 tests/gen/generate.py {data}", file=sys.stderr)
        return 2
    case_dirs = [d for d in case_dirs if args.filter in d.name]

    kiln = find_kiln(args.kiln)
    if kiln is None:
        print(f"{label}: kiln binary not found or not executable: {args.kiln} "
              f"(build it with `make`)", file=sys.stderr)
        print(f"{label}: 0 passed, {len(case_dirs)} failed")
        return 1
    args.kiln = kiln

    passed = failed = skipped = 0
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        for outcome in pool.map(lambda d: run_case(d, args), case_dirs):
            if outcome.skipped:
                skipped += 1
            elif outcome.passed:
                passed += 1
            else:
                failed += 1
                print("\n".join(outcome.lines), flush=True)
    if skipped:
        print(f"{label}: {skipped} skipped (devices_skip)")
    print(f"{label}: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
