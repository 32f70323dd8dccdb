#!/bin/sh
# tests/fuzz/run.sh [SECONDS] - builds every libFuzzer target tests/fuzz/fuzz_NAME.c,
# replays tests/fuzz/regress_NAME/ (inputs that once crashed: they must not now), then
# fuzzes each target for SECONDS (default 60) from the seeds in tests/fuzz/corpus_NAME/.
#
# Build: clang -fsanitize=fuzzer,address,undefined.  Every library source (base/, ir/,
# frontend/, onnx/, passes/, codegen/ (its .cpp with clang++), runtime/, app/ and the
# flex/bison outputs of build/gen) is compiled into build-fuzz/libkiln-fuzz.a, so each target
# links only the objects it uses; a library file that does not compile is skipped
# with a warning (a target that needs it then fails to link, and says so).  LLVM's
# libraries (and libstdc++) are on the link line for targets that reach codegen/.
# Output: build-fuzz/fuzz_NAME, the grown corpus in build-fuzz/corpus_NAME/, crash
# inputs as build-fuzz/NAME-crash-* (copy one into tests/fuzz/regress_NAME/ once fixed).
# Environment: FUZZ_TARGETS="parser npy" picks targets; FUZZ_CC, FUZZ_CXX (default clang,
# clang++).
# Last line: "fuzz: N passed, N failed" (one count per target).
SECONDS_EACH=${1:-60}
cd "$(dirname "$0")/../.." || exit 2
OUT=build-fuzz
GEN=build/gen
CC=${FUZZ_CC:-clang}
CXX=${FUZZ_CXX:-clang++}
LLVM_CONFIG=${LLVM_CONFIG:-llvm-config-19}
CFLAGS="-std=c11 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -Iinclude -I. -I$GEN -I${CUDA_HOME:-/usr/local/cuda}/include" # cuda.h, as the Makefile finds it
LLVM_CFLAGS=$($LLVM_CONFIG --cflags 2>/dev/null | sed 's/-std=[^ ]*//g')
LLVM_CXXFLAGS="-I$($LLVM_CONFIG --includedir 2>/dev/null)"
LLVM_LIBS="$($LLVM_CONFIG --ldflags 2>/dev/null) $($LLVM_CONFIG --libs core orcjit native passes 2>/dev/null) -lstdc++"
SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"

if ! command -v "$CC" >/dev/null 2>&1; then
    echo "fuzz: $CC not found (libFuzzer needs clang)"
    echo "fuzz: 0 passed, 1 failed"
    exit 1
fi
# the scanner and the parser come from the main build's rules
make -s "$GEN/kiln.tab.c" "$GEN/kiln.tab.h" "$GEN/kiln.lex.c" "$GEN/kiln.lex.h" || exit 2
mkdir -p "$OUT/obj"

# ---- the library, with sanitizer and coverage instrumentation
objs=""
for src in base/*.c ir/*.c frontend/*.c onnx/*.c passes/*.c codegen/*.c codegen/*.cpp runtime/*.c app/*.c \
    "$GEN/kiln.tab.c" "$GEN/kiln.lex.c"; do
    [ -f "$src" ] || continue
    obj=$OUT/obj/$(echo "$src" | tr / _ | sed 's/\.c$/.o/; s/\.cpp$/.o/')
    # kiln's one C++ file (codegen/llvm_oom.cpp) is C++17 against LLVM's headers
    cc="$CC $CFLAGS $LLVM_CFLAGS"
    case $src in *.cpp) cc="$CXX -std=c++17 -D_GNU_SOURCE -g -O1 -fno-omit-frame-pointer -fno-exceptions -I. $LLVM_CXXFLAGS" ;; esac
    if [ ! -f "$obj" ] || [ "$src" -nt "$obj" ] || [ -n "$(find base ir frontend onnx passes codegen runtime app include \
            "$GEN" -name '*.h' -newer "$obj" 2>/dev/null | head -n 1)" ]; then
        if ! $cc -Wno-unused-command-line-argument $SAN -fsanitize=fuzzer-no-link \
                -c "$src" -o "$obj" 2>"$OUT/obj/build.log"; then
            echo "fuzz: warning: $src does not compile; left out:"
            head -n 5 "$OUT/obj/build.log" | sed 's/^/  /'
            rm -f "$obj"
            continue
        fi
    fi
    objs="$objs $obj"
done
rm -f "$OUT/libkiln-fuzz.a"
ar rcs "$OUT/libkiln-fuzz.a" $objs

pass=0
fail=0
for target in tests/fuzz/fuzz_*.c; do
    name=$(basename "$target" .c)
    name=${name#fuzz_}
    if [ -n "$FUZZ_TARGETS" ] && ! echo " $FUZZ_TARGETS " | grep -q " $name "; then continue; fi
    bin=$OUT/fuzz_$name
    echo "== $name: building $bin"
    if ! $CC $CFLAGS $LLVM_CFLAGS -Wno-unused-command-line-argument $SAN -fsanitize=fuzzer "$target" "$OUT/libkiln-fuzz.a" $LLVM_LIBS \
            -ldl -lpthread -lm -o "$bin" 2>"$OUT/link_$name.log"; then
        echo "FAIL $name: does not build:"
        head -n 20 "$OUT/link_$name.log" | sed 's/^/  /'
        fail=$((fail + 1))
        continue
    fi
    ok=1
    # compile fuzzes the language too: the parser's seeds and dictionary serve it
    lang=$name
    [ "$name" = compile ] && lang=parser
    dict=""
    [ -f "tests/fuzz/fuzz_$lang.dict" ] && dict="-dict=tests/fuzz/fuzz_$lang.dict"
    # inputs that once crashed must run clean now
    regress=tests/fuzz/regress_$name
    if [ -d "$regress" ] && [ -n "$(ls -A "$regress" 2>/dev/null)" ]; then
        echo "== $name: replaying $regress ($(ls "$regress" | wc -l) inputs)"
        if ! "$bin" -runs=0 $dict "$regress"/* >"$OUT/regress_$name.log" 2>&1; then
            echo "FAIL $name: an input of $regress crashes again:"
            grep -E 'ERROR|SUMMARY|Running|==[0-9]+==' "$OUT/regress_$name.log" | tail -n 20 | sed 's/^/  /'
            ok=0
        fi
    fi
    # fuzz: new inputs go to build-fuzz/corpus_NAME, the tracked seeds are only read
    mkdir -p "$OUT/corpus_$name"
    seeds=tests/fuzz/corpus_$lang
    [ -d "$seeds" ] || seeds=""
    echo "== $name: fuzzing for $SECONDS_EACH s"
    if ! "$bin" -max_total_time="$SECONDS_EACH" -timeout=30 -rss_limit_mb=2048 -max_len=4096 \
            -print_final_stats=1 -artifact_prefix="$OUT/$name-" $dict \
            "$OUT/corpus_$name" $seeds >"$OUT/fuzz_$name.log" 2>&1; then
        echo "FAIL $name: the fuzzer found a problem (log: $OUT/fuzz_$name.log):"
        grep -E 'ERROR|SUMMARY|Test unit written|==[0-9]+==' "$OUT/fuzz_$name.log" | head -n 20 | sed 's/^/  /'
        ok=0
    else
        grep -E 'stat::number_of_executed_units|cov:' "$OUT/fuzz_$name.log" | tail -n 2 | sed 's/^/  /'
    fi
    if [ $ok = 1 ]; then pass=$((pass + 1)); else fail=$((fail + 1)); fi
done
echo "fuzz: $pass passed, $fail failed"
[ "$fail" = 0 ]
