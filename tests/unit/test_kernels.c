/* test_kernels.c - the CPU's special kernel shapes (convolution as implicit
 * GEMM, direct and depthwise convolution, pooling) on every backend that
 * runs the kernel IR, against the reference interpreter.
 *
 * Each suite is one kiln program whose graph computes many cases side by
 * side (one compile per backend, not one per case): every padding, stride,
 * dilation and group form, odd sizes, batch 1 and more, bias and fused
 * epilogues (relu, silu, clamp, residual add), sizes that take the tiled
 * paths (several K blocks, partial register tiles) and sizes that do not.
 * Inputs are seeded random values in [-1, 1); each result must equal the
 * reference (ir/interp.c, in double) within |got - want| <= tol * |want| +
 * 1e-4 * (the largest |want| of that result), tol 1e-4 for f32 results and
 * one rounding (1e-3, 8e-3) for f16 and bf16 ones, on --device cpu (LLVM JIT, 2 threads
 * unless KILN_THREADS says otherwise, so the split of the outer range and the
 * convolutions gathered once per thread are exercised), kir and cuda-emu.
 * The CUDA C of every suite is also checked for the mapping of each
 * convolution and pool: the direct one (depthwise, small groups, pools) or
 * the tiled implicit GEMM, never the generic reduction.
 * Last line: "test_kernels: N passed, N failed". */
#include "app/app.h"
#include "codegen/cuda.h"
#include "codegen/llvm.h"
#include "passes/fuse.h"
#include "runtime/exec.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

/* ------------------------------------------------------------ harness */

/* Compares the results of one run with the reference's. */
static void compare_results(const char *name, const char *device, const IRGraph *g, const KilnTensor *got,
                            const KilnTensor *want) {
    for (int r = 0; r < g->results.len; r++) {
        int64_t n = kiln_tensor_numel(&want[r]), bad = 0, first = -1;
        double scale = 0;
        for (int64_t e = 0; e < n; e++) scale = fmax(scale, fabs(kiln_tensor_get(&want[r], e)));
        bool same_size = kiln_tensor_numel(&got[r]) == n;
        /* f32 results: accumulation order; half results: one rounding of the result either way */
        double tol = want[r].dtype == KILN_F16 ? 1e-3 : want[r].dtype == KILN_BF16 ? 8e-3 : 1e-4;
        for (int64_t e = 0; same_size && e < n; e++) {
            double a = kiln_tensor_get(&got[r], e), w = kiln_tensor_get(&want[r], e);
            if (!(fabs(a - w) <= tol * fabs(w) + 1e-4 * scale)) {
                if (first < 0) first = e;
                bad++;
            }
        }
        const Node *rn = ir_node(g, g->results.data[r]);
        CHECK(same_size && bad == 0,
              "%s on %s: result %d (line %d): %lld of %lld wrong, first at %lld: %g, want %g", name, device,
              r, rn->loc.line, (long long)bad, (long long)n, (long long)first,
              first >= 0 ? kiln_tensor_get(&got[r], first) : 0.0,
              first >= 0 ? kiln_tensor_get(&want[r], first) : 0.0);
    }
}

static void free_results(KilnTensor *t, int n) {
    for (int i = 0; i < n; i++) kiln_tensor_free(&t[i]);
    free(t);
}

/* Random inputs for g's parameters, seeded. */
static KilnTensor *random_inputs(const IRGraph *g, uint64_t seed) {
    KilnTensor *in = xcalloc((size_t)g->params.len + 1, sizeof(KilnTensor));
    for (int i = 0; i < g->params.len; i++) {
        const Node *p = ir_node(g, g->params.data[i]);
        int64_t shape[8];
        for (int d = 0; d < p->rank; d++) shape[d] = p->shape[d];
        kiln_tensor_init(&in[i], p->dtype, p->rank, shape);
        tensor_fill_random(&in[i], seed + (uint64_t)i * 7919);
    }
    return in;
}

/* One run of exe, compared with the reference's results. */
static void run_and_compare(const char *name, const char *device, Executable *exe, const IRGraph *o,
                            const KilnTensor *in, const KilnTensor *want) {
    char err[2048] = "";
    int nr = o->results.len;
    KilnTensor *got = xcalloc((size_t)nr + 1, sizeof(KilnTensor));
    bool ran = exec_run(exe, in, got, err, sizeof err) == KILN_OK;
    CHECK(ran, "%s on %s: run: %s", name, device, err);
    if (ran) compare_results(name, device, o, got, want);
    free_results(got, ran ? nr : 0);
}

/* Marks graph o's parameters named w* constant (a model's weights: their
 * operands packed once), or, on false, none. */
static void mark_weights_constant(IRGraph *o, bool on) {
    for (int i = 0; i < o->params.len; i++) {
        Node *p = ir_node(o, o->params.data[i]);
        p->flag = on && p->name[0] == 'w';
    }
}

/* The cpu backend with the parameters named w* constant (their operands
 * packed once): bound (packed at bind time), two runs, bound again to other
 * weights (packed again), a run; then not bound (packed at every launch from
 * the run's data) with either set of weights. */
static void check_constant_weights(const char *name, IRGraph *o, const KilnTensor *in, const KilnTensor *want,
                                   const char *cpu) {
    int np = o->params.len, nr = o->results.len;
    mark_weights_constant(o, true);
    char err[2048] = "";
    KilnTensor *in2 = random_inputs(o, 99), *want2 = xcalloc((size_t)nr + 1, sizeof(KilnTensor));
    for (int i = 0; i < np; i++) /* the same activations, other weights */
        if (!ir_node(o, o->params.data[i])->flag) {
            kiln_tensor_free(&in2[i]);
            tensor_convert(&in[i], in[i].dtype, &in2[i]);
        }
    bool ok2 = ref_run(o, in2, want2, err, sizeof err);
    CHECK(ok2, "%s: reference: %s", name, err);
    CompileOptions copt = {.opt_level = 2, .cpu = cpu};
    char target[96], dev[128];
    snprintf(target, sizeof target, "cpu%s%s", cpu ? ":" : "", cpu ? cpu : "");
    for (int bound = 1; ok2 && bound >= 0; bound--) {
        Executable *exe = exec_compile(backend_lookup("cpu"), o, &copt, err, sizeof err);
        CHECK(exe != NULL, "%s on %s, constant weights: compile: %s", name, target, err);
        if (!exe) continue;
        snprintf(dev, sizeof dev, "%s (%s)", target, bound ? "weights bound" : "constant weights, not bound");
        if (bound)
            CHECK(exec_bind_constants(exe, o, in, err, sizeof err) == KILN_OK, "%s: bind: %s", name, err);
        run_and_compare(name, dev, exe, o, in, want);
        run_and_compare(name, dev, exe, o, bound ? in2 : in, want); /* bound: the run's weights are ignored */
        if (bound)
            CHECK(exec_bind_constants(exe, o, in2, err, sizeof err) == KILN_OK, "%s: bind: %s", name, err);
        run_and_compare(name, dev, exe, o, in2, want2);
        exec_destroy(exe);
    }
    mark_weights_constant(o, false);
    free_results(in2, np);
    free_results(want2, ok2 ? nr : 0);
}

/* Every kernel of o that kernel_direct accepts renders in CUDA as the direct
 * convolution mapping or as the tiled implicit GEMM, never the generic
 * reduction (the results above checked what it computes on cuda-emu);
 * returns how many run the direct one. */
static int check_cuda_direct(const char *name, const IRGraph *o) {
    char err[2048] = "";
    CompileOptions copt = {.opt_level = 2};
    Arena *arena = arena_new();
    KProgram *kp = exec_schedule(arena, o, &copt, err, sizeof err);
    CudaProgram cp = {0};
    bool ok = kp && cuda_codegen(kp, 80, false, &cp, err, sizeof err);
    CHECK(ok, "%s: CUDA C: %s", name, err);
    int n = 0;
    for (int i = 0; ok && i < kp->kernels.len; i++) {
        if (!kernel_direct(kp, &kp->kernels.data[i])) continue;
        char head[64];
        snprintf(head, sizeof head, "/* kernel %d: ", i);
        const char *at = strstr(cp.source, head), *end = at ? strstr(at, "*/") : NULL;
        const char *direct = at ? strstr(at, "direct convolution") : NULL,
                   *tiled = at ? strstr(at, "matmul") : NULL;
        bool is_direct = direct && direct < end;
        CHECK(is_direct || (tiled && tiled < end),
              "%s: kernel %d (%s) runs neither the direct nor the tiled mapping", name, i,
              kp->kernels.data[i].name);
        n += is_direct;
    }
    if (ok) cuda_program_free(&cp);
    kprog_destroy(kp);
    arena_free(arena);
    return n;
}

/* Graph 0 of program `text` (its source named `name`), or NULL after a
 * failed check that prints why. */
static IRGraph *build_graph(Arena *arena, const char *name, const char *text) {
    Source *src = ARENA_NEW(arena, Source);
    src->path = name;
    src->text = arena_strdup(arena, text);
    src->len = strlen(text);
    DiagList diags = {0};
    Program prog;
    IRGraph *g = NULL;
    if (parse_program(arena, src, &diags, &prog) && ir_check_program(&prog, &diags))
        g = ir_build(arena, &prog, 0, NULL, 0, &diags);
    CHECK(g != NULL, "%s does not build", name);
    if (!g) diag_print(&diags, stdout);
    diag_clear(&diags);
    return g;
}

/* Builds graph 0 of `text`, runs it on the reference and on each backend,
 * compares every result; `direct`: at least that many kernels run the
 * direct convolution mapping on CUDA. */
/* Runs the suite's program on the reference and on every backend named in
 * `devices` (NULL-terminated; NULL: cpu, kir and cuda-emu; "cpu:NAME": the
 * cpu backend compiling for CPU NAME, --cpu) and compares. */
static void run_suite_on(const char *name, const char *text, int direct, const char *const *devices) {
    static const char *const every_device[] = {"cpu", "kir", "cuda-emu", NULL};
    if (!devices) devices = every_device;
    const char *dump = getenv("TEST_KERNELS_DUMP"); /* a folder: write each suite's program there */
    if (dump) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dump, name);
        FILE *f = fopen(path, "w");
        if (f) fputs(text, f), fclose(f);
    }
    Arena *arena = arena_new();
    IRGraph *g = build_graph(arena, name, text);
    if (!g) {
        arena_free(arena);
        return;
    }
    int np = g->params.len, nr = g->results.len;
    KilnTensor *in = random_inputs(g, 1234);
    KilnTensor *want = xcalloc((size_t)nr + 1, sizeof(KilnTensor));
    char err[2048] = "";
    bool ok = ref_run(g, in, want, err, sizeof err);
    CHECK(ok, "%s: reference: %s", name, err);
    PassOptions po = {.opt_level = 2};
    IRGraph *o = NULL;
    if (ok) passes_run(arena, g, &po, &o, err, sizeof err);
    CHECK(!ok || o, "%s: passes: %s", name, err);
    for (int b = 0; o && devices[b]; b++) {
        /* "compile:cpu:NAME": compiled for a CPU this host cannot run
         * (with_cpu_forms), so only the compile is checked */
        const bool compile_only = strncmp(devices[b], "compile:", 8) == 0;
        const char *device = compile_only ? devices[b] + 8 : devices[b];
        const bool for_cpu = strncmp(device, "cpu:", 4) == 0;
        CompileOptions copt = {.opt_level = 2, .cpu = for_cpu ? device + 4 : NULL};
        Executable *exe = exec_compile(backend_lookup(for_cpu ? "cpu" : device), o, &copt, err, sizeof err);
        CHECK(exe != NULL, "%s on %s: compile: %s", name, device, err);
        if (!exe) continue;
        if (!compile_only) run_and_compare(name, device, exe, o, in, want);
        exec_destroy(exe);
    }
    /* with constant weights on every cpu target of the list: prepacked
     * weights take paths of their own (the next block's prefetch) */
    for (int b = 0; o && devices[b]; b++)
        if (strcmp(devices[b], "cpu") == 0 || strncmp(devices[b], "cpu:", 4) == 0)
            check_constant_weights(name, o, in, want, devices[b][3] == ':' ? devices[b] + 4 : NULL);
    if (o) {
        int n = check_cuda_direct(name, o);
        CHECK(n >= direct, "%s: %d kernels run the direct CUDA mapping, want >= %d", name, n, direct);
    }
    free_results(in, np);
    free_results(want, ok ? nr : 0);
    if (o && o != g) ir_graph_destroy(o);
    ir_graph_destroy(g);
    arena_free(arena);
}

static void run_suite(const char *name, const char *text, int direct) {
    run_suite_on(name, text, direct, NULL);
}

/* Whether this host runs code compiled for CPU `cpu` (its features that
 * LLVM may use for these suites); only the AVX-512 CPUs of
 * with_cpu_forms are asked about. */
static bool host_runs_cpu(const char *cpu) {
#if defined(__x86_64__) && defined(__GNUC__)
    __builtin_cpu_init();
    bool avx512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
                  __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
                  __builtin_cpu_supports("avx512cd");
    if (strcmp(cpu, "skylake-avx512") == 0) return avx512;
    if (strcmp(cpu, "znver4") == 0)
        return avx512 && __builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512vbmi") &&
               __builtin_cpu_supports("avx512vbmi2") && __builtin_cpu_supports("avx512vnni") &&
               __builtin_cpu_supports("avx512bitalg") && __builtin_cpu_supports("avx512vpopcntdq") &&
               __builtin_cpu_supports("avx512ifma") && __builtin_cpu_supports("gfni") &&
               __builtin_cpu_supports("vaes") && __builtin_cpu_supports("vpclmulqdq");
    /* znver5 adds to znver4 AVX-VNNI and what these kernels never use
     * (avx512vp2intersect, movdiri, prefetchi) */
    if (strcmp(cpu, "znver5") == 0) return host_runs_cpu("znver4") && __builtin_cpu_supports("avxvnni");
#endif
    (void)cpu;
    return false;
}

/* `base` and the cpu compiled for each of `nforms` CPUs ("cpu:NAME"), whichever
 * the host's own is.  A CPU whose code this host cannot run (an AVX2-only CI
 * machine, an Intel host for znver5) is compiled but not run (its entry of
 * `compile_only`, "compile:cpu:NAME": run_suite_on), and the suite says so in
 * a skip: line: its CPU-only paths then get no results checked here.  Heap,
 * NULL-terminated. */
