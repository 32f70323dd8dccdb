/* lower.c - the language's AST lowered to the graph IR.
 *
 * Contract: what is about the language's text happens here: names and
 * scopes (single assignment), graph calls (inlined, recursion refused),
 * declared parameter and result types with their symbolic names, positional
 * and keyword arguments and the compile-time constants they must be, literal
 * folding.  Every op is made by the value-level IR builder (ir/make.h), which
 * holds every shape and dtype rule; this file only points its messages at the
 * right places in the source.  Errors are collected, never fatal: a failed
 * expression yields MK_ERROR, which later expressions pass along silently,
 * so one run reports every independent error.
 *
 * Symbolic dimensions: a graph built without bindings keeps them symbolic
 * (for `check` and `emit ir`); with bindings for all of them every shape is
 * concrete (what the backends run). */
#include "frontend/ast.h"
#include "ir/make.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { POISON = MK_ERROR };

/* Limits that remain, reported as errors: the nodes of one graph once its
 * calls are inlined (a graph that calls another twice at each of many levels
 * grows exponentially), and how deep graph calls nest where they are inlined
 * (inlining follows the calls, so this bounds its recursion; `check` does not
 * inline a call whose result types follow from its arguments). */
enum { MAX_NODES = 1 << 18, MAX_CALL_DEPTH = 1000 };

typedef VEC(Dim) DimVec;
typedef VEC(int64_t) I64Vec;

/* A name bound to a value (a node id, or POISON after an error). */
typedef struct {
    const char *name;
    int val;
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
    IRMaker m; /* the graph being built and its rules */
    IRGraph *g;
    const Program *prog;
    DiagList *diags;
    const DimBinding *binds;
    int nbinds;
    GraphStatus *status; /* per graph of prog, shared by nested checks */
    int depth;           /* inlining depth */
    bool signatures;     /* checking: a call to a clean graph whose result types follow from its
                          * arguments' types yields values of those types, without its body */
    bool too_large;      /* a limit was reported: stop building */
    Loc call;            /* the graph call being inlined, as written in the entry graph */
} Builder;

static Node *N(Builder *b, int id) { return ir_node(b->g, id); }

static bool stopped(Builder *b) { return b->too_large || b->m.too_large; }

/* ---- names and suggestions ---------------------------------------------- */

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

