/* threadpool.h - a small pthread pool for running the chunks of one kernel.
 *
 * tp_run(pool, fn, ctx, ntasks) calls fn(ctx, t, thread) once for every t in
 * [0, ntasks), spread over the pool's workers and the calling thread, and
 * returns when all have finished.  `thread` (in [0, tp_size)) names the
 * thread running the task (0: the caller), so per-thread memory can serve
 * any number of tasks; threads claim tasks one at a time, so with several
 * tasks per thread a worker that starts late costs only what it did not
 * claim.  Callers on several threads may share a
 * pool: while one tp_run uses the workers, another runs its tasks on its
 * own thread (a service's requests then run side by side).
 * tp_run_ranges runs a range of units instead, each thread its own part of
 * it first (runtime/cpu.c splits every kernel so).  Idle
 * workers spin briefly (kernels of one graph come in quick succession),
 * yielding their core now and then after the first microseconds (so a
 * pool whose threads share a core with another program still gets on),
 * then sleep on a condition variable; a job is posted, joined, closed and
 * left through one atomic word (no lock unless a thread sleeps).  A worker
 * the scheduler left on the caller's CPU (waiting behind it) is moved to
 * another CPU of its mask, then left free (KILN_MOVE_THREADS=0: never). */
#ifndef KILN_THREADPOOL_H
#define KILN_THREADPOOL_H

#include <stdint.h>

typedef struct ThreadPool ThreadPool;

/* A pool running tasks on `nthreads` threads in all (the caller included, so
 * nthreads - 1 workers).  Returns NULL if threads cannot be created; callers
 * then run tasks themselves (tp_run(NULL, ...) does so). */
ThreadPool *tp_new(int nthreads);
int tp_size(const ThreadPool *tp); /* 1 for NULL */
void tp_run(ThreadPool *tp, void (*fn)(void *ctx, int task, int thread), void *ctx, int ntasks);
/* Calls fn(ctx, u0, u1, thread) for disjoint ranges [u0, u1) that cover
 * [0, units), and returns when all have finished.  Thread t owns the t-th
 * of tp_size equal parts of [0, units) and runs it from its start, each
 * claim about three quarters of what is left of it; a thread whose part is
 * done takes halves from the end of the part with the most left.  So each thread
 * works on the same part of every kernel's range (the part of the output
 * it wrote the kernel before, still in its core's cache, when both split
 * their data alike) and a late thread still costs only what it did not
 * claim.  Not shared (another caller holds the pool, one thread, one
 * unit, 2^32 units or more): fn(ctx, 0, units, 0). */
void tp_run_ranges(ThreadPool *tp, void (*fn)(void *ctx, int64_t u0, int64_t u1, int thread), void *ctx,
                   int64_t units);
void tp_free(ThreadPool *tp);

/* The number of threads to use: KILN_THREADS if set (>= 1), else the online
 * cores. */
int tp_default_threads(void);

#endif
