/* ops_nn.c - ONNX neural-network operators and reductions: MatMul, Gemm,
 * Conv, the pools, the normalisations, Softmax/LogSoftmax/Hardmax, the
 * Reduce* family, ArgMax/ArgMin, CumSum.
 *
 * Contract: as ops_elementwise.c.  Convolutions and pools of one spatial
 * dimension run as two-dimensional ones of height 1; auto_pad SAME_* is
 * resolved to explicit pads from the input's (known) size.  Reductions read
 * their axes from the attribute or, from the opset that moved them (13 for
 * ReduceSum, 18 for the others), from the input.
 */
#include "onnx/import.h"

#include <math.h>
#include <string.h>

static bool is_op(const Ctx *c, const char *name) { return strcmp(c->node->op_type, name) == 0; }
static Arena *A(Ctx *c) { return c->arena; }
static Node *nd(Ctx *c, int id) { return ir_node(c->mk->g, id); }
static int bin(Ctx *c, Op op, int a, int b) { return mk_binary(c->mk, op, a, b, c->loc); }
static int un(Ctx *c, Op op, int x) { return mk_unary(c->mk, op, x, c->loc); }
static int K(Ctx *c, double v, int like) { return like < 0 ? MK_ERROR : c_const(c, v, nd(c, like)->dtype); }

static bool done(Ctx *c, int k, int id) {
    set_out(c, k, id);
    return id != MK_ERROR;
}

static int reduce(Ctx *c, Op op, int x, const int64_t *axes, int n, bool keep) {
    return mk_reduce(c->mk, op, x, axes, n, keep, c_mkloc(c));
}

/* ---- matrix products ---- */

bool lower_matmul(Ctx *c) { return done(c, 0, mk_matmul(c->mk, in_id(c, 0), in_id(c, 1), c->loc)); }

bool lower_gemm(Ctx *c) {
    double alpha, beta;
    int64_t ta, tb;
    if (!attr_float(c, "alpha", 1, &alpha) || !attr_float(c, "beta", 1, &beta) ||
        !attr_int(c, "transA", 0, &ta) || !attr_int(c, "transB", 0, &tb))
        return false;
    int a = in_id(c, 0), b = in_id(c, 1), bias = has_in(c, 2) ? in_id(c, 2) : MK_NONE;
    if (a == MK_ERROR || b == MK_ERROR || bias == MK_ERROR) return false;
    if (nd(c, a)->rank != 2 || nd(c, b)->rank != 2) return node_error(c, "A and B must be 2-D");
    /* PyTorch's nn.Linear exports as Gemm(transB=1): kiln's linear */
    if (!ta && tb && alpha == 1 && beta == 1 && (bias == MK_NONE || nd(c, bias)->rank == 1))
        return done(c, 0, mk_linear(c->mk, a, b, bias, c_mkloc(c)));
    if (ta) a = mk_transpose(c->mk, a, NULL, 2, c_mkloc(c));
    if (tb) b = mk_transpose(c->mk, b, NULL, 2, c_mkloc(c));
    int y = mk_matmul(c->mk, a, b, c->loc);
    if (alpha != 1) y = bin(c, OP_MUL, y, K(c, alpha, y));
    if (bias != MK_NONE && beta != 0)
        y = bin(c, OP_ADD, y, beta == 1 ? bias : bin(c, OP_MUL, bias, K(c, beta, bias)));
    return done(c, 0, y);
}

/* ---- windows: Conv and the pools ---- */

typedef struct {
    int nsp;                                           /* spatial dims: 1 or 2 */
    int64_t kernel[2], stride[2], dilation[2], pad[4]; /* pad: begin h, begin w, end h, end w */
} Window;

/* An int-list attribute of one entry per spatial dim (default `dflt`). */
static bool spatial_attr(Ctx *c, const char *name, int nsp, int64_t dflt, int64_t *out) {
    const int64_t *v;
    int n;
    if (!attr_ints(c, name, &v, &n)) return false;
    for (int k = 0; k < nsp; k++) out[k] = n < 0 ? dflt : k < n ? v[k] : dflt;
    if (n >= 0 && n != nsp)
        return node_error(c, "attribute %s has %d entries for %d spatial dimensions", name, n, nsp);
    return true;
}

