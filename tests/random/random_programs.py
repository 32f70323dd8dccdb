#!/usr/bin/env python3
"""Random-program differential test: kiln DEVICE against --device=ref.

Generates seeded, well-typed random programs (elementwise ops with
broadcasting, reductions, reshape, transpose, slices, matmul, concat, pad),
runs each on the device under test and on the reference interpreter with the
same random inputs (kiln's --seed), and compares the results with stated
tolerances (rtol 1e-4, atol 1e-5: values stay bounded because unbounded ops
are guarded, e.g. exp(-abs(x)), log(1 + abs(x))).

    random_programs.py --kiln build/kiln --device cpu --count 500 [--seed 1] [-j 2]

A failure prints the program.  Last line: `random-DEV: N passed, N failed`.
"""
import argparse
import random
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

RTOL, ATOL = 1e-4, 1e-5

UNARY = [
    "abs({})", "-{}", "exp(-abs({}))", "tanh({})", "sigmoid({})", "relu({})",
    "sqrt(abs({}))", "log(1.0 + abs({}))", "gelu({})", "silu({})", "erf({})",
    "sin({})", "cos({})", "floor({})", "ceil({})", "rsqrt(1.0 + abs({}))",
    "gelu({}, approximate=true)", "sign({})", "clamp({}, -0.5, 0.5)",
]
BINARY = ["({} + {})", "({} - {})", "({} * {})", "maximum({}, {})", "minimum({}, {})",
          "({} / (1.5 + abs({})))", "where({} > {}, 1.0, -1.0)"]
REDUCE = ["sum", "mean", "max", "min"]


