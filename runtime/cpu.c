/* cpu.c - the `cpu` backend (backend.h): codegen/llvm.c + ORC LLJIT.
 *
 * prepare: the verified kernel program -> machine code per distinct kernel
 *          (runtime/cpu_code.h: shared in the process, cached on disk,
 *          compiled on as many threads as the pool has); a thread pool
 *          sized to the cores (KILN_THREADS overrides).
 * launch:  one kernel, split over the pool in contiguous chunks of its outer
 *          range (small kernels on the calling thread).  Buffers are host
 *          memory: the executor (exec.c) binds and copies.  Each call has its
 *          own scratch and buffer tables (the last finished call's are kept
 *          for the next); when another call holds the pool, tp_run runs the
 *          chunks on the calling thread.
 * Also `--emit=llvm` and `aot --target=cpu`.
 * Every failure (JIT, out of memory) is a message. */
#include "runtime/exec.h"

#include "codegen/llvm.h"
#include "runtime/cpu_code.h"
#include "runtime/probe.h"
#include "runtime/threadpool.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* A packed operand to keep in the cache: slot's block, under key. */
typedef struct {
    KCacheKey key;
    int slot;
    int64_t bytes;
} StoreJob;

/* An operand a bind of exec_bind_constants' batch leaves to pack at its end
 * (cpu_bind_batch): kernel i's operand w from the parameter in bufs (its own
 * copy), `bytes` packed, stored in the cache under key when `cached`. */
typedef struct {
    int i, w;
    void **bufs;
    int64_t bytes;
    KCacheKey key;
    bool cached;
    void *block; /* out: the packed block, NULL when out of memory */
} PackJob;

/* How a kernel is split over the threads, decided once at prepare: a
 * tiled matmul with fewer rows than columns by its columns (each thread then
 * packs only its part of B; llvm_split_by_columns) through its `cols`
 * entry, else by its outer rows; in chunks of `grain` of them, `span` in
 * all (the product's columns, or the kernel's outer range); `work` (elements
 * touched, roughly) decides whether it is split at all. */
typedef struct {
    bool by_columns;
    int64_t grain, span;
    double work;
    /* by columns on 2 threads: the rows (outer index) at which the ragged
     * last column chunk runs in two parts (llvm_ragged_split_rows); 0 none */
    int64_t ragged_split;
} CpuSplit;

/* The compiled program, shared by every call. */
typedef struct CpuCall CpuCall;
typedef struct {
    const KProgram *kp;
    CpuCode *code;
    ThreadPool *tp;
    int64_t scratch_stride;   /* bytes of scratch per thread (64-aligned) */
    int table_len;            /* entries of a kernel's table: cpu_code_table_len */
    _Atomic(CpuCall *) spare; /* a finished call's state, reused by the next */
    /* per kernel and operand (llvm.h): the constant operand packed when its
     * parameter was bound (cpu_bind), else NULL */
    void **packed;
    /* per kernel and operand: the packed block is a mapped cache entry
     * (packed_map[slot].map != NULL: kcache_unmap it, never write to it) */
    KCacheMap *packed_map;
    /* per kernel and operand: the program buffer packed into that slot, or
     * -1 (found once here: binding a model's parameters asked kernel_gemm
     * for every kernel and parameter, 0.14 ms of MobileNetV2's start) */
    int *packed_buf;
    KCache cache;        /* where packed operands are kept between processes */
    CompileStats *stats; /* NULL, or where binding counts its packed operands */
    /* packed operands to store in the cache, written by the writer thread
     * (started with the first): jobs[done..] are still to write */
    pthread_mutex_t store_mu;
    pthread_cond_t store_cv;
    VEC(StoreJob) store_jobs;
    int stores_done;
    bool writer_started, writer_stop;
    pthread_t writer;
    /* exec_bind_constants' batch (cpu_bind_batch): while batching, binds
     * queue the operands to pack, packed together on the pool at its end */
    bool batching;
    VEC(PackJob) pack_jobs;
    int64_t gather_stride; /* bytes of the largest operand gathered once (llvm.h), 64-aligned; 0: none */
    CpuSplit *split;       /* per kernel: how cpu_launch splits it (kernel_split, once at prepare) */
    /* bench --trace: every chunk a pool thread runs is a span on that
     * thread's track (thread_tracks[t]), so that a trace shows how the
     * threads shared each launch; NULL: not traced */
    Trace *trace;
    int *thread_tracks;
} CpuProg;

/* Packed constant operands of at least this many bytes are kept in the disk
 * cache and read back mapped (kcache_map): packing writes fresh memory,
 * which costs about 1 ms per MB on the build machine (page faults and
 * zeroing), while a cached entry maps pages the page cache already holds.
 * Smaller ones cost less to pack than to look up. */
enum { PACKED_CACHE_MIN = 64 << 10 };

/* One call's own memory: per thread of the pool a scratch block (tiled
 * matmuls) and a copy of the buffer table whose scratch slot points at it;
 * per kernel and operand, a block for constant operands whose parameter is
 * not bound (packed on every launch, from this run's data); per thread a
 * block for the operand of whichever product gathered once runs (llvm.h,
 * CpuKernelCode.gather), and whether the thread has gathered it in this
 * launch. */
