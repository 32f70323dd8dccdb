/* cuda.c - the `cuda` backend (backend.h): cuda_codegen -> kernel cache /
 * NVRTC -> cuModuleLoadData, and the driver calls the executor needs.
 *
 * Contract: prepare() takes a verified kernel program and returns a CudaProg
 * that owns everything it made (CUDA program, PTX, module, a retain of the
 * device's primary context); release() gives all of it back.  call_begin()
 * makes that context current on the calling thread and gives the call its
 * own launch arguments and events, so several threads may run one program at
 * once.  alloc/free/copy_in/copy_out are cuMemAlloc/cuMemFree/cuMemcpy; the
 * executor (exec.c) lays out, binds, copies and frees on every path.
 * launch() is cuLaunchKernel on the default stream (and, with
 * KILN_CUDA_SYNC=1, a synchronisation after it, so a fault names its
 * kernel); sync() waits for it; mark()/elapsed() are CUDA events, for `bench`.
 * prepare() compiles PTX, or SASS when the driver is older than NVRTC within
 * the same major version, and refuses with both versions when neither can
 * load (runtime/cuda_compat.c); the module is loaded with the JIT's error log
 * captured into the message.
 *
 * Also here: the build pipeline shared with --emit=cuda/ptx and the AOT
 * writer (runtime/aot_cuda.c), declared in cuda_driver.h. */
#include "codegen/cuda.h"
#include "runtime/cuda_driver.h"
#include "runtime/cuda_toolkit.h"
#include "runtime/kcache.h"
#include "runtime/exec.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DEFAULT_ARCH 90 /* sm_90 (H100/H200) when no GPU says otherwise */
#define DEVICE_ALIGN 256

static double now_ms(void) { return clock_ms(CLOCK_MONOTONIC); }

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
    free(b->ptx);
    memset(b, 0, sizeof *b);
}

/* Which NVRTC writes the PTX, cheaply (without loading it): the options
 * runtime/nvrtc.c passes and what identifies THE toolkit (runtime/
 * cuda_toolkit.c: NVRTC, its builtins and headers, by real path, size and
 * time).  Keep NVRTC_OPTIONS in step with nvrtc_compile_to(); a change there
 * must change this string. */
#define NVRTC_OPTIONS                                                                                        \
    "--gpu-architecture=compute_XX|sm_XX -default-device --std=c++17 --include-path=TOOLKIT/include"
static void nvrtc_identity(StrBuf *sb) {
    sb_printf(sb, "options %s; cuda.h %d", NVRTC_OPTIONS, CUDA_VERSION);
    cuda_toolkit_identity(cuda_toolkit(), sb);
}

/* What makes the PTX differ, besides the source: the architecture, the
 * NVRTC interface (nvrtc_compile's options), the toolkit it came from. */
static KCacheKey ptx_key(const CudaBuild *b, const CudaTarget *t) {
    KCacheHasher h;
    char arch[96];
    StrBuf nv = {0};
    /* SASS is for the GPU at hand; PTX only for the architecture written for */
    if (t->output == NVRTC_CUBIN)
        snprintf(arch, sizeof arch, "sm_%d SASS for sm_%d", b->arch_sm, t->device_sm);
    else
        snprintf(arch, sizeof arch, "sm_%d%s", b->arch_sm, t->user_arch ? " (--arch)" : "");
    nvrtc_identity(&nv);
    kcache_hash_init(&h);
    kcache_hash_str(&h, "kiln " KILN_VERSION " cuda ptx v1");
    kcache_hash_str(&h, b->cp.source);
    kcache_hash_str(&h, arch);
    kcache_hash_str(&h, nv.data);
    sb_free(&nv);
    return kcache_hash_done(&h);
}

/* On a cache miss: the architecture NVRTC can compile for (cuda_choose_arch)
 * and the code itself, our own NUL-terminated copy in b->ptx. */