/* Reads kernel_shape (or the weight's), strides, dilations, pads and
 * auto_pad for input x of rank nsp + 2. */
static bool read_window(Ctx *c, int x, const Dim *kernel_from, bool has_dilations, Window *w) {
    const Node *xn = nd(c, x);
    w->nsp = xn->rank - 2;
    if (w->nsp < 1 || w->nsp > 2)
        return unsupported(c, "%d spatial dimensions (kiln has 1-D and 2-D windows)",
                           w->nsp < 0 ? 0 : w->nsp);
    int nsp = w->nsp;
    if (!spatial_attr(c, "kernel_shape", nsp, 0, w->kernel) || !spatial_attr(c, "strides", nsp, 1, w->stride))
        return false;
    if (has_dilations && !spatial_attr(c, "dilations", nsp, 1, w->dilation)) return false;
    if (!has_dilations) w->dilation[0] = w->dilation[1] = 1;
    for (int k = 0; k < nsp; k++) {
        if (kernel_from) {
            if (DIM_IS_SYM(kernel_from[k])) return node_error(c, "the kernel's size is symbolic");
            if (w->kernel[k] && w->kernel[k] != kernel_from[k])
                return node_error(c, "kernel_shape disagrees with the weight's shape");
            w->kernel[k] = kernel_from[k];
        }
        if (w->kernel[k] < 1) return node_error(c, "needs kernel_shape");
    }
    const int64_t *pads;
    int np;
    const char *auto_pad;
    if (!attr_ints(c, "pads", &pads, &np) || !attr_string(c, "auto_pad", "NOTSET", &auto_pad)) return false;
    if (np >= 0 && np != 2 * nsp)
        return node_error(c, "pads has %d entries for %d spatial dimensions", np, nsp);
    for (int k = 0; k < 2 * nsp; k++) w->pad[k] = np < 0 ? 0 : pads[k];
    bool upper = strcmp(auto_pad, "SAME_UPPER") == 0, lower = strcmp(auto_pad, "SAME_LOWER") == 0;
    for (int k = 0; k < nsp; k++) {
        if (w->stride[k] < 1 || w->dilation[k] < 1)
            return node_error(c, "strides and dilations must be positive (found %lld and %lld)",
                              (long long)w->stride[k], (long long)w->dilation[k]);
        if (w->kernel[k] > (int64_t)1 << 30)
            return node_error(c, "kernel_shape %lld is too large", (long long)w->kernel[k]);
    }
    for (int k = 0; k < 2 * nsp; k++)
        if (w->pad[k] < 0 || w->pad[k] > (int64_t)1 << 30)
            return unsupported(c, "pads of %lld (negative or huge)", (long long)w->pad[k]);
    if (upper || lower) {
        for (int k = 0; k < nsp; k++) {
            Dim in = xn->shape[2 + k];
            if (DIM_IS_SYM(in))
                return node_error(c, "auto_pad %s over a symbolic size; bind it with --dim", auto_pad);
            int64_t out = (in + w->stride[k] - 1) / w->stride[k];
            int64_t total = (out - 1) * w->stride[k] + (w->kernel[k] - 1) * w->dilation[k] + 1 - in;
            if (total < 0) total = 0;
            w->pad[k] = upper ? total / 2 : total - total / 2;
            w->pad[nsp + k] = total - w->pad[k];
        }
    } else if (strcmp(auto_pad, "VALID") == 0) {
        for (int k = 0; k < 2 * nsp; k++) w->pad[k] = 0;
    } else if (strcmp(auto_pad, "NOTSET") != 0) {
        return unsupported(c, "auto_pad '%s'", auto_pad);
    }
    return true;
}

/* A 1-D window runs as a 2-D one of height 1: [N, C, L] -> [N, C, 1, L]. */
static int to_2d(Ctx *c, int x) {
    int64_t ax = 2;
    return mk_unsqueeze(c->mk, x, &ax, 1, c_mkloc(c));
}
static int from_2d(Ctx *c, int y) {
    int64_t ax = 2;
    return y == MK_ERROR ? y : mk_squeeze(c->mk, y, &ax, 1, c_mkloc(c));
}

