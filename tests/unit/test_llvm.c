/* test_llvm.c - the CPU code generator on hand-built kernel programs.
 *
 * Each test builds a KProgram with the kernel.h builders, JIT-compiles it
 * (codegen/llvm.c through runtime/cpu_code.c) and compares the results with the reference interpreter
 * (ir/interp.c, through a one-node IRGraph) or with plain C:
 *   - every elementwise op on every dtype it accepts, specials included;
 *   - casts between all dtypes; f16/bf16 load and store rounding (bits);
 *   - each KInst kind: const, outer, inner, acc, guarded load, index ops;
 *   - each reduction (sum, prod, max, min, argmax/argmin with ties), a
 *     softmax row kernel (three stages);
 *   - the transcendental approximations against libm in double, with the
 *     error bounds docs/cpu-backend.md states;
 *   - that elementwise and reduction kernels are vectorised (<N x float>);
 *   - tiled matmul (f32, f16, batched with broadcast, K split in blocks,
 *     epilogue, ragged sub-ranges) against a double-precision loop;
 *   - negative index offsets under a load guard (padding), in i32 and i64
 *     index arithmetic;
 *   - the thread pool, and the cpu backend end to end on small graphs
 *     (results that are parameters or other results, bench, -O0).
 * Last line: "test_llvm: N passed, N failed". */
#include "app/app.h"
#include "base/base.h"
#include "codegen/llvm.h"
#include "runtime/cpu_code.h"
#include "runtime/threadpool.h"

#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"
#include "ulp.h"

/* ------------------------------------------------------------ helpers */

typedef struct {
    Arena *arena;
    KProgram *p;
} Prog;

static Prog prog_new(const char *name) {
    Arena *a = arena_new();
    Prog pg = {a, kprog_new(a, name)};
    return pg;
}
static void prog_free(Prog *pg) {
    kprog_destroy(pg->p);
    arena_free(pg->arena);
}

static CpuCode *compile(Prog *pg, char **ir) {
    char err[2048] = "";
    kprog_legalise(pg->p); /* as the executor does before any emitter */
    CpuCodeOptions opt = {NULL, 2, ir};
    CpuCode *j = cpu_code_compile(pg->p, &opt, NULL, err, sizeof err);
    CHECK(j != NULL, "compile %s: %s", pg->p->graph_name, err);
    return j;
}

static uint64_t rng_state = 88172645463325252ull;
static uint64_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}
static double urand(double lo, double hi) { return lo + (hi - lo) * (double)(rnd() >> 11) / 9007199254740992.0; }

static void set_elem(KilnTensor *t, int64_t i, double v) {
    switch (t->dtype) {
    case KILN_F32: ((float *)t->data)[i] = (float)v; break;
    case KILN_F16: ((uint16_t *)t->data)[i] = kiln_f32_to_f16((float)v); break;
    case KILN_BF16: ((uint16_t *)t->data)[i] = kiln_f32_to_bf16((float)v); break;
    case KILN_F64: ((double *)t->data)[i] = v; break;
    case KILN_I32: ((int32_t *)t->data)[i] = (int32_t)v; break;
    case KILN_I64: ((int64_t *)t->data)[i] = (int64_t)v; break;
    case KILN_BOOL: ((uint8_t *)t->data)[i] = v != 0; break;
    default: break;
    }
}
static double get_elem(const KilnTensor *t, int64_t i) {
    switch (t->dtype) {
    case KILN_F32: return ((float *)t->data)[i];
    case KILN_F16: return kiln_f16_to_f32(((uint16_t *)t->data)[i]);
    case KILN_BF16: return kiln_bf16_to_f32(((uint16_t *)t->data)[i]);
    case KILN_F64: return ((double *)t->data)[i];
    case KILN_I32: return ((int32_t *)t->data)[i];
    case KILN_I64: return (double)((int64_t *)t->data)[i];
    case KILN_BOOL: return ((uint8_t *)t->data)[i];
    default: return 0;
    }
}

static bool is_float(KilnDType dt) { return dt == KILN_F32 || dt == KILN_F16 || dt == KILN_BF16 || dt == KILN_F64; }

/* Tolerance for comparing a result of dtype dt with the reference. */
static bool close_enough_atol(double got, double want, KilnDType dt, double rtol, double atol) {
    if (isnan(want)) return isnan(got);
    if (isinf(want)) return got == want;
    if (!is_float(dt)) return got == want;
    double tol = rtol;
    if (dt == KILN_F16) tol = fmax(tol, 1.0 / 1024);
    if (dt == KILN_BF16) tol = fmax(tol, 1.0 / 128);
    atol = fmax(atol, dt == KILN_F16 ? 1e-7 : dt == KILN_BF16 ? 1e-30 : 1e-38);
    return fabs(got - want) <= atol + tol * fabs(want);
}
static bool close_enough(double got, double want, KilnDType dt, double rtol) {
    return close_enough_atol(got, want, dt, rtol, 0);
}

/* -------------------------------------- elementwise ops vs the reference */

enum { NELEM = 203 };

/* Deterministic inputs for operand j of op on dtype dt, specials first. */
static void fill_input(KilnTensor *t, Op op, int j, int64_t n) {
    static const double fspecial[] = {0.0, -0.0, 0.5, 1.5, 2.5, -2.5, -0.5, 1.0, -1.0, 3.0, INFINITY, -INFINITY, NAN, 1e-3, 7.25};
    int nsp = (int)(sizeof fspecial / sizeof *fspecial);
    for (int64_t i = 0; i < n; i++) {
        double v;
        if (t->dtype == KILN_BOOL) v = (double)(rnd() & 1);
        else if (!is_float(t->dtype)) {
            v = (double)((int64_t)(rnd() % 41) - 20);
            if (op == OP_POW) v = j == 0 ? (double)((int64_t)(rnd() % 11) - 5) : (double)((int64_t)(rnd() % 8) - 2);
            if (op == OP_MOD && j == 1 && i % 10 == 0) v = i % 20 == 0 ? 0 : -1;
        } else if (i < nsp && op != OP_POW) {
            v = fspecial[(i + j * 5) % nsp];
        } else {
            double range = op == OP_EXP ? 80 : op == OP_LOG || op == OP_SQRT || op == OP_RSQRT ? 0 : 6;
            v = op == OP_LOG || op == OP_SQRT || op == OP_RSQRT ? urand(0, 50) : urand(-range, range);
            if (op == OP_POW) v = j == 0 ? urand(0.01, 4) : urand(-3, 3);
        }
        set_elem(t, i, v);
    }
}

/* Runs op on dtype dt (operands of dtype dt; where: bool, dt, dt) on the
 * reference and on a hand-built kernel; returns the failures. */
static int check_elem_op(Op op, KilnDType dt, bool flag) {
    int fails = 0;
    int arity = op_info[op].arity;
    OpKind kind = op_info[op].kind;
    KilnDType rdt = kind == OK_COMPARE ? KILN_BOOL : dt;
    KilnDType odt[3] = {dt, dt, dt};
    if (kind == OK_WHERE) odt[0] = KILN_BOOL;

    /* the reference */
    Arena *ga = arena_new();
    IRGraph *g = ir_graph_new(ga, "g");
    Dim shape[1] = {NELEM};
    int in[3];
    KilnTensor inputs[3], ref_out[1], jit_out[1];
    memset(inputs, 0, sizeof inputs);
    for (int j = 0; j < arity; j++) {
        in[j] = ir_add_node(g, OP_PARAM, odt[j], 1, shape, 0, NULL, (Loc){0});
        ir_node(g, in[j])->name = j == 0 ? "a" : j == 1 ? "b" : "c";
        VEC_PUSH(g->params, in[j]);
        int64_t sh = NELEM;
        kiln_tensor_init(&inputs[j], odt[j], 1, &sh);
        fill_input(&inputs[j], op, j, NELEM);
    }
    int res = ir_add_node(g, op, rdt, 1, shape, arity, in, (Loc){0});
    ir_node(g, res)->flag = flag;
    VEC_PUSH(g->results, res);
    char err[512] = "";
    bool ok = ref_run(g, inputs, ref_out, err, sizeof err);
    CHECK(ok, "ref_run: %s", err);

    /* the kernel */
    Prog pg = prog_new("elem");
    int bufs[4];
    for (int j = 0; j < arity; j++) bufs[j] = kprog_add_buf(pg.p, KB_INPUT, j, odt[j], NELEM, in[j], "in");
    bufs[3] = kprog_add_buf(pg.p, KB_OUTPUT, 0, rdt, NELEM, res, "out");
    Kernel *k = kprog_add_kernel(pg.p, KK_ELEMENTWISE, "k_elem", NELEM);
    int s = kernel_add_stage(k, KS_MAP, 1);
    int o = kinst(k, KI_OUTER, KILN_I64, -1, -1, -1, -1);
    int ld[3] = {-1, -1, -1};
    for (int j = 0; j < arity; j++) ld[j] = kinst_load(k, bufs[j], odt[j], -1, o, -1);
    int e = kinst_elem(k, op, rdt, -1, ld[0], ld[1], ld[2]);
    k->insts.data[e].flag = flag;
    kstage_store(k, s, bufs[3], o, e);
    CpuCode *jit = compile(&pg, NULL);
    if (jit && ok) {
        int64_t sh = NELEM;
        kiln_tensor_init(&jit_out[0], rdt, 1, &sh);
        void *ptrs[4] = {inputs[0].data, inputs[1].data, inputs[2].data, jit_out[0].data};
        void *bp[4];
        for (int j = 0; j < arity; j++) bp[j] = ptrs[j];
        bp[arity] = jit_out[0].data;
        cpu_code_run_serial(jit, bp);
        double rtol = 4e-7, atol = 0;
        bool transcendental = op == OP_EXP || op == OP_LOG || op == OP_SIN || op == OP_COS || op == OP_TANH ||
                              op == OP_ERF || op == OP_SIGMOID || op == OP_SILU || op == OP_GELU;
        if (transcendental || op == OP_RSQRT || op == OP_MOD) rtol = 1e-6;
        if (transcendental) atol = 1e-12;
        if (dt == KILN_F64) rtol = transcendental ? 1e-13 : 1e-15;
        for (int64_t i = 0; i < NELEM; i++) {
            double got = get_elem(&jit_out[0], i), want = get_elem(&ref_out[0], i);
            double ar = op == OP_MOD ? fabs(get_elem(&inputs[1], i)) * 1e-6 : 0; /* fmod near the divisor */
            if (!close_enough_atol(got, want, rdt, rtol, atol) && !(ar > 0 && fabs(got - want) <= ar)) {
                if (fails < 3)
                    printf("  %s%s %s [%lld]: inputs %.9g %.9g %.9g: got %.9g, reference %.9g\n", op_info[op].name,
                           flag ? "~" : "", kiln_dtype_name(dt), (long long)i, get_elem(&inputs[0], i),
                           arity > 1 ? get_elem(&inputs[1], i) : 0.0, arity > 2 ? get_elem(&inputs[2], i) : 0.0, got,
                           want);
                fails++;
            }
        }
        kiln_tensor_free(&jit_out[0]);
    }
    if (ok) kiln_tensor_free(&ref_out[0]);
    cpu_code_free(jit);
    prog_free(&pg);
    for (int j = 0; j < arity; j++) kiln_tensor_free(&inputs[j]);
    ir_graph_destroy(g);
    arena_free(ga);
    return fails;
}

