#!/bin/sh
# tests/cuda/standin.sh KILN - the cuda device and an AOT bundle as programs,
# on the checking stand-in driver (BUILD/standin/libcuda.so.1, see
# tests/standin/libcuda.c): what a user sees when the driver is older than
# NVRTC's PTX (exit 3 naming both versions), when a kernel faults (with
# KILN_CUDA_SYNC=1 the message names it), when the JIT refuses the module
# (its log in the message), when device memory runs out; kiln env and bench;
# the AOT bundle of mlp built with cc against the toolkit's stub libcuda and
# run on the stand-in, refusing an old driver by itself.  Every run must end
# without a violation of the driver's rules (the stand-in's report file).
# In-process checks of every graph and every injected failure are in
# tests/unit/test_cuda_standin.c.  Last line: "cuda-standin: N passed, N failed".
K=${1:-build/kiln}
case $K in /*) ;; *) K=$(pwd)/$K ;; esac
STANDIN=$(dirname "$K")/standin/libcuda.so.1
. "$(dirname "$0")/../lib.sh"
scratch standin
# on_standin SPEC CMD...: CMD on the stand-in configured with SPEC, its
# violations reported to $T/report.
on_standin() {
    spec=$1
    shift
    env KILN_STANDIN="report=$T/report${spec:+,$spec}" "$@"
}
if [ ! -f "$STANDIN" ]; then
    echo "FAIL: no stand-in driver at $STANDIN (make builds it)"
    echo "cuda-standin: 0 passed, 1 failed"
    exit 1
fi
if [ -n "$("$K" env KILN_NVRTC_PROBLEM)" ]; then
    echo "skip: $("$K" env KILN_NVRTC_PROBLEM)"
    echo "cuda-standin: 0 passed, 0 failed"
    exit 0
fi
export KILN_LIBCUDA="$STANDIN"
MLP="run examples/mlp.kiln --device=cuda --dim B=3"

expect "a good run" 0 "" on_standin "" "$K" $MLP
# --remarks on the cuda device: the fusion scheduler's remarks, as on every device
# that runs kernels (tests/cli/run.sh checks the others)
expect "--remarks on cuda" 0 "^remark: kernel k0_matmul_add_relu" on_standin "" "$K" $MLP --remarks
expect "bench" 0 "" on_standin "" "$K" bench examples/transformer_block.kiln --device=cuda --dim B=2 --dim T=8 --runs=3
expect "kiln env names the stand-in" 0 "" on_standin "" "$K" env
grep -q "KILN_GPU='kiln checking stand-in" "$T/out" && ok || bad "kiln env: KILN_GPU is the stand-in"
expect "a CUDA 12.8 driver under NVRTC 13" 3 "driver supports CUDA 12\.8, older than the CUDA 13\.[0-9] of NVRTC.*R580" \
    on_standin "driver=12080" "$K" $MLP
expect "a fault" 3 "CUDA_ERROR_ILLEGAL_ADDRESS.*KILN_CUDA_SYNC=1" on_standin "fault=2" "$K" $MLP
expect "a fault, KILN_CUDA_SYNC=1" 3 "kernel k1_[a-z_]* \(launch 2 of 3.*synchronised after it.*ILLEGAL_ADDRESS" \
    on_standin "fault=2" env KILN_CUDA_SYNC=1 "$K" run examples/mlp.kiln --device=cuda --dim B=3
expect "the JIT refusing the module" 3 "CUDA_ERROR_INVALID_PTX.*|the driver's JIT compiler said" on_standin "fail_load=1" "$K" $MLP
grep -q "injected by the libcuda stand-in" "$T/err" && ok || bad "the JIT's log is in the message"
expect "out of device memory" 3 "CUDA_ERROR_OUT_OF_MEMORY" on_standin "oom=1" "$K" $MLP
expect "a GPU older than NVRTC supports" 3 "cannot write PTX for this GPU, sm_70" on_standin "sm=70" "$K" $MLP
expect "SASS" 0 "SASS for sm_90" on_standin "" env KILN_CUDA_SASS=1 "$K" run examples/mlp.kiln --device=cuda --dim B=3 -v

# the AOT bundle of mlp: built with cc, run on the stand-in as on a driver
aot=$T/aot
CUDA_INCLUDE=$("$K" env KILN_CUDA_INCLUDE)
CUDA_LIB=$("$K" env KILN_CUDA_LIB)
if "$K" aot examples/mlp.kiln --target=cuda --dim B=4 -o "$aot" >"$T/err" 2>&1 &&
    (cd "$aot" && ${CC:-cc} -std=c11 -O1 -DKILN_MAIN mlp.c -I"$CUDA_INCLUDE" -L"$CUDA_LIB/stubs" -lcuda -o mlp) \
        >"$T/err" 2>&1; then
    ok
    for f in x:12544 w1:802816 b1:1024 w2:10240 b2:40; do
        head -c "${f#*:}" /dev/zero >"$aot/${f%%:*}.bin"
    done
    args="x.bin w1.bin b1.bin w2.bin b2.bin out0.bin"
    lib=$(dirname "$STANDIN")
    # shellcheck disable=SC2086
    expect "the AOT bundle on the stand-in" 0 "" on_standin "" env -C "$aot" LD_LIBRARY_PATH="$lib" ./mlp $args
    # shellcheck disable=SC2086
    expect "the AOT bundle refuses a CUDA 12.8 driver" 1 \
        "needs a driver for CUDA 13\.[0-9] or newer; this one supports CUDA 12\.8" \
        on_standin "driver=12080" env -C "$aot" LD_LIBRARY_PATH="$lib" ./mlp $args
    grep -q "^#define mlp_MIN_CUDA_DRIVER 1[0-9]*" "$aot/mlp.h" && grep -q "Minimum driver" "$aot/README" && ok ||
        bad "the bundle records its minimum driver (mlp.h, README)"
else
    bad "the AOT bundle of mlp does not build"
fi

if [ -s "$T/report" ]; then
    bad "the stand-in saw violations:"
    sed 's/^/  | /' "$T/report" | head -n 20
else
    ok
fi
summary cuda-standin
