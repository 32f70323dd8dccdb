/* runtime.h - backends and the driver that binds inputs, compiles and runs a
 * graph.  Shared by the command line (tools/kiln.c) and the REPL. */
#ifndef KILN_RUNTIME_H
#define KILN_RUNTIME_H

#include "ir/ir.h"
#include "onnx/onnx.h"
#include "passes/pass.h"

typedef enum { PREC_F32, PREC_F16, PREC_BF16, PREC_AUTO } Precision;

typedef struct {
    int opt_level;        /* 0 or 2 */
    Precision precision;
    const char *arch;     /* CUDA: "sm_90"; NULL for the device's own */
    const char *cpu;      /* cpu device, --cpu: an LLVM CPU name; NULL or "native": the host */
    bool verbose;
    /* graph passes (passes/pass.h), applied by driver_bind */
    const char *passes;      /* --passes=a,b,c: exactly these; NULL: the -O level's */
    const char *print_after; /* --print-after=PASS|all */
    bool fast_math;          /* --fast-math */
    /* --remarks: backends that call fuse_graph set FuseOptions.remarks from it */
    bool remarks;
} CompileOptions;

/* Timing of one `bench`: per kernel and for the whole graph (medians). */
typedef struct {
    const char *name;
    double ms;
    int64_t bytes, flops;
} KernelTiming;

typedef struct {
    double run_ms; /* median of one whole run of the graph */
    int runs;
    VEC(KernelTiming) kernels;
} BenchReport;

/* A backend is a table of functions (as ggml's are).  compile() receives a
 * concrete graph and returns an executable; run() takes host inputs in the
 * params' dtypes and fills host outputs (allocated by the backend). */
typedef struct Backend {
    const char *name;
    void *(*compile)(const IRGraph *g, const CompileOptions *opt, char *err, size_t errlen);
    bool (*run)(void *exe, const KilnTensor *inputs, KilnTensor *outputs, char *err, size_t errlen);
    void (*destroy)(void *exe);
    /* Optional (NULL: the caller times whole runs): runs the graph `runs`
     * times after a warm-up and reports per-kernel medians. */
    bool (*bench)(void *exe, const KilnTensor *inputs, int runs, BenchReport *out, char *err,
                  size_t errlen);
} Backend;

extern const Backend ref_backend;
extern const Backend kir_backend;      /* codegen/kinterp.c: the fused kernels, interpreted */
extern const Backend cpu_backend;      /* runtime/cpu.c: LLVM ORC JIT */
extern const Backend cuda_backend;     /* runtime/cuda.c: NVRTC + driver API */
extern const Backend cuda_emu_backend; /* runtime/cuda_emu.c: the CUDA C on the host */

/* Whether a CUDA driver and device can be used; if not, why (for the user). */
bool cuda_available(char *why, size_t n);

/* --cpu: KILN_OK if the cpu device can generate code for CPU `name`, else
 * KILN_ERR_USAGE with the choices in err. */
KilnStatus cpu_check_name(const char *name, char *err, size_t errlen);

/* Stages of `emit` and bundles of `aot` that belong to one backend.  Each
 * takes a concrete graph and returns a KilnStatus, with a message in err. */
KilnStatus cpu_emit_llvm(const IRGraph *g, const CompileOptions *opt, FILE *out, char *err, size_t errlen);
KilnStatus cpu_aot(const IRGraph *g, const CompileOptions *opt, const char *cpu_name, const char *dir,
                   char *err, size_t errlen);
KilnStatus cuda_emit_source(const IRGraph *g, const CompileOptions *opt, FILE *out, char *err, size_t errlen);
KilnStatus cuda_emit_ptx(const IRGraph *g, const CompileOptions *opt, FILE *out, char *err, size_t errlen);
KilnStatus cuda_aot(const IRGraph *g, const CompileOptions *opt, const char *dir, char *err, size_t errlen);

/* The backend called `name`, or NULL with a reason in err (not built, no
 * device...).  The reason is meant for the user. */
const Backend *backend_find(const char *name, char *err, size_t errlen);
/* The device used when the user names none: cuda with a driver and a GPU,
 * else cpu (else ref while no other backend is built). */
const char *backend_default(void);

/* format.c */
void tensor_format(const KilnTensor *t, StrBuf *out);

/* driver.c: from a file and user inputs to a concrete graph. */
typedef struct {
    const char *name;
    KilnTensor tensor;
    const char *origin; /* "--in x=a.npy", "weights.safetensors" ... for messages */
} NamedTensor;

typedef struct {
    Arena *arena;
    Source src;
    Program prog;
    DiagList diags;
    OnnxModel *onnx; /* FILE is an ONNX model (recognised by its content), decoded */
} Compilation;

/* Reads, parses and checks a file.  Diagnostics are left in c->diags.
 * Returns KILN_OK, KILN_ERR_INPUT (diagnosed) or KILN_ERR_USAGE (no file). */
KilnStatus compilation_open(Compilation *c, const char *path, char *err, size_t errlen);
void compilation_close(Compilation *c);

/* Matches user tensors and --dim bindings to graph `entry`'s parameters,
 * fills random values (seeded) for those left unbound and builds the
 * concrete IR.  `inputs_out` gets one tensor per parameter (owned by the
 * caller: free with kiln_tensor_free).  Errors are written to err. */
typedef struct {
    NamedTensor *tensors;
    int ntensors;
    DimBinding *dims;
    int ndims;
    uint64_t seed;
    bool allow_symbolic; /* emit: leave unbound dims symbolic */
} BindRequest;

/* With `opt` non-NULL the graph then goes through the optimisation passes
 * that opt selects (passes_run: -O0 runs none, except precision when asked);
 * NULL: the graph as built. */
KilnStatus driver_bind(Compilation *c, int entry, const BindRequest *req, const CompileOptions *opt,
                       IRGraph **graph_out, KilnTensor **inputs_out, char *err, size_t errlen);

/* The optimisation passes a set of compile options selects. */
PassOptions driver_pass_options(const CompileOptions *o);

/* Reads one tensor file: a .npy file, or an ONNX TensorProto (`.pb`: by its
 * name, or by content when the file is not a .npy file). */
bool tensor_file_read(const char *path, KilnTensor *out, char *err, size_t errlen);

/* Deterministic random values: floats uniform in [-1, 1), ints in [0, 10), bools. */
void tensor_fill_random(KilnTensor *t, uint64_t seed);
/* Converts a tensor to another dtype (through double); false on out of memory. */
bool tensor_convert(const KilnTensor *src, KilnDType dt, KilnTensor *dst);

#endif
