#!/usr/bin/python3
"""check_golden.py - exact golden copies of kiln's stable text outputs:

  tests/golden/ast/EXAMPLE.txt          emit --emit=ast of examples/EXAMPLE.kiln
  tests/golden/ir/EXAMPLE.GRAPH.txt     emit --emit=ir -g GRAPH with every dimension bound
  tests/golden/ir_symbolic/EXAMPLE.txt  emit --emit=ir of the first graph, no --dim
  tests/golden/diag/NAME.txt            the whole standard error of `check` on
                                        tests/errors/NAME.kiln

Each case also checks the exit status (0 for emit, 1 for a diagnosed file) and that
emit writes nothing to standard error.  The comparison is exact; a failure prints a
diff.  `--update` rewrites the golden files from the current kiln (read the diff
before committing it).  Last line: `golden: N passed, N failed`.

Usage: tests/check_golden.py --kiln build/kiln [--update]
"""
import argparse
import difflib
import glob
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GOLDEN = os.path.join("tests", "golden")
# Sizes for the symbolic dimensions of the examples; unused ones are ignored.
DIMS = ["--dim", "B=2", "--dim", "T=3", "--dim", "N=5"]
SYMBOLIC = ["mlp", "attention", "transformer_block"]
DIAGNOSTICS = [
    "several_errors",            # three graphs, three errors, ordered by position
    "broadcast_mismatch",        # the spec's own example
    "bool_arithmetic",           # a hint
    "unknown_keyword",           # a hint listing what is accepted
    "recursion_mutual",          # inlined graphs
    "syntax_missing_paren",      # a syntax error: expected ..., found ...
    "syntax_unclosed_eof",       # a bracket still open at the end of the file
    "syntax_chained_compare",
    "syntax_non_ascii",          # a column counted in characters
    "take_float_indices",        # Version 1: the caret under take's indices, a hint
    "batchnorm_wrong_size",      # Version 1: the caret under the wrong vector
]


def graphs_of(path):
    with open(path, encoding="utf-8") as f:
        return re.findall(r"^graph\s+([A-Za-z_][A-Za-z0-9_]*)", f.read(), re.M)


def cases():
    """(golden path, argv after kiln, expected exit status, which stream)."""
    out = []
    for ex in sorted(glob.glob(os.path.join("examples", "*.kiln"))):
        name = os.path.splitext(os.path.basename(ex))[0]
        out.append((os.path.join(GOLDEN, "ast", name + ".txt"),
                    ["emit", ex, "--emit=ast"], 0, "stdout"))
        for g in graphs_of(ex):
            out.append((os.path.join(GOLDEN, "ir", "%s.%s.txt" % (name, g)),
                        ["emit", ex, "--emit=ir", "-g", g] + DIMS, 0, "stdout"))
        if name in SYMBOLIC:
            out.append((os.path.join(GOLDEN, "ir_symbolic", name + ".txt"),
                        ["emit", ex, "--emit=ir"], 0, "stdout"))
    for name in DIAGNOSTICS:
        src = os.path.join("tests", "errors", name + ".kiln")
        out.append((os.path.join(GOLDEN, "diag", name + ".txt"), ["check", src], 1, "stderr"))
    return out


def run_case(kiln, argv, want_rc, stream):
    """Returns (text, problem or None)."""
    try:
        p = subprocess.run([kiln] + argv, capture_output=True, timeout=60)
    except subprocess.TimeoutExpired:
        return "", "did not finish in 60 s"
    text = (p.stdout if stream == "stdout" else p.stderr).decode("utf-8", errors="replace")
    if p.returncode != want_rc:
        return text, "exit status %d, expected %d; stderr:\n%s" % (
            p.returncode, want_rc, p.stderr.decode("utf-8", errors="replace"))
    if stream == "stdout" and p.stderr:
        return text, "unexpected standard error:\n" + p.stderr.decode("utf-8", errors="replace")
    return text, None


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kiln", default="build/kiln")
    ap.add_argument("--update", action="store_true", help="rewrite the golden files")
    args = ap.parse_args()
    kiln = os.path.abspath(args.kiln)
    os.chdir(ROOT)  # paths in diagnostics are relative to the repository root
    npass = nfail = 0
    wanted = set()
    for golden, argv, rc, stream in cases():
        wanted.add(os.path.normpath(golden))
        cmd = "kiln " + " ".join(argv)
        text, problem = run_case(kiln, argv, rc, stream)
        if problem:
            nfail += 1
            print("FAIL %s: %s: %s" % (golden, cmd, problem.rstrip()))
            continue
        if args.update:
            os.makedirs(os.path.dirname(golden), exist_ok=True)
            old = open(golden, encoding="utf-8").read() if os.path.exists(golden) else None
            if old != text:
                with open(golden, "w", encoding="utf-8") as f:
                    f.write(text)
                print("updated %s" % golden)
            npass += 1
            continue
        if not os.path.exists(golden):
            nfail += 1
            print("FAIL %s: no golden file (run with --update to create it): %s" % (golden, cmd))
            continue
        with open(golden, encoding="utf-8") as f:
            want = f.read()
        if text == want:
            npass += 1
            continue
        nfail += 1
        print("FAIL %s: output of '%s' differs:" % (golden, cmd))
        diff = list(difflib.unified_diff(want.splitlines(), text.splitlines(),
                                         "golden", "kiln", lineterm=""))
        for line in diff[:60]:
            print("  " + line)
        if len(diff) > 60:
            print("  ... (%d more diff lines)" % (len(diff) - 60))
    for path in sorted(glob.glob(os.path.join(GOLDEN, "**", "*.txt"), recursive=True)):
        if os.path.normpath(path) not in wanted:
            if args.update:
                os.remove(path)
                print("removed stale %s" % path)
            else:
                print("note: %s belongs to no case (run with --update to remove it)" % path)
    print("golden: %d passed, %d failed" % (npass, nfail))
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
