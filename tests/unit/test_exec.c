/* test_exec.c - the executor (runtime/exec.c) and the backend table.
 *
 *   - the table: every row has what its caps promise (kernels: prepare and
 *     launch; device memory: alloc, free, copy_in, copy_out; graph-level:
 *     run_graph), names and emit stages are unique, lookups find them;
 *   - every usable backend of the table, through exec_compile / exec_run,
 *     against the reference interpreter (ir/interp.c) on one graph with a
 *     tiled matmul, an epilogue, a reduction and results that are a
 *     parameter or repeat another result, at -O2 and -O0;
 *   - one Executable run from several threads at once, each result checked;
 *   - exec_bind: a parameter bound once is used by every run;
 *   - a backend with its own device memory, defined here (the kernel-IR
 *     interpreter behind alloc/copy hooks that track every pointer): the
 *     executor's device path without a GPU: layout, copies in and out,
 *     bound parameters on the device, device-clock bench, nothing leaked;
 *   - wrong inputs are refused with KILN_ERR_USAGE and nothing allocated;
 *   - host_block_alloc (a run's intermediates, per-thread scratch): aligned
 *     to 64 bytes, from HOST_HUGE_MIN_BYTES on to 2 MiB, every byte usable.
 *     (A run's block is kept for the next run: the concurrent runs above
 *     and bench reuse it, their results checked.)
 * Last line: "test_exec: N passed, N failed". */
#include "app/app.h"

#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "check.h"

/* ------------------------------------------------------------ the graph */

enum { R = 48, C = 72, N = 96 };

static int param(IRGraph *g, const char *name, int rank, const Dim *shape) {
    int id = ir_add_node(g, OP_PARAM, KILN_F32, rank, shape, 0, NULL, (Loc){0});
    ir_node(g, id)->name = name;
    VEC_PUSH(g->params, id);
    return id;
}

/* g(x: f32[R, C], y: f32[C], w: f32[C, N])
 *   -> (relu(x @ w) * 2, x, sum(x * 2 + y, axis=1), x, relu(x @ w) * 2) */
static IRGraph *make_graph(Arena *a) {
    IRGraph *g = ir_graph_new(a, "g");
    Dim sx[2] = {R, C}, sy[1] = {C}, sw[2] = {C, N}, so[2] = {R, N}, sr[1] = {R};
    int x = param(g, "x", 2, sx), y = param(g, "y", 1, sy), w = param(g, "w", 2, sw);
    int two = ir_add_node(g, OP_CONST, KILN_F32, 0, NULL, 0, NULL, (Loc){0});
    ir_node(g, two)->value = 2.0;
    int mm_in[2] = {x, w};
    int mm = ir_add_node(g, OP_MATMUL, KILN_F32, 2, so, 2, mm_in, (Loc){0});
    int rl = ir_add_node(g, OP_RELU, KILN_F32, 2, so, 1, &mm, (Loc){0});
    int sc_in[2] = {rl, two};
    int sc = ir_add_node(g, OP_MUL, KILN_F32, 2, so, 2, sc_in, (Loc){0});
    int m_in[2] = {x, two};
    int m = ir_add_node(g, OP_MUL, KILN_F32, 2, sx, 2, m_in, (Loc){0});
    int a_in[2] = {m, y};
    int ad = ir_add_node(g, OP_ADD, KILN_F32, 2, sx, 2, a_in, (Loc){0});
    int sm = ir_add_node(g, OP_SUM, KILN_F32, 1, sr, 1, &ad, (Loc){0});
    ir_node(g, sm)->ints = ARENA_ARRAY(a, int64_t, 1);
    ir_node(g, sm)->ints[0] = 1;
    ir_node(g, sm)->nints = 1;
    int results[5] = {sc, x, sm, x, sc};
    for (int i = 0; i < 5; i++) VEC_PUSH(g->results, results[i]);
    char err[256];
    if (!ir_verify(g, err, sizeof err)) printf("FAIL the test graph does not verify: %s\n", err), nfail++;
    return g;
}

