/* simplify.c - algebraic simplification.
 *
 * Contract: requires a verified graph; produces an equivalent one with these
 * identities applied (x stands for any node; each rewrite needs the result
 * to have x's dtype and shape, so no broadcast is lost):
 *     x * 1, 1 * x, x / 1             -> x
 *     x - 0                           -> x   (floats: only +0; x - (-0) is x + 0)
 *     x + (-0), (-0) + x              -> x   (floats; ints: any zero)
 *     x + 0, 0 + x (+0, floats)       -> x   only with --fast-math: -0 + 0 is +0
 *     neg(neg(x))                     -> x
 *     cast(x, dtype of x)             -> x
 *     cast(cast(x, B), C)             -> cast(x, C), or x when C is x's dtype,
 *                                        if every value of x's dtype is exact in B
 *     transpose(transpose(x))         -> one transpose (composed), x if identity
 *     transpose(x, identity)          -> x
 *     reshape(reshape(x)), reshape(x, shape of x)       -> one reshape, or x
 *     broadcast(broadcast(x)), broadcast(x, shape of x) -> one broadcast, or x
 *     slice(x) covering all of x, pad(x) with zero widths -> x
 *     where(c, x, x)                  -> x
 * Every rewrite but the --fast-math one is exact in IEEE arithmetic (NaNs
 * and signed zeros included), so results do not change, bit for bit.
 * Inputs are looked at after their own simplification, so chains collapse
 * in one pass; nodes left dead go to dce. */
#include "passes/pass.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Whether new node `id` is a constant equal to v (with v's sign for zeros
 * when `signed_zero`). */
static bool is_const(Rewriter *rw, int id, double v, bool signed_zero) {
    double x;
    if (!node_const_value(rw_node(rw, id), &x)) return false;
    if (x != v) return false;
    return !signed_zero || signbit(x) == signbit(v);
}

/* Every value of dtype a is exactly representable in dtype b. */
static bool exact_widening(KilnDType a, KilnDType b) {
    if (a == b || a == KILN_BOOL) return true;
    switch (b) {
    case KILN_F32: return a == KILN_F16 || a == KILN_BF16;
    case KILN_F64: return a == KILN_F16 || a == KILN_BF16 || a == KILN_F32 || a == KILN_I32;
    case KILN_I64: return a == KILN_I32;
    default: return false;
    }
}

/* x if the old node n may be replaced by new node x: same dtype and shape. */
static int same_type(Rewriter *rw, const Node *n, int x) {
    const Node *xn = rw_node(rw, x);
    return xn->dtype == n->dtype && same_shape_dims(xn->rank, xn->shape, n->rank, n->shape) ? x : -1;
}

static bool identity_perm(const int64_t *perm, int n) {
    for (int k = 0; k < n; k++)
        if (perm[k] != k) return false;
    return true;
}

