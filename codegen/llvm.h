/* llvm.h - the CPU code generator (codegen/llvm.c): a KProgram becomes one
 * LLVM module, optimised for a target CPU, then compiled to an object file
 * in memory (llvm_compile_object: runtime/cpu_code.c links it into the
 * process's JIT) or on disk (`kiln aot --target=cpu`).
 *
 * Every kernel k of the program becomes an external function
 *
 *     void NAME(int64_t o_begin, int64_t o_end, void **bufs)
 *
 * that runs the outer indices [o_begin, o_end) of the kernel (kernel.h);
 * bufs[i] points at buffer i of the program (inputs, outputs, and the
 * temporaries at arena + KBuf.offset), and bufs[nbufs] (nbufs = p->bufs.len)
 * at a 64-byte aligned scratch block of the kernel's scratch bytes
 * (llvm_compile_object), private to the caller (tiled matmuls pack their
 * operands there; kernels never allocate).  Any sub-range may be run, in
 * any order and concurrently with other sub-ranges of the same kernel, each
 * with its own scratch. */
#ifndef KILN_LLVM_H
#define KILN_LLVM_H

#include "ir/kernel.h"

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

/* Out of memory inside LLVM ends kiln as its own allocation failures do
 * (codegen/llvm_oom.cpp); llvm.c calls it where it initialises LLVM. */
void llvm_install_oom_handlers(void);

typedef void (*KernelFn)(int64_t o_begin, int64_t o_end, void **bufs);

/* KILN_OK if LLVM knows the CPU `name` for the host's target ("native" is
 * the host); else KILN_ERR_USAGE with the choices in err. */
KilnStatus llvm_cpu_check(const char *name, char *err, size_t errlen);

/* Registers the host's LLVM target and sets LLVM's process options, once
 * (llvm_target_machine does it; so must whatever else needs a target, as an
 * LLJIT does to find the host's). */
void llvm_init(void);

/* A new LLVM context whose remarks and warnings are not printed (they are
 * about kiln's generated code) and whose errors end kiln with exit status 3.
 * Every context kiln compiles in comes from here. */
LLVMContextRef llvm_context_new(void);

/* A target machine for `cpu` (NULL or "native": the host CPU with its features).
 * reloc_pic: position-independent code (for objects linked into PIE
 * programs).  Returns NULL with a message in err. */
LLVMTargetMachineRef llvm_target_machine(const char *cpu, bool reloc_pic, char *err, size_t errlen);

/* Builds, verifies and optimises (O3 for tm) the module of program p in
 * ctx.  With `aot` the kernels are internal and an external
 *     int GRAPH_run(const T *in0, ..., T *out0, ...)
 * is added (one pointer per parameter, then per result) that allocates the
 * arena, runs every kernel over its whole outer range on the calling thread
 * and frees it; it returns 0, or 1 when malloc fails.  scratch (NULL or one
 * entry per kernel) receives each kernel's scratch bytes.  Returns NULL with
 * a message in err (the module is disposed of). */
LLVMModuleRef llvm_build_program(LLVMContextRef ctx, const KProgram *p, LLVMTargetMachineRef tm, bool aot,
                                 int64_t *scratch, char *err, size_t errlen);

/* Compiles every kernel of p into one relocatable object file in memory for
 * target machine tm, in context ctx (the caller's: one thread at a time
 * uses them; runtime/cpu_code.c compiles one distinct kernel per object and
 * links the objects into the process's JIT).  scratch[i] and
 * prepack[2 * i + which] (each NULL or one entry per kernel) receive kernel
 * i's scratch bytes and prepacked operand bytes (below), gather[3 * i ..
 * 3 * i + 2] (NULL or) the bytes, tasks and operand of what it gathers once
 * (below); times (NULL or)
 * adds where this thread's time went; ir_text (NULL or)
 * the optimised IR as text (free() it).  Returns the object
 * (LLVMDisposeMemoryBuffer it) or NULL with a message in err.
 *
 * helpers: NULL, or a suffix naming the helpers that depend only on the
 * target (the micro-kernel and packing routines of tiled products) for
 * objects linked together: the object then calls them as external
 * functions NAME + helpers, which the object of llvm_compile_helpers (same
 * target, same suffix) defines once for all, instead of holding copies;
 * *uses_helpers (may be NULL) says whether it calls any.  A suffix that
 * starts with ".p" names the helpers compiled at build time
 * (tools/gen_helpers.c), which also hold the shared im2col forms
 * (codegen/llvm.c, IM2COL_SHARED); helpers compiled at run time leave them
 * out (they would cost every cold process without a cache, convolutions or
 * not, about 70 ms), and kernels then keep their own. */
