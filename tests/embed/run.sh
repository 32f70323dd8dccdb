#!/bin/sh
# tests/embed/run.sh BUILD - libkiln.a exports include/kiln.h's names and nothing else.
#   - every global symbol libkiln.a defines is a kiln_ name that include/kiln.h declares;
#   - a program linking libkiln.a, with its own xmalloc, read_file, tp_run ... (the names
#     kiln uses inside), links and runs (build/embed/embed, tests/embed/embed.c).
# Last line: "embed: N passed, N failed".
BUILD=${1:-build}
. "$(dirname "$0")/../lib.sh"
lib=$BUILD/libkiln.a
if [ ! -f "$lib" ]; then
    echo "FAIL: $lib is missing"
    echo "embed: 0 passed, 1 failed"
    exit 1
fi
syms=$(nm -g --defined-only "$lib" | awk 'NF == 3 { print $3 }' | sort -u)
n=$(printf '%s\n' "$syms" | grep -c .)
stray=$(printf '%s\n' "$syms" | grep -v '^kiln_' | head -n 20)
if [ -z "$stray" ] && [ "$n" -gt 0 ]; then ok; else bad "libkiln.a exports names that are not kiln_*: $stray"; fi
undeclared=""
for s in $syms; do
    grep -q "[^a-z_]$s(" include/kiln.h || undeclared="$undeclared $s"
done
if [ -z "$undeclared" ]; then ok; else bad "libkiln.a exports names include/kiln.h does not declare:$undeclared"; fi
echo "libkiln.a exports $n names"
out=$("$BUILD/embed/embed" 2>&1)
rc=$?
echo "$out" | grep -v '^embed: '
p=$(echo "$out" | sed -n 's/^embed: \([0-9]*\) passed, \([0-9]*\) failed$/\1/p')
f=$(echo "$out" | sed -n 's/^embed: \([0-9]*\) passed, \([0-9]*\) failed$/\2/p')
if [ -z "$p" ] || [ $rc != 0 ]; then bad "build/embed/embed: exit $rc"; fi
pass=$((pass + ${p:-0}))
fail=$((fail + ${f:-0}))
summary embed