static void test_elementwise_ops(void) {
    static const KilnDType dts[] = {KILN_F32, KILN_F16, KILN_BF16, KILN_F64, KILN_I32, KILN_I64, KILN_BOOL};
    for (int op = 0; op < OP_COUNT; op++) {
        OpKind kind = op_info[op].kind;
        if (!(kind == OK_UNARY || kind == OK_BINARY || kind == OK_COMPARE || kind == OK_LOGIC || kind == OK_WHERE))
            continue;
        for (size_t d = 0; d < sizeof dts / sizeof *dts; d++) {
            KilnDType dt = dts[d];
            bool fl = is_float(dt);
            if (kind == OK_LOGIC && dt != KILN_BOOL) continue;
            if (kind != OK_LOGIC && kind != OK_COMPARE && kind != OK_WHERE && dt == KILN_BOOL) continue;
            if ((op_info[op].flags & OPF_FLOAT) && !fl) continue;
            if (kind == OK_UNARY && !fl && !(op_info[op].flags & OPF_INT_OK)) continue;
            if (op == OP_DIV && !fl) continue;
            int f = check_elem_op((Op)op, dt, false);
            CHECK(f == 0, "%s on %s: %d mismatches", op_info[op].name, kiln_dtype_name(dt), f);
            if (op == OP_GELU) {
                f = check_elem_op((Op)op, dt, true);
                CHECK(f == 0, "gelu(approximate) on %s: %d mismatches", kiln_dtype_name(dt), f);
            }
        }
    }
}

/* KI_CAST between every pair of dtypes vs the reference's cast. */
static void test_casts(void) {
    static const KilnDType dts[] = {KILN_F32, KILN_F16, KILN_BF16, KILN_F64, KILN_I32, KILN_I64, KILN_BOOL};
    int nd = (int)(sizeof dts / sizeof *dts);
    for (int a = 0; a < nd; a++)
        for (int b = 0; b < nd; b++) {
            KilnDType from = dts[a], to = dts[b];
            Arena *ga = arena_new();
            IRGraph *g = ir_graph_new(ga, "g");
            Dim shape[1] = {NELEM};
            int x = ir_add_node(g, OP_PARAM, from, 1, shape, 0, NULL, (Loc){0});
            ir_node(g, x)->name = "x";
            VEC_PUSH(g->params, x);
            int c = ir_add_node(g, OP_CAST, to, 1, shape, 1, &x, (Loc){0});
            VEC_PUSH(g->results, c);
            KilnTensor in, ref_out, out;
            int64_t sh = NELEM;
            kiln_tensor_init(&in, from, 1, &sh);
            for (int64_t i = 0; i < NELEM; i++) {
                double v = is_float(from) ? urand(-300, 300) : (double)((int64_t)(rnd() % 2001) - 1000);
                if (from == KILN_BOOL) v = (double)(rnd() & 1);
                if (i == 0) v = 0;
                if (i == 1 && is_float(from)) v = NAN;
                if (i == 2 && is_float(from)) v = INFINITY;
                if (i == 3 && is_float(from)) v = 1e10; /* saturates in ints */
                if (i == 4 && is_float(from)) v = -2.5;
                set_elem(&in, i, v);
            }
            char err[256];
            bool ok = ref_run(g, &in, &ref_out, err, sizeof err);
            Prog pg = prog_new("cast");
            int bx = kprog_add_buf(pg.p, KB_INPUT, 0, from, NELEM, x, "x");
            int bo = kprog_add_buf(pg.p, KB_OUTPUT, 0, to, NELEM, c, "out");
            Kernel *k = kprog_add_kernel(pg.p, KK_ELEMENTWISE, "k_cast", NELEM);
            int s = kernel_add_stage(k, KS_MAP, 1);
            int o = kinst(k, KI_OUTER, KILN_I64, -1, -1, -1, -1);
            int l = kinst_load(k, bx, from, -1, o, -1);
            int cv = kinst(k, KI_CAST, to, -1, l, -1, -1);
            kstage_store(k, s, bo, o, cv);
            CpuCode *jit = compile(&pg, NULL);
            int fails = 0;
            if (jit && ok) {
                kiln_tensor_init(&out, to, 1, &sh);
                void *bp[2] = {in.data, out.data};
                cpu_code_run_serial(jit, bp);
                for (int64_t i = 0; i < NELEM; i++) {
                    double got = get_elem(&out, i), want = get_elem(&ref_out, i);
                    /* ints from f64 values past i32 saturate in both; f64->f16 may round twice */
                    if (!close_enough(got, want, to, 1e-7)) {
                        if (fails < 3)
                            printf("  cast %s->%s [%lld] %.9g: got %.9g, reference %.9g\n", kiln_dtype_name(from),
                                   kiln_dtype_name(to), (long long)i, get_elem(&in, i), got, want);
                        fails++;
                    }
                }
                kiln_tensor_free(&out);
            }
            CHECK(ok && jit && fails == 0, "cast %s -> %s: %d mismatches", kiln_dtype_name(from), kiln_dtype_name(to),
                  fails);
            if (ok) kiln_tensor_free(&ref_out);
            kiln_tensor_free(&in);
            cpu_code_free(jit);
            prog_free(&pg);
            ir_graph_destroy(g);
            arena_free(ga);
        }
}

/* f16/bf16 stores round to nearest even, bit for bit as kiln's converters;
 * loads are exact. */
