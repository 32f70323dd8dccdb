/* test_interp.c - the reference interpreter against hand-built IR graphs.
 *
 * Expected numbers were computed offline with NumPy (in float64, then cast to
 * the node's dtype where it is narrower) and are hard-coded here.  Each case
 * builds a graph with ir_graph_new / ir_add_node, runs ref_run and compares
 * the result element by element. */
#include "ir/ir.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define SH(...)    ((int64_t[]){__VA_ARGS__})
#define VALS(...)  ((double[]){__VA_ARGS__})
#define INS(...)   ((int[]){__VA_ARGS__})
#define NVALS(...) (int64_t)(sizeof(VALS(__VA_ARGS__)) / sizeof(double))

/* ------------------------------------------------------------ a test case */

typedef struct {
    Arena *arena;
    IRGraph *g;
    VEC(KilnTensor) inputs;
} Case;

static Case *case_new(void) {
    Case *c = xcalloc(1, sizeof(Case));
    c->arena = arena_new();
    c->g = ir_graph_new(c->arena, "test");
    return c;
}

static void case_free(Case *c) {
    for (int i = 0; i < c->inputs.len; i++) kiln_tensor_free(&c->inputs.data[i]);
    VEC_FREE(c->inputs);
    ir_graph_destroy(c->g);
    arena_free(c->arena);
    free(c);
}

static int node(Case *c, Op op, KilnDType dt, int rank, const int64_t *shape, int nin,
                const int *in) {
    return ir_add_node(c->g, op, dt, rank, shape, nin, in, (Loc){0});
}

/* A parameter with its input tensor, filled from vals (numel of them). */
static int param(Case *c, KilnDType dt, int rank, const int64_t *shape, const double *vals) {
    int id = node(c, OP_PARAM, dt, rank, shape, 0, NULL);
    ir_node(c->g, id)->name = arena_printf(c->arena, "p%d", c->g->params.len);
    VEC_PUSH(c->g->params, id);
    KilnTensor t;
    if (!kiln_tensor_init(&t, dt, rank, shape)) abort();
    for (int64_t i = 0, n = kiln_tensor_numel(&t); i < n; i++) kiln_tensor_set(&t, i, vals[i]);
    VEC_PUSH(c->inputs, t);
    return id;
}

static int constant(Case *c, KilnDType dt, double v) {
    int id = node(c, OP_CONST, dt, 0, NULL, 0, NULL);
    ir_node(c->g, id)->value = v;
    return id;
}

static void set_ints(Case *c, int id, int n, const int64_t *v) {
    Node *nd = ir_node(c->g, id);
    nd->ints = ARENA_ARRAY(c->arena, int64_t, n);
    memcpy(nd->ints, v, sizeof(int64_t) * (size_t)n);
    nd->nints = n;
}
#define INTS(c, id, ...)                                                                          \
    set_ints(c, id, (int)(sizeof(SH(__VA_ARGS__)) / sizeof(int64_t)), SH(__VA_ARGS__))

/* Equal within tol (absolute, and relative for large values); NaN matches
 * NaN and infinities must match exactly. */
static bool close_to(double got, double want, double tol) {
    if (isnan(want)) return isnan(got);
    if (isinf(want)) return got == want;
    return fabs(got - want) <= tol * (1 + fabs(want));
}

/* Runs the graph with `result` as its only result and compares it with
 * want[0..n). */
static void check_node(Case *c, int result, const double *want, int64_t n, double tol,
                       const char *what, int line) {
    c->g->results.len = 0;
    VEC_PUSH(c->g->results, result);
    const Node *rn = ir_node(c->g, result);
    KilnTensor out;
    char err[256] = "";
    if (!ref_run(c->g, c->inputs.data, &out, err, sizeof err)) {
        nfail++;
        printf("%s:%d: FAILED: %s: ref_run: %s\n", __FILE__, line, what, err);
        return;
    }
    bool ok = out.dtype == rn->dtype && out.rank == rn->rank && kiln_tensor_numel(&out) == n;
    for (int k = 0; ok && k < out.rank; k++) ok = out.shape[k] == rn->shape[k];
    if (!ok) {
        nfail++;
        printf("%s:%d: FAILED: %s: result type %s[%lld elements], expected %lld elements\n", __FILE__, line,
               what, kiln_dtype_name(out.dtype), (long long)kiln_tensor_numel(&out), (long long)n);
    } else {
        for (int64_t i = 0; i < n; i++) {
            double got = kiln_tensor_get(&out, i);
            if (!close_to(got, want[i], tol)) {
                printf("%s:%d: FAILED: %s: element %lld is %.17g, expected %.17g\n", __FILE__,
                       line, what, (long long)i, got, want[i]);
                ok = false;
            }
        }
        if (ok)
            npass++;
        else
            nfail++;
    }
    kiln_tensor_free(&out);
}
#define EXPECT(c, id, tol, ...) check_node(c, id, VALS(__VA_ARGS__), NVALS(__VA_ARGS__), tol, #id, __LINE__)

/* exact comparison (integers, data movement, values exact in the dtype) */
#define EXACT 0.0
/* f64 transcendental results from libm against NumPy's */
#define F64TOL 1e-14

/* ------------------------------------------------------------- rounding */

