/* reader.c - a zero-copy reader of ONNX model files (protobuf wire format).
 *
 * Contract: onnx_model_open maps the file read-only and decodes ModelProto
 * into an OnnxModel whose structures live in the caller's arena and whose
 * tensor bytes stay in the mapping (raw_data is used in place; typed repeated
 * fields such as float_data are decoded only when a tensor is read).  The
 * input is untrusted: every varint, length, field number and wire type is
 * checked against the bytes of the enclosing message, counts are checked
 * against the data present before anything is allocated, and external-data
 * files must lie beside the model.  Nothing recurses on the input's nesting:
 * subgraphs (attribute `g`) are kept as byte spans, not decoded.
 *
 * The wire format (protobuf encoding): a message is a sequence of fields,
 * each a varint key (field_number << 3 | wire_type) then a value: 0 varint,
 * 1 fixed 64 bits, 2 a varint length and that many bytes (strings, bytes,
 * sub-messages, packed repeated numbers), 5 fixed 32 bits.  Wire types 3 and
 * 4 (groups) are not used by ONNX and are refused.  A repeated number field
 * may come packed (one wire-type-2 field) or one field per element; both are
 * accepted, even mixed, as protobuf parsers must.
 */
#include "onnx/onnx.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

enum { WIRE_VARINT = 0, WIRE_FIXED64 = 1, WIRE_LEN = 2, WIRE_FIXED32 = 5 };

/* One mapped (or borrowed) file. */
struct OnnxMapping {
    char *path;
    const uint8_t *data;
    size_t len;
    bool mapped; /* munmap on close (else borrowed from the caller) */
    OnnxMapping *next;
};

typedef struct {
    const char *path;    /* for messages */
    const uint8_t *base; /* the start of the buffer, to report byte offsets */
    Arena *arena;
    char *err;
    size_t errlen;
} Reader;

/* The bytes of one message being decoded. */
typedef struct {
    const uint8_t *p, *end;
    const char *name; /* "GraphProto", for messages */
} Msg;

typedef struct {
    uint32_t num;
    int wire;
    uint64_t v;           /* WIRE_VARINT, WIRE_FIXED32, WIRE_FIXED64 */
    OnnxBytes bytes;      /* WIRE_LEN */
    const uint8_t *start; /* of the field's key */
} Field;

static bool fail(Reader *r, const uint8_t *at, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
static bool fail(Reader *r, const uint8_t *at, const char *fmt, ...) {
    if (!r->err || !r->errlen) return false;
    int n = r->path[0] ? snprintf(r->err, r->errlen, "%s: ", r->path) : 0;
    if (at && n >= 0 && (size_t)n < r->errlen)
        n += snprintf(r->err + n, r->errlen - (size_t)n, "byte %zu: ", (size_t)(at - r->base));
    if (n >= 0 && (size_t)n < r->errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(r->err + n, r->errlen - (size_t)n, fmt, ap);
        va_end(ap);
    }
    return false;
}

/* ---- the wire format ---- */

/* A varint of at most 10 bytes whose value fits 64 bits. */
static bool read_varint(const uint8_t **p, const uint8_t *end, uint64_t *out) {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (*p >= end) return false;
        uint8_t b = *(*p)++;
        if (shift == 63 && b > 1) return false; /* more than 64 bits */
        v |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *out = v;
            return true;
        }
    }
    return false;
}

static uint64_t load_le(const uint8_t *p, int n) {
    uint64_t v = 0;
    for (int i = n - 1; i >= 0; i--) v = v << 8 | p[i];
    return v;
}

/* The next field of `m`: 1 when one was read, 0 at the end, -1 on malformed
 * input (with the message set). */
static int next_field(Reader *r, Msg *m, Field *f) {
    if (m->p >= m->end) return 0;
    uint64_t key;
    f->start = m->p;
    if (!read_varint(&m->p, m->end, &key))
        return fail(r, f->start, "%s: a field key is longer than 64 bits or runs past the end of the message",
                    m->name),
               -1;
    f->num = (uint32_t)(key >> 3);
    f->wire = (int)(key & 7);
    if (key >> 3 == 0 || key >> 3 > 0x1fffffff)
        return fail(r, f->start, "%s: invalid field number %llu", m->name, (unsigned long long)(key >> 3)),
               -1;
    switch (f->wire) {
    case WIRE_VARINT:
        if (!read_varint(&m->p, m->end, &f->v))
            return fail(r, f->start,
                        "%s: field %u: a varint is longer than 64 bits or runs past the end of the message",
                        m->name, f->num),
                   -1;
        return 1;
    case WIRE_FIXED64:
    case WIRE_FIXED32: {
        size_t n = f->wire == WIRE_FIXED64 ? 8 : 4;
        if ((size_t)(m->end - m->p) < n)
            return fail(r, f->start, "%s: field %u: a %zu-byte value runs past the end of the message",
                        m->name, f->num, n),
                   -1;
        f->v = load_le(m->p, (int)n);
        m->p += n;
        return 1;
    }
    case WIRE_LEN: {
        uint64_t len;
        if (!read_varint(&m->p, m->end, &len))
            return fail(r, f->start, "%s: field %u: a length runs past the end of the message", m->name,
                        f->num),
                   -1;
        if (len > (uint64_t)(m->end - m->p))
            return fail(r, f->start,
                        "%s: field %u: length %llu runs past the end of the message (%zu bytes left)",
                        m->name, f->num, (unsigned long long)len, (size_t)(m->end - m->p)),
                   -1;
        f->bytes = (OnnxBytes){m->p, (size_t)len};
        m->p += len;
        return 1;
    }
    default:
        return fail(r, f->start, "%s: field %u has wire type %d, which ONNX does not use", m->name, f->num,
                    f->wire),
               -1;
    }
}

static Msg sub_msg(const Field *f, const char *name) {
    return (Msg){f->bytes.data, f->bytes.data + f->bytes.len, name};
}

static bool want_wire(Reader *r, const Msg *m, const Field *f, int wire, const char *field) {
    if (f->wire == wire) return true;
    return fail(r, f->start, "%s.%s (field %u) has wire type %d, expected %d", m->name, field, f->num,
                f->wire, wire);
}

