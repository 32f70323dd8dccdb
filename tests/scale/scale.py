#!/usr/bin/env python3
"""Programs as large as a generator makes them (issue 15): nothing in kiln may
recurse once per statement, term or call, nor take more than n log n time.

    scale.py --kiln build/kiln

Each case runs kiln on a generated program and checks the result against
NumPy (float32, rtol 1e-4) or the message it must give.  Timeouts only catch a
hang or a crash-by-recursion (a stack overflow is a SIGSEGV); the time each
case took is printed, never asserted.  Last line: `scale: N passed, N failed`.
"""
import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

LIMIT = 300  # seconds: a hang, not a speed bound

passed = failed = 0


def ok(name, dt):
    global passed
    passed += 1
    print(f"ok   {name} ({dt:.1f} s)")


def bad(name, why):
    global failed
    failed += 1
    print(f"FAIL {name}: {why}")


def kiln(args, cmd):
    t0 = time.monotonic()
    try:
        p = subprocess.run([args.kiln] + cmd, capture_output=True, text=True, timeout=LIMIT)
    except subprocess.TimeoutExpired:
        return None, "", f"no answer within {LIMIT} s", LIMIT
    return p.returncode, p.stdout, p.stderr, time.monotonic() - t0


def expect_value(args, name, path, want, device="cpu", extra=()):
    rc, out, err, dt = kiln(args, ["run", str(path), f"--device={device}", "--in", f"x={path.parent / 'x.npy'}",
                                   "--out", str(path.parent / f"{name}.npy")] + list(extra))
    if rc != 0:
        return bad(name, f"exit {rc}: {err[-500:]}")
    got = np.load(path.parent / f"{name}.npy")
    if got.shape != want.shape or not np.allclose(got, want, rtol=1e-4, atol=1e-5):
        return bad(name, f"{got} instead of {want}")
    ok(name, dt)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kiln", default="build/kiln")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="kiln-scale-"))
    x = np.array([0.5, -0.25, 0.75, -1.0], np.float32)
    np.save(tmp / "x.npy", x)
    one = np.float32(1)

    # 100,000 statements in a chain: one long elementwise expression (cut into
    # kernels of bounded size), with a reduction every 10,000 lines
    n = 100_000
    lines = ["graph lines(x: f32[4]) -> f32[4] {", "    v0 = x"]
    v = x.copy()
    for i in range(1, n):
        p = f"v{i - 1}"
        if i % 10_000 == 0:
            lines.append(f"    v{i} = tanh({p} - mean({p}, axis=0, keepdims=true))")
            v = np.tanh(v - np.mean(v, axis=0, keepdims=True, dtype=np.float32))
        elif i % 4 == 0:
            lines.append(f"    v{i} = {p} * 0.5 + x")
            v = v * np.float32(0.5) + x
        elif i % 4 == 1:
            lines.append(f"    v{i} = maximum({p}, -2.0)")
            v = np.maximum(v, np.float32(-2))
        elif i % 4 == 2:
            lines.append(f"    v{i} = {p} + 1.0")
            v = v + one
        else:
            lines.append(f"    v{i} = relu({p}) - 0.5")
            v = np.maximum(v, 0) - np.float32(0.5)
    lines += [f"    return v{n - 1}", "}"]
    (tmp / "lines.kiln").write_text("\n".join(lines) + "\n")
    expect_value(args, "100k-line program on cpu", tmp / "lines.kiln", v.astype(np.float32))

    # one expression of 30,000 terms
    terms = 30_000
    (tmp / "terms.kiln").write_text("graph terms(x: f32[4]) -> f32[4] {\n    return "
                                    + " + ".join(["x * 0.001"] * terms) + "\n}\n")
    want = np.float32(0)
    for _ in range(terms):
        want = want + x * np.float32(0.001)
    expect_value(args, "30,000-term expression on cpu", tmp / "terms.kiln", want)
    rc, out, err, dt = kiln(args, ["emit", str(tmp / "terms.kiln"), "--emit=ast"])
    if rc == 0 and out.count("(+ ") == terms - 1:
        ok("30,000-term expression: emit --emit=ast", dt)
    else:
        bad("30,000-term expression: emit --emit=ast", f"exit {rc}: {err[-300:]}")

    # a value used twice at every level of one kernel: lowered once per level
    dag = ["graph dag(x: f32[4]) -> f32[4] {", "    a0 = x"]
    v = x.copy()
    for i in range(1, 80):
        dag.append(f"    a{i} = tanh(a{i - 1} * a{i - 1} - a{i - 1})")
        v = np.tanh(v * v - v)
    dag += ["    return a79", "}"]
    (tmp / "dag.kiln").write_text("\n".join(dag) + "\n")
    expect_value(args, "shared values in one kernel (80 levels)", tmp / "dag.kiln", v)

    # graph calls: 5,000 in a chain are checked in one pass; 900 levels run;
    # past the inlining limit, one clear error
    def chain(m):
        return "\n".join(f"graph g{i}(x: f32[4]) -> f32[4] {{\n    return "
                         + (f"g{i + 1}(x) + 1.0" if i + 1 < m else "x * 2.0") + "\n}\n" for i in range(m))
    (tmp / "calls.kiln").write_text(chain(5000))
    rc, out, err, dt = kiln(args, ["check", str(tmp / "calls.kiln")])
    if rc == 1 and err.count("error:") == 1 and "nest more than" in err:
        ok("5,000 chained graph calls: check", dt)
    else:
        bad("5,000 chained graph calls: check", f"exit {rc}: {err[-500:]}")
    (tmp / "calls900.kiln").write_text(chain(900))
    rc, out, err, dt = kiln(args, ["check", str(tmp / "calls900.kiln")])
    if rc == 0:
        ok("900 chained graph calls: check", dt)
    else:
        bad("900 chained graph calls: check", f"exit {rc}: {err[-500:]}")
    expect_value(args, "900 chained graph calls on ref", tmp / "calls900.kiln", x * 2 + np.float32(899), "ref")

    # nesting: one message, the long line shown only around the place
    for name, body in [("100,000 nested brackets", "(" * 100_000 + "x" + ")" * 100_000),
                       ("100,000 unary minus signs", "-" * 100_000 + "x")]:
        (tmp / "deep.kiln").write_text("graph deep(x: f32[4]) -> f32[4] {\n    return " + body + "\n}\n")
        rc, out, err, dt = kiln(args, ["check", str(tmp / "deep.kiln")])
        if rc == 1 and err.count("error:") == 1 and "nests too deeply" in err and len(err) < 2000:
            ok(name, dt)
        else:
            bad(name, f"exit {rc}, {err.count('error:')} errors, {len(err)} bytes of messages: {err[:300]}")

    print(f"scale: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
