/* test_onnx_reader.c - the ONNX protobuf reader (onnx/reader.c).
 *
 * Checks, on messages built here byte by byte with a tiny protobuf encoder:
 * tensors with raw_data, packed and unpacked typed fields, every dtype kiln
 * reads (and the widened small integers), external data beside the model;
 * models with nodes, attributes of each kind and value infos with dim_param;
 * recognition of a model by its content; and refusals of malformed input
 * (each with a message naming what is wrong).  Then, when Debian's
 * libonnx-testdata is installed, every node-test model opens and every
 * TensorProto file of kiln's dtypes reads; and the fuzzer's seeds and
 * regression inputs replay without a crash.
 * Prints "test_onnx_reader: N passed, N failed" last.
 */
#include "onnx/onnx.h"

#include <dirent.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

/* A refusal whose message contains `want`. */
#define CHECK_ERR(ok, err, want)                                                                             \
    do {                                                                                                     \
        if (!(ok) && strstr((err), (want))) {                                                                \
            npass++;                                                                                         \
        } else {                                                                                             \
            nfail++;                                                                                         \
            fprintf(stderr, "%s:%d: expected a refusal containing '%s', got %s: %s\n", __FILE__, __LINE__,   \
                    (want), (ok) ? "success" : "error", (err));                                              \
        }                                                                                                    \
    } while (0)

/* ---- a protobuf encoder for building test messages ---- */

typedef struct {
    uint8_t *data;
    size_t len, cap;
} Buf;

static void put(Buf *b, const void *p, size_t n) {
    if (b->len + n > b->cap) {
        b->cap = (b->len + n) * 2 + 16;
        b->data = realloc(b->data, b->cap);
    }
    memcpy(b->data + b->len, p, n);
    b->len += n;
}

static void varint(Buf *b, uint64_t v) {
    do {
        uint8_t byte = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v) byte |= 0x80;
        put(b, &byte, 1);
    } while (v);
}

static void key(Buf *b, int field, int wire) { varint(b, (uint64_t)field << 3 | (unsigned)wire); }
static void f_varint(Buf *b, int field, int64_t v) { key(b, field, 0), varint(b, (uint64_t)v); }
static void f_bytes(Buf *b, int field, const void *p, size_t n) {
    key(b, field, 2), varint(b, n), put(b, p, n);
}
static void f_str(Buf *b, int field, const char *s) { f_bytes(b, field, s, strlen(s)); }
static void f_msg(Buf *b, int field, Buf *sub) {
    f_bytes(b, field, sub->data, sub->len), free(sub->data), *sub = (Buf){0};
}
static void f_float(Buf *b, int field, float f) {
    key(b, field, 5);
    put(b, &f, 4);
}

static void packed_i64(Buf *b, int field, const int64_t *v, int n) {
    Buf p = {0};
    for (int i = 0; i < n; i++) varint(&p, (uint64_t)v[i]);
    f_msg(b, field, &p);
}

/* A float tensor named `name` with dims, its values given three ways. */
typedef enum { ENC_RAW, ENC_PACKED, ENC_UNPACKED } Encoding;
static Buf float_tensor(const char *name, const int64_t *dims, int rank, const float *v, int n,
                        Encoding enc) {
    Buf t = {0};
    if (rank == 2) {
        f_varint(&t, 1, dims[0]); /* dims unpacked */
        f_varint(&t, 1, dims[1]);
    } else {
        packed_i64(&t, 1, dims, rank);
    }
    f_varint(&t, 2, ONNX_FLOAT);
    f_str(&t, 8, name);
    if (enc == ENC_RAW)
        f_bytes(&t, 9, v, sizeof(float) * (size_t)n);
    else if (enc == ENC_PACKED)
        f_bytes(&t, 4, v, sizeof(float) * (size_t)n);
    else
        for (int i = 0; i < n; i++) f_float(&t, 4, v[i]);
    return t;
}