/* A string field: copied into the arena, NUL-terminated.  An embedded NUL
 * would cut names short silently, so it is refused. */
static bool take_string(Reader *r, const Msg *m, const Field *f, const char *field, const char **out) {
    if (!want_wire(r, m, f, WIRE_LEN, field)) return false;
    if (memchr(f->bytes.data, 0, f->bytes.len))
        return fail(r, f->start, "%s.%s contains a NUL byte", m->name, field);
    *out = arena_strndup(r->arena, (const char *)f->bytes.data, f->bytes.len);
    return true;
}

static bool take_varint(Reader *r, const Msg *m, const Field *f, const char *field, int64_t *out) {
    if (!want_wire(r, m, f, WIRE_VARINT, field)) return false;
    *out = (int64_t)f->v;
    return true;
}

/* int32 fields are encoded as sign-extended 64-bit varints. */
static bool take_int32(Reader *r, const Msg *m, const Field *f, const char *field, int32_t *out) {
    int64_t v;
    if (!take_varint(r, m, f, field, &v)) return false;
    if (v < INT32_MIN || v > INT32_MAX)
        return fail(r, f->start, "%s.%s: %lld is not an int32", m->name, field, (long long)v);
    *out = (int32_t)v;
    return true;
}

/* Counts the elements of a repeated number field, packed or not, as one
 * occurrence `f` contributes.  elem_size 0 means varints. */
static bool count_repeated(Reader *r, const Msg *m, const Field *f, int elem_size, const char *field,
                           int64_t *count) {
    int single = elem_size == 0 ? WIRE_VARINT : elem_size == 4 ? WIRE_FIXED32 : WIRE_FIXED64;
    if (f->wire == single) {
        (*count)++;
        return true;
    }
    if (!want_wire(r, m, f, WIRE_LEN, field)) return false;
    if (elem_size) {
        if (f->bytes.len % (size_t)elem_size)
            return fail(r, f->start, "%s.%s: packed length %zu is not a multiple of %d", m->name, field,
                        f->bytes.len, elem_size);
        *count += (int64_t)(f->bytes.len / (size_t)elem_size);
        return true;
    }
    if (f->bytes.len && (f->bytes.data[f->bytes.len - 1] & 0x80))
        return fail(r, f->start, "%s.%s: the last packed varint is cut short", m->name, field);
    for (size_t i = 0; i < f->bytes.len; i++) *count += !(f->bytes.data[i] & 0x80);
    return true;
}

/* Calls back each element of one occurrence of a repeated number field
 * (already checked by count_repeated) as raw 64 bits. */
typedef void (*ElemFn)(void *ctx, uint64_t bits);
static void each_repeated(const Field *f, int elem_size, ElemFn fn, void *ctx) {
    if (f->wire != WIRE_LEN) {
        fn(ctx, f->v);
        return;
    }
    const uint8_t *p = f->bytes.data, *end = p + f->bytes.len;
    while (p < end) {
        uint64_t v;
        if (elem_size) {
            v = load_le(p, elem_size);
            p += elem_size;
        } else if (!read_varint(&p, end, &v)) {
            return; /* a varint wider than 64 bits: count_repeated let it through as one element */
        }
        fn(ctx, v);
    }
}

typedef struct {
    int64_t *i64;
    float *f32;
    int64_t n;
} Fill;

static void fill_i64(void *ctx, uint64_t bits) {
    Fill *fl = ctx;
    fl->i64[fl->n++] = (int64_t)bits;
}

static void fill_f32(void *ctx, uint64_t bits) {
    Fill *fl = ctx;
    uint32_t b = (uint32_t)bits;
    memcpy(&fl->f32[fl->n++], &b, 4);
}

/* A repeated field of a message, decoded into an arena array: `num` picks
 * the field, elem_size 0 for int64 varints, 4 for floats. */
static bool read_numbers(Reader *r, Msg m, uint32_t num, int elem_size, const char *field, void **out,
                         int *nout) {
    Field f;
    int64_t count = 0;
    int st;
    Msg scan = m;
    while ((st = next_field(r, &scan, &f)) > 0)
        if (f.num == num && !count_repeated(r, &m, &f, elem_size, field, &count)) return false;
    if (st < 0) return false;
    if (count > INT_MAX / 8)
        return fail(r, m.p, "%s.%s: too many elements (%lld)", m.name, field, (long long)count);
    Fill fl = {0};
    if (elem_size == 4)
        fl.f32 = ARENA_ARRAY(r->arena, float, count + 1);
    else
        fl.i64 = ARENA_ARRAY(r->arena, int64_t, count + 1);
    while (next_field(r, &m, &f) > 0)
        if (f.num == num) each_repeated(&f, elem_size, elem_size == 4 ? fill_f32 : fill_i64, &fl);
    *out = elem_size == 4 ? (void *)fl.f32 : (void *)fl.i64;
    *nout = (int)fl.n; /* varints wider than 64 bits were refused by read_varint */
    if (fl.n != count) return fail(r, m.p, "%s.%s: a packed varint does not fit 64 bits", m.name, field);
    return true;
}

/* How many times field `num` occurs (each occurrence one element). */
static bool count_field(Reader *r, Msg m, uint32_t num, int *count) {
    Field f;
    int st;
    *count = 0;
    while ((st = next_field(r, &m, &f)) > 0) *count += f.num == num;
    return st == 0;
}

/* ---- dtypes ---- */