static void test_half_rounding(void) {
    enum { N = 4096 };
    float *x = malloc(sizeof(float) * N);
    uint16_t *h = malloc(2 * N), *bf = malloc(2 * N);
    float *back_h = malloc(sizeof(float) * N), *back_b = malloc(sizeof(float) * N);
    for (int i = 0; i < N; i++) {
        uint32_t bits = (uint32_t)rnd();
        if (i % 4 == 0) bits = (bits & 0xffffe000u) | 0x1000u; /* exact f16 ties */
        if (i % 4 == 1) bits = (bits & 0xffff0000u) | 0x8000u; /* exact bf16 ties */
        if (i % 16 == 2) bits = 0x7fc00000u | (bits & 0x3fffff); /* NaN */
        if (i % 16 == 3) bits = (bits & 0x807fffffu) | 0x33800000u; /* around the f16 subnormal range */
        memcpy(&x[i], &bits, 4);
    }
    x[5] = 65520.0f;   /* rounds to inf in f16 */
    x[6] = 65519.0f;   /* to 65504 */
    x[7] = 5.96e-8f;   /* smallest f16 subnormal */
    x[8] = INFINITY;
    x[9] = -0.0f;
    Prog pg = prog_new("half");
    int bx = kprog_add_buf(pg.p, KB_INPUT, 0, KILN_F32, N, -1, "x");
    int bh = kprog_add_buf(pg.p, KB_OUTPUT, 0, KILN_F16, N, -1, "h");
    int bb = kprog_add_buf(pg.p, KB_OUTPUT, 1, KILN_BF16, N, -1, "b");
    int bh2 = kprog_add_buf(pg.p, KB_OUTPUT, 2, KILN_F32, N, -1, "h_back");
    int bb2 = kprog_add_buf(pg.p, KB_OUTPUT, 3, KILN_F32, N, -1, "b_back");
    Kernel *k = kprog_add_kernel(pg.p, KK_ELEMENTWISE, "store_half", N);
    int s = kernel_add_stage(k, KS_MAP, 1);
    int o = kinst(k, KI_OUTER, KILN_I64, -1, -1, -1, -1);
    int l = kinst_load(k, bx, KILN_F32, -1, o, -1);
    kstage_store(k, s, bh, o, l); /* store converts f32 -> f16 */
    kstage_store(k, s, bb, o, l);
    k = kprog_add_kernel(pg.p, KK_ELEMENTWISE, "load_half", N);
    s = kernel_add_stage(k, KS_MAP, 1);
    o = kinst(k, KI_OUTER, KILN_I64, -1, -1, -1, -1);
    int lh = kinst_load(k, bh, KILN_F16, -1, o, -1);
    int lb = kinst_load(k, bb, KILN_BF16, -1, o, -1);
    kstage_store(k, s, bh2, o, kinst(k, KI_CAST, KILN_F32, -1, lh, -1, -1));
    kstage_store(k, s, bb2, o, kinst(k, KI_CAST, KILN_F32, -1, lb, -1, -1));
    CpuCode *jit = compile(&pg, NULL);
    if (jit) {
        void *bp[5] = {x, h, bf, back_h, back_b};
        cpu_code_run_serial(jit, bp);
        int bad_h = 0, bad_b = 0, bad_lh = 0, bad_lb = 0;
        for (int i = 0; i < N; i++) {
            uint16_t wh = kiln_f32_to_f16(x[i]), wb = kiln_f32_to_bf16(x[i]);
            bool nan = isnan(x[i]);
            if (nan ? (h[i] & 0x7fff) <= 0x7c00 : h[i] != wh) {
                if (bad_h++ < 3) printf("  f16(%a) = %04x, want %04x\n", (double)x[i], h[i], wh);
            }
            if (nan ? (bf[i] & 0x7fff) <= 0x7f80 : bf[i] != wb) {
                if (bad_b++ < 3) printf("  bf16(%a) = %04x, want %04x\n", (double)x[i], bf[i], wb);
            }
            float lhw = kiln_f16_to_f32(h[i]), lbw = kiln_bf16_to_f32(bf[i]);
            if (!(back_h[i] == lhw || (isnan(lhw) && isnan(back_h[i])))) bad_lh++;
            if (!(back_b[i] == lbw || (isnan(lbw) && isnan(back_b[i])))) bad_lb++;
        }
        CHECK(bad_h == 0, "%d f16 stores differ from kiln_f32_to_f16", bad_h);
        CHECK(bad_b == 0, "%d bf16 stores differ from kiln_f32_to_bf16", bad_b);
        CHECK(bad_lh == 0 && bad_lb == 0, "%d f16 / %d bf16 loads differ", bad_lh, bad_lb);
    }
    cpu_code_free(jit);
    prog_free(&pg);
    free(x), free(h), free(bf), free(back_h), free(back_b);
}

/* ------------------------------------------------- instruction kinds */

static void test_inst_kinds(void) {
    enum { R = 7, C = 13 };
    float x[R * C], t[R * C], g[R * C + 5], io[R * C], sc[R * C];
    for (int i = 0; i < R * C; i++) x[i] = (float)urand(-5, 5);
    Prog pg = prog_new("kinds");
    int bx = kprog_add_buf(pg.p, KB_INPUT, 0, KILN_F32, R * C, -1, "x");
    int bt = kprog_add_buf(pg.p, KB_OUTPUT, 0, KILN_F32, R * C, -1, "t");
    int bg = kprog_add_buf(pg.p, KB_OUTPUT, 1, KILN_F32, R * C + 5, -1, "g");
    int bi = kprog_add_buf(pg.p, KB_OUTPUT, 2, KILN_F32, R * C, -1, "io");
    int bs = kprog_add_buf(pg.p, KB_OUTPUT, 3, KILN_F32, R * C, -1, "sc");
    /* transpose [R, C] -> [C, R]: t[o] = x[(o % R) * C + o / R] (IDIV, IMOD, IMUL, IADD) */
    Kernel *k = kprog_add_kernel(pg.p, KK_COPY, "transpose", R * C);
    int s = kernel_add_stage(k, KS_MAP, 1);
    int o = kinst(k, KI_OUTER, KILN_I64, -1, -1, -1, -1);
    int cR = kinst_const(k, KILN_I64, -1, R), cC = kinst_const(k, KILN_I64, -1, C);
    int q = kinst(k, KI_IDIV, KILN_I64, -1, o, cR, -1), m = kinst(k, KI_IMOD, KILN_I64, -1, o, cR, -1);
    int idx = kinst(k, KI_IADD, KILN_I64, -1, kinst(k, KI_IMUL, KILN_I64, -1, m, cC, -1), q, -1);
    kstage_store(k, s, bt, o, kinst_load(k, bx, KILN_F32, -1, idx, -1));
    /* guarded load: g[o] = o < R*C ? x[o] : 0 over R*C+5 (ILT, guard) */
    k = kprog_add_kernel(pg.p, KK_ELEMENTWISE, "guarded", R * C + 5);
    s = kernel_add_stage(k, KS_MAP, 1);
    o = kinst(k, KI_OUTER, KILN_I64, -1, -1, -1, -1);
    int lt = kinst(k, KI_ILT, KILN_BOOL, -1, o, kinst_const(k, KILN_I64, -1, R * C), -1);
    kstage_store(k, s, bg, o, kinst_load(k, bx, KILN_F32, -1, o, lt));
    /* inner index and a map stage of extent C: io[o*C + r] = o * 100 + r (INNER, CAST) */
    k = kprog_add_kernel(pg.p, KK_ROW, "iota", R);
    s = kernel_add_stage(k, KS_MAP, C);
    o = kinst(k, KI_OUTER, KILN_I64, -1, -1, -1, -1);
    int of = kinst_elem(k, OP_MUL, KILN_F32, -1, kinst(k, KI_CAST, KILN_F32, -1, o, -1, -1),
                        kinst_const(k, KILN_F32, -1, 100), -1);
    int r = kinst(k, KI_INNER, KILN_I64, s, -1, -1, -1);
    int pos = kinst(k, KI_IADD, KILN_I64, s, kinst(k, KI_IMUL, KILN_I64, s, o, kinst_const(k, KILN_I64, s, C), -1), r, -1);
    kstage_store(k, s, bi, pos, kinst_elem(k, OP_ADD, KILN_F32, s, of, kinst(k, KI_CAST, KILN_F32, s, r, -1, -1), -1));
    /* ACC: each row scaled by its sum: sc[o*C+r] = x[o*C+r] * 2.5 / sum_r x (CONST, ACC) */
    k = kprog_add_kernel(pg.p, KK_ROW, "scale", R);
    int s0 = kernel_add_stage(k, KS_REDUCE, C);
    int s1 = kernel_add_stage(k, KS_MAP, C);
    o = kinst(k, KI_OUTER, KILN_I64, -1, -1, -1, -1);
    int base = kinst(k, KI_IMUL, KILN_I64, -1, o, kinst_const(k, KILN_I64, -1, C), -1);
    int p0 = kinst(k, KI_IADD, KILN_I64, s0, base, kinst(k, KI_INNER, KILN_I64, s0, -1, -1, -1), -1);
    kstage_reduce(k, s0, OP_SUM, kinst_load(k, bx, KILN_F32, s0, p0, -1), KILN_F32);
    int p1 = kinst(k, KI_IADD, KILN_I64, s1, base, kinst(k, KI_INNER, KILN_I64, s1, -1, -1, -1), -1);
    int acc = kinst(k, KI_ACC, KILN_F32, s1, 0, -1, -1);
    int v = kinst_elem(k, OP_DIV, KILN_F32, s1,
                       kinst_elem(k, OP_MUL, KILN_F32, s1, kinst_load(k, bx, KILN_F32, s1, p1, -1),
                                  kinst_const(k, KILN_F32, s1, 2.5), -1),
                       acc, -1);
    kstage_store(k, s1, bs, p1, v);
    CpuCode *jit = compile(&pg, NULL);
    if (jit) {
        void *bp[5] = {x, t, g, io, sc};
        cpu_code_run_serial(jit, bp);
        int bad = 0;
        for (int i = 0; i < R * C; i++) bad += t[(i % C) * R + i / C] != x[i];
        CHECK(bad == 0, "transpose: %d wrong", bad);
        bad = 0;
        for (int i = 0; i < R * C + 5; i++) bad += g[i] != (i < R * C ? x[i] : 0.0f);
        CHECK(bad == 0, "guarded load: %d wrong", bad);
        bad = 0;
        for (int i = 0; i < R; i++)
            for (int j = 0; j < C; j++) bad += io[i * C + j] != (float)(i * 100 + j);
        CHECK(bad == 0, "inner index: %d wrong", bad);
        bad = 0;
        for (int i = 0; i < R; i++) {
            double sum = 0;
            for (int j = 0; j < C; j++) sum += x[i * C + j];
            for (int j = 0; j < C; j++) {
                double want = x[i * C + j] * 2.5 / sum;
                if (fabs(sc[i * C + j] - want) > 1e-4 * fabs(want) + 1e-5) bad++;
            }
        }
        CHECK(bad == 0, "acc in a later stage: %d wrong", bad);
    }
    cpu_code_free(jit);
    prog_free(&pg);
}

/* ------------------------------------------------------- reductions */