static char *type_of(Builder *b, int id) {
    Node *n = N(b, id);
    return ir_type_str(b->g, n->dtype, n->rank, n->shape);
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

/* x op y for two constants, with Python's rules for the result's kind (int /
 * int and int ** negative int are floats); CK_NONE if it does not fold. */
static ConstVal const_binary(OperatorTok op, ConstVal x, ConstVal y) {
    ConstVal none = {CK_NONE, 0, 0};
    if (x.kind == CK_NONE || y.kind == CK_NONE || x.kind == CK_BOOL || y.kind == CK_BOOL) return none;
    bool is_int = x.kind == CK_INT && y.kind == CK_INT;
    ConstVal r = {is_int ? CK_INT : CK_FLOAT, 0, 0};
    switch (op) {
    case BIN_ADD:
        r.i = wrap_add(x.i, y.i);
        r.f = x.f + y.f;
        break;
    case BIN_SUB:
        r.i = wrap_sub(x.i, y.i);
        r.f = x.f - y.f;
        break;
    case BIN_MUL:
        r.i = wrap_mul(x.i, y.i);
        r.f = x.f * y.f;
        break;
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

/* The operators of a left-deep chain a op b op c ... (the parser's shape for
 * 30,000 terms joined by '+'), top first, and the leftmost operand that ends
 * it: walked with a loop, so that nothing recurses once per term. */
typedef VEC(const Expr *) ExprVec;
static const Expr *left_spine(const Expr *e, ExprVec *spine) {
    spine->len = 0;
    while (e->kind == E_BINARY) {
        VEC_PUSH(*spine, e);
        e = e->lhs;
    }
    return e;
}

/* Evaluates a compile-time constant expression made of literals and
 * + - * / % ** and unary signs (const_binary's rules).  kind == CK_NONE if it
 * is not one.  Recursion only follows unary operands and right operands,
 * which the parser's nesting limit bounds. */
static ConstVal const_eval(const Expr *e) {
    ConstVal none = {CK_NONE, 0, 0};
    if (!e) return none;
    switch (e->kind) {
    case E_INT: return (ConstVal){CK_INT, (double)e->ival, e->ival};
    case E_FLOAT: return (ConstVal){CK_FLOAT, e->fval, 0};
    case E_BOOL: return (ConstVal){CK_BOOL, (double)e->ival, e->ival};
    case E_UNARY: {
        ConstVal v = const_eval(e->lhs);
        if (v.kind == CK_NONE || v.kind == CK_BOOL)
            return e->op == UN_NOT && v.kind == CK_BOOL ? (ConstVal){CK_BOOL, !v.i, !v.i} : none;
        if (e->op == UN_NEG) {
            v.f = -v.f;
            v.i = wrap_sub(0, v.i);
        }
        return e->op == UN_NOT ? none : v;
    }
    case E_BINARY: {
        ExprVec spine = {0};
        ConstVal v = const_eval(left_spine(e, &spine));
        for (int i = spine.len - 1; i >= 0 && v.kind != CK_NONE; i--)
            v = const_binary(spine.data[i]->op, v, const_eval(spine.data[i]->rhs));
        VEC_FREE(spine);
        return v;
    }
    default: return none;
    }
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
            diag_error(b->diags, e->loc, "%s takes %d positional argument%s, found %d", c->fname, min_pos,
                       min_pos == 1 ? "" : "s", e->nargs);
        else
            diag_error(b->diags, e->loc, "%s takes %d to %d positional arguments, found %d", c->fname,
                       min_pos, max_pos, e->nargs);
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
static bool const_int_list(Builder *b, const Expr *e, const char *what, I64Vec *out, bool *was_list) {
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
            *out = mk_dim_product(&b->m, f, 2);
        } else if (e->op == BIN_ADD) {
            *out = ir_dim_add(b->g, x, y);
        } else {
            if (y == 0) {
                diag_error(b->diags, e->loc, "division by zero in a dimension");
                return false;
            }
            Dim q;
            if (!mk_dim_quotient(&b->m, x, y, &q)) {
                if (!DIM_IS_SYM(x) && !DIM_IS_SYM(y)) {
                    diag_error(b->diags, e->loc, "%lld is not divisible by %lld", (long long)x, (long long)y);
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
static bool shape_list(Builder *b, Frame *fr, const Expr *e, const char *what, DimVec *out, int *minus_pos) {
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

/* padding=1, padding=[h, w] or padding=[[top, bottom], [left, right]]:
 * pad = top, bottom, left, right. */
static bool padding_arg(Builder *b, const Expr *e, int64_t pad[4]) {
    if (e->kind == E_LIST && e->nargs > 0 && e->args[0]->kind == E_LIST) {
        bool ok = e->nargs == 2;
        for (int i = 0; ok && i < 2; i++) {
            const Expr *p = e->args[i];
            ok = p->kind == E_LIST && p->nargs == 2 && const_int(b, p->args[0], "padding", &pad[2 * i]) &&
                 const_int(b, p->args[1], "padding", &pad[2 * i + 1]);
            if (!ok && (p->kind != E_LIST || p->nargs != 2))
                diag_error(b->diags, p->loc, "padding must be [[top, bottom], [left, right]]");
        }
        if (e->nargs != 2) diag_error(b->diags, e->loc, "padding must be [[top, bottom], [left, right]]");
        return ok;
    }
    int64_t pair[2];
    if (!int_pair(b, e, "padding", pair, 0)) return false;
    pad[0] = pad[1] = pair[0];
    pad[2] = pad[3] = pair[1];
    return true;
}

/* The locations of a call's positional arguments, for the builder's messages
 * (a heap array: free it). */
static Loc *arg_locs(const Expr *e) {
    Loc *l = xcalloc((size_t)e->nargs + 1, sizeof(Loc));
    for (int i = 0; i < e->nargs; i++) l[i] = e->args[i]->loc;
    return l;
}

/* ---- expressions -------------------------------------------------------------- */

static int build_expr(Builder *b, Frame *fr, const Expr *e);
static int build_graph_call(Builder *b, Frame *fr, const Expr *e, int graph_index, int *results,
                            int max_results);

static int build_index(Builder *b, Frame *fr, const Expr *e) {
    int base = build_expr(b, fr, e->lhs);
    if (base == POISON) return base;
    MkSlice *axes = xcalloc((size_t)e->nargs + 1, sizeof(MkSlice));
    bool ok = true;
    for (int k = 0; k < e->nargs; k++) {
        const Expr *it = e->args[k];
        MkSlice *s = &axes[k];
        s->at = it->loc;
        s->step = 1;
        if (it->kind != E_SLICE) { /* x[i]: one element, axis dropped */
            s->index = true;
            if (e->nargs == 1 && const_eval(it).kind == CK_NONE) { /* x[idx]: take(x, idx, axis=0) */
                free(axes);
                Loc in[2] = {e->lhs->loc, it->loc};
                MkLoc l = {.at = e->loc, .in = in};
                return mk_take(&b->m, base, build_expr(b, fr, it), 0, l);
            }
            if (!const_int(b, it, "an index", &s->start)) {
                if (const_eval(it).kind == CK_NONE)
                    diag_hint(b->diags, "a tensor index stands alone: x[idx] is take(x, idx, axis=0); for "
                                        "another axis use take(x, idx, axis=...)");
                ok = false;
            }
            continue;
        }
        s->has_start = it->lhs != NULL;
        s->has_stop = it->rhs != NULL;
        if (it->step) s->step_at = it->step->loc;
        if (it->step && !const_int(b, it->step, "a slice step", &s->step)) ok = false;
        if (s->has_start && !const_int(b, it->lhs, "a slice bound", &s->start)) ok = false;
        if (s->has_stop && !const_int(b, it->rhs, "a slice bound", &s->stop)) ok = false;
    }
    int v = ok ? mk_index(&b->m, base, axes, e->nargs, mk_at(e->loc)) : POISON;
    free(axes);
    return v;
}

static const char *const kw_none[] = {NULL};
static const char *const kw_axis[] = {"axis", NULL};
static const char *const kw_axis_keep[] = {"axis", "keepdims", NULL};
static const char *const kw_norm[] = {"axis", "eps", NULL};
static const char *const kw_gelu[] = {"approximate", NULL};
static const char *const kw_pad[] = {"value", NULL};
static const char *const kw_conv[] = {"stride", "padding", "dilation", "groups", NULL};
static const char *const kw_maxpool[] = {"stride", "padding", "ceil_mode", NULL};
static const char *const kw_avgpool[] = {"stride", "padding", "ceil_mode", "count_include_pad", NULL};
static const char *const kw_batchnorm[] = {"axis", "eps", NULL};
static const char *const kw_leaky_relu[] = {"alpha", NULL};
static const char *const kw_hardsigmoid[] = {"alpha", "beta", NULL};

/* x is the built first argument (building it again would duplicate its nodes). */
static int reduce(Builder *b, Op op, const CallCtx *c, int x) {
    const Expr *e = c->call;
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
    }
    int v = POISON;
    if (ok) {
        MkLoc l = {.at = e->loc, .attr = axis_e ? axis_e->loc : e->loc};
        int64_t none = 0;
        v = mk_reduce(&b->m, op, x, axis_e ? (axes.len ? axes.data : &none) : NULL, axes.len, keep, l);
    }
    VEC_FREE(axes);
    return v;
}

static int creation(Builder *b, Frame *fr, const char *fname, const CallCtx *c) {
    const Expr *e = c->call;
    DimVec shape = {0};
    KilnDType dt = KILN_F32;
    double value = 0;
    int64_t ivalue = 0; /* the value, exactly, when it is an integer */
    bool value_is_int = true;
    int v = POISON;
    bool ok = true;
    if (strcmp(fname, "arange") == 0) {
        Dim n;
        if (!eval_dim(b, fr, e->args[0], &n, NULL)) return POISON;
        dt = KILN_I64;
        if (e->nargs > 1 && !const_dtype(b, e->args[1], &dt)) return POISON;
        MkLoc l = {.at = e->loc, .value = e->nargs > 1 ? e->args[1]->loc : e->loc};
        return mk_arange(&b->m, n, dt, l);
    }
    ok = shape_list(b, fr, e->args[0], "the shape", &shape, NULL);
    int dtype_arg = 1;
    if (strcmp(fname, "full") == 0) {
        bool is_int = false;
        ConstVal cv = const_eval(e->args[1]);
        if (cv.kind == CK_BOOL) {
            value = (double)cv.i;
            ivalue = cv.i;
            dt = KILN_BOOL;
        } else if (const_number(b, e->args[1], "the fill value", &value, &is_int)) {
            dt = is_int ? KILN_I64 : KILN_F32;
            ivalue = cv.i;
            value_is_int = is_int;
        } else {
            ok = false;
        }
        dtype_arg = 2;
    } else {
        value = strcmp(fname, "ones") == 0 ? 1.0 : 0.0;
        ivalue = (int64_t)value;
    }
    if (e->nargs > dtype_arg && !const_dtype(b, e->args[dtype_arg], &dt)) ok = false;
    if (ok) {
        MkLoc l = {.at = e->loc, .value = e->nargs > 1 ? e->args[1]->loc : e->loc};
        v = value_is_int ? mk_full_int(&b->m, shape.data, shape.len, ivalue, dt, l)
                         : mk_full(&b->m, shape.data, shape.len, value, dt, l);
    }
    VEC_FREE(shape);
    return v;
}

static int build_reshape(Builder *b, Frame *fr, const CallCtx *c, int x) {
    const Expr *e = c->call;
    DimVec shape = {0};
    int minus = -1, v = POISON;
    if (shape_list(b, fr, e->args[1], "the new shape", &shape, &minus))
        v = mk_reshape(&b->m, x, shape.data, shape.len, minus, e->loc);
    VEC_FREE(shape);
    return v;
}

static int build_transpose(Builder *b, const CallCtx *c, int x) {
    const Expr *e = c->call;
    if (e->nargs == 1) return mk_transpose(&b->m, x, NULL, 0, mk_at(e->loc));
    const Expr *list = e->args[1];
    if (list->kind != E_LIST) {
        diag_error(b->diags, list->loc, "the permutation must be a list such as [1, 0]");
        return POISON;
    }
    I64Vec p = {0};
    int v = POISON;
    if (const_int_list(b, list, "a permutation", &p, NULL)) {
        Loc *items = arg_locs(list);
        MkLoc l = {.at = e->loc, .attr = list->loc, .items = items};
        v = mk_transpose(&b->m, x, p.data, p.len, l);
        free(items);
    }
    VEC_FREE(p);
    return v;
}

static int build_broadcast(Builder *b, Frame *fr, const CallCtx *c, int x) {
    const Expr *e = c->call;
    DimVec shape = {0};
    int v = POISON;
    if (shape_list(b, fr, e->args[1], "the target shape", &shape, NULL))
        v = mk_broadcast(&b->m, x, shape.data, shape.len, e->loc);
    VEC_FREE(shape);
    return v;
}

static int build_concat(Builder *b, Frame *fr, const CallCtx *c) {
    const Expr *e = c->call, *list = e->args[0];
    if (list->kind != E_LIST || list->nargs == 0) {
        diag_error(b->diags, list->loc, "concat takes a list of tensors, e.g. concat([a, b], axis=0)");
        return POISON;
    }
    int n = list->nargs;
    int *ids = xmalloc(sizeof(int) * (size_t)n);
    bool ok = true;
    for (int i = 0; i < n; i++) {
        ids[i] = build_expr(b, fr, list->args[i]);
        if (ids[i] == POISON) ok = false;
    }
    int64_t axis = 0;
    const Expr *ax = kwarg(c, "axis");
    if (ax && !const_int(b, ax, "axis", &axis)) ok = false;
    int v = POISON;
    if (ok) {
        Loc *in = arg_locs(list);
        MkLoc l = {.at = e->loc, .attr = ax ? ax->loc : e->loc, .in = in};
        v = mk_concat(&b->m, ids, n, axis, l);
        free(in);
    }
    free(ids);
    return v;
}

static int build_pad(Builder *b, const CallCtx *c, int x) {
    const Expr *e = c->call, *pads = e->args[1];
    MkLoc l = {.at = e->loc, .attr = pads->loc};
    if (pads->kind != E_LIST || pads->nargs != N(b, x)->rank) /* reports: one pair per dimension */
        return mk_pad(&b->m, x, NULL, pads->kind == E_LIST ? pads->nargs : -1, 0, l);
    int npairs = pads->nargs;
    int64_t *ints = xcalloc((size_t)(2 * npairs + 1), sizeof(int64_t));
    bool ok = true;
    for (int k = 0; k < npairs; k++) {
        const Expr *p = pads->args[k];
        if (p->kind != E_LIST || p->nargs != 2) {
            diag_error(b->diags, p->loc, "each pad entry is a pair [lo, hi]");
            ok = false;
        } else if (!const_int(b, p->args[0], "a pad width", &ints[2 * k]) ||
                   !const_int(b, p->args[1], "a pad width", &ints[2 * k + 1])) {
            ok = false;
        }
    }
    double value = 0;
    bool value_is_int = true;
    const Expr *ve = kwarg(c, "value");
    if (ve && !const_number(b, ve, "the pad value", &value, &value_is_int)) ok = false;
    int64_t ivalue = ve && value_is_int ? const_eval(ve).i : 0;
    int v = POISON;
    if (ok) {
        Loc *items = arg_locs(pads);
        l.items = items;
        l.value = ve ? ve->loc : e->loc;
        v = value_is_int ? mk_pad_int(&b->m, x, ints, npairs, ivalue, l)
                         : mk_pad(&b->m, x, ints, npairs, value, l);
        free(items);
    }
    free(ints);
    return v;
}

static int build_squeeze(Builder *b, const CallCtx *c, int x, bool un) {
    const Expr *e = c->call;
    const Expr *ax = kwarg(c, "axis");
    if (!ax && e->nargs > 1) ax = e->args[1];
    int64_t axis = 0;
    if (ax && !const_int(b, ax, "axis", &axis)) return POISON;
    MkLoc l = {.at = e->loc, .attr = ax ? ax->loc : e->loc};
    if (un) return mk_unsqueeze(&b->m, x, ax ? &axis : NULL, ax ? 1 : 0, l);
    return mk_squeeze(&b->m, x, ax ? &axis : NULL, ax ? 1 : 0, l);
}

static int build_norm(Builder *b, Frame *fr, Op op, const CallCtx *c, int x) {
    const Expr *e = c->call;
    int64_t axis = -1;
    double eps = op == OP_LAYERNORM ? 1e-5 : 1e-6;
    const Expr *ax = kwarg(c, "axis"), *ep = kwarg(c, "eps");
    if (ax && !const_int(b, ax, "axis", &axis)) return POISON;
    if (ep && !const_number(b, ep, "eps", &eps, NULL)) return POISON;
    int gamma = build_expr(b, fr, e->args[1]);
    int beta = op == OP_LAYERNORM ? build_expr(b, fr, e->args[2]) : MK_NONE;
    Loc *in = arg_locs(e);
    MkLoc l = {.at = e->loc, .attr = ax ? ax->loc : e->loc, .in = in};
    int v = op == OP_LAYERNORM ? mk_layernorm(&b->m, x, gamma, beta, axis, eps, l)
                               : mk_rmsnorm(&b->m, x, gamma, axis, eps, l);
    free(in);
    return v;
}

static int build_softmax(Builder *b, Op op, const CallCtx *c, int x) {
    const Expr *e = c->call;
    int64_t axis = -1;
    const Expr *ax = kwarg(c, "axis");
    if (ax && !const_int(b, ax, "axis", &axis)) return POISON;
    MkLoc l = {.at = e->loc, .attr = ax ? ax->loc : e->loc};
    return mk_softmax(&b->m, op, x, axis, l);
}

static int build_conv(Builder *b, Frame *fr, const CallCtx *c, int x) {
    const Expr *e = c->call;
    int w = build_expr(b, fr, e->args[1]);
    int bias = e->nargs > 2 ? build_expr(b, fr, e->args[2]) : MK_NONE;
    if (w == POISON || bias == POISON) return POISON;
    MkConv cv = {.stride = {1, 1}, .dilation = {1, 1}, .groups = 1};
    const Expr *k, *padding = kwarg(c, "padding");
    if ((k = kwarg(c, "stride")) && !int_pair(b, k, "stride", cv.stride, 1)) return POISON;
    if (padding && !padding_arg(b, padding, cv.pad)) return POISON;
    if ((k = kwarg(c, "dilation")) && !int_pair(b, k, "dilation", cv.dilation, 1)) return POISON;
    if ((k = kwarg(c, "groups")) && !const_int(b, k, "groups", &cv.groups)) return POISON;
    Loc *in = arg_locs(e);
    MkLoc l = {.at = e->loc, .attr = padding ? padding->loc : e->loc, .in = in};
    int v = mk_conv2d(&b->m, x, w, bias, &cv, l);
    free(in);
    return v;
}

static int build_pool(Builder *b, Op op, const CallCtx *c, int x) {
    const Expr *e = c->call;
    MkPool p = {.count_include_pad = true};
    if (!int_pair(b, e->args[1], "the pool kernel", p.kernel, 1)) return POISON;
    p.stride[0] = p.kernel[0], p.stride[1] = p.kernel[1];
    const Expr *k, *padding = kwarg(c, "padding");
    if ((k = kwarg(c, "stride")) && !int_pair(b, k, "stride", p.stride, 1)) return POISON;
    if (padding && !padding_arg(b, padding, p.pad)) return POISON;
    if ((k = kwarg(c, "ceil_mode")) && !const_bool(b, k, "ceil_mode", &p.ceil_mode)) return POISON;
    if ((k = kwarg(c, "count_include_pad")) && !const_bool(b, k, "count_include_pad", &p.count_include_pad))
        return POISON;
    MkLoc l = {.at = e->loc, .attr = padding ? padding->loc : e->loc};
    return mk_pool2d(&b->m, op, x, &p, l);
}

static int build_linear(Builder *b, Frame *fr, const CallCtx *c, int x) {
    const Expr *e = c->call;
    int w = build_expr(b, fr, e->args[1]);
    int bias = e->nargs > 2 ? build_expr(b, fr, e->args[2]) : MK_NONE;
    if (w == POISON || bias == POISON) return POISON;
    Loc *in = arg_locs(e);
    MkLoc l = {.at = e->loc, .in = in};
    int v = mk_linear(&b->m, x, w, bias, l);
    free(in);
    return v;
}

/* A float keyword argument, or `dflt` when it is not given. */
static bool kw_number(Builder *b, const CallCtx *c, const char *name, double dflt, double *out) {
    const Expr *k = kwarg(c, name);
    *out = dflt;
    return !k || const_number(b, k, name, out, NULL);
}

/* batchnorm, leaky_relu, hardsigmoid, reciprocal, isnan, isinf: the Version 1
 * composites, made of other ops by the builder. */
static int build_v1_sugar(Builder *b, Frame *fr, const CallCtx *c, int x) {
    const Expr *e = c->call;
    const char *name = c->fname;
    double alpha, beta;
    if (strcmp(name, "batchnorm") == 0) {
        int64_t axis = 1;
        double eps;
        const Expr *ax = kwarg(c, "axis");
        if ((ax && !const_int(b, ax, "axis", &axis)) || !kw_number(b, c, "eps", 1e-5, &eps)) return POISON;
        int v[4];
        for (int i = 0; i < 4; i++) v[i] = build_expr(b, fr, e->args[i + 1]);
        Loc *in = arg_locs(e);
        MkLoc l = {.at = e->loc, .attr = ax ? ax->loc : e->loc, .in = in};
        int r = mk_batchnorm(&b->m, x, v[0], v[1], v[2], v[3], axis, eps, l);
        free(in);
        return r;
    }
    if (strcmp(name, "leaky_relu") == 0)
        return kw_number(b, c, "alpha", 0.01, &alpha) ? mk_leaky_relu(&b->m, x, alpha, e->loc) : POISON;
    if (strcmp(name, "hardsigmoid") == 0)
        return kw_number(b, c, "alpha", 0.2, &alpha) && kw_number(b, c, "beta", 0.5, &beta)
                   ? mk_hardsigmoid(&b->m, x, alpha, beta, e->loc)
                   : POISON;
    if (strcmp(name, "reciprocal") == 0) return mk_reciprocal(&b->m, x, e->loc);
    if (strcmp(name, "isnan") == 0) return mk_isnan(&b->m, x, e->loc);
    return mk_isinf(&b->m, x, true, true, e->loc);
}

static int build_call(Builder *b, Frame *fr, const Expr *e) {
    const char *name = e->name;
    int gi = program_find_graph(b->prog, name);
    if (gi >= 0) {
        int results[1];
        int n = build_graph_call(b, fr, e, gi, results, 1);
        if (n < 0) return POISON;
        if (n != 1) {
            diag_error(b->diags, e->loc, "graph '%s' returns %d results; bind them with 'a, b = %s(...)'",
                       name, n, name);
            return POISON;
        }
        return results[0];
    }
    Op op;
    bool is_op = op_lookup(name, &op);
    bool is_sugar = false;
    for (int i = 0; lang_sugar_builtins[i]; i++) is_sugar = is_sugar || strcmp(lang_sugar_builtins[i], name) == 0;
    if (!is_op && !is_sugar) {
        Suggest s = {0};
        for (int i = 0; i < OP_COUNT; i++)
            if (op_info[i].flags & OPF_BUILTIN) suggest_try(&s, name, op_info[i].name);
        for (int i = 0; lang_sugar_builtins[i]; i++) suggest_try(&s, name, lang_sugar_builtins[i]);
        for (int i = 0; i < b->prog->ngraphs; i++) suggest_try(&s, name, b->prog->graphs[i].name);
        diag_error(b->diags, e->loc, "unknown function '%s'", name);
        if (s.best) diag_hint(b->diags, "did you mean '%s'?", s.best);
        return POISON;
    }
    CallCtx c = {e, name, kw_none};
    /* creation functions take shapes and constants, not tensors */
    if (strcmp(name, "zeros") == 0 || strcmp(name, "ones") == 0) {
        if (!check_call_shape(b, &c, 1, 2)) return POISON;
        return creation(b, fr, name, &c);
    }
    if (is_op && (op == OP_FULL || op == OP_IOTA)) {
        if (!check_call_shape(b, &c, op == OP_FULL ? 2 : 1, op == OP_FULL ? 3 : 2)) return POISON;
        return creation(b, fr, name, &c);
    }
    if (is_op && op == OP_CONCAT) {
        c.allowed = kw_axis;
        if (!check_call_shape(b, &c, 1, 1)) return POISON;
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
            if (op == OP_TAKE) c.allowed = kw_axis;
            break;
        case OK_NN:
            switch (op) {
            case OP_MATMUL: min = max = 2; break;
            case OP_SOFTMAX:
            case OP_LOG_SOFTMAX: c.allowed = kw_axis; break;
            case OP_LAYERNORM:
                min = max = 3;
                c.allowed = kw_norm;
                break;
            case OP_RMSNORM:
                min = max = 2;
                c.allowed = kw_norm;
                break;
            case OP_CONV2D:
                min = 2;
                max = 3;
                c.allowed = kw_conv;
                break;
            case OP_CUMSUM: c.allowed = kw_axis; break;
            default:
                min = max = 2;
                c.allowed = op == OP_MAXPOOL2D ? kw_maxpool : kw_avgpool;
                break; /* pools */
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
    } else if (strcmp(name, "batchnorm") == 0) {
        min = max = 5;
        c.allowed = kw_batchnorm;
    } else if (strcmp(name, "leaky_relu") == 0) {
        c.allowed = kw_leaky_relu;
    } else if (strcmp(name, "hardsigmoid") == 0) {
        c.allowed = kw_hardsigmoid;
    }
    if (!check_call_shape(b, &c, min, max)) {
        for (int i = 0; i < e->nargs; i++) build_expr(b, fr, e->args[i]); /* report inner errors too */
        return POISON;
    }
    int x = build_expr(b, fr, e->args[0]);
    if (x == POISON) return x;
    if (!is_op) {
        if (strcmp(name, "clamp") == 0) {
            int lo = build_expr(b, fr, e->args[1]), hi = build_expr(b, fr, e->args[2]);
            return mk_clamp(&b->m, x, lo, hi, e->loc);
        }
        if (strcmp(name, "linear") == 0) return build_linear(b, fr, &c, x);
        if (strcmp(name, "global_avgpool") == 0) return mk_global_avgpool(&b->m, x, e->loc);
        if (strcmp(name, "squeeze") == 0 || strcmp(name, "unsqueeze") == 0)
            return build_squeeze(b, &c, x, strcmp(name, "unsqueeze") == 0);
        return build_v1_sugar(b, fr, &c, x);
    }
    switch (op_info[op].kind) {
    case OK_UNARY: {
        bool approx = false;
        const Expr *k = kwarg(&c, "approximate");
        if (k && !const_bool(b, k, "approximate", &approx)) return POISON;
        return op == OP_GELU ? mk_gelu(&b->m, x, approx, e->loc) : mk_unary(&b->m, op, x, e->loc);
    }
    case OK_BINARY: return mk_binary(&b->m, op, x, build_expr(b, fr, e->args[1]), e->loc);
    case OK_WHERE: {
        int a = build_expr(b, fr, e->args[1]);
        int z = build_expr(b, fr, e->args[2]);
        return mk_where(&b->m, x, a, z, e->loc);
    }
    case OK_CAST: {
        KilnDType dt;
        if (!const_dtype(b, e->args[1], &dt)) return POISON;
        return mk_cast(&b->m, x, dt, e->loc);
    }
    case OK_REDUCE: return reduce(b, op, &c, x);
    case OK_SHAPE:
        switch (op) {
        case OP_RESHAPE: return build_reshape(b, fr, &c, x);
        case OP_TRANSPOSE: return build_transpose(b, &c, x);
        case OP_BROADCAST: return build_broadcast(b, fr, &c, x);
        case OP_PAD: return build_pad(b, &c, x);
        case OP_TAKE: {
            int64_t axis = 0;
            const Expr *ax = kwarg(&c, "axis");
            if (ax && !const_int(b, ax, "axis", &axis)) return POISON;
            Loc *in = arg_locs(e);
            MkLoc l = {.at = e->loc, .attr = ax ? ax->loc : e->loc, .in = in};
            int v = mk_take(&b->m, x, build_expr(b, fr, e->args[1]), axis, l);
            free(in);
            return v;
        }
        default: return POISON;
        }
    case OK_NN:
        switch (op) {
        case OP_MATMUL: return mk_matmul(&b->m, x, build_expr(b, fr, e->args[1]), e->loc);
        case OP_SOFTMAX:
        case OP_LOG_SOFTMAX: return build_softmax(b, op, &c, x);
        case OP_LAYERNORM:
        case OP_RMSNORM: return build_norm(b, fr, op, &c, x);
        case OP_CONV2D: return build_conv(b, fr, &c, x);
        case OP_CUMSUM: {
            int64_t axis = 0;
            const Expr *ax = kwarg(&c, "axis");
            if (!ax) {
                diag_error(b->diags, e->loc, "cumsum needs axis=, e.g. cumsum(x, axis=0)");
                return POISON;
            }
            if (!const_int(b, ax, "axis", &axis)) return POISON;
            MkLoc l = {.at = e->loc, .attr = ax->loc};
            return mk_cumsum(&b->m, x, axis, false, false, l);
        }
        default: return build_pool(b, op, &c, x);
        }
    default: return POISON;
    }
}

static const Op binary_ops[] = {
    [BIN_ADD] = OP_ADD, [BIN_SUB] = OP_SUB, [BIN_MUL] = OP_MUL, [BIN_DIV] = OP_DIV, [BIN_MOD] = OP_MOD,
    [BIN_POW] = OP_POW, [BIN_EQ] = OP_EQ,   [BIN_NE] = OP_NE,   [BIN_LT] = OP_LT,   [BIN_LE] = OP_LE,
    [BIN_GT] = OP_GT,   [BIN_GE] = OP_GE,   [BIN_AND] = OP_AND, [BIN_OR] = OP_OR,
};

/* A folded constant as a weakly typed literal. */
static int literal_of(Builder *b, ConstVal c, Loc loc) {
    if (c.kind == CK_INT) return mk_literal_int(&b->m, c.i, loc);
    return mk_literal(&b->m, c.f, c.kind == CK_FLOAT ? KILN_F32 : KILN_BOOL, loc);
}

static int build_expr(Builder *b, Frame *fr, const Expr *e);

/* a op b op c ...: built bottom-up in a loop (see left_spine), folding the
 * constant prefix as const_eval would. */
static int build_chain(Builder *b, Frame *fr, const Expr *e) {
    ExprVec spine = {0};
    const Expr *bottom = left_spine(e, &spine);
    ConstVal cv = const_eval(bottom);
    int l = cv.kind == CK_NONE ? build_expr(b, fr, bottom) : POISON;
    bool built = cv.kind == CK_NONE; /* l holds the prefix; else cv does */
    for (int i = spine.len - 1; i >= 0 && !stopped(b); i--) {
        const Expr *node = spine.data[i];
        if (!built) {
            ConstVal next = const_binary(node->op, cv, const_eval(node->rhs));
            if (next.kind != CK_NONE) {
                cv = next;
                continue;
            }
            l = literal_of(b, cv, node->lhs->loc);
            built = true;
        }
        int r = build_expr(b, fr, node->rhs);
        l = node->op == BIN_MATMUL ? mk_matmul(&b->m, l, r, node->loc)
                                   : mk_binary(&b->m, binary_ops[node->op], l, r, node->loc);
    }
    VEC_FREE(spine);
    return built ? l : literal_of(b, cv, e->loc);
}

static int build_expr(Builder *b, Frame *fr, const Expr *e) {
    if (stopped(b)) return POISON; /* reported; building on would only take time */
    if (e->kind == E_BINARY) return build_chain(b, fr, e);
    /* literal-only expressions fold to one weakly typed constant */
    ConstVal c = const_eval(e);
    if (c.kind != CK_NONE) return literal_of(b, c, e->loc);
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
            Binding p = {e->name, POISON, e->loc};
            env_push(fr, p);
        }
        return POISON;
    }
    case E_UNARY: {
        int x = build_expr(b, fr, e->lhs);
        if (e->op == UN_PLUS) {
            if (x != POISON && N(b, x)->dtype == KILN_BOOL) {
                diag_error(b->diags, e->loc, "unary '+' does not take a bool operand");
                return POISON;
            }
            return x;
        }
        return mk_unary(&b->m, e->op == UN_NOT ? OP_NOT : OP_NEG, x, e->loc);
    }
    case E_CALL: return build_call(b, fr, e);
    case E_INDEX: return build_index(b, fr, e);
    case E_STRING:
        diag_error(b->diags, e->loc, "a string is not a tensor");
        diag_hint(b->diags, "strings only name files, as in the REPL's load(\"FILE.npy\")");
        return POISON;
    case E_LIST:
        diag_error(b->diags, e->loc, "a list is not a tensor");
        diag_hint(b->diags, "lists are for shapes and keyword arguments; to make a tensor use full, "
                            "zeros, ones or arange");
        return POISON;
    default: diag_error(b->diags, e->loc, "a slice can only appear inside [...]"); return POISON;
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
        diag_hint(b->diags,
                  s.best ? "did you mean '%s'?" : "dtypes are f32, f16, bf16, f64, i32, i64 and bool%s",
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
        if (!d->name)
            ok = n->shape[i] == d->size;
        else if (dim_find(callee, d->name, &bound))
            ok = n->shape[i] == bound;
        else
            dim_bind(callee, d->name, n->shape[i]);
    }
    if (!ok) {
        char *t = type_of(b, arg);
        StrBuf want = {0};
        sb_printf(&want, "%s[", p->type.dtype_name);
        for (int i = 0; i < p->type.rank; i++) {
            if (i) sb_puts(&want, ", ");
            if (p->type.dims[i].name)
                sb_puts(&want, p->type.dims[i].name);
            else
                sb_printf(&want, "%lld", (long long)p->type.dims[i].size);
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
static int build_body(Builder *b, Frame *fr, int *results, int max_results, Loc call_loc) {
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
                int v = build_expr(b, fr, s->values[k]);
                if (def->infer_results) { /* no declared type to check: the value's is the result's */
                    if (v == POISON) ok = false;
                    if (nres < max_results) results[nres] = v;
                    nres++;
                    continue;
                }
                KilnDType dt;
                Dim *dims = xmalloc(sizeof(Dim) * (size_t)(def->results[k].rank + 1));
                if (!resolve_type(b, fr, &def->results[k], &dt, dims)) {
                    ok = false;
                } else if (v != POISON) {
                    v = mk_adapt(&b->m, v, dt, kiln_dtype_name(dt));
                    Node *n = v == POISON ? NULL : N(b, v);
                    if (n && (n->dtype != dt || n->rank != def->results[k].rank ||
                              memcmp(n->shape, dims, sizeof(Dim) * (size_t)n->rank) != 0)) {
                        char *got = type_of(b, v), *want = ir_type_str(b->g, dt, def->results[k].rank, dims);
                        diag_error(b->diags, s->values[k]->loc,
                                   "result %d of '%s' has type %s, but the graph declares %s", k + 1,
                                   def->name, got, want);
                        free(got), free(want);
                        ok = false;
                    }
                }
                free(dims);
                if (v == POISON) ok = false;
                if (nres < max_results) results[nres] = v;
                nres++;
            }
            continue;
        }
        /* S_ASSIGN */
        int vals[1] = {POISON};
        int *many = NULL;
        int nvals = 1;
        const Expr *value = s->values[0];
        if (s->nnames > 1) {
            int gi = value->kind == E_CALL ? program_find_graph(b->prog, value->name) : -1;
            many = xcalloc((size_t)s->nnames, sizeof(int));
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
            int v = s->nnames > 1 ? (nvals >= 0 ? many[k] : POISON) : vals[0];
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

/* Whether every symbolic name of def's result types is one of its
 * parameters' (then a call's result types follow from its arguments'). */
static bool results_follow_params(const GraphDef *def) {
    for (int r = 0; r < def->nresults; r++)
        for (int k = 0; k < def->results[r].rank; k++) {
            const char *name = def->results[r].dims[k].name;
            bool found = !name;
            for (int p = 0; !found && p < def->nparams; p++)
                for (int j = 0; !found && j < def->params[p].type.rank; j++)
                    found = def->params[p].type.dims[j].name &&
                            strcmp(def->params[p].type.dims[j].name, name) == 0;
            if (!found) return false;
        }
    return true;
}

/* A checked call's results from the callee's declared types (dims bound by
 * its arguments in `callee`): values of those types, not computed. */
static int call_by_signature(Builder *b, Frame *callee, Loc loc, int *results, int max_results) {
    const GraphDef *def = callee->def;
    for (int r = 0; r < def->nresults; r++) {
        KilnDType dt;
        Dim *dims = xmalloc(sizeof(Dim) * (size_t)(def->results[r].rank + 1));
        int v = POISON;
        if (resolve_type(b, callee, &def->results[r], &dt, dims))
            v = mk_full_int(&b->m, dims, def->results[r].rank, 0, dt, mk_at(loc));
        free(dims);
        if (v == POISON) return -1;
        if (r < max_results) results[r] = v;
    }
    return def->nresults;
}

static int build_graph_call(Builder *b, Frame *fr, const Expr *e, int gi, int *results, int max_results) {
    const GraphDef *def = &b->prog->graphs[gi];
    if (b->status[gi] == GRAPH_BAD) return -1; /* reported where it is defined (or where it recurses) */
    if (b->status[gi] == GRAPH_CHECKING) {
        diag_error(b->diags, e->loc, "recursive call to graph '%s'", def->name);
        diag_hint(b->diags, "graph calls are inlined, so a graph cannot call itself, directly or not");
        return -1;
    }
    if (b->status[gi] == GRAPH_UNCHECKED) check_graph(b->prog, gi, b->diags, b->status);
    bool ok = b->status[gi] == GRAPH_CLEAN;
    if (b->depth == 0) b->call = e->loc;
    if (ok && b->g->nodes.len > MAX_NODES && !stopped(b)) {
        diag_error(b->diags, b->call, "graph '%s' grows past %d nodes when its graph calls are inlined",
                   b->g->name, MAX_NODES);
        diag_hint(b->diags, "calls are inlined: a graph that calls another several times, at each of "
                            "many levels, grows exponentially");
        b->too_large = true;
    }
    if (ok && b->depth >= MAX_CALL_DEPTH && !stopped(b)) {
        diag_error(b->diags, e->loc, "graph calls nest more than %d deep here", MAX_CALL_DEPTH);
        diag_hint(b->diags,
                  "calls are inlined into the graph that is run, and kiln inlines at most %d levels; "
                  "call fewer graphs inside each other",
                  MAX_CALL_DEPTH);
        b->too_large = true;
    }
    if (stopped(b)) return -1;
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
        int v = build_expr(b, fr, e->args[i]);
        if (v == POISON || i >= def->nparams) {
            ok = false;
            continue;
        }
        KilnDType dt;
        if (mk_is_weak(&b->m, v) && parse_dtype(def->params[i].type.dtype_name, &dt))
            v = mk_adapt(&b->m, v, dt, def->params[i].type.dtype_name);
        if (v == POISON || !unify_param(b, &callee, &def->params[i], v, e->args[i]->loc)) {
            ok = false;
            continue;
        }
        Binding bd = {def->params[i].name, v, def->params[i].loc};
        env_push(&callee, bd);
    }
    int n = -1;
    if (ok && b->signatures && results_follow_params(def)) {
        n = call_by_signature(b, &callee, e->loc, results, max_results);
    } else if (ok) {
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
static IRGraph *build_entry(Arena *arena, const Program *prog, int gi, const DimBinding *binds, int nbinds,
                            DiagList *diags, GraphStatus *status, bool signatures) {
    const GraphDef *def = &prog->graphs[gi];
    Builder b = {.prog = prog,
                 .diags = diags,
                 .binds = binds,
                 .nbinds = nbinds,
                 .status = status,
                 .signatures = signatures};
    b.g = ir_graph_new(arena, def->name);
    mk_init(&b.m, b.g, diags);
    Frame fr = {.def = def};
    int before = diags->nerrors;
    for (int i = 0; i < def->nparams; i++) {
        const Param *p = &def->params[i];
        KilnDType dt = KILN_F32;
        Dim *dims = xmalloc(sizeof(Dim) * (size_t)(p->type.rank + 1));
        int v = POISON;
        if (resolve_type(&b, &fr, &p->type, &dt, dims))
            v = mk_param(&b.m, p->name, dt, p->type.rank, dims, p->loc);
        free(dims);
        Binding bd = {p->name, v, p->loc};
        env_push(&fr, bd);
    }
    GraphStatus was = status[gi];
    if (was != GRAPH_BAD) status[gi] = GRAPH_CHECKING; /* a BAD graph's own calls stay quiet */
    int nres = def->nresults;
    int *results = xcalloc((size_t)nres + 1, sizeof(int));
    int n = build_body(&b, &fr, results, nres, def->loc);
    status[gi] = diags->nerrors == before && was != GRAPH_BAD ? GRAPH_CLEAN : GRAPH_BAD;
    if (n == nres && diags->nerrors == before)
        for (int i = 0; i < nres; i++) mk_result(&b.m, results[i]);
    free(results);
    frame_free(&fr);
    mk_free(&b.m);
    if (diags->nerrors != before) {
        ir_graph_destroy(b.g);
        return NULL;
    }
    return b.g;
}

static bool check_graph(const Program *prog, int gi, DiagList *diags, GraphStatus *status) {
    Arena *arena = arena_new();
    IRGraph *g = build_entry(arena, prog, gi, NULL, 0, diags, status, true);
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

/* ---- the call graph ------------------------------------------------------- */

/* A graph's calls of other graphs: each callee once, with its first call
 * and how many calls name it. */
typedef struct {
    int graph;
    const Expr *call;
    int64_t count;
} CallEdge;
typedef VEC(CallEdge) CallEdges;

/* The graphs that graph gi's body calls (a walk with its own stack: an
 * expression may be 30,000 terms long); returns how many expressions the
 * body has, an estimate of its own nodes. */
static int64_t collect_calls(const Program *prog, int gi, CallEdges *out) {
    int64_t nexprs = 0;
    const GraphDef *def = &prog->graphs[gi];
    ExprVec todo = {0};
    for (int si = def->nstmts - 1; si >= 0; si--)
        for (int k = def->body[si].nvalues - 1; k >= 0; k--) VEC_PUSH(todo, def->body[si].values[k]);
    while (todo.len) {
        const Expr *e = todo.data[--todo.len];
        if (!e) continue;
        nexprs++;
        if (e->kind == E_CALL) {
            int callee = program_find_graph(prog, e->name), seen = -1;
            for (int i = 0; i < out->len && seen < 0; i++)
                if (out->data[i].graph == callee) seen = i;
            if (seen >= 0) {
                out->data[seen].count++;
            } else if (callee >= 0) {
                CallEdge edge = {callee, e, 1};
                VEC_PUSH(*out, edge);
            }
        }
        for (int i = e->nkwargs - 1; i >= 0; i--) VEC_PUSH(todo, e->kwargs[i].value);
        for (int i = e->nargs - 1; i >= 0; i--) VEC_PUSH(todo, e->args[i]);
        VEC_PUSH(todo, e->step);
        VEC_PUSH(todo, e->rhs);
        VEC_PUSH(todo, e->lhs);
    }
    VEC_FREE(todo);
    return nexprs;
}

/* After graph g's callees: how many nodes and how many levels of calls g
 * has once inlined (saturating), and the limits' errors where g passes
 * them first (callers of a failed graph fail quietly). */
static void inline_estimate(const Program *prog, int g, const CallEdges *edges, int64_t own, int64_t *size,
                            int *depth, DiagList *diags, GraphStatus *status) {
    int64_t total = own;
    int deepest = 0;
    for (int i = 0; i < edges->len; i++) {
        const CallEdge *ed = &edges->data[i];
        if (status[ed->graph] == GRAPH_BAD) { /* reported there; g cannot be inlined either */
            status[g] = GRAPH_BAD;
            continue;
        }
        int64_t add =
            size[ed->graph] > (MAX_NODES + 1) / ed->count ? MAX_NODES + 1 : size[ed->graph] * ed->count;
        total = total + add > MAX_NODES ? MAX_NODES + 1 : total + add;
        if (depth[ed->graph] + 1 > deepest) deepest = depth[ed->graph] + 1;
        if (total > MAX_NODES && status[g] != GRAPH_BAD) {
            diag_error(diags, ed->call->loc,
                       "graph '%s' grows past %d nodes when its graph calls are inlined",
                       prog->graphs[g].name, MAX_NODES);
            diag_hint(diags, "calls are inlined: a graph that calls another several times, at each of "
                             "many levels, grows exponentially");
            status[g] = GRAPH_BAD;
        }
        if (deepest > MAX_CALL_DEPTH && status[g] != GRAPH_BAD) {
            diag_error(diags, ed->call->loc, "graph calls nest more than %d deep here", MAX_CALL_DEPTH);
            diag_hint(diags,
                      "calls are inlined into the graph that is run, and kiln inlines at most %d levels; "
                      "call fewer graphs inside each other",
                      MAX_CALL_DEPTH);
            status[g] = GRAPH_BAD;
        }
    }
    size[g] = total;
    depth[g] = deepest;
}

/* Checks the graphs reachable from `root` (every graph when root < 0), each
 * after the graphs it calls, so that no check waits on another's: a chain of
 * 5,000 graphs calling each other is checked in one pass, with no recursion
 * as deep as the chain.  A call that closes a cycle is reported there, and
 * the graphs of the cycle count as failed. */
static void check_callees_first(const Program *prog, int root, DiagList *diags, GraphStatus *status) {
    int n = prog->ngraphs;
    CallEdges *edges = xcalloc((size_t)n + 1, sizeof(CallEdges));
    char *state = xcalloc((size_t)n + 1, 1); /* 0 unseen, 1 on the walk's stack, 2 done */
    int64_t *own = xcalloc((size_t)n + 1, sizeof(int64_t)), *size = xcalloc((size_t)n + 1, sizeof(int64_t));
    int *depth = xcalloc((size_t)n + 1, sizeof(int));
    typedef struct {
        int graph, next;
    } Visit;
    VEC(Visit) stack = {0};
    VEC(int) order = {0};
    for (int r = root < 0 ? 0 : root; r < (root < 0 ? n : root + 1); r++) {
        if (state[r] || program_find_graph(prog, prog->graphs[r].name) != r) continue;
        Visit v0 = {r, 0};
        VEC_PUSH(stack, v0);
        state[r] = 1;
        own[r] = collect_calls(prog, r, &edges[r]);
        while (stack.len) {
            Visit *v = &stack.data[stack.len - 1];
            if (v->next < edges[v->graph].len) {
                CallEdge ed = edges[v->graph].data[v->next++];
                if (state[ed.graph] == 1) {
                    diag_error(diags, ed.call->loc, "recursive call to graph '%s'",
                               prog->graphs[ed.graph].name);
                    diag_hint(diags,
                              "graph calls are inlined, so a graph cannot call itself, directly or not");
                    for (int k = stack.len - 1; k >= 0; k--) { /* the cycle: from the callee to here */
                        status[stack.data[k].graph] = GRAPH_BAD;
                        if (stack.data[k].graph == ed.graph) break;
                    }
                } else if (state[ed.graph] == 0) {
                    state[ed.graph] = 1;
                    own[ed.graph] = collect_calls(prog, ed.graph, &edges[ed.graph]);
                    Visit next = {ed.graph, 0};
                    VEC_PUSH(stack, next);
                }
                continue;
            }
            state[v->graph] = 2;
            inline_estimate(prog, v->graph, &edges[v->graph], own[v->graph], size, depth, diags, status);
            VEC_PUSH(order, v->graph);
            stack.len--;
        }
    }
    for (int i = 0; i < order.len; i++)
        if (status[order.data[i]] != GRAPH_CLEAN) check_graph(prog, order.data[i], diags, status);
    for (int i = 0; i < n; i++) VEC_FREE(edges[i]);
    free(edges);
    free(state);
    free(own), free(size), free(depth);
    VEC_FREE(stack);
    VEC_FREE(order);
}

bool ir_check_program(const Program *prog, DiagList *diags) {
    int before = diags->nerrors;
    check_duplicate_graphs(prog, diags);
    GraphStatus *status = xcalloc((size_t)prog->ngraphs + 1, sizeof(GraphStatus));
    check_callees_first(prog, -1, diags, status);
    free(status);
    return diags->nerrors == before;
}

IRGraph *ir_build(Arena *arena, const Program *prog, int entry, const DimBinding *binds, int nbinds,
                  DiagList *diags) {
    GraphStatus *status = xcalloc((size_t)prog->ngraphs + 1, sizeof(GraphStatus));
    /* the graphs it calls are checked first, each once; then the entry is
     * built with every call inlined */
    int before = diags->nerrors;
    check_callees_first(prog, entry, diags, status);
    IRGraph *g = NULL;
    if (diags->nerrors == before) {
        status[entry] = GRAPH_UNCHECKED;
        g = build_entry(arena, prog, entry, binds, nbinds, diags, status, false);
    }
    free(status);
    return g;
}
