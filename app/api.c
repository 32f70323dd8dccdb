/* api.c - the public model API (include/kiln.h, kiln_model_*): a graph
 * compiled once, weights bound once, runs from many threads, over the one
 * executor (exec.h).
 *
 * A model holds:
 *   - the opened program (Compilation) and the graph built with its
 *     symbolic dimensions (`sym`), which tells every parameter's declared
 *     type and every named dimension;
 *   - per parameter, the bound value: the model's one copy, used in place
 *     by every executable (exec_bind_shared);
 *   - per named dimension, its fixed size (from the options or a bound
 *     parameter) or none;
 *   - variants: one Executable per set of dimension sizes met, compiled on
 *     first use with the parameters bound by then as constants (the CPU
 *     packs those once); binding a parameter that a variant did not have
 *     as a constant drops that variant (compiled again on demand).
 *
 * An ONNX model (recognised by content) has as parameters its graph inputs
 * only: `sym` is the model imported with its symbolic dimensions, and each
 * variant imports it again for its sizes (folding may depend on them) and
 * binds the weights that import names (initializers, folded constants:
 * Variant.weights, parameters nparams.. of its graph) as constants.
 *
 * Locks.  `lock` (a writer-preferring rwlock): runs hold it shared; bind,
 * load_weights and close hold it exclusively, so an Executable is never
 * bound while it runs (exec.h).  `compile_lock` guards the variant list, the
 * Compilation's arena and its diagnostics, which compiling a variant uses;
 * it is taken inside `lock`, never the other way round.
 *
 * Every failure is a KilnError whose message is what the command line
 * prints: the diagnostics (diag_print), or "kiln: " and one line. */
#include "app/app.h"
#include "passes/pass.h"
#include "runtime/tensorio.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *name;
    KilnDType dtype;
    int rank;
    const Dim *decl; /* declared shape (symbolic dims are sym's) */
    int *sym;        /* per dimension: the named dimension's index, or -1 */
    const char *bound_by; /* "the binding of 'w'" (the arena's): one pointer per
                             parameter, so a size's origin is compared, never its text */
    bool bound;
    KilnTensor value;         /* the bound copy, or a view of `file` */
    struct WeightsFile *file; /* the mapped weights file `value` is a view of; NULL: a copy */
} ModelParam;

/* A weights file mapped by kiln_model_load_weights: its tensors of the
 * parameters' dtypes (aligned to their elements, unless the device takes
 * them at any offset) are bound as views of it, not copied; it is unmapped
 * when no parameter's value lies in it any more. */
typedef struct WeightsFile {
    const uint8_t *data;
    size_t len;
    int views; /* parameters whose value is a view of it */
} WeightsFile;

typedef struct {
    int64_t *sizes; /* per named dimension */
    bool *constant; /* per parameter: bound when this was compiled (a constant of g) */
    IRGraph *g;     /* concrete; outlives x (graph-level backends run it) */
    Executable *x;
    int64_t **result_shapes; /* per result (the arena's) */
    KilnTensor *weights;     /* an ONNX model's: bound to g's parameters nparams.. */
    bool *weight_is_view;    /* per weight: a view of the mapped model (not to free) */
    int nweights;
} Variant;

struct KilnModel {
    pthread_rwlock_t lock;
    pthread_mutex_t compile_lock;
    bool closed;
    Compilation c;
    int entry;
    CompileOptions copt;
    const Backend *be;
    IRGraph *sym;
    int onnx_inputs; /* an ONNX model's graph inputs: sym's first parameters */
    int nparams, nresults;
    ModelParam *params;
    KilnTensorInfo *param_info, *result_info; /* the arena's */
    /* the graph's named dimensions */
    int ndims;
    const char **dim_names;
    int64_t *dim_fixed;        /* the size, or -1 */
    const char **dim_fixed_by; /* "the options", "the binding of 'w'" */
    bool *dim_in_params;
    VEC(Variant *) variants;
};

/* ------------------------------------------------------------ errors */

void kiln_error_clear(KilnError *err) {
    if (!err) return;
    free(err->file);
    free(err->message);
    memset(err, 0, sizeof *err);
}

/* Fills err (when there is one) with the diagnostics, if any, then
 * "kiln: MSG" when msg is not empty.  `file`: the file the error is about
 * when no diagnostic says (NULL: none). */
static void error_fill(KilnError *err, KilnStatus st, DiagList *diags, const char *file, const char *msg) {
    if (!err) return;
    kiln_error_clear(err);
    err->status = st;
    StrBuf text = {0};
    if (diags && diags->items.len) {
        char *printed = NULL;
        size_t len = 0;
        FILE *f = open_memstream(&printed, &len);
        if (f) {
            diag_print(diags, f); /* sorts them: items[0] is now the first */
            fclose(f);
            sb_puts(&text, printed ? printed : "");
            free(printed);
        }
        const Diag *first = &diags->items.data[0];
        if (first->loc.src && first->loc.line > 0) {
            file = first->loc.src->path;
            err->line = first->loc.line;
            err->col = first->loc.col;
        }
    }
    if (msg && msg[0]) sb_printf(&text, "kiln: %s\n", msg);
    if (text.len && text.data[text.len - 1] == '\n') text.data[--text.len] = 0;
    err->message = text.data ? text.data : xstrdup("kiln: unknown error");
    err->file = file ? xstrdup(file) : NULL;
}

