#!/usr/bin/python3
"""The -O0 / -O2 table of docs/performance.md, regenerated.

    /usr/bin/python3 tests/passes/perf_table.py --kiln build/kiln [--device kir] [--runs 5]

For every graph of examples/*.kiln (sizes in SIZES below) and each of -O0 and
-O2 it reads `kiln emit --emit=kernels` and `kiln bench --json` and prints one
Markdown row:
  kernels      the number of kernels;
  moved        bytes of temporaries moving between kernels: each temporary
               is written once and read once by every kernel that loads it
               (inputs and outputs are not counted: they move either way);
  arena        the temporaries' arena after liveness-based placement, beside
               the sum of all intermediates (what a buffer per value needs);
  run          the median of --runs whole runs on --device.
"""
import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent.parent
SIZES = {  # example -> --dim bindings (large enough for times above a millisecond)
    "mlp": ["B=256"],
    "attention": ["B=4", "T=128"],
    "gelu_chain": ["N=1024"],
    "layernorm": ["B=16", "T=128"],
    "lenet": ["N=16"],
    "softmax": ["B=256", "N=1024"],
    "transformer_block": ["B=4", "T=128"],
}
DTYPE_BYTES = {"f32": 4, "f16": 2, "bf16": 2, "f64": 8, "i32": 4, "i64": 8, "bool": 1}


def kernels_stats(kiln, path, graph, dims, flags):
    cmd = [kiln, "emit", str(path), "-g", graph, "--emit=kernels"] + dims + flags
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    temps = {}
    for m in re.finditer(r"^  buffer (\w+): temp (\w+)\[(\d+)\]", text, re.M):
        temps[m.group(1)] = DTYPE_BYTES[m.group(2)] * int(m.group(3))
    arena, total = map(int, re.search(r"arena: (\d+) bytes \(intermediates total (\d+) bytes\)", text).groups())
    kernels = re.split(r"^  kernel ", text, flags=re.M)[1:]
    moved = 0
    for body in kernels:
        loaded = set(re.findall(r"= (\w+)\[v\d+\]", body))
        stored = set(re.findall(r"^\s+(\w+)\[v\d+\] = ", body, re.M))
        moved += sum(temps[b] for b in (loaded | stored) if b in temps)
    return len(kernels), moved, arena, total


def run_ms(kiln, path, graph, dims, flags, device, runs):
    cmd = [kiln, "bench", str(path), "-g", graph, f"--device={device}", f"--runs={runs}", "--json"] + dims + flags
    p = subprocess.run(cmd, capture_output=True, text=True)
    if p.returncode != 0:
        return None
    return json.loads(p.stdout)["run_ms"]


def human(n):
    for unit in ["B", "KiB", "MiB"]:
        if n < 1024 or unit == "MiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kiln", default="build/kiln")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--runs", type=int, default=30)
    ap.add_argument("--config", action="append", default=[],
                    help='kiln flags of one column set, e.g. "-O2 --precision=bf16" (default: -O0 and -O2)')
    ap.add_argument("--filter", default="", help="only examples whose name contains this")
    args = ap.parse_args()
    configs = args.config or ["-O0", "-O2"]
    print(f"| graph | sizes | flags | kernels | moved between kernels | arena / all intermediates "
          f"| run ({args.device}, ms) |")
    print("| --- | --- | --- | ---: | ---: | ---: | ---: |")
    for path in sorted((ROOT / "examples").glob("*.kiln")):
        if args.filter not in path.stem:
            continue
        dims = []
        for d in SIZES.get(path.stem, []):
            dims += ["--dim", d]
        for graph in re.findall(r"^graph (\w+)", path.read_text(), re.M):
            for level in configs:
                k, moved, arena, total = kernels_stats(args.kiln, path, graph, dims, level.split())
                ms = run_ms(args.kiln, path, graph, dims, level.split(), args.device, args.runs)
                t = f"{ms:.2f}" if ms is not None else "n/a"
                sizes = " ".join(SIZES.get(path.stem, []))
                print(f"| {path.stem}/{graph} | {sizes} | {level} | {k} | {human(moved)} | "
                      f"{human(arena)} / {human(total)} | {t} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