/* Window -> (stride, pad [top, bottom, left, right]) of kiln's 2-D ops. */
static void window_2d(const Window *w, int64_t stride[2], int64_t pad[4], int64_t dil[2]) {
    if (w->nsp == 1) {
        stride[0] = 1, stride[1] = w->stride[0];
        dil[0] = 1, dil[1] = w->dilation[0];
        pad[0] = pad[1] = 0, pad[2] = w->pad[0], pad[3] = w->pad[1];
    } else {
        stride[0] = w->stride[0], stride[1] = w->stride[1];
        dil[0] = w->dilation[0], dil[1] = w->dilation[1];
        pad[0] = w->pad[0], pad[1] = w->pad[2], pad[2] = w->pad[1], pad[3] = w->pad[3];
    }
}

bool lower_conv(Ctx *c) {
    int64_t group;
    if (!attr_int(c, "group", 1, &group)) return false;
    int x = in_id(c, 0), wt = in_id(c, 1), bias = has_in(c, 2) ? in_id(c, 2) : MK_NONE;
    if (x == MK_ERROR || wt == MK_ERROR || bias == MK_ERROR) return false;
    if (nd(c, wt)->rank != nd(c, x)->rank) return node_error(c, "X and W must have the same rank");
    Window w;
    if (!read_window(c, x, nd(c, wt)->shape + 2, true, &w)) return false;
    MkConv mc = {.groups = group};
    window_2d(&w, mc.stride, mc.pad, mc.dilation);
    if (w.nsp == 1) x = to_2d(c, x), wt = to_2d(c, wt);
    int y = mk_conv2d(c->mk, x, wt, bias, &mc, c_mkloc(c));
    return done(c, 0, w.nsp == 1 ? from_2d(c, y) : y);
}

bool lower_pool(Ctx *c) {
    bool max = is_op(c, "MaxPool");
    int64_t ceil_mode = 0, include_pad = 0, storage = 0;
    if (c->opset >= 10 && !attr_int(c, "ceil_mode", 0, &ceil_mode)) return false;
    if (!max && !attr_int(c, "count_include_pad", 0, &include_pad)) return false;
    if (max && !attr_int(c, "storage_order", 0, &storage)) return false; /* only shapes the Indices output */
    int x = in_id(c, 0);
    if (x == MK_ERROR) return false;
    Window w;
    bool dil = max ? c->opset >= 10 : c->opset >= 19;
    if (!read_window(c, x, NULL, dil, &w)) return false;
    for (int k = 0; k < w.nsp; k++)
        if (w.dilation[k] != 1) return unsupported(c, "dilations other than 1");
    /* count_include_pad means nothing to a max: the padding never wins */
    MkPool p = {.ceil_mode = ceil_mode != 0, .count_include_pad = max || include_pad != 0};
    int64_t dummy[2];
    window_2d(&w, p.stride, p.pad, dummy);
    p.kernel[0] = w.nsp == 1 ? 1 : w.kernel[0];
    p.kernel[1] = w.nsp == 1 ? w.kernel[0] : w.kernel[1];
    if (w.nsp == 1) x = to_2d(c, x);
    int y = mk_pool2d(c->mk, max ? OP_MAXPOOL2D : OP_AVGPOOL2D, x, &p, c_mkloc(c));
    return done(c, 0, w.nsp == 1 ? from_2d(c, y) : y);
}

/* The spatial axes 2 .. rank-1, as a reduction's axis list. */
static int64_t *spatial_axes(Ctx *c, int rank) {
    int64_t *ax = ARENA_ARRAY(A(c), int64_t, rank + 1);
    for (int k = 2; k < rank; k++) ax[k - 2] = k;
    return ax;
}

