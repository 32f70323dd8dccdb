/* ops_resize.c - ONNX operators that resample: Resize, Upsample, ConvTranspose.
 *
 * Contract: as ops_elementwise.c.  Resize works one axis at a time: for an
 * axis of size `in` resized to `out`, the ONNX coordinate transformation
 * and interpolation (nearest with its rounding mode, linear, cubic with
 * exclude_outside) give each output position a few input positions and
 * weights, computed here in double.  Nearest gathers with those positions
 * (take: exact, whatever the values); linear and cubic multiply by the
 * [out, in] matrix of weights along the axis (a matmul), so any scale and
 * any coordinate mode is one kernel kiln already has.  ConvTranspose is a
 * convolution over the input with zeros inserted between its pixels, padded
 * by d*(k-1) less the given pads, with the kernel flipped and its in/out
 * channels exchanged per group.
 */
#include "onnx/import.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static Arena *A(Ctx *c) { return c->arena; }
static Node *nd(Ctx *c, int id) { return ir_node(c->mk->g, id); }

typedef enum { CT_HALF_PIXEL, CT_PYTORCH_HALF_PIXEL, CT_ALIGN_CORNERS, CT_ASYMMETRIC } CoordMode;
typedef enum { IM_NEAREST, IM_LINEAR, IM_CUBIC } InterpMode;
typedef enum { NR_ROUND_PREFER_FLOOR, NR_ROUND_PREFER_CEIL, NR_FLOOR, NR_CEIL } NearestMode;

typedef struct {
    CoordMode coord;
    InterpMode mode;
    NearestMode nearest;
    double cubic_a;
    bool exclude_outside;
} ResizeOpts;

/* The input coordinate of output position i (ONNX's coordinate_transformation_mode). */
static double source_coord(const ResizeOpts *o, int64_t i, int64_t in, int64_t out, double scale) {
    switch (o->coord) {
    case CT_HALF_PIXEL: return (i + 0.5) / scale - 0.5;
    case CT_PYTORCH_HALF_PIXEL: return out > 1 ? (i + 0.5) / scale - 0.5 : 0;
    case CT_ALIGN_CORNERS: { /* the output length as the scale gives it, unrounded (as ONNX's reference) */
        double len = (double)in * scale;
        return out > 1 && len > 1 ? (double)i * (double)(in - 1) / (len - 1) : 0;
    }
    case CT_ASYMMETRIC: return i / scale;
    }
    return 0;
}

static int64_t clamp_index(int64_t i, int64_t n) { return i < 0 ? 0 : i >= n ? n - 1 : i; }

static int64_t nearest_index(const ResizeOpts *o, double x) {
    bool half = x - floor(x) == 0.5;
    switch (o->nearest) {
    case NR_ROUND_PREFER_FLOOR: return half ? (int64_t)floor(x) : (int64_t)llround(x);
    case NR_ROUND_PREFER_CEIL: return half ? (int64_t)ceil(x) : (int64_t)llround(x);
    case NR_FLOOR: return (int64_t)floor(x);
    case NR_CEIL: return (int64_t)ceil(x);
    }
    return 0;
}

/* The cubic convolution kernel of coefficient a at distance t. */
static double cubic(double t, double a) {
    t = fabs(t);
    if (t <= 1) return ((a + 2) * t - (a + 3)) * t * t + 1;
    if (t < 2) return ((a * t - 5 * a) * t + 8 * a) * t - 4 * a;
    return 0;
}