static bool read_tensor(const Buf *b, KilnDType as, KilnTensor *out, char *err, size_t errlen) {
    Arena *a = arena_new();
    OnnxTensor t;
    bool ok =
        onnx_tensor_parse(b->data, b->len, a, &t, err, errlen) && onnx_tensor_read(&t, as, out, err, errlen);
    arena_free(a);
    return ok;
}

static void test_float_encodings(void) {
    static const float v[6] = {1.5f, -2, 0, 3.25f, 1e-30f, -7};
    static const int64_t dims[2] = {2, 3}, flat[1] = {6};
    for (int enc = ENC_RAW; enc <= ENC_UNPACKED; enc++) {
        for (int r = 1; r <= 2; r++) {
            Buf b = float_tensor("w", r == 2 ? dims : flat, r, v, 6, (Encoding)enc);
            KilnTensor t;
            char err[256] = "";
            bool ok = read_tensor(&b, KILN_F32, &t, err, sizeof err);
            ASSERT(ok);
            if (ok) {
                ASSERT(t.rank == r && t.shape[0] == (r == 2 ? 2 : 6));
                ASSERT(memcmp(t.data, v, sizeof v) == 0);
                kiln_tensor_free(&t);
            }
            /* the same elements converted on reading */
            ok = read_tensor(&b, KILN_F64, &t, err, sizeof err);
            ASSERT(ok && ((double *)t.data)[3] == 3.25 && ((double *)t.data)[5] == -7);
            if (ok) kiln_tensor_free(&t);
            free(b.data);
        }
    }
}

/* int32_data carries int8/uint8/int16/uint16/bool/f16/bf16 as varints
 * (negatives sign-extended to 64 bits); int64_data int64; uint64_data uint32
 * and uint64; double_data double. */
