#!/usr/bin/env python3
"""Two kiln binaries, A and B, on one `kiln bench` case, compared by the CPU time one run
costs: for a loaded machine, where wall-clock times of the same kernel move by +-20-50 %
between runs (docs/performance.md, "Session 6").

    bench/abcpu.py --a OLD/kiln --b build/kiln [--rounds 5] [--runs 205] [--base-runs 5] \\
        [--threads 1] -- PROGRAM [--weights W] [--dim N=1 ...]

Each round runs `A bench CASE --runs=RUNS`, `A bench CASE --runs=BASE`, then the same for
B (alternating), and takes each process's CPU time (user + system, its threads summed:
os.wait4's rusage, counted only while it ran); (cpu(RUNS) - cpu(BASE)) / (RUNS - BASE) is
the CPU milliseconds of one run, without the compile and set-up both share.  With 1
thread (the default) that measures the work, not the waits; with more threads it adds
the workers' spinning.  KILN_CACHE=off, so that both binaries compile their own code.
Prints per binary the median and min over the rounds, every round's value, and A's
median over B's (above 1: B costs less).  Use enough runs that the compile's jitter
(tens of ms of CPU) divided by RUNS - BASE is small against one run.
"""
import argparse
import os
import statistics
import subprocess
import sys


def cpu_ms(kiln, case, runs, threads):
    env = dict(os.environ, KILN_THREADS=str(threads), KILN_CACHE="off")
    proc = subprocess.Popen([kiln, "bench"] + case + [f"--runs={runs}"], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"abcpu: {kiln} bench failed:\n{err[-2000:]}")
    return (usage.ru_utime + usage.ru_stime) * 1000.0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--a", required=True, help="the first kiln binary (the base)")
    ap.add_argument("--b", required=True, help="the second kiln binary")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--runs", type=int, default=205)
    ap.add_argument("--base-runs", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("case", nargs=argparse.REMAINDER, help="-- then kiln bench's arguments")
    args = ap.parse_args()
    case = args.case[1:] if args.case[:1] == ["--"] else args.case
    if not case or args.runs <= args.base_runs:
        ap.error("give the case after --, and --runs > --base-runs")
    per = {"A": [], "B": []}
    loads = []
    for _ in range(args.rounds):
        for which, kiln in (("A", args.a), ("B", args.b)):
            full = cpu_ms(kiln, case, args.runs, args.threads)
            base = cpu_ms(kiln, case, args.base_runs, args.threads)
            per[which].append((full - base) / (args.runs - args.base_runs))
        loads.append(os.getloadavg()[0])
    print(f"case: kiln bench {' '.join(case)}; {args.threads} thread(s), {args.rounds} rounds, "
          f"load {min(loads):.1f}-{max(loads):.1f}; CPU ms per run")
    print("| binary | median | min | rounds |")
    print("|---|---|---|---|")
    for which, kiln in (("A", args.a), ("B", args.b)):
        v = per[which]
        print(f"| {which}: {kiln} | {statistics.median(v):.3f} | {min(v):.3f} | "
              f"{' '.join('%.3f' % x for x in v)} |")
    print(f"A / B: {statistics.median(per['A']) / statistics.median(per['B']):.3f}x")


if __name__ == "__main__":
    main()