typedef struct {
    double ir_ms, opt_ms, emit_ms; /* thread CPU time: building the IR, the pass pipeline, code generation */
} LlvmTimes;
LLVMMemoryBufferRef llvm_compile_object(LLVMContextRef ctx, LLVMTargetMachineRef tm, const KProgram *p,
                                        const char *helpers, bool *uses_helpers, int64_t *scratch,
                                        int64_t *prepack, int64_t *gather, LlvmTimes *times, char **ir_text,
                                        char *err, size_t errlen);
LLVMMemoryBufferRef llvm_compile_helpers(LLVMContextRef ctx, LLVMTargetMachineRef tm, const char *helpers,
                                         LlvmTimes *times, char **ir_text, char *err, size_t errlen);
/* What tm makes code for, as one line (heap): triple, CPU and its feature
 * string.  Code for one identity runs on any CPU with that identity. */
char *llvm_target_identity(LLVMTargetMachineRef tm);
/* The identity of the host's target machine (llvm_target_machine(NULL,
 * ...)) without making one, or setting up LLVM's targets: the same text. */
char *llvm_host_identity(void);
/* The LLVM kiln runs with, "major.minor.patch", into buf. */
void llvm_version(char *buf, size_t len);

/* Constant operands packed once.  An operand of a tiled product whose buffer
 * is a constant parameter (KBuf.constant) is not packed by the kernel: it
 * reads bufs[llvm_prepack_slot(p, i, which)] (which 0: A, 1: B), a 64-byte
 * aligned block of prepack[2 * i + which] bytes that the function
 * NAME.prepack_a / NAME.prepack_b (a PrepackFn, called with the same table)
 * fills from the operand's buffer.  The caller does that once and again only
 * when the parameter's data changes.  A buffer table (bufs) therefore has
 * llvm_table_len(p) entries: the program's buffers, the scratch, then two
 * prepack slots per kernel. */
typedef void (*PrepackFn)(void **bufs);
int llvm_prepack_slot(const KProgram *p, int kernel_index, int which);
int llvm_table_len(const KProgram *p);
/* Size-generic units.  In an object of llvm_compile_object, a tiled
 * product of at most two batch dims that is neither a convolution read
 * through its taps nor the next-B-block prefetching form is SIZED (K >= 128:
 * the shared loop nest; shorter: the unit's own nest): its code
 * reads every size (M, N, K, strides, the window, the epilogue's index
 * constants...) from bufs[llvm_values_slot(p)], an int64_t array, its
 * VALUES, that the caller fills per kernel; so two kernels that differ
 * only in their sizes can share the same code.  So is a kernel of the
 * direct form (depthwise and grouped convolutions, pools), whose values are
 * its channels, batch strides, weights' strides and offsets, its plane's
 * geometry being part of its form (the unrolled code depends on it), and a
 * thin product (GEMV) of no batch dims.  llvm_kernel_sizes gives,
 * for kernel `kernel` of p on the target of that identity (a target's
 * "triple cpu features", llvm_target_identity): the bytes the caller
 * allocates (scratch, prepack[which], gather[3]: as llvm_compile_object
 * reports them) and, when it is sized (returns true), its values and its
 * FORM, words that say everything its code depends on (what a code cache
 * must key it by, with the buffers' dtypes and constancy, the target and
 * the helpers; only with `form`: a caller with the key already, a warm
 * start's program entry, needs the values only).  Free with
 * llvm_kernel_sizes_free. */
typedef struct {
    bool sized;
    bool product; /* a sized product: its unit also has NAME.cols, .gather, .prepack_a/_b (else the entry
                     only) */
    int64_t scratch, prepack[2], gather[3];
    int64_t *values;
    int nvalues;
    int64_t *form;
    int nform;
} LlvmKernelSizes;
int llvm_values_slot(const KProgram *p);
/* The magic number c = ceil(2^64 / d) of a sized unit's division by d
 * (2 <= d <= 2^32): n / d == (c * n) >> 64 (a 128-bit product) for every
 * n in [0, 2^32). */
