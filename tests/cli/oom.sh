#!/bin/sh
# tests/cli/oom.sh BIN - out of memory (issue 15): every failure is a message and exit
# status 3, never an abort or a signal, and no file the user had is damaged.
#  1. The compiler's own allocations: KILN_FAIL_ALLOC=N (base/util.c) makes the Nth
#     allocation fail; N sweeps 1, 2, 3, 4, 6, 8, 12, ... (until a run gets through)
#     over check, run on cpu / cuda-emu / ref with --out over an existing file, and
#     emit -o over an existing file.  Each run exits 0 or 3 ("out of host memory"),
#     the existing output is unchanged unless the run succeeded, and no temporary
#     file is left beside it.
#  2. Tensors too big for the memory (ulimit -v 1.5-2 GB; under ASan, no allocation
#     over 600 MB): inputs, intermediates, on every device: exit 3 naming what did
#     not fit.
#  3. Out of memory inside LLVM: a ResNet-shaped model compiled on cpu (no kernel
#     cache) under address-space limits from the least at which kiln starts to the
#     least at which it succeeds (both found by bisection), 10 limits between them:
#     every run exits 0 or 3 with "out of host memory", never dies by a signal (LLVM's
#     abort on bad_alloc, before codegen/llvm_oom.cpp), and at least one run fails
#     inside LLVM ("out of host memory (in LLVM: ...)").  Skipped under ASan (it needs
#     terabytes of address space); ~9 s of CPU.
# Harness: tests/lib.sh; the last line is "oom: N passed, N failed".
K=${1:-build/kiln}
case $K in /*) ;; *) K=$(pwd)/$K ;; esac
REPO=$(cd "$(dirname "$0")/../.." && pwd)
PY=/usr/bin/python3
. "$REPO/tests/lib.sh"
scratch oom
cd "$T" || exit 1
export XDG_CACHE_HOME="$T/cache"

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
# limited KB CMD...: CMD with at most KB of address space.  ASan needs terabytes of
# it (its shadow memory), so there no single allocation may exceed 600 MB instead:
# a 400 MB input fits, 800 MB of intermediates and a 4 GB input do not.
asan=0
if ldd "$K" 2>/dev/null | grep -q libasan || nm "$K" 2>/dev/null | grep -q __asan_init; then asan=1; fi
limited() {
    kb=$1
    shift
    if [ $asan = 1 ]; then
        ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}allocator_may_return_null=1:max_allocation_size_mb=600" "$@"
    else
        (ulimit -v "$kb" && exec "$@")
    fi
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

# ---- 3. out of memory inside LLVM
# limited_run KB CMD...: CMD under ulimit -v KB; rc, err as for one run.  Every run
# must exit 0, or 3 with "out of host memory", or (only when the loader cannot map
# kiln's libraries, before kiln runs at all) 127; never a signal.
sweep_bad=0
limited_run() {
    kb=$1
    shift
    (ulimit -v "$kb" && exec "$@") >out 2>err
    rc=$?
    if [ $rc = 0 ] || [ $rc = 127 ]; then return; fi
    if [ $rc = 3 ] && grep -q "out of host memory" err; then return; fi
    bad "ulimit -v $kb: $* exits with status $rc$([ $rc -gt 128 ] && echo " (signal $((rc - 128)))")," \
        "expected 0 or 3 and 'out of host memory'"
    sweep_bad=1
}
if [ $asan = 1 ]; then
    echo "skipped: out of memory inside LLVM (an ASan build needs terabytes of address space)"
elif ! "$K" run m.kiln --dim B=1 --device=cpu >/dev/null 2>&1; then
    echo "skipped: out of memory inside LLVM (no cpu device in this build)"
else
    $PY "$REPO/tests/viz/gen_resnet.py" resnet.kiln --width 16 --size 32
    model() { limited_run "$1" env KILN_CACHE=off "$K" run resnet.kiln --device=cpu --dim N=1; }
    # the least limit (KB, to 256 KB) at which kiln starts, then the least (to 512 KB)
    # at which the model compiles and runs (each bisection keeps lo failing, hi
    # working); then 10 limits from the first up to the second
    lo=0 hi=8000000
    while [ $((hi - lo)) -gt 256 ]; do
        mid=$(((lo + hi) / 2))
        limited_run $mid "$K" --version
        if [ $rc = 0 ]; then hi=$mid; else lo=$mid; fi
    done
    start=$hi
    lo=$start hi=$((start + 65536))
    model $hi
    while [ $rc != 0 ] && [ $hi -lt $((start + 2000000)) ]; do
        lo=$hi hi=$((hi * 2 - start))
        model $hi
    done
    if [ $rc != 0 ]; then
        bad "the model does not run under ulimit -v $hi"
    else
        while [ $((hi - lo)) -gt 512 ]; do
            mid=$(((lo + hi) / 2))
            model $mid
            if [ $rc = 0 ]; then hi=$mid; else lo=$mid; fi
        done
        in_llvm=0 in_kiln=0 ran=0
        i=0
        while [ $i -lt 10 ]; do
            kb=$((start + (hi - start) * i / 10))
            model $kb
            case $rc in
            0) ran=$((ran + 1)) ;;
            3) if grep -q "out of host memory (in LLVM" err; then in_llvm=$((in_llvm + 1)); else in_kiln=$((in_kiln + 1)); fi ;;
            esac
            i=$((i + 1))
        done
        echo "ulimit -v $start..$hi KB: $in_llvm runs out of memory inside LLVM, $in_kiln in kiln, $ran ran"
        if [ $sweep_bad = 0 ]; then ok; fi
        if [ $in_llvm -gt 0 ]; then ok; else bad "no run ran out of memory inside LLVM"; fi
    fi
fi

summary oom
