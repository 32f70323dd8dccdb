/* test_passes.c - every graph pass on small programs.
 *
 * Each case parses a kiln program (or builds IR by hand), runs one pass or
 * a pipeline through passes_run, and checks two things:
 *   - the IR after the pass: which ops remain, how many nodes;
 *   - the numbers: the reference interpreter on the graph before and after,
 *     same seeded inputs (with -0.0, NaN and infinities planted in every
 *     float input), bit for bit for the exact passes, within a stated
 *     tolerance for decompose and precision.
 * Ends with the line "test_passes: N passed, N failed". */
#include "app/app.h"
#include "passes/pass.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* ------------------------------------------------------------ harness */

static Arena *arena;
static bool quiet; /* no detail for disagreements a test expects */
static VEC(IRGraph *) graphs; /* every graph made here, destroyed at the end */

static IRGraph *track(IRGraph *g) {
    for (int i = 0; g && i < graphs.len; i++)
        if (graphs.data[i] == g) return g;
    if (g) VEC_PUSH(graphs, g);
    return g;
}

/* Builds graph number `index` of a program text with dims bound ("B=2 T=3");
 * NULL when the program has fewer graphs. */
static IRGraph *build_index(const char *text, int index, const char *dims) {
    Source *src = ARENA_NEW(arena, Source);
    src->path = "test";
    src->text = arena_strdup(arena, text);
    src->len = strlen(text);
    DiagList diags = {0};
    Program prog;
    IRGraph *g = NULL;
    DimBinding binds[8];
    int nb = 0;
    /* dims: "B=2 T=3" */
    for (const char *p = dims ? dims : ""; *p && nb < 8;) {
        const char *eq = strchr(p, '=');
        if (!eq) break;
        binds[nb].name = arena_strndup(arena, p, (size_t)(eq - p));
        binds[nb].size = strtoll(eq + 1, (char **)&p, 10);
        nb++;
        while (*p == ' ') p++;
    }
    if (parse_program(arena, src, &diags, &prog)) {
        if (index >= prog.ngraphs) {
            diag_clear(&diags);
            return NULL;
        }
        g = track(ir_build(arena, &prog, index, binds, nb, &diags));
    }
    if (!g) {
        printf("could not build:\n%s\n", text);
        diag_print(&diags, stdout);
    }
    diag_clear(&diags);
    return g;
}

static IRGraph *build(const char *text) { return build_index(text, 0, NULL); }

static PassOptions options(const char *passes) {
    PassOptions o = {.opt_level = 2, .passes = passes};
    return o;
}

/* Runs `opt` on g; NULL (and a message) on failure. */
static IRGraph *run_with(IRGraph *g, const PassOptions *opt) {
    char err[512] = "";
    IRGraph *r = NULL;
    if (g) passes_run(arena, g, opt, &r, err, sizeof err);
    if (g && !r) printf("passes_run failed: %s\n", err);
    return track(r);
}

static IRGraph *run(IRGraph *g, const char *passes) {
    PassOptions o = options(passes);
    return run_with(g, &o);
}

static int count_op(const IRGraph *g, Op op) {
    int n = 0;
    for (int i = 0; g && i < g->nodes.len; i++) n += ir_node(g, i)->op == op;
    return n;
}

static const Node *result_node(const IRGraph *g, int i) { return ir_node(g, g->results.data[i]); }

/* tensor_fill_random's f32 path (no kiln_tensor_set per element) gives
 * the f64 values rounded: the values every other dtype's path is made of;
 * its portable and AVX-512 loops (16 at a time, then the rest) agree. */
static void test_random_fill(void) {
    int64_t shape[1] = {1001};
    KilnTensor f, d;
    kiln_tensor_init(&f, KILN_F32, 1, shape);
    kiln_tensor_init(&d, KILN_F64, 1, shape);
    tensor_fill_random(&f, 42);
    tensor_fill_random(&d, 42);
    int64_t bad = 0;
    for (int64_t i = 0; i < shape[0]; i++) bad += ((float *)f.data)[i] != (float)((double *)d.data)[i];
    CHECK(bad == 0, "random f32 inputs: %lld of %lld differ from the f64 ones rounded", (long long)bad,
          (long long)shape[0]);
    for (int wide = 0; wide < 2; wide++) {
        float g[1001];
        tensor_fill_random_f32(g, shape[0], 42, wide);
        bad = 0;
        for (int64_t i = 0; i < shape[0]; i++) bad += g[i] != ((float *)f.data)[i];
        CHECK(bad == 0, "random f32 inputs, the %s loop: %lld differ", wide ? "wide" : "portable",
              (long long)bad);
    }
    kiln_tensor_free(&f);
    kiln_tensor_free(&d);
}