static void test_rounding(void) {
    /* f16: 1 + 2^-11 is the midpoint between 1 and 1 + 2^-10 */
    ASSERT(ref_round_to_dtype(1 + 0x1p-11, KILN_F16) == 1.0);
    ASSERT(ref_round_to_dtype(1 + 3 * 0x1p-11, KILN_F16) == 1 + 0x1p-9);
    /* just above the midpoint: going through float first would round twice
     * (to the midpoint, then to even) and give 1.0 */
    ASSERT(ref_round_to_dtype(1 + 0x1p-11 + 0x1p-40, KILN_F16) == 1 + 0x1p-10);
    ASSERT(ref_round_to_dtype(-(1 + 0x1p-11 + 0x1p-40), KILN_F16) == -(1 + 0x1p-10));
    ASSERT(ref_round_to_dtype(0.1, KILN_F16) == 0.0999755859375);
    /* subnormals: the smallest is 2^-24 */
    ASSERT(ref_round_to_dtype(0x1p-25, KILN_F16) == 0.0);
    ASSERT(ref_round_to_dtype(0x1p-25 + 0x1p-40, KILN_F16) == 0x1p-24);
    ASSERT(ref_round_to_dtype(3 * 0x1p-25, KILN_F16) == 0x1p-23);
    ASSERT(ref_round_to_dtype(0x1p-30, KILN_F16) == 0.0);
    /* overflow: 65504 is the largest, 65520 the midpoint to 65536 */
    ASSERT(ref_round_to_dtype(65519.0, KILN_F16) == 65504.0);
    ASSERT(ref_round_to_dtype(65520.0, KILN_F16) == INFINITY);
    ASSERT(ref_round_to_dtype(-1e6, KILN_F16) == -INFINITY);
    ASSERT(isnan(ref_round_to_dtype(NAN, KILN_F16)));
    ASSERT(ref_round_to_dtype(INFINITY, KILN_F16) == INFINITY);

    /* bf16: 8 significant bits */
    ASSERT(ref_round_to_dtype(1 + 0x1p-8, KILN_BF16) == 1.0);
    ASSERT(ref_round_to_dtype(1 + 3 * 0x1p-8, KILN_BF16) == 1 + 0x1p-6);
    ASSERT(ref_round_to_dtype(1 + 0x1p-8 + 0x1p-40, KILN_BF16) == 1 + 0x1p-7);
    ASSERT(ref_round_to_dtype(0.1, KILN_BF16) == 0.10009765625);
    ASSERT(ref_round_to_dtype(0x1p-134, KILN_BF16) == 0.0);
    ASSERT(ref_round_to_dtype(3 * 0x1p-135, KILN_BF16) == 0x1p-133);
    ASSERT(ref_round_to_dtype(0x1.fep127 + 0x1p118, KILN_BF16) == 0x1.fep127);
    ASSERT(ref_round_to_dtype(0x1.fep127 + 0x1p119, KILN_BF16) == INFINITY);

    /* f32 and f64 */
    ASSERT(ref_round_to_dtype(1 + 0x1p-24, KILN_F32) == 1.0);
    ASSERT(ref_round_to_dtype(1 + 0x1p-24 + 0x1p-40, KILN_F32) == 1 + 0x1p-23);
    ASSERT(ref_round_to_dtype(0.1, KILN_F64) == 0.1);

    /* integers truncate toward zero, NaN -> 0, saturate; bool is != 0 */
    ASSERT(ref_round_to_dtype(-2.7, KILN_I32) == -2.0);
    ASSERT(ref_round_to_dtype(2.7, KILN_I64) == 2.0);
    ASSERT(ref_round_to_dtype(NAN, KILN_I32) == 0.0);
    ASSERT(ref_round_to_dtype(NAN, KILN_I64) == 0.0);
    ASSERT(ref_round_to_dtype(1e10, KILN_I32) == 2147483647.0);
    ASSERT(ref_round_to_dtype(-1e10, KILN_I32) == -2147483648.0);
    ASSERT(ref_round_to_dtype(0.5, KILN_BOOL) == 1.0);
    ASSERT(ref_round_to_dtype(0.0, KILN_BOOL) == 0.0);
    ASSERT(ref_round_to_dtype(NAN, KILN_BOOL) == 1.0);
}

/* ---------------------------------------------------------- elementwise */

