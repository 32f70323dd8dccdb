/* test_cuda_standin.c - the cuda backend against the checking stand-in
 * driver (tests/standin/libcuda.c, built as BUILD/standin/libcuda.so.1 and
 * loaded through KILN_LIBCUDA), in one process:
 *   - every graph of the .kiln files in examples/ and tests/ops/ compiled, run on
 *     seeded random inputs and benched with no violation of the driver's
 *     rules (context, pointers inside allocations and aligned, parameter
 *     counts against the PTX, grid, block and shared memory limits) and
 *     nothing alive in the driver once the executable is destroyed;
 *   - on the examples, every injected failure: out of memory at each device
 *     allocation (parameters bound on the device too), each launch failing,
 *     each launch faulting (with KILN_CUDA_SYNC=1 the message names that
 *     kernel), the module load failing (the JIT's log in the message): each
 *     a clean KILN_ERR_DEVICE naming the driver's error, nothing alive in the
 *     driver afterwards, and (make asan) no host leak;
 *   - SASS (KILN_CUDA_SASS=1): the examples as cubins, whose kernels and
 *     parameters the stand-in reads from the ELF;
 *   - first, the stand-in itself: each rule broken on purpose through the
 *     driver API is reported (a violation and an error code), so that "no
 *     violation" above means something.
 * The values are not checked (the stand-in runs no kernel): the e2e layers
 * check them on cuda-emu.  Without NVRTC or the stand-in it says so.
 * Last line: "test_cuda_standin: N passed, N failed". */
#include "app/app.h"
#include "runtime/cuda_toolkit.h"

#include <cuda.h>

#include <dirent.h>
#include <dlfcn.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

/* The stand-in's test controls (tests/standin/libcuda.c). */
static int (*standin_configure)(const char *spec);
static long (*standin_violations)(void);
static long (*standin_count)(const char *what);
static int (*standin_live)(char *buf, size_t n);

static const Backend *cuda;

/* One graph of one file, bound with small sizes and seeded inputs. */
typedef struct {
    Compilation c;
    IRGraph *g;
    KilnTensor *inputs;
    char label[256];
} Case;

static const DimBinding dims[] = {{"B", 2}, {"C", 3}, {"K", 4}, {"M", 5}, {"N", 3}, {"R", 2}, {"T", 4}};

static bool case_open(Case *k, const char *path, int entry, char *err, size_t errlen) {
    memset(k, 0, sizeof *k);
    if (compilation_open(&k->c, path, err, errlen) != KILN_OK) return false;
    if (entry >= k->c.prog.ngraphs) return false;
    snprintf(k->label, sizeof k->label, "%s -g %s", path, k->c.prog.graphs[entry].name);
    BindRequest req = {.dims = (DimBinding *)dims, .ndims = (int)(sizeof dims / sizeof dims[0]), .seed = 7};
    CompileOptions opt = {.opt_level = 2};
    return driver_bind(&k->c, entry, &req, &opt, &k->g, &k->inputs, err, errlen) == KILN_OK;
}

static void case_close(Case *k) {
    for (int i = 0; k->g && k->inputs && i < k->g->params.len; i++) kiln_tensor_free(&k->inputs[i]);
    free(k->inputs);
    if (k->g) ir_graph_destroy(k->g);
    compilation_close(&k->c);
}

/* Nothing alive in the driver and no violation since the last look. */
static long seen_violations;
static void check_clean(const char *label, const char *when) {
    char live[256];
    int n = standin_live(live, sizeof live);
    long v = standin_violations();
    CHECK(n == 0, "%s, %s: still alive in the driver: %s", label, when, live);
    CHECK(v == seen_violations, "%s, %s: %ld violation(s) (stderr says which)", label, when,
          v - seen_violations);
    seen_violations = v;
}

