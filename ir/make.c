/* make.c - the value-level IR builder: every shape and dtype rule of kiln's
 * ops, once (the contract is in make.h).
 *
 * Each mk_* function checks its operands and attributes, reports what is
 * wrong at the place the caller gave (MkLoc), and appends nodes only when all
 * is well.  The language's AST lowering (frontend/lower.c), importers of other
 * formats and the pass pipeline's check (mk_check_node, at the end) all come
 * here, so a rule changed here changes for every one of them. */
#include "ir/make.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Limit that remains, reported as an error: the elements of one tensor (sizes
 * are computed with saturating arithmetic up to here, so no overflow). */
#define MAX_ELEMENTS ((int64_t)1 << 53)

typedef VEC(Dim) DimVec;
typedef VEC(int64_t) I64Vec;

static Node *N(IRMaker *m, int id) { return ir_node(m->g, id); }

/* Saturating size arithmetic: sizes beyond MAX_ELEMENTS are errors anyway. */
static int64_t sat_add(int64_t a, int64_t b) {
    int64_t r;
    return __builtin_add_overflow(a, b, &r) ? (a < 0 ? INT64_MIN : INT64_MAX) : r;
}
static int64_t sat_mul(int64_t a, int64_t b) {
    int64_t r;
    return __builtin_mul_overflow(a, b, &r) ? ((a < 0) != (b < 0) ? INT64_MIN : INT64_MAX) : r;
}

/* ---- locations ----------------------------------------------------------- */

static bool loc_set(Loc l) { return l.line > 0; }
static Loc at_attr(const MkLoc *l) { return loc_set(l->attr) ? l->attr : l->at; }
static Loc at_value(const MkLoc *l) { return loc_set(l->value) ? l->value : l->at; }
static Loc at_in(const MkLoc *l, int i) { return l->in && loc_set(l->in[i]) ? l->in[i] : l->at; }
static Loc at_item(const MkLoc *l, int i) {
    return l->items && loc_set(l->items[i]) ? l->items[i] : at_attr(l);
}

/* ---- the maker ------------------------------------------------------------- */

void mk_init(IRMaker *m, IRGraph *g, DiagList *diags) { *m = (IRMaker){.g = g, .diags = diags}; }

void mk_free(IRMaker *m) { VEC_FREE(m->weak); }

static char *type_str_of(IRMaker *m, KilnDType dt, int rank, const Dim *shape) {
    return ir_type_str(m->g, dt, rank, shape);
}

static char *type_of(IRMaker *m, int id) {
    Node *n = N(m, id);
    return ir_type_str(m->g, n->dtype, n->rank, n->shape);
}

static char *dim_str(IRMaker *m, Dim d) {
    StrBuf sb = {0};
    ir_dim_print(m->g, d, &sb);
    return sb.data;
}

/* Every node goes through here: the size limit, and the weak-literal table
 * kept in step with the node ids. */
static int add(IRMaker *m, Op op, KilnDType dt, int rank, const Dim *shape, int nin, const int *in, Loc loc) {
    int64_t numel = 1;
    for (int k = 0; k < rank; k++)
        if (!DIM_IS_SYM(shape[k])) numel = sat_mul(numel, shape[k]);
    if (numel > MAX_ELEMENTS && !m->too_large) {
        char *t = type_str_of(m, dt, rank, shape);
        diag_error(m->diags, loc, "%s has more than 2**53 elements", t);
        free(t);
        m->too_large = true;
    }
    return ir_add_node(m->g, op, dt, rank, shape, nin, in, loc);
}

static void set_ints(IRMaker *m, int id, const int64_t *v, int n) {
    Node *nd = N(m, id);
    nd->ints = ARENA_ARRAY(m->g->arena, int64_t, n);
    if (n) memcpy(nd->ints, v, sizeof(int64_t) * (size_t)n);
    nd->nints = n;
}

bool mk_is_weak(const IRMaker *m, int v) { return v >= 0 && v < m->weak.len && m->weak.data[v]; }

static void set_weak(IRMaker *m, int id) {
    while (m->weak.len <= id) VEC_PUSH(m->weak, false);
    m->weak.data[id] = true;
}

/* ---- sources ----------------------------------------------------------------- */

int mk_param(IRMaker *m, const char *name, KilnDType dt, int rank, const Dim *shape, Loc loc) {
    for (int i = 0; i < m->g->params.len; i++) {
        if (strcmp(N(m, m->g->params.data[i])->name, name) == 0) {
            diag_error(m->diags, loc, "parameter '%s' is declared twice", name);
            return MK_ERROR;
        }
    }
    for (int k = 0; k < rank; k++) {
        if (!DIM_IS_SYM(shape[k]) && shape[k] <= 0) {
            diag_error(m->diags, loc, "a dimension must be positive, found %lld", (long long)shape[k]);
            return MK_ERROR;
        }
    }
    int id = add(m, OP_PARAM, dt, rank, shape, 0, NULL, loc);
    N(m, id)->name = arena_strdup(m->g->arena, name);
    VEC_PUSH(m->g->params, id);
    return id;
}

void mk_result(IRMaker *m, int v) {
    if (v >= 0) VEC_PUSH(m->g->results, v);
}

int mk_const(IRMaker *m, double v, KilnDType dt, Loc loc) {
    int id = add(m, OP_CONST, dt, 0, NULL, 0, NULL, loc);
    ir_set_value(N(m, id), v);
    return id;
}

int mk_literal_int(IRMaker *m, int64_t v, Loc loc) {
    int id = add(m, OP_CONST, KILN_I64, 0, NULL, 0, NULL, loc);
    ir_set_int_value(N(m, id), v);
    set_weak(m, id);
    return id;
}

bool mk_value_fits(IRMaker *m, bool is_int, int64_t i, double f, KilnDType dt, Loc at, const char *what) {
    char text[64];
    if (is_int)
        snprintf(text, sizeof text, "%lld", (long long)i);
    else
        snprintf(text, sizeof text, "%g", f);
    if (dt == KILN_I32 && ((is_int && (i < INT32_MIN || i > INT32_MAX)) ||
                           (!is_int && (f < -2147483648.0 || f > 2147483647.0)))) {
        diag_error(m->diags, at, "%s %s does not fit in i32", what, text);
        diag_hint(m->diags, "i32 holds -2147483648 to 2147483647; cast the tensor to i64 first");
        return false;
    }
    if (dt == KILN_I64 && !is_int && !(f >= -9223372036854775808.0 && f < 9223372036854775808.0)) {
        diag_error(m->diags, at, "%s %s does not fit in i64", what, text);
        diag_hint(m->diags, "i64 holds -9223372036854775808 to 9223372036854775807");
        return false;
    }
    if (dtype_is_float(dt)) {
        double x = is_int ? scalar_to_double(scalar_from_int(i, dt), dt) : ref_round_to_dtype(f, dt);
        if (isinf(x) && (is_int || !isinf(f))) {
            diag_error(m->diags, at, "%s %s does not fit in %s: it overflows to infinity", what, text,
                       kiln_dtype_name(dt));
            diag_hint(m->diags, "%s's largest value is %g", kiln_dtype_name(dt),
                      dt == KILN_F16    ? 65504.0
                      : dt == KILN_BF16 ? 0x1.fep127
                      : dt == KILN_F32  ? 0x1.fffffep127
                                        : 0x1.fffffffffffffp1023);
            return false;
        }
    }
    return true;
}

int mk_literal(IRMaker *m, double v, KilnDType kind, Loc loc) {
    int id = mk_const(m, v, kind, loc);
    set_weak(m, id);
    return id;
}

int mk_adapt(IRMaker *m, int v, KilnDType dt, const char *beside) {
    if (v < 0 || !mk_is_weak(m, v)) return v;
    Node *n = N(m, v);
    if (n->dtype == dt) return v;
    double x = n->value;
    if (dtype_is_int(dt) && n->dtype != KILN_BOOL && x != floor(x)) {
        diag_error(m->diags, n->loc, "the literal %g cannot be used with %s", x, beside);
        diag_hint(m->diags,
                  "a literal takes the dtype of the tensor beside it (%s here); "
                  "cast the tensor first, e.g. cast(x, f32)",
                  kiln_dtype_name(dt));
        return MK_ERROR;
    }
    if ((dt == KILN_BOOL) != (n->dtype == KILN_BOOL)) {
        diag_error(m->diags, n->loc, "a %s literal cannot be used with %s",
                   n->dtype == KILN_BOOL ? "boolean" : "numeric", beside);
        return MK_ERROR;
    }
    bool is_int = n->dtype == KILN_I64;
    Scalar lit = ir_node_scalar(n);
    if (dt != KILN_BOOL && !mk_value_fits(m, is_int, lit.i, n->value, dt, n->loc, "the literal"))
        return MK_ERROR;
    if (is_int && dtype_is_intlike(dt)) return mk_const_int(m, lit.i, dt, n->loc);
    if (is_int) return mk_const(m, scalar_to_double(scalar_from_int(lit.i, dt), dt), dt, n->loc);
    return mk_const(m, x, dt, n->loc);
}

int mk_const_int(IRMaker *m, int64_t v, KilnDType dt, Loc loc) {
    int id = add(m, OP_CONST, dt, 0, NULL, 0, NULL, loc);
    ir_set_int_value(N(m, id), scalar_from_int(v, dt).i);
    return id;
}

