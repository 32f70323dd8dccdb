/* fuse.c - the fusion scheduler: cuts a concrete graph into kernels and
 * lowers each kernel to the kernel IR (ir/kernel.h).
 *
 * Contract: requires a concrete, verified IRGraph; produces a KProgram whose
 * kernels, run in order, compute every result.  Policy (docs/fusion.md):
 *   - Elementwise and view ops are computed inside their consumers (view ops
 *     become index arithmetic), unless their value must live in a buffer:
 *     a graph result, a value used by several kernels (never recomputed,
 *     except constants and pure views), or the operand of a matmul or conv
 *     that does arithmetic (it would be recomputed for every output).
 *   - Reductions, softmax/layernorm/rmsnorm, matmul, conv and pools are
 *     kernel cores: their elementwise producers become the prologue (loads),
 *     and a chain of single-use elementwise consumers of the same shape
 *     becomes the epilogue (bias, activation, residual).
 *   - Temporaries share one arena; offsets come from a liveness-based
 *     greedy placement (largest first, lowest free offset); an output
 *     stored only at o in place of a same-sized temporary read for the
 *     last time only at o (a residual) shares its bytes.
 * With opt->fuse false every node is its own kernel (-O0). */
#include "passes/fuse.h"

#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- scheduling */

typedef struct {
    const IRGraph *g;
    KProgram *p;
    FuseOptions opt;
    int n;            /* nodes */
    int *nusers;      /* uses by live nodes (+1 per result mention) */
    bool *live;
    bool *is_result;
    bool *materialize; /* value lives in a buffer */
    int *buf;          /* node -> buffer (once materialized and created), else -1 */
    int *core;         /* epilogue node -> the heavy node whose kernel computes it, else -1 */
    int *kernel_of;    /* node -> kernel that writes its buffer */
    bool *rowred;      /* a row reduction computed as a stage of its consumers' kernel */
    int *root;         /* node -> the materialised node whose kernel computes it */
    /* the users of node id are users[user_start[id] .. user_start[id + 1]),
     * ascending (once per input that names id): every "who uses this" is a
     * walk over these, so scheduling stays linear in the graph */
    int *user_start, *users;
    int *mark;     /* scratch for graph walks: the walk's number, or an older one */
    int *buf_mark; /* the same for buffers */
    int buf_mark_cap;
    int walk;
} Sched;

/* Fills s->user_start and s->users. */
static void index_users(Sched *s) {
    const IRGraph *g = s->g;
    s->user_start = xcalloc((size_t)s->n + 2, sizeof(int));
    for (int u = 0; u < s->n; u++)
        for (int i = 0; i < ir_node(g, u)->nin; i++) s->user_start[ir_node(g, u)->in[i] + 1]++;
    for (int id = 0; id < s->n; id++) s->user_start[id + 1] += s->user_start[id];
    s->users = xmalloc(sizeof(int) * ((size_t)s->user_start[s->n] + 1));
    int *fill = xmalloc(sizeof(int) * ((size_t)s->n + 1));
    memcpy(fill, s->user_start, sizeof(int) * (size_t)s->n);
    for (int u = 0; u < s->n; u++)
        for (int i = 0; i < ir_node(g, u)->nin; i++) s->users[fill[ir_node(g, u)->in[i]]++] = u;
    free(fill);
    s->mark = xcalloc((size_t)s->n + 1, sizeof(int));
}

