/* test_kernel.c - the kernel-IR analyses every emitter shares (ir/kernel.c).
 *
 *   - kernel_index_ranges is sound (every value the instruction takes at every
 *     (o, r), evaluated by kernel_eval_index, lies in its range) on fixed
 *     cases with negative offsets, and on 300 random index expressions, and
 *     tight where the interval arithmetic can be (o + c, o * c, o / c, o % c);
 *   - kstage_identity for every reduction, in float and integer accumulators;
 *   - kprog_verify on matmul descriptions: a right one passes; a wrong
 *     stride, a guarded load, strides past the end of B, dims that do not
 *     make the outer range and a stage that is not a sum are refused, each
 *     with a message naming the kernel;
 *   - kprog_legalise: f16/bf16 arithmetic becomes f32 plus one rounding cast
 *     (exact ops stay), silu stays one op (the emitters' accurate form); the program is then
 *     legal, stages and stores follow their values, a second pass changes
 *     nothing, and the kernel-IR interpreter gives the same results as
 *     computing each op in double and rounding once (within one rounding of
 *     the 16-bit dtype; f32 within 4 ulp).
 * Last line: "test_kernel: N passed, N failed". */
#include "ir/kernel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define OUTER(k)               kinst(k, KI_OUTER, KILN_I64, -1, -1, -1, -1)
#define INNER(k, s)            kinst(k, KI_INNER, KILN_I64, s, -1, -1, -1)
#define CI(k, st, v)           kinst_const(k, KILN_I64, st, v)
#define OP2(k, kind, st, a, b) kinst(k, kind, KILN_I64, st, a, b, -1)