static const struct {
    const char *name;
    int size;       /* bytes of one element in raw_data; 0: not a fixed-size type */
    int field;      /* TensorProto field of its typed data */
    int field_elem; /* the typed field's element: 0 varint, 4 or 8 bytes */
    int per_elem;   /* typed-field values per element (complex: 2) */
} dtypes[] = {
    [ONNX_UNDEFINED] = {"undefined", 0, 0, 0, 0}, [ONNX_FLOAT] = {"float", 4, 4, 4, 1},
    [ONNX_UINT8] = {"uint8", 1, 5, 0, 1},         [ONNX_INT8] = {"int8", 1, 5, 0, 1},
    [ONNX_UINT16] = {"uint16", 2, 5, 0, 1},       [ONNX_INT16] = {"int16", 2, 5, 0, 1},
    [ONNX_INT32] = {"int32", 4, 5, 0, 1},         [ONNX_INT64] = {"int64", 8, 7, 0, 1},
    [ONNX_STRING] = {"string", 0, 6, -1, 1},      [ONNX_BOOL] = {"bool", 1, 5, 0, 1},
    [ONNX_FLOAT16] = {"float16", 2, 5, 0, 1},     [ONNX_DOUBLE] = {"double", 8, 10, 8, 1},
    [ONNX_UINT32] = {"uint32", 4, 11, 0, 1},      [ONNX_UINT64] = {"uint64", 8, 11, 0, 1},
    [ONNX_COMPLEX64] = {"complex64", 8, 4, 4, 2}, [ONNX_COMPLEX128] = {"complex128", 16, 10, 8, 2},
    [ONNX_BFLOAT16] = {"bfloat16", 2, 5, 0, 1},
};
enum { NUM_KNOWN_DTYPES = sizeof dtypes / sizeof dtypes[0] };

static bool dtype_known(int32_t dt) { return dt > 0 && dt < NUM_KNOWN_DTYPES; }

const char *onnx_dtype_name(int32_t dt) {
    static const char *const later[] = {"float8e4m3fn", "float8e4m3fnuz", "float8e5m2", "float8e5m2fnuz",
                                        "uint4",        "int4",           "float4e2m1"};
    if (dt >= 0 && dt < NUM_KNOWN_DTYPES) return dtypes[dt].name;
    if (dt >= 17 && dt <= 23) return later[dt - 17];
    return "an unknown dtype";
}

bool onnx_dtype_to_kiln(int32_t dt, KilnDType *out) {
    switch (dt) {
    case ONNX_FLOAT: *out = KILN_F32; return true;
    case ONNX_DOUBLE: *out = KILN_F64; return true;
    case ONNX_FLOAT16: *out = KILN_F16; return true;
    case ONNX_BFLOAT16: *out = KILN_BF16; return true;
    case ONNX_INT32: *out = KILN_I32; return true;
    case ONNX_INT64: *out = KILN_I64; return true;
    case ONNX_BOOL: *out = KILN_BOOL; return true;
    default: return false;
    }
}

bool onnx_dtype_widened(int32_t dt, KilnDType *out) {
    switch (dt) {
    case ONNX_INT8:
    case ONNX_UINT8:
    case ONNX_INT16:
    case ONNX_UINT16: *out = KILN_I32; return true;
    case ONNX_UINT32:
    case ONNX_UINT64: *out = KILN_I64; return true;
    default: return onnx_dtype_to_kiln(dt, out);
    }
}

/* ---- messages ---- */

/* TensorProto: 1 dims, 2 data_type, 3 segment, 4 float_data, 5 int32_data,
 * 6 string_data, 7 int64_data, 8 name, 9 raw_data, 10 double_data,
 * 11 uint64_data, 12 doc_string, 13 external_data, 14 data_location.
 * External data is only recorded here (location/offset/length); the open
 * step maps the file. */
typedef struct {
    const char *location;
    int64_t offset, length;
    bool external;
} ExternalRef;

static bool decode_external_entry(Reader *r, const Field *ef, ExternalRef *ext) {
    Msg m = sub_msg(ef, "StringStringEntryProto");
    Field f;
    int st;
    const char *key = NULL, *value = NULL;
    while ((st = next_field(r, &m, &f)) > 0) {
        if (f.num == 1 && !take_string(r, &m, &f, "key", &key)) return false;
        if (f.num == 2 && !take_string(r, &m, &f, "value", &value)) return false;
    }
    if (st < 0) return false;
    if (!key || !value)
        return fail(r, ef->start, "TensorProto.external_data: an entry lacks its key or value");
    if (strcmp(key, "location") == 0) {
        ext->location = value;
    } else if (strcmp(key, "offset") == 0 || strcmp(key, "length") == 0) {
        char *end;
        errno = 0;
        long long v = strtoll(value, &end, 10);
        if (errno || end == value || *end || v < 0)
            return fail(r, ef->start, "TensorProto.external_data: %s '%s' is not a non-negative integer", key,
                        value);
        if (key[0] == 'o')
            ext->offset = v;
        else
            ext->length = v;
    } /* checksum and unknown keys: ignored, as onnxruntime does */
    return true;
}