static const char **with_forms(const char *suite, const char *const *base, const char *const *form_cpus,
                               const char *const *compile_only, int nforms) {
    int n = 0;
    while (base[n]) n++;
    const char **all = xcalloc((size_t)(n + nforms + 1), sizeof(char *));
    for (int i = 0; i < n; i++) all[i] = base[i];
    for (int f = 0; f < nforms; f++) {
        bool runs = host_runs_cpu(form_cpus[f] + 4);
        if (!runs)
            printf("skip: %s on %s: this host cannot run that CPU's code; compiled only\n", suite,
                   form_cpus[f]);
        all[n++] = runs ? form_cpus[f] : compile_only[f];
    }
    return all;
}

/* `base` and the cpu compiled for the AVX-512 CPUs whose code differs by CPU
 * name: znver4 (the micro-kernel's embedded broadcast per FMA,
 * ukernel_embedded_bcast), skylake-avx512 (one broadcast per row shared by
 * the row's FMAs) and znver5 (the shared broadcast, and its own rules:
 * grouped depthwise rows two at a time, the padded copy's prefetch, the
 * taps tiles' transpose helpers, one K block of 512: one_k_block),
 * whichever the host's own is. */
static const char **with_cpu_forms(const char *suite, const char *const *base) {
    static const char *const form_cpus[] = {"cpu:znver4", "cpu:skylake-avx512", "cpu:znver5"};
    static const char *const compile_only[] = {"compile:cpu:znver4", "compile:cpu:skylake-avx512",
                                               "compile:cpu:znver5"};
    return with_forms(suite, base, form_cpus, compile_only, 3);
}

/* Every backend, and the cpu compiled for AVX2 and SSE (x86-64-v3, -v2:
 * their narrower tiles and blocks) too: for the suites whose paths depend on
 * the tile (NR, MC). */
static const char *const every_target[] = {"cpu", "kir", "cuda-emu", "cpu:x86-64-v3", "cpu:x86-64-v2", NULL};
/* The same without the kernel-IR interpreter: the suites whose shapes the
 * cpu tiles decide, checked against cuda-emu's plain loops. */
static const char *const cpu_targets_and_emu[] = {"cpu", "cuda-emu", "cpu:x86-64-v3", "cpu:x86-64-v2", NULL};

static void run_suite_cpu_forms(const char *name, const char *text, int direct, const char *const *base) {
    static const char *const every_device[] = {"cpu", "kir", "cuda-emu", NULL};
    const char **devices = with_cpu_forms(name, base ? base : every_device);
    run_suite_on(name, text, direct, devices);
    free(devices);
}

/* ------------------------------------------------------- matrix products */

/* x9 and x10 end in corner tiles of the micro-kernel (4 and 8 rows of a 12-row
 * panel; 17 and 16 columns of a 32-column one) over several K blocks; x11's
 * 40 columns run swapped (columns broadcast, rows in vectors); x12's 120 rows
 * (four images of A) by 200 columns split between the threads by columns,
 * and by rows once w12 is a prepacked constant (llvm_split_by_columns).
 * Products with K >= 128 run the size-generic nest (codegen/llvm.c: its
 * geometry from an argument block): x13's two batch dims, w13 broadcast
 * over the first and x13 a constant's blocks then indexed per batch, and
 * x14's f16 operands over two K blocks reach its batch and dtype paths.
 * x15 @ w15 (two activations, 250 rows, two K blocks, two batches of B)
 * packs B in the nest in every chunk: its partial sums in one row group
 * and its chunks whole batches (b_packed_per_chunk). */
static void test_matmuls(void) {
    run_suite_cpu_forms(
        "matmuls.kiln",
        "graph mms(x0: f32[70, 300], w0: f32[300, 130], b0: f32[130], "
        "w1: f32[50, 64], x1: f32[3, 64, 90], "
        "x2: f32[2, 40, 33], w2: f32[2, 33, 70], "
        "x3: f32[37, 48], w3: f32[100, 48], b3: f32[100], "
        "x4: f16[64, 96], w4: f16[96, 48], "
        "x5: f32[8, 200], w5: f32[200, 520], "
        "x6: f32[1, 300], w6: f32[300, 1100], b6: f32[1100], "
        "x7: f32[3, 1, 37], w7: f32[3, 37, 130], "
        "x8: f16[2, 77], w8: f16[77, 33], "
        "x9: f32[52, 300], w9: f32[300, 81], x10: f32[44, 520], w10: f32[520, 48], "
        "x11: f32[200, 300], w11: f32[300, 40], b11: f32[40], x12: f32[4, 30, 64], w12: f32[64, 200], "
        "x13: f32[2, 3, 20, 150], w13: f32[3, 150, 40], x14: f16[40, 260], w14: f16[260, 48], "
        "x15: f32[2, 250, 300], w15: f32[2, 300, 40]) "
        "-> (f32[70, 130], f32[3, 50, 90], f32[2, 40, 70], f32[37, 100], f16[64, 48], f32[8, 520], "
        "f32[1, 1100], f32[3, 1, 130], f16[2, 33], f32[52, 81], f32[44, 48], f32[200, 40], "
        "f32[4, 30, 200], f32[2, 3, 20, 40], f16[40, 48], f32[2, 250, 40]) {\n"
        "    return relu(x0 @ w0 + b0), w1 @ x1, x2 @ w2, linear(x3, w3, b3), x4 @ w4, x5 @ w5, "
        "relu(x6 @ w6 + b6), x7 @ w7, x8 @ w8, x9 @ w9, relu(x10 @ w10), x11 @ w11 + b11, x12 @ w12, "
        "x13 @ w13, x14 @ w14, x15 @ w15\n"
        "}\n",
        0, NULL);
    /* The micro-kernel's k loop runs two steps an iteration, then an odd
     * last one: K blocks of one step (257 = 256 + 1), two (258), odd and
     * even single blocks (255, 9, 11, 8); the plain kernel (B transposed:
     * packed) and the one reading B in place (row-major activations), on
     * the AVX-512 (each CPU form), AVX2 and SSE tiles */
    run_suite_cpu_forms(
        "matmuls-ksteps.kiln",
        "graph mmk(xa: f32[20, 257], wa: f32[40, 257], ba: f32[40], xb: f32[24, 258], "
        "wb: f32[36, 258], bb: f32[36], xc: f32[70, 9], wc: f32[60, 9], bc: f32[60], "
        "xd: f32[30, 257], wd: f32[257, 50], xe: f32[30, 255], we: f32[255, 50], "
        "xf: f32[60, 11], wf: f32[11, 60], xg: f32[64, 8], wg: f32[8, 70]) "
        "-> (f32[20, 40], f32[24, 36], f32[70, 60], f32[30, 50], f32[30, 50], f32[60, 60], "
        "f32[64, 70]) {\n"
        "    return linear(xa, wa, ba), linear(xb, wb, bb), linear(xc, wc, bc), xd @ wd, xe @ we, "
        "xf @ wf, xg @ wg\n"
        "}\n",
        0, every_target);
    /* Swapped products with long rows (K and M >= 512: swap_one_panel) run
     * a row block of one panel (kiln.mm.nest.swap1): 520 rows (a part
     * panel at the end), K = 600 over three K blocks, 49 columns (four
     * 12-column tiles and a one-column corner) with a bias and relu; and
     * 512 rows by K = 512 (two whole K blocks) over two batches of 20 */
    run_suite_cpu_forms("matmuls-swap1.kiln",
                        "graph mms1(wa: f32[520, 600], xa: f32[600, 49], ba: f32[520, 1], "
                        "wb: f32[512, 512], xb: f32[2, 512, 20]) -> (f32[520, 49], f32[2, 512, 20]) {\n"
                        "    return relu(wa @ xa + ba), wb @ xb\n"
                        "}\n",
                        0, every_target);
}

/* Products stored in an attention's heads layout, transpose(reshape(x @ w
 * + b, [-1, T, H, D]), [0, 2, 1, 3]), and back, reshape(transpose(p @ v,
 * [0, 2, 1, 3]), [-1, T, H*D]): with D a multiple of the tile's columns (32
 * on AVX-512, 16 with AVX2, 8 with SSE) a whole tile row is one run of the
 * output and is stored as vectors (codegen/llvm.c, store_runs); D = 16 and 48
 * are not such runs on AVX-512 and keep the element-wise store, but are runs
 * for the AVX2 and SSE tiles (the suite runs compiled for both too).  140 and 50 rows
 * end in corner tiles; K = 384 and 256 take the outlined epilogue, K = 30
 * the inline one. */
static void test_heads(void) {
    run_suite_cpu_forms(
        "heads.kiln",
        "graph heads(x1: f32[2, 70, 384], w1: f32[384, 384], b1: f32[384], x2: f32[1, 50, 256], "
        "w2: f32[256, 256], x3: f32[1, 40, 96], w3: f32[96, 96], b3: f32[96], x4: f32[2, 36, 144], "
        "w4: f32[144, 144], p5: f32[2, 4, 30, 30], v5: f32[2, 4, 30, 32]) "
        "-> (f32[2, 12, 70, 32], f32[1, 4, 50, 64], f32[1, 6, 40, 16], f32[2, 3, 36, 48], f32[2, 30, 128]) "
        "{\n"
        "    return transpose(reshape(x1 @ w1 + b1, [-1, 70, 12, 32]), [0, 2, 1, 3]), "
        "transpose(reshape(x2 @ w2, [-1, 50, 4, 64]), [0, 2, 1, 3]), "
        "transpose(reshape(x3 @ w3 + b3, [-1, 40, 6, 16]), [0, 2, 1, 3]), "
        "transpose(reshape(x4 @ w4, [-1, 36, 3, 48]), [0, 2, 1, 3]), "
        "reshape(transpose(p5 @ v5, [0, 2, 1, 3]), [-1, 30, 128])\n"
        "}\n",
        0, every_target);
}

/* ------------------------------------------------------- convolutions */

typedef struct {
    int n, c, h, w, oc, kh, kw, sh, sw, ph, pw, dh, dw, groups;
    bool bias;
    const char *epilogue; /* "" (none), "relu", "silu", "clamp", "residual" */
    int dh_end, dw_end;   /* bottom and right padding minus ph and pw (asymmetric padding) */
} ConvCase;

static int out_size(int in, int k, int s, int p, int p_end, int d) {
    return (in + p + p_end - d * (k - 1) - 1) / s + 1;
}

/* One graph computing every case: parameters x_i, w_i (b_i, r_i), results y_i. */
static char *conv_program(const ConvCase *cs, int n) {
    StrBuf params = {0}, body = {0}, results = {0}, ret = {0};
    for (int i = 0; i < n; i++) {
        const ConvCase *c = &cs[i];
        int ph_end = c->ph + c->dh_end, pw_end = c->pw + c->dw_end;
        int oh = out_size(c->h, c->kh, c->sh, c->ph, ph_end, c->dh),
            ow = out_size(c->w, c->kw, c->sw, c->pw, pw_end, c->dw);
        sb_printf(&params, "%sx%d: f32[%d, %d, %d, %d], w%d: f32[%d, %d, %d, %d]", i ? ", " : "", i, c->n,
                  c->c, c->h, c->w, i, c->oc, c->c / c->groups, c->kh, c->kw);
        if (c->bias) sb_printf(&params, ", b%d: f32[%d]", i, c->oc);
        bool res = strcmp(c->epilogue, "residual") == 0;
        if (res) sb_printf(&params, ", r%d: f32[%d, %d, %d, %d]", i, c->n, c->oc, oh, ow);
        sb_printf(&results, "%sf32[%d, %d, %d, %d]", i ? ", " : "", c->n, c->oc, oh, ow);
        char bias[24] = "", conv[256];
        if (c->bias) snprintf(bias, sizeof bias, ", b%d", i);
        snprintf(
            conv, sizeof conv,
            "conv2d(x%d, w%d%s, stride=[%d, %d], padding=[[%d, %d], [%d, %d]], dilation=[%d, %d], groups=%d)",
            i, i, bias, c->sh, c->sw, c->ph, ph_end, c->pw, pw_end, c->dh, c->dw, c->groups);
        if (!c->epilogue[0])
            sb_printf(&body, "    y%d = %s\n", i, conv);
        else if (res)
            sb_printf(&body, "    y%d = relu(%s + r%d)\n", i, conv, i);
        else if (strcmp(c->epilogue, "clamp") == 0)
            sb_printf(&body, "    y%d = clamp(%s, 0.0, 6.0)\n", i, conv);
        else
            sb_printf(&body, "    y%d = %s(%s)\n", i, c->epilogue, conv);
        sb_printf(&ret, "%sy%d", i ? ", " : "", i);
    }
    StrBuf prog = {0};
    sb_printf(&prog, "graph convs(%s) -> (%s) {\n%s    return %s\n}\n", params.data, results.data, body.data,
              ret.data);
    sb_free(&params), sb_free(&body), sb_free(&results), sb_free(&ret);
    return prog.data;
}

/* Graph 0 of `text` through the passes (*g, *o) and fused (weights_constant:
 * its w* parameters constant, mark_weights_constant), or NULL after a
 * failed check; the caller frees what it returns and *o, *g (when not NULL). */
static KProgram *fuse_text(Arena *arena, const char *name, const char *text, bool weights_constant,
                           IRGraph **g, IRGraph **o) {
    char err[2048] = "";
    PassOptions po = {.opt_level = 2};
    *g = build_graph(arena, name, text), *o = NULL;
    if (*g) passes_run(arena, *g, &po, o, err, sizeof err);
    if (*o && weights_constant) mark_weights_constant(*o, true);
    FuseOptions fo = {.fuse = true};
    KProgram *p = *o ? fuse_graph(arena, *o, &fo, err, sizeof err) : NULL;
    CHECK(p != NULL, "%s: fuse: %s", name, err);
    return p;
}

/* Frees what fuse_text made. */
static void fused_free(Arena *arena, KProgram *p, IRGraph *g, IRGraph *o) {
    if (p) kprog_destroy(p);
    if (o && o != g) ir_graph_destroy(o);
    if (g) ir_graph_destroy(g);
    arena_free(arena);
}

/* How many kernels of text's graph (after the passes) the CPU runs as a
 * convolution reading its input in place (llvm_conv_taps). */
