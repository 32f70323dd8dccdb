/* npy.c - NumPy .npy files: one dense tensor per file.
 *
 * Layout: "\x93NUMPY", major and minor version bytes, the header length
 * (u16 LE for 1.0, u32 LE for 2.0 and 3.0), then the header - a Python dict
 * literal such as {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), }
 * padded with spaces to a 64-byte boundary and ending in '\n' - then the raw
 * elements.  Read: versions 1.0-3.0, little-endian, C order, dtypes
 * f2 f4 f8 i4 i8 b1.  Write: 1.0 (2.0 if the header outgrows a u16), laid out
 * byte for byte as numpy.save does.  The input is untrusted: every length is
 * checked against the buffer before it is used.
 */
#include "runtime/tensorio.h"

#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char npy_magic[6] = "\x93NUMPY";

/* The NumPy type string of each dtype .npy can hold (bf16 has none). */
static const struct {
    KilnDType dtype;
    const char *descr;
} npy_types[] = {
    {KILN_F16, "<f2"}, {KILN_F32, "<f4"}, {KILN_F64, "<f8"},
    {KILN_I32, "<i4"}, {KILN_I64, "<i8"}, {KILN_BOOL, "|b1"},
};
enum { NUM_NPY_TYPES = sizeof npy_types / sizeof npy_types[0] };

/* ---- header parsing ---- */

typedef TextCursor Cursor;

typedef struct {
    KilnDType dtype;
    int rank;
    int64_t *shape; /* malloc'd, rank entries */
} NpyHeader;

static bool expect(Cursor *c, char ch, const char *where) {
    return tensorio_accept(c, ch) ||
           tensorio_text_error(c, "malformed header: expected '%c' %s (header byte %td)", ch, where,
                               c->p - c->start);
}

/* string := "'" chars "'" | '"' chars '"'.  NumPy never writes escapes, and
 * no valid key or dtype contains one, so a backslash is simply refused. */
