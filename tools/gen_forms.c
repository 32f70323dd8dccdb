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
 * compiled once (cpu_code_prebuild_form); kernels of other kinds are left
 * to the JIT.  The header defines KILN_PREBUILT_FORMS and
 *   prebuilt_forms_suffix[]  the suffix of the shared helpers the forms call
 *                            (the prebuilt helpers': tools/gen_helpers.c);
 *   prebuilt_forms_bytes[]   the unit entries, one after the other;
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

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const CpuPrebuiltForms *cpu_prebuilt_forms(void) { return NULL; }

typedef struct {
    KCacheKey key;
    char *sym, *entry;
    size_t len;
} Form;

typedef VEC(Form) Forms;

static bool form_known(KCacheKey key, void *ctx) {
    const Forms *f = ctx;
    for (int i = 0; i < f->len; i++)
        if (f->data[i].key.h[0] == key.h[0] && f->data[i].key.h[1] == key.h[1]) return true;
    return false;
}

static int form_cmp(const void *a, const void *b) {
    const Form *x = a, *y = b;
    for (int i = 0; i < 2; i++)
        if (x->key.h[i] != y->key.h[i]) return x->key.h[i] < y->key.h[i] ? -1 : 1;
    return 0;
}

/* Graph gi of prog, its weights constant, through the passes and the
 * fusion; every new sized form of it compiled into *forms. */
static bool graph_forms(Arena *arena, const Program *prog, int gi, Forms *forms, char *err, size_t errlen) {
    DiagList diags = {0};
    IRGraph *g = ir_build(arena, prog, gi, NULL, 0, &diags), *o = NULL;
    if (!g) {
        snprintf(err, errlen, "graph %s does not build", prog->graphs[gi].name);
        diag_print(&diags, stderr);
        diag_clear(&diags);
        return false;
    }
    diag_clear(&diags);
    for (int i = 0; i < g->params.len; i++) {
        Node *n = ir_node(g, g->params.data[i]);
        n->flag = n->name && (n->name[0] == 'w' || n->name[0] == 'b');
    }
    CompileOptions copt = {.opt_level = 2, .precision = PREC_F32};
    PassOptions po = {.opt_level = 2};
    KProgram *kp = NULL;
    bool ok = passes_run(arena, g, &po, &o, err, errlen) == KILN_OK &&
              (kp = exec_schedule(arena, o, &copt, err, errlen)) != NULL;
    for (int k = 0; ok && kp && k < kp->kernels.len; k++) {
        Form f = {0};
        bool got =
            cpu_code_prebuild_form(kp, k, form_known, forms, &f.key, &f.sym, &f.entry, &f.len, err, errlen);
        if (!got && err[0]) ok = false;
        if (got && f.entry) VEC_PUSH(*forms, f);
    }
    if (kp) kprog_destroy(kp);
    if (o && o != g) ir_graph_destroy(o);
    ir_graph_destroy(g);
    return ok;
}

static void write_bytes(FILE *f, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) fprintf(f, "%s%u,", i % 24 ? "" : "\n    ", p[i]);
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
    Forms forms = {0};
    bool ok = true, none = false;
    for (int gi = 0; ok && !none && gi < prog.ngraphs; gi++) {
        err[0] = 0;
        ok = graph_forms(arena, &prog, gi, &forms, err, sizeof err);
        /* no prebuilt helpers here: no forms either (not an error) */
        none = !ok && strstr(err, "not prebuilt") != NULL;
        if (!ok && !none) fprintf(stderr, "gen_forms: %s: graph %s: %s\n", corpus, prog.graphs[gi].name, err);
    }
    if (!ok && !none) return 1;
    qsort(forms.data, (size_t)forms.len, sizeof(Form), form_cmp);

    StrBuf tmp = {0};
    sb_printf(&tmp, "%s.tmp", out);
    FILE *f = fopen(tmp.data, "w");
    if (!f) {
        fprintf(stderr, "gen_forms: cannot write %s: %s\n", tmp.data, strerror(errno));
        return 3;
    }
    fprintf(f,
            "/* prebuilt_forms.h - generated by gen_forms (tools/gen_forms.c) from %s at\n"
            " * build time: the units of its sized kernel forms compiled for the build\n"
            " * host, for runtime/prebuilt_forms.c.  Do not edit. */\n",
            corpus);
    if (!none && forms.len > 0) {
        char suffix[64] = "";
        cpu_code_prebuilt_helpers_suffix(suffix, sizeof suffix); /* (prebuilt: forms were made) */
        size_t total = 0;
        for (int i = 0; i < forms.len; i++) total += forms.data[i].len;
        fprintf(f, "#define KILN_PREBUILT_FORMS 1\n");
        fprintf(f, "static const char prebuilt_forms_suffix[] = \"%s\";\n", suffix);
        fprintf(f, "static const unsigned char prebuilt_forms_bytes[%zu] __attribute__((aligned(16))) = {",
                total);
        for (int i = 0; i < forms.len; i++)
            write_bytes(f, (const unsigned char *)forms.data[i].entry, forms.data[i].len);
        fprintf(f, "\n};\nstatic const CpuPrebuiltForm prebuilt_forms_list[%d] = {\n", forms.len);
        size_t at = 0;
        for (int i = 0; i < forms.len; i++) {
            const Form *x = &forms.data[i];
            fprintf(f, "    {{0x%016llxull, 0x%016llxull}, \"%s\", prebuilt_forms_bytes + %zu, %zu},\n",
                    (unsigned long long)x->key.h[0], (unsigned long long)x->key.h[1], x->sym, at, x->len);
            at += x->len;
        }
        fprintf(f, "};\n");
        fprintf(stderr, "gen_forms: %d prebuilt forms, %zu bytes\n", forms.len, total);
    } else {
        fprintf(stderr, "gen_forms: no prebuilt forms (%s): every process compiles its units\n",
                err[0] ? err : "the corpus has no sized kernel");
        for (char *p = err; *p; p++) /* a comment's text */
            if (*p == '*' || *p == '\n') *p = ' ';
        fprintf(f, "/* none: %s */\n", err[0] ? err : "the corpus has no sized kernel");
    }
    bool written = fclose(f) == 0 && rename(tmp.data, out) == 0;
    if (!written) fprintf(stderr, "gen_forms: cannot write %s: %s\n", out, strerror(errno));
    sb_free(&tmp);
    for (int i = 0; i < forms.len; i++) free(forms.data[i].sym), free(forms.data[i].entry);
    VEC_FREE(forms);
    free(text);
    arena_free(arena);
    return written ? 0 : 3;
}
