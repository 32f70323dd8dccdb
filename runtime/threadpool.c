/* threadpool.c - see threadpool.h. */
#include "runtime/threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

typedef struct WorkerArg WorkerArg;

/* One thread's part of a tp_run_ranges job: the units [lo, hi) not yet
 * claimed, lo in the high 32 bits and hi in the low ones (claimed from
 * either end by one compare-and-swap), a cache line of its own. */
typedef struct {
    _Alignas(64) _Atomic uint64_t span;
} Part;

struct ThreadPool {
    int nthreads;
    pthread_t *workers;
    WorkerArg *args; /* per worker: the pool and its thread index */
    int nworkers;
    pthread_mutex_t mu;
    pthread_cond_t wake, done;
    pthread_mutex_t owner; /* held by the tp_run using the workers */
    /* the current job: tasks (fn) or ranges (range_fn over parts) */
    void (*fn)(void *ctx, int task, int thread);
    void (*range_fn)(void *ctx, int64_t u0, int64_t u1, int thread);
    void *ctx;
    int ntasks;
    atomic_int next;       /* next task to claim */
    Part *parts;           /* per thread, for range jobs */
    atomic_uint generation; /* bumped for every job */
    atomic_int busy;        /* workers inside the current job (changed under mu) */
    int active;            /* whether workers may still join the job (under mu) */
    int quit;
};

/* How long a thread waits spinning before it sleeps: a worker for the next
 * job (a graph's kernels come in quick succession), the caller for the
 * workers' last tasks.  A sleep costs a futex wake-up, several microseconds
 * (tens under a hypervisor), once per kernel. */
enum { SPIN_PAUSES = 20000 };

static void spin_pause(void) {
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

static void run_tasks(ThreadPool *tp, int thread) {
    for (;;) {
        int t = atomic_fetch_add(&tp->next, 1);
        if (t >= tp->ntasks) break;
        tp->fn(tp->ctx, t, thread);
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
    while (claim(&tp->parts[thread], true, &u0, &u1)) tp->range_fn(tp->ctx, u0, u1, thread);
    for (;;) {
        int most = -1;
        uint64_t most_left = 0;
        for (int t = 0; t < tp->nthreads; t++) {
            uint64_t v = atomic_load_explicit(&tp->parts[t].span, memory_order_relaxed);
            uint64_t lo = v >> 32, hi = v & 0xffffffffu;
            if (hi > lo && hi - lo > most_left) most = t, most_left = hi - lo;
        }
        if (most < 0) return;
        if (claim(&tp->parts[most], false, &u0, &u1)) tp->range_fn(tp->ctx, u0, u1, thread);
    }
}

static void run_job(ThreadPool *tp, int thread) {
    if (tp->range_fn)
        run_ranges(tp, thread);
    else
        run_tasks(tp, thread);
}

struct WorkerArg {
    ThreadPool *tp;
    int index; /* 1.. : the caller is thread 0 */
};

static void *worker_main(void *arg) {
    ThreadPool *tp = ((WorkerArg *)arg)->tp;
    int index = ((WorkerArg *)arg)->index;
    unsigned seen = 0;
    for (;;) {
        /* spin a little for the next job, then sleep */
        for (int spin = 0; spin < SPIN_PAUSES && atomic_load(&tp->generation) == seen; spin++) spin_pause();
        pthread_mutex_lock(&tp->mu);
        while (!tp->quit && atomic_load(&tp->generation) == seen) pthread_cond_wait(&tp->wake, &tp->mu);
        if (tp->quit) {
            pthread_mutex_unlock(&tp->mu);
            return NULL;
        }
        seen = atomic_load(&tp->generation);
        if (!tp->active) { /* came too late: the job is over */
            pthread_mutex_unlock(&tp->mu);
            continue;
        }
        atomic_fetch_add(&tp->busy, 1);
        pthread_mutex_unlock(&tp->mu);
        run_job(tp, index);
        pthread_mutex_lock(&tp->mu);
        if (atomic_fetch_sub(&tp->busy, 1) == 1) pthread_cond_signal(&tp->done);
        pthread_mutex_unlock(&tp->mu);
    }
}

ThreadPool *tp_new(int nthreads) {
    if (nthreads < 1) nthreads = 1;
    ThreadPool *tp = calloc(1, sizeof *tp);
    if (!tp) return NULL;
    tp->nthreads = nthreads;
    pthread_mutex_init(&tp->mu, NULL);
    pthread_mutex_init(&tp->owner, NULL);
    pthread_cond_init(&tp->wake, NULL);
    pthread_cond_init(&tp->done, NULL);
    atomic_init(&tp->next, 0);
    atomic_init(&tp->generation, 0);
    atomic_init(&tp->busy, 0);
    if (nthreads > 1) {
        tp->workers = calloc((size_t)nthreads - 1, sizeof(pthread_t));
        tp->args = calloc((size_t)nthreads - 1, sizeof(WorkerArg));
        if (!tp->workers || !tp->args) {
            tp_free(tp);
            return NULL;
        }
        for (int i = 0; i < nthreads - 1; i++) {
            tp->args[i] = (WorkerArg){tp, i + 1};
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

/* Runs the job set in tp (under `owner`) on the caller and the workers. */
static void run_shared(ThreadPool *tp) {
    pthread_mutex_lock(&tp->mu);
    tp->active = 1;
    atomic_fetch_add(&tp->generation, 1);
    pthread_cond_broadcast(&tp->wake);
    pthread_mutex_unlock(&tp->mu);
    run_job(tp, 0);
    /* every task is claimed: close the job to late workers and wait for
     * those inside it to finish their last task, spinning first (the last
     * chunks are small) */
    pthread_mutex_lock(&tp->mu);
    tp->active = 0;
    pthread_mutex_unlock(&tp->mu);
    for (int spin = 0; spin < SPIN_PAUSES && atomic_load(&tp->busy) > 0; spin++) spin_pause();
    pthread_mutex_lock(&tp->mu);
    while (atomic_load(&tp->busy) > 0) pthread_cond_wait(&tp->done, &tp->mu);
    pthread_mutex_unlock(&tp->mu);
    pthread_mutex_unlock(&tp->owner);
}

void tp_run(ThreadPool *tp, void (*fn)(void *ctx, int task, int thread), void *ctx, int ntasks) {
    /* no workers, nothing to share, or the workers busy with another
     * caller's job: this thread runs every task */
    if (!tp || tp->nworkers == 0 || ntasks <= 1 || pthread_mutex_trylock(&tp->owner) != 0) {
        for (int t = 0; t < ntasks; t++) fn(ctx, t, 0);
        return;
    }
    tp->fn = fn, tp->range_fn = NULL, tp->ctx = ctx, tp->ntasks = ntasks;
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
    tp->fn = NULL, tp->range_fn = fn, tp->ctx = ctx;
    int n = tp->nthreads;
    for (int t = 0; t < n; t++)
        atomic_store_explicit(&tp->parts[t].span, span_of((uint64_t)(units * t / n), (uint64_t)(units * (t + 1) / n)),
                              memory_order_relaxed);
    run_shared(tp);
}

void tp_free(ThreadPool *tp) {
    if (!tp) return;
    pthread_mutex_lock(&tp->mu);
    tp->quit = 1;
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
