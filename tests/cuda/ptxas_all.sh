#!/bin/sh
# ptxas_all.sh - every graph of examples/*.kiln and tests/ops/*.kiln through
# `kiln emit --emit=ptx` for sm_80 and sm_90, and each PTX through ptxas for
# the same arch: the generated CUDA C must compile (NVRTC) and assemble
# (ptxas) for both, with no GPU needed.  Symbolic dimensions are bound to 4
# as kiln asks for them.
#
#   sh tests/cuda/ptxas_all.sh KILN_BINARY [FILE.kiln ...]
#
# Prints one line per failure and "ptxas: N passed, N failed" last (one
# check per graph and arch).  Without ptxas or NVRTC it says so and passes
# nothing (0 passed, 0 failed).  Runs two checks at once (PTXAS_JOBS=N).
KILN=${1:?usage: ptxas_all.sh KILN_BINARY [FILE.kiln ...]}
shift

# --one FILE GRAPH SM: one check; prints "PASS ..." or "FAIL ..." lines.
if [ "$KILN" = "--one" ]; then
    file=$1 graph=$2 sm=$3 kiln=$PTXAS_ALL_KILN ptxas=$PTXAS_ALL_PTXAS
    tmp=$(mktemp -d "${TMPDIR:-/tmp}/kiln-ptxas-XXXXXX") || exit 1
    dims=""
    tries=0
    while :; do
        # shellcheck disable=SC2086
        if "$kiln" emit "$file" -g "$graph" --emit=ptx --arch="sm_$sm" $dims -o "$tmp/k.ptx" 2>"$tmp/err"; then
            break
        fi
        need=$(sed -n 's/.*pass --dim \([A-Za-z_][A-Za-z0-9_]*\)=SIZE.*/\1/p' "$tmp/err" | head -n 1)
        tries=$((tries + 1))
        if [ -z "$need" ] || [ $tries -gt 8 ]; then
            echo "FAIL $file -g $graph sm_$sm: kiln emit --emit=ptx $dims:"
            sed 's/^/    /' "$tmp/err" | head -n 30
            rm -rf "$tmp"
            exit 0
        fi
        dims="$dims --dim $need=4"
    done
    if "$ptxas" -arch="sm_$sm" "$tmp/k.ptx" -o "$tmp/k.cubin" >"$tmp/err" 2>&1; then
        echo "PASS $file -g $graph sm_$sm"
    else
        echo "FAIL $file -g $graph sm_$sm: ptxas -arch=sm_$sm refused the PTX:"
        sed 's/^/    /' "$tmp/err" | head -n 30
    fi
    rm -rf "$tmp"
    exit 0
fi

if [ ! -x "$KILN" ]; then
    echo "ptxas_all: no kiln binary at $KILN (build it with make)" >&2
    echo "ptxas: 0 passed, 1 failed"
    exit 1
fi
# ptxas of the toolkit kiln uses (kiln env: the one toolkit search)
PTXAS=$("$KILN" env KILN_PTXAS)
problem=$("$KILN" env KILN_NVRTC_PROBLEM)
if [ -n "$problem" ]; then
    echo "ptxas_all: skipped: $problem"
    echo "ptxas: 0 passed, 0 failed"
    exit 0
fi
if [ -z "$PTXAS" ] || [ ! -x "$PTXAS" ]; then
    echo "ptxas_all: skipped: no bin/ptxas in the CUDA toolkit kiln found ($("$KILN" env KILN_CUDA_ROOT))"
    echo "ptxas: 0 passed, 0 failed"
    exit 0
fi

[ $# -gt 0 ] || set -- examples/*.kiln tests/ops/*.kiln
jobs=$(mktemp "${TMPDIR:-/tmp}/kiln-ptxas-jobs-XXXXXX")
out=$(mktemp "${TMPDIR:-/tmp}/kiln-ptxas-out-XXXXXX")
for f in "$@"; do
    for g in $(sed -n 's/^graph[ \t]*\([A-Za-z_][A-Za-z0-9_]*\).*/\1/p' "$f"); do
        for sm in 80 90; do
            echo "$f $g $sm" >>"$jobs"
        done
    done
done
PTXAS_ALL_KILN=$KILN PTXAS_ALL_PTXAS=$PTXAS
export PTXAS_ALL_KILN PTXAS_ALL_PTXAS
xargs -P "${PTXAS_JOBS:-2}" -L 1 sh "$0" --one <"$jobs" >"$out" 2>&1 || true
passed=$(grep -c '^PASS' "$out")
failed=$(grep -c '^FAIL' "$out")
total=$(wc -l <"$jobs")
missing=$((total - passed - failed))
grep -v '^PASS' "$out"
if [ "$missing" -gt 0 ]; then
    echo "FAIL: $missing checks gave no answer"
    failed=$((failed + missing))
fi
rm -f "$jobs" "$out"
echo "ptxas: $passed passed, $failed failed"
[ "$failed" = 0 ]
