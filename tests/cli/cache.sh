#!/bin/sh
# tests/cli/cache.sh BIN - the on-disk cache of compiled CPU code (issue 11) from the
# command line: `kiln cache info|clear`, bench --json's cache_hits and
# program_from_cache, two processes started at once on a cold and on a warm cache,
# damaged entries (a program's, every entry) rebuilt, --cpu in the key; packed
# weights (changed weights, damaged entries) on a small ONNX model; prebuilt forms
# (a net of the corpus's layer kinds: no unit compiled, or all with --cpu).  Every
# result is compared with the reference interpreter's (--device=ref; rtol 1e-4, atol
# 1e-5).  Each check prints "FAIL: ..." when it fails; the last line is
# "cache: N passed, N failed".
K=${1:-build/kiln}
case $K in /*) ;; *) K=$(pwd)/$K ;; esac
PY=/usr/bin/python3
T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-cache.XXXXXX")
trap 'rm -rf "$T"' EXIT INT TERM
cd "$T" || exit 1
pass=0
fail=0
export KILN_CACHE="$T/cache"

ok() { pass=$((pass + 1)); }
bad() {
    fail=$((fail + 1))
    echo "FAIL: $*"
    if [ -s err ]; then sed 's/^/  stderr| /' err | cut -c 1-200 | head -n 10; fi
}
# expect NAME RC PATTERN CMD...: CMD exits with RC; stdout+stderr match PATTERN (grep -E -i).
expect() {
    name=$1 want=$2 pat=$3
    shift 3
    "$@" >out 2>err
    rc=$?
    if [ "$rc" != "$want" ]; then bad "$name: exit status $rc, expected $want"
    elif [ -n "$pat" ] && ! cat out err | grep -qiE -e "$pat"; then bad "$name: output lacks /$pat/"
    else ok; fi
}
# same NAME FILE: FILE.npy holds the reference's results.
same() {
    if $PY -c "
import sys, numpy as np
a, b = np.load(sys.argv[1]), np.load('ref.npy')
sys.exit(0 if a.shape == b.shape and np.allclose(a, b, rtol=1e-4, atol=1e-5) else 1)" "$2" 2>err; then ok
    else bad "$1: $2 differs from the reference"; fi
}
# json NAME EXPR: EXPR (Python, over the dict j of bench --json in `out`) is true.
json() {
    if $PY -c "
import json, sys
j = json.load(open('out'))
sys.exit(0 if eval(sys.argv[1]) else 1)" "$2" 2>err; then ok
    else bad "$1: bench --json: not $2: $(cut -c 1-300 out)"; fi
}
flip_entries() {
    for f in "$KILN_CACHE"/*.kc; do
        $PY -c "
import sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
b[len(b) // 2] ^= 0x40
open(p, 'wb').write(b)" "$f"
    done
}

# four identical layers and a head: the layers share their code
cat >m.kiln <<'EOF2'
graph m(x: f32[16, 48], w1: f32[48, 48], w2: f32[48, 48], w3: f32[48, 48], w4: f32[48, 48],
        b: f32[48]) -> f32[16, 48] {
    h1 = tanh(x @ w1 + b)
    h2 = tanh(h1 @ w2 + b)
    h3 = tanh(h2 @ w3 + b)
    h4 = tanh(h3 @ w4 + b)
    return softmax(h4, axis=-1)
}
EOF2
"$K" run m.kiln --device=ref --out ref.npy >/dev/null 2>err || bad "reference run"

# two_at_once WHAT: two processes started at once run m.kiln, both right
two_at_once() {
    "$K" run m.kiln --device=cpu --out a.npy >/dev/null 2>a.err &
    pa=$!
    "$K" run m.kiln --device=cpu --out b.npy >/dev/null 2>b.err &
    pb=$!
    wait $pa && ok || { cp a.err err; bad "first of two processes at once, $1"; }
    wait $pb && ok || { cp b.err err; bad "second of two processes at once, $1"; }
    same "first process, $1" a.npy
    same "second process, $1" b.npy
}

# ---- an empty cache, then two processes at once on it
expect "info, empty" 0 "entries: 0" "$K" cache info
two_at_once "cold"
expect "info after" 0 "CPU object code" "$K" cache info
if ls "$KILN_CACHE"/.*.tmp.* >/dev/null 2>&1; then bad "temporary files left behind"; else ok; fi

# ---- warm: every distinct kernel from the cache, all in the program's one entry
expect "bench warm" 0 "" "$K" bench m.kiln --device=cpu --json --runs=2
json "warm hits" "j['cache_hits'] == j['kernels_distinct'] > 0 and j['kernels_compiled'] == 0"
json "warm: the program's entry" "j['program_from_cache'] == 1"
json "shared layers" "j['kernels_distinct'] < len(j['kernels'])"
json "compile_ms kept" "j['compile_ms'] >= 0"
expect "info: program entries" 0 "CPU program code +1 " "$K" cache info
expect "run warm" 0 "" "$K" run m.kiln --device=cpu --out c.npy
same "warm run" c.npy
expect "-v says" 0 "from the cache" "$K" run m.kiln --device=cpu -v

# ---- two processes at once on the warm cache: both from the program's entry
two_at_once "warm"

# after_damage WHAT LOADED REBUILT: bench's json says LOADED, a run gives the
# reference's results, a second bench's json says REBUILT
after_damage() {
    expect "bench, $1" 0 "" "$K" bench m.kiln --device=cpu --json --runs=2
    json "$1: loaded" "$2"
    expect "run, $1" 0 "" "$K" run m.kiln --device=cpu --out d.npy
    same "$1" d.npy
    expect "bench, $1, again" 0 "" "$K" bench m.kiln --device=cpu --json --runs=2
    json "$1: rebuilt" "$3"
}

# ---- the program's entry alone damaged, then cut short: passed over (the units
# from their own entries), the results right, written anew
for how in flip cut; do
    $PY -c "
import glob, sys
for p in glob.glob(sys.argv[1] + '/*.kc'):
    b = bytearray(open(p, 'rb').read())
    if b[40:48] == b'KILNCPR1':
        b = b[:len(b) // 2] if sys.argv[2] == 'cut' else b
        b[len(b) // 2] ^= 0x40
        open(p, 'wb').write(b)" "$KILN_CACHE" $how
    after_damage "program entry $how" "j['program_from_cache'] == 0 and j['cache_hits'] == j['kernels_distinct']" \
        "j['program_from_cache'] == 1"
done

# ---- damaged entries: found, rebuilt, the results right
flip_entries
after_damage "damaged" "j['cache_hits'] == 0 and j['kernels_compiled'] == j['kernels_distinct']" \
    "j['cache_hits'] == j['kernels_distinct']"
for f in "$KILN_CACHE"/*.kc; do : >"$f"; done # truncated to nothing
expect "run, empty entries" 0 "" "$K" run m.kiln --device=cpu --out e.npy
same "empty entries" e.npy

# ---- the target CPU is part of the key
expect "bench --cpu=x86-64" 0 "" "$K" bench m.kiln --device=cpu --cpu=x86-64 --json --runs=2
json "--cpu misses" "j['cache_hits'] == 0 and j['program_from_cache'] == 0"
expect "run --cpu=x86-64" 0 "" "$K" run m.kiln --device=cpu --cpu=x86-64 --out f.npy
same "--cpu=x86-64" f.npy

# ---- clear: entries and temporaries go, nothing else
echo mine >"$KILN_CACHE/notes.txt"
expect "clear" 0 "removed [1-9][0-9]* files" "$K" cache clear
expect "info after clear" 0 "entries: 0" "$K" cache info
if [ -f "$KILN_CACHE/notes.txt" ]; then ok; else bad "clear removed a file that is not the cache's"; fi
expect "bench after clear" 0 "" "$K" bench m.kiln --device=cpu --json --runs=2
json "cold again" "j['cache_hits'] == 0 and j['kernels_compiled'] == j['kernels_distinct']"

# ---- usage and an off cache
expect "cache bogus" 2 "info or clear" "$K" cache bogus
expect "cache info extra" 2 "info or clear" "$K" cache info extra
expect "cache (info)" 0 "entries:" "$K" cache
expect "help cache" 0 "kiln cache" "$K" help cache
expect "info, off" 0 "off \(KILN_CACHE=off\)" env KILN_CACHE=off "$K" cache info
expect "clear, off" 0 "off" env KILN_CACHE=off "$K" cache clear
expect "bench, off" 0 "" env KILN_CACHE=off "$K" bench m.kiln --device=cpu --json --runs=2
json "off: no hits" "j['cache_hits'] == 0"
json "off: CPU time of a run" "j['run_cpu_ms'] > 0"
expect "relative folder" 0 "absolute" env KILN_CACHE=relative "$K" cache info
expect "limit shown" 0 "limit: 1 GiB" "$K" cache info
expect "limit set" 0 "limit: 2 MiB" env KILN_CACHE_MAX=2M "$K" cache info
expect "limit not a size" 0 "KILN_CACHE_MAX=lots is not a size" env KILN_CACHE_MAX=lots "$K" cache info
expect "no limit" 0 "limit: none" env KILN_CACHE_MAX=0 "$K" cache info
# a limit far below one entry: whatever is trimmed is compiled again, results right
expect "tiny limit" 0 "" env KILN_CACHE_MAX=1K "$K" run m.kiln --device=cpu --out g.npy
same "tiny limit" g.npy

# ---- packed weights: the cpu packs a product's constant operand once, and keeps large
# ones in the cache keyed by the weights' bytes (runtime/cpu.c): a model changed in
# place, its size and mtime kept, is never served stale packed weights; a damaged
# packed entry is rebuilt
export KILN_CACHE="$T/pcache"
$PY - <<'EOF2' || bad "writing p.onnx"
import numpy as np
from onnx import TensorProto, helper, numpy_helper

def weights(seed):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((256, 256)) / 16).astype(np.float32), rng.standard_normal(256).astype(np.float32)

w1, b = weights(1)
w2, _ = weights(2)
x = np.random.default_rng(3).standard_normal((8, 256)).astype(np.float32)
np.save("x.npy", x)
for name, w in (("p1", w1), ("p2", w2)):
    ref = np.maximum(x.astype(np.float64) @ w.astype(np.float64) + b, 0)
    np.save(name + ".npy", ref.astype(np.float32))
g = helper.make_graph(
    [helper.make_node("MatMul", ["x", "w"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["xb"]),
     helper.make_node("Relu", ["xb"], ["y"])], "p",
    [helper.make_tensor_value_info("x", TensorProto.FLOAT, [8, 256])],
    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [8, 256])],
    [numpy_helper.from_array(w1, "w"), numpy_helper.from_array(b, "b")])
m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)])
open("p.onnx", "wb").write(m.SerializeToString())
open("w2.bin", "wb").write(w2.tobytes())
open("w1.bin", "wb").write(w1.tobytes())
EOF2
# close NAME FILE WANT: FILE.npy is within rtol 1e-4, atol 1e-5 of WANT.npy
close() {
    if $PY -c "
import sys, numpy as np
a, b = np.load(sys.argv[1]), np.load(sys.argv[2])
sys.exit(0 if a.shape == b.shape and np.allclose(a, b, rtol=1e-4, atol=1e-5) else 1)" "$2" "$3" 2>err; then ok
    else bad "$1: $2 differs from $3"; fi
}
expect "packed, cold" 0 "" "$K" bench p.onnx --device=cpu --in x=x.npy --json --runs=1
json "packed, cold: packed, none from the cache" "j['packed_operands'] >= 1 and j['packed_from_cache'] == 0"
expect "packed, cold run" 0 "" "$K" run p.onnx --device=cpu --in x=x.npy --out q1.npy
close "packed, cold run" q1.npy p1.npy
expect "packed, warm" 0 "" "$K" bench p.onnx --device=cpu --in x=x.npy --json --runs=1
# (unless p.onnx settled since the cold runs, on a loaded machine: then its weights are
# named by their place, a key the cold runs did not store; "settled again" checks those)
json "packed, warm: from the cache" \
    "j['packed_from_cache'] == j['packed_operands'] >= 1 or j['packed_by_place'] == j['packed_operands'] >= 1"
expect "packed, warm run" 0 "" "$K" run p.onnx --device=cpu --in x=x.npy --out q2.npy
close "packed, warm run" q2.npy p1.npy
expect "packed, info" 0 "packed weights" "$K" cache info
# a model file unchanged for two seconds: its weights' entries keyed by where they lie in
# it (device, inode, size, times, offset: base/mapped.c), not by hashing them
sleep 2.1
expect "packed, settled" 0 "" "$K" bench p.onnx --device=cpu --in x=x.npy --json --runs=1
json "packed, settled: keyed by place" "j['packed_by_place'] == j['packed_operands'] >= 1"
expect "packed, settled again" 0 "" "$K" bench p.onnx --device=cpu --in x=x.npy --json --runs=1
json "packed, settled again: from the cache" "j['packed_from_cache'] == j['packed_by_place'] >= 1"
expect "packed, settled run" 0 "" "$K" run p.onnx --device=cpu --in x=x.npy --out q7.npy
close "packed, settled run" q7.npy p1.npy
# another build of kiln (this one without its build id: another identity) packs anew:
# packed blocks are keyed by the compilers too, also for kernels whose unit is a
# prebuilt form (whose key, made at build time, names no build)
if objcopy --remove-section .note.gnu.build-id "$K" kiln-other 2>err; then
    expect "packed, another build" 0 "" ./kiln-other bench p.onnx --device=cpu --in x=x.npy --json --runs=1
    json "packed, another build: none from the cache" \
        "j['packed_operands'] >= 1 and j['packed_from_cache'] == 0"
    expect "packed, another build run" 0 "" ./kiln-other run p.onnx --device=cpu --in x=x.npy --out q9.npy
    close "packed, another build run" q9.npy p1.npy
    rm -f kiln-other
else
    echo "(objcopy unavailable: the another-build check skipped)"
fi
# the weights rewritten in place: same size, the old mtime put back
$PY -c "
import os
st = os.stat('p.onnx')
b = bytearray(open('p.onnx', 'rb').read())
old, new = open('w1.bin', 'rb').read(), open('w2.bin', 'rb').read()
at = b.find(old)
assert at > 0 and len(old) == len(new)
b[at:at + len(new)] = new
with open('p.onnx', 'r+b') as f:
    f.write(b)
os.utime('p.onnx', ns=(st.st_atime_ns, st.st_mtime_ns))" 2>err || bad "rewriting p.onnx in place"
expect "packed, changed" 0 "" "$K" bench p.onnx --device=cpu --in x=x.npy --json --runs=1
json "packed, changed weights: packed anew, hashed" \
    "j['packed_operands'] >= 1 and j['packed_from_cache'] == 0 and j['packed_by_place'] == 0"
expect "packed, changed run" 0 "" "$K" run p.onnx --device=cpu --in x=x.npy --out q3.npy
close "packed, changed weights" q3.npy p2.npy
# ... and once it has settled, its change time (which the old mtime put back did not
# restore) makes the place another key: never the old weights' packed entry
sleep 2.1
expect "packed, changed settled" 0 "" "$K" bench p.onnx --device=cpu --in x=x.npy --json --runs=1
json "packed, changed settled: packed anew by place" \
    "j['packed_by_place'] >= 1 and j['packed_from_cache'] == 0"
expect "packed, changed settled run" 0 "" "$K" run p.onnx --device=cpu --in x=x.npy --out q8.npy
close "packed, changed settled" q8.npy p2.npy
# damaged packed entries (a byte of the payload flipped): rebuilt, never used
for f in "$KILN_CACHE"/*.kc; do
    $PY -c "
import sys
p = sys.argv[1]
b = bytearray(open(p, 'rb').read())
if b[:7] == b'KILNKM0':
    b[64 + (len(b) - 64) // 2] ^= 0x40
    open(p, 'wb').write(b)" "$f"
done
expect "packed, damaged" 0 "" "$K" bench p.onnx --device=cpu --in x=x.npy --json --runs=1
json "packed, damaged: packed anew" "j['packed_operands'] >= 1 and j['packed_from_cache'] == 0"
expect "packed, damaged run" 0 "" "$K" run p.onnx --device=cpu --in x=x.npy --out q4.npy
close "packed, after damage" q4.npy p2.npy
# a model file cut short: an error naming what runs past its end, whatever the cache holds
head -c 40000 p.onnx >cut.onnx
expect "packed, truncated model" 1 "runs past|truncated" "$K" run cut.onnx --device=cpu --in x=x.npy
# the same product as a kiln program + safetensors: the weights file mapped and used in
# place on the cpu (views), packed from the cache on a second run; a file cut short is an error
cat >p.kiln <<'EOF2'
graph p(x: f32[8, 256], w: f32[256, 256], b: f32[256]) -> f32[8, 256] {
    return relu(x @ w + b)
}
EOF2
$PY -c "
import json, struct, sys
import numpy as np
w = np.frombuffer(open('w1.bin', 'rb').read(), np.float32)
b = np.random.default_rng(1)
b.standard_normal((256, 256))
b = b.standard_normal(256).astype(np.float32)
hdr = json.dumps({'w': {'dtype': 'F32', 'shape': [256, 256], 'data_offsets': [0, w.nbytes]},
                  'b': {'dtype': 'F32', 'shape': [256], 'data_offsets': [w.nbytes, w.nbytes + b.nbytes]}}).encode()
open('p.safetensors', 'wb').write(struct.pack('<Q', len(hdr)) + hdr + w.tobytes() + b.tobytes())" 2>err ||
    bad "writing p.safetensors"
expect "safetensors, cpu" 0 "" "$K" run p.kiln --device=cpu --in x=x.npy --weights p.safetensors --out q5.npy
close "safetensors, cpu" q5.npy p1.npy
# --compare binds the reference's inputs as well, the weights as views of the mapped
# file: freed as views (free() of one aborted kiln after the comparison: glibc caught
# it for this file's bytes before the tensor)
cat >s.kiln <<'EOF2'
graph s(x: f32[4, 8], w: f32[8]) -> f32[4, 8] {
    return x * w
}
EOF2
$PY -c "
import json, struct
hdr = json.dumps({'w': {'dtype': 'F32', 'shape': [8], 'data_offsets': [0, 32]}}).encode()
hdr += b' ' * (-len(hdr) % 8)
open('s.safetensors', 'wb').write(struct.pack('<Q', len(hdr)) + hdr + struct.pack('<8f', *range(8)))" 2>err ||
    bad "writing s.safetensors"
expect "safetensors, --compare" 0 "compare result 0" "$K" run s.kiln --device=cpu --weights s.safetensors --compare
expect "safetensors, warm" 0 "" "$K" bench p.kiln --device=cpu --in x=x.npy --weights p.safetensors --json --runs=1
json "safetensors, warm: packed from the cache" "j['packed_from_cache'] == j['packed_operands'] >= 1"
expect "safetensors, warm run" 0 "" "$K" run p.kiln --device=cpu --in x=x.npy --weights p.safetensors --out q6.npy
close "safetensors, warm run" q6.npy p1.npy
# a warm start through ORC with KILN_PERF's object layer (jitdump files in $T):
# the host's target registered for the LLJIT (exit 3 "no targets are registered")
expect "warm, KILN_PERF=1" 0 "" env KILN_PERF=1 JITDUMPDIR="$T" "$K" run p.kiln --device=cpu --in x=x.npy --weights p.safetensors --out q7.npy
close "warm, KILN_PERF=1" q7.npy p1.npy
# weights in place on the other devices too: ref and kir take the tensors that lie
# aligned in the file as they are and copy the rest (data made to start 1 byte past a
# multiple of 4: skewed.safetensors); cpu takes both as they are
$PY -c "
import json, struct
raw = open('p.safetensors', 'rb').read()
n = struct.unpack('<Q', raw[:8])[0]
hdr = raw[8:8 + n].rstrip(b' ')
while (8 + len(hdr)) % 4 != 1:
    hdr += b' '
open('skewed.safetensors', 'wb').write(struct.pack('<Q', len(hdr)) + hdr + raw[8 + n:])" 2>err ||
    bad "writing skewed.safetensors"
for dev in ref kir cpu; do
    for w in p skewed; do
        expect "$w.safetensors, $dev" 0 "" "$K" run p.kiln --device=$dev --in x=x.npy --weights $w.safetensors \
            --out q7.npy
        close "$w.safetensors, $dev" q7.npy p1.npy
    done
    [ $dev = cpu ] && continue
    expect "onnx initializers, $dev" 0 "" "$K" run p.onnx --device=$dev --in x=x.npy --out q8.npy
    close "onnx initializers, $dev" q8.npy p2.npy
done
head -c 100000 p.safetensors >cut.safetensors
expect "safetensors, truncated" 1 "out of range|runs past|truncated" "$K" run p.kiln --device=cpu --in x=x.npy \
    --weights cut.safetensors

# prebuilt forms (docs/cpu-backend.md): a net of the corpus's layer kinds at sizes
# the corpus does not have (an inverted residual block of 24 and 40 channels: 1x1 +
# bias + relu6, a depthwise 3x3 stride 2 + bias + relu6 from 28x28 (the direct form
# is keyed by its plane: a plane of the corpus's pyramid), 1x1 + bias + a residual;
# a 3x3 stride-2 convolution + bias + relu; a 1x1 stride-2 convolution + bias + relu
# from 14x14 to 7x7, the swapped whole-rows form that was compiled cold for ResNet-50's
# 1024->2048 shortcut until session 11; a linear layer), its weights bound: on
# this machine (where kiln was built, so its helpers are the prebuilt ones) no unit
# is compiled cold; with --cpu naming another CPU every unit is compiled as before;
# both give the reference's results
cat >f.kiln <<'EOF2'
graph f(x: f32[1, 24, 28, 28], w1: f32[40, 24, 1, 1], b1: f32[40], wd: f32[40, 1, 3, 3], bd: f32[40],
        w2: f32[24, 40, 1, 1], b2: f32[24], r: f32[1, 24, 14, 14], w3: f32[72, 24, 3, 3], b3: f32[72],
        t: f32[1, 20, 96], w4: f32[96, 200], b4: f32[200], q: f32[1, 136, 14, 14], w5: f32[160, 136, 1, 1],
        b5: f32[160]) -> (f32[1, 24, 14, 14], f32[1, 72, 7, 7], f32[1, 20, 200], f32[1, 160, 7, 7]) {
    h = clamp(conv2d(x, w1, b1), 0.0, 6.0)
    d = clamp(conv2d(h, wd, bd, stride=2, padding=1, groups=40), 0.0, 6.0)
    y = conv2d(d, w2, b2) + r
    z = relu(conv2d(y, w3, b3, stride=[2, 2], padding=[[1, 1], [1, 1]]))
    return y, z, t @ w4 + b4, relu(conv2d(q, w5, b5, stride=[2, 2]))
}
EOF2
$PY -c "
import json, struct, numpy as np
rng = np.random.default_rng(7)
shapes = {'w1': [40, 24, 1, 1], 'b1': [40], 'wd': [40, 1, 3, 3], 'bd': [40], 'w2': [24, 40, 1, 1], 'b2': [24],
          'w3': [72, 24, 3, 3], 'b3': [72], 'w4': [96, 200], 'b4': [200], 'w5': [160, 136, 1, 1], 'b5': [160]}
hdr, blobs, off = {}, [], 0
for k, s in shapes.items():
    b = (rng.standard_normal(s) * 0.2).astype(np.float32).tobytes()
    hdr[k] = {'dtype': 'F32', 'shape': s, 'data_offsets': [off, off + len(b)]}
    off += len(b)
    blobs.append(b)
h = json.dumps(hdr).encode()
h += b' ' * (-len(h) % 8)
open('f.safetensors', 'wb').write(struct.pack('<Q', len(h)) + h + b''.join(blobs))
for name, shape in (('fx', (1, 24, 28, 28)), ('fr', (1, 24, 14, 14)), ('ft', (1, 20, 96)), ('fq', (1, 136, 14, 14))):
    np.save(name + '.npy', rng.standard_normal(shape).astype(np.float32))" 2>err || bad "writing f.safetensors"
fin="--weights f.safetensors --in x=fx.npy --in r=fr.npy --in t=ft.npy --in q=fq.npy"
"$K" run f.kiln --device=ref $fin --out fref >/dev/null 2>err || bad "prebuilt forms: reference run"
expect "prebuilt forms, cold" 0 "" env KILN_CACHE=off "$K" bench f.kiln --device=cpu $fin --json --runs=1 -v
if grep -q "shared helpers prebuilt at build time" err; then
    json "prebuilt forms, cold: no unit compiled" \
        "j['kernels_prebuilt'] == j['kernels_distinct'] == 6 and j['kernels_compiled'] == 0"
else
    echo "cache: this build's helpers are not prebuilt for this CPU, nor its forms: the hit is not checked"
fi
expect "prebuilt forms, --cpu=x86-64-v3" 0 "" env KILN_CACHE=off "$K" bench f.kiln --device=cpu --cpu=x86-64-v3 \
    $fin --json --runs=1
json "prebuilt forms, --cpu=x86-64-v3: every unit compiled" \
    "j['kernels_prebuilt'] == 0 and j['kernels_compiled'] == j['kernels_distinct'] == 6"
for cpu in native x86-64-v3; do
    expect "prebuilt forms, run --cpu=$cpu" 0 "" env KILN_CACHE=off "$K" run f.kiln --device=cpu --cpu=$cpu $fin \
        --out f$cpu
    for r in 0 1 2 3; do close "prebuilt forms, --cpu=$cpu, result $r" f$cpu/$r.npy fref/$r.npy; done
done

echo "cache: $pass passed, $fail failed"
[ "$fail" = 0 ]