bool lower_global_pool(Ctx *c) {
    int x = in_id(c, 0);
    if (x == MK_ERROR) return false;
    int r = nd(c, x)->rank;
    if (r < 3) return node_error(c, "needs an input of rank 3 or more");
    if (is_op(c, "GlobalAveragePool") && r == 4) return done(c, 0, mk_global_avgpool(c->mk, x, c->loc));
    return done(c, 0,
                reduce(c, is_op(c, "GlobalMaxPool") ? OP_MAX : OP_MEAN, x, spatial_axes(c, r), r - 2, true));
}

/* ---- normalisations ---- */

/* v of shape [C] reshaped to broadcast over channel axis 1 of a rank-r tensor. */
static int per_channel(Ctx *c, int v, int r) {
    if (v == MK_ERROR) return v;
    if (nd(c, v)->rank != 1) return node_error(c, "per-channel inputs must be 1-D"), MK_ERROR;
    Dim *d = ARENA_ARRAY(A(c), Dim, r + 1);
    for (int k = 0; k < r; k++) d[k] = 1;
    d[1] = nd(c, v)->shape[0];
    return mk_reshape(c->mk, v, d, r, -1, c->loc);
}

bool lower_batchnorm(Ctx *c) {
    double eps;
    int64_t training = 0, spatial = 1;
    if (!attr_float(c, "epsilon", 1e-5, &eps)) return false;
    attr_ignore(c, "momentum");
    if (c->opset >= 14 && !attr_int(c, "training_mode", 0, &training)) return false;
    if (c->opset < 9 && !attr_int(c, "spatial", 1, &spatial)) return false;
    if (training) return unsupported(c, "training_mode=1 (kiln runs models for inference)");
    if (!spatial) return unsupported(c, "spatial=0");
    int x = in_id(c, 0), scale = in_id(c, 1), b = in_id(c, 2), mean = in_id(c, 3), var = in_id(c, 4);
    if (x == MK_ERROR || scale == MK_ERROR || b == MK_ERROR || mean == MK_ERROR || var == MK_ERROR) return false;
    if (nd(c, x)->rank < 2) return node_error(c, "needs an input of rank 2 or more");
    return done(c, 0, mk_batchnorm(c->mk, x, mean, var, scale, b, 1, eps, c_mkloc(c)));
}

/* (x - mean) / sqrt(var + eps) over `axes`, with mean and 1/sqrt(var + eps)
 * (keepdims) returned too. */
static int normalise(Ctx *c, int x, const int64_t *axes, int n, double eps, int *mean_out, int *inv_out) {
    int mean = reduce(c, OP_MEAN, x, axes, n, true);
    int d = bin(c, OP_SUB, x, mean);
    int var = reduce(c, OP_MEAN, bin(c, OP_MUL, d, d), axes, n, true);
    int inv = un(c, OP_RSQRT, bin(c, OP_ADD, var, K(c, eps, var)));
    if (mean_out) *mean_out = mean;
    if (inv_out) *inv_out = inv;
    return bin(c, OP_MUL, d, inv);
}

bool lower_instancenorm(Ctx *c) {
    double eps;
    if (!attr_float(c, "epsilon", 1e-5, &eps)) return false;
    int x = in_id(c, 0);
    if (x == MK_ERROR) return false;
    int r = nd(c, x)->rank;
    if (r < 3) return node_error(c, "needs an input of rank 3 or more");
    int y = normalise(c, x, spatial_axes(c, r), r - 2, eps, NULL, NULL);
    return done(
        c, 0,
        bin(c, OP_ADD, bin(c, OP_MUL, y, per_channel(c, in_id(c, 1), r)), per_channel(c, in_id(c, 2), r)));
}

