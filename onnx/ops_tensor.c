/* ops_tensor.c - ONNX operators that make, reshape and move tensors:
 * Constant, Shape, Size, Reshape, Flatten, Transpose, Squeeze, Unsqueeze,
 * Concat, Split, Slice, Expand, Tile, Gather, ConstantOfShape, Range, Pad,
 * Trilu, EyeLike, OneHot, DepthToSpace, SpaceToDepth.
 *
 * Contract: as ops_elementwise.c.  Attributes that moved to inputs in later
 * opsets (Squeeze's axes at 13, Split's split at 13, Pad's pads at 11,
 * Slice's starts at 10) are read from where the model's opset puts them.
 * Shapes given as inputs (Reshape, Expand, ConstantOfShape, Range, Tile) are
 * taken from shape vectors, so they may hold symbolic dimensions; ints_*
 * evaluate Shape-arithmetic ops on such vectors.
 */
#include "onnx/import.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static Arena *A(Ctx *c) { return c->arena; }
static Node *nd(Ctx *c, int id) { return ir_node(c->mk->g, id); }

static bool done(Ctx *c, int k, int id) {
    set_out(c, k, id);
    return id != MK_ERROR;
}

/* A pass-through op keeps its input's ONNX dtype (int8 held as i32 ...). */
static bool done_like(Ctx *c, int k, int id, int input) {
    if (!has_in(c, input)) return done(c, k, id); /* an absent input: id is already an error */
    set_out_odt(c, k, id, c->in[input]->odt);
    return id != MK_ERROR;
}

/* An attribute list of ints or, from opset `moved`, input `i` (absent: n = -1). */
static bool ints_attr_or_input(Ctx *c, const char *name, int moved, int i, int64_t **out, int *n) {
    if (c->opset < moved) {
        const int64_t *v;
        if (!attr_ints(c, name, &v, n)) return false;
        *out = (int64_t *)v;
        return true;
    }
    *n = -1;
    *out = NULL;
    if (!has_in(c, i)) return true;
    return in_int_list(c, i, name, out, n);
}

/* ---- Constant ---- */

bool lower_constant(Ctx *c) {
    static const char *const refused[] = {"sparse_value", "value_string", "value_strings"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++)
        if (attr_find(c, refused[i])) return unsupported(c, "attribute %s", refused[i]);
    const OnnxAttr *a;
    if ((a = attr_find(c, "value"))) {
        if (!a->t) return node_error(c, "attribute value holds no tensor");
        return set_out_tensor(c, 0, a->t);
    }
    KilnTensor t;
    int64_t n;
    if ((a = attr_find(c, "value_float")) || (a = attr_find(c, "value_int"))) {
        bool f = strcmp(a->name, "value_float") == 0;
        if (!kiln_tensor_init(&t, f ? KILN_F32 : KILN_I64, 0, NULL))
            return node_error(c, "out of host memory");
        if (f)
            kiln_tensor_set(&t, 0, a->f);
        else
            ((int64_t *)t.data)[0] = a->i;
        return set_out_konst(c, 0, &t, f ? ONNX_FLOAT : ONNX_INT64);
    }
    if ((a = attr_find(c, "value_floats")) || (a = attr_find(c, "value_ints"))) {
        bool f = strcmp(a->name, "value_floats") == 0;
        n = f ? a->nfloats : a->nints;
        if (!kiln_tensor_init(&t, f ? KILN_F32 : KILN_I64, 1, &n)) return node_error(c, "out of host memory");
        for (int64_t i = 0; i < n; i++) {
            if (f)
                ((float *)t.data)[i] = a->floats[i];
            else
                ((int64_t *)t.data)[i] = a->ints[i];
        }
        return set_out_konst(c, 0, &t, f ? ONNX_FLOAT : ONNX_INT64);
    }
    return node_error(c, "has no value attribute");
}

/* ---- shapes as values ---- */

static SInt dim_sint(Dim d) { return (SInt){DIM_IS_SYM(d), d}; }

bool lower_shape(Ctx *c) {
    int r = in_rank(c, 0);
    int64_t start = 0, end = r;
    if (c->opset >= 15 && (!attr_int(c, "start", 0, &start) || !attr_int(c, "end", r, &end))) return false;
    if (start < 0) start += r;
    if (end < 0) end += r;
    start = start < 0 ? 0 : start > r ? r : start;
    end = end < 0 ? 0 : end > r ? r : end;
    int n = end > start ? (int)(end - start) : 0;
    SInt *s = ARENA_ARRAY(A(c), SInt, n + 1);
    for (int k = 0; k < n; k++) s[k] = dim_sint(in_shape(c, 0)[start + k]);
    set_out_ints(c, 0, s, n, 1, ONNX_INT64);
    return true;
}

bool lower_size(Ctx *c) {
    SInt s = dim_sint(mk_dim_product(c->mk, in_shape(c, 0), in_rank(c, 0)));
    set_out_ints(c, 0, &s, 1, 0, ONNX_INT64);
    return true;
}

/* ---- reshaping ---- */

bool lower_reshape(Ctx *c) {
    int64_t allowzero = 0;
    if (c->opset >= 14 && !attr_int(c, "allowzero", 0, &allowzero)) return false;
    int n;
    const SInt *s = in_ints(c, 1, "shape", &n);
    if (!s) return false;
    int x = in_id(c, 0);
    if (x == MK_ERROR) return false;
    Dim *dims = ARENA_ARRAY(A(c), Dim, n + 1);
    int infer = -1;
    for (int k = 0; k < n; k++) {
        if (s[k].sym) {
            dims[k] = s[k].v;
        } else if (s[k].v == -1) {
            if (infer >= 0) return node_error(c, "shape has more than one -1");
            infer = k;
            dims[k] = 1;
        } else if (s[k].v == 0 && !allowzero) {
            if (k >= nd(c, x)->rank)
                return node_error(c, "shape entry %d is 0 (copy) but the input has rank %d", k,
                                  nd(c, x)->rank);
            dims[k] = nd(c, x)->shape[k];
        } else if (s[k].v <= 0) {
            return unsupported(c, "shape entry %d is %lld (kiln tensors have no empty dimension)", k,
                               (long long)s[k].v);
        } else {
            dims[k] = s[k].v;
        }
    }
    return done_like(c, 0, mk_reshape(c->mk, x, dims, n, infer, c->loc), 0);
}

