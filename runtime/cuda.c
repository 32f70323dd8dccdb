/* cuda.c - the cuda device: fuse_graph -> cuda_codegen -> kernel cache /
 * NVRTC -> cuModuleLoadData, then runs from one device allocation per run.
 *
 * Contract: compile() takes a concrete graph and returns a CudaExe that owns
 * everything it made (arena, kernel program, CUDA program, module, a retain
 * of the device's primary context); destroy() releases all of it.  run()
 * allocates device memory once for the whole graph run -- inputs, outputs and
 * the temporaries' arena at the offsets fuse_graph chose -- copies the inputs
 * in, launches every kernel in order, copies the results out and frees the
 * memory, on success and on every error path.  bench() times each kernel
 * with CUDA events (medians over the runs; inputs resident on the device).
 *
 * Also here: the build pipeline shared with --emit=cuda/ptx and the AOT
 * writer (runtime/aot_cuda.c), declared in cuda_driver.h. */
#include "codegen/cuda.h"
#include "runtime/cuda_driver.h"
#include "runtime/kcache.h"
#include "runtime/runtime.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define DEFAULT_ARCH 90 /* sm_90 (H100/H200) when no GPU says otherwise */
#define DEVICE_ALIGN 256

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

/* ------------------------------------------------------------ architecture */

bool cuda_parse_arch(const char *s, int *sm, char *err, size_t errlen) {
    const char *p = s;
    if (strncmp(p, "sm_", 3) == 0) p += 3;
    else if (strncmp(p, "compute_", 8) == 0) p += 8;
    char *end;
    long v = strtol(p, &end, 10);
    if (end == p || *end || v < 30 || v > 999) {
        snprintf(err, errlen, "unknown CUDA architecture '%s' (write it as sm_XX, e.g. sm_80 or sm_90)", s);
        return false;
    }
    *sm = (int)v;
    return true;
}

/* The GPU's compute capability as sm_XX; 0 without a usable device. */
static int device_arch(const CudaDriver *d, CUdevice dev) {
    int major = 0, minor = 0;
    if (d->DeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev) != CUDA_SUCCESS ||
        d->DeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev) != CUDA_SUCCESS)
        return 0;
    return major * 10 + minor;
}

bool cuda_target_arch(const CompileOptions *opt, int *sm, char *err, size_t errlen) {
    if (opt && opt->arch) return cuda_parse_arch(opt->arch, sm, err, errlen);
    const CudaDriver *d = cuda_driver_get(NULL, 0);
    CUdevice dev;
    int a = 0;
    if (d && d->DeviceGet(&dev, 0) == CUDA_SUCCESS) a = device_arch(d, dev);
    *sm = a ? a : DEFAULT_ARCH;
    return true;
}

/* ------------------------------------------------------------ the pipeline */

void cuda_build_free(CudaBuild *b) {
    cuda_program_free(&b->cp);
    kprog_destroy(b->kp);
    if (b->arena) arena_free(b->arena);
    free(b->ptx);
    memset(b, 0, sizeof *b);
}

/* Which NVRTC writes the PTX, cheaply (without loading it): the real path,
 * size and time of the toolkit's libnvrtc.so and its include folder, plus the
 * options runtime/nvrtc.c passes.  Keep NVRTC_OPTIONS in step with
 * nvrtc_compile(); a change there must change this string. */
#define NVRTC_OPTIONS "--gpu-architecture=compute_XX -default-device --std=c++17 --include-path=CUDA/include"
static void nvrtc_identity(StrBuf *sb) {
    const char *homes[] = {getenv("CUDA_HOME"), getenv("CUDA_PATH"), "/usr/local/cuda"};
    sb_printf(sb, "options %s; cuda.h %d", NVRTC_OPTIONS, CUDA_VERSION);
    for (size_t h = 0; h < sizeof homes / sizeof homes[0]; h++) {
        if (!homes[h] || !*homes[h]) continue;
        StrBuf lib = {0};
        sb_printf(&lib, "%s/lib64/libnvrtc.so", homes[h]);
        struct stat st;
        char *real = realpath(lib.data, NULL);
        bool found = real && stat(real, &st) == 0;
        if (found)
            sb_printf(sb, "; %s %lld %lld; include %s/include", real, (long long)st.st_size, (long long)st.st_mtime,
                      homes[h]);
        free(real);
        sb_free(&lib);
        if (found) break;
    }
}