static void test_unary(void) {
    static const struct {
        Op op;
        bool flag;
        double want[6];
    } cases[] = {
        {OP_ABS, false, {2.5, 0.5, 0.0, 0.5, 1.5, 2.5}},
        {OP_NEG, false, {2.5, 0.5, -0.0, -0.5, -1.5, -2.5}},
        {OP_EXP, false, {0.0820849986238988, 0.6065306597126334, 1.0, 1.6487212707001282,
                         4.481689070338065, 12.182493960703473}},
        {OP_LOG, false, {NAN, NAN, -INFINITY, -0.6931471805599453, 0.4054651081081644,
                         0.916290731874155}},
        {OP_SQRT, false, {NAN, NAN, 0.0, 0.7071067811865476, 1.224744871391589,
                          1.5811388300841898}},
        {OP_RSQRT, false, {NAN, NAN, INFINITY, 1.414213562373095, 0.8164965809277261,
                           0.6324555320336759}},
        {OP_SIN, false, {-0.5984721441039564, -0.47942553860420295, 0.0, 0.47942553860420295,
                         0.9974949866040544, 0.5984721441039564}},
        {OP_COS, false, {-0.8011436155469338, 0.8775825618903725, 1.0, 0.8775825618903725,
                         0.0707372016677029, -0.8011436155469338}},
        {OP_TANH, false, {-0.9866142981514303, -0.46211715726000974, 0.0, 0.46211715726000974,
                          0.9051482536448665, 0.9866142981514303}},
        {OP_SIGMOID, false, {0.07585818002124355, 0.3775406687981454, 0.5, 0.6224593312018546,
                             0.8175744761936437, 0.9241418199787566}},
        {OP_RELU, false, {0.0, 0.0, 0.0, 0.5, 1.5, 2.5}},
        {OP_GELU, false, {-0.015524163314440398, -0.15426876936299344, 0.0, 0.34573123063700656,
                          1.399789198096713, 2.4844758366855597}},
        {OP_GELU, true, {-0.015084266089998577, -0.15428599017485606, 0.0, 0.34571400982514394,
                         1.3995715769802328, 2.484915733910001}},
        {OP_SILU, false, {-0.18964545005310887, -0.1887703343990727, 0.0, 0.3112296656009273,
                          1.2263617142904655, 2.3103545499468914}},
        {OP_ERF, false, {-0.999593047982555, -0.5204998778130465, 0.0, 0.5204998778130465,
                         0.9661051464753108, 0.999593047982555}},
        {OP_FLOOR, false, {-3.0, -1.0, 0.0, 0.0, 1.0, 2.0}},
        {OP_CEIL, false, {-2.0, -0.0, 0.0, 1.0, 2.0, 3.0}},
        {OP_ROUND, false, {-2.0, -0.0, 0.0, 0.0, 2.0, 2.0}}, /* half to even */
        {OP_SIGN, false, {-1.0, -1.0, 0.0, 1.0, 1.0, 1.0}},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        Case *c = case_new();
        int x = param(c, KILN_F64, 1, SH(6), VALS(-2.5, -0.5, 0.0, 0.5, 1.5, 2.5));
        int y = node(c, cases[k].op, KILN_F64, 1, SH(6), 1, INS(x));
        ir_node(c->g, y)->flag = cases[k].flag;
        char what[64];
        snprintf(what, sizeof what, "%s%s (f64)", op_info[cases[k].op].name,
                 cases[k].flag ? " approximate" : "");
        check_node(c, y, cases[k].want, 6, F64TOL, what, __LINE__);
        case_free(c);
    }

    /* f32 results are rounded to float */
    Case *c = case_new();
    int x = param(c, KILN_F32, 1, SH(6), VALS(-2.5, -0.5, 0.0, 0.5, 1.5, 2.5));
    int e = node(c, OP_EXP, KILN_F32, 1, SH(6), 1, INS(x));
    EXPECT(c, e, EXACT, 0.08208499848842621, 0.6065306663513184, 1.0, 1.6487212181091309,
           4.481688976287842, 12.182494163513184);
    int gl = node(c, OP_GELU, KILN_F32, 1, SH(6), 1, INS(x));
    EXPECT(c, gl, EXACT, -0.015524162910878658, -0.1542687714099884, 0.0, 0.3457312285900116,
           1.3997892141342163, 2.48447585105896);
    case_free(c);

    /* round: half to even on both sides */
    c = case_new();
    x = param(c, KILN_F32, 1, SH(8), VALS(-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, 2.6));
    int r = node(c, OP_ROUND, KILN_F32, 1, SH(8), 1, INS(x));
    EXPECT(c, r, EXACT, -2, -2, -0.0, 0, 2, 2, 4, 3);
    case_free(c);

    /* sign keeps NaN */
    c = case_new();
    x = param(c, KILN_F64, 1, SH(3), VALS(NAN, -0.0, -7));
    int s = node(c, OP_SIGN, KILN_F64, 1, SH(3), 1, INS(x));
    EXPECT(c, s, EXACT, NAN, 0, -1);
    case_free(c);

    /* integer unary ops wrap at the dtype's width */
    c = case_new();
    x = param(c, KILN_I32, 1, SH(4), VALS(-2147483648.0, -5, 0, 7));
    int ab = node(c, OP_ABS, KILN_I32, 1, SH(4), 1, INS(x));
    EXPECT(c, ab, EXACT, -2147483648.0, 5, 0, 7);
    int ng = node(c, OP_NEG, KILN_I32, 1, SH(4), 1, INS(x));
    EXPECT(c, ng, EXACT, -2147483648.0, 5, 0, -7);
    int rl = node(c, OP_RELU, KILN_I32, 1, SH(4), 1, INS(x));
    EXPECT(c, rl, EXACT, 0, 0, 0, 7);
    int sg = node(c, OP_SIGN, KILN_I32, 1, SH(4), 1, INS(x));
    EXPECT(c, sg, EXACT, -1, -1, 0, 1);
    int fl = node(c, OP_FLOOR, KILN_I32, 1, SH(4), 1, INS(x));
    EXPECT(c, fl, EXACT, -2147483648.0, -5, 0, 7);
    case_free(c);
}

static void test_binary(void) {
    /* broadcasting: [2,3] with [3] and with [2,1] */
    Case *c = case_new();
    int a = param(c, KILN_F64, 2, SH(2, 3), VALS(-2, -1, 0, 1, 2, 3));
    int b = param(c, KILN_F64, 1, SH(3), VALS(0.5, -1.0, 3.0));
    int col = param(c, KILN_F64, 2, SH(2, 1), VALS(2.0, -4.0));
    int add = node(c, OP_ADD, KILN_F64, 2, SH(2, 3), 2, INS(a, b));
    EXPECT(c, add, EXACT, -1.5, -2.0, 3.0, 1.5, 1.0, 6.0);
    int sub = node(c, OP_SUB, KILN_F64, 2, SH(2, 3), 2, INS(a, col));
    EXPECT(c, sub, EXACT, -4.0, -3.0, -2.0, 5.0, 6.0, 7.0);
    int mul = node(c, OP_MUL, KILN_F64, 2, SH(2, 3), 2, INS(b, a)); /* lower rank first */
    EXPECT(c, mul, EXACT, -1.0, 1.0, 0.0, 0.5, -2.0, 9.0);
    int div = node(c, OP_DIV, KILN_F64, 2, SH(2, 3), 2, INS(a, col));
    EXPECT(c, div, EXACT, -1.0, -0.5, 0.0, -0.25, -0.5, -0.75);
    /* both operands broadcast: [2,1] op [3] -> [2,3] */
    int outer = node(c, OP_MUL, KILN_F64, 2, SH(2, 3), 2, INS(col, b));
    EXPECT(c, outer, EXACT, 1, -2, 6, -2, 4, -12);
    /* a rank-0 constant */
    int k = constant(c, KILN_F64, 10);
    int addk = node(c, OP_ADD, KILN_F64, 2, SH(2, 3), 2, INS(a, k));
    EXPECT(c, addk, EXACT, 8, 9, 10, 11, 12, 13);
    case_free(c);

    /* mod = np.remainder: the divisor's sign */
    c = case_new();
    a = param(c, KILN_F64, 1, SH(8), VALS(-7, 7, -7, 7, 5.5, -4, 4, 1));
    b = param(c, KILN_F64, 1, SH(8), VALS(3, -3, -3, 3, -2, 2, -2, 0));
    int m = node(c, OP_MOD, KILN_F64, 1, SH(8), 2, INS(a, b));
    EXPECT(c, m, EXACT, 2.0, -2.0, -1.0, 1.0, -0.5, 0.0, -0.0, NAN);
    case_free(c);
    c = case_new();
    a = param(c, KILN_I64, 1, SH(7), VALS(-7, 7, -7, 7, 5, -5, 9));
    b = param(c, KILN_I64, 1, SH(7), VALS(3, -3, -3, 3, 2, -2, 0));
    m = node(c, OP_MOD, KILN_I64, 1, SH(7), 2, INS(a, b));
    EXPECT(c, m, EXACT, 2, -2, -1, 1, 1, -1, 0);
    case_free(c);

    /* pow: floats through pow(), ints exact with wrap-around */
    c = case_new();
    a = param(c, KILN_F64, 1, SH(4), VALS(2, -2, 9, 0.5));
    b = param(c, KILN_F64, 1, SH(4), VALS(0.5, 3, 0.5, -2));
    int pw = node(c, OP_POW, KILN_F64, 1, SH(4), 2, INS(a, b));
    EXPECT(c, pw, F64TOL, 1.4142135623730951, -8.0, 3.0, 4.0);
    case_free(c);
    c = case_new();
    a = param(c, KILN_I32, 1, SH(8), VALS(2, 3, -2, 1, -1, -1, 2, 3));
    b = param(c, KILN_I32, 1, SH(8), VALS(10, 3, 3, -2, -3, -4, -1, 21));
    pw = node(c, OP_POW, KILN_I32, 1, SH(8), 2, INS(a, b));
    EXPECT(c, pw, EXACT, 1024, 27, -8, 1, -1, 1, 0, 1870418611); /* 3**21 wraps in i32 */
    case_free(c);
    c = case_new();
    a = param(c, KILN_I64, 1, SH(1), VALS(3));
    b = param(c, KILN_I64, 1, SH(1), VALS(41));
    pw = node(c, OP_POW, KILN_I64, 1, SH(1), 2, INS(a, b));
    EXPECT(c, pw, EXACT, -420491770248316829.0); /* NumPy: np.int64(3)**41 */
    case_free(c);

    /* maximum / minimum propagate NaN */
    c = case_new();
    a = param(c, KILN_F64, 1, SH(4), VALS(1, NAN, -3, 2));
    b = param(c, KILN_F64, 1, SH(4), VALS(2, 1, NAN, -5));
    int mx = node(c, OP_MAXIMUM, KILN_F64, 1, SH(4), 2, INS(a, b));
    EXPECT(c, mx, EXACT, 2, NAN, NAN, 2);
    int mn = node(c, OP_MINIMUM, KILN_F64, 1, SH(4), 2, INS(a, b));
    EXPECT(c, mn, EXACT, 1, NAN, NAN, -5);
    case_free(c);

    /* i32 arithmetic wraps */
    c = case_new();
    a = param(c, KILN_I32, 1, SH(3), VALS(2147483647.0, -2147483648.0, 65536));
    b = param(c, KILN_I32, 1, SH(3), VALS(1, 1, 65536));
    add = node(c, OP_ADD, KILN_I32, 1, SH(3), 2, INS(a, b));
    EXPECT(c, add, EXACT, -2147483648.0, -2147483647.0, 131072);
    sub = node(c, OP_SUB, KILN_I32, 1, SH(3), 2, INS(b, a));
    EXPECT(c, sub, EXACT, -2147483646.0, -2147483647.0, 0);
    mul = node(c, OP_MUL, KILN_I32, 1, SH(3), 2, INS(a, b));
    EXPECT(c, mul, EXACT, 2147483647.0, -2147483648.0, 0); /* 2^32 wraps to 0 */
    case_free(c);
}

