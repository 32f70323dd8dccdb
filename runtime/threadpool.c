/* threadpool.c - see threadpool.h. */
#include "runtime/threadpool.h"
#include "runtime/probe.h"

#include "base/base.h"

#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

typedef struct WorkerArg WorkerArg;

/* One thread's part of a tp_run_ranges job: the units [lo, hi) not yet
 * claimed, lo in the high 32 bits and hi in the low ones (claimed from
 * either end by one compare-and-swap), a cache line of its own. */
typedef struct {
    _Alignas(64) _Atomic uint64_t span;
} Part;

/* The job's state word: its generation in the high 32 bits, OPEN while
 * workers may still join it, and the number of workers inside it below. */
#define JOB_OPEN ((uint64_t)1 << 31)
#define JOB_BUSY (JOB_OPEN - 1)
static unsigned job_gen(uint64_t s) { return (unsigned)(s >> 32); }

struct ThreadPool {
    int nthreads;
    pthread_t *workers;
    WorkerArg *args; /* per worker: the pool and its thread index */
    int nworkers;
    /* one cache line: what a job's hand-over reads and writes (the state,
     * who sleeps, the job itself), so that posting, joining, closing and
     * leaving a job each move only this line between the cores */
    struct {
        _Alignas(64) _Atomic uint64_t state;
        atomic_int sleepers;     /* workers asleep on `wake` (or about to be) */
        atomic_int caller_waits; /* the caller asleep on `done` (or about to be) */
        /* the current job: tasks (fn) or ranges (range_fn over parts) */
        void (*fn)(void *ctx, int task, int thread);
        void (*range_fn)(void *ctx, int64_t u0, int64_t u1, int thread);
        void *ctx;
        int ntasks;
        atomic_int caller_cpu; /* the CPU the caller posted the job from */
    } job;
    _Alignas(64) atomic_int next; /* next task to claim */
    Part *parts;                  /* per thread, for range jobs */
    pthread_mutex_t mu;           /* the sleeping paths only */
    pthread_cond_t wake, done;
    pthread_mutex_t owner; /* held by the tp_run using the workers */
    atomic_int quit;
    /* whether workers stacked on the caller's CPU are moved (see unstack),
     * and when the caller last moved one */
    bool unstack;
    double moved_ms;
};

/* How long a thread waits spinning before it sleeps: a worker for the next
 * job (a graph's kernels come in quick succession), the caller for the
 * workers' last tasks.  A sleep costs a futex wake-up, several microseconds
 * (tens under a hypervisor), once per kernel.  After SPIN_ALONE pauses
 * (about 5 us) the spinning thread yields its core every YIELD_EVERY pauses:
 * when another program holds a core and the pool's two threads share the
 * other, the one that spins lets the one with work run (without it each
 * kernel cost up to the full spin, 0.5 ms on Zen 5: MobileNetV2 at batch 1
 * ran in 5-8 ms instead of 2).  The spin ends SPIN_MS after the yields
 * began, counted in time, not pauses: 0.5 ms, what the 20000 pauses spun
 * before the yields on Zen 5; counted in pauses, the time a yield gives the
 * core away made each worker's spin after a job about 1 ms on 2 threads and
 * 2 ms on 7 (the review of session 17). */
enum { SPIN_ALONE = 200, YIELD_EVERY = 16 };
#define SPIN_MS 0.5

/* A worker that has seen none of the last STARVED_JOBS jobs waits behind
 * the caller on its CPU; each thread moves a worker at most once every
 * MOVE_EVERY_MS (see unstack). */
enum { STARVED_JOBS = 16 };
#define MOVE_EVERY_MS 1.0

static void spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* A spin-wait: its pauses so far and when its yields began. */
typedef struct {
    int pauses;
    double yields_since_ms;
} Spin;

/* One step of a spin-wait: a pause, after SPIN_ALONE of them a yield now
 * and then; false once its time is up (see SPIN_MS). */
static bool spin_step(Spin *sp) {
    spin_pause();
    int n = ++sp->pauses;
    if (n < SPIN_ALONE) return true;
    if (n == SPIN_ALONE) sp->yields_since_ms = clock_ms(CLOCK_MONOTONIC);
    if (n % YIELD_EVERY != 0) return true;
    sched_yield();
    return clock_ms(CLOCK_MONOTONIC) - sp->yields_since_ms < SPIN_MS;
}

static void run_tasks(ThreadPool *tp, int thread) {
    for (;;) {
        int t = atomic_fetch_add(&tp->next, 1);
        if (t >= tp->job.ntasks) break;
        tp->job.fn(tp->job.ctx, t, thread);
    }
}

