/* test_api.c - the public model API (include/kiln.h, app/api.c), as a C
 * program that embeds kiln sees it (this file includes only kiln.h):
 *
 *   - a graph compiled from text, weights bound, run from 8 threads at once
 *     on the cpu and kir devices, every result against the same model on
 *     the reference interpreter (`ref`, the oracle; rtol 1e-5, atol 1e-6);
 *   - symbolic dimensions: fixed by the options (compiled at load), or
 *     taken from each run's inputs (one compilation per batch size, made on
 *     first use, several sizes from several threads at once);
 *   - kiln_model_plan + kiln_model_run_into: results in the caller's memory;
 *   - binding: the value is copied (changing the caller's tensor later
 *     changes nothing), a result that is a parameter is a copy, binding
 *     again while 4 threads run gives each run the old or the new value; load_weights from a .safetensors
 * file, all or nothing, its tensors bound in place (mapped) on cpu, kir and ref at any offset;
 *     six weights of a three-layer graph bound in one batch (load_weights,
 *     then the compilations), rebound, a file with a wrong tensor in the
 *     middle (nothing bound), some left to the inputs: against `ref`;
 *   - every error path: status, file, line, column and message;
 *   - use after close (every function), closing while runs are in flight,
 *     and 200 load/bind/run/close cycles (leaks: `make asan`);
 *   - the ONNX LeNet of tests/onnx, when it is there, against its NumPy
 *     output (rtol 1e-4) at two batch sizes, on cpu, ref and kir (its
 *     initializers views of the mapped file where the device takes them).
 * Last line: "test_api: N passed, N failed". */
#include "kiln.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

/* x: [B, 16] through a hidden layer, then a second result that is the
 * parameter b itself (results never alias weights). */
static const char *const source =
    "# a test model\n"
    "graph net(x: f32[B, 16], w: f32[16, 8], b: f32[8]) -> (f32[B, 8], f32[8]) {\n"
    "    h = relu(x @ w + b)\n"
    "    return tanh(h) * 2.0, b\n"
    "}\n"
    "graph twice(x: f32[N]) -> f32[N] {\n"
    "    return x * 2.0\n"
    "}\n";

static uint64_t rng_state = 12345;
static float frand(void) {
    rng_state = rng_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(rng_state >> 11) * 0x1.0p-53 * 2.0 - 1.0);
}

static KilnTensor make(int rank, const int64_t *shape) {
    KilnTensor t;
    if (!kiln_tensor_init(&t, KILN_F32, rank, shape)) abort();
    for (int64_t i = 0; i < kiln_tensor_numel(&t); i++) ((float *)t.data)[i] = frand();
    return t;
}

/* a against b (same dtype and shape): |a - b| <= atol + rtol |b| everywhere. */
static bool close_enough_tol(const KilnTensor *a, const KilnTensor *b, double rtol, double atol,
                             double *worst) {
    *worst = 0;
    if (a->dtype != b->dtype || a->rank != b->rank) return false;
    for (int k = 0; k < a->rank; k++)
        if (a->shape[k] != b->shape[k]) return false;
    for (int64_t i = 0; i < kiln_tensor_numel(a); i++) {
        double x = kiln_tensor_get(a, i), y = kiln_tensor_get(b, i), d = fabs(x - y);
        if (d > *worst) *worst = d;
        if (d > atol + rtol * fabs(y)) return false;
    }
    return true;
}

static bool close_enough(const KilnTensor *a, const KilnTensor *b, double *worst) {
    return close_enough_tol(a, b, 1e-5, 1e-6, worst);
}

/* An f32 copy of t. */
static bool tensor_like(const KilnTensor *t, KilnTensor *out) {
    if (!kiln_tensor_init(out, KILN_F32, t->rank, t->shape)) return false;
    for (int64_t i = 0; i < kiln_tensor_numel(t); i++) kiln_tensor_set(out, i, kiln_tensor_get(t, i));
    return true;
}

static KilnModel *open_model(const char *device, const char *graph, const KilnDim *dims, int ndims) {
    KilnError err = {0};
    KilnModelOptions opt = {.device = device, .graph = graph, .dims = dims, .ndims = ndims};
    KilnModel *m = kiln_model_compile(source, &opt, &err);
    CHECK(m != NULL, "compile on %s: %s", device, err.message);
    kiln_error_clear(&err);
    return m;
}

static void free_outputs(KilnTensor *out, int n) {
    for (int i = 0; i < n; i++) kiln_tensor_free(&out[i]);
}

/* ------------------------------------------------------------ threads */

enum { THREADS = 8, RUNS = 25 };

typedef struct {
    KilnModel *model, *ref;
    int id;
    bool vary_batch; /* each run picks a batch size 1..4 */
} Worker;

static void *worker(void *arg) {
    Worker *w = arg;
    for (int r = 0; r < RUNS; r++) {
        int64_t shape[2] = {w->vary_batch ? 1 + (w->id + r) % 4 : 4, 16};
        KilnTensor x;
        pthread_mutex_lock(&check_lock); /* frand's state */
        x = make(2, shape);
        pthread_mutex_unlock(&check_lock);
        KilnTensor in[3] = {x}, got[2] = {{0}}, want[2] = {{0}};
        KilnError err = {0};
        KilnStatus st = kiln_model_run(w->model, in, got, &err);
        CHECK(st == KILN_OK, "thread %d run %d: %s", w->id, r, err.message);
        KilnStatus rst = kiln_model_run(w->ref, in, want, &err);
        CHECK(rst == KILN_OK, "thread %d reference run %d: %s", w->id, r, err.message);
        double worst;
        if (st == KILN_OK && rst == KILN_OK) {
            CHECK(close_enough(&got[0], &want[0], &worst), "thread %d run %d B=%lld: result 0 off by %g",
                  w->id, r, (long long)shape[0], worst);
            CHECK(close_enough(&got[1], &want[1], &worst), "thread %d run %d: result 1 off by %g", w->id, r,
                  worst);
            free_outputs(got, 2);
            free_outputs(want, 2);
        }
        kiln_error_clear(&err);
        kiln_tensor_free(&x);
    }
    return NULL;
}

