/* kiln.h - the public interface of libkiln, for programs that embed kiln.
 *
 * A host tensor (KilnTensor) is the unit that crosses the API: dense, C order,
 * little-endian.  Tensor files (npy, safetensors, ONNX .pb) are read and
 * written by the functions below, which leave a message in an error buffer.
 * Compiling and running go through a KilnModel (kiln_model_*, at the end): a
 * graph compiled once for a device, its weights bound once, run from as many
 * threads as the caller likes; its errors come back in a KilnError.
 */
#ifndef KILN_H
#define KILN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KILN_VERSION "0.1.0"

/* What libkiln exports.  Everything else in the library is compiled hidden
 * and made local in libkiln.a (see the Makefile), so an embedding program's
 * own names (xmalloc, read_file, ...) never clash with kiln's: only the
 * names declared KILN_API below, all prefixed kiln_, are visible. */
#if defined(__GNUC__) || defined(__clang__)
#define KILN_API __attribute__((visibility("default")))
#else
#define KILN_API
#endif

/* Element types of the language.  The order is part of the ABI of libkiln. */
typedef enum {
    KILN_F32,
    KILN_F16,
    KILN_BF16,
    KILN_F64,
    KILN_I32,
    KILN_I64,
    KILN_BOOL,
    KILN_NUM_DTYPES
} KilnDType;

/* Exit statuses of the command line, also used as API status codes. */
typedef enum {
    KILN_OK = 0,
    KILN_ERR_INPUT = 1,  /* a diagnosed error in the user's program or files */
    KILN_ERR_USAGE = 2,  /* a bad command line or API misuse */
    KILN_ERR_DEVICE = 3, /* no driver, out of device memory, NVRTC refused... */
} KilnStatus;

/* A dense host tensor.  shape has `rank` entries; data holds
 * product(shape) elements of `dtype` (bool is one byte, f16/bf16 two bytes). */
typedef struct {
    KilnDType dtype;
    int rank;
    int64_t *shape;
    void *data;
} KilnTensor;

KILN_API const char *kiln_dtype_name(KilnDType dt); /* "f32", "bf16", ... */
KILN_API size_t kiln_dtype_size(KilnDType dt);      /* bytes per element */
KILN_API bool kiln_dtype_from_name(const char *name, KilnDType *out);

KILN_API int64_t kiln_tensor_numel(const KilnTensor *t);
/* Element i (flat, C order) as a double, and stored from a double: floats
 * round to the dtype (nearest even), ints truncate toward zero and
 * saturate (NaN -> 0), bool is != 0. */
KILN_API double kiln_tensor_get(const KilnTensor *t, int64_t i);
KILN_API void kiln_tensor_set(KilnTensor *t, int64_t i, double v);
/* The same with an exact int64: reading an integer or bool element is exact
 * (a float truncates and saturates, NaN -> 0); storing into an integer
 * dtype wraps to its width (NumPy's astype), into f32 or f64 rounds once to
 * nearest even (f16 and bf16 through f32). */
KILN_API int64_t kiln_tensor_get_i64(const KilnTensor *t, int64_t i);
KILN_API void kiln_tensor_set_i64(KilnTensor *t, int64_t i, int64_t v);
/* Allocates shape and zeroed data (aligned to 64 bytes, a cache line);
 * returns false on out-of-memory. */
KILN_API bool kiln_tensor_init(KilnTensor *t, KilnDType dt, int rank, const int64_t *shape);
KILN_API void kiln_tensor_free(KilnTensor *t);

/* Tensor files.  Readers treat the file as untrusted: a truncated, oversized
 * or self-contradictory file is refused, and `err` (errlen bytes) says why.
 * Return true on success. */
KILN_API bool kiln_npy_read(const char *path, KilnTensor *out, char *err, size_t errlen);
KILN_API bool kiln_npy_read_mem(const uint8_t *buf, size_t len, KilnTensor *out, char *err, size_t errlen);
KILN_API bool kiln_npy_write(const char *path, const KilnTensor *t, char *err, size_t errlen);

/* ONNX TensorProto files (`.pb`, as the ONNX test suites store inputs and
 * outputs): the tensor in its own dtype; dtypes kiln lacks are refused. */
KILN_API bool kiln_onnx_tensor_read_file(const char *path, KilnTensor *out, char *err, size_t errlen);
KILN_API bool kiln_onnx_tensor_read_mem(const uint8_t *buf, size_t len, KilnTensor *out, char *err,
                                        size_t errlen);

