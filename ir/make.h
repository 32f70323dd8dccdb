/* make.h - the value-level IR builder: kiln's shape and dtype rules, in one place.
 *
 * Contract: every mk_* function takes values (node ids of the graph being
 * built) and plain attributes, checks them by the language's rules (NumPy
 * broadcasting and matmul, one dtype per operator, weakly typed literals;
 * see docs/language.md) and then either appends the node or nodes that
 * compute the result and returns the result's id, or reports a diagnostic
 * through the maker's DiagList and returns MK_ERROR.  A function given
 * MK_ERROR as an input returns MK_ERROR without a new message, so a front end
 * can build on after an error and report every independent one.
 *
 * Users: the language's AST lowering (frontend/lower.c), any importer of
 * another format (which needs no AST), and the pass pipeline's check_types
 * (mk_check_node), so that a graph from any front end, after any pass, obeys
 * the same rules.  Composites (linear, clamp, squeeze, global_avgpool, ...)
 * append the primitive nodes they are made of; the IR they make is what the
 * ops in ir/ops.def describe.
 *
 * Attributes are taken as given by the user and normalised here: negative
 * axes count from the end, slice bounds clip as in NumPy.  Shapes may hold
 * symbolic dimensions (Dim < 0): make them with ir_sym_named(m->g, "batch")
 * and combine them with mk_dim_product / mk_dim_quotient / ir_dim_add.
 * Nothing here needs an AST, a Source or a Program; a value's type is
 * ir_node(m->g, v)->dtype, ->rank, ->shape. */
#ifndef KILN_MAKE_H
#define KILN_MAKE_H

#include "ir/ir.h"

/* The value returned after an error (reported, or inherited from an input). */
enum { MK_ERROR = -1 };
/* An optional tensor input left out (linear or conv2d without a bias). */
enum { MK_NONE = -2 };

/* Where a function's diagnostics point.  `at` is the operation; the others,
 * where set, are the places of its parts as written, for a finer caret.  A
 * part left unset (line 0, as in mk_at(loc)) falls back: attr, value and in[i]
 * to `at`; items[i] to attr. */
typedef struct {
    Loc at;           /* the operation: a call, an operator, an ONNX node */
    Loc attr;         /* the attribute checked: axis=, padding=, a shape or permutation list */
    const Loc *items; /* one per entry of that attribute's list: permutation entries, pad pairs */
    const Loc *in;    /* one per tensor input, where it is written: concat's list, gamma, bias */
    Loc value;        /* a scalar attribute: pad's value=, full's fill value, arange's dtype */
} MkLoc;
static inline MkLoc mk_at(Loc at) { return (MkLoc){.at = at}; }

/* A builder on one graph.  Set up with mk_init, free with mk_free (the graph
 * stays the caller's). */
typedef struct {
    IRGraph *g;
    DiagList *diags;
    VEC(bool) weak; /* per node id: whether it is a weakly typed literal */
    bool too_large; /* a tensor of more than 2**53 elements was reported (once) */
} IRMaker;

void mk_init(IRMaker *m, IRGraph *g, DiagList *diags);
void mk_free(IRMaker *m);

/* ---- sources -------------------------------------------------------------- */

/* A graph parameter `name` of type dt[shape...], appended to g->params: the
 * graph's inputs, in the order added.  Any name, in any order (an importer's
 * weights are parameters bound to data, like the language's); dims are
 * positive sizes or symbolic (ir_sym_named).  Errors: a name given twice, a
 * dimension that is not positive. */
int mk_param(IRMaker *m, const char *name, KilnDType dt, int rank, const Dim *shape, Loc loc);

/* Appends v to g->results (MK_ERROR is ignored: the caller has errors). */
void mk_result(IRMaker *m, int v);

/* A rank-0 constant of dtype dt holding v. */
int mk_const(IRMaker *m, double v, KilnDType dt, Loc loc);
/* The same with an exact integer (wrapped to dt's width). */
int mk_const_int(IRMaker *m, int64_t v, KilnDType dt, Loc loc);

/* A weakly typed literal: a rank-0 constant of dtype `kind` (KILN_F32 for a
 * float literal, KILN_I64 for an integer, KILN_BOOL) that takes the dtype of
 * the tensor beside it when an elementwise op, a graph parameter or a result
 * uses it (the language's `x * 2`). */