/* Seeded inputs for g's params, with special values planted in floats. */
static KilnTensor *make_inputs(const IRGraph *g, uint64_t seed) {
    KilnTensor *in = xcalloc((size_t)g->params.len + 1, sizeof(KilnTensor));
    for (int i = 0; i < g->params.len; i++) {
        const Node *p = ir_node(g, g->params.data[i]);
        int64_t shape[16];
        for (int k = 0; k < p->rank; k++) shape[k] = p->shape[k];
        kiln_tensor_init(&in[i], p->dtype, p->rank, shape);
        tensor_fill_random(&in[i], seed + (uint64_t)i * 7919);
        int64_t n = kiln_tensor_numel(&in[i]);
        if (p->dtype == KILN_F32 && n >= 8) {
            float *f = in[i].data;
            f[1] = -0.0f, f[3] = NAN, f[5] = INFINITY, f[7] = -INFINITY;
        }
        if (p->dtype == KILN_I32 && n >= 2) ((int32_t *)in[i].data)[1] = INT32_MIN;
    }
    return in;
}

static void free_tensors(KilnTensor *t, int n) {
    for (int i = 0; i < n; i++) kiln_tensor_free(&t[i]);
    free(t);
}

/* Runs a and b (same params) on the same inputs; true when every result
 * agrees: bit for bit when tol < 0, else |x - y| <= tol * (1 + |y|) (NaN
 * matching NaN, infinities equal). */
static bool agree(const IRGraph *a, const IRGraph *b, double tol, uint64_t seed) {
    if (!a || !b || a->results.len != b->results.len) return false;
    KilnTensor *in = make_inputs(a, seed);
    int nr = a->results.len;
    KilnTensor *ra = xcalloc((size_t)nr + 1, sizeof(KilnTensor)), *rb = xcalloc((size_t)nr + 1, sizeof(KilnTensor));
    char err[256];
    bool ok = ref_run(a, in, ra, err, sizeof err) && ref_run(b, in, rb, err, sizeof err);
    for (int r = 0; ok && r < nr; r++) {
        int64_t n = kiln_tensor_numel(&ra[r]);
        if (ra[r].dtype != rb[r].dtype || n != kiln_tensor_numel(&rb[r])) {
            ok = false;
            break;
        }
        size_t size = kiln_dtype_size(ra[r].dtype);
        for (int64_t i = 0; tol < 0 && ok && i < n; i++) { /* bit for bit; any NaN matches any NaN */
            double x = kiln_tensor_get(&ra[r], i), y = kiln_tensor_get(&rb[r], i);
            if (isnan(x) && isnan(y)) continue;
            if (memcmp((char *)ra[r].data + i * (int64_t)size, (char *)rb[r].data + i * (int64_t)size, size) != 0) {
                if (!quiet) printf("  seed %llu: result %d element %lld differs bitwise: %.9g vs %.9g\n", (unsigned long long)seed,
                       r, (long long)i, x, y);
                ok = false;
            }
        }
        if (tol < 0) continue;
        for (int64_t i = 0; ok && i < n; i++) {
            double x = kiln_tensor_get(&ra[r], i), y = kiln_tensor_get(&rb[r], i);
            if ((isnan(x) && isnan(y)) || x == y) continue;
            if (!(fabs(x - y) <= tol * (1 + fabs(y)))) {
                printf("  result %d element %lld: %.9g vs %.9g (tol %g)\n", r, (long long)i, x, y, tol);
                ok = false;
            }
        }
    }
    free_tensors(in, a->params.len);
    free_tensors(ra, nr);
    free_tensors(rb, nr);
    return ok;
}