bool lower_flatten(Ctx *c) {
    int64_t axis;
    int r = in_rank(c, 0);
    if (!attr_int(c, "axis", 1, &axis)) return false;
    if (axis < 0) axis += r;
    if (axis < 0 || axis > r)
        return node_error(c, "axis %lld is out of range for rank %d", (long long)axis, r);
    int x = in_id(c, 0);
    if (x == MK_ERROR) return false;
    Dim dims[2] = {mk_dim_product(c->mk, nd(c, x)->shape, (int)axis),
                   mk_dim_product(c->mk, nd(c, x)->shape + axis, r - (int)axis)};
    return done_like(c, 0, mk_reshape(c->mk, x, dims, 2, -1, c->loc), 0);
}

bool lower_transpose(Ctx *c) {
    const int64_t *perm;
    int n;
    if (!attr_ints(c, "perm", &perm, &n)) return false;
    int x = in_id(c, 0);
    if (x == MK_ERROR) return false;
    return done_like(
        c, 0, mk_transpose(c->mk, x, n >= 0 ? perm : NULL, n >= 0 ? n : nd(c, x)->rank, c_mkloc(c)), 0);
}

bool lower_squeeze(Ctx *c) {
    int64_t *axes;
    int n;
    if (!ints_attr_or_input(c, "axes", 13, 1, &axes, &n)) return false;
    int x = in_id(c, 0);
    if (x == MK_ERROR) return false;
    return done_like(c, 0, mk_squeeze(c->mk, x, n >= 0 ? axes : NULL, n >= 0 ? n : 0, c_mkloc(c)), 0);
}

bool lower_unsqueeze(Ctx *c) {
    int64_t *axes;
    int n;
    if (!ints_attr_or_input(c, "axes", 13, 1, &axes, &n)) return false;
    if (n < 0) return node_error(c, "needs axes");
    int x = in_id(c, 0);
    if (x == MK_ERROR) return false;
    return done_like(c, 0, mk_unsqueeze(c->mk, x, axes, n, c_mkloc(c)), 0);
}

/* Squeeze of a one-element shape vector to a scalar, and the reverse. */
bool ints_squeeze(Ctx *c) {
    int n;
    const SInt *s = in_ints_quiet(c, 0, &n);
    if (!s || n != 1 || in_rank(c, 0) != 1) return false;
    attr_ignore(c, "axes");
    set_out_ints(c, 0, s, 1, 0, c->in[0]->odt);
    return true;
}

bool ints_unsqueeze(Ctx *c) {
    int n;
    const SInt *s = in_ints_quiet(c, 0, &n);
    if (!s || in_rank(c, 0) != 0) return false;
    attr_ignore(c, "axes");
    set_out_ints(c, 0, s, 1, 1, c->in[0]->odt);
    return true;
}

/* ---- joining and splitting ---- */

bool lower_concat(Ctx *c) {
    int64_t axis;
    if (!attr_int(c, "axis", 0, &axis)) return false;
    int *ids = ARENA_ARRAY(A(c), int, c->nin + 1);
    for (int i = 0; i < c->nin; i++)
        if ((ids[i] = in_id(c, i)) == MK_ERROR) return false;
    return done_like(c, 0, mk_concat(c->mk, ids, c->nin, axis, c_mkloc(c)), 0);
}

bool ints_concat(Ctx *c) {
    int total = 0;
    for (int i = 0; i < c->nin; i++) {
        int n;
        if (!has_in(c, i) || in_rank(c, i) != 1 || !in_ints_quiet(c, i, &n)) return false;
        total += n;
    }
    attr_ignore(c, "axis");
    SInt *s = ARENA_ARRAY(A(c), SInt, total + 1);
    for (int i = 0, at = 0, n; i < c->nin; i++) {
        const SInt *v = in_ints_quiet(c, i, &n);
        memcpy(s + at, v, sizeof(SInt) * (size_t)n);
        at += n;
    }
    set_out_ints(c, 0, s, total, 1, c->in[0]->odt);
    return true;
}

/* x[start:stop] along `axis` (positive step), the other axes whole. */
static int slice_axis(Ctx *c, int x, int axis, int64_t start, int64_t stop, int64_t step) {
    MkSlice *s = ARENA_ARRAY(A(c), MkSlice, axis + 1);
    for (int k = 0; k < axis; k++) s[k] = (MkSlice){.step = 1};
    s[axis] = (MkSlice){.start = start, .stop = stop, .step = step, .has_start = true, .has_stop = true};
    return mk_index(c->mk, x, s, axis + 1, c_mkloc(c));
}