static void test_compare_logic_where_cast(void) {
    Case *c = case_new();
    int a = param(c, KILN_F32, 1, SH(4), VALS(1, 2, 3, NAN));
    int b = param(c, KILN_F32, 1, SH(1), VALS(2));
    static const struct {
        Op op;
        double want[4];
    } cmp[] = {
        {OP_EQ, {0, 1, 0, 0}}, {OP_NE, {1, 0, 1, 1}}, {OP_LT, {1, 0, 0, 0}},
        {OP_LE, {1, 1, 0, 0}}, {OP_GT, {0, 0, 1, 0}}, {OP_GE, {0, 1, 1, 0}},
    };
    for (size_t k = 0; k < sizeof cmp / sizeof cmp[0]; k++) {
        int r = node(c, cmp[k].op, KILN_BOOL, 1, SH(4), 2, INS(a, b));
        check_node(c, r, cmp[k].want, 4, EXACT, op_info[cmp[k].op].name, __LINE__);
    }
    case_free(c);

    c = case_new();
    int p = param(c, KILN_BOOL, 1, SH(4), VALS(0, 0, 1, 1));
    int q = param(c, KILN_BOOL, 1, SH(4), VALS(0, 1, 0, 1));
    int an = node(c, OP_AND, KILN_BOOL, 1, SH(4), 2, INS(p, q));
    EXPECT(c, an, EXACT, 0, 0, 0, 1);
    int orr = node(c, OP_OR, KILN_BOOL, 1, SH(4), 2, INS(p, q));
    EXPECT(c, orr, EXACT, 0, 1, 1, 1);
    int nt = node(c, OP_NOT, KILN_BOOL, 1, SH(4), 1, INS(q));
    EXPECT(c, nt, EXACT, 1, 0, 1, 0);
    case_free(c);

    /* where(cond[2,1], a[2,3], scalar) */
    c = case_new();
    int cond = param(c, KILN_BOOL, 2, SH(2, 1), VALS(1, 0));
    a = param(c, KILN_F32, 2, SH(2, 3), VALS(1, 2, 3, 4, 5, 6));
    int z = constant(c, KILN_F32, -1);
    int w = node(c, OP_WHERE, KILN_F32, 2, SH(2, 3), 3, INS(cond, a, z));
    EXPECT(c, w, EXACT, 1, 2, 3, -1, -1, -1);
    case_free(c);

    /* casts */
    c = case_new();
    a = param(c, KILN_F64, 1, SH(6), VALS(-2.7, 2.7, NAN, 0.1, 65520, 1 + 0x1p-11 + 0x1p-40));
    int ci = node(c, OP_CAST, KILN_I32, 1, SH(6), 1, INS(a));
    EXPECT(c, ci, EXACT, -2, 2, 0, 0, 65520, 1);
    int ch = node(c, OP_CAST, KILN_F16, 1, SH(6), 1, INS(a));
    EXPECT(c, ch, EXACT, -2.69921875, 2.69921875, NAN, 0.0999755859375, INFINITY, 1 + 0x1p-10);
    int cb = node(c, OP_CAST, KILN_BF16, 1, SH(6), 1, INS(a));
    EXPECT(c, cb, EXACT, -2.703125, 2.703125, NAN, 0.10009765625, 65536, 1.0);
    int cl = node(c, OP_CAST, KILN_BOOL, 1, SH(6), 1, INS(a));
    EXPECT(c, cl, EXACT, 1, 1, 1, 1, 1, 1);
    int cf = node(c, OP_CAST, KILN_F32, 1, SH(6), 1, INS(a));
    EXPECT(c, cf, EXACT, (float)-2.7, (float)2.7, NAN, (float)0.1, 65520, 1 + 0x1p-11);
    case_free(c);
    c = case_new();
    a = param(c, KILN_BOOL, 1, SH(2), VALS(1, 0));
    int bf = node(c, OP_CAST, KILN_F32, 1, SH(2), 1, INS(a));
    EXPECT(c, bf, EXACT, 1, 0);
    int bi = node(c, OP_CAST, KILN_I64, 1, SH(2), 1, INS(a));
    EXPECT(c, bi, EXACT, 1, 0);
    case_free(c);
}

