/* fold.c - constant folding.
 *
 * Contract: requires a verified graph; produces one in which no elementwise
 * node has only constant inputs (OP_CONST, or OP_FULL fills): each became a
 * constant of its own dtype and shape (OP_CONST at rank 0, else OP_FULL).
 * Also folded: views of a fill (reshape, transpose, broadcast, slice), pad
 * and concat whose every element has one value, and reductions of a fill
 * where the result is exactly what the reference interpreter computes
 * (sum/mean of f32/f16/bf16 with at most 2^29 terms, any int sum, max, min,
 * argmax, argmin, and prod where trivial).  The scalar arithmetic is
 * ref_eval_elementwise, so folding never changes a reference result, bit
 * for bit.  The inputs a fold made dead are left for dce. */
#include "passes/pass.h"

#include <math.h>
#include <stdlib.h>

/* The number of elements a reduction folds into each result, or -1 when a
 * reduced dimension is symbolic. */
static int64_t reduced_count(const Node *n, const Node *x) {
    bool *red = xcalloc((size_t)x->rank + 1, 1);
    for (int i = 0; i < n->nints; i++) {
        int64_t a = n->ints[i] < 0 ? n->ints[i] + x->rank : n->ints[i];
        if (a >= 0 && a < x->rank) red[a] = true;
    }
    if (n->nints == 0 && (n->op == OP_ARGMAX || n->op == OP_ARGMIN))
        for (int k = 0; k < x->rank; k++) red[k] = true;
    int64_t count = 1;
    for (int k = 0; k < x->rank; k++) {
        if (!red[k]) continue;
        if (DIM_IS_SYM(x->shape[k])) count = -1;
        if (count >= 0) count *= x->shape[k];
    }
    free(red);
    return count;
}

/* A reduction of the fill value v (of x's dtype); false where folding would
 * not be exact. */
static bool fold_reduce(const Node *n, const Node *x, Scalar v, Scalar *out) {
    int64_t count = reduced_count(n, x);
    if (count < 1) return false;
    KilnDType dt = n->dtype;
    bool narrow_float = dt == KILN_F32 || dt == KILN_F16 || dt == KILN_BF16;
    if (n->op == OP_ARGMAX || n->op == OP_ARGMIN) { /* the first of equals (or the first NaN) */
        *out = scalar_from_int(0, dt);
        return true;
    }
    if (n->op == OP_MAX || n->op == OP_MIN) {
        *out = v;
        return true;
    }
    if (dtype_is_intlike(dt)) {
        if (n->op == OP_SUM) { /* wrapping arithmetic: count additions are one product */
            Scalar ops[2] = {v, scalar_from_int(count, dt)};
            *out = ref_eval_scalar(OP_MUL, dt, dt, false, ops);
            return true;
        }
        if (n->op == OP_PROD && (count == 1 || v.i == 1 || v.i == 0)) {
            *out = v;
            return true;
        }
        return false;
    }
    double f = v.f;
    switch (n->op) {
    case OP_SUM:
    case OP_MEAN:
        if (f == 0 || isnan(f) || isinf(f)) { /* the sum starts at +0: +0 + -0 is +0 */
            out->f = f == 0 ? 0.0 : f;
            return true;
        }
        /* every partial sum k*v needs at most 24 + 29 significant bits: exact in double */
        if (!narrow_float || count > (INT64_C(1) << 29)) return false;
        *out =
            scalar_from_double(n->op == OP_SUM ? f * (double)count : f * (double)count / (double)count, dt);
        return true;
    case OP_PROD:
        if (count == 1 || f == 1 || (f == 0 && !signbit(f))) {
            out->f = count == 1 ? f : f == 1 ? 1.0 : 0.0;
            return true;
        }
        return false;
    default: return false;
    }
}

/* The value of old node n whose new inputs ins[] are all constants with
 * values vals[] (in_dt: the dtype of its data operands); false if it is not
 * folded. */
static bool fold_value(const Node *n, KilnDType in_dt, const Scalar *vals, Scalar *out) {
    switch (op_info[n->op].kind) {
    case OK_UNARY:
    case OK_BINARY:
    case OK_COMPARE:
    case OK_LOGIC:
    case OK_WHERE:
    case OK_CAST: *out = ref_eval_scalar(n->op, n->dtype, in_dt, n->flag, vals); return true;
    case OK_SHAPE:
        switch (n->op) {
        case OP_RESHAPE:
        case OP_TRANSPOSE:
        case OP_BROADCAST:
        case OP_SLICE:
        case OP_TAKE: *out = vals[0]; return true; /* every element of x is the same */
        case OP_PAD: {
            bool widths = false;
            for (int k = 0; k < n->nints; k++) widths = widths || n->ints[k] != 0;
            if (widths && !scalar_same(ir_node_scalar(n), vals[0], n->dtype)) return false;
            *out = vals[0];
            return true;
        }
        case OP_CONCAT:
            for (int k = 1; k < n->nin; k++)
                if (!scalar_same(vals[k], vals[0], n->dtype)) return false;
            *out = vals[0];
            return true;
        default: return false;
        }
    default: return false;
    }
}

IRGraph *pass_fold(Arena *arena, const IRGraph *g, PassCtx *ctx) {
    Rewriter rw;
    rw_init(&rw, arena, g);
    for (int id = 0; id < g->nodes.len; id++) {
        const Node *n = ir_node(g, id);
        if (n->nin == 0 || n->op == OP_PARAM) {
            rw_copy(&rw, id);
            continue;
        }
        Scalar *vals = xmalloc(sizeof(Scalar) * ((size_t)n->nin + 1));
        bool all_const = true;
        for (int k = 0; k < n->nin && all_const; k++)
            all_const = node_const_scalar(rw_mapped(&rw, n->in[k]), &vals[k]);
        Scalar v;
        bool folded = false;
        if (all_const) {
            KilnDType in_dt = ir_node(g, n->in[n->op == OP_WHERE && n->nin > 1 ? 1 : 0])->dtype;
            if (op_info[n->op].kind == OK_REDUCE)
                folded = fold_reduce(n, ir_node(g, n->in[0]), vals[0], &v);
            else
                folded = fold_value(n, in_dt, vals, &v);
        }
        free(vals);
        if (!folded) {
            rw_copy(&rw, id);
            continue;
        }
        rw.map[id] = rw_const_scalar(&rw, n->dtype, n->rank, n->shape, v, n->loc);
        if (dtype_is_intlike(n->dtype))
            pass_remark(ctx, n, "folded to the constant %lld (%s)", (long long)v.i,
                        kiln_dtype_name(n->dtype));
        else
            pass_remark(ctx, n, "folded to the constant %.9g (%s)", v.f, kiln_dtype_name(n->dtype));
    }
    return rw_finish(&rw);
}