static void bind_weights(KilnModel *m, const KilnTensor *wt, const KilnTensor *bt) {
    KilnError err = {0};
    CHECK(kiln_model_bind(m, "w", wt, &err) == KILN_OK, "bind w: %s", err.message);
    CHECK(kiln_model_bind(m, "b", bt, &err) == KILN_OK, "bind b: %s", err.message);
    kiln_error_clear(&err);
}

static void run_threads(Worker *w, int n) {
    pthread_t t[THREADS];
    for (int i = 0; i < n; i++) pthread_create(&t[i], NULL, worker, &w[i]);
    for (int i = 0; i < n; i++) pthread_join(t[i], NULL);
}

static void test_concurrent(const char *device, bool fixed_batch) {
    KilnDim dims[1] = {{"B", 4}};
    KilnModel *m = open_model(device, NULL, dims, fixed_batch ? 1 : 0);
    KilnModel *ref = open_model("ref", NULL, NULL, 0);
    if (!m || !ref) {
        kiln_model_free(m), kiln_model_free(ref);
        return;
    }
    int64_t ws[2] = {16, 8}, bs[1] = {8};
    KilnTensor wt = make(2, ws), bt = make(1, bs);
    bind_weights(m, &wt, &bt);
    bind_weights(ref, &wt, &bt);
    CHECK(kiln_model_param_bound(m, 1) && kiln_model_param_bound(m, 2) && !kiln_model_param_bound(m, 0),
          "bound flags");
    kiln_tensor_free(&wt); /* the model holds its own copy */
    kiln_tensor_free(&bt);
    Worker w[THREADS];
    for (int i = 0; i < THREADS; i++) w[i] = (Worker){m, ref, i, !fixed_batch};
    run_threads(w, THREADS);
    KilnError err = {0};
    CHECK(kiln_model_close(m, &err) == KILN_OK, "close: %s", err.message);
    kiln_model_free(m);
    kiln_model_free(ref);
    kiln_error_clear(&err);
}

/* ------------------------------------------------------------ binding */

static void test_binding(void) {
    KilnModel *m = open_model("cpu", NULL, (KilnDim[]){{"B", 2}}, 1);
    if (!m) return;
    int64_t xs[2] = {2, 16}, ws[2] = {16, 8}, bs[1] = {8};
    KilnTensor x = make(2, xs), wt = make(2, ws), bt = make(1, bs);
    bind_weights(m, &wt, &bt);
    KilnTensor in[3] = {x}, a[2], b[2];
    KilnError err = {0};
    CHECK(kiln_model_run(m, in, a, &err) == KILN_OK, "run: %s", err.message);
    ((float *)bt.data)[0] += 100;   /* the caller's tensor changes, the model's copy does not */
    ((float *)a[1].data)[1] += 100; /* nor does a result that returned the parameter */
    CHECK(kiln_model_run(m, in, b, &err) == KILN_OK, "run: %s", err.message);
    double worst;
    CHECK(close_enough(&a[0], &b[0], &worst), "a bound value changed with the caller's tensor (%g)", worst);
    CHECK(((float *)b[1].data)[0] != ((float *)bt.data)[0] &&
              ((float *)b[1].data)[1] + 100 == ((float *)a[1].data)[1],
          "result 1 aliases the weights or another run's result");
    CHECK(a[1].data != b[1].data, "two runs returned the same memory");
    free_outputs(a, 2);
    free_outputs(b, 2);
    /* plan + run_into: the caller's memory */
    KilnTensor plan[2];
    CHECK(kiln_model_plan(m, in, plan, &err) == KILN_OK, "plan: %s", err.message);
    CHECK(plan[0].rank == 2 && plan[0].shape[0] == 2 && plan[0].shape[1] == 8 && !plan[0].data &&
              plan[1].rank == 1 && plan[1].shape[0] == 8,
          "plan gave rank %d", plan[0].rank);
    float out0[16], out1[8];
    plan[0].data = out0, plan[1].data = out1;
    CHECK(kiln_model_run_into(m, in, plan, &err) == KILN_OK, "run_into: %s", err.message);
    KilnTensor c[2];
    CHECK(kiln_model_run(m, in, c, &err) == KILN_OK, "run: %s", err.message);
    CHECK(memcmp(c[0].data, out0, sizeof out0) == 0 && memcmp(c[1].data, out1, sizeof out1) == 0,
          "run_into and run differ");
    free_outputs(c, 2);
    plan[0].data = NULL;
    CHECK(kiln_model_run_into(m, in, plan, &err) == KILN_ERR_USAGE && strstr(err.message, "output 0"),
          "run_into without memory: %s", err.message);
    kiln_model_free(m);
    /* w an input at the first run, then bound: compiled again with w as a constant */
    m = open_model("cpu", NULL, (KilnDim[]){{"B", 2}}, 1);
    KilnModel *ref = open_model("ref", NULL, (KilnDim[]){{"B", 2}}, 1);
    if (!m || !ref) return;
    KilnTensor ins[3] = {x, wt, bt};
    CHECK(kiln_model_bind(m, "b", &bt, &err) == KILN_OK && kiln_model_run(m, ins, a, &err) == KILN_OK,
          "run with w as an input: %s", err.message);
    CHECK(kiln_model_bind(m, "w", &wt, &err) == KILN_OK && kiln_model_run(m, in, b, &err) == KILN_OK,
          "run with w bound after a first run: %s", err.message);
    CHECK(kiln_model_run(ref, ins, c, &err) == KILN_OK, "reference: %s", err.message);
    CHECK(close_enough(&a[0], &c[0], &worst) && close_enough(&b[0], &c[0], &worst), "w bound late: off by %g",
          worst);
    free_outputs(a, 2), free_outputs(b, 2), free_outputs(c, 2);
    kiln_model_free(ref);
    kiln_tensor_free(&x), kiln_tensor_free(&wt), kiln_tensor_free(&bt);
    kiln_error_clear(&err);
    kiln_model_free(m);
}