bool lower_split(Ctx *c) {
    int64_t axis, num = 0;
    int64_t *split;
    int n;
    if (!attr_int(c, "axis", 0, &axis) || !ints_attr_or_input(c, "split", 13, 1, &split, &n)) return false;
    if (c->opset >= 18 && !attr_int(c, "num_outputs", 0, &num)) return false;
    int x = in_id(c, 0);
    if (x == MK_ERROR || !norm_axis(c, axis, nd(c, x)->rank, "axis", &axis)) return false;
    Dim len = nd(c, x)->shape[axis];
    if (DIM_IS_SYM(len))
        return node_error(c, "splits axis %lld, whose size is symbolic; bind it with --dim", (long long)axis);
    if (n < 0) { /* equal parts; the last one smaller when num_outputs does not divide (opset 18) */
        n = c->nout;
        if (n == 0) return node_error(c, "Split has no outputs");
        split = ARENA_ARRAY(A(c), int64_t, n + 1);
        int64_t part = (len + n - 1) / n;
        if (!num && len % n)
            return node_error(c, "axis size %lld does not split into %d equal parts", (long long)len, n);
        for (int k = 0; k < n; k++) split[k] = k < n - 1 ? part : len - part * (n - 1);
    }
    if (n != c->nout) return node_error(c, "split has %d parts for %d outputs", n, c->nout);
    int64_t at = 0;
    for (int k = 0; k < n; k++) {
        if (split[k] <= 0) return unsupported(c, "an empty part (split %lld)", (long long)split[k]);
        if (!done_like(c, k, slice_axis(c, x, (int)axis, at, at + split[k], 1), 0)) return false;
        at += split[k];
    }
    if (at != len)
        return node_error(c, "parts add up to %lld, the axis has %lld", (long long)at, (long long)len);
    return true;
}

/* ---- slicing ---- */

typedef struct {
    int n;
    int64_t *starts, *ends, *axes, *steps;
} SliceArgs;

static bool slice_args(Ctx *c, SliceArgs *s) {
    int ns, ne, na = -1, nt = -1;
    s->axes = s->steps = NULL;
    if (c->opset < 10) {
        const int64_t *st, *en, *ax;
        if (!attr_ints(c, "starts", &st, &ns) || !attr_ints(c, "ends", &en, &ne) ||
            !attr_ints(c, "axes", &ax, &na))
            return false;
        s->starts = (int64_t *)st, s->ends = (int64_t *)en, s->axes = (int64_t *)ax;
    } else {
        if (!in_int_list(c, 1, "starts", &s->starts, &ns) || !in_int_list(c, 2, "ends", &s->ends, &ne))
            return false;
        if (has_in(c, 3) && !in_int_list(c, 3, "axes", &s->axes, &na)) return false;
        if (has_in(c, 4) && !in_int_list(c, 4, "steps", &s->steps, &nt)) return false;
    }
    if (ns < 0 || ns != ne || (na >= 0 && na != ns) || (nt >= 0 && nt != ns))
        return node_error(c, "starts, ends, axes and steps must have one entry each per sliced axis");
    s->n = ns;
    return true;
}

/* [n-1, n-2, ..., 0]: the indices that reverse an axis of size n. */
static int reversed_indices(Ctx *c, Dim n) {
    KilnTensor t;
    int64_t len = n;
    if (!kiln_tensor_init(&t, KILN_I64, 1, &len)) return node_error(c, "out of host memory"), MK_ERROR;
    for (int64_t i = 0; i < n; i++) ((int64_t *)t.data)[i] = n - 1 - i;
    return c_tensor(c, &t, "reversed");
}

/* A slice whose end is a symbolic dimension (position ids sliced to the
 * sequence length in BERT exports): from 0 with step 1, that is a take of
 * arange(end), which keeps the dimension symbolic.  Other axes as usual. */
static bool slice_symbolic_end(Ctx *c, const SInt *ends, int ne) {
    int64_t *starts, *axes = NULL, *steps = NULL;
    int ns, na = ne, nt = ne;
    if (!in_int_list(c, 1, "starts", &starts, &ns) ||
        (has_in(c, 3) && !in_int_list(c, 3, "axes", &axes, &na)) ||
        (has_in(c, 4) && !in_int_list(c, 4, "steps", &steps, &nt)))
        return false;
    if (ns != ne || na != ne || nt != ne)
        return node_error(c, "starts, ends, axes and steps must have one entry each");
    int x = in_id(c, 0);
    if (x == MK_ERROR) return false;
    for (int i = 0; i < ne && x != MK_ERROR; i++) {
        int64_t axis = axes ? axes[i] : i, step = steps ? steps[i] : 1;
        if (!norm_axis(c, axis, nd(c, x)->rank, "axis", &axis)) return false;
        if (!ends[i].sym) {
            if (step < 1) return node_error(c, "a slice with a symbolic end elsewhere needs positive steps");
            x = slice_axis(c, x, (int)axis, starts[i], ends[i].v, step);
            continue;
        }
        if (starts[i] != 0 || step != 1)
            return node_error(
                c, "a slice to a symbolic end must start at 0 with step 1; bind the dimension with --dim");
        x = mk_take(c->mk, x, mk_arange(c->mk, (Dim)ends[i].v, KILN_I64, c_mkloc(c)), axis, c_mkloc(c));
    }
    return done_like(c, 0, x, 0);
}