/* Compile, run once, destroy; the status of the first step that failed. */
static KilnStatus compile_run(Case *k, int bind_param, char *err, size_t errlen) {
    CompileOptions opt = {.opt_level = 2};
    Executable *x = exec_compile(cuda, k->g, &opt, err, errlen);
    if (!x) return KILN_ERR_DEVICE;
    KilnStatus st = KILN_OK;
    if (bind_param >= 0 && bind_param < k->g->params.len)
        st = exec_bind(x, bind_param, &k->inputs[bind_param], err, errlen);
    int nres = exec_nresults(x);
    KilnTensor *out = xcalloc((size_t)nres + 1, sizeof *out);
    if (st == KILN_OK) st = exec_run(x, k->inputs, out, err, errlen);
    if (st == KILN_OK)
        for (int i = 0; i < nres; i++) kiln_tensor_free(&out[i]);
    free(out);
    exec_destroy(x);
    return st;
}

/* Every graph: compile, run, bench, destroy, with every rule checked. */
static void every_graph(const char *path) {
    char err[4096];
    Compilation c;
    int ngraphs = compilation_open(&c, path, err, sizeof err) == KILN_OK ? c.prog.ngraphs : 0;
    compilation_close(&c);
    CHECK(ngraphs > 0, "%s: no graph (%s)", path, err);
    for (int entry = 0; entry < ngraphs; entry++) {
        Case k;
        bool ok = case_open(&k, path, entry, err, sizeof err);
        CHECK(ok, "%s graph %d: %s", path, entry, err);
        if (ok) {
            standin_configure("");
            /* sm_90 (the stand-in's GPU) named as ptxas_all.sh names it: the
             * two share the kernel cache's entries */
            CompileOptions opt = {.opt_level = 2, .arch = "sm_90"};
            Executable *x = exec_compile(cuda, k.g, &opt, err, sizeof err);
            CHECK(x, "%s: compile: %s", k.label, err);
            if (x) {
                int nres = exec_nresults(x);
                KilnTensor *out = xcalloc((size_t)nres + 1, sizeof *out);
                KilnStatus st = exec_run(x, k.inputs, out, err, sizeof err);
                CHECK(st == KILN_OK, "%s: run: %s", k.label, err);
                for (int i = 0; st == KILN_OK && i < nres; i++) kiln_tensor_free(&out[i]);
                free(out);
                BenchReport rep = {0};
                st = exec_bench(x, k.inputs, 2, &rep, err, sizeof err);
                CHECK(st == KILN_OK, "%s: bench: %s", k.label, err);
                VEC_FREE(rep.kernels);
                exec_destroy(x);
            }
            check_clean(k.label, "after compile, run, bench and destroy");
        }
        case_close(&k);
    }
}

/* One injected failure: a clean error that names `expect`, nothing left. */
static void inject(Case *k, const char *spec, int bind_param, const char *expect, const char *also) {
    char err[8192] = "";
    standin_configure(spec);
    KilnStatus st = compile_run(k, bind_param, err, sizeof err);
    CHECK(st == KILN_ERR_DEVICE && strstr(err, expect) && (!also || strstr(err, also)),
          "%s with %s%s: status %d, message: %s", k->label, spec,
          bind_param >= 0 ? " (a parameter bound)" : "", st, err);
    char when[128];
    snprintf(when, sizeof when, "after %s", spec);
    check_clean(k->label, when);
}