typedef struct {
    KilnModel *m;
    const KilnTensor *x;
    float expect[2][16]; /* result 0 under weights A and weights B */
    int mixed, errors, runs;
    volatile bool stop;
} RebindState;

static void *rebind_runner(void *arg) {
    RebindState *s = arg;
    while (!s->stop) {
        KilnTensor in[3] = {*s->x}, out[2];
        KilnError err = {0};
        if (kiln_model_run(s->m, in, out, &err) != KILN_OK) {
            __atomic_add_fetch(&s->errors, 1, __ATOMIC_RELAXED);
            kiln_error_clear(&err);
            continue;
        }
        const float *o = out[0].data;
        bool a = memcmp(o, s->expect[0], sizeof s->expect[0]) == 0;
        bool b = memcmp(o, s->expect[1], sizeof s->expect[1]) == 0;
        if (!a && !b) __atomic_add_fetch(&s->mixed, 1, __ATOMIC_RELAXED);
        __atomic_add_fetch(&s->runs, 1, __ATOMIC_RELAXED);
        free_outputs(out, 2);
    }
    return NULL;
}

static void test_rebind_while_running(void) {
    KilnModel *m = open_model("cpu", NULL, (KilnDim[]){{"B", 2}}, 1);
    if (!m) return;
    int64_t xs[2] = {2, 16}, ws[2] = {16, 8}, bs[1] = {8};
    KilnTensor x = make(2, xs), w[2] = {make(2, ws), make(2, ws)}, b = make(1, bs);
    RebindState s = {.m = m, .x = &x};
    bind_weights(m, &w[0], &b);
    KilnError err = {0};
    for (int k = 0; k < 2; k++) {
        CHECK(kiln_model_bind(m, "w", &w[k], &err) == KILN_OK, "bind: %s", err.message);
        KilnTensor in[3] = {x}, out[2];
        CHECK(kiln_model_run(m, in, out, &err) == KILN_OK, "run: %s", err.message);
        memcpy(s.expect[k], out[0].data, sizeof s.expect[k]);
        free_outputs(out, 2);
    }
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, rebind_runner, &s);
    for (int i = 0; i < 40; i++) {
        CHECK(kiln_model_bind(m, "w", &w[i % 2], &err) == KILN_OK, "bind: %s", err.message);
        usleep(500);
    }
    s.stop = true;
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    CHECK(s.mixed == 0 && s.errors == 0 && s.runs > 0, "%d of %d runs mixed two bindings, %d failed", s.mixed,
          s.runs, s.errors);
    kiln_tensor_free(&x), kiln_tensor_free(&w[0]), kiln_tensor_free(&w[1]), kiln_tensor_free(&b);
    kiln_error_clear(&err);
    kiln_model_free(m);
}

static void test_load_weights(const char *dir) {
    KilnModel *m = open_model("cpu", NULL, NULL, 0);
    if (!m) return;
    int64_t ws[2] = {16, 8}, bs[1] = {8}, bad[1] = {7};
    KilnTensor t[4] = {make(2, ws), make(1, bs), make(1, bad), make(1, bs)};
    char *names[3] = {"w", "b", "unused"};
    char good_path[4096], bad_path[4096], none_path[4096];
    snprintf(good_path, sizeof good_path, "%s/good.safetensors", dir);
    snprintf(bad_path, sizeof bad_path, "%s/bad.safetensors", dir);
    snprintf(none_path, sizeof none_path, "%s/none.safetensors", dir);
    char e[512];
    KilnTensorList good = {3, names, (KilnTensor[]){t[0], t[1], t[3]}};
    KilnTensorList wrong = {2, names, (KilnTensor[]){t[0], t[2]}}; /* b has 7 elements */
    KilnTensorList none = {1, names + 2, (KilnTensor[]){t[3]}};
    CHECK(kiln_safetensors_write(good_path, &good, e, sizeof e) &&
              kiln_safetensors_write(bad_path, &wrong, e, sizeof e) &&
              kiln_safetensors_write(none_path, &none, e, sizeof e),
          "writing test files: %s", e);
    KilnError err = {0};
    CHECK(kiln_model_load_weights(m, bad_path, &err) == KILN_ERR_USAGE && err.file &&
              strcmp(err.file, bad_path) == 0 && strstr(err.message, "'b'") && !kiln_model_param_bound(m, 1),
          "a file with a wrong tensor: status %d, %s (w bound: %d)", err.status, err.message,
          kiln_model_param_bound(m, 1));
    CHECK(!kiln_model_param_bound(m, 1), "a failed load bound w anyway");
    CHECK(kiln_model_load_weights(m, none_path, &err) == KILN_ERR_INPUT && strstr(err.message, "no tensor"),
          "a file that names no parameter: %s", err.message);
    CHECK(kiln_model_load_weights(m, "/nonexistent/w.safetensors", &err) == KILN_ERR_INPUT && err.line == 0 &&
              err.file && strcmp(err.file, "/nonexistent/w.safetensors") == 0,
          "a missing weights file: status %d", err.status);
    CHECK(kiln_model_load_weights(m, good_path, &err) == KILN_OK, "load_weights: %s", err.message);
    CHECK(kiln_model_param_bound(m, 1) && kiln_model_param_bound(m, 2), "weights not bound");
    int64_t xs[2] = {3, 16};
    KilnTensor x = make(2, xs), in[3] = {x}, out[2];
    KilnStatus st = kiln_model_run(m, in, out, &err);
    CHECK(st == KILN_OK && out[0].shape[0] == 3, "run after load_weights: %s", err.message);
    if (st == KILN_OK) {
        CHECK(memcmp(out[1].data, t[1].data, 8 * sizeof(float)) == 0, "result 1 is not the loaded b");
        free_outputs(out, 2);
    }
    for (int i = 0; i < 4; i++) kiln_tensor_free(&t[i]);
    kiln_tensor_free(&x);
    kiln_error_clear(&err);
    kiln_model_free(m);
}

