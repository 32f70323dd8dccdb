/* test_onnx_nodes.c - the ONNX backend node-test suite (Debian's
 * libonnx-testdata: 932 cases of model.onnx + test_data_set_N/{input,output}_K.pb)
 * run through kiln's importer on several devices, many cases per process.
 *
 * Each case is imported and bound in-process exactly as `kiln run model.onnx
 * --in NAME=input_K.pb` does (compilation_open + driver_bind, -O2); then each
 * device compiles and runs it and every output is compared with output_K.pb by
 * ONNX's own tolerance (|kiln - expected| <= 1e-7 + 1e-3 |expected|; integers
 * and bools exactly; NaN equals NaN).  A case is either run (it must then match
 * on every device) or refused with diagnostics (it must then be listed in the
 * expected-refusals file, and a listed case that runs is a failure too, so a
 * change in either direction is seen).  Work is spread over worker processes
 * (fork, one batch of cases each), which also keeps a crash to its batch: a
 * crashing batch is rerun case by case so the crash is pinned on its case.
 *
 * Each data set is also imported as `kiln import` does (with the inputs bound
 * as `run` binds them), written as kiln source and weights, read back by
 * kiln's front end and run on ref: the pair must give the expected outputs
 * too (--no-roundtrip skips it).
 *
 * Usage: test_onnx_nodes [--data DIR] [--expect FILE] [--devices ref,cpu,...]
 *                        [--jobs N] [--only SUBSTRING] [--verbose] [--write-expect FILE]
 *                        [--no-roundtrip]
 * Defaults: /usr/share/libonnx-testdata/data/node, tests/onnx/node_expected.txt,
 * ref,cpu,cuda-emu, 2 jobs.  Prints "test_onnx_nodes: N passed, N failed" last
 * (N passed counts cases that ran and matched on every device, and listed
 * refusals that were refused).
 */
#include "app/app.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

typedef enum { R_PASS, R_REFUSED, R_FAIL } Result;

typedef struct {
    char *name;
    Result result;
    char *why; /* refusal's first diagnostic, or the failure */
} Case;

typedef struct {
    const char *data, *expect, *write_expect, *only;
    const char *devices[8];
    int ndevices, jobs;
    bool verbose;
    bool roundtrip; /* also `kiln import` each case and run the source written (on ref) */
} Config;

static char *xstrdup_printf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static char *xstrdup_printf(const char *fmt, ...) {
    StrBuf sb = {0};
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(&sb, fmt, ap);
    va_end(ap);
    return sb.data ? sb.data : xstrdup("");
}

/* ---- one case ---- */

static bool file_exists(const char *p) { return access(p, R_OK) == 0; }

/* Compares one output; false with the reason in why. */
static bool same_tensor(const KilnTensor *got, const KilnTensor *want, char *why, size_t n) {
    if (got->rank != want->rank)
        return snprintf(why, n, "rank %d, expected %d", got->rank, want->rank), false;
    for (int k = 0; k < got->rank; k++)
        if (got->shape[k] != want->shape[k])
            return snprintf(why, n, "dimension %d is %lld, expected %lld", k, (long long)got->shape[k],
                            (long long)want->shape[k]),
                   false;
    if (got->dtype != want->dtype)
        return snprintf(why, n, "dtype %s, expected %s", kiln_dtype_name(got->dtype),
                        kiln_dtype_name(want->dtype)),
               false;
    bool exact = got->dtype == KILN_I32 || got->dtype == KILN_I64 || got->dtype == KILN_BOOL;
    for (int64_t i = 0, total = kiln_tensor_numel(want); i < total; i++) {
        double a = kiln_tensor_get(got, i), e = kiln_tensor_get(want, i);
        bool ok = exact ? a == e : (isnan(a) && isnan(e)) || a == e || fabs(a - e) <= 1e-7 + 1e-3 * fabs(e);
        if (got->dtype == KILN_I64) ok = ((int64_t *)got->data)[i] == ((int64_t *)want->data)[i];
        if (!ok) return snprintf(why, n, "element %lld is %.9g, expected %.9g", (long long)i, a, e), false;
    }
    return true;
}

/* Reads a .pb tensor.  The suite's files of ONNX 1.12 store bfloat16 values
 * as uint16 bit patterns: where the model declares bfloat16 (want_odt) they
 * are read as such. */
