/* ops_elementwise.c - ONNX elementwise operators: math, activations,
 * arithmetic and comparisons, Where, Clip, Cast, Identity, Dropout.
 *
 * Contract: each lower_* builds its op from kiln's elementwise ops through
 * ir/make.h (broadcasting, dtype checks and weak constants are make.h's);
 * operators kiln has no op for are written as the formulas the ONNX
 * specification gives (Elu, Selu, HardSwish, Softplus, Sinh, ...), chosen in
 * forms that stay finite where the textbook form overflows.  ints_* evaluate
 * Add/Sub/Mul/Div/Equal/Max/Min/Neg, Where and Cast on shape vectors
 * (import.h), where dimensions may be symbolic.
 */
#include "onnx/import.h"

#include <math.h>
#include <string.h>

/* ---- small builders on the current target ---- */

static int un(Ctx *c, Op op, int x) { return mk_unary(c->mk, op, x, c->loc); }
static int bin(Ctx *c, Op op, int a, int b) { return mk_binary(c->mk, op, a, b, c->loc); }
static int K(Ctx *c, double v, int like) {
    return like < 0 ? MK_ERROR : c_const(c, v, ir_node(c->mk->g, like)->dtype);
}
static int where3(Ctx *c, int cond, int a, int b) { return mk_where(c->mk, cond, a, b, c->loc); }

/* ---- one input ---- */

static bool is_op(const Ctx *c, const char *name) { return strcmp(c->node->op_type, name) == 0; }

/* log(1 + exp(x)), kept finite for large x: relu(x) + log(1 + exp(-|x|)). */
static int softplus(Ctx *c, int x) {
    int e = un(c, OP_EXP, un(c, OP_NEG, un(c, OP_ABS, x)));
    return bin(c, OP_ADD, un(c, OP_RELU, x), un(c, OP_LOG, bin(c, OP_ADD, K(c, 1, x), e)));
}

bool lower_unary(Ctx *c) {
    static const struct {
        const char *name;
        Op op;
    } direct[] = {{"Abs", OP_ABS},         {"Neg", OP_NEG},     {"Exp", OP_EXP},   {"Log", OP_LOG},
                  {"Sqrt", OP_SQRT},       {"Sin", OP_SIN},     {"Cos", OP_COS},   {"Tanh", OP_TANH},
                  {"Sigmoid", OP_SIGMOID}, {"Relu", OP_RELU},   {"Erf", OP_ERF},   {"Floor", OP_FLOOR},
                  {"Ceil", OP_CEIL},       {"Round", OP_ROUND}, {"Sign", OP_SIGN}, {"Not", OP_NOT}};
    int x = in_id(c, 0);
    if (x == MK_ERROR) return false;
    for (size_t i = 0; i < sizeof direct / sizeof direct[0]; i++)
        if (is_op(c, direct[i].name)) return set_out(c, 0, un(c, direct[i].op, x)), true;
    int r;
    if (is_op(c, "Reciprocal")) {
        r = mk_reciprocal(c->mk, x, c->loc);
    } else if (is_op(c, "Tan")) {
        r = bin(c, OP_DIV, un(c, OP_SIN, x), un(c, OP_COS, x));
    } else if (is_op(c, "Sinh") || is_op(c, "Cosh")) {
        int ep = un(c, OP_EXP, x), en = un(c, OP_EXP, un(c, OP_NEG, x));
        r = bin(c, OP_MUL, bin(c, is_op(c, "Sinh") ? OP_SUB : OP_ADD, ep, en), K(c, 0.5, x));
    } else if (is_op(c, "Asinh")) { /* sign(x) * log(|x| + sqrt(x*x + 1)): no cancellation for x < 0 */
        int a = un(c, OP_ABS, x);
        int s = un(c, OP_SQRT, bin(c, OP_ADD, bin(c, OP_MUL, x, x), K(c, 1, x)));
        r = bin(c, OP_MUL, un(c, OP_SIGN, x), un(c, OP_LOG, bin(c, OP_ADD, a, s)));
    } else if (is_op(c, "Acosh")) {
        int s = un(c, OP_SQRT, bin(c, OP_SUB, bin(c, OP_MUL, x, x), K(c, 1, x)));
        r = un(c, OP_LOG, bin(c, OP_ADD, x, s));
    } else if (is_op(c, "Atanh")) {
        int q = bin(c, OP_DIV, bin(c, OP_ADD, K(c, 1, x), x), bin(c, OP_SUB, K(c, 1, x), x));
        r = bin(c, OP_MUL, K(c, 0.5, x), un(c, OP_LOG, q));
    } else if (is_op(c, "Softplus")) {
        r = softplus(c, x);
    } else if (is_op(c, "Softsign")) {
        r = bin(c, OP_DIV, x, bin(c, OP_ADD, K(c, 1, x), un(c, OP_ABS, x)));
    } else if (is_op(c, "Mish")) {
        r = bin(c, OP_MUL, x, un(c, OP_TANH, softplus(c, x)));
    } else if (is_op(c, "IsNaN")) {
        r = mk_isnan(c->mk, x, c->loc);
    } else {
        return unsupported(c, "operator %s", c->node->op_type);
    }
    set_out(c, 0, r);
    return r != MK_ERROR;
}