bool lower_layernorm(Ctx *c) {
    int64_t axis, stash;
    double eps;
    if (!attr_int(c, "axis", -1, &axis) || !attr_float(c, "epsilon", 1e-5, &eps) ||
        !attr_int(c, "stash_type", 1, &stash))
        return false;
    int x = in_id(c, 0), scale = in_id(c, 1), b = has_in(c, 2) ? in_id(c, 2) : MK_NONE;
    if (x == MK_ERROR || scale == MK_ERROR || b == MK_ERROR) return false;
    int r = nd(c, x)->rank;
    if (!norm_axis(c, axis, r, "axis", &axis)) return false;
    KilnDType dt = nd(c, x)->dtype;
    bool want_stats = (c->nout > 1 && c->node->outputs[1][0]) || (c->nout > 2 && c->node->outputs[2][0]);
    /* the common case: kiln's layernorm (one axis, 1-D scale and bias, no statistics) */
    if (axis == r - 1 && !want_stats && nd(c, scale)->rank == 1 && (b == MK_NONE || nd(c, b)->rank == 1) &&
        dt == KILN_F32) {
        if (b == MK_NONE) b = mk_full(c->mk, nd(c, scale)->shape, 1, 0, dt, c_mkloc(c));
        return done(c, 0, mk_layernorm(c->mk, x, scale, b, axis, eps, c_mkloc(c)));
    }
    /* statistics in f32 (stash_type 1) for f16/bf16 inputs */
    KilnDType work = stash == 1 && (dt == KILN_F16 || dt == KILN_BF16) ? KILN_F32 : dt;
    int xw = work == dt ? x : mk_cast(c->mk, x, work, c->loc);
    int n = r - (int)axis, mean, inv;
    int64_t *axes = ARENA_ARRAY(A(c), int64_t, n + 1);
    for (int k = 0; k < n; k++) axes[k] = axis + k;
    int y = normalise(c, xw, axes, n, eps, &mean, &inv);
    if (work != dt) y = mk_cast(c->mk, y, dt, c->loc);
    y = bin(c, OP_MUL, y, scale);
    if (b != MK_NONE) y = bin(c, OP_ADD, y, b);
    set_out(c, 0, y);
    if (c->nout > 1) set_out(c, 1, mean);
    if (c->nout > 2) set_out(c, 2, inv);
    return y != MK_ERROR;
}

bool lower_mvn(Ctx *c) {
    const int64_t *axes;
    int n;
    static const int64_t dflt[3] = {0, 2, 3};
    if (!attr_ints(c, "axes", &axes, &n)) return false;
    if (n < 0) axes = dflt, n = 3;
    int x = in_id(c, 0);
    if (x == MK_ERROR) return false;
    /* (x - E[x]) / (sqrt(E[x^2] - E[x]^2) + 1e-9), as the ONNX function body */
    int mean = reduce(c, OP_MEAN, x, axes, n, true);
    int sq_mean = reduce(c, OP_MEAN, bin(c, OP_MUL, x, x), axes, n, true);
    int var = bin(c, OP_SUB, sq_mean, bin(c, OP_MUL, mean, mean));
    int sd = bin(c, OP_ADD, un(c, OP_SQRT, var), K(c, 1e-9, var));
    return done(c, 0, bin(c, OP_DIV, bin(c, OP_SUB, x, mean), sd));
}

/* LRN: x / (bias + alpha/size * sum of squares over a window of channels)^beta. */
bool lower_lrn(Ctx *c) {
    double alpha, beta, bias;
    int64_t size;
    if (!attr_float(c, "alpha", 1e-4, &alpha) || !attr_float(c, "beta", 0.75, &beta) ||
        !attr_float(c, "bias", 1.0, &bias) || !attr_int(c, "size", 0, &size))
        return false;
    if (size < 1) return node_error(c, "needs size >= 1");
    int x = in_id(c, 0);
    if (x == MK_ERROR) return false;
    const Node *xn = nd(c, x);
    int r = xn->rank;
    if (r < 3 || DIM_IS_SYM(xn->shape[1])) return node_error(c, "needs rank >= 3 and a known channel count");
    int64_t lo = (size - 1) / 2, hi = size - 1 - lo, ch = xn->shape[1];
    int64_t *pads = ARENA_ARRAY(A(c), int64_t, 2 * r);
    pads[2] = lo, pads[3] = hi;
    int sq = mk_pad(c->mk, bin(c, OP_MUL, x, x), pads, r, 0, c_mkloc(c));
    int sum = MK_NONE;
    for (int64_t k = 0; k < size && sq != MK_ERROR; k++) {
        MkSlice s[2] = {{.step = 1},
                        {.start = k, .stop = k + ch, .step = 1, .has_start = true, .has_stop = true}};
        int part = mk_index(c->mk, sq, s, 2, c_mkloc(c));
        sum = sum == MK_NONE ? part : bin(c, OP_ADD, sum, part);
    }
    if (sq == MK_ERROR || sum == MK_ERROR) return false;
    int den = bin(c, OP_ADD, K(c, bias, x), bin(c, OP_MUL, K(c, alpha / (double)size, x), sum));
    return done(c, 0, bin(c, OP_DIV, x, bin(c, OP_POW, den, K(c, beta, x))));
}