/* x resampled along `axis` from its size to `out`. */
static int resize_axis(Ctx *c, int x, int axis, int64_t out, double scale, const ResizeOpts *o) {
    const Node *xn = nd(c, x);
    int r = xn->rank;
    int64_t in = xn->shape[axis];
    KilnDType dt = xn->dtype;
    if (o->mode == IM_NEAREST) {
        KilnTensor idx;
        int64_t n = out;
        if (!kiln_tensor_init(&idx, KILN_I64, 1, &n)) return node_error(c, "out of host memory"), MK_ERROR;
        for (int64_t i = 0; i < out; i++)
            ((int64_t *)idx.data)[i] = clamp_index(nearest_index(o, source_coord(o, i, in, out, scale)), in);
        return mk_take(c->mk, x, c_tensor(c, &idx, "index"), axis, c_mkloc(c));
    }
    /* y = x (axis moved last) @ M^T, M[out, in] the interpolation weights */
    if ((double)in * (double)out > (double)(1 << 26))
        return unsupported(c, "linear or cubic resizing of an axis from %lld to %lld (the weights would not fit)",
                           (long long)in, (long long)out),
               MK_ERROR;
    KilnTensor m;
    int64_t shape[2] = {in, out};
    if (!kiln_tensor_init(&m, KILN_F64, 2, shape)) return node_error(c, "out of host memory"), MK_ERROR;
    double *w = m.data; /* [in][out]: already transposed */
    for (int64_t i = 0; i < out; i++) {
        double xs = source_coord(o, i, in, out, scale), f = floor(xs), t = xs - f;
        int64_t base = (int64_t)f;
        if (o->mode == IM_LINEAR) {
            w[clamp_index(base, in) * out + i] += 1 - t;
            w[clamp_index(base + 1, in) * out + i] += t;
            continue;
        }
        double coeff[4], total = 0;
        for (int k = 0; k < 4; k++) {
            int64_t at = base - 1 + k;
            coeff[k] = cubic(t - (k - 1), o->cubic_a);
            if (o->exclude_outside && (at < 0 || at >= in)) coeff[k] = 0;
            total += coeff[k];
        }
        for (int k = 0; k < 4; k++)
            w[clamp_index(base - 1 + k, in) * out + i] += o->exclude_outside ? coeff[k] / total : coeff[k];
    }
    KilnTensor mt;
    if (dt != KILN_F64) {
        bool ok = kiln_tensor_init(&mt, dt, 2, shape);
        for (int64_t i = 0; ok && i < in * out; i++) kiln_tensor_set(&mt, i, w[i]);
        kiln_tensor_free(&m);
        if (!ok) return node_error(c, "out of host memory"), MK_ERROR;
        m = mt;
    }
    int mid = c_tensor(c, &m, "weights");
    int64_t *perm = ARENA_ARRAY(A(c), int64_t, r + 1), *inv = ARENA_ARRAY(A(c), int64_t, r + 1);
    for (int k = 0, j = 0; k < r; k++)
        if (k != axis) perm[j++] = k;
    perm[r - 1] = axis;
    for (int k = 0; k < r; k++) inv[perm[k]] = k;
    int t = mk_transpose(c->mk, x, perm, r, c_mkloc(c));
    int y = mk_matmul(c->mk, t, mid, c->loc);
    return mk_transpose(c->mk, y, inv, r, c_mkloc(c));
}

static bool resize_options(Ctx *c, const char *dflt_coord, ResizeOpts *o) {
    const char *mode, *coord, *nearest = "round_prefer_floor";
    double a = -0.75;
    int64_t excl = 0;
    if (!attr_string(c, "mode", "nearest", &mode) ||
        !attr_string(c, "coordinate_transformation_mode", dflt_coord, &coord))
        return false;
    if (c->opset >= 11 &&
        (!attr_string(c, "nearest_mode", "round_prefer_floor", &nearest) ||
         !attr_float(c, "cubic_coeff_a", -0.75, &a) || !attr_int(c, "exclude_outside", 0, &excl)))
        return false;
    attr_ignore(c, "extrapolation_value"); /* only tf_crop_and_resize reads it, refused below */
    static const char *const modes[] = {"nearest", "linear", "cubic"},
                             *const coords[] = {"half_pixel", "pytorch_half_pixel", "align_corners",
                                                "asymmetric"},
                             *const nearests[] = {"round_prefer_floor", "round_prefer_ceil", "floor", "ceil"};
    int im = -1, ct = -1, nm = -1;
    for (int i = 0; i < 4; i++) {
        if (i < 3 && strcmp(mode, modes[i]) == 0) im = i;
        if (strcmp(coord, coords[i]) == 0) ct = i;
        if (strcmp(nearest, nearests[i]) == 0) nm = i;
    }
    if (im < 0) return unsupported(c, "mode '%s'", mode);
    if (ct < 0) return unsupported(c, "coordinate_transformation_mode '%s'", coord);
    if (nm < 0) return unsupported(c, "nearest_mode '%s'", nearest);
    *o = (ResizeOpts){(CoordMode)ct, (InterpMode)im, (NearestMode)nm, a, excl != 0};
    return true;
}