static void failures(const char *path, int entry) {
    char err[4096];
    Case k;
    if (!case_open(&k, path, entry, err, sizeof err)) {
        CHECK(false, "%s graph %d: %s", path, entry, err);
        case_close(&k);
        return;
    }
    /* a clean run counts what there is to fail */
    standin_configure("");
    KilnStatus st = compile_run(&k, 0, err, sizeof err);
    CHECK(st == KILN_OK, "%s: %s", k.label, err);
    long allocs = standin_count("allocs"), launches = standin_count("launches");
    check_clean(k.label, "after a clean run");
    CHECK(allocs >= 2 && launches >= 1, "%s: %ld allocations and %ld launches", k.label, allocs, launches);
    char spec[64], name[128];
    for (long n = 1; n <= allocs; n++) {
        snprintf(spec, sizeof spec, "oom=%ld", n);
        inject(&k, spec, 0, "CUDA_ERROR_OUT_OF_MEMORY", NULL);
    }
    for (long n = 1; n <= launches; n++) {
        snprintf(spec, sizeof spec, "fail_launch=%ld", n);
        inject(&k, spec, -1, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", NULL);
        snprintf(spec, sizeof spec, "fault=%ld", n);
        inject(&k, spec, -1, "CUDA_ERROR_ILLEGAL_ADDRESS", NULL);
        /* synchronised after every launch, the message names the kernel */
        setenv("KILN_CUDA_SYNC", "1", 1);
        snprintf(name, sizeof name, "(launch %ld of ", n);
        inject(&k, spec, -1, "CUDA_ERROR_ILLEGAL_ADDRESS", name);
        unsetenv("KILN_CUDA_SYNC");
    }
    inject(&k, "fail_load=1", -1, "CUDA_ERROR_INVALID_PTX", "injected by the libcuda stand-in");
    check_clean(k.label, "after the injections");
    /* SASS instead of PTX: the stand-in reads kernels and parameters from the cubin */
    setenv("KILN_CUDA_SASS", "1", 1);
    standin_configure("");
    st = compile_run(&k, -1, err, sizeof err);
    CHECK(st == KILN_OK, "%s as SASS: %s", k.label, err);
    unsetenv("KILN_CUDA_SASS");
    check_clean(k.label, "after SASS");
    case_close(&k);
}

/* ------------------------------------------------ the stand-in's own rules */

/* A kernel of two pointer parameters, at most 128 threads, 1 KiB of static
 * shared memory. */
static const char self_ptx[] = ".version 9.0\n.target sm_90\n.address_size 64\n"
                               ".visible .entry k(\n\t.param .u64 k_param_0,\n\t.param .u64 k_param_1\n)\n"
                               ".maxntid 128, 1, 1\n{\n\t.shared .align 4 .b8 k_s[1024];\n\tret;\n}\n";

/* The driver API of the stand-in, looked up in it (not through kiln). */
static struct {
    __typeof__(cuInit) *Init;
    __typeof__(cuDevicePrimaryCtxRetain) *Retain;
    __typeof__(cuDevicePrimaryCtxRelease) *Release;
    __typeof__(cuCtxSetCurrent) *SetCurrent;
    __typeof__(cuMemAlloc) *Alloc;
    __typeof__(cuMemFree) *Free;
    __typeof__(cuMemcpyHtoD) *HtoD;
    __typeof__(cuMemcpyDtoH) *DtoH;
    __typeof__(cuModuleLoadDataEx) *Load;
    __typeof__(cuModuleUnload) *Unload;
    __typeof__(cuModuleGetFunction) *Get;
    __typeof__(cuLaunchKernel) *Launch;
    __typeof__(cuFuncSetAttribute) *SetAttr;
} api;

/* Expects `call` to return `want` and to count as one violation (or none). */
#define RULE(want, violations, call, what)                                                                   \
    do {                                                                                                     \
        long before_ = standin_violations();                                                                 \
        CUresult r_ = (call);                                                                                \
        long now_ = standin_violations();                                                                    \
        CHECK(r_ == (want) && now_ - before_ == (violations), "stand-in: %s: returned %d, %ld violation(s)", \
              what, (int)r_, now_ - before_);                                                                \
    } while (0)

static void standin_self_test(void *h) {
    void **slots[] = {(void **)&api.Init,       (void **)&api.Retain, (void **)&api.Release,
                      (void **)&api.SetCurrent, (void **)&api.Alloc,  (void **)&api.Free,
                      (void **)&api.HtoD,       (void **)&api.DtoH,   (void **)&api.Load,
                      (void **)&api.Unload,     (void **)&api.Get,    (void **)&api.Launch,
                      (void **)&api.SetAttr};
    const char *names[] = {"cuInit",
                           "cuDevicePrimaryCtxRetain",
                           "cuDevicePrimaryCtxRelease_v2",
                           "cuCtxSetCurrent",
                           "cuMemAlloc_v2",
                           "cuMemFree_v2",
                           "cuMemcpyHtoD_v2",
                           "cuMemcpyDtoH_v2",
                           "cuModuleLoadDataEx",
                           "cuModuleUnload",
                           "cuModuleGetFunction",
                           "cuLaunchKernel",
                           "cuFuncSetAttribute"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        *slots[i] = dlsym(h, names[i]);
        CHECK(*slots[i], "the stand-in has no %s", names[i]);
        if (!*slots[i]) return;
    }
    standin_configure("");
    CUcontext ctx;
    CUdeviceptr p = 0, q = 0;
    CUmodule mod;
    CUfunction f;
    char host[64] = {0}, log[512] = "";
    RULE(CUDA_SUCCESS, 0, api.Init(0), "cuInit");
    RULE(CUDA_ERROR_INVALID_CONTEXT, 1, api.Alloc(&p, 64), "an allocation with no current context");
    RULE(CUDA_SUCCESS, 0, api.Retain(&ctx, 0), "retain");
    RULE(CUDA_SUCCESS, 0, api.SetCurrent(ctx), "set current");
    RULE(CUDA_SUCCESS, 0, api.Alloc(&p, 64), "an allocation");
    RULE(CUDA_SUCCESS, 0, api.Alloc(&q, 64), "a second one");
    RULE(CUDA_SUCCESS, 0, api.HtoD(p, host, 64), "a copy that fits");
    RULE(CUDA_ERROR_INVALID_VALUE, 1, api.HtoD(p + 8, host, 64), "a copy past the end");
    RULE(CUDA_ERROR_INVALID_VALUE, 1, api.DtoH(host, p + 64, 1), "a copy from between allocations");
    CUjit_option opts[] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
    void *vals[] = {log, (void *)(uintptr_t)sizeof log};
    RULE(CUDA_SUCCESS, 0, api.Load(&mod, self_ptx, 2, opts, vals), "a module load");
    RULE(CUDA_SUCCESS, 0, api.Get(&f, mod, "k"), "its kernel");
    void *two[] = {&p, &q, NULL}, *one[] = {&p, NULL};
    CUdeviceptr odd = p + 4, past = q + 64;
    void *misaligned[] = {&p, &odd}, *outside[] = {&past, &q};
    RULE(CUDA_SUCCESS, 0, api.Launch(f, 1, 1, 1, 128, 1, 1, 0, NULL, two, NULL), "a good launch");
    RULE(CUDA_ERROR_INVALID_VALUE, 1, api.Launch(f, 1, 1, 1, 128, 1, 1, 0, NULL, one, NULL),
         "one parameter too few");
    RULE(CUDA_ERROR_INVALID_VALUE, 1, api.Launch(f, 1, 1, 1, 128, 1, 1, 0, NULL, misaligned, NULL),
         "a misaligned pointer");
    RULE(CUDA_ERROR_INVALID_VALUE, 1, api.Launch(f, 1, 1, 1, 128, 1, 1, 0, NULL, outside, NULL),
         "a pointer outside every allocation");
    RULE(CUDA_ERROR_INVALID_VALUE, 1, api.Launch(f, 1, 1, 1, 256, 1, 1, 0, NULL, two, NULL),
         "more threads than .maxntid");
    RULE(CUDA_ERROR_INVALID_VALUE, 1, api.Launch(f, 1, 70000, 1, 128, 1, 1, 0, NULL, two, NULL),
         "grid.y over 65535");
    RULE(CUDA_ERROR_INVALID_VALUE, 1, api.Launch(f, 1, 1, 1, 128, 1, 1, 48 * 1024, NULL, two, NULL),
         "dynamic shared memory beyond 48 KiB with the static");
    RULE(CUDA_SUCCESS, 0, api.SetAttr(f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, 100 * 1024),
         "raising the dynamic shared memory limit");
    RULE(CUDA_SUCCESS, 0, api.Launch(f, 1, 1, 1, 128, 1, 1, 100 * 1024, NULL, two, NULL), "then using it");
    RULE(CUDA_SUCCESS, 0, api.Free(q), "a free");
    RULE(CUDA_ERROR_INVALID_VALUE, 1, api.Free(q), "a second free");
    RULE(CUDA_ERROR_INVALID_VALUE, 1, api.Launch(f, 1, 1, 1, 128, 1, 1, 0, NULL, two, NULL),
         "a pointer into freed memory");
    RULE(CUDA_SUCCESS, 0, api.Unload(mod), "an unload");
    RULE(CUDA_ERROR_INVALID_HANDLE, 1, api.Launch(f, 1, 1, 1, 128, 1, 1, 0, NULL, two, NULL),
         "a kernel of an unloaded module");
    const char *old_ptx = ".version 9.0\n.target sm_90\n.visible .entry k()\n{\n\tret;\n}\n";
    standin_configure("driver=12080");
    vals[1] = (void *)(uintptr_t)sizeof log; /* in and out: the driver wrote back the bytes it used */
    RULE(CUDA_ERROR_UNSUPPORTED_PTX_VERSION, 0, api.Load(&mod, old_ptx, 2, opts, vals),
         "PTX 9.0 on a CUDA 12.8 driver");
    CHECK(strstr(log, "Unsupported .version 9.0"), "the JIT log says why: %s", log);
    standin_configure("sm=80");
    RULE(CUDA_ERROR_NO_BINARY_FOR_GPU, 0, api.Load(&mod, old_ptx, 0, NULL, NULL),
         "PTX for sm_90 on an sm_80 GPU");
    standin_configure("");
    /* the context released with memory still allocated: a leak */
    RULE(CUDA_SUCCESS, 1, api.Release(0), "releasing the context with an allocation left");
    RULE(CUDA_ERROR_INVALID_CONTEXT, 1, api.Alloc(&p, 64), "an allocation in the destroyed context");
    char live[256];
    CHECK(standin_live(live, sizeof live) == 0, "after the self test: %s", live);
    seen_violations = standin_violations();
}

/* Files of dir ending in .kiln, sorted. */
static int kiln_files(const char *dir, char ***out) {
    struct dirent **list;
    int n = scandir(dir, &list, NULL, alphasort), m = 0;
    *out = xcalloc((size_t)(n > 0 ? n : 0) + 1, sizeof(char *));
    for (int i = 0; i < n; i++) {
        size_t len = strlen(list[i]->d_name);
        if (len > 5 && strcmp(list[i]->d_name + len - 5, ".kiln") == 0) {
            StrBuf p = {0};
            sb_printf(&p, "%s/%s", dir, list[i]->d_name);
            (*out)[m++] = p.data;
        }
        free(list[i]);
    }
    if (n > 0) free(list);
    return m;
}

int main(int argc, char **argv) {
    (void)argc;
    /* the stand-in is built beside the tests: BUILD/tests/.. /standin */
    char self[4096];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    self[n > 0 ? n : 0] = 0;
    StrBuf lib = {0};
    sb_printf(&lib, "%s/../standin/libcuda.so.1", dirname(n > 0 ? self : argv[0]));
    void *h = dlopen(lib.data, RTLD_NOW | RTLD_LOCAL);
    if (!h || cuda_toolkit()->problem) {
        printf("skip: %s\n", !h ? dlerror() : cuda_toolkit()->problem);
        printf("test_cuda_standin: 0 passed, %d failed\n", h ? 0 : 1);
        return h ? 0 : 1;
    }
    *(void **)&standin_configure = dlsym(h, "kiln_standin_configure");
    *(void **)&standin_violations = dlsym(h, "kiln_standin_violations");
    *(void **)&standin_count = dlsym(h, "kiln_standin_count");
    *(void **)&standin_live = dlsym(h, "kiln_standin_live");
    setenv("KILN_LIBCUDA", lib.data, 1);
    unsetenv("KILN_STANDIN"), unsetenv("KILN_CUDA_SYNC"), unsetenv("KILN_CUDA_SASS");
    char err[1024];
    if (backend_open("cuda", &cuda, err, sizeof err) != KILN_OK) {
        printf("FAIL the cuda backend does not open on the stand-in: %s\n", err);
        printf("test_cuda_standin: 0 passed, 1 failed\n");
        return 1;
    }
    standin_self_test(h);
    const char *dirs[] = {"examples", "tests/ops"};
    for (int d = 0; d < 2; d++) {
        char **files;
        int nf = kiln_files(dirs[d], &files);
        CHECK(nf > 0, "no .kiln files in %s (run from the repository's root)", dirs[d]);
        for (int i = 0; i < nf; i++) {
            every_graph(files[i]);
            if (d == 0) failures(files[i], 0);
            free(files[i]);
        }
        free(files);
    }
    sb_free(&lib);
    printf("test_cuda_standin: %d passed, %d failed\n", npass, nfail);
    return nfail ? 1 : 0;
}
