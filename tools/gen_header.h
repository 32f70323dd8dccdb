/* gen_header.h - what the build-time generators (tools/gen_helpers.c,
 * tools/gen_forms.c) share: a C header of object bytes written to OUT.tmp
 * and renamed onto OUT when whole, so that an interrupted build never
 * leaves a half-written header that make would take as up to date. */
#ifndef KILN_TOOLS_GEN_HEADER_H
#define KILN_TOOLS_GEN_HEADER_H

#include "base/base.h"

#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

typedef struct {
    const char *tool, *out;
    StrBuf tmp;
    FILE *f;
} GenHeader;

/* Opens OUT.tmp for writing; false (said on stderr) when it cannot. */
static inline bool gen_header_open(GenHeader *h, const char *tool, const char *out) {
    *h = (GenHeader){.tool = tool, .out = out};
    sb_printf(&h->tmp, "%s.tmp", out);
    if ((h->f = fopen(h->tmp.data, "w"))) return true;
    fprintf(stderr, "%s: cannot write %s: %s\n", tool, h->tmp.data, strerror(errno));
    sb_free(&h->tmp);
    return false;
}

/* n bytes as the elements of an array initialiser, 24 a line. */
static inline void gen_header_bytes(FILE *f, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) fprintf(f, "%s%u,", i % 24 ? "" : "\n    ", p[i]);
}

/* A comment saying why the header holds nothing (why's text made safe
 * inside a comment, in place). */
static inline void gen_header_none(FILE *f, char *why) {
    for (char *p = why; *p; p++)
        if (*p == '*' || *p == '\n') *p = ' ';
    fprintf(f, "/* none: %s */\n", why);
}

/* Closes the file and renames it onto OUT; false (said on stderr) when
 * either fails. */
static inline bool gen_header_close(GenHeader *h) {
    bool ok = fclose(h->f) == 0 && rename(h->tmp.data, h->out) == 0;
    if (!ok) fprintf(stderr, "%s: cannot write %s: %s\n", h->tool, h->out, strerror(errno));
    sb_free(&h->tmp);
    return ok;
}

#endif