/* Reduces rows of x (R rows of C, dtype dt) with op into out (odt). */
static void check_reduce(Op op, KilnDType dt, int R, int C) {
    KilnDType odt = (op == OP_ARGMAX || op == OP_ARGMIN) ? KILN_I64 : dt;
    KilnTensor x, out;
    int64_t shx = (int64_t)R * C, sho = R;
    kiln_tensor_init(&x, dt, 1, &shx);
    kiln_tensor_init(&out, odt, 1, &sho);
    for (int64_t i = 0; i < shx; i++) {
        double v = is_float(dt) ? (op == OP_PROD ? urand(0.9, 1.1) : (double)((int)(rnd() % 9) - 4) * 0.5)
                                : (double)((int64_t)(rnd() % 7) - 3);
        if ((op == OP_ARGMAX || op == OP_MAX) && i % C == 0 && (i / C) % 3 == 0) v = -INFINITY; /* all-low rows */
        if (!is_float(dt) && v == -INFINITY) v = -3;
        set_elem(&x, i, v);
    }
    Prog pg = prog_new("reduce");
    int bx = kprog_add_buf(pg.p, KB_INPUT, 0, dt, shx, -1, "x");
    int bo = kprog_add_buf(pg.p, KB_OUTPUT, 0, odt, sho, -1, "out");
    Kernel *k = kprog_add_kernel(pg.p, KK_REDUCE, "k_reduce", R);
    int s0 = kernel_add_stage(k, KS_REDUCE, C);
    int s1 = kernel_add_stage(k, KS_MAP, 1);
    int o = kinst(k, KI_OUTER, KILN_I64, -1, -1, -1, -1);
    int base = kinst(k, KI_IMUL, KILN_I64, -1, o, kinst_const(k, KILN_I64, -1, C), -1);
    int p = kinst(k, KI_IADD, KILN_I64, s0, base, kinst(k, KI_INNER, KILN_I64, s0, -1, -1, -1), -1);
    kstage_reduce(k, s0, op, kinst_load(k, bx, dt, s0, p, -1), dt);
    KilnDType accdt = k->stages.data[s0].result_dtype;
    int acc = kinst(k, KI_ACC, accdt, s1, 0, -1, -1);
    kstage_store(k, s1, bo, o, kinst(k, KI_CAST, odt, s1, acc, -1, -1));
    char *ir = NULL;
    CpuCode *jit = compile(&pg, &ir);
    int bad = 0;
    if (jit) {
        void *bp[2] = {x.data, out.data};
        cpu_code_run_serial(jit, bp);
        for (int i = 0; i < R; i++) {
            double a = op == OP_PROD ? 1 : op == OP_MAX || op == OP_ARGMAX ? -INFINITY : op == OP_SUM ? 0 : INFINITY;
            int64_t at = 0;
            for (int j = 0; j < C; j++) {
                double v = get_elem(&x, (int64_t)i * C + j);
                switch (op) {
                case OP_SUM: a += v; break;
                case OP_PROD: a *= v; break;
                case OP_MAX: a = v > a ? v : a; break;
                case OP_MIN: a = v < a ? v : a; break;
                case OP_ARGMAX: if (v > a) a = v, at = j; break;
                case OP_ARGMIN: if (v < a) a = v, at = j; break;
                default: break;
                }
            }
            double want = (op == OP_ARGMAX || op == OP_ARGMIN) ? (double)at : ref_round_to_dtype(a, odt);
            double got = get_elem(&out, i);
            if (!close_enough(got, want, odt, 2e-6)) {
                if (bad < 3)
                    printf("  %s %s row %d: got %.9g, want %.9g\n", op_info[op].name, kiln_dtype_name(dt), i, got, want);
                bad++;
            }
        }
        /* f32 sums/max over rows must vectorise (reassoc on the accumulation) */
        if (dt == KILN_F32 && (op == OP_SUM || op == OP_MAX) && C >= 64)
            CHECK(ir && (strstr(ir, "<16 x float>") || strstr(ir, "<8 x float>")), "%s over f32 rows is not vectorised",
                  op_info[op].name);
    }
    CHECK(jit && bad == 0, "%s on %s rows of %d: %d wrong", op_info[op].name, kiln_dtype_name(dt), C, bad);
    free(ir);
    cpu_code_free(jit);
    prog_free(&pg);
    kiln_tensor_free(&x);
    kiln_tensor_free(&out);
}

static void test_reductions(void) {
    static const Op ops[] = {OP_SUM, OP_PROD, OP_MAX, OP_MIN, OP_ARGMAX, OP_ARGMIN};
    static const KilnDType dts[] = {KILN_F32, KILN_F16, KILN_BF16, KILN_F64, KILN_I32, KILN_I64};
    for (size_t a = 0; a < sizeof ops / sizeof *ops; a++)
        for (size_t d = 0; d < sizeof dts / sizeof *dts; d++) {
            check_reduce(ops[a], dts[d], 9, 1);
            check_reduce(ops[a], dts[d], 9, 37);
            check_reduce(ops[a], dts[d], 5, 300);
        }
}

/* argmax keeps the first of equal values, and the first NaN. */
static void test_argmax_ties(void) {
    float x[8] = {1, 3, 3, 2, 3, 0, -1, 3};
    float y[8] = {1, NAN, 5, NAN, 7, 0, 0, 0};
    int64_t out[4];
    Prog pg = prog_new("ties");
    int bx = kprog_add_buf(pg.p, KB_INPUT, 0, KILN_F32, 16, -1, "x");
    int bo = kprog_add_buf(pg.p, KB_OUTPUT, 0, KILN_I64, 4, -1, "out");
    for (int which = 0; which < 2; which++) {
        Kernel *k = kprog_add_kernel(pg.p, KK_REDUCE, which ? "argmin" : "argmax", 2);
        int s0 = kernel_add_stage(k, KS_REDUCE, 8);
        int s1 = kernel_add_stage(k, KS_MAP, 1);
        int o = kinst(k, KI_OUTER, KILN_I64, -1, -1, -1, -1);
        int base = kinst(k, KI_IMUL, KILN_I64, -1, o, kinst_const(k, KILN_I64, -1, 8), -1);
        int p = kinst(k, KI_IADD, KILN_I64, s0, base, kinst(k, KI_INNER, KILN_I64, s0, -1, -1, -1), -1);
        kstage_reduce(k, s0, which ? OP_ARGMIN : OP_ARGMAX, kinst_load(k, bx, KILN_F32, s0, p, -1), KILN_F32);
        int at = kinst(k, KI_IADD, KILN_I64, s1, o, kinst_const(k, KILN_I64, s1, 2 * which), -1);
        kstage_store(k, s1, bo, at, kinst(k, KI_ACC, KILN_I64, s1, 0, -1, -1));
    }
    CpuCode *jit = compile(&pg, NULL);
    if (jit) {
        float xy[16];
        memcpy(xy, x, sizeof x);
        memcpy(xy + 8, y, sizeof y);
        void *bp[2] = {xy, out};
        cpu_code_run_serial(jit, bp);
        CHECK(out[0] == 1, "argmax ties: %lld, want 1", (long long)out[0]);
        CHECK(out[1] == 1, "argmax with NaN: %lld, want 1 (the first NaN)", (long long)out[1]);
        CHECK(out[2] == 6, "argmin: %lld, want 6", (long long)out[2]);
        CHECK(out[3] == 1, "argmin with NaN: %lld, want 1", (long long)out[3]);
    }
    cpu_code_free(jit);
    prog_free(&pg);
}

/* softmax rows: max, sum of exp, then a map over the row (3 stages). */
static void test_softmax_rows(void) {
    enum { R = 33, C = 100 };
    float *x = malloc(sizeof(float) * R * C), *y = malloc(sizeof(float) * R * C);
    for (int i = 0; i < R * C; i++) x[i] = (float)urand(-10, 10);
    Prog pg = prog_new("softmax");
    int bx = kprog_add_buf(pg.p, KB_INPUT, 0, KILN_F32, R * C, -1, "x");
    int by = kprog_add_buf(pg.p, KB_OUTPUT, 0, KILN_F32, R * C, -1, "y");
    Kernel *k = kprog_add_kernel(pg.p, KK_ROW, "softmax", R);
    int s0 = kernel_add_stage(k, KS_REDUCE, C), s1 = kernel_add_stage(k, KS_REDUCE, C), s2 = kernel_add_stage(k, KS_MAP, C);
    int o = kinst(k, KI_OUTER, KILN_I64, -1, -1, -1, -1);
    int base = kinst(k, KI_IMUL, KILN_I64, -1, o, kinst_const(k, KILN_I64, -1, C), -1);
    int p0 = kinst(k, KI_IADD, KILN_I64, s0, base, kinst(k, KI_INNER, KILN_I64, s0, -1, -1, -1), -1);
    kstage_reduce(k, s0, OP_MAX, kinst_load(k, bx, KILN_F32, s0, p0, -1), KILN_F32);
    int p1 = kinst(k, KI_IADD, KILN_I64, s1, base, kinst(k, KI_INNER, KILN_I64, s1, -1, -1, -1), -1);
    int m1 = kinst(k, KI_ACC, KILN_F32, s1, 0, -1, -1);
    int e1 = kinst_elem(k, OP_EXP, KILN_F32, s1, kinst_elem(k, OP_SUB, KILN_F32, s1, kinst_load(k, bx, KILN_F32, s1, p1, -1), m1, -1), -1, -1);
    kstage_reduce(k, s1, OP_SUM, e1, KILN_F32);
    int p2 = kinst(k, KI_IADD, KILN_I64, s2, base, kinst(k, KI_INNER, KILN_I64, s2, -1, -1, -1), -1);
    int m2 = kinst(k, KI_ACC, KILN_F32, s2, 0, -1, -1), sum = kinst(k, KI_ACC, KILN_F32, s2, 1, -1, -1);
    int e2 = kinst_elem(k, OP_EXP, KILN_F32, s2, kinst_elem(k, OP_SUB, KILN_F32, s2, kinst_load(k, bx, KILN_F32, s2, p2, -1), m2, -1), -1, -1);
    kstage_store(k, s2, by, p2, kinst_elem(k, OP_DIV, KILN_F32, s2, e2, sum, -1));
    char *ir = NULL;
    CpuCode *jit = compile(&pg, &ir);
    if (jit) {
        void *bp[2] = {x, y};
        cpu_code_run_serial(jit, bp);
        int bad = 0;
        for (int i = 0; i < R; i++) {
            double mx = -INFINITY, s = 0;
            for (int j = 0; j < C; j++) mx = fmax(mx, x[i * C + j]);
            for (int j = 0; j < C; j++) s += exp(x[i * C + j] - mx);
            for (int j = 0; j < C; j++) {
                double want = exp(x[i * C + j] - mx) / s;
                if (fabs(y[i * C + j] - want) > 1e-5 * want + 1e-9) bad++;
            }
        }
        CHECK(bad == 0, "softmax rows: %d wrong", bad);
        CHECK(ir && (strstr(ir, "<16 x float>") || strstr(ir, "<8 x float>")), "softmax rows are not vectorised");
    }
    free(ir);
    cpu_code_free(jit);
    prog_free(&pg);
    free(x), free(y);
}

