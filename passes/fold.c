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

/* The same double, zero signs and NaN-ness included. */
static bool same_value(double a, double b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return a == b && signbit(a) == signbit(b);
}

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

/* A reduction of the fill value v; false where folding would not be exact. */
static bool fold_reduce(const Node *n, const Node *x, double v, double *out) {
    int64_t count = reduced_count(n, x);
    if (count < 1) return false;
    KilnDType dt = n->dtype;
    bool narrow_float = dt == KILN_F32 || dt == KILN_F16 || dt == KILN_BF16;
    switch (n->op) {
    case OP_ARGMAX:
    case OP_ARGMIN: *out = 0; return true; /* the first of equals (or the first NaN) */
    case OP_MAX:
    case OP_MIN: *out = v; return true;
    case OP_SUM: {
        if (dtype_is_int(dt)) { /* wrapping int64 arithmetic: count additions == one product */
            double ops[2] = {v, (double)count};
            *out = ref_eval_elementwise(OP_MUL, dt, false, ops);
            return true;
        }
        if (v == 0 || isnan(v) || isinf(v)) { /* the sum starts at +0: +0 + -0 is +0 */
            *out = v == 0 ? 0.0 : v;
            return true;
        }
        /* every partial sum k*v needs at most 24 + 29 significant bits: exact in double */
        if (!narrow_float || count > (INT64_C(1) << 29)) return false;
        *out = ref_round_to_dtype(v * (double)count, dt);
        return true;
    }
    case OP_MEAN:
        if (v == 0 || isnan(v) || isinf(v)) {
            *out = v == 0 ? 0.0 : v;
            return true;
        }
        if (!narrow_float || count > (INT64_C(1) << 29)) return false;
        *out = ref_round_to_dtype(v * (double)count / (double)count, dt);
        return true;
    case OP_PROD:
        if (count == 1 || v == 1 || (v == 0 && !signbit(v))) {
            *out = count == 1 ? v : v == 1 ? 1.0 : 0.0;
            return true;
        }
        return false;
    default: return false;
    }
}

/* The value of old node `id` whose new inputs ins[] are all constants with
 * values vals[]; false if it is not folded. */
static bool fold_value(const Node *n, const double *vals, double *out) {
    switch (op_info[n->op].kind) {
    case OK_UNARY:
    case OK_BINARY:
    case OK_COMPARE:
    case OK_LOGIC:
    case OK_WHERE:
    case OK_CAST: *out = ref_eval_elementwise(n->op, n->dtype, n->flag, vals); return true;
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
            if (widths && !same_value(ref_round_to_dtype(n->value, n->dtype), vals[0])) return false;
            *out = vals[0];
            return true;
        }
        case OP_CONCAT:
            for (int k = 1; k < n->nin; k++)
                if (!same_value(vals[k], vals[0])) return false;
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
        double *vals = xmalloc(sizeof(double) * ((size_t)n->nin + 1));
        bool all_const = true;
        for (int k = 0; k < n->nin && all_const; k++) all_const = node_const_value(rw_mapped(&rw, n->in[k]), &vals[k]);
        double v;
        bool folded = false;
        if (all_const) {
            if (op_info[n->op].kind == OK_REDUCE)
                folded = fold_reduce(n, ir_node(g, n->in[0]), vals[0], &v);
            else
                folded = fold_value(n, vals, &v);
        }
        free(vals);
        if (!folded) {
            rw_copy(&rw, id);
            continue;
        }
        rw.map[id] = rw_const(&rw, n->dtype, n->rank, n->shape, v, n->loc);
        pass_remark(ctx, n, "folded to the constant %.9g (%s)", rw_node(&rw, rw.map[id])->value,
                    kiln_dtype_name(n->dtype));
    }
    return rw_finish(&rw);
}