static KilnStatus compile_code(CudaBuild *b, const CudaTarget *t, char *err, size_t errlen) {
    NvrtcInfo info;
    if (!nvrtc_describe(&info, err, errlen)) return KILN_ERR_DEVICE;
    if (!cuda_choose_arch(&info, t->output, t->sm, t->user_arch, t->device_sm, &b->code_sm, err, errlen))
        return KILN_ERR_DEVICE;
    char *code = NULL;
    size_t len = 0;
    KilnStatus st = nvrtc_compile_to(b->cp.source, b->code_sm, t->output, &code, &len, err, errlen);
    if (st != KILN_OK) {
        free(code);
        return st;
    }
    if (t->output == NVRTC_PTX)
        while (len && code[len - 1] == 0) len--; /* NVRTC counts the NUL */
    b->ptx = xmalloc(len + 1);
    memcpy(b->ptx, code, len);
    b->ptx[len] = 0;
    b->ptx_len = len;
    free(code);
    return KILN_OK;
}

KilnStatus cuda_build(const KProgram *kp, const CompileOptions *opt, int arch_sm, bool want_ptx, CudaBuild *b,
                      char *err, size_t errlen) {
    CudaTarget t = {arch_sm, opt && opt->arch, NVRTC_PTX, 0};
    return cuda_build_target(kp, opt, &t, want_ptx, b, err, errlen);
}

KilnStatus cuda_build_target(const KProgram *kp, const CompileOptions *opt, const CudaTarget *t,
                             bool want_code, CudaBuild *b, char *err, size_t errlen) {
    int arch_sm = t->sm;
    memset(b, 0, sizeof *b);
    b->kp = kp;
    b->arch_sm = arch_sm;
    b->output = t->output;
    b->cache = KC_OFF;
    double t1 = now_ms();
    if (!cuda_codegen(kp, arch_sm, false, &b->cp, err, errlen)) goto fail;
    if (b->cp.launches.len != kp->kernels.len) {
        snprintf(err, errlen, "internal error: %d kernels but %d CUDA launches", kp->kernels.len,
                 b->cp.launches.len);
        goto fail;
    }
    double t2 = now_ms();
    b->codegen_ms = t2 - t1;
    if (!want_code) return KILN_OK;

    KCache cache;
    kcache_open(&cache);
    KCacheKey key = ptx_key(b, t);
    double t_cache = now_ms();
    b->cache = kcache_load(&cache, key, &b->ptx, &b->ptx_len);
    if (b->cache == KC_HIT) { /* the trace shows why there is no NVRTC span */
        trace_span(kp->trace, "codegen", t_cache, now_ms(), "kernel cache: %s found, NVRTC not run",
                   t->output == NVRTC_PTX ? "PTX" : "CUBIN");
    } else {
        double t_nvrtc = now_ms();
        KilnStatus st = compile_code(b, t, err, errlen);
        trace_span(kp->trace, "codegen", t_nvrtc, now_ms(), "NVRTC: CUDA C to %s (sm_%d)",
                   t->output == NVRTC_PTX ? "PTX" : "CUBIN", b->code_sm);
        if (st != KILN_OK) {
            kcache_close(&cache);
            cuda_build_free(b);
            return st;
        }
        char serr[512];
        if (!kcache_store(&cache, key, b->ptx, b->ptx_len, serr, sizeof serr) && opt && opt->verbose)
            fprintf(stderr, "kiln: %s\n", serr);
    }
    if (opt && opt->verbose) {
        char hex[33];
        kcache_key_hex(key, hex);
        fprintf(stderr, "kiln: cuda: codegen %.1f ms, %s %s %.1f ms (cache %s%s%s, key %s)\n", b->codegen_ms,
                t->output == NVRTC_CUBIN ? "SASS" : "PTX", b->cache == KC_HIT ? "loaded in" : "compiled in",
                now_ms() - t2, kcache_result_name(b->cache), cache.dir ? " in " : ": ",
                cache.dir ? cache.dir : cache.why_off, hex);
    }
    kcache_close(&cache);
    if (opt && opt->stats) { /* the program is one unit */
        opt->stats->kernels += kp->kernels.len, opt->stats->distinct++;
        if (b->cache == KC_HIT)
            opt->stats->cache_hits++;
        else
            opt->stats->compiled++;
    }
    b->ptx_ms = now_ms() - t2;
    return KILN_OK;
fail:
    cuda_build_free(b);
    return KILN_ERR_DEVICE;
}

int64_t cuda_buf_bytes(const KBuf *b) { return b->numel * (int64_t)kiln_dtype_size(b->dtype); }