static bool read_pb(const char *path, int32_t want_odt, KilnTensor *out, char *err, size_t errlen) {
    if (want_odt == ONNX_BFLOAT16) {
        uint8_t *buf = NULL;
        size_t len = 0;
        FILE *f = fopen(path, "rb");
        if (f) {
            fseek(f, 0, SEEK_END);
            len = (size_t)ftell(f);
            fseek(f, 0, SEEK_SET);
            buf = xmalloc(len + 1);
            len = fread(buf, 1, len, f);
            fclose(f);
        }
        Arena *a = arena_new();
        OnnxTensor t;
        bool quirk = buf && onnx_tensor_parse(buf, len, a, &t, err, errlen) && t.data_type == ONNX_UINT16;
        KilnTensor bits;
        if (quirk && onnx_tensor_read(&t, KILN_I32, &bits, err, errlen)) {
            bool ok = kiln_tensor_init(out, KILN_BF16, bits.rank, bits.shape);
            for (int64_t i = 0; ok && i < kiln_tensor_numel(&bits); i++)
                ((uint16_t *)out->data)[i] = (uint16_t)((int32_t *)bits.data)[i];
            kiln_tensor_free(&bits);
            arena_free(a);
            free(buf);
            return ok;
        }
        arena_free(a);
        free(buf);
    }
    return kiln_onnx_tensor_read_file(path, out, err, errlen);
}

/* The declared dtype of graph output k (0 when not declared). */
static int32_t output_odt(const OnnxModel *m, int k) {
    return k < m->graph.noutputs ? m->graph.outputs[k].elem_type : 0;
}

/* One data set of one case, imported and bound, with its expected outputs. */
typedef struct {
    int case_idx, set;
    IRGraph *g;
    KilnTensor *inputs;
    KilnTensor *expected;
    int nexpected;
} Unit;

typedef VEC(Unit) UnitVec;

typedef struct {
    Compilation c;
    Result result;
    char why[1024];
} CaseState;

static void fail_case(CaseState *cs, Result r, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static void fail_case(CaseState *cs, Result r, const char *fmt, ...) {
    if (cs->result != R_PASS) return; /* the first problem is the one reported */
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(cs->why, sizeof cs->why, fmt, ap);
    va_end(ap);
    cs->result = r;
}

/* The first diagnostic of a refusal, without the file's path. */
static void first_diag(Compilation *c, const char *err, char *out, size_t n) {
    char *text = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&text, &len);
    diag_print(&c->diags, f);
    fclose(f);
    char *nl = text ? strchr(text, '\n') : NULL;
    if (nl) *nl = 0;
    const char *msg = text && text[0] ? text : err, *e = strstr(msg, "error: ");
    snprintf(out, n, "%s", e ? e + 7 : msg);
    free(text);
}

static bool roundtrip(CaseState *cs, const NamedTensor *tensors, int ntensors, const KilnTensor *expected,
                      int nexpected, char *why, size_t whylen);

/* Opens a case and prepares a Unit per data set (appended to units); on a
 * refusal the CaseState says why. */
