/* format.c - prints tensors as NumPy's print() does (numpy 1.24's arrayprint
 * with its default options: precision 8, floatmode 'maxprec', 75 columns,
 * summaries of more than 1000 elements with 3 edge items).
 *
 * Floats are written with the fewest digits that read back as the same value
 * of the tensor's dtype (an f32 0.1 prints as 0.1, not 0.10000000149), at
 * most 8 after the point.  Scientific notation is used when the largest
 * magnitude is >= 1e8, the smallest non-zero one < 1e-4, or their ratio
 * > 1000; then every element gets as many mantissa digits as the longest
 * needs.  A 0-d tensor prints as NumPy prints a scalar ("1.0", "1e-05").
 * The layout follows arrayprint's _formatArray, so line wrapping and the
 * "..." of summaries fall where NumPy puts them. */
#include "app/app.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

enum { SUMMARY_THRESHOLD = 1000, EDGE_ITEMS = 3, LINE_WIDTH = 75, PRECISION = 8 };

/* ------------------------------------------------------- one number */

/* The shortest decimal digits of finite, non-zero v that read back as v in
 * dtype dt: digits[] gets them (no sign, no point), *exp10 the decimal
 * exponent of the first; returns how many. */
static int shortest_digits(double v, KilnDType dt, char *digits, int *exp10) {
    char buf[64];
    int p = 1;
    for (; p < 17; p++) {
        snprintf(buf, sizeof buf, "%.*e", p - 1, v);
        if (ref_round_to_dtype(strtod(buf, NULL), dt) == v) break;
    }
    snprintf(buf, sizeof buf, "%.*e", p - 1, v);
    int n = 0;
    char *c = buf;
    for (; *c && *c != 'e'; c++)
        if (*c >= '0' && *c <= '9') digits[n++] = *c;
    digits[n] = 0;
    *exp10 = atoi(c + 1);
    return n;
}

/* Positional text of finite v with at most max_frac digits after the point
 * (max_frac < 0: no limit), trailing zeros trimmed.  NumPy's scalars
 * (scalar == true) zero-fill an integer part longer than the shortest digits
 * and write "1.0" for "1."; array elements print the integer part exactly. */
static void positional(double v, KilnDType dt, int max_frac, bool scalar, char *out, size_t n) {
    char d[32];
    StrBuf sb = {0};
    if (v == 0) {
        sb_puts(&sb, signbit(v) ? "-0." : "0.");
    } else {
        int e, nd = shortest_digits(v, dt, d, &e);
        int frac = nd - 1 - e;
        if (!scalar && frac <= 0) {
            sb_printf(&sb, "%.0f.", v); /* an integer: its digits exactly */
        } else if (max_frac >= 0 && frac > max_frac) {
            /* more digits than allowed: the exact value rounded there */
            sb_printf(&sb, "%.*f", max_frac, v);
            while (sb.len > 0 && sb.data[sb.len - 1] == '0') sb.data[--sb.len] = 0;
        } else {
            if (v < 0) sb_puts(&sb, "-");
            if (e < 0) {
                sb_puts(&sb, "0.");
                for (int i = 0; i < -e - 1; i++) sb_puts(&sb, "0");
                sb_puts(&sb, d);
            } else {
                for (int i = 0; i <= e; i++) sb_printf(&sb, "%c", i < nd ? d[i] : '0');
                sb_puts(&sb, ".");
                if (nd > e + 1) sb_puts(&sb, d + e + 1);
            }
        }
    }
    if (scalar && sb.data[sb.len - 1] == '.') sb_puts(&sb, "0");
    snprintf(out, n, "%s", sb.data);
    sb_free(&sb);
}

/* "1.50e+00": frac digits after the point (always with a point), at least
 * exp_digits digits of exponent. */
static void scientific(double v, int frac, int exp_digits, char *out, size_t n) {
    char buf[64];
    snprintf(buf, sizeof buf, "%#.*e", frac, v);
    char *e = strchr(buf, 'e');
    int ex = atoi(e + 1);
    *e = 0;
    snprintf(out, n, "%se%c%0*d", buf, ex < 0 ? '-' : '+', exp_digits, abs(ex));
}

static int exponent_digits(double v) {
    int ex = 0;
    char buf[64];
    snprintf(buf, sizeof buf, "%.8e", v);
    ex = abs(atoi(strchr(buf, 'e') + 1));
    return ex >= 100 ? 3 : 2;
}

/* NumPy's str() of a scalar of dtype dt. */
static void scalar_text(double v, KilnDType dt, char *out, size_t n) {
    double a = fabs(v);
    if (isnan(v)) snprintf(out, n, "nan");
    else if (isinf(v)) snprintf(out, n, v < 0 ? "-inf" : "inf");
    else if (a == 0 || (a >= 1e-4 && a < 1e16)) positional(v, dt, -1, true, out, n);
    else {
        char d[32];
        int e, nd = shortest_digits(v, dt, d, &e);
        snprintf(out, n, "%s%c%s%se%c%02d", v < 0 ? "-" : "", d[0], nd > 1 ? "." : "", d + 1,
                 e < 0 ? '-' : '+', abs(e));
    }
}

