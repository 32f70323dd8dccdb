/* exec.c - the one executor (contract in exec.h): schedules, verifies,
 * binds, runs and copies for every backend of the table.
 *
 * A run, for a backend with BK_KERNELS:
 *   1. check every input against the parameter's dtype and element count
 *      (bound parameters come from the executable instead);
 *   2. allocate the outputs (host tensors, the caller's);
 *   3. bind bufs[b] for every buffer of the kernel program: on a host
 *      backend an input is the caller's data, an output the output tensor's
 *      data and a temporary a place in one 64-byte aligned host arena; on a
 *      device backend everything lies in one device allocation (exec_layout)
 *      except the bound parameters, which have their own, and the inputs are
 *      copied in;
 *   4. launch every kernel in order, then sync;
 *   5. results: a host backend copies those held by another buffer (a
 *      parameter, another result); a device backend copies each result out
 *      of the buffer that holds it.
 * Graph-level backends (ref) get the inputs, bound ones merged in, and run
 * the graph themselves.  Every failure frees what the run made. */
#include "runtime/exec.h"

#include "passes/fuse.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

typedef struct {
    KilnDType dtype;
    int rank;
    int64_t *shape;
    int64_t numel;
    const char *name; /* parameters: for messages */
} TensorType;

struct Executable {
    const Backend *be;
    const IRGraph *g; /* graph-level backends run it (borrowed) */
    Arena *arena;     /* the kernel program's, and the types' */
    KProgram *kp;     /* NULL for graph-level backends */
    void *prog;       /* the backend's compiled program */
    int nparams, nresults;
    TensorType *params, *results;
    /* per parameter: whether it is bound, its host copy and, on a device
     * backend, its device copy */
    bool *is_bound;
    bool *bound_owned; /* false: exec_bind_shared, the data is the caller's */
    KilnTensor *bound;
    void **bound_dev;
    Trace *trace; /* CompileOptions.trace: exec_bench records its runs here */
    /* a host backend's intermediates block, kept from one run to the next
     * (NULL while a run holds it, or before the first): allocated and freed
     * per run, ResNet-50's 51 MB at batch 8 was mapped and its pages faulted
     * in and zeroed again by every run */
    _Atomic(void *) *spare_arena; /* (its own allocation: runs see x as const) */
};

static double now_ms(void) { return clock_ms(CLOCK_MONOTONIC); }
static double process_cpu_ms(void) { return clock_ms(CLOCK_PROCESS_CPUTIME_ID); }

static bool has(const Executable *x, unsigned cap) { return (x->be->caps & cap) != 0; }

static size_t buf_bytes(const KBuf *b) { return (size_t)b->numel * kiln_dtype_size(b->dtype); }

/* ------------------------------------------------------------ compiling */

/* fuse_graph, then legalisation (kernel.h) and the verifier. */
KProgram *exec_schedule(Arena *arena, const IRGraph *g, const CompileOptions *opt, char *err, size_t errlen) {
    return exec_schedule_for(arena, g, opt, NULL, err, errlen);
}

KProgram *exec_schedule_for(Arena *arena, const IRGraph *g, const CompileOptions *opt, const Backend *be,
                            char *err, size_t errlen) {
    FuseOptions fo = {.fuse = !opt || opt->opt_level > 0,
                      .remarks = opt && opt->remarks,
                      .keeps_padded = be ? be->kernels.keeps_padded : NULL};
    char ferr[1024] = "";
    KProgram *kp = fuse_graph(arena, g, &fo, ferr, sizeof ferr);
    if (!kp) {
        snprintf(err, errlen, "%s", ferr[0] ? ferr : "the fusion scheduler failed");
        return NULL;
    }
    kprog_legalise(kp);
    char verr[512] = "";
    if (!kprog_verify(kp, verr, sizeof verr) || !kprog_is_legal(kp, verr, sizeof verr)) {
        snprintf(err, errlen, "internal error: the kernel program of '%s' is malformed: %s", g->name, verr);
        kprog_destroy(kp);
        return NULL;
    }
    return kp;
}

static void record_type(Arena *a, const IRGraph *g, int node, TensorType *t) {
    const Node *n = ir_node(g, node);
    t->dtype = n->dtype;
    t->rank = n->rank;
    t->shape = ARENA_ARRAY(a, int64_t, n->rank + 1);
    for (int d = 0; d < n->rank; d++) t->shape[d] = n->shape[d];
    t->numel = ir_numel(n);
    t->name = n->name ? arena_strdup(a, n->name) : NULL;
}

