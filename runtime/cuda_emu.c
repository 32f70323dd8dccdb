/* cuda_emu.c - `--device=cuda-emu`: the generated CUDA C run on the host.
 *
 * Contract: the backend (backend.h; the executor does the rest) prepares a
 * verified kernel program by rendering it with cuda_codegen(emulated=true),
 * writing the source and kiln_emu.h (the CUDA environment,
 * runtime/cuda_emu_header.h) into a cache folder, building them with the
 * host C++ compiler into a shared object and loading it; launch() calls one
 * kernel's `launch_NAME(args)` with the host memory of its buffers.
 *
 * A launch runs the grid here: blocks one after another; a block's threads
 * one after another when the kernel has no barrier, else as cooperative
 * fibers (a small stack switch on x86-64, ucontext elsewhere) that yield at
 * __syncthreads and at the two warp meetings of a shuffle, so shared memory
 * and shuffles behave as on a GPU.  Threads that wait at different barriers
 * forever are reported, not hung on.
 *
 * Shared objects live in the kernel cache (runtime/kcache.h: keyed by a hash
 * of the header, the source and the compiler command; checksummed, verified
 * before use and rebuilt when damaged); KILN_CACHE=off compiles every time.
 * The verified bytes are loaded from a memory file, never from the cache's
 * own file.  The compiler is $KILN_CXX, else $CXX, else c++.  One launch
 * runs at a time per process.
 *
 * KILN_EMU selects modes that behave more like hardware (cuda_emu.h):
 * poisoned device memory, blocks and threads in reverse order, tensor cores. */
#include "runtime/cuda_emu.h"
#include "runtime/cuda_driver.h"
#include "runtime/kcache.h"
#include "runtime/outfile.h"

#include <dlfcn.h>
#include <errno.h>
#include <pthread.h>
#include <spawn.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <ucontext.h>
#include <unistd.h>

#include "runtime/cuda_emu_header.h"

extern char **environ;

#if defined(__SANITIZE_ADDRESS__)
#define KEMU_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define KEMU_ASAN 1
#endif
#endif
#ifdef KEMU_ASAN
void __sanitizer_start_switch_fiber(void **fake_stack_save, const void *bottom, size_t size);
void __sanitizer_finish_switch_fiber(void *fake_stack_save, const void **bottom_old, size_t *size_old);
void __asan_unpoison_memory_region(void const volatile *addr, size_t size);
#endif

/* Unmaps the fiber stacks.  Under ASan their shadow is cleared first: a
 * fiber that ended by switching away left its frames' redzones poisoned,
 * and a later mapping at the same addresses (the object loader's, say)
 * would inherit them (a false "stack-buffer-underflow" on its first
 * memcpy, make asan at session 15). */
static void unmap_stacks(void *stacks, size_t bytes) {
#ifdef KEMU_ASAN
    __asan_unpoison_memory_region(stacks, bytes);
#endif
    munmap(stacks, bytes);
}

#if defined(__x86_64__) && !defined(KILN_EMU_UCONTEXT) /* -DKILN_EMU_UCONTEXT: the portable path */
#define KEMU_ASM_SWITCH 1
#endif

/* ------------------------------------------------ the header's structs */

typedef struct {
    unsigned x, y, z;
} EmuDim3;

typedef struct {
    unsigned grid[3], block[3];
    int sync;
    void (*body)(void **args);
    const char *name;
} KemuLaunch;

typedef struct {
    int (*launch)(const KemuLaunch *d, void **args);
    void (*syncthreads)(void);
    void (*syncwarp)(void);
    EmuDim3 tidx, bidx, bdim, gdim;
    unsigned tid;
    unsigned long long *slots;
    int fault, fault_buf;
    long long fault_index, fault_size;
} KemuRuntime;

/* ------------------------------------------------------------ fibers */

enum { STACK_BYTES = 128 * 1024, MAX_BLOCK = 1024 };
enum { F_READY, F_WAIT_BLOCK, F_WAIT_WARP, F_DONE };

typedef struct {
#ifdef KEMU_ASM_SWITCH
    void *sp;
#else
    ucontext_t uc;
#endif
    char *stack;
    int state;
} Fiber;

