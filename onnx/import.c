/* import.c - ONNX graph -> kiln graph IR (see import.h for the model of values).
 *
 * Contract: onnx_import walks the model's nodes in order (ONNX requires a
 * topological order) and lowers each through its entry in ops.def, building
 * IR only through ir/make.h, so a model is checked by the same shape and
 * dtype rules as a kiln program.  Graph inputs that are not initializers
 * become the graph's first parameters (in order); initializers, Constants and
 * folded constants that an operation needs as tensors become parameters bound
 * by name to their data (OnnxImport.weights), splats become `full`.
 * Diagnostics: every unsupported operator, opset, attribute, dtype or
 * unknown name is reported, one diagnostic per problem, with the node's index,
 * name, op and opset; the nodes after a failed one go on (their inputs carry
 * the failure silently) so that all of them are listed.  The declared types
 * of outputs and value_info entries are checked against what kiln computed.
 */
#include "onnx/import.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* The largest constant made by folding when its inputs are smaller: a fold
 * that grows data beyond this and twice its inputs (ConstantOfShape of a big
 * shape, Expand) is left to run time instead.  All folds of one import
 * together make at most FOLD_BUDGET elements beyond the model's own
 * initializers (so a small hostile file cannot make a huge one). */
enum { FOLD_GROWTH_LIMIT = 1 << 16, FOLD_BUDGET = 1 << 24 };

struct Importer {
    Arena *arena;
    const OnnxModel *model;
    const OnnxImportOptions *opt;
    DiagList *diags;
    OnnxImport *out;
    IRGraph *g;
    IRMaker mk;
    Source *src; /* the node listing that diagnostics point into */
    int64_t opset;
    struct Entry {
        const char *name;
        Value *v;
    } * table; /* open addressing by name; Identity makes two names of one Value */
    size_t cap, count;
    /* while folding: the tensors bound to the scratch graph's parameters */
    VEC(KilnTensor) fold_inputs;
    int64_t fold_budget; /* elements folds may still make */
    int nmade;           /* constants made by lowerings (c_tensor), for unique names */
};

/* ---- the value table ---- */

static uint64_t hash_name(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) h = (h ^ (unsigned char)*s) * 1099511628211ull;
    return h;
}

static Value *lookup(Importer *im, const char *name) {
    if (!im->cap) return NULL;
    for (size_t i = hash_name(name) & (im->cap - 1);; i = (i + 1) & (im->cap - 1)) {
        if (!im->table[i].name) return NULL;
        if (strcmp(im->table[i].name, name) == 0) return im->table[i].v;
    }
}

static void insert_as(Importer *im, const char *name, Value *v) {
    if (2 * (im->count + 1) > im->cap) {
        size_t cap = im->cap ? 2 * im->cap : 64;
        struct Entry *t = xcalloc(cap, sizeof *t);
        for (size_t k = 0; k < im->cap; k++) {
            if (!im->table[k].name) continue;
            size_t i = hash_name(im->table[k].name) & (cap - 1);
            while (t[i].name) i = (i + 1) & (cap - 1);
            t[i] = im->table[k];
        }
        free(im->table);
        im->table = t;
        im->cap = cap;
    }
    size_t i = hash_name(name) & (im->cap - 1);
    while (im->table[i].name) i = (i + 1) & (im->cap - 1);
    im->table[i] = (struct Entry){name, v};
    im->count++;
}

static void insert(Importer *im, Value *v) { insert_as(im, v->name, v); }

static Value *new_value(Importer *im, const char *name) {
    Value *v = ARENA_NEW(im->arena, Value);
    v->name = name;
    v->id = -1;
    return v;
}

/* ---- diagnostics ---- */

/* "Op 'name' (opset N)"; a node of another domain names it: "(com.x opset 1)". */
static const char *node_label(Importer *im, const OnnxNode *n, int64_t opset) {
    bool other = n->domain && n->domain[0] && strcmp(n->domain, "ai.onnx") != 0;
    return arena_printf(im->arena, "%s%s%s%s (%s%sopset %lld)", n->op_type, n->name[0] ? " '" : "", n->name,
                        n->name[0] ? "'" : "", other ? n->domain : "", other ? " " : "", (long long)opset);
}

static bool vreport(Ctx *c, const char *prefix, const char *fmt, va_list ap) {
    StrBuf sb = {0};
    sb_printf(&sb, "%s: %s", node_label(c->im, c->node, c->opset), prefix);
    sb_vprintf(&sb, fmt, ap);
    diag_error(c->im->diags, c->loc, "%s", sb.data);
    sb_free(&sb);
    return false;
}

bool node_error(Ctx *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vreport(c, "", fmt, ap);
    va_end(ap);
    return false;
}

bool unsupported(Ctx *c, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vreport(c, "not supported: ", fmt, ap);
    va_end(ap);
    return false;
}

