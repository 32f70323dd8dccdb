/* test_cpu_code.c - CPU code once per distinct kernel, and its disk cache
 * (runtime/cpu_code.c through the cpu backend).
 *
 * One program of three identical dense layers and a different head, built
 * from kiln source, compiled on the cpu backend and run against the
 * reference interpreter (--device=ref: the oracle; rtol 1e-4, atol 1e-5 for
 * f32 products of 64 terms), checks:
 *   - identical kernels share one key and one compiled unit (distinct <
 *     kernels); a second compile in the process reuses every unit;
 *   - with every user gone, a new compile loads every unit from the cache
 *     (KILN_CACHE=DIR in a fresh folder) and computes the same;
 *   - damaged entries (a flipped byte; a payload of the wrong kind; an entry
 *     that is not a usable object) are rebuilt, never linked, and the results
 *     stay right;
 *   - keys depend on the target CPU (--cpu);
 *   - four threads compiling the program at once (each its own graph) build
 *     every unit once between them: the others wait for it and share it;
 *   - the shared helpers prebuilt at build time and those compiled here
 *     give the same bits;
 *   - the host's target identity made without a target machine is the
 *     target machine's (llvm_host_identity);
 *   - kiln's object loader (runtime/objload.h) loads every unit, and ORC
 *     (KILN_OBJLOAD=0) links them alike; each finds the helpers the other
 *     holds (a second program compiled beside the first with the other
 *     linker); the loader refuses a relocation kind it does not know, and
 *     every truncation and every flipped byte of an object is refused or
 *     loaded, never a crash.
 * Two processes sharing one cold cache are tested in tests/cli/cache.sh.
 * Last line: "test_cpu_code: N passed, N failed". */
#include "app/app.h"
#include "runtime/cpu_code.h"
#include "runtime/exec.h"
#include "runtime/objload.h"

#include <dirent.h>
#if defined(__x86_64__) && defined(__ELF__)
#include <elf.h>
#endif
#include <pthread.h>
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "check.h"

static const char source[] =
    "graph layers(x: f32[32, 64], w1: f32[64, 64], b1: f32[64], w2: f32[64, 64], b2: f32[64],\n"
    "             w3: f32[64, 64], b3: f32[64], wh: f32[64, 10]) -> f32[32, 10] {\n"
    "    h1 = relu(x @ w1 + b1)\n"
    "    h2 = relu(h1 @ w2 + b2)\n"
    "    h3 = relu(h2 @ w3 + b3)\n"
    "    return softmax(h3 @ wh, axis=-1)\n"
    "}\n";

/* Another program whose product calls the same shared helpers. */
static const char other_source[] =
    "graph other(x: f32[16, 48], w: f32[48, 40], b: f32[40]) -> f32[16, 40] {\n"
    "    return relu(x @ w + b)\n"
    "}\n";

/* The program, bound (random inputs, seed 7) and optimised, and the
 * reference result. */
typedef struct {
    Compilation c;
    IRGraph *g;
    KilnTensor *inputs;
    KilnTensor want;
} Case;

static bool case_open_text(Case *t, const char *text) {
    char err[1024] = "";
    memset(t, 0, sizeof *t);
    CompileOptions opt = {.opt_level = 2, .precision = PREC_F32};
    BindRequest req = {NULL, 0, NULL, 0, 7, false, NULL, false, false, false};
    bool ok =
        compilation_open_text(&t->c, COMPILATION_TEXT_NAME, text, strlen(text), err, sizeof err) == KILN_OK &&
        driver_bind(&t->c, 0, &req, &opt, &t->g, &t->inputs, err, sizeof err) == KILN_OK;
    CHECK(ok, "binding the program: %s", err);
    /* generated inputs (kiln run and kiln bench without --in) start on a
     * cache line, as the arena's activations do */
    for (int i = 0; ok && i < t->g->params.len; i++)
        CHECK((uintptr_t)t->inputs[i].data % 64 == 0, "input %d at %p, not 64-byte aligned", i,
              t->inputs[i].data);
    const Backend *ref = NULL;
    Executable *x = ok && backend_open("ref", &ref, err, sizeof err) == KILN_OK
                        ? exec_compile(ref, t->g, &opt, err, sizeof err)
                        : NULL;
    ok = x && exec_run(x, t->inputs, &t->want, err, sizeof err) == KILN_OK;
    CHECK(ok, "the reference run: %s", err);
    exec_destroy(x);
    return ok;
}

