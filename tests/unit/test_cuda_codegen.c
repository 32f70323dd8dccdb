/* test_cuda_codegen.c - the CUDA C renderer on kernel programs built by hand.
 *
 * Each case builds a KProgram (kprog_add_buf / kprog_add_kernel / kinst...),
 * then
 *   - renders it for the host emulation and runs it there (cuda-emu), the
 *     results compared with values computed here in double, rounded as the
 *     reference interpreter rounds (ir/interp.c);
 *   - renders it for the GPU, compiles it with NVRTC for sm_80 and sm_90 and
 *     assembles the PTX with ptxas for the same (skipped, and said so, where
 *     NVRTC or ptxas is missing).
 * Last line: "test_cuda_codegen: N passed, N failed". */
#include "codegen/cuda.h"
#include "runtime/cuda_emu.h"
#include "runtime/cuda_toolkit.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"
static bool have_ptxas = true, have_nvrtc = true;
static bool dump_source;

/* ------------------------------------------------------------ helpers */

typedef struct {
    Arena *arena;
    KProgram *p;
    VEC(void *) mem; /* host memory per buffer */
} Prog;

static Prog *prog_new(const char *name) {
    Prog *g = xcalloc(1, sizeof(Prog));
    g->arena = arena_new();
    g->p = kprog_new(g->arena, name);
    return g;
}

static void prog_free(Prog *g) {
    for (int i = 0; i < g->mem.len; i++) free(g->mem.data[i]);
    VEC_FREE(g->mem);
    kprog_destroy(g->p);
    arena_free(g->arena);
    free(g);
}

static int buf(Prog *g, KBufKind kind, KilnDType dt, int64_t n, const char *name) {
    int b = kprog_add_buf(g->p, kind, 0, dt, n, -1, name);
    VEC_PUSH(g->mem, xcalloc((size_t)(n > 0 ? n : 1), kiln_dtype_size(dt)));
    return b;
}

static float *F(Prog *g, int b) { return g->mem.data[b]; }

static double get(Prog *g, int b, int64_t i) {
    void *m = g->mem.data[b];
    switch (g->p->bufs.data[b].dtype) {
    case KILN_F32: return ((float *)m)[i];
    case KILN_F16: return kiln_f16_to_f32(((uint16_t *)m)[i]);
    case KILN_BF16: return kiln_bf16_to_f32(((uint16_t *)m)[i]);
    case KILN_F64: return ((double *)m)[i];
    case KILN_I32: return ((int32_t *)m)[i];
    case KILN_I64: return (double)((int64_t *)m)[i];
    default: return ((uint8_t *)m)[i];
    }
}

static void set(Prog *g, int b, int64_t i, double v) {
    void *m = g->mem.data[b];
    switch (g->p->bufs.data[b].dtype) {
    case KILN_F32: ((float *)m)[i] = (float)v; break;
    case KILN_F16: ((uint16_t *)m)[i] = kiln_f32_to_f16((float)v); break;
    case KILN_BF16: ((uint16_t *)m)[i] = kiln_f32_to_bf16((float)v); break;
    case KILN_F64: ((double *)m)[i] = v; break;
    case KILN_I32: ((int32_t *)m)[i] = (int32_t)v; break;
    case KILN_I64: ((int64_t *)m)[i] = (int64_t)v; break;
    default: ((uint8_t *)m)[i] = v != 0; break;
    }
}

