/* embed.c - a program that embeds kiln through build/libkiln.a and
 * include/kiln.h alone, as a user's program (or the Go package) would.
 *
 * It defines functions with the names kiln uses inside (xmalloc, read_file,
 * arena_new, tp_run, fuse_graph, exec_run): were any of those global in
 * libkiln.a, this would not link ("multiple definition").  It then uses the
 * public API: a tensor set and read back, written to .npy and read again.
 * Prints "embed: N passed, N failed" (tests/embed/run.sh checks the rest). */
#include "kiln.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* the embedding program's own functions, named as kiln's internal ones */
int xmalloc(int x) { return x + 1; }
int read_file(void) { return 2; }
int arena_new(void) { return 3; }
int tp_run(void) { return 4; }
int fuse_graph(void) { return 5; }
int exec_run(void) { return 6; }

static int npass, nfail;
#define CHECK(cond, what)                                                                                    \
    do {                                                                                                     \
        if (cond)                                                                                            \
            npass++;                                                                                         \
        else                                                                                                 \
            nfail++, printf("FAIL %s\n", what);                                                              \
    } while (0)

int main(void) {
    CHECK(xmalloc(1) + read_file() + arena_new() + tp_run() + fuse_graph() + exec_run() == 22,
          "the program's own functions are called");
    KilnTensor t;
    int64_t shape[2] = {2, 3};
    CHECK(kiln_tensor_init(&t, KILN_F16, 2, shape) && kiln_tensor_numel(&t) == 6, "kiln_tensor_init");
    for (int i = 0; i < 6; i++) kiln_tensor_set(&t, i, i * 0.5 - 1);
    char path[] = "/tmp/kiln-embed-XXXXXX";
    int fd = mkstemp(path);
    if (fd >= 0) close(fd);
    char err[512] = "";
    CHECK(fd >= 0 && kiln_npy_write(path, &t, err, sizeof err), "kiln_npy_write");
    KilnTensor back = {0};
    CHECK(kiln_npy_read(path, &back, err, sizeof err) && back.dtype == KILN_F16 && back.rank == 2,
          "kiln_npy_read");
    bool same = kiln_tensor_numel(&back) == 6;
    for (int i = 0; same && i < 6; i++) same = kiln_tensor_get(&back, i) == i * 0.5 - 1;
    CHECK(same, "the values come back");
    CHECK(strcmp(kiln_dtype_name(KILN_BF16), "bf16") == 0 && kiln_dtype_size(KILN_I64) == 8, "dtype names");
    unlink(path);
    kiln_tensor_free(&t);
    kiln_tensor_free(&back);
    printf("embed: %d passed, %d failed\n", npass, nfail);
    return nfail ? 1 : 0;
}
