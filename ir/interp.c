/* interp.c - the reference interpreter, the oracle for every backend.
 *
 * Contract: takes a concrete IRGraph (every Dim >= 0) and host inputs in the
 * params' dtypes; returns the results as freshly allocated host tensors.
 *
 * Every node's value is an array of ir_numel(node) Scalars in C order:
 * integers and bools exactly as int64 (ops wrap to the dtype's width, as
 * NumPy's do), floats as doubles rounded to the node's dtype right after
 * each op, so a value always holds exactly what its dtype can represent.
 * Composites (softmax, layernorm, matmul, conv2d, pools) compute in double
 * (or exact int64) end to end and round once.  Plain loops throughout: obvious correctness over speed.  A
 * value is freed as soon as its last user has run, so big graphs fit.
 */
#include "ir/ir.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- rounding */

/* Rounds v to a binary floating-point format with `prec` significant bits,
 * smallest normal exponent `emin` and largest finite value `maxf`, to nearest
 * even, straight from double: going through float first could round twice. */
static double round_binary(double v, int prec, int emin, double maxf) {
    if (v == 0 || isnan(v) || isinf(v)) return v;
    double a = fabs(v);
    int e;
    frexp(a, &e); /* a = m * 2^e with m in [0.5, 1): the leading bit is 2^(e-1) */
    int lead = e - 1 < emin ? emin : e - 1; /* below emin: subnormal spacing */
    double ulp = ldexp(1.0, lead - (prec - 1));
    double r = nearbyint(a / ulp) * ulp; /* both steps exact; nearbyint ties to even */
    if (r > maxf) r = INFINITY;          /* at or past the midpoint above maxf */
    return copysign(r, v);
}

/* double -> int64: truncation toward zero, NaN -> 0, saturating at the ends. */
static int64_t to_i64(double v) {
    if (isnan(v)) return 0;
    if (v >= 9223372036854775808.0) return INT64_MAX;
    if (v <= -9223372036854775808.0) return INT64_MIN;
    return (int64_t)v;
}

double ref_round_to_dtype(double v, KilnDType dt) {
    switch (dt) {
    case KILN_F64: return v;
    case KILN_F32: return (double)(float)v;
    case KILN_F16: return round_binary(v, 11, -14, 65504.0);
    case KILN_BF16: return round_binary(v, 8, -126, 0x1.fep127);
    case KILN_I32:
        if (isnan(v)) return 0;
        if (v >= 2147483647.0) return 2147483647.0;
        if (v <= -2147483648.0) return -2147483648.0;
        return trunc(v);
    case KILN_I64: return (double)to_i64(v); /* the nearest double of the int64 */
    case KILN_BOOL: return v != 0;
    case KILN_NUM_DTYPES: break;
    }
    return v;
}

/* ------------------------------------------------- integer arithmetic */

/* Integer ops run in int64 with two's-complement wrapping (done in uint64 to
 * stay clear of signed overflow), then wrap to the dtype's width. */
static int64_t u2s(uint64_t u) {
    return u <= (uint64_t)INT64_MAX ? (int64_t)u : -(int64_t)(~u) - 1;
}
static int64_t iadd(int64_t a, int64_t b) { return u2s((uint64_t)a + (uint64_t)b); }
static int64_t isub(int64_t a, int64_t b) { return u2s((uint64_t)a - (uint64_t)b); }
static int64_t imul(int64_t a, int64_t b) { return u2s((uint64_t)a * (uint64_t)b); }

static int64_t wrap_to_dtype(int64_t x, KilnDType dt) {
    if (dt == KILN_I32) {
        uint32_t u = (uint32_t)(uint64_t)x;
        return u <= (uint32_t)INT32_MAX ? (int64_t)u : (int64_t)u - 4294967296;
    }
    if (dt == KILN_BOOL) return x != 0;
    return x;
}

/* ------------------------------------------------------ conversions */

Scalar scalar_convert(Scalar v, KilnDType from, KilnDType to) {
    Scalar r;
    if (dtype_is_intlike(from)) {
        if (dtype_is_intlike(to))
            r.i = wrap_to_dtype(v.i, to);
        else if (to == KILN_F64)
            r.f = (double)v.i; /* one rounding, straight from the int64 */
        else
            r.f = ref_round_to_dtype((double)(float)v.i, to); /* f16, bf16 through f32, as ml_dtypes does */
        return r;
    }
    if (dtype_is_intlike(to)) {
        if (to == KILN_BOOL)
            r.i = v.f != 0; /* NaN is true, as bool(nan) */
        else if (to == KILN_I32)
            r.i = (int64_t)ref_round_to_dtype(v.f, KILN_I32);
        else
            r.i = to_i64(v.f);
        return r;
    }
    r.f = ref_round_to_dtype(v.f, to);
    return r;
}

Scalar scalar_from_double(double v, KilnDType dt) { return scalar_convert((Scalar){.f = v}, KILN_F64, dt); }
Scalar scalar_from_int(int64_t v, KilnDType dt) { return scalar_convert((Scalar){.i = v}, KILN_I64, dt); }

double scalar_to_double(Scalar v, KilnDType dt) { return dtype_is_intlike(dt) ? (double)v.i : v.f; }

bool scalar_same(Scalar a, Scalar b, KilnDType dt) {
    if (dtype_is_intlike(dt)) return a.i == b.i;
    if (isnan(a.f) || isnan(b.f)) return isnan(a.f) && isnan(b.f);
    return a.f == b.f && signbit(a.f) == signbit(b.f);
}

/* np.remainder for integers: the result takes the divisor's sign; x % 0 = 0. */
static int64_t imod(int64_t a, int64_t b) {
    if (b == 0 || b == -1) return 0; /* -1 also dodges INT64_MIN % -1 */
    int64_t r = a % b;
    if (r != 0 && ((r < 0) != (b < 0))) r += b;
    return r;
}

/* Exact integer power by repeated squaring; negative exponents give 0
 * except for bases 1 and -1. */
static int64_t ipow(int64_t base, int64_t ex) {
    if (ex < 0) {
        if (base == 1) return 1;
        if (base == -1) return (ex & 1) ? -1 : 1;
        return 0;
    }
    int64_t r = 1;
    while (ex > 0) {
        if (ex & 1) r = imul(r, base);
        base = imul(base, base);
        ex >>= 1;
    }
    return r;
}

