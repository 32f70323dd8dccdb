/* driver.c - from a file and the user's inputs to a concrete graph:
 * parse and check, match tensors to parameters (binding symbolic
 * dimensions from their shapes), fill the rest with seeded random values,
 * and build the IR with every dimension known. */
#include "app/app.h"

#include "passes/pass.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

KilnStatus compilation_open(Compilation *c, const char *path, char *err, size_t errlen) {
    memset(c, 0, sizeof *c);
    if (onnx_file_looks_like_model(path)) {
        c->arena = arena_new();
        c->src.path = arena_strdup(c->arena, path);
        c->src.text = "";
        c->onnx = ARENA_NEW(c->arena, OnnxModel);
        if (!onnx_model_open(path, c->arena, c->onnx, err, errlen)) {
            c->onnx = NULL;
            return KILN_ERR_INPUT;
        }
        return KILN_OK; /* imported when bound: symbolic dimensions may need sizes first */
    }
    char *text;
    size_t len;
    if (!read_file(path, &text, &len, err, errlen)) return KILN_ERR_USAGE;
    KilnStatus st = compilation_open_text(c, path, text, len, err, errlen);
    free(text);
    return st;
}

KilnStatus compilation_open_text(Compilation *c, const char *name, const char *text, size_t len, char *err,
                                 size_t errlen) {
    memset(c, 0, sizeof *c);
    c->arena = arena_new();
    c->src.path = arena_strdup(c->arena, name);
    c->src.text = arena_strndup(c->arena, text, len);
    c->src.len = len;
    if (memchr(c->src.text, 0, len)) {
        snprintf(err, errlen, "%s: the %s contains a NUL byte; kiln programs are UTF-8 text", name,
                 strcmp(name, COMPILATION_TEXT_NAME) == 0 ? "source text" : "file");
        return KILN_ERR_INPUT;
    }
    bool ok = parse_program(c->arena, &c->src, &c->diags, &c->prog);
    if (ok) ok = ir_check_program(&c->prog, &c->diags);
    if (ok && c->prog.ngraphs == 0) {
        diag_error(&c->diags, (Loc){&c->src, 1, 1}, "the file defines no graph");
        diag_hint(&c->diags, "a program starts with 'graph NAME(PARAMS) -> TYPE { ... }'");
        ok = false;
    }
    return ok ? KILN_OK : KILN_ERR_INPUT;
}

void compilation_close(Compilation *c) {
    onnx_model_close(c->onnx);
    VEC_FREE(c->borrowed);
    diag_clear(&c->diags);
    arena_free(c->arena);
    memset(c, 0, sizeof *c);
}

/* splitmix64: small, seedable, the same on every machine. */
static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

bool tensor_file_read(const char *path, KilnTensor *out, char *err, size_t errlen) {
    size_t n = strlen(path);
    bool pb_name = n >= 3 && strcmp(path + n - 3, ".pb") == 0;
    bool npy_name = n >= 4 && strcmp(path + n - 4, ".npy") == 0;
    if (!pb_name && !npy_name) { /* neither name: the .npy magic decides */
        FILE *f = fopen(path, "rb");
        char magic[6] = "";
        if (f) {
            pb_name = fread(magic, 1, 6, f) == 6 && memcmp(magic, "\x93NUMPY", 6) != 0;
            fclose(f);
        }
    }
    return pb_name ? kiln_onnx_tensor_read_file(path, out, err, errlen)
                   : kiln_npy_read(path, out, err, errlen);
}

/* The next value of [0, 1) from the splitmix64 stream s. */
static double unit_random(uint64_t *s) { return (double)(splitmix(s) >> 11) * 0x1.0p-53; }

/* Element i of an f32 tensor filled from the stream s0: 2 * unit_random - 1
 * of the stream's (i + 1)-th value, computed on its own (splitmix64's state
 * after k steps is s0 + k * its increment), so that a loop of them
 * vectorises. */
static inline float random_f32_at(uint64_t s0, int64_t i) {
    uint64_t s = s0 + (uint64_t)i * 0x9e3779b97f4a7c15ull;
    return (float)(2 * unit_random(&s) - 1);
}

static void fill_f32(float *f, int64_t n, uint64_t s0) {
    for (int64_t i = 0; i < n; i++) f[i] = random_f32_at(s0, i);
}

#if defined(__x86_64__)
/* The same with AVX-512's 64-bit multiplies and conversions, 16 elements a
 * step (a loop of known length: -O2 vectorises only those): bench's random
 * image (150 K floats) in 0.06 ms instead of 0.18 */