/* A safetensors file of w [16, 8] and b [8] whose data starts `skew` bytes
 * past a multiple of 4 (its JSON header padded so): elements at odd
 * offsets, which only the cpu device takes in place. */
static bool write_skewed(const char *path, const KilnTensor *w, const KilnTensor *b, int skew) {
    char hdr[256];
    int n = snprintf(hdr, sizeof hdr,
                     "{\"b\":{\"dtype\":\"F32\",\"shape\":[8],\"data_offsets\":[0,32]},"
                     "\"w\":{\"dtype\":\"F32\",\"shape\":[16,8],\"data_offsets\":[32,544]}}");
    while ((8 + n) % 4 != skew) hdr[n++] = ' ';
    unsigned char len[8] = {(unsigned char)n};
    FILE *f = fopen(path, "wb");
    bool ok = f && fwrite(len, 8, 1, f) == 1 && fwrite(hdr, (size_t)n, 1, f) == 1 &&
              fwrite(b->data, 32, 1, f) == 1 && fwrite(w->data, 512, 1, f) == 1;
    return f && fclose(f) == 0 && ok;
}

/* load_weights maps the file and binds its tensors in place where the
 * device takes them (cpu: any offset; kir, ref: aligned ones, the rest
 * copied): on each device and at offsets aligned and not, the results
 * against the reference interpreter with the same weights bound by value;
 * a run after the file is removed (the mapping stays); loading another
 * file releases the first one's views; many loads (leaks: make asan). */
static void test_load_weights_mapped(const char *dir) {
    int64_t ws[2] = {16, 8}, bs[1] = {8}, xs[2] = {2, 16};
    KilnTensor w = make(2, ws), b = make(1, bs), x = make(2, xs), w2 = make(2, ws), b2 = make(1, bs);
    KilnError err = {0};
    KilnModel *ref = open_model("ref", NULL, NULL, 0);
    KilnTensor want[2][2];
    for (int v = 0; ref && v < 2; v++) {
        CHECK(kiln_model_bind(ref, "w", v ? &w2 : &w, &err) == KILN_OK &&
                  kiln_model_bind(ref, "b", v ? &b2 : &b, &err) == KILN_OK &&
                  kiln_model_run(ref, &x, want[v], &err) == KILN_OK,
              "the reference: %s", err.message);
    }
    const char *devices[] = {"cpu", "kir", "ref"};
    for (int d = 0; ref && d < 3; d++)
        for (int skew = 0; skew < 2; skew++) { /* the second file's: 3 and 2 */
            char path[4096], path2[4096];
            snprintf(path, sizeof path, "%s/mapped-%s-%d.safetensors", dir, devices[d], skew);
            snprintf(path2, sizeof path2, "%s/mapped2-%s-%d.safetensors", dir, devices[d], skew);
            CHECK(write_skewed(path, &w, &b, skew) && write_skewed(path2, &w2, &b2, 3 - skew), "writing %s",
                  path);
            KilnModel *m = open_model(devices[d], NULL, NULL, 0);
            for (int round = 0; m && round < 6; round++) {
                int v = round % 2; /* the first file, then the second, ... */
                KilnTensor out[2];
                CHECK(kiln_model_load_weights(m, v ? path2 : path, &err) == KILN_OK, "load %s on %s: %s",
                      v ? path2 : path, devices[d], err.message);
                if (round == 0) unlink(path); /* mapped: the model keeps its view */
                double worst = 0;
                if (kiln_model_run(m, &x, out, &err) != KILN_OK) {
                    CHECK(false, "run with mapped weights on %s: %s", devices[d], err.message);
                    continue;
                }
                CHECK(close_enough_tol(&out[0], &want[v][0], 1e-5, 1e-6, &worst) &&
                          memcmp(out[1].data, (v ? &b2 : &b)->data, 32) == 0,
                      "mapped weights (skew %d, file %d) on %s: off by %g", skew, v, devices[d], worst);
                free_outputs(out, 2);
                if (round == 1) { /* the first file is gone from disk: write it again for round 2 */
                    CHECK(write_skewed(path, &w, &b, skew), "writing %s", path);
                }
            }
            kiln_model_free(m);
            unlink(path), unlink(path2);
        }
    for (int v = 0; ref && v < 2; v++) free_outputs(want[v], 2);
    kiln_model_free(ref);
    kiln_tensor_free(&w), kiln_tensor_free(&b), kiln_tensor_free(&x), kiln_tensor_free(&w2),
        kiln_tensor_free(&b2);
    kiln_error_clear(&err);
}

/* ------------------------------------------------------------ batches */

/* Three layers, six weights: the cpu packs each matmul's weights when they
 * are bound, all of a binding's (or a compilation's) in one batch packed on
 * the pool's threads at its end (exec_bind_batch). */
static const char *const mlp_source =
    "graph mlp(x: f32[B, 64], w1: f32[64, 96], b1: f32[96], w2: f32[96, 80], "
    "b2: f32[80], w3: f32[80, 32], b3: f32[32]) -> f32[B, 32] {\n"
    "    h = relu(x @ w1 + b1)\n"
    "    g = tanh(h @ w2 + b2)\n"
    "    return g @ w3 + b3\n"
    "}\n";

enum { MLP_W = 6 };
static const int64_t mlp_shapes[MLP_W][2] = {{64, 96}, {96, 1}, {96, 80}, {80, 1}, {80, 32}, {32, 1}};
static const int mlp_ranks[MLP_W] = {2, 1, 2, 1, 2, 1};
static char *mlp_names[MLP_W] = {"w1", "b1", "w2", "b2", "w3", "b3"};