static void test_typed_dtypes(void) {
    struct {
        int32_t dt;
        int field;
        int64_t stored[3];
        KilnDType as;
        double want[3];
    } cases[] = {
        {ONNX_INT8, 5, {-5, 127, -128}, KILN_I32, {-5, 127, -128}},
        {ONNX_UINT8, 5, {0, 200, 255}, KILN_I32, {0, 200, 255}},
        {ONNX_INT16, 5, {-30000, 1, 2}, KILN_I32, {-30000, 1, 2}},
        {ONNX_INT32, 5, {-2147483647 - 1, 7, -1}, KILN_I32, {-2147483648.0, 7, -1}},
        {ONNX_INT64, 7, {-1, INT64_C(1) << 40, 3}, KILN_I64, {-1, 1099511627776.0, 3}},
        {ONNX_BOOL, 5, {1, 0, 1}, KILN_BOOL, {1, 0, 1}},
        {ONNX_FLOAT16, 5, {0x3c00, 0xc000, 0x3800}, KILN_F16, {1, -2, 0.5}},
        {ONNX_BFLOAT16, 5, {0x3f80, 0xc040, 0x0000}, KILN_BF16, {1, -3, 0}},
        {ONNX_UINT32, 11, {4000000000, 1, 0}, KILN_I64, {4000000000.0, 1, 0}},
        {ONNX_UINT64, 11, {5, 6, 7}, KILN_I64, {5, 6, 7}},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        Buf b = {0};
        f_varint(&b, 1, 3);
        f_varint(&b, 2, cases[c].dt);
        packed_i64(&b, cases[c].field, cases[c].stored, 3);
        KilnTensor t;
        char err[256] = "";
        KilnDType widened;
        ASSERT(onnx_dtype_widened(cases[c].dt, &widened) && widened == cases[c].as);
        bool ok = read_tensor(&b, cases[c].as, &t, err, sizeof err);
        ASSERT(ok);
        for (int i = 0; ok && i < 3; i++) {
            if (kiln_tensor_get(&t, i) != cases[c].want[i]) {
                nfail++;
                fprintf(stderr, "dtype %s element %d: %g, expected %g\n", onnx_dtype_name(cases[c].dt), i,
                        kiln_tensor_get(&t, i), cases[c].want[i]);
            } else {
                npass++;
            }
        }
        if (ok) kiln_tensor_free(&t);
        /* the public .pb entry refuses dtypes kiln lacks instead of widening them */
        ok = kiln_onnx_tensor_read_mem(b.data, b.len, &t, err, sizeof err);
        KilnDType exact;
        if (onnx_dtype_to_kiln(cases[c].dt, &exact))
            ASSERT(ok && t.dtype == exact);
        else
            CHECK_ERR(ok, err, "which kiln does not have");
        if (ok) kiln_tensor_free(&t);
        free(b.data);
    }
    /* doubles, packed fixed64 */
    Buf b = {0};
    double d[2] = {0.1, -1e300};
    f_varint(&b, 1, 2);
    f_varint(&b, 2, ONNX_DOUBLE);
    f_bytes(&b, 10, d, sizeof d);
    KilnTensor t;
    char err[256];
    ASSERT(kiln_onnx_tensor_read_mem(b.data, b.len, &t, err, sizeof err) && t.dtype == KILN_F64 &&
           memcmp(t.data, d, sizeof d) == 0);
    kiln_tensor_free(&t);
    free(b.data);
    /* a uint64 beyond int64 is refused rather than wrapped */
    b = (Buf){0};
    f_varint(&b, 1, 1);
    f_varint(&b, 2, ONNX_UINT64);
    f_varint(&b, 11, -1);
    CHECK_ERR(read_tensor(&b, KILN_I64, &t, err, sizeof err), err, "does not fit int64");
    free(b.data);
    /* a scalar (no dims) and an empty tensor */
    b = (Buf){0};
    f_varint(&b, 2, ONNX_INT64);
    f_varint(&b, 7, 42);
    ASSERT(kiln_onnx_tensor_read_mem(b.data, b.len, &t, err, sizeof err) && t.rank == 0 &&
           ((int64_t *)t.data)[0] == 42);
    kiln_tensor_free(&t);
    free(b.data);
    b = (Buf){0};
    f_varint(&b, 1, 0);
    f_varint(&b, 1, 4);
    f_varint(&b, 2, ONNX_FLOAT);
    ASSERT(kiln_onnx_tensor_read_mem(b.data, b.len, &t, err, sizeof err) && t.rank == 2 && t.shape[1] == 4);
    kiln_tensor_free(&t);
    free(b.data);
}