uint64_t llvm_div_magic(uint64_t d);
bool llvm_kernel_sizes(const KProgram *p, int kernel, const char *identity, bool form, LlvmKernelSizes *out);
/* The grain of product g's split on the target `identity` (a target
 * identity, as above), by columns or by rows: `grain` (llvm_column_grain's or
 * llvm_kernel_grain's), or another where the target's code for it is a form
 * of its own (a Winograd convolution on AMD Zen 5: whole pairs of output
 * rows). */
int64_t llvm_target_grain(const KProgram *p, const KGemm *g, const char *identity, bool by_columns,
                          int64_t grain);
/* Where the threads (2) split tiled product g on the target `identity` by
 * columns and its last column chunk is ragged, the rows at which that
 * chunk is run in two parts, one per thread (AMD Zen 5: one image of a
 * 1x1 product, unswapped, under 256 columns, an even number of whole
 * chunks): NAME.cols(c0, c1 | split * N << 32 | half << 62, table) runs
 * columns [c0, c1) of rows [0, split) (half 1) or [split, M) (half 2).  0:
 * none (the call is as always). */
int64_t llvm_ragged_split_rows(const KProgram *p, const KGemm *g, const char *identity);
void llvm_kernel_sizes_free(LlvmKernelSizes *s);
/* Whether kernel k of p runs the Winograd F(2x2,3x3) form (a 3x3 stride-1
 * convolution read in place: conv_wino, AMD Zen 5 only) on the target of
 * that identity ("triple cpu features"; the cpu name alone will do). */
bool llvm_conv_wino(const KProgram *p, const Kernel *k, const char *identity);

/* A tiled product would pack its operand that is not a constant (a
 * convolution's input under the window, an activation) again in every
 * chunk: B in every row chunk when threads split it by rows, A in every
 * column chunk when they split it by columns.  When that operand is one
 * matrix, small enough once packed, it is gathered once per thread instead:
 * the kernel reads bufs[llvm_prepack_slot(p, i, gather[3 * i + 2])], a
 * 64-byte aligned block of gather[3 * i] bytes (llvm_compile_object; 0: not
 * such a kernel) that must hold this launch's gathered operand: the caller
 * fills it, before running any part of the kernel with that table, by
 * running the tasks [0, gather[3 * i + 1]) of NAME.gather (a KernelFn called
 * as fn(t0, t1, bufs); any split, in any order, with the same block in the
 * slot). */

/* Whether threads split tiled product g of program p by output columns
 * (more columns than rows, unless B is a prepacked constant and A an
 * activation; or a convolution's gathered input with >= 128 pixels; or a
 * swapped product of one image with few row panels) rather than by rows. */
bool llvm_split_by_columns(const KProgram *p, const KGemm *g);

/* The column granularity of such a split of product g: 32, a multiple of
 * every register tile's NR (a prepacked B's panels start there; 16-column
 * chunks of a gathered B were measured 1.3x slower than 32: narrow tiles, a
 * gathering per chunk); 12, a multiple of every swapped tile's NR, for a
 * swapped product (its tiles' columns are the broadcast pixels: a 14x14
 * image's 196 pixels, or MobileNetV2's 49 at 7x7 with too few row panels
 * to share); a convolution read in place (llvm_conv_taps), whole output
 * rows, at least 32 pixels. */
int64_t llvm_column_grain(const KProgram *p, const KGemm *g);

/* Whether kernel k of program p is a convolution the CPU reads in place
 * through its taps (a zero-padded copy of each image's input read by the
 * tap micro-kernels) instead of gathering it under the window (im2col). */
bool llvm_conv_taps(const KProgram *p, const Kernel *k);
/* Whether convolution `consumer` reads its input from an image that its
 * writer `producer` keeps zero-padded (runtime/backend.h keeps_padded). */
bool llvm_conv_keeps_padded(const KProgram *p, const Kernel *producer, const Kernel *consumer);

/* The row granularity a caller must respect when it splits kernel k's outer
 * range: sub-ranges should start at multiples of it for best speed (any
 * split is still correct). */
int64_t llvm_kernel_grain(const KProgram *p, const Kernel *k);

#endif