/* What the executor relies on when it binds: every buffer names a parameter
 * or result that exists, temporaries lie inside the arena, and each result's
 * buffer has the result's dtype and size. */
static bool check_program(const Executable *x, char *err, size_t errlen) {
    const KProgram *kp = x->kp;
    for (int i = 0; i < kp->bufs.len; i++) {
        const KBuf *b = &kp->bufs.data[i];
        int limit = b->kind == KB_INPUT ? x->nparams : b->kind == KB_OUTPUT ? x->nresults : 0;
        bool ok = b->kind == KB_TEMP ? b->offset >= 0 && b->offset + (int64_t)buf_bytes(b) <= kp->arena_bytes
                                     : b->index >= 0 && b->index < limit;
        const TensorType *t = !ok || b->kind == KB_TEMP ? NULL
                              : b->kind == KB_INPUT     ? &x->params[b->index]
                                                        : &x->results[b->index];
        if (t) ok = b->dtype == t->dtype && b->numel == t->numel;
        if (!ok) {
            snprintf(err, errlen, "internal error: buffer %s (%d) does not fit the graph or the arena",
                     b->name, i);
            return false;
        }
    }
    for (int r = 0; r < x->nresults; r++) {
        int rb = r < kp->result_buf.len ? kp->result_buf.data[r] : -1;
        const KBuf *b = rb >= 0 && rb < kp->bufs.len ? &kp->bufs.data[rb] : NULL;
        if (!b || b->dtype != x->results[r].dtype || b->numel != x->results[r].numel) {
            snprintf(err, errlen, "internal error: result %d is not held by a buffer of its type and size",
                     r);
            return false;
        }
    }
    return true;
}

Executable *exec_compile(const Backend *be, const IRGraph *g, const CompileOptions *opt, char *err,
                         size_t errlen) {
    const char *sym;
    if (!ir_graph_is_concrete(g, &sym)) {
        snprintf(err, errlen, "dimension %s is not bound; pass --dim %s=SIZE", sym, sym);
        return NULL;
    }
    Executable *x = xcalloc(1, sizeof *x);
    x->spare_arena = xcalloc(1, sizeof *x->spare_arena);
    x->be = be;
    x->g = g;
    x->arena = arena_new();
    x->nparams = g->params.len;
    x->nresults = g->results.len;
    x->params = ARENA_ARRAY(x->arena, TensorType, x->nparams + 1);
    x->results = ARENA_ARRAY(x->arena, TensorType, x->nresults + 1);
    for (int i = 0; i < x->nparams; i++) record_type(x->arena, g, g->params.data[i], &x->params[i]);
    for (int i = 0; i < x->nresults; i++) record_type(x->arena, g, g->results.data[i], &x->results[i]);
    x->is_bound = xcalloc((size_t)x->nparams + 1, sizeof *x->is_bound);
    x->bound_owned = xcalloc((size_t)x->nparams + 1, sizeof *x->bound_owned);
    x->bound = xcalloc((size_t)x->nparams + 1, sizeof *x->bound);
    x->bound_dev = xcalloc((size_t)x->nparams + 1, sizeof *x->bound_dev);
    x->trace = opt ? opt->trace : NULL;
    if (!has(x, BK_KERNELS)) return x;
    double t0 = now_ms();
    char berr[2048] = "";
    x->kp = exec_schedule_for(x->arena, g, opt, be, berr, sizeof berr);
    double t1 = now_ms();
    trace_span(x->trace, "fusion", t0, t1, "fusion: %d kernels", x->kp ? x->kp->kernels.len : 0);
    if (x->kp && opt && opt->verbose)
        fprintf(stderr, "kiln: %s: scheduled %d kernels in %.1f ms\n", be->name, x->kp->kernels.len, t1 - t0);
    if (x->kp) x->kp->trace = x->trace;
    if (x->kp && check_program(x, berr, sizeof berr))
        x->prog = be->kernels.prepare(x->kp, opt, berr, sizeof berr);
    trace_span(x->trace, "codegen", t1, now_ms(), "compile for %s", be->name);
    if (!x->prog) {
        snprintf(err, errlen, "%s: %s", be->name, berr[0] ? berr : "compilation failed");
        exec_destroy(x);
        return NULL;
    }
    return x;
}