/* --------------------------------------------------- scalar semantics */

static double fmod_numpy(double a, double b) {
    double r = fmod(a, b);
    if (b == 0) return r; /* NaN */
    if (r != 0) {
        if ((b < 0) != (r < 0)) r += b;
    } else {
        r = copysign(0.0, b);
    }
    return r;
}

static double unary_float(const Node *n, double x) {
    switch (n->op) {
    case OP_ABS: return fabs(x);
    case OP_NEG: return -x;
    case OP_EXP: return exp(x);
    case OP_LOG: return log(x);
    case OP_SQRT: return sqrt(x);
    case OP_RSQRT: return 1.0 / sqrt(x);
    case OP_SIN: return sin(x);
    case OP_COS: return cos(x);
    case OP_TANH: return tanh(x);
    case OP_SIGMOID: return 1.0 / (1.0 + exp(-x));
    case OP_RELU: return isnan(x) ? x : x > 0 ? x : 0.0;
    /* gelu and silu in forms without cancellation or inf/inf far below zero
     * (where 1 + tanh, 1 + erf and 1 + exp(-x) lose every bit), and their
     * limit -0 at -inf, as every device computes them */
    case OP_GELU:
        if (x == -INFINITY) return -0.0;
        if (n->flag) {
            const double k = sqrt(2.0 / M_PI);
            return x / (1.0 + exp(-2.0 * k * (x + 0.044715 * x * x * x)));
        }
        return 0.5 * x * erfc(-x / M_SQRT2);
    case OP_SILU:
        if (x == -INFINITY) return -0.0;
        return x < 0 ? x * exp(x) / (1.0 + exp(x)) : x / (1.0 + exp(-x));
    case OP_ERF: return erf(x);
    case OP_FLOOR: return floor(x);
    case OP_CEIL: return ceil(x);
    case OP_ROUND: return nearbyint(x); /* half to even in the default mode */
    case OP_SIGN: return isnan(x) ? x : (double)((x > 0) - (x < 0));
    default: return NAN;
    }
}

/* Integer forms of the unary ops that accept ints; false for the others,
 * which then run in double. */
static bool unary_int(Op op, int64_t x, int64_t *out) {
    switch (op) {
    case OP_ABS: *out = x < 0 ? isub(0, x) : x; return true;
    case OP_NEG: *out = isub(0, x); return true;
    case OP_RELU: *out = x > 0 ? x : 0; return true;
    case OP_FLOOR:
    case OP_CEIL:
    case OP_ROUND: *out = x; return true;
    case OP_SIGN: *out = (x > 0) - (x < 0); return true;
    default: return false;
    }
}

static double binary_float(Op op, double a, double b) {
    switch (op) {
    case OP_ADD: return a + b;
    case OP_SUB: return a - b;
    case OP_MUL: return a * b;
    case OP_DIV: return a / b;
    case OP_MOD: return fmod_numpy(a, b);
    case OP_POW: return pow(a, b);
    case OP_MAXIMUM: return isnan(a) || isnan(b) ? NAN : a > b ? a : b;
    case OP_MINIMUM: return isnan(a) || isnan(b) ? NAN : a < b ? a : b;
    default: return NAN;
    }
}

static bool binary_int(Op op, int64_t a, int64_t b, int64_t *out) {
    switch (op) {
    case OP_ADD: *out = iadd(a, b); return true;
    case OP_SUB: *out = isub(a, b); return true;
    case OP_MUL: *out = imul(a, b); return true;
    case OP_MOD: *out = imod(a, b); return true;
    case OP_POW: *out = ipow(a, b); return true;
    case OP_MAXIMUM: *out = a > b ? a : b; return true;
    case OP_MINIMUM: *out = a < b ? a : b; return true;
    default: return false; /* div: the language refuses it on ints */
    }
}

static bool compare_float(Op op, double a, double b) {
    switch (op) {
    case OP_EQ: return a == b;
    case OP_NE: return a != b;
    case OP_LT: return a < b;
    case OP_LE: return a <= b;
    case OP_GT: return a > b;
    case OP_GE: return a >= b;
    default: return false;
    }
}

static bool compare_int(Op op, int64_t a, int64_t b) {
    switch (op) {
    case OP_EQ: return a == b;
    case OP_NE: return a != b;
    case OP_LT: return a < b;
    case OP_LE: return a <= b;
    case OP_GT: return a > b;
    case OP_GE: return a >= b;
    default: return false;
    }
}

Scalar ref_eval_scalar(Op op, KilnDType dt, KilnDType in_dt, bool flag, const Scalar *x) {
    Node n = {.op = op, .dtype = dt, .flag = flag};
    bool int_in = dtype_is_intlike(in_dt);
    int64_t r;
    switch (op_info[op].kind) {
    case OK_UNARY:
        if (int_in && unary_int(op, x[0].i, &r)) return scalar_from_int(wrap_to_dtype(r, in_dt), dt);
        return scalar_from_double(unary_float(&n, scalar_to_double(x[0], in_dt)), dt);
    case OK_BINARY:
        if (int_in && binary_int(op, x[0].i, x[1].i, &r)) return scalar_from_int(wrap_to_dtype(r, in_dt), dt);
        return scalar_from_double(
            binary_float(op, scalar_to_double(x[0], in_dt), scalar_to_double(x[1], in_dt)), dt);
    case OK_COMPARE:
        return scalar_from_int(int_in ? compare_int(op, x[0].i, x[1].i) : compare_float(op, x[0].f, x[1].f),
                               dt);
    case OK_LOGIC: { /* bool operands */
        bool a = int_in ? x[0].i != 0 : x[0].f != 0;
        if (op == OP_NOT) return scalar_from_int(!a, dt);
        bool b = int_in ? x[1].i != 0 : x[1].f != 0;
        return scalar_from_int(op == OP_AND ? a && b : a || b, dt);
    }
    case OK_WHERE: return scalar_convert(x[0].i != 0 ? x[1] : x[2], in_dt, dt);
    case OK_CAST: return scalar_convert(x[0], in_dt, dt);
    default: return scalar_from_double(NAN, dt);
    }
}

/* The dtype of an elementwise node's data operands (ref_eval_scalar's
 * in_dt): where's second input, else the first. */
