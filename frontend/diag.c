/* diag.c - diagnostics in the spec's form:
 *     file:line:col: error: message
 *         the source line
 *             ^
 *     hint: how to fix it
 * Diagnostics are collected, never fatal, so one run reports every
 * independent error and the REPL survives them. */
#include "ir/ir.h"

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

static bool diag_before(const Diag *a, const Diag *b) {
    if (a->loc.line != b->loc.line) return a->loc.line < b->loc.line;
    return a->loc.col < b->loc.col;
}

/* Prints source line `line` of `src` with tabs kept, so the caret lines up. */
static void print_source_line(const Source *src, int line, int col, FILE *out) {
    const char *p = src->text;
    for (int l = 1; l < line && p; l++) {
        p = strchr(p, '\n');
        if (p) p++;
    }
    if (!p) return;
    const char *end = strchr(p, '\n');
    size_t n = end ? (size_t)(end - p) : strlen(p);
    if (n > 0 && p[n - 1] == '\r') n--;
    fprintf(out, "    %.*s\n    ", (int)n, p);
    for (int c = 1; c < col && (size_t)(c - 1) < n; c++) fputc(p[c - 1] == '\t' ? '\t' : ' ', out);
    fputs("^\n", out);
}

void diag_print(DiagList *d, FILE *out) {
    /* insertion sort by position: stable, so report order breaks ties */
    for (int i = 1; i < d->items.len; i++) {
        Diag x = d->items.data[i];
        int j = i;
        for (; j > 0 && diag_before(&x, &d->items.data[j - 1]); j--) d->items.data[j] = d->items.data[j - 1];
        d->items.data[j] = x;
    }
    for (int i = 0; i < d->items.len; i++) {
        Diag *g = &d->items.data[i];
        if (g->loc.src && g->loc.line > 0) {
            fprintf(out, "%s:%d:%d: error: %s\n", g->loc.src->path, g->loc.line, g->loc.col, g->msg);
            print_source_line(g->loc.src, g->loc.line, g->loc.col, out);
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
