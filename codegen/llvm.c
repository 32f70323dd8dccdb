/* llvm.c - the CPU code generator: KProgram -> LLVM IR -> object code.
 *
 * Contract: reads a verified KProgram (kernel.h) and prints exactly what it
 * says as LLVM IR; no scheduling decisions are made here, only the shape of
 * the loops (docs/cpu-backend.md):
 *   - every kernel is `void NAME(i64 o_begin, i64 o_end, ptr bufs)`, which
 *     loads the pointers of the buffers it uses and calls NAME.generic (or,
 *     for a matmul that fits the tiled path, NAME.mm) with them as `noalias`
 *     arguments;
 *   - the outer index o is one loop; each stage is a loop over r inside it
 *     (none when its extent is 1), so an elementwise kernel is ONE flat loop;
 *   - index arithmetic runs in i32 when interval analysis proves every index
 *     value fits (vectorisable division by constants), else in i64; guarded
 *     loads may see negative indices (padding), so ranges are signed;
 *   - f16 and bf16 values live in float registers, rounded to their format
 *     (to nearest even) after every operation, as the reference does; bool
 *     lives in i1 and in memory as one byte;
 *   - exp/log/sin/cos/tanh/erf on f32 (and thus sigmoid, silu, gelu) are
 *     kiln's own polynomial approximations, internal always-inline functions
 *     the loop vectoriser sees through; f64 calls libm;
 *   - every float operation carries the `contract` fast-math flag (FMA);
 *     reduction accumulations also carry `reassoc` so they vectorise, and
 *     divisions `arcp` (loop-invariant divisors become one reciprocal);
 *   - matmul kernels whose reduction is a plain f32 sum of strided A and B
 *     loads (KMatmul) get a packed, cache-blocked, register-tiled loop nest
 *     (emit_matmul_fn) with the epilogue applied per tile row;
 *   - each module is verified, then optimised for a target machine of the
 *     host CPU (a NULL target machine gives no vectorisation) with a lean
 *     pipeline (KILN_PIPELINE), and compiled to object code; the CPU
 *     backend compiles each distinct kernel as a module of its own
 *     (runtime/cpu_code.c), on parallel threads.
 */
#include "codegen/llvm.h"

#include <llvm-c/Analysis.h>
#include <llvm-c/DebugInfo.h>
#include <llvm-c/ErrorHandling.h>
#include <llvm-c/Error.h>
#include <llvm-c/Support.h>
#include <llvm-c/Target.h>
#include <llvm-c/Transforms/PassBuilder.h>

#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>
#include <unistd.h>

/* ------------------------------------------------------------ context */

typedef struct {
    LLVMContextRef ctx;
    LLVMModuleRef mod;
    LLVMBuilderRef b;
    const KProgram *p;
    int vec_floats;      /* floats per vector register: 16 (AVX-512), 8 (AVX2), 4 */
    bool embedded_bcast; /* the micro-kernel's FMAs each broadcast A from memory (AMD Zen 1-4:
                          * ukernel_embedded_bcast) rather than sharing one per row */
    int direct_rows;     /* output rows the direct form's grouped rows compute at once
                          * (direct_rows_at_once); 0: DIRECT_ROWS_AT_ONCE */
    bool s2_rows;        /* stride-2 depthwise rows de-interleaved in registers
                          * (direct_s2_rows_ok: AMD Zen 5) */
    bool s1_rows;        /* the same form for stride-1 rows */
    bool pad_prefetch;   /* kiln.conv.pad_rows prefetches its input rows (AMD Zen 5:
                          * PAD_AHEAD_BYTES) */
    bool tile_t_calls;   /* taps tiles transposed by a shared helper (helper_tile_t: Zen 5) */
    bool one_k_block;    /* products of K up to 2 KC streaming a large B run one K block
                          * (one_k_block: Zen 5) */
    bool a_ahead;        /* a sized nest's first column panel prefetches A's panel two
                          * tiles ahead through the micro-kernel's slot (AMD Zen 5) */
    bool small_reads_unfetched; /* a sized product's tiles prefetch no epilogue operand it reads
                                 * smaller than READ_PREFETCH_MIN_BYTES (AMD Zen 5) */
    bool taps_l1_small;         /* taps row blocks bounded by TAPS_L1_BLOCK_BYTES_ZEN5 (Zen 5) */
    bool wino;                  /* 3x3 stride-1 layers by Winograd F(2x2,3x3) (conv_wino: Zen 5) */
    bool pack_rows;             /* kiln.mm.pack.f32.NR copies full panels a k row at a time (Zen 5) */
    bool stem_direct;           /* a stride-2 taps conv over few channels (the stem) in the
                                 * direct form (stem_direct: Zen 5) */
    bool im2col_rows_ahead;     /* im2col_rows prefetches its input rows IM2COL_ROWS_AHEAD rows
                                 * below (AMD Zen 5) */
    bool row_chains;            /* the one-row corner (.r1vV) sums its k steps in
                                 * UKERNEL_ROW_CHAINS chains (ukernel_chains: Zen 5) */
    bool whole_rows_fast;       /* a sized plane-rows epilogue runs blocks of whole rows
                                 * without per-row bounds (emit_tile_epilogue: Zen 5) */
    bool plane_one_panel;       /* a swapped product of one small image runs one panel a row
                                 * block (swap_one_panel: Zen 5) */
    bool ragged_rows;           /* NAME.cols reads a row range from its c1's high bits
                                 * (cols_row_range, llvm_ragged_split_rows: Zen 5) */
    bool aot;       /* an object for `kiln aot`: no state kept between runs */
    bool sized;     /* a unit of runtime/cpu_code.c: its size-generic products (llvm_kernel_sizes)
                     * read their sizes from the table's values slot */
    /* the shared helpers (shared_helper): NULL: internal to the module;
     * else external, named NAME + helper_suffix, and defined here only
     * when define_helpers (llvm_compile_helpers); uses_helpers: declared */
    const char *helper_suffix;
    bool define_helpers, uses_helpers;
    LLVMTypeRef t_void, t_i1, t_i8, t_i16, t_i32, t_i64, t_f16, t_f32, t_f64, t_ptr;
    /* helper functions, made on first use */
    LLVMValueRef h_exp, h_log, h_sin, h_cos, h_tanh, h_erf, h_gelu, h_ipow;
    LLVMValueRef g_two_over_pi; /* sin/cos: the bits of 2/pi, per exponent (two_over_pi_table) */
    unsigned k_alwaysinline, k_noalias, k_nounwind, k_noinline;
} Cg;

/* Per kernel function being emitted. */
typedef struct {
    Cg *cg;
    const Kernel *k;
    LLVMValueRef fn;
    LLVMValueRef *bufptr; /* per program buffer: its pointer argument, or NULL */
    LLVMValueRef *val;    /* per instruction */
    LLVMValueRef *r;      /* per stage: the current inner index */
    LLVMValueRef *acc;    /* per stage: the REDUCE result */
    LLVMValueRef o;       /* the current outer index */
    LLVMTypeRef idx_t;    /* i32 or i64 */
    bool narrow;
    KRange *range;  /* per instruction (kernel_index_ranges) */
    int skip_stage; /* matmul epilogue: the stage whose value is given in acc[] */
    /* a tiled product's epilogue: o = gemm_row * gemm_n + gemm_col with
     * gemm_col in [0, gemm_n) (index type), which gemm_index uses */
    LLVMValueRef gemm_row, gemm_col;
    int64_t gemm_n;
    bool pixel_rows; /* ... run over a row buffer's output rows (conv_row_ld, or a swapped
                      * product's planes, plane_rows) */
    /* a size-generic unit's epilogue (llvm_kernel_sizes): the kernel's
     * values (i64 array: the block's integer slots, then the epilogue's
     * constants); per instruction, whether it is live (those not are not
     * emitted) and the value of a constant read from there, else NULL */
    LLVMValueRef sizes;
    const bool *live;
    LLVMValueRef *preset;
    LLVMValueRef *magic; /* per division: its divisor's multiply-shift magic (magic_divide), or NULL */
    /* values a reduce stage computes and a later map stage of the same
     * extent computes again (softmax's exp(x - max)): per instruction, the
     * row cache its values go to (a reduce stage's) or come from (the map
     * stage's), else NULL; see find_row_reuse */
    LLVMValueRef *row_cache;
    bool *row_cache_reads;
    /* a tile row's run of contiguous output (store_runs): the last stage's
     * store goes to run_base + run_j instead of its index's value */
    LLVMValueRef run_base, run_j;
} Kc;

static const unsigned FM_CONTRACT = LLVMFastMathAllowContract;
static const unsigned FM_REDUCE = LLVMFastMathAllowContract | LLVMFastMathAllowReassoc;

static LLVMValueRef fm(LLVMValueRef v, unsigned flags) {
    if (LLVMIsAInstruction(v) && LLVMCanValueUseFastMathFlags(v)) LLVMSetFastMathFlags(v, flags);
    return v;
}

static bool is_floatlike(KilnDType dt) {
    return dt == KILN_F32 || dt == KILN_F16 || dt == KILN_BF16 || dt == KILN_F64;
}
static bool is_intlike(KilnDType dt) { return dt == KILN_I32 || dt == KILN_I64; }

/* The register type of a dtype. */
static LLVMTypeRef reg_type(Cg *cg, KilnDType dt) {
    switch (dt) {
    case KILN_F32:
    case KILN_F16:
    case KILN_BF16: return cg->t_f32;
    case KILN_F64: return cg->t_f64;
    case KILN_I32: return cg->t_i32;
    case KILN_I64: return cg->t_i64;
    case KILN_BOOL: return cg->t_i1;
    case KILN_NUM_DTYPES: break;
    }
    return cg->t_f32;
}

/* The memory type of a dtype. */
static LLVMTypeRef mem_type(Cg *cg, KilnDType dt) {
    switch (dt) {
    case KILN_F16: return cg->t_f16;
    case KILN_BF16: return cg->t_i16;
    case KILN_BOOL: return cg->t_i8;
    default: return reg_type(cg, dt);
    }
}

static LLVMValueRef cf(Cg *cg, double v) { return LLVMConstReal(cg->t_f32, v); }
static LLVMValueRef ci32(Cg *cg, int64_t v) { return LLVMConstInt(cg->t_i32, (unsigned long long)v, 1); }
static LLVMValueRef ci64(Cg *cg, int64_t v) { return LLVMConstInt(cg->t_i64, (unsigned long long)v, 1); }

/* A function name "A" + "B" on the heap (free() it).  Not in the program's
 * arena: parts of a program are compiled on several threads at once. */
static char *name2(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *s = xmalloc(la + lb + 1);
    memcpy(s, a, la);
    memcpy(s + la, b, lb + 1);
    return s;
}

static void add_fn_attr(Cg *cg, LLVMValueRef fn, unsigned kind) {
    LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, LLVMCreateEnumAttribute(cg->ctx, kind, 0));
}

/* A call to intrinsic `name` overloaded on the types `over`. */
static LLVMValueRef intrin(Cg *cg, const char *name, LLVMTypeRef *over, int nover, LLVMValueRef *args, int nargs) {
    unsigned id = LLVMLookupIntrinsicID(name, strlen(name));
    LLVMValueRef fn = LLVMGetIntrinsicDeclaration(cg->mod, id, over, (size_t)nover);
    LLVMTypeRef fty = LLVMIntrinsicGetType(cg->ctx, id, over, (size_t)nover);
    return LLVMBuildCall2(cg->b, fty, fn, args, (unsigned)nargs, "");
}
static LLVMValueRef intrin1(Cg *cg, const char *name, LLVMValueRef x) {
    LLVMTypeRef t = LLVMTypeOf(x);
    return intrin(cg, name, &t, 1, &x, 1);
}
static LLVMValueRef intrin2(Cg *cg, const char *name, LLVMValueRef x, LLVMValueRef y) {
    LLVMTypeRef t = LLVMTypeOf(x);
    LLVMValueRef a[2] = {x, y};
    return intrin(cg, name, &t, 1, a, 2);
}

/* A prefetch of addr's line: for writing or reading, locality 0-3 (3: keep
 * it in every cache level), into the data cache. */
static void prefetch_at(Cg *cg, LLVMValueRef addr, bool write, int locality) {
    LLVMValueRef args[4] = {addr, ci32(cg, write), ci32(cg, locality), ci32(cg, 1)};
    intrin(cg, "llvm.prefetch", &cg->t_ptr, 1, args, 4);
}
static LLVMValueRef fma3(Cg *cg, LLVMValueRef a, LLVMValueRef x, LLVMValueRef y) {
    LLVMTypeRef t = LLVMTypeOf(a);
    LLVMValueRef args[3] = {a, x, y};
    return intrin(cg, "llvm.fma", &t, 1, args, 3);
}

/* Float arithmetic with `contract`. */
static LLVMValueRef f_add(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return fm(LLVMBuildFAdd(cg->b, a, b, ""), FM_CONTRACT); }
static LLVMValueRef f_sub(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return fm(LLVMBuildFSub(cg->b, a, b, ""), FM_CONTRACT); }
static LLVMValueRef f_mul(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return fm(LLVMBuildFMul(cg->b, a, b, ""), FM_CONTRACT); }
/* Divisions may use a reciprocal (`arcp`): by a loop-invariant divisor LICM
 * turns them into one reciprocal per loop and a multiply per element (x /
 * sum in softmax, about 1 ulp from the division).  Not for 1/sqrt(x), which
 * x86 would then estimate (wrong at 0 and inf): see f_div_exact. */
static LLVMValueRef f_div(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
    return fm(LLVMBuildFDiv(cg->b, a, b, ""), FM_CONTRACT | LLVMFastMathAllowReciprocal);
}
static LLVMValueRef f_div_exact(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
    return fm(LLVMBuildFDiv(cg->b, a, b, ""), FM_CONTRACT);
}
static LLVMValueRef fcmp(Cg *cg, LLVMRealPredicate p, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildFCmp(cg->b, p, a, b, "");
}
static LLVMValueRef sel(Cg *cg, LLVMValueRef c, LLVMValueRef a, LLVMValueRef b) {
    return LLVMBuildSelect(cg->b, c, a, b, "");
}
/* Signed index arithmetic (nsw) and bounds. */
static LLVMValueRef imin(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return intrin2(cg, "llvm.smin", a, b); }
static LLVMValueRef imax(Cg *cg, LLVMValueRef a, LLVMValueRef b) { return intrin2(cg, "llvm.smax", a, b); }
/* A value that is a when control came from block from_a, b when from from_b */
static LLVMValueRef phi2(Cg *cg, LLVMTypeRef type, const char *name, LLVMValueRef a, LLVMBasicBlockRef from_a,
                         LLVMValueRef b, LLVMBasicBlockRef from_b) {
    LLVMValueRef phi = LLVMBuildPhi(cg->b, type, name);
    LLVMValueRef vals[2] = {a, b};
    LLVMBasicBlockRef from[2] = {from_a, from_b};
    LLVMAddIncoming(phi, vals, from, 2);
    return phi;
}
static LLVMValueRef iadd(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
    LLVMValueRef r = LLVMBuildAdd(cg->b, a, b, "");
    if (LLVMIsAInstruction(r)) LLVMSetNSW(r, 1);
    return r;
}
static LLVMValueRef imul(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
    LLVMValueRef r = LLVMBuildMul(cg->b, a, b, "");
    if (LLVMIsAInstruction(r)) LLVMSetNSW(r, 1);
    return r;
}

/* Horner's scheme: c[0] + x*(c[1] + x*(...)), with FMAs. */
static LLVMValueRef horner(Cg *cg, LLVMValueRef x, const double *c, int n) {
    LLVMValueRef y = cf(cg, c[n - 1]);
    for (int i = n - 2; i >= 0; i--) y = fma3(cg, y, x, cf(cg, c[i]));
    return y;
}
static LLVMValueRef bits_to_float(Cg *cg, LLVMValueRef i) { return LLVMBuildBitCast(cg->b, i, cg->t_f32, ""); }
static LLVMValueRef float_to_bits(Cg *cg, LLVMValueRef f) { return LLVMBuildBitCast(cg->b, f, cg->t_i32, ""); }

/* --------------------------------------------- float math approximations
 *
 * Each is an internal always-inline `float kiln.NAME(float)`, built once per
 * module; the loop vectoriser sees through them after inlining.  Maximum
 * error against double-precision libm, in units in the last place of the
 * f32 result, measured on 2^18 points per range by tests/unit/test_llvm.c
 * (which enforces the bound in brackets; docs/cpu-backend.md has the table):
 *   exp   Cephes: x = n ln2 + r, |r| <= ln2/2 (2-part ln2, FMAs), degree-6
 *         polynomial; 2^n applied in two halves so that results near the
 *         overflow and in the subnormal range are right.
 *         0.97 ulp on [-87, 88], 0.75 on [-103, -87] (subnormal results) [2]
 *   log   x = 2^e m, m in [sqrt(1/2), sqrt(2)), Cephes degree-9 polynomial
 *         in m-1; subnormal inputs pre-scaled.  0.80 ulp, all floats [2]
 *   sin, cos  j = nearest integer to x 2/pi, r = x - j pi/2 with a 3-part
 *         pi/2 (from 60 digits) and FMAs, Cephes polynomials on [-pi/4, pi/4],
 *         quadrant from j mod 4.  1.5 ulp for |x| <= 1e4 [2]; the reduction
 *         stays accurate to |x| ~ 1e5.
 *   tanh  |x| < 0.625: Cephes odd polynomial; else 1 - 2/(exp(2|x|)+1),
 *         exp without the subnormal and NaN handling (exp_small_nonneg).
 *         1.26 ulp [3]
 *   erf   |x| < 0.875: x + x (P(x^2) - 1), P of degree 6 (fitted, relative
 *         error 1.2e-9); else 1 - erfc(|x|), erfc(a) = exp(T(u)) exp(-a^2)
 *         with T of degree 8 in u = (a - 2.4375)/1.5625 (fitted, absolute
 *         error 1.2e-8) and a^2 split exactly with an FMA.  1.6 ulp [2]
 *   gelu  0.5 x (1 + erf(x/sqrt 2)): for |x/sqrt 2| < 0.875, 1 + erf from
 *         erf's inner polynomial; beyond, from one erfc(a), a = |x/sqrt 2|,
 *         shared by both sides (0.5 x (2 - erfc) above zero, 0.5 x erfc
 *         below), erfc = F(a) exp(-a^2) with F = exp(T) on [0.875, 4] and
 *         Q(1/a^2)/(a sqrt pi) beyond, a^2 taken exactly from x: 4.95 ulp on
 *         [-5.5, 8] [6]; below -5.5 the result is under 1e-7 and off by less
 *         than 1e-12.
 *   gelu(approximate) = x / (1 + exp(v)), v = -2u computed in double and
 *         applied as exp(v_hi)(1 + v_lo): 2.5 ulp on [-5.5, 8] [4].
 *   sigmoid: e = exp(-|x|), 1/(1 + e) or e/(1 + e): 2.1 ulp [3]; silu = x/(1 + exp(-x)): 2.2 [3].
 * NaN in gives NaN out; infinities give the limits.  f64 calls libm.
 */

typedef struct {
    LLVMBasicBlockRef saved;
    LLVMValueRef fn;
} HelperScope;

static LLVMValueRef helper_begin(Cg *cg, const char *name, LLVMTypeRef ret, LLVMTypeRef *params, int np,
                                 HelperScope *hs) {
    hs->saved = LLVMGetInsertBlock(cg->b);
    LLVMTypeRef fty = LLVMFunctionType(ret, params, (unsigned)np, 0);
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, fty);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    add_fn_attr(cg, fn, cg->k_alwaysinline);
    add_fn_attr(cg, fn, cg->k_nounwind);
    LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry"));
    hs->fn = fn;
    return fn;
}
static void helper_end(Cg *cg, HelperScope *hs, LLVMValueRef ret) {
    LLVMBuildRet(cg->b, ret);
    if (hs->saved) LLVMPositionBuilderAtEnd(cg->b, hs->saved);
}

static LLVMValueRef call_helper(Cg *cg, LLVMValueRef fn, LLVMValueRef *args, int n) {
    return LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(fn), fn, args, (unsigned)n, "");
}

/* 2^n for i32 n in [-252, 254], as two float factors multiplied into y. */
static LLVMValueRef scale_pow2(Cg *cg, LLVMValueRef y, LLVMValueRef n) {
    LLVMValueRef n1 = LLVMBuildAShr(cg->b, n, ci32(cg, 1), "");
    LLVMValueRef n2 = LLVMBuildSub(cg->b, n, n1, "");
    LLVMValueRef s1 = bits_to_float(cg, LLVMBuildShl(cg->b, LLVMBuildAdd(cg->b, n1, ci32(cg, 127), ""), ci32(cg, 23), ""));
    LLVMValueRef s2 = bits_to_float(cg, LLVMBuildShl(cg->b, LLVMBuildAdd(cg->b, n2, ci32(cg, 127), ""), ci32(cg, 23), ""));
    return f_mul(cg, f_mul(cg, y, s1), s2);
}

/* The shared core of exp: for xc in [-104, 89] (no NaN), returns the
 * polynomial value y = e^r, r = xc - n ln2 in [-ln2/2, ln2/2], and sets *t to
 * xc log2(e) + 1.5*2^23: its bit pattern minus that of 1.5*2^23 is n (the FMA
 * rounds to the nearest integer at the add, which saves roundeven and a
 * float-to-int conversion). */
#define EXP_MAGIC 12582912.0 /* 1.5 * 2^23 */
static LLVMValueRef exp_core(Cg *cg, LLVMValueRef xc, LLVMValueRef *t) {
    *t = fma3(cg, xc, cf(cg, 1.44269504088896341), cf(cg, EXP_MAGIC));
    LLVMValueRef z = f_sub(cg, *t, cf(cg, EXP_MAGIC));
    LLVMValueRef r = fma3(cg, z, cf(cg, -0.693359375), xc);
    r = fma3(cg, z, cf(cg, 2.12194440e-4), r);
    static const double P[] = {5.0000001201E-1, 1.6666665459E-1, 4.1665795894E-2,
                               8.3334519073E-3, 1.3981999507E-3, 1.9875691500E-4};
    LLVMValueRef p = horner(cg, r, P, 6);
    return f_add(cg, fma3(cg, p, f_mul(cg, r, r), r), cf(cg, 1.0));
}

static LLVMValueRef helper_exp(Cg *cg) {
    if (cg->h_exp) return cg->h_exp;
    HelperScope hs;
    LLVMValueRef fn = helper_begin(cg, "kiln.exp", cg->t_f32, &cg->t_f32, 1, &hs);
    LLVMValueRef x = LLVMGetParam(fn, 0);
    /* clamp (NaN passes through the selects; fixed at the end) */
    LLVMValueRef xc = sel(cg, fcmp(cg, LLVMRealOGT, x, cf(cg, 89.0)), cf(cg, 89.0), x);
    xc = sel(cg, fcmp(cg, LLVMRealOLT, xc, cf(cg, -104.0)), cf(cg, -104.0), xc);
    LLVMValueRef t;
    LLVMValueRef y = exp_core(cg, xc, &t);
    LLVMValueRef n = LLVMBuildSub(cg->b, float_to_bits(cg, t), ci32(cg, 0x4b400000), "");
    y = scale_pow2(cg, y, n);
    y = sel(cg, fcmp(cg, LLVMRealUNO, x, x), x, y);
    helper_end(cg, &hs, y);
    return cg->h_exp = fn;
}

/* exp(x) for x in [-87, 40] (larger x are clamped to 40; NaN gives poison;
 * gelu passes T(u), in [-2, 0]): 2^n is then one normal float, made from
 * t's low bits (0 < n + 127 < 256). */
static LLVMValueRef exp_small_nonneg(Cg *cg, LLVMValueRef x) {
    LLVMValueRef xc = sel(cg, fcmp(cg, LLVMRealOGT, x, cf(cg, 40.0)), cf(cg, 40.0), x);
    LLVMValueRef t;
    LLVMValueRef y = exp_core(cg, xc, &t);
    LLVMValueRef tb = LLVMBuildAdd(cg->b, float_to_bits(cg, t), ci32(cg, 127), "");
    return f_mul(cg, y, bits_to_float(cg, LLVMBuildShl(cg->b, tb, ci32(cg, 23), "")));
}

static LLVMValueRef call_exp(Cg *cg, LLVMValueRef x) { return call_helper(cg, helper_exp(cg), &x, 1); }

/* exp(x) = y 2^n with y in [0.7, 1.42] and n an i32, for x in [-150, 89]
 * (clamped): a product with exp(x) stays normal until the caller applies 2^n
 * last (scale_pow2), so a result near the bottom of the float range is still
 * rounded only once -- silu and gelu far below zero are exp(x) times a
 * factor. */
static LLVMValueRef exp_split(Cg *cg, LLVMValueRef x, LLVMValueRef *n) {
    LLVMValueRef xc = sel(cg, fcmp(cg, LLVMRealOGT, x, cf(cg, 89.0)), cf(cg, 89.0), x);
    xc = sel(cg, fcmp(cg, LLVMRealOLT, xc, cf(cg, -150.0)), cf(cg, -150.0), xc);
    LLVMValueRef t;
    LLVMValueRef y = exp_core(cg, xc, &t);
    *n = LLVMBuildSub(cg->b, float_to_bits(cg, t), ci32(cg, 0x4b400000), "");
    return y;
}

static LLVMValueRef helper_log(Cg *cg) {
    if (cg->h_log) return cg->h_log;
    HelperScope hs;
    LLVMValueRef fn = helper_begin(cg, "kiln.log", cg->t_f32, &cg->t_f32, 1, &hs);
    LLVMValueRef x = LLVMGetParam(fn, 0);
    LLVMValueRef small = fcmp(cg, LLVMRealOLT, x, cf(cg, 1.17549435e-38));
    LLVMValueRef xs = sel(cg, small, f_mul(cg, x, cf(cg, 33554432.0)), x);
    LLVMValueRef eadj = sel(cg, small, ci32(cg, -25), ci32(cg, 0));
    LLVMValueRef bits = float_to_bits(cg, xs);
    LLVMValueRef e = LLVMBuildAnd(cg->b, LLVMBuildLShr(cg->b, bits, ci32(cg, 23), ""), ci32(cg, 0xff), "");
    e = LLVMBuildAdd(cg->b, LLVMBuildSub(cg->b, e, ci32(cg, 126), ""), eadj, "");
    LLVMValueRef m = bits_to_float(cg, LLVMBuildOr(cg->b, LLVMBuildAnd(cg->b, bits, ci32(cg, (int32_t)0x807fffff), ""),
                                                   ci32(cg, 0x3f000000), ""));
    LLVMValueRef lt = fcmp(cg, LLVMRealOLT, m, cf(cg, 0.707106781186547524));
    e = LLVMBuildSub(cg->b, e, LLVMBuildZExt(cg->b, lt, cg->t_i32, ""), "");
    m = sel(cg, lt, f_sub(cg, f_add(cg, m, m), cf(cg, 1.0)), f_sub(cg, m, cf(cg, 1.0)));
    LLVMValueRef z = f_mul(cg, m, m);
    static const double P[] = {3.3333331174E-1,  -2.4999993993E-1, 2.0000714765E-1,
                               -1.6668057665E-1, 1.4249322787E-1,  -1.2420140846E-1,
                               1.1676998740E-1,  -1.1514610310E-1, 7.0376836292E-2};
    LLVMValueRef y = f_mul(cg, f_mul(cg, horner(cg, m, P, 9), m), z);
    LLVMValueRef fe = LLVMBuildSIToFP(cg->b, e, cg->t_f32, "");
    y = fma3(cg, fe, cf(cg, -2.12194440e-4), y);
    y = fma3(cg, z, cf(cg, -0.5), y);
    LLVMValueRef res = f_add(cg, m, y);
    res = fma3(cg, fe, cf(cg, 0.693359375), res);
    res = sel(cg, fcmp(cg, LLVMRealOEQ, x, cf(cg, INFINITY)), x, res);
    res = sel(cg, fcmp(cg, LLVMRealOEQ, x, cf(cg, 0.0)), cf(cg, -INFINITY), res);
    res = sel(cg, fcmp(cg, LLVMRealULT, x, cf(cg, 0.0)), cf(cg, NAN), res);
    helper_end(cg, &hs, res);
    return cg->h_log = fn;
}

/* The bits of 2/pi after the binary point (computed with Machin's formula
 * in integer arithmetic; the first 24 bits, a2f983, are fdlibm's too). */
static const char TWO_OVER_PI_HEX[] = "a2f9836e4e441529fc2757d1f534ddc0db6295993c439041fe5163abdebbc561";
enum { PH_MIN_EXP = 142 }; /* the large reduction serves |x| >= 2^15 (biased exponent 142) */

/* Bit k (k >= 1: the bit worth 2^-k) of 2/pi; 0 for k <= 0. */
static unsigned two_over_pi_bit(int k) {
    if (k < 1 || k > 4 * (int)(sizeof TWO_OVER_PI_HEX - 1)) return 0;
    char c = TWO_OVER_PI_HEX[(k - 1) / 4];
    unsigned v = (unsigned)(c <= '9' ? c - '0' : c - 'a' + 10);
    return (v >> (3 - (k - 1) % 4)) & 1;
}

/* For each biased exponent b from PH_MIN_EXP to 254, three 32-bit words:
 * the bits of 2^E (2/pi), E = b - 150, worth 2^1 down to 2^-94 (bits k =
 * E - 1 ... E + 94 of 2/pi): what a float of exponent b is multiplied by. */
static LLVMValueRef two_over_pi_table(Cg *cg) {
    if (cg->g_two_over_pi) return cg->g_two_over_pi;
    int rows = 255 - PH_MIN_EXP;
    LLVMValueRef *words = xcalloc((size_t)rows * 3, sizeof(LLVMValueRef));
    for (int row = 0; row < rows; row++) {
        int e = row + PH_MIN_EXP - 150;
        for (int w = 0; w < 3; w++) {
            uint32_t v = 0;
            for (int bit = 0; bit < 32; bit++) v = v << 1 | two_over_pi_bit(e - 1 + 32 * w + bit);
            words[row * 3 + w] = LLVMConstInt(cg->t_i32, v, 0);
        }
    }
    LLVMTypeRef at = LLVMArrayType(cg->t_i32, (unsigned)(rows * 3));
    LLVMValueRef g = LLVMAddGlobal(cg->mod, at, "kiln.two_over_pi");
    LLVMSetInitializer(g, LLVMConstArray(cg->t_i32, words, (unsigned)(rows * 3)));
    LLVMSetGlobalConstant(g, 1);
    LLVMSetLinkage(g, LLVMInternalLinkage);
    free(words);
    return cg->g_two_over_pi = g;
}

/* Payne-Hanek reduction of |x| >= 2^15: |x| = M 2^E (M the 24-bit
 * significand), |x| 2/pi = M (2^E 2/pi); the 96 bits of 2^E 2/pi from 2^1 to
 * 2^-94 suffice (higher ones add multiples of 4, lower ones less than
 * 2^-70).  Their product with M, taken mod 4 as 64-bit fixed point with 62
 * fractional bits, gives the quadrant n (rounded to nearest) and the rest,
 * in [-1/2, 1/2), scaled by pi/2 in double.  *j gets n as a float. */
static LLVMValueRef reduce_large(Cg *cg, LLVMValueRef ax, LLVMValueRef *j) {
    LLVMValueRef bits = float_to_bits(cg, ax);
    LLVMValueRef b = LLVMBuildLShr(cg->b, bits, ci32(cg, 23), "");
    LLVMValueRef row = imax(cg, LLVMBuildSub(cg->b, b, ci32(cg, PH_MIN_EXP), ""), ci32(cg, 0));
    row = imin(cg, row, ci32(cg, 254 - PH_MIN_EXP)); /* inf, NaN: any row (the caller keeps NaN) */
    LLVMValueRef m = LLVMBuildOr(cg->b, LLVMBuildAnd(cg->b, bits, ci32(cg, 0x7fffff), ""), ci32(cg, 0x800000), "");
    LLVMValueRef m64 = LLVMBuildZExt(cg->b, m, cg->t_i64, "");
    LLVMValueRef table = two_over_pi_table(cg), w[3];
    LLVMTypeRef at = LLVMGlobalGetValueType(table);
    for (int k = 0; k < 3; k++) {
        LLVMValueRef ix[2] = {ci32(cg, 0), LLVMBuildAdd(cg->b, LLVMBuildMul(cg->b, row, ci32(cg, 3), ""), ci32(cg, k), "")};
        LLVMValueRef ptr = LLVMBuildGEP2(cg->b, at, table, ix, 2, "");
        w[k] = LLVMBuildMul(cg->b, m64, LLVMBuildZExt(cg->b, LLVMBuildLoad2(cg->b, cg->t_i32, ptr, ""), cg->t_i64, ""), "");
    }
    LLVMValueRef c32 = LLVMConstInt(cg->t_i64, 32, 0);
    LLVMValueRef t = LLVMBuildAdd(cg->b, LLVMBuildShl(cg->b, w[0], c32, ""), w[1], "");
    t = LLVMBuildAdd(cg->b, t, LLVMBuildLShr(cg->b, w[2], c32, ""), "");
    LLVMValueRef n = LLVMBuildLShr(cg->b, LLVMBuildAdd(cg->b, t, LLVMConstInt(cg->t_i64, 1ull << 61, 0), ""),
                                   LLVMConstInt(cg->t_i64, 62, 0), "");
    LLVMValueRef f = LLVMBuildSub(cg->b, t, LLVMBuildShl(cg->b, n, LLVMConstInt(cg->t_i64, 62, 0), ""), "");
    LLVMValueRef r = LLVMBuildFMul(cg->b, LLVMBuildSIToFP(cg->b, f, cg->t_f64, ""),
                                   LLVMConstReal(cg->t_f64, ldexp(1.5707963267948966, -62)), "");
    *j = LLVMBuildUIToFP(cg->b, n, cg->t_f32, "");
    return LLVMBuildFPTrunc(cg->b, r, cg->t_f32, "");
}

/* sin (cos_shift 0) or cos (cos_shift 1). */
static LLVMValueRef helper_sincos(Cg *cg, int cos_shift) {
    LLVMValueRef *slot = cos_shift ? &cg->h_cos : &cg->h_sin;
    if (*slot) return *slot;
    HelperScope hs;
    LLVMValueRef fn = helper_begin(cg, cos_shift ? "kiln.cos" : "kiln.sin", cg->t_f32, &cg->t_f32, 1, &hs);
    LLVMValueRef x = LLVMGetParam(fn, 0);
    LLVMValueRef j = intrin1(cg, "llvm.roundeven", f_mul(cg, x, cf(cg, 0.636619772367581343)));
    LLVMValueRef nj = LLVMBuildFNeg(cg->b, j, "");
    LLVMValueRef r = fma3(cg, nj, cf(cg, 1.5707963705062866), x);
    r = fma3(cg, nj, cf(cg, -4.371138828673793e-08), r);
    r = fma3(cg, nj, cf(cg, -1.7151245100058819e-15), r);
    /* |x| >= 2^15: Payne-Hanek, exact over the whole float range (the
     * reduction of |x|; x < 0 negates both the quadrant and the rest) */
    LLVMValueRef ax = intrin1(cg, "llvm.fabs", x), jl;
    LLVMValueRef rl = reduce_large(cg, ax, &jl);
    LLVMValueRef neg = fcmp(cg, LLVMRealOLT, x, cf(cg, 0.0));
    rl = sel(cg, neg, LLVMBuildFNeg(cg->b, rl, ""), rl);
    jl = sel(cg, neg, LLVMBuildFNeg(cg->b, jl, ""), jl);
    LLVMValueRef large = fcmp(cg, LLVMRealOGE, ax, cf(cg, 32768.0));
    r = sel(cg, large, rl, r);
    j = sel(cg, large, jl, j);
    LLVMValueRef z = f_mul(cg, r, r);
    static const double S[] = {-1.6666654611E-1, 8.3321608736E-3, -1.9515295891E-4};
    static const double C[] = {4.166664568298827E-2, -1.388731625493765E-3, 2.443315711809948E-5};
    LLVMValueRef s = fma3(cg, f_mul(cg, horner(cg, z, S, 3), z), r, r);
    LLVMValueRef c = fma3(cg, f_mul(cg, horner(cg, z, C, 3), z), z, fma3(cg, z, cf(cg, -0.5), cf(cg, 1.0)));
    LLVMValueRef jj = cos_shift ? f_add(cg, j, cf(cg, 1.0)) : j;
    LLVMValueRef q = f_sub(cg, jj, f_mul(cg, intrin1(cg, "llvm.floor", f_mul(cg, jj, cf(cg, 0.25))), cf(cg, 4.0)));
    LLVMValueRef odd = LLVMBuildOr(cg->b, fcmp(cg, LLVMRealOEQ, q, cf(cg, 1.0)), fcmp(cg, LLVMRealOEQ, q, cf(cg, 3.0)), "");
    LLVMValueRef res = sel(cg, odd, c, s);
    res = sel(cg, fcmp(cg, LLVMRealOGE, q, cf(cg, 2.0)), LLVMBuildFNeg(cg->b, res, ""), res);
    res = sel(cg, fcmp(cg, LLVMRealUNO, f_sub(cg, x, x), cf(cg, 0.0)), cf(cg, NAN), res); /* inf, NaN */
    helper_end(cg, &hs, res);
    return *slot = fn;
}

static LLVMValueRef helper_tanh(Cg *cg) {
    if (cg->h_tanh) return cg->h_tanh;
    HelperScope hs;
    LLVMValueRef fn = helper_begin(cg, "kiln.tanh", cg->t_f32, &cg->t_f32, 1, &hs);
    LLVMValueRef x = LLVMGetParam(fn, 0);
    LLVMValueRef ax = intrin1(cg, "llvm.fabs", x);
    LLVMValueRef z = f_mul(cg, x, x);
    static const double P[] = {-3.33332819422E-1, 1.33314422036E-1, -5.37397155531E-2, 2.06390887954E-2,
                               -5.70498872745E-3};
    LLVMValueRef small = fma3(cg, f_mul(cg, horner(cg, z, P, 5), z), x, x);
    /* 2|x| >= 1.25 here, and tanh is 1 in f32 from |x| ~ 9: exp needs neither
     * the subnormal range nor the NaN fix (NaN takes the `small` side) */
    LLVMValueRef e = exp_small_nonneg(cg, f_add(cg, ax, ax));
    LLVMValueRef big = f_sub(cg, cf(cg, 1.0), f_div(cg, cf(cg, 2.0), f_add(cg, e, cf(cg, 1.0))));
    big = intrin2(cg, "llvm.copysign", big, x);
    LLVMValueRef res = sel(cg, fcmp(cg, LLVMRealULT, ax, cf(cg, 0.625)), small, big);
    helper_end(cg, &hs, res);
    return cg->h_tanh = fn;
}

/* erf(y) = y + y (P(y^2) - 1) for |y| < 0.875 (P fitted, relative error
 * 1.2e-9; the leading term y added last, exactly) into inner, and whether
 * |y| is below 0.875 into is_inner: erf's and gelu's middle range. */
static void erf_inner(Cg *cg, LLVMValueRef y, LLVMValueRef *inner, LLVMValueRef *is_inner) {
    static const double P[] = {0.1283791065216064,    -0.3761262595653534,  0.1128358542919159,
                               -0.026853810995817184, 0.005188326351344585, -0.0008010182064026594,
                               7.853823626646772e-05};
    *is_inner = fcmp(cg, LLVMRealOLT, intrin1(cg, "llvm.fabs", y), cf(cg, 0.875));
    *inner = fma3(cg, horner(cg, f_mul(cg, y, y), P, 7), y, y);
}

/* T(u), u = (a - 2.4375)/1.5625: erfc(a) = exp(T(u)) exp(-a^2) for a in
 * [0.875, 4] (T of degree 8 fitted there, absolute error 1.2e-8). */
static LLVMValueRef erfc_exponent(Cg *cg, LLVMValueRef a) {
    static const double T[] = {-1.5345509052276611,   -0.5622240304946899,    0.1420755535364151,
                               -0.04355074465274811,  0.013715297915041447,   -0.004193921573460102,
                               0.0012142376508563757, -0.000320734572596848,  5.6933095038402826e-05};
    return horner(cg, f_mul(cg, f_sub(cg, a, cf(cg, 2.4375)), cf(cg, 0.64)), T, 9);
}

/* The pieces of erf(y) (helper_erf): for |y| < 0.875, erf_inner; else
 * erfc(|y|) = exp(T(u)) exp(-y^2), with y^2 = hi + lo given exactly by the
 * caller. */
static void erf_parts(Cg *cg, LLVMValueRef y, LLVMValueRef hi, LLVMValueRef lo, LLVMValueRef *inner,
                      LLVMValueRef *ec, LLVMValueRef *is_inner) {
    erf_inner(cg, y, inner, is_inner);
    LLVMValueRef ay = intrin1(cg, "llvm.fabs", y);
    LLVMValueRef big = fcmp(cg, LLVMRealOGE, ay, cf(cg, 10.0)); /* erfc(10) < 2^-149 */
    LLVMValueRef a = sel(cg, big, cf(cg, 10.0), ay);
    LLVMValueRef t = erfc_exponent(cg, a);
    hi = sel(cg, big, cf(cg, 100.0), hi);
    LLVMValueRef e = f_mul(cg, call_exp(cg, t), call_exp(cg, LLVMBuildFNeg(cg->b, hi, "")));
    *ec = f_mul(cg, e, f_sub(cg, cf(cg, 1.0), lo));
    *ec = sel(cg, big, cf(cg, 0.0), *ec);
}

/* hi + lo = x * x * scale exactly (scale a power of two). */
static void exact_square(Cg *cg, LLVMValueRef x, double scale, LLVMValueRef *hi, LLVMValueRef *lo) {
    LLVMValueRef h = LLVMBuildFMul(cg->b, x, x, ""); /* no contract: the FMA below recovers the rest */
    LLVMValueRef l = fma3(cg, x, x, LLVMBuildFNeg(cg->b, h, ""));
    *hi = scale == 1 ? h : LLVMBuildFMul(cg->b, h, cf(cg, scale), "");
    *lo = scale == 1 ? l : LLVMBuildFMul(cg->b, l, cf(cg, scale), "");
}

static LLVMValueRef helper_erf(Cg *cg) {
    if (cg->h_erf) return cg->h_erf;
    HelperScope hs;
    LLVMValueRef fn = helper_begin(cg, "kiln.erf", cg->t_f32, &cg->t_f32, 1, &hs);
    LLVMValueRef y = LLVMGetParam(fn, 0), inner, ec, is_inner, hi, lo;
    exact_square(cg, y, 1, &hi, &lo);
    erf_parts(cg, y, hi, lo, &inner, &ec, &is_inner);
    LLVMValueRef outer = intrin2(cg, "llvm.copysign", f_sub(cg, cf(cg, 1.0), ec), y);
    helper_end(cg, &hs, sel(cg, is_inner, inner, outer));
    return cg->h_erf = fn;
}

/* gelu(x) = 0.5 x (1 + erf(x / sqrt 2)), y = x / sqrt 2: for |y| < 0.875
 * 0.5 x (1 + erf(y)) with erf's inner polynomial; beyond, from one erfc(|y|)
 * = F(|y|) exp(-y^2), y^2 taken exactly from x (hi + lo), exp(-hi) = e 2^n
 * with the exponent applied last, so that results down to the subnormal
 * range are right: 0.5 x (2 - erfc) above zero, 0.5 x erfc below.  F is
 * exp(T(u)) up to 4 (T fitted on [0.875, 4]) and the asymptotic series
 * beyond.  Every lane computes every piece (the vectorised epilogue of
 * MiniLM's 1536-wide feed-forward product); the two sides share F, e and n:
 * the erf pieces and the lower side each computed them before (three exps
 * and an exp_split where one exp and the exp_split do). */
static LLVMValueRef helper_gelu(Cg *cg) {
    if (cg->h_gelu) return cg->h_gelu;
    HelperScope hs;
    LLVMValueRef fn = helper_begin(cg, "kiln.gelu", cg->t_f32, &cg->t_f32, 1, &hs);
    LLVMValueRef x = LLVMGetParam(fn, 0), hi, lo, inner, is_inner;
    LLVMValueRef y = f_mul(cg, x, cf(cg, M_SQRT1_2));
    LLVMValueRef xc = sel(cg, fcmp(cg, LLVMRealOGT, intrin1(cg, "llvm.fabs", x), cf(cg, 15.0)), cf(cg, 15.0), x);
    exact_square(cg, xc, 0.5, &hi, &lo);
    erf_inner(cg, y, &inner, &is_inner);
    /* erfc(a) = exp(T(u)) exp(-a^2) for a in [0.875, 4] (erfc_exponent),
     * and Q(1/a^2) exp(-a^2) / (a sqrt pi) beyond (Q fitted on [4, 11] to
     * the asymptotic factor, relative error 1.4e-10) */
    static const double Q[] = {0.9999999965683081, -0.49999889895854993, 0.7498594987423701,
                               -1.865652148042514, 6.204678117461211,    -21.318288864016484,
                               46.93179916383563};
    LLVMValueRef a = intrin1(cg, "llvm.fabs", sel(cg, fcmp(cg, LLVMRealOLT, y, cf(cg, -10.6)), cf(cg, -10.6), y));
    LLVMValueRef far = fcmp(cg, LLVMRealOGE, a, cf(cg, 4.0));
    LLVMValueRef am = sel(cg, far, cf(cg, 4.0), a), af = sel(cg, far, a, cf(cg, 4.0));
    /* T(u) is in [-2, -0.76] on [0.875, 4] and rises to about 0 at a = 0
     * (below 0.875 the inner polynomial is taken), so its exp needs no
     * clamp, subnormal or NaN handling */
    LLVMValueRef t = erfc_exponent(cg, am), n;
    LLVMValueRef tail = f_div(cg, horner(cg, f_div(cg, cf(cg, 1.0), f_mul(cg, af, af)), Q, 7),
                              f_mul(cg, af, cf(cg, 1.7724538509055159)));
    LLVMValueRef factor = sel(cg, far, tail, exp_small_nonneg(cg, t));
    LLVMValueRef e = f_mul(cg, exp_split(cg, LLVMBuildFNeg(cg->b, hi, ""), &n), f_sub(cg, cf(cg, 1.0), lo));
    LLVMValueRef half_x = f_mul(cg, cf(cg, 0.5), x);
    LLVMValueRef upper = f_mul(cg, half_x, f_sub(cg, cf(cg, 2.0), scale_pow2(cg, f_mul(cg, factor, e), n)));
    LLVMValueRef middle = f_mul(cg, half_x, f_add(cg, cf(cg, 1.0), inner));
    LLVMValueRef lower = scale_pow2(cg, f_mul(cg, f_mul(cg, half_x, factor), e), n);
    LLVMValueRef res = sel(cg, is_inner, middle, sel(cg, fcmp(cg, LLVMRealOGT, y, cf(cg, 0.0)), upper, lower));
    res = sel(cg, fcmp(cg, LLVMRealOLT, x, cf(cg, -15.0)), cf(cg, -0.0), res); /* below 2^-149 */
    res = sel(cg, fcmp(cg, LLVMRealUNO, x, x), x, res);
    helper_end(cg, &hs, res);
    return cg->h_gelu = fn;
}

/* i64 kiln.ipow(i64 base, i64 exp): exact power with wrapping, as the
 * reference's ipow (negative exponents: 0 except for bases 1 and -1). */
static LLVMValueRef helper_ipow(Cg *cg) {
    if (cg->h_ipow) return cg->h_ipow;
    HelperScope hs;
    LLVMTypeRef ps[2] = {cg->t_i64, cg->t_i64};
    LLVMValueRef fn = helper_begin(cg, "kiln.ipow", cg->t_i64, ps, 2, &hs);
    LLVMValueRef base = LLVMGetParam(fn, 0), ex = LLVMGetParam(fn, 1);
    LLVMBasicBlockRef entry = LLVMGetInsertBlock(cg->b);
    LLVMBasicBlockRef neg = LLVMAppendBasicBlockInContext(cg->ctx, fn, "neg");
    LLVMBasicBlockRef loop = LLVMAppendBasicBlockInContext(cg->ctx, fn, "loop");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(cg->ctx, fn, "done");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, ex, ci64(cg, 0), ""), neg, loop);
    LLVMPositionBuilderAtEnd(cg->b, neg);
    LLVMValueRef is1 = LLVMBuildICmp(cg->b, LLVMIntEQ, base, ci64(cg, 1), "");
    LLVMValueRef ism1 = LLVMBuildICmp(cg->b, LLVMIntEQ, base, ci64(cg, -1), "");
    LLVMValueRef odd = LLVMBuildTrunc(cg->b, ex, cg->t_i1, "");
    LLVMValueRef negres = sel(cg, is1, ci64(cg, 1), sel(cg, ism1, sel(cg, odd, ci64(cg, -1), ci64(cg, 1)), ci64(cg, 0)));
    LLVMBuildRet(cg->b, negres);
    LLVMPositionBuilderAtEnd(cg->b, loop);
    LLVMValueRef r = LLVMBuildPhi(cg->b, cg->t_i64, "r");
    LLVMValueRef b = LLVMBuildPhi(cg->b, cg->t_i64, "b");
    LLVMValueRef e = LLVMBuildPhi(cg->b, cg->t_i64, "e");
    LLVMValueRef isz = LLVMBuildICmp(cg->b, LLVMIntEQ, e, ci64(cg, 0), "");
    LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(cg->ctx, fn, "body");
    LLVMBuildCondBr(cg->b, isz, done, body);
    LLVMPositionBuilderAtEnd(cg->b, body);
    LLVMValueRef bit = LLVMBuildTrunc(cg->b, e, cg->t_i1, "");
    LLVMValueRef r2 = sel(cg, bit, LLVMBuildMul(cg->b, r, b, ""), r);
    LLVMValueRef b2 = LLVMBuildMul(cg->b, b, b, "");
    LLVMValueRef e2 = LLVMBuildLShr(cg->b, e, ci64(cg, 1), "");
    LLVMBuildBr(cg->b, loop);
    LLVMValueRef vr[2] = {ci64(cg, 1), r2}, vb[2] = {base, b2}, ve[2] = {ex, e2};
    LLVMBasicBlockRef from[2] = {entry, body};
    LLVMAddIncoming(r, vr, from, 2);
    LLVMAddIncoming(b, vb, from, 2);
    LLVMAddIncoming(e, ve, from, 2);
    LLVMPositionBuilderAtEnd(cg->b, done);
    helper_end(cg, &hs, r);
    return cg->h_ipow = fn;
}

/* double libm function `name` (exp, log, sin, cos, tanh, erf, fmod...). */
static LLVMValueRef call_libm(Cg *cg, const char *name, LLVMValueRef x) {
    LLVMTypeRef fty = LLVMFunctionType(cg->t_f64, &cg->t_f64, 1, 0);
    LLVMValueRef fn = LLVMGetNamedFunction(cg->mod, name);
    if (!fn) fn = LLVMAddFunction(cg->mod, name, fty);
    return LLVMBuildCall2(cg->b, fty, fn, &x, 1, "");
}

/* f64 silu and gelu in the reference interpreter's forms (ir/interp.c):
 * no cancellation and no inf/inf far below zero, -0 at -inf. */
static LLVMValueRef stable_f64(Cg *cg, const KInst *in, LLVMValueRef x) {
    LLVMTypeRef t = cg->t_f64;
    LLVMValueRef one = LLVMConstReal(t, 1.0), res;
    if (in->op == OP_SILU) {
        LLVMValueRef e = call_libm(cg, "exp", x);
        LLVMValueRef below = f_div(cg, f_mul(cg, x, e), f_add(cg, one, e));
        LLVMValueRef above = f_div(cg, x, f_add(cg, one, call_libm(cg, "exp", LLVMBuildFNeg(cg->b, x, ""))));
        res = sel(cg, fcmp(cg, LLVMRealOLT, x, LLVMConstReal(t, 0.0)), below, above);
    } else if (in->flag) { /* x / (1 + exp(-2u)) */
        LLVMValueRef x3 = f_mul(cg, x, f_mul(cg, x, x));
        LLVMValueRef v = f_mul(cg, LLVMConstReal(t, -2.0 * 0.7978845608028654),
                               f_add(cg, x, f_mul(cg, LLVMConstReal(t, 0.044715), x3)));
        res = f_div(cg, x, f_add(cg, one, call_libm(cg, "exp", v)));
    } else { /* 0.5 x erfc(-x / sqrt 2) */
        LLVMValueRef a = f_div(cg, LLVMBuildFNeg(cg->b, x, ""), LLVMConstReal(t, M_SQRT2));
        res = f_mul(cg, f_mul(cg, LLVMConstReal(t, 0.5), x), call_libm(cg, "erfc", a));
    }
    return sel(cg, fcmp(cg, LLVMRealOEQ, x, LLVMConstReal(t, -INFINITY)), LLVMConstReal(t, -0.0), res);
}

/* -------------------------------------------------- rounding, conversion */

static LLVMValueRef round_f16(Cg *cg, LLVMValueRef x) {
    return LLVMBuildFPExt(cg->b, LLVMBuildFPTrunc(cg->b, x, cg->t_f16, ""), cg->t_f32, "");
}

/* The bits of x rounded to bf16 (to nearest even; NaN stays a quiet NaN), as i32. */
static LLVMValueRef bf16_round_bits(Cg *cg, LLVMValueRef x) {
    LLVMValueRef bits = float_to_bits(cg, x);
    LLVMValueRef lsb = LLVMBuildAnd(cg->b, LLVMBuildLShr(cg->b, bits, ci32(cg, 16), ""), ci32(cg, 1), "");
    LLVMValueRef rounded = LLVMBuildAdd(cg->b, LLVMBuildAdd(cg->b, bits, ci32(cg, 0x7fff), ""), lsb, "");
    LLVMValueRef nan = LLVMBuildOr(cg->b, bits, ci32(cg, 0x400000), "");
    LLVMValueRef r = sel(cg, fcmp(cg, LLVMRealUNO, x, x), nan, rounded);
    return LLVMBuildAnd(cg->b, r, ci32(cg, (int32_t)0xffff0000u), "");
}
static LLVMValueRef round_bf16(Cg *cg, LLVMValueRef x) { return bits_to_float(cg, bf16_round_bits(cg, x)); }

static LLVMValueRef round_to(Cg *cg, LLVMValueRef x, KilnDType dt) {
    if (dt == KILN_F16) return round_f16(cg, x);
    if (dt == KILN_BF16) return round_bf16(cg, x);
    return x;
}

static LLVMValueRef to_bool(Cg *cg, LLVMValueRef v) {
    LLVMTypeRef t = LLVMTypeOf(v);
    if (t == cg->t_i1) return v;
    if (LLVMGetTypeKind(t) == LLVMIntegerTypeKind) return LLVMBuildICmp(cg->b, LLVMIntNE, v, LLVMConstInt(t, 0, 0), "");
    return fcmp(cg, LLVMRealUNE, v, LLVMConstReal(t, 0.0));
}

/* Converts v (holding a value of dtype `from`) to dtype `to`, as the
 * reference's cast: float->int truncates and saturates (NaN -> 0), ->bool is
 * != 0, narrow floats are rounded to nearest even. */
static LLVMValueRef conv(Cg *cg, LLVMValueRef v, KilnDType from, KilnDType to) {
    LLVMTypeRef vt = LLVMTypeOf(v), tt = reg_type(cg, to);
    if (to == KILN_BOOL) return to_bool(cg, v);
    bool vint = LLVMGetTypeKind(vt) == LLVMIntegerTypeKind;
    if (is_floatlike(to)) {
        LLVMValueRef r;
        if (!vint) {
            if (vt == tt) r = v;
            else if (vt == cg->t_f64) r = LLVMBuildFPTrunc(cg->b, v, tt, "");
            else r = LLVMBuildFPExt(cg->b, v, tt, "");
        } else if (vt == cg->t_i1 || from == KILN_BOOL) {
            r = LLVMBuildUIToFP(cg->b, v, tt, "");
        } else {
            r = LLVMBuildSIToFP(cg->b, v, tt, "");
        }
        if (from != to) r = round_to(cg, r, to);
        return r;
    }
    /* to an integer */
    if (!vint) {
        LLVMTypeRef ov[2] = {tt, vt};
        return intrin(cg, "llvm.fptosi.sat", ov, 2, &v, 1);
    }
    unsigned wv = LLVMGetIntTypeWidth(vt), wt = LLVMGetIntTypeWidth(tt);
    if (wv == wt) return v;
    if (wv > wt) return LLVMBuildTrunc(cg->b, v, tt, "");
    if (wv == 1 || from == KILN_BOOL) return LLVMBuildZExt(cg->b, v, tt, "");
    return LLVMBuildSExt(cg->b, v, tt, "");
}

static LLVMValueRef const_of(Cg *cg, KilnDType dt, double value) {
    switch (dt) {
    case KILN_F32:
    case KILN_F16:
    case KILN_BF16: return LLVMConstReal(cg->t_f32, ref_round_to_dtype(value, dt));
    case KILN_F64: return LLVMConstReal(cg->t_f64, value);
    case KILN_I32:
    case KILN_I64: return LLVMConstInt(reg_type(cg, dt), (unsigned long long)(int64_t)ref_round_to_dtype(value, dt), 1);
    case KILN_BOOL: return LLVMConstInt(cg->t_i1, value != 0, 0);
    case KILN_NUM_DTYPES: break;
    }
    return cf(cg, 0);
}

/* ------------------------------------------------------- memory access */

static LLVMValueRef elem_ptr(Cg *cg, LLVMTypeRef et, LLVMValueRef base, LLVMValueRef idx) {
    LLVMValueRef gep = LLVMBuildGEP2(cg->b, et, base, &idx, 1, "");
    if (LLVMIsAInstruction(gep)) LLVMSetIsInBounds(gep, 1);
    return gep;
}

/* Element loads claim only byte alignment (ELEM_ALIGN): a model's weights
 * are read in place from its mapped file, where a tensor may start at any
 * byte (app/driver.c, BindRequest.map_weights).  x86 loads the same way
 * at any alignment, so the code does not change; the IR stays defined. */
enum { ELEM_ALIGN = 1 };

static LLVMValueRef load_unaligned(Cg *cg, LLVMTypeRef t, LLVMValueRef ptr) {
    LLVMValueRef v = LLVMBuildLoad2(cg->b, t, ptr, "");
    LLVMSetAlignment(v, ELEM_ALIGN);
    return v;
}

static LLVMValueRef load_f32(Cg *cg, LLVMValueRef base, LLVMValueRef idx) {
    return load_unaligned(cg, cg->t_f32, elem_ptr(cg, cg->t_f32, base, idx));
}
static void store_f32(Cg *cg, LLVMValueRef base, LLVMValueRef idx, LLVMValueRef v) {
    LLVMBuildStore(cg->b, v, elem_ptr(cg, cg->t_f32, base, idx));
}

/* buf[idx] as a register value of the buffer's dtype. */
static LLVMValueRef load_elem(Cg *cg, KilnDType dt, LLVMValueRef base, LLVMValueRef idx) {
    LLVMTypeRef mt = mem_type(cg, dt);
    LLVMValueRef v = load_unaligned(cg, mt, elem_ptr(cg, mt, base, idx));
    switch (dt) {
    case KILN_F16: return LLVMBuildFPExt(cg->b, v, cg->t_f32, "");
    case KILN_BF16:
        return bits_to_float(cg, LLVMBuildShl(cg->b, LLVMBuildZExt(cg->b, v, cg->t_i32, ""), ci32(cg, 16), ""));
    case KILN_BOOL: return LLVMBuildICmp(cg->b, LLVMIntNE, v, LLVMConstInt(cg->t_i8, 0, 0), "");
    default: return v;
    }
}

/* buf[idx] = v, v a register value already of the buffer's dtype. */
static void store_elem(Cg *cg, KilnDType dt, LLVMValueRef base, LLVMValueRef idx, LLVMValueRef v) {
    LLVMTypeRef mt = mem_type(cg, dt);
    switch (dt) {
    case KILN_F16: v = LLVMBuildFPTrunc(cg->b, v, cg->t_f16, ""); break;
    case KILN_BF16: v = LLVMBuildTrunc(cg->b, LLVMBuildLShr(cg->b, bf16_round_bits(cg, v), ci32(cg, 16), ""), cg->t_i16, ""); break;
    case KILN_BOOL: v = LLVMBuildZExt(cg->b, v, cg->t_i8, ""); break;
    default: break;
    }
    LLVMBuildStore(cg->b, v, elem_ptr(cg, mt, base, idx));
}

/* ---------------------------------------------------- elementwise ops */

static LLVMValueRef unary_float(Cg *cg, const KInst *in, LLVMValueRef x, bool f64) {
    switch (in->op) {
    case OP_ABS: return intrin1(cg, "llvm.fabs", x);
    case OP_NEG: return LLVMBuildFNeg(cg->b, x, "");
    case OP_SQRT: return intrin1(cg, "llvm.sqrt", x);
    case OP_RSQRT:
        if (LLVMTypeOf(x) == cg->t_f32) { /* in double, so that it rounds once: 0.5 ulp, not 1.5 */
            LLVMValueRef d = LLVMBuildFPExt(cg->b, x, cg->t_f64, "");
            d = f_div_exact(cg, LLVMConstReal(cg->t_f64, 1.0), intrin1(cg, "llvm.sqrt", d));
            return LLVMBuildFPTrunc(cg->b, d, cg->t_f32, "");
        }
        return f_div_exact(cg, LLVMConstReal(LLVMTypeOf(x), 1.0), intrin1(cg, "llvm.sqrt", x));
    case OP_RELU: return sel(cg, fcmp(cg, LLVMRealUGT, x, LLVMConstReal(LLVMTypeOf(x), 0.0)), x, LLVMConstReal(LLVMTypeOf(x), 0.0));
    case OP_FLOOR: return intrin1(cg, "llvm.floor", x);
    case OP_CEIL: return intrin1(cg, "llvm.ceil", x);
    case OP_ROUND: return intrin1(cg, "llvm.roundeven", x);
    case OP_SIGN: {
        LLVMTypeRef t = LLVMTypeOf(x);
        LLVMValueRef z = LLVMConstReal(t, 0.0);
        return sel(cg, fcmp(cg, LLVMRealOGT, x, z), LLVMConstReal(t, 1.0),
                   sel(cg, fcmp(cg, LLVMRealOLT, x, z), LLVMConstReal(t, -1.0), f_mul(cg, x, z)));
    }
    default: break;
    }
    LLVMTypeRef t = LLVMTypeOf(x);
    LLVMValueRef one = LLVMConstReal(t, 1.0);
    if (f64) {
        switch (in->op) {
        case OP_EXP: return call_libm(cg, "exp", x);
        case OP_LOG: return call_libm(cg, "log", x);
        case OP_SIN: return call_libm(cg, "sin", x);
        case OP_COS: return call_libm(cg, "cos", x);
        case OP_TANH: return call_libm(cg, "tanh", x);
        case OP_ERF: return call_libm(cg, "erf", x);
        case OP_SIGMOID: return f_div(cg, one, f_add(cg, one, call_libm(cg, "exp", LLVMBuildFNeg(cg->b, x, ""))));
        case OP_SILU:
        case OP_GELU: return stable_f64(cg, in, x);
        default: return LLVMConstReal(t, NAN);
        }
    }
    switch (in->op) {
    case OP_EXP: return call_exp(cg, x);
    case OP_LOG: return call_helper(cg, helper_log(cg), &x, 1);
    case OP_SIN: return call_helper(cg, helper_sincos(cg, 0), &x, 1);
    case OP_COS: return call_helper(cg, helper_sincos(cg, 1), &x, 1);
    case OP_TANH: return call_helper(cg, helper_tanh(cg), &x, 1);
    case OP_ERF: return call_helper(cg, helper_erf(cg), &x, 1);
    case OP_SIGMOID: {
        /* e = exp(-|x|) never overflows, and is the same IR as a kernel's own
         * exp(-abs(x)), which CSE then shares: 1/(1 + e) for x >= 0, else
         * e/(1 + e) */
        LLVMValueRef e = call_exp(cg, LLVMBuildFNeg(cg->b, intrin1(cg, "llvm.fabs", x), ""));
        LLVMValueRef s = f_div(cg, one, f_add(cg, one, e));
        return sel(cg, fcmp(cg, LLVMRealOLT, x, cf(cg, 0.0)), f_mul(cg, e, s), s);
    }
    case OP_SILU: {
        /* x >= 0: x / (1 + exp(-x)); below, x e / (1 + e) with e = exp(x) =
         * y 2^n and 2^n applied last (right down to the subnormal range) */
        LLVMValueRef n, y = exp_split(cg, x, &n);
        LLVMValueRef e = scale_pow2(cg, y, n);
        LLVMValueRef below = scale_pow2(cg, f_div(cg, f_mul(cg, x, y), f_add(cg, one, e)), n);
        LLVMValueRef above = f_div(cg, x, f_add(cg, one, call_exp(cg, LLVMBuildFNeg(cg->b, x, ""))));
        LLVMValueRef res = sel(cg, fcmp(cg, LLVMRealOLT, x, cf(cg, 0.0)), below, above);
        res = sel(cg, fcmp(cg, LLVMRealOLT, x, cf(cg, -150.0)), cf(cg, -0.0), res); /* below 2^-149 */
        return sel(cg, fcmp(cg, LLVMRealUNO, x, x), x, res);
    }
    case OP_GELU:
        if (in->flag) {
            /* 0.5 x (1 + tanh u) = x / (1 + exp(v)), v = -2u = x (a + b x^2),
             * computed in double (the result is ill-conditioned in v) and
             * applied as exp(v_hi) (1 + v_lo) */
            LLVMValueRef xc = sel(cg, fcmp(cg, LLVMRealOGT, intrin1(cg, "llvm.fabs", x), cf(cg, 100.0)),
                                  intrin2(cg, "llvm.copysign", cf(cg, 100.0), x), x);
            LLVMValueRef xd = LLVMBuildFPExt(cg->b, xc, cg->t_f64, "");
            LLVMValueRef v = f_mul(cg, xd, fma3(cg, LLVMConstReal(cg->t_f64, -2 * 0.7978845608028654 * 0.044715),
                                                f_mul(cg, xd, xd), LLVMConstReal(cg->t_f64, -2 * 0.7978845608028654)));
            LLVMValueRef vhi = LLVMBuildFPTrunc(cg->b, v, cg->t_f32, "");
            LLVMValueRef vlo = LLVMBuildFPTrunc(cg->b, f_sub(cg, v, LLVMBuildFPExt(cg->b, vhi, cg->t_f64, "")), cg->t_f32, "");
            LLVMValueRef e = call_exp(cg, vhi);
            LLVMValueRef above = f_div(cg, x, f_add(cg, one, fma3(cg, e, vlo, e)));
            /* v > 80 (x below -6.7): x e' / (1 + e'), e' = exp(-v) = y 2^n,
             * 2^n last, so that no overflow makes inf/inf (NaN) and results
             * down to the subnormal range are right */
            LLVMValueRef n, y = exp_split(cg, LLVMBuildFNeg(cg->b, vhi, ""), &n);
            y = f_mul(cg, y, f_sub(cg, one, vlo));
            LLVMValueRef below = scale_pow2(cg, f_div(cg, f_mul(cg, x, y), f_add(cg, one, scale_pow2(cg, y, n))), n);
            LLVMValueRef res = sel(cg, fcmp(cg, LLVMRealOGT, vhi, cf(cg, 80.0)), below, above);
            res = sel(cg, fcmp(cg, LLVMRealOLT, x, cf(cg, -100.0)), cf(cg, -0.0), res); /* below 2^-149 */
            return sel(cg, fcmp(cg, LLVMRealUNO, x, x), x, res);
        } else {
            return call_helper(cg, helper_gelu(cg), &x, 1);
        }
    default: return LLVMConstReal(t, NAN);
    }
}

/* NumPy's remainder on floats: the result takes the divisor's sign. */
static LLVMValueRef fmod_numpy(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
    LLVMTypeRef t = LLVMTypeOf(a);
    LLVMValueRef z = LLVMConstReal(t, 0.0);
    LLVMValueRef r = LLVMBuildFRem(cg->b, a, b, "");
    LLVMValueRef fix = LLVMBuildAnd(cg->b, fcmp(cg, LLVMRealUNE, r, z),
                                    LLVMBuildXor(cg->b, fcmp(cg, LLVMRealOLT, b, z), fcmp(cg, LLVMRealOLT, r, z), ""), "");
    LLVMValueRef r1 = sel(cg, fix, f_add(cg, r, b), r);
    return sel(cg, fcmp(cg, LLVMRealOEQ, r, z), intrin2(cg, "llvm.copysign", z, b), r1);
}

static LLVMValueRef binary_float(Cg *cg, Op op, LLVMValueRef a, LLVMValueRef b) {
    switch (op) {
    case OP_ADD: return f_add(cg, a, b);
    case OP_SUB: return f_sub(cg, a, b);
    case OP_MUL: return f_mul(cg, a, b);
    case OP_DIV: return f_div(cg, a, b);
    case OP_MOD: return fmod_numpy(cg, a, b);
    case OP_POW: {
        LLVMTypeRef t = LLVMTypeOf(a);
        if (t == cg->t_f64) return intrin2(cg, "llvm.pow", a, b);
        LLVMValueRef r = intrin2(cg, "llvm.pow", LLVMBuildFPExt(cg->b, a, cg->t_f64, ""), LLVMBuildFPExt(cg->b, b, cg->t_f64, ""));
        return LLVMBuildFPTrunc(cg->b, r, t, "");
    }
    case OP_MAXIMUM: return intrin2(cg, "llvm.maximum", a, b);
    case OP_MINIMUM: return intrin2(cg, "llvm.minimum", a, b);
    default: return LLVMConstReal(LLVMTypeOf(a), NAN);
    }
}

/* np.remainder on integers; x % 0 = 0 (and x % -1 = 0). */
static LLVMValueRef imod_numpy(Cg *cg, LLVMValueRef a, LLVMValueRef b) {
    LLVMTypeRef t = LLVMTypeOf(a);
    LLVMValueRef zero = LLVMConstInt(t, 0, 0);
    LLVMValueRef bad = LLVMBuildOr(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, b, zero, ""),
                                   LLVMBuildICmp(cg->b, LLVMIntEQ, b, LLVMConstAllOnes(t), ""), "");
    LLVMValueRef sb = sel(cg, bad, LLVMConstInt(t, 1, 0), b);
    LLVMValueRef r = LLVMBuildSRem(cg->b, a, sb, "");
    LLVMValueRef fix = LLVMBuildAnd(cg->b, LLVMBuildICmp(cg->b, LLVMIntNE, r, zero, ""),
                                    LLVMBuildXor(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, r, zero, ""),
                                                 LLVMBuildICmp(cg->b, LLVMIntSLT, sb, zero, ""), ""), "");
    r = sel(cg, fix, LLVMBuildAdd(cg->b, r, sb, ""), r);
    return sel(cg, bad, zero, r);
}

static LLVMValueRef binary_int(Cg *cg, Op op, LLVMValueRef a, LLVMValueRef b, bool *handled) {
    *handled = true;
    switch (op) {
    case OP_ADD: return LLVMBuildAdd(cg->b, a, b, "");
    case OP_SUB: return LLVMBuildSub(cg->b, a, b, "");
    case OP_MUL: return LLVMBuildMul(cg->b, a, b, "");
    case OP_MOD: return imod_numpy(cg, a, b);
    case OP_MAXIMUM: return intrin2(cg, "llvm.smax", a, b);
    case OP_MINIMUM: return intrin2(cg, "llvm.smin", a, b);
    case OP_POW: {
        LLVMTypeRef t = LLVMTypeOf(a);
        LLVMValueRef args[2] = {LLVMBuildSExt(cg->b, a, cg->t_i64, ""), LLVMBuildSExt(cg->b, b, cg->t_i64, "")};
        if (t == cg->t_i64) args[0] = a, args[1] = b;
        LLVMValueRef r = call_helper(cg, helper_ipow(cg), args, 2);
        return t == cg->t_i64 ? r : LLVMBuildTrunc(cg->b, r, t, "");
    }
    default: *handled = false; return NULL;
    }
}

static LLVMValueRef unary_int(Cg *cg, Op op, LLVMValueRef x, bool *handled) {
    LLVMTypeRef t = LLVMTypeOf(x);
    LLVMValueRef zero = LLVMConstInt(t, 0, 0);
    *handled = true;
    switch (op) {
    case OP_ABS: {
        LLVMTypeRef ts[1] = {t};
        LLVMValueRef args[2] = {x, LLVMConstInt(cg->t_i1, 0, 0)};
        return intrin(cg, "llvm.abs", ts, 1, args, 2);
    }
    case OP_NEG: return LLVMBuildSub(cg->b, zero, x, "");
    case OP_RELU: return intrin2(cg, "llvm.smax", x, zero);
    case OP_FLOOR:
    case OP_CEIL:
    case OP_ROUND: return x;
    case OP_SIGN:
        return LLVMBuildSub(cg->b, LLVMBuildZExt(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGT, x, zero, ""), t, ""),
                            LLVMBuildZExt(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, x, zero, ""), t, ""), "");
    default: *handled = false; return NULL;
    }
}

static LLVMValueRef compare_vals(Cg *cg, Op op, KilnDType dt, LLVMValueRef a, LLVMValueRef b) {
    if (is_floatlike(dt)) {
        LLVMRealPredicate p = op == OP_EQ ? LLVMRealOEQ : op == OP_NE ? LLVMRealUNE : op == OP_LT ? LLVMRealOLT
                            : op == OP_LE ? LLVMRealOLE : op == OP_GT ? LLVMRealOGT : LLVMRealOGE;
        return fcmp(cg, p, a, b);
    }
    bool u = dt == KILN_BOOL;
    LLVMIntPredicate p = op == OP_EQ ? LLVMIntEQ : op == OP_NE ? LLVMIntNE
                       : op == OP_LT ? (u ? LLVMIntULT : LLVMIntSLT) : op == OP_LE ? (u ? LLVMIntULE : LLVMIntSLE)
                       : op == OP_GT ? (u ? LLVMIntUGT : LLVMIntSGT) : (u ? LLVMIntUGE : LLVMIntSGE);
    return LLVMBuildICmp(cg->b, p, a, b, "");
}

/* One KI_ELEM given its operand values and dtypes; the result has in->dtype. */
static LLVMValueRef emit_elem_op(Cg *cg, const KInst *in, LLVMValueRef *x, const KilnDType *xdt) {
    KilnDType dt = in->dtype;
    switch (op_info[in->op].kind) {
    case OK_UNARY:
    case OK_BINARY: {
        bool bin = op_info[in->op].kind == OK_BINARY;
        KilnDType cdt = dt == KILN_BOOL ? KILN_I64 : dt; /* bools compute as 0/1 */
        LLVMValueRef a = conv(cg, x[0], xdt[0], cdt);
        LLVMValueRef b = bin ? conv(cg, x[1], xdt[1], cdt) : NULL;
        LLVMValueRef r = NULL;
        bool handled = false;
        if (is_intlike(cdt)) {
            r = bin ? binary_int(cg, in->op, a, b, &handled) : unary_int(cg, in->op, a, &handled);
            if (!handled) { /* in double, as the reference (e.g. div on ints) */
                LLVMValueRef da = conv(cg, a, cdt, KILN_F64), db = bin ? conv(cg, b, cdt, KILN_F64) : NULL;
                LLVMValueRef d = bin ? binary_float(cg, in->op, da, db) : unary_float(cg, in, da, true);
                r = conv(cg, d, KILN_F64, cdt);
            }
        } else {
            /* legalised (kernel.h): a 16-bit op here is exact, needs no rounding */
            r = bin ? binary_float(cg, in->op, a, b) : unary_float(cg, in, a, cdt == KILN_F64);
        }
        return conv(cg, r, cdt, dt);
    }
    case OK_COMPARE: {
        KilnDType cdt = xdt[0];
        LLVMValueRef a = x[0], b = conv(cg, x[1], xdt[1], cdt);
        return conv(cg, compare_vals(cg, in->op, cdt, a, b), KILN_BOOL, dt);
    }
    case OK_LOGIC: {
        LLVMValueRef r;
        if (in->op == OP_NOT) r = LLVMBuildNot(cg->b, to_bool(cg, x[0]), "");
        else if (in->op == OP_AND) r = LLVMBuildAnd(cg->b, to_bool(cg, x[0]), to_bool(cg, x[1]), "");
        else r = LLVMBuildOr(cg->b, to_bool(cg, x[0]), to_bool(cg, x[1]), "");
        return conv(cg, r, KILN_BOOL, dt);
    }
    case OK_WHERE:
        return sel(cg, to_bool(cg, x[0]), conv(cg, x[1], xdt[1], dt), conv(cg, x[2], xdt[2], dt));
    case OK_CAST: return conv(cg, x[0], xdt[0], dt);
    default: break;
    }
    return const_of(cg, dt, 0);
}

/* ------------------------------------------------- index ranges (kernel.c) */

/* Whether every index value of kernel k provably fits in i32: then index
 * arithmetic runs in i32, which the vectoriser handles far better (AVX-512
 * has no 64-bit multiply-high for division by constants). */
static bool index_fits_i32(const Kernel *k, const KRange *rg) {
    const int64_t LIM = INT32_MAX - 1;
    if (k->outer > LIM) return false;
    for (int s = 0; s < k->stages.len; s++)
        if (k->stages.data[s].extent > LIM) return false;
    for (int i = 0; i < k->insts.len; i++) {
        const KInst *in = &k->insts.data[i];
        switch (in->kind) {
        case KI_IADD:
        case KI_IMUL:
        case KI_IDIV:
        case KI_IMOD:
            if (!rg[i].known || rg[i].hi > LIM || rg[i].lo < -LIM) return false;
            break;
        case KI_ILT:
            if (!rg[in->a].known || !rg[in->b].known || rg[in->a].lo < -LIM || rg[in->a].hi > LIM ||
                rg[in->b].lo < -LIM || rg[in->b].hi > LIM)
                return false;
            break;
        case KI_LOAD:
            if (in->a < 0 || !rg[in->a].known || rg[in->a].lo < -LIM || rg[in->a].hi > LIM) return false;
            break;
        default: break;
        }
    }
    for (int s = 0; s < k->stages.len; s++)
        for (int j = 0; j < k->stages.data[s].stores.len; j++) {
            const KRange *r = &rg[k->stages.data[s].stores.data[j].index];
            if (!r->known || r->lo < -LIM || r->hi > LIM) return false;
        }
    return true;
}

/* --------------------------------------------------- kernel emission */

/* An index operand: any integer value coerced to the index type. */
static LLVMValueRef as_idx(Kc *kc, LLVMValueRef v) {
    Cg *cg = kc->cg;
    LLVMTypeRef t = LLVMTypeOf(v);
    if (t == kc->idx_t) return v;
    if (LLVMGetTypeKind(t) != LLVMIntegerTypeKind) return conv(cg, v, KILN_F64, kc->narrow ? KILN_I32 : KILN_I64);
    unsigned w = LLVMGetIntTypeWidth(t), wi = LLVMGetIntTypeWidth(kc->idx_t);
    if (w > wi) return LLVMBuildTrunc(cg->b, v, kc->idx_t, "");
    return w == 1 ? LLVMBuildZExt(cg->b, v, kc->idx_t, "") : LLVMBuildSExt(cg->b, v, kc->idx_t, "");
}

static LLVMValueRef emit_load(Kc *kc, const KInst *in) {
    Cg *cg = kc->cg;
    const KBuf *kb = &cg->p->bufs.data[in->buf];
    LLVMValueRef base = kc->bufptr[in->buf];
    LLVMValueRef idx = as_idx(kc, kc->val[in->a]);
    if (in->b < 0) return conv(cg, load_elem(cg, kb->dtype, base, idx), kb->dtype, in->dtype);
    LLVMValueRef guard = to_bool(cg, kc->val[in->b]);
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(cg->b);
    LLVMBasicBlockRef ld = LLVMAppendBasicBlockInContext(cg->ctx, kc->fn, "guarded");
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(cg->ctx, kc->fn, "joined");
    LLVMBuildCondBr(cg->b, guard, ld, join);
    LLVMPositionBuilderAtEnd(cg->b, ld);
    LLVMValueRef v = conv(cg, load_elem(cg, kb->dtype, base, idx), kb->dtype, in->dtype);
    LLVMBasicBlockRef ld_end = LLVMGetInsertBlock(cg->b);
    LLVMBuildBr(cg->b, join);
    LLVMPositionBuilderAtEnd(cg->b, join);
    return phi2(cg, reg_type(cg, in->dtype), "", v, ld_end, const_of(cg, in->dtype, 0), pre);
}

/* Index arithmetic; division and remainder are unsigned when the range
 * analysis proves the dividend non-negative (cheaper), else truncating. */
static LLVMValueRef idx_arith(Kc *kc, const KInst *in) {
    Cg *cg = kc->cg;
    LLVMValueRef a = as_idx(kc, kc->val[in->a]), b = as_idx(kc, kc->val[in->b]);
    const KRange *ra = &kc->range[in->a], *rb = &kc->range[in->b];
    bool nonneg = ra->known && ra->lo >= 0 && rb->known && rb->lo > 0;
    LLVMValueRef r;
    switch (in->kind) {
    case KI_IADD: r = LLVMBuildAdd(cg->b, a, b, ""); break;
    case KI_IMUL: r = LLVMBuildMul(cg->b, a, b, ""); break;
    case KI_IDIV: return nonneg ? LLVMBuildUDiv(cg->b, a, b, "") : LLVMBuildSDiv(cg->b, a, b, "");
    case KI_IMOD: return nonneg ? LLVMBuildURem(cg->b, a, b, "") : LLVMBuildSRem(cg->b, a, b, "");
    default: return LLVMBuildICmp(cg->b, LLVMIntSLT, a, b, "");
    }
    if (LLVMIsAInstruction(r)) LLVMSetNSW(r, 1);
    return r;
}

static KilnDType inst_dtype(const Kc *kc, int i) { return kc->k->insts.data[i].dtype; }

/* In a tiled product's epilogue, o / d and o % d where d divides the row
 * length N or is a multiple of it, from the tile's row and column: with
 * o = row*N + col and col < N, o / d = row*(N/d) + col/d (d | N) or
 * row / (d/N) (N | d), and o % d = col % d (d | N).  The channel of a conv
 * output, o / (OH*OW) % OC, is then the tile row's own (a bias is one
 * broadcast value per row instead of a gather).  NULL: not such an index. */
static LLVMValueRef gemm_index(Kc *kc, const KInst *in) {
    const Kernel *k = kc->k;
    if (!kc->gemm_row || in->a < 0 || in->b < 0 || k->insts.data[in->a].kind != KI_OUTER) return NULL;
    const KInst *dv = &k->insts.data[in->b];
    int64_t d = (int64_t)dv->value, n = kc->gemm_n;
    if (dv->kind != KI_CONST || d <= 0 || (n % d && d % n)) return NULL;
    Cg *cg = kc->cg;
    LLVMTypeRef t = LLVMTypeOf(kc->gemm_row);
    LLVMValueRef row = kc->gemm_row, col = kc->gemm_col;
    if (d == n) return in->kind == KI_IDIV ? row : col; /* col < N */
    if (in->kind == KI_IDIV) {
        if (d % n == 0) return LLVMBuildUDiv(cg->b, row, LLVMConstInt(t, (unsigned long long)(d / n), 0), "");
        return iadd(cg, imul(cg, row, LLVMConstInt(t, (unsigned long long)(n / d), 0)),
                    LLVMBuildUDiv(cg->b, col, LLVMConstInt(t, (unsigned long long)d, 0), ""));
    }
    if (in->kind == KI_IMOD && n % d == 0) return LLVMBuildURem(cg->b, col, LLVMConstInt(t, (unsigned long long)d, 0), "");
    return NULL;
}

uint64_t llvm_div_magic(uint64_t d) { return UINT64_MAX / d + 1; }

/* A sized unit's o / d or o % d with d read at run time (epi_analyse): for
 * a dividend n in [0, 2^32) and 2 <= d <= 2^32, n / d = (c * n) >> 64 with
 * c = ceil(2^64 / d) (llvm_div_magic, from the values), exactly (Lemire,
 * Kaser and Kurz 2019: c / 2^64 - 1 / d < 2^-64 <= 1 / (d 2^32)); a
 * multiply and a shift, which LICM hoists where n is invariant (a tile
 * row's channel), where a division by a loaded value could not move. */
static LLVMValueRef magic_quotient(Cg *cg, LLVMValueRef n, LLVMValueRef magic) {
    LLVMTypeRef t128 = LLVMInt128TypeInContext(cg->ctx);
    LLVMValueRef prod =
        LLVMBuildMul(cg->b, LLVMBuildZExt(cg->b, n, t128, ""), LLVMBuildZExt(cg->b, magic, t128, ""), "");
    return LLVMBuildTrunc(cg->b, LLVMBuildLShr(cg->b, prod, LLVMConstInt(t128, 64, 0), ""), cg->t_i64, "");
}

static LLVMValueRef magic_divide(Kc *kc, const KInst *in, LLVMValueRef magic) {
    Cg *cg = kc->cg;
    LLVMValueRef n = kc->val[in->a];
    if (LLVMGetIntTypeWidth(LLVMTypeOf(n)) < 64) n = LLVMBuildZExt(cg->b, n, cg->t_i64, "");
    LLVMValueRef q = magic_quotient(cg, n, magic);
    LLVMValueRef d = kc->val[in->b];
    if (LLVMGetIntTypeWidth(LLVMTypeOf(d)) < 64) d = LLVMBuildZExt(cg->b, d, cg->t_i64, "");
    LLVMValueRef r = in->kind == KI_IDIV ? q : LLVMBuildSub(cg->b, n, LLVMBuildMul(cg->b, q, d, ""), "");
    return as_idx(kc, r);
}

/* take's position: the loaded index in i64 (it may not fit the narrow index
 * type before it is clamped), from the end when negative, clamped into
 * [0, n), then in the index type. */
static LLVMValueRef emit_index(Kc *kc, const KInst *in) {
    Cg *cg = kc->cg;
    LLVMValueRef v = kc->val[in->a];
    if (LLVMGetTypeKind(LLVMTypeOf(v)) != LLVMIntegerTypeKind) v = conv(cg, v, inst_dtype(kc, in->a), KILN_I64);
    else if (LLVMGetIntTypeWidth(LLVMTypeOf(v)) < 64) v = LLVMBuildSExt(cg->b, v, cg->t_i64, "");
    LLVMValueRef n = LLVMConstInt(cg->t_i64, (unsigned long long)(int64_t)in->value, 1);
    LLVMValueRef zero = LLVMConstInt(cg->t_i64, 0, 0), last = LLVMConstInt(cg->t_i64, (unsigned long long)((int64_t)in->value - 1), 1);
    v = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, v, zero, ""), LLVMBuildAdd(cg->b, v, n, ""), v, "");
    v = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, v, zero, ""), zero, v, "");
    v = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGT, v, last, ""), last, v, "");
    return as_idx(kc, v);
}

static LLVMValueRef emit_inst(Kc *kc, int i) {
    Cg *cg = kc->cg;
    const KInst *in = &kc->k->insts.data[i];
    switch (in->kind) {
    case KI_CONST:
        if (kc->preset && kc->preset[i]) return kc->preset[i];
        if (is_intlike(in->dtype))
            return LLVMConstInt(reg_type(cg, in->dtype), (unsigned long long)kinst_scalar(in).i, 1);
        return const_of(cg, in->dtype, in->value);
    case KI_OUTER: return kc->o;
    case KI_INNER: return in->stage >= 0 ? kc->r[in->stage] : LLVMConstInt(kc->idx_t, 0, 0);
    case KI_ACC: return kc->acc[in->a];
    case KI_LOAD: return emit_load(kc, in);
    case KI_CAST: return conv(cg, kc->val[in->a], inst_dtype(kc, in->a), in->dtype);
    case KI_ELEM: {
        LLVMValueRef x[3] = {NULL, NULL, NULL};
        KilnDType xdt[3] = {KILN_F32, KILN_F32, KILN_F32};
        int ops[3] = {in->a, in->b, in->c};
        for (int j = 0; j < 3; j++)
            if (ops[j] >= 0) x[j] = kc->val[ops[j]], xdt[j] = inst_dtype(kc, ops[j]);
        return emit_elem_op(cg, in, x, xdt);
    }
    case KI_IDIV:
    case KI_IMOD: {
        if (kc->magic && kc->magic[i]) return magic_divide(kc, in, kc->magic[i]);
        LLVMValueRef v = gemm_index(kc, in);
        return v ? v : idx_arith(kc, in);
    }
    case KI_IADD:
    case KI_IMUL:
    case KI_ILT: return idx_arith(kc, in);
    case KI_INDEX: return emit_index(kc, in);
    }
    return NULL;
}

static void emit_scope(Kc *kc, int stage) {
    Cg *cg = kc->cg;
    for (int i = 0; i < kc->k->insts.len; i++) {
        if (kc->k->insts.data[i].stage != stage || (kc->live && !kc->live[i])) continue;
        LLVMValueRef cache = kc->row_cache ? kc->row_cache[i] : NULL;
        LLVMValueRef r = cache ? kc->r[stage] : NULL;
        if (r && LLVMTypeOf(r) != cg->t_i64) r = LLVMBuildSExt(cg->b, r, cg->t_i64, "");
        if (cache && kc->row_cache_reads[i]) {
            kc->val[i] = load_f32(cg, cache, r);
            continue;
        }
        kc->val[i] = emit_inst(kc, i);
        if (cache) store_f32(cg, cache, r, kc->val[i]);
    }
}

/* ---- values shared between the stages of a row kernel
 *
 * A row kernel may compute the same value per element in a reduce stage and
 * again in its map stage: softmax sums exp(x - max) and then writes
 * exp(x - max) / sum.  The map stage then reads what the reduce stage kept in
 * a row cache (a stack array of the row's extent) instead of computing it
 * again: one exp per element instead of two. */

enum { ROW_CACHE_MAX = 16384 }; /* elements per cached row (64 KiB of stack) */

/* Whether instruction a (scope sa or outer) and b (scope sb or outer) compute
 * the same values, the two stages' r taken as equal. */
static bool same_value(const Kernel *k, int a, int b, int sa, int sb, int depth) {
    if (a == b) return true;
    if (a < 0 || b < 0 || depth > 64) return false;
    const KInst *x = &k->insts.data[a], *y = &k->insts.data[b];
    if (x->stage != sa || y->stage != sb || x->kind != y->kind || x->dtype != y->dtype) return false;
    switch (x->kind) {
    case KI_INNER: return true;
    case KI_CONST: return x->value == y->value;
    case KI_ACC: return x->a == y->a;
    case KI_OUTER: return true;
    case KI_LOAD:
        if (x->buf != y->buf) return false;
        break;
    case KI_ELEM:
        if (x->op != y->op || x->flag != y->flag) return false;
        break;
    default:
        if (x->value != y->value) return false;
        break;
    }
    int xo[3] = {x->a, x->b, x->c}, yo[3] = {y->a, y->b, y->c};
    for (int j = 0; j < 3; j++)
        if ((xo[j] < 0) != (yo[j] < 0) || (xo[j] >= 0 && !same_value(k, xo[j], yo[j], sa, sb, depth + 1)))
            return false;
    return true;
}

static bool transcendental(const KInst *in) {
    return in->kind == KI_ELEM && in->dtype == KILN_F32 && op_has(in->op, OPF_TRANSCENDENTAL);
}

/* Pairs a transcendental f32 value of the map stage with the same value of
 * an earlier reduce stage of the same extent; allocas the caches (at the
 * builder's position: the function's entry). */
static void find_row_reuse(Kc *kc) {
    const Kernel *k = kc->k;
    int ms = k->stages.len - 1;
    const KStage *map = &k->stages.data[ms];
    if (map->kind != KS_MAP || map->extent <= 1 || map->extent > ROW_CACHE_MAX) return;
    for (int b = 0; b < k->insts.len; b++) {
        if (k->insts.data[b].stage != ms || !transcendental(&k->insts.data[b])) continue;
        for (int a = 0; a < b; a++) {
            int sa = k->insts.data[a].stage;
            if (sa < 0 || sa == ms || k->stages.data[sa].kind != KS_REDUCE || k->stages.data[sa].extent != map->extent ||
                !transcendental(&k->insts.data[a]) || !same_value(k, a, b, sa, ms, 0))
                continue;
            if (!kc->row_cache) {
                kc->row_cache = xcalloc((size_t)k->insts.len + 1, sizeof(LLVMValueRef));
                kc->row_cache_reads = xcalloc((size_t)k->insts.len + 1, sizeof(bool));
            }
            if (!kc->row_cache[a]) {
                kc->row_cache[a] = LLVMBuildArrayAlloca(kc->cg->b, kc->cg->t_f32, ci64(kc->cg, map->extent), "row_cache");
                LLVMSetAlignment(kc->row_cache[a], 64);
            }
            kc->row_cache[b] = kc->row_cache[a];
            kc->row_cache_reads[b] = true;
            break;
        }
    }
}

/* Whether the instructions of a scope make a loop body heavy enough that
 * vectorising it at the target's natural width is surely right: then the
 * width is given to the vectoriser (metadata), which saves it comparing
 * every width on a large body (a good part of the compile time). */
static bool heavy_scope(const Kernel *k, int scope) {
    int n = 0;
    for (int i = 0; i < k->insts.len; i++) {
        const KInst *in = &k->insts.data[i];
        if (in->stage != scope) continue;
        n++;
        if (in->kind == KI_ELEM && is_floatlike(in->dtype) && in->dtype != KILN_F64 &&
            op_has(in->op, OPF_TRANSCENDENTAL))
            return true;
    }
    return n >= 24;
}

/* A counted loop [start, end) with a bottom test (the caller has checked
 * start < end, or the extent is a positive constant). */
typedef struct {
    LLVMBasicBlockRef pre, body;
    LLVMValueRef iv, end;
} Loop;

static LLVMValueRef loop_begin(Kc *kc, Loop *l, LLVMValueRef start, LLVMValueRef end, const char *name) {
    Cg *cg = kc->cg;
    l->pre = LLVMGetInsertBlock(cg->b);
    l->body = LLVMAppendBasicBlockInContext(cg->ctx, kc->fn, name);
    l->end = end;
    LLVMBuildBr(cg->b, l->body);
    LLVMPositionBuilderAtEnd(cg->b, l->body);
    l->iv = LLVMBuildPhi(cg->b, LLVMTypeOf(start), name);
    LLVMAddIncoming(l->iv, &start, &l->pre, 1);
    return l->iv;
}

/* Loop metadata: llvm.loop.interleave.count = 1.  A vectorised map loop is
 * bound by memory or by its arithmetic; interleaving it only multiplies the
 * code to compile.  Reductions keep the vectoriser's choice (several
 * accumulators hide the latency of the adds). */
/* Attaches loop properties to a loop's latch branch: vectorise at width vw
 * (0: the vectoriser's choice), interleave count ic (0: its choice), or no
 * vectorisation at all (vw < 0). */
static void loop_metadata_tail(Cg *cg, LLVMValueRef latch_br, int vw, int ic, bool masked_tail) {
    LLVMMetadataRef tmp = LLVMTemporaryMDNode(cg->ctx, NULL, 0);
    LLVMMetadataRef ops[4] = {tmp};
    int n = 1;
    const char *keys[3];
    LLVMValueRef vals[3];
    int np = 0;
    if (vw != 0) {
        keys[np] = vw < 0 ? "llvm.loop.vectorize.enable" : "llvm.loop.vectorize.width";
        vals[np++] = vw < 0 ? LLVMConstInt(cg->t_i1, 0, 0) : ci32(cg, vw);
    }
    if (ic > 0) keys[np] = "llvm.loop.interleave.count", vals[np++] = ci32(cg, ic);
    /* the loop's last partial vector (or its only one) under a mask */
    if (masked_tail)
        keys[np] = "llvm.loop.vectorize.predicate.enable", vals[np++] = LLVMConstInt(cg->t_i1, 1, 0);
    for (int i = 0; i < np; i++) {
        LLVMMetadataRef kv[2] = {LLVMMDStringInContext2(cg->ctx, keys[i], strlen(keys[i])), LLVMValueAsMetadata(vals[i])};
        ops[n++] = LLVMMDNodeInContext2(cg->ctx, kv, 2);
    }
    LLVMMetadataRef id = LLVMMDNodeInContext2(cg->ctx, ops, (size_t)n);
    LLVMMetadataReplaceAllUsesWith(tmp, id);
    LLVMSetMetadata(latch_br, LLVMGetMDKindIDInContext(cg->ctx, "llvm.loop", 9), LLVMMetadataAsValue(cg->ctx, id));
}
static void loop_metadata(Cg *cg, LLVMValueRef latch_br, int vw, int ic) {
    loop_metadata_tail(cg, latch_br, vw, ic, false);
}

/* Closes the loop; phis[i] get (init from pre is already there) next[i].
 * A loop without phis (a map) is not interleaved, and vectorised at width
 * vw when vw > 0 (see heavy_scope). */
static void loop_end(Kc *kc, Loop *l, LLVMValueRef *phis, LLVMValueRef *next, int n, int vw) {
    Cg *cg = kc->cg;
    LLVMValueRef inc = LLVMBuildAdd(cg->b, l->iv, LLVMConstInt(LLVMTypeOf(l->iv), 1, 0), "");
    LLVMSetNSW(inc, 1);
    LLVMSetNUW(inc, 1);
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(cg->b);
    LLVMBasicBlockRef exit = LLVMAppendBasicBlockInContext(cg->ctx, kc->fn, "exit");
    LLVMValueRef br = LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, inc, l->end, ""), l->body, exit);
    if (n == 0) loop_metadata(cg, br, vw, 1);
    LLVMAddIncoming(l->iv, &inc, &latch, 1);
    for (int i = 0; i < n; i++) LLVMAddIncoming(phis[i], &next[i], &latch, 1);
    LLVMPositionBuilderAtEnd(cg->b, exit);
}

/* The initial accumulator of a reduction (kstage_identity). */
static LLVMValueRef reduce_init(Cg *cg, const KStage *st) {
    Scalar id = kstage_identity(st);
    LLVMTypeRef t = reg_type(cg, st->acc_dtype);
    return is_floatlike(st->acc_dtype) ? LLVMConstReal(t, id.f)
                                       : LLVMConstInt(t, (unsigned long long)id.i, 1);
}

/* acc (and, for arg-reductions, the position pos) combined with v at position r. */
static void reduce_combine(Kc *kc, const KStage *st, LLVMValueRef *acc, LLVMValueRef *pos, LLVMValueRef v,
                           LLVMValueRef r) {
    Cg *cg = kc->cg;
    bool fl = is_floatlike(st->acc_dtype);
    switch (st->reduce) {
    case OP_SUM:
    case OP_MEAN:
        *acc = fl ? fm(LLVMBuildFAdd(cg->b, *acc, v, ""), FM_REDUCE) : LLVMBuildAdd(cg->b, *acc, v, "");
        break;
    case OP_PROD:
        *acc = fl ? fm(LLVMBuildFMul(cg->b, *acc, v, ""), FM_REDUCE) : LLVMBuildMul(cg->b, *acc, v, "");
        break;
    case OP_MAX: *acc = intrin2(cg, fl ? "llvm.maximum" : "llvm.smax", *acc, v); break;
    case OP_MIN: *acc = intrin2(cg, fl ? "llvm.minimum" : "llvm.smin", *acc, v); break;
    case OP_ARGMAX:
    case OP_ARGMIN: {
        bool mx = st->reduce == OP_ARGMAX;
        LLVMValueRef take;
        if (fl) { /* strictly better, or the first NaN (which then stays) */
            LLVMValueRef better = fcmp(cg, mx ? LLVMRealOGT : LLVMRealOLT, v, *acc);
            take = LLVMBuildAnd(cg->b, fcmp(cg, LLVMRealORD, *acc, *acc),
                                LLVMBuildOr(cg->b, better, fcmp(cg, LLVMRealUNO, v, v), ""), "");
        } else {
            take = LLVMBuildICmp(cg->b, mx ? LLVMIntSGT : LLVMIntSLT, v, *acc, "");
        }
        *acc = sel(cg, take, v, *acc);
        *pos = sel(cg, take, conv(cg, r, KILN_I64, KILN_I64), *pos);
        break;
    }
    default: break;
    }
}

static void emit_stage(Kc *kc, int s) {
    Cg *cg = kc->cg;
    const KStage *st = &kc->k->stages.data[s];
    LLVMTypeRef it = kc->idx_t;
    bool arg = st->reduce == OP_ARGMAX || st->reduce == OP_ARGMIN;
    if (st->kind == KS_MAP) {
        if (st->extent <= 0) return;
        Loop l;
        if (st->extent == 1) kc->r[s] = LLVMConstInt(it, 0, 0);
        else kc->r[s] = loop_begin(kc, &l, LLVMConstInt(it, 0, 0), LLVMConstInt(it, (unsigned long long)st->extent, 0), "r");
        emit_scope(kc, s);
        for (int j = 0; j < st->stores.len; j++) {
            const KStore *sto = &st->stores.data[j];
            KilnDType bdt = cg->p->bufs.data[sto->buf].dtype;
            LLVMValueRef v = conv(cg, kc->val[sto->value], inst_dtype(kc, sto->value), bdt);
            LLVMValueRef at =
                kc->run_base ? iadd(cg, kc->run_base, kc->run_j) : as_idx(kc, kc->val[sto->index]);
            store_elem(cg, bdt, kc->bufptr[sto->buf], at, v);
        }
        if (st->extent > 1) loop_end(kc, &l, NULL, NULL, 0, heavy_scope(kc->k, s) ? cg->vec_floats : 0);
        return;
    }
    LLVMValueRef init = reduce_init(cg, st), pos0 = ci64(cg, 0);
    if (st->extent <= 0) {
        kc->acc[s] = arg ? pos0 : init;
        return;
    }
    if (st->extent == 1) {
        kc->r[s] = LLVMConstInt(it, 0, 0);
        emit_scope(kc, s);
        LLVMValueRef acc = init, pos = pos0;
        reduce_combine(kc, st, &acc, &pos, conv(cg, kc->val[st->value], inst_dtype(kc, st->value), st->acc_dtype), kc->r[s]);
        kc->acc[s] = arg ? pos : acc;
        return;
    }
    Loop l;
    kc->r[s] = loop_begin(kc, &l, LLVMConstInt(it, 0, 0), LLVMConstInt(it, (unsigned long long)st->extent, 0), "r");
    LLVMValueRef phis[2], next[2];
    phis[0] = LLVMBuildPhi(cg->b, LLVMTypeOf(init), "acc");
    LLVMAddIncoming(phis[0], &init, &l.pre, 1);
    if (arg) {
        phis[1] = LLVMBuildPhi(cg->b, cg->t_i64, "pos");
        LLVMAddIncoming(phis[1], &pos0, &l.pre, 1);
    }
    if (is_floatlike(st->acc_dtype)) fm(phis[0], FM_REDUCE);
    emit_scope(kc, s);
    next[0] = phis[0], next[1] = arg ? phis[1] : NULL;
    reduce_combine(kc, st, &next[0], &next[1], conv(cg, kc->val[st->value], inst_dtype(kc, st->value), st->acc_dtype),
                   kc->r[s]);
    loop_end(kc, &l, phis, next, arg ? 2 : 1, 0);
    /* the result is the last iteration's `next`: the loop is left only from
     * its latch, which defines it, so it dominates the code after the loop */
    kc->acc[s] = arg ? next[1] : next[0];
}

/* The body of the generic form: for o in [ob, oe): scope -1, then stages. */
static void emit_generic_loops(Kc *kc, LLVMValueRef ob, LLVMValueRef oe) {
    Cg *cg = kc->cg;
    find_row_reuse(kc);
    LLVMBasicBlockRef run = LLVMAppendBasicBlockInContext(cg->ctx, kc->fn, "run");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(cg->ctx, kc->fn, "done");
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, ob, oe, ""), run, done);
    LLVMPositionBuilderAtEnd(cg->b, run);
    Loop l;
    kc->o = loop_begin(kc, &l, ob, oe, "o");
    emit_scope(kc, -1);
    bool flat = true, heavy = heavy_scope(kc->k, -1);
    for (int s = 0; s < kc->k->stages.len; s++) {
        emit_stage(kc, s);
        flat = flat && kc->k->stages.data[s].extent <= 1;
        heavy = heavy || heavy_scope(kc->k, s);
    }
    loop_end(kc, &l, NULL, NULL, 0, flat && heavy ? cg->vec_floats : 0);
    LLVMBuildBr(cg->b, done);
    LLVMPositionBuilderAtEnd(cg->b, done);
}

/* Which buffers kernel k touches (loads and stores), in buffer order. */
static int kernel_buffers(const KProgram *p, const Kernel *k, int *list) {
    bool *used = xcalloc((size_t)p->bufs.len + 1, sizeof(bool));
    for (int i = 0; i < k->insts.len; i++)
        if (k->insts.data[i].kind == KI_LOAD) used[k->insts.data[i].buf] = true;
    for (int s = 0; s < k->stages.len; s++)
        for (int j = 0; j < k->stages.data[s].stores.len; j++) used[k->stages.data[s].stores.data[j].buf] = true;
    if (k->kind == KK_MATMUL && k->mm.a_buf >= 0 && k->mm.b_buf >= 0 && k->mm.a_buf < p->bufs.len &&
        k->mm.b_buf < p->bufs.len)
        used[k->mm.a_buf] = used[k->mm.b_buf] = true;
    int n = 0;
    for (int i = 0; i < p->bufs.len; i++)
        if (used[i]) list[n++] = i;
    free(used);
    return n;
}

static void kc_init(Kc *kc, Cg *cg, const Kernel *k) {
    memset(kc, 0, sizeof *kc);
    kc->cg = cg;
    kc->k = k;
    kc->range = kernel_index_ranges(k);
    kc->narrow = index_fits_i32(k, kc->range);
    kc->idx_t = kc->narrow ? cg->t_i32 : cg->t_i64;
    kc->bufptr = xcalloc((size_t)cg->p->bufs.len + 1, sizeof(LLVMValueRef));
    kc->val = xcalloc((size_t)k->insts.len + 1, sizeof(LLVMValueRef));
    kc->r = xcalloc((size_t)k->stages.len + 1, sizeof(LLVMValueRef));
    kc->acc = xcalloc((size_t)k->stages.len + 1, sizeof(LLVMValueRef));
    kc->skip_stage = -1;
}
static void kc_free(Kc *kc) {
    free(kc->row_cache);
    free(kc->row_cache_reads);
    free(kc->range);
    free(kc->bufptr);
    free(kc->val);
    free(kc->r);
    free(kc->acc);
}

/* An internal function NAME.SUFFIX(i64 ob, i64 oe, ptr noalias b...) over the
 * buffers in list; binds kc->fn and kc->bufptr and positions the builder. */
static LLVMValueRef begin_inner_fn(Kc *kc, const char *suffix, const int *list, int nb, bool values) {
    Cg *cg = kc->cg;
    LLVMTypeRef *ps = xcalloc((size_t)nb + 3, sizeof(LLVMTypeRef));
    ps[0] = ps[1] = cg->t_i64;
    for (int i = 0; i < nb + values; i++) ps[2 + i] = cg->t_ptr; /* a sized kernel's values last */
    char *name = name2(kc->k->name, suffix);
    LLVMValueRef fn =
        LLVMAddFunction(cg->mod, name, LLVMFunctionType(cg->t_void, ps, (unsigned)(nb + 2 + values), 0));
    free(name);
    free(ps);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    add_fn_attr(cg, fn, cg->k_nounwind);
    for (int i = 0; i < nb; i++) {
        LLVMAddAttributeAtIndex(fn, (unsigned)(3 + i), LLVMCreateEnumAttribute(cg->ctx, cg->k_noalias, 0));
        kc->bufptr[list[i]] = LLVMGetParam(fn, (unsigned)(2 + i));
    }
    kc->fn = fn;
    LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry"));
    return fn;
}

/* Converts the i64 range arguments to the index type. */
static void range_args(Kc *kc, LLVMValueRef fn, LLVMValueRef *ob, LLVMValueRef *oe) {
    *ob = LLVMGetParam(fn, 0), *oe = LLVMGetParam(fn, 1);
    if (kc->narrow) {
        *ob = LLVMBuildTrunc(kc->cg->b, *ob, kc->cg->t_i32, "");
        *oe = LLVMBuildTrunc(kc->cg->b, *oe, kc->cg->t_i32, "");
    }
}

static LLVMValueRef emit_generic_fn(Cg *cg, const Kernel *k, const int *list, int nb) {
    Kc kc;
    kc_init(&kc, cg, k);
    LLVMValueRef fn = begin_inner_fn(&kc, ".generic", list, nb, false);
    LLVMValueRef ob, oe;
    range_args(&kc, fn, &ob, &oe);
    emit_generic_loops(&kc, ob, oe);
    LLVMBuildRetVoid(cg->b);
    kc_free(&kc);
    return fn;
}

/* ------------------------------------------------------------- matmul
 *
 * A KK_MATMUL kernel whose reduction is a plain f32 sum of A(b, m, k) *
 * B(b, k, n) (operands f32, f16 or bf16, as KMatmul describes them) gets a
 * BLIS-style loop nest instead of the generic one (docs/cpu-backend.md):
 *
 *   for jc < N step NC:                      B block kc x NC (L3)
 *     for pc < K step KC:  pack B -> Bp      panels of NR columns, zero-padded
 *       for ic < rows step MC: pack A -> Ap  panels of MR rows (L2)
 *         for jr < nc step NR:               B micro-panel (L1)
 *           for ir < mc step MR:             MR x NR register tile, FMAs on
 *             acc (+= Cacc when pc > 0)      <VL x float> accumulators
 *             pc last: tile -> epilogue per element -> outputs; else -> Cacc
 *
 * The kernel's [o_begin, o_end) is split into whole output rows (run tiled)
 * and ragged ends (run by NAME.generic); if malloc fails for the packing
 * buffers the generic form runs instead, so the kernel never fails. */

typedef struct {
    int vl, mr, nr;      /* vector width, register tile */
    int64_t kc, mc, nc;  /* cache blocks */
    bool swap;           /* the tile's vectors run along M (mm_swapped) */
} MmShape;

/* The micro-kernel's own shape: MR rows broadcast, NR columns in vectors. */
static MmShape ukernel_shape(const Cg *cg) {
    MmShape s;
    if (cg->vec_floats >= 16)
        s = (MmShape){16, 12, 32, 256, 240, 2048, false};
    else if (cg->vec_floats >= 8)
        s = (MmShape){8, 6, 16, 256, 120, 2048, false};
    else
        s = (MmShape){4, 4, 8, 256, 64, 1024, false};
    return s;
}

/* Whether product mm runs swapped: its columns (a late convolution's few
 * pixels: 49 at 7x7) broadcast and its rows (the output channels, a
 * multiple of the vector width) in the vectors.  49 columns in tiles of 32
 * compute 64 (23 % of every FMA on padding); swapped, the micro-kernel runs
 * C^T = B^T A^T on the same panels, rows of 12 pixels (the last one 4) by 32
 * channels.  Decided by the shape alone (llvm_kernel_grain has no target):
 * the lanes used, columns by 16 and rows by 4 as they go, against rows by
 * 16 and columns by 4 swapped. */
static bool mm_swapped(const KMatmul *mm) {
    if (mm->n >= 128 || mm->m < 32) return false;
    double n = (double)mm->n, m = (double)mm->m;
    double plain = n / (double)((mm->n + 15) / 16 * 16) * m / (double)((mm->m + 3) / 4 * 4);
    double swapped = m / (double)((mm->m + 15) / 16 * 16) * n / (double)((mm->n + 3) / 4 * 4);
    return swapped > 1.1 * plain;
}

/* Whether threads split tiled product g by output columns (more columns
 * than rows; a convolution of one image whose input is gathered: whenever
 * it has 128 pixels and K is a whole K block, 256; not a product with a
 * prepacked B whose A would be packed again by every column chunk:
 * rows_for_prepacked_b) rather than by rows.  Split by rows, a gathered B
 * is gathered again in every chunk (or once per thread, whole, for one
 * image: each thread gathers all of it) where split by columns each thread
 * gathers only its pixels (ResNet-50's 3x3 layers at 14x14: 256 rows, 196
 * pixels, 1.09-1.16x).  One image only: at batch 8 the row chunks are whole
 * images (llvm_kernel_grain), which gather nothing twice (split by columns:
 * 5-7 % slower); and not for short K (a 1x1 stride-2 128->256 at 14x14,
 * K = 128: 1.2x slower split by columns and swapped).  A convolution read
 * in place (conv_taps) of 8 images or more goes by rows too, in whole
 * images: each chunk copies its image's padded input once, where column
 * chunks of a few output rows copied each image's rows and their window's
 * halo again (ResNet-18 batch 8's 3x3 64->64 at 56x56, 2 threads: 1.035x). */
static bool rows_for_prepacked_b(const KProgram *p, const KGemm *g);
static bool conv_taps(const KProgram *p, const KGemm *g);

/* A swapped product of one image (mm_swapped: fewer than 128 columns, at
 * least two tiles of 12) with fewer than SWAPPED_SPLIT_ROWS rows: its
 * 32-row panels are too few to share (MobileNetV2's 576->160 and 960->160
 * layers at 7x7: 5 panels, 3 against 2 on 2 threads), so threads split its
 * columns, the broadcast pixels, in tiles of ROW_GRAIN (49 px: 12, 12, 12,
 * 12, 1), each reading every panel of A.  Those layers on 2 threads, batch
 * 1: 0.82-0.85x the time (fastest runs of 6 rounds, load 4.5-4.7). */
enum { SWAPPED_SPLIT_ROWS = 256 };
static bool gemm_swapped(const KProgram *p, const KGemm *g);
static bool few_swapped_panels(const KProgram *p, const KGemm *g) {
    const KMatmul *mm = &g->mm;
    return mm->batch == 1 && mm->m < SWAPPED_SPLIT_ROWS && mm->n >= 2 * 12 && mm->n < 128 &&
           gemm_swapped(p, g);
}

/* A convolution of one image read in place (conv_taps) with fewer pixels
 * than this and M a multiple of 128 goes by rows, in quarters of M
 * (llvm_kernel_grain): each thread then reads half the weights, where each
 * column chunk read all of them.  ResNet's 3x3 256->256 at 14x14 has 2.4
 * MB of weights, more than a core's L2 (2 MiB on Emerald Rapids): in the
 * model, on 2 threads, a thread's 6, 7 or 8 rows of 14 took 0.90, 0.98
 * and 1.00 ms, the weights' stream more than the FMAs; by rows each
 * thread also copies the whole padded input (256 KB, once).  Gathered
 * (im2col) such a layer went by columns: by rows each thread gathered the
 * whole image. */
enum { TAPS_ROWS_MAX_PIXELS = 256 };

/* A 1x1 convolution of one image (constant weights A times the image's
 * plane B) whose B is packed since its rows are not whole cache lines
 * (b_in_place: a 14x14 plane's rows are 784 bytes), with 256 rows or more
 * but fewer than 4 per column (ResNet-50's 1024->256 and 1024->512 at
 * 14x14, K = 1024), goes by columns, and swapped where it has fewer than
 * 256 columns and M % 16 == 0 (gemm_swapped; otherwise unswapped, in
 * grains of 32 columns), as a gathered convolution of one image does: split
 * by rows each thread gathered the whole plane (gathered_operand: 0.8 MB, 1024 x 196) for half
 * the rows; by columns each thread packs only its own pixels, in tiles of
 * 12 (17 for 196 pixels, where 32-pixel tiles left a 4-pixel one costing
 * half a tile), and reads all the prepacked weights.  Quiet, 2 threads,
 * batch 1: those layers 1.16-1.28x (1 thread 1.1x: the swapped form).
 * With more rows per column (256->1024, A 5x B) the weights' reading
 * doubled costs more than the plane's packing saves: 0.84-0.91x. */
enum {
    POINTWISE_COLUMNS_MIN_ROWS = 256,
    POINTWISE_COLUMNS_MIN_K = 256,
    POINTWISE_COLUMNS_MAX_ROWS_PER_COLUMN = 4,
};
/* Whether B's rows (b_sk f32 apart) start at different offsets into a
 * cache line (a 14x14 plane's 784-byte rows: 3 of 4 start inside a line),
 * so that a panel read in place spans more lines than it holds and its
 * vector loads split across lines (b_in_place). */
enum { CACHE_LINE_BYTES = 64 };
static bool b_rows_split_lines(const KMatmul *mm) {
    return mm->b_sk * (int64_t)sizeof(float) % CACHE_LINE_BYTES != 0;
}
static bool packed_pointwise_columns(const KProgram *p, const KGemm *g) {
    const KMatmul *mm = &g->mm;
    return !g->conv && mm->batch == 1 && p->bufs.data[mm->a_buf].constant &&
           !p->bufs.data[mm->b_buf].constant && mm->b_sn == 1 && mm->n >= 128 &&
           mm->k >= POINTWISE_COLUMNS_MIN_K && mm->m >= POINTWISE_COLUMNS_MIN_ROWS &&
           mm->m < POINTWISE_COLUMNS_MAX_ROWS_PER_COLUMN * mm->n && b_rows_split_lines(mm);
}

/* A 1x1 stride-1 convolution's product (conv_gemm: conv NULL, batch dims
 * [images, groups], the weights A shared by the images) of 8 or more
 * images, one group, is split over its outer range (images x rows: whole
 * images where M % 12 != 0, else grains of 12 rows, so a chunk may end
 * inside an image; llvm_kernel_grain) where it went by columns (8 x 64-256
 * rows < 3136 pixels: ResNet-50's 1x1 layers at 56x56, MobileNetV2's at
 * 112x112 to 28x28): by columns every chunk read a slice of all 8 images;
 * by images a thread reads (mostly) only its own, in a model mostly those
 * its part of the kernel before wrote (split by images too).  2 threads,
 * batch 8, quiet, the changed kernels normalised by the unchanged ones:
 * ResNet-50 1.03x, MobileNetV2 1.08x; the two layers alone 1.0x
 * (docs/performance.md, "Session 11: batch 8's 1x1 layers at two
 * threads"). */
enum { POINTWISE_SPLIT_MIN_IMAGES = 8 };
static bool pointwise_images(const KGemm *g) {
    const KMatmul *mm = &g->mm;
    return !g->conv && mm->nbatch == 2 && mm->batch_dims[0] >= POINTWISE_SPLIT_MIN_IMAGES &&
           mm->batch_dims[1] == 1 && mm->a_batch_stride[0] == 0;
}

/* Row chunks of a product start on a multiple of MR rows: a prepacked A's
 * panels start there, and a chunk starting inside a panel computes the
 * panel's rows before it again (ResNet-50's 256-row products in 8 chunks of
 * 32 rows computed 48 rows each).  12 is a multiple of every MR (mm_shape). */
enum { ROW_GRAIN = 12 };

/* A product of one image with a constant A (a 1x1 stride-1 convolution)
 * that expands few channels (K < POINTWISE_EXPANSION_MAX_K) into at least
 * twice as many, in whole row grains for two threads (tuned on 2 threads
 * only: 32->192 has 16 grains), whose input (K x N) is at most
 * POINTWISE_EXPANSION_MAX_B_BYTES, is split by its rows (output channels),
 * not its columns: the layer after it (MobileNetV2's depthwise 3x3) is
 * split by channel planes, and by columns each thread wrote half of every
 * plane, so that the depthwise layer read half its input from the other
 * core's cache.  MobileNetV2 batch 1, 2 threads (quiet, Intel Xeon model
 * 207): at 28x28 (32->192, input 100 KB) the expansions 0.91-1.01x and the
 * depthwise layers after them 1.09-1.47x, 1.05x together; at 56x56 (24->144,
 * 300 KB) and 112x112 (16->96, 800 KB) the depthwise layers gained as much
 * (1.14-1.44x) as the expansions lost (0.84-0.85x): each thread then reads
 * all of the larger input, half of it from the other core (the projection
 * before is split by columns).  Batch 8 splits by images (pointwise_images). */
enum { POINTWISE_EXPANSION_MAX_K = 64, POINTWISE_EXPANSION_MAX_B_BYTES = 128 << 10 };
static bool pointwise_expansion_rows(const KProgram *p, const KGemm *g) {
    const KMatmul *mm = &g->mm;
    /* M a multiple of two row grains (ROW_GRAIN): two threads take whole grains */
    if (g->conv || mm->batch != 1 || !p->bufs.data[mm->a_buf].constant ||
        mm->k >= POINTWISE_EXPANSION_MAX_K || mm->m < 2 * mm->k || mm->m % (2 * ROW_GRAIN) != 0)
        return false;
    const size_t b_elem = kiln_dtype_size(p->bufs.data[mm->b_buf].dtype);
    return (double)mm->k * (double)mm->n * (double)b_elem <= (double)POINTWISE_EXPANSION_MAX_B_BYTES;
}

bool llvm_split_by_columns(const KProgram *p, const KGemm *g) {
    const KMatmul *mm = &g->mm;
    if (g->conv && mm->batch == 1 && mm->n < TAPS_ROWS_MAX_PIXELS && mm->m % 128 == 0 && conv_taps(p, g))
        return false;
    if (g->conv && mm->batch == 1 && mm->n >= 128 && mm->k >= 256) return true;
    if (packed_pointwise_columns(p, g)) return true;
    if (few_swapped_panels(p, g)) return true;
    if (g->conv && mm->batch >= 8 && conv_taps(p, g)) return false;
    if (pointwise_images(g)) return false;
    if (pointwise_expansion_rows(p, g)) return false;
    return mm->batch * mm->m < mm->n && mm->n >= 128 && !rows_for_prepacked_b(p, g);
}

/* Whether convolution g reads its input in place, through taps (the
 * kiln.mm.ukernel.tapS micro-kernels), instead of gathering it under the
 * window by NAME.im2col: each image's input, zero-padded, is copied once per
 * chunk (the rows the chunk's pixels read) and every register tile of 12
 * pixels along one output row broadcasts it at tab[k] + pixel * sw, tab the
 * (c, kh, kw) offsets in the padded image.  The tile runs swapped (pixels
 * broadcast, channels in vectors: M a multiple of 16); its pixels never
 * cross an output row, so a row of OW pixels is tiles of 12 and one of OW %
 * 12, a multiple of the micro-kernel's row step when OW is a multiple of 4
 * (so that the partial sums' tiles never overlap).  The gather was ~10 % of
 * a 3x3 64->64 layer at 56x56 (1 thread); the copy is one pass over the
 * input.  f32, one group, a window wider than 1x1, sw <= CONV_TAPS_MAX_SW,
 * K >= CONV_TAPS_MIN_K.  Stride 2 and K = 147 (ResNet's 7x7 stem, the 3x3
 * stride-2 layers to 28x28) since the epilogue runs per output row
 * (conv_row_ld): per tile, its cost had kept them gathered (the stem read
 * in place was 0.88x of the gather; with the row epilogue 1.07x). */
enum { CONV_TAPS_MAX_SW = 2, CONV_TAPS_MIN_K = 128, CONV_TAPS_TILE_EPI_MIN_K = 256, CONV_ROW_MAX_OW = 128 };
/* Output rows of a multiple of 7 pixels (ResNet's 14x14 and 7x7 planes)
 * are read in place too, in tiles of 7 (conv_taps_tile), which the
 * micro-kernel computes exactly (.tapS.r7vV, taps_exact_rows): a row of 14
 * was two such tiles (one tile of CONV_TAPS_WIDE_TILE on AVX-512 since
 * session 15), where gathered its 196 pixels went 16 x 12 + 4 and
 * NAME.im2col took 5-7 % of the layer. */
enum { CONV_TAPS_ODD_TILE = 7 };
/* Rows of a multiple of CONV_TAPS_WIDE_TILE pixels (ResNet's 112, 56, 28
 * and 14) run tiles of 14 where the micro-kernel is 12 pixels by 2 vectors
 * of 16 channels (AVX-512): 28 accumulators, the 2 weight vectors and a
 * broadcast fit its 32 registers, and the tile is computed exactly
 * (.tapS.r14vV, taps_exact_rows).  A tile's fixed costs (its transposes
 * into the row buffer, the output's write prefetches, the call) are paid
 * per 14 pixels, and no row ends in a narrower tile: the stem's rows of 112
 * went 9 x 12 + 4, the 56x56 layers' 4 x 12 + 8 (both slower in tiles of
 * 7), rows of 28 four tiles of 7 (session 14: 12 + 12 + 4 had cost 1.13x
 * per FMA) and rows of 14 two.  Quiet, Intel Xeon model 207, normalised by
 * the kernels left alone: ResNet-18 and -50 1.007-1.018x (batch 1 and 8, 1
 * and 2 threads), the stem at batch 8 1.02-1.04x (docs/performance.md,
 * "Session 15: the 3x3 layers at 56x56 and the stem"). */
enum { CONV_TAPS_WIDE_TILE = 14 };
static bool taps_wide_tiles(const MmShape *sh) {
    return sh->vl >= 16 && sh->mr == 12 && sh->nr == 2 * sh->vl;
}
/* Whether convolution cv's input is its padded image as it is: unpadded,
 * each image's planes hp x wp, read in place without the copy.  An image
 * kept padded by its producer (pad_conv_inputs in passes/fuse.c) is one;
 * so is any unpadded convolution whose input planes are exactly its
 * window's extent (a 3x3 without padding at stride 1, a graph input or a
 * channel slice included: the copy would have been the input itself). */
static bool conv_taps_in_place(const KConv *cv) {
    int64_t hp, wp;
    kconv_padded_plane(cv, &hp, &wp);
    return cv->ph == 0 && cv->pw == 0 && cv->h == hp && cv->w == wp && cv->xs[3] == 1 && cv->xs[2] == wp &&
           cv->xs[1] == hp * wp;
}

static bool conv_taps(const KProgram *p, const KGemm *g) {
    const KConv *cv = g->conv;
    const KMatmul *mm = &g->mm;
    if (!cv || cv->groups != 1 || cv->kh * cv->kw < 2 || cv->sw < 1 || cv->sw > CONV_TAPS_MAX_SW ||
        (cv->ow % 4 && cv->ow % CONV_TAPS_ODD_TILE) || mm->m % 16 || mm->k < CONV_TAPS_MIN_K || cv->ph < 0 ||
        cv->pw < 0)
        return false;
    if (p->bufs.data[mm->a_buf].dtype != KILN_F32 || p->bufs.data[mm->b_buf].dtype != KILN_F32 ||
        cv->xs[3] != 1)
        return false;
    /* rows too wide for the row buffer keep the per-tile epilogue, which
     * pays only at stride 1 with K >= 256 (the stem read in place so was
     * 0.88x of the gather) */
    if (cv->ow > CONV_ROW_MAX_OW && (cv->sw > 1 || mm->k < CONV_TAPS_TILE_EPI_MIN_K)) return false;
    int64_t hp, wp;
    kconv_padded_plane(cv, &hp, &wp);
    return (double)cv->c * (double)hp * (double)wp < 2147483647.0;
}

/* The row buffer of a convolution read in place (conv_taps): its tiles'
 * final sums, transposed, go to a buffer of its output rows (each output
 * channel's pixels of one row), and the epilogue runs once per row (or a
 * block's part of a row) over all its channels, each channel's pixels a
 * few masked vectors, instead of once per tile over each channel's 12
 * pixels 32 floats apart (a scalar loop: 6 % of a 3x3 64->64 layer at
 * 56x56, 1 thread).  Row stride: the row's width, rounded up to the vector,
 * and a vector more (the last tile's transposed rows are a whole vector
 * wide).  Output rows of at most CONV_ROW_MAX_OW pixels (the buffer is on
 * the stack: MC rows); 0 for wider rows. */
static int64_t conv_row_ld(const Cg *cg, const KConv *cv) {
    int64_t VL = cg->vec_floats;
    return cv->ow <= CONV_ROW_MAX_OW ? (cv->ow + VL - 1) / VL * VL + VL : 0;
}

/* The pixels of a register tile along an output row of a convolution read
 * in place: CONV_TAPS_WIDE_TILE where rows are a multiple of it and go
 * through the row buffer (taps_wide_tiles: AVX-512); else the
 * micro-kernel's (swapped) width, 12 on AVX-512, the row's last tile ow %
 * 12, when rows are a multiple of 4 pixels; else tiles of
 * CONV_TAPS_ODD_TILE (on a narrower micro-kernel its width, the row's last
 * tile computed exactly: taps_exact_rows). */
static int conv_taps_tile(const Cg *cg, const KConv *cv) {
    MmShape ush = ukernel_shape(cg);
    int width = ush.mr;
    if (width < CONV_TAPS_ODD_TILE) return width;
    if (taps_wide_tiles(&ush) && cv->ow % CONV_TAPS_WIDE_TILE == 0 && cv->ow <= CONV_ROW_MAX_OW)
        return CONV_TAPS_WIDE_TILE;
    return cv->ow % 4 == 0 ? width : CONV_TAPS_ODD_TILE;
}

/* Winograd F(2x2, 3x3) (Lavin & Gray 2015) for the 3x3 stride-1 layers read
 * in place (conv_wino): each 2x2 block of output pixels (a tile) from a
 * 4x4 block of the padded input, d, by
 *     Y = A^T [ U (.) V ] A,   U = G g G^T (per output and input channel,
 *     from the 3x3 weights g, at bind), V = B^T d B (per input channel and
 *     tile),
 * the 16 products of U[p] (output channels x input channels) by V[p]
 * (input channels x tiles) run by the plain micro-kernel: 16 x 16 products
 * per tile of 4 pixels where the direct form has 9 x 4 (2.25x fewer).  The
 * tiles of a block are WINO_NR (the micro-kernel's NR, 32) or fewer: whole
 * rows of tiles (an output row pair), WINO_TW = ceil(OW / 2) tiles each.
 * See docs/cpu-backend.md, "Winograd F(2x2,3x3)". */
enum { WINO_P = 16, WINO_NR = 32, WINO_MIN_C = 64, WINO_OUT_LD = 64, WINO_U_MAX_BYTES = 4 << 20 };
typedef struct {
    int64_t tw, th;            /* tiles per row, rows of tiles (per image) */
    int64_t rows;              /* tile rows per block (tw * rows <= WINO_NR) */
    int64_t wh, ww;            /* the padded copy's planes: rows, row stride */
    int64_t np, mr;            /* panels of MR output channels in U, MR */
    int64_t plane_f, v_f, m_f; /* floats of the padded copy, of V, of M */
} WinoGeo;

static bool conv_wino(const Cg *cg, const KGemm *g) {
    const KConv *cv = g->conv;
    if (!cg->wino || cg->aot || !cv || cg->vec_floats != 16 || !conv_taps(cg->p, g)) return false;
    if (cv->kh != 3 || cv->kw != 3 || cv->sh != 1 || cv->sw != 1 || cv->dh != 1 || cv->dw != 1 ||
        cv->groups != 1 || cv->ph < 0 || cv->ph > 1 || cv->pw < 0 || cv->pw > 1 || cv->xs[3] != 1)
        return false;
    if (cv->c < WINO_MIN_C || (cv->ow + 1) / 2 > WINO_NR || cv->w_buf < 0 || cv->w_buf != g->mm.a_buf)
        return false;
    const KBuf *w = &cg->p->bufs.data[cv->w_buf];
    if (!w->constant || w->dtype != KILN_F32 || cv->oc != g->mm.m || cv->oh * cv->ow != g->mm.n) return false;
    /* U, read once per block of tiles by each chunk (from the L3 or memory,
     * prefetched a product ahead): at most 4 MiB (ResNet's 3x3 layers at
     * 56x56 to 14x14: 64 to 256 channels), any size where the chunks are
     * whole images (8 or more: llvm_split_by_columns).  ResNet-18's 3x3
     * 512->512 at 7x7 (16 MiB, 16 tiles an image) ran 1.00x at batch 1 and
     * 1.16x at batch 8 (2 threads, Zen 5; docs/performance.md, "Session
     * 18: Winograd for the 3x3 layers") */
    double u_bytes = (double)WINO_P * (double)cv->c * (double)cv->oc * 4.0;
    return u_bytes <= (double)WINO_U_MAX_BYTES || g->mm.batch >= 8;
}

static WinoGeo wino_geo(const Cg *cg, const KGemm *g) {
    const KConv *cv = g->conv;
    WinoGeo w;
    w.tw = (cv->ow + 1) / 2, w.th = (cv->oh + 1) / 2;
    w.rows = WINO_NR / w.tw;
    if (w.rows > w.th) w.rows = w.th;
    w.wh = 2 * w.th + 3, w.ww = 2 * w.tw + 2;
    w.mr = ukernel_shape(cg).mr;
    w.np = (cv->oc + w.mr - 1) / w.mr;
    w.plane_f = cv->c * w.wh * w.ww + 64;
    w.v_f = WINO_P * (cv->c + 1) * WINO_NR; /* each position's channels and a spare row */
    w.m_f = WINO_P * w.mr * WINO_NR;
    return w;
}

/* Whether product g runs swapped (mm_swapped); also a gathered convolution
 * split by columns that has fewer than 256 pixels (a 14x14 image) and
 * whole vectors of output channels: its chunks of 32 pixels then run as
 * 12 + 12 + 8 broadcast pixels, where unswapped a 196-pixel image's last
 * chunk (4 pixels) filled a 16-lane vector.  Several images (split by
 * rows) too when the window is wider than 1x1: ResNet-50 batch 8's 3x3
 * layers at 14x14 1.06-1.2x, ResNet-18's 1.02-1.09x; its 1x1 stride-2
 * 512->1024 was 1.2x slower swapped. */
static bool gemm_swapped(const KProgram *p, const KGemm *g) {
    const KMatmul *mm = &g->mm;
    if (conv_taps(p, g)) return true;
    if (g->conv && (mm->batch == 1 || g->conv->kh * g->conv->kw > 1) && mm->n >= 128 && mm->n < 256 &&
        mm->k >= 256 && mm->m >= 32 && mm->m % 16 == 0)
        return true;
    if (packed_pointwise_columns(p, g) && mm->n < 256 && mm->m % 16 == 0) return true;
    return mm_swapped(mm);
}

/* The loop nest's shape for product g: MR rows of A (packed in MR-row
 * panels) by NR columns of B per register tile.  Swapped, MR and NR are the
 * micro-kernel's NR and MR (the multiple of 32 rows in MC and in the
 * partial sums' row groups keep panels aligned). */
static MmShape mm_shape_form(const Cg *cg, bool swap) {
    MmShape s = ukernel_shape(cg);
    if (!swap) return s;
    return (MmShape){s.vl, s.nr, s.mr, s.kc, s.nr * 8, s.nc, true};
}
/* A convolution read in place (conv_taps) whose row block of weights (MC
 * output channels by KC taps) is larger than TAPS_L1_BLOCK_BYTES runs one
 * panel of MR channels per row block: its tiles run every panel of the
 * block in turn (ir inside jr), so a block of 64-256 KiB passed through
 * the 48 KiB L1d for every tile of 12 pixels, where a panel of 32 x 256
 * taps (32 KiB) stays in it over all the tiles of a column block, and the
 * padded input, re-read once per panel, comes from the L2 in order.
 * Quiet, Intel Xeon model 207, normalised by the kernels it leaves alone:
 * ResNet-18's and ResNet-50's 3x3 layers 1.005-1.04x together (batch 1 and
 * 8, 1 and 2 threads), those at 14x14 and 7x7 most.  The 7x7 stem's block
 * (64 x 147 taps, 37 KiB) stays in the L1 as it is (one panel per block:
 * 0.97-1.02x, its input read twice).  On AMD Zen 5 (Cg.taps_l1_small) the
 * bound is TAPS_L1_BLOCK_BYTES_ZEN5, below the stem's block, whose tiles
 * then run one panel of 32 channels (18.4 KiB of weights) each: a row of
 * the stem's tiles touched its block, its 21 input rows (19 KB) and the
 * output lines its tiles prefetch for writing (28 KB), more than the 48
 * KiB L1d; the stem alone, 1 thread, quiet: 1.027x at batch 8, 1.025x at
 * batch 1 (docs/performance.md, "Session 17: the 3x3 layers and the
 * stem").  Every other taps layer of ResNet-18 and -50 (K >= 576, 64
 * channels or more: 64 KiB and up) takes one panel a block already. */
enum { TAPS_L1_BLOCK_BYTES = 40 << 10, TAPS_L1_BLOCK_BYTES_ZEN5 = 32 << 10 };
/* A swapped product (not read through taps) with long rows, K and M both
 * at least SWAP_ONE_PANEL_MIN, runs one panel of MR rows per row block too
 * (its own size-generic nest, kiln.mm.nest.swap1): a tile of 12 (or 1)
 * pixels ran every 32-channel panel of its 256-channel block (256 KiB)
 * through the L1, so its last pixel of 49 streamed them all from the L2;
 * one panel (32 KiB) stays in the L1 over the block's few pixel tiles.
 * ResNet-50's 1x1 layers at 7x7 (K and M 512-2048); not MobileNetV2's
 * swapped layers (K or M of 160-384: 0.89x at batch 8 with one panel) nor
 * ResNet-50's at 14x14 (256 channels on one side). Quiet, Intel Xeon model
 * 207: docs/performance.md, "Session 13: the 1x1 layers at 7x7-28x28". */
/* On AMD Zen 5 (Cg.plane_one_panel) so does a swapped product of one image
 * of at most SWAP_ONE_PANEL_PLANE_N pixels (a 7x7 plane: MobileNetV2's
 * 1x1 layers at 7x7, K and M of 160-1280): its 49th pixel's one-row tile
 * read its 32-channel panel from the L2 (128 bytes a k step for 2 FMAs: ~3
 * cycles a step), and the panel stays in the L1 over the plane's 5 tiles.
 * The eight layers in the model (b1, quiet, interleaved): 1.058x (2
 * threads), 1.068x (1 thread); batch 8 keeps its blocks (0.89x, above). */
enum { SWAP_ONE_PANEL_MIN = 512, SWAP_ONE_PANEL_PLANE_N = 64 };
static bool swap_one_panel(const Cg *cg, const KGemm *g) {
    const KMatmul *mm = &g->mm;
    bool plane = cg->plane_one_panel && mm->batch == 1 && mm->n <= SWAP_ONE_PANEL_PLANE_N;
    return ((mm->k >= SWAP_ONE_PANEL_MIN && mm->m >= SWAP_ONE_PANEL_MIN) || plane) && !conv_taps(cg->p, g) &&
           gemm_swapped(cg->p, g);
}
/* Whether product g (unswapped; kc its tile form's KC) runs its K in one
 * block of 2 KC (Cg.one_k_block: AMD Zen 5): K in (KC, 2 KC], A a constant
 * (the weights, prepacked in blocks of that KC), and a B that then takes the
 * next-block prefetch (prefetch_next_block: an activation of 2 MiB or more
 * read along its columns, a 1x1 convolution's input).  In two blocks each
 * tile's partial sums went through Cacc and B's block came from memory
 * unprefetched: ResNet-50 batch 8's 1x1 512->128 and 512->256 at 28x28
 * (B 12.8 MB) ran 0.50-0.59 ms an image against 0.42 at batch 1 on one
 * thread; in one block 1.21-1.41x (1 thread) and 1.07-1.38x (2 threads),
 * the whole model 1.037x and 1.026x by CPU time; MobileNetV2 batch 8's
 * 384->64/96 at 14x14 1.02-1.03x (1 thread), the model 1.00x.  Batch 1 (B
 * 1.6 MB, in the caches) ran 0.99-1.03x, so the rule keeps to a large B
 * (and batch 1 to its shared nests: byte-identical code).  K = 1024 in one
 * block or two of 512 (ResNet-50's 1x1 1024->256 and 1024->512 at 14x14,
 * B packed) 0.98-1.00x: not taken.  The nest is then the product's own
 * (emit_matmul_fn, kernel_sized: the shared nests and their prebuilt forms
 * keep the form's KC; two more units to compile for ResNet-50 batch 8,
 * +25-35 ms cold).  Quiet, Zen 5 (docs/performance.md, "Session 17:
 * ResNet-50's 1x1 layers at batch 8"). */
static bool prefetch_next_block(const KProgram *p, const KGemm *g, bool packed_b, bool multi_k, bool swap);
static bool b_constant(const Cg *cg, const KGemm *g);
static bool one_k_block(const Cg *cg, const KGemm *g, int64_t kc) {
    const KMatmul *mm = &g->mm;
    return cg->one_k_block && mm->k > kc && mm->k <= 2 * kc && cg->p->bufs.data[mm->a_buf].constant &&
           prefetch_next_block(cg->p, g, b_constant(cg, g), false, false);
}
static MmShape mm_shape(const Cg *cg, const KGemm *g) {
    MmShape s = mm_shape_form(cg, gemm_swapped(cg->p, g));
    if (!s.swap && one_k_block(cg, g, s.kc)) s.kc *= 2;
    if (conv_taps(cg->p, g)) {
        int64_t rows = g->mm.m < s.mc ? g->mm.m : s.mc, taps = g->mm.k < s.kc ? g->mm.k : s.kc;
        if (rows * taps * 4 > (cg->taps_l1_small ? TAPS_L1_BLOCK_BYTES_ZEN5 : TAPS_L1_BLOCK_BYTES))
            s.mc = s.mr;
    } else if (swap_one_panel(cg, g)) {
        s.mc = s.mr;
    }
    return s;
}

/* Whether kernel k runs the tiled loop nest (a matmul, or a conv as an
 * implicit GEMM), and the product it computes. */
static bool program_gemm_tiled(const KProgram *p, const Kernel *k, KGemm *g) {
    if (!kernel_gemm(p, k, g)) return false;
    const KMatmul *mm = &g->mm;
    /* small products are faster without packing */
    if (mm->n < 8 || mm->k < 8 || mm->m * mm->batch < 4 || (double)mm->m * mm->n * mm->k < 32768.0) return false;
    /* a convolution with few output channels per group (depthwise) or a
     * short window would mostly fill the register tile with padding: the
     * direct form does better */
    if (k->kind == KK_CONV && (mm->m < 6 || mm->k < 16)) return false;
    return true;
}
static bool gemm_tiled(const Cg *cg, const Kernel *k, KGemm *g) { return program_gemm_tiled(cg->p, k, g); }

bool llvm_conv_taps(const KProgram *p, const Kernel *k) {
    KGemm g;
    return program_gemm_tiled(p, k, &g) && conv_taps(p, &g);
}

/* Both read in place and the producer's epilogue runs per output row
 * (conv_row_ld): it stores each row's part as vectors wherever the row
 * lies, with the row's borders (emit_tile_epilogue's row_runs,
 * zero_row_borders), and the consumer skips its copy (conv_taps_in_place).
 * Only where the padded planes are at most KEEP_PADDED_MAX_EIGHTHS / 8 of
 * the image: ResNet-18's 3x3 layers at 56x56 (58 x 58 planes, +7 %) read
 * in place 1.03-1.05x, their producers unchanged (quiet, 1 and 2 threads,
 * batch 1 and 8); at 28x28 (30 x 30, +15 %) and below (16 x 16, 9 x 9) the
 * producers' larger planes and per-row borders cost 1-3 % and the
 * consumers, whose copy is a smaller part of a longer K, gained 0-2 %:
 * no net gain (docs/performance.md, Session 13). */
enum { KEEP_PADDED_MAX_EIGHTHS = 9 };
bool llvm_conv_keeps_padded(const KProgram *p, const Kernel *producer, const Kernel *consumer) {
    if (!llvm_conv_taps(p, consumer) || !llvm_conv_taps(p, producer) || producer->conv.ow > CONV_ROW_MAX_OW)
        return false;
    const KConv *cv = &consumer->conv;
    int64_t hp, wp;
    kconv_padded_plane(cv, &hp, &wp);
    return (double)hp * (double)wp * 8 <= (double)cv->h * (double)cv->w * KEEP_PADDED_MAX_EIGHTHS;
}

/* A product whose B the nest packs in every chunk (b_packed_per_chunk)
 * takes every row of a chunk in one group while the partial sums stay
 * under CACC_PACKED_B_MAX_BYTES: they come from the L3 at 480 rows already
 * (2048 columns: 3.9 MB), and each group packed all of B again (kiln's
 * 2048^3 sgemm on one thread: 5 times, 8 % of its time).  Its chunks are
 * PACKED_B_ROW_GRAIN rows or more (llvm_kernel_grain). */
enum { CACC_PACKED_B_MAX_BYTES = 16 << 20, PACKED_B_ROW_GRAIN = 96 };

/* Whether the nest packs product g's B again in every row group of every
 * chunk: a product of two activations (no constant operand, not a
 * convolution) with K of a whole block or more and more rows than a row
 * block (MC: B packed, not read in place: b_in_place) whose B is too
 * large to gather once per thread (gathered_operand) or of several
 * batches.  Decided by the shape (llvm_kernel_grain has no target): the
 * AVX-512 tile's KC and MC, the largest of every target's. */
static bool b_packed_per_chunk(const KProgram *p, const KGemm *g);

int64_t llvm_kernel_grain(const KProgram *p, const Kernel *k) {
    KGemm g;
    if ((k->kind == KK_MATMUL || k->kind == KK_CONV) && kernel_gemm(p, k, &g) && g.mm.n > 0 &&
        g.mm.batch * g.mm.m * g.mm.n == k->outer) {
        /* fewer rows than a grain (a classifier head's GEMV): runs of
         * columns, so that the threads share the weights' reading */
        if (g.mm.batch * g.mm.m < ROW_GRAIN) return 64;
        /* whole batches when M is not a multiple; swapped products' row
         * panels are 32 rows (or 16, 8: mm_shape) */
        int64_t grain = gemm_swapped(p, &g) ? 32 : ROW_GRAIN;
        /* each chunk packs all of B for its rows: the pool's last chunks of
         * 12 and 48 rows (a thread's part shrinks by quarters) took 10-12 ms
         * of ~165 of each thread's 2048^3 product, at 0.2-0.8 ms a row
         * against 0.15 in the first.  Not where several batches' M is no
         * multiple of the grain: the split would fall back to whole batches
         * (a [2, 252, 300] @ [2, 300, 200] product ran 2 chunks on 3
         * threads, 1.22-1.28x slower than in 12-row grains) */
        if (b_packed_per_chunk(p, &g) && (g.mm.batch == 1 || g.mm.m % PACKED_B_ROW_GRAIN == 0))
            grain = PACKED_B_ROW_GRAIN;
        /* a convolution of one image read in place split by rows (a 7x7
         * plane: too few pixels to split) in 4 chunks: each chunk copies
         * the whole padded input (all its channels), which 16 chunks of 32
         * rows copied 9 times (ResNet's 3x3 512->512 at 7x7, 2 threads:
         * 1.056x CPU) */
        if (g.conv && g.mm.batch == 1 && g.mm.m % 128 == 0 && conv_taps(p, &g)) grain = g.mm.m / 4;
        /* a convolution of several images in whole images: a chunk of
         * rows gathers its image's input under the window whole, and the
         * guided chunks' small last ones gathered it again for 32 rows
         * (ResNet-18 batch 8's 512-channel layers at 7x7: 1.05-1.12x) */
        if (g.conv && g.mm.batch >= 8) return g.mm.m * g.mm.n;
        return (g.mm.m % grain == 0 || g.mm.batch == 1 ? grain : g.mm.m) * g.mm.n;
    }
    if (k->kind == KK_MATMUL && k->mm.n > 0 && k->mm.batch * k->mm.m * k->mm.n == k->outer) return k->mm.n;
    if (k->kind == KK_CONV && k->conv.x_buf >= 0 && k->conv.oh * k->conv.ow > 0) return k->conv.oh * k->conv.ow;
    if (k->kind == KK_POOL && k->conv.x_buf >= 0 && k->conv.ow > 0) return k->conv.ow;
    return 64;
}

/* A top-tested loop for i in [start, end) step `step` (of start's type). */
typedef struct {
    LLVMBasicBlockRef header, body, exit;
    LLVMValueRef iv, step;
} TLoop;

static LLVMValueRef tloop_begin(Kc *kc, TLoop *l, LLVMValueRef start, LLVMValueRef end, int64_t step, const char *name) {
    Cg *cg = kc->cg;
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(cg->b);
    l->header = LLVMAppendBasicBlockInContext(cg->ctx, kc->fn, name);
    l->body = LLVMAppendBasicBlockInContext(cg->ctx, kc->fn, "body");
    l->exit = LLVMAppendBasicBlockInContext(cg->ctx, kc->fn, "exit");
    l->step = LLVMConstInt(LLVMTypeOf(start), (unsigned long long)step, 1);
    LLVMBuildBr(cg->b, l->header);
    LLVMPositionBuilderAtEnd(cg->b, l->header);
    l->iv = LLVMBuildPhi(cg->b, LLVMTypeOf(start), name);
    LLVMAddIncoming(l->iv, &start, &pre, 1);
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, l->iv, end, ""), l->body, l->exit);
    LLVMPositionBuilderAtEnd(cg->b, l->body);
    return l->iv;
}
static LLVMValueRef tloop_end(Kc *kc, TLoop *l) {
    Cg *cg = kc->cg;
    LLVMValueRef next = LLVMBuildAdd(cg->b, l->iv, l->step, "");
    LLVMSetNSW(next, 1);
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(cg->b);
    LLVMValueRef br = LLVMBuildBr(cg->b, l->header);
    LLVMAddIncoming(l->iv, &next, &latch, 1);
    LLVMPositionBuilderAtEnd(cg->b, l->exit);
    return br;
}


/* if (cond) { then... } : returns the block to continue in after then_end. */
typedef struct {
    LLVMBasicBlockRef then, join;
} IfBlock;
static void if_begin(Kc *kc, IfBlock *ib, LLVMValueRef cond) {
    Cg *cg = kc->cg;
    ib->then = LLVMAppendBasicBlockInContext(cg->ctx, kc->fn, "then");
    ib->join = LLVMAppendBasicBlockInContext(cg->ctx, kc->fn, "join");
    LLVMBuildCondBr(cg->b, cond, ib->then, ib->join);
    LLVMPositionBuilderAtEnd(cg->b, ib->then);
}
static void if_end(Kc *kc, IfBlock *ib) {
    LLVMBuildBr(kc->cg->b, ib->join);
    LLVMPositionBuilderAtEnd(kc->cg->b, ib->join);
}

static LLVMValueRef call_fn(Cg *cg, LLVMValueRef fn, LLVMValueRef *args, int n) {
    return LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(fn), fn, args, (unsigned)n, "");
}

/* The element offset of batch bi in an operand with per-dim strides. */
static LLVMValueRef batch_offset(Cg *cg, const KMatmul *mm, const int64_t *strides, LLVMValueRef bi) {
    LLVMValueRef off = ci64(cg, 0), rest = bi;
    for (int d = mm->nbatch - 1; d >= 0; d--) {
        LLVMValueRef dim = ci64(cg, mm->batch_dims[d]);
        LLVMValueRef idx = LLVMBuildURem(cg->b, rest, dim, "");
        rest = LLVMBuildUDiv(cg->b, rest, dim, "");
        if (strides[d]) off = iadd(cg, off, imul(cg, idx, ci64(cg, strides[d])));
    }
    return off;
}

/* A 64-byte aligned pointer into a malloc'd block of `bytes` (+64). */
static LLVMValueRef align64(Cg *cg, LLVMValueRef raw) {
    LLVMValueRef ri = LLVMBuildPtrToInt(cg->b, raw, cg->t_i64, "");
    LLVMValueRef adj = LLVMBuildAnd(cg->b, LLVMBuildAdd(cg->b, ri, ci64(cg, 63), ""), ci64(cg, ~(int64_t)63), "");
    return LLVMBuildGEP2(cg->b, cg->t_i8, raw, (LLVMValueRef[]){LLVMBuildSub(cg->b, adj, ri, "")}, 1, "");
}

static LLVMValueRef get_malloc(Cg *cg, LLVMTypeRef *ty) {
    *ty = LLVMFunctionType(cg->t_ptr, &cg->t_i64, 1, 0);
    LLVMValueRef f = LLVMGetNamedFunction(cg->mod, "malloc");
    return f ? f : LLVMAddFunction(cg->mod, "malloc", *ty);
}
static LLVMValueRef get_free(Cg *cg, LLVMTypeRef *ty) {
    *ty = LLVMFunctionType(cg->t_void, &cg->t_ptr, 1, 0);
    LLVMValueRef f = LLVMGetNamedFunction(cg->mod, "free");
    return f ? f : LLVMAddFunction(cg->mod, "free", *ty);
}


static LLVMValueRef vec_load(Cg *cg, LLVMTypeRef vt, LLVMValueRef base, LLVMValueRef idx, unsigned align) {
    LLVMValueRef v = LLVMBuildLoad2(cg->b, vt, elem_ptr(cg, cg->t_f32, base, idx), "");
    LLVMSetAlignment(v, align);
    return v;
}
static void vec_store(Cg *cg, LLVMValueRef v, LLVMValueRef base, LLVMValueRef idx, unsigned align) {
    LLVMValueRef s = LLVMBuildStore(cg->b, v, elem_ptr(cg, cg->t_f32, base, idx));
    LLVMSetAlignment(s, align);
}

static LLVMValueRef splat(Cg *cg, LLVMValueRef x, int n) {
    LLVMTypeRef vt = LLVMVectorType(cg->t_f32, (unsigned)n);
    LLVMValueRef v = LLVMBuildInsertElement(cg->b, LLVMGetUndef(vt), x, ci32(cg, 0), "");
    LLVMValueRef zeros = LLVMConstNull(LLVMVectorType(cg->t_i32, (unsigned)n));
    return LLVMBuildShuffleVector(cg->b, v, LLVMGetUndef(vt), zeros, "");
}

/* A not-inlined helper that depends on nothing but the target (the
 * micro-kernel, the packing routines), shared by the kernels of a module.
 * Kernels compiled apart (runtime/cpu_code.c: cg->helper_suffix) only
 * declare it, as NAME + suffix, and one object for all of them defines it
 * (llvm_compile_helpers).  *fresh: just added (give it its attributes);
 * returns whether the caller emits its body now (the builder is then at
 * its entry). */
static bool shared_helper(Cg *cg, const char *base, LLVMTypeRef fty, LLVMValueRef *fn, bool *fresh) {
    char *name = cg->helper_suffix ? name2(base, cg->helper_suffix) : xstrdup(base);
    *fn = LLVMGetNamedFunction(cg->mod, name);
    *fresh = !*fn;
    if (*fresh) {
        *fn = LLVMAddFunction(cg->mod, name, fty);
        if (!cg->helper_suffix) LLVMSetLinkage(*fn, LLVMInternalLinkage);
        add_fn_attr(cg, *fn, cg->k_nounwind);
        add_fn_attr(cg, *fn, cg->k_noinline);
    }
    free(name);
    bool define = *fresh && (!cg->helper_suffix || cg->define_helpers);
    if (*fresh && !define) cg->uses_helpers = true;
    if (define) LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, *fn, "entry"));
    return define;
}

/* shared_helper for a void helper of np parameters ps, every pointer among
 * them noalias (the row-wise helpers: they read one buffer and write another). */
static bool shared_void_helper(Cg *cg, const char *base, LLVMTypeRef *ps, int np, LLVMValueRef *fn) {
    bool fresh,
        define = shared_helper(cg, base, LLVMFunctionType(cg->t_void, ps, (unsigned)np, 0), fn, &fresh);
    if (fresh)
        for (int i = 0; i < np; i++)
            if (ps[i] == cg->t_ptr)
                LLVMAddAttributeAtIndex(*fn, (unsigned)i + 1,
                                        LLVMCreateEnumAttribute(cg->ctx, cg->k_noalias, 0));
    return define;
}

/* The packing routines' signature: void NAME(ptr noalias, i64 x 5, ptr noalias). */
static LLVMTypeRef pack_fn_type(Cg *cg) {
    LLVMTypeRef ps[7] = {cg->t_ptr, cg->t_i64, cg->t_i64, cg->t_i64, cg->t_i64, cg->t_i64, cg->t_ptr};
    return LLVMFunctionType(cg->t_void, ps, 7, 0);
}
/* An im2col's: the packing routines' and ptr block (its window, MMB_C_*). */
static LLVMTypeRef im2col_fn_type(Cg *cg) {
    LLVMTypeRef ps[8] = {cg->t_ptr, cg->t_i64, cg->t_i64, cg->t_i64,
                         cg->t_i64, cg->t_i64, cg->t_ptr, cg->t_ptr};
    return LLVMFunctionType(cg->t_void, ps, 8, 0);
}
static void pack_fn_noalias(Cg *cg, LLVMValueRef fn) {
    LLVMAddAttributeAtIndex(fn, 1, LLVMCreateEnumAttribute(cg->ctx, cg->k_noalias, 0));
    LLVMAddAttributeAtIndex(fn, 7, LLVMCreateEnumAttribute(cg->ctx, cg->k_noalias, 0));
}

/* A kernel's own packing routine (internal, not inlined), the builder at
 * its entry. */
static LLVMValueRef begin_pack_fn(Cg *cg, const char *name) {
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, im2col_fn_type(cg));
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    add_fn_attr(cg, fn, cg->k_nounwind);
    add_fn_attr(cg, fn, cg->k_noinline);
    pack_fn_noalias(cg, fn);
    LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry"));
    return fn;
}

/* void kiln.mm.pack.DT.W(ptr src, i64 base, i64 s_i, i64 s_k, i64 valid, i64 kc, ptr dst):
 * packs a block of `valid` lines (rows of A, or columns of B) by kc into
 * panels of W lines: dst[i0*kc + kk*W + w] = src[base + (i0+w)*s_i + kk*s_k]
 * as f32, zero for lines past `valid`.  Whole panels with s_i == 1 (B
 * row-major) copy W contiguous elements per k (vectorised), a partial f32
 * one (B's last panel) W/VL masked vectors per k; whole panels with s_k ==
 * 1 (A row-major) read each line contiguously; the rest (other edges and
 * strides) go element by element.  One per source dtype and W. */
/* n vectors of n floats transposed in place (n a power of two, at most 16):
 * log2(n) rounds of two-source shuffles; round b pairs rows r and r + b
 * (r / b even) and swaps their off-diagonal blocks of b lanes. */
static void transpose_square(Cg *cg, LLVMValueRef *rows, int n) {
    for (int b = 1; b < n; b *= 2) {
        LLVMValueRef lo[16], hi[16];
        for (int j = 0; j < n; j++) {
            bool first = (j / b) % 2 == 0;
            lo[j] = ci32(cg, first ? j : n + j - b);
            hi[j] = ci32(cg, first ? j + b : n + j);
        }
        LLVMValueRef ml = LLVMConstVector(lo, (unsigned)n), mh = LLVMConstVector(hi, (unsigned)n);
        for (int r = 0; r < n; r++) {
            if ((r / b) % 2) continue;
            LLVMValueRef a = rows[r], c = rows[r + b];
            rows[r] = LLVMBuildShuffleVector(cg->b, a, c, ml, "");
            rows[r + b] = LLVMBuildShuffleVector(cg->b, a, c, mh, "");
        }
    }
}

/* The first `end` k of a full f32 panel whose W <= VL lines are contiguous
 * along k (a row-major A), VL k at a time: each line's vector loaded, the
 * VL x VL block transposed in registers (lines past W undefined), and each
 * k's W floats stored.  The scalar copy of this path took about 3.5 cycles
 * per element (MiniLM: 8.5 % of its time in kiln.mm.pack.f32.12). */
static void pack_lines_by_vectors(Kc *kc, int W, LLVMValueRef src, LLVMValueRef pbase, LLVMValueRef si,
                                  LLVMValueRef end, LLVMValueRef dst, LLVMValueRef pdst) {
    Cg *cg = kc->cg;
    int VL = cg->vec_floats;
    LLVMTypeRef vt = LLVMVectorType(cg->t_f32, (unsigned)VL);
    LLVMValueRef rows[16], first_w[16];
    for (int j = 0; j < W; j++) first_w[j] = ci32(cg, j);
    TLoop lv;
    LLVMValueRef k0 = tloop_begin(kc, &lv, ci64(cg, 0), end, VL, "kv");
    for (int i = 0; i < VL; i++)
        rows[i] = i < W ? vec_load(cg, vt, src, iadd(cg, iadd(cg, pbase, imul(cg, ci64(cg, i), si)), k0),
                                   ELEM_ALIGN)
                        : LLVMGetUndef(vt);
    transpose_square(cg, rows, VL);
    for (int k = 0; k < VL; k++) {
        LLVMValueRef v = W == VL ? rows[k]
                                 : LLVMBuildShuffleVector(cg->b, rows[k], LLVMGetUndef(vt),
                                                          LLVMConstVector(first_w, (unsigned)W), "");
        vec_store(cg, v, dst, iadd(cg, pdst, imul(cg, iadd(cg, k0, ci64(cg, k)), ci64(cg, W))), 4);
    }
    loop_metadata(cg, tloop_end(kc, &lv), -1, 0);
}

static LLVMValueRef lane_mask(Cg *cg, LLVMValueRef rem, int VL);
static LLVMValueRef masked_load_f32(Cg *cg, LLVMValueRef src, LLVMValueRef i, LLVMValueRef mask,
                                    LLVMValueRef other);
static void masked_store_f32(Cg *cg, LLVMValueRef v, LLVMValueRef base, LLVMValueRef idx, LLVMValueRef mask);
static LLVMValueRef const_lanes(Cg *cg, int64_t lo, int64_t hi, int W);

/* the most vectors in a packed panel line: W <= NR = 32 floats, VL >= 4 (SSE) */
enum { PACK_EDGE_MAX_VECTORS = 8 };
static LLVMValueRef helper_pack(Cg *cg, KilnDType dt, int W) {
    char name[64];
    snprintf(name, sizeof name, "kiln.mm.pack.%s.%d", kiln_dtype_name(dt), W);
    LLVMBasicBlockRef saved = LLVMGetInsertBlock(cg->b);
    LLVMValueRef fn;
    bool fresh, define = shared_helper(cg, name, pack_fn_type(cg), &fn, &fresh);
    if (fresh) pack_fn_noalias(cg, fn);
    if (!define) return fn;
    Kc kc = {.cg = cg, .fn = fn};
    LLVMValueRef src = LLVMGetParam(fn, 0), base = LLVMGetParam(fn, 1), si = LLVMGetParam(fn, 2);
    LLVMValueRef sk = LLVMGetParam(fn, 3), valid = LLVMGetParam(fn, 4), kcv = LLVMGetParam(fn, 5);
    LLVMValueRef dst = LLVMGetParam(fn, 6), cW = ci64(cg, W);
    LLVMValueRef si1 = LLVMBuildICmp(cg->b, LLVMIntEQ, si, ci64(cg, 1), "");
    LLVMValueRef sk1 = LLVMBuildICmp(cg->b, LLVMIntEQ, sk, ci64(cg, 1), "");
    TLoop lp, lk, lw;
    LLVMValueRef start = ci64(cg, 0);
    if (cg->pack_rows && dt == KILN_F32 && W == ukernel_shape(cg).nr && W % cg->vec_floats == 0) {
        /* (Cg.pack_rows, AMD Zen 5) B's full panels of contiguous lines
         * (si = 1), where there are two or more, a k row at a time: each row
         * of B read once, in order; then its last, partial panel as below.
         * Panel by panel each row was read a 128-byte slice at a time, a
         * 14x14 plane's rows 784 bytes apart and their lines shared with
         * the next panel's.  ResNet-50 batch 8's 1x1 1024->256 at 14x14
         * (kiln.mm.pack.f32.32 8 % of the layer alone, 1 thread) 1.026x
         * alone on 1 thread, 1.014x on 2; in the model (B packed in every
         * 1x1 layer at 14x14) those layers 1.01-1.02x (docs/performance.md,
         * "Session 18: ResNet-50 b8's 1x1 layers").  One full panel (an
         * attention head's 32 columns) keeps the panel loop. */
        LLVMValueRef rows_first = LLVMBuildAnd(
            cg->b, si1, LLVMBuildICmp(cg->b, LLVMIntSGE, valid, ci64(cg, 2 * (int64_t)W), ""), "rows_first");
        LLVMValueRef nfull =
            LLVMBuildSelect(cg->b, rows_first, LLVMBuildUDiv(cg->b, valid, cW, ""), ci64(cg, 0), "nfull");
        IfBlock by_rows;
        if_begin(&kc, &by_rows, rows_first);
        LLVMTypeRef vt = LLVMVectorType(cg->t_f32, (unsigned)cg->vec_floats);
        TLoop rk, rp;
        LLVMValueRef kk = tloop_begin(&kc, &rk, ci64(cg, 0), kcv, 1, "rk");
        LLVMValueRef s0 = iadd(cg, base, imul(cg, kk, sk)), d0 = imul(cg, kk, cW);
        LLVMValueRef pi = tloop_begin(&kc, &rp, ci64(cg, 0), nfull, 1, "rp");
        LLVMValueRef sp = iadd(cg, s0, imul(cg, pi, cW)), dp = iadd(cg, d0, imul(cg, imul(cg, pi, cW), kcv));
        for (int v = 0; v < W; v += cg->vec_floats) {
            LLVMValueRef x = vec_load(cg, vt, src, iadd(cg, sp, ci64(cg, v)), 4);
            vec_store(cg, x, dst, iadd(cg, dp, ci64(cg, v)), 4);
        }
        tloop_end(&kc, &rp);
        tloop_end(&kc, &rk);
        if_end(&kc, &by_rows);
        start = imul(cg, nfull, cW);
    }
    LLVMValueRef i0 = tloop_begin(&kc, &lp, start, valid, W, "panel");
    LLVMValueRef pdst = imul(cg, i0, kcv);
    LLVMValueRef full = LLVMBuildICmp(cg->b, LLVMIntSLE, iadd(cg, i0, cW), valid, "");
    LLVMValueRef pbase = iadd(cg, base, imul(cg, i0, si));
    LLVMBasicBlockRef b_rows = LLVMAppendBasicBlockInContext(cg->ctx, fn, "contig_lines");
    LLVMBasicBlockRef b_t = LLVMAppendBasicBlockInContext(cg->ctx, fn, "not_contig_lines");
    LLVMBasicBlockRef b_cols = LLVMAppendBasicBlockInContext(cg->ctx, fn, "contig_k");
    LLVMBasicBlockRef b_gen = LLVMAppendBasicBlockInContext(cg->ctx, fn, "general");
    LLVMBasicBlockRef b_done = LLVMAppendBasicBlockInContext(cg->ctx, fn, "panel_done");
    const int VL = cg->vec_floats, edge_nvec = (W + VL - 1) / VL;
    const bool edge_vectors = dt == KILN_F32 && edge_nvec <= PACK_EDGE_MAX_VECTORS;
    LLVMBasicBlockRef b_edge =
        edge_vectors ? LLVMAppendBasicBlockInContext(cg->ctx, fn, "edge_contig_lines") : NULL;
    LLVMBuildCondBr(cg->b, LLVMBuildAnd(cg->b, full, si1, ""), b_rows, b_t);
    LLVMPositionBuilderAtEnd(cg->b, b_t);
    if (edge_vectors) {
        LLVMBasicBlockRef b_t2 = LLVMAppendBasicBlockInContext(cg->ctx, fn, "not_edge_contig_lines");
        LLVMBuildCondBr(cg->b, si1, b_edge, b_t2);
        LLVMPositionBuilderAtEnd(cg->b, b_t2);
    }
    LLVMBuildCondBr(cg->b, LLVMBuildAnd(cg->b, full, sk1, ""), b_cols, b_gen);

    /* the last, partial panel of a row-major f32 B (a 14x14 image's last 4
     * of 196 columns, a 7x7 image's last 1 of 49 in a swapped product's
     * 12-column panels): per k ceil(W/VL) masked vector loads of its valid
     * lines, zeros past them (a panel line narrower than a vector stored
     * under a mask of its W lanes), where the element-by-element loop
     * below, a branch per element, took 30 % of packing such a B (1x1
     * 1024->256 at 14x14) and half of packing MobileNetV2's 960->160 at 7x7
     * (W = 12 on AVX-512) */
    if (edge_vectors) {
        LLVMPositionBuilderAtEnd(cg->b, b_edge);
        LLVMTypeRef vt = LLVMVectorType(cg->t_f32, (unsigned)VL);
        LLVMValueRef mask[PACK_EDGE_MAX_VECTORS];
        for (int v = 0; v < edge_nvec; v++) {
            const int64_t lanes = W - (int64_t)v * VL < VL ? W - (int64_t)v * VL : VL;
            LLVMValueRef rem =
                imax(cg,
                     imin(cg, LLVMBuildSub(cg->b, valid, iadd(cg, i0, ci64(cg, (int64_t)v * VL)), ""),
                          ci64(cg, lanes)),
                     ci64(cg, 0));
            mask[v] = lane_mask(cg, LLVMBuildTrunc(cg->b, rem, cg->t_i32, ""), VL);
        }
        LLVMValueRef kk = tloop_begin(&kc, &lk, ci64(cg, 0), kcv, 1, "k");
        LLVMValueRef s0 = iadd(cg, pbase, imul(cg, kk, sk)), d0 = iadd(cg, pdst, imul(cg, kk, cW));
        for (int v = 0; v < edge_nvec; v++) {
            const int64_t lanes = W - (int64_t)v * VL < VL ? W - (int64_t)v * VL : VL;
            LLVMValueRef x =
                masked_load_f32(cg, src, iadd(cg, s0, ci64(cg, (int64_t)v * VL)), mask[v], LLVMConstNull(vt));
            LLVMValueRef at = iadd(cg, d0, ci64(cg, (int64_t)v * VL));
            if (lanes == VL)
                vec_store(cg, x, dst, at, 4);
            else
                masked_store_f32(cg, x, dst, at, const_lanes(cg, 0, lanes, VL));
        }
        tloop_end(&kc, &lk);
        LLVMBuildBr(cg->b, b_done);
    }

    /* W contiguous elements per k */
    LLVMPositionBuilderAtEnd(cg->b, b_rows);
    {
        LLVMValueRef kk = tloop_begin(&kc, &lk, ci64(cg, 0), kcv, 1, "k");
        LLVMValueRef s0 = iadd(cg, pbase, imul(cg, kk, sk)), d0 = iadd(cg, pdst, imul(cg, kk, cW));
        LLVMValueRef w = tloop_begin(&kc, &lw, ci64(cg, 0), cW, 1, "w");
        store_f32(cg, dst, iadd(cg, d0, w), conv(cg, load_elem(cg, dt, src, iadd(cg, s0, w)), dt, KILN_F32));
        loop_metadata(cg, tloop_end(&kc, &lw), 0, 1);
        tloop_end(&kc, &lk);
        LLVMBuildBr(cg->b, b_done);
    }
    /* each line read along k: f32 lines up to a vector's width VL k at a
     * time (pack_lines_by_vectors), the rest element by element */
    LLVMPositionBuilderAtEnd(cg->b, b_cols);
    {
        LLVMValueRef k1 = ci64(cg, 0);
        if (dt == KILN_F32 && W <= cg->vec_floats && cg->vec_floats <= 16) {
            k1 = LLVMBuildAnd(cg->b, kcv, ci64(cg, -(int64_t)cg->vec_floats), "kv_end");
            pack_lines_by_vectors(&kc, W, src, pbase, si, k1, dst, pdst);
        }
        LLVMValueRef w = tloop_begin(&kc, &lw, ci64(cg, 0), cW, 1, "w");
        LLVMValueRef s0 = iadd(cg, pbase, imul(cg, w, si)), d0 = iadd(cg, pdst, w);
        LLVMValueRef kk = tloop_begin(&kc, &lk, k1, kcv, 1, "k");
        store_f32(cg, dst, iadd(cg, d0, imul(cg, kk, cW)), conv(cg, load_elem(cg, dt, src, iadd(cg, s0, kk)), dt, KILN_F32));
        loop_metadata(cg, tloop_end(&kc, &lk), -1, 0); /* vectorised, the stores would be scatters: slower */
        tloop_end(&kc, &lw);
        LLVMBuildBr(cg->b, b_done);
    }
    /* element by element, zero past `valid` */
    LLVMPositionBuilderAtEnd(cg->b, b_gen);
    {
        LLVMValueRef kk = tloop_begin(&kc, &lk, ci64(cg, 0), kcv, 1, "k");
        LLVMValueRef kdst = iadd(cg, pdst, imul(cg, kk, cW));
        LLVMValueRef ksrc = iadd(cg, base, imul(cg, kk, sk));
        LLVMValueRef w = tloop_begin(&kc, &lw, ci64(cg, 0), cW, 1, "w");
        LLVMValueRef i = iadd(cg, i0, w);
        LLVMValueRef inb = LLVMBuildICmp(cg->b, LLVMIntSLT, i, valid, "");
        LLVMBasicBlockRef pre = LLVMGetInsertBlock(cg->b);
        LLVMBasicBlockRef ld = LLVMAppendBasicBlockInContext(cg->ctx, fn, "ld");
        LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(cg->ctx, fn, "st");
        LLVMBuildCondBr(cg->b, inb, ld, join);
        LLVMPositionBuilderAtEnd(cg->b, ld);
        LLVMValueRef v = load_elem(cg, dt, src, iadd(cg, ksrc, imul(cg, i, si)));
        LLVMBuildBr(cg->b, join);
        LLVMPositionBuilderAtEnd(cg->b, join);
        LLVMValueRef phi = phi2(cg, cg->t_f32, "", v, ld, cf(cg, 0.0), pre);
        store_f32(cg, dst, iadd(cg, kdst, w), phi);
        loop_metadata(cg, tloop_end(&kc, &lw), -1, 0);
        tloop_end(&kc, &lk);
        LLVMBuildBr(cg->b, b_done);
    }
    LLVMPositionBuilderAtEnd(cg->b, b_done);
    tloop_end(&kc, &lp);
    LLVMBuildRetVoid(cg->b);
    if (saved) LLVMPositionBuilderAtEnd(cg->b, saved);
    return fn;
}

/* void kiln.mm.ukernel(ptr Ap, ptr Bp, i64 kc, ptr C, i64 ldc, i1 accumulate, ptr Ap_again):
 * the MR x NR register tile C (+)= Ap-panel . Bp-panel, with MR * NR/VL
 * vector accumulators and one FMA per (row, vector) per k.  Shared by every
 * matmul kernel of the module.  Ap_again is Ap (see the loop body).
 *
 * Edge tiles: `rows` (a multiple of ukernel_row_step, <= MR) and `nv` (<=
 * NR/VL) make kiln.mm.ukernel.rRvV, which computes only the first rows x
 * nv*VL corner of the tile from the same MR- and NR-wide panels: a product
 * with M = 64 filled 6 panels of 12 rows (72 rows, 11 % of the FMAs on
 * padding) and a 14x14 image's 196 columns 7 tiles of 32 (224); the corner
 * variants compute 64 and 208.  Rows are broadcasts, so any row count
 * costs only its own FMAs; columns go by whole vectors, or by one
 * half-width vector (.rRh) for at most VL/2 real columns, a tile of 8 or
 * 12 rows and at most 4 columns runs transposed (.rRt), and a tile of one
 * real row runs .r1vV (ukernel_half, ukernel_transposed, ukernel_single_row).
 *
 * kiln.mm.ukernel.tapS[.rRvV] (taps = S, 1 or 2) takes an 8th argument, an
 * i32 table: row i's broadcast at k is Ap[tab[k] + i*S] instead of the
 * packed Ap[k*MR + i]: a convolution's padded input read in place, Ap at the
 * tile's first pixel, tab[k] the offset of tap k (conv_taps). */
static int ukernel_row_step(const MmShape *sh) { return sh->mr % 4 == 0 ? 4 : sh->mr % 2 == 0 ? 2 : sh->mr; }

/* Whether a tile with one real row runs a one-row corner (.r1vV) rather
 * than a row step's: the plain micro-kernel only (a swapped product's last
 * pixel of a 7x7 image: 49 = 4 x 12 + 1; its four-row corner spent 6 % of
 * such a layer on three rows of padding).  Taps tiles are whole row steps
 * and B-in-place tiles' rows are output channels. */
static bool ukernel_single_row(const MmShape *sh, bool b_in_place, int taps) {
    return ukernel_row_step(sh) > 1 && !b_in_place && !taps;
}

/* Whether a tile of at most VL/2 real columns runs a corner of half-width
 * vectors (.rRh): a zmm FMA takes both of Zen 4's 256-bit FMA pipes, a ymm
 * one either, so a 14x14 image's last 4 columns (196 = 6 x 32 + 4) cost
 * half what a 16-lane corner does (7 % of a 1x1 1024->256 layer, for 2 %
 * of its columns).  AVX-512 only; not with taps (whole vectors of channels). */
static bool ukernel_half(const MmShape *sh, int taps) { return sh->vl >= 16 && !taps; }

/* Whether a taps tile of `rows` pixels (not a multiple of the row step)
 * runs a micro-kernel of exactly that many rows (.tapS.rRvV), so that the
 * partial sums of the next tile along the row are not overwritten: tiles of
 * CONV_TAPS_ODD_TILE or CONV_TAPS_WIDE_TILE (conv_taps_tile), the latter
 * wider than the micro-kernel's MR; on a micro-kernel narrower than 7,
 * every such count (AVX2's 6-pixel tiles leave a row of 7 a last tile of 1). */
static bool taps_exact_rows(const MmShape *sh, int rows) {
    if (rows == CONV_TAPS_WIDE_TILE && taps_wide_tiles(sh)) return true;
    if (rows % ukernel_row_step(sh) == 0 || rows > sh->mr) return false;
    return sh->mr < CONV_TAPS_ODD_TILE || rows == CONV_TAPS_ODD_TILE;
}
/* A bound on the pixels of a taps tile, for the loops over tile widths:
 * MR or CONV_TAPS_WIDE_TILE, whichever is more (on AVX2 and SSE no tile
 * has 14 pixels, and taps_exact_rows answers false for the widths past
 * MR). */
static int taps_rows_max(const MmShape *sh) {
    return sh->mr > CONV_TAPS_WIDE_TILE ? sh->mr : CONV_TAPS_WIDE_TILE;
}

/* The accumulator sets a micro-kernel's k loop keeps: 1 (each tile's
 * accumulators chained through every k step), or, for the one-row corner
 * (.r1vV) where Cg.row_chains (AMD Zen 5), UKERNEL_ROW_CHAINS, step k into
 * set k % UKERNEL_ROW_CHAINS while four or more steps are left, the sets
 * then summed ((s0 + s1) + (s2 + s3)) and the last steps added to that.
 * One row's NV accumulators waited on the FMA's latency at each step (4
 * cycles for 2 FMAs); four sets give the two FMA pipes 4 NV independent
 * chains.  The 49th pixel of a swapped 7x7 image is such a tile: 6.5 % of
 * MobileNetV2's 1x1 160->960 at 7x7 (perf, 1 thread) for 1/49 of its
 * FMAs.  Its sums then differ from a whole tile's in the last bits, but
 * not between runs or thread counts: rows are split in multiples of MR
 * (ROW_GRAIN, a swapped product's pixels too), so a row that is a tile of
 * one is one in every split. */
enum { UKERNEL_ROW_CHAINS = 4 };
static int ukernel_chains(const Cg *cg, int rows, bool b_in_place, int taps, bool half) {
    return cg->row_chains && rows == 1 && !b_in_place && !taps && !half ? UKERNEL_ROW_CHAINS : 1;
}

/* void(ptr A panel, ptr B panel, i64 kc, ptr C, i64 ldc, i1 accumulate,
 * ptr A panel again); reading B in place (b_in_place), two more: i64 ldb
 * (B's row stride) and i64 lanes (of the tile's last vector, 1..VL); with
 * taps (conv_taps), one more: ptr tab (i32 tap offsets); then, every form,
 * ptr pf and i64 pf_step: with pf_step > 0, step k prefetches the line at
 * pf + k * pf_step bytes into the L2 (a_next_block: a slice of the next
 * block of weights, from memory, spread over the tile's steps); 0: none. */
static unsigned ukernel_nargs(bool b_in_place, int taps) { return b_in_place ? 9 : taps ? 8 : 7; }
static LLVMTypeRef ukernel_type(Cg *cg, bool b_in_place, int taps) {
    LLVMTypeRef ps[11] = {cg->t_ptr, cg->t_ptr, cg->t_i64, cg->t_ptr, cg->t_i64, cg->t_i1,
                          cg->t_ptr, cg->t_i64, cg->t_i64, cg->t_ptr, cg->t_i64};
    if (taps) ps[7] = cg->t_ptr;
    const unsigned n = ukernel_nargs(b_in_place, taps);
    ps[n] = cg->t_ptr, ps[n + 1] = cg->t_i64; /* pf, pf_step */
    return LLVMFunctionType(cg->t_void, ps, n + 2, 0);
}

/* What one k step of a micro-kernel reads (helper_ukernel_lanes). */
typedef struct {
    LLVMValueRef fn, Ap, Ap_again, Bp, pf_base, pf_step, last_lanes, zero;
    LLVMTypeRef vt;
    int VL, MR, NV, NR, PMR, taps;
    bool b_in_place, with_pf;
} UkStep;

/* Step kk of the micro-kernel's k loop: next[i * NV + v] = acc[i * NV + v]
 * + A[k, i] * B[k, v-th vector]. */
static void ukernel_k_step(Cg *cg, const UkStep *u, LLVMValueRef kk, LLVMValueRef *acc, LLVMValueRef *next,
                           LLVMValueRef *bv) {
    LLVMValueRef boff = imul(cg, kk, u->b_in_place ? LLVMGetParam(u->fn, 7) : ci64(cg, u->NR));
    LLVMValueRef aoff = imul(cg, kk, ci64(cg, u->PMR));
    if (u->with_pf) { /* a plain GEP: a prefetch past the weights is harmless */
        LLVMValueRef at = imul(cg, kk, u->pf_step);
        prefetch_at(cg, LLVMBuildGEP2(cg->b, cg->t_i8, u->pf_base, &at, 1, ""), false, 2);
    }
    if (u->taps) {
        LLVMValueRef tap =
            LLVMBuildLoad2(cg->b, cg->t_i32, elem_ptr(cg, cg->t_i32, LLVMGetParam(u->fn, 7), kk), "tap");
        aoff = LLVMBuildSExt(cg->b, tap, cg->t_i64, "");
    }
    for (int v = 0; v < u->NV; v++) {
        LLVMValueRef at = iadd(cg, boff, ci64(cg, v * u->VL));
        bv[v] = u->b_in_place && v == u->NV - 1 ? masked_load_f32(cg, u->Bp, at, u->last_lanes, u->zero)
                                                : vec_load(cg, u->vt, u->Bp, at, u->b_in_place ? 4 : 64);
    }
    /* The broadcast of A's row i (ukernel_embedded_bcast): on AMD Zen 1-4
     * each FMA loads its own (through pointers the optimiser cannot
     * prove equal: Ap for the first vector of B, Ap_again for the
     * others), so that x86 folds it into the FMA as an embedded
     * broadcast (vfmadd231ps mem{1to16}): a separate vbroadcastss per
     * row takes shuffle-unit slots the FMAs need (half of peak on Zen
     * 4).  Elsewhere (Intel, Zen 5) one vbroadcastss per row, a plain
     * load-port uop, feeds the row's FMAs register to register. */
    for (int i = 0; i < u->MR; i++) {
        LLVMValueRef at = iadd(cg, aoff, ci64(cg, u->taps ? i * u->taps : i)), shared = NULL;
        if (!cg->embedded_bcast) shared = splat(cg, load_f32(cg, u->Ap, at), u->VL);
        for (int v = 0; v < u->NV; v++) {
            LLVMValueRef av = shared ? shared : splat(cg, load_f32(cg, v ? u->Ap_again : u->Ap, at), u->VL);
            next[i * u->NV + v] = fma3(cg, av, bv[v], acc[i * u->NV + v]);
        }
    }
}

/* The micro-kernel of a rows x nv-vector tile (kiln.mm.ukernel: MR x NR;
 * .rRvV a corner); b_in_place (.ib): B's rows read where they lie, ldb
 * apart, the last vector under a mask (past N: never read); taps (.tapS):
 * A's broadcasts read through the tap table (not with b_in_place). */
static LLVMValueRef helper_ukernel_lanes(Cg *cg, const MmShape *sh, int rows, int nv, bool b_in_place,
                                         int taps, bool half) {
    const int VL = half ? sh->vl / 2 : sh->vl, MR = rows, NR = sh->nr, NV = nv, nacc = MR * NV, PMR = sh->mr;
    LLVMTypeRef vt = LLVMVectorType(cg->t_f32, (unsigned)VL);
    LLVMBasicBlockRef saved = LLVMGetInsertBlock(cg->b);
    LLVMValueRef fn;
    char form[16] = "", name[48];
    if (b_in_place) snprintf(form, sizeof form, ".ib");
    if (taps) snprintf(form, sizeof form, ".tap%d", taps);
    if (half)
        snprintf(name, sizeof name, "kiln.mm.ukernel%s.r%dh", form, rows);
    else if (rows != sh->mr || nv != NR / VL)
        snprintf(name, sizeof name, "kiln.mm.ukernel%s.r%dv%d", form, rows, nv);
    else
        snprintf(name, sizeof name, "kiln.mm.ukernel%s", form);
    bool fresh, define = shared_helper(cg, name, ukernel_type(cg, b_in_place, taps), &fn, &fresh);
    for (unsigned a = 1; fresh && a <= 4; a += (a == 2 ? 2 : 1))
        LLVMAddAttributeAtIndex(fn, a, LLVMCreateEnumAttribute(cg->ctx, cg->k_noalias, 0));
    if (!define) return fn;
    Kc kc = {.cg = cg, .fn = fn};
    LLVMValueRef Ap = LLVMGetParam(fn, 0), Bp = LLVMGetParam(fn, 1), kcv = LLVMGetParam(fn, 2);
    LLVMValueRef C = LLVMGetParam(fn, 3), ldc = LLVMGetParam(fn, 4), accumulate = LLVMGetParam(fn, 5);
    const int sets = ukernel_chains(cg, rows, b_in_place, taps, half), nall = nacc * sets;
    LLVMValueRef *accs = xcalloc((size_t)nall, sizeof(LLVMValueRef));
    LLVMValueRef *nexts = xcalloc((size_t)nall, sizeof(LLVMValueRef));
    LLVMValueRef *bv = xcalloc((size_t)NV, sizeof(LLVMValueRef));
    LLVMValueRef zero = LLVMConstNull(vt), last_lanes = NULL;
    if (b_in_place) last_lanes = lane_mask(cg, LLVMBuildTrunc(cg->b, LLVMGetParam(fn, 8), cg->t_i32, ""), VL);
    /* kc >= 1 always.  Two copies of the k loop: with a prefetch per k
     * (pf_step != 0: the next block of weights, a_next_block) and without
     * (every other tile: a prefetch per k of a line already in L1 cost a
     * 1x1 256->64 layer at 56x56 5 %) */
    const unsigned pfa = ukernel_nargs(b_in_place, taps);
    LLVMValueRef pf_base = LLVMGetParam(fn, pfa), pf_step = LLVMGetParam(fn, pfa + 1);
    LLVMBasicBlockRef loops[2] = {LLVMAppendBasicBlockInContext(cg->ctx, fn, "no_pf"),
                                  LLVMAppendBasicBlockInContext(cg->ctx, fn, "pf")};
    LLVMBasicBlockRef k_done = LLVMAppendBasicBlockInContext(cg->ctx, fn, "k_done"), ends[2];
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntNE, pf_step, ci64(cg, 0), ""), loops[1], loops[0]);
    LLVMValueRef *found[2] = {xcalloc((size_t)nacc, sizeof(LLVMValueRef)),
                              xcalloc((size_t)nacc, sizeof(LLVMValueRef))};
    UkStep u = {.fn = fn,
                .Ap = Ap,
                .Ap_again = LLVMGetParam(fn, 6),
                .Bp = Bp,
                .pf_base = pf_base,
                .pf_step = pf_step,
                .last_lanes = last_lanes,
                .zero = zero,
                .vt = vt,
                .VL = VL,
                .MR = MR,
                .NV = NV,
                .NR = NR,
                .PMR = PMR,
                .taps = taps,
                .b_in_place = b_in_place};
    /* Every micro-kernel's k loop runs two steps an iteration (then an odd
     * last one): per step it has four or five scalar instructions (the
     * pointers of A, B or the tap table, the prefetch's address, the
     * compare and branch) beside 24 FMAs, and on Intel the scalar ALU and
     * branch ports 0 and 5 are also the two 512-bit FMA ports.  Quiet, 1
     * thread, Intel Xeon model 207, normalised by the other kernels: the
     * taps' ResNet-18 3x3 layers 1.011-1.020x (batch 1 and 8), ResNet-50's
     * 1.006-1.015x; four steps an iteration gained no more (0.998-1.004x
     * against two).  The plain and in-place micro-kernels: see
     * docs/performance.md "Session 13: the micro-kernel's k loop". */
    const int unroll_log2 = sets == UKERNEL_ROW_CHAINS ? 2 : 1;
    LLVMValueRef *mid = xcalloc((size_t)nall, sizeof(LLVMValueRef));
    for (int with_pf = 0; with_pf < 2; with_pf++) {
        LLVMPositionBuilderAtEnd(cg->b, loops[with_pf]);
        u.with_pf = with_pf;
        /* groups of 1 << unroll_log2 steps while there are as many
         * left, then the rest one by one */
        LLVMValueRef groups = LLVMBuildLShr(cg->b, kcv, ci64(cg, unroll_log2), "groups");
        LLVMBasicBlockRef entry = LLVMGetInsertBlock(cg->b);
        LLVMBasicBlockRef loop_pre = LLVMAppendBasicBlockInContext(cg->ctx, fn, "groups_pre");
        LLVMBasicBlockRef after = LLVMAppendBasicBlockInContext(cg->ctx, fn, "groups_done");
        LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntNE, groups, ci64(cg, 0), ""), loop_pre, after);
        LLVMPositionBuilderAtEnd(cg->b, loop_pre);
        Loop lk;
        LLVMValueRef gk = loop_begin(&kc, &lk, ci64(cg, 0), groups, "kk_groups");
        for (int a = 0; a < nall; a++) {
            accs[a] = LLVMBuildPhi(cg->b, vt, "acc");
            LLVMAddIncoming(accs[a], &zero, &lk.pre, 1);
        }
        LLVMValueRef k0 = LLVMBuildShl(cg->b, gk, ci64(cg, unroll_log2), "");
        memcpy(mid, accs, sizeof(LLVMValueRef) * (size_t)nall);
        for (int j = 0; j < (1 << unroll_log2); j++) {
            const int set = (j % sets) * nacc;
            ukernel_k_step(cg, &u, LLVMBuildOr(cg->b, k0, ci64(cg, j), ""), mid + set, nexts + set, bv);
            memcpy(mid + set, nexts + set, sizeof(LLVMValueRef) * (size_t)nacc);
        }
        loop_end(&kc, &lk, accs, mid, nall, 0);
        LLVMBasicBlockRef loop_exit = LLVMGetInsertBlock(cg->b);
        LLVMBuildBr(cg->b, after);
        LLVMPositionBuilderAtEnd(cg->b, after);
        LLVMValueRef *done = xcalloc((size_t)nall, sizeof(LLVMValueRef));
        for (int a = 0; a < nall; a++) {
            done[a] = phi2(cg, vt, "acc_groups", zero, entry, mid[a], loop_exit);
        }
        for (int a = 0; sets == UKERNEL_ROW_CHAINS && a < nacc; a++) /* (s0 + s1) + (s2 + s3) */
            done[a] = f_add(cg, f_add(cg, done[a], done[nacc + a]),
                            f_add(cg, done[2 * nacc + a], done[3 * nacc + a]));
        LLVMValueRef rest = LLVMBuildAnd(cg->b, kcv, ci64(cg, (1 << unroll_log2) - 1), "rest");
        LLVMBasicBlockRef rest_pre = LLVMAppendBasicBlockInContext(cg->ctx, fn, "rest_pre");
        LLVMBasicBlockRef joined = LLVMAppendBasicBlockInContext(cg->ctx, fn, "steps_done");
        LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntNE, rest, ci64(cg, 0), ""), rest_pre, joined);
        LLVMPositionBuilderAtEnd(cg->b, rest_pre);
        Loop lr;
        LLVMValueRef rk = loop_begin(&kc, &lr, LLVMBuildSub(cg->b, kcv, rest, ""), kcv, "kk_rest");
        for (int a = 0; a < nacc; a++) {
            accs[a] = LLVMBuildPhi(cg->b, vt, "acc_rest");
            LLVMAddIncoming(accs[a], &done[a], &lr.pre, 1);
        }
        ukernel_k_step(cg, &u, rk, accs, mid, bv);
        loop_end(&kc, &lr, accs, mid, nacc, 0);
        LLVMBasicBlockRef rest_exit = LLVMGetInsertBlock(cg->b);
        LLVMBuildBr(cg->b, joined);
        LLVMPositionBuilderAtEnd(cg->b, joined);
        for (int a = 0; a < nacc; a++) {
            nexts[a] = phi2(cg, vt, "acc_k", done[a], after, mid[a], rest_exit);
        }
        free(done);
        memcpy(found[with_pf], nexts, sizeof(LLVMValueRef) * (size_t)nacc);
        ends[with_pf] = LLVMGetInsertBlock(cg->b);
        LLVMBuildBr(cg->b, k_done);
    }
    free(mid);
    LLVMPositionBuilderAtEnd(cg->b, k_done);
    for (int a = 0; a < nacc; a++) {
        nexts[a] = LLVMBuildPhi(cg->b, vt, "tile");
        LLVMValueRef vals[2] = {found[0][a], found[1][a]};
        LLVMAddIncoming(nexts[a], vals, ends, 2);
    }
    free(found[0]);
    free(found[1]);
    /* C (+)= tile */
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(cg->b);
    LLVMBasicBlockRef addc = LLVMAppendBasicBlockInContext(cg->ctx, fn, "addc");
    LLVMBasicBlockRef store = LLVMAppendBasicBlockInContext(cg->ctx, fn, "store");
    LLVMBuildCondBr(cg->b, accumulate, addc, store);
    LLVMPositionBuilderAtEnd(cg->b, addc);
    LLVMValueRef *sum = xcalloc((size_t)nacc, sizeof(LLVMValueRef));
    for (int i = 0; i < MR; i++) {
        LLVMValueRef row = imul(cg, ci64(cg, i), ldc);
        for (int v = 0; v < NV; v++)
            sum[i * NV + v] = f_add(cg, nexts[i * NV + v], vec_load(cg, vt, C, iadd(cg, row, ci64(cg, v * VL)), 4));
    }
    LLVMBuildBr(cg->b, store);
    LLVMPositionBuilderAtEnd(cg->b, store);
    for (int a = 0; a < nacc; a++) sum[a] = phi2(cg, vt, "", nexts[a], pre, sum[a], addc);
    for (int i = 0; i < MR; i++) {
        LLVMValueRef row = imul(cg, ci64(cg, i), ldc);
        for (int v = 0; v < NV; v++) vec_store(cg, sum[i * NV + v], C, iadd(cg, row, ci64(cg, v * VL)), 4);
    }
    LLVMBuildRetVoid(cg->b);
    free(sum);
    free(accs);
    free(nexts);
    free(bv);
    if (saved) LLVMPositionBuilderAtEnd(cg->b, saved);
    return fn;
}
static LLVMValueRef helper_ukernel(Cg *cg, const MmShape *sh, int rows, int nv, bool b_in_place, int taps) {
    return helper_ukernel_lanes(cg, sh, rows, nv, b_in_place, taps, false);
}

/* The transposed corner (.rRt, ukernel_transposed): a tile of `rows` rows
 * (8 or 12: more than UKERNEL_T_COLS) and at most UKERNEL_T_COLS real
 * columns (a 14x14 image's last 4 of 196 = 6 x 32 + 4).  Per k step the
 * A panel's `rows` elements are one masked vector and each of the 4
 * columns' B element is broadcast: 4 FMAs a step against the half-width
 * corner's one per row (12), whose FMAs cover 4 of 8 lanes.  One
 * accumulator per column, summed in k order as every other micro-kernel
 * sums: the results do not depend on which tiles a split makes (a column
 * chunk's last tile may be a corner).  Its 4 chains wait on the FMAs'
 * latency (4 cycles a step, against the half-width corner's 6); two sets
 * for even and odd k would halve that but change the sums.  The tile is
 * then transposed into C's rows (4 floats each).  Same signature as the other micro-kernels; B in place
 * reads only the tile's real columns (`lanes`), the others repeat column 0
 * into C's padding. */
/* A's panel is prefetched UKERNEL_T_A_AHEAD k steps ahead into the L1: the
 * corner reads it faster than a whole tile (4 FMAs a step, not 24), and
 * without it the 256->1024 at 14x14 gained 1.02x instead of 1.045x */
enum { UKERNEL_T_COLS = 4, UKERNEL_T_A_AHEAD = 16 };
static bool ukernel_transposed(const MmShape *sh, int taps, int rows) {
    return sh->vl >= 16 && !taps && rows > UKERNEL_T_COLS && rows <= sh->vl && rows <= sh->mr;
}

/* One k step of the transposed corner: acc[p] += A[k, 0..rows) * B[k, col[p]]. */
static void ukernel_cols_step(Cg *cg, const UkStep *u, LLVMValueRef kk, LLVMValueRef ldb,
                              LLVMValueRef rows_mask, const LLVMValueRef *col, LLVMValueRef *acc) {
    if (u->with_pf) {
        LLVMValueRef at = imul(cg, kk, u->pf_step);
        prefetch_at(cg, LLVMBuildGEP2(cg->b, cg->t_i8, u->pf_base, &at, 1, ""), false, 2);
    }
    LLVMValueRef aoff = imul(cg, kk, ci64(cg, u->PMR));
    {
        LLVMValueRef at = iadd(cg, aoff, ci64(cg, UKERNEL_T_A_AHEAD * u->PMR));
        prefetch_at(cg, LLVMBuildGEP2(cg->b, cg->t_f32, u->Ap, &at, 1, ""), false, 3);
    }
    LLVMValueRef a = masked_load_f32(cg, u->Ap, aoff, rows_mask, u->zero);
    LLVMValueRef boff = imul(cg, kk, ldb);
    for (int p = 0; p < UKERNEL_T_COLS; p++)
        acc[p] = fma3(cg, a, splat(cg, load_f32(cg, u->Bp, iadd(cg, boff, col[p])), u->VL), acc[p]);
}

static LLVMValueRef helper_ukernel_cols(Cg *cg, const MmShape *sh, int rows, bool b_in_place) {
    enum { T = UKERNEL_T_COLS };
    const int VL = sh->vl;
    LLVMTypeRef vt = LLVMVectorType(cg->t_f32, (unsigned)VL), rt = LLVMVectorType(cg->t_f32, T);
    LLVMBasicBlockRef saved = LLVMGetInsertBlock(cg->b);
    LLVMValueRef fn;
    char name[48];
    snprintf(name, sizeof name, "kiln.mm.ukernel%s.r%dt", b_in_place ? ".ib" : "", rows);
    bool fresh, define = shared_helper(cg, name, ukernel_type(cg, b_in_place, 0), &fn, &fresh);
    for (unsigned a = 1; fresh && a <= 4; a += (a == 2 ? 2 : 1))
        LLVMAddAttributeAtIndex(fn, a, LLVMCreateEnumAttribute(cg->ctx, cg->k_noalias, 0));
    if (!define) return fn;
    Kc kc = {.cg = cg, .fn = fn};
    LLVMValueRef kcv = LLVMGetParam(fn, 2), C = LLVMGetParam(fn, 3), ldc = LLVMGetParam(fn, 4);
    LLVMValueRef ldb = b_in_place ? LLVMGetParam(fn, 7) : ci64(cg, sh->nr), zero = LLVMConstNull(vt);
    LLVMValueRef rows_mask = lane_mask(cg, ci32(cg, rows), VL), col[T];
    /* in place, a column past the tile's real ones reads column 0 (nothing
     * past N is read); packed, the panel's padding is zeros */
    for (int p = 0; p < T; p++) {
        col[p] = ci64(cg, p);
        if (b_in_place && p > 0)
            col[p] = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntULT, col[p], LLVMGetParam(fn, 8), ""),
                                     col[p], ci64(cg, 0), "");
    }
    const unsigned pfa = ukernel_nargs(b_in_place, 0);
    UkStep u = {.fn = fn,
                .Ap = LLVMGetParam(fn, 0),
                .Bp = LLVMGetParam(fn, 1),
                .pf_base = LLVMGetParam(fn, pfa),
                .pf_step = LLVMGetParam(fn, pfa + 1),
                .zero = zero,
                .vt = vt,
                .VL = VL,
                .PMR = sh->mr};
    /* two copies of the k loop, with a prefetch per step and without (as
     * helper_ukernel_lanes), each two steps an iteration, then an odd last
     * one; one accumulator per column, in k order */
    LLVMBasicBlockRef loops[2] = {LLVMAppendBasicBlockInContext(cg->ctx, fn, "no_pf"),
                                  LLVMAppendBasicBlockInContext(cg->ctx, fn, "pf")};
    LLVMBasicBlockRef k_done = LLVMAppendBasicBlockInContext(cg->ctx, fn, "k_done"), ends[2];
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntNE, u.pf_step, ci64(cg, 0), ""), loops[1], loops[0]);
    LLVMValueRef found[2][T];
    for (int with_pf = 0; with_pf < 2; with_pf++) {
        LLVMPositionBuilderAtEnd(cg->b, loops[with_pf]);
        u.with_pf = with_pf;
        LLVMValueRef pairs = LLVMBuildLShr(cg->b, kcv, ci64(cg, 1), "pairs");
        LLVMBasicBlockRef entry = LLVMGetInsertBlock(cg->b);
        LLVMBasicBlockRef loop_pre = LLVMAppendBasicBlockInContext(cg->ctx, fn, "pairs_pre");
        LLVMBasicBlockRef after = LLVMAppendBasicBlockInContext(cg->ctx, fn, "pairs_done");
        LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntNE, pairs, ci64(cg, 0), ""), loop_pre, after);
        LLVMPositionBuilderAtEnd(cg->b, loop_pre);
        Loop lk;
        LLVMValueRef gk = loop_begin(&kc, &lk, ci64(cg, 0), pairs, "kk_pairs");
        LLVMValueRef accs[T], nexts[T];
        for (int a = 0; a < T; a++) {
            accs[a] = LLVMBuildPhi(cg->b, vt, "acc");
            LLVMAddIncoming(accs[a], &zero, &lk.pre, 1);
            nexts[a] = accs[a];
        }
        LLVMValueRef k0 = LLVMBuildShl(cg->b, gk, ci64(cg, 1), "");
        for (int j = 0; j < 2; j++)
            ukernel_cols_step(cg, &u, LLVMBuildOr(cg->b, k0, ci64(cg, j), ""), ldb, rows_mask, col, nexts);
        loop_end(&kc, &lk, accs, nexts, T, 0);
        LLVMBasicBlockRef loop_exit = LLVMGetInsertBlock(cg->b);
        LLVMBuildBr(cg->b, after);
        LLVMPositionBuilderAtEnd(cg->b, after);
        LLVMValueRef done[T];
        for (int a = 0; a < T; a++) {
            done[a] = phi2(cg, vt, "acc_pairs", zero, entry, nexts[a], loop_exit);
        }
        /* an odd kc: its last step */
        LLVMBasicBlockRef odd = LLVMAppendBasicBlockInContext(cg->ctx, fn, "odd_step");
        LLVMBasicBlockRef joined = LLVMAppendBasicBlockInContext(cg->ctx, fn, "steps_done");
        LLVMValueRef is_odd =
            LLVMBuildICmp(cg->b, LLVMIntNE, LLVMBuildAnd(cg->b, kcv, ci64(cg, 1), ""), ci64(cg, 0), "");
        LLVMBuildCondBr(cg->b, is_odd, odd, joined);
        LLVMPositionBuilderAtEnd(cg->b, odd);
        LLVMValueRef last[T];
        memcpy(last, done, sizeof last);
        ukernel_cols_step(cg, &u, LLVMBuildSub(cg->b, kcv, ci64(cg, 1), ""), ldb, rows_mask, col, last);
        LLVMBuildBr(cg->b, joined);
        LLVMPositionBuilderAtEnd(cg->b, joined);
        for (int p = 0; p < T; p++) {
            found[with_pf][p] = phi2(cg, vt, "acc_k", done[p], after, last[p], odd);
        }
        ends[with_pf] = LLVMGetInsertBlock(cg->b);
        LLVMBuildBr(cg->b, k_done);
    }
    LLVMPositionBuilderAtEnd(cg->b, k_done);
    LLVMValueRef tile[T];
    for (int p = 0; p < T; p++) {
        tile[p] = LLVMBuildPhi(cg->b, vt, "tile");
        LLVMValueRef vals[2] = {found[0][p], found[1][p]};
        LLVMAddIncoming(tile[p], vals, ends, 2);
    }
    /* row i of C: lane i of the columns' vectors */
    LLVMValueRef *row = xcalloc((size_t)rows, sizeof(LLVMValueRef));
    for (int i = 0; i < rows; i++) {
        row[i] = LLVMGetUndef(rt);
        for (int p = 0; p < T; p++)
            row[i] = LLVMBuildInsertElement(
                cg->b, row[i], LLVMBuildExtractElement(cg->b, tile[p], ci32(cg, i), ""), ci32(cg, p), "");
    }
    /* C (+)= tile */
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(cg->b);
    LLVMBasicBlockRef addc = LLVMAppendBasicBlockInContext(cg->ctx, fn, "addc");
    LLVMBasicBlockRef store = LLVMAppendBasicBlockInContext(cg->ctx, fn, "store");
    LLVMBuildCondBr(cg->b, LLVMGetParam(fn, 5), addc, store);
    LLVMPositionBuilderAtEnd(cg->b, addc);
    LLVMValueRef *sum = xcalloc((size_t)rows, sizeof(LLVMValueRef));
    for (int i = 0; i < rows; i++)
        sum[i] = f_add(cg, row[i], vec_load(cg, rt, C, imul(cg, ci64(cg, i), ldc), 4));
    LLVMBuildBr(cg->b, store);
    LLVMPositionBuilderAtEnd(cg->b, store);
    for (int i = 0; i < rows; i++) sum[i] = phi2(cg, rt, "", row[i], pre, sum[i], addc);
    for (int i = 0; i < rows; i++) vec_store(cg, sum[i], C, imul(cg, ci64(cg, i), ldc), 4);
    LLVMBuildRetVoid(cg->b);
    free(row);
    free(sum);
    if (saved) LLVMPositionBuilderAtEnd(cg->b, saved);
    return fn;
}

/* Whether a == x and b == y (i64 values against constants). */
static LLVMValueRef both_equal(Cg *cg, LLVMValueRef a, int64_t x, LLVMValueRef b, int64_t y) {
    return LLVMBuildAnd(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, a, ci64(cg, x), ""),
                        LLVMBuildICmp(cg->b, LLVMIntEQ, b, ci64(cg, y), ""), "");
}

/* The micro-kernel variant for a tile whose real part is mrv x nrv (i64
 * values, 1..MR and 1..NR): the smallest corner covering it (a whole tile
 * branches past the corners' chain of selects, computed per tile). */
static LLVMValueRef ukernel_corner(Cg *cg, const MmShape *sh, LLVMValueRef mrv, LLVMValueRef nrv,
                                   bool b_in_place, int taps);
static LLVMValueRef ukernel_for(Cg *cg, const MmShape *sh, LLVMValueRef mrv, LLVMValueRef nrv,
                                bool b_in_place, int taps) {
    LLVMValueRef whole_fn = helper_ukernel(cg, sh, sh->mr, sh->nr / sh->vl, b_in_place, taps);
    LLVMValueRef fn = LLVMGetBasicBlockParent(LLVMGetInsertBlock(cg->b));
    LLVMBasicBlockRef part = LLVMAppendBasicBlockInContext(cg->ctx, fn, "corner");
    LLVMBasicBlockRef join = LLVMAppendBasicBlockInContext(cg->ctx, fn, "ukernel_chosen");
    LLVMBasicBlockRef whole = LLVMGetInsertBlock(cg->b);
    LLVMBuildCondBr(cg->b, both_equal(cg, mrv, sh->mr, nrv, sh->nr), join, part);
    LLVMPositionBuilderAtEnd(cg->b, part);
    LLVMValueRef corner_fn = ukernel_corner(cg, sh, mrv, nrv, b_in_place, taps);
    part = LLVMGetInsertBlock(cg->b);
    LLVMBuildBr(cg->b, join);
    LLVMPositionBuilderAtEnd(cg->b, join);
    LLVMValueRef chosen = phi2(cg, cg->t_ptr, "ukernel", whole_fn, whole, corner_fn, part);
    return chosen;
}
static LLVMValueRef ukernel_corner(Cg *cg, const MmShape *sh, LLVMValueRef mrv, LLVMValueRef nrv,
                                   bool b_in_place, int taps) {
    const int step = ukernel_row_step(sh), NV = sh->nr / sh->vl;
    LLVMValueRef rows_needed = LLVMBuildUDiv(cg->b, iadd(cg, mrv, ci64(cg, step - 1)), ci64(cg, step), "");
    LLVMValueRef vecs_needed =
        LLVMBuildUDiv(cg->b, iadd(cg, nrv, ci64(cg, sh->vl - 1)), ci64(cg, sh->vl), "");
    LLVMValueRef fn = helper_ukernel(cg, sh, sh->mr, NV, b_in_place, taps);
    for (int rows = step; rows <= sh->mr; rows += step) {
        for (int nv = 1; nv <= NV; nv++) {
            if (rows == sh->mr && nv == NV) continue;
            LLVMValueRef is = both_equal(cg, rows_needed, rows / step, vecs_needed, nv);
            fn =
                LLVMBuildSelect(cg->b, is, helper_ukernel(cg, sh, rows, nv, b_in_place, taps), fn, "ukernel");
        }
    }
    /* at most half a vector of real columns (a 14x14 image's last 4 of 196):
     * half-width vectors, whose FMAs issue twice as fast on Zen 4 */
    LLVMValueRef few_cols = LLVMBuildICmp(cg->b, LLVMIntULE, nrv, ci64(cg, sh->vl / 2), "");
    for (int rows = step; ukernel_half(sh, taps) && rows <= sh->mr; rows += step) {
        LLVMValueRef is = LLVMBuildAnd(
            cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, rows_needed, ci64(cg, rows / step), ""), few_cols, "");
        fn = LLVMBuildSelect(cg->b, is, helper_ukernel_lanes(cg, sh, rows, 1, b_in_place, taps, true), fn,
                             "ukernel");
    }
    /* at most UKERNEL_T_COLS real columns by 8 or 12 rows: transposed */
    LLVMValueRef t_cols = LLVMBuildICmp(cg->b, LLVMIntULE, nrv, ci64(cg, UKERNEL_T_COLS), "");
    for (int rows = step; rows <= sh->mr; rows += step) {
        if (!ukernel_transposed(sh, taps, rows)) continue;
        LLVMValueRef is = LLVMBuildAnd(
            cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, rows_needed, ci64(cg, rows / step), ""), t_cols, "");
        fn = LLVMBuildSelect(cg->b, is, helper_ukernel_cols(cg, sh, rows, b_in_place), fn, "ukernel");
    }
    /* taps tiles of 7 or 14 pixels (conv_taps_tile): exactly their rows */
    for (int rows = 1; taps && rows <= taps_rows_max(sh); rows++) {
        for (int nv = 1; taps_exact_rows(sh, rows) && nv <= NV; nv++) {
            LLVMValueRef is = both_equal(cg, mrv, rows, vecs_needed, nv);
            fn = LLVMBuildSelect(cg->b, is, helper_ukernel(cg, sh, rows, nv, false, taps), fn, "ukernel");
        }
    }
    /* one real row (a swapped 7x7 image's 49th pixel): a row, not a row step */
    for (int nv = 1; ukernel_single_row(sh, b_in_place, taps) && nv <= NV; nv++) {
        LLVMValueRef is = both_equal(cg, mrv, 1, vecs_needed, nv);
        fn = LLVMBuildSelect(cg->b, is, helper_ukernel(cg, sh, 1, nv, b_in_place, taps), fn, "ukernel");
    }
    return fn;
}

/* ------------------------------------------------ the argument block
 *
 * A size-generic function (the loop nest, the common im2col forms: shared
 * helpers, compiled once per target with the micro-kernel and prebuilt at
 * build time) reads the geometry of its product from an ARGUMENT BLOCK:
 * 8-byte slots that the kernel fills (its NAME.mm, NAME.gather) in the
 * order below, with the kernel's own functions (packing, epilogue) as
 * function pointers.  See the loop nest below. */
enum { MM_PREFETCH_MAX = 4 }; /* epilogue operands a generic nest prefetches */
/* clang-format off */
enum {
    /* the product: sizes, operand offsets and strides (kernel.h's KMatmul) */
    MMB_M, MMB_N, MMB_K, MMB_A_OFF, MMB_B_OFF, MMB_A_SM, MMB_A_SK, MMB_B_SK, MMB_B_SN,
    /* at most two batch dims: bi = d0 * DIM1 + d1; A's and B's element
     * strides along d0 and d1, then their packed blocks' index along them */
    MMB_DIM1, MMB_A_BS0, MMB_A_BS1, MMB_B_BS0, MMB_B_BS1, MMB_A_PS0, MMB_A_PS1, MMB_B_PS0, MMB_B_PS1,
    /* rows of a packed A, columns of a packed B (M, N rounded up); Cacc's
     * row (a column block rounded up to NR); a row group's rows (row_group);
     * MMF_* */
    MMB_MP, MMB_NP, MMB_NCP, MMB_RG, MMB_FLAGS,
    /* pointers: the operands, their prepacked or gathered panels, the
     * packing of A and B (pack_fn_type; a conv's B: im2col_fn_type), the
     * epilogue (NAME.epi.t), the epilogue operands prefetched (NPF of them:
     * PF bases, PF_SIZE element bytes) */
    MMB_A, MMB_B, MMB_APK, MMB_BPK, MMB_PACK_A, MMB_PACK_B, MMB_EPI, MMB_NPF, MMB_PF,
    MMB_PF_SIZE = MMB_PF + MM_PREFETCH_MAX,
    /* a convolution's window, what im2col does not take from its form */
    MMB_C_OW = MMB_PF_SIZE + MM_PREFETCH_MAX, MMB_C_SH, MMB_C_PH, MMB_C_PW, MMB_C_H, MMB_C_W, MMB_C_KH,
    MMB_C_KW, MMB_C_DH, MMB_C_DW, MMB_C_XS1, MMB_C_XS2,
    /* a size-generic unit's (llvm_kernel_sizes): the flattened batch, the
     * kernel's outer extent, the operand kiln.mm.gather / kiln.mm.prepack
     * work on (0: A, 1: B), the kernel's values (NAME.epi reads its
     * constants there) */
    MMB_BATCH, MMB_OUTER, MMB_WHICH, MMB_VALUES,
    /* the kernel's buffers, in its list order (NAME.epi.t reads them) */
    MMB_BUFS
};
/* clang-format on */
enum {
    MMF_PACKED_A = 1,
    MMF_PACKED_B = 2,
    MMF_CONV = 4,
    MMF_MULTI_K = 8,
    MMF_PREFETCH_WRITE = 16,
    MMF_B_IN_PLACE = 32, /* B's rows read where they lie (b_in_place) */
    MMF_ROWS = 64,       /* a swapped tile's epilogue over whole output rows (plane_rows) */
    MMF_A_NEXT = 128,    /* the next prepacked A block prefetched per tile (a_next_block) */
    MMF_COUNT = 8
};

static LLVMValueRef slot_load(Cg *cg, LLVMValueRef blk, int slot, LLVMTypeRef t) {
    return LLVMBuildLoad2(cg->b, t, elem_ptr(cg, cg->t_i64, blk, ci64(cg, slot)), "");
}
static void slot_store(Cg *cg, LLVMValueRef blk, int slot, LLVMValueRef v) {
    LLVMBuildStore(cg->b, v, elem_ptr(cg, cg->t_i64, blk, ci64(cg, slot)));
}

/* ------------------------------------------------- convolution (im2col)
 *
 * A conv kernel that kernel_gemm describes runs the matmul loop nest above:
 * per image and group, out[oc, p] = W[oc, k] . X[k, p] with k = (c, kh, kw)
 * and p = (oh, ow).  A (the weights) is packed as any A; B is never
 * materialised: NAME.im2col gathers the input under the window straight into
 * B's panels (zeros for the padding).  A panel's NR pixels fall into
 * segments of one output row each; per k a segment is a strip of input row
 * ih = oh*sh + kh*dh - ph read from iw = ow*sw + kw*dw - pw with step sw,
 * copied with masked vector loads (stride 1) or gathers. */

/* <VL x i32> 0, 1, ..., VL-1. */
static LLVMValueRef iota_vec(Cg *cg, int VL) {
    LLVMValueRef *e = xcalloc((size_t)VL, sizeof(LLVMValueRef));
    for (int i = 0; i < VL; i++) e[i] = ci32(cg, i);
    LLVMValueRef v = LLVMConstVector(e, (unsigned)VL);
    free(e);
    return v;
}

static LLVMValueRef splat_int(Cg *cg, LLVMValueRef x, int n) {
    LLVMTypeRef vt = LLVMVectorType(LLVMTypeOf(x), (unsigned)n);
    LLVMValueRef v = LLVMBuildInsertElement(cg->b, LLVMGetUndef(vt), x, ci32(cg, 0), "");
    return LLVMBuildShuffleVector(cg->b, v, LLVMGetUndef(vt), LLVMConstNull(LLVMVectorType(cg->t_i32, (unsigned)n)), "");
}

/* A vector of memory values of dtype dt as <VL x float>. */
static LLVMValueRef widen_vec(Cg *cg, KilnDType dt, LLVMValueRef v, int VL) {
    LLVMTypeRef vf = LLVMVectorType(cg->t_f32, (unsigned)VL), vi = LLVMVectorType(cg->t_i32, (unsigned)VL);
    if (dt == KILN_F16) return LLVMBuildFPExt(cg->b, v, vf, "");
    if (dt == KILN_BF16)
        return LLVMBuildBitCast(cg->b, LLVMBuildShl(cg->b, LLVMBuildZExt(cg->b, v, vi, ""), splat_int(cg, ci32(cg, 16), VL), ""),
                                vf, "");
    return v;
}

/* The lanes [0, rem) of a vector step (rem: i32). */
static LLVMValueRef lane_mask(Cg *cg, LLVMValueRef rem, int VL) {
    return LLVMBuildICmp(cg->b, LLVMIntULT, iota_vec(cg, VL), splat_int(cg, rem, VL), "");
}

/* <VL x mem>: ptr[j*S] for j < VL (S <= 4) as one masked load of the S*VL
 * elements from ptr on under wmask (one bit per element), then a shuffle
 * of every S-th. */
static LLVMValueRef load_every_sth(Cg *cg, KilnDType dt, LLVMValueRef ptr, int64_t S, LLVMValueRef wmask) {
    const int VL = cg->vec_floats;
    LLVMTypeRef vw = LLVMVectorType(mem_type(cg, dt), (unsigned)(S * VL));
    LLVMTypeRef ov[2] = {vw, cg->t_ptr};
    LLVMValueRef args[4] = {ptr, ci32(cg, ELEM_ALIGN), wmask, LLVMConstNull(vw)};
    LLVMValueRef v = intrin(cg, "llvm.masked.load", ov, 2, args, 4);
    if (S > 1) {
        LLVMValueRef *lanes = xcalloc((size_t)VL, sizeof(LLVMValueRef));
        for (int j = 0; j < VL; j++) lanes[j] = ci32(cg, j * S);
        v = LLVMBuildShuffleVector(cg->b, v, LLVMGetUndef(vw), LLVMConstVector(lanes, (unsigned)VL), "");
        free(lanes);
    }
    return v;
}

/* <VL x float>: f32(src[si + j*S]) for the lanes j < rem (mask), 0 in the
 * others: a masked load when S == 1; for S <= 4 a masked load of S*VL
 * elements and a shuffle of every S-th (a few loads and permutes instead of
 * VL scalar loads); else a gather. */
static LLVMValueRef strided_load(Cg *cg, KilnDType dt, LLVMValueRef src, LLVMValueRef si, int64_t S,
                                 LLVMValueRef rem, LLVMValueRef mask) {
    const int VL = cg->vec_floats;
    LLVMTypeRef mt = mem_type(cg, dt), vm = LLVMVectorType(mt, (unsigned)VL);
    LLVMValueRef v;
    if (S <= 4) {
        int W = (int)S * VL; /* the elements spanned; lane j takes element j*S */
        LLVMValueRef wmask =
            S == 1 ? mask : lane_mask(cg, LLVMBuildSub(cg->b, imul(cg, rem, ci32(cg, S)), ci32(cg, S - 1), ""), W);
        v = load_every_sth(cg, dt, elem_ptr(cg, mt, src, si), S, wmask);
    } else {
        LLVMTypeRef v64 = LLVMVectorType(cg->t_i64, (unsigned)VL);
        LLVMValueRef lane = LLVMBuildMul(cg->b, LLVMBuildZExt(cg->b, iota_vec(cg, VL), v64, ""),
                                         splat_int(cg, ci64(cg, S), VL), "");
        LLVMValueRef idx = LLVMBuildAdd(cg->b, splat_int(cg, si, VL), lane, "");
        LLVMValueRef ptrs = LLVMBuildGEP2(cg->b, mt, src, &idx, 1, "");
        LLVMTypeRef ov[2] = {vm, LLVMTypeOf(ptrs)};
        LLVMValueRef args[4] = {ptrs, ci32(cg, ELEM_ALIGN), mask, LLVMConstNull(vm)};
        v = intrin(cg, "llvm.masked.gather", ov, 2, args, 4);
    }
    return widen_vec(cg, dt, v, VL);
}

static void masked_store_f32(Cg *cg, LLVMValueRef v, LLVMValueRef base, LLVMValueRef idx, LLVMValueRef mask) {
    LLVMTypeRef ov[2] = {LLVMTypeOf(v), cg->t_ptr};
    LLVMValueRef args[4] = {v, elem_ptr(cg, cg->t_f32, base, idx), ci32(cg, 4), mask};
    intrin(cg, "llvm.masked.store", ov, 2, args, 4);
}

/* dst[d + t] = f32(src[s + t*S]) (zero_only: 0) for t in [0, n), in steps of
 * VL lanes under a mask. */
static void strip_copy(Kc *kc, KilnDType dt, LLVMValueRef dst, LLVMValueRef d, LLVMValueRef src, LLVMValueRef s,
                       LLVMValueRef n, int64_t S, bool zero_only) {
    Cg *cg = kc->cg;
    const int VL = cg->vec_floats;
    TLoop lt;
    LLVMValueRef t = tloop_begin(kc, &lt, ci64(cg, 0), n, VL, "strip");
    LLVMValueRef rem = LLVMBuildTrunc(cg->b, LLVMBuildSub(cg->b, n, t, ""), cg->t_i32, "");
    LLVMValueRef mask = lane_mask(cg, rem, VL);
    LLVMValueRef v = zero_only ? LLVMConstNull(LLVMVectorType(cg->t_f32, (unsigned)VL))
                               : strided_load(cg, dt, src, iadd(cg, s, imul(cg, t, ci64(cg, S))), S, rem, mask);
    masked_store_f32(cg, v, dst, iadd(cg, d, t), mask);
    tloop_end(kc, &lt);
}

/* What an im2col function's code is made for, its form: the dtype, the
 * panel width, the way (im2col_rows or tap by tap) and the constants its
 * loads and shuffles are built on.  The rest of the window (ConvVals) is
 * the kernel's constants in its own NAME.im2col, or read from the argument
 * block (MMB_C_*) by a shared kiln.im2col.FORM (IM2COL_SHARED). */
typedef struct {
    KilnDType dt;
    int nr;
    bool rows;               /* im2col_rows (else tap by tap) */
    bool pointwise;          /* tap by tap, a 1x1 window */
    int64_t sw, xs3, kw, dw; /* kw, dw: rows only */
} Im2colForm;

typedef struct {
    LLVMValueRef ow, sh, ph, pw, h, w, kh, kw, dh, dw, xs1, xs2; /* i64 */
} ConvVals;

static Im2colForm im2col_form(const Cg *cg, const KConv *cv, KilnDType dt, int NR) {
    const int VL = cg->vec_floats;
    Im2colForm f = {dt, NR, false, cv->kh * cv->kw == 1, cv->sw, cv->xs[3], 0, 0};
    f.rows = cv->xs[3] == 1 && cv->sw <= 4 && cv->kw > 1 && (cv->kw - 1) * cv->dw / cv->sw <= VL &&
             (NR + VL - 1) / VL < 4;
    if (f.rows) f.kw = cv->kw, f.dw = cv->dw;
    return f;
}

/* The ConvVals slots in their order. */
static LLVMValueRef *conv_val(ConvVals *v, int slot) {
    LLVMValueRef *at[MMB_C_XS2 - MMB_C_OW + 1] = {&v->ow, &v->sh, &v->ph, &v->pw, &v->h,   &v->w,
                                                  &v->kh, &v->kw, &v->dh, &v->dw, &v->xs1, &v->xs2};
    return at[slot - MMB_C_OW];
}
static void conv_slot_values(const KConv *cv, int64_t v[MMB_C_XS2 - MMB_C_OW + 1]) {
    int64_t f[] = {cv->ow, cv->sh, cv->ph, cv->pw, cv->h,     cv->w,
                   cv->kh, cv->kw, cv->dh, cv->dw, cv->xs[1], cv->xs[2]};
    memcpy(v, f, sizeof f);
}

/* Stores convolution cv's window into block blk (its MMB_C_* slots). */
static void store_conv_slots(Cg *cg, LLVMValueRef blk, const KConv *cv) {
    int64_t v[MMB_C_XS2 - MMB_C_OW + 1];
    conv_slot_values(cv, v);
    for (int s = MMB_C_OW; s <= MMB_C_XS2; s++) slot_store(cg, blk, s, ci64(cg, v[s - MMB_C_OW]));
}

/* A block holding cv's window, on the stack of the function being built
 * (the builder at its entry). */
static LLVMValueRef conv_block(Cg *cg, const KConv *cv) {
    LLVMValueRef blk = LLVMBuildArrayAlloca(cg->b, cg->t_i64, ci64(cg, MMB_C_XS2 + 1), "window");
    store_conv_slots(cg, blk, cv);
    return blk;
}

/* Where im2col_rows prefetches (Cg.im2col_rows_ahead, AMD Zen 5): each
 * (c, kh)'s span of input row ih, IM2COL_ROWS_AHEAD rows below (ih + 4:
 * the rows of two output rows on at stride 2).  MobileNetV2's stem (3x3
 * 3->32 s2 at 224, K = 27, kiln.im2col.f32.r2.3x1.32) reads the model's
 * input, which the rest of a run has pushed out of the caches: 89 % of the
 * gather's samples waited on its masked row loads (`perf`), the segments of
 * a 32-pixel panel too short for the hardware prefetchers.  With it the
 * stem in the model ran 0.280 -> 0.141 ms on 1 thread, 0.121 -> 0.075 on 2
 * (batch 1, quiet; 2, 4 or 8 rows ahead the same: docs/performance.md,
 * "Session 18: MobileNetV2 at batch 1"). */
enum { IM2COL_ROWS_AHEAD = 4 };

/* One segment of an im2col panel for the k in [pc, pc + kc), for contiguous
 * input rows (xs[3] == 1), stride sw <= 4 and a window wider than 1: the KW
 * taps of one (c, kh) read the same input row, tap kw from element kw*dw on
 * in steps of sw, which is phase
 * (kw*dw) % sw of the row shifted by (kw*dw) / sw lanes.  So each phase's
 * span (the panel's pixels and up to VL more) is loaded once, in nvec + 1
 * masked vectors (sw > 1: wide loads and a shuffle), and each tap's vectors
 * are shuffles of it: one loop trip and one set of loads per (c, kh)
 * instead of per tap.  Taps of the first and last (c, kh) that fall outside
 * [pc, pc + kc) store nothing. */
static void im2col_rows(Kc *kc, const Im2colForm *f, const ConvVals *cv, LLVMValueRef X, LLVMValueRef xbase,
                        LLVMValueRef pc, LLVMValueRef kcv, LLVMValueRef dst, LLVMValueRef d, LLVMValueRef len,
                        LLVMValueRef ihb, LLVMValueRef iwb) {
    Cg *cg = kc->cg;
    const KilnDType dt = f->dt;
    const int NR = f->nr, VL = cg->vec_floats, nvec = (NR + VL - 1) / VL, nspan = nvec + 1, SPAN = nspan * VL;
    LLVMTypeRef mt = mem_type(cg, dt);
    LLVMValueRef zero = ci64(cg, 0), cKW = ci64(cg, f->kw), cKH = cv->kh;
    LLVMValueRef kend = iadd(cg, pc, kcv);
    LLVMValueRef g0 = LLVMBuildUDiv(cg->b, pc, cKW, "");
    LLVMValueRef g1 = LLVMBuildUDiv(cg->b, iadd(cg, kend, ci64(cg, f->kw - 1)), cKW, "");
    LLVMValueRef init[2] = {LLVMBuildUDiv(cg->b, g0, cKH, ""), LLVMBuildURem(cg->b, g0, cKH, "")};
    Loop lg;
    LLVMValueRef gi = loop_begin(kc, &lg, g0, g1, "tap_row");
    LLVMValueRef ckh[2], next[2];
    for (int i = 0; i < 2; i++) {
        ckh[i] = LLVMBuildPhi(cg->b, cg->t_i64, i == 0 ? "c" : "kh");
        LLVMAddIncoming(ckh[i], &init[i], &lg.pre, 1);
    }
    LLVMValueRef ih = iadd(cg, ihb, imul(cg, ckh[1], cv->dh));
    LLVMValueRef row_in = LLVMBuildICmp(cg->b, LLVMIntULT, ih, cv->h, "");
    /* the span's elements e in [e0, e1) lie inside the row: 0 <= iwb + e < W */
    const int S = (int)f->sw, WS = S * VL, END = SPAN * S + S;
    LLVMValueRef e0 = imin(cg, imax(cg, LLVMBuildNeg(cg->b, iwb, ""), zero), ci64(cg, END));
    LLVMValueRef e1 = imin(cg, imax(cg, LLVMBuildSub(cg->b, cv->w, iwb, ""), e0), ci64(cg, END));
    e1 = LLVMBuildSelect(cg->b, row_in, e1, e0, "");
    LLVMValueRef lo = splat_int(cg, LLVMBuildTrunc(cg->b, e0, cg->t_i32, ""), WS);
    LLVMValueRef hi = splat_int(cg, LLVMBuildTrunc(cg->b, e1, cg->t_i32, ""), WS);
    LLVMValueRef src = iadd(cg, iadd(cg, xbase, imul(cg, ckh[0], cv->xs1)),
                            iadd(cg, imul(cg, LLVMBuildSelect(cg->b, row_in, ih, zero, ""), cv->xs2), iwb));
    if (cg->im2col_rows_ahead) { /* the span's lines IM2COL_ROWS_AHEAD rows below */
        int64_t per_line = 64 / (int64_t)kiln_dtype_size(dt);
        LLVMValueRef ahead = iadd(cg, src, imul(cg, ci64(cg, IM2COL_ROWS_AHEAD), cv->xs2));
        for (int64_t e = 0; e < END; e += per_line) {
            LLVMValueRef at = iadd(cg, ahead, ci64(cg, e));
            LLVMValueRef addr = LLVMBuildGEP2(cg->b, mt, X, &at, 1, ""); /* a prefetch never faults */
            prefetch_at(cg, addr, false, 3);
        }
    }
    LLVMValueRef span[4][4] = {{NULL}};
    for (int64_t kw = 0; kw < f->kw; kw++) {
        const int p = (int)(kw * f->dw % S);
        for (int j = 0; j < nspan && !span[p][nspan - 1]; j++) {
            LLVMValueRef e =
                LLVMBuildAdd(cg->b, iota_vec(cg, WS), splat_int(cg, ci32(cg, p + (int64_t)j * WS), WS), "");
            LLVMValueRef m = LLVMBuildAnd(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGE, e, lo, ""),
                                          LLVMBuildICmp(cg->b, LLVMIntSLT, e, hi, ""), "");
            LLVMValueRef at = iadd(cg, src, ci64(cg, p + (int64_t)j * WS));
            LLVMValueRef ptr = LLVMBuildGEP2(cg->b, mt, X, &at, 1, ""); /* not inbounds: may lie before X */
            span[p][j] = widen_vec(cg, dt, load_every_sth(cg, dt, ptr, S, m), VL);
        }
    }
    LLVMValueRef len32 = splat_int(cg, LLVMBuildTrunc(cg->b, len, cg->t_i32, ""), VL);
    LLVMValueRef kbase = imul(cg, gi, cKW), none = LLVMConstNull(LLVMVectorType(cg->t_i1, (unsigned)VL));
    LLVMValueRef *idx = xcalloc((size_t)VL, sizeof(LLVMValueRef));
    for (int64_t kw = 0; kw < f->kw; kw++) {
        LLVMValueRef kidx = iadd(cg, kbase, ci64(cg, kw));
        LLVMValueRef valid = LLVMBuildAnd(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGE, kidx, pc, ""),
                                          LLVMBuildICmp(cg->b, LLVMIntSLT, kidx, kend, ""), "");
        LLVMValueRef row =
            iadd(cg, d,
                 imul(cg, LLVMBuildSelect(cg->b, valid, LLVMBuildSub(cg->b, kidx, pc, ""), zero, ""),
                      ci64(cg, NR)));
        const int shift = (int)(kw * f->dw / S), p = (int)(kw * f->dw % S);
        for (int i = 0; i < VL; i++) idx[i] = ci32(cg, shift + i);
        for (int v = 0; v < nvec; v++) {
            LLVMValueRef val = shift == 0 ? span[p][v]
                                          : LLVMBuildShuffleVector(cg->b, span[p][v], span[p][v + 1],
                                                                   LLVMConstVector(idx, (unsigned)VL), "");
            LLVMValueRef t =
                LLVMBuildAdd(cg->b, iota_vec(cg, VL), splat_int(cg, ci32(cg, (int64_t)v * VL), VL), "");
            LLVMValueRef mask =
                LLVMBuildSelect(cg->b, valid, LLVMBuildICmp(cg->b, LLVMIntSLT, t, len32, ""), none, "");
            masked_store_f32(cg, val, dst, iadd(cg, row, ci64(cg, (int64_t)v * VL)), mask);
        }
    }
    free(idx);
    LLVMValueRef kh1 = iadd(cg, ckh[1], ci64(cg, 1));
    LLVMValueRef wrap = LLVMBuildICmp(cg->b, LLVMIntEQ, kh1, cKH, "");
    next[1] = LLVMBuildSelect(cg->b, wrap, zero, kh1, "");
    next[0] = LLVMBuildSelect(cg->b, wrap, iadd(cg, ckh[0], ci64(cg, 1)), ckh[0], "");
    loop_end(kc, &lg, ckh, next, 2, 0);
}

/* A 1x1 window's gather goes channel by channel through one panel's pixels:
 * each channel is a different plane of the input (xs[1] elements apart), a
 * pattern the hardware prefetchers do not follow (the gather was 15 % of a
 * 1x1 stride-2 layer's time at batch 8, `perf`).  Prefetch the lines of the
 * same pixels IM2COL_AHEAD channels on. */
enum { IM2COL_AHEAD = 4 };

static void prefetch_channel_ahead(Cg *cg, const Im2colForm *f, const ConvVals *cv, LLVMValueRef X,
                                   LLVMValueRef src) {
    LLVMTypeRef mt = mem_type(cg, f->dt);
    int64_t per_line = 64 / (int64_t)kiln_dtype_size(f->dt), span = f->nr * f->sw * f->xs3;
    LLVMValueRef ahead = iadd(cg, src, imul(cg, ci64(cg, IM2COL_AHEAD), cv->xs1));
    for (int64_t e = 0; e < span + per_line - 1; e += per_line) {
        LLVMValueRef at = iadd(cg, ahead, ci64(cg, e));
        LLVMValueRef addr = LLVMBuildGEP2(cg->b, mt, X, &at, 1, ""); /* may lie past X: a prefetch never faults */
        prefetch_at(cg, addr, false, 3);
    }
}

/* void NAME.im2col(ptr X, i64 xbase, i64 pc, i64 kc, i64 p0, i64 valid, ptr dst,
 * ptr block): B's panels for rows k in [pc, pc + kc) and pixels [p0, p0 +
 * valid) of one image and group (xbase: its first input element), as
 * helper_pack lays them out: dst[j0*kc + kk*NR + w] = B(pc + kk, p0 + j0 +
 * w), zero past `valid`.  Its body in fn (builder at its entry), of form f,
 * the window cv: constants, or (NULL) read from the block. */
static void emit_im2col_body(Cg *cg, LLVMValueRef fn, const Im2colForm *f, const KConv *kconv) {
    const int NR = f->nr;
    const KilnDType dt = f->dt;
    Kc kc = {.cg = cg, .fn = fn};
    ConvVals vals, *cv = &vals;
    int64_t cvals[MMB_C_XS2 - MMB_C_OW + 1];
    if (kconv) conv_slot_values(kconv, cvals);
    for (int s = MMB_C_OW; s <= MMB_C_XS2; s++)
        *conv_val(cv, s) =
            kconv ? ci64(cg, cvals[s - MMB_C_OW]) : slot_load(cg, LLVMGetParam(fn, 7), s, cg->t_i64);
    LLVMValueRef X = LLVMGetParam(fn, 0), xbase = LLVMGetParam(fn, 1), pc = LLVMGetParam(fn, 2);
    LLVMValueRef kcv = LLVMGetParam(fn, 3), p0 = LLVMGetParam(fn, 4), valid = LLVMGetParam(fn, 5);
    LLVMValueRef dst = LLVMGetParam(fn, 6), cNR = ci64(cg, NR), cOW = cv->ow;
    TLoop lp, lk;
    LLVMValueRef j0 = tloop_begin(&kc, &lp, ci64(cg, 0), valid, NR, "panel");
    LLVMValueRef nw = imin(cg, cNR, LLVMBuildSub(cg->b, valid, j0, ""));
    LLVMValueRef pdst = imul(cg, j0, kcv);
    { /* a partial panel: zero its columns past `valid` */
        IfBlock ib;
        if_begin(&kc, &ib, LLVMBuildICmp(cg->b, LLVMIntSLT, nw, cNR, ""));
        LLVMValueRef kk = tloop_begin(&kc, &lk, ci64(cg, 0), kcv, 1, "ztail");
        strip_copy(&kc, dt, dst, iadd(cg, iadd(cg, pdst, imul(cg, kk, cNR)), nw), X, ci64(cg, 0),
                   LLVMBuildSub(cg->b, cNR, nw, ""), 1, true);
        tloop_end(&kc, &lk);
        if_end(&kc, &ib);
    }
    LLVMValueRef p = iadd(cg, p0, j0);
    LLVMValueRef oh0 = LLVMBuildUDiv(cg->b, p, cOW, ""), ow0 = LLVMBuildURem(cg->b, p, cOW, "");
    /* segments: [w, w + len) of the panel lie in output row oh from column ow */
    LLVMBasicBlockRef pre = LLVMGetInsertBlock(cg->b);
    LLVMBasicBlockRef head = LLVMAppendBasicBlockInContext(cg->ctx, fn, "segment");
    LLVMBasicBlockRef body = LLVMAppendBasicBlockInContext(cg->ctx, fn, "segment_body");
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(cg->ctx, fn, "segments_done");
    LLVMBuildBr(cg->b, head);
    LLVMPositionBuilderAtEnd(cg->b, head);
    LLVMValueRef w = LLVMBuildPhi(cg->b, cg->t_i64, "w"), oh = LLVMBuildPhi(cg->b, cg->t_i64, "oh");
    LLVMValueRef ow = LLVMBuildPhi(cg->b, cg->t_i64, "ow");
    LLVMValueRef zero = ci64(cg, 0);
    LLVMAddIncoming(w, &zero, &pre, 1);
    LLVMAddIncoming(oh, &oh0, &pre, 1);
    LLVMAddIncoming(ow, &ow0, &pre, 1);
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, w, nw, ""), body, done);
    LLVMPositionBuilderAtEnd(cg->b, body);
    LLVMValueRef len = imin(cg, LLVMBuildSub(cg->b, nw, w, ""), LLVMBuildSub(cg->b, cOW, ow, ""));
    LLVMValueRef ihb = LLVMBuildSub(cg->b, imul(cg, oh, cv->sh), cv->ph, "");
    LLVMValueRef iwb = LLVMBuildSub(cg->b, imul(cg, ow, ci64(cg, f->sw)), cv->pw, "");
    if (f->rows) {
        im2col_rows(&kc, f, cv, X, xbase, pc, kcv, dst, iadd(cg, pdst, w), len, ihb, iwb);
    } else {
        LLVMValueRef kk = tloop_begin(&kc, &lk, ci64(cg, 0), kcv, 1, "k");
        {
            /* k = (c, kh, kw); a 1x1 window's k is c */
            LLVMValueRef kidx = iadd(cg, pc, kk), c = kidx, ih = ihb, iw0 = iwb;
            if (!f->pointwise) {
                LLVMValueRef khw = imul(cg, cv->kh, cv->kw);
                c = LLVMBuildUDiv(cg->b, kidx, khw, "");
                LLVMValueRef r = LLVMBuildURem(cg->b, kidx, khw, "");
                LLVMValueRef kh = LLVMBuildUDiv(cg->b, r, cv->kw, ""),
                             kw = LLVMBuildURem(cg->b, r, cv->kw, "");
                ih = iadd(cg, ihb, imul(cg, kh, cv->dh));
                iw0 = iadd(cg, iwb, imul(cg, kw, cv->dw));
            }
            LLVMValueRef drow = iadd(cg, iadd(cg, pdst, imul(cg, kk, cNR)), w);
            /* in-range columns t in [t0, t1): 0 <= iw0 + t*sw < W */
            LLVMValueRef csw = ci64(cg, f->sw), cW = cv->w;
            LLVMValueRef t0 =
                LLVMBuildSDiv(cg->b, iadd(cg, LLVMBuildNeg(cg->b, iw0, ""), ci64(cg, f->sw - 1)), csw, "");
            t0 = imin(cg, imax(cg, t0, zero), len);
            LLVMValueRef t1 = LLVMBuildSDiv(
                cg->b, iadd(cg, LLVMBuildSub(cg->b, cW, iw0, ""), ci64(cg, f->sw - 1)), csw, "");
            t1 = imin(cg, imax(cg, t1, t0), len);
            LLVMValueRef row_in = LLVMBuildICmp(cg->b, LLVMIntULT, ih, cv->h, "");
            t0 = LLVMBuildSelect(cg->b, row_in, t0, len, "");
            t1 = LLVMBuildSelect(cg->b, row_in, t1, len, "");
            IfBlock ib;
            LLVMValueRef partial = LLVMBuildOr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGT, t0, zero, ""),
                                               LLVMBuildICmp(cg->b, LLVMIntSLT, t1, len, ""), "");
            if_begin(&kc, &ib, partial);
            strip_copy(&kc, dt, dst, drow, X, zero, len, 1, true);
            if_end(&kc, &ib);
            LLVMValueRef src = iadd(cg, iadd(cg, xbase, imul(cg, c, cv->xs1)),
                                    iadd(cg, imul(cg, ih, cv->xs2),
                                         imul(cg, iadd(cg, iw0, imul(cg, t0, csw)), ci64(cg, f->xs3))));
            strip_copy(&kc, dt, dst, iadd(cg, drow, t0), X, src, LLVMBuildSub(cg->b, t1, t0, ""),
                       f->sw * f->xs3, false);
            if (f->pointwise) prefetch_channel_ahead(cg, f, cv, X, src);
        }
        tloop_end(&kc, &lk);
    }
    LLVMValueRef w2 = iadd(cg, w, len), oh2 = iadd(cg, oh, ci64(cg, 1));
    LLVMBasicBlockRef latch = LLVMGetInsertBlock(cg->b);
    LLVMBuildBr(cg->b, head);
    LLVMAddIncoming(w, &w2, &latch, 1);
    LLVMAddIncoming(oh, &oh2, &latch, 1);
    LLVMAddIncoming(ow, &zero, &latch, 1);
    LLVMPositionBuilderAtEnd(cg->b, done);
    tloop_end(&kc, &lp);
    LLVMBuildRetVoid(cg->b);
}

/* The im2col forms shared by every kernel of the form (kiln.im2col.FORM,
 * with the shared helpers when they are prebuilt: helpers_hold_forms; NR
 * the micro-kernel's NR or, swapped, its MR):
 * ResNet's 3x3 (stride 1 and 2) and 7x7 stride-2 windows and 1x1 stride-2
 * shortcuts, f32.  Other forms are a kernel's own NAME.im2col. */
static const Im2colForm IM2COL_SHARED[] = {
    {KILN_F32, 0, true, false, 1, 1, 3, 1},
    {KILN_F32, 0, true, false, 2, 1, 3, 1},
    {KILN_F32, 0, true, false, 2, 1, 7, 1},
    {KILN_F32, 0, false, true, 2, 1, 0, 0},
};

/* Whether the helpers kernels call hold the shared im2col forms: those of
 * the module itself, or compiled at build time (llvm.h). */
static bool helpers_hold_forms(const Cg *cg) {
    return !cg->helper_suffix || strncmp(cg->helper_suffix, ".p", 2) == 0;
}

static bool im2col_shared(const Cg *cg, const Im2colForm *f) {
    if (!helpers_hold_forms(cg)) return false;
    MmShape ush = ukernel_shape(cg);
    for (size_t i = 0; i < sizeof IM2COL_SHARED / sizeof IM2COL_SHARED[0]; i++) {
        const Im2colForm *s = &IM2COL_SHARED[i];
        if ((f->nr == ush.nr || f->nr == ush.mr) && s->dt == f->dt && s->rows == f->rows &&
            s->pointwise == f->pointwise && s->sw == f->sw && s->xs3 == f->xs3 && s->kw == f->kw &&
            s->dw == f->dw)
            return true;
    }
    return false;
}

/* A shared im2col of form f (im2col_shared). */
static LLVMValueRef helper_im2col_form(Cg *cg, const Im2colForm *f) {
    char name[64];
    if (f->rows)
        snprintf(name, sizeof name, "kiln.im2col.%s.r%lld.%lldx%lld.%d", kiln_dtype_name(f->dt),
                 (long long)f->sw, (long long)f->kw, (long long)f->dw, f->nr);
    else
        snprintf(name, sizeof name, "kiln.im2col.%s.p%lld.%d", kiln_dtype_name(f->dt), (long long)f->sw,
                 f->nr);
    LLVMBasicBlockRef saved = LLVMGetInsertBlock(cg->b);
    LLVMValueRef fn;
    bool fresh, define = shared_helper(cg, name, im2col_fn_type(cg), &fn, &fresh);
    if (fresh) pack_fn_noalias(cg, fn);
    if (!define) return fn;
    emit_im2col_body(cg, fn, f, NULL);
    if (saved) LLVMPositionBuilderAtEnd(cg->b, saved);
    return fn;
}

/* Kernel k's im2col for operand dtype dt and panel width NR: a shared form,
 * or NAME.im2col of its own (its window constant). */
static LLVMValueRef kernel_im2col(Cg *cg, const Kernel *k, KilnDType dt, int NR, bool sized) {
    Im2colForm f = im2col_form(cg, &k->conv, dt, NR);
    if (im2col_shared(cg, &f)) return helper_im2col_form(cg, &f);
    char *name = name2(k->name, ".im2col");
    LLVMBasicBlockRef saved = LLVMGetInsertBlock(cg->b);
    LLVMValueRef fn = begin_pack_fn(cg, name);
    free(name);
    emit_im2col_body(cg, fn, &f, sized ? NULL : &k->conv); /* sized: the window from the block */
    if (saved) LLVMPositionBuilderAtEnd(cg->b, saved);
    return fn;
}

/* Rows of one group: Cacc holds RG x NCp floats when K needs several blocks
 * (a multiple of every MR, so that prepacked panels stay aligned; a product
 * whose nest packs B per chunk has no prepacked A and takes all its M rows,
 * while their partial sums fit CACC_PACKED_B_MAX_BYTES).  B's
 * block is packed (a convolution's input gathered) again for every group,
 * so a group takes every row when K is one block (no partial sums) or when
 * the partial sums of every row fit CACC_MAX_BYTES (the L2 and a half;
 * each tile reads and writes its partial sums once per K block): ResNet-50's
 * layers with 512 to 2048 output channels gathered their input 2-5 times
 * (at batch 8 the 1x1 stride-2 shortcuts 1.05-1.10x, the 3x3 512-channel
 * layers at 7x7 1.04-1.05x). */
enum { MM_ROW_GROUP = 480, ROW_GROUP_ALIGN = 96, CACC_MAX_BYTES = 2 << 20 };

static int64_t row_group(const Cg *cg, const MmShape *sh, const KGemm *g) {
    const KMatmul *mm = &g->mm;
    if (mm->k <= sh->kc) return mm->m;
    int64_t NC = mm->n < sh->nc ? mm->n : sh->nc, NCp = (NC + sh->nr - 1) / sh->nr * sh->nr;
    if (b_packed_per_chunk(cg->p, g) && (double)mm->m * (double)NCp * 4.0 <= (double)CACC_PACKED_B_MAX_BYTES)
        return mm->m;
    int64_t rows = CACC_MAX_BYTES / (NCp * 4) / ROW_GROUP_ALIGN * ROW_GROUP_ALIGN;
    if (rows < MM_ROW_GROUP) rows = MM_ROW_GROUP;
    return rows < mm->m ? rows : mm->m;
}

/* ------------------------------------------- direct convolution, pooling
 *
 * Depthwise and small-group convolutions and the pools run row by row.  An
 * output row (n, oc, oh) is at most a few vectors: they stay in registers
 * while every window tap is added in,
 *     acc[ow] = combine(acc[ow], X(n, c, oh*sh + kh*dh - ph, ow*sw + kw*dw - pw) [* W(oc, c, kh, kw)])
 * one masked vector load and FMA (add, max) per tap and vector: the taps
 * along a row are unrolled, so which lanes read inside the input row is
 * known when the code is generated (a constant mask), and the input rows
 * outside the image bound the kh loop instead of being tested.  Rows go to
 * a block of about DIRECT_BLOCK elements of one output plane, and the
 * epilogue runs over the block as one flat, vectorised loop (o = plane*P +
 * the element's place in the plane). */

enum {
    DIRECT_BLOCK = 256,
    DIRECT_VECS = 8, /* accumulators per chunk of a row */
    DIRECT_GROUP = 4 /* vectors in registers at a time, when they are a loop */
};

/* <W x i1>: lanes [lo, hi). */
static LLVMValueRef const_lanes(Cg *cg, int64_t lo, int64_t hi, int W) {
    LLVMValueRef *e = xcalloc((size_t)W, sizeof(LLVMValueRef));
    for (int i = 0; i < W; i++) e[i] = LLVMConstInt(cg->t_i1, i >= lo && i < hi, 0);
    LLVMValueRef v = LLVMConstVector(e, (unsigned)W);
    free(e);
    return v;
}

/* <VL x float>: f32(src[si + j*S]) for lanes j in [lo, hi) (constants), 0
 * elsewhere; the address of lane 0 may lie outside the buffer (a plain,
 * not inbounds, address: masked-off lanes are never read). */
static LLVMValueRef lanes_load(Cg *cg, KilnDType dt, LLVMValueRef src, LLVMValueRef si, int64_t S, int64_t lo,
                               int64_t hi) {
    const int VL = cg->vec_floats;
    LLVMTypeRef mt = mem_type(cg, dt);
    LLVMValueRef base = LLVMBuildGEP2(cg->b, mt, src, &si, 1, "");
    LLVMValueRef v;
    if (S <= 4) /* one (wide) masked load, then every S-th lane */
        v = load_every_sth(cg, dt, base, S, const_lanes(cg, lo * S, (hi - 1) * S + 1, (int)S * VL));
    else {
        LLVMTypeRef v64 = LLVMVectorType(cg->t_i64, (unsigned)VL), vm = LLVMVectorType(mt, (unsigned)VL);
        LLVMValueRef idx = LLVMBuildMul(cg->b, LLVMBuildZExt(cg->b, iota_vec(cg, VL), v64, ""),
                                        splat_int(cg, ci64(cg, S), VL), "");
        LLVMValueRef ptrs = LLVMBuildGEP2(cg->b, mt, base, &idx, 1, "");
        LLVMTypeRef ov[2] = {vm, LLVMTypeOf(ptrs)};
        LLVMValueRef args[4] = {ptrs, ci32(cg, ELEM_ALIGN), const_lanes(cg, lo, hi, VL), LLVMConstNull(vm)};
        v = intrin(cg, "llvm.masked.gather", ov, 2, args, 4);
    }
    return widen_vec(cg, dt, v, VL);
}

/* Whether the direct form runs kernel k: kernel_direct (kernel.h), with the
 * output row's width in a bound the stack block holds. */
static bool direct_ok(const Cg *cg, const Kernel *k) {
    return kernel_direct(cg->p, k) && k->conv.ow <= 65536;
}

/* The epilogue of a block of a product's outputs whose f32 accumulators
 * are acc[e], e in [lo, hi): element e is column col0 + e of row `row` (of
 * ncols columns), output element obase + col0 + e.  Shared by the direct
 * convolution and the thin-product (GEMV) forms. */
static void emit_block_epilogue(Kc *kc, LLVMValueRef acc, LLVMValueRef lo, LLVMValueRef hi, LLVMValueRef col0,
                                LLVMValueRef obase, int64_t ncols, LLVMValueRef row, const char *name) {
    Cg *cg = kc->cg;
    TLoop l;
    LLVMValueRef e = tloop_begin(kc, &l, as_idx(kc, lo), as_idx(kc, hi), 1, name);
    LLVMValueRef col = iadd(cg, as_idx(kc, col0), e);
    kc->o = iadd(cg, as_idx(kc, obase), col);
    kc->gemm_n = ncols, kc->gemm_row = as_idx(kc, row), kc->gemm_col = col;
    kc->acc[0] = load_f32(cg, acc, LLVMBuildSExt(cg->b, e, cg->t_i64, ""));
    emit_scope(kc, -1);
    emit_stage(kc, 1);
    bool heavy = heavy_scope(kc->k, -1) || heavy_scope(kc->k, 1);
    loop_metadata(cg, tloop_end(kc, &l), heavy ? cg->vec_floats : 0, 1);
}

/* A sized epilogue's analysis (below: epi_analyse). */
typedef struct {
    bool *live;
    int *slot;  /* per constant: its value's slot, or -1 */
    int *magic; /* per division: its divisor's magic's slot (magic_divide), or -1 */
    int nslots;
} EpiAnalysis;
static void epi_analyse(const Kernel *k, int64_t n, EpiAnalysis *ea);
static void epi_analysis_free(EpiAnalysis *ea);
static void load_epilogue_values(Kc *kc, const EpiAnalysis *ea, LLVMValueRef values);

/* The direct form's geometry as i64 values: the loop over a plane's
 * vectors (flat_plane) reads every size, stride and offset through these;
 * what its structure needs is constant: the window (kh x kw), the dtypes
 * and the form.
 *
 * A SIZED direct kernel (a unit of runtime/cpu_code.c: llvm_kernel_sizes)
 * reads the sizes that only say WHICH plane, channel and weights a plane's
 * work uses from its values (DV_*, at bufs[llvm_values_slot(p)]): the
 * channels per group and the output channels per group (constant 1 where
 * they are 1: a fact of its form), the output channels (and their magic
 * number: plane_split), the image and channel strides of the input, the
 * weights' output and input channel strides and both offsets; its
 * epilogue's constants follow at MMB_BUFS, as a sized product's.  What the
 * code of a plane is made of (the plane's sizes, stride, padding, dilation,
 * window, the row and element strides of the input and the weights, from
 * which the unrolled forms take their masks and shifts) stays constant, and is its
 * FORM (direct_form), so that planes of one geometry share a unit whatever
 * their channels and batch. */
typedef struct {
    LLVMValueRef cpg, oc, ocpg, h, w, oh, ow, ph, pw, sh, sw, dh, dw, xs[4], ws[4], x_off, w_off;
    LLVMValueRef oc_magic; /* a sized kernel's: plane / oc by a magic number (llvm_div_magic), or NULL */
} DirectGeo;

enum { DV_CPG, DV_OC, DV_OCPG, DV_XS0, DV_XS1, DV_WS0, DV_WS1, DV_X_OFF, DV_W_OFF, DV_OC_MAGIC, DV_COUNT };
_Static_assert((int)DV_COUNT <= (int)MMB_BUFS,
               "a sized direct kernel's epilogue constants follow at MMB_BUFS");

/* A sized direct kernel's DV_* values. */
static void direct_values(const KConv *cv, int64_t *v) {
    v[DV_CPG] = cv->c / cv->groups, v[DV_OC] = cv->oc, v[DV_OCPG] = cv->oc / cv->groups;
    v[DV_XS0] = cv->xs[0], v[DV_XS1] = cv->xs[1], v[DV_X_OFF] = cv->x_off, v[DV_W_OFF] = cv->w_off;
    v[DV_WS0] = cv->ws[0], v[DV_WS1] = cv->ws[1];
    v[DV_OC_MAGIC] = cv->oc >= 2 ? (int64_t)llvm_div_magic((uint64_t)cv->oc) : 0;
}

/* values: a sized kernel's (NULL: every size a constant). */
static DirectGeo direct_geo(Cg *cg, const KConv *cv, LLVMValueRef values) {
    DirectGeo g;
    g.h = ci64(cg, cv->h), g.w = ci64(cg, cv->w), g.oh = ci64(cg, cv->oh), g.ow = ci64(cg, cv->ow);
    g.ph = ci64(cg, cv->ph), g.pw = ci64(cg, cv->pw), g.sh = ci64(cg, cv->sh), g.sw = ci64(cg, cv->sw);
    g.dh = ci64(cg, cv->dh), g.dw = ci64(cg, cv->dw);
    g.xs[2] = ci64(cg, cv->xs[2]), g.xs[3] = ci64(cg, cv->xs[3]);
    g.ws[2] = ci64(cg, cv->ws[2]), g.ws[3] = ci64(cg, cv->ws[3]); /* a window's row and tap */
    int64_t v[DV_COUNT];
    direct_values(cv, v);
    LLVMValueRef *at[DV_COUNT] = {&g.cpg,   &g.oc,    &g.ocpg,  &g.xs[0], &g.xs[1],
                                  &g.ws[0], &g.ws[1], &g.x_off, &g.w_off, &g.oc_magic};
    for (int i = 0; i < DV_COUNT; i++) {
        bool one = (i == DV_CPG || i == DV_OCPG || i == DV_OC) && v[i] == 1; /* a fact of the form */
        *at[i] = values && !one ? slot_load(cg, values, i, cg->t_i64) : ci64(cg, v[i]);
    }
    if (!values || cv->oc == 1 || cv->n * cv->oc >= ((int64_t)1 << 32)) g.oc_magic = NULL; /* (its form) */
    return g;
}

/* Plane q's output channel and image: q % oc and q / oc, by the magic
 * number of a sized kernel (q < n * oc < 2^32: its form). */
static void plane_split(Cg *cg, const DirectGeo *g, LLVMValueRef q, LLVMValueRef *oc, LLVMValueRef *n) {
    if (!g->oc_magic) {
        *oc = LLVMBuildURem(cg->b, q, g->oc, ""), *n = LLVMBuildUDiv(cg->b, q, g->oc, "");
        return;
    }
    *n = magic_quotient(cg, q, g->oc_magic);
    *oc = LLVMBuildSub(cg->b, q, imul(cg, *n, g->oc), "");
}

/* Where channel cin of image n starts in the input. */
static LLVMValueRef direct_input(Cg *cg, const DirectGeo *g, LLVMValueRef n, LLVMValueRef cin) {
    return iadd(cg, iadd(cg, g->x_off, imul(cg, n, g->xs[0])), imul(cg, cin, g->xs[1]));
}

/* A sized direct kernel's epilogue analysis (its constants from the values)
 * and its DirectGeo, at the entry of fn (its values are its last parameter);
 * without `sized` every size a constant and ea untouched. */
static DirectGeo begin_direct_sizes(Kc *kc, LLVMValueRef fn, bool sized, int nb, EpiAnalysis *ea);
static void end_direct_sizes(Kc *kc, bool sized, EpiAnalysis *ea);

/* W(oc, c, kh, kw) as <VL x float>. */
static LLVMValueRef direct_weight(Cg *cg, const DirectGeo *g, LLVMValueRef Wt, KilnDType wdt, LLVMValueRef oc,
                                  LLVMValueRef c, LLVMValueRef kh, int64_t kw) {
    LLVMValueRef wi = iadd(
        cg, iadd(cg, g->w_off, imul(cg, oc, g->ws[0])),
        iadd(cg, imul(cg, c, g->ws[1]), iadd(cg, imul(cg, kh, g->ws[2]), imul(cg, ci64(cg, kw), g->ws[3]))));
    return splat(cg, conv(cg, load_elem(cg, wdt, Wt, wi), wdt, KILN_F32), cg->vec_floats);
}

/* One tap into the accumulators a: a + x*w (conv), max(a, x) or a + x, in
 * the lanes of mask (NULL: all). */
static LLVMValueRef direct_tap(Cg *cg, Op op, LLVMValueRef xv, LLVMValueRef wv, LLVMValueRef a,
                               LLVMValueRef mask) {
    LLVMValueRef v = op == OP_CONV2D      ? fma3(cg, xv, wv, a)
                     : op == OP_MAXPOOL2D ? intrin2(cg, "llvm.maximum", a, xv)
                                          : f_add(cg, a, xv);
    return mask ? LLVMBuildSelect(cg->b, mask, v, a, "") : v;
}

/* A direct form's block of output rows of plane `plane` (P outputs from
 * pbase, OW per row): the rows [oh0, oh0 + nrows) of the block loop (lb,
 * RB rows a step) that hold the kernel's range [lo, hi) of the plane. */
typedef struct {
    LLVMValueRef pbase, lo, hi, oh0, nrows;
} DirectBlock;

static void direct_block_begin(Kc *kc, TLoop *lb, LLVMValueRef plane, LLVMValueRef ob, LLVMValueRef oe,
                               int64_t P, int64_t OW, int64_t RB, DirectBlock *b) {
    Cg *cg = kc->cg;
    LLVMValueRef cP = ci64(cg, P), cOW = ci64(cg, OW);
    b->pbase = imul(cg, plane, cP);
    b->lo = imax(cg, ci64(cg, 0), LLVMBuildSub(cg->b, ob, b->pbase, ""));
    b->hi = imin(cg, cP, LLVMBuildSub(cg->b, oe, b->pbase, ""));
    LLVMValueRef oh_end = LLVMBuildUDiv(cg->b, iadd(cg, b->hi, ci64(cg, OW - 1)), cOW, "");
    b->oh0 = tloop_begin(kc, lb, LLVMBuildUDiv(cg->b, b->lo, cOW, ""), oh_end, RB, "block");
    b->nrows = imin(cg, ci64(cg, RB), LLVMBuildSub(cg->b, oh_end, b->oh0, ""));
}

/* The end of block b: the epilogue over its elements in the range (acc
 * holds them from row oh0), then the block and plane loops closed and the
 * function ended. */
static void direct_blocks_end(Kc *kc, LLVMValueRef acc, const DirectBlock *b, int64_t OW, int64_t P,
                              LLVMValueRef plane, TLoop *lb, TLoop *lp) {
    Cg *cg = kc->cg;
    LLVMValueRef cOW = ci64(cg, OW), bbase = imul(cg, b->oh0, cOW);
    LLVMValueRef elo = imax(cg, ci64(cg, 0), LLVMBuildSub(cg->b, b->lo, bbase, ""));
    LLVMValueRef ehi = imin(cg, imul(cg, b->nrows, cOW), LLVMBuildSub(cg->b, b->hi, bbase, ""));
    emit_block_epilogue(kc, acc, elo, ehi, bbase, b->pbase, P, plane, "e");
    tloop_end(kc, lb);
    tloop_end(kc, lp);
    LLVMBuildRetVoid(cg->b);
    kc_free(kc);
}

/* Output rows of at most DIRECT_GROUP_MAX_VECS vectors (MobileNetV2's
 * 144x56x56 -> 28x28 depthwise layer: 2 vectors a row) run
 * DIRECT_ROWS_AT_ONCE rows at a time: by rows, each of a row's vectors
 * summed its KH x KW taps in one dependent chain of FMAs (2 chains of 9 for
 * a 3x3 window: the FMA's latency, not the loads, set the pace); four rows
 * are four times the chains.  The window's rows are unrolled: a row outside
 * the image reads a row inside it (clamped) and keeps the sum (a select).
 * An input row that several rows read (at stride 2 one row's kh = 2 and the
 * next one's kh = 0) is loaded and shuffled once: 9 input rows for four
 * output rows, not 12.  The sums are added in the row form's order
 * (bit-identical results).  Blocks are whole groups of rows; a plane's last
 * group may compute rows past the plane (in bounds of the stack block),
 * never stored out.  That layer, Intel Xeon model 207, batch 1 and 8, 1 and
 * 2 threads (session 14): two rows at a time 1.08-1.12x, the shared input
 * row 1.06-1.10x more, three rows 1.02-1.06x more, four 1.015-1.04x more
 * than three; rows of 4 vectors (its 56-pixel rows at 112x112 and 56x56)
 * two at a time ran 0.91-0.94x: they have 4 chains already, and 8 more
 * vectors live.  On AMD Zen 5 (znver5: direct_rows_at_once) two rows at a
 * time: that layer ran 1.22-1.27x faster than four at batch 8 and
 * 1.04-1.06x at batch 1 (1 and 2 threads; three rows 1.21x slower than
 * two at batch 8, one row 1.12x faster than two at batch 8 but 1.41x
 * slower at batch 1: docs/performance.md, "Session 16: MobileNetV2 on Zen
 * 5"). */
enum {
    DIRECT_GROUP_MAX_VECS = 2,
    DIRECT_GROUP_MAX_WINDOW = 7,
    DIRECT_ROWS_AT_ONCE = 4,
    DIRECT_ROWS_AT_ONCE_ZEN5 = 2
};

_Static_assert(DIRECT_ROWS_AT_ONCE_ZEN5 <= DIRECT_ROWS_AT_ONCE,
               "direct_row_groups' arrays hold DIRECT_ROWS_AT_ONCE rows");

/* The rows direct_row_groups computes at once for cg's target. */
static int direct_rows_at_once(const Cg *cg) {
    return cg->direct_rows > 0 ? cg->direct_rows : DIRECT_ROWS_AT_ONCE;
}

static bool direct_grouped_rows(const KConv *cv, int VL, int64_t RB, int rows) {
    return cv->ow <= (int64_t)DIRECT_GROUP_MAX_VECS * VL && RB >= rows && cv->kh <= DIRECT_GROUP_MAX_WINDOW &&
           cv->kw <= DIRECT_GROUP_MAX_WINDOW;
}

/* The rows [oh0, oh0 + nrows) of plane (oc, n) direct_rows_at_once at a
 * time into acc (row r at r * OW), each row's vectors in registers over the
 * channels of its group and the window (the row form's loop below, for
 * several rows). */
static void direct_row_groups(Kc *kc, const DirectGeo *g, LLVMValueRef X, LLVMValueRef Wt, KilnDType xdt,
                              KilnDType wdt, LLVMValueRef oc, LLVMValueRef n, LLVMValueRef cin0,
                              LLVMValueRef oh0, LLVMValueRef nrows, LLVMValueRef acc, LLVMValueRef vinit) {
    Cg *cg = kc->cg;
    const KConv *cv = &kc->k->conv;
    const int VL = cg->vec_floats;
    const int64_t OW = cv->ow;
    const int nv = (int)((OW + VL - 1) / VL), R = direct_rows_at_once(cg);
    LLVMTypeRef vf = LLVMVectorType(cg->t_f32, (unsigned)VL);
    TLoop lr;
    LLVMValueRef r = tloop_begin(kc, &lr, ci64(cg, 0), nrows, R, "rows");
    Loop lcl;
    LLVMValueRef c = loop_begin(kc, &lcl, ci64(cg, 0), g->cpg, "c");
    LLVMValueRef phis[DIRECT_ROWS_AT_ONCE * DIRECT_GROUP_MAX_VECS],
        vacc[DIRECT_ROWS_AT_ONCE * DIRECT_GROUP_MAX_VECS];
    for (int j = 0; j < R * nv; j++) {
        phis[j] = LLVMBuildPhi(cg->b, vf, "acc_c");
        LLVMAddIncoming(phis[j], &vinit, &lcl.pre, 1);
        vacc[j] = phis[j];
    }
    LLVMValueRef xplane = direct_input(cg, g, n, iadd(cg, cin0, c));
    LLVMValueRef wv[DIRECT_GROUP_MAX_WINDOW][DIRECT_GROUP_MAX_WINDOW] = {{NULL}};
    /* input row d of the group, (oh0 + r)*sh + d - ph: read once, its taps
     * added to the rows (q, kh) with q*sh + kh*dh == d (kh ascending per
     * row: the row form's order) */
    for (int64_t d = 0; d <= (R - 1) * cv->sh + (cv->kh - 1) * cv->dh; d++) {
        int users = 0;
        for (int q = 0; q < R; q++)
            users += d >= q * cv->sh && (d - q * cv->sh) % cv->dh == 0 && (d - q * cv->sh) / cv->dh < cv->kh;
        if (!users) continue;
        LLVMValueRef ih = iadd(cg, imul(cg, iadd(cg, oh0, r), ci64(cg, cv->sh)), ci64(cg, d - cv->ph));
        LLVMValueRef inside = LLVMBuildICmp(cg->b, LLVMIntULT, ih, ci64(cg, cv->h), "");
        LLVMValueRef ihc = imin(cg, imax(cg, ih, ci64(cg, 0)), ci64(cg, cv->h - 1));
        LLVMValueRef xrow = iadd(cg, xplane, imul(cg, ihc, ci64(cg, cv->xs[2])));
        for (int64_t kw = 0; kw < cv->kw; kw++) {
            int64_t iw0 = kw * cv->dw - cv->pw, t0 = 0, t1;
            while (t0 < OW && t0 * cv->sw + iw0 < 0) t0++;
            for (t1 = t0; t1 < OW && t1 * cv->sw + iw0 < cv->w;) t1++;
            for (int j = 0; j < nv; j++) {
                int64_t base = (int64_t)j * VL, llo = t0 - base, lhi = t1 - base;
                if (llo < 0) llo = 0;
                if (lhi > VL) lhi = VL;
                if (lhi > OW - base) lhi = OW - base;
                if (llo >= lhi) continue;
                LLVMValueRef xi = iadd(cg, xrow, ci64(cg, (base * cv->sw + iw0) * cv->xs[3]));
                LLVMValueRef xv = lanes_load(cg, xdt, X, xi, cv->sw * cv->xs[3], llo, lhi);
                LLVMValueRef m = llo == 0 && lhi == VL ? NULL : const_lanes(cg, llo, lhi, VL);
                for (int q = 0; q < R; q++) {
                    int64_t kh = (d - q * cv->sh) / cv->dh;
                    if (d < q * cv->sh || (d - q * cv->sh) % cv->dh || kh >= cv->kh) continue;
                    if (cv->op == OP_CONV2D && !wv[kh][kw])
                        wv[kh][kw] = direct_weight(cg, g, Wt, wdt, oc, c, ci64(cg, kh), kw);
                    LLVMValueRef *a = &vacc[q * nv + j];
                    *a =
                        LLVMBuildSelect(cg->b, inside, direct_tap(cg, cv->op, xv, wv[kh][kw], *a, m), *a, "");
                }
            }
        }
    }
    loop_end(kc, &lcl, phis, vacc, R * nv, 0);
    for (int q = 0; q < R; q++)
        for (int j = 0; j < nv; j++) {
            int64_t base = (int64_t)j * VL, lanes = OW - base < VL ? OW - base : VL;
            LLVMValueRef at = iadd(cg, imul(cg, iadd(cg, r, ci64(cg, q)), ci64(cg, OW)), ci64(cg, base));
            masked_store_f32(cg, vacc[q * nv + j], acc, at, const_lanes(cg, 0, lanes, VL));
        }
    tloop_end(kc, &lr);
}

/* (below) */
static int64_t half_floor(int64_t a);
static LLVMValueRef masked_load_f32(Cg *cg, LLVMValueRef src, LLVMValueRef i, LLVMValueRef mask,
                                    LLVMValueRef other);

/* Stride-2 rows de-interleaved in registers (AMD Zen 5: Cg.s2_rows).  The
 * row forms above read each tap (kh, kw) of a stride-2 row as a wide load
 * of 2*VL input columns and a shuffle of every other one: two loads and a
 * permute per tap and vector, the rows outside the image a select per tap.
 * Here a depthwise layer of stride 2 (one input channel per group, f32
 * input) whose output rows are at most S2_ROWS_MAX_VECS vectors
 * (MobileNetV2's 96x112x112 -> 56x56 and 144x56x56 -> 28x28) loads each
 * input row once, 2*VL columns a vector (plain loads, the row's last
 * vector masked at its end), and splits it in registers into its even and
 * odd columns (phase p, column i: input column 2i + p); tap kw of output
 * column ow reads column 2ow + kw - pw, phase (kw - pw) mod 2, the phase's
 * vector shifted by floor((kw - pw) / 2) lanes across its neighbour (a
 * lane alignment; before the row's first vector and past its last: zeros,
 * the padding).  A row outside the image is read clamped and its bits
 * and'ed off (zeros): its taps add 0*w where the row forms skip them (the
 * same sums but for -0 and infinite weights); the sums in the row forms'
 * order (kh, then kw ascending).  S2_ROWS_AT_ONCE output rows at a time
 * share their input rows (two rows: 5 input rows, not 6; one row and three
 * ran 0.80-0.95x as fast at batch 1), the window's weights broadcast once
 * a block.  Each group prefetches the input rows that the group
 * S2_ROWS_AHEAD_BYTES of input on adds, into the L1: without it, at batch
 * 8 in the model (the input just written by the expansion before it, 38.5
 * MB at 112x112) the 112x112 layer ran 1.35x slower than the row form;
 * 8 rows ahead 1.26x faster than the row form, 16 1.40x, 32 the same as 16
 * (the 56x56 layer: 16 rows 1.87x, 32 2.1x).  The layers alone, 1 thread,
 * batch 1: 1.42x (112x112) and 1.68x (56x56) faster than the row forms
 * (docs/performance.md, "Session 19: MobileNetV2's depthwise layers").
 * Stride 1 (Cg.s1_rows) takes the same form with one phase: a row's
 * vectors loaded once, tap kw the row shifted kw - pw lanes, where the row
 * form loaded every tap unaligned (MobileNetV2's 144x56x56: 1.55x alone,
 * 1.44-1.69x in the model, batch 1 and 8, 1 and 2 threads). */
enum { S2_ROWS_MAX_VECS = 4, S2_ROWS_AT_ONCE = 2, S2_ROWS_MAX_WINDOW = 3, S2_ROWS_AHEAD_BYTES = 7 << 10 };

static bool direct_s2_rows_ok(const Cg *cg, const Kernel *k) {
    const KConv *cv = &k->conv;
    const int64_t VL = cg->vec_floats;
    return cv->op == OP_CONV2D && cv->sh == cv->sw &&
           ((cg->s2_rows && cv->sw == 2) || (cg->s1_rows && cv->sw == 1)) && cv->dh == 1 && cv->dw == 1 &&
           cv->c == cv->groups && cv->xs[3] == 1 && cv->ow <= S2_ROWS_MAX_VECS * VL &&
           cv->kh <= S2_ROWS_MAX_WINDOW && cv->kw <= S2_ROWS_MAX_WINDOW && cv->pw >= 0 && cv->pw < cv->kw &&
           cg->p->bufs.data[cv->x_buf].dtype == KILN_F32;
}

/* <n x i32> constants lo, lo + step, ... */
static LLVMValueRef const_steps(Cg *cg, int lo, int step, int n) {
    LLVMValueRef e[64];
    for (int i = 0; i < n; i++) e[i] = ci32(cg, lo + i * step);
    return LLVMConstVector(e, (unsigned)n);
}

/* The rows [oh0, oh0 + nrows) of plane (oc, n), S2_ROWS_AT_ONCE at a time,
 * into acc (row r at r * OW). */
static void direct_s2_row_groups(Kc *kc, const DirectGeo *g, LLVMValueRef X, LLVMValueRef Wt, KilnDType wdt,
                                 LLVMValueRef oc, LLVMValueRef n, LLVMValueRef cin0, LLVMValueRef oh0,
                                 LLVMValueRef nrows, LLVMValueRef acc, LLVMValueRef vinit) {
    Cg *cg = kc->cg;
    const KConv *cv = &kc->k->conv;
    const int VL = cg->vec_floats, R = S2_ROWS_AT_ONCE, S = (int)cv->sw; /* 1 or 2 */
    const int64_t OW = cv->ow, W = cv->w;
    const int nv = (int)((OW + VL - 1) / VL);
    LLVMTypeRef vf = LLVMVectorType(cg->t_f32, (unsigned)VL),
                vw = LLVMVectorType(cg->t_f32, (unsigned)(S * VL));
    LLVMTypeRef vi = LLVMVectorType(cg->t_i32, (unsigned)VL);
    LLVMValueRef zero = LLVMConstNull(vf), zerow = LLVMConstNull(vw);
    LLVMValueRef wv[S2_ROWS_MAX_WINDOW][S2_ROWS_MAX_WINDOW];
    for (int64_t kh = 0; kh < cv->kh; kh++)
        for (int64_t kw = 0; kw < cv->kw; kw++)
            wv[kh][kw] = direct_weight(cg, g, Wt, wdt, oc, ci64(cg, 0), ci64(cg, kh), kw);
    /* the phase vectors a row's taps read: j in [jlo, jhi] */
    int smin = 0, smax = 0;
    for (int64_t kw = 0; kw < cv->kw; kw++) {
        int s = (int)(S == 1 ? kw - cv->pw : half_floor(kw - cv->pw));
        if (s < smin) smin = s;
        if (s > smax) smax = s;
    }
    const int jlo = smin, jhi = nv - 1 + smax;
    LLVMValueRef xplane = direct_input(cg, g, n, cin0);
    TLoop lr;
    LLVMValueRef r = tloop_begin(kc, &lr, ci64(cg, 0), nrows, R, "rows");
    LLVMValueRef vacc[S2_ROWS_AT_ONCE * S2_ROWS_MAX_VECS];
    for (int j = 0; j < R * nv; j++) vacc[j] = vinit;
    { /* the S*R input rows that the group `ahead` input rows on adds, into the L1 */
        const int64_t per_line = CACHE_LINE_BYTES / 4, span = S * R * cv->xs[2];
        int64_t ahead = (S2_ROWS_AHEAD_BYTES / 4 + cv->xs[2] - 1) / cv->xs[2];
        ahead = (ahead + S * R - 1) / (S * R) * (S * R);
        LLVMValueRef at0 = iadd(
            cg, xplane, imul(cg, iadd(cg, iadd(cg, oh0, r), ci64(cg, ahead / S)), ci64(cg, S * cv->xs[2])));
        at0 = iadd(cg, at0, ci64(cg, (S * (R - 1) + cv->kh - 1 - cv->ph - S * R + 1) * cv->xs[2]));
        for (int64_t e = 0; e < span; e += per_line) {
            LLVMValueRef at = iadd(cg, at0, ci64(cg, e));
            prefetch_at(cg, LLVMBuildGEP2(cg->b, cg->t_f32, X, &at, 1, ""), false, 3);
        }
    }
    LLVMValueRef even_idx = const_steps(cg, 0, 2, VL), odd_idx = const_steps(cg, 1, 2, VL);
    for (int64_t d = 0; d <= S * (R - 1) + cv->kh - 1; d++) {
        LLVMValueRef ih = iadd(cg, imul(cg, iadd(cg, oh0, r), ci64(cg, S)), ci64(cg, d - cv->ph));
        LLVMValueRef inside = LLVMBuildICmp(cg->b, LLVMIntULT, ih, ci64(cg, cv->h), "");
        LLVMValueRef ihc = imin(cg, imax(cg, ih, ci64(cg, 0)), ci64(cg, cv->h - 1));
        LLVMValueRef xrow = iadd(cg, xplane, imul(cg, ihc, ci64(cg, cv->xs[2])));
        LLVMValueRef in_v = splat_int(cg, LLVMBuildSExt(cg->b, inside, cg->t_i32, ""), VL);
        /* P[phase][j - jlo]: input columns S*(j*VL + l) + phase */
        LLVMValueRef P[2][S2_ROWS_MAX_VECS + 2];
        for (int j = jlo; j <= jhi; j++) {
            int64_t c0 = (int64_t)j * S * VL, cnt = W - c0 < S * VL ? W - c0 : S * VL;
            if (c0 < 0 || cnt <= 0) {
                P[0][j - jlo] = P[1][j - jlo] = zero;
                continue;
            }
            /* a row's whole vectors plain loads, its last one masked: with
             * every load masked (the row's mask and'ed with `inside`) the
             * 112x112 layer alone ran 3.6x slower at batch 8 (its input
             * from memory), 1.2x at batch 1 */
            LLVMValueRef at = iadd(cg, xrow, ci64(cg, c0)), v;
            if (cnt == S * VL) {
                v = LLVMBuildLoad2(cg->b, vw, elem_ptr(cg, cg->t_f32, X, at), "");
                LLVMSetAlignment(v, 4);
            } else
                v = masked_load_f32(cg, X, at, const_lanes(cg, 0, cnt, S * VL), zerow);
            for (int ph = 0; ph < S; ph++) {
                LLVMValueRef e =
                    S == 1 ? v
                           : LLVMBuildShuffleVector(cg->b, v, LLVMGetUndef(vw), ph ? odd_idx : even_idx, "");
                /* zeros for a row outside the image (its bits and'ed off) */
                LLVMValueRef bits = LLVMBuildBitCast(cg->b, e, vi, "");
                bits = LLVMBuildAnd(cg->b, bits, in_v, "");
                P[ph][j - jlo] = LLVMBuildBitCast(cg->b, bits, vf, "");
            }
        }
        for (int64_t kw = 0; kw < cv->kw; kw++) {
            const int64_t a = kw - cv->pw, sf = S == 1 ? a : half_floor(a), phs = a - S * sf;
            const int s = (int)sf;
            LLVMValueRef xv[S2_ROWS_MAX_VECS];
            for (int j = 0; j < nv; j++) {
                if (s == 0)
                    xv[j] = P[phs][j - jlo];
                else { /* lanes l + s of the phase's vectors j, j + 1 (s > 0) or j - 1, j */
                    LLVMValueRef lo = P[phs][j - jlo + (s < 0 ? -1 : 0)],
                                 hi = P[phs][j - jlo + (s < 0 ? 0 : 1)];
                    xv[j] = LLVMBuildShuffleVector(cg->b, lo, hi,
                                                   const_steps(cg, (s < 0 ? VL : 0) + s, 1, VL), "shift");
                }
            }
            for (int q = 0; q < R; q++) {
                const int64_t kh = d - S * q;
                if (kh < 0 || kh >= cv->kh) continue;
                for (int j = 0; j < nv; j++) vacc[q * nv + j] = fma3(cg, xv[j], wv[kh][kw], vacc[q * nv + j]);
            }
        }
    }
    for (int q = 0; q < R; q++)
        for (int j = 0; j < nv; j++) {
            int64_t base = (int64_t)j * VL, lanes = OW - base < VL ? OW - base : VL;
            LLVMValueRef at = iadd(cg, imul(cg, iadd(cg, r, ci64(cg, q)), ci64(cg, OW)), ci64(cg, base));
            masked_store_f32(cg, vacc[q * nv + j], acc, at, const_lanes(cg, 0, lanes, VL));
        }
    tloop_end(kc, &lr);
}

static LLVMValueRef emit_direct_fn(Cg *cg, const Kernel *k, const int *list, int nb, bool sized) {
    const KConv *cv = &k->conv;
    const bool is_conv = cv->op == OP_CONV2D, max = cv->op == OP_MAXPOOL2D;
    const int VL = cg->vec_floats;
    const int64_t OW = cv->ow, OH = cv->oh, P = OH * OW;
    int64_t RB = (DIRECT_BLOCK + OW - 1) / OW; /* rows per block */
    if (RB > OH) RB = OH;
    KilnDType xdt = cg->p->bufs.data[cv->x_buf].dtype, wdt = is_conv ? cg->p->bufs.data[cv->w_buf].dtype : KILN_F32;
    LLVMTypeRef vf = LLVMVectorType(cg->t_f32, (unsigned)VL);
    Kc kc;
    kc_init(&kc, cg, k);
    LLVMValueRef fn = begin_inner_fn(&kc, ".direct", list, nb, sized);
    EpiAnalysis ea;
    DirectGeo g = begin_direct_sizes(&kc, fn, sized, nb, &ea);
    LLVMValueRef X = kc.bufptr[cv->x_buf], Wt = is_conv ? kc.bufptr[cv->w_buf] : NULL;
    LLVMValueRef ob = LLVMGetParam(fn, 0), oe = LLVMGetParam(fn, 1), cP = ci64(cg, P), cOW = ci64(cg, OW);
    const bool s2 = direct_s2_rows_ok(cg, k) && RB >= S2_ROWS_AT_ONCE;
    const int R = s2 ? S2_ROWS_AT_ONCE : direct_rows_at_once(cg);
    const bool grouped = s2 || direct_grouped_rows(cv, VL, RB, R);
    if (grouped) RB = (RB + R - 1) / R * R;
    /* grouped: a block's last group may compute rows past its range (in
     * bounds of the stack block), never stored out */
    LLVMValueRef acc =
        LLVMBuildArrayAlloca(cg->b, cg->t_f32, ci64(cg, (RB + (grouped ? R - 1 : 0)) * OW + VL), "acc");
    LLVMSetAlignment(acc, 64);
    LLVMValueRef vinit = splat(cg, cf(cg, max ? -INFINITY : 0.0), VL);
    /* planes [p0, p1) touch [ob, oe) */
    LLVMValueRef p0 = LLVMBuildUDiv(cg->b, ob, cP, ""), p1 = LLVMBuildUDiv(cg->b, iadd(cg, oe, ci64(cg, P - 1)), cP, "");
    TLoop lp, lb, lr;
    LLVMValueRef plane = tloop_begin(&kc, &lp, p0, p1, 1, "plane");
    LLVMValueRef oc, n;
    plane_split(cg, &g, plane, &oc, &n);
    LLVMValueRef cin0 = imul(cg, LLVMBuildUDiv(cg->b, oc, g.ocpg, ""), g.cpg);
    DirectBlock blk;
    direct_block_begin(&kc, &lb, plane, ob, oe, P, OW, RB, &blk);
    LLVMValueRef oh0 = blk.oh0, nrows = blk.nrows;
    if (grouped) {
        if (s2)
            direct_s2_row_groups(&kc, &g, X, Wt, wdt, oc, n, cin0, oh0, nrows, acc, vinit);
        else
            direct_row_groups(&kc, &g, X, Wt, xdt, wdt, oc, n, cin0, oh0, nrows, acc, vinit);
        direct_blocks_end(&kc, acc, &blk, OW, P, plane, &lb, &lp);
        end_direct_sizes(&kc, sized, &ea);
        return fn;
    }
    LLVMValueRef r = tloop_begin(&kc, &lr, ci64(cg, 0), nrows, 1, "row");
    LLVMValueRef oh = iadd(cg, oh0, r);
    /* the taps that read inside the image: kh in [kh0, kh1) */
    LLVMValueRef top = LLVMBuildSub(cg->b, ci64(cg, cv->ph), imul(cg, oh, ci64(cg, cv->sh)), "");
    LLVMValueRef kh0 = imax(cg, ci64(cg, 0), LLVMBuildSDiv(cg->b, iadd(cg, top, ci64(cg, cv->dh - 1)), ci64(cg, cv->dh), ""));
    LLVMValueRef below = iadd(cg, top, ci64(cg, cv->h)); /* kh*dh < below */
    LLVMValueRef kh1 = imin(cg, ci64(cg, cv->kh), LLVMBuildSDiv(cg->b, iadd(cg, below, ci64(cg, cv->dh - 1)), ci64(cg, cv->dh), ""));
    kh1 = imax(cg, kh1, kh0);
    for (int64_t u0 = 0; u0 < OW; u0 += (int64_t)DIRECT_VECS * VL) { /* chunks of a row, in registers */
        int nv = (int)((OW - u0 + VL - 1) / VL);
        if (nv > DIRECT_VECS) nv = DIRECT_VECS;
        LLVMValueRef vacc[DIRECT_VECS], next[DIRECT_VECS];
        Loop lcl;
        LLVMValueRef c = loop_begin(&kc, &lcl, ci64(cg, 0), g.cpg, "c");
        LLVMValueRef phis_c[DIRECT_VECS];
        for (int j = 0; j < nv; j++) {
            phis_c[j] = LLVMBuildPhi(cg->b, vf, "acc_c");
            LLVMAddIncoming(phis_c[j], &vinit, &lcl.pre, 1);
        }
        LLVMValueRef xplane = direct_input(cg, &g, n, iadd(cg, cin0, c));
        /* kh over [kh0, kh1): skipped when empty */
        LLVMBasicBlockRef pre_kh = LLVMGetInsertBlock(cg->b);
        LLVMBasicBlockRef khbody = LLVMAppendBasicBlockInContext(cg->ctx, fn, "kh");
        LLVMBasicBlockRef khdone = LLVMAppendBasicBlockInContext(cg->ctx, fn, "kh_done");
        LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, kh0, kh1, ""), khbody, khdone);
        LLVMPositionBuilderAtEnd(cg->b, khbody);
        LLVMValueRef kh = LLVMBuildPhi(cg->b, cg->t_i64, "kh");
        LLVMAddIncoming(kh, &kh0, &pre_kh, 1);
        LLVMValueRef phis_kh[DIRECT_VECS];
        for (int j = 0; j < nv; j++) {
            phis_kh[j] = LLVMBuildPhi(cg->b, vf, "acc_kh");
            LLVMAddIncoming(phis_kh[j], &phis_c[j], &pre_kh, 1);
            vacc[j] = phis_kh[j];
        }
        LLVMValueRef ih = iadd(cg, iadd(cg, imul(cg, oh, ci64(cg, cv->sh)), imul(cg, kh, ci64(cg, cv->dh))), ci64(cg, -cv->ph));
        LLVMValueRef xrow = iadd(cg, xplane, imul(cg, ih, ci64(cg, cv->xs[2])));
        for (int64_t kw = 0; kw < cv->kw; kw++) {
            int64_t iw0 = kw * cv->dw - cv->pw, t0 = 0, t1;
            while (t0 < OW && t0 * cv->sw + iw0 < 0) t0++;
            for (t1 = t0; t1 < OW && t1 * cv->sw + iw0 < cv->w;) t1++;
            LLVMValueRef wv = NULL;
            for (int j = 0; j < nv; j++) {
                int64_t base = u0 + (int64_t)j * VL, llo = t0 - base, lhi = t1 - base;
                if (llo < 0) llo = 0;
                if (lhi > VL) lhi = VL;
                if (lhi > OW - base) lhi = OW - base;
                if (llo >= lhi) continue;
                if (is_conv && !wv) wv = direct_weight(cg, &g, Wt, wdt, oc, c, kh, kw);
                LLVMValueRef xi = iadd(cg, xrow, ci64(cg, (base * cv->sw + iw0) * cv->xs[3]));
                LLVMValueRef xv = lanes_load(cg, xdt, X, xi, cv->sw * cv->xs[3], llo, lhi);
                LLVMValueRef m = llo == 0 && lhi == VL ? NULL : const_lanes(cg, llo, lhi, VL);
                vacc[j] = direct_tap(cg, cv->op, xv, wv, vacc[j], m);
            }
        }
        LLVMValueRef kh_next = iadd(cg, kh, ci64(cg, 1));
        LLVMBasicBlockRef khlatch = LLVMGetInsertBlock(cg->b);
        LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, kh_next, kh1, ""), khbody, khdone);
        LLVMAddIncoming(kh, &kh_next, &khlatch, 1);
        for (int j = 0; j < nv; j++) LLVMAddIncoming(phis_kh[j], &vacc[j], &khlatch, 1);
        LLVMPositionBuilderAtEnd(cg->b, khdone);
        for (int j = 0; j < nv; j++) {
            next[j] = phi2(cg, vf, "acc", phis_c[j], pre_kh, vacc[j], khlatch);
        }
        loop_end(&kc, &lcl, phis_c, next, nv, 0);
        for (int j = 0; j < nv; j++) { /* the row's vectors into the block */
            int64_t base = u0 + (int64_t)j * VL, lanes = OW - base < VL ? OW - base : VL;
            LLVMValueRef at = iadd(cg, imul(cg, r, cOW), ci64(cg, base));
            masked_store_f32(cg, next[j], acc, at, const_lanes(cg, 0, lanes, VL));
        }
    }
    tloop_end(&kc, &lr);
    direct_blocks_end(&kc, acc, &blk, OW, P, plane, &lb, &lp);
    end_direct_sizes(&kc, sized, &ea);
    return fn;
}

/* Max and average pools over rows wider than a few vectors (ResNet's 3x3
 * stride-2 max pool on 112x112 planes) run separably, a block of output
 * rows at a time: first each output row's window rows are combined down
 * the columns, V[pw + iw] = combine over kh of X(ih0 + kh*dh, iw) (whole
 * vectors, no shuffles), into a stack row whose pw columns on the left and
 * those past the image are the combination's identity (-inf, 0); then each
 * output vector combines its kw taps across V, one wide load and shuffle per
 * tap (every S-th lane), with no masks: the padding is V's identity columns.
 * The row form took a wide load, a shuffle and a masked combination per tap
 * and window row (9 per output vector for a 3x3 window, 3 here plus 3
 * plain loads per input vector); the pool on 64x112x112 spent its time on
 * the shuffles (0.21 ms against onnxruntime's 0.10 at batch 1, 1 thread).
 * Window rows outside the image read a row inside it (clamped) and combine
 * the identity instead.  The horizontal pass runs after the whole block's
 * vertical one, so that its loads of V do not wait on the stores just made
 * (a load spanning two stores is not forwarded).  Sums are added in another
 * order than the row form's: an average may differ in the last bits.  For
 * an input of at most POOL_ROWS_MAX_INPUT bytes: on Zen 4 an input from
 * memory (batch 8: 25.7 MB) ran 0.86x as fast as the row form, but on the
 * Intel Xeon (model 207) 1.27x faster alone and 1.02-1.08x in ResNet
 * (session 12); larger inputs, not measured, keep the row form.  Above
 * POOL_ROWS_CACHED_INPUT bytes (not in the L2 after the layer that wrote
 * them: ResNet's batch 8 reads its stem's output from memory) the vertical
 * pass prefetches the input rows POOL_ROWS_AHEAD output rows ahead, into
 * the next plane at a plane's end: without it one thread read that stream
 * at 11 GB/s; with it the pool in ResNet-18 batch 8 ran 1.31x faster (4
 * and 8 rows ahead alike, 24 slower). */
enum { POOL_ROWS_MAX_FLOATS = 4096, POOL_ROWS_MAX_KH = 8, POOL_ROWS_MAX_INPUT = 32 << 20 };
/* On AMD Zen 1-4 (the targets whose micro-kernel broadcasts from memory,
 * ukernel_embedded_bcast) the 8 MiB measured on Zen 4 in session 8 stays;
 * Zen 5 takes the 32 MiB with the Intel form (measured together in
 * session 16). */
enum { POOL_ROWS_MAX_INPUT_ZEN = 8 << 20 };
enum { POOL_ROWS_CACHED_INPUT = 8 << 20, POOL_ROWS_AHEAD = 4 };
/* The stack rows of one block (RB x RL floats) are at most this many: a
 * short, wide output under a tall input (256 rows of 2100 floats) would
 * otherwise take megabytes of the thread's stack. */
enum { POOL_ROWS_BLOCK_FLOATS = 16384 };
static bool direct_plane_ok(const Cg *cg, const Kernel *k);

/* Floats of one stack row V of pool kernel cv: what the vertical pass
 * writes (pw + W) and the horizontal one reads (the last output vector's
 * last tap, S*VL wide), in whole vectors. */
static int64_t pool_row_floats(const Cg *cg, const KConv *cv) {
    const int64_t VL = cg->vec_floats, nvec = (cv->ow + VL - 1) / VL;
    int64_t read = nvec * VL * cv->sw + (cv->kw - 1) * cv->dw, written = cv->pw + cv->w;
    return ((read > written ? read : written) + VL) / VL * VL;
}

/* The bytes of a pool's whole input (every plane of every image). */
static double pool_input_bytes(const Cg *cg, const KConv *cv) {
    return (double)cv->n * (double)cv->xs[0] * (double)kiln_dtype_size(cg->p->bufs.data[cv->x_buf].dtype);
}

static bool pool_rows_ok(const Cg *cg, const Kernel *k) {
    const KConv *cv = &k->conv;
    return k->kind == KK_POOL && cv->op != OP_CONV2D && direct_ok(cg, k) && !direct_plane_ok(cg, k) &&
           cv->kw > 1 && cv->sw <= 4 && cv->kh <= POOL_ROWS_MAX_KH && cv->xs[3] == 1 && cv->pw >= 0 &&
           cv->ph >= 0 && pool_row_floats(cg, cv) <= POOL_ROWS_MAX_FLOATS &&
           pool_input_bytes(cg, cv) <= (cg->embedded_bcast ? POOL_ROWS_MAX_INPUT_ZEN : POOL_ROWS_MAX_INPUT);
}

/* The vertical pass of output row oh: V[pw + iw] for iw < W (the last
 * vector under a mask, so that V's identity columns stay). */
static void pool_rows_down(Kc *kc, const KConv *cv, KilnDType xdt, LLVMValueRef X, LLVMValueRef xplane,
                           LLVMValueRef oh, LLVMValueRef V, LLVMValueRef vrow, LLVMValueRef ident,
                           int64_t ahead) {
    Cg *cg = kc->cg;
    const int VL = cg->vec_floats;
    const int64_t whole = cv->w / VL, tail = cv->w % VL;
    LLVMValueRef rows[POOL_ROWS_MAX_KH], inside[POOL_ROWS_MAX_KH];
    for (int64_t kh = 0; kh < cv->kh; kh++) {
        LLVMValueRef ih = iadd(cg, imul(cg, oh, ci64(cg, cv->sh)), ci64(cg, kh * cv->dh - cv->ph));
        LLVMValueRef in = LLVMBuildAnd(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGE, ih, ci64(cg, 0), ""),
                                       LLVMBuildICmp(cg->b, LLVMIntSLT, ih, ci64(cg, cv->h), ""), "");
        LLVMValueRef ihc = imin(cg, imax(cg, ih, ci64(cg, 0)), ci64(cg, cv->h - 1));
        rows[kh] = iadd(cg, xplane, imul(cg, ihc, ci64(cg, cv->xs[2])));
        inside[kh] = splat_int(cg, in, VL);
    }
    if (ahead > 0) { /* the rows output row oh + ahead reads first, past the plane into the next */
        const int64_t per_line = CACHE_LINE_BYTES / (int64_t)kiln_dtype_size(xdt), span = cv->sh * cv->xs[2];
        LLVMValueRef at0 = iadd(cg, xplane, imul(cg, iadd(cg, oh, ci64(cg, ahead)), ci64(cg, span)));
        for (int64_t e = 0; e < span; e += per_line) {
            LLVMValueRef at = iadd(cg, at0, ci64(cg, e));
            prefetch_at(cg, LLVMBuildGEP2(cg->b, mem_type(cg, xdt), X, &at, 1, ""), false,
                        3); /* never faults */
        }
    }
    for (int part = 0; part < 2; part++) { /* the whole vectors (a loop), then the tail */
        if (part == 1 && !tail) break;
        TLoop l;
        LLVMValueRef j =
            part ? ci64(cg, whole * VL) : tloop_begin(kc, &l, ci64(cg, 0), ci64(cg, whole * VL), VL, "down");
        LLVMValueRef a = ident;
        for (int64_t kh = 0; kh < cv->kh; kh++) {
            LLVMValueRef xv = lanes_load(cg, xdt, X, iadd(cg, rows[kh], j), 1, 0, part ? tail : VL);
            a = LLVMBuildSelect(cg->b, inside[kh], direct_tap(cg, cv->op, xv, NULL, a, NULL), a, "");
        }
        LLVMValueRef at = iadd(cg, vrow, iadd(cg, j, ci64(cg, cv->pw)));
        if (part)
            masked_store_f32(cg, a, V, at, const_lanes(cg, 0, tail, VL));
        else {
            vec_store(cg, a, V, at, 4);
            tloop_end(kc, &l);
        }
    }
}

static LLVMValueRef emit_pool_rows_fn(Cg *cg, const Kernel *k, const int *list, int nb) {
    const KConv *cv = &k->conv;
    const int VL = cg->vec_floats;
    const int64_t OW = cv->ow, OH = cv->oh, P = OH * OW, RL = pool_row_floats(cg, cv);
    const int64_t nvec = (OW + VL - 1) / VL;
    int64_t RB = (DIRECT_BLOCK + OW - 1) / OW; /* rows per block */
    if (RB > OH) RB = OH;
    if (RB * RL > POOL_ROWS_BLOCK_FLOATS)
        RB = POOL_ROWS_BLOCK_FLOATS / RL > 1 ? POOL_ROWS_BLOCK_FLOATS / RL : 1;
    KilnDType xdt = cg->p->bufs.data[cv->x_buf].dtype;
    Kc kc;
    kc_init(&kc, cg, k);
    LLVMValueRef fn = begin_inner_fn(&kc, ".pool", list, nb, false);
    LLVMValueRef X = kc.bufptr[cv->x_buf], ob = LLVMGetParam(fn, 0), oe = LLVMGetParam(fn, 1);
    LLVMValueRef cP = ci64(cg, P), cOW = ci64(cg, OW);
    LLVMValueRef acc = LLVMBuildArrayAlloca(cg->b, cg->t_f32, ci64(cg, RB * OW + VL), "acc");
    LLVMValueRef V = LLVMBuildArrayAlloca(cg->b, cg->t_f32, ci64(cg, RB * RL), "rows");
    LLVMSetAlignment(acc, 64);
    LLVMSetAlignment(V, 64);
    LLVMValueRef ident = splat(cg, cf(cg, cv->op == OP_MAXPOOL2D ? -INFINITY : 0.0), VL);
    TLoop li, lp, lb, lr;
    LLVMValueRef i = tloop_begin(&kc, &li, ci64(cg, 0), ci64(cg, RB * RL), VL, "identity");
    vec_store(cg, ident, V, i, 4 * VL); /* V is 64-aligned, i a multiple of VL */
    tloop_end(&kc, &li);
    /* planes [p0, p1) touch [ob, oe); plane = n*C + c */
    LLVMValueRef p0 = LLVMBuildUDiv(cg->b, ob, cP, ""),
                 p1 = LLVMBuildUDiv(cg->b, iadd(cg, oe, ci64(cg, P - 1)), cP, "");
    LLVMValueRef plane = tloop_begin(&kc, &lp, p0, p1, 1, "plane");
    LLVMValueRef c = LLVMBuildURem(cg->b, plane, ci64(cg, cv->c), ""),
                 n = LLVMBuildUDiv(cg->b, plane, ci64(cg, cv->c), "");
    LLVMValueRef xplane = iadd(cg, iadd(cg, ci64(cg, cv->x_off), imul(cg, n, ci64(cg, cv->xs[0]))),
                               imul(cg, c, ci64(cg, cv->xs[1])));
    DirectBlock blk;
    direct_block_begin(&kc, &lb, plane, ob, oe, P, OW, RB, &blk);
    LLVMValueRef oh0 = blk.oh0, nrows = blk.nrows;
    LLVMValueRef r = tloop_begin(&kc, &lr, ci64(cg, 0), nrows, 1, "down_row");
    pool_rows_down(&kc, cv, xdt, X, xplane, iadd(cg, oh0, r), V, imul(cg, r, ci64(cg, RL)), ident,
                   pool_input_bytes(cg, cv) > POOL_ROWS_CACHED_INPUT ? POOL_ROWS_AHEAD : 0);
    tloop_end(&kc, &lr);
    /* across: output vector v's tap kw reads V at v*VL*sw + kw*dw; a row's
     * last vector may spill into the next row's place in the block (stored
     * after it) or the block's VL spare floats */
    r = tloop_begin(&kc, &lr, ci64(cg, 0), nrows, 1, "across_row");
    for (int64_t v = 0; v < nvec; v++) {
        LLVMValueRef a = ident;
        for (int64_t kw = 0; kw < cv->kw; kw++) {
            LLVMValueRef at = iadd(cg, imul(cg, r, ci64(cg, RL)), ci64(cg, v * VL * cv->sw + kw * cv->dw));
            a = direct_tap(cg, cv->op, lanes_load(cg, KILN_F32, V, at, cv->sw, 0, VL), NULL, a, NULL);
        }
        vec_store(cg, a, acc, iadd(cg, imul(cg, r, cOW), ci64(cg, v * VL)), 4);
    }
    tloop_end(&kc, &lr);
    direct_blocks_end(&kc, acc, &blk, OW, P, plane, &lb, &lp);
    return fn;
}

/* Small planes (MobileNet's depthwise layers at 7x7 to 28x28): a row of 7
 * or 14 outputs fills half a vector or less, so the plane runs flattened
 * instead, p = oh*OW + ow in vectors of VL.  At stride 1, with OW == W and
 * the input rows contiguous, tap (kh, kw) reads X at p + (kh*dh - ph)*W +
 * kw*dw - pw for every output: one masked load per tap and vector, the
 * mask (the lanes whose (oh, ow) read inside the image) a constant.  At
 * stride 2 the input plane is first de-interleaved into four phase planes
 * of OW columns on the stack, D(rp, cp)[i][j] = X[2i + rp][2j + cp] (two
 * wide loads and shuffles per input row), and tap (kh, kw) reads phase
 * (kh*dh - ph mod 2, kw*dw - pw mod 2) at p + floor((kh*dh - ph)/2)*OW +
 * floor((kw*dw - pw)/2): the same flat form (the row form took a wide load
 * and a shuffle per tap, and its one or two accumulators per row made the
 * FMAs a chain of dependent ones).  Every input column must have its place
 * among the OW (ceil(W/2) <= OW), and one input channel per output (the
 * phase planes are filled once per plane; the stack holds two sets).  At most PLANE_VECS vectors per
 * plane (the taps are unrolled over all of them), DIRECT_VECS at a time in
 * registers; at stride 2 at most PHASE_VECS (MobileNetV2's 144 x 56x56 ->
 * 28x28, 49 vectors, ran 1.07x slower than by rows: the filling costs as
 * much as the shuffles it saves once the rows fill their vectors; on the
 * Intel Xeon model 207 too, in the model: session 13). */
enum { PLANE_VECS = 64, PHASE_VECS = 16 };

static bool direct_plane_ok(const Cg *cg, const Kernel *k) {
    const KConv *cv = &k->conv;
    const int64_t VL = cg->vec_floats;
    if (cv->sh != cv->sw || cv->xs[3] != 1 || cv->ow % VL == 0 || cv->oh * cv->ow > PLANE_VECS * VL)
        return false;
    if (cv->sh == 1) return cv->xs[2] == cv->w && cv->ow == cv->w;
    return cv->sh == 2 && cv->c == cv->groups && (cv->w + 1) / 2 <= cv->ow &&
           cv->oh * cv->ow <= PHASE_VECS * VL && (cv->h + 1) / 2 * cv->ow <= 2 * PHASE_VECS * VL;
}

/* <VL x i1>: the lanes of vector base/VL whose output (oh, ow) reads tap
 * (kh, kw) inside the image; *n: how many. */
static LLVMValueRef plane_tap_lanes(Cg *cg, const KConv *cv, int64_t base, int64_t kh, int64_t kw, int *n) {
    const int VL = cg->vec_floats;
    LLVMValueRef *e = xcalloc((size_t)VL, sizeof(LLVMValueRef));
    *n = 0;
    for (int l = 0; l < VL; l++) {
        int64_t p = base + l, oh = p / cv->ow, ow = p % cv->ow;
        int64_t ih = oh * cv->sh + kh * cv->dh - cv->ph, iw = ow * cv->sw + kw * cv->dw - cv->pw;
        bool in = p < cv->oh * cv->ow && ih >= 0 && ih < cv->h && iw >= 0 && iw < cv->w;
        *n += in;
        e[l] = LLVMConstInt(cg->t_i1, in, 0);
    }
    LLVMValueRef v = LLVMConstVector(e, (unsigned)VL);
    free(e);
    return v;
}

/* floor(a / 2) of a tap's offset a. */
static int64_t half_floor(int64_t a) { return a >= 0 ? a / 2 : -((1 - a) / 2); }

/* Where the input plane of output plane q (one channel per group) starts in X. */
static LLVMValueRef plane_input(Cg *cg, const DirectGeo *g, LLVMValueRef q) {
    LLVMValueRef oc, n;
    plane_split(cg, g, q, &oc, &n);
    return direct_input(cg, g, n, LLVMBuildUDiv(cg->b, oc, g->ocpg, ""));
}

/* Stride 2: the phase planes (4 x PR x OW floats at D + dbase) of output
 * plane q's input. */
static void fill_phase_planes(Kc *kc, const KConv *cv, const DirectGeo *g, KilnDType xdt, LLVMValueRef X,
                              LLVMValueRef q, LLVMValueRef D, LLVMValueRef dbase, int64_t PR) {
    Cg *cg = kc->cg;
    const int VL = cg->vec_floats;
    const int64_t OW = cv->ow;
    LLVMValueRef xplane = plane_input(cg, g, q);
    TLoop lf;
    LLVMValueRef ih = tloop_begin(kc, &lf, ci64(cg, 0), ci64(cg, cv->h), 1, "phase_row");
    LLVMValueRef rp = LLVMBuildAnd(cg->b, ih, ci64(cg, 1), ""), i = LLVMBuildLShr(cg->b, ih, ci64(cg, 1), "");
    LLVMValueRef xrow = iadd(cg, xplane, imul(cg, ih, ci64(cg, cv->xs[2])));
    LLVMValueRef drow =
        iadd(cg, dbase, iadd(cg, imul(cg, rp, ci64(cg, 2 * PR * OW)), imul(cg, i, ci64(cg, OW))));
    for (int64_t j0 = 0; j0 < OW; j0 += VL) {
        int64_t lanes = OW - j0 < VL ? OW - j0 : VL;
        for (int64_t cp = 0; cp < 2; cp++) {
            int64_t hi = (cv->w - cp + 1) / 2 - j0; /* columns 2j + cp inside the row */
            if (hi > lanes) hi = lanes;
            LLVMValueRef v = hi > 0 ? lanes_load(cg, xdt, X, iadd(cg, xrow, ci64(cg, 2 * j0 + cp)), 2, 0, hi)
                                    : splat(cg, cf(cg, 0.0), VL);
            masked_store_f32(cg, v, D, iadd(cg, drow, ci64(cg, cp * PR * OW + j0)),
                             const_lanes(cg, 0, lanes, VL));
            /* the same row of the next channel's plane (the input of the
             * plane after q at one output per channel), a line per VL
             * input columns: filled an iteration ahead, the next plane's
             * loads would otherwise wait for the other core's cache or
             * memory (batch 8) */
            if (2 * j0 + cp * VL < cv->w) {
                LLVMValueRef ahead = iadd(cg, iadd(cg, xrow, g->xs[1]), ci64(cg, 2 * j0 + cp * VL));
                prefetch_at(cg, LLVMBuildGEP2(cg->b, mem_type(cg, xdt), X, &ahead, 1, ""), false, 3);
            }
        }
    }
    tloop_end(kc, &lf);
}

/* Stride 1 with one input channel per output, more than PLANE_UNROLL_VECS
 * vectors (MobileNetV2's depthwise layers at 28x28; pools): the
 * input plane is copied, widened to
 * f32, into a block on the stack between rows of the combination's
 * identity (0; -inf for max pools), ph rows above it and enough below, so
 * that a tap never needs a row test: tap (kh, kw) of output p reads the
 * block at p + kh*dh*W + kw*dw (the block starts pw before the plane's
 * first padding row).  What is left is the columns: a lane whose ow + kw*dw
 * - pw falls outside [0, W) would read the row before or after, so its
 * load is masked, by a mask of vector v and kw from a table made once per
 * call (column_masks); the loads give the identity there and the FMAs need
 * no mask.  The plane's vectors are a loop, DIRECT_GROUP at a time and
 * then one by one, the taps unrolled (kw outer: a group's masks are loaded
 * once per kw, into mask registers); every size, stride and offset is a
 * value (DirectGeo), so the code depends on the window and the dtypes
 * only.  The copy of the next plane goes into a second block an iteration
 * ahead (store forwarding, as for the phase planes), the one after it
 * prefetched.  MobileNetV2, one thread, against the unrolled form: 28x28
 * 1.13x faster at batch 1, llc 61 -> 14 ms; 14x14 (13 vectors) the same at
 * batch 1 but 3-9 % slower at batch 8 (its input from memory), 7x7 (4
 * vectors) 1.08-1.10x slower at batch 1 (the copy and the mask loads weigh
 * on 36 FMAs): planes of at most PLANE_UNROLL_VECS vectors stay unrolled. */

enum { PLANE_UNROLL_VECS = 16 };

/* <n x i1> masks kept on the stack as n-bit integers. */
static LLVMValueRef mask_table(Cg *cg, LLVMValueRef count, int n) {
    LLVMValueRef t = LLVMBuildArrayAlloca(cg->b, LLVMIntTypeInContext(cg->ctx, (unsigned)n), count, "masks");
    LLVMSetAlignment(t, 64);
    return t;
}
static void mask_put(Cg *cg, LLVMValueRef tab, LLVMValueRef i, LLVMValueRef m, int n) {
    LLVMTypeRef it = LLVMIntTypeInContext(cg->ctx, (unsigned)n);
    LLVMBuildStore(cg->b, LLVMBuildBitCast(cg->b, m, it, ""), elem_ptr(cg, it, tab, i));
}
static LLVMValueRef mask_get(Cg *cg, LLVMValueRef tab, LLVMValueRef i, int n) {
    LLVMTypeRef it = LLVMIntTypeInContext(cg->ctx, (unsigned)n);
    LLVMValueRef bits = LLVMBuildLoad2(cg->b, it, elem_ptr(cg, it, tab, i), "");
    return LLVMBuildBitCast(cg->b, bits, LLVMVectorType(cg->t_i1, (unsigned)n), "");
}

/* <n x i32>: the i64 value x in every lane. */
static LLVMValueRef lanes_i32(Cg *cg, int n, LLVMValueRef x) {
    return splat_int(cg, LLVMBuildTrunc(cg->b, x, cg->t_i32, ""), n);
}

/* <n x i1>: lanes [lo, hi) (i64 values; none when hi <= lo). */
static LLVMValueRef lanes_between(Cg *cg, LLVMValueRef lo, LLVMValueRef hi, int n) {
    LLVMValueRef io = iota_vec(cg, n);
    LLVMValueRef a = LLVMBuildICmp(cg->b, LLVMIntSGE, io, lanes_i32(cg, n, lo), "");
    return LLVMBuildAnd(cg->b, a, LLVMBuildICmp(cg->b, LLVMIntSLT, io, lanes_i32(cg, n, hi), ""), "");
}

/* The column masks of a flattened plane's vectors [0, nvec) into tab[v*KW +
 * kw]: the lanes p = v*VL + l whose ow = p % OW reads column ow + kw*dw - pw
 * inside [0, W); p / OW as (p + 0.5) / OW in f32, exact for p < 2^22. */
static void column_masks(Kc *kc, const KConv *cv, const DirectGeo *g, LLVMValueRef tab, LLVMValueRef nvec) {
    Cg *cg = kc->cg;
    const int VL = cg->vec_floats;
    LLVMTypeRef vi = LLVMVectorType(cg->t_i32, (unsigned)VL), vf = LLVMVectorType(cg->t_f32, (unsigned)VL);
    TLoop lv;
    LLVMValueRef v = tloop_begin(kc, &lv, ci64(cg, 0), nvec, 1, "masks");
    LLVMValueRef p = LLVMBuildAdd(cg->b, lanes_i32(cg, VL, imul(cg, v, ci64(cg, VL))), iota_vec(cg, VL), "");
    LLVMValueRef q = LLVMBuildFDiv(
        cg->b, LLVMBuildFAdd(cg->b, LLVMBuildUIToFP(cg->b, p, vf, ""), splat(cg, cf(cg, 0.5), VL), ""),
        LLVMBuildUIToFP(cg->b, lanes_i32(cg, VL, g->ow), vf, ""), "");
    LLVMValueRef oh = LLVMBuildFPToUI(cg->b, q, vi, "");
    LLVMValueRef ow = LLVMBuildSub(cg->b, p, LLVMBuildMul(cg->b, oh, lanes_i32(cg, VL, g->ow), ""), "");
    for (int64_t kw = 0; kw < cv->kw; kw++) {
        LLVMValueRef iw = LLVMBuildAdd(
            cg->b, ow, lanes_i32(cg, VL, LLVMBuildSub(cg->b, imul(cg, ci64(cg, kw), g->dw), g->pw, "")), "");
        LLVMValueRef m = LLVMBuildICmp(cg->b, LLVMIntULT, iw, lanes_i32(cg, VL, g->w), "");
        mask_put(cg, tab, iadd(cg, imul(cg, v, ci64(cg, cv->kw)), ci64(cg, kw)), m, VL);
    }
    tloop_end(kc, &lv);
}

/* <VL x float> src[i..] under mask, `other` in the lanes off it. */
static LLVMValueRef masked_load_f32(Cg *cg, LLVMValueRef src, LLVMValueRef i, LLVMValueRef mask,
                                    LLVMValueRef other) {
    LLVMTypeRef ov[2] = {LLVMTypeOf(other), cg->t_ptr};
    LLVMValueRef args[4] = {elem_ptr(cg, cg->t_f32, src, i), ci32(cg, 4), mask, other};
    return intrin(cg, "llvm.masked.load", ov, 2, args, 4);
}

/* The input plane of output plane q (h*w contiguous elements) as f32 into
 * D[at..]. */
static void copy_plane(Kc *kc, const DirectGeo *g, KilnDType xdt, LLVMValueRef X, LLVMValueRef q,
                       LLVMValueRef D, LLVMValueRef at) {
    Cg *cg = kc->cg;
    const int VL = cg->vec_floats;
    LLVMValueRef xplane = plane_input(cg, g, q);
    LLVMValueRef hw = imul(cg, g->h, g->w), whole = LLVMBuildAnd(cg->b, hw, ci64(cg, -VL), "");
    /* whole vectors, then the rest under a mask */
    for (int part = 0; part < 2; part++) {
        TLoop l;
        LLVMValueRef i = tloop_begin(kc, &l, part ? whole : ci64(cg, 0), part ? hw : whole, VL, "copy");
        LLVMValueRef m = part ? lanes_between(cg, ci64(cg, 0), LLVMBuildSub(cg->b, hw, i, ""), VL)
                              : LLVMConstAllOnes(LLVMVectorType(cg->t_i1, (unsigned)VL));
        LLVMValueRef x = widen_vec(
            cg, xdt, load_every_sth(cg, xdt, elem_ptr(cg, mem_type(cg, xdt), X, iadd(cg, xplane, i)), 1, m),
            VL);
        masked_store_f32(cg, x, D, iadd(cg, at, i), m);
        /* the next channel's plane (the input of the plane after q at one
         * output per channel): at batch 8 it comes from memory, and the
         * copy's loads waited for it */
        LLVMValueRef ahead = iadd(cg, iadd(cg, xplane, g->xs[1]), i);
        prefetch_at(cg, LLVMBuildGEP2(cg->b, mem_type(cg, xdt), X, &ahead, 1, ""), false, 3);
        tloop_end(kc, &l);
    }
}

/* What the loop over a padded plane's vectors reads. */
typedef struct {
    const KConv *cv;
    const DirectGeo *g;
    KilnDType wdt;
    LLVMValueRef Wt, vinit, oc;
    LLVMValueRef D, base; /* tap (kh, kw) of vector v reads D[base + v*VL + kh*dh*W + kw*dw] */
    LLVMValueRef masks;   /* masks[v*KW + kw] (column_masks) */
    LLVMValueRef acc;     /* vector v goes to acc[v*VL] */
} FlatPlane;

/* Vectors [v0, v0 + nv) of the plane: every tap added in, then stored. */
static void flat_vectors(Kc *kc, const FlatPlane *d, LLVMValueRef v0, int nv) {
    Cg *cg = kc->cg;
    const KConv *cv = d->cv;
    const DirectGeo *g = d->g;
    const int VL = cg->vec_floats;
    LLVMValueRef vacc[DIRECT_GROUP], m[DIRECT_GROUP], at[DIRECT_GROUP];
    for (int j = 0; j < nv; j++) {
        LLVMValueRef v = iadd(cg, v0, ci64(cg, j));
        vacc[j] = d->vinit;
        at[j] = iadd(cg, d->base, imul(cg, v, ci64(cg, VL)));
    }
    for (int64_t kw = 0; kw < cv->kw; kw++) {
        for (int j = 0; j < nv; j++)
            m[j] =
                mask_get(cg, d->masks,
                         iadd(cg, imul(cg, iadd(cg, v0, ci64(cg, j)), ci64(cg, cv->kw)), ci64(cg, kw)), VL);
        for (int64_t kh = 0; kh < cv->kh; kh++) {
            LLVMValueRef wv = cv->op == OP_CONV2D
                                  ? direct_weight(cg, g, d->Wt, d->wdt, d->oc, ci64(cg, 0), ci64(cg, kh), kw)
                                  : NULL;
            LLVMValueRef off =
                iadd(cg, imul(cg, imul(cg, ci64(cg, kh), g->dh), g->w), imul(cg, ci64(cg, kw), g->dw));
            for (int j = 0; j < nv; j++) {
                LLVMValueRef xv = masked_load_f32(cg, d->D, iadd(cg, at[j], off), m[j], d->vinit);
                vacc[j] = direct_tap(cg, cv->op, xv, wv, vacc[j], NULL);
            }
        }
    }
    for (int j = 0; j < nv; j++)
        vec_store(cg, vacc[j], d->acc, imul(cg, iadd(cg, v0, ci64(cg, j)), ci64(cg, VL)), 4);
}

/* Every vector of [0, nvec): DIRECT_GROUP at a time, then one at a time. */
static void flat_plane(Kc *kc, const FlatPlane *d, LLVMValueRef nvec) {
    Cg *cg = kc->cg;
    TLoop lg, l1;
    LLVMValueRef whole =
        LLVMBuildSub(cg->b, nvec, LLVMBuildURem(cg->b, nvec, ci64(cg, DIRECT_GROUP), ""), "");
    LLVMValueRef v0 = tloop_begin(kc, &lg, ci64(cg, 0), whole, DIRECT_GROUP, "vgroup");
    flat_vectors(kc, d, v0, DIRECT_GROUP);
    tloop_end(kc, &lg);
    v0 = tloop_begin(kc, &l1, whole, nvec, 1, "vrest");
    flat_vectors(kc, d, v0, 1);
    tloop_end(kc, &l1);
}

static LLVMValueRef emit_direct_plane_fn(Cg *cg, const Kernel *k, const int *list, int nb, bool sized) {
    const KConv *cv = &k->conv;
    const bool is_conv = cv->op == OP_CONV2D;
    const int VL = cg->vec_floats;
    const int64_t cg_n = cv->c / cv->groups, P = cv->oh * cv->ow;
    const int64_t nvec = (P + VL - 1) / VL;
    KilnDType xdt = cg->p->bufs.data[cv->x_buf].dtype,
              wdt = is_conv ? cg->p->bufs.data[cv->w_buf].dtype : KILN_F32;
    LLVMTypeRef vf = LLVMVectorType(cg->t_f32, (unsigned)VL);
    Kc kc;
    kc_init(&kc, cg, k);
    LLVMValueRef fn = begin_inner_fn(&kc, ".direct", list, nb, sized);
    EpiAnalysis ea;
    DirectGeo g = begin_direct_sizes(&kc, fn, sized, nb, &ea);
    LLVMValueRef X = kc.bufptr[cv->x_buf], Wt = is_conv ? kc.bufptr[cv->w_buf] : NULL;
    LLVMValueRef ob = LLVMGetParam(fn, 0), oe = LLVMGetParam(fn, 1), cP = ci64(cg, P);
    LLVMValueRef acc = LLVMBuildArrayAlloca(cg->b, cg->t_f32, ci64(cg, nvec * VL), "acc");
    LLVMSetAlignment(acc, 64);
    LLVMValueRef vinit = splat(cg, cf(cg, cv->op == OP_MAXPOOL2D ? -INFINITY : 0.0), VL);
    LLVMValueRef p0 = LLVMBuildUDiv(cg->b, ob, cP, ""),
                 p1 = LLVMBuildUDiv(cg->b, iadd(cg, oe, ci64(cg, P - 1)), cP, "");
    /* stride 2: two sets of phase planes, this plane's and the next's,
     * filled an iteration ahead (a load of a vector that masked stores just
     * wrote waits until they reach the cache: store forwarding fails) */
    const bool phased = cv->sh == 2;
    const int64_t PR = (cv->h + 1) / 2, PS = 4 * PR * cv->ow; /* rows of a phase plane; one set */
    LLVMValueRef D = NULL;
    IfBlock ib;
    if (phased) {
        D = LLVMBuildArrayAlloca(cg->b, cg->t_f32, ci64(cg, 2 * PS), "phases");
        LLVMSetAlignment(D, 64);
        if_begin(&kc, &ib, LLVMBuildICmp(cg->b, LLVMIntULT, p0, p1, ""));
        fill_phase_planes(&kc, cv, &g, xdt, X, p0, D, ci64(cg, 0), PR);
        if_end(&kc, &ib);
    }
    /* stride 1, one input channel per output: the padded plane, two blocks
     * of DS floats (the second filled an iteration ahead) */
    const bool padded =
        !phased && cg_n == 1 && cv->pw <= (cv->kw - 1) * cv->dw && nvec > PLANE_UNROLL_VECS;
    LLVMValueRef masks = NULL, DS = NULL, top = NULL;
    if (padded) {
        LLVMValueRef rows =
            imax(cg, iadd(cg, g.oh, imul(cg, ci64(cg, cv->kh - 1), g.dh)), iadd(cg, g.ph, g.h));
        DS = iadd(cg, iadd(cg, g.pw, imul(cg, iadd(cg, rows, ci64(cg, 1)), g.w)),
                  iadd(cg, imul(cg, ci64(cg, cv->kw - 1), g.dw), ci64(cg, 2 * VL)));
        DS = imul(cg, LLVMBuildUDiv(cg->b, DS, ci64(cg, VL), ""), ci64(cg, VL));
        D = LLVMBuildArrayAlloca(cg->b, cg->t_f32, imul(cg, DS, ci64(cg, 2)), "padded");
        LLVMSetAlignment(D, 64);
        TLoop lz;
        LLVMValueRef z = tloop_begin(&kc, &lz, ci64(cg, 0), imul(cg, DS, ci64(cg, 2)), VL, "identity");
        vec_store(cg, vinit, D, z, 4);
        tloop_end(&kc, &lz);
        masks = mask_table(cg, ci64(cg, nvec * cv->kw), VL);
        column_masks(&kc, cv, &g, masks, ci64(cg, nvec));
        top = iadd(cg, g.pw, imul(cg, g.ph, g.w)); /* where the plane's first row goes */
        if_begin(&kc, &ib, LLVMBuildICmp(cg->b, LLVMIntULT, p0, p1, ""));
        copy_plane(&kc, &g, xdt, X, p0, D, top);
        if_end(&kc, &ib);
    }
    TLoop lp;
    LLVMValueRef plane = tloop_begin(&kc, &lp, p0, p1, 1, "plane");
    LLVMValueRef oc, n;
    plane_split(cg, &g, plane, &oc, &n);
    LLVMValueRef dcur = NULL;
    if (phased) {
        LLVMValueRef odd = LLVMBuildAnd(cg->b, LLVMBuildSub(cg->b, plane, p0, ""), ci64(cg, 1), "");
        dcur = imul(cg, odd, ci64(cg, PS));
        LLVMValueRef next = iadd(cg, plane, ci64(cg, 1));
        if_begin(&kc, &ib, LLVMBuildICmp(cg->b, LLVMIntULT, next, p1, ""));
        fill_phase_planes(&kc, cv, &g, xdt, X, next, D, LLVMBuildSub(cg->b, ci64(cg, PS), dcur, ""), PR);
        if_end(&kc, &ib);
    }
    LLVMValueRef cin0 = imul(cg, LLVMBuildUDiv(cg->b, oc, g.ocpg, ""), g.cpg);
    LLVMValueRef pbase = imul(cg, plane, cP);
    if (padded) {
        LLVMValueRef cur =
            imul(cg, LLVMBuildAnd(cg->b, LLVMBuildSub(cg->b, plane, p0, ""), ci64(cg, 1), ""), DS);
        LLVMValueRef next = iadd(cg, plane, ci64(cg, 1));
        if_begin(&kc, &ib, LLVMBuildICmp(cg->b, LLVMIntULT, next, p1, ""));
        copy_plane(&kc, &g, xdt, X, next, D, iadd(cg, LLVMBuildSub(cg->b, DS, cur, ""), top));
        if_end(&kc, &ib);
        FlatPlane d = {cv, &g, wdt, Wt, vinit, oc, D, cur, masks, acc};
        flat_plane(&kc, &d, ci64(cg, nvec));
    }
    /* else (stride 2, several channels per output) every vector and tap
     * unrolled, the masks constants */
    for (int64_t v0 = 0; !padded && v0 < nvec; v0 += DIRECT_VECS) {
        int nv = (int)(nvec - v0 < DIRECT_VECS ? nvec - v0 : DIRECT_VECS);
        LLVMValueRef phis[DIRECT_VECS], vacc[DIRECT_VECS];
        Loop lc;
        LLVMValueRef c = loop_begin(&kc, &lc, ci64(cg, 0), g.cpg, "c");
        for (int j = 0; j < nv; j++) {
            vacc[j] = phis[j] = LLVMBuildPhi(cg->b, vf, "acc_c");
            LLVMAddIncoming(phis[j], &vinit, &lc.pre, 1);
        }
        LLVMValueRef xplane = direct_input(cg, &g, n, iadd(cg, cin0, c));
        for (int64_t kh = 0; kh < cv->kh; kh++) {
            for (int64_t kw = 0; kw < cv->kw; kw++) {
                int64_t oh_off = kh * cv->dh - cv->ph, ow_off = kw * cv->dw - cv->pw;
                int64_t shift = oh_off * cv->w + ow_off;
                if (phased) /* phase (rp, cp) of D, shifted by whole phase rows and columns */
                    shift = ((oh_off - 2 * half_floor(oh_off)) * 2 + ow_off - 2 * half_floor(ow_off)) * PR *
                                cv->ow +
                            half_floor(oh_off) * cv->ow + half_floor(ow_off);
                LLVMValueRef wv = NULL;
                for (int j = 0; j < nv; j++) {
                    int64_t base = (v0 + j) * VL;
                    int in;
                    LLVMValueRef m = plane_tap_lanes(cg, cv, base, kh, kw, &in);
                    if (in == 0) continue;
                    if (is_conv && !wv) wv = direct_weight(cg, &g, Wt, wdt, oc, c, ci64(cg, kh), kw);
                    KilnDType ldt = phased ? KILN_F32 : xdt;
                    LLVMValueRef at =
                        phased
                            ? LLVMBuildGEP2(cg->b, cg->t_f32, D,
                                            (LLVMValueRef[]){iadd(cg, dcur, ci64(cg, base + shift))}, 1, "")
                            : LLVMBuildGEP2(cg->b, mem_type(cg, xdt), X,
                                            (LLVMValueRef[]){iadd(cg, xplane, ci64(cg, base + shift))}, 1,
                                            "");
                    LLVMValueRef xv = widen_vec(cg, ldt, load_every_sth(cg, ldt, at, 1, m), VL);
                    vacc[j] = direct_tap(cg, cv->op, xv, wv, vacc[j], in == VL ? NULL : m);
                }
            }
        }
        loop_end(&kc, &lc, phis, vacc, nv, 0);
        for (int j = 0; j < nv; j++) vec_store(cg, vacc[j], acc, ci64(cg, (v0 + j) * VL), 4);
    }
    /* the epilogue over the plane's elements in [ob, oe) */
    LLVMValueRef lo = imax(cg, ci64(cg, 0), LLVMBuildSub(cg->b, ob, pbase, ""));
    LLVMValueRef hi = imin(cg, cP, LLVMBuildSub(cg->b, oe, pbase, ""));
    emit_block_epilogue(&kc, acc, lo, hi, ci64(cg, 0), pbase, P, plane, "e");
    tloop_end(&kc, &lp);
    LLVMBuildRetVoid(cg->b);
    end_direct_sizes(&kc, sized, &ea);
    kc_free(&kc);
    return fn;
}

/* ----------------------------------------------------------- thin products
 *
 * A product with too few rows for the register tile (a batch-1 classifier
 * head: x[1, 1280] @ w[1280, 1000]) and a row-major B runs as one
 * multiply-add of B's rows per element of A, each a vector loop along n:
 *     acc[n] += A(r, k) * B(k, n)   for k, GEMV_ROWS at a time (then 4, 1)
 * into a stack array of at most GEMV_BLOCK columns, then the epilogue per
 * element.  B streams once, in order (the generic form walks it a column
 * at a time).  16 rows of B per pass over acc: ResNet-50's classifier
 * (2048 x 1000, 8 MB from memory) took 0.50 CPU ms with 4, 0.44 with 8,
 * 0.32 with 16 and 0.40 with 32 (1 thread). */

enum { GEMV_BLOCK = 1024, GEMV_ROWS = 16 };

static bool gemv_ok(const Cg *cg, const Kernel *k, KGemm *g) {
    if (k->kind != KK_MATMUL || !kernel_gemm(cg->p, k, g)) return false;
    const KMatmul *mm = &g->mm;
    return mm->b_sn == 1 && mm->n >= 16 && mm->k >= 4 && mm->n * mm->k >= 4096;
}

/* A sized GEMV (a unit of cpu_code.c; no batch dims: a classifier head)
 * reads M, N, K and A's and B's offsets and strides from its values (GV_*),
 * its epilogue's constants after them at MMB_BUFS, and keeps a block of
 * GEMV_BLOCK columns whatever N: its form is its operands' roles and its
 * epilogue (gemv_form). */
enum { GV_M, GV_N, GV_K, GV_A_OFF, GV_A_SM, GV_A_SK, GV_B_OFF, GV_B_SK, GV_COUNT };

static bool gemv_sized(const Cg *cg, const Kernel *k, KGemm *g) {
    return !cg->aot && !gemm_tiled(cg, k, g) && !direct_ok(cg, k) && gemv_ok(cg, k, g) && g->mm.nbatch == 0;
}

static void gemv_values(const KMatmul *mm, int64_t *v) {
    v[GV_M] = mm->m, v[GV_N] = mm->n, v[GV_K] = mm->k, v[GV_A_OFF] = mm->a_off, v[GV_A_SM] = mm->a_sm;
    v[GV_A_SK] = mm->a_sk, v[GV_B_OFF] = mm->b_off, v[GV_B_SK] = mm->b_sk;
}

static LLVMValueRef emit_gemv_fn(Cg *cg, const Kernel *k, const KGemm *g, const int *list, int nb,
                                 bool sized) {
    const KMatmul *mm = &g->mm;
    const int64_t N = mm->n, K = mm->k, NB = N < GEMV_BLOCK && !sized ? N : GEMV_BLOCK;
    KilnDType adt = cg->p->bufs.data[mm->a_buf].dtype, bdt = cg->p->bufs.data[mm->b_buf].dtype;
    Kc kc;
    kc_init(&kc, cg, k);
    LLVMValueRef fn = begin_inner_fn(&kc, ".gemv", list, nb, sized);
    int64_t val[GV_COUNT];
    gemv_values(mm, val);
    LLVMValueRef v[GV_COUNT], values = sized ? LLVMGetParam(fn, (unsigned)(nb + 2)) : NULL;
    for (int i = 0; i < GV_COUNT; i++) v[i] = sized ? slot_load(cg, values, i, cg->t_i64) : ci64(cg, val[i]);
    EpiAnalysis ea;
    if (sized) {
        epi_analyse(k, N, &ea);
        load_epilogue_values(&kc, &ea, values);
    }
    LLVMValueRef A = kc.bufptr[mm->a_buf], B = kc.bufptr[mm->b_buf];
    LLVMValueRef ob = LLVMGetParam(fn, 0), oe = LLVMGetParam(fn, 1), cN = v[GV_N], cK = v[GV_K];
    LLVMValueRef acc = LLVMBuildArrayAlloca(cg->b, cg->t_f32, ci64(cg, NB), "acc");
    LLVMSetAlignment(acc, 64);
    LLVMValueRef r0 = LLVMBuildUDiv(cg->b, ob, cN, ""),
                 r1 = LLVMBuildUDiv(cg->b, iadd(cg, oe, LLVMBuildSub(cg->b, cN, ci64(cg, 1), "")), cN, "");
    TLoop lr, lb, lk, ln;
    LLVMValueRef row = tloop_begin(&kc, &lr, r0, r1, 1, "row");
    /* (no batch dims: the row is m) */
    LLVMValueRef bi = mm->nbatch ? LLVMBuildUDiv(cg->b, row, v[GV_M], "") : ci64(cg, 0);
    LLVMValueRef m = mm->nbatch ? LLVMBuildURem(cg->b, row, v[GV_M], "") : row;
    LLVMValueRef abase = iadd(cg, iadd(cg, v[GV_A_OFF], batch_offset(cg, mm, mm->a_batch_stride, bi)),
                              imul(cg, m, v[GV_A_SM]));
    LLVMValueRef bbase = iadd(cg, v[GV_B_OFF], batch_offset(cg, mm, mm->b_batch_stride, bi));
    LLVMValueRef obase = imul(cg, row, cN);
    LLVMValueRef nlo = imax(cg, ci64(cg, 0), LLVMBuildSub(cg->b, ob, obase, ""));
    LLVMValueRef nhi = imin(cg, cN, LLVMBuildSub(cg->b, oe, obase, ""));
    LLVMValueRef n0 = tloop_begin(&kc, &lb, nlo, nhi, NB, "nblock");
    LLVMValueRef nbv = imin(cg, ci64(cg, NB), LLVMBuildSub(cg->b, nhi, n0, ""));
    LLVMValueRef n = tloop_begin(&kc, &ln, ci64(cg, 0), nbv, 1, "zero");
    store_f32(cg, acc, n, cf(cg, 0.0));
    loop_metadata(cg, tloop_end(&kc, &ln), 0, 1);
    /* k GEMV_ROWS at a time, then 4, then the rest one at a time: [k0, k1) the k
     * that whole steps cover, k1 = K rounded down to the step (each step
     * divides the one before); with K a constant, empty steps left out */
    const int steps[3] = {GEMV_ROWS, 4, 1};
    LLVMValueRef k0 = ci64(cg, 0);
    for (int si = 0; si < 3; si++) {
        const int step = steps[si];
        if (!sized && K / step * step <= (si ? K / steps[si - 1] * steps[si - 1] : 0)) continue;
        LLVMValueRef k1 = step == 1 ? cK : LLVMBuildAnd(cg->b, cK, ci64(cg, -step), "");
        LLVMValueRef kb = tloop_begin(&kc, &lk, k0, k1, step, "k");
        k0 = k1;
        LLVMValueRef av[GEMV_ROWS], brow[GEMV_ROWS];
        for (int j = 0; j < step; j++) {
            LLVMValueRef kj = iadd(cg, kb, ci64(cg, j));
            av[j] = conv(cg, load_elem(cg, adt, A, iadd(cg, abase, imul(cg, kj, v[GV_A_SK]))), adt, KILN_F32);
            brow[j] = iadd(cg, iadd(cg, bbase, imul(cg, kj, v[GV_B_SK])), n0);
        }
        n = tloop_begin(&kc, &ln, ci64(cg, 0), nbv, 1, "n");
        LLVMValueRef v = load_f32(cg, acc, n);
        for (int j = 0; j < step; j++)
            v = fma3(cg, av[j], conv(cg, load_elem(cg, bdt, B, iadd(cg, brow[j], n)), bdt, KILN_F32), v);
        store_f32(cg, acc, n, v);
        loop_metadata(cg, tloop_end(&kc, &ln), cg->vec_floats, 1);
        tloop_end(&kc, &lk);
    }
    /* the epilogue of the block's elements */
    emit_block_epilogue(&kc, acc, ci64(cg, 0), nbv, n0, obase, N, row, "en");
    tloop_end(&kc, &lb);
    tloop_end(&kc, &lr);
    LLVMBuildRetVoid(cg->b);
    if (sized) {
        free(kc.preset);
        free(kc.magic);
        epi_analysis_free(&ea);
    }
    kc_free(&kc);
    return fn;
}

/* ----------------------------------------------------- prepacked operands
 *
 * An operand of a tiled product that is a constant parameter (KBuf.constant:
 * the same data for every run) is packed once, by NAME.prepack_a or
 * NAME.prepack_b, into a block the runtime keeps (bufs[prepack slot]), in
 * the order the loop nest reads it:
 *     A: [distinct A batch][K block pc][panel of MR rows i0][k < kc][MR]
 *        at ab*(Mp*K) + pc*Mp + i0*kc + kk*MR + r   (Mp = M rounded up to MR)
 *     B: [distinct B batch][K block pc][panel of NR columns j0][k < kc][NR]
 *        at bb*(Np*K) + pc*Np + j0*kc + kk*NR + c
 * (every K block but the last is KC long).  The loop nest then starts its
 * row and column blocks at multiples of MR and NR and never packs them. */

typedef struct {
    bool a, b;        /* which operands are prepacked */
    int64_t ap, bp;   /* floats per distinct batch: Mp*K, Np*K */
} Prepack;

/* The number of distinct operand batches (dims with a non-zero stride), and
 * the packed batch index of flattened batch bi. */
static int64_t distinct_batches(const KMatmul *mm, const int64_t *strides) {
    int64_t n = 1;
    for (int d = 0; d < mm->nbatch; d++)
        if (strides[d]) n *= mm->batch_dims[d];
    return n;
}

int64_t llvm_column_grain(const KProgram *p, const KGemm *g) {
    /* a convolution read in place: whole output rows, so that a chunk
     * copies no input row twice but its window's halo, and its tiles along
     * a row are those of a whole row (a 32-pixel chunk of a 56-pixel row
     * copied 3-4 padded rows for its 32 pixels and ran a 4-pixel tile) */
    if (g->conv && conv_taps(p, g)) {
        int64_t ow = g->conv->ow;
        return (32 + ow - 1) / ow * ow;
    }
    /* a swapped product's tiles are 12 columns (the broadcast pixels): in
     * chunks of 32, a 14x14 image's 196 pixels ran as 6 x (12 + 12 + 8) +
     * 4, 86 % of the tiles' pixels used, where one thread runs 16 x 12 + 4
     * (96 %) */
    return gemm_swapped(p, g) ? ROW_GRAIN : 32;
}

/* A product's operand that is not a constant (a convolution's input under
 * the window, an activation) is packed by the loop nest in every chunk that
 * a thread runs: B in every row chunk when threads split the product by
 * rows (short, deep products: ResNet's 14x14 and 7x7 stages, with 4 chunks
 * per thread), A in every column chunk when they split it by columns (an
 * encoder's activations times its weights).  A convolution's gathering then
 * costs as much as the FMAs (ResNet-50's 3x3 at 14x14 on 2 threads: 35 % of
 * the time).  Such an operand is instead gathered once per thread and run,
 * by NAME.gather (below), into its prepack slot (a block per thread,
 * runtime/cpu.c), and the loop nest reads it as it reads a prepacked
 * constant.  Only for one distinct matrix (several images or groups are
 * split between the chunks already) and when that block stays small. */
enum { GATHER_MAX_BYTES = 4 << 20 };

static bool b_packed_per_chunk(const KProgram *p, const KGemm *g) {
    const KMatmul *mm = &g->mm;
    if (g->conv || p->bufs.data[mm->a_buf].constant || p->bufs.data[mm->b_buf].constant || mm->k < 256 ||
        mm->m <= 240)
        return false;
    double b_bytes = (double)((mm->n + 31) / 32 * 32) * (double)mm->k * 4.0;
    return distinct_batches(mm, mm->b_batch_stride) != 1 || b_bytes > GATHER_MAX_BYTES;
}

/* The fewest rows a product with a prepacked B is split by (8 grains: 4 per
 * thread on 2 cores). */
enum { SPLIT_ROWS_MIN = 8 * ROW_GRAIN };

/* Whether product g, with more columns than rows, still goes by rows: when B
 * is a prepacked constant no chunk packs B, while every column chunk packs
 * its whole A (an activation) again unless A is gathered once per thread
 * (one distinct matrix, small enough); with enough rows for the threads.
 * MiniLM's 1024 x 384 x 1536 feed-forward product at batch 8 (eight images
 * of A, packed by each of about 15 column chunks) ran 15 % faster by rows. */
static bool rows_for_prepacked_b(const KProgram *p, const KGemm *g) {
    const KMatmul *mm = &g->mm;
    if (g->conv || !p->bufs.data[mm->b_buf].constant || p->bufs.data[mm->a_buf].constant) return false;
    double a_bytes = (double)((mm->m + ROW_GRAIN - 1) / ROW_GRAIN * ROW_GRAIN) * (double)mm->k * 4.0;
    bool a_once = distinct_batches(mm, mm->a_batch_stride) == 1 && a_bytes <= GATHER_MAX_BYTES;
    return !a_once && mm->batch * mm->m >= SPLIT_ROWS_MIN;
}

static bool b_constant(const Cg *cg, const KGemm *g) {
    return !g->conv && cg->p->bufs.data[g->mm.b_buf].constant;
}

/* Whether the micro-kernel reads product g's B where it lies, its rows
 * b_sk apart, instead of a packed copy: a row-major f32 B that is not a
 * constant nor a convolution's window (a 1x1 stride-1 convolution's input,
 * an activation), in the unswapped form (B's rows are the vectors).  Its
 * NR columns of a row are contiguous already; packing them copied all of
 * B once per chunk (or per thread) to read it once or a few times:
 * MobileNetV2's pointwise layers, with 16 to 320 output channels, spent
 * 4-19 % of their time in kiln.mm.pack (1 thread, perf).  Not when A is
 * not a constant either, K is a whole block or more and the rows more than
 * one row block (MC): a product of two activations whose B panels, KC rows
 * b_sk apart, are read again by every row block: on an Emerald Rapids
 * core (48 KiB L1d, 2 MiB L2) such products ran 1.2-1.6x faster with B
 * packed, where one row block ran a few % slower packed and K = 24 and
 * 128 alike (docs/performance.md, "Session 9: large products on Intel").
 * With a constant A (a convolution's weights) in place stays unless B's
 * rows are not a whole number of cache lines (b_rows_split_lines), K is
 * a whole block or more and the rows more than a row block: a 14x14
 * plane's row is 784 bytes, so 3 of 4 rows start inside a line and a
 * 32-column panel of KC rows spans ~44 KB of lines (32 KB packed), more
 * than the L1 keeps beside the A panels; its loads are split across lines.
 * ResNet-50's 1x1 layers at 14x14 (256 to 1024 rows) ran 1.15x (batch 1)
 * and 1.18x (batch 8) faster packed on one thread (56x56 and 28x28 planes
 * are whole lines: 28x28 with K = 512 ran 1.12x faster in place),
 * MobileNetV2's at 14x14 (64 and 96 rows, K = 384 and 576) 0.93-0.97x:
 * one row block reads each panel too few times to pay for the copy
 * (docs/performance.md, "Session 11: ResNet-50 layers against MLAS"). */
static bool b_in_place(const Cg *cg, const KGemm *g) {
    const KMatmul *mm = &g->mm;
    const MmShape sh = mm_shape(cg, g);
    if (mm->k >= sh.kc && mm->m > sh.mc && (!cg->p->bufs.data[mm->a_buf].constant || b_rows_split_lines(mm)))
        return false;
    return !g->conv && !cg->p->bufs.data[mm->b_buf].constant &&
           cg->p->bufs.data[mm->b_buf].dtype == KILN_F32 && mm->b_sn == 1 && !gemm_swapped(cg->p, g);
}

/* The operand (0: A, 1: B) gathered once per thread, or -1. */
static int gathered_operand(const Cg *cg, const KGemm *g) {
    const KMatmul *mm = &g->mm;
    int which = llvm_split_by_columns(cg->p, g) ? 0 : 1;
    bool constant = which ? b_constant(cg, g) : cg->p->bufs.data[mm->a_buf].constant;
    if (cg->aot || constant || (which && (b_in_place(cg, g) || conv_taps(cg->p, g))) ||
        distinct_batches(mm, which ? mm->b_batch_stride : mm->a_batch_stride) != 1)
        return -1;
    MmShape sh = mm_shape(cg, g);
    int64_t lines = which ? mm->n : mm->m, w = which ? sh.nr : sh.mr;
    return (double)((lines + w - 1) / w * w) * (double)mm->k * 4.0 <= GATHER_MAX_BYTES ? which : -1;
}

static Prepack gemm_prepack(const Cg *cg, const KGemm *g) {
    Prepack pp = {0};
    if (cg->aot) return pp; /* an AOT run function has no state to keep them in */
    const KMatmul *mm = &g->mm;
    MmShape sh = mm_shape(cg, g);
    int gathered = gathered_operand(cg, g);
    pp.a = cg->p->bufs.data[mm->a_buf].constant || gathered == 0;
    pp.b = b_constant(cg, g) || gathered == 1;
    pp.ap = (mm->m + sh.mr - 1) / sh.mr * sh.mr * mm->k;
    pp.bp = (mm->n + sh.nr - 1) / sh.nr * sh.nr * mm->k;
    return pp;
}
static LLVMValueRef packed_batch(Cg *cg, const KMatmul *mm, const int64_t *strides, LLVMValueRef bi) {
    LLVMValueRef idx = ci64(cg, 0), rest = bi;
    int64_t scale = 1;
    for (int d = mm->nbatch - 1; d >= 0; d--) {
        LLVMValueRef dim = ci64(cg, mm->batch_dims[d]);
        if (strides[d]) {
            idx = iadd(cg, idx, imul(cg, LLVMBuildURem(cg->b, rest, dim, ""), ci64(cg, scale)));
            scale *= mm->batch_dims[d];
        }
        rest = LLVMBuildUDiv(cg->b, rest, dim, "");
    }
    return idx;
}

/* Bytes of kernel k's prepacked operand `which` (0: A, 1: B); 0 when it has
 * none.  An operand gathered once per run is not a prepacked constant: it
 * has gather_size instead. */
static int64_t prepack_bytes(const Cg *cg, const Kernel *k, int which) {
    KGemm g;
    if (!gemm_tiled(cg, k, &g)) return 0;
    if (conv_wino(cg, &g)) { /* U: [p][panel][c][MR] */
        WinoGeo w = wino_geo(cg, &g);
        return which ? 0 : WINO_P * w.np * w.mr * g.conv->c * 4;
    }
    Prepack pp = gemm_prepack(cg, &g);
    if (which == 0)
        return pp.a && cg->p->bufs.data[g.mm.a_buf].constant
                   ? distinct_batches(&g.mm, g.mm.a_batch_stride) * pp.ap * 4
                   : 0;
    return pp.b && b_constant(cg, &g) ? distinct_batches(&g.mm, g.mm.b_batch_stride) * pp.bp * 4 : 0;
}

/* Whether flattened batch bi is the first of those sharing its packed
 * block (every dim with a zero stride at 0). */
static LLVMValueRef first_of_packed_batch(Cg *cg, const KMatmul *mm, const int64_t *strides,
                                          LLVMValueRef bi) {
    LLVMValueRef first = LLVMConstInt(cg->t_i1, 1, 0), rest = bi;
    for (int d = mm->nbatch - 1; d >= 0; d--) {
        LLVMValueRef dim = ci64(cg, mm->batch_dims[d]);
        if (!strides[d])
            first = LLVMBuildAnd(
                cg->b, first,
                LLVMBuildICmp(cg->b, LLVMIntEQ, LLVMBuildURem(cg->b, rest, dim, ""), ci64(cg, 0), ""), "");
        rest = LLVMBuildUDiv(cg->b, rest, dim, "");
    }
    return first;
}

/* Starts void NAME<suffix>(params...) of kernel ki, whose last parameter is
 * the buffer table: the builder at its entry, *src buffer buf (operand
 * `which`, 0: A, 1: B) and *dst the kernel's prepack slot for that operand,
 * where the packed or gathered panels go. */
static LLVMValueRef begin_operand_fn(Cg *cg, const Kernel *k, int ki, int buf, int which, const char *suffix,
                                     LLVMTypeRef *params, int nparams, Kc *kc, LLVMValueRef *src,
                                     LLVMValueRef *dst) {
    char *name = name2(k->name, suffix);
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, LLVMFunctionType(cg->t_void, params, nparams, 0));
    free(name);
    add_fn_attr(cg, fn, cg->k_nounwind);
    *kc = (Kc){.cg = cg, .fn = fn};
    LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry"));
    LLVMValueRef bufs = LLVMGetParam(fn, (unsigned)nparams - 1);
    int slot = llvm_prepack_slot(cg->p, ki, which);
    *src = LLVMBuildLoad2(cg->b, cg->t_ptr, elem_ptr(cg, cg->t_ptr, bufs, ci64(cg, buf)), "src");
    *dst = LLVMBuildLoad2(cg->b, cg->t_ptr, elem_ptr(cg, cg->t_ptr, bufs, ci64(cg, slot)), "dst");
    return fn;
}

/* void NAME.prepack_a(ptr bufs) / NAME.prepack_b: packs the constant operand
 * from its buffer into bufs[slot], in the layout above. */
static LLVMValueRef emit_wino_prepack_fn(Cg *cg, const Kernel *k, int ki, const KGemm *g);
static LLVMValueRef emit_prepack_fn(Cg *cg, const Kernel *k, int ki, const KGemm *g, int which) {
    if (conv_wino(cg, g)) return emit_wino_prepack_fn(cg, k, ki, g);
    const KMatmul *mm = &g->mm;
    MmShape sh = mm_shape(cg, g);
    Prepack pp = gemm_prepack(cg, g);
    int buf = which ? mm->b_buf : mm->a_buf, W = which ? sh.nr : sh.mr;
    const int64_t *strides = which ? mm->b_batch_stride : mm->a_batch_stride;
    int64_t lines = which ? mm->n : mm->m, per = which ? pp.bp : pp.ap, lines_p = per / mm->k;
    int64_t s_line = which ? mm->b_sn : mm->a_sm, s_k = which ? mm->b_sk : mm->a_sk, off = which ? mm->b_off : mm->a_off;
    LLVMValueRef pack = helper_pack(cg, cg->p->bufs.data[buf].dtype, W);
    Kc kc;
    LLVMValueRef src, dst;
    LLVMValueRef fn = begin_operand_fn(cg, k, ki, buf, which, which ? ".prepack_b" : ".prepack_a", &cg->t_ptr,
                                       1, &kc, &src, &dst);
    /* every batch index; those whose packed index repeats an earlier one are
     * skipped by visiting only the first batch of each (broadcast dims at 0) */
    TLoop lb, lpc;
    LLVMValueRef bi = tloop_begin(&kc, &lb, ci64(cg, 0), ci64(cg, mm->batch), 1, "batch");
    IfBlock ib;
    if_begin(&kc, &ib, first_of_packed_batch(cg, mm, strides, bi));
    LLVMValueRef sbase = iadd(cg, ci64(cg, off), batch_offset(cg, mm, strides, bi));
    LLVMValueRef dbase = imul(cg, packed_batch(cg, mm, strides, bi), ci64(cg, per));
    LLVMValueRef pc = tloop_begin(&kc, &lpc, ci64(cg, 0), ci64(cg, mm->k), sh.kc, "pc");
    LLVMValueRef kcv = imin(cg, ci64(cg, sh.kc), LLVMBuildSub(cg->b, ci64(cg, mm->k), pc, ""));
    LLVMValueRef args[7] = {src, iadd(cg, sbase, imul(cg, pc, ci64(cg, s_k))), ci64(cg, s_line), ci64(cg, s_k),
                            ci64(cg, lines), kcv,
                            elem_ptr(cg, cg->t_f32, dst, iadd(cg, dbase, imul(cg, pc, ci64(cg, lines_p))))};
    call_fn(cg, pack, args, 7);
    tloop_end(&kc, &lpc);
    if_end(&kc, &ib);
    tloop_end(&kc, &lb);
    LLVMBuildRetVoid(cg->b);
    return fn;
}

/* An operand gathered once per run (gathered_operand): sizes[0] the bytes of
 * its block, laid out as a prepacked operand; sizes[1] the tasks
 * NAME.gather splits the gathering into, one per (batch, K block, panel of
 * MR rows or NR columns); sizes[2] the operand (0: A, 1: B).  False (sizes
 * zero) when kernel k has none. */
static bool gather_size(const Cg *cg, const Kernel *k, int64_t sizes[3]) {
    KGemm g;
    sizes[0] = sizes[1] = sizes[2] = 0;
    int which = gemm_tiled(cg, k, &g) ? gathered_operand(cg, &g) : -1;
    if (which < 0) return false;
    Prepack pp = gemm_prepack(cg, &g);
    MmShape sh = mm_shape(cg, &g);
    int64_t lines = which ? g.mm.n : g.mm.m, w = which ? sh.nr : sh.mr;
    sizes[0] = (which ? pp.bp : pp.ap) * 4;
    sizes[1] = g.mm.batch * ((g.mm.k + sh.kc - 1) / sh.kc) * ((lines + w - 1) / w);
    sizes[2] = which;
    return true;
}

/* void NAME.gather(i64 t0, i64 t1, ptr bufs): tasks [t0, t1) of
 * gather_size, each one panel: K rows [pc, pc + kc) of A's rows [i0, i0 +
 * MR) or of B's columns [j0, j0 + NR) (a convolution's input under the
 * window by NAME.im2col, else by the packing routine), where the loop nest
 * reads a prepacked panel. */
static void emit_gather_fn(Cg *cg, const Kernel *k, int ki, const KGemm *g) {
    const KMatmul *mm = &g->mm;
    MmShape sh = mm_shape(cg, g);
    Prepack pp = gemm_prepack(cg, g);
    int64_t sizes[3];
    gather_size(cg, k, sizes);
    const int which = (int)sizes[2], W = which ? sh.nr : sh.mr, buf = which ? mm->b_buf : mm->a_buf;
    const int64_t lines = which ? mm->n : mm->m, per = which ? pp.bp : pp.ap;
    const int64_t s_line = which ? mm->b_sn : mm->a_sm, s_k = which ? mm->b_sk : mm->a_sk;
    const int64_t *strides = which ? mm->b_batch_stride : mm->a_batch_stride;
    const int64_t nkb = (mm->k + sh.kc - 1) / sh.kc, npan = (lines + W - 1) / W;
    KilnDType dt = cg->p->bufs.data[buf].dtype;
    bool im2col = which == 1 && g->conv;
    LLVMValueRef pack = im2col ? kernel_im2col(cg, k, dt, sh.nr, false) : helper_pack(cg, dt, W);
    LLVMTypeRef ps[3] = {cg->t_i64, cg->t_i64, cg->t_ptr};
    Kc kc;
    LLVMValueRef src, dst;
    LLVMValueRef fn = begin_operand_fn(cg, k, ki, buf, which, ".gather", ps, 3, &kc, &src, &dst);
    LLVMValueRef window = im2col ? conv_block(cg, g->conv) : NULL;
    TLoop lt;
    LLVMValueRef t = tloop_begin(&kc, &lt, LLVMGetParam(fn, 0), LLVMGetParam(fn, 1), 1, "task");
    LLVMValueRef bi = LLVMBuildUDiv(cg->b, t, ci64(cg, nkb * npan), "bi");
    LLVMValueRef r = LLVMBuildURem(cg->b, t, ci64(cg, nkb * npan), "");
    LLVMValueRef pc = imul(cg, LLVMBuildUDiv(cg->b, r, ci64(cg, npan), ""), ci64(cg, sh.kc));
    LLVMValueRef l0 = imul(cg, LLVMBuildURem(cg->b, r, ci64(cg, npan), ""), ci64(cg, W));
    IfBlock ib;
    if_begin(&kc, &ib, first_of_packed_batch(cg, mm, strides, bi));
    LLVMValueRef kcv = imin(cg, ci64(cg, sh.kc), LLVMBuildSub(cg->b, ci64(cg, mm->k), pc, ""));
    LLVMValueRef nlv = imin(cg, ci64(cg, W), LLVMBuildSub(cg->b, ci64(cg, lines), l0, ""));
    LLVMValueRef base = iadd(cg, ci64(cg, which ? mm->b_off : mm->a_off), batch_offset(cg, mm, strides, bi));
    LLVMValueRef at = iadd(cg, imul(cg, packed_batch(cg, mm, strides, bi), ci64(cg, per)),
                           iadd(cg, imul(cg, pc, ci64(cg, per / mm->k)), imul(cg, l0, kcv)));
    LLVMValueRef to = elem_ptr(cg, cg->t_f32, dst, at);
    if (im2col) {
        LLVMValueRef args[8] = {src, base, pc, kcv, l0, nlv, to, window};
        call_fn(cg, pack, args, 8);
    } else {
        LLVMValueRef from =
            iadd(cg, base, iadd(cg, imul(cg, pc, ci64(cg, s_k)), imul(cg, l0, ci64(cg, s_line))));
        LLVMValueRef args[7] = {src, from, ci64(cg, s_line), ci64(cg, s_k), nlv, kcv, to};
        call_fn(cg, pack, args, 7);
    }
    if_end(&kc, &ib);
    tloop_end(&kc, &lt);
    LLVMBuildRetVoid(cg->b);
}

/* Bytes of the scratch's B area: the packed B block (block_bytes), or a
 * convolution's padded input (conv_taps), whichever is larger. */
static int64_t b_area(const Cg *cg, const KGemm *g, int64_t block_bytes) {
    if (!conv_taps(cg->p, g)) return block_bytes;
    int64_t hp, wp;
    kconv_padded_plane(g->conv, &hp, &wp);
    int64_t bytes = g->conv->c * hp * wp * 4;
    return bytes > block_bytes ? bytes : block_bytes;
}

/* Scratch bytes a tiled matmul kernel needs (0 for any other kernel):
 * packed A, packed B and (K > KC) the partial sums, each 64-byte aligned. */
static int64_t matmul_scratch(const Cg *cg, const Kernel *k) {
    KGemm g;
    if (!gemm_tiled(cg, k, &g)) return 0;
    if (conv_wino(cg, &g)) { /* the padded copy, V, M */
        WinoGeo w = wino_geo(cg, &g);
        return (w.plane_f + w.v_f + w.m_f) * 4 + 3 * 64;
    }
    MmShape sh = mm_shape(cg, &g);
    int64_t N = g.mm.n, NC = N < sh.nc ? N : sh.nc, NCp = (NC + sh.nr - 1) / sh.nr * sh.nr;
    int64_t rows = row_group(cg, &sh, &g);
    rows = (rows + sh.mr - 1) / sh.mr * sh.mr;
    int64_t bytes = sh.mc * sh.kc * 4 + 64 + b_area(cg, &g, sh.kc * NCp * 4) + 64;
    if (g.mm.k > sh.kc) bytes += (rows + sh.mr) * NCp * 4 + 64;
    return bytes;
}

/* A stack buffer of `floats` f32, 64-byte aligned, allocated once at the
 * function's entry. */
static LLVMValueRef entry_alloca(Kc *kc, int64_t floats, const char *name) {
    Cg *cg = kc->cg;
    /* in the function's entry block: this may run inside the nest's loops */
    LLVMBasicBlockRef here = LLVMGetInsertBlock(cg->b), entry = LLVMGetEntryBasicBlock(kc->fn);
    LLVMValueRef first = LLVMGetFirstInstruction(entry);
    if (first)
        LLVMPositionBuilderBefore(cg->b, first);
    else
        LLVMPositionBuilderAtEnd(cg->b, entry);
    LLVMValueRef T = LLVMBuildArrayAlloca(cg->b, cg->t_f32, ci64(cg, floats), name);
    LLVMSetAlignment(T, 64);
    LLVMPositionBuilderAtEnd(cg->b, here);
    return T;
}

/* A swapped tile (C^T: its NR pixels' rows of MR channels, ldc apart)
 * transposed: channel i's VL floats (pixels NR.. undefined) to dst[i *
 * dst_ld], VL x VL blocks in registers (transpose_square). */
static void transpose_tile_to(Kc *kc, LLVMValueRef C, LLVMValueRef ldc, int NR, LLVMValueRef dst,
                              LLVMValueRef dst_ld, unsigned align) {
    Cg *cg = kc->cg;
    const int VL = cg->vec_floats, MR = ukernel_shape(cg).nr;
    LLVMTypeRef vt = LLVMVectorType(cg->t_f32, (unsigned)VL);
    LLVMValueRef rows[16];
    for (int h = 0; h < MR / VL; h++) {
        for (int j = 0; j < VL; j++)
            rows[j] = j < NR ? vec_load(cg, vt, C, iadd(cg, imul(cg, ci64(cg, j), ldc), ci64(cg, h * VL)), 4)
                             : LLVMGetUndef(vt);
        transpose_square(cg, rows, VL);
        for (int i = 0; i < VL; i++)
            vec_store(cg, rows[i], dst, imul(cg, ci64(cg, h * VL + i), dst_ld), align);
    }
}

/* transpose_tile_to for a convolution read in place (conv_taps): a shared
 * helper per tile width NR (conv_taps_tile), void(ptr C, i64 ldc, ptr dst,
 * i64 dst_ld), called at each tile's last K block.  Inline, its 64
 * two-source shuffles a tile width cost each taps unit ~4 ms of LLVM CPU
 * (LLVM's shuffle lowering; ResNet-50 compiles 8 such units cold: its
 * LLVM CPU 246 -> 218 ms), against one call per tile at run time (3x3
 * layers of ResNet-50 b8 1.006x, 1 thread).  Measured on Zen 5 only, so
 * there only (Cg.tile_t_calls, by the CPU's name: part of the target
 * identity); elsewhere the transposes stay inline (docs/performance.md,
 * "Session 16: ResNet-50's cold compile on Zen 5"). */
static LLVMTypeRef tile_t_type(Cg *cg) {
    LLVMTypeRef ps[4] = {cg->t_ptr, cg->t_i64, cg->t_ptr, cg->t_i64};
    return LLVMFunctionType(cg->t_void, ps, 4, 0);
}

static LLVMValueRef helper_tile_t(Cg *cg, int NR) {
    LLVMBasicBlockRef saved = LLVMGetInsertBlock(cg->b);
    char base[32];
    snprintf(base, sizeof base, "kiln.mm.tile_t%d", NR);
    LLVMValueRef fn;
    bool fresh, define = shared_helper(cg, base, tile_t_type(cg), &fn, &fresh);
    if (fresh)
        for (unsigned a = 1; a <= 3; a += 2)
            LLVMAddAttributeAtIndex(fn, a, LLVMCreateEnumAttribute(cg->ctx, cg->k_noalias, 0));
    if (!define) return fn;
    Kc kcs = {.cg = cg, .fn = fn};
    transpose_tile_to(&kcs, LLVMGetParam(fn, 0), LLVMGetParam(fn, 1), NR, LLVMGetParam(fn, 2),
                      LLVMGetParam(fn, 3), 4);
    LLVMBuildRetVoid(cg->b);
    if (saved) LLVMPositionBuilderAtEnd(cg->b, saved);
    return fn;
}

/* An index over o = q*L + j (j in [0, L)) as H(q) + c*j with H(q) a
 * multiple of d (d == 0: H is 0); ok false: not of that form (run_form). */
typedef struct {
    bool ok;
    int64_t c, d;
} RunForm;

/* Index instruction i of kernel k in the form RunForm over runs of L
 * values of o: o itself is H = q*L (d = L) plus j; sums add; a product by
 * a constant scales; o / m and o % m keep the form where adding c*j to a
 * multiple of g = gcd(d, m) cannot cross a multiple of m (c*(L-1) < g):
 * (H + c*j) / m is H / m, (H + c*j) % m is H % m (a multiple of g) + c*j,
 * or where m divides c and d.  Anything else (loads, compares, take's
 * positions, inner indices) is not a run. */
static RunForm run_form(const Kernel *k, int i, int64_t L, int depth) {
    RunForm no = {false, 0, 0};
    int64_t t;
    if (i < 0 || depth > 64) return no;
    const KInst *in = &k->insts.data[i];
    if (in->stage != -1) return no;
    switch (in->kind) {
    case KI_OUTER: return (RunForm){true, 1, L};
    case KI_CONST:
        if (!is_intlike(in->dtype)) return no;
        return (RunForm){true, 0, kinst_scalar(in).i};
    case KI_IADD: {
        RunForm a = run_form(k, in->a, L, depth + 1), b = run_form(k, in->b, L, depth + 1);
        if (!a.ok || !b.ok) return no;
        if (__builtin_add_overflow(a.c, b.c, &t)) return no;
        return (RunForm){true, t, gcd_i64(a.d, b.d)};
    }
    case KI_IMUL: {
        RunForm a = run_form(k, in->a, L, depth + 1), b = run_form(k, in->b, L, depth + 1);
        if (!a.ok || !b.ok) return no;
        bool b_const = k->insts.data[in->b].kind == KI_CONST; /* the factor, b after the swap */
        if (a.c == 0 && k->insts.data[in->a].kind == KI_CONST) {
            RunForm x = a;
            a = b, b = x, b_const = true;
        }
        int64_t c, d;
        if (b.c != 0 || !b_const || __builtin_mul_overflow(a.c, b.d, &c) ||
            __builtin_mul_overflow(a.d, b.d, &d))
            return no;
        return (RunForm){true, c, d};
    }
    case KI_IDIV:
    case KI_IMOD: {
        RunForm a = run_form(k, in->a, L, depth + 1);
        const KInst *dv = in->b >= 0 ? &k->insts.data[in->b] : NULL;
        if (!a.ok || !dv || dv->kind != KI_CONST || !is_intlike(dv->dtype) || a.c < 0) return no;
        int64_t m = kinst_scalar(dv).i, g = gcd_i64(a.d, m);
        if (m <= 0 || __builtin_mul_overflow(a.c, L - 1, &t)) return no;
        if (t < g) {
            if (in->kind == KI_IDIV) return (RunForm){true, 0, a.d % m == 0 ? a.d / m : 1};
            return (RunForm){true, a.c, g};
        }
        if (a.c % m == 0 && a.d % m == 0)
            return in->kind == KI_IDIV ? (RunForm){true, a.c / m, a.d / m} : (RunForm){true, 0, 0};
        return no;
    }
    default: return no;
    }
}

/* Index instruction i and the instructions it reads (run_form's kinds:
 * constants, o and index arithmetic), emitted in kc->val where the builder
 * is, for kc->o. */
static void emit_index_tree(Kc *kc, int i) {
    const KInst *in = &kc->k->insts.data[i];
    if (in->kind != KI_OUTER && in->kind != KI_CONST) {
        emit_index_tree(kc, in->a);
        emit_index_tree(kc, in->b);
    }
    kc->val[i] = emit_inst(kc, i);
}

/* Whether kernel k's output is stored in runs of L contiguous elements
 * through index arithmetic: one store, not at o itself, its index over o
 * in [q*L, q*L + L) idx(q*L) + j.  A product's
 * epilogue stored element by element through its index (the vectoriser
 * made that a scatter: MiniLM's Q/K/V products, whose heads layout
 * transpose(reshape(x @ w + b, [-1, T, H, D]), [0, 2, 1, 3]) keeps runs of
 * D) then stores a whole tile row of L = NR columns as vectors. */
static bool store_runs(const Kernel *k, int64_t L) {
    const KStage *st = &k->stages.data[k->stages.len - 1];
    if (L <= 1 || st->kind != KS_MAP || st->extent != 1 || st->stores.len != 1) return false;
    const int index = st->stores.data[0].index;
    if (k->insts.data[index].kind == KI_OUTER) return false; /* out[o]: contiguous as it is */
    RunForm f = run_form(k, index, L, 0);
    return f.ok && f.c == 1;
}

/* The element of an image kept padded (KBuf.pad_hw: planes of pad[0] x
 * pad[1], the interior from row pad[2], column pad[3] on) that holds pixel
 * (oh, x) of plane `plane`. */
static LLVMValueRef padded_place(Cg *cg, const int64_t pad[4], LLVMValueRef plane, LLVMValueRef oh,
                                 LLVMValueRef x) {
    return iadd(
        cg, imul(cg, plane, ci64(cg, pad[0] * pad[1])),
        iadd(cg, imul(cg, iadd(cg, oh, ci64(cg, pad[2])), ci64(cg, pad[1])), iadd(cg, x, ci64(cg, pad[3]))));
}

/* dst[d .. d + n) = 0 (f32): a few scalar stores, or masked vectors. */
static void zero_span(Kc *kc, LLVMValueRef dst, LLVMValueRef d, int64_t n) {
    Cg *cg = kc->cg;
    if (n > 4) {
        strip_copy(kc, KILN_F32, dst, d, NULL, NULL, ci64(cg, n), 1, true);
        return;
    }
    for (int64_t e = 0; e < n; e++)
        LLVMSetAlignment(LLVMBuildStore(cg->b, LLVMConstReal(cg->t_f32, 0.0),
                                        elem_ptr(cg, cg->t_f32, dst, iadd(cg, d, ci64(cg, e)))),
                         4);
}

/* The zeros around one output row of an image kept padded (KBuf.pad_hw:
 * hp x wp planes, the interior from row ph, column pw on): the row's first
 * element at dst[start], oh its row (rows of NR, planes of N outputs).
 * With the row's last pixel (last), the zeros after it up to the next
 * row's first pixel (its right border and the next row's left one: two
 * floats for a 3x3 window), and on the plane's last row the rows below;
 * with the first pixel of the plane's first row (first), the rows above
 * and that row's left border.  The producer writes them in every run (a
 * few scalar stores a row), so that the image may share the arena's bytes
 * with any other temporary (pad_conv_inputs, passes/fuse.c). */
static void zero_row_borders(Kc *kc, const int64_t pad[4], LLVMValueRef dst, LLVMValueRef start,
                             LLVMValueRef oh, int64_t NR, int64_t N, LLVMValueRef first, LLVMValueRef last) {
    Cg *cg = kc->cg;
    const int64_t hp = pad[0], wp = pad[1], ph = pad[2], pw = pad[3], OH = N / NR;
    const int64_t below = hp - ph - OH, gap = wp - NR;
    IfBlock top, at_last, bottom;
    if (ph > 0 || pw > 0) {
        if_begin(kc, &top,
                 LLVMBuildAnd(cg->b, first, LLVMBuildICmp(cg->b, LLVMIntEQ, oh, ci64(cg, 0), ""), ""));
        zero_span(kc, dst, LLVMBuildSub(cg->b, start, ci64(cg, ph * wp + pw), ""), ph * wp + pw);
        if_end(kc, &top);
    }
    if (gap > 0 || below > 0) {
        if_begin(kc, &at_last, last);
        if (below == 0 && pw > 0) { /* the plane's last row: its right border only (the plane ends there) */
            IfBlock end;
            LLVMValueRef last_row = LLVMBuildICmp(cg->b, LLVMIntEQ, oh, ci64(cg, OH - 1), "");
            if_begin(kc, &end, last_row);
            zero_span(kc, dst, iadd(cg, start, ci64(cg, NR)), gap - pw);
            if_end(kc, &end);
            last = LLVMBuildNot(cg->b, last_row, "");
            if_begin(kc, &end, last);
            zero_span(kc, dst, iadd(cg, start, ci64(cg, NR)), gap);
            if_end(kc, &end);
        } else if (gap > 0) {
            zero_span(kc, dst, iadd(cg, start, ci64(cg, NR)), gap);
        }
        if (below > 0) {
            if_begin(kc, &bottom, LLVMBuildICmp(cg->b, LLVMIntEQ, oh, ci64(cg, OH - 1), ""));
            zero_span(kc, dst, iadd(cg, start, ci64(cg, NR + gap)), below * wp - pw);
            if_end(kc, &bottom);
        }
        if_end(kc, &at_last);
    }
}

/* Whether a row epilogue's whole rows of NR pixels (more than a vector)
 * end in a masked vector rather than scalar iterations: where more than
 * half a vector is left.  Rows of 28 (one vector and 12 scalar iterations
 * a row and channel) ran the 3x3 layers at 28x28 1.016-1.029x (quiet, 1
 * thread, batch 1 and 8); rows of 56 (3 vectors and 8) measured as noise
 * in session 13 and keep the scalar remainder, as do rows shorter than a
 * vector (14: no gain) (docs/performance.md, "Session 14: the 3x3 layers'
 * padded inputs, continued"). */
static bool row_masked_tail(int64_t NR, int vl) { return NR > vl && NR % vl > vl / 2; }

/* The epilogue of one register tile: C (row i, column j of the tile's real
 * mrv x nrv part at C[i * ldc + j], or C[j * ldc + i] when swapped) holds the
 * product's rows row0.. and columns col..; the kernel's stage 1 runs on each
 * element o = row * N + column in [ob, oe) with its column in [c0, c1).
 * Emitted where kc's builder is, in kc->fn. */
static void emit_tile_epilogue(Kc *kc, LLVMValueRef row0, LLVMValueRef col, LLVMValueRef mrv,
                               LLVMValueRef nrv, LLVMValueRef c0, LLVMValueRef c1, LLVMValueRef ob,
                               LLVMValueRef oe, LLVMValueRef cptr, LLVMValueRef ldc, int64_t N, int NR,
                               bool swap) {
    Cg *cg = kc->cg;
    const Kernel *k = kc->k;
    LLVMValueRef fn = kc->fn, cN = kc->sizes ? slot_load(cg, kc->sizes, MMB_N, cg->t_i64) : ci64(cg, N);
    /* a swapped tile (pixel j's channels at C[j * ldc]) is first transposed
     * in registers (transpose_tile_to) into a block of its channels' pixels,
     * VL apart, so that each channel's pixels are one masked vector: read
     * across the tile, the epilogue was a scalar loop, 20 % of MobileNetV2's
     * 160->960 layers at 7x7 (K = 160) */
    const bool transposed = swap;
    if (transposed) {
        const int VL = cg->vec_floats;
        LLVMValueRef t = entry_alloca(kc, (int64_t)ukernel_shape(cg).nr * VL, "tile_t");
        /* its rows VL floats apart: 64-byte aligned on AVX-512 only */
        transpose_tile_to(kc, cptr, ldc, NR, t, ci64(cg, VL), (unsigned)VL * 4);
        cptr = t, ldc = ci64(cg, VL), swap = false;
    }
    TLoop li, lj;
    LLVMValueRef clo = imax(cg, ci64(cg, 0), LLVMBuildSub(cg->b, c0, col, ""));
    LLVMValueRef chi = imin(cg, nrv, LLVMBuildSub(cg->b, c1, col, ""));
    /* A sized plane-rows epilogue (NR 0: the rows' width a value) called
     * for a block of whole rows, every one inside [c0, c1) and [ob, oe)
     * (the usual case: a 7x7 plane's MC channels), runs each row's nrv
     * pixels with no bounds of its own (Cg.whole_rows_fast, AMD Zen 5):
     * each row's jlo and jhi (clamps against the chunk's columns and its
     * range of o, a dozen selects kept on the stack) were about half of
     * the epilogue's time in MobileNetV2's 1x1 160->960 + clamp at 7x7
     * (the epilogue 8.5 % of the layer, perf, 1 thread).  The same
     * values, stored the same way. */
    LLVMBasicBlockRef rows_done = NULL;
    if (cg->whole_rows_fast && kc->pixel_rows && NR == 0 && !transposed) {
        LLVMValueRef first_o = iadd(cg, imul(cg, row0, cN), col);
        LLVMValueRef last_end = iadd(
            cg, iadd(cg, imul(cg, iadd(cg, row0, LLVMBuildSub(cg->b, mrv, ci64(cg, 1), "")), cN), col), nrv);
        LLVMValueRef all = LLVMBuildAnd(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, clo, ci64(cg, 0), ""),
                                        LLVMBuildICmp(cg->b, LLVMIntEQ, chi, nrv, ""), "");
        all = LLVMBuildAnd(cg->b, all, LLVMBuildICmp(cg->b, LLVMIntSLE, ob, first_o, ""), "");
        all = LLVMBuildAnd(cg->b, all, LLVMBuildICmp(cg->b, LLVMIntSGE, oe, last_end, ""), "whole_rows");
        LLVMBasicBlockRef fast = LLVMAppendBasicBlockInContext(cg->ctx, fn, "whole_rows");
        LLVMBasicBlockRef slow = LLVMAppendBasicBlockInContext(cg->ctx, fn, "rows_bounded");
        rows_done = LLVMAppendBasicBlockInContext(cg->ctx, fn, "rows_done");
        LLVMBuildCondBr(cg->b, all, fast, slow);
        LLVMPositionBuilderAtEnd(cg->b, fast);
        TLoop lf, lfj;
        LLVMValueRef fi = tloop_begin(kc, &lf, ci64(cg, 0), mrv, 1, "wr");
        LLVMValueRef fbase = iadd(cg, imul(cg, iadd(cg, row0, fi), cN), col);
        kc->gemm_n = N;
        kc->gemm_row = as_idx(kc, iadd(cg, row0, fi));
        LLVMValueRef jj = tloop_begin(kc, &lfj, as_idx(kc, ci64(cg, 0)), as_idx(kc, nrv), 1, "wj");
        kc->run_j = jj;
        kc->o = iadd(cg, as_idx(kc, fbase), jj);
        kc->gemm_col = iadd(cg, as_idx(kc, col), jj);
        kc->acc[0] = load_f32(cg, cptr, iadd(cg, imul(cg, fi, ldc), LLVMBuildSExt(cg->b, jj, cg->t_i64, "")));
        emit_scope(kc, -1);
        emit_stage(kc, 1);
        kc->run_base = kc->run_j = NULL;
        loop_metadata_tail(cg, tloop_end(kc, &lfj), cg->vec_floats, 1, true);
        tloop_end(kc, &lf);
        LLVMBuildBr(cg->b, rows_done);
        LLVMPositionBuilderAtEnd(cg->b, slow);
    }
    LLVMValueRef ii = tloop_begin(kc, &li, ci64(cg, 0), mrv, 1, "ei");
    LLVMValueRef obase = iadd(cg, imul(cg, iadd(cg, row0, ii), cN), col);
    LLVMValueRef jlo = imax(cg, clo, LLVMBuildSub(cg->b, ob, obase, ""));
    LLVMValueRef jhi = imin(cg, chi, LLVMBuildSub(cg->b, oe, obase, ""));
    LLVMValueRef crow = swap ? ii : imul(cg, ii, ldc), cstep = swap ? ldc : ci64(cg, 1);
    /* a whole row of the tile: NR elements, a constant trip count the
     * vectoriser turns into NR/VL vector steps; else (edges, ragged
     * ranges) a scalar loop: column chunks are whole tiles (32 columns,
     * llvm_column_grain), and vectorising this loop too cost 45 % more
     * LLVM time (ResNet-50: 851 -> 1205 ms CPU) for no measurable gain */
    LLVMValueRef whole = LLVMBuildAnd(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, jlo, ci64(cg, 0), ""),
                                      LLVMBuildICmp(cg->b, LLVMIntEQ, jhi, ci64(cg, NR), ""), "");
    LLVMBasicBlockRef wb = LLVMAppendBasicBlockInContext(cg->ctx, fn, "whole_row");
    LLVMBasicBlockRef pb = LLVMAppendBasicBlockInContext(cg->ctx, fn, "part_row");
    /* a whole row that is one run of the output (store_runs: o from a
     * multiple of NR), stored from the run's first index on as vectors */
    const bool runs = !transposed && !kc->pixel_rows && store_runs(k, NR);
    /* a row buffer's row (pixel_rows, NR its width) inside one run of the
     * output (an image kept padded for the next convolution,
     * pad_conv_inputs in passes/fuse.c): each part stored from its run's
     * first index on, as vectors */
    const bool row_runs = kc->pixel_rows && NR > 1 && N % NR == 0 && store_runs(k, NR);
    LLVMBasicBlockRef rb = runs ? LLVMAppendBasicBlockInContext(cg->ctx, fn, "whole_run") : NULL;
    LLVMBasicBlockRef done = LLVMAppendBasicBlockInContext(cg->ctx, fn, "row_done");
    if (runs) {
        LLVMValueRef at_run =
            LLVMBuildICmp(cg->b, LLVMIntEQ, LLVMBuildURem(cg->b, obase, ci64(cg, NR), ""), ci64(cg, 0), "");
        LLVMBasicBlockRef wcheck = LLVMAppendBasicBlockInContext(cg->ctx, fn, "whole_check");
        LLVMBuildCondBr(cg->b, whole, wcheck, pb);
        LLVMPositionBuilderAtEnd(cg->b, wcheck);
        LLVMBuildCondBr(cg->b, at_run, rb, wb);
    } else {
        LLVMBuildCondBr(cg->b, whole, wb, pb);
    }
    for (int part = runs ? -1 : 0; part < 2; part++) {
        LLVMPositionBuilderAtEnd(cg->b, part < 0 ? rb : part ? pb : wb);
        kc->gemm_n = N;
        kc->gemm_row = as_idx(kc, iadd(cg, row0, ii));
        if (part < 0) { /* the run's first index: the store's index at o = obase */
            kc->o = as_idx(kc, obase);
            kc->gemm_col = as_idx(kc, col);
            const int si = k->stages.data[k->stages.len - 1].stores.data[0].index;
            emit_index_tree(kc, si);
            kc->run_base = as_idx(kc, kc->val[si]);
        } else if (row_runs) {
            const KStore *so = &k->stages.data[k->stages.len - 1].stores.data[0];
            const KBuf *out = &kc->cg->p->bufs.data[so->buf];
            LLVMValueRef into = LLVMBuildURem(cg->b, col, ci64(cg, NR), ""); /* N is a multiple of NR */
            if (out->pad_hw[0]) {
                /* an image kept padded (pad_conv_inputs made its store's
                 * index: the output row's first pixel at plane r, row oh +
                 * ph, column pw), written with its row's borders where the
                 * part holds the row's ends; the row's place computed here,
                 * once per call for its rows r, not through the index's
                 * divisions for every row (they cost the producer 3 %) */
                const int64_t *pad = out->pad_hw;
                LLVMValueRef r = iadd(cg, row0, ii), oh = LLVMBuildUDiv(cg->b, col, ci64(cg, NR), "oh");
                LLVMValueRef start = padded_place(cg, pad, r, oh, ci64(cg, 0));
                kc->run_base = as_idx(kc, iadd(cg, start, into));
                LLVMValueRef lo = part > 0 ? jlo : ci64(cg, 0), hi = part > 0 ? jhi : ci64(cg, NR);
                zero_row_borders(kc, pad, kc->bufptr[so->buf], start, oh, NR, N,
                                 LLVMBuildICmp(cg->b, LLVMIntEQ, iadd(cg, into, lo), ci64(cg, 0), ""),
                                 LLVMBuildICmp(cg->b, LLVMIntEQ, iadd(cg, into, hi), ci64(cg, NR), ""));
            } else { /* the run's index at its first o, q, plus obase - q */
                kc->o = as_idx(kc, LLVMBuildSub(cg->b, obase, into, ""));
                kc->gemm_col = as_idx(kc, LLVMBuildSub(cg->b, col, into, ""));
                emit_index_tree(kc, so->index);
                kc->run_base = iadd(cg, as_idx(kc, kc->val[so->index]), as_idx(kc, into));
            }
        }
        /* o = obase + j in the index type, j the loop's own variable:
         * simple recurrences for the vectoriser and for LSR */
        LLVMValueRef lo = part > 0 ? jlo : ci64(cg, 0), hi = part > 0 ? jhi : ci64(cg, NR);
        LLVMValueRef jj = tloop_begin(kc, &lj, as_idx(kc, lo), as_idx(kc, hi), 1, "ej");
        kc->run_j = jj;
        kc->o = iadd(cg, as_idx(kc, obase), jj);
        kc->gemm_col = iadd(cg, as_idx(kc, col), jj);
        kc->acc[0] =
            load_f32(cg, cptr, iadd(cg, crow, imul(cg, LLVMBuildSExt(cg->b, jj, cg->t_i64, ""), cstep)));
        emit_scope(kc, -1);
        emit_stage(kc, 1);
        kc->run_base = kc->run_j = NULL;
        LLVMValueRef br = tloop_end(kc, &lj);
        /* a row buffer's pixels (conv_row_ld; plane_rows: a plane): NR is
         * an output row (plane_rows: N in a kernel's own nest, 0 in a sized
         * unit), and a part of it is contiguous too: vectors, the part's
         * last one masked */
        if ((kc->pixel_rows && part > 0) || transposed)
            loop_metadata_tail(cg, br, cg->vec_floats, 1, true);
        else if (kc->pixel_rows) /* (a long remainder: a masked last vector, row_masked_tail) */
            loop_metadata_tail(cg, br, cg->vec_floats, 1, row_masked_tail(NR, cg->vec_floats));
        else if (part > 0)
            loop_metadata(cg, br, -1, 0);
        else
            loop_metadata(cg, br, heavy_scope(k, -1) || heavy_scope(k, 1) ? cg->vec_floats : 0, 1);
        LLVMBuildBr(cg->b, done);
    }
    LLVMPositionBuilderAtEnd(cg->b, done);
    tloop_end(kc, &li);
    if (rows_done) {
        LLVMBuildBr(cg->b, rows_done);
        LLVMPositionBuilderAtEnd(cg->b, rows_done);
    }
}

/* The tile's epilogue as a function of its own, NAME.epi(row0, col, mrv,
 * nrv, c0, c1, ob, oe, C, ldc, bufs...), called once per tile by products
 * with K >= EPI_OUTLINE_MIN_K.  Inside the loop nest, its address
 * arithmetic (every loop's index times N) made the code generator's loop
 * strength reduction the costliest part of compiling a product (half of
 * a convolution unit's machine-code time); the call costs about 20 cycles
 * per tile, 10-14 % of a tile of K = 16 (MobileNetV2's first 1x1 layers),
 * so shorter products keep it inline. */
enum { EPI_FIXED_ARGS = 10, EPI_OUTLINE_MIN_K = 128 };
/* Taps tiles of CONV_TAPS_WIDE_TILE pixels, more than NR, go through the
 * output row's buffer (row_ld), which a product has from K =
 * EPI_OUTLINE_MIN_K on (the tile epilogue transposes NR pixels only):
 * every taps convolution must have it. */
_Static_assert((int)CONV_TAPS_MIN_K >= (int)EPI_OUTLINE_MIN_K,
               "taps tiles wider than NR need the row buffer");
/* A product's own nest of constant geometry (emit_matmul_fn's, not a
 * size-generic or sized nest: products that prefetch their next B block,
 * whose B is 2 MiB or more, those of more than two batch dimensions, AOT
 * code), unswapped and not read in place, keeps its epilogue inline up to
 * K = 128 as well: ResNet-50 batch 8's 1x1 128->512 + residual at 28x28, a
 * call per tile of 3072 FMAs, ran 1.020x (2 threads) and 1.021x (1 thread)
 * inline (quiet, Intel Xeon model 207, in the model, normalised by the
 * other kernels: docs/performance.md, "Session 15: ResNet-50 batch 8 on two
 * threads").  Sized units are unchanged: ResNet-50 batch 1's products of
 * K <= 128 are all sized, and its cold compile compiles what it did. */
enum { EPI_INLINE_OWN_NEST_MAX_K = 128 };

/* Whether swapped product g (not a convolution read in place) runs its
 * epilogue over whole output rows: a row of at most CONV_ROW_MAX_OW columns
 * (a 1x1 convolution's image plane: 49 pixels at 7x7) is one row of a row
 * buffer (conv_row_ld's), into which its tiles are transposed, and the
 * epilogue is called once per block of rows (channels) when the row's last
 * tile is done: each row is a few vectors, and the block's rows one
 * contiguous run of the output.  Per tile (12 pixels of 32 channels, the
 * channels 49 floats apart) the epilogue stored each channel's 12 pixels
 * as a masked vector, partial lines, with its loop and address arithmetic
 * per channel: 29 % of MobileNetV2's 160->960 + clamp at 7x7, batch 8 (1
 * thread, perf; 11 % so, the transposes into the buffer 5 %).  A flag of
 * the argument block (MMF_ROWS) in the size-generic nest, whose buffer is
 * for the widest row; the row's width a value in the epilogue (sized
 * units) or a constant (a kernel's own). */
static bool plane_rows(const KProgram *p, const KGemm *g) {
    const KMatmul *mm = &g->mm;
    return mm->n <= CONV_ROW_MAX_OW && mm->k >= EPI_OUTLINE_MIN_K && !conv_taps(p, g) && gemm_swapped(p, g);
}

/* A size-generic product's epilogue (llvm_kernel_sizes): the instructions
 * it runs (live: from stage 1's stores back) and the i64 constants read
 * from the kernel's values (slot[i] >= 0: at MMB_BUFS + slot[i]), those
 * only added, multiplied, compared, dividing o by N (d == N, gemm_index:
 * the tile's row or column) or dividing a dividend known to lie in
 * [0, 2^32) (magic_divide: a multiply and a shift by a magic number from
 * the values); any other divisor stays a constant of the code (part of its
 * form), so that no division by a value read at run time lands in the
 * epilogue (EpiAnalysis, defined before the direct form, which has such
 * epilogues too). */

/* o / d or o % d that gemm_index computes from the tile's row and column
 * (product of N columns): 1 when d == N (no arithmetic), 2 when d | N, 3
 * when N | d, else 0. */
static int gemm_index_class(const Kernel *k, const KInst *in, int64_t n) {
    if ((in->kind != KI_IDIV && in->kind != KI_IMOD) || in->a < 0 || in->b < 0 ||
        k->insts.data[in->a].kind != KI_OUTER || k->insts.data[in->b].kind != KI_CONST)
        return 0;
    int64_t d = (int64_t)k->insts.data[in->b].value;
    if (d <= 0 || n <= 0) return 0;
    return d == n ? 1 : n % d == 0 ? 2 : d % n == 0 ? 3 : 0;
}

/* Whether division instruction in (its operands' ranges rg) is done by a
 * magic number in a sized unit: a divisor constant in [2, 2^32], not o / N,
 * a dividend in [0, 2^32). */
static bool magic_division(const Kernel *k, const KInst *in, const KRange *rg, int64_t n) {
    if ((in->kind != KI_IDIV && in->kind != KI_IMOD) || in->a < 0 || in->b < 0) return false;
    const KInst *dv = &k->insts.data[in->b];
    if (dv->kind != KI_CONST || dv->dtype != KILN_I64 || gemm_index_class(k, in, n) == 1) return false;
    int64_t d = dv->ivalue;
    const KRange *ra = &rg[in->a];
    return d >= 2 && d <= ((int64_t)1 << 32) && ra->known && ra->lo >= 0 && ra->hi < ((int64_t)1 << 32);
}

static void epi_analyse(const Kernel *k, int64_t n, EpiAnalysis *ea) {
    int ni = k->insts.len;
    ea->live = xcalloc((size_t)ni + 1, sizeof(bool));
    ea->slot = xcalloc((size_t)ni + 1, sizeof(int));
    ea->magic = xcalloc((size_t)ni + 1, sizeof(int));
    ea->nslots = 0;
    KRange *rg = kernel_index_ranges(k);
    const KStage *st = &k->stages.data[k->stages.len - 1];
    for (int j = 0; j < st->stores.len; j++)
        ea->live[st->stores.data[j].index] = ea->live[st->stores.data[j].value] = true;
    bool *free_use = xcalloc((size_t)ni + 1, sizeof(bool)); /* a constant with no other use */
    for (int i = 0; i < ni; i++) free_use[i] = true;
    for (int i = ni - 1; i >= 0; i--) {
        const KInst *in = &k->insts.data[i];
        if (!ea->live[i]) continue;
        int ops[3] = {in->kind == KI_ACC ? -1 : in->a, in->b, in->c};
        bool arith = in->kind == KI_IADD || in->kind == KI_IMUL || in->kind == KI_ILT;
        for (int j = 0; j < 3; j++) {
            if (ops[j] < 0) continue;
            ea->live[ops[j]] = true;
            bool free_here =
                arith || (j == 1 && (gemm_index_class(k, in, n) == 1 || magic_division(k, in, rg, n)));
            if (!free_here) free_use[ops[j]] = false;
        }
    }
    for (int i = 0; i < ni; i++) {
        const KInst *in = &k->insts.data[i];
        bool abstract = ea->live[i] && in->kind == KI_CONST && in->dtype == KILN_I64 && free_use[i];
        ea->slot[i] = abstract ? ea->nslots++ : -1;
    }
    for (int i = 0; i < ni; i++)
        ea->magic[i] = ea->live[i] && magic_division(k, &k->insts.data[i], rg, n) ? ea->nslots++ : -1;
    free(free_use);
    free(rg);
}

static void epi_analysis_free(EpiAnalysis *ea) {
    free(ea->live);
    free(ea->slot);
    free(ea->magic);
}

/* Kc's constants and magic numbers of a sized epilogue, loaded from its
 * values where the builder is (a function's entry). */
static void load_epilogue_values(Kc *kc, const EpiAnalysis *ea, LLVMValueRef values) {
    Cg *cg = kc->cg;
    const Kernel *k = kc->k;
    kc->sizes = values;
    kc->live = ea->live;
    kc->preset = xcalloc((size_t)k->insts.len + 1, sizeof(LLVMValueRef));
    kc->magic = xcalloc((size_t)k->insts.len + 1, sizeof(LLVMValueRef));
    for (int i = 0; i < k->insts.len; i++) {
        if (ea->slot[i] >= 0) kc->preset[i] = slot_load(cg, values, MMB_BUFS + ea->slot[i], cg->t_i64);
        if (ea->magic[i] >= 0) kc->magic[i] = slot_load(cg, values, MMB_BUFS + ea->magic[i], cg->t_i64);
    }
}

static DirectGeo begin_direct_sizes(Kc *kc, LLVMValueRef fn, bool sized, int nb, EpiAnalysis *ea) {
    const KConv *cv = &kc->k->conv;
    if (!sized) return direct_geo(kc->cg, cv, NULL);
    LLVMValueRef values = LLVMGetParam(fn, (unsigned)(nb + 2));
    epi_analyse(kc->k, cv->oh * cv->ow, ea);
    load_epilogue_values(kc, ea, values);
    return direct_geo(kc->cg, cv, values);
}

/* What begin_direct_sizes made. */
static void end_direct_sizes(Kc *kc, bool sized, EpiAnalysis *ea) {
    if (!sized) return;
    free(kc->preset);
    free(kc->magic);
    kc->preset = kc->magic = NULL, kc->live = NULL;
    epi_analysis_free(ea);
}

static LLVMValueRef emit_epilogue_fn(Cg *cg, const Kernel *k, const int *list, int nb, int64_t N, int NR,
                                     bool swap, bool pixel_rows, const EpiAnalysis *ea) {
    const int nparams = nb + EPI_FIXED_ARGS + (ea ? 1 : 0); /* a sized one's: the values last */
    LLVMTypeRef *ps = xcalloc((size_t)nparams, sizeof(LLVMTypeRef));
    for (int i = 0; i < nparams; i++) ps[i] = i == 8 || i >= EPI_FIXED_ARGS ? cg->t_ptr : cg->t_i64;
    char *name = name2(k->name, ".epi");
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, LLVMFunctionType(cg->t_void, ps, (unsigned)nparams, 0));
    free(name);
    free(ps);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    add_fn_attr(cg, fn, cg->k_nounwind);
    add_fn_attr(cg, fn, cg->k_noinline);
    Kc kc;
    kc_init(&kc, cg, k);
    kc.fn = fn;
    /* attribute indices count the parameters from 1: C is parameter 8 */
    LLVMAddAttributeAtIndex(fn, 9, LLVMCreateEnumAttribute(cg->ctx, cg->k_noalias, 0));
    for (int i = 0; i < nb; i++) {
        LLVMAddAttributeAtIndex(fn, (unsigned)(EPI_FIXED_ARGS + 1 + i),
                                LLVMCreateEnumAttribute(cg->ctx, cg->k_noalias, 0));
        kc.bufptr[list[i]] = LLVMGetParam(fn, (unsigned)(EPI_FIXED_ARGS + i));
    }
    LLVMBasicBlockRef saved = LLVMGetInsertBlock(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry"));
    LLVMValueRef row0 = LLVMGetParam(fn, 0), col = LLVMGetParam(fn, 1), mrv = LLVMGetParam(fn, 2);
    LLVMValueRef nrv = LLVMGetParam(fn, 3), c0 = LLVMGetParam(fn, 4), c1 = LLVMGetParam(fn, 5);
    LLVMValueRef ob = LLVMGetParam(fn, 6), oe = LLVMGetParam(fn, 7), cptr = LLVMGetParam(fn, 8);
    LLVMValueRef ldc = LLVMGetParam(fn, 9);
    if (ea) load_epilogue_values(&kc, ea, LLVMGetParam(fn, (unsigned)(nparams - 1))); /* once, here */
    kc.pixel_rows = pixel_rows;
    emit_tile_epilogue(&kc, row0, col, mrv, nrv, c0, c1, ob, oe, cptr, ldc, N, NR, swap);
    free(kc.preset);
    free(kc.magic);
    LLVMBuildRetVoid(cg->b);
    kc_free(&kc);
    if (saved) LLVMPositionBuilderAtEnd(cg->b, saved);
    return fn;
}

/* Whether a convolution's tiles prefetch the lines of output buffer buf that
 * they will write (when their epilogue reads nothing at o to prefetch): an
 * output of PREFETCH_WRITE_MIN_BYTES or more, or one that with the input
 * makes that much, is not in the L2 when its tile is stored, so each line
 * is first read for ownership from the L3 or memory, 12 or 32 rows at once
 * after the micro-kernel; prefetched, that overlaps the FMAs.  ResNet-50
 * batch 8 (outputs of 3.2-25.7 MB): the stem and 1x1 layers at 56x56
 * 1.04-1.18x, the 28x28 ones 1.01-1.04x; smaller outputs (the 14x14 and
 * 7x7 stages) gained nothing.  MobileNetV2 batch 1: the 32->16 layer at
 * 112x112 (1.6 MB in, 0.8 MB out) 0.81-0.90x, the stem 0.96x; its outputs
 * of 0.3-0.6 MB from inputs under 0.1 MB, in the L2, were 2-3 % slower
 * prefetched. */
enum { PREFETCH_WRITE_MIN_BYTES = 2 << 20 };

static double buf_bytes(const KProgram *p, int buf) {
    if (buf < 0 || buf >= p->bufs.len) return 0;
    return (double)p->bufs.data[buf].numel * (double)kiln_dtype_size(p->bufs.data[buf].dtype);
}

static bool prefetch_for_writing(const KProgram *p, const Kernel *k, int buf) {
    if (k->kind != KK_CONV || buf < 0 || buf >= p->bufs.len) return false;
    return buf_bytes(p, buf) + buf_bytes(p, k->conv.x_buf) >= (double)PREFETCH_WRITE_MIN_BYTES;
}

/* Column blocks of a product whose next B block is prefetched while a block
 * runs (emit_matmul_fn): equal blocks of at most NEXT_BLOCK_NC columns, a
 * multiple of NR (3136 pixels: 7 of 448).  At 2048 columns, the next block
 * of a K = 256 product (2 MB) left the L2 before it was packed: ResNet-50's
 * 1x1 layers at 56x56 ran no faster with the prefetch (1 thread). */
enum { NEXT_BLOCK_NC = 512 };
/* ... and only when B is 2 MiB or more: a smaller one is in the caches
 * (MobileNetV2 batch 1's pointwise layers, 0.3-1.6 MB: 0.96-0.99x with it) */
static bool prefetch_next_block(const KProgram *p, const KGemm *g, bool packed_b, bool multi_k, bool swap) {
    const KMatmul *mm = &g->mm;
    const KBuf *b = &p->bufs.data[mm->b_buf];
    return !packed_b && !g->conv && !multi_k && !swap && mm->b_sn == 1 &&
           (double)b->numel * (double)kiln_dtype_size(b->dtype) >= (double)PREFETCH_WRITE_MIN_BYTES;
}
/* (Until session 14 a B read in place from memory with K in several blocks
 * also had each panel prefetch into the L2 the lines of its K rows 256
 * columns on, b_far_ahead: added for MobileNetV2 batch 8's projections,
 * whose K is one block since session 12.  Where it still ran, ResNet-50
 * batch 8's 512->128/512->256 at 28x28 and MobileNetV2 batch 8's 14x14
 * layers of K 384-576, it cost 2-4 %: quiet, Intel Xeon model 207,
 * docs/performance.md, "Session 14: ResNet-50's 1x1 reductions".) */
/* Whether product g prefetches its next prepacked A block (emit_mm_nest): a
 * slice of it per tile, into the L2, while the tile runs.  Prepacked A is
 * read in order, block after block, but only once per run, and a model's
 * weights come from memory every run: ResNet-50 reads ~100 MB of them,
 * MobileNetV2 14 MB, and on the session-10 Xeon the L3 keeps ~32 MiB
 * (shared with every other process).  The first column panel's tiles of
 * each block waited on them, 4 KiB page after page: ResNet-50's 1x1 layers
 * at 7x7 took 1.2 ms in the model against 0.72 alone (their weights in the
 * L3).  Every prepacked A: with a threshold of 2 MiB (only the 7x7 and
 * 14x14 stages of ResNet), lowering it to none gained ResNet-50 b1 another
 * 1.037x and MobileNetV2 b1 1.11x (its 1x1 layers at 7x7, 0.3-1.2 MB of
 * weights, 1.35-1.48x); ResNet-18 b1 1.005x. */
static bool a_next_block(const Cg *cg, const KGemm *g) { return gemm_prepack(cg, g).a; }
static int64_t next_block_columns(int64_t N, int NR) {
    int64_t blocks = (N + NEXT_BLOCK_NC - 1) / NEXT_BLOCK_NC, nc = (N + blocks - 1) / blocks;
    return (nc + NR - 1) / NR * NR;
}

/* Whether a product's tiles go a row panel at a time along the columns (then
 * the next panel) rather than a column panel at a time down the rows, and
 * why (ROWS_OUTER_*, 0: not): a wide, short product (K one block, a B block
 * of at most 512 KiB, read again by each row panel from the L2) with at
 * least 4 row panels and an output that is
 * - only written, 512 KiB or more (ROWS_OUTER_STREAMS).  Down the rows,
 *   every tile writes MR rows a whole image plane apart, and a column panel
 *   48 or more such streams at once; along the columns 12, each written in
 *   order (session 10: MobileNetV2 batch 8's 16->96 at 112x112 and 24->144
 *   at 56x56 1.2x faster, 1 thread; at 14x14, 196 columns, 5-13 % slower,
 *   hence >= 1024 columns).  Neither B's next panel nor the output's lines
 *   are prefetched (emit_mm_nest): the 12 output rows' lines are fetched
 *   for ownership by the L2's streamer ahead of the stores, and the bursts
 *   before each tile (12 rows' lines for writing, K rows' lines of B's
 *   next panel) cost more than they saved: ResNet-50's 1x1 64->256
 *   projection at 56x56 1.11-1.13x at batch 1 and 1.20-1.28x at batch 8,
 *   its 64->64 at batch 8 1.22-1.26x, MobileNetV2's 16->96 and 24->144
 *   (their blocks of at most 256 KiB took this order with both prefetches
 *   since session 10) another 1.08-1.20x.  From 512 KiB (was 2 MiB, the
 *   size from which outputs are prefetched for writing): ResNet-50 batch
 *   1's 64->64 at 56x56 (0.8 MB) 1.09-1.11x, MobileNetV2 batch 1's
 *   24->144 at 56x56 (1.8 MB) 1.21x;
 * - or read by its epilogue at o, 2 MiB or more (`reads`: a residual, which
 *   the model's output overwrites; ROWS_OUTER_READS).  Down the rows each tile's 12
 *   residual rows were 12 lines x 2 streams from the L3 that no prefetcher
 *   follows, prefetched in a burst before the tile (a third of the nest's
 *   samples) and stored after it (another third); along the columns they
 *   are 12 streams read and written in order, which the L2's streamer
 *   fetches ahead.  B's next panel is not prefetched either (192
 *   prefetches a tile at K = 64 cost more than the L2 hits they saved);
 *   the residual's rows still are (without: 0.91x at batch 8).  ResNet-50's 1x1
 *   64->256 + residual at 56x56 1.06-1.15x (batch 1 and 8, 1 and 2
 *   threads).
 * All CPU time, quiet (docs/performance.md, "Session 12: 1x1 at 56x56"). */
enum { ROWS_OUTER_STREAMS = 1, ROWS_OUTER_READS = 2 };
enum { ROWS_OUTER_WRITTEN_MIN_BYTES = 512 << 10 };
static int rows_outer(const KGemm *g, const MmShape *sh, bool reads) {
    const KMatmul *mm = &g->mm;
    const int64_t block_cols = mm->n < sh->nc ? mm->n : sh->nc, block_bytes = mm->k * block_cols * 4;
    const double out_min = reads ? (double)PREFETCH_WRITE_MIN_BYTES : (double)ROWS_OUTER_WRITTEN_MIN_BYTES;
    if ((double)mm->batch * (double)mm->m * (double)mm->n * 4.0 < out_min || sh->swap || mm->k > sh->kc ||
        mm->m < 4 * sh->mr || mm->n < 1024 || block_bytes > 512 * 1024)
        return 0;
    return reads ? ROWS_OUTER_READS : ROWS_OUTER_STREAMS;
}

/* ------------------------------------ the loop nest, size-generic or not
 *
 * The nest below is emitted from an MmGeo: the product's geometry and
 * operands as values.  A product's own NAME.mm (short K: its epilogue
 * inline) has them as constants; the size-generic nests kiln.mm.nest and
 * kiln.mm.nest.swap (shared helpers: one per target and tile form, compiled
 * with the micro-kernel, prebuilt at build time) load them from an ARGUMENT
 * BLOCK, 8-byte slots that the kernel's NAME.mm fills in the order below,
 * and reach the kernel's packing routines and epilogue through function
 * pointers in it.  Whether A or B is prepacked, the product a convolution
 * and K in several blocks are flags in the block (MMF_*), tested once per
 * block of the nest; MMF_ROWS (the epilogue over whole rows) and
 * MMF_A_NEXT (the next A block prefetched) are tested per tile too, and
 * every micro-kernel branches once on its pf_step argument; the tile form
 * (swapped or not) fixes MR, NR and MC, so it picks the function. */

typedef struct {
    const KMatmul *mm; /* the kernel's own product (constant geometry), or NULL: a block's */
    LLVMValueRef m, n, k, a_off, b_off, a_sm, a_sk, b_sk, b_sn; /* i64 */
    LLVMValueRef dim1, bs[2][2], ps[2][2], mp, np, ncp, rg;         /* with mm == NULL */
    LLVMValueRef packed_a, packed_b, conv, multi_k, pf_write; /* i1; pf_write: the prefetches are for writing */
    LLVMValueRef b_in_place; /* i1: B read in place (b_in_place), not packed */
    LLVMValueRef rows;       /* i1: swapped, the epilogue over whole output rows (plane_rows) */
    LLVMValueRef a_next;     /* i1: the next prepacked A block prefetched, a slice per tile (a_next_block) */
    LLVMValueRef A, B, Apk, Bpk, pack_a, pack_b;
    LLVMValueRef cblk; /* a block with the window (MMB_C_*) for a conv's im2col */
    int npf; /* prefetched epilogue operands: base pointers, element bytes (0: none) */
    LLVMValueRef pf[MM_PREFETCH_MAX], pf_size[MM_PREFETCH_MAX];
    /* (constant geometry only) an output kept padded (KBuf.pad_hw) that the
     * tiles prefetch: its planes' hp, wp, ph, pw (all 0: a plain [rows, N]) */
    int64_t pf_pad[MM_PREFETCH_MAX][4];
    int64_t nc;                   /* columns of a B block (a block's: the form's NC) */
    bool prefetch_next;           /* (constant geometry only) the next B block prefetched, below */
    const KConv *taps;            /* (constant geometry only) the conv read in place (conv_taps), or NULL, */
    LLVMValueRef tap_tab;         /* with its i32 table of tap offsets (NAME.taps) */
    int64_t row_ld;               /* and its row buffer's row stride (conv_row_ld), or 0 */
    int64_t b_area;               /* (constant geometry only) bytes of the scratch's B area (b_area) */
    int rows_outer;  /* a row panel at a time: rows_outer's ROWS_OUTER_* (constant geometry, a short sized
                        nest) */
    bool epi_inline; /* the epilogue emitted in the nest (kc's kernel; epi_n: its N), else a call: */
    int64_t epi_n;
    LLVMValueRef epi, *epi_extra; /* epi(row0, col, mrv, nrv, c0, c1, ob, oe, C, ldc, extra...) */
    int nextra;
    LLVMTypeRef epi_type;
    LLVMValueRef npf_v; /* a block's count of prefetched operands (NULL: npf, known) */
} MmGeo;

/* 1 or 0 for a constant i1, -1 for a value known at run time only. */
static int known_bool(LLVMValueRef v) {
    return LLVMIsAConstantInt(v) ? (int)LLVMConstIntGetZExtValue(v) : -1;
}

/* The element offset in operand `which` (0: A, 1: B) of batch bi, or with
 * `packed` its packed block's index. */
static LLVMValueRef geo_batch(Cg *cg, const MmGeo *geo, int which, bool packed, LLVMValueRef bi) {
    if (geo->mm) {
        const int64_t *st = which ? geo->mm->b_batch_stride : geo->mm->a_batch_stride;
        return packed ? packed_batch(cg, geo->mm, st, bi) : batch_offset(cg, geo->mm, st, bi);
    }
    const LLVMValueRef *s = packed ? geo->ps[which] : geo->bs[which];
    LLVMValueRef d0 = LLVMBuildUDiv(cg->b, bi, geo->dim1, ""), d1 = LLVMBuildURem(cg->b, bi, geo->dim1, "");
    return iadd(cg, imul(cg, d0, s[0]), imul(cg, d1, s[1]));
}

/* c ? a : b, with a constant c decided here. */
static LLVMValueRef pick(Cg *cg, LLVMValueRef c, LLVMValueRef a, LLVMValueRef b) {
    int known = known_bool(c);
    return known == 1 ? a : known == 0 ? b : LLVMBuildSelect(cg->b, c, a, b, "");
}

/* void kiln.conv.pad_rows(ptr X, i64 base, i64 c0, i64 c1, ptr P, i64 x
 * PAD_ARGS): the rows of image `base` (of X, rows contiguous) that the
 * output columns [c0, c1) of a convolution read, zero-padded, into the
 * padded image P (conv_taps): padded row r of channel c at P[(c * hp + r) *
 * wp].  A shared helper, its sizes arguments in PAD_* order: as the
 * kernel's own code it cost each convolution unit ~5 ms of LLVM time. */
enum {
    PAD_C,
    PAD_H,
    PAD_W,
    PAD_PH,
    PAD_PW,
    PAD_HP,
    PAD_WP,
    PAD_XS1,
    PAD_XS2,
    PAD_OW,
    PAD_SH,
    PAD_HALO,
    PAD_ARGS
};

/* Where the copy prefetches its input (Cg.pad_prefetch, AMD Zen 5): each
 * row's lines PAD_AHEAD_BYTES ahead (4.6 rows of the stem's 224-pixel
 * planes, 18 of a 56x56 plane's; the planes lie one after another, so the
 * last rows of a channel fetch the next channel's first).  At batch 8 a
 * layer's input (6.4 MB at 56x56) comes from the L3 or memory, and the
 * copy, per row a few masked loads and stores, waited on them: the stem
 * alone, 1 thread, 1.027x, a 3x3 64->64 at 56x56 1.009-1.012x (1024, 2048
 * and 8192 bytes ahead, and a write prefetch of the padded rows as well,
 * within 1 % of it); docs/performance.md, "Session 16: the 3x3 layers on
 * Zen 5". */
enum { PAD_AHEAD_BYTES = 4096 };
static LLVMTypeRef pad_rows_type(Cg *cg) {
    LLVMTypeRef ps[5 + PAD_ARGS];
    for (int i = 0; i < 5 + PAD_ARGS; i++) ps[i] = i == 0 || i == 4 ? cg->t_ptr : cg->t_i64;
    return LLVMFunctionType(cg->t_void, ps, 5 + PAD_ARGS, 0);
}

static LLVMValueRef helper_pad_rows(Cg *cg) {
    LLVMBasicBlockRef saved = LLVMGetInsertBlock(cg->b);
    LLVMValueRef fn;
    bool fresh, define = shared_helper(cg, "kiln.conv.pad_rows", pad_rows_type(cg), &fn, &fresh);
    if (fresh)
        for (unsigned a = 1; a <= 5; a += 4)
            LLVMAddAttributeAtIndex(fn, a, LLVMCreateEnumAttribute(cg->ctx, cg->k_noalias, 0));
    if (!define) return fn;
    Kc kcs = {.cg = cg, .fn = fn}, *kc = &kcs;
    LLVMValueRef X = LLVMGetParam(fn, 0), base = LLVMGetParam(fn, 1), c0 = LLVMGetParam(fn, 2);
    LLVMValueRef c1 = LLVMGetParam(fn, 3), P = LLVMGetParam(fn, 4), v[PAD_ARGS];
    for (int i = 0; i < PAD_ARGS; i++) v[i] = LLVMGetParam(fn, (unsigned)(5 + i));
    LLVMValueRef oh0 = LLVMBuildUDiv(cg->b, c0, v[PAD_OW], "");
    LLVMValueRef oh1 = LLVMBuildUDiv(cg->b, LLVMBuildSub(cg->b, c1, ci64(cg, 1), ""), v[PAD_OW], "");
    LLVMValueRef r0 = imul(cg, oh0, v[PAD_SH]);
    LLVMValueRef r1 = imin(cg, v[PAD_HP], iadd(cg, imul(cg, oh1, v[PAD_SH]), v[PAD_HALO]));
    LLVMValueRef right = LLVMBuildSub(cg->b, v[PAD_WP], iadd(cg, v[PAD_PW], v[PAD_W]), "right");
    TLoop lc, lr;
    LLVMValueRef c = tloop_begin(kc, &lc, ci64(cg, 0), v[PAD_C], 1, "pad_c");
    LLVMValueRef r = tloop_begin(kc, &lr, r0, r1, 1, "pad_r");
    LLVMValueRef d = imul(cg, iadd(cg, imul(cg, c, v[PAD_HP]), r), v[PAD_WP]);
    LLVMValueRef xr = LLVMBuildSub(cg->b, r, v[PAD_PH], "");
    LLVMValueRef inside = LLVMBuildAnd(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGE, xr, ci64(cg, 0), ""),
                                       LLVMBuildICmp(cg->b, LLVMIntSLT, xr, v[PAD_H], ""), "inside");
    LLVMBasicBlockRef row = LLVMAppendBasicBlockInContext(cg->ctx, fn, "pad_row");
    LLVMBasicBlockRef zeros = LLVMAppendBasicBlockInContext(cg->ctx, fn, "pad_zeros");
    LLVMBasicBlockRef next = LLVMAppendBasicBlockInContext(cg->ctx, fn, "pad_next");
    LLVMBuildCondBr(cg->b, inside, row, zeros);
    LLVMPositionBuilderAtEnd(cg->b, row);
    strip_copy(kc, KILN_F32, P, d, NULL, NULL, v[PAD_PW], 1, true);
    LLVMValueRef from = iadd(cg, base, iadd(cg, imul(cg, c, v[PAD_XS1]), imul(cg, xr, v[PAD_XS2])));
    if (cg->pad_prefetch) { /* the input PAD_AHEAD_BYTES ahead of this row, a line per vector */
        TLoop lp;
        LLVMValueRef t = tloop_begin(kc, &lp, ci64(cg, 0), v[PAD_W], cg->vec_floats, "pad_pf");
        LLVMValueRef at = iadd(cg, iadd(cg, from, t), ci64(cg, PAD_AHEAD_BYTES / (int64_t)sizeof(float)));
        /* a plain GEP: the address may lie past X (a prefetch never faults) */
        prefetch_at(cg, LLVMBuildGEP2(cg->b, cg->t_f32, X, &at, 1, ""), false, 3);
        tloop_end(kc, &lp);
    }
    strip_copy(kc, KILN_F32, P, iadd(cg, d, v[PAD_PW]), X, from, v[PAD_W], 1, false);
    strip_copy(kc, KILN_F32, P, iadd(cg, d, iadd(cg, v[PAD_PW], v[PAD_W])), NULL, NULL, right, 1, true);
    LLVMBuildBr(cg->b, next);
    LLVMPositionBuilderAtEnd(cg->b, zeros);
    strip_copy(kc, KILN_F32, P, d, NULL, NULL, v[PAD_WP], 1, true);
    LLVMBuildBr(cg->b, next);
    LLVMPositionBuilderAtEnd(cg->b, next);
    tloop_end(kc, &lr);
    tloop_end(kc, &lc);
    LLVMBuildRetVoid(cg->b);
    if (saved) LLVMPositionBuilderAtEnd(cg->b, saved);
    return fn;
}

/* Calls kiln.conv.pad_rows for convolution cv: image `base` of X, the
 * output columns [c0, c1), into P. */
static void copy_padded_rows(Kc *kc, const KConv *cv, LLVMValueRef X, LLVMValueRef base, LLVMValueRef c0,
                             LLVMValueRef c1, LLVMValueRef P) {
    Cg *cg = kc->cg;
    int64_t hp, wp;
    kconv_padded_plane(cv, &hp, &wp);
    const int64_t v[PAD_ARGS] = {cv->c, cv->h,     cv->w,     cv->ph, cv->pw, hp,
                                 wp,    cv->xs[1], cv->xs[2], cv->ow, cv->sh, (cv->kh - 1) * cv->dh + 1};
    LLVMValueRef args[5 + PAD_ARGS] = {X, base, c0, c1, P};
    for (int i = 0; i < PAD_ARGS; i++) args[5 + i] = ci64(cg, v[i]);
    call_fn(cg, helper_pad_rows(cg), args, 5 + PAD_ARGS);
}

/* Prefetches the epilogue operands' lines of the tile's rows (see below):
 * an operand read (a residual) into the L2 (prefetcht1), not the L1: its
 * 12 rows' lines arrive while the micro-kernel streams its panels through
 * the L1, and the epilogue reads them once.  ResNet-50's residual 1x1
 * layers alone, 1 thread: 128->512 at 28x28 1.033x (batch 1) / 1.066x
 * (batch 8), 256->1024 at 14x14 1.018x / 1.019x, 512->2048 at 7x7
 * 1.007x / 1.008x; in the model 1.002-1.011x (performance.md, "Session 13:
 * the 1x1 layers at 7x7-28x28"); without the prefetch 1.004x.  Lines
 * prefetched for writing stay prefetchw into the L1. */
/* prefetch_tile_rows' one prefetch: the line at byte `offset` of base, for
 * writing into the L1 or for reading into the L2. */
static void prefetch_tile_line(Cg *cg, LLVMValueRef base, LLVMValueRef offset, bool write) {
    prefetch_at(cg, LLVMBuildGEP2(cg->b, cg->t_i8, base, &offset, 1, ""), write, write ? 3 : 2);
}

static void prefetch_tile_rows(Kc *kc, const MmGeo *geo, int NR, LLVMValueRef row, LLVMValueRef col,
                               LLVMValueRef mrv, bool write) {
    Cg *cg = kc->cg;
    TLoop lr;
    LLVMValueRef ii = tloop_begin(kc, &lr, ci64(cg, 0), mrv, 1, "prefetch");
    LLVMValueRef at0 = iadd(cg, imul(cg, iadd(cg, row, ii), geo->n), col);
    for (int b = 0; b < geo->npf; b++) {
        LLVMValueRef size = geo->pf_size[b], base = geo->pf[b], at = at0;
        const int64_t *pad = geo->pf_pad[b];
        if (pad[0] && geo->taps) { /* the tile's pixels, along one output row, in the padded plane */
            LLVMValueRef ow = ci64(cg, geo->taps->ow);
            LLVMValueRef oh = LLVMBuildUDiv(cg->b, col, ow, ""), ox = LLVMBuildURem(cg->b, col, ow, "");
            at = padded_place(cg, pad, iadd(cg, row, ii), oh, ox);
        }
        if (LLVMIsAConstantInt(size)) { /* the lines of NR elements, and the last one's */
            int64_t bytes = (int64_t)LLVMConstIntGetZExtValue(size), per_line = 64 / bytes;
            if (geo->taps && NR * bytes <= 64) {
                /* a taps tile along its output row, at most a line: its
                 * first line is the last one of the tile before it in the
                 * row (prefetched then) unless the tile starts the row */
                LLVMValueRef ox = LLVMBuildURem(cg->b, col, ci64(cg, geo->taps->ow), "");
                IfBlock starts;
                if_begin(kc, &starts, LLVMBuildICmp(cg->b, LLVMIntEQ, ox, ci64(cg, 0), "row_start"));
                prefetch_tile_line(cg, base, imul(cg, at, size), write);
                if_end(kc, &starts);
                prefetch_tile_line(cg, base, imul(cg, iadd(cg, at, ci64(cg, NR - 1)), size), write);
                continue;
            }
            for (int64_t e = 0; e < NR + per_line - 1; e += per_line)
                prefetch_tile_line(cg, base, imul(cg, iadd(cg, at, ci64(cg, e < NR ? e : NR - 1)), size),
                                   write);
            continue;
        }
        /* a block's operand: its element size known at run time, the
         * lines of NR elements of up to 4 bytes (wider ones: the first) */
        IfBlock has;
        if_begin(kc, &has, LLVMBuildICmp(cg->b, LLVMIntNE, size, ci64(cg, 0), ""));
        LLVMValueRef last = imul(cg, ci64(cg, NR - 1), size), start = imul(cg, at, size);
        for (int64_t e = 0; e < (NR - 1) * 4 + 64; e += 64)
            prefetch_tile_line(cg, base, iadd(cg, start, imin(cg, ci64(cg, e), last)), write);
        if_end(kc, &has);
    }
    tloop_end(kc, &lr);
}

/* Whether a product's own nest (constant geometry) prefetches its next A
 * block (a_next_block) only in a chunk's first column block: B read in place
 * down the rows (not taps, not rows_outer) and a prepacked A of at most
 * A_NEXT_L2_BYTES, which the first column block has brought into the L2 and
 * every later one finds there.  Their micro-kernels' prefetch slot is then
 * free for B's next column panel (next_panel_in_slot), which otherwise went
 * into the L1 in a burst of K x 3 prefetches before each panel
 * (prefetch_next_panel).  ResNet-50 batch 8's 1x1 128->512 + residual at
 * 28x28 (16 column blocks of one 256 KB A a run) 1.006-1.029x a layer, 1
 * and 2 threads (quiet, Intel Xeon model 207, in the model, normalised:
 * docs/performance.md, "Session 15: ResNet-50 batch 8 on two threads and
 * the 1x1 expansions").  Only from K = 128 (A_NEXT_L2_MIN_K): with every K,
 * MobileNetV2 batch 8's expansions at 14x14 came in at 0.992-0.995x; and
 * with one row block there is no next A block anyway.  AVX-512 only, as
 * measured (AVX2's MC of 120 would take more products in). */
enum { A_NEXT_L2_BYTES = 1 << 20, A_NEXT_L2_MIN_K = 128 };
static bool a_next_first_block_only(const MmGeo *geo, const MmShape *sh, int bip) {
    return sh->vl >= 16 && geo->mm && !geo->taps && !geo->rows_outer && bip == 1 &&
           geo->mm->k >= A_NEXT_L2_MIN_K &&
           geo->mm->m > sh->mc && /* (one row block: no next A block to fetch anyway) */
           (double)geo->mm->m * (double)geo->mm->k * 4.0 <= (double)A_NEXT_L2_BYTES;
}

/* The most cache lines NR floats of a row of B span (not aligned). */
static int64_t panel_lines_max(int NR) { return (NR * 4 + 63) / 64 + 1; }

/* B read in place: the next panel's lines (NR floats of each of its kcv
 * rows from column col on) fetched while this panel's tiles run, so that
 * its first tile does not wait on them: K streams far apart that no
 * hardware prefetcher follows (MobileNetV2's 32->16 at 112x112, rows 50 KB
 * apart, ran 1.2x slower in place than packed without it).  In a kernel's
 * own nest, spread over the micro-kernel's k steps where its prefetch slot
 * is free (`slot_taken` false) and the row block has enough tiles
 * (next_panel_in_slot); else here, into the L1, in a burst before the
 * panel's tiles: where the slot prefetches the next A block or Cacc's
 * next tile, and in a size-generic nest (guarded by its flag there). */
static void prefetch_next_panel(Kc *kc, const MmGeo *geo, LLVMValueRef bbase, LLVMValueRef pc,
                                LLVMValueRef kcv, LLVMValueRef mcv, LLVMValueRef col, int NR,
                                LLVMValueRef slot_taken) {
    Cg *cg = kc->cg;
    IfBlock in_place, taken;
    const bool guarded = known_bool(geo->b_in_place) != 1;
    if (guarded) if_begin(kc, &in_place, geo->b_in_place);
    /* the burst where next_panel_in_slot does not run: a generic nest; a
     * taken slot; fewer than panel_lines_max tiles of MR rows */
    LLVMValueRef burst_on = LLVMConstInt(cg->t_i1, 1, 0);
    if (!guarded) {
        const int64_t MR = ukernel_shape(cg).mr;
        burst_on =
            LLVMBuildICmp(cg->b, LLVMIntSLE, mcv, ci64(cg, MR * (panel_lines_max(NR) - 1)), "few_tiles");
        if (slot_taken) burst_on = LLVMBuildOr(cg->b, burst_on, slot_taken, "");
    }
    const int burst = known_bool(burst_on);
    if (burst < 0) if_begin(kc, &taken, burst_on);
    if (burst != 0) {
        TLoop lk;
        LLVMValueRef kk = tloop_begin(kc, &lk, ci64(cg, 0), kcv, 1, "prefetch_panel");
        LLVMValueRef at = iadd(cg, iadd(cg, bbase, imul(cg, iadd(cg, pc, kk), geo->b_sk)), col);
        /* a plain GEP, not elem_ptr's inbounds one: after the last panel
         * the address lies past B (a prefetch there is harmless; an
         * inbounds GEP would be poison) */
        for (int64_t e = 0; e < NR + 16; e += 16) { /* the lines of NR floats, aligned or not */
            LLVMValueRef idx = iadd(cg, at, ci64(cg, e < NR ? e : NR - 1));
            prefetch_at(cg, LLVMBuildGEP2(cg->b, cg->t_f32, geo->B, &idx, 1, ""), false, 3);
        }
        tloop_end(kc, &lk);
    }
    if (burst < 0) if_end(kc, &taken);
    if (guarded) if_end(kc, &in_place);
}

/* B read in place, the micro-kernel's prefetch slot free (*pf_on false or
 * NULL): the tiles of a panel fetch the next panel's lines through it,
 * into the L2, one row per k step, instead of prefetch_next_panel's burst
 * before the panel (30 % of the nest's samples of ResNet-50's 256->64 at
 * 56x56, 768 prefetches of 256 rows 196 lines apart at once against the
 * L1's 16 fill buffers).  The panel's last `lines` tiles (its NR floats
 * from column col on: 2 lines on AVX-512 when aligned, 3 when not) each
 * take one line of every row, pf = that line in the panel's first row,
 * pf_step = B's row stride; a panel of fewer tiles keeps the burst
 * (prefetch_next_panel: it runs where the slot is taken, and here where
 * there are too few tiles).  Quiet, Intel Xeon model 207, the 256->64
 * alone: 1.03-1.04x at batch 1 and 8 (docs/performance.md, "Session 13:
 * the micro-kernel's k loop"). */
static void next_panel_in_slot(Kc *kc, const MmGeo *geo, LLVMValueRef bbase, LLVMValueRef pc, LLVMValueRef ir,
                               LLVMValueRef mcv, LLVMValueRef col, int NR, LLVMValueRef *pf_on,
                               LLVMValueRef *pf_at, LLVMValueRef *pf_step) {
    Cg *cg = kc->cg;
    const int64_t MR = ukernel_shape(cg).mr;
    LLVMValueRef first = iadd(cg, iadd(cg, bbase, imul(cg, pc, geo->b_sk)), iadd(cg, col, ci64(cg, NR)));
    /* a plain GEP: after the last panel it points past B */
    LLVMValueRef at = LLVMBuildGEP2(cg->b, cg->t_f32, geo->B, &first, 1, "next_panel");
    /* the lines of NR floats: in every row as many as in the first when
     * rows lie whole lines apart, else (a 14x14 plane: 784 bytes) up to
     * panel_lines_max */
    LLVMValueRef byte = LLVMBuildPtrToInt(cg->b, at, cg->t_i64, "");
    LLVMValueRef line0 = LLVMBuildLShr(cg->b, byte, ci64(cg, 6), "");
    LLVMValueRef line1 = LLVMBuildLShr(cg->b, iadd(cg, byte, ci64(cg, NR * 4 - 1)), ci64(cg, 6), "");
    LLVMValueRef lines = iadd(cg, LLVMBuildSub(cg->b, line1, line0, ""), ci64(cg, 1));
    LLVMValueRef whole =
        LLVMBuildICmp(cg->b, LLVMIntEQ, LLVMBuildURem(cg->b, geo->b_sk, ci64(cg, 16), ""), ci64(cg, 0), "");
    lines = LLVMBuildSelect(cg->b, whole, lines, ci64(cg, panel_lines_max(NR)), "lines");
    LLVMValueRef tile = LLVMBuildUDiv(cg->b, ir, ci64(cg, MR), "");
    LLVMValueRef tiles = LLVMBuildUDiv(cg->b, iadd(cg, mcv, ci64(cg, MR - 1)), ci64(cg, MR), "");
    /* tile `tiles - lines + j` takes line j: the one with float min(16 j,
     * NR - 1) of each row's panel (as prefetch_next_panel's burst) */
    LLVMValueRef j = LLVMBuildSub(cg->b, iadd(cg, tile, lines), tiles, "");
    LLVMValueRef on =
        LLVMBuildAnd(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGE, j, ci64(cg, 0), ""),
                     LLVMBuildICmp(cg->b, LLVMIntSGE, tiles, ci64(cg, panel_lines_max(NR)), ""), "");
    LLVMValueRef off = imin(cg, imul(cg, j, ci64(cg, 16)), ci64(cg, NR - 1));
    LLVMValueRef sat = LLVMBuildGEP2(cg->b, cg->t_f32, at, &off, 1, "");
    LLVMValueRef step = LLVMBuildSelect(cg->b, on, imul(cg, geo->b_sk, ci64(cg, 4)), ci64(cg, 0), "");
    if (*pf_on) {
        LLVMValueRef taken = *pf_on;
        *pf_at = LLVMBuildSelect(cg->b, taken, *pf_at, sat, "");
        *pf_step = LLVMBuildSelect(cg->b, taken, *pf_step, step, "");
        *pf_on = LLVMBuildOr(cg->b, taken, on, "");
    } else {
        *pf_on = on, *pf_at = sat, *pf_step = step;
    }
}

/* B read in place whose rows lie a multiple of 4 lines apart (a 56x56
 * plane: 12544 bytes, 196 lines) falls into few of the L1's sets: row k's
 * lines start at set (k x 196) mod 64, 16 different sets, so a 32-column
 * panel of 256 rows puts 16 lines into each of 32 sets against 12 ways,
 * and every tile of the panel reads it from the L2 again (ResNet-50's
 * 256->64 at 56x56 ran 1.061x faster per pixel on 56x58 planes, whose
 * rows use every set: docs/performance.md, "Session 14: ResNet-50's 1x1
 * reductions").  Such a panel runs its k loop in parts (k_part): every
 * tile of the panel its first kp rows, then every tile the next kp, the
 * tiles' partial sums in a panel-sized buffer (panel_sums) that stays in
 * the L1 as the part's B lines do.  The part: the most rows (a power of
 * 2) whose lines put at most K_PART_LINES_PER_SET into a set.  Only where
 * a panel's K rows put more than L1_WAYS lines into a set, in a kernel's
 * own nest (B's row stride known), K in one block, A prepacked, at most
 * K_PART_MAX_ROWS rows (the partial sums, 9 KiB at 64 rows, share the L1
 * with the part's lines: with 128 rows, 17 KiB, the 256->128 at 56x56 ran
 * 0.97-1.02x) and parts of at least K_PART_MIN_ROWS (rows a multiple of
 * 64 lines apart all fall into one set: parts of 2 rows would not pay).
 * Quiet, Intel Xeon model 207, ResNet-50's 256->64 at 56x56 1.02-1.05x
 * (docs/performance.md, "Session 15: ResNet-50's 1x1 reductions at batch
 * 8").  The parts' sums are added as K blocks' are (the micro-kernel's
 * accumulate): not bit-identical to one k loop, but the same whatever the
 * threads' split.  The L1: 64 sets of 64-byte lines on Intel's Emerald
 * Rapids (48 KiB, 12 ways) and AMD's Zen 4 (32 KiB, 8 ways).  AVX-512
 * only (its 32-column panels, two lines a row): measured on the Xeon
 * alone, so the AVX2 and SSE forms (panels of one line a row, other MC)
 * keep one k loop until they are measured. */
enum { L1_SETS = 64, L1_WAYS = 12, K_PART_LINES_PER_SET = 4, K_PART_MAX_ROWS = 64, K_PART_MIN_ROWS = 32 };
static int64_t k_part(const MmShape *sh, const MmGeo *geo) {
    const KMatmul *mm = geo->mm;
    if (sh->vl < 16 || !mm || known_bool(geo->b_in_place) != 1 || known_bool(geo->packed_a) != 1 ||
        mm->k > sh->kc || geo->rows_outer || sh->swap || geo->taps || geo->row_ld ||
        mm->m > K_PART_MAX_ROWS || b_rows_split_lines(mm) || mm->b_sk <= 0)
        return 0;
    const int64_t row_lines = mm->b_sk * 4 / CACHE_LINE_BYTES;
    const int64_t panel_lines = (sh->nr * 4 + CACHE_LINE_BYTES - 1) / CACHE_LINE_BYTES;
    const int64_t starts = L1_SETS / gcd_i64(row_lines, L1_SETS);
    const int64_t sets = starts * panel_lines < L1_SETS ? starts * panel_lines : L1_SETS;
    if (mm->k * panel_lines <= L1_WAYS * sets) return 0;
    int64_t kp = 2;
    while (2 * kp * panel_lines <= K_PART_LINES_PER_SET * sets) kp *= 2;
    return kp >= K_PART_MIN_ROWS && kp < mm->k ? kp : 0;
}

/* A call of the product's epilogue function, NAME.epi(fixed..., extras...). */
static void call_epilogue(Cg *cg, const MmGeo *geo, const LLVMValueRef *fixed) {
    LLVMValueRef *eargs = xcalloc((size_t)geo->nextra + EPI_FIXED_ARGS, sizeof(LLVMValueRef));
    memcpy(eargs, fixed, sizeof(LLVMValueRef) * EPI_FIXED_ARGS);
    for (int i = 0; i < geo->nextra; i++) eargs[EPI_FIXED_ARGS + i] = geo->epi_extra[i];
    LLVMBuildCall2(cg->b, geo->epi_type, geo->epi, eargs, (unsigned)(geo->nextra + EPI_FIXED_ARGS), "");
    free(eargs);
}

/* The rows a tiled body's [ob, oe) touches, and the loop over its images:
 * an empty range (ob >= oe or c0 >= c1) returns at once; rows [rb, re) of
 * the flattened batch x M rows (N = cN columns a row, M = cM rows an image);
 * the loop `lb` over images bi in [b0, b1) (closed by the caller), its block
 * of rows [bm0, bm1) within image bi, brow = bi * M. */
typedef struct {
    LLVMValueRef rb, re, b0, b1, bi, brow, bm0, bm1;
} NestRows;

static NestRows nest_rows_begin(Kc *kc, TLoop *lb, LLVMValueRef ob, LLVMValueRef oe, LLVMValueRef c0,
                                LLVMValueRef c1, LLVMValueRef cN, LLVMValueRef cM) {
    Cg *cg = kc->cg;
    NestRows r;
    LLVMBasicBlockRef work = LLVMAppendBasicBlockInContext(cg->ctx, kc->fn, "work");
    LLVMBasicBlockRef fin = LLVMAppendBasicBlockInContext(cg->ctx, kc->fn, "fin");
    LLVMBuildCondBr(cg->b,
                    LLVMBuildAnd(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, ob, oe, ""),
                                 LLVMBuildICmp(cg->b, LLVMIntSLT, c0, c1, ""), ""),
                    work, fin);
    LLVMPositionBuilderAtEnd(cg->b, fin);
    LLVMBuildRetVoid(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, work);
    r.rb = LLVMBuildUDiv(cg->b, ob, cN, "rb");
    r.re = LLVMBuildUDiv(cg->b, iadd(cg, oe, LLVMBuildSub(cg->b, cN, ci64(cg, 1), "")), cN, "re");
    r.b0 = LLVMBuildUDiv(cg->b, r.rb, cM, "");
    r.b1 = iadd(cg, LLVMBuildUDiv(cg->b, LLVMBuildSub(cg->b, r.re, ci64(cg, 1), ""), cM, ""), ci64(cg, 1));
    r.bi = tloop_begin(kc, lb, r.b0, r.b1, 1, "batch");
    r.brow = imul(cg, r.bi, cM);
    r.bm0 = LLVMBuildSub(cg->b, imax(cg, r.rb, r.brow), r.brow, "bm0");
    r.bm1 = LLVMBuildSub(cg->b, imin(cg, r.re, iadd(cg, r.brow, cM)), r.brow, "bm1");
    return r;
}

/* The tiled loop nest of product geo in kc->fn, from its entry: computes the
 * output rows touching [ob, oe) and stores (through the epilogue) exactly
 * the elements in [ob, oe) and in columns [c0, c1), so any split of the
 * outer range (or of the columns) is correct. */
static void emit_mm_nest(Kc *kc, const MmShape *sh, const MmGeo *geo, LLVMValueRef ob, LLVMValueRef oe,
                         LLVMValueRef c0, LLVMValueRef c1, LLVMValueRef scratch) {
    Cg *cg = kc->cg;
    MmShape ush = ukernel_shape(cg);
    const int MR = sh->mr, NR = sh->nr;
    const int64_t KC = sh->kc, MC = sh->mc, NC = geo->nc ? geo->nc : sh->nc;
    const int multi_k = known_bool(geo->multi_k), pa = known_bool(geo->packed_a),
              pb = known_bool(geo->packed_b), bip = known_bool(geo->b_in_place);
    LLVMValueRef cN = geo->n, cM = geo->m, K = geo->k;
    LLVMValueRef tile = NULL;
    /* a tile's pixels: NR, or a taps tile's (conv_taps_tile: 7, or up to
     * CONV_TAPS_WIDE_TILE, more than NR); the tile buffer holds at least NR */
    const int tile_w = geo->taps ? conv_taps_tile(cg, geo->taps) : NR, tile_px = tile_w > NR ? tile_w : NR;
    if (multi_k != 1) {
        tile = LLVMBuildArrayAlloca(cg->b, cg->t_f32, ci64(cg, MR * tile_px), "tile");
        LLVMSetAlignment(tile, 64);
    }
    LLVMValueRef Ap = scratch;
    LLVMValueRef Bp =
        LLVMBuildGEP2(cg->b, cg->t_i8, scratch, (LLVMValueRef[]){ci64(cg, MC * KC * 4 + 64)}, 1, "Bp");
    LLVMValueRef Cacc = NULL;
    if (multi_k != 0) {
        LLVMValueRef bbytes = geo->b_area ? ci64(cg, geo->b_area + 64)
                                          : iadd(cg, imul(cg, geo->ncp, ci64(cg, KC * 4)), ci64(cg, 64));
        Cacc = LLVMBuildGEP2(cg->b, cg->t_i8, Bp, (LLVMValueRef[]){bbytes}, 1, "Cacc");
    }

    /* a convolution's output rows, its tiles transposed into them
     * (conv_row_ld): MC channels of row_ld floats; or a swapped product's
     * whole rows (plane_rows: flag MMF_ROWS), row_ld from N, the buffer
     * for the widest */
    const int plane = geo->taps ? 0 : sh->swap ? known_bool(geo->rows) : 0;
    LLVMValueRef rowbuf = NULL, row_ld = NULL;
    if (geo->row_ld) {
        rowbuf = entry_alloca(kc, MC * geo->row_ld, "rows");
        row_ld = ci64(cg, geo->row_ld);
    } else if (plane != 0) {
        const int64_t VL = cg->vec_floats, widest = (CONV_ROW_MAX_OW + VL - 1) / VL * VL + VL;
        rowbuf = entry_alloca(kc, MC * widest, "rows");
        /* N rounded up to the vector, and a vector more (a tile's
         * transposed rows are a whole vector, NR <= VL pixels of it real) */
        row_ld = iadd(
            cg,
            imul(cg, LLVMBuildUDiv(cg->b, iadd(cg, cN, ci64(cg, VL - 1)), ci64(cg, VL), ""), ci64(cg, VL)),
            ci64(cg, VL));
    }
    /* rows [rb, re) of the flattened batch*M rows touch [ob, oe) */
    TLoop lb, lg, ljc, lpc, lic, ljr, lir;
    NestRows nr = nest_rows_begin(kc, &lb, ob, oe, c0, c1, cN, cM);
    LLVMValueRef b0 = nr.b0, b1 = nr.b1, bi = nr.bi, brow = nr.brow, bm0 = nr.bm0, bm1 = nr.bm1;
    /* prepacked A: row blocks start at multiples of MR (the extra rows are
     * computed, not stored: they lie before ob) */
    if (pa != 0)
        bm0 = pick(cg, geo->packed_a,
                   LLVMBuildSub(cg->b, bm0, LLVMBuildURem(cg->b, bm0, ci64(cg, MR), ""), "bm0a"), bm0);
    LLVMValueRef abase = iadd(cg, geo->a_off, geo_batch(cg, geo, 0, false, bi));
    LLVMValueRef bbase = iadd(cg, geo->b_off, geo_batch(cg, geo, 1, false, bi));
    /* the padded image the taps read: the copy made here, or the input
     * itself where it is one already (conv_taps_in_place) */
    LLVMValueRef timg = Bp;
    if (geo->taps && conv_taps_in_place(geo->taps))
        timg = elem_ptr(cg, cg->t_f32, geo->B, bbase);
    else if (geo->taps)
        copy_padded_rows(kc, geo->taps, geo->B, bbase, c0, c1, Bp);
    LLVMValueRef apk = NULL, bpk = NULL; /* the batch's prepacked blocks */
    if (pa != 0)
        apk = elem_ptr(cg, cg->t_f32, geo->Apk,
                       imul(cg, geo_batch(cg, geo, 0, true, bi), imul(cg, geo->mp, K)));
    if (pb != 0)
        bpk = elem_ptr(cg, cg->t_f32, geo->Bpk,
                       imul(cg, geo_batch(cg, geo, 1, true, bi), imul(cg, geo->np, K)));
    /* row groups bound the partial sums kept in Cacc */
    LLVMValueRef m0 = tloop_begin(kc, &lg, bm0, bm1, 1, "group");
    lg.step = geo->rg; /* known at run time: the increment tloop_end adds */
    LLVMValueRef m1 = imin(cg, bm1, iadd(cg, m0, geo->rg));

    /* prepacked B: column blocks start at multiples of NR; the epilogue
     * stores only the columns in [c0, c1) */
    LLVMValueRef jc0 = c0;
    if (pb != 0)
        jc0 = pick(cg, geo->packed_b,
                   LLVMBuildSub(cg->b, c0, LLVMBuildURem(cg->b, c0, ci64(cg, NR), ""), "c0a"), c0);
    LLVMValueRef jc = tloop_begin(kc, &ljc, jc0, c1, NC, "jc");
    LLVMValueRef ncv = imin(cg, ci64(cg, NC), LLVMBuildSub(cg->b, c1, jc, ""));
    /* the next B block's start, its width, and whether there is one (the
     * next image's first after this image's last) */
    LLVMValueRef next_src = NULL, next_ncv = NULL;
    if (geo->prefetch_next) {
        LLVMValueRef jn = iadd(cg, jc, ci64(cg, NC));
        LLVMValueRef same = LLVMBuildICmp(cg->b, LLVMIntSLT, jn, c1, "next_here");
        LLVMValueRef bi1 = iadd(cg, bi, ci64(cg, 1));
        LLVMValueRef nbase = iadd(cg, geo->b_off, geo_batch(cg, geo, 1, false, bi1));
        LLVMValueRef ncol = LLVMBuildSelect(cg->b, same, jn, jc0, "");
        next_src = iadd(cg, LLVMBuildSelect(cg->b, same, bbase, nbase, ""), ncol);
        LLVMValueRef any = LLVMBuildOr(cg->b, same, LLVMBuildICmp(cg->b, LLVMIntSLT, bi1, b1, ""), "");
        next_ncv = LLVMBuildSelect(cg->b, any, imin(cg, ci64(cg, NC), LLVMBuildSub(cg->b, c1, ncol, "")),
                                   ci64(cg, 0), "next_ncv");
    }
    LLVMValueRef pc = tloop_begin(kc, &lpc, ci64(cg, 0), K, KC, "pc");
    LLVMValueRef kcv = imin(cg, ci64(cg, KC), LLVMBuildSub(cg->b, K, pc, ""));
    LLVMValueRef first = LLVMBuildICmp(cg->b, LLVMIntEQ, pc, ci64(cg, 0), "first");
    LLVMValueRef last = LLVMBuildICmp(cg->b, LLVMIntSGE, iadd(cg, pc, ci64(cg, KC)), K, "last");
    /* the packed B block of (jc, pc): prepacked, or packed here (a conv's
     * input under the window gathered into the panels by NAME.im2col) */
    LLVMValueRef bblock = NULL;
    if (pb != 0) bblock = elem_ptr(cg, cg->t_f32, bpk, iadd(cg, imul(cg, pc, geo->np), imul(cg, jc, kcv)));
    if (pb != 1 && bip != 1 && !geo->taps) {
        IfBlock packb;
        LLVMValueRef pack_here = pb < 0 ? LLVMBuildNot(cg->b, geo->packed_b, "") : NULL;
        if (bip < 0) {
            LLVMValueRef not_in_place = LLVMBuildNot(cg->b, geo->b_in_place, "");
            pack_here = pack_here ? LLVMBuildAnd(cg->b, pack_here, not_in_place, "") : not_in_place;
        }
        if (pack_here) if_begin(kc, &packb, pack_here);
        const int conv = known_bool(geo->conv);
        for (int form = 0; form < 2; form++) { /* a plain B packed, a conv's input by im2col */
            if (conv >= 0 && conv != form) continue;
            IfBlock is;
            if (conv < 0) if_begin(kc, &is, form ? geo->conv : LLVMBuildNot(cg->b, geo->conv, ""));
            if (form) {
                LLVMValueRef args[8] = {geo->B, bbase, pc, kcv, jc, ncv, Bp, geo->cblk};
                LLVMBuildCall2(cg->b, im2col_fn_type(cg), geo->pack_b, args, 8, "");
            } else {
                LLVMValueRef at = iadd(cg, iadd(cg, bbase, imul(cg, pc, geo->b_sk)), imul(cg, jc, geo->b_sn));
                LLVMValueRef args[7] = {geo->B, at, geo->b_sn, geo->b_sk, ncv, kcv, Bp};
                LLVMBuildCall2(cg->b, pack_fn_type(cg), geo->pack_b, args, 7, "");
            }
            if (conv < 0) if_end(kc, &is);
        }
        if (pack_here) if_end(kc, &packb);
        bblock = pb < 0 ? LLVMBuildSelect(cg->b, geo->packed_b, bblock, Bp, "bblock") : Bp;
    }
    LLVMValueRef ic = tloop_begin(kc, &lic, m0, m1, MC, "ic");
    LLVMValueRef mcv = imin(cg, ci64(cg, MC), LLVMBuildSub(cg->b, m1, ic, ""));
    LLVMValueRef ablock = NULL; /* the packed A block of (ic, pc) */
    if (pa != 0) ablock = elem_ptr(cg, cg->t_f32, apk, iadd(cg, imul(cg, pc, geo->mp), imul(cg, ic, kcv)));
    if (pa != 1) {
        IfBlock packa;
        if (pa < 0) if_begin(kc, &packa, LLVMBuildNot(cg->b, geo->packed_a, ""));
        LLVMValueRef base = iadd(cg, iadd(cg, abase, imul(cg, pc, geo->a_sk)), imul(cg, ic, geo->a_sm));
        LLVMValueRef args[7] = {geo->A, base, geo->a_sm, geo->a_sk, mcv, kcv, Ap};
        LLVMBuildCall2(cg->b, pack_fn_type(cg), geo->pack_a, args, 7, "");
        if (pa < 0) if_end(kc, &packa);
        ablock = pa < 0 ? LLVMBuildSelect(cg->b, geo->packed_a, ablock, Ap, "ablock") : Ap;
    }
    /* whether the block's tiles have a next prepacked A block to prefetch
     * (a_next_block; the next rows' block, else the next K block's), and
     * whether they keep Cacc by column panel (cacc_panels): either takes
     * the micro-kernel's prefetch slot (below); NULL: never */
    LLVMValueRef a_next_on = NULL, kcn = NULL, next_a = NULL, cacc_on = NULL;
    const int a_next = geo->a_next ? known_bool(geo->a_next) : 0;
    if (a_next != 0 && pa != 0) {
        LLVMValueRef icn = iadd(cg, ic, ci64(cg, MC)), pcn = iadd(cg, pc, ci64(cg, KC));
        LLVMValueRef same_k = LLVMBuildICmp(cg->b, LLVMIntSLT, icn, m1, "next_rows");
        kcn =
            LLVMBuildSelect(cg->b, same_k, kcv, imin(cg, ci64(cg, KC), LLVMBuildSub(cg->b, K, pcn, "")), "");
        next_a = LLVMBuildSelect(cg->b, same_k, iadd(cg, imul(cg, pc, geo->mp), imul(cg, icn, kcv)),
                                 iadd(cg, imul(cg, pcn, geo->mp), imul(cg, m0, kcn)), "next_a");
        a_next_on = LLVMBuildOr(cg->b, same_k, LLVMBuildICmp(cg->b, LLVMIntSLT, pcn, K, ""), "");
        if (a_next < 0) a_next_on = LLVMBuildAnd(cg->b, a_next_on, geo->a_next, "");
        /* ... only in the chunk's first column block where A stays in the
         * L2 (a_next_first_block_only): the slot is then free for B's next
         * panel (next_panel_in_slot) instead of its burst */
        if (a_next_first_block_only(geo, sh, bip)) {
            LLVMValueRef first_block =
                LLVMBuildAnd(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, bi, b0, ""),
                             LLVMBuildICmp(cg->b, LLVMIntEQ, jc, jc0, ""), "first_block");
            a_next_on = LLVMBuildAnd(cg->b, a_next_on, first_block, "");
        }
    }
    /* A packed here (not prepacked: no next A block for the micro-kernel
     * to prefetch): each column panel's partial sums in one run, the
     * group's rows NR floats apart, so that the next tile's (the next
     * rows') follow this one's and the micro-kernel prefetches them (below) */
    const bool cacc_panels = multi_k != 0 && !sh->swap && pa != 1;
    if (cacc_panels) {
        cacc_on = pa < 0 ? LLVMBuildNot(cg->b, geo->packed_a, "") : LLVMConstInt(cg->t_i1, 1, 0);
        if (multi_k < 0) cacc_on = LLVMBuildAnd(cg->b, cacc_on, geo->multi_k, "");
    }
    LLVMValueRef slot_taken = a_next_on && cacc_on ? LLVMBuildOr(cg->b, a_next_on, cacc_on, "")
                              : a_next_on          ? a_next_on
                                                   : cacc_on;
    LLVMValueRef jr = NULL, nrv = NULL, bpanel = NULL, ir = NULL, mrv = NULL, apanel = NULL;
    /* a panel's k loop in parts of kp rows (k_part): part `part` of
     * `parts`, its first row kbeg, kn rows, the tiles' sums in panel_sums */
    const int64_t kp = plane == 0 ? k_part(sh, geo) : 0;
    TLoop lpart;
    LLVMValueRef part = NULL, parts = NULL, kbeg = NULL, kn = NULL, panel_sums = NULL;
    LLVMValueRef tap_ow = NULL, tap_oh = NULL; /* taps: the tile's first pixel's place in the output */
    for (int level = 0; level < 2; level++) { /* columns outside, or rows (rows_outer) */
        if ((level == 0) != (geo->rows_outer != 0)) {
            jr = tloop_begin(kc, &ljr, ci64(cg, 0), ncv, NR, "jr");
            nrv = imin(cg, ci64(cg, NR), LLVMBuildSub(cg->b, ncv, jr, ""));
            if (geo->taps) { /* the tile's pixels along one output row, read in place from the padded image */
                const KConv *cv = geo->taps;
                int64_t hp, wp;
                kconv_padded_plane(cv, &hp, &wp);
                LLVMValueRef pix = iadd(cg, jc, jr), ow = LLVMBuildURem(cg->b, pix, ci64(cg, cv->ow), "ow");
                LLVMValueRef oh = LLVMBuildUDiv(cg->b, pix, ci64(cg, cv->ow), "oh");
                nrv = imin(cg, imin(cg, ci64(cg, conv_taps_tile(cg, cv)), LLVMBuildSub(cg->b, ncv, jr, "")),
                           LLVMBuildSub(cg->b, ci64(cg, cv->ow), ow, ""));
                ljr.step = nrv;
                tap_ow = ow, tap_oh = oh;
                bpanel =
                    elem_ptr(cg, cg->t_f32, timg,
                             iadd(cg, imul(cg, oh, ci64(cg, cv->sh * wp)), imul(cg, ow, ci64(cg, cv->sw))));
            } else if (bip != 1) {
                bpanel = elem_ptr(cg, cg->t_f32, bblock, imul(cg, jr, kcv));
            }
            /* (not a row panel at a time: rows_outer) */
            if (bip != 0 && !geo->rows_outer)
                prefetch_next_panel(kc, geo, bbase, pc, kcv, mcv, iadd(cg, iadd(cg, jc, jr), ci64(cg, NR)),
                                    NR, slot_taken);
        } else {
            if (kp) {
                const int64_t rows = (geo->mm->m < MC ? geo->mm->m : MC) + MR - 1;
                panel_sums = entry_alloca(kc, rows / MR * MR * NR, "panel_sums");
                parts = LLVMBuildUDiv(cg->b, iadd(cg, kcv, ci64(cg, kp - 1)), ci64(cg, kp), "parts");
                part = tloop_begin(kc, &lpart, ci64(cg, 0), parts, 1, "k_part");
                kbeg = imul(cg, part, ci64(cg, kp));
                kn = imin(cg, ci64(cg, kp), LLVMBuildSub(cg->b, kcv, kbeg, ""));
            }
            ir = tloop_begin(kc, &lir, ci64(cg, 0), mcv, MR, "ir");
            mrv = imin(cg, ci64(cg, MR), LLVMBuildSub(cg->b, mcv, ir, ""));
            apanel = elem_ptr(cg, cg->t_f32, ablock, imul(cg, ir, kcv));
        }
    }

    /* the tile goes to Cacc (K in several blocks) or to `tile` */
    LLVMValueRef cptr = tile, ldc = ci64(cg, sh->swap ? MR : NR);
    if (multi_k != 0) {
        LLVMValueRef crow = iadd(cg, LLVMBuildSub(cg->b, ic, m0, ""), ir);
        /* swapped: each tile's MR x NR floats in one block */
        LLVMValueRef at = iadd(cg, imul(cg, crow, geo->ncp), sh->swap ? imul(cg, jr, ci64(cg, MR)) : jr);
        LLVMValueRef cld = sh->swap ? ci64(cg, MR) : geo->ncp;
        if (cacc_panels) {
            /* panel jr at jr x (this group's rows + MR: its last tile's
             * rows, rounded up to MR, stay inside), not the row group's
             * most rows: the partial sums a chunk touches are its own
             * rows', one run from Cacc's start (2048 rows apart, a chunk
             * of 768 rows wrote into every 2 MiB page of Cacc: all of it
             * resident on every thread) */
            LLVMValueRef gstride = iadd(cg, LLVMBuildSub(cg->b, m1, m0, ""), ci64(cg, MR));
            LLVMValueRef panels = iadd(cg, imul(cg, jr, gstride), imul(cg, crow, ci64(cg, NR)));
            at = pick(cg, geo->packed_a, at, panels);
            cld = pick(cg, geo->packed_a, cld, ci64(cg, NR));
        }
        cptr = pick(cg, geo->multi_k, elem_ptr(cg, cg->t_f32, Cacc, at), tile);
        ldc = pick(cg, geo->multi_k, cld, ldc);
    }
    /* k in parts: the tile's sums in its rows of panel_sums (ldc NR), the
     * epilogue (and the output's prefetch) after the last part */
    LLVMValueRef last_part = NULL;
    if (kp) {
        cptr = elem_ptr(cg, cg->t_f32, panel_sums, imul(cg, ir, ci64(cg, NR)));
        last_part = LLVMBuildICmp(cg->b, LLVMIntEQ, iadd(cg, part, ci64(cg, 1)), parts, "last_part");
    }
    /* the epilogue's operands at o itself (a residual) into the cache
     * while the micro-kernel runs: a tile's rows lie N elements apart,
     * 12 or 32 streams no prefetcher follows (ResNet-50's 1x1 64->256 with
     * its residual add ran at 64 % of the same product without it) */
    LLVMValueRef row0 = iadd(cg, iadd(cg, brow, ic), ir), col = iadd(cg, jc, jr);
    /* (not the output's lines written as streams along the rows: rows_outer) */
    if (geo->npf > 0 && geo->rows_outer != ROWS_OUTER_STREAMS) {
        IfBlock pf;
        LLVMValueRef when = multi_k != 0 ? last : kp ? last_part : LLVMConstInt(cg->t_i1, 1, 0);
        if (geo->npf_v)
            when =
                LLVMBuildAnd(cg->b, when, LLVMBuildICmp(cg->b, LLVMIntNE, geo->npf_v, ci64(cg, 0), ""), "");
        bool guarded = known_bool(when) != 1;
        if (guarded) if_begin(kc, &pf, when);
        const int write = known_bool(geo->pf_write);
        for (int w = 0; w < 2; w++) { /* the operands' lines, or (write) the output's */
            if (write >= 0 && write != w) continue;
            IfBlock is;
            if (write < 0) if_begin(kc, &is, w ? geo->pf_write : LLVMBuildNot(cg->b, geo->pf_write, ""));
            prefetch_tile_rows(kc, geo, tile_w, row0, col, mrv, w);
            if (write < 0) if_end(kc, &is);
        }
        if (guarded) if_end(kc, &pf);
    }
    /* with K in one block, `first` always holds */
    /* ... and the next B block's lines under this panel, a slice of its K
     * rows per tile, into the L2 while the micro-kernel runs: its packing
     * read each line from memory, 25 % of ResNet-50's 1x1 256->64 at 56x56
     * (batch 8), while the cores waited */
    /* B in place, the kernel's own nest, the slot free and at least twice
     * panel_lines_max tiles a panel: the next B block's column panel jr
     * (all K rows, line j in the panel's tile j) through the micro-kernel's
     * slot instead of the slice burst below (below: nb_slot).  Not emitted
     * for products of fewer rows, which never take it (MobileNetV2's
     * projections, 16-32 rows, K 32-192: with the test per tile
     * 0.995-1.003x) */
    LLVMValueRef nb_slot = NULL;
    if (geo->prefetch_next && bip == 1 && !geo->rows_outer &&
        (geo->mm->m + MR - 1) / MR >= 2 * panel_lines_max(NR)) {
        LLVMValueRef tiles = LLVMBuildUDiv(cg->b, iadd(cg, mcv, ci64(cg, MR - 1)), ci64(cg, MR), "");
        nb_slot = LLVMBuildICmp(cg->b, LLVMIntSGE, tiles, ci64(cg, 2 * panel_lines_max(NR)), "");
        if (slot_taken) nb_slot = LLVMBuildAnd(cg->b, nb_slot, LLVMBuildNot(cg->b, slot_taken, ""), "");
    }
    if (geo->prefetch_next) {
        IfBlock pf;
        LLVMValueRef cond = LLVMBuildICmp(cg->b, LLVMIntSLT, jr, next_ncv, "");
        if (nb_slot) cond = LLVMBuildAnd(cg->b, cond, LLVMBuildNot(cg->b, nb_slot, ""), "");
        if_begin(kc, &pf, cond);
        TLoop lr;
        LLVMValueRef r0 = LLVMBuildUDiv(cg->b, imul(cg, ir, K), mcv, "");
        LLVMValueRef r1 = LLVMBuildUDiv(cg->b, imul(cg, iadd(cg, ir, mrv), K), mcv, "");
        LLVMValueRef kk = tloop_begin(kc, &lr, r0, r1, 1, "prefetch_next");
        LLVMValueRef at = iadd(cg, iadd(cg, next_src, imul(cg, kk, geo->b_sk)), jr);
        KilnDType dt = cg->p->bufs.data[geo->mm->b_buf].dtype;
        for (int64_t e = 0; e < NR; e += 64 / (int64_t)kiln_dtype_size(dt)) {
            LLVMValueRef addr =
                LLVMBuildGEP2(cg->b, mem_type(cg, dt), geo->B, (LLVMValueRef[]){iadd(cg, at, ci64(cg, e))}, 1, "");
            prefetch_at(cg, addr, false, 2);
        }
        tloop_end(kc, &lr);
        if_end(kc, &pf);
    }
    /* ... and the next prepacked A block (a_next_block): each tile's
     * micro-kernel prefetches panel ir's part [jr, jr + nrv) / ncv of it,
     * one prefetch per k step, pf_step = the part's bytes / kc apart (a burst
     * of ~100 prefetches here before each tile waited on the fill buffers:
     * 16 % of a 1x1 2048->512 layer at 7x7).  While a part is at most kc
     * lines (pf_step <= 64) the tiles of a block fetch the next one whole,
     * in either tile order; a larger part (a swapped block of one tile: 32-row
     * panels) is fetched a line every pf_step bytes only.  Without a next block
     * pf_step is 0: the micro-kernel's k loop without the prefetch */
    LLVMValueRef pf_on = NULL, pf_at = NULL, pf_step = NULL;
    if (a_next_on) {
        pf_on = a_next_on;
        LLVMValueRef panel = iadd(cg, next_a, imul(cg, ir, kcn)), span = imul(cg, ci64(cg, MR), kcn);
        LLVMValueRef lo = LLVMBuildUDiv(cg->b, imul(cg, jr, span), ncv, "");
        LLVMValueRef hi = LLVMBuildUDiv(cg->b, imul(cg, iadd(cg, jr, nrv), span), ncv, "");
        /* a plain GEP: past the last block's rows it points past A */
        pf_at = LLVMBuildGEP2(cg->b, cg->t_f32, apk, (LLVMValueRef[]){iadd(cg, panel, lo)}, 1, "pf");
        LLVMValueRef bytes = imul(cg, LLVMBuildSub(cg->b, hi, lo, ""), ci64(cg, 4));
        pf_step =
            LLVMBuildUDiv(cg->b, iadd(cg, bytes, LLVMBuildSub(cg->b, kcv, ci64(cg, 1), "")), kcv, "pf_step");
    }
    /* ... or (A packed here, K in several blocks) the next tile's partial
     * sums, its MR x NR floats after this one's (cacc_panels), into the L2:
     * a tile added and stored its sums at its end from the L3 or memory
     * (kiln's 2048^3 sgemm keeps 16 MiB of them: b_packed_per_chunk) */
    if (cacc_on) {
        LLVMValueRef on = cacc_on;
        LLVMValueRef at =
            LLVMBuildGEP2(cg->b, cg->t_f32, cptr, (LLVMValueRef[]){ci64(cg, MR * NR)}, 1, "pf_cacc");
        LLVMValueRef step = LLVMBuildUDiv(
            cg->b, iadd(cg, ci64(cg, MR * NR * 4), LLVMBuildSub(cg->b, kcv, ci64(cg, 1), "")), kcv, "");
        if (pf_on) { /* a next A block (prepacked A) first */
            at = LLVMBuildSelect(cg->b, pf_on, pf_at, at, "");
            step = LLVMBuildSelect(cg->b, pf_on, pf_step, step, "");
            on = LLVMBuildOr(cg->b, pf_on, on, "");
        }
        pf_on = on, pf_at = at, pf_step = step;
    }
    /* ... or (B read in place, the kernel's own nest, the slot free) the
     * next column panel of B: line j of its every row, one row per k step,
     * in the panel's last tiles (next_panel_in_slot) */
    if (bip == 1 && !geo->rows_outer)
        next_panel_in_slot(kc, geo, bbase, pc, ir, mcv, col, NR, &pf_on, &pf_at, &pf_step);
    /* ... and (nb_slot) in the panel's first panel_lines_max tiles the next
     * B block's column panel jr, line j of its every row in tile j, where
     * the slice burst before each tile (prefetch_next) was 13 % of the
     * 256->64 at 56x56's nest samples (docs/performance.md, "Session 13:
     * the micro-kernel's k loop") */
    if (nb_slot) {
        LLVMValueRef t = LLVMBuildUDiv(cg->b, ir, ci64(cg, MR), "");
        LLVMValueRef on = LLVMBuildAnd(
            cg->b, nb_slot, LLVMBuildICmp(cg->b, LLVMIntSLT, t, ci64(cg, panel_lines_max(NR)), ""), "");
        on = LLVMBuildAnd(cg->b, on, LLVMBuildICmp(cg->b, LLVMIntSLT, jr, next_ncv, ""), "");
        LLVMValueRef off = imin(cg, imul(cg, t, ci64(cg, 16)), ci64(cg, NR - 1));
        LLVMValueRef idx = iadd(cg, iadd(cg, next_src, jr), off);
        LLVMValueRef at = LLVMBuildGEP2(cg->b, cg->t_f32, geo->B, &idx, 1, "next_block_panel");
        LLVMValueRef step = imul(cg, geo->b_sk, ci64(cg, 4));
        pf_at = LLVMBuildSelect(cg->b, on, at, pf_at, "");
        pf_step = LLVMBuildSelect(cg->b, on, step, pf_step, "");
        pf_on = LLVMBuildOr(cg->b, pf_on, on, "");
    }
    /* ... or (Cg.a_ahead, AMD Zen 5: a sized unit's nest, prepacked A,
     * unswapped) in a row block's first column panel, where its A block
     * comes from the L3 or memory (a model's weights: every layer's are
     * read once a run), the panel two tiles ahead, MR floats a k step: the
     * micro-kernel reads its panel at that pace, and the next A block
     * (a_next_block) covered only a chunk's later blocks.  ResNet-50 batch
     * 1's 1x1 256->1024 + residual at 14x14 (A 1 MB, 7 column panels) ran
     * 1.057-1.068x (2 threads) and 1.032-1.040x (1 thread); quiet, in the
     * model (docs/performance.md, "Session 17: ResNet-50's 1x1 layers at
     * batch 1") */
    if (cg->a_ahead && !geo->mm && pa != 0 && !sh->swap && !geo->taps && !kp) {
        LLVMValueRef ahead = iadd(cg, ir, ci64(cg, 2 * MR));
        LLVMValueRef on = LLVMBuildAnd(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, jr, ci64(cg, 0), ""),
                                       LLVMBuildICmp(cg->b, LLVMIntSLT, ahead, mcv, ""), "a_ahead");
        if (pa < 0) on = LLVMBuildAnd(cg->b, on, geo->packed_a, "");
        LLVMValueRef at =
            LLVMBuildGEP2(cg->b, cg->t_f32, ablock, (LLVMValueRef[]){imul(cg, ahead, kcv)}, 1, "");
        LLVMValueRef step = ci64(cg, MR * 4);
        pf_at = pf_on ? LLVMBuildSelect(cg->b, on, at, pf_at, "") : at;
        pf_step = pf_on ? LLVMBuildSelect(cg->b, on, step, pf_step, "") : step;
        pf_on = pf_on ? LLVMBuildOr(cg->b, pf_on, on, "") : on;
    }
    LLVMValueRef accumulate = multi_k != 0 ? LLVMBuildNot(cg->b, first, "") : LLVMConstInt(cg->t_i1, 0, 0);
    if (kp) {
        accumulate = LLVMBuildICmp(cg->b, LLVMIntNE, part, ci64(cg, 0), "");
        /* the slot's B lines (next_panel_in_slot, nb_slot: one row a k
         * step from the panel's first row) from the part's first row on;
         * the next A block's (a taken slot) unchanged */
        if (pf_on) {
            LLVMValueRef skip = imul(cg, kbeg, imul(cg, geo->b_sk, ci64(cg, 4)));
            LLVMValueRef moved = LLVMBuildGEP2(cg->b, cg->t_i8, pf_at, &skip, 1, "");
            pf_at = slot_taken ? LLVMBuildSelect(cg->b, slot_taken, pf_at, moved, "") : moved;
        }
    }
    /* swapped: the micro-kernel broadcasts B's panel and loads A's in
     * vectors, and its tile is C^T, row j of it (column j of C) at j * MR;
     * B in place: its rows from (pc, jc + jr) on, b_sk apart; taps: the
     * K block's tap offsets */
    const int taps = geo->taps ? (int)geo->taps->sw : 0;
    for (int in_place = 0; in_place < 2; in_place++) {
        if (bip >= 0 && bip != in_place) continue;
        IfBlock is;
        if (bip < 0) if_begin(kc, &is, in_place ? geo->b_in_place : LLVMBuildNot(cg->b, geo->b_in_place, ""));
        LLVMValueRef vecs = sh->swap ? apanel : bpanel, bcast = sh->swap ? bpanel : apanel;
        LLVMValueRef ukernel = sh->swap ? ukernel_for(cg, &ush, nrv, mrv, false, taps)
                                        : ukernel_for(cg, &ush, mrv, nrv, in_place, 0);
        LLVMValueRef args[11] = {bcast, vecs, kcv, cptr, ldc, accumulate, bcast, geo->b_sk, NULL, NULL, NULL};
        LLVMValueRef krow = pc;
        if (kp) { /* the part's rows of A's panel (MR floats a k) and of B */
            args[0] = args[6] = elem_ptr(cg, cg->t_f32, bcast, imul(cg, kbeg, ci64(cg, MR)));
            args[2] = kn;
            krow = iadd(cg, pc, kbeg);
        }
        if (in_place) {
            args[1] =
                elem_ptr(cg, cg->t_f32, geo->B, iadd(cg, iadd(cg, bbase, imul(cg, krow, geo->b_sk)), col));
            LLVMValueRef vecs_before =
                LLVMBuildUDiv(cg->b, LLVMBuildSub(cg->b, nrv, ci64(cg, 1), ""), ci64(cg, ush.vl), "");
            args[8] = LLVMBuildSub(cg->b, nrv, imul(cg, vecs_before, ci64(cg, ush.vl)), "lanes");
        }
        if (taps) args[7] = elem_ptr(cg, cg->t_i32, geo->tap_tab, pc);
        const unsigned nargs = ukernel_nargs(in_place, taps);
        args[nargs] = pf_on ? LLVMBuildSelect(cg->b, pf_on, pf_at, args[1], "") : args[1];
        args[nargs + 1] = pf_on ? LLVMBuildSelect(cg->b, pf_on, pf_step, ci64(cg, 0), "") : ci64(cg, 0);
        LLVMBuildCall2(cg->b, ukernel_type(cg, in_place, taps), ukernel, args, nargs + 2, "");
        if (bip < 0) if_end(kc, &is);
    }
    /* last K block: the epilogue of the tile (NAME.epi, or here), or the
     * tile transposed into its output row's buffer */
    IfBlock epi, epi_part;
    if (multi_k != 0) if_begin(kc, &epi, last);
    if (kp) if_begin(kc, &epi_part, last_part);
    /* a block's flag (plane_rows): whole rows, or the tile's own epilogue */
    LLVMBasicBlockRef tile_epi = NULL, epi_done = NULL;
    if (plane < 0) {
        LLVMBasicBlockRef by_rows = LLVMAppendBasicBlockInContext(cg->ctx, kc->fn, "by_rows");
        tile_epi = LLVMAppendBasicBlockInContext(cg->ctx, kc->fn, "tile_epi");
        epi_done = LLVMAppendBasicBlockInContext(cg->ctx, kc->fn, "epi_done");
        LLVMBuildCondBr(cg->b, geo->rows, by_rows, tile_epi);
        LLVMPositionBuilderAtEnd(cg->b, by_rows);
    }
    if (rowbuf) {
        /* the tile's place in its row: along an output row (taps), or in
         * a whole row of the product (plane_rows: a 1x1 layer's plane) */
        LLVMValueRef pos = geo->taps ? tap_ow : iadd(cg, jc, jr);
        LLVMValueRef at = iadd(cg, imul(cg, ir, row_ld), pos);
        /* a tile of 7 or 14 (conv_taps_tile) or a row's last, narrower tile:
         * the rows past it undefined, then overwritten by the next tile's
         * or left in the buffer's slack past the row */
        LLVMValueRef dst = elem_ptr(cg, cg->t_f32, rowbuf, at);
        if (geo->taps && cg->tile_t_calls) {
            LLVMValueRef targs[4] = {cptr, ldc, dst, row_ld};
            call_fn(cg, helper_tile_t(cg, tile_w), targs, 4);
        } else {
            transpose_tile_to(kc, cptr, ldc, tile_w, dst, row_ld, 4);
        }
    }
    if (plane < 0) {
        LLVMBuildBr(cg->b, epi_done);
        LLVMPositionBuilderAtEnd(cg->b, tile_epi);
    }
    if (!rowbuf || plane < 0) {
        if (geo->epi_inline) {
            emit_tile_epilogue(kc, row0, col, mrv, nrv, c0, c1, ob, oe, cptr, ldc, geo->epi_n, NR, sh->swap);
        } else {
            LLVMValueRef fixed[EPI_FIXED_ARGS] = {row0, col, mrv, nrv, c0, c1, ob, oe, cptr, ldc};
            call_epilogue(cg, geo, fixed);
        }
    }
    if (plane < 0) {
        LLVMBuildBr(cg->b, epi_done);
        LLVMPositionBuilderAtEnd(cg->b, epi_done);
    }
    if (multi_k != 0) if_end(kc, &epi);
    if (kp) if_end(kc, &epi_part);
    tloop_end(kc, geo->rows_outer ? &ljr : &lir);
    if (kp) tloop_end(kc, &lpart);
    if (rowbuf) { /* the row's last tile, or the block's: the epilogue of its part of the row */
        IfBlock flush;
        LLVMValueRef end = iadd(cg, jr, nrv);
        LLVMValueRef block_end = LLVMBuildICmp(cg->b, LLVMIntSGE, end, ncv, "");
        /* a whole row (plane_rows) lies in one column block (N <= NC) */
        LLVMValueRef flush_now = block_end, row_start = ci64(cg, 0);
        if (geo->taps) {
            LLVMValueRef row_end =
                LLVMBuildICmp(cg->b, LLVMIntEQ, iadd(cg, tap_ow, nrv), ci64(cg, geo->taps->ow), "");
            flush_now = LLVMBuildOr(cg->b, row_end, block_end, "");
            row_start = imul(cg, tap_oh, ci64(cg, geo->taps->ow));
        }
        if (plane < 0) flush_now = LLVMBuildAnd(cg->b, geo->rows, flush_now, "");
        if_begin(kc, &flush, LLVMBuildAnd(cg->b, last, flush_now, ""));
        LLVMValueRef first = imax(cg, jc, row_start); /* the part's first pixel, its pixels, their sums */
        LLVMValueRef part = LLVMBuildSub(cg->b, iadd(cg, jc, end), first, "");
        LLVMValueRef sums = elem_ptr(cg, cg->t_f32, rowbuf, LLVMBuildSub(cg->b, first, row_start, ""));
        LLVMValueRef fixed[EPI_FIXED_ARGS] = {
            iadd(cg, brow, ic), first, mcv, part, c0, c1, ob, oe, sums, row_ld};
        call_epilogue(cg, geo, fixed);
        if_end(kc, &flush);
    }
    tloop_end(kc, geo->rows_outer ? &lir : &ljr);
    tloop_end(kc, &lic);
    tloop_end(kc, &lpc);
    tloop_end(kc, &ljc);
    tloop_end(kc, &lg);
    tloop_end(kc, &lb);
    LLVMBuildRetVoid(cg->b);
}

/* Whether product g runs a size-generic nest: its epilogue is a function
 * (K >= EPI_OUTLINE_MIN_K: the indirect call per tile is as cheap) and it
 * has at most two batch dims (the block's). */
static bool mm_generic(const KGemm *g) { return g->mm.k >= EPI_OUTLINE_MIN_K && g->mm.nbatch <= 2; }

/* The integer slots [0, MMB_FLAGS] of product g's argument block. */
static void mm_block_values(const Cg *cg, const KGemm *g, int64_t v[MMB_FLAGS + 1]) {
    const KMatmul *mm = &g->mm;
    MmShape sh = mm_shape(cg, g);
    Prepack pp = gemm_prepack(cg, g);
    memset(v, 0, sizeof(int64_t) * (MMB_FLAGS + 1));
    v[MMB_M] = mm->m, v[MMB_N] = mm->n, v[MMB_K] = mm->k, v[MMB_A_OFF] = mm->a_off, v[MMB_B_OFF] = mm->b_off;
    v[MMB_A_SM] = mm->a_sm, v[MMB_A_SK] = mm->a_sk, v[MMB_B_SK] = mm->b_sk, v[MMB_B_SN] = mm->b_sn;
    /* d1 the last batch dim, d0 the one before it (size 1 when absent) */
    int nd = mm->nbatch;
    v[MMB_DIM1] = nd >= 1 ? mm->batch_dims[nd - 1] : 1;
    for (int w = 0; w < 2 && nd <= 2; w++) {
        const int64_t *st = w ? mm->b_batch_stride : mm->a_batch_stride;
        int64_t s1 = nd >= 1 ? st[nd - 1] : 0, s0 = nd >= 2 ? st[nd - 2] : 0;
        int at = w ? MMB_B_BS0 : MMB_A_BS0, pat = w ? MMB_B_PS0 : MMB_A_PS0;
        v[at] = s0, v[at + 1] = s1;
        /* packed_batch: the dims with a stride count, innermost first */
        v[pat] = s0 ? (s1 ? v[MMB_DIM1] : 1) : 0, v[pat + 1] = s1 ? 1 : 0;
    }
    v[MMB_MP] = pp.ap / mm->k, v[MMB_NP] = pp.bp / mm->k;
    int64_t NC = mm->n < sh.nc ? mm->n : sh.nc;
    v[MMB_NCP] = (NC + sh.nr - 1) / sh.nr * sh.nr;
    v[MMB_RG] = row_group(cg, &sh, g);
    v[MMB_FLAGS] = (pp.a ? MMF_PACKED_A : 0) | (pp.b ? MMF_PACKED_B : 0) | (g->conv ? MMF_CONV : 0) |
                   (mm->k > sh.kc ? MMF_MULTI_K : 0) | (b_in_place(cg, g) ? MMF_B_IN_PLACE : 0) |
                   (plane_rows(cg->p, g) ? MMF_ROWS : 0) | (a_next_block(cg, g) ? MMF_A_NEXT : 0);
}

/* The flag of bit 1 << f of MMB_FLAGS (MMF_*) in MmGeo, f < MMF_COUNT. */
static LLVMValueRef *geo_flag(MmGeo *geo, int f) {
    LLVMValueRef *at[MMF_COUNT] = {&geo->packed_a, &geo->packed_b,   &geo->conv, &geo->multi_k,
                                   &geo->pf_write, &geo->b_in_place, &geo->rows, &geo->a_next};
    return at[f];
}

/* The slots [MMB_M, MMB_RG] in MmGeo's order. */
static LLVMValueRef *geo_ints(MmGeo *geo, int slot) {
    LLVMValueRef *at[MMB_RG + 1] = {
        &geo->m,        &geo->n,        &geo->k,        &geo->a_off,    &geo->b_off,    &geo->a_sm,
        &geo->a_sk,     &geo->b_sk,     &geo->b_sn,     &geo->dim1,     &geo->bs[0][0], &geo->bs[0][1],
        &geo->bs[1][0], &geo->bs[1][1], &geo->ps[0][0], &geo->ps[0][1], &geo->ps[1][0], &geo->ps[1][1],
        &geo->mp,       &geo->np,       &geo->ncp,      &geo->rg};
    return at[slot];
}

/* The epilogue as a generic nest calls it: void(row0, col, mrv, nrv, c0,
 * c1, ob, oe, ptr C, ldc, ptr block). */
static LLVMTypeRef epi_thunk_type(Cg *cg) {
    LLVMTypeRef ps[EPI_FIXED_ARGS + 1];
    for (int i = 0; i <= EPI_FIXED_ARGS; i++) ps[i] = i == 8 || i == EPI_FIXED_ARGS ? cg->t_ptr : cg->t_i64;
    return LLVMFunctionType(cg->t_void, ps, EPI_FIXED_ARGS + 1, 0);
}

/* void kiln.mm.nest(i64 ob, i64 oe, i64 c0, i64 c1, ptr scratch, ptr block)
 * (.swap: the swapped tile form): the loop nest of the product an argument
 * block describes. */
static LLVMTypeRef mm_nest_type(Cg *cg) {
    LLVMTypeRef ps[6] = {cg->t_i64, cg->t_i64, cg->t_i64, cg->t_i64, cg->t_ptr, cg->t_ptr};
    return LLVMFunctionType(cg->t_void, ps, 6, 0);
}

/* The product block blk describes, as the loop nest reads it (the loads
 * where the builder is). */
static void geo_from_block(Cg *cg, LLVMValueRef blk, MmGeo *geo) {
    *geo = (MmGeo){0};
    for (int s = 0; s <= MMB_RG; s++) *geo_ints(geo, s) = slot_load(cg, blk, s, cg->t_i64);
    LLVMValueRef flags = slot_load(cg, blk, MMB_FLAGS, cg->t_i64);
    for (int f = 0; f < MMF_COUNT; f++)
        *geo_flag(geo, f) = LLVMBuildICmp(cg->b, LLVMIntNE, LLVMBuildAnd(cg->b, flags, ci64(cg, 1 << f), ""),
                                          ci64(cg, 0), "");
    LLVMValueRef *ptr_of[7] = {&geo->A, &geo->B, &geo->Apk, &geo->Bpk, &geo->pack_a, &geo->pack_b, &geo->epi};
    for (int s = 0; s < 7; s++) *ptr_of[s] = slot_load(cg, blk, MMB_A + s, cg->t_ptr);
    geo->npf = MM_PREFETCH_MAX;
    geo->npf_v = slot_load(cg, blk, MMB_NPF, cg->t_i64);
    for (int b = 0; b < MM_PREFETCH_MAX; b++) {
        geo->pf[b] = slot_load(cg, blk, MMB_PF + b, cg->t_ptr);
        geo->pf_size[b] = slot_load(cg, blk, MMB_PF_SIZE + b, cg->t_i64);
    }
    geo->cblk = blk;
}

/* The size-generic nest of the (swapped) tile form; one_panel: a row block
 * of one panel (MC = MR, swapped only: swap_one_panel), kiln.mm.nest.swap1. */
static LLVMValueRef helper_mm_nest(Cg *cg, bool swap, bool one_panel) {
    LLVMBasicBlockRef saved = LLVMGetInsertBlock(cg->b);
    LLVMValueRef fn;
    const char *name = !swap ? "kiln.mm.nest" : one_panel ? "kiln.mm.nest.swap1" : "kiln.mm.nest.swap";
    bool fresh, define = shared_helper(cg, name, mm_nest_type(cg), &fn, &fresh);
    if (fresh) LLVMAddAttributeAtIndex(fn, 5, LLVMCreateEnumAttribute(cg->ctx, cg->k_noalias, 0));
    if (!define) return fn;
    Kc kc = {.cg = cg, .fn = fn};
    LLVMValueRef blk = LLVMGetParam(fn, 5);
    MmGeo geo;
    geo_from_block(cg, blk, &geo);
    if (swap) geo.b_in_place = LLVMConstInt(cg->t_i1, 0, 0); /* b_in_place: unswapped only */
    if (!swap) geo.rows = LLVMConstInt(cg->t_i1, 0, 0);      /* plane_rows: swapped only */
    geo.epi_type = epi_thunk_type(cg);
    geo.epi_extra = &blk, geo.nextra = 1;
    MmShape sh = mm_shape_form(cg, swap);
    if (swap && one_panel) sh.mc = sh.mr;
    emit_mm_nest(&kc, &sh, &geo, LLVMGetParam(fn, 0), LLVMGetParam(fn, 1), LLVMGetParam(fn, 2),
                 LLVMGetParam(fn, 3), LLVMGetParam(fn, 4));
    if (saved) LLVMPositionBuilderAtEnd(cg->b, saved);
    return fn;
}

/* Operand blk[MMB_WHICH] (0: A, 1: B) of a block's product as its packing
 * sees it: a line is a row of A (MR of them per panel) or a column of B
 * (NR); lines_p: the lines of its packed block (rounded up). */
typedef struct {
    LLVMValueRef is_b, src, dst, pack, off, s_line, s_k, lines, lines_p, w;
} BlockOperand;

static BlockOperand block_operand(Cg *cg, const MmGeo *g, const MmShape *sh, LLVMValueRef blk) {
    BlockOperand o;
    LLVMValueRef b = o.is_b =
        LLVMBuildICmp(cg->b, LLVMIntNE, slot_load(cg, blk, MMB_WHICH, cg->t_i64), ci64(cg, 0), "is_b");
    o.src = pick(cg, b, g->B, g->A), o.dst = pick(cg, b, g->Bpk, g->Apk);
    o.pack = pick(cg, b, g->pack_b, g->pack_a), o.off = pick(cg, b, g->b_off, g->a_off);
    o.s_line = pick(cg, b, g->b_sn, g->a_sm), o.s_k = pick(cg, b, g->b_sk, g->a_sk);
    o.lines = pick(cg, b, g->n, g->m), o.lines_p = pick(cg, b, g->np, g->mp);
    o.w = pick(cg, b, ci64(cg, sh->nr), ci64(cg, sh->mr));
    return o;
}

/* The operand's element offset of batch bi (packed: its packed block's
 * index), and whether bi is the first batch of those sharing that block
 * (its broadcast dims, stride 0, at 0). */
static LLVMValueRef operand_batch(Cg *cg, const MmGeo *g, const BlockOperand *o, bool packed,
                                  LLVMValueRef bi) {
    return pick(cg, o->is_b, geo_batch(cg, g, 1, packed, bi), geo_batch(cg, g, 0, packed, bi));
}
static LLVMValueRef first_of_block_batch(Cg *cg, const MmGeo *g, const BlockOperand *o, LLVMValueRef bi) {
    LLVMValueRef d[2] = {LLVMBuildUDiv(cg->b, bi, g->dim1, ""), LLVMBuildURem(cg->b, bi, g->dim1, "")};
    LLVMValueRef first = LLVMConstInt(cg->t_i1, 1, 0), zero = ci64(cg, 0);
    for (int i = 0; i < 2; i++) {
        LLVMValueRef s = pick(cg, o->is_b, g->bs[1][i], g->bs[0][i]);
        LLVMValueRef ok = LLVMBuildOr(cg->b, LLVMBuildICmp(cg->b, LLVMIntNE, s, zero, ""),
                                      LLVMBuildICmp(cg->b, LLVMIntEQ, d[i], zero, ""), "");
        first = LLVMBuildAnd(cg->b, first, ok, "");
    }
    return first;
}

/* void kiln.mm.gather(i64 t0, i64 t1, ptr block) (.swap: the swapped tile
 * form): a size-generic unit's NAME.gather (emit_gather_fn: the same tasks,
 * one panel each, in the same layout), the operand blk[MMB_WHICH] of the
 * block's product into its packed pointer. */
static LLVMValueRef helper_mm_gather(Cg *cg, bool swap) {
    LLVMBasicBlockRef saved = LLVMGetInsertBlock(cg->b);
    LLVMTypeRef ps[3] = {cg->t_i64, cg->t_i64, cg->t_ptr};
    LLVMValueRef fn;
    bool fresh, define = shared_helper(cg, swap ? "kiln.mm.gather.swap" : "kiln.mm.gather",
                                       LLVMFunctionType(cg->t_void, ps, 3, 0), &fn, &fresh);
    if (!define) return fn;
    Kc kc = {.cg = cg, .fn = fn};
    LLVMValueRef blk = LLVMGetParam(fn, 2);
    MmGeo g;
    geo_from_block(cg, blk, &g);
    MmShape sh = mm_shape_form(cg, swap);
    BlockOperand o = block_operand(cg, &g, &sh, blk);
    LLVMValueRef KC = ci64(cg, sh.kc), one = ci64(cg, 1);
    LLVMValueRef nkb = LLVMBuildUDiv(cg->b, iadd(cg, g.k, LLVMBuildSub(cg->b, KC, one, "")), KC, "");
    LLVMValueRef npan = LLVMBuildUDiv(cg->b, iadd(cg, o.lines, LLVMBuildSub(cg->b, o.w, one, "")), o.w, "");
    LLVMValueRef per_batch = imul(cg, nkb, npan), per = imul(cg, o.lines_p, g.k);
    TLoop lt;
    LLVMValueRef t = tloop_begin(&kc, &lt, LLVMGetParam(fn, 0), LLVMGetParam(fn, 1), 1, "task");
    LLVMValueRef bi = LLVMBuildUDiv(cg->b, t, per_batch, "bi"), r = LLVMBuildURem(cg->b, t, per_batch, "");
    LLVMValueRef pc = imul(cg, LLVMBuildUDiv(cg->b, r, npan, ""), KC);
    LLVMValueRef l0 = imul(cg, LLVMBuildURem(cg->b, r, npan, ""), o.w);
    IfBlock ib;
    if_begin(&kc, &ib, first_of_block_batch(cg, &g, &o, bi));
    LLVMValueRef kcv = imin(cg, KC, LLVMBuildSub(cg->b, g.k, pc, ""));
    LLVMValueRef nlv = imin(cg, o.w, LLVMBuildSub(cg->b, o.lines, l0, ""));
    LLVMValueRef base = iadd(cg, o.off, operand_batch(cg, &g, &o, false, bi));
    LLVMValueRef at = iadd(cg, imul(cg, operand_batch(cg, &g, &o, true, bi), per),
                           iadd(cg, imul(cg, pc, o.lines_p), imul(cg, l0, kcv)));
    LLVMValueRef to = elem_ptr(cg, cg->t_f32, o.dst, at);
    IfBlock iw, ip;
    LLVMValueRef window = LLVMBuildAnd(cg->b, o.is_b, g.conv, "");
    if_begin(&kc, &iw, window); /* a convolution's input under the window */
    LLVMValueRef wargs[8] = {o.src, base, pc, kcv, l0, nlv, to, blk};
    LLVMBuildCall2(cg->b, im2col_fn_type(cg), o.pack, wargs, 8, "");
    if_end(&kc, &iw);
    if_begin(&kc, &ip, LLVMBuildNot(cg->b, window, ""));
    LLVMValueRef from = iadd(cg, base, iadd(cg, imul(cg, pc, o.s_k), imul(cg, l0, o.s_line)));
    LLVMValueRef pargs[7] = {o.src, from, o.s_line, o.s_k, nlv, kcv, to};
    LLVMBuildCall2(cg->b, pack_fn_type(cg), o.pack, pargs, 7, "");
    if_end(&kc, &ip);
    if_end(&kc, &ib);
    tloop_end(&kc, &lt);
    LLVMBuildRetVoid(cg->b);
    if (saved) LLVMPositionBuilderAtEnd(cg->b, saved);
    return fn;
}

/* void kiln.mm.prepack(ptr block) (.swap): a size-generic unit's
 * NAME.prepack_a / _b (emit_prepack_fn, the same layout): the constant
 * operand blk[MMB_WHICH] packed whole, each distinct batch once. */
static LLVMValueRef helper_mm_prepack(Cg *cg, bool swap) {
    LLVMBasicBlockRef saved = LLVMGetInsertBlock(cg->b);
    LLVMValueRef fn;
    bool fresh, define = shared_helper(cg, swap ? "kiln.mm.prepack.swap" : "kiln.mm.prepack",
                                       LLVMFunctionType(cg->t_void, &cg->t_ptr, 1, 0), &fn, &fresh);
    if (!define) return fn;
    Kc kc = {.cg = cg, .fn = fn};
    LLVMValueRef blk = LLVMGetParam(fn, 0);
    MmGeo g;
    geo_from_block(cg, blk, &g);
    MmShape sh = mm_shape_form(cg, swap);
    BlockOperand o = block_operand(cg, &g, &sh, blk);
    LLVMValueRef per = imul(cg, o.lines_p, g.k), batch = slot_load(cg, blk, MMB_BATCH, cg->t_i64);
    TLoop lb, lpc;
    LLVMValueRef bi = tloop_begin(&kc, &lb, ci64(cg, 0), batch, 1, "batch");
    IfBlock ib;
    if_begin(&kc, &ib, first_of_block_batch(cg, &g, &o, bi));
    LLVMValueRef sbase = iadd(cg, o.off, operand_batch(cg, &g, &o, false, bi));
    LLVMValueRef dbase = imul(cg, operand_batch(cg, &g, &o, true, bi), per);
    LLVMValueRef pc = tloop_begin(&kc, &lpc, ci64(cg, 0), g.k, sh.kc, "pc");
    LLVMValueRef kcv = imin(cg, ci64(cg, sh.kc), LLVMBuildSub(cg->b, g.k, pc, ""));
    LLVMValueRef args[7] = {o.src,
                            iadd(cg, sbase, imul(cg, pc, o.s_k)),
                            o.s_line,
                            o.s_k,
                            o.lines,
                            kcv,
                            elem_ptr(cg, cg->t_f32, o.dst, iadd(cg, dbase, imul(cg, pc, o.lines_p)))};
    LLVMBuildCall2(cg->b, pack_fn_type(cg), o.pack, args, 7, "");
    tloop_end(&kc, &lpc);
    if_end(&kc, &ib);
    tloop_end(&kc, &lb);
    LLVMBuildRetVoid(cg->b);
    if (saved) LLVMPositionBuilderAtEnd(cg->b, saved);
    return fn;
}

/* NAME.epi.t: the tile epilogue `epi` (NAME.epi, inlined here) with the
 * kernel's nb buffers loaded from the argument block. */
static LLVMValueRef emit_epilogue_thunk(Cg *cg, const Kernel *k, LLVMValueRef epi, int nb, bool sized) {
    char *name = name2(k->name, ".epi.t");
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, epi_thunk_type(cg));
    free(name);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    add_fn_attr(cg, fn, cg->k_nounwind);
    LLVMRemoveEnumAttributeAtIndex(epi, LLVMAttributeFunctionIndex, cg->k_noinline);
    add_fn_attr(cg, epi, cg->k_alwaysinline);
    LLVMBasicBlockRef saved = LLVMGetInsertBlock(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry"));
    LLVMValueRef *args = xcalloc((size_t)nb + EPI_FIXED_ARGS + 1, sizeof(LLVMValueRef));
    LLVMValueRef blk = LLVMGetParam(fn, EPI_FIXED_ARGS);
    for (int i = 0; i < EPI_FIXED_ARGS; i++) args[i] = LLVMGetParam(fn, (unsigned)i);
    for (int i = 0; i < nb; i++) args[EPI_FIXED_ARGS + i] = slot_load(cg, blk, MMB_BUFS + i, cg->t_ptr);
    if (sized) args[EPI_FIXED_ARGS + nb] = slot_load(cg, blk, MMB_VALUES, cg->t_ptr);
    call_fn(cg, epi, args, nb + EPI_FIXED_ARGS + (sized ? 1 : 0));
    LLVMBuildRetVoid(cg->b);
    free(args);
    if (saved) LLVMPositionBuilderAtEnd(cg->b, saved);
    return fn;
}

/* NAME.taps, convolution cv's tap offsets in its padded image (conv_taps):
 * i32 [K], k = (c, kh, kw) -> (c * hp + kh * dh) * wp + kw * dw. */
static LLVMValueRef conv_tap_table(Cg *cg, const Kernel *k, const KConv *cv) {
    int64_t hp, wp, n = cv->c * cv->kh * cv->kw;
    kconv_padded_plane(cv, &hp, &wp);
    LLVMValueRef *offs = xcalloc((size_t)n, sizeof(LLVMValueRef));
    for (int64_t c = 0, i = 0; c < cv->c; c++)
        for (int64_t y = 0; y < cv->kh; y++)
            for (int64_t x = 0; x < cv->kw; x++)
                offs[i++] = ci32(cg, (int)((c * hp + y * cv->dh) * wp + x * cv->dw));
    LLVMTypeRef at = LLVMArrayType(cg->t_i32, (unsigned)n);
    char *name = name2(k->name, ".taps");
    LLVMValueRef tab = LLVMAddGlobal(cg->mod, at, name);
    free(name);
    LLVMSetInitializer(tab, LLVMConstArray(cg->t_i32, offs, (unsigned)n));
    LLVMSetGlobalConstant(tab, 1);
    LLVMSetLinkage(tab, LLVMInternalLinkage);
    free(offs);
    return tab;
}

/* The buffers (at most MM_PREFETCH_MAX: a hint, the first few) whose lines
 * the tiles of product kernel k prefetch for its epilogue, into prefetch:
 * those it reads at index o (KI_OUTER; *nread of them) or, reading none,
 * the large ones it writes there (for writing; with write_any, all). */
static int epilogue_prefetch(const KProgram *p, const Kernel *k, const KMatmul *mm, int *prefetch, int *nread,
                             bool write_any) {
    int n = 0;
    for (int i = 0; i < k->insts.len; i++) {
        const KInst *in = &k->insts.data[i];
        if (in->kind != KI_LOAD || in->b >= 0 || in->a < 0 || k->insts.data[in->a].kind != KI_OUTER) continue;
        if (in->buf < 0 || in->buf >= p->bufs.len || in->buf == mm->a_buf || in->buf == mm->b_buf) continue;
        bool seen = false;
        for (int j = 0; j < n; j++) seen = seen || prefetch[j] == in->buf;
        if (!seen) prefetch[n++] = in->buf;
    }
    *nread = n;
    for (int j = 0; *nread == 0 && j < k->stages.data[1].stores.len; j++) {
        const KStore *st = &k->stages.data[1].stores.data[j];
        /* (an image kept padded: its tiles' pixels, mapped into the planes) */
        bool padded = write_any && p->bufs.data[st->buf].pad_hw[0] > 0;
        if ((k->insts.data[st->index].kind == KI_OUTER || padded) &&
            (write_any || prefetch_for_writing(p, k, st->buf)))
            prefetch[n++] = st->buf;
    }
    return n < MM_PREFETCH_MAX ? n : MM_PREFETCH_MAX;
}

/* Declares NAME.mm(i64 ob, i64 oe, i64 c0, i64 c1, ptr noalias bufs...,
 * ptr noalias scratch, ptr Apk, ptr Bpk), the tiled body of kernel k (the
 * plain nest's, the Winograd form's), sets up kc on it (the buffers'
 * pointers: its parameters) and positions the builder in its entry block. */
static LLVMValueRef begin_mm_fn(Cg *cg, const Kernel *k, Kc *kc, const int *list, int nb) {
    kc_init(kc, cg, k);
    LLVMTypeRef *ps = xcalloc((size_t)nb + 7, sizeof(LLVMTypeRef));
    ps[0] = ps[1] = ps[2] = ps[3] = cg->t_i64;
    for (int i = 0; i < nb + 3; i++) ps[4 + i] = cg->t_ptr;
    char *name = name2(k->name, ".mm");
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, LLVMFunctionType(cg->t_void, ps, (unsigned)nb + 7, 0));
    free(name);
    free(ps);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    add_fn_attr(cg, fn, cg->k_nounwind);
    for (int i = 0; i < nb + 3; i++) {
        LLVMAddAttributeAtIndex(fn, (unsigned)(5 + i), LLVMCreateEnumAttribute(cg->ctx, cg->k_noalias, 0));
        if (i < nb) kc->bufptr[list[i]] = LLVMGetParam(fn, (unsigned)(4 + i));
    }
    kc->fn = fn;
    LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry"));
    return fn;
}

/* ------------------------------------------- Winograd F(2x2,3x3) (conv_wino) */

/* kiln.wino.u(ptr src, ptr dst, i64 w_off, i64 oc, i64 C, i64 np, i64 mr,
 * i64 ws0, i64 ws1, i64 ws2, i64 ws3): U = G g G^T of the weights at
 * src[w_off] (strides ws*), as emit_wino_prepack_fn lays it out: a shared
 * helper (see helper_wino_in). */
enum { WINO_U_ARGS = 11 };
static LLVMValueRef helper_wino_u(Cg *cg) {
    LLVMBasicBlockRef saved = LLVMGetInsertBlock(cg->b);
    LLVMTypeRef ps[WINO_U_ARGS];
    for (int i = 0; i < WINO_U_ARGS; i++) ps[i] = i < 2 ? cg->t_ptr : cg->t_i64;
    LLVMValueRef fn;
    if (!shared_void_helper(cg, "kiln.wino.u", ps, WINO_U_ARGS, &fn)) return fn;
    Kc kcs = {.cg = cg, .fn = fn}, *kc = &kcs;
    LLVMValueRef src = LLVMGetParam(fn, 0), dst = LLVMGetParam(fn, 1), w_off = LLVMGetParam(fn, 2);
    LLVMValueRef OC = LLVMGetParam(fn, 3), C = LLVMGetParam(fn, 4), np = LLVMGetParam(fn, 5);
    LLVMValueRef mr = LLVMGetParam(fn, 6), ws[4];
    for (int i = 0; i < 4; i++) ws[i] = LLVMGetParam(fn, (unsigned)(7 + i));
    TLoop lo, lc;
    LLVMValueRef o = tloop_begin(kc, &lo, ci64(cg, 0), imul(cg, np, mr), 1, "wo");
    LLVMValueRef real = LLVMBuildICmp(cg->b, LLVMIntSLT, o, OC, "");
    LLVMValueRef oc = sel(cg, real, o, ci64(cg, 0));
    LLVMValueRef panel = LLVMBuildUDiv(cg->b, o, mr, ""), lane = LLVMBuildURem(cg->b, o, mr, "");
    LLVMValueRef c = tloop_begin(kc, &lc, ci64(cg, 0), C, 1, "wc");
    LLVMValueRef base = iadd(cg, w_off, iadd(cg, imul(cg, oc, ws[0]), imul(cg, c, ws[1])));
    LLVMValueRef gw[3][3], s[4][3], u[4][4], half = cf(cg, 0.5), zero = cf(cg, 0.0);
    for (int y = 0; y < 3; y++)
        for (int x = 0; x < 3; x++)
            gw[y][x] =
                sel(cg, real,
                    load_f32(
                        cg, src,
                        iadd(cg, base, iadd(cg, imul(cg, ci64(cg, y), ws[2]), imul(cg, ci64(cg, x), ws[3])))),
                    zero);
    for (int x = 0; x < 3; x++) { /* G g: rows */
        s[0][x] = gw[0][x];
        s[1][x] = f_mul(cg, half, f_add(cg, f_add(cg, gw[0][x], gw[1][x]), gw[2][x]));
        s[2][x] = f_mul(cg, half, f_add(cg, f_sub(cg, gw[0][x], gw[1][x]), gw[2][x]));
        s[3][x] = gw[2][x];
    }
    for (int i = 0; i < 4; i++) { /* (G g) G^T: columns */
        u[i][0] = s[i][0];
        u[i][1] = f_mul(cg, half, f_add(cg, f_add(cg, s[i][0], s[i][1]), s[i][2]));
        u[i][2] = f_mul(cg, half, f_add(cg, f_sub(cg, s[i][0], s[i][1]), s[i][2]));
        u[i][3] = s[i][2];
    }
    for (int p = 0; p < WINO_P; p++) {
        LLVMValueRef at = iadd(
            cg, imul(cg, iadd(cg, imul(cg, iadd(cg, imul(cg, ci64(cg, p), np), panel), C), c), mr), lane);
        store_f32(cg, dst, at, u[p / 4][p % 4]);
    }
    loop_metadata(cg, tloop_end(kc, &lc), -1, 1);
    loop_metadata(cg, tloop_end(kc, &lo), -1, 1);
    LLVMBuildRetVoid(cg->b);
    if (saved) LLVMPositionBuilderAtEnd(cg->b, saved);
    return fn;
}

/* NAME.prepack_a(ptr bufs): U = G g G^T of every (output channel, input
 * channel), into bufs[slot] as U[p][panel][c][MR] (p = 4 i + j, the 16
 * positions; panels of MR output channels, the last one's missing rows
 * zeros): each position's A of the micro-kernel, packed (kiln.wino.u). */
static LLVMValueRef emit_wino_prepack_fn(Cg *cg, const Kernel *k, int ki, const KGemm *g) {
    const KConv *cv = g->conv;
    WinoGeo w = wino_geo(cg, g);
    Kc kc;
    LLVMValueRef src, dst;
    LLVMValueRef fn = begin_operand_fn(cg, k, ki, cv->w_buf, 0, ".prepack_a", &cg->t_ptr, 1, &kc, &src, &dst);
    const int64_t v[WINO_U_ARGS - 2] = {cv->w_off, cv->oc,    cv->c,     w.np,     w.mr,
                                        cv->ws[0], cv->ws[1], cv->ws[2], cv->ws[3]};
    LLVMValueRef args[WINO_U_ARGS] = {src, dst};
    for (int i = 0; i < WINO_U_ARGS - 2; i++) args[2 + i] = ci64(cg, v[i]);
    call_fn(cg, helper_wino_u(cg), args, WINO_U_ARGS);
    LLVMBuildRetVoid(cg->b);
    return fn;
}

static LLVMValueRef shuffle_lanes(Cg *cg, LLVMValueRef a, LLVMValueRef b, const int *lanes, int n) {
    LLVMValueRef *m = xcalloc((size_t)n, sizeof(LLVMValueRef));
    for (int i = 0; i < n; i++) m[i] = ci32(cg, lanes[i]);
    LLVMValueRef v = LLVMBuildShuffleVector(cg->b, a, b ? b : LLVMGetUndef(LLVMTypeOf(a)),
                                            LLVMConstVector(m, (unsigned)n), "");
    free(m);
    return v;
}

/* The Winograd form's transforms and U's prepack as shared helpers (in
 * the prebuilt helpers: their geometry is arguments), so that a Winograd
 * unit compiles its loops, its 16 micro-kernel calls and its epilogue
 * only: inline, their shuffles and vector arithmetic were most of the
 * unit's instruction selection (each unit ~10 ms of LLVM CPU more than the
 * taps unit it replaced; docs/performance.md, "Session 19: ResNet-50's
 * cold compile with Winograd").  The same operations in the same order
 * as inline: the same results, bit for bit. */

/* kiln.wino.in(ptr P, ptr V, i64 C, i64 wh, i64 ww, i64 oy0, i64 gn, i64
 * tw, i64 vps): the input transform of gn tile rows (output rows oy0,
 * oy0 + 2, ...) of the padded copy P (C planes of wh rows of ww floats)
 * into V[p * vps + c * WINO_NR + g * tw + tx], whole vectors of 16 tiles. */
static LLVMValueRef helper_wino_in(Cg *cg) {
    enum { VL = 16, NP = 9 };
    LLVMBasicBlockRef saved = LLVMGetInsertBlock(cg->b);
    LLVMTypeRef ps[NP] = {cg->t_ptr, cg->t_ptr, cg->t_i64, cg->t_i64, cg->t_i64,
                          cg->t_i64, cg->t_i64, cg->t_i64, cg->t_i64};
    LLVMValueRef fn;
    if (!shared_void_helper(cg, "kiln.wino.in", ps, NP, &fn)) return fn;
    Kc kcs = {.cg = cg, .fn = fn}, *kc = &kcs;
    LLVMValueRef P = LLVMGetParam(fn, 0), V = LLVMGetParam(fn, 1), C = LLVMGetParam(fn, 2);
    LLVMValueRef wh = LLVMGetParam(fn, 3), ww = LLVMGetParam(fn, 4), oy0 = LLVMGetParam(fn, 5);
    LLVMValueRef gn = LLVMGetParam(fn, 6), tw = LLVMGetParam(fn, 7), vps = LLVMGetParam(fn, 8);
    LLVMTypeRef vt = LLVMVectorType(cg->t_f32, VL);
    int even[16], odd[16];
    for (int i = 0; i < 16; i++) even[i] = 2 * i, odd[i] = 2 * i + 1;
    TLoop lc, lg, lx;
    LLVMValueRef c = tloop_begin(kc, &lc, ci64(cg, 0), C, 1, "wc");
    LLVMValueRef gi = tloop_begin(kc, &lg, ci64(cg, 0), gn, 1, "wg");
    LLVMValueRef oy = iadd(cg, oy0, imul(cg, gi, ci64(cg, 2)));
    LLVMValueRef rowp = imul(cg, iadd(cg, imul(cg, c, wh), oy), ww);
    LLVMValueRef vrow = iadd(cg, imul(cg, c, ci64(cg, WINO_NR)), imul(cg, gi, tw));
    LLVMValueRef tx0 = tloop_begin(kc, &lx, ci64(cg, 0), tw, VL, "wx");
    LLVMValueRef d[4][4], t[4][4], vv[16];
    for (int i = 0; i < 4; i++) { /* columns j, j + 2, ... of the tiles' rows: even and odd lanes */
        LLVMValueRef at = iadd(cg, iadd(cg, rowp, imul(cg, ci64(cg, i), ww)), imul(cg, tx0, ci64(cg, 2)));
        for (int j = 0; j < 4; j += 2) {
            LLVMValueRef lo = vec_load(cg, vt, P, iadd(cg, at, ci64(cg, j)), 4);
            LLVMValueRef hi = vec_load(cg, vt, P, iadd(cg, at, ci64(cg, j + VL)), 4);
            d[i][j] = shuffle_lanes(cg, lo, hi, even, VL), d[i][j + 1] = shuffle_lanes(cg, lo, hi, odd, VL);
        }
    }
    for (int j = 0; j < 4; j++) { /* B^T d */
        t[0][j] = f_sub(cg, d[0][j], d[2][j]);
        t[1][j] = f_add(cg, d[1][j], d[2][j]);
        t[2][j] = f_sub(cg, d[2][j], d[1][j]);
        t[3][j] = f_sub(cg, d[1][j], d[3][j]);
    }
    for (int i = 0; i < 4; i++) { /* (B^T d) B */
        vv[4 * i + 0] = f_sub(cg, t[i][0], t[i][2]);
        vv[4 * i + 1] = f_add(cg, t[i][1], t[i][2]);
        vv[4 * i + 2] = f_sub(cg, t[i][2], t[i][1]);
        vv[4 * i + 3] = f_sub(cg, t[i][1], t[i][3]);
    }
    /* whole vectors (a masked store was 10-15 % of the layer): the lanes
     * past the row's tiles are overwritten by the next row's, or lie past
     * the block's tiles (not stored), or past the position's last channel
     * (its spare row, wino_geo) */
    LLVMValueRef col = iadd(cg, vrow, tx0);
    for (int p = 0; p < WINO_P; p++) vec_store(cg, vv[p], V, iadd(cg, imul(cg, ci64(cg, p), vps), col), 4);
    loop_metadata(cg, tloop_end(kc, &lx), -1, 1);
    loop_metadata(cg, tloop_end(kc, &lg), -1, 1);
    loop_metadata(cg, tloop_end(kc, &lc), -1, 1);
    LLVMBuildRetVoid(cg->b);
    if (saved) LLVMPositionBuilderAtEnd(cg->b, saved);
    return fn;
}

/* kiln.wino.out(ptr M, ptr T0, ptr T1, i64 mrv, i64 mr): the output
 * transform of rows [0, mrv) of M[p][mr][WINO_NR] into the tiles' first and
 * second output rows, T0 and T1 (WINO_OUT_LD floats a channel, the tiles'
 * two pixels interleaved). */
static LLVMValueRef helper_wino_out(Cg *cg) {
    enum { VL = 16, NP = 5 };
    LLVMBasicBlockRef saved = LLVMGetInsertBlock(cg->b);
    LLVMTypeRef ps[NP] = {cg->t_ptr, cg->t_ptr, cg->t_ptr, cg->t_i64, cg->t_i64};
    LLVMValueRef fn;
    if (!shared_void_helper(cg, "kiln.wino.out", ps, NP, &fn)) return fn;
    Kc kcs = {.cg = cg, .fn = fn}, *kc = &kcs;
    LLVMValueRef Mb = LLVMGetParam(fn, 0), T[2] = {LLVMGetParam(fn, 1), LLVMGetParam(fn, 2)};
    LLVMValueRef mrv = LLVMGetParam(fn, 3), mr = LLVMGetParam(fn, 4);
    LLVMTypeRef vt = LLVMVectorType(cg->t_f32, VL);
    int inter[32];
    for (int i = 0; i < 16; i++) inter[2 * i] = i, inter[2 * i + 1] = 16 + i;
    LLVMValueRef pstride = imul(cg, mr, ci64(cg, WINO_NR));
    TLoop li;
    LLVMValueRef i = tloop_begin(kc, &li, ci64(cg, 0), mrv, 1, "wi");
    for (int v = 0; v < WINO_NR / VL; v++) {
        LLVMValueRef m[16], z[2][4], y[2][2];
        for (int p = 0; p < WINO_P; p++)
            m[p] = vec_load(cg, vt, Mb,
                            iadd(cg, iadd(cg, imul(cg, i, ci64(cg, WINO_NR)), imul(cg, ci64(cg, p), pstride)),
                                 ci64(cg, v * VL)),
                            64);
        for (int j = 0; j < 4; j++) { /* A^T m */
            z[0][j] = f_add(cg, f_add(cg, m[j], m[4 + j]), m[8 + j]);
            z[1][j] = f_sub(cg, f_sub(cg, m[4 + j], m[8 + j]), m[12 + j]);
        }
        for (int r = 0; r < 2; r++) { /* (A^T m) A */
            y[r][0] = f_add(cg, f_add(cg, z[r][0], z[r][1]), z[r][2]);
            y[r][1] = f_sub(cg, f_sub(cg, z[r][1], z[r][2]), z[r][3]);
            for (int h = 0; h < 2; h++) /* the tiles' two pixels interleaved */
                vec_store(cg, shuffle_lanes(cg, y[r][0], y[r][1], inter + h * VL, VL), T[r],
                          iadd(cg, imul(cg, i, ci64(cg, WINO_OUT_LD)), ci64(cg, (2 * v + h) * VL)), 64);
        }
    }
    loop_metadata(cg, tloop_end(kc, &li), -1, 1);
    LLVMBuildRetVoid(cg->b);
    if (saved) LLVMPositionBuilderAtEnd(cg->b, saved);
    return fn;
}

/* The body NAME.mm(ob, oe, c0, c1, bufs..., scratch, U, unused) of a
 * Winograd convolution: for each image of [ob, oe), its output channels
 * there and the output rows of columns [c0, c1): the rows' input copied
 * padded (kiln.conv.pad_rows), then per block of tile rows the input
 * transform of all its tiles into V[p][c][32], and per panel of MR output
 * channels the 16 products into M[p][MR][32] (in the L1), the output
 * transform into two row buffers (the tiles' first and second output
 * rows, each channel's pixels contiguous) and the kernel's row epilogue
 * (NAME.epi, as the taps' rows run it) per output row. */
static LLVMValueRef emit_wino_fn(Cg *cg, const Kernel *k, const KGemm *g, const int *list, int nb) {
    const KMatmul *mm = &g->mm;
    const KConv *cv = g->conv;
    const WinoGeo w = wino_geo(cg, g);
    const MmShape sh = ukernel_shape(cg);
    LLVMValueRef epi = emit_epilogue_fn(cg, k, list, nb, mm->n, (int)cv->ow, false, true, NULL);
    Kc kc;
    LLVMValueRef fn = begin_mm_fn(cg, k, &kc, list, nb);
    LLVMValueRef scratch = LLVMGetParam(fn, (unsigned)(4 + nb)), U = LLVMGetParam(fn, (unsigned)(5 + nb));
    LLVMValueRef X = kc.bufptr[cv->x_buf];
    LLVMValueRef ob = LLVMGetParam(fn, 0), oe = LLVMGetParam(fn, 1);
    LLVMValueRef c0 = LLVMGetParam(fn, 2), c1 = LLVMGetParam(fn, 3);
    LLVMValueRef P = align64(cg, scratch);
    LLVMValueRef V = elem_ptr(cg, cg->t_f32, P, ci64(cg, (w.plane_f + 15) / 16 * 16));
    LLVMValueRef Mb = elem_ptr(cg, cg->t_f32, V, ci64(cg, w.v_f));
    LLVMValueRef T0 = entry_alloca(&kc, w.mr * WINO_OUT_LD, "wino_y0");
    LLVMValueRef T1 = entry_alloca(&kc, w.mr * WINO_OUT_LD, "wino_y1");
    LLVMValueRef *eargs = xcalloc((size_t)nb + EPI_FIXED_ARGS, sizeof(LLVMValueRef));
    for (int i = 0; i < nb; i++) eargs[EPI_FIXED_ARGS + i] = kc.bufptr[list[i]];
    const int64_t MN = mm->m * mm->n, N = mm->n, OW = cv->ow;
    IfBlock nonempty;
    if_begin(&kc, &nonempty,
             LLVMBuildAnd(cg->b, LLVMBuildICmp(cg->b, LLVMIntSLT, ob, oe, ""),
                          LLVMBuildICmp(cg->b, LLVMIntSLT, c0, c1, ""), ""));
    LLVMValueRef b0 = LLVMBuildSDiv(cg->b, ob, ci64(cg, MN), "");
    LLVMValueRef b1 = iadd(
        cg, LLVMBuildSDiv(cg->b, LLVMBuildSub(cg->b, oe, ci64(cg, 1), ""), ci64(cg, MN), ""), ci64(cg, 1));
    LLVMValueRef oh0 = LLVMBuildSDiv(cg->b, c0, ci64(cg, OW), "oh0");
    LLVMValueRef oh1 = LLVMBuildSDiv(cg->b, LLVMBuildSub(cg->b, c1, ci64(cg, 1), ""), ci64(cg, OW), "oh1");
    LLVMValueRef ntr =
        iadd(cg, LLVMBuildSDiv(cg->b, LLVMBuildSub(cg->b, oh1, oh0, ""), ci64(cg, 2), ""), ci64(cg, 1));
    TLoop lb, lt, lo, le;
    LLVMValueRef b = tloop_begin(&kc, &lb, b0, b1, 1, "wb");
    LLVMValueRef img = imul(cg, b, ci64(cg, MN));
    LLVMValueRef lo_o = LLVMBuildSub(cg->b, imax(cg, ob, img), img, "");
    LLVMValueRef hi_o = LLVMBuildSub(cg->b, imin(cg, oe, iadd(cg, img, ci64(cg, MN))), img, "");
    LLVMValueRef m0 = LLVMBuildSDiv(cg->b, lo_o, ci64(cg, N), "");
    m0 = LLVMBuildSub(cg->b, m0, LLVMBuildSRem(cg->b, m0, ci64(cg, w.mr), ""), "m0");
    LLVMValueRef m1 = LLVMBuildSDiv(cg->b, iadd(cg, hi_o, ci64(cg, N - 1)), ci64(cg, N), "m1");
    /* the padded rows the chunk's tiles read */
    {
        const int64_t v[PAD_ARGS] = {cv->c, cv->h,     cv->w,     cv->ph, cv->pw, w.wh,
                                     w.ww,  cv->xs[1], cv->xs[2], cv->ow, 1,      4};
        LLVMValueRef args[5 + PAD_ARGS] = {X, iadd(cg, ci64(cg, cv->x_off), imul(cg, b, ci64(cg, cv->xs[0]))),
                                           c0, c1, P};
        for (int i = 0; i < PAD_ARGS; i++) args[5 + i] = ci64(cg, v[i]);
        call_fn(cg, helper_pad_rows(cg), args, 5 + PAD_ARGS);
    }
    LLVMValueRef t0 = tloop_begin(&kc, &lt, ci64(cg, 0), ntr, w.rows, "wt");
    LLVMValueRef gn = imin(cg, ci64(cg, w.rows), LLVMBuildSub(cg->b, ntr, t0, ""));
    LLVMValueRef ntiles = imul(cg, gn, ci64(cg, w.tw));
    { /* the input transform: V[p][c][g * tw + tx] */
        LLVMValueRef args[9] = {P,
                                V,
                                ci64(cg, cv->c),
                                ci64(cg, w.wh),
                                ci64(cg, w.ww),
                                iadd(cg, oh0, imul(cg, t0, ci64(cg, 2))),
                                gn,
                                ci64(cg, w.tw),
                                ci64(cg, (cv->c + 1) * WINO_NR)};
        call_fn(cg, helper_wino_in(cg), args, 9);
    }
    /* per panel of MR output channels: the 16 products, the output transform, the epilogue */
    LLVMValueRef o0 = tloop_begin(&kc, &lo, m0, m1, w.mr, "wo");
    LLVMValueRef mrv = imin(cg, ci64(cg, w.mr), LLVMBuildSub(cg->b, ci64(cg, mm->m), o0, ""));
    LLVMValueRef uk = ukernel_for(cg, &sh, mrv, ntiles, false, 0);
    LLVMValueRef panel = LLVMBuildSDiv(cg->b, o0, ci64(cg, w.mr), "");
    LLVMTypeRef ukt = ukernel_type(cg, false, 0);
    /* each product prefetches the next one's panel of U into the L2, a line
     * per k step and a bit (MR floats a step): U is read once per block of
     * tiles, from the L3 where it is larger than the L2 */
    { /* one call site in a loop over the positions (16 inline: ~2 ms more of instruction selection) */
        TLoop lp;
        LLVMValueRef p = tloop_begin(&kc, &lp, ci64(cg, 0), ci64(cg, WINO_P), 1, "wp");
        LLVMValueRef ap = elem_ptr(
            cg, cg->t_f32, U, imul(cg, iadd(cg, imul(cg, p, ci64(cg, w.np)), panel), ci64(cg, cv->c * w.mr)));
        LLVMValueRef last = LLVMBuildICmp(cg->b, LLVMIntEQ, p, ci64(cg, WINO_P - 1), "");
        LLVMValueRef next =
            iadd(cg, sel(cg, last, ci64(cg, 1), imul(cg, iadd(cg, p, ci64(cg, 1)), ci64(cg, w.np))), panel);
        LLVMValueRef pf = LLVMBuildGEP2(cg->b, cg->t_f32, U,
                                        (LLVMValueRef[]){imul(cg, next, ci64(cg, cv->c * w.mr))}, 1, "");
        LLVMValueRef args[9] = {ap,
                                elem_ptr(cg, cg->t_f32, V, imul(cg, p, ci64(cg, (cv->c + 1) * WINO_NR))),
                                ci64(cg, cv->c),
                                elem_ptr(cg, cg->t_f32, Mb, imul(cg, p, ci64(cg, w.mr * WINO_NR))),
                                ci64(cg, WINO_NR),
                                LLVMConstInt(cg->t_i1, 0, 0),
                                ap,
                                pf,
                                ci64(cg, w.mr * 4)};
        LLVMBuildCall2(cg->b, ukt, uk, args, 9, "");
        loop_metadata(cg, tloop_end(&kc, &lp), -1, 1);
    }
    { /* the output transform into the row buffers */
        LLVMValueRef args[5] = {Mb, T0, T1, mrv, ci64(cg, w.mr)};
        call_fn(cg, helper_wino_out(cg), args, 5);
    }
    {
        LLVMValueRef gi = tloop_begin(&kc, &le, ci64(cg, 0), gn, 1, "we");
        LLVMValueRef oy = iadd(cg, oh0, imul(cg, iadd(cg, t0, gi), ci64(cg, 2)));
        LLVMValueRef off = imul(cg, gi, ci64(cg, 2 * w.tw));
        for (int r = 0; r < 2; r++) {
            IfBlock ib;
            LLVMValueRef row = iadd(cg, oy, ci64(cg, r));
            if (r) if_begin(&kc, &ib, LLVMBuildICmp(cg->b, LLVMIntSLE, row, oh1, ""));
            LLVMValueRef fixed[EPI_FIXED_ARGS] = {iadd(cg, imul(cg, b, ci64(cg, mm->m)), o0),
                                                  imul(cg, row, ci64(cg, OW)),
                                                  mrv,
                                                  ci64(cg, OW),
                                                  c0,
                                                  c1,
                                                  ob,
                                                  oe,
                                                  elem_ptr(cg, cg->t_f32, r ? T1 : T0, off),
                                                  ci64(cg, WINO_OUT_LD)};
            memcpy(eargs, fixed, sizeof fixed);
            call_fn(cg, epi, eargs, nb + EPI_FIXED_ARGS);
            if (r) if_end(&kc, &ib);
        }
        loop_metadata(cg, tloop_end(&kc, &le), -1, 1);
    }
    loop_metadata(cg, tloop_end(&kc, &lo), -1, 1);
    loop_metadata(cg, tloop_end(&kc, &lt), -1, 1);
    loop_metadata(cg, tloop_end(&kc, &lb), -1, 1);
    if_end(&kc, &nonempty);
    LLVMBuildRetVoid(cg->b);
    free(eargs);
    kc_free(&kc);
    return fn;
}

/* The stem in a direct form (Cg.stem_direct, AMD Zen 5): a taps
 * convolution of stride 2 over a few input channels (ResNet's 7x7 3->64
 * stem), its output pixels in the vectors instead of broadcast.  Each
 * output row's KH input rows are de-interleaved into even and odd columns
 * (a stack copy per row), so that the 16 output pixels of a vector read
 * tap (c, kh, kw) as 16 contiguous floats of phase kw % 2 at column ow +
 * kw / 2; tiles of STEM_DIRECT_G channels (their weights broadcast from the
 * prepacked A, one K block) by STEM_DIRECT_NV vectors (24 accumulators)
 * sum the taps in order (the same sums, in the same order, as the swapped
 * taps tile: bit-identical results) into a row buffer, whose epilogue
 * (NAME.epi over whole rows) runs once per row and group.  The copy keeps
 * a chunk's last STEM_DIRECT_SLOTS input rows (each later row adds 2), the
 * next row's output lines are prefetched for writing and its input rows
 * STEM_DIRECT_AHEAD rows ahead.  No tile transposes, no tile buffer.  The swapped taps tile spent ~10 %
 * of the stem around its micro-kernel (the transposes, the row epilogue,
 * the nest); a harness of this form (bench/stem.c) ran 1.06-1.08x faster
 * than kiln's stem on one thread; in ResNet-18 and -50 (quiet, Zen 5, 1
 * and 2 threads, batch 1 and 8, normalised by the other kernels) the stem
 * ran 1.033-1.061x (docs/performance.md, "Session 18: the stem and the
 * stride-2 layers").  Constant geometry only, f32, one K block, prepacked
 * weights, rows a multiple of the vector; measured on Zen 5 only. */
enum {
    STEM_DIRECT_G = 8,
    STEM_DIRECT_NV = 3,
    STEM_DIRECT_MAX_C = 4,
    STEM_DIRECT_MAX_M = 128,
    STEM_DIRECT_SLOTS = 8,
    STEM_DIRECT_AHEAD = 2
};

static bool stem_direct(const Cg *cg, const KGemm *g, const MmShape *sh) {
    const KConv *cv = g->conv;
    return cg->stem_direct && cv && cg->vec_floats == 16 && sh->swap && cv->sh == 2 && cv->sw == 2 &&
           cv->dh == 1 && cv->dw == 1 && cv->groups == 1 && cv->c <= STEM_DIRECT_MAX_C && cv->xs[3] == 1 &&
           cv->kh <= STEM_DIRECT_SLOTS && cv->kh >= 2 && cv->ow % 16 == 0 && g->mm.m % STEM_DIRECT_G == 0 &&
           g->mm.m <= STEM_DIRECT_MAX_M && g->mm.k == cv->c * cv->kh * cv->kw && g->mm.k <= sh->kc &&
           sh->mr % STEM_DIRECT_G == 0 && !conv_taps_in_place(cv);
}

/* kiln.stem.deint(ptr X, i64 src, i64 srcf, ptr D, i64 dst, i64 PH, i64
 * pw, i64 W, i1 inside): emit_stem_direct's copy of one input row (X from
 * src, W floats; a row outside the image, !inside, zeros) de-interleaved
 * into D[dst + j] (even padded columns) and D[dst + PH + j] (odd), PH floats
 * each, in vectors of 16 from 32-float masked loads, and the prefetch of
 * the row at srcf (a line per 16 floats): a shared helper (in the prebuilt
 * helpers), its masks from pw and W at run time where the unit's copy had
 * them constant and unrolled the row (see helper_stem_tile). */
enum { STEM_DEINT_ARGS = 9 };
static LLVMValueRef helper_stem_deint(Cg *cg) {
    enum { VL = 16 };
    LLVMBasicBlockRef saved = LLVMGetInsertBlock(cg->b);
    LLVMTypeRef ps[STEM_DEINT_ARGS] = {cg->t_ptr, cg->t_i64, cg->t_i64, cg->t_ptr, cg->t_i64,
                                       cg->t_i64, cg->t_i64, cg->t_i64, cg->t_i1};
    LLVMValueRef fn;
    if (!shared_void_helper(cg, "kiln.stem.deint", ps, STEM_DEINT_ARGS, &fn)) return fn;
    Kc kcs = {.cg = cg, .fn = fn}, *kc = &kcs;
    LLVMValueRef X = LLVMGetParam(fn, 0), src = LLVMGetParam(fn, 1), srcf = LLVMGetParam(fn, 2);
    LLVMValueRef D = LLVMGetParam(fn, 3), dst = LLVMGetParam(fn, 4), PH = LLVMGetParam(fn, 5);
    LLVMValueRef pw = LLVMGetParam(fn, 6), W = LLVMGetParam(fn, 7), inside = LLVMGetParam(fn, 8);
    LLVMTypeRef vf = LLVMVectorType(cg->t_f32, VL), vw = LLVMVectorType(cg->t_f32, 2 * VL);
    LLVMTypeRef vi = LLVMVectorType(cg->t_i32, 2 * VL);
    TLoop lp, lj;
    { /* the row STEM_DIRECT_AHEAD output rows on */
        LLVMValueRef e = tloop_begin(kc, &lp, ci64(cg, 0), iadd(cg, W, ci64(cg, 15)), 16, "pf");
        LLVMValueRef at = iadd(cg, srcf, imin(cg, e, LLVMBuildSub(cg->b, W, ci64(cg, 1), "")));
        prefetch_at(cg, LLVMBuildGEP2(cg->b, cg->t_f32, X, &at, 1, ""), false, 3);
        loop_metadata(cg, tloop_end(kc, &lp), -1, 1);
    }
    LLVMValueRef ev[VL], od[VL], io[2 * VL];
    for (int l = 0; l < VL; l++) ev[l] = ci32(cg, 2 * l), od[l] = ci32(cg, 2 * l + 1);
    for (int l = 0; l < 2 * VL; l++) io[l] = ci32(cg, l);
    LLVMValueRef evm = LLVMConstVector(ev, VL), odm = LLVMConstVector(od, VL),
                 iota = LLVMConstVector(io, 2 * VL);
    LLVMValueRef j = tloop_begin(kc, &lj, ci64(cg, 0), PH, VL, "deint_j");
    /* padded columns 2j .. 2j + 31: input columns q = 2j - pw + l, lanes [lo, hi) */
    LLVMValueRef q0 = LLVMBuildSub(cg->b, imul(cg, j, ci64(cg, 2)), pw, "");
    LLVMValueRef lo = imax(cg, LLVMBuildSub(cg->b, ci64(cg, 0), q0, ""), ci64(cg, 0));
    LLVMValueRef hi = imin(cg, LLVMBuildSub(cg->b, W, q0, ""), ci64(cg, 2 * VL));
    LLVMBasicBlockRef load = LLVMAppendBasicBlockInContext(cg->ctx, fn, "deint_load");
    LLVMBasicBlockRef store = LLVMAppendBasicBlockInContext(cg->ctx, fn, "deint_store");
    LLVMBasicBlockRef from = LLVMGetInsertBlock(cg->b);
    LLVMBuildCondBr(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGT, hi, lo, ""), load, store);
    LLVMPositionBuilderAtEnd(cg->b, load);
    LLVMValueRef bound[2] = {lo, hi}, zeros = LLVMConstNull(vi);
    for (int i = 0; i < 2; i++) /* lo and hi in every lane */
        bound[i] = LLVMBuildShuffleVector(
            cg->b,
            LLVMBuildInsertElement(cg->b, LLVMGetUndef(vi), LLVMBuildTrunc(cg->b, bound[i], cg->t_i32, ""),
                                   ci32(cg, 0), ""),
            LLVMGetUndef(vi), zeros, "");
    LLVMValueRef m = LLVMBuildAnd(cg->b, LLVMBuildICmp(cg->b, LLVMIntSGE, iota, bound[0], ""),
                                  LLVMBuildICmp(cg->b, LLVMIntSLT, iota, bound[1], ""), "");
    LLVMValueRef at = iadd(cg, src, q0);
    LLVMValueRef ptr = LLVMBuildGEP2(cg->b, cg->t_f32, X, &at, 1, ""); /* masked lanes: never read */
    LLVMTypeRef ov[2] = {vw, cg->t_ptr};
    LLVMValueRef args[4] = {ptr, ci32(cg, ELEM_ALIGN), m, LLVMConstNull(vw)};
    LLVMValueRef w = intrin(cg, "llvm.masked.load", ov, 2, args, 4);
    LLVMValueRef even = LLVMBuildSelect(
        cg->b, inside, LLVMBuildShuffleVector(cg->b, w, LLVMGetUndef(vw), evm, ""), LLVMConstNull(vf), "");
    LLVMValueRef odd = LLVMBuildSelect(
        cg->b, inside, LLVMBuildShuffleVector(cg->b, w, LLVMGetUndef(vw), odm, ""), LLVMConstNull(vf), "");
    LLVMBasicBlockRef loaded = LLVMGetInsertBlock(cg->b);
    LLVMBuildBr(cg->b, store);
    LLVMPositionBuilderAtEnd(cg->b, store);
    even = phi2(cg, vf, "even", LLVMConstNull(vf), from, even, loaded);
    odd = phi2(cg, vf, "odd", LLVMConstNull(vf), from, odd, loaded);
    vec_store(cg, even, D, iadd(cg, dst, j), 4);
    vec_store(cg, odd, D, iadd(cg, dst, iadd(cg, PH, j)), 4);
    loop_metadata(cg, tloop_end(kc, &lj), -1, 1);
    LLVMBuildRetVoid(cg->b);
    if (saved) LLVMPositionBuilderAtEnd(cg->b, saved);
    return fn;
}

/* The stem's tiles of a 7-wide window as shared helpers (in the prebuilt
 * helpers), kiln.stem.k7nNV(ptr D, ptr apk, ptr rows, i64 PH, i64 wbase,
 * i64 MR, i64 C, i64 KH, i64 oh, i64 ow0, i64 r0, i64 ldr): stem_direct_tile's
 * sums of NV vectors (1 to STEM_DIRECT_NV) for G channels, over the taps
 * in the same order (c, then kh, then kw: the same bits), into rows from
 * r0.  Inline, a unit's three tiles were 392 FMAs and their loads, two
 * thirds of the stem unit's instruction selection (ResNet's stem unit
 * ~47 ms of LLVM CPU, the largest of a cold ResNet-50 b1; docs/performance.md,
 * "Session 19: ResNet-50's cold compile with Winograd").  Other widths
 * keep the inline tile. */
enum { STEM_HELPER_KW = 7, STEM_TILE_ARGS = 12 };
static LLVMValueRef helper_stem_tile(Cg *cg, int nv) {
    enum { G = STEM_DIRECT_G, NVM = STEM_DIRECT_NV, VL = 16, KW = STEM_HELPER_KW };
    LLVMBasicBlockRef saved = LLVMGetInsertBlock(cg->b);
    LLVMTypeRef ps[STEM_TILE_ARGS];
    for (int i = 0; i < STEM_TILE_ARGS; i++) ps[i] = i < 3 ? cg->t_ptr : cg->t_i64;
    char base[32];
    snprintf(base, sizeof base, "kiln.stem.k%dn%d", KW, nv);
    LLVMValueRef fn;
    if (!shared_void_helper(cg, base, ps, STEM_TILE_ARGS, &fn)) return fn;
    Kc kcs = {.cg = cg, .fn = fn}, *kc = &kcs;
    LLVMValueRef D = LLVMGetParam(fn, 0), apk = LLVMGetParam(fn, 1), rows = LLVMGetParam(fn, 2);
    LLVMValueRef PH = LLVMGetParam(fn, 3), wbase = LLVMGetParam(fn, 4), MR = LLVMGetParam(fn, 5);
    LLVMValueRef C = LLVMGetParam(fn, 6), KH = LLVMGetParam(fn, 7), oh = LLVMGetParam(fn, 8);
    LLVMValueRef ow0 = LLVMGetParam(fn, 9), r0 = LLVMGetParam(fn, 10), ldr = LLVMGetParam(fn, 11);
    LLVMTypeRef vf = LLVMVectorType(cg->t_f32, VL);
    LLVMValueRef zero = LLVMConstNull(vf), acc[G * NVM], phc[G * NVM], phk[G * NVM];
    Loop lc, lk;
    LLVMValueRef c = loop_begin(kc, &lc, ci64(cg, 0), C, "c");
    for (int i = 0; i < G * nv; i++) {
        phc[i] = LLVMBuildPhi(cg->b, vf, "acc");
        LLVMAddIncoming(phc[i], &zero, &lc.pre, 1);
    }
    LLVMValueRef kh = loop_begin(kc, &lk, ci64(cg, 0), KH, "kh");
    for (int i = 0; i < G * nv; i++) {
        phk[i] = LLVMBuildPhi(cg->b, vf, "acc");
        LLVMAddIncoming(phk[i], &phc[i], &lk.pre, 1);
        acc[i] = phk[i];
    }
    LLVMValueRef ck = iadd(cg, imul(cg, c, KH), kh);
    LLVMValueRef slot =
        LLVMBuildAnd(cg->b, iadd(cg, imul(cg, oh, ci64(cg, 2)), kh), ci64(cg, STEM_DIRECT_SLOTS - 1), "");
    LLVMValueRef drow = iadd(
        cg, imul(cg, iadd(cg, imul(cg, c, ci64(cg, STEM_DIRECT_SLOTS)), slot), imul(cg, PH, ci64(cg, 2))),
        ow0);
    for (int64_t kw = 0; kw < KW; kw++) {
        LLVMValueRef xv[NVM];
        LLVMValueRef at = iadd(cg, drow, ci64(cg, kw >> 1));
        if (kw & 1) at = iadd(cg, at, PH);
        for (int v = 0; v < nv; v++) xv[v] = vec_load(cg, vf, D, iadd(cg, at, ci64(cg, (int64_t)v * VL)), 4);
        LLVMValueRef t = iadd(cg, imul(cg, ck, ci64(cg, KW)), ci64(cg, kw));
        LLVMValueRef wt = iadd(cg, wbase, imul(cg, t, MR));
        for (int j = 0; j < G; j++) {
            LLVMValueRef b = splat(cg, load_f32(cg, apk, iadd(cg, wt, ci64(cg, j))), VL);
            for (int v = 0; v < nv; v++) acc[j * nv + v] = fma3(cg, b, xv[v], acc[j * nv + v]);
        }
    }
    loop_end(kc, &lk, phk, acc, G * nv, 0);
    loop_end(kc, &lc, phc, acc, G * nv, 0);
    for (int j = 0; j < G; j++)
        for (int v = 0; v < nv; v++)
            vec_store(
                cg, acc[j * nv + v], rows,
                iadd(cg, iadd(cg, r0, imul(cg, ci64(cg, j), ldr)), iadd(cg, ow0, ci64(cg, (int64_t)v * VL))),
                4);
    LLVMBuildRetVoid(cg->b);
    if (saved) LLVMPositionBuilderAtEnd(cg->b, saved);
    return fn;
}

/* One tile: channels [oc0, oc0 + G) of output row oh (its input rows in D),
 * nv vectors from column ow0, the sums into the row buffer rows. */
static void stem_direct_tile(Kc *kc, const MmGeo *geo, int MR, LLVMValueRef D, int64_t PH, LLVMValueRef apk,
                             LLVMValueRef oc0, LLVMValueRef ow0, int nv, LLVMValueRef rows, int64_t ldr,
                             LLVMValueRef m_lo, LLVMValueRef next_o, LLVMValueRef oh) {
    Cg *cg = kc->cg;
    const KConv *cv = geo->taps;
    enum { G = STEM_DIRECT_G, NVM = STEM_DIRECT_NV, VL = 16 };
    /* the tile's lines of the next output row, for writing (the output is
     * not in the caches: ResNet's batch 8 writes 25.7 MB) */
    for (int b = 0; b < geo->npf; b++) {
        if (geo->pf_pad[b][0] || !LLVMIsAConstantInt(geo->pf_size[b])) continue;
        for (int j = 0; j < G; j++)
            for (int v = 0; v < nv; v++) {
                LLVMValueRef o =
                    iadd(cg, iadd(cg, next_o, imul(cg, ci64(cg, j), geo->n)), ci64(cg, (int64_t)v * VL));
                prefetch_tile_line(cg, geo->pf[b], imul(cg, o, geo->pf_size[b]), true);
            }
    }
    const int64_t KH = cv->kh, KW = cv->kw, K = cv->c * KH * KW;
    LLVMTypeRef vf = LLVMVectorType(cg->t_f32, VL);
    /* weight (oc, t): A's panel of MR channels, t * MR + oc % MR in it */
    LLVMValueRef panel = LLVMBuildSub(cg->b, oc0, LLVMBuildURem(cg->b, oc0, ci64(cg, MR), ""), "");
    LLVMValueRef wbase = iadd(cg, imul(cg, panel, ci64(cg, K)), LLVMBuildURem(cg->b, oc0, ci64(cg, MR), ""));
    if (KW == STEM_HELPER_KW) { /* the shared helper's sums (helper_stem_tile) */
        LLVMValueRef args[STEM_TILE_ARGS] = {D,
                                             apk,
                                             rows,
                                             ci64(cg, PH),
                                             wbase,
                                             ci64(cg, MR),
                                             ci64(cg, cv->c),
                                             ci64(cg, KH),
                                             oh,
                                             ow0,
                                             imul(cg, LLVMBuildSub(cg->b, oc0, m_lo, ""), ci64(cg, ldr)),
                                             ci64(cg, ldr)};
        call_fn(cg, helper_stem_tile(cg, nv), args, STEM_TILE_ARGS);
        return;
    }
    LLVMValueRef zero = LLVMConstNull(vf), acc[G * NVM], phis[G * NVM], next[G * NVM];
    Loop l;
    LLVMValueRef ck = loop_begin(kc, &l, ci64(cg, 0), ci64(cg, cv->c * KH), "ck");
    for (int i = 0; i < G * nv; i++) {
        phis[i] = LLVMBuildPhi(cg->b, vf, "acc");
        LLVMAddIncoming(phis[i], &zero, &l.pre, 1);
        acc[i] = phis[i];
    }
    /* (c, kh) = (ck / KH, ck % KH): padded row 2 * oh + kh, in slot (2 * oh + kh) % SLOTS of
     * channel c's rows in D, 2 * PH floats each */
    LLVMValueRef c = LLVMBuildUDiv(cg->b, ck, ci64(cg, KH), ""),
                 kh = LLVMBuildURem(cg->b, ck, ci64(cg, KH), "");
    LLVMValueRef slot =
        LLVMBuildAnd(cg->b, iadd(cg, imul(cg, oh, ci64(cg, 2)), kh), ci64(cg, STEM_DIRECT_SLOTS - 1), "");
    LLVMValueRef drow =
        iadd(cg, imul(cg, iadd(cg, imul(cg, c, ci64(cg, STEM_DIRECT_SLOTS)), slot), ci64(cg, 2 * PH)), ow0);
    for (int64_t kw = 0; kw < KW; kw++) {
        LLVMValueRef xv[NVM];
        LLVMValueRef at = iadd(cg, drow, ci64(cg, (kw & 1) * PH + (kw >> 1)));
        for (int v = 0; v < nv; v++) xv[v] = vec_load(cg, vf, D, iadd(cg, at, ci64(cg, (int64_t)v * VL)), 4);
        LLVMValueRef t = iadd(cg, imul(cg, ck, ci64(cg, KW)), ci64(cg, kw));
        LLVMValueRef wt = iadd(cg, wbase, imul(cg, t, ci64(cg, MR)));
        for (int j = 0; j < G; j++) {
            LLVMValueRef b = splat(cg, load_f32(cg, apk, iadd(cg, wt, ci64(cg, j))), VL);
            for (int v = 0; v < nv; v++) acc[j * nv + v] = fma3(cg, b, xv[v], acc[j * nv + v]);
        }
    }
    for (int i = 0; i < G * nv; i++) next[i] = acc[i];
    loop_end(kc, &l, phis, next, G * nv, 0);
    /* channel oc0 + j's row in the buffer: (oc0 + j - m_lo) * ldr */
    LLVMValueRef r0 = imul(cg, LLVMBuildSub(cg->b, oc0, m_lo, ""), ci64(cg, ldr));
    for (int j = 0; j < G; j++)
        for (int v = 0; v < nv; v++)
            vec_store(cg, next[j * nv + v], rows,
                      iadd(cg, iadd(cg, r0, ci64(cg, j * ldr)), iadd(cg, ow0, ci64(cg, (int64_t)v * VL))), 4);
}

/* NAME.mm's body for stem_direct: the rows of [ob, oe) and the columns
 * [c0, c1) (whole output rows, llvm_column_grain) as emit_mm_nest would
 * compute them, through the same epilogue (NAME.epi over whole rows). */
static void emit_stem_direct(Kc *kc, const MmShape *sh, const MmGeo *geo, LLVMValueRef ob, LLVMValueRef oe,
                             LLVMValueRef c0, LLVMValueRef c1) {
    Cg *cg = kc->cg;
    const KConv *cv = geo->taps;
    enum { G = STEM_DIRECT_G, NVM = STEM_DIRECT_NV, VL = 16 };
    const int64_t C = cv->c, KH = cv->kh, OW = cv->ow, M = geo->mm ? geo->mm->m : 0;
    const int64_t PH = (OW + (cv->kw - 1) / 2 + VL - 1) / VL * VL; /* a phase row's floats */
    const int64_t ldr = OW;                                        /* the row buffer's stride */
    LLVMValueRef D = entry_alloca(kc, C * STEM_DIRECT_SLOTS * 2 * PH + 2 * VL, "phases");
    LLVMValueRef rows = entry_alloca(kc, M * ldr, "rows");
    LLVMValueRef cN = geo->n, cM = geo->m;
    TLoop lb, lr, lc, lt, lg;
    NestRows nr = nest_rows_begin(kc, &lb, ob, oe, c0, c1, cN, cM);
    LLVMValueRef bi = nr.bi, brow = nr.brow, bm0 = nr.bm0, bm1 = nr.bm1;
    /* groups of G channels from a multiple of G (rows before ob: computed, not stored) */
    bm0 = LLVMBuildSub(cg->b, bm0, LLVMBuildURem(cg->b, bm0, ci64(cg, G), ""), "bm0g");
    LLVMValueRef bbase = iadd(cg, geo->b_off, geo_batch(cg, geo, 1, false, bi));
    LLVMValueRef apk = elem_ptr(cg, cg->t_f32, geo->Apk,
                                imul(cg, geo_batch(cg, geo, 0, true, bi), imul(cg, geo->mp, geo->k)));
    /* the output rows holding columns [c0, c1) */
    LLVMValueRef cOW = ci64(cg, OW);
    LLVMValueRef oh0 = LLVMBuildUDiv(cg->b, c0, cOW, "");
    LLVMValueRef oh1 = LLVMBuildUDiv(cg->b, iadd(cg, c1, ci64(cg, OW - 1)), cOW, "");
    LLVMValueRef oh = tloop_begin(kc, &lr, oh0, oh1, 1, "orow");
    /* the row's input rows ih = oh*2 - ph + kh, de-interleaved: D[(c*KH + kh)*2*PH + phase*PH + j] =
     * xpad[c][ih][2j + phase] (xpad: the input padded by pw columns; rows outside the image zero) */
    {
        /* a chunk's first row copies its KH rows; every later one the 2 rows it adds (stride 2) */
        LLVMValueRef kh0 = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, oh, oh0, ""), ci64(cg, 0),
                                           ci64(cg, KH - 2), "");
        TLoop lk;
        LLVMValueRef c = tloop_begin(kc, &lc, ci64(cg, 0), ci64(cg, C), 1, "deint_c");
        LLVMValueRef kh = tloop_begin(kc, &lk, kh0, ci64(cg, KH), 1, "deint_kh");
        LLVMValueRef pr = iadd(cg, imul(cg, oh, ci64(cg, 2)), kh);
        LLVMValueRef ih = iadd(cg, pr, ci64(cg, -cv->ph));
        LLVMValueRef inside = LLVMBuildICmp(cg->b, LLVMIntULT, ih, ci64(cg, cv->h), "");
        /* a row outside reads row 0 with no lanes on */
        LLVMValueRef ihc = LLVMBuildSelect(cg->b, inside, ih, ci64(cg, 0), "");
        LLVMValueRef src =
            iadd(cg, iadd(cg, bbase, imul(cg, c, ci64(cg, cv->xs[1]))), imul(cg, ihc, ci64(cg, cv->xs[2])));
        LLVMValueRef slot = LLVMBuildAnd(cg->b, pr, ci64(cg, STEM_DIRECT_SLOTS - 1), "");
        LLVMValueRef dst =
            imul(cg, iadd(cg, imul(cg, c, ci64(cg, STEM_DIRECT_SLOTS)), slot), ci64(cg, 2 * PH));
        /* the row STEM_DIRECT_AHEAD output rows on (from memory at batch 8: 4.8 MB of input)
         * prefetched, the row copied (kiln.stem.deint) */
        LLVMValueRef ihf = iadd(cg, ih, ci64(cg, 2 * STEM_DIRECT_AHEAD));
        LLVMValueRef ihfc = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntULT, ihf, ci64(cg, cv->h), ""),
                                            ihf, ci64(cg, 0), "");
        LLVMValueRef srcf =
            iadd(cg, iadd(cg, bbase, imul(cg, c, ci64(cg, cv->xs[1]))), imul(cg, ihfc, ci64(cg, cv->xs[2])));
        LLVMValueRef args[STEM_DEINT_ARGS] = {
            geo->B, src, srcf, D, dst, ci64(cg, PH), ci64(cg, cv->pw), ci64(cg, cv->w), inside};
        call_fn(cg, helper_stem_deint(cg), args, STEM_DEINT_ARGS);
        tloop_end(kc, &lk);
        tloop_end(kc, &lc);
    }
    /* the row's tiles, a group of G channels at a time (its input rows, its 9 KB of weights and its
     * rows of sums stay in the L1), then the group's epilogue */
    /* a row's vectors in tiles of NVM (3), the last ones of 2 where 3 do not divide them (7 = 3 + 2 + 2:
     * a tile of one vector, 8 accumulators, ran its FMAs 26 % slower) */
    const int64_t nvec = OW / VL;
    int64_t full = nvec / NVM, rest = nvec % NVM, twos = 0;
    if (rest == 1 && full > 0)
        full--, twos = 2, rest = 0;
    else if (rest == 2)
        twos = 1, rest = 0;
    LLVMValueRef m_lo = bm0;
    /* output element (oc, oh + 1, ow) of this image */
#define next_o(oc, ow)                                                                                       \
    iadd(cg, iadd(cg, imul(cg, iadd(cg, brow, (oc)), cN), imul(cg, iadd(cg, oh, ci64(cg, 1)), cOW)), (ow))
    LLVMValueRef oc0 = tloop_begin(kc, &lg, bm0, bm1, G, "cgroup");
    if (full > 0) {
        LLVMValueRef tt = tloop_begin(kc, &lt, ci64(cg, 0), ci64(cg, full), 1, "tile");
        LLVMValueRef ow0 = imul(cg, tt, ci64(cg, NVM * VL));
        stem_direct_tile(kc, geo, sh->mr, D, PH, apk, oc0, ow0, NVM, rows, ldr, m_lo, next_o(oc0, ow0), oh);
        tloop_end(kc, &lt);
    }
    for (int64_t t2 = 0; t2 < twos + (rest > 0); t2++) {
        LLVMValueRef ow0 = ci64(cg, (full * NVM + t2 * 2) * VL);
        const int nv = t2 < twos ? 2 : (int)rest;
        stem_direct_tile(kc, geo, sh->mr, D, PH, apk, oc0, ow0, nv, rows, ldr, m_lo, next_o(oc0, ow0), oh);
    }
    LLVMValueRef sums =
        elem_ptr(cg, cg->t_f32, rows, imul(cg, LLVMBuildSub(cg->b, oc0, m_lo, ""), ci64(cg, ldr)));
    LLVMValueRef fixed[EPI_FIXED_ARGS] = {iadd(cg, brow, oc0),
                                          imul(cg, oh, cOW),
                                          imin(cg, ci64(cg, G), LLVMBuildSub(cg->b, bm1, oc0, "")),
                                          cOW,
                                          c0,
                                          c1,
                                          ob,
                                          oe,
                                          sums,
                                          ci64(cg, ldr)};
    call_epilogue(cg, geo, fixed);
    tloop_end(kc, &lg);
#undef next_o
    tloop_end(kc, &lr);
    tloop_end(kc, &lb);
    LLVMBuildRetVoid(cg->b);
}

/* The tiled body NAME.mm(ob, oe, c0, c1, bufs..., scratch, packed A, packed
 * B): the elements of [ob, oe) in the output columns [c0, c1).  A
 * size-generic product's fills its argument block and calls the nest of
 * its form; a short one (or one of more than two batch dims) is the nest
 * itself, its geometry constant and its epilogue inline (or NAME.epi). */
static LLVMValueRef emit_matmul_fn(Cg *cg, const Kernel *k, const KGemm *g, const int *list, int nb) {
    if (conv_wino(cg, g)) return emit_wino_fn(cg, k, g, list, nb);
    const KMatmul *mm = &g->mm;
    const KProgram *p = cg->p;
    MmShape sh = mm_shape(cg, g);
    const Prepack pp = gemm_prepack(cg, g);
    /* B packed here, in one K block, from lines along its columns (a 1x1
     * convolution's input): the next block's lines are prefetched while
     * this one's tiles run (emit_mm_nest), in blocks of at most
     * NEXT_BLOCK_NC columns, so that they are still in the L2 when packed
     * (prefetch_next_block) */
    const bool prefetch_next = prefetch_next_block(p, g, pp.b, mm->k > sh.kc, sh.swap);
    /* a convolution read in place (conv_taps) has a nest of its own */
    const bool taps = conv_taps(p, g);
    KilnDType adt = p->bufs.data[mm->a_buf].dtype, bdt = p->bufs.data[mm->b_buf].dtype;
    LLVMValueRef pack_a = pp.a ? NULL : helper_pack(cg, adt, sh.mr);
    LLVMValueRef pack_b = pp.b || taps ? NULL
                          : g->conv    ? kernel_im2col(cg, k, bdt, sh.nr, false)
                                       : helper_pack(cg, bdt, sh.nr);

    /* a convolution read in place: its epilogue over whole output rows, whose
     * lines its tiles prefetch for writing whatever the output's size (the
     * row's stores waited on them: 3.7 % of a 3x3 64->64 layer at 56x56, 800
     * KB out, 1.4 % prefetched); a swapped product's over whole rows of the
     * product (plane_rows: the nest's row buffer for the widest, flag
     * MMF_ROWS), their width the constant N here */
    const int64_t row_ld = taps && mm->k >= EPI_OUTLINE_MIN_K ? conv_row_ld(cg, g->conv) : 0;
    const bool generic = mm_generic(g) && !prefetch_next && !taps && sh.kc == ukernel_shape(cg).kc;
    int *prefetch = xcalloc((size_t)p->bufs.len + 1, sizeof(int)), nread;
    const int nprefetch = epilogue_prefetch(p, k, mm, prefetch, &nread, row_ld > 0);
    const bool epi_inline =
        mm->k < EPI_OUTLINE_MIN_K || (!generic && !taps && !sh.swap && mm->k <= EPI_INLINE_OWN_NEST_MAX_K);
    LLVMValueRef epilogue =
        epi_inline         ? NULL
        : row_ld           ? emit_epilogue_fn(cg, k, list, nb, mm->n, (int)g->conv->ow, false, true, NULL)
        : plane_rows(p, g) ? emit_epilogue_fn(cg, k, list, nb, mm->n, (int)mm->n, false, true, NULL)
                           : emit_epilogue_fn(cg, k, list, nb, mm->n, sh.nr, sh.swap, false, NULL);
    LLVMValueRef thunk = generic ? emit_epilogue_thunk(cg, k, epilogue, nb, false) : NULL;
    LLVMValueRef nest = generic ? helper_mm_nest(cg, sh.swap, swap_one_panel(cg, g)) : NULL;
    Kc kc;
    LLVMValueRef fn = begin_mm_fn(cg, k, &kc, list, nb);
    LLVMValueRef scratch = LLVMGetParam(fn, (unsigned)(4 + nb));
    LLVMValueRef Apk = LLVMGetParam(fn, (unsigned)(5 + nb)), Bpk = LLVMGetParam(fn, (unsigned)(6 + nb));
    LLVMValueRef A = kc.bufptr[mm->a_buf], B = kc.bufptr[mm->b_buf];
    LLVMValueRef ob = LLVMGetParam(fn, 0), oe = LLVMGetParam(fn, 1);
    LLVMValueRef c0 = LLVMGetParam(fn, 2), c1 = LLVMGetParam(fn, 3);
    int64_t v[MMB_FLAGS + 1];
    mm_block_values(cg, g, v);
    if (nread == 0 && nprefetch > 0) v[MMB_FLAGS] |= MMF_PREFETCH_WRITE;
    if (generic) {
        LLVMValueRef blk = LLVMBuildArrayAlloca(cg->b, cg->t_i64, ci64(cg, MMB_BUFS + nb), "block");
        for (int s = 0; s <= MMB_FLAGS; s++) slot_store(cg, blk, s, ci64(cg, v[s]));
        LLVMValueRef none = LLVMConstNull(cg->t_ptr);
        LLVMValueRef ptrs[7] = {A, B, Apk, Bpk, pack_a ? pack_a : none, pack_b ? pack_b : none, thunk};
        for (int s = 0; s < 7; s++) slot_store(cg, blk, MMB_A + s, ptrs[s]);
        slot_store(cg, blk, MMB_NPF, ci64(cg, nprefetch));
        for (int b = 0; b < MM_PREFETCH_MAX; b++) {
            KilnDType dt = b < nprefetch ? p->bufs.data[prefetch[b]].dtype : KILN_F32;
            slot_store(cg, blk, MMB_PF + b, b < nprefetch ? kc.bufptr[prefetch[b]] : none);
            slot_store(cg, blk, MMB_PF_SIZE + b, ci64(cg, b < nprefetch ? (int64_t)kiln_dtype_size(dt) : 0));
        }
        for (int i = 0; i < nb; i++) slot_store(cg, blk, MMB_BUFS + i, kc.bufptr[list[i]]);
        if (g->conv) store_conv_slots(cg, blk, g->conv);
        LLVMValueRef args[6] = {ob, oe, c0, c1, scratch, blk};
        call_fn(cg, nest, args, 6);
        LLVMBuildRetVoid(cg->b);
    } else {
        MmGeo geo = {.mm = mm, .A = A, .B = B, .Apk = Apk, .Bpk = Bpk, .pack_a = pack_a, .pack_b = pack_b};
        if (g->conv && !pp.b && !taps) geo.cblk = conv_block(cg, g->conv);
        if (taps) {
            geo.taps = g->conv;
            geo.tap_tab = conv_tap_table(cg, k, g->conv);
            geo.b_area = b_area(cg, g, sh.kc * v[MMB_NCP] * 4);
            /* column blocks of whole rows when the rows' tiles are not
             * the micro-kernel's width (tiles of 7 or 14 pixels: none ends
             * inside a tile), and, as before session 14,
             * when rows are not a multiple of 4 pixels (on AVX2 and SSE,
             * whose tiles are narrower than 7) */
            if (g->conv->ow % 4 || conv_taps_tile(cg, g->conv) != ukernel_shape(cg).mr)
                geo.nc = sh.nc / g->conv->ow * g->conv->ow;
        }
        for (int s = 0; s <= MMB_RG; s++) *geo_ints(&geo, s) = ci64(cg, v[s]);
        for (int f = 0; f < MMF_COUNT; f++) *geo_flag(&geo, f) = LLVMConstInt(cg->t_i1, (v[MMB_FLAGS] >> f) & 1, 0);
        LLVMValueRef *extra = xcalloc((size_t)nb + 1, sizeof(LLVMValueRef));
        for (int i = 0; i < nb; i++) extra[i] = kc.bufptr[list[i]];
        geo.npf = nprefetch;
        geo.prefetch_next = prefetch_next;
        geo.rows_outer = rows_outer(g, &sh, nread > 0);
        if (prefetch_next) geo.nc = next_block_columns(mm->n, sh.nr);
        for (int b = 0; b < nprefetch; b++) {
            geo.pf[b] = kc.bufptr[prefetch[b]];
            geo.pf_size[b] = ci64(cg, (int64_t)kiln_dtype_size(p->bufs.data[prefetch[b]].dtype));
            memcpy(geo.pf_pad[b], p->bufs.data[prefetch[b]].pad_hw, sizeof geo.pf_pad[b]);
        }
        geo.row_ld = row_ld;
        geo.epi_inline = !epilogue, geo.epi_n = mm->n;
        geo.epi = epilogue, geo.epi_extra = extra, geo.nextra = nb;
        geo.epi_type = epilogue ? LLVMGlobalGetValueType(epilogue) : NULL;
        if (taps && row_ld > 0 && epilogue && known_bool(geo.packed_a) == 1 && stem_direct(cg, g, &sh))
            emit_stem_direct(&kc, &sh, &geo, ob, oe, c0, c1);
        else
            emit_mm_nest(&kc, &sh, &geo, ob, oe, c0, c1, scratch);
        free(extra);
    }
    kc_free(&kc);
    free(prefetch);
    return fn;
}

/* ---------------------------------------------- size-generic product units
 *
 * A unit of runtime/cpu_code.c (Cg.sized) whose kernel is a product that
 * runs a generic nest (mm_generic, and not the next-B-block prefetching
 * form) reads every size from its table: bufs[llvm_values_slot(p)] holds
 * the kernel's VALUES (llvm_kernel_sizes: the argument block's integer
 * slots, then its epilogue's constants).  Its functions are
 *     NAME, NAME.cols   fill the block (NAME.block) and call the nest;
 *     NAME.gather       fills it and calls kiln.mm.gather (one operand);
 *     NAME.prepack_a/b  fill it and call kiln.mm.prepack;
 *     NAME.epi.t        the epilogue, its constants from the values;
 * so the code depends only on the kernel's FORM (llvm_kernel_sizes' form
 * words: tile form, operand dtypes, what is packed or gathered, im2col
 * form, the epilogue's instructions with those constants left out), and
 * one unit serves every kernel of that form, whatever its sizes. */

static bool kernel_sized(const Cg *cg, const Kernel *k, KGemm *g) {
    if (cg->aot || !gemm_tiled(cg, k, g) || g->mm.nbatch > 2 || conv_taps(cg->p, g)) return false;
    MmShape sh = mm_shape(cg, g);
    Prepack pp = gemm_prepack(cg, g);
    return sh.kc == ukernel_shape(cg).kc && !prefetch_next_block(cg->p, g, pp.b, g->mm.k > sh.kc, sh.swap);
}

/* Whether kernel k runs the direct form reading its channels' sizes from
 * its values (DirectGeo): every direct kernel of a unit of cpu_code.c. */
static bool direct_sized(const Cg *cg, const Kernel *k) {
    KGemm g;
    return !cg->aot && direct_ok(cg, k) && !gemm_tiled(cg, k, &g) && !pool_rows_ok(cg, k);
}

int llvm_values_slot(const KProgram *p) { return p->bufs.len + 1 + 2 * p->kernels.len; }

/* Loads table[slot] (a pointer). */
static LLVMValueRef table_ptr(Cg *cg, LLVMValueRef table, int slot) {
    return LLVMBuildLoad2(cg->b, cg->t_ptr, elem_ptr(cg, cg->t_ptr, table, ci64(cg, slot)), "");
}

/* What a sized product's functions share: its block's pointers. */
typedef struct {
    LLVMValueRef fill, nest, pack_a, pack_b, thunk;
    int nb, npf, pf[MM_PREFETCH_MAX];
    bool swap;
    bool own_nest;   /* K < EPI_OUTLINE_MIN_K: NAME.nest, the epilogue inline (emit_sized_nest) */
    int rows_outer;  /* its tiles a row panel at a time (rows_outer; a fact of its form) */
} SizedProduct;

/* The epilogue operands a sized product's tiles may prefetch (the block's
 * MMB_PF*, its values' MMB_NPF of them): those it reads at o; else every
 * buffer it stores at o, of which the values say how many are prefetched
 * for writing (*npass: all or none, by their size, prefetch_for_writing),
 * or, when only some are, those (then a fact of the form: *mixed). */
static int sized_prefetch(const KProgram *p, const Kernel *k, const KMatmul *mm, int *list, int *nread,
                          int *npass, bool *mixed) {
    int n = epilogue_prefetch(p, k, mm, list, nread, false);
    *npass = n, *mixed = false;
    if (*nread > 0) return n;
    int at_o[MM_PREFETCH_MAX], c = 0; /* the buffers stored at o */
    for (int j = 0; j < k->stages.data[1].stores.len && c < MM_PREFETCH_MAX; j++) {
        const KStore *st = &k->stages.data[1].stores.data[j];
        if (k->insts.data[st->index].kind == KI_OUTER) at_o[c++] = st->buf;
    }
    if (n > 0 && n < c) { /* some: the list epilogue_prefetch made */
        *mixed = true;
        return n;
    }
    memcpy(list, at_o, sizeof(int) * (size_t)c);
    return c;
}

/* void NAME.block(ptr table, ptr blk): kernel ki's argument block, its
 * integers copied from the values, its pointers from the table. */
static LLVMValueRef emit_block_fill(Cg *cg, const Kernel *k, int ki, const KGemm *g, const int *list,
                                    const SizedProduct *sp) {
    LLVMTypeRef ps[2] = {cg->t_ptr, cg->t_ptr};
    char *name = name2(k->name, ".block");
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, LLVMFunctionType(cg->t_void, ps, 2, 0));
    free(name);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    add_fn_attr(cg, fn, cg->k_nounwind);
    LLVMBasicBlockRef saved = LLVMGetInsertBlock(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry"));
    const KProgram *p = cg->p;
    LLVMValueRef table = LLVMGetParam(fn, 0), blk = LLVMGetParam(fn, 1);
    LLVMValueRef values = table_ptr(cg, table, llvm_values_slot(p));
    LLVMBuildMemCpy(cg->b, blk, 8, values, 8, ci64(cg, MMB_VALUES * 8));
    LLVMValueRef none = LLVMConstNull(cg->t_ptr);
    LLVMValueRef ptrs[7] = {table_ptr(cg, table, g->mm.a_buf),
                            table_ptr(cg, table, g->mm.b_buf),
                            table_ptr(cg, table, llvm_prepack_slot(p, ki, 0)),
                            table_ptr(cg, table, llvm_prepack_slot(p, ki, 1)),
                            sp->pack_a,
                            sp->pack_b,
                            sp->thunk};
    for (int s = 0; s < 7; s++) slot_store(cg, blk, MMB_A + s, ptrs[s]);
    for (int b = 0; b < MM_PREFETCH_MAX; b++) { /* (how many: the values' MMB_NPF) */
        KilnDType dt = b < sp->npf ? p->bufs.data[sp->pf[b]].dtype : KILN_F32;
        slot_store(cg, blk, MMB_PF + b, b < sp->npf ? table_ptr(cg, table, sp->pf[b]) : none);
        slot_store(cg, blk, MMB_PF_SIZE + b, ci64(cg, b < sp->npf ? (int64_t)kiln_dtype_size(dt) : 0));
    }
    slot_store(cg, blk, MMB_VALUES, values);
    for (int i = 0; i < sp->nb; i++) slot_store(cg, blk, MMB_BUFS + i, table_ptr(cg, table, list[i]));
    LLVMBuildRetVoid(cg->b);
    if (saved) LLVMPositionBuilderAtEnd(cg->b, saved);
    return fn;
}

/* Starts void NAME<suffix>(params..., ptr table) of a sized product: the
 * builder at its entry after the block is filled (*blk; `which`: the
 * operand gather and prepack work on, or -1). */
static LLVMValueRef begin_sized_fn(Cg *cg, const Kernel *k, const SizedProduct *sp, const char *suffix,
                                   LLVMTypeRef *params, int nparams, int which, LLVMValueRef *blk) {
    char *name = name2(k->name, suffix);
    LLVMValueRef fn =
        LLVMAddFunction(cg->mod, name, LLVMFunctionType(cg->t_void, params, (unsigned)nparams, 0));
    free(name);
    add_fn_attr(cg, fn, cg->k_nounwind);
    LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry"));
    *blk = LLVMBuildArrayAlloca(cg->b, cg->t_i64, ci64(cg, MMB_BUFS + sp->nb), "block");
    LLVMValueRef args[2] = {LLVMGetParam(fn, (unsigned)nparams - 1), *blk};
    call_fn(cg, sp->fill, args, 2);
    if (which >= 0) slot_store(cg, *blk, MMB_WHICH, ci64(cg, which));
    return fn;
}

/* void NAME.nest(i64 ob, i64 oe, i64 c0, i64 c1, ptr scratch, ptr block,
 * ptr noalias bufs...): a short sized product's own loop nest, as
 * kiln.mm.nest reads the block, with its epilogue inline (a call per tile
 * costs a product of K < EPI_OUTLINE_MIN_K up to 9 %), its constants from
 * the values. */
static LLVMValueRef emit_sized_nest(Cg *cg, const Kernel *k, const KGemm *g, const int *list, int nb,
                                    const EpiAnalysis *ea, const SizedProduct *sp) {
    LLVMTypeRef *ps = xcalloc((size_t)nb + 6, sizeof(LLVMTypeRef));
    for (int i = 0; i < nb + 6; i++) ps[i] = i < 4 ? cg->t_i64 : cg->t_ptr;
    char *name = name2(k->name, ".nest");
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, LLVMFunctionType(cg->t_void, ps, (unsigned)nb + 6, 0));
    free(name);
    free(ps);
    LLVMSetLinkage(fn, LLVMInternalLinkage);
    add_fn_attr(cg, fn, cg->k_nounwind);
    Kc kc;
    kc_init(&kc, cg, k);
    kc.fn = fn;
    for (int i = 0; i < nb; i++) { /* attribute indices count the parameters from 1 */
        LLVMAddAttributeAtIndex(fn, (unsigned)(7 + i), LLVMCreateEnumAttribute(cg->ctx, cg->k_noalias, 0));
        kc.bufptr[list[i]] = LLVMGetParam(fn, (unsigned)(6 + i));
    }
    LLVMBasicBlockRef saved = LLVMGetInsertBlock(cg->b);
    LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry"));
    LLVMValueRef blk = LLVMGetParam(fn, 5);
    load_epilogue_values(&kc, ea, slot_load(cg, blk, MMB_VALUES, cg->t_ptr));
    MmGeo geo;
    geo_from_block(cg, blk, &geo);
    geo.epi_inline = true, geo.epi_n = g->mm.n;
    MmShape sh = mm_shape(cg, g);
    /* known here (its form): K is one block (K < KC), whether B is a
     * window, which operands are packed once (or gathered) */
    Prepack pp = gemm_prepack(cg, g);
    LLVMValueRef *known[6] = {&geo.multi_k,  &geo.conv,       &geo.packed_a,
                              &geo.packed_b, &geo.b_in_place, &geo.rows};
    const bool value[6] = {g->mm.k > sh.kc, g->conv != NULL, pp.a, pp.b, b_in_place(cg, g), false};
    for (int i = 0; i < 6; i++) *known[i] = LLVMConstInt(cg->t_i1, value[i], 0);
    /* ... its packing routines (direct calls) and prefetched operands */
    geo.pack_a = sp->pack_a, geo.pack_b = sp->pack_b;
    geo.npf = sp->npf;
    geo.rows_outer = sp->rows_outer;
    for (int b = 0; b < sp->npf; b++)
        geo.pf_size[b] = ci64(cg, (int64_t)kiln_dtype_size(cg->p->bufs.data[sp->pf[b]].dtype));
    emit_mm_nest(&kc, &sh, &geo, LLVMGetParam(fn, 0), LLVMGetParam(fn, 1), LLVMGetParam(fn, 2),
                 LLVMGetParam(fn, 3), LLVMGetParam(fn, 4));
    free(kc.preset);
    free(kc.magic);
    kc_free(&kc);
    if (saved) LLVMPositionBuilderAtEnd(cg->b, saved);
    return fn;
}

/* A column chunk's rows (Cg.ragged_rows, AMD Zen 5): NAME.cols(c0, c1)
 * with c1 = c1' | split << 32 | half << 62 (llvm_ragged_split_rows) runs
 * columns [c0, c1') of the rows [0, split) (half 1) or [split, re) (half 2;
 * split and re outer indices: a row times N), half 0 all rows [rb, re) as
 * before.  A sized unit's NAME.cols (shared by kernels of any shape) always
 * reads it on such a CPU, a kernel's own entry only where ragged_split. */
static int64_t ragged_split(const Cg *cg, const KGemm *g);
static void cols_row_range(Cg *cg, LLVMValueRef a1, LLVMValueRef *rb, LLVMValueRef *re, LLVMValueRef *c1) {
    LLVMValueRef half = LLVMBuildLShr(cg->b, a1, ci64(cg, 62), "half");
    LLVMValueRef split =
        LLVMBuildAnd(cg->b, LLVMBuildLShr(cg->b, a1, ci64(cg, 32), ""), ci64(cg, (1LL << 30) - 1), "split");
    *c1 = LLVMBuildAnd(cg->b, a1, ci64(cg, 0xffffffffLL), "c1");
    *rb = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, half, ci64(cg, 2), ""), split, *rb, "rb");
    *re = LLVMBuildSelect(cg->b, LLVMBuildICmp(cg->b, LLVMIntEQ, half, ci64(cg, 1), ""), split, *re, "re");
}

/* Kernel ki's functions as a sized product (above); returns NAME. */
static LLVMValueRef emit_sized_product(Cg *cg, const Kernel *k, int ki, const KGemm *g, const int *list,
                                       int nb, LLVMValueRef *cols_out) {
    const KProgram *p = cg->p;
    const KMatmul *mm = &g->mm;
    MmShape sh = mm_shape(cg, g);
    SizedProduct sp = {.nb = nb, .swap = sh.swap, .own_nest = mm->k < EPI_OUTLINE_MIN_K};
    int *pf = xcalloc((size_t)p->bufs.len + 1, sizeof(int)), nread, npass;
    bool mixed;
    sp.npf = sized_prefetch(p, k, mm, pf, &nread, &npass, &mixed);
    sp.rows_outer = sp.own_nest ? rows_outer(g, &sh, nread > 0) : 0;
    memcpy(sp.pf, pf, sizeof(int) * (size_t)sp.npf);
    free(pf);
    KilnDType adt = p->bufs.data[mm->a_buf].dtype, bdt = p->bufs.data[mm->b_buf].dtype;
    sp.pack_a = helper_pack(cg, adt, sh.mr);
    sp.pack_b = g->conv ? kernel_im2col(cg, k, bdt, sh.nr, true) : helper_pack(cg, bdt, sh.nr);
    EpiAnalysis ea;
    epi_analyse(k, mm->n, &ea);
    if (sp.own_nest) {
        sp.nest = emit_sized_nest(cg, k, g, list, nb, &ea, &sp);
        sp.thunk = LLVMConstNull(cg->t_ptr);
    } else {
        /* over whole rows (plane_rows): their width a value, no whole-row
         * form of constant trip count (NR 0), the rows' parts vectors */
        LLVMValueRef epi = plane_rows(p, g)
                               ? emit_epilogue_fn(cg, k, list, nb, mm->n, 0, false, true, &ea)
                               : emit_epilogue_fn(cg, k, list, nb, mm->n, sh.nr, sh.swap, false, &ea);
        sp.thunk = emit_epilogue_thunk(cg, k, epi, nb, true);
        sp.nest = helper_mm_nest(cg, sh.swap, swap_one_panel(cg, g));
    }
    epi_analysis_free(&ea);
    sp.fill = emit_block_fill(cg, k, ki, g, list, &sp);

    LLVMTypeRef ps[3] = {cg->t_i64, cg->t_i64, cg->t_ptr};
    LLVMValueRef fns[2], blk;
    for (int by_columns = 0; by_columns < 2;
         by_columns++) { /* NAME(ob, oe, table), NAME.cols(c0, c1, table) */
        LLVMValueRef fn = fns[by_columns] =
            begin_sized_fn(cg, k, &sp, by_columns ? ".cols" : "", ps, 3, -1, &blk);
        LLVMValueRef a0 = LLVMGetParam(fn, 0), a1 = LLVMGetParam(fn, 1), zero = ci64(cg, 0);
        LLVMValueRef table = LLVMGetParam(fn, 2);
        LLVMValueRef *args = xcalloc((size_t)nb + 6, sizeof(LLVMValueRef));
        LLVMValueRef rb = zero, re = by_columns ? slot_load(cg, blk, MMB_OUTER, cg->t_i64) : NULL, c1 = a1;
        if (by_columns && cg->ragged_rows) cols_row_range(cg, a1, &rb, &re, &c1);
        LLVMValueRef fixed[6] = {by_columns ? rb : a0,
                                 by_columns ? re : a1,
                                 by_columns ? a0 : zero,
                                 by_columns ? c1 : slot_load(cg, blk, MMB_N, cg->t_i64),
                                 table_ptr(cg, table, p->bufs.len),
                                 blk};
        memcpy(args, fixed, sizeof fixed);
        for (int i = 0; sp.own_nest && i < nb; i++) args[6 + i] = table_ptr(cg, table, list[i]);
        call_fn(cg, sp.nest, args, 6 + (sp.own_nest ? nb : 0));
        free(args);
        LLVMBuildRetVoid(cg->b);
    }
    if (cols_out) *cols_out = fns[1];
    /* which operands are packed once or gathered once is the values' (a
     * unit serves kernels of either kind): every sized unit has NAME.gather
     * (the operand: the values' MMB_WHICH) and both NAME.prepack_* */
    LLVMValueRef gfn = begin_sized_fn(cg, k, &sp, ".gather", ps, 3, -1, &blk);
    LLVMValueRef gargs[3] = {LLVMGetParam(gfn, 0), LLVMGetParam(gfn, 1), blk};
    call_fn(cg, helper_mm_gather(cg, sh.swap), gargs, 3);
    LLVMBuildRetVoid(cg->b);
    for (int which = 0; which < 2; which++) { /* NAME.prepack_a / _b(table) */
        begin_sized_fn(cg, k, &sp, which ? ".prepack_b" : ".prepack_a", &cg->t_ptr, 1, which, &blk);
        call_fn(cg, helper_mm_prepack(cg, sh.swap), &blk, 1);
        LLVMBuildRetVoid(cg->b);
    }
    return fns[0];
}

/* Word lists (llvm_kernel_sizes). */
typedef VEC(int64_t) Words;
static void put_words(Words *w, const int64_t *v, int n) {
    for (int i = 0; i < n; i++) VEC_PUSH(*w, v[i]);
}

static void epi_form(const Kernel *k, const EpiAnalysis *ea, int64_t n_cols, Words *w);

/* The form of sized product k (llvm_kernel_sizes): every fact about the
 * kernel that its unit's code depends on, sizes left out. */
static void sized_form(const Cg *cg, const Kernel *k, const KGemm *g, const EpiAnalysis *ea, Words *w) {
    const KProgram *p = cg->p;
    const KMatmul *mm = &g->mm;
    MmShape sh = mm_shape(cg, g);
    int *pf = xcalloc((size_t)p->bufs.len + 1, sizeof(int)), nread, npass;
    bool mixed;
    int npf = sized_prefetch(p, k, mm, pf, &nread, &npass, &mixed);
    int *list = xcalloc((size_t)p->bufs.len + 1, sizeof(int));
    int nb = kernel_buffers(p, k, list);
    int64_t head[] = {0x53495a4544ll /* "SIZED", version 1 */, mm->k<EPI_OUTLINE_MIN_K, nread> 0, mixed,
                      k->kind, sh.swap, sh.mr, sh.nr, mm->a_buf, mm->b_buf, g->conv != NULL,
                      /* a short product's own nest knows what is packed */
                      mm->k < EPI_OUTLINE_MIN_K ? gemm_prepack(cg, g).a : -1,
                      mm->k < EPI_OUTLINE_MIN_K ? gemm_prepack(cg, g).b : -1,
                      mm->k < EPI_OUTLINE_MIN_K ? b_in_place(cg, g) : -1,
                      mm->k < EPI_OUTLINE_MIN_K ? rows_outer(g, &sh, nread > 0) : -1, nb, npf,
                      plane_rows(p, g), sh.mc};
    put_words(w, head, (int)(sizeof head / sizeof head[0]));
    for (int i = 0; i < nb; i++) VEC_PUSH(*w, list[i]);
    for (int i = 0; i < npf; i++) VEC_PUSH(*w, pf[i]);
    free(list);
    free(pf);
    if (g->conv) {
        Im2colForm f = im2col_form(cg, &k->conv, p->bufs.data[mm->b_buf].dtype, sh.nr);
        int64_t fw[] = {f.dt, f.nr, f.rows, f.pointwise, f.sw, f.xs3, f.kw, f.dw};
        put_words(w, fw, 8);
    }
    epi_form(k, ea, mm->n, w);
    VEC_PUSH(*w, store_runs(k, sh.nr)); /* emit_tile_epilogue's whole runs */
}

/* The words of sized kernel k's epilogue (its product or plane of n
 * columns): its stages, the index width, and its live instructions with
 * the constants read from the values as slots. */
static void epi_form(const Kernel *k, const EpiAnalysis *ea, int64_t n_cols, Words *w) {
    KRange *rg = kernel_index_ranges(k);
    int64_t epi[] = {index_fits_i32(k, rg), heavy_scope(k, -1) || heavy_scope(k, 1), k->stages.len};
    put_words(w, epi, 3);
    for (int s = 0; s < k->stages.len; s++) {
        const KStage *st = &k->stages.data[s];
        int64_t sw[] = {st->kind, s == k->stages.len - 1 ? st->extent : 0, st->reduce, st->acc_dtype,
                        st->result_dtype};
        put_words(w, sw, 5);
    }
    /* the live instructions, numbered among themselves */
    int *num = xcalloc((size_t)k->insts.len + 1, sizeof(int)), n = 0;
    for (int i = 0; i < k->insts.len; i++) num[i] = ea->live[i] ? n++ : -1;
    VEC_PUSH(*w, n);
    for (int i = 0; i < k->insts.len; i++) {
        if (!ea->live[i]) continue;
        const KInst *in = &k->insts.data[i];
        bool magic = ea->magic[i] >= 0;
        int cls = magic ? -1 : gemm_index_class(k, in, n_cols);
        bool nonneg = (in->kind == KI_IDIV || in->kind == KI_IMOD) && rg[in->a].known && rg[in->a].lo >= 0 &&
                      rg[in->b].known && rg[in->b].lo > 0;
        int64_t bits;
        memcpy(&bits, &in->value, sizeof bits);
        int64_t iw[] = {in->kind,
                        in->dtype,
                        in->op,
                        in->kind == KI_ACC ? in->a
                        : in->a >= 0       ? num[in->a]
                                           : -1,
                        in->b >= 0 ? num[in->b] : -1,
                        in->c >= 0 ? num[in->c] : -1,
                        in->buf,
                        in->stage,
                        in->flag,
                        ea->slot[i] >= 0 ? -1 : bits,
                        ea->slot[i] >= 0 ? ea->slot[i] : in->ivalue,
                        magic ? -1 : nonneg,
                        cls,
                        cls >= 2 ? n_cols : 0};
        put_words(w, iw, (int)(sizeof iw / sizeof iw[0]));
    }
    const KStage *last = &k->stages.data[k->stages.len - 1];
    VEC_PUSH(*w, last->stores.len);
    for (int j = 0; j < last->stores.len; j++) {
        const KStore *so = &last->stores.data[j];
        int64_t sw[] = {so->buf, num[so->index], num[so->value]};
        put_words(w, sw, 3);
    }
    free(num);
    free(rg);
}

/* The form of sized GEMV k (llvm_kernel_sizes): its operands' and
 * buffers' roles and its epilogue over N columns. */
static void gemv_form(const Cg *cg, const Kernel *k, const KGemm *g, const EpiAnalysis *ea, Words *w) {
    int *list = xcalloc((size_t)cg->p->bufs.len + 1, sizeof(int));
    int nb = kernel_buffers(cg->p, k, list);
    int64_t head[] = {0x47454d56ll /* "GEMV", version 1 */, k->kind, g->mm.a_buf, g->mm.b_buf, nb};
    put_words(w, head, (int)(sizeof head / sizeof head[0]));
    for (int i = 0; i < nb; i++) VEC_PUSH(*w, list[i]);
    free(list);
    epi_form(k, ea, g->mm.n, w);
}

/* The form of sized direct kernel k (llvm_kernel_sizes): its plane's
 * geometry and window, the input's row and element strides, whether it has
 * one channel per group and one output per group (DirectGeo's constants),
 * its buffers' roles and its epilogue; not its channels, batch or offsets. */
static void direct_form(const Cg *cg, const Kernel *k, const EpiAnalysis *ea, Words *w) {
    const KConv *cv = &k->conv;
    int *list = xcalloc((size_t)cg->p->bufs.len + 1, sizeof(int));
    int nb = kernel_buffers(cg->p, k, list);
    int64_t head[] = {0x444952454354ll /* "DIRECT", version 1 */,
                      cv->op,
                      cv->kh,
                      cv->kw,
                      cv->h,
                      cv->w,
                      cv->oh,
                      cv->ow,
                      cv->sh,
                      cv->sw,
                      cv->ph,
                      cv->pw,
                      cv->dh,
                      cv->dw,
                      cv->xs[2],
                      cv->xs[3],
                      cv->ws[2],
                      cv->ws[3],
                      cv->c == cv->groups,
                      cv->oc == cv->groups,
                      cv->c / cv->groups == 1,
                      cv->oc / cv->groups == 1,
                      cv->oc == 1,
                      cv->n * cv->oc < ((int64_t)1 << 32),
                      cv->x_buf,
                      cv->w_buf,
                      nb};
    put_words(w, head, (int)(sizeof head / sizeof head[0]));
    for (int i = 0; i < nb; i++) VEC_PUSH(*w, list[i]);
    free(list);
    epi_form(k, ea, cv->oh * cv->ow, w);
}

/* The external entry NAME(ob, oe, bufs): loads the pointers (and, for a
 * tiled matmul, the scratch at bufs[nbufs] and any prepacked operand at its
 * slot) and calls the body.  A tiled matmul also gets NAME.cols(c0, c1,
 * bufs): every row, the output columns [c0, c1) (threads split wide, short
 * products by columns, so that each packs only its part of B). */
static LLVMValueRef emit_entry(Cg *cg, const Kernel *k, int ki, const char *name, LLVMValueRef body,
                               const int *list, int nb, const KGemm *tiled, bool by_columns, bool values) {
    LLVMTypeRef ps[3] = {cg->t_i64, cg->t_i64, cg->t_ptr};
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, LLVMFunctionType(cg->t_void, ps, 3, 0));
    add_fn_attr(cg, fn, cg->k_nounwind);
    LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry"));
    LLVMValueRef *args = xcalloc((size_t)nb + 7, sizeof(LLVMValueRef));
    int na = 0;
    if (!tiled) {
        args[na++] = LLVMGetParam(fn, 0), args[na++] = LLVMGetParam(fn, 1);
    } else if (!by_columns) {
        args[na++] = LLVMGetParam(fn, 0), args[na++] = LLVMGetParam(fn, 1);
        args[na++] = ci64(cg, 0), args[na++] = ci64(cg, tiled->mm.n);
    } else {
        LLVMValueRef rb = ci64(cg, 0), re = ci64(cg, k->outer), c1 = LLVMGetParam(fn, 1);
        if (ragged_split(cg, tiled)) cols_row_range(cg, c1, &rb, &re, &c1);
        args[na++] = rb, args[na++] = re;
        args[na++] = LLVMGetParam(fn, 0), args[na++] = c1;
    }
    Prepack pp = tiled ? gemm_prepack(cg, tiled) : (Prepack){0};
    int nslots = nb + (tiled ? 3 : 0);
    for (int i = 0; i < nslots; i++) {
        int slot_index = i < nb ? list[i] : i == nb ? cg->p->bufs.len : llvm_prepack_slot(cg->p, ki, i - nb - 1);
        if (i > nb && !(i == nb + 1 ? pp.a : pp.b)) {
            args[na++] = LLVMConstNull(cg->t_ptr);
            continue;
        }
        LLVMValueRef slot = LLVMBuildGEP2(cg->b, cg->t_ptr, LLVMGetParam(fn, 2), (LLVMValueRef[]){ci64(cg, slot_index)}, 1, "");
        args[na++] = LLVMBuildLoad2(cg->b, cg->t_ptr, slot, i < nb ? cg->p->bufs.data[list[i]].name : "scratch");
    }
    if (values)
        args[na++] =
            table_ptr(cg, LLVMGetParam(fn, 2), llvm_values_slot(cg->p)); /* a sized direct kernel's */
    LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(body), body, args, (unsigned)na, "");
    LLVMBuildRetVoid(cg->b);
    free(args);
    return fn;
}

int llvm_prepack_slot(const KProgram *p, int kernel_index, int which) { return p->bufs.len + 1 + 2 * kernel_index + which; }

static LLVMValueRef emit_kernel(Cg *cg, const Kernel *k, int ki, LLVMValueRef *cols_out) {
    int *list = xcalloc((size_t)cg->p->bufs.len + 1, sizeof(int));
    int nb = kernel_buffers(cg->p, k, list);
    KGemm g;
    if (cg->sized && kernel_sized(cg, k, &g)) {
        LLVMValueRef fn = emit_sized_product(cg, k, ki, &g, list, nb, cols_out);
        free(list);
        return fn;
    }
    bool tiled = gemm_tiled(cg, k, &g), sized = cg->sized && (direct_sized(cg, k) || gemv_sized(cg, k, &g));
    LLVMValueRef body = tiled                 ? emit_matmul_fn(cg, k, &g, list, nb)
                        : pool_rows_ok(cg, k) ? emit_pool_rows_fn(cg, k, list, nb)
                        : direct_ok(cg, k)
                            ? (direct_plane_ok(cg, k) ? emit_direct_plane_fn(cg, k, list, nb, sized)
                                                      : emit_direct_fn(cg, k, list, nb, sized))
                        : gemv_ok(cg, k, &g) ? emit_gemv_fn(cg, k, &g, list, nb, sized)
                                             : emit_generic_fn(cg, k, list, nb);
    LLVMValueRef fn = emit_entry(cg, k, ki, k->name, body, list, nb, tiled ? &g : NULL, false, sized);
    if (cols_out) {
        char *cname = name2(k->name, ".cols");
        *cols_out = tiled ? emit_entry(cg, k, ki, cname, body, list, nb, &g, true, false) : NULL;
        free(cname);
    }
    for (int which = 0; tiled && which < 2; which++)
        if (prepack_bytes(cg, k, which) > 0) emit_prepack_fn(cg, k, ki, &g, which);
    int64_t sizes[3];
    if (tiled && gather_size(cg, k, sizes)) emit_gather_fn(cg, k, ki, &g);
    free(list);
    return fn;
}

/* ------------------------------------------------------------- AOT entry */

static void emit_aot_run(Cg *cg, LLVMValueRef *kfns, int64_t scratch_bytes) {
    const KProgram *p = cg->p;
    int np = p->nparams, nr = p->nresults;
    LLVMTypeRef *ps = xcalloc((size_t)(np + nr) + 1, sizeof(LLVMTypeRef));
    for (int i = 0; i < np + nr; i++) ps[i] = cg->t_ptr;
    char *name = name2(p->graph_name, "_run");
    LLVMValueRef fn = LLVMAddFunction(cg->mod, name, LLVMFunctionType(cg->t_i32, ps, (unsigned)(np + nr), 0));
    free(name);
    free(ps);
    add_fn_attr(cg, fn, cg->k_nounwind);
    LLVMPositionBuilderAtEnd(cg->b, LLVMAppendBasicBlockInContext(cg->ctx, fn, "entry"));
    LLVMTypeRef mty, fty;
    LLVMValueRef mallocf = get_malloc(cg, &mty), freef = get_free(cg, &fty);

    /* one block: the arena of temporaries, then the matmul scratch */
    int nb = p->bufs.len;
    int64_t arena_bytes = (p->arena_bytes + 63) / 64 * 64;
    int64_t total = arena_bytes + scratch_bytes;
    LLVMValueRef bufs = LLVMBuildArrayAlloca(cg->b, cg->t_ptr, ci64(cg, nb + 1), "bufs");
    LLVMValueRef raw = LLVMConstNull(cg->t_ptr), arena = raw;
    if (total > 0) {
        LLVMValueRef sz = ci64(cg, total + 64);
        raw = LLVMBuildCall2(cg->b, mty, mallocf, &sz, 1, "raw");
        LLVMBasicBlockRef fail = LLVMAppendBasicBlockInContext(cg->ctx, fn, "oom");
        LLVMBasicBlockRef ok = LLVMAppendBasicBlockInContext(cg->ctx, fn, "ok");
        LLVMBuildCondBr(cg->b, LLVMBuildIsNull(cg->b, raw, ""), fail, ok);
        LLVMPositionBuilderAtEnd(cg->b, fail);
        LLVMBuildRet(cg->b, ci32(cg, 1));
        LLVMPositionBuilderAtEnd(cg->b, ok);
        arena = align64(cg, raw);
    }
    LLVMValueRef scratch = LLVMBuildGEP2(cg->b, cg->t_i8, arena, (LLVMValueRef[]){ci64(cg, arena_bytes)}, 1, "scratch");
    LLVMBuildStore(cg->b, scratch, LLVMBuildGEP2(cg->b, cg->t_ptr, bufs, (LLVMValueRef[]){ci64(cg, nb)}, 1, ""));
    LLVMValueRef *ptrs = xcalloc((size_t)nb + 1, sizeof(LLVMValueRef));
    for (int i = 0; i < nb; i++) {
        const KBuf *kb = &p->bufs.data[i];
        LLVMValueRef ptr;
        if (kb->kind == KB_INPUT) ptr = LLVMGetParam(fn, (unsigned)kb->index);
        else if (kb->kind == KB_OUTPUT) ptr = LLVMGetParam(fn, (unsigned)(np + kb->index));
        else ptr = LLVMBuildGEP2(cg->b, cg->t_i8, arena, (LLVMValueRef[]){ci64(cg, kb->offset)}, 1, kb->name);
        ptrs[i] = ptr;
        LLVMBuildStore(cg->b, ptr, LLVMBuildGEP2(cg->b, cg->t_ptr, bufs, (LLVMValueRef[]){ci64(cg, i)}, 1, ""));
    }
    for (int i = 0; i < p->kernels.len; i++) {
        const Kernel *k = &p->kernels.data[i];
        if (k->outer <= 0) continue;
        LLVMValueRef args[3] = {ci64(cg, 0), ci64(cg, k->outer), bufs};
        LLVMBuildCall2(cg->b, LLVMGlobalGetValueType(kfns[i]), kfns[i], args, 3, "");
    }
    /* results held by another buffer are copied */
    for (int r = 0; r < nr && r < p->result_buf.len; r++) {
        int rb = p->result_buf.data[r];
        if (rb < 0 || rb >= nb) continue;
        const KBuf *kb = &p->bufs.data[rb];
        if (kb->kind == KB_OUTPUT && kb->index == r) continue;
        int64_t bytes = kb->numel * (int64_t)kiln_dtype_size(kb->dtype);
        LLVMBuildMemCpy(cg->b, LLVMGetParam(fn, (unsigned)(np + r)), 1, ptrs[rb], 1, ci64(cg, bytes));
    }
    if (total > 0) LLVMBuildCall2(cg->b, fty, freef, &raw, 1, "");
    LLVMBuildRet(cg->b, ci32(cg, 0));
    free(ptrs);
}

/* ------------------------------------------------------- the module */

/* An error LLVM cannot return (it runs out of memory, say) ends kiln with
 * exit status 3 and LLVM's reason, as the compiler's own allocation
 * failures do (base/util.c), instead of LLVM's abort(). */
static void llvm_fatal(const char *reason) {
    fprintf(stderr, "kiln: LLVM cannot continue: %s\n", reason);
    fflush(NULL);
    _Exit(3);
}

static pthread_once_t llvm_once = PTHREAD_ONCE_INIT;
static void llvm_init_native(void) {
    llvm_install_oom_handlers();
    LLVMInstallFatalErrorHandler(llvm_fatal);
    LLVMInitializeNativeTarget();
    LLVMInitializeNativeAsmPrinter();
    /* LLVM options for the whole process (kiln is libLLVM's only user):
     * vector loops get a scalar remainder, not a second, narrower vector
     * loop (less code to compile; the remainder is short anyway). */
    const char *args[] = {"kiln", "-enable-epilogue-vectorization=false"};
    LLVMParseCommandLineOptions(2, args, NULL);
}

/* LLVM's diagnostics on a context of kiln's: optimisation remarks, notes and
 * warnings (a loop the vectoriser kept scalar, say) are about kiln's own
 * generated code, not the user's program, and go nowhere (LLVM's default
 * handler printed some of them as "remark: <unknown>:0:0: loop not
 * vectorized" on every run); an error ends kiln as llvm_fatal does (the
 * default handler's exit(1) after printing). */
static void llvm_diagnostic(LLVMDiagnosticInfoRef info, void *unused) {
    (void)unused;
    if (LLVMGetDiagInfoSeverity(info) != LLVMDSError) return;
    char *msg = LLVMGetDiagInfoDescription(info);
    llvm_fatal(msg);
}

void llvm_init(void) { pthread_once(&llvm_once, llvm_init_native); }

LLVMContextRef llvm_context_new(void) {
    LLVMContextRef ctx = LLVMContextCreate();
    LLVMContextSetDiagnosticHandler(ctx, llvm_diagnostic, NULL);
    return ctx;
}

static void copy_msg(char *err, size_t errlen, const char *prefix, const char *msg) {
    snprintf(err, errlen, "%s%s", prefix, msg ? msg : "(no message)");
}

/* The CPU names LLVM knows for the host's target.  LLVM-C has no call that
 * lists them, but a target machine made for the CPU "help" prints them to
 * standard error ("Available CPUs for this target:", then "  NAME - ...");
 * that text is caught in a memory file, once per process. */
static struct {
    pthread_once_t once;
    VEC(char *) names;
} cpu_list = {PTHREAD_ONCE_INIT, {0}};

static void cpu_list_load(void) {
    pthread_once(&llvm_once, llvm_init_native);
    char *triple = LLVMGetDefaultTargetTriple();
    LLVMTargetRef target;
    char *msg = NULL;
    int fd = memfd_create("kiln-llvm-cpus", MFD_CLOEXEC), saved = dup(2);
    if (LLVMGetTargetFromTriple(triple, &target, &msg) == 0 && fd >= 0 && saved >= 0) {
        fflush(stderr);
        dup2(fd, 2);
        LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, triple, "help", "", LLVMCodeGenLevelNone,
                                                          LLVMRelocDefault, LLVMCodeModelDefault);
        fflush(stderr);
        dup2(saved, 2);
        if (tm) LLVMDisposeTargetMachine(tm);
        FILE *f = fdopen(dup(fd), "r");
        char line[512];
        bool in_list = false;
        if (f) rewind(f);
        while (f && fgets(line, sizeof line, f)) {
            if (strncmp(line, "Available CPUs", 14) == 0)
                in_list = true;
            else if (strncmp(line, "Available features", 18) == 0)
                in_list = false;
            else if (in_list && strncmp(line, "  ", 2) == 0 && strstr(line, " - ")) {
                char *name = line + 2;
                name[strcspn(name, " \t")] = 0;
                VEC_PUSH(cpu_list.names, xstrdup(name));
            }
        }
        if (f) fclose(f);
    }
    LLVMDisposeMessage(msg);
    LLVMDisposeMessage(triple);
    if (fd >= 0) close(fd);
    if (saved >= 0) close(saved);
}

KilnStatus llvm_cpu_check(const char *name, char *err, size_t errlen) {
    if (strcmp(name, "native") == 0) return KILN_OK;
    pthread_once(&cpu_list.once, cpu_list_load);
    Suggest sg = {0};
    for (int i = 0; i < cpu_list.names.len; i++) {
        if (strcmp(cpu_list.names.data[i], name) == 0) return KILN_OK;
        suggest_try(&sg, name, cpu_list.names.data[i]);
    }
    StrBuf sb = {0};
    sb_printf(&sb, "--cpu=%s: LLVM knows no such CPU for this target", name);
    if (sg.best) sb_printf(&sb, " (did you mean %s?)", sg.best);
    sb_puts(&sb, "; the choices are native (this machine's CPU),");
    for (int i = 0; i < cpu_list.names.len; i++) sb_printf(&sb, " %s", cpu_list.names.data[i]);
    if (cpu_list.names.len == 0) sb_puts(&sb, " (LLVM did not list any)");
    snprintf(err, errlen, "%s", sb.data);
    sb_free(&sb);
    return KILN_ERR_USAGE;
}

LLVMTargetMachineRef llvm_target_machine(const char *cpu, bool reloc_pic, char *err, size_t errlen) {
    pthread_once(&llvm_once, llvm_init_native);
    if (cpu && strcmp(cpu, "native") == 0) cpu = NULL;
    char *triple = LLVMGetDefaultTargetTriple();
    LLVMTargetRef target;
    char *msg = NULL;
    if (LLVMGetTargetFromTriple(triple, &target, &msg)) {
        copy_msg(err, errlen, "LLVM: no target for this host: ", msg);
        LLVMDisposeMessage(msg);
        LLVMDisposeMessage(triple);
        return NULL;
    }
    char *host_cpu = cpu ? NULL : LLVMGetHostCPUName();
    char *features = cpu ? NULL : LLVMGetHostCPUFeatures();
    LLVMTargetMachineRef tm = LLVMCreateTargetMachine(target, triple, cpu ? cpu : host_cpu, features ? features : "",
                                                      LLVMCodeGenLevelAggressive, reloc_pic ? LLVMRelocPIC : LLVMRelocDefault,
                                                      LLVMCodeModelJITDefault);
    if (!tm) snprintf(err, errlen, "LLVM: cannot make a target machine for cpu '%s'", cpu ? cpu : host_cpu);
    LLVMDisposeMessage(host_cpu);
    LLVMDisposeMessage(features);
    LLVMDisposeMessage(triple);
    return tm;
}

/* Whether the micro-kernel's FMAs broadcast A from memory, each its own
 * (vfmadd231ps mem{1to16}), rather than one vbroadcastss per row shared by
 * the row's FMAs (helper_ukernel_lanes): AMD Zen 1-4 (znver1-4), whose separate
 * broadcast takes shuffle slots the FMAs need (Zen 4: the shared form ran
 * at half the FMA peak).  On Intel a broadcast from memory is a plain
 * load-port uop, and an FMA with an embedded broadcast is two (un-laminated
 * when indexed): the shared form is faster there (docs/performance.md,
 * "Session 9: the micro-kernel on Intel").  Zen 5 (znver5), with full-width
 * 512-bit pipes, takes the shared form too: 1.16-1.33x on ResNet-18/50 at
 * one thread ("Session 16 start").  Decided by the target's CPU name, part
 * of the target identity that keys the code caches and the prebuilt
 * helpers. */
static bool ukernel_embedded_bcast(const char *cpu) {
    return cpu && strncmp(cpu, "znver", 5) == 0 && cpu[5] >= '1' && cpu[5] <= '4' && cpu[6] == '\0';
}

/* Floats per vector register for a CPU name and its feature string. */
static int vec_floats_of(const char *cpu, const char *feat) {
    int w = 4;
    if (feat && strstr(feat, "+avx512f")) w = 16;
    else if (feat && strstr(feat, "+avx2")) w = 8;
    else if (!feat || !strstr(feat, "+")) {
        /* a named CPU without a feature string */
        static const char *const v4[] = {"x86-64-v4", "skylake-avx512", "cascadelake", "cooperlake", "icelake",
                                         "tigerlake", "sapphirerapids", "graniterapids", "emeraldrapids",
                                         "znver4", "znver5", "rocketlake", "cannonlake", NULL};
        static const char *const v3[] = {"x86-64-v3", "haswell", "broadwell", "skylake", "znver1", "znver2",
                                         "znver3", "alderlake", "raptorlake", "meteorlake", "arrowlake",
                                         "gracemont", "bdver4", NULL};
        for (int i = 0; v3[i]; i++)
            if (cpu && strncmp(cpu, v3[i], strlen(v3[i])) == 0) w = 8;
        for (int i = 0; v4[i]; i++)
            if (cpu && strncmp(cpu, v4[i], strlen(v4[i])) == 0) w = 16;
    }
    return w;
}

/* What a CPU name and its feature string decide in cg: the vector width
 * and the micro-kernel's form. */
static void cg_cpu(Cg *cg, const char *cpu, const char *feat) {
    cg->vec_floats = vec_floats_of(cpu, feat);
    cg->embedded_bcast = ukernel_embedded_bcast(cpu);
    /* the rules measured on AMD Zen 5 alone (sessions 16-17) */
    const bool zen5 = cpu && strcmp(cpu, "znver5") == 0;
    cg->direct_rows = zen5 ? DIRECT_ROWS_AT_ONCE_ZEN5 : DIRECT_ROWS_AT_ONCE;
    cg->pad_prefetch = zen5;
    cg->s2_rows = zen5;
    cg->s1_rows = zen5;
    cg->tile_t_calls = zen5;
    cg->one_k_block = zen5;
    cg->small_reads_unfetched = zen5;
    cg->taps_l1_small = zen5;
    cg->wino = zen5;
    cg->a_ahead = zen5;
    cg->pack_rows = zen5;
    cg->stem_direct = zen5;
    cg->im2col_rows_ahead = zen5;
    cg->row_chains = zen5;
    cg->whole_rows_fast = zen5;
    cg->plane_one_panel = zen5;
    cg->ragged_rows = zen5;
}

/* The same for a target machine. */
static void cg_target(Cg *cg, LLVMTargetMachineRef tm) {
    char *feat = LLVMGetTargetMachineFeatureString(tm);
    char *cpu = LLVMGetTargetMachineCPU(tm);
    cg_cpu(cg, cpu, feat);
    LLVMDisposeMessage(feat);
    LLVMDisposeMessage(cpu);
}

/* The same from a target identity, "triple cpu features" (llvm.h). */
static void cg_identity(Cg *cg, const char *identity) {
    const char *cpu = strchr(identity, ' ');
    cpu = cpu ? cpu + 1 : identity;
    const char *feat = strchr(cpu, ' ');
    char name[128];
    size_t n = feat ? (size_t)(feat - cpu) : strlen(cpu);
    if (n >= sizeof name) n = sizeof name - 1;
    memcpy(name, cpu, n);
    name[n] = 0;
    cg_cpu(cg, name, feat ? feat + 1 : "");
}

/* Whether the nread operands a sized product's epilogue reads at o (the
 * first of list: sized_prefetch's) are all smaller than
 * READ_PREFETCH_MIN_BYTES.  Where Cg.small_reads_unfetched (AMD Zen 5) its
 * tiles then prefetch none of them (the values' MMB_NPF 0: the same code,
 * the nest tests the count): a residual of ResNet-50 batch 1 (0.4-1.6 MB,
 * in place of the output, in the L2 or the L3) was fetched into the L2 by
 * a burst of 12 rows x 3 lines before each tile, and its 1x1 layers at
 * 28x28-7x7 ran 1.022x faster without, on 1 and 2 threads (quiet, in the
 * model, normalised by the other kernels: docs/performance.md, "Session
 * 17: ResNet-50's 1x1 layers at batch 1"); batch 8's (3.2-12.8 MB, from
 * memory) need it: without, 0.90x. */
enum { READ_PREFETCH_MIN_BYTES = 2 << 20 };
static bool small_reads(const KProgram *p, const int *list, int nread) {
    for (int i = 0; i < nread; i++)
        if (buf_bytes(p, list[i]) >= (double)READ_PREFETCH_MIN_BYTES) return false;
    return nread > 0;
}

/* A sized kernel's epilogue constants and magic numbers into its values. */
static void epilogue_values(const Kernel *k, const EpiAnalysis *ea, int64_t *v) {
    for (int i = 0; i < k->insts.len; i++) {
        const KInst *in = &k->insts.data[i];
        if (ea->slot[i] >= 0) v[MMB_BUFS + ea->slot[i]] = kinst_scalar(in).i;
        if (ea->magic[i] >= 0)
            v[MMB_BUFS + ea->magic[i]] = (int64_t)llvm_div_magic((uint64_t)k->insts.data[in->b].ivalue);
    }
}

/* A Winograd convolution (conv_wino) computes whole tiles of two output
 * rows: split by columns, its chunks are pairs of output rows (a chunk of
 * an odd number of rows computed a last tile row of which it stored one:
 * ResNet's 3x3 64->64 at 56x56 at batch 1, chunks of one row, 0.319-0.329 ->
 * 0.300-0.306 ms alone, 2 threads).  (Split by rows within one image, a
 * 14x14 layer's 4 chunks of 64 channels each compute 72, their panels
 * starting at multiples of MR; chunks of 72 channels, 144 and 112 a
 * thread, ran 0.97x.) */
int64_t llvm_target_grain(const KProgram *p, const KGemm *g, const char *identity, bool by_columns,
                          int64_t grain) {
    if (!identity || !g->conv || grain <= 0) return grain;
    Cg cg = {0};
    cg.p = p;
    cg_identity(&cg, identity);
    if (!conv_wino(&cg, g)) return grain;
    if (!by_columns) return grain;
    const int64_t pair = 2 * g->conv->ow;
    return (grain + pair - 1) / pair * pair;
}

/* A product of one image split by columns whose last column chunk is
 * ragged (MobileNetV2's 1x1 projections at 14x14: 196 columns, 6 x 32 + 4)
 * ran, on 2 threads, 4 chunks on one thread and 3 on the other: the 4
 * columns' tile a pass over all of A (2.5-5 us of one thread idle a
 * kernel).  On AMD Zen 5 (Cg.ragged_rows) the runtime runs that tile's
 * rows in two parts, one on each thread after its 3 whole chunks
 * (runtime/cpu.c, ragged_chunk; NAME.cols: cols_row_range), the same sums
 * in the same order.  The rows' split: a multiple of MR nearest to M / 2.
 * Unswapped products of at most RAGGED_ROWS_MAX_N columns without a
 * convolution's window only: the swapped 7x7 projections (12-pixel units,
 * 49 = 4 x 12 + 1) ran 1-3 us slower a kernel with their last pixel's
 * rows shared (docs/performance.md, "Session 19: the time between
 * kernels"), and ResNet-50's 784-column ones (25 units) were not measured
 * apart from that model's noise.  Returns the split (rows), 0 for none. */
enum { RAGGED_ROWS_MAX_N = 256 };
static int64_t ragged_split(const Cg *cg, const KGemm *g) {
    const KMatmul *mm = &g->mm;
    if (!cg->ragged_rows || g->conv || mm->batch != 1 || mm->n >= RAGGED_ROWS_MAX_N ||
        !llvm_split_by_columns(cg->p, g) || gemm_swapped(cg->p, g))
        return 0;
    const int64_t grain = llvm_column_grain(cg->p, g), full = mm->n / grain, MR = ukernel_shape(cg).mr;
    if (mm->n % grain == 0 || full < 2 || full % 2) return 0;
    const int64_t split = (mm->m / 2 + MR / 2) / MR * MR;
    return split > 0 && split < mm->m && split * mm->n < (1LL << 30) ? split : 0;
}

int64_t llvm_ragged_split_rows(const KProgram *p, const KGemm *g, const char *identity) {
    if (!identity) return 0;
    Cg cg = {.p = p};
    cg_identity(&cg, identity);
    return ragged_split(&cg, g);
}

bool llvm_conv_wino(const KProgram *p, const Kernel *k, const char *identity) {
    Cg cg = {.p = p};
    cg_identity(&cg, identity);
    KGemm g;
    return program_gemm_tiled(p, k, &g) && conv_wino(&cg, &g);
}

bool llvm_kernel_sizes(const KProgram *p, int kernel, const char *identity, bool form, LlvmKernelSizes *out) {
    memset(out, 0, sizeof *out);
    Cg cg = {.p = p};
    cg_identity(&cg, identity);
    const Kernel *k = &p->kernels.data[kernel];
    out->scratch = matmul_scratch(&cg, k);
    for (int w = 0; w < 2; w++) out->prepack[w] = prepack_bytes(&cg, k, w);
    gather_size(&cg, k, out->gather);
    KGemm g;
    bool direct = direct_sized(&cg, k), gemv = !direct && gemv_sized(&cg, k, &g);
    if (!direct && !gemv && !kernel_sized(&cg, k, &g)) return false;
    out->sized = true, out->product = !direct && !gemv;
    EpiAnalysis ea;
    epi_analyse(k, direct ? k->conv.oh * k->conv.ow : g.mm.n, &ea);
    out->nvalues = MMB_BUFS + ea.nslots;
    out->values = xcalloc((size_t)out->nvalues, sizeof(int64_t));
    int64_t *v = out->values;
    if (direct || gemv) { /* the direct form's or the GEMV's values, then the epilogue's */
        if (direct)
            direct_values(&k->conv, v);
        else
            gemv_values(&g.mm, v);
        epilogue_values(k, &ea, v);
        if (form) {
            Words w = {0};
            if (direct)
                direct_form(&cg, k, &ea, &w);
            else
                gemv_form(&cg, k, &g, &ea, &w);
            out->form = w.data, out->nform = w.len;
        }
        epi_analysis_free(&ea);
        return true;
    }
    mm_block_values(&cg, &g, v);
    int *pf = xcalloc((size_t)p->bufs.len + 1, sizeof(int)), nread, npass;
    bool mixed;
    sized_prefetch(p, k, &g.mm, pf, &nread, &npass, &mixed);
    v[MMB_NPF] = cg.small_reads_unfetched && small_reads(p, pf, nread) ? 0 : npass;
    if (npass > 0 && nread == 0) v[MMB_FLAGS] |= MMF_PREFETCH_WRITE;
    free(pf);
    if (g.conv) conv_slot_values(g.conv, v + MMB_C_OW);
    v[MMB_BATCH] = g.mm.batch, v[MMB_OUTER] = k->outer, v[MMB_WHICH] = out->gather[2];
    epilogue_values(k, &ea, v);
    if (form) {
        Words w = {0};
        sized_form(&cg, k, &g, &ea, &w);
        out->form = w.data, out->nform = w.len;
    }
    epi_analysis_free(&ea);
    return true;
}

void llvm_kernel_sizes_free(LlvmKernelSizes *s) {
    free(s->values);
    free(s->form);
    s->values = s->form = NULL;
}

/* The optimisation pipeline.  The emitted IR is already in SSA form with
 * rotated loops and no stack traffic, so the full `default<O3>` pipeline
 * (several times the compile time) buys nothing measurable here: inline
 * the math helpers, clean up, hoist invariants, vectorise, clean up again.
 * (Measured on bench/programs and examples/transformer_block.kiln: same run
 * times, transformer_block 546 -> 205 ms CPU together with the loop
 * metadata below; docs/cpu-backend.md.) */
#define KILN_INSTCOMBINE "instcombine<no-verify-fixpoint>"
#define KILN_PIPELINE                                                                                               \
    "always-inline,function(sroa,early-cse," KILN_INSTCOMBINE ",simplifycfg,loop-mssa(licm),loop(loop-rotate),"    \
    "loop-vectorize," KILN_INSTCOMBINE ",simplifycfg,early-cse,loop-mssa(licm)," KILN_INSTCOMBINE ",simplifycfg)"

static unsigned attr_kind(const char *name) { return LLVMGetEnumAttributeKindForName(name, strlen(name)); }

/* How a module treats the shared helpers (shared_helper). */
typedef struct {
    const char *suffix; /* NULL: internal to the module */
    bool define_all;    /* the helpers' own module: all of them, no kernel */
    bool used;          /* out: a kernel of the module calls one */
    LlvmTimes *times;   /* NULL, or out: where the thread's time went */
    bool sized;         /* a unit of runtime/cpu_code.c: sized products (llvm_kernel_sizes) */
} HelperMode;

static double thread_cpu_ms(void) { return clock_ms(CLOCK_THREAD_CPUTIME_ID); }

/* Every shared helper a kernel may call: the micro-kernel, the packing
 * routines for each operand dtype of a tiled product (f32, f16, bf16:
 * kernel_gemm's) and panel width (MR for A, NR for B), the size-generic
 * loop nests and the shared im2col forms. */
static void define_shared_helpers(Cg *cg) {
    MmShape sh = ukernel_shape(cg);
    for (int rows = ukernel_row_step(&sh); rows <= sh.mr; rows += ukernel_row_step(&sh))
        for (int nv = 1; nv <= sh.nr / sh.vl; nv++)
            for (int ib = 0; ib < 2; ib++) helper_ukernel(cg, &sh, rows, nv, ib, 0);
    for (int nv = 1; ukernel_single_row(&sh, false, 0) && nv <= sh.nr / sh.vl; nv++)
        helper_ukernel(cg, &sh, 1, nv, false, 0);
    for (int rows = ukernel_row_step(&sh); ukernel_half(&sh, 0) && rows <= sh.mr;
         rows += ukernel_row_step(&sh))
        for (int ib = 0; ib < 2; ib++) helper_ukernel_lanes(cg, &sh, rows, 1, ib, 0, true);
    for (int rows = ukernel_row_step(&sh); rows <= sh.mr; rows += ukernel_row_step(&sh))
        for (int ib = 0; ukernel_transposed(&sh, 0, rows) && ib < 2; ib++)
            helper_ukernel_cols(cg, &sh, rows, ib);
    for (int rows = ukernel_row_step(&sh); rows <= sh.mr; rows += ukernel_row_step(&sh))
        for (int nv = 1; nv <= sh.nr / sh.vl; nv++)
            for (int taps = 1; taps <= CONV_TAPS_MAX_SW; taps++)
                helper_ukernel(cg, &sh, rows, nv, false, taps);
    for (int rows = 1; rows <= taps_rows_max(&sh); rows++)
        for (int nv = 1; taps_exact_rows(&sh, rows) && nv <= sh.nr / sh.vl; nv++)
            for (int taps = 1; taps <= CONV_TAPS_MAX_SW; taps++)
                helper_ukernel(cg, &sh, rows, nv, false, taps);
    const KilnDType dts[] = {KILN_F32, KILN_F16, KILN_BF16};
    for (int d = 0; d < 3; d++) helper_pack(cg, dts[d], sh.mr), helper_pack(cg, dts[d], sh.nr);
    for (int swap = 0; swap < 2; swap++)
        helper_mm_nest(cg, swap, false), helper_mm_gather(cg, swap), helper_mm_prepack(cg, swap);
    helper_mm_nest(cg, true, true);
    helper_pad_rows(cg);
    if (cg->wino && cg->vec_floats == 16) /* the Winograd form's (conv_wino) */
        helper_wino_in(cg), helper_wino_out(cg), helper_wino_u(cg);
    for (int nv = 1; cg->stem_direct && cg->vec_floats == 16 && nv <= STEM_DIRECT_NV; nv++)
        helper_stem_tile(cg, nv); /* the stem's tiles (stem_direct) */
    if (cg->stem_direct && cg->vec_floats == 16) helper_stem_deint(cg);
    if (cg->tile_t_calls) { /* the tile widths conv_taps_tile picks */
        const int widths[3] = {sh.mr, sh.mr > CONV_TAPS_ODD_TILE ? CONV_TAPS_ODD_TILE : 0,
                               taps_wide_tiles(&sh) ? CONV_TAPS_WIDE_TILE : 0};
        for (int i = 0; i < 3; i++)
            if (widths[i] > 0) helper_tile_t(cg, widths[i]);
    }
    for (size_t i = 0; i < sizeof IM2COL_SHARED / sizeof IM2COL_SHARED[0] && helpers_hold_forms(cg); i++) {
        Im2colForm f = IM2COL_SHARED[i];
        for (int w = 0; w < 2; w++) {
            f.nr = w ? sh.mr : sh.nr;
            helper_im2col_form(cg, &f);
        }
    }
}

/* Every function of the module vectorised at the full vector width where
 * that is 16 floats.  LLVM tunes Intel's AVX-512 CPUs (skylake-avx512 to
 * emeraldrapids) to prefer 256-bit vectors, so the loops its vectoriser
 * makes (the epilogues' loops, elementwise and row kernels) ran in ymm
 * registers there, half the width they had on AMD's znver4, where the
 * kernels' own <16 x float> code already runs in zmm on both. */
static void prefer_full_vectors(const Cg *cg) {
    if (cg->vec_floats < 16) return;
    LLVMAttributeRef a = LLVMCreateStringAttribute(cg->ctx, "prefer-vector-width", 19, "512", 3);
    for (LLVMValueRef fn = LLVMGetFirstFunction(cg->mod); fn; fn = LLVMGetNextFunction(fn))
        if (!LLVMIsDeclaration(fn)) LLVMAddAttributeAtIndex(fn, LLVMAttributeFunctionIndex, a);
}

/* Whether every image kernel k writes kept padded (KBuf.pad_hw) is its
 * only store, from a convolution read in place whose epilogue runs per
 * output row: that epilogue writes the borders (zero_row_borders), which
 * nothing else would. */
static bool padded_stores_ok(const Cg *cg, const Kernel *k) {
    const KStage *m = &k->stages.data[k->stages.len - 1];
    for (int j = 0; j < m->stores.len; j++) {
        if (!cg->p->bufs.data[m->stores.data[j].buf].pad_hw[0]) continue;
        KGemm g;
        if (m->stores.len != 1 || !gemm_tiled(cg, k, &g) || !conv_taps(cg->p, &g) ||
            !conv_row_ld(cg, g.conv) || !store_runs(k, g.conv->ow) || g.mm.n % g.conv->ow)
            return false;
    }
    return true;
}

/* The module of the kernels of p that `only` selects (NULL: all), in ctx,
 * verified and optimised for tm; hm (NULL: internal helpers) as above. */
static LLVMModuleRef build_module(LLVMContextRef ctx, const KProgram *p, LLVMTargetMachineRef tm, bool aot,
                                  const bool *only, int64_t *scratch, int64_t *prepack, int64_t *gather,
                                  HelperMode *hm, char *err, size_t errlen) {
    double t_ir = thread_cpu_ms();
    Cg cg = {0};
    cg.ctx = ctx;
    cg.p = p;
    cg.mod = LLVMModuleCreateWithNameInContext(p->graph_name, ctx);
    cg.b = LLVMCreateBuilderInContext(ctx);
    cg_target(&cg, tm);
    cg.aot = aot;
    cg.t_void = LLVMVoidTypeInContext(ctx);
    cg.t_i1 = LLVMInt1TypeInContext(ctx);
    cg.t_i8 = LLVMInt8TypeInContext(ctx);
    cg.t_i16 = LLVMInt16TypeInContext(ctx);
    cg.t_i32 = LLVMInt32TypeInContext(ctx);
    cg.t_i64 = LLVMInt64TypeInContext(ctx);
    cg.t_f16 = LLVMHalfTypeInContext(ctx);
    cg.t_f32 = LLVMFloatTypeInContext(ctx);
    cg.t_f64 = LLVMDoubleTypeInContext(ctx);
    cg.t_ptr = LLVMPointerTypeInContext(ctx, 0);
    cg.k_alwaysinline = attr_kind("alwaysinline");
    cg.k_noalias = attr_kind("noalias");
    cg.k_nounwind = attr_kind("nounwind");
    cg.k_noinline = attr_kind("noinline");

    char *triple = LLVMGetTargetMachineTriple(tm);
    LLVMSetTarget(cg.mod, triple);
    LLVMDisposeMessage(triple);
    LLVMTargetDataRef td = LLVMCreateTargetDataLayout(tm);
    LLVMSetModuleDataLayout(cg.mod, td);
    LLVMDisposeTargetData(td);

    if (hm) cg.helper_suffix = hm->suffix, cg.define_helpers = hm->define_all, cg.sized = hm->sized && !aot;
    if (hm && hm->define_all) define_shared_helpers(&cg);
    LLVMValueRef *kfns = xcalloc((size_t)p->kernels.len + 1, sizeof(LLVMValueRef));
    int64_t max_scratch = 0;
    int nbuilt = 0;
    for (int i = 0; i < p->kernels.len && !(hm && hm->define_all); i++) {
        if (only && !only[i]) continue;
        if (!padded_stores_ok(&cg, &p->kernels.data[i])) {
            snprintf(err, errlen,
                     "kernel %s writes an image kept padded without the row epilogue that writes its borders "
                     "(a kiln bug)",
                     p->kernels.data[i].name);
            free(kfns);
            LLVMDisposeBuilder(cg.b);
            LLVMDisposeModule(cg.mod);
            return NULL;
        }
        double t0 = trace_clock_ms();
        kfns[i] = emit_kernel(&cg, &p->kernels.data[i], i, aot ? NULL : &(LLVMValueRef){NULL});
        trace_span(p->trace, "codegen", t0, trace_clock_ms(), "LLVM IR %s", p->kernels.data[i].name);
        nbuilt++;
        if (aot) LLVMSetLinkage(kfns[i], LLVMInternalLinkage);
        int64_t sb = matmul_scratch(&cg, &p->kernels.data[i]);
        if (scratch) scratch[i] = sb;
        for (int w = 0; prepack && w < 2; w++) prepack[2 * i + w] = prepack_bytes(&cg, &p->kernels.data[i], w);
        if (gather) gather_size(&cg, &p->kernels.data[i], &gather[3 * i]);
        if (sb > max_scratch) max_scratch = sb;
    }
    if (aot) emit_aot_run(&cg, kfns, max_scratch);
    free(kfns);
    if (hm) hm->used = cg.uses_helpers;
    LLVMDisposeBuilder(cg.b);

    double t_verify = trace_clock_ms();
    char *msg = NULL;
    if (LLVMVerifyModule(cg.mod, LLVMReturnStatusAction, &msg)) {
        copy_msg(err, errlen, "LLVM verifier rejected the generated code (a kiln bug): ", msg);
        LLVMDisposeMessage(msg);
        LLVMDisposeModule(cg.mod);
        return NULL;
    }
    LLVMDisposeMessage(msg);

    double t_opt = thread_cpu_ms();
    prefer_full_vectors(&cg);
    LLVMPassBuilderOptionsRef po = LLVMCreatePassBuilderOptions();
    LLVMPassBuilderOptionsSetLoopVectorization(po, 1);
    LLVMPassBuilderOptionsSetSLPVectorization(po, 1);
    LLVMPassBuilderOptionsSetLoopInterleaving(po, 1);
    LLVMPassBuilderOptionsSetLoopUnrolling(po, 1);
    LLVMErrorRef e = LLVMRunPasses(cg.mod, KILN_PIPELINE, tm, po);
    LLVMDisposePassBuilderOptions(po);
    trace_span(p->trace, "codegen", t_verify, trace_clock_ms(), "LLVM verify + passes (%d kernels)", nbuilt);
    if (hm && hm->times) hm->times->ir_ms += t_opt - t_ir, hm->times->opt_ms += thread_cpu_ms() - t_opt;
    if (e) {
        char *m = LLVMGetErrorMessage(e);
        copy_msg(err, errlen, "LLVM optimisation failed: ", m);
        LLVMDisposeErrorMessage(m);
        LLVMDisposeModule(cg.mod);
        return NULL;
    }
    return cg.mod;
}

LLVMModuleRef llvm_build_program(LLVMContextRef ctx, const KProgram *p, LLVMTargetMachineRef tm, bool aot,
                                 int64_t *scratch, char *err, size_t errlen) {
    char verr[512];
    if (!kprog_verify(p, verr, sizeof verr) || !kprog_is_legal(p, verr, sizeof verr)) {
        snprintf(err, errlen, "kernel IR: %s", verr);
        return NULL;
    }
    return build_module(ctx, p, tm, aot, NULL, scratch, NULL, NULL, NULL, err, errlen);
}

/* ------------------------------------------------------- object code */

/* The module of hm's kind (or of p's kernels with internal helpers), to an
 * object file. */
static LLVMMemoryBufferRef compile_object(LLVMContextRef ctx, LLVMTargetMachineRef tm, const KProgram *p,
                                          HelperMode *hm, int64_t *scratch, int64_t *prepack, int64_t *gather,
                                          char **ir_text, char *err, size_t errlen) {
    if (ir_text) *ir_text = NULL;
    LLVMModuleRef mod = build_module(ctx, p, tm, false, NULL, scratch, prepack, gather, hm, err, errlen);
    if (!mod) return NULL;
    if (ir_text) {
        char *s = LLVMPrintModuleToString(mod);
        *ir_text = xstrdup(s);
        LLVMDisposeMessage(s);
    }
    char *msg = NULL;
    LLVMMemoryBufferRef obj = NULL;
    double t_emit = thread_cpu_ms(), t_mc = trace_clock_ms();
    bool failed = LLVMTargetMachineEmitToMemoryBuffer(tm, mod, LLVMObjectFile, &msg, &obj);
    trace_span(p->trace, "codegen", t_mc, trace_clock_ms(), "LLVM machine code");
    if (hm && hm->times) hm->times->emit_ms += thread_cpu_ms() - t_emit;
    if (failed) {
        copy_msg(err, errlen, "LLVM code generation failed: ", msg);
        obj = NULL;
        if (ir_text) {
            free(*ir_text);
            *ir_text = NULL;
        }
    }
    LLVMDisposeMessage(msg);
    LLVMDisposeModule(mod);
    return obj;
}

LLVMMemoryBufferRef llvm_compile_object(LLVMContextRef ctx, LLVMTargetMachineRef tm, const KProgram *p,
                                        const char *helpers, bool *uses_helpers, int64_t *scratch,
                                        int64_t *prepack, int64_t *gather, LlvmTimes *times, char **ir_text,
                                        char *err, size_t errlen) {
    HelperMode hm = {helpers, false, false, times, true};
    LLVMMemoryBufferRef obj = compile_object(ctx, tm, p, &hm, scratch, prepack, gather, ir_text, err, errlen);
    if (uses_helpers) *uses_helpers = hm.used;
    return obj;
}

LLVMMemoryBufferRef llvm_compile_helpers(LLVMContextRef ctx, LLVMTargetMachineRef tm, const char *helpers,
                                         LlvmTimes *times, char **ir_text, char *err, size_t errlen) {
    Arena *a = arena_new();
    KProgram *none = kprog_new(a, "kiln.helpers");
    HelperMode hm = {helpers, true, false, times, false};
    LLVMMemoryBufferRef obj = compile_object(ctx, tm, none, &hm, NULL, NULL, NULL, ir_text, err, errlen);
    kprog_destroy(none);
    arena_free(a);
    return obj;
}

/* "triple cpu features" (heap), the three LLVM messages disposed. */
static char *identity_text(char *triple, char *cpu, char *feat) {
    StrBuf sb = {0};
    sb_printf(&sb, "%s %s %s", triple, cpu, feat);
    LLVMDisposeMessage(triple);
    LLVMDisposeMessage(cpu);
    LLVMDisposeMessage(feat);
    return sb.data;
}

char *llvm_target_identity(LLVMTargetMachineRef tm) {
    return identity_text(LLVMGetTargetMachineTriple(tm), LLVMGetTargetMachineCPU(tm),
                         LLVMGetTargetMachineFeatureString(tm));
}

char *llvm_host_identity(void) {
    return identity_text(LLVMGetDefaultTargetTriple(), LLVMGetHostCPUName(), LLVMGetHostCPUFeatures());
}

void llvm_version(char *buf, size_t len) {
    unsigned major, minor, patch;
    LLVMGetVersion(&major, &minor, &patch);
    snprintf(buf, len, "%u.%u.%u", major, minor, patch);
}

int llvm_table_len(const KProgram *p) { return llvm_values_slot(p) + 1; }