/* ---- products of dimensions, in canonical form -------------------------------
 * A product is a constant fraction times a sorted list of symbolic factors;
 * building it the same way every time makes equal products equal Dims, so
 * that reshape(x, [B*T, C]) of an f32[B, T, C] checks symbolically.  A
 * quotient by a constant (B/2) is the factor B with the denominator 2, so
 * that B/2 * 8 and 4*B are the same size. */

typedef struct {
    int64_t coef, den; /* coef/den, den > 0 */
    VEC(Dim) syms;
} Product;

static void product_add_factor(IRMaker *m, Product *p, Dim d) {
    if (!DIM_IS_SYM(d)) {
        p->coef = sat_mul(p->coef, d);
        return;
    }
    const SymDim *s = &m->g->syms.data[DIM_SYM_INDEX(d)];
    if (s->kind == SYM_MUL) {
        Dim x = s->a, y = s->b;
        product_add_factor(m, p, x);
        product_add_factor(m, p, y);
        return;
    }
    if (s->kind == SYM_DIV && !DIM_IS_SYM(s->b) && s->b > 0) {
        Dim x = s->a;
        p->den = sat_mul(p->den, s->b);
        product_add_factor(m, p, x);
        return;
    }
    VEC_PUSH(p->syms, d);
}

/* Symbols in the order they were made (B before T): -1, -2, ... */
static int dim_cmp(const void *a, const void *b) {
    Dim x = *(const Dim *)a, y = *(const Dim *)b;
    return x > y ? -1 : x < y;
}

static Dim product_dim(IRMaker *m, Product *p) {
    if (p->syms.len > 1) qsort(p->syms.data, (size_t)p->syms.len, sizeof(Dim), dim_cmp);
    int64_t g = gcd_i64(p->coef, p->den);
    if (g > 1) p->coef /= g, p->den /= g;
    Dim d = p->coef;
    for (int i = 0; i < p->syms.len; i++) d = ir_dim_mul(m->g, d, p->syms.data[i]);
    return p->den == 1 ? d : ir_dim_div(m->g, d, p->den);
}

Dim mk_dim_product(IRMaker *m, const Dim *dims, int n) {
    Product p = {.coef = 1, .den = 1};
    for (int i = 0; i < n; i++) product_add_factor(m, &p, dims[i]);
    Dim d = product_dim(m, &p);
    VEC_FREE(p.syms);
    return d;
}

bool mk_dim_quotient(IRMaker *m, Dim num, Dim den, Dim *out) {
    Product pn = {.coef = 1, .den = 1}, pd = {.coef = 1, .den = 1};
    product_add_factor(m, &pn, num);
    product_add_factor(m, &pd, den);
    bool ok = false;
    for (int i = 0; i < pd.syms.len; i++) {
        int j = 0;
        while (j < pn.syms.len && pn.syms.data[j] != pd.syms.data[i]) j++;
        if (j == pn.syms.len) goto done; /* a symbolic factor does not cancel */
        pn.syms.data[j] = pn.syms.data[--pn.syms.len];
    }
    /* (pn.coef / pn.den) / (pd.coef / pd.den), which must be an integer */
    int64_t top = sat_mul(pn.coef, pd.den), bottom = sat_mul(pn.den, pd.coef);
    if (bottom <= 0 || top == INT64_MAX || bottom == INT64_MAX || top % bottom != 0) goto done;
    pn.coef = top / bottom, pn.den = 1;
    *out = product_dim(m, &pn);
    ok = true;
done:
    VEC_FREE(pn.syms);
    VEC_FREE(pd.syms);
    return ok;
}

/* ---- shared checks ------------------------------------------------------------ */

/* Normalises an axis against a rank; reports and returns false if out of range. */
static bool norm_axis(IRMaker *m, Loc loc, int64_t axis, int rank, int64_t *out) {
    if (axis < -rank || axis >= rank) {
        if (rank == 0)
            diag_error(m->diags, loc, "axis %lld is out of range for a rank-0 tensor", (long long)axis);
        else
            diag_error(m->diags, loc, "axis %lld is out of range for a tensor of rank %d", (long long)axis,
                       rank);
        if (rank > 0) diag_hint(m->diags, "valid axes are %d to %d", -rank, rank - 1);
        return false;
    }
    *out = axis < 0 ? axis + rank : axis;
    return true;
}

/* The language's rule for the network layers that take floating point only. */
static bool need_float_named(IRMaker *m, const char *name, int x, Loc loc) {
    if (dtype_is_float(N(m, x)->dtype)) return true;
    char *t = type_of(m, x);
    diag_error(m->diags, loc, "%s needs a floating-point tensor, found %s", name, t);
    diag_hint(m->diags, "cast it first, e.g. %s(cast(x, f32), ...)", name);
    free(t);
    return false;
}

static bool need_float(IRMaker *m, Op op, int x, Loc loc) {
    return !(op_info[op].flags & OPF_FLOAT) || need_float_named(m, op_info[op].name, x, loc);
}

/* Checks that `v` is a 1-D tensor of `size` and dtype `dt`, for gamma/beta/bias. */
static bool check_vector(IRMaker *m, int v, Dim size, KilnDType dt, const char *what, Loc loc) {
    Node *n = N(m, v);
    if (n->rank == 1 && n->shape[0] == size && n->dtype == dt) return true;
    char *t = type_of(m, v), *want = ir_type_str(m->g, dt, 1, &size);
    diag_error(m->diags, loc, "%s must be %s, found %s", what, want, t);
    free(t), free(want);
    return false;
}

/* ---- broadcasting ---------------------------------------------------------------- */

static bool broadcast_shapes(IRMaker *m, const int *ids, int n, Loc loc, const char *opname, DimVec *out) {
    int rank = 0;
    for (int i = 0; i < n; i++)
        if (N(m, ids[i])->rank > rank) rank = N(m, ids[i])->rank;
    for (int k = 0; k < rank; k++) {
        Dim d = 1;
        for (int i = 0; i < n; i++) {
            Node *x = N(m, ids[i]);
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
                Node *y = N(m, ids[j]);
                int offy = rank - y->rank;
                if (k >= offy && y->shape[k - offy] != 1 && y->shape[k - offy] != e) break;
                j++;
            }
            if (j == i) j = 0;
            char *ta = type_of(m, ids[j]), *tb = type_of(m, ids[i]);
            char *da = dim_str(m, d), *db = dim_str(m, e);
            diag_error(m->diags, loc, "cannot broadcast %s with %s", ta, tb);
            diag_hint(m->diags,
                      "in '%s', sizes %s and %s differ in dimension %d from the right; "
                      "sizes must be equal or 1",
                      opname, da, db, rank - k);
            free(ta), free(tb), free(da), free(db);
            return false;
        }
        VEC_PUSH(*out, d);
    }
    return true;
}

/* ---- elementwise ------------------------------------------------------------------- */

static const char *const op_symbol[OP_COUNT] = {
    [OP_ADD] = "+", [OP_SUB] = "-",   [OP_MUL] = "*", [OP_DIV] = "/",  [OP_MOD] = "%",
    [OP_EQ] = "==", [OP_NE] = "!=",   [OP_LT] = "<",  [OP_LE] = "<=",  [OP_GT] = ">",
    [OP_GE] = ">=", [OP_AND] = "and", [OP_OR] = "or", [OP_POW] = "**",
};

static const char *op_display(Op op) { return op_symbol[op] ? op_symbol[op] : op_info[op].name; }

/* An elementwise op over n operands (binary, comparison, logic, where);
 * operand 0 of where is the bool condition. */