static bool decode_tensor(Reader *r, Msg m, OnnxTensor *t, ExternalRef *ext) {
    memset(t, 0, sizeof *t);
    memset(ext, 0, sizeof *ext);
    ext->length = -1;
    t->name = "";
    t->file_offset = (size_t)(m.p - r->base);
    const uint8_t *at = m.p;
    Field f;
    int st;
    bool has_raw = false;
    int64_t location = 0;
    void *dims;
    if (!read_numbers(r, m, 1, 0, "dims", &dims, &t->rank)) return false;
    t->dims = dims;
    Msg scan = m;
    while ((st = next_field(r, &scan, &f)) > 0) {
        switch (f.num) {
        case 2:
            if (!take_int32(r, &m, &f, "data_type", &t->data_type)) return false;
            break;
        case 3:
            return fail(r, f.start,
                        "TensorProto.segment (field 3) is set: segmented tensors are not supported "
                        "(or this is not a TensorProto: a SequenceProto or OptionalProto?)");
        case 8:
            if (!take_string(r, &m, &f, "name", &t->name)) return false;
            break;
        case 9:
            if (!want_wire(r, &m, &f, WIRE_LEN, "raw_data")) return false;
            t->raw = f.bytes;
            has_raw = true;
            break;
        case 13:
            if (!want_wire(r, &m, &f, WIRE_LEN, "external_data") || !decode_external_entry(r, &f, ext))
                return false;
            break;
        case 14:
            if (!take_varint(r, &m, &f, "data_location", &location)) return false;
            break;
        }
    }
    if (st < 0) return false;
    /* the element count, checked for overflow */
    int64_t numel = 1;
    for (int i = 0; i < t->rank; i++) {
        if (t->dims[i] < 0)
            return fail(r, at, "TensorProto '%s': dimension %d is negative (%lld)", t->name, i,
                        (long long)t->dims[i]);
        if (t->dims[i] && numel > INT64_MAX / t->dims[i])
            return fail(r, at, "TensorProto '%s': the element count overflows", t->name);
        numel *= t->dims[i];
    }
    t->numel = numel;
    if (location != 0 && location != 1)
        return fail(r, at, "TensorProto '%s': unknown data_location %lld", t->name, (long long)location);
    if (location == 1) {
        if (!ext->location) return fail(r, at, "TensorProto '%s': external data without a location", t->name);
        if (has_raw) return fail(r, at, "TensorProto '%s': both raw_data and external data", t->name);
        ext->external = true;
        t->kind = ONNX_DATA_RAW; /* once the open step has mapped it */
        return true;
    }
    int64_t typed = 0;
    int size = dtype_known(t->data_type) ? dtypes[t->data_type].size : 0;
    if (dtype_known(t->data_type) && dtypes[t->data_type].field_elem >= 0) {
        scan = m;
        while (next_field(r, &scan, &f) > 0)
            if ((int)f.num == dtypes[t->data_type].field &&
                !count_repeated(r, &m, &f, dtypes[t->data_type].field_elem, "typed data", &typed))
                return false;
    }
    if (has_raw && typed)
        return fail(r, at, "TensorProto '%s': both raw_data and %s values", t->name,
                    onnx_dtype_name(t->data_type));
    if (has_raw) {
        if (size && (t->raw.len % (size_t)size || (int64_t)(t->raw.len / (size_t)size) != numel))
            return fail(r, at, "TensorProto '%s': raw_data holds %zu bytes, not %lld %s elements of %d bytes",
                        t->name, t->raw.len, (long long)numel, onnx_dtype_name(t->data_type), size);
        t->kind = ONNX_DATA_RAW;
    } else if (typed) {
        int per = dtypes[t->data_type].per_elem;
        if (numel > typed || typed != numel * per)
            return fail(r, at, "TensorProto '%s': holds %lld values, its shape needs %lld", t->name,
                        (long long)typed, (long long)(numel * per));
        t->kind = ONNX_DATA_TYPED;
        t->message = (OnnxBytes){m.p, (size_t)(m.end - m.p)};
    } else {
        t->kind = ONNX_DATA_NONE;
        if (numel != 0 && dtype_known(t->data_type) && t->data_type != ONNX_STRING)
            return fail(r, at, "TensorProto '%s': no data for %lld elements", t->name, (long long)numel);
        t->message = (OnnxBytes){m.p, (size_t)(m.end - m.p)};
    }
    return true;
}

/* The model's external-data references, collected while decoding so that
 * the open step can map them (the decoder itself touches no file). */
typedef struct {
    OnnxTensor *tensor;
    ExternalRef ref;
} PendingExternal;

typedef struct {
    Reader r;
    VEC(PendingExternal) external;
} ModelReader;

static bool decode_tensor_in(ModelReader *mr, Msg m, OnnxTensor *t) {
    ExternalRef ext;
    if (!decode_tensor(&mr->r, m, t, &ext)) return false;
    if (ext.external) {
        PendingExternal pe = {t, ext};
        VEC_PUSH(mr->external, pe);
    }
    return true;
}

/* AttributeProto: 1 name, 2 f, 3 i, 4 s, 5 t, 6 g, 7 floats, 8 ints,
 * 9 strings, 10 tensors, 11 graphs, 13 doc_string, 14 tp, 15 type_protos,
 * 20 type, 21 ref_attr_name, 22 sparse_tensor, 23 sparse_tensors. */
static bool decode_attr(ModelReader *mr, Msg m, OnnxAttr *a) {
    Reader *r = &mr->r;
    memset(a, 0, sizeof *a);
    a->name = "";
    Field f;
    int st;
    void *arr;
    if (!read_numbers(r, m, 8, 0, "ints", &arr, &a->nints)) return false;
    a->ints = arr;
    if (!read_numbers(r, m, 7, 4, "floats", &arr, &a->nfloats)) return false;
    a->floats = arr;
    if (!count_field(r, m, 9, &a->nstrings)) return false;
    a->strings = ARENA_ARRAY(r->arena, OnnxBytes, a->nstrings + 1);
    int ns = 0;
    int64_t type = 0;
    while ((st = next_field(r, &m, &f)) > 0) {
        switch (f.num) {
        case 1:
            if (!take_string(r, &m, &f, "name", &a->name)) return false;
            break;
        case 2: {
            if (!want_wire(r, &m, &f, WIRE_FIXED32, "f")) return false;
            uint32_t bits = (uint32_t)f.v;
            memcpy(&a->f, &bits, 4);
            break;
        }
        case 3:
            if (!take_varint(r, &m, &f, "i", &a->i)) return false;
            break;
        case 4:
            if (!want_wire(r, &m, &f, WIRE_LEN, "s")) return false;
            a->s = f.bytes;
            break;
        case 5:
            if (!want_wire(r, &m, &f, WIRE_LEN, "t")) return false;
            a->t = ARENA_NEW(r->arena, OnnxTensor);
            if (!decode_tensor_in(mr, sub_msg(&f, "TensorProto"), a->t)) return false;
            break;
        case 6:
            if (!want_wire(r, &m, &f, WIRE_LEN, "g")) return false;
            a->g = f.bytes;
            break;
        case 9:
            if (!want_wire(r, &m, &f, WIRE_LEN, "strings")) return false;
            a->strings[ns++] = f.bytes;
            break;
        case 10: a->ntensors++; break;
        case 11: a->ngraphs++; break;
        case 14:
        case 15:
        case 22:
        case 23: a->nother++; break;
        case 20:
            if (!take_varint(r, &m, &f, "type", &type)) return false;
            break;
        case 21:
            if (!take_string(r, &m, &f, "ref_attr_name", &a->ref_attr_name)) return false;
            break;
        }
    }
    a->type = type >= 0 && type <= ONNX_ATTR_TYPE_PROTOS ? (int)type : -1;
    return st == 0;
}

