#!/usr/bin/env python3
"""kiln against onnxruntime (and PyTorch where installed) on whole models, on the same
machine and thread count, in one run: ResNet-18, ResNet-50, MobileNetV2 (batch 1 and 8,
224x224) and a MiniLM-L6 encoder (batch 1 and 8, 128 tokens).  Prints one table (model,
batch, kiln ms, peers' ms, ratio = best peer / kiln), then the per-layer table of
ResNet-50's convolutions (GFLOP/s of each against the machine's sgemm).

Usage (bench/models.sh sets up the peers and the environment):
    bench/models.py [--models resnet18,resnet50,mobilenetv2,minilm] [--batches 1,8]
                    [--rounds 3] [--threads 2] [--source auto|kiln|onnx] [--no-check]

Each model is built here once, from seeded random weights (BatchNorm folded into the
convolutions, as an eval-mode export does), and written three ways that compute the same
function: a kiln program with its weights in a .safetensors file (`kiln bench --weights`:
weights are constant parameters, packed once), an ONNX model with the weights as
initializers (onnxruntime, and `kiln run`/`bench` on the .onnx file itself once kiln
imports ONNX: --source onnx, or auto), and an op list PyTorch runs eagerly.  Before
timing, kiln's output on one input is compared with onnxruntime's (relative to the
output's scale; MobileNetV2 with random weights gives tiny logits).

Timing: every implementation runs each case in a fresh process, rounds times over; a
cell is the best round's median (kiln: `bench --json` run_ms; peers: the median of timed
calls after warm-up).  Files go to build/bench-models/, every figure to
build/bench-models.json.
"""
import argparse
import datetime
import json
import os
import platform
import statistics
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "build" / "bench-models"
KILN = ROOT / "build" / "kiln"


# ----------------------------------------------------------------------------------
# one network, three forms


