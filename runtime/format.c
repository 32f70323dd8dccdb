/* format.c - prints tensors as NumPy's print() does: common width, fixed
 * notation unless the magnitudes call for scientific, "1." for integral
 * floats, True/False for bool, "..." summaries for more than 1000 elements,
 * rows wrapped at 75 columns. */
#include "runtime/runtime.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { SUMMARY_THRESHOLD = 1000, EDGE_ITEMS = 3, LINE_WIDTH = 75, PRECISION = 8 };

double tensor_get(const KilnTensor *t, int64_t i) {
    switch (t->dtype) {
    case KILN_F32: return ((const float *)t->data)[i];
    case KILN_F64: return ((const double *)t->data)[i];
    case KILN_F16: return kiln_f16_to_f32(((const uint16_t *)t->data)[i]);
    case KILN_BF16: return kiln_bf16_to_f32(((const uint16_t *)t->data)[i]);
    case KILN_I32: return ((const int32_t *)t->data)[i];
    case KILN_I64: return (double)((const int64_t *)t->data)[i];
    case KILN_BOOL: return ((const uint8_t *)t->data)[i] != 0;
    default: return 0;
    }
}

typedef struct {
    const KilnTensor *t;
    bool summarise;
    bool scientific;
    int frac_digits; /* fixed notation: digits after the point */
    int width;
    StrBuf *out;
} Fmt;

/* Fewest digits after the point (at most PRECISION) that print v exactly as %.*f with PRECISION would. */
static int frac_digits_needed(double v) {
    char buf[64];
    snprintf(buf, sizeof buf, "%.*f", PRECISION, v);
    char *dot = strchr(buf, '.');
    if (!dot) return 0;
    int n = (int)strlen(dot + 1);
    while (n > 0 && dot[n] == '0') n--;
    return n;
}

static void format_value(const Fmt *f, int64_t i, char *buf, size_t n) {
    const KilnTensor *t = f->t;
    if (t->dtype == KILN_BOOL) {
        snprintf(buf, n, "%s", tensor_get(t, i) != 0 ? "True" : "False");
    } else if (t->dtype == KILN_I64) {
        snprintf(buf, n, "%lld", (long long)((const int64_t *)t->data)[i]);
    } else if (t->dtype == KILN_I32) {
        snprintf(buf, n, "%d", ((const int32_t *)t->data)[i]);
    } else {
        double v = tensor_get(t, i);
        if (isnan(v)) snprintf(buf, n, "nan");
        else if (isinf(v)) snprintf(buf, n, v > 0 ? "inf" : "-inf");
        else if (f->scientific) snprintf(buf, n, "%.*e", f->frac_digits, v);
        else if (f->frac_digits == 0) snprintf(buf, n, "%.0f.", v);
        else snprintf(buf, n, "%.*f", f->frac_digits, v);
    }
}

static bool index_shown(const Fmt *f, int64_t idx, int64_t size) {
    return !f->summarise || size <= 2 * EDGE_ITEMS || idx < EDGE_ITEMS || idx >= size - EDGE_ITEMS;
}

