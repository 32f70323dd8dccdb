/* cpu_code.h - the machine code of a kernel program for the CPU, compiled
 * once per distinct kernel (runtime/cpu_code.c).
 *
 * A kernel's code depends on nothing but the kernel: its kernel IR with its
 * buffers numbered in the order the kernel first uses them (their dtypes,
 * sizes and whether they are constant), the target CPU, and the compilers
 * (kiln's build, LLVM's version).  So each kernel is compiled on its own, to
 * one object file, under a key hashing all of that, and
 *   - identical kernels (an encoder's six layers, the q/k/v projections) get
 *     one compiled copy per process: a unit, linked into the process's one
 *     LLJIT and shared, counted, by every CpuCode that uses it (it goes
 *     when the last of them does);
 *   - the object files live in the on-disk cache (runtime/kcache.h: checked
 *     on load, written atomically, shared with the CUDA path), so a second
 *     process links them instead of compiling; a damaged entry is rebuilt;
 *   - the kernels left to compile are spread over `jobs` threads, the
 *     costliest first; a unit another process is compiling at the same time
 *     (its kcache lock) is waited for, not compiled twice.
 *
 * The compiled kernel i of a program is called as
 *     fn(o_begin, o_end, table)   (llvm.h: any sub-range, concurrently)
 * with the kernel's own table (cpu_code_table): table[j] = the memory of
 * program buffer bufs[j] for j < nbufs, table[nbufs] = a 64-byte aligned
 * scratch block of `scratch` bytes, table[nbufs + 1 + w] = the packed
 * constant operand w (0: A, 1: B) when prepack_bytes[w] > 0, which
 * prepack[w](table) fills from the operand's buffer (llvm.h).
 *
 * Thread-safe: several threads may compile (and free) at once; a unit being
 * compiled by one is waited for by the others. */
#ifndef KILN_CPU_CODE_H
#define KILN_CPU_CODE_H

#include "codegen/llvm.h"
#include "runtime/kcache.h"

typedef struct {
    KernelFn fn;
    KernelFn cols; /* tiled products (scratch > 0): by output columns, llvm.h */
    PrepackFn prepack[2];
    int64_t prepack_bytes[2];
    /* an operand gathered once (llvm.h): gather(t0, t1, table) over the
     * tasks [0, gather_tasks) fills table[nbufs + 1 + gather_operand], a
     * block of gather_bytes, before the kernel reads it (the caller's block:
     * one per thread) */
    KernelFn gather;
    int64_t gather_bytes, gather_tasks;
    int gather_operand;
    int64_t scratch;
    int nbufs;
    const int *bufs; /* the program buffer in each table slot */
    /* a sized kernel's values (llvm_kernel_sizes: its unit may serve
     * kernels of other sizes), at table[nbufs + 3]; else NULL */
    const int64_t *values;
} CpuKernelCode;

/* A kernel's table: its nbufs buffers, then the scratch, the two packed
 * operands and the values (llvm.h's unit layout). */
enum { CPU_TABLE_EXTRA = 4 };

/* What one compile did (for -v, bench --json and the tests). */
typedef struct {
    int kernels;         /* of the program */
    int distinct;        /* distinct kernels (keys) among them */
    int reused;          /* distinct kernels already in this process */
    int cache_hits;      /* distinct kernels loaded from the disk cache */
    int compiled;        /* distinct kernels compiled by LLVM */
    int waited;          /* of those loaded: compiled meanwhile by another process */
    int cache_bad;       /* damaged or unusable cache entries, rebuilt */
    bool program_cached; /* every unit came from the program's own entry (one file) */
    int jobs;            /* threads that compiled */
    bool helpers_prebuilt; /* the shared helpers are the ones compiled at build time (tools/gen_helpers.c) */
    int prebuilt; /* distinct kernels whose unit is a prebuilt form (tools/gen_forms.c): not compiled */
    double wall_ms;      /* the whole cpu_code_compile */
    double llvm_cpu_ms;  /* CPU time in LLVM (IR, optimisation, code generation), all threads */
    LlvmTimes llvm;      /* the same by phase */
    double link_cpu_ms;  /* CPU time loading or linking the objects and finding their functions */
    int loaded;          /* units built here whose object kiln's loader loaded (the rest: ORC) */
    char cache_dir[200]; /* "" when the cache is off */
    char cache_off[160]; /* why, when off */
} CpuCodeStats;

typedef struct {
    const char *cpu; /* --cpu (llvm_cpu_check); NULL or "native": the host */
    int jobs;        /* compile threads (< 1: one) */
    /* Compile every kernel anew, apart from both caches, and return the
     * optimised IR of all of them (tests of the code generator). */
    char **ir_text;
} CpuCodeOptions;