/* ---- softmax ---- */

/* Before opset 13, Softmax, LogSoftmax and Hardmax see the input as a 2-D
 * matrix [prod(d[:axis]), prod(d[axis:])] and work on its rows. */
static int coerce_2d(Ctx *c, int x, int64_t axis) {
    const Node *xn = nd(c, x);
    Dim d[2] = {mk_dim_product(c->mk, xn->shape, (int)axis),
                mk_dim_product(c->mk, xn->shape + axis, xn->rank - (int)axis)};
    return mk_reshape(c->mk, x, d, 2, -1, c->loc);
}

static int back_to(Ctx *c, int y, int x) {
    return y == MK_ERROR ? y : mk_reshape(c->mk, y, nd(c, x)->shape, nd(c, x)->rank, -1, c->loc);
}

bool lower_softmax(Ctx *c) {
    int64_t axis;
    bool old = c->opset < 13;
    if (!attr_int(c, "axis", old ? 1 : -1, &axis)) return false;
    int x = in_id(c, 0);
    if (x == MK_ERROR || !norm_axis(c, axis, nd(c, x)->rank, "axis", &axis)) return false;
    Op op = is_op(c, "Softmax") ? OP_SOFTMAX : OP_LOG_SOFTMAX;
    if (!old || axis == nd(c, x)->rank - 1) return done(c, 0, mk_softmax(c->mk, op, x, axis, c_mkloc(c)));
    return done(c, 0, back_to(c, mk_softmax(c->mk, op, coerce_2d(c, x, axis), 1, c_mkloc(c)), x));
}

/* [0, n) along `axis` of a rank-r tensor, shaped to broadcast there. */
static int iota_along(Ctx *c, Dim n, int axis, int r) {
    Dim *d = ARENA_ARRAY(A(c), Dim, r + 1);
    for (int k = 0; k < r; k++) d[k] = 1;
    d[axis] = n;
    return mk_reshape(c->mk, mk_arange(c->mk, n, KILN_I64, c_mkloc(c)), d, r, -1, c->loc);
}

bool lower_hardmax(Ctx *c) {
    int64_t axis;
    bool old = c->opset < 13;
    if (!attr_int(c, "axis", old ? 1 : -1, &axis)) return false;
    int x = in_id(c, 0);
    if (x == MK_ERROR || !norm_axis(c, axis, nd(c, x)->rank, "axis", &axis)) return false;
    int xs = old ? coerce_2d(c, x, axis) : x;
    int64_t ax = old ? 1 : axis;
    int am = reduce(c, OP_ARGMAX, xs, &ax, 1, true);
    int hit = bin(c, OP_EQ, iota_along(c, nd(c, xs)->shape[ax], (int)ax, nd(c, xs)->rank), am);
    int y = mk_cast(c->mk, hit, nd(c, x)->dtype, c->loc);
    return done(c, 0, old ? back_to(c, y, x) : y);
}

/* ---- reductions ---- */

