/* safetensors.c - the safetensors format: a named list of tensors in one file.
 *
 * Layout: a u64 LE header length N, N bytes of JSON header
 *   {"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
 *    "__metadata__": {"key": "value", ...}}
 * (padded with spaces), then the data buffer; offsets are relative to its
 * start.  As the format requires, the tensors must cover the buffer exactly:
 * no overlap, no hole, nothing after the last one.  The JSON parser is our
 * own and reads just this shape of document; the input is untrusted, so every
 * read is bounded by the header and every offset by the buffer.  Metadata is
 * checked (an object of strings) and dropped.
 */
#include "runtime/tensorio.h"

#include <ctype.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The safetensors spelling of each dtype, indexed by KilnDType. */
static const char *const st_dtype_names[KILN_NUM_DTYPES] = {
    [KILN_F32] = "F32", [KILN_F16] = "F16", [KILN_BF16] = "BF16", [KILN_F64] = "F64",
    [KILN_I32] = "I32", [KILN_I64] = "I64", [KILN_BOOL] = "BOOL",
};

/* ---- a JSON reader for the header ---- */

typedef TextCursor Json;

static bool syntax_error(Json *j, const char *expected) {
    return tensorio_text_error(j, "invalid JSON in header at byte %td: expected %s", j->p - j->start,
                               expected);
}

static bool expect(Json *j, char ch, const char *what) {
    return tensorio_accept(j, ch) || syntax_error(j, what);
}

/* The 4 hex digits at p (bounded by end) as a number, or -1. */
static long hex4(const char *p, const char *end) {
    long v = 0;
    for (int i = 0; i < 4; i++) {
        int c = p + i < end ? tolower((unsigned char)p[i]) : 0;
        if (!isxdigit(c))
            return -1;
        v = v * 16 + (isdigit(c) ? c - '0' : c - 'a' + 10);
    }
    return v;
}

static char *put_utf8(char *o, long cp) {
    static const unsigned char lead[] = {0x00, 0xc0, 0xe0, 0xf0};
    int extra = cp < 0x80 ? 0 : cp < 0x800 ? 1 : cp < 0x10000 ? 2 : 3; /* continuation bytes */
    *o++ = (char)(lead[extra] | cp >> (6 * extra));
    for (int i = extra - 1; i >= 0; i--)
        *o++ = (char)(0x80 | (cp >> (6 * i) & 0x3f));
    return o;
}

/* string := '"' (char | '\' escape)* '"', decoded into a malloc'd C string.
 * A \u0000 is refused: it would silently cut the C string short. */
static bool parse_string(Json *j, char **out) {
    static const char escape_names[] = "\"\\/bfnrt", escape_values[] = "\"\\/\b\f\n\r\t";
    *out = NULL;
    tensorio_skip_space(j);
    if (j->p >= j->end || *j->p != '"')
        return syntax_error(j, "a string");
    const char *p = j->p + 1, *close = p;
    while (close < j->end && *close != '"')
        close += *close == '\\' ? 2 : 1;
    if (close >= j->end)
        return syntax_error(j, "the end of a string");
    /* Decoding never lengthens: an escape is at least as long as its UTF-8. */
    char *s = malloc((size_t)(close - p) + 1), *o = s;
    if (!s) return tensorio_text_error(j, "out of memory reading the header");
    const char *problem = NULL;
    while (p < close && !problem) {
        unsigned char ch = (unsigned char)*p++;
        const char *named = *p ? strchr(escape_names, *p) : NULL;
        long cp, low;
        if (ch < 0x20) {
            problem = "a control character in a string";
        } else if (ch != '\\') {
            *o++ = (char)ch;
        } else if (named) { /* the scan above guarantees a character after '\' */
            *o++ = escape_values[named - escape_names];
            p++;
        } else if (*p != 'u' || (cp = hex4(p + 1, close)) < 0) {
            problem = "a bad escape in a string";
        } else {
            p += 5;
            if (cp >= 0xd800 && cp < 0xdc00) { /* a high surrogate pairs with a low one */
                bool paired = close - p >= 6 && p[0] == '\\' && p[1] == 'u' &&
                              (low = hex4(p + 2, close)) >= 0xdc00 && low < 0xe000;
                cp = paired ? 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00) : -1;
                p += paired ? 6 : 0;
            } else if (cp >= 0xdc00 && cp < 0xe000) {
                cp = -1;
            }
            if (cp <= 0)
                problem = cp == 0 ? "\\u0000 in a string" : "an unpaired surrogate in a string";
            else
                o = put_utf8(o, cp);
        }
    }
    if (problem) {
        free(s);
        return tensorio_text_error(j, "invalid JSON in header: %s", problem);
    }
    *o = '\0';
    j->p = close + 1;
    *out = s;
    return true;
}

