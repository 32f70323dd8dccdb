#!/usr/bin/python3
"""Writes tests/onnx/lenet.onnx, a LeNet-style classifier as PyTorch exports them, and its
reference input and output (tests/onnx/lenet_input.pb, tests/onnx/lenet_output.npy).

The model is built with Debian's onnx package (onnx.helper), its weights drawn from NumPy's
generator with seed 0.  The reference output is computed here with NumPy alone, in float64,
by a plain implementation of each layer (no ONNX runtime is involved): that is the oracle
kiln's result is compared against (tests/onnx/models.sh, relative tolerance 1e-4).

The graph exercises what classifier exports contain: a symbolic batch (dim_param), Conv
with pads and bias, BatchNormalization, Relu and Clip (ReLU6), MaxPool, a flatten written
as PyTorch writes it (Shape -> Gather -> Unsqueeze -> Concat -> Reshape), Gemm with
transB=1, Dropout, an Identity that aliases a shared weight, int8 weights with a
Cast + Mul dequantisation (folded at import), weights stored both as raw_data and as
float_data, and Softmax.

Usage: /usr/bin/python3 tests/onnx/gen_lenet.py [OUT_DIR]   (default: tests/onnx)
"""
import os
import sys

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(0)


def weight(*shape, scale=None):
    fan_in = int(np.prod(shape[1:])) if len(shape) > 1 else shape[0]
    return (rng.standard_normal(shape) * (scale or 1.0 / np.sqrt(fan_in))).astype(np.float32)


w1, b1 = weight(6, 1, 5, 5), weight(6, scale=0.1)
bn_scale = (1 + 0.1 * rng.standard_normal(6)).astype(np.float32)
bn_bias = (0.1 * rng.standard_normal(6)).astype(np.float32)
bn_mean = (0.1 * rng.standard_normal(6)).astype(np.float32)
bn_var = (0.5 + rng.random(6)).astype(np.float32)
w2, b2 = weight(16, 6, 5, 5), weight(16, scale=0.1)
fc1_w, fc1_b = weight(120, 400), weight(120, scale=0.1)
# fc2's weight is stored as int8 with a scale, dequantised in the graph
fc2_real = weight(84, 120)
fc2_scale = np.float32(np.abs(fc2_real).max() / 127)
fc2_q = np.clip(np.round(fc2_real / fc2_scale), -127, 127).astype(np.int8)
fc2_b = weight(84, scale=0.1)
fc3_w, fc3_b = weight(10, 84), weight(10, scale=0.1)

x = rng.standard_normal((2, 1, 28, 28)).astype(np.float32)


def init(name, array, as_float_data=False):
    if as_float_data:  # the typed field instead of raw_data
        return helper.make_tensor(name, TensorProto.FLOAT, array.shape, array.ravel().tolist())
    return numpy_helper.from_array(array, name)


inits = [
    init("conv1.weight", w1), init("conv1.bias", b1, as_float_data=True),
    init("bn1.weight", bn_scale), init("bn1.bias", bn_bias),
    init("bn1.running_mean", bn_mean), init("bn1.running_var", bn_var),
    init("conv2.weight", w2), init("conv2.bias", b2),
    init("fc1.weight", fc1_w), init("fc1.bias", fc1_b),
    numpy_helper.from_array(fc2_q, "fc2.weight_q"), init("fc2.scale", np.array(fc2_scale, dtype=np.float32)),
    init("fc2.bias", fc2_b), init("fc3.weight", fc3_w), init("fc3.bias", fc3_b),
    numpy_helper.from_array(np.array([0], dtype=np.int64), "zero"),
    numpy_helper.from_array(np.array([-1], dtype=np.int64), "minus_one"),
    numpy_helper.from_array(np.array(0.0, dtype=np.float32), "clip_min"),
    numpy_helper.from_array(np.array(6.0, dtype=np.float32), "clip_max"),
]