static bool case_open(Case *t) { return case_open_text(t, source); }

static void case_close(Case *t) {
    for (int i = 0; t->inputs && i < t->g->params.len; i++) kiln_tensor_free(&t->inputs[i]);
    free(t->inputs);
    kiln_tensor_free(&t->want);
    ir_graph_destroy(t->g);
    compilation_close(&t->c);
}

/* Compiles the case on the cpu backend, reporting into *st. */
static Executable *compile(Case *t, CompileStats *st, const char *what) {
    char err[2048] = "";
    const Backend *cpu = NULL;
    memset(st, 0, sizeof *st);
    CompileOptions opt = {.opt_level = 2, .precision = PREC_F32, .stats = st};
    Executable *x = backend_open("cpu", &cpu, err, sizeof err) == KILN_OK
                        ? exec_compile(cpu, t->g, &opt, err, sizeof err)
                        : NULL;
    CHECK(x != NULL, "%s: compile: %s", what, err);
    return x;
}

/* Runs x and compares with the reference. */
static void check_run(Case *t, Executable *x, const char *what) {
    if (!x) return;
    char err[1024] = "";
    KilnTensor got;
    bool ok = exec_run(x, t->inputs, &got, err, sizeof err) == KILN_OK;
    CHECK(ok, "%s: run: %s", what, err);
    if (!ok) return;
    int64_t n = kiln_tensor_numel(&t->want), bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double w = kiln_tensor_get(&t->want, i), g = kiln_tensor_get(&got, i);
        if (!(fabs(g - w) <= 1e-5 + 1e-4 * fabs(w))) bad++;
    }
    CHECK(n == kiln_tensor_numel(&got) && bad == 0, "%s: %lld of %lld results differ from the reference",
          what, (long long)bad, (long long)n);
    kiln_tensor_free(&got);
}

/* Runs kp's compiled code c once on the calling thread (cpu_code_run_serial)
 * over the case's inputs, every buffer its own block; *out: a copy of
 * result 0's bytes (heap), *len its size. */
static bool run_serial(const KProgram *kp, const CpuCode *c, Case *t, unsigned char **out, size_t *len) {
    void **bufs = xcalloc((size_t)kp->bufs.len + 1, sizeof(void *));
    bool ok = true;
    *out = NULL, *len = 0;
    for (int b = 0; b < kp->bufs.len; b++) {
        const KBuf *kb = &kp->bufs.data[b];
        size_t bytes = (size_t)kb->numel * kiln_dtype_size(kb->dtype);
        bufs[b] = xcalloc(bytes + 64, 1);
        if (kb->kind == KB_INPUT) memcpy(bufs[b], t->inputs[kb->index].data, bytes);
        if (kb->kind == KB_OUTPUT && kb->index == 0) *out = bufs[b], *len = bytes;
    }
    ok = *out && cpu_code_run_serial(c, bufs);
    for (int b = 0; b < kp->bufs.len; b++)
        if (bufs[b] != *out) free(bufs[b]);
    free(bufs);
    return ok;
}

/* The shared helpers (micro-kernels, packing) compiled at build time
 * (tools/gen_helpers.c) against those compiled here: a compile as the cpu
 * device makes it (the prebuilt ones, on a CPU like the build host's) and
 * one for the code generator's tests (which always compiles them) compute
 * the same bits. */
