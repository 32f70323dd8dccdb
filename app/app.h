/* app.h - the application above the runtime (app/): what the command line
 * (tools/kiln.c), the REPL (repl.c) and the public model API (api.c, the
 * kiln_model_* functions of include/kiln.h) share: reading a program of
 * either front end, binding the user's inputs to a graph (driver.c),
 * printing tensors (format.c).  Pictures and reports are in viz.h and
 * report.h.  Backends and the executor (runtime/backend.h, runtime/exec.h)
 * are below it; nothing below app/ includes these headers. */
#ifndef KILN_APP_H
#define KILN_APP_H

#include "frontend/ast.h"
#include "ir/ir.h"
#include "onnx/onnx.h"
#include "passes/pass.h"
#include "runtime/exec.h"

/* format.c */
void tensor_format(const KilnTensor *t, StrBuf *out);

/* driver.c: from a file and user inputs to a concrete graph. */

/* What a user's tensor is to the graph: decides how it is matched to the
 * parameters and whether the parameter becomes a constant. */
typedef enum {
    TENSOR_INPUT,  /* --in NAME=FILE: must name a parameter; a run's input */
    TENSOR_WEIGHT, /* from a --weights file: may name no parameter (ignored);
                      --in wins over it; the parameter is bound as a constant */
} TensorRole;

typedef struct {
    const char *name;
    KilnTensor tensor;
    TensorRole role;
    const char *path;   /* the file it is read from */
    const char *origin; /* "--in x=a.npy", "weights.safetensors" ... for messages */
    bool view;          /* tensor.data lies in a mapped file: not the tensor's to free */
} NamedTensor;

typedef struct {
    Arena *arena;
    Source src;
    Program prog;
    DiagList diags;
    OnnxModel *onnx; /* FILE is an ONNX model (recognised by its content), decoded */
    /* data that driver_bind's inputs borrow from the request's tensors
     * (map_weights): driver_inputs_free leaves it alone */
    VEC(const void *) borrowed;
} Compilation;

/* Reads, parses and checks a file.  Diagnostics are left in c->diags.
 * Returns KILN_OK, KILN_ERR_INPUT (diagnosed) or KILN_ERR_USAGE (no file). */
KilnStatus compilation_open(Compilation *c, const char *path, char *err, size_t errlen);
/* The same for program text held in memory; `name` is what diagnostics
 * call it (COMPILATION_TEXT_NAME for text that has no file). */
KilnStatus compilation_open_text(Compilation *c, const char *name, const char *text, size_t len, char *err,
                                 size_t errlen);
#define COMPILATION_TEXT_NAME "<source>"
void compilation_close(Compilation *c);
/* An ONNX model's `check`: the import, with the dimensions given (others stay
 * symbolic); diagnostics in c->diags. */
KilnStatus compilation_check_onnx(Compilation *c, const DimBinding *dims, int ndims);

/* Matches user tensors and --dim bindings to graph `entry`'s parameters,
 * fills random values (seeded) for those left unbound and builds the
 * concrete IR.  `inputs_out` gets one tensor per parameter (owned by the
 * caller: free with driver_inputs_free, or kiln_tensor_free each without
 * map_weights).  Errors are written to err. */
typedef struct {
    NamedTensor *tensors;
    int ntensors;
    DimBinding *dims;
    int ndims;
    uint64_t seed;
    bool allow_symbolic; /* emit: leave unbound dims symbolic */
    /* where to say which parameters get random values (NULL: nowhere): each
     * one when a weights file was given (it was expected there), and with
     * all_random_notes every one */
    FILE *notes;
    bool all_random_notes;
    /* a model's initializers held as they are in its file become views of
     * the mapped file, and weights-file tensors of the parameter's dtype
     * are used as they are, not copied: those at any byte offset with
     * views_unaligned (the device takes them so: backend_takes_unaligned),
     * else those aligned to their element size (the rest are copies).  Free
     * the inputs with driver_inputs_free, keep the Compilation open and the
     * request's tensors alive while they are used, and leave the files
     * untruncated meanwhile (as any mapped file) */
    bool map_weights;
    bool views_unaligned;
} BindRequest;

/* With `opt` non-NULL the graph then goes through the optimisation passes
 * that opt selects (passes_run: -O0 runs none, except precision when asked);
 * NULL: the graph as built. */
KilnStatus driver_bind(Compilation *c, int entry, const BindRequest *req, const CompileOptions *opt,
                       IRGraph **graph_out, KilnTensor **inputs_out, char *err, size_t errlen);

/* Frees driver_bind's inputs (views of c's mapped files are left alone) and
 * the array. */
void driver_inputs_free(const Compilation *c, const IRGraph *g, KilnTensor *inputs);

/* An imported model's weight as a view of its mapped file (no copy), when
 * the file holds its elements as they are in `dtype` (the parameter's) and,
 * unless `unaligned`, aligned to the element size.  The view's data is not
 * the tensor's to free (onnx_model_holds it). */
bool driver_weight_view(const OnnxWeight *w, KilnDType dtype, int rank, bool unaligned, KilnTensor *out);
/* The tensor bound to an imported model's weight (an initializer read from
 * the file, or a constant folded at import), in `dtype`: the parameter's. */
bool driver_onnx_weight(const OnnxWeight *w, KilnDType dtype, KilnTensor *out, char *err, size_t errlen);

/* The optimisation passes a set of compile options selects. */
PassOptions driver_pass_options(const CompileOptions *o);

/* Reads one tensor file: a .npy file, or an ONNX TensorProto (`.pb`: by its
 * name, or by content when the file is not a .npy file). */
bool tensor_file_read(const char *path, KilnTensor *out, char *err, size_t errlen);

/* Deterministic random values: floats uniform in [-1, 1), ints in [0, 10), bools. */
void tensor_fill_random(KilnTensor *t, uint64_t seed);
/* Its f32 values into f[0..n): by the portable loop, or (wide) by the
 * AVX-512 one where this CPU has it (tests: the two must agree). */
void tensor_fill_random_f32(float *f, int64_t n, uint64_t seed, bool wide);
/* Converts a tensor to another dtype (through double); false on out of memory. */
bool tensor_convert(const KilnTensor *src, KilnDType dt, KilnTensor *dst);

#endif
