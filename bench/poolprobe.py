#!/usr/bin/env python3
"""Where a run's time goes between and around the CPU backend's kernels: the pool's clock trace
(runtime/probe.h) of `kiln bench` processes, per kernel and summed over a run.

    make probe    # build/probe/kiln: build/kiln with the trace compiled in (-DKILN_PROBE)
    /work/wt/bin/quiet bench/poolprobe.py [--threads 2] [--processes 3] [--runs 300] [--kernels] \\
        -- build/bench-models/mobilenetv2.onnx --dim N=1

Each process runs `build/probe/kiln bench CASE --device=cpu --json --runs=RUNS` (KILN_THREADS,
nice as the caller's) and writes its events to build/probe/trace-P.txt.  Per kernel, the
median over the runs (the warm-up left out) of:
  kernel  its launch to its end (the launch's return: every worker out of the job);
  setup   the launch to the job's post (task tables, the parts);
  c1, w1  the post to the caller's / the first worker's first chunk;
  imb     the caller's last chunk's end minus the last worker's (+: the caller ends last);
  tail    the later last chunk's end to the launch's return (the close);
  gap     the end to the next kernel's launch (the executor, its clock reads);
  idle    pool threads x kernel minus the chunks' time, summed over the threads;
and the units each thread ran (stolen: from another's part); per process, how many split
launches a worker ran chunks of, and how many it saw on the caller's CPU (stacked: the
scheduler left it waiting behind the caller, runtime/threadpool.c's unstack).  Then, per process, those
summed over the kernels, the run's median and mean, and the sum of the kernels' medians
and means: `kiln bench`'s run time is the sum of its kernels' by construction (one clock
read between two launches), so a run median above the sum of kernel medians is the skew of
the runs' times, not time between kernels.  One caller at a time (a second caller of the
same pool runs its kernels on its own thread, unmarked).
"""
import argparse
import collections
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LAUNCH, SOLO_END, POST, CALLER_DONE, CLOSED = 1, 2, 3, 4, 5
WORKER_SEES, WORKER_JOINS, WORKER_DONE = 10, 11, 12
CHUNK_BEGIN, CHUNK_END = 20, 21


def read_trace(path):
    per_us = 1e3
    ev = collections.defaultdict(list)
    with open(path) as f:
        for line in f:
            if line.startswith("#"):
                per_us = float(line.split()[-1])
                continue
            t, k, a, s, cpu = line.split()
            ev[int(t)].append((int(s), int(k), int(a), int(cpu)))
    for t in ev:
        ev[t].sort()
    return ev, per_us


def worker_jobs(events):
    """{generation: {'chunks': [[begin, end, units]], 'done': stamp}} of one worker."""
    jobs, cur = {}, None
    for s, k, a, cpu in events:
        if k == WORKER_SEES:
            cur = jobs[a] = {"chunks": [], "cpu": cpu}
        elif cur is None:
            continue
        elif k == CHUNK_BEGIN:
            cur["chunks"].append([s, None, a])
        elif k == CHUNK_END and cur["chunks"]:
            cur["chunks"][-1][1] = s
        elif k == WORKER_DONE:
            cur["done"] = s
    return jobs


def launches(events):
    """The caller's launches in order: {'k', 'launch', 'end', 'post', 'gen', 'chunks'}."""
    out, cur = [], None
    for s, k, a, cpu in events:
        if k == LAUNCH:
            cur = {"k": a, "launch": s, "chunks": []}
            out.append(cur)
        elif cur is None:
            continue
        elif k == SOLO_END:
            cur["end"] = s
        elif k == POST:
            cur["post"], cur["gen"], cur["cpu"] = s, a, cpu
        elif k == CHUNK_BEGIN:
            cur["chunks"].append([s, None, a])
        elif k == CHUNK_END and cur["chunks"]:
            cur["chunks"][-1][1] = s
        elif k == CLOSED:
            cur["end"] = s
    return out