/* f16 arithmetic rounds after every op, and results come back as f16 bits */
static void test_half(void) {
    Case *c = case_new();
    int x = param(c, KILN_F32, 1, SH(4), VALS(2048, 2048, 1, 0.1));
    int h = node(c, OP_CAST, KILN_F16, 1, SH(4), 1, INS(x));
    int y = param(c, KILN_F16, 1, SH(4), VALS(1, 3, 1, 3));
    int s = node(c, OP_ADD, KILN_F16, 1, SH(4), 2, INS(h, y));
    /* 2049 and 2051 are midpoints: to even; 0.0999755859375 + 3 rounds */
    EXPECT(c, s, EXACT, 2048, 2052, 2, 3.099609375);
    int m = node(c, OP_MUL, KILN_F16, 1, SH(4), 2, INS(h, y));
    EXPECT(c, m, EXACT, 2048, 6144, 1, 0.2998046875);
    case_free(c);

    c = case_new();
    x = param(c, KILN_F16, 1, SH(1), VALS(1));
    int e = node(c, OP_EXP, KILN_F16, 1, SH(1), 1, INS(x));
    c->g->results.len = 0;
    VEC_PUSH(c->g->results, e);
    KilnTensor out;
    char err[256];
    ASSERT(ref_run(c->g, c->inputs.data, &out, err, sizeof err));
    ASSERT(out.dtype == KILN_F16 && ((uint16_t *)out.data)[0] == 0x4170); /* 2.71875 */
    kiln_tensor_free(&out);
    case_free(c);

    c = case_new();
    x = param(c, KILN_BF16, 1, SH(2), VALS(1, 256));
    y = param(c, KILN_BF16, 1, SH(2), VALS(0x1p-8, 1));
    s = node(c, OP_ADD, KILN_BF16, 1, SH(2), 2, INS(x, y));
    EXPECT(c, s, EXACT, 1, 256); /* both midpoints, both to even */
    c->g->results.len = 0;
    VEC_PUSH(c->g->results, s);
    ASSERT(ref_run(c->g, c->inputs.data, &out, err, sizeof err));
    ASSERT(((uint16_t *)out.data)[0] == 0x3f80 && ((uint16_t *)out.data)[1] == 0x4380);
    kiln_tensor_free(&out);
    case_free(c);
}

/* ---------------------------------------------------------- reductions */

static void test_reduce(void) {
    /* r = arange(24).reshape(2,3,4), every third element negated */
    static const double r[24] = {-0.0, 1,   2,   -3,  4,  5,  -6,  7,  8,  -9,  10, 11,
                                 -12,  13,  14,  -15, 16, 17, -18, 19, 20, -21, 22, 23};
    Case *c = case_new();
    int x = param(c, KILN_F64, 3, SH(2, 3, 4), r);
    int s = node(c, OP_SUM, KILN_F64, 2, SH(2, 4), 1, INS(x));
    INTS(c, s, 1);
    EXPECT(c, s, EXACT, 12, -3, 6, 15, 24, 9, 18, 27);
    int mean = node(c, OP_MEAN, KILN_F64, 3, SH(1, 3, 1), 1, INS(x));
    INTS(c, mean, 0, 2);
    ir_node(c->g, mean)->flag = true; /* keepdims */
    EXPECT(c, mean, EXACT, 0.0, 5.5, 8.0);
    int mx = node(c, OP_MAX, KILN_F64, 2, SH(2, 3), 1, INS(x));
    INTS(c, mx, 2);
    EXPECT(c, mx, EXACT, 2, 7, 11, 14, 19, 23);
    int mn = node(c, OP_MIN, KILN_F64, 2, SH(3, 4), 1, INS(x));
    INTS(c, mn, 0);
    EXPECT(c, mn, EXACT, -12, 1, 2, -15, 4, 5, -18, 7, 8, -21, 10, 11);
    int all = node(c, OP_SUM, KILN_F64, 0, NULL, 1, INS(x));
    INTS(c, all, 0, 1, 2);
    EXPECT(c, all, EXACT, 108);
    int allk = node(c, OP_MAX, KILN_F64, 3, SH(1, 1, 1), 1, INS(x));
    INTS(c, allk, 0, 1, 2);
    ir_node(c->g, allk)->flag = true;
    EXPECT(c, allk, EXACT, 23);
    int none = node(c, OP_SUM, KILN_F64, 3, SH(2, 3, 4), 1, INS(x)); /* axis=[]: identity */
    check_node(c, none, r, 24, EXACT, "sum over no axes", __LINE__);
    int amx = node(c, OP_ARGMAX, KILN_I64, 2, SH(2, 4), 1, INS(x));
    INTS(c, amx, 1);
    EXPECT(c, amx, EXACT, 2, 1, 2, 2, 2, 1, 2, 2);
    int amn = node(c, OP_ARGMIN, KILN_I64, 2, SH(2, 3), 1, INS(x));
    INTS(c, amn, 2);
    EXPECT(c, amn, EXACT, 3, 2, 1, 3, 2, 1);
    int amxk = node(c, OP_ARGMAX, KILN_I64, 3, SH(2, 1, 4), 1, INS(x));
    INTS(c, amxk, 1);
    ir_node(c->g, amxk)->flag = true;
    EXPECT(c, amxk, EXACT, 2, 1, 2, 2, 2, 1, 2, 2);
    int flat = node(c, OP_ARGMAX, KILN_I64, 0, NULL, 1, INS(x));
    EXPECT(c, flat, EXACT, 23);
    int flatn = node(c, OP_ARGMIN, KILN_I64, 0, NULL, 1, INS(x));
    EXPECT(c, flatn, EXACT, 21);
    case_free(c);

    /* prod, over the last two axes of a [2,3,2] */
    c = case_new();
    x = param(c, KILN_F32, 3, SH(2, 3, 2),
              VALS(-0.0, 0.25, 1, 1.25, 2, -2.25, -3, 3.25, 4, 4.25, 5, -5.25));
    int p = node(c, OP_PROD, KILN_F32, 1, SH(2), 1, INS(x));
    INTS(c, p, 1, 2);
    EXPECT(c, p, EXACT, 0.0, 4350.9375);
    case_free(c);

    /* ties: the first occurrence; NaN counts as the extreme and propagates */
    c = case_new();
    x = param(c, KILN_F32, 2, SH(2, 4), VALS(1, 3, 3, 2, 1, NAN, 5, NAN));
    amx = node(c, OP_ARGMAX, KILN_I64, 1, SH(2), 1, INS(x));
    INTS(c, amx, 1);
    EXPECT(c, amx, EXACT, 1, 1);
    amn = node(c, OP_ARGMIN, KILN_I64, 1, SH(2), 1, INS(x));
    INTS(c, amn, 1);
    EXPECT(c, amn, EXACT, 0, 1);
    mx = node(c, OP_MAX, KILN_F32, 1, SH(2), 1, INS(x));
    INTS(c, mx, 1);
    EXPECT(c, mx, EXACT, 3, NAN);
    mn = node(c, OP_MIN, KILN_F32, 1, SH(4), 1, INS(x));
    INTS(c, mn, 0);
    EXPECT(c, mn, EXACT, 1, NAN, 3, NAN);
    flat = node(c, OP_ARGMIN, KILN_I64, 0, NULL, 1, INS(x));
    EXPECT(c, flat, EXACT, 5);
    case_free(c);

    /* integer sums and products run in int64 and wrap to the dtype */
    c = case_new();
    x = param(c, KILN_I32, 2, SH(2, 2), VALS(2147483647.0, 1, 65536, 65536));
    s = node(c, OP_SUM, KILN_I32, 1, SH(2), 1, INS(x));
    INTS(c, s, 1);
    EXPECT(c, s, EXACT, -2147483648.0, 131072);
    p = node(c, OP_PROD, KILN_I32, 1, SH(2), 1, INS(x));
    INTS(c, p, 1);
    EXPECT(c, p, EXACT, 2147483647.0, 0);
    int s64 = node(c, OP_SUM, KILN_I64, 0, NULL, 1, INS(x));
    INTS(c, s64, 0, 1);
    EXPECT(c, s64, EXACT, 2147483647.0 + 1 + 131072);
    case_free(c);
}