/* The new node that old node `id` simplifies to, or -1 to copy it. */
static int simplify_node(Rewriter *rw, int id, PassCtx *ctx) {
    const Node *n = ir_node(rw->old, id);
    int a = n->nin > 0 ? rw->map[n->in[0]] : -1, b = n->nin > 1 ? rw->map[n->in[1]] : -1;
    bool fl = dtype_is_float(n->dtype);
    int r;
    switch (n->op) {
    case OP_MUL:
        if (is_const(rw, b, 1, false) && (r = same_type(rw, n, a)) >= 0) return pass_remark(ctx, n, "x * 1 -> x"), r;
        if (is_const(rw, a, 1, false) && (r = same_type(rw, n, b)) >= 0) return pass_remark(ctx, n, "1 * x -> x"), r;
        return -1;
    case OP_DIV:
        if (is_const(rw, b, 1, false) && (r = same_type(rw, n, a)) >= 0) return pass_remark(ctx, n, "x / 1 -> x"), r;
        return -1;
    case OP_SUB:
        if ((fl && !ctx->opt->fast_math ? is_const(rw, b, 0.0, true) : is_const(rw, b, 0, false)) &&
            (r = same_type(rw, n, a)) >= 0)
            return pass_remark(ctx, n, "x - 0 -> x"), r;
        return -1;
    case OP_ADD:
        for (int side = 0; side < 2; side++) {
            int c = side ? a : b, x = side ? b : a;
            bool zero = !fl || ctx->opt->fast_math ? is_const(rw, c, 0, false) : is_const(rw, c, -0.0, true);
            if (zero && (r = same_type(rw, n, x)) >= 0) {
                pass_remark(ctx, n, "%s -> x%s", side ? "0 + x" : "x + 0",
                            fl && !is_const(rw, c, -0.0, true) ? " (--fast-math)" : "");
                return r;
            }
        }
        return -1;
    case OP_NEG: {
        const Node *an = rw_node(rw, a);
        if (an->op == OP_NEG) return pass_remark(ctx, n, "neg(neg(x)) -> x"), an->in[0];
        return -1;
    }
    case OP_CAST: {
        const Node *an = rw_node(rw, a);
        if (an->dtype == n->dtype) return pass_remark(ctx, n, "cast to the same dtype -> x"), a;
        if (an->op == OP_CAST) {
            int x = an->in[0];
            if (!exact_widening(rw_node(rw, x)->dtype, an->dtype)) return -1;
            if (rw_node(rw, x)->dtype == n->dtype) return pass_remark(ctx, n, "cast(cast(x, wider), dtype of x) -> x"), x;
            pass_remark(ctx, n, "cast(cast(x, wider), %s) -> cast(x, %s)", kiln_dtype_name(n->dtype),
                        kiln_dtype_name(n->dtype));
            return rw_clone(rw, id, 1, &x);
        }
        return -1;
    }
    case OP_TRANSPOSE: {
        if (identity_perm(n->ints, n->nints)) return pass_remark(ctx, n, "identity transpose -> x"), a;
        const Node *an = rw_node(rw, a);
        if (an->op != OP_TRANSPOSE) return -1;
        /* output axis k is inner axis perm[k], which is x's axis inner_perm[perm[k]] */
        int64_t *perm = xmalloc(sizeof(int64_t) * ((size_t)n->nints + 1));
        for (int k = 0; k < n->nints; k++) perm[k] = an->ints[n->ints[k]];
        int x = an->in[0];
        if (identity_perm(perm, n->nints)) {
            free(perm);
            return pass_remark(ctx, n, "transpose(transpose(x)) -> x"), x;
        }
        r = rw_clone(rw, id, 1, &x);
        rw_set_ints(rw, r, perm, n->nints);
        free(perm);
        pass_remark(ctx, n, "transpose(transpose(x)) -> one transpose");
        return r;
    }
    case OP_RESHAPE:
    case OP_BROADCAST: {
        if ((r = same_type(rw, n, a)) >= 0) return pass_remark(ctx, n, "%s to the same shape -> x", op_info[n->op].name), r;
        const Node *an = rw_node(rw, a);
        if (an->op != n->op) return -1;
        int x = an->in[0];
        if ((r = same_type(rw, n, x)) >= 0) return pass_remark(ctx, n, "%s(%s(x)) -> x", op_info[n->op].name, op_info[n->op].name), r;
        pass_remark(ctx, n, "%s(%s(x)) -> one %s", op_info[n->op].name, op_info[n->op].name, op_info[n->op].name);
        return rw_clone(rw, id, 1, &x);
    }
    case OP_SLICE: {
        const Node *an = rw_node(rw, a);
        if (!same_shape_dims(an->rank, an->shape, n->rank, n->shape)) return -1;
        for (int k = 0; k < n->rank; k++)
            if (n->ints[2 * k] != 0 || (n->ints[2 * k + 1] != 1 && (DIM_IS_SYM(n->shape[k]) || n->shape[k] > 1)))
                return -1;
        return pass_remark(ctx, n, "slice of everything -> x"), a;
    }
    case OP_PAD:
        for (int k = 0; k < n->nints; k++)
            if (n->ints[k] != 0) return -1;
        if ((r = same_type(rw, n, a)) >= 0) return pass_remark(ctx, n, "pad by nothing -> x"), r;
        return -1;
    case OP_WHERE: {
        int c = rw->map[n->in[2]];
        if (b == c && (r = same_type(rw, n, b)) >= 0) return pass_remark(ctx, n, "where(c, x, x) -> x"), r;
        return -1;
    }
    default: return -1;
    }
}

IRGraph *pass_simplify(Arena *arena, const IRGraph *g, PassCtx *ctx) {
    Rewriter rw;
    rw_init(&rw, arena, g);
    for (int id = 0; id < g->nodes.len; id++) {
        int r = ir_node(g, id)->op == OP_PARAM ? -1 : simplify_node(&rw, id, ctx);
        if (r >= 0) rw.map[id] = r;
        else rw_copy(&rw, id);
    }
    return rw_finish(&rw);
}