static void test_prebuilt_helpers(Case *t, const KProgram *kp) {
    char err[2048] = "";
    char *ir = NULL;
    CpuCodeStats s1, s2;
    CpuCode *usual = cpu_code_compile(kp, &(CpuCodeOptions){NULL, 2, NULL}, &s1, err, sizeof err);
    CHECK(usual != NULL, "compile with the usual helpers: %s", err);
    CpuCode *jit = cpu_code_compile(kp, &(CpuCodeOptions){NULL, 2, &ir}, &s2, err, sizeof err);
    CHECK(jit != NULL && !s2.helpers_prebuilt, "compile with helpers compiled here: %s", err);
    printf("test_cpu_code: the cpu device's shared helpers are %s\n",
           s1.helpers_prebuilt ? "the ones prebuilt at build time"
                               : "compiled here (none prebuilt for this CPU)");
    unsigned char *a = NULL, *b = NULL;
    size_t na = 0, nb = 0;
    bool ran = usual && jit && run_serial(kp, usual, t, &a, &na) && run_serial(kp, jit, t, &b, &nb);
    CHECK(ran && na == nb && na > 0 && memcmp(a, b, na) == 0,
          "prebuilt and compiled helpers give different results (%zu and %zu bytes)", na, nb);
    free(a), free(b), free(ir);
    cpu_code_free(usual);
    cpu_code_free(jit);
}

/* Calls fn on every entry file of the cache folder. */
static int each_entry(const char *dir, void (*fn)(const char *path)) {
    DIR *d = opendir(dir);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t len = strlen(e->d_name);
        if (len < 4 || strcmp(e->d_name + len - 3, ".kc") != 0) continue;
        char path[4096];
        snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        fn(path);
        n++;
    }
    if (d) closedir(d);
    return n;
}

static void flip_middle_byte(const char *path) {
    int fd = open(path, O_RDWR);
    off_t size = fd >= 0 ? lseek(fd, 0, SEEK_END) : 0;
    unsigned char b;
    if (fd >= 0 && pread(fd, &b, 1, size / 2) == 1) {
        b ^= 0x40;
        if (pwrite(fd, &b, 1, size / 2) != 1) perror("pwrite");
    }
    if (fd >= 0) close(fd);
}

static void remove_entry(const char *path) { unlink(path); }

/* Every kernel's key, and the program's, is stored with the payload `bad`
 * (a well-formed entry of the wrong content). */
static void store_bad_entries(const KProgram *kp, const void *bad, size_t len) {
    KCache c;
    kcache_open(&c);
    char err[512];
    for (int i = 0; i <= kp->kernels.len; i++) {
        KCacheKey k = i < kp->kernels.len ? cpu_code_key(kp, i, NULL, err, sizeof err)
                                          : cpu_code_program_key(kp, NULL, err, sizeof err);
        CHECK(kcache_store(&c, k, bad, len, err, sizeof err), "storing a bad entry: %s", err);
    }
    kcache_close(&c);
}

/* fn on the file of key's entry. */
static void on_entry(KCacheKey key, void (*fn)(const char *path)) {
    KCache c;
    kcache_open(&c);
    char *path = kcache_path(&c, key);
    if (path) fn(path);
    free(path);
    kcache_close(&c);
}

static void cut_in_half(const char *path) {
    int fd = open(path, O_RDWR);
    off_t size = fd >= 0 ? lseek(fd, 0, SEEK_END) : 0;
    if (fd < 0 || ftruncate(fd, size / 2) != 0) perror("ftruncate");
    if (fd >= 0) close(fd);
}

/* The program entry's payload with one word changed (stored under its key
 * again, so that it passes the checksum): at `at`, or at the offset the
 * word at `at` holds when `indirect` (a unit entry's first byte). */
static void store_changed_program(KCacheKey key, size_t at, bool indirect) {
    KCache c;
    kcache_open(&c);
    char *data = NULL, err[512];
    size_t len = 0;
    bool ok = kcache_load(&c, key, &data, &len) == KC_HIT && len > at + 8;
    CHECK(ok, "the program entry is not in the cache");
    if (ok) {
        size_t where = indirect ? (size_t)kcache_get_u64((unsigned char *)data + at) : at;
        ok = where < len;
        if (ok) data[where] ^= 0x5a;
        CHECK(ok && kcache_store(&c, key, data, len, err, sizeof err), "storing the changed program entry");
    }
    free(data);
    kcache_close(&c);
}

/* The program entry: a warm compile takes every unit from it (one file);
 * damaged, cut short, or well-formed but not this program's (another
 * kernel count; a unit entry inside that is not one), it is passed over --
 * the units come from their own entries, the results stay right -- and
 * written anew.  Another CPU has another key. */
