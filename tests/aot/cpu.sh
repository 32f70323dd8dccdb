#!/bin/sh
# tests/aot/cpu.sh KILN_BINARY - `kiln aot --target=cpu`: for examples/mlp.kiln
# at a small batch (generic kernels) and a larger one (tiled matmuls), for the
# host CPU and for --cpu=x86-64-v3, the bundle (mlp.o, mlp.h, README) must be
# written, link into tests/aot/mlp_main.c with nothing but libc and libm, run,
# and agree with `kiln run --device=ref` on the same inputs (rtol 1e-4,
# atol 1e-6).  The object may only need libc and libm.  Also checks that a
# bad target is refused.  Then tests/aot/convs.kiln for --cpu=znver5 (below).  Last line:
# "aot-cpu: N passed, N failed".
KILN=${1:-build/kiln}
CC=${CC:-cc}
PY=/usr/bin/python3
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/../lib.sh"
scratch aot-cpu
TMP=$T
SHOW=$TMP/log # what a failure shows: the last command's output

# Undefined symbols a CPU bundle may have: libc's allocator and copies, libm (and
# the linker's own _GLOBAL_OFFSET_TABLE_).
allowed_undefined() {
    grep -v -E '^(malloc|free|memcpy|memset|memmove|fmodf?|powf?|expf?|logf?|sinf?|cosf?|tanhf?|erff?|__stack_chk_fail|_GLOBAL_OFFSET_TABLE_)$'
}

for cpu in host x86-64-v3; do
    for batch in 2 64; do
        name="mlp B=$batch cpu=$cpu"
        out="$TMP/$cpu-$batch"
        cpuflag=""
        [ "$cpu" != host ] && cpuflag="--cpu=$cpu"
        if ! "$KILN" aot "$ROOT/examples/mlp.kiln" --target=cpu $cpuflag --dim B=$batch -o "$out" >"$TMP/log" 2>&1; then
            bad "$name: kiln aot failed"
            continue
        fi
        missing=""
        for f in mlp.o mlp.h README; do [ -s "$out/$f" ] || missing="$missing $f"; done
        if [ -n "$missing" ]; then
            bad "$name: missing or empty:$missing"
            continue
        fi
        ok
        if grep -q "int mlp_run(const float \*x, const float \*w1, const float \*b1, const float \*w2, const float \*b2, float \*out0);" "$out/mlp.h"; then ok; else bad "$name: mlp.h does not declare mlp_run as expected"; fi
        if grep -q "mlp.o -lm" "$out/README"; then ok; else bad "$name: README has no build line"; fi
        extra=$(nm -u "$out/mlp.o" | awk '{print $2}' | allowed_undefined)
        if [ -z "$extra" ]; then ok; else bad "$name: mlp.o needs more than libc and libm: $extra"; fi
        if ! $CC -std=c11 -O2 -Wall -Wextra -Werror -DB=$batch -I"$out" "$ROOT/tests/aot/mlp_main.c" "$out/mlp.o" -lm \
                -o "$out/mlp_main" >"$TMP/log" 2>&1; then
            bad "$name: the test program does not build against the bundle"
            continue
        fi
        ok
        mkdir -p "$out/data"
        if ! "$out/mlp_main" "$out/data" >"$TMP/log" 2>&1; then
            bad "$name: mlp_main failed"
            continue
        fi
        ok
        # the same inputs through the reference interpreter
        if ! $PY - "$out/data" "$batch" >"$TMP/log" 2>&1 <<'PYEOF'
import sys
import numpy as np
d, b = sys.argv[1], int(sys.argv[2])
shapes = {"x": (b, 784), "w1": (784, 256), "b1": (256,), "w2": (256, 10), "b2": (10,)}
for n, s in shapes.items():
    np.save(f"{d}/{n}.npy", np.fromfile(f"{d}/{n}.f32", dtype="<f4").reshape(s))
PYEOF
        then
            bad "$name: cannot convert the inputs"
            continue
        fi
        if ! "$KILN" run "$ROOT/examples/mlp.kiln" --device=ref --in x="$out/data/x.npy" --in w1="$out/data/w1.npy" \
                --in b1="$out/data/b1.npy" --in w2="$out/data/w2.npy" --in b2="$out/data/b2.npy" \
                --out "$out/data/ref.npy" >"$TMP/log" 2>&1; then
            bad "$name: kiln run --device=ref failed"
            continue
        fi
        if $PY - "$out/data" "$batch" >"$TMP/log" 2>&1 <<'PYEOF'
import sys
import numpy as np
d, b = sys.argv[1], int(sys.argv[2])
got = np.fromfile(f"{d}/out.f32", dtype="<f4").reshape(b, 10)
want = np.load(f"{d}/ref.npy")
err = np.abs(got - want) - (1e-6 + 1e-4 * np.abs(want))
if want.shape != got.shape or (err > 0).any():
    print("max abs diff", np.abs(got - want).max())
    sys.exit(1)
PYEOF
        then ok; else bad "$name: the AOT result differs from the reference"; fi
    done
done

