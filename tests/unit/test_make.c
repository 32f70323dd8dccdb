/* test_make.c - the value-level IR builder (ir/make.h) used as a front end
 * other than the language would use it: no AST, no Source, no Program.
 *
 * Checks the shapes and dtypes each rule gives (symbolic dims named by the
 * caller, weights as parameters added in any order with any names), that a
 * broken call reports one diagnostic at the given place and returns
 * MK_ERROR, that MK_ERROR passes through silently, and that mk_check_node
 * accepts what the builder made and names what a pass could break.  The
 * graphs are also run on the reference interpreter against values worked
 * out by hand.
 * Ends with the line "test_make: N passed, N failed". */
#include "ir/make.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* The type of value v as text, e.g. "f32[batch, 10]", compared to `want`. */
#define ASSERT_TYPE(want, m, v)                                                                              \
    do {                                                                                                     \
        char *t_ = (v) >= 0 ? ir_type_str((m)->g, ir_node((m)->g, v)->dtype, ir_node((m)->g, v)->rank,       \
                                          ir_node((m)->g, v)->shape)                                         \
                            : NULL;                                                                          \
        if (t_ && strcmp(t_, want) == 0) {                                                                   \
            npass++;                                                                                         \
        } else {                                                                                             \
            nfail++;                                                                                         \
            printf("%s:%d: FAILED: %s is %s, expected %s\n", __FILE__, __LINE__, #v, t_ ? t_ : "MK_ERROR",   \
                   want);                                                                                    \
        }                                                                                                    \
        free(t_);                                                                                            \
    } while (0)

/* The one diagnostic reported since the last call contains `want`. */
static void expect_error(DiagList *d, int v, const char *want, int line) {
    bool ok = v == MK_ERROR && d->items.len == 1 && strstr(d->items.data[0].msg, want) != NULL;
    if (ok) {
        npass++;
    } else {
        nfail++;
        printf("test_make.c:%d: FAILED: expected one error with '%s', got %s and %d: %s\n", line, want,
               v == MK_ERROR ? "MK_ERROR" : "a value", d->items.len,
               d->items.len ? d->items.data[0].msg : "");
    }
    diag_clear(d);
}
#define EXPECT_ERROR(d, v, want) expect_error(d, v, want, __LINE__)

static Loc at(int line, int col) { return (Loc){NULL, line, col}; }

/* mk_check_node accepts every node the builder made. */
static void check_all_nodes(IRGraph *g) {
    for (int n = 0; n < g->nodes.len; n++) {
        char why[256] = "";
        bool ok = mk_check_node(g, n, why, sizeof why);
        ASSERT(ok);
        if (!ok) printf("  node %%%d: %s\n", n, why);
    }
}

/* An importer's graph: weights first, in any order, with names no language
 * identifier could have; a symbolic batch. */