static void test_program_entry(Case *t) {
    CompileStats st;
    Executable *a = compile(t, &st, "program entry");
    check_run(t, a, "program entry");
    CHECK(st.programs_cached == 1 && st.cache_hits == st.distinct && st.compiled == 0,
          "program entry: %d programs whole, %d units from the cache, %d compiled of %d", st.programs_cached,
          st.cache_hits, st.compiled, st.distinct);
    const KProgram *kp = a ? exec_program(a) : NULL;
    if (!kp) {
        exec_destroy(a);
        return;
    }
    char err[512];
    KCacheKey key = cpu_code_program_key(kp, NULL, err, sizeof err);
    KCacheKey other = cpu_code_program_key(kp, "x86-64", err, sizeof err);
    CHECK(other.h[0] != key.h[0] || other.h[1] != key.h[1], "--cpu=x86-64 gives the host's program key");
    exec_destroy(a);
    static const char *const damage[] = {"a flipped byte", "cut in half", "another kernel count",
                                         "a unit entry that is not one"};
    for (int d = 0; d < 4; d++) {
        if (d == 0) on_entry(key, flip_middle_byte);
        if (d == 1) on_entry(key, cut_in_half);
        if (d == 2) store_changed_program(key, 8, false);
        if (d == 3) store_changed_program(key, 24 + 4 * 8, true); /* unit 0's entry offset */
        a = compile(t, &st, damage[d]);
        check_run(t, a, damage[d]);
        CHECK(st.programs_cached == 0 && st.cache_hits == st.distinct && st.compiled == 0,
              "%s: %d programs whole, %d units from the cache, %d compiled of %d", damage[d],
              st.programs_cached, st.cache_hits, st.compiled, st.distinct);
        exec_destroy(a);
        a = compile(t, &st, damage[d]);
        check_run(t, a, damage[d]);
        CHECK(st.programs_cached == 1, "%s: the program entry not written anew", damage[d]);
        exec_destroy(a);
    }
}

/* One of several threads compiling and running its own copy of the
 * program at once; the main thread checks what they report. */
typedef struct {
    Case *t;
    CompileStats st;
    bool compiled, right;
    pthread_barrier_t *start;
} Racer;

static void *race(void *arg) {
    Racer *r = arg;
    char err[2048] = "";
    const Backend *cpu = NULL;
    CompileOptions opt = {.opt_level = 2, .precision = PREC_F32, .stats = &r->st};
    pthread_barrier_wait(r->start);
    Executable *x = backend_open("cpu", &cpu, err, sizeof err) == KILN_OK
                        ? exec_compile(cpu, r->t->g, &opt, err, sizeof err)
                        : NULL;
    r->compiled = x != NULL;
    KilnTensor got;
    if (x && exec_run(x, r->t->inputs, &got, err, sizeof err) == KILN_OK) {
        int64_t n = kiln_tensor_numel(&r->t->want), bad = 0;
        for (int64_t i = 0; i < n; i++) {
            double w = kiln_tensor_get(&r->t->want, i), g = kiln_tensor_get(&got, i);
            if (!(fabs(g - w) <= 1e-5 + 1e-4 * fabs(w))) bad++;
        }
        r->right = bad == 0 && n == kiln_tensor_numel(&got);
        kiln_tensor_free(&got);
    }
    exec_destroy(x);
    return NULL;
}

/* Four threads on a cold cache: between them every unit is compiled once;
 * each sees every distinct kernel compiled by itself or shared.  Warm (the
 * program entry written): none compiles, each loads or shares every unit
 * (a thread that starts after another's executable is gone loads them
 * again). */
