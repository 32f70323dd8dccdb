/* test_math.c - the accuracy of every f32 transcendental over the whole f32
 * range, on the cpu device (codegen/llvm.c) and in the generated CUDA C
 * (run by cuda-emu), against glibc's double-precision libm as the oracle.
 *
 * 2^24 inputs: half are random bit patterns (so every exponent, both signs,
 * subnormals, infinities and NaN appear about equally), half uniform in the
 * range where the function varies, plus the special values.  Each function
 * is one kernel run over all of them.  The error of a result y for an exact
 * value v is |y - v| / ulp(v), ulp(v) the spacing of floats at v (2^-149 in
 * the subnormal range); NaN must give NaN and an overflow infinity.  The
 * table printed (KILN_TEST_VERBOSE=1) is the
 * one in docs/cpu-backend.md; the bounds asserted are those there.
 * Last line: "test_math: N passed, N failed". */
#include "runtime/cpu_code.h"
#include "runtime/cuda_emu.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "ulp.h"

enum { N = 1 << 24 };

static double sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }
static double silu_d(double x) {
    if (x == -INFINITY) return -0.0; /* the limit */
    return x < 0 ? x * exp(x) / (1.0 + exp(x)) : x / (1.0 + exp(-x));
}
static double gelu_d(double x) { return x == -INFINITY ? -0.0 : 0.5 * x * erfc(-x / M_SQRT2); }
/* 0.5 x (1 + tanh u) = x / (1 + exp(-2u)), which stays accurate where
 * 1 + tanh u cancels (x far below 0) */
static double gelu_tanh_d(double x) {
    if (x == -INFINITY) return -0.0; /* the limit */
    double u = 0.7978845608028654 * (x + 0.044715 * x * x * x);
    return x / (1.0 + exp(-2.0 * u));
}
static double rsqrt_d(double x) { return 1.0 / sqrt(x); }

typedef struct {
    Op op;
    bool flag; /* gelu: the tanh approximation */
    const char *name;
    double (*ref)(double);
    double lo, hi;    /* where it varies: half the samples */
    double bound_cpu; /* max ulp, whole range */
    double bound_cuda;
} MathCase;

static const MathCase cases[] = {
    {OP_EXP, false, "exp", exp, -104, 89, 1.5, 2},
    {OP_LOG, false, "log", log, 0, 4, 1.5, 2},
    {OP_SIN, false, "sin", sin, -10, 10, 2, 2},
    {OP_COS, false, "cos", cos, -10, 10, 2, 2},
    {OP_TANH, false, "tanh", tanh, -10, 10, 2, 2.5},
    {OP_ERF, false, "erf", erf, -5, 5, 2, 2},
    {OP_SIGMOID, false, "sigmoid", sigmoid_d, -105, 20, 3, 3},
    {OP_SILU, false, "silu", silu_d, -105, 20, 3, 3},
    {OP_GELU, false, "gelu", gelu_d, -15, 10, 6, 6},
    {OP_GELU, true, "gelu(approximate)", gelu_tanh_d, -15, 10, 4, 4},
    {OP_SQRT, false, "sqrt", sqrt, 0, 100, 0.5, 0.5},
    {OP_RSQRT, false, "rsqrt", rsqrt_d, 0, 100, 1, 1},
};
enum { NCASES = sizeof cases / sizeof cases[0] };

/* The error of float y for exact value want, in ulps; INFINITY when NaN or
 * an infinity is wrong. */
static double ulp_error(float y, double want) {
    if (isnan(want)) return isnan(y) ? 0 : INFINITY;
    if (isnan(y)) return INFINITY;
    if (fabs(want) >= 0x1.ffffffp127) /* rounds to infinity in f32 */
        return isinf(y) && (y > 0) == (want > 0) ? 0 : INFINITY;
    if (isinf(y)) return INFINITY;
    return fabs((double)y - want) / ulp_of(want);
}

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint32_t rnd32(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return (uint32_t)(rng >> 16);
}

/* The inputs of one function. */
static void make_inputs(const MathCase *c, float *x) {
    static const float specials[] = {
        0.0f,      -0.0f,      INFINITY,  -INFINITY,  NAN,  0x1.fffffep127f, -0x1.fffffep127f,
        0x1p-149f, -0x1p-149f, 0x1p-126f, -0x1p-126f, 1.0f, -1.0f,           0.5f,
        2.0f,      1e10f,      1e14f,     -1e20f,     3e7f, 1.5707964f,      3.1415927f,
        102.0f,    -102.0f};
    int ns = (int)(sizeof specials / sizeof specials[0]);
    for (int i = 0; i < N; i++) {
        if (i < ns) {
            x[i] = specials[i];
        } else if (i < N / 2) {
            uint32_t b = rnd32();
            memcpy(&x[i], &b, 4);
        } else {
            x[i] = (float)(c->lo + (c->hi - c->lo) * ((double)rnd32() / 4294967296.0));
        }
    }
}

typedef struct {
    const MathCase *c;
    const float *x, *y;
    int from, to;
    double worst;
    float at;
} Slice;

