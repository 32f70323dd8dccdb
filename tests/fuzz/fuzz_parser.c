/* fuzz_parser.c - libFuzzer target for the front end: arbitrary bytes through
 * the parser and the type checker, and for clean programs through ir_build
 * with bound dimensions, the IR verifier and (for tiny concrete graphs) the
 * reference interpreter.  Everything is freed, so LeakSanitizer sees leaks.
 * Build and run: tests/fuzz/run.sh SECONDS (seeds: tests/fuzz/corpus_parser/).
 * A crashing input goes into tests/fuzz/regress_parser/, which run.sh and
 * build/tests/test_frontend replay. */
#include "frontend/ast.h"
#include "fuzz_graphs.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

enum { MAX_GRAPHS = 4, MAX_ELEMENTS = 1 << 14, MAX_NODES = 2000 };

static void interpret(const IRGraph *g) {
    int np = g->params.len, nr = g->results.len;
    KilnTensor *in = calloc((size_t)np + 1, sizeof(KilnTensor));
    KilnTensor *out = calloc((size_t)nr + 1, sizeof(KilnTensor));
    bool ok = true;
    for (int i = 0; i < np && ok; i++) {
        const Node *p = ir_node(g, g->params.data[i]);
        int64_t shape[64];
        if (p->rank > 64) {
            ok = false;
            break;
        }
        for (int k = 0; k < p->rank; k++) shape[k] = p->shape[k];
        ok = kiln_tensor_init(&in[i], p->dtype, p->rank, shape);
        if (ok) { /* small varied bytes: finite values in every dtype */
            size_t bytes = (size_t)kiln_tensor_numel(&in[i]) * kiln_dtype_size(p->dtype);
            for (size_t b = 0; b < bytes; b++) ((uint8_t *)in[i].data)[b] = (uint8_t)(b * 7 % 61);
        }
    }
    char err[256];
    if (ok && ref_run(g, in, out, err, sizeof err))
        for (int i = 0; i < nr; i++) kiln_tensor_free(&out[i]);
    for (int i = 0; i < np; i++) kiln_tensor_free(&in[i]);
    free(in);
    free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* kiln refuses a NUL byte before parsing (compilation_open) */
    if (memchr(data, 0, size)) return 0;
    Arena *arena = arena_new();
    Source src = {"fuzz.kiln", arena_strndup(arena, (const char *)data, size), size};
    DiagList diags = {0};
    Program prog = {0};
    FILE *sink = fopen("/dev/null", "w");
    bool ok = parse_program(arena, &src, &diags, &prog);
    if (sink) ast_print(&prog, sink);
    if (ok) ok = ir_check_program(&prog, &diags);
    for (int gi = 0; ok && gi < prog.ngraphs && gi < MAX_GRAPHS; gi++) {
        for (int bound = 0; bound < 2; bound++) { /* symbolic, then with the bindings */
            IRGraph *g = ir_build(arena, &prog, gi, fuzz_binds, bound ? FUZZ_NBINDS : 0, &diags);
            if (!g) continue;
            char err[256];
            if (!ir_verify(g, err, sizeof err)) {
                fprintf(stderr, "fuzz_parser: the IR of a clean program fails to verify: %s\n", err);
                abort();
            }
            if (sink) ir_print(g, sink);
            if (bound && ir_graph_is_concrete(g, NULL) && fuzz_graph_fits(g, MAX_NODES, MAX_ELEMENTS))
                interpret(g);
            ir_graph_destroy(g);
        }
    }
    if (sink) {
        diag_print(&diags, sink);
        fclose(sink);
    }
    diag_clear(&diags);
    arena_free(arena);
    return 0;
}