static int count_conv_taps(const char *name, const char *text) {
    Arena *arena = arena_new();
    IRGraph *g, *o;
    KProgram *p = fuse_text(arena, name, text, false, &g, &o);
    int n = 0;
    for (int ki = 0; p && ki < p->kernels.len; ki++) n += llvm_conv_taps(p, &p->kernels.data[ki]);
    fused_free(arena, p, g, o);
    return n;
}

/* How many kernels of text's graph (its w* parameters constant) run the
 * Winograd form on the target `identity` (llvm_conv_wino). */
static int count_conv_wino(const char *name, const char *text, const char *identity) {
    Arena *arena = arena_new();
    IRGraph *g, *o;
    KProgram *p = fuse_text(arena, name, text, true, &g, &o);
    int n = 0;
    for (int ki = 0; p && ki < p->kernels.len; ki++) n += llvm_conv_wino(p, &p->kernels.data[ki], identity);
    fused_free(arena, p, g, o);
    return n;
}

/* Which products of text's graph (after the passes; the parameters named
 * w* constant: fuse_text) the CPU splits
 * between its threads by columns (llvm_split_by_columns): bit i of the
 * result for the i-th product (a matmul or convolution kernel_gemm
 * describes). */
static unsigned split_by_columns_bits(const char *name, const char *text) {
    Arena *arena = arena_new();
    IRGraph *g, *o;
    KProgram *p = fuse_text(arena, name, text, true, &g, &o);
    unsigned bits = 0;
    int i = 0;
    for (int ki = 0; p && ki < p->kernels.len; ki++) {
        KGemm gm;
        const Kernel *k = &p->kernels.data[ki];
        if ((k->kind == KK_MATMUL || k->kind == KK_CONV) && kernel_gemm(p, k, &gm))
            bits |= (unsigned)llvm_split_by_columns(p, &gm) << i++;
    }
    fused_free(arena, p, g, o);
    return bits;
}

/* The n convolutions of cs, every one of which must read its input in place
 * (count_conv_taps), against the reference on devices and every CPU form of
 * the micro-kernel (run_suite_cpu_forms). */
static void run_taps_suite(const char *name, const ConvCase *cs, int n, const char *const *devices) {
    char *text = conv_program(cs, n);
    int in_place = count_conv_taps(name, text);
    CHECK(in_place == n, "%s: %d convolutions read their input in place, want %d", name, in_place, n);
    run_suite_cpu_forms(name, text, 0, devices);
    free(text);
}

