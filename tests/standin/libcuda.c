/* libcuda.c - a checking stand-in for the NVIDIA driver's libcuda.so.1, for
 * tests on machines without a GPU (built as build/standin/libcuda.so.1 and
 * selected with KILN_LIBCUDA=PATH, or found first on LD_LIBRARY_PATH by a
 * program linked with -lcuda such as an AOT bundle).
 *
 * Contract: it implements the driver calls kiln and its AOT bundles make and
 * checks that each is used as the real driver requires, more strictly than
 * the real driver does.  It runs no kernel: device memory is host memory
 * behind fake device addresses, so copies really move bytes (AddressSanitizer
 * sees a host buffer that is too small), but results are whatever the memory
 * held.  What it checks, each a "VIOLATION" when broken:
 *   - every call but cuInit, cuDriverGetVersion, cuDevice*, cuGetError* and
 *     cuDevicePrimaryCtx* needs cuInit and a current context that is a
 *     retained primary context (per thread, as the real driver);
 *   - copies lie inside one live allocation; kernel pointer parameters point
 *     into a live allocation and are 16-byte aligned (kiln's kernels move 16
 *     bytes at a time); handles are live (no use after unload/free/destroy);
 *   - a launch passes as many parameters as the kernel's PTX .entry (or the
 *     cubin's parameter table) declares, each non-NULL; the grid and block
 *     are within the GPU's limits and the kernel's .maxntid; static plus
 *     dynamic shared memory within 48 KiB, or within the kernel's raised
 *     limit (cuFuncSetAttribute) and the GPU's opt-in maximum;
 *   - PTX whose .version the configured driver is too old for is refused
 *     with CUDA_ERROR_UNSUPPORTED_PTX_VERSION, PTX or a cubin for a newer GPU
 *     with CUDA_ERROR_NO_BINARY_FOR_GPU, as the real driver refuses them;
 *   - at process exit, and whenever the primary context is destroyed, no
 *     allocation, module or event may be left (a leak).
 * A violation is printed on stderr ("libcuda stand-in: VIOLATION: ..."),
 * appended to the report file when one is configured, and the call returns an
 * error code as the real driver would (or would later, for a bad pointer).
 *
 * Configuration: KILN_STANDIN="key=value,..." read at cuInit, or
 * kiln_standin_configure() in-process (which also resets the counters):
 *   driver=13000   what cuDriverGetVersion reports (CUDA 13.0)
 *   sm=90          the GPU's compute capability
 *   mem=80G        the GPU's memory (cuMemAlloc beyond it: out of memory)
 *   devices=1      how many GPUs cuDeviceGetCount reports
 *   oom=N          the Nth cuMemAlloc fails with CUDA_ERROR_OUT_OF_MEMORY
 *   fail_launch=N  the Nth cuLaunchKernel fails (CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES)
 *   fault=N        the Nth launch "faults": it returns success and the context
 *                  reports CUDA_ERROR_ILLEGAL_ADDRESS from then on (sticky)
 *   fail_load=N    the Nth module load fails (CUDA_ERROR_INVALID_PTX) with a
 *                  message in the caller's CU_JIT_ERROR_LOG_BUFFER
 *   report=PATH    violations are also appended to PATH (pid and command line
 *                  first)
 * Counters start at 1 and count the calls since the configuration. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <cuda.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define EXPORT            __attribute__((visibility("default")))
#define STATIC_SMEM_LIMIT (48 * 1024)
#define OPTIN_SMEM_LIMIT  (227 * 1024)
#define ALLOC_ALIGN       512
#define POINTER_ALIGN     16

/* ------------------------------------------------------------- state */

typedef struct {
    int driver, sm, devices;
    long long mem;
    long oom, fail_launch, fault, fail_load;
    char report[512];
} Config;

typedef struct {
    CUdeviceptr base;
    size_t size;
    unsigned char *host;
    bool live;
} Alloc;

typedef struct Module Module;

typedef struct {
    char *name;
    Module *mod;
    int nparams;
    int *param_bytes;
    unsigned maxntid[3]; /* 0: none declared */
    int static_smem;
    int max_dynamic_smem; /* cuFuncSetAttribute */
} Func;

struct Module {
    bool live;
    int generation; /* of the context that loaded it */
    Func *funcs;
    int nfuncs, cap_funcs; /* the array is final before any handle is given out */
};

typedef struct {
    bool live, recorded;
    double t;
    int generation;
} Event;

/* Everything behind one lock; handles are pointers to the records below,
 * checked against these lists before use. */
static struct {
    pthread_mutex_t lock;
    bool initialised;
    Config cfg;
    long allocs, launches, loads, syncs;
    long violations;
    int retain;        /* of the primary context */
    int generation;    /* the primary context's: +1 each time it is created */
    CUresult sticky;   /* the context's sticky error */
    unsigned char *va; /* reserved address space for device pointers */
    size_t va_size, va_used;
    long long live_bytes;
    Alloc *allocs_v;
    int nallocs, cap_allocs;
    Module **mods;
    int nmods, cap_mods;
    Event **events;
    int nevents, cap_events;
    double clock_ms;
} S = {.lock = PTHREAD_MUTEX_INITIALIZER};

static char primary_ctx_token; /* CUcontext handles point here */
static __thread bool have_current;
static __thread int current_generation;

/* ---------------------------------------------------------- reporting */

static void report_line(const char *text) {
    fprintf(stderr, "libcuda stand-in: %s\n", text);
    if (!S.cfg.report[0]) return;
    FILE *f = fopen(S.cfg.report, "a");
    if (!f) return;
    char cmd[512] = "";
    FILE *c = fopen("/proc/self/cmdline", "r");
    if (c) {
        size_t n = fread(cmd, 1, sizeof cmd - 1, c);
        for (size_t i = 0; i < n; i++)
            if (!cmd[i]) cmd[i] = ' ';
        cmd[n] = 0;
        fclose(c);
    }
    fprintf(f, "[pid %d: %s] %s\n", (int)getpid(), cmd, text);
    fclose(f);
}

static void violation(const char *call, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void violation(const char *call, const char *fmt, ...) {
    char msg[1024];
    int n = snprintf(msg, sizeof msg, "VIOLATION in %s: ", call);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg + n, sizeof msg - (size_t)n, fmt, ap);
    va_end(ap);
    S.violations++;
    report_line(msg);
}

