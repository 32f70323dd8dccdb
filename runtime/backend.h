/* backend.h - what a device is to kiln: a table of functions (as ggml's
 * backends are), and the one array of them (runtime/backends.c).
 *
 * A backend only does what differs between devices: it compiles a kernel
 * program (prepare), moves bytes (alloc, copy_in, copy_out) and launches one
 * kernel at a time (launch).  Everything else is the executor's
 * (runtime/exec.c) and the same for every device: scheduling with the same
 * fusion options, verifying the kernel program, checking inputs, allocating
 * outputs, laying out and binding buffers, copying results, timing `bench`.
 *
 * Adding a device is one file that defines a `const Backend` and one row in
 * KILN_BACKENDS (runtime/backends.c); cuda_emu.c is the example.  Its emit
 * stages (`--emit=NAME`) and its `aot` writer come with the row: the command
 * line and the REPL find them through the table, never by name.
 *
 * Threads: prepare() and release() run once per executable; every other hook
 * may be called from several threads at once on one prepared program, each
 * thread with its own call state (call_begin), so a backend keeps whatever a
 * run writes (scratch, events, launch arguments) in the call state. */
#ifndef KILN_BACKEND_H
#define KILN_BACKEND_H

#include "ir/kernel.h"

#include <stdio.h>

typedef enum { PREC_F32, PREC_F16, PREC_BF16, PREC_AUTO } Precision;

/* What compiling a program cost: prepare() adds to it (bench --json), and
 * so does binding its constants later (the cpu's packed weights: the
 * struct must outlive those binds).
 * "Units" are what a backend compiles as one piece: a distinct kernel on
 * the cpu (runtime/cpu_code.h), the whole program on cuda and cuda-emu. */
typedef struct {
    int kernels;    /* of the program */
    int distinct;   /* distinct units among them */
    int compiled;   /* units compiled in this prepare */
    int cache_hits; /* units loaded from the on-disk cache (runtime/kcache.h) */
    int programs_cached; /* programs whose every unit came from the program's one entry (the cpu) */
    int reused;     /* units already compiled in this process */
    int loaded;     /* units built here whose object kiln's own loader loaded (the cpu; runtime/objload.h) */
    int prebuilt;   /* units that are prebuilt forms, compiled at build time (the cpu; runtime/cpu_code.h) */
    int packed;     /* constant operands packed when bound (the cpu) */
    int packed_cached; /* of those, read from the on-disk cache instead */
    int packed_by_place; /* of the large ones, keyed by where their bytes lie in a settled mapped file
                            (base.h mapped_file_place), not by hashing them */
} CompileStats;

typedef struct {
    int opt_level; /* 0 or 2 */
    Precision precision;
    const char *arch; /* CUDA: "sm_90"; NULL for the device's own */
    const char *cpu;  /* CPU: the target of aot --target=cpu (--cpu); NULL for the host */
    bool verbose;
    /* graph passes (passes/pass.h), applied by driver_bind */
    const char *passes;      /* --passes=a,b,c: exactly these; NULL: the -O level's */
    const char *print_after; /* --print-after=PASS|all */
    bool fast_math;          /* --fast-math */
    bool remarks;            /* --remarks: the passes' and the fusion scheduler's, on every device */
    Trace *trace;            /* bench --trace: the passes, fusion, code generation and every run
                                of the executable record their spans here; NULL: nothing */
    CompileStats *stats;     /* NULL, or where prepare() reports its work */
} CompileOptions;

/* What a backend can do; the executor and the front ends read these rather
 * than backend names. */
typedef enum {
    /* Runs fused kernel programs (prepare + launch).  Without it the backend
     * runs the graph itself (run_graph): the reference interpreter. */
    BK_KERNELS = 1 << 0,
    /* Buffers are host memory: the kernels read the caller's inputs and write
     * the outputs in place, temporaries live in a host arena, and alloc /
     * copy_in / copy_out are not used.  Without it every buffer is device
     * memory reached through those three hooks. */
    BK_HOST_MEMORY = 1 << 1,
    /* An accelerator behind a driver: preferred as the default device where
     * available() says it can be used. */
    BK_ACCELERATOR = 1 << 2,
    /* The kernels read their inputs at any byte offset (element loads claim
     * byte alignment: codegen/llvm.c ELEM_ALIGN), so weights are used in place
     * wherever they lie in a mapped file; without it (and with host memory)
     * only weights aligned to their element size are (BindRequest). */
    BK_UNALIGNED_INPUTS = 1 << 3,
} BackendCaps;

