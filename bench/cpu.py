#!/usr/bin/env python3
"""kiln's CPU benchmark against the peers a user would pick instead (issue 3).

Run it through bench/cpu.sh, which builds the virtualenv (build/bench-venv) and sets the
environment (threads, OpenBLAS); this file does the measuring and prints ONE table.

Every implementation runs in a process of its own, one after the other, on the same
cores with the same thread count (2 by default): kiln (`kiln bench --device=cpu --json`,
median run_ms), NumPy (+ its bundled OpenBLAS), onnxruntime, PyTorch and tinygrad.
A peer that cannot be imported is reported as "n/a" with the reason.

The cases:
  a  exp(-abs(x)) * tanh(x*1.5 + 0.25) + sigmoid(x)*0.5 over 16M f32 (+ % of copy bw)
  b  softmax over the rows of 4096x4096 f32                    (+ % of copy bw)
  c  layernorm over the rows of 8192x1024 f32, scale and shift  (+ % of copy bw)
  d  f32 matmul 1024^3 and 2048^3, in GFLOP/s
  e  MLP 784-1024-1024-10 (ReLU) at batch 256
  f  cold compile time of every graph of examples/*.kiln (kiln only)

Copy bandwidth is measured in the same run: NumPy copying 16M f32 into a preallocated
array, counting the bytes read and written, on 1 thread and on --threads threads; the
faster is the reference for "kiln % copy bw".  Each (implementation, case) runs in a fresh
process; the sequence runs --rounds times and each figure is the best round's median.

This file is also the worker: `cpu.py --worker PEER` runs one peer's cases and prints
one JSON line per case.  It must run under Debian's /usr/bin/python3 (for Debian's
PyTorch) as well as under the virtualenv's Python, so it imports nothing at the top
beyond the standard library.
"""

import argparse
import datetime
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROGRAMS = os.path.join(ROOT, "bench", "programs")
M16 = 16 * 1024 * 1024

# id, title, kind, kiln program, dims.  kind: "bw" (time + % of copy bandwidth),
# "flops" (GFLOP/s), "time" (ms).
CASES = [
    ("a", "elementwise chain, 16M f32", "bw", "chain.kiln", {"N": M16}),
    ("b", "softmax rows, 4096x4096", "bw", "softmax.kiln", {"R": 4096, "C": 4096}),
    ("c", "layernorm rows, 8192x1024", "bw", "layernorm.kiln", {"R": 8192, "C": 1024}),
    ("d1", "matmul 1024^3 (GFLOP/s)", "flops", "matmul.kiln", {"M": 1024, "K": 1024, "N": 1024}),
    ("d2", "matmul 2048^3 (GFLOP/s)", "flops", "matmul.kiln", {"M": 2048, "K": 2048, "N": 2048}),
    ("e", "MLP 784-1024-1024-10, batch 256", "time", "mlp.kiln", {"B": 256}),
]
PEERS = ["numpy", "onnxruntime", "torch", "tinygrad"]
PEER_TITLE = {"numpy": "NumPy", "onnxruntime": "onnxruntime", "torch": "PyTorch",
              "tinygrad": "tinygrad"}
# The peer each case's target names, and the target itself (ratio = peer time / kiln
# time, which for matmul is kiln GFLOP/s / peer GFLOP/s).
TARGETS = {
    "a": ("numpy", 10.0, "≥ 10x NumPy"),
    "b": ("torch", 2.0, "≥ 2x PyTorch, ≥ 70% copy bw"),
    "c": ("torch", 2.0, "≥ 2x PyTorch, ≥ 70% copy bw"),
    "d1": ("numpy", 0.5, "≥ 50% of OpenBLAS"),
    "d2": ("numpy", 0.5, "≥ 50% of OpenBLAS"),
    "e": ("onnxruntime", 1.0, "≥ onnxruntime"),
}
BW_TARGET = 0.70
COMPILE_TARGET_MS = 300.0          # transformer_block cold compile
COMPILE_DIMS = {"B": 8, "T": 128, "N": 64}
ALLOC = "warm"  # set from --alloc