static uint64_t rng = 12345;
static double urand(void) {
    rng = rng * 6364136223846793005ull + 1442695040888963407ull;
    return (double)(rng >> 11) * 0x1.0p-53 * 2 - 1;
}

static void make_inputs(const IRGraph *g, KilnTensor *in) {
    for (int i = 0; i < g->params.len; i++) {
        const Node *p = ir_node(g, g->params.data[i]);
        int64_t shape[2] = {p->shape[0], p->rank > 1 ? p->shape[1] : 0};
        kiln_tensor_init(&in[i], p->dtype, p->rank, shape);
        for (int64_t e = 0; e < kiln_tensor_numel(&in[i]); e++) kiln_tensor_set(&in[i], e, urand());
    }
}

/* Largest error of got against want, relative to max(1, |want|). */
static double max_error(const KilnTensor *got, const KilnTensor *want) {
    if (got->dtype != want->dtype || got->rank != want->rank ||
        kiln_tensor_numel(got) != kiln_tensor_numel(want))
        return INFINITY;
    double worst = 0;
    for (int64_t e = 0; e < kiln_tensor_numel(want); e++) {
        double a = kiln_tensor_get(got, e), b = kiln_tensor_get(want, e);
        double d = fabs(a - b) / (fabs(b) > 1 ? fabs(b) : 1);
        if (!(d <= worst)) worst = d; /* NaN counts as the worst */
    }
    return worst;
}

/* f32 matmul over C = 72 terms against the double reference */
static const double TOL = 1e-5;

static void free_tensors(KilnTensor *t, int n) {
    for (int i = 0; i < n; i++) kiln_tensor_free(&t[i]);
}

/* ------------------------------------------------------------ the table */

static void test_table(void) {
    int n = backend_count();
    CHECK(n >= 5, "only %d backends", n);
    StrBuf stages = {0};
    for (int i = 0; i < n; i++) {
        const Backend *be = backend_at(i);
        CHECK(be->name && be->summary, "backend %d has no name or summary", i);
        CHECK(backend_lookup(be->name) == be, "%s: lookup finds another row", be->name);
        char why[512] = "";
        bool usable = !be->available || be->available(why, sizeof why);
        CHECK(usable || why[0], "%s: unavailable without a reason", be->name);
        if (!usable) continue;
        if (be->caps & BK_KERNELS) {
            CHECK(be->kernels.prepare && be->kernels.release && be->kernels.launch,
                  "%s: BK_KERNELS without prepare/release/launch", be->name);
            const BackendBuffers *m = &be->buffers;
            if (!(be->caps & BK_HOST_MEMORY))
                CHECK(m->alloc && m->free && m->copy_in && m->copy_out && m->align > 0,
                      "%s: device memory without alloc/free/copy hooks", be->name);
            CHECK(!be->clock.mark == !be->clock.elapsed, "%s: mark without elapsed or the reverse", be->name);
        } else {
            CHECK(be->run_graph != NULL, "%s: neither kernels nor run_graph", be->name);
        }
        for (int s = 0; be->stages && be->stages[s].name; s++) {
            const Backend *owner = NULL;
            CHECK(backend_stage(be->stages[s].name, &owner) == &be->stages[s] && owner == be,
                  "%s: emit stage %s is found in another row", be->name, be->stages[s].name);
        }
    }
    backend_stage_names(&stages, ",");
    CHECK(stages.data && strstr(stages.data, "llvm") && strstr(stages.data, "ptx"), "stages: %s",
          stages.data ? stages.data : "(none)");
    sb_free(&stages);
    const Backend *be;
    char err[512];
    CHECK(backend_open("nosuch", &be, err, sizeof err) == KILN_ERR_USAGE && strstr(err, "devices: ref"),
          "unknown device: %s", err);
    const char *variant = NULL;
    CHECK(backend_aot_target("cuda:sm_80", &variant, err, sizeof err) == backend_lookup("cuda") && variant &&
              strcmp(variant, "sm_80") == 0,
          "aot target cuda:sm_80");
    CHECK(!backend_aot_target("tpu", &variant, err, sizeof err) && strstr(err, "targets: cpu"), "aot tpu: %s",
          err);
    CHECK(backend_lookup(backend_default()) != NULL, "default device %s", backend_default());
}

