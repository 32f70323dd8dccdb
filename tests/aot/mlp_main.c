/* mlp_main.c - drives an ahead-of-time CPU build of examples/mlp.kiln
 * (tests/aot/cpu.sh).  Built with -DB=<batch> against DIR/mlp.h and mlp.o:
 * fills every input with deterministic values, runs mlp_run, and writes
 * the inputs and the output as raw little-endian f32 files into the
 * directory given as argv[1] (x.f32, w1.f32, ... out.f32), for the script to
 * compare with `kiln run --device=ref` on the same inputs. */
#include "mlp.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef B
#define B 2
#endif

static float *make(const char *dir, const char *name, size_t n, unsigned seed) {
    float *p = malloc(n * sizeof(float));
    if (!p) exit(3);
    for (size_t i = 0; i < n; i++) p[i] = (float)(0.5 * sin(0.37 * (double)i + seed) + 0.01 * (double)(seed % 7));
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.f32", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, sizeof(float), n, f) != n || fclose(f) != 0) exit(4);
    return p;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: mlp_main DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    float *x = make(dir, "x", (size_t)B * 784, 1), *w1 = make(dir, "w1", 784 * 256, 2);
    float *b1 = make(dir, "b1", 256, 3), *w2 = make(dir, "w2", 256 * 10, 4), *b2 = make(dir, "b2", 10, 5);
    for (size_t i = 0; i < 784 * 256; i++) w1[i] *= 0.1f; /* keep the logits moderate */
    char path[4096];
    snprintf(path, sizeof path, "%s/w1.f32", dir); /* rewrite the scaled w1 */
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(w1, sizeof(float), 784 * 256, f) != 784 * 256 || fclose(f) != 0) return 4;
    float *out = calloc((size_t)B * 10, sizeof(float));
    if (!out) return 3;
    int rc = mlp_run(x, w1, b1, w2, b2, out);
    if (rc != 0) {
        fprintf(stderr, "mlp_run returned %d\n", rc);
        return 1;
    }
    snprintf(path, sizeof path, "%s/out.f32", dir);
    f = fopen(path, "wb");
    if (!f || fwrite(out, sizeof(float), (size_t)B * 10, f) != (size_t)B * 10 || fclose(f) != 0) return 4;
    /* softmax rows sum to 1 */
    for (int r = 0; r < B; r++) {
        double s = 0;
        for (int c = 0; c < 10; c++) s += out[r * 10 + c];
        if (fabs(s - 1) > 1e-4) {
            fprintf(stderr, "row %d sums to %g\n", r, s);
            return 1;
        }
    }
    free(x), free(w1), free(b1), free(w2), free(b2), free(out);
    return 0;
}