def scaled_dims(dims, scale):
    """--scale S divides the largest dimension of each case by S (smoke tests)."""
    if scale <= 1:
        return dict(dims)
    d = dict(dims)
    big = max(d, key=lambda k: d[k])
    d[big] = max(16, d[big] // scale)
    return d


def case_bytes(cid, d):
    if cid == "a":
        return 2 * 4 * d["N"]
    if cid in ("b", "c"):
        return 2 * 4 * d["R"] * d["C"]
    return None


def case_flops(cid, d):
    if cid in ("d1", "d2"):
        return 2.0 * d["M"] * d["K"] * d["N"]
    if cid == "e":
        b = d["B"]
        return 2.0 * b * (784 * 1024 + 1024 * 1024 + 1024 * 10)
    return None


# ----------------------------------------------------------------------------------
# timing


def measure(fn, sync=lambda: None, budget=2.0, min_runs=3, max_runs=20, warm=2):
    """Median wall time (ms) of fn() after `warm` warm-up calls; as many runs as fit
    in `budget` seconds, between min_runs and max_runs.  A call slower than `budget`
    (tinygrad's matmul) cuts the warm-up to one call and the runs to two."""
    for i in range(warm):
        t0 = time.perf_counter()
        fn()
        sync()
        if time.perf_counter() - t0 > budget:
            min_runs = 2
            break
    times = []
    t_start = time.perf_counter()
    while True:
        t0 = time.perf_counter()
        fn()
        sync()
        times.append((time.perf_counter() - t0) * 1e3)
        n = len(times)
        if n >= max_runs or (n >= min_runs and time.perf_counter() - t_start > budget):
            break
    return statistics.median(times), len(times)


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def load_threadpoolctl():
    """threadpoolctl from wherever it is: the virtualenv's, when this runs under
    Debian's python (it is a single pure-Python module)."""
    try:
        import threadpoolctl
        return threadpoolctl
    except ImportError:
        pass
    venv = os.environ.get("BENCH_VENV", os.path.join(ROOT, "build", "bench-venv"))
    import glob
    import importlib.util
    for path in glob.glob(os.path.join(venv, "lib", "python3*", "site-packages",
                                       "threadpoolctl.py")):
        spec = importlib.util.spec_from_file_location("threadpoolctl", path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules["threadpoolctl"] = mod  # its dataclasses look themselves up there
        spec.loader.exec_module(mod)
        return mod
    return None


def blas_info():
    tpc = load_threadpoolctl()
    if tpc is None:
        return "threadpoolctl missing"
    out = []
    for i in tpc.threadpool_info():
        if i.get("user_api") == "blas":
            out.append("%s %s, kernel %s, %s threads" % (
                i.get("internal_api"), i.get("version"), i.get("architecture"),
                i.get("num_threads")))
    return "; ".join(out) or "no BLAS loaded"


# ----------------------------------------------------------------------------------
# peers (each runs in its own process: `cpu.py --worker PEER`)


def worker_numpy(cases, threads, budget):
    import numpy as np
    tpc = load_threadpoolctl()
    if tpc is not None:
        tpc.threadpool_limits(threads)
    rng = np.random.default_rng(0)
    emit({"info": {"version": "numpy " + np.__version__, "blas": blas_info()}})

    if any(cid == "copy" for cid, _d in cases):
        # copy bandwidth: 16M f32 into a preallocated array, read + write bytes; on one
        # thread (np.copyto) and on `threads` threads (halves copied in a thread pool,
        # np.copyto releases the GIL); the faster is the reference
        from concurrent.futures import ThreadPoolExecutor
        src = rng.standard_normal(M16, dtype=np.float32)
        dst = np.empty_like(src)
        ms1, runs = measure(lambda: np.copyto(dst, src), budget=budget, min_runs=10,
                            max_runs=30)
        pool = ThreadPoolExecutor(threads)
        h = (M16 + threads - 1) // threads

        def copy_mt():
            for f in [pool.submit(np.copyto, dst[i * h:(i + 1) * h], src[i * h:(i + 1) * h])
                      for i in range(threads)]:
                f.result()
        msn, _ = measure(copy_mt, budget=budget, min_runs=10, max_runs=30)
        pool.shutdown()
        ms = min(ms1, msn)
        emit({"copy": {"ms": ms, "runs": runs, "bytes": 2 * src.nbytes,
                       "gbps": 2 * src.nbytes / ms / 1e6, "ms_1thread": ms1,
                       "ms_threads": msn}})
        del src, dst

    for cid, d in cases:
        if cid == "a":
            x = rng.standard_normal(d["N"], dtype=np.float32)

            def fn():
                return np.exp(-np.abs(x)) * np.tanh(x * 1.5 + 0.25) + 1 / (1 + np.exp(-x)) * 0.5
        elif cid == "b":
            x = rng.standard_normal((d["R"], d["C"]), dtype=np.float32)

            def fn():
                e = np.exp(x - x.max(axis=-1, keepdims=True))
                return e / e.sum(axis=-1, keepdims=True)
        elif cid == "c":
            x = rng.standard_normal((d["R"], d["C"]), dtype=np.float32)
            g = rng.standard_normal(d["C"], dtype=np.float32)
            b = rng.standard_normal(d["C"], dtype=np.float32)

            def fn():
                mu = x.mean(axis=-1, keepdims=True)
                xc = x - mu
                var = (xc * xc).mean(axis=-1, keepdims=True)
                return xc / np.sqrt(var + 1e-5) * g + b
        elif cid in ("d1", "d2"):
            a = rng.standard_normal((d["M"], d["K"]), dtype=np.float32)
            b = rng.standard_normal((d["K"], d["N"]), dtype=np.float32)

            def fn():
                return a @ b
        elif cid == "e":
            x = rng.standard_normal((d["B"], 784), dtype=np.float32)
            ws = [(rng.standard_normal((i, o), dtype=np.float32) * (1 / i ** 0.5),
                   rng.standard_normal(o, dtype=np.float32))
                  for i, o in ((784, 1024), (1024, 1024), (1024, 10))]

            def fn():
                h = np.maximum(x @ ws[0][0] + ws[0][1], 0)
                h = np.maximum(h @ ws[1][0] + ws[1][1], 0)
                return h @ ws[2][0] + ws[2][1]
        else:
            continue
        ms, runs = measure(fn, budget=budget)
        emit({"case": cid, "ms": ms, "runs": runs})


def onnx_model(cid, d):
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    f32 = TensorProto.FLOAT
    inits, nodes = [], []

    def const(name, value):
        inits.append(numpy_helper.from_array(np.asarray(value, dtype=np.float32), name))
        return name

    def node(op, ins, out, **attrs):
        nodes.append(helper.make_node(op, ins, [out], **attrs))
        return out

    rng = np.random.default_rng(1)
    if cid == "a":
        inputs = [helper.make_tensor_value_info("x", f32, [d["N"]])]
        e = node("Exp", [node("Neg", [node("Abs", ["x"], "ax")], "nx")], "e")
        t = node("Tanh", [node("Add", [node("Mul", ["x", const("c15", 1.5)], "m"),
                                       const("c025", 0.25)], "s")], "t")
        s = node("Mul", [node("Sigmoid", ["x"], "sg"), const("c05", 0.5)], "sh")
        node("Add", [node("Mul", [e, t], "p"), s], "y")
        outshape = [d["N"]]
    elif cid == "b":
        inputs = [helper.make_tensor_value_info("x", f32, [d["R"], d["C"]])]
        node("Softmax", ["x"], "y", axis=-1)
        outshape = [d["R"], d["C"]]
    elif cid == "c":
        inputs = [helper.make_tensor_value_info("x", f32, [d["R"], d["C"]])]
        g = const("g", rng.standard_normal(d["C"]))
        b = const("b", rng.standard_normal(d["C"]))
        node("LayerNormalization", ["x", g, b], "y", axis=-1, epsilon=1e-5)
        outshape = [d["R"], d["C"]]
    elif cid in ("d1", "d2"):
        inputs = [helper.make_tensor_value_info("x", f32, [d["M"], d["K"]]),
                  helper.make_tensor_value_info("w", f32, [d["K"], d["N"]])]
        node("MatMul", ["x", "w"], "y")
        outshape = [d["M"], d["N"]]
    elif cid == "e":
        inputs = [helper.make_tensor_value_info("x", f32, [d["B"], 784])]
        h = "x"
        dims = ((784, 1024), (1024, 1024), (1024, 10))
        for li, (i, o) in enumerate(dims):
            w = const("w%d" % li, rng.standard_normal((i, o)) / i ** 0.5)
            b = const("b%d" % li, rng.standard_normal(o))
            h = node("Add", [node("MatMul", [h, w], "mm%d" % li), b],
                     "y" if li == 2 else "z%d" % li)
            if li < 2:
                h = node("Relu", [h], "h%d" % li)
        outshape = [d["B"], 10]
    graph = helper.make_graph(nodes, "bench_" + cid, inputs,
                              [helper.make_tensor_value_info("y", f32, outshape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model.SerializeToString(), [i.name for i in inputs]


def worker_onnxruntime(cases, threads, budget):
    import numpy as np
    import onnxruntime as ort
    emit({"info": {"version": "onnxruntime " + ort.__version__}})
    rng = np.random.default_rng(0)
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    for cid, d in cases:
        model, names = onnx_model(cid, d)
        sess = ort.InferenceSession(model, so, providers=["CPUExecutionProvider"])
        feeds = {}
        for inp in sess.get_inputs():
            feeds[inp.name] = rng.standard_normal(inp.shape, dtype=np.float32)
        ms, runs = measure(lambda: sess.run(None, feeds), budget=budget)
        emit({"case": cid, "ms": ms, "runs": runs})
        del sess, feeds


def worker_torch(cases, threads, budget):
    import torch
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    try:
        cap = torch.backends.cpu.get_cpu_capability()
    except AttributeError:  # torch < 2.0
        m = re.search(r"CPU capability usage: (\w+)", torch.__config__.show())
        cap = m.group(1) if m else "?"
    emit({"info": {"version": "torch %s (eager, CPU capability %s, %d threads)" % (
        torch.__version__, cap, torch.get_num_threads()), "blas": blas_info()}})
    F = torch.nn.functional
    with torch.inference_mode():
        for cid, d in cases:
            if cid == "a":
                x = torch.randn(d["N"])

                def fn():
                    return torch.exp(-x.abs()) * torch.tanh(x * 1.5 + 0.25) + torch.sigmoid(x) * 0.5
            elif cid == "b":
                x = torch.randn(d["R"], d["C"])

                def fn():
                    return torch.softmax(x, dim=-1)
            elif cid == "c":
                x = torch.randn(d["R"], d["C"])
                g, b = torch.randn(d["C"]), torch.randn(d["C"])

                def fn():
                    return F.layer_norm(x, (d["C"],), g, b, 1e-5)
            elif cid in ("d1", "d2"):
                a, b = torch.randn(d["M"], d["K"]), torch.randn(d["K"], d["N"])

                def fn():
                    return a @ b
            elif cid == "e":
                x = torch.randn(d["B"], 784)
                net = torch.nn.Sequential(torch.nn.Linear(784, 1024), torch.nn.ReLU(),
                                          torch.nn.Linear(1024, 1024), torch.nn.ReLU(),
                                          torch.nn.Linear(1024, 10)).eval()

                def fn():
                    return net(x)
            else:
                continue
            ms, runs = measure(fn, budget=budget)
            emit({"case": cid, "ms": ms, "runs": runs})


def worker_tinygrad(cases, threads, budget):
    os.environ.setdefault("DEV", "CPU")
    os.environ.setdefault("NUM_CPU_THREADS", str(threads))
    import importlib.metadata
    import numpy as np
    from tinygrad import Device, Tensor, TinyJit
    dev = Device.DEFAULT
    emit({"info": {"version": "tinygrad %s (device %s, TinyJit, %s threads)" % (
        importlib.metadata.version("tinygrad"), dev, os.environ.get("NUM_CPU_THREADS"))}})
    rng = np.random.default_rng(0)

    def T(*shape):
        return Tensor(rng.standard_normal(shape, dtype=np.float32)).realize()

    def sync():
        Device[dev].synchronize()

    for cid, d in cases:
        if cid == "a":
            x = T(d["N"])

            @TinyJit
            def f(x):
                return ((-x.abs()).exp() * (x * 1.5 + 0.25).tanh() + x.sigmoid() * 0.5).realize()
            args = (x,)
        elif cid == "b":
            args = (T(d["R"], d["C"]),)

            @TinyJit
            def f(x):
                return x.softmax(-1).realize()
        elif cid == "c":
            args = (T(d["R"], d["C"]), T(d["C"]), T(d["C"]))

            @TinyJit
            def f(x, g, b):
                return (x.layernorm(axis=-1, eps=1e-5) * g + b).realize()
        elif cid in ("d1", "d2"):
            args = (T(d["M"], d["K"]), T(d["K"], d["N"]))

            @TinyJit
            def f(a, b):
                return (a @ b).realize()
        elif cid == "e":
            args = (T(d["B"], 784),)
            ws = [(T(i, o) * (1 / i ** 0.5), T(o))
                  for i, o in ((784, 1024), (1024, 1024), (1024, 10))]
            ws = [(w.realize(), b) for w, b in ws]

            @TinyJit
            def f(x):
                h = (x @ ws[0][0] + ws[0][1]).relu()
                h = (h @ ws[1][0] + ws[1][1]).relu()
                return (h @ ws[2][0] + ws[2][1]).realize()
        else:
            continue
        # TinyJit captures on the second call: three warm-up calls
        ms, runs = measure(lambda: f(*args), sync=sync, budget=budget, warm=3)
        emit({"case": cid, "ms": ms, "runs": runs})


WORKERS = {"numpy": worker_numpy, "onnxruntime": worker_onnxruntime,
           "torch": worker_torch, "tinygrad": worker_tinygrad}


def run_worker(args):
    cases = []
    want = set(args.cases.split(","))
    if "copy" in want:
        cases.append(("copy", {}))
    for cid, _title, _kind, _prog, dims in CASES:
        if cid in want:
            cases.append((cid, scaled_dims(dims, args.scale)))
    try:
        WORKERS[args.worker](cases, args.threads, args.budget)
    except ImportError as e:
        emit({"fatal": "cannot import: %s" % e})
    except Exception as e:  # a peer's failure is a row's "n/a", not the bench's end
        emit({"fatal": "%s: %s" % (type(e).__name__, e)})
    return 0


# ----------------------------------------------------------------------------------
# the orchestrator


def log(msg):
    sys.stderr.write("[bench] " + msg + "\n")
    sys.stderr.flush()


_PEER_PYTHON = {}


def peer_python(peer):
    """The interpreter for a peer, or (None, reason) (looked up once)."""
    if peer not in _PEER_PYTHON:
        _PEER_PYTHON[peer] = find_peer_python(peer)
    return _PEER_PYTHON[peer]


def find_peer_python(peer):
    venv_py = sys.executable
    if peer != "torch":
        return venv_py, None
    if os.environ.get("BENCH_TORCH") == "none":
        return None, "skipped (BENCH_TORCH=none)"
    # PyTorch: the virtualenv's if someone installed it there (BENCH_TORCH=pypi),
    # else Debian's python3-torch under /usr/bin/python3.
    for py in (venv_py, "/usr/bin/python3"):
        if py and os.path.exists(py) and subprocess.run(
                [py, "-c", "import torch"], stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL).returncode == 0:
            return py, None
    return None, ("torch not importable (PyPI wheel pulls ~3 GB of CUDA libraries; "
                  "Debian's python3-torch not installed)")


def peer_env(peer, py):
    env = dict(os.environ)
    if peer == "torch" and py == "/usr/bin/python3":
        # Debian's torch links the system BLAS (libblas.so.3); point it at Debian's
        # OpenBLAS (0.3.21, installed by cpu.sh) without switching the system's
        # alternative.  That OpenBLAS predates this CPU: it keeps the machine's own
        # OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE, which cpu.sh saved before unsetting them.
        ob = "/usr/lib/x86_64-linux-gnu/openblas-pthread"
        if os.path.isdir(ob):
            env["LD_LIBRARY_PATH"] = ob + (":" + env["LD_LIBRARY_PATH"]
                                           if env.get("LD_LIBRARY_PATH") else "")
        for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
            saved = os.environ.get("BENCH_SAVED_" + v)
            if saved:
                env[v] = saved
        env.pop("PYTHONPATH", None)
    if ALLOC == "warm":
        # keep freed memory in glibc's heap, so that a fresh 64 MB result reuses pages
        # already faulted in, as kiln's bench (which binds its outputs once) does
        env["MALLOC_MMAP_MAX_"] = "0"
        env["MALLOC_TRIM_THRESHOLD_"] = str(1 << 40)
    return env


def run_peer(peer, case_ids, args):
    """Runs one peer's worker; returns {"info", "copy", "results": {cid: {...}}}."""
    out = {"info": {}, "results": {}, "error": None}
    py, why = peer_python(peer)
    if py is None:
        out["error"] = why
        return out
    cmd = [py, os.path.abspath(__file__), "--worker", peer, "--cases", ",".join(case_ids),
           "--threads", str(args.threads), "--scale", str(args.scale),
           "--budget", str(args.budget)]
    env = peer_env(peer, py)
    if peer == "torch":
        out["info"]["python"] = py
    deadline = time.time() + args.peer_timeout
    errf = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errf,
                            text=True, env=env, cwd=ROOT)
    import selectors
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ)
    timed_out = False
    while True:
        left = deadline - time.time()
        if left <= 0:
            timed_out = True
            break
        if not sel.select(timeout=min(left, 5)):
            if proc.poll() is not None:
                break
            continue
        line = proc.stdout.readline()
        if not line:
            break
        try:
            msg = json.loads(line)
        except ValueError:
            continue
        if "info" in msg:
            out["info"].update(msg["info"])
        elif "copy" in msg:
            out["copy"] = msg["copy"]
        elif "case" in msg:
            out["results"][msg["case"]] = msg
            log("  %-12s %-3s %10.3f ms (%d runs)" % (peer, msg["case"], msg["ms"], msg["runs"]))
        elif "fatal" in msg:
            out["error"] = msg["fatal"]
    if timed_out:
        proc.kill()
        out["error"] = out["error"] or "timed out after %d s" % args.peer_timeout
    proc.wait()
    errf.seek(0)
    err = errf.read().strip()
    errf.close()
    if proc.returncode not in (0, None) and not out["error"] and not timed_out:
        out["error"] = "exit %s: %s" % (proc.returncode, err.splitlines()[-1] if err else "")
    if out["error"]:
        log("  %-12s %-3s %s" % (peer, ",".join(case_ids), out["error"]))
    for cid in case_ids:
        if cid != "copy" and cid not in out["results"]:
            out["results"][cid] = {"error": out["error"] or "no result"}
    return out


def run_cmd(cmd, timeout, env=None):
    """subprocess.run, retried for a while when the binary is being relinked (other
    people rebuild build/kiln while the bench runs)."""
    for attempt in range(10):
        try:
            return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        except OSError:
            if attempt == 9:
                raise
            time.sleep(3)


def kiln_bench(kiln, prog, dims, device, runs, timeout, extra_env=None):
    cmd = [kiln, "bench", prog, "--device=" + device, "--json", "--runs=%d" % runs]
    for k, v in dims.items():
        cmd += ["--dim", "%s=%d" % (k, v)]
    env = dict(os.environ)
    if extra_env:
        env.update(extra_env)
    t0 = time.perf_counter()
    try:
        p = run_cmd(cmd, timeout, env)
    except subprocess.TimeoutExpired:
        return None, "timed out after %d s" % timeout, None
    except OSError as e:
        return None, str(e), None
    wall = (time.perf_counter() - t0) * 1e3
    if p.returncode != 0:
        msg = (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1]
        return None, msg, wall
    try:
        return json.loads(p.stdout.strip().splitlines()[-1]), None, wall
    except (ValueError, IndexError):
        return None, "unreadable output: %r" % p.stdout[:200], wall


def kiln_check(kiln, cid, device, venv_np):
    """Checks kiln's answer on a small instance of a case against NumPy (float64),
    through `kiln run --in ... --out`.  Returns None when it matches, else a reason."""
    import numpy as np
    rng = np.random.default_rng(5)
    small = {"a": {"N": 4099}, "b": {"R": 7, "C": 1030}, "c": {"R": 9, "C": 1024},
             "d1": {"M": 67, "K": 130, "N": 45}, "e": {"B": 5}}
    if cid not in small:
        return None
    d = small[cid]
    prog = [c for c in CASES if c[0] == cid][0][3]
    with tempfile.TemporaryDirectory() as tmp:
        ins = {}
        if cid == "a":
            ins["x"] = rng.standard_normal(d["N"]) * 3
            x = ins["x"]
            ref = np.exp(-np.abs(x)) * np.tanh(x * 1.5 + 0.25) + 0.5 / (1 + np.exp(-x))
        elif cid == "b":
            ins["x"] = rng.standard_normal((d["R"], d["C"])) * 4
            e = np.exp(ins["x"] - ins["x"].max(-1, keepdims=True))
            ref = e / e.sum(-1, keepdims=True)
        elif cid == "c":
            x = ins["x"] = rng.standard_normal((d["R"], d["C"])) * 2 + 1
            ins["gamma"] = rng.standard_normal(d["C"])
            ins["beta"] = rng.standard_normal(d["C"])
            xc = x - x.mean(-1, keepdims=True)
            ref = xc / np.sqrt((xc * xc).mean(-1, keepdims=True) + 1e-5) * ins["gamma"] + ins["beta"]
        elif cid == "d1":
            ins["a"] = rng.standard_normal((d["M"], d["K"]))
            ins["b"] = rng.standard_normal((d["K"], d["N"]))
            ref = ins["a"] @ ins["b"]
        elif cid == "e":
            x = ins["x"] = rng.standard_normal((d["B"], 784))
            h = x
            for li, (i, o) in enumerate(((784, 1024), (1024, 1024), (1024, 10))):
                ins["w%d" % (li + 1)] = rng.standard_normal((i, o)) / i ** 0.5
                ins["b%d" % (li + 1)] = rng.standard_normal(o) * 0.1
                h = h @ ins["w%d" % (li + 1)] + ins["b%d" % (li + 1)]
                if li < 2:
                    h = np.maximum(h, 0)
            ref = h
        cmd = [kiln, "run", os.path.join(PROGRAMS, prog), "--device=" + device,
               "--out", os.path.join(tmp, "out.npy")]
        for k, v in d.items():
            cmd += ["--dim", "%s=%d" % (k, v)]
        for name, arr in ins.items():
            path = os.path.join(tmp, name + ".npy")
            np.save(path, arr.astype(np.float32))
            cmd += ["--in", "%s=%s" % (name, path)]
        p = run_cmd(cmd, 120)
        if p.returncode != 0:
            return "kiln run failed: " + (p.stderr.strip().splitlines() or ["?"])[-1]
        got = np.load(os.path.join(tmp, "out.npy")).astype(np.float64)
        if got.shape != ref.shape:
            return "shape %s, expected %s" % (got.shape, ref.shape)
        err = np.max(np.abs(got - ref) / (1e-3 + np.abs(ref)))
        if not np.isfinite(err) or err > 2e-3:
            return "wrong result: max rel error %.3g" % err
    return None


def run_kiln(args, case_ids, first):
    res = {"results": {}, "checks": {}}
    kiln = args.kiln
    for cid, title, kind, prog, dims in CASES:
        if cid not in case_ids:
            continue
        d = scaled_dims(dims, args.scale)
        path = os.path.join(PROGRAMS, prog)
        if args.check and first:
            try:
                why = kiln_check(kiln, cid, args.device, True)
            except Exception as e:
                why = "check failed: %s" % e
            res["checks"][cid] = why
            if why:
                log("  kiln         %-3s CHECK: %s" % (cid, why))
        # probe: one run, to size the run count to the budget (first round only)
        runs = KILN_RUNS.get(cid)
        if runs is None:
            probe, err, _ = kiln_bench(kiln, path, d, args.device, 1, args.kiln_timeout)
            if probe is None:
                res["results"][cid] = {"error": err}
                log("  kiln         %-3s %s" % (cid, err))
                continue
            runs = int(max(3, min(30, args.budget * 1e3 / max(probe["run_ms"], 1e-3))))
            KILN_RUNS[cid] = runs
        rep, err, _ = kiln_bench(kiln, path, d, args.device, runs, args.kiln_timeout)
        if rep is None:
            res["results"][cid] = {"error": err}
            log("  kiln         %-3s %s" % (cid, err))
            continue
        res["results"][cid] = {"ms": rep["run_ms"], "runs": rep["runs"],
                               "compile_ms": rep["compile_ms"], "device": rep["device"],
                               "kernels": rep.get("kernels", [])}
        log("  kiln         %-3s %10.3f ms (%d runs, compile %.1f ms)" % (
            cid, rep["run_ms"], rep["runs"], rep["compile_ms"]))
    return res


KILN_RUNS = {}


def merge(acc, new):
    """Folds one round's {"results": {cid: {"ms", "runs", ...}}, ...} into acc: the
    best (lowest) median of the rounds is kept, every round's median is listed."""
    if acc is None:
        acc = {k: v for k, v in new.items() if k != "results"}
        acc["results"] = {}
    for k, v in new.items():
        if k in ("info", "checks") and v:
            acc.setdefault(k, {}).update(v)
        elif k == "error" and v and not acc["results"]:
            acc["error"] = v
        elif k == "copy" and v:
            old = acc.get("copy")
            acc["copy"] = v if not old or v["ms"] < old["ms"] else old
            acc["copy"].setdefault("rounds", [])
            acc["copy"]["rounds"] = (old or {}).get("rounds", []) + [v["ms"]]
    for cid, r in new.get("results", {}).items():
        old = acc["results"].get(cid)
        if "ms" not in r:
            if not old:
                acc["results"][cid] = r
            continue
        if old and "ms" in old:
            rounds = old["rounds"] + [r["ms"]]
            best = r if r["ms"] < old["ms"] else old
            best = dict(best, rounds=rounds, runs=old["runs"] + r["runs"])
        else:
            best = dict(r, rounds=[r["ms"]])
        acc["results"][cid] = best
    if acc["results"] and "error" in acc and not new.get("error"):
        acc["error"] = None
    return acc


def run_compile(args):
    """(f): cold compile of every graph of examples/*.kiln: a fresh process each time,
    the on-disk kernel cache off; median of args.compile_reps processes."""
    rows = []
    with tempfile.TemporaryDirectory() as cache:
        env = {"KILN_CACHE": "off", "XDG_CACHE_HOME": cache}
        for path in sorted(os.listdir(os.path.join(ROOT, "examples"))):
            if not path.endswith(".kiln"):
                continue
            full = os.path.join(ROOT, "examples", path)
            with open(full) as f:
                graphs = re.findall(r"^\s*graph\s+(\w+)", f.read(), re.M)
            for g in graphs:
                comp, walls, err = [], [], None
                for _ in range(args.compile_reps):
                    cmd_dims = dict(COMPILE_DIMS)
                    rep, err, wall = kiln_bench_graph(args, full, g, cmd_dims, env)
                    if rep is None:
                        break
                    comp.append(rep["compile_ms"])
                    walls.append(wall)
                row = {"file": path, "graph": g}
                if comp and not err:
                    row.update(compile_ms=statistics.median(comp), wall_ms=statistics.median(walls))
                    log("  kiln compile %-24s %8.1f ms (process %.1f ms)" % (
                        path + ":" + g, row["compile_ms"], row["wall_ms"]))
                else:
                    row["error"] = err
                    log("  kiln compile %-24s %s" % (path + ":" + g, err))
                rows.append(row)
    return rows


def kiln_bench_graph(args, path, graph, dims, env):
    cmd = [args.kiln, "bench", path, "-g", graph, "--device=" + args.device, "--json",
           "--runs=1"]
    for k, v in dims.items():
        cmd += ["--dim", "%s=%d" % (k, v)]
    e = dict(os.environ)
    e.update(env)
    t0 = time.perf_counter()
    try:
        p = run_cmd(cmd, 120, e)
    except subprocess.TimeoutExpired:
        return None, "timed out", None
    except OSError as err:
        return None, str(err), None
    wall = (time.perf_counter() - t0) * 1e3
    if p.returncode != 0:
        return None, (p.stderr.strip().splitlines() or ["exit %d" % p.returncode])[-1], wall
    return json.loads(p.stdout.strip().splitlines()[-1]), None, wall


def snapshot_kiln(args):
    """Copies build/kiln aside for the whole run: other people rebuild it while the bench
    runs, and every figure of one table must come from one binary."""
    import atexit
    import hashlib
    src = args.kiln
    tmp = tempfile.mkdtemp(prefix="kiln-bench-")
    atexit.register(shutil.rmtree, tmp, True)
    dst = os.path.join(tmp, "kiln")
    for attempt in range(10):
        try:
            shutil.copy2(src, dst)
            break
        except OSError:
            if attempt == 9:
                raise
            time.sleep(3)
    with open(dst, "rb") as f:
        sha = hashlib.sha256(f.read()).hexdigest()[:12]
    mtime = datetime.datetime.fromtimestamp(os.path.getmtime(dst)).strftime("%Y-%m-%d %H:%M")
    try:
        rev = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"],
                             capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        rev = (rev or "?") + ("+uncommitted changes" if dirty else "")
    except OSError:
        rev = "?"
    args.kiln_build = "%s built %s, sha256 %s, tree %s" % (os.path.relpath(src, ROOT), mtime, sha, rev)
    args.kiln = dst


def machine():
    model, cores = platform.processor() or "?", os.cpu_count()
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        m = re.search(r"^Model name:\s*(.+)$", out, re.M)
        model = m.group(1).strip() if m else model
        fam = re.search(r"^CPU family:\s*(.+)$", out, re.M)
        if fam:
            model += " (family %s)" % fam.group(1).strip()
    except OSError:
        pass
    flags = ""
    try:
        with open("/proc/cpuinfo") as f:
            fl = re.search(r"^flags\s*:\s*(.+)$", f.read(), re.M).group(1).split()
        flags = ", ".join(x for x in ("avx2", "fma", "avx512f", "avx512_bf16") if x in fl)
    except (OSError, AttributeError):
        pass
    return {"cpu": model, "cores": cores, "isa": flags}


def kiln_version(kiln):
    try:
        return run_cmd([kiln, "--version"], 30).stdout.strip() or "?"
    except (OSError, subprocess.TimeoutExpired):
        return "?"


# ----------------------------------------------------------------------------------
# the table


def num(v):
    return "%.0f" % v if v >= 100 else ("%.1f" % v if v >= 10 else (
        "%.2f" % v if v >= 1 else "%.2g" % v))


def fmt(v, kind):
    if v is None:
        return "n/a"
    if kind == "flops":
        return "%.0f" % v if v >= 10 else "%.2f" % v
    return "%.1f" % v if v >= 10 else ("%.2f" % v if v >= 1 else "%.3f" % v)


def build_table(data, args):
    copy = data.get("copy")
    copy_gbps = copy["gbps"] if copy else None
    peer_cols = [PEER_TITLE[p] for p in PEERS]
    head = ["case", "kiln"] + peer_cols + ["kiln % copy bw", "ratio", "target", "met"]
    rows = []
    notes = []
    peer_notes = []
    for cid, title, kind, _prog, dims in CASES:
        if cid not in data["cases"]:
            continue
        d = scaled_dims(dims, args.scale)
        k = data["kiln"]["results"].get(cid, {})
        kms = k.get("ms")
        flops = case_flops(cid, d)

        def val(ms):
            if ms is None:
                return None
            return flops / ms / 1e6 if kind == "flops" else ms
        kcell = fmt(val(kms), kind) if kms is not None else "n/a"
        check = data["kiln"]["checks"].get(cid)
        if check:
            kcell += " (!)"
            notes.append("(!) kiln %s: %s" % (cid, check))
        if kms is None:
            notes.append("kiln %s n/a: %s" % (cid, k.get("error")))
        cells = [cid + ") " + title, kcell]
        for p in PEERS:
            pr = data["peers"][p]
            r = pr["results"].get(cid)
            if r and "ms" in r:
                cells.append(fmt(val(r["ms"]), kind))
            else:
                cells.append("n/a")
                why = (r or {}).get("error") or pr.get("error") or "not run"
                note = "%s n/a: %s" % (PEER_TITLE[p], why)
                if note not in peer_notes:
                    peer_notes.append(note)
        bw = ""
        nb = case_bytes(cid, d)
        if nb and kms and copy_gbps:
            frac = nb / kms / 1e6 / copy_gbps
            bw = "%.0f%%" % (100 * frac)
        tpeer, tratio, ttext = TARGETS[cid]
        pr = data["peers"][tpeer]["results"].get(cid)
        ratio, met = "n/a", "n/a"
        if pr and "ms" in pr and kms:
            rr = pr["ms"] / kms
            ratio = "%sx vs %s" % (num(rr), PEER_TITLE[tpeer])
            ok = rr >= tratio
            if kind == "bw" and cid in ("b", "c") and bw:
                ok = ok and nb / kms / 1e6 / copy_gbps >= BW_TARGET
            met = "yes" if ok else "no"
        cells += [bw, ratio, ttext, met]
        rows.append(cells)
    for r in data.get("compile", []):
        name = "f) compile %s:%s" % (r["file"][:-5], r["graph"])
        cms = r.get("compile_ms")
        cell = "%s ms" % num(cms) if cms is not None else "n/a"
        if cms is None:
            notes.append("kiln compile %s:%s n/a: %s" % (r["file"], r["graph"], r.get("error")))
        target, met = "", ""
        if r["file"] == "transformer_block.kiln":
            target = "< %.0f ms" % COMPILE_TARGET_MS
            met = ("yes" if cms < COMPILE_TARGET_MS else "no") if cms is not None else "n/a"
        rows.append([name, cell] + ["—"] * len(PEERS) + ["", "", target, met])
    return head, rows, notes + peer_notes


def markdown(head, rows):
    w = [max(len(str(r[i])) for r in [head] + rows) for i in range(len(head))]
    line = lambda r: "| " + " | ".join(str(c).ljust(w[i]) for i, c in enumerate(r)) + " |"
    out = [line(head), "|" + "|".join("-" * (x + 2) for x in w) + "|"]
    out += [line(r) for r in rows]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", choices=sorted(WORKERS))
    ap.add_argument("--cases", default="a,b,c,d1,d2,e,f",
                    help="comma-separated case ids (a,b,c,d1,d2,e,f)")
    ap.add_argument("--peers", default=",".join(PEERS))
    ap.add_argument("--threads", type=int, default=int(os.environ.get("KILN_THREADS", "2")))
    ap.add_argument("--device", default=os.environ.get("KILN_BENCH_DEVICE", "cpu"),
                    help="kiln's device (cpu; kir for a smoke test)")
    ap.add_argument("--kiln", default=os.path.join(ROOT, "build", "kiln"))
    ap.add_argument("--scale", type=int, default=1,
                    help="divide each case's largest dimension by this (smoke tests)")
    ap.add_argument("--budget", type=float, default=2.0,
                    help="seconds of timed runs per case and implementation")
    ap.add_argument("--peer-timeout", type=int, default=240)
    ap.add_argument("--kiln-timeout", type=int, default=180)
    ap.add_argument("--compile-reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=5,
                    help="times the whole sequence runs; the best round's median counts")
    ap.add_argument("--alloc", choices=["warm", "default"], default="warm",
                    help="warm: the peers' glibc keeps freed memory (no page faults on a "
                    "fresh result, as in kiln's bench); default: as the peers come")
    ap.add_argument("--no-check", dest="check", action="store_false",
                    help="skip checking kiln's answers against NumPy on small inputs")
    ap.add_argument("--json", default=os.path.join(ROOT, "build", "bench-cpu.json"),
                    help="where to write every figure (default build/bench-cpu.json)")
    args = ap.parse_args()
    global ALLOC
    ALLOC = args.alloc
    if not args.worker:
        snapshot_kiln(args)
    if args.worker:
        return run_worker(args)

    t_start = time.time()
    case_ids = [c for c in args.cases.split(",") if c]
    bench_ids = [c for c in case_ids if c != "f"]
    peers = [p for p in args.peers.split(",") if p]
    data = {"date": datetime.date.today().isoformat(), "machine": machine(),
            "threads": args.threads, "device": args.device, "scale": args.scale,
            "kiln_version": kiln_version(args.kiln), "kiln_build": args.kiln_build,
            "cases": case_ids,
            "peers": {p: {"info": {}, "results": {}, "error": "not run (--peers)"}
                      for p in PEERS}}
    log("machine: %s, %d cores; %d threads; kiln --device=%s" % (
        data["machine"]["cpu"], data["machine"]["cores"], args.threads, args.device))
    env_note = ", ".join("%s=%s" % (k, os.environ.get(k)) for k in (
        "KILN_THREADS", "OMP_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"))
    data["env"] = env_note
    log("environment: " + env_note)

    # Rounds: case by case, every implementation in turn, each (implementation, case) in
    # a fresh process (a case run after another in the same process can be much slower:
    # onnxruntime's MLP takes 8 ms instead of 2.2 after the 2048^3 session); the whole
    # sequence args.rounds times.  Each figure is the best of its rounds' medians, which
    # keeps a burst of load from another process on this shared machine out of it.
    acc = {p: None for p in peers}
    acc["_copy"] = None
    kacc = None
    data["load"] = []
    for rnd in range(args.rounds):
        data["load"].append(os.getloadavg()[0])
        log("round %d of %d (load average %.2f)" % (rnd + 1, args.rounds, data["load"][-1]))
        acc["_copy"] = merge(acc["_copy"], run_peer("numpy", ["copy"], args))
        log("  copy         %10.3f ms" % (acc["_copy"].get("copy") or {}).get("ms", float("nan")))
        for cid in bench_ids:
            for p in peers:
                acc[p] = merge(acc[p], run_peer(p, [cid], args))
            kacc = merge(kacc, run_kiln(args, [cid], rnd == 0))
    for p in peers:
        if acc[p] is not None:
            data["peers"][p] = acc[p]
    data["copy"] = (acc.get("_copy") or {}).get("copy")
    data["kiln"] = kacc or {"results": {}, "checks": {}}
    data["kiln"].setdefault("checks", {})
    if "f" in case_ids:
        log("kiln cold compiles ...")
        data["compile"] = run_compile(args)
    data["load"].append(os.getloadavg()[0])
    data["elapsed_s"] = time.time() - t_start

    head, rows, notes = build_table(data, args)
    m = data["machine"]
    print("kiln CPU benchmark, %s: %s, %d cores (%s); %d threads everywhere; kiln --device=%s%s"
          % (data["date"], m["cpu"], m["cores"], m["isa"], args.threads, args.device,
             "; SCALED DOWN %dx" % args.scale if args.scale > 1 else ""))
    print()
    print(markdown(head, rows))
    print()
    print("Units: ms per run (lower is better), except d) GFLOP/s (higher is better) and f)"
          " kiln's cold compile_ms (median of %d fresh processes, kernel cache off)." %
          args.compile_reps)
    print("Each run figure is the best of %d rounds' medians (a round runs every case with"
          " every implementation in turn, each in a fresh process); load average at the"
          " rounds' starts and the end: %s." %
          (args.rounds, ", ".join("%.2f" % x for x in data["load"])))
    print("ratio = the target peer's time / kiln's time (for d: kiln GFLOP/s / NumPy's):"
          " above 1 kiln is faster.")
    print("kiln % copy bw = (bytes read + written once) / kiln's time, over NumPy's copy"
          " bandwidth.")
    if data.get("copy"):
        c = data["copy"]
        print("copy bandwidth: NumPy copy of 16M f32 = %.2f ms, %.1f GB/s (read + write;"
              " the faster of 1 thread, %.2f ms, and %d threads, %.2f ms)."
              % (c["ms"], c["gbps"], c.get("ms_1thread", c["ms"]), args.threads,
                 c.get("ms_threads", c["ms"])))
    print("allocator: %s" % (
        "peers run with MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2^40, so a fresh result"
        " reuses memory already faulted in, as kiln's bench (outputs bound once) does"
        if args.alloc == "warm" else "as the peers come (every fresh result faults its"
        " pages in; kiln's bench binds its outputs once)"))
    try:
        with open("/proc/self/autogroup") as f:
            ag = "; autogroup: " + f.read().strip()
    except OSError:
        ag = ""
    print("scheduling: nice %d%s" % (os.nice(0), ag))
    print("kiln: %s (%s)" % (data["kiln_version"], args.kiln_build))
    for p in PEERS:
        info = data["peers"][p]["info"]
        print("%s: %s" % (PEER_TITLE[p], "; ".join(
            str(info[k]) for k in ("version", "blas", "python") if k in info) or "-"))
    for n in notes:
        print("note: " + n)
    print("elapsed: %.0f s" % data["elapsed_s"])
    if args.json:
        os.makedirs(os.path.dirname(args.json), exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(data, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