/* ------------------------------------------------------- configuration */

static long long parse_size(const char *s) {
    char *end;
    long long v = strtoll(s, &end, 10);
    if (*end == 'K' || *end == 'k')
        v <<= 10;
    else if (*end == 'M' || *end == 'm')
        v <<= 20;
    else if (*end == 'G' || *end == 'g')
        v <<= 30;
    return v;
}

static int configure(const char *spec) {
    Config c = {.driver = 13000, .sm = 90, .devices = 1, .mem = 80LL << 30};
    char *copy = strdup(spec ? spec : "");
    int rc = 0;
    for (char *save = NULL, *kv = strtok_r(copy, ",", &save); kv; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq) {
            rc = -1;
            continue;
        }
        *eq = 0;
        const char *k = kv, *v = eq + 1;
        if (!strcmp(k, "driver"))
            c.driver = atoi(v);
        else if (!strcmp(k, "sm"))
            c.sm = atoi(v);
        else if (!strcmp(k, "devices"))
            c.devices = atoi(v);
        else if (!strcmp(k, "mem"))
            c.mem = parse_size(v);
        else if (!strcmp(k, "oom"))
            c.oom = atol(v);
        else if (!strcmp(k, "fail_launch"))
            c.fail_launch = atol(v);
        else if (!strcmp(k, "fault"))
            c.fault = atol(v);
        else if (!strcmp(k, "fail_load"))
            c.fail_load = atol(v);
        else if (!strcmp(k, "report"))
            snprintf(c.report, sizeof c.report, "%s", v);
        else
            rc = -1;
    }
    free(copy);
    S.cfg = c;
    S.allocs = S.launches = S.loads = S.syncs = 0;
    if (rc) fprintf(stderr, "libcuda stand-in: cannot read the configuration '%s'\n", spec);
    return rc;
}

/* ------------------------------------------------------------ helpers */

#define GROW(arr, n, cap)                                                                                    \
    do {                                                                                                     \
        if ((n) == (cap)) {                                                                                  \
            (cap) = (cap) ? 2 * (cap) : 16;                                                                  \
            void *grown_ = realloc((arr), sizeof(*(arr)) * (size_t)(cap));                                   \
            if (!grown_) abort();                                                                            \
            (arr) = grown_;                                                                                  \
        }                                                                                                    \
    } while (0)

/* The common entry checks: initialised, and (when need_ctx) a current,
 * retained primary context without a sticky error. */
