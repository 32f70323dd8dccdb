/* probe.h - a clock trace of the CPU backend's launches and of its pool's
 * hand-over, for measurement only: compiled in with -DKILN_PROBE (`make
 * probe` builds build/probe/kiln so), never in the timed build, where
 * PROBE() is nothing.  Each event is (the pool thread's index, 0 for the
 * caller; its kind; an argument; the time stamp counter; the CPU it ran
 * on), kept per OS thread and written at exit to $KILN_PROBE_OUT, one
 * "thread kind arg stamp cpu" line each after a "# stamps_per_us X" line.
 * bench/poolprobe.py runs and reads it (docs/performance.md, "Session 19:
 * the time between kernels"). */
#ifndef KILN_PROBE_H
#define KILN_PROBE_H

enum {
    PROBE_LAUNCH = 1,        /* the CPU backend's launch of kernel `arg` begins */
    PROBE_SOLO_END = 2,      /* kernel `arg`, run on the calling thread alone, is done */
    PROBE_POST = 3,          /* the caller posts job `arg` (its generation) */
    PROBE_CALLER_DONE = 4,   /* the caller finds no unit of job `arg` left to claim */
    PROBE_CLOSED = 5,        /* every worker has left job `arg`: the launch returns */
    PROBE_WORKER_SEES = 10,  /* a worker sees job `arg` */
    PROBE_WORKER_JOINS = 11, /* a worker joins job `arg` */
    PROBE_WORKER_DONE = 12,  /* a worker finds no unit of job `arg` left */
    PROBE_CHUNK_BEGIN = 20,  /* a chunk of `arg` units (negative: taken from another thread's part) */
    PROBE_CHUNK_END = 21,
};

#ifdef KILN_PROBE
void probe_mark(int thread, int kind, long arg);
#define PROBE(thread, kind, arg) probe_mark((thread), (kind), (long)(arg))
#else
#define PROBE(thread, kind, arg) ((void)0)
#endif

#endif