struct CpuCall {
    char *scratch;
    void **task_bufs;
    void **packed;
    int npacked;
    char *gathered;
    bool *gather_done;
};

static double now_ms(void) { return clock_ms(CLOCK_MONOTONIC); }

/* CPU time of the process (LLVM's JIT may compile on its own threads):
 * compile times that a loaded machine does not inflate. */
static double cpu_ms(void) { return clock_ms(CLOCK_PROCESS_CPUTIME_ID); }

static void free_blocks(void **blocks, int n) {
    for (int i = 0; blocks && i < n; i++) free(blocks[i]);
    free(blocks);
}

static void call_free(CpuCall *c) {
    if (!c) return;
    free(c->scratch);
    free(c->task_bufs);
    free(c->gathered);
    free(c->gather_done);
    free_blocks(c->packed, c->npacked);
    free(c);
}

/* ------------------------------------------------ packed operands' cache */

/* The writer: stores the queued packed operands in the cache.  Writing a
 * file costs more than packing (about 4 ms per MB on the build machine, on
 * the first start only), so the start does not wait for it: the runs go on
 * meanwhile, and the executable's release (or a rebind of a slot) waits for
 * what is queued.  It has a KCache of its own (the counters are not shared). */
static void *store_writer(void *arg) {
    CpuProg *x = arg;
    KCache c;
    kcache_open_dir(&c, x->cache.dir);
    pthread_mutex_lock(&x->store_mu);
    for (;;) {
        while (x->stores_done == x->store_jobs.len && !x->writer_stop)
            pthread_cond_wait(&x->store_cv, &x->store_mu);
        if (x->stores_done == x->store_jobs.len) break; /* stopped, nothing left */
        StoreJob j = x->store_jobs.data[x->stores_done];
        pthread_mutex_unlock(&x->store_mu);
        char err[512]; /* a store that fails costs the next start time, nothing else */
        kcache_store_mapped(&c, j.key, x->packed[j.slot], (size_t)j.bytes, err, sizeof err);
        pthread_mutex_lock(&x->store_mu);
        x->stores_done++;
        pthread_cond_broadcast(&x->store_cv);
    }
    pthread_mutex_unlock(&x->store_mu);
    kcache_close(&c);
    return NULL;
}

/* Queues slot's freshly packed block for the cache (written on the writer
 * thread; the block stays as it is until then). */
static void store_later(CpuProg *x, KCacheKey key, int slot, int64_t bytes) {
    pthread_mutex_lock(&x->store_mu);
    if (!x->writer_started) x->writer_started = pthread_create(&x->writer, NULL, store_writer, x) == 0;
    if (x->writer_started) {
        StoreJob j = {key, slot, bytes};
        VEC_PUSH(x->store_jobs, j);
        pthread_cond_broadcast(&x->store_cv);
    }
    pthread_mutex_unlock(&x->store_mu);
}

/* Waits until every queued store is written. */
static void stores_wait(CpuProg *x) {
    pthread_mutex_lock(&x->store_mu);
    while (x->writer_started && x->stores_done < x->store_jobs.len)
        pthread_cond_wait(&x->store_cv, &x->store_mu);
    pthread_mutex_unlock(&x->store_mu);
}

/* Releases the packed block of slot (a mapped cache entry or heap memory). */
static void release_packed(CpuProg *x, int slot) {
    if (x->packed_map[slot].map)
        kcache_unmap(&x->packed_map[slot]);
    else
        free(x->packed[slot]);
    x->packed[slot] = NULL;
}

static void cpu_release(void *p) {
    CpuProg *x = p;
    if (!x) return;
    cpu_code_free(x->code);
    tp_free(x->tp);
    call_free(atomic_load(&x->spare));
    pthread_mutex_lock(&x->store_mu); /* the writer finishes the queue, then stops */
    x->writer_stop = true;
    pthread_cond_broadcast(&x->store_cv);
    pthread_mutex_unlock(&x->store_mu);
    if (x->writer_started) pthread_join(x->writer, NULL);
    VEC_FREE(x->store_jobs);
    for (int k = 0; k < x->pack_jobs.len; k++)
        free(x->pack_jobs.data[k].bufs), free(x->pack_jobs.data[k].block);
    VEC_FREE(x->pack_jobs);
    pthread_mutex_destroy(&x->store_mu);
    pthread_cond_destroy(&x->store_cv);
    for (int slot = 0; x->packed && slot < 2 * x->kp->kernels.len; slot++) release_packed(x, slot);
    free(x->packed);
    free(x->packed_map);
    free(x->packed_buf);
    free(x->split);
    free(x->thread_tracks);
    kcache_close(&x->cache);
    free(x);
}

/* Work below this (elements touched, roughly) runs on one thread. */
enum { PARALLEL_MIN_WORK = 1 << 16 };

/* Kernel k's split (CpuSplit); g its product (kernel_gemm) or NULL, cols
 * whether its code has a column entry. */