int mk_literal(IRMaker *m, double v, KilnDType kind, Loc loc);
/* An integer literal, exact over the whole i64 range. */
int mk_literal_int(IRMaker *m, int64_t v, Loc loc);
bool mk_is_weak(const IRMaker *m, int v);

/* Whether the value `v` (an exact integer when is_int, else f) fits dtype
 * dt: an integer within its range, a float that does not overflow to
 * infinity; bool always.  Reports at `at` naming `what` when it does not. */
bool mk_value_fits(IRMaker *m, bool is_int, int64_t i, double f, KilnDType dt, Loc at, const char *what);

/* Gives the weak literal v the dtype dt (a new constant, or v itself when it
 * already has it); any other value comes back unchanged.  Errors: a fraction
 * for an integer dtype, a value the dtype cannot hold (3000000000 for i32,
 * 1e5 for f16), a number for bool or a bool for a number; `beside` names the
 * other side in the message (e.g. "f32[4]"). */
int mk_adapt(IRMaker *m, int v, KilnDType dt, const char *beside);

/* ---- symbolic dimensions ---------------------------------------------------- */

/* The product of n dims in canonical form (a constant times sorted symbols),
 * so that B*T and T*B are the same Dim and reshapes check symbolically. */
Dim mk_dim_product(IRMaker *m, const Dim *dims, int n);
/* num / den when it is exact (common symbolic factors cancel): true and *out;
 * false when it is not, or cannot be shown to be. */
bool mk_dim_quotient(IRMaker *m, Dim num, Dim den, Dim *out);

/* ---- elementwise --------------------------------------------------------------- */

/* op(x) for an OK_UNARY op or OP_NOT.  Rules: no bool operand (not: only
 * bool); OPF_FLOAT ops need a floating-point operand (a weak integer literal
 * becomes f32).  The result has x's dtype and shape. */
int mk_unary(IRMaker *m, Op op, int x, Loc loc);
/* gelu, exact (erf) or, with `approximate`, the tanh form. */
int mk_gelu(IRMaker *m, int x, bool approximate, Loc loc);

/* a op b for an OK_BINARY, OK_COMPARE or OK_LOGIC op.  Rules: weak literals
 * take the other operand's dtype (two literals: int with float makes f32);
 * then one dtype for both; arithmetic takes no bool, logic only bool, OPF_FLOAT
 * ops (/) only floating point; shapes broadcast as NumPy's.  Comparisons give
 * bool, the others the operands' dtype. */
int mk_binary(IRMaker *m, Op op, int a, int b, Loc loc);
/* where(cond, a, b): cond bool (a weak literal becomes bool), a and b as for
 * mk_binary, all three broadcast together. */
int mk_where(IRMaker *m, int cond, int a, int b, Loc loc);
/* clamp(x, lo, hi) = minimum(maximum(x, lo), hi). */
int mk_clamp(IRMaker *m, int x, int lo, int hi, Loc loc);
/* x converted to dtype dt (any dtype to any other), same shape. */
int mk_cast(IRMaker *m, int x, KilnDType dt, Loc loc);

/* ---- reductions ------------------------------------------------------------------ */

/* op(x) over `axes` (naxes of them, negative ones from the end) for an
 * OK_REDUCE op; axes == NULL means every axis (for argmax/argmin: the
 * flattened tensor).  keepdims keeps the reduced axes as 1.  Rules: no bool
 * tensor; mean only floating point; each axis in range (reported at
 * loc.attr) and listed once.  argmax/argmin give i64, the others x's dtype. */
int mk_reduce(IRMaker *m, Op op, int x, const int64_t *axes, int naxes, bool keepdims, MkLoc loc);

/* ---- shapes ------------------------------------------------------------------------- */

/* x with the shape dims[rank]; dims[infer_axis] (when infer_axis >= 0) is
 * computed from the others, like NumPy's -1 (its value in dims is ignored).
 * Rules: the element counts agree, symbolically where dims are symbolic.
 * Always a new node. */
int mk_reshape(IRMaker *m, int x, const Dim *dims, int rank, int infer_axis, Loc loc);

/* x with its axes permuted: result axis i is x's axis perm[i] (negative from
 * the end); perm == NULL reverses them.  Rules: nperm == rank, each axis in
 * range and once (reported at loc.items[i], else loc.attr). */