static void test_threads(bool warm) {
    enum { T = 4 };
    Case cases[T];
    Racer r[T];
    pthread_t th[T];
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, T);
    bool open = true;
    for (int i = 0; i < T; i++) open = case_open(&cases[i]) && open; /* the front end, one at a time */
    if (!open) return;
    for (int i = 0; i < T; i++) {
        r[i] = (Racer){.t = &cases[i], .start = &start};
        if (pthread_create(&th[i], NULL, race, &r[i]) != 0) {
            CHECK(false, "pthread_create failed");
            return;
        }
    }
    int compiled = 0;
    for (int i = 0; i < T; i++) {
        pthread_join(th[i], NULL);
        CHECK(r[i].compiled && r[i].right, "thread %d: %s", i, r[i].compiled ? "wrong results" : "no compile");
        CHECK(r[i].st.compiled + r[i].st.reused + r[i].st.cache_hits == r[i].st.distinct,
              "thread %d: %d compiled + %d reused + %d from the cache != %d distinct", i, r[i].st.compiled,
              r[i].st.reused, r[i].st.cache_hits, r[i].st.distinct);
        compiled += r[i].st.compiled + r[i].st.cache_hits;
        CHECK(!warm || r[i].st.compiled == 0, "warm, thread %d: %d compiled", i, r[i].st.compiled);
    }
    CHECK(warm || compiled == r[0].st.distinct, "%d units built by 4 threads for %d distinct kernels",
          compiled, r[0].st.distinct);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < T; i++) case_close(&cases[i]);
}

/* Compiles case t with kiln's loader on or off (KILN_OBJLOAD=0), runs it
 * against the reference and checks which linker took its units. */
static Executable *compile_linked(Case *t, bool loader, const char *what) {
    if (loader)
        unsetenv("KILN_OBJLOAD");
    else
        setenv("KILN_OBJLOAD", "0", 1);
    CompileStats st;
    Executable *x = compile(t, &st, what);
    check_run(t, x, what);
    int want = loader && obj_loader_available() ? st.distinct : 0;
    CHECK(st.loaded == want, "%s: %d of %d units by kiln's loader, want %d", what, st.loaded, st.distinct,
          want);
    unsetenv("KILN_OBJLOAD");
    return x;
}

/* The two linkers side by side in one process: units of a second program
 * linked by one while the helpers they call are held by the other. */
static void test_linkers(Case *t) {
    Case o;
    if (!case_open_text(&o, other_source)) return;
    Executable *a = compile_linked(t, false, "all through ORC");
    Executable *b = compile_linked(&o, true, "loaded, the helpers in ORC");
    exec_destroy(b);
    exec_destroy(a);
    a = compile_linked(t, true, "all loaded");
    b = compile_linked(&o, false, "through ORC, the helpers loaded");
    exec_destroy(b);
    exec_destroy(a);
    case_close(&o);
}

/* kiln's loader on an object of the code generator (the shared helpers,
 * compiled here): loaded, its symbols found; an unknown relocation kind
 * refused, naming it; every truncation and every flipped byte refused or
 * loaded (never run), never a crash (ASan checks the reads). */