/* What makes the PTX differ, besides the source: the architecture, the
 * NVRTC interface (nvrtc_compile's options), the toolkit it came from. */
static KCacheKey ptx_key(const CudaBuild *b) {
    KCacheHasher h;
    char arch[32];
    StrBuf nv = {0};
    snprintf(arch, sizeof arch, "sm_%d", b->arch_sm);
    nvrtc_identity(&nv);
    kcache_hash_init(&h);
    kcache_hash_str(&h, "kiln " KILN_VERSION " cuda ptx v1");
    kcache_hash_str(&h, b->cp.source);
    kcache_hash_str(&h, arch);
    kcache_hash_str(&h, nv.data);
    sb_free(&nv);
    return kcache_hash_done(&h);
}

KilnStatus cuda_build(const IRGraph *g, const CompileOptions *opt, int arch_sm, bool want_ptx, CudaBuild *b,
                      char *err, size_t errlen) {
    memset(b, 0, sizeof *b);
    b->arch_sm = arch_sm;
    b->cache = KC_OFF;
    double t0 = now_ms();
    b->arena = arena_new();
    FuseOptions fo = {.fuse = !opt || opt->opt_level > 0, .remarks = false};
    b->kp = fuse_graph(b->arena, g, &fo, err, errlen);
    if (!b->kp) goto fail;
    char verr[512];
    if (!kprog_verify(b->kp, verr, sizeof verr)) {
        snprintf(err, errlen, "internal error: the kernel program of '%s' is malformed: %s", g->name, verr);
        goto fail;
    }
    double t1 = now_ms();
    if (!cuda_codegen(b->kp, arch_sm, false, &b->cp, err, errlen)) goto fail;
    if (b->cp.launches.len != b->kp->kernels.len) {
        snprintf(err, errlen, "internal error: %d kernels but %d CUDA launches", b->kp->kernels.len,
                 b->cp.launches.len);
        goto fail;
    }
    double t2 = now_ms();
    b->fuse_ms = t1 - t0, b->codegen_ms = t2 - t1;
    if (!want_ptx) return KILN_OK;

    KCache cache;
    kcache_open(&cache);
    KCacheKey key = ptx_key(b);
    b->cache = kcache_load(&cache, key, &b->ptx, &b->ptx_len);
    if (b->cache != KC_HIT) {
        char *ptx = NULL;
        size_t len = 0;
        KilnStatus st = nvrtc_compile(b->cp.source, arch_sm, &ptx, &len, err, errlen);
        if (st != KILN_OK) {
            kcache_close(&cache);
            free(ptx);
            cuda_build_free(b);
            return st;
        }
        /* Our own NUL-terminated copy, without NVRTC's trailing NUL in the length. */
        while (len && ptx[len - 1] == 0) len--;
        b->ptx = xmalloc(len + 1);
        memcpy(b->ptx, ptx, len);
        b->ptx[len] = 0;
        b->ptx_len = len;
        free(ptx);
        char serr[512];
        if (!kcache_store(&cache, key, b->ptx, b->ptx_len, serr, sizeof serr) && opt && opt->verbose)
            fprintf(stderr, "kiln: %s\n", serr);
    }
    if (opt && opt->verbose) {
        char hex[33];
        kcache_key_hex(key, hex);
        fprintf(stderr, "kiln: cuda: fuse %.1f ms, codegen %.1f ms, PTX %s %.1f ms (cache %s%s%s, key %s)\n",
                b->fuse_ms, b->codegen_ms, b->cache == KC_HIT ? "loaded in" : "compiled in", now_ms() - t2,
                kcache_result_name(b->cache), cache.dir ? " in " : ": ", cache.dir ? cache.dir : cache.why_off, hex);
    }
    kcache_close(&cache);
    b->ptx_ms = now_ms() - t2;
    return KILN_OK;
fail:
    cuda_build_free(b);
    return KILN_ERR_DEVICE;
}