static KilnDType operand_dtype(const IRGraph *g, const Node *n) {
    return ir_node(g, n->in[n->op == OP_WHERE && n->nin > 1 ? 1 : 0])->dtype;
}

/* -------------------------------------------------------- index helpers */

/* Contiguous C-order strides of a shape. */
static void contiguous_strides(int rank, const Dim *shape, int64_t *strides) {
    int64_t s = 1;
    for (int k = rank - 1; k >= 0; k--) {
        strides[k] = s;
        s *= shape[k];
    }
}

/* Strides that read a contiguous input of shape in_shape (elements `unit`
 * apart) at each index of an out_rank-dimensional result under NumPy
 * broadcasting: inputs align to the right, missing and size-1 axes repeat. */
static void broadcast_strides(int in_rank, const Dim *in_shape, int64_t unit, int out_rank,
                              int64_t *strides) {
    int64_t s = unit;
    for (int k = out_rank - 1; k >= 0; k--) {
        int j = k - (out_rank - in_rank);
        if (j < 0) {
            strides[k] = 0;
            continue;
        }
        strides[k] = in_shape[j] == 1 ? 0 : s;
        s *= in_shape[j];
    }
}

/* Steps the C-order multi-index idx over shape by one element, moving each
 * of the nops offsets off[j] along its strides (strides[j*rank + axis]). */
static void step_index(int rank, const Dim *shape, int64_t *idx, int nops,
                       const int64_t *strides, int64_t *off) {
    for (int k = rank - 1; k >= 0; k--) {
        idx[k]++;
        for (int j = 0; j < nops; j++) off[j] += strides[j * rank + k];
        if (idx[k] < shape[k]) return;
        for (int j = 0; j < nops; j++) off[j] -= strides[j * rank + k] * shape[k];
        idx[k] = 0;
    }
}

static int64_t shape_numel(int rank, const Dim *shape) {
    int64_t n = 1;
    for (int k = 0; k < rank; k++) n *= shape[k];
    return n;
}

/* Splits a shape around one axis: outer * len * inner elements. */
static void split_axis(const Node *n, int axis, int64_t *outer, int64_t *len, int64_t *inner) {
    *outer = shape_numel(axis, n->shape);
    *len = n->shape[axis];
    *inner = shape_numel(n->rank - axis - 1, n->shape + axis + 1);
}

/* Rank-sized scratch: host allocations through the choke point (+1 so that
 * rank 0 still gets a pointer). */
static int64_t *scratch_i64(int count) { return xcalloc((size_t)count + 1, sizeof(int64_t)); }

/* ---------------------------------------------------------- interpreter */

typedef struct {
    const IRGraph *g;
    const KilnTensor *inputs;
    Scalar **vals;   /* per node; NULL before it runs and after its last use */
    int *param_of;   /* node id -> index in g->params, or -1 */
    char *err;
    size_t errlen;
} Interp;

