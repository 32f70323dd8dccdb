#!/usr/bin/env bash
# Per-node times of kiln and of onnxruntime without its profiler (see bench/nodes.py).
# Usage:
#
#   bench/nodes.sh                                     # MobileNetV2 batch 1, 1 and 2 threads
#   bench/nodes.sh --model resnet18 --threads 2 --rounds 5
#
# Same set-up and environment as bench/models.sh (build/bench-venv, nice).
set -euo pipefail

. "$(dirname "$0")/lib.sh"
bench_setup
bench_niced "$venv/bin/python" bench/nodes.py "$@"