int64_t cuda_buf_bytes(const KBuf *b) { return b->numel * (int64_t)kiln_dtype_size(b->dtype); }

/* Device memory layout of one run: inputs and outputs first (each 256-byte
 * aligned), then the temporaries' arena.  Fills off[] (one per buffer) and
 * returns the total. */
int64_t cuda_layout(const KProgram *p, int64_t *off) {
    int64_t at = 0;
    for (int i = 0; i < p->bufs.len; i++) {
        const KBuf *b = &p->bufs.data[i];
        if (b->kind == KB_TEMP) continue;
        off[i] = at;
        at += (cuda_buf_bytes(b) + DEVICE_ALIGN - 1) / DEVICE_ALIGN * DEVICE_ALIGN;
    }
    int64_t temps = at;
    for (int i = 0; i < p->bufs.len; i++)
        if (p->bufs.data[i].kind == KB_TEMP) off[i] = temps + p->bufs.data[i].offset;
    return temps + p->arena_bytes;
}

/* ---------------------------------------------------------- the executable */

typedef struct {
    const CudaDriver *drv;
    CUdevice dev;
    CUcontext ctx; /* the primary context, retained while this lives */
    bool ctx_retained;
    CUmodule mod;
    CudaBuild build;
    CUfunction *funcs;  /* per launch */
    int64_t *off;       /* per buffer: byte offset in the run's allocation */
    int64_t total;      /* bytes of the run's allocation */
    CUdeviceptr **argv; /* per launch: its arguments, filled for each run */
    void ***params;     /* per launch: pointers to argv[l][j] for cuLaunchKernel */
    int nresults;
    KilnDType *res_dtype;
    int *res_rank;
    int64_t **res_shape;
} CudaExe;

static void cuda_destroy(void *exe_) {
    CudaExe *e = exe_;
    if (!e) return;
    const CudaDriver *d = e->drv;
    if (e->mod) d->ModuleUnload(e->mod);
    if (e->ctx_retained) d->DevicePrimaryCtxRelease(e->dev);
    for (int l = 0; e->argv && l < e->build.cp.launches.len; l++) free(e->argv[l]), free(e->params[l]);
    free(e->argv);
    free(e->params);
    for (int i = 0; e->res_shape && i < e->nresults; i++) free(e->res_shape[i]);
    free(e->res_shape);
    free(e->res_rank);
    free(e->res_dtype);
    free(e->funcs);
    free(e->off);
    cuda_build_free(&e->build);
    free(e);
}