static int elementwise(IRMaker *m, Op op, const int *in, int n, Loc loc) {
    int args[3];
    bool weak[3];
    for (int i = 0; i < n; i++) {
        if (in[i] < 0) return MK_ERROR;
        args[i] = in[i];
        weak[i] = mk_is_weak(m, in[i]);
    }
    int first_data = op == OP_WHERE ? 1 : 0;
    /* weak literals take the dtype of a strong operand beside them */
    int strong_id = -1;
    for (int i = first_data; i < n && strong_id < 0; i++)
        if (!weak[i]) strong_id = args[i];
    if (strong_id >= 0) {
        KilnDType strong = N(m, strong_id)->dtype;
        for (int i = first_data; i < n; i++) {
            if (!weak[i]) continue;
            char *beside = type_of(m, strong_id); /* for its message */
            args[i] = mk_adapt(m, args[i], strong, beside);
            weak[i] = false;
            free(beside);
        }
        for (int i = 0; i < n; i++)
            if (args[i] < 0) return MK_ERROR;
    } else if (n - first_data == 2) {
        /* two literals: int with float makes float */
        KilnDType a = N(m, args[first_data])->dtype, c = N(m, args[first_data + 1])->dtype;
        if (a != c && a != KILN_BOOL && c != KILN_BOOL) {
            args[first_data] = mk_adapt(m, args[first_data], KILN_F32, "f32");
            args[first_data + 1] = mk_adapt(m, args[first_data + 1], KILN_F32, "f32");
        }
    }
    if (op == OP_WHERE && n == 3 && weak[0]) args[0] = mk_adapt(m, args[0], KILN_BOOL, "a condition");
    for (int i = 0; i < n; i++)
        if (args[i] < 0) return MK_ERROR;
    if (op == OP_WHERE && N(m, args[0])->dtype != KILN_BOOL) {
        char *t = type_of(m, args[0]);
        diag_error(m->diags, loc, "the condition of where must be bool, found %s", t);
        diag_hint(m->diags, "compare to get a condition, e.g. where(x > 0, x, y)");
        free(t);
        return MK_ERROR;
    }
    KilnDType dt = N(m, args[first_data])->dtype;
    for (int i = first_data + 1; i < n; i++) {
        KilnDType di = N(m, args[i])->dtype;
        if (di != dt) {
            char *ta = type_of(m, args[first_data]), *tb = type_of(m, args[i]);
            diag_error(m->diags, loc, "operands of '%s' have different dtypes: %s and %s", op_display(op), ta,
                       tb);
            diag_hint(m->diags, "convert one of them with cast, e.g. cast(x, %s)",
                      kiln_dtype_name(dt == KILN_BOOL ? di : dt)); /* not to bool: no arithmetic */
            free(ta), free(tb);
            return MK_ERROR;
        }
    }
    OpKind kind = op_info[op].kind;
    if (kind == OK_LOGIC && dt != KILN_BOOL) {
        char *t = type_of(m, args[first_data]);
        diag_error(m->diags, loc, "'%s' takes bool operands, found %s", op_display(op), t);
        diag_hint(m->diags, "compare first, e.g. (x > 0) %s (y > 0)", op_display(op));
        free(t);
        return MK_ERROR;
    }
    if (kind == OK_BINARY && dt == KILN_BOOL) {
        diag_error(m->diags, loc, "'%s' does not take bool operands", op_display(op));
        diag_hint(m->diags, "use and/or for logic, or cast(x, i32) for arithmetic");
        return MK_ERROR;
    }
    if ((op_info[op].flags & OPF_FLOAT) && !dtype_is_float(dt)) {
        char *t = type_of(m, args[first_data]);
        diag_error(m->diags, loc, "'%s' needs floating-point operands, found %s", op_display(op), t);
        diag_hint(m->diags, "cast the operands first, e.g. cast(x, f32)");
        free(t);
        return MK_ERROR;
    }
    DimVec shape = {0};
    if (!broadcast_shapes(m, args, n, loc, op_display(op), &shape)) {
        VEC_FREE(shape);
        return MK_ERROR;
    }
    KilnDType rdt = kind == OK_COMPARE ? KILN_BOOL : dt;
    int id = add(m, op, rdt, shape.len, shape.data, n, args, loc);
    VEC_FREE(shape);
    return id;
}

int mk_binary(IRMaker *m, Op op, int a, int b, Loc loc) {
    int args[2] = {a, b};
    return elementwise(m, op, args, 2, loc);
}

int mk_where(IRMaker *m, int cond, int a, int b, Loc loc) {
    int args[3] = {cond, a, b};
    return elementwise(m, OP_WHERE, args, 3, loc);
}

int mk_clamp(IRMaker *m, int x, int lo, int hi, Loc loc) {
    if (x < 0 || lo < 0 || hi < 0) return MK_ERROR;
    return mk_binary(m, OP_MINIMUM, mk_binary(m, OP_MAXIMUM, x, lo, loc), hi, loc);
}

/* The operand rules of an elementwise op named `name` that takes no bool and,
 * with OPF_FLOAT in `flags`, only floating point (a weak integer literal
 * becomes f32): x, adapted, or MK_ERROR reported. */
static int unary_operand(IRMaker *m, const char *name, int flags, int x, Loc loc) {
    if (x < 0) return MK_ERROR;
    Node *n = N(m, x);
    if (n->dtype == KILN_BOOL) {
        diag_error(m->diags, loc, "%s does not take a bool operand", name);
        diag_hint(m->diags, "cast it first, e.g. cast(x, f32)");
        return MK_ERROR;
    }
    if ((flags & OPF_FLOAT) && !dtype_is_float(n->dtype)) {
        if (!mk_is_weak(m, x)) {
            char *t = type_of(m, x);
            diag_error(m->diags, loc, "%s needs a floating-point operand, found %s", name, t);
            diag_hint(m->diags, "cast it first, e.g. %s(cast(x, f32))", name);
            free(t);
            return MK_ERROR;
        }
        return mk_adapt(m, x, KILN_F32, "f32");
    }
    return x;
}

int mk_unary(IRMaker *m, Op op, int x, Loc loc) {
    if (x < 0) return MK_ERROR;
    if (op == OP_NOT && N(m, x)->dtype != KILN_BOOL) {
        char *t = type_of(m, x);
        diag_error(m->diags, loc, "'not' takes a bool operand, found %s", t);
        diag_hint(m->diags, "compare first, e.g. not (x > 0)");
        free(t);
        return MK_ERROR;
    }
    if (op != OP_NOT) x = unary_operand(m, op_info[op].name, op_info[op].flags, x, loc);
    if (x < 0) return MK_ERROR;
    Node *n = N(m, x);
    return add(m, op, n->dtype, n->rank, n->shape, 1, &x, loc);
}

int mk_gelu(IRMaker *m, int x, bool approximate, Loc loc) {
    int v = mk_unary(m, OP_GELU, x, loc);
    if (v >= 0) N(m, v)->flag = approximate;
    return v;
}

int mk_cast(IRMaker *m, int x, KilnDType dt, Loc loc) {
    if (x < 0) return MK_ERROR;
    Node *n = N(m, x);
    return add(m, OP_CAST, dt, n->rank, n->shape, 1, &x, loc);
}

/* ---- data movement ------------------------------------------------------------------- */

/* x itself when it already has the shape, else a reshape node. */
static int reshape_to(IRMaker *m, int x, const Dim *shape, int rank, Loc loc) {
    Node *n = N(m, x);
    if (n->rank == rank && (rank == 0 || memcmp(n->shape, shape, sizeof(Dim) * (size_t)rank) == 0)) return x;
    return add(m, OP_RESHAPE, n->dtype, rank, shape, 1, &x, loc);
}

/* A transpose by a valid, normalised permutation. */
static int transpose_perm(IRMaker *m, int x, const int64_t *perm, Loc loc) {
    Node *n = N(m, x);
    int rank = n->rank;
    Dim *shape = xmalloc(sizeof(Dim) * (size_t)(rank + 1));
    for (int i = 0; i < rank; i++) shape[i] = n->shape[perm[i]];
    int id = add(m, OP_TRANSPOSE, n->dtype, rank, shape, 1, &x, loc); /* n is stale after add */
    set_ints(m, id, perm, rank);
    free(shape);
    return id;
}

int mk_reshape(IRMaker *m, int x, const Dim *dims, int rank, int infer_axis, Loc loc) {
    if (x < 0) return MK_ERROR;
    Dim *shape = xmalloc(sizeof(Dim) * (size_t)(rank + 1));
    if (rank) memcpy(shape, dims, sizeof(Dim) * (size_t)rank);
    int v = MK_ERROR;
    Node *n = N(m, x);
    Dim total = mk_dim_product(m, n->shape, n->rank);
    if (infer_axis >= 0 && infer_axis < rank) {
        shape[infer_axis] = 1;
        Dim known = mk_dim_product(m, shape, rank), q;
        if (known == 0 || !mk_dim_quotient(m, total, known, &q)) {
            char *t = type_of(m, x), *kd = dim_str(m, known);
            diag_error(m->diags, loc, "cannot reshape %s: its size is not a multiple of %s", t, kd);
            free(t), free(kd);
            goto done;
        }
        shape[infer_axis] = q;
    }
    Dim out_total = mk_dim_product(m, shape, rank);
    if (out_total != total) {
        n = N(m, x);
        char *t = type_of(m, x), *ts = ir_type_str(m->g, n->dtype, rank, shape);
        char *a = dim_str(m, total), *z = dim_str(m, out_total);
        diag_error(m->diags, loc, "cannot reshape %s (%s elements) into %s (%s elements)", t, a, ts, z);
        free(t), free(ts), free(a), free(z);
        goto done;
    }
    v = add(m, OP_RESHAPE, N(m, x)->dtype, rank, shape, 1, &x,
            loc); /* explicit: the IR shows the user's reshape */
done:
    free(shape);
    return v;
}

int mk_transpose(IRMaker *m, int x, const int64_t *perm, int nperm, MkLoc loc) {
    if (x < 0) return MK_ERROR;
    int rank = N(m, x)->rank;
    int64_t *p = xmalloc(sizeof(int64_t) * (size_t)(rank + 1));
    bool ok = true;
    if (!perm) {
        for (int i = 0; i < rank; i++) p[i] = rank - 1 - i;
    } else if (nperm != rank) {
        diag_error(m->diags, at_attr(&loc), "the permutation has %d entries, the tensor has rank %d", nperm,
                   rank);
        ok = false;
    } else {
        bool *seen = xcalloc((size_t)rank + 1, 1);
        for (int i = 0; ok && i < rank; i++) {
            int64_t a;
            if (!norm_axis(m, at_item(&loc, i), perm[i], rank, &a)) {
                ok = false;
            } else if (seen[a]) {
                diag_error(m->diags, at_item(&loc, i), "axis %lld appears twice in the permutation",
                           (long long)perm[i]);
                ok = false;
            } else {
                seen[a] = true;
                p[i] = a;
            }
        }
        free(seen);
    }
    int v = ok ? transpose_perm(m, x, p, loc.at) : MK_ERROR;
    free(p);
    return v;
}

