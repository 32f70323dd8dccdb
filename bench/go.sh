#!/bin/sh
# bench/go.sh [RUNS] - a run from Go (go/: Model.Run through cgo) against the
# same graph timed by the command line (`kiln bench`, which calls the
# executor directly), in the same run on the same cores; prints ONE table
# (see docs/performance.md, "Go").  RUNS (default 2000) runs per case.
#
# Cases: `twice` (x * 2 of 4 elements: what a call costs beyond its kernels),
# examples/mlp.kiln at B=1 and examples/lenet.kiln at N=1, weights bound
# from the NumPy-made files of tests/gen/go_data.py (constants on both sides:
# the CPU packs them once).  Both sides report the median run; Go's mean is
# shown too, since on this shared machine means follow the neighbours' load.
# Needs build/kiln, build/libkiln.a and go/cgo_flags.go (made here with
# `make` when missing) and the go command.
set -eu
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
runs=${1:-2000}
out=build/bench-go
mkdir -p "$out"
if [ ! -x build/kiln ] || [ ! -f build/libkiln.a ] || [ ! -f go/cgo_flags.go ]; then
    echo "[bench] make build/kiln build/libkiln.a go/cgo_flags.go" >&2
    make -s build/kiln build/libkiln.a go/cgo_flags.go >&2
fi
/usr/bin/python3 tests/gen/go_data.py "$out/data" >/dev/null
printf 'graph twice(x: f32[4]) -> f32[4] {\n    return x * 2.0\n}\n' >"$out/twice.kiln"

cli_ms() { # FILE ARGS...: kiln bench's median run (ms)
    build/kiln bench "$@" --device=cpu --runs="$runs" --json |
        sed -n 's/.*"run_ms": \([0-9.e+-]*\).*/\1/p'
}
cli_twice=$(cli_ms "$out/twice.kiln")
cli_mlp=$(cli_ms examples/mlp.kiln --dim B=1 --weights "$out/data/mlp.safetensors")
cli_lenet=$(cli_ms examples/lenet.kiln --dim N=1 --weights "$out/data/lenet.safetensors")

(cd go && GOCACHE="${GOCACHE:-$root/build/gocache}" go test -count=1 -run '^$' \
    -bench '^Benchmark(RunTiny|MLP|LeNet)$' -benchtime "${runs}x" .) >"$out/go-bench.txt"

echo "Go Model.Run against kiln bench (cpu, $runs runs each; $(date -u +%Y-%m-%d), $(lscpu | sed -n 's/^Model name: *//p'), $(nproc) cores)"
awk -v twice="$cli_twice" -v mlp="$cli_mlp" -v lenet="$cli_lenet" '
    BEGIN {
        cli["RunTiny"] = twice; cli["MLP"] = mlp; cli["LeNet"] = lenet
        name["RunTiny"] = "twice f32[4]"; name["MLP"] = "mlp B=1"; name["LeNet"] = "lenet N=1"
        printf "%-14s %14s %14s %16s %8s\n", "case", "Go median us", "Go mean us", "kiln bench us", "ratio"
    }
    /^Benchmark/ {
        b = $1; sub(/^Benchmark/, "", b); sub(/-[0-9]+$/, "", b)
        mean = ""; med = ""
        for (i = 2; i < NF; i++) {
            if ($(i + 1) == "ns/op") mean = $i / 1e3
            if ($(i + 1) == "median-ms") med = $i * 1e3
        }
        printf "%-14s %14.2f %14.2f %16.2f %7.2fx\n", name[b], med, mean, cli[b] * 1e3, med / (cli[b] * 1e3)
    }' "$out/go-bench.txt"
