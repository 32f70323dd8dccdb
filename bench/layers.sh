#!/usr/bin/env bash
# Per-layer times of kiln against onnxruntime's profiler, on bench/models.py's models (see
# bench/layers.py).  Usage:
#
#   bench/layers.sh                                   # ResNet-18 and -50, batch 1 and 8
#   bench/layers.sh --models resnet50 --batches 1 --threads 1 --rounds 3
#
# Same set-up and environment as bench/models.sh (build/bench-venv, BENCH_THREADS, nice).
set -euo pipefail

. "$(dirname "$0")/lib.sh"
bench_setup
export KILN_THREADS="$threads" OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads"
bench_niced "$venv/bin/python" bench/layers.py --threads "$threads" "$@"