/* Leaves "reference interpreter: <message>" in err; returns false. */
static bool fail(Interp *it, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool fail(Interp *it, const char *fmt, ...) {
    if (!it->err || !it->errlen) return false;
    int n = snprintf(it->err, it->errlen, "reference interpreter: ");
    if (n < 0 || (size_t)n >= it->errlen) return false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(it->err + n, it->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return false;
}

/* A tensor-sized buffer of `count` elements of `size` bytes; NULL (with a
 * message naming node `id`) when the host is out of memory. */
static void *alloc_buffer(Interp *it, int id, int64_t count, size_t size) {
    const Node *n = ir_node(it->g, id);
    if (count < 0 || (uint64_t)count > SIZE_MAX / size) {
        fail(it, "node %%%d (%s) is too large (%lld elements)", id, op_info[n->op].name,
             (long long)count);
        return NULL;
    }
    void *p = malloc(count ? (size_t)count * size : 1);
    if (!p)
        fail(it, "out of memory for node %%%d (%s, %lld elements)", id, op_info[n->op].name,
             (long long)count);
    return p;
}

/* Allocates node id's value array. */
static Scalar *new_value(Interp *it, int id) {
    const Node *n = ir_node(it->g, id);
    Scalar *v = alloc_buffer(it, id, ir_numel(n), sizeof(Scalar));
    it->vals[id] = v;
    return v;
}

static const Scalar *input_value(const Interp *it, const Node *n, int i) { return it->vals[n->in[i]]; }
static const Node *input_node(const Interp *it, const Node *n, int i) {
    return ir_node(it->g, n->in[i]);
}

/* An axis attribute, normalised (the builder already does, this is a guard). */
static int axis_attr(const Node *n, int64_t a) { return (int)(a < 0 ? a + n->rank : a); }

/* The axis of a node whose first int is one (concat, softmax...), counted
 * from the end when negative; false, with the interpreter's error, if it has
 * none or it is out of range. */
static bool node_axis(Interp *it, const Node *n, int id, int *axis) {
    if (n->nints < 1) return fail(it, "node %%%d: %s needs an axis", id, op_info[n->op].name);
    *axis = axis_attr(n, n->ints[0]);
    if (*axis < 0 || *axis >= n->rank)
        return fail(it, "node %%%d: %s axis out of range", id, op_info[n->op].name);
    return true;
}

/* The values of a floating-point node as doubles (the composites that only
 * take floats index them so). */
_Static_assert(sizeof(Scalar) == sizeof(double), "a Scalar array is a double array");
static const double *as_doubles(const Scalar *x) { return x ? &x->f : NULL; }
static double *as_doubles_out(Scalar *x) { return x ? &x->f : NULL; }

/* ---- sources and creation */

static bool eval_param(Interp *it, int id) {
    const Node *n = ir_node(it->g, id);
    int p = it->param_of[id];
    if (p < 0) return fail(it, "node %%%d is a param not in the graph's list", id);
    const KilnTensor *t = &it->inputs[p];
    Scalar *out = new_value(it, id);
    if (!out) return false;
    bool intlike = dtype_is_intlike(t->dtype);
    for (int64_t i = 0, total = ir_numel(n); i < total; i++)
        out[i] = intlike ? scalar_from_int(kiln_tensor_get_i64(t, i), n->dtype)
                         : scalar_from_double(kiln_tensor_get(t, i), n->dtype);
    return true;
}

static bool eval_fill(Interp *it, int id) {
    const Node *n = ir_node(it->g, id);
    Scalar *out = new_value(it, id);
    if (!out) return false;
    Scalar fill = ir_node_scalar(n);
    for (int64_t i = 0, total = ir_numel(n); i < total; i++)
        out[i] = n->op == OP_IOTA ? scalar_from_int(i, n->dtype) : fill;
    return true;
}

/* ---- elementwise */

static bool eval_elementwise(Interp *it, int id) {
    const Node *n = ir_node(it->g, id);
    int rank = n->rank, nin = n->nin;
    if (nin < 1 || nin > 3) return fail(it, "node %%%d has %d inputs", id, nin);
    for (int j = 0; j < nin; j++)
        if (input_node(it, n, j)->rank > rank)
            return fail(it, "node %%%d: input %d outranks the result", id, j);
    Scalar *out = new_value(it, id);
    if (!out) return false;
    KilnDType in_dt = operand_dtype(it->g, n);
    int64_t *strides = scratch_i64(nin * rank);
    int64_t *idx = scratch_i64(rank);
    int64_t off[3] = {0, 0, 0};
    for (int j = 0; j < nin; j++) {
        const Node *in = input_node(it, n, j);
        broadcast_strides(in->rank, in->shape, 1, rank, strides + j * rank);
    }
    Scalar x[3];
    for (int64_t i = 0, total = ir_numel(n); i < total; i++) {
        for (int j = 0; j < nin; j++) x[j] = input_value(it, n, j)[off[j]];
        out[i] = ref_eval_scalar(n->op, n->dtype, in_dt, n->flag, x);
        step_index(rank, n->shape, idx, nin, strides, off);
    }
    free(strides);
    free(idx);
    return true;
}

/* ---- reductions */

/* Which input axes a reduction folds: those ints lists.  argmax/argmin with
 * none listed work on the flattened tensor (all axes); the other reductions
 * list every axis they fold, so none listed (axis=[]) folds nothing. */
static bool *reduced_axes(const Node *n, const Node *in) {
    bool *red = xcalloc((size_t)in->rank + 1, sizeof(bool));
    for (int k = 0; k < n->nints; k++) {
        int64_t a = n->ints[k] < 0 ? n->ints[k] + in->rank : n->ints[k];
        if (a >= 0 && a < in->rank) red[a] = true;
    }
    if (n->nints == 0 && (n->op == OP_ARGMAX || n->op == OP_ARGMIN))
        for (int k = 0; k < in->rank; k++) red[k] = true;
    return red;
}

/* Whether v should replace best in a max/min (NaN propagates: the first
 * NaN wins and stays, as NumPy's). */
static bool better(Op op, Scalar v, Scalar best, bool intlike) {
    bool is_max = op == OP_MAX || op == OP_ARGMAX;
    if (intlike) return is_max ? v.i > best.i : v.i < best.i;
    if (isnan(best.f)) return false;
    return isnan(v.f) || (is_max ? v.f > best.f : v.f < best.f);
}

static bool eval_reduce(Interp *it, int id) {
    const Node *n = ir_node(it->g, id);
    const Node *in = input_node(it, n, 0);
    const Scalar *x = input_value(it, n, 0);
    int rank = in->rank;
    bool *red = reduced_axes(n, in);

    /* Each input axis's stride in the result: 0 for a folded axis; a kept
     * axis maps to the same axis (keepdims) or to the next remaining one. */
    bool keepdims = n->rank == in->rank;
    int64_t *ostrides_res = scratch_i64(n->rank);
    contiguous_strides(n->rank, n->shape, ostrides_res);
    int64_t *ostrides = scratch_i64(rank);
    for (int k = 0, j = 0; k < rank; k++) {
        if (red[k]) {
            ostrides[k] = 0;
            if (keepdims) j++;
        } else {
            ostrides[k] = j < n->rank ? ostrides_res[j] : 0;
            j++;
        }
    }
    int64_t count = 1; /* elements folded into each result */
    for (int k = 0; k < rank; k++)
        if (red[k]) count *= in->shape[k];
    int arg_axis = n->nints == 1 ? axis_attr(in, n->ints[0]) : -1; /* -1: flat index */

    int64_t total_out = ir_numel(n), total_in = ir_numel(in);
    bool is_arg = n->op == OP_ARGMAX || n->op == OP_ARGMIN;
    bool intlike = dtype_is_intlike(in->dtype);
    Scalar *out = new_value(it, id);
    Scalar *acc = NULL;  /* the running value: sum, product, max, min, or argmax's best */
    int64_t *pos = NULL; /* argmax/argmin: the best position, -1 before any */
    bool ok = out != NULL;
    if (ok) ok = (acc = alloc_buffer(it, id, total_out, sizeof(Scalar))) != NULL;
    if (ok && is_arg) ok = (pos = alloc_buffer(it, id, total_out, sizeof(int64_t))) != NULL;
    if (!ok) goto done;

    for (int64_t o = 0; o < total_out; o++) {
        if (pos) pos[o] = -1;
        switch (n->op) {
        case OP_MAX: acc[o] = intlike ? (Scalar){.i = INT64_MIN} : (Scalar){.f = -INFINITY}; break;
        case OP_MIN: acc[o] = intlike ? (Scalar){.i = INT64_MAX} : (Scalar){.f = INFINITY}; break;
        case OP_PROD: acc[o] = intlike ? (Scalar){.i = 1} : (Scalar){.f = 1}; break;
        default: acc[o] = intlike ? (Scalar){.i = 0} : (Scalar){.f = 0}; break;
        }
    }

    int64_t *idx = scratch_i64(rank);
    int64_t off = 0;
    for (int64_t i = 0; i < total_in; i++) {
        Scalar v = x[i];
        Scalar *a = &acc[off];
        switch (n->op) {
        case OP_SUM:
        case OP_MEAN:
            if (intlike)
                a->i = iadd(a->i, v.i);
            else
                a->f += v.f;
            break;
        case OP_PROD:
            if (intlike)
                a->i = imul(a->i, v.i);
            else
                a->f *= v.f;
            break;
        case OP_MAX:
        case OP_MIN:
            if (better(n->op, v, *a, intlike)) *a = v;
            break;
        case OP_ARGMAX:
        case OP_ARGMIN: /* visited in increasing position: strict comparison keeps the first of equals */
            if (pos[off] < 0 || better(n->op, v, *a, intlike)) {
                *a = v;
                pos[off] = arg_axis >= 0 ? idx[arg_axis] : i;
            }
            break;
        default: break;
        }
        step_index(rank, in->shape, idx, 1, ostrides, &off);
    }
    free(idx);

    for (int64_t o = 0; o < total_out; o++) {
        if (is_arg)
            out[o] = scalar_from_int(pos[o] < 0 ? 0 : pos[o], n->dtype);
        else if (intlike)
            out[o] = scalar_from_int(acc[o].i, n->dtype);
        else if (n->op == OP_MEAN)
            out[o] = scalar_from_double(acc[o].f / (double)count, n->dtype);
        else
            out[o] = scalar_from_double(acc[o].f, n->dtype);
    }
done:
    free(acc);
    free(pos);
    free(red);
    free(ostrides);
    free(ostrides_res);
    return ok;
}

/* ---- data movement: every one copies elements of one dtype */

/* out[i] = in[base + idx . strides] over the node's shape: transpose,
 * broadcast and slice are all such strided views of their input. */
static bool gather_view(Interp *it, int id, int64_t base, const int64_t *strides) {
    const Node *n = ir_node(it->g, id);
    const Scalar *x = input_value(it, n, 0);
    Scalar *out = new_value(it, id);
    if (!out) return false;
    int64_t *idx = scratch_i64(n->rank);
    int64_t off = base;
    for (int64_t i = 0, total = ir_numel(n); i < total; i++) {
        out[i] = x[off];
        step_index(n->rank, n->shape, idx, 1, strides, &off);
    }
    free(idx);
    return true;
}

static bool eval_view(Interp *it, int id) {
    const Node *n = ir_node(it->g, id);
    const Node *in = input_node(it, n, 0);
    int64_t *in_strides = scratch_i64(in->rank);
    int64_t *strides = scratch_i64(n->rank);
    contiguous_strides(in->rank, in->shape, in_strides);
    int64_t base = 0;
    bool ok = true;
    switch (n->op) {
    case OP_TRANSPOSE: /* output axis k is input axis perm[k] */
        if (n->nints != n->rank || in->rank != n->rank) {
            ok = fail(it, "node %%%d: transpose needs %d axes", id, n->rank);
            break;
        }
        for (int k = 0; ok && k < n->rank; k++) {
            if (n->ints[k] < 0 || n->ints[k] >= in->rank)
                ok = fail(it, "node %%%d: transpose axis %lld out of range", id,
                          (long long)n->ints[k]);
            else strides[k] = in_strides[n->ints[k]];
        }
        break;
    case OP_BROADCAST:
        if (in->rank > n->rank) {
            ok = fail(it, "node %%%d: broadcast to a lower rank", id);
            break;
        }
        broadcast_strides(in->rank, in->shape, 1, n->rank, strides);
        break;
    case OP_SLICE: /* ints = start, step per axis */
        if (n->nints != 2 * in->rank || n->rank != in->rank) {
            ok = fail(it, "node %%%d: slice needs a start and step per axis", id);
            break;
        }
        for (int k = 0; k < n->rank; k++) {
            base += n->ints[2 * k] * in_strides[k];
            strides[k] = n->ints[2 * k + 1] * in_strides[k];
        }
        break;
    default: ok = fail(it, "node %%%d: not a view", id); break;
    }
    if (ok) ok = gather_view(it, id, base, strides);
    free(in_strides);
    free(strides);
    return ok;
}

static bool eval_reshape(Interp *it, int id) {
    const Node *n = ir_node(it->g, id);
    const Scalar *x = input_value(it, n, 0);
    if (ir_numel(input_node(it, n, 0)) != ir_numel(n))
        return fail(it, "node %%%d: reshape changes the size", id);
    Scalar *out = new_value(it, id);
    if (!out) return false;
    for (int64_t i = 0, total = ir_numel(n); i < total; i++) out[i] = x[i];
    return true;
}

/* Copies input `j` of n into out, starting at out offset base, the input's
 * axes walking the result's axes (pad and concat). */
static void scatter_input(Interp *it, const Node *n, int j, Scalar *out, int64_t base,
                          const int64_t *out_strides) {
    const Node *in = input_node(it, n, j);
    const Scalar *x = input_value(it, n, j);
    int64_t *idx = scratch_i64(in->rank);
    int64_t off = base;
    for (int64_t i = 0, total = ir_numel(in); i < total; i++) {
        out[off] = x[i];
        step_index(in->rank, in->shape, idx, 1, out_strides, &off);
    }
    free(idx);
}

static bool eval_pad(Interp *it, int id) {
    const Node *n = ir_node(it->g, id);
    if (n->nints != 2 * n->rank || input_node(it, n, 0)->rank != n->rank)
        return fail(it, "node %%%d: pad needs lo, hi per axis", id);
    Scalar *out = new_value(it, id);
    if (!out) return false;
    Scalar fill = ir_node_scalar(n);
    for (int64_t i = 0, total = ir_numel(n); i < total; i++) out[i] = fill;
    int64_t *strides = scratch_i64(n->rank);
    contiguous_strides(n->rank, n->shape, strides);
    int64_t base = 0;
    for (int k = 0; k < n->rank; k++) base += n->ints[2 * k] * strides[k];
    scatter_input(it, n, 0, out, base, strides);
    free(strides);
    return true;
}

static bool eval_concat(Interp *it, int id) {
    const Node *n = ir_node(it->g, id);
    int axis;
    if (!node_axis(it, n, id, &axis)) return false;
    Scalar *out = new_value(it, id);
    if (!out) return false;
    int64_t *strides = scratch_i64(n->rank);
    contiguous_strides(n->rank, n->shape, strides);
    int64_t at = 0; /* where the next input starts along the axis */
    for (int j = 0; j < n->nin; j++) {
        scatter_input(it, n, j, out, at * strides[axis], strides);
        at += input_node(it, n, j)->shape[axis];
    }
    free(strides);
    return true;
}

/* ---- neural-network composites */

static bool eval_matmul(Interp *it, int id) {
    const Node *n = ir_node(it->g, id);
    const Node *an = input_node(it, n, 0), *bn = input_node(it, n, 1);
    if (an->rank < 2 || bn->rank < 2 || n->rank < 2 || an->rank > n->rank || bn->rank > n->rank)
        return fail(it, "node %%%d: matmul operands need rank >= 2", id);
    const Scalar *a = input_value(it, n, 0), *b = input_value(it, n, 1);
    int64_t M = an->shape[an->rank - 2], K = an->shape[an->rank - 1];
    int64_t N = bn->shape[bn->rank - 1];
    Scalar *out = new_value(it, id);
    if (!out) return false;
    bool intlike = dtype_is_intlike(an->dtype);

    /* batch axes: the result's leading rank-2 axes, operands broadcast */
    int brank = n->rank - 2;
    int64_t *strides = scratch_i64(2 * brank);
    broadcast_strides(an->rank - 2, an->shape, M * K, brank, strides);
    broadcast_strides(bn->rank - 2, bn->shape, K * N, brank, strides + brank);
    int64_t *idx = scratch_i64(brank);
    int64_t off[2] = {0, 0};
    int64_t nbatch = shape_numel(brank, n->shape);
    Scalar *o = out;
    for (int64_t bi = 0; bi < nbatch; bi++) {
        const Scalar *ab = a + off[0], *bb = b + off[1];
        for (int64_t i = 0; i < M; i++) {
            for (int64_t j = 0; j < N; j++) {
                double acc = 0;
                int64_t iacc = 0; /* wrapping: the same as NumPy's sum in the dtype's width */
                for (int64_t k = 0; k < K; k++) {
                    if (intlike)
                        iacc = iadd(iacc, imul(ab[i * K + k].i, bb[k * N + j].i));
                    else
                        acc += ab[i * K + k].f * bb[k * N + j].f;
                }
                *o++ = intlike ? scalar_from_int(iacc, n->dtype) : scalar_from_double(acc, n->dtype);
            }
        }
        step_index(brank, n->shape, idx, 2, strides, off);
    }
    free(strides);
    free(idx);
    return true;
}

/* softmax, log_softmax, layernorm, rmsnorm: each line along the axis on its
 * own, in double, rounded once at the end. */
static bool eval_normalize(Interp *it, int id) {
    const Node *n = ir_node(it->g, id);
    int axis;
    if (!node_axis(it, n, id, &axis)) return false;
    const double *x = as_doubles(input_value(it, n, 0));
    const double *gamma = n->nin > 1 ? as_doubles(input_value(it, n, 1)) : NULL;
    const double *beta = n->nin > 2 ? as_doubles(input_value(it, n, 2)) : NULL;
    double *out = as_doubles_out(new_value(it, id));
    if (!out) return false;
    int64_t outer, len, inner;
    split_axis(n, axis, &outer, &len, &inner);
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t j = 0; j < inner; j++) {
            const double *xl = x + o * len * inner + j; /* the line: xl[k * inner] */
            double *ol = out + o * len * inner + j;
            switch (n->op) {
            case OP_SOFTMAX:
            case OP_LOG_SOFTMAX: {
                double mx = -INFINITY;
                for (int64_t k = 0; k < len; k++)
                    if (xl[k * inner] > mx || isnan(xl[k * inner])) mx = xl[k * inner];
                double sum = 0;
                for (int64_t k = 0; k < len; k++) sum += exp(xl[k * inner] - mx);
                for (int64_t k = 0; k < len; k++) {
                    double d = xl[k * inner] - mx;
                    double v = n->op == OP_SOFTMAX ? exp(d) / sum : d - log(sum);
                    ol[k * inner] = ref_round_to_dtype(v, n->dtype);
                }
                break;
            }
            case OP_LAYERNORM: {
                double mean = 0, var = 0;
                for (int64_t k = 0; k < len; k++) mean += xl[k * inner];
                mean /= (double)len;
                for (int64_t k = 0; k < len; k++) {
                    double d = xl[k * inner] - mean;
                    var += d * d;
                }
                var /= (double)len;
                double scale = 1.0 / sqrt(var + n->value);
                for (int64_t k = 0; k < len; k++) {
                    double v = (xl[k * inner] - mean) * scale;
                    if (gamma) v *= gamma[k];
                    if (beta) v += beta[k];
                    ol[k * inner] = ref_round_to_dtype(v, n->dtype);
                }
                break;
            }
            case OP_RMSNORM: {
                double ms = 0;
                for (int64_t k = 0; k < len; k++) ms += xl[k * inner] * xl[k * inner];
                ms /= (double)len;
                double scale = 1.0 / sqrt(ms + n->value);
                for (int64_t k = 0; k < len; k++) {
                    double v = xl[k * inner] * scale;
                    if (gamma) v *= gamma[k];
                    ol[k * inner] = ref_round_to_dtype(v, n->dtype);
                }
                break;
            }
            default: break;
            }
        }
    }
    return true;
}