static void test_convolutions(void) {
    static const ConvCase gemm[] = {
        /* n, c, h, w, oc, kh, kw, sh, sw, ph, pw, dh, dw, groups, bias, epilogue, bottom - ph, right - pw */
        {1, 16, 12, 12, 24, 3, 3, 1, 1, 1, 1, 1, 1, 1, false, "", 0, 0},        /* 3x3 same, ResNet-like */
        {2, 32, 9, 11, 20, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "relu", 0, 0},      /* K = 288: two K blocks */
        {1, 8, 17, 19, 16, 3, 3, 2, 2, 1, 1, 1, 1, 1, true, "silu", 0, 0},      /* stride 2, odd sizes */
        {2, 24, 10, 9, 28, 1, 1, 1, 1, 0, 0, 1, 1, 1, false, "residual", 0, 0}, /* 1x1: a plain product */
        {1, 32, 13, 13, 40, 1, 1, 2, 2, 0, 0, 1, 1, 1, true, "", 0, 0},         /* 1x1 stride 2: gathered */
        {1, 12, 14, 13, 16, 3, 3, 1, 1, 2, 2, 2, 2, 1, false, "clamp", 0, 0},   /* dilation 2 */
        {2, 16, 11, 10, 32, 3, 2, 2, 1, 1, 0, 1, 2, 4, true, "relu", 0, 0},     /* groups, pairs */
        {1, 3, 23, 23, 16, 7, 7, 2, 2, 3, 3, 1, 1, 1, true, "relu", 0, 0},      /* ResNet stem */
        {1, 20, 7, 7, 36, 3, 3, 1, 1, 1, 1, 1, 1, 1, false, "", 0, 0},     /* 7x7 output: panels span rows */
        {3, 8, 6, 40, 14, 3, 3, 1, 2, 0, 3, 1, 1, 2, false, "", 0, 0},     /* wide rows, padding only in w */
        {1, 16, 9, 9, 16, 5, 5, 1, 1, 0, 0, 1, 1, 1, true, "", 0, 0},      /* no padding */
        {1, 64, 5, 6, 16, 1, 3, 1, 1, 0, 1, 1, 1, 1, false, "relu", 0, 0}, /* K = 192 in one block */
        {1, 32, 6, 6, 96, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "", 0, 0},      /* more rows than pixels */
        {1, 48, 9, 9, 100, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "residual", 0,
         0}, /* gathered once per thread, 2 K blocks */
        {2, 64, 8, 7, 64, 3, 3, 1, 1, 1, 1, 1, 1, 2, false, "relu", 0, 0}, /* two groups of 32 */
        {2, 80, 16, 16, 60, 1, 1, 1, 1, 0, 0, 1, 1, 5, true, "", 0, 0},    /* pointwise, 5 groups */
        {1, 16, 14, 15, 24, 3, 3, 2, 2, 0, 0, 1, 1, 1, false, "relu", 1,
         1},                                                             /* "SAME" stride 2: pad end only */
        {2, 12, 10, 13, 20, 3, 5, 1, 2, 2, 1, 1, 1, 1, true, "", -1, 2}, /* every side different */
        {2, 24, 14, 14, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "residual", 0,
         0}, /* corner tiles: 64 rows, 196 px */
        {2, 40, 14, 14, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "residual", 0,
         0}, /* two images of 196 px, K = 360: swapped */
        {1, 40, 14, 14, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "residual", 0,
         0}, /* one image of 196 px: swapped, threads split the pixels */
        {8, 16, 7, 7, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "relu", 0, 0}, /* 8 images: whole-image chunks */
        {8, 24, 14, 13, 48, 1, 1, 2, 2, 0, 0, 1, 1, 1, true, "", 0, 0},   /* 1x1 s2, 8 images: prefetch */
        /* swapped products (pixels broadcast, channels in vectors): 7x7 over
         * two K blocks, two images of 48 channels, a 3x3 image */
        {1, 48, 7, 7, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "residual", 0, 0},
        {2, 32, 7, 7, 48, 1, 1, 1, 1, 0, 0, 1, 1, 1, false, "relu", 0, 0},
        {1, 64, 3, 3, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "", 0, 0},
        /* a swapped product of one image with few row panels, split by its
         * pixels in tiles of 12 (llvm_column_grain): MobileNetV2's 1x1
         * projections to 160 channels at 7x7 (49 px: 4 tiles and 1 px), K
         * = 96 (the kernel's own nest); the 48->64 3x3 above (K = 432, the
         * shared nest) splits the same way */
        {1, 96, 7, 7, 160, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "residual", 0, 0},
        /* im2col rows at strides 3 and 4 (phases of wide masked loads),
         * stride 5 (gathered tap by tap), a dilation wider than a vector
         * (tap by tap) */
        {1, 16, 20, 31, 24, 3, 3, 1, 3, 1, 1, 1, 1, 1, true, "relu", 0, 0},
        {1, 8, 17, 45, 16, 5, 4, 2, 4, 2, 1, 1, 1, 1, false, "", 0, 1},
        {1, 12, 12, 40, 20, 3, 3, 1, 5, 1, 1, 1, 1, 1, false, "", 0, 0},
        {1, 8, 12, 40, 16, 3, 3, 1, 1, 0, 0, 1, 17, 1, false, "", 0, 0},
        /* the shared im2col forms (kiln.im2col.*) at the swapped panel
         * width: a 3x3 stride 2 and a 1x1 stride 2 to 14x14 and 7x7 */
        {1, 32, 28, 28, 64, 3, 3, 2, 2, 1, 1, 1, 1, 1, true, "relu", 0, 0},
        {1, 64, 14, 14, 64, 1, 1, 2, 2, 0, 0, 1, 1, 1, false, "", 0, 0},
        /* more than 480 output channels (row_group): every row in one group,
         * over two K blocks (3x3 x 40 = 360) and over one (1x1 stride 2) */
        {2, 40, 6, 6, 500, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "residual", 0, 0},
        {2, 64, 9, 9, 520, 1, 1, 2, 2, 0, 0, 1, 1, 1, true, "relu", 0, 0},
        /* an output of 2.4 MB: its tiles prefetch their lines for writing */
        {2, 16, 96, 96, 32, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "relu", 0, 0},
        /* 1x1 stride 1 over inputs of 2 MiB or more in several column
         * blocks, the next one's input prefetched (next_block_columns):
         * 899 px in 480 + 419 over 3 images, 20 rows (a partial row tile);
         * 2300 px in 4 x 480 + 380, K = 256 in one block */
        {3, 200, 29, 31, 20, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "relu", 0, 0},
        {1, 256, 46, 50, 16, 1, 1, 1, 1, 0, 0, 1, 1, 1, false, "residual", 0, 0},
        /* ... and K = 128 there, the epilogue inline in the kernel's own
         * nest (EPI_INLINE_OWN_NEST_MAX_K): 2 images of 2080 px in blocks
         * of 416, 20 rows, a residual */
        {2, 128, 40, 52, 20, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "residual", 0, 0},
        /* 1x1 stride 1, B read in place by the micro-kernel (b_in_place),
         * the last vector of a row under a mask: K = 16 with 16 rows (12 +
         * a corner of 4) over 255 px (the last tile 31 columns), two
         * images; K = 300 (the generic nest, two K blocks) over 90 px;
         * K = 144 over 400 px, 24 rows (threads split it by columns) */
        {2, 16, 15, 17, 16, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "", 0, 0},
        {1, 300, 9, 10, 24, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "residual", 0, 0},
        {1, 144, 20, 20, 24, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "clamp", 0, 0},
        /* ... 40 rows (4 tiles a panel, rows of whole lines): the last
         * tiles of a panel prefetch the next one through the micro-kernel's
         * slot (next_panel_in_slot), K = 48 (the kernel's own nest); K =
         * 300 in the size-generic nest keeps the burst before each panel */
        {1, 48, 16, 16, 40, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "relu", 0, 0},
        {1, 300, 16, 16, 40, 1, 1, 1, 1, 0, 0, 1, 1, 1, false, "", 0, 0},
        /* corners of one real row or half a vector (kiln.mm.ukernel.r1vV,
         * .rRh): a 14x14 image's last 4 of 196 columns, B in place, 40 rows
         * (12 x 3 + 4); two 7x7 images swapped, each one's 49th pixel a
         * row of its own over two K blocks (K = 300) */
        {1, 64, 14, 14, 40, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "relu", 0, 0},
        {2, 300, 7, 7, 32, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "residual", 0, 0},
        /* 1x1 stride 1 with B's rows not a whole number of cache lines (a
         * 14x14 plane: 784 bytes), K >= KC and more rows than a row block:
         * B packed, not read in place (b_in_place), its last panel of 4
         * columns packed by masked vectors */
        {1, 256, 14, 14, 248, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "residual", 0, 0},
        /* the same with 256 rows or more, fewer than 4 per column and odd
         * K (packed_pointwise_columns): swapped, split by columns, each
         * thread packing its own pixels of a 13x13 plane */
        {1, 300, 13, 13, 272, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "relu", 0, 0},
        /* 1x1 stride 1 over 8 images with fewer rows than columns (8 x 16 <
         * 192 px): the threads split it by whole images (pointwise_images) */
        {8, 24, 12, 16, 16, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "residual", 0, 0},
    };
    char *text = conv_program(gemm, (int)(sizeof gemm / sizeof gemm[0]));
    run_suite("convs.kiln", text, 0);
    free(text);
    /* tiles of 8 or 12 rows and at most 4 real columns run the transposed
     * corner (kiln.mm.ukernel[.ib].rRt): 11x12 planes (132 = 4 x 32 + 4);
     * odd K in one block over two images (in place, 24 rows); K = 301 in two
     * blocks, the corner adding to its partial sums and ending on an odd
     * step, in place (20 rows: 12 + 8) and packed (248 rows: more than a row
     * block).  On both AVX-512 micro-kernel forms (.ib and not) */
    static const ConvCase corner_t[] = {
        {2, 45, 11, 12, 24, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "relu", 0, 0},
        {1, 301, 11, 12, 20, 1, 1, 1, 1, 0, 0, 1, 1, 1, false, "residual", 0, 0},
        {1, 301, 11, 12, 248, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "", 0, 0},
    };
    text = conv_program(corner_t, (int)(sizeof corner_t / sizeof corner_t[0]));
    run_suite_cpu_forms("convs-corner-t.kiln", text, 0, NULL);
    free(text);
    /* swapped products' epilogue over whole rows (plane_rows, flag
     * MMF_ROWS): three 7x7 images, K = 160 in one block, a clamp; one image
     * of 64 channels split by its pixels in tiles of 12 (each chunk a part
     * of the row), K = 144; 5x5 planes of 272 channels (two row blocks of MC)
     * over two K blocks.  On every cpu target: the AVX2 and SSE tiles and
     * row blocks differ (NR, MC) */
    static const ConvCase plane_rows[] = {
        {3, 160, 7, 7, 96, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "clamp", 0, 0},
        {1, 144, 7, 7, 64, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "residual", 0, 0},
        {2, 288, 5, 5, 272, 1, 1, 1, 1, 0, 0, 1, 1, 1, false, "relu", 0, 0},
    };
    text = conv_program(plane_rows, (int)(sizeof plane_rows / sizeof plane_rows[0]));
    run_suite_cpu_forms("convs-rows.kiln", text, 0, every_target);
    free(text);
    /* MobileNetV2's stem in small: 3x3 3->32 stride 2 (K = 27), gathered by
     * the shared kiln.im2col.f32.r2.3x1.32, whose rows prefetch their input
     * IM2COL_ROWS_AHEAD rows below on znver5 (past the plane's end on the
     * last rows): odd planes over two images, and an even one */
    static const ConvCase stem_s2[] = {
        {2, 3, 31, 29, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1, true, "clamp", 0, 0},
        {1, 3, 40, 40, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1, true, "relu", 0, 0},
    };
    text = conv_program(stem_s2, (int)(sizeof stem_s2 / sizeof stem_s2[0]));
    run_suite_cpu_forms("convs-stem-s2.kiln", text, 0, NULL);
    free(text);
    /* the size-generic loop nest (kiln.mm.nest: K >= 128) prefetching an
     * output of 2 MiB for writing (3x3 x 16 = 144, 128 x 64 x 64 floats): on
     * cpu and cuda-emu only, the kernel-IR interpreter takes 10 s for it */
    static const ConvCase large[] = {
        {1, 16, 64, 64, 128, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "relu", 0, 0},
        /* a wide 1x1 16->136 (2.2 MB out) runs its tiles a row panel at a
         * time along the columns, neither B's next panel nor the output
         * prefetched (rows_outer): 11 panels and a corner of 4 rows, 4095
         * px (the last tile 31 columns) */
        {1, 16, 65, 63, 136, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "clamp", 0, 0},
        /* an output under 2 MiB (0.6 MB) whose input makes it more (1.8
         * MB): prefetched for writing too (prefetch_for_writing) */
        {1, 48, 96, 96, 16, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "clamp", 0, 0},
        /* B read in place from memory (2.4 MB over two images) with K in
         * one block: the next B block prefetched a slice per tile; K = 32
         * (the kernel's own nest: 16 rows, 12 + a corner of 4) */
        {2, 32, 96, 96, 16, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "", 0, 0},
        /* the same with K = 128 (2 MiB in) */
        {1, 128, 64, 64, 24, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "relu", 0, 0},
        /* ... with 64 rows (6 tiles a panel): the next B block's panel
         * through the micro-kernel's slot in the first tiles, the next
         * panel's in the last (nb_slot, next_panel_in_slot) */
        {1, 128, 64, 64, 64, 1, 1, 1, 1, 0, 0, 1, 1, 1, false, "relu", 0, 0},
        /* ... and with K = 288 in two blocks (2.6 MB in): the size-generic
         * nest, B in place by the block's flag at run time, the next
         * panel in a burst (prefetch_next_panel) */
        {1, 288, 48, 48, 16, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "relu", 0, 0},
        /* constant weights (check_constant_weights), 2 MiB and more: each
         * tile's micro-kernel prefetches a slice of the next prepacked
         * block (a_next_block).  A swapped 1x1 at 7x7 in the size-generic
         * nest (the flag at run time): 512 rows in two row blocks, K = 1024
         * in four K blocks, so the next block is the next rows' and then
         * the next K block's; a 3x3 at 7x7 read in place (its own nest),
         * 256 rows in one row block, K = 2304 in nine */
        {1, 1024, 7, 7, 512, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "relu", 0, 0},
        {1, 256, 7, 7, 256, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "residual", 0, 0},
    };
    static const char *const fast_devices[] = {"cpu", "cuda-emu", NULL};
    text = conv_program(large, (int)(sizeof large / sizeof large[0]));
    run_suite_cpu_forms("convs-large.kiln", text, 0, fast_devices);
    free(text);
    /* B read in place whose rows fall into few of the L1's sets (k_part):
     * 26x32 planes, 3328 bytes apart (52 lines: 16 different first sets),
     * K = 201 in one block (2.7 MB in: the kernel's own nest) and 40 rows:
     * on AVX-512 each column panel runs its k loop in parts of 64 rows
     * (64, 64, 64 and an odd 9), the tiles' sums in the panel's buffer
     * between them; the AVX2 and SSE forms keep one k loop (k_part is
     * AVX-512 only) and check the same case against the reference */
    static const ConvCase k_parts[] = {
        {4, 201, 26, 32, 40, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "relu", 0, 0},
    };
    text = conv_program(k_parts, (int)(sizeof k_parts / sizeof k_parts[0]));
    run_suite_cpu_forms("convs-k-parts.kiln", text, 0, cpu_targets_and_emu);
    free(text);
    /* a wide, short 1x1 whose epilogue reads a residual (4.5 MB out over
     * two images, K = 40 in one block, B read in place) runs its tiles a
     * row panel at a time along the columns without prefetching B's next
     * panel (rows_outer, ROWS_OUTER_READS): 136 rows (11 panels of 12 and a
     * corner of 4 on AVX-512), 4095 px (the last tile 31 columns); the same
     * written (a relu: prefetched for writing, a 320 KiB B block), without
     * prefetching the output's lines (ROWS_OUTER_STREAMS); on every
     * cpu target (their tiles differ) and cuda-emu, not the kernel-IR
     * interpreter (slow at this size) */
    static const ConvCase rows_residual[] = {
        {2, 40, 65, 63, 136, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "residual", 0, 0},
        {2, 40, 65, 63, 136, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "relu", 0, 0},
        /* written, 0.85 MB out (from 512 KiB): 52 rows */
        {1, 40, 65, 63, 52, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "relu", 0, 0},
    };
    text = conv_program(rows_residual, (int)(sizeof rows_residual / sizeof rows_residual[0]));
    run_suite_cpu_forms("convs-rows-residual.kiln", text, 0, cpu_targets_and_emu);
    free(text);
    /* a 1x1 expansion of one image (K = 24 into 96 channels, its input 34
     * KB) split by its rows, whole channel planes per thread, not by its
     * columns (pointwise_expansion_rows; its weights a constant); the same
     * into 88 channels (not two row grains) by columns */
    static const ConvCase expansion[] = {
        {1, 24, 20, 18, 96, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "clamp", 0, 0},
        {1, 24, 20, 18, 88, 1, 1, 1, 1, 0, 0, 1, 1, 1, false, "relu", 0, 0},
    };
    text = conv_program(expansion, (int)(sizeof expansion / sizeof expansion[0]));
    unsigned by_columns = split_by_columns_bits("convs-expansion.kiln", text);
    CHECK(by_columns == 2u, "convs-expansion.kiln: split by columns %#x, want 0x2 (the 96-row one by rows)",
          by_columns);
    run_suite_cpu_forms("convs-expansion.kiln", text, 0, cpu_targets_and_emu);
    free(text);
    /* convolutions read in place through their taps (llvm_conv_taps: stride
     * 1, K >= 256, output rows of a multiple of 4 pixels, channels in whole
     * vectors): rows of 12 px (one tile), 20 (12 + 8), 16 (12 + 4) and 8;
     * 29 and 30 input channels (K = 261, 270), two K blocks and one (a 1x2
     * window, K = 256), a corner of 16 channels (48 = 32 + 16), two images,
     * dilation, padding 0, asymmetric padding, and images that the threads
     * split by columns in whole output rows (llvm_column_grain: 24x24 in
     * chunks of 2 rows, 40 px rows of 12 + 12 + 12 + 4 one at a time) */
    static const ConvCase taps[] = {
        {1, 32, 12, 12, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "relu", 0, 0},
        {2, 29, 10, 20, 48, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "residual", 0, 0},
        {1, 40, 9, 18, 16, 3, 3, 1, 1, 0, 0, 1, 1, 1, false, "", 0, 0},
        {1, 32, 10, 12, 32, 3, 3, 1, 1, 2, 2, 2, 2, 1, false, "clamp", 0, 0},
        {1, 30, 9, 11, 32, 3, 3, 1, 1, 1, 2, 1, 1, 1, true, "relu", 1, -1},
        {1, 128, 6, 9, 32, 1, 2, 1, 1, 0, 0, 1, 1, 1, false, "relu", 0, 0},
        {1, 32, 24, 24, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "relu", 0, 0},
        {1, 32, 9, 40, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, false, "residual", 0, 0},
        /* K = 513 (57 channels): a last K block of one step, which the
         * micro-kernel's k loop of two steps an iteration runs alone */
        {1, 57, 6, 8, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "relu", 0, 0},
        /* stride 2 (kiln.mm.ukernel.tap2): 3x3 over two images of odd
         * width, a stem-like 7x7 over 3 channels (K = 147, one K block),
         * strides 1 down and 2 across, "SAME" padding at the end only */
        {2, 32, 17, 23, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1, true, "relu", 0, 0},
        {1, 3, 40, 40, 32, 7, 7, 2, 2, 3, 3, 1, 1, 1, true, "relu", 0, 0},
        {1, 16, 10, 24, 16, 3, 3, 1, 2, 1, 1, 1, 1, 1, false, "residual", 0, 0},
        {1, 16, 16, 24, 48, 3, 3, 2, 2, 0, 0, 1, 1, 1, true, "", 1, 1},
        /* 8 images: the threads split them whole, by rows (llvm_split_by_columns) */
        {8, 32, 8, 12, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "residual", 0, 0},
        /* output rows over 128 px (stride 1, K = 288): the per-tile
         * epilogue, swapped tiles transposed in registers, a short last
         * tile over two K blocks */
        {1, 32, 3, 132, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "relu", 0, 0},
        {2, 32, 2, 136, 48, 3, 3, 1, 1, 1, 1, 1, 1, 1, false, "residual", 0, 0},
    };
    run_taps_suite("taps.kiln", taps, (int)(sizeof taps / sizeof taps[0]), fast_devices);
    /* rows of a multiple of 7 pixels read in place in tiles of 7
     * (conv_taps_tile, kiln.mm.ukernel.tapS.r7vV; those of a multiple of 14
     * in tiles of 14 on AVX-512, taps14 below): 14x14
     * over two K blocks; 7x7 of two images, 48 channels (a corner of 16),
     * one K block; stride 2 to 7x7 over three images; rows of 21 (three
     * tiles); 35-pixel rows over 2100 pixels (column blocks of whole rows,
     * 2030 + 70); 8 images of 14x14 split whole; one 7x7 image of 256
     * channels split by rows in 4 chunks (llvm_kernel_grain); 64 -> 64
     * channels, K = 576 (a weight block over TAPS_L1_BLOCK_BYTES: one
     * panel per row block, two panels, three K blocks); rows of 28, a
     * multiple of 4 and of 14 (two tiles of 14 on AVX-512, not 12 + 12 +
     * 4), with a residual over two images, at stride 2 from rows of 56,
     * and 28x28 over two K blocks (column blocks of whole rows).  Also
     * compiled for AVX2 and SSE, whose narrower micro-kernels end a row of 7
     * in a tile of 1 or 3 (taps_exact_rows) and keep their own tiles for
     * rows of 28 */
    static const ConvCase taps7[] = {
        {1, 32, 14, 14, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "relu", 0, 0},
        {2, 16, 7, 7, 48, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "residual", 0, 0},
        {3, 32, 14, 14, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1, false, "", 0, 0},
        {1, 16, 12, 21, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "clamp", 0, 0},
        {1, 16, 60, 35, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, false, "relu", 0, 0},
        {8, 16, 14, 14, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "relu", 0, 0},
        {1, 16, 7, 7, 256, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "relu", 0, 0},
        {2, 64, 7, 14, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "residual", 0, 0},
        {2, 32, 5, 28, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "residual", 0, 0},
        {1, 16, 9, 56, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1, false, "relu", 0, 0},
        {1, 32, 28, 28, 48, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "relu", 0, 0},
    };
    run_taps_suite("taps7.kiln", taps7, (int)(sizeof taps7 / sizeof taps7[0]), cpu_targets_and_emu);
    /* rows of a multiple of 14 pixels in tiles of 14 on AVX-512
     * (CONV_TAPS_WIDE_TILE, kiln.mm.ukernel.tapS.r14vV; 14x14 and the rows
     * of 28 above too): rows of 56 over three K blocks with a residual
     * (column blocks of whole rows, one panel per row block); the stem's
     * 7x7 stride 2 to rows of 112 (K = 147, one block, 64 channels: two
     * panels a tile; on Zen 5 one panel a row block, its 37.6 KB block
     * over TAPS_L1_BLOCK_BYTES_ZEN5); a 7x7 stride 2 over 4 channels to
     * rows of 28, 48 output channels (K = 196: a block of 37.6 KB too, its
     * second panel a corner of 16) with a residual over two images; stride
     * 2 to rows of 28 over two images; 16 output channels (.r14v1); and
     * rows of 42 (three tiles) split by rows between the threads.  AVX2
     * and SSE keep their own tiles.  On Zen 5 the stride-2 ones over at most
     * 4 channels to rows of a multiple of 16 run the direct form
     * (stem_direct): the stem above (rows of 7 vectors: tiles of 3, 2 and
     * 2), and below rows of 2 vectors over 4 channels to 48 (groups of 8
     * across two panels) with a residual over two images, rows of 4 vectors
     * (2 + 2) over three images, and rows of one vector (a tile of 1). */
    static const ConvCase taps14[] = {
        {1, 64, 4, 56, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "residual", 0, 0},
        {1, 3, 9, 224, 64, 7, 7, 2, 2, 3, 3, 1, 1, 1, true, "relu", 0, 0},
        {2, 4, 11, 56, 48, 7, 7, 2, 2, 3, 3, 1, 1, 1, false, "residual", 0, 0},
        {2, 16, 6, 56, 32, 3, 3, 2, 2, 1, 1, 1, 1, 1, false, "relu", 0, 0},
        {1, 16, 5, 14, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "clamp", 0, 0},
        {1, 32, 9, 42, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "relu", 0, 0},
        {2, 4, 12, 64, 48, 7, 7, 2, 2, 3, 3, 1, 1, 1, false, "residual", 0, 0},
        {3, 3, 10, 128, 16, 7, 7, 2, 2, 3, 3, 1, 1, 1, true, "relu", 0, 0},
        {1, 3, 21, 32, 32, 7, 7, 2, 2, 3, 3, 1, 1, 1, false, "clamp", 0, 0},
    };
    run_taps_suite("taps14.kiln", taps14, (int)(sizeof taps14 / sizeof taps14[0]), cpu_targets_and_emu);
    /* the direct form: depthwise and few channels per group */
    static const ConvCase direct[] = {
        {1, 32, 14, 14, 32, 3, 3, 1, 1, 1, 1, 1, 1, 32, true, "clamp", 0, 0}, /* MobileNet depthwise */
        {2, 24, 15, 13, 24, 3, 3, 2, 2, 1, 1, 1, 1, 24, false, "relu", 0, 0}, /* depthwise, stride 2 */
        {1, 16, 9, 40, 32, 5, 5, 1, 1, 2, 2, 1, 1, 16, true, "", 0, 0},       /* channel multiplier 2 */
        {2, 12, 11, 12, 12, 3, 3, 1, 2, 2, 2, 2, 2, 12, false, "silu", 0, 0}, /* dilated, strided w */
        {1, 16, 8, 9, 16, 3, 3, 1, 1, 0, 1, 1, 1, 4, true, "residual", 0, 0}, /* 4 channels per group */
        {1, 8, 7, 7, 8, 7, 7, 1, 1, 3, 3, 1, 1, 8, false, "", 0, 0},          /* window as big as the input */
        {3, 6, 10, 10, 6, 3, 3, 2, 2, 0, 0, 1, 1, 6, false, "relu", 1, 1},    /* asymmetric padding */
        {1, 4, 5, 70, 8, 1, 3, 1, 3, 0, 0, 1, 1, 4, false, "", 0, 2},         /* stride 3 */
        /* stride 2 on small planes: de-interleaved into phase planes */
        {1, 16, 13, 13, 16, 3, 3, 2, 2, 1, 1, 1, 1, 16, true, "clamp", 0, 0}, /* MobileNet's 7x7, odd input */
        {2, 8, 14, 14, 16, 3, 3, 2, 2, 1, 1, 1, 1, 8, false, "relu", 0, 0},   /* channel multiplier 2 */
        {1, 12, 9, 29, 12, 5, 5, 2, 2, 2, 2, 1, 1, 12, true, "", 0, 0}, /* 5x5, taps two phase rows out */
        {1, 8, 12, 12, 8, 3, 3, 2, 2, 2, 2, 2, 2, 8, false, "", 0, 0},  /* dilated */
        {1, 8, 14, 14, 8, 3, 3, 2, 2, 0, 0, 1, 1, 8, true, "residual", 1, 1}, /* "SAME": padding at the end */
        /* stride 1 on planes of more than 16 vectors: the padded plane, a
         * loop over its vectors, 4 at a time and the rest one by one */
        {1, 24, 23, 23, 24, 3, 3, 1, 1, 1, 1, 1, 1, 24, true, "clamp", 0, 0}, /* 34 vectors */
        {1, 8, 18, 18, 8, 7, 7, 1, 1, 3, 3, 1, 1, 8, false, "", 0, 0},        /* 7x7 window */
        {1, 8, 20, 21, 16, 5, 5, 1, 1, 4, 4, 2, 2, 8, false, "relu", 0, 0},   /* 5x5 dilated, multiplier 2 */
        {2, 16, 19, 19, 16, 3, 3, 1, 1, 1, 1, 1, 1, 4, true, "residual", 0, 0}, /* 4 channels per group */
    };
    text = conv_program(direct, (int)(sizeof direct / sizeof direct[0]));
    run_suite("depthwise.kiln", text, (int)(sizeof direct / sizeof direct[0]));
    free(text);
    /* output rows of at most two vectors in the row form, four rows at a
     * time (two on znver5: direct_row_groups; each CPU form where the host
     * runs them), input rows shared between them:
     * MobileNetV2's stride-2 56x56 -> 28x28 (49 vectors a plane: not in
     * phase planes; blocks of 12 rows, 28 = 12 + 12 + 4), 25-pixel rows
     * over two images (25 = 12 + 12 + 1: the last group computing 3 rows
     * past the plane), 32-pixel rows at stride 1 (whole vectors: not the
     * flat plane; 12 = 12); on AVX2 and SSE (8 and 4 floats a vector) the
     * first three keep single rows, so rows of 8 and 16 pixels on tall
     * planes (too large for the flat plane) run the row groups there too */
    static const ConvCase direct_rows[] = {
        {1, 24, 56, 56, 24, 3, 3, 2, 2, 1, 1, 1, 1, 24, true, "clamp", 0, 0},
        {2, 8, 50, 50, 8, 3, 3, 2, 2, 1, 1, 1, 1, 8, false, "relu", 0, 0},
        {1, 8, 12, 32, 8, 3, 3, 1, 1, 1, 1, 1, 1, 8, true, "residual", 0, 0},
        {1, 4, 140, 8, 4, 3, 3, 1, 1, 1, 1, 1, 1, 4, true, "relu", 0, 0},
        {1, 4, 80, 16, 4, 3, 3, 1, 1, 1, 1, 1, 1, 4, false, "", 0, 0},
        /* planes of 3 output rows (dilation 2; stride 3): on znver5 one
         * group of two rows, then a group computing a row past the plane */
        {2, 6, 7, 12, 6, 3, 3, 1, 1, 0, 1, 2, 2, 6, false, "relu", 0, 0},
        {2, 4, 9, 40, 4, 3, 3, 3, 3, 1, 1, 1, 1, 4, true, "", 0, 0},
    };
    text = conv_program(direct_rows, (int)(sizeof direct_rows / sizeof direct_rows[0]));
    const char **row_devices = with_cpu_forms("depthwise-rows.kiln", cpu_targets_and_emu);
    run_suite_on("depthwise-rows.kiln", text, (int)(sizeof direct_rows / sizeof direct_rows[0]), row_devices);
    free(row_devices);
    free(text);
    /* stride-2 depthwise rows of at most four vectors de-interleaved in
     * registers (stride 1: rows in registers), two rows at a time (znver5:
     * direct_s2_row_groups; the
     * other CPUs' row forms): MobileNetV2's 112x112 -> 56x56 (four
     * vectors, the last half full), 64-pixel rows (four whole vectors),
     * a 33-pixel input row under 16 outputs (the taps of kw = 2 read the
     * next vector's first column), a channel multiplier, padding 2 (both
     * taps left of the column shifted), a 2x2 window without padding,
     * "SAME" padding at the end with a residual, odd planes over three
     * images (a group computing a row past the plane), one output row
     * (the row form) */
    static const ConvCase s2_rows[] = {
        {1, 8, 112, 112, 8, 3, 3, 2, 2, 1, 1, 1, 1, 8, true, "clamp", 0, 0},
        {1, 2, 10, 128, 2, 3, 3, 2, 2, 1, 1, 1, 1, 2, true, "", 0, 0},
        {2, 4, 9, 33, 4, 3, 3, 2, 2, 0, 0, 1, 1, 4, false, "relu", 0, 0},
        {1, 8, 40, 40, 16, 3, 3, 2, 2, 1, 1, 1, 1, 8, true, "", 0, 0},
        {1, 4, 36, 36, 4, 3, 3, 2, 2, 2, 2, 1, 1, 4, false, "relu", 0, 0},
        {1, 4, 50, 50, 4, 2, 2, 2, 2, 0, 0, 1, 1, 4, true, "", 0, 0},
        {1, 6, 40, 40, 6, 3, 3, 2, 2, 0, 0, 1, 1, 6, true, "residual", 1, 1},
        {3, 4, 45, 45, 4, 3, 3, 2, 2, 1, 1, 1, 1, 4, false, "clamp", 0, 0},
        {1, 4, 2, 60, 4, 3, 3, 2, 2, 1, 1, 1, 1, 4, true, "relu", 0, 0},
        /* stride 1 (znver5: the same form, one phase): MobileNetV2's 56x56
         * over two images, 64-pixel rows, a 2x2 window (a tap a lane on),
         * padding 2 (two lanes back), a channel multiplier with a residual */
        {2, 6, 56, 56, 6, 3, 3, 1, 1, 1, 1, 1, 1, 6, true, "clamp", 0, 0},
        {1, 3, 20, 64, 3, 3, 3, 1, 1, 1, 1, 1, 1, 3, false, "relu", 0, 0},
        {1, 4, 41, 41, 4, 2, 2, 1, 1, 0, 0, 1, 1, 4, true, "", 0, 0},
        {1, 4, 38, 38, 4, 3, 3, 1, 1, 2, 2, 1, 1, 4, false, "relu", 0, 0},
        {1, 4, 40, 40, 8, 3, 3, 1, 1, 1, 1, 1, 1, 4, true, "residual", 0, 0},
    };
    text = conv_program(s2_rows, (int)(sizeof s2_rows / sizeof s2_rows[0]));
    const char **s2_devices = with_cpu_forms("depthwise-s2rows.kiln", cpu_targets_and_emu);
    run_suite_on("depthwise-s2rows.kiln", text, (int)(sizeof s2_rows / sizeof s2_rows[0]), s2_devices);
    free(s2_devices);
    free(text);
}