/* Device memory layout of one run (the executor's, exec_layout): inputs and
 * outputs first, each 256-byte aligned, then the temporaries' arena. */
int64_t cuda_layout(const KProgram *p, int64_t *off) { return exec_layout(p, DEVICE_ALIGN, NULL, off); }

/* ---------------------------------------------------------- the program */

typedef struct {
    const CudaDriver *drv;
    CUdevice dev;
    CUcontext ctx; /* the primary context, retained while this lives */
    bool ctx_retained;
    CUmodule mod;
    CudaBuild build;
    CUfunction *funcs; /* per launch */
    bool sync_each;    /* KILN_CUDA_SYNC=1: synchronise after every launch */
} CudaProg;

/* One call's own state: launch arguments and bench events. */
typedef struct {
    VEC(CUdeviceptr) args;
    VEC(void *) params; /* &args[j], for cuLaunchKernel */
    VEC(CUevent) events;
} CudaCall;

static void cuda_release(void *p) {
    CudaProg *e = p;
    if (!e) return;
    const CudaDriver *d = e->drv;
    /* the module belongs to the context: made current on this thread first */
    if (e->ctx_retained && d->CtxSetCurrent(e->ctx) == CUDA_SUCCESS && e->mod) d->ModuleUnload(e->mod);
    if (e->ctx_retained) d->DevicePrimaryCtxRelease(e->dev);
    free(e->funcs);
    cuda_build_free(&e->build);
    free(e);
}

/* PTX or SASS for this driver (runtime/cuda_compat.c), from the versions of
 * the driver and of the toolkit's NVRTC (its builtins' file name says it
 * without loading NVRTC).  KILN_CUDA_SASS=1 asks for SASS whatever they are. */
static bool choose_output(const CudaDriver *d, NvrtcOutput *out, char *err, size_t errlen) {
    const CudaToolkit *tk = cuda_toolkit();
    if (tk->problem) {
        snprintf(err, errlen, "%s", tk->problem);
        return false;
    }
    const char *sass = getenv("KILN_CUDA_SASS");
    int nvrtc_version = tk->builtins_major * 1000 + tk->builtins_minor * 10;
    return cuda_choose_output(nvrtc_version, d->version, sass && *sass && strcmp(sass, "0") != 0, out, err,
                              errlen);
}

/* cuModuleLoadDataEx with the JIT's error log captured into the message. */
static bool load_module(CudaProg *e, char *err, size_t errlen) {
    const CudaDriver *d = e->drv;
    char log[8192] = "";
    CUjit_option opts[] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
    void *vals[] = {log, (void *)(uintptr_t)sizeof log};
    CUresult r = d->ModuleLoadDataEx(&e->mod, e->build.ptx, 2, opts, vals);
    if (r == CUDA_SUCCESS) return true;
    e->mod = NULL;
    char what[128];
    snprintf(what, sizeof what, "cuModuleLoadDataEx(the kernels' %s for sm_%d)",
             e->build.output == NVRTC_CUBIN ? "SASS" : "PTX",
             e->build.code_sm ? e->build.code_sm : e->build.arch_sm);
    cuda_check(d, r, what, __FILE__, __LINE__, err, errlen);
    log[sizeof log - 1] = 0;
    size_t n = strlen(err);
    if (log[0] && n + 1 < errlen) snprintf(err + n, errlen - n, "\nthe driver's JIT compiler said:\n%s", log);
    return false;
}