/* cpu's result at batch `batch` against ref's, the same weights bound one at a time there. */
static void mlp_check(KilnModel *m, const KilnTensor *w, const KilnTensor *extra_in, int64_t batch,
                      const char *what) {
    KilnError err = {0};
    KilnModel *ref = kiln_model_compile(mlp_source, &(KilnModelOptions){.device = "ref"}, &err);
    CHECK(ref != NULL, "the reference: %s", err.message);
    for (int i = 0; ref && i < MLP_W; i++)
        CHECK(kiln_model_bind(ref, mlp_names[i], &w[i], &err) == KILN_OK, "reference bind: %s", err.message);
    int64_t xs[2] = {batch, 64};
    KilnTensor x = make(2, xs), in[MLP_W + 1] = {x}, got[1], want[1];
    for (int i = 0; extra_in && i < MLP_W; i++) in[1 + i] = extra_in[i];
    bool ok = kiln_model_run(m, in, got, &err) == KILN_OK;
    CHECK(ok, "%s: run at batch %lld: %s", what, (long long)batch, err.message);
    bool rok = ref && kiln_model_run(ref, in, want, &err) == KILN_OK;
    CHECK(rok, "%s: the reference's run: %s", what, err.message);
    double worst = 0;
    if (ok && rok)
        CHECK(close_enough_tol(&got[0], &want[0], 1e-4, 1e-5, &worst), "%s, batch %lld: off by %g", what,
              (long long)batch, worst);
    if (ok) kiln_tensor_free(&got[0]);
    if (rok) kiln_tensor_free(&want[0]);
    kiln_tensor_free(&x);
    kiln_model_free(ref);
    kiln_error_clear(&err);
}

/* Several weights bound through the API in one batch: load_weights before
 * the first run (the compilations then bind all six), again with two
 * variants compiled (each rebinds them), a file with a wrong tensor in the
 * middle (an error naming it, nothing of the file bound, the results those
 * of the weights before), kiln_model_bind one by one, and some weights left
 * to the inputs; every result against the reference interpreter
 * (rtol 1e-4, atol 1e-5: three layers, summed in other orders). */
static void test_bind_batch(const char *dir) {
    KilnTensor a[MLP_W], b[MLP_W], bad[MLP_W];
    for (int i = 0; i < MLP_W; i++) {
        a[i] = make(mlp_ranks[i], mlp_shapes[i]);
        b[i] = make(mlp_ranks[i], mlp_shapes[i]);
        bad[i] = b[i];
    }
    int64_t wrong_shape[2] = {96, 81}; /* w2, in the middle of the file */
    bad[2] = make(2, wrong_shape);
    char pa[4096], pb[4096], pbad[4096], phalf[4096], e[512];
    snprintf(pa, sizeof pa, "%s/mlp-a.safetensors", dir);
    snprintf(pb, sizeof pb, "%s/mlp-b.safetensors", dir);
    snprintf(pbad, sizeof pbad, "%s/mlp-bad.safetensors", dir);
    snprintf(phalf, sizeof phalf, "%s/mlp-half.safetensors", dir);
    CHECK(kiln_safetensors_write(pa, &(KilnTensorList){MLP_W, mlp_names, a}, e, sizeof e) &&
              kiln_safetensors_write(pb, &(KilnTensorList){MLP_W, mlp_names, b}, e, sizeof e) &&
              kiln_safetensors_write(pbad, &(KilnTensorList){MLP_W, mlp_names, bad}, e, sizeof e) &&
              kiln_safetensors_write(phalf, &(KilnTensorList){4, mlp_names, a}, e, sizeof e),
          "writing the weights: %s", e);
    KilnError err = {0};
    KilnModel *m = kiln_model_compile(mlp_source, &(KilnModelOptions){.device = "cpu"}, &err);
    CHECK(m != NULL, "compile mlp: %s", err.message);
    if (m) {
        CHECK(kiln_model_load_weights(m, pa, &err) == KILN_OK, "load %s: %s", pa, err.message);
        mlp_check(m, a, NULL, 3, "weights A, loaded before the first run");
        mlp_check(m, a, NULL, 5, "weights A, a second compilation");
        CHECK(kiln_model_load_weights(m, pb, &err) == KILN_OK, "load %s: %s", pb, err.message);
        mlp_check(m, b, NULL, 3, "weights B, rebound in a compiled variant");
        mlp_check(m, b, NULL, 5, "weights B, rebound in the second variant");
        KilnStatus st = kiln_model_load_weights(m, pbad, &err);
        CHECK(st == KILN_ERR_USAGE && err.file && strcmp(err.file, pbad) == 0 && strstr(err.message, "'w2'"),
              "a wrong tensor in the middle of a file: status %d, %s", st, err.message);
        for (int i = 1; i <= MLP_W; i++) CHECK(kiln_model_param_bound(m, i), "parameter %d unbound", i);
        mlp_check(m, b, NULL, 3, "after the failed load (weights B still)");
        mlp_check(m, b, NULL, 5, "after the failed load, the second variant");
        st = kiln_model_bind(m, "w2", &bad[2], &err);
        CHECK(st == KILN_ERR_USAGE && strstr(err.message, "'w2'"), "bind a wrong w2: status %d, %s", st,
              err.message);
        KilnTensor mixed[MLP_W];
        for (int i = 0; i < MLP_W; i++) mixed[i] = i % 2 ? b[i] : a[i];
        for (int i = 0; i < MLP_W; i += 2)
            CHECK(kiln_model_bind(m, mlp_names[i], &a[i], &err) == KILN_OK, "bind %s: %s", mlp_names[i],
                  err.message);
        mlp_check(m, mixed, NULL, 3, "w1, w2, w3 of A bound one by one");
        kiln_model_free(m);
    }
    /* four of the six from a file, the last two from the inputs */
    m = kiln_model_compile(mlp_source, &(KilnModelOptions){.device = "cpu"}, &err);
    if (m) {
        CHECK(kiln_model_load_weights(m, phalf, &err) == KILN_OK, "load %s: %s", phalf, err.message);
        int64_t xs[2] = {2, 64};
        KilnTensor x = make(2, xs), in[MLP_W + 1] = {x}, out[1];
        KilnStatus st = kiln_model_run(m, in, out, &err);
        CHECK(st == KILN_ERR_USAGE && strstr(err.message, "input 'w3'") && strstr(err.message, "missing"),
              "w3 neither bound nor given: status %d, %s", st, err.message);
        if (st == KILN_OK) kiln_tensor_free(&out[0]);
        KilnTensor extra[MLP_W] = {{0}};
        extra[4] = b[4], extra[5] = b[5];
        KilnTensor half[MLP_W] = {a[0], a[1], a[2], a[3], b[4], b[5]};
        mlp_check(m, half, extra, 4, "four weights bound, two given");
        kiln_tensor_free(&x);
        kiln_model_free(m);
    }
    for (int i = 0; i < MLP_W; i++) kiln_tensor_free(&a[i]), kiln_tensor_free(&b[i]);
    kiln_tensor_free(&bad[2]);
    kiln_error_clear(&err);
}

