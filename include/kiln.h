/* kiln.h - the public interface of libkiln, for programs that embed kiln.
 *
 * A host tensor (KilnTensor) is the unit that crosses the API: dense, C order,
 * little-endian, owning its data.  Compilation and running go through a
 * KilnSession (see kiln_session_* below), which keeps diagnostics and the
 * chosen device.  Every function that can fail returns a KilnStatus and leaves
 * a human-readable message in the session (or in an error buffer).
 */
#ifndef KILN_H
#define KILN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define KILN_VERSION "0.1.0"

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

const char *kiln_dtype_name(KilnDType dt);   /* "f32", "bf16", ... */
size_t kiln_dtype_size(KilnDType dt);        /* bytes per element */
bool kiln_dtype_from_name(const char *name, KilnDType *out);

int64_t kiln_tensor_numel(const KilnTensor *t);
/* Element i (flat, C order) as a double, and stored from a double: floats
 * round to the dtype (nearest even), ints truncate toward zero and
 * saturate (NaN -> 0), bool is != 0. */
double kiln_tensor_get(const KilnTensor *t, int64_t i);
void kiln_tensor_set(KilnTensor *t, int64_t i, double v);
/* The same with an exact int64: reading an integer or bool element is exact
 * (a float truncates and saturates, NaN -> 0); storing into an integer
 * dtype wraps to its width (NumPy's astype), into f32 or f64 rounds once to
 * nearest even (f16 and bf16 through f32). */
int64_t kiln_tensor_get_i64(const KilnTensor *t, int64_t i);
void kiln_tensor_set_i64(KilnTensor *t, int64_t i, int64_t v);
/* Allocates shape and zeroed data; returns false on out-of-memory. */
bool kiln_tensor_init(KilnTensor *t, KilnDType dt, int rank, const int64_t *shape);
void kiln_tensor_free(KilnTensor *t);

/* Tensor files.  Readers treat the file as untrusted: a truncated, oversized
 * or self-contradictory file is refused, and `err` (errlen bytes) says why.
 * Return true on success. */
bool kiln_npy_read(const char *path, KilnTensor *out, char *err, size_t errlen);
bool kiln_npy_read_mem(const uint8_t *buf, size_t len, KilnTensor *out, char *err, size_t errlen);
bool kiln_npy_write(const char *path, const KilnTensor *t, char *err, size_t errlen);

/* ONNX TensorProto files (`.pb`, as the ONNX test suites store inputs and
 * outputs): the tensor in its own dtype; dtypes kiln lacks are refused. */
bool kiln_onnx_tensor_read_file(const char *path, KilnTensor *out, char *err, size_t errlen);
bool kiln_onnx_tensor_read_mem(const uint8_t *buf, size_t len, KilnTensor *out, char *err, size_t errlen);

/* safetensors: a named list of tensors. */
typedef struct {
    int count;
    char **names;
    KilnTensor *tensors;
} KilnTensorList;

bool kiln_safetensors_read(const char *path, KilnTensorList *out, char *err, size_t errlen);
bool kiln_safetensors_read_mem(const uint8_t *buf, size_t len, KilnTensorList *out, char *err,
                               size_t errlen);
bool kiln_safetensors_write(const char *path, const KilnTensorList *list, char *err, size_t errlen);
void kiln_tensor_list_free(KilnTensorList *list);

/* Half-precision conversions (round to nearest even). */
uint16_t kiln_f32_to_f16(float f);
float kiln_f16_to_f32(uint16_t h);
uint16_t kiln_f32_to_bf16(float f);
float kiln_bf16_to_f32(uint16_t h);

#endif