/* Deterministic values in [-1, 1). */
static uint64_t rng = 88172645463325252ULL;
static double rnd(void) {
    rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
    return (double)(rng >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

static void fill(Prog *g, int b) {
    for (int64_t i = 0; i < g->p->bufs.data[b].numel; i++) set(g, b, i, rnd());
}

/* ptxas of THE toolkit (runtime/cuda_toolkit.c), or NULL. */
static const char *ptxas_path(void) { return cuda_toolkit()->ptxas; }

/* Renders for the GPU, NVRTC to PTX, ptxas to SASS, for one arch. */
static void check_gpu(Prog *g, int sm) {
    CudaProgram cp;
    char err[8192];
    bool ok = cuda_codegen(g->p, sm, false, &cp, err, sizeof err);
    CHECK(ok, "%s: render for sm_%d: %s", g->p->graph_name, sm, err);
    if (!ok) return;
    if (!have_nvrtc) {
        cuda_program_free(&cp);
        return;
    }
    char *ptx = NULL;
    size_t n = 0;
    KilnStatus st = nvrtc_compile(cp.source, sm, &ptx, &n, err, sizeof err);
    if (st != KILN_OK && cuda_toolkit()->problem) {
        printf("skip: NVRTC and ptxas checks (%s)\n", err);
        have_nvrtc = false;
        cuda_program_free(&cp);
        return;
    }
    CHECK(st == KILN_OK && n > 0, "%s: NVRTC for sm_%d:\n%s", g->p->graph_name, sm, err);
    const char *ptxas = ptxas_path();
    if (st == KILN_OK && !ptxas && have_ptxas) {
        printf("skip: ptxas checks (no bin/ptxas in the CUDA toolkit found, %s)\n",
               cuda_toolkit()->root ? cuda_toolkit()->root : "none");
        have_ptxas = false;
    }
    if (st == KILN_OK && ptxas) {
        char tmpl[] = "/tmp/kiln-test-ptx-XXXXXX";
        int fd = mkstemp(tmpl);
        bool wrote = fd >= 0 && write(fd, ptx, n) == (ssize_t)n;
        if (fd >= 0) close(fd);
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "%s -arch=sm_%d %s -o /dev/null 2>&1", ptxas, sm, tmpl);
        int rc = wrote ? system(cmd) : -1;
        CHECK(rc == 0, "%s: ptxas -arch=sm_%d refused the PTX (%s)", g->p->graph_name, sm, cmd);
        if (dump_source) {
            snprintf(cmd, sizeof cmd, "%s -v -arch=sm_%d %s -o /dev/null 2>&1 | grep -E 'Compiling|stack|registers'", ptxas, sm, tmpl);
            if (system(cmd) != 0) printf("(ptxas -v failed)\n");
        }
        unlink(tmpl);
    }
    free(ptx);
    cuda_program_free(&cp);
}

/* Runs on the emulator and checks for both GPU archs. */
static bool run(Prog *g) {
    char err[8192];
    kprog_legalise(g->p); /* as the executor does before any emitter */
    if (dump_source) { /* --dump: the GPU source of every case */
        CudaProgram cp;
        if (cuda_codegen(g->p, 90, false, &cp, err, sizeof err)) printf("%s", cp.source), cuda_program_free(&cp);
    }
    bool ok = cuda_emu_run_program(g->p, g->mem.data, false, err, sizeof err);
    CHECK(ok, "%s: cuda-emu: %s", g->p->graph_name, err);
    check_gpu(g, 80);
    check_gpu(g, 90);
    return ok;
}

/* Compares buffer b with expected values (want[i], tolerance rtol/atol). */
static void expect(Prog *g, int b, const double *want, double rtol, double atol) {
    int64_t n = g->p->bufs.data[b].numel, bad = 0, first = -1;
    for (int64_t i = 0; i < n; i++) {
        double a = get(g, b, i), e = want[i];
        bool same = a == e || (isnan(a) && isnan(e));
        if (!same && !(fabs(a - e) <= atol + rtol * fabs(e))) {
            if (first < 0) first = i;
            bad++;
        }
    }
    CHECK(bad == 0, "%s: buffer %s: %lld of %lld differ, first at %lld: %.9g instead of %.9g", g->p->graph_name,
          g->p->bufs.data[b].name, (long long)bad, (long long)n, (long long)first,
          first >= 0 ? get(g, b, first) : 0.0, first >= 0 ? want[first] : 0.0);
}

#define OUTER(k) kinst(k, KI_OUTER, KILN_I64, -1, -1, -1, -1)
#define CI(k, st, v) kinst_const(k, KILN_I64, st, v)

/* ------------------------------------------------------------- cases */

/* out[o] = relu(x[o] + y[o % 7]): vector lanes plus a scalar tail. */
static void test_elementwise(void) {
    Prog *g = prog_new("elementwise");
    int64_t n = 1030;
    int x = buf(g, KB_INPUT, KILN_F32, n, "x"), y = buf(g, KB_INPUT, KILN_F32, 7, "y");
    int out = buf(g, KB_OUTPUT, KILN_F32, n, "out");
    fill(g, x), fill(g, y);
    Kernel *k = kprog_add_kernel(g->p, KK_ELEMENTWISE, "k0_add_relu", n);
    int s = kernel_add_stage(k, KS_MAP, 1);
    int o = OUTER(k);
    int lx = kinst_load(k, x, KILN_F32, -1, o, -1);
    int m = kinst(k, KI_IMOD, KILN_I64, -1, o, CI(k, -1, 7), -1);
    int ly = kinst_load(k, y, KILN_F32, -1, m, -1);
    int a = kinst_elem(k, OP_ADD, KILN_F32, -1, lx, ly, -1);
    int r = kinst_elem(k, OP_RELU, KILN_F32, -1, a, -1, -1);
    kstage_store(k, s, out, o, r);
    if (run(g)) {
        double *want = xcalloc((size_t)n, sizeof(double));
        for (int64_t i = 0; i < n; i++) {
            float v = F(g, x)[i] + F(g, y)[i % 7];
            want[i] = v > 0 ? v : 0;
        }
        expect(g, out, want, 0, 0);
        free(want);
    }
    prog_free(g);
}

/* Unary and binary ops in f16, bf16, f64 and the integer types, with the
 * reference's rounding: halves computed in float and rounded per op. */
static void test_dtypes(void) {
    Prog *g = prog_new("dtypes");
    int64_t n = 67;
    int h = buf(g, KB_INPUT, KILN_F16, n, "h"), bh = buf(g, KB_INPUT, KILN_BF16, n, "bh");
    int d = buf(g, KB_INPUT, KILN_F64, n, "d"), i32 = buf(g, KB_INPUT, KILN_I32, n, "i");
    int oh = buf(g, KB_OUTPUT, KILN_F16, n, "oh"), ob = buf(g, KB_OUTPUT, KILN_BF16, n, "ob");
    int od = buf(g, KB_OUTPUT, KILN_F64, n, "od"), oi = buf(g, KB_OUTPUT, KILN_I32, n, "oi");
    int oc = buf(g, KB_OUTPUT, KILN_I32, n, "oc"), obool = buf(g, KB_OUTPUT, KILN_BOOL, n, "obool");
    int ol = buf(g, KB_OUTPUT, KILN_I64, n, "ol");
    fill(g, h), fill(g, bh), fill(g, d);
    for (int64_t i = 0; i < n; i++) set(g, i32, i, (double)((i * 7919) % 201) - 100 + (i == 3 ? 2147483600 : 0));
    set(g, d, 5, NAN), set(g, d, 6, 1e300), set(g, d, 7, -1e300);
    Kernel *k = kprog_add_kernel(g->p, KK_ELEMENTWISE, "k0_dtypes", n);
    int s = kernel_add_stage(k, KS_MAP, 1);
    int o = OUTER(k);
    /* f16: gelu(h) * 3 - exp(h) */
    int lh = kinst_load(k, h, KILN_F16, -1, o, -1);
    int ge = kinst_elem(k, OP_GELU, KILN_F16, -1, lh, -1, -1);
    int t3 = kinst_elem(k, OP_MUL, KILN_F16, -1, ge, kinst_const(k, KILN_F16, -1, 3), -1);
    int ex = kinst_elem(k, OP_EXP, KILN_F16, -1, lh, -1, -1);
    kstage_store(k, s, oh, o, kinst_elem(k, OP_SUB, KILN_F16, -1, t3, ex, -1));
    /* bf16: tanh(bh) % 0.25 */
    int lb = kinst_load(k, bh, KILN_BF16, -1, o, -1);
    int th = kinst_elem(k, OP_TANH, KILN_BF16, -1, lb, -1, -1);
    kstage_store(k, s, ob, o, kinst_elem(k, OP_MOD, KILN_BF16, -1, th, kinst_const(k, KILN_BF16, -1, 0.25), -1));
    /* f64: sigmoid(d) */
    int ld = kinst_load(k, d, KILN_F64, -1, o, -1);
    kstage_store(k, s, od, o, kinst_elem(k, OP_SIGMOID, KILN_F64, -1, ld, -1, -1));
    /* i32: (i * i) % -7 + i ** 3, wrapping */
    int li = kinst_load(k, i32, KILN_I32, -1, o, -1);
    int sq = kinst_elem(k, OP_MUL, KILN_I32, -1, li, li, -1);
    int md = kinst_elem(k, OP_MOD, KILN_I32, -1, sq, kinst_const(k, KILN_I32, -1, -7), -1);
    int pw = kinst_elem(k, OP_POW, KILN_I32, -1, li, kinst_const(k, KILN_I32, -1, 3), -1);
    kstage_store(k, s, oi, o, kinst_elem(k, OP_ADD, KILN_I32, -1, md, pw, -1));
    /* casts: f64 -> i32 saturating (NaN -> 0); f16 > 0 -> bool; i32 -> i64 */
    kstage_store(k, s, oc, o, kinst(k, KI_CAST, KILN_I32, -1, ld, -1, -1));
    kstage_store(k, s, obool, o, kinst_elem(k, OP_GT, KILN_BOOL, -1, lh, kinst_const(k, KILN_F16, -1, 0), -1));
    int sg = kinst_elem(k, OP_SIGN, KILN_I32, -1, li, -1, -1);
    kstage_store(k, s, ol, o, kinst(k, KI_CAST, KILN_I64, -1, sg, -1, -1));
    if (run(g)) {
        double *w = xcalloc((size_t)n, sizeof(double));
        for (int64_t i = 0; i < n; i++) {
            double x = get(g, h, i);
            double gl = ref_round_to_dtype(0.5 * x * (1 + erf(x / sqrt(2.0))), KILN_F16);
            w[i] = ref_round_to_dtype(ref_round_to_dtype(gl * 3, KILN_F16) - ref_round_to_dtype(exp(x), KILN_F16),
                                      KILN_F16);
        }
        expect(g, oh, w, 1e-3, 1e-3); /* one f16 ulp: float vs double transcendental */
        for (int64_t i = 0; i < n; i++) {
            double t = ref_round_to_dtype(tanh(get(g, bh, i)), KILN_BF16), r = fmod(t, 0.25);
            if (r != 0 && r < 0) r += 0.25;
            w[i] = ref_round_to_dtype(r, KILN_BF16);
        }
        expect(g, ob, w, 1e-2, 1e-2);
        for (int64_t i = 0; i < n; i++) w[i] = 1 / (1 + exp(-get(g, d, i)));
        expect(g, od, w, 1e-15, 0);
        for (int64_t i = 0; i < n; i++) {
            int64_t v = (int64_t)get(g, i32, i);
            int32_t sqw = (int32_t)(uint32_t)((uint64_t)v * (uint64_t)v);
            int64_t r = sqw % -7;
            if (r != 0 && r > 0) r += -7;
            int32_t p3 = (int32_t)(uint32_t)((uint64_t)v * (uint64_t)v * (uint64_t)v);
            w[i] = (int32_t)(uint32_t)((uint64_t)r + (uint64_t)(int64_t)p3);
        }
        expect(g, oi, w, 0, 0);
        for (int64_t i = 0; i < n; i++) w[i] = ref_round_to_dtype(get(g, d, i), KILN_I32);
        expect(g, oc, w, 0, 0);
        for (int64_t i = 0; i < n; i++) w[i] = get(g, h, i) > 0;
        expect(g, obool, w, 0, 0);
        for (int64_t i = 0; i < n; i++) {
            double v = get(g, i32, i);
            w[i] = (v > 0) - (v < 0);
        }
        expect(g, ol, w, 0, 0);
        free(w);
    }
    prog_free(g);
}

/* softmax over rows: max, then sum of exp, then the map; rows of `cols`
 * (warp per row when short, block per row when long). */
static void test_softmax(int64_t rows, int64_t cols) {
    char name[64];
    snprintf(name, sizeof name, "softmax_%lldx%lld", (long long)rows, (long long)cols);
    Prog *g = prog_new(name);
    int x = buf(g, KB_INPUT, KILN_F32, rows * cols, "x"), out = buf(g, KB_OUTPUT, KILN_F32, rows * cols, "out");
    fill(g, x);
    Kernel *k = kprog_add_kernel(g->p, KK_ROW, "k0_softmax", rows);
    int s0 = kernel_add_stage(k, KS_REDUCE, cols), s1 = kernel_add_stage(k, KS_REDUCE, cols);
    int s2 = kernel_add_stage(k, KS_MAP, cols);
    int o = OUTER(k);
    int base = kinst(k, KI_IMUL, KILN_I64, -1, o, CI(k, -1, cols), -1);
    /* stage 0: max */
    int r0 = kinst(k, KI_INNER, KILN_I64, s0, -1, -1, -1);
    int x0 = kinst_load(k, x, KILN_F32, s0, kinst(k, KI_IADD, KILN_I64, s0, base, r0, -1), -1);
    kstage_reduce(k, s0, OP_MAX, x0, KILN_F32);
    /* stage 1: sum exp(x - max) */
    int r1 = kinst(k, KI_INNER, KILN_I64, s1, -1, -1, -1);
    int x1 = kinst_load(k, x, KILN_F32, s1, kinst(k, KI_IADD, KILN_I64, s1, base, r1, -1), -1);
    int m1 = kinst(k, KI_ACC, KILN_F32, s1, 0, -1, -1);
    int e1 = kinst_elem(k, OP_EXP, KILN_F32, s1, kinst_elem(k, OP_SUB, KILN_F32, s1, x1, m1, -1), -1, -1);
    kstage_reduce(k, s1, OP_SUM, e1, KILN_F32);
    /* map */
    int r2 = kinst(k, KI_INNER, KILN_I64, s2, -1, -1, -1);
    int i2 = kinst(k, KI_IADD, KILN_I64, s2, base, r2, -1);
    int x2 = kinst_load(k, x, KILN_F32, s2, i2, -1);
    int m2 = kinst(k, KI_ACC, KILN_F32, s2, 0, -1, -1), z2 = kinst(k, KI_ACC, KILN_F32, s2, 1, -1, -1);
    int e2 = kinst_elem(k, OP_EXP, KILN_F32, s2, kinst_elem(k, OP_SUB, KILN_F32, s2, x2, m2, -1), -1, -1);
    kstage_store(k, s2, out, i2, kinst_elem(k, OP_DIV, KILN_F32, s2, e2, z2, -1));
    if (run(g)) {
        double *w = xcalloc((size_t)(rows * cols), sizeof(double));
        for (int64_t rw = 0; rw < rows; rw++) {
            const float *xr = F(g, x) + rw * cols;
            double mx = -INFINITY, sum = 0;
            for (int64_t c = 0; c < cols; c++) mx = xr[c] > mx ? xr[c] : mx;
            for (int64_t c = 0; c < cols; c++) sum += exp(xr[c] - mx);
            for (int64_t c = 0; c < cols; c++) w[rw * cols + c] = exp(xr[c] - mx) / sum;
        }
        expect(g, out, w, 1e-5, 1e-7);
        free(w);
    }
    prog_free(g);
}

/* out[c] = sum over r of x[r, c] (loads follow o: one thread per output),
 * and mx[r] = max over c of x[r, c] with a NaN in one row. */
static void test_reduce_axes(void) {
    Prog *g = prog_new("reduce_axes");
    int64_t R = 37, C = 1500;
    int x = buf(g, KB_INPUT, KILN_F32, R * C, "x");
    int cs = buf(g, KB_OUTPUT, KILN_F32, C, "colsum"), rm = buf(g, KB_OUTPUT, KILN_F32, R, "rowmax");
    fill(g, x);
    F(g, x)[5 * C + 17] = NAN;
    Kernel *k = kprog_add_kernel(g->p, KK_REDUCE, "k0_colsum", C);
    int s0 = kernel_add_stage(k, KS_REDUCE, R), s1 = kernel_add_stage(k, KS_MAP, 1);
    int o = OUTER(k);
    int r = kinst(k, KI_INNER, KILN_I64, s0, -1, -1, -1);
    int idx = kinst(k, KI_IADD, KILN_I64, s0, kinst(k, KI_IMUL, KILN_I64, s0, r, CI(k, s0, C), -1), o, -1);
    kstage_reduce(k, s0, OP_SUM, kinst_load(k, x, KILN_F32, s0, idx, -1), KILN_F32);
    kstage_store(k, s1, cs, o, kinst(k, KI_ACC, KILN_F32, s1, 0, -1, -1));

    k = kprog_add_kernel(g->p, KK_REDUCE, "k1_rowmax", R);
    s0 = kernel_add_stage(k, KS_REDUCE, C), s1 = kernel_add_stage(k, KS_MAP, 1);
    o = OUTER(k);
    r = kinst(k, KI_INNER, KILN_I64, s0, -1, -1, -1);
    idx = kinst(k, KI_IADD, KILN_I64, s0, kinst(k, KI_IMUL, KILN_I64, s0, o, CI(k, s0, C), -1), r, -1);
    kstage_reduce(k, s0, OP_MAX, kinst_load(k, x, KILN_F32, s0, idx, -1), KILN_F32);
    kstage_store(k, s1, rm, o, kinst(k, KI_ACC, KILN_F32, s1, 0, -1, -1));
    if (run(g)) {
        double *w = xcalloc((size_t)C, sizeof(double));
        for (int64_t c = 0; c < C; c++) {
            w[c] = 0;
            for (int64_t rr = 0; rr < R; rr++) w[c] += F(g, x)[rr * C + c];
        }
        expect(g, cs, w, 1e-5, 1e-5);
        for (int64_t rr = 0; rr < R; rr++) {
            w[rr] = -INFINITY;
            for (int64_t c = 0; c < C; c++) {
                double v = F(g, x)[rr * C + c];
                if (isnan(v) || isnan(w[rr])) w[rr] = NAN;
                else if (v > w[rr]) w[rr] = v;
            }
        }
        expect(g, rm, w, 0, 0);
        free(w);
    }
    prog_free(g);
}

/* A full reduction (one output, 1024-thread block): mean of 50000 values
 * as the scheduler writes it, sum then divide. */
static void test_full_sum(void) {
    Prog *g = prog_new("full_sum");
    int64_t n = 50000;
    int x = buf(g, KB_INPUT, KILN_F32, n, "x"), out = buf(g, KB_OUTPUT, KILN_F32, 1, "mean");
    fill(g, x);
    Kernel *k = kprog_add_kernel(g->p, KK_REDUCE, "k0_mean", 1);
    int s0 = kernel_add_stage(k, KS_REDUCE, n), s1 = kernel_add_stage(k, KS_MAP, 1);
    int o = OUTER(k);
    int r = kinst(k, KI_INNER, KILN_I64, s0, -1, -1, -1);
    kstage_reduce(k, s0, OP_SUM, kinst_load(k, x, KILN_F32, s0, r, -1), KILN_F32);
    int acc = kinst(k, KI_ACC, KILN_F32, s1, 0, -1, -1);
    kstage_store(k, s1, out, o, kinst_elem(k, OP_DIV, KILN_F32, s1, acc, kinst_const(k, KILN_F32, s1, (double)n), -1));
    if (run(g)) {
        double sum = 0;
        for (int64_t i = 0; i < n; i++) sum += F(g, x)[i];
        double w = sum / (double)n;
        expect(g, out, &w, 1e-4, 1e-6);
    }
    prog_free(g);
}

/* argmax / argmin per row: ties keep the first, the first NaN wins; integer
 * sums in i64; both for short rows (warp) and long rows (block). */
static void test_arg(int64_t rows, int64_t cols) {
    char name[64];
    snprintf(name, sizeof name, "arg_%lldx%lld", (long long)rows, (long long)cols);
    Prog *g = prog_new(name);
    int x = buf(g, KB_INPUT, KILN_F32, rows * cols, "x"), xi = buf(g, KB_INPUT, KILN_I32, rows * cols, "xi");
    int amax = buf(g, KB_OUTPUT, KILN_I64, rows, "amax"), amin = buf(g, KB_OUTPUT, KILN_I64, rows, "amin");
    int isum = buf(g, KB_OUTPUT, KILN_I32, rows, "isum");
    for (int64_t i = 0; i < rows * cols; i++) {
        set(g, x, i, (double)((i * 37) % 11)); /* many ties */
        set(g, xi, i, (double)(((i * 7919) % 2001) - 1000) * 1000003.0);
    }
    int64_t nanrow = rows > 2 ? 2 : rows - 1;
    F(g, x)[nanrow * cols + cols / 2] = NAN;
    F(g, x)[nanrow * cols + cols - 1] = NAN;
    for (int which = 0; which < 2; which++) {
        Kernel *k = kprog_add_kernel(g->p, KK_REDUCE, which ? "k1_argmin" : "k0_argmax", rows);
        int s0 = kernel_add_stage(k, KS_REDUCE, cols), s1 = kernel_add_stage(k, KS_MAP, 1);
        int o = OUTER(k);
        int r = kinst(k, KI_INNER, KILN_I64, s0, -1, -1, -1);
        int idx = kinst(k, KI_IADD, KILN_I64, s0, kinst(k, KI_IMUL, KILN_I64, s0, o, CI(k, s0, cols), -1), r, -1);
        kstage_reduce(k, s0, which ? OP_ARGMIN : OP_ARGMAX, kinst_load(k, x, KILN_F32, s0, idx, -1), KILN_F32);
        kstage_store(k, s1, which ? amin : amax, o, kinst(k, KI_ACC, KILN_I64, s1, 0, -1, -1));
    }
    Kernel *k = kprog_add_kernel(g->p, KK_REDUCE, "k2_isum", rows);
    int s0 = kernel_add_stage(k, KS_REDUCE, cols), s1 = kernel_add_stage(k, KS_MAP, 1);
    int o = OUTER(k);
    int r = kinst(k, KI_INNER, KILN_I64, s0, -1, -1, -1);
    int idx = kinst(k, KI_IADD, KILN_I64, s0, kinst(k, KI_IMUL, KILN_I64, s0, o, CI(k, s0, cols), -1), r, -1);
    kstage_reduce(k, s0, OP_SUM, kinst_load(k, xi, KILN_I32, s0, idx, -1), KILN_I32);
    int acc = kinst(k, KI_ACC, KILN_I64, s1, 0, -1, -1);
    /* the i64 sum cast to i32 wraps, as NumPy's astype and the reference's sum do */
    kstage_store(k, s1, isum, o, kinst(k, KI_CAST, KILN_I32, s1, acc, -1, -1));
    if (run(g)) {
        double *w = xcalloc((size_t)rows, sizeof(double)), *w2 = xcalloc((size_t)rows, sizeof(double));
        double *w3 = xcalloc((size_t)rows, sizeof(double));
        for (int64_t rw = 0; rw < rows; rw++) {
            int64_t bi = -1, si = -1;
            double bv = 0, sv = 0;
            int64_t tot = 0;
            for (int64_t c = 0; c < cols; c++) {
                double v = F(g, x)[rw * cols + c];
                if (bi < 0 || (!isnan(bv) && (isnan(v) || v > bv))) bv = v, bi = c;
                if (si < 0 || (!isnan(sv) && (isnan(v) || v < sv))) sv = v, si = c;
                tot += (int64_t)get(g, xi, rw * cols + c);
            }
            w[rw] = (double)bi, w2[rw] = (double)si;
            w3[rw] = (double)scalar_from_int(tot, KILN_I32).i;
        }
        expect(g, amax, w, 0, 0);
        expect(g, amin, w2, 0, 0);
        expect(g, isum, w3, 0, 0);
        free(w), free(w2), free(w3);
    }
    prog_free(g);
}

/* out = relu(A @ B + bias) with A [2, M, K] and B [K, N] (broadcast over the
 * batch), B read transposed in a second kernel; f32 and f16 operands. */
static void test_matmul(KilnDType dt, int64_t M, int64_t N, int64_t K) {
    char name[64];
    snprintf(name, sizeof name, "matmul_%s_%lldx%lldx%lld", kiln_dtype_name(dt), (long long)M, (long long)N,
             (long long)K);
    Prog *g = prog_new(name);
    int64_t NB = 2;
    int a = buf(g, KB_INPUT, dt, NB * M * K, "a"), b = buf(g, KB_INPUT, dt, K * N, "b");
    int bias = buf(g, KB_INPUT, KILN_F32, N, "bias");
    int out = buf(g, KB_OUTPUT, KILN_F32, NB * M * N, "out"), out2 = buf(g, KB_OUTPUT, KILN_F32, NB * M * M, "out2");
    fill(g, a), fill(g, b), fill(g, bias);
    static int64_t dims[1], sa[1], sb[1];
    dims[0] = NB, sa[0] = M * K, sb[0] = 0;
    for (int t = 0; t < 2; t++) {
        /* t == 0: A @ B; t == 1: A @ A^T (B operand strided along k) */
        int64_t n = t ? M : N;
        Kernel *k = kprog_add_kernel(g->p, KK_MATMUL, t ? "k1_matmul_t" : "k0_matmul_bias_relu", NB * M * n);
        int s0 = kernel_add_stage(k, KS_REDUCE, K), s1 = kernel_add_stage(k, KS_MAP, 1);
        k->mm = (KMatmul){.a_buf = a, .b_buf = t ? a : b, .batch = NB, .m = M, .n = n, .k = K, .nbatch = 1,
                          .batch_dims = dims, .a_batch_stride = sa, .b_batch_stride = t ? sa : sb,
                          .a_sm = K, .a_sk = 1, .b_sk = t ? 1 : N, .b_sn = t ? K : 1};
        /* the generic form of stage 0 (what a scheduler writes) */
        int o = OUTER(k);
        int r = kinst(k, KI_INNER, KILN_I64, s0, -1, -1, -1);
        int bm = kinst(k, KI_IDIV, KILN_I64, -1, o, CI(k, -1, n), -1); /* bi*M + m */
        int nn = kinst(k, KI_IMOD, KILN_I64, -1, o, CI(k, -1, n), -1);
        int ai = kinst(k, KI_IADD, KILN_I64, s0, kinst(k, KI_IMUL, KILN_I64, s0, bm, CI(k, s0, K), -1), r, -1);
        int bidx;
        if (t) {
            int bb = kinst(k, KI_IDIV, KILN_I64, -1, bm, CI(k, -1, M), -1);
            int row = kinst(k, KI_IADD, KILN_I64, -1, kinst(k, KI_IMUL, KILN_I64, -1, bb, CI(k, -1, M), -1), nn, -1);
            bidx = kinst(k, KI_IADD, KILN_I64, s0, kinst(k, KI_IMUL, KILN_I64, s0, row, CI(k, s0, K), -1), r, -1);
        } else {
            bidx = kinst(k, KI_IADD, KILN_I64, s0, kinst(k, KI_IMUL, KILN_I64, s0, r, CI(k, s0, N), -1), nn, -1);
        }
        int la = kinst(k, KI_CAST, KILN_F32, s0, kinst_load(k, a, dt, s0, ai, -1), -1, -1);
        int lb = kinst(k, KI_CAST, KILN_F32, s0, kinst_load(k, t ? a : b, dt, s0, bidx, -1), -1, -1);
        kstage_reduce(k, s0, OP_SUM, kinst_elem(k, OP_MUL, KILN_F32, s0, la, lb, -1), KILN_F32);
        int acc = kinst(k, KI_ACC, KILN_F32, s1, 0, -1, -1);
        if (t) {
            kstage_store(k, s1, out2, o, acc);
        } else {
            int lbias = kinst_load(k, bias, KILN_F32, -1, nn, -1);
            int v = kinst_elem(k, OP_RELU, KILN_F32, s1, kinst_elem(k, OP_ADD, KILN_F32, s1, acc, lbias, -1), -1, -1);
            kstage_store(k, s1, out, o, v);
        }
    }
    bool ok = run(g);
    for (int pass = 0; pass < 2 && ok; pass++) {
        if (pass == 1) { /* half operands: again through nvcuda::wmma (emulated) */
            if (dt == KILN_F32) break;
            char err[8192];
            memset(g->mem.data[out], 0, (size_t)(NB * M * N) * sizeof(float));
            memset(g->mem.data[out2], 0, (size_t)(NB * M * M) * sizeof(float));
            ok = cuda_emu_run_program(g->p, g->mem.data, true, err, sizeof err);
            CHECK(ok, "%s: cuda-emu with tensor cores: %s", g->p->graph_name, err);
            if (!ok) break;
        }
        double *w = xcalloc((size_t)(NB * M * (N > M ? N : M)), sizeof(double));
        for (int64_t bi = 0; bi < NB; bi++)
            for (int64_t m = 0; m < M; m++)
                for (int64_t n = 0; n < N; n++) {
                    double s = 0;
                    for (int64_t kk = 0; kk < K; kk++) s += get(g, a, (bi * M + m) * K + kk) * get(g, b, kk * N + n);
                    s += get(g, bias, n);
                    w[(bi * M + m) * N + n] = s > 0 ? s : 0;
                }
        expect(g, out, w, 1e-4, 1e-4);
        for (int64_t bi = 0; bi < NB; bi++)
            for (int64_t m = 0; m < M; m++)
                for (int64_t n = 0; n < M; n++) {
                    double s = 0;
                    for (int64_t kk = 0; kk < K; kk++)
                        s += get(g, a, (bi * M + m) * K + kk) * get(g, a, (bi * M + n) * K + kk);
                    w[(bi * M + m) * M + n] = s;
                }
        expect(g, out2, w, 1e-4, 1e-4);
        free(w);
    }
    prog_free(g);
}

/* A guarded load (padding) and a map stage wider than 1 without reductions:
 * out[o, r] = r < 3 ? x[o, r] : -1 for r < 5. */
static void test_pad(void) {
    Prog *g = prog_new("pad");
    int64_t R = 41;
    int x = buf(g, KB_INPUT, KILN_F32, R * 3, "x"), out = buf(g, KB_OUTPUT, KILN_F32, R * 5, "out");
    fill(g, x);
    Kernel *k = kprog_add_kernel(g->p, KK_COPY, "k0_pad", R);
    int s = kernel_add_stage(k, KS_MAP, 5);
    int o = OUTER(k);
    int r = kinst(k, KI_INNER, KILN_I64, s, -1, -1, -1);
    int in = kinst(k, KI_ILT, KILN_BOOL, s, r, CI(k, s, 3), -1);
    int idx = kinst(k, KI_IADD, KILN_I64, s, kinst(k, KI_IMUL, KILN_I64, s, o, CI(k, s, 3), -1), r, -1);
    int v = kinst_load(k, x, KILN_F32, s, idx, in);
    int val = kinst_elem(k, OP_WHERE, KILN_F32, s, in, v, kinst_const(k, KILN_F32, s, -1));
    int oi = kinst(k, KI_IADD, KILN_I64, s, kinst(k, KI_IMUL, KILN_I64, s, o, CI(k, s, 5), -1), r, -1);
    kstage_store(k, s, out, oi, val);
    if (run(g)) {
        double *w = xcalloc((size_t)(R * 5), sizeof(double));
        for (int64_t i = 0; i < R; i++)
            for (int64_t j = 0; j < 5; j++) w[i * 5 + j] = j < 3 ? F(g, x)[i * 3 + j] : -1;
        expect(g, out, w, 0, 0);
        free(w);
    }
    prog_free(g);
}

/* Identifiers from the user's program never reach the source as written. */
static void test_sanitise(void) {
    Prog *g = prog_new("evil */ name");
    int x = buf(g, KB_INPUT, KILN_F32, 4, "x */ #include <stdio.h>"), y = buf(g, KB_OUTPUT, KILN_F32, 4, "y");
    Kernel *k = kprog_add_kernel(g->p, KK_ELEMENTWISE, "0bad name(); /*", 4);
    int s = kernel_add_stage(k, KS_MAP, 1);
    int o = OUTER(k);
    kstage_store(k, s, y, o, kinst_load(k, x, KILN_F32, -1, o, -1));
    k = kprog_add_kernel(g->p, KK_ELEMENTWISE, "0bad name(); /*", 4);
    s = kernel_add_stage(k, KS_MAP, 1);
    o = OUTER(k);
    kstage_store(k, s, y, o, kinst_load(k, x, KILN_F32, -1, o, -1));
    CudaProgram cp;
    char err[1024];
    bool ok = cuda_codegen(g->p, 90, false, &cp, err, sizeof err);
    CHECK(ok, "%s", err);
    if (ok) {
        CHECK(!strstr(cp.source, "#include <stdio.h>") && !strstr(cp.source, "bad name"), "unsanitised text in source");
        CHECK(cp.launches.len == 2 && strcmp(cp.launches.data[0].name, cp.launches.data[1].name) != 0,
              "kernel names not unique");
        CHECK(strspn(cp.launches.data[0].name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_") ==
                  strlen(cp.launches.data[0].name),
              "kernel name %s is not an identifier", cp.launches.data[0].name);
        cuda_program_free(&cp);
    }
    prog_free(g);
}

/* NVRTC's refusal comes back with the source lines around the error. */
static void test_nvrtc_error(void) {
    if (!have_nvrtc) return;
    char *ptx = NULL, err[4096];
    size_t n;
    KilnStatus st = nvrtc_compile("extern \"C\" __global__ void f(float *x) {\n    x[0] = undefined_thing;\n}\n", 80,
                                  &ptx, &n, err, sizeof err);
    CHECK(st == KILN_ERR_DEVICE && strstr(err, "undefined_thing") && strstr(err, ">    2 |"),
          "expected a device error with the source line, got %d: %s", st, err);
    free(ptx);
}

/* A hand-written emulated program with one kernel "k" over one float buffer. */
static bool emu_source(const char *body, float *x, char *err, size_t errlen) {
    CudaProgram cp = {0};
    StrBuf sb = {0};
    sb_printf(&sb,
              "#include \"kiln_emu.h\"\n"
              "extern \"C\" __global__ void k(float *b0) {\n%s\n}\n"
              "static void body(void **a) { k((float *)a[0]); }\n"
              "extern \"C\" KEMU_EXPORT int launch_k(void **args) {\n"
              "    static const KemuLaunch d = {{2, 1, 1}, {64, 1, 1}, 1, body, \"k\"};\n"
              "    return kemu_rt.launch(&d, args);\n"
              "}\n",
              body);
    cp.source = sb.data;
    CudaLaunch L = {.name = xstrdup("k"), .nargs = 1, .buf_args = xcalloc(1, sizeof(int))};
    VEC_PUSH(cp.launches, L);
    EmuModule *m = cuda_emu_load(&cp, err, errlen);
    void *args[1] = {x};
    bool ok = m && cuda_emu_launch(m, 0, args, err, errlen);
    cuda_emu_unload(m);
    cuda_program_free(&cp);
    return ok;
}

/* The emulator's own checks: barriers reached by different threads are
 * reported (not hung on), exited threads release a barrier, shuffles across
 * two warps, and a compiler refusal comes back with the compiler's words. */
static void test_emulator(void) {
    float x[128] = {0};
    char err[4096] = "";
    bool ok = emu_source("    float v = 1;\n"
                         "    if (threadIdx.x == 0) v = __shfl_xor_sync(0xffffffffu, v, 1);\n"
                         "    __syncthreads();\n"
                         "    b0[blockIdx.x * 64 + threadIdx.x] = v;",
                         x, err, sizeof err);
    CHECK(!ok && strstr(err, "wait at different barriers") && strstr(err, "1 at a warp shuffle"),
          "expected a barrier mismatch report, got: %s", err);
    ok = emu_source("    __shared__ float s[64];\n"
                    "    s[threadIdx.x] = (float)threadIdx.x;\n"
                    "    if (threadIdx.x >= 40) return; /* exited threads do not hold the barrier */\n"
                    "    __syncthreads();\n"
                    "    float v = s[63 - threadIdx.x] + __shfl_down_sync(0xffffffffu, (float)threadIdx.x, 1);\n"
                    "    b0[blockIdx.x * 64 + threadIdx.x] = v;",
                    x, err, sizeof err);
    CHECK(ok, "%s", err);
    bool good = true;
    for (int b = 0; b < 2; b++)
        for (int t = 0; t < 40; t++) {
            /* down by 1: lane 31 keeps its own value; lanes 32..39 read 33..40 (40 exited: its slot is stale) */
            float down = (t & 31) == 31 ? (float)t : (float)(t + 1);
            if (t == 39) continue;
            good = good && x[b * 64 + t] == (float)(63 - t) + down;
        }
    CHECK(good, "barrier/shuffle results wrong: x[0]=%g x[31]=%g x[32]=%g", x[0], x[31], x[32]);
    ok = emu_source("    this is not C++;", x, err, sizeof err);
    CHECK(!ok && strstr(err, "refused the generated code") && strstr(err, "error"),
          "expected the compiler's refusal, got: %s", err);
    /* the refused source is kept for inspection: remove it */
    const char *kept = strstr(err, "(kept in ");
    if (kept) {
        char path[1024];
        if (sscanf(kept, "(kept in %1000[^)])", path) == 1) {
            unlink(path);
            char *slash = strrchr(path, '/');
            if (slash) {
                strcpy(slash, "/kiln_emu.h");
                unlink(path);
                *slash = 0;
                rmdir(path);
            }
        }
    }
}

/* A kernel program that reads past its input: the emulator says so. */
static void test_bounds(void) {
    Prog *g = prog_new("bounds");
    int x = buf(g, KB_INPUT, KILN_F32, 100, "x"), y = buf(g, KB_OUTPUT, KILN_F32, 100, "y");
    Kernel *k = kprog_add_kernel(g->p, KK_ELEMENTWISE, "k0_shift", 100);
    int s = kernel_add_stage(k, KS_MAP, 1);
    int o = OUTER(k);
    int i1 = kinst(k, KI_IADD, KILN_I64, -1, o, CI(k, -1, 1), -1);
    kstage_store(k, s, y, o, kinst_load(k, x, KILN_F32, -1, i1, -1));
    char err[1024] = "";
    bool ok = cuda_emu_run_program(g->p, g->mem.data, false, err, sizeof err);
    CHECK(!ok && strstr(err, "k0_shift accessed buffer b0 at index 100, outside its 100 elements"),
          "expected an out-of-bounds report, got: %s", err);
    prog_free(g);
}

int main(int argc, char **argv) {
    dump_source = argc > 1 && strcmp(argv[1], "--dump") == 0;
    test_elementwise();
    test_dtypes();
    test_softmax(70, 300);  /* warp per row */
    test_softmax(3, 2000);  /* block per row */
    test_reduce_axes();
    test_full_sum();
    test_arg(100, 77);
    test_arg(2, 3000);
    test_matmul(KILN_F32, 70, 45, 33);
    test_matmul(KILN_F16, 64, 80, 48);
    test_matmul(KILN_BF16, 70, 45, 33);
    test_pad();
    test_sanitise();
    test_emulator();
    test_bounds();
    test_nvrtc_error();
    printf("test_cuda_codegen: %d passed, %d failed\n", npass, nfail);
    return nfail != 0;
}