__attribute__((target("avx512f,avx512dq"))) static void fill_f32_avx512(float *f, int64_t n, uint64_t s0) {
    int64_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++) f[i + k] = random_f32_at(s0, i + k);
    for (; i < n; i++) f[i] = random_f32_at(s0, i);
}
#endif

void tensor_fill_random_f32(float *f, int64_t n, uint64_t seed, bool wide) {
    uint64_t s = seed * 0x2545f4914f6cdd1dull + 1;
#if defined(__x86_64__)
    if (wide && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")) {
        fill_f32_avx512(f, n, s);
        return;
    }
#endif
    (void)wide;
    fill_f32(f, n, s);
}

void tensor_fill_random(KilnTensor *t, uint64_t seed) {
    int64_t n = kiln_tensor_numel(t);
    if (t->dtype == KILN_F32) { /* the same values without kiln_tensor_set per element (an image: 0.4 ms) */
        tensor_fill_random_f32(t->data, n, seed, true);
        return;
    }
    uint64_t s = seed * 0x2545f4914f6cdd1dull + 1;
    for (int64_t i = 0; i < n; i++) {
        double u = unit_random(&s);
        if (dtype_is_float(t->dtype)) kiln_tensor_set(t, i, 2 * u - 1);
        else if (t->dtype == KILN_BOOL) kiln_tensor_set(t, i, u < 0.5);
        else kiln_tensor_set(t, i, floor(u * 10));
    }
}

bool tensor_convert(const KilnTensor *src, KilnDType dt, KilnTensor *dst) {
    if (!kiln_tensor_init(dst, dt, src->rank, src->shape)) return false;
    int64_t n = kiln_tensor_numel(src);
    for (int64_t i = 0; i < n; i++) kiln_tensor_set(dst, i, kiln_tensor_get(src, i));
    return true;
}

static const char *sym_name(const IRGraph *g, Dim d) {
    return DIM_IS_SYM(d) ? g->syms.data[DIM_SYM_INDEX(d)].name : NULL;
}

/* Binds `name` to `size`, or checks it against an earlier binding. */
static bool bind_dim(DimBinding **binds, int *nbinds, const char **origins, const char *name, int64_t size,
                     const char *origin, char *err, size_t errlen) {
    for (int i = 0; i < *nbinds; i++) {
        if (strcmp((*binds)[i].name, name) == 0) {
            if ((*binds)[i].size == size) return true;
            snprintf(err, errlen, "dimension %s is %lld from %s but %lld from %s", name,
                     (long long)(*binds)[i].size, origins[i], (long long)size, origin);
            return false;
        }
    }
    *binds = xrealloc(*binds, sizeof(DimBinding) * (size_t)(*nbinds + 1));
    origins[*nbinds] = origin;
    (*binds)[(*nbinds)++] = (DimBinding){name, size};
    return true;
}

/* The optimisation passes the compile options select (passes/pass.h). */
PassOptions driver_pass_options(const CompileOptions *o) {
    PassOptions p = {.opt_level = o->opt_level,
                     .passes = o->passes,
                     .print_after = o->print_after,
                     .fast_math = o->fast_math,
                     .remarks = o->remarks,
                     .trace = o->trace};
    switch (o->precision) {
    case PREC_F32: p.precision = PASS_PREC_F32; break;
    case PREC_F16: p.precision = PASS_PREC_F16; break;
    case PREC_BF16: p.precision = PASS_PREC_BF16; break;
    case PREC_AUTO: p.precision = PASS_PREC_AUTO; break;
    }
    return p;
}

/* The initializers of an ONNX model that the user replaces with --in. */
static const char **onnx_overrides(const Compilation *c, const BindRequest *req, int *n) {
    const char **names = xcalloc((size_t)req->ntensors + 1, sizeof(char *));
    *n = 0;
    for (int t = 0; t < req->ntensors; t++)
        if (req->tensors[t].role == TENSOR_INPUT &&
            onnx_is_overridable(c->onnx, req->tensors[t].name))
            names[(*n)++] = req->tensors[t].name;
    return names;
}

KilnStatus compilation_check_onnx(Compilation *c, const DimBinding *dims, int ndims) {
    OnnxImportOptions io = {.dims = dims, .ndims = ndims};
    OnnxImport imp;
    bool ok = onnx_import(c->arena, c->onnx, &io, &c->diags, &imp);
    onnx_import_free(&imp);
    return ok ? KILN_OK : KILN_ERR_INPUT;
}