bool lower_slice(Ctx *c) {
    if (c->opset >= 10) {
        int ne;
        const SInt *ends = in_ints_quiet(c, 2, &ne);
        for (int i = 0; ends && i < ne; i++)
            if (ends[i].sym) return slice_symbolic_end(c, ends, ne);
    }
    SliceArgs a;
    if (!slice_args(c, &a)) return false;
    int x = in_id(c, 0);
    if (x == MK_ERROR) return false;
    int r = nd(c, x)->rank;
    MkSlice *s = ARENA_ARRAY(A(c), MkSlice, r + 1);
    for (int k = 0; k < r; k++) s[k] = (MkSlice){.step = 1};
    bool *seen = ARENA_ARRAY(A(c), bool, r + 1);
    for (int i = 0; i < a.n; i++) {
        int64_t axis = a.axes ? a.axes[i] : i, step = a.steps ? a.steps[i] : 1;
        if (!norm_axis(c, axis, r, "axis", &axis)) return false;
        if (seen[axis]) return node_error(c, "axis %lld is sliced twice", (long long)axis);
        seen[axis] = true;
        if (step == 0) return node_error(c, "a step is 0");
        int64_t start = a.starts[i], end = a.ends[i];
        if (step < 0) { /* walk the axis reversed (a take), forwards */
            Dim n = nd(c, x)->shape[axis];
            if (DIM_IS_SYM(n))
                return node_error(c, "a negative step over a symbolic axis; bind it with --dim");
            if (start < 0) start += n;
            if (end < 0) end += n;
            start = start < 0 ? 0 : start > n - 1 ? n - 1 : start;
            end = end < -1 ? -1 : end > n - 1 ? n - 1 : end;
            x = mk_take(c->mk, x, reversed_indices(c, n), axis, c_mkloc(c));
            start = n - 1 - start, end = n - 1 - end, step = -step;
        }
        s[axis] = (MkSlice){.start = start, .stop = end, .step = step, .has_start = true, .has_stop = true};
    }
    int y = x == MK_ERROR ? MK_ERROR : mk_index(c->mk, x, s, r, c_mkloc(c));
    for (int k = 0; y != MK_ERROR && k < nd(c, y)->rank; k++)
        if (nd(c, y)->shape[k] == 0)
            return unsupported(c, "an empty result (kiln tensors have no empty dimension)");
    return done_like(c, 0, y, 0);
}

/* Slice of a shape vector (rank 1) with known bounds. */
bool ints_slice(Ctx *c) {
    int n;
    const SInt *v = in_ints_quiet(c, 0, &n);
    if (!v || in_rank(c, 0) != 1) return false;
    for (int i = 1; i < c->nin; i++) {
        int m;
        const SInt *b = in_ints_quiet(c, i, &m);
        for (int k = 0; b && k < m; k++)
            if (b[k].sym) return false;
        if (has_in(c, i) && !b) return false;
    }
    SliceArgs a;
    if (!slice_args(c, &a) || a.n != 1 || (a.axes && a.axes[0] != 0 && a.axes[0] != -1)) return false;
    int64_t step = a.steps ? a.steps[0] : 1, start = a.starts[0], end = a.ends[0];
    if (step == 0) return false;
    /* ONNX's clamping: to [0, n] for a positive step, [-1, n-1] for a negative one */
    if (start < 0) start += n;
    if (end < 0) end += n;
    int64_t lo = step > 0 ? 0 : -1, hi = step > 0 ? n : n - 1;
    start = start < lo ? lo : start > hi ? hi : start;
    end = end < lo ? lo : end > hi ? hi : end;
    SInt *s = ARENA_ARRAY(A(c), SInt, n + 1);
    int m = 0;
    for (int64_t i = start; step > 0 ? i < end : i > end; i += step) s[m++] = v[i];
    set_out_ints(c, 0, s, m, 1, c->in[0]->odt);
    return true;
}

/* ---- broadcasting and repeating ---- */

bool lower_expand(Ctx *c) {
    int n;
    const SInt *s = in_ints(c, 1, "shape", &n);
    if (!s) return false;
    int x = in_id(c, 0);
    if (x == MK_ERROR) return false;
    const Node *xn = nd(c, x);
    int r = n > xn->rank ? n : xn->rank;
    Dim *dims = ARENA_ARRAY(A(c), Dim, r + 1);
    for (int k = 0; k < r; k++) { /* bidirectional: either side's 1 gives way */
        int ks = k - (r - n), kx = k - (r - xn->rank);
        Dim want = ks >= 0 ? (Dim)s[ks].v : 1, have = kx >= 0 ? xn->shape[kx] : 1;
        if (ks >= 0 && !s[ks].sym && s[ks].v <= 0)
            return unsupported(c, "shape entry %d is %lld", ks, (long long)s[ks].v);
        dims[k] = want == 1 ? have : want;
    }
    return done_like(c, 0, mk_broadcast(c->mk, x, dims, r, c->loc), 0);
}

bool lower_tile(Ctx *c) {
    int64_t *rep;
    int n;
    if (!in_int_list(c, 1, "repeats", &rep, &n)) return false;
    int x = in_id(c, 0);
    if (x == MK_ERROR) return false;
    int r = nd(c, x)->rank;
    if (n != r) return node_error(c, "repeats has %d entries for rank %d", n, r);
    for (int k = 0; k < r && x != MK_ERROR; k++) {
        if (rep[k] == 1) continue;
        if (rep[k] < 1) return unsupported(c, "repeats entry %d is %lld", k, (long long)rep[k]);
        /* [.., d, ..] -> [.., 1, d, ..] -> [.., rep, d, ..] -> [.., rep*d, ..] */
        int64_t ax = k;
        int u = mk_unsqueeze(c->mk, x, &ax, 1, c_mkloc(c));
        if (u == MK_ERROR) return false;
        Dim *b = ARENA_ARRAY(A(c), Dim, r + 2);
        memcpy(b, nd(c, u)->shape, sizeof(Dim) * (size_t)(r + 1));
        b[k] = rep[k];
        int e = mk_broadcast(c->mk, u, b, r + 1, c->loc);
        if (e == MK_ERROR) return false;
        Dim *d = ARENA_ARRAY(A(c), Dim, r + 1);
        memcpy(d, nd(c, x)->shape, sizeof(Dim) * (size_t)r);
        Dim f[2] = {rep[k], d[k]};
        d[k] = mk_dim_product(c->mk, f, 2);
        x = mk_reshape(c->mk, e, d, r, -1, c->loc);
    }
    if (x != MK_ERROR && x == in_id(c, 0)) x = mk_reshape(c->mk, x, nd(c, x)->shape, r, -1, c->loc);
    return done_like(c, 0, x, 0);
}

/* ---- gathering ---- */

