# tests/lib.sh - the harness the shell test layers source: a scratch folder,
# the pass/fail counters, ok/bad, run/expect and the summary line.
#   . "$(dirname "$0")/../lib.sh"    (before any cd)
#   scratch NAME                     T = a new folder, removed when the shell exits
#   run CMD...                       stdout in $T/out, stderr in $T/err, status in $rc
#   expect NAME RC PATTERN CMD...    CMD exits with RC and, unless PATTERN is
#                                    empty, prints a line matching PATTERN
#                                    (grep -E, ignoring case) on stderr
#   ok / bad MESSAGE                 count a check; bad prints "FAIL: MESSAGE" and
#                                    the first lines of $SHOW (default $T/err)
#   every_graph_listed TABLE WHAT    each graph of each examples/*.kiln has a
#                                    line "EXAMPLE GRAPH ..." in TABLE (else a
#                                    failure: "no WHAT")
#   summary LAYER                    the last line "LAYER: N passed, N failed",
#                                    and the exit status
pass=0
fail=0

scratch() {
    T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-$1.XXXXXX") || exit 1
    trap 'rm -rf "$T"' EXIT INT TERM
}

ok() { pass=$((pass + 1)); }

bad() {
    fail=$((fail + 1))
    echo "FAIL: $*"
    show=${SHOW:-$T/err}
    if [ -s "$show" ]; then sed 's/^/  stderr| /' "$show" | cut -c 1-200 | head -n 20; fi
}

run() {
    "$@" >"$T/out" 2>"$T/err"
    rc=$?
}

expect() {
    name=$1 want=$2 pat=$3
    shift 3
    run "$@"
    if [ "$rc" != "$want" ]; then
        bad "$name: exit status $rc, expected $want ($*)"
    elif [ -n "$pat" ] && ! grep -qiE -e "$pat" "$T/err"; then
        bad "$name: stderr lacks /$pat/ ($*)"
    else
        ok
    fi
}

every_graph_listed() {
    for f in examples/*.kiln; do
        base=$(basename "$f" .kiln)
        for graph in $(sed -n 's/^graph \([A-Za-z_0-9]*\).*/\1/p' "$f"); do
            if printf '%s\n' "$1" | grep -q "^$base $graph "; then ok; else bad "$base/$graph: no $2"; fi
        done
    done
}

summary() {
    echo "$1: $pass passed, $fail failed"
    [ "$fail" = 0 ]
}
