/* build.c - from the AST to the graph IR, type-checking as it goes.
 *
 * Contract: every node gets its dtype and shape here, by the rules of the
 * spec (NumPy broadcasting and matmul, same-dtype operands, weakly typed
 * literals).  Graph calls are inlined.  Errors are collected, never fatal:
 * a failed expression yields POISON, which later expressions pass along
 * silently, so one run reports every independent error.
 *
 * Symbolic dimensions: a graph built without bindings keeps them symbolic
 * (for `check` and `emit ir`); with bindings for all of them every shape is
 * concrete (what the backends run). */
#include "ir/ir.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { POISON = -1 };

/* Limits that remain, reported as errors: the elements of one tensor (sizes
 * are computed with saturating arithmetic up to here, so no overflow), and
 * the nodes of one graph once its calls are inlined (a graph that calls
 * another twice at each of many levels grows exponentially). */
#define MAX_ELEMENTS ((int64_t)1 << 53)
enum { MAX_NODES = 1 << 18 };

/* A value during building: a node, and whether it is a weakly typed literal
 * (a folded constant that takes the dtype of the tensor beside it). */
typedef struct {
    int node;
    bool weak;
} Val;

static const Val POISON_VAL = {POISON, false};

typedef VEC(Dim) DimVec;
typedef VEC(int64_t) I64Vec;

typedef struct {
    const char *name;
    Val val;
    Loc loc;
} Binding;

typedef struct {
    const char *name;
    Dim dim;
} DimName;

/* One graph instantiation: the entry graph, or an inlined call.  `slots` is
 * an open-addressing hash from a name to 1 + the index of its latest binding
 * in env (0: empty), so that lookups stay O(1) in long graphs. */
typedef struct Frame {
    const GraphDef *def;
    VEC(Binding) env;
    VEC(DimName) dims;
    int *slots;
    int nslots; /* a power of two, at least twice env.len */
} Frame;

typedef enum { GRAPH_UNCHECKED, GRAPH_CHECKING, GRAPH_CLEAN, GRAPH_BAD } GraphStatus;

typedef struct {
    IRGraph *g;
    const Program *prog;
    DiagList *diags;
    const DimBinding *binds;
    int nbinds;
    GraphStatus *status; /* per graph of prog, shared by nested checks */
    int depth;           /* inlining depth */
    bool too_large;      /* a limit was reported: stop building */
    Loc call;            /* the graph call being inlined, as written in the entry graph */
} Builder;

static Node *N(Builder *b, int id) { return ir_node(b->g, id); }

/* Saturating size arithmetic: sizes beyond MAX_ELEMENTS are errors anyway. */
static int64_t sat_add(int64_t a, int64_t b) {
    int64_t r;
    return __builtin_add_overflow(a, b, &r) ? (a < 0 ? INT64_MIN : INT64_MAX) : r;
}
static int64_t sat_mul(int64_t a, int64_t b) {
    int64_t r;
    return __builtin_mul_overflow(a, b, &r) ? ((a < 0) != (b < 0) ? INT64_MIN : INT64_MAX) : r;
}

static char *type_str_of(Builder *b, KilnDType dt, int rank, const Dim *shape);

static int add(Builder *b, Op op, KilnDType dt, int rank, const Dim *shape, int nin, const int *in,
               Loc loc) {
    int64_t numel = 1;
    for (int k = 0; k < rank; k++)
        if (!DIM_IS_SYM(shape[k])) numel = sat_mul(numel, shape[k]);
    if (numel > MAX_ELEMENTS && !b->too_large) {
        char *t = type_str_of(b, dt, rank, shape);
        diag_error(b->diags, loc, "%s has more than 2**53 elements", t);
        free(t);
        b->too_large = true;
    }
    return ir_add_node(b->g, op, dt, rank, shape, nin, in, loc);
}

static void set_ints(Builder *b, int id, const int64_t *v, int n) {
    Node *nd = N(b, id);
    nd->ints = ARENA_ARRAY(b->g->arena, int64_t, n);
    if (n) memcpy(nd->ints, v, sizeof(int64_t) * (size_t)n);
    nd->nints = n;
}

/* ---- names and suggestions ---------------------------------------------- */


static const char *const sugar_builtins[] = {
    "clamp", "linear", "zeros", "ones", "squeeze", "unsqueeze", "global_avgpool", NULL,
};

static bool parse_dtype(const char *name, KilnDType *out) { return kiln_dtype_from_name(name, out); }

