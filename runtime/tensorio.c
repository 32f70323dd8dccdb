/* tensorio.c - the helpers shared by the tensor-file readers and writers
 * (npy.c, safetensors.c), declared in runtime/tensorio.h: whole-file reading,
 * atomic writing (runtime/outfile.c), error formatting, a header text
 * reader.  They are not part of the public API ("tensorio_" prefix).  The
 * dtypes and host tensors themselves are in base/tensor.c. */
#include "runtime/tensorio.h"
#include "runtime/outfile.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

/* Formats a message into err; returns false so a failing path can say
 * `return tensorio_error(...)`. */
bool tensorio_error(char *err, size_t errlen, const char *fmt, ...) {
    if (err && errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return false;
}

bool tensorio_text_error(TextCursor *c, const char *fmt, ...) {
    if (c->err && c->errlen > 0) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(c->err, c->errlen, fmt, ap);
        va_end(ap);
    }
    return false;
}

void tensorio_skip_space(TextCursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r')) c->p++;
}

bool tensorio_accept(TextCursor *c, char ch) {
    tensorio_skip_space(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return true;
    }
    return false;
}

/* Turns the message already in err into "prefix: message" (truncated to fit). */
void tensorio_prefix_error(char *err, size_t errlen, const char *prefix) {
    if (!err || errlen == 0)
        return;
    size_t plen = strlen(prefix) + 2, mlen = strnlen(err, errlen - 1);
    if (plen >= errlen) {
        snprintf(err, errlen, "%s", prefix);
        return;
    }
    if (mlen > errlen - 1 - plen)
        mlen = errlen - 1 - plen;
    memmove(err + plen, err, mlen);
    memcpy(err, prefix, plen - 2);
    memcpy(err + plen - 2, ": ", 2);
    err[plen + mlen] = '\0';
}

/* Formats a shape as NumPy prints it: "()", "(5,)", "(3, 4)". */
void tensorio_format_shape(char *buf, size_t buflen, int rank, const int64_t *shape) {
    size_t used = 0;
    used += (size_t)snprintf(buf, buflen, "(");
    for (int i = 0; i < rank && used < buflen; i++)
        used += (size_t)snprintf(buf + used, buflen - used, i ? ", %lld" : "%lld",
                                 (long long)shape[i]);
    if (used < buflen)
        snprintf(buf + used, buflen - used, rank == 1 ? ",)" : ")");
}

/* Reads a whole file into a malloc'd buffer (*data, *len); messages name the path. */
bool tensorio_map_file(const char *path, const uint8_t **data, size_t *len, char *err, size_t errlen) {
    *data = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size <= 0) {
        tensorio_error(err, errlen, "%s: %s", path,
                       fd < 0 ? strerror(errno) : "not a non-empty regular file");
        if (fd >= 0) close(fd);
        return false;
    }
    void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
    int map_errno = errno;
    close(fd);
    if (p == MAP_FAILED) return tensorio_error(err, errlen, "%s: cannot map: %s", path, strerror(map_errno));
    *data = p, *len = (size_t)st.st_size;
    mapped_file_register(p, *len, &st); /* its tensors named by place (base.h) */
    return true;
}

void tensorio_unmap(const uint8_t *data, size_t len) {
    if (!data) return;
    mapped_file_unregister(data);
    munmap((void *)data, len);
}

bool tensorio_read_file(const char *path, uint8_t **data, size_t *len, char *err, size_t errlen) {
    *data = NULL;
    *len = 0;
    FILE *f = fopen(path, "rb");
    if (!f) {
        tensorio_error(err, errlen, "%s: cannot open: %s", path, strerror(errno));
        return false;
    }
    /* Grow as we read rather than trusting a size from fseek/ftell: the path
     * may be a pipe or a file that changes under us. */
    size_t cap = 1 << 16, used = 0;
    uint8_t *buf = malloc(cap);
    while (buf) {
        used += fread(buf + used, 1, cap - used, f);
        if (used < cap)
            break;
        uint8_t *bigger = cap <= SIZE_MAX / 2 ? realloc(buf, cap * 2) : NULL;
        if (!bigger) {
            free(buf);
            buf = NULL;
            break;
        }
        buf = bigger;
        cap *= 2;
    }
    bool failed = !buf || ferror(f);
    int read_errno = errno;
    fclose(f);
    if (failed) {
        tensorio_error(err, errlen, "%s: %s", path, buf ? strerror(read_errno) : "out of memory");
        free(buf);
        return false;
    }
    *data = buf;
    *len = used;
    return true;
}

/* Writes the parts, in order, to a new file at path; a short write or a
 * failed close (a full disk shows up there) is an error. */
/* Whole files, written atomically (runtime/outfile.c): a reader sees the old
 * file or the new one, never a part. */
bool tensorio_write_file(const char *path, int nparts, const void *const *parts,
                         const size_t *lens, char *err, size_t errlen) {
    return outfile_write(path, nparts, parts, lens, err, errlen) == KILN_OK;
}