/* safetensors: a named list of tensors. */
typedef struct {
    int count;
    char **names;
    KilnTensor *tensors;
} KilnTensorList;

KILN_API bool kiln_safetensors_read(const char *path, KilnTensorList *out, char *err, size_t errlen);
KILN_API bool kiln_safetensors_read_mem(const uint8_t *buf, size_t len, KilnTensorList *out, char *err,
                                        size_t errlen);
KILN_API bool kiln_safetensors_write(const char *path, const KilnTensorList *list, char *err, size_t errlen);
KILN_API void kiln_tensor_list_free(KilnTensorList *list);

/* Half-precision conversions (round to nearest even). */
KILN_API uint16_t kiln_f32_to_f16(float f);
KILN_API float kiln_f16_to_f32(uint16_t h);
KILN_API uint16_t kiln_f32_to_bf16(float f);
KILN_API float kiln_bf16_to_f32(uint16_t h);

/* ------------------------------------------------------------------ models
 *
 * A KilnModel is one graph of a .kiln or .onnx file (or of program text)
 * compiled for one device, with its weights bound once:
 *
 *     KilnError err = {0};
 *     KilnModelOptions opt = {.device = "cpu"};
 *     KilnModel *m = kiln_model_load("examples/lenet.kiln", &opt, &err);
 *     if (!m) { fprintf(stderr, "%s\n", err.message); kiln_error_clear(&err); ... }
 *     kiln_model_load_weights(m, "lenet.safetensors", &err);
 *     KilnTensor in[11] = {[0] = image}, out[1];        // one entry per parameter
 *     kiln_model_run(m, in, out, &err);                  // from any thread
 *     ...
 *     kiln_model_free(m);
 *
 * Threads.  Every function may be called from any thread, and on one model
 * from several threads at once.  Runs proceed in parallel: they share the
 * compiled code and the bound weights, read only, and each has its own
 * temporaries, device memory and outputs.  Binding, loading weights and
 * closing wait for the runs in progress, and runs started meanwhile wait for
 * them.  Only kiln_model_free must not overlap another call on the model.
 *
 * Weights.  kiln_model_bind and kiln_model_load_weights copy a parameter's
 * value once into the model (and once onto the device, for a GPU); every
 * later run uses that copy in place, and never takes the parameter as an
 * input.  Binding a parameter again replaces its value for later runs.
 *
 * Results never share memory with another run's results, with the inputs or
 * with the weights (a graph that returns a parameter returns a copy).
 *
 * Symbolic dimensions (f32[B, 784]).  Those given in the options are fixed
 * at load, and so is any that a bound parameter's shape gives.  Any other is
 * taken from the inputs of each run: the graph is compiled once for each
 * set of sizes met, and those compilations are kept until the model closes.
 *
 * Compiling.  kiln_model_load and kiln_model_compile read and check the
 * graph (and, when every dimension is known, build it: its errors come back
 * from them).  The code for the device is compiled at the first run (or
 * plan) for a set of sizes, with the parameters bound by then compiled in
 * as constants (the CPU packs them once for its matrix products): bind the
 * weights, then run.  Binding a parameter that an earlier compilation took
 * as an input makes the next run compile again.
 *
 * Errors.  A function that fails returns NULL or a KilnStatus other than
 * KILN_OK and, when `err` is not NULL, fills it.  Start it zeroed
 * (KilnError err = {0}); a later failure frees what an earlier one left
 * there, a success leaves it alone, kiln_error_clear frees it.  A closed
 * model refuses every call with KILN_ERR_USAGE ("the model is closed"). */

typedef struct KilnModel KilnModel;

/* Why a call failed.  message is what `kiln` on the command line prints for
 * the same failure: the diagnostics with their source lines and carets, or
 * one "kiln: ..." line.  file, line, col: where the first diagnostic points
 * (line 0: a file-level error, such as a weights file that cannot be read);
 * file is NULL when the error is about no file. */
typedef struct {
    KilnStatus status;
    char *file;
    int line, col;
    char *message;
} KilnError;

KILN_API void kiln_error_clear(KilnError *err); /* frees file and message, zeroes the rest */

typedef struct {
    const char *name;
    int64_t size; /* > 0 */
} KilnDim;

/* Every field may be left zero. */
typedef struct {
    const char *graph;   /* NULL or "": the file's first graph */
    const char *device;  /* NULL or "": the default device (a GPU where one is usable, else cpu);
                            "ref", "kir", "cpu", "cuda", "cuda-emu" */
    const KilnDim *dims; /* symbolic dimensions fixed at load (ndims of them) */
    int ndims;
    const char *precision; /* NULL or "": "f32"; "f16", "bf16", "auto" (docs/passes.md) */
} KilnModelOptions;