/* A non-negative integer that fits an int64; JSON's signs, fractions,
 * exponents and leading zeros are refused. */
static bool parse_int(Json *j, int64_t *v) {
    tensorio_skip_space(j);
    const char *digits = j->p;
    *v = 0;
    for (; j->p < j->end && *j->p >= '0' && *j->p <= '9'; j->p++) {
        int d = *j->p - '0';
        if (*v > (INT64_MAX - d) / 10)
            return tensorio_text_error(j, "number too large in header at byte %td", digits - j->start);
        *v = *v * 10 + d;
    }
    bool bad = j->p == digits || (j->p - digits > 1 && *digits == '0') ||
               (j->p < j->end && (*j->p == '.' || *j->p == 'e' || *j->p == 'E'));
    if (bad)
        j->p = digits;
    return !bad || syntax_error(j, "a non-negative integer");
}

/* int_array := '[' [int (',' int)*] ']', into a malloc'd array (freed by the caller). */
static bool parse_int_array(Json *j, int64_t **vals, int *count) {
    int cap = 0;
    *vals = NULL;
    *count = 0;
    if (!expect(j, '[', "'[' to open an array"))
        return false;
    if (tensorio_accept(j, ']')) return true;
    do {
        if (*count == cap) {
            if (cap > INT_MAX / 2) return tensorio_text_error(j, "an array in the header is too long");
            cap = cap ? 2 * cap : 4;
            int64_t *bigger = realloc(*vals, sizeof **vals * (size_t)cap);
            if (!bigger) return tensorio_text_error(j, "out of memory reading the header");
            *vals = bigger;
        }
        if (!parse_int(j, &(*vals)[*count]))
            return false;
        ++*count;
    } while (tensorio_accept(j, ','));
    return expect(j, ']', "',' or ']' in an array");
}

/* metadata := '{' [string ':' string (',' ...)*] '}' -- checked, then dropped. */
static bool skip_metadata(Json *j) {
    if (!expect(j, '{', "'{' to open __metadata__"))
        return false;
    if (tensorio_accept(j, '}')) return true;
    do {
        char *key, *value;
        if (!parse_string(j, &key))
            return false;
        free(key);
        if (!expect(j, ':', "':' after a key"))
            return false;
        tensorio_skip_space(j);
        if (j->p < j->end && *j->p != '"')
            return tensorio_text_error(j, "__metadata__ values must be strings (header byte %td)",
                                       j->p - j->start);
        if (!parse_string(j, &value))
            return false;
        free(value);
    } while (tensorio_accept(j, ','));
    return expect(j, '}', "',' or '}' in __metadata__");
}

/* ---- reading ---- */

/* One tensor's entry as the header spells it. */
typedef struct {
    char *dtype;
    int64_t *shape, *offsets;
    int rank, noffsets; /* -1 while the field has not been seen */
} Entry;

static void entry_free(Entry *e) {
    free(e->dtype);
    free(e->shape);
    free(e->offsets);
}

/* entry := '{' [field (',' field)*] '}' with the fields "dtype": string,
 * "shape": int_array and "data_offsets": int_array, in any order. */
static bool parse_entry(Json *j, const char *name, Entry *e) {
    *e = (Entry){.rank = -1, .noffsets = -1};
    if (!expect(j, '{', "'{' to open a tensor entry"))
        return false;
    if (tensorio_accept(j, '}')) return true;
    do {
        char *key;
        if (!parse_string(j, &key))
            return false;
        bool is_dtype = strcmp(key, "dtype") == 0, is_shape = strcmp(key, "shape") == 0;
        int64_t **array = is_shape                              ? &e->shape
                          : strcmp(key, "data_offsets") == 0 ? &e->offsets
                                                             : NULL;
        int *count = is_shape ? &e->rank : &e->noffsets;
        bool ok;
        if (!is_dtype && !array)
            ok = tensorio_text_error(j, "tensor '%.64s' has an unknown field '%.32s'", name, key);
        else if (is_dtype ? e->dtype != NULL : *count >= 0)
            ok = tensorio_text_error(j, "tensor '%.64s' has a duplicate '%s'", name, key);
        else
            ok = expect(j, ':', "':' after a key") &&
                 (is_dtype ? parse_string(j, &e->dtype) : parse_int_array(j, array, count));
        free(key);
        if (!ok)
            return false;
    } while (tensorio_accept(j, ','));
    return expect(j, '}', "',' or '}' in a tensor entry");
}