static void *cuda_compile(const IRGraph *g, const CompileOptions *opt, char *err, size_t errlen) {
    char why[512];
    const CudaDriver *d = cuda_driver_get(why, sizeof why);
    if (!d) {
        snprintf(err, errlen, "%s", why);
        return NULL;
    }
    CudaExe *e = xcalloc(1, sizeof *e);
    e->drv = d;
    if (!CU(d, DeviceGet, &e->dev, 0)) goto fail;
    if (!CU(d, DevicePrimaryCtxRetain, &e->ctx, e->dev)) goto fail;
    e->ctx_retained = true;
    if (!CU(d, CtxSetCurrent, e->ctx)) goto fail;
    int dev_sm = device_arch(d, e->dev), sm = dev_sm;
    if (opt && opt->arch) {
        if (!cuda_parse_arch(opt->arch, &sm, err, errlen)) goto fail;
        if (dev_sm && sm > dev_sm) {
            snprintf(err, errlen, "--arch=%s is newer than this GPU (sm_%d): code for it cannot run here", opt->arch,
                     dev_sm);
            goto fail;
        }
    }
    if (!sm) sm = DEFAULT_ARCH;
    if (cuda_build(g, opt, sm, true, &e->build, err, errlen) != KILN_OK) goto fail;
    const KProgram *p = e->build.kp;
    const CudaProgram *cp = &e->build.cp;
    double t0 = now_ms();
    if (!CU(d, ModuleLoadData, &e->mod, e->build.ptx)) goto fail;
    int nl = cp->launches.len;
    e->funcs = xcalloc((size_t)nl + 1, sizeof *e->funcs);
    e->argv = xcalloc((size_t)nl + 1, sizeof *e->argv);
    e->params = xcalloc((size_t)nl + 1, sizeof *e->params);
    int smem_optin = 0;
    if (d->DeviceGetAttribute(&smem_optin, CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN, e->dev) != CUDA_SUCCESS)
        smem_optin = 0;
    for (int l = 0; l < nl; l++) {
        const CudaLaunch *L = &cp->launches.data[l];
        if (!CU(d, ModuleGetFunction, &e->funcs[l], e->mod, L->name)) goto fail;
        if (L->shared_bytes > 48 * 1024) {
            if (smem_optin && L->shared_bytes > (unsigned)smem_optin) {
                snprintf(err, errlen, "kernel %s needs %u bytes of shared memory; this GPU allows %d", L->name,
                         L->shared_bytes, smem_optin);
                goto fail;
            }
            if (!CU(d, FuncSetAttribute, e->funcs[l], CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES,
                    (int)L->shared_bytes))
                goto fail;
        }
        e->argv[l] = xcalloc((size_t)L->nargs + 1, sizeof(CUdeviceptr));
        e->params[l] = xcalloc((size_t)L->nargs + 1, sizeof(void *));
        for (int j = 0; j < L->nargs; j++) {
            if (L->buf_args[j] < 0 || L->buf_args[j] >= p->bufs.len) {
                snprintf(err, errlen, "internal error: launch %s names buffer %d of %d", L->name, L->buf_args[j],
                         p->bufs.len);
                goto fail;
            }
            e->params[l][j] = &e->argv[l][j];
        }
    }
    if (opt && opt->verbose) fprintf(stderr, "kiln: cuda: module loaded in %.1f ms (sm_%d)\n", now_ms() - t0, sm);
    e->off = xcalloc((size_t)p->bufs.len + 1, sizeof *e->off);
    e->total = cuda_layout(p, e->off);
    /* result shapes, so run() does not depend on the graph outliving us */
    e->nresults = g->results.len;
    if (p->result_buf.len != e->nresults) {
        snprintf(err, errlen, "internal error: %d results but %d result buffers", e->nresults, p->result_buf.len);
        goto fail;
    }
    e->res_dtype = xcalloc((size_t)e->nresults + 1, sizeof *e->res_dtype);
    e->res_rank = xcalloc((size_t)e->nresults + 1, sizeof *e->res_rank);
    e->res_shape = xcalloc((size_t)e->nresults + 1, sizeof *e->res_shape);
    for (int i = 0; i < e->nresults; i++) {
        const Node *n = ir_node(g, g->results.data[i]);
        e->res_dtype[i] = n->dtype;
        e->res_rank[i] = n->rank;
        e->res_shape[i] = xcalloc((size_t)n->rank + 1, sizeof(int64_t));
        for (int k = 0; k < n->rank; k++) e->res_shape[i][k] = n->shape[k];
        const KBuf *b = &p->bufs.data[p->result_buf.data[i]];
        if (b->dtype != n->dtype || b->numel != ir_numel(n)) {
            snprintf(err, errlen, "internal error: result %d is %s[%lld] in buffer %s of %s[%lld]", i,
                     kiln_dtype_name(n->dtype), (long long)ir_numel(n), b->name, kiln_dtype_name(b->dtype),
                     (long long)b->numel);
            goto fail;
        }
    }
    return e;
fail:
    cuda_destroy(e);
    return NULL;
}

/* Allocates the run's device memory and points every launch's arguments
 * into it.  *base stays 0 when the graph needs no memory. */