int mk_transpose(IRMaker *m, int x, const int64_t *perm, int nperm, MkLoc loc);

/* x broadcast to dims[rank] by NumPy's rules (each of x's dims, aligned
 * right, equals the target's or is 1). */
int mk_broadcast(IRMaker *m, int x, const Dim *dims, int rank, Loc loc);

/* One axis of an index expression. */
typedef struct {
    bool index;                /* x[i]: the single element `start`; the axis is dropped */
    int64_t start, stop, step; /* a slice start:stop:step, NumPy's meaning (step > 0) */
    bool has_start, has_stop;  /* false: from the beginning / to the end */
    Loc at, step_at;           /* this entry and its step, for messages (unset: loc.at) */
} MkSlice;
/* x[axes[0], ..., axes[n-1]], the axes after n left whole.  Negative indices
 * and bounds count from the end, out-of-range slice bounds clip.  Rules:
 * n <= rank; an index within its axis (where the size is known); step > 0.
 * A slice of a symbolic axis gets a symbolic size of its own. */
int mk_index(IRMaker *m, int x, const MkSlice *axes, int n, MkLoc loc);

/* xs[0..n) joined along `axis` (negative from the end).  Rules: n >= 1,
 * rank >= 1, the same dtype, rank and sizes except along the axis (reported
 * at loc.in[i]); the axis in range (at loc.attr). */
int mk_concat(IRMaker *m, const int *xs, int n, int64_t axis, MkLoc loc);

/* x padded with `value`: pads[2k], pads[2k+1] elements before and after axis
 * k, for npairs == rank axes.  Rules: one pair per axis (at loc.attr), widths
 * not negative (at loc.items[k]), an integral value for an integer tensor (at
 * loc.value). */
int mk_pad(IRMaker *m, int x, const int64_t *pads, int npairs, double value, MkLoc loc);
/* The same with an exact integer value (an error if x's dtype cannot hold it). */
int mk_pad_int(IRMaker *m, int x, const int64_t *pads, int npairs, int64_t value, MkLoc loc);

/* x without the size-1 axes listed (negative from the end), or without all of
 * its size-1 axes when axes == NULL.  Rules: each listed axis in range and of
 * size 1 (at loc.attr). */
int mk_squeeze(IRMaker *m, int x, const int64_t *axes, int naxes, MkLoc loc);
/* x with size-1 axes inserted so that they sit at `axes` of the result
 * (negative from the end of the result).  Rules: at least one axis, each in
 * range for the result's rank (at loc.attr). */
int mk_unsqueeze(IRMaker *m, int x, const int64_t *axes, int naxes, MkLoc loc);

/* ---- creation ------------------------------------------------------------------------- */

/* A dt[dims...] tensor filled with `value`.  Rules: an integral value for an
 * integer dtype (at loc.value). */
int mk_full(IRMaker *m, const Dim *dims, int rank, double value, KilnDType dt, MkLoc loc);
/* The same with an exact integer value (an error if dt cannot hold it). */
int mk_full_int(IRMaker *m, const Dim *dims, int rank, int64_t value, KilnDType dt, MkLoc loc);
/* [0, 1, ..., n-1] of dtype dt.  Rules: dt is not bool (at loc.value). */
int mk_arange(IRMaker *m, Dim n, KilnDType dt, MkLoc loc);

/* ---- neural-network operations ----------------------------------------------------------- */

/* a @ b with NumPy matmul semantics: 1-D operands gain an axis that the
 * result drops again, batch axes broadcast.  Rules: rank >= 1, one dtype, not
 * bool, inner dimensions equal. */
int mk_matmul(IRMaker *m, int a, int b, Loc loc);

/* softmax or log_softmax (op) of floating-point x along `axis` (at loc.attr). */
int mk_softmax(IRMaker *m, Op op, int x, int64_t axis, MkLoc loc);
/* layernorm(x, gamma, beta) and rmsnorm(x, gamma) (beta MK_NONE) over `axis`:
 * x floating point of rank >= 1, gamma and beta 1-D of x's size along the
 * axis and x's dtype (at loc.in[1], loc.in[2]). */
int mk_layernorm(IRMaker *m, int x, int gamma, int beta, int64_t axis, double eps, MkLoc loc);
int mk_rmsnorm(IRMaker *m, int x, int gamma, int64_t axis, double eps, MkLoc loc);

