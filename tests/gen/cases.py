"""The end-to-end cases: each runs one graph of a .kiln file on seeded inputs and
compares its results with NumPy's.

A case names its file and graph, binds the graph's symbolic dimensions, says how to
draw each parameter's input (parameters not named get the default for their dtype) and
gives `expect`, a function whose keyword arguments are the graph's parameters and which
returns the expected result (or a tuple of them, one per declared result).

generate.py reads the graph's signature from the .kiln file, so shapes and dtypes live
in one place: it draws the inputs with the declared shapes, rounds them to the declared
dtypes, hands them to `expect` as float64 (floating dtypes) or as they are (integers and
bool), and rounds each expected result to its declared dtype.  The NumPy here is the
oracle: nothing is ever taken from kiln.

Inputs are chosen to keep the results well-conditioned: positive values for log, sqrt
and fractional powers, values away from integers for floor/ceil/round/cast, no ties for
argmax unless ties are the point, and in f16/bf16 multiples of 0.5 where a sum of
products would otherwise depend on the order of the rounding.
"""
import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# ----------------------------------------------------------------------------------------
# Input generators: gen(rng, shape) -> ndarray of float64 or int64 values.  generate.py
# rounds the values to the parameter's dtype (and checks ints go to integer parameters).


def normal(scale=1.0, mean=0.0):
    return lambda rng, shape: mean + scale * rng.standard_normal(shape)


def uniform(lo, hi):
    return lambda rng, shape: rng.uniform(lo, hi, shape)


def nonzero(lo=0.5, hi=2.0):
    """Magnitudes in [lo, hi) with random signs: safe divisors."""
    return lambda rng, shape: rng.choice([-1.0, 1.0], shape) * rng.uniform(lo, hi, shape)


def ints(lo, hi):
    """Integers in [lo, hi], inclusive."""
    return lambda rng, shape: rng.integers(lo, hi + 1, shape)


def nonzero_ints(lo, hi):
    return lambda rng, shape: rng.choice([-1, 1], shape) * rng.integers(lo, hi + 1, shape)


def choice(*values):
    return lambda rng, shape: rng.choice(np.array(values, dtype=np.float64), shape)


def halves(lo=-2.0, hi=2.0):
    """Multiples of 0.5 in [lo, hi]: exact in every float dtype, and so are small sums
    and products of them."""
    return lambda rng, shape: rng.integers(int(2 * lo), int(2 * hi) + 1, shape) / 2.0


def offgrid(n=5):
    """k + f with k an integer in [-n, n] and f in (0.1, 0.4) or (0.6, 0.9): far from
    both integers and halves, for floor, ceil, round and casts to integers."""

    def gen(rng, shape):
        frac = rng.uniform(0.1, 0.4, shape) + rng.choice([0.0, 0.5], shape)
        return rng.integers(-n, n + 1, shape) + frac

    return gen