/* x [N, C, H, W], w [O, C/groups, KH, KW], optional b [O]; zero padding. */
static bool eval_conv2d(Interp *it, int id) {
    const Node *n = ir_node(it->g, id);
    const Node *xn = input_node(it, n, 0), *wn = input_node(it, n, 1);
    if (n->nints < 7 || xn->rank != 4 || wn->rank != 4 || n->rank != 4 || n->nin < 2)
        return fail(it, "node %%%d: malformed conv2d", id);
    int64_t sh = n->ints[0], sw = n->ints[1], ph = n->ints[2], pw = n->ints[3];
    int64_t dh = n->ints[4], dw = n->ints[5], groups = n->ints[6];
    int64_t N = xn->shape[0], C = xn->shape[1], H = xn->shape[2], W = xn->shape[3];
    int64_t O = wn->shape[0], Cg = wn->shape[1], KH = wn->shape[2], KW = wn->shape[3];
    int64_t OH = n->shape[2], OW = n->shape[3];
    if (groups < 1 || O % groups != 0 || Cg * groups != C || n->shape[1] != O)
        return fail(it, "node %%%d: conv2d groups do not fit", id);
    int64_t Og = O / groups;
    const double *x = as_doubles(input_value(it, n, 0)), *w = as_doubles(input_value(it, n, 1));
    const double *b = n->nin > 2 ? as_doubles(input_value(it, n, 2)) : NULL;
    double *out = as_doubles_out(new_value(it, id));
    if (!out) return false;
    double *o = out;
    for (int64_t ni = 0; ni < N; ni++)
        for (int64_t oc = 0; oc < O; oc++) {
            int64_t c0 = (oc / Og) * Cg; /* first input channel of this group */
            for (int64_t oh = 0; oh < OH; oh++)
                for (int64_t ow = 0; ow < OW; ow++) {
                    double acc = b ? b[oc] : 0.0;
                    for (int64_t c = 0; c < Cg; c++)
                        for (int64_t kh = 0; kh < KH; kh++) {
                            int64_t ih = oh * sh - ph + kh * dh;
                            if (ih < 0 || ih >= H) continue;
                            for (int64_t kw = 0; kw < KW; kw++) {
                                int64_t iw = ow * sw - pw + kw * dw;
                                if (iw < 0 || iw >= W) continue;
                                acc += x[((ni * C + c0 + c) * H + ih) * W + iw] *
                                       w[((oc * Cg + c) * KH + kh) * KW + kw];
                            }
                        }
                    *o++ = ref_round_to_dtype(acc, n->dtype);
                }
        }
    return true;
}