# tests/aot/convs.kiln for --cpu=znver5 (AMD Zen 5: the rules codegen/llvm.c gates on that
# CPU name; the taps tiles' shared transpose helper kiln.mm.tile_t14 must be in the object),
# at batch 2 and 3: built and linked everywhere, run against the reference (rtol 1e-4, atol
# 1e-5 of the largest value) only where this host runs znver5's code (AVX-512 with the
# extensions znver4 adds, and AVX-VNNI; tests/unit/test_kernels.c host_runs_cpu), else a
# skip: line.  Winograd and the constant weights' rules (one K block) stay off in a bundle:
# its weights are arguments.
zen5_flags="avx512f avx512vl avx512bw avx512dq avx512cd avx512_bf16 avx512vbmi avx512_vbmi2 avx512_vnni \
avx512_bitalg avx512_vpopcntdq avx512ifma gfni vaes vpclmulqdq avx_vnni"
zen5_runs=1
flags=" $(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null | sed 's/^[^:]*://') "
for fl in $zen5_flags; do
    case "$flags" in *" $fl "*) ;; *) zen5_runs=0 ;; esac
done
[ "$zen5_runs" = 1 ] || echo "skip: aot convs on znver5: this host cannot run that CPU's code; built and linked only"
for batch in 2 3; do
    name="convs B=$batch cpu=znver5"
    out="$TMP/convs-znver5-$batch"
    if ! "$KILN" aot "$ROOT/tests/aot/convs.kiln" --target=cpu --cpu=znver5 --dim B=$batch -o "$out" >"$TMP/log" 2>&1; then
        bad "$name: kiln aot failed"
        continue
    fi
    if [ -s "$out/convs.o" ] && [ -s "$out/convs.h" ]; then ok; else bad "$name: no convs.o or convs.h"; continue; fi
    if nm "$out/convs.o" | grep -q 'kiln\.mm\.tile_t'; then ok; else bad "$name: no kiln.mm.tile_t helper: znver5's rules did not apply"; fi
    extra=$(nm -u "$out/convs.o" | awk '{print $2}' | allowed_undefined)
    if [ -z "$extra" ]; then ok; else bad "$name: convs.o needs more than libc and libm: $extra"; fi
    if ! $CC -std=c11 -O2 -Wall -Wextra -Werror -DB=$batch -I"$out" "$ROOT/tests/aot/convs_main.c" "$out/convs.o" -lm \
            -o "$out/convs_main" >"$TMP/log" 2>&1; then
        bad "$name: the test program does not build against the bundle"
        continue
    fi
    ok
    [ "$zen5_runs" = 1 ] || continue
    mkdir -p "$out/data"
    if ! "$out/convs_main" "$out/data" >"$TMP/log" 2>&1; then
        bad "$name: convs_main failed"
        continue
    fi
    ok
    if ! $PY - "$out/data" "$batch" >"$TMP/log" 2>&1 <<'PYEOF'
import sys
import numpy as np
d, b = sys.argv[1], int(sys.argv[2])
shapes = {"x": (b, 16, 28, 28), "w0": (32, 16, 3, 3), "b0": (32,), "wd": (32, 1, 3, 3), "bd": (32,),
          "w1": (64, 32, 1, 1), "b1": (64,), "w2": (64, 64, 3, 3), "b2": (64,), "w3": (96, 64, 3, 3), "b3": (96,)}
for n, s in shapes.items():
    np.save(f"{d}/{n}.npy", np.fromfile(f"{d}/{n}.f32", dtype="<f4").reshape(s))
PYEOF
    then
        bad "$name: cannot convert the inputs"
        continue
    fi
    ins=""
    for n in x w0 b0 wd bd w1 b1 w2 b2 w3 b3; do ins="$ins --in $n=$out/data/$n.npy"; done
    # shellcheck disable=SC2086
    if ! "$KILN" run "$ROOT/tests/aot/convs.kiln" --device=ref $ins --out "$out/data/ref.npy" >"$TMP/log" 2>&1; then
        bad "$name: kiln run --device=ref failed"
        continue
    fi
    if $PY - "$out/data" "$batch" >"$TMP/log" 2>&1 <<'PYEOF'
import sys
import numpy as np
d, b = sys.argv[1], int(sys.argv[2])
got = np.fromfile(f"{d}/out.f32", dtype="<f4").reshape(b, 96, 14, 14)
want = np.load(f"{d}/ref.npy")
err = np.abs(got - want) - (1e-5 * np.abs(want).max() + 1e-4 * np.abs(want))
if want.shape != got.shape or (err > 0).any() or np.abs(want).max() == 0:
    print("max abs diff", np.abs(got - want).max(), "max |ref|", np.abs(want).max())
    sys.exit(1)
print("max abs diff", np.abs(got - want).max(), "max |ref|", np.abs(want).max())
PYEOF
    then ok; else bad "$name: the AOT result differs from the reference: $(cat "$TMP/log")"; fi
done

# usage errors: an unknown target
if "$KILN" aot "$ROOT/examples/mlp.kiln" --target=gpu --dim B=2 -o "$TMP/x" >"$TMP/log" 2>&1; then
    bad "aot --target=gpu was accepted"
else
    [ $? -eq 2 ] && ok || bad "aot --target=gpu: exit status is not 2"
fi

summary aot-cpu
