#!/usr/bin/env bash
# Compile time of whole models, kiln cold and warm against onnxruntime's session
# creation (bench/compile.py; results in docs/performance.md, "Compile time (issue 11)").
#   bench/compile.sh                              # set up (first time: ~1 min), then run
#   bench/compile.sh --models minilm --rounds 5
# Set-up, idempotent: build/kiln (make) if missing; build/bench-venv with
# bench/requirements.txt (shared with bench/cpu.sh and bench/models.sh).  Threads:
# KILN_THREADS (default 2, BENCH_THREADS overrides), onnxruntime's intra-op threads the same.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
cd "$root"
venv="$root/build/bench-venv"
[ -x build/kiln ] || make -s build/kiln >&2
if [ ! -x "$venv/bin/python" ]; then python3 -m venv "$venv"; fi
stamp="$venv/.requirements-installed"
if [ ! -f "$stamp" ] || [ bench/requirements.txt -nt "$stamp" ]; then
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r bench/requirements.txt >&2
    touch "$stamp"
fi
threads="${BENCH_THREADS:-2}"
export KILN_THREADS="$threads" OMP_NUM_THREADS="$threads"
exec "$venv/bin/python" bench/compile.py --threads "$threads" "$@"