static uint64_t rng = 0x9e3779b97f4a7c15ull;
static uint64_t rnd(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

/* Every value of every index instruction at every (o, r) lies in its range. */
static int unsound_values(const Kernel *k, const KRange *rg) {
    int bad = 0;
    for (int i = 0; i < k->insts.len; i++) {
        if (!rg[i].known) continue;
        int s = k->insts.data[i].stage;
        int64_t ext = s >= 0 ? k->stages.data[s].extent : 1;
        for (int64_t o = 0; o < k->outer; o++)
            for (int64_t r = 0; r < ext; r++) {
                int64_t v;
                if (kernel_eval_index(k, i, o, r, &v) && (v < rg[i].lo || v > rg[i].hi)) bad++;
            }
    }
    return bad;
}

static void test_ranges(void) {
    Arena *a = arena_new();
    KProgram *p = kprog_new(a, "ranges");
    Kernel *k = kprog_add_kernel(p, KK_ELEMENTWISE, "k", 100);
    int s = kernel_add_stage(k, KS_MAP, 7);
    int o = OUTER(k), r = INNER(k, s);
    int shifted = OP2(k, KI_IADD, -1, o, CI(k, -1, -3));                      /* o - 3: [-3, 96] */
    int times = OP2(k, KI_IMUL, -1, o, CI(k, -1, 4));                         /* [0, 396] */
    int quot = OP2(k, KI_IDIV, -1, o, CI(k, -1, 8));                          /* [0, 12] */
    int rem = OP2(k, KI_IMOD, -1, shifted, CI(k, -1, 8));                     /* [-7, 7] */
    int negq = OP2(k, KI_IDIV, -1, shifted, CI(k, -1, 8));                    /* [0, 12] (truncating) */
    int mixed = OP2(k, KI_IADD, s, OP2(k, KI_IMUL, s, quot, CI(k, s, 7)), r); /* [0, 90] */
    int big = OP2(k, KI_IMUL, -1, o, CI(k, -1, INT64_C(1) << 60));            /* overflows: unknown */
    int byzero = OP2(k, KI_IDIV, -1, o, CI(k, -1, 0));                        /* unknown */
    KRange *rg = kernel_index_ranges(k);
    struct {
        int i;
        int64_t lo, hi;
    } want[] = {{o, 0, 99},    {r, 0, 6},    {shifted, -3, 96}, {times, 0, 396},
                {quot, 0, 12}, {rem, -7, 7}, {negq, 0, 12},     {mixed, 0, 90}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++)
        CHECK(rg[want[i].i].known && rg[want[i].i].lo == want[i].lo && rg[want[i].i].hi == want[i].hi,
              "v%d: [%lld, %lld] (known %d), want [%lld, %lld]", want[i].i, (long long)rg[want[i].i].lo,
              (long long)rg[want[i].i].hi, rg[want[i].i].known, (long long)want[i].lo, (long long)want[i].hi);
    CHECK(!rg[big].known && !rg[byzero].known, "overflow or division by zero gave a range");
    CHECK(unsound_values(k, rg) == 0, "fixed cases: values outside their ranges");
    free(rg);

    /* random expressions over o and r with small constants, some negative */
    int total_bad = 0;
    for (int t = 0; t < 300; t++) {
        Kernel *q = kprog_add_kernel(p, KK_ELEMENTWISE, "q", 1 + (int64_t)(rnd() % 40));
        int st = kernel_add_stage(q, KS_MAP, 1 + (int64_t)(rnd() % 9));
        int vals[32];
        int n = 0;
        vals[n++] = OUTER(q);
        vals[n++] = INNER(q, st);
        for (int j = 0; j < 12; j++) {
            int x = vals[rnd() % (unsigned)n];
            KInstKind kind = (KInstKind)(KI_IADD + rnd() % 4);
            int64_t c = (int64_t)(rnd() % 19) - 6;
            if ((kind == KI_IDIV || kind == KI_IMOD) && c <= 0) c = 1 + (int64_t)(rnd() % 5);
            int y = rnd() % 3 ? CI(q, st, c) : vals[rnd() % (unsigned)n];
            vals[n++] = OP2(q, kind, st, x, y);
        }
        KRange *qr = kernel_index_ranges(q);
        total_bad += unsound_values(q, qr);
        free(qr);
    }
    CHECK(total_bad == 0, "random expressions: %d values outside their ranges", total_bad);
    kprog_destroy(p);
    arena_free(a);
}

static void test_identities(void) {
    KStage st = {.kind = KS_REDUCE, .acc_dtype = KILN_F32}, ist = {.kind = KS_REDUCE, .acc_dtype = KILN_I64};
    struct {
        Op op;
        double f;
        int64_t i;
    } want[] = {{OP_SUM, 0, 0},
                {OP_PROD, 1, 1},
                {OP_MAX, -INFINITY, INT64_MIN},
                {OP_ARGMAX, -INFINITY, INT64_MIN},
                {OP_MIN, INFINITY, INT64_MAX},
                {OP_ARGMIN, INFINITY, INT64_MAX}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        st.reduce = ist.reduce = want[i].op;
        double f = kstage_identity(&st).f;
        int64_t n = kstage_identity(&ist).i;
        CHECK(f == want[i].f && n == want[i].i, "%s: %g / %lld", op_info[want[i].op].name, f, (long long)n);
    }
}

/* ------------------------------------------------------------ matmul descriptions */

typedef enum { MM_RIGHT, MM_WRONG_STRIDE, MM_GUARDED, MM_PAST_END, MM_WRONG_OUTER, MM_NOT_SUM } MatmulFault;

/* out[b, m, n] = sum_k A[b, m, k] * B[k, n] (B shared by the batch), with
 * its description, spoilt as `fault` says. */
static bool matmul_verifies(MatmulFault fault, char *err, size_t errlen) {
    enum { NB = 2, M = 3, N = 5, K = 4 };
    Arena *a = arena_new();
    KProgram *p = kprog_new(a, "mm");
    int A = kprog_add_buf(p, KB_INPUT, 0, KILN_F32, NB * M * K, -1, "A");
    int B = kprog_add_buf(p, KB_INPUT, 1, KILN_F32, K * N - (fault == MM_PAST_END), -1, "B");
    int out = kprog_add_buf(p, KB_OUTPUT, 0, KILN_F32, NB * M * N, -1, "out");
    Kernel *k = kprog_add_kernel(p, KK_MATMUL, "k_mm", NB * M * N + (fault == MM_WRONG_OUTER));
    int s0 = kernel_add_stage(k, KS_REDUCE, K), s1 = kernel_add_stage(k, KS_MAP, 1);
    int o = OUTER(k), r = INNER(k, s0);
    int bm = OP2(k, KI_IDIV, -1, o, CI(k, -1, N)), n = OP2(k, KI_IMOD, -1, o, CI(k, -1, N));
    int ai = OP2(k, KI_IADD, s0, OP2(k, KI_IMUL, s0, bm, CI(k, s0, K)), r);
    int bi = OP2(k, KI_IADD, s0, OP2(k, KI_IMUL, s0, r, CI(k, s0, N)), n);
    int guard = fault == MM_GUARDED ? kinst(k, KI_ILT, KILN_BOOL, s0, r, CI(k, s0, K), -1) : -1;
    int la = kinst_load(k, A, KILN_F32, s0, ai, guard), lb = kinst_load(k, B, KILN_F32, s0, bi, -1);
    kstage_reduce(k, s0, fault == MM_NOT_SUM ? OP_MAX : OP_SUM,
                  kinst_elem(k, OP_MUL, KILN_F32, s0, la, lb, -1), KILN_F32);
    kstage_store(k, s1, out, o, kinst(k, KI_ACC, KILN_F32, s1, 0, -1, -1));
    static int64_t dims[1] = {NB}, sa[1] = {M * K}, sb[1] = {0};
    k->mm = (KMatmul){.a_buf = A,
                      .b_buf = B,
                      .batch = NB,
                      .m = M,
                      .n = N,
                      .k = K,
                      .nbatch = 1,
                      .batch_dims = dims,
                      .a_batch_stride = sa,
                      .b_batch_stride = sb,
                      .a_sm = K,
                      .a_sk = fault == MM_WRONG_STRIDE ? 2 : 1,
                      .b_sk = N,
                      .b_sn = 1};
    bool ok = kprog_verify(p, err, errlen);
    kprog_destroy(p);
    arena_free(a);
    return ok;
}

static void test_matmul_verify(void) {
    char err[512] = "";
    CHECK(matmul_verifies(MM_RIGHT, err, sizeof err), "a right description refused: %s", err);
    const char *name[] = {"",         "wrong stride", "guarded load", "strides past the end", "wrong outer",
                          "not a sum"};
    for (int f = MM_WRONG_STRIDE; f <= MM_NOT_SUM; f++) {
        err[0] = 0;
        bool refused = !matmul_verifies((MatmulFault)f, err, sizeof err);
        if (getenv("KILN_TEST_VERBOSE")) printf("%s: %s\n", name[f], err);
        CHECK(refused && strstr(err, "k_mm"), "%s: accepted (%s)", name[f], err);
    }
}

/* ------------------------------------------------------------ legalisation */

static double load_elem(KilnDType dt, const void *base, int64_t i) {
    KilnTensor t = {.dtype = dt, .data = (void *)base};
    return kiln_tensor_get(&t, i);
}

/* One kernel over x (dtype dt, 64 elements): y1 = exp(x) + x, y2 = abs(x) * x,
 * y3 = silu(x), each stored in dt; returns the program. */
static KProgram *elementwise_program(Arena *a, KilnDType dt) {
    KProgram *p = kprog_new(a, "legal");
    int x = kprog_add_buf(p, KB_INPUT, 0, dt, 64, -1, "x");
    int y[3];
    for (int i = 0; i < 3; i++) y[i] = kprog_add_buf(p, KB_OUTPUT, i, dt, 64, -1, "y");
    Kernel *k = kprog_add_kernel(p, KK_ELEMENTWISE, "k_legal", 64);
    int s = kernel_add_stage(k, KS_MAP, 1);
    int o = OUTER(k);
    int v = kinst_load(k, x, dt, -1, o, -1);
    int e = kinst_elem(k, OP_EXP, dt, -1, v, -1, -1);
    kstage_store(k, s, y[0], o, kinst_elem(k, OP_ADD, dt, -1, e, v, -1));
    int ab = kinst_elem(k, OP_ABS, dt, -1, v, -1, -1);
    kstage_store(k, s, y[1], o, kinst_elem(k, OP_MUL, dt, -1, ab, v, -1));
    kstage_store(k, s, y[2], o, kinst_elem(k, OP_SILU, dt, -1, v, -1, -1));
    return p;
}

static void test_legalise(KilnDType dt) {
    Arena *a = arena_new();
    KProgram *p = elementwise_program(a, dt);
    bool half = dt == KILN_F16 || dt == KILN_BF16;
    char err[512] = "";
    /* 16-bit arithmetic needs legalising; f32 and f64 programs are legal as made */
    bool legal = kprog_is_legal(p, err, sizeof err);
    CHECK(half ? !legal && strstr(err, "k_legal") : legal, "%s: kprog_is_legal says %d", kiln_dtype_name(dt), legal);
    kprog_legalise(p);
    CHECK(kprog_is_legal(p, err, sizeof err) && kprog_verify(p, err, sizeof err), "%s: after legalising: %s",
          kiln_dtype_name(dt), err);
    const Kernel *k = &p->kernels.data[0];
    int halves = 0, silus = 0, abs_in_dt = 0;
    for (int i = 0; i < k->insts.len; i++) {
        const KInst *in = &k->insts.data[i];
        if (in->kind != KI_ELEM) continue;
        halves += (in->dtype == KILN_F16 || in->dtype == KILN_BF16) && in->op != OP_ABS;
        silus += in->op == OP_SILU;
        abs_in_dt += in->op == OP_ABS && in->dtype == dt;
    }
    CHECK(halves == 0 && silus == 1 && abs_in_dt == 1, "%s: %d 16-bit ops, %d silu, %d abs left in %s",
          kiln_dtype_name(dt), halves, silus, abs_in_dt, kiln_dtype_name(dt));
    int n = k->insts.len;
    kprog_legalise(p);
    CHECK(p->kernels.data[0].insts.len == n, "%s: a second legalisation changed the program",
          kiln_dtype_name(dt));

    /* run it: each result against double math rounded once to dt */
    size_t es = kiln_dtype_size(dt);
    void *bufs[4];
    for (int b = 0; b < 4; b++) bufs[b] = xcalloc(64, es);
    KilnTensor xt = {.dtype = dt, .data = bufs[0]};
    for (int i = 0; i < 64; i++) kiln_tensor_set(&xt, i, (double)(i - 32) / 7.0);
    kinterp_run_kernel(p, 0, bufs);
    double worst[3] = {0, 0, 0};
    for (int i = 0; i < 64; i++) {
        double x = load_elem(dt, bufs[0], i);
        double want[3] = {ref_round_to_dtype(ref_round_to_dtype(exp(x), dt) + x, dt),
                          ref_round_to_dtype(fabs(x) * x, dt), ref_round_to_dtype(x / (1 + exp(-x)), dt)};
        for (int j = 0; j < 3; j++) {
            double got = load_elem(dt, bufs[j + 1], i), d = fabs(got - want[j]) / fmax(fabs(want[j]), 1e-30);
            if (d > worst[j]) worst[j] = d;
        }
    }
    /* one rounding of the 16-bit dtype, or a few f32 ulp for f32's silu in steps */
    double tol = dt == KILN_F16 ? 0x1p-10 : dt == KILN_BF16 ? 0x1p-7 : dt == KILN_F32 ? 0x1p-21 : 1e-15;
    for (int j = 0; j < 3; j++)
        CHECK(worst[j] <= tol, "%s: result %d off by %g (tolerance %g)", kiln_dtype_name(dt), j, worst[j],
              tol);
    CHECK(!half || worst[1] == 0, "%s: an exact op was rounded", kiln_dtype_name(dt));
    for (int b = 0; b < 4; b++) free(bufs[b]);
    kprog_destroy(p);
    arena_free(a);
}

int main(void) {
    test_ranges();
    test_identities();
    test_matmul_verify();
    test_legalise(KILN_F16);
    test_legalise(KILN_BF16);
    test_legalise(KILN_F32);
    test_legalise(KILN_F64);
    printf("test_kernel: %d passed, %d failed\n", npass, nfail);
    return nfail ? 1 : 0;
}