bool lower_isinf(Ctx *c) {
    int64_t pos, neg;
    if (!attr_int(c, "detect_positive", 1, &pos) || !attr_int(c, "detect_negative", 1, &neg)) return false;
    int x = in_id(c, 0);
    if (x == MK_ERROR) return false;
    int r;
    if (pos && neg)
        r = bin(c, OP_EQ, un(c, OP_ABS, x), K(c, INFINITY, x));
    else if (pos)
        r = bin(c, OP_EQ, x, K(c, INFINITY, x));
    else if (neg)
        r = bin(c, OP_EQ, x, K(c, -INFINITY, x));
    else
        r = mk_full(c->mk, ir_node(c->mk->g, x)->shape, ir_node(c->mk->g, x)->rank, 0, KILN_BOOL, c_mkloc(c));
    set_out(c, 0, r);
    return r != MK_ERROR;
}

/* Activations with attributes: the formulas of the ONNX specification. */
bool lower_activation(Ctx *c) {
    double alpha, beta, gamma, lambd, bias;
    const char *approx = "none";
    bool ok = true;
    if (is_op(c, "Elu") || is_op(c, "Celu") || is_op(c, "ThresholdedRelu"))
        ok = attr_float(c, "alpha", 1.0, &alpha);
    else if (is_op(c, "LeakyRelu"))
        ok = attr_float(c, "alpha", 0.01, &alpha);
    else if (is_op(c, "HardSigmoid"))
        ok = attr_float(c, "alpha", 0.2, &alpha) && attr_float(c, "beta", 0.5, &beta);
    else if (is_op(c, "Selu"))
        ok = attr_float(c, "alpha", 1.67326319217681884765625, &alpha) &&
             attr_float(c, "gamma", 1.05070102214813232421875, &gamma);
    else if (is_op(c, "Shrink"))
        ok = attr_float(c, "bias", 0.0, &bias) && attr_float(c, "lambd", 0.5, &lambd);
    else if (is_op(c, "Gelu"))
        ok = attr_string(c, "approximate", "none", &approx);
    if (!ok) return false;
    int x = in_id(c, 0);
    if (x == MK_ERROR) return false;
    int zero = K(c, 0, x), r;
    if (is_op(c, "Elu")) {
        int neg = bin(c, OP_MUL, K(c, alpha, x), bin(c, OP_SUB, un(c, OP_EXP, x), K(c, 1, x)));
        r = where3(c, bin(c, OP_LT, x, zero), neg, x);
    } else if (is_op(c, "Selu")) {
        int neg = bin(c, OP_SUB, bin(c, OP_MUL, K(c, alpha, x), un(c, OP_EXP, x)), K(c, alpha, x));
        r = bin(c, OP_MUL, K(c, gamma, x), where3(c, bin(c, OP_LE, x, zero), neg, x));
    } else if (is_op(c, "Celu")) {
        int e = bin(c, OP_SUB, un(c, OP_EXP, bin(c, OP_DIV, x, K(c, alpha, x))), K(c, 1, x));
        r = bin(c, OP_ADD, bin(c, OP_MAXIMUM, zero, x),
                bin(c, OP_MINIMUM, zero, bin(c, OP_MUL, K(c, alpha, x), e)));
    } else if (is_op(c, "LeakyRelu")) {
        r = mk_leaky_relu(c->mk, x, alpha, c->loc);
    } else if (is_op(c, "ThresholdedRelu")) {
        r = where3(c, bin(c, OP_GT, x, K(c, alpha, x)), x, zero);
    } else if (is_op(c, "HardSigmoid") || is_op(c, "HardSwish")) {
        if (is_op(c, "HardSwish")) alpha = 1.0 / 6, beta = 0.5;
        r = mk_hardsigmoid(c->mk, x, alpha, beta, c->loc);
        if (is_op(c, "HardSwish")) r = bin(c, OP_MUL, x, r);
    } else if (is_op(c, "Shrink")) {
        int below = bin(c, OP_LT, x, K(c, -lambd, x)), above = bin(c, OP_GT, x, K(c, lambd, x));
        r = where3(c, below, bin(c, OP_ADD, x, K(c, bias, x)),
                   where3(c, above, bin(c, OP_SUB, x, K(c, bias, x)), zero));
    } else { /* Gelu */
        if (strcmp(approx, "none") != 0 && strcmp(approx, "tanh") != 0)
            return unsupported(c, "attribute approximate='%s' (none or tanh)", approx);
        r = mk_gelu(c->mk, x, strcmp(approx, "tanh") == 0, c->loc);
    }
    set_out(c, 0, r);
    return r != MK_ERROR;
}