class Net:
    """Records a network op by op: kiln source, ONNX nodes and an op list for PyTorch,
    all over the same named weights."""

    def __init__(self, name, seed):
        self.name = name
        self.rng = np.random.default_rng(seed)
        self.weights = {}  # name -> array (constant parameters)
        self.inputs = []  # (name, dtype, shape with "N" for the batch)
        self.lines = []  # kiln statements
        self.nodes = []  # onnx nodes
        self.ops = []  # (op, inputs, attrs, output) for PyTorch
        self.shapes = {}
        self.convs = []  # (name, cin, cout, k, stride, groups, hin, hout) in graph order
        self.onnx_consts = []  # initializers only the ONNX form needs (shapes, scalars)
        self.count = 0

    def fresh(self, prefix="v"):
        self.count += 1
        return f"{prefix}{self.count}"

    def input(self, name, dtype, shape):
        self.inputs.append((name, dtype, shape))
        self.shapes[name] = shape
        return name

    def weight(self, prefix, arr):
        name = self.fresh(prefix)
        self.weights[name] = np.ascontiguousarray(arr, dtype=np.float32)
        self.shapes[name] = list(arr.shape)
        return name

    def emit(self, kiln_expr, onnx_nodes, op, ins, attrs, shape):
        out = self.fresh()
        self.lines.append(f"    {out} = {kiln_expr.format(*ins)}")
        from onnx import helper
        for i, (otype, oins, oattrs) in enumerate(onnx_nodes):
            oout = out if i == len(onnx_nodes) - 1 else f"{out}_{i}"
            oins = [out + "_" + str(int(x[1:])) if isinstance(x, str) and x.startswith("#") else x
                    for x in oins]
            oins = [ins[x] if isinstance(x, int) else x for x in oins]
            self.nodes.append(helper.make_node(otype, oins, [oout], **oattrs))
        self.ops.append((op, ins, attrs, out))
        self.shapes[out] = shape
        return out

    def const(self, arr, prefix="c", dtype=np.float32):
        """An ONNX-only initializer (kiln writes the value as a literal)."""
        from onnx import numpy_helper
        name = self.fresh(prefix)
        self.onnx_consts.append(numpy_helper.from_array(np.asarray(arr, dtype=dtype), name))
        return name

    # ---- layers
    def conv(self, x, cout, k, stride=1, groups=1, act=None, residual=None):
        n, cin, h, w = self.shapes[x]
        pad = k // 2
        ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
        fan_in = cin // groups * k * k
        wt = self.weight("w", self.rng.standard_normal((cout, cin // groups, k, k)) * (2.0 / fan_in) ** 0.5)
        b = self.weight("b", self.rng.standard_normal(cout) * 0.1)
        self.convs.append((f"{k}x{k} {cin}->{cout} s{stride}" + (f" g{groups}" if groups > 1 else ""),
                           cin, cout, k, stride, groups, h, ho))
        kexpr = f"conv2d({{0}}, {{1}}, {{2}}, stride={stride}, padding={pad}, groups={groups})"
        onodes = [("Conv", [0, 1, 2], dict(kernel_shape=[k, k], strides=[stride, stride],
                                           pads=[pad] * 4, group=groups))]
        ins = [x, wt, b]
        if residual is not None:
            kexpr = f"{kexpr} + {{3}}"
            onodes.append(("Add", ["#0", 3], {}))
            ins.append(residual)
        if act == "relu":
            kexpr = f"relu({kexpr})"
            onodes.append(("Relu", [f"#{len(onodes) - 1}"], {}))
        elif act == "relu6":
            kexpr = f"clamp({kexpr}, 0.0, 6.0)"
            lo, hi = self.const(0.0, "lo"), self.const(6.0, "hi")
            onodes.append(("Clip", [f"#{len(onodes) - 1}", lo, hi], {}))
        return self.emit(kexpr, onodes, "conv",
                         ins, dict(stride=stride, pad=pad, groups=groups, act=act), [n, cout, ho, wo])

    def maxpool(self, x, k, stride, pad):
        n, c, h, w = self.shapes[x]
        ho = (h + 2 * pad - k) // stride + 1
        return self.emit(f"maxpool2d({{0}}, {k}, stride={stride}, padding={pad})",
                         [("MaxPool", [0], dict(kernel_shape=[k, k], strides=[stride, stride], pads=[pad] * 4))],
                         "maxpool", [x], dict(k=k, stride=stride, pad=pad), [n, c, ho, ho])

    def head(self, x, classes):
        n, c, _, _ = self.shapes[x]
        wt = self.weight("fc", self.rng.standard_normal((c, classes)) * (1.0 / c) ** 0.5)
        b = self.weight("fcb", self.rng.standard_normal(classes) * 0.1)
        flat = self.const([-1, c], "flat", np.int64)
        return self.emit("reshape(global_avgpool({0}), [-1, %d]) @ {1} + {2}" % c,
                         [("GlobalAveragePool", [0], {}), ("Reshape", ["#0", flat], {}),
                          ("MatMul", ["#1", 1], {}), ("Add", ["#2", 2], {})],
                         "head", [x, wt, b], {}, [n, classes])

    # ---- the three forms
    def kiln_source(self, result):
        params = [f"{n}: {dt}[{', '.join(str(d) for d in s)}]" for n, dt, s in self.inputs]
        params += [f"{n}: f32[{', '.join(str(d) for d in a.shape)}]" for n, a in self.weights.items()]
        rs = self.shapes[result]
        return (f"# {self.name}: generated by bench/models.py (seeded random weights)\n"
                f"graph {self.name}({', '.join(params)}) -> f32[{', '.join(str(d) for d in rs)}] {{\n"
                + "\n".join(self.lines) + f"\n    return {result}\n}}\n")

    def onnx_model(self, result):
        import onnx
        from onnx import TensorProto, helper, numpy_helper
        dt = {"f32": TensorProto.FLOAT, "i64": TensorProto.INT64}
        ins = [helper.make_tensor_value_info(n, dt[t], [("N" if d == "N" else d) for d in s])
               for n, t, s in self.inputs]
        out = helper.make_tensor_value_info(result, TensorProto.FLOAT, self.shapes[result])
        inits = [numpy_helper.from_array(a, n) for n, a in self.weights.items()] + self.onnx_consts
        g = helper.make_graph(self.nodes, self.name, ins, [out], inits)
        m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        m.ir_version = 8
        onnx.checker.check_model(m)
        return m


def resnet(depth):
    net = Net(f"resnet{depth}", depth)
    x = net.input("x", "f32", ["N", 3, 224, 224])
    h = net.conv(x, 64, 7, 2, act="relu")
    h = net.maxpool(h, 3, 2, 1)
    blocks = {18: [2, 2, 2, 2], 50: [3, 4, 6, 3]}[depth]
    cin = 64
    for stage, nb in enumerate(blocks):
        width = 64 << stage
        for b in range(nb):
            stride = 2 if stage > 0 and b == 0 else 1
            if depth == 18:
                out = width
                sc = h if stride == 1 and cin == out else net.conv(h, out, 1, stride)
                y = net.conv(h, width, 3, stride, act="relu")
                h = net.conv(y, out, 3, 1, act="relu", residual=sc)
            else:
                out = width * 4
                sc = h if stride == 1 and cin == out else net.conv(h, out, 1, stride)
                y = net.conv(h, width, 1, 1, act="relu")
                y = net.conv(y, width, 3, stride, act="relu")
                h = net.conv(y, out, 1, 1, act="relu", residual=sc)
            cin = out
    return net, net.head(h, 1000)


def mobilenetv2():
    net = Net("mobilenetv2", 2)
    x = net.input("x", "f32", ["N", 3, 224, 224])
    h = net.conv(x, 32, 3, 2, act="relu6")
    cin = 32
    for t, c, n, s in [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                       (6, 320, 1, 1)]:
        for i in range(n):
            stride = s if i == 0 else 1
            hid = cin * t
            y = net.conv(h, hid, 1, 1, act="relu6") if t != 1 else h
            y = net.conv(y, hid, 3, stride, groups=hid, act="relu6")
            h = net.conv(y, c, 1, 1, residual=h if stride == 1 and cin == c else None)
            cin = c
    h = net.conv(h, 1280, 1, 1, act="relu6")
    return net, net.head(h, 1000)


def minilm(tokens):
    """A MiniLM-L6 sized BERT encoder (hidden 384, 12 heads, FFN 1536, 6 layers): token
    ids in, the last hidden state out."""
    from onnx import numpy_helper
    net = Net("minilm", 6)
    H, heads, F, L, V, T = 384, 12, 1536, 6, 30522, tokens
    D = H // heads
    ids = net.input("ids", "i64", ["N", T])
    wemb = net.weight("wemb", net.rng.standard_normal((V, H)) * 0.05)
    pemb = net.weight("pemb", net.rng.standard_normal((T, H)) * 0.05)
    e = net.emit("take({1}, {0}, axis=0) + {2}", [("Gather", [1, 0], dict(axis=0)), ("Add", ["#0", 2], {})],
                 "embed", [ids, wemb, pemb], {}, ["N", T, H])

    def ln(x):
        g = net.weight("g", 1 + 0.1 * net.rng.standard_normal(H))
        b = net.weight("be", 0.1 * net.rng.standard_normal(H))
        return net.emit("layernorm({0}, {1}, {2}, eps=1e-12)",
                        [("LayerNormalization", [0, 1, 2], dict(axis=-1, epsilon=1e-12))], "ln", [x, g, b], {},
                        ["N", T, H])

    def dense(x, i, o, act=None, residual=None):
        w = net.weight("w", net.rng.standard_normal((i, o)) * (1.0 / i) ** 0.5)
        b = net.weight("b", 0.02 * net.rng.standard_normal(o))
        expr, nodes, ins = "{0} @ {1} + {2}", [("MatMul", [0, 1], {}), ("Add", ["#0", 2], {})], [x, w, b]
        if act == "gelu":
            expr = f"gelu({expr})"
            half, one, rsq2 = net.const(0.5, "half"), net.const(1.0, "one"), net.const(2 ** -0.5, "rsq2")
            nodes += [("Mul", ["#1", rsq2], {}), ("Erf", ["#2"], {}), ("Add", ["#3", one], {}),
                      ("Mul", ["#1", "#4"], {}), ("Mul", ["#5", half], {})]
        if residual is not None:
            expr = f"{expr} + {{3}}"
            nodes.append(("Add", [f"#{len(nodes) - 1}", 3], {}))
            ins.append(residual)
        return net.emit(expr, nodes, "dense", ins, dict(act=act), ["N", T, o])

    def shape_init(vals):
        return net.const(vals, "shape", np.int64)

    h = ln(e)
    scale = net.const(1.0 / D ** 0.5, "scale")
    scale_text = repr(1.0 / D ** 0.5)
    for _ in range(L):
        heads_shape, merged = shape_init([0, T, heads, D]), shape_init([0, T, H])
        qkv = []
        for _p in range(3):
            y = dense(h, H, H)
            qkv.append(net.emit(f"transpose(reshape({{0}}, [-1, {T}, {heads}, {D}]), [0, 2, 1, 3])",
                                [("Reshape", [0, heads_shape], {}), ("Transpose", ["#0"], dict(perm=[0, 2, 1, 3]))],
                                "heads", [y], {}, ["N", heads, T, D]))
        q, k, v = qkv
        s = net.emit("softmax({0} @ transpose({1}, [0, 1, 3, 2]) * %s, axis=-1)" % scale_text,
                     [("Transpose", [1], dict(perm=[0, 1, 3, 2])), ("MatMul", [0, "#0"], {}),
                      ("Mul", ["#1", scale], {}), ("Softmax", ["#2"], dict(axis=-1))], "scores", [q, k], {},
                     ["N", heads, T, T])
        a = net.emit(f"reshape(transpose({{0}} @ {{1}}, [0, 2, 1, 3]), [-1, {T}, {H}])",
                     [("MatMul", [0, 1], {}), ("Transpose", ["#0"], dict(perm=[0, 2, 1, 3])),
                      ("Reshape", ["#1", merged], {})], "merge", [s, v], {}, ["N", T, H])
        h = ln(dense(a, H, H, residual=h))
        f = dense(h, H, F, act="gelu")
        h = ln(dense(f, F, H, residual=h))
    return net, h


MODELS = {
    "resnet18": lambda tokens: resnet(18),
    "resnet50": lambda tokens: resnet(50),
    "mobilenetv2": lambda tokens: mobilenetv2(),
    "minilm": minilm,
}


# ----------------------------------------------------------------------------------
# files


def save_safetensors(path, tensors):
    hdr, off, blobs = {}, 0, []
    for k, a in tensors.items():
        b = np.ascontiguousarray(a).tobytes()
        hdr[k] = {"dtype": "F32", "shape": list(a.shape), "data_offsets": [off, off + len(b)]}
        off += len(b)
        blobs.append(b)
    h = json.dumps(hdr).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def write_model(name, tokens):
    net, result = MODELS[name](tokens)
    OUT.mkdir(parents=True, exist_ok=True)
    kfile, wfile, ofile = OUT / f"{name}.kiln", OUT / f"{name}.safetensors", OUT / f"{name}.onnx"
    kfile.write_text(net.kiln_source(result))
    save_safetensors(wfile, net.weights)
    ofile.write_bytes(net.onnx_model(result).SerializeToString())
    return net, kfile, wfile, ofile


def make_inputs(net, batch, seed=0):
    rng = np.random.default_rng(seed)
    feeds = {}
    for n, dt, shape in net.inputs:
        s = [batch if d == "N" else d for d in shape]
        feeds[n] = rng.integers(0, 30522, s).astype(np.int64) if dt == "i64" else rng.standard_normal(s).astype(
            np.float32)
    return feeds


# ----------------------------------------------------------------------------------
# runners (each in a fresh process)


def kiln_cmd(cmd, source, kfile, wfile, ofile, batch, extra):
    if source == "onnx":
        return [str(KILN), cmd, str(ofile), "--dim", f"N={batch}", "--device=cpu"] + extra
    return [str(KILN), cmd, str(kfile), "--weights", str(wfile), "--dim", f"N={batch}", "--device=cpu"] + extra


def run_kiln(source, kfile, wfile, ofile, batch, runs):
    r = subprocess.run(kiln_cmd("bench", source, kfile, wfile, ofile, batch, ["--json", f"--runs={runs}"]),
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip()[-2000:])
    return json.loads(r.stdout)


def peer_worker(which, onnx_path, net_pickle, batch, threads, budget):
    """Runs in a child process: prints {"ms": ..., "runs": ...}."""
    net = NetSpec.load(net_pickle)
    feeds = make_inputs(net, batch)
    if which == "onnxruntime":
        import onnxruntime as ort
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
        so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        sess = ort.InferenceSession(str(onnx_path), so, providers=["CPUExecutionProvider"])
        fn = lambda: sess.run(None, feeds)  # noqa: E731
        version = "onnxruntime " + ort.__version__
    else:
        import torch
        torch.set_num_threads(threads)
        fn = torch_runner(net, feeds)
        version = "PyTorch " + torch.__version__
    ms, runs = measure(fn, budget=budget)
    print(json.dumps({"ms": ms, "runs": runs, "version": version}))


class NetSpec:
    """What a peer's process needs of a Net: inputs, weights, op list."""

    @staticmethod
    def save(net, path):
        np.savez(path, **{"w:" + k: v for k, v in net.weights.items()})
        meta = {"inputs": net.inputs, "ops": net.ops, "shapes": net.shapes}
        Path(str(path) + ".json").write_text(json.dumps(meta))

    @staticmethod
    def load(path):
        meta = json.loads(Path(str(path) + ".json").read_text())
        spec = NetSpec()
        spec.inputs, spec.ops, spec.shapes = meta["inputs"], meta["ops"], meta["shapes"]
        z = np.load(str(path) + ".npz")
        spec.weights = {k[2:]: z[k] for k in z.files}
        return spec


def torch_runner(net, feeds):
    """PyTorch eager mode over the recorded op list (no graph capture)."""
    import torch
    import torch.nn.functional as Fn
    w = {k: torch.from_numpy(v) for k, v in net.weights.items()}
    x0 = {k: torch.from_numpy(v) for k, v in feeds.items()}

    def run():
        env = dict(w)
        env.update(x0)
        with torch.no_grad():
            for op, ins, at, out in net.ops:
                a = [env[i] for i in ins]
                if op == "conv":
                    y = Fn.conv2d(a[0], a[1], a[2], stride=at["stride"], padding=at["pad"], groups=at["groups"])
                    if len(a) > 3:
                        y = y + a[3]
                    if at["act"] == "relu":
                        y = torch.relu(y)
                    elif at["act"] == "relu6":
                        y = torch.clamp(y, 0.0, 6.0)
                elif op == "maxpool":
                    y = Fn.max_pool2d(a[0], at["k"], at["stride"], at["pad"])
                elif op == "head":
                    y = Fn.adaptive_avg_pool2d(a[0], 1).flatten(1) @ a[1] + a[2]
                elif op == "embed":
                    y = Fn.embedding(a[0], a[1]) + a[2]
                elif op == "ln":
                    y = Fn.layer_norm(a[0], a[0].shape[-1:], a[1], a[2], eps=1e-12)
                elif op == "dense":
                    y = a[0] @ a[1] + a[2]
                    if at["act"] == "gelu":
                        y = Fn.gelu(y)
                    if len(a) > 3:
                        y = y + a[3]
                elif op == "heads":
                    b, t, hd = a[0].shape
                    y = a[0].reshape(b, t, 12, hd // 12).transpose(1, 2)
                elif op == "scores":
                    y = torch.softmax(a[0] @ a[1].transpose(-1, -2) * a[0].shape[-1] ** -0.5, dim=-1)
                elif op == "merge":
                    y = (a[0] @ a[1]).transpose(1, 2)
                    y = y.reshape(y.shape[0], y.shape[1], -1)
                else:
                    raise ValueError(op)
                env[out] = y
        return y

    return run


def measure(fn, budget=3.0, min_runs=3, max_runs=30, warm=2):
    for _ in range(warm):
        fn()
    times, t_start = [], time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t0) * 1e3)
        if len(times) >= max_runs or (len(times) >= min_runs and time.perf_counter() - t_start > budget):
            return statistics.median(times), len(times)


def run_peer(which, python, ofile, spec, batch, threads, budget):
    code = ("import sys; sys.path.insert(0, %r); import models; models.peer_worker(%r, %r, %r, %d, %d, %f)"
            % (str(ROOT / "bench"), which, str(ofile), str(spec), batch, threads, budget))
    r = subprocess.run([python, "-c", code], capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(r.stderr.strip()[-1500:])
    return json.loads(r.stdout.strip().splitlines()[-1])


def check(name, source, kfile, wfile, ofile, net, batch):
    """kiln's result on one input against onnxruntime's: max |diff| / max |ref|."""
    import onnxruntime as ort
    feeds = make_inputs(net, batch, seed=7)
    extra = []
    for n, a in feeds.items():
        p = OUT / f"{name}.in.{n}.npy"
        np.save(p, a)
        extra += ["--in", f"{n}={p}"]
    res = OUT / f"{name}.out.npy"
    r = subprocess.run(kiln_cmd("run", source, kfile, wfile, ofile, batch, extra + ["--out", str(res), "--force"]),
                       capture_output=True, text=True)
    if r.returncode != 0:
        return f"kiln run failed: {r.stderr.strip()[-500:]}"
    got = np.load(res)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    want = ort.InferenceSession(str(ofile), so, providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    scale = float(np.abs(want).max()) or 1.0
    return float(np.abs(got.astype(np.float64) - want).max() / scale)


# ----------------------------------------------------------------------------------
# sgemm of the machine, and the tables


def sgemm(threads, n=2048):
    """GFLOP/s of NumPy's (OpenBLAS) sgemm and of kiln's matmul, n^3, on `threads`."""
    a = np.random.default_rng(0).standard_normal((n, n), dtype=np.float32)
    c = np.empty_like(a)
    ms, _ = measure(lambda: np.matmul(a, a, out=c), budget=2.0)
    blas = 2.0 * n ** 3 / ms / 1e6
    r = subprocess.run([str(KILN), "bench", str(ROOT / "bench/programs/matmul.kiln"), "--dim", f"M={n}", "--dim",
                        f"K={n}", "--dim", f"N={n}", "--device=cpu", "--json", "--runs=10"], capture_output=True,
                       text=True)
    kl = 2.0 * n ** 3 / json.loads(r.stdout)["run_ms"] / 1e6 if r.returncode == 0 else 0.0
    return blas, kl


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--models", default="resnet18,resnet50,mobilenetv2,minilm")
    ap.add_argument("--batches", default="1,8")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=int(os.environ.get("KILN_THREADS", "2")))
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--budget", type=float, default=3.0, help="seconds of timed calls per peer case")
    ap.add_argument("--source", default="auto", choices=["auto", "kiln", "onnx"],
                    help="what kiln runs: the generated kiln program, the .onnx file, or the .onnx "
                         "file when this kiln can run it")
    ap.add_argument("--no-check", action="store_true")
    ap.add_argument("--peers", default="onnxruntime,torch")
    args = ap.parse_args()
    models = [m for m in args.models.split(",") if m]
    batches = [int(b) for b in args.batches.split(",")]
    torch_python = os.environ.get("BENCH_TORCH_PYTHON", "")
    peers = [p for p in args.peers.split(",") if p == "onnxruntime" or (p == "torch" and torch_python)]
    results = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="minutes"),
               "machine": platform.processor() or platform.machine(), "threads": args.threads, "cases": []}
    try:
        results["lscpu"] = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        pass
    blas, kl = sgemm(args.threads)
    results["sgemm"] = {"openblas": blas, "kiln": kl}
    print(f"[bench] sgemm 2048^3 on {args.threads} threads: OpenBLAS {blas:.0f} GFLOP/s, kiln {kl:.0f} GFLOP/s",
          file=sys.stderr)
    rows = []
    for name in models:
        net, kfile, wfile, ofile = write_model(name, args.tokens)
        spec = OUT / f"{name}.spec"
        NetSpec.save(net, spec)
        source = args.source
        if source == "auto":  # the .onnx file when this kiln imports ONNX models
            r = subprocess.run([str(KILN), "check", str(ofile)], capture_output=True, text=True)
            source = "onnx" if r.returncode == 0 else "kiln"
        for batch in batches:
            case = {"model": name, "batch": batch, "source": source}
            if not args.no_check:
                case["rel_err"] = check(name, source, kfile, wfile, ofile, net, batch)
                print(f"[bench] {name} batch {batch}: kiln vs onnxruntime, max rel err {case['rel_err']}",
                      file=sys.stderr)
            kiln_ms, peer_ms = [], {p: [] for p in peers}
            kernels = None
            for _ in range(args.rounds):
                rep = run_kiln(source, kfile, wfile, ofile, batch, 10 if batch == 1 else 5)
                kiln_ms.append(rep["run_ms"])
                if kernels is None or rep["run_ms"] <= min(kiln_ms):
                    kernels = rep["kernels"]
                for p in peers:
                    python = torch_python if p == "torch" else sys.executable
                    try:
                        peer_ms[p].append(run_peer(p, python, ofile, spec, batch, args.threads, args.budget)["ms"])
                    except RuntimeError as e:
                        print(f"[bench] {p} failed on {name}: {e}", file=sys.stderr)
            case["kiln_ms"] = min(kiln_ms)
            case["kiln_rounds"] = kiln_ms
            for p in peers:
                case[p + "_ms"] = min(peer_ms[p]) if peer_ms[p] else None
                case[p + "_rounds"] = peer_ms[p]
            if name == "resnet50" and batch == 1:
                case["layers"] = layer_table(net, kernels, max(blas, kl))
            results["cases"].append(case)
            rows.append(case)
            print(f"[bench] {name} batch {batch}: kiln {case['kiln_ms']:.2f} ms, "
                  + ", ".join(f"{p} {case[p + '_ms']}" for p in peers), file=sys.stderr)
    (ROOT / "build" / "bench-models.json").write_text(json.dumps(results, indent=1))
    print_tables(results, peers)


def layer_table(net, kernels, sgemm_gflops):
    """The conv kernels of a run (graph order) matched to the convolutions recorded."""
    convs = [k for k in kernels if "conv2d" in k["name"]]
    rows = []
    for (desc, cin, cout, k, stride, groups, hin, hout), kn in zip(net.convs, convs):
        g = kn["flops"] / kn["ms"] / 1e6 if kn["ms"] > 0 else 0.0
        rows.append({"layer": desc, "in": hin, "out": hout, "kernel": kn["name"], "ms": kn["ms"],
                     "gflops": g, "pct_sgemm": 100.0 * g / sgemm_gflops})
    return rows


def print_tables(results, peers):
    print(f"machine: {results['machine']}, {results['threads']} threads, {results['date']}")
    print(f"sgemm 2048^3: OpenBLAS {results['sgemm']['openblas']:.0f} GFLOP/s, "
          f"kiln {results['sgemm']['kiln']:.0f} GFLOP/s")
    head = ["model", "batch", "kiln ms"] + [p + " ms" for p in peers] + ["ratio", "kiln vs ORT rel err"]
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for c in results["cases"]:
        best = [c[p + "_ms"] for p in peers if c.get(p + "_ms")]
        ratio = min(best) / c["kiln_ms"] if best else float("nan")
        cells = [c["model"], str(c["batch"]), f"{c['kiln_ms']:.2f}"]
        cells += [f"{c[p + '_ms']:.2f}" if c.get(p + "_ms") else "n/a" for p in peers]
        cells += [f"{ratio:.2f}x", f"{c['rel_err']:.1e}" if isinstance(c.get("rel_err"), float) else
                  str(c.get("rel_err", "-"))]
        print("| " + " | ".join(cells) + " |")
    for c in results["cases"]:
        if "layers" not in c:
            continue
        print()
        print(f"ResNet-50 convolutions, batch 1 ({c['model']}): GFLOP/s of each kernel, "
              f"% of the machine's sgemm ({max(results['sgemm'].values()):.0f} GFLOP/s)")
        print("| layer | in | out | kernel | ms | GFLOP/s | % sgemm |")
        print("|---|---|---|---|---|---|---|")
        for r in c["layers"]:
            print(f"| {r['layer']} | {r['in']} | {r['out']} | {r['kernel']} | {r['ms']:.3f} | {r['gflops']:.0f} | "
                  f"{r['pct_sgemm']:.0f}% |")


if __name__ == "__main__":
    main()