/* ------------------------------------------------------- the whole tensor */

typedef struct {
    const KilnTensor *t;
    bool summarise;
    bool is_float;
    bool scientific;
    int frac;      /* scientific: mantissa digits after the point */
    int exp_digits;
    int pad_left;  /* floats: width of the integer part (with the sign) */
    int pad_right; /* floats: width after the point */
    int width;     /* integers: common width */
    int64_t *strides;
} Fmt;

static bool is_float_dtype(KilnDType dt) {
    return dt == KILN_F32 || dt == KILN_F64 || dt == KILN_F16 || dt == KILN_BF16;
}

/* Whether element i (flat) is printed: in a summary only the edge items of
 * every axis are. */
static bool shown(const Fmt *f, int64_t i) {
    const KilnTensor *t = f->t;
    if (!f->summarise) return true;
    for (int k = 0; k < t->rank; k++) {
        int64_t idx = (i / f->strides[k]) % t->shape[k], size = t->shape[k];
        if (size > 2 * EDGE_ITEMS && idx >= EDGE_ITEMS && idx < size - EDGE_ITEMS) return false;
    }
    return true;
}

/* The text of element i, padded to the common width. */
static void element(const Fmt *f, int64_t i, char *out, size_t n) {
    const KilnTensor *t = f->t;
    if (t->dtype == KILN_BOOL) {
        snprintf(out, n, "%s", kiln_tensor_get(t, i) != 0 ? " True" : "False");
    } else if (t->dtype == KILN_I64) {
        snprintf(out, n, "%*lld", f->width, (long long)((const int64_t *)t->data)[i]);
    } else if (t->dtype == KILN_I32) {
        snprintf(out, n, "%*d", f->width, ((const int32_t *)t->data)[i]);
    } else {
        double v = kiln_tensor_get(t, i);
        int total = f->pad_left + f->pad_right + 1;
        char buf[96];
        if (isnan(v) || isinf(v)) {
            snprintf(out, n, "%*s", total, isnan(v) ? "nan" : v < 0 ? "-inf" : "inf");
        } else if (f->scientific) {
            scientific(v, f->frac, f->exp_digits, buf, sizeof buf);
            snprintf(out, n, "%*s", (int)(f->pad_left + strlen(buf) - strcspn(buf, ".")), buf);
        } else {
            positional(v, t->dtype, PRECISION, false, buf, sizeof buf);
            int ip = (int)strcspn(buf, ".");
            snprintf(out, n, "%*s%s%*s", f->pad_left - ip, "", buf, f->pad_right - (int)strlen(buf + ip + 1), "");
        }
    }
}

/* Chooses notation and widths from the printed elements (FloatingFormat.fillFormat). */
static void measure(Fmt *f) {
    const KilnTensor *t = f->t;
    int64_t n = kiln_tensor_numel(t);
    double max_abs = 0, min_abs = INFINITY;
    bool any_finite = false, any_nonfinite = false, neg_inf = false;
    for (int64_t i = 0; i < n; i++) {
        if (!shown(f, i)) continue;
        if (t->dtype == KILN_I64 || t->dtype == KILN_I32) {
            char buf[32];
            int w = t->dtype == KILN_I64 ? snprintf(buf, sizeof buf, "%lld", (long long)((const int64_t *)t->data)[i])
                                         : snprintf(buf, sizeof buf, "%d", ((const int32_t *)t->data)[i]);
            if (w > f->width) f->width = w;
            continue;
        }
        if (!f->is_float) continue;
        double v = kiln_tensor_get(t, i);
        if (!isfinite(v)) {
            any_nonfinite = true;
            neg_inf = neg_inf || (isinf(v) && v < 0);
            continue;
        }
        any_finite = true;
        double a = fabs(v);
        if (a > 0 && a > max_abs) max_abs = a;
        if (a > 0 && a < min_abs) min_abs = a;
    }
    if (!f->is_float) return;
    f->scientific = min_abs < INFINITY && (max_abs >= 1e8 || min_abs < 1e-4 || max_abs / min_abs > 1e3);
    f->exp_digits = 2;
    for (int pass = 0; pass < 2 && any_finite; pass++) {
        for (int64_t i = 0; i < n; i++) {
            double v;
            if (!shown(f, i) || !isfinite(v = kiln_tensor_get(t, i))) continue;
            if (f->scientific && pass == 0) { /* mantissa digits: the most any element needs */
                char d[32];
                int e, nd = v == 0 ? 1 : shortest_digits(v, t->dtype, d, &e);
                if (nd - 1 > f->frac) f->frac = nd - 1 > PRECISION ? PRECISION : nd - 1;
                if (exponent_digits(v) > f->exp_digits) f->exp_digits = exponent_digits(v);
            } else if (f->scientific) {
                char buf[96];
                scientific(v, f->frac, f->exp_digits, buf, sizeof buf);
                int ip = (int)strcspn(buf, ".");
                if (ip > f->pad_left) f->pad_left = ip;
            } else if (pass == 0) {
                char buf[96];
                positional(v, t->dtype, PRECISION, false, buf, sizeof buf);
                int ip = (int)strcspn(buf, "."), fp = (int)strlen(buf + ip + 1);
                if (ip > f->pad_left) f->pad_left = ip;
                if (fp > f->pad_right) f->pad_right = fp;
            }
        }
    }
    if (f->scientific) f->pad_right = f->exp_digits + 2 + f->frac;
    if (any_nonfinite) { /* room for nan, inf, -inf */
        int offset = f->pad_right + 1;
        if (3 - offset > f->pad_left) f->pad_left = 3 - offset;
        if (3 + neg_inf - offset > f->pad_left) f->pad_left = 3 + neg_inf - offset;
    }
}