/* ------------------------------------------------------------ errors */

static void expect_error(KilnStatus st, const KilnError *err, KilnStatus want, const char *needle,
                         const char *what) {
    CHECK(st == want && err->status == want && err->message && strstr(err->message, needle),
          "%s: status %d, %s", what, st, err->message ? err->message : "(no message)");
}

static void test_errors(const char *dir) {
    KilnError err = {0};
    KilnModel *m;
    /* a diagnosed program: file, line, column and the caret */
    m = kiln_model_compile("graph g(x: f32[4]) -> f32[4] {\n    return x + y\n}\n", NULL, &err);
    CHECK(!m && err.status == KILN_ERR_INPUT && err.file && strcmp(err.file, "<source>") == 0 &&
              err.line == 2 && err.col == 16 && strstr(err.message, "<source>:2:16: error:") &&
              strstr(err.message, "^"),
          "undefined name: status %d file %s %d:%d %s", err.status, err.file, err.line, err.col, err.message);
    m = kiln_model_compile("graph g(x: f32[4]) -> f32[4] {\n    return x +\n}\n", NULL, &err);
    CHECK(!m && err.status == KILN_ERR_INPUT && err.line == 2 && err.col == 15, "syntax error: %d:%d %s",
          err.line, err.col, err.message);
    m = kiln_model_compile("", NULL, &err);
    expect_error(m ? KILN_OK : err.status, &err, KILN_ERR_INPUT, "defines no graph", "empty source");
    m = kiln_model_load("/nonexistent/model.kiln", NULL, &err);
    CHECK(!m && err.status == KILN_ERR_USAGE && err.file && strcmp(err.file, "/nonexistent/model.kiln") == 0,
          "missing file: status %d %s", err.status, err.message);
    char path[4096];
    snprintf(path, sizeof path, "%s/bad.kiln", dir);
    FILE *f = fopen(path, "w");
    if (f) fputs("graph g(x: f32[2]) -> f32[2] {\n  return exp(x) +\n}\n", f), fclose(f);
    m = kiln_model_load(path, NULL, &err);
    CHECK(!m && err.status == KILN_ERR_INPUT && err.file && strcmp(err.file, path) == 0 && err.line == 2,
          "a bad file: %s %d %s", err.file, err.line, err.message);
    m = kiln_model_compile(source, &(KilnModelOptions){.device = "tpu"}, &err);
    expect_error(m ? KILN_OK : err.status, &err, KILN_ERR_USAGE, "unknown device 'tpu'", "unknown device");
    m = kiln_model_compile(source, &(KilnModelOptions){.graph = "nope"}, &err);
    expect_error(m ? KILN_OK : err.status, &err, KILN_ERR_USAGE, "no graph named 'nope'", "unknown graph");
    m = kiln_model_compile(source, &(KilnModelOptions){.precision = "f8"}, &err);
    expect_error(m ? KILN_OK : err.status, &err, KILN_ERR_USAGE, "precision", "bad precision");
    m = kiln_model_compile(source, &(KilnModelOptions){.dims = (KilnDim[]){{"Q", 2}}, .ndims = 1}, &err);
    expect_error(m ? KILN_OK : err.status, &err, KILN_ERR_USAGE, "no dimension 'Q'", "unknown dimension");
    m = kiln_model_compile(source, &(KilnModelOptions){.dims = (KilnDim[]){{"B", 0}}, .ndims = 1}, &err);
    expect_error(m ? KILN_OK : err.status, &err, KILN_ERR_USAGE, "positive", "zero size");
    m = kiln_model_compile("graph g(x: f32[2]) -> f32[K] {\n    return zeros([K]) + x[0]\n}\n", NULL, &err);
    CHECK(!m && err.status != KILN_OK, "a dimension in no parameter: %s", err.message);
    /* a model to misuse */
    m = open_model("cpu", NULL, (KilnDim[]){{"B", 2}}, 1);
    if (!m) return;
    int64_t ws[2] = {16, 8}, w_t[2] = {8, 16}, xs[2] = {2, 16}, x3[2] = {3, 16};
    KilnTensor w = make(2, ws), wt = make(2, w_t), x = make(2, xs), xb = make(2, x3), out[2];
    expect_error(kiln_model_bind(m, "ww", &w, &err), &err, KILN_ERR_USAGE, "did you mean 'w'", "bind a typo");
    expect_error(kiln_model_bind(m, "zzzzzz", &w, &err), &err, KILN_ERR_USAGE, "its parameters: x, w, b",
                 "bind unknown");
    expect_error(kiln_model_bind(m, "w", &wt, &err), &err, KILN_ERR_USAGE, "f32[16, 8]", "bind transposed");
    expect_error(kiln_model_bind(m, "w", NULL, &err), &err, KILN_ERR_USAGE, "no tensor", "bind NULL");
    KilnTensor in[3] = {x};
    expect_error(kiln_model_run(m, in, out, &err), &err, KILN_ERR_USAGE, "input 'w'", "run with w unbound");
    CHECK(kiln_model_bind(m, "w", &w, &err) == KILN_OK, "bind: %s", err.message);
    int64_t bs[1] = {8};
    KilnTensor b = make(1, bs);
    CHECK(kiln_model_bind(m, "b", &b, &err) == KILN_OK, "bind: %s", err.message);
    in[0] = xb;
    expect_error(kiln_model_run(m, in, out, &err), &err, KILN_ERR_USAGE,
                 "B is 2 (fixed by the options), not 3", "batch 3 for B=2");
    in[0] = (KilnTensor){KILN_I32, 2, xs, x.data};
    expect_error(kiln_model_run(m, in, out, &err), &err, KILN_ERR_USAGE, "i32[2, 16]", "wrong dtype");
    in[0] = (KilnTensor){KILN_F32, 1, xs, x.data};
    expect_error(kiln_model_run(m, in, out, &err), &err, KILN_ERR_USAGE, "parameter 'x' is f32[B, 16]",
                 "rank 1");
    in[0] = (KilnTensor){KILN_F32, 2, xs, NULL};
    expect_error(kiln_model_run(m, in, out, &err), &err, KILN_ERR_USAGE, "no data", "no data");
    in[0] = (KilnTensor){0};
    expect_error(kiln_model_run(m, in, out, &err), &err, KILN_ERR_USAGE, "is missing", "missing input");
    expect_error(kiln_model_run(m, NULL, out, &err), &err, KILN_ERR_USAGE, "is missing", "no inputs");
    in[0] = x;
    expect_error(kiln_model_run(m, in, NULL, &err), &err, KILN_ERR_USAGE, "no outputs", "no outputs");
    CHECK(kiln_model_param_index(m, "b") == 2 && kiln_model_param_index(m, "q") == -1, "param_index");
    KilnTensorInfo info;
    CHECK(kiln_model_param_info(m, 0, &info) && strcmp(info.name, "x") == 0 && info.shape[0] == -1 &&
              strcmp(info.type, "f32[B, 16]") == 0 && !kiln_model_param_info(m, 3, &info),
          "param_info: %s", info.type);
    CHECK(kiln_model_result_info(m, 1, &info) && strcmp(info.name, "out1") == 0 && info.rank == 1,
          "result_info");
    CHECK(kiln_model_num_params(m) == 3 && kiln_model_num_results(m) == 2 &&
              strcmp(kiln_model_device(m), "cpu") == 0,
          "counts");
    /* use after close: every function */
    CHECK(kiln_model_close(m, &err) == KILN_OK, "close: %s", err.message);
    const char *closed = "the model is closed";
    expect_error(kiln_model_close(m, &err), &err, KILN_ERR_USAGE, closed, "close twice");
    expect_error(kiln_model_run(m, in, out, &err), &err, KILN_ERR_USAGE, closed, "run after close");
    expect_error(kiln_model_plan(m, in, out, &err), &err, KILN_ERR_USAGE, closed, "plan after close");
    expect_error(kiln_model_run_into(m, in, out, &err), &err, KILN_ERR_USAGE, closed, "run_into after close");
    expect_error(kiln_model_bind(m, "w", &w, &err), &err, KILN_ERR_USAGE, closed, "bind after close");
    expect_error(kiln_model_load_weights(m, "w.safetensors", &err), &err, KILN_ERR_USAGE, closed,
                 "load_weights after close");
    CHECK(kiln_model_num_params(m) == 0 && kiln_model_num_results(m) == 0 &&
              !kiln_model_param_info(m, 0, &info) && kiln_model_param_index(m, "x") == -1 &&
              !kiln_model_device(m) && !kiln_model_param_bound(m, 1),
          "queries after close");
    kiln_model_free(m);
    expect_error(kiln_model_run(NULL, in, out, &err), &err, KILN_ERR_USAGE, "NULL", "NULL model");
    kiln_model_free(NULL);
    kiln_tensor_free(&w), kiln_tensor_free(&wt), kiln_tensor_free(&x), kiln_tensor_free(&xb),
        kiln_tensor_free(&b);
    kiln_error_clear(&err);
}

