#!/bin/sh
# tests/gpu/run.sh - the checks that need an NVIDIA GPU (docs/gpu.md, "A GPU run").
#
#     sh tests/gpu/run.sh                       every step, about 5-8 minutes
#     GPU_STEPS=probe,runtime sh tests/gpu/run.sh   only these steps
#     OUT=DIR sh tests/gpu/run.sh               logs and results in DIR (default build/gpu)
#
# Steps, in this order, each under its own time limit (seconds), all together
# under 8 minutes on a fresh H100/H200 machine:
#   machine  (15)  nvidia-smi, and what kiln finds: kiln env
#   build   (240)  a carried bundle (build-gpu/kiln, `make gpu-bundle`) when there
#                  is one, else `make KILN_LLVM=0` when flex, bison and a C
#                  compiler are here (never llvm-config, never apt-get), else an
#                  existing build/kiln
#   probe    (60)  mlp on --device=cuda; without a usable GPU the run stops here,
#                  says why and exits 0
#   e2e     (200)  every end-to-end case on --device=cuda against NumPy
#   runtime (100)  kernel cache miss, hit, corrupt entry, off; --arch=sm_80 PTX on
#                  this GPU; SASS (KILN_CUDA_SASS=1); KILN_CUDA_SYNC=1; an injected
#                  device out-of-memory (exit 3); --emit=ptx; bench --json; the tall
#                  matmul (65538 row tiles) and a sum over 2147483000 elements
#   aot      (60)  the AOT bundle of mlp built with cc and run against --device=ref
#   models  (100)  bench/models.sh, when the tree has it (KILN, KILN_DEVICE=cuda,
#                  OUT=$OUT/models)
#   bench   (rest) bench/gpu.sh (kiln against PyTorch eager and torch.compile)
# Results are written as each step ends: $OUT/results.txt gets one line per
# step ("STEP: N passed, N failed, S s") and bench.json is rewritten after
# every row; $OUT/gpu-run.log holds everything printed.  Last line:
# "gpu: N passed, N failed".
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
cd "$ROOT" || exit 2
LOGDIR=${OUT:-$ROOT/build/gpu}
mkdir -p "$LOGDIR" || exit 2
LOGDIR=$(cd "$LOGDIR" && pwd)
LOG=$LOGDIR/gpu-run.log
RESULTS=$LOGDIR/results.txt
STATUS=$LOGDIR/.gpu-status
STEPS=${GPU_STEPS:-machine,build,probe,e2e,runtime,aot,models,bench}
BUDGET=${GPU_BUDGET:-470} # seconds for the whole run
PY=/usr/bin/python3
[ -x "$PY" ] && "$PY" -c 'import numpy' 2>/dev/null || PY=python3
TMP=$(mktemp -d "${TMPDIR:-/tmp}/kiln-gpu.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
START=$(date +%s)
: >"$RESULTS"

# The kiln to test: a carried bundle first (the GPU machines have no LLVM,
# flex, bison or libedit: `make gpu-bundle` makes one elsewhere), else build/kiln.
if [ -x "$ROOT/build-gpu/kiln" ] && [ -d "$ROOT/build-gpu/lib" ]; then
    KILN=$ROOT/build-gpu/kiln
    export LD_LIBRARY_PATH="$ROOT/build-gpu/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
else
    KILN=$ROOT/build/kiln
fi
export KILN

elapsed() { echo $(($(date +%s) - START)); }
wanted() { case ",$STEPS," in *",$1,"*) return 0 ;; *) return 1 ;; esac; }
# limit SECONDS: the step's own limit, cut to what is left of the budget
limit() {
    left=$((BUDGET - $(elapsed)))
    [ "$1" -lt "$left" ] && echo "$1" || echo "$left"
}

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
    # step NAME LIMIT: runs step_NAME under the limit; its counts go to results.txt
    step() {
        step_name=$1
        wanted "$step_name" || return 0
        secs=$(limit "$2")
        if [ "$secs" -lt 5 ]; then
            bad "$step_name: no time left in the ${BUDGET} s budget"
            echo "$step_name: 0 passed, 1 failed, 0 s (no time left)" >>"$RESULTS"
            return 0
        fi
        echo "== $step_name (limit ${secs} s, $(elapsed) s so far)"
        p0=$pass f0=$fail t0=$(date +%s)
        STEP_LIMIT=$secs
        "step_$step_name"
        echo "$step_name: $((pass - p0)) passed, $((fail - f0)) failed, $(($(date +%s) - t0)) s" >>"$RESULTS"
    }
    # run LIMIT CMD...: CMD under a time limit; 124 when it ran out.
    run() {
        t=$1
        shift
        timeout -k 5 "$t" "$@"
    }

    step machine 15
    step build 240
    if [ ! -x "$KILN" ]; then
        bad "no kiln to test ($KILN)"
        finish
        return
    fi
    step probe 60
    if [ -n "$NO_GPU" ]; then
        finish
        return
    fi
    step e2e 200
    step runtime 100
    step aot 60
    step models 100
    step bench 400
    finish
}

