#!/bin/sh
# tests/gpu/run.sh - the checks that need an NVIDIA GPU (docs/gpu.md).
# Run from anywhere on a machine with a GPU and its driver:
#     sh tests/gpu/run.sh
# Steps, each under its own time limit (about 8 minutes in all):
#   build       make (if the build cannot run here, an existing build/kiln is used)
#   e2e-cuda    the whole end-to-end suite on --device=cuda
#   runtime     kernel cache miss/hit/corrupt/off, an injected device out-of-memory
#               (exit 3, no crash), --arch=sm_80 PTX JIT-compiled for this GPU,
#               --emit=ptx, cuda against ref on mlp
#   aot         the AOT bundle of mlp, built with cc and run, against
#               `kiln run --device=ref` on the same inputs
#   bench       bench/gpu.sh (kiln vs PyTorch eager and torch.compile)
# Without a GPU it says so and exits 0.  The log goes to $OUT/gpu-run.log when
# OUT is set (else build/gpu/gpu-run.log); bench.json beside it.
# Last line: "gpu: N passed, N failed".
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
LOGDIR=${OUT:-$ROOT/build/gpu}
mkdir -p "$LOGDIR"
LOG=$LOGDIR/gpu-run.log
STATUS=$LOGDIR/.gpu-status
KILN=$ROOT/build/kiln
# The GPU machines have no LLVM, flex, bison or libedit: `make gpu-bundle` here
# makes build-gpu/ (kiln without the cpu device, plus its few shared
# libraries); carried along, it is used instead of building.
if [ -x "$ROOT/build-gpu/kiln" ]; then
    KILN=$ROOT/build-gpu/kiln
    export LD_LIBRARY_PATH="$ROOT/build-gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
export KILN
CUDA_HOME=${CUDA_HOME:-/usr/local/cuda}
PY=/usr/bin/python3
[ -x "$PY" ] && "$PY" -c 'import numpy' 2>/dev/null || PY=python3
TMP=$(mktemp -d /tmp/kiln-gpu.XXXXXX)
trap 'rm -rf "$TMP"' EXIT
START=$(date +%s)