/* Drops parameter i's binding (device copy, and host copy if owned); the
 * device must be current (exec_destroy, bind_param run inside a call). */
static void unbind_param(Executable *x, int i) {
    if (x->bound_dev[i]) x->be->buffers.free(x->prog, x->bound_dev[i]);
    if (x->bound_owned[i]) kiln_tensor_free(&x->bound[i]);
    x->bound_dev[i] = NULL;
    x->bound_owned[i] = x->is_bound[i] = false;
    memset(&x->bound[i], 0, sizeof x->bound[i]);
}

void exec_destroy(Executable *x) {
    if (!x) return;
    /* device copies of bound parameters go inside a call: the device must be
     * current on this thread */
    void *state = NULL;
    bool begun = false;
    for (int i = 0; i < x->nparams; i++) {
        if (x->bound_dev[i] && !begun) {
            char err[256];
            begun = !x->be->kernels.call_begin || x->be->kernels.call_begin(x->prog, &state, err, sizeof err);
        }
        unbind_param(x, i);
    }
    if (begun && x->be->kernels.call_end) x->be->kernels.call_end(x->prog, state);
    if (x->prog) x->be->kernels.release(x->prog);
    kprog_destroy(x->kp);
    free(x->is_bound);
    free(x->bound_owned);
    free(x->bound);
    free(x->bound_dev);
    if (x->spare_arena) free(atomic_exchange(x->spare_arena, NULL));
    free((void *)x->spare_arena);
    arena_free(x->arena);
    free(x);
}

const Backend *exec_backend(const Executable *x) { return x->be; }
int exec_nparams(const Executable *x) { return x->nparams; }
int exec_nresults(const Executable *x) { return x->nresults; }
const KProgram *exec_program(const Executable *x) { return x->kp; }

/* ------------------------------------------------------------ a call */

/* What one run holds; call_close frees all of it. */
typedef struct {
    const Executable *x;
    void *state; /* the backend's call state */
    bool begun;
    void **bufs; /* per buffer */
    void *host_arena;
    void *dev_block;       /* device backends: the run's one allocation */
    const KilnTensor **in; /* per parameter: the caller's or the bound tensor */
} Call;

static bool check_input(const Executable *x, int i, const KilnTensor *t, char *err, size_t errlen) {
    const TensorType *p = &x->params[i];
    if (t && t->dtype == p->dtype && kiln_tensor_numel(t) == p->numel && (t->data || p->numel == 0))
        return true;
    if (!t) {
        snprintf(err, errlen, "input %d ('%s') is missing", i, p->name ? p->name : "?");
        return false;
    }
    snprintf(err, errlen, "input %d ('%s') is %s[%lld elements]; the compiled graph wants %s[%lld elements]",
             i, p->name ? p->name : "?", kiln_dtype_name(t->dtype), (long long)kiln_tensor_numel(t),
             kiln_dtype_name(p->dtype), (long long)p->numel);
    return false;
}

static KilnStatus call_open(Call *c, const Executable *x, const KilnTensor *inputs, char *err,
                            size_t errlen) {
    memset(c, 0, sizeof *c);
    c->x = x;
    c->in = xcalloc((size_t)x->nparams + 1, sizeof *c->in);
    for (int i = 0; i < x->nparams; i++) {
        c->in[i] = x->is_bound[i] ? &x->bound[i] : inputs ? &inputs[i] : NULL;
        if (!check_input(x, i, c->in[i], err, errlen)) return KILN_ERR_USAGE;
    }
    if (!has(x, BK_KERNELS)) return KILN_OK;
    if (x->be->kernels.call_begin && !x->be->kernels.call_begin(x->prog, &c->state, err, errlen))
        return KILN_ERR_DEVICE;
    c->begun = true;
    c->bufs = xcalloc((size_t)x->kp->bufs.len + 1, sizeof *c->bufs);
    return KILN_OK;
}

static void call_close(Call *c) {
    const Executable *x = c->x;
    if (c->dev_block) x->be->buffers.free(x->prog, c->dev_block);
    if (c->begun && x->be->kernels.call_end) x->be->kernels.call_end(x->prog, c->state);
    /* keep the block for the next run unless another run's is kept already */
    void *none = NULL;
    if (c->host_arena && !atomic_compare_exchange_strong(x->spare_arena, &none, c->host_arena))
        free(c->host_arena);
    free(c->bufs);
    free(c->in);
    memset(c, 0, sizeof *c);
}

