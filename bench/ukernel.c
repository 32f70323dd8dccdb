/* bench/ukernel.c: the micro-kernel alone (bench/ukernel.sh builds and runs it).
 *
 * kiln_uk is kiln's own kiln.mm.ukernel (MR x NR = 12 x 32 on AVX-512), taken from a
 * model's emitted LLVM and compiled by llc for the CPU asked; the others are the same
 * loop (one broadcast of A per row shared by the row's FMAs) written with intrinsics for
 * other tiles.  Each is called over MC / MR prepacked A panels (in the L2) with one B
 * panel of KC x NR (in the L1), C accumulated; best of 5 by thread CPU time, 3 rounds.
 * Usage: ukernel [KC [MC [REPS]]] (256 240 400).  docs/performance.md, "Session 16: the
 * products on Zen 5". */
#define _GNU_SOURCE
#include <immintrin.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <stdint.h>
typedef void (*ukf)(const float *, const float *, int64_t, float *, int64_t, _Bool, const float *,
                    const float *, int64_t);
void kiln_uk(const float *, const float *, int64_t, float *, int64_t, _Bool, const float *, const float *,
             int64_t);

/* generic shared-broadcast kernel: MR rows x NV vectors, A packed MR per k, B packed NV*16 per k */
#define DEFK(NAME, MR, NV)                                                                                   \
    __attribute__((noinline)) void NAME(const float *A, const float *B, int64_t kc, float *C, int64_t ldc,   \
                                        _Bool acc, const float *A2, const float *pf, int64_t pfs) {          \
        __m512 c[MR][NV];                                                                                    \
        for (int i = 0; i < MR; i++)                                                                         \
            for (int v = 0; v < NV; v++) c[i][v] = _mm512_setzero_ps();                                      \
        _Pragma("clang loop unroll_count(2)") for (int64_t k = 0; k < kc; k++) {                             \
            __m512 b[NV];                                                                                    \
            for (int v = 0; v < NV; v++) b[v] = _mm512_load_ps(B + k * NV * 16 + v * 16);                    \
            for (int i = 0; i < MR; i++) {                                                                   \
                __m512 a = _mm512_set1_ps(A[k * MR + i]);                                                    \
                for (int v = 0; v < NV; v++) c[i][v] = _mm512_fmadd_ps(a, b[v], c[i][v]);                    \
            }                                                                                                \
        }                                                                                                    \
        for (int i = 0; i < MR; i++)                                                                         \
            for (int v = 0; v < NV; v++) {                                                                   \
                __m512 x = c[i][v];                                                                          \
                if (acc) x = _mm512_add_ps(x, _mm512_loadu_ps(C + i * ldc + v * 16));                        \
                _mm512_storeu_ps(C + i * ldc + v * 16, x);                                                   \
            }                                                                                                \
    }
DEFK(k12x2, 12, 2)
DEFK(k14x2, 14, 2)
DEFK(k8x3, 8, 3)
DEFK(k6x4, 6, 4)
DEFK(k7x4, 7, 4)
DEFK(k9x3, 9, 3)
DEFK(k10x2, 10, 2)

static double now(void) {
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return t.tv_sec + 1e-9 * t.tv_nsec;
}

int main(int argc, char **argv) {
    int KC = argc > 1 ? atoi(argv[1]) : 256, MC = argc > 2 ? atoi(argv[2]) : 240;
    int reps = argc > 3 ? atoi(argv[3]) : 400;
    struct {
        const char *n;
        ukf f;
        int mr, nv;
    } ks[] = {{"kiln12x32", kiln_uk, 12, 2}, {"c12x32", k12x2, 12, 2}, {"c14x32", k14x2, 14, 2},
              {"c8x48", k8x3, 8, 3},         {"c6x64", k6x4, 6, 4},    {"c7x64", k7x4, 7, 4},
              {"c9x48", k9x3, 9, 3},         {"c10x32", k10x2, 10, 2}};
    float *A = aligned_alloc(64, (size_t)(MC + 16) * KC * 4), *B = aligned_alloc(64, (size_t)KC * 64 * 4 * 4);
    float *C = aligned_alloc(64, 4096 * 64 * 4);
    for (size_t i = 0; i < (size_t)(MC + 16) * KC; i++) A[i] = (i % 7) * 0.01f;
    for (size_t i = 0; i < (size_t)KC * 256; i++) B[i] = (i % 5) * 0.01f;
    memset(C, 0, 4096 * 64 * 4);
    for (int r = 0; r < 3; r++)
        for (size_t q = 0; q < sizeof ks / sizeof ks[0]; q++) {
            int mr = ks[q].mr, nr = ks[q].nv * 16, panels = MC / mr;
            double best = 1e9;
            for (int t = 0; t < 5; t++) {
                double t0 = now();
                for (int rep = 0; rep < reps; rep++)
                    for (int p = 0; p < panels; p++)
                        ks[q].f(A + (size_t)p * mr * KC, B, KC, C + (size_t)p * mr * nr, nr, 1,
                                A + (size_t)p * mr * KC, A, 0);
                double dt = now() - t0;
                if (dt < best) best = dt;
            }
            double flops = 2.0 * panels * mr * nr * KC * reps;
            printf("%-10s KC=%d MC=%d: %.1f GFLOP/s\n", ks[q].n, KC, panels * mr, flops / best / 1e9);
        }
    return 0;
}