/* Checks an entry against the data buffer and builds its tensor from it. */
static bool build_tensor(const char *name, const Entry *e, const uint8_t *data, size_t data_len, bool view,
                         KilnTensor *t, char *err, size_t errlen) {
    const char *missing = !e->dtype ? "dtype" : e->rank < 0 ? "shape"
                        : e->noffsets < 0 ? "data_offsets" : NULL;
    if (missing)
        return tensorio_error(err, errlen, "tensor '%.64s' has no '%s'", name, missing);
    KilnDType dt = KILN_NUM_DTYPES;
    for (int i = 0; i < KILN_NUM_DTYPES; i++)
        if (strcmp(e->dtype, st_dtype_names[i]) == 0)
            dt = (KilnDType)i;
    if (dt == KILN_NUM_DTYPES)
        return tensorio_error(err, errlen, "tensor '%.64s' has unsupported dtype '%.32s' "
                              "(kiln reads F16 BF16 F32 F64 I32 I64 BOOL)", name, e->dtype);
    if (e->noffsets != 2)
        return tensorio_error(err, errlen, "tensor '%.64s': data_offsets must be [begin, end]",
                              name);
    long long begin = e->offsets[0], end = e->offsets[1];
    if (end < begin || (uint64_t)end > data_len)
        return tensorio_error(err, errlen, "tensor '%.64s': data_offsets [%lld, %lld] out of "
                              "range (the data buffer is %zu bytes)", name, begin, end, data_len);
    size_t need;
    char shape_text[96];
    tensorio_format_shape(shape_text, sizeof shape_text, e->rank, e->shape);
    if (!tensorio_shape_bytes(dt, e->rank, e->shape, &need))
        return tensorio_error(err, errlen, "tensor '%.64s': shape %s of %s overflows: too many "
                              "elements", name, shape_text, st_dtype_names[dt]);
    if (need != (size_t)(end - begin))
        return tensorio_error(err, errlen, "tensor '%.64s': shape %s of %s needs %zu bytes, "
                              "data_offsets [%lld, %lld] give %lld", name, shape_text,
                              st_dtype_names[dt], need, begin, end, end - begin);
    if (view && need) { /* the bytes stay where they are: only the shape is the tensor's */
        memset(t, 0, sizeof *t);
        t->shape = malloc(sizeof(int64_t) * (size_t)(e->rank > 0 ? e->rank : 1));
        if (!t->shape) return tensorio_error(err, errlen, "out of memory for tensor '%.64s'", name);
        if (e->rank > 0) memcpy(t->shape, e->shape, sizeof(int64_t) * (size_t)e->rank);
        t->dtype = dt, t->rank = e->rank, t->data = (void *)(data + begin);
        return true;
    }
    if (!kiln_tensor_init(t, dt, e->rank, e->shape))
        return tensorio_error(err, errlen, "out of memory for tensor '%.64s'", name);
    if (need)
        memcpy(t->data, data + begin, need);
    return true;
}

/* Where a tensor's bytes lie in the data buffer, for the coverage check. */
typedef struct {
    uint64_t begin, end;
    int index;
} Span;

static int compare_spans(const void *a, const void *b) {
    const Span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return (x->end > y->end) - (x->end < y->end);
}

/* The format requires the spans to tile [0, data_len): no overlap, no hole. */
static bool check_coverage(Span *spans, int count, char *const *names, size_t data_len,
                           char *err, size_t errlen) {
    if (count > 0)
        qsort(spans, (size_t)count, sizeof *spans, compare_spans);
    uint64_t pos = 0;
    for (int i = 0; i < count; i++) {
        const Span *s = &spans[i];
        if (s->begin < pos)
            return tensorio_error(err, errlen, "tensor '%.64s' [%llu, %llu] overlaps tensor "
                                  "'%.64s' [%llu, %llu]", names[s->index],
                                  (unsigned long long)s->begin, (unsigned long long)s->end,
                                  names[spans[i - 1].index],
                                  (unsigned long long)spans[i - 1].begin, (unsigned long long)pos);
        if (s->begin > pos)
            return tensorio_error(err, errlen, "hole in the data buffer: bytes [%llu, %llu) "
                                  "belong to no tensor", (unsigned long long)pos,
                                  (unsigned long long)s->begin);
        pos = s->end;
    }
    if (pos != data_len)
        return tensorio_error(err, errlen, "hole in the data buffer: bytes [%llu, %zu) belong "
                              "to no tensor", (unsigned long long)pos, data_len);
    return true;
}

