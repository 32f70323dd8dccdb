#!/usr/bin/env python3
"""Random-program differential test: kiln DEVICE against --device=ref.

Generates seeded, well-typed random programs (elementwise ops with
broadcasting, reductions, reshape, transpose, slices, matmul, concat, pad),
runs each on the device under test and on the reference interpreter with the
same random inputs (kiln's --seed), and compares the results with stated
tolerances (rtol 1e-4, atol 1e-5: values stay bounded because unbounded ops
are guarded, e.g. exp(-abs(x)), log(1 + abs(x))).

    random_programs.py --kiln build/kiln --device cpu --count 500 [--seed 1] [-j 2]

With --ints the programs compute on i32 and i64 (wrapping arithmetic, %, **,
comparisons, where, casts between the integer widths and to f32/f64,
sum/prod/max/min/argmax/argmin, matmul, views, concat, pad) from inputs near
the ends of their ranges and beyond 2^53, return every value they make, and
every device named by --devices must agree with NumPy bit for bit (NumPy's
integer semantics are kiln's: docs/language.md, Numbers):

    random_programs.py --kiln build/kiln --ints --devices ref,kir,cpu,cuda-emu --count 40

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


# ---------------------------------------------------------------- integers

INT_INFO = {"i32": np.int32, "i64": np.int64}


def edge_values(rng, dt, n):
    """n values of dtype dt, many at or near the ends of the range (and, for
    i64, near 2^53 where doubles stop being exact)."""
    info = np.iinfo(INT_INFO[dt])
    pools = [[0, 1, -1, 2, -2, 3, 7, -7, 100], [info.max - k for k in range(4)], [info.min + k for k in range(4)]]
    if dt == "i64":
        pools.append([2**53 + k for k in (-1, 0, 1, 2, 3)] + [-(2**53) - k for k in (1, 3)] + [2**62 + 12345])
    else:
        pools.append([2**24 + 1, -(2**24) - 1, 46341, -46341, 65536])
    out = []
    for _ in range(n):
        if rng.random() < 0.2:
            out.append(rng.randint(int(info.min), int(info.max)))
        else:
            out.append(rng.choice(rng.choice(pools)))
    return out


class IntGen:
    """Random integer programs and their NumPy evaluation, side by side."""

    def __init__(self, rng):
        self.rng = rng
        self.params = []  # (name, dtype, shape, values)
        self.lines = []
        self.values = []  # (name, dtype, shape)
        self.env = {}  # name -> numpy array
        self.count = 0

    def param(self, dt, shape):
        name = f"p{len(self.params)}"
        vals = np.array(edge_values(self.rng, dt, int(np.prod(shape))), INT_INFO[dt]).reshape(shape)
        self.params.append((name, dt, tuple(shape), vals))
        self.values.append((name, dt, tuple(shape)))
        self.env[name] = vals
        return name

    def bind(self, expr, value):
        self.count += 1
        name = f"v{self.count}"
        self.lines.append(f"    {name} = {expr}")
        self.env[name] = value
        dt = {np.dtype(np.int32): "i32", np.dtype(np.int64): "i64", np.dtype(np.float32): "f32",
              np.dtype(np.float64): "f64", np.dtype(np.bool_): "bool"}[value.dtype]
        self.values.append((name, dt, value.shape))
        return name

    def ints(self):
        return [v for v in self.values if v[1] in INT_INFO]

    def same(self, dt, shape):
        """A value of dtype dt and this shape: an existing one or a new parameter."""
        cands = [v[0] for v in self.values if v[1] == dt and v[2] == shape]
        if cands and self.rng.random() < 0.6:
            return self.rng.choice(cands)
        return self.param(dt, shape)

    def step(self):
        r = self.rng
        name, dt, shape = r.choice(self.ints())
        x = self.env[name]
        T = INT_INFO[dt]
        info = np.iinfo(T)
        kind = r.choice(["unary", "binary", "binary", "binary", "literal", "pow", "where", "cast", "reduce",
                         "matmul", "view", "concat", "pad"])
        with np.errstate(all="ignore"):
            if kind == "unary":
                op = r.choice(["abs", "neg", "relu", "sign"])
                f = {"abs": (f"abs({name})", np.abs(x)), "neg": (f"-{name}", -x),
                     "relu": (f"relu({name})", np.maximum(x, T(0))), "sign": (f"sign({name})", np.sign(x))}[op]
                return self.bind(*f)
            if kind in ("binary", "literal"):
                if kind == "literal":
                    lit = r.choice([1, -1, 2, 3, 1000003, int(info.max), int(info.min) + 1, 2**31 - 1]
                                   + ([2**53 + 1, -(2**53) - 3, 2**62 + 1] if dt == "i64" else []))
                    other, y = (str(lit) if lit >= 0 else f"({lit})"), np.array(lit, T)
                else:
                    other = self.same(dt, shape)
                    y = self.env[other]
                op = r.choice(["+", "-", "*", "%", "max", "min", "==", "<", ">="])
                a, b, xa, xb = (name, other, x, y) if r.random() < 0.7 else (other, name, y, x)
                if op == "max":
                    return self.bind(f"maximum({a}, {b})", np.maximum(xa, xb))
                if op == "min":
                    return self.bind(f"minimum({a}, {b})", np.minimum(xa, xb))
                fn = {"+": np.add, "-": np.subtract, "*": np.multiply, "%": np.remainder,
                      "==": np.equal, "<": np.less, ">=": np.greater_equal}[op]
                return self.bind(f"({a} {op} {b})", np.asarray(fn(xa, xb)))
            if kind == "pow":
                k = r.choice([0, 1, 2, 3, 5])
                return self.bind(f"({name} ** {k})", np.power(x, T(k)))
            if kind == "where":
                other = self.same(dt, shape)
                c = self.env[other] > x
                return self.bind(f"where({other} > {name}, {name}, {other} - {name})",
                                 np.where(c, x, self.env[other] - x))
            if kind == "cast":
                to = r.choice(["i32", "i64", "f64", "f32"])
                npt = {"i32": np.int32, "i64": np.int64, "f64": np.float64, "f32": np.float32}[to]
                return self.bind(f"cast({name}, {to})", x.astype(npt))
            if kind == "reduce" and shape:
                axis = r.randrange(len(shape))
                op = r.choice(["sum", "prod", "max", "min", "argmax", "argmin"])
                if op in ("sum", "prod"):
                    v = getattr(np, op)(x, axis=axis, dtype=T)
                elif op in ("max", "min"):
                    v = getattr(np, op)(x, axis=axis)
                else:
                    v = getattr(np, op)(x, axis=axis).astype(np.int64)
                return self.bind(f"{op}({name}, axis={axis})", np.asarray(v))
            if kind == "matmul" and len(shape) == 2:
                w = self.param(dt, (shape[1], r.randint(1, 4)))
                return self.bind(f"({name} @ {w})", np.matmul(x, self.env[w]))
            if kind == "view" and shape:
                if len(shape) >= 2 and r.random() < 0.5:
                    perm = list(range(len(shape)))
                    r.shuffle(perm)
                    return self.bind(f"transpose({name}, [{', '.join(map(str, perm))}])", np.transpose(x, perm))
                items, sl = [], []
                for d in shape:
                    a = r.randint(0, d - 1)
                    b = r.randint(a + 1, d)
                    items.append(f"{a}:{b}")
                    sl.append(slice(a, b))
                return self.bind(f"{name}[{', '.join(items)}]", x[tuple(sl)])
            if kind == "concat" and shape:
                axis = r.randrange(len(shape))
                oshape = list(shape)
                oshape[axis] = r.randint(1, 3)
                o = self.param(dt, tuple(oshape))
                return self.bind(f"concat([{name}, {o}], axis={axis})", np.concatenate([x, self.env[o]], axis=axis))
            if kind == "pad" and shape:
                pads = [[r.randint(0, 1), r.randint(0, 1)] for _ in shape]
                val = r.choice([0, -5, int(info.max)])
                return self.bind(f"pad({name}, {pads}, value={val})", np.pad(x, pads, constant_values=T(val)))
            return self.bind(f"-{name}", -x)


def make_int_program(seed):
    """Returns the program's text, its parameters (name, values) and the
    expected results (NumPy arrays) in order."""
    rng = random.Random(seed)
    g = IntGen(rng)
    dt = rng.choice(["i32", "i64"])
    g.param(dt, tuple(rng.randint(1, 4) for _ in range(rng.randint(1, 2))))
    for _ in range(rng.randint(6, 14)):
        g.step()
    results = [v for v in g.values if not v[0].startswith("p")]
    params = ", ".join(f"{n}: {t}[{', '.join(map(str, s))}]" for n, t, s, _ in g.params)
    rtypes = [f"{t}[{', '.join(map(str, s))}]" for _, t, s in results]
    rt = rtypes[0] if len(rtypes) == 1 else "(" + ", ".join(rtypes) + ")"
    body = "\n".join(g.lines)
    text = f"graph ints_{seed}({params}) -> {rt} {{\n{body}\n    return {', '.join(n for n, _, _ in results)}\n}}\n"
    return text, [(n, v) for n, _, _, v in g.params], [g.env[n] for n, _, _ in results]


def check_ints(args, seed):
    text, params, want = make_int_program(seed)
    tmp = Path(tempfile.mkdtemp(prefix="kiln-ints-"))
    try:
        src = tmp / "p.kiln"
        src.write_text(text)
        ins = []
        for name, vals in params:
            np.save(tmp / f"{name}.npy", vals)
            ins += ["--in", f"{name}={tmp / (name + '.npy')}"]
        for dev in args.devices.split(","):
            out = tmp / dev
            p = subprocess.run([args.kiln, "run", str(src), f"--device={dev}", "--out", str(out) + "/"] + ins + args.flag,
                               capture_output=True, text=True, timeout=120)
            if p.returncode != 0:
                return f"seed {seed}: {dev} failed (exit {p.returncode}):\n{p.stderr}\n{text}"
            for i, w in enumerate(want):
                got = np.load(out / f"{i}.npy")
                if got.dtype != w.dtype or got.shape != w.shape or got.tobytes() != w.tobytes():
                    return (f"seed {seed}: {dev}: result {i} is {got.dtype}{list(got.shape)} {got.ravel()[:8]}, "
                            f"NumPy gives {w.dtype}{list(w.shape)} {w.ravel()[:8]}\n{text}")
        return None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


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
    ap.add_argument("--ints", action="store_true", help="integer programs, bit for bit against NumPy")
    ap.add_argument("--devices", default="ref,kir,cpu,cuda-emu", help="--ints: the devices to compare")
    args = ap.parse_args()
    if args.show is not None:
        print((make_int_program if args.ints else make_program)(args.show)[0])
        return 0
    seeds = range(args.seed, args.seed + args.count)
    passed = failed = 0
    one = (lambda s: check_ints(args, s)) if args.ints else (lambda s: check(args, s))
    if args.ints:
        args.device = "ints"
    with ThreadPoolExecutor(max_workers=args.jobs) as pool:
        for res in pool.map(one, seeds):
            if res is None:
                passed += 1
            else:
                failed += 1
                print("FAIL", res)
    print(f"random-{args.device}: {passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