static void prepare_case(const Config *cfg, const char *name, int idx, CaseState *cs, UnitVec *units) {
    char path[2048], err[2048] = "";
    snprintf(path, sizeof path, "%s/%s/model.onnx", cfg->data, name);
    if (compilation_open(&cs->c, path, err, sizeof err) != KILN_OK)
        return fail_case(cs, R_REFUSED, "%s", err);
    OnnxInput *ins;
    int nin = onnx_model_inputs(cs->c.arena, cs->c.onnx, &ins);
    for (int set = 0; cs->result == R_PASS; set++) {
        char dir[1024];
        snprintf(dir, sizeof dir, "%s/%s/test_data_set_%d", cfg->data, name, set);
        if (access(dir, R_OK) != 0) {
            if (set == 0) fail_case(cs, R_FAIL, "no test_data_set_0");
            break;
        }
        VEC(NamedTensor) tensors = {0};
        char *unread = NULL;
        for (int i = 0; cs->result == R_PASS; i++) {
            snprintf(path, sizeof path, "%s/input_%d.pb", dir, i);
            if (!file_exists(path)) break;
            if (i >= nin) {
                fail_case(cs, R_REFUSED, "input_%d.pb has no graph input", i);
                break;
            }
            NamedTensor nt = {.name = ins[i].name, .role = TENSOR_INPUT, .origin = "--in"};
            int32_t want_odt = ins[i].dtype_ok && ins[i].dtype == KILN_BF16 ? ONNX_BFLOAT16 : 0;
            if (!read_pb(path, want_odt, &nt.tensor, err, sizeof err)) {
                /* a dtype kiln lacks: left unbound for the importer to refuse by name */
                if (strstr(err, "which kiln does not have")) {
                    if (!unread) unread = xstrdup(err);
                    continue;
                }
                const char *e = strstr(err, ".pb: ");
                fail_case(cs, R_REFUSED, "input %s: %s", nt.name, e ? e + 5 : err);
                break;
            }
            VEC_PUSH(tensors, nt);
        }
        Unit u = {.case_idx = idx, .set = set};
        KilnTensor *inputs = NULL;
        BindRequest req = {tensors.data, tensors.len, NULL, 0, 0, false, NULL, false, false, false};
        CompileOptions copt = {.opt_level = 2};
        if (cs->result == R_PASS &&
            driver_bind(&cs->c, 0, &req, &copt, &u.g, &inputs, err, sizeof err) != KILN_OK) {
            first_diag(&cs->c, err, cs->why, sizeof cs->why);
            cs->result = R_REFUSED;
        } else if (cs->result == R_PASS && unread) { /* imported: the tensor file was the problem */
            fail_case(cs, R_REFUSED, "%s", unread);
        }
        u.inputs = inputs;
        for (int k = 0; cs->result == R_PASS && k < u.g->results.len; k++) {
            snprintf(path, sizeof path, "%s/output_%d.pb", dir, k);
            u.expected = xrealloc(u.expected, sizeof(KilnTensor) * (size_t)(k + 1));
            if (!read_pb(path, output_odt(cs->c.onnx, k), &u.expected[k], err, sizeof err)) {
                fail_case(cs, R_FAIL, "output %d: %s", k, err);
                break;
            }
            u.nexpected++;
        }
        char rwhy[1024];
        if (cfg->roundtrip && cs->result == R_PASS &&
            !roundtrip(cs, tensors.data, tensors.len, u.expected, u.nexpected, rwhy, sizeof rwhy))
            fail_case(cs, R_FAIL, "kiln import round trip: %s", rwhy);
        if (u.g) VEC_PUSH(*units, u);
        for (int i = 0; i < tensors.len; i++) kiln_tensor_free(&tensors.data[i].tensor);
        VEC_FREE(tensors);
        free(unread);
        diag_clear(&cs->c.diags);
    }
}

static void unit_free(Unit *u) {
    for (int i = 0; u->inputs && i < u->g->params.len; i++) kiln_tensor_free(&u->inputs[i]);
    free(u->inputs);
    for (int k = 0; k < u->nexpected; k++) kiln_tensor_free(&u->expected[k]);
    free(u->expected);
    ir_graph_destroy(u->g);
}

/* `kiln import` round trip of one data set: the model imported with its
 * input shapes and values bound (as `run` binds them), written as kiln source
 * and weights, read back by kiln's front end, run on ref and compared with
 * the expected outputs.  False (with why) when any step fails. */
