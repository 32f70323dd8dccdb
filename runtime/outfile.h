/* outfile.h - the one way kiln writes a file the user named (the command
 * line's -o/--out, `aot -o DIR`, the REPL's :save, the tensor writers).
 *
 * Guarantees, so that no file a user already had is ever damaged:
 *  - callers produce their bytes first and write last, so a failed command
 *    leaves its output as it was;
 *  - an output may not be one of the command's inputs: compared by device and
 *    inode, so neither a symlink nor a hard link gets round it;
 *  - an existing file is replaced only when it holds what kiln would write
 *    there (OutKind) -- a .npy where a .npy goes -- unless the user forces it;
 *  - the bytes go to a temporary file beside the target; every write, the
 *    flush and the close are checked; then one rename() puts the whole file
 *    in place.  A symlink is followed: the file it names is replaced and the
 *    link kept;
 *  - a bundle directory (`aot -o DIR`) is built whole beside its place and
 *    swapped in; kiln marks the directories it made with a manifest and
 *    replaces only those (or empty ones), removing the old bundle's files.
 * Refusals are usage errors (KILN_ERR_USAGE), failing writes environment
 * errors (KILN_ERR_DEVICE), each with a message naming the path and why.
 *
 * Standard output gets the same care: stdio_guard_begin() makes a closed
 * stdout fail like a full disk (without letting a file opened later take
 * its descriptor), and stdio_guard_end() reports any failed write or close
 * as exit status 3. */
#ifndef KILN_OUTFILE_H
#define KILN_OUTFILE_H

#include "ir/ir.h"

/* What an output is, which decides what an existing file there may be. */
typedef enum {
    OUT_NPY,    /* a .npy file */
    OUT_EMIT,   /* a stage printed by `emit` (any stage's form), or an empty file */
    OUT_TRACE,  /* a trace `bench --trace` wrote (starts with TRACE_JSON_HEAD, ir.h) */
    OUT_REPORT, /* a page `bench --report` wrote (starts with REPORT_HTML_HEAD, runtime/report.h) */
} OutKind;

/* The files a command reads, by identity. */
typedef struct {
    char *what; /* "the program", "the --in x file" ... for messages (owned) */
    unsigned long long dev, ino;
} InputId;
typedef struct {
    VEC(InputId) ids;
} InputFiles;

/* Records `path`, labelled `what` (copied).  A path that does not exist is
 * skipped: reading it fails anyway. */
void input_files_add(InputFiles *in, const char *path, const char *what);
void input_files_free(InputFiles *in);

/* May `path` receive an output of `kind`?  `what` names the option for
 * messages ("--out", "-o").  inputs may be NULL. */
KilnStatus outfile_check(const char *path, OutKind kind, const InputFiles *inputs, bool force,
                         const char *what, char *err, size_t errlen);

/* Writes nparts byte ranges to `path` atomically (temporary file + rename). */
KilnStatus outfile_write(const char *path, int nparts, const void *const *parts, const size_t *lens,
                         char *err, size_t errlen);

/* write(2) until all n bytes are written (EINTR retried); false with errno
 * set otherwise. */
bool write_fully(int fd, const void *buf, size_t n);

/* A bundle directory under construction. */
typedef struct {
    char *target; /* as the user named it */
    char *tmp;    /* the directory being filled, beside the target */
    bool merge;   /* forced into a directory kiln did not make: files are
                     moved in one by one, nothing else there is touched */
} OutDir;

/* Checks that `dir` is absent, empty, a bundle kiln wrote (its manifest lists
 * exactly what is in it), or that force is set; then makes the temporary
 * directory the caller writes into (d->tmp). */
KilnStatus outdir_begin(OutDir *d, const char *dir, const InputFiles *inputs, bool force, const char *what,
                        char *err, size_t errlen);
/* Writes the manifest and puts the bundle in place (see above). */
KilnStatus outdir_commit(OutDir *d, char *err, size_t errlen);
/* Removes the temporary directory (after a failure, or after commit). */
void outdir_end(OutDir *d);

/* Standard output: see the top of this file.  stdio_guard_end returns
 * `status`, or KILN_ERR_DEVICE (after a message) when output was lost. */
void stdio_guard_begin(void);
int stdio_guard_end(int status);

#endif
