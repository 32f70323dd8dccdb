#!/bin/sh
# tests/aot/cuda.sh KILN_BINARY - `kiln aot --target=cuda` on every graph of
# every examples/*.kiln: the bundle (NAME.ptx, NAME.h, NAME.c, README) must be
# written, NAME.c must compile with cc against cuda.h alone (-std=c11 -Wall
# -Wextra -Werror), its object may only call the CUDA driver and libc (no
# NVRTC, no LLVM, no kiln), and the test program (-DKILN_MAIN) must link
# against the toolkit's stub libcuda.  It cannot run here (no GPU):
# tests/gpu/run.sh runs one.  Also checks the usage errors of the target.
# Last line: "aot-cuda: N passed, N failed".
KILN=${1:-build/kiln}
# cuda.h and the stub libcuda of the toolkit kiln uses (kiln env: the one search)
CUDA_INCLUDE=$("$KILN" env KILN_CUDA_INCLUDE)
CUDA_LIB=$("$KILN" env KILN_CUDA_LIB)
CC=${CC:-cc}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
. "$(dirname "$0")/../lib.sh"
scratch aot-cuda
TMP=$T
SHOW=$TMP/log # what a failure shows: the last command's output

# The only undefined symbols a bundle's object may have: the driver API and libc.
allowed_undefined() {
    grep -v -E '^(cu[A-Z][A-Za-z0-9_]*|memcpy|memset|__stack_chk_fail)$'
}

for file in "$ROOT"/examples/*.kiln; do
    base=$(basename "$file" .kiln)
    for graph in $(sed -n 's/^graph \([A-Za-z_][A-Za-z0-9_]*\).*/\1/p' "$file"); do
        case_name="$base/$graph"
        out="$TMP/$base-$graph"
        if ! "$KILN" aot "$file" -g "$graph" --target=cuda --dim B=2 --dim T=8 --dim N=2 -o "$out" >"$TMP/log" 2>&1; then
            bad "$case_name: kiln aot failed"
            continue
        fi
        name=$graph
        missing=""
        for f in "$name.ptx" "$name.h" "$name.c" README; do
            [ -s "$out/$f" ] || missing="$missing $f"
        done
        if [ -n "$missing" ]; then
            bad "$case_name: missing or empty:$missing"
            continue
        fi
        ok
        if grep -q '\.entry' "$out/$name.ptx" && grep -q '^\.target sm_' "$out/$name.ptx"; then ok; else bad "$case_name: $name.ptx has no kernel entry or target"; fi
        if grep -q "int ${name}_run(" "$out/$name.h" && grep -q 'HOST pointer' "$out/$name.h"; then ok; else bad "$case_name: $name.h lacks ${name}_run or its contract"; fi
        if grep -q -- "-lcuda" "$out/README"; then ok; else bad "$case_name: README has no build line"; fi
        # the library object: only cuda.h
        if (cd "$out" && $CC -std=c11 -O2 -Wall -Wextra -Werror -c "$name.c" -I"$CUDA_INCLUDE" -o "$name.o") >"$TMP/log" 2>&1; then
            ok
            extra=$(nm -u "$out/$name.o" | awk '{print $2}' | allowed_undefined)
            if [ -z "$extra" ]; then ok; else bad "$case_name: $name.o needs more than the driver API: $extra"; fi
        else
            bad "$case_name: $name.c does not compile"
        fi
        # the test program, linked against the stub driver
        if (cd "$out" && $CC -std=c11 -O2 -Wall -Wextra -Werror -DKILN_MAIN "$name.c" -I"$CUDA_INCLUDE" \
                -L"$CUDA_LIB/stubs" -lcuda -o "$name") >"$TMP/log" 2>&1; then
            ok
        else
            bad "$case_name: $name.c -DKILN_MAIN does not link against the stub libcuda"
        fi
        # and the header from C++, where a compiler is at hand
        if command -v c++ >/dev/null 2>&1; then
            if c++ -fsyntax-only -x c++ "$out/$name.h" >"$TMP/log" 2>&1; then ok; else bad "$case_name: $name.h is not valid C++"; fi
        fi
    done
done

# an explicit architecture reaches the PTX
: >"$TMP/log"
if "$KILN" aot "$ROOT/examples/mlp.kiln" --target=cuda:sm_80 --dim B=2 -o "$TMP/sm80" >"$TMP/log" 2>&1 &&
    grep -q '^\.target sm_80' "$TMP/sm80/mlp.ptx"; then ok; else bad "--target=cuda:sm_80 does not give sm_80 PTX"; fi

# usage errors: exit status 2 and a message
expect_usage() {
    what=$1
    shift
    "$KILN" "$@" >"$TMP/log" 2>&1
    rc=$?
    if [ $rc = 2 ] && [ -s "$TMP/log" ]; then ok; else bad "$what: exit $rc, expected 2 with a message"; fi
}
expect_usage "unknown architecture" aot "$ROOT/examples/mlp.kiln" --target=cuda:sm_banana --dim B=2 -o "$TMP/bad1"
expect_usage "unbound dimension" aot "$ROOT/examples/mlp.kiln" --target=cuda -o "$TMP/bad2"
expect_usage "unknown target" aot "$ROOT/examples/mlp.kiln" --target=tpu --dim B=2 -o "$TMP/bad3"

summary aot-cuda