/* PRelu: slope broadcast to x (unidirectionally, as the spec says). */
bool lower_prelu(Ctx *c) {
    int x = in_id(c, 0), slope = in_id(c, 1);
    if (x == MK_ERROR || slope == MK_ERROR) return false;
    int r = where3(c, bin(c, OP_LT, x, K(c, 0, x)), bin(c, OP_MUL, slope, x), x);
    set_out(c, 0, r);
    return r != MK_ERROR;
}

/* ---- two inputs ---- */

/* Integer division truncates toward zero in ONNX; computed in f64 (exact for
 * |values| < 2**53) and cast back, which truncates. */
static int int_div(Ctx *c, int a, int b) {
    KilnDType dt = ir_node(c->mk->g, a)->dtype;
    int q = bin(c, OP_DIV, mk_cast(c->mk, a, KILN_F64, c->loc), mk_cast(c->mk, b, KILN_F64, c->loc));
    return mk_cast(c->mk, q, dt, c->loc);
}

/* C's fmod (the result takes the dividend's sign): sign(a) * mod(|a|, |b|). */
static int c_fmod(Ctx *c, int a, int b) {
    return bin(c, OP_MUL, un(c, OP_SIGN, a), bin(c, OP_MOD, un(c, OP_ABS, a), un(c, OP_ABS, b)));
}