/* ------------------------------------------------------- data movement */

static void test_shape_ops(void) {
    double t[24];
    for (int i = 0; i < 24; i++) t[i] = i;
    Case *c = case_new();
    int x = param(c, KILN_F32, 3, SH(2, 3, 4), t);
    int rs = node(c, OP_RESHAPE, KILN_F32, 2, SH(4, 6), 1, INS(x));
    check_node(c, rs, t, 24, EXACT, "reshape", __LINE__);
    int tr = node(c, OP_TRANSPOSE, KILN_F32, 3, SH(4, 2, 3), 1, INS(x));
    INTS(c, tr, 2, 0, 1);
    EXPECT(c, tr, EXACT, 0, 4, 8, 12, 16, 20, 1, 5, 9, 13, 17, 21, 2, 6, 10, 14, 18, 22, 3, 7,
           11, 15, 19, 23);
    int sl = node(c, OP_SLICE, KILN_F32, 3, SH(1, 2, 2), 1, INS(x)); /* t[1:2, 0:3:2, 1:4:2] */
    INTS(c, sl, 1, 1, 0, 2, 1, 2);
    EXPECT(c, sl, EXACT, 13, 15, 21, 23);
    case_free(c);

    c = case_new();
    x = param(c, KILN_F32, 2, SH(2, 1), VALS(1, 2));
    int bc = node(c, OP_BROADCAST, KILN_F32, 3, SH(2, 2, 3), 1, INS(x));
    EXPECT(c, bc, EXACT, 1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2);
    case_free(c);

    c = case_new();
    x = param(c, KILN_F32, 2, SH(2, 3), VALS(0, 1, 2, 3, 4, 5));
    int pd = node(c, OP_PAD, KILN_F32, 2, SH(3, 5), 1, INS(x));
    INTS(c, pd, 1, 0, 0, 2);
    ir_node(c->g, pd)->value = -1;
    EXPECT(c, pd, EXACT, -1, -1, -1, -1, -1, 0, 1, 2, -1, -1, 3, 4, 5, -1, -1);
    case_free(c);

    c = case_new();
    int a = param(c, KILN_I32, 2, SH(2, 1), VALS(1, 2));
    int b = param(c, KILN_I32, 2, SH(2, 2), VALS(3, 4, 5, 6));
    int d = param(c, KILN_I32, 2, SH(2, 1), VALS(7, 8));
    int cc = node(c, OP_CONCAT, KILN_I32, 2, SH(2, 4), 3, INS(a, b, d));
    INTS(c, cc, 1);
    EXPECT(c, cc, EXACT, 1, 3, 4, 7, 2, 5, 6, 8);
    int c0 = node(c, OP_CONCAT, KILN_I32, 2, SH(4, 1), 2, INS(a, d));
    INTS(c, c0, 0);
    EXPECT(c, c0, EXACT, 1, 2, 7, 8);
    case_free(c);
}

static void test_create(void) {
    Case *c = case_new();
    int f = node(c, OP_FULL, KILN_F16, 2, SH(2, 2), 0, NULL);
    ir_node(c->g, f)->value = 0.1;
    EXPECT(c, f, EXACT, 0.0999755859375, 0.0999755859375, 0.0999755859375, 0.0999755859375);
    int io = node(c, OP_IOTA, KILN_I64, 1, SH(5), 0, NULL);
    EXPECT(c, io, EXACT, 0, 1, 2, 3, 4);
    int iof = node(c, OP_IOTA, KILN_F32, 1, SH(3), 0, NULL);
    EXPECT(c, iof, EXACT, 0, 1, 2);
    int k = constant(c, KILN_I32, 7);
    EXPECT(c, k, EXACT, 7);
    case_free(c);
}