/* One stage of `kiln emit --emit=NAME` (and the REPL's :emit) that belongs
 * to a backend: it prints the kernel program as this backend compiles it. */
typedef struct {
    const char *name; /* "llvm", "cuda", "ptx"; NULL ends a backend's list */
    const char *what; /* for help texts: "LLVM IR of the kernels" */
    KilnStatus (*emit)(const KProgram *kp, const CompileOptions *opt, FILE *out, char *err, size_t errlen);
} EmitStage;

/* How a backend runs kernel programs (BK_KERNELS). */
typedef struct {
    /* Compiles a verified kernel program; the result is the backend's (NULL
     * with a message).  kp outlives it. */
    void *(*prepare)(const KProgram *kp, const CompileOptions *opt, char *err, size_t errlen);
    void (*release)(void *prog);
    /* Per-call state (NULL hooks: none).  call_begin also makes the device
     * current for the calling thread; every other hook of a run (launch,
     * sync, buffers, clock) runs between the two. */
    bool (*call_begin)(void *prog, void **call, char *err, size_t errlen);
    void (*call_end)(void *prog, void *call);
    /* Runs kernel `kernel` of the program with bufs[b] the memory of buffer b
     * (kernel.h); may return before it finishes when sync is not NULL. */
    bool (*launch)(void *prog, void *call, int kernel, void *const *bufs, char *err, size_t errlen);
    /* Waits for every launch of the call (NULL: launches are synchronous). */
    bool (*sync)(void *prog, void *call, char *err, size_t errlen);
    /* Parameter `param` is bound for good (exec_bind) to the host data
     * `data`, which stays unchanged until it is bound again or the program
     * is released: the backend may derive from it once what every run would
     * otherwise redo (the CPU packs constant matmul and conv operands).
     * NULL: nothing to do.  Runs outside any call, never beside another
     * hook on the same program. */
    bool (*bind)(void *prog, int param, const void *data, char *err, size_t errlen);
    /* Whether the backend's convolution `consumer` reads its input from an
     * image kept zero-padded by `producer`, its only writer, rather than
     * copying it padded itself (passes/fuse.h FuseOptions.keeps_padded;
     * the producer's code then writes the image's borders too, KBuf.pad_hw).
     * NULL: never. */
    bool (*keeps_padded)(const KProgram *p, const Kernel *producer, const Kernel *consumer);
    /* Brackets the binds of a program's constants (exec_bind_constants):
     * begin true before the first, false after the last.  Between the two
     * the backend may leave a bind's work unfinished, and finishes all of it
     * at the end (the CPU packs the operands on its pool's threads).  NULL:
     * each bind finishes its own work. */
    bool (*bind_batch)(void *prog, bool begin, char *err, size_t errlen);
} BackendKernels;

/* Device memory (BK_KERNELS without BK_HOST_MEMORY): every buffer at a
 * multiple of `align` bytes in memory that only these hooks reach. */
typedef struct {
    int align;
    bool (*alloc)(void *prog, size_t bytes, void **ptr, char *err, size_t errlen);
    void (*free)(void *prog, void *ptr);
    bool (*copy_in)(void *prog, void *dst, const void *src, size_t bytes, char *err, size_t errlen);
    bool (*copy_out)(void *prog, void *dst, const void *src, size_t bytes, char *err, size_t errlen);
} BackendBuffers;

/* `bench` on the device's own clock: mark(slot) records a time stamp after
 * the work launched so far; after sync, elapsed(from, to) is the time
 * between two marks.  NULL: the executor reads the host clock around
 * synchronous launches. */
typedef struct {
    bool (*mark)(void *prog, void *call, int slot, char *err, size_t errlen);
    bool (*elapsed)(void *prog, void *call, int from, int to, double *ms, char *err, size_t errlen);
} BackendClock;

