/* diag.c - diagnostics in the spec's form:
 *     file:line:col: error: message
 *         the source line
 *             ^
 *     hint: how to fix it
 * Diagnostics are collected, never fatal, so one run reports every
 * independent error and the REPL survives them. */
#include "base/base.h"

#include <stdlib.h>
#include <string.h>

static char *vformat(const char *fmt, va_list ap) {
    StrBuf sb = {0};
    sb_vprintf(&sb, fmt, ap);
    return sb.data ? sb.data : xstrdup("");
}

void diag_error(DiagList *d, Loc loc, const char *fmt, ...) {
    if (d->suppress) return;
    va_list ap;
    va_start(ap, fmt);
    Diag diag = {.loc = loc, .msg = vformat(fmt, ap)};
    va_end(ap);
    VEC_PUSH(d->items, diag);
    d->nerrors++;
}

void diag_hint(DiagList *d, const char *fmt, ...) {
    if (d->suppress || d->items.len == 0) return;
    Diag *last = &d->items.data[d->items.len - 1];
    va_list ap;
    va_start(ap, fmt);
    free(last->hint);
    last->hint = vformat(fmt, ap);
    va_end(ap);
}

/* Where line `line` of src starts, scanning on from a known earlier line
 * (*at_line starting at *at) so that printing many diagnostics of one file,
 * in order, reads the file once. */
static const char *line_start(const Source *src, int line, const char **at, int *at_line) {
    if (!*at || *at_line > line) *at = src->text, *at_line = 1;
    const char *p = *at;
    for (int l = *at_line; l < line && p; l++) {
        p = strchr(p, '\n');
        if (p) p++;
    }
    if (p) *at = p, *at_line = line;
    return p;
}

/* Prints source line `line` of `src` with tabs kept, so the caret lines up.
 * A long line (a generated program's) shows only a window around the
 * column, marked with "...". */
enum { LINE_WINDOW = 80 };
static void print_source_line(const Source *src, int line, int col, const char **at, int *at_line,
                              FILE *out) {
    const char *p = line_start(src, line, at, at_line);
    if (!p) return;
    if (p == src->text && src->len >= 3 && memcmp(p, "\xef\xbb\xbf", 3) == 0) p += 3; /* a byte-order mark */
    const char *end = strchr(p, '\n');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n > 0 && p[n - 1] == '\r') n--;
    size_t from = 0, to = n, c = col > 0 ? (size_t)col - 1 : 0;
    if (n > 2 * LINE_WINDOW + 40) {
        from = c > LINE_WINDOW ? c - LINE_WINDOW : 0;
        to = c + LINE_WINDOW < n ? c + LINE_WINDOW : n;
    }
    fprintf(out, "    %s%.*s%s\n", from ? "..." : "", (int)(to - from), p + from, to < n ? "..." : "");
    if (col < 1) return; /* col 0: the line alone */
    fprintf(out, "    %s", from ? "   " : "");
    for (size_t k = from; k < c && k < to; k++) fputc(p[k] == '\t' ? '\t' : ' ', out);
    fputs("^\n", out);
}

static int diag_cmp(const void *a, const void *b) {
    const Diag *x = a, *y = b;
    if (x->loc.line != y->loc.line) return x->loc.line < y->loc.line ? -1 : 1;
    if (x->loc.col != y->loc.col) return x->loc.col < y->loc.col ? -1 : 1;
    return x->order < y->order ? -1 : x->order > y->order; /* report order breaks ties */
}

void diag_print(DiagList *d, FILE *out) {
    for (int i = 0; i < d->items.len; i++) d->items.data[i].order = i;
    if (d->items.len > 1) qsort(d->items.data, (size_t)d->items.len, sizeof(Diag), diag_cmp);
    const char *at = NULL;
    int at_line = 0;
    const Source *at_src = NULL;
    for (int i = 0; i < d->items.len; i++) {
        Diag *g = &d->items.data[i];
        if (g->loc.src && g->loc.line > 0 && g->loc.src->listing) { /* a model's node: no column, no caret */
            fprintf(out, "%s: node %d: error: %s\n", g->loc.src->path, g->loc.line, g->msg);
            if (g->loc.src != at_src) at = NULL, at_src = g->loc.src;
            print_source_line(g->loc.src, g->loc.line, 0, &at, &at_line, out);
        } else if (g->loc.src && g->loc.line > 0) {
            fprintf(out, "%s:%d:%d: error: %s\n", g->loc.src->path, g->loc.line, g->loc.col, g->msg);
            if (g->loc.src != at_src) at = NULL, at_src = g->loc.src;
            print_source_line(g->loc.src, g->loc.line, g->loc.col, &at, &at_line, out);
        } else {
            fprintf(out, "error: %s\n", g->msg);
        }
        if (g->hint) fprintf(out, "hint: %s\n", g->hint);
    }
}

void diag_clear(DiagList *d) {
    for (int i = 0; i < d->items.len; i++) {
        free(d->items.data[i].msg);
        free(d->items.data[i].hint);
    }
    VEC_FREE(d->items);
    d->nerrors = 0;
}

/* Levenshtein distance, one row at a time. */
static int edit_distance(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    int *row = xmalloc(sizeof(int) * (lb + 1));
    for (size_t j = 0; j <= lb; j++) row[j] = (int)j;
    for (size_t i = 1; i <= la; i++) {
        int prev = row[0];
        row[0] = (int)i;
        for (size_t j = 1; j <= lb; j++) {
            int cur = row[j], best = prev + (a[i - 1] != b[j - 1]);
            if (row[j] + 1 < best) best = row[j] + 1;
            if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
            row[j] = best;
            prev = cur;
        }
    }
    int d = row[lb];
    free(row);
    return d;
}

void suggest_try(Suggest *s, const char *want, const char *cand) {
    int d = edit_distance(want, cand);
    if (d <= (int)strlen(want) / 3 + 1 && (!s->best || d < s->dist)) *s = (Suggest){cand, d};
}
