/* cpu.c - the `cpu` backend: fusion scheduler + LLVM codegen + ORC LLJIT.
 *
 * compile: fuse_graph -> codegen/llvm.c (one module, O3 for the host) ->
 *          one LLJIT per executable; a thread pool sized to the cores
 *          (KILN_THREADS overrides).
 * run:     binds buffers (inputs to the caller's tensors, outputs to fresh
 *          tensors, temporaries into one 64-byte aligned arena), runs the
 *          kernels in order, each split over the pool in contiguous chunks
 *          of its outer range (small kernels on the calling thread), then
 *          copies results that live in another buffer.
 * Also `--emit=llvm` (cpu_emit_llvm) and `aot --target=cpu` (cpu_aot).
 * Every failure (scheduler, verifier, JIT, out of memory) is a message. */
#include "runtime/runtime.h"

#include "codegen/llvm.h"
#include "runtime/threadpool.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    KilnDType dtype;
    int rank;
    int64_t *shape;
} ResultType;

typedef struct {
    Arena *arena; /* the KProgram lives here */
    KProgram *kp;
    KilnJit *jit;
    ThreadPool *tp;
    int nparams, nresults;
    ResultType *results;
    KilnDType *param_dtypes;
    int64_t *param_numel;
    /* per thread of the pool: a scratch block (tiled matmuls) and a copy
     * of the buffer table whose last slot points at it */
    int64_t scratch_stride;
    char *scratch;
    void **task_bufs;
} CpuExe;

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* CPU time of the process (LLVM's JIT may compile on its own threads):
 * compile times that a loaded machine does not inflate. */
static double cpu_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void cpu_destroy(void *p) {
    CpuExe *x = p;
    if (!x) return;
    kjit_free(x->jit);
    tp_free(x->tp);
    if (x->kp) kprog_destroy(x->kp);
    if (x->arena) arena_free(x->arena);
    for (int i = 0; x->results && i < x->nresults; i++) free(x->results[i].shape);
    free(x->results);
    free(x->param_dtypes);
    free(x->param_numel);
    free(x->scratch);
    free(x->task_bufs);
    free(x);
}

/* Schedules g into a KProgram in a fresh arena. */
static KProgram *schedule(const IRGraph *g, const CompileOptions *opt, Arena **arena_out, char *err, size_t errlen) {
    Arena *arena = arena_new();
    FuseOptions fo = {.fuse = !opt || opt->opt_level > 0, .remarks = opt && opt->remarks};
    char ferr[1024] = "";
    KProgram *kp = fuse_graph(arena, g, &fo, ferr, sizeof ferr);
    if (!kp) {
        snprintf(err, errlen, "cpu: %s", ferr[0] ? ferr : "the fusion scheduler failed");
        arena_free(arena);
        return NULL;
    }
    *arena_out = arena;
    return kp;
}

static void *cpu_compile(const IRGraph *g, const CompileOptions *opt, char *err, size_t errlen) {
    double t0 = now_ms(), c0 = cpu_ms();
    CpuExe *x = xcalloc(1, sizeof *x);
    x->kp = schedule(g, opt, &x->arena, err, errlen);
    if (!x->kp) {
        cpu_destroy(x);
        return NULL;
    }
    double t1 = now_ms();
    char jerr[2048] = "";
    x->jit = kjit_compile_for(x->kp, opt->cpu, tp_default_threads(), NULL, jerr, sizeof jerr);
    if (!x->jit) {
        snprintf(err, errlen, "cpu: %s", jerr);
        cpu_destroy(x);
        return NULL;
    }
    x->nparams = g->params.len;
    x->nresults = g->results.len;
    x->results = xcalloc((size_t)x->nresults + 1, sizeof(ResultType));
    for (int i = 0; i < x->nresults; i++) {
        const Node *n = ir_node(g, g->results.data[i]);
        x->results[i].dtype = n->dtype;
        x->results[i].rank = n->rank;
        x->results[i].shape = xcalloc((size_t)n->rank + 1, sizeof(int64_t));
        for (int d = 0; d < n->rank; d++) x->results[i].shape[d] = n->shape[d];
    }
    x->param_dtypes = xcalloc((size_t)x->nparams + 1, sizeof(KilnDType));
    x->param_numel = xcalloc((size_t)x->nparams + 1, sizeof(int64_t));
    for (int i = 0; i < x->nparams; i++) {
        const Node *n = ir_node(g, g->params.data[i]);
        x->param_dtypes[i] = n->dtype;
        x->param_numel[i] = ir_numel(n);
    }
    double c_compiled = cpu_ms();
    x->tp = tp_new(tp_default_threads());
    int nt = tp_size(x->tp), nb = x->kp->bufs.len;
    int64_t most = 0;
    for (int i = 0; i < x->kp->kernels.len; i++)
        if (kjit_scratch(x->jit, i) > most) most = kjit_scratch(x->jit, i);
    x->scratch_stride = (most + 63) / 64 * 64;
    if (most > 0 && !(x->scratch = aligned_alloc(64, (size_t)x->scratch_stride * (size_t)nt))) {
        snprintf(err, errlen, "cpu: out of memory for the matmul scratch (%d x %lld bytes)", nt, (long long)most);
        cpu_destroy(x);
        return NULL;
    }
    x->task_bufs = xcalloc((size_t)nt * (size_t)(nb + 1) + 1, sizeof(void *));
    if (opt && opt->verbose) {
        KJitTimes t;
        kjit_times(x->jit, &t);
        fprintf(stderr,
                "kiln: cpu: %d kernels; schedule %.1f ms, LLVM IR + optimisation + code generation %.1f ms "
                "(%d parts, %.1f ms CPU), JIT link %.1f ms; total %.1f ms (%.1f ms CPU); %d threads\n",
                x->kp->kernels.len, t1 - t0, t.codegen_wall_ms, t.parts, t.codegen_cpu_ms, t.link_ms, now_ms() - t0,
                c_compiled - c0, tp_size(x->tp));
    }
    return x;
}

/* ---- running */

typedef struct {
    KernelFn fn;
    int64_t outer, chunk;
    void **task_bufs; /* task t's table at task_bufs + t * stride */
    int stride;
} ChunkJob;

static void run_chunk(void *ctx, int t) {
    ChunkJob *j = ctx;
    int64_t b = (int64_t)t * j->chunk, e = b + j->chunk;
    if (e > j->outer) e = j->outer;
    if (b < e) j->fn(b, e, j->task_bufs + (size_t)t * (size_t)j->stride);
}

/* Work below this (elements touched, roughly) runs on one thread. */
enum { PARALLEL_MIN_WORK = 1 << 16 };

/* bufs has nbufs + 1 entries (the last for the scratch). */
static void run_kernel(CpuExe *x, int i, void **bufs) {
    const Kernel *k = &x->kp->kernels.data[i];
    KernelFn fn = kjit_kernel(x->jit, i);
    int64_t outer = k->outer;
    int nb = x->kp->bufs.len;
    if (outer <= 0) return;
    bufs[nb] = x->scratch;
    double work = (double)k->flops + (double)k->bytes, per_o = 1;
    for (int s = 0; s < k->stages.len; s++) per_o += (double)k->stages.data[s].extent;
    if (work < (double)outer * per_o) work = (double)outer * per_o;
    int nt = tp_size(x->tp);
    int64_t grain = llvm_kernel_grain(k);
    if (nt <= 1 || work < PARALLEL_MIN_WORK || outer < 2 * grain) {
        fn(0, outer, bufs);
        return;
    }
    /* a tiled matmul with fewer rows than columns splits by columns (each
     * thread then packs only its part of B), else by rows */
    KernelFn cols = kjit_kernel_cols(x->jit, i);
    if (cols && k->mm.batch * k->mm.m < k->mm.n && k->mm.n >= 2 * 64) {
        fn = cols;
        outer = k->mm.n;
        grain = 64;
    }
    int64_t units = (outer + grain - 1) / grain;
    int64_t per = (units + nt - 1) / nt;
    ChunkJob job = {fn, outer, per * grain, x->task_bufs, nb + 1};
    int ntasks = (int)((outer + job.chunk - 1) / job.chunk);
    for (int t = 0; t < ntasks; t++) { /* ntasks <= nt */
        void **tb = x->task_bufs + (size_t)t * (size_t)(nb + 1);
        memcpy(tb, bufs, sizeof(void *) * (size_t)nb);
        tb[nb] = x->scratch ? x->scratch + (size_t)t * (size_t)x->scratch_stride : NULL;
    }
    tp_run(x->tp, run_chunk, &job, ntasks);
}

/* Binds every buffer; allocates outputs and the arena.  On failure frees
 * what it made. */
static bool bind_buffers(CpuExe *x, const KilnTensor *inputs, KilnTensor *outputs, void ***bufs_out, void **arena_out,
                         char *err, size_t errlen) {
    const KProgram *kp = x->kp;
    for (int i = 0; i < x->nparams; i++) {
        if (inputs[i].dtype != x->param_dtypes[i] || kiln_tensor_numel(&inputs[i]) != x->param_numel[i]) {
            snprintf(err, errlen, "cpu: input %d is %s[%lld elements], the graph wants %s[%lld elements]", i,
                     kiln_dtype_name(inputs[i].dtype), (long long)kiln_tensor_numel(&inputs[i]),
                     kiln_dtype_name(x->param_dtypes[i]), (long long)x->param_numel[i]);
            return false;
        }
    }
    int made = 0;
    for (; made < x->nresults; made++) {
        ResultType *r = &x->results[made];
        if (!kiln_tensor_init(&outputs[made], r->dtype, r->rank, r->shape)) {
            snprintf(err, errlen, "cpu: out of memory for result %d", made);
            goto fail;
        }
    }
    void *arena = NULL;
    if (kp->arena_bytes > 0) {
        size_t bytes = ((size_t)kp->arena_bytes + 63) / 64 * 64;
        arena = aligned_alloc(64, bytes);
        if (!arena) {
            snprintf(err, errlen, "cpu: out of memory for the intermediates (%lld bytes)", (long long)kp->arena_bytes);
            goto fail;
        }
    }
    void **bufs = xcalloc((size_t)kp->bufs.len + 2, sizeof(void *)); /* + the scratch slot */
    for (int i = 0; i < kp->bufs.len; i++) {
        const KBuf *b = &kp->bufs.data[i];
        if (b->kind == KB_INPUT && b->index >= 0 && b->index < x->nparams) bufs[i] = inputs[b->index].data;
        else if (b->kind == KB_OUTPUT && b->index >= 0 && b->index < x->nresults) bufs[i] = outputs[b->index].data;
        else if (b->kind == KB_TEMP && arena) bufs[i] = (char *)arena + b->offset;
        if (!bufs[i] && b->numel > 0) {
            snprintf(err, errlen, "cpu: buffer %s (%d) has no memory bound (a scheduler bug)", b->name, i);
            free(bufs);
            free(arena);
            goto fail;
        }
    }
    *bufs_out = bufs;
    *arena_out = arena;
    return true;
fail:
    for (int r = 0; r < made; r++) kiln_tensor_free(&outputs[r]);
    return false;
}

/* Results held by another buffer (a parameter, another result) are copied. */
static void copy_results(CpuExe *x, void **bufs, KilnTensor *outputs) {
    const KProgram *kp = x->kp;
    for (int r = 0; r < x->nresults && r < kp->result_buf.len; r++) {
        int rb = kp->result_buf.data[r];
        if (rb < 0 || rb >= kp->bufs.len) continue;
        const KBuf *b = &kp->bufs.data[rb];
        if (b->kind == KB_OUTPUT && b->index == r) continue;
        size_t bytes = (size_t)kiln_tensor_numel(&outputs[r]) * kiln_dtype_size(outputs[r].dtype);
        size_t have = (size_t)b->numel * kiln_dtype_size(b->dtype);
        if (bufs[rb] && bufs[rb] != outputs[r].data) memcpy(outputs[r].data, bufs[rb], bytes < have ? bytes : have);
    }
}

static bool cpu_run(void *exe, const KilnTensor *inputs, KilnTensor *outputs, char *err, size_t errlen) {
    CpuExe *x = exe;
    void **bufs, *arena;
    if (!bind_buffers(x, inputs, outputs, &bufs, &arena, err, errlen)) return false;
    for (int i = 0; i < x->kp->kernels.len; i++) run_kernel(x, i, bufs);
    copy_results(x, bufs, outputs);
    free(bufs);
    free(arena);
    return true;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static bool cpu_bench(void *exe, const KilnTensor *inputs, int runs, BenchReport *out, char *err, size_t errlen) {
    CpuExe *x = exe;
    if (runs < 1) runs = 1;
    KilnTensor *outputs = xcalloc((size_t)x->nresults + 1, sizeof(KilnTensor));
    void **bufs, *arena;
    if (!bind_buffers(x, inputs, outputs, &bufs, &arena, err, errlen)) {
        free(outputs);
        return false;
    }
    int nk = x->kp->kernels.len;
    double *kt = xcalloc((size_t)(nk + 1) * (size_t)runs, sizeof(double));
    double *whole = xcalloc((size_t)runs, sizeof(double));
    for (int r = -1; r < runs; r++) { /* r == -1: warm-up */
        double t0 = now_ms();
        for (int i = 0; i < nk; i++) {
            double a = now_ms();
            run_kernel(x, i, bufs);
            if (r >= 0) kt[(size_t)i * (size_t)runs + (size_t)r] = now_ms() - a;
        }
        copy_results(x, bufs, outputs);
        if (r >= 0) whole[r] = now_ms() - t0;
    }
    qsort(whole, (size_t)runs, sizeof(double), cmp_double);
    out->run_ms = whole[runs / 2];
    out->runs = runs;
    for (int i = 0; i < nk; i++) {
        double *t = kt + (size_t)i * (size_t)runs;
        qsort(t, (size_t)runs, sizeof(double), cmp_double);
        const Kernel *k = &x->kp->kernels.data[i];
        KernelTiming timing = {k->name, t[runs / 2], k->bytes, k->flops};
        VEC_PUSH(out->kernels, timing);
    }
    free(kt);
    free(whole);
    free(bufs);
    free(arena);
    for (int i = 0; i < x->nresults; i++) kiln_tensor_free(&outputs[i]);
    free(outputs);
    return true;
}

const Backend cpu_backend = {"cpu", cpu_compile, cpu_run, cpu_destroy, cpu_bench};

KilnStatus cpu_check_name(const char *name, char *err, size_t errlen) {
    return llvm_cpu_check(name, err, errlen);
}

/* ---- emit and aot */

KilnStatus cpu_emit_llvm(const IRGraph *g, const CompileOptions *opt, FILE *out, char *err, size_t errlen) {
    Arena *arena = NULL;
    KProgram *kp = schedule(g, opt, &arena, err, errlen);
    if (!kp) return KILN_ERR_DEVICE;
    char lerr[2048] = "";
    KilnStatus st = KILN_OK;
    LLVMTargetMachineRef tm = llvm_target_machine(opt->cpu, false, lerr, sizeof lerr);
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMModuleRef mod = tm ? llvm_build_program(ctx, kp, tm, false, NULL, lerr, sizeof lerr) : NULL;
    if (mod) {
        char *s = LLVMPrintModuleToString(mod);
        fputs(s, out);
        LLVMDisposeMessage(s);
        LLVMDisposeModule(mod);
    } else {
        snprintf(err, errlen, "cpu: %s", lerr);
        st = KILN_ERR_DEVICE;
    }
    LLVMContextDispose(ctx);
    if (tm) LLVMDisposeTargetMachine(tm);
    kprog_destroy(kp);
    arena_free(arena);
    return st;
}

static const char *c_type(KilnDType dt) {
    switch (dt) {
    case KILN_F32: return "float";
    case KILN_F64: return "double";
    case KILN_F16:
    case KILN_BF16: return "uint16_t";
    case KILN_I32: return "int32_t";
    case KILN_I64: return "int64_t";
    case KILN_BOOL: return "uint8_t";
    case KILN_NUM_DTYPES: break;
    }
    return "void";
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
        fprintf(f, "%sconst %s *%s", i ? ", " : "", c_type(n->dtype), n->name ? n->name : "in");
    }
    for (int i = 0; i < g->results.len; i++) {
        const Node *n = ir_node(g, g->results.data[i]);
        fprintf(f, "%s%s *out%d", i || g->params.len ? ", " : "", c_type(n->dtype), i);
    }
    if (g->params.len + g->results.len == 0) fputs("void", f);
    fprintf(f, ");\n\n#ifdef __cplusplus\n}\n#endif\n\n#endif\n");
    if (fclose(f) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", path, strerror(errno));
        return false;
    }
    return true;
}

KilnStatus cpu_aot(const IRGraph *g, const CompileOptions *opt, const char *cpu_name, const char *dir, char *err,
                   size_t errlen) {
    Arena *arena = NULL;
    KProgram *kp = schedule(g, opt, &arena, err, errlen);
    if (!kp) return KILN_ERR_DEVICE;
    char lerr[2048] = "";
    KilnStatus st = KILN_OK;
    LLVMTargetMachineRef tm = llvm_target_machine(cpu_name, true, lerr, sizeof lerr);
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMModuleRef mod = tm ? llvm_build_program(ctx, kp, tm, true, NULL, lerr, sizeof lerr) : NULL;
    char *obj = arena_printf(arena, "%s/%s.o", dir, g->name);
    char *hdr = arena_printf(arena, "%s/%s.h", dir, g->name);
    char *readme = arena_printf(arena, "%s/README", dir);
    if (!mod) {
        snprintf(err, errlen, "cpu: %s", lerr);
        st = KILN_ERR_DEVICE;
        goto done;
    }
    char *msg = NULL;
    if (LLVMTargetMachineEmitToFile(tm, mod, obj, LLVMObjectFile, &msg)) {
        snprintf(err, errlen, "cpu: cannot write %s: %s", obj, msg ? msg : "LLVM failed");
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
    if (fclose(f) != 0) {
        snprintf(err, errlen, "cannot write %s: %s", readme, strerror(errno));
        st = KILN_ERR_USAGE;
    }
done:
    if (mod) LLVMDisposeModule(mod);
    LLVMContextDispose(ctx);
    if (tm) LLVMDisposeTargetMachine(tm);
    kprog_destroy(kp);
    arena_free(arena);
    return st;
}