/* The largest |x - y| / max|y| over all results (normwise error). */
static double norm_error(const IRGraph *a, const IRGraph *b, uint64_t seed) {
    KilnTensor *in = xcalloc((size_t)a->params.len + 1, sizeof(KilnTensor));
    for (int i = 0; i < a->params.len; i++) { /* plain random inputs: no specials */
        const Node *p = ir_node(a, a->params.data[i]);
        int64_t shape[16];
        for (int k = 0; k < p->rank; k++) shape[k] = p->shape[k];
        kiln_tensor_init(&in[i], p->dtype, p->rank, shape);
        tensor_fill_random(&in[i], seed + (uint64_t)i);
    }
    int nr = a->results.len;
    KilnTensor *ra = xcalloc((size_t)nr + 1, sizeof(KilnTensor)), *rb = xcalloc((size_t)nr + 1, sizeof(KilnTensor));
    char err[256];
    double worst = INFINITY;
    if (ref_run(a, in, ra, err, sizeof err) && ref_run(b, in, rb, err, sizeof err)) {
        worst = 0;
        for (int r = 0; r < nr; r++) {
            double d = 0, m = 0;
            for (int64_t i = 0, n = kiln_tensor_numel(&ra[r]); i < n; i++) {
                double x = kiln_tensor_get(&ra[r], i), y = kiln_tensor_get(&rb[r], i);
                d = fmax(d, fabs(x - y));
                m = fmax(m, fabs(y));
            }
            worst = fmax(worst, m > 0 ? d / m : d);
        }
    }
    free_tensors(in, a->params.len);
    free_tensors(ra, nr);
    free_tensors(rb, nr);
    return worst;
}

/* ------------------------------------------------------------ fold */

static void test_fold(void) {
    IRGraph *g = build("graph f(x: f32[4]) -> f32[4] {\n"
                       "    a = full([4], 2.0) * full([4], 3.0)\n"
                       "    b = exp(zeros([4])) + sqrt(ones([4]))\n"
                       "    return x + a * b\n"
                       "}\n");
    IRGraph *f = run(g, "fold,dce");
    ASSERT(f != NULL);
    ASSERT_EQ(0, count_op(f, OP_EXP));
    ASSERT_EQ(0, count_op(f, OP_SQRT));
    ASSERT_EQ(0, count_op(f, OP_MUL)); /* x + 12 */
    ASSERT_EQ(1, count_op(f, OP_ADD));
    ASSERT_EQ(1, count_op(f, OP_FULL));
    for (int i = 0; f && i < f->nodes.len; i++)
        if (ir_node(f, i)->op == OP_FULL) ASSERT(ir_node(f, i)->value == 12.0);
    ASSERT(agree(g, f, -1, 1));

    /* reductions of fills, where exact */
    g = build("graph f(x: f32[3]) -> (f32[3], f32[3], f32[3], i64[3], i32, f32, f32, f32) {\n"
              "    s = sum(full([3, 5], 0.1), axis=1)\n"
              "    m = mean(full([3, 7], 0.3), axis=1)\n"
              "    mx = max(full([3, 2], -2.5), axis=1)\n"
              "    am = argmax(full([3, 4], 1.0), axis=1)\n"
              "    wrap = sum(full([4], 2147483647, i32))\n"
              "    nz = sum(full([4], -0.0))\n"
              "    p = prod(ones([9]))\n"
              "    big = sum(full([3], 0.1, f64))\n"
              "    return x + s, x * m, x - mx, am, wrap, nz, p, cast(big, f32)\n"
              "}\n");
    f = run(g, "fold,dce");
    ASSERT_EQ(0, count_op(f, OP_MEAN) + count_op(f, OP_MAX) + count_op(f, OP_ARGMAX) + count_op(f, OP_PROD));
    ASSERT_EQ(1, count_op(f, OP_SUM)); /* the f64 sum: repeated addition is not one product */
    ASSERT(agree(g, f, -1, 2));
    ASSERT(f && result_node(f, 4)->op == OP_CONST && result_node(f, 4)->value == -4.0); /* wrapped like int32 */
    ASSERT(f && result_node(f, 5)->op == OP_CONST && result_node(f, 5)->value == 0 && !signbit(result_node(f, 5)->value));

    /* views of fills; pad with the fill's own value; concat of equal fills */
    g = build("graph f(x: f32[3, 2]) -> (f32[3, 2], f32[4, 2], f32[4, 2], f32[3, 4]) {\n"
              "    t = transpose(reshape(full([6], 1.5), [2, 3]))\n"
              "    p = pad(zeros([2, 2]), [[1, 1], [0, 0]])\n"
              "    q = pad(zeros([2, 2]), [[1, 1], [0, 0]], value=1.0)\n"
              "    c = concat([ones([3, 2]), ones([3, 2])], axis=1)\n"
              "    return x * t, p, q, c\n"
              "}\n");
    f = run(g, "fold,dce");
    ASSERT_EQ(0, count_op(f, OP_TRANSPOSE) + count_op(f, OP_RESHAPE) + count_op(f, OP_CONCAT));
    ASSERT_EQ(1, count_op(f, OP_PAD)); /* pad value 1 around zeros is not one fill */
    ASSERT(agree(g, f, -1, 3));

    /* comparisons, where and casts of constants; integer arithmetic wraps */
    g = build("graph f(x: i32[2]) -> (i32[2], bool[2]) {\n"
              "    a = cast(full([2], 3.7), i32) * full([2], 1073741824, i32)\n"
              "    b = where(full([2], 1.0) > 0.5, ones([2], i32), zeros([2], i32))\n"
              "    return x + a + b, not (full([2], 2) == 2)\n"
              "}\n");
    f = run(g, "fold,dce");
    ASSERT_EQ(0, count_op(f, OP_CAST) + count_op(f, OP_WHERE) + count_op(f, OP_GT) + count_op(f, OP_NOT));
    ASSERT(agree(g, f, -1, 4));
}