bool lower_reduce(Ctx *c) {
    int64_t keep, noop = 0;
    int moved = is_op(c, "ReduceSum") ? 13 : 18;
    if (!attr_int(c, "keepdims", 1, &keep)) return false;
    if (c->opset >= moved && !attr_int(c, "noop_with_empty_axes", 0, &noop)) return false;
    int64_t *axes = NULL;
    int n = -1;
    if (c->opset < moved) {
        const int64_t *a;
        if (!attr_ints(c, "axes", &a, &n)) return false;
        axes = (int64_t *)a;
    } else if (has_in(c, 1) && !in_int_list(c, 1, "axes", &axes, &n)) {
        return false;
    }
    int x = in_id(c, 0);
    if (x == MK_ERROR) return false;
    if (n <= 0) {
        if (noop) return done(c, 0, mk_reshape(c->mk, x, nd(c, x)->shape, nd(c, x)->rank, -1, c->loc));
        axes = NULL, n = 0;
    }
    bool k = keep != 0;
    int y;
    if (is_op(c, "ReduceSum"))
        y = reduce(c, OP_SUM, x, axes, n, k);
    else if (is_op(c, "ReduceMean"))
        y = reduce(c, OP_MEAN, x, axes, n, k);
    else if (is_op(c, "ReduceMax"))
        y = reduce(c, OP_MAX, x, axes, n, k);
    else if (is_op(c, "ReduceMin"))
        y = reduce(c, OP_MIN, x, axes, n, k);
    else if (is_op(c, "ReduceProd"))
        y = reduce(c, OP_PROD, x, axes, n, k);
    else if (is_op(c, "ReduceL1"))
        y = reduce(c, OP_SUM, un(c, OP_ABS, x), axes, n, k);
    else if (is_op(c, "ReduceSumSquare"))
        y = reduce(c, OP_SUM, bin(c, OP_MUL, x, x), axes, n, k);
    else if (is_op(c, "ReduceL2"))
        y = un(c, OP_SQRT, reduce(c, OP_SUM, bin(c, OP_MUL, x, x), axes, n, k));
    else if (is_op(c, "ReduceLogSum"))
        y = un(c, OP_LOG, reduce(c, OP_SUM, x, axes, n, k));
    else { /* ReduceLogSumExp: m + log(sum(exp(x - m))), finite for large x */
        int m = reduce(c, OP_MAX, x, axes, n, true);
        int s = un(c, OP_LOG, reduce(c, OP_SUM, un(c, OP_EXP, bin(c, OP_SUB, x, m)), axes, n, true));
        y = bin(c, OP_ADD, s, m);
        if (!k && y != MK_ERROR) y = mk_squeeze(c->mk, y, axes, axes ? n : 0, c_mkloc(c));
    }
    return done(c, 0, y);
}

/* ReduceSum/ReduceProd of a shape vector (a flattened size). */
bool ints_reduce(Ctx *c) {
    int n;
    const SInt *s = in_ints_quiet(c, 0, &n);
    if (!s || in_rank(c, 0) != 1 || c->nin > 1) return false;
    int64_t keep;
    if (!attr_int(c, "keepdims", 1, &keep)) return false;
    attr_ignore(c, "axes");
    attr_ignore(c, "noop_with_empty_axes");
    Dim *d = ARENA_ARRAY(A(c), Dim, n + 1);
    for (int k = 0; k < n; k++) {
        if (!s[k].sym && s[k].v < 1) return false;
        d[k] = s[k].v;
    }
    Dim r;
    if (is_op(c, "ReduceProd")) {
        r = mk_dim_product(c->mk, d, n);
    } else {
        r = 0;
        for (int k = 0; k < n; k++) r = ir_dim_add(c->mk->g, r, d[k]);
    }
    SInt v = {DIM_IS_SYM(r), r};
    set_out_ints(c, 0, &v, 1, keep ? 1 : 0, c->in[0]->odt);
    return true;
}

bool lower_argreduce(Ctx *c) {
    int64_t axis, keep, last = 0;
    if (!attr_int(c, "axis", 0, &axis) || !attr_int(c, "keepdims", 1, &keep)) return false;
    if (c->opset >= 12 && !attr_int(c, "select_last_index", 0, &last)) return false;
    int x = in_id(c, 0);
    if (x == MK_ERROR || !norm_axis(c, axis, nd(c, x)->rank, "axis", &axis)) return false;
    bool max = is_op(c, "ArgMax");
    if (!last) return done(c, 0, reduce(c, max ? OP_ARGMAX : OP_ARGMIN, x, &axis, 1, keep != 0));
    /* the last index of the extreme value: the largest index where x equals it */
    int ext = reduce(c, max ? OP_MAX : OP_MIN, x, &axis, 1, true);
    const Node *xn = nd(c, x);
    int iota = iota_along(c, xn->shape[axis], (int)axis, xn->rank);
    int cand = mk_where(c->mk, bin(c, OP_EQ, x, ext), iota, c_const(c, -1, KILN_I64), c->loc);
    return done(c, 0, reduce(c, OP_MAX, cand, &axis, 1, keep != 0));
}

