/* gen_forms.c - compiles the prebuilt kernel forms (runtime/cpu_code.h) at
 * build time, for the build host's CPU, and writes them as a C header of
 * bytes that runtime/prebuilt_forms.c includes:
 *
 *     gen_forms CORPUS.kiln OUT.h     (make: tools/forms.kiln -> BUILD/gen/prebuilt_forms.h)
 *
 * Every graph of the corpus goes through the passes and the fusion as a
 * model's graph would (-O2, f32); its parameters whose names begin with
 * `w` or `b` are bound constants, as a model's weights are (the others are
 * inputs).  Every sized kernel (llvm_kernel_sizes) of a form not yet had is
 * compiled once (cpu_code_prebuild_form), on as many threads as the
 * machine has cores (at most 8); kernels of other kinds are left to the JIT.  The header defines
 * KILN_PREBUILT_FORMS and prebuilt_forms_suffix[]  the suffix of the shared helpers the forms call (the
 * prebuilt helpers': tools/gen_helpers.c); prebuilt_forms_bytes[]   the unit entries, one after the other;
 *   prebuilt_forms_list[]    per form its key, symbol and entry, by key.
 * Where the helpers are not prebuilt for this host (no target machine), the
 * header defines nothing and says why: every process compiles every unit.
 * This program has no prebuilt forms of its own (cpu_prebuilt_forms below:
 * it makes them).  Exit 0, 1 (the corpus does not build), 2 (usage), 3 (the
 * file cannot be written). */
#include "frontend/ast.h"
#include "passes/pass.h"
#include "runtime/cpu_code.h"
#include "runtime/exec.h"
#include "tools/gen_header.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

const CpuPrebuiltForms *cpu_prebuilt_forms(void) { return NULL; }

typedef struct {
    KCacheKey key;
    char *sym, *entry; /* NULL entry: a thread is compiling it */
    size_t len;
} Form;

/* The corpus's kernels: the first of each form (in the corpus's order, so
 * that the header does not depend on the threads' timing) compiled by
 * several threads, each taking the next. */
typedef struct {
    KProgram **progs;
    int *prog_of, *kernel_of, njobs; /* the kernels to compile */
    atomic_int next;
    pthread_mutex_t mu; /* guards err */
    Form *forms;        /* per job */
    atomic_bool failed; /* set once; the threads take no more jobs after it */
    char err[2048];
} Corpus;

/* cpu_code_prebuild_form's `known` for the first pass: every form is had
 * (only its key is wanted). */
static bool form_had(KCacheKey key, void *ctx) {
    (void)key, (void)ctx;
    return true;
}

static void *compile_forms(void *arg) {
    Corpus *c = arg;
    for (int j; !atomic_load(&c->failed) && (j = atomic_fetch_add(&c->next, 1)) < c->njobs;) {
        char err[2048] = "";
        Form *f = &c->forms[j];
        if (cpu_code_prebuild_form(c->progs[c->prog_of[j]], c->kernel_of[j], NULL, NULL, &f->key, &f->sym,
                                   &f->entry, &f->len, err, sizeof err))
            continue;
        pthread_mutex_lock(&c->mu);
        if (!atomic_load(&c->failed)) snprintf(c->err, sizeof c->err, "%s", err[0] ? err : "not sized");
        atomic_store(&c->failed, true);
        pthread_mutex_unlock(&c->mu);
    }
    return NULL;
}

static int form_cmp(const void *a, const void *b) {
    const Form *x = a, *y = b;
    for (int i = 0; i < 2; i++)
        if (x->key.h[i] != y->key.h[i]) return x->key.h[i] < y->key.h[i] ? -1 : 1;
    return 0;
}

/* Graph gi of prog, its weights constant, through the passes and the
 * fusion (NULL with a message); *g and *o (after the passes) to free after
 * the program. */
