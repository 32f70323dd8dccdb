/* test_tensorio.c - tensors, dtypes, half-precision conversions, and the
 * .npy and safetensors readers and writers.
 *
 * Checks: round trips of every dtype through both formats; f16/bf16 rounding
 * cases; malformed files (built in memory, each refused with a message that
 * says what is wrong); replay of the fuzzers' seed and crash files; and, when
 * /usr/bin/python3 has NumPy, files exchanged with NumPy in both directions.
 * Prints "test_tensorio: N passed, N failed" last; exits non-zero on failure.
 */
#include "kiln.h"

#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "check.h"

/* Like CHECK for two integers, printing both values (in hex: bit patterns). */
#define CHECK_EQ_HEX(expected, actual)                                                                       \
    do {                                                                                                     \
        unsigned long long e_ = (expected), a_ = (actual);                                                   \
        if (e_ == a_) {                                                                                      \
            npass++;                                                                                         \
        } else {                                                                                             \
            nfail++;                                                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (0x%llx vs 0x%llx)\n", __FILE__, __LINE__,        \
                    #expected, #actual, e_, a_);                                                             \
        }                                                                                                    \
    } while (0)

typedef struct {
    uint8_t *data;
    size_t len;
} Bytes;

static float bits_to_float(uint32_t x) {
    float f;
    memcpy(&f, &x, sizeof f);
    return f;
}

static uint32_t float_to_bits(float f) {
    uint32_t x;
    memcpy(&x, &f, sizeof x);
    return x;
}

/* ---- dtypes and tensors ---- */

static void test_dtypes(void) {
    static const char *names[] = {"f32", "f16", "bf16", "f64", "i32", "i64", "bool"};
    static const size_t sizes[] = {4, 2, 2, 8, 4, 8, 1};
    for (int dt = 0; dt < KILN_NUM_DTYPES; dt++) {
        KilnDType back;
        ASSERT(strcmp(kiln_dtype_name((KilnDType)dt), names[dt]) == 0);
        ASSERT(kiln_dtype_size((KilnDType)dt) == sizes[dt]);
        ASSERT(kiln_dtype_from_name(names[dt], &back) && back == (KilnDType)dt);
    }
    KilnDType unused;
    ASSERT(!kiln_dtype_from_name("f8", &unused));
    ASSERT(!kiln_dtype_from_name("", &unused));

    KilnTensor t;
    int64_t shape[] = {2, 3, 4};
    ASSERT(kiln_tensor_init(&t, KILN_I64, 3, shape));
    ASSERT(kiln_tensor_numel(&t) == 24 && t.rank == 3 && t.shape[2] == 4);
    ASSERT(((int64_t *)t.data)[23] == 0);
    kiln_tensor_free(&t);
    ASSERT(t.data == NULL && t.shape == NULL);
    ASSERT(kiln_tensor_init(&t, KILN_F32, 0, NULL) && kiln_tensor_numel(&t) == 1 && t.data);
    kiln_tensor_free(&t);
    int64_t empty[] = {4, 0};
    ASSERT(kiln_tensor_init(&t, KILN_F32, 2, empty) && kiln_tensor_numel(&t) == 0 && t.data);
    kiln_tensor_free(&t);
    /* Every tensor's data starts on a cache line (kernels read graph inputs
     * in place), is zeroed, and is all usable, whatever its size. */
    static const int64_t odd_counts[] = {0, 1, 3, 5, 13, 17, 63, 65, 1001, 3 * 56 * 56 + 1};
    for (int dt = 0; dt < KILN_NUM_DTYPES; dt++) {
        for (size_t k = 0; k < sizeof odd_counts / sizeof *odd_counts; k++) {
            int64_t n = odd_counts[k];
            ASSERT(kiln_tensor_init(&t, (KilnDType)dt, 1, &n));
            size_t bytes = (size_t)n * kiln_dtype_size((KilnDType)dt);
            CHECK((uintptr_t)t.data % 64 == 0, "%s[%lld]: data at %p, not 64-byte aligned",
                  kiln_dtype_name((KilnDType)dt), (long long)n, t.data);
            const unsigned char *b = t.data;
            bool zero = true;
            for (size_t i = 0; i < bytes; i++) zero = zero && b[i] == 0;
            CHECK(zero, "%s[%lld]: data not zeroed", kiln_dtype_name((KilnDType)dt), (long long)n);
            if (bytes > 0) memset(t.data, 0xa5, bytes);
            kiln_tensor_free(&t);
        }
    }
    int64_t negative[] = {-1}, huge[] = {INT64_MAX, 4};
    ASSERT(!kiln_tensor_init(&t, KILN_F32, 1, negative));
    ASSERT(!kiln_tensor_init(&t, KILN_F32, 2, huge));
}

/* ---- half precision ---- */

static void test_f16(void) {
    CHECK_EQ_HEX(0x3c00, kiln_f32_to_f16(1.0f));
    CHECK_EQ_HEX(0xc000, kiln_f32_to_f16(-2.0f));
    CHECK_EQ_HEX(0x0000, kiln_f32_to_f16(0.0f));
    CHECK_EQ_HEX(0x8000, kiln_f32_to_f16(-0.0f));
    CHECK_EQ_HEX(0x7bff, kiln_f32_to_f16(65504.0f));  /* largest finite */
    CHECK_EQ_HEX(0x7bff, kiln_f32_to_f16(65519.0f));  /* just under the tie: down */
    CHECK_EQ_HEX(0x7c00, kiln_f32_to_f16(65520.0f));  /* the tie rounds to even: inf */
    CHECK_EQ_HEX(0x7c00, kiln_f32_to_f16(1e10f));     /* overflow */
    CHECK_EQ_HEX(0xfc00, kiln_f32_to_f16(-1e10f));
    CHECK_EQ_HEX(0x7c00, kiln_f32_to_f16(INFINITY));
    CHECK_EQ_HEX(0xfc00, kiln_f32_to_f16(-INFINITY));
    /* Ties to even: 1 + 2^-11 lies halfway between 1 and 1 + 2^-10. */
    CHECK_EQ_HEX(0x3c00, kiln_f32_to_f16(1.0f + 0x1p-11f));
    CHECK_EQ_HEX(0x3c02, kiln_f32_to_f16(1.0f + 3 * 0x1p-11f));
    CHECK_EQ_HEX(0x3c01, kiln_f32_to_f16(1.0f + 0x1p-11f + 0x1p-20f));
    CHECK_EQ_HEX(0x3c00, kiln_f32_to_f16(1.0f + 0x1p-11f - 0x1p-20f));
    /* Subnormals: the smallest is 2^-24. */
    CHECK_EQ_HEX(0x0001, kiln_f32_to_f16(0x1p-24f));
    CHECK_EQ_HEX(0x0000, kiln_f32_to_f16(0x1p-25f));           /* tie between 0 and 1: 0 */
    CHECK_EQ_HEX(0x0001, kiln_f32_to_f16(0x1.000002p-25f));    /* just above the tie */
    CHECK_EQ_HEX(0x0002, kiln_f32_to_f16(3 * 0x1p-25f));       /* tie between 1 and 2: 2 */
    CHECK_EQ_HEX(0x03ff, kiln_f32_to_f16(1023 * 0x1p-24f));    /* largest subnormal */
    CHECK_EQ_HEX(0x0400, kiln_f32_to_f16(1023.5f * 0x1p-24f)); /* rounds up into the normals */
    CHECK_EQ_HEX(0x0400, kiln_f32_to_f16(0x1p-14f));           /* smallest normal */
    CHECK_EQ_HEX(0x8001, kiln_f32_to_f16(-0x1p-24f));
    CHECK_EQ_HEX(0x0000, kiln_f32_to_f16(1e-30f));
    CHECK_EQ_HEX(0x0000, kiln_f32_to_f16(bits_to_float(0x00000001))); /* f32 subnormal */
    /* NaN stays NaN (quiet), whatever its payload; never becomes inf. */
    uint16_t nan_h = kiln_f32_to_f16(NAN);
    ASSERT((nan_h & 0x7c00) == 0x7c00 && (nan_h & 0x3ff) != 0);
    nan_h = kiln_f32_to_f16(bits_to_float(0x7f800001)); /* signalling, payload only in low bits */
    ASSERT((nan_h & 0x7c00) == 0x7c00 && (nan_h & 0x3ff) != 0);
    ASSERT(isnan(kiln_f16_to_f32(0x7e00)) && isnan(kiln_f16_to_f32(0xfc01)));

    ASSERT(kiln_f16_to_f32(0x0001) == 0x1p-24f);
    ASSERT(kiln_f16_to_f32(0x03ff) == 1023 * 0x1p-24f);
    ASSERT(kiln_f16_to_f32(0x7bff) == 65504.0f);
    ASSERT(kiln_f16_to_f32(0xfc00) == -INFINITY);
    ASSERT(float_to_bits(kiln_f16_to_f32(0x8000)) == 0x80000000u);

    /* Every f16 survives f16 -> f32 -> f16 unchanged (NaNs stay NaN). */
    int round_trip_failures = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        float f = kiln_f16_to_f32((uint16_t)h);
        uint16_t back = kiln_f32_to_f16(f);
        bool is_nan = (h & 0x7c00) == 0x7c00 && (h & 0x3ff);
        if (is_nan ? !isnan(f) || (back & 0x7fff) <= 0x7c00 : back != h) round_trip_failures++;
    }
    ASSERT(round_trip_failures == 0);

#ifdef __FLT16_MAX__
    /* The compiler's own conversion (round to nearest even) as a reference,
     * over a sweep of f32 bit patterns. */
    int mismatches = 0;
    for (uint64_t x = 0; x <= 0xffffffffu; x += 251) {
        float f = bits_to_float((uint32_t)x);
        _Float16 ref = (_Float16)f;
        uint16_t ref_bits;
        memcpy(&ref_bits, &ref, sizeof ref_bits);
        uint16_t ours = kiln_f32_to_f16(f);
        if (isnan(f) ? (ours & 0x7fff) <= 0x7c00 : ours != ref_bits) mismatches++;
    }
    ASSERT(mismatches == 0);
#endif
}

static void test_bf16(void) {
    CHECK_EQ_HEX(0x3f80, kiln_f32_to_bf16(1.0f));
    CHECK_EQ_HEX(0xbf80, kiln_f32_to_bf16(-1.0f));
    CHECK_EQ_HEX(0x3f80, kiln_f32_to_bf16(bits_to_float(0x3f808000))); /* tie: to even (down) */
    CHECK_EQ_HEX(0x3f82, kiln_f32_to_bf16(bits_to_float(0x3f818000))); /* tie: to even (up) */
    CHECK_EQ_HEX(0x3f81, kiln_f32_to_bf16(bits_to_float(0x3f808001)));
    CHECK_EQ_HEX(0x3f80, kiln_f32_to_bf16(bits_to_float(0x3f807fff)));
    CHECK_EQ_HEX(0x7f80, kiln_f32_to_bf16(bits_to_float(0x7f7fffff))); /* overflow to inf */
    CHECK_EQ_HEX(0xff80, kiln_f32_to_bf16(bits_to_float(0xff7fffff)));
    CHECK_EQ_HEX(0x7f7f, kiln_f32_to_bf16(bits_to_float(0x7f7f7fff)));
    CHECK_EQ_HEX(0x7f80, kiln_f32_to_bf16(INFINITY));
    CHECK_EQ_HEX(0x0000, kiln_f32_to_bf16(bits_to_float(0x00008000))); /* subnormal tie */
    CHECK_EQ_HEX(0x0002, kiln_f32_to_bf16(bits_to_float(0x00018000)));
    CHECK_EQ_HEX(0x0001, kiln_f32_to_bf16(bits_to_float(0x00008001)));
    CHECK_EQ_HEX(0x0080, kiln_f32_to_bf16(bits_to_float(0x007fffff))); /* into the normals */
    uint16_t nan_b = kiln_f32_to_bf16(bits_to_float(0x7f800001));      /* payload below bf16's bits */
    ASSERT((nan_b & 0x7f80) == 0x7f80 && (nan_b & 0x7f) != 0);
    nan_b = kiln_f32_to_bf16(bits_to_float(0xffffffff));
    ASSERT((nan_b & 0x7f80) == 0x7f80 && (nan_b & 0x7f) != 0 && (nan_b & 0x8000));
    ASSERT(float_to_bits(kiln_bf16_to_f32(0x3f81)) == 0x3f810000u);
    ASSERT(isnan(kiln_bf16_to_f32(0x7fc0)));
    int round_trip_failures = 0;
    for (uint32_t h = 0; h < 0x10000; h++) {
        bool is_nan = (h & 0x7f80) == 0x7f80 && (h & 0x7f);
        if (!is_nan && kiln_f32_to_bf16(kiln_bf16_to_f32((uint16_t)h)) != h) round_trip_failures++;
    }
    ASSERT(round_trip_failures == 0);
}

/* ---- test data ---- */

/* Element i of the pattern each round trip writes; the NumPy script below
 * computes the same values. */
static void fill_pattern(KilnTensor *t) {
    int64_t n = kiln_tensor_numel(t);
    for (int64_t i = 0; i < n; i++) {
        switch (t->dtype) {
        case KILN_F32: ((float *)t->data)[i] = (float)i * 0.5f - 3; break;
        case KILN_F16: ((uint16_t *)t->data)[i] = kiln_f32_to_f16((float)i * 0.25f - 1); break;
        case KILN_BF16: ((uint16_t *)t->data)[i] = kiln_f32_to_bf16((float)i * 0.5f - 3); break;
        case KILN_F64: ((double *)t->data)[i] = (double)i * 0.125 - 2; break;
        case KILN_I32: ((int32_t *)t->data)[i] = (int32_t)i * 7 - 100; break;
        case KILN_I64: ((int64_t *)t->data)[i] = i * 3000000000LL - 5; break;
        case KILN_BOOL: ((uint8_t *)t->data)[i] = i % 3 == 0; break;
        default: break;
        }
    }
}

/* Shapes every round trip covers: a scalar, 1-D, 2-D, an empty 3-D, and a
 * rank-15 one whose header only fits 64 bytes when numpy's spare spaces
 * (room for the first dimension to grow) are left out. */
static const struct {
    const char *tag;
    int rank;
    int64_t dims[15];
} test_shapes[] = {{"s0", 0, {0}},
                   {"s1", 1, {5}},
                   {"s2", 2, {3, 4}},
                   {"s3", 3, {2, 0, 3}},
                   {"s4", 15, {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1}}};
enum { NUM_TEST_SHAPES = sizeof test_shapes / sizeof test_shapes[0] };

static bool same_shape(const KilnTensor *a, const KilnTensor *b) {
    if (a->rank != b->rank)
        return false;
    for (int i = 0; i < a->rank; i++)
        if (a->shape[i] != b->shape[i])
            return false;
    return true;
}

/* The tensor read back equals the one written; bf16 comes back from .npy as f32. */
static bool same_tensor(const KilnTensor *written, const KilnTensor *read) {
    if (!same_shape(written, read))
        return false;
    int64_t n = kiln_tensor_numel(written);
    if (written->dtype == KILN_BF16 && read->dtype == KILN_F32) {
        for (int64_t i = 0; i < n; i++)
            if (kiln_bf16_to_f32(((uint16_t *)written->data)[i]) != ((float *)read->data)[i])
                return false;
        return true;
    }
    return written->dtype == read->dtype &&
           memcmp(written->data, read->data, (size_t)n * kiln_dtype_size(read->dtype)) == 0;
}

static Bytes read_bytes(const char *path) {
    Bytes b = {NULL, 0};
    FILE *f = fopen(path, "rb");
    if (!f)
        return b;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    b.data = malloc(size > 0 ? (size_t)size : 1);
    if (b.data)
        b.len = fread(b.data, 1, (size_t)size, f);
    fclose(f);
    return b;
}

static char *path_in(const char *dir, const char *name) {
    size_t n = strlen(dir) + strlen(name) + 2;
    char *p = malloc(n);
    snprintf(p, n, "%s/%s", dir, name);
    return p;
}

/* ---- round trips ---- */

static void test_npy_round_trips(const char *dir) {
    char err[256];
    for (int dt = 0; dt < KILN_NUM_DTYPES; dt++) {
        for (int s = 0; s < NUM_TEST_SHAPES; s++) {
            KilnTensor t, back;
            char name[64];
            snprintf(name, sizeof name, "k_%s_%s.npy", kiln_dtype_name((KilnDType)dt), test_shapes[s].tag);
            char *path = path_in(dir, name);
            ASSERT(kiln_tensor_init(&t, (KilnDType)dt, test_shapes[s].rank, test_shapes[s].dims));
            fill_pattern(&t);
            bool wrote = kiln_npy_write(path, &t, err, sizeof err);
            if (!wrote) fprintf(stderr, "  %s\n", err);
            ASSERT(wrote);
            ASSERT(kiln_npy_read(path, &back, err, sizeof err) && same_tensor(&t, &back));
            ASSERT((uintptr_t)back.data % 64 == 0); /* kiln run reads it in place */
            kiln_tensor_free(&back);

            Bytes file = read_bytes(path);
            /* The data starts on a 64-byte boundary, and the _mem reader agrees. */
            size_t data_bytes =
                (size_t)kiln_tensor_numel(&t) * (dt == KILN_BF16 ? 4 : kiln_dtype_size((KilnDType)dt));
            ASSERT(file.len >= data_bytes && (file.len - data_bytes) % 64 == 0);
            ASSERT(file.len > 8 && file.data[6] == 1 && file.data[7] == 0);
            ASSERT(kiln_npy_read_mem(file.data, file.len, &back, err, sizeof err) && same_tensor(&t, &back));
            kiln_tensor_free(&back);
            free(file.data);
            kiln_tensor_free(&t);
            free(path);
        }
    }

    /* A header longer than a u16 can count is written as version 2.0. */
    int rank = 30000;
    int64_t *ones = malloc(sizeof *ones * (size_t)rank);
    for (int i = 0; i < rank; i++) ones[i] = 1;
    KilnTensor t, back;
    char *path = path_in(dir, "k_rank30000.npy");
    ASSERT(kiln_tensor_init(&t, KILN_I32, rank, ones));
    ((int32_t *)t.data)[0] = 42;
    ASSERT(kiln_npy_write(path, &t, err, sizeof err));
    Bytes file = read_bytes(path);
    ASSERT(file.len > 12 && file.data[6] == 2 && (file.len - 4) % 64 == 0);
    ASSERT(kiln_npy_read(path, &back, err, sizeof err) && same_tensor(&t, &back));
    kiln_tensor_free(&back);
    kiln_tensor_free(&t);
    free(file.data);
    free(ones);
    free(path);

    /* File-level errors name the file. */
    path = path_in(dir, "no/such/dir/x.npy");
    ASSERT(!kiln_npy_read(path, &back, err, sizeof err) && strstr(err, path) && strstr(err, "cannot open"));
    int64_t two[] = {2};
    ASSERT(kiln_tensor_init(&t, KILN_F32, 1, two));
    ASSERT(!kiln_npy_write(path, &t, err, sizeof err) && strstr(err, path));
    kiln_tensor_free(&t);
    free(path);
}

static void test_safetensors_round_trips(const char *dir) {
    char err[256];
    /* Every dtype in every test shape, under names that need JSON escapes. */
    int count = KILN_NUM_DTYPES * NUM_TEST_SHAPES;
    KilnTensorList list = {count, calloc((size_t)count, sizeof(char *)),
                           calloc((size_t)count, sizeof(KilnTensor))};
    for (int i = 0; i < count; i++) {
        KilnDType dt = (KilnDType)(i / NUM_TEST_SHAPES);
        int s = i % NUM_TEST_SHAPES;
        list.names[i] = malloc(64);
        snprintf(list.names[i], 64, "%s.%s%s", kiln_dtype_name(dt), test_shapes[s].tag,
                 i == 1 ? " \"quoted\\\" \t\xc3\xb1" : "");
        ASSERT(kiln_tensor_init(&list.tensors[i], dt, test_shapes[s].rank, test_shapes[s].dims));
        fill_pattern(&list.tensors[i]);
    }
    char *path = path_in(dir, "k_all.safetensors");
    ASSERT(kiln_safetensors_write(path, &list, err, sizeof err));
    KilnTensorList back;
    bool ok = kiln_safetensors_read(path, &back, err, sizeof err);
    if (!ok) fprintf(stderr, "  %s\n", err);
    ASSERT(ok && back.count == count);
    for (int i = 0; ok && i < count && i < back.count; i++) {
        ASSERT(strcmp(back.names[i], list.names[i]) == 0);
        ASSERT(same_tensor(&list.tensors[i], &back.tensors[i]));
        ASSERT((uintptr_t)back.tensors[i].data % 64 == 0); /* copied out of the file onto a cache line */
    }
    kiln_tensor_list_free(&back);
    Bytes file = read_bytes(path);
    uint64_t header_len = 0;
    for (int i = 7; file.len >= 8 && i >= 0; i--) header_len = header_len << 8 | file.data[i];
    ASSERT(header_len % 8 == 0 && header_len < file.len);
    ASSERT(kiln_safetensors_read_mem(file.data, file.len, &back, err, sizeof err) && back.count == count);
    kiln_tensor_list_free(&back);
    free(file.data);
    free(path);

    /* Duplicate names and the reserved __metadata__ cannot be written. */
    char *saved = list.names[1];
    list.names[1] = list.names[0];
    path = path_in(dir, "k_dup.safetensors");
    ASSERT(!kiln_safetensors_write(path, &list, err, sizeof err) && strstr(err, "duplicate"));
    list.names[1] = "__metadata__";
    ASSERT(!kiln_safetensors_write(path, &list, err, sizeof err) && strstr(err, "bad name"));
    list.names[1] = saved;
    free(path);
    kiln_tensor_list_free(&list);

    /* An empty list is a valid file: "{}" and no data. */
    KilnTensorList empty = {0, NULL, NULL};
    path = path_in(dir, "k_empty.safetensors");
    ASSERT(kiln_safetensors_write(path, &empty, err, sizeof err));
    ASSERT(kiln_safetensors_read(path, &back, err, sizeof err) && back.count == 0);
    kiln_tensor_list_free(&back);
    free(path);
    path = path_in(dir, "missing.safetensors");
    ASSERT(!kiln_safetensors_read(path, &back, err, sizeof err) && strstr(err, path));
    free(path);
}

/* ---- malformed input ---- */

/* A .npy image: the preamble of version major.0, `header` (its length as
 * the header length), then data_len zero bytes.  An exact-size allocation,
 * so AddressSanitizer catches any read past the end. */
static Bytes npy_image(int major, const char *header, size_t data_len) {
    size_t preamble = major == 1 ? 10 : 12, hlen = strlen(header);
    Bytes b = {calloc(1, preamble + hlen + data_len), preamble + hlen + data_len};
    memcpy(b.data, "\x93NUMPY", 6);
    b.data[6] = (uint8_t)major;
    for (size_t i = 0; i < preamble - 8; i++)
        b.data[8 + i] = (uint8_t)(hlen >> (8 * i));
    memcpy(b.data + preamble, header, hlen);
    return b;
}

/* A safetensors image: the header length, the JSON, then data_len bytes. */
static Bytes st_image(const char *json, size_t data_len) {
    size_t hlen = strlen(json);
    Bytes b = {calloc(1, 8 + hlen + data_len), 8 + hlen + data_len};
    for (int i = 0; i < 8; i++)
        b.data[i] = (uint8_t)((uint64_t)hlen >> (8 * i));
    memcpy(b.data + 8, json, hlen);
    return b;
}

/* The reader refuses the image (which it frees) with a message containing phrase. */
static void expect_refused(bool safetensors, Bytes b, const char *phrase, int line) {
    char err[256] = "";
    KilnTensor t;
    KilnTensorList list;
    bool ok = safetensors ? kiln_safetensors_read_mem(b.data, b.len, &list, err, sizeof err)
                          : kiln_npy_read_mem(b.data, b.len, &t, err, sizeof err);
    if (!ok && strstr(err, phrase)) {
        npass++;
    } else {
        nfail++;
        fprintf(stderr, "%s:%d: expected refusal mentioning \"%s\", got %s: \"%s\"\n", __FILE__, line, phrase,
                ok ? "success" : "another error", err);
    }
    if (ok && safetensors)
        kiln_tensor_list_free(&list);
    else if (ok)
        kiln_tensor_free(&t);
    free(b.data);
}
#define NPY_REFUSED(bytes, phrase) expect_refused(false, bytes, phrase, __LINE__)
#define ST_REFUSED(bytes, phrase) expect_refused(true, bytes, phrase, __LINE__)

/* A header of '<f4' data in C order with the given shape text. */
#define F4_HEADER(shape) "{'descr': '<f4', 'fortran_order': False, 'shape': " shape ", }"

static void test_npy_malformed(void) {
    const char *good = F4_HEADER("(3, 4)");
    char err[256];
    KilnTensor t;
    /* The well-formed image reads, so each refusal below is down to its one change. */
    Bytes b = npy_image(1, good, 48);
    ASSERT(kiln_npy_read_mem(b.data, b.len, &t, err, sizeof err) && kiln_tensor_numel(&t) == 12);
    kiln_tensor_free(&t);
    free(b.data);

    NPY_REFUSED(((Bytes){NULL, 0}), "truncated");
    b = npy_image(1, good, 48);
    b.len = 9; /* ends inside the header length */
    NPY_REFUSED(b, "truncated");
    b = npy_image(1, good, 48);
    b.data[1] = 'X';
    NPY_REFUSED(b, "bad magic");
    b = npy_image(1, good, 48);
    b.data[7] = 1;
    NPY_REFUSED(b, "version 1.1");
    NPY_REFUSED(npy_image(4, good, 48), "version 4.0");
    b = npy_image(1, good, 48);
    b.data[9] = 0x40; /* the header length now reaches far past the file */
    NPY_REFUSED(b, "header length");
    b = npy_image(2, good, 0);
    b.data[11] = 0xff;
    NPY_REFUSED(b, "header length");
    NPY_REFUSED(npy_image(1, good, 40), "data is 40 bytes, shape (3, 4) of f32 needs 48");
    NPY_REFUSED(npy_image(1, good, 52), "data is 52 bytes, shape (3, 4) of f32 needs 48");
    NPY_REFUSED(npy_image(1, "hello", 0), "expected '{'");
    NPY_REFUSED(npy_image(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), ", 0),
                "malformed header");
    NPY_REFUSED(npy_image(1, "{'descr': '<f4' 'fortran_order': False}", 0), "malformed header");
    NPY_REFUSED(npy_image(1, "{'descr': '<f4', 'fortran_order': False}", 0),
                "missing the key 'shape'");
    NPY_REFUSED(npy_image(1, "{'fortran_order': False, 'shape': (2,)}", 8),
                "missing the key 'descr'");
    NPY_REFUSED(npy_image(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (), 'x': 1}", 4),
                "unknown key 'x'");
    NPY_REFUSED(npy_image(1, "{'descr': '<f4', 'descr': '<f4', 'fortran_order': False}", 4),
                "duplicate key 'descr'");
    NPY_REFUSED(npy_image(1, "{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", 16),
                "Fortran-order");
    NPY_REFUSED(npy_image(1, "{'descr': '<f4', 'fortran_order': 0, 'shape': (2, 2), }", 16),
                "must be True or False");
    NPY_REFUSED(npy_image(1, "{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8),
                "big-endian");
    NPY_REFUSED(npy_image(1, "{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", 16),
                "unsupported dtype '<c8'");
    NPY_REFUSED(npy_image(1, "{'descr': '|f4', 'fortran_order': False, 'shape': (2,), }", 8),
                "only valid for 1-byte");
    NPY_REFUSED(npy_image(1, "{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,)}",
                          8), "structured");
    NPY_REFUSED(npy_image(1, F4_HEADER("(-1, 4)"), 0), "negative dimension");
    NPY_REFUSED(npy_image(1, F4_HEADER("(99999999999999999999,)"), 0), "too large");
    NPY_REFUSED(npy_image(1, F4_HEADER("(4294967296, 4294967296)"), 0), "overflows");
    NPY_REFUSED(npy_image(1, F4_HEADER("(2, x)"), 0), "non-negative integer");
    NPY_REFUSED(npy_image(1, F4_HEADER("[2]"), 8), "expected '('");
    NPY_REFUSED(npy_image(1, F4_HEADER("(2)"), 8), "not a tuple");
    NPY_REFUSED(npy_image(1, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), } junk", 8),
                "after the closing");
    NPY_REFUSED(npy_image(1, "{'descr': '<f4\\', 'fortran_order': False, 'shape': (2,), }", 8),
                "quoted type string");

    /* Accepted variations: any key order, double quotes, Python 2 longs, 3.0. */
    b = npy_image(3, "{\"shape\": (2L, 1), 'descr': '|b1', 'fortran_order': False}\n", 2);
    ASSERT(kiln_npy_read_mem(b.data, b.len, &t, err, sizeof err) && t.dtype == KILN_BOOL && t.rank == 2 &&
           t.shape[0] == 2);
    kiln_tensor_free(&t);
    free(b.data);
}

static void test_safetensors_malformed(void) {
    const char *good = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                       "\"b\":{\"dtype\":\"I64\",\"shape\":[],\"data_offsets\":[8,16]},"
                       "\"__metadata__\":{\"format\":\"pt\"}}";
    char err[256];
    KilnTensorList list;
    Bytes b = st_image(good, 16);
    ASSERT(kiln_safetensors_read_mem(b.data, b.len, &list, err, sizeof err) && list.count == 2 &&
           strcmp(list.names[1], "b") == 0 && list.tensors[1].rank == 0);
    kiln_tensor_list_free(&list);
    free(b.data);

#define TENSOR(name, dtype, shape, offsets) \
    "\"" name "\":{\"dtype\":\"" dtype "\",\"shape\":" shape ",\"data_offsets\":" offsets "}"
    ST_REFUSED(((Bytes){NULL, 0}), "truncated");
    ST_REFUSED(((Bytes){(uint8_t *)calloc(1, 7), 7}), "truncated");
    b = st_image(good, 16);
    b.data[5] = 1;
    ST_REFUSED(b, "header length");
    b = st_image(good, 16);
    b.data[7] = 0x80; /* 2^63 */
    ST_REFUSED(b, "header length");
    ST_REFUSED(st_image("[]", 0), "invalid JSON");
    ST_REFUSED(st_image("{" TENSOR("a", "F32", "[2]", "[0,8]"), 8), "invalid JSON");
    ST_REFUSED(st_image("{" TENSOR("a", "F32", "[2]", "[0,8]") ",}", 8), "invalid JSON");
    ST_REFUSED(st_image("{\"a\" " TENSOR("", "F32", "[2]", "[0,8]") "}", 8), "invalid JSON");
    ST_REFUSED(st_image("{" TENSOR("a", "F7", "[2]", "[0,8]") "}", 8), "unsupported dtype 'F7'");
    ST_REFUSED(st_image("{" TENSOR("a", "U8", "[2]", "[0,2]") "}", 2), "unsupported dtype 'U8'");
    ST_REFUSED(st_image("{" TENSOR("a", "F32", "[2]", "[8,0]") "}", 8), "out of range");
    ST_REFUSED(st_image("{" TENSOR("a", "F32", "[2]", "[0,16]") "}", 8), "out of range");
    ST_REFUSED(st_image("{" TENSOR("a", "F32", "[2]", "[0]") "}", 8), "[begin, end]");
    ST_REFUSED(st_image("{" TENSOR("a", "F32", "[3]", "[0,8]") "}", 8),
               "shape (3,) of F32 needs 12 bytes, data_offsets [0, 8] give 8");
    ST_REFUSED(st_image("{" TENSOR("a", "F32", "[4294967296,4294967296]", "[0,8]") "}", 8),
               "overflows");
    ST_REFUSED(st_image("{" TENSOR("a", "F32", "[99999999999999999999]", "[0,8]") "}", 8),
               "too large");
    ST_REFUSED(st_image("{" TENSOR("a", "F32", "[-2]", "[0,8]") "}", 8), "non-negative integer");
    ST_REFUSED(st_image("{" TENSOR("a", "F32", "[2.0]", "[0,8]") "}", 8), "non-negative integer");
    ST_REFUSED(st_image("{" TENSOR("a", "F32", "[02]", "[0,8]") "}", 8), "non-negative integer");
    ST_REFUSED(st_image("{" TENSOR("a", "F32", "[2]", "[0,8]") "," TENSOR("b", "F32", "[2]",
                        "[4,12]") "}", 12), "overlaps");
    ST_REFUSED(st_image("{" TENSOR("a", "F32", "[2]", "[0,8]") "," TENSOR("b", "F32", "[2]",
                        "[12,20]") "}", 20), "hole");
    ST_REFUSED(st_image("{" TENSOR("a", "F32", "[2]", "[0,8]") "}", 12), "hole");
    ST_REFUSED(st_image("{" TENSOR("a", "F32", "[2]", "[0,8]") "," TENSOR("a", "F32", "[2]",
                        "[8,16]") "}", 16), "duplicate tensor name 'a'");
    ST_REFUSED(st_image("{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8), "has no 'shape'");
    ST_REFUSED(st_image("{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\"}}", 8), "duplicate 'dtype'");
    ST_REFUSED(st_image("{\"a\":{\"dtype\":\"F32\",\"color\":\"red\"}}", 8),
               "unknown field 'color'");
    ST_REFUSED(st_image("{\"__metadata__\":{\"n\":1}}", 0), "must be strings");
    ST_REFUSED(st_image("{\"__metadata__\":{},\"__metadata__\":{}}", 0), "duplicate __metadata__");
    ST_REFUSED(st_image("{" TENSOR("a\\q", "F32", "[2]", "[0,8]") "}", 8), "bad escape");
    ST_REFUSED(st_image("{" TENSOR("a\\u00", "F32", "[2]", "[0,8]") "}", 8), "bad escape");
    ST_REFUSED(st_image("{" TENSOR("a\\u0000", "F32", "[2]", "[0,8]") "}", 8), "\\u0000");
    ST_REFUSED(st_image("{" TENSOR("\\ud800x", "F32", "[2]", "[0,8]") "}", 8), "surrogate");
    ST_REFUSED(st_image("{" TENSOR("a\tb", "F32", "[2]", "[0,8]") "}", 8), "control character");
    ST_REFUSED(st_image("{" TENSOR("a", "F32", "[2]", "[0,8]") "} x", 8), "only spaces");
    ST_REFUSED(st_image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}", 8),
               "invalid JSON");
    ST_REFUSED(st_image("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}\"", 8),
               "only spaces");
    ST_REFUSED(st_image("{\"a", 0), "end of a string");

    /* Accepted: escapes decoded (\u00f1 and a surrogate pair), a zero-size
     * tensor between two others, whitespace padding. */
    b = st_image(" { " TENSOR("\\u00f1\\ud83d\\ude00\\n", "BOOL", "[2]", "[0,2]") ", " TENSOR(
                     "e", "F16", "[0,3]", "[2,2]") "," TENSOR("z", "BF16", "[1]", "[2,4]") " }   ",
                 4);
    ASSERT(kiln_safetensors_read_mem(b.data, b.len, &list, err, sizeof err) && list.count == 3 &&
           strcmp(list.names[0], "\xc3\xb1\xf0\x9f\x98\x80\n") == 0 &&
           kiln_tensor_numel(&list.tensors[1]) == 0);
    kiln_tensor_list_free(&list);
    free(b.data);
#undef TENSOR
}

/* ---- fuzz seeds and crash regressions ---- */

/* tests/fuzz/<name>, found from this source file's path (the tests run
 * from the repository root, where __FILE__ is relative to). */
static char *fuzz_dir(const char *name) {
    const char *file = __FILE__, *unit = strstr(file, "unit/test_tensorio.c");
    size_t stem = unit ? (size_t)(unit - file) : 0;
    size_t n = stem + strlen("fuzz/") + strlen(name) + 1;
    char *dir = malloc(n);
    snprintf(dir, n, "%.*sfuzz/%s", (int)stem, file, name);
    return dir;
}

/* Feeds every file in tests/fuzz/<name> to a reader; must_parse: each must
 * also be accepted (the seeds are valid files).  Returns the count, -1 if
 * the folder is absent. */
static int replay_dir(const char *name, bool safetensors, bool must_parse) {
    char *dir = fuzz_dir(name);
    DIR *d = opendir(dir);
    int count = d ? 0 : -1;
    struct dirent *entry;
    while (d && (entry = readdir(d))) {
        if (entry->d_name[0] == '.')
            continue;
        char *path = path_in(dir, entry->d_name);
        Bytes b = read_bytes(path);
        char err[256];
        KilnTensor t;
        KilnTensorList list;
        bool ok = safetensors ? kiln_safetensors_read_mem(b.data, b.len, &list, err, sizeof err)
                              : kiln_npy_read_mem(b.data, b.len, &t, err, sizeof err);
        if (must_parse && !ok) fprintf(stderr, "  %s: %s\n", path, err);
        ASSERT(ok || !must_parse);
        if (ok && safetensors)
            kiln_tensor_list_free(&list);
        else if (ok)
            kiln_tensor_free(&t);
        free(b.data);
        free(path);
        count++;
    }
    if (d)
        closedir(d);
    free(dir);
    return count;
}

static void test_fuzz_replays(void) {
    if (replay_dir("corpus_npy", false, true) < 0 ||
        replay_dir("corpus_safetensors", true, true) < 0)
        printf("test_tensorio: note: tests/fuzz corpus not found from here, replay skipped\n");
    /* Crash regressions need only not crash (or leak, under ASan). */
    replay_dir("regress_npy", false, false);
    replay_dir("regress_safetensors", true, false);
}

/* ---- interoperability with NumPy ---- */

/* Run with the temp dir and a mode: "write" makes files for kiln to read,
 * "check" verifies the files kiln wrote.  Exits non-zero on any mismatch. */
static const char *interop_script =
    "import sys, json, struct, numpy as np\n"
    "d, mode = sys.argv[1], sys.argv[2]\n"
    "shapes = {'s0': (), 's1': (5,), 's2': (3, 4), 's3': (2, 0, 3), 's4': (1,) * 15}\n"
    "def pattern(name, shape):\n"
    "    i = np.arange(int(np.prod(shape)), dtype=np.int64)\n"
    "    a = {'f32': (i * 0.5 - 3).astype('<f4'), 'f16': (i * 0.25 - 1).astype('<f2'),\n"
    "         'bf16': (i * 0.5 - 3).astype('<f4'), 'f64': (i * 0.125 - 2).astype('<f8'),\n"
    "         'i32': (i * 7 - 100).astype('<i4'), 'i64': i * 3000000000 - 5,\n"
    "         'bool': i % 3 == 0}[name]\n"
    "    return a.reshape(shape)\n"
    "bad = 0\n"
    "if mode == 'check':\n"
    "    for name in ['f32', 'f16', 'bf16', 'f64', 'i32', 'i64', 'bool']:\n"
    "        for tag, shape in shapes.items():\n"
    "            fn = '%s/k_%s_%s.npy' % (d, name, tag)\n"
    "            a, want = np.load(fn), pattern(name, shape)\n"
    "            if (a.dtype, a.shape) != (want.dtype, want.shape) or (a != want).any():\n"
    "                print('numpy reads', fn, 'as', a.dtype, a.shape, a); bad += 1\n"
    "            np.save(d + '/np_same.npy', want)\n"
    "            if open(fn, 'rb').read() != open(d + '/np_same.npy', 'rb').read():\n"
    "                print(fn, 'differs from numpy.save'); bad += 1\n"
    "    raw = open(d + '/k_all.safetensors', 'rb').read()\n"
    "    n = struct.unpack('<Q', raw[:8])[0]\n"
    "    h = json.loads(raw[8:8 + n])\n"
    "    if len(h) != 35 or 'f32.s1 \"quoted\\\\\" \\t\\u00f1' not in h:\n"
    "        print('safetensors header:', sorted(h)); bad += 1\n"
    "    t = h['f64.s2']\n"
    "    begin, end = t['data_offsets']\n"
    "    got = np.frombuffer(raw[8 + n + begin:8 + n + end], '<f8')\n"
    "    if not np.array_equal(got.reshape(t['shape']), pattern('f64', (3, 4))):\n"
    "        print('safetensors f64.s2 data', got); bad += 1\n"
    "else:\n"
    "    for name in ['f32', 'f16', 'f64', 'i32', 'i64', 'bool']:\n"
    "        for tag, shape in shapes.items():\n"
    "            for v in (1, 2, 3):\n"
    "                with open('%s/n_%s_%s_v%d.npy' % (d, name, tag, v), 'wb') as f:\n"
    "                    np.lib.format.write_array(f, pattern(name, shape), version=(v, 0))\n"
    "    a = np.arange(6, dtype='<f4').reshape(2, 3)\n"
    "    np.save(d + '/n_fortran.npy', np.asfortranarray(a))\n"
    "    np.save(d + '/n_big.npy', np.arange(4, dtype='>f4'))\n"
    "    h = json.dumps({'__metadata__': {'format': 'np'}, '\\u00f1': {'dtype': 'I32',\n"
    "                   'shape': [2], 'data_offsets': [0, 8]}}).encode()\n"
    "    open(d + '/n.safetensors', 'wb').write(struct.pack('<Q', len(h)) + h\n"
    "                                           + np.array([7, -7], '<i4').tobytes())\n"
    "sys.exit(1 if bad else 0)\n";

static bool run_python(const char *dir, const char *mode) {
    size_t n = strlen(dir) * 2 + 64;
    char *cmd = malloc(n);
    snprintf(cmd, n, "/usr/bin/python3 %s/interop.py %s %s 2>&1", dir, dir, mode);
    FILE *p = popen(cmd, "r");
    char line[512];
    while (p && fgets(line, sizeof line, p))
        fprintf(stderr, "  python: %s", line);
    int status = p ? pclose(p) : -1;
    free(cmd);
    return status == 0;
}

static void test_numpy_interop(const char *dir) {
    if (system("/usr/bin/python3 -c 'import numpy' >/dev/null 2>&1") != 0) {
        printf("test_tensorio: note: /usr/bin/python3 has no numpy, interop skipped\n");
        return;
    }
    char *script = path_in(dir, "interop.py");
    FILE *f = fopen(script, "w");
    ASSERT(f && fputs(interop_script, f) >= 0);
    if (f) fclose(f);
    free(script);

    /* NumPy reads what kiln wrote (test_*_round_trips made the files), byte
     * for byte what numpy.save would have written. */
    ASSERT(run_python(dir, "check"));

    /* kiln reads what NumPy wrote, in all three versions. */
    if (!run_python(dir, "write")) {
        ASSERT(!"numpy could not write its files");
        return;
    }
    char err[256];
    for (int dt = 0; dt < KILN_NUM_DTYPES; dt++) {
        if (dt == KILN_BF16)
            continue;
        for (int s = 0; s < NUM_TEST_SHAPES; s++) {
            for (int version = 1; version <= 3; version++) {
                char name[64];
                snprintf(name, sizeof name, "n_%s_%s_v%d.npy", kiln_dtype_name((KilnDType)dt),
                         test_shapes[s].tag, version);
                char *path = path_in(dir, name);
                KilnTensor want, got;
                ASSERT(kiln_tensor_init(&want, (KilnDType)dt, test_shapes[s].rank, test_shapes[s].dims));
                fill_pattern(&want);
                bool ok = kiln_npy_read(path, &got, err, sizeof err);
                if (!ok) fprintf(stderr, "  %s\n", err);
                ASSERT(ok && same_tensor(&want, &got));
                kiln_tensor_free(&got);
                kiln_tensor_free(&want);
                free(path);
            }
        }
    }
    KilnTensor t;
    char *path = path_in(dir, "n_fortran.npy");
    ASSERT(!kiln_npy_read(path, &t, err, sizeof err) && strstr(err, "Fortran-order") && strstr(err, path));
    free(path);
    path = path_in(dir, "n_big.npy");
    ASSERT(!kiln_npy_read(path, &t, err, sizeof err) && strstr(err, "big-endian"));
    free(path);
    KilnTensorList list;
    path = path_in(dir, "n.safetensors");
    ASSERT(kiln_safetensors_read(path, &list, err, sizeof err) && list.count == 1 &&
           strcmp(list.names[0], "\xc3\xb1") == 0 && ((int32_t *)list.tensors[0].data)[1] == -7);
    kiln_tensor_list_free(&list);
    free(path);
}

static void remove_dir(const char *dir) {
    DIR *d = opendir(dir);
    struct dirent *entry;
    while (d && (entry = readdir(d))) {
        if (strcmp(entry->d_name, ".") == 0 || strcmp(entry->d_name, "..") == 0)
            continue;
        char *path = path_in(dir, entry->d_name);
        unlink(path);
        free(path);
    }
    if (d)
        closedir(d);
    rmdir(dir);
}

int main(void) {
    char dir[] = "/tmp/test_tensorio.XXXXXX";
    if (!mkdtemp(dir)) {
        perror("test_tensorio: mkdtemp");
        return 1;
    }
    test_dtypes();
    test_f16();
    test_bf16();
    test_npy_round_trips(dir);
    test_safetensors_round_trips(dir);
    test_npy_malformed();
    test_safetensors_malformed();
    test_fuzz_replays();
    test_numpy_interop(dir);
    remove_dir(dir);
    printf("test_tensorio: %d passed, %d failed\n", npass, nfail);
    return nfail ? 1 : 0;
}