/* Resizes x to out[rank] with scales[rank] (the scale of each axis). */
static int resize_all(Ctx *c, int x, const int64_t *out, const double *scales, const ResizeOpts *o) {
    int r = nd(c, x)->rank;
    for (int k = 0; k < r && x != MK_ERROR; k++) {
        Dim in = nd(c, x)->shape[k];
        if (DIM_IS_SYM(in)) {
            if (scales[k] == 1) continue;
            return node_error(c, "resizes a symbolic dimension; bind it with --dim"), MK_ERROR;
        }
        if (out[k] < 1) return unsupported(c, "an output size of %lld", (long long)out[k]), MK_ERROR;
        if (out[k] == in && scales[k] == 1) continue;
        x = resize_axis(c, x, k, out[k], scales[k], o);
    }
    return x;
}

bool lower_resize(Ctx *c) {
    ResizeOpts o;
    int64_t antialias = 0;
    const char *policy = "stretch";
    const int64_t *axes_attr = NULL;
    int naxes = -1;
    if (c->opset >= 18 &&
        (!attr_int(c, "antialias", 0, &antialias) || !attr_ints(c, "axes", &axes_attr, &naxes) ||
         !attr_string(c, "keep_aspect_ratio_policy", "stretch", &policy)))
        return false;
    if (!resize_options(c, c->opset >= 11 ? "half_pixel" : "asymmetric", &o)) return false;
    if (antialias) return unsupported(c, "antialias=1");
    if (strcmp(policy, "stretch") != 0) return unsupported(c, "keep_aspect_ratio_policy '%s'", policy);
    int x = in_id(c, 0);
    if (x == MK_ERROR) return false;
    int r = nd(c, x)->rank;
    int si = c->opset >= 11 ? 2 : 1; /* scales: input 1 (opset 10), 2 (roi before it from 11) */
    int64_t *out = ARENA_ARRAY(A(c), int64_t, r + 1);
    double *scales = ARENA_ARRAY(A(c), double, r + 1);
    int na = naxes >= 0 ? naxes : r;
    int64_t *axes = ARENA_ARRAY(A(c), int64_t, r + 1);
    for (int k = 0; k < na; k++)
        if (!norm_axis(c, naxes >= 0 ? axes_attr[k] : k, r, "axis", &axes[k])) return false;
    for (int k = 0; k < r; k++) out[k] = nd(c, x)->shape[k], scales[k] = 1;
    const KilnTensor *st = has_in(c, si) ? in_konst(c, si) : NULL;
    if (st && kiln_tensor_numel(st) > 0) {
        if (kiln_tensor_numel(st) != na)
            return node_error(c, "scales has %lld entries for %d axes", (long long)kiln_tensor_numel(st), na);
        for (int k = 0; k < na; k++) {
            double s = kiln_tensor_get(st, k);
            Dim in = nd(c, x)->shape[axes[k]];
            if (!(s > 0)) return node_error(c, "scale %g is not positive", s);
            scales[axes[k]] = s;
            if (!DIM_IS_SYM(in)) out[axes[k]] = (int64_t)floor((double)in * s);
        }
    } else if (c->opset >= 11 && has_in(c, 3)) {
        int64_t *sizes;
        int n;
        if (!in_int_list(c, 3, "sizes", &sizes, &n)) return false;
        if (n != na) return node_error(c, "sizes has %d entries for %d axes", n, na);
        for (int k = 0; k < na; k++) {
            Dim in = nd(c, x)->shape[axes[k]];
            if (DIM_IS_SYM(in)) return node_error(c, "resizes a symbolic dimension; bind it with --dim");
            out[axes[k]] = sizes[k];
            scales[axes[k]] = (double)sizes[k] / (double)in;
        }
    } else if (has_in(c, si)) {
        return node_error(c, "scales (input '%s') must be known when the model is imported", c->in[si]->name);
    } else {
        return node_error(c, "needs scales or sizes");
    }
    if (c->opset >= 11 && has_in(c, 1)) {
        const KilnTensor *roi = in_konst(c, 1);
        (void)roi; /* roi matters only to tf_crop_and_resize, which resize_options refuses */
    }
    int y = resize_all(c, x, out, scales, &o);
    set_out_odt(c, 0, y, c->in[0]->odt);
    return y != MK_ERROR;
}

