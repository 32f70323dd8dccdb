/* kernel.h - the kernel IR: what the fusion scheduler (passes/fuse.c) makes
 * and every code generator (codegen/llvm.c, codegen/cuda.c) reads.  No
 * optimisation logic lives in an emitter: it prints what this IR says.
 *
 * A KProgram is a list of kernels over a list of buffers.  A kernel runs, for
 * each outer index o in [0, outer), its stages in order:
 *
 *     for o in [0, outer):                       # parallel: threads / blocks
 *         <outer-scope instructions>             # KInst.stage == -1
 *         acc0 = init(reduce0)                   # stage 0: KS_REDUCE
 *         for r in [0, extent0): acc0 = combine(acc0, value0(o, r))
 *         acc1 = ...                             # stage 1 may use acc0
 *         for r in [0, extentN): buf[idx(o, r)] = val(o, r)   # last: KS_MAP
 *
 * Scalar work is SSA: instructions in dependency order, each in one scope
 * (the outer scope, or one stage whose r it may read).  View ops never copy:
 * they became the index arithmetic of loads (KI_IADD/IMUL/IDIV/IMOD).
 *
 * Elementwise kernel: one KS_MAP stage of extent 1, value at index o.
 * Row kernel (softmax, layernorm): outer = rows, REDUCE stages over the row,
 * then a MAP stage over the row.  Reduction / matmul / conv / pool: REDUCE
 * stage(s) over the reduced extent, then a MAP of extent 1 (the epilogue:
 * bias, activation, residual...). */
#ifndef KILN_KERNEL_H
#define KILN_KERNEL_H

#include "ir/ir.h"

typedef enum {
    KI_CONST, /* value, of dtype */
    KI_OUTER, /* o (i64) */
    KI_INNER, /* r of the instruction's stage (i64) */
    KI_ACC,   /* the result of REDUCE stage `a` (dtype = the stage's result dtype) */
    KI_LOAD,  /* buf[a]; if b >= 0 it is guarded: b (bool) ? buf[a] : 0, no read when false */
    KI_ELEM,  /* elementwise graph op `op` (OK_UNARY/BINARY/COMPARE/LOGIC/WHERE) on a, b, c */
    KI_CAST,  /* a converted to dtype (float->int truncates, ->bool is != 0) */
    KI_IADD,  /* signed i64 index arithmetic on a, b; DIV and MOD see non-negative
               * operands except under a false guard (then the value is unused) */
    KI_IMUL,
    KI_IDIV,
    KI_IMOD,
    KI_ILT, /* bool: a < b on i64 */
    KI_INDEX, /* i64: the integer a (a loaded index, i32 or i64) as a position on an axis of
               * size `value`: negative counts from the end, then clamped into [0, value),
               * since a kernel cannot stop the graph (take's gather) */
} KInstKind;

typedef struct {
    KInstKind kind;
    KilnDType dtype;
    Op op;        /* KI_ELEM */
    int a, b, c;  /* operand instructions, -1 when unused */
    int buf;      /* KI_LOAD */
    int stage;    /* scope: -1 outer, else the stage index */
    double value; /* KI_CONST: the value, for an integer or bool dtype its nearest double */
    int64_t ivalue; /* KI_CONST of an integer or bool dtype: the exact value (kinst_scalar) */
    bool flag;    /* KI_ELEM gelu: approximate (tanh) form */
} KInst;

typedef enum { KS_REDUCE, KS_MAP } KStageKind;

typedef struct {
    int buf;
    int index; /* i64 instruction */
    int value; /* instruction of the buffer's dtype */
} KStore;

typedef struct {
    KStageKind kind;
    int64_t extent;
    /* KS_REDUCE: OP_SUM, OP_PROD, OP_MAX, OP_MIN, OP_ARGMAX or OP_ARGMIN over
     * `value`.  Accumulation happens in acc_dtype (f32 for f16/bf16/f32
     * values, f64 for f64, i64 for ints); the result (KI_ACC) has
     * result_dtype (i64 for arg-reductions, else acc_dtype). */
    Op reduce;
    int value;
    KilnDType acc_dtype, result_dtype;
    /* KS_MAP */
    VEC(KStore) stores;
} KStage;

