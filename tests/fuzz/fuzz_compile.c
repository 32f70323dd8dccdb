/* fuzz_compile.c - libFuzzer target for the whole compiler: arbitrary bytes
 * through the parser and checker, and for each clean graph (bound with small
 * sizes) the optimisation passes (-O2, and the mixed-precision pass), the
 * fusion scheduler, the kernel-IR verifier, the CUDA C emitter and the LLVM
 * module builder (with its verifier and O3 pipeline; no machine code).  Where
 * fuzz_parser stops at the IR, this one goes on to every stage that `kiln
 * emit` reaches, so a program that checks clean but breaks a later stage is
 * found.  A stage may refuse with a message; only a crash, a sanitizer report,
 * a hang or a clean graph the verifiers reject counts.
 * Build and run: tests/fuzz/run.sh SECONDS (FUZZ_TARGETS=compile); seeds are
 * the parser's (tests/fuzz/corpus_parser/, run.sh uses them when
 * corpus_compile/ does not exist) and its dictionary.  A crashing input goes
 * into tests/fuzz/regress_compile/. */
#include "codegen/cuda.h"
#include "codegen/llvm.h"
#include "frontend/ast.h"
#include "fuzz_graphs.h"
#include "passes/fuse.h"
#include "passes/pass.h"

#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Few graphs, small sizes: the later stages cost milliseconds per graph. */
enum { MAX_GRAPHS = 3, MAX_NODES = 400, MAX_ELEMENTS = 1 << 16 };

static void fail(const char *stage, const char *err) {
    fprintf(stderr, "fuzz_compile: %s rejects what the stages before it made: %s\n", stage, err);
    abort();
}

/* The stages after the IR, for one concrete graph. */
static void compile(Arena *arena, IRGraph *g, PassPrecision precision, LLVMTargetMachineRef tm, FILE *sink) {
    char err[1024] = "";
    PassOptions po = {.opt_level = 2, .dump = sink, .precision = precision};
    IRGraph *o = NULL;
    KilnStatus st = passes_run(arena, g, &po, &o, err, sizeof err);
    if (st == KILN_ERR_DEVICE) fail("a pass", err); /* it broke a clean graph */
    if (st != KILN_OK) return;
    if (!ir_verify(o, err, sizeof err)) fail("ir_verify after the passes", err);
    FuseOptions fo = {.fuse = true};
    KProgram *kp = fuse_graph(arena, o, &fo, err, sizeof err);
    if (kp) {
        if (!kprog_verify(kp, err, sizeof err)) fail("kprog_verify", err);
        kprog_print(kp, o, sink);
        CudaProgram cp = {0};
        if (cuda_codegen(kp, 80, false, &cp, err, sizeof err)) {
            fputs(cp.source, sink);
            cuda_program_free(&cp);
        }
        if (tm) {
            LLVMContextRef ctx = LLVMContextCreate();
            LLVMModuleRef mod = llvm_build_program(ctx, kp, tm, false, NULL, err, sizeof err);
            if (mod) LLVMDisposeModule(mod);
            LLVMContextDispose(ctx);
        }
        kprog_destroy(kp);
    }
    if (o != g) ir_graph_destroy(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static LLVMTargetMachineRef tm; /* made once: the host's, as `kiln emit --emit=ll` */
    static bool tm_tried;
    if (!tm_tried) {
        char err[512];
        tm_tried = true;
        tm = llvm_target_machine("x86-64", false, err, sizeof err);
    }
    if (memchr(data, 0, size)) return 0; /* refused before parsing (compilation_open) */
    Arena *arena = arena_new();
    Source src = {"fuzz.kiln", arena_strndup(arena, (const char *)data, size), size};
    DiagList diags = {0};
    Program prog = {0};
    FILE *sink = fopen("/dev/null", "w");
    bool ok = parse_program(arena, &src, &diags, &prog) && ir_check_program(&prog, &diags);
    for (int gi = 0; ok && sink && gi < prog.ngraphs && gi < MAX_GRAPHS; gi++) {
        IRGraph *g = ir_build(arena, &prog, gi, fuzz_binds, FUZZ_NBINDS, &diags);
        if (!g) continue;
        char err[256];
        if (!ir_verify(g, err, sizeof err)) fail("ir_verify of a clean program", err);
        if (ir_graph_is_concrete(g, NULL) && fuzz_graph_fits(g, MAX_NODES, MAX_ELEMENTS)) {
            compile(arena, g, PASS_PREC_F32, tm, sink);
            if (gi == 0) compile(arena, g, PASS_PREC_BF16, NULL, sink);
        }
        ir_graph_destroy(g);
    }
    if (sink) fclose(sink);
    diag_clear(&diags);
    arena_free(arena);
    return 0;
}
