/* tensorio.h - what the tensor-file readers and writers (npy.c,
 * safetensors.c) share, defined in tensorio.c: whole-file reading and
 * writing, error formatting, and a bounded reader over a header's text; the
 * checked size arithmetic (tensorio_shape_bytes) is base/base.h's.
 * Internal: not part of include/kiln.h. */
#ifndef KILN_TENSORIO_H
#define KILN_TENSORIO_H

#include "base/base.h"

#include <stddef.h>
#include <stdint.h>

bool tensorio_error(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
void tensorio_prefix_error(char *err, size_t errlen, const char *prefix);
void tensorio_format_shape(char *buf, size_t buflen, int rank, const int64_t *shape);
bool tensorio_read_file(const char *path, uint8_t **data, size_t *len, char *err, size_t errlen);
/* A regular, non-empty file mapped read-only (tensorio_unmap releases it);
 * false with a message otherwise (not a regular file, empty, mmap refused):
 * the caller then reads it with tensorio_read_file.  As any mapped file it
 * must not be truncated while mapped; its size is what was checked. */
bool tensorio_map_file(const char *path, const uint8_t **data, size_t *len, char *err, size_t errlen);
void tensorio_unmap(const uint8_t *data, size_t len);
/* safetensors whose tensors are views of buf (no copy): buf must outlive
 * them, and their data is not theirs to free (only their shapes). */
bool safetensors_read_views(const uint8_t *buf, size_t len, KilnTensorList *out, char *err, size_t errlen);
bool tensorio_write_file(const char *path, int nparts, const void *const *parts, const size_t *lens,
                         char *err, size_t errlen);

/* A header's text (npy's Python dict, safetensors' JSON), read from p
 * towards end; untrusted, so no read goes past end.  Errors go to err. */
typedef struct {
    const char *start, *p, *end; /* the header text, and where the reader is */
    char *err;
    size_t errlen;
} TextCursor;

/* Formats a message into c->err; returns false (`return tensorio_text_error(...)`). */
bool tensorio_text_error(TextCursor *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Skips spaces, tabs and line ends. */
void tensorio_skip_space(TextCursor *c);
/* Consumes `ch` (after optional space) if it is next. */
bool tensorio_accept(TextCursor *c, char ch);

#endif