bool lower_gather(Ctx *c) {
    int64_t axis;
    if (!attr_int(c, "axis", 0, &axis)) return false;
    int x = in_id(c, 0);
    if (x == MK_ERROR || !norm_axis(c, axis, nd(c, x)->rank, "axis", &axis)) return false;
    const KilnTensor *idx = in_konst(c, 1);
    if (idx && idx->rank == 0) { /* one known index: a slice that drops the axis */
        int64_t i = (int64_t)kiln_tensor_get(idx, 0);
        Dim len = nd(c, x)->shape[axis];
        if (!DIM_IS_SYM(len) && (i < -len || i >= len))
            return node_error(c, "index %lld is out of range for an axis of size %lld", (long long)i,
                              (long long)len);
        MkSlice *s = ARENA_ARRAY(A(c), MkSlice, axis + 1);
        for (int k = 0; k < axis; k++) s[k] = (MkSlice){.step = 1};
        s[axis] = (MkSlice){.index = true, .start = i, .step = 1};
        return done_like(c, 0, mk_index(c->mk, x, s, (int)axis + 1, c_mkloc(c)), 0);
    }
    int ind = in_id(c, 1);
    if (ind == MK_ERROR) return false;
    return done_like(c, 0, mk_take(c->mk, x, ind, axis, c_mkloc(c)), 0);
}

/* Gather from a shape vector with known indices. */
bool ints_gather(Ctx *c) {
    int n, m;
    const SInt *v = in_ints_quiet(c, 0, &n), *ix = in_ints_quiet(c, 1, &m);
    if (!v || !ix || in_rank(c, 0) != 1) return false;
    attr_ignore(c, "axis");
    SInt *s = ARENA_ARRAY(A(c), SInt, m + 1);
    for (int k = 0; k < m; k++) {
        if (ix[k].sym) return false;
        int64_t i = ix[k].v < 0 ? ix[k].v + n : ix[k].v;
        if (i < 0 || i >= n) return false;
        s[k] = v[i];
    }
    set_out_ints(c, 0, s, m, in_rank(c, 1), c->in[0]->odt);
    return true;
}

/* ---- making tensors ---- */

/* Known, positive dims from a shape vector input. */
static Dim *shape_dims(Ctx *c, int i, const char *what, int *n) {
    const SInt *s = in_ints(c, i, what, n);
    if (!s) return NULL;
    Dim *d = ARENA_ARRAY(A(c), Dim, *n + 1);
    for (int k = 0; k < *n; k++) {
        if (!s[k].sym && s[k].v <= 0) {
            unsupported(c, "%s entry %d is %lld (kiln tensors have no empty dimension)", what, k,
                        (long long)s[k].v);
            return NULL;
        }
        d[k] = s[k].v;
    }
    return d;
}

bool lower_constant_of_shape(Ctx *c) {
    int n;
    Dim *d = shape_dims(c, 0, "shape", &n);
    if (!d) return false;
    const OnnxAttr *a = attr_find(c, "value");
    int32_t odt = ONNX_FLOAT;
    double v = 0;
    KilnDType dt = KILN_F32;
    if (a) {
        KilnTensor t;
        char err[256];
        if (!a->t || a->t->numel != 1) return node_error(c, "attribute value must hold one element");
        odt = a->t->data_type;
        if (!kiln_dtype_for(c, odt, "value", &dt)) return false;
        if (!onnx_tensor_read(a->t, dt, &t, err, sizeof err)) return node_error(c, "%s", err);
        v = kiln_tensor_get(&t, 0);
        kiln_tensor_free(&t);
    }
    int r = mk_full(c->mk, d, n, v, dt, c_mkloc(c));
    set_out_odt(c, 0, r, odt);
    return r != MK_ERROR;
}

/* Range(start, limit, delta): ceil((limit - start) / delta) elements. */
bool lower_range(Ctx *c) {
    int n0, n1, n2;
    const SInt *s0 = in_ints_quiet(c, 0, &n0), *s1 = in_ints_quiet(c, 1, &n1), *s2 = in_ints_quiet(c, 2, &n2);
    KilnDType dt = in_dtype(c, 0);
    Dim count;
    double start, delta;
    if (s0 && s1 && s2 && n0 == 1 && n1 == 1 && n2 == 1 && s1[0].sym) {
        if (s0[0].sym || s0[0].v != 0 || s2[0].sym || s2[0].v != 1)
            return node_error(
                c, "a range over a symbolic limit must start at 0 with step 1; bind the dimension with "
                   "--dim");
        count = s1[0].v, start = 0, delta = 1;
    } else {
        double limit;
        if (!in_scalar(c, 0, "start", &start) || !in_scalar(c, 1, "limit", &limit) ||
            !in_scalar(c, 2, "delta", &delta))
            return false;
        if (delta == 0) return node_error(c, "delta is 0");
        double n = ceil((limit - start) / delta);
        if (!(n >= 1)) return unsupported(c, "an empty range (kiln tensors have no empty dimension)");
        if (n > 1e15) return node_error(c, "a range of %g elements", n);
        count = (Dim)n;
    }
    int r = mk_arange(c->mk, count, dt, c_mkloc(c));
    if (delta != 1) r = mk_binary(c->mk, OP_MUL, r, c_const(c, delta, dt), c->loc);
    if (start != 0) r = mk_binary(c->mk, OP_ADD, r, c_const(c, start, dt), c->loc);
    return done(c, 0, r);
}

/* ---- padding ---- */

/* x with `lo` copies of its edge (or reflections) before and `hi` after, on
 * one axis, made of slices and concatenation. */