/* The number of elements an average-pooling window divides by, along one
 * axis: the window from `start` (which may lie in the padding before) of k
 * elements, cut at the end of the padded axis (size + pad_end) or, without
 * count_include_pad, to the input [0, size).  PyTorch's and ONNX's rule. */
int64_t ref_pool_count(int64_t start, int64_t k, int64_t size, int64_t pad_end, bool include_pad) {
    int64_t lo = start, hi = start + k;
    if (hi > size + pad_end) hi = size + pad_end;
    if (!include_pad) {
        if (lo < 0) lo = 0;
        if (hi > size) hi = size;
    }
    return hi > lo ? hi - lo : 0;
}

/* x [..., H, W]; ints = kh, kw, sh, sw, pad top, left, bottom, right,
 * ceil_mode, count_include_pad (the last four may be missing: symmetric,
 * floor, included).  max skips the padding (an integer maximum is exact);
 * avg pads with zeros, divided by ref_pool_count's window sizes. */
static bool eval_pool(Interp *it, int id) {
    const Node *n = ir_node(it->g, id);
    const Node *xn = input_node(it, n, 0);
    if (n->nints < 6 || xn->rank < 2 || n->rank != xn->rank)
        return fail(it, "node %%%d: malformed pool", id);
    int64_t kh = n->ints[0], kw = n->ints[1], sh = n->ints[2], sw = n->ints[3];
    int64_t ph = n->ints[4], pw = n->ints[5];
    int64_t pb = n->nints >= 10 ? n->ints[6] : ph, pr = n->nints >= 10 ? n->ints[7] : pw;
    bool include_pad = n->nints >= 10 ? n->ints[9] != 0 : true;
    int r = n->rank;
    int64_t H = xn->shape[r - 2], W = xn->shape[r - 1], OH = n->shape[r - 2], OW = n->shape[r - 1];
    int64_t planes = shape_numel(r - 2, n->shape);
    bool is_max = n->op == OP_MAXPOOL2D, intlike = dtype_is_intlike(n->dtype);
    const Scalar *x = input_value(it, n, 0);
    Scalar *out = new_value(it, id);
    if (!out) return false;
    Scalar *o = out;
    for (int64_t p = 0; p < planes; p++) {
        const Scalar *xp = x + p * H * W;
        for (int64_t oh = 0; oh < OH; oh++)
            for (int64_t ow = 0; ow < OW; ow++) {
                Scalar best = intlike ? (Scalar){.i = INT64_MIN} : (Scalar){.f = -INFINITY};
                double sum = 0;
                for (int64_t i = 0; i < kh; i++) {
                    int64_t ih = oh * sh - ph + i;
                    if (ih < 0 || ih >= H) continue;
                    for (int64_t j = 0; j < kw; j++) {
                        int64_t iw = ow * sw - pw + j;
                        if (iw < 0 || iw >= W) continue;
                        Scalar v = xp[ih * W + iw];
                        if (!is_max)
                            sum += v.f;
                        else if (better(OP_MAX, v, best, intlike))
                            best = v;
                    }
                }
                if (is_max)
                    *o++ = intlike ? scalar_from_int(best.i, n->dtype) : scalar_from_double(best.f, n->dtype);
                else
                    *o++ = scalar_from_double(sum / (double)(ref_pool_count(oh * sh - ph, kh, H, pb, include_pad) *
                                                             ref_pool_count(ow * sw - pw, kw, W, pr, include_pad)),
                                              n->dtype);
            }
    }
    return true;
}