/* `kiln aot --target=NAME[:VARIANT] -o DIR`: write() puts a bundle of the
 * kernel program into DIR (which exists); variant is the text after ':' or
 * NULL.  `variant` names what VARIANT is, for messages ("sm_XX"). */
typedef struct {
    KilnStatus (*write)(const KProgram *kp, const IRGraph *g, const CompileOptions *opt, const char *variant,
                        const char *dir, char *err, size_t errlen);
    const char *variant;
} BackendAot;

typedef struct Backend {
    const char *name;    /* --device=NAME, --target=NAME[:VARIANT] */
    const char *summary; /* one line for help texts */
    unsigned caps;       /* BackendCaps */
    /* Whether the device can be used here; if not, why (for the user).
     * NULL: always. */
    bool (*available)(char *why, size_t n);
    BackendKernels kernels;
    BackendBuffers buffers;
    BackendClock clock;
    /* Without BK_KERNELS: runs the graph as a whole; allocates outputs. */
    bool (*run_graph)(const IRGraph *g, const KilnTensor *inputs, KilnTensor *outputs, char *err,
                      size_t errlen);
    /* What the backend adds to `emit` (NULL or ended by a {NULL} row) and
     * `aot` (write NULL: none). */
    const EmitStage *stages;
    BackendAot aot;
} Backend;

/* ---- runtime/backends.c: the table */

/* Every backend of this build, in the order the help texts list them. */
int backend_count(void);
const Backend *backend_at(int i);
/* The backend called `name`, usable or not; NULL if there is none. */
const Backend *backend_lookup(const char *name);
/* Whether the backend can take weights at any byte offset as they are:
 * its kernels read them so (BK_UNALIGNED_INPUTS), or it copies them into
 * device memory. */
bool backend_takes_unaligned(const Backend *be);
/* The backend called `name`, ready to run: KILN_OK, KILN_ERR_USAGE (no such
 * device: err lists the devices) or KILN_ERR_DEVICE (not usable here: err
 * says why). */
KilnStatus backend_open(const char *name, const Backend **out, char *err, size_t errlen);
/* The device used when the user names none: the first available
 * accelerator, else cpu, else ref. */
const char *backend_default(void);
/* The backend that writes `aot --target=TARGET` (TARGET is NAME or
 * NAME:VARIANT; *variant gets the part after ':' or NULL); NULL with a
 * message listing the targets if none does. */
const Backend *backend_aot_target(const char *target, const char **variant, char *err, size_t errlen);
/* The backend that owns emit stage `name` and the stage; NULL if none does. */
const EmitStage *backend_stage(const char *name, const Backend **owner);
/* The C type of a dtype's elements in the headers aot bundles declare
 * (f16 and bf16 are their 16-bit patterns, bool one byte). */
const char *aot_c_type(KilnDType dt);
/* NAME.go, the Go wrapper of an AOT bundle (runtime/aot_go.c): package
 * `cname` calling `int cname_run(...)` of NAME.h, written into dir. */
typedef struct {
    const char *target; /* "cpu", "cuda:sm_90": for the header line */
    const char *what;   /* "the CPU (x86-64-v3)": for the package comment */
    const char *needs;  /* "libc and libm": what a program using it links */
    const char *cgo;    /* the #cgo lines of the preamble, each ending in '\n' */
    bool cuda;          /* cname_run returns a CUresult */
} AotGoTarget;
KilnStatus aot_go_write(const IRGraph *g, const char *cname, const AotGoTarget *t, const char *dir, char *err,
                        size_t errlen);
/* "ref, kir, cpu, ..." (sep between names) and the backends' emit stages. */
void backend_names(StrBuf *out, const char *sep);
void backend_stage_names(StrBuf *out, const char *sep);
/* --cpu: KILN_OK if the cpu device can generate code for CPU `name`, else
 * KILN_ERR_USAGE with the choices in err (runtime/cpu.c; without LLVM,
 * runtime/nollvm/cpu_absent.c). */
KilnStatus cpu_check_name(const char *name, char *err, size_t errlen);

#endif
