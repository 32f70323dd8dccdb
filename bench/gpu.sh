#!/bin/sh
# bench/gpu.sh [ARGS...] - runs bench/gpu.py with the first Python that has a
# CUDA-enabled PyTorch (python3 on PATH, then /usr/bin/python3); without one
# it says so and exits 0.  ARGS go to bench/gpu.py (e.g. --only a,d --runs 50).
# Writes bench.json under $OUT when OUT is set.
ROOT=$(cd "$(dirname "$0")/.." && pwd)
for py in python3 /usr/bin/python3; do
    command -v "$py" >/dev/null 2>&1 || continue
    if "$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)' >/dev/null 2>&1; then
        if [ -n "${OUT:-}" ]; then
            exec "$py" "$ROOT/bench/gpu.py" --kiln "${KILN:-$ROOT/build/kiln}" --json "$OUT/bench.json" "$@"
        fi
        exec "$py" "$ROOT/bench/gpu.py" --kiln "${KILN:-$ROOT/build/kiln}" "$@"
    fi
done
# No CUDA PyTorch: let gpu.py explain what is missing (it exits 0).
exec /usr/bin/python3 "$ROOT/bench/gpu.py" --kiln "${KILN:-$ROOT/build/kiln}" "$@"
