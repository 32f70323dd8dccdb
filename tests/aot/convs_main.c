/* convs_main.c - drives an ahead-of-time CPU build of tests/aot/convs.kiln
 * (tests/aot/cpu.sh).  Built with -DB=<batch> against DIR/convs.h and
 * convs.o: fills every input with deterministic values (the weights scaled
 * by 1 / sqrt(fan-in), so that every layer's values stay near 1), runs
 * convs_run, and writes the inputs and the output as raw little-endian f32
 * files into the directory given as argv[1] (x.f32, w0.f32, ... out.f32),
 * for the script to compare with `kiln run --device=ref` on the same inputs. */
#include "convs.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

#ifndef B
#define B 2
#endif

static float *make(const char *dir, const char *name, size_t n, unsigned seed, double scale) {
    float *p = malloc(n * sizeof(float));
    if (!p) exit(3);
    for (size_t i = 0; i < n; i++)
        p[i] = (float)(scale * (0.5 * sin(0.37 * (double)i + seed) + 0.01 * (double)(seed % 7)));
    char path[4096];
    snprintf(path, sizeof path, "%s/%s.f32", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(p, sizeof(float), n, f) != n || fclose(f) != 0) exit(4);
    return p;
}

int main(int argc, char **argv) {
    if (argc != 2) {
        fprintf(stderr, "usage: convs_main DIR\n");
        return 2;
    }
    const char *dir = argv[1];
    float *x = make(dir, "x", (size_t)B * 16 * 28 * 28, 1, 1.0);
    float *w0 = make(dir, "w0", 32 * 16 * 9, 2, 1 / sqrt(16 * 9.0)), *b0 = make(dir, "b0", 32, 3, 0.1);
    float *wd = make(dir, "wd", 32 * 9, 4, 1 / 3.0), *bd = make(dir, "bd", 32, 5, 0.1);
    float *w1 = make(dir, "w1", 64 * 32, 6, 1 / sqrt(32.0)), *b1 = make(dir, "b1", 64, 7, 0.1);
    float *w2 = make(dir, "w2", 64 * 64 * 9, 8, 1 / sqrt(64 * 9.0)), *b2 = make(dir, "b2", 64, 9, 0.1);
    float *w3 = make(dir, "w3", 96 * 64 * 9, 10, 1 / sqrt(64 * 9.0)), *b3 = make(dir, "b3", 96, 11, 0.1);
    size_t nout = (size_t)B * 96 * 14 * 14;
    float *out = calloc(nout, sizeof(float));
    if (!out) return 3;
    int rc = convs_run(x, w0, b0, wd, bd, w1, b1, w2, b2, w3, b3, out);
    if (rc != 0) {
        fprintf(stderr, "convs_run returned %d\n", rc);
        return 1;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/out.f32", dir);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(out, sizeof(float), nout, f) != nout || fclose(f) != 0) return 4;
    free(x), free(w0), free(b0), free(wd), free(bd), free(w1), free(b1);
    free(w2), free(b2), free(w3), free(b3), free(out);
    return 0;
}
