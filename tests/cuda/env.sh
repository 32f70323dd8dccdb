#!/bin/sh
# tests/cuda/env.sh KILN - where kiln finds CUDA (runtime/cuda_toolkit.c) as the
# command line shows it: `kiln env`; NVRTC loaded by full path still compiles
# (f16 too) when the toolkit's lib folder is not on the loader path (ld.so
# --inhibit-cache ignores /etc/ld.so.cache); a CUDA_HOME without NVRTC, a
# toolkit without its builtins library, one without headers and an
# architecture NVRTC does not list are refused with exit 3 and a message
# naming what is missing.  Needs no GPU; without NVRTC it says so and checks
# only the messages.  Last line: "cuda-env: N passed, N failed".
K=${1:-build/kiln}
case $K in /*) ;; *) K=$(pwd)/$K ;; esac
. "$(dirname "$0")/../lib.sh"
scratch cuda-env
export KILN_CACHE=off # every compile below must really run NVRTC

# kiln env: shell assignments, one value on request, an unknown name refused
if "$K" env >"$T/env" 2>"$T/err" && grep -q "^KILN_CUDA_ROOT='" "$T/env" && grep -q "^KILN_GPU_PROBLEM='" "$T/env"; then
    ok
else
    bad "kiln env lists KILN_CUDA_ROOT and KILN_GPU_PROBLEM"
fi
(eval "$(cat "$T/env")" && [ "$("$K" env KILN_NVRTC)" = "$KILN_NVRTC" ]) && ok || bad "kiln env NAME prints the value"
expect "kiln env with an unknown name" 2 "knows no" "$K" env KILN_NO_SUCH
NVRTC=$("$K" env KILN_NVRTC)
BUILTINS=$("$K" env KILN_NVRTC_BUILTINS)

mm=tests/ops/matmul.kiln
expect "CUDA_HOME without NVRTC" 3 "CUDA_HOME=$T/none holds no NVRTC" env CUDA_HOME="$T/none" "$K" emit $mm -g mm_2d --emit=ptx
if [ -z "$NVRTC" ] || [ -z "$BUILTINS" ]; then
    echo "skip: no complete CUDA toolkit here ($("$K" env KILN_NVRTC_PROBLEM))"
    summary cuda-env
    exit
fi

# NVRTC's folder not on the loader path: the toolkit is still found and its
# builtins loaded by full path; f16 needs the toolkit's headers too
LDSO=""
for l in /lib64/ld-linux-x86-64.so.2 /lib/ld-linux-aarch64.so.1; do [ -x "$l" ] && LDSO=$l; done
if [ -n "$LDSO" ] && "$LDSO" --inhibit-cache "$K" --version >/dev/null 2>&1; then
    for g in mm_2d mm_f16 mm_bf16; do
        if "$LDSO" --inhibit-cache "$K" emit $mm -g $g --emit=ptx >"$T/out" 2>"$T/err" && grep -q '\.entry' "$T/out"; then
            ok
        else
            bad "$g: PTX with the loader's cache ignored (NVRTC's folder off the loader path)"
        fi
    done
else
    echo "skip: the loader path test ($LDSO --inhibit-cache cannot start kiln here)"
fi

# made-up toolkits holding links to the real files
mkdir -p "$T/nobuiltins/lib64" "$T/noheaders/lib64"
ln -s "$NVRTC" "$T/nobuiltins/lib64/$(basename "$NVRTC")"
ln -s "$NVRTC" "$T/noheaders/lib64/$(basename "$NVRTC")"
ln -s "$BUILTINS" "$T/noheaders/lib64/$(basename "$BUILTINS")"
expect "a toolkit without the builtins library" 3 "not its builtins library libnvrtc-builtins" \
    env CUDA_HOME="$T/nobuiltins" "$K" emit $mm -g mm_2d --emit=ptx
expect "a toolkit without headers: f32 compiles" 0 "" env CUDA_HOME="$T/noheaders" "$K" emit $mm -g mm_2d --emit=ptx
expect "a toolkit without headers: f16 names cuda_fp16.h" 3 "includes cuda_fp16.h.*no include folder" \
    env CUDA_HOME="$T/noheaders" "$K" emit $mm -g mm_f16 --emit=ptx
expect "an architecture NVRTC does not list" 3 "cannot write PTX for --arch sm_31; it compiles for .*sm_90" \
    "$K" emit $mm -g mm_2d --emit=ptx --arch=sm_31

summary cuda-env
