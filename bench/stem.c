/* bench/stem.c: ResNet's 7x7 stride-2 stem (3 -> 64 channels, 224x224 -> 112x112, pad 3,
 * bias + ReLU) in a direct form kiln does not have, on one core: the padded input rows
 * de-interleaved into even and odd columns (so that 16 output pixels of one tap are 16
 * contiguous floats), output pixels in vectors over the flattened 112x112 plane, the
 * weights broadcast, register tiles of 8 channels x 3 vectors (24 accumulators) over the
 * 147 taps, and the sums stored straight into the NCHW output rows (no transposes, no row
 * buffer).  kiln's stem runs swapped (pixels broadcast, channels in vectors: taps,
 * kiln.mm.ukernel.tap2.r14v2) and transposes every tile into a row buffer before its row
 * epilogue.  Checked against a naive sum (max error printed); best of REPS by wall time.
 *   clang -O3 -march=x86-64-v4 -mprefer-vector-width=512 bench/stem.c -o build/stem -lm
 *   build/stem [IMAGES [REPS]]        (1 100; 8 8 for batch 8)
 * Results: docs/performance.md, "Session 18: the stem and the stride-2 layers". */
#define _GNU_SOURCE
#include <immintrin.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { C = 3, H = 224, W = 224, M = 64, K = 7, S = 2, P = 3, OH = 112, OW = 112, HP = H + 2 * P };
enum { PH = 128 /* a phase row: 115 columns used */, TAPS = C * K * K, G = 8, NV = 3, NVEC = OH * OW / 16 };

static double now_ms(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1e3 + t.tv_nsec / 1e6;
}

/* D[c][r][phase][j] = xpad[c][r][2j + phase], xpad the input padded by P */
static void deinterleave(const float *x, float *D) {
    float row[2 * PH + 16] __attribute__((aligned(64)));
    const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    const __m512i odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    for (int c = 0; c < C; c++)
        for (int r = 0; r < HP; r++) {
            float *d0 = D + (size_t)(c * HP + r) * 2 * PH, *d1 = d0 + PH;
            int ih = r - P;
            if (ih < 0 || ih >= H) {
                memset(d0, 0, 2 * PH * sizeof(float));
                continue;
            }
            memset(row, 0, sizeof row);
            memcpy(row + P, x + ((size_t)c * H + ih) * W, W * sizeof(float));
            for (int j = 0; j < PH; j += 16) {
                __m512 a = _mm512_loadu_ps(row + 2 * j), b = _mm512_loadu_ps(row + 2 * j + 16);
                _mm512_storeu_ps(d0 + j, _mm512_permutex2var_ps(a, even, b));
                _mm512_storeu_ps(d1 + j, _mm512_permutex2var_ps(a, odd, b));
            }
        }
}

/* wp[g][tap][G] (tap = (c*K + kh)*K + kw) and each tap's offset in D */
static int tap_off[TAPS];
static void pack_weights(const float *w, float *wp) {
    for (int g = 0; g < M / G; g++)
        for (int t = 0; t < TAPS; t++)
            for (int j = 0; j < G; j++)
                wp[((size_t)g * TAPS + t) * G + j] = w[(size_t)(g * G + j) * TAPS + t];
    for (int c = 0; c < C; c++)
        for (int kh = 0; kh < K; kh++)
            for (int kw = 0; kw < K; kw++)
                tap_off[(c * K + kh) * K + kw] = (c * HP + kh) * 2 * PH + (kw & 1) * PH + (kw >> 1);
}