static int pad_axis_copy(Ctx *c, int x, int axis, int64_t lo, int64_t hi, bool reflect) {
    Dim len = nd(c, x)->shape[axis];
    if (DIM_IS_SYM(len)) return node_error(c, "pads a symbolic axis; bind it with --dim"), MK_ERROR;
    if (reflect && (lo >= len || hi >= len))
        return unsupported(c, "reflect padding of %lld, %lld on an axis of size %lld", (long long)lo,
                           (long long)hi, (long long)len),
               MK_ERROR;
    int n = (int)(lo + hi + 1), k = 0;
    int *parts = ARENA_ARRAY(A(c), int, n + 1);
    for (int64_t i = lo; i >= 1; i--) /* before: x[i] (reflect) or x[0], nearest last */
        parts[k++] = slice_axis(c, x, axis, reflect ? i : 0, reflect ? i + 1 : 1, 1);
    parts[k++] = x;
    for (int64_t i = 1; i <= hi; i++)
        parts[k++] = slice_axis(c, x, axis, reflect ? len - 1 - i : len - 1, reflect ? len - i : len, 1);
    return mk_concat(c->mk, parts, k, axis, c_mkloc(c));
}

bool lower_pad(Ctx *c) {
    const char *mode;
    if (!attr_string(c, "mode", "constant", &mode)) return false;
    int64_t *pads;
    int n;
    double value = 0;
    if (c->opset < 11) {
        const int64_t *p;
        if (!attr_ints(c, "pads", &p, &n) || !attr_float(c, "value", 0, &value)) return false;
        pads = (int64_t *)p;
    } else {
        if (!in_int_list(c, 1, "pads", &pads, &n)) return false;
        if (has_in(c, 2) && !in_scalar(c, 2, "constant_value", &value)) return false;
    }
    int x = in_id(c, 0);
    if (x == MK_ERROR) return false;
    int r = nd(c, x)->rank;
    int64_t *axes = NULL;
    int na = r;
    if (c->opset >= 18 && has_in(c, 3) && !in_int_list(c, 3, "axes", &axes, &na)) return false;
    if (n != 2 * na) return node_error(c, "pads has %d entries; it needs 2 per padded axis (%d)", n, 2 * na);
    int64_t *lo = ARENA_ARRAY(A(c), int64_t, 2 * r + 2), *hi = lo + r;
    for (int i = 0; i < na; i++) {
        int64_t ax = axes ? axes[i] : i;
        if (!norm_axis(c, ax, r, "axis", &ax)) return false;
        lo[ax] = pads[i], hi[ax] = pads[na + i];
    }
    /* negative pads crop */
    MkSlice *s = ARENA_ARRAY(A(c), MkSlice, r + 1);
    bool crop = false;
    for (int k = 0; k < r; k++) {
        s[k] = (MkSlice){.step = 1};
        if (lo[k] < 0 || hi[k] < 0) {
            crop = true;
            s[k] = (MkSlice){.start = lo[k] < 0 ? -lo[k] : 0, .has_start = true, .step = 1};
            if (hi[k] < 0) s[k].stop = hi[k], s[k].has_stop = true;
            lo[k] = lo[k] < 0 ? 0 : lo[k], hi[k] = hi[k] < 0 ? 0 : hi[k];
        }
    }
    if (crop && (x = mk_index(c->mk, x, s, r, c_mkloc(c))) == MK_ERROR) return false;
    if (strcmp(mode, "constant") == 0) {
        int64_t *pairs = ARENA_ARRAY(A(c), int64_t, 2 * r + 1);
        for (int k = 0; k < r; k++) pairs[2 * k] = lo[k], pairs[2 * k + 1] = hi[k];
        return done_like(c, 0, mk_pad(c->mk, x, pairs, r, value, c_mkloc(c)), 0);
    }
    if (strcmp(mode, "edge") != 0 && strcmp(mode, "reflect") != 0) return unsupported(c, "mode '%s'", mode);
    bool any = false;
    for (int k = 0; k < r && x != MK_ERROR; k++) {
        if (!lo[k] && !hi[k]) continue;
        any = true;
        x = pad_axis_copy(c, x, k, lo[k], hi[k], strcmp(mode, "reflect") == 0);
    }
    if (!any && x != MK_ERROR) x = mk_reshape(c->mk, x, nd(c, x)->shape, r, -1, c->loc);
    return done_like(c, 0, x, 0);
}

/* ---- masks from iotas ---- */

/* cols - rows over the last two axes of size rows x cols: [rows, cols] i64. */
static int diagonal_offsets(Ctx *c, Dim rows, Dim cols) {
    int ri = mk_arange(c->mk, rows, KILN_I64, c_mkloc(c)), ci = mk_arange(c->mk, cols, KILN_I64, c_mkloc(c));
    Dim rs[2] = {rows, 1}, cs[2] = {1, cols};
    ri = mk_reshape(c->mk, ri, rs, 2, -1, c->loc);
    ci = mk_reshape(c->mk, ci, cs, 2, -1, c->loc);
    return mk_binary(c->mk, OP_SUB, ci, ri, c->loc);
}

bool lower_trilu(Ctx *c) {
    int64_t upper, k = 0;
    if (!attr_int(c, "upper", 1, &upper)) return false;
    double kd;
    if (has_in(c, 1)) {
        if (!in_scalar(c, 1, "k", &kd)) return false;
        k = (int64_t)kd;
    }
    int x = in_id(c, 0);
    if (x == MK_ERROR) return false;
    int r = nd(c, x)->rank;
    KilnDType dt = nd(c, x)->dtype;
    if (r < 2) return node_error(c, "needs a tensor of rank 2 or more");
    int d = diagonal_offsets(c, nd(c, x)->shape[r - 2], nd(c, x)->shape[r - 1]);
    int mask = mk_binary(c->mk, upper ? OP_GE : OP_LE, d, c_const(c, (double)k, KILN_I64), c->loc);
    int zero = mk_const(c->mk, 0, dt, c->loc);
    return done_like(c, 0, mk_where(c->mk, mask, x, zero, c->loc), 0);
}

