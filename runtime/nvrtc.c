/* nvrtc.c - CUDA C to PTX (or SASS) with NVRTC, loaded at run time.
 *
 * Contract: nvrtc_compile_to(source, sm, what) compiles one translation unit
 * (every kernel of a graph: NVRTC's fixed cost is paid once) to PTX for
 * compute_<sm> or to a cubin for sm_<sm>, and returns it.  NVRTC comes from
 * THE toolkit runtime/cuda_toolkit.c finds, loaded by full path, so kiln
 * starts on machines without CUDA and says what is missing when asked to
 * compile.  Its builtins library is loaded by full path from the same folder
 * first (NVRTC itself looks for it by name on the loader path only, and fails
 * at the first compile when the toolkit is not there), and the versions of
 * the two are checked to agree.  The headers NVRTC 13 lacks (cuda_fp16.h,
 * cuda_bf16.h, mma.h) come from the same toolkit's include folder; a program
 * that needs them where there is none is refused naming what is missing.
 * Only the architectures NVRTC lists (nvrtcGetSupportedArchs) are compiled
 * for.  A refusal comes back as KILN_ERR_DEVICE with NVRTC's log, each error
 * followed by the generated source lines around it. */
#include "codegen/cuda.h"
#include "runtime/cuda_toolkit.h"

#include <dlfcn.h>
#include <nvrtc.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define SOURCE_NAME "kiln_kernels.cu"

/* X(field, function, required) */
#define NVRTC_FUNCS(X)                                                                                       \
    X(create, nvrtcCreateProgram, 1)                                                                         \
    X(compile, nvrtcCompileProgram, 1)                                                                       \
    X(log_size, nvrtcGetProgramLogSize, 1)                                                                   \
    X(log, nvrtcGetProgramLog, 1)                                                                            \
    X(ptx_size, nvrtcGetPTXSize, 1)                                                                          \
    X(ptx, nvrtcGetPTX, 1)                                                                                   \
    X(destroy, nvrtcDestroyProgram, 1)                                                                       \
    X(error_string, nvrtcGetErrorString, 1)                                                                  \
    X(version, nvrtcVersion, 1)                                                                              \
    X(cubin_size, nvrtcGetCUBINSize, 0)                                                                      \
    X(cubin, nvrtcGetCUBIN, 0)                                                                               \
    X(num_archs, nvrtcGetNumSupportedArchs, 0)                                                               \
    X(archs, nvrtcGetSupportedArchs, 0)

/* The libraries and entry points, resolved once per process, read-only
 * afterwards and owned by the process. */
static struct {
    void *builtins, *lib;
    char why[1024];
    int major, minor;
    int *arch_list, narchs;
#define NVRTC_FIELD(field, fn, req) __typeof__(fn) *field;
    NVRTC_FUNCS(NVRTC_FIELD)
#undef NVRTC_FIELD
} nv;
static pthread_once_t nv_once = PTHREAD_ONCE_INIT;

/* Gives up loading: the reason, the libraries closed. */
static void nv_fail(const char *why) {
    if (why != nv.why) snprintf(nv.why, sizeof nv.why, "%s", why);
    if (nv.lib) dlclose(nv.lib);
    if (nv.builtins) dlclose(nv.builtins);
    nv.lib = nv.builtins = NULL;
}