typedef enum {
    KK_ELEMENTWISE, /* one MAP stage of extent 1 */
    KK_REDUCE,      /* reductions over axes, with prologue and epilogue */
    KK_ROW,         /* softmax / log_softmax / layernorm / rmsnorm over rows */
    KK_MATMUL,      /* see KMatmul */
    KK_CONV,        /* conv2d, implicit GEMM over (c, kh, kw) */
    KK_POOL,        /* max/avg pooling windows */
    KK_COPY,        /* a data-movement-only kernel (counted by the layout tests) */
} KernelKind;

/* A matmul kernel's operands as strided views, for tiled emitters:
 * out[o] with o = (batch*M + m)*N + n is epilogue(sum_k A(b, m, k) * B(b, k, n))
 * where A(b, m, k) = bufs[a_buf][a_off + b1*a_sb1... ] is given by strides per
 * batch index (batch dims flattened: batch index bi -> offsets through
 * a_batch_stride / b_batch_stride over the flattened batch with NumPy
 * broadcast already folded as 0 strides, see batch_dims). */
typedef struct {
    int a_buf, b_buf; /* a_buf < 0: no description (kprog_add_kernel's default) */
    int64_t batch, m, n, k;
    int nbatch;              /* number of batch dims */
    int64_t *batch_dims;     /* [nbatch] sizes of the output batch dims */
    int64_t *a_batch_stride; /* [nbatch] element strides of A per batch dim (0: broadcast) */
    int64_t *b_batch_stride;
    int64_t a_sm, a_sk;      /* element strides of A along m and k */
    int64_t b_sk, b_sn;
    int64_t a_off, b_off;
} KMatmul;

/* A convolution or pooling kernel's window geometry, for emitters with an
 * implicit-GEMM or a direct (row) form.  With o = ((n*OC + oc)*OH + oh)*OW + ow
 * the reduction is, over (c, kh, kw) in [0, C/groups) x [0, KH) x [0, KW)
 * (pools: c is the output channel, one of it),
 *     X(n, g*(C/groups) + c, oh*sh + kh*dh - ph, ow*sw + kw*dw - pw)  [* W(oc, c, kh, kw)]
 * with g = oc / (OC/groups), X zero (max pools: -inf) outside [0, H) x [0, W).
 * X(n, c, h, w) = bufs[x_buf][x_off + n*xs[0] + c*xs[1] + h*xs[2] + w*xs[3]],
 * W(o, c, kh, kw) = bufs[w_buf][w_off + o*ws[0] + c*ws[1] + kh*ws[2] + kw*ws[3]].
 * x_buf < 0: the operands are not plain buffer loads (emitters use the
 * generic form).  w_buf < 0 for pools. */
typedef struct {
    int x_buf, w_buf;
    Op op; /* OP_CONV2D, OP_MAXPOOL2D or OP_AVGPOOL2D */
    int64_t n, c, h, w;
    int64_t oc, oh, ow;
    int64_t kh, kw, sh, sw, ph, pw, dh, dw, groups;
    int64_t xs[4], ws[4], x_off, w_off;
} KConv;

typedef struct {
    char *name; /* a C identifier: k3_matmul_add_relu */
    KernelKind kind;
    int64_t outer;
    VEC(KInst) insts;
    VEC(KStage) stages; /* at least one; the last is the KS_MAP */
    VEC(int) nodes;     /* graph nodes computed in this kernel (fusion report) */
    KMatmul mm;         /* kind == KK_MATMUL */
    KConv conv;         /* kind == KK_CONV or KK_POOL */
    int64_t flops;      /* estimates for `bench` */
    int64_t bytes;
} Kernel;