bool lower_eyelike(Ctx *c) {
    int64_t k, dtype;
    if (!attr_int(c, "k", 0, &k) || !attr_int(c, "dtype", c->in[0] ? c->in[0]->odt : ONNX_FLOAT, &dtype))
        return false;
    KilnDType dt;
    if (!kiln_dtype_for(c, (int32_t)dtype, "dtype", &dt)) return false;
    if (in_rank(c, 0) != 2) return node_error(c, "needs a 2-D input");
    int d = diagonal_offsets(c, in_shape(c, 0)[0], in_shape(c, 0)[1]);
    int eq = mk_binary(c->mk, OP_EQ, d, c_const(c, (double)k, KILN_I64), c->loc);
    int r = mk_cast(c->mk, eq, dt, c->loc);
    set_out_odt(c, 0, r, (int32_t)dtype);
    return r != MK_ERROR;
}

bool lower_onehot(Ctx *c) {
    int64_t axis;
    double depth;
    if (!attr_int(c, "axis", -1, &axis) || !in_scalar(c, 1, "depth", &depth)) return false;
    if (depth < 1) return unsupported(c, "depth %g", depth);
    int idx = in_id(c, 0), values = in_id(c, 2);
    if (idx == MK_ERROR || values == MK_ERROR) return false;
    int r = nd(c, idx)->rank;
    if (!norm_axis(c, axis, r + 1, "axis", &axis)) return false;
    Dim dep = (Dim)depth;
    idx = mk_cast(c->mk, idx, KILN_I64, c->loc);
    /* negative indices count from the end (opset 11) */
    int neg = mk_binary(c->mk, OP_LT, idx, c_const(c, 0, KILN_I64), c->loc);
    idx =
        mk_where(c->mk, neg, mk_binary(c->mk, OP_ADD, idx, c_const(c, depth, KILN_I64), c->loc), idx, c->loc);
    idx = mk_unsqueeze(c->mk, idx, &axis, 1, c_mkloc(c));
    Dim *shape = ARENA_ARRAY(A(c), Dim, r + 2);
    for (int k = 0; k <= r; k++) shape[k] = 1;
    shape[axis] = dep;
    int iota = mk_reshape(c->mk, mk_arange(c->mk, dep, KILN_I64, c_mkloc(c)), shape, r + 1, -1, c->loc);
    int hit = mk_binary(c->mk, OP_EQ, idx, iota, c->loc);
    MkSlice off = {.index = true, .start = 0, .step = 1}, on = {.index = true, .start = 1, .step = 1};
    int v_off = mk_index(c->mk, values, &off, 1, c_mkloc(c)),
        v_on = mk_index(c->mk, values, &on, 1, c_mkloc(c));
    int out = mk_where(c->mk, hit, v_on, v_off, c->loc);
    set_out_odt(c, 0, out, c->in[2]->odt);
    return out != MK_ERROR;
}

/* ---- depth and space ---- */

static int reshape_to(Ctx *c, int x, const Dim *d, int n) { return mk_reshape(c->mk, x, d, n, -1, c->loc); }

bool lower_depth_to_space(Ctx *c) {
    int64_t b;
    const char *mode = "DCR";
    if (!attr_int(c, "blocksize", 0, &b) || (c->opset >= 11 && !attr_string(c, "mode", "DCR", &mode)))
        return false;
    int x = in_id(c, 0);
    if (x == MK_ERROR) return false;
    const Node *xn = nd(c, x);
    if (xn->rank != 4 || b < 1) return node_error(c, "needs a 4-D input and a positive blocksize");
    Dim n = xn->shape[0], ch = xn->shape[1], h = xn->shape[2], w = xn->shape[3], bb = b * b, cq;
    if (!mk_dim_quotient(c->mk, ch, bb, &cq))
        return node_error(c, "channels are not a multiple of blocksize**2");
    bool dcr = strcmp(mode, "DCR") == 0;
    if (!dcr && strcmp(mode, "CRD") != 0) return unsupported(c, "mode '%s'", mode);
    Dim d6[6] = {n, b, b, cq, h, w}, c6[6] = {n, cq, b, b, h, w};
    static const int64_t pdcr[6] = {0, 3, 4, 1, 5, 2}, pcrd[6] = {0, 1, 4, 2, 5, 3};
    int t = mk_transpose(c->mk, reshape_to(c, x, dcr ? d6 : c6, 6), dcr ? pdcr : pcrd, 6, c_mkloc(c));
    Dim hb[2] = {h, b}, wb[2] = {w, b};
    Dim out[4] = {n, cq, mk_dim_product(c->mk, hb, 2), mk_dim_product(c->mk, wb, 2)};
    return done_like(c, 0, reshape_to(c, t, out, 4), 0);
}

bool lower_space_to_depth(Ctx *c) {
    int64_t b;
    if (!attr_int(c, "blocksize", 0, &b)) return false;
    int x = in_id(c, 0);
    if (x == MK_ERROR) return false;
    const Node *xn = nd(c, x);
    if (xn->rank != 4 || b < 1) return node_error(c, "needs a 4-D input and a positive blocksize");
    Dim n = xn->shape[0], ch = xn->shape[1], hq, wq;
    if (!mk_dim_quotient(c->mk, xn->shape[2], b, &hq) || !mk_dim_quotient(c->mk, xn->shape[3], b, &wq))
        return node_error(c, "height and width must be multiples of blocksize");
    Dim d6[6] = {n, ch, hq, b, wq, b};
    static const int64_t perm[6] = {0, 3, 5, 1, 2, 4};
    int t = mk_transpose(c->mk, reshape_to(c, x, d6, 6), perm, 6, c_mkloc(c));
    Dim cb[3] = {ch, b, b};
    Dim out[4] = {n, mk_dim_product(c->mk, cb, 3), hq, wq};
    return done_like(c, 0, reshape_to(c, t, out, 4), 0);
}