class Gen:
    def __init__(self, rng):
        self.rng = rng
        self.params = []  # (name, shape)
        self.lines = []
        self.values = []  # (name, shape)
        self.count = 0

    def fresh(self):
        self.count += 1
        return f"v{self.count}"

    def param(self, shape):
        name = f"p{len(self.params)}"
        self.params.append((name, tuple(shape)))
        self.values.append((name, tuple(shape)))
        return name, tuple(shape)

    def bind(self, expr, shape):
        name = self.fresh()
        self.lines.append(f"    {name} = {expr}")
        self.values.append((name, tuple(shape)))
        return name, tuple(shape)

    def pick(self):
        return self.rng.choice(self.values)

    def broadcastable_shape(self, shape):
        """A shape that broadcasts against `shape`: a suffix, with some dims 1."""
        r = self.rng
        k = r.randint(0, len(shape))
        sub = list(shape[len(shape) - k:])
        return tuple(1 if r.random() < 0.3 else d for d in sub)

    def step(self):
        r = self.rng
        name, shape = self.pick()
        kind = r.choice(["unary", "unary", "binary", "binary", "reduce", "reshape",
                         "transpose", "slice", "matmul", "concat", "pad"])
        if kind == "unary":
            return self.bind(r.choice(UNARY).format(name), shape)
        if kind == "binary":
            other_shape = self.broadcastable_shape(shape)
            cands = [v for v in self.values if v[1] == other_shape]
            other = r.choice(cands)[0] if cands and r.random() < 0.5 else self.param(other_shape)[0]
            a, b = (name, other) if r.random() < 0.5 else (other, name)
            out = np.broadcast_shapes(shape, other_shape)
            tmpl = r.choice(BINARY)
            return self.bind(tmpl.format(a, b), out)
        if kind == "reduce" and shape:
            axis = r.randrange(len(shape))
            keep = r.random() < 0.5
            op = r.choice(REDUCE)
            out = list(shape)
            if keep:
                out[axis] = 1
            else:
                del out[axis]
            neg = axis - len(shape) if r.random() < 0.3 else axis
            return self.bind(f"{op}({name}, axis={neg}, keepdims={'true' if keep else 'false'})", out)
        if kind == "reshape" and shape:
            n = int(np.prod(shape))
            divisors = [d for d in range(1, n + 1) if n % d == 0]
            d = r.choice(divisors)
            out = (d, n // d) if r.random() < 0.7 else (n,)
            target = ", ".join(str(x) for x in out)
            if len(out) == 2 and r.random() < 0.3:
                target = f"{out[0]}, -1"
            return self.bind(f"reshape({name}, [{target}])", out)
        if kind == "transpose" and len(shape) >= 2:
            perm = list(range(len(shape)))
            r.shuffle(perm)
            out = tuple(shape[p] for p in perm)
            return self.bind(f"transpose({name}, [{', '.join(map(str, perm))}])", out)
        if kind == "slice" and shape:
            items, out = [], []
            for d in shape:
                a = r.randint(0, d - 1)
                b = r.randint(a + 1, d)
                s = r.choice([1, 1, 2])
                items.append(f"{a}:{b}:{s}")
                out.append(len(range(a, b, s)))
            return self.bind(f"{name}[{', '.join(items)}]", out)
        if kind == "matmul" and 1 <= len(shape) <= 3:
            k = shape[-1]
            n = r.randint(1, 6)
            w = self.param((k, n))[0]
            out = tuple(shape[:-1]) + (n,)
            return self.bind(f"({name} @ {w})", out)
        if kind == "concat" and shape:
            axis = r.randrange(len(shape))
            other = list(shape)
            other[axis] = r.randint(1, 4)
            o = self.param(other)[0]
            out = list(shape)
            out[axis] += other[axis]
            return self.bind(f"concat([{name}, {o}], axis={axis})", out)
        if kind == "pad" and shape:
            pads = [[r.randint(0, 2), r.randint(0, 2)] for _ in shape]
            out = [d + lo + hi for d, (lo, hi) in zip(shape, pads)]
            return self.bind(f"pad({name}, {pads}, value=0.5)", out)
        return self.bind(r.choice(UNARY).format(name), shape)


def make_program(seed):
    rng = random.Random(seed)
    g = Gen(rng)
    rank = rng.randint(1, 3)
    g.param(tuple(rng.randint(1, 6) for _ in range(rank)))
    for _ in range(rng.randint(2, 8)):
        g.step()
    results = [g.values[-1]]
    if rng.random() < 0.3 and len(g.values) > 2:
        results.append(g.values[rng.randrange(1, len(g.values) - 1)])
    params = ", ".join(f"{n}: f32[{', '.join(map(str, s))}]" for n, s in g.params)
    rtypes = [f"f32[{', '.join(map(str, s))}]" for _, s in results]
    rt = rtypes[0] if len(rtypes) == 1 else "(" + ", ".join(rtypes) + ")"
    body = "\n".join(g.lines)
    ret = ", ".join(n for n, _ in results)
    return f"graph random_{seed}({params}) -> {rt} {{\n{body}\n    return {ret}\n}}\n", len(results)


def run(kiln, path, device, outdir, flags):
    cmd = [kiln, "run", str(path), f"--device={device}", "--seed", "7", "--out", str(outdir) + "/"] + flags
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    return p.returncode, p.stderr


def check(args, seed):
    text, nres = make_program(seed)
    tmp = Path(tempfile.mkdtemp(prefix="kiln-random-"))
    try:
        src = tmp / "p.kiln"
        src.write_text(text)
        rc, err = run(args.kiln, src, "ref", tmp / "ref", ["-O0"])
        if rc != 0:
            return f"seed {seed}: the reference failed (exit {rc}):\n{err}\n{text}"
        rc, err = run(args.kiln, src, args.device, tmp / "dev", args.flag)
        if rc != 0:
            return f"seed {seed}: {args.device} failed (exit {rc}):\n{err}\n{text}"
        for i in range(nres):
            want = np.load(tmp / "ref" / f"{i}.npy")
            got = np.load(tmp / "dev" / f"{i}.npy")
            if want.shape != got.shape:
                return f"seed {seed}: result {i} shape {got.shape}, expected {want.shape}\n{text}"
            if not np.allclose(got, want, rtol=RTOL, atol=ATOL, equal_nan=True):
                err = np.max(np.abs(got.astype(np.float64) - want))
                return f"seed {seed}: result {i} differs, max abs error {err:.3g}\n{text}"
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kiln", default="build/kiln")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--count", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument("--flag", action="append", default=[], help="extra kiln option for the device run")
    ap.add_argument("--show", type=int, help="print the program of one seed and exit")
    args = ap.parse_args()
    if args.show is not None:
        print(make_program(args.show)[0])
        return 0
    seeds = range(args.seed, args.seed + args.count)
    passed = failed = 0
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for res in pool.map(lambda s: check(args, s), seeds):
            if res is None:
                passed += 1
            else:
                failed += 1
                print("FAIL", res)
    print(f"random-{args.device}: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