/* ------------------------------------------------------------ simplify */

static void test_simplify(void) {
    IRGraph *g = build("graph f(x: f32[2, 4]) -> (f32[2, 4], f32[2, 4], f32[2, 4]) {\n"
                       "    a = x * 1.0\n"
                       "    b = 1.0 * (x / 1.0)\n"
                       "    c = (x - 0.0) + (-0.0)\n"
                       "    return a, b, c\n"
                       "}\n");
    IRGraph *s = run(g, "simplify,dce");
    ASSERT_EQ(0, count_op(s, OP_MUL) + count_op(s, OP_DIV) + count_op(s, OP_SUB) + count_op(s, OP_ADD));
    ASSERT(s && s->results.data[0] == s->params.data[0]);
    ASSERT(agree(g, s, -1, 5));

    /* x + 0.0 is not x when x is -0.0: kept unless --fast-math */
    g = build("graph f(x: f32[8]) -> f32[8] { return x + 0.0 }\n");
    s = run(g, "simplify,dce");
    ASSERT_EQ(1, count_op(s, OP_ADD));
    ASSERT(agree(g, s, -1, 6));
    PassOptions fm = options("simplify,dce");
    fm.fast_math = true;
    s = run_with(g, &fm);
    ASSERT_EQ(0, count_op(s, OP_ADD));
    quiet = true;
    ASSERT(!agree(g, s, -1, 6)); /* -0.0 + 0.0 is +0.0: why it needs --fast-math */
    quiet = false;
    ASSERT(agree(g, s, 0, 6));   /* ... and equal as numbers */

    /* x * 1 that broadcasts x up is not x */
    g = build("graph f(x: f32[4]) -> f32[3, 4] { return x * ones([3, 4]) }\n");
    s = run(g, "simplify,dce");
    ASSERT_EQ(1, count_op(s, OP_MUL));
    ASSERT(agree(g, s, -1, 7));

    /* integers: x + 0, neg(neg(x)) even at INT32_MIN */
    g = build("graph f(x: i32[4]) -> (i32[4], i32[4]) { return 0 + x - 0, -(-x) }\n");
    s = run(g, "simplify,dce");
    ASSERT_EQ(0, count_op(s, OP_ADD) + count_op(s, OP_SUB) + count_op(s, OP_NEG));
    ASSERT(agree(g, s, -1, 8));

    /* casts: to the same dtype; through an exact widening; not through a narrowing */
    g = build("graph f(x: f16[4], y: f32[4]) -> (f16[4], f32[4], f32[4], f64[4]) {\n"
              "    return cast(cast(x, f32), f16), cast(y, f32), cast(cast(y, f16), f32), cast(cast(x, f32), f64)\n"
              "}\n");
    s = run(g, "simplify,dce");
    ASSERT(s && s->results.data[0] == s->params.data[0]);
    ASSERT(s && s->results.data[1] == s->params.data[1]);
    ASSERT(s && result_node(s, 2)->op == OP_CAST && ir_node(s, result_node(s, 2)->in[0])->op == OP_CAST);
    ASSERT(s && result_node(s, 3)->op == OP_CAST && result_node(s, 3)->in[0] == s->params.data[0]);
    ASSERT(agree(g, s, -1, 9));

    /* transposes compose; reshapes and broadcasts collapse */
    g = build("graph f(x: f32[2, 3, 4]) -> (f32[2, 3, 4], f32[3, 2, 4], f32[2, 12], f32[2, 3, 4], f32[5, 2, 3, 4]) {\n"
              "    a = transpose(transpose(x, [1, 2, 0]), [2, 0, 1])\n"
              "    b = transpose(transpose(x, [0, 2, 1]), [2, 0, 1])\n"
              "    c = reshape(reshape(x, [6, 4]), [2, 12])\n"
              "    d = reshape(reshape(x, [24]), [2, 3, 4])\n"
              "    e = broadcast(broadcast(x, [1, 2, 3, 4]), [5, 2, 3, 4])\n"
              "    return a, b, c, d, e\n"
              "}\n");
    s = run(g, "simplify,dce");
    ASSERT(s && s->results.data[0] == s->params.data[0]);
    ASSERT(s && result_node(s, 1)->op == OP_TRANSPOSE && result_node(s, 1)->in[0] == s->params.data[0]);
    ASSERT(s && result_node(s, 2)->op == OP_RESHAPE && result_node(s, 2)->in[0] == s->params.data[0]);
    ASSERT(s && s->results.data[3] == s->params.data[0]);
    ASSERT(s && result_node(s, 4)->op == OP_BROADCAST && result_node(s, 4)->in[0] == s->params.data[0]);
    ASSERT_EQ(1, count_op(s, OP_TRANSPOSE));
    ASSERT_EQ(1, count_op(s, OP_BROADCAST));
    ASSERT(agree(g, s, -1, 10));

    /* where(c, x, x), pad by nothing, broadcast and reshape to the same shape */
    g = build("graph f(x: f32[2, 4]) -> (f32[2, 4], f32[2, 4], f32[2, 4], f32[2, 4]) {\n"
              "    return where(x > 0.0, x, x), pad(x, [[0, 0], [0, 0]]), broadcast(x, [2, 4]), reshape(x, [2, 4])\n"
              "}\n");
    s = run(g, "simplify,dce");
    for (int r = 0; s && r < 4; r++) ASSERT(s->results.data[r] == s->params.data[0]);
    ASSERT(agree(g, s, -1, 11));

    /* a slice covering everything (the builder makes none; built by hand) */
    IRGraph *h = track(ir_graph_new(arena, "slice"));
    Dim shape[2] = {3, 1};
    int x = ir_add_node(h, OP_PARAM, KILN_F32, 2, shape, 0, NULL, (Loc){0});
    ir_node(h, x)->name = "x";
    VEC_PUSH(h->params, x);
    int sl = ir_add_node(h, OP_SLICE, KILN_F32, 2, shape, 1, &x, (Loc){0});
    int64_t ints[4] = {0, 1, 0, 5}; /* a step on a size-1 axis changes nothing */
    ir_node(h, sl)->ints = ints;
    ir_node(h, sl)->nints = 4;
    VEC_PUSH(h->results, sl);
    s = run(h, "simplify");
    ASSERT(s && s->results.data[0] == s->params.data[0]);
    ASSERT(agree(h, s, -1, 12));

    /* source locations survive a rewrite */
    g = build("graph f(x: f32[4]) -> f32[4] {\n    y = exp(x)\n    return y * 1.0\n}\n");
    s = run(g, "simplify,dce");
    ASSERT(s && result_node(s, 0)->op == OP_EXP && result_node(s, 0)->loc.line == 2);
}