static bool alloc_outputs(const Executable *x, KilnTensor *outputs, char *err, size_t errlen) {
    for (int r = 0; r < x->nresults; r++) {
        const TensorType *t = &x->results[r];
        if (!kiln_tensor_init(&outputs[r], t->dtype, t->rank, t->shape)) {
            snprintf(err, errlen, "out of host memory for result %d (%lld elements)", r, (long long)t->numel);
            for (int i = 0; i < r; i++) kiln_tensor_free(&outputs[i]);
            return false;
        }
    }
    return true;
}

/* Host backends: inputs and outputs in place, temporaries in one arena. */
static bool bind_host(Call *c, KilnTensor *outputs, char *err, size_t errlen) {
    const KProgram *kp = c->x->kp;
    if (kp->arena_bytes > 0) {
        c->host_arena = atomic_exchange(c->x->spare_arena, NULL);
        if (!c->host_arena && !(c->host_arena = host_block_alloc((size_t)kp->arena_bytes))) {
            snprintf(err, errlen, "out of host memory for the intermediates (%lld bytes)",
                     (long long)kp->arena_bytes);
            return false;
        }
    }
    for (int i = 0; i < kp->bufs.len; i++) {
        const KBuf *b = &kp->bufs.data[i];
        if (b->kind == KB_INPUT)
            c->bufs[i] = c->in[b->index]->data;
        else if (b->kind == KB_OUTPUT)
            c->bufs[i] = outputs[b->index].data;
        else
            c->bufs[i] = (char *)c->host_arena + b->offset;
    }
    return true;
}

/* Device backends: one allocation for the run, bound parameters apart. */
static bool bind_device(Call *c, char *err, size_t errlen) {
    const Executable *x = c->x;
    const KProgram *kp = x->kp;
    int nb = kp->bufs.len;
    bool *skip = xcalloc((size_t)nb + 1, sizeof *skip);
    int64_t *off = xcalloc((size_t)nb + 1, sizeof *off);
    for (int i = 0; i < nb; i++)
        skip[i] = kp->bufs.data[i].kind == KB_INPUT && x->bound_dev[kp->bufs.data[i].index];
    int64_t total = exec_layout(kp, x->be->buffers.align, skip, off);
    bool ok = total <= 0 || x->be->buffers.alloc(x->prog, (size_t)total, &c->dev_block, err, errlen);
    for (int i = 0; ok && i < nb; i++) {
        const KBuf *b = &kp->bufs.data[i];
        c->bufs[i] = skip[i] ? x->bound_dev[b->index] : (char *)c->dev_block + off[i];
        if (b->kind == KB_INPUT && !skip[i] && buf_bytes(b))
            ok =
                x->be->buffers.copy_in(x->prog, c->bufs[i], c->in[b->index]->data, buf_bytes(b), err, errlen);
    }
    free(skip);
    free(off);
    return ok;
}

static bool launch_all(Call *c, char *err, size_t errlen) {
    const Executable *x = c->x;
    for (int k = 0; k < x->kp->kernels.len; k++)
        if (!x->be->kernels.launch(x->prog, c->state, k, c->bufs, err, errlen)) return false;
    return !x->be->kernels.sync || x->be->kernels.sync(x->prog, c->state, err, errlen);
}

/* Results: copied from the buffer that holds each (host: only when that is
 * not the output itself). */
static bool copy_results(Call *c, KilnTensor *outputs, char *err, size_t errlen) {
    const Executable *x = c->x;
    const KProgram *kp = x->kp;
    for (int r = 0; r < x->nresults; r++) {
        int rb = kp->result_buf.data[r];
        size_t bytes = buf_bytes(&kp->bufs.data[rb]);
        if (has(x, BK_HOST_MEMORY)) {
            if (c->bufs[rb] != outputs[r].data && bytes) memcpy(outputs[r].data, c->bufs[rb], bytes);
        } else if (bytes &&
                   !x->be->buffers.copy_out(x->prog, outputs[r].data, c->bufs[rb], bytes, err, errlen)) {
            return false;
        }
    }
    return true;
}

static bool bind(Call *c, KilnTensor *outputs, char *err, size_t errlen) {
    return has(c->x, BK_HOST_MEMORY) ? bind_host(c, outputs, err, errlen) : bind_device(c, err, errlen);
}