static KProgram *graph_program(Arena *arena, const Program *prog, int gi, IRGraph **g_out, IRGraph **o_out,
                               char *err, size_t errlen) {
    DiagList diags = {0};
    IRGraph *g = *g_out = ir_build(arena, prog, gi, NULL, 0, &diags), *o = NULL;
    *o_out = NULL;
    if (!g) {
        snprintf(err, errlen, "graph %s does not build", prog->graphs[gi].name);
        diag_print(&diags, stderr);
        diag_clear(&diags);
        return NULL;
    }
    diag_clear(&diags);
    for (int i = 0; i < g->params.len; i++) {
        Node *n = ir_node(g, g->params.data[i]);
        n->flag = n->name && (n->name[0] == 'w' || n->name[0] == 'b');
    }
    CompileOptions copt = {.opt_level = 2, .precision = PREC_F32};
    PassOptions po = {.opt_level = 2};
    KProgram *kp = NULL;
    if (passes_run(arena, g, &po, &o, err, errlen) == KILN_OK)
        kp = exec_schedule(arena, o, &copt, err, errlen);
    *o_out = o != g ? o : NULL;
    return kp;
}

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: gen_forms CORPUS.kiln OUT.h\n");
        return 2;
    }
    const char *corpus = argv[1], *out = argv[2];
    char err[2048] = "";
    Arena *arena = arena_new();
    Source *src = ARENA_NEW(arena, Source);
    src->path = corpus;
    char *text = NULL;
    size_t tlen = 0;
    if (!read_file(corpus, &text, &tlen, err, sizeof err)) {
        fprintf(stderr, "gen_forms: %s\n", err);
        return 1;
    }
    src->text = text, src->len = tlen;
    DiagList diags = {0};
    Program prog;
    if (!parse_program(arena, src, &diags, &prog) || !ir_check_program(&prog, &diags)) {
        diag_print(&diags, stderr);
        fprintf(stderr, "gen_forms: %s does not check\n", corpus);
        return 1;
    }
    diag_clear(&diags);
    Corpus c = {.progs = xcalloc((size_t)prog.ngraphs + 1, sizeof(KProgram *))};
    pthread_mutex_init(&c.mu, NULL);
    IRGraph **graphs = xcalloc(2 * (size_t)prog.ngraphs + 1, sizeof(IRGraph *));
    for (int gi = 0; gi < prog.ngraphs; gi++) {
        if (!(c.progs[gi] =
                  graph_program(arena, &prog, gi, &graphs[2 * gi], &graphs[2 * gi + 1], err, sizeof err))) {
            fprintf(stderr, "gen_forms: %s: graph %s: %s\n", corpus, prog.graphs[gi].name, err);
            return 1;
        }
        c.njobs += c.progs[gi]->kernels.len;
    }
    /* the first kernel of each sized form, in order */
    c.prog_of = xcalloc((size_t)c.njobs + 1, sizeof(int)),
    c.kernel_of = xcalloc((size_t)c.njobs + 1, sizeof(int));
    KCacheKey *keys = xcalloc((size_t)c.njobs + 1, sizeof(KCacheKey));
    int nkernels = c.njobs;
    c.njobs = 0;
    for (int gi = 0; gi < prog.ngraphs && !c.failed; gi++)
        for (int k = 0; k < c.progs[gi]->kernels.len && !c.failed; k++) {
            KCacheKey key;
            char *sym, *entry;
            size_t len;
            err[0] = 0;
            if (!cpu_code_prebuild_form(c.progs[gi], k, form_had, NULL, &key, &sym, &entry, &len, err,
                                        sizeof err)) {
                if (!err[0]) continue; /* not sized */
                c.failed = true;
                snprintf(c.err, sizeof c.err, "%s", err);
                continue;
            }
            bool had = false;
            for (int j = 0; j < c.njobs && !had; j++)
                had = keys[j].h[0] == key.h[0] && keys[j].h[1] == key.h[1];
            if (had) continue;
            keys[c.njobs] = key, c.prog_of[c.njobs] = gi, c.kernel_of[c.njobs++] = k;
        }
    free(keys);
    c.forms = xcalloc((size_t)c.njobs + 1, sizeof(Form));
    fprintf(stderr, "gen_forms: %d kernels, %d forms\n", nkernels, c.njobs);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int nthreads = ncpu < 1 ? 1 : ncpu > 8 ? 8 : (int)ncpu;
    pthread_t *threads = xcalloc((size_t)nthreads, sizeof(pthread_t));
    bool *started = xcalloc((size_t)nthreads, sizeof(bool));
    for (int t = 1; t < nthreads && !c.failed; t++)
        started[t] = pthread_create(&threads[t], NULL, compile_forms, &c) == 0;
    if (!c.failed) compile_forms(&c); /* threads that could not start leave their share to this one */
    for (int t = 1; t < nthreads; t++)
        if (started[t]) pthread_join(threads[t], NULL);
    free(threads), free(started);
    for (int gi = 0; gi < prog.ngraphs; gi++) kprog_destroy(c.progs[gi]);
    for (int i = 0; i < 2 * prog.ngraphs; i++)
        if (graphs[i]) ir_graph_destroy(graphs[i]);
    free(graphs);
    /* no prebuilt helpers here: no forms either (not an error) */
    bool none = c.failed && strstr(c.err, "not prebuilt") != NULL;
    if (c.failed && !none) {
        fprintf(stderr, "gen_forms: %s: %s\n", corpus, c.err);
        return 1;
    }
    snprintf(err, sizeof err, "%s", c.err);
    Form *forms = c.forms;
    int nforms = none ? 0 : c.njobs;
    qsort(forms, (size_t)nforms, sizeof(Form), form_cmp);

    GenHeader h;
    if (!gen_header_open(&h, "gen_forms", out)) return 3;
    FILE *f = h.f;
    fprintf(f,
            "/* prebuilt_forms.h - generated by gen_forms (tools/gen_forms.c) from %s at\n"
            " * build time: the units of its sized kernel forms compiled for the build\n"
            " * host, for runtime/prebuilt_forms.c.  Do not edit. */\n",
            corpus);
    if (!none && nforms > 0) {
        char suffix[64] = "";
        cpu_code_prebuilt_helpers_suffix(suffix, sizeof suffix); /* (prebuilt: forms were made) */
        size_t total = 0;
        for (int i = 0; i < nforms; i++) total += forms[i].len;
        fprintf(f, "#define KILN_PREBUILT_FORMS 1\n");
        fprintf(f, "static const char prebuilt_forms_suffix[] = \"%s\";\n", suffix);
        fprintf(f, "static const unsigned char prebuilt_forms_bytes[%zu] __attribute__((aligned(16))) = {",
                total);
        for (int i = 0; i < nforms; i++) gen_header_bytes(f, (const unsigned char *)forms[i].entry, forms[i].len);
        fprintf(f, "\n};\nstatic const CpuPrebuiltForm prebuilt_forms_list[%d] = {\n", nforms);
        size_t at = 0;
        for (int i = 0; i < nforms; i++) {
            const Form *x = &forms[i];
            fprintf(f, "    {{0x%016llxull, 0x%016llxull}, \"%s\", prebuilt_forms_bytes + %zu, %zu},\n",
                    (unsigned long long)x->key.h[0], (unsigned long long)x->key.h[1], x->sym, at, x->len);
            at += x->len;
        }
        fprintf(f, "};\n");
        fprintf(stderr, "gen_forms: %d prebuilt forms, %zu bytes\n", nforms, total);
    } else {
        fprintf(stderr, "gen_forms: no prebuilt forms (%s): every process compiles its units\n",
                err[0] ? err : "the corpus has no sized kernel");
        gen_header_none(f, err[0] ? err : (char[]){"the corpus has no sized kernel"});
    }
    bool written = gen_header_close(&h);
    for (int i = 0; i < c.njobs; i++) free(c.forms[i].sym), free(c.forms[i].entry);
    free(c.forms);
    free(c.prog_of), free(c.kernel_of), free(c.progs);
    pthread_mutex_destroy(&c.mu);
    free(text);
    arena_free(arena);
    return written ? 0 : 3;
}