/* NodeProto: 1 input, 2 output, 3 name, 4 op_type, 5 attribute, 6 doc_string, 7 domain. */
static bool decode_node(ModelReader *mr, Msg m, OnnxNode *n) {
    Reader *r = &mr->r;
    memset(n, 0, sizeof *n);
    n->name = n->op_type = n->domain = "";
    n->file_offset = (size_t)(m.p - r->base);
    int nin, nout, nattr;
    if (!count_field(r, m, 1, &nin) || !count_field(r, m, 2, &nout) || !count_field(r, m, 5, &nattr))
        return false;
    n->inputs = ARENA_ARRAY(r->arena, const char *, nin + 1);
    n->outputs = ARENA_ARRAY(r->arena, const char *, nout + 1);
    n->attrs = ARENA_ARRAY(r->arena, OnnxAttr, nattr + 1);
    Field f;
    int st;
    while ((st = next_field(r, &m, &f)) > 0) {
        bool ok = true;
        switch (f.num) {
        case 1: ok = take_string(r, &m, &f, "input", &n->inputs[n->ninputs++]); break;
        case 2: ok = take_string(r, &m, &f, "output", &n->outputs[n->noutputs++]); break;
        case 3: ok = take_string(r, &m, &f, "name", &n->name); break;
        case 4: ok = take_string(r, &m, &f, "op_type", &n->op_type); break;
        case 7: ok = take_string(r, &m, &f, "domain", &n->domain); break;
        case 5:
            ok = want_wire(r, &m, &f, WIRE_LEN, "attribute") &&
                 decode_attr(mr, sub_msg(&f, "AttributeProto"), &n->attrs[n->nattrs++]);
            break;
        }
        if (!ok) return false;
    }
    return st == 0;
}

/* ValueInfoProto: 1 name, 2 type.  TypeProto: 1 tensor_type (others: 4
 * sequence, 5 map, 8 sparse tensor, 9 optional).  TypeProto.Tensor:
 * 1 elem_type, 2 shape.  TensorShapeProto: 1 dim.  Dimension: 1 dim_value,
 * 2 dim_param. */
static bool decode_dim(Reader *r, Msg m, OnnxDim *d) {
    d->value = -1;
    d->param = NULL;
    Field f;
    int st;
    while ((st = next_field(r, &m, &f)) > 0) {
        if (f.num == 1) {
            if (!take_varint(r, &m, &f, "dim_value", &d->value)) return false;
            if (d->value < 0) return fail(r, f.start, "a dimension is negative (%lld)", (long long)d->value);
            d->param = NULL;
        } else if (f.num == 2) {
            if (!take_string(r, &m, &f, "dim_param", &d->param)) return false;
            if (!d->param[0])
                d->param = NULL;
            else
                d->value = -1;
        }
    }
    return st == 0;
}

static bool decode_tensor_type(Reader *r, Msg m, OnnxValueInfo *v) {
    Field f;
    int st;
    v->kind = ONNX_TYPE_TENSOR;
    while ((st = next_field(r, &m, &f)) > 0) {
        if (f.num == 1) {
            if (!take_int32(r, &m, &f, "elem_type", &v->elem_type)) return false;
        } else if (f.num == 2) {
            if (!want_wire(r, &m, &f, WIRE_LEN, "shape")) return false;
            Msg shape = sub_msg(&f, "TensorShapeProto");
            if (!count_field(r, shape, 1, &v->rank)) return false;
            v->dims = ARENA_ARRAY(r->arena, OnnxDim, v->rank + 1);
            v->has_shape = true;
            int k = 0;
            Field df;
            while (next_field(r, &shape, &df) > 0) {
                if (df.num != 1) continue;
                if (!want_wire(r, &shape, &df, WIRE_LEN, "dim") ||
                    !decode_dim(r, sub_msg(&df, "TensorShapeProto.Dimension"), &v->dims[k++]))
                    return false;
            }
        }
    }
    return st == 0;
}

static bool decode_value_info(Reader *r, Msg m, OnnxValueInfo *v) {
    memset(v, 0, sizeof *v);
    v->name = "";
    Field f;
    int st;
    while ((st = next_field(r, &m, &f)) > 0) {
        if (f.num == 1) {
            if (!take_string(r, &m, &f, "name", &v->name)) return false;
        } else if (f.num == 2) {
            if (!want_wire(r, &m, &f, WIRE_LEN, "type")) return false;
            Msg type = sub_msg(&f, "TypeProto");
            Field tf;
            while ((st = next_field(r, &type, &tf)) > 0) {
                if (tf.num == 1) {
                    if (!want_wire(r, &type, &tf, WIRE_LEN, "tensor_type") ||
                        !decode_tensor_type(r, sub_msg(&tf, "TypeProto.Tensor"), v))
                        return false;
                } else if (tf.num == 4 || tf.num == 5 || tf.num == 8 || tf.num == 9) {
                    v->kind = ONNX_TYPE_OTHER;
                }
            }
            if (st < 0) return false;
        }
    }
    return st == 0;
}

/* Decodes every occurrence of field `num` of `m` into an arena array of
 * element size `size`, calling `decode` on each. */
typedef bool (*DecodeFn)(ModelReader *mr, Msg m, void *out);
static bool decode_all(ModelReader *mr, Msg m, uint32_t num, const char *field, const char *type, size_t size,
                       DecodeFn decode, void **out, int *count) {
    if (!count_field(&mr->r, m, num, count)) return false;
    char *arr = arena_alloc(mr->r.arena, size * (size_t)(*count + 1));
    int k = 0;
    Field f;
    while (next_field(&mr->r, &m, &f) > 0) {
        if (f.num != num) continue;
        if (!want_wire(&mr->r, &m, &f, WIRE_LEN, field) ||
            !decode(mr, sub_msg(&f, type), arr + size * (size_t)k++))
            return false;
    }
    *out = arr;
    return true;
}