/* Checks outputs the caller allocated (exec_run_into). */
static bool check_outputs(const Executable *x, const KilnTensor *outputs, char *err, size_t errlen) {
    for (int r = 0; r < x->nresults; r++) {
        const TensorType *t = &x->results[r];
        const KilnTensor *o = &outputs[r];
        if (o->dtype == t->dtype && kiln_tensor_numel(o) == t->numel && (o->data || t->numel == 0)) continue;
        snprintf(err, errlen,
                 "output %d is %s[%lld elements]%s; the compiled graph's result is %s[%lld elements]", r,
                 kiln_dtype_name(o->dtype), (long long)kiln_tensor_numel(o), o->data ? "" : " without data",
                 kiln_dtype_name(t->dtype), (long long)t->numel);
        return false;
    }
    return true;
}

/* A graph-level backend allocates its own results: copied into the caller's. */
static KilnStatus run_graph_into(Call *c, KilnTensor *outputs, char *err, size_t errlen) {
    const Executable *x = c->x;
    KilnTensor *in = xcalloc((size_t)x->nparams + 1, sizeof *in);
    KilnTensor *own = xcalloc((size_t)x->nresults + 1, sizeof *own);
    for (int i = 0; i < x->nparams; i++) in[i] = *c->in[i];
    KilnStatus st = x->be->run_graph(x->g, in, own, err, errlen) ? KILN_OK : KILN_ERR_DEVICE;
    for (int r = 0; st == KILN_OK && r < x->nresults; r++) {
        size_t bytes = (size_t)x->results[r].numel * kiln_dtype_size(x->results[r].dtype);
        if (bytes) memcpy(outputs[r].data, own[r].data, bytes);
    }
    for (int r = 0; st == KILN_OK && r < x->nresults; r++) kiln_tensor_free(&own[r]);
    free(own);
    free(in);
    return st;
}

/* One run into allocated outputs: bind, launch, copy. */
static KilnStatus run_call(Call *c, KilnTensor *outputs, char *err, size_t errlen) {
    if (!has(c->x, BK_KERNELS)) return run_graph_into(c, outputs, err, errlen);
    if (!bind(c, outputs, err, errlen) || !launch_all(c, err, errlen) ||
        !copy_results(c, outputs, err, errlen))
        return KILN_ERR_DEVICE;
    return KILN_OK;
}

KilnStatus exec_run(const Executable *x, const KilnTensor *inputs, KilnTensor *outputs, char *err,
                    size_t errlen) {
    Call c;
    KilnStatus st = call_open(&c, x, inputs, err, errlen);
    if (st == KILN_OK && !has(x, BK_KERNELS)) { /* the backend allocates the outputs */
        KilnTensor *in = xcalloc((size_t)x->nparams + 1, sizeof *in);
        for (int i = 0; i < x->nparams; i++) in[i] = *c.in[i];
        if (!x->be->run_graph(x->g, in, outputs, err, errlen)) st = KILN_ERR_DEVICE;
        free(in);
        call_close(&c);
        return st;
    }
    if (st == KILN_OK && !alloc_outputs(x, outputs, err, errlen)) {
        st = KILN_ERR_DEVICE;
    } else if (st == KILN_OK && (st = run_call(&c, outputs, err, errlen)) != KILN_OK) {
        for (int r = 0; r < x->nresults; r++) kiln_tensor_free(&outputs[r]);
    }
    call_close(&c);
    return st;
}

KilnStatus exec_run_into(const Executable *x, const KilnTensor *inputs, KilnTensor *outputs, char *err,
                         size_t errlen) {
    if (!check_outputs(x, outputs, err, errlen)) return KILN_ERR_USAGE;
    Call c;
    KilnStatus st = call_open(&c, x, inputs, err, errlen);
    if (st == KILN_OK) st = run_call(&c, outputs, err, errlen);
    call_close(&c);
    return st;
}

/* ------------------------------------------------------------ binding */

/* exec_bind and exec_bind_shared: `copy` says whether the host data is
 * copied (and then owned by the executable) or the caller's. */