static CpuSplit kernel_split(const KProgram *kp, const Kernel *k, const KGemm *g, bool cols,
                             const char *target) {
    CpuSplit s = {.by_columns = cols && g && llvm_split_by_columns(kp, g)};
    s.grain = s.by_columns ? llvm_column_grain(kp, g) : llvm_kernel_grain(kp, k);
    /* a form of the target's own (a Winograd convolution) may want others */
    if (g && cols) s.grain = llvm_target_grain(kp, g, target, s.by_columns, s.grain);
    s.span = s.by_columns ? g->mm.n : k->outer;
    if (s.by_columns && s.grain == llvm_column_grain(kp, g) && k->outer == g->mm.m * g->mm.n)
        s.ragged_split = llvm_ragged_split_rows(kp, g, target) * g->mm.n;
    double per_o = 1;
    for (int st = 0; st < k->stages.len; st++) per_o += (double)k->stages.data[st].extent;
    s.work = (double)k->flops + (double)k->bytes;
    if (s.work < (double)k->outer * per_o) s.work = (double)k->outer * per_o;
    return s;
}

static void *cpu_prepare(const KProgram *kp, const CompileOptions *opt, char *err, size_t errlen) {
    double t0 = now_ms(), c0 = cpu_ms();
    CpuProg *x = xcalloc(1, sizeof *x);
    x->kp = kp;
    pthread_mutex_init(&x->store_mu, NULL);
    pthread_cond_init(&x->store_cv, NULL);
    char jerr[2048] = "";
    CpuCodeOptions co = {opt ? opt->cpu : NULL, tp_default_threads(), NULL};
    CpuCodeStats st;
    x->code = cpu_code_compile(kp, &co, &st, jerr, sizeof jerr);
    if (!x->code) {
        snprintf(err, errlen, "%s", jerr);
        cpu_release(x);
        return NULL;
    }
    double c_compiled = cpu_ms();
    x->tp = tp_new(tp_default_threads());
    if (opt && opt->trace) {
        x->trace = opt->trace;
        x->thread_tracks = xcalloc((size_t)tp_size(x->tp), sizeof(int));
        for (int t = 0; t < tp_size(x->tp); t++) {
            char name[64];
            snprintf(name, sizeof name, t ? "pool thread %d" : "pool thread %d (the caller)", t);
            x->thread_tracks[t] = trace_track(x->trace, "device cpu", name);
        }
    }
    int64_t most = 0;
    for (int i = 0; i < kp->kernels.len; i++)
        if (cpu_code_kernel(x->code, i)->scratch > most) most = cpu_code_kernel(x->code, i)->scratch;
    x->scratch_stride = (most + 63) / 64 * 64;
    x->table_len = cpu_code_table_len(x->code);
    x->packed = xcalloc((size_t)2 * kp->kernels.len + 1, sizeof(void *));
    x->packed_map = xcalloc((size_t)2 * kp->kernels.len + 1, sizeof(KCacheMap));
    x->packed_buf = xmalloc(sizeof(int) * ((size_t)2 * kp->kernels.len + 1));
    x->split = xcalloc((size_t)kp->kernels.len + 1, sizeof(CpuSplit));
    for (int i = 0; i < kp->kernels.len; i++) {
        const Kernel *k = &kp->kernels.data[i];
        KGemm g;
        bool gemm = kernel_gemm(kp, k, &g);
        for (int w = 0; w < 2; w++)
            x->packed_buf[2 * i + w] =
                gemm && cpu_code_kernel(x->code, i)->prepack_bytes[w] > 0 ? (w ? g.mm.b_buf : g.mm.a_buf) : -1;
        x->split[i] = kernel_split(kp, k, gemm ? &g : NULL, cpu_code_kernel(x->code, i)->cols != NULL,
                                   cpu_code_target(x->code));
    }
    kcache_open(&x->cache);
    x->stats = opt ? opt->stats : NULL;
    for (int i = 0; i < kp->kernels.len; i++)
        if (cpu_code_kernel(x->code, i)->gather_bytes > x->gather_stride)
            x->gather_stride = cpu_code_kernel(x->code, i)->gather_bytes;
    x->gather_stride = (x->gather_stride + 63) / 64 * 64;
    if (opt && opt->stats) {
        CompileStats *cs = opt->stats;
        cs->kernels += st.kernels, cs->distinct += st.distinct, cs->compiled += st.compiled;
        cs->cache_hits += st.cache_hits, cs->reused += st.reused, cs->loaded += st.loaded;
        cs->prebuilt += st.prebuilt;
        cs->programs_cached += st.program_cached;
    }
    if (opt && opt->verbose) {
        fprintf(
            stderr,
            "kiln: cpu: %d kernels, %d distinct: %d compiled (%d threads, LLVM %.1f ms CPU: IR %.1f, "
            "optimisation %.1f, code generation %.1f; loading %.1f ms CPU, %d of the objects by kiln's "
            "loader), %d prebuilt forms, %d from the cache (%s%s%s), %d already in this process%s%s; %.1f ms "
            "(%.1f ms CPU); %d threads to run\n",
            st.kernels, st.distinct, st.compiled, st.jobs, st.llvm_cpu_ms, st.llvm.ir_ms, st.llvm.opt_ms,
            st.llvm.emit_ms, st.link_cpu_ms, st.loaded, st.prebuilt, st.cache_hits,
            st.cache_dir[0] ? st.cache_dir : "off: ", st.cache_dir[0] ? "" : st.cache_off,
            st.program_cached ? "; all in the program's entry" : "", st.reused,
            st.cache_bad ? " (damaged cache entries rebuilt)" : "",
            st.helpers_prebuilt ? "; shared helpers prebuilt at build time" : "", now_ms() - t0,
            c_compiled - c0, tp_size(x->tp));
    }
    return x;
}