bool driver_onnx_weight(const OnnxWeight *w, KilnDType dtype, KilnTensor *out, char *err, size_t errlen) {
    if (w->data) return onnx_tensor_read(w->data, dtype, out, err, errlen);
    if (w->folded->dtype == dtype) {
        if (!kiln_tensor_init(out, dtype, w->folded->rank, w->folded->shape)) return false;
        memcpy(out->data, w->folded->data, (size_t)kiln_tensor_numel(w->folded) * kiln_dtype_size(dtype));
        return true;
    }
    return tensor_convert(w->folded, dtype, out);
}

/* Whether data may be used in place for elements of dtype. */
static bool view_fits(const void *data, KilnDType dtype, bool unaligned) {
    return unaligned || (uintptr_t)data % kiln_dtype_size(dtype) == 0;
}

/* An initializer whose bytes are the parameter's elements as they are (raw
 * data of its dtype) becomes a view of the mapped file: no copy.  The
 * reader checked at open that the bytes lie inside the file. */
bool driver_weight_view(const OnnxWeight *w, KilnDType dtype, int rank, bool unaligned, KilnTensor *out) {
    const OnnxTensor *t = w->data;
    KilnDType exact;
    if (!t || t->kind != ONNX_DATA_RAW || !onnx_dtype_to_kiln(t->data_type, &exact) || exact != dtype ||
        t->numel <= 0 || t->rank != rank || t->raw.len != (size_t)t->numel * kiln_dtype_size(exact) ||
        !view_fits(t->raw.data, exact, unaligned))
        return false;
    out->dtype = exact;
    out->rank = t->rank;
    out->shape = xmalloc(sizeof(int64_t) * (size_t)(t->rank > 0 ? t->rank : 1));
    if (t->rank > 0) memcpy(out->shape, t->dims, sizeof(int64_t) * (size_t)t->rank);
    out->data = (void *)t->raw.data; /* read-only: PROT_READ mapping, never written by a run */
    return true;
}

/* Frees the first n inputs (views of c's mapped files are left alone) and the array. */
static void free_inputs(const Compilation *c, KilnTensor *inputs, int n) {
    for (int i = 0; inputs && i < n; i++) {
        bool view = c->onnx && onnx_model_holds(c->onnx, inputs[i].data);
        for (int b = 0; !view && b < c->borrowed.len; b++) view = c->borrowed.data[b] == inputs[i].data;
        if (view) inputs[i].data = NULL;
        kiln_tensor_free(&inputs[i]);
    }
    free(inputs);
}

void driver_inputs_free(const Compilation *c, const IRGraph *g, KilnTensor *inputs) {
    free_inputs(c, inputs, g ? g->params.len : 0);
}