/* ------------------------------------------------------------ lifetime */

typedef struct {
    KilnModel *m;
    int ok, closed, other;
    int closed_seen; /* set by the main thread after close returned */
} CloseState;

static void *close_runner(void *arg) {
    CloseState *s = arg;
    int64_t xs[1] = {64};
    KilnTensor x;
    pthread_mutex_lock(&check_lock);
    x = make(1, xs);
    pthread_mutex_unlock(&check_lock);
    /* until the model is closed under it (a cap in case it never is) */
    for (int i = 0; i < 1000000 && !__atomic_load_n(&s->closed_seen, __ATOMIC_RELAXED); i++) {
        KilnTensor in[1] = {x}, out[1];
        KilnError err = {0};
        KilnStatus st = kiln_model_run(s->m, in, out, &err);
        if (st == KILN_OK) {
            __atomic_add_fetch(&s->ok, 1, __ATOMIC_RELAXED);
            kiln_tensor_free(&out[0]);
        } else if (strstr(err.message, "closed")) {
            __atomic_add_fetch(&s->closed, 1, __ATOMIC_RELAXED);
            kiln_error_clear(&err);
            break;
        } else {
            __atomic_add_fetch(&s->other, 1, __ATOMIC_RELAXED);
        }
        kiln_error_clear(&err);
    }
    kiln_tensor_free(&x);
    return NULL;
}