/* *block = nt blocks of `stride` bytes (none when stride is 0), 64-byte aligned. */
static bool per_thread_block(char **block, int64_t stride, int nt, const char *what, char *err,
                             size_t errlen) {
    if (stride > 0 && !(*block = host_block_alloc((size_t)stride * (size_t)nt))) {
        snprintf(err, errlen, "out of memory for %s (%d x %lld bytes)", what, nt, (long long)stride);
        return false;
    }
    return true;
}

static bool cpu_call_begin(void *p, void **call, char *err, size_t errlen) {
    CpuProg *x = p;
    CpuCall *c = atomic_exchange(&x->spare, NULL);
    if (!c) {
        int nt = tp_size(x->tp);
        c = xcalloc(1, sizeof *c);
        if (!per_thread_block(&c->scratch, x->scratch_stride, nt, "the matmul scratch", err, errlen) ||
            !per_thread_block(&c->gathered, x->gather_stride, nt, "the products' gathered operands", err,
                              errlen)) {
            call_free(c);
            return false;
        }
        c->gather_done = xcalloc((size_t)nt + 1, sizeof(bool));
        c->task_bufs = xcalloc((size_t)nt * (size_t)x->table_len + 1, sizeof(void *));
        c->npacked = 2 * x->kp->kernels.len;
        c->packed = xcalloc((size_t)c->npacked + 1, sizeof(void *));
    }
    *call = c;
    return true;
}

static void cpu_call_end(void *p, void *call) {
    CpuProg *x = p;
    CpuCall *expected = NULL;
    if (!atomic_compare_exchange_strong(&x->spare, &expected, (CpuCall *)call)) call_free(call);
}

typedef struct {
    KernelFn fn;
    int64_t outer, grain; /* [0, outer) in units of grain indices (the last one may be short) */
    void **task_bufs;     /* thread t's table at task_bufs + t * stride */
    int stride;
    /* an operand gathered once: every thread gathers it into its own
     * block before its first chunk (gather_done[thread]) */
    KernelFn gather;
    int64_t gather_tasks;
    bool *gather_done;
    /* bench --trace: each chunk a span named `name` on its thread's track */
    Trace *trace;
    const int *tracks;
    const char *name;
    bool by_columns;
} ChunkJob;

/* A chunk [b, e) of a launch, run by `thread` from t0 to t1 (ms), in the
 * trace: kernel launches are split by rows or by columns (CpuSplit). */
static void trace_chunk(Trace *trace, const int *tracks, int thread, const char *name, bool by_columns,
                        int64_t b, int64_t e, double t0, double t1) {
    char args[128];
    snprintf(args, sizeof args, "{\"thread\": %d, \"%s\": [%lld, %lld]}", thread,
             by_columns ? "columns" : "outer", (long long)b, (long long)e);
    trace_span_on(trace, tracks[thread], "chunk", t0, t1, args, "%s", name);
}

/* Units [u0, u1) of the kernel's range on `thread` (tp_run_ranges: each
 * thread runs its own part of the range from the front in shrinking chunks,
 * then halves of what the others have left from their ends).  Its parts
 * are the same for every kernel, so a thread reads mostly what it wrote
 * the kernel before, from its own core's cache, where chunks claimed in
 * turn from one counter (guided, until session 8) went to either thread. */
static void run_chunk(void *ctx, int64_t u0, int64_t u1, int thread) {
    ChunkJob *j = ctx;
    double t0 = j->trace ? trace_clock_ms() : 0;
    int64_t b = u0 * j->grain, e = u1 * j->grain;
    if (e > j->outer) e = j->outer;
    void **table = j->task_bufs + (size_t)thread * (size_t)j->stride;
    if (b < e && j->gather && !j->gather_done[thread]) {
        j->gather(0, j->gather_tasks, table);
        j->gather_done[thread] = true;
    }
    if (b < e) j->fn(b, e, table);
    if (j->trace && b < e)
        trace_chunk(j->trace, j->tracks, thread, j->name, j->by_columns, b, e, t0, trace_clock_ms());
}

/* A column split whose last chunk is ragged, on 2 threads
 * (CpuSplit.ragged_split): its `full` whole chunks and that chunk's rows in
 * two parts, units [0, full / 2) whole, unit full / 2 the rows' first part,
 * the rest whole, the last unit the second part: each thread's half of the
 * units (tp_run_ranges) ends in one part of the ragged chunk. */
typedef struct {
    ChunkJob *job;
    int64_t full, split;
} RaggedJob;