static uint64_t span_of(uint64_t lo, uint64_t hi) { return lo << 32 | hi; }

/* Claims from part p (at least one unit): its owner about three quarters of
 * what is left of it, from the front; another thread half, from the back.
 * False when the part is empty.  The owner's chunks are few and large
 * (each chunk of a product reads its packed operands again: a 7x7 layer
 * split by rows streams its gathered B once per chunk; ResNet-18's 7x7
 * layers ran 1.6-4.6 % faster than with halves) while a thread done first
 * still finds a quarter of the other's part to take. */
static bool claim(Part *p, bool front, int64_t *u0, int64_t *u1) {
    uint64_t v = atomic_load_explicit(&p->span, memory_order_relaxed);
    for (;;) {
        uint64_t lo = v >> 32, hi = v & 0xffffffffu;
        if (lo >= hi) return false;
        uint64_t left = hi - lo, n = front ? left - left / 4 : (left + 1) / 2;
        uint64_t w = front ? span_of(lo + n, hi) : span_of(lo, hi - n);
        if (atomic_compare_exchange_weak(&p->span, &v, w)) {
            *u0 = (int64_t)(front ? lo : hi - n), *u1 = (int64_t)(front ? lo + n : hi);
            return true;
        }
    }
}

/* Thread `thread` runs its own part from the front, then takes from the
 * back of whichever part has the most left until every part is empty. */
static void run_ranges(ThreadPool *tp, int thread) {
    int64_t u0, u1;
    void (*fn)(void *, int64_t, int64_t, int) = tp->job.range_fn;
    void *ctx = tp->job.ctx;
    while (claim(&tp->parts[thread], true, &u0, &u1)) {
        PROBE(thread, PROBE_CHUNK_BEGIN, u1 - u0);
        fn(ctx, u0, u1, thread);
        PROBE(thread, PROBE_CHUNK_END, 0);
    }
    for (;;) {
        int most = -1;
        uint64_t most_left = 0;
        for (int t = 0; t < tp->nthreads; t++) {
            uint64_t v = atomic_load_explicit(&tp->parts[t].span, memory_order_relaxed);
            uint64_t lo = v >> 32, hi = v & 0xffffffffu;
            if (hi > lo && hi - lo > most_left) most = t, most_left = hi - lo;
        }
        if (most < 0) return;
        if (claim(&tp->parts[most], false, &u0, &u1)) {
            PROBE(thread, PROBE_CHUNK_BEGIN, u0 - u1);
            fn(ctx, u0, u1, thread);
            PROBE(thread, PROBE_CHUNK_END, 0);
        }
    }
}

static void run_job(ThreadPool *tp, int thread) {
    if (tp->job.range_fn)
        run_ranges(tp, thread);
    else
        run_tasks(tp, thread);
}

struct WorkerArg {
    _Alignas(64) atomic_uint seen; /* the generation of the last job it saw */
    ThreadPool *tp;
    int index; /* 1.. : the caller is thread 0 */
};

/* Moves `thread` (worker `index`, 1..) off `cpu`, the caller's: confined to
 * one other CPU of its affinity mask, which moves it there at once, then
 * given its mask back, which leaves it there until the scheduler moves it
 * (a mask that someone else changes between the read and the restore is
 * written back as it was read: a narrow window, not closed).  Worker
 * i goes to the i-th CPU of the mask after the caller's (the caller's
 * skipped), so that workers moved together spread.  Nothing where the mask
 * has one CPU. */
static void move_off(pthread_t thread, int index, int cpu) {
    cpu_set_t mask, one;
    if (pthread_getaffinity_np(thread, sizeof mask, &mask) != 0) return;
    int list[CPU_SETSIZE], n = 0, at = 0;
    for (int c = 0; c < CPU_SETSIZE; c++)
        if (CPU_ISSET(c, &mask)) {
            if (c == cpu) at = n;
            list[n++] = c;
        }
    if (n < 2) return;
    CPU_ZERO(&one);
    CPU_SET(list[(at + 1 + (index - 1) % (n - 1)) % n], &one);
    if (pthread_setaffinity_np(thread, sizeof one, &one) == 0)
        pthread_setaffinity_np(thread, sizeof mask, &mask);
}

/* Waits for a job of a generation other than `seen` (spinning, then
 * asleep on `wake`) and sets *s to its state; false when the pool is being
 * freed. */
