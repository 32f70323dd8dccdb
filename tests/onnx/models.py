#!/usr/bin/env python3
"""tests/onnx/models.py - whole models against onnxruntime (`make test-models`, opt-in).

Exports, with fixed seeds and random weights, torchvision's ResNet-18, ResNet-50 and
MobileNetV2 and a BERT encoder (transformers' BertModel, 4 layers, padded second sequence)
to ONNX with a dynamic batch, runs each through onnxruntime for the reference and through
`kiln run` on the given devices, and compares: the largest absolute difference over the
largest reference magnitude must stay within 1e-4 (relative to the output's scale:
MobileNetV2 with random init gives logits near 1e-9, so elementwise relative errors say
nothing there).  Then the MiniLM-L6-shaped encoder that perf's benchmark builds
(bench/models.py: LayerNormalization, Erf GELU, 12 heads, 128 tokens) is written as ONNX by
that script's own code and checked the same way (its `check`), at batch 2.

Needs what `tools/install-deps.sh --models` installs: Debian's python3-torch and
python3-torchvision, and in build/models-venv onnxruntime and transformers from PyPI.
Prints "models: N passed, N failed" last.

Usage: build/models-venv/bin/python tests/onnx/models.py --kiln build/kiln [--devices cpu]
       [--work DIR] [--only NAME]
"""
import argparse
import os
import subprocess
import sys
import time

import numpy as np
import onnx
from onnx import numpy_helper


def export_vision(name, work):
    import torch
    import torchvision

    torch.manual_seed(0)
    model = getattr(torchvision.models, name)(weights=None).eval()
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(1))
    path = os.path.join(work, name + ".onnx")
    torch.onnx.export(model, (x,), path, input_names=["input"], output_names=["logits"],
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}}, opset_version=13)
    return path, {"input": x.numpy()}


def export_bert(work):
    import torch
    from transformers import BertConfig, BertModel

    torch.manual_seed(0)
    config = BertConfig(vocab_size=1000, hidden_size=256, num_hidden_layers=4, num_attention_heads=4,
                        intermediate_size=1024, max_position_embeddings=128)
    model = BertModel(config).eval()
    gen = torch.Generator().manual_seed(2)
    ids = torch.randint(0, 1000, (2, 16), generator=gen)
    mask = torch.ones(2, 16, dtype=torch.int64)
    mask[1, 12:] = 0  # padding in the second sequence
    types = torch.zeros(2, 16, dtype=torch.int64)
    path = os.path.join(work, "bert.onnx")
    axes = {0: "batch", 1: "seq"}
    torch.onnx.export(model, (ids, mask, types), path,
                      input_names=["input_ids", "attention_mask", "token_type_ids"],
                      output_names=["last_hidden_state", "pooler_output"],
                      dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                                    "last_hidden_state": axes, "pooler_output": {0: "batch"}},
                      opset_version=14)
    return path, {"input_ids": ids.numpy(), "attention_mask": mask.numpy(), "token_type_ids": types.numpy()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", default="build/kiln")
    ap.add_argument("--devices", default="cpu")
    ap.add_argument("--work", default="build/models")
    ap.add_argument("--only")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)
    import onnxruntime as ort

    models = [("resnet18", lambda: export_vision("resnet18", args.work)),
              ("resnet50", lambda: export_vision("resnet50", args.work)),
              ("mobilenet_v2", lambda: export_vision("mobilenet_v2", args.work)),
              ("bert", lambda: export_bert(args.work))]
    passed = failed = 0
    for name, export in models:
        if args.only and args.only not in name:
            continue
        try:
            path, feeds = export()
        except Exception as e:  # an export problem is a failure of this test, not a crash of the layer
            print("FAIL %s: export failed: %s" % (name, e))
            failed += 1
            continue
        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        want = sess.run(None, feeds)
        ins = []
        for k, v in feeds.items():
            p = os.path.join(args.work, "%s.%s.pb" % (name, k))
            with open(p, "wb") as f:
                f.write(numpy_helper.from_array(v, k).SerializeToString())
            ins += ["--in", "%s=%s" % (k, p)]
        for dev in args.devices.split(","):
            out = os.path.join(args.work, "%s.%s.out" % (name, dev))
            t0 = time.time()
            r = subprocess.run([args.kiln, "run", path, "--device", dev, "--out", out + "/", "--force"] + ins,
                               capture_output=True, text=True)
            secs = time.time() - t0
            if r.returncode != 0:
                print("FAIL %s on %s: kiln exited %d: %s" % (name, dev, r.returncode, r.stderr.strip()[-2000:]))
                failed += 1
                continue
            ok = True
            for i, w in enumerate(want):
                got = np.load(os.path.join(out, "%d.npy" % i))
                scale = float(np.abs(w).max()) or 1.0
                err = float(np.abs(got.astype(np.float64) - w).max()) / scale if got.shape == w.shape else float("inf")
                status = "ok" if err <= 1e-4 else "FAIL"
                print("%s %s on %s: output %d %s, max |kiln - onnxruntime| / max |onnxruntime| = %.2e (%.1f s)"
                      % (status, name, dev, i, list(w.shape), err, secs))
                ok = ok and err <= 1e-4
            if ok:
                passed += 1
            else:
                failed += 1
    # The benchmark's MiniLM-shaped encoder, built and checked by bench/models.py itself.
    if not args.only or args.only in "bench-minilm":
        sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "bench"))
        import models as bench_models

        bench_models.KILN = os.path.abspath(args.kiln)
        net, kfile, wfile, ofile = bench_models.write_model("minilm", 128)
        t0 = time.time()
        err = bench_models.check("minilm", "onnx", kfile, wfile, ofile, net, 2)
        ok = isinstance(err, float) and err <= 1e-4
        print("%s bench-minilm (bench/models.py, %s) on cpu: max |kiln - onnxruntime| / max |onnxruntime| = %s"
              " (%.1f s)" % ("ok" if ok else "FAIL", ofile, "%.2e" % err if isinstance(err, float) else err,
                             time.time() - t0))
        passed += ok
        failed += not ok
    print("models: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