/* ------------------------------------------------------------ a device of our own */

/* "Device" memory is host memory that only this backend hands out; every
 * pointer a launch sees must lie in one of its live allocations. */
typedef struct {
    char *base;
    size_t bytes;
} Block;

static struct {
    pthread_mutex_t lock;
    VEC(Block) live;
    int allocs, frees, copies_in, copies_out, stray;
} fake = {PTHREAD_MUTEX_INITIALIZER, {0}, 0, 0, 0, 0, 0};

static bool fake_owns(const void *p, size_t bytes) {
    for (int i = 0; i < fake.live.len; i++)
        if ((const char *)p >= fake.live.data[i].base &&
            (const char *)p + bytes <= fake.live.data[i].base + fake.live.data[i].bytes)
            return true;
    return false;
}

static void *fake_prepare(const KProgram *kp, const CompileOptions *opt, char *err, size_t errlen) {
    (void)opt, (void)err, (void)errlen;
    return (void *)kp;
}

static void fake_release(void *prog) { (void)prog; }

static bool fake_alloc(void *prog, size_t bytes, void **ptr, char *err, size_t errlen) {
    (void)prog, (void)err, (void)errlen;
    Block b = {aligned_alloc(256, (bytes + 255) / 256 * 256), bytes};
    pthread_mutex_lock(&fake.lock);
    VEC_PUSH(fake.live, b);
    fake.allocs++;
    pthread_mutex_unlock(&fake.lock);
    *ptr = b.base;
    return b.base != NULL;
}

static void fake_free(void *prog, void *ptr) {
    (void)prog;
    pthread_mutex_lock(&fake.lock);
    for (int i = 0; i < fake.live.len; i++) {
        if (fake.live.data[i].base == ptr) {
            fake.live.data[i] = fake.live.data[--fake.live.len];
            fake.frees++;
            free(ptr);
            break;
        }
    }
    pthread_mutex_unlock(&fake.lock);
}

static bool fake_copy(void *dst, const void *src, size_t bytes, bool in) {
    pthread_mutex_lock(&fake.lock);
    bool ok = fake_owns(in ? dst : src, bytes) && !fake_owns(in ? src : dst, 1);
    fake.stray += !ok;
    *(in ? &fake.copies_in : &fake.copies_out) += 1;
    pthread_mutex_unlock(&fake.lock);
    if (ok) memcpy(dst, src, bytes);
    return ok;
}

static bool fake_copy_in(void *prog, void *dst, const void *src, size_t bytes, char *err, size_t errlen) {
    (void)prog;
    if (fake_copy(dst, src, bytes, true)) return true;
    snprintf(err, errlen, "copy_in from device memory or to host memory");
    return false;
}

static bool fake_copy_out(void *prog, void *dst, const void *src, size_t bytes, char *err, size_t errlen) {
    (void)prog;
    if (fake_copy(dst, src, bytes, false)) return true;
    snprintf(err, errlen, "copy_out from host memory or to device memory");
    return false;
}

static bool fake_launch(void *prog, void *call, int kernel, void *const *bufs, char *err, size_t errlen) {
    (void)call;
    const KProgram *kp = prog;
    pthread_mutex_lock(&fake.lock);
    bool ok = true;
    for (int b = 0; b < kp->bufs.len; b++)
        ok = ok &&
             fake_owns(bufs[b], (size_t)kp->bufs.data[b].numel * kiln_dtype_size(kp->bufs.data[b].dtype));
    fake.stray += !ok;
    pthread_mutex_unlock(&fake.lock);
    if (!ok) {
        snprintf(err, errlen, "a launch was given memory that is not the device's");
        return false;
    }
    kinterp_run_kernel(kp, kernel, bufs);
    return true;
}