static void *cuda_prepare(const KProgram *kp, const CompileOptions *opt, char *err, size_t errlen) {
    char why[512];
    const CudaDriver *d = cuda_driver_get(why, sizeof why);
    if (!d) {
        snprintf(err, errlen, "%s", why);
        return NULL;
    }
    CudaProg *e = xcalloc(1, sizeof *e);
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
    CudaTarget target = {sm, opt && opt->arch, NVRTC_PTX, dev_sm};
    if (!choose_output(d, &target.output, err, errlen)) goto fail;
    if (cuda_build_target(kp, opt, &target, true, &e->build, err, errlen) != KILN_OK) goto fail;
    const CudaProgram *cp = &e->build.cp;
    double t0 = now_ms();
    if (!load_module(e, err, errlen)) goto fail;
    trace_span(kp->trace, "codegen", t0, now_ms(), "cuModuleLoadData: the code to the GPU");
    const char *sync = getenv("KILN_CUDA_SYNC");
    e->sync_each = sync && *sync && strcmp(sync, "0") != 0;
    int nl = cp->launches.len;
    e->funcs = xcalloc((size_t)nl + 1, sizeof *e->funcs);
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
        for (int j = 0; j < L->nargs; j++) {
            if (L->buf_args[j] < 0 || L->buf_args[j] >= kp->bufs.len) {
                snprintf(err, errlen, "internal error: launch %s names buffer %d of %d", L->name,
                         L->buf_args[j], kp->bufs.len);
                goto fail;
            }
        }
    }
    if (opt && opt->verbose)
        fprintf(stderr, "kiln: cuda: module loaded in %.1f ms (%s for sm_%d; driver CUDA %d.%d)\n",
                now_ms() - t0, target.output == NVRTC_CUBIN ? "SASS" : "PTX",
                target.output == NVRTC_CUBIN ? dev_sm : sm, d->version / 1000, d->version % 1000 / 10);
    return e;
fail:
    cuda_release(e);
    return NULL;
}

static bool cuda_call_begin(void *p, void **call, char *err, size_t errlen) {
    CudaProg *e = p;
    if (!CU(e->drv, CtxSetCurrent, e->ctx)) return false;
    *call = xcalloc(1, sizeof(CudaCall));
    return true;
}

static void cuda_call_end(void *p, void *call) {
    CudaProg *e = p;
    CudaCall *c = call;
    for (int i = 0; i < c->events.len; i++)
        if (c->events.data[i]) e->drv->EventDestroy(c->events.data[i]);
    VEC_FREE(c->events);
    VEC_FREE(c->args);
    VEC_FREE(c->params);
    free(c);
}

static CUdeviceptr devptr(const void *p) { return (CUdeviceptr)(uintptr_t)p; }

static bool cuda_alloc(void *p, size_t bytes, void **ptr, char *err, size_t errlen) {
    CudaProg *e = p;
    CUdeviceptr base = 0;
    CUresult r = cuda_mem_alloc(e->drv, &base, bytes);
    if (r != CUDA_SUCCESS) {
        char what[96];
        snprintf(what, sizeof what, "cuMemAlloc(%zu bytes for the graph's tensors)", bytes);
        return cuda_check(e->drv, r, what, __FILE__, __LINE__, err, errlen);
    }
    *ptr = (void *)(uintptr_t)base;
    return true;
}

/* After a kernel fault this fails too; there is nothing more to do. */
static void cuda_free(void *p, void *ptr) { ((CudaProg *)p)->drv->MemFree(devptr(ptr)); }

static bool cuda_copy_in(void *p, void *dst, const void *src, size_t bytes, char *err, size_t errlen) {
    return CU(((CudaProg *)p)->drv, MemcpyHtoD, devptr(dst), src, bytes);
}

static bool cuda_copy_out(void *p, void *dst, const void *src, size_t bytes, char *err, size_t errlen) {
    return CU(((CudaProg *)p)->drv, MemcpyDtoH, dst, devptr(src), bytes);
}

static bool cuda_launch(void *p, void *call, int l, void *const *bufs, char *err, size_t errlen) {
    CudaProg *e = p;
    CudaCall *c = call;
    const CudaDriver *d = e->drv;
    const CudaLaunch *L = &e->build.cp.launches.data[l];
    if (!L->grid[0] || !L->grid[1] || !L->grid[2] || !L->block[0] || !L->block[1] || !L->block[2])
        return true; /* nothing to compute (an empty tensor) */
    c->args.len = c->params.len = 0;
    for (int j = 0; j < L->nargs; j++) VEC_PUSH(c->args, devptr(bufs[L->buf_args[j]]));
    for (int j = 0; j < L->nargs; j++) VEC_PUSH(c->params, &c->args.data[j]);
    char what[200];
    snprintf(what, sizeof what, "cuLaunchKernel(%s, grid %u,%u,%u, block %u,%u,%u)", L->name, L->grid[0], L->grid[1],
             L->grid[2], L->block[0], L->block[1], L->block[2]);
    CUresult r = d->LaunchKernel(e->funcs[l], L->grid[0], L->grid[1], L->grid[2], L->block[0], L->block[1],
                                 L->block[2], L->shared_bytes, NULL, c->params.data, NULL);
    /* A fault inside a kernel surfaces at a later call; synchronising after
     * every launch (KILN_CUDA_SYNC=1) makes the message name the kernel. */
    if (r == CUDA_SUCCESS && e->sync_each) {
        r = d->CtxSynchronize();
        snprintf(what, sizeof what,
                 "kernel %s (launch %d of %d, grid %u,%u,%u, block %u,%u,%u), synchronised after it "
                 "(KILN_CUDA_SYNC=1),",
                 L->name, l + 1, e->build.cp.launches.len, L->grid[0], L->grid[1], L->grid[2], L->block[0],
                 L->block[1], L->block[2]);
    }
    return cuda_check(d, r, what, __FILE__, __LINE__, err, errlen);
}