struct EmuModule {
    void *handle;
    KemuRuntime *rt;
    int n;
    int (**launch)(void **args);
    char **names; /* of the launches, for messages */
    char *path;   /* the shared object, for messages: /proc/self/fd/FD */
    int fd;       /* the memory file holding it, open while it is loaded */
    /* fiber resources, grown to the largest block */
    Fiber *fibers;
    char *stacks;
    int nstacks;
    unsigned long long slots[MAX_BLOCK];
    bool reverse; /* blocks and threads in reverse order */
    char msg[512];
};

typedef struct {
    EmuModule *m;
    const KemuLaunch *d;
    void **args;
    Fiber main;
    int n, cur;
    int live, arrived; /* the block's barrier */
    int wlive[MAX_BLOCK / 32], warrived[MAX_BLOCK / 32];
#ifdef KEMU_ASAN
    const void *main_bottom;
    size_t main_size;
#endif
} Sched;

/* The running launch: the fiber callbacks take no arguments. */
static __thread Sched *cur_sched;
static __thread EmuModule *cur_module;
static pthread_mutex_t launch_lock = PTHREAD_MUTEX_INITIALIZER;

#ifdef KEMU_ASM_SWITCH
/* kiln_emu_switch(save, to): saves the callee-saved registers on this stack,
 * its pointer in *save, and resumes the stack `to` the same way. */
__asm__(".text\n"
        ".globl kiln_emu_switch\n"
        ".hidden kiln_emu_switch\n"
        ".type kiln_emu_switch,@function\n"
        "kiln_emu_switch:\n"
        "    pushq %rbp\n"
        "    pushq %rbx\n"
        "    pushq %r12\n"
        "    pushq %r13\n"
        "    pushq %r14\n"
        "    pushq %r15\n"
        "    movq %rsp, (%rdi)\n"
        "    movq %rsi, %rsp\n"
        "    popq %r15\n"
        "    popq %r14\n"
        "    popq %r13\n"
        "    popq %r12\n"
        "    popq %rbx\n"
        "    popq %rbp\n"
        "    ret\n"
        ".size kiln_emu_switch, .-kiln_emu_switch\n");
void kiln_emu_switch(void **save, void *to);
#endif

static void fiber_switch(Sched *s, Fiber *from, Fiber *to, bool from_ends) {
#ifdef KEMU_ASAN
    void *fake = NULL;
    if (to == &s->main) __sanitizer_start_switch_fiber(from_ends ? NULL : &fake, s->main_bottom, s->main_size);
    else __sanitizer_start_switch_fiber(from_ends ? NULL : &fake, to->stack, STACK_BYTES);
#else
    (void)s, (void)from_ends;
#endif
#ifdef KEMU_ASM_SWITCH
    kiln_emu_switch(&from->sp, to->sp);
#else
    swapcontext(&from->uc, &to->uc);
#endif
#ifdef KEMU_ASAN
    if (from == &s->main) __sanitizer_finish_switch_fiber(fake, NULL, NULL);
    else __sanitizer_finish_switch_fiber(fake, NULL, NULL);
#endif
}

static void release(Sched *s, int from, int to, int waiting) {
    for (int t = from; t < to; t++)
        if (s->m->fibers[t].state == waiting) s->m->fibers[t].state = F_READY;
}

static void fiber_finish(Sched *s) {
    Fiber *f = &s->m->fibers[s->cur];
    int w = s->cur / 32;
    f->state = F_DONE;
    s->live--;
    s->wlive[w]--;
    /* threads that exited no longer hold a barrier back */
    if (s->arrived > 0 && s->arrived == s->live) {
        s->arrived = 0;
        release(s, 0, s->n, F_WAIT_BLOCK);
    }
    if (s->warrived[w] > 0 && s->warrived[w] == s->wlive[w]) {
        s->warrived[w] = 0;
        release(s, w * 32, w * 32 + 32 < s->n ? w * 32 + 32 : s->n, F_WAIT_WARP);
    }
    fiber_switch(s, f, &s->main, true);
    abort(); /* a finished fiber is never resumed */
}

static void fiber_entry(void) {
    Sched *s = cur_sched;
#ifdef KEMU_ASAN
    __sanitizer_finish_switch_fiber(NULL, &s->main_bottom, &s->main_size);
#endif
    s->d->body(s->args);
    fiber_finish(s);
}