static int compare_names(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Refuses a name given twice; sorting a copy keeps it O(n log n). */
static bool check_unique_names(char *const *names, int count, char *err, size_t errlen) {
    if (count < 2)
        return true;
    char **sorted = malloc(sizeof *sorted * (size_t)count);
    if (!sorted)
        return tensorio_error(err, errlen, "out of memory");
    memcpy(sorted, names, sizeof *sorted * (size_t)count);
    qsort(sorted, (size_t)count, sizeof *sorted, compare_names);
    const char *dup = NULL;
    for (int i = 1; i < count && !dup; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0)
            dup = sorted[i];
    if (dup)
        tensorio_error(err, errlen, "duplicate tensor name '%.64s'", dup);
    free(sorted);
    return !dup;
}

/* realloc that keeps the old block, and clears *ok, when it fails (or *ok is already false). */
static void *grow(void *p, size_t size, bool *ok) {
    void *q = *ok ? realloc(p, size) : NULL;
    *ok = q != NULL;
    return q ? q : p;
}

/* Makes room for one more tensor in out and in spans (parallel arrays). */
static bool grow_list(KilnTensorList *out, Span **spans, int *cap) {
    if (out->count < *cap)
        return true;
    bool ok = *cap <= INT_MAX / 2;
    size_t n = *cap ? 2 * (size_t)*cap : 8;
    out->names = grow(out->names, sizeof *out->names * n, &ok);
    out->tensors = grow(out->tensors, sizeof *out->tensors * n, &ok);
    *spans = grow(*spans, sizeof **spans * n, &ok);
    if (ok)
        *cap = (int)n;
    return ok;
}

/* The tensors of buf, copied, or views of buf (view: no copy).
 * header := '{' [member (',' member)*] '}' space*, where a member is
 * string ':' entry, or "__metadata__" ':' metadata. */
static bool read_list(const uint8_t *buf, size_t len, bool view, KilnTensorList *out, char *err,
                      size_t errlen) {
    memset(out, 0, sizeof *out);
    if (len < 8)
        return tensorio_error(err, errlen, "truncated: %zu bytes, too short for the 8-byte "
                              "header length", len);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--)
        header_len = header_len << 8 | buf[i];
    if (header_len > len - 8)
        return tensorio_error(err, errlen, "header length %llu runs past the end of the file "
                              "(%zu bytes follow it)", (unsigned long long)header_len, len - 8);
    const char *text = (const char *)buf + 8;
    Json j = {text, text, text + header_len, err, errlen};
    const uint8_t *data = buf + 8 + header_len;
    size_t data_len = len - 8 - (size_t)header_len;

    Span *spans = NULL;
    int cap = 0;
    bool have_metadata = false;
    bool ok = expect(&j, '{', "'{' at the start of the header");
    if (ok && !tensorio_accept(&j, '}')) {
        do {
            char *name;
            if (!(ok = parse_string(&j, &name)))
                break;
            Entry e = {0};
            bool is_metadata = strcmp(name, "__metadata__") == 0;
            ok = expect(&j, ':', "':' after a tensor name");
            if (ok && is_metadata)
                ok = !have_metadata ? skip_metadata(&j)
                                    : tensorio_text_error(&j, "duplicate __metadata__ in header");
            else if (ok && !grow_list(out, &spans, &cap))
                ok = tensorio_text_error(&j, "out of memory reading the header");
            else if (ok)
                ok = parse_entry(&j, name, &e) &&
                     build_tensor(name, &e, data, data_len, view, &out->tensors[out->count], err, errlen);
            have_metadata |= is_metadata;
            if (ok && !is_metadata) {
                spans[out->count] = (Span){e.offsets[0], e.offsets[1], out->count};
                out->names[out->count++] = name;
            } else {
                free(name);
            }
            entry_free(&e);
        } while (ok && tensorio_accept(&j, ','));
        ok = ok && expect(&j, '}', "',' or '}' after a tensor entry");
    }
    tensorio_skip_space(&j);
    if (ok && j.p != j.end)
        ok = syntax_error(&j, "only spaces after the header's closing '}'");
    ok = ok && check_unique_names(out->names, out->count, err, errlen) &&
         check_coverage(spans, out->count, out->names, data_len, err, errlen);
    free(spans);
    if (!ok) {
        for (int i = 0; view && i < out->count; i++) /* views: the data is buf's */
            if (out->tensors[i].data >= (void *)buf && out->tensors[i].data < (void *)(buf + len))
                out->tensors[i].data = NULL;
        kiln_tensor_list_free(out);
    }
    return ok;
}