static bool decode_node_fn(ModelReader *mr, Msg m, void *out) { return decode_node(mr, m, out); }
static bool decode_tensor_fn(ModelReader *mr, Msg m, void *out) { return decode_tensor_in(mr, m, out); }
static bool decode_value_info_fn(ModelReader *mr, Msg m, void *out) {
    return decode_value_info(&mr->r, m, out);
}

/* GraphProto: 1 node, 2 name, 5 initializer, 10 doc_string, 11 input,
 * 12 output, 13 value_info, 14 quantization_annotation, 15 sparse_initializer. */
static bool decode_graph(ModelReader *mr, Msg m, OnnxGraph *g) {
    memset(g, 0, sizeof *g);
    g->name = "";
    void *arr;
    if (!decode_all(mr, m, 1, "node", "NodeProto", sizeof(OnnxNode), decode_node_fn, &arr, &g->nnodes))
        return false;
    g->nodes = arr;
    if (!decode_all(mr, m, 5, "initializer", "TensorProto", sizeof(OnnxTensor), decode_tensor_fn, &arr,
                    &g->ninitializers))
        return false;
    g->initializers = arr;
    if (!decode_all(mr, m, 11, "input", "ValueInfoProto", sizeof(OnnxValueInfo), decode_value_info_fn, &arr,
                    &g->ninputs))
        return false;
    g->inputs = arr;
    if (!decode_all(mr, m, 12, "output", "ValueInfoProto", sizeof(OnnxValueInfo), decode_value_info_fn, &arr,
                    &g->noutputs))
        return false;
    g->outputs = arr;
    if (!decode_all(mr, m, 13, "value_info", "ValueInfoProto", sizeof(OnnxValueInfo), decode_value_info_fn,
                    &arr, &g->nvalue_info))
        return false;
    g->value_info = arr;
    if (!count_field(&mr->r, m, 15, &g->nsparse_initializers)) return false;
    Field f;
    while (next_field(&mr->r, &m, &f) > 0)
        if (f.num == 2 && !take_string(&mr->r, &m, &f, "name", &g->name)) return false;
    return true;
}

static bool decode_opset(ModelReader *mr, Msg m, void *out) {
    OnnxOpset *o = out;
    o->domain = "";
    Field f;
    int st;
    while ((st = next_field(&mr->r, &m, &f)) > 0) {
        if (f.num == 1 && !take_string(&mr->r, &m, &f, "domain", &o->domain)) return false;
        if (f.num == 2 && !take_varint(&mr->r, &m, &f, "version", &o->version)) return false;
    }
    return st == 0;
}

/* ModelProto: 1 ir_version, 2 producer_name, 3 producer_version, 4 domain,
 * 5 model_version, 6 doc_string, 7 graph, 8 opset_import, 14 metadata_props,
 * 20 training_info, 25 functions. */
static bool decode_model(ModelReader *mr, Msg m, OnnxModel *out) {
    Reader *r = &mr->r;
    out->producer_name = out->producer_version = "";
    void *arr;
    if (!decode_all(mr, m, 8, "opset_import", "OperatorSetIdProto", sizeof(OnnxOpset), decode_opset, &arr,
                    &out->nopsets))
        return false;
    out->opsets = arr;
    if (!count_field(r, m, 25, &out->nfunctions) || !count_field(r, m, 20, &out->ntraining_infos))
        return false;
    Field f;
    int st, ngraphs = 0;
    while ((st = next_field(r, &m, &f)) > 0) {
        bool ok = true;
        switch (f.num) {
        case 1: ok = take_varint(r, &m, &f, "ir_version", &out->ir_version); break;
        case 2: ok = take_string(r, &m, &f, "producer_name", &out->producer_name); break;
        case 3: ok = take_string(r, &m, &f, "producer_version", &out->producer_version); break;
        case 7:
            if (ngraphs++) return fail(r, f.start, "ModelProto has more than one graph");
            ok = want_wire(r, &m, &f, WIRE_LEN, "graph") &&
                 decode_graph(mr, sub_msg(&f, "GraphProto"), &out->graph);
            break;
        }
        if (!ok) return false;
    }
    if (st < 0) return false;
    if (!ngraphs) return fail(r, NULL, "the model has no graph (ModelProto.graph is missing)");
    return true;
}

/* ---- files ---- */

static bool map_file(const char *path, OnnxMapping **out, char *err, size_t errlen) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return false;
    }
    struct stat s;
    if (fstat(fd, &s) != 0 || !S_ISREG(s.st_mode)) {
        snprintf(err, errlen, "%s: not a regular file", path);
        close(fd);
        return false;
    }
    OnnxMapping *mp = xcalloc(1, sizeof *mp);
    mp->path = xstrdup(path);
    mp->len = (size_t)s.st_size;
    if (mp->len > 0) {
        void *p = mmap(NULL, mp->len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (p == MAP_FAILED) {
            snprintf(err, errlen, "cannot map %s: %s", path, strerror(errno));
            close(fd);
            free(mp->path);
            free(mp);
            return false;
        }
        mp->data = p;
        mp->mapped = true;
        mapped_file_register(p, mp->len, &s); /* its initializers named by place (base.h) */
    }
    close(fd);
    *out = mp;
    return true;
}

bool onnx_model_holds(const OnnxModel *m, const void *p) {
    uintptr_t a = (uintptr_t)p;
    for (const OnnxMapping *q = m ? m->mappings : NULL; q; q = q->next)
        if (q->data && a >= (uintptr_t)q->data && a - (uintptr_t)q->data < q->len) return true;
    return false;
}

static void unmap_all(OnnxMapping *mp) {
    while (mp) {
        OnnxMapping *next = mp->next;
        if (mp->mapped) {
            mapped_file_unregister(mp->data);
            munmap((void *)mp->data, mp->len);
        }
        free(mp->path);
        free(mp);
        mp = next;
    }
}

/* An external-data location must name a file beside the model or below its
 * folder: relative, without "..", as the ONNX checker requires. */