static void test_importer_graph(void) {
    Arena *arena = arena_new();
    DiagList d = {0};
    IRGraph *g = ir_graph_new(arena, "model");
    IRMaker m;
    mk_init(&m, g, &d);
    Dim batch = ir_sym_named(g, "batch");
    Dim wshape[2] = {3, 4}, bshape[1] = {3}, xshape[2] = {batch, 4};
    int b = mk_param(&m, "fc.bias", KILN_F32, 1, bshape, at(1, 1));
    int w = mk_param(&m, "onnx::Gemm_12", KILN_F32, 2, wshape, at(2, 1));
    int x = mk_param(&m, "input", KILN_F32, 2, xshape, at(3, 1));
    ASSERT_EQ(3, g->params.len);
    ASSERT_EQ(b, g->params.data[0]);
    ASSERT(strcmp(ir_node(g, w)->name, "onnx::Gemm_12") == 0);
    int y = mk_linear(&m, x, w, b, mk_at(at(4, 1)));
    ASSERT_TYPE("f32[batch, 3]", &m, y);
    int r = mk_unary(&m, OP_RELU, y, at(5, 1));
    int64_t axis = -1;
    int s = mk_reduce(&m, OP_SUM, r, &axis, 1, true, mk_at(at(6, 1)));
    ASSERT_TYPE("f32[batch, 1]", &m, s);
    int am = mk_reduce(&m, OP_ARGMAX, r, &axis, 1, false, mk_at(at(7, 1)));
    ASSERT_TYPE("i64[batch]", &m, am);
    /* reshape with an inferred axis over a symbolic size */
    Dim flat[1] = {0};
    int f = mk_reshape(&m, r, flat, 1, 0, at(8, 1));
    ASSERT_TYPE("f32[3*batch]", &m, f);
    Dim back[2] = {batch, 0};
    ASSERT_TYPE("f32[batch, 3]", &m, mk_reshape(&m, f, back, 2, 1, at(9, 1)));
    mk_result(&m, s);
    mk_result(&m, MK_ERROR); /* ignored */
    ASSERT_EQ(1, g->results.len);
    ASSERT_EQ(0, d.nerrors);
    check_all_nodes(g);
    /* a duplicate parameter name is an error, not a second input */
    EXPECT_ERROR(&d, mk_param(&m, "input", KILN_F32, 2, xshape, at(10, 1)), "declared twice");
    ASSERT_EQ(3, g->params.len);
    Dim zero[1] = {0};
    EXPECT_ERROR(&d, mk_param(&m, "empty", KILN_F32, 1, zero, at(11, 1)), "must be positive");
    mk_free(&m);
    ir_graph_destroy(g);
    diag_clear(&d);
    arena_free(arena);
}