/* ------------------------------------------------------------ cse, dce */

static void test_cse(void) {
    IRGraph *g = build("graph f(x: f32[4], y: f32[4]) -> (f32[4], f32[4], f32[4], f32[2]) {\n"
                       "    a = exp(x) + exp(x)\n"
                       "    b = x * y + y * x\n"
                       "    c = (x - y) + (y - x)\n"
                       "    m = reshape(x, [2, 2])\n"
                       "    return a, b, c, sum(m, axis=0) + sum(m, axis=1)\n"
                       "}\n");
    IRGraph *c = run(g, "cse,dce");
    ASSERT_EQ(1, count_op(c, OP_EXP));
    ASSERT_EQ(1, count_op(c, OP_MUL)); /* commutative */
    ASSERT_EQ(2, count_op(c, OP_SUB)); /* not commutative */
    ASSERT_EQ(2, count_op(c, OP_SUM)); /* different axes */
    ASSERT_EQ(2, count_op(c, OP_PARAM));
    ASSERT(agree(g, c, -1, 20));

    /* two params of the same type are not one value */
    g = build("graph f(x: f32[4], y: f32[4]) -> f32[4] { return exp(x) + exp(y) }\n");
    c = run(g, "cse");
    ASSERT_EQ(2, count_op(c, OP_EXP));
    ASSERT(agree(g, c, -1, 21));

    /* -0.0 and 0.0 are different constants */
    g = build("graph f(x: f32[8]) -> (f32[8], f32[8]) { return x + 0.0, x + (-0.0) }\n");
    c = run(g, "cse,dce");
    ASSERT_EQ(2, count_op(c, OP_ADD));
    ASSERT(agree(g, c, -1, 22));
}