static void nv_load(void) {
    const CudaToolkit *tk = cuda_toolkit();
    if (tk->problem) return nv_fail(tk->problem);
    /* the builtins first, by full path: NVRTC's own dlopen of the builtins'
     * soname then finds the library already loaded */
    if (!(nv.builtins = dlopen(tk->builtins, RTLD_NOW | RTLD_LOCAL))) {
        snprintf(nv.why, sizeof nv.why, "cannot load NVRTC's builtins library %s: %s", tk->builtins,
                 dlerror());
        return nv_fail(nv.why);
    }
    if (!(nv.lib = dlopen(tk->nvrtc, RTLD_NOW | RTLD_LOCAL))) {
        snprintf(nv.why, sizeof nv.why, "cannot load NVRTC (%s): %s", tk->nvrtc, dlerror());
        return nv_fail(nv.why);
    }
#define NVRTC_LOOKUP(field, fn, req)                                                                         \
    {                                                                                                        \
        void *sym_ = dlsym(nv.lib, #fn);                                                                     \
        memcpy(&nv.field, &sym_, sizeof sym_);                                                               \
        if (!sym_ && req) {                                                                                  \
            snprintf(nv.why, sizeof nv.why, "%s has no %s: it is not a usable NVRTC", tk->nvrtc, #fn);       \
            return nv_fail(nv.why);                                                                          \
        }                                                                                                    \
    }
    NVRTC_FUNCS(NVRTC_LOOKUP)
#undef NVRTC_LOOKUP
    if (nv.version(&nv.major, &nv.minor) != NVRTC_SUCCESS) {
        snprintf(nv.why, sizeof nv.why, "nvrtcVersion failed in %s", tk->nvrtc);
        return nv_fail(nv.why);
    }
    if (nv.major != tk->builtins_major || nv.minor != tk->builtins_minor) {
        snprintf(nv.why, sizeof nv.why,
                 "NVRTC %d.%d (%s) does not match its builtins library %s: the toolkit at %s mixes versions "
                 "(reinstall it, or set CUDA_HOME to a complete one)",
                 nv.major, nv.minor, tk->nvrtc, tk->builtins, tk->root);
        return nv_fail(nv.why);
    }
    int n = 0;
    if (nv.num_archs && nv.archs && nv.num_archs(&n) == NVRTC_SUCCESS && n > 0) {
        nv.arch_list = xcalloc((size_t)n, sizeof(int));
        if (nv.archs(nv.arch_list) == NVRTC_SUCCESS) nv.narchs = n;
    }
}

bool nvrtc_describe(NvrtcInfo *info, char *err, size_t errlen) {
    pthread_once(&nv_once, nv_load);
    if (!nv.lib) {
        snprintf(err, errlen, "%s", nv.why);
        return false;
    }
    info->major = nv.major, info->minor = nv.minor;
    info->archs = nv.arch_list, info->narchs = nv.narchs;
    info->path = cuda_toolkit()->nvrtc;
    return true;
}

bool nvrtc_supports_arch(const NvrtcInfo *info, int sm) {
    if (info->narchs == 0) return true; /* an NVRTC too old to list them decides itself */
    for (int i = 0; i < info->narchs; i++)
        if (info->archs[i] == sm) return true;
    return false;
}

void nvrtc_arch_list(const NvrtcInfo *info, StrBuf *sb) {
    for (int i = 0; i < info->narchs; i++) sb_printf(sb, "%ssm_%d", i ? ", " : "", info->archs[i]);
    if (!info->narchs) sb_puts(sb, "(NVRTC does not list them)");
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

/* The headers a source may include that NVRTC 13 has no copy of. */
static const char *const toolkit_headers[] = {"cuda_fp16.h", "cuda_bf16.h", "mma.h", NULL};

static bool needs_header(const char *source, const char *h) {
    StrBuf inc = {0};
    sb_printf(&inc, "#include <%s>", h);
    bool yes = strstr(source, inc.data) != NULL;
    sb_free(&inc);
    return yes;
}

/* Checks what a compile needs besides NVRTC: the architecture, the headers,
 * nvrtcGetCUBIN for SASS. */
static bool compile_possible(const NvrtcInfo *info, const char *source, int arch_sm, NvrtcOutput what,
                             char *err, size_t errlen) {
    const CudaToolkit *tk = cuda_toolkit();
    if (!nvrtc_supports_arch(info, arch_sm)) {
        StrBuf list = {0};
        nvrtc_arch_list(info, &list);
        snprintf(err, errlen, "NVRTC %d.%d (%s) cannot compile for sm_%d; it compiles for %s", info->major,
                 info->minor, info->path, arch_sm, list.data);
        sb_free(&list);
        return false;
    }
    for (int i = 0; toolkit_headers[i]; i++)
        if (!tk->include && needs_header(source, toolkit_headers[i])) {
            snprintf(err, errlen,
                     "the generated CUDA C includes %s, which NVRTC %d.%d has no copy of, and the CUDA "
                     "toolkit at %s "
                     "has no include folder holding it (looked in %s): install the toolkit's headers or set "
                     "CUDA_HOME to a complete toolkit",
                     toolkit_headers[i], info->major, info->minor, tk->root, tk->include_tried);
            return false;
        }
    if (what == NVRTC_CUBIN && (!nv.cubin || !nv.cubin_size)) {
        snprintf(err, errlen, "NVRTC %d.%d (%s) cannot write SASS (it has no nvrtcGetCUBIN)", info->major,
                 info->minor, info->path);
        return false;
    }
    return true;
}

/* NVRTC's refusal: its log with the source around each error. */
static void refusal(const NvrtcInfo *info, nvrtcProgram prog, nvrtcResult r, const char *source, int arch_sm,
                    char *err, size_t errlen) {
    size_t n = 0;
    char *log = NULL;
    if (nv.log_size(prog, &n) == NVRTC_SUCCESS && n > 0) {
        log = xmalloc(n + 1);
        if (nv.log(prog, log) != NVRTC_SUCCESS) log[0] = 0;
        log[n] = 0;
    }
    StrBuf msg = {0};
    /* NVRTC out of host memory says "catastrophic error: out of memory" in
     * its log and returns NVRTC_ERROR_COMPILATION: not the code's fault */
    bool no_memory = r == NVRTC_ERROR_OUT_OF_MEMORY || (log && strstr(log, "error: out of memory"));
    sb_printf(&msg, "NVRTC %d.%d (%s) %s the generated CUDA C for sm_%d (%s):\n", info->major, info->minor,
              info->path, no_memory ? "ran out of host memory compiling" : "refused", arch_sm,
              nv.error_string(r));
    annotate_log(log ? log : "", source, &msg);
    snprintf(err, errlen, "%s", msg.data);
    sb_free(&msg);
    free(log);
}

KilnStatus nvrtc_compile_to(const char *source, int arch_sm, NvrtcOutput what, char **out, size_t *out_len,
                            char *err, size_t errlen) {
    *out = NULL;
    if (out_len) *out_len = 0;
    NvrtcInfo info;
    if (!nvrtc_describe(&info, err, errlen) || !compile_possible(&info, source, arch_sm, what, err, errlen))
        return KILN_ERR_DEVICE;
    nvrtcProgram prog;
    nvrtcResult r = nv.create(&prog, source, SOURCE_NAME, 0, NULL, NULL);
    if (r != NVRTC_SUCCESS) {
        snprintf(err, errlen, "nvrtcCreateProgram: %s", nv.error_string(r));
        return KILN_ERR_DEVICE;
    }
    const CudaToolkit *tk = cuda_toolkit();
    char arch[64];
    snprintf(arch, sizeof arch, "--gpu-architecture=%s_%d", what == NVRTC_CUBIN ? "sm" : "compute", arch_sm);
    StrBuf incopt = {0};
    const char *opts[5] = {arch, "-default-device", "--std=c++17", NULL, NULL};
    int nopts = 3;
    if (tk->include) {
        sb_printf(&incopt, "--include-path=%s", tk->include);
        opts[nopts++] = incopt.data;
    }
    KilnStatus st = KILN_ERR_DEVICE;
    const char *step = what == NVRTC_CUBIN ? "nvrtcGetCUBIN" : "nvrtcGetPTX";
    size_t n = 0;
    if ((r = nv.compile(prog, nopts, opts)) != NVRTC_SUCCESS) {
        refusal(&info, prog, r, source, arch_sm, err, errlen);
    } else if ((r = what == NVRTC_CUBIN ? nv.cubin_size(prog, &n) : nv.ptx_size(prog, &n)) != NVRTC_SUCCESS ||
               n == 0) {
        /* with a compute_XX architecture nvrtcGetCUBIN "succeeds" with nothing */
        snprintf(err, errlen, "%sSize: %s", step, r != NVRTC_SUCCESS ? nv.error_string(r) : "empty output");
    } else {
        char *bytes = xmalloc(n + 1);
        if ((r = what == NVRTC_CUBIN ? nv.cubin(prog, bytes) : nv.ptx(prog, bytes)) != NVRTC_SUCCESS) {
            snprintf(err, errlen, "%s: %s", step, nv.error_string(r));
            free(bytes);
        } else {
            bytes[n] = 0;
            *out = bytes;
            if (out_len) *out_len = what == NVRTC_CUBIN ? n : strlen(bytes);
            st = KILN_OK;
        }
    }
    nv.destroy(&prog);
    sb_free(&incopt);
    return st;
}

KilnStatus nvrtc_compile(const char *source, int arch_sm, char **ptx_out, size_t *ptx_len, char *err,
                         size_t errlen) {
    return nvrtc_compile_to(source, arch_sm, NVRTC_PTX, ptx_out, ptx_len, err, errlen);
}
