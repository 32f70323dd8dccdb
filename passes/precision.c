/* precision.c - mixed precision (--precision=f16|bf16|auto).
 *
 * Contract: requires a verified graph; produces one in which each chosen
 * f32 matmul or conv2d reads its inputs cast to a 16-bit float dtype and
 * produces that dtype, followed by a cast back to f32 for its users:
 *     matmul(a, b)  ->  cast(matmul(cast(a, lo), cast(b, lo)), f32)
 * The kernels accumulate 16-bit products in f32 already (ir/kernel.h),
 * and the scheduler fuses the cast back into the kernel's epilogue; only
 * the inputs and the stored product are rounded.  Everything else -
 * elementwise ops, reductions, softmax, layernorm and rmsnorm statistics -
 * stays f32.  Results keep their declared dtypes.
 *
 * Which ops (docs/passes.md, "Mixed precision"):
 *   f16, bf16: every f32 matmul and conv2d.
 *   auto: bf16 for an f32 matmul or conv2d whose reduction length K
 *         (matmul: the inner dimension; conv2d: C/groups * KH * KW) is known
 *         and at least 64, unless its value reaches softmax, log_softmax,
 *         exp, argmax or argmin through elementwise and data-movement ops
 *         only (logits: an absolute error there becomes a relative error of
 *         the probabilities).  Never f16: its range (65504 at most, 6e-5
 *         smallest normal) needs knowledge of the values that a compiler
 *         does not have.
 * The casts this inserts in front of a low-precision producer's cast back
 * (cast(cast(h, f32), bf16)) are removed by simplify, duplicates by cse. */
#include "passes/pass.h"

#include <stdlib.h>

enum { AUTO_MIN_K = 64 };

/* The reduction length of a matmul or conv2d, or -1 when symbolic. */
static int64_t reduction_length(const IRGraph *g, const Node *n) {
    if (n->op == OP_MATMUL) {
        const Node *a = ir_node(g, n->in[0]);
        Dim k = a->shape[a->rank - 1];
        return DIM_IS_SYM(k) ? -1 : k;
    }
    const Node *w = ir_node(g, n->in[1]);
    int64_t k = 1;
    for (int i = 1; i < 4; i++) {
        if (DIM_IS_SYM(w->shape[i])) return -1;
        k *= w->shape[i];
    }
    return k;
}

static bool sensitive_sink(Op op) {
    return op == OP_SOFTMAX || op == OP_LOG_SOFTMAX || op == OP_EXP || op == OP_ARGMAX || op == OP_ARGMIN;
}

static bool transparent(Op op) { return op_is_elementwise(op) || op_info[op].kind == OK_SHAPE; }

/* The first node that makes `id`'s value sensitive (see the contract), or -1. */
static int reaches_sensitive(const IRGraph *g, int id) {
    int n = g->nodes.len;
    bool *seen = xcalloc((size_t)n + 1, 1);
    seen[id] = true;
    int found = -1;
    /* users come after their inputs: one forward sweep follows every path */
    for (int u = id + 1; u < n && found < 0; u++) {
        const Node *un = ir_node(g, u);
        bool from_seen = false;
        for (int k = 0; k < un->nin; k++) from_seen = from_seen || seen[un->in[k]];
        if (!from_seen) continue;
        if (sensitive_sink(un->op)) found = u;
        else if (transparent(un->op)) seen[u] = true;
    }
    free(seen);
    return found;
}

/* The dtype old node n should run in: f32 (unchanged), f16 or bf16. */
static KilnDType choose(const IRGraph *g, const Node *n, int id, PassCtx *ctx) {
    if ((n->op != OP_MATMUL && n->op != OP_CONV2D) || n->dtype != KILN_F32) return KILN_F32;
    switch (ctx->opt->precision) {
    case PASS_PREC_F16: return KILN_F16;
    case PASS_PREC_BF16: return KILN_BF16;
    case PASS_PREC_F32: return KILN_F32;
    case PASS_PREC_AUTO: break;
    }
    int64_t k = reduction_length(g, n);
    if (k < AUTO_MIN_K) {
        if (ctx->opt->remarks) {
            PassCtx quiet = *ctx; /* a remark, not a rewrite */
            if (k < 0) pass_remark(&quiet, n, "stays f32: its reduction length is symbolic");
            else pass_remark(&quiet, n, "stays f32: reduction length %lld < %d", (long long)k, AUTO_MIN_K);
        }
        return KILN_F32;
    }
    int s = reaches_sensitive(g, id);
    if (s >= 0) {
        if (ctx->opt->remarks) {
            PassCtx quiet = *ctx;
            const Node *sn = ir_node(g, s);
            pass_remark(&quiet, n, "stays f32: its value reaches %s@%d:%d", op_info[sn->op].name, sn->loc.line,
                        sn->loc.col);
        }
        return KILN_F32;
    }
    return KILN_BF16;
}

IRGraph *pass_precision(Arena *arena, const IRGraph *g, PassCtx *ctx) {
    Rewriter rw;
    rw_init(&rw, arena, g);
    for (int id = 0; id < g->nodes.len; id++) {
        const Node *n = ir_node(g, id);
        KilnDType lo = choose(g, n, id, ctx);
        if (lo == KILN_F32) {
            rw_copy(&rw, id);
            continue;
        }
        int in[3];
        for (int k = 0; k < n->nin && k < 3; k++) {
            int x = rw.map[n->in[k]];
            int rank = rw_node(&rw, x)->rank;
            const Dim *shape = rw_node(&rw, x)->shape;
            in[k] = rw_add(&rw, OP_CAST, lo, rank, shape, 1, &x, n->loc);
        }
        int h = rw_clone(&rw, id, n->nin, in);
        rw_node(&rw, h)->dtype = lo;
        rw.map[id] = rw_add(&rw, OP_CAST, KILN_F32, n->rank, n->shape, 1, &h, n->loc);
        int64_t k = reduction_length(g, n);
        pass_remark(ctx, n, "runs in %s (reduction length %lld), f32 accumulation", kiln_dtype_name(lo), (long long)k);
    }
    return rw_finish(&rw);
}