static void test_dce(void) {
    IRGraph *g = build("graph f(x: f32[4], unused: f32[3]) -> f32[4] {\n"
                       "    dead = log(x) * 2.0\n"
                       "    return exp(x)\n"
                       "}\n");
    IRGraph *d = run(g, "dce");
    ASSERT_EQ(0, count_op(d, OP_LOG));
    ASSERT_EQ(0, count_op(d, OP_MUL));
    ASSERT_EQ(2, d ? d->params.len : 0); /* the interface stays */
    ASSERT(d && strcmp(ir_node(d, d->params.data[1])->name, "unused") == 0);
    ASSERT_EQ(3, d ? d->nodes.len : 0);
    ASSERT(agree(g, d, -1, 30));
}

/* ------------------------------------------------------------ decompose */

static void test_decompose(void) {
    IRGraph *g = build("graph f(x: f32[2, 3, 8], g3: f32[3], b3: f32[3], g8: f32[8], b8: f32[8]) -> (\n"
                       "         f32[2, 3, 8], f32[2, 3, 8], f32[2, 3, 8], f32[2, 3, 8], f32[2, 3, 8],\n"
                       "         f32[2, 3, 8], f32[2, 3, 8], f32[2, 3, 8]) {\n"
                       "    return softmax(x, axis=-1), softmax(x, axis=0), log_softmax(x, axis=1),\n"
                       "           layernorm(x, g8, b8, axis=-1), layernorm(x, g3, b3, axis=1, eps=0.01),\n"
                       "           rmsnorm(x, g8), gelu(x), gelu(x, approximate=true)\n"
                       "}\n");
    IRGraph *d = run(g, "decompose,cse,dce");
    ASSERT_EQ(0, count_op(d, OP_SOFTMAX) + count_op(d, OP_LOG_SOFTMAX) + count_op(d, OP_LAYERNORM) +
                     count_op(d, OP_RMSNORM) + count_op(d, OP_GELU));
    ASSERT(count_op(d, OP_MEAN) >= 5);
    ASSERT(count_op(d, OP_ERF) == 1 && count_op(d, OP_TANH) == 1);
    /* each primitive rounds to f32 where the composite rounds once: a few ulps
     * (the planted NaN and infinities go through both forms alike) */
    ASSERT(agree(g, d, 2e-6, 40));
    ASSERT(agree(g, d, 2e-6, 41));

    /* f16: wider, rounding at every step */
    g = build("graph f(x: f16[4, 16], g: f16[16], b: f16[16]) -> (f16[4, 16], f16[4, 16], f16[4, 16]) {\n"
              "    return softmax(x, axis=-1), layernorm(x, g, b), gelu(x)\n"
              "}\n");
    d = run(g, "decompose");
    ASSERT_EQ(0, count_op(d, OP_SOFTMAX) + count_op(d, OP_LAYERNORM) + count_op(d, OP_GELU));
    ASSERT(norm_error(d, g, 42) < 3e-3); /* measured 5.9e-4 */
}

/* ------------------------------------------------------------ precision */

