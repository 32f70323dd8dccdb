#!/bin/sh
# tests/go/run.sh [BUILD_DIR] - the Go side of kiln: `go test -race` of the
# package go/ (against NumPy, many goroutines on one model, every error
# path, use after Close, no leak, AOT bundles called from Go) and of the
# service examples/go/classify (a few hundred concurrent requests on
# 127.0.0.1 against a single-threaded run), under GODEBUG=cgocheck=1; the
# tests that hand slices to C again under cgocheck=2; and gofmt over both.
# Go's build cache lives in BUILD_DIR/gocache, so a rerun only relinks.
# Last line: "go: N passed, N failed" (one per test and subtest that Go
# reports, plus the gofmt check).
BUILD=${1:-build}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
case $BUILD in /*) ;; *) BUILD=$ROOT/$BUILD ;; esac
pass=0
fail=0

# The package links the library that go/cgo_flags.go names (the default
# build's): another build folder (make asan) has nothing of its own to test.
if ! grep -q "/$(basename "$BUILD")/libkiln.a" "$ROOT/go/cgo_flags.go" 2>/dev/null; then
    echo "go/cgo_flags.go does not link $BUILD/libkiln.a (run make there): skipped"
    echo "go: 0 passed, 0 failed"
    exit 0
fi
if ! command -v go >/dev/null; then
    echo "FAIL: no go command (tools/install-deps.sh installs golang-go)"
    echo "go: 0 passed, 1 failed"
    exit 1
fi

export GOCACHE="$BUILD/gocache" GOPATH="$BUILD/gopath" GOPROXY=off GOFLAGS=-mod=mod GODEBUG=cgocheck=1
export CGO_ENABLED=1
LOG=$BUILD/logs/go-test.log
mkdir -p "$BUILD/logs"
: >"$LOG"

for dir in go examples/go/classify; do
    if (cd "$ROOT/$dir" && go test -race -count=1 -v ./... >>"$LOG" 2>&1); then :; else
        echo "FAIL: go test in $dir (exit $?)"
    fi
done
# the stricter pointer check (Go pointers stored into C memory), on the tests
# that hand slices to C by both paths of go/glue.h
if (cd "$ROOT/go" && GODEBUG=cgocheck=2 go test -count=1 -v -run 'ManyInputs|DTypes|ConcurrentRuns|Alias|BindConverts' . >>"$LOG" 2>&1); then :; else
    echo "FAIL: go test under GODEBUG=cgocheck=2 (exit $?)"
fi
p=$(grep -c -E '^ *--- PASS' "$LOG")
f=$(grep -c -E '^ *--- FAIL|^FAIL	|^panic:|build failed|\[setup failed\]' "$LOG")
grep -E '^ *--- FAIL|^FAIL	|^panic:|build failed|\[setup failed\]' "$LOG" | sed 's/^/FAIL: /' | head -n 20
grep -E -A12 '^ *--- FAIL' "$LOG" | head -n 60
grep -E '^(ok|FAIL)[[:space:]]' "$LOG"
pass=$((pass + p))
fail=$((fail + f))

unformatted=$(cd "$ROOT" && gofmt -l go examples/go)
if [ -z "$unformatted" ]; then pass=$((pass + 1)); else
    fail=$((fail + 1))
    echo "FAIL: gofmt -l: $unformatted"
fi

echo "go: $pass passed, $fail failed"
[ "$fail" = 0 ]