/* Upsample (opset 7-9): Resize with asymmetric coordinates; scales as an
 * attribute (7) or an input (9). */
bool lower_upsample(Ctx *c) {
    const char *mode;
    if (!attr_string(c, "mode", "nearest", &mode)) return false;
    ResizeOpts o = {CT_ASYMMETRIC, IM_NEAREST, NR_FLOOR, -0.75, false};
    if (strcmp(mode, "linear") == 0 || strcmp(mode, "bilinear") == 0)
        o.mode = IM_LINEAR;
    else if (strcmp(mode, "nearest") != 0)
        return unsupported(c, "mode '%s'", mode);
    int x = in_id(c, 0);
    if (x == MK_ERROR) return false;
    int r = nd(c, x)->rank;
    double *scales = ARENA_ARRAY(A(c), double, r + 1);
    int64_t *out = ARENA_ARRAY(A(c), int64_t, r + 1);
    const float *sa;
    int n;
    if (c->opset < 9) {
        if (!attr_floats(c, "scales", &sa, &n)) return false;
        if (n != r) return node_error(c, "scales has %d entries for rank %d", n, r);
        for (int k = 0; k < r; k++) scales[k] = sa[k];
    } else {
        if (!has_in(c, 1))
            return node_error(c, "Upsample needs 2 inputs from opset 9 on; input 2 (scales) is missing");
        const KilnTensor *st = in_konst(c, 1);
        if (!st) return node_error(c, "scales must be known when the model is imported");
        if (kiln_tensor_numel(st) != r) return node_error(c, "scales has the wrong length");
        for (int k = 0; k < r; k++) scales[k] = kiln_tensor_get(st, k);
    }
    for (int k = 0; k < r; k++) {
        Dim in = nd(c, x)->shape[k];
        if (!(scales[k] > 0)) return node_error(c, "scale %g is not positive", scales[k]);
        out[k] = DIM_IS_SYM(in) ? 0 : (int64_t)floor((double)in * scales[k]);
    }
    int y = resize_all(c, x, out, scales, &o);
    set_out_odt(c, 0, y, c->in[0]->odt);
    return y != MK_ERROR;
}

/* ---- ConvTranspose ---- */

/* x with (s - 1) zeros between neighbours along the spatial axes 2 and 3. */
static int insert_zeros(Ctx *c, int x, const int64_t s[2]) {
    if (s[0] == 1 && s[1] == 1) return x;
    const Node *xn = nd(c, x);
    Dim n = xn->shape[0], ch = xn->shape[1], h = xn->shape[2], w = xn->shape[3];
    Dim d6[6] = {n, ch, h, 1, w, 1};
    int y = mk_reshape(c->mk, x, d6, 6, -1, c->loc);
    int64_t pads[12] = {0, 0, 0, 0, 0, 0, 0, s[0] - 1, 0, 0, 0, s[1] - 1};
    y = mk_pad(c->mk, y, pads, 6, 0, c_mkloc(c));
    Dim d4[4] = {n, ch, h * s[0], w * s[1]};
    y = mk_reshape(c->mk, y, d4, 4, -1, c->loc);
    MkSlice sl[4] = {{.step = 1},
                     {.step = 1},
                     {.stop = (h - 1) * s[0] + 1, .has_stop = true, .step = 1},
                     {.stop = (w - 1) * s[1] + 1, .has_stop = true, .step = 1}};
    return mk_index(c->mk, y, sl, 4, c_mkloc(c));
}