/* ---------------------------------------------------- outputs in place */

/* How many kernels of text's graph (after the passes) store a temporary in
 * the arena bytes of a temporary they read: outputs written in place of
 * their residual (passes/fuse.c, in_place_roots). */
static int count_in_place(const char *name, const char *text) {
    Arena *arena = arena_new();
    IRGraph *g, *o;
    KProgram *p = fuse_text(arena, name, text, false, &g, &o);
    int n = 0;
    for (int ki = 0; p && ki < p->kernels.len; ki++) {
        const Kernel *k = &p->kernels.data[ki];
        const KStage *m = &k->stages.data[k->stages.len - 1];
        for (int s = 0; s < m->stores.len; s++) {
            const KBuf *b = &p->bufs.data[m->stores.data[s].buf];
            bool shares = false;
            for (int i = 0; i < k->insts.len; i++) {
                const KInst *in = &k->insts.data[i];
                const KBuf *c = in->kind == KI_LOAD ? &p->bufs.data[in->buf] : NULL;
                shares = shares ||
                         (c && c != b && c->kind == KB_TEMP && b->kind == KB_TEMP && c->offset == b->offset);
            }
            n += shares;
        }
    }
    fused_free(arena, p, g, o);
    return n;
}

/* ResNet-like blocks: each block's output c, u takes the place of its
 * residual a, c (the chain shares one buffer); p2 takes m1's place after a
 * product; the last block reads its residual v as a convolution's input
 * too, and its output is a result (neither in place); every backend against
 * the reference. */
static void test_in_place(void) {
    static const char text[] =
        "graph blocks(x: f32[2, 16, 12, 12], w1: f32[16, 16, 3, 3], w2: f32[16, 16, 3, 3], "
        "w3: f32[16, 16, 1, 1], b3: f32[16], xm: f32[40, 32], w5: f32[32, 32], w6: f32[32, 32], "
        "w7: f32[32, 32]) -> (f32[2, 16, 12, 12], f32[40, 32]) {\n"
        "    a = relu(conv2d(x, w1, padding=1))\n"
        "    b = relu(conv2d(a, w2, padding=1))\n"
        "    c = relu(conv2d(b, w3, b3) + a)\n"
        "    t = relu(conv2d(c, w2, padding=1))\n"
        "    u = relu(conv2d(t, w3, b3) + c)\n"
        "    v = relu(conv2d(u, w1, padding=1))\n"
        "    y = relu(conv2d(v, w2, padding=1) + v)\n"
        "    m1 = relu(xm @ w5)\n"
        "    q = relu(m1 @ w6)\n"
        "    p2 = relu(q @ w7 + m1)\n"
        "    return y * 0.5, p2 @ w5\n"
        "}\n";
    int n = count_in_place("inplace.kiln", text);
    CHECK(n == 3, "inplace.kiln: %d kernels store in place of their residual, want 3", n);
    run_suite_cpu_forms("inplace.kiln", text, 0, NULL);
}

/* ------------------------------------------------------- sized units */

/* Compiles graph 0 of text on the cpu: `kernels` kernels in `units` units. */
static void check_units(const char *name, const char *text, int kernels, int units) {
    Arena *arena = arena_new();
    IRGraph *g = build_graph(arena, name, text), *o = NULL;
    char err[2048] = "";
    PassOptions po = {.opt_level = 2};
    if (g) passes_run(arena, g, &po, &o, err, sizeof err);
    CompileStats st = {0};
    CompileOptions copt = {.opt_level = 2, .stats = &st};
    Executable *exe = o ? exec_compile(backend_lookup("cpu"), o, &copt, err, sizeof err) : NULL;
    CHECK(exe != NULL, "%s on cpu: compile: %s", name, err);
    CHECK(st.kernels == kernels && st.distinct == units, "%s: %d kernels in %d units, want %d in %d", name,
          st.kernels, st.distinct, kernels, units);
    if (exe) exec_destroy(exe);
    if (o && o != g) ir_graph_destroy(o);
    if (g) ir_graph_destroy(g);
    arena_free(arena);
}

/* Products that differ only in their sizes share one unit of code on the
 * cpu (codegen/llvm.h llvm_kernel_sizes: their sizes read from the kernel's
 * values): two matmuls with bias and relu (K 130 and 300: one and two K
 * blocks); three 1x1 convolutions with bias and clamp, yi's output of
 * 2.4 MB prefetched for writing (the values' count of prefetched operands),
 * split by rows and by columns; two 3x3 convolutions (K 144 and 288, rows
 * of 10 and 7 pixels, 24 channels: gathered by im2col, not read in place
 * through taps, llvm_conv_taps); two short 1x1 ones (K 32 and 48: the
 * unit's own nest, the epilogue inline); two of two images (K 144 and 160),
 * whose bias channel (o / P) % OC divides by OC, a value (a magic number:
 * llvm_div_magic).  Each group of other M, N, K, strides and window: five
 * units for eleven kernels; then every result
 * against the reference on cpu and cuda-emu (kir would take seconds on
 * yi), with the weights constant too (packed once instead of gathered). */
static void test_sized_units(void) {
    static const char text[] =
        "graph sized(xa: f32[20, 130], wa: f32[130, 70], ba: f32[70], xb: f32[30, 300], wb: f32[300, 90], "
        "bb: f32[90], xc: f32[1, 128, 9, 9], wc: f32[40, 128, 1, 1], bc: f32[40], xd: f32[1, 160, 6, 7], "
        "wd: f32[24, 160, 1, 1], bd: f32[24], xe: f32[1, 16, 10, 10], we: f32[24, 16, 3, 3], "
        "xf: f32[1, 32, 7, 7], wf: f32[24, 32, 3, 3], xg: f32[1, 32, 10, 10], wg: f32[24, 32, 1, 1], "
        "bg: f32[24], xh: f32[1, 48, 8, 8], wh: f32[16, 48, 1, 1], bh: f32[16], xi: f32[1, 128, 48, 48], "
        "wi: f32[256, 128, 1, 1], bi: f32[256], xj: f32[2, 144, 5, 6], wj: f32[40, 144, 1, 1], bj: f32[40], "
        "xk: f32[2, 160, 7, 4], wk: f32[24, 160, 1, 1], bk: f32[24]) -> (f32[20, 70], f32[30, 90], "
        "f32[1, 40, 9, 9], f32[1, 24, 6, 7], f32[1, 24, 10, 10], f32[1, 24, 7, 7], f32[1, 24, 10, 10], "
        "f32[1, 16, 8, 8], f32[1, 256, 48, 48], f32[2, 40, 5, 6], f32[2, 24, 7, 4]) {\n"
        "    return relu(xa @ wa + ba), relu(xb @ wb + bb), clamp(conv2d(xc, wc, bc), 0.0, 6.0), "
        "clamp(conv2d(xd, wd, bd), 0.0, 6.0), relu(conv2d(xe, we, padding=1)), relu(conv2d(xf, wf, "
        "padding=1)), "
        "clamp(conv2d(xg, wg, bg), 0.0, 6.0), clamp(conv2d(xh, wh, bh), 0.0, 6.0), "
        "clamp(conv2d(xi, wi, bi), 0.0, 6.0), relu(conv2d(xj, wj, bj)), relu(conv2d(xk, wk, bk))\n"
        "}\n";
    check_units("sized.kiln", text, 11, 5);
    static const char *const devices[] = {"cpu", "cuda-emu", NULL};
    run_suite_on("sized.kiln", text, 0, devices);
}

