#!/usr/bin/python3
"""check_errors.py - the diagnostics layer: every tests/errors/*.kiln is a malformed
program whose header says what `kiln check` must report (tests/errors/README.md).

For each file this checks that
  - `kiln check FILE` exits with status 1;
  - each `# expect: LINE:COL: error: SUBSTRING` line matches a printed diagnostic
    `FILE:LINE:COL: error: MESSAGE` whose MESSAGE contains SUBSTRING (ignoring case);
  - no other `error:` line is printed (follow-on errors are noise);
  - each `# hint: TEXT` appears somewhere in standard error;
  - every diagnostic is followed by its source line and a caret line whose caret sits
    under the reported column (columns count characters; tabs are kept as tabs).

Prints one FAIL line per broken expectation, followed by kiln's standard error, and
ends with `diagnostics: N passed, N failed` (one count per file).

Usage: tests/check_errors.py --kiln build/kiln [FILE.kiln ...]
"""
import argparse
import glob
import os
import re
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
EXPECT_RE = re.compile(r"^#\s*expect:\s*(\d+):(\d+):\s*error:\s*(.*?)\s*$")
HINT_RE = re.compile(r"^#\s*hint:\s*(.*?)\s*$")
DIAG_RE = re.compile(r"^(.*?):(\d+):(\d+): error: (.*)$")


def read_header(path):
    """The `# expect:` and `# hint:` lines at the top of a test file."""
    expects, hints = [], []
    with open(path, encoding="utf-8") as f:
        for line in f:
            if not line.startswith("#"):
                break
            m = EXPECT_RE.match(line)
            if m:
                expects.append((int(m.group(1)), int(m.group(2)), m.group(3)))
                continue
            m = HINT_RE.match(line)
            if m:
                hints.append(m.group(1))
    return expects, hints


def source_lines(path):
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read().split("\n")


def check_caret(lines, i, src, line, col):
    """The two lines after diagnostic line i: the source line and the caret.
    Returns a problem description, or None."""
    if line < 1 or line > len(src):
        return "line %d is not in the file" % line
    want = src[line - 1].rstrip("\r")
    if i + 2 >= len(lines):
        return "no source line and caret after the diagnostic"
    shown, caret = lines[i + 1], lines[i + 2]
    if shown != "    " + want:
        return "source line shown as %r, expected %r" % (shown, "    " + want)
    if not caret.startswith("    ") or not caret.rstrip().endswith("^"):
        return "no caret line: %r" % caret
    pad = caret[4:caret.index("^")]
    if pad.strip(" \t"):
        return "caret line holds more than blanks: %r" % caret
    if len(pad) != col - 1:
        return "caret under column %d, expected column %d" % (len(pad) + 1, col)
    for k, ch in enumerate(pad):  # tabs of the source line are kept, so it lines up
        if ch == "\t" and (k >= len(want) or want[k] != "\t"):
            return "caret line has a tab where the source has none"
    return None


def check_file(kiln, path):
    """Returns (ok, [problems], stderr)."""
    expects, hints = read_header(path)
    problems = []
    if not expects:
        return False, ["the file has no '# expect:' line"], ""
    try:
        p = subprocess.run([kiln, "check", path], capture_output=True, timeout=30)
    except subprocess.TimeoutExpired:
        return False, ["kiln check did not finish in 30 s (a hang?)"], ""
    err = p.stderr.decode("utf-8", errors="replace")
    if p.returncode != 1:
        problems.append("exit status %d, expected 1" % p.returncode)
    lines = err.split("\n")
    src = source_lines(path)
    diags = []  # (line, col, message, index in lines)
    for i, l in enumerate(lines):
        m = DIAG_RE.match(l)
        if m:
            diags.append((int(m.group(2)), int(m.group(3)), m.group(4), i, m.group(1)))
        elif "error:" in l and not l.startswith("    "):
            problems.append("an error line without FILE:LINE:COL: %r" % l)
    matched = set()
    for line, col, sub in expects:
        hit = None
        for k, d in enumerate(diags):
            if k not in matched and d[0] == line and d[1] == col and sub.lower() in d[2].lower():
                hit = k
                break
        if hit is None:
            near = [d for d in diags if d[0] == line and d[1] == col]
            why = "message %r lacks %r" % (near[0][2], sub) if near else "no diagnostic there"
            problems.append("expected %d:%d: error: %s (%s)" % (line, col, sub, why))
        else:
            matched.add(hit)
    for k, d in enumerate(diags):
        if k not in matched:
            problems.append("unexpected diagnostic %d:%d: error: %s" % (d[0], d[1], d[2]))
    for line, col, msg, i, fname in diags:
        if fname != path:
            problems.append("diagnostic names file %r, expected %r" % (fname, path))
        why = check_caret(lines, i, src, line, col)
        if why:
            problems.append("%d:%d: %s" % (line, col, why))
    for h in hints:
        if h.lower() not in err.lower():
            problems.append("hint %r not in the output" % h)
    return not problems, problems, err


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kiln", default="build/kiln")
    ap.add_argument("files", nargs="*")
    args = ap.parse_args()
    files = args.files or sorted(glob.glob(os.path.join(HERE, "errors", "*.kiln")))
    npass = nfail = 0
    for path in files:
        rel = os.path.relpath(path, os.getcwd()) if os.path.isabs(path) else path
        if rel.startswith(".."):
            rel = path
        ok, problems, err = check_file(args.kiln, rel)
        if ok:
            npass += 1
            continue
        nfail += 1
        for p in problems:
            print("FAIL %s: %s" % (rel, p))
        if err:
            print("  kiln's stderr:")
            for l in err.rstrip("\n").split("\n"):
                print("  | " + l)
    print("diagnostics: %d passed, %d failed" % (npass, nfail))
    return 1 if nfail else 0


if __name__ == "__main__":
    sys.exit(main())
