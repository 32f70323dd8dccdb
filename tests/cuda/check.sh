# tests/cuda/check.sh - sourced by the shell layers of tests/cuda/: counters and
# checks.  Needs $T (a scratch folder); each check's output goes to $T/out and
# $T/err, and a failure shows the first lines of $T/err.
pass=0
fail=0
ok() { pass=$((pass + 1)); }
bad() {
    fail=$((fail + 1))
    echo "FAIL: $*"
    [ -s "$T/err" ] && sed 's/^/  stderr| /' "$T/err" | head -n 12
}
# expect NAME RC PATTERN CMD...: CMD exits with RC and, unless PATTERN is
# empty, prints a line matching PATTERN (grep -E) on stderr.
expect() {
    name=$1 want=$2 pat=$3
    shift 3
    "$@" >"$T/out" 2>"$T/err"
    rc=$?
    if [ "$rc" != "$want" ]; then
        bad "$name: exit status $rc, expected $want"
    elif [ -n "$pat" ] && ! grep -qE -e "$pat" "$T/err"; then
        bad "$name: stderr lacks /$pat/"
    else
        ok
    fi
}
# summary LAYER: the last line, and the exit status.
summary() {
    echo "$1: $pass passed, $fail failed"
    [ "$fail" = 0 ]
}
