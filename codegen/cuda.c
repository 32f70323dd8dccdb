/* cuda.c - CUDA C from the kernel IR: one translation unit per KProgram.
 *
 * Contract: takes a KProgram that kprog_verify accepts and prints what it
 * says; the only choices made here are how each kernel's iteration space maps
 * onto the GPU (docs/cuda-backend.md):
 *
 *   M_ELEM    no REDUCE stage: grid-stride loop over o*extent, one element per
 *             thread, or 4 per thread with vector loads/stores of the
 *             buffers read and written at index o itself;
 *   M_THREAD  reductions whose loads are contiguous along o (or tiny extents):
 *             one thread per outer index, stages as serial loops;
 *   M_WARP    one warp per outer index: lanes split r, warp shuffles combine;
 *   M_BLOCK   one block per outer index: threads split r, shuffles plus one
 *             shared-memory slot per warp combine; MAP split across the block;
 *   M_MATMUL  KK_MATMUL: 64x64 output tiles, 16-deep k slices in shared
 *             memory, 4x4 outputs per thread in registers; the epilogue (the
 *             MAP stage) runs on each output from the registers;
 *   M_WMMA    the same tiles on tensor cores (nvcuda::wmma 16x16x16, f32
 *             accumulators) for f16/bf16 operands on sm_80+ (not emulated);
 *   M_DIRECT  depthwise and small-group convolutions and pools
 *             (kernel_direct, the CPU's direct form): a thread per output
 *             (consecutive threads along a row: coalesced), the window's
 *             taps as loops with the geometry as constants, taps outside
 *             the image skipped, then the epilogue.
 *
 * Scalar values live in registers as float (f32/f16/bf16: halves rounded
 * back after each op, so every value is one its dtype holds, as in the
 * reference interpreter), double, int, long long or bool; i64 index
 * arithmetic whose range provably fits runs in 32 bits.
 *
 * One renderer serves the GPU (NVRTC) and the host emulation
 * (runtime/cuda_emu.c): the Dialect table holds their differences.  Nothing
 * from the user's program reaches the source unsanitised: buffers are b<N>,
 * values v<N>, kernel names are reduced to [A-Za-z0-9_] and made unique. */
#include "codegen/cuda.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- dialects */

typedef struct {
    const char *name;
    bool emulated;
    bool tensor_cores; /* nvcuda::wmma for f16/bf16 matmuls */
    const char *defines; /* math spelling, constants, raw moves */
} Dialect;

static const char gpu_defines[] =
    "#define KM(f) f\n"
    "#define KINFF __int_as_float(0x7f800000)\n"
    "#define KINF __longlong_as_double(0x7ff0000000000000LL)\n"
    "#define KNANF __int_as_float(0x7fffffff)\n"
    "#define KNAN __longlong_as_double(0x7fffffffffffffffLL)\n"
    "static __device__ __forceinline__ void kmv4(void *d, const void *s) { *(unsigned *)d = *(const unsigned *)s; }\n"
    "static __device__ __forceinline__ void kmv8(void *d, const void *s) { *(uint2 *)d = *(const uint2 *)s; }\n"
    "static __device__ __forceinline__ void kmv16(void *d, const void *s) { *(uint4 *)d = *(const uint4 *)s; }\n"
    "static __device__ __forceinline__ void kmv32(void *d, const void *s) {\n"
    "    ((uint4 *)d)[0] = ((const uint4 *)s)[0];\n"
    "    ((uint4 *)d)[1] = ((const uint4 *)s)[1];\n"
    "}\n";

static const char emu_defines[] =
    "#include \"kiln_emu.h\"\n"
    "#define KM(f) __builtin_##f\n"
    "#define KINFF __builtin_inff()\n"
    "#define KINF __builtin_inf()\n"
    "#define KNANF __builtin_nanf(\"\")\n"
    "#define KNAN __builtin_nan(\"\")\n"
    "static inline void kmv4(void *d, const void *s) { __builtin_memcpy(d, s, 4); }\n"
    "static inline void kmv8(void *d, const void *s) { __builtin_memcpy(d, s, 8); }\n"
    "static inline void kmv16(void *d, const void *s) { __builtin_memcpy(d, s, 16); }\n"
    "static inline void kmv32(void *d, const void *s) { __builtin_memcpy(d, s, 32); }\n";

/* The helpers every kernel may call: the reference interpreter's semantics
 * (ir/interp.c) in float/double and wrapping integer arithmetic. */
static const char prelude[] =
    "#define KDEV static __device__ __forceinline__\n"
    "#define KF1(n, f, d) KDEV float n(float x) { return KM(f)(x); } KDEV double n(double x) { return "
    "KM(d)(x); }\n"
    "#define KF2(n, f, d) KDEV float n(float x, float y) { return KM(f)(x, y); } \\\n"
    "    KDEV double n(double x, double y) { return KM(d)(x, y); }\n"
    "KF1(kf_exp, expf, exp) KF1(kf_log, logf, log) KF1(kf_sqrt, sqrtf, sqrt) KF1(kf_sin, sinf, sin)\n"
    "KF1(kf_cos, cosf, cos) KF1(kf_tanh, tanhf, tanh) KF1(kf_erf, erff, erf) KF1(kf_floor, floorf, floor)\n"
    "KF1(kf_ceil, ceilf, ceil) KF1(kf_rint, rintf, rint) KF1(kf_abs, fabsf, fabs)\n"
    "KF2(kf_fmod, fmodf, fmod) KF2(kf_pow, powf, pow) KF2(kf_copysign, copysignf, copysign)\n"
    "KF1(kf_erfc, erfcf, erfc)\n"
    "/* in double, so that it rounds once (0.5 ulp) */\n"
    "template <class T> KDEV T kf_rsqrt(T x) { return (T)(1.0 / KM(sqrt)((double)x)); }\n"
    "/* sigmoid and silu from e = exp(-|x|), which never overflows; silu far below\n"
    " * zero in double, where x e would lose the bits of a subnormal e */\n"
    "template <class T> KDEV T kf_sigmoid(T x) { T e = kf_exp(-kf_abs(x)); return x < (T)0 ? e / ((T)1 + e) : (T)1 / ((T)1 + e); }\n"
    "template <class T> KDEV T kf_silu(T x) {\n"
    "    if (x < (T)-80) return x < (T)-800 ? (T)-0.0 : (T)((double)x * KM(exp)((double)x) / (1.0 + KM(exp)((double)x)));\n"
    "    return x < (T)0 ? x * kf_exp(x) / ((T)1 + kf_exp(x)) : x / ((T)1 + kf_exp(-x));\n"
    "}\n"
    "template <class T> KDEV T kf_relu(T x) { return x > (T)0 ? x : (x != x ? x : (T)0); }\n"
    "template <class T> KDEV T kf_sign(T x) { return x != x ? x : (T)((x > (T)0) - (x < (T)0)); }\n"
    "/* gelu below zero as 0.5 x erfc(-x/sqrt 2) in double: no cancellation, and the\n"
    " * argument exact enough where erfc is steep; -0 below its underflow */\n"
    "template <class T> KDEV T kf_gelu(T x) {\n"
    "    if (x < (T)0) return x < (T)-40 ? (T)-0.0 : (T)(0.5 * (double)x * KM(erfc)(-(double)x * 0.70710678118654752440));\n"
    "    return (T)0.5 * x * ((T)1 + kf_erf(x * (T)0.70710678118654752440));\n"
    "}\n"
    "/* 0.5 x (1 + tanh u) = x / (1 + exp(-2u)); below zero in double (exp(-2u)\n"
    " * overflows in float long before the result underflows) */\n"
    "template <class T> KDEV T kf_gelu_tanh(T x) {\n"
    "    if (x < (T)0) {\n"
    "        if (x < (T)-100) return (T)-0.0;\n"
    "        double d = (double)x, u = 0.79788456080286535588 * (d + 0.044715 * d * d * d);\n"
    "        return (T)(d / (1.0 + KM(exp)(-2.0 * u)));\n"
    "    }\n"
    "    T u = (T)0.79788456080286535588 * (x + (T)0.044715 * x * x * x);\n"
    "    return x / ((T)1 + kf_exp((T)-2 * u));\n"
    "}\n"
    "template <class T> KDEV T kf_mod(T a, T b) { /* NumPy remainder: the divisor's sign */\n"
    "    T r = kf_fmod(a, b);\n"
    "    if (b == (T)0) return r;\n"
    "    if (r != (T)0) { if ((b < (T)0) != (r < (T)0)) r += b; } else r = kf_copysign((T)0, b);\n"
    "    return r;\n"
    "}\n"
    "template <class T> KDEV T kf_max(T a, T b) { return a != a ? a : b != b ? b : a > b ? a : b; }\n"
    "template <class T> KDEV T kf_min(T a, T b) { return a != a ? a : b != b ? b : a < b ? a : b; }\n"
    "KDEV int ki_add(int a, int b) { return (int)((unsigned)a + (unsigned)b); }\n"
    "KDEV int ki_sub(int a, int b) { return (int)((unsigned)a - (unsigned)b); }\n"
    "KDEV int ki_mul(int a, int b) { return (int)((unsigned)a * (unsigned)b); }\n"
    "KDEV long long ki_add(long long a, long long b) { return (long long)((unsigned long long)a + (unsigned "
    "long long)b); }\n"
    "KDEV long long ki_sub(long long a, long long b) { return (long long)((unsigned long long)a - (unsigned "
    "long long)b); }\n"
    "KDEV long long ki_mul(long long a, long long b) { return (long long)((unsigned long long)a * (unsigned "
    "long long)b); }\n"
    "template <class T> KDEV T ki_neg(T x) { return ki_sub((T)0, x); }\n"
    "template <class T> KDEV T ki_abs(T x) { return x < (T)0 ? ki_neg(x) : x; }\n"
    "template <class T> KDEV T ki_sign(T x) { return (T)((x > (T)0) - (x < (T)0)); }\n"
    "KDEV long long ki_mod64(long long a, long long b) { /* NumPy remainder; x % 0 = 0 */\n"
    "    if (b == 0 || b == -1) return 0;\n"
    "    long long r = a % b;\n"
    "    if (r != 0 && ((r < 0) != (b < 0))) r += b;\n"
    "    return r;\n"
    "}\n"
    "KDEV long long ki_pow64(long long base, long long ex) {\n"
    "    if (ex < 0) return base == 1 ? 1 : base == -1 ? ((ex & 1) ? -1 : 1) : 0;\n"
    "    long long r = 1;\n"
    "    while (ex > 0) { if (ex & 1) r = ki_mul(r, base); base = ki_mul(base, base); ex >>= 1; }\n"
    "    return r;\n"
    "}\n"
    "KDEV int ki_mod(int a, int b) { return (int)ki_mod64(a, b); }\n"
    "KDEV long long ki_mod(long long a, long long b) { return ki_mod64(a, b); }\n"
    "KDEV int ki_pow(int a, int b) { return (int)(unsigned)(unsigned long long)ki_pow64(a, b); }\n"
    "KDEV long long ki_index(long long i, long long n) { /* take: from the end, then clamped */\n"
    "    if (i < 0) i += n;\n"
    "    return i < 0 ? 0 : i >= n ? n - 1 : i;\n"
    "}\n"
    "KDEV long long ki_pow(long long a, long long b) { return ki_pow64(a, b); }\n"
    "/* conversions to integers: from a float truncation, NaN -> 0, saturating at the ends; from an integer "
    "wrapping */\n"
    "template <class T> KDEV int kc_i32(T x) {\n"
    "    return x != x ? 0 : x >= (T)2147483647 ? 2147483647 : x <= (T)(-2147483647 - 1) ? (-2147483647 - 1) "
    ": (int)x;\n"
    "}\n"
    "KDEV int kc_i32(long long x) { return (int)(unsigned)(unsigned long long)x; } /* wraps, as NumPy */\n"
    "template <class T> KDEV long long kc_i64(T x) {\n"
    "    return x != x ? 0 : x >= (T)9223372036854775807.0 ? 9223372036854775807LL\n"
    "         : x <= (T)(-9223372036854775807.0) ? (-9223372036854775807LL - 1) : (long long)x;\n"
    "}\n"
    "/* argmax/argmin: a thread's own elements come in increasing r (strict\n"
    " * comparison keeps the first); across threads the smaller index wins ties.\n"
    " * The first NaN wins and stays, as in the reference. */\n"
    "template <class T> KDEV bool karg_take_max(T v, T best) { return !(best != best) && (v != v || v > "
    "best); }\n"
    "template <class T> KDEV bool karg_take_min(T v, T best) { return !(best != best) && (v != v || v < "
    "best); }\n"
    "template <class T> KDEV void karg_comb(T &v, long long &i, T ov, long long oi, bool is_max) {\n"
    "    if (oi < 0) return;\n"
    "    bool take;\n"
    "    if (i < 0) take = true;\n"
    "    else if (v != v || ov != ov) take = ov != ov && (!(v != v) || oi < i);\n"
    "    else take = (is_max ? ov > v : ov < v) || (ov == v && oi < i);\n"
    "    if (take) { v = ov; i = oi; }\n"
    "}\n";