/* output vectors [q0, q1) of the flattened plane (vector q: row q / 7, columns 16 * (q % 7)) */
__attribute__((noinline)) static void tiles(const float *D, const float *wp, const float *bias, float *y,
                                            int q0, int q1) {
    for (int q = q0; q < q1; q += NV) {
        const float *base[NV];
        int live = q1 - q < NV ? q1 - q : NV;
        for (int v = 0; v < NV; v++) {
            int qq = q + (v < live ? v : 0), oh = qq / (OW / 16), vw = qq % (OW / 16);
            base[v] = D + (size_t)(S * oh) * 2 * PH + 16 * vw;
        }
        for (int g = 0; g < M / G; g++) {
            __m512 acc[G][NV];
            for (int j = 0; j < G; j++)
                for (int v = 0; v < NV; v++) acc[j][v] = _mm512_setzero_ps();
            const float *wg = wp + (size_t)g * TAPS * G;
            for (int t = 0; t < TAPS; t++) {
                __m512 xv[NV];
                for (int v = 0; v < NV; v++) xv[v] = _mm512_loadu_ps(base[v] + tap_off[t]);
                for (int j = 0; j < G; j++) {
                    __m512 b = _mm512_set1_ps(wg[t * G + j]);
                    for (int v = 0; v < NV; v++) acc[j][v] = _mm512_fmadd_ps(b, xv[v], acc[j][v]);
                }
            }
            for (int v = 0; v < live; v++) {
                int qq = q + v, oh = qq / (OW / 16), vw = qq % (OW / 16);
                for (int j = 0; j < G; j++) {
                    __m512 s = _mm512_add_ps(acc[j][v], _mm512_set1_ps(bias[g * G + j]));
                    _mm512_storeu_ps(y + ((size_t)(g * G + j) * OH + oh) * OW + 16 * vw,
                                     _mm512_max_ps(s, _mm512_setzero_ps()));
                }
            }
        }
    }
}

static void stem(const float *x, const float *wp, const float *bias, float *y, float *D) {
    deinterleave(x, D);
    tiles(D, wp, bias, y, 0, NVEC);
}

int main(int argc, char **argv) {
    int n = argc > 1 ? atoi(argv[1]) : 1, reps = argc > 2 ? atoi(argv[2]) : 100;
    if (n < 1 || reps < 1) return fprintf(stderr, "usage: stem [IMAGES [REPS]]\n"), 2;
    size_t xn = (size_t)C * H * W, yn = (size_t)M * OH * OW;
    float *x = aligned_alloc(64, sizeof(float) * n * xn), *w = aligned_alloc(64, sizeof(float) * M * TAPS);
    float *wp = aligned_alloc(64, sizeof(float) * M * TAPS), *b = aligned_alloc(64, sizeof(float) * 64);
    float *y = aligned_alloc(64, sizeof(float) * n * yn),
          *D = aligned_alloc(64, sizeof(float) * (C * HP * 2 * PH + 64));
    if (!x || !w || !wp || !b || !y || !D) return fprintf(stderr, "out of memory\n"), 1;
    srand(1);
    for (size_t i = 0; i < n * xn; i++) x[i] = rand() / (float)RAND_MAX - 0.5f;
    for (int i = 0; i < M * TAPS; i++) w[i] = (rand() / (float)RAND_MAX - 0.5f) * 0.1f;
    for (int i = 0; i < M; i++) b[i] = (rand() / (float)RAND_MAX - 0.5f) * 0.1f;
    pack_weights(w, wp);
    stem(x, wp, b, y, D);
    double maxe = 0; /* image 0, every 7th channel and 5th row */
    for (int m = 0; m < M; m += 7)
        for (int oh = 0; oh < OH; oh += 5)
            for (int ow = 0; ow < OW; ow++) {
                double s = b[m];
                for (int c = 0; c < C; c++)
                    for (int kh = 0; kh < K; kh++)
                        for (int kw = 0; kw < K; kw++) {
                            int ih = oh * S + kh - P, iw = ow * S + kw - P;
                            if (ih >= 0 && ih < H && iw >= 0 && iw < W)
                                s += (double)x[(c * H + ih) * W + iw] * w[((m * C + c) * K + kh) * K + kw];
                        }
                double e = fabs((s > 0 ? s : 0) - y[(m * OH + oh) * OW + ow]);
                if (e > maxe) maxe = e;
            }
    double best = 1e30;
    for (int r = 0; r < reps; r++) {
        double t0 = now_ms();
        for (int i = 0; i < n; i++) stem(x + i * xn, wp, b, y + i * yn, D);
        double t = now_ms() - t0;
        if (t < best) best = t;
    }
    double flop = 2.0 * n * M * OH * OW * TAPS;
    printf("%d image(s): best %.4f ms, %.1f GFLOP/s, max error %.2e\n", n, best, flop / best / 1e6, maxe);
    return maxe < 1e-4 ? 0 : 1;
}
