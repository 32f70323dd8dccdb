/* aot_cuda.c - `kiln aot FILE --target=cuda[:sm_XX] -o DIR`: a bundle that
 * runs one graph on a GPU with nothing but the CUDA driver API.
 *
 * Writes DIR/NAME.ptx (every kernel), DIR/NAME.h, DIR/NAME.c and DIR/README.
 * NAME.c embeds the PTX as a C string and defines
 *     int NAME_run(const T *in0, ..., T *out0, ...)
 * over HOST pointers (an input is named after its graph parameter when that
 * is a safe C identifier, else inN; the function's locals are k_*): it initialises the driver, retains device 0's primary
 * context, loads the PTX, makes one device allocation laid out as the kiln
 * runtime lays it out (cuda_layout), copies in, launches every kernel in
 * order with the grid and block kiln chose, copies the results back and
 * frees everything; it returns 0 or the failing CUresult.  With -DKILN_MAIN
 * NAME.c also has a main() that reads raw inputs from files and writes raw
 * outputs (for tests and quick checks). */
#include "runtime/cuda_driver.h"
#include "runtime/cuda_toolkit.h"
#include "runtime/outfile.h"

#include <errno.h>
#include <string.h>
#include <strings.h>

static bool is_c_identifier(const char *s) {
    static const char *const reserved[] = {
        "auto",     "break",    "case",     "char",   "const",    "continue", "default",  "do",
        "double",   "else",     "enum",     "extern", "float",    "for",      "goto",     "if",
        "inline",   "int",      "long",     "register", "restrict", "return", "short",    "signed",
        "sizeof",   "static",   "struct",   "switch", "typedef",  "union",    "unsigned", "void",
        "volatile", "while",    "bool",     "true",   "false",    "main",     "NULL",     NULL};
    if (!s || !*s || !((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_')) return false;
    for (const char *p = s; *p; p++)
        if (!((*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') || *p == '_'))
            return false;
    size_t n = strlen(s);
    if (s[0] == '_' || strncmp(s, "out", 3) == 0 || strncmp(s, "in", 2) == 0 || strncmp(s, "k_", 2) == 0 ||
        strncasecmp(s, "cu", 2) == 0 || (n > 2 && strcmp(s + n - 2, "_t") == 0))
        return false; /* keep clear of our own names, cuda.h's and typedefs */
    for (int i = 0; reserved[i]; i++)
        if (strcmp(s, reserved[i]) == 0) return false;
    return true;
}

/* NAME as a C identifier. */
static char *c_name(const char *s) {
    StrBuf sb = {0};
    if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || *s == '_')) sb_puts(&sb, "g_");
    for (const char *p = s; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
        sb_printf(&sb, "%c", ok ? c : '_');
    }
    return sb.data;
}

typedef struct {
    const IRGraph *g;
    const CudaBuild *b;
    const char *name; /* C identifier */
    char **in_names;  /* per parameter */
    int64_t *off;
    int64_t total;
    int min_driver;              /* the CUDA version the PTX needs of the driver (13000: 13.0) */
    const char *include, *stubs; /* for the build lines: the toolkit's */
} Bundle;

static void type_comment(const IRGraph *g, const Node *n, StrBuf *sb) {
    char *t = ir_type_str(g, n->dtype, n->rank, n->shape);
    sb_puts(sb, t);
    free(t);
}

/* "const float *x, ..., float *out0, ..." */
static void signature(const Bundle *bu, StrBuf *sb) {
    const IRGraph *g = bu->g;
    sb_printf(sb, "int %s_run(", bu->name);
    int n = 0;
    for (int i = 0; i < g->params.len; i++, n++) {
        const Node *p = ir_node(g, g->params.data[i]);
        sb_printf(sb, "%sconst %s *%s", n ? ", " : "", aot_c_type(p->dtype), bu->in_names[i]);
    }
    for (int i = 0; i < g->results.len; i++, n++) {
        const Node *r = ir_node(g, g->results.data[i]);
        sb_printf(sb, "%s%s *out%d", n ? ", " : "", aot_c_type(r->dtype), i);
    }
    if (!n) sb_puts(sb, "void");
    sb_puts(sb, ")");
}

static bool write_text(const char *dir, const char *file, const char *text, size_t len, char *err, size_t errlen) {
    StrBuf path = {0};
    sb_printf(&path, "%s/%s", dir, file);
    const void *part = text;
    bool ok = outfile_write(path.data, 1, &part, &len, err, errlen) == KILN_OK;
    sb_free(&path);
    return ok;
}

static void write_header(const Bundle *bu, StrBuf *h) {
    const IRGraph *g = bu->g;
    const char *N = bu->name;
    sb_printf(h, "/* %s.h - graph '%s' compiled by kiln %s for CUDA sm_%d (kiln aot --target=cuda).\n *\n", N, g->name,
              KILN_VERSION, bu->b->arch_sm);
    sb_printf(h, " * int %s_run(...) runs the graph once on GPU 0 through the CUDA driver API.\n", N);
    sb_puts(h, " * Every pointer is a HOST pointer to a dense, C-order array: the function\n"
               " * copies the inputs to the device, launches the kernels, copies the results\n"
               " * back into the caller's arrays and frees what it allocated.  It returns 0\n"
               " * (CUDA_SUCCESS) or the CUresult of the first driver call that failed\n"
               " * (cuGetErrorName() names it).  It calls cuInit and uses the primary context\n"
               " * of device 0 (made current for the call; the previous one is restored).\n"
               " * f16 and bf16 elements are passed as their 16-bit patterns (uint16_t),\n"
               " * bool as one byte (0 or 1).\n *\n * Parameters, in order:\n");
    for (int i = 0; i < g->params.len; i++) {
        const Node *p = ir_node(g, g->params.data[i]);
        sb_printf(h, " *   %-10s ", bu->in_names[i]);
        type_comment(g, p, h);
        sb_printf(h, "%s%s%s\n", strcmp(bu->in_names[i], p->name ? p->name : "") ? "  (parameter " : "",
                  strcmp(bu->in_names[i], p->name ? p->name : "") ? (p->name ? p->name : "?") : "",
                  strcmp(bu->in_names[i], p->name ? p->name : "") ? ")" : "");
    }
    for (int i = 0; i < g->results.len; i++) {
        const Node *r = ir_node(g, g->results.data[i]);
        sb_printf(h, " *   out%-7d ", i);
        type_comment(g, r, h);
        sb_printf(h, "  (result %d, written)\n", i);
    }
    sb_printf(h, " * Device memory used: %lld bytes in one allocation.\n", (long long)bu->total);
    StrBuf need = {0};
    cuda_version_text(bu->min_driver, &need);
    sb_printf(h,
              " * Needs an NVIDIA driver for %s:\n"
              " * the PTX comes from NVRTC %d.%d, which only such a driver can JIT-compile;\n"
              " * %s_run returns CUDA_ERROR_UNSUPPORTED_PTX_VERSION (222) on an older one.\n */\n",
              need.data, bu->min_driver / 1000, bu->min_driver % 1000 / 10, N);
    sb_free(&need);
    sb_printf(h, "#ifndef %s_KILN_H\n#define %s_KILN_H\n\n#include <stdint.h>\n\n", N, N);
    sb_printf(h,
              "/* The oldest driver %s_run accepts, as cuDriverGetVersion() reports it. */\n"
              "#define %s_MIN_CUDA_DRIVER %d\n\n",
              N, N, bu->min_driver);
    sb_puts(h, "#ifdef __cplusplus\nextern \"C\" {\n#endif\n\n");
    signature(bu, h);
    sb_puts(h, ";\n\n#ifdef __cplusplus\n}\n#endif\n\n#endif\n");
}

static void c_string(const char *s, size_t len, StrBuf *out) {
    sb_puts(out, "    \"");
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '\n') {
            sb_puts(out, i + 1 < len ? "\\n\"\n    \"" : "\\n");
        } else if (c == '"' || c == '\\') {
            sb_printf(out, "\\%c", c);
        } else if (c == '\t') {
            sb_puts(out, "\\t");
        } else if (c < 0x20 || c >= 0x7f || c == '?') { /* '?': no trigraphs */
            sb_printf(out, "\\%03o", c);
        } else {
            sb_printf(out, "%c", c);
        }
    }
    sb_puts(out, "\"");
}

static void write_source(const Bundle *bu, StrBuf *c) {
    const IRGraph *g = bu->g;
    const KProgram *p = bu->b->kp;
    const CudaProgram *cp = &bu->b->cp;
    const char *N = bu->name;
    sb_printf(c, "/* %s.c - graph '%s' compiled by kiln %s for CUDA sm_%d; see %s.h.\n", N, g->name, KILN_VERSION,
              bu->b->arch_sm, N);
    sb_printf(c, " * Uses only the CUDA driver API (cuda.h, -lcuda): see README.\n"
                 " * With -DKILN_MAIN it also has a main() for tests: see README. */\n");
    sb_printf(c, "#include \"%s.h\"\n\n#include <cuda.h>\n#include <stddef.h>\n\n", N);
    sb_printf(c, "/* The PTX of every kernel (also in %s.ptx). */\nstatic const char %s_ptx[] =\n", N, N);
    c_string(bu->b->ptx, bu->b->ptx_len, c);
    sb_puts(c, ";\n\n");
    sb_puts(c, "/* Every driver call is checked: the first failure ends the run. */\n"
               "#define K_CHECK(call)                       \\\n"
               "    do {                                    \\\n"
               "        k_r = (call);                       \\\n"
               "        if (k_r != CUDA_SUCCESS) goto done; \\\n"
               "    } while (0)\n\n");
    signature(bu, c);
    sb_puts(c, " {\n    CUresult k_r;\n    CUdevice k_dev = 0;\n    CUcontext k_ctx = NULL, k_prev = NULL;\n"
               "    CUmodule k_mod = NULL;\n    CUdeviceptr k_mem = 0;\n    int k_have_ctx = 0;\n");
    if (cp->launches.len) sb_puts(c, "    CUfunction k_f;\n");
    sb_printf(c,
              "    int k_driver = 0;\n    K_CHECK(cuDriverGetVersion(&k_driver));\n"
              "    if (k_driver < %s_MIN_CUDA_DRIVER) { /* too old to JIT-compile this PTX */\n"
              "        k_r = CUDA_ERROR_UNSUPPORTED_PTX_VERSION;\n        goto done;\n    }\n",
              N);
    sb_puts(c, "    K_CHECK(cuInit(0));\n    K_CHECK(cuDeviceGet(&k_dev, 0));\n"
               "    K_CHECK(cuCtxGetCurrent(&k_prev));\n"
               "    K_CHECK(cuDevicePrimaryCtxRetain(&k_ctx, k_dev));\n    k_have_ctx = 1;\n"
               "    K_CHECK(cuCtxSetCurrent(k_ctx));\n");
    sb_printf(c, "    K_CHECK(cuModuleLoadData(&k_mod, %s_ptx));\n", N);
    if (bu->total > 0) sb_printf(c, "    K_CHECK(cuMemAlloc(&k_mem, %lldu));\n", (long long)bu->total);
    for (int i = 0; i < p->bufs.len; i++) {
        const KBuf *b = &p->bufs.data[i];
        int64_t bytes = cuda_buf_bytes(b);
        if (b->kind != KB_INPUT || bytes == 0) continue;
        sb_printf(c, "    K_CHECK(cuMemcpyHtoD(k_mem + %lldu, %s, %lldu));\n", (long long)bu->off[i],
                  bu->in_names[b->index], (long long)bytes);
    }
    for (int l = 0; l < cp->launches.len; l++) {
        const CudaLaunch *L = &cp->launches.data[l];
        if (!L->grid[0] || !L->grid[1] || !L->grid[2] || !L->block[0] || !L->block[1] || !L->block[2]) {
            sb_printf(c, "    /* %s: empty, not launched */\n", L->name);
            continue;
        }
        sb_printf(c, "    { /* kernel %d */\n", l);
        if (L->nargs) {
            sb_puts(c, "        CUdeviceptr k_a[] = {");
            for (int j = 0; j < L->nargs; j++)
                sb_printf(c, "%sk_mem + %lldu", j ? ", " : "", (long long)bu->off[L->buf_args[j]]);
            sb_puts(c, "};\n        void *k_args[] = {");
            for (int j = 0; j < L->nargs; j++) sb_printf(c, "%s&k_a[%d]", j ? ", " : "", j);
            sb_puts(c, "};\n");
        } else {
            sb_puts(c, "        void **k_args = NULL;\n");
        }
        sb_printf(c, "        K_CHECK(cuModuleGetFunction(&k_f, k_mod, \"%s\"));\n", L->name);
        if (L->shared_bytes > 48 * 1024)
            sb_printf(c, "        K_CHECK(cuFuncSetAttribute(k_f, CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES, %u));\n",
                      L->shared_bytes);
        sb_printf(c, "        K_CHECK(cuLaunchKernel(k_f, %u, %u, %u, %u, %u, %u, %u, NULL, k_args, NULL));\n    }\n",
                  L->grid[0], L->grid[1], L->grid[2], L->block[0], L->block[1], L->block[2], L->shared_bytes);
    }
    sb_puts(c, "    K_CHECK(cuCtxSynchronize());\n");
    for (int i = 0; i < p->result_buf.len; i++) {
        int bi = p->result_buf.data[i];
        int64_t bytes = cuda_buf_bytes(&p->bufs.data[bi]);
        if (bytes) sb_printf(c, "    K_CHECK(cuMemcpyDtoH(out%d, k_mem + %lldu, %lldu));\n", i, (long long)bu->off[bi],
                             (long long)bytes);
    }
    sb_puts(c, "done:\n    if (k_mem) cuMemFree(k_mem);\n    if (k_mod) cuModuleUnload(k_mod);\n"
               "    if (k_have_ctx) {\n        cuCtxSetCurrent(k_prev);\n        cuDevicePrimaryCtxRelease(k_dev);\n    }\n"
               "    return (int)k_r;\n}\n");

    /* the optional test driver */
    sb_puts(c, "\n#ifdef KILN_MAIN\n#include <stdio.h>\n#include <stdlib.h>\n\n"
               "/* Reads exactly n bytes of path into a new buffer (NULL on failure). */\n"
               "static void *k_read(const char *path, size_t n) {\n"
               "    FILE *f = fopen(path, \"rb\");\n    void *p = malloc(n ? n : 1);\n"
               "    if (!f || !p || fread(p, 1, n, f) != n || fgetc(f) != EOF) {\n"
               "        fprintf(stderr, \"%s: cannot read %zu bytes (exactly) from it\\n\", path, n);\n"
               "        free(p);\n        p = NULL;\n    }\n    if (f) fclose(f);\n    return p;\n}\n\n");
    int nin = g->params.len, nout = g->results.len;
    sb_printf(c, "/* %s IN0.bin ... OUT0.bin ...: raw little-endian arrays, C order. */\n", N);
    sb_puts(c, "int main(int argc, char **argv) {\n");
    sb_printf(c, "    static const size_t bytes[] = {");
    for (int i = 0; i < nin; i++) {
        const Node *pn = ir_node(g, g->params.data[i]);
        sb_printf(c, "%s%lldu", i ? ", " : "", (long long)(ir_numel(pn) * (int64_t)kiln_dtype_size(pn->dtype)));
    }
    for (int i = 0; i < nout; i++) {
        const Node *rn = ir_node(g, g->results.data[i]);
        sb_printf(c, "%s%lldu", nin + i ? ", " : "", (long long)(ir_numel(rn) * (int64_t)kiln_dtype_size(rn->dtype)));
    }
    if (nin + nout == 0) sb_puts(c, "0");
    sb_printf(c, "};\n    void *buf[%d] = {0};\n    int rc = 1;\n", nin + nout + 1);
    sb_printf(c, "    if (argc != %d) {\n        fprintf(stderr, \"usage: %%s", nin + nout + 1);
    for (int i = 0; i < nin; i++) sb_printf(c, " %s.bin", bu->in_names[i]);
    for (int i = 0; i < nout; i++) sb_printf(c, " out%d.bin", i);
    sb_puts(c, "\\n\", argv[0]);\n        return 2;\n    }\n");
    sb_printf(c, "    for (int i = 0; i < %d; i++)\n        if (!(buf[i] = i < %d ? k_read(argv[i + 1], bytes[i]) : "
                 "calloc(bytes[i] ? bytes[i] : 1, 1))) goto out;\n",
              nin + nout, nin);
    sb_printf(c, "    int r = %s_run(", N);
    for (int i = 0; i < nin + nout; i++)
        sb_printf(c, "%sbuf[%d]", i ? ", " : "", i);
    sb_puts(c, ");\n    if (r != 0) {\n        const char *name = NULL;\n        cuGetErrorName((CUresult)r, &name);\n");
    sb_printf(c, "        fprintf(stderr, \"%s_run failed: %%s (%%d)\\n\", name ? name : \"?\", r);\n", N);
    sb_printf(c,
              "        int v = 0;\n        if (r == CUDA_ERROR_UNSUPPORTED_PTX_VERSION && "
              "cuDriverGetVersion(&v) == CUDA_SUCCESS)\n"
              "            fprintf(stderr, \"this bundle needs a driver for CUDA %%d.%%d or newer; this one "
              "supports CUDA %%d.%%d\\n\",\n"
              "                    %s_MIN_CUDA_DRIVER / 1000, %s_MIN_CUDA_DRIVER %% 1000 / 10, v / 1000, v "
              "%% 1000 / 10);\n",
              N, N);
    sb_puts(c, "        goto out;\n    }\n");
    sb_printf(c, "    for (int i = %d; i < %d; i++) {\n", nin, nin + nout);
    sb_puts(c, "        FILE *f = fopen(argv[i + 1], \"wb\");\n"
               "        if (!f || fwrite(buf[i], 1, bytes[i], f) != bytes[i] || fclose(f) != 0) {\n"
               "            fprintf(stderr, \"cannot write %s\\n\", argv[i + 1]);\n            goto out;\n        }\n    }\n"
               "    rc = 0;\nout:\n");
    sb_printf(c, "    for (int i = 0; i < %d; i++) free(buf[i]);\n    return rc;\n}\n#endif\n", nin + nout);
}

static void write_readme(const Bundle *bu, StrBuf *r) {
    const char *N = bu->name;
    sb_printf(r, "Graph '%s', compiled by kiln %s for CUDA sm_%d (kiln aot --target=cuda).\n\n", bu->g->name,
              KILN_VERSION, bu->b->arch_sm);
    sb_printf(r, "  %s.h    the entry point: int %s_run(...), host pointers in and out (read it)\n", N, N);
    sb_printf(r, "  %s.c    the PTX embedded as a string, and the driver-API calls that run it\n", N);
    sb_printf(r, "  %s.ptx  the same PTX, for reading or for cuModuleLoad()\n\n", N);
    StrBuf need = {0};
    cuda_version_text(bu->min_driver, &need);
    sb_puts(r, "It needs only the CUDA driver (libcuda.so.1) at run time: no NVRTC, no LLVM, no\n"
               "kiln library.  The PTX is JIT-compiled by the driver for the GPU it meets\n"
               "(any GPU of this architecture or newer).\n\n");
    sb_printf(r,
              "Minimum driver: one for %s, as the PTX comes from\n"
              "NVRTC %d.%d (nvidia-smi shows the CUDA version a driver supports).  On an older\n"
              "driver %s_run returns CUDA_ERROR_UNSUPPORTED_PTX_VERSION (222) before touching\n"
              "the GPU; %s_MIN_CUDA_DRIVER in %s.h holds the number (%d).\n\n",
              need.data, bu->min_driver / 1000, bu->min_driver % 1000 / 10, N, N, N, bu->min_driver);
    sb_free(&need);
    sb_printf(r,
              "Build line (the bundle's own test program; -DKILN_MAIN turns its main() on):\n\n"
              "    cc -O2 -DKILN_MAIN %s.c -I%s -L%s -lcuda -o %s\n"
              "    ./%s",
              N, bu->include, bu->stubs, N, N);
    for (int i = 0; i < bu->g->params.len; i++) sb_printf(r, " %s.bin", bu->in_names[i]);
    for (int i = 0; i < bu->g->results.len; i++) sb_printf(r, " out%d.bin", i);
    sb_printf(r, "\n\n(raw little-endian arrays in C order, sizes as in %s.h).\n\n", N);
    sb_printf(r,
              "Into your own program, which calls %s_run():\n\n"
              "    cc -O2 main.c %s.c -I%s -L%s -lcuda -o prog\n",
              N, N, bu->include, bu->stubs);
    sb_printf(r,
              "\nThe stub libcuda in %s is only for linking; at run time the\n"
              "driver's libcuda.so.1 is used.\n",
              bu->stubs);
    sb_printf(r,
              "\nFrom Go: this folder is package %s (%s.go, which cgo builds with %s.c); copy it\n"
              "into your module and import it: %s.Run(...) runs the graph.  %s.go takes CUDA\n"
              "from %s and %s; elsewhere set CGO_CFLAGS=-I.../include and\n"
              "CGO_LDFLAGS=-L.../stubs.\n",
              N, N, N, N, N, bu->include, bu->stubs);
}

KilnStatus cuda_aot(const KProgram *kp, const IRGraph *g, const CompileOptions *opt, const char *variant,
                    const char *dir, char *err, size_t errlen) {
    int sm;
    CompileOptions o = opt ? *opt : (CompileOptions){0};
    if (variant) o.arch = variant; /* --target=cuda:sm_80 */
    if (!cuda_target_arch(&o, &sm, err, errlen)) return KILN_ERR_USAGE;
    CudaBuild b;
    KilnStatus st = cuda_build(kp, &o, sm, true, &b, err, errlen);
    if (st != KILN_OK) return st;
    /* the toolkit that wrote the PTX: its NVRTC's version is the driver's minimum */
    const CudaToolkit *tk = cuda_toolkit();
    StrBuf stubs = {0};
    sb_printf(&stubs, "%s/stubs", tk->lib_dir ? tk->lib_dir : "/usr/local/cuda/lib64");
    Bundle bu = {.g = g,
                 .b = &b,
                 .min_driver = tk->builtins_major * 1000 + tk->builtins_minor * 10,
                 .include = tk->include ? tk->include : "/usr/local/cuda/include",
                 .stubs = stubs.data};
    bu.name = c_name(g->name);
    bu.in_names = xcalloc((size_t)g->params.len + 1, sizeof(char *));
    for (int i = 0; i < g->params.len; i++) {
        const char *pn = ir_node(g, g->params.data[i])->name;
        bool unique = true;
        for (int j = 0; j < i && pn; j++) unique = unique && strcmp(bu.in_names[j], pn) != 0;
        StrBuf sb = {0};
        size_t nl = strlen(bu.name);
        if (is_c_identifier(pn) && unique && strncmp(pn, bu.name, nl) != 0) sb_puts(&sb, pn);
        else sb_printf(&sb, "in%d", i);
        bu.in_names[i] = sb.data;
    }
    bu.off = xcalloc((size_t)b.kp->bufs.len + 1, sizeof(int64_t));
    bu.total = cuda_layout(b.kp, bu.off);
    StrBuf h = {0}, c = {0}, r = {0}, file = {0};
    write_header(&bu, &h);
    write_source(&bu, &c);
    write_readme(&bu, &r);
    st = KILN_ERR_USAGE; /* cannot write into DIR */
    sb_printf(&file, "%s.ptx", bu.name);
    if (!write_text(dir, file.data, b.ptx, b.ptx_len, err, errlen)) goto done;
    file.len = 0;
    sb_printf(&file, "%s.h", bu.name);
    if (!write_text(dir, file.data, h.data, h.len, err, errlen)) goto done;
    file.len = 0;
    sb_printf(&file, "%s.c", bu.name);
    if (!write_text(dir, file.data, c.data, c.len, err, errlen)) goto done;
    if (!write_text(dir, "README", r.data, r.len, err, errlen)) goto done;
    file.len = 0;
    sb_printf(&file, "CUDA sm_%d", b.arch_sm);
    char target[32];
    snprintf(target, sizeof target, "cuda:sm_%d", b.arch_sm);
    StrBuf cgo = {0};
    sb_printf(&cgo, "#cgo CFLAGS: -I%s\n#cgo LDFLAGS: -L%s -lcuda\n", bu.include, bu.stubs);
    AotGoTarget go = {target, file.data, "the CUDA driver (libcuda.so.1)", cgo.data, true};
    st = aot_go_write(g, bu.name, &go, dir, err, errlen);
    sb_free(&cgo);
done:
    sb_free(&h);
    sb_free(&c);
    sb_free(&r);
    sb_free(&file);
    for (int i = 0; i < g->params.len; i++) free(bu.in_names[i]);
    free(bu.in_names);
    free(bu.off);
    sb_free(&stubs);
    free((char *)bu.name);
    cuda_build_free(&b);
    return st;
}