static CUresult enter(const char *call, bool need_ctx) {
    pthread_mutex_lock(&S.lock);
    if (!S.initialised) {
        violation(call, "called before cuInit");
        return CUDA_ERROR_NOT_INITIALIZED;
    }
    if (!need_ctx) return CUDA_SUCCESS;
    if (!have_current) {
        violation(call, "no current context on this thread (cuCtxSetCurrent first)");
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    if (S.retain <= 0 || current_generation != S.generation) {
        violation(call, "the current context was released (destroyed) after it was made current");
        return CUDA_ERROR_INVALID_CONTEXT;
    }
    return S.sticky;
}

static CUresult leave(CUresult r) {
    pthread_mutex_unlock(&S.lock);
    return r;
}

static Alloc *alloc_holding(CUdeviceptr p) {
    for (int i = 0; i < S.nallocs; i++) {
        Alloc *a = &S.allocs_v[i];
        if (p >= a->base && p < a->base + a->size) return a;
    }
    return NULL;
}

/* Checks [p, p + n) lies in one live allocation; returns its host copy. */
static unsigned char *device_range(const char *call, const char *what, CUdeviceptr p, size_t n) {
    Alloc *a = alloc_holding(p);
    if (!a) {
        violation(call, "%s 0x%llx is not inside any allocation", what, (unsigned long long)p);
        return NULL;
    }
    if (!a->live) {
        violation(call, "%s 0x%llx lies in an allocation that was freed", what, (unsigned long long)p);
        return NULL;
    }
    if (n > a->size - (size_t)(p - a->base)) {
        violation(call, "%s [0x%llx, +%zu) runs %zu bytes past the end of its %zu-byte allocation", what,
                  (unsigned long long)p, n, n - (a->size - (size_t)(p - a->base)), a->size);
        return NULL;
    }
    return a->host + (p - a->base);
}

static int live_counts(int *allocs, int *mods, int *events) {
    *allocs = *mods = *events = 0;
    for (int i = 0; i < S.nallocs; i++) *allocs += S.allocs_v[i].live;
    for (int i = 0; i < S.nmods; i++) *mods += S.mods[i]->live;
    for (int i = 0; i < S.nevents; i++) *events += S.events[i]->live;
    return *allocs + *mods + *events;
}

/* The primary context goes away: what it still holds is freed, and was
 * leaked unless a sticky error had made the context unusable. */
static void destroy_context(const char *call) {
    int na, nm, ne;
    if (live_counts(&na, &nm, &ne) && !S.sticky)
        violation(call,
                  "the primary context was destroyed still holding %d allocation(s), %d module(s) and %d "
                  "event(s): they were never freed",
                  na, nm, ne);
    for (int i = 0; i < S.nallocs; i++)
        if (S.allocs_v[i].live) {
            S.allocs_v[i].live = false;
            munmap(S.allocs_v[i].host, S.allocs_v[i].size);
            S.live_bytes -= (long long)S.allocs_v[i].size;
        }
    for (int i = 0; i < S.nmods; i++) S.mods[i]->live = false;
    for (int i = 0; i < S.nevents; i++) S.events[i]->live = false;
    S.sticky = CUDA_SUCCESS;
}

/* ---------------------------------------------------------- PTX and cubin */

static const char *skip_space(const char *p) {
    while (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r') p++;
    return p;
}

/* Bytes of one PTX type such as .u64, .b8, .f32 (0 when not a type). */
static int type_bytes(const char *p) {
    if (p[0] != '.' || !strchr("ubsf", p[1])) return 0;
    int bits = atoi(p + 2);
    return bits >= 8 ? bits / 8 : 0;
}

/* Size of one declaration "... .align A .TYPE NAME[N][M];" starting at p. */
static int decl_bytes(const char *p, const char *end) {
    int elem = 0;
    long long count = 1;
    for (; p < end && *p != ';'; p++) {
        if (*p == '.' && !elem) elem = type_bytes(p);
        if (*p == '[') count *= atoll(p + 1);
    }
    return (int)(elem * count);
}

/* The highest PTX ISA version (10 * major + minor) a driver of this CUDA
 * version JIT-compiles: CUDA 13.0 -> 9.0, 12.8 -> 8.7, 12.4 -> 8.4, 11.8 -> 7.8. */
static int driver_max_isa(int driver) {
    int major = driver / 1000, minor = driver % 1000 / 10;
    if (major >= 13) return 90 + 10 * (major - 13) + minor;
    if (major == 12) return minor <= 4 ? 80 + minor : minor <= 6 ? 85 : 80 + minor - 1;
    if (major == 11) return 70 + minor;
    return 60;
}

static bool sm_runs(int code_sm, int gpu_sm, bool sass) {
    if (sass) return code_sm / 10 == gpu_sm / 10 && code_sm <= gpu_sm;
    return code_sm <= gpu_sm;
}

static void set_log(const char *text, char *log, size_t *log_size) {
    if (!log || !log_size || !*log_size) return;
    snprintf(log, *log_size, "%s", text);
    *log_size = strlen(log) + 1;
}

/* Parses the PTX's entries into m; returns the driver's answer. */
static CUresult load_ptx(Module *m, const char *ptx, char *log, size_t *log_size) {
    char msg[512];
    const char *v = strstr(ptx, ".version ");
    const char *t = strstr(ptx, ".target sm_");
    if (!v || !t) {
        set_log("ptxas fatal   : no .version or .target directive: not PTX", log, log_size);
        return CUDA_ERROR_INVALID_IMAGE;
    }
    int isa_major = atoi(v + 9), isa_minor = 0;
    const char *dot = strchr(v + 9, '.');
    if (dot) isa_minor = atoi(dot + 1);
    int isa = 10 * isa_major + isa_minor, max_isa = driver_max_isa(S.cfg.driver);
    if (isa > max_isa) {
        snprintf(msg, sizeof msg,
                 "ptxas application ptx input, line 1; fatal   : Unsupported .version %d.%d; current "
                 "version is '%d.%d'",
                 isa_major, isa_minor, max_isa / 10, max_isa % 10);
        set_log(msg, log, log_size);
        return CUDA_ERROR_UNSUPPORTED_PTX_VERSION;
    }
    int target = atoi(t + 11);
    if (!sm_runs(target, S.cfg.sm, false)) {
        snprintf(msg, sizeof msg,
                 "ptxas fatal   : SM version specified by .target (sm_%d) is higher than this "
                 "GPU's (sm_%d)",
                 target, S.cfg.sm);
        set_log(msg, log, log_size);
        return CUDA_ERROR_NO_BINARY_FOR_GPU;
    }
    for (const char *e = strstr(ptx, ".entry "); e; e = strstr(e + 1, ".entry ")) {
        const char *name = skip_space(e + 7), *open = strchr(name, '(');
        const char *close = open ? strchr(open, ')') : NULL;
        const char *body = close ? strchr(close, '{') : NULL;
        if (!body) return CUDA_ERROR_INVALID_PTX;
        GROW(m->funcs, m->nfuncs, m->cap_funcs);
        Func *f = &m->funcs[m->nfuncs++];
        memset(f, 0, sizeof *f);
        f->mod = m;
        f->name = strndup(name, (size_t)(open - name));
        while (f->name[0] && strchr(" \t\n", f->name[strlen(f->name) - 1])) f->name[strlen(f->name) - 1] = 0;
        for (const char *p = strstr(open, ".param"); p && p < close; p = strstr(p + 6, ".param")) {
            f->param_bytes = realloc(f->param_bytes, sizeof(int) * (size_t)(f->nparams + 1));
            f->param_bytes[f->nparams++] = decl_bytes(p + 6, close);
        }
        const char *mt = strstr(close, ".maxntid");
        if (mt && mt < body &&
            sscanf(mt + 8, " %u , %u , %u", &f->maxntid[0], &f->maxntid[1], &f->maxntid[2]) < 1)
            f->maxntid[0] = 0;
        int depth = 0;
        const char *p = body;
        do {
            if (*p == '{')
                depth++;
            else if (*p == '}')
                depth--;
            else if (!strncmp(p, ".shared ", 8) && depth == 1 && strncmp(p, ".shared .extern", 15))
                f->static_smem += decl_bytes(p + 8, p + strcspn(p, ";\n"));
            p++;
        } while (*p && depth > 0);
        f->max_dynamic_smem = STATIC_SMEM_LIMIT - f->static_smem;
    }
    return CUDA_SUCCESS;
}

/* A cubin (ELF, EM_CUDA): its kernels from the symbol table, their
 * parameters from .nv.info.NAME (EIATTR_KPARAM_INFO), shared memory from
 * .nv.shared.NAME. */
typedef struct {
    uint32_t name, type;
    uint64_t flags, addr, off, size;
    uint32_t link, info;
    uint64_t align, entsize;
} ElfSection;

static CUresult load_cubin(Module *m, const unsigned char *img, char *log, size_t *log_size) {
    uint16_t machine, shentsize, shnum, shstrndx;
    uint32_t eflags;
    uint64_t shoff;
    memcpy(&machine, img + 18, 2);
    memcpy(&shoff, img + 40, 8);
    memcpy(&eflags, img + 48, 4);
    memcpy(&shentsize, img + 58, 2);
    memcpy(&shnum, img + 60, 2);
    memcpy(&shstrndx, img + 62, 2);
    if (img[4] != 2 || machine != 190 || shentsize != sizeof(ElfSection) || shstrndx >= shnum) {
        set_log("not a 64-bit CUDA ELF image", log, log_size);
        return CUDA_ERROR_INVALID_IMAGE;
    }
    int sm = img[8] >= 8 ? (int)((eflags >> 8) & 0xff) : (int)(eflags & 0xff); /* ABI version 8 moved it */
    if (!sm_runs(sm, S.cfg.sm, true)) {
        char msg[200];
        snprintf(msg, sizeof msg, "the cubin is SASS for sm_%d, which does not run on this sm_%d GPU", sm,
                 S.cfg.sm);
        set_log(msg, log, log_size);
        return CUDA_ERROR_NO_BINARY_FOR_GPU;
    }
    const ElfSection *sec = (const ElfSection *)(img + shoff);
    const char *names = (const char *)img + sec[shstrndx].off;
    for (int i = 0; i < shnum; i++) {
        const char *sname = names + sec[i].name;
        if (strncmp(sname, ".text.", 6) != 0) continue;
        GROW(m->funcs, m->nfuncs, m->cap_funcs);
        Func *f = &m->funcs[m->nfuncs++];
        memset(f, 0, sizeof *f);
        f->mod = m;
        f->name = strdup(sname + 6);
        for (int j = 0; j < shnum; j++) {
            const char *n = names + sec[j].name;
            if (!strncmp(n, ".nv.shared.", 11) && !strcmp(n + 11, f->name)) f->static_smem = (int)sec[j].size;
            if (strncmp(n, ".nv.info.", 9) || strcmp(n + 9, f->name)) continue;
            for (uint64_t p = sec[j].off; p + 4 <= sec[j].off + sec[j].size;) {
                unsigned fmt = img[p], attr = img[p + 1];
                uint16_t sz;
                memcpy(&sz, img + p + 2, 2);
                if (fmt == 4 && attr == 0x17 && sz >= 12) { /* KPARAM_INFO: size in bits 18.. of the flags */
                    uint32_t pflags;
                    memcpy(&pflags, img + p + 12, 4);
                    f->param_bytes = realloc(f->param_bytes, sizeof(int) * (size_t)(f->nparams + 1));
                    f->param_bytes[f->nparams++] = (int)((pflags >> 18) & 0x3fff);
                }
                if (fmt == 4 && attr == 0x05 && sz >= 12)
                    memcpy(f->maxntid, img + p + 4, 12); /* MAX_THREADS */
                p += fmt == 4 ? 4u + sz : 4u;
            }
        }
        f->max_dynamic_smem = STATIC_SMEM_LIMIT - f->static_smem;
    }
    return CUDA_SUCCESS;
}

static Func *func_of(const char *call, CUfunction h) {
    for (int i = 0; i < S.nmods; i++)
        for (int j = 0; j < S.mods[i]->nfuncs; j++)
            if ((CUfunction)&S.mods[i]->funcs[j] == h) {
                if (!S.mods[i]->live) {
                    violation(call, "function %s belongs to a module that was unloaded",
                              S.mods[i]->funcs[j].name);
                    return NULL;
                }
                return &S.mods[i]->funcs[j];
            }
    violation(call, "%p is not a function handle from cuModuleGetFunction", (void *)h);
    return NULL;
}

static Module *module_of(const char *call, CUmodule h) {
    for (int i = 0; i < S.nmods; i++)
        if ((CUmodule)S.mods[i] == h) {
            if (S.mods[i]->live) return S.mods[i];
            violation(call, "module %p was unloaded", (void *)h);
            return NULL;
        }
    violation(call, "%p is not a module handle", (void *)h);
    return NULL;
}

static Event *event_of(const char *call, CUevent h) {
    for (int i = 0; i < S.nevents; i++)
        if ((CUevent)S.events[i] == h) {
            if (S.events[i]->live) return S.events[i];
            violation(call, "event %p was destroyed", (void *)h);
            return NULL;
        }
    violation(call, "%p is not an event handle", (void *)h);
    return NULL;
}

/* ------------------------------------------------------ the driver API */

EXPORT CUresult cuInit(unsigned flags) {
    pthread_mutex_lock(&S.lock);
    if (!S.initialised) {
        configure(getenv("KILN_STANDIN"));
        size_t sizes[] = {(size_t)1 << 40, (size_t)1 << 36, (size_t)1 << 33};
        for (int i = 0; i < 3 && !S.va; i++) {
            void *p = mmap(NULL, sizes[i], PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
            if (p != MAP_FAILED) S.va = p, S.va_size = sizes[i];
        }
        S.initialised = S.va != NULL;
    }
    if (flags != 0) violation("cuInit", "flags must be 0, got %u", flags);
    return leave(S.initialised ? (flags ? CUDA_ERROR_INVALID_VALUE : CUDA_SUCCESS)
                               : CUDA_ERROR_OUT_OF_MEMORY);
}

EXPORT CUresult cuDriverGetVersion(int *v) {
    if (!v) return CUDA_ERROR_INVALID_VALUE;
    pthread_mutex_lock(&S.lock);
    if (!S.initialised && !S.cfg.driver) configure(getenv("KILN_STANDIN"));
    *v = S.cfg.driver;
    return leave(CUDA_SUCCESS);
}

static const struct {
    CUresult r;
    const char *name, *text;
} errors[] = {
    {CUDA_SUCCESS, "CUDA_SUCCESS", "no error"},
    {CUDA_ERROR_INVALID_VALUE, "CUDA_ERROR_INVALID_VALUE", "invalid argument"},
    {CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY", "out of memory"},
    {CUDA_ERROR_NOT_INITIALIZED, "CUDA_ERROR_NOT_INITIALIZED", "initialization error"},
    {CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE", "no CUDA-capable device is detected"},
    {CUDA_ERROR_INVALID_DEVICE, "CUDA_ERROR_INVALID_DEVICE", "invalid device ordinal"},
    {CUDA_ERROR_INVALID_IMAGE, "CUDA_ERROR_INVALID_IMAGE", "device kernel image is invalid"},
    {CUDA_ERROR_INVALID_CONTEXT, "CUDA_ERROR_INVALID_CONTEXT", "invalid device context"},
    {CUDA_ERROR_NO_BINARY_FOR_GPU, "CUDA_ERROR_NO_BINARY_FOR_GPU",
     "no kernel image is available for execution on the device"},
    {CUDA_ERROR_INVALID_PTX, "CUDA_ERROR_INVALID_PTX", "a PTX JIT compilation failed"},
    {CUDA_ERROR_UNSUPPORTED_PTX_VERSION, "CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
     "the provided PTX was compiled with an unsupported toolchain."},
    {CUDA_ERROR_INVALID_HANDLE, "CUDA_ERROR_INVALID_HANDLE", "invalid resource handle"},
    {CUDA_ERROR_NOT_FOUND, "CUDA_ERROR_NOT_FOUND", "named symbol not found"},
    {CUDA_ERROR_NOT_READY, "CUDA_ERROR_NOT_READY", "device not ready"},
    {CUDA_ERROR_ILLEGAL_ADDRESS, "CUDA_ERROR_ILLEGAL_ADDRESS", "an illegal memory access was encountered"},
    {CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES, "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES",
     "too many resources requested for launch"},
    {CUDA_ERROR_LAUNCH_FAILED, "CUDA_ERROR_LAUNCH_FAILED", "unspecified launch failure"},
};

EXPORT CUresult cuGetErrorName(CUresult r, const char **name) {
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
        if (errors[i].r == r) return *name = errors[i].name, CUDA_SUCCESS;
    *name = NULL;
    return CUDA_ERROR_INVALID_VALUE;
}

EXPORT CUresult cuGetErrorString(CUresult r, const char **text) {
    for (size_t i = 0; i < sizeof errors / sizeof errors[0]; i++)
        if (errors[i].r == r) return *text = errors[i].text, CUDA_SUCCESS;
    *text = NULL;
    return CUDA_ERROR_INVALID_VALUE;
}

EXPORT CUresult cuDeviceGetCount(int *n) {
    CUresult r = enter("cuDeviceGetCount", false);
    if (r == CUDA_SUCCESS) *n = S.cfg.devices;
    return leave(r);
}

EXPORT CUresult cuDeviceGet(CUdevice *d, int ordinal) {
    CUresult r = enter("cuDeviceGet", false);
    if (r == CUDA_SUCCESS && (ordinal < 0 || ordinal >= S.cfg.devices)) r = CUDA_ERROR_INVALID_DEVICE;
    if (r == CUDA_SUCCESS) *d = ordinal;
    return leave(r);
}

EXPORT CUresult cuDeviceGetName(char *name, int len, CUdevice d) {
    CUresult r = enter("cuDeviceGetName", false);
    if (r == CUDA_SUCCESS && (d != 0 || !name || len <= 0)) r = CUDA_ERROR_INVALID_VALUE;
    if (r == CUDA_SUCCESS) snprintf(name, (size_t)len, "kiln checking stand-in (sm_%d, no GPU)", S.cfg.sm);
    return leave(r);
}

EXPORT CUresult cuDeviceTotalMem(size_t *bytes, CUdevice d) {
    CUresult r = enter("cuDeviceTotalMem", false);
    if (r == CUDA_SUCCESS && d != 0) r = CUDA_ERROR_INVALID_DEVICE;
    if (r == CUDA_SUCCESS) *bytes = (size_t)S.cfg.mem;
    return leave(r);
}

EXPORT CUresult cuDeviceGetAttribute(int *v, CUdevice_attribute a, CUdevice d) {
    CUresult r = enter("cuDeviceGetAttribute", false);
    if (r != CUDA_SUCCESS) return leave(r);
    if (d != 0) return leave(CUDA_ERROR_INVALID_DEVICE);
    switch (a) {
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR: *v = S.cfg.sm / 10; break;
    case CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR: *v = S.cfg.sm % 10; break;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK_OPTIN: *v = OPTIN_SMEM_LIMIT; break;
    case CU_DEVICE_ATTRIBUTE_MAX_SHARED_MEMORY_PER_BLOCK: *v = STATIC_SMEM_LIMIT; break;
    case CU_DEVICE_ATTRIBUTE_MAX_THREADS_PER_BLOCK: *v = 1024; break;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_X: *v = 2147483647; break;
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Y:
    case CU_DEVICE_ATTRIBUTE_MAX_GRID_DIM_Z: *v = 65535; break;
    case CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT: *v = 132; break;
    case CU_DEVICE_ATTRIBUTE_WARP_SIZE: *v = 32; break;
    default: return leave(CUDA_ERROR_INVALID_VALUE);
    }
    return leave(CUDA_SUCCESS);
}

EXPORT CUresult cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice d) {
    CUresult r = enter("cuDevicePrimaryCtxRetain", false);
    if (r == CUDA_SUCCESS && d != 0) r = CUDA_ERROR_INVALID_DEVICE;
    if (r == CUDA_SUCCESS) {
        if (S.retain++ == 0) S.generation++;
        *ctx = (CUcontext)&primary_ctx_token;
    }
    return leave(r);
}

EXPORT CUresult cuDevicePrimaryCtxRelease(CUdevice d) {
    CUresult r = enter("cuDevicePrimaryCtxRelease", false);
    if (r == CUDA_SUCCESS && d != 0) r = CUDA_ERROR_INVALID_DEVICE;
    if (r == CUDA_SUCCESS && S.retain <= 0) {
        violation("cuDevicePrimaryCtxRelease", "released more often than retained");
        r = CUDA_ERROR_INVALID_CONTEXT;
    }
    if (r == CUDA_SUCCESS && --S.retain == 0) destroy_context("cuDevicePrimaryCtxRelease");
    return leave(r);
}

EXPORT CUresult cuCtxSetCurrent(CUcontext ctx) {
    CUresult r = enter("cuCtxSetCurrent", false);
    if (r != CUDA_SUCCESS) return leave(r);
    if (!ctx) {
        have_current = false;
        return leave(CUDA_SUCCESS);
    }
    if (ctx != (CUcontext)&primary_ctx_token) {
        violation("cuCtxSetCurrent", "%p is not a context this driver made", (void *)ctx);
        return leave(CUDA_ERROR_INVALID_CONTEXT);
    }
    if (S.retain <= 0) {
        violation("cuCtxSetCurrent", "the primary context is not retained (cuDevicePrimaryCtxRetain first)");
        return leave(CUDA_ERROR_INVALID_CONTEXT);
    }
    have_current = true;
    current_generation = S.generation;
    return leave(CUDA_SUCCESS);
}

EXPORT CUresult cuCtxGetCurrent(CUcontext *ctx) {
    CUresult r = enter("cuCtxGetCurrent", false);
    if (r == CUDA_SUCCESS)
        *ctx = have_current && S.retain > 0 && current_generation == S.generation
                   ? (CUcontext)&primary_ctx_token
                   : NULL;
    return leave(r);
}

EXPORT CUresult cuCtxSynchronize(void) {
    CUresult r = enter("cuCtxSynchronize", true);
    S.syncs++;
    return leave(r);
}

EXPORT CUresult cuMemGetInfo(size_t *free_bytes, size_t *total) {
    CUresult r = enter("cuMemGetInfo", true);
    if (r == CUDA_SUCCESS) *free_bytes = (size_t)(S.cfg.mem - S.live_bytes), *total = (size_t)S.cfg.mem;
    return leave(r);
}

EXPORT CUresult cuMemAlloc(CUdeviceptr *p, size_t bytes) {
    CUresult r = enter("cuMemAlloc", true);
    if (r != CUDA_SUCCESS) return leave(r);
    S.allocs++;
    if (!p || bytes == 0) {
        violation("cuMemAlloc", "%s",
                  !p ? "NULL result pointer" : "0 bytes (the driver refuses empty allocations)");
        return leave(CUDA_ERROR_INVALID_VALUE);
    }
    if (S.allocs == S.cfg.oom || (long long)bytes > S.cfg.mem - S.live_bytes)
        return leave(CUDA_ERROR_OUT_OF_MEMORY);
    size_t span = (bytes + ALLOC_ALIGN - 1) / ALLOC_ALIGN * ALLOC_ALIGN + ALLOC_ALIGN; /* a gap after each */
    if (span > S.va_size - S.va_used) return leave(CUDA_ERROR_OUT_OF_MEMORY);
    void *host =
        mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (host == MAP_FAILED) return leave(CUDA_ERROR_OUT_OF_MEMORY);
    GROW(S.allocs_v, S.nallocs, S.cap_allocs);
    Alloc *a = &S.allocs_v[S.nallocs++];
    a->base = (CUdeviceptr)(uintptr_t)(S.va + S.va_used);
    a->size = bytes;
    a->host = host;
    a->live = true;
    S.va_used += span; /* addresses are never reused: a stale pointer stays detectable */
    S.live_bytes += (long long)bytes;
    *p = a->base;
    return leave(CUDA_SUCCESS);
}

EXPORT CUresult cuMemFree(CUdeviceptr p) {
    CUresult r = enter("cuMemFree", true);
    if (r != CUDA_SUCCESS) return leave(r);
    Alloc *a = alloc_holding(p);
    if (!a || a->base != p || !a->live) {
        violation("cuMemFree", "0x%llx is not the start of a live allocation%s", (unsigned long long)p,
                  a && !a->live ? " (freed twice?)" : "");
        return leave(CUDA_ERROR_INVALID_VALUE);
    }
    a->live = false;
    munmap(a->host, a->size);
    S.live_bytes -= (long long)a->size;
    return leave(CUDA_SUCCESS);
}

EXPORT CUresult cuMemcpyHtoD(CUdeviceptr dst, const void *src, size_t n) {
    CUresult r = enter("cuMemcpyHtoD", true);
    if (r != CUDA_SUCCESS || n == 0) return leave(r);
    unsigned char *d = device_range("cuMemcpyHtoD", "destination", dst, n);
    if (!src) violation("cuMemcpyHtoD", "NULL host source for %zu bytes", n);
    if (!d || !src) return leave(CUDA_ERROR_INVALID_VALUE);
    memcpy(d, src, n);
    return leave(CUDA_SUCCESS);
}

EXPORT CUresult cuMemcpyDtoH(void *dst, CUdeviceptr src, size_t n) {
    CUresult r = enter("cuMemcpyDtoH", true);
    S.syncs++; /* a synchronous copy waits for the kernels before it */
    if (r != CUDA_SUCCESS || n == 0) return leave(r);
    unsigned char *s = device_range("cuMemcpyDtoH", "source", src, n);
    if (!dst) violation("cuMemcpyDtoH", "NULL host destination for %zu bytes", n);
    if (!s || !dst) return leave(CUDA_ERROR_INVALID_VALUE);
    memcpy(dst, s, n);
    return leave(CUDA_SUCCESS);
}

EXPORT CUresult cuMemcpyDtoD(CUdeviceptr dst, CUdeviceptr src, size_t n) {
    CUresult r = enter("cuMemcpyDtoD", true);
    if (r != CUDA_SUCCESS || n == 0) return leave(r);
    unsigned char *d = device_range("cuMemcpyDtoD", "destination", dst, n);
    unsigned char *s = device_range("cuMemcpyDtoD", "source", src, n);
    if (!d || !s) return leave(CUDA_ERROR_INVALID_VALUE);
    memmove(d, s, n);
    return leave(CUDA_SUCCESS);
}

static CUresult module_load(const char *call, CUmodule *out, const void *image, char *log, size_t *log_size) {
    CUresult r = enter(call, true);
    if (r != CUDA_SUCCESS) return leave(r);
    S.loads++;
    if (!out || !image) {
        violation(call, "NULL %s", !out ? "module pointer" : "image");
        return leave(CUDA_ERROR_INVALID_VALUE);
    }
    if (S.loads == S.cfg.fail_load) {
        set_log("ptxas fatal   : (injected by the libcuda stand-in) the JIT compiler failed on this module",
                log, log_size);
        return leave(CUDA_ERROR_INVALID_PTX);
    }
    Module *m = calloc(1, sizeof *m);
    if (!m) abort();
    const unsigned char *img = image;
    if (!memcmp(img, "\177ELF", 4))
        r = load_cubin(m, img, log, log_size);
    else
        r = load_ptx(m, image, log, log_size);
    for (int i = 0; r == CUDA_SUCCESS && i < m->nfuncs; i++)
        if (m->funcs[i].static_smem > STATIC_SMEM_LIMIT) {
            char msg[256];
            snprintf(msg, sizeof msg,
                     "ptxas error   : Entry function '%s' uses too much shared data (%d bytes, 0xc000 max)",
                     m->funcs[i].name, m->funcs[i].static_smem);
            set_log(msg, log, log_size);
            r = CUDA_ERROR_INVALID_PTX;
        }
    if (r != CUDA_SUCCESS) {
        for (int i = 0; i < m->nfuncs; i++) free(m->funcs[i].name), free(m->funcs[i].param_bytes);
        free(m->funcs);
        free(m);
        return leave(r);
    }
    if (log_size) *log_size = 0;
    m->live = true;
    m->generation = S.generation;
    GROW(S.mods, S.nmods, S.cap_mods);
    S.mods[S.nmods++] = m;
    *out = (CUmodule)m;
    return leave(CUDA_SUCCESS);
}

EXPORT CUresult cuModuleLoadData(CUmodule *m, const void *image) {
    return module_load("cuModuleLoadData", m, image, NULL, NULL);
}

EXPORT CUresult cuModuleLoadDataEx(CUmodule *m, const void *image, unsigned n, CUjit_option *opts,
                                   void **vals) {
    char *log = NULL;
    size_t log_size = 0;
    int size_slot = -1;
    for (unsigned i = 0; i < n; i++) {
        if (opts[i] == CU_JIT_ERROR_LOG_BUFFER) log = vals[i];
        if (opts[i] == CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES)
            log_size = (size_t)(uintptr_t)vals[i], size_slot = (int)i;
    }
    if (log && size_slot < 0) {
        pthread_mutex_lock(&S.lock);
        violation("cuModuleLoadDataEx", "CU_JIT_ERROR_LOG_BUFFER without CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES");
        return leave(CUDA_ERROR_INVALID_VALUE);
    }
    CUresult r = module_load("cuModuleLoadDataEx", m, image, log, log ? &log_size : NULL);
    if (size_slot >= 0) vals[size_slot] = (void *)(uintptr_t)log_size; /* in/out: bytes written */
    return r;
}

EXPORT CUresult cuModuleUnload(CUmodule h) {
    CUresult r = enter("cuModuleUnload", true);
    if (r != CUDA_SUCCESS) return leave(r);
    Module *m = module_of("cuModuleUnload", h);
    if (!m) return leave(CUDA_ERROR_INVALID_HANDLE);
    m->live = false;
    return leave(CUDA_SUCCESS);
}

EXPORT CUresult cuModuleGetFunction(CUfunction *f, CUmodule h, const char *name) {
    CUresult r = enter("cuModuleGetFunction", true);
    if (r != CUDA_SUCCESS) return leave(r);
    Module *m = module_of("cuModuleGetFunction", h);
    if (!m) return leave(CUDA_ERROR_INVALID_HANDLE);
    for (int i = 0; i < m->nfuncs; i++)
        if (!strcmp(m->funcs[i].name, name)) return *f = (CUfunction)&m->funcs[i], leave(CUDA_SUCCESS);
    return leave(CUDA_ERROR_NOT_FOUND);
}

EXPORT CUresult cuFuncSetAttribute(CUfunction h, CUfunction_attribute a, int v) {
    CUresult r = enter("cuFuncSetAttribute", true);
    if (r != CUDA_SUCCESS) return leave(r);
    Func *f = func_of("cuFuncSetAttribute", h);
    if (!f) return leave(CUDA_ERROR_INVALID_HANDLE);
    if (a != CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES) return leave(CUDA_SUCCESS);
    if (v < 0 || v + f->static_smem > OPTIN_SMEM_LIMIT) {
        violation("cuFuncSetAttribute",
                  "%s: %d bytes of dynamic shared memory plus %d static exceed the GPU's %d", f->name, v,
                  f->static_smem, OPTIN_SMEM_LIMIT);
        return leave(CUDA_ERROR_INVALID_VALUE);
    }
    f->max_dynamic_smem = v;
    return leave(CUDA_SUCCESS);
}

/* The launch checks; false after reporting a violation. */
static bool launch_ok(const Func *f, const unsigned g[3], const unsigned b[3], unsigned smem, void **params,
                      void **extra) {
    const char *call = "cuLaunchKernel";
    static const unsigned gmax[3] = {2147483647u, 65535u, 65535u}, bmax[3] = {1024u, 1024u, 64u};
    for (int i = 0; i < 3; i++) {
        if (g[i] < 1 || g[i] > gmax[i] || b[i] < 1 || b[i] > bmax[i]) {
            violation(call,
                      "%s: grid (%u, %u, %u), block (%u, %u, %u): dimension %d outside [1, %u] / [1, %u]",
                      f->name, g[0], g[1], g[2], b[0], b[1], b[2], i, gmax[i], bmax[i]);
            return false;
        }
    }
    unsigned long long threads = (unsigned long long)b[0] * b[1] * b[2];
    unsigned long long bound = f->maxntid[0]
                                   ? (unsigned long long)f->maxntid[0] * (f->maxntid[1] ? f->maxntid[1] : 1) *
                                         (f->maxntid[2] ? f->maxntid[2] : 1)
                                   : 1024;
    if (threads > 1024 || threads > bound) {
        violation(call, "%s: %llu threads per block; the kernel allows %llu (.maxntid)", f->name, threads,
                  bound);
        return false;
    }
    if ((int)smem > f->max_dynamic_smem) {
        violation(call,
                  "%s: %u bytes of dynamic shared memory; the kernel has %d static and may take %d dynamic%s",
                  f->name, smem, f->static_smem, f->max_dynamic_smem,
                  f->max_dynamic_smem <= STATIC_SMEM_LIMIT - f->static_smem
                      ? " (raise CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES first)"
                      : "");
        return false;
    }
    if (extra) {
        violation(call, "%s: kiln passes its parameters in kernelParams, not extra", f->name);
        return false;
    }
    if (f->nparams && !params) {
        violation(call, "%s: the kernel takes %d parameters and kernelParams is NULL", f->name, f->nparams);
        return false;
    }
    for (int i = 0; i < f->nparams; i++) {
        if (!params[i]) {
            violation(call, "%s: parameter %d of %d is NULL (too few parameters passed?)", f->name, i,
                      f->nparams);
            return false;
        }
        if (f->param_bytes[i] != 8) continue;
        CUdeviceptr p;
        memcpy(&p, params[i], sizeof p);
        char what[64];
        snprintf(what, sizeof what, "parameter %d of %s", i, f->name);
        if (!device_range(call, what, p, 1)) return false;
        if (p % POINTER_ALIGN) {
            violation(call, "%s: pointer 0x%llx is not %d-byte aligned", what, (unsigned long long)p,
                      POINTER_ALIGN);
            return false;
        }
    }
    return true;
}

EXPORT CUresult cuLaunchKernel(CUfunction h, unsigned gx, unsigned gy, unsigned gz, unsigned bx, unsigned by,
                               unsigned bz, unsigned smem, CUstream stream, void **params, void **extra) {
    CUresult r = enter("cuLaunchKernel", true);
    if (r != CUDA_SUCCESS) return leave(r);
    S.launches++;
    Func *f = func_of("cuLaunchKernel", h);
    if (!f) return leave(CUDA_ERROR_INVALID_HANDLE);
    if (stream) {
        violation("cuLaunchKernel", "%s: kiln launches on the default stream, got %p", f->name,
                  (void *)stream);
        return leave(CUDA_ERROR_INVALID_HANDLE);
    }
    if (f->mod->generation != S.generation) {
        violation("cuLaunchKernel", "%s: its module was loaded in a context that has since been destroyed",
                  f->name);
        return leave(CUDA_ERROR_INVALID_HANDLE);
    }
    const unsigned g[3] = {gx, gy, gz}, b[3] = {bx, by, bz};
    if (!launch_ok(f, g, b, smem, params, extra)) return leave(CUDA_ERROR_INVALID_VALUE);
    if (S.launches == S.cfg.fail_launch) return leave(CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES);
    if (S.launches == S.cfg.fault)
        S.sticky = CUDA_ERROR_ILLEGAL_ADDRESS; /* seen at the next synchronising call */
    S.clock_ms += 0.001 * (1.0 + (double)gx * gy * gz * bx * by * bz / 1e6);
    return leave(CUDA_SUCCESS);
}

EXPORT CUresult cuEventCreate(CUevent *e, unsigned flags) {
    CUresult r = enter("cuEventCreate", true);
    if (r != CUDA_SUCCESS) return leave(r);
    (void)flags;
    Event *ev = calloc(1, sizeof *ev);
    if (!ev) abort();
    ev->live = true;
    ev->generation = S.generation;
    GROW(S.events, S.nevents, S.cap_events);
    S.events[S.nevents++] = ev;
    *e = (CUevent)ev;
    return leave(CUDA_SUCCESS);
}

EXPORT CUresult cuEventDestroy(CUevent h) {
    CUresult r = enter("cuEventDestroy", true);
    if (r != CUDA_SUCCESS && r != S.sticky) return leave(r);
    Event *ev = event_of("cuEventDestroy", h);
    if (!ev) return leave(CUDA_ERROR_INVALID_HANDLE);
    ev->live = false;
    return leave(r);
}

EXPORT CUresult cuEventRecord(CUevent h, CUstream stream) {
    CUresult r = enter("cuEventRecord", true);
    if (r != CUDA_SUCCESS) return leave(r);
    Event *ev = event_of("cuEventRecord", h);
    if (!ev || stream) return leave(CUDA_ERROR_INVALID_HANDLE);
    ev->recorded = true;
    ev->t = S.clock_ms;
    return leave(CUDA_SUCCESS);
}

EXPORT CUresult cuEventSynchronize(CUevent h) {
    CUresult r = enter("cuEventSynchronize", true);
    S.syncs++;
    if (r != CUDA_SUCCESS) return leave(r);
    Event *ev = event_of("cuEventSynchronize", h);
    return leave(ev ? CUDA_SUCCESS : CUDA_ERROR_INVALID_HANDLE);
}

EXPORT CUresult cuEventElapsedTime(float *ms, CUevent a, CUevent b) {
    CUresult r = enter("cuEventElapsedTime", true);
    if (r != CUDA_SUCCESS) return leave(r);
    Event *x = event_of("cuEventElapsedTime", a), *y = event_of("cuEventElapsedTime", b);
    if (!x || !y) return leave(CUDA_ERROR_INVALID_HANDLE);
    if (!x->recorded || !y->recorded) {
        violation("cuEventElapsedTime", "an event that was never recorded");
        return leave(CUDA_ERROR_INVALID_HANDLE);
    }
    *ms = (float)(y->t - x->t);
    return leave(CUDA_SUCCESS);
}

/* cuda.h maps cuEventElapsedTime to the _v2 symbol defined above; older
 * programs call the plain name. */
EXPORT CUresult event_elapsed_v1(float *ms, CUevent a, CUevent b) __asm__("cuEventElapsedTime");
EXPORT CUresult event_elapsed_v1(float *ms, CUevent a, CUevent b) { return cuEventElapsedTime(ms, a, b); }

/* ------------------------------------------------ in-process test control */

/* Sets the configuration (see the top) and resets the call counters. */
EXPORT int kiln_standin_configure(const char *spec) {
    pthread_mutex_lock(&S.lock);
    int rc = configure(spec);
    pthread_mutex_unlock(&S.lock);
    return rc;
}

EXPORT long kiln_standin_violations(void) {
    pthread_mutex_lock(&S.lock);
    long v = S.violations;
    pthread_mutex_unlock(&S.lock);
    return v;
}

/* Calls made since the configuration: "allocs", "launches", "loads", "syncs". */
EXPORT long kiln_standin_count(const char *what) {
    pthread_mutex_lock(&S.lock);
    long v = !strcmp(what, "allocs")     ? S.allocs
             : !strcmp(what, "launches") ? S.launches
             : !strcmp(what, "loads")    ? S.loads
             : !strcmp(what, "syncs")    ? S.syncs
                                         : -1;
    pthread_mutex_unlock(&S.lock);
    return v;
}

/* Objects alive now (allocations, modules, events, retains of the primary
 * context), described in buf. */
EXPORT int kiln_standin_live(char *buf, size_t n) {
    pthread_mutex_lock(&S.lock);
    int na, nm, ne;
    int live = live_counts(&na, &nm, &ne) + S.retain;
    if (buf && n)
        snprintf(buf, n, "%d allocation(s) (%lld bytes), %d module(s), %d event(s), %d context retain(s)", na,
                 S.live_bytes, nm, ne, S.retain);
    pthread_mutex_unlock(&S.lock);
    return live;
}

__attribute__((destructor)) static void at_exit_check(void) {
    if (!S.initialised) return;
    char what[256];
    if (kiln_standin_live(what, sizeof what) > 0 && !S.sticky) {
        pthread_mutex_lock(&S.lock);
        violation("process exit", "still alive: %s", what);
        pthread_mutex_unlock(&S.lock);
    }
}