static const char *mlp_src = "graph mlp(x: f32[4, 128], w1: f32[128, 64], b1: f32[64], w2: f32[64, 10], b2: f32[10]) -> f32[4, 10] {\n"
                             "    h = relu(x @ w1 + b1)\n"
                             "    return softmax(h @ w2 + b2, axis=-1)\n"
                             "}\n";

static int count_dtype(const IRGraph *g, Op op, KilnDType dt) {
    int n = 0;
    for (int i = 0; g && i < g->nodes.len; i++) n += ir_node(g, i)->op == op && ir_node(g, i)->dtype == dt;
    return n;
}

static void test_precision(void) {
    IRGraph *g = build(mlp_src);
    PassOptions o = options("precision");
    o.precision = PASS_PREC_F16;
    IRGraph *p = run_with(g, &o);
    ASSERT_EQ(2, count_dtype(p, OP_MATMUL, KILN_F16));
    ASSERT_EQ(6, count_op(p, OP_CAST)); /* two inputs and one result per matmul */
    ASSERT(p && result_node(p, 0)->dtype == KILN_F32 && result_node(p, 0)->op == OP_SOFTMAX);
    ASSERT(norm_error(p, g, 50) < 5e-3); /* measured 2.2e-3 */

    o.precision = PASS_PREC_BF16;
    p = run_with(g, &o);
    ASSERT_EQ(2, count_dtype(p, OP_MATMUL, KILN_BF16));
    ASSERT(norm_error(p, g, 51) < 3e-2); /* measured 1.0e-2 */
    /* with the default pipeline after it, a bf16 product feeding another
     * matmul is not cast to f32 and back: 4 casts are left of 7 */
    g = build("graph f(x: f32[4, 128], w1: f32[128, 64], w2: f32[64, 8]) -> f32[4, 8] { return (x @ w1) @ w2 }\n");
    p = run_with(g, &o);
    ASSERT_EQ(6, count_op(p, OP_CAST));
    PassOptions full = {.opt_level = 2, .precision = PASS_PREC_BF16};
    IRGraph *q = run_with(g, &full);
    ASSERT_EQ(2, count_dtype(q, OP_MATMUL, KILN_BF16));
    ASSERT_EQ(4, count_op(q, OP_CAST));
    ASSERT(agree(p, q, -1, 52));
    g = build(mlp_src);

    /* auto: K = 128 -> bf16; K = 64 feeding softmax stays f32; K = 16 stays f32 */
    o.precision = PASS_PREC_AUTO;
    p = run_with(g, &o);
    ASSERT_EQ(1, count_dtype(p, OP_MATMUL, KILN_BF16));
    ASSERT_EQ(1, count_dtype(p, OP_MATMUL, KILN_F32));
    ASSERT(p && ir_node(p, result_node(p, 0)->in[0])->op == OP_ADD);
    g = build("graph f(x: f32[4, 16], w: f32[16, 8]) -> f32[4, 8] { return x @ w }\n");
    p = run_with(g, &o);
    ASSERT_EQ(0, count_op(p, OP_CAST));
    /* conv2d: C*KH*KW = 8*3*3 = 72 -> bf16, with its bias */
    g = build("graph f(x: f32[1, 8, 6, 6], w: f32[4, 8, 3, 3], b: f32[4]) -> f32[1, 4, 4, 4] {\n"
              "    return relu(conv2d(x, w, b))\n"
              "}\n");
    p = run_with(g, &o);
    ASSERT_EQ(1, count_dtype(p, OP_CONV2D, KILN_BF16));
    ASSERT_EQ(4, count_op(p, OP_CAST));
    ASSERT(norm_error(p, g, 53) < 1e-2); /* measured 3.4e-3 */
    /* integer and f64 matmuls are left alone */
    g = build("graph f(x: i32[2, 128], w: i32[128, 2], y: f64[2, 128], v: f64[128, 2]) -> (i32[2, 2], f64[2, 2]) {\n"
              "    return x @ w, y @ v\n"
              "}\n");
    o.precision = PASS_PREC_F16;
    p = run_with(g, &o);
    ASSERT_EQ(0, count_op(p, OP_CAST));
}

/* ------------------------------------------------------------ the pipeline */

static const char *const example_files[] = {
    "examples/mlp.kiln", "examples/attention.kiln", "examples/gelu_chain.kiln", "examples/layernorm.kiln",
    "examples/softmax.kiln", "examples/transformer_block.kiln", "examples/lenet.kiln",
};