def analyse(path, keep_runs):
    ev, per_us = read_trace(path)
    workers = [worker_jobs(ev[t]) for t in sorted(ev) if t > 0]
    runs, run = [], None
    last_k = None
    for l in launches(ev.get(0, [])):
        if last_k is None or l["k"] <= last_k:
            run = []
            runs.append(run)
        run.append(l)
        last_k = l["k"]
    runs = [r for r in runs[1:] if all("end" in l for l in r)][-keep_runs:]  # no warm-up
    us = lambda d: d / per_us
    per = collections.defaultdict(lambda: collections.defaultdict(list))
    for r in runs:
        for i, l in enumerate(r):
            d = per[l["k"]]
            d["kernel"].append(us(l["end"] - l["launch"]))
            if i + 1 < len(r):
                d["gap"].append(us(r[i + 1]["launch"] - l["end"]))
            if "post" not in l:
                d["units_c"].append(0)
                continue
            jobs = [w[l["gen"]] for w in workers if l["gen"] in w]
            cc = [c for c in l["chunks"] if c[1] is not None]
            wc = [[c for c in j["chunks"] if c[1] is not None] for j in jobs]
            wc = [c for c in wc if c]
            d["setup"].append(us(l["post"] - l["launch"]))
            if cc:
                d["c1"].append(us(cc[0][0] - l["post"]))
            if wc:
                d["w1"].append(us(min(c[0][0] for c in wc) - l["post"]))
            c_last = cc[-1][1] if cc else l["post"]
            w_last = max(c[-1][1] for c in wc) if wc else None
            if w_last is not None:
                d["imb"].append(us(c_last - w_last))
            d["tail"].append(us(l["end"] - max(c_last, w_last or 0)))
            busy = sum(c[1] - c[0] for c in cc) + sum(c[1] - c[0] for w in wc for c in w)
            d["idle"].append(us((1 + len(workers)) * (l["end"] - l["launch"]) - busy))
            d["units_c"].append(sum(abs(c[2]) for c in cc))
            d["units_w"].append(sum(abs(c[2]) for w in wc for c in w))
            d["stolen_c"].append(sum(abs(c[2]) for c in cc if c[2] < 0))
            d["stolen_w"].append(sum(abs(c[2]) for w in wc for c in w if c[2] < 0))
    whole = [us(r[-1]["end"] - r[0]["launch"]) for r in runs]
    # how the workers took part: split launches a worker ran a chunk of, and
    # those where it saw the job on the caller's CPU
    posted = [l for r in runs for l in r if "post" in l]
    ran = lambda l: any(l["gen"] in w and w[l["gen"]]["chunks"] for w in workers)
    joined = sum(1 for l in posted if ran(l))
    # runs in which the workers ran chunks of under 90 % of the split launches
    short = [i for i, r in enumerate(runs)
             if sum(1 for l in r if "post" in l and ran(l)) < 0.9 * sum(1 for l in r if "post" in l)]
    stacked = sum(1 for l in posted if any(l["gen"] in w and w[l["gen"]]["cpu"] == l["cpu"] for w in workers))
    return runs, per, whole, (len(posted), joined, stacked, short)


def ranges(ix):
    """[0, 1, 2, 5] -> '0-2, 5'"""
    out, start = [], None
    for j, i in enumerate(ix):
        if start is None:
            start = i
        if j + 1 == len(ix) or ix[j + 1] != i + 1:
            out.append(f"{start}-{i}" if i > start else f"{i}")
            start = None
    return ", ".join(out)


def med(v):
    return statistics.median(v) if v else 0.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kiln", default=str(ROOT / "build/probe/kiln"), help="a kiln built by `make probe`")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--processes", type=int, default=3)
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--kernels", action="store_true", help="the per-kernel table of each process")
    ap.add_argument("case", nargs=argparse.REMAINDER, help="-- then kiln bench's arguments")
    args = ap.parse_args()
    case = args.case[1:] if args.case[:1] == ["--"] else args.case
    if not case:
        ap.error("give the case after --")
    out_dir = Path(args.kiln).resolve().parent
    keys = ["kernel", "setup", "c1", "w1", "imb", "tail", "gap", "idle"]
    for p in range(1, args.processes + 1):
        trace = out_dir / f"trace-{p}.txt"
        env = dict(os.environ, KILN_THREADS=str(args.threads), KILN_PROBE_OUT=str(trace))
        r = subprocess.run([args.kiln, "bench"] + case + ["--device=cpu", "--json", f"--runs={args.runs}"],
                           env=env, capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"poolprobe: {args.kiln} bench failed:\n{r.stderr[-2000:]}")
        names = [k["name"] for k in json.loads(r.stdout)["kernels"]]
        runs, per, whole, (posted, joined, stacked, short) = analyse(trace, args.runs)
        if not runs:
            sys.exit(f"poolprobe: no whole run in {trace} (is {args.kiln} built by `make probe`?)")
        sums = {k: sum(med(per[i][k]) for i in per) for k in keys}
        abs_imb = sum(med([abs(v) for v in per[i]["imb"]]) for i in per)
        split = sum(1 for i in per if per[i]["setup"])
        means = sum(statistics.mean(per[i]["kernel"]) + (statistics.mean(per[i]["gap"]) if per[i]["gap"] else 0)
                    for i in per)
        print(f"process {p}: {len(runs)} runs of {len(per)} kernels ({split} split over {args.threads} threads); "
              f"run median {med(whole):.1f} us, mean {statistics.mean(whole):.1f}; kernels' medians + gaps "
              f"{sums['kernel'] + sums['gap']:.1f}, means {means:.1f}")
        print(f"  workers: ran a chunk of {joined} of {posted} split launches; saw {stacked} of them on the "
              "caller's CPU" + (f"; missed over 10 % of them in runs {ranges(short)}" if short else ""))
        print("  summed over the kernels (medians, us): " + ", ".join(f"{k} {sums[k]:.1f}" for k in keys[1:]) +
              f", |imb| {abs_imb:.1f}")
        if args.kernels:
            print("  %3s %-40s %7s %5s %5s %5s %6s %5s %5s %5s %9s %7s" %
                  ("k", "name", "kernel", "setup", "c1", "w1", "imb", "tail", "gap", "idle", "units c/w", "stolen"))
            for i in sorted(per):
                d = per[i]
                print("  %3d %-40s %7.1f %5.2f %5.2f %5.2f %6.2f %5.2f %5.2f %5.1f %4d/%-4d %3d/%-3d" %
                      (i, names[i][:40] if i < len(names) else "?", med(d["kernel"]), med(d["setup"]), med(d["c1"]),
                       med(d["w1"]), med(d["imb"]), med(d["tail"]), med(d["gap"]), med(d["idle"]),
                       med(d["units_c"]), med(d["units_w"]), med(d["stolen_c"]), med(d["stolen_w"])))


if __name__ == "__main__":
    main()