int mk_broadcast(IRMaker *m, int x, const Dim *dims, int rank, Loc loc) {
    if (x < 0) return MK_ERROR;
    Node *n = N(m, x);
    bool ok = rank >= n->rank;
    for (int k = 0; ok && k < n->rank; k++) {
        Dim d = n->shape[k], t = dims[rank - n->rank + k];
        ok = d == t || d == 1;
    }
    if (!ok) {
        char *t = type_of(m, x), *ts = ir_type_str(m->g, n->dtype, rank, dims);
        diag_error(m->diags, loc, "cannot broadcast %s to %s", t, ts);
        diag_hint(m->diags, "each dimension must equal the target's or be 1, aligned from the right");
        free(t), free(ts);
        return MK_ERROR;
    }
    return add(m, OP_BROADCAST, n->dtype, rank, dims, 1, &x, loc);
}

/* The size of a slice of a symbolic axis: a symbol of its own, named by the
 * slice, so that the same slice of the same axis has the same size. */
static Dim slice_of_symbol(IRMaker *m, Dim size, const MkSlice *s) {
    StrBuf sb = {0};
    ir_dim_print(m->g, size, &sb);
    sb_puts(&sb, "[");
    if (s->has_start) sb_printf(&sb, "%lld", (long long)s->start);
    sb_puts(&sb, ":");
    if (s->has_stop) sb_printf(&sb, "%lld", (long long)s->stop);
    if (s->step != 1) sb_printf(&sb, ":%lld", (long long)s->step);
    sb_puts(&sb, "]");
    Dim d = ir_dim_opaque(m->g, sb.data);
    sb_free(&sb);
    return d;
}

int mk_index(IRMaker *m, int x, const MkSlice *axes, int n, MkLoc loc) {
    if (x < 0) return MK_ERROR;
    Node *nx = N(m, x);
    if (n > nx->rank) {
        char *t = type_of(m, x);
        diag_error(m->diags, loc.at, "too many indices (%d) for %s", n, t);
        free(t);
        return MK_ERROR;
    }
    int rank = nx->rank;
    int64_t *ints = xmalloc(sizeof(int64_t) * (size_t)(2 * rank + 1));
    Dim *shape = xmalloc(sizeof(Dim) * (size_t)(rank + 1));
    Dim *kept = xmalloc(sizeof(Dim) * (size_t)(rank + 1));
    int nkept = 0;
    bool ok = true, trivial = true;
    for (int k = 0; k < rank; k++) {
        Dim size = N(m, x)->shape[k];
        int64_t start = 0, step = 1;
        Dim len = size;
        const MkSlice *s = k < n ? &axes[k] : NULL;
        Loc s_at = s && loc_set(s->at) ? s->at : loc.at;
        if (s && s->index) { /* x[i]: one element, axis dropped */
            int64_t i = s->start;
            if (!DIM_IS_SYM(size) && (i < -size || i >= size)) {
                diag_error(m->diags, s_at, "index %lld is out of range for axis %d of size %lld",
                           (long long)i, k, (long long)size);
                ok = false;
                continue;
            }
            if (DIM_IS_SYM(size) && i < 0)
                start = 0; /* resolved when the size is bound */
            else
                start = i < 0 ? i + size : i;
            len = 1;
            trivial = false;
        } else {
            if (s) {
                step = s->step;
                if (step <= 0) {
                    diag_error(m->diags, loc_set(s->step_at) ? s->step_at : s_at,
                               "a slice step must be positive, found %lld", (long long)step);
                    ok = false;
                    continue;
                }
                if (DIM_IS_SYM(size)) {
                    if (s->has_start || s->has_stop || step != 1) {
                        len = slice_of_symbol(m, size, s);
                        trivial = false;
                    }
                } else {
                    /* Python's slice.indices for a positive step */
                    int64_t a = s->start, z = s->stop;
                    if (!s->has_start)
                        a = 0;
                    else if (a < 0)
                        a = a + size < 0 ? 0 : a + size;
                    else if (a > size)
                        a = size;
                    if (!s->has_stop)
                        z = size;
                    else if (z < 0)
                        z = z + size < 0 ? 0 : z + size;
                    else if (z > size)
                        z = size;
                    start = a;
                    len = z > a ? (z - a - 1) / step + 1 : 0;
                    if (len == 0) { /* no empty tensors (docs/language.md, Types) */
                        diag_error(m->diags, s_at, "this slice of axis %d (size %lld) is empty", k,
                                   (long long)size);
                        diag_hint(m->diags, "kiln has no empty tensors: a slice keeps at least one element");
                        ok = false;
                        continue;
                    }
                    if (start != 0 || step != 1 || len != size) trivial = false;
                }
            }
            kept[nkept++] = len;
        }
        ints[2 * k] = start;
        ints[2 * k + 1] = step;
        shape[k] = len;
    }
    int v = MK_ERROR;
    if (ok) {
        int id = x;
        if (!trivial) {
            id = add(m, OP_SLICE, N(m, x)->dtype, rank, shape, 1, &x, loc.at);
            set_ints(m, id, ints, 2 * rank);
        }
        v = reshape_to(m, id, kept, nkept, loc.at);
    }
    free(ints), free(shape), free(kept);
    return v;
}

int mk_concat(IRMaker *m, const int *xs, int n, int64_t axis, MkLoc loc) {
    if (n < 1) {
        diag_error(m->diags, loc.at, "concat takes a list of tensors, e.g. concat([a, b], axis=0)");
        return MK_ERROR;
    }
    for (int i = 0; i < n; i++)
        if (xs[i] < 0) return MK_ERROR;
    Node *first = N(m, xs[0]);
    int64_t a;
    if (first->rank == 0) {
        diag_error(m->diags, at_in(&loc, 0), "concat needs tensors of rank 1 or more");
        return MK_ERROR;
    }
    if (!norm_axis(m, at_attr(&loc), axis, first->rank, &a)) return MK_ERROR;
    Dim total = 0;
    for (int i = 0; i < n; i++) {
        Node *x = N(m, xs[i]);
        first = N(m, xs[0]);
        bool same = x->dtype == first->dtype && x->rank == first->rank;
        for (int k = 0; same && k < x->rank; k++) same = k == a || x->shape[k] == first->shape[k];
        if (!same) {
            char *ta = type_of(m, xs[0]), *tb = type_of(m, xs[i]);
            diag_error(m->diags, at_in(&loc, i), "cannot concatenate %s and %s along axis %lld", ta, tb,
                       (long long)a);
            diag_hint(m->diags, "all tensors need the same dtype, rank and sizes except along the axis");
            free(ta), free(tb);
            return MK_ERROR;
        }
        total = ir_dim_add(m->g, total, x->shape[a]);
    }
    first = N(m, xs[0]);
    int rank = first->rank;
    Dim *shape = xmalloc(sizeof(Dim) * (size_t)rank);
    memcpy(shape, first->shape, sizeof(Dim) * (size_t)rank);
    shape[a] = total;
    int id = add(m, OP_CONCAT, first->dtype, rank, shape, n, xs, loc.at);
    set_ints(m, id, &a, 1);
    free(shape);
    return id;
}

/* mk_pad with the value as an exact integer when is_int, else as f. */
static int pad_value(IRMaker *m, int x, const int64_t *pads, int npairs, bool is_int, int64_t i, double value,
                     MkLoc loc) {
    if (x < 0) return MK_ERROR;
    Node *n = N(m, x);
    int rank = n->rank;
    if (npairs != rank) {
        char *t = type_of(m, x);
        diag_error(m->diags, at_attr(&loc), "pad needs one [lo, hi] pair per dimension of %s", t);
        free(t);
        return MK_ERROR;
    }
    Dim *shape = xmalloc(sizeof(Dim) * (size_t)(rank + 1));
    bool ok = true;
    for (int k = 0; k < rank; k++) {
        if (pads[2 * k] < 0 || pads[2 * k + 1] < 0) {
            diag_error(m->diags, at_item(&loc, k), "pad widths cannot be negative");
            ok = false;
            continue;
        }
        shape[k] = ir_dim_add(m->g, N(m, x)->shape[k], sat_add(pads[2 * k], pads[2 * k + 1]));
    }
    KilnDType dt = N(m, x)->dtype;
    if (ok && dtype_is_int(dt) && value != floor(value)) {
        diag_error(m->diags, at_value(&loc), "the pad value %g is not an integer, but the tensor is %s",
                   value, kiln_dtype_name(dt));
        ok = false;
    }
    if (ok && dt != KILN_BOOL && !mk_value_fits(m, is_int, i, value, dt, at_value(&loc), "the pad value"))
        ok = false;
    int v = MK_ERROR;
    if (ok) {
        v = add(m, OP_PAD, dt, rank, shape, 1, &x, loc.at);
        set_ints(m, v, pads, 2 * rank);
        if (is_int && dtype_is_intlike(dt))
            ir_set_int_value(N(m, v), scalar_from_int(i, dt).i);
        else if (is_int)
            ir_set_value(N(m, v), scalar_to_double(scalar_from_int(i, dt), dt));
        else
            ir_set_value(N(m, v), value);
    }
    free(shape);
    return v;
}

int mk_pad(IRMaker *m, int x, const int64_t *pads, int npairs, double value, MkLoc loc) {
    return pad_value(m, x, pads, npairs, false, 0, value, loc);
}

int mk_pad_int(IRMaker *m, int x, const int64_t *pads, int npairs, int64_t value, MkLoc loc) {
    return pad_value(m, x, pads, npairs, true, value, (double)value, loc);
}