static void test_close_while_running(void) {
    KilnModel *m = open_model("cpu", "twice", NULL, 0);
    if (!m) return;
    CloseState s = {.m = m};
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, close_runner, &s);
    /* close once runs are going (compiled, in flight), whatever the machine's speed */
    while (__atomic_load_n(&s.ok, __ATOMIC_RELAXED) + __atomic_load_n(&s.other, __ATOMIC_RELAXED) < 16)
        usleep(100);
    KilnError err = {0};
    CHECK(kiln_model_close(m, &err) == KILN_OK, "close while running: %s", err.message);
    __atomic_store_n(&s.closed_seen, 1, __ATOMIC_RELAXED);
    for (int i = 0; i < 4; i++) pthread_join(t[i], NULL);
    /* each runner ends at its first "closed" (or at the flag, between runs) */
    CHECK(s.other == 0 && s.ok >= 16 && s.closed <= 4, "runs: %d ok, %d closed, %d other", s.ok, s.closed,
          s.other);
    int64_t xs[1] = {64};
    KilnTensor x = make(1, xs), out[1];
    CHECK(kiln_model_run(m, &x, out, &err) == KILN_ERR_USAGE && strstr(err.message, "closed"),
          "a run after close: %s", err.message);
    kiln_tensor_free(&x);
    kiln_error_clear(&err);
    kiln_model_free(m);
}

static void test_cycles(void) {
    int64_t xs[1] = {5};
    KilnTensor x = make(1, xs);
    int good = 0;
    for (int i = 0; i < 200; i++) {
        KilnError err = {0};
        KilnModel *m = kiln_model_compile(
            source, &(KilnModelOptions){.device = i % 2 ? "kir" : "ref", .graph = "twice"}, &err);
        KilnTensor in[1] = {x}, out[1];
        if (m && kiln_model_run(m, in, out, &err) == KILN_OK) {
            good += ((float *)out[0].data)[4] == 2 * ((float *)x.data)[4];
            kiln_tensor_free(&out[0]);
        }
        if (m) kiln_model_close(m, &err);
        kiln_model_free(m);
        kiln_error_clear(&err);
    }
    CHECK(good == 200, "%d of 200 load/run/close cycles right", good);
    kiln_tensor_free(&x);
}

/* The ONNX importer's LeNet (tests/onnx/lenet.onnx: a symbolic batch, its
 * weights in the file), when it is there: its NumPy-made output at batch 2,
 * and its first row at batch 1 (a second compilation, the weights read for
 * it); on cpu and ref, the batch from the inputs or fixed by the options;
 * the graph option; its initializers are not parameters. */
static void test_onnx(void) {
    const char *model = "tests/onnx/lenet.onnx";
    FILE *f = fopen(model, "rb");
    if (!f) return;
    fclose(f);
    KilnError err = {0};
    KilnTensor x = {0}, want = {0}, out[1];
    char e[512];
    CHECK(kiln_onnx_tensor_read_file("tests/onnx/lenet_input.pb", &x, e, sizeof e) &&
              kiln_npy_read("tests/onnx/lenet_output.npy", &want, e, sizeof e),
          "reading the ONNX LeNet's data: %s", e);
    if (want.dtype == KILN_F64) { /* compare as f32 */
        KilnTensor w32;
        if (tensor_like(&want, &w32)) kiln_tensor_free(&want), want = w32;
    }
    /* batch 1: the first image and the first row of the results */
    KilnTensor x1 = x, want1 = want;
    x1.shape = (int64_t[]){1, 1, 28, 28};
    want1.shape = (int64_t[]){1, 10};
    for (int c = 0; c < 4; c++) { /* cpu, ref, cpu with a fixed batch, kir */
        const char *device = c == 1 ? "ref" : c == 3 ? "kir" : "cpu";
        KilnDim batch = {"batch", 2};
        KilnModelOptions opt = {.device = device,
                                .graph = c == 2 ? "lenet" : NULL,
                                .dims = c == 2 ? &batch : NULL,
                                .ndims = c == 2};
        KilnModel *m = kiln_model_load(model, &opt, &err);
        CHECK(m && kiln_model_num_params(m) == 1 && kiln_model_num_results(m) == 1, "load %s on %s: %s",
              model, device, err.message);
        for (int b = 0; m && b < (c == 2 ? 1 : 2); b++) {
            double worst = 0;
            if (kiln_model_run(m, b ? &x1 : &x, out, &err) == KILN_OK) {
                CHECK(close_enough_tol(&out[0], b ? &want1 : &want, 1e-4, 1e-6, &worst),
                      "ONNX LeNet on %s, batch %d: off by %g", device, b ? 1 : 2, worst);
                kiln_tensor_free(&out[0]);
            } else {
                CHECK(false, "run the ONNX LeNet on %s: %s", device, err.message);
            }
        }
        KilnTensorInfo ri = {0};
        CHECK(!m || (kiln_model_result_info(m, 0, &ri) && strcmp(ri.name, "probs") == 0 &&
                     strcmp(ri.type, "f32[batch, 10]") == 0),
              "the ONNX LeNet's result: %s %s", ri.name, ri.type);
        if (m && c == 0) { /* the initializers are the model's, not parameters */
            KilnStatus st = kiln_model_bind(m, "conv1.weight", &x, &err);
            expect_error(st, &err, KILN_ERR_USAGE, "has no parameter 'conv1.weight'", "bind an initializer");
        }
        kiln_model_free(m);
    }
    KilnModel *m = kiln_model_load(model, &(KilnModelOptions){.graph = "nope"}, &err);
    expect_error(m ? KILN_OK : err.status, &err, KILN_ERR_USAGE, "no graph named 'nope'; it defines: lenet",
                 "ONNX graph name");
    kiln_model_free(m);
    kiln_tensor_free(&x), kiln_tensor_free(&want);
    kiln_error_clear(&err);
}

int main(void) {
    char dir[] = "/tmp/kiln-test-api.XXXXXX";
    if (!mkdtemp(dir)) return 3;
    test_concurrent("cpu", true);
    test_concurrent("cpu", false);
    test_concurrent("kir", false);
    test_binding();
    test_rebind_while_running();
    test_load_weights(dir);
    test_load_weights_mapped(dir);
    test_bind_batch(dir);
    test_errors(dir);
    test_close_while_running();
    test_cycles();
    test_onnx();
    char cmd[4200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0) printf("note: could not remove %s\n", dir);
    printf("test_api: %d passed, %d failed\n", npass, nfail);
    return nfail ? 1 : 0;
}