typedef enum { KB_INPUT, KB_OUTPUT, KB_TEMP } KBufKind;

typedef struct {
    KBufKind kind;
    int index; /* KB_INPUT: parameter number; KB_OUTPUT: result number */
    KilnDType dtype;
    int64_t numel;
    int node;       /* the graph node whose value it holds */
    int64_t offset; /* KB_TEMP: byte offset in the program's arena (64-aligned) */
    const char *name;
    bool constant;  /* KB_INPUT of a constant parameter: the same data on every run */
    /* KB_TEMP holding NCHW images zero-padded for the convolution that
     * reads them (pad_conv_inputs in passes/fuse.c): planes of pad_hw[0] x
     * pad_hw[1] elements, whose producer's stores (its last stage's) write
     * the interior from row pad_hw[2], column pad_hw[3] on, and which the
     * emitter of the device that asked for it (FuseOptions.keeps_padded)
     * makes write the borders' zeros too, in every run.  All zero for any
     * other buffer. */
    int64_t pad_hw[4];
} KBuf;

typedef struct {
    Arena *arena; /* names live here */
    const char *graph_name;
    VEC(KBuf) bufs;
    VEC(Kernel) kernels;
    int64_t arena_bytes; /* size of the temporaries' arena */
    int nparams, nresults;
    /* A result may be the same buffer as another result or a parameter; then
     * the runtime copies: result_buf[i] is the buffer holding result i. */
    VEC(int) result_buf;
    /* Where code generation records a span per kernel (bench --trace; ir.h):
     * set by whoever compiles the program (runtime/exec.c); NULL: nowhere. */
    Trace *trace;
} KProgram;

/* kernel.c: construction helpers (used by the scheduler and by tests that
 * build kernels by hand) and the text form (`emit --emit=kernels`). */
KProgram *kprog_new(Arena *arena, const char *graph_name);
void kprog_destroy(KProgram *p); /* frees vectors; the arena is the caller's */
int kprog_add_buf(KProgram *p, KBufKind kind, int index, KilnDType dt, int64_t numel, int node,
                  const char *name);
Kernel *kprog_add_kernel(KProgram *p, KernelKind kind, const char *name, int64_t outer);
int kernel_add_stage(Kernel *k, KStageKind kind, int64_t extent);
int kinst(Kernel *k, KInstKind kind, KilnDType dt, int stage, int a, int b, int c);
int kinst_const(Kernel *k, KilnDType dt, int stage, double value); /* value converted to dt */
int kinst_const_scalar(Kernel *k, KilnDType dt, int stage, Scalar value);
/* A KI_CONST's value in its dtype: exact for integers (ivalue). */
Scalar kinst_scalar(const KInst *in);
/* Sets a KI_CONST's value and ivalue from v, of the instruction's dtype. */
void kinst_set_scalar(KInst *in, Scalar v);
int kinst_elem(Kernel *k, Op op, KilnDType dt, int stage, int a, int b, int c);
int kinst_load(Kernel *k, int buf, KilnDType dt, int stage, int index, int guard);
void kstage_store(Kernel *k, int stage, int buf, int index, int value);
void kstage_reduce(Kernel *k, int stage, Op reduce, int value, KilnDType value_dtype);
void kprog_print(const KProgram *p, const IRGraph *g, FILE *out);
const char *kernel_kind_name(KernelKind k);
/* Checks the program's invariants: SSA order, scopes, buffers, the last
 * stage a map, and each matmul's strided description (KMatmul). */
bool kprog_verify(const KProgram *p, char *err, size_t errlen);

/* ---- analyses every emitter shares (kernel.c), so that none of them
 * decides what belongs to the kernel IR */

/* The interval of values an index instruction may take (known == false: any
 * i64).  The scheduler may use negative offsets under a load guard
 * (padding), so ranges are signed; IDIV and IMOD truncate. */