finish() {
    echo "== done in $(elapsed) s"
    [ -n "$summary" ] && printf "failures:$summary\n"
    echo "gpu: $pass passed, $fail failed" >"$STATUS"
}

step_machine() {
    run 10 nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv,noheader 2>&1 ||
        echo "(no nvidia-smi)"
    if [ -x "$KILN" ]; then
        run 10 "$KILN" env | tee "$LOGDIR/kiln-env.txt"
        ok "kiln env"
    fi
}

step_build() {
    if [ "$KILN" = "$ROOT/build-gpu/kiln" ]; then
        ok "using the carried bundle build-gpu/kiln"
        return
    fi
    missing=""
    for tool in flex bison cc; do command -v $tool >/dev/null 2>&1 || missing="$missing $tool"; done
    if [ -n "$missing" ]; then
        if [ -x "$KILN" ]; then
            ok "no build tools here ($missing); using the existing $KILN"
        else
            bad "cannot build here (missing:$missing) and no kiln was carried: run make gpu-bundle and carry build-gpu"
        fi
        return
    fi
    jobs=$(nproc 2>/dev/null || echo 4)
    if run "$STEP_LIMIT" make -j"$jobs" KILN_LLVM=0 BUILD=build-gpu build-gpu/kiln >"$TMP/make.log" 2>&1; then
        KILN=$ROOT/build-gpu/kiln
        ok "make KILN_LLVM=0 (no LLVM here)"
    elif [ -x "$KILN" ]; then
        tail -n 15 "$TMP/make.log"
        bad "make KILN_LLVM=0 failed; going on with the existing $KILN"
    else
        tail -n 30 "$TMP/make.log"
        bad "make KILN_LLVM=0 failed and there is no kiln"
    fi
}

step_probe() {
    if run "$STEP_LIMIT" "$KILN" run examples/mlp.kiln --device=cuda --dim B=1 -v >"$TMP/probe.log" 2>&1; then
        grep -E "module loaded|PTX|SASS" "$TMP/probe.log"
        ok "kiln run --device=cuda on mlp"
        return
    fi
    cat "$TMP/probe.log"
    if grep -q -i -E 'no CUDA driver|stub library|no GPU|NO_DEVICE' "$TMP/probe.log"; then
        echo "gpu: skipped: kiln finds no usable GPU here"
        NO_GPU=1
    else
        bad "kiln run --device=cuda on mlp"
    fi
}

step_e2e() {
    if ! run 60 $PY tests/gen/generate.py "$TMP/testdata" >"$TMP/gen.log" 2>&1; then
        tail -n 20 "$TMP/gen.log"
        bad "test data generation"
        return
    fi
    run $((STEP_LIMIT - 10)) $PY tests/e2e.py --kiln "$KILN" --data "$TMP/testdata" --device cuda -j 4 \
        --timeout 60 >"$LOGDIR/e2e-cuda.log" 2>&1
    rc=$?
    grep -E '^FAIL' "$LOGDIR/e2e-cuda.log" | head -n 40
    tail -n 1 "$LOGDIR/e2e-cuda.log"
    if [ $rc = 0 ]; then
        ok "e2e on cuda"
    elif [ $rc = 124 ]; then
        bad "e2e on cuda: out of time (see e2e-cuda.log)"
    else
        bad "e2e on cuda (exit $rc; see e2e-cuda.log)"
    fi
}

# check NAME PYTHON-CODE ARGS...: the Python check passes (NumPy in $PY).
check() {
    check_name=$1
    shift
    if run 60 $PY - "$@" >"$TMP/check.log" 2>&1; then
        ok "$check_name"
    else
        cat "$TMP/check.log"
        bad "$check_name"
    fi
}