/* Malformed tensors: each refused, with a message that says why. */
static void test_bad_tensors(void) {
    char err[512];
    KilnTensor t;
    struct {
        const char *what;
        uint8_t bytes[24];
        size_t len;
        const char *want;
    } raw_cases[] = {
        {"truncated key", {0x80}, 1, "key is longer than 64 bits or runs past"},
        {"varint past end", {0x08, 0xff}, 2, "varint is longer than 64 bits or runs past"},
        {"11-byte varint",
         {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f},
         11,
         "varint is longer than 64 bits or runs past"},
        {"length past end", {0x4a, 0x10, 1, 2}, 4, "runs past the end of the message"},
        {"group wire type", {0x0b}, 1, "wire type 3"},
        {"field zero", {0x00, 0x01}, 2, "invalid field number"},
        {"name as varint", {0x40, 0x01}, 2, "TensorProto.name (field 8) has wire type 0"},
        {"fixed32 cut", {0x25, 1, 2}, 3, "4-byte value runs past"},
    };
    for (size_t i = 0; i < sizeof raw_cases / sizeof raw_cases[0]; i++) {
        bool ok = kiln_onnx_tensor_read_mem(raw_cases[i].bytes, raw_cases[i].len, &t, err, sizeof err);
        if (ok) kiln_tensor_free(&t);
        CHECK_ERR(ok, err, raw_cases[i].want);
    }
    Buf b = {0};
    /* negative dim */
    f_varint(&b, 1, -3);
    f_varint(&b, 2, ONNX_FLOAT);
    CHECK_ERR(kiln_onnx_tensor_read_mem(b.data, b.len, &t, err, sizeof err), err, "negative");
    free(b.data), b = (Buf){0};
    /* raw_data of the wrong size */
    f_varint(&b, 1, 3);
    f_varint(&b, 2, ONNX_FLOAT);
    f_bytes(&b, 9, "12345678", 8);
    CHECK_ERR(kiln_onnx_tensor_read_mem(b.data, b.len, &t, err, sizeof err), err, "raw_data holds 8 bytes");
    free(b.data), b = (Buf){0};
    /* typed values of the wrong count */
    int64_t v[2] = {1, 2};
    f_varint(&b, 1, 3);
    f_varint(&b, 2, ONNX_INT64);
    packed_i64(&b, 7, v, 2);
    CHECK_ERR(kiln_onnx_tensor_read_mem(b.data, b.len, &t, err, sizeof err), err, "holds 2 values");
    free(b.data), b = (Buf){0};
    /* dims whose product overflows int64 */
    for (int i = 0; i < 3; i++) f_varint(&b, 1, INT64_C(1) << 40);
    f_varint(&b, 2, ONNX_FLOAT);
    CHECK_ERR(kiln_onnx_tensor_read_mem(b.data, b.len, &t, err, sizeof err), err, "overflows");
    free(b.data), b = (Buf){0};
    /* a huge claimed shape with no data is refused before any allocation */
    f_varint(&b, 1, INT64_C(1) << 40);
    f_varint(&b, 2, ONNX_FLOAT);
    CHECK_ERR(kiln_onnx_tensor_read_mem(b.data, b.len, &t, err, sizeof err), err, "no data for");
    free(b.data), b = (Buf){0};
    /* packed floats whose length is not a multiple of 4 */
    f_varint(&b, 1, 1);
    f_varint(&b, 2, ONNX_FLOAT);
    f_bytes(&b, 4, "abcde", 5);
    CHECK_ERR(kiln_onnx_tensor_read_mem(b.data, b.len, &t, err, sizeof err), err, "not a multiple of 4");
    free(b.data), b = (Buf){0};
    /* a packed varint cut short */
    f_varint(&b, 1, 1);
    f_varint(&b, 2, ONNX_INT64);
    f_bytes(&b, 7, "\x81", 1);
    CHECK_ERR(kiln_onnx_tensor_read_mem(b.data, b.len, &t, err, sizeof err), err, "cut short");
    free(b.data), b = (Buf){0};
    /* strings are not a kiln dtype */
    f_varint(&b, 1, 1);
    f_varint(&b, 2, ONNX_STRING);
    f_str(&b, 6, "hello");
    CHECK_ERR(kiln_onnx_tensor_read_mem(b.data, b.len, &t, err, sizeof err), err, "string");
    free(b.data), b = (Buf){0};
    /* a NUL inside a name */
    f_bytes(&b, 8, "a\0b", 3);
    CHECK_ERR(kiln_onnx_tensor_read_mem(b.data, b.len, &t, err, sizeof err), err, "NUL byte");
    free(b.data);
}