def distinct(step=0.25):
    """Pairwise distinct values (a shuffled ramp), for argmax/argmin without ties."""

    def gen(rng, shape):
        size = int(np.prod(shape, dtype=np.int64))
        return ((rng.permutation(size) - size // 2) * step).reshape(shape)

    return gen


def with_zeros(gen, p=0.25):
    """gen's values with about a fraction p replaced by exact zeros."""
    return lambda rng, shape: np.where(rng.random(shape) < p, 0.0, gen(rng, shape))


def values(*vals):
    """Fixed values, reshaped to the parameter's shape."""
    return lambda rng, shape: np.array(vals, dtype=np.float64).reshape(shape)


POS = uniform(0.5, 2.0)
HALVES = halves()
NZ_HALVES = choice(-2.0, -1.5, -1.0, -0.5, 0.5, 1.0, 1.5, 2.0)


def fan_in(n):
    """Weights scaled like a default initialiser, so activations stay near 1."""
    return normal(1.0 / math.sqrt(n))


# ----------------------------------------------------------------------------------------
# NumPy references for kiln's built-ins (computed in float64).

erf = np.vectorize(math.erf, otypes=[np.float64])


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def relu(x):
    return np.maximum(x, 0).astype(x.dtype)


def gelu(x):
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def silu(x):
    return x * sigmoid(x)


def rsqrt(x):
    return 1.0 / np.sqrt(x)


def softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def log_softmax(x, axis=-1):
    s = x - x.max(axis=axis, keepdims=True)
    return s - np.log(np.exp(s).sum(axis=axis, keepdims=True))


def _along(v, ndim, axis):
    """A 1-D vector shaped to broadcast along `axis` of an ndim-dimensional tensor."""
    shape = [1] * ndim
    shape[axis] = -1
    return v.reshape(shape)


def layernorm(x, gamma, beta, axis=-1, eps=1e-5):
    mu = x.mean(axis=axis, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axis, keepdims=True)
    y = (x - mu) / np.sqrt(var + eps)
    return y * _along(gamma, x.ndim, axis) + _along(beta, x.ndim, axis)


def rmsnorm(x, gamma, axis=-1, eps=1e-6):
    ms = (x * x).mean(axis=axis, keepdims=True)
    return x / np.sqrt(ms + eps) * _along(gamma, x.ndim, axis)


def linear(x, w, b=None):
    y = x @ w.T
    return y if b is None else y + b


def _pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def _pads4(padding):
    """(top, bottom, left, right) from an int, a pair [h, w] or [[top, bottom], [left, right]]."""
    if isinstance(padding, int):
        return (padding,) * 4
    if isinstance(padding[0], (list, tuple)):
        return (padding[0][0], padding[0][1], padding[1][0], padding[1][1])
    return (padding[0], padding[0], padding[1], padding[1])


def conv2d(x, w, b=None, stride=1, padding=0, dilation=1, groups=1):
    """NCHW x OIHW, zero padding (symmetric or [[top, bottom], [left, right]]), as
    PyTorch's conv2d."""
    (sh, sw), (dh, dw) = _pair(stride), _pair(dilation)
    pt, pb, pl, pr = _pads4(padding)
    x = np.pad(x, ((0, 0), (0, 0), (pt, pb), (pl, pr)))
    n, _, h, wd = x.shape
    o, cg, kh, kw = w.shape
    oh = (h - dh * (kh - 1) - 1) // sh + 1
    ow = (wd - dw * (kw - 1) - 1) // sw + 1
    og = o // groups
    out = np.zeros((n, o, oh, ow))
    for g in range(groups):
        xg = x[:, g * cg:(g + 1) * cg]
        wg = w[g * og:(g + 1) * og]
        for i in range(kh):
            for j in range(kw):
                patch = xg[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh,
                           j * dw:j * dw + sw * (ow - 1) + 1:sw]
                out[:, g * og:(g + 1) * og] += np.einsum("nchw,oc->nohw", patch, wg[:, :, i, j])
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


def _pool(x, kernel, stride, padding, pad_value, reduce):
    (kh, kw) = _pair(kernel)
    (sh, sw) = _pair(kernel if stride is None else stride)
    (ph, pw) = _pair(padding)
    x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
    oh = (x.shape[2] - kh) // sh + 1
    ow = (x.shape[3] - kw) // sw + 1
    windows = [x[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]
               for i in range(kh) for j in range(kw)]
    return reduce(np.stack(windows), axis=0)


def maxpool2d(x, kernel, stride=None, padding=0):
    return _pool(x, kernel, stride, padding, -np.inf, np.max)


def avgpool2d(x, kernel, stride=None, padding=0):
    """Padded zeros count in the average (PyTorch's count_include_pad=True)."""
    return _pool(x, kernel, stride, padding, 0.0, np.mean)


def _pool_out(size, k, s, before, after, ceil):
    """Output size along one axis; with ceil_mode a last window may not start in the
    padding after the input (PyTorch's rule)."""
    num = size + before + after - k
    out = (num + (s - 1 if ceil else 0)) // s + 1
    if ceil and (out - 1) * s >= size + before:
        out -= 1
    return out


def pool2d(x, kind, kernel, stride=None, padding=0, ceil_mode=False, count_include_pad=True):
    """max or avg pooling window by window.  avg divides by the window cut at the end
    of the padded input (count_include_pad) or by its elements inside the input."""
    (kh, kw) = _pair(kernel)
    (sh, sw) = _pair(kernel if stride is None else stride)
    pt, pb, pl, pr = _pads4(padding)
    n, c, h, w = x.shape
    oh = _pool_out(h, kh, sh, pt, pb, ceil_mode)
    ow = _pool_out(w, kw, sw, pl, pr, ceil_mode)
    out = np.zeros((n, c, oh, ow))
    for i in range(oh):
        for j in range(ow):
            h0, w0 = i * sh - pt, j * sw - pl
            win = x[:, :, max(h0, 0):min(h0 + kh, h), max(w0, 0):min(w0 + kw, w)]
            if kind == "max":
                out[:, :, i, j] = win.max(axis=(2, 3))
            elif count_include_pad:
                cnt = (min(h0 + kh, h + pb) - h0) * (min(w0 + kw, w + pr) - w0)
                out[:, :, i, j] = win.sum(axis=(2, 3)) / cnt
            else:
                out[:, :, i, j] = win.mean(axis=(2, 3))
    return out


def take(x, i, axis=0):
    """np.take with kiln's rule: negative indices from the end, the rest clamped."""
    n = x.shape[axis]
    i = np.asarray(i, dtype=np.int64)
    return np.take(x, np.clip(np.where(i < 0, i + n, i), 0, n - 1), axis=axis)


def batchnorm(x, mean, var, gamma, beta, axis=1, eps=1e-5):
    a = lambda v: _along(v, x.ndim, axis)
    return (x - a(mean)) / np.sqrt(a(var) + eps) * a(gamma) + a(beta)


def leaky_relu(x, alpha=0.01):
    return np.where(x > 0, x, alpha * x)


def hardsigmoid(x, alpha=0.2, beta=0.5):
    return np.clip(alpha * x + beta, 0.0, 1.0)


def global_avgpool(x):
    return x.mean(axis=(2, 3), keepdims=True)


def f16(x):
    """x rounded to f16 (for a computation the graph itself does in f16)."""
    return np.asarray(x).astype(np.float16).astype(np.float64)


# ----------------------------------------------------------------------------------------
# The case list.


@dataclass
class Case:
    name: str
    file: str              # relative to the repository root
    graph: str
    expect: object         # f(**inputs) -> array or tuple of arrays
    inputs: dict = field(default_factory=dict)   # parameter -> generator
    dims: dict = field(default_factory=dict)     # symbolic dimension -> size
    tol: object = None     # None (by dtype), a dtype name, or (rtol, atol)
    devices_skip: tuple = ()


CASES = []


class Suite:
    """The cases of one .kiln file; a case is named PREFIX.GRAPH unless told, where the
    prefix defaults to the file's stem."""

    def __init__(self, path, prefix=None):
        self.path = path
        self.stem = prefix or Path(path).stem

    def case(self, graph, expect, inputs=None, dims=None, tol=None, name=None, devices_skip=()):
        CASES.append(Case(name or f"{self.stem}.{graph}", self.path, graph, expect,
                          inputs or {}, dims or {}, tol, tuple(devices_skip)))


# --- tests/ops/unary.kiln ---------------------------------------------------------------
s = Suite("tests/ops/unary.kiln")
for fn, ref, gen in [
    ("abs", np.abs, None), ("neg", np.negative, None), ("exp", np.exp, normal(2.0)),
    ("log", np.log, uniform(0.05, 20.0)), ("sqrt", np.sqrt, uniform(0.01, 20.0)),
    ("rsqrt", rsqrt, uniform(0.05, 20.0)), ("sin", np.sin, normal(3.0)),
    ("cos", np.cos, normal(3.0)), ("tanh", np.tanh, normal(2.0)),
    ("sigmoid", sigmoid, normal(4.0)), ("relu", relu, None), ("gelu", gelu, normal(2.0)),
    ("gelu_tanh", gelu_tanh, normal(2.0)), ("gelu_exact_flag", gelu, normal(2.0)),
    ("silu", silu, normal(3.0)), ("erf", erf, normal(1.5)), ("floor", np.floor, offgrid()),
    ("ceil", np.ceil, offgrid()), ("round", np.round, offgrid()),
    ("sign", np.sign, with_zeros(normal())),
]:
    s.case(f"{fn}_f32", lambda x, ref=ref: ref(x), inputs={"x": gen} if gen else {}, dims={"N": 3})
s.case("round_half_even_f32", lambda x: np.round(x),
       inputs={"x": values(-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, -3.5, 0.49, 1.51, -0.51, 4.5)})

all_float_unary = lambda x, g=gelu: (np.abs(x), -x, np.exp(x), np.sin(x), np.cos(x), np.tanh(x),
                                     sigmoid(x), relu(x), g(x), erf(x))
pos_unary = lambda x: (np.log(x), np.sqrt(x), rsqrt(x), silu(x))
rounding = lambda x: (np.floor(x), np.ceil(x), np.round(x), np.sign(x))
s.case("unary_f16", all_float_unary)
s.case("unary_pos_f16", pos_unary, inputs={"x": uniform(0.5, 4.0)})
s.case("rounding_f16", rounding, inputs={"x": offgrid()})
s.case("unary_bf16", lambda x: all_float_unary(x, g=gelu_tanh))
s.case("unary_pos_bf16", pos_unary, inputs={"x": uniform(0.5, 4.0)})
s.case("rounding_bf16", rounding, inputs={"x": offgrid()})
s.case("unary_f64", all_float_unary, inputs={"x": normal(2.0)})
s.case("unary_pos_f64", pos_unary, inputs={"x": uniform(0.05, 20.0)})
s.case("rounding_f64", rounding, inputs={"x": offgrid(100)})
int_unary = lambda x: (np.abs(x), -x, np.sign(x), relu(x), x, x, x)
s.case("unary_i32", int_unary)
s.case("unary_i64", int_unary, inputs={"x": ints(-3_000_000_000, 3_000_000_000)})

# --- tests/ops/arith.kiln ---------------------------------------------------------------
s = Suite("tests/ops/arith.kiln")
s.case("add_f32", lambda a, b: a + b)
s.case("sub_row", lambda a, b: a - b)
s.case("mul_outer", lambda a, b: a * b)
s.case("div_f32", lambda a, b: a / b, inputs={"b": nonzero()})
s.case("mod_f32", lambda a, b: np.remainder(a, b), inputs={"a": normal(4.0), "b": nonzero()})
s.case("mod_i32", lambda a, b: np.remainder(a, b),
       inputs={"a": ints(-20, 20), "b": nonzero_ints(1, 6)})
s.case("mod_i64_literal", lambda a: np.remainder(a, 3), inputs={"a": ints(-9, 9)})
s.case("pow_op", lambda a, b: a**b, inputs={"a": POS})
s.case("pow_int_exponent", lambda x: (x**2, x**3), inputs={"x": normal(2.0)})
s.case("pow_right_assoc", lambda a, b, c: a ** (b**c),
       inputs={"a": uniform(0.5, 1.5), "b": uniform(0.5, 1.5), "c": uniform(0.5, 2.0)})
s.case("neg_pow", lambda x: -(x**2))
s.case("unary_minus_plus", lambda x, y: -x + y + y)
s.case("precedence", lambda a, b, c, d, e: (a + b * c - d / e, (a + b) * (c - d)),
       inputs={"e": nonzero()})
s.case("left_assoc", lambda a, b, c: ((a - b) - c, (a / b) / c, (a - b) + c),
       inputs={"b": nonzero(), "c": nonzero()})
s.case("mul_matmul_assoc", lambda a, b, c, d: ((a * b) @ c, (a @ c) * d))
s.case("scalar_affine", lambda s, x, t: s * x + t)
s.case("scalars_only", lambda s, t: s * t - s / t, inputs={"t": nonzero()})
s.case("bcast_3d", lambda a, b: a + b)
s.case("bcast_sym", lambda a, b: a * b - a, dims={"N": 3, "M": 5})
s.case("bcast_sym_full", lambda a, b, c: a * b + c, dims={"B": 2, "T": 3})
s.case("literal_left", lambda x: (1 - x, 2.5 * x, 1.0 / x, 2.0**x), inputs={"x": nonzero()})
s.case("int_literal_on_float", lambda x: x * 2 + 1 - x / 4)
s.case("arith_i32", lambda a, b: (a + b, a - b, a * b),
       inputs={"a": ints(-100, 100), "b": ints(-100, 100)})
s.case("arith_i32_literal", lambda a: a * 3 - 7 + -a)
s.case("arith_i64", lambda a, b: (a + b * 1_000_000_000, a - b, np.remainder(a * b, 5)),
       inputs={"a": ints(-1000, 1000)})
s.case("arith_f16", lambda a, b: a * b + a / b - 0.5, inputs={"a": HALVES, "b": NZ_HALVES})
s.case("arith_bf16", lambda a, b: (a - b) * 2.0 + a / b, inputs={"a": HALVES, "b": NZ_HALVES})
s.case("arith_f64", lambda a, b: (a * b - a / b + a**2, np.remainder(a, b)),
       inputs={"b": nonzero()})
s.case("pow_f16_bf16", lambda a, b: (a**1.5, b**2), inputs={"a": POS})

# --- tests/ops/compare.kiln -------------------------------------------------------------
s = Suite("tests/ops/compare.kiln")
all_compares = lambda x, y: (x < y, x <= y, x > y, x >= y, x == y, x != y)
s.case("compare_f32", all_compares, inputs={"x": ints(-2, 2), "y": ints(-2, 2)})
s.case("compare_bcast_i32", all_compares, inputs={"x": ints(-3, 3), "y": ints(-3, 3)})
s.case("compare_i64", lambda x, y: (x >= y, x != y), inputs={"x": ints(-2, 2), "y": ints(-2, 2)})
s.case("compare_literal", lambda x, i: (x > 0.0, x <= 1, i == 3, 2 < i),
       inputs={"x": choice(-1.0, 0.0, 0.5, 1.0, 2.0), "i": ints(0, 5)})
s.case("compare_f16", lambda x, y: (x < y, x == y), inputs={"x": HALVES, "y": HALVES})
s.case("compare_bf16", lambda x, y: (x >= y, x != y), inputs={"x": HALVES, "y": HALVES})
s.case("compare_f64", lambda x, y: x > y, inputs={"x": HALVES, "y": values(0.5)})
s.case("compare_bool", lambda a, b: (a == b, a != b))
s.case("compare_arith", lambda a, b, c: a + b > c * 2.0,
       inputs={"a": ints(-3, 3), "b": ints(-3, 3), "c": ints(-3, 3)})
s.case("logic_bcast", lambda a, b, c: (a & b, a | c, ~c))
s.case("logic_precedence", lambda a, b, c: (a | (b & c), ~a & b, ~a | (~b & c)))
s.case("compare_in_logic", lambda x, y: ((x > 0) & (y < 0), ~(x < y)))
s.case("logic_literal", lambda a: (a, a))
s.case("where_bcast", lambda c, a, b: np.where(c, a, b))
s.case("where_literal", lambda x: np.where(x > 0, x, 0.0))
s.case("where_scalar_cond", lambda c, a, b: np.where(c, a, b), inputs={"c": values(1.0)})
s.case("where_i32", lambda c, a, b: np.where(c, a, b))
s.case("where_f16", lambda c, a, b: np.where(c, a, b))
s.case("where_bool", lambda c, a, b: np.where(c, a, b))

# --- tests/ops/cast.kiln ----------------------------------------------------------------
s = Suite("tests/ops/cast.kiln")
s.case("cast_float_to_int", lambda x: (np.trunc(x).astype(np.int64),) * 2,
       inputs={"x": offgrid(50)})
s.case("cast_int_to_float", lambda i, j: (i, j, i, j),
       inputs={"i": ints(-100, 100), "j": ints(-1000, 1000)})
s.case("cast_bool_to_number", lambda b: (b.astype(np.int64),) * 4)
s.case("cast_number_to_bool", lambda x, i: (x != 0, i != 0),
       inputs={"x": with_zeros(normal(), 0.4), "i": ints(-2, 2)})
s.case("cast_f32_to_others", lambda x: (x, x, x))
s.case("cast_half_to_f32", lambda h, b: (h, b, b))
s.case("cast_f64_to_f32", lambda x: x)
s.case("cast_int_widths", lambda i, j: (i, j), inputs={"j": ints(-2_000_000_000, 2_000_000_000)})
s.case("cast_half_to_int", lambda h, b: (np.trunc(h).astype(np.int64), np.trunc(b).astype(np.int64)),
       inputs={"h": offgrid(20), "b": offgrid(20)})
s.case("cast_same", lambda x, i: (x, i))
s.case("cast_mixed", lambda a, h, i: a + h * i)
s.case("cast_compute_f16", lambda x: f16(np.exp(f16(x))) * 2.0, tol="f16")
s.case("cast_mask", lambda x: x * (x > 0))

# --- tests/ops/minmax.kiln --------------------------------------------------------------
s = Suite("tests/ops/minmax.kiln")
max_min = lambda a, b: (np.maximum(a, b), np.minimum(a, b))
s.case("maximum_bcast", lambda a, b: np.maximum(a, b))
s.case("minimum_f32", lambda a, b: np.minimum(a, b), inputs={"a": ints(-2, 2)})
s.case("minmax_literal", lambda x: (np.maximum(x, 0.0), np.minimum(x, 1.0)), inputs={"x": normal(2.0)})
s.case("minmax_i32", lambda a, b: max_min(a, b) + (np.maximum(a, 0),))
s.case("minmax_i64", max_min)
s.case("minmax_f16", max_min)
s.case("minmax_bf16", max_min)
s.case("minmax_f64", max_min)
s.case("pow_fn", lambda a, b: a**b, inputs={"a": POS})
s.case("pow_fn_literal", lambda x: (x**0.5, x**3, 2.0**x), inputs={"x": POS})
s.case("pow_bcast", lambda a, b: a**b, inputs={"a": POS})
s.case("pow_i32", lambda i, e: (i**e, i**2), inputs={"i": ints(-5, 5), "e": ints(0, 3)})
s.case("pow_half", lambda a, b: (a**2, b**0.5), inputs={"b": POS})
s.case("clamp_literal", lambda x: np.clip(x, -0.5, 0.5))
s.case("clamp_tensor", lambda x, lo, hi: np.minimum(np.maximum(x, lo), hi),
       inputs={"lo": uniform(-1.0, -0.2), "hi": uniform(0.2, 1.0)})
s.case("clamp_i32", lambda i: np.clip(i, 0, 5))
s.case("clamp_half", lambda h, b: (np.clip(h, 0.0, 1.0), np.clip(b, -1.0, 1.0)),
       inputs={"b": normal(2.0)})

# --- tests/ops/reduce.kiln --------------------------------------------------------------
s = Suite("tests/ops/reduce.kiln")
s.case("sum_all", lambda x: x.sum())
s.case("sum_axis0", lambda x: x.sum(axis=0))
s.case("sum_neg_axis", lambda x: x.sum(axis=-1))
s.case("sum_axis_list", lambda x: x.sum(axis=(0, 2)))
s.case("sum_keepdims", lambda x: x.sum(axis=1, keepdims=True))
s.case("sum_all_keepdims", lambda x: x.sum(keepdims=True))
s.case("sum_neg_list_keepdims", lambda x: x.sum(axis=(-1, 0), keepdims=True))
s.case("sum_keepdims_false", lambda x: x.sum(axis=1))
s.case("mean_axis", lambda x: x.mean(axis=-2))
s.case("mean_all", lambda x: x.mean())
s.case("mean_list_keepdims", lambda x: x.mean(axis=(1, 2), keepdims=True))
s.case("max_axis", lambda x: x.max(axis=1))
s.case("max_all", lambda x: x.max())
s.case("min_axis_list", lambda x: x.min(axis=(0, -1)))
s.case("min_keepdims", lambda x: x.min(axis=2, keepdims=True))
s.case("prod_axis", lambda x: x.prod(axis=2), inputs={"x": nonzero(0.5, 1.5)})
s.case("prod_all", lambda x: x.prod(), inputs={"x": nonzero(0.5, 1.5)})
s.case("reduce_i32", lambda i: (i.sum(axis=1), i.max(axis=0), i.min(axis=-1), i.sum(),
                                i.prod(axis=1, keepdims=True)), inputs={"i": ints(-3, 3)})
s.case("reduce_i64", lambda i: (i.sum(axis=0), i.sum(), i.max(axis=1), i.prod(axis=1)),
       inputs={"i": ints(-4, 4)})
s.case("reduce_f16", lambda h: (h.sum(axis=1), h.mean(axis=0), h.max(axis=-1), h.min()),
       inputs={"h": HALVES})
s.case("reduce_bf16", lambda b: (b.sum(axis=1), b.mean(), b.max(axis=0), b.prod(axis=1)),
       inputs={"b": choice(-2.0, -1.0, -0.5, 0.5, 1.0, 2.0)})
s.case("reduce_f64", lambda d: (d.sum(axis=(0, 1)), d.mean(axis=2), d.max(), d.min(axis=0),
                                d.prod(axis=1)), inputs={"d": nonzero(0.5, 1.5)})
s.case("reduce_sym", lambda x: (x.sum(axis=0), x.mean(axis=1), x.max(axis=0),
                                x.min(axis=-1, keepdims=True)), dims={"N": 5})
s.case("reduce_rank1", lambda x: (x.sum(), x.max(), x.mean()))
s.case("argmax_axis", lambda x: x.argmax(axis=1))
s.case("argmin_neg_axis", lambda x: x.argmin(axis=-1))
s.case("argmax_flat", lambda x: (x.argmax(), x.argmin()))
s.case("argmax_keepdims", lambda x: (x.argmax(axis=1, keepdims=True), x.argmin(axis=0, keepdims=True)))
s.case("argmax_ties", lambda x: (x.argmax(axis=1), x.argmin(axis=1)),
       inputs={"x": values(1, 3, 3, 0, 0, 2,
                           5, 5, 5, 5, 5, 5,
                           -1, 2, -1, 2, -1, 0)})
s.case("argmax_i32", lambda i: (i.argmax(axis=0), i.argmin(axis=1)), inputs={"i": ints(-3, 3)})
s.case("argmax_half", lambda h, b: (h.argmax(axis=1), b.argmin(axis=0)),
       inputs={"h": distinct(0.25), "b": distinct(0.5)})
s.case("argmax_sym", lambda x: (x.argmax(axis=-1), x.argmin(axis=0)), dims={"N": 4})

# --- tests/ops/shape.kiln ---------------------------------------------------------------
s = Suite("tests/ops/shape.kiln")
s.case("reshape_basic", lambda x: x.reshape(12, 5))
s.case("reshape_infer", lambda x: (x.reshape(-1, 10), x.reshape(-1), x.reshape(2, -1, 10)))
s.case("reshape_sym", lambda x: x.reshape(-1, 3, 4), dims={"B": 2})
s.case("reshape_sym_half", lambda x: (lambda z: (z.reshape(6, 4), z.reshape(6, 2, 2)))(
    x.reshape(3, 8) + x.reshape(3, 8).sum(axis=1, keepdims=True)), dims={"B": 6})
s.case("reshape_sym_infer", lambda x: (x.reshape(3, 12), x.reshape(3, 2, 6)), dims={"B": 3})
s.case("reshape_rank0", lambda s, v: (s.reshape(1, 1), v.reshape(())))
s.case("reshape_int_bool", lambda i, b: (i.reshape(3, 4), b.reshape(2, 6)))
s.case("transpose_default", lambda x: x.transpose())
s.case("transpose_perm", lambda x: (x.transpose(1, 0, 2), x.transpose(0, 2, 1),
                                    x.transpose(2, 0, 1), x))
s.case("transpose_sym", lambda x: x.T, dims={"B": 3})
s.case("transpose_i32_f16", lambda i, h: (i.T, h.T))
s.case("transpose_then_add", lambda x, y: y.T + x)
s.case("broadcast_row", lambda x: np.broadcast_to(x, (3, 4)))
s.case("broadcast_col", lambda x: np.broadcast_to(x, (2, 3, 5)))
s.case("broadcast_scalar", lambda s: np.broadcast_to(s, (2, 3)))
s.case("broadcast_sym", lambda x, y: x - y, dims={"B": 3})
s.case("broadcast_int_bool", lambda i, b: (np.broadcast_to(i, (2, 3)), np.broadcast_to(b, (2, 3))))
s.case("concat_default", lambda a, b: np.concatenate([a, b]))
s.case("concat_axis1", lambda a, b, c: np.concatenate([a, b, c], axis=1))
s.case("concat_neg_axis", lambda a, b: np.concatenate([a, b], axis=-1))
s.case("concat_int_bool", lambda a, b, c, d: (np.concatenate([a, b]), np.concatenate([c, d])))
s.case("concat_sym", lambda a, b: np.concatenate([a, b], axis=1), dims={"B": 4})
s.case("concat_same_twice", lambda a: np.concatenate([a, a * 2.0], axis=-1))
s.case("squeeze_axis", lambda x: (x.squeeze(1), x.squeeze(-2)))
s.case("squeeze_all", lambda x: x.squeeze())
s.case("squeeze_to_scalar", lambda x: x.squeeze())
s.case("unsqueeze_ends", lambda x: (x[None], x[..., None]))
s.case("unsqueeze_mid", lambda x: (x[:, None], x[:, None], x[:, :, None]))
s.case("unsqueeze_scalar_int", lambda s, i: (s.reshape(1), i[:, None]))
s.case("pad_2d", lambda x: np.pad(x, ((1, 2), (0, 3))))
s.case("pad_value", lambda x: np.pad(x, ((1, 1), (0, 0)), constant_values=-1.5))
s.case("pad_i32", lambda i: (np.pad(i, ((0, 1), (2, 1))),
                             np.pad(i, ((0, 1), (2, 1)), constant_values=7)))
s.case("pad_sym", lambda x: np.pad(x, ((0, 0), (1, 1), (0, 0))), dims={"B": 2})
s.case("pad_f16", lambda h: np.pad(h, ((1, 1), (2, 1)), constant_values=1.0))

# --- tests/ops/index.kiln ---------------------------------------------------------------
s = Suite("tests/ops/index.kiln")
s.case("index_first", lambda x: x[1])
s.case("index_negative", lambda x: x[-1])
s.case("index_two", lambda x: x[2, -3])
s.case("index_scalar", lambda x: x[4, 0, -7])
s.case("slice_range", lambda x: x[1:4])
s.case("slice_open", lambda x: (x[2:], x[:2], x[:]))
s.case("slice_step", lambda x: (x[::2], x[:, 1::3], x[:, :, ::3]))
s.case("slice_negative", lambda x: (x[-3:], x[:, :, 1:-1], x[:, -4:-2]))
s.case("slice_clip", lambda x: (x[2:100], x[-100:2], x[-100:100], x[1:10:3]))
s.case("index_mixed", lambda x: x[1, ::3, 2:5])
s.case("index_middle", lambda x: (x[:, 1], x[:, :, -2]))
s.case("index_int_bool", lambda i, b: (i[-2], i[1, 3:], b[:, 2]))
s.case("index_half", lambda h, d: (h[1:3, ::2], d[::2]))
s.case("index_sym", lambda x: (x[:, 2:6], x[:, -1], x[0]), dims={"N": 3})
s.case("index_arith", lambda x: x[0] + x[1] * x[-1])
s.case("index_expr", lambda a, b: ((a @ b)[1], softmax(a)[-1]))
s.case("index_chain", lambda x: x[1][2][1:7:2])

# --- tests/ops/create.kiln --------------------------------------------------------------
s = Suite("tests/ops/create.kiln")
s.case("create_defaults", lambda: (np.zeros((2, 3)), np.ones(3), np.full((2, 2), 1.5),
                                   np.full(2, 7), np.arange(5)))
s.case("create_dtypes", lambda: (np.zeros((2, 2), np.int32), np.ones(3), np.full(2, 0.25),
                                 np.full(2, 3.0), np.arange(4), np.arange(4.0),
                                 np.zeros(2, bool), np.ones(3, np.int64)))
s.case("create_with_input", lambda x: x + 0.5)
s.case("arange_cast", lambda x: x * np.arange(5))
s.case("arange_f32", lambda x: (x + np.arange(6), np.arange(6) * 2))
s.case("full_int", lambda i: i + 3)
s.case("create_sym", lambda x: (x + 1, np.zeros_like(x)), dims={"B": 3})
s.case("create_scalar", lambda: (np.float64(2.5), np.int64(0)))

# --- tests/ops/matmul.kiln --------------------------------------------------------------
s = Suite("tests/ops/matmul.kiln")
mm = lambda a, b: a @ b
for g in ["mm_2d", "mm_batched", "mm_batch_bcast", "mm_batch_mat", "mm_mat_batch", "mm_f64"]:
    s.case(g, mm)
s.case("mm_vec_mat", lambda v, b: v @ b)
s.case("mm_mat_vec", lambda a, v: a @ v)
s.case("mm_vec_vec", lambda u, v: u @ v)
s.case("mm_vec_batch", lambda v, b: v @ b)
s.case("mm_batch_vec", lambda a, v: a @ v)
s.case("mm_fn", mm)
s.case("mm_sym", mm, dims={"B": 3, "K": 5})
s.case("mm_odd", mm, inputs={"b": fan_in(70)})
s.case("mm_chain", lambda a, b, c: a @ b @ c)
s.case("mm_transposed", lambda a, b: a.T @ b.T)
s.case("mm_f16", mm, inputs={"a": HALVES, "b": HALVES})
s.case("mm_bf16", mm, inputs={"a": HALVES, "b": HALVES})
s.case("mm_i32", mm, inputs={"a": ints(-5, 5), "b": ints(-5, 5)})
s.case("linear_bias", linear, dims={"B": 2})
s.case("linear_nobias", linear)
s.case("linear_3d", linear)
s.case("linear_f16", linear, inputs={"x": HALVES, "w": HALVES, "b": HALVES})

# --- tests/ops/conv.kiln ----------------------------------------------------------------
s = Suite("tests/ops/conv.kiln")
W = normal(0.3)
s.case("conv_basic", conv2d, inputs={"w": W})
s.case("conv_bias", conv2d, inputs={"w": W})
s.case("conv_stride", lambda x, w: conv2d(x, w, stride=2), inputs={"w": W})
s.case("conv_padding", lambda x, w: conv2d(x, w, padding=1), inputs={"w": W})
s.case("conv_pairs", lambda x, w: conv2d(x, w, stride=(2, 1), padding=(1, 0)), inputs={"w": W})
s.case("conv_dilation", lambda x, w: conv2d(x, w, dilation=2), inputs={"w": W})
s.case("conv_dilation_pair", lambda x, w: conv2d(x, w, dilation=(2, 1), padding=(2, 1)),
       inputs={"w": W})
s.case("conv_groups", lambda x, w: conv2d(x, w, groups=2), inputs={"w": W})
s.case("conv_depthwise", lambda x, w, b: conv2d(x, w, b, padding=1, groups=3), inputs={"w": W})
s.case("conv_1x1", conv2d, inputs={"w": W})
s.case("conv_sym", conv2d, inputs={"w": W}, dims={"N": 2})
s.case("conv_all", lambda x, w, b: conv2d(x, w, b, stride=2, padding=2, dilation=2, groups=2),
       inputs={"w": W})
s.case("conv_f16", conv2d, inputs={"x": HALVES, "w": HALVES})
s.case("conv_f64", lambda x, w, b: conv2d(x, w, b, stride=2))
s.case("maxpool_basic", lambda x: maxpool2d(x, 2))
s.case("maxpool_stride_pad", lambda x: maxpool2d(x, 3, stride=2, padding=1),
       inputs={"x": uniform(-3.0, -0.5)})
s.case("maxpool_pair", lambda x: maxpool2d(x, (2, 3)))
s.case("maxpool_overlap", lambda x: maxpool2d(x, 2, stride=1))
s.case("avgpool_basic", lambda x: avgpool2d(x, 2))
s.case("avgpool_pad", lambda x: avgpool2d(x, 3, stride=1, padding=1))
s.case("avgpool_pair", lambda x: avgpool2d(x, (2, 3), stride=(1, 3)))
s.case("global_avgpool_basic", global_avgpool)
s.case("pool_half", lambda h, b: (maxpool2d(h, 2), avgpool2d(h, 2), maxpool2d(b, 2)),
       inputs={"h": HALVES})
s.case("cnn_block", lambda x, w, b: global_avgpool(maxpool2d(relu(conv2d(x, w, b, padding=1)), 2)),
       inputs={"w": W}, dims={"N": 2})
s.case("conv_gemm", lambda x, w, b, r: np.maximum(conv2d(x, w, b, stride=2, padding=1) + r, 0), inputs={"w": W})
s.case("conv_gemm_f16", lambda x, w: conv2d(x, w, padding=1), inputs={"x": HALVES, "w": HALVES})
s.case("conv_dw_block", lambda x, w, b: np.clip(conv2d(x, w, b, stride=2, padding=1, groups=24), 0.0, 6.0),
       inputs={"w": W})
s.case("pool_direct", lambda x: (maxpool2d(x, 3, stride=2, padding=1), avgpool2d(x, 2)))

# --- tests/ops/nn.kiln ------------------------------------------------------------------
s = Suite("tests/ops/nn.kiln")
s.case("softmax_last", softmax, inputs={"x": normal(2.0)})
s.case("softmax_default", softmax)
s.case("softmax_axes", lambda x: (softmax(x, 1), softmax(x, 0), softmax(x, -2)))
s.case("softmax_stable", lambda x: (softmax(x), log_softmax(x)), inputs={"x": uniform(80.0, 120.0)})
s.case("softmax_sym", softmax, dims={"B": 2, "T": 3})
s.case("log_softmax_last", log_softmax, inputs={"x": normal(2.0)})
s.case("log_softmax_axis", lambda x: (log_softmax(x, -2), log_softmax(x)))
s.case("softmax_half", lambda h, b: (softmax(h), softmax(b, 0), log_softmax(h)))
s.case("softmax_f64", lambda x: (softmax(x, 1), log_softmax(x, 0)))
s.case("layernorm_last", lambda x, g, b: layernorm(x, g, b), inputs={"x": normal(2.0, 1.0)},
       dims={"B": 3})
s.case("layernorm_axis", lambda x, g, b: layernorm(x, g, b, axis=1))
s.case("layernorm_eps", lambda x, g, b: (layernorm(x, g, b, eps=0.1), layernorm(x, g, b)),
       inputs={"x": normal(0.5)})
# Normalising in f16/bf16 rounds more than once: compare both at bf16's tolerance.
s.case("layernorm_half", lambda h, g, b, x, gb, bb: (layernorm(h, g, b), layernorm(x, gb, bb)),
       tol="bf16")
s.case("layernorm_f64", lambda x, g, b: layernorm(x, g, b))
s.case("rmsnorm_last", lambda x, g: rmsnorm(x, g), dims={"B": 2})
s.case("rmsnorm_axis_eps", lambda x, g: rmsnorm(x, g, axis=-2, eps=0.01))
s.case("rmsnorm_half", lambda h, g, x, gb: (rmsnorm(h, g), rmsnorm(x, gb)), tol="bf16")
s.case("mlp_layer", lambda x, w1, b1, w2: log_softmax(linear(silu(linear(x, w1, b1)), w2)),
       inputs={"w1": fan_in(16), "w2": fan_in(32)}, dims={"B": 3})

# --- tests/ops/graphs.kiln --------------------------------------------------------------
s = Suite("tests/ops/graphs.kiln")


def _moments(x):
    m = x.mean(axis=1, keepdims=True)
    return m, np.sqrt(((x - m) ** 2).mean(axis=1, keepdims=True) + 1e-5)


s.case("call_simple", lambda x, w, b: relu(x @ w + b))
s.case("affine", lambda x, w, b: x @ w + b, dims={"N": 2, "K": 3, "M": 4})
s.case("call_two_shapes", lambda a, b: (a * 2, b * 2))
s.case("double", lambda v: v * 2, dims={"N": 5})
s.case("standardise", lambda x: (x - _moments(x)[0]) / _moments(x)[1])
s.case("moments", _moments, dims={"R": 2, "C": 6})
s.case("call_nested", lambda x: np.tanh(x) * np.tanh(2 * x) + 1)
s.case("outer", lambda x: np.tanh(x) * np.tanh(2 * x), dims={"N": 4})
s.case("inner", lambda x: np.tanh(x), dims={"N": 3})
s.case("three_results", lambda x: (x.max(axis=1), x.argmax(axis=1), x > 0))
s.case("call_three", lambda x: (x.max(axis=1) * 2, x.argmax(axis=1), np.where(x > 0, x, 0.0)))
s.case("call_scalar_arg", lambda x, s: x * s + x * (s * s))
s.case("scale", lambda x, s: x * s, dims={"N": 3})
s.case("call_int", lambda i: i + 2)
s.case("inc", lambda i: i + 1, dims={"N": 2})
s.case("call_chain", lambda x, w, b: relu(x @ w + b) @ w + b)

# --- examples/*.kiln --------------------------------------------------------------------


def _heads(t, b, n):
    """[B, T, 64] -> [B, 4, T, 16]"""
    return t.reshape(b, n, 4, 16).transpose(0, 2, 1, 3)


def attention(x, wq, wk, wv, wo, mask=0.0):
    b, t, _ = x.shape
    q, k, v = _heads(x @ wq, b, t), _heads(x @ wk, b, t), _heads(x @ wv, b, t)
    p = softmax(q @ k.transpose(0, 1, 3, 2) * 0.25 + mask)
    return (p @ v).transpose(0, 2, 1, 3).reshape(b, t, 64) @ wo


def block(x, ln1_g, ln1_b, wq, wk, wv, wo, ln2_g, ln2_b, w1, b1, w2, b2):
    h = x + attention(layernorm(x, ln1_g, ln1_b), wq, wk, wv, wo)
    return h + gelu(layernorm(h, ln2_g, ln2_b) @ w1 + b1) @ w2 + b2


def lenet(x, c1, c1b, c2, c2b, f1, f1b, f2, f2b, f3, f3b):
    h1 = maxpool2d(relu(conv2d(x, c1, c1b, padding=2)), 2)
    h2 = maxpool2d(relu(conv2d(h1, c2, c2b)), 2)
    h3 = relu(linear(h2.reshape(h2.shape[0], -1), f1, f1b))
    return linear(relu(linear(h3, f2, f2b)), f3, f3b)


def gelu_chain(x):
    b = gelu(x * 1.5 + 0.25)
    e = sigmoid(np.tanh(np.sqrt(b * b + 1.0) - 1.0) * 2.0)
    return np.exp(-np.abs(e * x)) + x


BIAS = normal(0.1)
ATTN_W = {w: fan_in(64) for w in ("wq", "wk", "wv", "wo")}
causal_mask = lambda rng, shape: np.triu(np.full(shape, -1e9), 1)

s = Suite("examples/mlp.kiln", "example")
s.case("mlp", lambda x, w1, b1, w2, b2: softmax(relu(x @ w1 + b1) @ w2 + b2),
       inputs={"w1": fan_in(784), "b1": BIAS, "w2": fan_in(256), "b2": BIAS}, dims={"B": 4})

s = Suite("examples/softmax.kiln", "example")
s.case("softmax_manual", softmax, inputs={"x": normal(3.0)}, dims={"B": 3, "N": 10})
s.case("softmax_builtin", softmax, inputs={"x": normal(3.0)}, dims={"B": 3, "N": 10})
s.case("classify", lambda logits: (log_softmax(logits), logits.argmax(axis=-1)),
       dims={"B": 5, "N": 7})

s = Suite("examples/layernorm.kiln", "example")
LN = {"x": normal(2.0, 0.5), "beta": BIAS, "gamma": normal(0.2, 1.0)}
s.case("layernorm_manual", layernorm, inputs=LN, dims={"B": 2, "T": 3})
s.case("layernorm_builtin", layernorm, inputs=LN, dims={"B": 2, "T": 3})
s.case("rmsnorm_manual", rmsnorm, inputs={"x": LN["x"], "gamma": LN["gamma"]}, dims={"B": 2, "T": 3})

s = Suite("examples/attention.kiln", "example")
s.case("attention", attention, inputs=ATTN_W, dims={"B": 2, "T": 5})
s.case("masked_attention", lambda x, mask, wq, wk, wv, wo: attention(x, wq, wk, wv, wo, mask),
       inputs={**ATTN_W, "mask": causal_mask}, dims={"B": 2, "T": 5})

s = Suite("examples/lenet.kiln", "example")
s.case("lenet", lenet,
       inputs={"x": uniform(0.0, 1.0), "c1": fan_in(25), "c1b": BIAS, "c2": fan_in(150),
               "c2b": BIAS, "f1": fan_in(400), "f1b": BIAS, "f2": fan_in(120), "f2b": BIAS,
               "f3": fan_in(84), "f3b": BIAS},
       dims={"N": 2})

s = Suite("examples/transformer_block.kiln", "example")
s.case("block", block,
       inputs={**ATTN_W, "ln1_g": normal(0.2, 1.0), "ln1_b": BIAS, "ln2_g": normal(0.2, 1.0),
               "ln2_b": BIAS, "w1": fan_in(64), "b1": BIAS, "w2": fan_in(256), "b2": BIAS},
       dims={"B": 2, "T": 6})
s.case("self_attention", attention, inputs=ATTN_W, dims={"B": 1, "T": 4})

s = Suite("examples/gelu_chain.kiln", "example")
s.case("gelu_chain", gelu_chain, dims={"N": 4})

# --- tests/ops/v1.kiln: the Version 1 additions ------------------------------------------
s = Suite("tests/ops/v1.kiln")
s.case("take_axes", lambda x, i, j, s: (take(x, i), take(x, j, axis=1), take(x, i, axis=-1), take(x, s)),
       inputs={"i": ints(-6, 5), "j": ints(-7, 6), "s": ints(-4, 3)})
s.case("take_fused", lambda x, i, k, b: (take(np.exp(x), i % 6) * 2, take(x, i).sum(axis=-1),
                                          take(k, k + 1, axis=1), take(b, i),
                                          take(x, k, axis=1).sum(axis=-1)),
       inputs={"i": ints(-8, 8), "k": ints(-5, 4), "b": choice(0.0, 1.0)})
s.case("embedding", lambda table, ids, pos, g, bt: layernorm(take(table, ids) + pos, g, bt),
       inputs={"ids": ints(0, 9), "g": normal(0.2, 1.0)}, dims={"B": 3})
s.case("cumsum_axes", lambda x, k, l: (np.cumsum(x, axis=0), np.cumsum(x, axis=-1),
                                       np.cumsum(k, axis=1).astype(np.int32),
                                       np.cumsum(np.exp(x), axis=1) + 1, np.cumsum(l)),
       inputs={"k": ints(-1000, 1000), "l": ints(-3_000_000_000, 3_000_000_000)})
s.case("cumsum_f64", lambda x: (np.cumsum(x, axis=1), np.cumsum(f16(x), axis=2)),
       inputs={"x": HALVES})
BN = {"var": POS, "gamma": normal(0.2, 1.0)}
s.case("batchnorm_nchw", lambda x, mean, var, gamma, beta: (
    batchnorm(x, mean, var, gamma, beta), batchnorm(x, mean, var, gamma, beta, eps=0.1)), inputs=BN)
s.case("batchnorm_axes", lambda x, m, v, h, hm, hv: (batchnorm(x, m, v, m, v, axis=-1),
                                                     batchnorm(h, hm, hv, hv, hm)),
       inputs={"v": POS, "hv": POS, "h": HALVES, "hm": HALVES})
s.case("conv_bn_relu", lambda x, w, mean, var, gamma, beta: relu(batchnorm(conv2d(x, w, padding=1), mean,
                                                                          var, gamma, beta)),
       inputs={"w": fan_in(18), **BN}, dims={"N": 2})
s.case("conv_asym", lambda x, w: (conv2d(x, w, padding=[[0, 1], [2, 0]]),
                                  conv2d(x, w, stride=2, padding=[[1, 0], [0, 1]])))
s.case("pools_v1", lambda x: (pool2d(x, "max", 2, ceil_mode=True), pool2d(x, "avg", 2, ceil_mode=True),
                              pool2d(x, "avg", 3, 2, 1, count_include_pad=False),
                              pool2d(x, "avg", (3, 2), 2, [[1, 0], [0, 1]], ceil_mode=True),
                              pool2d(x, "max", 3, 2, [[1, 1], [1, 0]], ceil_mode=True),
                              pool2d(x, "avg", 3, 1, 1, count_include_pad=False)))
s.case("pools_v1_f16", lambda x: (pool2d(x, "avg", 2, ceil_mode=True, count_include_pad=False),
                                  pool2d(x, "max", 2, ceil_mode=True)), inputs={"x": HALVES})
s.case("arg_keepdims", lambda x: (x.argmax(axis=1)[:, None], x.argmin(axis=-1)[:, :, None],
                                  np.array(x.argmax()).reshape(1, 1, 1)), inputs={"x": distinct()})
s.case("elementwise_v1", lambda x, y: (leaky_relu(x), leaky_relu(x, 0.2), hardsigmoid(x),
                                       hardsigmoid(x, 0.1666667, 0.5), 1.0 / y),
       inputs={"x": normal(4.0), "y": nonzero()}, dims={"N": 3})
s.case("elementwise_v1_f16", lambda x, i: (leaky_relu(x), hardsigmoid(x), 1.0 / x,
                                           np.zeros(12, bool), np.zeros(12, bool)),
       inputs={"x": NZ_HALVES})
SPECIAL = values(np.nan, np.inf, -np.inf, 0.0, -0.0, 1.5, -2.0, np.nan, 3e38, -1e-30, np.inf, 7.0)
s.case("nan_inf", lambda x, h: (np.isnan(x), np.isinf(x), np.isinf(h) | np.isnan(h),
                                np.where(np.isnan(x) | np.isinf(x), 0.0, x)),
       inputs={"x": SPECIAL, "h": SPECIAL})