static bool roundtrip(CaseState *cs, const NamedTensor *tensors, int ntensors, const KilnTensor *expected,
                      int nexpected, char *why, size_t whylen) {
    Compilation *c = &cs->c;
    OnnxInput *ins;
    int nin = onnx_model_inputs(c->arena, c->onnx, &ins);
    VEC(DimBinding) dims = {0};
    const char **bnames = xcalloc((size_t)ntensors + 1, sizeof(char *));
    const KilnTensor **bvals = xcalloc((size_t)ntensors + 1, sizeof(KilnTensor *));
    for (int t = 0; t < ntensors; t++) {
        bnames[t] = tensors[t].name, bvals[t] = &tensors[t].tensor;
        for (int i = 0; i < nin; i++)
            if (strcmp(ins[i].name, tensors[t].name) == 0)
                for (int k = 0; k < ins[i].rank && k < tensors[t].tensor.rank; k++)
                    if (ins[i].syms[k]) {
                        DimBinding d = {ins[i].syms[k], tensors[t].tensor.shape[k]};
                        VEC_PUSH(dims, d);
                    }
    }
    OnnxImportOptions io = {
        .dims = dims.data, .ndims = dims.len, .bound_names = bnames, .bound = bvals, .nbound = ntensors};
    OnnxImport imp = {0};
    StrBuf text = {0};
    KilnTensorList weights = {0};
    char err[1024] = "", path[] = "/tmp/kiln-onnx-roundtrip-XXXXXX";
    bool ok = onnx_import(c->arena, c->onnx, &io, &c->diags, &imp);
    if (!ok) snprintf(why, whylen, "import with the inputs bound failed");
    if (ok && !onnx_write_kiln(c->arena, c->onnx, &imp, "model", &text, &weights, err, sizeof err))
        ok = false, snprintf(why, whylen, "writing: %.900s", err);
    int fd = ok ? mkstemp(path) : -1;
    if (fd >= 0) {
        ok = write(fd, text.data, text.len) == (ssize_t)text.len;
        close(fd);
    }
    Compilation kc = {0};
    if (ok && compilation_open(&kc, path, err, sizeof err) != KILN_OK) {
        char d[512];
        first_diag(&kc, err, d, sizeof d);
        snprintf(why, whylen, "the source does not read back: %s", d);
        ok = false;
    }
    VEC(NamedTensor) binds = {0};
    for (int i = 0; ok && i < ntensors; i++) { /* inputs in order: the first parameters */
        int at = -1;
        for (int k = 0; k < imp.ninputs && k < nin; k++)
            if (strcmp(ins[k].name, tensors[i].name) == 0) at = k;
        if (at < 0) continue;
        NamedTensor nt = {.name = kc.prog.graphs[0].params[at].name,
                          .tensor = tensors[i].tensor,
                          .role = TENSOR_INPUT,
                          .origin = "--in"};
        VEC_PUSH(binds, nt);
    }
    for (int i = 0; ok && i < weights.count; i++) {
        NamedTensor nt = {.name = weights.names[i],
                          .tensor = weights.tensors[i],
                          .role = TENSOR_WEIGHT,
                          .origin = "weights"};
        VEC_PUSH(binds, nt);
    }
    IRGraph *g = NULL;
    KilnTensor *inputs = NULL;
    BindRequest req = {binds.data, binds.len, NULL, 0, 0, false, NULL, false, false, false};
    CompileOptions copt = {.opt_level = 2};
    if (ok && driver_bind(&kc, 0, &req, &copt, &g, &inputs, err, sizeof err) != KILN_OK) {
        char d[512];
        first_diag(&kc, err, d, sizeof d);
        snprintf(why, whylen, "the source does not bind: %s", d);
        ok = false;
    }
    if (ok) {
        const Backend *be = NULL;
        backend_open("ref", &be, err, sizeof err);
        Executable *x = exec_compile(be, g, &copt, err, sizeof err);
        KilnTensor *outs = xcalloc((size_t)g->results.len + 1, sizeof(KilnTensor));
        ok = x && exec_run(x, inputs, outs, err, sizeof err) == KILN_OK;
        if (!ok) snprintf(why, whylen, "running: %.900s", err);
        for (int k = 0; ok && k < nexpected && k < g->results.len; k++) {
            char w[512];
            if (!same_tensor(&outs[k], &expected[k], w, sizeof w))
                ok = false, snprintf(why, whylen, "output %d: %s", k, w);
        }
        for (int k = 0; k < g->results.len; k++) kiln_tensor_free(&outs[k]);
        free(outs);
        if (x) exec_destroy(x);
    }
    if (g) {
        for (int i = 0; inputs && i < g->params.len; i++) kiln_tensor_free(&inputs[i]);
        ir_graph_destroy(g);
    }
    free(inputs);
    VEC_FREE(binds);
    if (kc.arena) compilation_close(&kc);
    unlink(path);
    kiln_tensor_list_free(&weights);
    sb_free(&text);
    onnx_import_free(&imp);
    diag_clear(&c->diags);
    VEC_FREE(dims);
    free(bnames);
    free(bvals);
    return ok;
}