bool lower_binary(Ctx *c) {
    static const struct {
        const char *name;
        Op op;
    } ops[] = {{"Add", OP_ADD},           {"Sub", OP_SUB},       {"Mul", OP_MUL},
               {"And", OP_AND},           {"Or", OP_OR},         {"Xor", OP_NE},
               {"Equal", OP_EQ},          {"Greater", OP_GT},    {"Less", OP_LT},
               {"GreaterOrEqual", OP_GE}, {"LessOrEqual", OP_LE}};
    int64_t fmod_attr = 0;
    if (is_op(c, "Mod") && !attr_int(c, "fmod", 0, &fmod_attr)) return false;
    int a = in_id(c, 0), b = in_id(c, 1);
    if (a == MK_ERROR || b == MK_ERROR) return false;
    KilnDType da = ir_node(c->mk->g, a)->dtype, db = ir_node(c->mk->g, b)->dtype;
    int r = MK_ERROR;
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++)
        if (is_op(c, ops[i].name)) r = bin(c, ops[i].op, a, b);
    if (is_op(c, "Div")) {
        r = dtype_is_int(da) && dtype_is_int(db) ? int_div(c, a, b) : bin(c, OP_DIV, a, b);
    } else if (is_op(c, "Mod")) {
        if (!fmod_attr && dtype_is_float(da))
            return node_error(c, "fmod=0 is for integers; floats need fmod=1");
        r = fmod_attr ? c_fmod(c, a, b) : bin(c, OP_MOD, a, b);
    } else if (is_op(c, "Pow")) {
        /* the exponent may have another dtype (opset 12); the result has the base's */
        if (dtype_is_int(da) && db != da) {
            int p = bin(c, OP_POW, mk_cast(c->mk, a, KILN_F64, c->loc), mk_cast(c->mk, b, KILN_F64, c->loc));
            r = mk_cast(c->mk, p, da, c->loc);
        } else {
            r = bin(c, OP_POW, a, db == da ? b : mk_cast(c->mk, b, da, c->loc));
        }
    }
    set_out(c, 0, r);
    return r != MK_ERROR;
}

/* Max, Min, Sum, Mean of one or more inputs, broadcast together. */
bool lower_variadic(Ctx *c) {
    Op op = is_op(c, "Max") ? OP_MAXIMUM : is_op(c, "Min") ? OP_MINIMUM : OP_ADD;
    if (c->nin < 1) return node_error(c, "needs at least one input");
    int acc = in_id(c, 0);
    for (int i = 1; i < c->nin && acc != MK_ERROR; i++) acc = bin(c, op, acc, in_id(c, i));
    if (is_op(c, "Mean") && acc != MK_ERROR) acc = bin(c, OP_DIV, acc, K(c, c->nin, acc));
    set_out(c, 0, acc);
    return acc != MK_ERROR;
}

bool lower_where(Ctx *c) {
    int r = where3(c, in_id(c, 0), in_id(c, 1), in_id(c, 2));
    set_out(c, 0, r);
    return r != MK_ERROR;
}

/* Clip: min/max attributes before opset 11, optional inputs from 11. */
bool lower_clip(Ctx *c) {
    int x = in_id(c, 0), lo = MK_NONE, hi = MK_NONE;
    if (x == MK_ERROR) return false;
    if (c->opset < 11) {
        const OnnxAttr *amin = attr_find(c, "min"), *amax = attr_find(c, "max");
        if (amin) lo = K(c, amin->f, x);
        if (amax) hi = K(c, amax->f, x);
    } else {
        if (has_in(c, 1)) lo = in_id(c, 1);
        if (has_in(c, 2)) hi = in_id(c, 2);
    }
    int r = x;
    if (lo != MK_NONE) r = bin(c, OP_MAXIMUM, r, lo);
    if (hi != MK_NONE) r = bin(c, OP_MINIMUM, r, hi);
    if (r == x) r = mk_binary(c->mk, OP_ADD, x, K(c, 0, x), c->loc); /* a new value, as every output is */
    set_out(c, 0, r);
    return r != MK_ERROR;
}