static bool external_location_ok(const char *loc) {
    if (!loc[0] || loc[0] == '/') return false;
    for (const char *p = loc; *p;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.') return false;
        p += n + (slash ? 1 : 0);
    }
    return true;
}

static bool resolve_external(ModelReader *mr, OnnxModel *model, const char *dir, char *err, size_t errlen) {
    for (int i = 0; i < mr->external.len; i++) {
        PendingExternal *pe = &mr->external.data[i];
        OnnxTensor *t = pe->tensor;
        if (!dir) {
            snprintf(err, errlen,
                     "%s: tensor '%s' keeps its data in an external file '%s', which a model read from "
                     "memory cannot open",
                     model->path, t->name, pe->ref.location);
            return false;
        }
        if (!external_location_ok(pe->ref.location)) {
            snprintf(err, errlen,
                     "%s: tensor '%s': external data location '%s' must be a relative path inside the "
                     "model's folder",
                     model->path, t->name, pe->ref.location);
            return false;
        }
        StrBuf path = {0};
        sb_printf(&path, "%s/%s", dir, pe->ref.location);
        OnnxMapping *mp = NULL;
        for (OnnxMapping *q = model->mappings; q; q = q->next)
            if (strcmp(q->path, path.data) == 0) mp = q;
        if (!mp) {
            char merr[512];
            if (!map_file(path.data, &mp, merr, sizeof merr)) {
                snprintf(err, errlen, "%s: tensor '%s': %s", model->path, t->name, merr);
                sb_free(&path);
                return false;
            }
            mp->next = model->mappings;
            model->mappings = mp;
        }
        sb_free(&path);
        int size = dtype_known(t->data_type) ? dtypes[t->data_type].size : 0;
        if (!size) {
            snprintf(err, errlen, "%s: tensor '%s': external data of dtype %s is not supported", model->path,
                     t->name, onnx_dtype_name(t->data_type));
            return false;
        }
        uint64_t need = (uint64_t)t->numel * (uint64_t)size; /* numel <= file size below, no overflow */
        uint64_t off = (uint64_t)pe->ref.offset;
        uint64_t len = pe->ref.length >= 0 ? (uint64_t)pe->ref.length : (off <= mp->len ? mp->len - off : 0);
        if (off > mp->len || len > mp->len - off || (t->numel && (uint64_t)t->numel > mp->len) ||
            len != need) {
            snprintf(err, errlen,
                     "%s: tensor '%s': external data %s (offset %llu, length %llu) does not hold %lld %s "
                     "elements (%llu bytes; the file has %zu)",
                     model->path, t->name, pe->ref.location, (unsigned long long)off, (unsigned long long)len,
                     (long long)t->numel, onnx_dtype_name(t->data_type), (unsigned long long)need, mp->len);
            return false;
        }
        t->raw = (OnnxBytes){mp->data + off, (size_t)len};
        t->kind = ONNX_DATA_RAW;
    }
    return true;
}

static bool parse_model(const uint8_t *data, size_t len, const char *path, const char *dir, Arena *arena,
                        OnnxModel *out, char *err, size_t errlen) {
    ModelReader mr = {.r = {path, data, arena, err, errlen}};
    out->path = arena_strdup(arena, path);
    bool ok = decode_model(&mr, (Msg){data, data + len, "ModelProto"}, out);
    ok = ok && resolve_external(&mr, out, dir, err, errlen);
    VEC_FREE(mr.external);
    return ok;
}

bool onnx_model_parse(const uint8_t *data, size_t len, Arena *arena, OnnxModel *out, char *err,
                      size_t errlen) {
    memset(out, 0, sizeof *out);
    return parse_model(data, len, "<memory>", NULL, arena, out, err, errlen);
}

bool onnx_model_open(const char *path, Arena *arena, OnnxModel *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    OnnxMapping *mp;
    if (!map_file(path, &mp, err, errlen)) return false;
    out->mappings = mp;
    char *dir = xstrdup(path);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = 0;
    else
        strcpy(dir, ".");
    bool ok = parse_model(mp->data ? mp->data : (const uint8_t *)"", mp->len, path,
                          slash && slash == dir ? "/" : dir, arena, out, err, errlen);
    free(dir);
    if (!ok) {
        unmap_all(out->mappings);
        out->mappings = NULL;
    }
    return ok;
}

void onnx_model_close(OnnxModel *m) {
    if (!m) return;
    unmap_all(m->mappings);
    m->mappings = NULL;
}

bool onnx_tensor_parse(const uint8_t *data, size_t len, Arena *arena, OnnxTensor *out, char *err,
                       size_t errlen) {
    ModelReader mr = {.r = {"", data, arena, err, errlen}};
    bool ok = decode_tensor_in(&mr, (Msg){data, data + len, "TensorProto"}, out);
    if (ok && mr.external.len) {
        ok = false;
        snprintf(err, errlen,
                 "the tensor keeps its data in an external file, which a .pb tensor file cannot use");
    }
    VEC_FREE(mr.external);
    return ok;
}

/* ---- recognising a model by content ---- */

bool onnx_looks_like_model(const uint8_t *data, size_t len) {
    /* Every top-level field must decode as a ModelProto field with its own
     * wire type; a length may run past a prefix that was cut short (the
     * caller may pass only the start of the file), but it must be the last
     * field seen.  Text (a kiln program) fails at its first byte: ASCII
     * letters and '#' are keys with wire types 3, 4, 6 or 7, or unknown
     * field numbers. */
    static const int8_t wire_of[26] = {[1] = WIRE_VARINT, [2] = WIRE_LEN,  [3] = WIRE_LEN, [4] = WIRE_LEN,
                                       [5] = WIRE_VARINT, [6] = WIRE_LEN,  [7] = WIRE_LEN, [8] = WIRE_LEN,
                                       [14] = WIRE_LEN,   [20] = WIRE_LEN, [25] = WIRE_LEN};
    const uint8_t *p = data, *end = data + len;
    bool essential = false;
    int fields = 0;
    while (p < end && fields < 64) {
        uint64_t key, v;
        if (!read_varint(&p, end, &key)) return false;
        uint64_t num = key >> 3;
        if (num == 0 || num >= 26 || (num != 1 && num != 5 && wire_of[num] == 0) ||
            (int)(key & 7) != wire_of[num])
            return false;
        if (!read_varint(&p, end, &v)) return false;
        if ((key & 7) == WIRE_LEN) {
            if (v > (uint64_t)(end - p)) return essential || num == 7 || num == 8;
            p += v;
        }
        essential = essential || num == 1 || num == 7 || num == 8;
        fields++;
    }
    return essential;
}