static KilnStatus bind_param(Executable *x, int param, const KilnTensor *t, bool copy, char *err,
                             size_t errlen) {
    if (param < 0 || param >= x->nparams) {
        snprintf(err, errlen, "the graph has no parameter %d (it has %d)", param, x->nparams);
        return KILN_ERR_USAGE;
    }
    if (!check_input(x, param, t, err, errlen)) return KILN_ERR_USAGE;
    KilnTensor host = *t;
    size_t bytes = (size_t)x->params[param].numel * kiln_dtype_size(t->dtype);
    if (copy) {
        if (!kiln_tensor_init(&host, t->dtype, t->rank, t->shape)) {
            snprintf(err, errlen, "out of host memory for parameter %d", param);
            return KILN_ERR_DEVICE;
        }
        if (bytes) memcpy(host.data, t->data, bytes);
    }
    void *dev = NULL;
    if (has(x, BK_KERNELS) && !has(x, BK_HOST_MEMORY) && bytes) {
        void *state = NULL;
        bool ok = !x->be->kernels.call_begin || x->be->kernels.call_begin(x->prog, &state, err, errlen);
        bool begun = ok;
        ok = ok && x->be->buffers.alloc(x->prog, bytes, &dev, err, errlen);
        if (ok && !x->be->buffers.copy_in(x->prog, dev, host.data, bytes, err, errlen)) {
            x->be->buffers.free(x->prog, dev);
            ok = false;
        }
        if (begun && x->be->kernels.call_end) x->be->kernels.call_end(x->prog, state);
        if (!ok) {
            if (copy) kiln_tensor_free(&host);
            return KILN_ERR_DEVICE;
        }
    }
    if (has(x, BK_KERNELS) && x->be->kernels.bind && !x->be->kernels.bind(x->prog, param, host.data, err, errlen)) {
        if (dev) x->be->buffers.free(x->prog, dev);
        if (copy) kiln_tensor_free(&host);
        return KILN_ERR_DEVICE;
    }
    unbind_param(x, param);
    x->is_bound[param] = true;
    x->bound_owned[param] = copy;
    x->bound[param] = host;
    x->bound_dev[param] = dev;
    return KILN_OK;
}

KilnStatus exec_bind(Executable *x, int param, const KilnTensor *t, char *err, size_t errlen) {
    return bind_param(x, param, t, true, err, errlen);
}

KilnStatus exec_bind_shared(Executable *x, int param, const KilnTensor *t, char *err, size_t errlen) {
    return bind_param(x, param, t, false, err, errlen);
}

bool exec_bind_batch(Executable *x, bool begin, char *err, size_t errlen) {
    bool (*batch)(void *, bool, char *, size_t) = has(x, BK_KERNELS) ? x->be->kernels.bind_batch : NULL;
    return !batch || batch(x->prog, begin, err, errlen);
}

KilnStatus exec_bind_batch_end(Executable *x, KilnStatus st, char *err, size_t errlen) {
    char berr[512] = "";
    if (exec_bind_batch(x, false, berr, sizeof berr) || st != KILN_OK) return st;
    snprintf(err, errlen, "%s", berr);
    return KILN_ERR_DEVICE;
}

KilnStatus exec_bind_constants(Executable *x, const IRGraph *g, const KilnTensor *inputs, char *err,
                               size_t errlen) {
    if (!exec_bind_batch(x, true, err, errlen)) return KILN_ERR_DEVICE;
    KilnStatus st = KILN_OK;
    for (int i = 0; st == KILN_OK && i < x->nparams && i < g->params.len; i++)
        if (ir_node(g, g->params.data[i])->flag) st = exec_bind_shared(x, i, &inputs[i], err, errlen);
    return exec_bind_batch_end(x, st, err, errlen);
}

/* ------------------------------------------------------------ bench */

static int cmp_double(const void *a, const void *b) {
    double p = *(const double *)a, q = *(const double *)b;
    return p < q ? -1 : p > q;
}

static double median(double *v, int n) {
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n ? (n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2])) : 0;
}

/* The track of the device's timeline in a trace (-1 without one). */
static int device_track(const Executable *x) {
    if (!x->trace) return -1;
    StrBuf process = {0};
    sb_printf(&process, "device %s", x->be->name);
    int track = trace_track(x->trace, process.data, has(x, BK_KERNELS) ? "kernel launches" : "runs");
    sb_free(&process);
    return track;
}

/* Records run r (-1: the warm-up) of a bench: the run, and each kernel
 * with what it moved and computed.  stamps as timed_launches fills them. */