static void ragged_chunk(void *ctx, int64_t u0, int64_t u1, int thread) {
    RaggedJob *r = ctx;
    ChunkJob *j = r->job;
    const int64_t h0 = r->full / 2, h1 = r->full + 1;
    for (int64_t u = u0; u < u1;) {
        if (u == h0 || u == h1) {
            double t0 = j->trace ? trace_clock_ms() : 0;
            void **table = j->task_bufs + (size_t)thread * (size_t)j->stride;
            if (j->gather && !j->gather_done[thread]) {
                j->gather(0, j->gather_tasks, table);
                j->gather_done[thread] = true;
            }
            const uint64_t half = u == h0 ? 1 : 2;
            j->fn(r->full * j->grain, (int64_t)((uint64_t)j->outer | (uint64_t)r->split << 32 | half << 62),
                  table);
            if (j->trace)
                trace_chunk(j->trace, j->tracks, thread, j->name, true, r->full * j->grain, j->outer, t0,
                            trace_clock_ms());
            u++;
            continue;
        }
        int64_t e = u + 1;
        while (e < u1 && e != h0 && e != h1) e++;
        run_chunk(j, u < h0 ? u : u - 1, e <= h0 ? e : e - 1, thread);
        u = e;
    }
}

/* Thread t's copy of kernel i's table (cpu_code.h): its buffers, the
 * scratch at t's scratch, the packed constant operands (an operand
 * gathered once at t's own block). */
static void **task_table(const CpuProg *x, CpuCall *c, int t, void *const *bufs, int i) {
    void **tb = c->task_bufs + (size_t)t * (size_t)x->table_len;
    void *scratch = c->scratch ? c->scratch + (size_t)t * (size_t)x->scratch_stride : NULL;
    void *packed[2];
    for (int w = 0; w < 2; w++)
        packed[w] = x->packed[2 * i + w] ? x->packed[2 * i + w] : c->packed[2 * i + w];
    const CpuKernelCode *kc = cpu_code_kernel(x->code, i);
    if (kc->gather_bytes > 0) packed[kc->gather_operand] = c->gathered + (size_t)t * (size_t)x->gather_stride;
    cpu_code_table(x->code, i, bufs, scratch, packed, tb);
    return tb;
}

/* A 64-byte aligned block for kernel i's constant operand `which`, packed
 * from the parameter data in bufs. */
static void *pack_operand(const CpuProg *x, int i, int which, void *const *bufs, void *block) {
    const CpuKernelCode *kc = cpu_code_kernel(x->code, i);
    int64_t bytes = kc->prepack_bytes[which];
    if (!block && !(block = host_line_alloc((size_t)bytes))) return NULL;
    void **table = xcalloc((size_t)x->table_len + 1, sizeof(void *));
    void *packed[2] = {which == 0 ? block : NULL, which == 1 ? block : NULL};
    cpu_code_table(x->code, i, bufs, NULL, packed, table);
    kc->prepack[which](table);
    free(table);
    return block;
}

/* The cache key of kernel i's operand w packed from a parameter whose bytes
 * hash to `source`: the unit's key says the packing layout and the CPU
 * (cpu_code.h), the compilers' identity which build made the packing code
 * (a prebuilt form's unit key, made at build time, does not say it), so
 * changed weights or code are another key. */
static KCacheKey packed_key(const CpuProg *x, int i, int w, KCacheKey source) {
    KCacheHasher h;
    kcache_hash_init(&h);
    kcache_hash_str(&h, "kiln packed operand v2");
    kcache_hash_str(&h, cpu_code_compilers());
    KCacheKey unit = cpu_code_unit_key(x->code, i);
    int64_t what[2] = {w, cpu_code_kernel(x->code, i)->prepack_bytes[w]};
    kcache_hash_part(&h, unit.h, sizeof unit.h);
    kcache_hash_part(&h, what, sizeof what);
    kcache_hash_part(&h, source.h, sizeof source.h);
    return kcache_hash_done(&h);
}

/* Kernel i's operand w into its slot: from the cache when packed before from
 * the same bytes (*source: their hash, computed on first need), else packed
 * now (and stored for the next process when large). */
static bool bind_operand(CpuProg *x, int i, int w, void *const *bufs, const void *data, int64_t data_bytes,
                         KCacheKey *source, bool *hashed) {
    int slot = 2 * i + w;
    int64_t bytes = cpu_code_kernel(x->code, i)->prepack_bytes[w];
    bool cached = x->cache.dir && bytes >= PACKED_CACHE_MIN;
    if (x->packed[slot]) stores_wait(x); /* bound before: its block may still be being written */
    if (x->packed_map[slot].map) release_packed(x, slot); /* never packed into */
    KCacheKey key = {{0, 0}};
    if (cached) {
        if (!*hashed) { /* the bytes: named by where they lie in a settled mapped file, else hashed */
            KCacheHasher h;
            kcache_hash_init(&h);
            uint64_t place[MAPPED_PLACE_WORDS];
            if (mapped_file_place(data, (size_t)data_bytes, place)) {
                kcache_hash_str(&h, "bytes of a mapped file");
                kcache_hash_part(&h, place, sizeof place);
                if (x->stats) x->stats->packed_by_place++;
            } else {
                kcache_hash_bulk(&h, data, (size_t)data_bytes, x->tp);
            }
            *source = kcache_hash_done(&h), *hashed = true;
        }
        key = packed_key(x, i, w, *source);
        KCacheMap m;
        if (kcache_map(&x->cache, key, x->tp, &m) == KC_HIT) {
            if (m.len == (size_t)bytes) {
                release_packed(x, slot);
                x->packed[slot] = (void *)m.data, x->packed_map[slot] = m;
                if (x->stats) x->stats->packed++, x->stats->packed_cached++;
                return true;
            }
            kcache_unmap(&m);
        }
    }
    if (x->batching && !x->packed[slot]) { /* packed at the batch's end, with the others */
        size_t nb = (size_t)x->kp->bufs.len + 1;
        PackJob j = {i, w, xmalloc(nb * sizeof(void *)), bytes, key, cached, NULL};
        memcpy(j.bufs, bufs, nb * sizeof(void *));
        VEC_PUSH(x->pack_jobs, j);
        return true;
    }
    void *block = pack_operand(x, i, w, bufs, x->packed[slot]);
    if (!block) return false;
    x->packed[slot] = block;
    if (x->stats) x->stats->packed++;
    if (cached) store_later(x, key, slot, bytes);
    return true;
}