static bool run_alloc(CudaExe *e, CUdeviceptr *base, char *err, size_t errlen) {
    const CudaDriver *d = e->drv;
    *base = 0;
    if (e->total > 0) {
        CUresult r = cuda_mem_alloc(d, base, (size_t)e->total);
        if (r != CUDA_SUCCESS) {
            *base = 0;
            char what[96];
            snprintf(what, sizeof what, "cuMemAlloc(%lld bytes for the graph's tensors)", (long long)e->total);
            return cuda_check(d, r, what, __FILE__, __LINE__, err, errlen);
        }
    }
    const CudaProgram *cp = &e->build.cp;
    for (int l = 0; l < cp->launches.len; l++)
        for (int j = 0; j < cp->launches.data[l].nargs; j++)
            e->argv[l][j] = *base + (CUdeviceptr)e->off[cp->launches.data[l].buf_args[j]];
    return true;
}

static bool copy_inputs(CudaExe *e, CUdeviceptr base, const KilnTensor *in, char *err, size_t errlen) {
    const CudaDriver *d = e->drv;
    const KProgram *p = e->build.kp;
    for (int i = 0; i < p->bufs.len; i++) {
        const KBuf *b = &p->bufs.data[i];
        if (b->kind != KB_INPUT) continue;
        const KilnTensor *t = &in[b->index];
        if (t->dtype != b->dtype || kiln_tensor_numel(t) != b->numel) {
            snprintf(err, errlen, "input %d (%s) is %s with %lld elements; the compiled graph wants %s with %lld",
                     b->index, b->name, kiln_dtype_name(t->dtype), (long long)kiln_tensor_numel(t),
                     kiln_dtype_name(b->dtype), (long long)b->numel);
            return false;
        }
        size_t bytes = (size_t)cuda_buf_bytes(b);
        if (bytes && !CU(d, MemcpyHtoD, base + (CUdeviceptr)e->off[i], t->data, bytes)) return false;
    }
    return true;
}

static bool launch(CudaExe *e, int l, char *err, size_t errlen) {
    const CudaDriver *d = e->drv;
    const CudaLaunch *L = &e->build.cp.launches.data[l];
    if (!L->grid[0] || !L->grid[1] || !L->grid[2] || !L->block[0] || !L->block[1] || !L->block[2])
        return true; /* nothing to compute (an empty tensor) */
    char what[160];
    snprintf(what, sizeof what, "cuLaunchKernel(%s, grid %u,%u,%u, block %u,%u,%u)", L->name, L->grid[0], L->grid[1],
             L->grid[2], L->block[0], L->block[1], L->block[2]);
    CUresult r = d->LaunchKernel(e->funcs[l], L->grid[0], L->grid[1], L->grid[2], L->block[0], L->block[1],
                                 L->block[2], L->shared_bytes, NULL, e->params[l], NULL);
    return cuda_check(d, r, what, __FILE__, __LINE__, err, errlen);
}

static bool cuda_run(void *exe_, const KilnTensor *in, KilnTensor *out, char *err, size_t errlen) {
    CudaExe *e = exe_;
    const CudaDriver *d = e->drv;
    const KProgram *p = e->build.kp;
    CUdeviceptr base = 0;
    int made = 0;
    bool ok = false;
    if (!CU(d, CtxSetCurrent, e->ctx)) return false;
    if (!run_alloc(e, &base, err, errlen)) goto done;
    if (!copy_inputs(e, base, in, err, errlen)) goto done;
    for (int l = 0; l < e->build.cp.launches.len; l++)
        if (!launch(e, l, err, errlen)) goto done;
    if (!CU(d, CtxSynchronize)) goto done;
    for (; made < e->nresults; made++) {
        int i = made;
        if (!kiln_tensor_init(&out[i], e->res_dtype[i], e->res_rank[i], e->res_shape[i])) {
            snprintf(err, errlen, "out of host memory for result %d", i);
            goto done;
        }
        int bi = p->result_buf.data[i];
        size_t bytes = (size_t)cuda_buf_bytes(&p->bufs.data[bi]);
        if (bytes && !CU(d, MemcpyDtoH, out[i].data, base + (CUdeviceptr)e->off[bi], bytes)) {
            made++; /* out[i] was initialised: freed below */
            goto done;
        }
    }
    ok = true;
done:
    if (base) d->MemFree(base); /* after a kernel fault this fails too; nothing more to do */
    if (!ok)
        for (int i = 0; i < made; i++) kiln_tensor_free(&out[i]);
    return ok;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n ? (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2])) : 0;
}