/* the device clock: per call, a time stamp per slot */
typedef struct {
    double t[64];
} FakeCall;

static bool fake_call_begin(void *prog, void **call, char *err, size_t errlen) {
    (void)prog, (void)err, (void)errlen;
    *call = calloc(1, sizeof(FakeCall));
    return *call != NULL;
}

static void fake_call_end(void *prog, void *call) {
    (void)prog;
    free(call);
}

static double now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static bool fake_mark(void *prog, void *call, int slot, char *err, size_t errlen) {
    (void)prog;
    if (slot < 0 || slot >= 64) {
        snprintf(err, errlen, "slot %d", slot);
        return false;
    }
    ((FakeCall *)call)->t[slot] = now_ms();
    return true;
}

static bool fake_elapsed(void *prog, void *call, int from, int to, double *ms, char *err, size_t errlen) {
    (void)prog, (void)err, (void)errlen;
    *ms = ((FakeCall *)call)->t[to] - ((FakeCall *)call)->t[from];
    return true;
}

static const Backend fake_backend = {
    .name = "fake-device",
    .summary = "the kernel-IR interpreter behind device memory hooks (tests only)",
    .caps = BK_KERNELS,
    .kernels = {fake_prepare, fake_release, fake_call_begin, fake_call_end, fake_launch, NULL},
    .buffers = {256, fake_alloc, fake_free, fake_copy_in, fake_copy_out},
    .clock = {fake_mark, fake_elapsed},
};

/* ------------------------------------------------------------ runs */

typedef struct {
    const Executable *exe;
    const KilnTensor *in, *want;
    int nres, runs;
    const char *what;
} Worker;

static void *worker(void *arg) {
    Worker *w = arg;
    for (int r = 0; r < w->runs; r++) {
        KilnTensor got[5] = {0};
        char err[1024] = "";
        KilnStatus st = exec_run(w->exe, w->in, got, err, sizeof err);
        CHECK(st == KILN_OK, "%s: run: %s", w->what, err);
        if (st != KILN_OK) return NULL;
        for (int i = 0; i < w->nres; i++) {
            double e = max_error(&got[i], &w->want[i]);
            CHECK(e <= TOL, "%s: result %d off by %g", w->what, i, e);
        }
        free_tensors(got, w->nres);
    }
    return NULL;
}

/* Runs exe from `threads` threads at once, `runs` times each. */
static void run_concurrently(const Executable *exe, const KilnTensor *in, const KilnTensor *want, int nres,
                             int threads, int runs, const char *what) {
    pthread_t tid[8];
    Worker w = {exe, in, want, nres, runs, what};
    int started = 0;
    for (; started < threads && started < 8; started++)
        if (pthread_create(&tid[started], NULL, worker, &w) != 0) break;
    CHECK(started == threads, "%s: started %d of %d threads", what, started, threads);
    for (int t = 0; t < started; t++) pthread_join(tid[t], NULL);
}