/* A parameter bound for good: the constant operands read from it are packed
 * now, once (or read from the cache), and every later launch reads them
 * from there. */
static bool cpu_bind(void *p, int param, const void *data, char *err, size_t errlen) {
    CpuProg *x = p;
    const KProgram *kp = x->kp;
    void **bufs = xcalloc((size_t)kp->bufs.len + 1, sizeof(void *));
    int64_t data_bytes = 0;
    for (int b = 0; b < kp->bufs.len; b++)
        if (kp->bufs.data[b].kind == KB_INPUT && kp->bufs.data[b].index == param) {
            bufs[b] = (void *)data;
            data_bytes = kp->bufs.data[b].numel * (int64_t)kiln_dtype_size(kp->bufs.data[b].dtype);
        }
    bool ok = true, hashed = false;
    KCacheKey source;
    for (int i = 0; ok && i < kp->kernels.len; i++) {
        for (int w = 0; ok && w < 2; w++) {
            int b = x->packed_buf[2 * i + w];
            if (b < 0 || !bufs[b]) continue; /* not packed, or another parameter's */
            if (!bind_operand(x, i, w, bufs, data, data_bytes, &source, &hashed)) {
                snprintf(err, errlen, "out of memory for the packed weights of %s", kp->kernels.data[i].name);
                ok = false;
            }
        }
    }
    free(bufs);
    return ok;
}

static void pack_task(void *ctx, int t, int thread) {
    (void)thread;
    CpuProg *x = ctx;
    PackJob *j = &x->pack_jobs.data[t];
    j->block = pack_operand(x, j->i, j->w, j->bufs, NULL);
}

static int pack_job_larger(const void *a, const void *b) {
    int64_t p = ((const PackJob *)a)->bytes, q = ((const PackJob *)b)->bytes;
    return p > q ? -1 : p < q;
}

/* exec_bind_constants' batch: its binds queue the operands they pack
 * (bind_operand), packed at its end on the pool's threads, largest first,
 * each a task (one thread packed them one after another: ResNet-50's 53
 * operands, 100 MB, took ~50 ms of its cold start, most of it the kernel's
 * work on the fresh pages); then the large ones go to the cache's writer,
 * which so starts after the packing rather than beside it (docs/
 * performance.md, "Session 16: ResNet-50's cold compile on Zen 5"). */
static bool cpu_bind_batch(void *p, bool begin, char *err, size_t errlen) {
    CpuProg *x = p;
    x->batching = begin;
    if (begin || x->pack_jobs.len == 0) return true;
    int n = x->pack_jobs.len;
    qsort(x->pack_jobs.data, (size_t)n, sizeof(PackJob), pack_job_larger);
    tp_run(x->tp, pack_task, x, n);
    bool ok = true;
    for (int k = 0; k < n; k++) {
        PackJob *j = &x->pack_jobs.data[k];
        free(j->bufs);
        if (!j->block) {
            if (ok)
                snprintf(err, errlen, "out of memory for the packed weights of %s",
                         x->kp->kernels.data[j->i].name);
            ok = false;
            continue;
        }
        int slot = 2 * j->i + j->w;
        x->packed[slot] = j->block;
        if (x->stats) x->stats->packed++;
        if (j->cached) store_later(x, j->key, slot, j->bytes);
    }
    x->pack_jobs.len = 0;
    return ok;
}

/* Constant operands of kernel i whose parameter is not bound: packed for
 * this launch into the call's own blocks. */
static bool pack_unbound(const CpuProg *x, CpuCall *c, int i, void *const *bufs, char *err, size_t errlen) {
    for (int w = 0; w < 2; w++) {
        int slot = 2 * i + w;
        if (cpu_code_kernel(x->code, i)->prepack_bytes[w] <= 0 || x->packed[slot]) continue;
        if (!(c->packed[slot] = pack_operand(x, i, w, bufs, c->packed[slot]))) {
            snprintf(err, errlen, "out of memory for the packed weights of %s", x->kp->kernels.data[i].name);
            return false;
        }
    }
    return true;
}