int mk_squeeze(IRMaker *m, int x, const int64_t *axes, int naxes, MkLoc loc) {
    if (x < 0) return MK_ERROR;
    int rank = N(m, x)->rank;
    bool *drop = xcalloc((size_t)rank + 1, sizeof(bool));
    Dim *shape = xmalloc(sizeof(Dim) * (size_t)(rank + 1));
    int v = MK_ERROR, out = 0;
    for (int i = 0; axes && i < naxes; i++) {
        int64_t a;
        if (!norm_axis(m, at_attr(&loc), axes[i], rank, &a)) goto done;
        Dim size = N(m, x)->shape[a];
        if (size != 1) {
            char *t = type_of(m, x), *d = dim_str(m, size);
            diag_error(m->diags, at_attr(&loc), "cannot squeeze axis %lld of %s: its size is %s, not 1",
                       (long long)axes[i], t, d);
            free(t), free(d);
            goto done;
        }
        drop[a] = true;
    }
    /* without axes, only sizes known to be 1 go: a symbolic size could be 1
     * in one run and not in another, so the result's type would depend on
     * the run -- name the axes instead */
    for (int k = 0; !axes && k < rank; k++) {
        Dim size = N(m, x)->shape[k];
        if (!DIM_IS_SYM(size)) continue;
        char *t = type_of(m, x), *d = dim_str(m, size);
        diag_error(m->diags, loc.at, "squeeze without axis= cannot tell whether dimension %s of %s is 1: it may differ from run to run", d, t);
        int one = -1;
        for (int j = 0; j < rank && one < 0; j++)
            if (N(m, x)->shape[j] == 1) one = j;
        if (one >= 0) diag_hint(m->diags, "name the axis to remove, e.g. squeeze(x, axis=%d)", one);
        else diag_hint(m->diags, "name the axis to remove with axis=");
        free(t), free(d);
        goto done;
    }
    for (int k = 0; k < rank; k++) {
        Dim size = N(m, x)->shape[k];
        if (axes ? !drop[k] : size != 1) shape[out++] = size;
    }
    v = add(m, OP_RESHAPE, N(m, x)->dtype, out, shape, 1, &x, loc.at);
done:
    free(drop), free(shape);
    return v;
}

int mk_unsqueeze(IRMaker *m, int x, const int64_t *axes, int naxes, MkLoc loc) {
    if (x < 0) return MK_ERROR;
    if (!axes || naxes < 1) {
        diag_error(m->diags, loc.at, "unsqueeze needs axis=");
        return MK_ERROR;
    }
    int rank = N(m, x)->rank, out_rank = rank + naxes;
    bool *added = xcalloc((size_t)out_rank + 1, sizeof(bool));
    Dim *shape = xmalloc(sizeof(Dim) * (size_t)(out_rank + 1));
    int v = MK_ERROR;
    for (int i = 0; i < naxes; i++) {
        int64_t a;
        if (!norm_axis(m, at_attr(&loc), axes[i], out_rank, &a)) goto done;
        if (added[a]) {
            diag_error(m->diags, at_attr(&loc), "axis %lld is listed twice", (long long)axes[i]);
            goto done;
        }
        added[a] = true;
    }
    for (int k = 0, j = 0; k < out_rank; k++) shape[k] = added[k] ? 1 : N(m, x)->shape[j++];
    v = add(m, OP_RESHAPE, N(m, x)->dtype, out_rank, shape, 1, &x, loc.at);
done:
    free(added), free(shape);
    return v;
}

/* ---- creation --------------------------------------------------------------------------- */

static int add_full(IRMaker *m, const Dim *dims, int rank, double value, KilnDType dt, Loc loc) {
    int id = add(m, OP_FULL, dt, rank, dims, 0, NULL, loc);
    ir_set_value(N(m, id), value);
    return id;
}

int mk_full_int(IRMaker *m, const Dim *dims, int rank, int64_t value, KilnDType dt, MkLoc loc) {
    if (dt != KILN_BOOL && !mk_value_fits(m, true, value, 0, dt, at_value(&loc), "the fill value"))
        return MK_ERROR;
    int id = add_full(m, dims, rank, 0, dt, loc.at);
    if (dtype_is_intlike(dt))
        ir_set_int_value(N(m, id), scalar_from_int(value, dt).i);
    else
        ir_set_value(N(m, id), scalar_to_double(scalar_from_int(value, dt), dt));
    return id;
}

int mk_full(IRMaker *m, const Dim *dims, int rank, double value, KilnDType dt, MkLoc loc) {
    if (dtype_is_int(dt) && value != floor(value)) {
        diag_error(m->diags, at_value(&loc), "the fill value %g is not an integer, but the dtype is %s", value,
                   kiln_dtype_name(dt));
        return MK_ERROR;
    }
    if (dt != KILN_BOOL && !mk_value_fits(m, false, 0, value, dt, at_value(&loc), "the fill value"))
        return MK_ERROR;
    return add_full(m, dims, rank, value, dt, loc.at);
}

int mk_arange(IRMaker *m, Dim n, KilnDType dt, MkLoc loc) {
    if (dt == KILN_BOOL) {
        diag_error(m->diags, at_value(&loc), "arange cannot make a bool tensor");
        return MK_ERROR;
    }
    return add(m, OP_IOTA, dt, 1, &n, 0, NULL, loc.at);
}

/* ---- reductions ----------------------------------------------------------------------------- */

int mk_reduce(IRMaker *m, Op op, int x, const int64_t *axes, int naxes, bool keepdims, MkLoc loc) {
    if (x < 0) return MK_ERROR;
    Node *n = N(m, x);
    const char *name = op_info[op].name;
    if (n->dtype == KILN_BOOL) {
        diag_error(m->diags, loc.at, "%s does not take a bool tensor", name);
        diag_hint(m->diags, "cast it first, e.g. %s(cast(x, i64))", name);
        return MK_ERROR;
    }
    if ((op_info[op].flags & OPF_FLOAT) && !dtype_is_float(n->dtype)) {
        char *t = type_of(m, x);
        diag_error(m->diags, loc.at, "%s needs a floating-point tensor, found %s", name, t);
        diag_hint(m->diags, "cast it first, e.g. %s(cast(x, f32))", name);
        free(t);
        return MK_ERROR;
    }
    int rank = n->rank;
    bool is_arg = op == OP_ARGMAX || op == OP_ARGMIN;
    bool *reduced = xcalloc((size_t)rank + 1, sizeof(bool));
    bool ok = true;
    if (axes) {
        for (int i = 0; ok && i < naxes; i++) {
            int64_t a;
            if (!norm_axis(m, at_attr(&loc), axes[i], rank, &a)) {
                ok = false;
                break;
            }
            if (reduced[a]) {
                diag_error(m->diags, at_attr(&loc), "axis %lld is listed twice", (long long)axes[i]);
                ok = false;
            }
            reduced[a] = true;
        }
    } else if (!is_arg) {
        for (int k = 0; k < rank; k++) reduced[k] = true;
    }
    int v = MK_ERROR;
    if (ok) {
        DimVec shape = {0};
        I64Vec sorted = {0};
        bool all = !axes && is_arg; /* argmax over the flattened tensor */
        for (int k = 0; k < rank; k++) {
            if (reduced[k] || all) {
                if (reduced[k]) VEC_PUSH(sorted, k);
                if (keepdims) VEC_PUSH(shape, 1);
            } else {
                VEC_PUSH(shape, N(m, x)->shape[k]);
            }
        }
        KilnDType dt = is_arg ? KILN_I64 : N(m, x)->dtype;
        v = add(m, op, dt, shape.len, shape.data, 1, &x, loc.at);
        set_ints(m, v, sorted.data, sorted.len);
        N(m, v)->flag = keepdims;
        VEC_FREE(shape);
        VEC_FREE(sorted);
    }
    free(reduced);
    return v;
}

/* ---- neural-network operations ------------------------------------------------------------------ */

/* NumPy matmul: 1-D operands are promoted and the added axis removed again;
 * batch dimensions broadcast. */