static void emu_syncthreads(void) {
    Sched *s = cur_sched;
    if (!s) return; /* a kernel without barriers (run plainly) never calls this */
    if (++s->arrived == s->live) { /* the last to arrive goes on */
        s->arrived = 0;
        release(s, 0, s->n, F_WAIT_BLOCK);
        return;
    }
    Fiber *f = &s->m->fibers[s->cur];
    f->state = F_WAIT_BLOCK;
    fiber_switch(s, f, &s->main, false);
}

static void emu_syncwarp(void) {
    Sched *s = cur_sched;
    if (!s) return;
    int w = s->cur / 32;
    if (++s->warrived[w] == s->wlive[w]) {
        s->warrived[w] = 0;
        release(s, w * 32, w * 32 + 32 < s->n ? w * 32 + 32 : s->n, F_WAIT_WARP);
        return;
    }
    Fiber *f = &s->m->fibers[s->cur];
    f->state = F_WAIT_WARP;
    fiber_switch(s, f, &s->main, false);
}

static void fiber_start(Fiber *f) {
#ifdef KEMU_ASM_SWITCH
    uintptr_t top = ((uintptr_t)f->stack + STACK_BYTES) & ~(uintptr_t)15;
    void **sp = (void **)top;
    *--sp = NULL;                 /* where fiber_entry's return address would be */
    *--sp = (void *)fiber_entry;  /* kiln_emu_switch's ret goes here */
    for (int i = 0; i < 6; i++) *--sp = NULL; /* rbp rbx r12-r15 */
    f->sp = sp;
#else
    getcontext(&f->uc);
    f->uc.uc_stack.ss_sp = f->stack;
    f->uc.uc_stack.ss_size = STACK_BYTES;
    f->uc.uc_link = NULL;
    makecontext(&f->uc, fiber_entry, 0);
#endif
    f->state = F_READY;
}

static void set_thread(KemuRuntime *rt, const KemuLaunch *d, int t) {
    unsigned bx = d->block[0], by = d->block[1];
    rt->tidx = (EmuDim3){(unsigned)t % bx, ((unsigned)t / bx) % by, (unsigned)t / (bx * by)};
    rt->tid = (unsigned)t;
}

static bool ensure_stacks(EmuModule *m, int n) {
    if (n <= m->nstacks) return true;
    if (m->stacks) unmap_stacks(m->stacks, (size_t)m->nstacks * STACK_BYTES);
    free(m->fibers);
    m->nstacks = 0;
    m->fibers = xcalloc((size_t)n, sizeof(Fiber));
    void *p = mmap(NULL, (size_t)n * STACK_BYTES, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                   -1, 0);
    if (p == MAP_FAILED) {
        m->stacks = NULL;
        return false;
    }
    m->stacks = p;
    m->nstacks = n;
    for (int t = 0; t < n; t++) m->fibers[t].stack = m->stacks + (size_t)t * STACK_BYTES;
    return true;
}

/* kemu_rt.launch: runs the whole grid of one kernel. */
static int emu_launch(const KemuLaunch *d, void **args) {
    EmuModule *m = cur_module;
    KemuRuntime *rt = m->rt;
    int nt = (int)(d->block[0] * d->block[1] * d->block[2]);
    if (nt < 1 || nt > MAX_BLOCK) {
        snprintf(m->msg, sizeof m->msg, "kernel %s: block of %d threads (1 to %d)", d->name, nt, MAX_BLOCK);
        return 1;
    }
    rt->gdim = (EmuDim3){d->grid[0], d->grid[1], d->grid[2]};
    rt->bdim = (EmuDim3){d->block[0], d->block[1], d->block[2]};
    rt->slots = m->slots;
    if (d->sync && !ensure_stacks(m, nt)) {
        snprintf(m->msg, sizeof m->msg, "kernel %s: no memory for %d fiber stacks", d->name, nt);
        return 1;
    }
    Sched s = {.m = m, .d = d, .args = args, .n = nt};
    unsigned long long gx = d->grid[0], gy = d->grid[1], nblocks = gx * gy * d->grid[2];
    for (unsigned long long q = 0; q < nblocks; q++) {
        unsigned long long blk = m->reverse ? nblocks - 1 - q : q;
        unsigned bx = (unsigned)(blk % gx), by = (unsigned)(blk / gx % gy), bz = (unsigned)(blk / (gx * gy));
        rt->bidx = (EmuDim3){bx, by, bz};
        if (!d->sync) {
            for (int k = 0; k < nt; k++) {
                set_thread(rt, d, m->reverse ? nt - 1 - k : k);
                d->body(args);
            }
            continue;
        }
        for (int t = 0; t < nt; t++) fiber_start(&m->fibers[t]);
        s.live = nt, s.arrived = 0;
        for (int w = 0; w * 32 < nt; w++) {
            s.wlive[w] = nt - w * 32 < 32 ? nt - w * 32 : 32;
            s.warrived[w] = 0;
        }
        cur_sched = &s;
        while (s.live > 0) {
            bool progress = false;
            for (int k = 0; k < nt; k++) {
                int t = m->reverse ? nt - 1 - k : k;
                if (m->fibers[t].state != F_READY) continue;
                s.cur = t;
                set_thread(rt, d, t);
                fiber_switch(&s, &s.main, &m->fibers[t], false);
                progress = true;
            }
            if (!progress) {
                int wb = 0, ww = 0;
                for (int t = 0; t < nt; t++) {
                    wb += m->fibers[t].state == F_WAIT_BLOCK;
                    ww += m->fibers[t].state == F_WAIT_WARP;
                }
                snprintf(m->msg, sizeof m->msg,
                         "kernel %s, block (%u, %u, %u): threads wait at different barriers "
                         "(%d at __syncthreads, %d at a warp shuffle, %d finished)",
                         d->name, bx, by, bz, wb, ww, nt - s.live);
                cur_sched = NULL;
                return 1;
            }
        }
        cur_sched = NULL;
    }
    return 0;
}

