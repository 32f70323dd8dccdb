#!/bin/sh
# tests/cli/misuse.sh BIN - a hostile user's command lines and odd inputs (issue 15):
# each gets a clear message and its exit status (1 input, 2 usage, 3 device), never a
# crash, a silent guess or a lost result.  Each check prints "FAIL: ..." when it fails;
# the last line is "misuse: N passed, N failed".
K=${1:-build/kiln}
case $K in /*) ;; *) K=$(pwd)/$K ;; esac
PY=/usr/bin/python3
. "$(dirname "$0")/../lib.sh"
scratch misuse
cd "$T" || exit 1

cat >m.kiln <<'EOF2'
graph f(x: f32[B, 3]) -> f32[B, 3] {
    return relu(x) * 2.0
}
EOF2
$PY -c "import numpy as np; np.save('x.npy', np.ones((2, 3), np.float32))"

# ---- options
expect "--in twice" 2 "--in x is given twice" "$K" run m.kiln --device=ref --in x=x.npy --in x=x.npy

# ---- --cpu: checked against LLVM's list; native is the host
if "$K" run m.kiln --dim B=1 --device=cpu >/dev/null 2>&1; then
    expect "run --cpu=bogus" 2 "--cpu=bogus.*choices.*native.*x86-64" "$K" run m.kiln --dim B=1 --cpu=bogus
    expect "run --cpu=znver44" 2 "did you mean znver4" "$K" run m.kiln --dim B=1 --cpu=znver44
    expect "aot --cpu=bogus" 2 "--cpu=bogus" "$K" aot m.kiln --target=cpu --dim B=1 --cpu=bogus -o b1
    if [ ! -e b1 ]; then ok; else bad "aot --cpu=bogus wrote b1"; fi
    expect "aot --cpu=native" 0 "" "$K" aot m.kiln --target=cpu --dim B=1 --cpu=native -o b2
    expect "aot --cpu=x86-64" 0 "" "$K" aot m.kiln --target=cpu --dim B=1 --cpu=x86-64 -o b3
    expect "run --cpu=native" 0 "" "$K" run m.kiln --device=cpu --cpu=native --in x=x.npy
    expect "run --cpu=x86-64" 0 "" "$K" run m.kiln --device=cpu --cpu=x86-64 --in x=x.npy
    if grep -q '2\.' out; then ok; else bad "run --cpu=x86-64: wrong result"; fi
fi

# ---- integers: one semantics, NumPy's, on every device (exact i64, wrapping)
cat >ints.kiln <<'EOF2'
graph ints(x: i64[3], a: i32[2, 2], b: i32[2, 2]) -> (i64[3], i32[3], i32[2, 2], i64[3], i64[], i64[], i64[3]) {
    return x, cast(x, i32), a @ b, x ** 3, max(x, axis=0), argmax(x - 1, axis=0), x + 9007199254740993
}
EOF2
$PY -c "
import numpy as np
x = np.array([2**53 + 1, -(2**62) - 3, 3000000000], np.int64)
a = np.array([[2**31 - 1, 2], [7, -(2**31)]], np.int32)
b = np.array([[2, 1], [2**30, 3]], np.int32)
np.save('xi.npy', x); np.save('a.npy', a); np.save('b.npy', b)
with np.errstate(all='ignore'):
    want = [x, x.astype(np.int32), a @ b, x ** 3, np.max(x), np.argmax(x - 1), x + np.int64(9007199254740993)]
for i, w in enumerate(want): np.save(f'want{i}.npy', np.asarray(w))
"
for dev in ref kir cpu cuda-emu; do
    expect "ints on $dev" 0 "" "$K" run ints.kiln --device=$dev --in x=xi.npy --in a=a.npy --in b=b.npy --out "got-$dev/"
    if $PY -c "
import numpy as np, sys
for i in range(7):
    w, g = np.load(f'want{i}.npy'), np.load(f'got-$dev/{i}.npy')
    if w.dtype != g.dtype or w.tobytes() != g.tobytes(): sys.exit(f'result {i}: {g} instead of {w}')
" 2>err; then ok; else bad "ints on $dev: not NumPy's"; fi
done

# ---- the kernel cache: a damaged cuda-emu entry is rebuilt, never loaded; a FIFO
# in its place does not block; results stay those of the reference
if command -v c++ >/dev/null 2>&1; then
    unset KILN_CACHE # (make test points it at build/kcache) the default folder, under:
    XDG_CACHE_HOME=$T/cache
    export XDG_CACHE_HOME
    "$K" run m.kiln --device=ref --in x=x.npy >want 2>err
    "$K" run m.kiln --device=cuda-emu --in x=x.npy >got 2>err
    if cmp -s want got; then ok; else bad "cuda-emu: first run differs from ref"; fi
    entry=$(find "$T/cache" -name "*.kc" -o -name "*.so" | head -n 1)
    if [ -n "$entry" ]; then ok; else bad "cuda-emu: no cache entry"; fi
    for how in truncate flip fifo symlink; do
        entry=$(find "$T/cache" -name "*.kc" -o -name "*.so" | head -n 1)
        size=$(wc -c <"$entry")
        case $how in
        truncate) head -c $((size / 2)) "$entry" >cut && cat cut >"$entry" ;;
        flip) $PY -c "
import sys
p = sys.argv[1]; d = bytearray(open(p, 'rb').read()); d[len(d) * 2 // 3] ^= 0x10
open(p, 'wb').write(d)" "$entry" ;;
        fifo) rm -f "$entry" && mkfifo "$entry" ;;
        symlink) cp "$entry" copy.kc && rm -f "$entry" && ln -s "$T/copy.kc" "$entry" ;;
        esac
        expect "cuda-emu after a $how cache entry" 0 "" timeout 120 "$K" run m.kiln --device=cuda-emu --in x=x.npy
        if cmp -s want out; then ok; else bad "cuda-emu after a $how cache entry: wrong result"; fi
        if [ -f "$entry" ] && [ ! -L "$entry" ]; then ok; else bad "cuda-emu: the $how entry was not rebuilt"; fi
    done
    unset XDG_CACHE_HOME
fi

# ---- semantics at the edges: no empty tensors; a weights file missing a parameter
cat >w.kiln <<'EOF2'
graph f(x: f32[B, 3], w: f32[3, 2], b: f32[2]) -> i64[B] {
    return argmax(x @ w + b, axis=1)
}
EOF2
$PY -c "
import numpy as np, json, struct
np.save('x0.npy', np.ones((0, 3), np.float32)); np.save('x30.npy', np.ones((3, 0), np.float32))
np.save('x2.npy', np.ones((2, 3), np.float32))
w = np.arange(6, dtype=np.float32).reshape(3, 2)
hdr = json.dumps({'w': {'dtype': 'F32', 'shape': [3, 2], 'data_offsets': [0, 24]},
                  'B': {'dtype': 'F32', 'shape': [2], 'data_offsets': [24, 32]}}).encode()
open('wts.safetensors', 'wb').write(struct.pack('<Q', len(hdr)) + hdr + w.tobytes() + np.ones(2, np.float32).tobytes())"
for dev in ref kir cpu cuda-emu; do
    expect "a (0, 3) input on $dev" 1 "parameter 'x' would be empty: dimension 0, B is 0" \
        "$K" run w.kiln --device=$dev --in x=x0.npy
done
expect "--dim B=0" 2 "--dim takes NAME=SIZE with a positive SIZE" "$K" run w.kiln --dim B=0
cat >e.kiln <<'EOF2'
graph f(x: f32[3, N]) -> i64[3] {
    return argmax(x, axis=1)
}
EOF2
expect "argmax over an empty axis" 1 "parameter 'x' would be empty: dimension 1, N is 0" \
    "$K" run e.kiln --device=cpu --in x=x30.npy
cat >es.kiln <<'EOF2'
graph f(x: f32[4]) -> f32[4] {
    return x + sum(x[2:2], axis=0)
}
EOF2
expect "an empty slice" 1 "slice" "$K" check es.kiln
expect "a weights file without 'b'" 0 "note: parameter 'b' is in no weights file: it gets random values" \
    "$K" run w.kiln --device=ref --in x=x2.npy --weights wts.safetensors
if grep -q "parameter 'w'" err; then bad "the note names 'w', which the file holds"; else ok; fi
expect "no weights file: quiet" 0 "" "$K" run w.kiln --device=ref --in x=x2.npy
if grep -q "note:" err; then bad "a note without --weights or -v"; else ok; fi
expect "-v names random parameters" 0 "parameter 'w' is in no --in or --weights file" \
    "$K" run w.kiln --device=ref --in x=x2.npy -v
# squeeze of f32[B, 1] was accepted by check and failed at run time for B = 1
cat >sq.kiln <<'EOF2'
graph f(x: f32[B, 1]) -> f32[B] {
    return squeeze(x)
}
EOF2
expect "squeeze(f32[B, 1]) at check" 1 "cannot tell whether dimension B" "$K" check sq.kiln
sed 's/squeeze(x)/squeeze(x, axis=1)/' sq.kiln >sq1.kiln
for dev in ref kir cpu cuda-emu; do
    expect "squeeze(x, axis=1), B=1, on $dev" 0 "" "$K" run sq1.kiln --device=$dev --dim B=1
done

summary misuse