/* A small model: Relu(x) + w, with attributes of each kind on a Conv-like node. */
static Buf small_model(bool with_external, const char *location) {
    Buf g = {0}, n = {0}, a = {0}, vi = {0}, ty = {0}, tt = {0}, sh = {0}, d = {0};
    /* node 0: Relu */
    f_str(&n, 1, "x");
    f_str(&n, 2, "r");
    f_str(&n, 3, "relu0");
    f_str(&n, 4, "Relu");
    f_msg(&g, 1, &n);
    /* node 1: Add with attributes */
    f_str(&n, 1, "r");
    f_str(&n, 1, "w");
    f_str(&n, 2, "y");
    f_str(&n, 4, "Add");
    f_str(&a, 1, "ints_packed");
    f_varint(&a, 20, ONNX_ATTR_INTS);
    int64_t ints[3] = {1, -2, 3};
    packed_i64(&a, 8, ints, 3);
    f_msg(&n, 5, &a);
    f_str(&a, 1, "ints_unpacked");
    f_varint(&a, 20, ONNX_ATTR_INTS);
    for (int i = 0; i < 3; i++) f_varint(&a, 8, ints[i]);
    f_msg(&n, 5, &a);
    f_str(&a, 1, "alpha");
    f_varint(&a, 20, ONNX_ATTR_FLOAT);
    f_float(&a, 2, 0.25f);
    f_msg(&n, 5, &a);
    f_str(&a, 1, "mode");
    f_varint(&a, 20, ONNX_ATTR_STRING);
    f_str(&a, 4, "constant");
    f_msg(&n, 5, &a);
    f_str(&a, 1, "scales");
    f_varint(&a, 20, ONNX_ATTR_FLOATS);
    float fl[2] = {2, 0.5f};
    f_bytes(&a, 7, fl, sizeof fl);
    f_msg(&n, 5, &a);
    f_msg(&g, 1, &n);
    f_str(&g, 2, "tiny");
    /* initializer w: [3] floats, inline or external */
    float w[3] = {1, 2, 3};
    int64_t wd[1] = {3};
    Buf init = {0};
    if (!with_external) {
        init = float_tensor("w", wd, 1, w, 3, ENC_RAW);
    } else {
        packed_i64(&init, 1, wd, 1);
        f_varint(&init, 2, ONNX_FLOAT);
        f_str(&init, 8, "w");
        Buf e = {0};
        f_str(&e, 1, "location");
        f_str(&e, 2, location);
        f_msg(&init, 13, &e);
        f_str(&e, 1, "offset");
        f_str(&e, 2, "4");
        f_msg(&init, 13, &e);
        f_str(&e, 1, "length");
        f_str(&e, 2, "12");
        f_msg(&init, 13, &e);
        f_varint(&init, 14, 1);
    }
    f_msg(&g, 5, &init);
    /* input x: float[N, 3] with N symbolic */
    f_str(&d, 2, "N");
    f_msg(&sh, 1, &d);
    f_varint(&d, 1, 3);
    f_msg(&sh, 1, &d);
    f_varint(&tt, 1, ONNX_FLOAT);
    f_msg(&tt, 2, &sh);
    f_msg(&ty, 1, &tt);
    f_str(&vi, 1, "x");
    f_msg(&vi, 2, &ty);
    f_msg(&g, 11, &vi);
    f_str(&vi, 1, "y");
    f_msg(&g, 12, &vi);
    Buf m = {0}, op = {0};
    f_varint(&m, 1, 8);
    f_str(&m, 2, "kiln-test");
    f_msg(&m, 7, &g);
    f_str(&op, 1, "");
    f_varint(&op, 2, 17);
    f_msg(&m, 8, &op);
    return m;
}

static void check_small_model(const OnnxModel *m) {
    ASSERT(m->ir_version == 8 && strcmp(m->producer_name, "kiln-test") == 0);
    ASSERT(m->nopsets == 1 && m->opsets[0].version == 17 && strcmp(m->opsets[0].domain, "") == 0);
    const OnnxGraph *g = &m->graph;
    ASSERT(strcmp(g->name, "tiny") == 0 && g->nnodes == 2 && g->ninitializers == 1);
    ASSERT(strcmp(g->nodes[0].op_type, "Relu") == 0 && strcmp(g->nodes[0].name, "relu0") == 0);
    const OnnxNode *add = &g->nodes[1];
    ASSERT(add->ninputs == 2 && strcmp(add->inputs[1], "w") == 0 && add->noutputs == 1 && add->nattrs == 5);
    if (add->nattrs == 5) {
        ASSERT(add->attrs[0].nints == 3 && add->attrs[0].ints[1] == -2);
        ASSERT(add->attrs[1].nints == 3 && add->attrs[1].ints[2] == 3);
        ASSERT(add->attrs[2].type == ONNX_ATTR_FLOAT && add->attrs[2].f == 0.25f);
        ASSERT(add->attrs[3].s.len == 8 && memcmp(add->attrs[3].s.data, "constant", 8) == 0);
        ASSERT(add->attrs[4].nfloats == 2 && add->attrs[4].floats[1] == 0.5f);
    }
    ASSERT(g->ninputs == 1 && g->inputs[0].kind == ONNX_TYPE_TENSOR && g->inputs[0].elem_type == ONNX_FLOAT);
    ASSERT(g->inputs[0].rank == 2 && g->inputs[0].dims[0].param &&
           strcmp(g->inputs[0].dims[0].param, "N") == 0 && g->inputs[0].dims[1].value == 3 &&
           !g->inputs[0].dims[1].param);
    ASSERT(g->noutputs == 1 && !g->outputs[0].has_shape);
    KilnTensor t;
    char err[256];
    bool ok = onnx_tensor_read(&g->initializers[0], KILN_F32, &t, err, sizeof err);
    ASSERT(ok && ((float *)t.data)[2] == 3);
    if (ok) kiln_tensor_free(&t);
}

