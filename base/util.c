/* util.c - allocation choke point, arenas, growable strings, file reading. */
#include "base/base.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* Out of memory inside the compiler ends the process with exit status 3
 * (an environment problem, docs/cli.md), never an abort: every structure
 * being built is half made at that point, and a failure path on each of the
 * thousands of allocation sites would be code no test reaches.  Nothing the
 * user had is damaged, since outputs are written whole, by rename, only
 * after the work succeeded (runtime/outfile.h); _Exit skips atexit handlers
 * and static destructors (LLVM's), which could need memory themselves.
 * Tensors whose size the user chooses are not allocated here: their
 * failures are messages on the usual error paths. */
_Noreturn void out_of_host_memory(const char *what) {
    fprintf(stderr, "kiln: out of host memory (%s)\n", what);
    fflush(NULL);
    _Exit(3);
}

static _Noreturn void out_of_memory(size_t n) {
    char what[64];
    snprintf(what, sizeof what, "allocating %zu bytes", n);
    out_of_host_memory(what);
}

/* Test hook: KILN_FAIL_ALLOC=N makes the Nth allocation through xmalloc,
 * xcalloc or xrealloc (1-based, counted over the process) fail, so that
 * tests/cli/oom.sh can show that every failure point ends as above.  The
 * count is the only mutable state here; read once, then atomic. */
static bool injected_failure(void) {
    static _Atomic long long fail_at = -1, count;
    long long at = fail_at;
    if (at < 0) {
        const char *v = getenv("KILN_FAIL_ALLOC");
        at = v && *v ? atoll(v) : 0;
        fail_at = at;
    }
    return at > 0 && ++count == at;
}

void *xmalloc(size_t n) {
    void *p = injected_failure() ? NULL : malloc(n ? n : 1);
    if (!p) out_of_memory(n);
    return p;
}

void *xcalloc(size_t n, size_t size) {
    void *p = injected_failure() ? NULL : calloc(n ? n : 1, size ? size : 1);
    if (!p) out_of_memory(n * size);
    return p;
}

int64_t gcd_i64(int64_t a, int64_t b) {
    while (b) {
        int64_t t = a % b;
        a = b, b = t;
    }
    return a < 0 ? -a : a;
}

void *host_line_alloc(size_t bytes) {
    const size_t line = HOST_LINE_BYTES;
    if (bytes > SIZE_MAX - (line - 1)) return NULL;
    return aligned_alloc(line, bytes > 0 ? (bytes + line - 1) / line * line : line);
}

void *host_block_alloc(size_t bytes) {
    const size_t huge = (size_t)HOST_HUGE_MIN_BYTES;
    if (bytes < huge) return host_line_alloc(bytes);
    size_t whole = (bytes + huge - 1) / huge * huge;
    void *p = aligned_alloc(huge, whole);
    /* advice only: a kernel without THP (or with it off) keeps small pages */
#ifdef MADV_HUGEPAGE
    if (p) (void)madvise(p, whole, MADV_HUGEPAGE);
#endif
    return p;
}

void *xrealloc(void *p, size_t n) {
    void *q = injected_failure() ? NULL : realloc(p, n ? n : 1);
    if (!q) out_of_memory(n);
    return q;
}

char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    return memcpy(xmalloc(n), s, n);
}

/* The arena is a list of chunks; big requests get a chunk of their own. */
typedef struct Chunk {
    struct Chunk *next;
    size_t used, size;
    _Alignas(16) unsigned char data[];
} Chunk;

struct Arena {
    Chunk *head;
};

enum { ARENA_CHUNK = 64 * 1024 };

Arena *arena_new(void) { return xcalloc(1, sizeof(Arena)); }

void arena_free(Arena *a) {
    if (!a) return;
    for (Chunk *c = a->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    free(a);
}

void *arena_alloc(Arena *a, size_t n) {
    n = (n + 15) & ~(size_t)15;
    Chunk *c = a->head;
    if (!c || c->size - c->used < n) {
        size_t size = n > ARENA_CHUNK / 4 ? n : ARENA_CHUNK;
        c = xmalloc(sizeof(Chunk) + size);
        c->used = 0;
        c->size = size;
        if (size == n && a->head) { /* a big block: keep the current chunk in front */
            c->next = a->head->next;
            a->head->next = c;
        } else {
            c->next = a->head;
            a->head = c;
        }
    }
    void *p = c->data + c->used;
    c->used += n;
    memset(p, 0, n);
    return p;
}

char *arena_strndup(Arena *a, const char *s, size_t n) {
    char *p = arena_alloc(a, n + 1);
    if (n) memcpy(p, s, n); /* s may be NULL when n is 0 (an empty protobuf string) */
    p[n] = 0;
    return p;
}

char *arena_strdup(Arena *a, const char *s) { return arena_strndup(a, s, strlen(s)); }

char *arena_printf(Arena *a, const char *fmt, ...) {
    StrBuf sb = {0};
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(&sb, fmt, ap);
    va_end(ap);
    char *p = arena_strndup(a, sb.data ? sb.data : "", sb.len);
    sb_free(&sb);
    return p;
}

void sb_vprintf(StrBuf *sb, const char *fmt, va_list ap) {
    va_list ap2;
    va_copy(ap2, ap);
    int n = vsnprintf(NULL, 0, fmt, ap2);
    va_end(ap2);
    if (n < 0) return;
    if (sb->len + (size_t)n + 1 > sb->cap) {
        sb->cap = (sb->len + (size_t)n + 1) * 2;
        sb->data = xrealloc(sb->data, sb->cap);
    }
    vsnprintf(sb->data + sb->len, (size_t)n + 1, fmt, ap);
    sb->len += (size_t)n;
}

void sb_printf(StrBuf *sb, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(sb, fmt, ap);
    va_end(ap);
}

void sb_puts(StrBuf *sb, const char *s) { sb_printf(sb, "%s", s); }

void sb_free(StrBuf *sb) {
    free(sb->data);
    sb->data = NULL;
    sb->len = sb->cap = 0;
}

bool read_file(const char *path, char **data, size_t *len, char *err, size_t errlen) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, errlen, "cannot open %s: %s", path, strerror(errno));
        return false;
    }
    StrBuf sb = {0};
    char buf[65536];
    size_t n;
    while ((n = fread(buf, 1, sizeof buf, f)) > 0) {
        if (sb.len + n + 1 > sb.cap) {
            sb.cap = (sb.len + n + 1) * 2;
            sb.data = xrealloc(sb.data, sb.cap);
        }
        memcpy(sb.data + sb.len, buf, n);
        sb.len += n;
    }
    bool failed = ferror(f);
    fclose(f);
    if (failed) {
        snprintf(err, errlen, "cannot read %s: %s", path, strerror(errno));
        sb_free(&sb);
        return false;
    }
    if (!sb.data) sb.data = xcalloc(1, 1);
    sb.data[sb.len] = 0;
    *data = sb.data;
    *len = sb.len;
    return true;
}

double clock_ms(clockid_t clock) {
    struct timespec ts;
    clock_gettime(clock, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}
