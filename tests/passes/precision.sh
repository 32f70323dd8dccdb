#!/bin/sh
# precision.sh - mixed precision against the f32 reference, for every example.
#
#     sh tests/passes/precision.sh BUILD/kiln [DEVICES]     (DEVICES default: "ref kir")
#
# Runs every graph of examples/*.kiln at --precision=f16, bf16 and auto with
# --compare (the f32 reference: device ref at -O0, same seeded inputs) and
# checks each result's normwise error, max |x - ref| / max |ref|, against a
# bound per example: the bf16 bound below (about 3x what was measured with
# these seeds and sizes, docs/passes.md), the same for auto, a quarter of it
# for f16 (3 more mantissa bits: errors about 8x smaller).  Graphs without a
# matmul or conv2d must not change beyond f32 rounding (1e-5).
# Prints one line per failure and "precision: N passed, N failed" last.
KILN=${1:?usage: precision.sh KILN [DEVICES]}
DEVICES=${2:-ref kir}
DIMS="--dim B=2 --dim T=8 --dim N=4"
. "$(dirname "$0")/../lib.sh"

# example graph bf16-bound
BOUNDS="
attention attention 0.04
attention masked_attention 0.04
gelu_chain gelu_chain 1e-5
layernorm layernorm_manual 1e-5
layernorm layernorm_builtin 1e-5
layernorm rmsnorm_manual 1e-5
lenet lenet 0.03
mlp mlp 0.002
softmax softmax_manual 1e-5
softmax softmax_builtin 1e-5
softmax classify 1e-5
transformer_block block 0.04
transformer_block self_attention 0.04
"

check() { # device precision file graph bound
    out=$("$KILN" run "examples/$3.kiln" -g "$4" --device="$1" $DIMS --precision="$2" --compare 2>&1 >/dev/null)
    rc=$?
    lines=$(printf '%s\n' "$out" | grep 'compare result')
    if [ $rc != 0 ] || [ -z "$lines" ]; then
        bad "$1 $2 $3/$4: kiln exited with $rc"
        printf '%s\n' "$out" | sed 's/^/    /' | head -n 10
        return
    fi
    over=$(printf '%s\n' "$lines" | awk -v bound="$5" '
        { for (i = 1; i <= NF; i++) { if ($i == "abs") a = $(i + 2); if ($i == "|ref|") m = $(i + 1) }
          gsub(",", "", a); e = m > 0 ? a / m : a
          if (!(e <= bound)) printf "result %s: normwise error %.3g > %.3g; ", $4, e, bound }')
    if [ -n "$over" ]; then bad "$1 $2 $3/$4: $over"; else ok; fi
}

# every graph of every example needs a bound
every_graph_listed "$BOUNDS" "error bound in tests/passes/precision.sh"

for dev in $DEVICES; do
    while read -r file graph bound; do
        [ -n "$file" ] || continue
        f16=$(awk -v b="$bound" 'BEGIN { printf "%g", b < 1e-4 ? b : b / 4 }')
        check "$dev" f16 "$file" "$graph" "$f16"
        check "$dev" bf16 "$file" "$graph" "$bound"
        check "$dev" auto "$file" "$graph" "$bound"
    done <<END
$BOUNDS
END
done
summary precision
