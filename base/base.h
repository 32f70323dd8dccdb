/* base.h - the bottom layer of kiln (base/), which every other layer may use
 * and which uses nothing above it: host allocation, arenas, growable arrays
 * and strings, files and clocks (util.c); source text, locations and
 * diagnostics (diag.c); the size arithmetic of host tensors (tensor.c, whose
 * public half -- dtypes, KilnTensor -- is declared in include/kiln.h); the
 * files mapped for their bytes, by identity (mapped.c).
 * ir/ir.h includes this header, so code that includes ir/ir.h has it too. */
#ifndef KILN_BASE_H
#define KILN_BASE_H

#include "kiln.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

/* ------------------------------------------------------------------ util.c */

/* Host allocation choke point.  Out of host memory ends the process with
 * "kiln: out of host memory (WHAT)" and exit status 3 (out_of_host_memory;
 * LLVM's allocations end the same way: codegen/llvm_oom.cpp): kiln's host
 * allocations are small next to the tensors, which are checked separately
 * (kiln_tensor_init returns false). */
_Noreturn void out_of_host_memory(const char *what);
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);

/* The greatest common divisor of a and b, never negative; gcd_i64(0, 0) is 0. */
int64_t gcd_i64(int64_t a, int64_t b);

/* A block for tensor data (a run's intermediates, packed weights, per-thread
 * scratch): 64-byte aligned, and from HOST_HUGE_MIN_BYTES on aligned to 2 MiB
 * and advised for transparent huge pages (madvise MADV_HUGEPAGE: under the
 * kernel's 'madvise' mode, Debian's default, an unadvised block gets 4 KiB
 * pages).  NCHW kernels read and write a plane's rows a row or a plane apart
 * (12.5 KB at 56x56): a tile touches a page per row, more than the L1 TLB
 * holds.  NULL when out of memory (sizes the user chooses: a message on the
 * caller's error path); free with free(). */
enum { HOST_HUGE_MIN_BYTES = 2 << 20 };
void *host_block_alloc(size_t bytes);
/* `bytes` (at least one) rounded up to whole cache lines, aligned to one:
 * the small blocks kernels read (packed operands, a serial run's scratch,
 * tensors' data).  Not zeroed; NULL when out of memory; free with free(). */
enum { HOST_LINE_BYTES = 64 };
void *host_line_alloc(size_t bytes);

/* An arena per compilation: everything of one parse/build lives here and is
 * freed in one call. */
typedef struct Arena Arena;
Arena *arena_new(void);
void arena_free(Arena *a);
void *arena_alloc(Arena *a, size_t n); /* zeroed, 16-byte aligned */
char *arena_strdup(Arena *a, const char *s);
char *arena_strndup(Arena *a, const char *s, size_t n);
char *arena_printf(Arena *a, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define ARENA_NEW(a, T) ((T *)arena_alloc((a), sizeof(T)))
#define ARENA_ARRAY(a, T, n) ((T *)arena_alloc((a), sizeof(T) * (size_t)(n)))

/* Growable arrays: VEC(T) is a struct {T *data; int len, cap;}. */
#define VEC(T)                                                                                    \
    struct {                                                                                      \
        T *data;                                                                                  \
        int len, cap;                                                                             \
    }
#define VEC_PUSH(v, x)                                                                            \
    do {                                                                                          \
        if ((v).len == (v).cap) {                                                                 \
            (v).cap = (v).cap ? 2 * (v).cap : 8;                                                  \
            (v).data = xrealloc((v).data, sizeof(*(v).data) * (size_t)(v).cap);                   \
        }                                                                                         \
        (v).data[(v).len++] = (x);                                                                \
    } while (0)
#define VEC_FREE(v) (free((v).data), (v).data = NULL, (v).len = (v).cap = 0)

/* A growable string. */
typedef struct {
    char *data;
    size_t len, cap;
} StrBuf;
void sb_printf(StrBuf *sb, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sb_vprintf(StrBuf *sb, const char *fmt, va_list ap);
void sb_puts(StrBuf *sb, const char *s);
void sb_free(StrBuf *sb);

bool read_file(const char *path, char **data, size_t *len, char *err, size_t errlen);

/* A clock (CLOCK_MONOTONIC: wall time; CLOCK_THREAD_CPUTIME_ID,
 * CLOCK_PROCESS_CPUTIME_ID: CPU time) in milliseconds. */
double clock_ms(clockid_t clock);

/* ------------------------------------------------------------------ diag.c */

typedef struct {
    const char *path; /* as given by the user, for messages */
    const char *text; /* NUL-terminated */
    size_t len;
    bool listing; /* text lists an ONNX model's nodes, one a line: "path: node LINE: ..." */
} Source;

/* A place in the user's text.  Every AST and IR node carries one. */
typedef struct {
    const Source *src;
    int line, col; /* 1-based; 0 means "no location" */
} Loc;

typedef struct {
    Loc loc;
    char *msg;
    char *hint; /* may be NULL */
    int order;  /* diag_print: the order of report, which breaks ties of position */
} Diag;

typedef struct {
    VEC(Diag) items;
    int nerrors;
    bool suppress; /* set while re-checking an inlined graph body */
} DiagList;

void diag_error(DiagList *d, Loc loc, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Attaches a hint ("did you mean ...") to the last error reported. */
void diag_hint(DiagList *d, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Prints every diagnostic, ordered by position, in the spec's form. */
void diag_print(DiagList *d, FILE *out);
void diag_clear(DiagList *d);

/* "Did you mean ...?": feed candidates to suggest_try; best is the closest
 * within a third of the word's length (NULL if none is). */
typedef struct {
    const char *best;
    int dist;
} Suggest;
void suggest_try(Suggest *s, const char *want, const char *cand);

/* ---------------------------------------------------------------- tensor.c */

/* Byte size of a tensor of this dtype and shape, refusing negative
 * dimensions and any product that does not fit a size_t (shapes come from
 * untrusted files). */
bool tensorio_shape_bytes(KilnDType dt, int rank, const int64_t *shape, size_t *bytes);

/* The data of every host tensor kiln allocates (kiln_tensor_init: kiln
 * bench's and kiln run's inputs, tensors read from .npy and safetensors,
 * results, the REPL's values, the C API's copies): zeroed, at least one
 * byte, and aligned to a cache line (host_line_alloc), like the arena a
 * model's activations live in.  NULL when out of memory; free with free(). */
void *tensor_data_alloc(size_t bytes);

/* ---------------------------------------------------------------- mapped.c */

struct stat;

/* A read-only mapping [base, base+len) of the file st describes (its fstat
 * at mapping time), registered so that bytes inside it can be named by
 * where they lie (mapped_file_place); only a file unchanged for two seconds
 * is registered (else nothing happens).  Unregister before unmapping. */
void mapped_file_register(const void *base, size_t len, const struct stat *st);
void mapped_file_unregister(const void *base);

/* Where [p, p+len) lies, when wholly inside a registered mapping: the
 * file's device, inode, size, modification and change times (ns), the
 * offset and len -- the same words for the same bytes of an unchanged file
 * in every process, other words once it changes.  False: not known (hash
 * the bytes). */
enum { MAPPED_PLACE_WORDS = 7 };
bool mapped_file_place(const void *p, size_t len, uint64_t out[MAPPED_PLACE_WORDS]);

#endif