/* Per-kernel times with an event before each kernel and one after the last;
 * run_ms is the device time of all kernels of one run (inputs stay on the
 * device; copies are not timed).  Medians over `runs` after one warm-up. */
static bool cuda_bench(void *exe_, const KilnTensor *in, int runs, BenchReport *rep, char *err, size_t errlen) {
    CudaExe *e = exe_;
    const CudaDriver *d = e->drv;
    const KProgram *p = e->build.kp;
    int nl = e->build.cp.launches.len;
    CUdeviceptr base = 0;
    CUevent *ev = xcalloc((size_t)nl + 1, sizeof *ev);
    double *t = xcalloc((size_t)(nl + 1) * (size_t)runs, sizeof *t); /* [kernel or total][run] */
    bool ok = false;
    if (runs < 1) runs = 1;
    if (!CU(d, CtxSetCurrent, e->ctx)) goto done;
    for (int k = 0; k <= nl; k++)
        if (!CU(d, EventCreate, &ev[k], CU_EVENT_DEFAULT)) goto done;
    if (!run_alloc(e, &base, err, errlen) || !copy_inputs(e, base, in, err, errlen)) goto done;
    for (int r = -1; r < runs; r++) { /* r == -1: warm-up (module JIT, caches) */
        for (int l = 0; l < nl; l++) {
            if (!CU(d, EventRecord, ev[l], NULL)) goto done;
            if (!launch(e, l, err, errlen)) goto done;
        }
        if (!CU(d, EventRecord, ev[nl], NULL) || !CU(d, EventSynchronize, ev[nl])) goto done;
        if (r < 0) continue;
        for (int l = 0; l < nl; l++) {
            float ms = 0;
            if (!CU(d, EventElapsedTime, &ms, ev[l], ev[l + 1])) goto done;
            t[(size_t)l * (size_t)runs + (size_t)r] = ms;
        }
        float total = 0;
        if (nl && !CU(d, EventElapsedTime, &total, ev[0], ev[nl])) goto done;
        t[(size_t)nl * (size_t)runs + (size_t)r] = total;
    }
    rep->runs = runs;
    rep->run_ms = median(t + (size_t)nl * (size_t)runs, runs);
    for (int l = 0; l < nl; l++) {
        const Kernel *k = &p->kernels.data[l];
        KernelTiming kt = {e->build.cp.launches.data[l].name, median(t + (size_t)l * (size_t)runs, runs), k->bytes,
                           k->flops};
        VEC_PUSH(rep->kernels, kt);
    }
    ok = true;
done:
    if (base) d->MemFree(base);
    for (int k = 0; k <= nl; k++)
        if (ev[k]) d->EventDestroy(ev[k]);
    free(ev);
    free(t);
    return ok;
}

const Backend cuda_backend = {"cuda", cuda_compile, cuda_run, cuda_destroy, cuda_bench};

bool cuda_available(char *why, size_t n) { return cuda_driver_get(why, n) != NULL; }

/* ------------------------------------------------------------------ emit */

KilnStatus cuda_emit_source(const IRGraph *g, const CompileOptions *opt, FILE *out, char *err, size_t errlen) {
    int sm;
    if (!cuda_target_arch(opt, &sm, err, errlen)) return KILN_ERR_USAGE;
    CudaBuild b;
    KilnStatus st = cuda_build(g, opt, sm, false, &b, err, errlen);
    if (st != KILN_OK) return st;
    fputs(b.cp.source, out);
    cuda_build_free(&b);
    return KILN_OK;
}

KilnStatus cuda_emit_ptx(const IRGraph *g, const CompileOptions *opt, FILE *out, char *err, size_t errlen) {
    int sm;
    if (!cuda_target_arch(opt, &sm, err, errlen)) return KILN_ERR_USAGE;
    CudaBuild b;
    KilnStatus st = cuda_build(g, opt, sm, true, &b, err, errlen);
    if (st != KILN_OK) return st;
    fwrite(b.ptx, 1, b.ptx_len, out);
    cuda_build_free(&b);
    return KILN_OK;
}