/* w[C, O/g, kh, kw] (ConvTranspose's layout) -> [O, C/g, kh, kw] flipped in space. */
static int transpose_kernel(Ctx *c, int w, int64_t g) {
    const Node *wn = nd(c, w);
    Dim ci = wn->shape[0], og = wn->shape[1], kh = wn->shape[2], kw = wn->shape[3];
    Dim d5[5] = {g, ci / g, og, kh, kw};
    static const int64_t perm[5] = {0, 2, 1, 3, 4};
    int t = mk_transpose(c->mk, mk_reshape(c->mk, w, d5, 5, -1, c->loc), perm, 5, c_mkloc(c));
    Dim d4[4] = {g * og, ci / g, kh, kw};
    t = mk_reshape(c->mk, t, d4, 4, -1, c->loc);
    for (int axis = 2; axis < 4 && t != MK_ERROR; axis++) {
        Dim k = axis == 2 ? kh : kw;
        if (k == 1) continue;
        KilnTensor rev;
        int64_t n = k;
        if (!kiln_tensor_init(&rev, KILN_I64, 1, &n)) return node_error(c, "out of host memory"), MK_ERROR;
        for (int64_t i = 0; i < k; i++) ((int64_t *)rev.data)[i] = k - 1 - i;
        t = mk_take(c->mk, t, c_tensor(c, &rev, axis == 2 ? "flip_h" : "flip_w"), axis, c_mkloc(c));
    }
    return t;
}

static bool pair_attr(Ctx *c, const char *name, int nsp, int64_t dflt, int64_t *out) {
    const int64_t *v;
    int n;
    if (!attr_ints(c, name, &v, &n)) return false;
    if (n >= 0 && n != nsp)
        return node_error(c, "attribute %s has %d entries for %d spatial dimensions", name, n, nsp);
    for (int k = 0; k < nsp; k++) out[k] = n < 0 ? dflt : v[k];
    return true;
}

