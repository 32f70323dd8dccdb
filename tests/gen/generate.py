#!/usr/bin/python3
"""Writes the data of kiln's end-to-end tests (the cases of cases.py).

    /usr/bin/python3 tests/gen/generate.py OUTDIR

For each case, OUTDIR/<case>/ gets
    in/<param>.npy        one input per graph parameter (bf16 parameters as f32 files
                          whose values are exact in bf16)
    expected/<i>.npy      the i-th result as NumPy computes it, rounded to the declared
                          dtype (bf16 results as f32 files)
    case.json             {"file", "graph", "dims", "rtol", "atol", "devices_skip",
                           "params", "results": [{"dtype", "shape", "rtol", "atol"}]}
tests/e2e.py runs kiln on them.  The output depends only on this directory and the
.kiln files: every input comes from np.random.default_rng(a seed made from the case
name), so adding a case changes no other case.  Case folders of OUTDIR that are no
longer in the list are removed.

Shapes and dtypes are read from the graph's signature in its .kiln file; every expected
result is checked against the declared type, so a wrong case fails here, not in kiln.
"""
import json
import re
import shutil
import sys
import zlib
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cases  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]

NUMPY_DTYPE = {"f32": np.float32, "f16": np.float16, "bf16": np.float32, "f64": np.float64,
               "i32": np.int32, "i64": np.int64, "bool": np.bool_}
FLOATS = ("f32", "f16", "bf16", "f64")
# (rtol, atol) per result dtype; integers and bool compare exactly.
TOLERANCES = {"f32": (1e-4, 1e-5), "f16": (1e-2, 1e-3), "bf16": (2e-2, 1e-2),
              "f64": (1e-9, 1e-9), "i32": (0.0, 0.0), "i64": (0.0, 0.0), "bool": (0.0, 0.0)}


class CaseError(Exception):
    pass


# ----------------------------------------------------------------------------------------
# Graph signatures: graph NAME(p: DTYPE[D, ...], ...) -> TYPE | (TYPE, ...) {


def _split_top(text):
    """Splits at commas outside brackets."""
    parts, depth, start = [], 0, 0
    for i, ch in enumerate(text):
        if ch in "([":
            depth += 1
        elif ch in ")]":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append(text[start:i])
            start = i + 1
    parts.append(text[start:])
    return [p.strip() for p in parts if p.strip()]


_TYPE = re.compile(r"^(f32|f16|bf16|f64|i32|i64|bool)\s*(?:\[(.*)\])?$", re.S)


def _parse_type(text):
    m = _TYPE.match(text.strip())
    if not m:
        raise CaseError(f"cannot read the type '{text}'")
    dims = [int(d) if d.isdigit() else d for d in _split_top(m.group(2) or "")]
    return m.group(1), dims


def parse_graphs(path):
    """{graph name: (params [(name, dtype, dims)], results [(dtype, dims)])} of a file."""
    text = re.sub(r"#[^\n]*", "", path.read_text())
    graphs = {}
    for m in re.finditer(r"\bgraph\s+([A-Za-z_]\w*)\s*\(", text):
        depth, i = 1, m.end()
        while depth:
            depth += {"(": 1, ")": -1}.get(text[i], 0)
            i += 1
        params = []
        for p in _split_top(text[m.end():i - 1]):
            name, _, type_text = p.partition(":")
            params.append((name.strip(), *_parse_type(type_text)))
        head = re.match(r"\s*->\s*([^{]*)\{", text[i:])
        if not head:
            raise CaseError(f"{path}: graph {m.group(1)}: cannot read the result types")
        result_text = head.group(1).strip()
        if result_text.startswith("("):
            results = [_parse_type(t) for t in _split_top(result_text[1:-1])]
        else:
            results = [_parse_type(result_text)]
        graphs[m.group(1)] = (params, results)
    return graphs


# ----------------------------------------------------------------------------------------
# Values


def to_bf16(a):
    """Rounds to bf16 (nearest, ties to even) and returns the values as float32."""
    bits = np.asarray(a, dtype=np.float32).reshape(-1).view(np.uint32).astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16 << 16
    return bits.astype(np.uint32).view(np.float32).reshape(np.shape(a))


def to_dtype(a, dtype):
    """a, converted to what a .npy file of that kiln dtype holds."""
    a = np.asarray(a)
    if dtype == "bool":
        return a != 0
    if dtype in ("i32", "i64"):
        if a.dtype.kind == "f" and not np.all(a == np.round(a)):
            raise CaseError(f"non-integer values for an {dtype} tensor")
        info = np.iinfo(NUMPY_DTYPE[dtype])
        if a.size and (a.min() < info.min or a.max() > info.max):
            raise CaseError(f"values out of the range of {dtype}")
        return a.astype(NUMPY_DTYPE[dtype])
    if dtype == "bf16":
        return to_bf16(a)
    return a.astype(NUMPY_DTYPE[dtype])


def resolve(dims, bindings, what):
    shape = []
    for d in dims:
        if isinstance(d, str):
            if d not in bindings:
                raise CaseError(f"{what}: symbolic dimension {d} is not bound in dims")
            d = bindings[d]
        shape.append(d)
    return tuple(shape)


