#!/usr/bin/env bash
# Compile time of whole models, kiln cold and warm against onnxruntime's session
# creation (bench/compile.py; results in docs/performance.md, "Compile time (issue 11)").
#   bench/compile.sh                              # set up (first time: ~1 min), then run
#   bench/compile.sh --models minilm --rounds 5
# Set-up, idempotent: build/kiln (make) if missing; build/bench-venv with
# bench/requirements.txt (shared with bench/cpu.sh and bench/models.sh).  Threads:
# KILN_THREADS (default 2, BENCH_THREADS overrides), onnxruntime's intra-op threads the same.
set -euo pipefail
. "$(dirname "$0")/lib.sh"
bench_setup
export KILN_THREADS="$threads" OMP_NUM_THREADS="$threads"
exec "$venv/bin/python" bench/compile.py --threads "$threads" "$@"