/* NumPy's _extendLine: starts a new line when the word would pass the width. */
static void extend_line(StrBuf *s, StrBuf *line, const char *word, int width, int hang) {
    bool wrap = (int)(line->len + strlen(word)) > width && (int)line->len > hang;
    if (wrap) {
        while (line->len > 0 && line->data[line->len - 1] == ' ') line->data[--line->len] = 0;
        sb_printf(s, "%s\n", line->data);
        line->len = 0;
        sb_printf(line, "%*s", hang, "");
    }
    sb_puts(line, word);
}

/* NumPy's _formatArray recurser: the sub-array at `offset` from `axis` on,
 * its lines indented by `hang` blanks, within `width` columns. */
static void format_rec(const Fmt *f, int axis, int64_t offset, int hang, int width, StrBuf *out) {
    const KilnTensor *t = f->t;
    int64_t size = t->shape[axis], stride = f->strides[axis];
    bool summary = f->summarise && size > 2 * EDGE_ITEMS;
    int64_t lead = summary ? EDGE_ITEMS : 0, trail = summary ? EDGE_ITEMS : size;
    StrBuf s = {0}; /* starts with the indent, which '[' replaces at the end */
    if (axis == t->rank - 1) {
        int elem_width = width - 1; /* room for the closing ']' */
        StrBuf line = {0};
        sb_printf(&line, "%*s", hang, "");
        char word[128];
        for (int64_t i = 0; i < lead; i++) {
            element(f, offset + i * stride, word, sizeof word);
            extend_line(&s, &line, word, elem_width, hang);
            sb_puts(&line, " ");
        }
        if (summary) {
            extend_line(&s, &line, "...", elem_width, hang);
            sb_puts(&line, " ");
        }
        for (int64_t i = trail; i > 1; i--) {
            element(f, offset + (size - i) * stride, word, sizeof word);
            extend_line(&s, &line, word, elem_width, hang);
            sb_puts(&line, " ");
        }
        element(f, offset + (size - 1) * stride, word, sizeof word);
        extend_line(&s, &line, word, elem_width, hang);
        sb_puts(&s, line.data);
        sb_free(&line);
    } else {
        int nl = t->rank - axis - 1; /* blank lines between blocks grow with depth */
        for (int64_t i = 0; i < lead; i++) {
            sb_printf(&s, "%*s", hang, "");
            format_rec(f, axis + 1, offset + i * stride, hang + 1, width - 1, &s);
            for (int k = 0; k < nl; k++) sb_puts(&s, "\n");
        }
        if (summary) {
            sb_printf(&s, "%*s...", hang, "");
            for (int k = 0; k < nl; k++) sb_puts(&s, "\n");
        }
        for (int64_t i = trail; i >= 1; i--) {
            sb_printf(&s, "%*s", hang, "");
            format_rec(f, axis + 1, offset + (size - i) * stride, hang + 1, width - 1, &s);
            if (i > 1)
                for (int k = 0; k < nl; k++) sb_puts(&s, "\n");
        }
    }
    sb_printf(out, "[%s]", s.data + hang);
    sb_free(&s);
}

void tensor_format(const KilnTensor *t, StrBuf *out) {
    if (t->rank == 0) {
        char buf[96];
        if (t->dtype == KILN_BOOL) snprintf(buf, sizeof buf, "%s", kiln_tensor_get(t, 0) != 0 ? "True" : "False");
        else if (t->dtype == KILN_I64) snprintf(buf, sizeof buf, "%lld", (long long)*(const int64_t *)t->data);
        else if (t->dtype == KILN_I32) snprintf(buf, sizeof buf, "%d", *(const int32_t *)t->data);
        else scalar_text(kiln_tensor_get(t, 0), t->dtype, buf, sizeof buf);
        sb_puts(out, buf);
        return;
    }
    for (int k = 0; k < t->rank; k++) {
        if (t->shape[k] == 0) {
            sb_puts(out, "[]");
            return;
        }
    }
    Fmt f = {.t = t, .is_float = is_float_dtype(t->dtype)};
    f.summarise = kiln_tensor_numel(t) > SUMMARY_THRESHOLD;
    f.strides = xmalloc(sizeof(int64_t) * (size_t)t->rank);
    int64_t s = 1;
    for (int k = t->rank - 1; k >= 0; k--) {
        f.strides[k] = s;
        s *= t->shape[k];
    }
    measure(&f);
    format_rec(&f, 0, 0, 1, LINE_WIDTH, out);
    free(f.strides);
}