/* ------------------------------------------------------------- nn ops */

static void test_matmul(void) {
    /* A [2,1,2,3] @ B [3,3,2] -> [2,3,2,2]: batch dims broadcast */
    double av[12], bv[18];
    for (int i = 0; i < 12; i++) av[i] = i - 5;
    for (int i = 0; i < 18; i++) bv[i] = i * 0.5 - 2;
    Case *c = case_new();
    int a = param(c, KILN_F32, 4, SH(2, 1, 2, 3), av);
    int b = param(c, KILN_F32, 3, SH(3, 3, 2), bv);
    int m = node(c, OP_MATMUL, KILN_F32, 4, SH(2, 3, 2, 2), 2, INS(a, b));
    EXPECT(c, m, EXACT, 14.0, 8.0, 5.0, 3.5, -22.0, -28.0, -4.0, -5.5, -58.0, -64.0, -13.0,
           -14.5, -4.0, -1.0, -13.0, -5.5, 14.0, 17.0, 32.0, 39.5, 32.0, 35.0, 77.0, 84.5);
    case_free(c);

    /* plain 2-D, integers */
    c = case_new();
    a = param(c, KILN_I64, 2, SH(2, 2), VALS(1, 2, 3, 4));
    b = param(c, KILN_I64, 2, SH(2, 3), VALS(5, 6, 7, 8, 9, 10));
    m = node(c, OP_MATMUL, KILN_I64, 2, SH(2, 3), 2, INS(a, b));
    EXPECT(c, m, EXACT, 21, 24, 27, 47, 54, 61);
    case_free(c);
}

static void test_normalize(void) {
    static const double s[6] = {1, 2, 3, -1, 0, 4};
    Case *c = case_new();
    int x = param(c, KILN_F64, 2, SH(2, 3), s);
    int sm = node(c, OP_SOFTMAX, KILN_F64, 2, SH(2, 3), 1, INS(x));
    INTS(c, sm, 1);
    EXPECT(c, sm, F64TOL, 0.09003057317038043, 0.24472847105479767, 0.6652409557748218,
           0.006573263185309083, 0.0178679818703045, 0.9755587549443865);
    int sm0 = node(c, OP_SOFTMAX, KILN_F64, 2, SH(2, 3), 1, INS(x));
    INTS(c, sm0, 0);
    EXPECT(c, sm0, F64TOL, 0.8807970779778825, 0.8807970779778825, 0.26894142136999516,
           0.11920292202211755, 0.11920292202211755, 0.7310585786300049);
    int ls = node(c, OP_LOG_SOFTMAX, KILN_F64, 2, SH(2, 3), 1, INS(x));
    INTS(c, ls, -1);
    EXPECT(c, ls, F64TOL, -2.4076059644443806, -1.4076059644443801, -0.40760596444438046,
           -5.024744890138822, -4.024744890138822, -0.024744890138822577);
    int g = param(c, KILN_F64, 1, SH(3), VALS(1.0, 2.0, -0.5));
    int be = param(c, KILN_F64, 1, SH(3), VALS(0.1, 0.0, -0.2));
    int ln = node(c, OP_LAYERNORM, KILN_F64, 2, SH(2, 3), 3, INS(x, g, be));
    INTS(c, ln, 1);
    ir_node(c->g, ln)->value = 1e-5;
    EXPECT(c, ln, F64TOL, -1.1247356859083901, 0.0, -0.8123678429541952, -0.8258191078240388,
           -0.9258191078240388, -0.8943643308680291);
    int g0 = param(c, KILN_F64, 1, SH(2), VALS(0.5, -1.0));
    int b0 = param(c, KILN_F64, 1, SH(2), VALS(0, 0));
    int ln0 = node(c, OP_LAYERNORM, KILN_F64, 2, SH(2, 3), 3, INS(x, g0, b0));
    INTS(c, ln0, 0);
    ir_node(c->g, ln0)->value = 1e-5;
    EXPECT(c, ln0, F64TOL, 0.4999975000187499, 0.4999975000187499, -0.49999000029998997,
           0.9999950000374997, 0.9999950000374997, -0.9999800005999799);
    int rms = node(c, OP_RMSNORM, KILN_F64, 2, SH(2, 3), 2, INS(x, g));
    INTS(c, rms, 1);
    ir_node(c->g, rms)->value = 1e-6;
    EXPECT(c, rms, F64TOL, 0.4629100002887783, 1.8516400011551133, -0.6943650004331675,
           -0.42008398814217035, 0.0, -0.8401679762843407);
    case_free(c);

    /* softmax stays finite on large inputs (the max is subtracted) */
    c = case_new();
    x = param(c, KILN_F32, 1, SH(2), VALS(1000, 1000));
    sm = node(c, OP_SOFTMAX, KILN_F32, 1, SH(2), 1, INS(x));
    INTS(c, sm, 0);
    EXPECT(c, sm, EXACT, 0.5, 0.5);
    case_free(c);
}

