#!/usr/bin/python3
"""Writes the NumPy-made references of the Go package's tests (go/kiln_test.go).

    /usr/bin/python3 tests/gen/go_data.py OUTDIR

OUTDIR gets
    mlp.safetensors            w1, b1, w2, b2 of examples/mlp.kiln (also as mlp_w1.npy ...)
    mlp_x<k>.npy, mlp_y<k>.npy k = 0..7: inputs of batch 1..4 and softmax(relu(x@w1+b1)@w2+b2)
    lenet.safetensors          the 10 weights of examples/lenet.kiln (also as lenet_c1.npy ...)
    lenet_x.npy, lenet_y.npy   3 images and the logits (convolutions done here in float64)
    kinds_<name>.npy           inputs and results of the dtype graph of kiln_test.go
                               (bf16 as uint16 bit patterns, f16 as float16)
    onnx_lenet_x.npy, _y.npy   tests/onnx/lenet.onnx's input and NumPy-made output, when
                               that model is there
Every value comes from np.random.default_rng(20261205): the same files every time.
"""
import json
import struct
import sys
from pathlib import Path

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

rng = np.random.default_rng(20261205)


def write_safetensors(path, tensors):
    """The safetensors format: an 8-byte header length, a JSON header, the data."""
    kinds = {np.dtype("float32"): "F32", np.dtype("float64"): "F64", np.dtype("int32"): "I32",
             np.dtype("int64"): "I64"}
    header, blobs, at = {}, [], 0
    for name, t in tensors.items():
        b = np.ascontiguousarray(t).astype(t.dtype.newbyteorder("<")).tobytes()
        header[name] = {"dtype": kinds[t.dtype], "shape": list(t.shape), "data_offsets": [at, at + len(b)]}
        blobs.append(b)
        at += len(b)
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for b in blobs:
            f.write(b)


def uniform(shape, scale):
    return (rng.uniform(-1, 1, size=shape) * scale).astype(np.float32)


def mlp(out):
    w = {"w1": uniform((784, 256), 0.05), "b1": uniform((256,), 0.1),
         "w2": uniform((256, 10), 0.2), "b2": uniform((10,), 0.1)}
    write_safetensors(out / "mlp.safetensors", w)
    for name, v in w.items():  # also one by one, for the AOT bundle's test
        np.save(out / f"mlp_{name}.npy", v)
    f64 = {k: v.astype(np.float64) for k, v in w.items()}
    for k in range(8):
        x = uniform((1 + k % 4, 784), 1.0)
        h = np.maximum(x.astype(np.float64) @ f64["w1"] + f64["b1"], 0)
        z = h @ f64["w2"] + f64["b2"]
        e = np.exp(z - z.max(axis=-1, keepdims=True))
        np.save(out / f"mlp_x{k}.npy", x)
        np.save(out / f"mlp_y{k}.npy", (e / e.sum(axis=-1, keepdims=True)).astype(np.float32))


def conv2d(x, w, b, pad):
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    win = sliding_window_view(x, w.shape[2:], axis=(2, 3))  # N, C, OH, OW, KH, KW
    return np.einsum("nchwij,ocij->nohw", win, w) + b[None, :, None, None]


def maxpool2(x):
    n, c, h, w = x.shape
    return x[:, :, : h // 2 * 2, : w // 2 * 2].reshape(n, c, h // 2, 2, w // 2, 2).max(axis=(3, 5))


def lenet(out):
    shapes = {"c1": (6, 1, 5, 5), "c1b": (6,), "c2": (16, 6, 5, 5), "c2b": (16,), "f1": (120, 400),
              "f1b": (120,), "f2": (84, 120), "f2b": (84,), "f3": (10, 84), "f3b": (10,)}
    # PyTorch's default initialisation: U(-1/sqrt(fan_in), 1/sqrt(fan_in))
    w = {}
    for name, shape in shapes.items():
        fan_in = int(np.prod(shapes[name.rstrip("b")][1:]))
        w[name] = uniform(shape, 1 / np.sqrt(fan_in))
    write_safetensors(out / "lenet.safetensors", w)
    for name, v in w.items():
        np.save(out / f"lenet_{name}.npy", v)
    d = {k: v.astype(np.float64) for k, v in w.items()}
    x = rng.uniform(0, 1, size=(3, 1, 28, 28)).astype(np.float32)
    h = maxpool2(np.maximum(conv2d(x.astype(np.float64), d["c1"], d["c1b"], 2), 0))
    h = maxpool2(np.maximum(conv2d(h, d["c2"], d["c2b"], 0), 0))
    h = h.reshape(3, -1)
    h = np.maximum(h @ d["f1"].T + d["f1b"], 0)
    h = np.maximum(h @ d["f2"].T + d["f2b"], 0)
    np.save(out / "lenet_x.npy", x)
    np.save(out / "lenet_y.npy", (h @ d["f3"].T + d["f3b"]).astype(np.float32))


def bf16_bits(v):
    """float32 -> bf16 bit patterns, rounded to nearest even."""
    u = np.asarray(v, dtype=np.float32).view(np.uint32).astype(np.uint64)
    return ((u + 0x7FFF + ((u >> 16) & 1)) >> 16).astype(np.uint16)


def bf16_value(bits):
    return (bits.astype(np.uint32) << 16).view(np.float32)


def kinds(out):
    k = 5
    a = rng.uniform(-2, 2, size=k)
    b = rng.integers(-1000, 1000, size=k, dtype=np.int32)
    c = rng.integers(-9 * 10**7, 9 * 10**7, size=k, dtype=np.int64)  # c*c exact in double (ref)
    d = rng.uniform(size=k) < 0.5
    e = rng.uniform(-4, 4, size=k).astype(np.float16)
    f = bf16_bits(rng.uniform(-4, 4, size=k).astype(np.float32))
    results = {
        "r0": a * a + 1.0,
        "r1": (b * 3 - b).astype(np.int32),
        "r2": c * c,
        "r3": ~d,
        "r4": e * e,
        "r5": bf16_bits(bf16_value(f) * 2),
        "r6": e.astype(np.float32) + bf16_value(f),
    }
    for name, v in {"a": a, "b": b, "c": c, "d": d, "e": e, "f": f, **results}.items():
        np.save(out / f"kinds_{name}.npy", v)


def onnx_lenet(out):
    """The ONNX importer's LeNet (tests/onnx/lenet.onnx), when it is there: its input
    (an ONNX TensorProto) as .npy, and its NumPy-made output."""
    d = Path(__file__).resolve().parents[1] / "onnx"
    if not (d / "lenet.onnx").exists():
        return
    from onnx import TensorProto, numpy_helper

    t = TensorProto()
    t.ParseFromString((d / "lenet_input.pb").read_bytes())
    np.save(out / "onnx_lenet_x.npy", numpy_helper.to_array(t).astype(np.float32))
    np.save(out / "onnx_lenet_y.npy", np.load(d / "lenet_output.npy").astype(np.float32))


def main():
    out = Path(sys.argv[1])
    out.mkdir(parents=True, exist_ok=True)
    with np.errstate(over="ignore"):
        mlp(out)
        lenet(out)
        kinds(out)
    onnx_lenet(out)


if __name__ == "__main__":
    main()