/* ---------------------------------------------- transcendental accuracy */

typedef struct {
    Op op;
    bool flag;
    double lo, hi;
    double max_ulp; /* bound on the error in units of the float result's ulp */
    double (*ref)(double);
    double atol; /* errors up to this are fine whatever their ulp count */
} Accuracy;

static double sigmoid_d(double x) { return 1.0 / (1.0 + exp(-x)); }
static double silu_d(double x) { return x / (1.0 + exp(-x)); }
static double gelu_d(double x) { return 0.5 * x * (1.0 + erf(x / M_SQRT2)); }
static double gelu_tanh_d(double x) { return 0.5 * x * (1.0 + tanh(0.7978845608028654 * (x + 0.044715 * x * x * x))); }

static void test_accuracy(void) {
    static const Accuracy cases[] = {
        {OP_EXP, false, -87, 88, 2, exp, 0},        {OP_EXP, false, -103, -87, 2, exp, 0},
        {OP_LOG, false, 1e-30, 1e30, 2, log, 0},   {OP_LOG, false, 0.5, 2, 2, log, 0},
        {OP_LOG, false, 1e-44, 1e-37, 2, log, 0},  {OP_SIN, false, -10, 10, 2, sin, 0},
        {OP_SIN, false, -1e4, 1e4, 2, sin, 0},     {OP_COS, false, -10, 10, 2, cos, 0},
        {OP_COS, false, -1e4, 1e4, 2, cos, 0},     {OP_TANH, false, -10, 10, 3, tanh, 0},
        {OP_TANH, false, -0.7, 0.7, 3, tanh, 0},   {OP_ERF, false, -6, 6, 2, erf, 0},
        {OP_ERF, false, -1, 1, 2, erf, 0},         {OP_SIGMOID, false, -80, 80, 3, sigmoid_d, 0},
        {OP_SILU, false, -20, 20, 3, silu_d, 0},   {OP_GELU, false, -5.5, 8, 6, gelu_d, 0},
        {OP_GELU, true, -5.5, 8, 4, gelu_tanh_d, 0}, {OP_GELU, false, -30, -5.5, 0, gelu_d, 1e-12},
        {OP_GELU, true, -30, -5, 0, gelu_tanh_d, 1e-12},
    };
    enum { N = 1 << 18 };
    float *x = malloc(sizeof(float) * N), *y = malloc(sizeof(float) * N);
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        const Accuracy *a = &cases[c];
        bool logscale = a->op == OP_LOG && a->hi / a->lo > 1e3;
        for (int i = 0; i < N; i++) {
            double t = (i + 0.5) / N;
            x[i] = (float)(logscale ? exp(log(a->lo) + t * (log(a->hi) - log(a->lo))) : a->lo + t * (a->hi - a->lo));
        }
        Prog pg = prog_new("acc");
        int bx = kprog_add_buf(pg.p, KB_INPUT, 0, KILN_F32, N, -1, "x");
        int by = kprog_add_buf(pg.p, KB_OUTPUT, 0, KILN_F32, N, -1, "y");
        Kernel *k = kprog_add_kernel(pg.p, KK_ELEMENTWISE, "f", N);
        int s = kernel_add_stage(k, KS_MAP, 1);
        int o = kinst(k, KI_OUTER, KILN_I64, -1, -1, -1, -1);
        int e = kinst_elem(k, a->op, KILN_F32, -1, kinst_load(k, bx, KILN_F32, -1, o, -1), -1, -1);
        k->insts.data[e].flag = a->flag;
        kstage_store(k, s, by, o, e);
        char *ir = NULL;
        CpuCode *jit = compile(&pg, &ir);
        if (jit) {
            void *bp[2] = {x, y};
            cpu_code_run_serial(jit, bp);
            double worst = 0, at = 0;
            for (int i = 0; i < N; i++) {
                double want = a->ref((double)x[i]);
                double err = fabs((double)y[i] - want) / ulp_of(want);
                if (fabs((double)y[i] - want) <= a->atol) err = 0;
                if (isnan(want) && isnan(y[i])) err = 0;
                if (!(err <= worst)) worst = err, at = x[i];
            }
            CHECK(worst <= a->max_ulp, "%s%s on [%g, %g]: %.2f ulp at %.9g (bound %g)", op_info[a->op].name,
                  a->flag ? "~" : "", a->lo, a->hi, worst, at, a->max_ulp);
            if (getenv("KILN_TEST_VERBOSE"))
                printf("  %s%s on [%g, %g]: max %.2f ulp at %.9g\n", op_info[a->op].name, a->flag ? "~" : "", a->lo,
                       a->hi, worst, at);
            CHECK(ir && (strstr(ir, "<16 x float>") || strstr(ir, "<8 x float>")), "%s is not vectorised",
                  op_info[a->op].name);
        }
        free(ir);
        cpu_code_free(jit);
        prog_free(&pg);
    }
    free(x), free(y);
}

/* ------------------------------------------------------------- matmul */

/* out[b, m, n] = act(sum_k A[b?, m, k] * B[b?, k, n] + bias[n]) with the
 * operands in dtype dt; A broadcast over batch when a_bcast. */