static void test_pipeline(void) {
    IRGraph *g = build(mlp_src);
    PassOptions o0 = {.opt_level = 0};
    ASSERT(run_with(g, &o0) == g); /* -O0: nothing runs */
    char err[256] = "";
    PassOptions bad = options("fold,nope");
    IRGraph *none = g;
    ASSERT(passes_run(arena, g, &bad, &none, err, sizeof err) == KILN_ERR_USAGE && !none &&
           strstr(err, "unknown pass 'nope'"));
    PassOptions bad_print = {.opt_level = 2, .print_after = "nope"};
    ASSERT(passes_run(arena, g, &bad_print, &none, err, sizeof err) == KILN_ERR_USAGE && !none);
    ASSERT(!passes_check_names("cse,dce,x", false, err, sizeof err));
    ASSERT(passes_check_names("all", true, err, sizeof err));
    ASSERT(passes_check_names("decompose,precision", false, err, sizeof err));
    StrBuf sb = {0};
    PassOptions auto_o2 = {.opt_level = 2, .precision = PASS_PREC_AUTO};
    passes_describe(&auto_o2, &sb);
    ASSERT(sb.data && strcmp(sb.data, "precision,fold,simplify,cse,dce") == 0);
    sb_free(&sb);

    /* --print-after */
    FILE *dump = tmpfile();
    PassOptions pa = {.opt_level = 2, .print_after = "cse", .dump = dump, .remarks = true};
    IRGraph *r = run_with(build("graph f(x: f32[4]) -> f32[4] { return exp(x) * exp(x) * 1.0 }\n"), &pa);
    ASSERT(r != NULL);
    char text[4096] = "";
    rewind(dump);
    size_t len = fread(text, 1, sizeof text - 1, dump);
    text[len] = 0;
    fclose(dump);
    ASSERT(strstr(text, "// after cse") && !strstr(text, "// after fold"));
    ASSERT(strstr(text, "remark: simplify: mul@1:") && strstr(text, "remark: cse: exp@1:"));

    /* the verifier between passes catches an ill-typed graph */
    IRGraph *h = track(ir_graph_new(arena, "bad"));
    Dim s4[1] = {4};
    int x = ir_add_node(h, OP_PARAM, KILN_F32, 1, s4, 0, NULL, (Loc){0});
    ir_node(h, x)->name = "x";
    VEC_PUSH(h->params, x);
    int e = ir_add_node(h, OP_EXP, KILN_F16, 1, s4, 1, &x, (Loc){0});
    VEC_PUSH(h->results, e);
    PassOptions dce = options("dce");
    ASSERT(passes_run(arena, h, &dce, &none, err, sizeof err) == KILN_ERR_DEVICE && !none &&
           strstr(err, "internal error"));

    /* every example: -O2 equals -O0 bit for bit (the default passes are exact),
     * and a second run of the pipeline changes nothing */
    for (size_t f = 0; f < sizeof example_files / sizeof example_files[0]; f++) {
        char *text_src;
        size_t n;
        if (!read_file(example_files[f], &text_src, &n, err, sizeof err)) {
            printf("%s: %s (run from the repository root)\n", example_files[f], err);
            nfail++;
            continue;
        }
        IRGraph *eg;
        for (int k = 0; (eg = build_index(text_src, k, "B=2 T=8 N=3")) != NULL; k++) {
            PassOptions o2 = {.opt_level = 2};
            IRGraph *og = run_with(eg, &o2);
            ASSERT(og != NULL && og->nodes.len <= eg->nodes.len);
            ASSERT(agree(eg, og, -1, 60 + f));
            IRGraph *again = og ? run_with(og, &o2) : NULL;
            ASSERT(again && again->nodes.len == og->nodes.len);
        }
        free(text_src);
    }
}

int main(void) {
    arena = arena_new();
    test_random_fill();
    test_fold();
    test_simplify();
    test_cse();
    test_dce();
    test_decompose();
    test_precision();
    test_pipeline();
    for (int i = 0; i < graphs.len; i++) ir_graph_destroy(graphs.data[i]);
    VEC_FREE(graphs);
    arena_free(arena);
    printf("test_passes: %d passed, %d failed\n", npass, nfail);
    return nfail != 0;
}
