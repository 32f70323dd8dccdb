#!/usr/bin/env bash
# The micro-kernel alone on one core (bench/ukernel.c): kiln's own kiln.mm.ukernel from a
# model's emitted LLVM against intrinsics forms of other tiles, GFLOP/s by thread CPU time
# (results: docs/performance.md, "Session 16: the products on Zen 5").
#   bench/ukernel.sh                                 # native CPU, KC 256, MC 240
#   UK_CPU=emeraldrapids bench/ukernel.sh 512 240    # KC MC [REPS]
# Needs build/kiln (make), build/bench-models (bench/models.sh makes it; UK_MODEL names
# another .onnx), llvm-extract/llc of LLVM 19 (UK_LLVM: their suffix, default -19) and clang.
# Time it with nothing else running (on a shared machine, hold it alone).  Output in build/ukernel/.
set -euo pipefail
cd "$(cd "$(dirname "$0")/.." && pwd)"
sfx="${UK_LLVM:--19}"
cpu="${UK_CPU:-$(llc$sfx --version | sed -n 's/^ *Host CPU: *//p' | head -1)}"
cpu="${cpu:-native}"
model="${UK_MODEL:-build/bench-models/resnet50.onnx}"
out=build/ukernel
mkdir -p "$out"
# kiln's code for that CPU (its micro-kernel's form and width go by the CPU's name)
emit_cpu=()
[ "$cpu" != native ] && emit_cpu=(--cpu="$cpu")
build/kiln emit "$model" --emit=llvm --dim N=1 "${emit_cpu[@]}" -o "$out/model.ll" --force
llvm-extract$sfx -func=kiln.mm.ukernel "$out/model.ll" -S -o "$out/uk.ll"
sed -e 's/@kiln\.mm\.ukernel(/@kiln_uk(/' -e 's/define internal void @kiln_uk/define void @kiln_uk/' \
    "$out/uk.ll" >"$out/uk2.ll"
llc$sfx -O3 -mcpu="$cpu" -relocation-model=pic -filetype=obj "$out/uk2.ll" -o "$out/uk.o"
# clang may be older than LLVM 19 (no znver5): bitcode for x86-64-v4, llc for the CPU
clang -O3 -march=x86-64-v4 -mprefer-vector-width=512 -c -emit-llvm bench/ukernel.c -o "$out/h.bc"
llc$sfx -O3 -mcpu="$cpu" -relocation-model=pic -filetype=obj "$out/h.bc" -o "$out/h.o"
clang "$out/h.o" "$out/uk.o" -o "$out/ukernel"
echo "cpu $cpu" >&2
exec "$out/ukernel" "$@"
