#!/bin/sh
# Runs every test layer of kiln and closes with one line "N passed, N failed".
# Each layer prints its own "LAYER: N passed, N failed" as its last line.
# Usage: tests/run_all.sh [BUILD_DIR]   (KILN_LONG=1 for the long sweeps)
BUILD=${1:-build}
PY=/usr/bin/python3
DATA=$BUILD/testdata
total_pass=0
total_fail=0
# compiled code the layers cache (runtime/kcache.h) stays in the build folder:
# `make clean` empties it, and test runs leave nothing in ~/.cache
case $BUILD in /*) KILN_CACHE=${KILN_CACHE:-$BUILD/kcache} ;; *) KILN_CACHE=${KILN_CACHE:-$(pwd)/$BUILD/kcache} ;; esac
export KILN_CACHE
# ASan builds (make asan): GCC 12's LeakSanitizer can take a dlopen'ed library's
# dynamic TLS block (NVRTC's) for a glibc-2.19 one, and its tracer then crashes at
# exit ("Tracer caught signal 11 ... LeakSanitizer has encountered a fatal error",
# google/sanitizers#1322; `kiln emit --emit=ptx -o NEW_FILE` on a cold cache hit it
# every time).  No effect on other builds.
ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}intercept_tls_get_addr=0"
export ASAN_OPTIONS
failed_layers=""

# Runs one layer, shows its output, adds its counts to the totals.
layer() {
    name=$1
    shift
    log=$BUILD/logs/$name.log
    mkdir -p "$BUILD/logs"
    "$@" >"$log" 2>&1
    rc=$?
    summary=$(grep -E '[0-9]+ passed, [0-9]+ failed' "$log" | tail -n 1)
    p=$(echo "$summary" | sed -E 's/^(.*[^0-9])?([0-9]+) passed.*/\2/')
    f=$(echo "$summary" | sed -E 's/.* ([0-9]+) failed.*/\1/')
    if [ -z "$summary" ]; then
        p=0
        f=1
        echo "== $name: no summary line (exit $rc); last output:"
        tail -n 20 "$log"
    elif [ "$f" != 0 ] || [ $rc != 0 ]; then
        [ "$f" = 0 ] && f=1
        echo "== $name: FAILED (exit $rc); failures:"
        grep -E 'FAIL|fail|error' "$log" | head -n 40
    fi
    echo "$name: $p passed, $f failed"
    total_pass=$((total_pass + p))
    total_fail=$((total_fail + f))
    [ "$f" != 0 ] && failed_layers="$failed_layers $name"
}

for t in "$BUILD"/tests/test_*; do
    [ -x "$t" ] || continue
    layer "$(basename "$t")" "$t"
done

layer diagnostics $PY tests/check_errors.py --kiln "$BUILD/kiln"
layer golden $PY tests/check_golden.py --kiln "$BUILD/kiln"
if $PY tests/gen/generate.py "$DATA" >"$BUILD/logs/generate.log" 2>&1; then
    for dev in ref kir cpu; do
        layer "e2e-$dev" $PY tests/e2e.py --kiln "$BUILD/kiln" --data "$DATA" --device $dev -j 2
    done
    # cuda-emu as a GPU behaves: memory the kernels must write starts as NaN /
    # 0xA5 garbage, blocks and threads run in reverse order (and at -O0 the
    # f16/bf16 matmuls take the tensor-core path); see runtime/cuda_emu.h
    layer "e2e-cuda-emu" env KILN_EMU=poison,reverse $PY tests/e2e.py --kiln "$BUILD/kiln" --data "$DATA" \
        --device cuda-emu -j 2
    layer "e2e-kir-O0" $PY tests/e2e.py --kiln "$BUILD/kiln" --data "$DATA" --device kir -j 2 --flag=-O0 --label O0
    layer "e2e-ref-O0" $PY tests/e2e.py --kiln "$BUILD/kiln" --data "$DATA" --device ref -j 2 --flag=-O0 --label O0
    layer "e2e-cpu-O0" $PY tests/e2e.py --kiln "$BUILD/kiln" --data "$DATA" --device cpu -j 2 --flag=-O0 --label O0
    layer "e2e-cuda-emu-O0" env KILN_EMU=poison,tensor-cores $PY tests/e2e.py --kiln "$BUILD/kiln" --data "$DATA" \
        --device cuda-emu -j 2 --flag=-O0 --label O0
else
    echo "== test data generation failed:"
    tail -n 20 "$BUILD/logs/generate.log"
    total_fail=$((total_fail + 1))
fi
layer cli sh tests/cli/run.sh "$BUILD/kiln"
layer embed sh tests/embed/run.sh "$BUILD"
layer layers $PY tests/layers/check_layers.py "$BUILD"
layer files sh tests/cli/files.sh "$BUILD/kiln"
layer misuse sh tests/cli/misuse.sh "$BUILD/kiln"
layer cache sh tests/cli/cache.sh "$BUILD/kiln"
layer oom sh tests/cli/oom.sh "$BUILD/kiln"
layer onnx-cli sh tests/onnx/cli.sh "$BUILD/kiln"
layer aot-cuda sh tests/aot/cuda.sh "$BUILD/kiln"
layer aot-cpu sh tests/aot/cpu.sh "$BUILD/kiln"
layer ptxas sh tests/cuda/ptxas_all.sh "$BUILD/kiln"
layer cuda-env sh tests/cuda/env.sh "$BUILD/kiln"
layer cuda-standin sh tests/cuda/standin.sh "$BUILD/kiln"
layer cuda-large $PY tests/cuda/large.py --kiln "$BUILD/kiln"
layer precision sh tests/passes/precision.sh "$BUILD/kiln"
layer kernels sh tests/passes/kernel_counts.sh "$BUILD/kiln"
RANDOM_COUNT=200
[ -n "$KILN_LONG" ] && RANDOM_COUNT=3000
layer random-cpu $PY tests/random/random_programs.py --kiln "$BUILD/kiln" --device cpu --count $((RANDOM_COUNT * 5 / 2)) -j 2
layer random-kir $PY tests/random/random_programs.py --kiln "$BUILD/kiln" --device kir --count $RANDOM_COUNT -j 2
layer random-passes $PY tests/random/random_programs.py --kiln "$BUILD/kiln" --device ref --count $RANDOM_COUNT -j 2 \
    --flag=--passes=decompose,fold,simplify,cse,dce
INT_COUNT=16
[ -n "$KILN_LONG" ] && INT_COUNT=400
layer random-ints $PY tests/random/random_programs.py --kiln "$BUILD/kiln" --ints --devices ref,kir,cpu,cuda-emu \
    --count $INT_COUNT -j 2
layer scale $PY tests/scale/scale.py --kiln "$BUILD/kiln"
layer repl sh tests/repl/run.sh "$BUILD/kiln"
layer viz $PY tests/viz/check_viz.py --kiln "$BUILD/kiln"
layer go sh tests/go/run.sh "$BUILD"

[ -n "$failed_layers" ] && echo "failed layers:$failed_layers (logs in $BUILD/logs/)"
echo "$total_pass passed, $total_fail failed"
[ "$total_fail" = 0 ]