static KilnStatus fail(KilnError *err, KilnStatus st, const char *file, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static KilnStatus fail(KilnError *err, KilnStatus st, const char *file, const char *fmt, ...) {
    StrBuf sb = {0};
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(&sb, fmt, ap);
    va_end(ap);
    error_fill(err, st, NULL, file, sb.data);
    sb_free(&sb);
    return st;
}

/* ------------------------------------------------------------ shapes */

static void shape_print(const int64_t *shape, int rank, StrBuf *sb) {
    sb_puts(sb, "[");
    for (int k = 0; k < rank; k++) sb_printf(sb, "%s%lld", k ? ", " : "", (long long)shape[k]);
    sb_puts(sb, "]");
}

static int find_dim(const KilnModel *m, const char *name) {
    for (int d = 0; d < m->ndims; d++)
        if (strcmp(m->dim_names[d], name) == 0) return d;
    return -1;
}

/* Checks tensor t against parameter p, with the named dimensions' sizes
 * known so far in sizes[] (-1: none; who[d] says where a size came from),
 * and records the sizes t gives.  `what` names t for messages ("input 'x'").
 * need_data: t must have data (all but kiln_model_plan's inputs).
 * False with a message in err. */
static bool fit_param(const KilnModel *m, const ModelParam *p, const KilnTensor *t, bool convertible,
                      bool need_data, int64_t *sizes, const char **who, const char *what, const char *origin,
                      char *err, size_t errlen) {
    bool dtype_ok = t->dtype == p->dtype ||
                    (convertible && t->dtype == KILN_F32 && (p->dtype == KILN_F16 || p->dtype == KILN_BF16));
    char *want = ir_type_str(m->sym, p->dtype, p->rank, p->decl);
    StrBuf got = {0};
    sb_puts(&got, kiln_dtype_name(t->dtype));
    shape_print(t->shape, t->rank, &got);
    bool ok = dtype_ok && t->rank == p->rank && (t->shape || t->rank == 0);
    if (!ok) snprintf(err, errlen, "%s is %s; parameter '%s' is %s", what, got.data, p->name, want);
    for (int k = 0; ok && k < p->rank; k++) {
        int d = p->sym[k];
        int64_t n = t->shape[k];
        if (n < 0) {
            snprintf(err, errlen, "%s has a negative dimension (%s)", what, got.data);
            ok = false;
        } else if (d < 0 && !DIM_IS_SYM(p->decl[k]) && n != p->decl[k]) {
            snprintf(err, errlen, "%s is %s; parameter '%s' is %s (dimension %d is %lld, not %lld)", what,
                     got.data, p->name, want, k, (long long)n, (long long)p->decl[k]);
            ok = false;
        } else if (d >= 0 && sizes[d] >= 0 && sizes[d] != n) {
            snprintf(err, errlen, "%s is %s; parameter '%s' is %s, and %s is %lld (%s), not %lld", what,
                     got.data, p->name, want, m->dim_names[d], (long long)sizes[d], who[d], (long long)n);
            ok = false;
        } else if (d >= 0 && sizes[d] < 0) {
            if (n == 0) {
                snprintf(err, errlen, "%s is %s: dimension %s of parameter '%s' must be positive", what,
                         got.data, m->dim_names[d], p->name);
                ok = false;
            }
            sizes[d] = n;
            who[d] = origin;
        }
    }
    if (ok && need_data && !t->data && kiln_tensor_numel(t) > 0) {
        snprintf(err, errlen, "%s has no data", what);
        ok = false;
    }
    free(want);
    sb_free(&got);
    return ok;
}

/* ------------------------------------------------------------ variants */

static void variant_destroy(Variant *v) {
    if (!v) return;
    exec_destroy(v->x);
    if (v->g) ir_graph_destroy(v->g);
    for (int i = 0; i < v->nweights; i++) {
        if (v->weight_is_view[i]) v->weights[i].data = NULL;
        kiln_tensor_free(&v->weights[i]);
    }
    free(v->weights);
    free(v->weight_is_view);
    free(v->sizes);
    free(v->constant);
    free(v);
}

/* An ONNX model imported for these sizes (the rest symbolic); with v, its
 * weights into v->weights: views of the mapped model where the device
 * takes them as they lie in it (driver_weight_view), else read (copied,
 * converted).  NULL with diagnostics or msg. */
static IRGraph *import_onnx(KilnModel *m, const DimBinding *binds, int nbinds, Variant *v, char *msg,
                            size_t msglen) {
    OnnxImportOptions io = {.dims = binds, .ndims = nbinds};
    OnnxImport imp;
    IRGraph *g = NULL;
    if (onnx_import(m->c.arena, m->c.onnx, &io, &m->c.diags, &imp) && imp.ninputs == m->onnx_inputs) {
        g = imp.g, imp.g = NULL;
        for (int i = imp.ninputs; i < g->params.len; i++) ir_node(g, g->params.data[i])->flag = true;
    }
    if (g && v) {
        v->weights = xcalloc((size_t)imp.weights.len + 1, sizeof *v->weights);
        v->weight_is_view = xcalloc((size_t)imp.weights.len + 1, sizeof *v->weight_is_view);
        bool unaligned = backend_takes_unaligned(m->be);
        for (; v->nweights < imp.weights.len; v->nweights++) {
            int k = v->nweights;
            const OnnxWeight *w = &imp.weights.data[k];
            const Node *p = ir_node(g, g->params.data[imp.ninputs + k]);
            char werr[512] = "";
            if ((v->weight_is_view[k] = driver_weight_view(w, p->dtype, p->rank, unaligned, &v->weights[k])))
                continue;
            if (!driver_onnx_weight(w, p->dtype, &v->weights[k], werr, sizeof werr)) {
                snprintf(msg, msglen, "%s: %s", m->c.onnx->path, werr[0] ? werr : "out of host memory");
                ir_graph_destroy(g);
                g = NULL;
                break;
            }
        }
    }
    onnx_import_free(&imp);
    return g;
}

/* Builds the concrete graph for the sizes given (every named dimension's),
 * marking the bound parameters constant, and runs the passes.  Called at
 * load (to check it) and by variant_compile (v: where an ONNX model's
 * weights go), with compile_lock held or the model not yet shared (the
 * Compilation's arena and diagnostics).  NULL with err filled. */
static IRGraph *build_graph(KilnModel *m, const int64_t *sizes, Variant *v, KilnError *err) {
    char msg[4096] = "";
    DimBinding *binds = xcalloc((size_t)m->ndims + 1, sizeof *binds);
    for (int d = 0; d < m->ndims; d++) binds[d] = (DimBinding){m->dim_names[d], sizes[d]};
    KilnStatus st = KILN_ERR_INPUT;
    const char *unbound;
    IRGraph *g = m->c.onnx ? import_onnx(m, binds, m->ndims, v, msg, sizeof msg)
                           : ir_build(m->c.arena, &m->c.prog, m->entry, binds, m->ndims, &m->c.diags);
    IRGraph *o = NULL;
    free(binds);
    if (g && !ir_graph_is_concrete(g, &unbound)) {
        snprintf(msg, sizeof msg, "dimension %s of graph '%s' has no size: give it in the options' dims",
                 unbound, m->sym->name);
        st = KILN_ERR_USAGE;
    } else if (g) {
        /* bound weights are constants: backends prepare them once (the CPU packs them) */
        for (int i = 0; i < m->nparams && i < g->params.len; i++)
            ir_node(g, g->params.data[i])->flag = m->params[i].bound;
        PassOptions po = driver_pass_options(&m->copt);
        st = passes_run(m->c.arena, g, &po, &o, msg, sizeof msg);
    }
    if (o) {
        if (o != g) ir_graph_destroy(g);
        return o;
    }
    error_fill(err, st, &m->c.diags, NULL, msg);
    diag_clear(&m->c.diags);
    if (g) ir_graph_destroy(g);
    return NULL;
}

/* Compiles the graph for the sizes given and binds the bound parameters.
 * Called with compile_lock held. */
static Variant *variant_compile(KilnModel *m, const int64_t *sizes, KilnError *err) {
    char msg[4096] = "";
    Variant *v = xcalloc(1, sizeof *v);
    v->sizes = xmalloc(sizeof(int64_t) * (size_t)(m->ndims + 1));
    if (m->ndims) memcpy(v->sizes, sizes, sizeof(int64_t) * (size_t)m->ndims);
    v->constant = xcalloc((size_t)m->nparams + 1, sizeof *v->constant);
    if (!(v->g = build_graph(m, sizes, v, err))) goto fail;
    KilnStatus st = KILN_ERR_DEVICE;
    if (!(v->x = exec_compile(m->be, v->g, &m->copt, msg, sizeof msg))) goto failed;
    /* one batch, as exec_bind_constants: the CPU packs the operands on its
     * pool's threads at its end (ResNet-50's 53: ~50 -> ~26 ms) */
    if (!exec_bind_batch(v->x, true, msg, sizeof msg)) goto failed;
    st = KILN_OK;
    for (int i = 0; i < m->nparams && st == KILN_OK; i++)
        if ((v->constant[i] = m->params[i].bound))
            st = exec_bind_shared(v->x, i, &m->params[i].value, msg, sizeof msg);
    for (int i = 0; i < v->nweights && st == KILN_OK; i++)
        st = exec_bind_shared(v->x, m->nparams + i, &v->weights[i], msg, sizeof msg);
    if ((st = exec_bind_batch_end(v->x, st, msg, sizeof msg)) != KILN_OK) goto failed;
    v->result_shapes = ARENA_ARRAY(m->c.arena, int64_t *, m->nresults + 1);
    for (int r = 0; r < m->nresults; r++) {
        const Node *n = ir_node(v->g, v->g->results.data[r]);
        v->result_shapes[r] = ARENA_ARRAY(m->c.arena, int64_t, n->rank + 1);
        for (int k = 0; k < n->rank; k++) v->result_shapes[r][k] = n->shape[k];
    }
    return v;
failed:
    error_fill(err, st, NULL, NULL, msg);
fail:
    variant_destroy(v);
    return NULL;
}

/* The variant for these sizes, compiled if need be. */
static Variant *variant_get(KilnModel *m, const int64_t *sizes, KilnError *err) {
    pthread_mutex_lock(&m->compile_lock);
    Variant *v = NULL;
    for (int i = 0; i < m->variants.len && !v; i++) {
        Variant *c = m->variants.data[i];
        if (m->ndims == 0 || memcmp(c->sizes, sizes, sizeof(int64_t) * (size_t)m->ndims) == 0) v = c;
    }
    if (!v && (v = variant_compile(m, sizes, err))) VEC_PUSH(m->variants, v);
    pthread_mutex_unlock(&m->compile_lock);
    return v;
}

/* Checks a run's inputs and finds (or compiles) the variant for their
 * sizes.  Called with the lock held shared. */
static Variant *variant_for_inputs(KilnModel *m, const KilnTensor *inputs, bool need_data, KilnError *err) {
    int64_t *sizes = xcalloc((size_t)m->ndims + 1, sizeof *sizes);
    const char **who = xcalloc((size_t)m->ndims + 1, sizeof *who);
    char msg[1024];
    Variant *v = NULL;
    bool ok = true;
    for (int d = 0; d < m->ndims; d++) sizes[d] = m->dim_fixed[d], who[d] = m->dim_fixed_by[d];
    StrBuf what = {0};
    for (int i = 0; ok && i < m->nparams; i++) {
        const ModelParam *p = &m->params[i];
        if (p->bound) continue;
        what.len = 0;
        sb_printf(&what, "input '%s'", p->name);
        if (!inputs || (!inputs[i].data && !inputs[i].shape)) {
            fail(err, KILN_ERR_USAGE, NULL, "%s (parameter %d) is missing: pass it, or bind it first",
                 what.data, i);
            ok = false;
        } else if (!fit_param(m, p, &inputs[i], false, need_data, sizes, who, what.data, "from the inputs",
                              msg, sizeof msg)) {
            fail(err, KILN_ERR_USAGE, NULL, "%s", msg);
            ok = false;
        }
    }
    for (int d = 0; ok && d < m->ndims; d++) {
        if (sizes[d] < 0) { /* checked at load: every dimension is fixed or a parameter's */
            fail(err, KILN_ERR_USAGE, NULL, "dimension %s of graph '%s' has no size", m->dim_names[d],
                 m->sym->name);
            ok = false;
        }
    }
    if (ok) v = variant_get(m, sizes, err);
    sb_free(&what);
    free(sizes);
    free(who);
    return v;
}

/* ------------------------------------------------------------ opening */

/* Drops a parameter's bound value: the model's copy, or a view (the last
 * view of a mapped weights file unmaps it). */
static void value_free(KilnTensor *value, WeightsFile *file) {
    if (file) {
        value->data = NULL;
        if (--file->views == 0) {
            tensorio_unmap(file->data, file->len);
            free(file);
        }
    }
    kiln_tensor_free(value);
}

static void model_release(KilnModel *m) {
    for (int i = 0; i < m->variants.len; i++) variant_destroy(m->variants.data[i]);
    VEC_FREE(m->variants);
    for (int i = 0; m->params && i < m->nparams; i++) value_free(&m->params[i].value, m->params[i].file);
    free(m->params);
    free(m->dim_names);
    free(m->dim_fixed);
    free(m->dim_fixed_by);
    free(m->dim_in_params);
    if (m->sym) ir_graph_destroy(m->sym);
    compilation_close(&m->c);
    m->params = NULL;
    m->dim_names = NULL;
    m->dim_fixed = NULL;
    m->dim_fixed_by = NULL;
    m->dim_in_params = NULL;
    m->sym = NULL;
    m->nparams = m->nresults = m->ndims = 0;
    m->closed = true;
}

static KilnModel *model_new(void) {
    KilnModel *m = xcalloc(1, sizeof *m);
    pthread_rwlockattr_t attr;
    pthread_rwlockattr_init(&attr);
    /* a waiting close or bind is not starved by a stream of runs */
    pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
    pthread_rwlock_init(&m->lock, &attr);
    pthread_rwlockattr_destroy(&attr);
    pthread_mutex_init(&m->compile_lock, NULL);
    return m;
}

static KilnStatus parse_options(const KilnModelOptions *opt, CompileOptions *copt, const Backend **be,
                                KilnError *err) {
    memset(copt, 0, sizeof *copt);
    copt->opt_level = 2;
    const char *prec = opt ? opt->precision : NULL;
    if (!prec || !*prec || strcmp(prec, "f32") == 0)
        copt->precision = PREC_F32;
    else if (strcmp(prec, "f16") == 0)
        copt->precision = PREC_F16;
    else if (strcmp(prec, "bf16") == 0)
        copt->precision = PREC_BF16;
    else if (strcmp(prec, "auto") == 0)
        copt->precision = PREC_AUTO;
    else
        return fail(err, KILN_ERR_USAGE, NULL, "precision takes f32, f16, bf16 or auto, found '%s'", prec);
    for (int i = 0; opt && i < opt->ndims; i++) {
        const KilnDim *d = &opt->dims[i];
        if (!d->name || !d->name[0] || d->size <= 0)
            return fail(err, KILN_ERR_USAGE, NULL,
                        "dims: each needs a name and a positive size, found %s=%lld",
                        d->name ? d->name : "(null)", (long long)d->size);
        for (int j = 0; j < i; j++)
            if (strcmp(opt->dims[j].name, d->name) == 0)
                return fail(err, KILN_ERR_USAGE, NULL, "dims: %s is given twice", d->name);
    }
    const char *device = opt && opt->device && opt->device[0] ? opt->device : backend_default();
    char msg[1024];
    KilnStatus st = backend_open(device, be, msg, sizeof msg);
    if (st != KILN_OK) return fail(err, st, NULL, "%s", msg);
    return KILN_OK;
}

/* The parameters', results' and named dimensions' descriptions, from the
 * symbolic graph. */
static void describe(KilnModel *m) {
    const IRGraph *g = m->sym;
    Arena *a = m->c.arena;
    m->nparams = m->c.onnx ? m->onnx_inputs : g->params.len;
    m->nresults = g->results.len;
    m->ndims = 0;
    m->dim_names = xcalloc((size_t)g->syms.len + 1, sizeof *m->dim_names);
    for (int s = 0; s < g->syms.len; s++)
        if (g->syms.data[s].kind == SYM_NAMED) m->dim_names[m->ndims++] = g->syms.data[s].name;
    m->dim_fixed = xmalloc(sizeof(int64_t) * (size_t)(m->ndims + 1));
    m->dim_fixed_by = xcalloc((size_t)m->ndims + 1, sizeof *m->dim_fixed_by);
    m->dim_in_params = xcalloc((size_t)m->ndims + 1, sizeof *m->dim_in_params);
    for (int d = 0; d < m->ndims; d++) m->dim_fixed[d] = -1;
    m->params = xcalloc((size_t)m->nparams + 1, sizeof *m->params);
    m->param_info = ARENA_ARRAY(a, KilnTensorInfo, m->nparams + 1);
    m->result_info = ARENA_ARRAY(a, KilnTensorInfo, m->nresults + 1);
    for (int i = 0; i < m->nparams + m->nresults; i++) {
        bool is_param = i < m->nparams;
        int r = i - m->nparams;
        const Node *n = ir_node(g, is_param ? g->params.data[i] : g->results.data[r]);
        KilnTensorInfo *info = is_param ? &m->param_info[i] : &m->result_info[r];
        int64_t *shape = ARENA_ARRAY(a, int64_t, n->rank + 1);
        for (int k = 0; k < n->rank; k++) shape[k] = DIM_IS_SYM(n->shape[k]) ? -1 : n->shape[k];
        char *type = ir_type_str(g, n->dtype, n->rank, n->shape);
        /* results: an ONNX model's output names, else out0, out1 ... */
        const char *name = is_param ? arena_strdup(a, n->name ? n->name : "?")
                           : m->c.onnx && r < m->c.onnx->graph.noutputs ? m->c.onnx->graph.outputs[r].name
                                                                        : arena_printf(a, "out%d", r);
        *info = (KilnTensorInfo){name, n->dtype, n->rank, shape, arena_strdup(a, type)};
        free(type);
        if (!is_param) continue;
        ModelParam *p = &m->params[i];
        *p = (ModelParam){.name = info->name, .dtype = n->dtype, .rank = n->rank, .decl = n->shape};
        p->bound_by = arena_printf(a, "the binding of '%s'", info->name);
        p->sym = ARENA_ARRAY(a, int, n->rank + 1);
        for (int k = 0; k < n->rank; k++) {
            Dim dk = n->shape[k];
            bool named = DIM_IS_SYM(dk) && g->syms.data[DIM_SYM_INDEX(dk)].kind == SYM_NAMED;
            p->sym[k] = named ? find_dim(m, g->syms.data[DIM_SYM_INDEX(dk)].name) : -1;
            if (p->sym[k] >= 0) m->dim_in_params[p->sym[k]] = true;
        }
    }
}

/* Fixes the options' dimensions; every other one must be a parameter's. */
static KilnStatus fix_dims(KilnModel *m, const KilnModelOptions *opt, KilnError *err) {
    for (int i = 0; opt && i < opt->ndims; i++) {
        int d = find_dim(m, opt->dims[i].name);
        if (d < 0) {
            StrBuf names = {0};
            for (int k = 0; k < m->ndims; k++) sb_printf(&names, "%s%s", k ? ", " : "", m->dim_names[k]);
            KilnStatus st = fail(err, KILN_ERR_USAGE, NULL, "dims: graph '%s' has no dimension '%s' (%s%s)",
                                 m->sym->name, opt->dims[i].name,
                                 m->ndims ? "its dimensions: " : "it has none", names.data ? names.data : "");
            sb_free(&names);
            return st;
        }
        m->dim_fixed[d] = opt->dims[i].size;
        m->dim_fixed_by[d] = "fixed by the options";
    }
    for (int d = 0; d < m->ndims; d++)
        if (m->dim_fixed[d] < 0 && !m->dim_in_params[d])
            return fail(
                err, KILN_ERR_USAGE, NULL,
                "dimension %s of graph '%s' is in no parameter's type: give its size in the options' dims",
                m->dim_names[d], m->sym->name);
    return KILN_OK;
}

/* Opens a model from an opened Compilation (status st of opening it). */
static KilnModel *model_open(KilnModel *m, KilnStatus st, const char *what, const char *msg,
                             const KilnModelOptions *opt, KilnError *err) {
    if (st != KILN_OK) {
        error_fill(err, st, &m->c.diags, m->c.diags.items.len ? NULL : what, msg);
        goto fail;
    }
    if (parse_options(opt, &m->copt, &m->be, err) != KILN_OK) goto fail;
    const char *graph = opt && opt->graph && opt->graph[0] ? opt->graph : NULL;
    m->entry = graph && !m->c.onnx ? program_find_graph(&m->c.prog, graph) : 0;
    if (m->entry < 0) {
        StrBuf names = {0};
        for (int i = 0; i < m->c.prog.ngraphs; i++) sb_printf(&names, " %s", m->c.prog.graphs[i].name);
        fail(err, KILN_ERR_USAGE, NULL, "%s has no graph named '%s'; it defines:%s", what, graph, names.data);
        sb_free(&names);
        goto fail;
    }
    if (m->c.onnx) {
        OnnxImport imp;
        if (onnx_import(m->c.arena, m->c.onnx, &(OnnxImportOptions){0}, &m->c.diags, &imp))
            m->sym = imp.g, m->onnx_inputs = imp.ninputs, imp.g = NULL;
        onnx_import_free(&imp);
    } else {
        m->sym = ir_build(m->c.arena, &m->c.prog, m->entry, NULL, 0, &m->c.diags);
    }
    if (!m->sym) {
        error_fill(err, KILN_ERR_INPUT, &m->c.diags, NULL, NULL);
        goto fail;
    }
    if (graph && m->c.onnx && strcmp(graph, m->sym->name) != 0) { /* a model has one graph */
        fail(err, KILN_ERR_USAGE, NULL, "%s has no graph named '%s'; it defines: %s", what, graph,
             m->sym->name);
        goto fail;
    }
    describe(m);
    if (fix_dims(m, opt, err) != KILN_OK) goto fail;
    /* with every size known, the graph is built now for its diagnostics;
     * the device's compilation waits for the first run, when the weights
     * are bound and can be compiled in as constants */
    bool all_fixed = true;
    for (int d = 0; d < m->ndims; d++) all_fixed = all_fixed && m->dim_fixed[d] >= 0;
    IRGraph *g = all_fixed ? build_graph(m, m->dim_fixed, NULL, err) : NULL;
    if (all_fixed && !g) goto fail;
    if (g) ir_graph_destroy(g);
    return m;
fail:
    kiln_model_free(m);
    return NULL;
}

KilnModel *kiln_model_load(const char *path, const KilnModelOptions *opt, KilnError *err) {
    if (!path) {
        fail(err, KILN_ERR_USAGE, NULL, "kiln_model_load needs a path");
        return NULL;
    }
    KilnModel *m = model_new();
    char msg[1024] = "";
    KilnStatus st = compilation_open(&m->c, path, msg, sizeof msg);
    return model_open(m, st, path, msg, opt, err);
}

KilnModel *kiln_model_compile(const char *source, const KilnModelOptions *opt, KilnError *err) {
    if (!source) {
        fail(err, KILN_ERR_USAGE, NULL, "kiln_model_compile needs source text");
        return NULL;
    }
    KilnModel *m = model_new();
    char msg[1024] = "";
    KilnStatus st =
        compilation_open_text(&m->c, COMPILATION_TEXT_NAME, source, strlen(source), msg, sizeof msg);
    return model_open(m, st, COMPILATION_TEXT_NAME, msg, opt, err);
}

/* ------------------------------------------------------------ binding */

static int param_index(const KilnModel *m, const char *name) {
    for (int i = 0; name && i < m->nparams; i++)
        if (strcmp(m->params[i].name, name) == 0) return i;
    return -1;
}

static KilnStatus no_such_param(const KilnModel *m, const char *name, KilnError *err) {
    Suggest s = {0};
    StrBuf names = {0};
    for (int i = 0; i < m->nparams; i++) {
        suggest_try(&s, name ? name : "", m->params[i].name);
        sb_printf(&names, "%s%s", i ? ", " : "", m->params[i].name);
    }
    KilnStatus st;
    if (s.best)
        st = fail(err, KILN_ERR_USAGE, NULL, "graph '%s' has no parameter '%s'; did you mean '%s'?",
                  m->sym->name, name ? name : "(null)", s.best);
    else
        st = fail(err, KILN_ERR_USAGE, NULL, "graph '%s' has no parameter '%s' (its parameters: %s)",
                  m->sym->name, name ? name : "(null)", names.data ? names.data : "none");
    sb_free(&names);
    return st;
}

/* One binding being made: parameter, the caller's tensor, and the sizes
 * its shape fixes. */
typedef struct {
    int param;
    const KilnTensor *t;
    const char *origin; /* the parameter's bound_by */
    WeightsFile *file;  /* t is a view of this mapped file (taken as it is where it fits), or NULL */
} Binding;

/* Checks every binding against the parameters and against each other;
 * sizes/who start as the model's fixed dimensions and end with theirs. */
static KilnStatus check_bindings(KilnModel *m, const Binding *b, int n, int64_t *sizes, const char **who,
                                 const char *file, KilnError *err) {
    char msg[1024];
    for (int d = 0; d < m->ndims; d++) sizes[d] = m->dim_fixed[d], who[d] = m->dim_fixed_by[d];
    /* a parameter bound again may change the sizes that its own earlier binding fixed */
    for (int i = 0; i < n; i++)
        for (int d = 0; d < m->ndims; d++)
            if (who[d] == b[i].origin) sizes[d] = -1, who[d] = NULL;
    StrBuf what = {0};
    KilnStatus st = KILN_OK;
    for (int i = 0; i < n && st == KILN_OK; i++) {
        const ModelParam *p = &m->params[b[i].param];
        what.len = 0;
        sb_printf(&what, "%s%s'%s'", file ? file : "", file ? ": tensor " : "the value bound to ", p->name);
        if (!fit_param(m, p, b[i].t, true, true, sizes, who, what.data, b[i].origin, msg, sizeof msg))
            st = fail(err, KILN_ERR_USAGE, file, "%s", msg);
    }
    sb_free(&what);
    return st;
}

/* The model's copy of a bound value, in the parameter's dtype. */
static bool copy_value(const ModelParam *p, const KilnTensor *t, KilnTensor *out) {
    if (t->dtype != p->dtype) return tensor_convert(t, p->dtype, out);
    if (!kiln_tensor_init(out, t->dtype, t->rank, t->shape)) return false;
    size_t bytes = (size_t)kiln_tensor_numel(t) * kiln_dtype_size(t->dtype);
    if (bytes) memcpy(out->data, t->data, bytes);
    return true;
}

/* A view of a mapped weights file used as it is: the parameter's dtype,
 * and at an offset the device reads (backend_takes_unaligned), else
 * aligned to its elements.  Its shape is its own. */
static bool take_view(const KilnModel *m, const ModelParam *p, const KilnTensor *t, KilnTensor *out) {
    size_t align = kiln_dtype_size(t->dtype);
    if (t->dtype != p->dtype || (!backend_takes_unaligned(m->be) && (uintptr_t)t->data % align != 0))
        return false;
    *out = (KilnTensor){t->dtype, t->rank, xmalloc(sizeof(int64_t) * (size_t)(t->rank + 1)), t->data};
    if (t->rank > 0) memcpy(out->shape, t->shape, sizeof(int64_t) * (size_t)t->rank);
    return true;
}

/* Makes checked bindings: copies each value once (or takes a view of a
 * mapped weights file as it is) and binds it to every variant that has the
 * parameter as a constant; drops the others (those whose sizes no longer
 * fit, and those compiled before the parameter was bound: compiled again on
 * demand, with it as a constant).  Called with the lock held exclusively. */
static KilnStatus apply_bindings(KilnModel *m, const Binding *b, int n, const int64_t *sizes,
                                 const char **who, KilnError *err) {
    KilnTensor *copies = xcalloc((size_t)n + 1, sizeof *copies);
    WeightsFile **viewed = xcalloc((size_t)n + 1, sizeof *viewed); /* per binding: the file of a view */
    for (int i = 0; i < n; i++) {
        const ModelParam *p = &m->params[b[i].param];
        if (b[i].file && take_view(m, p, b[i].t, &copies[i])) {
            viewed[i] = b[i].file;
            viewed[i]->views++;
            continue;
        }
        if (!copy_value(p, b[i].t, &copies[i])) {
            for (int j = 0; j < i; j++) value_free(&copies[j], viewed[j]);
            free(copies);
            free(viewed);
            return fail(err, KILN_ERR_DEVICE, NULL, "out of host memory for the value of '%s'",
                        m->params[b[i].param].name);
        }
    }
    pthread_mutex_lock(&m->compile_lock);
    int kept = 0;
    for (int v = 0; v < m->variants.len; v++) {
        Variant *var = m->variants.data[v];
        bool fits = true;
        for (int d = 0; d < m->ndims; d++) fits = fits && (sizes[d] < 0 || var->sizes[d] == sizes[d]);
        for (int i = 0; i < n; i++) fits = fits && var->constant[b[i].param];
        char msg[1024];
        if (fits) { /* one batch per variant (exec_bind_batch), ended even after a failed bind */
            fits = exec_bind_batch(var->x, true, msg, sizeof msg);
            for (int i = 0; fits && i < n; i++)
                fits = exec_bind_shared(var->x, b[i].param, &copies[i], msg, sizeof msg) == KILN_OK;
            fits = exec_bind_batch(var->x, false, msg, sizeof msg) && fits;
        }
        /* a variant that cannot take the new values is dropped (compiled again on demand) */
        if (fits)
            m->variants.data[kept++] = var;
        else
            variant_destroy(var);
    }
    m->variants.len = kept;
    pthread_mutex_unlock(&m->compile_lock);
    for (int i = 0; i < n; i++) {
        ModelParam *p = &m->params[b[i].param];
        value_free(&p->value, p->file);
        p->value = copies[i];
        p->file = viewed[i];
        p->bound = true;
    }
    for (int d = 0; d < m->ndims; d++) m->dim_fixed[d] = sizes[d], m->dim_fixed_by[d] = who[d];
    free(copies);
    free(viewed);
    return KILN_OK;
}

static KilnStatus bind_all(KilnModel *m, Binding *b, int n, const char *file, KilnError *err) {
    int64_t *sizes = xcalloc((size_t)m->ndims + 1, sizeof *sizes);
    const char **who = xcalloc((size_t)m->ndims + 1, sizeof *who);
    for (int i = 0; i < n; i++) b[i].origin = m->params[b[i].param].bound_by;
    KilnStatus st = check_bindings(m, b, n, sizes, who, file, err);
    if (st == KILN_OK) st = apply_bindings(m, b, n, sizes, who, err);
    free(sizes);
    free(who);
    return st;
}

/* Takes the lock: shared for runs, exclusive for changes; fails on a
 * closed model (the lock is then released). */
static bool model_enter(KilnModel *m, bool exclusive, KilnError *err) {
    if (!m) {
        fail(err, KILN_ERR_USAGE, NULL, "the model is NULL");
        return false;
    }
    if (exclusive)
        pthread_rwlock_wrlock(&m->lock);
    else
        pthread_rwlock_rdlock(&m->lock);
    if (!m->closed) return true;
    pthread_rwlock_unlock(&m->lock);
    fail(err, KILN_ERR_USAGE, NULL, "the model is closed");
    return false;
}

static void model_leave(KilnModel *m) { pthread_rwlock_unlock(&m->lock); }

KilnStatus kiln_model_bind(KilnModel *m, const char *name, const KilnTensor *t, KilnError *err) {
    if (!model_enter(m, true, err)) return KILN_ERR_USAGE;
    KilnStatus st;
    int i = param_index(m, name);
    if (i < 0)
        st = no_such_param(m, name, err);
    else if (!t)
        st = fail(err, KILN_ERR_USAGE, NULL, "kiln_model_bind: no tensor given for '%s'", name);
    else
        st = bind_all(m, &(Binding){i, t, NULL, NULL}, 1, NULL, err);
    model_leave(m);
    return st;
}

KilnStatus kiln_model_load_weights(KilnModel *m, const char *path, KilnError *err) {
    if (!path) return fail(err, KILN_ERR_USAGE, NULL, "kiln_model_load_weights needs a path");
    if (!model_enter(m, true, err)) return KILN_ERR_USAGE;
    KilnTensorList list = {0};
    char msg[1024];
    KilnStatus st = KILN_OK;
    Binding *b = NULL;
    int n = 0;
    /* mapped, its tensors bound as views where they fit (apply_bindings),
     * else read and copied (also when it cannot be mapped: a pipe ...) */
    WeightsFile *file = xcalloc(1, sizeof *file);
    bool mapped = tensorio_map_file(path, &file->data, &file->len, msg, sizeof msg);
    file->views = 1; /* this call's, until it returns */
    bool read = mapped ? safetensors_read_views(file->data, file->len, &list, msg, sizeof msg)
                       : kiln_safetensors_read(path, &list, msg, sizeof msg);
    if (!read) {
        if (mapped) tensorio_prefix_error(msg, sizeof msg, path);
        st = fail(err, KILN_ERR_INPUT, path, "%s", msg);
    } else {
        b = xcalloc((size_t)list.count + 1, sizeof *b);
        for (int i = 0; i < list.count; i++) {
            int p = param_index(m, list.names[i]);
            if (p >= 0) b[n++] = (Binding){p, &list.tensors[i], NULL, mapped ? file : NULL};
        }
        if (n == 0) {
            StrBuf names = {0};
            for (int i = 0; i < m->nparams; i++) sb_printf(&names, "%s%s", i ? ", " : "", m->params[i].name);
            st = fail(err, KILN_ERR_INPUT, path,
                      "%s: no tensor of the file names a parameter of graph '%s' (%s)", path, m->sym->name,
                      names.data ? names.data : "it has none");
            sb_free(&names);
        } else {
            st = bind_all(m, b, n, path, err);
        }
    }
    free(b);
    if (mapped) /* views: their shapes are theirs, their data the file's */
        for (int i = 0; i < list.count; i++) list.tensors[i].data = NULL;
    kiln_tensor_list_free(&list);
    KilnTensor none = {0};
    if (mapped)
        value_free(&none, file); /* this call's view: unmapped unless a parameter holds one */
    else
        free(file);
    model_leave(m);
    return st;
}

/* ------------------------------------------------------------ queries */

int kiln_model_num_params(KilnModel *m) {
    if (!model_enter(m, false, NULL)) return 0;
    int n = m->nparams;
    model_leave(m);
    return n;
}

int kiln_model_num_results(KilnModel *m) {
    if (!model_enter(m, false, NULL)) return 0;
    int n = m->nresults;
    model_leave(m);
    return n;
}

static bool info(KilnModel *m, int i, bool param, KilnTensorInfo *out) {
    if (!out || !model_enter(m, false, NULL)) return false;
    bool ok = i >= 0 && i < (param ? m->nparams : m->nresults);
    if (ok) *out = param ? m->param_info[i] : m->result_info[i];
    model_leave(m);
    return ok;
}

bool kiln_model_param_info(KilnModel *m, int i, KilnTensorInfo *out) { return info(m, i, true, out); }
bool kiln_model_result_info(KilnModel *m, int i, KilnTensorInfo *out) { return info(m, i, false, out); }

int kiln_model_param_index(KilnModel *m, const char *name) {
    if (!model_enter(m, false, NULL)) return -1;
    int i = param_index(m, name);
    model_leave(m);
    return i;
}

bool kiln_model_param_bound(KilnModel *m, int i) {
    if (!model_enter(m, false, NULL)) return false;
    bool b = i >= 0 && i < m->nparams && m->params[i].bound;
    model_leave(m);
    return b;
}

const char *kiln_model_graph(KilnModel *m) {
    if (!model_enter(m, false, NULL)) return NULL;
    const char *name = m->sym->name; /* the arena's: valid until close */
    model_leave(m);
    return name;
}

const char *kiln_model_device(KilnModel *m) {
    if (!model_enter(m, false, NULL)) return NULL;
    const char *name = m->be->name;
    model_leave(m);
    return name;
}

/* ------------------------------------------------------------ running */

/* The executor's inputs: the caller's, with bound parameters zeroed (and an
 * ONNX model's weights, all bound). */
static KilnTensor *exec_inputs(const KilnModel *m, const Variant *v, const KilnTensor *inputs) {
    KilnTensor *in = xcalloc((size_t)v->g->params.len + 1, sizeof *in);
    for (int i = 0; i < m->nparams; i++)
        if (!m->params[i].bound) in[i] = inputs[i];
    return in;
}

typedef enum { RUN_ALLOC, RUN_PLAN, RUN_INTO } RunKind;

static KilnStatus run(KilnModel *m, const KilnTensor *inputs, KilnTensor *outputs, RunKind kind,
                      KilnError *err) {
    if (!model_enter(m, false, err)) return KILN_ERR_USAGE;
    KilnStatus st = KILN_ERR_USAGE;
    Variant *v = NULL;
    if (!outputs && m->nresults > 0)
        fail(err, st, NULL, "no outputs given (graph '%s' has %d results)", m->sym->name, m->nresults);
    else
        v = variant_for_inputs(m, inputs, kind != RUN_PLAN, err);
    if (v && kind == RUN_PLAN) {
        for (int r = 0; r < m->nresults; r++)
            outputs[r] =
                (KilnTensor){m->result_info[r].dtype, m->result_info[r].rank, v->result_shapes[r], NULL};
        st = KILN_OK;
    } else if (v) {
        char msg[4096] = "";
        KilnTensor *in = exec_inputs(m, v, inputs);
        st = kind == RUN_INTO ? exec_run_into(v->x, in, outputs, msg, sizeof msg)
                              : exec_run(v->x, in, outputs, msg, sizeof msg);
        if (st != KILN_OK) fail(err, st, NULL, "%s", msg);
        free(in);
    }
    model_leave(m);
    return st;
}

KilnStatus kiln_model_run(KilnModel *m, const KilnTensor *inputs, KilnTensor *outputs, KilnError *err) {
    return run(m, inputs, outputs, RUN_ALLOC, err);
}

KilnStatus kiln_model_plan(KilnModel *m, const KilnTensor *inputs, KilnTensor *outputs, KilnError *err) {
    return run(m, inputs, outputs, RUN_PLAN, err);
}

KilnStatus kiln_model_run_into(KilnModel *m, const KilnTensor *inputs, KilnTensor *outputs, KilnError *err) {
    return run(m, inputs, outputs, RUN_INTO, err);
}

/* ------------------------------------------------------------ closing */

KilnStatus kiln_model_close(KilnModel *m, KilnError *err) {
    if (!model_enter(m, true, err)) return KILN_ERR_USAGE;
    model_release(m);
    model_leave(m);
    return KILN_OK;
}

void kiln_model_free(KilnModel *m) {
    if (!m) return;
    if (!m->closed) model_release(m);
    pthread_rwlock_destroy(&m->lock);
    pthread_mutex_destroy(&m->compile_lock);
    free(m);
}
