#!/bin/sh
# tools/docs-images.sh [BUILD_DIR] - remakes the pictures docs/cli.md shows, from
# the kiln in BUILD_DIR (default build), on this machine:
#   docs/images/kernels.png   emit --emit=dot of examples/transformer_block.kiln, drawn by Graphviz
#   docs/images/trace.png     the timeline of bench --trace (as the report draws it)
#   docs/images/report.png    the top of bench --report's page, rendered by headless Chromium
# Needs Graphviz's dot and Chromium (tools/install-deps.sh --browser).
set -e
BUILD=${1:-build}
K=$BUILD/kiln
OUT=docs/images
T=$(mktemp -d "${TMPDIR:-/tmp}/kiln-docs.XXXXXX")
trap 'rm -rf "$T"' EXIT INT TERM
mkdir -p "$OUT"
ARGS="examples/transformer_block.kiln --dim B=4 --dim T=32"
# shellcheck disable=SC2086
"$K" emit $ARGS --emit=dot | dot -Tpng -Gdpi=60 -o "$OUT/kernels.png"
# shellcheck disable=SC2086
"$K" bench $ARGS --device=cpu --runs=20 --trace "$T/trace.json" --report "$T/report.html" >/dev/null
shot() { # shot PAGE PNG WIDTH HEIGHT
    chromium --headless --no-sandbox --disable-gpu --no-first-run --hide-scrollbars \
        --user-data-dir="$T/profile" --window-size="$3,$4" --screenshot="$2" "file://$1" 2>/dev/null
}
shot "$T/report.html" "$OUT/report.png" 1100 1500
# the timeline section alone, as its own page
/usr/bin/python3 - "$T/report.html" "$T/timeline.html" <<'PY'
import re, sys
page = open(sys.argv[1]).read()
style = re.search(r"<style>.*?</style>", page, re.S).group(0)
section = re.search(r"<h2>Timeline</h2>.*?(?=<h2>)", page, re.S).group(0)
open(sys.argv[2], "w").write(f"<!DOCTYPE html><html><head><meta charset='utf-8'>{style}</head><body>{section}</body></html>")
PY
shot "$T/timeline.html" "$OUT/trace.png" 1100 560
ls -l "$OUT"
