#!/bin/sh
# tests/cli/oom.sh BIN - out of memory (issue 15): every failure is a message and exit
# status 3, never an abort or a signal, and no file the user had is damaged.
#  1. The compiler's own allocations: KILN_FAIL_ALLOC=N (base/util.c) makes the Nth
#     allocation fail; N sweeps 1, 2, 3, 4, 6, 8, 12, ... (until a run gets through)
#     over check, run on cpu / cuda-emu / ref with --out over an existing file, and
#     emit -o over an existing file.  Each run exits 0 or 3 ("out of host memory"),
#     the existing output is unchanged unless the run succeeded, and no temporary
#     file is left beside it.
#  2. Tensors too big for the memory (ulimit -v 1.5-2 GB): inputs, intermediates, on
#     every device: exit 3 naming what did not fit.
# Each check prints "FAIL: ..." when it fails; the last line is "oom: N passed, N failed".
K=${1:-build/kiln}
case $K in /*) ;; *) K=$(pwd)/$K ;; esac
PY=/usr/bin/python3
T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-oom.XXXXXX")
trap 'rm -rf "$T"' EXIT INT TERM
cd "$T" || exit 1
export XDG_CACHE_HOME="$T/cache"
pass=0
fail=0

ok() { pass=$((pass + 1)); }
bad() {
    fail=$((fail + 1))
    echo "FAIL: $*"
    if [ -s err ]; then sed 's/^/  stderr| /' err | cut -c 1-200 | head -n 5; fi
}

cat >m.kiln <<'EOF2'
graph f(x: f32[B, 8], w: f32[8, 8]) -> f32[B, 8] {
    h = gelu(x @ w + 1.0)
    return softmax(h, axis=1) + sum(h * h, axis=1, keepdims=true)
}
EOF2
$PY -c "import numpy as np; np.save('x.npy', np.ones((4, 8), np.float32))"
printf 'the user\047s file\n' >keep.npy.orig
printf 'the user\047s listing\n' >keep.ll.orig

# sweep NAME OUTFILE CMD...: CMD (which writes OUTFILE when it succeeds) run with
# KILN_FAIL_ALLOC=N for growing N.
sweep() {
    name=$1 outfile=$2
    shift 2
    n=1 fired=0 done=0
    while [ $done = 0 ] && [ $n -le 4000000 ]; do
        cp "$outfile.orig" "$outfile"
        KILN_FAIL_ALLOC=$n "$@" >out 2>err
        rc=$?
        if [ $rc = 0 ]; then
            done=1
        elif [ $rc != 3 ]; then
            bad "$name, allocation $n fails: exit status $rc, expected 3"
            return
        elif ! grep -q "out of host memory" err; then
            bad "$name, allocation $n fails: no 'out of host memory' message"
            return
        elif ! cmp -s "$outfile" "$outfile.orig"; then
            bad "$name, allocation $n fails: $outfile was changed"
            return
        else
            fired=$((fired + 1))
        fi
        if ls -A | grep -q 'kiln-'; then
            bad "$name, allocation $n fails: a temporary file was left: $(ls -A | grep kiln-)"
            return
        fi
        # 1, 2, 3, 4, 6, 8, 12, 16, 24, ...
        case $n in 1 | 2) n=$((n + 1)) ;; *) if [ $((n & (n - 1))) = 0 ]; then n=$((n + n / 2)); else n=$((n / 3 * 4)); fi ;; esac
    done
    if [ $done = 1 ] && [ $fired -gt 3 ]; then ok; else bad "$name: the sweep ended with $fired failures seen (done=$done)"; fi
    echo "$name: $fired allocation failures, each exit 3; allocation $n onwards: exit 0"
}

sweep "check" keep.npy "$K" check m.kiln
sweep "run --device=ref" keep.npy "$K" run m.kiln --device=ref --in x=x.npy --out keep.npy --force
if "$K" run m.kiln --dim B=1 --device=cpu >/dev/null 2>&1; then
    sweep "run --device=cpu" keep.npy "$K" run m.kiln --device=cpu --in x=x.npy --out keep.npy --force
    sweep "emit --emit=llvm" keep.ll "$K" emit m.kiln --emit=llvm --dim B=4 -o keep.ll --force
fi
sweep "run --device=cuda-emu" keep.npy "$K" run m.kiln --device=cuda-emu --in x=x.npy --out keep.npy --force

# ---- tensors larger than the memory (a 400 MB input fits in 1.5 GB, its 800 MB of
# intermediates do not; a 4 GB input does not fit in 2 GB)
cat >big.kiln <<'EOF2'
graph big(x: f32[B, 1000]) -> f32[B] {
    return sum(exp(x) * 2.0, axis=1)
}
EOF2
cat >mid.kiln <<'EOF2'
graph mid(x: f32[B, 100], w: f32[100, 100]) -> f32[B, 100] {
    y = x @ w
    return softmax(y, axis=0) @ w + y
}
EOF2
limited() { # KB "$@"
    kb=$1
    shift
    (ulimit -v "$kb" && exec "$@")
}
for dev in ref kir cpu cuda-emu; do
    cp keep.npy.orig keep.npy
    limited 2000000 "$K" run big.kiln --dim B=1000000 --device=$dev --out keep.npy --force >out 2>err
    rc=$?
    if [ $rc = 3 ] && grep -q "out of host memory for parameter 'x'" err && cmp -s keep.npy keep.npy.orig; then ok
    else bad "big input on $dev: exit status $rc, expected 3, the parameter named, keep.npy kept"; fi
done
for dev in kir cpu cuda-emu; do
    limited 1500000 "$K" run mid.kiln --dim B=1000000 --device=$dev >out 2>err
    rc=$?
    if [ $rc = 3 ] && grep -q "out of host memory for the intermediates" err; then ok
    else bad "big intermediates on $dev: exit status $rc, expected 3 and 'out of host memory for the intermediates'"; fi
done

echo "oom: $pass passed, $fail failed"
[ $fail = 0 ]