/* ------------------------------------------------------ build and load */

static bool write_text(const char *path, const char *text) {
    const void *part = text;
    size_t n = strlen(text);
    char ignored[256];
    return outfile_write(path, 1, &part, &n, ignored, sizeof ignored) == KILN_OK;
}

typedef VEC(char *) ArgVec;

/* The compiler command up to (not including) the output and input names. */
static void compiler_argv(ArgVec *argv) {
    const char *cxx = getenv("KILN_CXX");
    if (!cxx || !*cxx) cxx = getenv("CXX");
    if (!cxx || !*cxx) cxx = "c++";
    char *words = xstrdup(cxx);
    for (char *w = strtok(words, " \t"); w; w = strtok(NULL, " \t")) VEC_PUSH(*argv, xstrdup(w));
    free(words);
    static const char *const flags[] = {"-std=c++17", "-O1", "-fPIC", "-shared", "-fvisibility=hidden",
                                        "-fno-strict-aliasing", "-fno-exceptions", "-fno-rtti",
                                        "-fno-math-errno", "-w"};
    for (size_t i = 0; i < sizeof flags / sizeof flags[0]; i++) VEC_PUSH(*argv, xstrdup(flags[i]));
}

/* Runs argv, collecting its standard output and error. */
static bool run_tool(char **argv, StrBuf *output, int *status) {
    int fds[2];
    if (pipe(fds) != 0) return false;
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 1);
    posix_spawn_file_actions_adddup2(&fa, fds[1], 2);
    posix_spawn_file_actions_addclose(&fa, fds[0]);
    pid_t pid;
    int rc = posix_spawnp(&pid, argv[0], &fa, NULL, argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    close(fds[1]);
    if (rc != 0) {
        close(fds[0]);
        errno = rc;
        return false;
    }
    char buf[4096];
    ssize_t n;
    while ((n = read(fds[0], buf, sizeof buf - 1)) > 0 || (n < 0 && errno == EINTR)) {
        if (n <= 0) continue;
        buf[n] = 0;
        sb_puts(output, buf);
    }
    close(fds[0]);
    while (waitpid(pid, status, 0) < 0)
        if (errno != EINTR) return false;
    return true;
}

static void remove_build_dir(const char *dir) {
    static const char *const files[] = {"kiln_emu.h", "kernels.cpp", "kernels.so"};
    StrBuf sb = {0};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        sb.len = 0;
        sb_printf(&sb, "%s/%s", dir, files[i]);
        unlink(sb.data);
    }
    sb_free(&sb);
    rmdir(dir);
}

/* Whether a compiler's output says it ran out of memory (GCC: "out of
 * memory allocating", "virtual memory exhausted"; clang and the loader:
 * "Cannot allocate memory", "failed to map segment"): the message then says
 * so rather than blaming the generated code.  The exit status is 3 either way. */