KilnStatus driver_bind(Compilation *c, int entry, const BindRequest *req, const CompileOptions *opt,
                       IRGraph **graph_out, KilnTensor **inputs_out, char *err, size_t errlen) {
    *graph_out = NULL;
    *inputs_out = NULL;
    /* the symbolic graph tells the parameters' declared types (a model's: its inputs) */
    int noverrides = 0;
    const char **overrides = c->onnx ? onnx_overrides(c, req, &noverrides) : NULL;
    OnnxImportOptions io = {.overrides = overrides, .noverrides = noverrides};
    OnnxImport imp = {0};
    IRGraph *sym = c->onnx ? onnx_declare_inputs(c->arena, c->onnx, &io, &c->diags)
                           : ir_build(c->arena, &c->prog, entry, NULL, 0, &c->diags);
    if (!sym) {
        if (c->onnx) { /* refused: list every problem of the model, not only its inputs' */
            diag_clear(&c->diags);
            compilation_check_onnx(c, NULL, 0);
        }
        free(overrides);
        return KILN_ERR_INPUT;
    }
    int nparams = sym->params.len;
    const NamedTensor **chosen = xcalloc((size_t)nparams + 1, sizeof(NamedTensor *));
    int maxb = req->ndims + 64;
    for (int i = 0; i < nparams; i++) maxb += ir_node(sym, sym->params.data[i])->rank;
    const char **origins = xcalloc((size_t)maxb, sizeof(char *));
    DimBinding *binds = NULL;
    int nbinds = 0;
    KilnStatus st = KILN_ERR_INPUT;
    KilnTensor *inputs = NULL;
    for (int i = 0; i < req->ndims; i++)
        if (!bind_dim(&binds, &nbinds, origins, req->dims[i].name, req->dims[i].size, "--dim", err, errlen))
            goto fail;
    /* explicit --in bindings must name parameters */
    for (int t = 0; t < req->ntensors; t++) {
        const NamedTensor *nt = &req->tensors[t];
        int found = -1;
        for (int i = 0; i < nparams; i++)
            if (strcmp(ir_node(sym, sym->params.data[i])->name, nt->name) == 0) found = i;
        if (found < 0) {
            if (nt->role == TENSOR_INPUT) {
                snprintf(err, errlen, "%s: graph '%s' has no parameter '%s'", nt->origin, sym->name, nt->name);
                st = KILN_ERR_USAGE;
                goto fail;
            }
            continue; /* a weights file may hold more tensors than the graph uses */
        }
        if (!chosen[found] || nt->role == TENSOR_INPUT) chosen[found] = nt;
    }
    for (int i = 0; i < nparams; i++) {
        const Node *p = ir_node(sym, sym->params.data[i]);
        const NamedTensor *nt = chosen[i];
        if (!nt) continue;
        const KilnTensor *t = &nt->tensor;
        bool dtype_ok = t->dtype == p->dtype || (p->dtype == KILN_BF16 && t->dtype == KILN_F32);
        if (!dtype_ok || t->rank != p->rank) {
            char *want = ir_type_str(sym, p->dtype, p->rank, p->shape);
            StrBuf got = {0};
            sb_printf(&got, "%s[", kiln_dtype_name(t->dtype));
            for (int k = 0; k < t->rank; k++) sb_printf(&got, "%s%lld", k ? ", " : "", (long long)t->shape[k]);
            sb_puts(&got, "]");
            snprintf(err, errlen, "%s: parameter '%s' is %s, the file holds %s", nt->origin, p->name, want, got.data);
            free(want);
            sb_free(&got);
            goto fail;
        }
        for (int k = 0; k < p->rank; k++) {
            const char *name = sym_name(sym, p->shape[k]);
            if (t->shape[k] == 0) { /* the language has no empty tensors (docs/language.md, Types) */
                snprintf(err, errlen, "%s: parameter '%s' would be empty: dimension %d%s%s is 0 in the file, and "
                         "every dimension must be at least 1", nt->origin, p->name, k, name ? ", " : "",
                         name ? name : "");
                goto fail;
            }
            if (name) {
                if (!bind_dim(&binds, &nbinds, origins, name, t->shape[k], nt->origin, err, errlen)) goto fail;
            } else if (p->shape[k] != t->shape[k]) {
                snprintf(err, errlen, "%s: dimension %d of parameter '%s' is %lld, the file has %lld", nt->origin,
                         k, p->name, (long long)p->shape[k], (long long)t->shape[k]);
                goto fail;
            }
        }
    }
    /* a parameter no file holds gets random values: say so where a weights
     * file was given (a name that differs in one letter must not pass
     * silently) */
    bool weights_given = false;
    for (int t = 0; t < req->ntensors; t++) weights_given |= req->tensors[t].role == TENSOR_WEIGHT;
    for (int i = 0; req->notes && (weights_given || req->all_random_notes) && i < nparams; i++)
        if (!chosen[i])
            fprintf(req->notes, "kiln: note: parameter '%s' is in no %s: it gets random values (--seed %llu)\n",
                    ir_node(sym, sym->params.data[i])->name, weights_given ? "weights file" : "--in or --weights file",
                    (unsigned long long)req->seed);
    /* every symbolic dimension of the parameters needs a size */
    for (int i = 0; i < nparams && !req->allow_symbolic; i++) {
        const Node *p = ir_node(sym, sym->params.data[i]);
        for (int k = 0; k < p->rank; k++) {
            const char *name = sym_name(sym, p->shape[k]);
            bool bound = !name;
            for (int j = 0; name && j < nbinds; j++) bound = bound || strcmp(binds[j].name, name) == 0;
            if (!bound) {
                snprintf(err, errlen, "dimension %s of parameter '%s' is not bound; pass --dim %s=SIZE or an input "
                         "with --in %s=FILE.npy", name, p->name, name, p->name);
                st = KILN_ERR_USAGE;
                goto fail;
            }
        }
    }
    IRGraph *g = NULL;
    if (c->onnx) {
        io.dims = binds, io.ndims = nbinds;
        /* values an operation needs at import (Reshape's shape given as an input ...) */
        const char **bound_names = xcalloc((size_t)nparams + 1, sizeof(char *));
        const KilnTensor **bound = xcalloc((size_t)nparams + 1, sizeof(KilnTensor *));
        for (int i = 0; i < nparams; i++) {
            if (!chosen[i]) continue;
            bound_names[io.nbound] = ir_node(sym, sym->params.data[i])->name;
            bound[io.nbound++] = &chosen[i]->tensor;
        }
        io.bound_names = bound_names, io.bound = bound;
        if (onnx_import(c->arena, c->onnx, &io, &c->diags, &imp))
            g = imp.g, imp.g = NULL; /* the graph is the caller's from here on */
        free((void *)io.bound_names);
        free((void *)io.bound);
    } else {
        g = ir_build(c->arena, &c->prog, entry, binds, nbinds, &c->diags);
    }
    if (!g) goto fail;
    /* parameters bound from a weights file (or a model's initializers),
     * not by --in, are constants: backends may prepare them once (pack,
     * fold) and reuse that on every run */
    for (int i = 0; i < nparams && i < g->params.len; i++)
        if (chosen[i] && chosen[i]->role == TENSOR_WEIGHT) ir_node(g, g->params.data[i])->flag = true;
    for (int i = nparams; c->onnx && i < g->params.len; i++) ir_node(g, g->params.data[i])->flag = true;
    const char *unbound;
    if (!req->allow_symbolic && !ir_graph_is_concrete(g, &unbound)) {
        snprintf(err, errlen, "dimension %s is not bound; pass --dim %s=SIZE", unbound, unbound);
        st = KILN_ERR_USAGE;
        ir_graph_destroy(g);
        goto fail;
    }
    if (opt) {
        PassOptions po = driver_pass_options(opt);
        IRGraph *o;
        if ((st = passes_run(c->arena, g, &po, &o, err, errlen)) != KILN_OK) {
            ir_graph_destroy(g);
            goto fail;
        }
        if (o != g) ir_graph_destroy(g);
        g = o;
    }
    if (!req->allow_symbolic) {
        int nall = g->params.len; /* a model's weights follow its inputs */
        inputs = xcalloc((size_t)nall + 1, sizeof(KilnTensor));
        for (int i = 0; i < nall; i++) {
            const Node *p = ir_node(g, g->params.data[i]);
            const NamedTensor *nt = i < nparams ? chosen[i] : NULL;
            bool ok;
            char werr[512] = "";
            if (i >= nparams) {
                const OnnxWeight *w = &imp.weights.data[i - nparams];
                ok = (req->map_weights &&
                      driver_weight_view(w, p->dtype, p->rank, req->views_unaligned, &inputs[i])) ||
                     driver_onnx_weight(w, p->dtype, &inputs[i], werr, sizeof werr);
            } else if (nt && nt->tensor.dtype == p->dtype && req->map_weights && nt->role == TENSOR_WEIGHT &&
                       view_fits(nt->tensor.data, p->dtype, req->views_unaligned)) {
                inputs[i] = (KilnTensor){p->dtype, p->rank, xmalloc(sizeof(int64_t) * (size_t)(p->rank + 1)),
                                         nt->tensor.data}; /* used as it is (BindRequest.map_weights) */
                if (p->rank > 0) memcpy(inputs[i].shape, nt->tensor.shape, sizeof(int64_t) * (size_t)p->rank);
                VEC_PUSH(c->borrowed, (const void *)nt->tensor.data);
                ok = true;
            } else if (nt && nt->tensor.dtype == p->dtype) {
                ok = kiln_tensor_init(&inputs[i], p->dtype, p->rank, nt->tensor.shape);
                if (ok) memcpy(inputs[i].data, nt->tensor.data, (size_t)kiln_tensor_numel(&nt->tensor) * kiln_dtype_size(p->dtype));
            } else if (nt) {
                ok = tensor_convert(&nt->tensor, p->dtype, &inputs[i]);
            } else {
                int64_t *shape = xmalloc(sizeof(int64_t) * (size_t)(p->rank + 1));
                for (int k = 0; k < p->rank; k++) shape[k] = p->shape[k];
                ok = kiln_tensor_init(&inputs[i], p->dtype, p->rank, shape);
                if (ok) tensor_fill_random(&inputs[i], req->seed + (uint64_t)i * 7919);
                free(shape);
            }
            if (!ok) {
                if (werr[0])
                    snprintf(err, errlen, "%s: %s", c->src.path, werr);
                else
                    snprintf(err, errlen, "out of host memory for parameter '%s'", p->name);
                free_inputs(c, inputs, i + 1);
                inputs = NULL;
                st = KILN_ERR_DEVICE;
                ir_graph_destroy(g);
                goto fail;
            }
        }
    }
    ir_graph_destroy(sym);
    free(chosen);
    free(origins);
    free(binds);
    free(overrides);
    onnx_import_free(&imp);
    *graph_out = g;
    *inputs_out = inputs;
    return KILN_OK;
fail:
    free(overrides);
    onnx_import_free(&imp);
    ir_graph_destroy(sym);
    free(chosen);
    free(origins);
    free(binds);
    return st;
}