static bool next_job(ThreadPool *tp, unsigned seen, uint64_t *s) {
    Spin spin = {0};
    do {
        *s = atomic_load(&tp->job.state);
        if (job_gen(*s) != seen) return true;
        if (atomic_load_explicit(&tp->quit, memory_order_relaxed)) return false;
    } while (spin_step(&spin));
    /* asleep: a caller that posts a job after this thread counted itself
     * in `sleepers` sees the count and wakes it under `mu` */
    pthread_mutex_lock(&tp->mu);
    atomic_fetch_add(&tp->job.sleepers, 1);
    while (job_gen(*s = atomic_load(&tp->job.state)) == seen && !atomic_load(&tp->quit))
        pthread_cond_wait(&tp->wake, &tp->mu);
    atomic_fetch_sub(&tp->job.sleepers, 1);
    pthread_mutex_unlock(&tp->mu);
    return !atomic_load(&tp->quit);
}

static void *worker_main(void *arg) {
    WorkerArg *me = arg;
    ThreadPool *tp = me->tp;
    int index = me->index;
    unsigned seen = 0;
    uint64_t s;
    double moved_ms = -MOVE_EVERY_MS;
    while (next_job(tp, seen, &s)) {
        PROBE(index, PROBE_WORKER_SEES, job_gen(s));
        atomic_store_explicit(&me->seen, job_gen(s), memory_order_relaxed);
        /* on the caller's CPU (the scheduler put it there): move to another */
        if (tp->unstack) {
            int cpu = atomic_load_explicit(&tp->job.caller_cpu, memory_order_relaxed);
            if (sched_getcpu() == cpu) {
                double now = clock_ms(CLOCK_MONOTONIC);
                if (now - moved_ms >= MOVE_EVERY_MS) moved_ms = now, move_off(pthread_self(), index, cpu);
            }
        }
        /* join the job while it is open (one compare-and-swap); a job
         * already closed is over for this thread */
        bool joined = false;
        for (;;) {
            seen = job_gen(s);
            if (!(s & JOB_OPEN)) break;
            if (atomic_compare_exchange_weak(&tp->job.state, &s, s + 1)) {
                joined = true;
                break;
            }
        }
        if (!joined) continue;
        PROBE(index, PROBE_WORKER_JOINS, seen);
        run_job(tp, index);
        PROBE(index, PROBE_WORKER_DONE, seen);
        /* leave it; the last one out wakes a caller that sleeps */
        uint64_t left = atomic_fetch_sub(&tp->job.state, 1) - 1;
        if ((left & JOB_BUSY) == 0 && atomic_load(&tp->job.caller_waits)) {
            pthread_mutex_lock(&tp->mu);
            pthread_cond_broadcast(&tp->done);
            pthread_mutex_unlock(&tp->mu);
        }
    }
    return NULL;
}

ThreadPool *tp_new(int nthreads) {
    if (nthreads < 1) nthreads = 1;
    ThreadPool *tp = aligned_alloc(_Alignof(ThreadPool), sizeof *tp);
    if (!tp) return NULL;
    memset(tp, 0, sizeof *tp);
    tp->nthreads = nthreads;
    pthread_mutex_init(&tp->mu, NULL);
    pthread_mutex_init(&tp->owner, NULL);
    pthread_cond_init(&tp->wake, NULL);
    pthread_cond_init(&tp->done, NULL);
    atomic_init(&tp->job.state, 0);
    atomic_init(&tp->job.sleepers, 0);
    atomic_init(&tp->job.caller_waits, 0);
    atomic_init(&tp->next, 0);
    atomic_init(&tp->quit, 0);
    if (nthreads > 1) {
        tp->workers = calloc((size_t)nthreads - 1, sizeof(pthread_t));
        tp->args = aligned_alloc(_Alignof(WorkerArg), sizeof(WorkerArg) * ((size_t)nthreads - 1));
        if (tp->args) memset(tp->args, 0, sizeof(WorkerArg) * ((size_t)nthreads - 1));
        if (!tp->workers || !tp->args) {
            tp_free(tp);
            return NULL;
        }
        /* moves only where this thread may run on as many CPUs as the pool
         * has threads, or more: with fewer, threads must share CPUs, and a
         * worker moved off the caller's would crowd another's */
        cpu_set_t mask;
        const char *env = getenv("KILN_MOVE_THREADS");
        tp->unstack = !(env && !strcmp(env, "0")) &&
                      pthread_getaffinity_np(pthread_self(), sizeof mask, &mask) == 0 &&
                      CPU_COUNT(&mask) >= nthreads;
        tp->moved_ms = -MOVE_EVERY_MS;
        for (int i = 0; i < nthreads - 1; i++) {
            tp->args[i].tp = tp, tp->args[i].index = i + 1;
            atomic_init(&tp->args[i].seen, 0);
            if (pthread_create(&tp->workers[i], NULL, worker_main, &tp->args[i]) != 0) break;
            tp->nworkers++;
        }
        tp->nthreads = tp->nworkers + 1;
    }
    tp->parts = aligned_alloc(_Alignof(Part), sizeof(Part) * (size_t)tp->nthreads);
    if (!tp->parts) {
        tp_free(tp);
        return NULL;
    }
    for (int t = 0; t < tp->nthreads; t++) atomic_init(&tp->parts[t].span, 0);
    return tp;
}