static bool out_of_memory_said(const char *output) {
    static const char *const signs[] = {"out of memory", "memory exhausted", "Cannot allocate memory",
                                        "failed to map segment"};
    for (size_t i = 0; output && i < sizeof signs / sizeof signs[0]; i++)
        if (strstr(output, signs[i])) return true;
    return false;
}

/* Compiles cp's source with the host C++ compiler in a private folder and
 * returns the shared object's bytes (heap; *len set), or NULL with err. */
static char *compile_so(const CudaProgram *cp, ArgVec *argv, size_t *len, char *err, size_t errlen) {
    const char *tmp = getenv("TMPDIR") && getenv("TMPDIR")[0] ? getenv("TMPDIR") : "/tmp";
    StrBuf dir = {0}, hdr = {0}, src = {0}, obj = {0}, out = {0};
    char *bytes = NULL;
    sb_printf(&dir, "%s/kiln-emu-XXXXXX", tmp);
    if (!mkdtemp(dir.data)) {
        snprintf(err, errlen, "cannot create a build folder under %s: %s", tmp, strerror(errno));
        sb_free(&dir);
        return NULL;
    }
    sb_printf(&hdr, "%s/kiln_emu.h", dir.data);
    sb_printf(&src, "%s/kernels.cpp", dir.data);
    sb_printf(&obj, "%s/kernels.so", dir.data);
    bool keep = false; /* the source, for the user to see why it failed */
    if (!write_text(hdr.data, cuda_emu_header) || !write_text(src.data, cp->source)) {
        snprintf(err, errlen, "cannot write %s: %s", src.data, strerror(errno));
    } else {
        VEC_PUSH(*argv, xstrdup("-o"));
        VEC_PUSH(*argv, xstrdup(obj.data));
        VEC_PUSH(*argv, xstrdup(src.data));
        VEC_PUSH(*argv, xstrdup("-lm"));
        VEC_PUSH(*argv, NULL);
        int status = 0;
        char rerr[256];
        if (!run_tool(argv->data, &out, &status)) {
            snprintf(err, errlen,
                     "cannot run the C++ compiler '%s': %s (set CXX or KILN_CXX to a C++ compiler)",
                     argv->data[0], strerror(errno));
        } else if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            snprintf(err, errlen, "the C++ compiler (%s) %s the generated code (kept in %s):\n%s",
                     argv->data[0], out_of_memory_said(out.data) ? "ran out of memory building" : "refused",
                     src.data, out.data ? out.data : "(no output)");
            keep = true;
        } else if (!read_file(obj.data, &bytes, len, rerr, sizeof rerr)) {
            snprintf(err, errlen, "%s", rerr);
        }
    }
    if (!keep) remove_build_dir(dir.data);
    sb_free(&hdr), sb_free(&src), sb_free(&obj), sb_free(&dir), sb_free(&out);
    return bytes;
}

/* The shared object of cp: from the kernel cache (runtime/kcache.h: checked
 * against its checksum before use; a damaged entry is rebuilt), else
 * compiled and stored there.  Heap bytes, or NULL with err. */
static char *shared_object(const CudaProgram *cp, size_t *len, char *err, size_t errlen) {
    ArgVec argv = {0};
    compiler_argv(&argv);
    KCacheHasher h;
    kcache_hash_init(&h);
    kcache_hash_str(&h, "kiln " KILN_VERSION " cuda-emu shared object v2");
    kcache_hash_part(&h, cuda_emu_header, sizeof cuda_emu_header);
    kcache_hash_str(&h, cp->source);
    for (int i = 0; i < argv.len; i++) kcache_hash_str(&h, argv.data[i]);
    KCacheKey key = kcache_hash_done(&h);
    KCache cache;
    kcache_open(&cache);
    char *bytes = NULL;
    if (kcache_load(&cache, key, &bytes, len) != KC_HIT) {
        bytes = compile_so(cp, &argv, len, err, errlen);
        char serr[512];
        if (bytes)
            kcache_store(&cache, key, bytes, *len, serr,
                         sizeof serr); /* a cache that fails costs time only */
    }
    kcache_close(&cache);
    for (int i = 0; i < argv.len; i++) free(argv.data[i]);
    VEC_FREE(argv);
    return bytes;
}

