/* nvrtc.c - CUDA C to PTX with NVRTC, loaded at run time.
 *
 * Contract: nvrtc_compile(source, sm) compiles one translation unit (every
 * kernel of a graph: the fixed cost of NVRTC is paid once) for
 * compute_<sm> and returns its PTX.  libnvrtc is opened with dlopen, so kiln
 * starts on machines without CUDA and says what is missing when asked to
 * compile.  cuda_fp16.h and friends are not built into NVRTC: the CUDA
 * include folder is found at run time ($CUDA_HOME, $CUDA_PATH, then
 * /usr/local/cuda) and passed with --include-path.  A refusal comes back as
 * KILN_ERR_DEVICE with NVRTC's log, each error followed by the generated
 * source lines around it. */
#include "codegen/cuda.h"

#include <dlfcn.h>
#include <nvrtc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SOURCE_NAME "kiln_kernels.cu"

/* The library and its entry points, resolved once per process. */
static struct {
    void *lib;
    char why[512];
    __typeof__(nvrtcCreateProgram) *create;
    __typeof__(nvrtcCompileProgram) *compile;
    __typeof__(nvrtcGetProgramLogSize) *log_size;
    __typeof__(nvrtcGetProgramLog) *log;
    __typeof__(nvrtcGetPTXSize) *ptx_size;
    __typeof__(nvrtcGetPTX) *ptx;
    __typeof__(nvrtcDestroyProgram) *destroy;
    __typeof__(nvrtcGetErrorString) *error_string;
} nv;
static pthread_once_t nv_once = PTHREAD_ONCE_INIT;

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

static void nv_load(void) {
    StrBuf tried = {0};
    const char *homes[] = {getenv("CUDA_HOME"), getenv("CUDA_PATH"), "/usr/local/cuda"};
    const char *names[] = {"libnvrtc.so", "libnvrtc.so.13", "libnvrtc.so.12"};
    for (size_t i = 0; i < sizeof names / sizeof names[0] && !nv.lib; i++) {
        nv.lib = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
        sb_printf(&tried, "%s%s", i ? ", " : "", names[i]);
    }
    for (size_t h = 0; h < sizeof homes / sizeof homes[0] && !nv.lib; h++) {
        if (!homes[h] || !*homes[h]) continue;
        StrBuf p = {0};
        sb_printf(&p, "%s/lib64/libnvrtc.so", homes[h]);
        nv.lib = dlopen(p.data, RTLD_NOW | RTLD_LOCAL);
        sb_printf(&tried, ", %s", p.data);
        sb_free(&p);
    }
    if (!nv.lib) {
        snprintf(nv.why, sizeof nv.why,
                 "NVRTC is not available (tried %s): install the CUDA toolkit or set CUDA_HOME", tried.data);
        sb_free(&tried);
        return;
    }
    sb_free(&tried);
    struct {
        void **slot;
        const char *name;
    } syms[] = {
        {(void **)&nv.create, "nvrtcCreateProgram"},       {(void **)&nv.compile, "nvrtcCompileProgram"},
        {(void **)&nv.log_size, "nvrtcGetProgramLogSize"}, {(void **)&nv.log, "nvrtcGetProgramLog"},
        {(void **)&nv.ptx_size, "nvrtcGetPTXSize"},        {(void **)&nv.ptx, "nvrtcGetPTX"},
        {(void **)&nv.destroy, "nvrtcDestroyProgram"},     {(void **)&nv.error_string, "nvrtcGetErrorString"},
    };
    for (size_t i = 0; i < sizeof syms / sizeof syms[0]; i++) {
        *syms[i].slot = dlsym(nv.lib, syms[i].name);
        if (!*syms[i].slot) {
            snprintf(nv.why, sizeof nv.why, "libnvrtc has no %s", syms[i].name);
            dlclose(nv.lib);
            nv.lib = NULL;
            return;
        }
    }
}

/* The folder holding cuda_fp16.h, or NULL. */
static char *cuda_include_dir(void) {
    const char *homes[] = {getenv("CUDA_HOME"), getenv("CUDA_PATH"), "/usr/local/cuda"};
    for (size_t h = 0; h < sizeof homes / sizeof homes[0]; h++) {
        if (!homes[h] || !*homes[h]) continue;
        StrBuf p = {0};
        sb_printf(&p, "%s/include", homes[h]);
        if (is_dir(p.data)) return p.data;
        sb_free(&p);
    }
    return NULL;
}

