# bench/lib.sh: the set-up the bench/*.sh scripts share (sourced, bash).
#
#   . "$(dirname "$0")/lib.sh"
#   bench_setup            # cd to the tree; build/kiln and build/bench-venv if missing
#   bench_niced CMD ARGS   # run CMD at BENCH_NICE (default -20, with its autogroup) if allowed
#
# After bench_setup: $root (the tree), $venv (build/bench-venv), $threads (BENCH_THREADS,
# default 2) and say (a line on stderr).  Nothing here installs anything but the
# virtualenv's requirements (bench/requirements.txt: NumPy, onnx, onnxruntime, ...).

say() { echo "[bench] $*" >&2; }

bench_setup() {
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
    cd "$root"
    venv="$root/build/bench-venv"
    threads="${BENCH_THREADS:-2}"
    if [ ! -x build/kiln ]; then
        say "building kiln (make build/kiln)"
        make -s build/kiln >&2
    fi
    if [ ! -x "$venv/bin/python" ]; then
        say "creating $venv"
        python3 -m venv "$venv"
    fi
    local stamp="$venv/.requirements-installed"
    if [ ! -f "$stamp" ] || [ bench/requirements.txt -nt "$stamp" ]; then
        say "pip install -r bench/requirements.txt"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check -r bench/requirements.txt >&2
        touch "$stamp"
    fi
}

# The machine is shared: as root (or for a positive BENCH_NICE) the run goes at that nice
# level, and so does this shell's autogroup (the scheduler weighs autogroups, not processes,
# so nice alone does not keep a neighbour's make -j off our cores); the autogroup's level is
# put back on exit.
bench_niced() {
    local level="${BENCH_NICE:--20}" ag="/proc/$$/autogroup" old
    if [ "$level" = 0 ] || { [ "$(id -u)" != 0 ] && [ "$level" -le 0 ]; }; then
        "$@"
        return
    fi
    if [ -w "$ag" ]; then
        old="$(sed -n 's/.* nice //p' "$ag" 2>/dev/null || true)"
        if [ -n "$old" ] && echo "$level" 2>/dev/null >"$ag"; then
            # shellcheck disable=SC2064
            trap "echo '$old' >'$ag' 2>/dev/null || true" EXIT
        fi
    fi
    nice -n "$level" "$@"
}