/* Visits the shown elements to choose notation, digits and width. */
static void measure(Fmt *f) {
    const KilnTensor *t = f->t;
    int64_t n = kiln_tensor_numel(t);
    bool is_float = t->dtype == KILN_F32 || t->dtype == KILN_F64 || t->dtype == KILN_F16 || t->dtype == KILN_BF16;
    double max_abs = 0, min_abs = INFINITY;
    int64_t *strides = xmalloc(sizeof(int64_t) * (size_t)(t->rank + 1));
    int64_t s = 1;
    for (int k = t->rank - 1; k >= 0; k--) {
        strides[k] = s;
        s *= t->shape[k];
    }
    for (int pass = 0; pass < 2; pass++) {
        for (int64_t i = 0; i < n; i++) {
            bool shown = true;
            for (int k = 0; k < t->rank && shown; k++)
                shown = index_shown(f, (i / strides[k]) % t->shape[k], t->shape[k]);
            if (!shown) continue;
            double v = tensor_get(t, i);
            if (pass == 0 && is_float && isfinite(v)) {
                double a = fabs(v);
                if (a > max_abs) max_abs = a;
                if (a > 0 && a < min_abs) min_abs = a;
                continue;
            }
            if (pass == 0) continue;
            if (is_float && isfinite(v) && !f->scientific) {
                int d = frac_digits_needed(v);
                if (d > f->frac_digits) f->frac_digits = d;
            }
        }
        if (pass == 0 && is_float) {
            f->scientific = max_abs >= 1e8 || (min_abs < 1e-4 && min_abs > 0) ||
                            (max_abs > 0 && min_abs < INFINITY && max_abs / min_abs > 1e3 && min_abs < 1e-4);
            if (f->scientific) {
                f->frac_digits = 0;
                for (int64_t i = 0; i < n; i++) {
                    double v = tensor_get(t, i);
                    if (!isfinite(v) || v == 0) continue;
                    char buf[64];
                    snprintf(buf, sizeof buf, "%.*e", PRECISION, v);
                    char *e = strchr(buf, 'e');
                    int d = (int)(e - strchr(buf, '.')) - 1;
                    while (d > 0 && buf[(strchr(buf, '.') - buf) + d] == '0') d--;
                    if (d > f->frac_digits) f->frac_digits = d;
                }
            }
        }
    }
    for (int64_t i = 0; i < n; i++) {
        bool shown = true;
        for (int k = 0; k < t->rank && shown; k++) shown = index_shown(f, (i / strides[k]) % t->shape[k], t->shape[k]);
        if (!shown) continue;
        char buf[64];
        format_value(f, i, buf, sizeof buf);
        int w = (int)strlen(buf);
        if (w > f->width) f->width = w;
    }
    free(strides);
}

static void print_rec(const Fmt *f, int axis, int64_t offset, int indent) {
    const KilnTensor *t = f->t;
    StrBuf *out = f->out;
    int64_t size = t->shape[axis];
    int64_t stride = 1;
    for (int k = axis + 1; k < t->rank; k++) stride *= t->shape[k];
    sb_puts(out, "[");
    if (axis == t->rank - 1) {
        int col = indent + 1;
        for (int64_t i = 0; i < size; i++) {
            if (!index_shown(f, i, size)) {
                if (i == EDGE_ITEMS) {
                    sb_puts(out, " ...");
                    col += 4;
                }
                continue;
            }
            char buf[64];
            format_value(f, offset + i * stride, buf, sizeof buf);
            bool first = i == 0;
            if (!first && col + 1 + f->width > LINE_WIDTH) {
                sb_printf(out, "\n%*s", indent + 1, "");
                col = indent + 1;
            } else if (!first) {
                sb_puts(out, " ");
                col++;
            }
            sb_printf(out, "%*s", f->width, buf);
            col += f->width;
        }
    } else {
        for (int64_t i = 0; i < size; i++) {
            if (!index_shown(f, i, size)) {
                if (i == EDGE_ITEMS) sb_printf(out, "\n%*s...,", indent + 1, "");
                continue;
            }
            if (i > 0) {
                for (int k = 0; k < t->rank - axis - 1; k++) sb_puts(out, "\n");
                sb_printf(out, "%*s", indent + 1, "");
            }
            print_rec(f, axis + 1, offset + i * stride, indent + 1);
        }
    }
    sb_puts(out, "]");
}

void tensor_format(const KilnTensor *t, StrBuf *out) {
    Fmt f = {.t = t, .out = out};
    f.summarise = kiln_tensor_numel(t) > SUMMARY_THRESHOLD;
    measure(&f);
    if (t->rank == 0) {
        char buf[64];
        format_value(&f, 0, buf, sizeof buf);
        sb_puts(out, buf);
        return;
    }
    for (int k = 0; k < t->rank; k++) {
        if (t->shape[k] == 0) {
            sb_puts(out, "[]");
            return;
        }
    }
    print_rec(&f, 0, 0, 0);
}