step_runtime() {
    cache=$TMP/cache
    # mlp [VAR=VALUE...] [kiln options]: mlp on the GPU with its own kernel cache
    mlp() {
        vars=""
        while [ $# -gt 0 ] && case $1 in *=*) true ;; *) false ;; esac; do
            vars="$vars $1"
            shift
        done
        # shellcheck disable=SC2086
        run 30 env XDG_CACHE_HOME="$cache" $vars "$KILN" run examples/mlp.kiln --device=cuda --dim B=3 --seed 7 "$@"
    }
    mlp -v --out "$TMP/c1.npy" 2>"$TMP/v1.log" >/dev/null
    if grep -q 'cache miss' "$TMP/v1.log"; then ok "first compile: cache miss"; else cat "$TMP/v1.log"; bad "first compile did not report a cache miss"; fi
    mlp -v --out "$TMP/c2.npy" 2>"$TMP/v2.log" >/dev/null
    if grep -q 'cache hit' "$TMP/v2.log"; then ok "second compile: cache hit"; else cat "$TMP/v2.log"; bad "second compile did not hit the cache"; fi
    for f in "$cache"/kiln/*.kc; do
        [ -f "$f" ] && truncate -s 100 "$f"
    done
    mlp -v --out "$TMP/c3.npy" 2>"$TMP/v3.log" >/dev/null
    if grep -q 'corrupt' "$TMP/v3.log"; then ok "truncated cache entry detected"; else cat "$TMP/v3.log"; bad "truncated cache entry not reported"; fi
    mlp KILN_CACHE=off -v --out "$TMP/c4.npy" 2>"$TMP/v4.log" >/dev/null
    if grep -q 'cache off' "$TMP/v4.log"; then ok "KILN_CACHE=off"; else cat "$TMP/v4.log"; bad "KILN_CACHE=off not honoured"; fi
    mlp --arch=sm_80 --out "$TMP/c5.npy" 2>"$TMP/v5.log" >/dev/null || cat "$TMP/v5.log"
    mlp KILN_CUDA_SASS=1 -v --out "$TMP/c6.npy" 2>"$TMP/v6.log" >/dev/null
    grep -q 'SASS for sm_' "$TMP/v6.log" && ok "KILN_CUDA_SASS=1 loads SASS" || { cat "$TMP/v6.log"; bad "SASS"; }
    mlp KILN_CUDA_SYNC=1 --out "$TMP/c7.npy" 2>"$TMP/v7.log" >/dev/null || cat "$TMP/v7.log"
    run 30 "$KILN" run examples/mlp.kiln --device=ref --dim B=3 --seed 7 --out "$TMP/ref.npy" 2>/dev/null
    check "mlp on cuda (cache miss, hit, rebuilt, off, sm_80 PTX, SASS, KILN_CUDA_SYNC) matches ref" "$TMP" <<'PYEOF'
import sys, numpy as np
d = sys.argv[1]
ref = np.load(f"{d}/ref.npy")
for i in range(1, 8):
    got = np.load(f"{d}/c{i}.npy")
    assert got.shape == ref.shape, (i, got.shape, ref.shape)
    assert np.allclose(got, ref, rtol=1e-4, atol=1e-5), (i, float(np.abs(got - ref).max()))
PYEOF
    mlp KILN_CUDA_FAIL_ALLOC=1 >/dev/null 2>"$TMP/oom.log"
    rc=$?
    if [ $rc = 3 ] && grep -q 'OUT_OF_MEMORY' "$TMP/oom.log"; then ok "device out of memory: exit 3 with a message"; else cat "$TMP/oom.log"; bad "device out of memory: exit $rc"; fi
    if run 30 "$KILN" emit examples/transformer_block.kiln --emit=ptx --dim B=2 --dim T=8 2>"$TMP/ptx.err" | grep -q '\.entry'; then ok "--emit=ptx"; else cat "$TMP/ptx.err"; bad "--emit=ptx"; fi
    if run 30 "$KILN" bench examples/mlp.kiln --device=cuda --dim B=64 --runs=5 --json >"$TMP/bench.json" 2>"$TMP/bench.err" &&
        $PY -c 'import json,sys; j=json.load(open(sys.argv[1])); assert j["device"]=="cuda" and j["run_ms"]>0 and j["kernels"]' "$TMP/bench.json"; then
        ok "kiln bench --device=cuda --json"
    else
        cat "$TMP/bench.err" "$TMP/bench.json"
        bad "kiln bench --device=cuda"
    fi
    # sizes where 32-bit GPU code breaks: grid.y past 65535 tiles, a counter near 2^31
    cat >"$TMP/large.kiln" <<'EOF'
graph tall(a: f32[4194400, 2], b: f32[2, 3]) -> f32[4194400, 3] {
    return a @ b
}
graph sum_2g(x: f32[1]) -> f32 {
    return sum(broadcast(x, [2147483000]))
}
EOF
    $PY -c "
import numpy as np
r = np.random.default_rng(12)
np.save('$TMP/a.npy', (r.random((4194400, 2), dtype=np.float32) * 2 - 1).astype(np.float32))
np.save('$TMP/b.npy', (r.random((2, 3), dtype=np.float32) * 2 - 1).astype(np.float32))
np.save('$TMP/half.npy', np.array([0.5], dtype=np.float32))"
    run 30 "$KILN" run "$TMP/large.kiln" -g tall --device=cuda --in a="$TMP/a.npy" --in b="$TMP/b.npy" \
        --out "$TMP/tall.npy" 2>"$TMP/tall.err" || cat "$TMP/tall.err"
    check "the tall matmul (65538 row tiles) matches NumPy" "$TMP" <<'PYEOF'
import sys, numpy as np
d = sys.argv[1]
a, b, got = np.load(f"{d}/a.npy"), np.load(f"{d}/b.npy"), np.load(f"{d}/tall.npy")
want = a.astype(np.float64) @ b.astype(np.float64)
bad = ~np.isclose(got, want, rtol=1e-5, atol=1e-6)
assert not bad.any(), f"{bad.sum()} wrong, first rows {np.argwhere(bad.any(1))[:3].ravel()}"
PYEOF
    run 30 "$KILN" run "$TMP/large.kiln" -g sum_2g --device=cuda --in x="$TMP/half.npy" --out "$TMP/s.npy" \
        2>"$TMP/s.err" || cat "$TMP/s.err"
    check "a sum over 2147483000 elements" "$TMP" <<'PYEOF'
import sys, numpy as np
got = float(np.load(sys.argv[1] + "/s.npy"))
assert abs(got - 0.5 * 2147483000) <= 1e-6 * 0.5 * 2147483000, got
PYEOF
}

step_aot() {
    aot=$TMP/aot
    CUDA_INCLUDE=$("$KILN" env KILN_CUDA_INCLUDE)
    CUDA_LIB=$("$KILN" env KILN_CUDA_LIB)
    if run 30 "$KILN" aot examples/mlp.kiln --target=cuda --dim B=4 -o "$aot" >"$TMP/aot.log" 2>&1 &&
        (cd "$aot" && run 30 cc -O2 -DKILN_MAIN mlp.c -I"$CUDA_INCLUDE" -L"$CUDA_LIB/stubs" -lcuda -o mlp) >>"$TMP/aot.log" 2>&1; then
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
        run 30 "$KILN" run examples/mlp.kiln --device=ref --in x="$aot/x.npy" --in w1="$aot/w1.npy" --in b1="$aot/b1.npy" \
            --in w2="$aot/w2.npy" --in b2="$aot/b2.npy" --out "$aot/ref.npy" >>"$TMP/aot.log" 2>&1
        if (cd "$aot" && run 30 ./mlp x.bin w1.bin b1.bin w2.bin b2.bin out0.bin) >>"$TMP/aot.log" 2>&1; then
            check "aot bundle of mlp matches kiln run --device=ref" "$aot" <<'PYEOF'
import sys, numpy as np
d = sys.argv[1]
ref = np.load(f"{d}/ref.npy")
got = np.fromfile(f"{d}/out0.bin", dtype=np.float32).reshape(ref.shape)
print(f"aot mlp vs ref: max |diff| = {float(np.abs(got - ref).max()):.3g}")
assert np.allclose(got, ref, rtol=1e-4, atol=1e-5)
PYEOF
        else
            cat "$TMP/aot.log"
            bad "aot bundle of mlp runs"
        fi
    else
        cat "$TMP/aot.log"
        bad "aot bundle of mlp does not build"
    fi
}

step_models() {
    if [ ! -f bench/models.sh ]; then
        echo "(no bench/models.sh in this tree)"
        return
    fi
    mkdir -p "$LOGDIR/models"
    run "$STEP_LIMIT" env KILN_DEVICE=cuda OUT="$LOGDIR/models" sh bench/models.sh >"$LOGDIR/models.log" 2>&1
    rc=$?
    tail -n 30 "$LOGDIR/models.log"
    if [ $rc = 0 ]; then ok "bench/models.sh"; else bad "bench/models.sh (exit $rc; see models.log)"; fi
}

step_bench() {
    if [ "$STEP_LIMIT" -lt 60 ]; then
        bad "no time left for bench/gpu.sh ($STEP_LIMIT s)"
        return
    fi
    run "$STEP_LIMIT" env OUT="$LOGDIR" sh bench/gpu.sh --runs 10 2>&1
    rc=$?
    if [ $rc = 0 ]; then ok "bench/gpu.sh"; else bad "bench/gpu.sh (exit $rc; bench.json has the rows measured)"; fi
}

main 2>&1 | tee "$LOG"
last=$(cat "$STATUS" 2>/dev/null || echo "gpu: 0 passed, 1 failed")
rm -f "$STATUS"
echo "$last" | tee -a "$LOG"
case "$last" in *" 0 failed") exit 0 ;; *) exit 1 ;; esac