static void trace_run(const Executable *x, int track, int r, const double *stamps) {
    int nk = x->kp ? x->kp->kernels.len : 0;
    if (r < 0)
        trace_span_on(x->trace, track, "run", stamps[0], stamps[nk], NULL, "warm-up run");
    else
        trace_span_on(x->trace, track, "run", stamps[0], stamps[nk], NULL, "run %d", r + 1);
    for (int k = 0; x->trace && k < nk; k++) {
        const Kernel *kn = &x->kp->kernels.data[k];
        double ms = stamps[k + 1] - stamps[k];
        StrBuf args = {0};
        sb_printf(&args, "{\"run\": %d, \"kernel\": %d, \"kind\": \"%s\", \"bytes\": %lld, \"flops\": %lld",
                  r + 1, k, kernel_kind_name(kn->kind), (long long)kn->bytes, (long long)kn->flops);
        if (ms > 0)
            sb_printf(&args, ", \"GB/s\": %.6g, \"GFLOP/s\": %.6g", kn->bytes / ms / 1e6,
                      kn->flops / ms / 1e6);
        sb_puts(&args, "}");
        trace_span_on(x->trace, track, "kernel", stamps[k], stamps[k + 1], args.data, "%s", kn->name);
        sb_free(&args);
    }
}

/* Graph-level backends: whole runs on the host clock. */
static KilnStatus bench_graph(const Executable *x, const KilnTensor *inputs, int runs, BenchReport *rep,
                              char *err, size_t errlen) {
    double *t = xcalloc((size_t)runs, sizeof *t), *cpu = xcalloc((size_t)runs, sizeof *cpu);
    KilnTensor *outs = xcalloc((size_t)x->nresults + 1, sizeof *outs);
    KilnStatus st = KILN_OK;
    int track = device_track(x);
    for (int r = -1; r < runs && st == KILN_OK; r++) { /* r == -1: warm-up */
        double cpu0 = process_cpu_ms();
        double stamps[2] = {now_ms(), 0};
        st = exec_run(x, inputs, outs, err, errlen);
        stamps[1] = now_ms();
        if (r >= 0) t[r] = stamps[1] - stamps[0], cpu[r] = process_cpu_ms() - cpu0;
        if (st == KILN_OK) trace_run(x, track, r, stamps);
        for (int i = 0; st == KILN_OK && i < x->nresults; i++) kiln_tensor_free(&outs[i]);
    }
    rep->run_ms = median(t, runs);
    rep->run_cpu_ms = median(cpu, runs);
    rep->runs = runs;
    free(t);
    free(cpu);
    free(outs);
    return st;
}

/* One timed run of every kernel: stamps[k] is the time before kernel k,
 * stamps[nk] after the last (host clock, or the device's marks placed at
 * the host time the run was launched). */
static bool timed_launches(Call *c, double *stamps, char *err, size_t errlen) {
    const Executable *x = c->x;
    const Backend *be = x->be;
    int nk = x->kp->kernels.len;
    bool device_clock = be->clock.mark && be->clock.elapsed;
    double launched = now_ms();
    for (int k = 0; k <= nk; k++) {
        if (device_clock && !be->clock.mark(x->prog, c->state, k, err, errlen)) return false;
        if (!device_clock) stamps[k] = now_ms();
        if (k < nk && !be->kernels.launch(x->prog, c->state, k, c->bufs, err, errlen)) return false;
    }
    if (be->kernels.sync && !be->kernels.sync(x->prog, c->state, err, errlen)) return false;
    for (int k = 0; device_clock && k <= nk; k++) {
        if (!be->clock.elapsed(x->prog, c->state, 0, k, &stamps[k], err, errlen)) return false;
        stamps[k] += launched;
    }
    return true;
}