static void test_objload(void) {
    if (!obj_loader_available()) {
        CHECK(obj_load("\177ELF", 4, NULL, NULL, (char[64]){0}, 64) == NULL, "a stub loader took an object");
        return;
    }
    char err[512] = "";
    LLVMTargetMachineRef tm = llvm_target_machine(NULL, true, err, sizeof err);
    LLVMContextRef ctx = llvm_context_new();
    char *made = tm ? llvm_target_identity(tm) : NULL, *host = llvm_host_identity();
    CHECK(made && strcmp(made, host) == 0, "the host's identity '%s' is not its target machine's '%s'", host,
          made ? made : err);
    free(made);
    free(host);
    LlvmTimes lt = {0, 0, 0};
    LLVMMemoryBufferRef obj =
        tm ? llvm_compile_helpers(ctx, tm, ".objload", &lt, NULL, err, sizeof err) : NULL;
    CHECK(obj != NULL, "compiling the helpers: %s", err);
    if (!obj) return;
    const unsigned char *data = (const unsigned char *)LLVMGetBufferStart(obj);
    size_t len = LLVMGetBufferSize(obj);
    ObjImage *im = obj_load(data, len, NULL, NULL, err, sizeof err);
    CHECK(im && obj_symbol(im, "kiln.mm.ukernel.objload") && obj_symbol(im, "kiln.mm.pack.f32.12.objload") &&
              !obj_symbol(im, "kiln.mm.ukernel"),
          "the helpers' object: %s", im ? "symbols not found" : err);
    obj_free(im);

    /* three objects into one mapping: each its own image; all or none */
    const void *three[3] = {data, data, data};
    size_t lens[3] = {len, len, len};
    ObjImage *ims[3];
    bool together = obj_load_all(3, three, lens, NULL, NULL, ims, err, sizeof err);
    CHECK(together, "three objects at once: %s", err);
    for (int k = 0; together && k < 3; k++) {
        void *f = obj_symbol(ims[k], "kiln.mm.ukernel.objload");
        CHECK(f && (k == 0 || f != obj_symbol(ims[k - 1], "kiln.mm.ukernel.objload")) && obj_size(ims[k]) > 0,
              "object %d of three at once: its own micro-kernel", k + 1);
    }
    for (int k = 0; together && k < 3; k++) obj_free(ims[k]); /* the last one unmaps */
    lens[1] = len / 2;
    together = obj_load_all(3, three, lens, NULL, NULL, ims, err, sizeof err);
    CHECK(!together && !ims[0] && !ims[1] && !ims[2] && strstr(err, "object 2 of 3"),
          "three at once, the second cut short: %s", together ? "loaded" : err);

    unsigned char *copy = xmalloc(len);
#if defined(__x86_64__) && defined(__ELF__)
    Elf64_Ehdr eh;
    memcpy(&eh, data, sizeof eh);
    bool refused = false;
    for (int i = 0; i < eh.e_shnum; i++) {
        Elf64_Shdr sh;
        memcpy(&sh, data + eh.e_shoff + (size_t)i * sizeof sh, sizeof sh);
        if (sh.sh_type != SHT_RELA || sh.sh_size == 0) continue;
        memcpy(copy, data, len);
        Elf64_Rela rel;
        memcpy(&rel, copy + sh.sh_offset, sizeof rel);
        rel.r_info = ELF64_R_INFO(ELF64_R_SYM(rel.r_info), R_X86_64_TPOFF64);
        memcpy(copy + sh.sh_offset, &rel, sizeof rel);
        im = obj_load(copy, len, NULL, NULL, err, sizeof err);
        refused = !im && strstr(err, "relocation kind 18");
        obj_free(im);
        break;
    }
    CHECK(refused, "a thread-local relocation: %s", err);
#endif
    int took = 0, refusals = 0;
    for (size_t cut = 0; cut < len; cut += 1 + cut / 64) {
        unsigned char *part = xmalloc(cut + 1); /* a block of its own: ASan sees reads past it */
        memcpy(part, data, cut);
        im = obj_load(part, cut, NULL, NULL, err, sizeof err);
        took += im != NULL, refusals += im == NULL;
        obj_free(im);
        free(part);
    }
    CHECK(took == 0 && refusals > 0, "truncated objects: %d loaded", took);
    took = refusals = 0;
    for (size_t i = 0; i < len; i++) {
        memcpy(copy, data, len);
        copy[i] ^= (unsigned char)(0x5a + i);
        im = obj_load(copy, len, NULL, NULL, err, sizeof err);
        took += im != NULL, refusals += im == NULL;
        obj_free(im);
    }
    CHECK(took > 0 && refusals > 0, "flipped bytes: %d loaded, %d refused", took, refusals);
    free(copy);
    LLVMDisposeMemoryBuffer(obj);
    LLVMContextDispose(ctx);
    LLVMDisposeTargetMachine(tm);
}