/* Compares a unit's outputs; on a mismatch the case fails. */
static void check_outputs(const char *device, Unit *u, const KilnTensor *outs, CaseState *cs) {
    for (int k = 0; k < u->nexpected; k++) {
        char w[512];
        if (!same_tensor(&outs[k], &u->expected[k], w, sizeof w)) {
            fail_case(cs, R_FAIL, "%s: output %d (data set %d): %s", device, k, u->set, w);
            return;
        }
    }
}

/* Several units' graphs as one graph (disjoint parts side by side), so that
 * a device compiles them once: parameters and results in unit order. */
static IRGraph *merge_units(Arena *a, Unit **us, int n) {
    IRGraph *m = ir_graph_new(a, "batch");
    for (int u = 0; u < n; u++) {
        const IRGraph *g = us[u]->g;
        int base = m->nodes.len;
        for (int id = 0; id < g->nodes.len; id++) {
            const Node *src = ir_node(g, id);
            int *in = ARENA_ARRAY(a, int, src->nin + 1);
            for (int k = 0; k < src->nin; k++) in[k] = src->in[k] + base;
            int nid = ir_add_node(m, src->op, src->dtype, src->rank, src->shape, src->nin, in, src->loc);
            Node *dst = ir_node(m, nid);
            dst->ints = ARENA_ARRAY(a, int64_t, src->nints + 1);
            if (src->nints) memcpy(dst->ints, src->ints, sizeof(int64_t) * (size_t)src->nints);
            dst->nints = src->nints;
            dst->value = src->value;
            dst->flag = src->flag;
            if (src->name) dst->name = arena_printf(a, "u%d:%s", u, src->name);
        }
        for (int i = 0; i < g->params.len; i++) VEC_PUSH(m->params, g->params.data[i] + base);
        for (int i = 0; i < g->results.len; i++) VEC_PUSH(m->results, g->results.data[i] + base);
    }
    return m;
}

/* Runs units on one device; false with err on a compile or run failure. */
static bool run_units(const Backend *be, Unit **us, int n, KilnTensor **outs, char *err, size_t errlen) {
    Arena *a = arena_new();
    IRGraph *g = n == 1 ? us[0]->g : merge_units(a, us, n);
    int nin = 0, nres = g->results.len;
    for (int u = 0; u < n; u++) nin += us[u]->g->params.len;
    KilnTensor *inputs = xcalloc((size_t)nin + 1, sizeof(KilnTensor));
    for (int u = 0, at = 0; u < n; u++)
        for (int i = 0; i < us[u]->g->params.len; i++) inputs[at++] = us[u]->inputs[i]; /* borrowed */
    KilnTensor *all = xcalloc((size_t)nres + 1, sizeof(KilnTensor));
    CompileOptions copt = {.opt_level = 2};
    Executable *exe = exec_compile(be, g, &copt, err, errlen);
    bool ok = exe && exec_run(exe, inputs, all, err, errlen) == KILN_OK;
    if (exe) exec_destroy(exe);
    for (int u = 0, at = 0; u < n; u++) { /* hand each unit its results */
        int r = us[u]->g->results.len;
        outs[u] = xcalloc((size_t)r + 1, sizeof(KilnTensor));
        for (int k = 0; k < r; k++) outs[u][k] = all[at++];
    }
    free(all);
    free(inputs);
    if (n > 1) ir_graph_destroy(g);
    arena_free(a);
    return ok;
}

static void free_outs(KilnTensor *outs, int n) {
    for (int k = 0; k < n; k++) kiln_tensor_free(&outs[k]);
    free(outs);
}

/* Cases per compilation on devices that compile (cpu, cuda-emu). */
enum { BATCH = 48 };

/* Runs the cases todo[0..n) on every device: units batched per device; a
 * batch that fails to compile or run is rerun unit by unit. */