/* A .kiln file, or an ONNX model (recognised by its content).  An ONNX
 * model's parameters are its graph inputs; its initializers (and values
 * folded at import) are its weights, bound from the file and not
 * parameters.  It is imported as `kiln run MODEL.onnx` imports it, once
 * with its named dimensions symbolic (to describe it), then once per set of
 * sizes met, when the weights are read for that compilation. */
KILN_API KilnModel *kiln_model_load(const char *path, const KilnModelOptions *opt, KilnError *err);
/* kiln program text; diagnostics call it "<source>". */
KILN_API KilnModel *kiln_model_compile(const char *source, const KilnModelOptions *opt, KilnError *err);

/* Binds parameter `name` to a copy of t for every later run.  t must have
 * the parameter's dtype (an f32 tensor is also taken for an f16 or bf16
 * parameter, converted once) and shape; its symbolic dimensions become
 * fixed. */
KILN_API KilnStatus kiln_model_bind(KilnModel *m, const char *name, const KilnTensor *t, KilnError *err);
/* Binds every parameter named in a .safetensors file (tensors that name no
 * parameter are left alone; a file that binds none is an error).  All or
 * nothing: a tensor that does not fit leaves every binding as it was. */
KILN_API KilnStatus kiln_model_load_weights(KilnModel *m, const char *path, KilnError *err);

/* A parameter or result of the model.  shape has -1 for a symbolic
 * dimension; type spells the declared type ("f32[N, 1, 28, 28]").  The
 * pointers are the model's, valid until it closes. */
typedef struct {
    const char *name; /* results: an ONNX model's output names, else "out0", "out1", ... */
    KilnDType dtype;
    int rank;
    const int64_t *shape;
    const char *type;
} KilnTensorInfo;

KILN_API int kiln_model_num_params(KilnModel *m);  /* 0 once closed */
KILN_API int kiln_model_num_results(KilnModel *m); /* 0 once closed */
KILN_API bool kiln_model_param_info(KilnModel *m, int i, KilnTensorInfo *out);
KILN_API bool kiln_model_result_info(KilnModel *m, int i, KilnTensorInfo *out);
KILN_API int kiln_model_param_index(KilnModel *m, const char *name); /* -1: no such parameter */
KILN_API bool kiln_model_param_bound(KilnModel *m, int i);
KILN_API const char *kiln_model_graph(KilnModel *m);  /* the graph's name; NULL once closed */
KILN_API const char *kiln_model_device(KilnModel *m); /* "cpu", ...; NULL once closed */

/* A run.  inputs has one entry per parameter, in the graph's order; the
 * entries of bound parameters are not read (they may be zeroed).  Each
 * input must have its parameter's dtype and a shape that fits its declared
 * type; its data is read in place for the duration of the call, never kept
 * (data aligned to 64 bytes, as kiln_tensor_init gives, is read fastest: a
 * vector load then never straddles two cache lines).
 *
 * kiln_model_run allocates outputs[i] (kiln_model_num_results of them; the
 * caller frees each with kiln_tensor_free).
 *
 * kiln_model_run_into writes into the caller's memory: kiln_model_plan
 * fills outputs[i]'s dtype, rank and shape for these inputs (shape points
 * into the model; data is set to NULL; the inputs' data is not read),
 * the caller points each data at room for that many elements, and
 * kiln_model_run_into runs the graph into it. */
KILN_API KilnStatus kiln_model_run(KilnModel *m, const KilnTensor *inputs, KilnTensor *outputs,
                                   KilnError *err);
KILN_API KilnStatus kiln_model_plan(KilnModel *m, const KilnTensor *inputs, KilnTensor *outputs,
                                    KilnError *err);
KILN_API KilnStatus kiln_model_run_into(KilnModel *m, const KilnTensor *inputs, KilnTensor *outputs,
                                        KilnError *err);

/* Frees everything the model holds (compiled code, weights, device memory)
 * once the runs in progress end; the handle stays, and every later call on
 * it fails with KILN_ERR_USAGE, closing again included.  kiln_model_free
 * releases the handle itself (closing the model first if it is open);
 * NULL is ignored. */
KILN_API KilnStatus kiln_model_close(KilnModel *m, KilnError *err);
KILN_API void kiln_model_free(KilnModel *m);

#endif