/* Each rule's result type, and its refusal. */
static void test_rules(void) {
    Arena *arena = arena_new();
    DiagList d = {0};
    IRGraph *g = ir_graph_new(arena, "rules");
    IRMaker m;
    mk_init(&m, g, &d);
    Dim s234[3] = {2, 3, 4}, s4[1] = {4}, s34[2] = {3, 4}, s43[2] = {4, 3}, s5[1] = {5};
    int a = mk_param(&m, "a", KILN_F32, 3, s234, at(1, 1));
    int v = mk_param(&m, "v", KILN_F32, 1, s4, at(1, 2));
    int w = mk_param(&m, "w", KILN_F32, 2, s43, at(1, 3));
    int h = mk_param(&m, "h", KILN_F16, 2, s34, at(1, 4));
    int i = mk_param(&m, "i", KILN_I32, 1, s4, at(1, 5));
    int u = mk_param(&m, "u", KILN_F32, 1, s5, at(1, 6));

    /* elementwise: broadcasting, weak literals, dtype rules */
    ASSERT_TYPE("f32[2, 3, 4]", &m, mk_binary(&m, OP_ADD, a, v, at(2, 1)));
    ASSERT_TYPE("bool[2, 3, 4]", &m, mk_binary(&m, OP_LT, a, v, at(2, 2)));
    int two = mk_literal(&m, 2, KILN_I64, at(2, 3));
    ASSERT(mk_is_weak(&m, two));
    ASSERT_TYPE("i32[4]", &m, mk_binary(&m, OP_MUL, i, two, at(2, 4)));
    ASSERT_TYPE("f32[2, 3, 4]", &m, mk_binary(&m, OP_MUL, two, a, at(2, 5)));
    ASSERT_TYPE("f32[]", &m, mk_unary(&m, OP_EXP, two, at(2, 6)));
    int half = mk_literal(&m, 0.5, KILN_F32, at(2, 7));
    EXPECT_ERROR(&d, mk_binary(&m, OP_ADD, i, half, at(2, 8)), "cannot be used with i32[4]");
    EXPECT_ERROR(&d, mk_binary(&m, OP_ADD, a, u, at(3, 1)), "cannot broadcast f32[2, 3, 4] with f32[5]");
    EXPECT_ERROR(&d, mk_binary(&m, OP_ADD, w, h, at(3, 2)), "different dtypes");
    EXPECT_ERROR(&d, mk_binary(&m, OP_DIV, i, i, at(3, 3)), "floating-point");
    EXPECT_ERROR(&d, mk_unary(&m, OP_EXP, i, at(3, 4)), "floating-point");
    int cond = mk_binary(&m, OP_GT, v, mk_literal(&m, 0, KILN_I64, at(3, 5)), at(3, 6));
    ASSERT_TYPE("f32[2, 3, 4]", &m, mk_where(&m, cond, a, mk_literal(&m, 0, KILN_I64, at(3, 7)), at(3, 8)));
    EXPECT_ERROR(&d, mk_where(&m, v, a, a, at(3, 9)), "condition of where must be bool");
    ASSERT_TYPE("i64[4]", &m, mk_cast(&m, v, KILN_I64, at(3, 10)));
    ASSERT_TYPE("f32[4]", &m,
                mk_clamp(&m, v, mk_literal(&m, 0, KILN_I64, at(4, 1)), mk_literal(&m, 6, KILN_I64, at(4, 2)),
                         at(4, 3)));

    /* errors pass through without a second message */
    ASSERT_EQ(MK_ERROR, mk_binary(&m, OP_ADD, MK_ERROR, a, at(5, 1)));
    ASSERT_EQ(MK_ERROR, mk_matmul(&m, a, MK_ERROR, at(5, 2)));
    ASSERT_EQ(0, d.items.len);

    /* matmul: 1-D operands, batch broadcast */
    ASSERT_TYPE("f32[2, 3, 3]", &m, mk_matmul(&m, a, w, at(6, 1)));
    ASSERT_TYPE("f32[2, 3]", &m, mk_matmul(&m, a, v, at(6, 2)));
    ASSERT_TYPE("f32[3]", &m, mk_matmul(&m, v, w, at(6, 3)));
    ASSERT_TYPE("f32[]", &m, mk_matmul(&m, v, v, at(6, 4)));
    EXPECT_ERROR(&d, mk_matmul(&m, a, u, at(6, 5)), "inner dimensions 4 and 5 differ");

    /* reductions */
    int64_t ax[2] = {0, -1};
    ASSERT_TYPE("f32[3]", &m, mk_reduce(&m, OP_MEAN, a, ax, 2, false, mk_at(at(7, 1))));
    ASSERT_TYPE("f32[1, 3, 1]", &m, mk_reduce(&m, OP_MAX, a, ax, 2, true, mk_at(at(7, 2))));
    ASSERT_TYPE("f32[]", &m, mk_reduce(&m, OP_SUM, a, NULL, 0, false, mk_at(at(7, 3))));
    ASSERT_TYPE("i64[]", &m, mk_reduce(&m, OP_ARGMIN, a, NULL, 0, false, mk_at(at(7, 4))));
    int64_t bad = 3, twice[2] = {1, -2};
    MkLoc axis_at = {.at = at(7, 5), .attr = at(7, 20)};
    int r = mk_reduce(&m, OP_SUM, a, &bad, 1, false, axis_at);
    ASSERT(d.items.len == 1 && d.items.data[0].loc.col == 20);
    EXPECT_ERROR(&d, r, "axis 3 is out of range for a tensor of rank 3");
    EXPECT_ERROR(&d, mk_reduce(&m, OP_SUM, a, twice, 2, false, axis_at), "listed twice");
    EXPECT_ERROR(&d, mk_reduce(&m, OP_MEAN, i, NULL, 0, false, axis_at), "floating-point");

    /* shapes */
    int64_t perm[3] = {2, 0, 1};
    ASSERT_TYPE("f32[4, 2, 3]", &m, mk_transpose(&m, a, perm, 3, mk_at(at(8, 1))));
    ASSERT_TYPE("f32[4, 3, 2]", &m, mk_transpose(&m, a, NULL, 0, mk_at(at(8, 2))));
    int64_t dup[3] = {0, 0, 1};
    EXPECT_ERROR(&d, mk_transpose(&m, a, dup, 3, mk_at(at(8, 3))), "appears twice");
    Dim big[3] = {5, 3, 4};
    ASSERT_TYPE("f32[5, 3, 4]", &m, mk_broadcast(&m, v, big, 3, at(8, 4)));
    EXPECT_ERROR(&d, mk_broadcast(&m, a, big, 3, at(8, 5)), "cannot broadcast f32[2, 3, 4] to f32[5, 3, 4]");
    Dim s6[2] = {6, 0};
    ASSERT_TYPE("f32[6, 4]", &m, mk_reshape(&m, a, s6, 2, 1, at(8, 6)));
    Dim s7[1] = {7};
    EXPECT_ERROR(&d, mk_reshape(&m, a, s7, 1, -1, at(8, 7)), "24 elements");
    MkSlice sl[2] = {{.index = true, .start = -1}, {.start = 1, .step = 2, .has_start = true}};
    ASSERT_TYPE("f32[1, 4]", &m, mk_index(&m, a, sl, 2, mk_at(at(9, 1))));
    MkSlice clip[1] = {{.start = -100, .stop = 100, .step = 1, .has_start = true, .has_stop = true}};
    ASSERT_EQ(a, mk_index(&m, a, clip, 1, mk_at(at(9, 2)))); /* the whole axis: no node */
    MkSlice out[1] = {{.index = true, .start = 2}};
    EXPECT_ERROR(&d, mk_index(&m, a, out, 1, mk_at(at(9, 3))), "index 2 is out of range");
    int cat[2] = {a, a};
    ASSERT_TYPE("f32[2, 6, 4]", &m, mk_concat(&m, cat, 2, 1, mk_at(at(10, 1))));
    int mixed[2] = {a, w};
    EXPECT_ERROR(&d, mk_concat(&m, mixed, 2, 0, mk_at(at(10, 2))), "cannot concatenate");
    int64_t pads[6] = {0, 0, 1, 2, 3, 0};
    ASSERT_TYPE("f32[2, 6, 7]", &m, mk_pad(&m, a, pads, 3, 0.0, mk_at(at(10, 3))));
    EXPECT_ERROR(&d, mk_pad(&m, i, pads, 1, 0.5, mk_at(at(10, 4))), "not an integer");
    int64_t ax0 = 0, ax1 = 1;
    int un = mk_unsqueeze(&m, v, &ax0, 1, mk_at(at(11, 1)));
    ASSERT_TYPE("f32[1, 4]", &m, un);
    ASSERT_TYPE("f32[4]", &m, mk_squeeze(&m, un, NULL, 0, mk_at(at(11, 2))));
    EXPECT_ERROR(&d, mk_squeeze(&m, un, &ax1, 1, mk_at(at(11, 3))), "not 1");

    /* creation */
    Dim fs[2] = {2, 2};
    ASSERT_TYPE("i32[2, 2]", &m, mk_full(&m, fs, 2, 7, KILN_I32, mk_at(at(12, 1))));
    EXPECT_ERROR(&d, mk_full(&m, fs, 2, 0.5, KILN_I64, mk_at(at(12, 2))), "not an integer");
    ASSERT_TYPE("f32[5]", &m, mk_arange(&m, 5, KILN_F32, mk_at(at(12, 3))));

    /* network layers */
    Dim xs[4] = {1, 2, 8, 8}, ws[4] = {4, 2, 3, 3}, bs[1] = {4};
    int x = mk_param(&m, "x", KILN_F32, 4, xs, at(13, 1));
    int k = mk_param(&m, "k", KILN_F32, 4, ws, at(13, 2));
    int kb = mk_param(&m, "kb", KILN_F32, 1, bs, at(13, 3));
    MkConv cv = {.stride = {2, 2}, .pad = {1, 1, 1, 1}, .dilation = {1, 1}, .groups = 1};
    ASSERT_TYPE("f32[1, 4, 4, 4]", &m, mk_conv2d(&m, x, k, kb, &cv, mk_at(at(13, 4))));
    ASSERT_TYPE("f32[1, 4, 4, 4]", &m, mk_conv2d(&m, x, k, MK_NONE, &cv, mk_at(at(13, 5))));
    EXPECT_ERROR(&d, mk_conv2d(&m, x, w, MK_NONE, &cv, mk_at(at(13, 6))), "conv2d takes x[N, C, H, W]");
    MkPool mp = {.kernel = {2, 2}, .stride = {2, 2}, .count_include_pad = true};
    ASSERT_TYPE("f32[1, 2, 4, 4]", &m, mk_pool2d(&m, OP_MAXPOOL2D, x, &mp, mk_at(at(13, 7))));
    ASSERT_TYPE("f32[1, 2, 1, 1]", &m, mk_global_avgpool(&m, x, at(13, 8)));
    ASSERT_TYPE("f32[2, 3, 4]", &m, mk_softmax(&m, OP_LOG_SOFTMAX, a, -1, mk_at(at(14, 1))));
    ASSERT_TYPE("f32[2, 3, 4]", &m, mk_layernorm(&m, a, v, v, -1, 1e-5, mk_at(at(14, 2))));
    EXPECT_ERROR(&d, mk_rmsnorm(&m, a, u, -1, 1e-6, mk_at(at(14, 3))), "gamma must be f32[4], found f32[5]");

    check_all_nodes(g);
    mk_free(&m);
    ir_graph_destroy(g);
    diag_clear(&d);
    arena_free(arena);
}

