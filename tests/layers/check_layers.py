#!/usr/bin/env python3
"""The layers of kiln, checked on the includes and on the built objects.

Each source folder is a layer; a layer may use (include from, call into) its own
folder and the layers below it, never one above and never another folder on its own
row.  The order, defined here once (README.md's layout table lists the same), from
the bottom:

    include, base     the public kiln.h; allocation, arenas, diagnostics, dtypes, tensors
    ir                the op table, graph IR, IR builder, kernel IR, the interpreters of both
    frontend, onnx    the two front ends (grammar/ and the generated parser are frontend)
    passes            graph passes and the fusion scheduler
    codegen           the emitters (LLVM, CUDA C, the kernel picture)
    runtime           backends, the executor, caches, tensor files, output files
    app               the application: reading/binding programs, model API, REPL, pictures
    tools             main()

Two readings:
  - includes: every `#include "DIR/..."` of every .c/.cpp/.h/.def/.y/.l names a folder the
    file's folder may use;
  - calls: every symbol an object file of BUILD_DIR needs (nm -u) and another object
    of kiln defines is defined in a folder the object's folder may use (symbols from
    outside kiln -- libc, LLVM, libedit -- are not checked).
A failure names the file (and line) or the object and the symbol.
Usage: check_layers.py [BUILD_DIR]   Last line: "layers: N passed, N failed".
"""
import os
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ORDER = [("include", "base"), ("ir",), ("frontend", "onnx"), ("passes",), ("codegen",), ("runtime",),
         ("app",), ("tools",)]
LEVEL = {folder: n for n, row in enumerate(ORDER) for folder in row}
# Folders whose files belong to a layer of another name: the grammar (and the
# scanner and parser generated from it into BUILD/gen) is the language front end's.
ALIAS = {"grammar": "frontend", "gen": "frontend"}
INCLUDE = re.compile(r'\s*#\s*include\s+"([a-z_0-9]+)/')


def layer_of(folder):
    return ALIAS.get(folder, folder)


def may_use(user, used):
    return user == used or LEVEL[used] < LEVEL[user]


def check_includes(fail):
    checked = 0
    for folder in list(LEVEL) + [a for a in ALIAS if os.path.isdir(os.path.join(ROOT, a))]:
        for dirpath, _, files in os.walk(os.path.join(ROOT, folder)):
            for f in sorted(files):
                if not f.endswith((".c", ".cpp", ".h", ".def", ".y", ".l")):
                    continue
                path = os.path.join(dirpath, f)
                rel = os.path.relpath(path, ROOT)
                with open(path, errors="replace") as fh:
                    for n, line in enumerate(fh, 1):
                        m = INCLUDE.match(line)
                        if not m or m.group(1) not in LEVEL:
                            continue
                        checked += 1
                        user, used = layer_of(folder), m.group(1)
                        if not may_use(user, used):
                            fail(f"{rel}:{n}: {user}/ includes {used}/ "
                                 f"({'a layer above' if LEVEL[used] > LEVEL[user] else 'a peer layer'})")
    return checked


def objects(build):
    """(layer, object path) of every object built from a source that still exists."""
    found = []
    for folder in list(LEVEL) + list(ALIAS):
        d = os.path.join(build, folder)
        for dirpath, _, files in os.walk(d):
            for f in sorted(files):
                if not f.endswith(".o"):
                    continue
                obj = os.path.join(dirpath, f)
                src = os.path.join(ROOT, os.path.relpath(obj, build))[:-2] + ".c"
                if folder == "gen" or os.path.exists(src):  # not the leftover of a moved file
                    found.append((layer_of(folder), obj))
    return found


def nm_all(paths, flag):
    """{object: [(type, symbol)]} from one nm run over every object."""
    out = subprocess.run(["nm", "-A", flag] + paths, capture_output=True, text=True, check=True).stdout
    syms = {p: [] for p in paths}
    for line in out.splitlines():
        obj, _, rest = line.partition(":")
        parts = rest.split()
        if obj in syms and len(parts) >= 2:
            syms[obj].append((parts[-2], parts[-1]))
    return syms


def check_calls(build, fail):
    objs = objects(build)
    if not objs:
        fail(f"no objects under {build}: build first (make)")
        return 0, 0
    paths = [o for _, o in objs]
    layer = dict((o, l) for l, o in objs)
    owner = {}
    for obj, syms in nm_all(paths, "--defined-only").items():
        for kind, s in syms:
            if kind.isupper():  # global definitions only
                owner.setdefault(s, obj)
    checked = 0
    for obj, syms in nm_all(paths, "-u").items():
        for _, s in sorted(syms, key=lambda x: x[1]):
            if s not in owner:
                continue  # libc, libm, LLVM, pthread, libedit ...
            checked += 1
            user, used = layer[obj], layer[owner[s]]
            if not may_use(user, used):
                fail(f"{os.path.relpath(obj, build)} ({user}) uses {s}, defined in "
                     f"{os.path.relpath(owner[s], build)} ({used})")
    return checked, len(objs)


def main():
    build = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "build")
    failures = []
    n_inc = check_includes(failures.append)
    n_calls, n_obj = check_calls(build, failures.append)
    for f in failures:
        print("FAIL", f)
    print("order, bottom first: " + " < ".join(",".join(row) for row in ORDER))
    print(f"checked {n_inc} includes and {n_calls} uses of symbols between {n_obj} objects")
    passed = max(n_inc + n_calls - len(failures), 0)
    print(f"layers: {passed} passed, {len(failures)} failed")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