static void run_cases(const Config *cfg, Case *cases, const int *todo, int n, CaseState *cs) {
    UnitVec units = {0};
    for (int i = 0; i < n; i++) prepare_case(cfg, cases[todo[i]].name, i, &cs[i], &units);
    for (int d = 0; d < cfg->ndevices; d++) {
        char err[2048] = "";
        const Backend *be = NULL;
        if (backend_open(cfg->devices[d], &be, err, sizeof err) != KILN_OK) {
            for (int i = 0; i < n; i++) fail_case(&cs[i], R_FAIL, "%s", err);
            continue;
        }
        bool batch = strcmp(be->name, "ref") != 0 && strcmp(be->name, "kir") != 0;
        Unit **live = xcalloc((size_t)units.len + 1, sizeof(Unit *));
        int nlive = 0;
        for (int u = 0; u < units.len; u++)
            if (cs[units.data[u].case_idx].result == R_PASS) live[nlive++] = &units.data[u];
        for (int at = 0; at < nlive;) {
            int take = batch ? (nlive - at < BATCH ? nlive - at : BATCH) : 1;
            KilnTensor **outs = xcalloc((size_t)take + 1, sizeof(KilnTensor *));
            bool ok = run_units(be, live + at, take, outs, err, sizeof err);
            for (int u = 0; u < take; u++) {
                Unit *un = live[at + u];
                if (ok) check_outputs(cfg->devices[d], un, outs[u], &cs[un->case_idx]);
                free_outs(outs[u], un->g->results.len);
            }
            free(outs);
            if (!ok && take == 1) fail_case(&cs[live[at]->case_idx], R_FAIL, "%s: %s", cfg->devices[d], err);
            if (!ok && take > 1)
                batch = false; /* find the culprit: this batch again, one by one */
            else
                at += take;
        }
        free(live);
    }
    for (int u = 0; u < units.len; u++) unit_free(&units.data[u]);
    VEC_FREE(units);
    for (int i = 0; i < n; i++) compilation_close(&cs[i].c);
}

/* ---- workers ---- */

/* Runs cases todo[0 .. ntodo) in a child process, which writes one line per
 * case, "index result why", to the file `out`.  Returns the child's pid. */
static pid_t spawn_worker(const Config *cfg, Case *cases, const int *todo, int ntodo, const char *out) {
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        CaseState *cs = xcalloc((size_t)ntodo + 1, sizeof(CaseState));
        run_cases(cfg, cases, todo, ntodo, cs);
        FILE *f = fopen(out, "w");
        for (int i = 0; f && i < ntodo; i++) {
            for (char *p = cs[i].why; *p; p++)
                if (*p == '\n') *p = ' ';
            fprintf(f, "%d %d %s\n", todo[i], (int)cs[i].result, cs[i].why);
        }
        if (f) fclose(f);
        _exit(0);
    }
    return pid;
}

/* Reads a worker's file; marks done[] for each case reported. */
static void collect(const char *path, Case *cases, bool *done) {
    FILE *in = fopen(path, "r");
    char *line = NULL;
    size_t cap = 0;
    while (in && getline(&line, &cap, in) > 0) {
        int idx, r, off = 0;
        if (sscanf(line, "%d %d %n", &idx, &r, &off) < 2) continue;
        line[strcspn(line, "\n")] = 0;
        cases[idx].result = (Result)r;
        free(cases[idx].why);
        cases[idx].why = xstrdup(line + off);
        done[idx] = true;
    }
    free(line);
    if (in) fclose(in);
    unlink(path);
}

/* Runs every case on `jobs` workers: first one contiguous share each, then,
 * for the cases a dead worker left undone, one worker per case, so that the
 * case that crashes is known. */