static void write_bytes(const char *path, const void *p, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return;
    fwrite(p, 1, n, f);
    fclose(f);
}

static void test_models(void) {
    Buf m = small_model(false, NULL);
    Arena *a = arena_new();
    OnnxModel model;
    char err[512] = "";
    bool ok = onnx_model_parse(m.data, m.len, a, &model, err, sizeof err);
    ASSERT(ok);
    if (ok) check_small_model(&model);
    onnx_model_close(&model);
    ASSERT(onnx_looks_like_model(m.data, m.len));
    ASSERT(onnx_looks_like_model(m.data, 20)); /* a prefix is enough */
    /* every truncation of the model is refused cleanly */
    int refused = 0;
    for (size_t n = 0; n < m.len; n++) {
        OnnxModel cut;
        if (!onnx_model_parse(m.data, n, a, &cut, err, sizeof err))
            refused++;
        else
            onnx_model_close(&cut);
    }
    ASSERT(refused > 0);
    free(m.data);
    arena_free(a);

    /* external data beside the model */
    char dir[] = "/tmp/kiln-onnx-XXXXXX";
    ASSERT(mkdtemp(dir) != NULL);
    char path[256], data_path[256];
    snprintf(path, sizeof path, "%s/m.onnx", dir);
    snprintf(data_path, sizeof data_path, "%s/w.bin", dir);
    float payload[4] = {9, 1, 2, 3}; /* offset 4: skip the first float */
    write_bytes(data_path, payload, sizeof payload);
    m = small_model(true, "w.bin");
    write_bytes(path, m.data, m.len);
    free(m.data);
    a = arena_new();
    ok = onnx_model_open(path, a, &model, err, sizeof err);
    ASSERT(ok);
    if (ok) check_small_model(&model);
    onnx_model_close(&model);
    ASSERT(onnx_file_looks_like_model(path));
    /* the same model read from memory cannot reach its external file */
    m = small_model(true, "w.bin");
    CHECK_ERR(onnx_model_parse(m.data, m.len, a, &model, err, sizeof err), err, "external file");
    free(m.data);
    /* locations outside the model's folder, missing files, short files */
    const char *bad_locations[][2] = {{"../w.bin", "relative path inside"},
                                      {"/etc/passwd", "relative path inside"},
                                      {"sub/../../w.bin", "relative path inside"},
                                      {"missing.bin", "cannot open"}};
    for (size_t i = 0; i < sizeof bad_locations / sizeof bad_locations[0]; i++) {
        m = small_model(true, bad_locations[i][0]);
        write_bytes(path, m.data, m.len);
        free(m.data);
        CHECK_ERR(onnx_model_open(path, a, &model, err, sizeof err), err, bad_locations[i][1]);
    }
    write_bytes(data_path, payload, 8);
    m = small_model(true, "w.bin");
    write_bytes(path, m.data, m.len);
    free(m.data);
    CHECK_ERR(onnx_model_open(path, a, &model, err, sizeof err), err, "does not hold 3 float elements");
    /* not a model */
    write_bytes(path, "graph f(x: f32[2]) -> f32[2] { return x }\n", 43);
    ASSERT(!onnx_file_looks_like_model(path));
    CHECK_ERR(onnx_model_open(path, a, &model, err, sizeof err), err, "m.onnx");
    write_bytes(path, "", 0);
    ASSERT(!onnx_file_looks_like_model(path));
    CHECK_ERR(onnx_model_open(path, a, &model, err, sizeof err), err, "no graph");
    CHECK_ERR(onnx_model_open(dir, a, &model, err, sizeof err), err, "not a regular file");
    unlink(path);
    unlink(data_path);
    rmdir(dir);
    arena_free(a);
}