/* NVRTC's log, each "kiln_kernels.cu(N): error" line followed by the source
 * around line N. */
static void annotate_log(const char *log, const char *source, StrBuf *out) {
    /* line starts of the source */
    VEC(const char *) lines = {0};
    VEC_PUSH(lines, source);
    for (const char *s = source; *s; s++)
        if (*s == '\n' && s[1]) VEC_PUSH(lines, s + 1);
    const char *p = log;
    while (*p) {
        const char *end = strchr(p, '\n');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        sb_printf(out, "%.*s\n", (int)n, p);
        int ln = 0;
        char kind[16] = "";
        if (strncmp(p, SOURCE_NAME "(", strlen(SOURCE_NAME) + 1) == 0 &&
            sscanf(p + strlen(SOURCE_NAME), "(%d): %15[a-z]", &ln, kind) == 2 && strcmp(kind, "error") == 0) {
            for (int l = ln - 2; l <= ln + 1; l++) {
                if (l < 1 || l > lines.len) continue;
                const char *a = lines.data[l - 1];
                const char *b = strchr(a, '\n');
                int len = b ? (int)(b - a) : (int)strlen(a);
                sb_printf(out, "  %s%5d | %.*s\n", l == ln ? ">" : " ", l, len, a);
            }
        }
        p += n;
        if (*p == '\n') p++;
    }
    VEC_FREE(lines);
}

KilnStatus nvrtc_compile(const char *source, int arch_sm, char **ptx_out, size_t *ptx_len, char *err,
                         size_t errlen) {
    *ptx_out = NULL;
    if (ptx_len) *ptx_len = 0;
    pthread_once(&nv_once, nv_load);
    if (!nv.lib) {
        snprintf(err, errlen, "%s", nv.why);
        return KILN_ERR_DEVICE;
    }
    nvrtcProgram prog;
    nvrtcResult r = nv.create(&prog, source, SOURCE_NAME, 0, NULL, NULL);
    if (r != NVRTC_SUCCESS) {
        snprintf(err, errlen, "nvrtcCreateProgram: %s", nv.error_string(r));
        return KILN_ERR_DEVICE;
    }
    char arch[64], *inc = cuda_include_dir();
    snprintf(arch, sizeof arch, "--gpu-architecture=compute_%d", arch_sm);
    StrBuf incopt = {0};
    const char *opts[5] = {arch, "-default-device", "--std=c++17", NULL, NULL};
    int nopts = 3;
    if (inc) {
        sb_printf(&incopt, "--include-path=%s", inc);
        opts[nopts++] = incopt.data;
    }
    r = nv.compile(prog, nopts, opts);
    KilnStatus st = KILN_OK;
    if (r != NVRTC_SUCCESS) {
        size_t n = 0;
        char *log = NULL;
        if (nv.log_size(prog, &n) == NVRTC_SUCCESS && n > 0) {
            log = xmalloc(n + 1);
            if (nv.log(prog, log) != NVRTC_SUCCESS) log[0] = 0;
            log[n] = 0;
        }
        StrBuf msg = {0};
        sb_printf(&msg, "NVRTC refused the generated CUDA C for sm_%d (%s)%s:\n", arch_sm, nv.error_string(r),
                  inc ? "" : "; no CUDA include folder was found (set CUDA_HOME)");
        annotate_log(log ? log : "", source, &msg);
        snprintf(err, errlen, "%s", msg.data);
        sb_free(&msg);
        free(log);
        st = KILN_ERR_DEVICE;
    } else {
        size_t n = 0;
        if ((r = nv.ptx_size(prog, &n)) != NVRTC_SUCCESS || n == 0) {
            snprintf(err, errlen, "nvrtcGetPTXSize: %s", r != NVRTC_SUCCESS ? nv.error_string(r) : "empty PTX");
            st = KILN_ERR_DEVICE;
        } else {
            char *ptx = xmalloc(n + 1);
            if ((r = nv.ptx(prog, ptx)) != NVRTC_SUCCESS) {
                snprintf(err, errlen, "nvrtcGetPTX: %s", nv.error_string(r));
                free(ptx);
                st = KILN_ERR_DEVICE;
            } else {
                ptx[n] = 0;
                *ptx_out = ptx;
                if (ptx_len) *ptx_len = strlen(ptx);
            }
        }
    }
    nv.destroy(&prog);
    sb_free(&incopt);
    free(inc);
    return st;
}