/* A problem of the model as a whole (no node to point at). */
static bool model_error(Importer *im, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool model_error(Importer *im, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    StrBuf sb = {0};
    sb_printf(&sb, "%s: ", im->model->path);
    sb_vprintf(&sb, fmt, ap);
    va_end(ap);
    diag_error(im->diags, (Loc){0}, "%s", sb.data);
    sb_free(&sb);
    return false;
}

/* The listing that diagnostics show: line i+1 is node i, in a form close to
 * what `kiln import` writes. */
static Source *make_listing(Importer *im) {
    const OnnxGraph *g = &im->model->graph;
    StrBuf sb = {0};
    for (int i = 0; i < g->nnodes; i++) {
        const OnnxNode *n = &g->nodes[i];
        for (int k = 0; k < n->noutputs; k++) sb_printf(&sb, "%s%s", k ? ", " : "", n->outputs[k]);
        sb_printf(&sb, "%s%s%s%s(", n->noutputs ? " = " : "", n->domain[0] ? n->domain : "",
                  n->domain[0] ? "." : "", n->op_type);
        for (int k = 0; k < n->ninputs; k++) sb_printf(&sb, "%s%s", k ? ", " : "", n->inputs[k]);
        sb_printf(&sb, ")");
        if (n->name[0]) sb_printf(&sb, "    # node '%s'", n->name);
        sb_puts(&sb, "\n");
    }
    Source *src = ARENA_NEW(im->arena, Source);
    src->path = im->model->path;
    src->text = arena_strndup(im->arena, sb.data ? sb.data : "", sb.len);
    src->len = sb.len;
    src->listing = true;
    sb_free(&sb);
    return src;
}

/* ---- attributes ---- */

const OnnxAttr *attr_find(Ctx *c, const char *name) {
    for (int i = 0; i < c->node->nattrs; i++) {
        if (strcmp(c->node->attrs[i].name, name) == 0) {
            c->attr_used[i] = true;
            return &c->node->attrs[i];
        }
    }
    return NULL;
}

void attr_ignore(Ctx *c, const char *name) { (void)attr_find(c, name); }

/* An attribute whose type is set must be `want`; an untyped one (IR version
 * 1 left `type` out) is taken by the field present. */
static bool attr_typed(Ctx *c, const OnnxAttr *a, int want, const char *want_name) {
    if (a->type == want || a->type == 0) return true;
    return node_error(c, "attribute %s should be %s, the model gives type %d", a->name, want_name, a->type);
}

bool attr_int(Ctx *c, const char *name, int64_t dflt, int64_t *out) {
    const OnnxAttr *a = attr_find(c, name);
    *out = dflt;
    if (!a) return true;
    if (!attr_typed(c, a, ONNX_ATTR_INT, "an int")) return false;
    *out = a->i;
    return true;
}

bool attr_float(Ctx *c, const char *name, double dflt, double *out) {
    const OnnxAttr *a = attr_find(c, name);
    *out = dflt;
    if (!a) return true;
    if (!attr_typed(c, a, ONNX_ATTR_FLOAT, "a float")) return false;
    *out = a->f;
    return true;
}

bool attr_string(Ctx *c, const char *name, const char *dflt, const char **out) {
    const OnnxAttr *a = attr_find(c, name);
    *out = dflt;
    if (!a) return true;
    if (!attr_typed(c, a, ONNX_ATTR_STRING, "a string")) return false;
    if (a->s.len && memchr(a->s.data, 0, a->s.len)) return node_error(c, "attribute %s contains a NUL byte", name);
    *out = arena_strndup(c->im->arena, (const char *)a->s.data, a->s.len);
    return true;
}

bool attr_ints(Ctx *c, const char *name, const int64_t **out, int *n) {
    const OnnxAttr *a = attr_find(c, name);
    *out = NULL;
    *n = -1;
    if (!a) return true;
    if (!attr_typed(c, a, ONNX_ATTR_INTS, "a list of ints")) return false;
    *out = a->ints;
    *n = a->nints;
    return true;
}

bool attr_floats(Ctx *c, const char *name, const float **out, int *n) {
    const OnnxAttr *a = attr_find(c, name);
    *out = NULL;
    *n = -1;
    if (!a) return true;
    if (!attr_typed(c, a, ONNX_ATTR_FLOATS, "a list of floats")) return false;
    *out = a->floats;
    *n = a->nfloats;
    return true;
}

/* ---- known values ---- */

static int64_t value_numel(const Value *v) {
    int64_t n = 1;
    for (int k = 0; k < v->rank; k++) n *= v->shape[k] < 0 ? 1 : v->shape[k];
    return n;
}

/* The known tensor of v, read from the file on first use (in v's held dtype). */
static KilnTensor *value_konst(Importer *im, Value *v, char *err, size_t errlen) {
    if (v->konst || !v->init) return v->konst;
    KilnTensor *t = xcalloc(1, sizeof *t);
    if (!onnx_tensor_read(v->init, v->dt, t, err, errlen)) {
        free(t);
        return NULL;
    }
    VEC_PUSH(im->out->owned, t);
    v->konst = t;
    return t;
}

/* Known at import: a constant, or a shape vector.  (A bound input is read
 * where a value must be known, but is no constant: it stays a parameter.) */
static bool value_known(const Value *v) { return !v->bound && (v->konst || v->init || v->ints); }

/* Whether every element of v's data is the same (v known, numel >= 1): such a
 * constant is made with `full`, not as a weight.  Raw bytes are compared in
 * place, without reading the tensor. */
static bool value_splat(Importer *im, Value *v, double *first) {
    char err[256];
    if (v->init && v->init->kind == ONNX_DATA_RAW && !v->konst) {
        const OnnxBytes *raw = &v->init->raw;
        size_t n = (size_t)v->init->numel, size = n ? raw->len / n : 0;
        for (size_t i = 1; i < n; i++)
            if (memcmp(raw->data, raw->data + i * size, size) != 0) return false;
    }
    KilnTensor *t = value_konst(im, v, err, sizeof err);
    if (!t) return false;
    int64_t n = kiln_tensor_numel(t);
    *first = kiln_tensor_get(t, 0);
    size_t size = kiln_dtype_size(t->dtype);
    for (int64_t i = 1; i < n; i++)
        if (memcmp(t->data, (char *)t->data + (size_t)i * size, size) != 0) return false;
    return true;
}

/* ---- making inputs nodes of the current target ---- */

static int32_t odt_of(KilnDType dt) {
    static const int32_t map[KILN_NUM_DTYPES] = {
        [KILN_F32] = ONNX_FLOAT,  [KILN_F16] = ONNX_FLOAT16, [KILN_BF16] = ONNX_BFLOAT16,
        [KILN_F64] = ONNX_DOUBLE, [KILN_I32] = ONNX_INT32,   [KILN_I64] = ONNX_INT64,
        [KILN_BOOL] = ONNX_BOOL};
    return map[dt];
}

bool has_in(const Ctx *c, int i) { return i < c->nin && c->in[i] != NULL; }

static const char *sym_names(Importer *im, const Value *v) {
    StrBuf sb = {0};
    for (int i = 0; i < v->nints; i++) {
        if (!v->ints[i].sym) continue;
        if (sb.len) sb_puts(&sb, ", ");
        ir_dim_print(im->g, (Dim)v->ints[i].v, &sb);
    }
    const char *s = arena_strdup(im->arena, sb.data ? sb.data : "");
    sb_free(&sb);
    return s;
}

/* The node of known value v in the current target, or MK_ERROR. */
static int materialise(Ctx *c, Value *v) {
    Importer *im = c->im;
    char err[512];
    KilnDType exact;
    if (!onnx_dtype_to_kiln(v->odt, &exact)) {
        if (!c->folding)
            return unsupported(
                       c,
                       "value '%s' has dtype %s, which kiln cannot compute with (kiln has f32, f16, bf16, "
                       "f64, i32, i64, bool)",
                       v->name, onnx_dtype_name(v->odt)),
                   MK_ERROR;
    }
    for (int k = 0; k < v->rank; k++)
        if (v->shape[k] == 0)
            return unsupported(
                       c, "value '%s' is empty (a dimension of size 0); kiln tensors have no empty dimension",
                       v->name),
                   MK_ERROR;
    if (v->ints && !v->konst) {
        return node_error(
                   c,
                   "value '%s' holds symbolic dimension(s) %s, which kiln computes with only at import "
                   "time; bind them with --dim NAME=SIZE",
                   v->name, sym_names(im, v)),
               MK_ERROR;
    }
    if (c->folding) {
        KilnTensor *t = value_konst(im, v, err, sizeof err);
        if (!t) return node_error(c, "%s", err), MK_ERROR;
        char name[32];
        snprintf(name, sizeof name, "in%d", im->fold_inputs.len);
        int id = mk_param(c->mk, arena_strdup(im->arena, name), t->dtype, v->rank, v->shape, c->loc);
        VEC_PUSH(im->fold_inputs, *t); /* borrowed: not freed with the list */
        return id;
    }
    if (v->id != -1) return v->id;
    double value;
    if (value_splat(im, v, &value)) {
        v->id = v->rank == 0 ? mk_const(c->mk, value, v->dt, c->loc)
                             : mk_full(c->mk, v->shape, v->rank, value, v->dt, mk_at(c->loc));
        return v->id;
    }
    if (!v->init && !value_konst(im, v, err, sizeof err)) return node_error(c, "%s", err), MK_ERROR;
    v->id = mk_param(c->mk, v->name, v->dt, v->rank, v->shape, c->loc);
    OnnxWeight w = {v->name, v->init && !v->konst ? v->init : NULL, NULL};
    if (!w.data) w.folded = v->konst;
    VEC_PUSH(im->out->weights, w);
    return v->id;
}

int c_tensor(Ctx *c, KilnTensor *t, const char *what) {
    KilnTensor *owned = xmalloc(sizeof *owned);
    *owned = *t;
    memset(t, 0, sizeof *t);
    VEC_PUSH(c->im->out->owned, owned);
    Value *v =
        new_value(c->im, arena_printf(c->arena, "%s.%s%d", c->nout ? c->node->outputs[0] : c->node->op_type,
                                      what, c->im->nmade++));
    v->konst = owned;
    v->dt = owned->dtype;
    v->odt = odt_of(owned->dtype);
    v->rank = owned->rank;
    v->shape = ARENA_ARRAY(c->arena, Dim, owned->rank + 1);
    for (int k = 0; k < owned->rank; k++) v->shape[k] = owned->shape[k];
    return materialise(c, v);
}

int in_id(Ctx *c, int i) {
    if (!has_in(c, i)) return node_error(c, "input %d is required", i), MK_ERROR;
    Value *v = c->in[i];
    if (v->failed) return MK_ERROR;
    if (c->folding) {
        if (c->fold_ids[i] < 0) c->fold_ids[i] = materialise(c, v);
        return c->fold_ids[i];
    }
    if (v->id != -1) return v->id;
    return materialise(c, v);
}

const KilnTensor *in_konst(Ctx *c, int i) {
    char err[256];
    if (!has_in(c, i)) return NULL;
    if (c->in[i]->bound) return c->in[i]->bound;
    return value_konst(c->im, c->in[i], err, sizeof err);
}

/* The known integers of a value, from its shape vector or its tensor. */
static const SInt *value_ints(Importer *im, Value *v, int *n) {
    if (v->ints) {
        *n = v->nints;
        return v->ints;
    }
    char err[256];
    if (v->rank > 1 || !dtype_is_int(v->dt)) return NULL;
    const KilnTensor *t = v->bound ? v->bound : value_konst(im, v, err, sizeof err);
    if (!t) return NULL;
    int64_t count = kiln_tensor_numel(t);
    SInt *s = ARENA_ARRAY(im->arena, SInt, count + 1);
    for (int64_t k = 0; k < count; k++)
        s[k].v = t->dtype == KILN_I64 ? ((int64_t *)t->data)[k] : (int64_t)kiln_tensor_get(t, k);
    v->ints = s;
    v->nints = (int)count;
    *n = v->nints;
    return s;
}

const SInt *in_ints_quiet(Ctx *c, int i, int *n) {
    if (!has_in(c, i) || c->in[i]->failed) return NULL;
    return value_ints(c->im, c->in[i], n);
}

const SInt *in_ints(Ctx *c, int i, const char *what, int *n) {
    if (!has_in(c, i)) return node_error(c, "input %d (%s) is required", i, what), NULL;
    const SInt *s = value_ints(c->im, c->in[i], n);
    if (!s && !c->in[i]->failed)
        node_error(
            c,
            "%s (input '%s') must be known when the model is imported: a constant, an initializer or a "
            "shape computation",
            what, c->in[i]->name);
    return s;
}

bool in_int_list(Ctx *c, int i, const char *what, int64_t **out, int *n) {
    const SInt *s = in_ints(c, i, what, n);
    if (!s) return false;
    *out = ARENA_ARRAY(c->im->arena, int64_t, *n + 1);
    for (int k = 0; k < *n; k++) {
        if (s[k].sym)
            return node_error(
                c, "%s (input '%s') holds symbolic dimension(s) %s; bind them with --dim NAME=SIZE", what,
                c->in[i]->name, sym_names(c->im, c->in[i]));
        (*out)[k] = s[k].v;
    }
    return true;
}

bool in_scalar(Ctx *c, int i, const char *what, double *out) {
    const KilnTensor *t = in_konst(c, i);
    if (!t) {
        if (has_in(c, i) && !c->in[i]->failed)
            node_error(c, "%s (input '%s') must be known when the model is imported", what, c->in[i]->name);
        return false;
    }
    if (kiln_tensor_numel(t) != 1) return node_error(c, "%s must hold one element", what);
    *out = kiln_tensor_get(t, 0);
    return true;
}

/* ---- outputs ---- */

void set_out_odt(Ctx *c, int k, int id, int32_t odt) {
    if (k >= c->nout) return;
    Value *v = &c->out[k];
    if (id == MK_ERROR) {
        v->failed = true;
        return;
    }
    const Node *n = ir_node(c->mk->g, id);
    v->id = id;
    v->dt = n->dtype;
    v->odt = odt;
    v->rank = n->rank;
    v->shape = ARENA_ARRAY(c->im->arena, Dim, n->rank + 1);
    memcpy(v->shape, n->shape, sizeof(Dim) * (size_t)n->rank);
}

void set_out_alias(Ctx *c, int k, int i) {
    if (k < c->nout && has_in(c, i)) c->alias[k] = c->in[i];
}

void set_out(Ctx *c, int k, int id) {
    set_out_odt(c, k, id, id >= 0 ? odt_of(ir_node(c->mk->g, id)->dtype) : ONNX_UNDEFINED);
}

bool set_out_tensor(Ctx *c, int k, const OnnxTensor *t) {
    if (k >= c->nout) return true;
    Value *v = &c->out[k];
    v->init = t;
    v->odt = t->data_type;
    if (!onnx_dtype_widened(t->data_type, &v->dt))
        return unsupported(c, "a tensor of dtype %s", onnx_dtype_name(t->data_type));
    v->rank = t->rank;
    v->shape = ARENA_ARRAY(c->im->arena, Dim, t->rank + 1);
    for (int i = 0; i < t->rank; i++) v->shape[i] = t->dims[i];
    return true;
}

bool set_out_konst(Ctx *c, int k, KilnTensor *t, int32_t odt) {
    KilnTensor *owned = xmalloc(sizeof *owned);
    *owned = *t;
    VEC_PUSH(c->im->out->owned, owned);
    if (k >= c->nout) return true;
    Value *v = &c->out[k];
    v->konst = owned;
    v->odt = odt;
    v->dt = t->dtype;
    v->rank = t->rank;
    v->shape = ARENA_ARRAY(c->im->arena, Dim, t->rank + 1);
    for (int i = 0; i < t->rank; i++) v->shape[i] = t->shape[i];
    return true;
}

void set_out_ints(Ctx *c, int k, const SInt *s, int n, int rank, int32_t odt) {
    if (k >= c->nout) return;
    Value *v = &c->out[k];
    Importer *im = c->im;
    v->odt = odt;
    onnx_dtype_widened(odt, &v->dt);
    v->rank = rank;
    v->shape = ARENA_ARRAY(im->arena, Dim, 2);
    v->shape[0] = n;
    v->ints = ARENA_ARRAY(im->arena, SInt, n + 1);
    memcpy(v->ints, s, sizeof(SInt) * (size_t)n);
    v->nints = n;
    bool concrete = true;
    for (int i = 0; i < n; i++) concrete = concrete && !s[i].sym;
    if (concrete) { /* a tensor too, so that ordinary ops can fold it */
        KilnTensor *t = xcalloc(1, sizeof *t);
        int64_t shape[1] = {n};
        if (!kiln_tensor_init(t, v->dt, rank, shape)) {
            free(t);
            node_error(c, "out of host memory");
            return;
        }
        for (int i = 0; i < n; i++) kiln_tensor_set(t, i, (double)s[i].v);
        if (v->dt == KILN_I64)
            for (int i = 0; i < n; i++) ((int64_t *)t->data)[i] = s[i].v;
        VEC_PUSH(im->out->owned, t);
        v->konst = t;
    }
}

/* ---- small helpers ---- */

bool norm_axis(Ctx *c, int64_t a, int r, const char *what, int64_t *out) {
    if (a < -r || (a >= r && !(r == 0 && a == 0)))
        return node_error(c, "%s %lld is out of range for a tensor of rank %d", what, (long long)a, r);
    *out = a < 0 ? a + r : a;
    return true;
}

bool kiln_dtype_for(Ctx *c, int32_t odt, const char *what, KilnDType *out) {
    if (onnx_dtype_to_kiln(odt, out)) return true;
    if (c->folding && onnx_dtype_widened(odt, out)) return true;
    return unsupported(c, "%s dtype %s (kiln has f32, f16, bf16, f64, i32, i64, bool)", what,
                       onnx_dtype_name(odt));
}

MkLoc c_mkloc(Ctx *c) { return mk_at(c->loc); }

int c_const(Ctx *c, double v, KilnDType dt) { return mk_const(c->mk, v, dt, c->loc); }

/* ---- the op table ---- */

static const OpDef op_table[] = {
#define ONNX_OP(name, since, needs, fn, ints) {#name, since, needs, fn, ints},
#include "onnx/ops.def"
#undef ONNX_OP
};

const OpDef *onnx_find_op(const char *op_type) {
    for (size_t i = 0; i < sizeof op_table / sizeof op_table[0]; i++)
        if (strcmp(op_table[i].op_type, op_type) == 0) return &op_table[i];
    return NULL;
}

bool no_ints(Ctx *c) {
    (void)c;
    return false;
}

/* ---- nodes ---- */

/* Whether every input is known (and so the node can be folded), and their
 * total element count. */
static bool inputs_known(const Ctx *c, int64_t *total) {
    *total = 0;
    for (int i = 0; i < c->nin; i++) {
        if (!c->in[i]) continue;
        if (c->in[i]->failed || !value_known(c->in[i]) || (c->in[i]->ints && !c->in[i]->konst) ||
            c->in[i]->bound)
            return false;
        *total += value_numel(c->in[i]);
    }
    return true;
}

/* Whether the op's ints evaluator should be tried: some input is a shape
 * vector holding a symbolic dimension, or a small integer input the user
 * bound (whose value shape arithmetic may need; folding cannot run on
 * either). */
static bool inputs_symbolic(const Ctx *c) {
    for (int i = 0; i < c->nin; i++) {
        const Value *v = c->in[i];
        if (!v || v->failed) continue;
        for (int k = 0; v->ints && k < v->nints; k++)
            if (v->ints[k].sym) return true;
        if (v->bound && v->rank <= 1 && dtype_is_int(v->dt) && kiln_tensor_numel(v->bound) <= 64) return true;
    }
    return false;
}

/* Runs the lowering on a scratch graph whose parameters hold the known
 * inputs, in the reference interpreter; the outputs become known values.
 * Returns false when the fold was abandoned (the result would be too large):
 * the caller then lowers the node into the model's graph. */
static bool fold_node(Importer *im, Ctx *c, const OpDef *def, int64_t in_total, bool *ok) {
    IRGraph *sg = ir_graph_new(im->arena, "fold");
    IRMaker sm;
    mk_init(&sm, sg, im->diags);
    int nerr = im->diags->nerrors;
    c->mk = &sm;
    c->folding = true;
    c->fold_ids = ARENA_ARRAY(im->arena, int, c->nin + 1);
    for (int i = 0; i < c->nin; i++) c->fold_ids[i] = -1;
    im->fold_inputs.len = 0;
    *ok = def->lower(c) && im->diags->nerrors == nerr;
    bool done = true;
    int64_t out_total = 0;
    for (int k = 0; *ok && k < c->nout; k++) {
        if (c->alias[k] || c->out[k].failed || c->out[k].id < 0 || value_known(&c->out[k])) continue;
        out_total += ir_numel(ir_node(sg, c->out[k].id));
    }
    if (*ok && ((out_total > FOLD_GROWTH_LIMIT && out_total > 2 * in_total) || out_total > im->fold_budget))
        done = false;
    if (*ok && done) im->fold_budget -= out_total;
    if (*ok && done) {
        int nres = 0;
        for (int k = 0; k < c->nout; k++)
            if (!c->alias[k] && !c->out[k].failed && c->out[k].id >= 0 && !value_known(&c->out[k]))
                mk_result(&sm, c->out[k].id), nres++;
        KilnTensor *res = xcalloc((size_t)nres + 1, sizeof(KilnTensor));
        char err[512];
        if (!ref_run(sg, im->fold_inputs.data, res, err, sizeof err)) {
            *ok = node_error(c, "folding at import time failed: %s", err);
        } else {
            for (int k = 0, r = 0; k < c->nout; k++) {
                Value *v = &c->out[k];
                if (c->alias[k] || v->failed || v->id < 0 || value_known(v)) continue;
                KilnTensor *t = xmalloc(sizeof *t);
                *t = res[r++];
                VEC_PUSH(im->out->owned, t);
                v->konst = t;
                v->id = -1; /* not a node of the model's graph (yet) */
            }
        }
        free(res);
    }
    for (int k = 0; !done && k < c->nout; k++) {
        c->out[k] = (Value){.name = c->out[k].name, .id = -1};
        c->alias[k] = NULL;
    }
    c->folding = false;
    c->mk = &im->mk;
    mk_free(&sm);
    ir_graph_destroy(sg);
    return done;
}

/* The opset the model imports for a node's domain (its default domain's for
 * ai.onnx), or -1: what diagnostics name beside the node's op. */
static int64_t domain_opset(const Importer *im, const char *domain) {
    if (!domain[0] || strcmp(domain, "ai.onnx") == 0) return im->opset;
    int64_t v = -1;
    for (int i = 0; i < im->model->nopsets; i++)
        if (strcmp(im->model->opsets[i].domain, domain) == 0) v = im->model->opsets[i].version;
    return v;
}

static void lower_node(Importer *im, int index) {
    const OnnxNode *n = &im->model->graph.nodes[index];
    Ctx c = {.im = im,
             .arena = im->arena,
             .node = n,
             .index = index,
             .opset = domain_opset(im, n->domain),
             .loc = {im->src, index + 1, 1},
             .mk = &im->mk};
    c.nin = n->ninputs;
    c.nout = n->noutputs;
    c.in = ARENA_ARRAY(im->arena, Value *, c.nin + 1);
    c.out = ARENA_ARRAY(im->arena, Value, c.nout + 1);
    c.attr_used = ARENA_ARRAY(im->arena, bool, n->nattrs + 1);
    c.alias = ARENA_ARRAY(im->arena, Value *, c.nout + 1);
    for (int k = 0; k < c.nout; k++) c.out[k] = (Value){.name = n->outputs[k], .id = -1};
    bool inputs_failed = false, ok = true;
    for (int i = 0; i < c.nin; i++) {
        if (!n->inputs[i][0]) continue; /* an optional input left out */
        c.in[i] = lookup(im, n->inputs[i]);
        if (!c.in[i]) {
            ok = node_error(&c,
                            "input '%s' is not a graph input, an initializer or an output of an earlier node",
                            n->inputs[i]);
        } else if (c.in[i]->unmade) {
            const OnnxNode *maker = &im->model->graph.nodes[c.in[i]->unmade - 1];
            ok =
                unsupported(&c, "input '%s' is an optional output of node %d (%s) that kiln does not compute",
                            n->inputs[i], c.in[i]->unmade, maker->op_type);
        } else {
            inputs_failed = inputs_failed || c.in[i]->failed;
        }
    }
    const OpDef *def = NULL;
    bool default_domain = !n->domain[0] || strcmp(n->domain, "ai.onnx") == 0;
    if (!default_domain) {
        ok = unsupported(&c, "operator %s of domain '%s' (kiln implements the default domain ai.onnx)",
                         n->op_type, n->domain);
    } else if (!(def = onnx_find_op(n->op_type))) {
        ok = unsupported(&c, "operator %s", n->op_type);
    } else if (im->opset < def->since) {
        ok = unsupported(&c, "%s before opset %d (kiln implements the meaning it has from opset %d on)",
                         n->op_type, def->since, def->since);
    } else {
        for (int i = 0, need = def->needs; ok && i < need; i++)
            if (i >= c.nin || !n->inputs[i][0])
                ok = node_error(&c, "%s needs %d input%s; input %d is missing", n->op_type, need,
                                need == 1 ? "" : "s", i + 1);
    }
    if (ok && !inputs_failed) {
        int nerr = im->diags->nerrors;
        int64_t total;
        if (inputs_symbolic(&c) && def->ints(&c)) {
            /* evaluated on shape vectors */
        } else if (inputs_known(&c, &total) && fold_node(im, &c, def, total, &ok)) {
            /* folded */
        } else {
            ok = def->lower(&c) && im->diags->nerrors == nerr;
        }
        ok = ok && im->diags->nerrors == nerr;
        for (int a = 0; ok && a < n->nattrs; a++)
            if (!c.attr_used[a]) ok = unsupported(&c, "attribute %s", n->attrs[a].name);
    }
    for (int k = 0; k < c.nout; k++) {
        if (!n->outputs[k][0]) continue;
        if (lookup(im, n->outputs[k])) {
            node_error(&c, "output '%s' is already defined (ONNX values are assigned once)", n->outputs[k]);
            continue;
        }
        Value *v = c.alias[k];
        if (!v || !ok || inputs_failed) {
            v = new_value(im, n->outputs[k]);
            *v = c.out[k];
            v->name = n->outputs[k];
            if (!ok || inputs_failed)
                v->failed = true;
            else if (v->id == -1 && !value_known(v) && !v->failed)
                v->unmade = index + 1; /* an optional output kiln does not compute: refused if used */
        }
        insert_as(im, n->outputs[k], v);
        if (!c.alias[k] && v->id >= 0 && !v->failed) {
            OnnxNamedNode nn = {v->id, v->name};
            VEC_PUSH(im->out->named, nn);
        }
    }
    VEC_PUSH(im->out->node_last, im->g->nodes.len - 1);
}

/* ---- the graph ---- */

int64_t onnx_model_opset(const OnnxModel *m) {
    int64_t v = -1;
    for (int i = 0; i < m->nopsets; i++)
        if (!m->opsets[i].domain[0] || strcmp(m->opsets[i].domain, "ai.onnx") == 0) v = m->opsets[i].version;
    return v;
}

/* The name of an input's unnamed dimension k: NAME_dimK, with characters
 * that are not [A-Za-z0-9_] replaced by '_'. */
static const char *unnamed_dim(Arena *a, const char *input, int k) {
    char *s = arena_printf(a, "%s_dim%d", input, k);
    for (char *p = s; *p; p++)
        if (!(*p == '_' || (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9')))
            *p = '_';
    return s;
}

static bool is_initializer(const OnnxModel *m, const char *name) {
    for (int i = 0; i < m->graph.ninitializers; i++)
        if (strcmp(m->graph.initializers[i].name, name) == 0) return true;
    return false;
}

bool onnx_is_overridable(const OnnxModel *m, const char *name) {
    if (!is_initializer(m, name)) return false;
    for (int i = 0; i < m->graph.ninputs; i++)
        if (strcmp(m->graph.inputs[i].name, name) == 0) return true;
    return false;
}

static bool overridden(const OnnxImportOptions *opt, const char *name) {
    for (int i = 0; opt && i < opt->noverrides; i++)
        if (strcmp(opt->overrides[i], name) == 0) return true;
    return false;
}

int onnx_model_inputs(Arena *arena, const OnnxModel *m, OnnxInput **out) {
    const OnnxGraph *g = &m->graph;
    *out = ARENA_ARRAY(arena, OnnxInput, g->ninputs + 1);
    int n = 0;
    for (int i = 0; i < g->ninputs; i++) {
        const OnnxValueInfo *vi = &g->inputs[i];
        if (is_initializer(m, vi->name)) continue;
        OnnxInput *in = &(*out)[n++];
        in->name = vi->name;
        in->dtype_ok = vi->kind == ONNX_TYPE_TENSOR && onnx_dtype_to_kiln(vi->elem_type, &in->dtype);
        in->rank = vi->has_shape ? vi->rank : 0;
        in->dims = ARENA_ARRAY(arena, int64_t, in->rank + 1);
        in->syms = ARENA_ARRAY(arena, const char *, in->rank + 1);
        for (int k = 0; k < in->rank; k++) {
            in->dims[k] = vi->dims[k].value;
            if (vi->dims[k].value < 0)
                in->syms[k] = vi->dims[k].param ? vi->dims[k].param : unnamed_dim(arena, vi->name, k);
        }
    }
    return n;
}

static Dim bound_dim(Importer *im, const char *name) {
    for (int i = 0; im->opt && i < im->opt->ndims; i++)
        if (strcmp(im->opt->dims[i].name, name) == 0) return im->opt->dims[i].size;
    return ir_sym_named(im->g, name);
}

static void declare_inputs(Importer *im) {
    const OnnxGraph *g = &im->model->graph;
    for (int i = 0; i < g->ninputs; i++) {
        const OnnxValueInfo *vi = &g->inputs[i];
        bool init = is_initializer(im->model, vi->name);
        if (init && !overridden(im->opt, vi->name)) continue; /* a constant with a default */
        Value *v = new_value(im, vi->name);
        if (lookup(im, vi->name)) {
            model_error(im, "graph input '%s' is listed twice", vi->name);
            continue;
        }
        insert(im, v);
        v->failed = true;
        if (vi->kind != ONNX_TYPE_TENSOR) {
            model_error(im,
                        "graph input '%s' is not a tensor (sequences, maps and optionals are not supported)",
                        vi->name);
            continue;
        }
        v->odt = vi->elem_type;
        if (!onnx_dtype_to_kiln(vi->elem_type, &v->dt)) {
            model_error(
                im,
                "graph input '%s' has dtype %s, which kiln does not have (kiln has f32, f16, bf16, f64, "
                "i32, i64, bool)",
                vi->name, onnx_dtype_name(vi->elem_type));
            continue;
        }
        if (!vi->has_shape) {
            model_error(im, "graph input '%s' has no shape; kiln needs at least its rank", vi->name);
            continue;
        }
        v->rank = vi->rank;
        v->shape = ARENA_ARRAY(im->arena, Dim, vi->rank + 1);
        bool shape_ok = true;
        for (int k = 0; k < vi->rank; k++) {
            const OnnxDim *d = &vi->dims[k];
            if (d->value == 0) {
                model_error(
                    im, "graph input '%s' has an empty dimension (%d); kiln tensors have no empty dimension",
                    vi->name, k);
                shape_ok = false;
            }
            v->shape[k] = d->value > 0
                              ? d->value
                              : bound_dim(im, d->param ? d->param : unnamed_dim(im->arena, vi->name, k));
        }
        if (!shape_ok) continue;
        v->id = mk_param(&im->mk, vi->name, v->dt, v->rank, v->shape, (Loc){0});
        v->failed = v->id == MK_ERROR;
        for (int b = 0; im->opt && b < im->opt->nbound; b++)
            if (strcmp(im->opt->bound_names[b], vi->name) == 0 && im->opt->bound[b]->dtype == v->dt &&
                im->opt->bound[b]->rank == v->rank)
                v->bound = im->opt->bound[b];
    }
    im->out->ninputs = im->g->params.len;
}

static void declare_initializers(Importer *im) {
    const OnnxGraph *g = &im->model->graph;
    for (int i = 0; i < g->ninitializers; i++) {
        const OnnxTensor *t = &g->initializers[i];
        if (lookup(im, t->name)) {
            if (!overridden(im->opt, t->name)) model_error(im, "initializer '%s' is defined twice", t->name);
            continue;
        }
        Value *v = new_value(im, t->name);
        v->init = t;
        v->odt = t->data_type;
        v->rank = t->rank;
        v->shape = ARENA_ARRAY(im->arena, Dim, t->rank + 1);
        for (int k = 0; k < t->rank; k++) v->shape[k] = t->dims[k];
        if (!onnx_dtype_widened(t->data_type, &v->dt)) {
            /* refused where it is used: a model may carry tensors it never reads */
            v->failed = true;
            model_error(im, "initializer '%s' has dtype %s, which kiln cannot read", t->name,
                        onnx_dtype_name(t->data_type));
        }
        insert(im, v);
    }
    if (g->nsparse_initializers)
        model_error(im, "the graph has %d sparse initializer(s); sparse tensors are not supported",
                    g->nsparse_initializers);
}

/* The declared type of value `vi` (an output or a value_info entry) against
 * the one kiln computed: a mismatch means a wrong model or a wrong lowering,
 * and either way no answer should come out. */
static void check_declared(Importer *im, const OnnxValueInfo *vi, const Value *v) {
    if (vi->kind != ONNX_TYPE_TENSOR || v->failed || (!v->shape && v->rank)) return;
    KilnDType dt;
    if (vi->elem_type && onnx_dtype_to_kiln(vi->elem_type, &dt) && v->odt && v->odt != vi->elem_type) {
        model_error(im, "value '%s' is declared %s, kiln computes %s", vi->name,
                    onnx_dtype_name(vi->elem_type), onnx_dtype_name(v->odt));
        return;
    }
    if (!vi->has_shape) return;
    bool same = vi->rank == v->rank;
    for (int k = 0; same && k < v->rank; k++)
        if (vi->dims[k].value >= 0 && v->shape[k] >= 0 && vi->dims[k].value != v->shape[k]) same = false;
    if (!same) {
        StrBuf want = {0};
        sb_puts(&want, "[");
        for (int k = 0; k < vi->rank; k++) {
            if (vi->dims[k].value >= 0)
                sb_printf(&want, "%s%lld", k ? ", " : "", (long long)vi->dims[k].value);
            else
                sb_printf(&want, "%s%s", k ? ", " : "", vi->dims[k].param ? vi->dims[k].param : "?");
        }
        sb_puts(&want, "]");
        char *got = ir_type_str(im->g, v->dt, v->rank, v->shape);
        model_error(im, "value '%s' is declared with shape %s, kiln computes %s", vi->name, want.data, got);
        free(got);
        sb_free(&want);
    }
}

static void make_outputs(Importer *im) {
    const OnnxGraph *g = &im->model->graph;
    for (int i = 0; i < g->noutputs; i++) {
        const OnnxValueInfo *vi = &g->outputs[i];
        Value *v = lookup(im, vi->name);
        if (!v) {
            model_error(im, "graph output '%s' is not computed by any node", vi->name);
            continue;
        }
        if (v->unmade) {
            const OnnxNode *maker = &g->nodes[v->unmade - 1];
            model_error(
                im,
                "not supported: graph output '%s' is an optional output of node %d (%s%s%s%s) that kiln "
                "does not compute",
                vi->name, v->unmade, maker->op_type, maker->name[0] ? " '" : "", maker->name,
                maker->name[0] ? "'" : "");
            continue;
        }
        check_declared(im, vi, v);
        /* an output's node is made in the model's graph, with a Ctx for the messages */
        Ctx c = {.im = im,
                 .arena = im->arena,
                 .node = &(OnnxNode){.name = "", .op_type = "output", .domain = ""},
                 .opset = im->opset,
                 .mk = &im->mk,
                 .in = &v,
                 .nin = 1};
        int id = v->failed ? MK_ERROR : in_id(&c, 0);
        mk_result(&im->mk, id);
    }
    for (int i = 0; i < g->nvalue_info; i++) {
        Value *v = lookup(im, g->value_info[i].name);
        if (v) check_declared(im, &g->value_info[i], v);
    }
}

IRGraph *onnx_declare_inputs(Arena *arena, const OnnxModel *m, const OnnxImportOptions *opt,
                             DiagList *diags) {
    OnnxImport out = {0};
    Importer im = {.arena = arena, .model = m, .opt = opt, .diags = diags, .out = &out};
    int nerr = diags->nerrors;
    im.g = ir_graph_new(arena, m->graph.name[0] ? arena_strdup(arena, m->graph.name) : "model");
    mk_init(&im.mk, im.g, diags);
    declare_inputs(&im);
    mk_free(&im.mk);
    free(im.table);
    if (diags->nerrors != nerr) {
        ir_graph_destroy(im.g);
        return NULL;
    }
    return im.g;
}

bool onnx_import(Arena *arena, const OnnxModel *m, const OnnxImportOptions *opt, DiagList *diags,
                 OnnxImport *out) {
    memset(out, 0, sizeof *out);
    Importer im = {.arena = arena, .model = m, .opt = opt, .diags = diags, .out = out};
    int nerr = diags->nerrors;
    im.g = out->g = ir_graph_new(arena, m->graph.name[0] ? arena_strdup(arena, m->graph.name) : "model");
    mk_init(&im.mk, im.g, diags);
    im.src = make_listing(&im);
    im.opset = onnx_model_opset(m);
    if (im.opset < 0) {
        model_error(&im, "the model imports no opset of the default domain ai.onnx");
    } else {
        /* refused, but the walk goes on so that every other problem is listed too */
        if (im.opset > 21)
            model_error(&im, "opset %lld is newer than kiln knows (kiln implements opsets up to 21)",
                        (long long)im.opset);
        if (m->ir_version < 3)
            model_error(&im, "IR version %lld is older than kiln reads (3 and later)",
                        (long long)m->ir_version);
        declare_inputs(&im);
        declare_initializers(&im);
        im.fold_budget = FOLD_BUDGET;
        for (int i = 0; i < m->graph.ninitializers; i++) im.fold_budget += m->graph.initializers[i].numel;
        for (int i = 0; i < m->graph.nnodes; i++) lower_node(&im, i);
        make_outputs(&im);
    }
    mk_free(&im.mk);
    VEC_FREE(im.fold_inputs);
    free(im.table);
    return diags->nerrors == nerr;
}

void onnx_import_free(OnnxImport *imp) {
    if (!imp) return;
    for (int i = 0; i < imp->owned.len; i++) {
        kiln_tensor_free(imp->owned.data[i]);
        free(imp->owned.data[i]);
    }
    VEC_FREE(imp->owned);
    VEC_FREE(imp->weights);
    VEC_FREE(imp->node_last);
    VEC_FREE(imp->named);
    if (imp->g) ir_graph_destroy(imp->g);
    memset(imp, 0, sizeof *imp);
}
