/* tensor.c - host tensors, element types, and half-precision conversions:
 * the public kiln_dtype_* / kiln_tensor_* functions of include/kiln.h and
 * tensorio_shape_bytes (base/base.h), the checked size arithmetic every
 * reader of untrusted shapes uses.  In base/, the bottom layer: it uses
 * only kiln.h and base.h.  The tensor-file helpers are in runtime/tensorio.c.
 */
#include "base/base.h"

#include <stdlib.h>
#include <string.h>

/* Indexed by KilnDType, so the order follows the enum. */
static const struct {
    const char *name;
    size_t size;
} dtype_info[KILN_NUM_DTYPES] = {
    [KILN_F32] = {"f32", 4}, [KILN_F16] = {"f16", 2}, [KILN_BF16] = {"bf16", 2},
    [KILN_F64] = {"f64", 8}, [KILN_I32] = {"i32", 4}, [KILN_I64] = {"i64", 8},
    [KILN_BOOL] = {"bool", 1},
};

static bool dtype_valid(KilnDType dt) { return (unsigned)dt < KILN_NUM_DTYPES; }

const char *kiln_dtype_name(KilnDType dt) { return dtype_valid(dt) ? dtype_info[dt].name : "?"; }

size_t kiln_dtype_size(KilnDType dt) { return dtype_valid(dt) ? dtype_info[dt].size : 0; }

bool kiln_dtype_from_name(const char *name, KilnDType *out) {
    for (int dt = 0; dt < KILN_NUM_DTYPES; dt++) {
        if (name && strcmp(name, dtype_info[dt].name) == 0) {
            *out = (KilnDType)dt;
            return true;
        }
    }
    return false;
}

/* Byte size of a tensor of this dtype and shape, refusing negative dimensions
 * and any product that does not fit a size_t (shapes come from untrusted files). */
bool tensorio_shape_bytes(KilnDType dt, int rank, const int64_t *shape, size_t *bytes) {
    if (!dtype_valid(dt) || rank < 0)
        return false;
    size_t total = dtype_info[dt].size;
    for (int i = 0; i < rank; i++) {
        if (shape[i] < 0 || (uint64_t)shape[i] > SIZE_MAX)
            return false;
        size_t dim = (size_t)shape[i];
        if (dim != 0 && total > SIZE_MAX / dim)
            return false;
        total *= dim;
    }
    *bytes = total;
    return true;
}

int64_t kiln_tensor_numel(const KilnTensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->rank; i++)
        n *= t->shape[i];
    return n;
}

/* Zeroed storage for a tensor's `bytes` (at least one), 64-byte aligned:
 * kernels read graph inputs in place, and calloc's 16-byte alignment split
 * every vector load of a benchmark's input across two cache lines, where
 * the same layer inside a model reads the (64-byte aligned) arena.  Freed
 * with free(); NULL when out of memory. */
void *tensor_data_alloc(size_t bytes) {
    void *p = host_line_alloc(bytes);
    if (p) memset(p, 0, bytes > 0 ? bytes : 1);
    return p;
}

bool kiln_tensor_init(KilnTensor *t, KilnDType dt, int rank, const int64_t *shape) {
    memset(t, 0, sizeof *t);
    size_t bytes;
    if (!tensorio_shape_bytes(dt, rank, shape, &bytes))
        return false;
    /* At least one shape entry and one data byte, so that a scalar or an empty
     * tensor still has non-NULL pointers and NULL always means "failed". */
    t->shape = malloc(sizeof(int64_t) * (size_t)(rank > 0 ? rank : 1));
    t->data = tensor_data_alloc(bytes);
    if (!t->shape || !t->data) {
        kiln_tensor_free(t);
        return false;
    }
    if (rank > 0)
        memcpy(t->shape, shape, sizeof(int64_t) * (size_t)rank);
    t->dtype = dt;
    t->rank = rank;
    return true;
}

void kiln_tensor_free(KilnTensor *t) {
    if (!t)
        return;
    free(t->shape);
    free(t->data);
    memset(t, 0, sizeof *t);
}

void kiln_tensor_list_free(KilnTensorList *list) {
    if (!list)
        return;
    for (int i = 0; i < list->count; i++) {
        if (list->names)
            free(list->names[i]);
        if (list->tensors)
            kiln_tensor_free(&list->tensors[i]);
    }
    free(list->names);
    free(list->tensors);
    memset(list, 0, sizeof *list);
}

/* ---- half precision ---- */

static uint32_t float_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    return x;
}