/* Cast to `to` (an ONNX dtype); CastLike to the second input's dtype. */
static bool cast_target(Ctx *c, int32_t *odt) {
    if (is_op(c, "CastLike")) {
        if (!has_in(c, 1)) return node_error(c, "needs its second input");
        *odt = c->in[1]->odt;
    } else {
        int64_t to;
        if (!attr_int(c, "to", 0, &to)) return false;
        *odt = (int32_t)to;
    }
    attr_ignore(c, "saturate"); /* only for 8-bit floats, which kiln refuses anyway */
    return true;
}

bool lower_cast(Ctx *c) {
    int32_t odt;
    KilnDType dt;
    if (!cast_target(c, &odt) || !kiln_dtype_for(c, odt, "cast to", &dt)) return false;
    int x = in_id(c, 0);
    if (x == MK_ERROR) return false;
    int r = mk_cast(c->mk, x, dt, c->loc);
    set_out_odt(c, 0, r, odt);
    return r != MK_ERROR;
}

bool lower_identity(Ctx *c) {
    set_out_alias(c, 0, 0);
    return true;
}

/* Dropout in inference: the input unchanged, and a mask of trues. */
bool lower_dropout(Ctx *c) {
    attr_ignore(c, "seed");
    attr_ignore(c, "ratio");
    if (c->opset >= 12 && has_in(c, 2)) {
        double training;
        if (!in_scalar(c, 2, "training_mode", &training)) return false;
        if (training != 0) return unsupported(c, "training_mode=true (kiln runs models for inference)");
    }
    set_out_alias(c, 0, 0);
    if (c->nout > 1 && c->node->outputs[1][0]) {
        int x = in_id(c, 0);
        if (x == MK_ERROR) return false;
        const Node *n = ir_node(c->mk->g, x);
        set_out(c, 1, mk_full(c->mk, n->shape, n->rank, 1, KILN_BOOL, c_mkloc(c)));
    }
    return true;
}

/* ---- shape vectors ---- */

/* Element i of a shape vector of n elements broadcast to m (n is 1 or m). */
static SInt bcast_at(const SInt *v, int n, int i) { return v[n == 1 ? 0 : i]; }

static bool sint_eq(SInt a, SInt b) { return a.sym == b.sym && a.v == b.v; }

/* One arithmetic step on two known integers; false when the result cannot be
 * written as a dimension (e.g. a symbolic dimension minus one). */
static bool sint_arith(Ctx *c, SInt a, SInt b, SInt *r) {
    const char *op = c->node->op_type;
    if (!a.sym && !b.sym) {
        int64_t x = a.v, y = b.v;
        if (!strcmp(op, "Add"))
            r->v = x + y;
        else if (!strcmp(op, "Sub"))
            r->v = x - y;
        else if (!strcmp(op, "Mul"))
            r->v = x * y;
        else if (!strcmp(op, "Div")) {
            if (y == 0) return false;
            r->v = x / y;
        } else if (!strcmp(op, "Max"))
            r->v = x > y ? x : y;
        else if (!strcmp(op, "Min"))
            r->v = x < y ? x : y;
        else if (!strcmp(op, "Equal"))
            r->v = x == y;
        else
            return false;
        r->sym = false;
        return true;
    }
    if (!strcmp(op, "Equal")) { /* a symbolic dimension is positive; equal to itself */
        if (a.sym && b.sym && a.v == b.v) return *r = (SInt){false, 1}, true;
        if ((a.sym && !b.sym && b.v <= 0) || (b.sym && !a.sym && a.v <= 0))
            return *r = (SInt){false, 0}, true;
        return false;
    }
    if (!strcmp(op, "Max") || !strcmp(op, "Min")) {
        if (sint_eq(a, b)) return *r = a, true;
        SInt k = a.sym ? b : a, s = a.sym ? a : b; /* a constant <= 1 against a dimension >= 1 */
        if (!k.sym && k.v <= 1) return *r = !strcmp(op, "Max") ? s : k, true;
        return false;
    }
    Dim d;
    if (!strcmp(op, "Mul")) {
        if ((!a.sym && a.v < 0) || (!b.sym && b.v < 0)) return false;
        Dim f[2] = {a.v, b.v};
        d = mk_dim_product(c->mk, f, 2);
    } else if (!strcmp(op, "Add")) {
        if ((!a.sym && a.v < 0) || (!b.sym && b.v < 0)) return false;
        d = ir_dim_add(c->mk->g, a.v, b.v);
    } else if (!strcmp(op, "Div")) {
        if (!b.sym && b.v <= 0) return false;
        if (!mk_dim_quotient(c->mk, a.v, b.v, &d)) return false;
    } else if (!strcmp(op, "Sub")) {
        if (sint_eq(a, b)) return *r = (SInt){false, 0}, true;
        return false;
    } else {
        return false;
    }
    *r = (SInt){DIM_IS_SYM(d), d};
    return true;
}

