#!/usr/bin/env bash
# kiln's CPU benchmark against NumPy (OpenBLAS), onnxruntime, PyTorch and tinygrad on
# the same cores in the same run; prints ONE table (see docs/performance.md,
# "CPU benchmarks (issue 3)").  Usage:
#
#   bench/cpu.sh                 # set up (first time: ~1-2 min), then ~5-10 min of runs
#   bench/cpu.sh --cases a,d2    # some cases only; other options: bench/cpu.py --help
#
# Set-up, idempotent:
#   - build/kiln (make), if missing;
#   - build/bench-venv: `python3 -m venv`, `pip install -r bench/requirements.txt`
#     (NumPy with its bundled OpenBLAS, onnxruntime + onnx, tinygrad, threadpoolctl);
#   - PyTorch: the PyPI wheel drags ~3 GB of CUDA libraries in (torch 539 MB + nvidia-*),
#     and the CPU-only wheel index is not reachable here, so by default the bench uses
#     Debian's python3-torch (1.13) under /usr/bin/python3, with Debian's OpenBLAS
#     (libopenblas0-pthread) loaded through LD_LIBRARY_PATH; both are installed with
#     apt-get when missing and we are root.  The system's BLAS alternative
#     (libblas.so.3) is left as it was.  BENCH_TORCH=pypi installs torch from PyPI into
#     the virtualenv instead (large); BENCH_TORCH=none skips PyTorch ("n/a").
#
# Environment of the run: KILN_THREADS=2, OMP_NUM_THREADS=2, OPENBLAS_NUM_THREADS=2
# (override with BENCH_THREADS).  OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, which this
# machine may set for old OpenBLAS builds, are unset for the bench so that NumPy's current
# OpenBLAS picks its own kernel (recorded with threadpoolctl); they are handed back only
# to Debian's old OpenBLAS behind PyTorch.
#
# This machine is shared (builds, fuzzers and test suites of other people run beside the
# bench): as root the bench runs at nice -20 (BENCH_NICE=0 turns that off), so that the
# scheduler gives its threads the cores for the few minutes it takes.  With the kernel's
# autogroups on (each session competes as one group, whatever its processes' nice), the
# nice goes on this shell's autogroup too, and back to what it was when the bench ends.
set -euo pipefail

. "$(dirname "$0")/lib.sh"
bench_setup

# --- PyTorch -------------------------------------------------------------------------
case "${BENCH_TORCH:-debian}" in
pypi)
    if ! "$venv/bin/python" -c 'import torch' 2>/dev/null; then
        say "pip install torch (PyPI: pulls the CUDA libraries, ~3 GB)"
        "$venv/bin/python" -m pip install -q --disable-pip-version-check torch >&2
    fi
    ;;
none) ;;
*)
    have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }
    need=""
    /usr/bin/python3 -c 'import torch' 2>/dev/null || need="$need python3-torch"
    have_pkg libopenblas0-pthread || need="$need libopenblas0-pthread"
    if [ -n "$need" ]; then
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
            say "apt-get install$need (Debian's PyTorch 1.13 and OpenBLAS)"
            # installing OpenBLAS switches the system's libblas.so.3 / liblapack.so.3
            # alternatives to it; put back whatever was chosen before
            saved_alt=""
            for alt in libblas.so.3-x86_64-linux-gnu liblapack.so.3-x86_64-linux-gnu; do
                cur="$(readlink "/etc/alternatives/$alt" 2>/dev/null || true)"
                [ -n "$cur" ] && saved_alt="$saved_alt $alt=$cur"
            done
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq >/dev/null 2>&1 || true
            # shellcheck disable=SC2086
            apt-get install -y -qq $need >/dev/null || say "apt-get install failed: PyTorch will be n/a"
            for pair in $saved_alt; do
                alt="${pair%%=*}" path="${pair#*=}"
                if [ "$(readlink "/etc/alternatives/$alt")" != "$path" ]; then
                    update-alternatives --quiet --set "$alt" "$path" || true
                fi
            done
        else
            say "PyTorch will be n/a: needs 'apt-get install$need' (as root)"
        fi
    fi
    ;;
esac

# --- the run -------------------------------------------------------------------------
export KILN_THREADS="$threads" OMP_NUM_THREADS="$threads" OPENBLAS_NUM_THREADS="$threads"
export NUM_CPU_THREADS="$threads" DEV="${DEV:-CPU}"  # tinygrad
export BENCH_VENV="$venv"
[ -n "${OPENBLAS_CORETYPE:-}" ] && export BENCH_SAVED_OPENBLAS_CORETYPE="$OPENBLAS_CORETYPE"
[ -n "${OPENBLAS_L2_SIZE:-}" ] && export BENCH_SAVED_OPENBLAS_L2_SIZE="$OPENBLAS_L2_SIZE"
BENCH_NICE="${BENCH_NICE:--20}" bench_niced \
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE "$venv/bin/python" bench/cpu.py --threads "$threads" "$@"