/* Direct-form kernels (depthwise convolutions, pools) that differ only in
 * their channels and batch share one unit on the cpu (DirectGeo's sizes
 * from the kernel's values; the plane's geometry is the form): per form a
 * pair of other channel counts (24 and 40 at 14x14, the unrolled plane; 16
 * and 32 at 28x28, the padded plane; 8 and 16 at 40x40, by rows; 16 and 24
 * at stride 2, the phase planes; two max pools), the 14x14 pair at two
 * images too (bias channel (o / P) % OC by a magic number), the first with a
 * channel multiplier of 2 (48 outputs from 24 channels: its own form) and
 * one of two channels per group (its own).  15 kernels in 9 units, then
 * every result against the reference on cpu, kir and cuda-emu. */
static void test_sized_direct(void) {
    static const char text[] =
        "graph sdirect(xa: f32[1, 24, 14, 14], wa: f32[24, 1, 3, 3], ba: f32[24], xb: f32[1, 40, 14, 14], "
        "wb: f32[40, 1, 3, 3], bb: f32[40], xc: f32[2, 24, 14, 14], xd: f32[2, 40, 14, 14], "
        "xe: f32[1, 16, 28, 28], we: f32[16, 1, 3, 3], be: f32[16], xf: f32[1, 32, 28, 28], "
        "wf: f32[32, 1, 3, 3], bf: f32[32], xg: f32[1, 8, 40, 40], wg: f32[8, 1, 3, 3], bg: f32[8], "
        "xh: f32[1, 16, 40, 40], wh: f32[16, 1, 3, 3], bh: f32[16], xi: f32[1, 16, 14, 14], "
        "wi: f32[16, 1, 3, 3], bi: f32[16], xj: f32[1, 24, 14, 14], xk: f32[1, 8, 20, 20], "
        "xl: f32[1, 16, 20, 20], wm: f32[48, 1, 3, 3], bm: f32[48], wn: f32[24, 2, 3, 3]) "
        "-> (f32[1, 24, 14, 14], f32[1, 40, 14, 14], f32[2, 24, 14, 14], f32[2, 40, 14, 14], "
        "f32[1, 16, 28, 28], f32[1, 32, 28, 28], f32[1, 8, 40, 40], f32[1, 16, 40, 40], f32[1, 16, 7, 7], "
        "f32[1, 24, 7, 7], f32[1, 8, 10, 10], f32[1, 16, 10, 10], f32[1, 48, 14, 14], "
        "f32[1, 24, 14, 14], f32[2, 24, 14, 14]) {\n"
        "    return clamp(conv2d(xa, wa, ba, padding=1, groups=24), 0.0, 6.0), "
        "clamp(conv2d(xb, wb, bb, padding=1, groups=40), 0.0, 6.0), "
        "clamp(conv2d(xc, wa, ba, padding=1, groups=24), 0.0, 6.0), "
        "clamp(conv2d(xd, wb, bb, padding=1, groups=40), 0.0, 6.0), "
        "relu(conv2d(xe, we, be, padding=1, groups=16)), relu(conv2d(xf, wf, bf, padding=1, groups=32)), "
        "conv2d(xg, wg, bg, padding=1, groups=8), conv2d(xh, wh, bh, padding=1, groups=16), "
        "clamp(conv2d(xi, wi, bi, stride=2, padding=1, groups=16), 0.0, 6.0), "
        "clamp(conv2d(xj, wa, ba, stride=2, padding=1, groups=24), 0.0, 6.0), "
        "maxpool2d(xk, 3, stride=2, padding=1), maxpool2d(xl, 3, stride=2, padding=1), "
        "clamp(conv2d(xa, wm, bm, padding=1, groups=24), 0.0, 6.0), "
        "conv2d(xa, wn, padding=1, groups=12), clamp(conv2d(xc, wa, ba, padding=1, groups=24), 0.0, 6.0)\n"
        "}\n";
    check_units("sdirect.kiln", text, 15, 9);
    run_suite("sdirect.kiln", text, 0);
}

/* Thin products (GEMV: fewer than 4 rows) of other sizes share one unit on
 * the cpu (M, N, K and strides from the kernel's values): a classifier
 * head of three rows (K 300 into 40) and one of two rows (K 522, not a
 * multiple of 4: the rest of K one at a time, into 100), both with bias
 * and relu (one row is a form of its own: its bias index is o, not
 * o % N); then both results against the reference. */
static void test_sized_gemv(void) {
    static const char text[] =
        "graph sgemv(xa: f32[3, 300], wa: f32[300, 40], ba: f32[40], xb: f32[2, 522], wb: f32[522, 100], "
        "bb: f32[100]) -> (f32[3, 40], f32[2, 100]) {\n"
        "    return relu(xa @ wa + ba), relu(xb @ wb + bb)\n"
        "}\n";
    check_units("sgemv.kiln", text, 2, 1);
    run_suite("sgemv.kiln", text, 0);
}

/* Shapes session 7's review ran against the reference by hand, kept:
 * convolutions read in place through taps whose column blocks end
 * mid-row (60-pixel rows, 48 channels, a residual), batch 2 at 52-pixel
 * rows, stride 2 with 260-pixel output rows (the per-tile epilogue), rows
 * of 128 and 132 pixels, batch 3, stride [2, 1], dilation 2 with padding on
 * one side; a swapped half-width corner (72 channels at 7x7) and a
 * non-swapped one-row corner (M = 25); a bf16 GEMV over more than one
 * 1024-column block, the 2048x1000 classifier, a 3-row GEMV with K = 1030;
 * grouped direct convolutions; a pool whose stack rows would have been
 * megabytes (codegen/llvm.c POOL_ROWS_BLOCK_FLOATS). */
static void test_review_shapes(void) {
    static const char *const devices[] = {"cpu", "cuda-emu", NULL};
    static const char *const texts[] = {
        /* m48 */
        "graph m48(x: f32[1, 32, 50, 60], w: f32[48, 32, 3, 3], b: f32[48], r: f32[1, 48, 50, 60]) -> "
        "(f32[1, 48, 50, 60]) {\n"
        "    return conv2d(x, w, b, padding=1) + r\n"
        "}\n",
        /* b2 */
        "graph b2(x: f32[2, 32, 48, 52], w: f32[32, 32, 3, 3], b: f32[32]) -> (f32[2, 32, 48, 52]) {\n"
        "    return relu(conv2d(x, w, b, padding=1))\n"
        "}\n",
        /* wide2 */
        "graph wide2(x: f32[1, 32, 9, 520], w: f32[32, 32, 3, 3], b: f32[32]) -> (f32[1, 32, 5, 260]) {\n"
        "    return relu(conv2d(x, w, b, stride=2, padding=1))\n"
        "}\n",
        /* edge */
        "graph edge(x: f32[1, 16, 20, 128], w: f32[16, 16, 3, 3], x2: f32[3, 32, 21, 132], w2: f32[32, 32, "
        "3, 3], b2: f32[32], r2: f32[3, 32, 21, 132], x3: f32[1, 64, 17, 36], w3: f32[16, 64, 3, 3]) -> "
        "(f32[1, 16, 20, 128], f32[3, 32, 21, 132], f32[1, 16, 9, 36]) {\n"
        "    return conv2d(x, w, padding=1), relu(conv2d(x2, w2, b2, padding=1) + r2), clamp(conv2d(x3, w3, "
        "stride=[2, 1], padding=1), 0.0, 6.0)\n"
        "}\n",
        /* dil */
        "graph dil(x: f32[1, 32, 30, 66], w: f32[32, 32, 3, 3], b: f32[32], y: f32[2, 3, 40, 90]) -> (f32[1, "
        "32, 14, 32], f32[2, 3, 20, 45]) {\n"
        "    return relu(conv2d(x, w, b, stride=2, dilation=2, padding=[[1, 0], [0, 1]])), maxpool2d(y, 3, "
        "stride=2, padding=1)\n"
        "}\n",
        /* half */
        "graph half(x: f32[1, 64, 7, 7], w: f32[72, 64, 1, 1], b: f32[72], p: f32[72, 256], q: f32[256, 49]) "
        "-> (f32[1, 72, 7, 7], f32[72, 49]) {\n"
        "    return relu(conv2d(x, w, b)), p @ q\n"
        "}\n",
        /* r1 */
        "graph r1(x: f32[25, 200], w: f32[200, 300], b: f32[300]) -> (f32[25, 300]) {\n"
        "    return relu(x @ w + b)\n"
        "}\n",
        /* gemv */
        "graph gemv(x: bf16[2, 37], w: bf16[37, 1500], b: bf16[1500], y: f32[1, 2048], v: f32[2048, 1000], "
        "c: f32[1000], s: f32[3, 1030], t: f32[1030, 17]) -> (bf16[2, 1500], f32[1, 1000], f32[3, 17]) {\n"
        "    return relu(x @ w + b), y @ v + c, s @ t\n"
        "}\n",
        /* grp */
        "graph grp(x1: f32[1, 8, 20, 20], w1: f32[8, 4, 3, 3], b1: f32[8], x2: f32[1, 12, 20, 20], w2: "
        "f32[12, 4, 3, 3], b2: f32[12], x3: f32[2, 16, 20, 20], w3: f32[16, 8, 3, 3], b3: f32[16]) -> "
        "(f32[1, 8, 20, 20], f32[1, 12, 20, 20], f32[2, 16, 20, 20]) {\n"
        "    return relu(conv2d(x1, w1, b1, padding=1, groups=2)), relu(conv2d(x2, w2, b2, padding=1, "
        "groups=3)), relu(conv2d(x3, w3, b3, padding=1, groups=2))\n"
        "}\n",
        /* a short, wide pool under a tall input: its stack rows capped */
        "graph tallpool(x: f32[1, 1, 256, 2100]) -> (f32[1, 1, 256, 1]) {\n"
        "    return maxpool2d(x, [1, 2100], stride=1)\n"
        "}\n",
    };
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        char name[32];
        snprintf(name, sizeof name, "review%zu.kiln", i);
        run_suite_on(name, texts[i], 0, devices);
    }
}

/* ------------------------------------------------------------- pooling */

static void test_pools(void) {
    run_suite("pools.kiln",
              "graph pools(x0: f32[2, 8, 17, 19], x1: f32[1, 16, 56, 56], x2: f32[2, 3, 10, 11], x3: f16[1, "
              "4, 9, 9], "
              "x4: f32[1, 5, 7, 7], x5: f32[1, 6, 22, 23], x6: f16[1, 3, 17, 17], x7: f16[1, 4, 30, 70]) "
              "-> (f32[2, 8, 8, 9], f32[1, 16, 28, 28], f32[2, 3, 5, 6], f32[2, 3, 10, 11], f32[2, 3, 6, 6], "
              "f16[1, 4, 4, 4], f32[1, 5, 4, 4], f32[1, 5, 2, 3], f32[1, 6, 22, 23], f32[1, 6, 22, 23], "
              "f16[1, 3, 17, 17], f16[1, 4, 15, 35], f16[1, 4, 30, 18]) {\n"
              "    a = maxpool2d(x0, 3, stride=2)\n"
              "    b = maxpool2d(relu(x1), 3, stride=2, padding=1)\n"
              "    c = avgpool2d(x2, 2, ceil_mode=true)\n"
              "    d = avgpool2d(x2, 3, stride=1, padding=1, count_include_pad=false)\n"
              "    e = maxpool2d(x2, [3, 2], stride=2, padding=[[1, 1], [1, 0]], ceil_mode=true)\n"
              "    f = avgpool2d(x3, 2)\n"
              "    g = avgpool2d(x4, 3, stride=2, padding=1) * 2.0 + 1.0\n"
              "    h = maxpool2d(x4, [2, 3], stride=[3, 2])\n"
              "    i = maxpool2d(x5, 3, stride=1, padding=1)\n" /* 32 vectors: the padded plane */
              "    j = avgpool2d(x5, 3, stride=1, padding=1, count_include_pad=false)\n"
              "    k = maxpool2d(x6, 3, stride=1, padding=1)\n" /* f16 widened into the padded plane */
              /* wide rows, separably (emit_pool_rows_fn): f16 widened, a
               * 70-column row (4 whole vectors and a tail of 6), padding
               * outside the count, stride 4 and asymmetric padding */
              "    l = avgpool2d(x7, 3, stride=2, padding=1, count_include_pad=false)\n"
              "    m = maxpool2d(x7, [2, 4], stride=[1, 4], padding=[[0, 1], [1, 2]])\n"
              "    return a, b, c, d, e, f, g, h, i, j, k, l, m\n"
              "}\n",
              12);
    /* an input past POOL_ROWS_CACHED_INPUT (8 MiB, codegen/llvm.c): the
     * separable pool prefetches its rows POOL_ROWS_AHEAD output rows ahead,
     * the last plane's past the input's end; f32 and f16 on every cpu target */
    static const char *const big_devices[] = {"cpu", "cpu:x86-64-v3", "cpu:x86-64-v2", NULL};
    run_suite_on("bigpool.kiln",
                 "graph bigpool(x: f32[1, 24, 300, 300], y: f16[1, 47, 300, 300]) -> (f32[1, 24, 150, 150], "
                 "f16[1, 47, 150, 150]) {\n"
                 "    return maxpool2d(x, 3, stride=2, padding=1), maxpool2d(y, 3, stride=2, padding=1)\n"
                 "}\n",
                 0, big_devices);
}

/* Swapped 1x1 layers (fewer than 128 pixels) whose B, the image, is packed
 * in panels of the micro-kernel's width (12 on AVX-512, 12 = 8 + 4 on
 * x86-64-v3): 49 pixels leave a last panel of 1, 100 one of 4 (masked
 * vectors under a mask of the panel's lanes, helper_pack). */
