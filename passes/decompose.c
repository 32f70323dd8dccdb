/* decompose.c - composite ops into primitives.
 *
 * Contract: requires a verified graph; produces an equivalent one without
 * softmax, log_softmax, layernorm, rmsnorm or gelu: each becomes the
 * elementwise ops and keepdims reductions that define it (docs/passes.md):
 *     softmax(x)     = e / sum(e),  e = exp(x - max(x))
 *     log_softmax(x) = (x - max(x)) - log(sum(exp(x - max(x))))
 *     layernorm      = (x - mean(x)) * rsqrt(mean((x - mean(x))^2) + eps) * gamma + beta
 *     rmsnorm        = x * rsqrt(mean(x * x) + eps) * gamma
 *     gelu(x)        = 0.5 * x * (1 + erf(x / sqrt(2)))        (tanh form when approximate),
 *                      x = max(x, -40) first, so that gelu(-inf) is -0 as the op gives
 * gamma and beta are reshaped to broadcast along the normalised axis.  Not
 * bit-exact: every primitive rounds to the dtype where the composite rounds
 * once (a few ulps apart; tests/unit/test_passes.c bounds it).  Not in the
 * default pipeline: the scheduler's row kernels beat the decomposed form
 * (docs/fusion.md); useful for backends without composites and for tests. */
#include "passes/pass.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    Rewriter *rw;
    KilnDType dt;
    Loc loc;
} Builder;

static int konst(Builder *b, double v) { return rw_const(b->rw, b->dt, 0, NULL, v, b->loc); }

/* An elementwise op over new nodes x (and y); the shape is the broadcast
 * of both (their ranks and sizes agree or are 1 here). */
static int ew(Builder *b, Op op, int x, int y) {
    const Node *xn = rw_node(b->rw, x);
    int rank = xn->rank;
    const Dim *shape = xn->shape; /* arena memory: stays valid across adds */
    if (y >= 0 && rw_node(b->rw, y)->rank > rank) {
        rank = rw_node(b->rw, y)->rank;
        shape = rw_node(b->rw, y)->shape;
    } else if (y >= 0 && rw_node(b->rw, y)->rank == rank) {
        /* same rank: a size-1 axis of x takes y's size (keepdims statistics) */
        const Dim *ys = rw_node(b->rw, y)->shape;
        Dim *s = ARENA_ARRAY(b->rw->g->arena, Dim, rank + 1);
        for (int k = 0; k < rank; k++) s[k] = shape[k] == 1 ? ys[k] : shape[k];
        shape = s;
    }
    int in[2] = {x, y};
    return rw_add(b->rw, op, b->dt, rank, shape, y >= 0 ? 2 : 1, in, b->loc);
}

/* A keepdims reduction of x over `axis`. */
static int reduce_keep(Builder *b, Op op, int x, int axis) {
    const Node *xn = rw_node(b->rw, x);
    int rank = xn->rank;
    Dim *shape = ARENA_ARRAY(b->rw->g->arena, Dim, rank + 1);
    memcpy(shape, xn->shape, sizeof(Dim) * (size_t)rank);
    shape[axis] = 1;
    int r = rw_add(b->rw, op, b->dt, rank, shape, 1, &x, b->loc);
    int64_t ax = axis;
    rw_set_ints(b->rw, r, &ax, 1);
    rw_node(b->rw, r)->flag = true;
    return r;
}

/* gamma/beta [n] shaped to broadcast along `axis` of a rank-`rank` tensor. */
static int along_axis(Builder *b, int v, int axis, int rank) {
    if (axis == rank - 1) return v;
    int r = rank - axis;
    Dim *shape = ARENA_ARRAY(b->rw->g->arena, Dim, r);
    shape[0] = rw_node(b->rw, v)->shape[0];
    for (int k = 1; k < r; k++) shape[k] = 1;
    return rw_add(b->rw, OP_RESHAPE, b->dt, r, shape, 1, &v, b->loc);
}

static int decompose_node(Rewriter *rw, int id) {
    const Node *n = ir_node(rw->old, id);
    Builder b = {rw, n->dtype, n->loc};
    int x = n->nin > 0 ? rw->map[n->in[0]] : -1;
    int axis = n->nints > 0 ? (int)n->ints[0] : 0, rank = n->rank;
    switch (n->op) {
    case OP_SOFTMAX:
    case OP_LOG_SOFTMAX: {
        int d = ew(&b, OP_SUB, x, reduce_keep(&b, OP_MAX, x, axis));
        int e = ew(&b, OP_EXP, d, -1);
        int s = reduce_keep(&b, OP_SUM, e, axis);
        return n->op == OP_SOFTMAX ? ew(&b, OP_DIV, e, s) : ew(&b, OP_SUB, d, ew(&b, OP_LOG, s, -1));
    }
    case OP_LAYERNORM: {
        int d = ew(&b, OP_SUB, x, reduce_keep(&b, OP_MEAN, x, axis));
        int var = reduce_keep(&b, OP_MEAN, ew(&b, OP_MUL, d, d), axis);
        int inv = ew(&b, OP_RSQRT, ew(&b, OP_ADD, var, konst(&b, n->value)), -1);
        int y = ew(&b, OP_MUL, ew(&b, OP_MUL, d, inv), along_axis(&b, rw->map[n->in[1]], axis, rank));
        return ew(&b, OP_ADD, y, along_axis(&b, rw->map[n->in[2]], axis, rank));
    }
    case OP_RMSNORM: {
        int ms = reduce_keep(&b, OP_MEAN, ew(&b, OP_MUL, x, x), axis);
        int inv = ew(&b, OP_RSQRT, ew(&b, OP_ADD, ms, konst(&b, n->value)), -1);
        return ew(&b, OP_MUL, ew(&b, OP_MUL, x, inv), along_axis(&b, rw->map[n->in[1]], axis, rank));
    }
    case OP_GELU: {
        /* from max(x, -40): the same formula, but -0 (its limit, which gelu
         * has reached by -40 in every dtype) instead of -inf * 0 = NaN at -inf */
        x = ew(&b, OP_MAXIMUM, x, konst(&b, -40.0));
        int t;
        if (n->flag) { /* tanh(sqrt(2/pi) * (x + 0.044715 x^3)) */
            int x3 = ew(&b, OP_MUL, ew(&b, OP_MUL, x, x), x);
            int inner = ew(&b, OP_ADD, x, ew(&b, OP_MUL, konst(&b, 0.044715), x3));
            t = ew(&b, OP_TANH, ew(&b, OP_MUL, konst(&b, sqrt(2.0 / M_PI)), inner), -1);
        } else {
            t = ew(&b, OP_ERF, ew(&b, OP_DIV, x, konst(&b, M_SQRT2)), -1);
        }
        return ew(&b, OP_MUL, ew(&b, OP_MUL, konst(&b, 0.5), x), ew(&b, OP_ADD, konst(&b, 1.0), t));
    }
    default: return -1;
    }
}

IRGraph *pass_decompose(Arena *arena, const IRGraph *g, PassCtx *ctx) {
    Rewriter rw;
    rw_init(&rw, arena, g);
    for (int id = 0; id < g->nodes.len; id++) {
        const Node *n = ir_node(g, id);
        int first_new = rw.g->nodes.len;
        int r = decompose_node(&rw, id);
        if (r < 0) {
            rw_copy(&rw, id);
            continue;
        }
        rw.map[id] = r;
        pass_remark(ctx, n, "became %d primitive nodes", rw.g->nodes.len - first_new);
    }
    return rw_finish(&rw);
}