static void check_matmul(int64_t batch, int64_t M, int64_t N, int64_t K, KilnDType dt, bool a_bcast, bool b_trans,
                         bool relu_bias) {
    int64_t na = (a_bcast ? 1 : batch) * M * K, nbm = batch * K * N, no = batch * M * N;
    KilnTensor A, B, bias;
    kiln_tensor_init(&A, dt, 1, &na);
    kiln_tensor_init(&B, dt, 1, &nbm);
    kiln_tensor_init(&bias, KILN_F32, 1, &N);
    for (int64_t i = 0; i < na; i++) set_elem(&A, i, urand(-1, 1));
    for (int64_t i = 0; i < nbm; i++) set_elem(&B, i, urand(-1, 1));
    for (int64_t i = 0; i < N; i++) set_elem(&bias, i, urand(-1, 1));
    float *out = malloc(sizeof(float) * (size_t)no);
    Prog pg = prog_new("mm");
    int ba = kprog_add_buf(pg.p, KB_INPUT, 0, dt, na, -1, "A");
    int bb = kprog_add_buf(pg.p, KB_INPUT, 1, dt, nbm, -1, "B");
    int bbias = kprog_add_buf(pg.p, KB_INPUT, 2, KILN_F32, N, -1, "bias");
    int bo = kprog_add_buf(pg.p, KB_OUTPUT, 0, KILN_F32, no, -1, "out");
    Kernel *k = kprog_add_kernel(pg.p, KK_MATMUL, "k_matmul", no);
    int s0 = kernel_add_stage(k, KS_REDUCE, K), s1 = kernel_add_stage(k, KS_MAP, 1);
    /* o = (b*M + m)*N + n */
    int o = kinst(k, KI_OUTER, KILN_I64, -1, -1, -1, -1);
    int n = kinst(k, KI_IMOD, KILN_I64, -1, o, kinst_const(k, KILN_I64, -1, N), -1);
    int bm = kinst(k, KI_IDIV, KILN_I64, -1, o, kinst_const(k, KILN_I64, -1, N), -1);
    int m = kinst(k, KI_IMOD, KILN_I64, -1, bm, kinst_const(k, KILN_I64, -1, M), -1);
    int b = kinst(k, KI_IDIV, KILN_I64, -1, bm, kinst_const(k, KILN_I64, -1, M), -1);
    int r = kinst(k, KI_INNER, KILN_I64, s0, -1, -1, -1);
    /* A index: (a_bcast ? 0 : b*M*K) + m*K + r */
    int ai = kinst(k, KI_IADD, KILN_I64, s0, kinst(k, KI_IMUL, KILN_I64, s0, m, kinst_const(k, KILN_I64, s0, K), -1), r, -1);
    if (!a_bcast)
        ai = kinst(k, KI_IADD, KILN_I64, s0, ai, kinst(k, KI_IMUL, KILN_I64, s0, b, kinst_const(k, KILN_I64, s0, M * K), -1), -1);
    /* B index: b*K*N + (b_trans ? n*K + r : r*N + n) */
    int bi = b_trans ? kinst(k, KI_IADD, KILN_I64, s0, kinst(k, KI_IMUL, KILN_I64, s0, n, kinst_const(k, KILN_I64, s0, K), -1), r, -1)
                     : kinst(k, KI_IADD, KILN_I64, s0, kinst(k, KI_IMUL, KILN_I64, s0, r, kinst_const(k, KILN_I64, s0, N), -1), n, -1);
    bi = kinst(k, KI_IADD, KILN_I64, s0, bi, kinst(k, KI_IMUL, KILN_I64, s0, b, kinst_const(k, KILN_I64, s0, K * N), -1), -1);
    int la = kinst(k, KI_CAST, KILN_F32, s0, kinst_load(k, ba, dt, s0, ai, -1), -1, -1);
    int lb = kinst(k, KI_CAST, KILN_F32, s0, kinst_load(k, bb, dt, s0, bi, -1), -1, -1);
    kstage_reduce(k, s0, OP_SUM, kinst_elem(k, OP_MUL, KILN_F32, s0, la, lb, -1), KILN_F32);
    int acc = kinst(k, KI_ACC, KILN_F32, s1, 0, -1, -1);
    int v = acc;
    if (relu_bias)
        v = kinst_elem(k, OP_RELU, KILN_F32, s1, kinst_elem(k, OP_ADD, KILN_F32, s1, acc, kinst_load(k, bbias, KILN_F32, s1, n, -1), -1), -1, -1);
    kstage_store(k, s1, bo, o, v);
    KMatmul *mm = &k->mm;
    mm->a_buf = ba, mm->b_buf = bb;
    mm->batch = batch, mm->m = M, mm->n = N, mm->k = K;
    mm->nbatch = 1;
    mm->batch_dims = ARENA_ARRAY(pg.arena, int64_t, 1);
    mm->a_batch_stride = ARENA_ARRAY(pg.arena, int64_t, 1);
    mm->b_batch_stride = ARENA_ARRAY(pg.arena, int64_t, 1);
    mm->batch_dims[0] = batch;
    mm->a_batch_stride[0] = a_bcast ? 0 : M * K;
    mm->b_batch_stride[0] = K * N;
    mm->a_sm = K, mm->a_sk = 1;
    mm->b_sk = b_trans ? 1 : N, mm->b_sn = b_trans ? K : 1;
    CpuCode *jit = compile(&pg, NULL);
    int bad = 0;
    if (jit) {
        const CpuKernelCode *kc = cpu_code_kernel(jit, 0);
        void *scratch = kc->scratch ? aligned_alloc(64, (size_t)(kc->scratch + 63) / 64 * 64) : NULL;
        void *prog_bufs[4] = {A.data, B.data, bias.data, out}, *bp[8];
        /* an operand gathered once (llvm.h): its block filled first, in two pieces */
        void *gathered =
            kc->gather_bytes > 0 ? aligned_alloc(64, (size_t)(kc->gather_bytes + 63) / 64 * 64) : NULL;
        void *blocks[2] = {NULL, NULL};
        if (gathered) blocks[kc->gather_operand] = gathered;
        cpu_code_table(jit, 0, prog_bufs, scratch, blocks, bp);
        if (kc->gather) {
            kc->gather(kc->gather_tasks / 2, kc->gather_tasks, bp);
            kc->gather(0, kc->gather_tasks / 2, bp);
        }
        KernelFn fn = kc->fn;
        /* in ragged pieces, as threads would split it */
        int64_t cuts[4] = {0, no / 3 + 1, 2 * no / 3 + 7, no};
        if (cuts[2] > no) cuts[2] = no;
        for (int c = 0; c < 3; c++)
            if (cuts[c] < cuts[c + 1]) fn(cuts[c], cuts[c + 1], bp);
        KernelFn cols = kc->cols;
        if (cols) { /* again by columns, in two ragged pieces: must give the same */
            float *first = malloc(sizeof(float) * (size_t)no);
            memcpy(first, out, sizeof(float) * (size_t)no);
            memset(out, 0, sizeof(float) * (size_t)no);
            cols(0, N / 3 + 5 < N ? N / 3 + 5 : N, bp);
            if (N / 3 + 5 < N) cols(N / 3 + 5, N, bp);
            CHECK(memcmp(first, out, sizeof(float) * (size_t)no) == 0, "matmul by columns differs from by rows");
            free(first);
        }
        free(scratch);
        free(gathered);
        for (int64_t bI = 0; bI < batch; bI++)
            for (int64_t i = 0; i < M; i++)
                for (int64_t j = 0; j < N; j++) {
                    double s = 0;
                    for (int64_t kk = 0; kk < K; kk++) {
                        double av = get_elem(&A, (a_bcast ? 0 : bI * M * K) + i * K + kk);
                        double bv = get_elem(&B, bI * K * N + (b_trans ? j * K + kk : kk * N + j));
                        s += av * bv;
                    }
                    if (relu_bias) s = fmax(s + get_elem(&bias, j), 0);
                    double got = out[(bI * M + i) * N + j];
                    if (fabs(got - s) > 1e-5 * sqrt((double)K) * 4 + 1e-5 * fabs(s)) {
                        if (bad < 3)
                            printf("  matmul [%lld, %lld, %lld]: got %.9g, want %.9g\n", (long long)bI, (long long)i,
                                   (long long)j, got, s);
                        bad++;
                    }
                }
    }
    CHECK(jit && bad == 0, "matmul batch %lld, %lldx%lldx%lld %s%s%s%s: %d wrong", (long long)batch, (long long)M,
          (long long)N, (long long)K, kiln_dtype_name(dt), a_bcast ? " A-broadcast" : "", b_trans ? " B^T" : "",
          relu_bias ? " +bias,relu" : "", bad);
    cpu_code_free(jit);
    prog_free(&pg);
    kiln_tensor_free(&A);
    kiln_tensor_free(&B);
    kiln_tensor_free(&bias);
    free(out);
}

static void test_matmul(void) {
    check_matmul(1, 64, 64, 64, KILN_F32, false, false, false);
    check_matmul(1, 67, 45, 300, KILN_F32, false, false, true); /* ragged tiles, K over one block */
    check_matmul(1, 130, 257, 600, KILN_F32, false, true, true); /* B transposed, 3 K blocks */
    /* two activations, rows over a row block, K over a block: B packed, not read in place */
    check_matmul(2, 250, 40, 300, KILN_F32, false, false, true);
    /* ... and partial sums of over 2 MiB (520 x 1056 floats): one row group
     * for all 520 rows, not 480 + 40 (b_packed_per_chunk) */
    check_matmul(2, 520, 1040, 260, KILN_F32, false, false, true);
    /* ... and one batch whose B is over the 4 MiB gathered once per thread
     * (260 x 4100 floats): B packed in every chunk, the chunks any rows of
     * the one batch (the pool's are 96 rows and a last partial one) */
    check_matmul(1, 245, 4100, 260, KILN_F32, false, false, true);
    check_matmul(3, 20, 40, 50, KILN_F32, true, false, true);   /* batched, A broadcast */
    check_matmul(2, 33, 48, 70, KILN_F16, false, false, false);
    check_matmul(2, 33, 48, 70, KILN_BF16, false, true, true);
    check_matmul(1, 3, 5, 7, KILN_F32, false, false, true);     /* small: the generic path */
}

/* ------------------------------------------- padding: negative offsets */

/* out[o] = 0 <= o - 3 < n ? x[o - 3] : 0 over n + 6 elements, the index o - 3
 * formed with a negative constant (as the scheduler does for pad) and
 * guarded by signed comparisons; `big` makes the index range need i64. */
static void check_pad(bool big) {
    int64_t n = 50, shift = big ? ((int64_t)1 << 33) : 0;
    float x[50], out[56];
    for (int i = 0; i < n; i++) x[i] = (float)i + 0.5f;
    Prog pg = prog_new("pad");
    int bx = kprog_add_buf(pg.p, KB_INPUT, 0, KILN_F32, n, -1, "x");
    int bo = kprog_add_buf(pg.p, KB_OUTPUT, 0, KILN_F32, n + 6, -1, "out");
    Kernel *k = kprog_add_kernel(pg.p, KK_COPY, "pad", n + 6);
    int s = kernel_add_stage(k, KS_MAP, 1);
    int o = kinst(k, KI_OUTER, KILN_I64, -1, -1, -1, -1);
    /* with `big`, idx = (o + 2^33 - 3) - 2^33: same value, i64-sized intermediates */
    int t = kinst(k, KI_IADD, KILN_I64, -1, o, kinst_const(k, KILN_I64, -1, (double)(shift - 3)), -1);
    int idx = kinst(k, KI_IADD, KILN_I64, -1, t, kinst_const(k, KILN_I64, -1, (double)-shift), -1);
    int lo = kinst(k, KI_ILT, KILN_BOOL, -1, idx, kinst_const(k, KILN_I64, -1, 0), -1);
    int hi = kinst(k, KI_ILT, KILN_BOOL, -1, idx, kinst_const(k, KILN_I64, -1, (double)n), -1);
    int g = kinst_elem(k, OP_AND, KILN_BOOL, -1, kinst_elem(k, OP_NOT, KILN_BOOL, -1, lo, -1, -1), hi, -1);
    kstage_store(k, s, bo, o, kinst_load(k, bx, KILN_F32, -1, idx, g));
    CpuCode *jit = compile(&pg, NULL);
    if (jit) {
        void *bp[2] = {x, out};
        cpu_code_run_serial(jit, bp);
        int bad = 0;
        for (int i = 0; i < n + 6; i++) bad += out[i] != (i >= 3 && i < n + 3 ? x[i - 3] : 0.0f);
        CHECK(bad == 0, "pad with negative offsets (%s index arithmetic): %d wrong", big ? "i64" : "i32", bad);
    }
    cpu_code_free(jit);
    prog_free(&pg);
}