static void run_all(const Config *cfg, Case *cases, int n) {
    bool *done = xcalloc((size_t)n + 1, 1);
    int jobs = cfg->jobs < 1 ? 1 : cfg->jobs;
    char dir[] = "/tmp/kiln-onnx-nodes-XXXXXX";
    if (!mkdtemp(dir)) return;
    for (int pass = 0; pass < 2; pass++) {
        int *todo = xcalloc((size_t)n + 1, sizeof(int)), ntodo = 0;
        for (int i = 0; i < n; i++)
            if (!done[i]) todo[ntodo++] = i;
        int chunks = pass == 0 ? jobs : ntodo, next = 0, running = 0;
        pid_t *pids = xcalloc((size_t)chunks + 1, sizeof(pid_t));
        while (next < chunks || running > 0) {
            while (running < jobs && next < chunks) {
                int from = (int)((int64_t)ntodo * next / chunks),
                    to = (int)((int64_t)ntodo * (next + 1) / chunks);
                char out[256];
                snprintf(out, sizeof out, "%s/%d", dir, next);
                pids[next] = spawn_worker(cfg, cases, todo + from, to - from, out);
                next++, running++;
            }
            int status;
            pid_t pid = waitpid(-1, &status, 0);
            if (pid < 0) break;
            for (int k = 0; k < next; k++) {
                if (pids[k] != pid) continue;
                char out[256];
                snprintf(out, sizeof out, "%s/%d", dir, k);
                collect(out, cases, done);
                int idx = todo[(int)((int64_t)ntodo * k / chunks)];
                if (pass == 1 && !done[idx]) {
                    cases[idx].result = R_FAIL;
                    cases[idx].why =
                        xstrdup_printf("crashed (%s %d)", WIFSIGNALED(status) ? "signal" : "exit",
                                       WIFSIGNALED(status) ? WTERMSIG(status) : WEXITSTATUS(status));
                    done[idx] = true;
                }
                running--;
            }
        }
        free(pids);
        free(todo);
    }
    rmdir(dir);
    free(done);
}

/* ---- the expected refusals ---- */

static bool listed(char **names, int n, const char *name) {
    for (int i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0) return true;
    return false;
}

/* The expectations file: lines "refused NAME  # reason" (the case must be
 * refused) and "differs NAME  # reason" (it runs, but the suite's expected
 * values are known to be wrong or to follow another convention, and kiln's
 * results must differ from them: see the reason). */
typedef struct {
    char **refused, **differs, **differs_lines;
    int nrefused, ndiffers;
} Expect;

static void expect_free(Expect *e) {
    for (int i = 0; i < e->nrefused; i++) free(e->refused[i]);
    for (int i = 0; i < e->ndiffers; i++) free(e->differs[i]), free(e->differs_lines[i]);
    free(e->refused), free(e->differs), free(e->differs_lines);
}