static float bits_float(uint32_t x) {
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

/* Drops the low `shift` bits of v, rounding to nearest, ties to even.  A carry
 * out of the mantissa correctly bumps the exponent (and reaches inf at the top). */
static uint32_t shift_round_even(uint32_t v, int shift) {
    uint32_t kept = v >> shift, rest = v & ((1u << shift) - 1), half = 1u << (shift - 1);
    return kept + (rest > half || (rest == half && (kept & 1)));
}

uint16_t kiln_f32_to_f16(float f) {
    uint32_t x = float_bits(f);
    uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
    int exp = (int)((x >> 23) & 0xff);
    uint32_t mant = x & 0x7fffff;
    if (exp == 0xff) /* inf stays inf; NaN keeps its top payload bits and is made quiet */
        return sign | 0x7c00 | (mant ? 0x200 | (mant >> 13) : 0);
    int e = exp - 127 + 15; /* the f16 biased exponent */
    if (e >= 31)
        return sign | 0x7c00; /* too large: overflows to inf */
    if (e >= 1)               /* normal: the exponent rides along in the rounding */
        return sign | (uint16_t)shift_round_even(((uint32_t)e << 23) | mant, 13);
    /* f16 subnormal: value / 2^-24 with the implicit bit restored.  Below
     * e = -10 the value is under half the smallest subnormal and rounds to 0
     * (f32 subnormals land here too). */
    if (e < -10)
        return sign;
    return sign | (uint16_t)shift_round_even(mant | 0x800000, 14 - e);
}

float kiln_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000) << 16;
    int exp = (h >> 10) & 0x1f;
    uint32_t mant = h & 0x3ff;
    if (exp == 0x1f)
        return bits_float(sign | 0x7f800000 | (mant << 13));
    if (exp == 0) {
        if (mant == 0)
            return bits_float(sign);
        /* Subnormal: shift the leading 1 up to the implicit position. */
        exp = 1;
        while (!(mant & 0x400)) {
            mant <<= 1;
            exp--;
        }
        mant &= 0x3ff;
    }
    return bits_float(sign | ((uint32_t)(exp + 127 - 15) << 23) | (mant << 13));
}

uint16_t kiln_f32_to_bf16(float f) {
    uint32_t x = float_bits(f);
    /* bf16 keeps the f32 exponent, so only NaN needs care: rounding could
     * carry its payload into inf, so make it quiet instead. */
    if ((x & 0x7fffffff) > 0x7f800000)
        return (uint16_t)((x >> 16) | 0x40);
    return (uint16_t)shift_round_even(x, 16);
}

float kiln_bf16_to_f32(uint16_t h) { return bits_float((uint32_t)h << 16); }

double kiln_tensor_get(const KilnTensor *t, int64_t i) {
    switch (t->dtype) {
    case KILN_F32: return ((const float *)t->data)[i];
    case KILN_F16: return kiln_f16_to_f32(((const uint16_t *)t->data)[i]);
    case KILN_BF16: return kiln_bf16_to_f32(((const uint16_t *)t->data)[i]);
    case KILN_F64: return ((const double *)t->data)[i];
    case KILN_I32: return ((const int32_t *)t->data)[i];
    case KILN_I64: return (double)((const int64_t *)t->data)[i];
    case KILN_BOOL: return ((const uint8_t *)t->data)[i] != 0;
    default: return 0;
    }
}

/* double -> integer without undefined behaviour: truncate, saturate, NaN -> 0. */
static int64_t saturate_i64(double v, int64_t lo, int64_t hi) {
    if (v != v) return 0;
    if (v >= (double)hi) return hi;
    if (v <= (double)lo) return lo;
    return (int64_t)v;
}

int64_t kiln_tensor_get_i64(const KilnTensor *t, int64_t i) {
    switch (t->dtype) {
    case KILN_I32: return ((const int32_t *)t->data)[i];
    case KILN_I64: return ((const int64_t *)t->data)[i];
    case KILN_BOOL: return ((const uint8_t *)t->data)[i] != 0;
    default: return saturate_i64(kiln_tensor_get(t, i), INT64_MIN, INT64_MAX);
    }
}

void kiln_tensor_set_i64(KilnTensor *t, int64_t i, int64_t v) {
    switch (t->dtype) {
    case KILN_F32: ((float *)t->data)[i] = (float)v; break; /* one rounding */
    case KILN_F64: ((double *)t->data)[i] = (double)v; break;
    case KILN_F16: ((uint16_t *)t->data)[i] = kiln_f32_to_f16((float)v); break; /* through f32 */
    case KILN_BF16: ((uint16_t *)t->data)[i] = kiln_f32_to_bf16((float)v); break;
    case KILN_I32: ((int32_t *)t->data)[i] = (int32_t)(uint32_t)(uint64_t)v; break; /* wraps */
    case KILN_I64: ((int64_t *)t->data)[i] = v; break;
    case KILN_BOOL: ((uint8_t *)t->data)[i] = v != 0; break;
    default: break;
    }
}

void kiln_tensor_set(KilnTensor *t, int64_t i, double v) {
    switch (t->dtype) {
    case KILN_F32: ((float *)t->data)[i] = (float)v; break;
    case KILN_F16: ((uint16_t *)t->data)[i] = kiln_f32_to_f16((float)v); break;
    case KILN_BF16: ((uint16_t *)t->data)[i] = kiln_f32_to_bf16((float)v); break;
    case KILN_F64: ((double *)t->data)[i] = v; break;
    case KILN_I32: ((int32_t *)t->data)[i] = (int32_t)saturate_i64(v, INT32_MIN, INT32_MAX); break;
    case KILN_I64: ((int64_t *)t->data)[i] = saturate_i64(v, INT64_MIN, INT64_MAX); break;
    case KILN_BOOL: ((uint8_t *)t->data)[i] = v != 0; break;
    default: break;
    }
}