static void test_backend(const Backend *be, int opt_level, const IRGraph *g, const KilnTensor *in,
                         const KilnTensor *want) {
    char what[64], err[2048] = "";
    snprintf(what, sizeof what, "%s -O%d", be->name, opt_level);
    CompileOptions opt = {.opt_level = opt_level};
    Executable *exe = exec_compile(be, g, &opt, err, sizeof err);
    CHECK(exe != NULL, "%s: compile: %s", what, err);
    if (!exe) return;
    int nres = g->results.len;
    CHECK(exec_nresults(exe) == nres && exec_nparams(exe) == g->params.len && exec_backend(exe) == be,
          "%s: executable's counts", what);
    CHECK(!(be->caps & BK_KERNELS) == !exec_program(exe), "%s: kernel program present iff BK_KERNELS", what);
    run_concurrently(exe, in, want, nres, 4, 3, what);

    /* w bound once: later runs ignore inputs[2] */
    CHECK(exec_bind(exe, 2, &in[2], err, sizeof err) == KILN_OK, "%s: bind: %s", what, err);
    KilnTensor partial[3] = {in[0], in[1], {0}};
    char bwhat[80];
    snprintf(bwhat, sizeof bwhat, "%s, w bound", what);
    run_concurrently(exe, partial, want, nres, 2, 2, bwhat);

    /* inputs that do not fit: a usage error, nothing allocated */
    KilnTensor swapped[3] = {in[1], in[0], in[2]}, got[5] = {0};
    CHECK(exec_run(exe, swapped, got, err, sizeof err) == KILN_ERR_USAGE && strstr(err, "input 0 ('x')"),
          "%s: swapped inputs: %s", what, err);
    CHECK(got[0].data == NULL && got[4].data == NULL, "%s: outputs allocated on a refused run", what);
    CHECK(exec_bind(exe, 1, &in[0], err, sizeof err) == KILN_ERR_USAGE, "%s: bind of the wrong tensor", what);

    BenchReport rep = {0};
    KilnStatus st = exec_bench(exe, in, 3, &rep, err, sizeof err);
    CHECK(st == KILN_OK && rep.runs == 3 && rep.run_ms >= 0, "%s: bench: %s", what, err);
    if (be->caps & BK_KERNELS) {
        CHECK(rep.kernels.len == exec_program(exe)->kernels.len, "%s: bench reports %d kernels", what,
              rep.kernels.len);
        for (int k = 0; k < rep.kernels.len; k++)
            CHECK(rep.kernels.data[k].ms >= 0 && rep.kernels.data[k].name, "%s: kernel %d timing", what, k);
    }
    VEC_FREE(rep.kernels);
    exec_destroy(exe);
}

static void test_host_blocks(void) {
    const size_t huge = HOST_HUGE_MIN_BYTES;
    const size_t sizes[] = {1, 100, huge - 1, huge, 3 * huge + 5};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i], align = n >= huge ? huge : 64;
        unsigned char *p = host_block_alloc(n);
        CHECK(p != NULL, "host_block_alloc(%zu)", n);
        if (!p) continue;
        CHECK((uintptr_t)p % align == 0, "host_block_alloc(%zu) = %p, not %zu-byte aligned", n, (void *)p,
              align);
        memset(p, 0xa5, n);
        CHECK(p[0] == 0xa5 && p[n - 1] == 0xa5, "host_block_alloc(%zu): the block's ends", n);
        free(p);
    }
}

int main(void) {
    test_table();
    test_host_blocks();
    Arena *a = arena_new();
    IRGraph *g = make_graph(a);
    KilnTensor in[3], want[5];
    make_inputs(g, in);
    char err[1024] = "";
    bool ok = ref_run(g, in, want, err, sizeof err);
    CHECK(ok, "ref_run: %s", err);
    for (int i = 0; ok && i < backend_count(); i++) {
        const Backend *be = backend_at(i);
        char why[512];
        if (be->available && !be->available(why, sizeof why)) {
            printf("skip %s: %s\n", be->name, why);
            continue;
        }
        test_backend(be, 2, g, in, want);
        test_backend(be, 0, g, in, want);
    }
    if (ok) {
        test_backend(&fake_backend, 2, g, in, want);
        test_backend(&fake_backend, 0, g, in, want);
        CHECK(fake.allocs > 0 && fake.allocs == fake.frees && fake.live.len == 0,
              "fake device: %d allocations, %d frees, %d live", fake.allocs, fake.frees, fake.live.len);
        CHECK(fake.copies_in > 0 && fake.copies_out > 0 && fake.stray == 0,
              "fake device: %d copies in, %d out, %d stray pointers", fake.copies_in, fake.copies_out,
              fake.stray);
        VEC_FREE(fake.live);
    }
    if (ok) free_tensors(want, 5);
    free_tensors(in, 3);
    ir_graph_destroy(g);
    arena_free(a);
    printf("test_exec: %d passed, %d failed\n", npass, nfail);
    return nfail ? 1 : 0;
}