int tp_size(const ThreadPool *tp) { return tp ? tp->nthreads : 1; }

/* Moves the workers that wait behind the caller on its CPU.  The scheduler
 * sometimes wakes or starts a worker on the caller's CPU while the other is
 * idle and leaves it there: the caller, busy, runs every chunk itself and
 * the worker waits its turn (on Zen 5 under KVM, 2 threads: 0.8 % of the
 * CPU in a process of 12000 runs of a 0.13 ms graph, which ran at one
 * thread's speed, 0.24 ms), or the two take turns.  A worker that runs
 * checks its CPU against the caller's as it sees each job and moves itself;
 * one that does not run is moved by the caller once it has missed
 * STARVED_JOBS jobs.  At most a move a millisecond by the caller. */
static void unstack(ThreadPool *tp, unsigned gen) {
    double now = -1;
    for (int i = 0; i < tp->nworkers; i++) {
        unsigned seen = atomic_load_explicit(&tp->args[i].seen, memory_order_relaxed);
        if (gen - seen < STARVED_JOBS) continue;
        if (now < 0) now = clock_ms(CLOCK_MONOTONIC);
        if (now - tp->moved_ms < MOVE_EVERY_MS) return;
        tp->moved_ms = now;
        move_off(tp->workers[i], i + 1, sched_getcpu());
    }
}

/* Runs the job set in tp (under `owner`) on the caller and the workers. */
static void run_shared(ThreadPool *tp) {
    /* post it: a new generation, open, nobody inside (the last job is
     * closed and empty, so no worker changes the state meanwhile) */
    uint64_t s = atomic_load_explicit(&tp->job.state, memory_order_relaxed);
    unsigned gen = job_gen(s) + 1;
    if (tp->unstack) atomic_store_explicit(&tp->job.caller_cpu, sched_getcpu(), memory_order_relaxed);
    atomic_store(&tp->job.state, (uint64_t)gen << 32 | JOB_OPEN);
    PROBE(0, PROBE_POST, gen);
    if (atomic_load(&tp->job.sleepers) > 0) {
        pthread_mutex_lock(&tp->mu);
        pthread_cond_broadcast(&tp->wake);
        pthread_mutex_unlock(&tp->mu);
    }
    run_job(tp, 0);
    PROBE(0, PROBE_CALLER_DONE, gen);
    /* every task is claimed: close the job to late workers and wait for
     * those inside it to finish their last task, spinning first (the last
     * chunks are small) */
    s = atomic_fetch_and(&tp->job.state, ~JOB_OPEN);
    for (Spin spin = {0}; (s & JOB_BUSY) && spin_step(&spin);) s = atomic_load(&tp->job.state);
    if (s & JOB_BUSY) {
        pthread_mutex_lock(&tp->mu);
        atomic_store(&tp->job.caller_waits, 1);
        while (atomic_load(&tp->job.state) & JOB_BUSY) pthread_cond_wait(&tp->done, &tp->mu);
        atomic_store(&tp->job.caller_waits, 0);
        pthread_mutex_unlock(&tp->mu);
    }
    PROBE(0, PROBE_CLOSED, gen);
    if (tp->unstack && gen % STARVED_JOBS == 0) unstack(tp, gen);
    pthread_mutex_unlock(&tp->owner);
}

void tp_run(ThreadPool *tp, void (*fn)(void *ctx, int task, int thread), void *ctx, int ntasks) {
    /* no workers, nothing to share, or the workers busy with another
     * caller's job: this thread runs every task */
    if (!tp || tp->nworkers == 0 || ntasks <= 1 || pthread_mutex_trylock(&tp->owner) != 0) {
        for (int t = 0; t < ntasks; t++) fn(ctx, t, 0);
        return;
    }
    tp->job.fn = fn, tp->job.range_fn = NULL, tp->job.ctx = ctx, tp->job.ntasks = ntasks;
    atomic_store(&tp->next, 0);
    run_shared(tp);
}

