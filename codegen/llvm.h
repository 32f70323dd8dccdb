/* llvm.h - the CPU code generator (codegen/llvm.c): a KProgram becomes one
 * LLVM module, optimised at O3 for a target CPU, then either JIT-compiled
 * (ORC LLJIT, for runtime/cpu.c and the unit tests) or written to an object
 * file (`kiln aot --target=cpu`).
 *
 * Every kernel k of the program becomes an external function
 *
 *     void NAME(int64_t o_begin, int64_t o_end, void **bufs)
 *
 * that runs the outer indices [o_begin, o_end) of the kernel (kernel.h);
 * bufs[i] points at buffer i of the program (inputs, outputs, and the
 * temporaries at arena + KBuf.offset), and bufs[nbufs] (nbufs = p->bufs.len)
 * at a 64-byte aligned scratch block of kjit_scratch() bytes, private to the
 * caller (tiled matmuls pack their operands there; kernels never allocate).
 * Any sub-range may be run, in any order and concurrently with other
 * sub-ranges of the same kernel, each with its own scratch. */
#ifndef KILN_LLVM_H
#define KILN_LLVM_H

#include "codegen/kernel.h"

#include <llvm-c/Core.h>
#include <llvm-c/TargetMachine.h>

typedef void (*KernelFn)(int64_t o_begin, int64_t o_end, void **bufs);

/* KILN_OK if LLVM knows the CPU `name` for the host's target ("native" is
 * the host); else KILN_ERR_USAGE with the choices in err. */
KilnStatus llvm_cpu_check(const char *name, char *err, size_t errlen);

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

/* A JIT-compiled program: its kernels split into up to `jobs` modules
 * compiled to object code in parallel threads (each with its own LLVM
 * context and target machine), linked into one LLJIT. */
typedef struct KilnJit KilnJit;
/* Compiles p for the host.  If ir_text is non-NULL it receives the optimised
 * IR as text (free() it).  Returns NULL with a message in err. */
KilnJit *kjit_compile(const KProgram *p, int jobs, char **ir_text, char *err, size_t errlen);
/* The same for the CPU `cpu` (NULL or "native": the host; see llvm_cpu_check). */
KilnJit *kjit_compile_for(const KProgram *p, const char *cpu, int jobs, char **ir_text, char *err,
                          size_t errlen);
KernelFn kjit_kernel(const KilnJit *j, int kernel_index);
/* For a tiled matmul kernel (kjit_scratch > 0): the same kernel over every
 * output row and the output columns [c0, c1) of the product (called as
 * fn(c0, c1, bufs)); NULL for other kernels.  Threads split a product with
 * fewer rows than columns this way, each packing only its columns of B. */
KernelFn kjit_kernel_cols(const KilnJit *j, int kernel_index);
void kjit_free(KilnJit *j);

/* The scratch bytes kernel i needs in bufs[nbufs] (0: none). */
int64_t kjit_scratch(const KilnJit *j, int kernel_index);

/* Constant operands packed once.  An operand of a tiled product whose buffer
 * is a constant parameter (KBuf.constant) is not packed by the kernel: it
 * reads bufs[llvm_prepack_slot(p, i, which)] (which 0: A, 1: B), a 64-byte
 * aligned block of kjit_prepack_bytes(j, i, which) bytes that
 * kjit_prepack(j, i, which)(bufs) fills from the operand's buffer.  The
 * caller does that once and again only when the parameter's data changes.
 * A buffer table (bufs) therefore has llvm_table_len(p) entries: the
 * program's buffers, the scratch, then two prepack slots per kernel. */
typedef void (*PrepackFn)(void **bufs);
int llvm_prepack_slot(const KProgram *p, int kernel_index, int which);
int llvm_table_len(const KProgram *p);
int64_t kjit_prepack_bytes(const KilnJit *j, int kernel_index, int which);
PrepackFn kjit_prepack(const KilnJit *j, int kernel_index, int which);

/* Runs every kernel of p in order over its whole outer range on the calling
 * thread (tests, small programs); bufs has p->bufs.len entries (the scratch
 * is added here).  False when the scratch cannot be allocated. */
bool kjit_run_serial(const KilnJit *j, const KProgram *p, void *const *bufs);

/* The row granularity a caller must respect when it splits kernel k's outer
 * range: sub-ranges should start at multiples of it for best speed (any
 * split is still correct). */
int64_t llvm_kernel_grain(const Kernel *k);

/* Where kjit_compile's time went (for -v and the docs). */
typedef struct {
    double codegen_wall_ms; /* IR + optimisation + code generation, parts in parallel */
    double codegen_cpu_ms;  /* the same, CPU time summed over the parts */
    double link_ms;         /* LLJIT creation, linking and symbol lookup */
    int parts;
} KJitTimes;
void kjit_times(const KilnJit *j, KJitTimes *out);

#endif
