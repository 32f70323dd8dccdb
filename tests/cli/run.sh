#!/bin/sh
# tests/cli/run.sh BIN - the command-line contract of shared/spec/cli.md, as built:
# commands, exit statuses (0 ok, 1 diagnosed input, 2 usage, 3 device), NumPy-style
# printing, --in/--out/--weights/--dim/--seed/-g, emit --emit=dot, and a CUDA device
# that is not there.  Each check prints "FAIL: ..." with kiln's stderr when it fails;
# the last line is "cli: N passed, N failed".  NumPy comes from /usr/bin/python3.
K=${1:-build/kiln}
case $K in /*) ;; *) K=$(pwd)/$K ;; esac
PY=/usr/bin/python3
. "$(dirname "$0")/../lib.sh"
scratch cli
skip=0

skipped() {
    skip=$((skip + 1))
    echo "skip: $*"
}

# expect_out NAME PATTERN: the last run's stdout matches PATTERN (grep -E).
expect_out() {
    if grep -qE -e "$2" "$T/out"; then ok; else bad "$1: stdout lacks /$2/"; fi
}

# py CODE...: runs Python with NumPy in $T.
py() { (cd "$T" && $PY -c "$@"); }

cat >"$T/id.kiln" <<'EOF'
graph id(x: f32[2, 3]) -> f32[2, 3] {
    return x
}
EOF
cat >"$T/two.kiln" <<'EOF'
# two results: --out DIR writes 0.npy and 1.npy
graph two(x: f32[2, 3]) -> (f32[2, 3], f32[2]) {
    return x * 2.0, sum(x, axis=1)
}

graph other(x: f32[2, 3]) -> f32[2, 3] {
    return -x
}
EOF
cat >"$T/affine.kiln" <<'EOF'
graph affine(x: f32[2, 3], w: f32[3], b: f32[3]) -> f32[2, 3] {
    return x * w + b
}
EOF
cat >"$T/sym.kiln" <<'EOF'
graph rows(x: f32[B, 3]) -> f32[B] {
    return sum(x, axis=1)
}
EOF
cat >"$T/rand.kiln" <<'EOF'
graph r(x: f32[8], n: i32[4]) -> (f32[8], i32[4]) {
    return x, n
}
EOF
cat >"$T/bad.kiln" <<'EOF'
graph f(x: f32[4]) -> f32[4] {
    return relu(y)
}
EOF

# ---- the basics
expect "--version" 0 "" "$K" --version
expect_out "--version" '^kiln [0-9]+\.[0-9]+'
expect "help" 0 "" "$K" help
expect_out "help lists check" 'kiln check'
expect_out "help lists run" 'kiln run'
expect_out "help lists emit" 'kiln emit'
expect "help run" 0 "" "$K" help run
expect_out "help run: --device" '--device'
# the devices and emit stages of the help come from the backend table (runtime/backends.c)
expect_out "help run lists every device of the table" '--device=NAME +one of: ref\|kir\|cpu\|cuda\|cuda-emu$'
expect_out "help run: --in" '--in'
expect_out "help run: --out" '--out'
expect "help emit" 0 "" "$K" help emit
expect_out "help emit lists the backends' stages" '--emit=ast\|ir\|opt\|kernels\|llvm\|cuda\|ptx\|dot\|svg '
expect "unknown command" 2 "frobnicate" "$K" frobnicate "$T/id.kiln"
expect "missing file" 2 "no-such-file.kiln" "$K" check "$T/no-such-file.kiln"
expect "missing FILE argument" 2 "FILE" "$K" check
expect "unknown option" 2 "--frob" "$K" check "$T/id.kiln" --frob
expect "option without its value" 2 "--dim" "$K" run "$T/id.kiln" --dim
expect "malformed --dim" 2 "--dim" "$K" run "$T/sym.kiln" --dim B=zero
expect "unknown emit stage" 2 "stage" "$K" emit "$T/id.kiln" --emit=bogus
expect "unknown device" 2 "device" "$K" run "$T/id.kiln" --device=abacus

# ---- check
expect "check clean" 0 "" "$K" check "$T/id.kiln"
if [ -s "$T/out" ] || [ -s "$T/err" ]; then bad "check clean: printed something"; else ok; fi
expect "check bad" 1 "bad.kiln:2:17: error: undefined name 'y'" "$K" check "$T/bad.kiln"
expect "check examples/mlp.kiln" 0 "" "$K" check examples/mlp.kiln

# ---- run --device=ref prints as NumPy prints
py "
import numpy as np
np.save('a.npy', np.array([[1.5, -2.25, 3.0], [0.125, 100.0, -0.5]], np.float32))
np.save('b.npy', np.array([[0.1, 1e-5, 3.0], [-7.0, 2.5, 1e3]], np.float32))
np.save('r.npy', np.random.default_rng(7).standard_normal((2, 3)).astype(np.float32))
for n in 'abr': print(np.load(n + '.npy'), file=open(n + '.txt', 'w'))
"
for n in a b r; do
    expect "run prints $n.npy" 0 "" "$K" run "$T/id.kiln" --device=ref --in "x=$T/$n.npy"
    if cmp -s "$T/out" "$T/$n.txt"; then ok; else
        bad "run prints $n.npy unlike NumPy:"
        diff "$T/$n.txt" "$T/out" | sed 's/^/  /'
    fi
done
cat >"$T/big.kiln" <<'EOF'
graph big(n: i64[3000]) -> (i64[3000], bool[2, 2]) {
    return n, reshape(n[0:4], [2, 2]) > 1
}
EOF
py "
import numpy as np
n = np.arange(3000, dtype=np.int64) * 7 - 5000
np.save('n.npy', n)
print('# result 0: i64[3000]', n, '# result 1: bool[2, 2]', n[:4].reshape(2, 2) > 1, sep='\n', file=open('big.txt', 'w'))
"
expect "run prints a summary" 0 "" "$K" run "$T/big.kiln" --device=ref --in "n=$T/n.npy"
if cmp -s "$T/out" "$T/big.txt"; then ok; else
    bad "summarised / several results unlike NumPy:"
    diff "$T/big.txt" "$T/out" | sed 's/^/  /'
fi

# ---- --out FILE.npy and --out DIR
expect "--out FILE.npy" 0 "" "$K" run "$T/two.kiln" -g other --device=ref --in "x=$T/r.npy" --out "$T/neg.npy"
if py "
import numpy as np
assert np.array_equal(np.load('neg.npy'), -np.load('r.npy'))
assert np.load('neg.npy').dtype == np.float32" 2>"$T/err"; then ok; else bad "--out FILE.npy: wrong contents"; fi
if [ -s "$T/out" ]; then bad "--out FILE.npy: printed results too"; else ok; fi
expect "--out DIR" 0 "" "$K" run "$T/two.kiln" --device=ref --in "x=$T/r.npy" --out "$T/outdir"
if py "
import numpy as np
x = np.load('r.npy')
a, b = np.load('outdir/0.npy'), np.load('outdir/1.npy')
assert a.shape == (2, 3) and np.array_equal(a, x * np.float32(2))
assert b.shape == (2,) and b.dtype == np.float32 and np.allclose(b, x.sum(axis=1), rtol=1e-6)" 2>"$T/err"; then ok; else bad "--out DIR: wrong 0.npy/1.npy"; fi

# ---- --in errors
py "
import numpy as np
np.save('f64.npy', np.zeros((2, 3)))
np.save('s33.npy', np.zeros((3, 3), np.float32))
d = open('a.npy', 'rb').read()
open('trunc.npy', 'wb').write(d[:-5])
open('garbage.npy', 'wb').write(b'not a npy file at all')
"
expect "--in wrong dtype" 1 "'x'.*f32.*f64|'x'.*f64.*f32" "$K" run "$T/id.kiln" --device=ref --in "x=$T/f64.npy"
expect "--in wrong shape" 1 "'x'" "$K" run "$T/id.kiln" --device=ref --in "x=$T/s33.npy"
expect "--in truncated .npy" 1 "trunc.npy.*(bytes|truncated|short|end)" "$K" run "$T/id.kiln" --device=ref --in "x=$T/trunc.npy"
expect "--in not a .npy" 1 "garbage.npy" "$K" run "$T/id.kiln" --device=ref --in "x=$T/garbage.npy"
expect "--in missing file" 1 "nope.npy" "$K" run "$T/id.kiln" --device=ref --in "x=$T/nope.npy"
expect "--in unknown parameter" 2 "'y'" "$K" run "$T/id.kiln" --device=ref --in "y=$T/a.npy"

# ---- --weights FILE.safetensors
py "
import json, struct, numpy as np
def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, a in tensors.items():
        b = np.ascontiguousarray(a).tobytes()
        header[name] = {'dtype': {'float32': 'F32', 'int64': 'I64'}[a.dtype.name],
                        'shape': list(a.shape), 'data_offsets': [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    h = json.dumps(header).encode()
    h += b' ' * (-len(h) % 8)
    open(path, 'wb').write(struct.pack('<Q', len(h)) + h + b''.join(blobs))
write_safetensors('w.safetensors', {'w': np.array([1.0, -2.0, 0.5], np.float32),
                                    'b': np.array([0.25, 0.0, -1.0], np.float32),
                                    'unused': np.arange(4, dtype=np.int64)})
write_safetensors('wbad.safetensors', {'w': np.zeros(4, np.float32)})
"
expect "--weights" 0 "" "$K" run "$T/affine.kiln" --device=ref --in "x=$T/r.npy" --weights "$T/w.safetensors" --out "$T/aff.npy"
if py "
import numpy as np
x = np.load('r.npy')
want = x * np.array([1.0, -2.0, 0.5], np.float32) + np.array([0.25, 0.0, -1.0], np.float32)
assert np.allclose(np.load('aff.npy'), want, rtol=1e-6, atol=1e-7)" 2>"$T/err"; then ok; else bad "--weights: wrong result"; fi
expect "--weights wrong shape" 1 "'w'" "$K" run "$T/affine.kiln" --device=ref --weights "$T/wbad.safetensors"
expect "--weights missing file" 1 "nope.safetensors" "$K" run "$T/affine.kiln" --device=ref --weights "$T/nope.safetensors"

# ---- -g, symbolic dimensions, --seed
expect "-g unknown graph" 2 "'nosuch'" "$K" run "$T/two.kiln" -g nosuch --device=ref
expect "-g picks a graph" 0 "" "$K" run "$T/two.kiln" -g other --device=ref
expect "unbound dimension" 2 "dimension B.*--dim B=" "$K" run "$T/sym.kiln" --device=ref
expect "--dim binds it" 0 "" "$K" run "$T/sym.kiln" --device=ref --dim B=4
expect_out "--dim B=4 gives 4 rows" '^\[[^ ]+( +[^ ]+){3}\]$'
expect "--in binds a dimension" 0 "" "$K" run "$T/sym.kiln" --device=ref --in "x=$T/s33.npy"
expect_out "--in x of 3 rows gives 3 values" '^\[0\. 0\. 0\.\]$'
expect "--seed 1" 0 "" "$K" run "$T/rand.kiln" --device=ref --seed 1
cp "$T/out" "$T/seed1a"
expect "--seed 1 again" 0 "" "$K" run "$T/rand.kiln" --device=ref --seed 1
if cmp -s "$T/out" "$T/seed1a"; then ok; else bad "--seed 1 twice gave different values"; fi
expect "--seed 2" 0 "" "$K" run "$T/rand.kiln" --device=ref --seed 2
if cmp -s "$T/out" "$T/seed1a"; then bad "--seed 1 and --seed 2 gave the same values"; else ok; fi

# ---- emit --emit=dot is Graphviz
expect "emit dot" 0 "" "$K" emit examples/mlp.kiln --emit=dot --dim B=2
expect_out "emit dot is a digraph" '^digraph '
if command -v dot >/dev/null 2>&1; then
    if dot -Tsvg "$T/out" -o "$T/g.svg" 2>"$T/err"; then ok; else bad "dot rejects emit --emit=dot"; fi
else
    skipped "graphviz 'dot' is not installed: emit --emit=dot not validated by dot"
fi
expect "emit ir -o FILE" 0 "" "$K" emit examples/mlp.kiln --emit=ir -o "$T/mlp.ir"
if grep -q '^graph mlp(' "$T/mlp.ir"; then ok; else bad "emit -o FILE: no IR in the file"; fi

# ---- --remarks on every device: the passes' remarks everywhere (ref runs the graph
# unfused, so it has only those), the fusion scheduler's on every device that runs
# kernels, and on the emit stages of the backends (the executor schedules for all of
# them).  The cuda device is checked on the stand-in driver (tests/cuda/standin.sh).
printf '%s\n' 'graph g(x: f32[4, 8], w: f32[8, 3]) -> f32[4, 3] {' '    y = x * 1.0' '    return relu(y @ w)' '}' \
    >"$T/remarks.kiln"
for dev in ref kir cpu cuda-emu; do
    expect "--remarks on $dev: passes" 0 "^remark: simplify: mul@2:11 x \\* 1 -> x" "$K" run "$T/remarks.kiln" \
        --device=$dev --remarks
    [ $dev = ref ] && continue
    expect "--remarks on $dev: kernels" 0 "^remark: kernel k0_matmul_add_relu" "$K" run examples/mlp.kiln --dim B=2 \
        --device=$dev --remarks
done
for stage in kernels cuda; do
    expect "--remarks on emit $stage" 0 "^remark: kernel k0_matmul_add_relu" "$K" emit examples/mlp.kiln \
        --dim B=2 --emit=$stage --remarks
done

# ---- take: an index out of range is clamped on every device; ref names the first one
cat >"$T/take.kiln" <<'EOF'
graph g(x: f32[3], i: i64[4]) -> f32[4] {
    return take(x, i)
}
EOF
py "import numpy as np; np.save('x.npy', np.array([1, 2, 3], np.float32)); np.save('i.npy', np.array([0, -1, 7, -9]))"
for dev in ref cpu kir cuda-emu; do
    expect "take clamps on $dev" 0 "" "$K" run "$T/take.kiln" --device=$dev --in x="$T/x.npy" --in i="$T/i.npy"
    expect_out "take clamps on $dev: values" '^\[1\. 3\. 3\. 1\.\]'
done
expect "take warns on ref" 0 "take.kiln:2:12: warning: take: index 7 is out of range for an axis of size 3" \
    "$K" run "$T/take.kiln" --device=ref --in x="$T/x.npy" --in i="$T/i.npy"
if [ "$(grep -c warning "$T/err")" = 1 ]; then ok; else bad "take on ref: one warning, for the first index"; fi
run "$K" run "$T/take.kiln" --device=cpu --in x="$T/x.npy" --in i="$T/i.npy"
if [ -s "$T/err" ]; then bad "take on cpu: no warning expected"; else ok; fi

# ---- a device that is not there
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    expect "--device=cuda with a GPU" 0 "" "$K" run "$T/id.kiln" --device=cuda
else
    expect "--device=cuda without a driver" 3 "cuda" "$K" run "$T/id.kiln" --device=cuda
fi

# ---- the micro-kernel's form per target (codegen/llvm.c, ukernel_embedded_bcast): on
# AMD Zen each FMA loads its own broadcast of A (the AVX-512 12x32 tile: 24 loads of A
# for 24 FMAs; AVX2's 6x16: 12 for 12), elsewhere one broadcast per row shared by the
# row's FMAs (12 for 24; 6 for 12), per k step: three steps (the loop's two an iteration
# and the odd last one) in each of the micro-kernel's two copies of its k loop (one
# prefetching a slice of the next block of weights, a_next_block: one llvm.prefetch a
# step), hence six times the counts of loads and FMAs (three times the prefetches: only
# one copy prefetches).  And every function defined for a 16-float target prefers
# 512-bit vectors (prefer_full_vectors), none for an 8-float one.  Emitting compiles
# nothing for the host, so this runs on any machine.
cat >"$T/form.kiln" <<'EOF'
graph mm(x: f32[96, 256], w: f32[256, 128]) -> f32[96, 128] {
    return gelu(x @ w)
}
EOF
# ukernel_counts CPU: "LOADS FMAS PREFETCHES" of @kiln.mm.ukernel emitted for CPU, in
# $T/form-CPU.ll.
ukernel_counts() {
    "$K" emit "$T/form.kiln" --emit=llvm --cpu="$1" >"$T/form-$1.ll" 2>"$T/err" || return 1
    awk '/^define internal void @kiln.mm.ukernel\(/,/^}/ {
             if (/load float/) l++; if (/@llvm.fma/) f++; if (/call void @llvm.prefetch/) p++ }
         END { print l + 0, f + 0, p + 0 }' "$T/form-$1.ll"
}
for case in "znver4:144 144 3:1" "skylake-avx512:72 144 3:1" "znver2:72 72 3:0" "haswell:36 72 3:0"; do
    cpu=${case%%:*} rest=${case#*:}
    want=${rest%:*} full=${rest#*:}
    got=$(ukernel_counts "$cpu")
    if [ "$got" = "$want" ]; then ok; else bad "micro-kernel form for $cpu: loads/FMAs/prefetches '$got', want '$want'"; fi
    defs=$(grep -c '^define' "$T/form-$cpu.ll")
    groups=$(sed -n 's/^attributes \(#[0-9]*\) = .*"prefer-vector-width"="512".*/\1/p' "$T/form-$cpu.ll")
    preferring=0
    for g in $groups; do
        n=$(grep '^define' "$T/form-$cpu.ll" | grep -c " $g ")
        preferring=$((preferring + n))
    done
    if [ "$full" = 1 ]; then want_pref=$defs; else want_pref=0; fi
    if [ "$defs" -gt 0 ] && [ "$preferring" = "$want_pref" ]; then ok; else
        bad "prefer-vector-width=512 for $cpu: on $preferring of $defs functions, want $want_pref"
    fi
done

[ "$skip" != 0 ] && echo "($skip skipped)"
summary cli