static void test_swapped_pack_edges(void) {
    run_suite_on(
        "swapped_pack.kiln",
        "graph swapped_pack(x: f32[2, 64, 7, 7], w: f32[48, 64, 1, 1], b: f32[48], y: f32[1, 40, 10, "
        "10], v: f32[32, 40, 1, 1]) -> (f32[2, 48, 7, 7], f32[1, 32, 10, 10]) {\n"
        "    return conv2d(x, w, b), relu(conv2d(y, v))\n"
        "}\n",
        0, cpu_targets_and_emu);
}

/* The cpu backend's results of `text` (graph 0, its w* parameters constant
 * and bound) bit for bit the same at 1, 2, 3 and 7 threads and between two
 * runs of one executable: the rows' split (grains, the pool's timed
 * ranges) must not change what is summed.  A Winograd layer's tiles start
 * at its chunk's first row, so its chunks must be whole tile rows
 * (llvm_target_grain: pairs of rows; single rows made ResNet-18's outputs
 * differ in the last bits, the review of session 18). */
static void check_same_bits_across_threads(const char *name, const char *text) {
    static const char *const threads[] = {"1", "2", "3", "7"};
    Arena *arena = arena_new();
    IRGraph *g = build_graph(arena, name, text);
    PassOptions po = {.opt_level = 2};
    IRGraph *o = NULL;
    char err[2048] = "";
    if (g) passes_run(arena, g, &po, &o, err, sizeof err);
    CHECK(!g || o, "%s: passes: %s", name, err);
    if (!o) {
        if (g) ir_graph_destroy(g);
        arena_free(arena);
        return;
    }
    mark_weights_constant(o, true);
    int np = o->params.len, nr = o->results.len;
    KilnTensor *in = random_inputs(o, 1234), *first = NULL;
    CompileOptions copt = {.opt_level = 2};
    for (int t = 0; t < 4; t++) {
        setenv("KILN_THREADS", threads[t], 1);
        Executable *exe = exec_compile(backend_lookup("cpu"), o, &copt, err, sizeof err);
        CHECK(exe != NULL, "%s at %s threads: compile: %s", name, threads[t], err);
        if (!exe) continue;
        CHECK(exec_bind_constants(exe, o, in, err, sizeof err) == KILN_OK, "%s: bind: %s", name, err);
        for (int run = 0; run < 2; run++) {
            KilnTensor *got = xcalloc((size_t)nr + 1, sizeof(KilnTensor));
            bool ran = exec_run(exe, in, got, err, sizeof err) == KILN_OK;
            CHECK(ran, "%s at %s threads: run: %s", name, threads[t], err);
            for (int r = 0; ran && first && r < nr; r++) {
                size_t bytes = (size_t)kiln_tensor_numel(&got[r]) * kiln_dtype_size(got[r].dtype);
                CHECK(memcmp(got[r].data, first[r].data, bytes) == 0,
                      "%s: result %d at %s threads (run %d) differs from 1 thread's in its bits", name, r,
                      threads[t], run + 1);
            }
            if (ran && !first)
                first = got;
            else
                free_results(got, ran ? nr : 0);
        }
        exec_destroy(exe);
    }
    setenv("KILN_THREADS", "2", 1);
    if (first) free_results(first, nr);
    free_results(in, np);
    if (o != g) ir_graph_destroy(o);
    ir_graph_destroy(g);
    arena_free(arena);
}

/* text against the reference at 2, 1 and 3 threads on devices (at 2
 * threads also on the cpu's other forms: run_suite_cpu_forms), then the
 * same bits at 1, 2, 3 and 7 threads (check_same_bits_across_threads). */
static void run_suite_threads_same_bits(const char *name, const char *text, const char *const *devices) {
    static const char *const threads[] = {"2", "1", "3"};
    for (int t = 0; t < 3; t++) {
        setenv("KILN_THREADS", threads[t], 1);
        if (t == 0)
            run_suite_cpu_forms(name, text, 0, devices);
        else
            run_suite_on(name, text, 0, devices);
    }
    setenv("KILN_THREADS", "2", 1);
    check_same_bits_across_threads(name, text);
}

/* 3x3 stride-1 convolutions of 64 input channels or more with constant
 * weights run Winograd F(2x2,3x3) on AMD Zen 5 (conv_wino in
 * codegen/llvm.c; the plain "cpu" device on such a host, and cpu:znver5):
 * ResNet's planes (56x56 in rows of 28 tiles, 28x28 two tile rows a
 * block, 14x14 four, 7x7 with its half tiles; U of 3 MiB at 8 images:
 * U over 4 MiB, the rule's batch >= 8 branch, only in the models' tests),
 * odd heights and widths of
 * half tiles, padding 0 and asymmetric padding, corners of 4 and 8 output
 * channels, bias, relu, a residual, 1 to 8 images, on 1, 2 and 3
 * threads (chunks of odd rows: tiles from any row).  Against the
 * reference with the suite's tolerance (1e-4 relative + 1e-4 of the
 * result's largest magnitude); the weights bound and not bound
 * (check_constant_weights); also compiled for the other CPU forms; the
 * same bits at 1, 2, 3 and 7 threads (check_same_bits_across_threads). */
/* (TEST_KERNELS_ONLY=winograd runs this suite alone) */
static void test_winograd(void) {
    static const ConvCase cases[] = {
        {1, 64, 56, 56, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "relu", 0, 0},
        {2, 128, 28, 28, 128, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "residual", 0, 0},
        {1, 256, 14, 14, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, false, "", 0, 0},
        {8, 192, 7, 7, 256, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "residual", 0, 0},
        {3, 96, 7, 7, 80, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "relu", 0, 0},
        {2, 64, 5, 8, 48, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "residual", 0, 0},
        {1, 64, 16, 16, 32, 3, 3, 1, 1, 0, 0, 1, 1, 1, true, "", 0, 0},
        {1, 64, 13, 28, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, false, "relu", -1, 0},
        {8, 64, 12, 12, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "residual", 0, 0},
        {1, 72, 30, 64, 16, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "relu", 0, 0},
        {1, 64, 9, 12, 112, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "residual", 0, 0},
    };
    static const char *const devices[] = {"cpu", "cuda-emu", NULL};
    char *text = conv_program(cases, (int)(sizeof cases / sizeof cases[0]));
    int in_place = count_conv_taps("winograd.kiln", text);
    CHECK(in_place == (int)(sizeof cases / sizeof cases[0]), "winograd.kiln: %d convolutions read in place",
          in_place);
    /* every case reaches the form: on AMD Zen 5 (by name, on any host), and
     * on the host itself where it is one (the suite then runs the form) */
    int wino = count_conv_wino("winograd.kiln", text, "znver5");
    CHECK(wino == (int)(sizeof cases / sizeof cases[0]),
          "winograd.kiln: %d convolutions run Winograd on znver5", wino);
    char *host = llvm_host_identity();
    if (host && strstr(host, " znver5 ")) {
        wino = count_conv_wino("winograd.kiln", text, host);
        CHECK(wino == (int)(sizeof cases / sizeof cases[0]),
              "winograd.kiln: %d convolutions run Winograd on this host (znver5)", wino);
    }
    free(host);
    run_suite_threads_same_bits("winograd.kiln", text, devices);
    free(text);
}

/* The kernels' split over 3 threads (runtime/cpu.c: each thread owns a
 * third of every kernel's grains, tp_run_ranges), on cpu against the
 * reference: a 14x14 image swapped in chunks of 12 pixels (17 grains: 5, 6
 * and 6 a thread), 13 output rows of 56 px read in place (whole rows), 256
 * rows of a 7x7 product split by rows (each thread gathers B), 3 images at
 * stride 2, a one-row output, a depthwise layer (whole planes) and a
 * classifier's GEMV (runs of 64 columns); read in place: 14 rows of 14 px
 * split by columns in grains of 3 rows (5 grains: 1, 2 and 2 a thread), 13
 * rows of 20 px in grains of 2 rows (7: 2, 2 and 3), and a 14x14 image with
 * 128 output channels split by rows in quarters (TAPS_ROWS_MAX_PIXELS: 1, 1
 * and 2 a thread); a 1x1 260->256 at 14x14 (packed_pointwise_columns:
 * swapped, 17 grains of 12 pixels, each thread packing its own); a 1x1
 * layer of 8 images, 20 rows by 192 px, split by whole images
 * (pointwise_images: 3, 3 and 2 a thread); a product of two activations
 * whose nest packs B in every chunk, in chunks of 96 rows. */
static void test_three_threads(void) {
    static const ConvCase cases[] = {
        {1, 40, 14, 14, 64, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "residual", 0, 0},
        {1, 32, 13, 56, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "relu", 0, 0},
        {1, 32, 7, 7, 256, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "relu", 0, 0},
        {3, 16, 9, 9, 24, 3, 3, 2, 2, 1, 1, 1, 1, 1, false, "", 0, 0},
        {1, 32, 1, 64, 48, 1, 3, 1, 1, 0, 1, 1, 1, 1, true, "clamp", 0, 0},
        {1, 24, 14, 14, 24, 3, 3, 1, 1, 1, 1, 1, 1, 24, true, "clamp", 0, 0},
        {1, 32, 14, 14, 32, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "residual", 0, 0},
        {1, 32, 13, 20, 48, 3, 3, 1, 1, 1, 1, 1, 1, 1, false, "relu", 0, 0},
        {1, 32, 14, 14, 128, 3, 3, 1, 1, 1, 1, 1, 1, 1, true, "relu", 0, 0},
        {1, 260, 14, 14, 256, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "residual", 0, 0},
        {8, 32, 12, 16, 20, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "relu", 0, 0},
    };
    static const char *const cpu_only[] = {"cpu", NULL};
    setenv("KILN_THREADS", "3", 1);
    char *text = conv_program(cases, (int)(sizeof cases / sizeof cases[0]));
    run_suite_on("threads3.kiln", text, 0, cpu_only);
    free(text);
    run_suite_on("threads3-gemv.kiln",
                 "graph head(x: f32[1, 640], w: f32[640, 1000], b: f32[1000]) -> (f32[1, 1000]) {\n"
                 "    return x @ w + b\n}\n",
                 0, cpu_only);
    /* two activations, B packed in every chunk (b_packed_per_chunk): 288 rows
     * of each batch in chunks of 96 (2 a thread), each chunk's partial sums
     * laid out by its own rows (cacc_panels) */
    run_suite_on("threads3-packed-b.kiln",
                 "graph pp(x: f32[2, 288, 300], y: f32[2, 300, 130]) -> (f32[2, 288, 130]) {\n"
                 "    return x @ y\n}\n",
                 0, cpu_only);
    setenv("KILN_THREADS", "2", 1);
}

/* The residual epilogue's prefetch on Zen 5 (codegen/llvm.c small_reads):
 * a sized product whose epilogue reads an operand at o (a residual) smaller
 * than 2 MiB prefetches none of it there (its values' count of prefetched
 * operands 0, the same code), a larger one does as on the other CPUs.
 * Three small residuals: 1x1 130->260 at 14x14 (K one block, B packed: its
 * 784-byte rows; 260 = 21 x 12 + 8 rows, 196 = 6 x 32 + 4 columns),
 * 128->100 at 28x28 (B in place, 100 = 8 x 12 + 4 rows), 512->140 at 7x7
 * (swapped: 140 = 4 x 32 + 12 channels, 49 = 4 x 12 + 1 pixels); one large,
 * 128->232 at 48x48 (2.1 MB, prefetched).  Their values for znver5 and
 * znver4 differ in that one slot for the small ones, in none for the large
 * one; every result against the reference on the cpu forms, at 1 and 2
 * threads. */
static void test_residual_prefetch(void) {
    static const ConvCase cases[] = {
        {1, 130, 14, 14, 260, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "residual", 0, 0},
        {1, 128, 28, 28, 100, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "residual", 0, 0},
        {1, 512, 7, 7, 140, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "residual", 0, 0},
        {1, 128, 48, 48, 232, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "residual", 0, 0},
    };
    static const int want_diff[] = {1, 1, 1, 0};
    const int n = (int)(sizeof cases / sizeof cases[0]);
    char *text = conv_program(cases, n);
    Arena *arena = arena_new();
    IRGraph *g, *o;
    KProgram *p = fuse_text(arena, "residual-pf.kiln", text, true, &g, &o);
    int product = 0;
    for (int ki = 0; p && ki < p->kernels.len; ki++) {
        const Kernel *k = &p->kernels.data[ki];
        KGemm gm;
        if (k->kind != KK_CONV || !kernel_gemm(p, k, &gm)) continue;
        LlvmKernelSizes z5, z4;
        bool s5 = llvm_kernel_sizes(p, ki, "x86_64-unknown-linux-gnu znver5 +avx512f", false, &z5);
        bool s4 = llvm_kernel_sizes(p, ki, "x86_64-unknown-linux-gnu znver4 +avx512f", false, &z4);
        CHECK(s5 && s4 && z5.nvalues == z4.nvalues, "residual-pf.kiln: kernel %d not sized alike", ki);
        int diff = 0;
        for (int i = 0; s5 && s4 && i < z5.nvalues && i < z4.nvalues; i++)
            diff += z5.values[i] != z4.values[i];
        CHECK(product < n && diff == want_diff[product],
              "residual-pf.kiln: product %d: %d values differ on znver5, want %d", product, diff,
              product < n ? want_diff[product] : -1);
        llvm_kernel_sizes_free(&z5), llvm_kernel_sizes_free(&z4);
        product++;
    }
    CHECK(product == n, "residual-pf.kiln: %d products, want %d", product, n);
    fused_free(arena, p, g, o);
    static const char *const cpu_only[] = {"cpu", NULL};
    setenv("KILN_THREADS", "1", 1);
    run_suite_cpu_forms("residual-pf-1t.kiln", text, 0, cpu_only);
    setenv("KILN_THREADS", "2", 1);
    run_suite_cpu_forms("residual-pf-2t.kiln", text, 0, cpu_only);
    free(text);
}

/* Images kept zero-padded between two convolutions read in place
 * (pad_conv_inputs in passes/fuse.c, llvm_conv_keeps_padded): b (one taps
 * consumer, stride 1) and e (read by a stride-2 convolution only: planes
 * of 41 x 41, no row below the image) are; a (also a residual), c (two
 * consumers) and g (a graph output, also read by a convolution) are not.
 * The producers write the borders in every run: the arena's bytes are
 * shared with other temporaries, and the cpu runs each program twice
 * (check_constant_weights) in one arena.  Against the reference on the cpu
 * targets and cuda-emu (which keeps every image plain). */
