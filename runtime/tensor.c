/* tensor.c - host tensors, element types, and half-precision conversions.
 *
 * Also holds the few helpers shared by the tensor-file readers and writers
 * (npy.c, safetensors.c), declared in runtime/tensorio.h: checked size
 * arithmetic, whole-file reading, error formatting, a header text reader.
 * They are not part of the public API ("tensorio_" prefix).
 */
#include "runtime/tensorio.h"
#include "runtime/outfile.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
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

bool kiln_tensor_init(KilnTensor *t, KilnDType dt, int rank, const int64_t *shape) {
    memset(t, 0, sizeof *t);
    size_t bytes;
    if (!tensorio_shape_bytes(dt, rank, shape, &bytes))
        return false;
    /* At least one shape entry and one data byte, so that a scalar or an empty
     * tensor still has non-NULL pointers and NULL always means "failed". */
    t->shape = malloc(sizeof(int64_t) * (size_t)(rank > 0 ? rank : 1));
    t->data = calloc(bytes > 0 ? bytes : 1, 1);
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

/* ---- shared helpers of the tensor-file code ---- */

/* Formats a message into err; returns false so a failing path can say
 * `return tensorio_error(...)`. */
bool tensorio_error(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return false;
}

bool tensorio_text_error(TextCursor *c, const char *fmt, ...) {
    if (c->err && c->errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, c->errlen, fmt, ap);
        va_end(ap);
    }
    return false;
}

void tensorio_skip_space(TextCursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

bool tensorio_accept(TextCursor *c, char ch) {
    tensorio_skip_space(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

/* Turns the message already in err into "prefix: message" (truncated to fit). */
void tensorio_prefix_error(char *err, size_t errlen, const char *prefix) {
    if (!err || errlen == 0)
        return;
    size_t plen = strlen(prefix) + 2, mlen = strnlen(err, errlen - 1);
    if (plen >= errlen) {
        snprintf(err, errlen, "%s", prefix);
        return;
    }
    if (mlen > errlen - 1 - plen)
        mlen = errlen - 1 - plen;
    memmove(err + plen, err, mlen);
    memcpy(err, prefix, plen - 2);
    memcpy(err + plen - 2, ": ", 2);
    err[plen + mlen] = '\0';
}

/* Formats a shape as NumPy prints it: "()", "(5,)", "(3, 4)". */
void tensorio_format_shape(char *buf, size_t buflen, int rank, const int64_t *shape) {
    size_t used = 0;
    used += (size_t)snprintf(buf, buflen, "(");
    for (int i = 0; i < rank && used < buflen; i++)
        used += (size_t)snprintf(buf + used, buflen - used, i ? ", %lld" : "%lld",
                                 (long long)shape[i]);
    if (used < buflen)
        snprintf(buf + used, buflen - used, rank == 1 ? ",)" : ")");
}

/* Reads a whole file into a malloc'd buffer (*data, *len); messages name the path. */
bool tensorio_read_file(const char *path, uint8_t **data, size_t *len, char *err, size_t errlen) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        tensorio_error(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return false;
    }
    /* Grow as we read rather than trusting a size from fseek/ftell: the path
     * may be a pipe or a file that changes under us. */
    size_t cap = 1 << 16, used = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        used += fread(buf + used, 1, cap - used, f);
        if (used < cap)
            break;
        uint8_t *bigger = cap <= SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    bool failed = !buf || ferror(f);
    int read_errno = errno;
    fclose(f);
    if (failed) {
        tensorio_error(err, errlen, "%s: %s", path, buf ? strerror(read_errno) : "out of memory");
        free(buf);
        return false;
    }
    *data = buf;
    *len = used;
    return true;
}

/* Writes the parts, in order, to a new file at path; a short write or a
 * failed close (a full disk shows up there) is an error. */
/* Whole files, written atomically (runtime/outfile.c): a reader sees the old
 * file or the new one, never a part. */
bool tensorio_write_file(const char *path, int nparts, const void *const *parts,
                         const size_t *lens, char *err, size_t errlen) {
    return outfile_write(path, nparts, parts, lens, err, errlen) == KILN_OK;
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