static void test_conv_pool(void) {
    /* x [1,4,5,5], w [2,2,3,3], groups 2, stride (2,1), padding (1,2),
     * dilation (2,1), bias; expected from a NumPy pad + strided-slice
     * formulation, independent of the loop here. */
    double xv[100], wv[36];
    for (int i = 0; i < 100; i++) xv[i] = i % 7 - 3;
    for (int i = 0; i < 36; i++) wv[i] = i % 5 - 2;
    Case *c = case_new();
    int x = param(c, KILN_F32, 4, SH(1, 4, 5, 5), xv);
    int w = param(c, KILN_F32, 4, SH(2, 2, 3, 3), wv);
    int b = param(c, KILN_F32, 1, SH(2), VALS(0.5, -1.0));
    int cv = node(c, OP_CONV2D, KILN_F32, 4, SH(1, 2, 2, 7), 3, INS(x, w, b));
    INTS(c, cv, 2, 1, 1, 2, 2, 1, 2);
    EXPECT(c, cv, EXACT, -7.5, -5.5, 11.5, 5.5, 13.5, 3.5, -0.5, 9.5, 6.5, -16.5, -16.5, -2.5,
           7.5, 10.5, -3.0, 10.0, -9.0, -12.0, -15.0, -6.0, 11.0, -8.0, 10.0, 4.0, 12.0, -1.0,
           -5.0, -4.0);
    case_free(c);

    /* no bias, 1x1 kernel, stride 1: a per-pixel channel mix */
    c = case_new();
    x = param(c, KILN_F32, 4, SH(1, 2, 1, 2), VALS(1, 2, 3, 4));
    w = param(c, KILN_F32, 4, SH(1, 2, 1, 1), VALS(10, 100));
    cv = node(c, OP_CONV2D, KILN_F32, 4, SH(1, 1, 1, 2), 2, INS(x, w));
    INTS(c, cv, 1, 1, 0, 0, 1, 1, 1);
    EXPECT(c, cv, EXACT, 310, 420);
    case_free(c);

    double pv[25];
    for (int i = 0; i < 25; i++) pv[i] = (i * 7) % 11 - 5;
    c = case_new();
    x = param(c, KILN_F32, 4, SH(1, 1, 5, 5), pv);
    int mp = node(c, OP_MAXPOOL2D, KILN_F32, 4, SH(1, 1, 3, 3), 1, INS(x));
    INTS(c, mp, 3, 3, 2, 2, 1, 1);
    EXPECT(c, mp, EXACT, 4.0, 5.0, 5.0, 4.0, 4.0, 5.0, 3.0, 4.0, 2.0);
    /* the top-left 4x4 corner, through a slice */
    int corner = node(c, OP_SLICE, KILN_F32, 4, SH(1, 1, 4, 4), 1, INS(x));
    INTS(c, corner, 0, 1, 0, 1, 0, 1, 0, 1);
    int ap = node(c, OP_AVGPOOL2D, KILN_F32, 4, SH(1, 1, 3, 3), 1, INS(corner));
    INTS(c, ap, 2, 2, 2, 2, 1, 1);
    EXPECT(c, ap, EXACT, -1.25, 0.0, 1.25, -1.0, 0.25, -1.5, 0.25, 0.25, 0.0);
    case_free(c);

    /* max pooling of all-negative values: the -inf padding never wins */
    c = case_new();
    x = param(c, KILN_F32, 4, SH(1, 1, 2, 2), VALS(-5, -6, -7, -8));
    mp = node(c, OP_MAXPOOL2D, KILN_F32, 4, SH(1, 1, 2, 2), 1, INS(x));
    INTS(c, mp, 2, 2, 2, 2, 1, 1);
    EXPECT(c, mp, EXACT, -5, -6, -7, -8);
    case_free(c);
}

/* ------------------------------------------------ whole-graph behaviour */

static void test_graph(void) {
    /* a chain with a value used twice by one node, an intermediate that is
     * also a result, a param as a result, and a dead node */
    Case *c = case_new();
    int x = param(c, KILN_F32, 1, SH(3), VALS(1, 2, 3));
    int sq = node(c, OP_MUL, KILN_F32, 1, SH(3), 2, INS(x, x));
    int dead = node(c, OP_EXP, KILN_F32, 1, SH(3), 1, INS(sq));
    (void)dead;
    int one = constant(c, KILN_F32, 1);
    int y = node(c, OP_ADD, KILN_F32, 1, SH(3), 2, INS(sq, one));
    int z = node(c, OP_SUM, KILN_F32, 0, NULL, 1, INS(y));
    INTS(c, z, 0);
    VEC_PUSH(c->g->results, z);
    VEC_PUSH(c->g->results, y);
    VEC_PUSH(c->g->results, x);
    VEC_PUSH(c->g->results, y);
    KilnTensor out[4];
    char err[256];
    bool ok = ref_run(c->g, c->inputs.data, out, err, sizeof err);
    ASSERT(ok);
    if (ok) {
        ASSERT(out[0].rank == 0 && kiln_tensor_get(&out[0], 0) == 17);
        ASSERT(out[1].rank == 1 && out[1].shape[0] == 3);
        ASSERT(kiln_tensor_get(&out[1], 0) == 2 && kiln_tensor_get(&out[1], 1) == 5 &&
               kiln_tensor_get(&out[1], 2) == 10);
        ASSERT(kiln_tensor_get(&out[2], 2) == 3);
        ASSERT(kiln_tensor_get(&out[3], 2) == 10 && out[3].data != out[1].data);
        for (int i = 0; i < 4; i++) kiln_tensor_free(&out[i]);
    }
    case_free(c);

    /* empty tensors run */
    c = case_new();
    x = param(c, KILN_F32, 2, SH(0, 3), NULL);
    int e = node(c, OP_EXP, KILN_F32, 2, SH(0, 3), 1, INS(x));
    check_node(c, e, NULL, 0, EXACT, "exp of an empty tensor", __LINE__);
    int s = node(c, OP_SUM, KILN_F32, 1, SH(3), 1, INS(x));
    INTS(c, s, 0);
    EXPECT(c, s, EXACT, 0, 0, 0);
    case_free(c);

    /* a value too large for the host is an error, not a crash */
    c = case_new();
    int big = node(c, OP_FULL, KILN_F32, 2, SH(INT64_C(1) << 31, INT64_C(1) << 31), 0, NULL);
    int sb = node(c, OP_SUM, KILN_F32, 0, NULL, 1, INS(big));
    VEC_PUSH(c->g->results, sb);
    err[0] = 0;
    ASSERT(!ref_run(c->g, c->inputs.data, out, err, sizeof err));
    ASSERT(strstr(err, "too large") != NULL);
    case_free(c);

    /* a symbolic graph is refused */
    c = case_new();
    Dim bdim = ir_sym_named(c->g, "B");
    int sym = node(c, OP_FULL, KILN_F32, 1, &bdim, 0, NULL);
    VEC_PUSH(c->g->results, sym);
    err[0] = 0;
    ASSERT(!ref_run(c->g, c->inputs.data, out, err, sizeof err));
    ASSERT(strstr(err, "symbolic") != NULL);
    case_free(c);
}

int main(void) {
    test_rounding();
    test_unary();
    test_binary();
    test_compare_logic_where_cast();
    test_half();
    test_reduce();
    test_shape_ops();
    test_create();
    test_matmul();
    test_normalize();
    test_conv_pool();
    test_graph();
    printf("test_interp: %d passed, %d failed\n", npass, nfail);
    return nfail ? 1 : 0;
}