EmuModule *cuda_emu_load(const CudaProgram *cp, char *err, size_t errlen) {
    size_t len = 0;
    char *so = shared_object(cp, &len, err, errlen);
    if (!so) return NULL;
    EmuModule *m = xcalloc(1, sizeof(EmuModule));
    /* dlopen reads the checked bytes from a memory file that stays open
     * while the module is loaded: no later change to the cache reaches it,
     * and its /proc/self/fd name is unique among loaded modules. */
    m->fd = memfd_create("kiln-emu.so", MFD_CLOEXEC);
    bool written = m->fd >= 0 && write_fully(m->fd, so, len);
    free(so);
    StrBuf path = {0};
    sb_printf(&path, "/proc/self/fd/%d", m->fd);
    m->path = path.data;
    if (!written) {
        snprintf(err, errlen, "cannot make a memory file for the kernels: %s", strerror(errno));
        cuda_emu_unload(m);
        return NULL;
    }
    m->handle = dlopen(m->path, RTLD_NOW | RTLD_LOCAL);
    if (!m->handle) {
        snprintf(err, errlen, "cannot load the compiled kernels: %s", dlerror());
        cuda_emu_unload(m);
        return NULL;
    }
    m->rt = dlsym(m->handle, "kemu_rt");
    m->n = cp->launches.len;
    m->launch = xcalloc((size_t)m->n + 1, sizeof *m->launch);
    m->names = xcalloc((size_t)m->n + 1, sizeof *m->names);
    for (int i = 0; i < m->n; i++) m->names[i] = xstrdup(cp->launches.data[i].name);
    if (!m->rt) {
        snprintf(err, errlen, "the compiled kernels have no kemu_rt");
        cuda_emu_unload(m);
        return NULL;
    }
    m->rt->launch = emu_launch;
    m->rt->syncthreads = emu_syncthreads;
    m->rt->syncwarp = emu_syncwarp;
    for (int i = 0; i < m->n; i++) {
        StrBuf sym = {0};
        sb_printf(&sym, "launch_%s", cp->launches.data[i].name);
        *(void **)&m->launch[i] = dlsym(m->handle, sym.data);
        if (!m->launch[i]) {
            snprintf(err, errlen, "the compiled kernels have no %s", sym.data);
            sb_free(&sym);
            cuda_emu_unload(m);
            return NULL;
        }
        sb_free(&sym);
    }
    return m;
}

void cuda_emu_unload(EmuModule *m) {
    if (!m) return;
    if (m->handle) dlclose(m->handle);
    if (m->fd >= 0) close(m->fd);
    if (m->stacks) unmap_stacks(m->stacks, (size_t)m->nstacks * STACK_BYTES);
    free(m->fibers);
    free(m->launch);
    for (int i = 0; m->names && i < m->n; i++) free(m->names[i]);
    free(m->names);
    free(m->path);
    free(m);
}

void cuda_emu_set_reverse(EmuModule *m, bool reverse) { m->reverse = reverse; }

bool cuda_emu_modes_parse(const char *spec, EmuModes *modes, char *err, size_t errlen) {
    memset(modes, 0, sizeof *modes);
    char *copy = xstrdup(spec ? spec : "");
    bool ok = true;
    for (char *save = NULL, *w = strtok_r(copy, ", ", &save); w && ok; w = strtok_r(NULL, ", ", &save)) {
        bool all = strcmp(w, "all") == 0;
        if (all || strcmp(w, "poison") == 0) modes->poison = true;
        if (all || strcmp(w, "reverse") == 0) modes->reverse = true;
        if (all || strcmp(w, "tensor-cores") == 0) modes->tensor_cores = true;
        if (!all && strcmp(w, "poison") && strcmp(w, "reverse") && strcmp(w, "tensor-cores")) {
            snprintf(err, errlen, "KILN_EMU: unknown mode '%s' (modes: poison, reverse, tensor-cores, all)",
                     w);
            ok = false;
        }
    }
    free(copy);
    return ok;
}

bool cuda_emu_launch(EmuModule *m, int i, void **args, char *err, size_t errlen) {
    if (i < 0 || i >= m->n) {
        snprintf(err, errlen, "cuda-emu: no launch %d", i);
        return false;
    }
    pthread_mutex_lock(&launch_lock);
    cur_module = m;
    m->msg[0] = 0;
    m->rt->fault = 0;
    int rc = m->launch[i](args);
    if (rc == 0 && m->rt->fault) { /* what a GPU would do silently, or fault on */
        snprintf(m->msg, sizeof m->msg,
                 "kernel %s accessed buffer b%d at index %lld, outside its %lld elements "
                 "(an indexing bug in the kernel program or the generated code)",
                 m->names[i], m->rt->fault_buf, m->rt->fault_index, m->rt->fault_size);
        rc = 1;
    }
    cur_module = NULL;
    if (rc != 0) snprintf(err, errlen, "cuda-emu: %s", m->msg);
    pthread_mutex_unlock(&launch_lock);
    return rc == 0;
}