static const char prelude_f16[] =
    "KDEV float kr_f16(float x) { return __half2float(__float2half_rn(x)); }\n";
static const char prelude_bf16[] =
    "KDEV float kr_bf16(float x) { return __bfloat162float(__float2bfloat16_rn(x)); }\n";

/* -------------------------------------------------------- kernel context */

typedef enum { M_ELEM, M_THREAD, M_WARP, M_BLOCK, M_MATMUL, M_WMMA, M_DIRECT } Mode;
static const char *const mode_names[] = {"elementwise",       "thread per output", "warp per output",
                                         "block per output",  "tiled matmul",      "tensor-core matmul",
                                         "direct convolution"};

enum { BLOCK_THREADS = 256, VEC = 4, MAX_GRID = 65535 };
enum { TILE = 64, TILE_K = 16, WMMA_K = 32 };

typedef struct {
    const KProgram *p;
    const Kernel *k;
    const Dialect *d;
    StrBuf *sb;
    int depth; /* indentation */
    Mode mode;
    int threads;   /* block size */
    bool vec;      /* M_ELEM with vector lanes */
    bool *needed;  /* per instruction */
    bool *small;   /* i64 index value that fits in int */
    KRange *range; /* per instruction (kernel_index_ranges) */
    bool *vload;   /* loaded VEC at a time (vector mode) */
    int lane;      /* vector lane, or -1 */
    bool failed;
    char *err;
    size_t errlen;
    /* M_MATMUL / M_WMMA: the product (a matmul's KMatmul, or a convolution
     * as an implicit GEMM: kernel_gemm) */
    KGemm gemm;
    const KMatmul *mm;
} KCtx;