static void *measure(void *arg) {
    Slice *s = arg;
    s->worst = 0;
    for (int i = s->from; i < s->to; i++) {
        double e = ulp_error(s->y[i], s->c->ref((double)s->x[i]));
        if (!(e <= s->worst)) s->worst = e, s->at = s->x[i];
    }
    return NULL;
}

/* The largest error of y over the inputs, on two threads. */
static double worst_error(const MathCase *c, const float *x, const float *y, float *at) {
    Slice s[2] = {{c, x, y, 0, N / 2, 0, 0}, {c, x, y, N / 2, N, 0, 0}};
    pthread_t t;
    bool threaded = pthread_create(&t, NULL, measure, &s[1]) == 0;
    measure(&s[0]);
    if (threaded)
        pthread_join(t, NULL);
    else
        measure(&s[1]);
    int w = s[1].worst > s[0].worst || isnan(s[1].worst) ? 1 : 0;
    *at = s[w].at;
    return s[w].worst;
}

/* One program with a kernel per function: y_c = f_c(x_c). */
static KProgram *math_program(Arena *a) {
    KProgram *p = kprog_new(a, "math");
    for (int c = 0; c < NCASES; c++) {
        char name[16];
        snprintf(name, sizeof name, "x%d", c);
        int bx = kprog_add_buf(p, KB_INPUT, c, KILN_F32, N, -1, arena_strdup(a, name));
        snprintf(name, sizeof name, "y%d", c);
        int by = kprog_add_buf(p, KB_OUTPUT, c, KILN_F32, N, -1, arena_strdup(a, name));
        Kernel *k = kprog_add_kernel(p, KK_ELEMENTWISE,
                                     arena_strdup(a, cases[c].name[0] == 'g' ? "gelu" : cases[c].name), N);
        snprintf(name, sizeof name, "k%d", c);
        k->name = arena_strdup(a, name);
        int s = kernel_add_stage(k, KS_MAP, 1);
        int o = kinst(k, KI_OUTER, KILN_I64, -1, -1, -1, -1);
        int e = kinst_elem(k, cases[c].op, KILN_F32, -1, kinst_load(k, bx, KILN_F32, -1, o, -1), -1, -1);
        k->insts.data[e].flag = cases[c].flag;
        kstage_store(k, s, by, o, e);
    }
    p->nparams = p->nresults = NCASES;
    return p;
}

int main(void) {
    bool verbose = getenv("KILN_TEST_VERBOSE") != NULL;
    float **x = calloc(NCASES, sizeof(float *)), **y = calloc(NCASES, sizeof(float *));
    void **bufs = calloc(2 * NCASES + 1, sizeof(void *));
    for (int c = 0; c < NCASES; c++) {
        x[c] = malloc(sizeof(float) * N);
        y[c] = malloc(sizeof(float) * N);
        make_inputs(&cases[c], x[c]);
        bufs[2 * c] = x[c], bufs[2 * c + 1] = y[c];
    }
    Arena *a = arena_new();
    KProgram *p = math_program(a);
    char err[4096] = "";
    double worst[2][NCASES];
    float at[2][NCASES];
    /* the cpu device */
    CpuCodeOptions co = {.jobs = 2};
    CpuCode *jit = cpu_code_compile(p, &co, NULL, err, sizeof err);
    CHECK(jit != NULL, "cpu: %s", err);
    if (jit && cpu_code_run_serial(jit, bufs))
        for (int c = 0; c < NCASES; c++) worst[0][c] = worst_error(&cases[c], x[c], y[c], &at[0][c]);
    cpu_code_free(jit);
    /* the CUDA C, run on the host */
    for (int c = 0; c < NCASES; c++) memset(y[c], 0, sizeof(float) * N);
    bool emu = cuda_emu_run_program(p, bufs, false, err, sizeof err);
    CHECK(emu, "cuda-emu: %s", err);
    if (emu)
        for (int c = 0; c < NCASES; c++) worst[1][c] = worst_error(&cases[c], x[c], y[c], &at[1][c]);
    if (verbose) printf("| function | cpu: max ulp (at x) | cuda: max ulp (at x) |\n| --- | --- | --- |\n");
    for (int c = 0; c < NCASES; c++) {
        const MathCase *m = &cases[c];
        if (jit)
            CHECK(worst[0][c] <= m->bound_cpu, "cpu %s: %.3g ulp at x = %.9g (bound %g)", m->name,
                  worst[0][c], at[0][c], m->bound_cpu);
        if (emu)
            CHECK(worst[1][c] <= m->bound_cuda, "cuda %s: %.3g ulp at x = %.9g (bound %g)", m->name,
                  worst[1][c], at[1][c], m->bound_cuda);
        if (verbose)
            printf("| %s | %.2f (%.9g) | %.2f (%.9g) |\n", m->name, worst[0][c], at[0][c], worst[1][c],
                   at[1][c]);
    }
    kprog_destroy(p);
    arena_free(a);
    for (int c = 0; c < NCASES; c++) free(x[c]), free(y[c]);
    free(x), free(y), free(bufs);
    printf("test_math: %d passed, %d failed\n", npass, nfail);
    return nfail ? 1 : 0;
}