bool lower_cumsum(Ctx *c) {
    int64_t exclusive, reverse;
    double axis;
    if (!attr_int(c, "exclusive", 0, &exclusive) || !attr_int(c, "reverse", 0, &reverse) ||
        !in_scalar(c, 1, "axis", &axis))
        return false;
    int x = in_id(c, 0);
    if (x == MK_ERROR) return false;
    return done(c, 0, mk_cumsum(c->mk, x, (int64_t)axis, exclusive != 0, reverse != 0, c_mkloc(c)));
}

/* ---- losses ---- */

/* NegativeLogLikelihoodLoss(input[N, C, d...], target[N, d...], weight[C]?)
 * and SoftmaxCrossEntropyLoss (the same on log_softmax(scores, axis=1), which
 * is its optional second output).  loss = -input[n, target, d...] *
 * weight[target], 0 where target == ignore_index; reduction none, sum, or
 * mean (the sum over the weights of the targets not ignored). */
bool lower_nll_loss(Ctx *c) {
    bool sce = is_op(c, "SoftmaxCrossEntropyLoss");
    const char *reduction;
    const OnnxAttr *ignore_attr = attr_find(c, "ignore_index");
    if (!attr_string(c, "reduction", "mean", &reduction)) return false;
    bool none = strcmp(reduction, "none") == 0, sum = strcmp(reduction, "sum") == 0;
    if (!none && !sum && strcmp(reduction, "mean") != 0) return unsupported(c, "reduction '%s'", reduction);
    int x = in_id(c, 0), t = in_id(c, 1), w = has_in(c, 2) ? in_id(c, 2) : MK_NONE;
    if (x == MK_ERROR || t == MK_ERROR || w == MK_ERROR) return false;
    if (nd(c, x)->rank < 2) return node_error(c, "the input must be [N, C, ...]");
    if (sce) {
        x = mk_softmax(c->mk, OP_LOG_SOFTMAX, x, 1, c_mkloc(c));
        if (c->nout > 1) set_out(c, 1, x);
    }
    t = mk_cast(c->mk, t, KILN_I64, c->loc);
    int keep = MK_NONE; /* bool: target not ignored */
    if (ignore_attr) {
        int ig = c_const(c, (double)ignore_attr->i, KILN_I64);
        keep = mk_binary(c->mk, OP_NE, t, ig, c->loc);
        t = mk_where(c->mk, keep, t, c_const(c, 0, KILN_I64), c->loc); /* an index in range */
    }
    int64_t one = 1;
    int picked = gather_elements(c, x, mk_unsqueeze(c->mk, t, &one, 1, c_mkloc(c)), 1);
    int loss = un(c, OP_NEG, mk_squeeze(c->mk, picked, &one, 1, c_mkloc(c)));
    int weight = w == MK_NONE ? MK_NONE : mk_take(c->mk, w, t, 0, c_mkloc(c));
    if (keep != MK_NONE) {
        int k = mk_cast(c->mk, keep, nd(c, loss)->dtype, c->loc);
        weight = weight == MK_NONE ? k : bin(c, OP_MUL, weight, k);
    }
    if (weight != MK_NONE) loss = bin(c, OP_MUL, loss, weight);
    if (!none) {
        int total = reduce(c, OP_SUM, loss, NULL, 0, false);
        if (sum)
            loss = total;
        else if (weight == MK_NONE)
            loss = reduce(c, OP_MEAN, loss, NULL, 0, false);
        else
            loss = bin(c, OP_DIV, total, reduce(c, OP_SUM, weight, NULL, 0, false));
    }
    set_out(c, 0, loss);
    return loss != MK_ERROR;
}
