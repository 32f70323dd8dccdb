#!/usr/bin/env python3
"""kiln on the GPU against PyTorch on the same GPU.

    python3 bench/gpu.py [--kiln build/kiln] [--runs 20] [--json OUT.json] [--only a,b,...]

Cases (kiln is timed by `kiln bench --json --device=cuda`: the median device
time of one run of the graph's kernels, inputs resident; PyTorch with CUDA
events around the same computation, median of the same number of runs):
  a  a fused elementwise chain (examples/gelu_chain.kiln) over 64M f32, as a
     fraction of the measured device-to-device copy bandwidth, and against
     PyTorch eager and torch.compile
  b  softmax over rows, 8192 x 8192 f32
  c  layernorm over rows, 16384 x 4096 f32
  d  f16 matmul 4096 x 4096 x 4096, TFLOP/s, against torch.matmul (cuBLAS)
  e  a GPT-2-small-sized transformer block (d=768, 12 heads, MLP 3072),
     B=8, T=512, f32 (TF32 off in PyTorch, as kiln computes in f32)
  f  compile time of every examples/*.kiln: cold (empty kernel cache: NVRTC
     and the driver's PTX JIT) and warm (cache hit), from `kiln bench`'s
     compile_ms

One table: case, kiln, peer, ratio.  For times the ratio is peer / kiln (above
1: kiln is faster); for bandwidth and TFLOP/s it is kiln / peer.  Without
PyTorch, CUDA or a GPU the script says so and exits 0 (nothing to compare).
"""
import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

LAYERNORM = """
graph ln(x: f32[B, D], g: f32[D], b: f32[D]) -> f32[B, D] {
    return layernorm(x, g, b, axis=-1, eps=1e-5)
}
"""

MATMUL_F16 = """
graph mm(a: f16[M, K], b: f16[K, N]) -> f16[M, N] {
    return a @ b
}
"""

BLOCK = """
graph block(x: f32[B, T, 768],
            ln1_g: f32[768], ln1_b: f32[768],
            wq: f32[768, 768], wk: f32[768, 768], wv: f32[768, 768], wo: f32[768, 768],
            ln2_g: f32[768], ln2_b: f32[768],
            w1: f32[768, 3072], b1: f32[3072], w2: f32[3072, 768], b2: f32[768]) -> f32[B, T, 768] {
    a = layernorm(x, ln1_g, ln1_b)
    q = transpose(reshape(a @ wq, [B, T, 12, 64]), [0, 2, 1, 3])
    k = transpose(reshape(a @ wk, [B, T, 12, 64]), [0, 2, 3, 1])
    v = transpose(reshape(a @ wv, [B, T, 12, 64]), [0, 2, 1, 3])
    p = softmax(q @ k * 0.125, axis=-1)
    h = x + reshape(transpose(p @ v, [0, 2, 1, 3]), [B, T, 768]) @ wo
    m = gelu(layernorm(h, ln2_g, ln2_b) @ w1 + b1) @ w2 + b2
    return h + m
}
"""


def skip(why):
    print(f"bench/gpu.py: skipped: {why}")
    sys.exit(0)