static void test_padded_images(void) {
    const char *text =
        "graph padded(x: f32[2, 32, 40, 40], w0: f32[32, 32, 3, 3], b0: f32[32], w1: f32[32, 32, 3, 3], "
        "b1: f32[32], w2: f32[32, 32, 3, 3], w3: f32[48, 32, 3, 3], b3: f32[48], w4: f32[32, 32, 3, 3], "
        "w5: f32[32, 32, 3, 3]) -> (f32[2, 48, 20, 20], f32[2, 32, 40, 40], f32[2, 32, 40, 40]) {\n"
        "    a = relu(conv2d(x, w0, b0, padding=1))\n"
        "    b = relu(conv2d(a, w1, b1, padding=1))\n"
        "    c = relu(conv2d(b, w2, padding=1) + a)\n"
        "    e = relu(conv2d(c, w4, padding=1))\n"
        "    f = conv2d(e, w3, b3, padding=1, stride=2)\n"
        "    g = relu(conv2d(c, w5, padding=1))\n"
        "    h = conv2d(g, w1, padding=1)\n"
        "    return f, g, h\n"
        "}\n";
    Arena *arena = arena_new();
    IRGraph *g, *o;
    KProgram *p = fuse_text(arena, "padded.kiln", text, false, &g, &o);
    if (p) kprog_destroy(p);
    char err[2048] = "";
    CompileOptions copt = {.opt_level = 2};
    p = o ? exec_schedule_for(arena, o, &copt, backend_lookup("cpu"), err, sizeof err) : NULL;
    CHECK(p != NULL, "padded.kiln: schedule: %s", err);
    int padded = 0;
    for (int b = 0; p && b < p->bufs.len; b++)
        if (p->bufs.data[b].pad_hw[0]) {
            const KBuf *kb = &p->bufs.data[b];
            padded++;
            CHECK(kb->kind == KB_TEMP && (kb->pad_hw[0] == 42 || kb->pad_hw[0] == 41) && kb->pad_hw[2] == 1 &&
                      kb->pad_hw[3] == 1,
                  "padded.kiln: %s kept padded as %lld x %lld from (%lld, %lld)", kb->name,
                  (long long)kb->pad_hw[0], (long long)kb->pad_hw[1], (long long)kb->pad_hw[2],
                  (long long)kb->pad_hw[3]);
        }
    CHECK(padded == 2, "padded.kiln: %d images kept padded, want 2 (b and e)", padded);
    fused_free(arena, p, g, o);
    run_suite_cpu_forms("padded.kiln", text, 0, cpu_targets_and_emu);
}

/* 1x1 products of constant weights over a B of 2 MiB or more, K = 320,
 * 384 and 512, which on Zen 5 run K in one block of 2 KC (one_k_block:
 * the weights prepacked in blocks of 512, the nest's own, the next
 * block's prefetch), and K = 520 (three blocks of 256) beside them; 40
 * output channels (three panels of 12 and a corner of 4), 4 images of
 * 24x24 (rows of whole lines, B read in place), residual and relu
 * epilogues.  The suite runs its weights as activations (A packed in the
 * nest: the rule keeps off) and constant (check_constant_weights), on 1
 * and 2 threads, on the cpu forms of with_cpu_forms (znver5 among them)
 * and cuda-emu. */
static void test_one_k_block(void) {
    static const ConvCase cases[] = {
        {4, 320, 24, 24, 40, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "residual", 0, 0},
        {4, 384, 24, 24, 40, 1, 1, 1, 1, 0, 0, 1, 1, 1, false, "relu", 0, 0},
        {4, 512, 24, 24, 40, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "residual", 0, 0},
        {4, 520, 24, 24, 40, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "residual", 0, 0},
    };
    static const char *const devices[] = {"cpu", "cuda-emu", NULL};
    const int n = (int)(sizeof cases / sizeof cases[0]);
    char *text = conv_program(cases, n);
    /* the rule fires on znver5 and on nothing else: each product's unit
     * against znver4's (the same code but for the rules gated on the CPU
     * name), K = 320-512: not sized on znver5 (the product's own nest,
     * kernel_sized) and a larger scratch (B packed in blocks of KC 512:
     * 1671296 bytes against 974016), sized on znver4; K = 520, and K = 512
     * over one image (B 1.2 MB, under the 2 MiB of prefetch_next_block):
     * the same on both */
    static const ConvCase small[] = {{1, 512, 24, 24, 40, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "residual", 0, 0}};
    char *small_text = conv_program(small, 1);
    for (int prog = 0; prog < 2; prog++) {
        Arena *arena = arena_new();
        IRGraph *g, *o;
        const char *name = prog ? "convs-one-k-block-b1.kiln" : "convs-one-k-block.kiln";
        KProgram *p = fuse_text(arena, name, prog ? small_text : text, true, &g, &o);
        int product = 0;
        for (int ki = 0; p && ki < p->kernels.len; ki++) {
            const Kernel *k = &p->kernels.data[ki];
            KGemm gm;
            if (k->kind != KK_CONV || !kernel_gemm(p, k, &gm)) continue;
            LlvmKernelSizes z5, z4;
            bool s5 = llvm_kernel_sizes(p, ki, "x86_64-unknown-linux-gnu znver5 +avx512f", false, &z5);
            bool s4 = llvm_kernel_sizes(p, ki, "x86_64-unknown-linux-gnu znver4 +avx512f", false, &z4);
            bool fires = !prog && gm.mm.k > 256 && gm.mm.k <= 512;
            CHECK(
                s4 && (fires ? !s5 && z5.scratch > z4.scratch : s5 && z5.scratch == z4.scratch),
                "%s: product %d (K %lld): znver5 sized %d scratch %lld, znver4 sized %d scratch %lld: one K "
                "block %s",
                name, product, (long long)gm.mm.k, s5, (long long)z5.scratch, s4, (long long)z4.scratch,
                fires ? "not taken on znver5" : "taken where it should not be");
            llvm_kernel_sizes_free(&z5), llvm_kernel_sizes_free(&z4);
            product++;
        }
        CHECK(product == (prog ? 1 : n), "%s: %d products", name, product);
        fused_free(arena, p, g, o);
    }
    free(small_text);
    const char *threads = getenv("KILN_THREADS");
    char *saved = threads ? strdup(threads) : NULL;
    setenv("KILN_THREADS", "1", 1);
    run_suite_cpu_forms("convs-one-k-block-1t.kiln", text, 0, devices);
    setenv("KILN_THREADS", "2", 1);
    run_suite_cpu_forms("convs-one-k-block-2t.kiln", text, 0, devices);
    if (saved)
        setenv("KILN_THREADS", saved, 1);
    else
        unsetenv("KILN_THREADS");
    free(saved);
    free(text);
}

/* Zen 5's packing of B's full panels a k row at a time (codegen/llvm.c
 * Cg.pack_rows, kiln.mm.pack.f32.32): 1x1 layers whose B the nest packs
 * (rows of 784, 392 and 260 bytes: not whole lines; K a block or more; more
 * rows than a row block), with 6, 3 and 2 full panels and a partial one of
 * 4, 2 and 1 columns: 260 rows, K in one block, a residual; 256 rows of 8
 * images (split by images) over two K blocks; 256 rows over two K blocks,
 * 2 images.  The cpu forms (cpu:znver5 among them) against the reference
 * at 1, 2 and 3 threads. */
static void test_pack_rows(void) {
    static const ConvCase cases[] = {
        {3, 256, 14, 14, 260, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "residual", 0, 0},
        {8, 300, 7, 14, 256, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "relu", 0, 0},
        {2, 300, 5, 13, 256, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "residual", 0, 0},
    };
    static const char *const cpu_only[] = {"cpu", NULL};
    char *text = conv_program(cases, (int)(sizeof cases / sizeof cases[0]));
    static const char *const threads[] = {"1", "2", "3"};
    static const char *const names[] = {"pack-rows-1t.kiln", "pack-rows-2t.kiln", "pack-rows-3t.kiln"};
    for (int t = 0; t < 3; t++) {
        setenv("KILN_THREADS", threads[t], 1);
        run_suite_cpu_forms(names[t], text, 0, cpu_only);
    }
    setenv("KILN_THREADS", "2", 1);
    free(text);
}

/* One-row corners and whole rows (Zen 5: Cg.row_chains, Cg.whole_rows_fast
 * in codegen/llvm.c): 1x1 layers at 7x7 run swapped, each image's 49th
 * pixel a tile of one row (.r1vV), which on znver5 sums its k steps in four
 * chains (then the steps past a multiple of four): K = 163 (three steps
 * left) and 130 (two) in one K block, 301 in two (256 + 45); the sized
 * epilogue over whole rows without per-row bounds where the block's rows
 * are all whole (320 channels split by rows) and bounded where a chunk holds
 * part of each row (64 channels, one image: split by its pixels in tiles of
 * 12; two images); a plain product with a last row panel of one row (25
 * output channels at 14x14: 12 + 12 + 1, unswapped); on znver5 the 7x7 products of
 * one image run one panel a row block (Cg.plane_one_panel: kiln.mm.nest.swap1),
 * the two images' one keeps its blocks.  Against the reference
 * on cpu (and its forms), kir and cuda-emu, at 1, 2 and 3 threads; the
 * same bits at 1, 2, 3 and 7 threads (a row that is a tile of one is one in
 * every split). */
static void test_row_corners(void) {
    static const ConvCase cases[] = {
        {1, 163, 7, 7, 320, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "clamp", 0, 0},
        {1, 130, 7, 7, 64, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "relu", 0, 0},
        {2, 301, 7, 7, 64, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "residual", 0, 0},
        {1, 140, 14, 14, 25, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "", 0, 0},
    };
    static const char *const threads[] = {"2", "1", "3"};
    static const char *const cpu_only[] = {"cpu", NULL};
    char *text = conv_program(cases, (int)(sizeof cases / sizeof cases[0]));
    for (int t = 0; t < 3; t++) {
        setenv("KILN_THREADS", threads[t], 1);
        run_suite_cpu_forms("row-corners.kiln", text, 0, t ? cpu_only : NULL);
    }
    setenv("KILN_THREADS", "2", 1);
    check_same_bits_across_threads("row-corners.kiln", text);
    free(text);
}

/* How many products of text's graph (its w* parameters constant) run their
 * ragged last column chunk's rows in two parts on the target `identity`
 * (llvm_ragged_split_rows). */
static int count_ragged_rows(const char *name, const char *text, const char *identity) {
    Arena *arena = arena_new();
    IRGraph *g, *o;
    KProgram *p = fuse_text(arena, name, text, true, &g, &o);
    int n = 0;
    for (int ki = 0; p && ki < p->kernels.len; ki++) {
        KGemm gm;
        const Kernel *k = &p->kernels.data[ki];
        if ((k->kind == KK_MATMUL || k->kind == KK_CONV) && kernel_gemm(p, k, &gm))
            n += llvm_ragged_split_rows(p, &gm, identity) > 0;
    }
    fused_free(arena, p, g, o);
    return n;
}

/* On AMD Zen 5 a product of one image split by columns whose last column
 * chunk is ragged runs that chunk's rows in two parts, one per thread
 * (llvm_ragged_split_rows, runtime/cpu.c's ragged_chunk): MobileNetV2's 1x1
 * projections at 14x14 (196 columns: 6 x 32 + 4; 192->64, 384->64 with a
 * residual, 576->96: rows split at 36 and 48), and 200 columns (6 x 32 + 8)
 * of 40 rows (split at 24, the second part a corner of 4 rows).  On cpu
 * against the reference at 2, 1 and 3 threads (the parts only at 2), also
 * compiled for the other CPU forms; the same bits at 1, 2, 3 and 7 threads
 * (check_same_bits_across_threads).  (TEST_KERNELS_ONLY=ragged-rows) */
static void test_ragged_rows(void) {
    static const ConvCase cases[] = {
        {1, 192, 14, 14, 64, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "", 0, 0},
        {1, 384, 14, 14, 64, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "residual", 0, 0},
        {1, 576, 14, 14, 96, 1, 1, 1, 1, 0, 0, 1, 1, 1, true, "", 0, 0},
        {1, 256, 10, 20, 40, 1, 1, 1, 1, 0, 0, 1, 1, 1, false, "relu", 0, 0},
    };
    const int n = (int)(sizeof cases / sizeof cases[0]);
    static const char *const devices[] = {"cpu", "cuda-emu", NULL};
    char *text = conv_program(cases, n);
    int parts = count_ragged_rows("ragged_rows.kiln", text, "znver5");
    CHECK(parts == n, "ragged_rows.kiln: %d products split their ragged chunk's rows on znver5, want %d",
          parts, n);
    parts = count_ragged_rows("ragged_rows.kiln", text, "znver4");
    CHECK(parts == 0, "ragged_rows.kiln: %d products split their ragged chunk's rows on znver4, want 0",
          parts);
    run_suite_threads_same_bits("ragged_rows.kiln", text, devices);
    free(text);
}

int main(void) {
    setenv("KILN_THREADS", "2", 0); /* at least two threads split every large kernel, whatever the machine */
    /* TEST_KERNELS_ONLY=NAME runs one suite alone */
    static const struct {
        const char *name;
        void (*run)(void);
    } alone[] = {{"winograd", test_winograd},
                 {"row-corners", test_row_corners},
                 {"ragged-rows", test_ragged_rows},
                 {"one-k-block", test_one_k_block}};
    const char *only = getenv("TEST_KERNELS_ONLY");
    for (size_t i = 0; only && i < sizeof alone / sizeof alone[0]; i++)
        if (strcmp(only, alone[i].name) == 0) {
            alone[i].run();
            printf("test_kernels: %d passed, %d failed\n", npass, nfail);
            return nfail ? 1 : 0;
        }
    test_matmuls();
    test_heads();
    test_convolutions();
    test_padded_images();
    test_in_place();
    test_sized_units();
    test_sized_direct();
    test_sized_gemv();
    test_pools();
    test_swapped_pack_edges();
    test_review_shapes();
    test_three_threads();
    test_one_k_block();
    test_residual_prefetch();
    test_winograd();
    test_pack_rows();
    test_row_corners();
    test_ragged_rows();
    printf("test_kernels: %d passed, %d failed\n", npass, nfail);
    return nfail ? 1 : 0;
}