def draw_input(case, rng, name, dtype, shape):
    gen = case.inputs.get(name)
    if gen is None:
        if dtype in FLOATS:
            gen = cases.normal()
        elif dtype == "bool":
            gen = lambda rng, shape: rng.random(shape) < 0.5  # noqa: E731
        else:
            gen = cases.ints(-10, 10)
    values = np.asarray(gen(rng, shape))
    if values.shape != shape:
        raise CaseError(f"input {name}: generator gave shape {values.shape}, wanted {shape}")
    return to_dtype(values, dtype)


def for_numpy(array, dtype):
    """What `expect` receives: floats in float64, integers and bool as they are."""
    return array.astype(np.float64) if dtype in FLOATS else array


def expected_result(value, dtype, shape, index):
    value = np.asarray(value)
    if dtype == "bool" and value.dtype.kind != "b":
        raise CaseError(f"result {index}: expected a bool array for bool, got {value.dtype}")
    if dtype in ("i32", "i64") and value.dtype.kind not in "iub":
        raise CaseError(f"result {index}: expected an integer array for {dtype}, got {value.dtype}")
    if value.shape != shape:
        raise CaseError(f"result {index}: NumPy gives shape {value.shape}, the graph declares {shape}")
    out = to_dtype(value, dtype)
    if dtype in FLOATS and not np.all(np.isfinite(out)):
        raise CaseError(f"result {index}: not finite in {dtype} (ill-conditioned inputs?)")
    return out


def tolerance(case, dtype):
    if dtype not in FLOATS:
        return TOLERANCES[dtype]
    if case.tol is None:
        return TOLERANCES[dtype]
    if isinstance(case.tol, str):
        return TOLERANCES[case.tol]
    return tuple(case.tol)


# ----------------------------------------------------------------------------------------


def build_case(case, graphs):
    if case.graph not in graphs:
        raise CaseError(f"no graph '{case.graph}' in {case.file}")
    params, results = graphs[case.graph]
    names = [p[0] for p in params]
    unknown = set(case.inputs) - set(names)
    if unknown:
        raise CaseError(f"inputs for parameters the graph lacks: {sorted(unknown)}")
    used = {d for _, _, dims in params for d in dims if isinstance(d, str)}
    if set(case.dims) != used:
        raise CaseError(f"dims {sorted(case.dims)} do not match the graph's symbolic dims "
                        f"{sorted(used)}")

    rng = np.random.default_rng(zlib.crc32(case.name.encode()))
    inputs = {name: draw_input(case, rng, name, dtype, resolve(dims, case.dims, name))
              for name, dtype, dims in params}
    value = case.expect(**{name: for_numpy(inputs[name], dtype) for name, dtype, _ in params})
    values = list(value) if isinstance(value, tuple) else [value]
    if len(values) != len(results):
        raise CaseError(f"expect gives {len(values)} results, the graph declares {len(results)}")
    expected, meta = [], []
    for i, (v, (dtype, dims)) in enumerate(zip(values, results)):
        shape = resolve(dims, case.dims, f"result {i}")
        expected.append(expected_result(v, dtype, shape, i))
        rtol, atol = tolerance(case, dtype)
        meta.append({"dtype": dtype, "shape": list(shape), "rtol": rtol, "atol": atol})
    info = {
        "file": case.file,
        "graph": case.graph,
        "dims": dict(case.dims),
        "rtol": max(m["rtol"] for m in meta),
        "atol": max(m["atol"] for m in meta),
        "devices_skip": list(case.devices_skip),
        "params": names,
        "results": meta,
    }
    return inputs, expected, info


def write_case(outdir, case, inputs, expected, info):
    d = outdir / case.name
    if d.exists():
        shutil.rmtree(d)
    (d / "in").mkdir(parents=True)
    (d / "expected").mkdir()
    for name, array in inputs.items():
        np.save(d / "in" / f"{name}.npy", array)
    for i, array in enumerate(expected):
        np.save(d / "expected" / f"{i}.npy", array)
    (d / "case.json").write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")


def main(argv):
    if len(argv) != 2 or argv[1].startswith("-"):
        print(__doc__.strip().splitlines()[2].strip(), file=sys.stderr)
        return 2
    outdir = Path(argv[1])
    outdir.mkdir(parents=True, exist_ok=True)

    names = [c.name for c in cases.CASES]
    dups = {n for n in names if names.count(n) > 1}
    if dups:
        print(f"generate: duplicate case names: {sorted(dups)}", file=sys.stderr)
        return 1

    graphs_of = {}
    failed = 0
    for case in cases.CASES:
        try:
            if case.file not in graphs_of:
                graphs_of[case.file] = parse_graphs(ROOT / case.file)
            write_case(outdir, case, *build_case(case, graphs_of[case.file]))
        except (CaseError, TypeError, ValueError, KeyError) as e:
            print(f"generate: {case.name}: {e}", file=sys.stderr)
            failed += 1

    for stale in sorted(outdir.iterdir()):
        if (stale / "case.json").exists() and stale.name not in names:
            shutil.rmtree(stale)

    # Every graph of the test and example files should be run by some case.
    covered = {(c.file, c.graph) for c in cases.CASES}
    for path in sorted(ROOT.glob("tests/ops/*.kiln")) + sorted(ROOT.glob("examples/*.kiln")):
        rel = path.relative_to(ROOT).as_posix()
        for graph in parse_graphs(path):
            if (rel, graph) not in covered:
                print(f"generate: note: no case runs graph {graph} of {rel}", file=sys.stderr)

    print(f"generate: {len(cases.CASES) - failed} cases written to {outdir}"
          + (f", {failed} failed" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