/* The Version 1 additions: shapes, composites, refusals. */
static void test_v1(void) {
    Arena *arena = arena_new();
    DiagList d = {0};
    IRGraph *g = ir_graph_new(arena, "v1");
    IRMaker m;
    mk_init(&m, g, &d);
    Dim s453[3] = {4, 5, 3}, s23[2] = {2, 3}, s5[1] = {5}, s4[1] = {4}, s3[1] = {3};
    int x = mk_param(&m, "x", KILN_F32, 3, s453, at(1, 1));
    int i = mk_param(&m, "i", KILN_I64, 2, s23, at(1, 2));
    int f = mk_param(&m, "f", KILN_F32, 2, s23, at(1, 3));
    int c5 = mk_param(&m, "c5", KILN_F32, 1, s5, at(1, 4));
    int c4 = mk_param(&m, "c4", KILN_F32, 1, s4, at(1, 5));
    int k = mk_param(&m, "k", KILN_I32, 1, s3, at(1, 6));
    ASSERT_TYPE("f32[2, 3, 5, 3]", &m, mk_take(&m, x, i, 0, mk_at(at(2, 1))));
    ASSERT_TYPE("f32[4, 2, 3, 3]", &m, mk_take(&m, x, i, 1, mk_at(at(2, 2))));
    ASSERT_TYPE("f32[4, 5, 2, 3]", &m, mk_take(&m, x, i, -1, mk_at(at(2, 3))));
    ASSERT_TYPE("f32[5, 3]", &m, mk_take(&m, x, mk_literal(&m, -1, KILN_I64, at(2, 4)), 0, mk_at(at(2, 5))));
    EXPECT_ERROR(&d, mk_take(&m, x, f, 0, mk_at(at(2, 6))), "i32 or i64, found f32[2, 3]");
    EXPECT_ERROR(&d, mk_take(&m, x, i, 3, mk_at(at(2, 7))), "out of range");
    ASSERT_TYPE("f32[4, 5, 3]", &m, mk_cumsum(&m, x, -2, false, true, mk_at(at(3, 1))));
    ASSERT_TYPE("i32[3]", &m, mk_cumsum(&m, k, 0, true, false, mk_at(at(3, 2))));
    EXPECT_ERROR(&d, mk_cumsum(&m, mk_binary(&m, OP_GT, k, k, at(3, 3)), 0, false, false, mk_at(at(3, 4))), "bool");
    /* batchnorm over axis 1 of x: five channels */
    ASSERT_TYPE("f32[4, 5, 3]", &m, mk_batchnorm(&m, x, c5, c5, c5, c5, 1, 1e-5, mk_at(at(4, 1))));
    ASSERT_TYPE("f32[4, 5, 3]", &m, mk_batchnorm(&m, x, c4, c4, c4, c4, 0, 1e-5, mk_at(at(4, 2))));
    EXPECT_ERROR(&d, mk_batchnorm(&m, x, c5, c4, c5, c5, 1, 1e-5, mk_at(at(4, 3))), "var must be f32[5], found f32[4]");
    ASSERT_TYPE("f32[4]", &m, mk_leaky_relu(&m, c4, 0.1, at(5, 1)));
    ASSERT_TYPE("f32[4]", &m, mk_hardsigmoid(&m, c4, 0.2, 0.5, at(5, 2)));
    ASSERT_TYPE("f32[4]", &m, mk_reciprocal(&m, c4, at(5, 3)));
    ASSERT_TYPE("f32[]", &m, mk_reciprocal(&m, mk_literal(&m, 4, KILN_I64, at(5, 4)), at(5, 5)));
    EXPECT_ERROR(&d, mk_leaky_relu(&m, k, 0.1, at(5, 6)), "floating-point");
    ASSERT_TYPE("bool[4]", &m, mk_isnan(&m, c4, at(6, 1)));
    ASSERT_TYPE("bool[3]", &m, mk_isnan(&m, k, at(6, 2)));
    ASSERT_TYPE("bool[4]", &m, mk_isinf(&m, c4, true, false, at(6, 3)));
    ASSERT_TYPE("bool[4]", &m, mk_isinf(&m, c4, false, false, at(6, 4)));
    /* windows: asymmetric padding, ceil_mode (the last window may not start in the padding after) */
    Dim xs[4] = {1, 1, 7, 6};
    int img = mk_param(&m, "img", KILN_F32, 4, xs, at(7, 1));
    MkPool p = {.kernel = {2, 2}, .stride = {2, 2}, .ceil_mode = true, .count_include_pad = true};
    ASSERT_TYPE("f32[1, 1, 4, 3]", &m, mk_pool2d(&m, OP_AVGPOOL2D, img, &p, mk_at(at(7, 2))));
    MkPool q = {.kernel = {3, 3}, .stride = {2, 2}, .pad = {1, 1, 1, 0}, .ceil_mode = true};
    ASSERT_TYPE("f32[1, 1, 4, 3]", &m, mk_pool2d(&m, OP_MAXPOOL2D, img, &q, mk_at(at(7, 3))));
    q.pad[3] = 2;
    EXPECT_ERROR(&d, mk_pool2d(&m, OP_MAXPOOL2D, img, &q, mk_at(at(7, 4))), "at most half");
    Dim ws[4] = {2, 1, 3, 2};
    int w = mk_param(&m, "w", KILN_F32, 4, ws, at(8, 1));
    MkConv cv = {.stride = {1, 1}, .pad = {0, 1, 2, 0}, .dilation = {1, 1}, .groups = 1};
    ASSERT_TYPE("f32[1, 2, 6, 7]", &m, mk_conv2d(&m, img, w, MK_NONE, &cv, mk_at(at(8, 2))));
    cv.pad[1] = -1;
    EXPECT_ERROR(&d, mk_conv2d(&m, img, w, MK_NONE, &cv, mk_at(at(8, 3))), "at least 0");
    ASSERT_EQ(0, d.items.len);
    check_all_nodes(g);
    mk_free(&m);
    ir_graph_destroy(g);
    diag_clear(&d);
    arena_free(arena);
}