class Bench:
    def __init__(self, args, torch):
        self.args = args
        self.torch = torch
        self.rows = []  # (case, kiln, peer, ratio)
        self.records = []  # for --json
        self.tmp = Path(tempfile.mkdtemp(prefix="kiln-bench-gpu."))

    # ------------------------------------------------------------ kiln
    def kiln_bench(self, source, dims, graph=None, env=None, runs=None):
        """Runs `kiln bench --json --device=cuda`; returns its JSON object."""
        if isinstance(source, Path):
            path = source
        else:
            path = self.tmp / f"case{len(self.records)}_{abs(hash(source)) % 10**8}.kiln"
            path.write_text(source)
        cmd = [self.args.kiln, "bench", str(path), "--device=cuda", "--json",
               f"--runs={runs or self.args.runs}"]
        if graph:
            cmd += ["-g", graph]
        for k, v in dims.items():
            cmd += ["--dim", f"{k}={v}"]
        t0 = time.time()
        p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=self.args.timeout)
        wall = time.time() - t0
        if p.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {p.returncode}: {p.stderr.strip()[-800:]}")
        out = json.loads(p.stdout.strip().splitlines()[-1])
        out["wall_s"] = wall
        return out

    # ----------------------------------------------------------- torch
    def torch_ms(self, fn, runs=None):
        """Median milliseconds of fn() on the GPU, after warm-up."""
        torch = self.torch
        runs = runs or self.args.runs
        for _ in range(3):
            fn()
        torch.cuda.synchronize()
        times = []
        for _ in range(runs):
            start = torch.cuda.Event(enable_timing=True)
            end = torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        return statistics.median(times)

    def compiled(self, fn):
        """torch.compile(fn), or None when it is not available here."""
        if self.args.no_compile or not hasattr(self.torch, "compile"):
            return None
        try:
            c = self.torch.compile(fn)
            c()  # compile now, so a failure shows here
            return c
        except Exception as e:  # noqa: BLE001 - any failure just means "no peer"
            print(f"  (torch.compile unavailable: {type(e).__name__}: {str(e).splitlines()[0][:120]})")
            self.args.no_compile = True
            return None

    # ------------------------------------------------------------ table
    def row(self, case, kiln, peer_name, peer, unit, higher_is_better=False):
        if kiln is None or peer is None:
            ratio = None
        elif higher_is_better:
            ratio = kiln / peer if peer else None
        else:
            ratio = peer / kiln if kiln else None
        self.rows.append((case, f"{kiln:.4g} {unit}" if kiln is not None else "n/a",
                          f"{peer_name} {peer:.4g} {unit}" if peer is not None else f"{peer_name} n/a",
                          f"{ratio:.2f}" if ratio is not None else "-"))
        self.records.append({"case": case, "kiln": kiln, "peer": peer_name, "peer_value": peer,
                             "unit": unit, "ratio": ratio})
        print("  " + " | ".join(self.rows[-1]), flush=True)  # as it comes, in case of a timeout
        self.write_json()

    def write_json(self):
        """--json: every row so far, rewritten after each one (atomically), so a run
        cut short by a time limit still leaves what it measured."""
        if not self.args.json:
            return
        out = Path(self.args.json)
        tmp = out.with_name(out.name + ".tmp")
        tmp.write_text(json.dumps({"gpu": self.torch.cuda.get_device_name(0), "rows": self.records}, indent=1))
        os.replace(tmp, out)

    def time_vs_torch(self, case, kiln_ms, eager_fn):
        self.row(case, kiln_ms, "torch eager", self.torch_ms(eager_fn), "ms")
        c = self.compiled(eager_fn)
        self.row(case, kiln_ms, "torch.compile", self.torch_ms(c) if c else None, "ms")

    # ------------------------------------------------------------ cases
    def case_a(self):
        torch = self.torch
        rows = 65536  # x 1024 = 64M elements
        n = rows * 1024
        k = self.kiln_bench(ROOT / "examples" / "gelu_chain.kiln", {"N": rows})
        x = torch.rand(rows, 1024, device="cuda") * 2 - 1
        y = torch.empty_like(x)
        copy_ms = self.torch_ms(lambda: y.copy_(x))
        moved = 2 * n * 4  # one read, one write
        copy_gbs = moved / copy_ms / 1e6
        kiln_gbs = moved / k["run_ms"] / 1e6
        self.row("a elementwise chain 64M f32 (of d2d copy)", kiln_gbs, "copy", copy_gbs, "GB/s",
                 higher_is_better=True)

        def chain():
            a = x * 1.5 + 0.25
            b = torch.nn.functional.gelu(a)
            c = torch.sqrt(b * b + 1.0)
            d = torch.tanh(c - 1.0)
            e = torch.sigmoid(d * 2.0)
            f = e * x
            g = torch.exp(-torch.abs(f))
            return g + x
        self.time_vs_torch("a elementwise chain 64M f32", k["run_ms"], chain)

    def case_b(self):
        torch = self.torch
        k = self.kiln_bench(ROOT / "examples" / "softmax.kiln", {"B": 8192, "N": 8192}, graph="softmax_builtin")
        x = torch.rand(8192, 8192, device="cuda") * 2 - 1
        self.time_vs_torch("b softmax 8192x8192 f32", k["run_ms"], lambda: torch.softmax(x, dim=-1))

    def case_c(self):
        torch = self.torch
        k = self.kiln_bench(LAYERNORM, {"B": 16384, "D": 4096})
        x = torch.rand(16384, 4096, device="cuda") * 2 - 1
        g = torch.rand(4096, device="cuda")
        b = torch.rand(4096, device="cuda")
        self.time_vs_torch("c layernorm 16384x4096 f32", k["run_ms"],
                           lambda: torch.nn.functional.layer_norm(x, (4096,), g, b, 1e-5))

    def case_d(self):
        torch = self.torch
        n = 4096
        k = self.kiln_bench(MATMUL_F16, {"M": n, "K": n, "N": n})
        a = torch.rand(n, n, device="cuda", dtype=torch.float16) - 0.5
        b = torch.rand(n, n, device="cuda", dtype=torch.float16) - 0.5
        flop = 2 * n ** 3
        kiln_tf = flop / k["run_ms"] / 1e9
        torch_tf = flop / self.torch_ms(lambda: torch.matmul(a, b)) / 1e9
        self.row("d matmul f16 4096^3", kiln_tf, "torch.matmul", torch_tf, "TFLOP/s", higher_is_better=True)

    def case_e(self):
        torch = self.torch
        B, T, D, H = 8, 512, 768, 12
        k = self.kiln_bench(BLOCK, {"B": B, "T": T})
        torch.backends.cuda.matmul.allow_tf32 = False
        r = lambda *s: (torch.rand(*s, device="cuda") * 2 - 1) * 0.05  # noqa: E731
        x = r(B, T, D)
        ln1_g, ln1_b, ln2_g, ln2_b = r(D) + 1, r(D), r(D) + 1, r(D)
        wq, wk, wv, wo = r(D, D), r(D, D), r(D, D), r(D, D)
        w1, b1, w2, b2 = r(D, 4 * D), r(4 * D), r(4 * D, D), r(D)
        F = torch.nn.functional

        def block():
            a = F.layer_norm(x, (D,), ln1_g, ln1_b, 1e-5)
            q = (a @ wq).reshape(B, T, H, 64).permute(0, 2, 1, 3)
            kk = (a @ wk).reshape(B, T, H, 64).permute(0, 2, 3, 1)
            v = (a @ wv).reshape(B, T, H, 64).permute(0, 2, 1, 3)
            p = torch.softmax(q @ kk * 0.125, dim=-1)
            h = x + (p @ v).permute(0, 2, 1, 3).reshape(B, T, D) @ wo
            m = F.gelu(F.layer_norm(h, (D,), ln2_g, ln2_b, 1e-5) @ w1 + b1) @ w2 + b2
            return h + m
        self.time_vs_torch(f"e transformer block B={B} T={T} d={D} f32", k["run_ms"], block)

    def case_f(self):
        dims = {"B": 2, "T": 8, "N": 2}
        for ex in sorted((ROOT / "examples").glob("*.kiln")):
            cache = self.tmp / f"cache-{ex.stem}"
            env = dict(os.environ, XDG_CACHE_HOME=str(cache), CUDA_CACHE_PATH=str(cache / "nv"))
            env.pop("KILN_CACHE", None)
            cold = self.kiln_bench(ex, dims, env=env, runs=1)
            warm = statistics.median(self.kiln_bench(ex, dims, env=env, runs=1)["compile_ms"] for _ in range(3))
            self.row(f"f compile {ex.stem} (warm cache vs cold)", warm, "cold", cold["compile_ms"], "ms")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kiln", default=str(ROOT / "build" / "kiln"))
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--timeout", type=float, default=300, help="seconds per kiln command")
    ap.add_argument("--only", default="a,b,c,d,f,e", help="cases to run, in this order, e.g. a,d")
    ap.add_argument("--json", help="also write the rows to this file (rewritten after every row)")
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile")
    args = ap.parse_args()

    try:
        import torch
    except ImportError as e:
        skip(f"PyTorch is not installed for {sys.executable} ({e})")
    if not torch.cuda.is_available():
        skip(f"PyTorch {torch.__version__} sees no CUDA GPU (torch.version.cuda={torch.version.cuda})")
    if not Path(args.kiln).exists():
        skip(f"no kiln binary at {args.kiln} (run make)")
    probe = subprocess.run([args.kiln, "run", str(ROOT / "examples" / "mlp.kiln"), "--device=cuda",
                            "--dim", "B=1"], capture_output=True, text=True)
    if probe.returncode != 0:
        skip(f"kiln cannot use the GPU: {probe.stderr.strip()[-400:]}")

    print(f"GPU: {torch.cuda.get_device_name(0)}; PyTorch {torch.__version__} (CUDA {torch.version.cuda}); "
          f"kiln: {args.kiln}; {args.runs} runs, medians")
    b = Bench(args, torch)
    failures = 0
    try:
        for case in args.only.split(","):
            case = case.strip()
            fn = getattr(b, f"case_{case}", None)
            if not fn:
                print(f"unknown case '{case}'")
                failures += 1
                continue
            t0 = time.time()
            try:
                fn()
                print(f"  case {case} done in {time.time() - t0:.1f} s", flush=True)
            except Exception as e:  # noqa: BLE001 - report and go on with the others
                failures += 1
                print(f"  case {case} FAILED: {type(e).__name__}: {e}", flush=True)
            torch.cuda.empty_cache()
    finally:
        shutil.rmtree(b.tmp, ignore_errors=True)

    w = [max(len(r[i]) for r in b.rows + [("case", "kiln", "peer", "ratio")]) for i in range(4)]
    print()
    print("  ".join(h.ljust(w[i]) for i, h in enumerate(("case", "kiln", "peer", "ratio"))))
    print("  ".join("-" * w[i] for i in range(4)))
    for r in b.rows:
        print("  ".join(r[i].ljust(w[i]) for i in range(4)))
    print("(ratio: peer/kiln for times, kiln/peer for GB/s and TFLOP/s; above 1 favours kiln)")
    b.write_json()
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