/* ------------------------------------------------------------- backend */

/* The cuda-emu program: the kernel program rendered for the emulator
 * (tensor cores as the GPU would use them when --arch names sm_80 or later),
 * built and loaded.  Buffers are host memory: the executor binds them. */
typedef struct {
    const KProgram *kp;
    CudaProgram cp;
    EmuModule *mod;
    EmuModes modes; /* KILN_EMU */
} EmuProg;

static void emu_release(void *p) {
    EmuProg *x = p;
    if (!x) return;
    cuda_emu_unload(x->mod);
    cuda_program_free(&x->cp);
    free(x);
}

static void *emu_prepare(const KProgram *kp, const CompileOptions *opt, char *err, size_t errlen) {
    int sm = 80;
    bool tensor_cores = false;
    if (opt && opt->arch) {
        if (!cuda_parse_arch(opt->arch, &sm, err, errlen)) return NULL;
        tensor_cores = sm >= 80;
    }
    EmuProg *x = xcalloc(1, sizeof *x);
    x->kp = kp;
    if (!cuda_emu_modes_parse(getenv("KILN_EMU"), &x->modes, err, errlen) ||
        !cuda_codegen_ex(kp, sm, true, tensor_cores || x->modes.tensor_cores, &x->cp, err, errlen)) {
        emu_release(x);
        return NULL;
    }
    double t0 = trace_clock_ms();
    x->mod = cuda_emu_load(&x->cp, err, errlen);
    trace_span(kp->trace, "codegen", t0, trace_clock_ms(), "host C++ compiler (or its cache) + dlopen");
    if (!x->mod) {
        emu_release(x);
        return NULL;
    }
    cuda_emu_set_reverse(x->mod, x->modes.reverse);
    return x;
}

/* KILN_EMU=poison: what the kernels must write starts as garbage that shows,
 * as device memory does on a GPU: NaN in floats, 0xA5 bytes in integers. */
static void poison(const KProgram *kp, void *const *bufs) {
    for (int b = 0; b < kp->bufs.len; b++) {
        const KBuf *kb = &kp->bufs.data[b];
        KilnDType dt = kb->dtype;
        bool fl = dt == KILN_F32 || dt == KILN_F64 || dt == KILN_F16 || dt == KILN_BF16;
        if (kb->kind != KB_INPUT && bufs[b] && kb->numel > 0)
            memset(bufs[b], fl ? 0xff : 0xa5, (size_t)kb->numel * kiln_dtype_size(dt));
    }
}

/* Launch i with the host memory of its buffers (the executor launches 0
 * first in every run: the memory is poisoned then). */
static bool emu_backend_launch(void *p, void *call, int i, void *const *bufs, char *err, size_t errlen) {
    (void)call;
    EmuProg *x = p;
    if (x->modes.poison && i == 0 && x->kp) poison(x->kp, bufs);
    const CudaLaunch *L = &x->cp.launches.data[i];
    void **args = xcalloc((size_t)L->nargs + 1, sizeof *args);
    for (int j = 0; j < L->nargs; j++) args[j] = bufs[L->buf_args[j]];
    bool ok = cuda_emu_launch(x->mod, i, args, err, errlen);
    free(args);
    return ok;
}

const Backend cuda_emu_backend = {
    .name = "cuda-emu",
    .summary = "the generated CUDA C run on the host (tests the CUDA path without a GPU)",
    .caps = BK_KERNELS | BK_HOST_MEMORY,
    .kernels = {emu_prepare, emu_release, NULL, NULL, emu_backend_launch, NULL},
};

bool cuda_emu_run_program(const KProgram *p, void **bufs, bool tensor_cores, char *err, size_t errlen) {
    CompileOptions opt = {.arch = tensor_cores ? "sm_80" : NULL};
    void *prog = emu_prepare(p, &opt, err, errlen);
    bool ok = prog != NULL;
    for (int i = 0; ok && i < p->kernels.len; i++) ok = emu_backend_launch(prog, NULL, i, bufs, err, errlen);
    emu_release(prog);
    return ok;
}