static bool kfail(KCtx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool kfail(KCtx *c, const char *fmt, ...) {
    if (c->failed) return false;
    c->failed = true;
    int n = snprintf(c->err, c->errlen, "cuda codegen: kernel %s: ", c->k->name);
    if (n < 0 || (size_t)n >= c->errlen) return false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(c->err + n, c->errlen - (size_t)n, fmt, ap);
    va_end(ap);
    return false;
}

/* One line of output at the current depth. */
static void line(KCtx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void line(KCtx *c, const char *fmt, ...) {
    for (int i = 0; i < c->depth; i++) sb_puts(c->sb, "    ");
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(c->sb, fmt, ap);
    va_end(ap);
    sb_puts(c->sb, "\n");
}

static const KInst *inst(const KCtx *c, int i) { return &c->k->insts.data[i]; }

/* ------------------------------------------------------------------ types */

static bool is_half(KilnDType dt) { return dt == KILN_F16 || dt == KILN_BF16; }
static bool is_floating(KilnDType dt) { return dt == KILN_F32 || dt == KILN_F64 || is_half(dt); }

/* The register type of a value of dtype dt. */
static const char *reg_type(KilnDType dt) {
    switch (dt) {
    case KILN_F64: return "double";
    case KILN_I32: return "int";
    case KILN_I64: return "long long";
    case KILN_BOOL: return "bool";
    default: return "float";
    }
}

/* The element type of a buffer of dtype dt. */
static const char *mem_type(KilnDType dt) {
    switch (dt) {
    case KILN_F16: return "__half";
    case KILN_BF16: return "__nv_bfloat16";
    case KILN_F64: return "double";
    case KILN_I32: return "int";
    case KILN_I64: return "long long";
    case KILN_BOOL: return "unsigned char";
    default: return "float";
    }
}

static const char *inst_type(const KCtx *c, int i) {
    return c->small[i] ? "int" : reg_type(inst(c, i)->dtype);
}

/* Between a memory element and a register value, per dtype: {load, store}
 * (NULL: the value as it is). */
static const char *const mem_conversion[KILN_NUM_DTYPES][2] = {
    [KILN_F16] = {"__half2float(%s)", "__float2half_rn(%s)"},
    [KILN_BF16] = {"__bfloat162float(%s)", "__float2bfloat16_rn(%s)"},
    [KILN_BOOL] = {"(%s != 0)", "(unsigned char)(%s)"},
};

static void ex_mem(StrBuf *e, KilnDType dt, const char *x, bool store) {
    const char *f = mem_conversion[dt][store];
    if (f)
        sb_printf(e, f, x);
    else
        sb_puts(e, x);
}

/* Memory element -> register value, and back. */
static void ex_load(StrBuf *e, KilnDType dt, const char *x) { ex_mem(e, dt, x, false); }
static void ex_store(StrBuf *e, KilnDType dt, const char *x) { ex_mem(e, dt, x, true); }

/* x (a register of dtype `from`) converted to dtype `to`, as ir/interp.c's
 * ref_round_to_dtype does: halves round to nearest even, float -> int
 * truncates and saturates (NaN -> 0), i64 -> i32 wraps, -> bool is != 0. */
static void ex_cvt(StrBuf *e, KilnDType from, KilnDType to, const char *x) {
    if (from == to || (is_half(from) && to == KILN_F32)) {
        sb_puts(e, x);
        return;
    }
    switch (to) {
    case KILN_F32: sb_printf(e, "(float)(%s)", x); break;
    case KILN_F64: sb_printf(e, "(double)(%s)", x); break;
    case KILN_F16:
    case KILN_BF16:
        if (from == KILN_BOOL) sb_printf(e, "((%s) ? 1.0f : 0.0f)", x);
        else sb_printf(e, "kr_%s((float)(%s))", to == KILN_F16 ? "f16" : "bf16", x);
        break;
    case KILN_I32:
        if (from == KILN_BOOL) sb_printf(e, "(int)(%s)", x);
        else sb_printf(e, "kc_i32(%s)", x);
        break;
    case KILN_I64:
        if (is_floating(from)) sb_printf(e, "kc_i64(%s)", x);
        else sb_printf(e, "(long long)(%s)", x);
        break;
    case KILN_BOOL: sb_printf(e, "((%s) != 0)", x); break;
    default: sb_puts(e, x); break;
    }
}

/* A constant of dtype dt as a C literal. */
static void ex_const(StrBuf *e, KilnDType dt, Scalar s) {
    if (is_floating(dt)) {
        double v = ref_round_to_dtype(s.f, dt);
        bool f = dt != KILN_F64;
        if (isnan(v)) sb_puts(e, f ? "KNANF" : "KNAN");
        else if (isinf(v)) sb_puts(e, v > 0 ? (f ? "KINFF" : "KINF") : (f ? "(-KINFF)" : "(-KINF)"));
        else {
            char buf[64];
            snprintf(buf, sizeof buf, f ? "%.9g" : "%.17g", v);
            bool has_point = strpbrk(buf, ".e") != NULL;
            sb_printf(e, "%s%s%s%s", v < 0 || signbit(v) ? "(" : "", buf, has_point ? "" : ".0",
                      f ? "f" : "");
            if (v < 0 || signbit(v)) sb_puts(e, ")");
        }
        return;
    }
    if (dt == KILN_BOOL) {
        sb_puts(e, s.i != 0 ? "true" : "false");
        return;
    }
    if (dt == KILN_I32) {
        int32_t x = (int32_t)scalar_from_int(s.i, KILN_I32).i;
        if (x == INT32_MIN) sb_puts(e, "(-2147483647 - 1)");
        else sb_printf(e, x < 0 ? "(%d)" : "%d", x);
        return;
    }
    int64_t x = s.i;
    if (x == INT64_MIN) sb_puts(e, "(-9223372036854775807LL - 1)");
    else sb_printf(e, x < 0 ? "(%lldLL)" : "%lldLL", (long long)x);
}

/* ------------------------------------------------------------- analysis */

/* Which instructions the kernel's results depend on.  Operands come before
 * their users, so one backward sweep closes the set.  With mm_epilogue the
 * stage-0 loads are not rendered (the matmul tiles read A and B). */
static void mark_needed(KCtx *c, bool mm_epilogue) {
    const Kernel *k = c->k;
    for (int s = 0; s < k->stages.len; s++) {
        const KStage *st = &k->stages.data[s];
        if (st->kind == KS_REDUCE) {
            if (!mm_epilogue && st->value >= 0) c->needed[st->value] = true;
        } else {
            for (int j = 0; j < st->stores.len; j++) {
                c->needed[st->stores.data[j].index] = true;
                c->needed[st->stores.data[j].value] = true;
            }
        }
    }
    for (int i = k->insts.len - 1; i >= 0; i--) {
        if (!c->needed[i]) continue;
        const KInst *in = inst(c, i);
        if (in->kind == KI_CONST || in->kind == KI_OUTER || in->kind == KI_INNER || in->kind == KI_ACC) continue;
        int ops[3] = {in->a, in->b, in->c};
        for (int x = 0; x < 3; x++)
            if (ops[x] >= 0 && ops[x] < i) c->needed[ops[x]] = true;
    }
}

/* Which index values fit in 32 bits (kernel_index_ranges), so that those
 * run as int (64-bit division is slow on a GPU). */
static void compute_ranges(KCtx *c) {
    const Kernel *k = c->k;
    c->range = kernel_index_ranges(k);
    for (int i = 0; i < k->insts.len; i++) {
        const KInst *in = inst(c, i);
        const KRange *r = &c->range[i];
        bool index_kind = in->kind == KI_CONST || in->kind == KI_OUTER || in->kind == KI_INNER || in->kind == KI_INDEX ||
                          in->kind == KI_IADD || in->kind == KI_IMUL || in->kind == KI_IDIV ||
                          in->kind == KI_IMOD;
        c->small[i] =
            in->dtype == KILN_I64 && index_kind && r->known && r->lo >= INT32_MIN && r->hi <= INT32_MAX;
    }
}

/* Whether the loads of stage s read consecutive addresses for consecutive o
 * (and not for consecutive r): then one thread per output coalesces. */
static bool loads_follow_outer(const KCtx *c, int s) {
    const Kernel *k = c->k;
    int64_t ext = k->stages.data[s].extent;
    int along_o = 0, along_r = 0;
    for (int i = 0; i < k->insts.len; i++) {
        const KInst *in = inst(c, i);
        if (in->kind != KI_LOAD || in->stage != s || !c->needed[i]) continue;
        int64_t v00, v10, v01;
        int64_t o1 = k->outer > 1 ? 1 : 0, r1 = ext > 1 ? 1 : 0;
        if (!kernel_eval_index(k, in->a, 0, 0, &v00) || !kernel_eval_index(k, in->a, o1, 0, &v10) ||
            !kernel_eval_index(k, in->a, 0, r1, &v01))
            continue;
        if (v10 - v00 == 1) along_o++;
        if (v01 - v00 == 1) along_r++;
    }
    return along_o > 0 && along_r == 0;
}

/* ------------------------------------------------------------- naming */

/* The name of instruction i's value in the current lane. */
static void name_of(const KCtx *c, int i, StrBuf *e) {
    if (c->lane >= 0) sb_printf(e, "v%d_%d", i, c->lane);
    else sb_printf(e, "v%d", i);
}

/* Operand i used as a value of its dtype (widening a 32-bit index). */
static void use(const KCtx *c, int i, StrBuf *e) {
    if (c->small[i]) sb_puts(e, "(long long)");
    name_of(c, i, e);
}

/* Operand i converted to dtype `to`. */
static void use_as(const KCtx *c, int i, KilnDType to, StrBuf *e) {
    StrBuf x = {0};
    use(c, i, &x);
    ex_cvt(e, inst(c, i)->dtype, to, x.data);
    sb_free(&x);
}

/* Element idx of buffer b as an lvalue; the emulation checks the bounds
 * (kemu_at reports the first access outside the buffer and redirects it). */
static void ex_elem_ref(const KCtx *c, int b, const char *idx, StrBuf *e) {
    if (c->d->emulated)
        sb_printf(e, "(*kemu_at(b%d, (long long)(%s), %lldLL, %d))", b, idx, (long long)c->p->bufs.data[b].numel, b);
    else sb_printf(e, "b%d[%s]", b, idx);
}

/* The address of VEC elements from o0 of buffer b (checked when emulated). */
static void ex_vec_ref(const KCtx *c, int b, StrBuf *e) {
    if (c->d->emulated) sb_printf(e, "kemu_at_n(b%d, o0, %d, %lldLL, %d)", b, VEC, (long long)c->p->bufs.data[b].numel, b);
    else sb_printf(e, "b%d + o0", b);
}

/* --------------------------------------------------- scalar instructions */

/* The expression of an elementwise op (KI_ELEM) into e. */
static bool ex_elem(KCtx *c, int i, StrBuf *e) {
    const KInst *in = inst(c, i);
    KilnDType rt = in->dtype;
    OpKind kind = op_info[in->op].kind;
    StrBuf A = {0}, B = {0}, C = {0};
    KilnDType at = inst(c, in->a)->dtype;
    bool ok = true;
    bool fl = is_floating(rt);
    const char *f = NULL; /* a float helper taking the operands */
    switch (kind) {
    case OK_UNARY:
        use_as(c, in->a, rt, &A);
        if (fl) {
            switch (in->op) {
            case OP_ABS: f = "kf_abs"; break;
            case OP_NEG: sb_printf(e, "(-%s)", A.data); break;
            case OP_EXP: f = "kf_exp"; break;
            case OP_LOG: f = "kf_log"; break;
            case OP_SQRT: f = "kf_sqrt"; break;
            case OP_RSQRT: f = "kf_rsqrt"; break;
            case OP_SIN: f = "kf_sin"; break;
            case OP_COS: f = "kf_cos"; break;
            case OP_TANH: f = "kf_tanh"; break;
            case OP_SIGMOID: f = "kf_sigmoid"; break;
            case OP_SILU: f = "kf_silu"; break;
            case OP_RELU: f = "kf_relu"; break;
            case OP_GELU: f = in->flag ? "kf_gelu_tanh" : "kf_gelu"; break;
            case OP_ERF: f = "kf_erf"; break;
            case OP_FLOOR: f = "kf_floor"; break;
            case OP_CEIL: f = "kf_ceil"; break;
            case OP_ROUND: f = "kf_rint"; break;
            case OP_SIGN: f = "kf_sign"; break;
            default: ok = false; break;
            }
            if (f) sb_printf(e, "%s(%s)", f, A.data);
        } else {
            switch (in->op) {
            case OP_ABS: sb_printf(e, "ki_abs(%s)", A.data); break;
            case OP_NEG: sb_printf(e, "ki_neg(%s)", A.data); break;
            case OP_RELU: sb_printf(e, "(%s > 0 ? %s : 0)", A.data, A.data); break;
            case OP_FLOOR:
            case OP_CEIL:
            case OP_ROUND: sb_puts(e, A.data); break;
            case OP_SIGN: sb_printf(e, "ki_sign(%s)", A.data); break;
            default: ok = false; break;
            }
        }
        break;
    case OK_BINARY: /* operand counts: kprog_verify */
        use_as(c, in->a, rt, &A);
        use_as(c, in->b, rt, &B);
        if (fl) {
            switch (in->op) {
            case OP_ADD: sb_printf(e, "(%s + %s)", A.data, B.data); break;
            case OP_SUB: sb_printf(e, "(%s - %s)", A.data, B.data); break;
            case OP_MUL: sb_printf(e, "(%s * %s)", A.data, B.data); break;
            case OP_DIV: sb_printf(e, "(%s / %s)", A.data, B.data); break;
            case OP_MOD: f = "kf_mod"; break;
            case OP_POW: f = "kf_pow"; break;
            case OP_MAXIMUM: f = "kf_max"; break;
            case OP_MINIMUM: f = "kf_min"; break;
            default: ok = false; break;
            }
            if (f) sb_printf(e, "%s(%s, %s)", f, A.data, B.data);
        } else if (rt == KILN_BOOL) {
            if (in->op == OP_MAXIMUM) sb_printf(e, "(%s || %s)", A.data, B.data);
            else if (in->op == OP_MINIMUM) sb_printf(e, "(%s && %s)", A.data, B.data);
            else ok = false;
        } else {
            switch (in->op) {
            case OP_ADD: f = "ki_add"; break;
            case OP_SUB: f = "ki_sub"; break;
            case OP_MUL: f = "ki_mul"; break;
            case OP_MOD: f = "ki_mod"; break;
            case OP_POW: f = "ki_pow"; break;
            case OP_MAXIMUM: sb_printf(e, "(%s > %s ? %s : %s)", A.data, B.data, A.data, B.data); break;
            case OP_MINIMUM: sb_printf(e, "(%s < %s ? %s : %s)", A.data, B.data, A.data, B.data); break;
            default: ok = false; break;
            }
            if (f) sb_printf(e, "%s(%s, %s)", f, A.data, B.data);
        }
        break;
    case OK_COMPARE: {
        use_as(c, in->a, at, &A);
        use_as(c, in->b, at, &B);
        const char *sym = in->op == OP_EQ ? "==" : in->op == OP_NE ? "!=" : in->op == OP_LT ? "<"
                        : in->op == OP_LE ? "<=" : in->op == OP_GT ? ">" : ">=";
        sb_printf(e, "(%s %s %s)", A.data, sym, B.data);
        break;
    }
    case OK_LOGIC:
        use_as(c, in->a, KILN_BOOL, &A);
        if (in->op == OP_NOT)
            sb_printf(e, "(!%s)", A.data);
        else {
            use_as(c, in->b, KILN_BOOL, &B);
            sb_printf(e, "(%s %s %s)", A.data, in->op == OP_AND ? "&&" : "||", B.data);
        }
        break;
    case OK_WHERE:
        use_as(c, in->a, KILN_BOOL, &A);
        use_as(c, in->b, rt, &B);
        use_as(c, in->c, rt, &C);
        sb_printf(e, "(%s ? %s : %s)", A.data, B.data, C.data);
        break;
    case OK_CAST: use_as(c, in->a, rt, e); break;
    default: ok = false; break;
    }
    sb_free(&A), sb_free(&B), sb_free(&C);
    if (!ok) return kfail(c, "v%d: %s on %s is not supported", i, op_info[in->op].name, kiln_dtype_name(rt));
    /* a 16-bit op here is exact: kprog_legalise made the others f32 + a cast */
    return true;
}

/* Index arithmetic, in 32 bits where every value involved fits. */
static void ex_index(KCtx *c, int i, StrBuf *e) {
    const KInst *in = inst(c, i);
    bool narrow = c->small[i] && c->small[in->a] && c->small[in->b];
    /* unsigned division is cheaper; the divisor of a known range is positive */
    bool nonneg = c->range[in->a].known && c->range[in->a].lo >= 0;
    StrBuf A = {0}, B = {0};
    name_of(c, in->a, &A);
    name_of(c, in->b, &B);
    const char *t = narrow ? "int" : "long long";
    switch (in->kind) {
    case KI_IADD: sb_printf(e, "(%s)%s + (%s)%s", t, A.data, t, B.data); break;
    case KI_IMUL: sb_printf(e, "(%s)%s * (%s)%s", t, A.data, t, B.data); break;
    case KI_IDIV:
    case KI_IMOD: { /* both truncate, as C does */
        const char *op = in->kind == KI_IDIV ? "/" : "%";
        if (narrow && nonneg)
            sb_printf(e, "(int)((unsigned)%s %s (unsigned)%s)", A.data, op, B.data);
        else if (narrow)
            sb_printf(e, "%s %s %s", A.data, op, B.data);
        else
            sb_printf(e, "(long long)%s %s (long long)%s", A.data, op, B.data);
        break;
    }
    default: /* KI_ILT */ sb_printf(e, "(long long)%s < (long long)%s", A.data, B.data); break;
    }
    if (c->small[i] && !narrow) {
        StrBuf r = {0};
        sb_printf(&r, "(int)(%s)", e->data);
        sb_free(e);
        *e = r;
    }
    sb_free(&A), sb_free(&B);
}

/* Expressions that name the loop variables and accumulators for the
 * instructions about to be rendered. */
typedef struct {
    const char *outer;  /* o */
    const char *inner;  /* r of the scope being rendered */
    const char *acc0;   /* M_MATMUL/M_WMMA: stage 0's result */
} Names;

/* One instruction as `const T vI = ...;`. */
static void emit_inst(KCtx *c, int i, const Names *nm) {
    const KInst *in = inst(c, i);
    StrBuf e = {0}, n = {0};
    name_of(c, i, &n);
    switch (in->kind) {
    case KI_CONST:
        if (c->small[i]) sb_printf(&e, "%lld", (long long)c->range[i].lo);
        else ex_const(&e, in->dtype, kinst_scalar(in));
        break;
    case KI_OUTER: sb_printf(&e, c->small[i] ? "(int)(%s)" : "%s", nm->outer); break;
    case KI_INNER: sb_printf(&e, c->small[i] ? "(int)(%s)" : "%s", nm->inner ? nm->inner : "0"); break;
    case KI_ACC:
        if (in->a < 0 || in->a >= c->k->stages.len) {
            kfail(c, "v%d reads no stage", i);
            break;
        }
        if (nm->acc0 && in->a == 0) sb_printf(&e, "%s", nm->acc0);
        else if (c->k->stages.data[in->a].reduce == OP_ARGMAX || c->k->stages.data[in->a].reduce == OP_ARGMIN)
            sb_printf(&e, "acc%d_i", in->a);
        else sb_printf(&e, "acc%d", in->a);
        break;
    case KI_LOAD: {
        if (in->buf < 0 || in->buf >= c->p->bufs.len || in->a < 0) {
            kfail(c, "v%d loads from no buffer", i);
            break;
        }
        KilnDType bt = c->p->bufs.data[in->buf].dtype;
        StrBuf x = {0}, idx = {0}, v = {0};
        name_of(c, in->a, &idx);
        if (c->vload && c->vload[i] && c->lane >= 0) sb_printf(&x, "lv%d[%d]", i, c->lane);
        else ex_elem_ref(c, in->buf, idx.data, &x);
        ex_load(&v, bt, x.data);
        if (bt != in->dtype) {
            StrBuf w = {0};
            ex_cvt(&w, bt, in->dtype, v.data);
            sb_free(&v);
            v = w;
        }
        if (in->b >= 0 && !(c->vload && c->vload[i] && c->lane >= 0)) {
            StrBuf g = {0}, z = {0};
            name_of(c, in->b, &g);
            ex_const(&z, in->dtype, scalar_from_int(0, in->dtype));
            sb_printf(&e, "(%s ? %s : %s)", g.data, v.data, z.data);
            sb_free(&g), sb_free(&z);
        } else {
            sb_puts(&e, v.data);
        }
        sb_free(&x), sb_free(&idx), sb_free(&v);
        break;
    }
    case KI_ELEM:
        if (in->op == OP_CAST) use_as(c, in->a, in->dtype, &e);
        else ex_elem(c, i, &e);
        break;
    case KI_CAST:
        if (in->a < 0) kfail(c, "v%d casts nothing", i);
        else use_as(c, in->a, in->dtype, &e);
        break;
    case KI_INDEX: {
        StrBuf a = {0};
        if (in->a < 0) {
            kfail(c, "v%d indexes with nothing", i);
            break;
        }
        name_of(c, in->a, &a);
        sb_printf(&e, c->small[i] ? "(int)ki_index((long long)%s, %lldLL)" : "ki_index((long long)%s, %lldLL)", a.data,
                  (long long)in->value);
        sb_free(&a);
        break;
    }
    case KI_IADD:
    case KI_IMUL:
    case KI_IDIV:
    case KI_IMOD:
    case KI_ILT:
        if (in->a < 0 || in->b < 0) kfail(c, "v%d: index arithmetic needs two operands", i);
        else ex_index(c, i, &e);
        break;
    }
    if (!c->failed) line(c, "const %s %s = %s;", in->kind == KI_ILT ? "bool" : inst_type(c, i), n.data, e.data);
    sb_free(&e), sb_free(&n);
}

/* The needed instructions of one scope (-1: outer, else a stage). */
static void emit_scope(KCtx *c, int scope, const Names *nm) {
    for (int i = 0; i < c->k->insts.len && !c->failed; i++)
        if (c->needed[i] && inst(c, i)->stage == scope) emit_inst(c, i, nm);
}

/* The stores of the MAP stage (not those done as vectors). */
static void emit_stores(KCtx *c, const KStage *st, const bool *vstore) {
    for (int j = 0; j < st->stores.len; j++) {
        const KStore *s = &st->stores.data[j];
        if (s->buf < 0 || s->buf >= c->p->bufs.len) {
            kfail(c, "store %d to no buffer", j);
            return;
        }
        KilnDType bt = c->p->bufs.data[s->buf].dtype;
        StrBuf v = {0}, m = {0};
        use_as(c, s->value, bt, &v);
        ex_store(&m, bt, v.data);
        if (vstore && vstore[j]) {
            line(c, "sv%d[%d] = %s;", j, c->lane, m.data);
        } else {
            StrBuf n = {0}, ref = {0};
            name_of(c, s->index, &n);
            ex_elem_ref(c, s->buf, n.data, &ref);
            line(c, "%s = %s;", ref.data, m.data);
            sb_free(&n), sb_free(&ref);
        }
        sb_free(&v), sb_free(&m);
    }
}

/* ------------------------------------------------------------ reductions */

static bool is_arg(Op op) { return op == OP_ARGMAX || op == OP_ARGMIN; }

/* The type in which an arg-reduction compares its values. */
static KilnDType arg_value_dtype(KilnDType dt) {
    return is_floating(dt) ? (dt == KILN_F64 ? KILN_F64 : KILN_F32) : KILN_I64;
}

static void emit_acc_init(KCtx *c, int s) {
    const KStage *st = &c->k->stages.data[s];
    if (is_arg(st->reduce)) {
        KilnDType vt = arg_value_dtype(inst(c, st->value)->dtype);
        line(c, "%s acc%d_v = 0; long long acc%d_i = -1;", reg_type(vt), s, s);
        return;
    }
    KilnDType at = st->acc_dtype;
    StrBuf init = {0};
    ex_const(&init, at, kstage_identity(st));
    line(c, "%s acc%d = %s;", reg_type(at), s, init.data);
    sb_free(&init);
}

/* acc = combine(acc, other): the expression for the accumulator's type. */
static void ex_combine(const KStage *st, const char *a, const char *b, StrBuf *e) {
    bool fl = is_floating(st->acc_dtype);
    switch (st->reduce) {
    case OP_PROD: sb_printf(e, fl ? "%s * %s" : "ki_mul(%s, %s)", a, b); break;
    case OP_MAX:
        if (fl) sb_printf(e, "kf_max(%s, %s)", a, b);
        else sb_printf(e, "(%s > %s ? %s : %s)", a, b, a, b);
        break;
    case OP_MIN:
        if (fl) sb_printf(e, "kf_min(%s, %s)", a, b);
        else sb_printf(e, "(%s < %s ? %s : %s)", a, b, a, b);
        break;
    default: sb_printf(e, fl ? "%s + %s" : "ki_add(%s, %s)", a, b); break;
    }
}

/* Folds stage s's value (just computed, in this thread) at position r. */
static void emit_acc_step(KCtx *c, int s, const char *r) {
    const KStage *st = &c->k->stages.data[s];
    StrBuf v = {0}, e = {0}, a = {0};
    if (is_arg(st->reduce)) {
        use_as(c, st->value, arg_value_dtype(inst(c, st->value)->dtype), &v);
        line(c, "if (acc%d_i < 0 || karg_take_%s(%s, acc%d_v)) { acc%d_v = %s; acc%d_i = %s; }", s,
             st->reduce == OP_ARGMAX ? "max" : "min", v.data, s, s, v.data, s, r);
    } else {
        use_as(c, st->value, st->acc_dtype, &v);
        sb_printf(&a, "acc%d", s);
        ex_combine(st, a.data, v.data, &e);
        line(c, "acc%d = %s;", s, e.data);
    }
    sb_free(&v), sb_free(&e), sb_free(&a);
}

/* Butterfly over the warp's lanes: every lane ends with the same value. */
static void emit_warp_combine(KCtx *c, int s) {
    const KStage *st = &c->k->stages.data[s];
    line(c, "for (int sh = 16; sh > 0; sh >>= 1) {");
    c->depth++;
    if (is_arg(st->reduce)) {
        KilnDType vt = arg_value_dtype(inst(c, st->value)->dtype);
        line(c, "const %s ov = __shfl_xor_sync(0xffffffffu, acc%d_v, sh);", reg_type(vt), s);
        line(c, "const long long oi = __shfl_xor_sync(0xffffffffu, acc%d_i, sh);", s);
        line(c, "karg_comb(acc%d_v, acc%d_i, ov, oi, %s);", s, s, st->reduce == OP_ARGMAX ? "true" : "false");
    } else {
        StrBuf a = {0}, e = {0};
        sb_printf(&a, "acc%d", s);
        ex_combine(st, a.data, "ot", &e);
        line(c, "const %s ot = __shfl_xor_sync(0xffffffffu, acc%d, sh);", reg_type(st->acc_dtype), s);
        line(c, "acc%d = %s;", s, e.data);
        sb_free(&a), sb_free(&e);
    }
    c->depth--;
    line(c, "}");
}

/* Across the block's warps through one shared slot per warp; every thread
 * then folds the slots in the same order, so all agree bit for bit. */
static void emit_block_combine(KCtx *c, int s) {
    const KStage *st = &c->k->stages.data[s];
    int nw = c->threads / 32;
    emit_warp_combine(c, s);
    if (is_arg(st->reduce)) {
        KilnDType vt = arg_value_dtype(inst(c, st->value)->dtype);
        line(c, "__shared__ %s kred%d_v[%d]; __shared__ long long kred%d_i[%d];", reg_type(vt), s, nw, s, nw);
        line(c, "if ((threadIdx.x & 31) == 0) { kred%d_v[threadIdx.x >> 5] = acc%d_v; kred%d_i[threadIdx.x >> 5] = acc%d_i; }",
             s, s, s, s);
        line(c, "__syncthreads();");
        line(c, "acc%d_v = kred%d_v[0]; acc%d_i = kred%d_i[0];", s, s, s, s);
        line(c, "for (int w = 1; w < %d; w++) karg_comb(acc%d_v, acc%d_i, kred%d_v[w], kred%d_i[w], %s);", nw, s,
             s, s, s, st->reduce == OP_ARGMAX ? "true" : "false");
    } else {
        StrBuf a = {0}, b = {0}, e = {0};
        sb_printf(&a, "acc%d", s);
        sb_printf(&b, "kred%d[w]", s);
        ex_combine(st, a.data, b.data, &e);
        line(c, "__shared__ %s kred%d[%d];", reg_type(st->acc_dtype), s, nw);
        line(c, "if ((threadIdx.x & 31) == 0) kred%d[threadIdx.x >> 5] = acc%d;", s, s);
        line(c, "__syncthreads();");
        line(c, "acc%d = kred%d[0];", s, s);
        line(c, "for (int w = 1; w < %d; w++) acc%d = %s;", nw, s, e.data);
        sb_free(&a), sb_free(&b), sb_free(&e);
    }
    line(c, "__syncthreads(); /* the slots are reused by the next output */");
}

static void emit_arg_final(KCtx *c, int s) {
    if (is_arg(c->k->stages.data[s].reduce)) line(c, "if (acc%d_i < 0) acc%d_i = 0;", s, s);
}

/* ------------------------------------------------------ kernel signature */

typedef struct {
    VEC(int) bufs; /* the buffers a kernel touches, ascending */
    bool *written;
} KParams;

static void collect_params(const KProgram *p, const Kernel *k, KParams *kp) {
    bool *touched = xcalloc((size_t)p->bufs.len + 1, 1);
    kp->written = xcalloc((size_t)p->bufs.len + 1, 1);
    for (int i = 0; i < k->insts.len; i++) {
        const KInst *in = &k->insts.data[i];
        if (in->kind == KI_LOAD && in->buf >= 0 && in->buf < p->bufs.len) touched[in->buf] = true;
    }
    for (int s = 0; s < k->stages.len; s++)
        for (int j = 0; j < k->stages.data[s].stores.len; j++) {
            int b = k->stages.data[s].stores.data[j].buf;
            if (b >= 0 && b < p->bufs.len) touched[b] = kp->written[b] = true;
        }
    if (k->kind == KK_MATMUL) {
        if (k->mm.a_buf >= 0 && k->mm.a_buf < p->bufs.len) touched[k->mm.a_buf] = true;
        if (k->mm.b_buf >= 0 && k->mm.b_buf < p->bufs.len) touched[k->mm.b_buf] = true;
    }
    for (int b = 0; b < p->bufs.len; b++)
        if (touched[b]) VEC_PUSH(kp->bufs, b);
    free(touched);
}

static void emit_signature(KCtx *c, const char *name, const KParams *kp) {
    StrBuf *sb = c->sb;
    sb_printf(sb, "extern \"C\" __global__ void __launch_bounds__(%d) %s(", c->threads, name);
    for (int j = 0; j < kp->bufs.len; j++) {
        int b = kp->bufs.data[j];
        sb_printf(sb, "%s%s%s *__restrict__ b%d", j ? ", " : "", kp->written[b] ? "" : "const ",
                  mem_type(c->p->bufs.data[b].dtype), b);
    }
    if (kp->bufs.len == 0) sb_puts(sb, "void");
    sb_puts(sb, ") {\n");
}

/* ------------------------------------------------------ the kernel bodies */

/* M_ELEM: for i in [0, outer*extent): o = i / extent, r = i % extent. */
static void emit_elementwise(KCtx *c) {
    const Kernel *k = c->k;
    const KStage *st = &k->stages.data[k->stages.len - 1];
    int ms = k->stages.len - 1;
    int64_t ext = st->extent;
    int64_t total = k->outer * ext;
    int64_t nvec = c->vec ? k->outer / VEC : 0;
    line(c, "const long long gstride = (long long)gridDim.x * %d;", c->threads);
    line(c, "const long long gtid = (long long)blockIdx.x * %d + threadIdx.x;", c->threads);
    Names nm = {.outer = "o", .inner = "r"};
    if (c->vec) {
        /* VEC outputs per thread: loads and stores at index o itself move as
         * one vector; the rest is per lane */
        bool *vstore = xcalloc((size_t)st->stores.len + 1, 1);
        for (int j = 0; j < st->stores.len; j++)
            vstore[j] = inst(c, st->stores.data[j].index)->kind == KI_OUTER;
        line(c, "for (long long vi = gtid; vi < %lldLL; vi += gstride) {", (long long)nvec);
        c->depth++;
        line(c, "const long long o0 = vi * %d;", VEC);
        for (int i = 0; i < k->insts.len; i++) {
            if (!c->vload[i]) continue;
            KilnDType bt = c->p->bufs.data[inst(c, i)->buf].dtype;
            StrBuf ref = {0};
            ex_vec_ref(c, inst(c, i)->buf, &ref);
            line(c, "%s lv%d[%d] __align__(16); kmv%d(lv%d, %s);", mem_type(bt), i, VEC,
                 VEC * (int)kiln_dtype_size(bt), i, ref.data);
            sb_free(&ref);
        }
        for (int j = 0; j < st->stores.len; j++)
            if (vstore[j])
                line(c, "%s sv%d[%d] __align__(16);", mem_type(c->p->bufs.data[st->stores.data[j].buf].dtype), j, VEC);
        for (int l = 0; l < VEC && !c->failed; l++) {
            c->lane = l;
            line(c, "{ /* lane %d */", l);
            c->depth++;
            char o[32];
            snprintf(o, sizeof o, "(o0 + %d)", l);
            Names ln = {.outer = o, .inner = "0"};
            emit_scope(c, -1, &ln);
            emit_scope(c, ms, &ln);
            emit_stores(c, st, vstore);
            c->depth--;
            line(c, "}");
        }
        c->lane = -1;
        for (int j = 0; j < st->stores.len; j++) {
            if (!vstore[j]) continue;
            KilnDType bt = c->p->bufs.data[st->stores.data[j].buf].dtype;
            StrBuf ref = {0};
            ex_vec_ref(c, st->stores.data[j].buf, &ref);
            line(c, "kmv%d(%s, sv%d);", VEC * (int)kiln_dtype_size(bt), ref.data, j);
            sb_free(&ref);
        }
        c->depth--;
        line(c, "}");
        free(vstore);
        line(c, "for (long long o = %lldLL + gtid; o < %lldLL; o += gstride) {", (long long)(nvec * VEC),
             (long long)k->outer);
        c->depth++;
        nm.inner = "0";
    } else if (ext == 1) {
        line(c, "for (long long o = gtid; o < %lldLL; o += gstride) {", (long long)k->outer);
        c->depth++;
        nm.inner = "0";
    } else {
        line(c, "for (long long i = gtid; i < %lldLL; i += gstride) {", (long long)total);
        c->depth++;
        line(c, "const long long o = i / %lldLL, r = i %% %lldLL;", (long long)ext, (long long)ext);
    }
    bool *saved = c->vload;
    c->vload = NULL;
    emit_scope(c, -1, &nm);
    emit_scope(c, ms, &nm);
    emit_stores(c, st, NULL);
    c->vload = saved;
    c->depth--;
    line(c, "}");
}

/* M_THREAD, M_WARP, M_BLOCK: the stages in order for each outer index. */
static void emit_reduce(KCtx *c) {
    const Kernel *k = c->k;
    int wpb = c->threads / 32;
    const char *first; /* r loop: start and step of this thread */
    char step[16];
    switch (c->mode) {
    case M_WARP:
        line(c, "const int lane = threadIdx.x & 31;");
        line(c, "for (long long o = (long long)blockIdx.x * %d + (threadIdx.x >> 5); o < %lldLL; o += (long long)gridDim.x * %d) {",
             wpb, (long long)k->outer, wpb);
        first = "lane";
        snprintf(step, sizeof step, "32");
        break;
    case M_BLOCK:
        line(c, "for (long long o = blockIdx.x; o < %lldLL; o += gridDim.x) {", (long long)k->outer);
        first = "(int)threadIdx.x";
        snprintf(step, sizeof step, "%d", c->threads);
        break;
    default:
        line(c, "for (long long o = (long long)blockIdx.x * %d + threadIdx.x; o < %lldLL; o += (long long)gridDim.x * %d) {",
             c->threads, (long long)k->outer, c->threads);
        first = "0";
        snprintf(step, sizeof step, "1");
        break;
    }
    c->depth++;
    Names nm = {.outer = "o"};
    emit_scope(c, -1, &nm);
    for (int s = 0; s < k->stages.len && !c->failed; s++) {
        const KStage *st = &k->stages.data[s];
        bool serial = c->mode == M_THREAD;
        /* r runs to extent - 1 + step: an int overflows within a step of 2^31 */
        const char *ty = st->extent > (int64_t)INT32_MAX - atoi(step) ? "long long" : "int";
        if (st->kind == KS_REDUCE) {
            if (st->value < 0 || st->value >= k->insts.len) {
                kfail(c, "stage %d reduces no value", s);
                return;
            }
            emit_acc_init(c, s);
            line(c, "for (%s r = %s; r < %lldLL; r += %s) {", ty, first, (long long)st->extent, step);
            c->depth++;
            Names sn = {.outer = "o", .inner = "r"};
            emit_scope(c, s, &sn);
            emit_acc_step(c, s, "r");
            c->depth--;
            line(c, "}");
            if (c->mode == M_WARP) emit_warp_combine(c, s);
            else if (c->mode == M_BLOCK) emit_block_combine(c, s);
            emit_arg_final(c, s);
        } else {
            if (st->extent == 1 && serial) {
                Names sn = {.outer = "o", .inner = "0"};
                line(c, "{");
                c->depth++;
                emit_scope(c, s, &sn);
                emit_stores(c, st, NULL);
            } else {
                line(c, "for (%s r = %s; r < %lldLL; r += %s) {", ty, first, (long long)st->extent, step);
                c->depth++;
                Names sn = {.outer = "o", .inner = "r"};
                emit_scope(c, s, &sn);
                emit_stores(c, st, NULL);
            }
            c->depth--;
            line(c, "}");
        }
    }
    c->depth--;
    line(c, "}");
}

/* A*B's batch offsets: the flattened batch index bz split over the batch
 * dims, each with its element strides in A and B (0 where broadcast). */
static void emit_batch_offsets(KCtx *c) {
    const KMatmul *mm = c->mm;
    line(c, "long long aoff = %lldLL, boff = %lldLL;", (long long)mm->a_off, (long long)mm->b_off);
    if (mm->nbatch > 0) {
        line(c, "{");
        c->depth++;
        line(c, "long long t = bz;");
        for (int d = mm->nbatch - 1; d >= 0; d--) {
            line(c, "{ const long long x = t %% %lldLL; t /= %lldLL; aoff += x * %lldLL; boff += x * %lldLL; }",
                 (long long)mm->batch_dims[d], (long long)mm->batch_dims[d], (long long)mm->a_batch_stride[d],
                 (long long)mm->b_batch_stride[d]);
        }
        c->depth--;
        line(c, "}");
    }
}

/* The epilogue for one output (m, n) of batch bz, acc in `acc`. */
static void emit_mm_epilogue(KCtx *c, const char *acc) {
    const Kernel *k = c->k;
    const KMatmul *mm = c->mm;
    line(c, "if (m < %lldLL && n < %lldLL) {", (long long)mm->m, (long long)mm->n);
    c->depth++;
    line(c, "const long long o = (bz * %lldLL + m) * %lldLL + n;", (long long)mm->m, (long long)mm->n);
    Names nm = {.outer = "o", .inner = "0", .acc0 = acc};
    emit_scope(c, -1, &nm);
    emit_scope(c, 1, &nm);
    emit_stores(c, &k->stages.data[1], NULL);
    c->depth--;
    line(c, "}");
}

static int64_t cdiv(int64_t a, int64_t b) { return (a + b - 1) / b; }

/* The 64x64 output tiles of one batch, grid-stride in both directions:
 * grid.y and grid.z stop at 65535, and a tall or wide product (4194400 rows
 * is 65538 tiles) must still be covered.  Every thread of a block runs the
 * same iterations, so the barriers inside stay uniform. */
static void open_tile_loops(KCtx *c) {
    const KMatmul *mm = c->mm;
    line(c, "for (long long tm = blockIdx.y; tm < %lldLL; tm += gridDim.y) {", (long long)cdiv(mm->m, TILE));
    line(c, "for (long long tn = blockIdx.x; tn < %lldLL; tn += gridDim.x) {", (long long)cdiv(mm->n, TILE));
    c->depth++;
    line(c, "const long long m0 = tm * %d, n0 = tn * %d;", TILE, TILE);
}

static void close_tile_loops(KCtx *c) {
    c->depth--;
    line(c, "}");
    line(c, "}");
}

/* The batch loop (z, grid-stride) with the operands' offsets for batch bz,
 * around the output tiles' loops; closed by close_batch_tiles. */
static void open_batch_tiles(KCtx *c) {
    line(c, "for (long long bz = blockIdx.z; bz < %lldLL; bz += gridDim.z) {", (long long)c->mm->batch);
    c->depth++;
    emit_batch_offsets(c);
    open_tile_loops(c);
}

static void close_batch_tiles(KCtx *c) {
    close_tile_loops(c);
    c->depth--;
    line(c, "}");
}

/* `for (int i < ni) for (int j < nj) body`, both unrolled (tile loops). */
static void unrolled_ij(KCtx *c, int ni, int nj, const char *body) {
    line(c, "#pragma unroll");
    line(c, "for (int i = 0; i < %d; i++)", ni);
    line(c, "#pragma unroll");
    line(c, "    for (int j = 0; j < %d; j++) %s", nj, body);
}

/* One operand tile load: rows x cols elements of a strided view, thread
 * layout along whichever axis is contiguous so the reads coalesce. */
static void emit_tile_load(KCtx *c, const char *dst, bool transpose_dst, int buf, KilnDType bt,
                           const char *acc_t, bool keep_mem, int rows, int cols, int64_t nrows, int64_t ncols,
                           int64_t srow, int64_t scol, const char *off, const char *row0, const char *col0) {
    int per = rows * cols / c->threads;
    bool col_fast = scol == 1 || srow != 1; /* consecutive threads walk columns */
    line(c, per > 4 ? "#pragma unroll 4" : "#pragma unroll"); /* more holds too many loads in flight */
    line(c, "for (int q = 0; q < %d; q++) {", per);
    c->depth++;
    line(c, "const int e = (int)threadIdx.x + %d * q;", c->threads);
    if (col_fast) line(c, "const int rr = e / %d, cc = e %% %d;", cols, cols);
    else line(c, "const int rr = e %% %d, cc = e / %d;", rows, rows);
    line(c, "const long long gr = %s + rr, gc = %s + cc;", row0, col0);
    StrBuf x = {0}, v = {0}, ix = {0};
    sb_printf(&ix, "%s + gr * %lldLL + gc * %lldLL", off, (long long)srow, (long long)scol);
    ex_elem_ref(c, buf, ix.data, &x);
    sb_free(&ix);
    if (keep_mem) sb_puts(&v, x.data);
    else ex_load(&v, bt, x.data);
    const char *zero = keep_mem ? (bt == KILN_F16 ? "__float2half(0.0f)" : "__float2bfloat16(0.0f)") : "0";
    if (transpose_dst)
        line(c, "%s[cc][rr] = (gr < %lldLL && gc < %lldLL) ? (%s)%s : (%s)%s;", dst, (long long)nrows,
             (long long)ncols, acc_t, v.data, acc_t, zero);
    else
        line(c, "%s[rr][cc] = (gr < %lldLL && gc < %lldLL) ? (%s)%s : (%s)%s;", dst, (long long)nrows,
             (long long)ncols, acc_t, v.data, acc_t, zero);
    sb_free(&x), sb_free(&v);
    c->depth--;
    line(c, "}");
}

/* A convolution's B tile (implicit GEMM, kernel_gemm): rows k of the window
 * (c, kh, kw) in [k0, k0 + rows), columns the output pixels [n0, n0 + 64),
 * gathered from the input of image and group bz (boff) with the padding as
 * zeros; consecutive threads take consecutive pixels, which read along an
 * input row. */
static void emit_im2col_tile_load(KCtx *c, const char *dst, KilnDType bt, const char *acc_t, bool keep_mem,
                                  int rows) {
    const KConv *cv = c->gemm.conv;
    const KMatmul *mm = c->mm;
    int per = rows * TILE / c->threads;
    line(c, per > 4 ? "#pragma unroll 4" : "#pragma unroll");
    line(c, "for (int q = 0; q < %d; q++) {", per);
    c->depth++;
    line(c, "const int e = (int)threadIdx.x + %d * q;", c->threads);
    line(c, "const int rr = e / %d, cc = e %% %d;", TILE, TILE);
    line(c, "const long long gr = k0 + rr, gc = n0 + cc;");
    line(c, "const long long ci = gr / %lldLL, kt = gr %% %lldLL;", (long long)(cv->kh * cv->kw),
         (long long)(cv->kh * cv->kw));
    line(c, "const long long ih = (gc / %lldLL) * %lldLL + (kt / %lldLL) * %lldLL - %lldLL;", (long long)cv->ow,
         (long long)cv->sh, (long long)cv->kw, (long long)cv->dh, (long long)cv->ph);
    line(c, "const long long iw = (gc %% %lldLL) * %lldLL + (kt %% %lldLL) * %lldLL - %lldLL;", (long long)cv->ow,
         (long long)cv->sw, (long long)cv->kw, (long long)cv->dw, (long long)cv->pw);
    line(c, "const bool in = gr < %lldLL && gc < %lldLL && ih >= 0 && ih < %lldLL && iw >= 0 && iw < %lldLL;",
         (long long)mm->k, (long long)mm->n, (long long)cv->h, (long long)cv->w);
    StrBuf x = {0}, v = {0}, ix = {0};
    sb_printf(&ix, "boff + ci * %lldLL + ih * %lldLL + iw * %lldLL", (long long)cv->xs[1], (long long)cv->xs[2],
              (long long)cv->xs[3]);
    ex_elem_ref(c, mm->b_buf, ix.data, &x);
    sb_free(&ix);
    if (keep_mem) sb_puts(&v, x.data);
    else ex_load(&v, bt, x.data);
    const char *zero = keep_mem ? (bt == KILN_F16 ? "__float2half(0.0f)" : "__float2bfloat16(0.0f)") : "0";
    line(c, "%s[rr][cc] = in ? (%s)%s : (%s)%s;", dst, acc_t, v.data, acc_t, zero);
    sb_free(&x), sb_free(&v);
    c->depth--;
    line(c, "}");
}

/* The k loop in slices of k_step: each slice of A (TILE x k_step, into kAs,
 * [k][m] when a_transposed) and of B (k_step x TILE, into kBs; a
 * convolution's gathered by emit_im2col_tile_load) in shared memory, in
 * type t (keep_mem: the buffers' own), then the barrier and the unrolled
 * slice loop's pragma.  Closed by close_k_slices. */
static void open_k_slices(KCtx *c, const char *t, bool keep_mem, bool a_transposed, int k_step) {
    const KMatmul *mm = c->mm;
    KilnDType adt = c->p->bufs.data[mm->a_buf].dtype, bdt = c->p->bufs.data[mm->b_buf].dtype;
    line(c, "for (long long k0 = 0; k0 < %lldLL; k0 += %d) {", (long long)mm->k, k_step);
    c->depth++;
    emit_tile_load(c, "kAs", a_transposed, mm->a_buf, adt, t, keep_mem, TILE, k_step, mm->m, mm->k, mm->a_sm,
                   mm->a_sk, "aoff", "m0", "k0");
    if (c->gemm.conv)
        emit_im2col_tile_load(c, "kBs", bdt, t, keep_mem, k_step);
    else
        emit_tile_load(c, "kBs", false, mm->b_buf, bdt, t, keep_mem, k_step, TILE, mm->k, mm->n, mm->b_sk,
                       mm->b_sn, "boff", "k0", "n0");
    line(c, "__syncthreads();");
    line(c, "#pragma unroll");
}

/* Ends the slice (every thread done with the shared tiles) and the k loop. */
static void close_k_slices(KCtx *c) {
    line(c, "__syncthreads();");
    c->depth--;
    line(c, "}");
}

/* M_MATMUL: 64x64 tiles of out, k in slices of 16 through shared memory,
 * each of the 256 threads accumulating a 4x4 block in registers (rows
 * ty + 16i, columns tx + 16j: conflict-free shared reads, coalesced stores). */
static void emit_matmul(KCtx *c) {
    KilnDType at = c->k->stages.data[0].acc_dtype;
    const char *acc_t = reg_type(at);
    bool fl = is_floating(at);
    line(c, "__shared__ %s kAs[%d][%d + 1]; /* [k][m] */", acc_t, TILE_K, TILE);
    line(c, "__shared__ %s kBs[%d][%d]; /* [k][n] */", acc_t, TILE_K, TILE);
    line(c, "const int tx = threadIdx.x & 15, ty = threadIdx.x >> 4;");
    open_batch_tiles(c);
    line(c, "%s acc[4][4];", acc_t);
    unrolled_ij(c, 4, 4, "acc[i][j] = 0;");
    open_k_slices(c, acc_t, false, true, TILE_K); /* A stored [k][m] */
    line(c, "for (int kk = 0; kk < %d; kk++) {", TILE_K);
    c->depth++;
    line(c, "%s ar[4], br[4];", acc_t);
    line(c, "#pragma unroll");
    line(c, "for (int i = 0; i < 4; i++) { ar[i] = kAs[kk][ty + 16 * i]; br[i] = kBs[kk][tx + 16 * i]; }");
    unrolled_ij(c, 4, 4, fl ? "acc[i][j] += ar[i] * br[j];" : "acc[i][j] = ki_add(acc[i][j], ki_mul(ar[i], br[j]));");
    c->depth--;
    line(c, "}");
    close_k_slices(c);
    line(c, "#pragma unroll");
    line(c, "for (int i = 0; i < 4; i++) {");
    c->depth++;
    line(c, "#pragma unroll");
    line(c, "for (int j = 0; j < 4; j++) {");
    c->depth++;
    line(c, "const long long m = m0 + ty + 16 * i, n = n0 + tx + 16 * j;");
    emit_mm_epilogue(c, "acc[i][j]");
    c->depth--;
    line(c, "}");
    c->depth--;
    line(c, "}");
    close_batch_tiles(c);
}

/* M_WMMA: 64x64 tiles on tensor cores, 4 warps of 32x32 (2x2 fragments of
 * 16x16x16), k slices of 32 staged in shared memory in the operands' own
 * type; accumulators (f32) go through shared memory to the epilogue. */
static void emit_wmma(KCtx *c) {
    const KMatmul *mm = c->mm;
    KilnDType dt = c->p->bufs.data[mm->a_buf].dtype;
    const char *ht = mem_type(dt);
    line(c, "__shared__ __align__(32) %s kAs[%d][%d]; /* [m][k] */", ht, TILE, WMMA_K + 8);
    line(c, "__shared__ __align__(32) %s kBs[%d][%d]; /* [k][n] */", ht, WMMA_K, TILE + 8);
    line(c, "__shared__ __align__(32) float kCs[%d][%d];", TILE, TILE + 4);
    line(c, "const int warp = threadIdx.x >> 5, wm = warp >> 1, wn = warp & 1;");
    open_batch_tiles(c);
    line(c, "nvcuda::wmma::fragment<nvcuda::wmma::accumulator, 16, 16, 16, float> cf[2][2];");
    unrolled_ij(c, 2, 2, "nvcuda::wmma::fill_fragment(cf[i][j], 0.0f);");
    open_k_slices(c, ht, true, false, WMMA_K);
    line(c, "for (int kk = 0; kk < %d; kk += 16) {", WMMA_K);
    c->depth++;
    line(c, "nvcuda::wmma::fragment<nvcuda::wmma::matrix_a, 16, 16, 16, %s, nvcuda::wmma::row_major> af[2];", ht);
    line(c, "nvcuda::wmma::fragment<nvcuda::wmma::matrix_b, 16, 16, 16, %s, nvcuda::wmma::row_major> bf[2];", ht);
    line(c, "#pragma unroll");
    line(c, "for (int i = 0; i < 2; i++) {");
    line(c, "    nvcuda::wmma::load_matrix_sync(af[i], &kAs[wm * 32 + i * 16][kk], %d);", WMMA_K + 8);
    line(c, "    nvcuda::wmma::load_matrix_sync(bf[i], &kBs[kk][wn * 32 + i * 16], %d);", TILE + 8);
    line(c, "}");
    unrolled_ij(c, 2, 2, "nvcuda::wmma::mma_sync(cf[i][j], af[i], bf[j], cf[i][j]);");
    c->depth--;
    line(c, "}");
    close_k_slices(c);
    line(c, "#pragma unroll");
    line(c, "for (int i = 0; i < 2; i++)");
    line(c, "#pragma unroll");
    line(c, "    for (int j = 0; j < 2; j++)");
    line(c, "        nvcuda::wmma::store_matrix_sync(&kCs[wm * 32 + i * 16][wn * 32 + j * 16], cf[i][j], %d, nvcuda::wmma::mem_row_major);",
         TILE + 4);
    line(c, "__syncthreads();");
    line(c, "for (int e = threadIdx.x; e < %d; e += %d) {", TILE * TILE, c->threads);
    c->depth++;
    line(c, "const long long m = m0 + e / %d, n = n0 + e %% %d;", TILE, TILE);
    emit_mm_epilogue(c, "kCs[e / 64][e % 64]");
    c->depth--;
    line(c, "}");
    line(c, "__syncthreads();");
    close_batch_tiles(c);
}

/* M_DIRECT: o = ((n*OC + oc)*OH + oh)*OW + ow, grid-stride; acc0 folds
 * X(n, cin0 + c, ih, iw) [* W(oc, c, kh, kw)] over the group's channels and
 * the taps inside the image (KConv in kernel.h), then the epilogue.  Index
 * arithmetic in int when every offset fits. */
static void emit_direct(KCtx *c) {
    const Kernel *k = c->k;
    const KConv *cv = &k->conv;
    const KStage *st = &k->stages.data[0];
    const bool is_conv = cv->op == OP_CONV2D;
    const int64_t cgn = cv->c / cv->groups, ocg = cv->oc / cv->groups;
    int64_t biggest = k->outer;
    if (c->p->bufs.data[cv->x_buf].numel > biggest) biggest = c->p->bufs.data[cv->x_buf].numel;
    if (is_conv && c->p->bufs.data[cv->w_buf].numel > biggest) biggest = c->p->bufs.data[cv->w_buf].numel;
    const char *it = biggest < INT32_MAX / 2 ? "int" : "long long";
    line(c,
         "for (long long o = (long long)blockIdx.x * %d + threadIdx.x; o < %lldLL; o += (long long)gridDim.x "
         "* %d) {",
         c->threads, (long long)k->outer, c->threads);
    c->depth++;
    line(c, "const %s oi = (%s)o;", it, it);
    line(c, "const %s ow = oi %% %lld, oh = oi / %lld %% %lld, plane = oi / %lld;", it, (long long)cv->ow,
         (long long)cv->ow, (long long)cv->oh, (long long)(cv->ow * cv->oh));
    line(c, "const %s oc = plane %% %lld, n = plane / %lld;", it, (long long)cv->oc, (long long)cv->oc);
    line(c, "const %s xb = %lld + n * %lld + oc / %lld * %lld;", it, (long long)cv->x_off,
         (long long)cv->xs[0], (long long)ocg, (long long)(cgn * cv->xs[1]));
    if (is_conv) line(c, "const %s wb = %lld + oc * %lld;", it, (long long)cv->w_off, (long long)cv->ws[0]);
    line(c, "const %s ih0 = oh * %lld - %lld, iw0 = ow * %lld - %lld;", it, (long long)cv->sh,
         (long long)cv->ph, (long long)cv->sw, (long long)cv->pw);
    emit_acc_init(c, 0);
    line(c, "for (%s ci = 0; ci < %lld; ci++) {", it, (long long)cgn);
    c->depth++;
    line(c, "for (%s kh = 0; kh < %lld; kh++) {", it, (long long)cv->kh);
    c->depth++;
    line(c, "const %s ih = ih0 + kh * %lld;", it, (long long)cv->dh);
    line(c, "if (ih < 0 || ih >= %lld) continue;", (long long)cv->h);
    line(c, "for (%s kw = 0; kw < %lld; kw++) {", it, (long long)cv->kw);
    c->depth++;
    line(c, "const %s iw = iw0 + kw * %lld;", it, (long long)cv->dw);
    line(c, "if (iw < 0 || iw >= %lld) continue;", (long long)cv->w);
    StrBuf idx = {0}, ref = {0}, x = {0}, w = {0}, v = {0}, e = {0};
    sb_printf(&idx, "xb + ci * %lld + ih * %lld + iw * %lld", (long long)cv->xs[1], (long long)cv->xs[2],
              (long long)cv->xs[3]);
    ex_elem_ref(c, cv->x_buf, idx.data, &ref);
    ex_load(&x, c->p->bufs.data[cv->x_buf].dtype, ref.data);
    if (is_conv) {
        sb_free(&idx), sb_free(&ref);
        sb_printf(&idx, "wb + ci * %lld + kh * %lld + kw * %lld", (long long)cv->ws[1], (long long)cv->ws[2],
                  (long long)cv->ws[3]);
        ex_elem_ref(c, cv->w_buf, idx.data, &ref);
        ex_load(&w, c->p->bufs.data[cv->w_buf].dtype, ref.data);
        sb_printf(&v, "(float)(%s) * (float)(%s)", x.data, w.data);
    } else {
        sb_printf(&v, "(float)(%s)", x.data);
    }
    ex_combine(st, "acc0", v.data, &e);
    line(c, "acc0 = %s;", e.data);
    sb_free(&idx), sb_free(&ref), sb_free(&x), sb_free(&w), sb_free(&v), sb_free(&e);
    for (int d = 0; d < 3; d++) {
        c->depth--;
        line(c, "}");
    }
    Names nm = {.outer = "o", .inner = "0", .acc0 = "acc0"};
    emit_scope(c, -1, &nm);
    emit_scope(c, 1, &nm);
    emit_stores(c, &k->stages.data[1], NULL);
    c->depth--;
    line(c, "}");
}

/* Whether kernel k runs M_DIRECT: kernel_direct, and its epilogue reads
 * stage 0 only through KI_ACC (c->needed as for an epilogue). */
static bool direct_runs(KCtx *c) {
    if (!kernel_direct(c->p, c->k)) return false;
    for (int i = 0; i < c->k->insts.len; i++)
        if (c->needed[i] && c->k->insts.data[i].stage == 0) return false;
    return true;
}

/* ---------------------------------------------------------- mode choice */

/* Whether a KK_MATMUL kernel, or a KK_CONV kernel as an implicit GEMM
 * (kernel_gemm), has the shape the tiled emitters expect: one sum over k,
 * then an extent-1 epilogue, operands given by KMatmul.  Convolutions with
 * few output channels per group or a short window (depthwise) keep a thread
 * per output: most of a 64x64 tile would be padding.  Sets c->mm. */
static bool matmul_tileable(KCtx *c) {
    const Kernel *k = c->k;
    if (!kernel_gemm(c->p, k, &c->gemm)) return false;
    const KMatmul *mm = c->mm = &c->gemm.mm;
    if (k->kind == KK_CONV && (mm->m < 16 || mm->k < 16)) return false;
    if (k->stages.len != 2) return false;
    const KStage *r = &k->stages.data[0], *m = &k->stages.data[1];
    if (r->kind != KS_REDUCE || r->reduce != OP_SUM || m->kind != KS_MAP || m->extent != 1) return false;
    if (r->extent != mm->k || mm->m <= 0 || mm->n <= 0 || mm->k < 0 || mm->batch <= 0) return false;
    if (k->outer != mm->batch * mm->m * mm->n) return false;
    if (mm->a_buf < 0 || mm->a_buf >= c->p->bufs.len || mm->b_buf < 0 || mm->b_buf >= c->p->bufs.len) return false;
    if (mm->nbatch < 0 || (mm->nbatch > 0 && (!mm->batch_dims || !mm->a_batch_stride || !mm->b_batch_stride)))
        return false;
    int64_t nb = 1;
    for (int d = 0; d < mm->nbatch; d++) nb *= mm->batch_dims[d];
    if (nb != mm->batch) return false;
    /* the epilogue may not read stage 0's own values */
    for (int i = 0; i < k->insts.len; i++)
        if (c->needed[i] && k->insts.data[i].stage == 0) return false;
    return true;
}

static bool wmma_ok(const KCtx *c) {
    const KMatmul *mm = c->mm;
    KilnDType a = c->p->bufs.data[mm->a_buf].dtype, b = c->p->bufs.data[mm->b_buf].dtype;
    return c->d->tensor_cores && a == b && is_half(a) && c->k->stages.data[0].acc_dtype == KILN_F32;
}

/* Whether `fits` accepts the kernel with only its epilogue needed (the
 * tiled and direct forms compute stage 0 themselves); if not, c->needed
 * is left as it was. */
static bool epilogue_form(KCtx *c, bool (*fits)(KCtx *c)) {
    int n = c->k->insts.len;
    bool *saved = xcalloc((size_t)n + 1, 1);
    memcpy(saved, c->needed, (size_t)n);
    memset(c->needed, 0, (size_t)n);
    mark_needed(c, true);
    bool ok = fits(c);
    if (!ok) memcpy(c->needed, saved, (size_t)n);
    free(saved);
    return ok;
}

static unsigned clamp_grid(int64_t n) { return n < 1 ? 1 : n > MAX_GRID ? MAX_GRID : (unsigned)n; }

/* Picks the mapping, the block size and the grid. */
static void choose_mode(KCtx *c, CudaLaunch *L) {
    const Kernel *k = c->k;
    int64_t emax = 0;
    int first_reduce = -1;
    for (int s = 0; s < k->stages.len; s++) {
        const KStage *st = &k->stages.data[s];
        if (st->kind != KS_REDUCE) continue;
        if (first_reduce < 0) first_reduce = s;
        if (st->extent > emax) emax = st->extent;
    }
    L->block[0] = L->block[1] = L->block[2] = 1;
    L->grid[0] = L->grid[1] = L->grid[2] = 1;
    c->threads = BLOCK_THREADS;
    if ((k->kind == KK_MATMUL || k->kind == KK_CONV) && epilogue_form(c, matmul_tileable)) {
        c->mode = wmma_ok(c) ? M_WMMA : M_MATMUL;
        c->threads = c->mode == M_WMMA ? 128 : 256;
        L->grid[0] = clamp_grid(cdiv(c->mm->n, TILE));
        L->grid[1] = clamp_grid(cdiv(c->mm->m, TILE));
        L->grid[2] = clamp_grid(c->mm->batch);
        L->block[0] = (unsigned)c->threads;
        return;
    }
    if ((k->kind == KK_CONV || k->kind == KK_POOL) && epilogue_form(c, direct_runs)) {
        c->mode = M_DIRECT;
        L->grid[0] = clamp_grid(cdiv(k->outer, c->threads));
        L->block[0] = (unsigned)c->threads;
        return;
    }
    if (first_reduce < 0) {
        c->mode = M_ELEM;
        const KStage *st = &k->stages.data[k->stages.len - 1];
        int nv = 0;
        if (st->extent == 1 && k->outer >= 2 * VEC) {
            /* unguarded loads at index o itself move VEC elements at a time */
            for (int i = 0; i < k->insts.len; i++) {
                const KInst *in = inst(c, i);
                if (c->needed[i] && in->kind == KI_LOAD && in->b < 0 && in->a >= 0 && inst(c, in->a)->kind == KI_OUTER) {
                    c->vload[i] = true;
                    nv++;
                }
            }
            for (int j = 0; j < st->stores.len; j++)
                if (inst(c, st->stores.data[j].index)->kind == KI_OUTER) nv++;
        }
        c->vec = nv > 0;
        if (!c->vec) memset(c->vload, 0, (size_t)k->insts.len);
        int64_t work = c->vec ? cdiv(k->outer, VEC) : k->outer * st->extent;
        L->grid[0] = clamp_grid(cdiv(work, c->threads));
        L->block[0] = (unsigned)c->threads;
        return;
    }
    /* short reductions with many outputs: a serial loop per thread beats
     * splitting 2-4 elements per lane and paying 5 shuffle levels */
    if (emax <= 16 || (k->outer >= 1024 && (emax <= 64 || loads_follow_outer(c, first_reduce)))) {
        c->mode = M_THREAD;
        L->grid[0] = clamp_grid(cdiv(k->outer, c->threads));
    } else if (emax <= 1024 && k->outer >= 64) {
        c->mode = M_WARP;
        L->grid[0] = clamp_grid(cdiv(k->outer, c->threads / 32));
    } else {
        c->mode = M_BLOCK;
        /* few long reductions (a full sum): the widest block the GPU has */
        if (k->outer < 128 && emax >= 16384) c->threads = 1024;
        L->grid[0] = clamp_grid(k->outer);
    }
    L->block[0] = (unsigned)c->threads;
}

/* ------------------------------------------------------------- program */

static bool ident_char(char ch) {
    return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') || ch == '_';
}

/* A C identifier from kernel ki's name: [A-Za-z0-9_] only, starting with a
 * letter, distinct from every earlier kernel's. */
static const char *kernel_name_of(const KProgram *p, int ki, Arena *names) {
    StrBuf sb = {0};
    const char *src = p->kernels.data[ki].name ? p->kernels.data[ki].name : "";
    if (!((src[0] >= 'a' && src[0] <= 'z') || (src[0] >= 'A' && src[0] <= 'Z'))) sb_puts(&sb, "k_");
    for (const char *s = src; *s && sb.len < 200; s++) sb_printf(&sb, "%c", ident_char(*s) ? *s : '_');
    if (sb.len == 0) sb_puts(&sb, "k");
    char *out = arena_strdup(names, sb.data);
    sb_free(&sb);
    return out;
}

static void comment_text(StrBuf *sb, const char *s) {
    for (; s && *s; s++) sb_printf(sb, "%c", ident_char(*s) || *s == ' ' || *s == '.' || *s == '-' ? *s : '_');
}

static bool render_kernel(const KProgram *p, int ki, const Dialect *d, const char *name, StrBuf *sb, CudaLaunch *L,
                          bool *uses_sync, char *err, size_t errlen) {
    const Kernel *k = &p->kernels.data[ki];
    int n = k->insts.len;
    KCtx c = {.p = p, .k = k, .d = d, .sb = sb, .lane = -1, .err = err, .errlen = errlen};
    c.needed = xcalloc((size_t)n + 1, 1);
    c.small = xcalloc((size_t)n + 1, 1);
    c.vload = xcalloc((size_t)n + 1, 1);
    KParams kp = {0};
    bool ok = true;
    if (k->stages.len == 0 || k->stages.data[k->stages.len - 1].kind != KS_MAP) {
        ok = kfail(&c, "the last stage must be a map");
        goto done;
    }
    for (int s = 0; s < k->stages.len; s++) {
        const KStage *st = &k->stages.data[s];
        if (st->kind == KS_MAP && s != k->stages.len - 1) {
            ok = kfail(&c, "stage %d: a map before the last stage", s);
            goto done;
        }
        if (st->kind == KS_REDUCE && (st->value < 0 || st->value >= n)) {
            ok = kfail(&c, "stage %d reduces no value", s);
            goto done;
        }
        for (int j = 0; j < st->stores.len; j++) {
            const KStore *x = &st->stores.data[j];
            if (x->index < 0 || x->index >= n || x->value < 0 || x->value >= n) {
                ok = kfail(&c, "stage %d: store %d names no instruction", s, j);
                goto done;
            }
        }
    }
    mark_needed(&c, false);
    compute_ranges(&c);
    choose_mode(&c, L);
    *uses_sync = c.mode == M_WARP || c.mode == M_BLOCK || c.mode == M_MATMUL || c.mode == M_WMMA;
    collect_params(p, k, &kp);

    sb_printf(sb, "\n/* kernel %d: ", ki);
    comment_text(sb, kernel_kind_name(k->kind));
    sb_printf(sb, ", outer %lld, %s, block %d */\n", (long long)k->outer, mode_names[c.mode], c.threads);
    emit_signature(&c, name, &kp);
    c.depth = 1;
    switch (c.mode) {
    case M_ELEM: emit_elementwise(&c); break;
    case M_MATMUL: emit_matmul(&c); break;
    case M_WMMA: emit_wmma(&c); break;
    case M_DIRECT: emit_direct(&c); break;
    default: emit_reduce(&c); break;
    }
    sb_puts(sb, "}\n");
    ok = !c.failed;
    if (ok) {
        L->nargs = kp.bufs.len;
        L->buf_args = xmalloc(sizeof(int) * ((size_t)kp.bufs.len + 1));
        memcpy(L->buf_args, kp.bufs.data, sizeof(int) * (size_t)kp.bufs.len);
        L->shared_bytes = 0;
    }
done:
    VEC_FREE(kp.bufs);
    free(kp.written);
    free(c.needed), free(c.small), free(c.vload), free(c.range);
    return ok;
}

static bool program_uses(const KProgram *p, KilnDType dt) {
    for (int i = 0; i < p->bufs.len; i++)
        if (p->bufs.data[i].dtype == dt) return true;
    for (int ki = 0; ki < p->kernels.len; ki++) {
        const Kernel *k = &p->kernels.data[ki];
        for (int i = 0; i < k->insts.len; i++)
            if (k->insts.data[i].dtype == dt) return true;
    }
    return false;
}

bool cuda_codegen(const KProgram *p, int arch_sm, bool emulated, CudaProgram *out, char *err, size_t errlen) {
    return cuda_codegen_ex(p, arch_sm, emulated, !emulated && arch_sm >= 80, out, err, errlen);
}

bool cuda_codegen_ex(const KProgram *p, int arch_sm, bool emulated, bool tensor_cores, CudaProgram *out, char *err,
                     size_t errlen) {
    memset(out, 0, sizeof *out);
    if (!kprog_verify(p, err, errlen) || !kprog_is_legal(p, err, errlen)) return false;
    Dialect d = {emulated ? "cuda-emu" : "cuda", emulated, tensor_cores, emulated ? emu_defines : gpu_defines};
    StrBuf head = {0}, body = {0};
    Arena *names = arena_new();
    bool ok = true;
    bool *sync = xcalloc((size_t)p->kernels.len + 1, 1);
    for (int ki = 0; ki < p->kernels.len && ok; ki++) {
        CudaLaunch L = {0};
        const char *name = kernel_name_of(p, ki, names);
        /* unique names: a later kernel with an earlier one's name gets _N */
        for (int j = 0; j < out->launches.len; j++)
            if (strcmp(out->launches.data[j].name, name) == 0) {
                name = arena_printf(names, "%s_%d", name, ki);
                j = -1;
            }
        double t0 = trace_clock_ms();
        ok = render_kernel(p, ki, &d, name, &body, &L, &sync[ki], err, errlen);
        trace_span(p->trace, "codegen", t0, trace_clock_ms(), "CUDA C %s", name);
        L.name = xstrdup(name);
        VEC_PUSH(out->launches, L);
    }
    if (ok) {
        sb_puts(&head, "/* generated by kiln from graph ");
        comment_text(&head, p->graph_name);
        sb_printf(&head, " (%d kernels) for %s, sm_%d; do not edit */\n", p->kernels.len, d.name, arch_sm);
        bool f16 = program_uses(p, KILN_F16), bf16 = program_uses(p, KILN_BF16);
        bool wmma = body.data && strstr(body.data, "nvcuda::wmma");
        if (!emulated) {
            if (f16) sb_puts(&head, "#include <cuda_fp16.h>\n");
            if (bf16) sb_puts(&head, "#include <cuda_bf16.h>\n");
            if (wmma) sb_puts(&head, "#include <mma.h>\n");
        }
        sb_puts(&head, d.defines);
        sb_puts(&head, prelude);
        if (f16 || emulated) sb_puts(&head, prelude_f16);
        if (bf16 || emulated) sb_puts(&head, prelude_bf16);
        sb_puts(&head, body.data ? body.data : "");
        if (emulated) {
            /* host entries: launch_NAME(args) runs the grid on the emulator */
            sb_puts(&head, "\n/* host entry points for the emulator */\n");
            for (int ki = 0; ki < out->launches.len; ki++) {
                const CudaLaunch *L = &out->launches.data[ki];
                sb_printf(&head, "static void kemu_body_%s(void **a) { %s(", L->name, L->name);
                for (int j = 0; j < L->nargs; j++)
                    sb_printf(&head, "%s(%s *)a[%d]", j ? ", " : "", mem_type(p->bufs.data[L->buf_args[j]].dtype), j);
                sb_puts(&head, "); }\n");
                sb_printf(&head,
                          "extern \"C\" KEMU_EXPORT int launch_%s(void **args) {\n"
                          "    static const KemuLaunch d = {{%u, %u, %u}, {%u, %u, %u}, %d, kemu_body_%s, \"%s\"};\n"
                          "    return kemu_rt.launch(&d, args);\n"
                          "}\n",
                          L->name, L->grid[0], L->grid[1], L->grid[2], L->block[0], L->block[1], L->block[2],
                          sync[ki] ? 1 : 0, L->name, L->name);
            }
        }
        out->source = head.data ? head.data : xstrdup("");
        head.data = NULL;
    }
    free(sync);
    sb_free(&head);
    sb_free(&body);
    arena_free(names);
    if (!ok) cuda_program_free(out);
    return ok;
}

void cuda_program_free(CudaProgram *cp) {
    if (!cp) return;
    for (int i = 0; i < cp->launches.len; i++) {
        free((char *)cp->launches.data[i].name);
        free(cp->launches.data[i].buf_args);
    }
    VEC_FREE(cp->launches);
    free(cp->source);
    cp->source = NULL;
}