#define FOR_USERS(s, id, u)                                                                                  \
    for (int u##_k = (s)->user_start[id], u;                                                                 \
         u##_k < (s)->user_start[(id) + 1] && ((u) = (s)->users[u##_k], 1); u##_k++)

static bool is_heavy(Op op) { return op_has(op, OPF_HEAVY); }
static bool is_view(Op op) { return op_has(op, OPF_VIEW); }

static bool is_leaf_const(Op op) { return op == OP_CONST || op == OP_FULL || op == OP_IOTA; }

static bool same_shape(const Node *a, const Node *b) {
    return a->rank == b->rank && memcmp(a->shape, b->shape, sizeof(Dim) * (size_t)a->rank) == 0;
}

/* Whether recomputing `id` inside each consumer costs nothing worth a buffer:
 * constants, and views over buffers or constants.  (A walk with its own
 * stack: a chain of views may be as long as the program.) */
static bool is_cheap(Sched *s, int id) {
    VEC(int) todo = {0};
    VEC_PUSH(todo, id);
    int walk = ++s->walk;
    bool cheap = true;
    while (cheap && todo.len) {
        const Node *n = ir_node(s->g, todo.data[--todo.len]);
        if (is_leaf_const(n->op) || n->op == OP_PARAM) continue;
        if (!is_view(n->op)) cheap = false;
        for (int i = 0; cheap && i < n->nin; i++) {
            int x = n->in[i];
            if (s->materialize[x] || s->mark[x] == walk) continue;
            s->mark[x] = walk;
            VEC_PUSH(todo, x);
        }
    }
    VEC_FREE(todo);
    return cheap;
}

/* sum/mean/max/min/prod over the last axis only, keeping it (size 1). */
static bool is_row_reduction(Sched *s, int id) {
    const Node *h = ir_node(s->g, id);
    if (h->op != OP_SUM && h->op != OP_MEAN && h->op != OP_MAX && h->op != OP_MIN && h->op != OP_PROD) return false;
    const Node *x = ir_node(s->g, h->in[0]);
    return x->rank >= 1 && h->nints == 1 && h->ints[0] == x->rank - 1 && h->flag && x->shape[x->rank - 1] > 0;
}

/* Every use of `id` (a row value, shape [..., 1]) is elementwise over the full
 * rows `full`, or elementwise on the row values again (and so on: walked
 * with its own stack). */
static bool row_users_ok(Sched *s, int id, const Node *full) {
    VEC(int) todo = {0};
    VEC_PUSH(todo, id);
    int walk = ++s->walk;
    bool ok = true;
    while (ok && todo.len) {
        int v = todo.data[--todo.len];
        const Node *n = ir_node(s->g, v);
        FOR_USERS(s, v, u) {
            if (!s->live[u] || s->mark[u] == walk) continue;
            s->mark[u] = walk;
            const Node *un = ir_node(s->g, u);
            if (!op_is_elementwise(un->op))
                ok = false;
            else if (same_shape(un, full))
                continue;
            else if (!same_shape(un, n) || s->is_result[u])
                ok = false;
            else
                VEC_PUSH(todo, u);
            if (!ok) break;
        }
    }
    VEC_FREE(todo);
    return ok;
}

/* s->root[] for every value, materialising values shared between kernels. */
static void assign_roots(Sched *s) {
    const IRGraph *g = s->g;
    for (int id = s->n - 1; id >= 0; id--) {
        s->root[id] = id;
        const Node *n = ir_node(g, id);
        if (!s->live[id] || s->materialize[id]) continue;
        int r = -1;
        bool shared = false;
        FOR_USERS(s, id, u) {
            if (!s->live[u]) continue;
            if (r == -1)
                r = s->root[u];
            else if (r != s->root[u])
                shared = true;
        }
        if (shared && !is_heavy(n->op) && !is_cheap(s, id)) s->materialize[id] = true;
        else if (r >= 0 && !shared) s->root[id] = r;
    }
}

/* The most nodes one kernel computes without a buffer between them: past
 * it, code generation (LLVM's O3, the CUDA C compiler) costs more than it
 * grows linearly, so a graph of 100,000 chained statements becomes a few
 * hundred kernels that compile in seconds, not one that takes minutes. */
enum { MAX_FUSED = 256 };

/* Gives a buffer to values where the fused expression of a kernel would pass
 * MAX_FUSED nodes (counted along the inputs, shared values once per use, at
 * most MAX_FUSED + 1 each); true if it made any. */
static bool cut_large_kernels(Sched *s) {
    int *size = xcalloc((size_t)s->n + 1, sizeof(int));
    bool cut = false;
    for (int id = 0; id < s->n; id++) {
        const Node *n = ir_node(s->g, id);
        if (!s->live[id]) continue;
        int total = 1;
        for (int i = 0; i < n->nin; i++) {
            int x = n->in[i];
            if (!s->materialize[x] && s->root[x] == s->root[id]) total += size[x];
            if (total > MAX_FUSED) total = MAX_FUSED + 1;
        }
        size[id] = total;
        bool fusible = op_is_elementwise(n->op) || is_view(n->op);
        if (total > MAX_FUSED && fusible && !s->materialize[id] && s->core[id] < 0 && !s->rowred[id]) {
            s->materialize[id] = true;
            size[id] = 1;
            cut = true;
        }
    }
    free(size);
    return cut;
}

static void plan(Sched *s) {
    const IRGraph *g = s->g;
    for (int i = 0; i < g->results.len; i++) {
        s->live[g->results.data[i]] = true;
        s->is_result[g->results.data[i]] = true;
        s->nusers[g->results.data[i]]++;
    }
    for (int id = s->n - 1; id >= 0; id--) {
        if (!s->live[id]) continue;
        const Node *n = ir_node(g, id);
        for (int i = 0; i < n->nin; i++) {
            s->live[n->in[i]] = true;
            s->nusers[n->in[i]]++;
        }
    }
    for (int id = 0; id < s->n; id++) {
        s->core[id] = -1;
        if (!s->live[id]) continue;
        const Node *n = ir_node(g, id);
        s->materialize[id] = n->op == OP_PARAM || s->is_result[id] || !s->opt.fuse ||
                             (is_heavy(n->op) && !is_leaf_const(n->op));
    }
    if (!s->opt.fuse) return;
    /* Row groups: a reduction over the last axis with keepdims whose value is
     * only used, through elementwise ops on its rows, by elementwise ops over
     * the full rows is computed as a REDUCE stage inside its consumers'
     * kernel: a hand-written softmax or layernorm becomes one row kernel. */
    for (int id = 0; id < s->n; id++) {
        const Node *h = ir_node(g, id);
        if (!s->live[id] || s->is_result[id] || !is_row_reduction(s, id)) continue;
        if (row_users_ok(s, id, ir_node(g, h->in[0]))) {
            s->rowred[id] = true;
            s->materialize[id] = false;
        }
    }
    /* heavy ops: grow the epilogue along single-use users that are
     * elementwise (same shape) or a transpose/reshape: the kernel then
     * stores straight into the layout its consumer reads */
    for (int id = 0; id < s->n; id++) {
        const Node *h = ir_node(g, id);
        if (!s->live[id] || !is_heavy(h->op) || s->rowred[id]) continue;
        int cur = id;
        for (;;) {
            if (s->is_result[cur] || s->nusers[cur] != 1) break;
            int user = -1;
            FOR_USERS(s, cur, u) {
                if (s->live[u]) {
                    user = u;
                    break;
                }
            }
            if (user < 0) break;
            const Node *un = ir_node(g, user);
            bool relayout = un->op == OP_TRANSPOSE || un->op == OP_RESHAPE;
            if (!relayout && !(op_is_elementwise(un->op) && same_shape(un, ir_node(g, cur)))) break;
            /* the user's other operands must not use the core's value again */
            s->core[user] = id;
            if (cur != id) s->materialize[cur] = false;
            s->materialize[id] = false;
            cur = user;
            s->materialize[cur] = true;
        }
    }
    /* matmul and conv operands that do arithmetic get a buffer: inlined, they
     * would be recomputed for every output element */
    for (int id = 0; id < s->n; id++) {
        const Node *n = ir_node(g, id);
        if (!s->live[id] || (n->op != OP_MATMUL && n->op != OP_CONV2D)) continue;
        for (int i = 0; i < n->nin; i++) {
            int x = n->in[i];
            if (!s->materialize[x] && !is_cheap(s, x) && s->core[x] < 0) s->materialize[x] = true;
        }
    }
    /* Which kernel each value ends up in (its root).  Walking users before
     * producers: an elementwise or view value whose users all sit in one
     * kernel is computed there (once per use site, shared by the kernel's
     * CSE); used by several kernels it gets a buffer, unless it is cheap.
     * A row reduction whose consumers did not end in one kernel over its
     * full rows gets a buffer after all, and the roots are worked out again,
     * as they are when a kernel would grow past MAX_FUSED nodes. */
    for (bool changed = true; changed;) {
        assign_roots(s);
        changed = cut_large_kernels(s);
        for (int id = 0; id < s->n; id++) {
            if (!s->rowred[id]) continue;
            int r = s->root[id];
            const Node *rn = ir_node(g, r), *x = ir_node(g, ir_node(g, id)->in[0]);
            bool ok = r != id && s->materialize[r] && !is_heavy(rn->op) && s->core[r] < 0 && same_shape(rn, x);
            if (!ok) {
                s->rowred[id] = false;
                s->materialize[id] = true;
                changed = true;
            }
        }
    }
    /* a heavy op whose epilogue was cut short still needs its own buffer */
    bool *absorbed = xcalloc((size_t)s->n + 1, 1);
    for (int u = 0; u < s->n; u++)
        if (s->core[u] >= 0 && s->materialize[u]) absorbed[s->core[u]] = true;
    for (int id = 0; id < s->n; id++) {
        const Node *n = ir_node(g, id);
        if (!s->live[id] || !is_heavy(n->op) || s->rowred[id]) continue;
        if (!absorbed[id]) s->materialize[id] = true;
    }
    free(absorbed);
}

/* ---------------------------------------------------------------- lowering */

/* A delinearisation made in this kernel: lin split over dims into idx.
 * Linearising the same idx over the same dims gives lin back. */
typedef struct {
    int lin;
    int rank;
    const Dim *dims;
    int *idx;
} Delin;

/* A value already lowered in this kernel: node `id` at index idx (rank
 * instruction ids) under `guard` in scope `stage` is instruction `value`. */
typedef struct {
    int id, guard, stage, rank;
    int *idx;
    int value;
} Lowered;

typedef struct {
    Sched *s;
    Kernel *k;
    VEC(Delin) delins;
    /* lower_value's memo: an open-addressing hash (slot = 1 + index into
     * lowered, 0 empty), so a value used at many places of one kernel is
     * lowered once, not once per path to it. */
    VEC(Lowered) lowered;
    int *memo;
    int memo_cap;    /* a power of two, at least twice lowered.len */
    int stage;       /* scope of values that depend on the current stage */
    int core;        /* node whose value is core_value, -1 */
    int core_value;
    int *hi;         /* per instruction: exclusive upper bound of an index (0: unknown) */
    int hi_cap;
    bool *visited; /* nodes lowered into this kernel (fusion report), listed in seen */
    VEC(int) seen;
    int *acc_stage;  /* row reductions already reduced in this kernel: node -> stage, else -1 */
} Lower;

static int scope_of(Lower *L, int inst) { return inst < 0 ? -1 : L->k->insts.data[inst].stage; }

/* Finds an identical earlier instruction (CSE) or appends one.  Its scope is
 * the innermost scope of its operands, unless `scope` forces one. */
static int emit(Lower *L, KInstKind kind, KilnDType dt, Op op, int a, int b, int c, int buf, double value,
                bool flag, int forced_scope) {
    int scope = forced_scope;
    if (scope == -2) {
        scope = -1;
        int ops[3] = {a, b, c};
        for (int i = 0; i < 3; i++)
            if (scope_of(L, ops[i]) > scope) scope = scope_of(L, ops[i]);
    }
    Kernel *k = L->k;
    for (int i = k->insts.len - 1; i >= 0 && i >= k->insts.len - 64; i--) {
        const KInst *in = &k->insts.data[i];
        if (in->kind == kind && in->dtype == dt && in->op == op && in->a == a && in->b == b && in->c == c &&
            in->buf == buf && in->value == value && in->flag == flag && in->stage == scope)
            return i;
    }
    int id = kinst(k, kind, dt, scope, a, b, c);
    KInst *in = &k->insts.data[id];
    in->op = op;
    in->buf = buf;
    in->value = value;
    in->flag = flag;
    return id;
}

static const KInst *I(Lower *L, int id) { return &L->k->insts.data[id]; }

static bool is_iconst(Lower *L, int id, int64_t *v) {
    if (id < 0 || I(L, id)->kind != KI_CONST || I(L, id)->dtype != KILN_I64) return false;
    if (v) *v = kinst_scalar(I(L, id)).i;
    return true;
}

/* A constant of dtype dt (exact for integers), shared with an identical
 * earlier one, in the outer scope. */
static int sconst(Lower *L, KilnDType dt, Scalar v) {
    Kernel *k = L->k;
    for (int i = k->insts.len - 1; i >= 0 && i >= k->insts.len - 64; i--) {
        const KInst *in = &k->insts.data[i];
        if (in->kind == KI_CONST && in->dtype == dt && in->stage == -1 &&
            scalar_same(kinst_scalar(in), v, dt))
            return i;
    }
    return kinst_const_scalar(k, dt, -1, v);
}

static int iconst(Lower *L, int64_t v) { return sconst(L, KILN_I64, (Scalar){.i = v}); }

/* Index arithmetic with constant folding and the identities that make view
 * chains cheap: x*1, x+0, (a*d + b)/d == a and (a*d + b)%d == b when b < d. */
static int64_t bound_of(Lower *L, int id);

static int iadd(Lower *L, int a, int b) {
    int64_t x, y;
    if (is_iconst(L, a, &x) && is_iconst(L, b, &y)) return iconst(L, x + y);
    if (is_iconst(L, a, &x) && x == 0) return b;
    if (is_iconst(L, b, &y) && y == 0) return a;
    return emit(L, KI_IADD, KILN_I64, 0, a, b, -1, -1, 0, false, -2);
}

static int imul(Lower *L, int a, int b) {
    int64_t x, y;
    if (is_iconst(L, a, &x) && is_iconst(L, b, &y)) return iconst(L, x * y);
    if ((is_iconst(L, a, &x) && x == 0) || (is_iconst(L, b, &y) && y == 0)) return iconst(L, 0);
    if (is_iconst(L, a, &x) && x == 1) return b;
    if (is_iconst(L, b, &y) && y == 1) return a;
    return emit(L, KI_IMUL, KILN_I64, 0, a, b, -1, -1, 0, false, -2);
}

/* An exclusive upper bound of a non-negative index, or 0 if unknown. */
static int64_t bound_of(Lower *L, int id) {
    if (id < L->hi_cap && L->hi[id]) return L->hi[id];
    const KInst *in = I(L, id);
    int64_t x;
    if (is_iconst(L, id, &x)) return x >= 0 ? x + 1 : 0;
    if (in->kind == KI_IMOD && is_iconst(L, in->b, &x)) return x;
    if (in->kind == KI_IDIV && is_iconst(L, in->b, &x)) {
        int64_t h = bound_of(L, in->a);
        return h ? (h + x - 1) / x : 0;
    }
    if (in->kind == KI_IMUL && is_iconst(L, in->b, &x)) {
        int64_t h = bound_of(L, in->a);
        return h && x > 0 ? (h - 1) * x + 1 : 0;
    }
    if (in->kind == KI_IADD) {
        int64_t h1 = bound_of(L, in->a), h2 = bound_of(L, in->b);
        return h1 && h2 ? h1 + h2 - 1 : 0;
    }
    return 0;
}

static void set_bound(Lower *L, int id, int64_t hi) {
    if (id >= L->hi_cap) {
        int cap = (id + 1) * 2;
        L->hi = xrealloc(L->hi, sizeof(int) * (size_t)cap);
        memset(L->hi + L->hi_cap, 0, sizeof(int) * (size_t)(cap - L->hi_cap));
        L->hi_cap = cap;
    }
    if (hi > 0 && hi < (1 << 30)) L->hi[id] = (int)hi;
}

static int idiv(Lower *L, int a, int64_t d) {
    int64_t x;
    if (d == 1) return a;
    if (is_iconst(L, a, &x) && x >= 0) return iconst(L, x / d);
    int64_t h = bound_of(L, a);
    if (h && h <= d) return iconst(L, 0);
    const KInst *in = I(L, a);
    if (in->kind == KI_IMUL && is_iconst(L, in->b, &x) && x == d) return in->a;
    if (in->kind == KI_IADD) {
        const KInst *m = I(L, in->a);
        int64_t hb = bound_of(L, in->b);
        if (m->kind == KI_IMUL && is_iconst(L, m->b, &x) && x == d && hb && hb <= d) return m->a;
    }
    if (in->kind == KI_IDIV && is_iconst(L, in->b, &x)) return idiv(L, in->a, x * d);
    return emit(L, KI_IDIV, KILN_I64, 0, a, iconst(L, d), -1, -1, 0, false, -2);
}

static int imod(Lower *L, int a, int64_t d) {
    int64_t x;
    if (d == 1) return iconst(L, 0);
    if (is_iconst(L, a, &x) && x >= 0) return iconst(L, x % d);
    int64_t h = bound_of(L, a);
    if (h && h <= d) return a;
    const KInst *in = I(L, a);
    if (in->kind == KI_IMUL && is_iconst(L, in->b, &x) && x % d == 0) return iconst(L, 0);
    if (in->kind == KI_IADD) {
        const KInst *m = I(L, in->a);
        int64_t hb = bound_of(L, in->b);
        if (m->kind == KI_IMUL && is_iconst(L, m->b, &x) && x % d == 0 && hb && hb <= d) return in->b;
    }
    return emit(L, KI_IMOD, KILN_I64, 0, a, iconst(L, d), -1, -1, 0, false, -2);
}

static int ilt(Lower *L, int a, int b) {
    int64_t x, y;
    if (is_iconst(L, a, &x) && is_iconst(L, b, &y)) return sconst(L, KILN_BOOL, (Scalar){.i = x < y});
    return emit(L, KI_ILT, KILN_BOOL, 0, a, b, -1, -1, 0, false, -2);
}

static int band(Lower *L, int a, int b) {
    if (a < 0) return b;
    if (b < 0) return a;
    return emit(L, KI_ELEM, KILN_BOOL, OP_AND, a, b, -1, -1, 0, false, -2);
}

static int bnot(Lower *L, int a) { return emit(L, KI_ELEM, KILN_BOOL, OP_NOT, a, -1, -1, -1, 0, false, -2); }

static int fconst(Lower *L, KilnDType dt, double v) { return sconst(L, dt, scalar_from_double(v, dt)); }

static int elem(Lower *L, Op op, KilnDType dt, int a, int b, int c) {
    return emit(L, KI_ELEM, dt, op, a, b, c, -1, 0, false, -2);
}

static int cast(Lower *L, int a, KilnDType dt) {
    if (I(L, a)->dtype == dt) return a;
    if (I(L, a)->kind == KI_CONST)
        return sconst(L, dt, scalar_convert(kinst_scalar(I(L, a)), I(L, a)->dtype, dt));
    return emit(L, KI_CAST, dt, 0, a, -1, -1, -1, 0, false, -2);
}

/* index = sum idx[k] * stride[k] over `shape` (C order) */
static int linearize(Lower *L, const int *idx, const Dim *shape, int rank) {
    int lin = iconst(L, 0);
    int64_t stride = 1;
    for (int k = rank - 1; k >= 0;) {
        /* a run of dims that an earlier delinearisation split off one index
         * linearises back to that index: no div/mod round trip */
        int best = -1;
        for (int i = 0; i < L->delins.len; i++) {
            const Delin *d = &L->delins.data[i];
            int start = k - d->rank + 1;
            if (d->rank < 2 || start < 0 || (best >= 0 && L->delins.data[best].rank >= d->rank)) continue;
            if (memcmp(d->dims, shape + start, sizeof(Dim) * (size_t)d->rank) == 0 &&
                memcmp(d->idx, idx + start, sizeof(int) * (size_t)d->rank) == 0)
                best = i;
        }
        if (best >= 0) {
            const Delin *d = &L->delins.data[best];
            lin = iadd(L, imul(L, d->lin, iconst(L, stride)), lin);
            for (int j = 0; j < d->rank; j++) stride *= shape[k - j];
            k -= d->rank;
            continue;
        }
        lin = iadd(L, imul(L, idx[k], iconst(L, stride)), lin);
        stride *= shape[k];
        k--;
    }
    return lin;
}

static void delinearize(Lower *L, int lin, const Dim *shape, int rank, int *idx) {
    int64_t stride = 1;
    for (int k = rank - 1; k >= 0; k--) {
        int q = idiv(L, lin, stride);
        idx[k] = k == 0 ? q : imod(L, q, shape[k]);
        set_bound(L, idx[k], shape[k]);
        stride *= shape[k];
    }
    Delin d = {lin, rank, shape, xmalloc(sizeof(int) * (size_t)(rank + 1))};
    memcpy(d.idx, idx, sizeof(int) * (size_t)rank);
    VEC_PUSH(L->delins, d);
}

/* Forgets every lowered value: called when what a node lowers to changes
 * (the kernel's core gets its value, a row reduction its stage). */
static void memo_clear(Lower *L) {
    for (int i = 0; i < L->lowered.len; i++) free(L->lowered.data[i].idx);
    L->lowered.len = 0;
    if (L->memo) memset(L->memo, 0, sizeof(int) * (size_t)L->memo_cap);
}

static void mark_visited(Lower *L, int id) {
    if (L->visited[id]) return;
    L->visited[id] = true;
    VEC_PUSH(L->seen, id);
}

static void lower_free(Lower *L) {
    for (int i = 0; i < L->seen.len; i++) L->visited[L->seen.data[i]] = false;
    VEC_FREE(L->seen);
    for (int i = 0; i < L->delins.len; i++) free(L->delins.data[i].idx);
    VEC_FREE(L->delins);
    free(L->hi);
    memo_clear(L);
    VEC_FREE(L->lowered);
    free(L->memo);
}

static uint64_t memo_hash(int id, int guard, int stage, int rank, const int *idx) {
    uint64_t h = 0x9e3779b97f4a7c15ull ^ (uint64_t)(uint32_t)id;
    int head[3] = {guard, stage, rank};
    for (int i = 0; i < 3 + rank; i++) {
        h ^= (uint64_t)(uint32_t)(i < 3 ? head[i] : idx[i - 3]);
        h *= 0xff51afd7ed558ccdull;
        h ^= h >> 32;
    }
    return h;
}

/* The slot of (id, idx, guard) in the current stage: where it is, or the
 * empty slot where it would go. */
static int *memo_slot(Lower *L, int id, const int *idx, int rank, int guard) {
    int mask = L->memo_cap - 1;
    for (uint64_t h = memo_hash(id, guard, L->stage, rank, idx);; h++) {
        int *slot = &L->memo[h & (uint64_t)mask];
        if (!*slot) return slot;
        const Lowered *e = &L->lowered.data[*slot - 1];
        if (e->id == id && e->guard == guard && e->stage == L->stage && e->rank == rank &&
            (rank == 0 || memcmp(e->idx, idx, sizeof(int) * (size_t)rank) == 0))
            return slot;
    }
}

static int memo_find(Lower *L, int id, const int *idx, int rank, int guard) {
    if (!L->memo) return -1;
    int *slot = memo_slot(L, id, idx, rank, guard);
    return *slot ? L->lowered.data[*slot - 1].value : -1;
}

static void memo_add(Lower *L, int id, const int *idx, int rank, int guard, int value) {
    if (2 * (L->lowered.len + 1) > L->memo_cap) { /* grow and rehash */
        free(L->memo);
        L->memo_cap = L->memo_cap ? 2 * L->memo_cap : 64;
        L->memo = xcalloc((size_t)L->memo_cap, sizeof(int));
        for (int i = 0; i < L->lowered.len; i++) {
            const Lowered *e = &L->lowered.data[i];
            int saved = L->stage;
            L->stage = e->stage;
            *memo_slot(L, e->id, e->idx, e->rank, e->guard) = i + 1;
            L->stage = saved;
        }
    }
    Lowered e = {id, guard, L->stage, rank, xmalloc(sizeof(int) * (size_t)(rank + 1)), value};
    if (rank) memcpy(e.idx, idx, sizeof(int) * (size_t)rank);
    VEC_PUSH(L->lowered, e);
    *memo_slot(L, id, idx, rank, guard) = L->lowered.len;
}

static int lower_node(Lower *L, int id, const int *idx, int guard);
static int acc_ref(Lower *L, int stage_of_acc);

/* The value of node `id` at multi-index idx (one i64 instruction per dim).
 * `guard` (or -1) says whether the position is real: loads under a false
 * guard are not performed (padding, concat branches). */
static int load_buffer(Lower *L, int id, const int *idx, int guard) {
    const Node *n = ir_node(L->s->g, id);
    int off = linearize(L, idx, n->shape, n->rank);
    int b = L->s->buf[id];
    return emit(L, KI_LOAD, n->dtype, 0, off, guard, -1, b, 0, false, -2);
}

/* Maps an output index to an input index under NumPy broadcasting. */
static void broadcast_index(Lower *L, const Node *out, const Node *in, const int *idx, int *in_idx) {
    int off = out->rank - in->rank;
    for (int k = 0; k < in->rank; k++)
        in_idx[k] = (in->shape[k] == 1 && out->shape[k + off] != 1) ? iconst(L, 0) : idx[k + off];
}

/* Reshape without div/mod where it can: match groups of dimensions with
 * equal products and re-index within each group only. */
static void reshape_index(Lower *L, const Node *out, const Node *in, const int *idx, int *in_idx) {
    int i = 0, j = 0;
    while (i < in->rank || j < out->rank) {
        int i0 = i, j0 = j;
        int64_t pi = 1, pj = 1;
        if (i < in->rank) pi *= in->shape[i++];
        if (j < out->rank) pj *= out->shape[j++];
        while (pi != pj) {
            if (pi < pj && i < in->rank) pi *= in->shape[i++];
            else if (j < out->rank) pj *= out->shape[j++];
            else break;
        }
        /* trailing size-1 dims join the current group */
        int lin = linearize(L, idx + j0, out->shape + j0, j - j0);
        set_bound(L, lin, pj);
        delinearize(L, lin, in->shape + i0, i - i0, in_idx + i0);
        if (i == i0 && j == j0) break;
    }
}

/* lower_node without recursion: a graph that chains 100,000 elementwise
 * statements is one kernel whose expression is that deep.  Each pending
 * node is a frame; a frame asks for its inputs' values one at a time (in the
 * order the index arithmetic is emitted), then combines them. */
typedef struct {
    int id, guard;
    int *idx;    /* the node's index (owned copy) */
    int *in_idx; /* the index being handed to an input (scratch) */
    int step;    /* inputs asked for so far */
    int *vals;   /* their values */
    int *conds;  /* concat: per input, idx[axis] < the input's end */
    int64_t off; /* concat: where the next input starts along the axis */
    int inside;  /* pad: the guard of the padded input */
} LowerFrame;
typedef VEC(LowerFrame) FrameStack;

/* A value that needs no inputs lowered first: the kernel's core, a row
 * reduction of this kernel, a buffer, a constant; else -1. */
static int lower_leaf(Lower *L, int id, const int *idx, int guard) {
    Sched *s = L->s;
    const Node *n = ir_node(s->g, id);
    if (id == L->core) return L->core_value;
    if (L->acc_stage && L->acc_stage[id] >= 0) { /* a row reduction of this kernel */
        int acc = acc_ref(L, L->acc_stage[id]);
        KilnDType adt = I(L, acc)->dtype;
        if (n->op == OP_MEAN) {
            const Node *x = ir_node(s->g, n->in[0]);
            acc = elem(L, OP_DIV, adt, acc, fconst(L, adt, (double)x->shape[x->rank - 1]), -1);
        }
        return cast(L, acc, n->dtype);
    }
    if (s->buf[id] >= 0 && s->kernel_of[id] != -2) return load_buffer(L, id, idx, guard);
    switch (n->op) {
    case OP_CONST:
    case OP_FULL: mark_visited(L, id); return sconst(L, n->dtype, ir_node_scalar(n));
    case OP_IOTA: /* a real cast even to i64: an emitter may hold indices narrower than i64 */
        mark_visited(L, id);
        return I(L, idx[0])->kind == KI_CONST ? cast(L, idx[0], n->dtype)
                                              : emit(L, KI_CAST, n->dtype, 0, idx[0], -1, -1, -1, 0, false, -2);
    default: break;
    }
    if (!op_is_elementwise(n->op) && !is_view(n->op)) {
        /* a heavy node that is neither this kernel's core nor in a buffer: a scheduler bug */
        mark_visited(L, id);
        return fconst(L, n->dtype, 0);
    }
    return -1;
}

/* The next input frame f asks for: sets *child, *child_guard and f->in_idx;
 * false when every input has its value. */
static bool next_input(Lower *L, LowerFrame *f, int *child, int *child_guard) {
    Sched *s = L->s;
    const Node *n = ir_node(s->g, f->id);
    int k = f->step, *in_idx = f->in_idx;
    const int *idx = f->idx;
    *child_guard = f->guard;
    switch (n->op) {
    case OP_RESHAPE:
    case OP_TRANSPOSE:
    case OP_BROADCAST:
    case OP_SLICE: {
        if (k > 0) return false;
        const Node *x = ir_node(s->g, n->in[0]);
        if (n->op == OP_RESHAPE) reshape_index(L, n, x, idx, in_idx);
        else if (n->op == OP_BROADCAST) broadcast_index(L, n, x, idx, in_idx);
        else if (n->op == OP_TRANSPOSE)
            for (int d = 0; d < n->rank; d++) in_idx[n->ints[d]] = idx[d];
        else
            for (int d = 0; d < n->rank; d++)
                in_idx[d] =
                    iadd(L, iconst(L, n->ints[2 * d]), imul(L, idx[d], iconst(L, n->ints[2 * d + 1])));
        *child = n->in[0];
        return true;
    }
    case OP_TAKE: { /* a gather: the position along the axis is a loaded index */
        const Node *x = ir_node(s->g, n->in[0]), *ix = ir_node(s->g, n->in[1]);
        int axis = (int)n->ints[0];
        if (k == 0) { /* the index first */
            memcpy(in_idx, idx + axis, sizeof(int) * (size_t)ix->rank);
            *child = n->in[1];
            return true;
        }
        if (k > 1) return false;
        int pos = emit(L, KI_INDEX, KILN_I64, 0, f->vals[0], -1, -1, -1, (double)x->shape[axis], false, -2);
        set_bound(L, pos, x->shape[axis]);
        for (int d = 0; d < x->rank; d++)
            in_idx[d] = d < axis ? idx[d] : d == axis ? pos : idx[d - 1 + ix->rank];
        *child = n->in[0];
        return true;
    }
    case OP_PAD: {
        if (k > 0) return false;
        const Node *x = ir_node(s->g, n->in[0]);
        int inside = f->guard;
        for (int d = 0; d < n->rank; d++) {
            int64_t lo = n->ints[2 * d];
            in_idx[d] = iadd(L, idx[d], iconst(L, -lo));
            if (lo > 0) inside = band(L, inside, bnot(L, ilt(L, idx[d], iconst(L, lo))));
            if (lo + x->shape[d] < n->shape[d])
                inside = band(L, inside, ilt(L, idx[d], iconst(L, lo + x->shape[d])));
        }
        f->inside = inside;
        *child = n->in[0];
        *child_guard = inside;
        return true;
    }
    case OP_CONCAT: {
        if (k >= n->nin) return false;
        int axis = (int)n->ints[0];
        const Node *x = ir_node(s->g, n->in[k]);
        memcpy(in_idx, idx, sizeof(int) * (size_t)n->rank);
        in_idx[axis] = iadd(L, idx[axis], iconst(L, -f->off));
        int below_end = ilt(L, idx[axis], iconst(L, f->off + x->shape[axis]));
        int in_range =
            f->off > 0 ? band(L, bnot(L, ilt(L, idx[axis], iconst(L, f->off))), below_end) : below_end;
        f->conds[k] = below_end;
        f->off += x->shape[axis];
        *child = n->in[k];
        *child_guard = band(L, f->guard, in_range);
        return true;
    }
    default: /* elementwise */
        if (k >= n->nin) return false;
        broadcast_index(L, n, ir_node(s->g, n->in[k]), idx, in_idx);
        *child = n->in[k];
        return true;
    }
}

/* The value of frame f once every input has its value. */
static int combine_inputs(Lower *L, LowerFrame *f) {
    const Node *n = ir_node(L->s->g, f->id);
    switch (n->op) {
    case OP_RESHAPE:
    case OP_TRANSPOSE:
    case OP_BROADCAST:
    case OP_SLICE: return f->vals[0];
    case OP_TAKE: return f->vals[1];
    case OP_PAD:
        return f->inside == f->guard ? f->vals[0]
                                     : elem(L, OP_WHERE, n->dtype, f->inside, f->vals[0],
                                            sconst(L, n->dtype, ir_node_scalar(n)));
    case OP_CONCAT: {
        int v = f->vals[n->nin - 1];
        for (int i = n->nin - 2; i >= 0; i--) v = elem(L, OP_WHERE, n->dtype, f->conds[i], f->vals[i], v);
        return v;
    }
    default:
        if (n->op == OP_CAST) return cast(L, f->vals[0], n->dtype);
        return emit(L, KI_ELEM, n->dtype, n->op, f->vals[0], n->nin > 1 ? f->vals[1] : -1,
                    n->nin > 2 ? f->vals[2] : -1, -1, 0, n->flag, -2);
    }
}

static void frame_push(Lower *L, FrameStack *stack, int id, const int *idx, int guard) {
    const Node *n = ir_node(L->s->g, id);
    int rank_in = 0;
    for (int i = 0; i < n->nin; i++)
        if (ir_node(L->s->g, n->in[i])->rank > rank_in) rank_in = ir_node(L->s->g, n->in[i])->rank;
    LowerFrame f = {.id = id, .guard = guard};
    f.idx = xmalloc(sizeof(int) * (size_t)(n->rank + 1));
    if (n->rank) memcpy(f.idx, idx, sizeof(int) * (size_t)n->rank);
    f.in_idx = xmalloc(sizeof(int) * (size_t)(rank_in + n->rank + 1));
    f.vals = xcalloc((size_t)n->nin + 1, sizeof(int));
    f.conds = xcalloc((size_t)n->nin + 1, sizeof(int));
    mark_visited(L, id);
    VEC_PUSH(*stack, f);
}

static void frame_free(LowerFrame *f) { free(f->idx), free(f->in_idx), free(f->vals), free(f->conds); }

/* The value of node `id` at multi-index idx (one i64 instruction per dim),
 * `guard` (or -1) saying whether the position is real. */
static int lower_node(Lower *L, int id, const int *idx, int guard) {
    int rank = ir_node(L->s->g, id)->rank;
    int v = lower_leaf(L, id, idx, guard);
    if (v >= 0) return v;
    if ((v = memo_find(L, id, idx, rank, guard)) >= 0) return v;
    FrameStack stack = {0};
    frame_push(L, &stack, id, idx, guard);
    int result = -1;
    while (stack.len) {
        LowerFrame *f = &stack.data[stack.len - 1];
        int child, child_guard;
        if (next_input(L, f, &child, &child_guard)) {
            int crank = ir_node(L->s->g, child)->rank;
            int cv = lower_leaf(L, child, f->in_idx, child_guard);
            if (cv < 0) cv = memo_find(L, child, f->in_idx, crank, child_guard);
            if (cv >= 0) {
                f->vals[f->step++] = cv;
            } else { /* the child's own frame; its value comes back below */
                frame_push(L, &stack, child, f->in_idx, child_guard);
            }
            continue;
        }
        int value = combine_inputs(L, f);
        memo_add(L, f->id, f->idx, ir_node(L->s->g, f->id)->rank, f->guard, value);
        frame_free(f);
        stack.len--;
        if (stack.len) {
            LowerFrame *parent = &stack.data[stack.len - 1];
            parent->vals[parent->step++] = value;
        } else {
            result = value;
        }
    }
    VEC_FREE(stack);
    return result;
}

/* ------------------------------------------------------------ kernel bodies */

static int cmp_int(const void *a, const void *b) {
    return (*(const int *)a > *(const int *)b) - (*(const int *)a < *(const int *)b);
}

/* The kernel's node list, ascending; clears the marks for the next kernel. */
static void add_node_list(Lower *L) {
    if (L->seen.len) qsort(L->seen.data, (size_t)L->seen.len, sizeof(int), cmp_int);
    for (int i = 0; i < L->seen.len; i++) {
        VEC_PUSH(L->k->nodes, L->seen.data[i]);
        L->visited[L->seen.data[i]] = false;
    }
    L->seen.len = 0;
}

/* Stores the root's value at every index of its shape, given that stage
 * `st` is the map stage whose index space is (outer o, inner r). */
/* The root's index for the core's element at idx, when the epilogue
 * (core -> ... -> root) transposes or reshapes: each view is inverted. */
static void epilogue_index(Lower *L, int root, const int *idx, int *root_idx) {
    Sched *s = L->s;
    VEC(int) path = {0};
    for (int cur = root; cur != L->core;) {
        VEC_PUSH(path, cur);
        const Node *n = ir_node(s->g, cur);
        int next = -1;
        for (int i = 0; i < n->nin && next < 0; i++)
            if (n->in[i] == L->core || s->core[n->in[i]] == L->core) next = n->in[i];
        cur = next;
    }
    int rank_max = ir_node(s->g, L->core)->rank;
    for (int i = 0; i < path.len; i++)
        if (ir_node(s->g, path.data[i])->rank > rank_max) rank_max = ir_node(s->g, path.data[i])->rank;
    int *cur_idx = xmalloc(sizeof(int) * (size_t)(rank_max + 1)), *next_idx = xmalloc(sizeof(int) * (size_t)(rank_max + 1));
    const Node *cur = ir_node(s->g, L->core);
    memcpy(cur_idx, idx, sizeof(int) * (size_t)cur->rank);
    for (int i = path.len - 1; i >= 0; i--) {
        const Node *n = ir_node(s->g, path.data[i]);
        if (n->op == OP_TRANSPOSE)
            for (int k = 0; k < n->rank; k++) next_idx[k] = cur_idx[n->ints[k]];
        else if (n->op == OP_RESHAPE)
            reshape_index(L, cur, n, cur_idx, next_idx);
        else
            memcpy(next_idx, cur_idx, sizeof(int) * (size_t)n->rank);
        memcpy(cur_idx, next_idx, sizeof(int) * (size_t)n->rank);
        cur = n;
    }
    memcpy(root_idx, cur_idx, sizeof(int) * (size_t)cur->rank);
    free(cur_idx), free(next_idx);
    VEC_FREE(path);
}

static void store_root(Lower *L, int root, int st, const int *core_idx) {
    Sched *s = L->s;
    const Node *rn = ir_node(s->g, root);
    mark_visited(L, root);
    int *idx = xmalloc(sizeof(int) * (size_t)(rn->rank + 1));
    if (L->core >= 0 && root != L->core) epilogue_index(L, root, core_idx, idx);
    else memcpy(idx, core_idx, sizeof(int) * (size_t)rn->rank);
    int value;
    if (root == L->core) {
        value = L->core_value;
    } else {
        int saved = s->kernel_of[root];
        s->kernel_of[root] = -2; /* compute it here, do not load it */
        memo_clear(L);
        value = lower_node(L, root, idx, -1);
        s->kernel_of[root] = saved;
        memo_clear(L);
    }
    value = cast(L, value, rn->dtype);
    int off = linearize(L, idx, rn->shape, rn->rank);
    kstage_store(L->k, st, s->buf[root], off, value);
    free(idx);
}

static KilnDType compute_dtype(KilnDType dt) { return dt == KILN_F64 ? KILN_F64 : KILN_F32; }

static void lower_elementwise(Lower *L, int root) {
    const Node *rn = ir_node(L->s->g, root);
    int st = kernel_add_stage(L->k, KS_MAP, 1);
    L->stage = st;
    int *idx = xmalloc(sizeof(int) * (size_t)(rn->rank + 1));
    int o = emit(L, KI_OUTER, KILN_I64, 0, -1, -1, -1, -1, 0, false, -1);
    set_bound(L, o, L->k->outer);
    delinearize(L, o, rn->shape, rn->rank, idx);
    store_root(L, root, st, idx);
    free(idx);
}

static int inner_var(Lower *L, int st, int64_t extent) {
    int r = emit(L, KI_INNER, KILN_I64, 0, -1, -1, -1, -1, 0, false, st);
    set_bound(L, r, extent);
    return r;
}

static int acc_ref(Lower *L, int stage_of_acc) {
    const KStage *s = &L->k->stages.data[stage_of_acc];
    return emit(L, KI_ACC, s->result_dtype, 0, stage_of_acc, -1, -1, -1, 0, false, L->stage);
}

/* Reductions over axes: outer = kept positions, one REDUCE over the
 * reduced positions, then the epilogue at the output index. */
static void lower_reduce(Lower *L, int core, int root) {
    Sched *s = L->s;
    const Node *h = ir_node(s->g, core), *x = ir_node(s->g, h->in[0]);
    bool *red = xcalloc((size_t)x->rank + 1, 1);
    if (h->nints == 0)
        for (int k = 0; k < x->rank; k++) red[k] = true;
    for (int i = 0; i < h->nints; i++) red[h->ints[i]] = true;
    Dim *kept = xmalloc(sizeof(Dim) * (size_t)(x->rank + 1)), *rdims = xmalloc(sizeof(Dim) * (size_t)(x->rank + 1));
    int nk = 0, nr = 0;
    int64_t extent = 1;
    for (int k = 0; k < x->rank; k++) {
        if (red[k]) rdims[nr++] = x->shape[k], extent *= x->shape[k];
        else kept[nk++] = x->shape[k];
    }
    int *kidx = xmalloc(sizeof(int) * (size_t)(x->rank + 1)), *ridx = xmalloc(sizeof(int) * (size_t)(x->rank + 1));
    int *xidx = xmalloc(sizeof(int) * (size_t)(x->rank + 1));
    int o = emit(L, KI_OUTER, KILN_I64, 0, -1, -1, -1, -1, 0, false, -1);
    set_bound(L, o, L->k->outer);
    delinearize(L, o, kept, nk, kidx);
    int st = kernel_add_stage(L->k, KS_REDUCE, extent);
    L->stage = st;
    int r = inner_var(L, st, extent);
    delinearize(L, r, rdims, nr, ridx);
    for (int k = 0, a = 0, b = 0; k < x->rank; k++) xidx[k] = red[k] ? ridx[b++] : kidx[a++];
    int v = lower_node(L, h->in[0], xidx, -1);
    Op rop = h->op == OP_MEAN ? OP_SUM : h->op;
    KilnDType vdt = x->dtype;
    kstage_reduce(L->k, st, rop, v, vdt);
    mark_visited(L, core);
    int map = kernel_add_stage(L->k, KS_MAP, 1);
    L->stage = map;
    int acc = acc_ref(L, st);
    if (h->op == OP_MEAN) acc = elem(L, OP_DIV, I(L, acc)->dtype, acc, fconst(L, I(L, acc)->dtype, (double)extent), -1);
    L->core = core;
    memo_clear(L);
    L->core_value = cast(L, acc, h->dtype);
    int *oidx = xmalloc(sizeof(int) * (size_t)(h->rank + 1));
    delinearize(L, o, h->shape, h->rank, oidx); /* the core's index space */
    store_root(L, root, map, oidx);
    free(red), free(kept), free(rdims), free(kidx), free(ridx), free(xidx), free(oidx);
}

/* The outer index o of a kernel over the elements of `shape`, split into one
 * index per axis in idx[]. */
static void outer_index(Lower *L, const Dim *shape, int rank, int *idx) {
    int o = emit(L, KI_OUTER, KILN_I64, 0, -1, -1, -1, -1, 0, false, -1);
    set_bound(L, o, L->k->outer);
    delinearize(L, o, shape, rank, idx);
}

/* A new REDUCE stage of `extent`, made current; returns its inner index r. */
static int reduce_stage(Lower *L, int64_t extent) {
    int st = kernel_add_stage(L->k, KS_REDUCE, extent);
    L->stage = st;
    return inner_var(L, st, extent);
}

/* The end of a kernel whose core is the result of REDUCE stage `st`: a MAP
 * stage of extent 1 stores the root (the core and its epilogue) at oidx. */
static void store_reduced_core(Lower *L, int core, int root, int st, const int *oidx) {
    mark_visited(L, core);
    int map = kernel_add_stage(L->k, KS_MAP, 1);
    L->stage = map;
    L->core = core;
    memo_clear(L);
    L->core_value = cast(L, acc_ref(L, st), ir_node(L->s->g, core)->dtype);
    store_root(L, root, map, oidx);
}

/* cumsum: each output element is a REDUCE over its axis, each term kept by a
 * guard that says whether it is part of the element's running sum (O(n^2)
 * per row, which suits the short axes of position ids and masks). */
static void lower_cumsum(Lower *L, int core, int root) {
    Sched *s = L->s;
    const Node *h = ir_node(s->g, core);
    int axis = (int)h->ints[0], rank = h->rank;
    bool exclusive = h->ints[1] != 0, reverse = h->ints[2] != 0;
    int64_t n = h->shape[axis];
    int *oidx = xmalloc(sizeof(int) * (size_t)(rank + 1)), *xidx = xmalloc(sizeof(int) * (size_t)(rank + 1));
    outer_index(L, h->shape, rank, oidx);
    int r = reduce_stage(L, n), st = L->stage;
    memcpy(xidx, oidx, sizeof(int) * (size_t)rank);
    xidx[axis] = r;
    /* forward: r <= i (r < i when exclusive); reverse: r >= i (r > i) */
    int i = oidx[axis], one = iconst(L, exclusive ? 0 : 1);
    int keep = reverse ? ilt(L, iadd(L, i, iconst(L, exclusive ? 1 : 0)), iadd(L, r, iconst(L, 1))) : ilt(L, r, iadd(L, i, one));
    KilnDType vdt = h->dtype;
    int v = lower_node(L, h->in[0], xidx, keep);
    v = elem(L, OP_WHERE, vdt, keep, v, fconst(L, vdt, 0));
    kstage_reduce(L->k, st, OP_SUM, v, vdt);
    store_reduced_core(L, core, root, st, oidx);
    L->k->flops = L->k->outer * n;
    free(oidx), free(xidx);
}

/* softmax, log_softmax, layernorm, rmsnorm: one outer index per row. */
static void lower_row(Lower *L, int core, int root) {
    Sched *s = L->s;
    const Node *h = ir_node(s->g, core);
    int axis = (int)h->ints[0], rank = h->rank;
    int64_t n = h->shape[axis];
    KilnDType cdt = compute_dtype(h->dtype);
    Dim *rows = xmalloc(sizeof(Dim) * (size_t)(rank + 1));
    for (int k = 0, m = 0; k < rank; k++)
        if (k != axis) rows[m++] = h->shape[k];
    int *ridx = xmalloc(sizeof(int) * (size_t)(rank + 1)), *xidx = xmalloc(sizeof(int) * (size_t)(rank + 1));
    int o = emit(L, KI_OUTER, KILN_I64, 0, -1, -1, -1, -1, 0, false, -1);
    set_bound(L, o, L->k->outer);
    delinearize(L, o, rows, rank - 1, ridx);
    int nstages = (h->op == OP_RMSNORM) ? 1 : 2;
    int stage_ids[2];
    int x_at[3];
    for (int si = 0; si <= nstages; si++) {
        bool is_map = si == nstages;
        int st = kernel_add_stage(L->k, is_map ? KS_MAP : KS_REDUCE, n);
        L->stage = st;
        int r = inner_var(L, st, n);
        for (int k = 0, m = 0; k < rank; k++) xidx[k] = k == axis ? r : ridx[m++];
        int x = cast(L, lower_node(L, h->in[0], xidx, -1), cdt);
        x_at[si] = x;
        if (is_map) break;
        stage_ids[si] = st;
        int v;
        Op rop = OP_SUM;
        switch (h->op) {
        case OP_SOFTMAX:
        case OP_LOG_SOFTMAX:
            if (si == 0) {
                v = x;
                rop = OP_MAX;
            } else {
                v = elem(L, OP_EXP, cdt, elem(L, OP_SUB, cdt, x, acc_ref(L, stage_ids[0]), -1), -1, -1);
            }
            break;
        case OP_LAYERNORM:
            if (si == 0) {
                v = x;
            } else {
                int mean = elem(L, OP_DIV, cdt, acc_ref(L, stage_ids[0]), fconst(L, cdt, (double)n), -1);
                int d = elem(L, OP_SUB, cdt, x, mean, -1);
                v = elem(L, OP_MUL, cdt, d, d, -1);
            }
            break;
        default: /* rmsnorm */
            v = elem(L, OP_MUL, cdt, x, x, -1);
            break;
        }
        kstage_reduce(L->k, st, rop, v, cdt);
    }
    int x = x_at[nstages], r = inner_var(L, L->stage, n); /* the map stage's r */
    int y;
    switch (h->op) {
    case OP_SOFTMAX: {
        int e = elem(L, OP_EXP, cdt, elem(L, OP_SUB, cdt, x, acc_ref(L, stage_ids[0]), -1), -1, -1);
        /* one reciprocal per row (hoisted out of the loop), a multiply per element */
        int inv = elem(L, OP_DIV, cdt, fconst(L, cdt, 1.0), acc_ref(L, stage_ids[1]), -1);
        y = elem(L, OP_MUL, cdt, e, inv, -1);
        break;
    }
    case OP_LOG_SOFTMAX:
        y = elem(L, OP_SUB, cdt, elem(L, OP_SUB, cdt, x, acc_ref(L, stage_ids[0]), -1),
                 elem(L, OP_LOG, cdt, acc_ref(L, stage_ids[1]), -1, -1), -1);
        break;
    case OP_LAYERNORM:
    case OP_RMSNORM: {
        int nconst = fconst(L, cdt, (double)n), eps = fconst(L, cdt, h->value);
        int gidx[1] = {r};
        int gamma = cast(L, lower_node(L, h->in[1], gidx, -1), cdt);
        if (h->op == OP_LAYERNORM) {
            int mean = elem(L, OP_DIV, cdt, acc_ref(L, stage_ids[0]), nconst, -1);
            int var = elem(L, OP_DIV, cdt, acc_ref(L, stage_ids[1]), nconst, -1);
            int inv = elem(L, OP_RSQRT, cdt, elem(L, OP_ADD, cdt, var, eps, -1), -1, -1);
            int beta = cast(L, lower_node(L, h->in[2], gidx, -1), cdt);
            y = elem(L, OP_ADD, cdt, elem(L, OP_MUL, cdt, elem(L, OP_MUL, cdt, elem(L, OP_SUB, cdt, x, mean, -1), inv, -1), gamma, -1), beta, -1);
        } else {
            int ms = elem(L, OP_DIV, cdt, acc_ref(L, stage_ids[0]), nconst, -1);
            int inv = elem(L, OP_RSQRT, cdt, elem(L, OP_ADD, cdt, ms, eps, -1), -1, -1);
            y = elem(L, OP_MUL, cdt, elem(L, OP_MUL, cdt, x, inv, -1), gamma, -1);
        }
        break;
    }
    default: y = x; break;
    }
    mark_visited(L, core);
    L->core = core;
    memo_clear(L);
    L->core_value = cast(L, y, h->dtype);
    store_root(L, root, L->stage, xidx);
    free(rows), free(ridx), free(xidx);
}

/* Strides of a plain load `v` as an affine function of index instructions
 * vars[]; false if v is not an unguarded load with such an index. */
static bool affine(Lower *L, int e, const int *vars, int nvars, int64_t *coef, int64_t *off) {
    int64_t c;
    if (is_iconst(L, e, &c)) {
        *off += c;
        return true;
    }
    for (int i = 0; i < nvars; i++) {
        if (vars[i] == e) {
            coef[i] += 1;
            return true;
        }
    }
    const KInst *in = I(L, e);
    if (in->kind == KI_IADD) return affine(L, in->a, vars, nvars, coef, off) && affine(L, in->b, vars, nvars, coef, off);
    if (in->kind == KI_IMUL && is_iconst(L, in->b, &c)) {
        int64_t *sub = xcalloc((size_t)nvars + 1, sizeof(int64_t));
        int64_t suboff = 0;
        bool ok = affine(L, in->a, vars, nvars, sub, &suboff);
        for (int i = 0; ok && i < nvars; i++) coef[i] += sub[i] * c;
        *off += suboff * c;
        free(sub);
        return ok;
    }
    return false;
}

static void lower_matmul(Lower *L, int core, int root) {
    Sched *s = L->s;
    const Node *h = ir_node(s->g, core), *a = ir_node(s->g, h->in[0]), *b = ir_node(s->g, h->in[1]);
    int rank = h->rank;
    int64_t M = h->shape[rank - 2], N = h->shape[rank - 1], K = a->shape[a->rank - 1];
    int *oidx = xmalloc(sizeof(int) * (size_t)(rank + 1));
    int *aidx = xmalloc(sizeof(int) * (size_t)(a->rank + 1)), *bidx = xmalloc(sizeof(int) * (size_t)(b->rank + 1));
    outer_index(L, h->shape, rank, oidx);
    int kv = reduce_stage(L, K), st = L->stage;
    /* batch dims broadcast: align from the right of the batch part */
    for (int i = 0; i < a->rank - 2; i++) {
        int oi = i + (rank - a->rank);
        aidx[i] = a->shape[i] == 1 ? iconst(L, 0) : oidx[oi];
    }
    for (int i = 0; i < b->rank - 2; i++) {
        int oi = i + (rank - b->rank);
        bidx[i] = b->shape[i] == 1 ? iconst(L, 0) : oidx[oi];
    }
    aidx[a->rank - 2] = oidx[rank - 2], aidx[a->rank - 1] = kv;
    bidx[b->rank - 2] = kv, bidx[b->rank - 1] = oidx[rank - 1];
    KilnDType cdt = dtype_is_float(h->dtype) ? compute_dtype(h->dtype) : KILN_I64;
    int va = lower_node(L, h->in[0], aidx, -1), vb = lower_node(L, h->in[1], bidx, -1);
    int prod = elem(L, OP_MUL, cdt, cast(L, va, cdt), cast(L, vb, cdt), -1);
    kstage_reduce(L->k, st, OP_SUM, prod, h->dtype);
    /* strided description for tiled emitters */
    KMatmul *mm = &L->k->mm;
    mm->a_buf = mm->b_buf = -1;
    int nb = rank - 2;
    int *vars = xmalloc(sizeof(int) * (size_t)(rank + 2));
    for (int i = 0; i < rank; i++) vars[i] = oidx[i];
    vars[rank] = kv;
    int64_t *ca = xcalloc((size_t)rank + 2, sizeof(int64_t)), *cb = xcalloc((size_t)rank + 2, sizeof(int64_t));
    int64_t offa = 0, offb = 0;
    const KInst *la = I(L, va), *lb = I(L, vb);
    if (la->kind == KI_LOAD && la->b < 0 && lb->kind == KI_LOAD && lb->b < 0 &&
        affine(L, la->a, vars, rank + 1, ca, &offa) && affine(L, lb->a, vars, rank + 1, cb, &offb) &&
        ca[rank - 1] == 0 && cb[rank - 2] == 0) {
        mm->a_buf = la->buf, mm->b_buf = lb->buf;
        mm->m = M, mm->n = N, mm->k = K, mm->nbatch = nb;
        mm->batch = 1;
        mm->batch_dims = ARENA_ARRAY(s->p->arena, int64_t, nb + 1);
        mm->a_batch_stride = ARENA_ARRAY(s->p->arena, int64_t, nb + 1);
        mm->b_batch_stride = ARENA_ARRAY(s->p->arena, int64_t, nb + 1);
        for (int i = 0; i < nb; i++) {
            mm->batch_dims[i] = h->shape[i];
            mm->batch *= h->shape[i];
            mm->a_batch_stride[i] = ca[i];
            mm->b_batch_stride[i] = cb[i];
        }
        mm->a_sm = ca[rank - 2], mm->a_sk = ca[rank];
        mm->b_sk = cb[rank], mm->b_sn = cb[rank - 1];
        mm->a_off = offa, mm->b_off = offb;
    }
    free(vars), free(ca), free(cb);
    store_reduced_core(L, core, root, st, oidx);
    L->k->flops = 2 * (int64_t)L->k->outer * K;
    free(oidx), free(aidx), free(bidx);
}

/* The number of elements one window of an average pool spans along an axis
 * (ref_pool_count's rule), in float dtype dt: the window starts at
 * out*stride - pad and is cut at the padded end (or the input's). */
static int window_count(Lower *L, KilnDType dt, int out, int64_t stride, int64_t pad, int64_t k, int64_t size,
                        int64_t pad_end, bool include_pad) {
    int start = cast(L, iadd(L, imul(L, out, iconst(L, stride)), iconst(L, -pad)), dt);
    int end = elem(L, OP_ADD, dt, start, fconst(L, dt, (double)k), -1);
    end = elem(L, OP_MINIMUM, dt, end, fconst(L, dt, (double)(include_pad ? size + pad_end : size)), -1);
    if (!include_pad) start = elem(L, OP_MAXIMUM, dt, start, fconst(L, dt, 0), -1);
    return elem(L, OP_SUB, dt, end, start, -1);
}

/* What an average pool divides the window's sum by: kh*kw, unless windows
 * are cut (ceil_mode, or count_include_pad=false with padding). */
static int pool_divisor(Lower *L, const Node *h, const Node *x, const int *oidx, KilnDType dt) {
    int64_t kh = h->ints[0], kw = h->ints[1];
    bool cut = h->nints >= 10 && (h->ints[8] || !h->ints[9]);
    if (!cut) return fconst(L, dt, (double)(kh * kw));
    bool include = h->ints[9] != 0;
    int ch = window_count(L, dt, oidx[2], h->ints[2], h->ints[4], kh, x->shape[2], h->ints[6], include);
    int cw = window_count(L, dt, oidx[3], h->ints[3], h->ints[5], kw, x->shape[3], h->ints[7], include);
    return elem(L, OP_MUL, dt, ch, cw, -1);
}

/* The window geometry of a conv or pool kernel (KConv) when its input (and
 * a conv's weights) are loaded straight from buffers in their own dense
 * layout; otherwise x_buf = -1 and emitters use the generic form. */
static void describe_window(Lower *L, const Node *h, int64_t kh, int64_t kw, const int64_t *geom) {
    Sched *s = L->s;
    KConv *cv = &L->k->conv;
    memset(cv, 0, sizeof *cv);
    cv->x_buf = cv->w_buf = -1;
    const Node *x = ir_node(s->g, h->in[0]);
    bool conv = h->op == OP_CONV2D;
    if (s->buf[h->in[0]] < 0 || (conv && s->buf[h->in[1]] < 0) || x->rank != 4 || h->rank != 4) return;
    cv->op = h->op;
    cv->n = x->shape[0], cv->c = x->shape[1], cv->h = x->shape[2], cv->w = x->shape[3];
    cv->oc = h->shape[1], cv->oh = h->shape[2], cv->ow = h->shape[3];
    cv->kh = kh, cv->kw = kw;
    cv->sh = geom[0], cv->sw = geom[1], cv->ph = geom[2], cv->pw = geom[3], cv->dh = geom[4], cv->dw = geom[5];
    cv->groups = geom[6];
    cv->xs[3] = 1, cv->xs[2] = cv->w, cv->xs[1] = cv->h * cv->w, cv->xs[0] = cv->c * cv->h * cv->w;
    cv->x_buf = s->buf[h->in[0]];
    if (conv) {
        const Node *w = ir_node(s->g, h->in[1]);
        cv->ws[3] = 1, cv->ws[2] = w->shape[3], cv->ws[1] = w->shape[2] * w->shape[3];
        cv->ws[0] = w->shape[1] * cv->ws[1];
        cv->w_buf = s->buf[h->in[1]];
    }
}

/* conv2d and pools: a REDUCE over the window (c, kh, kw), loads guarded by
 * the padding (its top and left: the output size says where windows end). */
static void lower_window(Lower *L, int core, int root) {
    Sched *s = L->s;
    const Node *h = ir_node(s->g, core), *x = ir_node(s->g, h->in[0]);
    bool conv = h->op == OP_CONV2D;
    int64_t kh, kw, sh, sw, ph, pw, dh = 1, dw = 1, groups = 1, cg = 1;
    const Node *w = conv ? ir_node(s->g, h->in[1]) : NULL;
    if (conv) {
        sh = h->ints[0], sw = h->ints[1], ph = h->ints[2], pw = h->ints[3], dh = h->ints[4], dw = h->ints[5];
        groups = h->ints[6];
        kh = w->shape[2], kw = w->shape[3], cg = w->shape[1];
    } else {
        kh = h->ints[0], kw = h->ints[1], sh = h->ints[2], sw = h->ints[3], ph = h->ints[4], pw = h->ints[5];
    }
    int oidx[4], widx[3], xi[4], wi[4];
    int o = emit(L, KI_OUTER, KILN_I64, 0, -1, -1, -1, -1, 0, false, -1);
    set_bound(L, o, L->k->outer);
    delinearize(L, o, h->shape, 4, oidx);
    Dim wdims[3] = {cg, kh, kw};
    int64_t extent = cg * kh * kw;
    int st = kernel_add_stage(L->k, KS_REDUCE, extent);
    L->stage = st;
    int r = inner_var(L, st, extent);
    delinearize(L, r, wdims, 3, widx);
    int ih = iadd(L, iadd(L, imul(L, oidx[2], iconst(L, sh)), imul(L, widx[1], iconst(L, dh))), iconst(L, -ph));
    int iw = iadd(L, iadd(L, imul(L, oidx[3], iconst(L, sw)), imul(L, widx[2], iconst(L, dw))), iconst(L, -pw));
    int guard = -1;
    if (ph > 0) guard = band(L, bnot(L, ilt(L, ih, iconst(L, 0))), ilt(L, ih, iconst(L, x->shape[2])));
    if (pw > 0) guard = band(L, guard, band(L, bnot(L, ilt(L, iw, iconst(L, 0))), ilt(L, iw, iconst(L, x->shape[3]))));
    /* positions the stride/dilation pushes past the far edge without padding */
    if (ph == 0 && (x->shape[2] - 1) < (h->shape[2] - 1) * sh + (kh - 1) * dh) guard = band(L, guard, ilt(L, ih, iconst(L, x->shape[2])));
    if (pw == 0 && (x->shape[3] - 1) < (h->shape[3] - 1) * sw + (kw - 1) * dw) guard = band(L, guard, ilt(L, iw, iconst(L, x->shape[3])));
    KilnDType cdt = dtype_is_float(h->dtype) ? compute_dtype(h->dtype) : KILN_I64;
    xi[0] = oidx[0];
    xi[1] = conv ? iadd(L, imul(L, idiv(L, oidx[1], h->shape[1] / groups), iconst(L, cg)), widx[0]) : oidx[1];
    xi[2] = ih, xi[3] = iw;
    int xv = cast(L, lower_node(L, h->in[0], xi, guard), cdt);
    int v;
    Op rop;
    if (conv) {
        wi[0] = oidx[1], wi[1] = widx[0], wi[2] = widx[1], wi[3] = widx[2];
        int wv = cast(L, lower_node(L, h->in[1], wi, -1), cdt);
        v = elem(L, OP_MUL, cdt, xv, wv, -1);
        rop = OP_SUM;
        L->k->flops = 2 * L->k->outer * extent;
    } else if (h->op == OP_MAXPOOL2D) {
        v = guard >= 0 ? elem(L, OP_WHERE, cdt, guard, xv, fconst(L, cdt, -1.0 / 0.0)) : xv;
        rop = OP_MAX;
    } else {
        v = xv;
        rop = OP_SUM;
    }
    kstage_reduce(L->k, st, rop, v, cdt);
    mark_visited(L, core);
    int map = kernel_add_stage(L->k, KS_MAP, 1);
    L->stage = map;
    int acc = acc_ref(L, st);
    if (h->op == OP_AVGPOOL2D) acc = elem(L, OP_DIV, I(L, acc)->dtype, acc, pool_divisor(L, h, x, oidx, I(L, acc)->dtype), -1);
    if (conv && h->nin == 3) {
        int bi[1] = {oidx[1]};
        acc = elem(L, OP_ADD, I(L, acc)->dtype, acc, cast(L, lower_node(L, h->in[2], bi, -1), I(L, acc)->dtype), -1);
    }
    L->core = core;
    memo_clear(L);
    L->core_value = cast(L, acc, h->dtype);
    store_root(L, root, map, oidx);
    int64_t geom[7] = {sh, sw, ph, pw, dh, dw, conv ? groups : x->shape[1]}; /* a pool: one group per channel */
    describe_window(L, h, kh, kw, geom);
}

/* A root whose computation uses row reductions (hand-written softmax,
 * layernorm): one outer index per row, a REDUCE stage per reduction in
 * order (later ones may use earlier ones), then the root over the row. */
static void lower_rowgroup(Lower *L, int root, const int *reds, int nreds) {
    Sched *s = L->s;
    const Node *rn = ir_node(s->g, root);
    int rank = rn->rank;
    int64_t n = rn->shape[rank - 1];
    int *idx = xmalloc(sizeof(int) * (size_t)(rank + 1));
    int o = emit(L, KI_OUTER, KILN_I64, 0, -1, -1, -1, -1, 0, false, -1);
    set_bound(L, o, L->k->outer);
    delinearize(L, o, rn->shape, rank - 1, idx);
    for (int j = 0; j < nreds; j++) {
        const Node *h = ir_node(s->g, reds[j]);
        int st = kernel_add_stage(L->k, KS_REDUCE, n);
        L->stage = st;
        idx[rank - 1] = inner_var(L, st, n);
        int v = lower_node(L, h->in[0], idx, -1);
        kstage_reduce(L->k, st, h->op == OP_MEAN ? OP_SUM : h->op, v, ir_node(s->g, h->in[0])->dtype);
        L->acc_stage[reds[j]] = st;
        memo_clear(L);
        mark_visited(L, reds[j]);
    }
    int map = kernel_add_stage(L->k, KS_MAP, n);
    L->stage = map;
    idx[rank - 1] = inner_var(L, map, n);
    store_root(L, root, map, idx);
    free(idx);
}

/* -------------------------------------------------------------- the driver */

static bool kernel_moves_only(const Kernel *k) {
    for (int i = 0; i < k->insts.len; i++) {
        const KInst *in = &k->insts.data[i];
        if (in->kind == KI_CAST) return false;
        if (in->kind == KI_ELEM && in->op != OP_WHERE && in->op != OP_AND && in->op != OP_NOT) return false;
    }
    return true;
}

static void name_kernel(Sched *s, Kernel *k, int index) {
    StrBuf sb = {0};
    sb_printf(&sb, "k%d", index);
    int shown = 0;
    for (int i = 0; i < k->nodes.len && shown < 4; i++) {
        const Node *n = ir_node(s->g, k->nodes.data[i]);
        if (n->op == OP_CONST || n->op == OP_PARAM) continue;
        sb_printf(&sb, "_%s", op_info[n->op].name);
        shown++;
    }
    k->name = arena_strdup(s->p->arena, sb.data);
    sb_free(&sb);
}

static int64_t kernel_bytes(Sched *s, const Kernel *k) {
    /* buffers seen in this kernel: stamped with a walk number, no clearing */
    if (s->buf_mark_cap < s->p->bufs.len) {
        free(s->buf_mark);
        s->buf_mark_cap = s->p->bufs.len;
        s->buf_mark = xcalloc((size_t)s->buf_mark_cap + 1, sizeof(int));
    }
    int walk = ++s->walk;
    int64_t bytes = 0;
    for (int i = 0; i < k->insts.len; i++) {
        const KInst *in = &k->insts.data[i];
        if (in->kind == KI_LOAD && s->buf_mark[in->buf] != walk) {
            s->buf_mark[in->buf] = walk;
            bytes += s->p->bufs.data[in->buf].numel * (int64_t)kiln_dtype_size(s->p->bufs.data[in->buf].dtype);
        }
    }
    const KStage *m = &k->stages.data[k->stages.len - 1];
    for (int i = 0; i < m->stores.len; i++) {
        const KBuf *b = &s->p->bufs.data[m->stores.data[i].buf];
        bytes += b->numel * (int64_t)kiln_dtype_size(b->dtype);
    }
    return bytes;
}

/* Arena offsets for temporaries: a temporary lives from the kernel that
 * writes it to the last kernel that reads it; place the largest first at
 * the lowest offset free for its whole lifetime. */
/* A temporary's bytes in the arena (64-byte aligned). */
static int64_t temp_bytes(const KProgram *p, int b) {
    return (p->bufs.data[b].numel * (int64_t)kiln_dtype_size(p->bufs.data[b].dtype) + 63) & ~(int64_t)63;
}

typedef struct {
    int64_t lo, hi;
} Span;

static int cmp_span(const void *a, const void *b) {
    const Span *x = a, *y = b;
    return (x->lo > y->lo) - (x->lo < y->lo);
}

/* Temporaries by size, largest first; equal sizes in buffer order. */
static int cmp_buf_size(const void *a, const void *b, void *prog) {
    const KProgram *p = prog;
    int x = *(const int *)a, y = *(const int *)b;
    int64_t sx = p->bufs.data[x].numel * (int64_t)kiln_dtype_size(p->bufs.data[x].dtype);
    int64_t sy = p->bufs.data[y].numel * (int64_t)kiln_dtype_size(p->bufs.data[y].dtype);
    if (sx != sy) return sx < sy ? 1 : -1;
    return (x > y) - (x < y);
}

/* The temporary kernel k stores into, when it stores one value, only at its
 * own element o, into a temporary it is the first to touch; else -1. */
static int stored_in_place(const KProgram *p, const Kernel *k, int ki, const int *first) {
    const KStage *m = &k->stages.data[k->stages.len - 1];
    if (m->stores.len != 1) return -1;
    const KStore *st = &m->stores.data[0];
    if (p->bufs.data[st->buf].kind != KB_TEMP || first[st->buf] != ki ||
        k->insts.data[st->index].kind != KI_OUTER)
        return -1;
    return st->buf;
}

/* Temporaries written in place (root[b] != b: b takes root[b]'s bytes).  A
 * kernel that stores one temporary b only at its own element o, and reads
 * a temporary c of the same dtype and size for the last time, only at o
 * (a residual add's input), reads each element of c before it writes that
 * element of b and no other: b can take c's place.  Then the output's
 * lines are in the cache already (read for the add) instead of being read
 * for ownership, and the arena is smaller.  The emitters mark buffer
 * pointers noalias / __restrict__: safe here, as the one store of each
 * element depends on that element's own load, so no reordering can move
 * the load after it, and no other element of c is read after its store.
 * ResNet's blocks chain: every block's output is the next one's residual.
 * first/last: each buffer's first and last kernel (a root's last grows to
 * its members'). */
static int *in_place_roots(const KProgram *p, const int *first, int *last) {
    int nb = p->bufs.len;
    int *root = xmalloc(sizeof(int) * (size_t)(nb + 1));
    /* per buffer, marks for the kernel being looked at (cleared after it) */
    bool *at_o = xcalloc((size_t)nb + 1, sizeof(bool)), *elsewhere = xcalloc((size_t)nb + 1, sizeof(bool));
    for (int b = 0; b < nb; b++) root[b] = b;
    for (int ki = 0; ki < p->kernels.len; ki++) {
        const Kernel *k = &p->kernels.data[ki];
        int b = stored_in_place(p, k, ki, first), c = -1;
        if (b < 0) continue;
        for (int i = 0; i < k->insts.len; i++) {
            const KInst *in = &k->insts.data[i];
            if (in->kind != KI_LOAD) continue;
            if (in->a >= 0 && in->b < 0 && k->insts.data[in->a].kind == KI_OUTER)
                at_o[in->buf] = true;
            else
                elsewhere[in->buf] = true;
        }
        const KBuf *bb = &p->bufs.data[b];
        for (int i = 0; i < k->insts.len && c < 0 && !at_o[b] && !elsewhere[b]; i++) {
            int x = k->insts.data[i].kind == KI_LOAD ? k->insts.data[i].buf : b;
            const KBuf *xb = &p->bufs.data[x];
            if (x != b && at_o[x] && !elsewhere[x] && xb->kind == KB_TEMP && last[x] == ki &&
                xb->dtype == bb->dtype && xb->numel == bb->numel)
                c = x;
        }
        for (int i = 0; i < k->insts.len; i++)
            if (k->insts.data[i].kind == KI_LOAD)
                at_o[k->insts.data[i].buf] = elsewhere[k->insts.data[i].buf] = false;
        if (c < 0) continue;
        root[b] = root[c];
        if (last[b] > last[root[c]]) last[root[c]] = last[b];
    }
    free(at_o), free(elsewhere);
    return root;
}

/* ---------------------------------------------------- padded conv inputs */

static void remark(Sched *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Appends i64 index instruction `kind` (a, b) to kernel k in scope stage. */
static int kiop(Kernel *k, KInstKind kind, int stage, int a, int b) {
    return kinst(k, kind, KILN_I64, stage, a, b, -1);
}
static int kconst(Kernel *k, int stage, int64_t v) { return kinst_const(k, KILN_I64, stage, (double)v); }
/* a * m + c, folding the trivial cases */
static int kmuladd(Kernel *k, int stage, int a, int64_t m, int c) {
    int x = m == 1 ? a : kiop(k, KI_IMUL, stage, a, kconst(k, stage, m));
    return c < 0 ? x : kiop(k, KI_IADD, stage, x, c);
}

/* Whether temporary b is the NCHW input (x_buf) of convolution kernel kc,
 * stored by kernel kp only, at o (its only store), loaded by kc only, once
 * (the convolution's B load, a plain product of two loads), and no result:
 * the shape pad_conv_inputs rewrites. */
static bool paddable_pair(const KProgram *p, const Kernel *kp, const Kernel *kc, int b) {
    const KBuf *bb = &p->bufs.data[b];
    const KConv *cv = &kc->conv, *pv = &kp->conv;
    if (bb->kind != KB_TEMP || bb->dtype != KILN_F32 || kc->kind != KK_CONV || kp->kind != KK_CONV ||
        cv->x_buf != b || cv->groups != 1 || (cv->ph == 0 && cv->pw == 0) || cv->ph < 0 || cv->pw < 0)
        return false;
    if (cv->x_off != 0 || cv->xs[3] != 1 || cv->xs[2] != cv->w || cv->xs[1] != cv->h * cv->w ||
        cv->xs[0] != cv->c * cv->h * cv->w || bb->numel != cv->n * cv->c * cv->h * cv->w)
        return false;
    if (pv->n != cv->n || pv->oc != cv->c || pv->oh != cv->h || pv->ow != cv->w || kp->outer != bb->numel ||
        kp->stages.len != 2 || kc->stages.len != 2)
        return false;
    const KStage *pm = &kp->stages.data[1];
    if (pm->stores.len != 1 || pm->stores.data[0].buf != b ||
        kp->insts.data[pm->stores.data[0].index].kind != KI_OUTER)
        return false;
    const KStage *red = &kc->stages.data[0];
    if (red->kind != KS_REDUCE || red->value < 0) return false;
    const KInst *mul = &kc->insts.data[red->value];
    if (mul->kind != KI_ELEM || mul->op != OP_MUL) return false;
    const KInst *x = &kc->insts.data[mul->a], *y = &kc->insts.data[mul->b];
    if (x->kind != KI_LOAD || y->kind != KI_LOAD || (x->buf == b) == (y->buf == b)) return false;
    int loads = 0;
    for (int i = 0; i < kc->insts.len; i++)
        loads += kc->insts.data[i].kind == KI_LOAD && kc->insts.data[i].buf == b;
    for (int i = 0; i < kp->insts.len; i++)
        if (kp->insts.data[i].kind == KI_LOAD && kp->insts.data[i].buf == b) return false;
    return loads == 1;
}

/* Keeps a convolution's input zero-padded between its producer and itself
 * (where opt.keeps_padded says the device gains by it): the producer
 * stores each image's pixels into the interior of planes of hp x wp
 * elements (the padded image the convolution reads, kconv_padded_plane
 * in ir/kernel.c), and the convolution becomes an unpadded one over those
 * planes, read in place without the copy into a padded image it made per
 * image.  The buffer says so (KBuf.pad_hw): the device that asked for it
 * has its producer write the borders' zeros too, in every run, so that the
 * image may take any bytes of the arena (kept in a zeroed part of their
 * own, written only once, the first producer of each run found its lines
 * in memory: 3-7 % slower).  Only a temporary with one writer and one
 * reader, no graph result. */
static void pad_conv_inputs(Sched *s) {
    KProgram *p = s->p;
    if (!s->opt.keeps_padded || !s->opt.fuse) return;
    int nb = p->bufs.len, nk = p->kernels.len;
    int *writer = xmalloc(sizeof(int) * (size_t)(nb + 1)), *reader = xmalloc(sizeof(int) * (size_t)(nb + 1));
    for (int b = 0; b < nb; b++) writer[b] = reader[b] = -1;
    for (int ki = 0; ki < nk; ki++) {
        const Kernel *k = &p->kernels.data[ki];
        for (int i = 0; i < k->insts.len; i++)
            if (k->insts.data[i].kind == KI_LOAD) {
                int b = k->insts.data[i].buf;
                reader[b] = reader[b] == -1 || reader[b] == ki ? ki : -2;
            }
        for (int st = 0; st < k->stages.len; st++)
            for (int j = 0; j < k->stages.data[st].stores.len; j++) {
                int b = k->stages.data[st].stores.data[j].buf;
                writer[b] = writer[b] == -1 ? ki : -2;
            }
    }
    for (int r = 0; r < p->result_buf.len; r++)
        if (p->result_buf.data[r] >= 0 && p->result_buf.data[r] < nb) reader[p->result_buf.data[r]] = -2;
    for (int b = 0; b < nb; b++) {
        if (writer[b] < 0 || reader[b] < 0 || writer[b] >= reader[b]) continue;
        Kernel *kp = &p->kernels.data[writer[b]], *kc = &p->kernels.data[reader[b]];
        if (!paddable_pair(p, kp, kc, b) || !s->opt.keeps_padded(p, kp, kc)) continue;
        KConv *cv = &kc->conv;
        int64_t hp, wp;
        kconv_padded_plane(cv, &hp, &wp);
        int64_t H = cv->h, W = cv->w, plane = hp * wp;
        /* the producer: o = ((n*C + c)*H + h)*W + w stored at
         * (n*C + c)*plane + (h + ph)*wp + w + pw */
        int o = -1;
        for (int i = 0; i < kp->insts.len && o < 0; i++)
            if (kp->insts.data[i].kind == KI_OUTER) o = i;
        int w = kiop(kp, KI_IMOD, -1, o, kconst(kp, -1, W)), t = kiop(kp, KI_IDIV, -1, o, kconst(kp, -1, W));
        int h = kiop(kp, KI_IMOD, -1, t, kconst(kp, -1, H)), nc = kiop(kp, KI_IDIV, -1, t, kconst(kp, -1, H));
        int at = kmuladd(kp, -1, nc, plane, kmuladd(kp, -1, h, wp, w));
        kp->stages.data[1].stores.data[0].index =
            kiop(kp, KI_IADD, -1, at, kconst(kp, -1, cv->ph * wp + cv->pw));
        /* the convolution: X(n, c, oh*sh + kh*dh, ow*sw + kw*dw) over the
         * padded planes, o = ((n*OC + oc)*OH + oh)*OW + ow, r = (c*KH + kh)*KW + kw */
        int ko = -1;
        for (int i = 0; i < kc->insts.len && ko < 0; i++)
            if (kc->insts.data[i].kind == KI_OUTER) ko = i;
        if (ko < 0) ko = kinst(kc, KI_OUTER, KILN_I64, -1, -1, -1, -1);
        int ow = kiop(kc, KI_IMOD, -1, ko, kconst(kc, -1, cv->ow)),
            q = kiop(kc, KI_IDIV, -1, ko, kconst(kc, -1, cv->ow));
        int oh = kiop(kc, KI_IMOD, -1, q, kconst(kc, -1, cv->oh));
        int n = kiop(kc, KI_IDIV, -1, q, kconst(kc, -1, cv->oh * cv->oc));
        int outer = kmuladd(kc, -1, n, cv->c * plane,
                            kmuladd(kc, -1, oh, cv->sh * wp, kmuladd(kc, -1, ow, cv->sw, -1)));
        int r = kinst(kc, KI_INNER, KILN_I64, 0, -1, -1, -1);
        int kw = kiop(kc, KI_IMOD, 0, r, kconst(kc, 0, cv->kw)),
            u = kiop(kc, KI_IDIV, 0, r, kconst(kc, 0, cv->kw));
        int kh = kiop(kc, KI_IMOD, 0, u, kconst(kc, 0, cv->kh)),
            c = kiop(kc, KI_IDIV, 0, u, kconst(kc, 0, cv->kh));
        int inner = kmuladd(kc, 0, c, plane, kmuladd(kc, 0, kh, cv->dh * wp, kmuladd(kc, 0, kw, cv->dw, -1)));
        int idx = kiop(kc, KI_IADD, 0, outer, inner);
        KStage *red = &kc->stages.data[0];
        KInst mul = kc->insts.data[red->value];
        bool x_first = kc->insts.data[mul.a].buf == b;
        int other = x_first ? mul.b : mul.a;
        int load = kinst_load(kc, b, KILN_F32, 0, idx, -1);
        red->value = kinst_elem(kc, OP_MUL, KILN_F32, 0, x_first ? load : other, x_first ? other : load, -1);
        KBuf *bb = &p->bufs.data[b];
        bb->pad_hw[0] = hp, bb->pad_hw[1] = wp, bb->pad_hw[2] = cv->ph, bb->pad_hw[3] = cv->pw;
        bb->numel = cv->n * cv->c * plane;
        cv->h = hp, cv->w = wp, cv->ph = cv->pw = 0;
        cv->xs[0] = cv->c * plane, cv->xs[1] = plane, cv->xs[2] = wp, cv->xs[3] = 1;
        remark(s, "kept padded: %s stores %s as %lld x %lld planes for %s to read in place", kp->name,
               bb->name, (long long)hp, (long long)wp, kc->name);
    }
    free(writer), free(reader);
}

static void plan_memory(Sched *s) {
    KProgram *p = s->p;
    int nb = p->bufs.len;
    int *first = xmalloc(sizeof(int) * (size_t)(nb + 1)), *last = xmalloc(sizeof(int) * (size_t)(nb + 1));
    for (int b = 0; b < nb; b++) first[b] = INT32_MAX, last[b] = -1;
    for (int ki = 0; ki < p->kernels.len; ki++) {
        const Kernel *k = &p->kernels.data[ki];
        for (int i = 0; i < k->insts.len; i++)
            if (k->insts.data[i].kind == KI_LOAD) {
                int b = k->insts.data[i].buf;
                if (ki > last[b]) last[b] = ki;
                if (ki < first[b]) first[b] = ki;
            }
        const KStage *m = &k->stages.data[k->stages.len - 1];
        for (int i = 0; i < m->stores.len; i++) {
            int b = m->stores.data[i].buf;
            if (ki < first[b]) first[b] = ki;
            if (ki > last[b]) last[b] = ki;
        }
    }
    int *root = in_place_roots(p, first, last);
    int *order = xmalloc(sizeof(int) * (size_t)(nb + 1));
    int nt = 0;
    for (int b = 0; b < nb; b++)
        if (p->bufs.data[b].kind == KB_TEMP && root[b] == b) order[nt++] = b;
    if (nt > 1) qsort_r(order, (size_t)nt, sizeof(int), cmp_buf_size, p);
    /* First fit among the placed buffers alive at the same time: each kernel
     * lists the placed buffers it touches, so finding them costs the
     * buffer's lifetime, not the whole program. */
    int nk = p->kernels.len;
    typedef VEC(int) IntVec;
    IntVec *live_at = xcalloc((size_t)nk + 1, sizeof(IntVec));
    int *stamp = xcalloc((size_t)nb + 1, sizeof(int));
    VEC(Span) spans = {0};
    p->arena_bytes = 0;
    for (int i = 0; i < nt; i++) {
        int b = order[i];
        int64_t size = temp_bytes(p, b);
        spans.len = 0;
        for (int t = first[b]; t <= last[b] && t < nk; t++)
            for (int j = 0; j < live_at[t].len; j++) {
                int c = live_at[t].data[j];
                if (stamp[c] == i + 1) continue;
                stamp[c] = i + 1;
                Span sp = {p->bufs.data[c].offset, p->bufs.data[c].offset + temp_bytes(p, c)};
                VEC_PUSH(spans, sp);
            }
        if (spans.len) qsort(spans.data, (size_t)spans.len, sizeof(Span), cmp_span);
        int64_t off = 0;
        for (int j = 0; j < spans.len && spans.data[j].lo < off + size; j++)
            if (spans.data[j].hi > off) off = spans.data[j].hi;
        p->bufs.data[b].offset = off;
        if (off + size > p->arena_bytes) p->arena_bytes = off + size;
        for (int t = first[b]; t <= last[b] && t < nk; t++) VEC_PUSH(live_at[t], b);
    }
    for (int b = 0; b < nb; b++)
        if (root[b] != b) p->bufs.data[b].offset = p->bufs.data[root[b]].offset;
    for (int t = 0; t < nk; t++) VEC_FREE(live_at[t]);
    free(live_at), free(stamp);
    VEC_FREE(spans);
    free(first), free(last), free(order), free(root);
}

static void remark(Sched *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void remark(Sched *s, const char *fmt, ...) {
    if (!s->opt.remarks) return;
    va_list ap;
    va_start(ap, fmt);
    fputs("remark: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

KProgram *fuse_graph(Arena *arena, const IRGraph *g, const FuseOptions *opt, char *err, size_t errlen) {
    const char *sym;
    if (!ir_graph_is_concrete(g, &sym)) {
        snprintf(err, errlen, "dimension %s is not bound; kernels need concrete shapes (pass --dim %s=SIZE)", sym, sym);
        return NULL;
    }
    Sched s = {.g = g, .opt = *opt, .n = g->nodes.len};
    s.p = kprog_new(arena, g->name);
    s.nusers = xcalloc((size_t)s.n + 1, sizeof(int));
    s.live = xcalloc((size_t)s.n + 1, 1);
    s.is_result = xcalloc((size_t)s.n + 1, 1);
    s.materialize = xcalloc((size_t)s.n + 1, 1);
    s.buf = xmalloc(sizeof(int) * (size_t)(s.n + 1));
    s.core = xmalloc(sizeof(int) * (size_t)(s.n + 1));
    s.kernel_of = xmalloc(sizeof(int) * (size_t)(s.n + 1));
    s.rowred = xcalloc((size_t)s.n + 1, 1);
    s.root = xmalloc(sizeof(int) * (size_t)(s.n + 1));
    for (int i = 0; i < s.n; i++) s.buf[i] = -1, s.kernel_of[i] = -1;
    index_users(&s);
    plan(&s);
    KProgram *p = s.p;
    p->nparams = g->params.len;
    p->nresults = g->results.len;
    for (int i = 0; i < g->params.len; i++) {
        int id = g->params.data[i];
        const Node *n = ir_node(g, id);
        s.buf[id] = kprog_add_buf(p, KB_INPUT, i, n->dtype, ir_numel(n), id, n->name);
        p->bufs.data[s.buf[id]].constant = n->flag;
    }
    /* results: each gets its own output buffer; a parameter or a repeated
     * result is copied into it */
    int *copy_from = xmalloc(sizeof(int) * (size_t)(g->results.len + 1));
    for (int i = 0; i < g->results.len; i++) {
        int id = g->results.data[i];
        const Node *n = ir_node(g, id);
        char name[32];
        snprintf(name, sizeof name, "out%d", i);
        copy_from[i] = -1;
        if (s.buf[id] >= 0) { /* a parameter, or a result already */
            copy_from[i] = id;
            int b = kprog_add_buf(p, KB_OUTPUT, i, n->dtype, ir_numel(n), id, name);
            VEC_PUSH(p->result_buf, b);
        } else {
            s.buf[id] = kprog_add_buf(p, KB_OUTPUT, i, n->dtype, ir_numel(n), id, name);
            VEC_PUSH(p->result_buf, s.buf[id]);
        }
    }
    for (int id = 0; id < s.n; id++) {
        if (!s.materialize[id] || s.buf[id] >= 0) continue;
        const Node *n = ir_node(g, id);
        char name[32];
        snprintf(name, sizeof name, "t%d", id);
        s.buf[id] = kprog_add_buf(p, KB_TEMP, 0, n->dtype, ir_numel(n), id, name);
    }
    bool *visited = xcalloc((size_t)s.n + 1, 1);
    int *acc_stage = xmalloc(sizeof(int) * (size_t)(s.n + 1));
    for (int i = 0; i < s.n; i++) acc_stage[i] = -1;
    /* the row reductions each root computes as stages of its kernel */
    int *reds_start = xcalloc((size_t)s.n + 2, sizeof(int)),
        *reds_of = xmalloc(sizeof(int) * ((size_t)s.n + 1));
    for (int r = 0; r < s.n; r++)
        if (s.rowred[r]) reds_start[s.root[r] + 1]++;
    for (int i = 0; i < s.n; i++) reds_start[i + 1] += reds_start[i];
    {
        int *fill = xmalloc(sizeof(int) * ((size_t)s.n + 1));
        memcpy(fill, reds_start, sizeof(int) * (size_t)s.n);
        for (int r = 0; r < s.n; r++)
            if (s.rowred[r]) reds_of[fill[s.root[r]]++] = r;
        free(fill);
    }
    for (int id = 0; id < s.n; id++) {
        const Node *n = ir_node(g, id);
        if (!s.materialize[id] || n->op == OP_PARAM) continue;
        /* find the core: the heavy node whose epilogue ends here */
        int core = is_heavy(n->op) ? id : s.core[id];
        const Node *c = core >= 0 ? ir_node(g, core) : n;
        KernelKind kind = KK_ELEMENTWISE;
        int64_t outer = ir_numel(n);
        if (core >= 0) {
            switch (c->op) {
            case OP_MATMUL: kind = KK_MATMUL; break;
            case OP_CONV2D: kind = KK_CONV; break;
            case OP_MAXPOOL2D: case OP_AVGPOOL2D: kind = KK_POOL; break;
            case OP_SOFTMAX: case OP_LOG_SOFTMAX: case OP_LAYERNORM: case OP_RMSNORM:
                kind = KK_ROW;
                outer = ir_numel(c) / (c->shape[c->ints[0]] ? c->shape[c->ints[0]] : 1);
                if (c->shape[c->ints[0]] == 0) outer = 0;
                break;
            default: kind = KK_REDUCE; break;
            }
        }
        VEC(int) reds = {0};
        for (int j = reds_start[id]; core < 0 && j < reds_start[id + 1]; j++)
            if (reds_of[j] < id) VEC_PUSH(reds, reds_of[j]);
        if (reds.len) {
            kind = KK_ROW;
            outer = ir_numel(n) / n->shape[n->rank - 1];
        }
        Kernel *k = kprog_add_kernel(p, kind, "k", outer);
        Lower L = {.s = &s, .k = k, .core = -1, .visited = visited, .acc_stage = acc_stage};
        switch (kind) {
        case KK_ELEMENTWISE: lower_elementwise(&L, id); break;
        case KK_ROW:
            if (reds.len) lower_rowgroup(&L, id, reds.data, reds.len);
            else lower_row(&L, core, id);
            break;
        case KK_REDUCE:
            if (c->op == OP_CUMSUM) lower_cumsum(&L, core, id);
            else lower_reduce(&L, core, id);
            break;
        case KK_MATMUL: lower_matmul(&L, core, id); break;
        default: lower_window(&L, core, id); break;
        }
        add_node_list(&L);
        lower_free(&L);
        for (int j = 0; j < reds.len; j++) acc_stage[reds.data[j]] = -1;
        VEC_FREE(reds);
        if (kind == KK_ELEMENTWISE && kernel_moves_only(k)) k->kind = KK_COPY;
        s.kernel_of[id] = p->kernels.len - 1;
        name_kernel(&s, k, p->kernels.len - 1);
        k->bytes = kernel_bytes(&s, k);
        if (!k->flops) k->flops = k->outer * k->stages.data[k->stages.len - 1].extent;
        if (s.opt.remarks) {
            StrBuf sb = {0};
            for (int i = 0; i < k->nodes.len; i++) {
                const Node *fn = ir_node(g, k->nodes.data[i]);
                sb_printf(&sb, " %s@%d:%d", op_info[fn->op].name, fn->loc.line, fn->loc.col);
            }
            remark(&s, "kernel %s (%s) fuses%s", k->name, kernel_kind_name(k->kind), sb.data ? sb.data : "");
            sb_free(&sb);
        }
    }
    /* copies for results that alias a parameter or another result */
    for (int i = 0; i < g->results.len; i++) {
        if (copy_from[i] < 0) continue;
        int src = copy_from[i];
        const Node *n = ir_node(g, src);
        Kernel *k = kprog_add_kernel(p, KK_COPY, "copy", ir_numel(n));
        Lower L = {.s = &s, .k = k, .core = -1, .visited = visited};
        int st = kernel_add_stage(k, KS_MAP, 1);
        L.stage = st;
        int o = emit(&L, KI_OUTER, KILN_I64, 0, -1, -1, -1, -1, 0, false, -1);
        int v = emit(&L, KI_LOAD, n->dtype, 0, o, -1, -1, s.buf[src], 0, false, -2);
        kstage_store(k, st, p->result_buf.data[i], o, v);
        lower_free(&L);
        char name[48];
        snprintf(name, sizeof name, "k%d_copy_result%d", p->kernels.len - 1, i);
        k->name = arena_strdup(arena, name);
        k->bytes = 2 * ir_numel(n) * (int64_t)kiln_dtype_size(n->dtype);
    }
    if (s.opt.remarks) {
        for (int id = 0; id < s.n; id++) {
            const Node *n = ir_node(g, id);
            if (!s.live[id] || !s.materialize[id] || n->op == OP_PARAM || !s.opt.fuse) continue;
            if (is_heavy(n->op) && !s.is_result[id])
                remark(&s, "missed: %s@%d:%d keeps its own buffer: its user is not a single elementwise op of the same shape",
                       op_info[n->op].name, n->loc.line, n->loc.col);
            else if (!is_heavy(n->op) && s.core[id] < 0 && s.nusers[id] > 1 && !s.is_result[id])
                remark(&s, "missed: %s@%d:%d is used by %d kernels; computed once into a buffer rather than duplicated",
                       op_info[n->op].name, n->loc.line, n->loc.col, s.nusers[id]);
        }
    }
    pad_conv_inputs(&s);
    plan_memory(&s);
    free(visited), free(copy_from), free(acc_stage), free(reds_start), free(reds_of);
    free(s.user_start), free(s.users), free(s.mark), free(s.buf_mark), free(s.nusers), free(s.live),
        free(s.is_result), free(s.materialize), free(s.buf), free(s.core), free(s.kernel_of);
    free(s.rowred), free(s.root);
    if (!kprog_verify(p, err, errlen)) {
        kprog_destroy(p);
        return NULL;
    }
    return p;
}