void tp_run_ranges(ThreadPool *tp, void (*fn)(void *ctx, int64_t u0, int64_t u1, int thread), void *ctx,
                   int64_t units) {
    if (units <= 0) return;
    if (!tp || tp->nworkers == 0 || units == 1 || units > UINT32_MAX ||
        pthread_mutex_trylock(&tp->owner) != 0) {
        fn(ctx, 0, units, 0);
        return;
    }
    tp->job.fn = NULL, tp->job.range_fn = fn, tp->job.ctx = ctx;
    int n = tp->nthreads;
    for (int t = 0; t < n; t++)
        atomic_store_explicit(&tp->parts[t].span, span_of((uint64_t)(units * t / n), (uint64_t)(units * (t + 1) / n)),
                              memory_order_relaxed);
    run_shared(tp);
}

void tp_free(ThreadPool *tp) {
    if (!tp) return;
    pthread_mutex_lock(&tp->mu);
    atomic_store(&tp->quit, 1);
    pthread_cond_broadcast(&tp->wake);
    pthread_mutex_unlock(&tp->mu);
    for (int i = 0; i < tp->nworkers; i++) pthread_join(tp->workers[i], NULL);
    free(tp->workers);
    free(tp->args);
    free(tp->parts);
    pthread_mutex_destroy(&tp->mu);
    pthread_mutex_destroy(&tp->owner);
    pthread_cond_destroy(&tp->wake);
    pthread_cond_destroy(&tp->done);
    free(tp);
}

int tp_default_threads(void) {
    const char *s = getenv("KILN_THREADS");
    if (s && *s) {
        char *end;
        long n = strtol(s, &end, 10);
        if (*end == 0 && n >= 1 && n <= 1024) return (int)n;
    }
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n >= 1 && n <= 1024 ? (int)n : 1;
}

#ifdef KILN_PROBE
/* probe.h's events: per OS thread a block of PROBE_EVENTS (the later ones
 * dropped), blocks listed under probe_mu, written at exit. */
#include <stdio.h>
#include <time.h>

enum { PROBE_EVENTS = 1 << 20 };
typedef struct {
    uint64_t stamp;
    int thread, kind, cpu;
    long arg;
} ProbeEvent;
typedef struct ProbeBlock {
    struct ProbeBlock *next;
    atomic_int n;
    ProbeEvent ev[PROBE_EVENTS];
} ProbeBlock;
static pthread_mutex_t probe_mu = PTHREAD_MUTEX_INITIALIZER;
static ProbeBlock *probe_blocks;
static _Thread_local ProbeBlock *probe_mine;
static uint64_t probe_stamp0;
static double probe_ns0;

static uint64_t probe_stamp(void) {
#if defined(__x86_64__) || defined(__i386__)
    return __builtin_ia32_rdtsc();
#else
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
#endif
}

static double probe_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static void probe_write(void) {
    const char *path = getenv("KILN_PROBE_OUT");
    FILE *f = path ? fopen(path, "w") : NULL;
    if (!f) return;
    double us = (probe_ns() - probe_ns0) / 1e3;
    fprintf(f, "# stamps_per_us %.6f\n", us > 0 ? (double)(probe_stamp() - probe_stamp0) / us : 1e3);
    pthread_mutex_lock(&probe_mu);
    for (ProbeBlock *b = probe_blocks; b; b = b->next)
        for (int i = 0, n = atomic_load(&b->n); i < n; i++)
            fprintf(f, "%d %d %ld %llu %d\n", b->ev[i].thread, b->ev[i].kind, b->ev[i].arg,
                    (unsigned long long)b->ev[i].stamp, b->ev[i].cpu);
    pthread_mutex_unlock(&probe_mu);
    fclose(f);
}

__attribute__((constructor)) static void probe_start(void) {
    probe_stamp0 = probe_stamp(), probe_ns0 = probe_ns();
    atexit(probe_write);
}

void probe_mark(int thread, int kind, long arg) {
    ProbeBlock *b = probe_mine;
    if (!b) {
        if (!(b = calloc(1, sizeof *b))) return;
        pthread_mutex_lock(&probe_mu);
        b->next = probe_blocks, probe_blocks = b;
        pthread_mutex_unlock(&probe_mu);
        probe_mine = b;
    }
    int n = atomic_load_explicit(&b->n, memory_order_relaxed);
    if (n >= PROBE_EVENTS) return;
    b->ev[n] = (ProbeEvent){probe_stamp(), thread, kind, sched_getcpu(), arg};
    atomic_store_explicit(&b->n, n + 1, memory_order_release);
}
#endif