main() {
    pass=0
    fail=0
    summary=""
    ok() {
        pass=$((pass + 1))
        echo "ok: $*"
    }
    bad() {
        fail=$((fail + 1))
        summary="$summary\n  FAIL: $*"
        echo "FAIL: $*"
    }
    step() { echo "== $* ($(($(date +%s) - START)) s)"; }

    step "machine"
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1 || echo "(no nvidia-smi)"

    step "build"
    if [ "$KILN" = "$ROOT/build-gpu/kiln" ]; then
        ok "using the carried bundle build-gpu/kiln"
    elif timeout 240 make -j"$(nproc 2>/dev/null || echo 4)" >"$TMP/make.log" 2>&1; then
        ok "make"
    elif [ -x "$KILN" ]; then
        tail -n 15 "$TMP/make.log"
        bad "make failed; going on with the existing build/kiln"
    else
        tail -n 30 "$TMP/make.log"
        bad "make failed and there is no build/kiln"
        echo "gpu: $pass passed, $fail failed" >"$STATUS"
        return
    fi

    if ! "$KILN" run examples/mlp.kiln --device=cuda --dim B=1 >"$TMP/probe.log" 2>&1; then
        if grep -q -i -E 'no CUDA driver|stub library|no GPU|NO_DEVICE' "$TMP/probe.log"; then
            cat "$TMP/probe.log"
            echo "gpu: skipped: kiln finds no usable GPU here"
            echo "gpu: $pass passed, $fail failed" >"$STATUS"
            return
        fi
        cat "$TMP/probe.log"
        bad "kiln run --device=cuda on mlp"
    else
        ok "kiln run --device=cuda on mlp"
    fi

    step "e2e-cuda"
    if $PY tests/gen/generate.py build/testdata >"$TMP/gen.log" 2>&1; then
        timeout 270 $PY tests/e2e.py --kiln "$KILN" --data build/testdata --device cuda -j 4 >"$TMP/e2e.log" 2>&1
        rc=$?
        grep -E '^FAIL' "$TMP/e2e.log" | head -n 40
        tail -n 1 "$TMP/e2e.log"
        cp "$TMP/e2e.log" "$LOGDIR/e2e-cuda.log"
        if [ $rc = 0 ]; then ok "e2e on cuda"; else bad "e2e on cuda (exit $rc; see e2e-cuda.log)"; fi
    else
        tail -n 20 "$TMP/gen.log"
        bad "test data generation"
    fi

    step "runtime"
    cache=$TMP/cache
    run_mlp() { XDG_CACHE_HOME=$cache "$KILN" run examples/mlp.kiln --device=cuda --dim B=3 --seed 7 "$@"; }
    run_mlp -v --out "$TMP/c1.npy" 2>"$TMP/v1.log" >/dev/null
    if grep -q 'cache miss' "$TMP/v1.log"; then ok "first compile: cache miss"; else cat "$TMP/v1.log"; bad "first compile did not report a cache miss"; fi
    run_mlp -v --out "$TMP/c2.npy" 2>"$TMP/v2.log" >/dev/null
    if grep -q 'cache hit' "$TMP/v2.log"; then ok "second compile: cache hit"; else cat "$TMP/v2.log"; bad "second compile did not hit the cache"; fi
    for f in "$cache"/kiln/*.kc; do
        [ -f "$f" ] && truncate -s 100 "$f"
    done
    run_mlp -v --out "$TMP/c3.npy" 2>"$TMP/v3.log" >/dev/null
    if grep -q 'corrupt' "$TMP/v3.log"; then ok "truncated cache entry detected"; else cat "$TMP/v3.log"; bad "truncated cache entry not reported"; fi
    KILN_CACHE=off run_mlp -v --out "$TMP/c4.npy" 2>"$TMP/v4.log" >/dev/null
    if grep -q 'cache off' "$TMP/v4.log"; then ok "KILN_CACHE=off"; else cat "$TMP/v4.log"; bad "KILN_CACHE=off not honoured"; fi
    run_mlp --arch=sm_80 --out "$TMP/c5.npy" 2>"$TMP/v5.log" >/dev/null || cat "$TMP/v5.log"
    XDG_CACHE_HOME=$cache "$KILN" run examples/mlp.kiln --device=ref --dim B=3 --seed 7 --out "$TMP/ref.npy" 2>/dev/null
    if $PY - "$TMP" <<'PYEOF'
import sys, numpy as np
d = sys.argv[1]
ref = np.load(f"{d}/ref.npy")
for i in (1, 2, 3, 4, 5):
    got = np.load(f"{d}/c{i}.npy")
    assert got.shape == ref.shape, (i, got.shape, ref.shape)
    assert np.allclose(got, ref, rtol=1e-4, atol=1e-5), (i, float(np.abs(got - ref).max()))
PYEOF
    then ok "mlp on cuda (cache miss, hit, rebuilt, off, sm_80 PTX) matches ref"; else bad "mlp on cuda differs from ref"; fi
    KILN_CUDA_FAIL_ALLOC=1 run_mlp >/dev/null 2>"$TMP/oom.log"
    rc=$?
    if [ $rc = 3 ] && grep -q 'OUT_OF_MEMORY' "$TMP/oom.log"; then ok "device out of memory: exit 3 with a message"; else cat "$TMP/oom.log"; bad "device out of memory: exit $rc"; fi
    if "$KILN" emit examples/transformer_block.kiln --emit=ptx --dim B=2 --dim T=8 2>"$TMP/ptx.err" | grep -q '\.entry'; then ok "--emit=ptx"; else cat "$TMP/ptx.err"; bad "--emit=ptx"; fi
    if "$KILN" bench examples/mlp.kiln --device=cuda --dim B=64 --runs=5 --json >"$TMP/bench.json" 2>"$TMP/bench.err" &&
        $PY -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["device"]=="cuda" and j["run_ms"]>0 and j["kernels"]' "$TMP/bench.json"; then
        ok "kiln bench --device=cuda --json"
    else
        cat "$TMP/bench.err" "$TMP/bench.json"
        bad "kiln bench --device=cuda"
    fi

    step "aot"
    aot=$TMP/aot
    if "$KILN" aot examples/mlp.kiln --target=cuda --dim B=4 -o "$aot" >"$TMP/aot.log" 2>&1 &&
        (cd "$aot" && cc -O2 -DKILN_MAIN mlp.c -I"$CUDA_HOME/include" -L"$CUDA_HOME/lib64/stubs" -lcuda -o mlp) >>"$TMP/aot.log" 2>&1; then
        ok "aot bundle of mlp builds"
        $PY - "$aot" <<'PYEOF'
import sys, numpy as np
d = sys.argv[1]
rng = np.random.default_rng(3)
shapes = {"x": (4, 784), "w1": (784, 256), "b1": (256,), "w2": (256, 10), "b2": (10,)}
for name, shape in shapes.items():
    a = (rng.random(shape, dtype=np.float32) * 2 - 1).astype(np.float32)
    np.save(f"{d}/{name}.npy", a)
    a.tofile(f"{d}/{name}.bin")
PYEOF
        "$KILN" run examples/mlp.kiln --device=ref --in x="$aot/x.npy" --in w1="$aot/w1.npy" --in b1="$aot/b1.npy" \
            --in w2="$aot/w2.npy" --in b2="$aot/b2.npy" --out "$aot/ref.npy" >>"$TMP/aot.log" 2>&1
        if (cd "$aot" && ./mlp x.bin w1.bin b1.bin w2.bin b2.bin out0.bin) >>"$TMP/aot.log" 2>&1 &&
            $PY - "$aot" <<'PYEOF'
import sys, numpy as np
d = sys.argv[1]
ref = np.load(f"{d}/ref.npy")
got = np.fromfile(f"{d}/out0.bin", dtype=np.float32).reshape(ref.shape)
err = float(np.abs(got - ref).max())
print(f"aot mlp vs ref: max |diff| = {err:.3g}")
assert np.allclose(got, ref, rtol=1e-4, atol=1e-5), err
PYEOF
        then ok "aot bundle of mlp matches kiln run --device=ref"; else cat "$TMP/aot.log"; bad "aot bundle of mlp"; fi
    else
        cat "$TMP/aot.log"
        bad "aot bundle of mlp does not build"
    fi

    step "bench"
    left=$((470 - ($(date +%s) - START)))
    if [ $left -lt 60 ]; then
        bad "no time left for bench/gpu.sh ($left s)"
    else
        OUT=$LOGDIR timeout $left sh bench/gpu.sh --runs 10 2>&1
        rc=$?
        if [ $rc = 0 ]; then ok "bench/gpu.sh"; else bad "bench/gpu.sh (exit $rc)"; fi
    fi

    step "summary"
    [ -n "$summary" ] && printf "failures:$summary\n"
    echo "gpu: $pass passed, $fail failed" >"$STATUS"
}

main 2>&1 | tee "$LOG"
last=$(cat "$STATUS" 2>/dev/null || echo "gpu: 0 passed, 1 failed")
rm -f "$STATUS"
echo "$last" | tee -a "$LOG"
case "$last" in *" 0 failed") exit 0 ;; *) exit 1 ;; esac