KilnStatus exec_bench(const Executable *x, const KilnTensor *inputs, int runs, BenchReport *rep, char *err,
                      size_t errlen) {
    if (runs < 1) runs = 1;
    if (!has(x, BK_KERNELS)) return bench_graph(x, inputs, runs, rep, err, errlen);
    int nk = x->kp->kernels.len;
    Call c;
    KilnTensor *outs = xcalloc((size_t)x->nresults + 1, sizeof *outs);
    double *t = xcalloc((size_t)(nk + 1) * (size_t)runs, sizeof *t); /* [kernel or whole][run] */
    double *cpu = xcalloc((size_t)runs, sizeof *cpu);
    double *stamps = xcalloc((size_t)nk + 1, sizeof *stamps);
    KilnStatus st = call_open(&c, x, inputs, err, errlen);
    bool made = st == KILN_OK && alloc_outputs(x, outs, err, errlen);
    if (st == KILN_OK && (!made || !bind(&c, outs, err, errlen))) st = KILN_ERR_DEVICE;
    int track = device_track(x);
    for (int r = -1; r < runs && st == KILN_OK; r++) { /* r == -1: warm-up */
        double cpu0 = process_cpu_ms();
        if (!timed_launches(&c, stamps, err, errlen)) {
            st = KILN_ERR_DEVICE;
            break;
        }
        trace_run(x, track, r, stamps);
        for (int k = 0; r >= 0 && k < nk; k++)
            t[(size_t)k * (size_t)runs + (size_t)r] = stamps[k + 1] - stamps[k];
        if (r >= 0) t[(size_t)nk * (size_t)runs + (size_t)r] = stamps[nk] - stamps[0];
        if (r >= 0) cpu[r] = process_cpu_ms() - cpu0;
    }
    if (st == KILN_OK && !copy_results(&c, outs, err, errlen)) st = KILN_ERR_DEVICE;
    if (st == KILN_OK) {
        rep->runs = runs;
        rep->run_ms = median(t + (size_t)nk * (size_t)runs, runs);
        rep->run_cpu_ms = median(cpu, runs);
        for (int k = 0; k < nk; k++) {
            const Kernel *kn = &x->kp->kernels.data[k];
            KernelTiming kt = {kn->name, median(t + (size_t)k * (size_t)runs, runs), kn->bytes, kn->flops};
            VEC_PUSH(rep->kernels, kt);
        }
    }
    for (int i = 0; made && i < x->nresults; i++) kiln_tensor_free(&outs[i]);
    call_close(&c);
    free(outs);
    free(t);
    free(cpu);
    free(stamps);
    return st;
}

/* ------------------------------------------------------------ emit, aot, layout */

KilnStatus exec_emit(const IRGraph *g, const char *stage, const CompileOptions *opt, FILE *out, char *err,
                     size_t errlen) {
    const Backend *be;
    const EmitStage *s = backend_stage(stage, &be);
    if (!s) {
        StrBuf names = {0};
        backend_stage_names(&names, ", ");
        snprintf(err, errlen, "no backend emits '%s' (backend stages: %s)", stage,
                 names.data ? names.data : "none");
        sb_free(&names);
        return KILN_ERR_USAGE;
    }
    Arena *arena = arena_new();
    char serr[2048] = "";
    KProgram *kp = exec_schedule_for(arena, g, opt, be, serr, sizeof serr);
    KilnStatus st = kp ? s->emit(kp, opt, out, serr, sizeof serr) : KILN_ERR_DEVICE;
    if (st != KILN_OK) snprintf(err, errlen, "%s: %s", be->name, serr);
    kprog_destroy(kp);
    arena_free(arena);
    return st;
}

KilnStatus exec_aot(const IRGraph *g, const char *target, const CompileOptions *opt, const char *dir,
                    char *err, size_t errlen) {
    const char *variant;
    const Backend *be = backend_aot_target(target, &variant, err, errlen);
    if (!be) return KILN_ERR_USAGE;
    Arena *arena = arena_new();
    char serr[4096] = "";
    KProgram *kp = exec_schedule_for(arena, g, opt, be, serr, sizeof serr);
    KilnStatus st = kp ? be->aot.write(kp, g, opt, variant, dir, serr, sizeof serr) : KILN_ERR_DEVICE;
    if (st != KILN_OK) snprintf(err, errlen, "%s: %s", be->name, serr);
    kprog_destroy(kp);
    arena_free(arena);
    return st;
}

int64_t exec_layout(const KProgram *p, int64_t align, const bool *skip, int64_t *off) {
    if (align < 1) align = 1;
    int64_t at = 0;
    for (int i = 0; i < p->bufs.len; i++) {
        const KBuf *b = &p->bufs.data[i];
        off[i] = -1;
        if (b->kind == KB_TEMP || (skip && skip[i])) continue;
        off[i] = at;
        at += ((int64_t)buf_bytes(b) + align - 1) / align * align;
    }
    for (int i = 0; i < p->bufs.len; i++)
        if (p->bufs.data[i].kind == KB_TEMP) off[i] = at + p->bufs.data[i].offset;
    return at + p->arena_bytes;
}