/* take: out[pre, j..., post] = x[pre, i(j...), post] with i the index, counted
 * from the end when negative and clamped into the axis when still outside
 * it (with a warning naming the first such index). */
static bool eval_take(Interp *it, int id) {
    const Node *n = ir_node(it->g, id);
    const Node *xn = input_node(it, n, 0), *in = input_node(it, n, 1);
    if (n->nints != 1 || n->ints[0] < 0 || n->ints[0] >= xn->rank)
        return fail(it, "node %%%d: malformed take", id);
    int64_t outer, len, inner, count = ir_numel(in);
    split_axis(xn, (int)n->ints[0], &outer, &len, &inner);
    const Scalar *x = input_value(it, n, 0), *idx = input_value(it, n, 1);
    Scalar *out = new_value(it, id);
    if (!out) return false;
    bool warned = false;
    for (int64_t j = 0; j < count; j++) {
        int64_t i = idx[j].i, at = i < 0 ? i + len : i; /* an integer index */
        if (at < 0 || at >= len) {
            int64_t clamped = at < 0 ? 0 : len - 1;
            if (!warned && n->loc.src)
                fprintf(stderr, "%s:%d:%d: warning: take: index %lld is out of range for an axis of size %lld; "
                        "it reads element %lld\n", n->loc.src->path, n->loc.line, n->loc.col, (long long)i,
                        (long long)len, (long long)clamped);
            else if (!warned)
                fprintf(stderr, "warning: take: index %lld is out of range for an axis of size %lld; it reads "
                        "element %lld\n", (long long)i, (long long)len, (long long)clamped);
            warned = true;
            at = clamped;
        }
        for (int64_t o = 0; o < outer; o++)
            for (int64_t k = 0; k < inner; k++)
                out[(o * count + j) * inner + k] = x[(o * len + at) * inner + k];
    }
    return true;
}

