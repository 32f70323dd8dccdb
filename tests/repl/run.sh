#!/bin/sh
# tests/repl/run.sh KILN - tests of `kiln repl`.
#
# 1. Scripted sessions through a pipe: each tests/repl/cases/*.repl holds the
#    lines to type (lines starting with '##' describe the case and are not
#    typed), then the expected "=== stdout", "=== stderr" and "=== status N".
#    They run in a scratch directory holding graphs.kiln, bad.kiln and a.npy.
# 2. Checks that compare with NumPy (:save, rand, randn, load) or that
#    cannot be exact text (:time).
# 3. A pseudo-terminal session (pty_test.py): prompts, history, Ctrl-C, Ctrl-D.
# The last line is "repl: N passed, N failed"; the status is 1 on a failure.
KILN=${1:-build/kiln}
case $KILN in /*) ;; *) KILN=$(pwd)/$KILN ;; esac
PY=/usr/bin/python3
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
WORK=$TMP/work
pass=0
fail=0

ok() {
    pass=$((pass + 1))
    echo "ok   $1"
}

bad() {
    fail=$((fail + 1))
    echo "FAIL $1"
}

# Runs the REPL in $WORK on the text of file $1; output in $TMP/out, $TMP/err, $TMP/rc.
session() {
    (cd "$WORK" && "$KILN" repl --device=ref <"$1" >"$TMP/out" 2>"$TMP/err")
    echo $? >"$TMP/rc"
}

# Runs the REPL on the lines given as arguments.
session_lines() {
    printf '%s\n' "$@" >"$TMP/lines"
    session "$TMP/lines"
}

# check NAME COMMAND...: counts the result of a test command.
check() {
    name=$1
    shift
    if "$@"; then ok "$name"; else bad "$name"; fi
}

mkdir -p "$WORK"
cp "$HERE/graphs.kiln" "$HERE/bad.kiln" "$WORK/"
(cd "$WORK" && $PY -c 'import numpy as np; np.save("a.npy", np.arange(6, dtype=np.float32).reshape(2, 3))')

# ---- 1. scripted sessions --------------------------------------------------
for case in "$HERE"/cases/*.repl; do
    name=$(basename "$case" .repl)
    awk '/^=== /{exit} !/^##/' "$case" >"$TMP/in"
    awk '/^=== stdout$/{on=1; next} /^=== /{on=0} on' "$case" >"$TMP/want_out"
    awk '/^=== stderr$/{on=1; next} /^=== /{on=0} on' "$case" >"$TMP/want_err"
    want_rc=$(sed -n 's/^=== status \([0-9]*\)$/\1/p' "$case")
    session "$TMP/in"
    failed=""
    cmp -s "$TMP/out" "$TMP/want_out" || failed="$failed stdout"
    cmp -s "$TMP/err" "$TMP/want_err" || failed="$failed stderr"
    [ "$(cat "$TMP/rc")" = "$want_rc" ] || failed="$failed status($(cat "$TMP/rc"), want $want_rc)"
    if [ -z "$failed" ]; then
        ok "session $name"
    else
        bad "session $name:$failed"
        diff "$TMP/want_out" "$TMP/out" | sed 's/^/    stdout /' | head -n 30
        diff "$TMP/want_err" "$TMP/err" | sed 's/^/    stderr /' | head -n 30
    fi
done

# ---- 2. checks beyond exact text --------------------------------------------
session_lines 'x = reshape(arange(6, f32), [2, 3]) * 0.5' 'i = argmax(x, axis=1)' \
    ':save x saved_x.npy' ':save i saved_i.npy'
check ":save writes files NumPy reads" $PY -c '
import numpy as np, sys
x = np.load(sys.argv[1]); i = np.load(sys.argv[2])
assert x.dtype == np.float32 and x.shape == (2, 3), (x.dtype, x.shape)
assert (x == np.arange(6, dtype=np.float32).reshape(2, 3) * 0.5).all(), x
assert i.dtype == np.int64 and (i == [2, 2]).all(), i
' "$WORK/saved_x.npy" "$WORK/saved_i.npy"

session_lines 'u = rand([100000], seed=7)' 'n = randn([100, 1000], seed=7)' 'h = rand([4], f16)' \
    ':save u u.npy' ':save n n.npy' ':save h h.npy'
check "rand is uniform in [0, 1), randn is standard normal" $PY -c '
import numpy as np, sys
u, n, h = (np.load(p) for p in sys.argv[1:])
assert u.dtype == np.float32 and u.min() >= 0 and u.max() < 1 and abs(u.mean() - 0.5) < 0.01, (u.min(), u.max(), u.mean())
assert n.shape == (100, 1000) and abs(n.mean()) < 0.02 and abs(n.std() - 1) < 0.02, (n.mean(), n.std())
assert h.dtype == np.float16 and h.shape == (4,)
' "$WORK/u.npy" "$WORK/n.npy" "$WORK/h.npy"

session_lines 'a = rand([3], seed=5)' 'b = rand([3], seed=5)' 'c = rand([3])' 'd = rand([3])' \
    'sum(cast(a == b, i32))' 'sum(cast(c == d, i32))'
check "seed= repeats a draw; unseeded draws differ" test "$(cat "$TMP/out")" = "$(printf '3\ni32\n0\ni32')"

session_lines 'w = load("a.npy") @ ones([3, 1])' 'w'
check "load reads a .npy file" test "$(cat "$TMP/out")" = "$(printf '[[ 3.]\n [12.]]\nf32[2, 1]')"

session_lines 'x = randn([8, 8])' ':time softmax(x @ transpose(x))' ':time softmax(x @ transpose(x))'
check ":time prints the compile time and the median run time" \
    grep -Eq '^compile [0-9.e+-]+ ms, run [0-9.e+-]+ ms \(median of [0-9]+ runs on ref\)$' "$TMP/out"
check ":time compiles once: the second is cached" \
    grep -Eq '^compile [0-9.e+-]+ ms \(cached\), run ' "$TMP/out"

for stage in opt kernels llvm cuda ptx dot; do
    session_lines 'x = ones([2, 2])' ":emit $stage x * 2.0" '1 + 1'
    check ":emit $stage prints the stage or says why not, and the session goes on" \
        sh -c "tail -n 2 '$TMP/out' | tr '\n' ' ' | grep -q '^2 i64 \$' && ! grep -q Sanitizer '$TMP/err'"
done

session_lines ':help'
check ":help lists every command" sh -c "for c in type emit time device precision save load vars reset quit; do
    grep -q \"^  :\$c\" '$TMP/out' || exit 1; done"

session_lines 'x = ones([2])' 'x' 'y = x + nosuch' 'x'
check "exit status 1 after a failing line" test "$(cat "$TMP/rc")" = 1
session_lines 'x = ones([2])' 'x'
check "exit status 0 when every line succeeds" test "$(cat "$TMP/rc")" = 0
session /dev/null
check "empty input: no output, status 0" test "$(cat "$TMP/rc")$(cat "$TMP/out")" = 0

"$KILN" repl --device=warp </dev/null >"$TMP/out" 2>"$TMP/err"
rc=$?
check "an unknown --device is a usage error" sh -c "test $rc = 2 && grep -q \"unknown device 'warp'\" '$TMP/err'"

# ---- 3. the pseudo-terminal -------------------------------------------------
$PY "$HERE/pty_test.py" "$KILN" >"$TMP/pty.log" 2>&1
cat "$TMP/pty.log"
pass=$((pass + $(grep -c '^ok ' "$TMP/pty.log")))
fail=$((fail + $(grep -c '^FAIL' "$TMP/pty.log")))
grep -Eq '^pty: done$' "$TMP/pty.log" || bad "pty_test.py did not finish"

echo "repl: $pass passed, $fail failed"
[ "$fail" = 0 ]