bool kiln_safetensors_read_mem(const uint8_t *buf, size_t len, KilnTensorList *out, char *err,
                               size_t errlen) {
    return read_list(buf, len, false, out, err, errlen);
}

bool safetensors_read_views(const uint8_t *buf, size_t len, KilnTensorList *out, char *err, size_t errlen) {
    return read_list(buf, len, true, out, err, errlen);
}

bool kiln_safetensors_read(const char *path, KilnTensorList *out, char *err, size_t errlen) {
    uint8_t *buf;
    size_t len;
    memset(out, 0, sizeof *out);
    if (!tensorio_read_file(path, &buf, &len, err, errlen))
        return false;
    bool ok = kiln_safetensors_read_mem(buf, len, out, err, errlen);
    if (!ok)
        tensorio_prefix_error(err, errlen, path);
    free(buf);
    return ok;
}

/* ---- writing ---- */

/* A JSON string literal; bytes from 0x80 up pass through (names are UTF-8). */
static void put_json_string(FILE *f, const char *s) {
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fprintf(f, "\\%c", *s);
        else if ((unsigned char)*s < 0x20)
            fprintf(f, "\\u%04x", (unsigned)*s);
        else
            fputc(*s, f);
    }
    fputc('"', f);
}

bool kiln_safetensors_write(const char *path, const KilnTensorList *list, char *err,
                            size_t errlen) {
    /* The file is written as parts: the length prefix, the header, then each
     * tensor's bytes in the order given, so data_offsets simply accumulate. */
    int nparts = (list->count > 0 ? list->count : 0) + 2;
    const void **parts = malloc(sizeof *parts * (size_t)nparts);
    size_t *lens = malloc(sizeof *lens * (size_t)nparts);
    char *header = NULL;
    size_t header_len = 0;
    FILE *json = open_memstream(&header, &header_len);
    bool ok = parts && lens && json;
    if (!ok)
        tensorio_error(err, errlen, "%s: out of memory", path);
    unsigned long long offset = 0;
    for (int i = 0; ok && i < list->count; i++) {
        const KilnTensor *t = &list->tensors[i];
        const char *name = list->names[i];
        size_t bytes;
        if (!name || strcmp(name, "__metadata__") == 0 ||
            !tensorio_shape_bytes(t->dtype, t->rank, t->shape, &bytes) || (bytes && !t->data)) {
            ok = tensorio_error(err, errlen, "%s: cannot write tensor %d ('%.64s'): bad name, "
                                "dtype or shape", path, i, name ? name : "(null)");
            break;
        }
        fputs(i ? "," : "{", json);
        put_json_string(json, name);
        fprintf(json, ":{\"dtype\":\"%s\",\"shape\":[", st_dtype_names[t->dtype]);
        for (int d = 0; d < t->rank; d++)
            fprintf(json, d ? ",%lld" : "%lld", (long long)t->shape[d]);
        fprintf(json, "],\"data_offsets\":[%llu,%llu]}", offset, offset + bytes);
        offset += bytes;
        parts[i + 2] = t->data;
        lens[i + 2] = bytes;
    }
    if (ok) {
        fputs(list->count > 0 ? "}" : "{}", json);
        long written = ftell(json); /* pad so the data buffer starts 8-byte aligned */
        fprintf(json, "%*s", (int)((8 - written % 8) % 8), "");
    }
    bool json_ok = json && !ferror(json);
    if (json && fclose(json) != 0) /* also what sets header and header_len */
        json_ok = false;
    if (ok && !json_ok)
        ok = tensorio_error(err, errlen, "%s: out of memory", path);
    if (ok && !check_unique_names(list->names, list->count, err, errlen)) {
        tensorio_prefix_error(err, errlen, path);
        ok = false;
    }
    if (ok) {
        uint8_t prefix[8];
        for (int i = 0; i < 8; i++)
            prefix[i] = (uint8_t)((uint64_t)header_len >> (8 * i));
        parts[0] = prefix;
        lens[0] = 8;
        parts[1] = header;
        lens[1] = header_len;
        ok = tensorio_write_file(path, nparts, parts, lens, err, errlen);
    }
    free(header);
    free(parts);
    free(lens);
    return ok;
}