static bool parse_string(Cursor *c, const char **s, size_t *n) {
    tensorio_skip_space(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return false;
    char quote = *c->p++;
    const char *begin = c->p;
    while (c->p < c->end && *c->p != quote && *c->p != '\\')
        c->p++;
    if (c->p >= c->end || *c->p != quote)
        return false;
    *s = begin;
    *n = (size_t)(c->p++ - begin);
    return true;
}

static bool text_is(const char *s, size_t n, const char *word) {
    return n == strlen(word) && memcmp(s, word, n) == 0;
}

/* 'descr': a type string such as '<f4'. */
static bool parse_descr(Cursor *c, NpyHeader *h) {
    const char *s;
    size_t n;
    if (!parse_string(c, &s, &n))
        return tensorio_text_error(c, "'descr' must be a quoted type string such as '<f4' "
                                      "(structured dtypes are not supported)");
    int shown = n > 32 ? 32 : (int)n;
    if (n >= 1 && s[0] == '>')
        return tensorio_text_error(c,
                                   "big-endian data ('%.*s') is not supported; "
                                   "save it little-endian (e.g. arr.astype('<f4'))",
                                   shown, s);
    for (int i = 0; i < NUM_NPY_TYPES; i++) {
        const char *d = npy_types[i].descr;
        if (n != 3 || memcmp(s + 1, d + 1, 2) != 0)
            continue;
        bool one_byte = kiln_dtype_size(npy_types[i].dtype) == 1;
        if (s[0] == '<' || (s[0] == '|' && one_byte)) {
            h->dtype = npy_types[i].dtype;
            return true;
        }
        if (s[0] == '|')
            return tensorio_text_error(c, "byte order '|' in '%.*s' is only valid for 1-byte types", shown,
                                       s);
    }
    return tensorio_text_error(c, "unsupported dtype '%.*s' (kiln reads <f2 <f4 <f8 <i4 <i8 |b1)", shown, s);
}

/* 'fortran_order': True | False; only False (C order) is supported. */
static bool parse_fortran_order(Cursor *c) {
    tensorio_skip_space(c);
    const char *word = c->p;
    while (c->p < c->end && ((*c->p >= 'A' && *c->p <= 'Z') || (*c->p >= 'a' && *c->p <= 'z')))
        c->p++;
    size_t n = (size_t)(c->p - word);
    if (text_is(word, n, "False"))
        return true;
    if (text_is(word, n, "True"))
        return tensorio_text_error(c, "Fortran-order (column-major) arrays are not supported; "
                                      "save a C-order copy (numpy.ascontiguousarray)");
    return tensorio_text_error(c, "'fortran_order' must be True or False");
}

/* dim := digits ['L'] -- a non-negative integer that fits an int64 (the 'L'
 * is how Python 2 wrote long integers). */
static bool parse_dim(Cursor *c, int64_t *dim) {
    tensorio_skip_space(c);
    if (c->p < c->end && *c->p == '-') return tensorio_text_error(c, "negative dimension in 'shape'");
    const char *digits = c->p;
    int64_t v = 0;
    for (; c->p < c->end && *c->p >= '0' && *c->p <= '9'; c->p++) {
        int d = *c->p - '0';
        if (v > (INT64_MAX - d) / 10) {
            while (c->p < c->end && *c->p >= '0' && *c->p <= '9')
                c->p++;
            return tensorio_text_error(c, "dimension %.*s in 'shape' is too large",
                                       (int)(c->p - digits > 40 ? 40 : c->p - digits), digits);
        }
        v = v * 10 + d;
    }
    if (c->p == digits)
        return tensorio_text_error(c,
                                   "malformed 'shape': expected a non-negative integer "
                                   "(header byte %td)",
                                   c->p - c->start);
    if (c->p < c->end && *c->p == 'L')
        c->p++;
    *dim = v;
    return true;
}

/* shape := '(' [dim (',' dim)* [',']] ')', as Python writes a tuple: a
 * one-element tuple needs its trailing comma, "(5)" is just the number 5. */
static bool parse_shape(Cursor *c, NpyHeader *h) {
    if (!expect(c, '(', "to open 'shape' (a tuple)"))
        return false;
    size_t cap = 0;
    bool trailing_comma = false;
    while (!tensorio_accept(c, ')')) {
        if (h->rank == INT_MAX) return tensorio_text_error(c, "'shape' has too many dimensions");
        if ((size_t)h->rank == cap) {
            cap = cap ? cap * 2 : 4;
            int64_t *bigger = realloc(h->shape, cap * sizeof *bigger);
            if (!bigger) return tensorio_text_error(c, "out of memory reading 'shape'");
            h->shape = bigger;
        }
        if (!parse_dim(c, &h->shape[h->rank]))
            return false;
        h->rank++;
        trailing_comma = tensorio_accept(c, ',');
        if (!trailing_comma && !expect(c, ')', "after a dimension in 'shape'"))
            return false;
        if (!trailing_comma)
            break;
    }
    if (h->rank == 1 && !trailing_comma)
        return tensorio_text_error(c, "'shape' (%lld) is not a tuple; a 1-D shape is written (%lld,)",
                                   (long long)h->shape[0], (long long)h->shape[0]);
    return true;
}

/* header := '{' [key ':' value (',' key ':' value)* [',']] '}' space*
 * with exactly the keys 'descr', 'fortran_order' and 'shape', in any order. */
static bool parse_header(Cursor *c, NpyHeader *h) {
    bool have_descr = false, have_order = false, have_shape = false;
    if (!expect(c, '{', "at the start of the header (a Python dict)"))
        return false;
    while (!tensorio_accept(c, '}')) {
        const char *key;
        size_t n;
        if (!parse_string(c, &key, &n))
            return tensorio_text_error(c, "malformed header: expected a quoted key (header byte %td)",
                                       c->p - c->start);
        bool *seen = text_is(key, n, "descr")           ? &have_descr
                     : text_is(key, n, "fortran_order") ? &have_order
                     : text_is(key, n, "shape")         ? &have_shape
                                                        : NULL;
        int shown = n > 40 ? 40 : (int)n;
        if (!seen) return tensorio_text_error(c, "unknown key '%.*s' in header", shown, key);
        if (*seen) return tensorio_text_error(c, "duplicate key '%.*s' in header", shown, key);
        *seen = true;
        if (!expect(c, ':', "after a key"))
            return false;
        bool ok = seen == &have_descr ? parse_descr(c, h)
                  : seen == &have_order ? parse_fortran_order(c)
                                        : parse_shape(c, h);
        if (!ok)
            return false;
        if (!tensorio_accept(c, ',')) {
            if (!expect(c, '}', "after a value"))
                return false;
            break;
        }
    }
    tensorio_skip_space(c);
    if (c->p != c->end)
        return tensorio_text_error(c, "malformed header: text after the closing '}' (header byte %td)",
                                   c->p - c->start);
    const char *missing = !have_descr ? "descr" : !have_order ? "fortran_order"
                        : !have_shape ? "shape" : NULL;
    if (missing) return tensorio_text_error(c, "header is missing the key '%s'", missing);
    return true;
}

/* ---- reading ---- */

bool kiln_npy_read_mem(const uint8_t *buf, size_t len, KilnTensor *out, char *err, size_t errlen) {
    memset(out, 0, sizeof *out);
    size_t magic_len = len < 6 ? len : 6;
    if (magic_len > 0 && memcmp(buf, npy_magic, magic_len) != 0)
        return tensorio_error(err, errlen, "bad magic: not a .npy file");
    int major = len > 6 ? buf[6] : 0, minor = len > 7 ? buf[7] : 0;
    size_t preamble = major == 1 ? 10 : 12; /* magic, version, header length */
    if (len < 8 || len < preamble)
        return tensorio_error(err, errlen, "truncated: %zu bytes end inside the .npy preamble",
                              len);
    if (major < 1 || major > 3 || minor != 0)
        return tensorio_error(err, errlen, "unsupported .npy version %d.%d (kiln reads 1.0, 2.0 "
                              "and 3.0)", major, minor);
    size_t header_len = major == 1 ? (size_t)buf[8] | (size_t)buf[9] << 8
                                   : (size_t)buf[8] | (size_t)buf[9] << 8 |
                                         (size_t)buf[10] << 16 | (size_t)buf[11] << 24;
    if (header_len > len - preamble)
        return tensorio_error(err, errlen,
                              "header length %zu runs past the end of the file "
                              "(%zu bytes follow the preamble)",
                              header_len, len - preamble);

    /* Version 3.0 headers are UTF-8, older ones latin-1; everything we accept
     * is ASCII, so the bytes are parsed as they are. */
    const char *text = (const char *)buf + preamble;
    Cursor c = {text, text, text + header_len, err, errlen};
    NpyHeader h = {0};
    bool ok = parse_header(&c, &h);

    const uint8_t *data = buf + preamble + header_len;
    size_t have = len - preamble - header_len, need = 0;
    char shape_text[96];
    if (ok)
        tensorio_format_shape(shape_text, sizeof shape_text, h.rank, h.shape);
    if (ok && !tensorio_shape_bytes(h.dtype, h.rank, h.shape, &need)) {
        tensorio_error(err, errlen, "shape %s of %s overflows: too many elements", shape_text,
                       kiln_dtype_name(h.dtype));
        ok = false;
    } else if (ok && have != need) {
        tensorio_error(err, errlen, "data is %zu bytes, shape %s of %s needs %zu", have,
                       shape_text, kiln_dtype_name(h.dtype), need);
        ok = false;
    } else if (ok && !kiln_tensor_init(out, h.dtype, h.rank, h.shape)) {
        tensorio_error(err, errlen, "out of memory for %zu bytes of data", need);
        ok = false;
    }
    if (ok && need)
        memcpy(out->data, data, need);
    free(h.shape);
    return ok;
}

bool kiln_npy_read(const char *path, KilnTensor *out, char *err, size_t errlen) {
    uint8_t *buf;
    size_t len;
    memset(out, 0, sizeof *out);
    if (!tensorio_read_file(path, &buf, &len, err, errlen))
        return false;
    bool ok = kiln_npy_read_mem(buf, len, out, err, errlen);
    if (!ok)
        tensorio_prefix_error(err, errlen, path);
    free(buf);
    return ok;
}

/* ---- writing ---- */

/* The header length numpy's _wrap_header gives a dict of n characters: 1 to 64
 * spaces and a '\n' are added so that the data starts on a 64-byte boundary. */
static size_t padded_header_len(size_t preamble, size_t n) {
    return n + 1 + (64 - (preamble + n + 1) % 64);
}

bool kiln_npy_write(const char *path, const KilnTensor *t, char *err, size_t errlen) {
    size_t bytes;
    if (!tensorio_shape_bytes(t->dtype, t->rank, t->shape, &bytes) || (bytes && !t->data)) {
        tensorio_error(err, errlen, "%s: cannot write: the tensor has an invalid dtype or shape",
                       path);
        return false;
    }
    /* NumPy has no bfloat16, so a bf16 tensor is written as f32; the
     * conversion is exact (every bf16 value is an f32 value). */
    KilnDType file_dtype = t->dtype == KILN_BF16 ? KILN_F32 : t->dtype;
    const char *descr = NULL;
    for (int i = 0; i < NUM_NPY_TYPES; i++)
        if (npy_types[i].dtype == file_dtype)
            descr = npy_types[i].descr;

    /* The dict as numpy.save writes it: keys sorted, a trailing ", ", and
     * spare spaces so the first dimension could grow to 21 digits in place. */
    size_t cap = 96 + 22 * (size_t)t->rank; /* a dimension is at most 19 digits and ", " */
    char *dict = malloc(cap);
    uint8_t *header = NULL;
    void *converted = NULL;
    bool ok = false;
    if (!dict)
        goto out_of_memory;
    size_t n =
        (size_t)snprintf(dict, cap, "{'descr': '%s', 'fortran_order': False, 'shape': ", descr);
    tensorio_format_shape(dict + n, cap - n, t->rank, t->shape);
    n += strlen(dict + n);
    int growth = t->rank > 0 ? 21 - snprintf(NULL, 0, "%lld", (long long)t->shape[0]) : 0;
    n += (size_t)snprintf(dict + n, cap - n, ", }%*s", growth, "");

    /* Version 1.0 stores the header length in a u16; a longer header needs 2.0. */
    size_t preamble = 10, padded = padded_header_len(preamble, n);
    if (padded > UINT16_MAX) {
        preamble = 12;
        padded = padded_header_len(preamble, n);
    }
    header = malloc(preamble + padded);
    if (!header)
        goto out_of_memory;
    memcpy(header, npy_magic, 6);
    header[6] = preamble == 10 ? 1 : 2;
    header[7] = 0;
    for (size_t i = 0; i < preamble - 8; i++)
        header[8 + i] = (uint8_t)(padded >> (8 * i));
    memcpy(header + preamble, dict, n);
    memset(header + preamble + n, ' ', padded - n - 1);
    header[preamble + padded - 1] = '\n';

    const void *data = t->data;
    size_t data_len = bytes;
    if (t->dtype == KILN_BF16) {
        size_t count = bytes / 2;
        float *f = malloc(count ? count * sizeof(float) : 1);
        if (!(converted = f))
            goto out_of_memory;
        for (size_t i = 0; i < count; i++)
            f[i] = kiln_bf16_to_f32(((const uint16_t *)t->data)[i]);
        data = f;
        data_len = count * sizeof(float);
    }
    const void *parts[2] = {header, data};
    size_t lens[2] = {preamble + padded, data_len};
    ok = tensorio_write_file(path, 2, parts, lens, err, errlen);
    goto done;

out_of_memory:
    tensorio_error(err, errlen, "%s: out of memory", path);
done:
    free(dict);
    free(header);
    free(converted);
    return ok;
}
