#!/usr/bin/env bash
# What a second thread gains kiln and onnxruntime on one model, by wall time (see
# bench/scaling.py).  Usage:
#
#   bench/scaling.sh                                  # ResNet-18, batch 1
#   bench/scaling.sh --model build/bench-models/mobilenetv2.onnx --rounds 20 --runs 100
#
# Same set-up as bench/models.sh (build/bench-venv, nice); the .onnx files are the ones
# bench/models.sh writes to build/bench-models/.  The thread counts are the script's own.
set -euo pipefail

. "$(dirname "$0")/lib.sh"
bench_setup
bench_niced "$venv/bin/python" bench/scaling.py "$@"