int main(void) {
    char dir[] = "/tmp/test_cpu_code.XXXXXX";
    if (!mkdtemp(dir)) {
        perror("test_cpu_code: mkdtemp");
        return 1;
    }
    setenv("KILN_CACHE", dir, 1);
    Case t;
    if (!case_open(&t)) {
        printf("test_cpu_code: %d passed, %d failed\n", npass, nfail);
        return 1;
    }
    CompileStats s1, s2, s3;

    /* cold: identical layers compiled once */
    Executable *a = compile(&t, &s1, "cold");
    check_run(&t, a, "cold");
    CHECK(s1.distinct > 0 && s1.distinct < s1.kernels,
          "%d distinct of %d kernels: identical layers not shared", s1.distinct, s1.kernels);
    CHECK(s1.compiled == s1.distinct && s1.cache_hits == 0, "cold: %d compiled, %d from the cache of %d",
          s1.compiled, s1.cache_hits, s1.distinct);
    const KProgram *kp = a ? exec_program(a) : NULL;
    if (kp) { /* the three layers' products share a key; the target is part of it */
        char err[512];
        int same = 0;
        KCacheKey k0 = cpu_code_key(kp, 0, NULL, err, sizeof err);
        for (int i = 1; i < kp->kernels.len; i++) {
            KCacheKey k = cpu_code_key(kp, i, NULL, err, sizeof err);
            same += k.h[0] == k0.h[0] && k.h[1] == k0.h[1];
        }
        CHECK(same >= 1, "no kernel shares kernel 0's key (%s)", kp->kernels.data[0].name);
        KCacheKey other = cpu_code_key(kp, 0, "x86-64", err, sizeof err);
        CHECK(other.h[0] != k0.h[0] || other.h[1] != k0.h[1], "--cpu=x86-64 gives the host's key");
    }

    if (kp) test_prebuilt_helpers(&t, kp);

    /* a second compile while the first lives: every unit reused */
    Executable *b = compile(&t, &s2, "second");
    check_run(&t, b, "second");
    CHECK(s2.reused == s2.distinct && s2.compiled == 0, "second: %d reused, %d compiled of %d", s2.reused,
          s2.compiled, s2.distinct);
    exec_destroy(b);
    exec_destroy(a);

    /* warm: a new compile with no unit alive loads them from the disk */
    a = compile(&t, &s3, "warm");
    check_run(&t, a, "warm");
    CHECK(s3.cache_hits == s3.distinct && s3.compiled == 0, "warm: %d from the cache, %d compiled of %d",
          s3.cache_hits, s3.compiled, s3.distinct);
    exec_destroy(a);

    /* a flipped byte in every entry: each is found damaged and rebuilt */
    int entries = each_entry(dir, flip_middle_byte);
    CHECK(entries >= s1.distinct, "%d entries for %d distinct kernels", entries, s1.distinct);
    a = compile(&t, &s3, "damaged");
    check_run(&t, a, "damaged");
    CHECK(s3.cache_hits == 0 && s3.compiled == s3.distinct, "damaged: %d from the cache, %d compiled",
          s3.cache_hits, s3.compiled);
    kp = a ? exec_program(a) : NULL;
    exec_destroy(a);
    a = compile(&t, &s3, "rebuilt");
    check_run(&t, a, "rebuilt");
    CHECK(s3.cache_hits == s3.distinct, "rebuilt entries: %d from the cache of %d", s3.cache_hits,
          s3.distinct);
    kp = a ? exec_program(a) : NULL;

    /* entries that pass the checksum but hold the wrong thing: another
     * kind of payload, then a CPU entry whose object is not one */
    static const char ptx[] = "// not an object\n.version 8.0\n";
    unsigned char fake[40 + 64] = KCACHE_CPU_MAGIC;
    memcpy(fake + 40, "\177ELF", 4);
    for (int round = 0; round < 2 && kp; round++) {
        if (round == 0)
            store_bad_entries(kp, ptx, sizeof ptx);
        else
            store_bad_entries(kp, fake, sizeof fake);
        exec_destroy(a);
        kp = NULL;
        a = compile(&t, &s3, round ? "not an object" : "wrong kind");
        check_run(&t, a, round ? "not an object" : "wrong kind");
        CHECK(s3.cache_hits == 0 && s3.compiled == s3.distinct, "%s: %d from the cache, %d compiled",
              round ? "not an object" : "wrong kind", s3.cache_hits, s3.compiled);
        kp = a ? exec_program(a) : NULL;
    }
    exec_destroy(a);

    test_program_entry(&t);
    test_linkers(&t);
    test_objload();

    each_entry(dir, remove_entry); /* cold again, for the threads */
    test_threads(false);
    test_threads(true);

    each_entry(dir, remove_entry);
    char lock[sizeof dir + 8];
    snprintf(lock, sizeof lock, "%s/lock", dir);
    unlink(lock);
    rmdir(dir);
    case_close(&t);
    printf("test_cpu_code: %d passed, %d failed\n", npass, nfail);
    return nfail ? 1 : 0;
}