/* linear(x, w[, bias]) = x @ transpose(w) + bias, PyTorch's layout: w is
 * [out, in] (at loc.in[1]), bias (MK_NONE: none) is [out] (at loc.in[2]). */
int mk_linear(IRMaker *m, int x, int w, int bias, MkLoc loc);

/* Window attributes of conv2d and the pools; pad is [top, bottom, left, right]. */
typedef struct {
    int64_t stride[2];   /* >= 1 */
    int64_t pad[4];      /* >= 0 */
    int64_t dilation[2]; /* >= 1; conv2d only */
    int64_t groups;      /* >= 1, divides the output channels; conv2d only */
} MkConv;
typedef struct {
    int64_t kernel[2];      /* >= 1 */
    int64_t stride[2];      /* >= 1 */
    int64_t pad[4];         /* >= 0, at most half the kernel (reported at loc.attr) */
    bool ceil_mode;         /* the output size rounds up: a last, partial window counts,
                             * unless it would start in the padding after the input */
    bool count_include_pad; /* avgpool2d: the padding counts in the divisor */
} MkPool;

/* conv2d(x[N, C, H, W], w[O, C/groups, KH, KW], bias[O] or MK_NONE (at
 * loc.in[2])): floating point, one dtype, channels that agree, a kernel of
 * known size that fits the padded input. */
int mk_conv2d(IRMaker *m, int x, int w, int bias, const MkConv *c, MkLoc loc);
/* maxpool2d or avgpool2d (op) of x[N, C, H, W]: max takes any numeric dtype,
 * avg floating point; the kernel fits the padded input. */
int mk_pool2d(IRMaker *m, Op op, int x, const MkPool *p, MkLoc loc);
/* The mean over H and W of a floating-point x[N, C, H, W], kept as [N, C, 1, 1]. */
int mk_global_avgpool(IRMaker *m, int x, Loc loc);

/* ---- Version 1 additions ------------------------------------------------------- */

/* NumPy's take: x's slices along `axis` picked by an integer tensor of
 * indices (i32 or i64, at loc.in[1]); the result's shape is
 * x.shape[:axis] + indices.shape + x.shape[axis+1:].  At run time a negative
 * index counts from the end and one still out of range is clamped. */
int mk_take(IRMaker *m, int x, int indices, int64_t axis, MkLoc loc);
/* The running sum along `axis` (not bool), in x's dtype; `exclusive` leaves
 * each element out of its own sum, `reverse` sums from the end (ONNX's
 * CumSum attributes; the language has neither). */
int mk_cumsum(IRMaker *m, int x, int64_t axis, bool exclusive, bool reverse, MkLoc loc);
/* Inference batch normalisation over channel `axis`:
 * (x - mean) / sqrt(var + eps) * gamma + beta, each of mean, var, gamma,
 * beta 1-D of x's size along the axis and x's dtype (at loc.in[1..4]); x
 * floating point.  Made of elementwise ops, so it fuses into its neighbours. */
int mk_batchnorm(IRMaker *m, int x, int mean, int var, int gamma, int beta, int64_t axis, double eps, MkLoc loc);
/* Elementwise composites of floating-point x (a weak integer literal becomes
 * f32): x > 0 ? x : alpha * x;  clamp(alpha * x + beta, 0, 1);  1 / x. */
int mk_leaky_relu(IRMaker *m, int x, double alpha, Loc loc);
int mk_hardsigmoid(IRMaker *m, int x, double alpha, double beta, Loc loc);
int mk_reciprocal(IRMaker *m, int x, Loc loc);
/* bool tensors of x's shape: x is NaN; x is +inf (positive) or -inf
 * (negative).  Any dtype: integers and bools are neither. */
int mk_isnan(IRMaker *m, int x, Loc loc);
int mk_isinf(IRMaker *m, int x, bool positive, bool negative, Loc loc);

/* ---- checking -------------------------------------------------------------------------------- */

/* Whether node `id` of g has the dtype and shape these rules give its op,
 * inputs and attributes (the pass pipeline's check after every pass).  May
 * intern derived symbolic dimensions in g.  False with the reason in why. */
bool mk_check_node(IRGraph *g, int id, char *why, size_t whylen);

#endif