int mk_matmul(IRMaker *m, int va, int vb, Loc loc) {
    if (va < 0 || vb < 0) return MK_ERROR;
    if (mk_is_weak(m, va) || mk_is_weak(m, vb) || N(m, va)->rank == 0 || N(m, vb)->rank == 0) {
        diag_error(m->diags, loc, "matrix multiplication needs tensors of rank 1 or more");
        diag_hint(m->diags, "use '*' to multiply by a scalar");
        return MK_ERROR;
    }
    int a = va, c = vb;
    if (N(m, a)->dtype != N(m, c)->dtype) {
        char *ta = type_of(m, a), *tb = type_of(m, c);
        diag_error(m->diags, loc, "operands of '@' have different dtypes: %s and %s", ta, tb);
        diag_hint(m->diags, "convert one of them with cast, e.g. cast(x, %s)",
                  kiln_dtype_name(N(m, a)->dtype));
        free(ta), free(tb);
        return MK_ERROR;
    }
    if (N(m, a)->dtype == KILN_BOOL) {
        diag_error(m->diags, loc, "'@' does not take bool operands");
        return MK_ERROR;
    }
    bool a_vec = N(m, a)->rank == 1, b_vec = N(m, c)->rank == 1;
    if (a_vec) {
        Dim s[2] = {1, N(m, a)->shape[0]};
        a = reshape_to(m, a, s, 2, loc);
    }
    if (b_vec) {
        Dim s[2] = {N(m, c)->shape[0], 1};
        c = reshape_to(m, c, s, 2, loc);
    }
    Node *na = N(m, a), *nb = N(m, c);
    Dim k1 = na->shape[na->rank - 1], k2 = nb->shape[nb->rank - 2];
    if (k1 != k2) {
        char *ta = type_of(m, va), *tb = type_of(m, vb);
        char *d1 = dim_str(m, k1), *d2 = dim_str(m, k2);
        diag_error(m->diags, loc, "cannot multiply %s by %s: inner dimensions %s and %s differ", ta, tb, d1,
                   d2);
        diag_hint(m->diags, "for a @ b the last dimension of a must equal the second-to-last of b");
        free(ta), free(tb), free(d1), free(d2);
        return MK_ERROR;
    }
    /* batch dimensions broadcast like elementwise operands */
    int batch_a = na->rank - 2, batch_b = nb->rank - 2;
    int batch = batch_a > batch_b ? batch_a : batch_b;
    DimVec shape = {0};
    for (int k = 0; k < batch; k++) {
        int ia = k - (batch - batch_a), ib = k - (batch - batch_b);
        Dim da = ia >= 0 ? na->shape[ia] : 1, db = ib >= 0 ? nb->shape[ib] : 1;
        if (da != db && da != 1 && db != 1) {
            char *ta = type_of(m, va), *tb = type_of(m, vb);
            diag_error(m->diags, loc, "cannot broadcast the batch dimensions of %s and %s", ta, tb);
            free(ta), free(tb);
            VEC_FREE(shape);
            return MK_ERROR;
        }
        VEC_PUSH(shape, da == 1 ? db : da);
    }
    VEC_PUSH(shape, na->shape[na->rank - 2]);
    VEC_PUSH(shape, nb->shape[nb->rank - 1]);
    int ins[2] = {a, c};
    int id = add(m, OP_MATMUL, na->dtype, shape.len, shape.data, 2, ins, loc);
    /* drop the axes added for 1-D operands */
    int rank = shape.len, out_rank = 0;
    Dim *out = xmalloc(sizeof(Dim) * (size_t)rank);
    for (int i = 0; i < rank; i++) {
        if (a_vec && i == rank - 2) continue;
        if (b_vec && i == rank - 1) continue;
        out[out_rank++] = shape.data[i];
    }
    int v = (a_vec || b_vec) ? reshape_to(m, id, out, out_rank, loc) : id;
    free(out);
    VEC_FREE(shape);
    return v;
}

/* The checks of an op along one axis of a floating-point tensor of rank >= 1
 * (softmax, the norms): the normalised axis in *out. */
static bool float_axis(IRMaker *m, Op op, int x, int64_t axis, const MkLoc *loc, int64_t *out) {
    if (x < 0 || !need_float(m, op, x, loc->at)) return false;
    if (N(m, x)->rank == 0) {
        diag_error(m->diags, loc->at, "%s needs a tensor of rank 1 or more", op_info[op].name);
        return false;
    }
    return norm_axis(m, at_attr(loc), axis, N(m, x)->rank, out);
}

int mk_softmax(IRMaker *m, Op op, int x, int64_t axis, MkLoc loc) {
    int64_t a;
    if (!float_axis(m, op, x, axis, &loc, &a)) return MK_ERROR;
    Node *n = N(m, x);
    int id = add(m, op, n->dtype, n->rank, n->shape, 1, &x, loc.at);
    set_ints(m, id, &a, 1);
    return id;
}

/* layernorm (nin 3) and rmsnorm (nin 2). */
static int make_norm(IRMaker *m, Op op, const int *ins, int nin, int64_t axis, double eps, MkLoc loc) {
    int x = ins[0];
    int64_t a;
    if (!float_axis(m, op, x, axis, &loc, &a)) return MK_ERROR;
    bool ok = true;
    for (int i = 1; i < nin; i++)
        ok = ins[i] >= 0 &&
             check_vector(m, ins[i], N(m, x)->shape[a], N(m, x)->dtype, i == 1 ? "gamma" : "beta",
                          at_in(&loc, i)) &&
             ok;
    if (!ok) return MK_ERROR;
    Node *n = N(m, x);
    int id = add(m, op, n->dtype, n->rank, n->shape, nin, ins, loc.at);
    set_ints(m, id, &a, 1);
    N(m, id)->value = eps;
    return id;
}

int mk_layernorm(IRMaker *m, int x, int gamma, int beta, int64_t axis, double eps, MkLoc loc) {
    int ins[3] = {x, gamma, beta};
    return make_norm(m, OP_LAYERNORM, ins, 3, axis, eps, loc);
}

int mk_rmsnorm(IRMaker *m, int x, int gamma, int64_t axis, double eps, MkLoc loc) {
    int ins[2] = {x, gamma};
    return make_norm(m, OP_RMSNORM, ins, 2, axis, eps, loc);
}

int mk_linear(IRMaker *m, int x, int w, int bias, MkLoc loc) {
    if (x < 0 || w < 0 || bias == MK_ERROR) return MK_ERROR;
    if (N(m, w)->rank != 2) {
        char *t = type_of(m, w);
        diag_error(m->diags, at_in(&loc, 1), "linear's weight must be 2-D [out, in], found %s", t);
        free(t);
        return MK_ERROR;
    }
    int64_t perm[2] = {1, 0};
    int wt = transpose_perm(m, w, perm, loc.at);
    int y = mk_matmul(m, x, wt, loc.at);
    if (y < 0 || bias == MK_NONE) return y;
    if (!check_vector(m, bias, N(m, w)->shape[0], N(m, w)->dtype, "the bias", at_in(&loc, 2)))
        return MK_ERROR;
    return mk_binary(m, OP_ADD, y, bias, loc.at);
}

/* Output size of a convolution or pooling window along one axis of `size`:
 * kernel k, stride s, padding `before` + `after`, dilation d; with `ceil`
 * the last partial window counts too, unless it would start in the padding
 * after the input (PyTorch's rule, which ONNX follows). */
static Dim window_out(IRMaker *m, Dim size, int64_t k, int64_t s, int64_t before, int64_t after, int64_t d,
                      bool ceil) {
    int64_t pads = sat_add(before, after);
    if (DIM_IS_SYM(size)) {
        /* floor((size + pads - span) / s) + 1 as a size of its own, named by that
         * formula: equal only to the same window over the same size */
        int64_t c = sat_add(sat_add(pads, -sat_mul(d, k - 1)), s - 1); /* floor((size + c) / s) */
        if (ceil) c = sat_add(c, s - 1);
        if (s == 1 && c == 0) return size;
        char *in = dim_str(m, size);
        bool paren = strpbrk(in, "+-*/") != NULL;
        StrBuf name = {0};
        if (s == 1) sb_printf(&name, paren ? "(%s)%+lld" : "%s%+lld", in, (long long)c);
        else if (c == 0) sb_printf(&name, paren ? "(%s)/%lld" : "%s/%lld", in, (long long)s);
        else sb_printf(&name, paren ? "((%s)%+lld)/%lld" : "(%s%+lld)/%lld", in, (long long)c, (long long)s);
        if (ceil) sb_puts(&name, "~"); /* ceil_mode's last-window rule makes it another size */
        Dim r = ir_dim_opaque(m->g, name.data);
        free(in);
        sb_free(&name);
        return r;
    }
    int64_t span = sat_add(sat_mul(d, k - 1), 1);
    int64_t num = sat_add(sat_add(size, pads), -span);
    if (num < 0) return 0;
    int64_t out = (ceil ? sat_add(num, s - 1) : num) / s + 1;
    if (ceil && sat_mul(out - 1, s) >= sat_add(size, before)) out--;
    return out;
}

/* The checks the window attributes share: strides and dilations at least 1,
 * paddings not negative (at loc.attr). */
static bool window_attrs_ok(IRMaker *m, const char *name, const int64_t stride[2], const int64_t *dilation,
                            const int64_t pad[4], const MkLoc *loc) {
    if (stride[0] < 1 || stride[1] < 1 || (dilation && (dilation[0] < 1 || dilation[1] < 1))) {
        diag_error(m->diags, loc->at, "%s needs strides%s of at least 1", name, dilation ? " and dilations" : "");
        return false;
    }
    for (int i = 0; i < 4; i++) {
        if (pad[i] < 0) {
            diag_error(m->diags, at_attr(loc), "padding must be at least 0");
            return false;
        }
    }
    return true;
}