static bool cuda_sync(void *p, void *call, char *err, size_t errlen) {
    (void)call;
    return CU(((CudaProg *)p)->drv, CtxSynchronize);
}

/* Event `slot` of the call, made on first use. */
static bool cuda_mark(void *p, void *call, int slot, char *err, size_t errlen) {
    CudaProg *e = p;
    CudaCall *c = call;
    while (c->events.len <= slot) VEC_PUSH(c->events, (CUevent)NULL);
    if (!c->events.data[slot] && !CU(e->drv, EventCreate, &c->events.data[slot], CU_EVENT_DEFAULT))
        return false;
    return CU(e->drv, EventRecord, c->events.data[slot], NULL);
}

static bool cuda_elapsed(void *p, void *call, int from, int to, double *ms, char *err, size_t errlen) {
    CudaProg *e = p;
    CudaCall *c = call;
    float t = 0;
    if (from == to) {
        *ms = 0;
        return true;
    }
    if (!CU(e->drv, EventElapsedTime, &t, c->events.data[from], c->events.data[to])) return false;
    *ms = t;
    return true;
}

bool cuda_available(char *why, size_t n) { return cuda_driver_get(why, n) != NULL; }

/* ------------------------------------------------------------------ emit */

/* --emit=cuda prints the CUDA C, --emit=ptx what NVRTC makes of it. */
static KilnStatus emit_build(const KProgram *kp, const CompileOptions *opt, bool ptx, FILE *out, char *err,
                             size_t errlen) {
    int sm;
    if (!cuda_target_arch(opt, &sm, err, errlen)) return KILN_ERR_USAGE;
    CudaBuild b;
    KilnStatus st = cuda_build(kp, opt, sm, ptx, &b, err, errlen);
    if (st != KILN_OK) return st;
    if (ptx)
        fwrite(b.ptx, 1, b.ptx_len, out);
    else
        fputs(b.cp.source, out);
    cuda_build_free(&b);
    return KILN_OK;
}

static KilnStatus cuda_emit_source(const KProgram *kp, const CompileOptions *opt, FILE *out, char *err,
                                   size_t errlen) {
    return emit_build(kp, opt, false, out, err, errlen);
}

static KilnStatus cuda_emit_ptx(const KProgram *kp, const CompileOptions *opt, FILE *out, char *err,
                                size_t errlen) {
    return emit_build(kp, opt, true, out, err, errlen);
}

static const EmitStage cuda_stages[] = {
    {"cuda", "the kernels as CUDA C", cuda_emit_source},
    {"ptx", "the PTX NVRTC makes of them (for --arch, else the GPU's, else sm_90)", cuda_emit_ptx},
    {NULL, NULL, NULL},
};

const Backend cuda_backend = {
    .name = "cuda",
    .summary = "NVIDIA GPUs: CUDA C through NVRTC, run with the driver API",
    .caps = BK_KERNELS | BK_ACCELERATOR,
    .available = cuda_available,
    .kernels = {cuda_prepare, cuda_release, cuda_call_begin, cuda_call_end, cuda_launch, cuda_sync},
    .buffers = {DEVICE_ALIGN, cuda_alloc, cuda_free, cuda_copy_in, cuda_copy_out},
    .clock = {cuda_mark, cuda_elapsed},
    .stages = cuda_stages,
    .aot = {cuda_aot, "sm_XX"},
};