/* ---------------------------------------------------------- thread pool */

typedef struct {
    int64_t *hits;
    int nthreads;
    bool bad_thread; /* a task ran with a thread index outside [0, nthreads) */
} PoolJob;

static void pool_task(void *ctx, int t, int thread) {
    PoolJob *j = ctx;
    j->hits[t] += t + 1;
    if (thread < 0 || thread >= j->nthreads) j->bad_thread = true;
}

/* tp_run_ranges' callback: counts each unit it is given. */
typedef struct {
    _Atomic int64_t *hits;
    int nthreads;
    _Atomic int bad; /* an empty or reversed range, or a thread index outside [0, nthreads) */
} RangeJob;

static void range_task(void *ctx, int64_t u0, int64_t u1, int thread) {
    RangeJob *j = ctx;
    if (u0 >= u1 || thread < 0 || thread >= j->nthreads) atomic_fetch_add(&j->bad, 1);
    for (int64_t u = u0; u < u1; u++) atomic_fetch_add(&j->hits[u], 1);
}

/* Every unit of [0, units) given exactly once, for pools of 1-3 threads
 * and no pool, over many sizes (a part per thread, claims from both ends). */
static void test_threadpool_ranges(void) {
    enum { MOST = 300 };
    _Atomic int64_t hits[MOST];
    for (int threads = 0; threads <= 3; threads++) {
        ThreadPool *tp = threads ? tp_new(threads) : NULL;
        RangeJob job = {hits, tp_size(tp), 0};
        int wrong = 0;
        int64_t units = 0;
        for (int round = 0; round < 400 && !wrong; round++) {
            units = round % 100 == 99 ? 0 : 1 + (round * 7) % MOST;
            for (int u = 0; u < MOST; u++) atomic_init(&hits[u], 0);
            tp_run_ranges(tp, range_task, &job, units);
            for (int64_t u = 0; u < MOST; u++) wrong += atomic_load(&hits[u]) != (u < units);
        }
        CHECK(wrong == 0, "tp_run_ranges, %d threads, %lld units: %d units run wrongly", threads, (long long)units,
              wrong);
        CHECK(atomic_load(&job.bad) == 0, "tp_run_ranges, %d threads: %d bad ranges or thread indices", threads,
              atomic_load(&job.bad));
        tp_free(tp);
    }
}

/* tp_run_ranges' callback for the waits: counts each unit; thread `slow`
 * sleeps `slow_us` in each of its chunks, the caller a fifth of that (so
 * the worker joins first, and the caller then outwaits its spin and
 * sleeps until that worker is done). */
typedef struct {
    _Atomic int64_t *hits;
    int nthreads, slow;
    long slow_us;
    _Atomic int bad;
} WaitJob;

static void wait_task(void *ctx, int64_t u0, int64_t u1, int thread) {
    WaitJob *j = ctx;
    if (u0 >= u1 || thread < 0 || thread >= j->nthreads) atomic_fetch_add(&j->bad, 1);
    if (j->slow > 0 && (thread == j->slow || thread == 0))
        usleep((useconds_t)(thread == j->slow ? j->slow_us : j->slow_us / 5));
    for (int64_t u = u0; u < u1; u++) atomic_fetch_add(&j->hits[u], 1);
}

/* Two callers sharing a pool: each its own job, over and over. */
typedef struct {
    ThreadPool *tp;
    _Atomic int64_t hits[257];
    int wrong;
} SharedCaller;

static void *shared_caller(void *arg) {
    SharedCaller *c = arg;
    RangeJob job = {c->hits, tp_size(c->tp), 0};
    for (int round = 0; round < 300; round++) {
        int64_t units = 1 + (round * 13) % 257;
        for (int u = 0; u < 257; u++) atomic_init(&c->hits[u], 0);
        tp_run_ranges(c->tp, range_task, &job, units);
        for (int64_t u = 0; u < 257; u++) c->wrong += atomic_load(&c->hits[u]) != (u < units);
    }
    c->wrong += atomic_load(&job.bad);
    return NULL;
}

/* A wait of the pool that never ends (a lost wake-up) fails the test
 * instead of hanging the suite. */
static void pool_wait_timed_out(int sig) {
    (void)sig;
    static const char msg[] = "FAIL test_threadpool_waits: a wait never ended (a lost wake-up?)\n";
    ssize_t w = write(2, msg, sizeof msg - 1);
    (void)w;
    _exit(1);
}

/* The pool's waits: jobs posted to workers that have gone to sleep, a
 * caller that sleeps until a slow worker's chunk is done (every unit run
 * once, and all of them before tp_run_ranges returns), and two callers on
 * one pool at once; all of it within 60 s (it takes well under one). */
static void test_threadpool_waits(void) {
    enum { UNITS = 64 };
    _Atomic int64_t hits[UNITS];
    void (*before)(int) = signal(SIGALRM, pool_wait_timed_out);
    alarm(60);
    for (int threads = 2; threads <= 3; threads++) {
        ThreadPool *tp = tp_new(threads);
        CHECK(tp != NULL, "tp_new(%d)", threads);
        if (!tp) continue;
        int wrong = 0;
        for (int round = 0; round < 6; round++) {
            /* rounds 0-2: the workers asleep before the job (their spin is
             * 0.5 ms); 3-5: a worker's chunks 5 ms each */
            WaitJob job = {hits, tp_size(tp), round < 3 ? -1 : 1 + round % (tp_size(tp) - 1), 5000, 0};
            if (round < 3) usleep(20000);
            for (int u = 0; u < UNITS; u++) atomic_init(&hits[u], 0);
            tp_run_ranges(tp, wait_task, &job, UNITS);
            for (int u = 0; u < UNITS; u++) wrong += atomic_load(&hits[u]) != 1;
            wrong += atomic_load(&job.bad);
        }
        CHECK(wrong == 0, "%d threads: %d units run wrongly after sleeps", threads, wrong);
        SharedCaller callers[2] = {{.tp = tp}, {.tp = tp}};
        pthread_t th[2];
        bool started[2];
        for (int i = 0; i < 2; i++)
            started[i] = pthread_create(&th[i], NULL, shared_caller, &callers[i]) == 0;
        for (int i = 0; i < 2; i++)
            if (started[i]) pthread_join(th[i], NULL);
        CHECK(started[0] && started[1] && callers[0].wrong == 0 && callers[1].wrong == 0,
              "%d threads, two callers: %d and %d units run wrongly", threads, callers[0].wrong,
              callers[1].wrong);
        tp_free(tp);
    }
    alarm(0);
    signal(SIGALRM, before);
}

/* tp_run_ranges' callback for the unstacking: worker 1 records its thread
 * id and whether it ran a chunk on a CPU other than `cpu0`. */
typedef struct {
    int cpu0;
    _Atomic int tid, off;
} StackJob;

static void stack_task(void *ctx, int64_t u0, int64_t u1, int thread) {
    StackJob *j = ctx;
    volatile double x = 0;
    for (int64_t i = u0 * 500; i < u1 * 500; i++) x += (double)i;
    if (thread != 1) return;
    atomic_store(&j->tid, gettid());
    if (sched_getcpu() != j->cpu0) atomic_store(&j->off, 1);
}

/* A worker stacked on the caller's CPU (put there and left free to move,
 * the caller confined to that CPU) is moved off it and runs chunks on
 * another CPU within 1000 jobs (threadpool.c, unstack; 24-32 jobs on the
 * 2-vCPU Zen 5 of session 18, where without the moves the worker ran on the
 * caller's CPU for 559 to over 54000 jobs, 5 s).  Where this thread may run
 * on one CPU only: nothing to check. */
static void test_threadpool_unstack(void) {
    cpu_set_t wide, one;
    if (sched_getaffinity(0, sizeof wide, &wide) != 0 || CPU_COUNT(&wide) < 2) return;
    unsetenv("KILN_MOVE_THREADS"); /* the moves under test, whatever the caller's environment */
    ThreadPool *tp = tp_new(2);
    CHECK(tp && tp_size(tp) == 2, "tp_new(2)");
    if (!tp || tp_size(tp) != 2) {
        tp_free(tp);
        return;
    }
    StackJob job = {-1, 0, 0};
    for (int round = 0; round < 20000 && !atomic_load(&job.tid); round++)
        tp_run_ranges(tp, stack_task, &job, 64);
    int tid = atomic_load(&job.tid), cpu0 = sched_getcpu();
    CHECK(tid != 0, "the worker never ran a chunk");
    CPU_ZERO(&one);
    CPU_SET(cpu0, &one);
    bool stacked = tid && sched_setaffinity(0, sizeof one, &one) == 0 &&
                   sched_setaffinity(tid, sizeof one, &one) == 0 &&
                   sched_setaffinity(tid, sizeof wide, &wide) == 0;
    CHECK(stacked, "stacking the worker on CPU %d", cpu0);
    job.cpu0 = cpu0;
    atomic_store(&job.off, 0);
    double t0 = clock_ms(CLOCK_MONOTONIC);
    int rounds = 0;
    while (stacked && !atomic_load(&job.off) && clock_ms(CLOCK_MONOTONIC) - t0 < 5000)
        tp_run_ranges(tp, stack_task, &job, 64), rounds++;
    CHECK(!stacked || (atomic_load(&job.off) && rounds <= 1000),
          "the worker ran only on the caller's CPU %d for %d jobs (moved off within 1000 expected)", cpu0,
          rounds);
    sched_setaffinity(0, sizeof wide, &wide);
    tp_free(tp);
}