int mk_conv2d(IRMaker *m, int x, int w, int bias, const MkConv *cv, MkLoc loc) {
    if (x < 0 || w < 0 || bias == MK_ERROR || !need_float(m, OP_CONV2D, x, loc.at)) return MK_ERROR;
    Loc at = loc.at;
    if (!window_attrs_ok(m, "conv2d", cv->stride, cv->dilation, cv->pad, &loc)) return MK_ERROR;
    Node *nx = N(m, x), *nw = N(m, w);
    if (nx->rank != 4 || nw->rank != 4) {
        char *tx = type_of(m, x), *tw = type_of(m, w);
        diag_error(m->diags, at, "conv2d takes x[N, C, H, W] and w[O, C/groups, KH, KW], found %s and %s", tx, tw);
        free(tx), free(tw);
        return MK_ERROR;
    }
    if (nx->dtype != nw->dtype) {
        char *tx = type_of(m, x), *tw = type_of(m, w);
        diag_error(m->diags, at, "conv2d operands have different dtypes: %s and %s", tx, tw);
        diag_hint(m->diags, "convert one of them with cast");
        free(tx), free(tw);
        return MK_ERROR;
    }
    int64_t groups = cv->groups;
    if (groups < 1 || DIM_IS_SYM(nw->shape[0]) || nw->shape[0] % groups != 0) {
        diag_error(m->diags, at, "groups=%lld must be positive and divide the %s output channels", (long long)groups,
                   "weight's");
        return MK_ERROR;
    }
    Dim want_c = DIM_IS_SYM(nw->shape[1]) ? nw->shape[1] : sat_mul(nw->shape[1], groups);
    if (nx->shape[1] != want_c) {
        char *tx = type_of(m, x), *tw = type_of(m, w);
        char *have = dim_str(m, nx->shape[1]), *want = dim_str(m, want_c);
        diag_error(m->diags, at, "conv2d channel mismatch: input %s has %s channels, weight %s expects %s", tx, have,
                   tw, want);
        free(tx), free(tw), free(have), free(want);
        return MK_ERROR;
    }
    if (DIM_IS_SYM(nw->shape[2]) || DIM_IS_SYM(nw->shape[3])) {
        diag_error(m->diags, at, "conv2d needs a kernel of known size");
        return MK_ERROR;
    }
    const int64_t *st = cv->stride, *pd = cv->pad, *dl = cv->dilation;
    Dim shape[4] = {nx->shape[0], nw->shape[0], window_out(m, nx->shape[2], nw->shape[2], st[0], pd[0], pd[1], dl[0], false),
                    window_out(m, nx->shape[3], nw->shape[3], st[1], pd[2], pd[3], dl[1], false)};
    if (shape[2] == 0 || shape[3] == 0) {
        diag_error(m->diags, at, "the conv2d kernel is larger than the padded input");
        return MK_ERROR;
    }
    nw = N(m, w);
    if (bias != MK_NONE && !check_vector(m, bias, nw->shape[0], nw->dtype, "the bias", at_in(&loc, 2)))
        return MK_ERROR;
    int ins[3] = {x, w, bias};
    int id = add(m, OP_CONV2D, N(m, x)->dtype, 4, shape, bias != MK_NONE ? 3 : 2, ins, at);
    int64_t ints[9] = {st[0], st[1], pd[0], pd[2], dl[0], dl[1], groups, pd[1], pd[3]};
    set_ints(m, id, ints, 9);
    return id;
}

int mk_pool2d(IRMaker *m, Op op, int x, const MkPool *p, MkLoc loc) {
    if (x < 0 || !need_float(m, op, x, loc.at)) return MK_ERROR;
    const char *name = op_info[op].name;
    Node *n = N(m, x);
    if (n->rank != 4) {
        char *t = type_of(m, x);
        diag_error(m->diags, loc.at, "%s takes x[N, C, H, W], found %s", name, t);
        free(t);
        return MK_ERROR;
    }
    if (n->dtype == KILN_BOOL || (op == OP_AVGPOOL2D && !dtype_is_float(n->dtype))) {
        diag_error(m->diags, loc.at, "%s needs a %s tensor", name, op == OP_AVGPOOL2D ? "floating-point" : "numeric");
        return MK_ERROR;
    }
    if (p->kernel[0] < 1 || p->kernel[1] < 1) {
        diag_error(m->diags, loc.at, "the pool kernel must be at least 1");
        return MK_ERROR;
    }
    if (!window_attrs_ok(m, name, p->stride, NULL, p->pad, &loc)) return MK_ERROR;
    if (p->pad[0] > p->kernel[0] / 2 || p->pad[1] > p->kernel[0] / 2 || p->pad[2] > p->kernel[1] / 2 ||
        p->pad[3] > p->kernel[1] / 2) {
        diag_error(m->diags, at_attr(&loc), "padding must be at most half the pool kernel");
        return MK_ERROR;
    }
    const int64_t *k = p->kernel, *st = p->stride, *pd = p->pad;
    Dim shape[4] = {n->shape[0], n->shape[1], window_out(m, n->shape[2], k[0], st[0], pd[0], pd[1], 1, p->ceil_mode),
                    window_out(m, n->shape[3], k[1], st[1], pd[2], pd[3], 1, p->ceil_mode)};
    if (shape[2] == 0 || shape[3] == 0) {
        diag_error(m->diags, loc.at, "the pool kernel is larger than the padded input");
        return MK_ERROR;
    }
    int id = add(m, op, N(m, x)->dtype, 4, shape, 1, &x, loc.at);
    int64_t ints[10] = {k[0], k[1], st[0], st[1], pd[0], pd[2], pd[1], pd[3], p->ceil_mode, p->count_include_pad};
    set_ints(m, id, ints, 10);
    return id;
}

int mk_global_avgpool(IRMaker *m, int x, Loc loc) {
    if (x < 0) return MK_ERROR;
    Node *n = N(m, x);
    if (n->rank != 4 || !dtype_is_float(n->dtype)) {
        char *t = type_of(m, x);
        diag_error(m->diags, loc, "global_avgpool takes a floating-point x[N, C, H, W], found %s", t);
        free(t);
        return MK_ERROR;
    }
    Dim shape[4] = {n->shape[0], n->shape[1], 1, 1};
    int id = add(m, OP_MEAN, n->dtype, 4, shape, 1, &x, loc);
    int64_t axes[2] = {2, 3};
    set_ints(m, id, axes, 2);
    N(m, id)->flag = true;
    return id;
}

/* ---- Version 1 additions ------------------------------------------------------------------------------ */

int mk_take(IRMaker *m, int x, int indices, int64_t axis, MkLoc loc) {
    if (x < 0 || indices < 0) return MK_ERROR;
    if (!dtype_is_int(N(m, indices)->dtype)) {
        char *t = type_of(m, indices);
        diag_error(m->diags, at_in(&loc, 1), "the indices of take must be i32 or i64, found %s", t);
        diag_hint(m->diags, "cast them first, e.g. cast(i, i64)");
        free(t);
        return MK_ERROR;
    }
    int64_t a;
    if (!norm_axis(m, at_attr(&loc), axis, N(m, x)->rank, &a)) return MK_ERROR;
    const Node *nx = N(m, x), *ni = N(m, indices);
    int rank = nx->rank - 1 + ni->rank;
    Dim *shape = xmalloc(sizeof(Dim) * (size_t)(rank + 1));
    int r = 0;
    for (int k = 0; k < a; k++) shape[r++] = nx->shape[k];
    for (int k = 0; k < ni->rank; k++) shape[r++] = ni->shape[k];
    for (int k = (int)a + 1; k < nx->rank; k++) shape[r++] = nx->shape[k];
    int ins[2] = {x, indices};
    int id = add(m, OP_TAKE, N(m, x)->dtype, rank, shape, 2, ins, loc.at);
    set_ints(m, id, &a, 1);
    free(shape);
    return id;
}

int mk_cumsum(IRMaker *m, int x, int64_t axis, bool exclusive, bool reverse, MkLoc loc) {
    if (x < 0) return MK_ERROR;
    if (N(m, x)->dtype == KILN_BOOL) {
        diag_error(m->diags, loc.at, "cumsum does not take a bool tensor");
        diag_hint(m->diags, "cast it first, e.g. cumsum(cast(x, i64), axis=0)");
        return MK_ERROR;
    }
    int64_t a;
    if (!norm_axis(m, at_attr(&loc), axis, N(m, x)->rank, &a)) return MK_ERROR;
    Node *n = N(m, x);
    int id = add(m, OP_CUMSUM, n->dtype, n->rank, n->shape, 1, &x, loc.at);
    int64_t ints[3] = {a, exclusive, reverse};
    set_ints(m, id, ints, 3);
    return id;
}

/* v (1-D, along axis `a` of a rank-`rank` tensor) shaped to broadcast there:
 * [C] -> [C, 1, ..., 1]. */
static int along_axis(IRMaker *m, int v, int64_t a, int rank, Loc loc) {
    if (v < 0) return MK_ERROR;
    int r = rank - (int)a;
    Dim *shape = xmalloc(sizeof(Dim) * (size_t)(r + 1));
    shape[0] = N(m, v)->shape[0];
    for (int k = 1; k < r; k++) shape[k] = 1;
    int id = reshape_to(m, v, shape, r, loc);
    free(shape);
    return id;
}

int mk_batchnorm(IRMaker *m, int x, int mean, int var, int gamma, int beta, int64_t axis, double eps, MkLoc loc) {
    int vecs[4] = {mean, var, gamma, beta};
    for (int i = 0; i < 4; i++)
        if (vecs[i] < 0) return MK_ERROR;
    if (x < 0 || !need_float_named(m, "batchnorm", x, loc.at)) return MK_ERROR;
    if (N(m, x)->rank == 0) {
        diag_error(m->diags, loc.at, "batchnorm needs a tensor of rank 1 or more");
        return MK_ERROR;
    }
    int64_t a;
    if (!norm_axis(m, at_attr(&loc), axis, N(m, x)->rank, &a)) return MK_ERROR;
    static const char *const names[4] = {"mean", "var", "gamma", "beta"};
    bool ok = true;
    for (int i = 0; i < 4; i++)
        ok = check_vector(m, vecs[i], N(m, x)->shape[a], N(m, x)->dtype, names[i], at_in(&loc, i + 1)) && ok;
    if (!ok) return MK_ERROR;
    /* (x - mean) * (gamma * rsqrt(var + eps)) + beta: the per-channel scale
     * first, so the per-element work is a subtract and a multiply-add */
    Loc at = loc.at;
    int rank = N(m, x)->rank;
    KilnDType dt = N(m, x)->dtype;
    int e = mk_const(m, eps, dt, at);
    int scale = mk_binary(m, OP_MUL, gamma, mk_unary(m, OP_RSQRT, mk_binary(m, OP_ADD, var, e, at), at), at);
    int centred = mk_binary(m, OP_SUB, x, along_axis(m, mean, a, rank, at), at);
    int scaled = mk_binary(m, OP_MUL, centred, along_axis(m, scale, a, rank, at), at);
    return mk_binary(m, OP_ADD, scaled, along_axis(m, beta, a, rank, at), at);
}

