#!/usr/bin/env bash
# What an image costs at batch 1 and at batch 8, kiln and onnxruntime, by CPU time on one
# thread (see bench/batchcpu.py).  Usage:
#
#   bench/batchcpu.sh                                   # ResNet-50, batches 1 and 8, 5 rounds
#   bench/batchcpu.sh --model resnet18 --rounds 8
#
# Same set-up as bench/models.sh (build/bench-venv, nice); the model files are the ones
# bench/models.sh writes to build/bench-models/.
set -euo pipefail

. "$(dirname "$0")/lib.sh"
bench_setup
bench_niced "$venv/bin/python" bench/batchcpu.py "$@"