/* ---- element-wise gathering ---- */

/* x[i0, .., idx[i0, .., ik, ..], ..] over every position of idx (GatherElements):
 * one take from x flattened, at linear indices made of idx along `axis` and
 * iotas along the other axes.  x's shape must be known. */
int gather_elements(Ctx *c, int x, int idx, int64_t axis) {
    if (x < 0 || idx < 0) return MK_ERROR;
    int r = nd(c, x)->rank;
    if (nd(c, idx)->rank != r) return node_error(c, "indices must have the data's rank (%d)", r), MK_ERROR;
    Dim *xs = ARENA_ARRAY(A(c), Dim, r + 1), *is = ARENA_ARRAY(A(c), Dim, r + 1);
    memcpy(xs, nd(c, x)->shape, sizeof(Dim) * (size_t)r);
    memcpy(is, nd(c, idx)->shape, sizeof(Dim) * (size_t)r);
    for (int k = 0; k < r; k++)
        if (DIM_IS_SYM(xs[k]) || DIM_IS_SYM(is[k]))
            return node_error(c, "gathers over symbolic dimensions; bind them with --dim"), MK_ERROR;
    int64_t stride = 1, total = 1;
    for (int k = 0; k < r; k++) total *= xs[k];
    idx = mk_cast(c->mk, idx, KILN_I64, c->loc);
    /* negative indices count from the end of the axis */
    int neg = mk_binary(c->mk, OP_LT, idx, c_const(c, 0, KILN_I64), c->loc);
    idx = mk_where(c->mk, neg, mk_binary(c->mk, OP_ADD, idx, c_const(c, (double)xs[axis], KILN_I64), c->loc),
                   idx, c->loc);
    int lin = MK_NONE;
    for (int k = r - 1; k >= 0; k--) {
        int coord;
        if (k == axis) {
            coord = idx;
        } else {
            Dim *d = ARENA_ARRAY(A(c), Dim, r + 1);
            for (int j = 0; j < r; j++) d[j] = 1;
            d[k] = is[k];
            coord = mk_reshape(c->mk, mk_arange(c->mk, is[k], KILN_I64, c_mkloc(c)), d, r, -1, c->loc);
        }
        if (stride != 1)
            coord = mk_binary(c->mk, OP_MUL, coord, c_const(c, (double)stride, KILN_I64), c->loc);
        lin = lin == MK_NONE ? coord : mk_binary(c->mk, OP_ADD, lin, coord, c->loc);
        stride *= xs[k];
    }
    Dim flat[1] = {total};
    int fx = mk_reshape(c->mk, x, flat, 1, -1, c->loc);
    return mk_take(c->mk, fx, lin, 0, c_mkloc(c));
}

bool lower_gather_elements(Ctx *c) {
    int64_t axis;
    if (!attr_int(c, "axis", 0, &axis)) return false;
    int x = in_id(c, 0), idx = in_id(c, 1);
    if (x == MK_ERROR || idx == MK_ERROR || !norm_axis(c, axis, nd(c, x)->rank, "axis", &axis)) return false;
    return done_like(c, 0, gather_elements(c, x, idx, axis), 0);
}

/* GatherND (batch_dims 0): the last axis of indices picks an element or a
 * slice of data; one take from data seen as [prod(dims[:k]), rest...]. */
bool lower_gather_nd(Ctx *c) {
    int64_t batch;
    if (!attr_int(c, "batch_dims", 0, &batch)) return false;
    if (batch != 0) return unsupported(c, "batch_dims=%lld", (long long)batch);
    int x = in_id(c, 0), idx = in_id(c, 1);
    if (x == MK_ERROR || idx == MK_ERROR) return false;
    int r = nd(c, x)->rank, q = nd(c, idx)->rank;
    Dim k = nd(c, idx)->shape[q - 1];
    if (q < 1 || DIM_IS_SYM(k) || k > r || k < 1)
        return node_error(c, "the indices' last dimension must be 1 .. %d", r);
    Dim *xs = ARENA_ARRAY(A(c), Dim, r + 1);
    memcpy(xs, nd(c, x)->shape, sizeof(Dim) * (size_t)r);
    for (int j = 0; j < k; j++)
        if (DIM_IS_SYM(xs[j])) return node_error(c, "gathers over symbolic dimensions; bind them with --dim");
    idx = mk_cast(c->mk, idx, KILN_I64, c->loc);
    int lin = MK_NONE;
    int64_t stride = 1;
    for (int j = (int)k - 1; j >= 0; j--) {
        MkSlice *all = ARENA_ARRAY(A(c), MkSlice, q + 1);
        for (int a = 0; a < q - 1; a++) all[a] = (MkSlice){.step = 1};
        all[q - 1] = (MkSlice){.index = true, .start = j, .step = 1};
        int col = mk_index(c->mk, idx, all, q, c_mkloc(c));
        int neg = mk_binary(c->mk, OP_LT, col, c_const(c, 0, KILN_I64), c->loc);
        col = mk_where(c->mk, neg, mk_binary(c->mk, OP_ADD, col, c_const(c, (double)xs[j], KILN_I64), c->loc),
                       col, c->loc);
        if (stride != 1) col = mk_binary(c->mk, OP_MUL, col, c_const(c, (double)stride, KILN_I64), c->loc);
        lin = lin == MK_NONE ? col : mk_binary(c->mk, OP_ADD, lin, col, c->loc);
        stride *= xs[j];
    }
    Dim *d = ARENA_ARRAY(A(c), Dim, r + 1);
    d[0] = stride;
    for (int j = (int)k; j < r; j++) d[j - k + 1] = xs[j];
    int fx = mk_reshape(c->mk, x, d, r - (int)k + 1, -1, c->loc);
    return done_like(c, 0, mk_take(c->mk, fx, lin, 0, c_mkloc(c)), 0);
}