int mk_leaky_relu(IRMaker *m, int x, double alpha, Loc loc) {
    x = unary_operand(m, "leaky_relu", OPF_FLOAT, x, loc);
    if (x < 0) return MK_ERROR;
    KilnDType dt = N(m, x)->dtype;
    int positive = mk_binary(m, OP_GT, x, mk_const(m, 0, dt, loc), loc);
    return mk_where(m, positive, x, mk_binary(m, OP_MUL, x, mk_const(m, alpha, dt, loc), loc), loc);
}

int mk_hardsigmoid(IRMaker *m, int x, double alpha, double beta, Loc loc) {
    x = unary_operand(m, "hardsigmoid", OPF_FLOAT, x, loc);
    if (x < 0) return MK_ERROR;
    KilnDType dt = N(m, x)->dtype;
    int y = mk_binary(m, OP_MUL, x, mk_const(m, alpha, dt, loc), loc);
    y = mk_binary(m, OP_ADD, y, mk_const(m, beta, dt, loc), loc);
    return mk_clamp(m, y, mk_const(m, 0, dt, loc), mk_const(m, 1, dt, loc), loc);
}

int mk_reciprocal(IRMaker *m, int x, Loc loc) {
    x = unary_operand(m, "reciprocal", OPF_FLOAT, x, loc);
    if (x < 0) return MK_ERROR;
    return mk_binary(m, OP_DIV, mk_const(m, 1, N(m, x)->dtype, loc), x, loc);
}

/* false over x's shape: no integer or bool is NaN or infinite. */
static int all_false(IRMaker *m, int x, Loc loc) {
    Node *n = N(m, x);
    return add_full(m, n->shape, n->rank, 0, KILN_BOOL, loc);
}

int mk_isnan(IRMaker *m, int x, Loc loc) {
    if (x < 0) return MK_ERROR;
    if (!dtype_is_float(N(m, x)->dtype)) return all_false(m, x, loc);
    return mk_binary(m, OP_NE, x, x, loc); /* only NaN differs from itself */
}

int mk_isinf(IRMaker *m, int x, bool positive, bool negative, Loc loc) {
    if (x < 0) return MK_ERROR;
    if (!dtype_is_float(N(m, x)->dtype) || (!positive && !negative)) return all_false(m, x, loc);
    KilnDType dt = N(m, x)->dtype;
    if (!negative) return mk_binary(m, OP_EQ, x, mk_const(m, INFINITY, dt, loc), loc);
    if (!positive) return mk_binary(m, OP_EQ, x, mk_const(m, -INFINITY, dt, loc), loc);
    return mk_binary(m, OP_EQ, mk_unary(m, OP_ABS, x, loc), mk_const(m, INFINITY, dt, loc), loc);
}

/* ---- checking ----------------------------------------------------------------------------------------- */

/* Slices carry start and step; their size is the node's.  Valid when every
 * element they read lies inside the input. */
static bool slice_in_bounds(const Node *n, const Node *x) {
    if (n->rank != x->rank || n->nints != 2 * n->rank) return false;
    for (int k = 0; k < n->rank; k++) {
        int64_t start = n->ints[2 * k], step = n->ints[2 * k + 1];
        Dim len = n->shape[k], size = x->shape[k];
        if (start < 0 || step < 1) return false;
        if (DIM_IS_SYM(len) || DIM_IS_SYM(size) || len == 0) continue;
        if (sat_add(start, sat_mul(len - 1, step)) >= size) return false;
    }
    return true;
}

/* Builds node `id` again from its inputs and attributes, through the
 * functions above, into the same graph (then drops what it added): the id
 * of the new node, or MK_ERROR with the rule's message in `diags`.  -2: the
 * op has no rule to rebuild by (sources; a slice is checked above). */
static int remake(IRMaker *m, int id) {
    Node n = *N(m, id); /* a copy: adding nodes moves the array */
    Loc at = n.loc;
    MkLoc l = mk_at(at);
    int x = n.nin > 0 ? n.in[0] : MK_NONE;
    switch (op_info[n.op].kind) {
    case OK_UNARY:
    case OK_LOGIC:
        if (n.nin == 1) return mk_unary(m, n.op, x, at);
        return mk_binary(m, n.op, x, n.in[1], at);
    case OK_BINARY:
    case OK_COMPARE: return mk_binary(m, n.op, x, n.in[1], at);
    case OK_WHERE: return mk_where(m, x, n.in[1], n.in[2], at);
    case OK_CAST: return mk_cast(m, x, n.dtype, at);
    case OK_REDUCE: {
        bool is_arg = n.op == OP_ARGMAX || n.op == OP_ARGMIN;
        int64_t none = 0;
        const int64_t *axes = n.nints ? n.ints : is_arg ? NULL : &none;
        return mk_reduce(m, n.op, x, axes, n.nints, n.flag, l);
    }
    case OK_SHAPE:
        switch (n.op) {
        case OP_RESHAPE: return mk_reshape(m, x, n.shape, n.rank, -1, at);
        case OP_TRANSPOSE: return mk_transpose(m, x, n.ints, n.nints, l);
        case OP_BROADCAST: return mk_broadcast(m, x, n.shape, n.rank, at);
        case OP_PAD:
            if (dtype_is_intlike(n.dtype))
                return mk_pad_int(m, x, n.ints, n.nints / 2, ir_node_scalar(&n).i, l);
            return mk_pad(m, x, n.ints, n.nints / 2, n.value, l);
        case OP_CONCAT: return mk_concat(m, n.in, n.nin, n.nints ? n.ints[0] : 0, l);
        case OP_TAKE: return n.nints == 1 ? mk_take(m, x, n.in[1], n.ints[0], l) : MK_ERROR;
        default: return -2;
        }
    case OK_CREATE:
        if (n.op == OP_IOTA) return n.rank == 1 ? mk_arange(m, n.shape[0], n.dtype, l) : MK_ERROR;
        if (dtype_is_intlike(n.dtype))
            return mk_full_int(m, n.shape, n.rank, ir_node_scalar(&n).i, n.dtype, l);
        return mk_full(m, n.shape, n.rank, n.value, n.dtype, l);
    case OK_NN:
        switch (n.op) {
        case OP_MATMUL: return mk_matmul(m, x, n.in[1], at);
        case OP_SOFTMAX:
        case OP_LOG_SOFTMAX: return mk_softmax(m, n.op, x, n.ints[0], l);
        case OP_LAYERNORM: return mk_layernorm(m, x, n.in[1], n.in[2], n.ints[0], n.value, l);
        case OP_RMSNORM: return mk_rmsnorm(m, x, n.in[1], n.ints[0], n.value, l);
        case OP_CONV2D: {
            if (n.nints != 9) return MK_ERROR;
            const int64_t *v = n.ints;
            MkConv cv = {{v[0], v[1]}, {v[2], v[7], v[3], v[8]}, {v[4], v[5]}, v[6]};
            return mk_conv2d(m, x, n.in[1], n.nin > 2 ? n.in[2] : MK_NONE, &cv, l);
        }
        case OP_MAXPOOL2D:
        case OP_AVGPOOL2D: {
            if (n.nints != 10) return MK_ERROR;
            const int64_t *v = n.ints;
            MkPool p = {{v[0], v[1]}, {v[2], v[3]}, {v[4], v[6], v[5], v[7]}, v[8] != 0, v[9] != 0};
            return mk_pool2d(m, n.op, x, &p, l);
        }
        case OP_CUMSUM:
            return n.nints == 3 ? mk_cumsum(m, x, n.ints[0], n.ints[1] != 0, n.ints[2] != 0, l) : MK_ERROR;
        default: return -2;
        }
    default: return -2;
    }
}

bool mk_check_node(IRGraph *g, int id, char *why, size_t whylen) {
    const Node *n = ir_node(g, id);
    if (n->op == OP_SLICE) {
        if (n->nin == 1 && ir_node(g, n->in[0])->dtype == n->dtype &&
            slice_in_bounds(n, ir_node(g, n->in[0])))
            return true;
        snprintf(why, whylen, "reads outside its input");
        return false;
    }
    DiagList diags = {0};
    IRMaker m;
    mk_init(&m, g, &diags);
    int before = g->nodes.len;
    int r = remake(&m, id);
    bool ok = true;
    if (r == MK_ERROR) {
        snprintf(why, whylen, "breaks a rule: %s",
                 diags.items.len ? diags.items.data[0].msg : "invalid operands");
        ok = false;
    } else if (r >= 0) {
        const Node *a = ir_node(g, id), *b = ir_node(g, r);
        if (a->dtype != b->dtype || a->rank != b->rank ||
            (a->rank && memcmp(a->shape, b->shape, sizeof(Dim) * (size_t)a->rank) != 0)) {
            char *want = ir_type_str(g, b->dtype, b->rank, b->shape);
            snprintf(why, whylen, "should be %s by its op's rule", want);
            free(want);
            ok = false;
        }
    }
    g->nodes.len = before; /* what remake added is not part of the graph */
    mk_free(&m);
    diag_clear(&diags);
    return ok;
}