/* Kernel i over its outer range, split over the pool in contiguous chunks,
 * several per thread (small kernels on the calling thread).  A product
 * with an operand gathered once (llvm.h): each thread gathers it once, into
 * its own block (one shared block costs more: its lines move between the
 * cores' caches at every run; measured 6x the gathering time on 2 cores). */
static bool cpu_launch(void *p, void *call, int i, void *const *bufs, char *err, size_t errlen) {
    CpuProg *x = p;
    CpuCall *c = call;
    const Kernel *k = &x->kp->kernels.data[i];
    const CpuKernelCode *kc = cpu_code_kernel(x->code, i);
    KernelFn fn = kc->fn, gather = kc->gather;
    int64_t outer = k->outer, gather_tasks = kc->gather_tasks;
    if (outer <= 0) return true;
    PROBE(0, PROBE_LAUNCH, i);
    if (!pack_unbound(x, c, i, bufs, err, errlen)) return false;
    int nt = tp_size(x->tp);
    const CpuSplit *sp = &x->split[i];
    const int64_t grain = sp->grain;
    if (nt <= 1 || sp->work < PARALLEL_MIN_WORK || sp->span < 2 * grain) {
        void **table = task_table(x, c, 0, bufs, i);
        double t0 = x->trace ? trace_clock_ms() : 0;
        if (gather) gather(0, gather_tasks, table);
        fn(0, outer, table);
        PROBE(0, PROBE_SOLO_END, i);
        if (x->trace)
            trace_chunk(x->trace, x->thread_tracks, 0, k->name, false, 0, outer, t0, trace_clock_ms());
        return true;
    }
    for (int t = 0; t < nt; t++) task_table(x, c, t, bufs, i);
    if (sp->by_columns) {
        fn = kc->cols;
        outer = sp->span;
    }
    ChunkJob job = {.fn = fn,
                    .outer = outer,
                    .grain = grain,
                    .task_bufs = c->task_bufs,
                    .stride = x->table_len,
                    .gather = gather,
                    .gather_tasks = gather_tasks,
                    .gather_done = c->gather_done,
                    .trace = x->trace,
                    .tracks = x->thread_tracks,
                    .name = k->name,
                    .by_columns = sp->by_columns};
    if (gather) memset(c->gather_done, 0, sizeof(bool) * (size_t)nt);
    if (sp->ragged_split && nt == 2) {
        RaggedJob r = {&job, outer / grain, sp->ragged_split};
        tp_run_ranges(x->tp, ragged_chunk, &r, r.full + 2);
        return true;
    }
    tp_run_ranges(x->tp, run_chunk, &job, (outer + grain - 1) / grain);
    return true;
}

KilnStatus cpu_check_name(const char *name, char *err, size_t errlen) {
    return llvm_cpu_check(name, err, errlen);
}

/* ---- emit and aot */

static KilnStatus cpu_emit_llvm(const KProgram *kp, const CompileOptions *opt, FILE *out, char *err,
                                size_t errlen) {
    char lerr[2048] = "";
    KilnStatus st = KILN_OK;
    LLVMTargetMachineRef tm = llvm_target_machine(opt ? opt->cpu : NULL, false, lerr, sizeof lerr);
    LLVMContextRef ctx = llvm_context_new();
    LLVMModuleRef mod = tm ? llvm_build_program(ctx, kp, tm, false, NULL, lerr, sizeof lerr) : NULL;
    if (mod) {
        char *s = LLVMPrintModuleToString(mod);
        fputs(s, out);
        LLVMDisposeMessage(s);
        LLVMDisposeModule(mod);
    } else {
        snprintf(err, errlen, "%s", lerr);
        st = KILN_ERR_DEVICE;
    }
    LLVMContextDispose(ctx);
    if (tm) LLVMDisposeTargetMachine(tm);
    return st;
}

static bool write_header(const IRGraph *g, const char *cpu, const char *path, char *err, size_t errlen) {
    FILE *f = fopen(path, "w");
    if (!f) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return false;
    }
    const char *name = g->name;
    fprintf(f, "/* %s.h - generated by kiln %s: `kiln aot --target=cpu` of graph %s (cpu %s).\n", name, KILN_VERSION,
            name, cpu ? cpu : "of the build host");
    fprintf(f, " *\n * %s_run runs the graph on the calling thread.  Every array is dense, C order;\n", name);
    fprintf(f, " * f16 and bf16 elements are their 16-bit patterns, bool is one byte (0 or 1).\n");
    fprintf(f, " * Returns 0, or 1 when memory for the intermediates cannot be allocated.\n");
    fprintf(f, " * Build: cc -O2 your_program.c %s.o -lm */\n", name);
    fprintf(f, "#ifndef KILN_AOT_%s_H\n#define KILN_AOT_%s_H\n\n#include <stdint.h>\n\n", name, name);
    fprintf(f, "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n");
    for (int i = 0; i < g->params.len; i++) {
        const Node *n = ir_node(g, g->params.data[i]);
        char *t = ir_type_str(g, n->dtype, n->rank, n->shape);
        fprintf(f, "/* in  %-8s %s */\n", n->name ? n->name : "?", t);
        free(t);
    }
    for (int i = 0; i < g->results.len; i++) {
        const Node *n = ir_node(g, g->results.data[i]);
        char *t = ir_type_str(g, n->dtype, n->rank, n->shape);
        fprintf(f, "/* out out%-5d %s */\n", i, t);
        free(t);
    }
    fprintf(f, "int %s_run(", name);
    for (int i = 0; i < g->params.len; i++) {
        const Node *n = ir_node(g, g->params.data[i]);
        fprintf(f, "%sconst %s *%s", i ? ", " : "", aot_c_type(n->dtype), n->name ? n->name : "in");
    }
    for (int i = 0; i < g->results.len; i++) {
        const Node *n = ir_node(g, g->results.data[i]);
        fprintf(f, "%s%s *out%d", i || g->params.len ? ", " : "", aot_c_type(n->dtype), i);
    }
    if (g->params.len + g->results.len == 0) fputs("void", f);
    fprintf(f, ");\n\n#ifdef __cplusplus\n}\n#endif\n\n#endif\n");
    if (fclose(f) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return false;
    }
    return true;
}