/* mk_check_node names a node a pass could have broken. */
static void test_check(void) {
    Arena *arena = arena_new();
    DiagList d = {0};
    IRGraph *g = ir_graph_new(arena, "check");
    IRMaker m;
    mk_init(&m, g, &d);
    Dim s23[2] = {2, 3}, s3[1] = {3};
    int a = mk_param(&m, "a", KILN_F32, 2, s23, at(1, 1));
    int b = mk_param(&m, "b", KILN_F32, 1, s3, at(1, 2));
    int sum = mk_binary(&m, OP_ADD, a, b, at(2, 1));
    int64_t ax = 1;
    int red = mk_reduce(&m, OP_SUM, sum, &ax, 1, false, mk_at(at(3, 1)));
    int nodes = g->nodes.len;
    char why[256];
    ASSERT(mk_check_node(g, sum, why, sizeof why));
    ASSERT_EQ(nodes, g->nodes.len); /* checking adds nothing */
    ir_node(g, sum)->shape[1] = 4;  /* a wrong result shape */
    ASSERT(!mk_check_node(g, sum, why, sizeof why) && strstr(why, "f32[2, 3]"));
    ir_node(g, sum)->shape[1] = 3;
    ir_node(g, red)->dtype = KILN_I64; /* a wrong result dtype */
    ASSERT(!mk_check_node(g, red, why, sizeof why) && strstr(why, "f32[2]"));
    ir_node(g, red)->dtype = KILN_F32;
    ir_node(g, red)->ints[0] = 5; /* an attribute out of range */
    ASSERT(!mk_check_node(g, red, why, sizeof why) && strstr(why, "out of range"));
    ASSERT_EQ(nodes, g->nodes.len);
    ASSERT_EQ(0, d.items.len);
    mk_free(&m);
    ir_graph_destroy(g);
    arena_free(arena);
}