static void test_threadpool(void) {
    ThreadPool *tp = tp_new(3);
    CHECK(tp && tp_size(tp) >= 1, "tp_new(3) failed");
    int64_t hits[64];
    PoolJob job = {hits, tp_size(tp), false};
    for (int round = 0; round < 200; round++) {
        int n = 1 + round % 64;
        memset(hits, 0, sizeof hits);
        tp_run(tp, pool_task, &job, n);
        int bad = 0;
        for (int t = 0; t < n; t++) bad += hits[t] != t + 1;
        if (bad) {
            CHECK(bad == 0, "round %d: %d tasks ran wrongly", round, bad);
            break;
        }
    }
    npass++;
    CHECK(!job.bad_thread, "a task got a thread index outside [0, %d)", job.nthreads);
    tp_free(tp);
    memset(hits, 0, sizeof hits);
    tp_run(NULL, pool_task, &job, 5); /* no pool: the caller runs them */
    CHECK(hits[4] == 5, "tp_run without a pool");
    test_threadpool_ranges();
    test_threadpool_waits();
    test_threadpool_unstack();
}

/* ------------------------------------------------- the backend, end to end */

/* g(x: f32[R, C], y: f32[C]) -> (x, relu(x * 2 + y), sum(x, axis=1), x):
 * results that are a parameter and repeats, through fuse_graph, the JIT
 * and the thread pool, against the reference interpreter. */
static void test_backend(int opt_level) {
    enum { R = 300, C = 257 };
    Arena *ga = arena_new();
    IRGraph *g = ir_graph_new(ga, "g");
    Dim sx[2] = {R, C}, sy[1] = {C}, sr[1] = {R};
    int x = ir_add_node(g, OP_PARAM, KILN_F32, 2, sx, 0, NULL, (Loc){0});
    ir_node(g, x)->name = "x";
    int y = ir_add_node(g, OP_PARAM, KILN_F32, 1, sy, 0, NULL, (Loc){0});
    ir_node(g, y)->name = "y";
    VEC_PUSH(g->params, x);
    VEC_PUSH(g->params, y);
    int two = ir_add_node(g, OP_CONST, KILN_F32, 0, NULL, 0, NULL, (Loc){0});
    ir_node(g, two)->value = 2.0;
    int in2[2] = {x, two};
    int m = ir_add_node(g, OP_MUL, KILN_F32, 2, sx, 2, in2, (Loc){0});
    int in3[2] = {m, y};
    int a = ir_add_node(g, OP_ADD, KILN_F32, 2, sx, 2, in3, (Loc){0});
    int r = ir_add_node(g, OP_RELU, KILN_F32, 2, sx, 1, &a, (Loc){0});
    int sm = ir_add_node(g, OP_SUM, KILN_F32, 1, sr, 1, &x, (Loc){0});
    ir_node(g, sm)->ints = ARENA_ARRAY(ga, int64_t, 1);
    ir_node(g, sm)->ints[0] = 1;
    ir_node(g, sm)->nints = 1;
    VEC_PUSH(g->results, x);
    VEC_PUSH(g->results, r);
    VEC_PUSH(g->results, sm);
    VEC_PUSH(g->results, x);
    KilnTensor in[2], want[4], got[4];
    int64_t shx[2] = {R, C}, shy[1] = {C};
    kiln_tensor_init(&in[0], KILN_F32, 2, shx);
    kiln_tensor_init(&in[1], KILN_F32, 1, shy);
    for (int64_t i = 0; i < R * C; i++) set_elem(&in[0], i, urand(-1, 1));
    for (int64_t i = 0; i < C; i++) set_elem(&in[1], i, urand(-1, 1));
    char err[1024] = "";
    bool ok = ref_run(g, in, want, err, sizeof err);
    CHECK(ok, "ref_run: %s", err);
    CompileOptions opt = {.opt_level = opt_level};
    Executable *exe = exec_compile(backend_lookup("cpu"), g, &opt, err, sizeof err);
    CHECK(exe != NULL, "cpu compile (-O%d): %s", opt_level, err);
    if (exe && ok) {
        for (int rep = 0; rep < 3; rep++) {
            memset(got, 0, sizeof got);
            bool ran = exec_run(exe, in, got, err, sizeof err) == KILN_OK;
            CHECK(ran, "cpu run: %s", err);
            if (!ran) break;
            for (int i = 0; i < 4; i++) {
                int64_t n = kiln_tensor_numel(&want[i]), bad = 0;
                CHECK(kiln_tensor_numel(&got[i]) == n && got[i].rank == want[i].rank, "result %d has the wrong shape", i);
                for (int64_t e = 0; e < n && kiln_tensor_numel(&got[i]) == n; e++)
                    bad += !close_enough_atol(get_elem(&got[i], e), get_elem(&want[i], e), KILN_F32, 1e-5, 1e-5);
                CHECK(bad == 0, "-O%d result %d: %lld wrong", opt_level, i, (long long)bad);
                kiln_tensor_free(&got[i]);
            }
        }
        BenchReport rep = {0};
        bool b = exec_bench(exe, in, 3, &rep, err, sizeof err) == KILN_OK;
        CHECK(b && rep.runs == 3 && rep.kernels.len >= 1 && rep.run_ms >= 0, "cpu bench: %s", err);
        VEC_FREE(rep.kernels);
        /* a wrong input is refused with a message */
        KilnTensor bad_in[2] = {in[1], in[0]};
        CHECK(exec_run(exe, bad_in, got, err, sizeof err) == KILN_ERR_USAGE && strstr(err, "input"),
              "swapped inputs accepted");
    }
    exec_destroy(exe);
    for (int i = 0; ok && i < 4; i++) kiln_tensor_free(&want[i]);
    kiln_tensor_free(&in[0]);
    kiln_tensor_free(&in[1]);
    ir_graph_destroy(g);
    arena_free(ga);
}

/* A sized unit's division by a magic number (llvm_div_magic): exact for
 * every dividend in [0, 2^32) and divisor in [2, 2^32]; checked at the
 * edges (0, d - 1, d, d + 1, multiples, 2^31, 2^32 - 1) and over seeded
 * random dividends, for small, power-of-two, odd, conv-plane (3136,
 * 12544) and near-2^31, near-2^32 divisors. */
static void test_div_magic(void) {
    uint64_t ds[64];
    int nd = 0;
    const uint64_t fixed[] = {2,
                              3,
                              5,
                              7,
                              9,
                              10,
                              12,
                              49,
                              196,
                              784,
                              3136,
                              12544,
                              1000,
                              65535,
                              65537,
                              (1ull << 31) - 1,
                              1ull << 31,
                              (1ull << 31) + 1,
                              (1ull << 32) - 1,
                              1ull << 32};
    for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) ds[nd++] = fixed[i];
    for (int k = 2; k < 32; k += 3) ds[nd++] = 1ull << k;
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    int bad = 0, checked = 0;
    for (int i = 0; i < nd; i++) {
        uint64_t d = ds[i], c = llvm_div_magic(d);
        uint64_t ns[16] = {0,
                           1,
                           d - 1,
                           d,
                           d + 1,
                           2 * d - 1,
                           2 * d,
                           (1ull << 31) - 1,
                           1ull << 31,
                           (1ull << 32) - 1,
                           (1ull << 32) - 2,
                           ((1ull << 32) - 1) / d * d,
                           0,
                           0,
                           0,
                           0};
        int nn = 12;
        for (int j = 0; j < 2000 + nn; j++) {
            uint64_t n;
            if (j < nn)
                n = ns[j];
            else {
                rng = rng * 6364136223846793005ull + 1442695040888963407ull;
                n = rng >> 32;
            }
            if (n >= (1ull << 32)) continue;
            uint64_t q = (uint64_t)(((unsigned __int128)c * n) >> 64);
            checked++;
            if (q != n / d && bad++ < 5)
                printf("FAIL div magic: %llu / %llu gives %llu\n", (unsigned long long)n,
                       (unsigned long long)d, (unsigned long long)q);
        }
    }
    CHECK(bad == 0, "llvm_div_magic: %d of %d quotients wrong", bad, checked);
}

int main(void) {
    test_div_magic();
    test_elementwise_ops();
    test_casts();
    test_half_rounding();
    test_inst_kinds();
    test_reductions();
    test_argmax_ties();
    test_softmax_rows();
    test_accuracy();
    test_matmul();
    check_pad(false);
    check_pad(true);
    test_threadpool();
    test_backend(2);
    test_backend(0);
    printf("test_llvm: %d passed, %d failed\n", npass, nfail);
    return nfail ? 1 : 0;
}