/* Add, Sub, Mul, Div, Equal, Max, Min and Neg on shape vectors. */
bool ints_arith(Ctx *c) {
    int na, nb = 1;
    const SInt *a = in_ints_quiet(c, 0, &na), *b = NULL;
    if (!a) return false;
    if (is_op(c, "Neg")) return false; /* a negative dimension is not a dimension */
    if (c->nin != 2 || !(b = in_ints_quiet(c, 1, &nb))) return false;
    if (na != nb && na != 1 && nb != 1) return false;
    int n = na > nb ? na : nb;
    SInt *r = ARENA_ARRAY(c->arena, SInt, n + 1);
    for (int i = 0; i < n; i++)
        if (!sint_arith(c, bcast_at(a, na, i), bcast_at(b, nb, i), &r[i])) return false;
    int rank = in_rank(c, 0) > in_rank(c, 1) ? in_rank(c, 0) : in_rank(c, 1);
    set_out_ints(c, 0, r, n, rank, is_op(c, "Equal") ? ONNX_BOOL : c->in[0]->odt);
    return true;
}

/* Where(cond, a, b) with a known condition, on shape vectors. */
bool ints_where(Ctx *c) {
    int nc, na, nb;
    const SInt *cond = in_ints_quiet(c, 0, &nc);
    if (!cond) {
        const KilnTensor *t = in_konst(c, 0);
        if (!t || t->rank > 1) return false;
        nc = (int)kiln_tensor_numel(t);
        SInt *s = ARENA_ARRAY(c->arena, SInt, nc + 1);
        for (int i = 0; i < nc; i++) s[i].v = kiln_tensor_get(t, i) != 0;
        cond = s;
    }
    const SInt *a = in_ints_quiet(c, 1, &na), *b = in_ints_quiet(c, 2, &nb);
    if (!a || !b) return false;
    int n = nc > na ? nc : na;
    n = n > nb ? n : nb;
    if ((nc != n && nc != 1) || (na != n && na != 1) || (nb != n && nb != 1)) return false;
    SInt *r = ARENA_ARRAY(c->arena, SInt, n + 1);
    for (int i = 0; i < n; i++) {
        SInt k = bcast_at(cond, nc, i);
        if (k.sym) return false;
        r[i] = k.v ? bcast_at(a, na, i) : bcast_at(b, nb, i);
    }
    set_out_ints(c, 0, r, n, in_rank(c, 1) > in_rank(c, 2) ? in_rank(c, 1) : in_rank(c, 2), c->in[1]->odt);
    return true;
}

/* Cast between integer dtypes keeps a shape vector. */
bool ints_cast(Ctx *c) {
    int32_t odt;
    int n;
    if (!cast_target(c, &odt) || (odt != ONNX_INT64 && odt != ONNX_INT32)) return false;
    const SInt *s = in_ints_quiet(c, 0, &n);
    if (!s) return false;
    set_out_ints(c, 0, s, n, in_rank(c, 0), odt);
    return true;
}

bool ints_identity(Ctx *c) {
    set_out_alias(c, 0, 0);
    return true;
}