/* Every node-test model of Debian's libonnx-testdata opens; every TensorProto
 * file of a kiln dtype reads and has as many elements as its dims say. */
static void test_onnx_suite(void) {
    const char *root = "/usr/share/libonnx-testdata/data/node";
    DIR *d = opendir(root);
    if (!d) {
        printf("test_onnx_reader: %s not installed; suite part skipped\n", root);
        return;
    }
    int models = 0, tensors = 0, bad = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s/model.onnx", root, e->d_name);
        Arena *a = arena_new();
        OnnxModel m;
        char err[512];
        if (onnx_model_open(path, a, &m, err, sizeof err)) {
            models++;
            onnx_model_close(&m);
        } else {
            bad++;
            fprintf(stderr, "%s\n", err);
        }
        arena_free(a);
        for (int i = 0; i < 8; i++) {
            snprintf(path, sizeof path, "%s/%s/test_data_set_0/input_%d.pb", root, e->d_name, i);
            uint8_t *buf = NULL;
            FILE *f = fopen(path, "rb");
            if (!f) break;
            fseek(f, 0, SEEK_END);
            long n = ftell(f);
            fseek(f, 0, SEEK_SET);
            buf = malloc((size_t)n + 1);
            size_t got = fread(buf, 1, (size_t)n, f);
            fclose(f);
            Arena *ta = arena_new();
            OnnxTensor t;
            KilnDType dt;
            if (onnx_tensor_parse(buf, got, ta, &t, err, sizeof err) &&
                onnx_dtype_to_kiln(t.data_type, &dt)) {
                KilnTensor kt;
                if (kiln_onnx_tensor_read_file(path, &kt, err, sizeof err) &&
                    kiln_tensor_numel(&kt) == t.numel) {
                    tensors++;
                    kiln_tensor_free(&kt);
                } else {
                    bad++;
                    fprintf(stderr, "%s: %s\n", path, err);
                }
            }
            arena_free(ta);
            free(buf);
        }
    }
    closedir(d);
    printf("test_onnx_reader: %d suite models opened, %d tensors read\n", models, tensors);
    ASSERT(bad == 0 && models >= 900 && tensors >= 1500);
}

/* The fuzzer's seeds and the inputs that once crashed it: no crash. */
static void replay_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    int n = 0;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        FILE *f = fopen(path, "rb");
        if (!f) continue;
        uint8_t buf[65536];
        size_t len = fread(buf, 1, sizeof buf, f);
        fclose(f);
        Arena *a = arena_new();
        OnnxModel m;
        char err[256];
        if (onnx_model_parse(buf, len, a, &m, err, sizeof err)) onnx_model_close(&m);
        arena_free(a);
        KilnTensor t;
        if (kiln_onnx_tensor_read_mem(buf, len, &t, err, sizeof err)) kiln_tensor_free(&t);
        n++;
    }
    closedir(d);
    ASSERT(n > 0);
}

int main(void) {
    test_float_encodings();
    test_typed_dtypes();
    test_bad_tensors();
    test_models();
    test_onnx_suite();
    replay_dir("tests/fuzz/corpus_onnx");
    replay_dir("tests/fuzz/regress_onnx");
    printf("test_onnx_reader: %d passed, %d failed\n", npass, nfail);
    return nfail != 0;
}