/* cumsum along ints[0]; ints[1] exclusive, ints[2] reverse.  Floats sum in
 * double and round each result; integers wrap as their dtype does. */
static bool eval_cumsum(Interp *it, int id) {
    const Node *n = ir_node(it->g, id);
    if (n->nints != 3 || n->ints[0] < 0 || n->ints[0] >= n->rank) return fail(it, "node %%%d: malformed cumsum", id);
    int64_t outer, len, inner;
    split_axis(n, (int)n->ints[0], &outer, &len, &inner);
    bool exclusive = n->ints[1] != 0, reverse = n->ints[2] != 0, is_int = dtype_is_intlike(n->dtype);
    const Scalar *x = input_value(it, n, 0);
    Scalar *out = new_value(it, id);
    if (!out) return false;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t k = 0; k < inner; k++) {
            double acc = 0;
            int64_t iacc = 0;
            for (int64_t step = 0; step < len; step++) {
                int64_t j = reverse ? len - 1 - step : step, at = (o * len + j) * inner + k;
                if (exclusive) out[at] = is_int ? scalar_from_int(iacc, n->dtype) : scalar_from_double(acc, n->dtype);
                if (is_int) iacc = iadd(iacc, x[at].i);
                else acc += x[at].f;
                if (!exclusive) out[at] = is_int ? scalar_from_int(iacc, n->dtype) : scalar_from_double(acc, n->dtype);
            }
        }
    return true;
}

/* ---- dispatch */

static bool eval_node(Interp *it, int id) {
    const Node *n = ir_node(it->g, id);
    switch (op_info[n->op].kind) {
    case OK_UNARY:
    case OK_BINARY:
    case OK_COMPARE:
    case OK_LOGIC:
    case OK_WHERE:
    case OK_CAST: return eval_elementwise(it, id);
    case OK_REDUCE: return eval_reduce(it, id);
    case OK_SHAPE:
        switch (n->op) {
        case OP_RESHAPE: return eval_reshape(it, id);
        case OP_PAD: return eval_pad(it, id);
        case OP_CONCAT: return eval_concat(it, id);
        case OP_TAKE: return eval_take(it, id);
        default: return eval_view(it, id);
        }
    case OK_CREATE: return eval_fill(it, id);
    case OK_NN:
        switch (n->op) {
        case OP_MATMUL: return eval_matmul(it, id);
        case OP_CONV2D: return eval_conv2d(it, id);
        case OP_MAXPOOL2D:
        case OP_AVGPOOL2D: return eval_pool(it, id);
        case OP_CUMSUM: return eval_cumsum(it, id);
        default: return eval_normalize(it, id);
        }
    case OK_SOURCE:
        if (n->op == OP_PARAM) return eval_param(it, id);
        return eval_fill(it, id); /* OP_CONST */
    }
    return fail(it, "node %%%d: unknown op", id);
}

bool ref_run(const IRGraph *g, const KilnTensor *inputs, KilnTensor *outputs, char *err,
             size_t errlen) {
    int nn = g->nodes.len, nres = g->results.len;
    Interp it = {.g = g, .inputs = inputs, .err = err, .errlen = errlen};
    for (int i = 0; i < nn; i++)
        if (ir_numel(ir_node(g, i)) < 0)
            return fail(&it, "node %%%d has a symbolic shape", i);

    it.vals = xcalloc((size_t)nn + 1, sizeof(Scalar *));
    it.param_of = xmalloc(sizeof(int) * ((size_t)nn + 1));
    int *last_use = xmalloc(sizeof(int) * ((size_t)nn + 1));
    for (int i = 0; i < nn; i++) {
        it.param_of[i] = -1;
        last_use[i] = i; /* unused values go right after they are made */
    }
    for (int p = 0; p < g->params.len; p++) it.param_of[g->params.data[p]] = p;
    for (int i = 0; i < nn; i++)
        for (int j = 0; j < ir_node(g, i)->nin; j++) last_use[ir_node(g, i)->in[j]] = i;
    for (int r = 0; r < nres; r++) last_use[g->results.data[r]] = nn; /* kept to the end */

    bool ok = true;
    for (int i = 0; i < nn && ok; i++) {
        ok = eval_node(&it, i);
        const Node *n = ir_node(g, i);
        for (int j = 0; j < n->nin; j++) {
            int src = n->in[j];
            if (last_use[src] == i) {
                free(it.vals[src]);
                it.vals[src] = NULL;
            }
        }
        if (last_use[i] == i) {
            free(it.vals[i]);
            it.vals[i] = NULL;
        }
    }

    int made = 0;
    for (; ok && made < nres; made++) {
        const Node *n = ir_node(g, g->results.data[made]);
        KilnTensor *t = &outputs[made];
        if (!kiln_tensor_init(t, n->dtype, n->rank, n->shape)) {
            ok = fail(&it, "out of memory for result %d (%lld elements)",
                      made, (long long)ir_numel(n));
            break;
        }
        const Scalar *v = it.vals[g->results.data[made]];
        bool intlike = dtype_is_intlike(n->dtype);
        for (int64_t i = 0, total = ir_numel(n); i < total; i++) {
            if (intlike)
                kiln_tensor_set_i64(t, i, v[i].i);
            else
                kiln_tensor_set(t, i, v[i].f);
        }
    }
    if (!ok)
        for (int r = 0; r < made; r++) kiln_tensor_free(&outputs[r]);

    for (int i = 0; i < nn; i++) free(it.vals[i]);
    free(it.vals);
    free(it.param_of);
    free(last_use);
    return ok;
}

double ref_eval_elementwise(Op op, KilnDType dt, bool flag, const double *operands) {
    OpKind k = op_info[op].kind;
    KilnDType in_dt = k == OK_CAST || k == OK_COMPARE ? KILN_F64 : k == OK_LOGIC ? KILN_BOOL : dt;
    Scalar x[3] = {{0}, {0}, {0}};
    for (int j = 0; j < op_info[op].arity && j < 3; j++)
        x[j] = scalar_from_double(operands[j], k == OK_WHERE && j == 0 ? KILN_BOOL : in_dt);
    return scalar_to_double(ref_eval_scalar(op, dt, in_dt, flag, x), dt);
}