typedef struct {
    int64_t lo, hi;
    bool known;
} KRange;
/* One range per instruction of k, in one forward sweep (free() it). */
KRange *kernel_index_ranges(const Kernel *k);
/* Index instruction i at (o, r), when it depends on nothing but o, r and
 * constants (and nothing overflows); false otherwise. */
bool kernel_eval_index(const Kernel *k, int i, int64_t o, int64_t r, int64_t *out);

/* The value a reduction starts from, in its accumulator's dtype (a Scalar:
 * .f for a float accumulator, .i for an integer one): sum 0, prod 1, max and
 * argmax -inf or INT64_MIN, min and argmin +inf or INT64_MAX. */
Scalar kstage_identity(const KStage *st);

/* Legalisation, run on every scheduled program before any emitter sees it
 * (runtime/exec.c; tests that build programs by hand call it too).  After
 * it, what the emitters would otherwise each decide is explicit in the IR:
 *   - f16/bf16 arithmetic: a KI_ELEM of a 16-bit dtype (unary or binary, not
 *     OPF_EXACT) becomes its operands cast to f32, the op in f32 and one
 *     KI_CAST back, which rounds (to nearest even); exact ops stay;
 *   - composite math stays: silu, gelu, sigmoid and rsqrt are primitives
 *     whose accurate forms are the emitters' own (tuned special functions,
 *     silu and gelu right far below zero where x / (1 + exp(-x)) gives
 *     -inf / inf = NaN, 1/sqrt without a reciprocal estimate; their ulp
 *     errors: docs/cpu-backend.md, tests/unit/test_math.c).
 * kprog_is_legal says whether a program needs it (the emitters check). */
void kprog_legalise(KProgram *p);
bool kprog_is_legal(const KProgram *p, char *err, size_t errlen);

/* kinterp.c: runs kernel `kernel` of p over its whole outer range, plainly,
 * with bufs[b] the host memory of buffer b (the `kir` device). */
void kinterp_run_kernel(const KProgram *p, int kernel, void *const *bufs);

/* The product a tiled emitter computes for kernel k: a KK_MATMUL kernel's
 * own KMatmul, or a KK_CONV kernel as an implicit GEMM per image and group
 * (batch dims [N, groups]; rows: the group's output channels; columns: the
 * output pixels oh*OW + ow; k: (c, kh, kw) of the group's input channels;
 * A = the weights, B(k, p) = the input under the window, which `conv`
 * describes (for a 1x1, stride-1, unpadded conv B is a plain strided view
 * and conv is NULL).  Either way o = (b*M + m)*N + n.  False when the
 * kernel is not a plain f32 sum of A times B loads with an extent-1
 * epilogue (the generic form then runs). */
typedef struct {
    KMatmul mm;
    const KConv *conv;
    int64_t batch_dims[2], a_batch_stride[2], b_batch_stride[2]; /* storage for mm's arrays */
} KGemm;
bool kernel_gemm(const KProgram *p, const Kernel *k, KGemm *out);

/* The zero-padded image convolution cv reads: planes of *hp rows of *wp
 * elements, the input's pixels from row ph, column pw on, as many rows and
 * columns as the window reaches at the last output pixel (or the padded
 * input's, if more).  The CPU's convolutions read in place copy their input
 * into such planes, or find it kept there (pad_conv_inputs in passes/fuse.c). */
void kconv_padded_plane(const KConv *cv, int64_t *hp, int64_t *wp);

/* Whether kernel k has the direct (per output, over the window's taps) form
 * the emitters give depthwise and small-group convolutions and pools: a
 * conv or pool with its geometry described (KConv.x_buf >= 0), an f32 sum
 * (convolutions, whose weights kernel_gemm describes; average pools) or max
 * (max pools) over the window, then an extent-1 epilogue; input f32, f16 or
 * bf16. */
bool kernel_direct(const KProgram *p, const Kernel *k);

#endif