static unsigned name_hash(const char *s) {
    unsigned h = 2166136261u; /* FNV-1a */
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

/* The slot of `name`: the one holding it, or the empty one where it goes. */
static int *env_slot(Frame *fr, const char *name) {
    unsigned mask = (unsigned)fr->nslots - 1;
    for (unsigned i = name_hash(name) & mask;; i = (i + 1) & mask) {
        int *slot = &fr->slots[i];
        if (*slot == 0 || strcmp(fr->env.data[*slot - 1].name, name) == 0) return slot;
    }
}

static Binding *env_find(Frame *fr, const char *name) {
    if (fr->nslots == 0) return NULL;
    int slot = *env_slot(fr, name);
    return slot ? &fr->env.data[slot - 1] : NULL;
}

/* Binds a name in the frame; a later binding of a name hides the earlier. */
static void env_push(Frame *fr, Binding bd) {
    VEC_PUSH(fr->env, bd);
    if (2 * fr->env.len > fr->nslots) { /* grow and rehash: later bindings win */
        free(fr->slots);
        fr->nslots = fr->nslots ? 2 * fr->nslots : 16;
        while (2 * fr->env.len > fr->nslots) fr->nslots *= 2;
        fr->slots = xcalloc((size_t)fr->nslots, sizeof(int));
        for (int i = 0; i < fr->env.len; i++) *env_slot(fr, fr->env.data[i].name) = i + 1;
    } else {
        *env_slot(fr, bd.name) = fr->env.len;
    }
}

static bool dim_find(Frame *fr, const char *name, Dim *out) {
    for (int i = 0; i < fr->dims.len; i++) {
        if (strcmp(fr->dims.data[i].name, name) == 0) {
            *out = fr->dims.data[i].dim;
            return true;
        }
    }
    return false;
}

static void dim_bind(Frame *fr, const char *name, Dim d) {
    DimName dn = {name, d};
    VEC_PUSH(fr->dims, dn);
}

/* The Dim a symbolic name stands for in the entry graph: the user's binding
 * if there is one, else a symbol. */
static Dim entry_dim(Builder *b, const char *name) {
    for (int i = 0; i < b->nbinds; i++)
        if (strcmp(b->binds[i].name, name) == 0) return b->binds[i].size;
    return ir_sym_named(b->g, name);
}

/* ---- type strings for messages ------------------------------------------- */

static char *type_str_of(Builder *b, KilnDType dt, int rank, const Dim *shape) {
    return ir_type_str(b->g, dt, rank, shape);
}

static char *type_of(Builder *b, int id) {
    Node *n = N(b, id);
    return ir_type_str(b->g, n->dtype, n->rank, n->shape);
}

static char *dim_str(Builder *b, Dim d) {
    StrBuf sb = {0};
    ir_dim_print(b->g, d, &sb);
    return sb.data;
}

/* ---- products of dimensions, in canonical form ---------------------------
 * A product is a constant times a sorted list of symbolic factors; building
 * it the same way every time makes equal products equal Dims, so that
 * reshape(x, [B*T, C]) of an f32[B, T, C] checks symbolically. */

typedef struct {
    int64_t coef;
    VEC(Dim) syms;
} Product;

static void product_add_factor(Builder *b, Product *p, Dim d) {
    if (!DIM_IS_SYM(d)) {
        p->coef = sat_mul(p->coef, d);
        return;
    }
    const SymDim *s = &b->g->syms.data[DIM_SYM_INDEX(d)];
    if (s->kind == SYM_MUL) {
        Dim x = s->a, y = s->b;
        product_add_factor(b, p, x);
        product_add_factor(b, p, y);
        return;
    }
    VEC_PUSH(p->syms, d);
}

/* Symbols in the order they were made (B before T): -1, -2, ... */
static int dim_cmp(const void *a, const void *b) {
    Dim x = *(const Dim *)a, y = *(const Dim *)b;
    return x > y ? -1 : x < y;
}

static Dim product_dim(Builder *b, Product *p) {
    if (p->syms.len > 1) qsort(p->syms.data, (size_t)p->syms.len, sizeof(Dim), dim_cmp); /* data may be NULL */
    Dim d = p->coef;
    for (int i = 0; i < p->syms.len; i++) d = ir_dim_mul(b->g, d, p->syms.data[i]);
    return d;
}

static Dim dims_product(Builder *b, const Dim *dims, int n) {
    Product p = {.coef = 1};
    for (int i = 0; i < n; i++) product_add_factor(b, &p, dims[i]);
    Dim d = product_dim(b, &p);
    VEC_FREE(p.syms);
    return d;
}

/* num / den for reshape's -1: cancels common factors; NULL-free: an inexact
 * division yields -2 (the caller reports it). */
static Dim dims_divide(Builder *b, Dim num, Dim den) {
    Product pn = {.coef = 1}, pd = {.coef = 1};
    product_add_factor(b, &pn, num);
    product_add_factor(b, &pd, den);
    Dim result = -2;
    for (int i = 0; i < pd.syms.len; i++) {
        int j = 0;
        while (j < pn.syms.len && pn.syms.data[j] != pd.syms.data[i]) j++;
        if (j == pn.syms.len) goto done; /* a symbolic factor does not cancel */
        pn.syms.data[j] = pn.syms.data[--pn.syms.len];
    }
    if (pd.coef == 0 || pn.coef % pd.coef != 0) goto done;
    pn.coef /= pd.coef;
    result = product_dim(b, &pn);
done:
    VEC_FREE(pn.syms);
    VEC_FREE(pd.syms);
    return result;
}

/* ---- constants ------------------------------------------------------------ */

typedef enum { CK_NONE, CK_INT, CK_FLOAT, CK_BOOL } ConstKind;

typedef struct {
    ConstKind kind;
    double f;
    int64_t i;
} ConstVal;

/* Integer constants wrap around in two's complement, as i64 tensors do at
 * run time (computed in uint64: signed overflow would be undefined). */
static int64_t wrap_add(int64_t a, int64_t b) { return (int64_t)((uint64_t)a + (uint64_t)b); }
static int64_t wrap_sub(int64_t a, int64_t b) { return (int64_t)((uint64_t)a - (uint64_t)b); }
static int64_t wrap_mul(int64_t a, int64_t b) { return (int64_t)((uint64_t)a * (uint64_t)b); }
static int64_t wrap_pow(int64_t a, int64_t n) { /* n >= 0 */
    int64_t r = 1;
    for (; n > 0; n >>= 1, a = wrap_mul(a, a))
        if (n & 1) r = wrap_mul(r, a);
    return r;
}

/* Evaluates a compile-time constant expression made of literals and
 * + - * / % ** and unary signs, with Python's rules for the result's kind
 * (int / int and int ** negative int are floats).  kind == CK_NONE if it is
 * not one. */
static ConstVal const_eval(const Expr *e) {
    ConstVal none = {CK_NONE, 0, 0};
    if (!e) return none;
    switch (e->kind) {
    case E_INT: return (ConstVal){CK_INT, (double)e->ival, e->ival};
    case E_FLOAT: return (ConstVal){CK_FLOAT, e->fval, 0};
    case E_BOOL: return (ConstVal){CK_BOOL, (double)e->ival, e->ival};
    case E_UNARY: {
        ConstVal v = const_eval(e->lhs);
        if (v.kind == CK_NONE || v.kind == CK_BOOL) return e->op == UN_NOT && v.kind == CK_BOOL ?
                                                        (ConstVal){CK_BOOL, !v.i, !v.i} : none;
        if (e->op == UN_NEG) {
            v.f = -v.f;
            v.i = wrap_sub(0, v.i);
        }
        return e->op == UN_NOT ? none : v;
    }
    case E_BINARY: {
        ConstVal x = const_eval(e->lhs), y = const_eval(e->rhs);
        if (x.kind == CK_NONE || y.kind == CK_NONE || x.kind == CK_BOOL || y.kind == CK_BOOL)
            return none;
        bool is_int = x.kind == CK_INT && y.kind == CK_INT;
        ConstVal r = {is_int ? CK_INT : CK_FLOAT, 0, 0};
        switch (e->op) {
        case BIN_ADD: r.i = wrap_add(x.i, y.i); r.f = x.f + y.f; break;
        case BIN_SUB: r.i = wrap_sub(x.i, y.i); r.f = x.f - y.f; break;
        case BIN_MUL: r.i = wrap_mul(x.i, y.i); r.f = x.f * y.f; break;
        case BIN_DIV:
            r.kind = CK_FLOAT;
            r.f = x.f / y.f;
            break;
        case BIN_MOD:
            if (is_int) {
                if (y.i == 0) return none;
                r.i = y.i == -1 ? 0 : x.i % y.i; /* INT64_MIN % -1 traps */
                if (r.i != 0 && ((r.i < 0) != (y.i < 0))) r.i += y.i;
            } else {
                r.f = fmod(x.f, y.f);
                if (r.f != 0 && ((r.f < 0) != (y.f < 0))) r.f += y.f;
            }
            break;
        case BIN_POW:
            if (is_int && y.i < 0) r.kind = CK_FLOAT; /* 2 ** -1 == 0.5 */
            r.f = pow(x.f, y.f);
            if (r.kind == CK_INT) r.i = wrap_pow(x.i, y.i);
            break;
        default: return none;
        }
        if (r.kind == CK_INT) r.f = (double)r.i;
        return r;
    }
    default: return none;
    }
}

static Val make_const(Builder *b, double v, KilnDType dt, Loc loc, bool weak) {
    int id = add(b, OP_CONST, dt, 0, NULL, 0, NULL, loc);
    N(b, id)->value = v;
    return (Val){id, weak};
}

/* Gives a weak literal the dtype `dt` of the tensor beside it. */
static Val adapt_weak(Builder *b, Val v, KilnDType dt, const char *beside) {
    if (v.node == POISON || !v.weak) return v;
    Node *n = N(b, v.node);
    if (n->dtype == dt) return (Val){v.node, false};
    double x = n->value;
    if (dtype_is_int(dt) && n->dtype != KILN_BOOL && x != floor(x)) {
        diag_error(b->diags, n->loc, "the literal %g cannot be used with %s", x, beside);
        diag_hint(b->diags, "a literal takes the dtype of the tensor beside it (%s here); "
                            "cast the tensor first, e.g. cast(x, f32)", kiln_dtype_name(dt));
        return POISON_VAL;
    }
    if ((dt == KILN_BOOL) != (n->dtype == KILN_BOOL)) {
        diag_error(b->diags, n->loc, "a %s literal cannot be used with %s",
                   n->dtype == KILN_BOOL ? "boolean" : "numeric", beside);
        return POISON_VAL;
    }
    return make_const(b, x, dt, n->loc, false);
}

/* ---- kwargs and constant arguments ----------------------------------------- */

typedef struct {
    const Expr *call;
    const char *fname;
    const char *const *allowed; /* NULL-terminated keyword names */
} CallCtx;

static const Expr *kwarg(const CallCtx *c, const char *name) {
    for (int i = 0; i < c->call->nkwargs; i++)
        if (strcmp(c->call->kwargs[i].name, name) == 0) return c->call->kwargs[i].value;
    return NULL;
}

/* Checks positional count and keyword names; false if the call is malformed. */
static bool check_call_shape(Builder *b, const CallCtx *c, int min_pos, int max_pos) {
    bool ok = true;
    const Expr *e = c->call;
    if (e->nargs < min_pos || e->nargs > max_pos) {
        if (min_pos == max_pos)
            diag_error(b->diags, e->loc, "%s takes %d positional argument%s, found %d", c->fname,
                       min_pos, min_pos == 1 ? "" : "s", e->nargs);
        else
            diag_error(b->diags, e->loc, "%s takes %d to %d positional arguments, found %d",
                       c->fname, min_pos, max_pos, e->nargs);
        ok = false;
    }
    for (int i = 0; i < e->nkwargs; i++) {
        const KwArg *k = &e->kwargs[i];
        bool known = false;
        Suggest s = {0};
        for (int j = 0; c->allowed && c->allowed[j]; j++) {
            if (strcmp(c->allowed[j], k->name) == 0) known = true;
            suggest_try(&s, k->name, c->allowed[j]);
        }
        for (int j = 0; j < i; j++) {
            if (strcmp(e->kwargs[j].name, k->name) == 0) {
                diag_error(b->diags, k->loc, "keyword argument '%s' is given twice", k->name);
                ok = false;
            }
        }
        if (!known) {
            diag_error(b->diags, k->loc, "unknown keyword argument '%s' for %s", k->name, c->fname);
            if (s.best)
                diag_hint(b->diags, "did you mean '%s'?", s.best);
            else if (c->allowed && c->allowed[0]) {
                StrBuf sb = {0};
                for (int j = 0; c->allowed[j]; j++) sb_printf(&sb, "%s%s", j ? ", " : "", c->allowed[j]);
                diag_hint(b->diags, "%s accepts: %s", c->fname, sb.data);
                sb_free(&sb);
            } else {
                diag_hint(b->diags, "%s takes no keyword arguments", c->fname);
            }
            ok = false;
        }
    }
    return ok;
}

static bool const_int(Builder *b, const Expr *e, const char *what, int64_t *out) {
    ConstVal v = const_eval(e);
    if (v.kind != CK_INT) {
        diag_error(b->diags, e->loc, "%s must be an integer constant", what);
        return false;
    }
    *out = v.i;
    return true;
}

static bool const_number(Builder *b, const Expr *e, const char *what, double *out, bool *is_int) {
    ConstVal v = const_eval(e);
    if (v.kind != CK_INT && v.kind != CK_FLOAT) {
        diag_error(b->diags, e->loc, "%s must be a numeric constant", what);
        return false;
    }
    *out = v.f;
    if (is_int) *is_int = v.kind == CK_INT;
    return true;
}

static bool const_bool(Builder *b, const Expr *e, const char *what, bool *out) {
    ConstVal v = const_eval(e);
    if (v.kind != CK_BOOL) {
        diag_error(b->diags, e->loc, "%s must be true or false", what);
        return false;
    }
    *out = v.i != 0;
    return true;
}

/* An integer or a list of integers, e.g. axis=1 or axis=[0, 2]. */
static bool const_int_list(Builder *b, const Expr *e, const char *what, I64Vec *out,
                           bool *was_list) {
    if (was_list) *was_list = e->kind == E_LIST;
    if (e->kind != E_LIST) {
        int64_t v;
        if (!const_int(b, e, what, &v)) return false;
        VEC_PUSH(*out, v);
        return true;
    }
    bool ok = true;
    for (int i = 0; i < e->nargs; i++) {
        int64_t v;
        if (const_int(b, e->args[i], what, &v))
            VEC_PUSH(*out, v);
        else
            ok = false;
    }
    return ok;
}

/* A dimension expression of a shape list: an integer, a symbolic dimension of
 * the graph, or products/sums/quotients of those: reshape(x, [B*T, -1]).
 * With minus_one non-NULL a literal -1 is accepted and flagged there. */
static bool eval_dim(Builder *b, Frame *fr, const Expr *e, Dim *out, bool *minus_one) {
    ConstVal c = const_eval(e);
    if (minus_one) *minus_one = false;
    if (c.kind == CK_INT) {
        if (c.i == -1 && minus_one) {
            *minus_one = true;
            *out = 1;
            return true;
        }
        if (c.i < 0) {
            diag_error(b->diags, e->loc, "a dimension cannot be negative (%lld)", (long long)c.i);
            return false;
        }
        *out = c.i;
        return true;
    }
    if (e->kind == E_NAME) {
        if (dim_find(fr, e->name, out)) return true;
        diag_error(b->diags, e->loc, "'%s' is not a dimension of this graph", e->name);
        diag_hint(b->diags, "shape lists hold integers and the symbolic dimensions of the graph's "
                            "parameters");
        return false;
    }
    if (e->kind == E_BINARY && (e->op == BIN_MUL || e->op == BIN_ADD || e->op == BIN_DIV)) {
        Dim x, y;
        if (!eval_dim(b, fr, e->lhs, &x, NULL) || !eval_dim(b, fr, e->rhs, &y, NULL)) return false;
        if (e->op == BIN_MUL) {
            Dim f[2] = {x, y};
            *out = dims_product(b, f, 2);
        } else if (e->op == BIN_ADD) {
            *out = ir_dim_add(b->g, x, y);
        } else {
            if (y == 0) {
                diag_error(b->diags, e->loc, "division by zero in a dimension");
                return false;
            }
            Dim q = dims_divide(b, x, y);
            if (q == -2) {
                if (!DIM_IS_SYM(x) && !DIM_IS_SYM(y)) {
                    diag_error(b->diags, e->loc, "%lld is not divisible by %lld", (long long)x,
                               (long long)y);
                    return false;
                }
                q = ir_dim_div(b->g, x, y);
            }
            *out = q;
        }
        return true;
    }
    diag_error(b->diags, e->loc, "a dimension must be an integer constant or a symbolic dimension");
    return false;
}

/* A list of dimensions.  With minus_pos non-NULL one -1 is allowed; its
 * index lands there (-1 if none). */
static bool shape_list(Builder *b, Frame *fr, const Expr *e, const char *what, DimVec *out,
                       int *minus_pos) {
    if (e->kind != E_LIST) {
        diag_error(b->diags, e->loc, "%s must be a list of dimensions, e.g. [2, 3]", what);
        return false;
    }
    bool ok = true;
    if (minus_pos) *minus_pos = -1;
    for (int i = 0; i < e->nargs; i++) {
        Dim d;
        bool minus_one = false;
        if (!eval_dim(b, fr, e->args[i], &d, minus_pos ? &minus_one : NULL)) {
            ok = false;
            continue;
        }
        if (minus_one) {
            if (*minus_pos >= 0) {
                diag_error(b->diags, e->args[i]->loc, "only one dimension of a reshape can be -1");
                ok = false;
            }
            *minus_pos = i;
        }
        VEC_PUSH(*out, d);
    }
    return ok;
}

static bool const_dtype(Builder *b, const Expr *e, KilnDType *out) {
    if (e->kind == E_NAME && parse_dtype(e->name, out)) return true;
    diag_error(b->diags, e->loc, "expected a dtype (f32, f16, bf16, f64, i32, i64 or bool)");
    return false;
}

/* Normalises an axis against a rank; reports and returns false if out of range. */
static bool norm_axis(Builder *b, Loc loc, int64_t axis, int rank, int64_t *out) {
    if (axis < -rank || axis >= rank) {
        if (rank == 0)
            diag_error(b->diags, loc, "axis %lld is out of range for a rank-0 tensor", (long long)axis);
        else
            diag_error(b->diags, loc, "axis %lld is out of range for a tensor of rank %d",
                       (long long)axis, rank);
        if (rank > 0) diag_hint(b->diags, "valid axes are %d to %d", -rank, rank - 1);
        return false;
    }
    *out = axis < 0 ? axis + rank : axis;
    return true;
}

/* ---- broadcasting ---------------------------------------------------------- */

static bool broadcast_shapes(Builder *b, const int *ids, int n, Loc loc, const char *opname,
                             DimVec *out) {
    int rank = 0;
    for (int i = 0; i < n; i++)
        if (N(b, ids[i])->rank > rank) rank = N(b, ids[i])->rank;
    for (int k = 0; k < rank; k++) {
        Dim d = 1;
        for (int i = 0; i < n; i++) {
            Node *x = N(b, ids[i]);
            int off = rank - x->rank;
            if (k < off) continue;
            Dim e = x->shape[k - off];
            if (e == d || e == 1) continue;
            if (d == 1) {
                d = e;
                continue;
            }
            /* mismatch: name the two shapes */
            int j = 0;
            while (j < i) {
                Node *y = N(b, ids[j]);
                int offy = rank - y->rank;
                if (k >= offy && y->shape[k - offy] != 1 && y->shape[k - offy] != e) break;
                j++;
            }
            if (j == i) j = 0;
            char *ta = type_of(b, ids[j]), *tb = type_of(b, ids[i]);
            char *da = dim_str(b, d), *db = dim_str(b, e);
            diag_error(b->diags, loc, "cannot broadcast %s with %s", ta, tb);
            diag_hint(b->diags, "in '%s', sizes %s and %s differ in dimension %d from the right; "
                                "sizes must be equal or 1", opname, da, db, rank - k);
            free(ta), free(tb), free(da), free(db);
            return false;
        }
        VEC_PUSH(*out, d);
    }
    return true;
}

/* ---- elementwise ----------------------------------------------------------- */

static const char *const op_symbol[OP_COUNT] = {
    [OP_ADD] = "+", [OP_SUB] = "-", [OP_MUL] = "*", [OP_DIV] = "/", [OP_MOD] = "%",
    [OP_EQ] = "==", [OP_NE] = "!=", [OP_LT] = "<", [OP_LE] = "<=", [OP_GT] = ">",
    [OP_GE] = ">=", [OP_AND] = "and", [OP_OR] = "or", [OP_POW] = "**",
};

static const char *op_display(Op op) { return op_symbol[op] ? op_symbol[op] : op_info[op].name; }

/* Builds an elementwise op over n operands (binary, comparison, logic,
 * where); operand 0 of where is the bool condition. */
static Val elementwise(Builder *b, Op op, Val *args, int n, Loc loc) {
    for (int i = 0; i < n; i++)
        if (args[i].node == POISON) return POISON_VAL;
    int first_data = op == OP_WHERE ? 1 : 0;
    /* weak literals take the dtype of a strong operand beside them */
    KilnDType strong = KILN_NUM_DTYPES;
    int strong_id = -1;
    for (int i = first_data; i < n; i++)
        if (!args[i].weak) {
            strong = N(b, args[i].node)->dtype;
            strong_id = args[i].node;
            break;
        }
    if (strong != KILN_NUM_DTYPES) {
        for (int i = first_data; i < n; i++) {
            if (!args[i].weak) continue;
            char *beside = type_of(b, strong_id); /* for its message */
            args[i] = adapt_weak(b, args[i], strong, beside);
            free(beside);
        }
        for (int i = 0; i < n; i++)
            if (args[i].node == POISON) return POISON_VAL;
    } else if (n - first_data == 2) {
        /* two literals: int with float makes float */
        KilnDType a = N(b, args[first_data].node)->dtype, c = N(b, args[first_data + 1].node)->dtype;
        if (a != c && a != KILN_BOOL && c != KILN_BOOL) {
            args[first_data] = adapt_weak(b, args[first_data], KILN_F32, "f32");
            args[first_data + 1] = adapt_weak(b, args[first_data + 1], KILN_F32, "f32");
        }
    }
    if (op == OP_WHERE && n == 3 && args[0].weak)
        args[0] = adapt_weak(b, args[0], KILN_BOOL, "a condition");
    int ids[3];
    for (int i = 0; i < n; i++) ids[i] = args[i].node;
    if (op == OP_WHERE && N(b, ids[0])->dtype != KILN_BOOL) {
        char *t = type_of(b, ids[0]);
        diag_error(b->diags, loc, "the condition of where must be bool, found %s", t);
        diag_hint(b->diags, "compare to get a condition, e.g. where(x > 0, x, y)");
        free(t);
        return POISON_VAL;
    }
    KilnDType dt = N(b, ids[first_data])->dtype;
    for (int i = first_data + 1; i < n; i++) {
        KilnDType di = N(b, ids[i])->dtype;
        if (di != dt) {
            char *ta = type_of(b, ids[first_data]), *tb = type_of(b, ids[i]);
            diag_error(b->diags, loc, "operands of '%s' have different dtypes: %s and %s",
                       op_display(op), ta, tb);
            diag_hint(b->diags, "convert one of them with cast, e.g. cast(x, %s)",
                      kiln_dtype_name(dt == KILN_BOOL ? di : dt)); /* not to bool: no arithmetic */
            free(ta), free(tb);
            return POISON_VAL;
        }
    }
    OpKind kind = op_info[op].kind;
    if (kind == OK_LOGIC && dt != KILN_BOOL) {
        char *t = type_of(b, ids[first_data]);
        diag_error(b->diags, loc, "'%s' takes bool operands, found %s", op_display(op), t);
        diag_hint(b->diags, "compare first, e.g. (x > 0) %s (y > 0)", op_display(op));
        free(t);
        return POISON_VAL;
    }
    if (kind == OK_BINARY && dt == KILN_BOOL) {
        diag_error(b->diags, loc, "'%s' does not take bool operands", op_display(op));
        diag_hint(b->diags, "use and/or for logic, or cast(x, i32) for arithmetic");
        return POISON_VAL;
    }
    if ((op_info[op].flags & OPF_FLOAT) && !dtype_is_float(dt)) {
        char *t = type_of(b, ids[first_data]);
        diag_error(b->diags, loc, "'%s' needs floating-point operands, found %s", op_display(op), t);
        diag_hint(b->diags, "cast the operands first, e.g. cast(x, f32)");
        free(t);
        return POISON_VAL;
    }
    DimVec shape = {0};
    if (!broadcast_shapes(b, ids, n, loc, op_display(op), &shape)) {
        VEC_FREE(shape);
        return POISON_VAL;
    }
    KilnDType rdt = (kind == OK_COMPARE) ? KILN_BOOL : dt;
    int id = add(b, op, rdt, shape.len, shape.data, n, ids, loc);
    VEC_FREE(shape);
    bool weak = true;
    for (int i = 0; i < n; i++) weak = weak && args[i].weak;
    return (Val){id, false && weak};
}

static Val unary(Builder *b, Op op, Val x, Loc loc) {
    if (x.node == POISON) return x;
    Node *n = N(b, x.node);
    int flags = op_info[op].flags;
    const char *name = op_info[op].name;
    if (op == OP_NOT) {
        if (n->dtype != KILN_BOOL) {
            char *t = type_of(b, x.node);
            diag_error(b->diags, loc, "'not' takes a bool operand, found %s", t);
            diag_hint(b->diags, "compare first, e.g. not (x > 0)");
            free(t);
            return POISON_VAL;
        }
    } else if (n->dtype == KILN_BOOL) {
        diag_error(b->diags, loc, "%s does not take a bool operand", name);
        diag_hint(b->diags, "cast it first, e.g. cast(x, f32)");
        return POISON_VAL;
    } else if ((flags & OPF_FLOAT) && !dtype_is_float(n->dtype)) {
        if (x.weak) {
            x = adapt_weak(b, x, KILN_F32, "f32");
            n = N(b, x.node);
        } else {
            char *t = type_of(b, x.node);
            diag_error(b->diags, loc, "%s needs a floating-point operand, found %s", name, t);
            diag_hint(b->diags, "cast it first, e.g. %s(cast(x, f32))", name);
            free(t);
            return POISON_VAL;
        }
    }
    int in = x.node;
    int id = add(b, op, n->dtype, n->rank, n->shape, 1, &in, loc);
    return (Val){id, false};
}

/* ---- expressions -------------------------------------------------------------- */

static Val build_expr(Builder *b, Frame *fr, const Expr *e);
static int build_graph_call(Builder *b, Frame *fr, const Expr *e, int graph_index, Val *results,
                            int max_results);

static Val reshape_to(Builder *b, int x, const Dim *shape, int rank, Loc loc) {
    Node *n = N(b, x);
    if (n->rank == rank && (rank == 0 || memcmp(n->shape, shape, sizeof(Dim) * (size_t)rank) == 0))
        return (Val){x, false};
    int id = add(b, OP_RESHAPE, n->dtype, rank, shape, 1, &x, loc);
    return (Val){id, false};
}

static Val transpose_perm(Builder *b, int x, const int64_t *perm, Loc loc) {
    Node *n = N(b, x);
    Dim *shape = xmalloc(sizeof(Dim) * (size_t)(n->rank + 1));
    for (int i = 0; i < n->rank; i++) shape[i] = n->shape[perm[i]];
    int rank = n->rank;
    int id = add(b, OP_TRANSPOSE, n->dtype, rank, shape, 1, &x, loc); /* n is stale after add */
    set_ints(b, id, perm, rank);
    free(shape);
    return (Val){id, false};
}

/* NumPy matmul: 1-D operands are promoted and the added axis removed again;
 * batch dimensions broadcast. */
static Val matmul(Builder *b, Val va, Val vb, Loc loc) {
    if (va.node == POISON || vb.node == POISON) return POISON_VAL;
    if (va.weak || vb.weak || N(b, va.node)->rank == 0 || N(b, vb.node)->rank == 0) {
        diag_error(b->diags, loc, "matrix multiplication needs tensors of rank 1 or more");
        diag_hint(b->diags, "use '*' to multiply by a scalar");
        return POISON_VAL;
    }
    int a = va.node, c = vb.node;
    if (N(b, a)->dtype != N(b, c)->dtype) {
        char *ta = type_of(b, a), *tb = type_of(b, c);
        diag_error(b->diags, loc, "operands of '@' have different dtypes: %s and %s", ta, tb);
        diag_hint(b->diags, "convert one of them with cast, e.g. cast(x, %s)",
                  kiln_dtype_name(N(b, a)->dtype));
        free(ta), free(tb);
        return POISON_VAL;
    }
    if (N(b, a)->dtype == KILN_BOOL) {
        diag_error(b->diags, loc, "'@' does not take bool operands");
        return POISON_VAL;
    }
    bool a_vec = N(b, a)->rank == 1, b_vec = N(b, c)->rank == 1;
    if (a_vec) {
        Dim s[2] = {1, N(b, a)->shape[0]};
        a = reshape_to(b, a, s, 2, loc).node;
    }
    if (b_vec) {
        Dim s[2] = {N(b, c)->shape[0], 1};
        c = reshape_to(b, c, s, 2, loc).node;
    }
    Node *na = N(b, a), *nb = N(b, c);
    Dim k1 = na->shape[na->rank - 1], k2 = nb->shape[nb->rank - 2];
    if (k1 != k2) {
        char *ta = type_of(b, va.node), *tb = type_of(b, vb.node);
        char *d1 = dim_str(b, k1), *d2 = dim_str(b, k2);
        diag_error(b->diags, loc, "cannot multiply %s by %s: inner dimensions %s and %s differ", ta,
                   tb, d1, d2);
        diag_hint(b->diags, "for a @ b the last dimension of a must equal the second-to-last of b");
        free(ta), free(tb), free(d1), free(d2);
        return POISON_VAL;
    }
    /* batch dimensions broadcast like elementwise operands */
    int batch_a = na->rank - 2, batch_b = nb->rank - 2;
    int batch = batch_a > batch_b ? batch_a : batch_b;
    DimVec shape = {0};
    for (int k = 0; k < batch; k++) {
        int ia = k - (batch - batch_a), ib = k - (batch - batch_b);
        Dim da = ia >= 0 ? na->shape[ia] : 1, db = ib >= 0 ? nb->shape[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char *ta = type_of(b, va.node), *tb = type_of(b, vb.node);
            diag_error(b->diags, loc, "cannot broadcast the batch dimensions of %s and %s", ta, tb);
            free(ta), free(tb);
            VEC_FREE(shape);
            return POISON_VAL;
        }
        VEC_PUSH(shape, da == 1 ? db : da);
    }
    VEC_PUSH(shape, na->shape[na->rank - 2]);
    VEC_PUSH(shape, nb->shape[nb->rank - 1]);
    int ins[2] = {a, c};
    int id = add(b, OP_MATMUL, na->dtype, shape.len, shape.data, 2, ins, loc);
    /* drop the axes added for 1-D operands */
    Node *r = N(b, id);
    int rank = r->rank;
    Dim *out = xmalloc(sizeof(Dim) * (size_t)rank);
    int m = 0;
    for (int i = 0; i < rank; i++) {
        if (a_vec && i == rank - 2) continue;
        if (b_vec && i == rank - 1) continue;
        out[m++] = r->shape[i];
    }
    Val v = (a_vec || b_vec) ? reshape_to(b, id, out, m, loc) : (Val){id, false};
    free(out);
    VEC_FREE(shape);
    return v;
}

static Val build_index(Builder *b, Frame *fr, const Expr *e) {
    Val base = build_expr(b, fr, e->lhs);
    if (base.node == POISON) return base;
    Node *n = N(b, base.node);
    if (e->nargs > n->rank) {
        char *t = type_of(b, base.node);
        diag_error(b->diags, e->loc, "too many indices (%d) for %s", e->nargs, t);
        free(t);
        return POISON_VAL;
    }
    int rank = n->rank;
    int64_t *ints = xmalloc(sizeof(int64_t) * (size_t)(2 * rank + 1));
    Dim *shape = xmalloc(sizeof(Dim) * (size_t)(rank + 1));
    Dim *kept = xmalloc(sizeof(Dim) * (size_t)(rank + 1));
    int nkept = 0;
    bool ok = true, trivial = true;
    for (int k = 0; k < rank; k++) {
        Dim size = n->shape[k];
        int64_t start = 0, step = 1;
        Dim len = size;
        const Expr *it = k < e->nargs ? e->args[k] : NULL;
        if (it && it->kind != E_SLICE) { /* x[i]: one element, axis dropped */
            int64_t i;
            if (!const_int(b, it, "an index", &i)) {
                ok = false;
                continue;
            }
            if (!DIM_IS_SYM(size) && (i < -size || i >= size)) {
                diag_error(b->diags, it->loc, "index %lld is out of range for axis %d of size %lld",
                           (long long)i, k, (long long)size);
                ok = false;
                continue;
            }
            if (DIM_IS_SYM(size) && i < 0) start = 0; /* resolved when the size is bound */
            else start = i < 0 ? i + size : i;
            len = 1;
            trivial = false;
        } else {
            if (it) {
                int64_t a = 0, z = 0;
                bool has_a = it->lhs != NULL, has_z = it->rhs != NULL;
                if (it->step && !const_int(b, it->step, "a slice step", &step)) ok = false;
                if (has_a && !const_int(b, it->lhs, "a slice bound", &a)) ok = false;
                if (has_z && !const_int(b, it->rhs, "a slice bound", &z)) ok = false;
                if (!ok) continue;
                if (step <= 0) {
                    diag_error(b->diags, it->step->loc, "a slice step must be positive, found %lld",
                               (long long)step);
                    ok = false;
                    continue;
                }
                if (DIM_IS_SYM(size)) {
                    if (has_a || has_z || step != 1) {
                        StrBuf sb = {0};
                        ir_dim_print(b->g, size, &sb);
                        sb_puts(&sb, "[");
                        expr_print(it, &sb);
                        sb_puts(&sb, "]");
                        len = ir_dim_opaque(b->g, sb.data);
                        sb_free(&sb);
                        trivial = false;
                    }
                } else {
                    /* Python's slice.indices for a positive step */
                    if (!has_a) a = 0;
                    else if (a < 0) a = a + size < 0 ? 0 : a + size;
                    else if (a > size) a = size;
                    if (!has_z) z = size;
                    else if (z < 0) z = z + size < 0 ? 0 : z + size;
                    else if (z > size) z = size;
                    start = a;
                    len = z > a ? (z - a - 1) / step + 1 : 0;
                    if (start != 0 || step != 1 || len != size) trivial = false;
                }
            }
            kept[nkept++] = len;
        }
        ints[2 * k] = start;
        ints[2 * k + 1] = step;
        shape[k] = len;
    }
    Val v = POISON_VAL;
    if (ok) {
        int in = base.node;
        int id = in;
        if (!trivial) {
            id = add(b, OP_SLICE, n->dtype, rank, shape, 1, &in, e->loc);
            set_ints(b, id, ints, 2 * rank);
        }
        v = reshape_to(b, id, kept, nkept, e->loc);
    }
    free(ints), free(shape), free(kept);
    return v;
}

static const char *const kw_none[] = {NULL};
static const char *const kw_axis[] = {"axis", NULL};
static const char *const kw_axis_keep[] = {"axis", "keepdims", NULL};
static const char *const kw_norm[] = {"axis", "eps", NULL};
static const char *const kw_gelu[] = {"approximate", NULL};
static const char *const kw_pad[] = {"value", NULL};
static const char *const kw_conv[] = {"stride", "padding", "dilation", "groups", NULL};
static const char *const kw_pool[] = {"stride", "padding", NULL};

/* stride=2 or stride=[2, 1] */
static bool int_pair(Builder *b, const Expr *e, const char *what, int64_t out[2], int64_t min) {
    I64Vec v = {0};
    bool ok = const_int_list(b, e, what, &v, NULL);
    if (ok && (v.len == 1 || v.len == 2)) {
        out[0] = v.data[0];
        out[1] = v.len == 2 ? v.data[1] : v.data[0];
        if (out[0] < min || out[1] < min) {
            diag_error(b->diags, e->loc, "%s must be at least %lld", what, (long long)min);
            ok = false;
        }
    } else if (ok) {
        diag_error(b->diags, e->loc, "%s must be an integer or a pair [h, w]", what);
        ok = false;
    }
    VEC_FREE(v);
    return ok;
}

/* x is the built first argument (building it again would duplicate its nodes). */
static Val reduce(Builder *b, Op op, const CallCtx *c, Val x) {
    const Expr *e = c->call;
    if (x.node == POISON) return x;
    Node *n = N(b, x.node);
    if (n->dtype == KILN_BOOL) {
        diag_error(b->diags, e->loc, "%s does not take a bool tensor", c->fname);
        diag_hint(b->diags, "cast it first, e.g. %s(cast(x, i64))", c->fname);
        return POISON_VAL;
    }
    if ((op_info[op].flags & OPF_FLOAT) && !dtype_is_float(n->dtype)) {
        char *t = type_of(b, x.node);
        diag_error(b->diags, e->loc, "%s needs a floating-point tensor, found %s", c->fname, t);
        diag_hint(b->diags, "cast it first, e.g. %s(cast(x, f32))", c->fname);
        free(t);
        return POISON_VAL;
    }
    int rank = n->rank;
    bool *reduced = xcalloc((size_t)rank + 1, sizeof(bool));
    const Expr *axis_e = kwarg(c, "axis"), *keep_e = kwarg(c, "keepdims");
    bool keep = false, ok = true, is_arg = op == OP_ARGMAX || op == OP_ARGMIN;
    if (keep_e && !const_bool(b, keep_e, "keepdims", &keep)) ok = false;
    I64Vec axes = {0};
    if (axis_e) {
        bool was_list;
        if (!const_int_list(b, axis_e, "axis", &axes, &was_list)) ok = false;
        if (ok && is_arg && was_list) {
            diag_error(b->diags, axis_e->loc, "%s takes a single axis", c->fname);
            ok = false;
        }
        for (int i = 0; ok && i < axes.len; i++) {
            int64_t a;
            if (!norm_axis(b, axis_e->loc, axes.data[i], rank, &a)) {
                ok = false;
                break;
            }
            if (reduced[a]) {
                diag_error(b->diags, axis_e->loc, "axis %lld is listed twice", (long long)axes.data[i]);
                ok = false;
            }
            reduced[a] = true;
        }
    } else if (!is_arg) {
        for (int k = 0; k < rank; k++) reduced[k] = true;
    }
    Val v = POISON_VAL;
    if (ok) {
        DimVec shape = {0};
        I64Vec sorted = {0};
        bool all = !axis_e && is_arg; /* argmax over the flattened tensor */
        for (int k = 0; k < rank; k++) {
            if (reduced[k] || all) {
                if (reduced[k]) VEC_PUSH(sorted, k);
                if (keep) VEC_PUSH(shape, 1);
            } else {
                VEC_PUSH(shape, n->shape[k]);
            }
        }
        int in = x.node;
        KilnDType dt = is_arg ? KILN_I64 : n->dtype;
        int id = add(b, op, dt, shape.len, shape.data, 1, &in, e->loc);
        set_ints(b, id, sorted.data, sorted.len);
        N(b, id)->flag = keep;
        v = (Val){id, false};
        VEC_FREE(shape);
        VEC_FREE(sorted);
    }
    VEC_FREE(axes);
    free(reduced);
    return v;
}

static Val creation(Builder *b, Frame *fr, const char *fname, const CallCtx *c) {
    const Expr *e = c->call;
    DimVec shape = {0};
    KilnDType dt = KILN_F32;
    double value = 0;
    Val v = POISON_VAL;
    bool ok = true;
    if (strcmp(fname, "arange") == 0) {
        Dim n;
        if (!eval_dim(b, fr, e->args[0], &n, NULL)) return POISON_VAL;
        dt = KILN_I64;
        if (e->nargs > 1 && !const_dtype(b, e->args[1], &dt)) return POISON_VAL;
        if (dt == KILN_BOOL) {
            diag_error(b->diags, e->args[1]->loc, "arange cannot make a bool tensor");
            return POISON_VAL;
        }
        int id = add(b, OP_IOTA, dt, 1, &n, 0, NULL, e->loc);
        return (Val){id, false};
    }
    ok = shape_list(b, fr, e->args[0], "the shape", &shape, NULL);
    int dtype_arg = 1;
    if (strcmp(fname, "full") == 0) {
        bool is_int = false;
        ConstVal cv = const_eval(e->args[1]);
        if (cv.kind == CK_BOOL) {
            value = (double)cv.i;
            dt = KILN_BOOL;
        } else if (const_number(b, e->args[1], "the fill value", &value, &is_int)) {
            dt = is_int ? KILN_I64 : KILN_F32;
        } else {
            ok = false;
        }
        dtype_arg = 2;
    } else {
        value = strcmp(fname, "ones") == 0 ? 1.0 : 0.0;
    }
    if (e->nargs > dtype_arg && !const_dtype(b, e->args[dtype_arg], &dt)) ok = false;
    if (ok && dtype_is_int(dt) && value != floor(value)) {
        diag_error(b->diags, e->args[1]->loc, "the fill value %g is not an integer, but the dtype is %s",
                   value, kiln_dtype_name(dt));
        ok = false;
    }
    if (ok) {
        int id = add(b, OP_FULL, dt, shape.len, shape.data, 0, NULL, e->loc);
        N(b, id)->value = value;
        v = (Val){id, false};
    }
    VEC_FREE(shape);
    return v;
}

static Val build_reshape(Builder *b, Frame *fr, const CallCtx *c, Val x) {
    const Expr *e = c->call;
    DimVec shape = {0};
    Val v = POISON_VAL;
    int minus = -1;
    if (!shape_list(b, fr, e->args[1], "the new shape", &shape, &minus)) goto done;
    Node *n = N(b, x.node);
    Dim total = dims_product(b, n->shape, n->rank);
    if (minus >= 0) {
        shape.data[minus] = 1;
        Dim known = dims_product(b, shape.data, shape.len);
        Dim q = known == 0 ? -2 : dims_divide(b, total, known);
        if (q == -2) {
            char *t = type_of(b, x.node), *kd = dim_str(b, known);
            diag_error(b->diags, e->loc, "cannot reshape %s: its size is not a multiple of %s", t, kd);
            free(t), free(kd);
            goto done;
        }
        shape.data[minus] = q;
    }
    Dim out_total = dims_product(b, shape.data, shape.len);
    if (out_total != total) {
        char *t = type_of(b, x.node), *ts = ir_type_str(b->g, n->dtype, shape.len, shape.data);
        char *a = dim_str(b, total), *z = dim_str(b, out_total);
        diag_error(b->diags, e->loc, "cannot reshape %s (%s elements) into %s (%s elements)", t, a, ts, z);
        free(t), free(ts), free(a), free(z);
        goto done;
    }
    v = reshape_to(b, x.node, shape.data, shape.len, e->loc);
    if (v.node == x.node) { /* keep an explicit node so the IR shows the user's reshape */
        int in = x.node;
        v.node = add(b, OP_RESHAPE, n->dtype, shape.len, shape.data, 1, &in, e->loc);
    }
done:
    VEC_FREE(shape);
    return v;
}

static Val build_transpose(Builder *b, const CallCtx *c, Val x) {
    const Expr *e = c->call;
    Node *n = N(b, x.node);
    int rank = n->rank;
    int64_t *perm = xmalloc(sizeof(int64_t) * (size_t)(rank + 1));
    bool ok = true;
    if (e->nargs == 1) {
        for (int i = 0; i < rank; i++) perm[i] = rank - 1 - i;
    } else {
        I64Vec p = {0};
        ok = e->args[1]->kind == E_LIST && const_int_list(b, e->args[1], "a permutation", &p, NULL);
        if (!ok && e->args[1]->kind != E_LIST)
            diag_error(b->diags, e->args[1]->loc, "the permutation must be a list such as [1, 0]");
        bool *seen = xcalloc((size_t)rank + 1, 1);
        if (ok && p.len != rank) {
            diag_error(b->diags, e->args[1]->loc, "the permutation has %d entries, the tensor has rank %d",
                       p.len, rank);
            ok = false;
        }
        for (int i = 0; ok && i < rank; i++) {
            int64_t a;
            if (!norm_axis(b, e->args[1]->args[i]->loc, p.data[i], rank, &a)) ok = false;
            else if (seen[a]) {
                diag_error(b->diags, e->args[1]->args[i]->loc, "axis %lld appears twice in the permutation",
                           (long long)p.data[i]);
                ok = false;
            } else {
                seen[a] = true;
                perm[i] = a;
            }
        }
        free(seen);
        VEC_FREE(p);
    }
    Val v = ok ? transpose_perm(b, x.node, perm, e->loc) : POISON_VAL;
    free(perm);
    return v;
}

static Val build_broadcast(Builder *b, Frame *fr, const CallCtx *c, Val x) {
    const Expr *e = c->call;
    DimVec shape = {0};
    Val v = POISON_VAL;
    if (!shape_list(b, fr, e->args[1], "the target shape", &shape, NULL)) goto done;
    Node *n = N(b, x.node);
    bool ok = shape.len >= n->rank;
    for (int k = 0; ok && k < n->rank; k++) {
        Dim d = n->shape[k], t = shape.data[shape.len - n->rank + k];
        ok = d == t || d == 1;
    }
    if (!ok) {
        char *t = type_of(b, x.node), *ts = ir_type_str(b->g, n->dtype, shape.len, shape.data);
        diag_error(b->diags, e->loc, "cannot broadcast %s to %s", t, ts);
        diag_hint(b->diags, "each dimension must equal the target's or be 1, aligned from the right");
        free(t), free(ts);
        goto done;
    }
    int in = x.node;
    v = (Val){add(b, OP_BROADCAST, n->dtype, shape.len, shape.data, 1, &in, e->loc), false};
done:
    VEC_FREE(shape);
    return v;
}

static Val build_concat(Builder *b, Frame *fr, const CallCtx *c) {
    const Expr *e = c->call, *list = e->args[0];
    if (list->kind != E_LIST || list->nargs == 0) {
        diag_error(b->diags, list->loc, "concat takes a list of tensors, e.g. concat([a, b], axis=0)");
        return POISON_VAL;
    }
    int n = list->nargs;
    int *ids = xmalloc(sizeof(int) * (size_t)n);
    bool ok = true;
    for (int i = 0; i < n; i++) {
        Val v = build_expr(b, fr, list->args[i]);
        ids[i] = v.node;
        if (v.node == POISON) ok = false;
    }
    int64_t axis = 0;
    const Expr *ax = kwarg(c, "axis");
    if (ax && !const_int(b, ax, "axis", &axis)) ok = false;
    Val out = POISON_VAL;
    if (!ok) goto done;
    Node *first = N(b, ids[0]);
    int64_t a;
    if (first->rank == 0) {
        diag_error(b->diags, list->args[0]->loc, "concat needs tensors of rank 1 or more");
        goto done;
    }
    if (!norm_axis(b, ax ? ax->loc : e->loc, axis, first->rank, &a)) goto done;
    Dim total = 0;
    for (int i = 0; i < n; i++) {
        Node *x = N(b, ids[i]);
        bool same = x->dtype == first->dtype && x->rank == first->rank;
        for (int k = 0; same && k < x->rank; k++) same = k == a || x->shape[k] == first->shape[k];
        if (!same) {
            char *ta = type_of(b, ids[0]), *tb = type_of(b, ids[i]);
            diag_error(b->diags, list->args[i]->loc, "cannot concatenate %s and %s along axis %lld",
                       ta, tb, (long long)a);
            diag_hint(b->diags, "all tensors need the same dtype, rank and sizes except along the axis");
            free(ta), free(tb);
            goto done;
        }
        total = ir_dim_add(b->g, total, x->shape[a]);
    }
    Dim *shape = xmalloc(sizeof(Dim) * (size_t)first->rank);
    memcpy(shape, first->shape, sizeof(Dim) * (size_t)first->rank);
    shape[a] = total;
    int id = add(b, OP_CONCAT, first->dtype, first->rank, shape, n, ids, e->loc);
    set_ints(b, id, &a, 1);
    free(shape);
    out = (Val){id, false};
done:
    free(ids);
    return out;
}

static Val build_pad(Builder *b, const CallCtx *c, Val x) {
    const Expr *e = c->call, *pads = e->args[1];
    Node *n = N(b, x.node);
    if (pads->kind != E_LIST || pads->nargs != n->rank) {
        char *t = type_of(b, x.node);
        diag_error(b->diags, pads->loc, "pad needs one [lo, hi] pair per dimension of %s", t);
        free(t);
        return POISON_VAL;
    }
    int64_t *ints = xmalloc(sizeof(int64_t) * (size_t)(2 * n->rank + 1));
    Dim *shape = xmalloc(sizeof(Dim) * (size_t)(n->rank + 1));
    bool ok = true;
    for (int k = 0; k < n->rank; k++) {
        const Expr *p = pads->args[k];
        if (p->kind != E_LIST || p->nargs != 2 || !const_int(b, p->args[0], "a pad width", &ints[2 * k]) ||
            !const_int(b, p->args[1], "a pad width", &ints[2 * k + 1])) {
            if (p->kind != E_LIST || p->nargs != 2)
                diag_error(b->diags, p->loc, "each pad entry is a pair [lo, hi]");
            ok = false;
            continue;
        }
        if (ints[2 * k] < 0 || ints[2 * k + 1] < 0) {
            diag_error(b->diags, p->loc, "pad widths cannot be negative");
            ok = false;
            continue;
        }
        shape[k] = ir_dim_add(b->g, n->shape[k], sat_add(ints[2 * k], ints[2 * k + 1]));
    }
    double value = 0;
    const Expr *ve = kwarg(c, "value");
    if (ve && !const_number(b, ve, "the pad value", &value, NULL)) ok = false;
    if (ok && dtype_is_int(n->dtype) && value != floor(value)) {
        diag_error(b->diags, ve->loc, "the pad value %g is not an integer, but the tensor is %s",
                   value, kiln_dtype_name(n->dtype));
        ok = false;
    }
    Val v = POISON_VAL;
    if (ok) {
        int in = x.node, rank = n->rank;
        int id = add(b, OP_PAD, n->dtype, rank, shape, 1, &in, e->loc); /* n is stale after add */
        set_ints(b, id, ints, 2 * rank);
        N(b, id)->value = value;
        v = (Val){id, false};
    }
    free(ints), free(shape);
    return v;
}

static Val build_squeeze(Builder *b, const CallCtx *c, Val x, bool un) {
    const Expr *e = c->call;
    Node *n = N(b, x.node);
    const Expr *ax = kwarg(c, "axis");
    if (!ax && e->nargs > 1) ax = e->args[1];
    int64_t axis = 0;
    bool has_axis = ax != NULL;
    if (ax && !const_int(b, ax, "axis", &axis)) return POISON_VAL;
    Dim *shape = xmalloc(sizeof(Dim) * (size_t)(n->rank + 2));
    int m = 0;
    Val v = POISON_VAL;
    if (un) {
        if (!has_axis) {
            diag_error(b->diags, e->loc, "unsqueeze needs axis=");
            goto done;
        }
        int64_t a;
        if (!norm_axis(b, ax->loc, axis, n->rank + 1, &a)) goto done;
        for (int k = 0; k <= n->rank; k++) {
            if (k == a) shape[m++] = 1;
            if (k < n->rank) shape[m++] = n->shape[k];
        }
    } else {
        int64_t a = -1;
        if (has_axis && !norm_axis(b, ax->loc, axis, n->rank, &a)) goto done;
        if (has_axis && n->shape[a] != 1) {
            char *t = type_of(b, x.node), *d = dim_str(b, n->shape[a]);
            diag_error(b->diags, ax->loc, "cannot squeeze axis %lld of %s: its size is %s, not 1",
                       (long long)axis, t, d);
            free(t), free(d);
            goto done;
        }
        for (int k = 0; k < n->rank; k++)
            if (has_axis ? k != a : n->shape[k] != 1) shape[m++] = n->shape[k];
    }
    int in = x.node;
    v = (Val){add(b, OP_RESHAPE, n->dtype, m, shape, 1, &in, e->loc), false};
done:
    free(shape);
    return v;
}

/* Checks that `v` is a 1-D tensor of `size` and dtype `dt`, for gamma/beta/bias. */
static bool check_vector(Builder *b, Val v, Dim size, KilnDType dt, const char *what, Loc loc) {
    if (v.node == POISON) return false;
    Node *n = N(b, v.node);
    if (n->rank == 1 && n->shape[0] == size && n->dtype == dt) return true;
    char *t = type_of(b, v.node), *want = ir_type_str(b->g, dt, 1, &size);
    diag_error(b->diags, loc, "%s must be %s, found %s", what, want, t);
    free(t), free(want);
    return false;
}

static Val build_norm(Builder *b, Frame *fr, Op op, const CallCtx *c, Val x) {
    const Expr *e = c->call;
    Node *n = N(b, x.node);
    int64_t axis = -1, a;
    double eps = op == OP_LAYERNORM ? 1e-5 : 1e-6;
    const Expr *ax = kwarg(c, "axis"), *ep = kwarg(c, "eps");
    if (ax && !const_int(b, ax, "axis", &axis)) return POISON_VAL;
    if (ep && !const_number(b, ep, "eps", &eps, NULL)) return POISON_VAL;
    if (n->rank == 0) {
        diag_error(b->diags, e->loc, "%s needs a tensor of rank 1 or more", c->fname);
        return POISON_VAL;
    }
    if (!norm_axis(b, ax ? ax->loc : e->loc, axis, n->rank, &a)) return POISON_VAL;
    int nin = op == OP_LAYERNORM ? 3 : 2;
    int ins[3] = {x.node, 0, 0};
    bool ok = true;
    for (int i = 1; i < nin; i++) {
        Val p = build_expr(b, fr, e->args[i]);
        ins[i] = p.node;
        ok = check_vector(b, p, N(b, x.node)->shape[a], N(b, x.node)->dtype,
                          i == 1 ? "gamma" : "beta", e->args[i]->loc) && ok;
    }
    if (!ok) return POISON_VAL;
    n = N(b, x.node);
    int id = add(b, op, n->dtype, n->rank, n->shape, nin, ins, e->loc);
    set_ints(b, id, &a, 1);
    N(b, id)->value = eps;
    return (Val){id, false};
}

static Val build_softmax(Builder *b, Op op, const CallCtx *c, Val x) {
    const Expr *e = c->call;
    Node *n = N(b, x.node);
    int64_t axis = -1, a;
    const Expr *ax = kwarg(c, "axis");
    if (ax && !const_int(b, ax, "axis", &axis)) return POISON_VAL;
    if (n->rank == 0) {
        diag_error(b->diags, e->loc, "%s needs a tensor of rank 1 or more", c->fname);
        return POISON_VAL;
    }
    if (!norm_axis(b, ax ? ax->loc : e->loc, axis, n->rank, &a)) return POISON_VAL;
    int in = x.node;
    int id = add(b, op, n->dtype, n->rank, n->shape, 1, &in, e->loc);
    set_ints(b, id, &a, 1);
    return (Val){id, false};
}

/* Output size of a convolution or pooling window along one axis. */
static Dim window_out(Builder *b, Dim size, int64_t k, int64_t s, int64_t p, int64_t d) {
    if (DIM_IS_SYM(size)) {
        /* floor((size + 2p - span) / s) + 1 as a size of its own, named by that
         * formula: equal only to the same window over the same size */
        int64_t c = sat_add(sat_add(sat_mul(2, p), -sat_mul(d, k - 1)), s - 1); /* floor((size + c) / s) */
        if (s == 1 && c == 0) return size;
        char *in = dim_str(b, size);
        bool paren = strpbrk(in, "+-*/") != NULL;
        StrBuf name = {0};
        if (s == 1) sb_printf(&name, paren ? "(%s)%+lld" : "%s%+lld", in, (long long)c);
        else if (c == 0) sb_printf(&name, paren ? "(%s)/%lld" : "%s/%lld", in, (long long)s);
        else sb_printf(&name, paren ? "((%s)%+lld)/%lld" : "(%s%+lld)/%lld", in, (long long)c, (long long)s);
        Dim r = ir_dim_opaque(b->g, name.data);
        free(in);
        sb_free(&name);
        return r;
    }
    int64_t span = sat_add(sat_mul(d, k - 1), 1);
    int64_t num = sat_add(sat_add(size, sat_mul(2, p)), -span);
    return num < 0 ? 0 : num / s + 1;
}

static Val build_conv(Builder *b, Frame *fr, const CallCtx *c, Val x) {
    const Expr *e = c->call;
    Val w = build_expr(b, fr, e->args[1]);
    Val bias = e->nargs > 2 ? build_expr(b, fr, e->args[2]) : (Val){0, false};
    if (w.node == POISON || bias.node == POISON) return POISON_VAL;
    int64_t stride[2] = {1, 1}, pad[2] = {0, 0}, dil[2] = {1, 1}, groups = 1;
    const Expr *k;
    if ((k = kwarg(c, "stride")) && !int_pair(b, k, "stride", stride, 1)) return POISON_VAL;
    if ((k = kwarg(c, "padding")) && !int_pair(b, k, "padding", pad, 0)) return POISON_VAL;
    if ((k = kwarg(c, "dilation")) && !int_pair(b, k, "dilation", dil, 1)) return POISON_VAL;
    if ((k = kwarg(c, "groups")) && !const_int(b, k, "groups", &groups)) return POISON_VAL;
    Node *nx = N(b, x.node), *nw = N(b, w.node);
    if (nx->rank != 4 || nw->rank != 4) {
        char *tx = type_of(b, x.node), *tw = type_of(b, w.node);
        diag_error(b->diags, e->loc, "conv2d takes x[N, C, H, W] and w[O, C/groups, KH, KW], found %s and %s",
                   tx, tw);
        free(tx), free(tw);
        return POISON_VAL;
    }
    if (nx->dtype != nw->dtype) {
        char *tx = type_of(b, x.node), *tw = type_of(b, w.node);
        diag_error(b->diags, e->loc, "conv2d operands have different dtypes: %s and %s", tx, tw);
        diag_hint(b->diags, "convert one of them with cast");
        free(tx), free(tw);
        return POISON_VAL;
    }
    if (groups < 1 || DIM_IS_SYM(nw->shape[0]) || nw->shape[0] % groups != 0) {
        diag_error(b->diags, e->loc, "groups=%lld must be positive and divide the %s output channels",
                   (long long)groups, "weight's");
        return POISON_VAL;
    }
    Dim want_c = DIM_IS_SYM(nw->shape[1]) ? nw->shape[1] : sat_mul(nw->shape[1], groups);
    if (nx->shape[1] != want_c) {
        char *tx = type_of(b, x.node), *tw = type_of(b, w.node);
        char *have = dim_str(b, nx->shape[1]), *want = dim_str(b, want_c);
        diag_error(b->diags, e->loc, "conv2d channel mismatch: input %s has %s channels, weight %s expects %s",
                   tx, have, tw, want);
        free(tx), free(tw), free(have), free(want);
        return POISON_VAL;
    }
    if (DIM_IS_SYM(nw->shape[2]) || DIM_IS_SYM(nw->shape[3])) {
        diag_error(b->diags, e->loc, "conv2d needs a kernel of known size");
        return POISON_VAL;
    }
    Dim shape[4] = {nx->shape[0], nw->shape[0],
                    window_out(b, nx->shape[2], nw->shape[2], stride[0], pad[0], dil[0]),
                    window_out(b, nx->shape[3], nw->shape[3], stride[1], pad[1], dil[1])};
    if (shape[2] == 0 || shape[3] == 0) {
        diag_error(b->diags, e->loc, "the conv2d kernel is larger than the padded input");
        return POISON_VAL;
    }
    if (e->nargs > 2 && !check_vector(b, bias, nw->shape[0], nw->dtype, "the bias", e->args[2]->loc))
        return POISON_VAL;
    int ins[3] = {x.node, w.node, bias.node};
    int id = add(b, OP_CONV2D, nx->dtype, 4, shape, e->nargs > 2 ? 3 : 2, ins, e->loc);
    int64_t ints[7] = {stride[0], stride[1], pad[0], pad[1], dil[0], dil[1], groups};
    set_ints(b, id, ints, 7);
    return (Val){id, false};
}

static Val build_pool(Builder *b, Op op, const CallCtx *c, Val x) {
    const Expr *e = c->call;
    int64_t kern[2], stride[2], pad[2] = {0, 0};
    if (!int_pair(b, e->args[1], "the pool kernel", kern, 1)) return POISON_VAL;
    stride[0] = kern[0], stride[1] = kern[1];
    const Expr *k;
    if ((k = kwarg(c, "stride")) && !int_pair(b, k, "stride", stride, 1)) return POISON_VAL;
    if ((k = kwarg(c, "padding")) && !int_pair(b, k, "padding", pad, 0)) return POISON_VAL;
    Node *n = N(b, x.node);
    if (n->rank != 4) {
        char *t = type_of(b, x.node);
        diag_error(b->diags, e->loc, "%s takes x[N, C, H, W], found %s", c->fname, t);
        free(t);
        return POISON_VAL;
    }
    if (n->dtype == KILN_BOOL || (op == OP_AVGPOOL2D && !dtype_is_float(n->dtype))) {
        diag_error(b->diags, e->loc, "%s needs a %s tensor", c->fname,
                   op == OP_AVGPOOL2D ? "floating-point" : "numeric");
        return POISON_VAL;
    }
    if (pad[0] > kern[0] / 2 || pad[1] > kern[1] / 2) {
        diag_error(b->diags, k ? k->loc : e->loc, "padding must be at most half the pool kernel");
        return POISON_VAL;
    }
    Dim shape[4] = {n->shape[0], n->shape[1], window_out(b, n->shape[2], kern[0], stride[0], pad[0], 1),
                    window_out(b, n->shape[3], kern[1], stride[1], pad[1], 1)};
    if (shape[2] == 0 || shape[3] == 0) {
        diag_error(b->diags, e->loc, "the pool kernel is larger than the padded input");
        return POISON_VAL;
    }
    int in = x.node;
    int id = add(b, op, n->dtype, 4, shape, 1, &in, e->loc);
    int64_t ints[6] = {kern[0], kern[1], stride[0], stride[1], pad[0], pad[1]};
    set_ints(b, id, ints, 6);
    return (Val){id, false};
}

static Val build_linear(Builder *b, Frame *fr, const CallCtx *c, Val x) {
    const Expr *e = c->call;
    Val w = build_expr(b, fr, e->args[1]);
    Val bias = e->nargs > 2 ? build_expr(b, fr, e->args[2]) : (Val){0, false};
    if (w.node == POISON || bias.node == POISON) return POISON_VAL;
    if (N(b, w.node)->rank != 2) {
        char *t = type_of(b, w.node);
        diag_error(b->diags, e->args[1]->loc, "linear's weight must be 2-D [out, in], found %s", t);
        free(t);
        return POISON_VAL;
    }
    int64_t perm[2] = {1, 0};
    Val wt = transpose_perm(b, w.node, perm, e->loc);
    Val y = matmul(b, x, wt, e->loc);
    if (y.node == POISON || e->nargs < 3) return y;
    if (!check_vector(b, bias, N(b, w.node)->shape[0], N(b, w.node)->dtype, "the bias", e->args[2]->loc))
        return POISON_VAL;
    Val args[2] = {y, bias};
    return elementwise(b, OP_ADD, args, 2, e->loc);
}

static Val build_call(Builder *b, Frame *fr, const Expr *e) {
    const char *name = e->name;
    int gi = program_find_graph(b->prog, name);
    if (gi >= 0) {
        Val results[1];
        int n = build_graph_call(b, fr, e, gi, results, 1);
        if (n < 0) return POISON_VAL;
        if (n != 1) {
            diag_error(b->diags, e->loc, "graph '%s' returns %d results; bind them with 'a, b = %s(...)'",
                       name, n, name);
            return POISON_VAL;
        }
        return results[0];
    }
    Op op;
    bool is_op = op_lookup(name, &op);
    bool is_sugar = false;
    for (int i = 0; sugar_builtins[i]; i++) is_sugar = is_sugar || strcmp(sugar_builtins[i], name) == 0;
    if (!is_op && !is_sugar) {
        Suggest s = {0};
        for (int i = 0; i < OP_COUNT; i++)
            if (op_info[i].flags & OPF_BUILTIN) suggest_try(&s, name, op_info[i].name);
        for (int i = 0; sugar_builtins[i]; i++) suggest_try(&s, name, sugar_builtins[i]);
        for (int i = 0; i < b->prog->ngraphs; i++) suggest_try(&s, name, b->prog->graphs[i].name);
        diag_error(b->diags, e->loc, "unknown function '%s'", name);
        if (s.best) diag_hint(b->diags, "did you mean '%s'?", s.best);
        return POISON_VAL;
    }
    CallCtx c = {e, name, kw_none};
    /* creation functions take shapes and constants, not tensors */
    if (strcmp(name, "zeros") == 0 || strcmp(name, "ones") == 0) {
        if (!check_call_shape(b, &c, 1, 2)) return POISON_VAL;
        return creation(b, fr, name, &c);
    }
    if (is_op && (op == OP_FULL || op == OP_IOTA)) {
        if (!check_call_shape(b, &c, op == OP_FULL ? 2 : 1, op == OP_FULL ? 3 : 2)) return POISON_VAL;
        return creation(b, fr, name, &c);
    }
    if (is_op && op == OP_CONCAT) {
        c.allowed = kw_axis;
        if (!check_call_shape(b, &c, 1, 1)) return POISON_VAL;
        return build_concat(b, fr, &c);
    }
    /* everything else takes a tensor first */
    int min = 1, max = 1;
    if (is_op) {
        switch (op_info[op].kind) {
        case OK_UNARY: c.allowed = op == OP_GELU ? kw_gelu : kw_none; break;
        case OK_BINARY: min = max = 2; break;
        case OK_WHERE: min = max = 3; break;
        case OK_CAST: min = max = 2; break;
        case OK_REDUCE: c.allowed = kw_axis_keep; break;
        case OK_SHAPE:
            min = op == OP_TRANSPOSE ? 1 : 2;
            max = 2;
            if (op == OP_PAD) c.allowed = kw_pad;
            break;
        case OK_NN:
            switch (op) {
            case OP_MATMUL: min = max = 2; break;
            case OP_SOFTMAX: case OP_LOG_SOFTMAX: c.allowed = kw_axis; break;
            case OP_LAYERNORM: min = max = 3; c.allowed = kw_norm; break;
            case OP_RMSNORM: min = max = 2; c.allowed = kw_norm; break;
            case OP_CONV2D: min = 2; max = 3; c.allowed = kw_conv; break;
            default: min = max = 2; c.allowed = kw_pool; break; /* pools */
            }
            break;
        default: break;
        }
    } else if (strcmp(name, "clamp") == 0) {
        min = max = 3;
    } else if (strcmp(name, "linear") == 0) {
        min = 2, max = 3;
    } else if (strcmp(name, "squeeze") == 0 || strcmp(name, "unsqueeze") == 0) {
        max = 2;
        c.allowed = kw_axis;
    }
    if (!check_call_shape(b, &c, min, max)) {
        for (int i = 0; i < e->nargs; i++) build_expr(b, fr, e->args[i]); /* report inner errors too */
        return POISON_VAL;
    }
    Val x = build_expr(b, fr, e->args[0]);
    if (x.node == POISON) return x;
    if (!is_op) {
        if (strcmp(name, "clamp") == 0) {
            Val lo = build_expr(b, fr, e->args[1]), hi = build_expr(b, fr, e->args[2]);
            Val a1[2] = {x, lo};
            Val m = elementwise(b, OP_MAXIMUM, a1, 2, e->loc);
            Val a2[2] = {m, hi};
            return elementwise(b, OP_MINIMUM, a2, 2, e->loc);
        }
        if (strcmp(name, "linear") == 0) return build_linear(b, fr, &c, x);
        if (strcmp(name, "global_avgpool") == 0) {
            Node *n = N(b, x.node);
            if (n->rank != 4 || !dtype_is_float(n->dtype)) {
                char *t = type_of(b, x.node);
                diag_error(b->diags, e->loc, "global_avgpool takes a floating-point x[N, C, H, W], found %s", t);
                free(t);
                return POISON_VAL;
            }
            Dim shape[4] = {n->shape[0], n->shape[1], 1, 1};
            int in = x.node;
            int id = add(b, OP_MEAN, n->dtype, 4, shape, 1, &in, e->loc);
            int64_t axes[2] = {2, 3};
            set_ints(b, id, axes, 2);
            N(b, id)->flag = true;
            return (Val){id, false};
        }
        return build_squeeze(b, &c, x, strcmp(name, "unsqueeze") == 0);
    }
    switch (op_info[op].kind) {
    case OK_UNARY: {
        bool approx = false;
        const Expr *k = kwarg(&c, "approximate");
        if (k && !const_bool(b, k, "approximate", &approx)) return POISON_VAL;
        Val v = unary(b, op, x, e->loc);
        if (v.node != POISON) N(b, v.node)->flag = approx;
        return v;
    }
    case OK_BINARY:
    case OK_WHERE: {
        Val args[3] = {x};
        for (int i = 1; i < e->nargs; i++) args[i] = build_expr(b, fr, e->args[i]);
        return elementwise(b, op, args, e->nargs, e->loc);
    }
    case OK_CAST: {
        KilnDType dt;
        if (!const_dtype(b, e->args[1], &dt)) return POISON_VAL;
        Node *n = N(b, x.node);
        int in = x.node;
        return (Val){add(b, OP_CAST, dt, n->rank, n->shape, 1, &in, e->loc), false};
    }
    case OK_REDUCE: return reduce(b, op, &c, x);
    case OK_SHAPE:
        switch (op) {
        case OP_RESHAPE: return build_reshape(b, fr, &c, x);
        case OP_TRANSPOSE: return build_transpose(b, &c, x);
        case OP_BROADCAST: return build_broadcast(b, fr, &c, x);
        case OP_PAD: return build_pad(b, &c, x);
        default: return POISON_VAL;
        }
    case OK_NN:
        if (op == OP_MATMUL) return matmul(b, x, build_expr(b, fr, e->args[1]), e->loc);
        if (!dtype_is_float(N(b, x.node)->dtype) && (op_info[op].flags & OPF_FLOAT)) {
            char *t = type_of(b, x.node);
            diag_error(b->diags, e->loc, "%s needs a floating-point tensor, found %s", name, t);
            diag_hint(b->diags, "cast it first, e.g. %s(cast(x, f32), ...)", name);
            free(t);
            return POISON_VAL;
        }
        if (op == OP_SOFTMAX || op == OP_LOG_SOFTMAX) return build_softmax(b, op, &c, x);
        if (op == OP_LAYERNORM || op == OP_RMSNORM) return build_norm(b, fr, op, &c, x);
        if (op == OP_CONV2D) return build_conv(b, fr, &c, x);
        return build_pool(b, op, &c, x);
    default: return POISON_VAL;
    }
}

static const Op binary_ops[] = {
    [BIN_ADD] = OP_ADD, [BIN_SUB] = OP_SUB, [BIN_MUL] = OP_MUL, [BIN_DIV] = OP_DIV,
    [BIN_MOD] = OP_MOD, [BIN_POW] = OP_POW, [BIN_EQ] = OP_EQ,   [BIN_NE] = OP_NE,
    [BIN_LT] = OP_LT,   [BIN_LE] = OP_LE,   [BIN_GT] = OP_GT,   [BIN_GE] = OP_GE,
    [BIN_AND] = OP_AND, [BIN_OR] = OP_OR,
};

static Val build_expr(Builder *b, Frame *fr, const Expr *e) {
    if (b->too_large) return POISON_VAL; /* reported; building on would only take time */
    /* literal-only expressions fold to one weakly typed constant */
    ConstVal c = const_eval(e);
    if (c.kind != CK_NONE) {
        KilnDType dt = c.kind == CK_FLOAT ? KILN_F32 : c.kind == CK_INT ? KILN_I64 : KILN_BOOL;
        return make_const(b, c.kind == CK_INT ? (double)c.i : c.f, dt, e->loc, true);
    }
    switch (e->kind) {
    case E_NAME: {
        Binding *bd = env_find(fr, e->name);
        if (bd) return bd->val;
        KilnDType dt;
        Dim d;
        if (parse_dtype(e->name, &dt)) {
            diag_error(b->diags, e->loc, "'%s' is a dtype, not a value", e->name);
            diag_hint(b->diags, "dtypes are arguments of cast, zeros, ones, full and arange");
        } else if (dim_find(fr, e->name, &d)) {
            diag_error(b->diags, e->loc, "'%s' is a dimension, not a tensor", e->name);
            diag_hint(b->diags, "dimensions can appear in shape lists, e.g. reshape(x, [%s, -1])", e->name);
        } else {
            diag_error(b->diags, e->loc, "undefined name '%s'", e->name);
            Suggest s = {0};
            for (int i = 0; i < fr->env.len; i++) suggest_try(&s, e->name, fr->env.data[i].name);
            if (s.best) diag_hint(b->diags, "did you mean '%s'?", s.best);
            /* bind it as poison so later uses do not repeat the error */
            Binding p = {e->name, POISON_VAL, e->loc};
            env_push(fr, p);
        }
        return POISON_VAL;
    }
    case E_BINARY: {
        Val l = build_expr(b, fr, e->lhs), r = build_expr(b, fr, e->rhs);
        if (e->op == BIN_MATMUL) return matmul(b, l, r, e->loc);
        Val args[2] = {l, r};
        return elementwise(b, binary_ops[e->op], args, 2, e->loc);
    }
    case E_UNARY: {
        Val x = build_expr(b, fr, e->lhs);
        if (e->op == UN_PLUS) {
            if (x.node != POISON && N(b, x.node)->dtype == KILN_BOOL) {
                diag_error(b->diags, e->loc, "unary '+' does not take a bool operand");
                return POISON_VAL;
            }
            return x;
        }
        return unary(b, e->op == UN_NOT ? OP_NOT : OP_NEG, x, e->loc);
    }
    case E_CALL: return build_call(b, fr, e);
    case E_INDEX: return build_index(b, fr, e);
    case E_STRING:
        diag_error(b->diags, e->loc, "a string is not a tensor");
        diag_hint(b->diags, "strings only name files, as in the REPL's load(\"FILE.npy\")");
        return POISON_VAL;
    case E_LIST:
        diag_error(b->diags, e->loc, "a list is not a tensor");
        diag_hint(b->diags, "lists are for shapes and keyword arguments; to make a tensor use full, "
                            "zeros, ones or arange");
        return POISON_VAL;
    default:
        diag_error(b->diags, e->loc, "a slice can only appear inside [...]");
        return POISON_VAL;
    }
}

/* ---- graphs ----------------------------------------------------------------- */

/* Resolves a declared type in frame `fr`.  With `bind_new`, unseen symbolic
 * names are bound to `actual`'s dims (callee params, results); for the entry
 * graph they become the entry's symbols.  Returns false if the dtype name is
 * unknown (reported). */
static bool resolve_type(Builder *b, Frame *fr, const TypeExpr *t, KilnDType *dt, Dim *dims) {
    if (!parse_dtype(t->dtype_name, dt)) {
        diag_error(b->diags, t->loc, "unknown dtype '%s'", t->dtype_name);
        Suggest s = {0};
        static const char *const names[] = {"f32", "f16", "bf16", "f64", "i32", "i64", "bool"};
        for (int i = 0; i < 7; i++) suggest_try(&s, t->dtype_name, names[i]);
        diag_hint(b->diags, s.best ? "did you mean '%s'?" : "dtypes are f32, f16, bf16, f64, i32, i64 and bool%s",
                  s.best ? s.best : "");
        return false;
    }
    for (int i = 0; i < t->rank; i++) {
        const DimExpr *d = &t->dims[i];
        if (!d->name) {
            if (d->size <= 0) {
                diag_error(b->diags, d->loc, "a dimension must be positive, found %lld", (long long)d->size);
                return false;
            }
            dims[i] = d->size;
        } else if (!dim_find(fr, d->name, &dims[i])) {
            dims[i] = b->depth == 0 ? entry_dim(b, d->name) : ir_dim_opaque(b->g, d->name);
            dim_bind(fr, d->name, dims[i]);
        }
    }
    return true;
}

/* Binds a callee's declared parameter type against an argument's type,
 * unifying symbolic names.  Reports and returns false on a mismatch. */
static bool unify_param(Builder *b, Frame *callee, const Param *p, int arg, Loc loc) {
    KilnDType dt;
    if (!parse_dtype(p->type.dtype_name, &dt)) return false;
    Node *n = N(b, arg);
    bool ok = n->dtype == dt && n->rank == p->type.rank;
    for (int i = 0; ok && i < p->type.rank; i++) {
        const DimExpr *d = &p->type.dims[i];
        Dim bound;
        if (!d->name) ok = n->shape[i] == d->size;
        else if (dim_find(callee, d->name, &bound)) ok = n->shape[i] == bound;
        else dim_bind(callee, d->name, n->shape[i]);
    }
    if (!ok) {
        char *t = type_of(b, arg);
        StrBuf want = {0};
        sb_printf(&want, "%s[", p->type.dtype_name);
        for (int i = 0; i < p->type.rank; i++) {
            if (i) sb_puts(&want, ", ");
            if (p->type.dims[i].name) sb_puts(&want, p->type.dims[i].name);
            else sb_printf(&want, "%lld", (long long)p->type.dims[i].size);
        }
        sb_puts(&want, "]");
        diag_error(b->diags, loc, "argument '%s' of %s has type %s, but the graph declares %s", p->name,
                   callee->def->name, t, want.data);
        free(t);
        sb_free(&want);
    }
    return ok;
}

/* Builds the statements of a graph body in frame `fr`; fills results (up to
 * max) and returns their number, or -1 on error. */
static int build_body(Builder *b, Frame *fr, Val *results, int max_results, Loc call_loc) {
    const GraphDef *def = fr->def;
    bool returned = false, ok = true;
    int nres = 0;
    for (int si = 0; si < def->nstmts; si++) {
        const Stmt *s = &def->body[si];
        if (returned) {
            diag_error(b->diags, s->loc, "statement after return");
            diag_hint(b->diags, "return must be the last statement of a graph");
            ok = false;
            break;
        }
        if (s->kind == S_RETURN) {
            returned = true;
            if (s->nvalues != def->nresults) {
                diag_error(b->diags, s->loc, "graph '%s' declares %d result%s but returns %d", def->name,
                           def->nresults, def->nresults == 1 ? "" : "s", s->nvalues);
                ok = false;
                for (int k = 0; k < s->nvalues; k++) build_expr(b, fr, s->values[k]);
                continue;
            }
            for (int k = 0; k < s->nvalues; k++) {
                Val v = build_expr(b, fr, s->values[k]);
                if (def->infer_results) { /* no declared type to check: the value's is the result's */
                    if (v.node == POISON) ok = false;
                    if (nres < max_results) results[nres] = v;
                    nres++;
                    continue;
                }
                KilnDType dt;
                Dim *dims = xmalloc(sizeof(Dim) * (size_t)(def->results[k].rank + 1));
                if (!resolve_type(b, fr, &def->results[k], &dt, dims)) {
                    ok = false;
                } else if (v.node != POISON) {
                    v = adapt_weak(b, v, dt, kiln_dtype_name(dt));
                    Node *n = v.node == POISON ? NULL : N(b, v.node);
                    if (n && (n->dtype != dt || n->rank != def->results[k].rank ||
                              memcmp(n->shape, dims, sizeof(Dim) * (size_t)n->rank) != 0)) {
                        char *got = type_of(b, v.node), *want = ir_type_str(b->g, dt, def->results[k].rank, dims);
                        diag_error(b->diags, s->values[k]->loc,
                                   "result %d of '%s' has type %s, but the graph declares %s", k + 1,
                                   def->name, got, want);
                        free(got), free(want);
                        ok = false;
                    }
                }
                free(dims);
                if (v.node == POISON) ok = false;
                if (nres < max_results) results[nres] = v;
                nres++;
            }
            continue;
        }
        /* S_ASSIGN */
        Val vals[1] = {POISON_VAL};
        Val *many = NULL;
        int nvals = 1;
        const Expr *value = s->values[0];
        if (s->nnames > 1) {
            int gi = value->kind == E_CALL ? program_find_graph(b->prog, value->name) : -1;
            many = xcalloc((size_t)s->nnames, sizeof(Val));
            if (gi < 0) {
                diag_error(b->diags, value->loc, "%d names need a graph call that returns %d results",
                           s->nnames, s->nnames);
                build_expr(b, fr, value);
                nvals = -1;
            } else {
                nvals = build_graph_call(b, fr, value, gi, many, s->nnames);
                if (nvals >= 0 && nvals != s->nnames) {
                    diag_error(b->diags, s->loc, "graph '%s' returns %d result%s, but %d names are bound",
                               value->name, nvals, nvals == 1 ? "" : "s", s->nnames);
                    nvals = -1;
                }
            }
        } else {
            vals[0] = build_expr(b, fr, value);
        }
        for (int k = 0; k < s->nnames; k++) {
            Binding *old = env_find(fr, s->names[k]);
            if (old && old->loc.line > 0) {
                diag_error(b->diags, s->name_locs[k], "'%s' is bound twice", s->names[k]);
                diag_hint(b->diags, "names are bound once; it was first bound at line %d; pick a new name",
                          old->loc.line);
                ok = false;
                continue;
            }
            Val v = s->nnames > 1 ? (nvals >= 0 ? many[k] : POISON_VAL) : vals[0];
            Binding bd = {s->names[k], v, s->name_locs[k]};
            env_push(fr, bd);
        }
        free(many);
    }
    if (!returned) {
        diag_error(b->diags, def->loc, "graph '%s' has no return statement", def->name);
        ok = false;
    }
    (void)call_loc;
    return ok ? nres : -1;
}

static void frame_free(Frame *fr) {
    VEC_FREE(fr->env);
    VEC_FREE(fr->dims);
    free(fr->slots);
    fr->slots = NULL;
    fr->nslots = 0;
}

static bool check_graph(const Program *prog, int gi, DiagList *diags, GraphStatus *status);

static int build_graph_call(Builder *b, Frame *fr, const Expr *e, int gi, Val *results, int max_results) {
    const GraphDef *def = &b->prog->graphs[gi];
    if (b->status[gi] == GRAPH_CHECKING) {
        diag_error(b->diags, e->loc, "recursive call to graph '%s'", def->name);
        diag_hint(b->diags, "graph calls are inlined, so a graph cannot call itself, directly or not");
        return -1;
    }
    if (b->status[gi] == GRAPH_UNCHECKED) check_graph(b->prog, gi, b->diags, b->status);
    bool ok = b->status[gi] == GRAPH_CLEAN;
    if (b->depth == 0) b->call = e->loc;
    if (ok && b->g->nodes.len > MAX_NODES && !b->too_large) {
        diag_error(b->diags, b->call, "graph '%s' grows past %d nodes when its graph calls are inlined",
                   b->g->name, MAX_NODES);
        diag_hint(b->diags, "calls are inlined: a graph that calls another several times, at each of "
                            "many levels, grows exponentially");
        b->too_large = true;
    }
    if (b->too_large) return -1;
    if (e->nkwargs) {
        diag_error(b->diags, e->kwargs[0].loc, "graph '%s' takes no keyword arguments", def->name);
        ok = false;
    }
    if (e->nargs != def->nparams) {
        diag_error(b->diags, e->loc, "graph '%s' takes %d argument%s, found %d", def->name, def->nparams,
                   def->nparams == 1 ? "" : "s", e->nargs);
        ok = false;
    }
    Frame callee = {.def = def};
    for (int i = 0; i < e->nargs; i++) {
        Val v = build_expr(b, fr, e->args[i]);
        if (v.node == POISON || i >= def->nparams) {
            ok = false;
            continue;
        }
        KilnDType dt;
        if (v.weak && parse_dtype(def->params[i].type.dtype_name, &dt))
            v = adapt_weak(b, v, dt, def->params[i].type.dtype_name);
        if (v.node == POISON || !unify_param(b, &callee, &def->params[i], v.node, e->args[i]->loc)) {
            ok = false;
            continue;
        }
        Binding bd = {def->params[i].name, v, def->params[i].loc};
        env_push(&callee, bd);
    }
    int n = -1;
    if (ok) {
        b->status[gi] = GRAPH_CHECKING;
        b->depth++;
        n = build_body(b, &callee, results, max_results, e->loc);
        b->depth--;
        b->status[gi] = GRAPH_CLEAN;
    }
    frame_free(&callee);
    return n;
}

/* Builds graph `gi` as an entry graph into a fresh IRGraph. */
static IRGraph *build_entry(Arena *arena, const Program *prog, int gi, const DimBinding *binds,
                            int nbinds, DiagList *diags, GraphStatus *status) {
    const GraphDef *def = &prog->graphs[gi];
    Builder b = {.prog = prog, .diags = diags, .binds = binds, .nbinds = nbinds, .status = status};
    b.g = ir_graph_new(arena, def->name);
    Frame fr = {.def = def};
    int before = diags->nerrors;
    for (int i = 0; i < def->nparams; i++) {
        const Param *p = &def->params[i];
        for (int j = 0; j < i; j++) {
            if (strcmp(def->params[j].name, p->name) == 0) {
                diag_error(diags, p->loc, "parameter '%s' is declared twice", p->name);
                break;
            }
        }
        KilnDType dt = KILN_F32;
        Dim *dims = xmalloc(sizeof(Dim) * (size_t)(p->type.rank + 1));
        Val v = POISON_VAL;
        if (resolve_type(&b, &fr, &p->type, &dt, dims)) {
            int id = add(&b, OP_PARAM, dt, p->type.rank, dims, 0, NULL, p->loc);
            N(&b, id)->name = p->name;
            VEC_PUSH(b.g->params, id);
            v = (Val){id, false};
        }
        free(dims);
        Binding bd = {p->name, v, p->loc};
        env_push(&fr, bd);
    }
    status[gi] = GRAPH_CHECKING;
    int nres = def->nresults;
    Val *results = xcalloc((size_t)nres + 1, sizeof(Val));
    int n = build_body(&b, &fr, results, nres, def->loc);
    status[gi] = diags->nerrors == before ? GRAPH_CLEAN : GRAPH_BAD;
    if (n == nres && diags->nerrors == before)
        for (int i = 0; i < nres; i++) VEC_PUSH(b.g->results, results[i].node);
    free(results);
    frame_free(&fr);
    if (diags->nerrors != before) {
        ir_graph_destroy(b.g);
        return NULL;
    }
    return b.g;
}

static bool check_graph(const Program *prog, int gi, DiagList *diags, GraphStatus *status) {
    Arena *arena = arena_new();
    IRGraph *g = build_entry(arena, prog, gi, NULL, 0, diags, status);
    ir_graph_destroy(g);
    arena_free(arena);
    return g != NULL;
}

int program_find_graph(const Program *prog, const char *name) {
    for (int i = 0; i < prog->ngraphs; i++)
        if (strcmp(prog->graphs[i].name, name) == 0) return i;
    return -1;
}

static void check_duplicate_graphs(const Program *prog, DiagList *diags) {
    for (int i = 0; i < prog->ngraphs; i++) {
        int first = program_find_graph(prog, prog->graphs[i].name);
        if (first != i) {
            diag_error(diags, prog->graphs[i].loc, "graph '%s' is defined twice", prog->graphs[i].name);
            diag_hint(diags, "the first definition is at line %d", prog->graphs[first].loc.line);
        }
    }
}

bool ir_check_program(const Program *prog, DiagList *diags) {
    int before = diags->nerrors;
    check_duplicate_graphs(prog, diags);
    GraphStatus *status = xcalloc((size_t)prog->ngraphs + 1, sizeof(GraphStatus));
    for (int i = 0; i < prog->ngraphs; i++)
        if (status[i] == GRAPH_UNCHECKED && program_find_graph(prog, prog->graphs[i].name) == i)
            check_graph(prog, i, diags, status);
    free(status);
    return diags->nerrors == before;
}

IRGraph *ir_build(Arena *arena, const Program *prog, int entry, const DimBinding *binds, int nbinds,
                  DiagList *diags) {
    GraphStatus *status = xcalloc((size_t)prog->ngraphs + 1, sizeof(GraphStatus));
    IRGraph *g = build_entry(arena, prog, entry, binds, nbinds, diags, status);
    free(status);
    return g;
}