/* aot --target=cpu: NAME.o, NAME.h and a README for the CPU named by --cpu
 * (default: the build host's). */
static KilnStatus cpu_aot(const KProgram *kp, const IRGraph *g, const CompileOptions *opt,
                          const char *variant, const char *dir, char *err, size_t errlen) {
    (void)variant; /* none: the cpu comes from --cpu */
    const char *cpu_name = opt ? opt->cpu : NULL;
    Arena *arena = arena_new();
    char lerr[2048] = "";
    KilnStatus st = KILN_OK;
    LLVMTargetMachineRef tm = llvm_target_machine(cpu_name, true, lerr, sizeof lerr);
    LLVMContextRef ctx = llvm_context_new();
    LLVMModuleRef mod = tm ? llvm_build_program(ctx, kp, tm, true, NULL, lerr, sizeof lerr) : NULL;
    char *obj = arena_printf(arena, "%s/%s.o", dir, g->name);
    char *hdr = arena_printf(arena, "%s/%s.h", dir, g->name);
    char *readme = arena_printf(arena, "%s/README", dir);
    if (!mod) {
        snprintf(err, errlen, "%s", lerr);
        st = KILN_ERR_DEVICE;
        goto done;
    }
    char *msg = NULL;
    if (LLVMTargetMachineEmitToFile(tm, mod, obj, LLVMObjectFile, &msg)) {
        snprintf(err, errlen, "cannot write %s: %s", obj, msg ? msg : "LLVM failed");
        LLVMDisposeMessage(msg);
        st = KILN_ERR_DEVICE;
        goto done;
    }
    if (!write_header(g, cpu_name, hdr, err, errlen)) {
        st = KILN_ERR_USAGE;
        goto done;
    }
    FILE *f = fopen(readme, "w");
    if (!f) {
        snprintf(err, errlen, "cannot write %s: %s", readme, strerror(errno));
        st = KILN_ERR_USAGE;
        goto done;
    }
    fprintf(f, "%s: kiln %s ahead-of-time build of graph %s for the CPU (%s).\n", g->name, KILN_VERSION, g->name,
            cpu_name ? cpu_name : "the build host's CPU");
    fprintf(f, "Call %s_run() declared in %s.h; build with:\n\n    cc -O2 main.c %s.o -lm -o main\n", g->name, g->name,
            g->name);
    fprintf(f,
            "\nFrom Go: this folder is package %s (%s.go); copy it into your module and import it:\n"
            "%s.Run(...) runs the graph (see %s.go), `go build` links %s.o.\n",
            g->name, g->name, g->name, g->name, g->name);
    if (fclose(f) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", readme, strerror(errno));
        st = KILN_ERR_USAGE;
        goto done;
    }
    char *what = arena_printf(arena, "the CPU (%s)", cpu_name ? cpu_name : "the build host's");
    char *cgo = arena_printf(arena, "#cgo LDFLAGS: ${SRCDIR}/%s.o -lm\n", g->name);
    AotGoTarget go = {"cpu", what, "libc and libm", cgo, false};
    st = aot_go_write(g, g->name, &go, dir, err, errlen);
done:
    if (mod) LLVMDisposeModule(mod);
    LLVMContextDispose(ctx);
    if (tm) LLVMDisposeTargetMachine(tm);
    arena_free(arena);
    return st;
}

static const EmitStage cpu_stages[] = {
    {"llvm", "the kernels as LLVM IR, optimised for the host", cpu_emit_llvm},
    {NULL, NULL, NULL},
};

const Backend cpu_backend = {
    .name = "cpu",
    .summary = "LLVM JIT on the host's cores",
    .caps = BK_KERNELS | BK_HOST_MEMORY | BK_UNALIGNED_INPUTS,
    .kernels = {cpu_prepare, cpu_release, cpu_call_begin, cpu_call_end, cpu_launch, NULL, cpu_bind,
                llvm_conv_keeps_padded, cpu_bind_batch},
    .stages = cpu_stages,
    .aot = {cpu_aot, NULL},
};