static bool read_expect(const char *path, Expect *e) {
    memset(e, 0, sizeof *e);
    FILE *f = fopen(path, "r");
    if (!f) return false;
    char line[2048];
    while (fgets(line, sizeof line, f)) {
        char kind[16], name[512];
        if (line[0] == '#' || sscanf(line, "%15s %511s", kind, name) != 2) continue;
        if (strcmp(kind, "refused") == 0) {
            e->refused = xrealloc(e->refused, sizeof(char *) * (size_t)(e->nrefused + 1));
            e->refused[e->nrefused++] = xstrdup(name);
        } else if (strcmp(kind, "differs") == 0) {
            e->differs = xrealloc(e->differs, sizeof(char *) * (size_t)(e->ndiffers + 1));
            e->differs_lines = xrealloc(e->differs_lines, sizeof(char *) * (size_t)(e->ndiffers + 1));
            e->differs_lines[e->ndiffers] = xstrdup(line);
            e->differs[e->ndiffers++] = xstrdup(name);
        }
    }
    fclose(f);
    return true;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

int main(int argc, char **argv) {
    Config cfg = {.data = "/usr/share/libonnx-testdata/data/node",
                  .expect = "tests/onnx/node_expected.txt",
                  .jobs = 2,
                  .roundtrip = true};
    const char *devices = "ref,cpu,cuda-emu";
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--data") == 0 && v)
            cfg.data = v, i++;
        else if (strcmp(a, "--expect") == 0 && v)
            cfg.expect = v, i++;
        else if (strcmp(a, "--write-expect") == 0 && v)
            cfg.write_expect = v, i++;
        else if (strcmp(a, "--devices") == 0 && v)
            devices = v, i++;
        else if (strcmp(a, "--jobs") == 0 && v)
            cfg.jobs = atoi(v), i++;
        else if (strcmp(a, "--only") == 0 && v)
            cfg.only = v, i++;
        else if (strcmp(a, "--verbose") == 0)
            cfg.verbose = true;
        else if (strcmp(a, "--no-roundtrip") == 0)
            cfg.roundtrip = false;
        else {
            fprintf(stderr, "test_onnx_nodes: unknown argument '%s'\n", a);
            return 2;
        }
    }
    char *dl = xstrdup(devices);
    for (char *tok = strtok(dl, ","); tok && cfg.ndevices < 8; tok = strtok(NULL, ","))
        cfg.devices[cfg.ndevices++] = tok;
    DIR *d = opendir(cfg.data);
    if (!d) {
        printf("test_onnx_nodes: %s is missing (tools/install-deps.sh installs libonnx-testdata)\n",
               cfg.data);
        printf("test_onnx_nodes: 0 passed, 1 failed\n");
        return 1;
    }
    VEC(char *) names = {0};
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.' && (!cfg.only || strstr(e->d_name, cfg.only)))
            VEC_PUSH(names, xstrdup(e->d_name));
    closedir(d);
    qsort(names.data, (size_t)names.len, sizeof(char *), cmp_str);
    int n = names.len;
    Case *cases = xcalloc((size_t)n + 1, sizeof(Case));
    for (int i = 0; i < n; i++) cases[i].name = names.data[i];
    Expect ex;
    if (!read_expect(cfg.expect, &ex) && !cfg.write_expect) {
        printf("test_onnx_nodes: cannot read %s\n", cfg.expect);
        printf("test_onnx_nodes: 0 passed, 1 failed\n");
        return 1;
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    run_all(&cfg, cases, n);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    int passed = 0, failed = 0, ran = 0, refused = 0, differ = 0;
    for (int i = 0; i < n; i++) {
        Case *k = &cases[i];
        bool want_refused = listed(ex.refused, ex.nrefused, k->name),
             want_differs = listed(ex.differs, ex.ndiffers, k->name);
        bool mismatch = k->result == R_FAIL && strstr(k->why, ": output ");
        ran += k->result == R_PASS;
        refused += k->result == R_REFUSED;
        differ += want_differs && mismatch;
        if (want_differs) {
            if (mismatch)
                passed++;
            else
                failed++, printf("FAIL %s: listed as differing from the suite's values, but: %s\n", k->name,
                                 k->result == R_PASS ? "it matches now; remove it from the list" : k->why);
        } else if (k->result == R_PASS && !want_refused) {
            passed++;
        } else if (k->result == R_REFUSED && want_refused) {
            passed++;
            if (cfg.verbose) printf("refused %s: %s\n", k->name, k->why);
        } else if (k->result == R_PASS) {
            failed++;
            printf("FAIL %s: runs and matches now; remove it from %s\n", k->name, cfg.expect);
        } else if (k->result == R_REFUSED) {
            failed++;
            printf("FAIL %s: refused, and not listed in %s: %s\n", k->name, cfg.expect, k->why);
        } else {
            failed++;
            printf("FAIL %s: %s\n", k->name, k->why);
        }
    }
    if (cfg.write_expect) {
        FILE *f = fopen(cfg.write_expect, "w");
        if (f) {
            fprintf(f, "# The ONNX node-test cases (Debian libonnx-testdata) that kiln refuses, with the "
                       "first reason,\n"
                       "# and those whose expected values kiln knowingly differs from.  "
                       "tests/unit/test_onnx_nodes.c\n"
                       "# fails when a case does otherwise (so a change either way is seen).  Regenerate the "
                       "refused\n"
                       "# lines with: build/tests/test_onnx_nodes --devices ref --write-expect FILE\n");
            for (int i = 0; i < ex.ndiffers; i++) fputs(ex.differs_lines[i], f);
            for (int i = 0; i < n; i++) {
                if (cases[i].result != R_REFUSED) continue;
                const char *why = strstr(cases[i].why, "/model.onnx: "); /* the path says nothing here */
                fprintf(f, "refused %s  # %.160s\n", cases[i].name, why ? why + 13 : cases[i].why);
            }
            fclose(f);
        }
    }
    printf("test_onnx_nodes: %d cases: %d run and match on %s, %d refused, %d differ as listed, %d failed "
           "(%.1f s, "
           "%d jobs)\n",
           n, ran, devices, refused, differ, failed,
           (double)(t1.tv_sec - t0.tv_sec) + (t1.tv_nsec - t0.tv_nsec) / 1e9, cfg.jobs);
    printf("test_onnx_nodes: %d passed, %d failed\n", passed, failed);
    for (int i = 0; i < n; i++) free(cases[i].name), free(cases[i].why);
    free(cases);
    VEC_FREE(names);
    expect_free(&ex);
    free(dl);
    return failed != 0;
}