typedef struct CpuCode CpuCode;

/* The code of every kernel of kp (verified; kp outlives the result).  NULL
 * with a message in err.  stats may be NULL. */
CpuCode *cpu_code_compile(const KProgram *kp, const CpuCodeOptions *opt, CpuCodeStats *stats, char *err,
                          size_t errlen);
void cpu_code_free(CpuCode *c);

const CpuKernelCode *cpu_code_kernel(const CpuCode *c, int kernel);
/* The identity of the target c's code is for (llvm.h's target identity). */
const char *cpu_code_target(const CpuCode *c);
/* The longest kernel table of the program (nbufs + CPU_TABLE_EXTRA). */
int cpu_code_table_len(const CpuCode *c);
/* Fills kernel i's table from bufs (the memory of every program buffer),
 * the scratch block and the packed operands (NULL where none). */
void cpu_code_table(const CpuCode *c, int kernel, void *const *bufs, void *scratch, void *const packed[2],
                    void **table);
/* Runs every kernel in order over its whole outer range on the calling
 * thread (tests); bufs has one entry per program buffer; constant operands
 * are packed for this call.  False when memory runs out. */
bool cpu_code_run_serial(const CpuCode *c, void *const *bufs);

/* The identity of the compilers this process runs (kiln's version and
 * build, LLVM's version and build): what a key made outside every unit's
 * (packed operands, cpu.c) hashes so that another build never shares it. */
const char *cpu_code_compilers(void);
/* The key of the unit that runs kernel i of c (as cpu_code_key). */
KCacheKey cpu_code_unit_key(const CpuCode *c, int kernel);
/* Kernel i's key (its code's identity, as above) for the CPU `cpu`. */
KCacheKey cpu_code_key(const KProgram *kp, int kernel, const char *cpu, char *err, size_t errlen);
/* The key of kp's program entry for the CPU `cpu`: one cache entry holding
 * every unit of the program and each kernel's table (a warm start reads it
 * instead of one entry per unit; the units' own entries stay). */
KCacheKey cpu_code_program_key(const KProgram *kp, const char *cpu, char *err, size_t errlen);

/* ------------------------------------------------------- prebuilt forms
 *
 * The units of common sized kernel FORMS (llvm_kernel_sizes: code that reads
 * its sizes from the values, so one unit serves every kernel of that form),
 * compiled at build time for the build host by tools/gen_forms.c from a
 * corpus of generic layers (tools/forms.kiln), as the shared helpers are
 * (tools/gen_helpers.c).  A process whose helpers are the prebuilt ones
 * (the build host's target identity, the same LLVM) looks every sized
 * kernel up by its form key (the form words, the buffers' dtypes and
 * constancy, the helpers' suffix: no name, no build ID, since the table is
 * made again whenever the code generator changes) and links a prebuilt
 * form's object instead of compiling it; any other process (another CPU,
 * --cpu, a compile that asks for the IR) compiles as before. */
typedef struct {
    uint64_t key[2];            /* the form key */
    const char *sym;            /* the unit's symbol */
    const unsigned char *entry; /* its unit entry (a cache entry's payload) */
    size_t len;
} CpuPrebuiltForm;

typedef struct {
    const char *helpers_suffix; /* the helpers its objects call */
    int n;
    const CpuPrebuiltForm *forms; /* sorted by key */
} CpuPrebuiltForms;

/* The forms linked into this program (runtime/prebuilt_forms.c, from
 * BUILD/gen/prebuilt_forms.h; tools/gen_forms.c itself has none). */
const CpuPrebuiltForms *cpu_prebuilt_forms(void);

/* For tools/gen_forms.c: kernel `kernel` of kp compiled as a prebuilt form
 * for the build host, when it is sized (else false with err empty): its
 * form key, symbol and unit entry (heap: free sym and entry).  False with
 * a message when it cannot be (the helpers are not the prebuilt ones, LLVM
 * fails).  `known` (may be NULL) says a key is already had: then nothing is
 * compiled (true, *entry NULL). */
/* The suffix of the prebuilt helpers' symbols into buf when this host's
 * helpers are the prebuilt ones (the forms' objects call them); else false. */
bool cpu_code_prebuilt_helpers_suffix(char *buf, size_t len);
bool cpu_code_prebuild_form(const KProgram *kp, int kernel, bool (*known)(KCacheKey, void *), void *ctx,
                            KCacheKey *key, char **sym, char **entry, size_t *len, char *err, size_t errlen);

#endif