/* A built graph runs on the reference interpreter. */
static void test_runs(void) {
    Arena *arena = arena_new();
    DiagList d = {0};
    IRGraph *g = ir_graph_new(arena, "run");
    IRMaker m;
    mk_init(&m, g, &d);
    Dim s2[1] = {2}, s22[2] = {2, 2};
    int w = mk_param(&m, "w", KILN_F32, 2, s22, at(1, 1));
    int x = mk_param(&m, "x", KILN_F32, 1, s2, at(1, 2));
    int y = mk_matmul(&m, w, x, at(2, 1)); /* [2] */
    y = mk_binary(&m, OP_SUB, y, mk_literal(&m, 1, KILN_I64, at(2, 2)), at(2, 3));
    mk_result(&m, mk_unary(&m, OP_RELU, y, at(3, 1)));
    ASSERT_EQ(0, d.nerrors);
    KilnTensor in[2] = {0}, out[1] = {0};
    int64_t wd[2] = {2, 2}, xd[1] = {2};
    ASSERT(kiln_tensor_init(&in[0], KILN_F32, 2, wd));
    ASSERT(kiln_tensor_init(&in[1], KILN_F32, 1, xd));
    float wv[4] = {1, 2, -3, 4}, xv[2] = {1, 0.5f};
    memcpy(in[0].data, wv, sizeof wv);
    memcpy(in[1].data, xv, sizeof xv);
    char err[256];
    ASSERT(ref_run(g, in, out, err, sizeof err));
    const float *r = out[0].data;
    ASSERT(r[0] == 1.0f && r[1] == 0.0f); /* relu([2 - 1, -1 - 1]) */
    kiln_tensor_free(&in[0]), kiln_tensor_free(&in[1]), kiln_tensor_free(&out[0]);
    mk_free(&m);
    ir_graph_destroy(g);
    arena_free(arena);
}

int main(void) {
    test_importer_graph();
    test_rules();
    test_v1();
    test_check();
    test_runs();
    printf("test_make: %d passed, %d failed\n", npass, nfail);
    return nfail != 0;
}
