#!/usr/bin/python3
"""Sizes where 32-bit GPU code breaks, on --device=cuda-emu (the generated CUDA C,
run on the host with device memory poisoned: KILN_EMU=poison,reverse), against
NumPy or exact answers:

  tall_matmul   a: f32[4194400, 2] @ b: f32[2, 3]: 65538 row tiles, more than
                grid.y's 65535; every row must be written (issue 12, item 4)
  sum_2g        sum over 2147483000 elements (a broadcast of one value): a
                loop counter within a block's stride of 2^31 (item 5)
  argmax_2g     argmax of arange(2147483000, i64): the index, exact
With KILN_LONG=1 (make test-long), and when the machine has the memory (about
19 GiB free: the 24 GiB machines have it):
  sum_2g_real   sum of a real f32[2147483000] input (8 GiB, written by NumPy),
                whose exact value is known
  elementwise_2g  2^31 + 4100 elements written by an elementwise kernel (bool,
                2 GiB), every one of them checked

    /usr/bin/python3 tests/cuda/large.py --kiln build/kiln
Last line: "cuda-large: N passed, N failed".
"""
import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

N2G = 2147483000  # within 648 of 2^31: an int counter stepping by 1024 overflows
NBIG = 2**31 + 4100  # past 2^31 elements
SOURCE = f"""
graph tall_matmul(a: f32[4194400, 2], b: f32[2, 3]) -> f32[4194400, 3] {{
    return a @ b
}}
graph sum_2g(x: f32[1]) -> f32 {{
    return sum(broadcast(x, [{N2G}]))
}}
graph argmax_2g() -> i64 {{
    return argmax(arange({N2G}, i64))
}}
graph sum_2g_real(x: f32[{N2G}]) -> f32 {{
    return sum(x)
}}
graph elementwise_2g(x: f32[1]) -> bool[{NBIG}] {{
    return broadcast(x, [{NBIG}]) > 0.25
}}
"""


def mem_available_gib():
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 2**20
    except OSError:
        pass
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", default="build/kiln")
    ap.add_argument("--timeout", type=float, default=300)
    args = ap.parse_args()
    env = dict(os.environ, KILN_EMU="poison,reverse")
    passed = failed = 0

    def report(ok, what):
        nonlocal passed, failed
        if ok:
            passed += 1
        else:
            failed += 1
            print(f"FAIL {what}")

    with tempfile.TemporaryDirectory(prefix="kiln-large-") as tmp:
        tmp = Path(tmp)
        src = tmp / "large.kiln"
        src.write_text(SOURCE)

        def run(graph, extra):
            cmd = [args.kiln, "run", str(src), "-g", graph, "--device=cuda-emu"] + extra
            try:
                p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=args.timeout)
            except subprocess.TimeoutExpired:
                return None, f"timed out after {args.timeout:g} s: {' '.join(cmd)}"
            if p.returncode != 0:
                return None, f"exit {p.returncode}: {' '.join(cmd)}\n{p.stderr[-2000:]}"
            return p, ""

        rng = np.random.default_rng(12)
        a = (rng.random((4194400, 2), dtype=np.float32) * 2 - 1).astype(np.float32)
        b = (rng.random((2, 3), dtype=np.float32) * 2 - 1).astype(np.float32)
        np.save(tmp / "a.npy", a)
        np.save(tmp / "b.npy", b)
        p, why = run("tall_matmul", ["--in", f"a={tmp / 'a.npy'}", "--in", f"b={tmp / 'b.npy'}",
                                     "--out", str(tmp / "mm.npy")])
        if p is None:
            report(False, f"tall_matmul: {why}")
        else:
            got = np.load(tmp / "mm.npy")
            want = a.astype(np.float64) @ b.astype(np.float64)
            bad = ~np.isclose(got, want, rtol=1e-5, atol=1e-6)
            rows = np.argwhere(bad.any(axis=1)).ravel()
            report(not bad.any(), f"tall_matmul: {bad.sum()} wrong elements, first rows {rows[:4].tolist()} "
                   f"(of {got.shape[0]}; unwritten rows are NaN under KILN_EMU=poison)")

        np.save(tmp / "half.npy", np.array([0.5], dtype=np.float32))
        p, why = run("sum_2g", ["--in", f"x={tmp / 'half.npy'}", "--out", str(tmp / "s.npy")])
        if p is None:
            report(False, f"sum_2g: {why}")
        else:
            got = float(np.load(tmp / "s.npy"))
            report(abs(got - 0.5 * N2G) <= 1e-6 * 0.5 * N2G, f"sum_2g: {got}, expected {0.5 * N2G}")

        p, why = run("argmax_2g", ["--out", str(tmp / "i.npy")])
        if p is None:
            report(False, f"argmax_2g: {why}")
        else:
            got = int(np.load(tmp / "i.npy"))
            report(got == N2G - 1, f"argmax_2g: {got}, expected {N2G - 1}")

        if os.environ.get("KILN_LONG"):
            # x[i] = (i % 7) - 3 as a real 8 GiB input: every partial sum a thread,
            # warp or block makes stays a small integer (1024 % 7 == 2, and each
            # period of 7 sums to 0), so f32 sums it exactly and the answer is known
            need = 2.2 * N2G * 4 / 2**30  # kiln's copy of the input, page cache, slack
            if mem_available_gib() < need:
                print(f"skip: sum_2g_real needs about {need:.0f} GiB, {mem_available_gib():.0f} GiB available")
            else:
                path = tmp / "x.npy"
                x = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(N2G,))
                step = 1 << 26
                for lo in range(0, N2G, step):
                    hi = min(N2G, lo + step)
                    x[lo:hi] = (np.arange(lo, hi, dtype=np.int64) % 7 - 3).astype(np.float32)
                x.flush()
                del x
                want = sum(i % 7 - 3 for i in range(N2G - N2G % 7, N2G))  # whole periods give 0
                p, why = run("sum_2g_real", ["--in", f"x={path}", "--out", str(tmp / "r.npy")])
                path.unlink()
                if p is None:
                    report(False, f"sum_2g_real: {why}")
                else:
                    got = float(np.load(tmp / "r.npy"))
                    report(got == want, f"sum_2g_real: {got}, expected {want}")
            p, why = run("elementwise_2g", ["--in", f"x={tmp / 'half.npy'}", "--out", str(tmp / "e.npy")])
            if p is None:
                report(False, f"elementwise_2g: {why}")
            else:
                got = np.load(tmp / "e.npy", mmap_mode="r")
                n_true = int(np.count_nonzero(got))  # poison (0xA5) counts as not 0/1 below
                raw = np.asarray(got).view(np.uint8)
                report(got.shape == (NBIG,) and n_true == NBIG and int(raw.max()) == 1,
                       f"elementwise_2g: {n_true} of {NBIG} true, shape {got.shape}, largest byte {int(raw.max())}")
                del got, raw
                (tmp / "e.npy").unlink()
    print(f"cuda-large: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