bool onnx_file_looks_like_model(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) return false;
    uint8_t buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    return onnx_looks_like_model(buf, n);
}

/* ---- reading elements ---- */

typedef struct {
    KilnTensor *out;
    int32_t dt;
    int64_t n;
    bool bad; /* a uint64 above INT64_MAX */
} Store;

/* Stores one element given as the bits of its typed field. */
static void store_typed(void *ctx, uint64_t bits) {
    Store *s = ctx;
    double v;
    int64_t iv = 0;
    bool is_int = true;
    switch (s->dt) {
    case ONNX_FLOAT: {
        float f;
        uint32_t b = (uint32_t)bits;
        memcpy(&f, &b, 4);
        v = f, is_int = false;
        break;
    }
    case ONNX_DOUBLE: memcpy(&v, &bits, 8), is_int = false; break;
    case ONNX_FLOAT16: v = kiln_f16_to_f32((uint16_t)bits), is_int = false; break;
    case ONNX_BFLOAT16: v = kiln_bf16_to_f32((uint16_t)bits), is_int = false; break;
    case ONNX_UINT8: iv = (uint8_t)bits; break;
    case ONNX_INT8: iv = (int8_t)(uint8_t)bits; break;
    case ONNX_UINT16: iv = (uint16_t)bits; break;
    case ONNX_INT16: iv = (int16_t)(uint16_t)bits; break;
    case ONNX_INT32: iv = (int32_t)(uint32_t)bits; break;
    case ONNX_BOOL: iv = bits != 0; break;
    case ONNX_UINT32: iv = (uint32_t)bits; break;
    case ONNX_UINT64:
        if (bits > INT64_MAX) s->bad = true;
        iv = (int64_t)bits;
        break;
    default: iv = (int64_t)bits; break; /* int64 */
    }
    int64_t i = s->n++;
    if (is_int && s->out->dtype == KILN_I64)
        ((int64_t *)s->out->data)[i] = iv;
    else if (is_int && s->out->dtype == KILN_I32 && iv >= INT32_MIN && iv <= INT32_MAX)
        ((int32_t *)s->out->data)[i] = (int32_t)iv;
    else
        kiln_tensor_set(s->out, i, is_int ? (double)iv : v);
}

/* The bits of element i of a raw (little-endian, packed) buffer, in the
 * layout of its typed field (f16 and bf16 as their 16 bits). */
static uint64_t raw_bits(const OnnxTensor *t, int64_t i) {
    int size = dtypes[t->data_type].size;
    return load_le(t->raw.data + (size_t)i * (size_t)size, size);
}

bool onnx_tensor_read(const OnnxTensor *t, KilnDType as, KilnTensor *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    KilnDType holder;
    if (!onnx_dtype_widened(t->data_type, &holder)) {
        snprintf(err, errlen, "tensor '%s' has dtype %s, which kiln cannot read", t->name,
                 onnx_dtype_name(t->data_type));
        return false;
    }
    if (!kiln_tensor_init(out, as, t->rank, t->dims)) {
        snprintf(err, errlen, "out of host memory for tensor '%s' (%lld elements)", t->name,
                 (long long)t->numel);
        return false;
    }
    KilnDType exact;
    if (t->kind == ONNX_DATA_RAW && onnx_dtype_to_kiln(t->data_type, &exact) && exact == as) {
        memcpy(out->data, t->raw.data, t->raw.len); /* the common case: one copy, no conversion */
        return true;
    }
    Store s = {out, t->data_type, 0, false};
    if (t->kind == ONNX_DATA_RAW) {
        for (int64_t i = 0; i < t->numel; i++) store_typed(&s, raw_bits(t, i));
    } else if (t->kind == ONNX_DATA_TYPED) {
        Reader r = {"", t->message.data, NULL, NULL, 0};
        Msg m = {t->message.data, t->message.data + t->message.len, "TensorProto"};
        Field f;
        while (next_field(&r, &m, &f) > 0)
            if ((int)f.num == dtypes[t->data_type].field)
                each_repeated(&f, dtypes[t->data_type].field_elem, store_typed, &s);
    }
    if (s.bad) {
        kiln_tensor_free(out);
        snprintf(err, errlen, "tensor '%s': a uint64 value does not fit int64", t->name);
        return false;
    }
    return true;
}

bool kiln_onnx_tensor_read_mem(const uint8_t *data, size_t len, KilnTensor *out, char *err, size_t errlen) {
    Arena *a = arena_new();
    OnnxTensor t;
    KilnDType dt;
    bool ok = onnx_tensor_parse(data, len, a, &t, err, errlen);
    if (ok && !onnx_dtype_to_kiln(t.data_type, &dt)) {
        snprintf(err, errlen,
                 "the tensor has dtype %s, which kiln does not have (kiln has f32, f16, bf16, f64, i32, "
                 "i64, bool)",
                 onnx_dtype_name(t.data_type));
        ok = false;
    }
    ok = ok && onnx_tensor_read(&t, dt, out, err, errlen);
    arena_free(a);
    return ok;
}

bool kiln_onnx_tensor_read_file(const char *path, KilnTensor *out, char *err, size_t errlen) {
    OnnxMapping *mp;
    char e[512];
    if (!map_file(path, &mp, err, errlen)) return false;
    bool ok = kiln_onnx_tensor_read_mem(mp->data ? mp->data : (const uint8_t *)"", mp->len, out, e, sizeof e);
    if (!ok) snprintf(err, errlen, "%s: %s", path, e);
    unmap_all(mp);
    return ok;
}