bool lower_conv_transpose(Ctx *c) {
    int64_t group;
    if (!attr_int(c, "group", 1, &group)) return false;
    int x = in_id(c, 0), w = in_id(c, 1), bias = has_in(c, 2) ? in_id(c, 2) : MK_NONE;
    if (x == MK_ERROR || w == MK_ERROR || bias == MK_ERROR) return false;
    int nsp = nd(c, x)->rank - 2;
    if (nsp < 1 || nsp > 2 || nd(c, w)->rank != nsp + 2)
        return unsupported(c, "%d spatial dimensions (kiln has 1-D and 2-D windows)", nsp);
    /* the attributes per spatial dimension, then in 2-D form: a 1-D op is a 2-D one of height 1 */
    int64_t s1[2], d1[2], op1[2], ks1[2];
    const int64_t *pads, *outshape;
    int np, nos;
    const char *auto_pad;
    if (!pair_attr(c, "strides", nsp, 1, s1) || !pair_attr(c, "dilations", nsp, 1, d1) ||
        !pair_attr(c, "output_padding", nsp, 0, op1) || !pair_attr(c, "kernel_shape", nsp, 0, ks1) ||
        !attr_ints(c, "pads", &pads, &np) || !attr_ints(c, "output_shape", &outshape, &nos) ||
        !attr_string(c, "auto_pad", "NOTSET", &auto_pad))
        return false;
    if (np >= 0 && np != 2 * nsp) return node_error(c, "pads has %d entries", np);
    if (nos >= 0 && nos < nsp) return node_error(c, "output_shape has %d entries", nos);
    bool same = strcmp(auto_pad, "SAME_UPPER") == 0 || strcmp(auto_pad, "SAME_LOWER") == 0;
    if (!same && strcmp(auto_pad, "VALID") != 0 && strcmp(auto_pad, "NOTSET") != 0)
        return unsupported(c, "auto_pad '%s'", auto_pad);
    int64_t k[2] = {1, 1}, s[2] = {1, 1}, d[2] = {1, 1}, op[2] = {0, 0}, pb[2] = {0, 0}, pe[2] = {0, 0};
    for (int i = 0; i < nsp; i++) {
        int t = nsp == 1 ? 1 : i;
        Dim kd = nd(c, w)->shape[2 + i], in = nd(c, x)->shape[2 + i];
        if (DIM_IS_SYM(kd) || DIM_IS_SYM(in))
            return node_error(c, "needs known spatial sizes; bind them with --dim");
        if (ks1[i] && ks1[i] != kd) return node_error(c, "kernel_shape disagrees with the weight's shape");
        k[t] = kd, s[t] = s1[i], d[t] = d1[i], op[t] = op1[i];
        if (s[t] < 1 || d[t] < 1 || op[t] < 0 || (op[t] >= s[t] && op[t] >= d[t]))
            return node_error(c, "strides, dilations or output_padding out of range");
        if (np >= 0 && strcmp(auto_pad, "NOTSET") == 0) pb[t] = pads[i], pe[t] = pads[nsp + i];
        int64_t full = s[t] * (in - 1) + op[t] + (k[t] - 1) * d[t] + 1; /* the size with no padding */
        if (nos >= 0 || same) {                                         /* pads from the wanted output size */
            int64_t want = nos >= 0 ? outshape[nos - nsp + i] : in * s[t], total = full - want;
            if (total < 0)
                return unsupported(c, "an output size larger than the unpadded transposed convolution");
            bool extra_at_end = strcmp(auto_pad, "SAME_LOWER") != 0; /* SAME_UPPER and output_shape */
            pb[t] = extra_at_end ? total / 2 : total - total / 2;
            pe[t] = total - pb[t];
        }
        if (pb[t] < 0 || pe[t] < 0) return node_error(c, "pads must not be negative");
    }
    if (nsp == 1) {
        int64_t ax = 2;
        x = mk_unsqueeze(c->mk, x, &ax, 1, c_mkloc(c));
        w = mk_unsqueeze(c->mk, w, &ax, 1, c_mkloc(c));
    }
    /* the equivalent convolution pads d*(k-1) - pad, plus output_padding at the end; below zero, it crops */
    int64_t lo[2], hi[2];
    for (int i = 0; i < 2; i++) lo[i] = d[i] * (k[i] - 1) - pb[i], hi[i] = d[i] * (k[i] - 1) - pe[i] + op[i];
    int xz = insert_zeros(c, x, s);
    MkSlice sl[4] = {{.step = 1}, {.step = 1}, {.step = 1}, {.step = 1}};
    bool crop = false;
    for (int i = 0; i < 2; i++) {
        if (lo[i] >= 0 && hi[i] >= 0) continue;
        crop = true;
        sl[2 + i] = (MkSlice){.start = lo[i] < 0 ? -lo[i] : 0, .has_start = true, .step = 1};
        if (hi[i] < 0) sl[2 + i].stop = hi[i], sl[2 + i].has_stop = true;
    }
    if (crop && xz != MK_ERROR) xz = mk_index(c->mk, xz, sl, 4, c_mkloc(c));
    int64_t pad8[8] = {0,
                       0,
                       0,
                       0,
                       lo[0] > 0 ? lo[0] : 0,
                       hi[0] > 0 ? hi[0] : 0,
                       lo[1] > 0 ? lo[1] : 0,
                       hi[1] > 0 ? hi[1] : 0};
    if (xz != MK_ERROR) xz = mk_pad(c->mk, xz, pad8, 4, 0, c_mkloc(c));
    int wt = transpose_kernel(c, w, group);
    if (xz == MK_ERROR || wt == MK_ERROR) return false;
    MkConv mc = {.stride = {1, 1}, .dilation = {d[0], d[1]}, .groups = group};
    int y = mk_conv2d(c->mk, xz, wt, bias, &mc, c_mkloc(c));
    if (nsp == 1 && y != MK_ERROR) {
        int64_t ax = 2;
        y = mk_squeeze(c->mk, y, &ax, 1, c_mkloc(c));
    }
    set_out(c, 0, y);
    return y != MK_ERROR;
}
