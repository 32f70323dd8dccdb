#!/usr/bin/env bash
# kiln against onnxruntime (and PyTorch where installed) on whole models: ResNet-18,
# ResNet-50, MobileNetV2 and a MiniLM-L6 encoder at batch 1 and 8, same machine, same
# thread count, one run; prints the table and ResNet-50's per-layer table (see
# bench/models.py and docs/performance.md, "Models (issue 10)").  Usage:
#
#   bench/models.sh                          # set up (first time: ~1 min), then the runs
#   bench/models.sh --models resnet50 --batches 1 --rounds 5
#
# Set-up, idempotent: build/kiln (make) if missing; build/bench-venv with
# bench/requirements.txt (NumPy, onnx, onnxruntime: shared with bench/cpu.sh).
# PyTorch: used when /usr/bin/python3 can import torch (Debian's python3-torch); this
# script installs nothing for it (BENCH_TORCH_PYTHON=... names another interpreter,
# BENCH_TORCH_PYTHON= turns it off).
#
# Environment of the run: KILN_THREADS, OMP_NUM_THREADS, OPENBLAS_NUM_THREADS = 2
# (BENCH_THREADS overrides), onnxruntime intra_op_num_threads and torch.set_num_threads
# the same.  As root the run goes at nice -20 with its autogroup too (BENCH_NICE=0: off),
# as bench/cpu.sh does: the machine is shared.
set -euo pipefail

. "$(dirname "$0")/lib.sh"
bench_setup
if [ -z "${BENCH_TORCH_PYTHON+set}" ]; then
    BENCH_TORCH_PYTHON=""
    /usr/bin/python3 -c 'import torch' 2>/dev/null && BENCH_TORCH_PYTHON=/usr/bin/python3
fi
export BENCH_TORCH_PYTHON
[ -z "$BENCH_TORCH_PYTHON" ] && say "PyTorch: not installed (Debian's python3-torch), left out"

export KILN_THREADS="$threads" OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads"
bench_niced env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$venv/bin/python" bench/models.py --threads "$threads" "$@"