N = helper.make_node
nodes = [
    N("Conv", ["input", "conv1.weight", "conv1.bias"], ["c1"], name="/conv1/Conv", kernel_shape=[5, 5],
      pads=[2, 2, 2, 2], strides=[1, 1], dilations=[1, 1], group=1),
    N("BatchNormalization", ["c1", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var"], ["n1"],
      name="/bn1/BatchNormalization", epsilon=1e-5, momentum=0.9),
    N("Relu", ["n1"], ["r1"], name="/relu1/Relu"),
    N("MaxPool", ["r1"], ["p1"], name="/pool1/MaxPool", kernel_shape=[2, 2], strides=[2, 2], pads=[0, 0, 0, 0],
      ceil_mode=0),
    N("Conv", ["p1", "conv2.weight", "conv2.bias"], ["c2"], name="/conv2/Conv", kernel_shape=[5, 5]),
    N("Clip", ["c2", "clip_min", "clip_max"], ["r2"], name="/relu6/Clip"),
    N("MaxPool", ["r2"], ["p2"], name="/pool2/MaxPool", kernel_shape=[2, 2], strides=[2, 2]),
    # x.view(x.size(0), -1) as torch.onnx exports it
    N("Shape", ["p2"], ["s"], name="/Shape"),
    N("Gather", ["s", "zero_scalar"], ["batch"], name="/Gather", axis=0),
    N("Unsqueeze", ["batch", "zero"], ["batch1"], name="/Unsqueeze"),
    N("Concat", ["batch1", "minus_one"], ["flat_shape"], name="/Concat", axis=0),
    N("Reshape", ["p2", "flat_shape"], ["flat"], name="/Reshape"),
    N("Gemm", ["flat", "fc1.weight", "fc1.bias"], ["f1"], name="/fc1/Gemm", alpha=1.0, beta=1.0, transB=1),
    N("Relu", ["f1"], ["h1"], name="/relu3/Relu"),
    N("Dropout", ["h1"], ["d1"], name="/dropout/Dropout"),
    N("Cast", ["fc2.weight_q"], ["fc2.weight_f"], name="/fc2/Cast", to=TensorProto.FLOAT),
    N("Mul", ["fc2.weight_f", "fc2.scale"], ["fc2.weight"], name="/fc2/Mul"),
    N("Identity", ["fc2.weight"], ["fc2.weight_alias"], name="/fc2/Identity"),
    N("Gemm", ["d1", "fc2.weight_alias", "fc2.bias"], ["f2"], name="/fc2/Gemm", transB=1),
    N("Relu", ["f2"], ["h2"], name="/relu4/Relu"),
    N("Gemm", ["h2", "fc3.weight", "fc3.bias"], ["logits"], name="/fc3/Gemm", transB=1),
    N("Softmax", ["logits"], ["probs"], name="/Softmax", axis=1),
]
nodes.insert(0, N("Constant", [], ["zero_scalar"], name="/Constant",
                  value=numpy_helper.from_array(np.array(0, dtype=np.int64))))
graph = helper.make_graph(
    nodes, "lenet",
    [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["batch", 1, 28, 28])],
    [helper.make_tensor_value_info("probs", TensorProto.FLOAT, ["batch", 10])],
    inits)
model = helper.make_model(graph, producer_name="kiln tests/onnx/gen_lenet.py",
                          opset_imports=[helper.make_opsetid("", 13)])
onnx.checker.check_model(model)


# ---- the oracle: NumPy, float64 ----
def conv(x, w, b, pad):
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, c, h, wd = x.shape
    o, _, kh, kw = w.shape
    out = np.zeros((n, o, h - kh + 1, wd - kw + 1))
    for i in range(kh):
        for j in range(kw):
            patch = x[:, :, i:i + out.shape[2], j:j + out.shape[3]]
            out += np.einsum("nchw,oc->nohw", patch, w[:, :, i, j])
    return out + b[None, :, None, None]


def maxpool(x):
    n, c, h, w = x.shape
    return x.reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


x64 = x.astype(np.float64)
y = conv(x64, w1.astype(np.float64), b1, 2)
y = (y - bn_mean[None, :, None, None]) / np.sqrt(bn_var[None, :, None, None] + 1e-5) * \
    bn_scale[None, :, None, None] + bn_bias[None, :, None, None]
y = maxpool(np.maximum(y, 0))
y = maxpool(np.clip(conv(y, w2.astype(np.float64), b2, 0), 0, 6))
y = y.reshape(y.shape[0], -1)
y = np.maximum(y @ fc1_w.T.astype(np.float64) + fc1_b, 0)
fc2_w = fc2_q.astype(np.float32) * fc2_scale  # dequantised in float32, as the graph does
y = np.maximum(y @ fc2_w.T.astype(np.float64) + fc2_b, 0)
y = y @ fc3_w.T.astype(np.float64) + fc3_b
y = np.exp(y - y.max(axis=1, keepdims=True))
probs = (y / y.sum(axis=1, keepdims=True)).astype(np.float32)

onnx.save(model, os.path.join(out_dir, "lenet.onnx"))
with open(os.path.join(out_dir, "lenet_input.pb"), "wb") as f:
    f.write(numpy_helper.from_array(x, "input").SerializeToString())
np.save(os.path.join(out_dir, "lenet_output.npy"), probs)
print("gen_lenet: wrote lenet.onnx, lenet_input.pb, lenet_output.npy to", out_dir)
