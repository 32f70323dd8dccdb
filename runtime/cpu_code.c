/* cpu_code.c - CPU machine code once per distinct kernel: keys, the
 * process's units and JIT, the disk cache, compile threads (cpu_code.h).
 *
 * A kernel becomes a unit: a one-kernel KProgram (canonical_kernel) whose
 * buffers are the kernel's own, renumbered by first use, so that two
 * identical kernels of any programs give the same program, the same key
 * (kernel_key) and the same code.  Units live in one table per process
 * (`units`, a hash table under one mutex).  A unit's object is loaded by
 * kiln's own loader (runtime/objload.h: a mapping of its own, no JIT to
 * make) where the loader takes it, else linked into the process's one
 * LLJIT (made when first needed) under a resource tracker of its own;
 * either goes when the unit's last user does, the JIT with the last unit.
 * A program's units are also stored together in one program entry (keyed
 * by the whole program): a warm start reads that one file and skips the
 * kernels' canonical programs and keys. */
#include "runtime/cpu_code.h"

#include "runtime/objload.h"

#include <llvm-c/Error.h>
#include <llvm-c/ExecutionEngine.h>
#include <llvm-c/LLJIT.h>
#include <llvm-c/Orc.h>
#include <llvm-c/OrcEE.h>

#if __has_include("prebuilt_helpers.h")
#include "prebuilt_helpers.h" /* BUILD/gen, written by tools/gen_helpers.c */
#endif

#include <dlfcn.h>
#include <link.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static double wall_ms(void) { return clock_ms(CLOCK_MONOTONIC); }

static double thread_cpu_ms(void) { return clock_ms(CLOCK_THREAD_CPUTIME_ID); }

/* ------------------------------------------------------- build identity */

/* The GNU build ID of the loaded object holding `addr` (the kiln binary or
 * a program linking libkiln, libLLVM): a hash the linker wrote over the
 * whole object, so any rebuild of the code generator gives new keys. */
typedef struct {
    uintptr_t addr;
    StrBuf *out;
    bool found;
} BuildIdSearch;

static int find_build_id(struct dl_phdr_info *info, size_t size, void *data) {
    (void)size;
    BuildIdSearch *s = data;
    bool mine = false;
    for (int i = 0; i < info->dlpi_phnum && !mine; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        uintptr_t lo = info->dlpi_addr + ph->p_vaddr;
        mine = ph->p_type == PT_LOAD && s->addr >= lo && s->addr < lo + ph->p_memsz;
    }
    if (!mine) return 0;
    for (int i = 0; i < info->dlpi_phnum; i++) {
        const ElfW(Phdr) *ph = &info->dlpi_phdr[i];
        if (ph->p_type != PT_NOTE) continue;
        const unsigned char *p = (const unsigned char *)(info->dlpi_addr + ph->p_vaddr),
                            *end = p + ph->p_memsz;
        while (p + sizeof(ElfW(Nhdr)) <= end) {
            const ElfW(Nhdr) *nh = (const ElfW(Nhdr) *)p;
            const unsigned char *name = p + sizeof *nh, *desc = name + ((nh->n_namesz + 3) & ~3u);
            if (desc + nh->n_descsz > end) break;
            if (nh->n_type == NT_GNU_BUILD_ID && nh->n_namesz == 4 && memcmp(name, "GNU", 4) == 0) {
                for (unsigned k = 0; k < nh->n_descsz; k++) sb_printf(s->out, "%02x", desc[k]);
                s->found = true;
                return 1;
            }
            p = desc + ((nh->n_descsz + 3) & ~3u);
        }
    }
    return 1;
}

/* The build ID of the object holding `addr`, else its file's path, size and
 * modification time. */
static void object_identity(const void *addr, StrBuf *out) {
    uintptr_t a;
    memcpy(&a, &addr, sizeof a);
    BuildIdSearch s = {a, out, false};
    dl_iterate_phdr(find_build_id, &s);
    if (s.found) return;
    Dl_info di;
    struct stat st;
    if (dladdr(addr, &di) && di.dli_fname && stat(di.dli_fname, &st) == 0)
        sb_printf(out, "%s:%lld:%lld", di.dli_fname, (long long)st.st_size, (long long)st.st_mtime);
    else
        sb_puts(out, "unknown build");
}

static struct {
    pthread_once_t once;
    char *text;
} compilers = {PTHREAD_ONCE_INIT, NULL};

/* kiln's version and build, LLVM's version and build: once per process. */
static void compilers_load(void) {
    StrBuf sb = {0};
    char llvm[64];
    llvm_version(llvm, sizeof llvm);
    sb_printf(&sb, "kiln %s cpu object v1; build ", KILN_VERSION);
    object_identity((const void *)cpu_code_compile, &sb);
    sb_printf(&sb, "; LLVM %s build ", llvm);
    object_identity((const void *)LLVMContextCreate, &sb);
    compilers.text = sb.data;
}

const char *cpu_code_compilers(void) {
    pthread_once(&compilers.once, compilers_load);
    return compilers.text;
}

/* The host's target identity, made once per process without a target
 * machine (llvm_host_identity: LLVM's targets need not even be set up for
 * a start whose units all come from the cache). */
static struct {
    pthread_once_t once;
    char *text;
} host_target = {PTHREAD_ONCE_INIT, NULL};

static void host_target_load(void) { host_target.text = llvm_host_identity(); }

/* The identity of the target `cpu` names (heap), or NULL with a message. */
static char *target_of(const char *cpu, char *err, size_t errlen) {
    if (!cpu || strcmp(cpu, "native") == 0) {
        pthread_once(&host_target.once, host_target_load);
        return xstrdup(host_target.text);
    }
    LLVMTargetMachineRef tm = llvm_target_machine(cpu, true, err, errlen);
    if (!tm) return NULL;
    char *text = llvm_target_identity(tm);
    LLVMDisposeTargetMachine(tm);
    return text;
}

/* What every kernel key for a target begins with: the compilers and the
 * target, hashed once per compile (the target's text is long). */
static KCacheHasher key_prefix(const char *target) {
    pthread_once(&compilers.once, compilers_load);
    KCacheHasher h;
    kcache_hash_init(&h);
    kcache_hash_str(&h, compilers.text);
    kcache_hash_str(&h, target);
    return h;
}

/* Where the kernels of a compile find the target's shared helpers: their
 * key in the process's table and the suffix of their symbols (part of every
 * kernel's key: a kernel's object calls them by name), and whether they
 * are the ones compiled at build time (prebuilt_helpers.h: the build host's
 * target identity and this LLVM) rather than compiled here. */
typedef struct {
    KCacheKey key;
    char suffix[48]; /* a compile with private helpers adds ".pN" */
    bool prebuilt;
} HelpersChoice;

static void helpers_choose(const char *target, HelpersChoice *hc) {
    hc->prebuilt = false;
#ifdef KILN_PREBUILT_HELPERS
    char llvm[64];
    llvm_version(llvm, sizeof llvm);
    hc->prebuilt = strcmp(target, prebuilt_target) == 0 && strcmp(llvm, prebuilt_llvm) == 0;
    if (hc->prebuilt) {
        KCacheHasher hh;
        kcache_hash_init(&hh);
        kcache_hash_str(&hh, "the prebuilt helpers");
        kcache_hash_str(&hh, prebuilt_suffix);
        hc->key = kcache_hash_done(&hh);
        snprintf(hc->suffix, sizeof hc->suffix, "%s", prebuilt_suffix);
        return;
    }
#endif
    KCacheHasher hh = key_prefix(target);
    kcache_hash_str(&hh, "the shared helpers");
    hc->key = kcache_hash_done(&hh);
    snprintf(hc->suffix, sizeof hc->suffix, ".h%016llx", (unsigned long long)hc->key.h[0]);
}

/* The prebuilt helpers' object (in place: the bytes are the program's). */
static LLVMMemoryBufferRef prebuilt_helpers_object(void) {
#ifdef KILN_PREBUILT_HELPERS
    return LLVMCreateMemoryBufferWithMemoryRange((const char *)prebuilt_object, prebuilt_object_len,
                                                 "kiln.helpers.prebuilt", 0);
#else
    return NULL;
#endif
}

/* The text kernel keys take for the target: its identity and the helpers'
 * suffix (heap). */
static char *keyed_target(const char *target, const HelpersChoice *hc) {
    StrBuf sb = {0};
    sb_printf(&sb, "%s; helpers %s", target, hc->suffix);
    return sb.data;
}

/* ------------------------------------------------------- canonical kernels */

/* The kernel IR's structs, whose every field kernel_key hashes: a field
 * added to one of them must be added there (and, if it names a buffer, to
 * canonical_kernel's renumbering) before these sizes are updated. */
#if defined(__x86_64__) || defined(__aarch64__)
_Static_assert(sizeof(KInst) == 56, "KInst changed: update kernel_key and canonical_kernel");
_Static_assert(sizeof(KStage) == 48, "KStage changed: update kernel_key and canonical_kernel");
_Static_assert(sizeof(KStore) == 12, "KStore changed: update kernel_key and canonical_kernel");
_Static_assert(sizeof(Kernel) == 432, "Kernel changed: update kernel_key and canonical_kernel");
_Static_assert(sizeof(KMatmul) == 120, "KMatmul changed: update kernel_key and canonical_kernel");
_Static_assert(sizeof(KConv) == 224, "KConv changed: update kernel_key and canonical_kernel");
_Static_assert(sizeof(KBuf) == 88, "KBuf changed: update kernel_key and canonical_kernel");
#endif

typedef struct {
    int *local; /* per program buffer: its slot in the kernel's table, or -1 */
    int *list;  /* per slot: the program buffer */
    int n;
} BufMap;

static void use_buf(BufMap *m, int b) {
    if (b >= 0 && m->local[b] < 0) {
        m->local[b] = m->n;
        m->list[m->n++] = b;
    }
}

static int map_buf(const BufMap *m, int b) { return b >= 0 ? m->local[b] : b; }

static int64_t *copy_i64(Arena *a, const int64_t *src, int n) {
    if (!src || n <= 0) return NULL;
    int64_t *d = ARENA_ARRAY(a, int64_t, n);
    memcpy(d, src, sizeof(int64_t) * (size_t)n);
    return d;
}

/* The part of a kernel's name after "k<digits>_" (k12_matmul_add ->
 * matmul_add): what the unit's symbols are called, so profiles stay
 * readable. */
static const char *name_stem(const char *name) {
    const char *p = name;
    if (*p == 'k') {
        p++;
        while (*p >= '0' && *p <= '9') p++;
        if (*p == '_' && p > name + 1) return p + 1;
    }
    return name;
}

/* Kernel ki of kp as a program of its own, in arena: the kernel's buffers
 * in order of first use (m->list gives the program buffer of each), named
 * b0, b1, ...; the kernel named `name`. */
static KProgram *canonical_kernel(Arena *arena, const KProgram *kp, int ki, const char *name, BufMap *m) {
    const Kernel *k = &kp->kernels.data[ki];
    m->local = ARENA_ARRAY(arena, int, kp->bufs.len + 1);
    m->list = ARENA_ARRAY(arena, int, kp->bufs.len + 1);
    m->n = 0;
    for (int b = 0; b < kp->bufs.len; b++) m->local[b] = -1;
    for (int i = 0; i < k->insts.len; i++)
        if (k->insts.data[i].kind == KI_LOAD) use_buf(m, k->insts.data[i].buf);
    for (int s = 0; s < k->stages.len; s++)
        for (int j = 0; j < k->stages.data[s].stores.len; j++)
            use_buf(m, k->stages.data[s].stores.data[j].buf);
    if (k->kind == KK_MATMUL) use_buf(m, k->mm.a_buf), use_buf(m, k->mm.b_buf);
    if (k->kind == KK_CONV || k->kind == KK_POOL) use_buf(m, k->conv.x_buf), use_buf(m, k->conv.w_buf);

    KProgram *p = kprog_new(arena, "unit");
    for (int j = 0; j < m->n; j++) {
        const KBuf *src = &kp->bufs.data[m->list[j]];
        char bname[24];
        snprintf(bname, sizeof bname, "b%d", j);
        int b = kprog_add_buf(p, KB_TEMP, -1, src->dtype, src->numel, -1, bname);
        p->bufs.data[b].constant = src->constant;
        memcpy(p->bufs.data[b].pad_hw, src->pad_hw, sizeof src->pad_hw); /* its producer writes the borders */
    }
    Kernel c = *k; /* every scalar field; the vectors and buffers below */
    c.name = arena_strdup(arena, name);
    c.insts.data = NULL, c.insts.len = c.insts.cap = 0;
    c.stages.data = NULL, c.stages.len = c.stages.cap = 0;
    c.nodes.data = NULL, c.nodes.len = c.nodes.cap = 0;
    for (int i = 0; i < k->insts.len; i++) {
        KInst in = k->insts.data[i];
        if (in.kind == KI_LOAD) in.buf = map_buf(m, in.buf);
        VEC_PUSH(c.insts, in);
    }
    for (int s = 0; s < k->stages.len; s++) {
        KStage st = k->stages.data[s];
        st.stores.data = NULL, st.stores.len = st.stores.cap = 0;
        for (int j = 0; j < k->stages.data[s].stores.len; j++) {
            KStore so = k->stages.data[s].stores.data[j];
            so.buf = map_buf(m, so.buf);
            VEC_PUSH(st.stores, so);
        }
        VEC_PUSH(c.stages, st);
    }
    c.mm.a_buf = map_buf(m, k->mm.a_buf), c.mm.b_buf = map_buf(m, k->mm.b_buf);
    c.mm.batch_dims = copy_i64(arena, k->mm.batch_dims, k->mm.nbatch);
    c.mm.a_batch_stride = copy_i64(arena, k->mm.a_batch_stride, k->mm.nbatch);
    c.mm.b_batch_stride = copy_i64(arena, k->mm.b_batch_stride, k->mm.nbatch);
    c.conv.x_buf = map_buf(m, k->conv.x_buf), c.conv.w_buf = map_buf(m, k->conv.w_buf);
    /* the geometry a kernel's kind does not use is whatever fusion left
     * there (zeros: buffer 0, which only some kernels use): one value for
     * all, so that it does not tell identical kernels apart */
    if (k->kind != KK_MATMUL) {
        memset(&c.mm, 0, sizeof c.mm);
        c.mm.a_buf = c.mm.b_buf = -1;
    }
    if (k->kind != KK_CONV && k->kind != KK_POOL) {
        memset(&c.conv, 0, sizeof c.conv);
        c.conv.x_buf = c.conv.w_buf = -1;
    }
    VEC_PUSH(p->kernels, c);
    p->nparams = p->nresults = 0;
    return p;
}

/* A kernel's fields as 64-bit words, digested in one pass at the end
 * (kcache_hash_bulk): hashing field by field cost ~20 us a kernel. */
typedef VEC(int64_t) KeyWords;

static void put_i64(KeyWords *w, int64_t v) { VEC_PUSH(*w, v); }
static void put_f64(KeyWords *w, double v) {
    int64_t bits;
    memcpy(&bits, &v, sizeof bits);
    put_i64(w, bits);
}
static void put_i64s(KeyWords *w, const int64_t *v, int n) {
    put_i64(w, n);
    for (int i = 0; v && i < n; i++) put_i64(w, v[i]);
}

/* A buffer's words in a key: what its kernels' code depends on. */
static void buf_words(const KBuf *kb, KeyWords *w) {
    put_i64(w, kb->dtype), put_i64(w, kb->numel), put_i64(w, kb->constant);
    /* a padded image's planes (only then: every other key stays as it was) */
    if (kb->pad_hw[0])
        for (int i = 0; i < 4; i++) put_i64(w, kb->pad_hw[i]);
}

/* Every field of kernel k (field by field: struct padding is not data). */
static void kernel_words(const Kernel *k, KeyWords *w) {
    put_i64(w, k->kind), put_i64(w, k->outer), put_i64(w, k->flops), put_i64(w, k->bytes);
    put_i64(w, k->insts.len);
    for (int i = 0; i < k->insts.len; i++) {
        const KInst *in = &k->insts.data[i];
        int64_t f[] = {in->kind, in->dtype, in->op,    in->a,      in->b,
                       in->c,    in->buf,   in->stage, in->ivalue, in->flag};
        for (size_t j = 0; j < sizeof f / sizeof f[0]; j++) put_i64(w, f[j]);
        put_f64(w, in->value);
    }
    put_i64(w, k->stages.len);
    for (int s = 0; s < k->stages.len; s++) {
        const KStage *st = &k->stages.data[s];
        int64_t f[] = {st->kind,      st->extent,       st->reduce,    st->value,
                       st->acc_dtype, st->result_dtype, st->stores.len};
        for (size_t j = 0; j < sizeof f / sizeof f[0]; j++) put_i64(w, f[j]);
        for (int j = 0; j < st->stores.len; j++) {
            const KStore *so = &st->stores.data[j];
            put_i64(w, so->buf), put_i64(w, so->index), put_i64(w, so->value);
        }
    }
    const KMatmul *mm = &k->mm;
    int64_t mf[] = {mm->a_buf, mm->b_buf, mm->batch, mm->m,    mm->n,     mm->k,
                    mm->a_sm,  mm->a_sk,  mm->b_sk,  mm->b_sn, mm->a_off, mm->b_off};
    for (size_t j = 0; j < sizeof mf / sizeof mf[0]; j++) put_i64(w, mf[j]);
    put_i64s(w, mm->batch_dims, mm->nbatch);
    put_i64s(w, mm->a_batch_stride, mm->nbatch);
    put_i64s(w, mm->b_batch_stride, mm->nbatch);
    const KConv *cv = &k->conv;
    int64_t cf[] = {cv->x_buf, cv->w_buf, cv->op, cv->n,  cv->c,      cv->h,     cv->w,
                    cv->oc,    cv->oh,    cv->ow, cv->kh, cv->kw,     cv->sh,    cv->sw,
                    cv->ph,    cv->pw,    cv->dh, cv->dw, cv->groups, cv->x_off, cv->w_off};
    for (size_t j = 0; j < sizeof cf / sizeof cf[0]; j++) put_i64(w, cf[j]);
    put_i64s(w, cv->xs, 4);
    put_i64s(w, cv->ws, 4);
}

/* Every field of a canonical program's kernel and buffers after the
 * compilers and the target (prefix). */
static KCacheKey kernel_key(const KProgram *cp, const KCacheHasher *prefix) {
    KCacheHasher h = *prefix;
    KeyWords w = {0};
    put_i64(&w, cp->bufs.len);
    for (int b = 0; b < cp->bufs.len; b++) buf_words(&cp->bufs.data[b], &w);
    const Kernel *k = &cp->kernels.data[0];
    kcache_hash_str(&h, k->name);
    kernel_words(k, &w);
    kcache_hash_bulk(&h, w.data, sizeof(int64_t) * (size_t)w.len, NULL);
    VEC_FREE(w);
    return kcache_hash_done(&h);
}

/* h, then a sized kernel's words: its buffers' dtypes and constancy (not
 * their sizes) and its form (llvm_kernel_sizes). */
static KCacheKey sized_words_key(KCacheHasher h, const KProgram *cp, const LlvmKernelSizes *sz) {
    KeyWords w = {0};
    put_i64(&w, cp->bufs.len);
    for (int b = 0; b < cp->bufs.len; b++)
        put_i64(&w, cp->bufs.data[b].dtype), put_i64(&w, cp->bufs.data[b].constant);
    put_i64s(&w, sz->form, sz->nform);
    kcache_hash_bulk(&h, w.data, sizeof(int64_t) * (size_t)w.len, NULL);
    VEC_FREE(w);
    return kcache_hash_done(&h);
}

/* The key of a sized kernel (llvm_kernel_sizes): its form in place of its
 * instructions and geometry, and its buffers without their sizes, so that
 * kernels differing only in their sizes share it (and their unit). */
static KCacheKey sized_kernel_key(const KProgram *cp, const LlvmKernelSizes *sz, const KCacheHasher *prefix) {
    KCacheHasher h = *prefix;
    kcache_hash_str(&h, cp->kernels.data[0].name);
    kcache_hash_str(&h, "sized");
    return sized_words_key(h, cp, sz);
}

/* The form key of a sized kernel (cpu_code.h, prebuilt forms): what its
 * code depends on, as sized_kernel_key hashes it, but no name and no build
 * of the compilers (the forms linked into a program were made by its own
 * code generator); the helpers' suffix names the target and LLVM. */
static KCacheKey form_key(const KProgram *cp, const LlvmKernelSizes *sz, const char *helpers_suffix) {
    KCacheHasher h;
    kcache_hash_init(&h);
    kcache_hash_str(&h, "kiln prebuilt form v1 " KILN_VERSION);
    kcache_hash_str(&h, helpers_suffix);
    return sized_words_key(h, cp, sz);
}

/* The prebuilt forms a compile whose helpers have suffix `suffix` may use
 * (those calling these helpers), or NULL. */
static const CpuPrebuiltForms *forms_for(const HelpersChoice *hc) {
    const CpuPrebuiltForms *f = cpu_prebuilt_forms();
    return hc->prebuilt && f && f->n > 0 && strcmp(f->helpers_suffix, hc->suffix) == 0 ? f : NULL;
}

static int key_cmp(const uint64_t a[2], const uint64_t b[2]) {
    return a[0] != b[0] ? (a[0] < b[0] ? -1 : 1) : a[1] != b[1] ? (a[1] < b[1] ? -1 : 1) : 0;
}

/* The prebuilt form of key k in f (sorted by key), or NULL. */
static const CpuPrebuiltForm *form_find(const CpuPrebuiltForms *f, KCacheKey k) {
    int lo = 0, hi = f ? f->n : 0;
    while (lo < hi) {
        int mid = lo + (hi - lo) / 2, c = key_cmp(f->forms[mid].key, k.h);
        if (c == 0) return &f->forms[mid];
        if (c < 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return NULL;
}

/* A rough cost of compiling kernel k: the costliest go first. */
static double kernel_cost(const Kernel *k) {
    double c = 20 + k->insts.len;
    for (int i = 0; i < k->insts.len; i++) {
        if (k->insts.data[i].kind == KI_ELEM && op_has(k->insts.data[i].op, OPF_TRANSCENDENTAL)) c += 60;
    }
    if (k->kind == KK_MATMUL || k->kind == KK_CONV) c *= 3;
    return c;
}

/* ------------------------------------------------- the process's units */

typedef enum { UNIT_BUILDING, UNIT_READY, UNIT_FAILED } UnitState;

typedef struct Unit Unit;
struct Unit {
    KCacheKey key;
    char *sym; /* the entry's symbol; NAME.cols, NAME.prepack_a/_b beside it */
    int refs;
    bool shared; /* in the table (not a private unit of an ir_text compile) */
    UnitState state;
    char *err;                    /* UNIT_FAILED */
    ObjImage *image;              /* loaded by kiln's loader, or */
    LLVMOrcResourceTrackerRef rt; /* linked into the JIT (helpers: maybe both, helpers_into_jit) */
    char *object;                 /* the helpers' object, kept while the loader holds them */
    size_t object_len;
    KernelFn fn, cols, gather;
    PrepackFn prepack[2];
    int64_t scratch, prepack_bytes[2];
    int64_t gather_bytes, gather_tasks, gather_operand; /* an operand gathered once (llvm.h) */
    bool helpers; /* the target's shared helpers (no entry), not a kernel */
    bool sized;   /* a sized kernel's (llvm_kernel_sizes): it reads its sizes from the values */
    bool product; /* a sized product's: it has every function below */
    bool uses_helpers;
    Unit *helper; /* held while this unit is: the helpers it calls */
    Unit *next;   /* in its bucket */
};

/* The process's JIT and units.  Everything here is under mu; a unit's
 * fields are written by the one thread building it, before it leaves
 * UNIT_BUILDING (announced on cv). */
static struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    Unit **buckets;
    int nbuckets, count;
    int live; /* units held by someone, shared or not: the JIT lives while > 0 */
    LLVMOrcLLJITRef jit;
    unsigned serial; /* names private units apart */
} units = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, NULL, 0, 0, 0, NULL, 0};

static Unit **bucket_of(KCacheKey key) { return &units.buckets[key.h[0] & (uint64_t)(units.nbuckets - 1)]; }

static Unit *unit_find(KCacheKey key) {
    if (!units.nbuckets) return NULL;
    for (Unit *u = *bucket_of(key); u; u = u->next)
        if (u->key.h[0] == key.h[0] && u->key.h[1] == key.h[1]) return u;
    return NULL;
}

static void unit_insert(Unit *u) {
    if (units.count + 1 > units.nbuckets) { /* grow to keep chains short */
        int n = units.nbuckets ? 2 * units.nbuckets : 64;
        Unit **old = units.buckets;
        int nold = units.nbuckets;
        units.buckets = xcalloc((size_t)n, sizeof(Unit *));
        units.nbuckets = n;
        for (int i = 0; i < nold; i++)
            for (Unit *v = old[i], *next; v; v = next) {
                next = v->next;
                Unit **b = bucket_of(v->key);
                v->next = *b, *b = v;
            }
        free(old);
    }
    Unit **b = bucket_of(u->key);
    u->next = *b, *b = u;
    units.count++;
}

static void unit_unlink(Unit *u) {
    for (Unit **p = bucket_of(u->key); *p; p = &(*p)->next)
        if (*p == u) {
            *p = u->next;
            units.count--;
            return;
        }
}

static void orc_message(LLVMErrorRef e, const char *prefix, char *err, size_t errlen) {
    char *m = LLVMGetErrorMessage(e);
    snprintf(err, errlen, "%s%s", prefix, m ? m : "(no message)");
    LLVMDisposeErrorMessage(m);
}

/* KILN_PERF=1: an object layer that tells `perf` (jitdump files for `perf
 * inject --jit`) where every JIT-compiled function is, internal ones
 * included, so profiles name kernels, the micro-kernel and the packing. */
static LLVMOrcObjectLayerRef perf_object_layer(void *ctx, LLVMOrcExecutionSessionRef es, const char *triple) {
    (void)ctx, (void)triple;
    LLVMOrcObjectLayerRef layer = LLVMOrcCreateRTDyldObjectLinkingLayerWithSectionMemoryManager(es);
    LLVMOrcRTDyldObjectLinkingLayerRegisterJITEventListener(layer, LLVMCreatePerfJITEventListener());
    return layer;
}

/* The process's LLJIT, made on first use (under units.mu), which resolves
 * the process's own symbols (libm) for the kernels. */
static bool jit_get(char *err, size_t errlen) {
    if (units.jit) return true;
    llvm_init(); /* a warm start made no target machine: LLJIT needs the host's target */
    LLVMOrcLLJITBuilderRef builder = LLVMOrcCreateLLJITBuilder();
    if (getenv("KILN_PERF"))
        LLVMOrcLLJITBuilderSetObjectLinkingLayerCreator(builder, perf_object_layer, NULL);
    LLVMErrorRef e = LLVMOrcCreateLLJIT(&units.jit, builder);
    if (e) {
        orc_message(e, "LLVM JIT: ", err, errlen);
        units.jit = NULL;
        return false;
    }
    LLVMOrcDefinitionGeneratorRef gen = NULL;
    e = LLVMOrcCreateDynamicLibrarySearchGeneratorForProcess(&gen, LLVMOrcLLJITGetGlobalPrefix(units.jit),
                                                             NULL, NULL);
    if (e) {
        orc_message(e, "LLVM JIT: ", err, errlen);
        LLVMConsumeError(LLVMOrcDisposeLLJIT(units.jit));
        units.jit = NULL;
        return false;
    }
    LLVMOrcJITDylibAddGenerator(LLVMOrcLLJITGetMainJITDylib(units.jit), gen);
    return true;
}

static void unit_release(Unit *u);

static void unit_free(Unit *u) {
    obj_free(u->image);
    free(u->object);
    if (u->rt) {
        LLVMErrorRef e = LLVMOrcResourceTrackerRemove(u->rt);
        if (e) LLVMConsumeError(e);
        LLVMOrcReleaseResourceTracker(u->rt);
    }
    if (u->helper) unit_release(u->helper); /* after the code that calls it */
    free(u->sym);
    free(u->err);
    free(u);
}

/* Drops one reference (under units.mu); the last takes the unit out of the
 * JIT, and the last unit the JIT. */
static void unit_release(Unit *u) {
    if (--u->refs > 0) return;
    if (u->shared) unit_unlink(u);
    unit_free(u);
    if (--units.live == 0 && units.jit) {
        LLVMConsumeError(LLVMOrcDisposeLLJIT(units.jit));
        units.jit = NULL;
        free(units.buckets);
        units.buckets = NULL;
        units.nbuckets = 0;
    }
}

/* One lookup of several symbols of the JIT (its callback may run on
 * another thread): materialising a unit links it, and one lookup for all
 * of a unit's functions costs one pass through the session, not five. */
enum { MAX_UNIT_SYMBOLS = 5 };
typedef struct {
    pthread_mutex_t mu;
    pthread_cond_t cv;
    bool done;
    LLVMErrorRef err;
    int n;
    LLVMOrcSymbolStringPoolEntryRef name[MAX_UNIT_SYMBOLS];
    LLVMOrcExecutorAddress addr[MAX_UNIT_SYMBOLS];
} Lookup;

static void lookup_done(LLVMErrorRef e, LLVMOrcCSymbolMapPairs found, size_t nfound, void *ctx) {
    Lookup *l = ctx;
    pthread_mutex_lock(&l->mu);
    l->err = e;
    for (size_t i = 0; !e && i < nfound; i++)
        for (int k = 0; k < l->n; k++)
            if (found[i].Name == l->name[k]) l->addr[k] = found[i].Sym.Address; /* interned: one pointer */
    l->done = true;
    pthread_cond_signal(&l->cv);
    pthread_mutex_unlock(&l->mu);
}

/* A unit's symbol: its kernel's name and a function's suffix (malloc'd). */
static char *symbol_name(const char *sym, const char *suffix) {
    char *name = xmalloc(strlen(sym) + strlen(suffix) + 1);
    strcpy(name, sym);
    strcat(name, suffix);
    return name;
}

/* Finds sym + suffix[k] into out[k] for k < n, in one lookup. */
static bool lookup_all(const char *sym, const char *const *suffix, void *const *out, int n, char *err,
                       size_t errlen) {
    if (n == 0) return true;
    Lookup l = {.n = n};
    pthread_mutex_init(&l.mu, NULL);
    pthread_cond_init(&l.cv, NULL);
    LLVMOrcCLookupSetElement set[MAX_UNIT_SYMBOLS + 1];
    for (int k = 0; k < n; k++) {
        char *name = symbol_name(sym, suffix[k]);
        l.name[k] = LLVMOrcLLJITMangleAndIntern(units.jit, name);
        free(name);
        LLVMOrcRetainSymbolStringPoolEntry(l.name[k]); /* one reference goes to the lookup */
        set[k] = (LLVMOrcCLookupSetElement){l.name[k], LLVMOrcSymbolLookupFlagsRequiredSymbol};
    }
    LLVMOrcCJITDylibSearchOrderElement order[] = {
        {LLVMOrcLLJITGetMainJITDylib(units.jit), LLVMOrcJITDylibLookupFlagsMatchAllSymbols}};
    LLVMOrcExecutionSessionLookup(LLVMOrcLLJITGetExecutionSession(units.jit), LLVMOrcLookupKindStatic, order,
                                  1, set, (size_t)n, lookup_done, &l);
    pthread_mutex_lock(&l.mu);
    while (!l.done) pthread_cond_wait(&l.cv, &l.mu);
    pthread_mutex_unlock(&l.mu);
    bool ok = !l.err;
    if (l.err) orc_message(l.err, "LLVM JIT: ", err, errlen);
    for (int k = 0; k < n; k++) {
        LLVMOrcReleaseSymbolStringPoolEntry(l.name[k]);
        void *ptr = (void *)(uintptr_t)l.addr[k];
        if (ok && !ptr) {
            snprintf(err, errlen, "LLVM JIT: %s%s not found", sym, suffix[k]);
            ok = false;
        }
        memcpy(out[k], &ptr, sizeof ptr); /* a function pointer from an address */
    }
    pthread_mutex_destroy(&l.mu);
    pthread_cond_destroy(&l.cv);
    return ok;
}

/* Whether kiln's loader is tried first: where it exists, unless
 * KILN_PERF (perf learns where code is from ORC's listener) or
 * KILN_OBJLOAD=0 (every object through ORC: tests, comparisons) says not. */
static bool loader_on(void) {
    const char *v = getenv("KILN_OBJLOAD");
    return obj_loader_available() && !getenv("KILN_PERF") && !(v && strcmp(v, "0") == 0);
}

/* Undefined symbols of a unit the loader loads: the helpers it calls,
 * wherever they are (NULL: the process's symbols are searched next). */
static void *resolve_helper(void *ctx, const char *name) {
    const Unit *h = ((const Unit *)ctx)->helper;
    if (!h) return NULL;
    if (h->image) return obj_symbol(h->image, name);
    void *p = NULL, *out[1] = {&p};
    const char *none[1] = {""};
    char err[256];
    return h->rt && lookup_all(name, none, out, 1, err, sizeof err) ? p : NULL;
}

/* Helpers the loader holds, linked into the JIT too (once, under their own
 * tracker) for a unit the loader refused, which finds them there by name
 * (under units.mu). */
static bool helpers_into_jit(Unit *h, char *err, size_t errlen) {
    if (h->rt || !h->image) return true;
    h->rt = LLVMOrcJITDylibCreateResourceTracker(LLVMOrcLLJITGetMainJITDylib(units.jit));
    LLVMMemoryBufferRef copy = LLVMCreateMemoryBufferWithMemoryRangeCopy(h->object, h->object_len, h->sym);
    LLVMErrorRef e = LLVMOrcLLJITAddObjectFileWithRT(units.jit, h->rt, copy);
    if (!e) return true;
    orc_message(e, "LLVM JIT: ", err, errlen);
    LLVMOrcReleaseResourceTracker(h->rt);
    h->rt = NULL;
    return false;
}

/* The functions a unit's object defines: sym + suffix[k] into out[k]. */
static int unit_symbols(Unit *u, const char **suffix, void **out) {
    int n = 0;
    if (!u->helpers) suffix[n] = "", out[n++] = &u->fn;
    if (u->scratch > 0 || u->product) suffix[n] = ".cols", out[n++] = &u->cols;
    if (u->prepack_bytes[0] > 0 || u->product) suffix[n] = ".prepack_a", out[n++] = &u->prepack[0];
    if (u->prepack_bytes[1] > 0 || u->product) suffix[n] = ".prepack_b", out[n++] = &u->prepack[1];
    if (u->gather_bytes > 0 || u->product) suffix[n] = ".gather", out[n++] = &u->gather;
    return n;
}

/* Unit u's object `obj` (taken) by kiln's loader: true when loaded (its
 * functions found), false with *refused when the loader does not take it
 * (then ORC links it), false otherwise with a message. */
/* Unit u's functions from the image kiln's loader made of its object. */
static bool image_symbols(Unit *u, const ObjImage *im, char *err, size_t errlen) {
    const char *suffix[MAX_UNIT_SYMBOLS];
    void *out[MAX_UNIT_SYMBOLS];
    int n = unit_symbols(u, suffix, out);
    bool ok = true;
    for (int k = 0; ok && k < n; k++) {
        char *name = symbol_name(u->sym, suffix[k]);
        void *ptr = obj_symbol(im, name);
        if (!ptr) snprintf(err, errlen, "kiln's object loader: %s not found", name);
        memcpy(out[k], &ptr, sizeof ptr); /* a function pointer from an address */
        ok = ptr != NULL;
        free(name);
    }
    return ok;
}

static bool unit_load(Unit *u, LLVMMemoryBufferRef obj, bool *refused, char *err, size_t errlen) {
    const char *bytes = LLVMGetBufferStart(obj);
    size_t len = LLVMGetBufferSize(obj);
    char why[256];
    ObjImage *im = obj_load(bytes, len, resolve_helper, u, why, sizeof why);
    *refused = !im;
    bool ok = im != NULL && image_symbols(u, im, err, errlen);
    if (ok && u->helpers) { /* for a unit the loader may refuse later */
        u->object = xmalloc(len);
        memcpy(u->object, bytes, len);
        u->object_len = len;
    }
    if (ok)
        u->image = im;
    else
        obj_free(im);
    if (ok || !*refused) LLVMDisposeMemoryBuffer(obj);
    return ok;
}

/* Links object `obj` (taken) as unit u's code and finds its functions:
 * kiln's loader where it takes the object, else the JIT. */
static bool unit_link(Unit *u, LLVMMemoryBufferRef obj, char *err, size_t errlen) {
    bool refused = true;
    if (loader_on() && (unit_load(u, obj, &refused, err, errlen) || !refused)) return u->image != NULL;
    pthread_mutex_lock(&units.mu);
    bool ok = jit_get(err, errlen) && (!u->helper || helpers_into_jit(u->helper, err, errlen));
    if (ok) {
        u->rt = LLVMOrcJITDylibCreateResourceTracker(LLVMOrcLLJITGetMainJITDylib(units.jit));
        LLVMErrorRef e = LLVMOrcLLJITAddObjectFileWithRT(units.jit, u->rt, obj);
        if (e) {
            orc_message(e, "LLVM JIT: ", err, errlen);
            ok = false;
        }
    } else {
        LLVMDisposeMemoryBuffer(obj);
    }
    pthread_mutex_unlock(&units.mu);
    const char *suffix[MAX_UNIT_SYMBOLS];
    void *out[MAX_UNIT_SYMBOLS];
    int n = unit_symbols(u, suffix, out);
    ok = ok && lookup_all(u->sym, suffix, out, n, err, errlen);
    if (!ok && u->rt) { /* whatever got in goes out again */
        pthread_mutex_lock(&units.mu);
        LLVMErrorRef r = LLVMOrcResourceTrackerRemove(u->rt);
        if (r) LLVMConsumeError(r);
        LLVMOrcReleaseResourceTracker(u->rt);
        u->rt = NULL;
        pthread_mutex_unlock(&units.mu);
    }
    return ok;
}

/* ------------------------------------------------------ cache entries */

/* A CPU entry's payload: KCACHE_CPU_MAGIC, then u64 scratch, prepack A,
 * prepack B, gathered operand bytes, gather tasks, gathered operand, flags
 * (1: calls the shared helpers), little-endian, then the object file. */
enum { ENTRY_SIZES = 6, ENTRY_HEAD = 8 + 8 * ENTRY_SIZES + 8 };

static char *entry_pack(const Unit *u, LLVMMemoryBufferRef obj, size_t *len) {
    size_t n = LLVMGetBufferSize(obj);
    unsigned char *e = xmalloc(ENTRY_HEAD + n);
    memcpy(e, KCACHE_CPU_MAGIC, 8);
    const int64_t f[ENTRY_SIZES] = {u->scratch,      u->prepack_bytes[0], u->prepack_bytes[1],
                                    u->gather_bytes, u->gather_tasks,     u->gather_operand};
    for (int i = 0; i < ENTRY_SIZES; i++) kcache_put_u64(e + 8 + 8 * i, (uint64_t)f[i]);
    /* flags: 1 the code calls the helpers, 2 it reads its sizes from the values */
    kcache_put_u64(e + 8 + 8 * ENTRY_SIZES, (u->uses_helpers ? 1u : 0u) | (u->sized ? 2u : 0u));
    memcpy(e + ENTRY_HEAD, LLVMGetBufferStart(obj), n);
    *len = ENTRY_HEAD + n;
    return (char *)e;
}

/* The object of an entry, and the unit's sizes; NULL when the payload is
 * not a CPU entry (a checksum guards against damage, this against a
 * payload of another kind under the key). */
static LLVMMemoryBufferRef entry_unpack(Unit *u, const char *data, size_t len) {
    const unsigned char *e = (const unsigned char *)data;
    if (len <= ENTRY_HEAD + 4 || memcmp(e, KCACHE_CPU_MAGIC, 8) != 0 ||
        memcmp(e + ENTRY_HEAD, "\177ELF", 4) != 0)
        return NULL;
    int64_t f[ENTRY_SIZES];
    for (int i = 0; i < ENTRY_SIZES; i++) {
        f[i] = (int64_t)kcache_get_u64(e + 8 + 8 * i);
        if (f[i] < 0 || f[i] > ((int64_t)1 << 48)) return NULL;
    }
    uint64_t flags = kcache_get_u64(e + 8 + 8 * ENTRY_SIZES);
    /* code that reads its sizes from the values serves only kernels that
     * have them (cpu_code_table): an entry that says otherwise is not it */
    if (flags > 3 || (bool)(flags & 2) != u->sized) return NULL;
    u->scratch = f[0], u->prepack_bytes[0] = f[1], u->prepack_bytes[1] = f[2];
    if (f[5] > 1) return NULL;
    u->gather_bytes = f[3], u->gather_tasks = f[4], u->gather_operand = f[5];
    u->uses_helpers = flags & 1;
    return LLVMCreateMemoryBufferWithMemoryRangeCopy(data + ENTRY_HEAD, len - ENTRY_HEAD, u->sym);
}

/* ------------------------------------------------------ program entries */

/* A program entry holds the code of every kernel of one program: a warm
 * start reads, checks and maps one file instead of one per unit, and skips
 * every kernel's canonical program and key.  Its key (program_key) hashes
 * the compilers and target (prefix: helpers' suffix included), every
 * buffer's words and every kernel's name and words over the program's own
 * buffer numbers: everything that decides the units, their symbols and each
 * kernel's table.  The per-unit entries stay (another program, or a
 * damaged program entry, reuses them).
 * Payload, little-endian: KCACHE_CPU_PROGRAM_MAGIC, u64 kernels, u64
 * units; per unit its key (2 x u64), symbol (offset, length) and unit entry
 * (offset, length; entry_pack's payload); per kernel its unit's index, its
 * table's buffer count and program buffers; then the bytes the offsets
 * (from the payload's start) point at.  program_parse checks every count,
 * index and offset against the program and the payload: anything else is
 * refused (the units then come one by one, and the entry is written anew). */

static KCacheKey program_key(const KProgram *kp, const KCacheHasher *prefix) {
    KCacheHasher h = *prefix;
    kcache_hash_str(&h, "kiln cpu program v1");
    KeyWords w = {0};
    put_i64(&w, kp->bufs.len);
    for (int b = 0; b < kp->bufs.len; b++) buf_words(&kp->bufs.data[b], &w);
    put_i64(&w, kp->kernels.len);
    /* a kernel at a time through one small vector: the whole program's
     * words at once (190 KB for MobileNetV2) cost more in fresh pages than
     * in hashing */
    for (int i = 0; i < kp->kernels.len; i++) {
        kcache_hash_str(&h, name_stem(kp->kernels.data[i].name));
        kernel_words(&kp->kernels.data[i], &w);
        kcache_hash_bulk(&h, w.data, sizeof(int64_t) * (size_t)w.len, NULL);
        w.len = 0;
    }
    VEC_FREE(w);
    return kcache_hash_done(&h);
}

enum { PROGRAM_UNIT_WORDS = 6, PROGRAM_SYM_MAX = 256 };

typedef struct {
    KCacheKey key;
    char *sym;
    const char *entry; /* in the payload */
    size_t entry_len;
} ProgramUnit;

typedef struct {
    char *data; /* the payload (heap) */
    size_t len;
    int nunits;
    ProgramUnit *units;
    int *unit_of, *nbufs; /* per kernel */
    int **bufs;           /* per kernel: its table's program buffers */
} ProgramEntry;

/* The u64 at *at of data[0..len), *at moved past it. */
static bool next_u64(const char *data, size_t len, size_t *at, uint64_t *v) {
    if (len < 8 || *at > len - 8) return false;
    *v = kcache_get_u64((const unsigned char *)data + *at);
    *at += 8;
    return true;
}

/* Whether data[off, off + n) lies inside data[0..len). */
static bool inside(size_t len, uint64_t off, uint64_t n) { return off <= len && n <= len - off; }

/* pe's payload read as kp's program entry (the lists in arena a). */
static bool program_parse(ProgramEntry *pe, const KProgram *kp, Arena *a) {
    const char *d = pe->data;
    size_t len = pe->len, at = 8;
    uint64_t nk, nu;
    if (len < 8 || memcmp(d, KCACHE_CPU_PROGRAM_MAGIC, 8) != 0 || !next_u64(d, len, &at, &nk) ||
        !next_u64(d, len, &at, &nu) || nk != (uint64_t)kp->kernels.len || nu < 1 || nu > nk)
        return false;
    pe->nunits = (int)nu;
    pe->units = ARENA_ARRAY(a, ProgramUnit, nu);
    for (uint64_t u = 0; u < nu; u++) {
        uint64_t f[PROGRAM_UNIT_WORDS];
        for (int k = 0; k < PROGRAM_UNIT_WORDS; k++)
            if (!next_u64(d, len, &at, &f[k])) return false;
        if (!inside(len, f[2], f[3]) || f[3] < 1 || f[3] > PROGRAM_SYM_MAX || memchr(d + f[2], 0, f[3]) ||
            !inside(len, f[4], f[5]))
            return false;
        ProgramUnit *pu = &pe->units[u];
        pu->key = (KCacheKey){{f[0], f[1]}};
        pu->sym = ARENA_ARRAY(a, char, f[3] + 1);
        memcpy(pu->sym, d + f[2], f[3]);
        pu->sym[f[3]] = 0;
        pu->entry = d + f[4], pu->entry_len = f[5];
    }
    pe->unit_of = ARENA_ARRAY(a, int, nk + 1);
    pe->nbufs = ARENA_ARRAY(a, int, nk + 1);
    pe->bufs = ARENA_ARRAY(a, int *, nk + 1);
    for (uint64_t i = 0; i < nk; i++) {
        uint64_t unit, n, b;
        if (!next_u64(d, len, &at, &unit) || !next_u64(d, len, &at, &n) || unit >= nu ||
            n > (uint64_t)kp->bufs.len)
            return false;
        pe->unit_of[i] = (int)unit, pe->nbufs[i] = (int)n;
        pe->bufs[i] = ARENA_ARRAY(a, int, n + 1);
        for (uint64_t j = 0; j < n; j++) {
            if (!next_u64(d, len, &at, &b) || b >= (uint64_t)kp->bufs.len) return false;
            pe->bufs[i][j] = (int)b;
        }
    }
    return true;
}

/* ------------------------------------------------------------ building */

/* One distinct kernel this call builds (or the target's helpers). */
typedef struct {
    Unit *u;
    KProgram *cp; /* its canonical program; NULL: the helpers, or a unit given by a program entry */
    double cost;
    char *ir;
    bool from_cache; /* out: loaded, not compiled */
    bool from_form;  /* out: its prebuilt form's object, not compiled */
    /* its unit entry (entry_pack's payload) inside a program entry, or NULL */
    const char *given;
    size_t given_len;
    /* its prebuilt form, or NULL: never compiled here, unless it will not link */
    const CpuPrebuiltForm *form;
    /* out, when the program entry is to be written: the unit entry built */
    char *entry;
    size_t entry_len;
} Job;

typedef struct {
    Job *jobs;
    int njobs;
    atomic_int next;
    pthread_mutex_t mu; /* guards deferred, and the counts below */
    VEC(int) deferred;  /* jobs another process was building: waited for last */
    int next_deferred;
    const char *cpu;
    HelpersChoice helpers; /* the target's helpers: key, symbol suffix, prebuilt or not */
    Unit *private_helpers; /* with want_ir (under units.mu) */
    bool use_cache, want_ir;
    bool keep_entries; /* jobs keep their unit entries (Job.entry) for the program entry */
    int cache_hits, compiled, waited, cache_bad, loaded, prebuilt;
    double llvm_cpu_ms, link_ms;
    LlvmTimes llvm;
    /* bench --trace: a span per program kernel, saying how its code came */
    const KProgram *kp;
    Unit **unit_of; /* per kernel of kp */
} Work;

/* Per compile thread: its target machine, LLVM context and cache handle. */
typedef struct {
    Work *w;
    LLVMTargetMachineRef tm;
    LLVMContextRef ctx;
    KCache cache;
    char err[1024];
} Worker;

typedef enum { BUILT, BUSY, BUILD_FAILED } BuildResult;

/* The worker's target machine and LLVM context, made when it first
 * compiles (a start whose units all come from the cache makes none). */
static bool worker_machine(Worker *wk, char *err, size_t errlen) {
    if (!wk->tm) wk->tm = llvm_target_machine(wk->w->cpu, true, err, errlen);
    if (wk->tm && !wk->ctx) wk->ctx = llvm_context_new();
    return wk->tm != NULL;
}

/* Compiles job j's kernel; stores the entry when the cache is on. */
static LLVMMemoryBufferRef compile_unit(Worker *wk, Job *j, KCacheKey key, char *err, size_t errlen) {
    if (!worker_machine(wk, err, errlen)) return NULL;
    double t0 = thread_cpu_ms();
    Unit *u = j->u;
    char **ir = wk->w->want_ir ? &j->ir : NULL;
    LlvmTimes lt = {0, 0, 0};
    int64_t gather[3] = {0, 0, 0};
    LLVMMemoryBufferRef obj =
        !u->helpers ? llvm_compile_object(wk->ctx, wk->tm, j->cp, wk->w->helpers.suffix, &u->uses_helpers,
                                          &u->scratch, u->prepack_bytes, gather, &lt, ir, err, errlen)
                    : llvm_compile_helpers(wk->ctx, wk->tm, wk->w->helpers.suffix, &lt, ir, err, errlen);
    u->gather_bytes = gather[0], u->gather_tasks = gather[1], u->gather_operand = gather[2];
    double spent = thread_cpu_ms() - t0;
    pthread_mutex_lock(&wk->w->mu);
    wk->w->llvm_cpu_ms += spent;
    wk->w->llvm.ir_ms += lt.ir_ms, wk->w->llvm.opt_ms += lt.opt_ms, wk->w->llvm.emit_ms += lt.emit_ms;
    if (obj && !u->helpers) wk->w->compiled++;
    pthread_mutex_unlock(&wk->w->mu);
    /* a prebuilt form compiled again (its object did not link) is not
     * stored: its key, made at build time, names no build of the compilers */
    if (obj && wk->w->use_cache && !j->form) {
        size_t len;
        char *entry = entry_pack(u, obj, &len), serr[512];
        kcache_store(&wk->cache, key, entry, len, serr,
                     sizeof serr); /* a cache that cannot be written costs time only */
        free(entry);
    }
    return obj;
}

/* The entry of job j from the cache, or NULL (a miss, a damaged entry). */
static LLVMMemoryBufferRef load_unit(Worker *wk, Job *j) {
    char *data;
    size_t len;
    int corrupt = wk->cache.corrupt;
    double t0 = trace_clock_ms();
    KCacheResult got = kcache_load(&wk->cache, j->u->key, &data, &len);
    if (wk->w->kp->trace)
        trace_span(wk->w->kp->trace, "codegen", t0, trace_clock_ms(), "cache load %s: %s", j->u->sym,
                   kcache_result_name(got));
    if (got != KC_HIT) {
        if (wk->cache.corrupt != corrupt && !j->u->helpers) {
            pthread_mutex_lock(&wk->w->mu);
            wk->w->cache_bad++;
            pthread_mutex_unlock(&wk->w->mu);
        }
        return NULL;
    }
    LLVMMemoryBufferRef obj = entry_unpack(j->u, data, len);
    free(data);
    if (!obj && !j->u->helpers) {
        pthread_mutex_lock(&wk->w->mu);
        wk->w->cache_bad++;
        pthread_mutex_unlock(&wk->w->mu);
    }
    return obj;
}

static void count(Worker *wk, Job *j, int *what) {
    if (j->u->helpers) return; /* the helpers are not a kernel */
    pthread_mutex_lock(&wk->w->mu);
    (*what)++;
    pthread_mutex_unlock(&wk->w->mu);
}

static BuildResult build(Worker *wk, Job *j, bool wait);
static void finish(Job *j, BuildResult r, const char *err);

/* unit_link, its time counted. */
static bool link_timed(Worker *wk, Unit *u, LLVMMemoryBufferRef obj) {
    double t0 = thread_cpu_ms(), w0 = trace_clock_ms();
    bool ok = unit_link(u, obj, wk->err, sizeof wk->err);
    trace_span(wk->w->kp->trace, "codegen", w0, trace_clock_ms(), "%s %s",
               u->image ? "loaded by kiln's loader" : "LLVM JIT link", u->sym);
    pthread_mutex_lock(&wk->w->mu);
    wk->w->link_ms += thread_cpu_ms() - t0;
    if (ok && u->image && !u->helpers) wk->w->loaded++;
    pthread_mutex_unlock(&wk->w->mu);
    return ok;
}

static bool get_helpers(Worker *wk, Unit *u);

/* The helpers unit u's object `obj` calls, found (or built) first; false
 * when they fail (obj is dropped). */
static bool helpers_first(Worker *wk, Unit *u, LLVMMemoryBufferRef obj) {
    if (!u->uses_helpers || u->helper || get_helpers(wk, u)) return true;
    LLVMDisposeMemoryBuffer(obj);
    return false;
}

/* Links object `obj` (taken) as job j's unit, keeping the unit's entry for
 * the program entry when asked to. */
static bool link_kept(Worker *wk, Job *j, LLVMMemoryBufferRef obj) {
    Unit *u = j->u;
    if (wk->w->keep_entries && !u->helpers) {
        free(j->entry);
        j->entry = entry_pack(u, obj, &j->entry_len);
    }
    return link_timed(wk, u, obj);
}

/* The target's shared helpers for unit u, which calls them: found (and
 * waited for) or built here; u holds them from now on. */
static bool get_helpers(Worker *wk, Unit *u) {
    Work *w = wk->w;
    pthread_mutex_lock(&units.mu);
    Unit *h = w->want_ir ? w->private_helpers : unit_find(w->helpers.key);
    bool mine = !h;
    if (mine) {
        h = xcalloc(1, sizeof *h);
        h->key = w->helpers.key;
        h->refs = 1;
        h->state = UNIT_BUILDING;
        h->helpers = true;
        h->shared = !w->want_ir;
        StrBuf sb = {0};
        sb_printf(&sb, "kiln.helpers%s", w->helpers.suffix);
        h->sym = sb.data;
        if (h->shared)
            unit_insert(h);
        else
            w->private_helpers = h;
        units.live++;
    } else {
        h->refs++;
    }
    u->helper = h;
    pthread_mutex_unlock(&units.mu);
    if (mine) {
        Job hj = {.u = h};
        char saved[sizeof wk->err];
        memcpy(saved, wk->err, sizeof saved);
        wk->err[0] = 0;
        finish(&hj, build(wk, &hj, true), wk->err);
        free(hj.ir);
        memcpy(wk->err, saved, sizeof saved);
    }
    pthread_mutex_lock(&units.mu);
    while (h->state == UNIT_BUILDING) pthread_cond_wait(&units.cv, &units.mu);
    bool ok = h->state == UNIT_READY;
    if (!ok) snprintf(wk->err, sizeof wk->err, "the shared matmul helpers: %s", h->err);
    pthread_mutex_unlock(&units.mu);
    return ok;
}

/* Builds job j: from the cache, else compiled (under the entry's lock, so
 * that a process started at once waits for it rather than compiling it too;
 * with !wait a lock held elsewhere returns BUSY), then linked.  An entry
 * that loads but does not link is compiled anew. */
static BuildResult build(Worker *wk, Job *j, bool wait) {
    Unit *u = j->u;
    char *err = wk->err;
    size_t errlen = sizeof wk->err;
    LLVMMemoryBufferRef obj = NULL;
    int lock = -1;
    bool from_cache = false, waited = false;
    bool prebuilt = u->helpers && wk->w->helpers.prebuilt;
    if (prebuilt) {
        obj = prebuilt_helpers_object(); /* compiled at build time: linked, never compiled */
    } else if (j->form && (obj = entry_unpack(u, (const char *)j->form->entry, j->form->len))) {
        prebuilt = true; /* a prebuilt form: the same */
    } else if (j->given) {
        obj = entry_unpack(u, j->given, j->given_len); /* a program entry's: never compiled here */
        from_cache = obj != NULL;
    } else if (wk->w->use_cache) {
        obj = load_unit(wk, j);
        if (!obj) {
            KCacheLock l = kcache_lock(&wk->cache, u->key, wait, &lock);
            if (l == KL_BUSY) return BUSY;
            if (l == KL_TAKEN && (obj = load_unit(wk, j))) waited = true;
        }
        from_cache = obj != NULL;
    }
    if (!obj && !prebuilt && !j->given) obj = compile_unit(wk, j, u->key, err, errlen);
    kcache_unlock(lock);
    if (!obj || !helpers_first(wk, u, obj)) return BUILD_FAILED;
    if (!link_kept(wk, j, obj)) {
        if (!(from_cache || (prebuilt && !u->helpers)) || j->given) return BUILD_FAILED;
        if (from_cache) count(wk, j, &wk->w->cache_bad); /* (a prebuilt form's is no cache entry) */
        if (!(obj = compile_unit(wk, j, u->key, err, errlen)) || !helpers_first(wk, u, obj) ||
            !link_kept(wk, j, obj))
            return BUILD_FAILED;
        from_cache = prebuilt = false;
    }
    if (from_cache) count(wk, j, &wk->w->cache_hits);
    if (prebuilt && !u->helpers) count(wk, j, &wk->w->prebuilt);
    if (waited) count(wk, j, &wk->w->waited);
    j->from_cache = from_cache, j->from_form = prebuilt && !u->helpers;
    return BUILT;
}

static void finish(Job *j, BuildResult r, const char *err) {
    pthread_mutex_lock(&units.mu);
    j->u->state = r == BUILT ? UNIT_READY : UNIT_FAILED;
    if (r != BUILT) j->u->err = xstrdup(err[0] ? err : "LLVM code generation failed");
    pthread_cond_broadcast(&units.cv);
    pthread_mutex_unlock(&units.mu);
}

/* bench --trace: a span per kernel job j's unit serves, saying how its code came. */
static void trace_code_of(const Work *w, const Job *j, BuildResult r, double t0, double t1) {
    for (int k = 0; w->kp->trace && k < w->kp->kernels.len; k++)
        if (w->unit_of[k] == j->u)
            trace_span(w->kp->trace, "codegen", t0, t1, "code of %s: %s %s", w->kp->kernels.data[k].name,
                       r != BUILT      ? "failed,"
                       : j->from_cache ? "from the cache,"
                       : j->from_form  ? "prebuilt form,"
                                       : "compiled,",
                       j->u->sym);
}

/* A compile thread: jobs in order (costliest first); those another process
 * is building are deferred, then waited for. */
static void *worker_run(void *arg) {
    Worker *wk = arg;
    Work *w = wk->w;
    if (w->use_cache) kcache_open(&wk->cache);
    for (;;) {
        int i = atomic_fetch_add(&w->next, 1);
        bool wait = false;
        if (i >= w->njobs) {
            pthread_mutex_lock(&w->mu);
            i = w->next_deferred < w->deferred.len ? w->deferred.data[w->next_deferred++] : -1;
            pthread_mutex_unlock(&w->mu);
            if (i < 0) break;
            wait = true;
        }
        Job *j = &w->jobs[i];
        wk->err[0] = 0;
        double t0 = trace_clock_ms();
        BuildResult r = build(wk, j, wait);
        if (r == BUSY) {
            pthread_mutex_lock(&w->mu);
            VEC_PUSH(w->deferred, i);
            pthread_mutex_unlock(&w->mu);
            continue;
        }
        double t1 = trace_clock_ms();
        trace_code_of(w, j, r, t0, t1);
        finish(j, r, wk->err);
    }
    if (w->use_cache) kcache_close(&wk->cache);
    if (wk->ctx) LLVMContextDispose(wk->ctx);
    if (wk->tm) LLVMDisposeTargetMachine(wk->tm);
    return NULL;
}

/* A program entry's units loaded at once by kiln's loader, into one mapping
 * (objload.h, obj_load_all) and finished: false, with none of them loaded,
 * where the loader is off or refuses one (each is then built on its own). */
static bool load_given_together(Work *w) {
    int n = w->njobs;
    if (!loader_on() || n < 2) return false;
    double t0 = thread_cpu_ms(), w0 = trace_clock_ms();
    Worker wk = {.w = w};
    if (w->use_cache) kcache_open(&wk.cache); /* for the helpers, when not prebuilt */
    LLVMMemoryBufferRef *obj = xcalloc((size_t)n, sizeof *obj);
    const void **data = xcalloc((size_t)n, sizeof *data);
    size_t *len = xcalloc((size_t)n, sizeof *len);
    void **ctx = xcalloc((size_t)n, sizeof *ctx);
    ObjImage **im = xcalloc((size_t)n, sizeof *im);
    bool ok = true;
    for (int q = 0; ok && q < n; q++) {
        Unit *u = w->jobs[q].u;
        obj[q] = entry_unpack(u, w->jobs[q].given, w->jobs[q].given_len);
        ok = obj[q] && (!u->uses_helpers || u->helper || get_helpers(&wk, u));
        if (ok) data[q] = LLVMGetBufferStart(obj[q]), len[q] = LLVMGetBufferSize(obj[q]), ctx[q] = u;
    }
    char why[256];
    ok = ok && obj_load_all(n, data, len, resolve_helper, ctx, im, why, sizeof why);
    for (int q = 0; ok && q < n; q++) ok = image_symbols(w->jobs[q].u, im[q], why, sizeof why);
    for (int q = 0; q < n; q++) {
        if (ok)
            w->jobs[q].u->image = im[q], w->jobs[q].from_cache = true;
        else
            obj_free(im[q]);
        if (obj[q]) LLVMDisposeMemoryBuffer(obj[q]);
    }
    if (ok) {
        trace_span(w->kp->trace, "codegen", w0, trace_clock_ms(), "loaded by kiln's loader: %d units at once",
                   n);
        double w1 = trace_clock_ms();
        for (int q = 0; q < n; q++) trace_code_of(w, &w->jobs[q], BUILT, w0, w1);
        w->cache_hits += n, w->loaded += n;
        w->link_ms += thread_cpu_ms() - t0;
        for (int q = 0; q < n; q++) finish(&w->jobs[q], BUILT, "");
    }
    if (w->use_cache) kcache_close(&wk.cache);
    if (wk.ctx) LLVMContextDispose(wk.ctx); /* made when the helpers were compiled here */
    if (wk.tm) LLVMDisposeTargetMachine(wk.tm);
    free(obj), free(data), free(len), free(ctx), free(im);
    return ok;
}

/* Runs the jobs on `jobs` threads, the calling one included. */
static void run_jobs(Work *w, int jobs) {
    if (jobs > w->njobs) jobs = w->njobs;
    if (jobs < 1) return;
    Worker *wk = xcalloc((size_t)jobs, sizeof(Worker));
    pthread_t *threads = xcalloc((size_t)jobs, sizeof(pthread_t));
    bool *started = xcalloc((size_t)jobs, sizeof(bool));
    for (int t = 0; t < jobs; t++) wk[t].w = w;
    for (int t = 1; t < jobs; t++) started[t] = pthread_create(&threads[t], NULL, worker_run, &wk[t]) == 0;
    worker_run(&wk[0]); /* threads that could not start leave their share to this one */
    for (int t = 1; t < jobs; t++)
        if (started[t]) pthread_join(threads[t], NULL);
    free(wk);
    free(threads);
    free(started);
}

/* ------------------------------------------------------------ programs */

struct CpuCode {
    const KProgram *kp;
    char *target; /* the target's identity (llvm.h) */
    Unit **unit; /* per kernel (several kernels may share one) */
    CpuKernelCode *kernels;
    int table_len;
    Arena *arena; /* buffer lists */
};

/* Writes c's program entry under pkey: each unit's entry as this call's
 * jobs kept it or, for a unit this process had already, as the cache holds
 * it; nothing when one cannot be had (a later start writes it). */
static void program_store(KCache *cache, KCacheKey pkey, const CpuCode *c, const Work *w) {
    const KProgram *kp = c->kp;
    int nk = kp->kernels.len, nd = 0;
    Unit **distinct = xcalloc((size_t)nk + 1, sizeof(Unit *));
    int *unit_of = xcalloc((size_t)nk + 1, sizeof(int));
    const char **entry = xcalloc((size_t)nk + 1, sizeof(char *));
    size_t *entry_len = xcalloc((size_t)nk + 1, sizeof(size_t));
    char **loaded = xcalloc((size_t)nk + 1, sizeof(char *)); /* read back from the cache: freed here */
    size_t bytes = 24;
    bool all = true;
    for (int i = 0; i < nk; i++) {
        int d = 0;
        while (d < nd && distinct[d] != c->unit[i]) d++;
        unit_of[i] = d;
        bytes += 16 + 8 * (size_t)c->kernels[i].nbufs;
        if (d < nd) continue;
        Unit *u = distinct[nd++] = c->unit[i];
        for (int q = 0; q < w->njobs && !entry[d]; q++)
            if (w->jobs[q].u == u && w->jobs[q].entry)
                entry[d] = w->jobs[q].entry, entry_len[d] = w->jobs[q].entry_len;
        if (!entry[d] && kcache_load(cache, u->key, &loaded[d], &entry_len[d]) == KC_HIT &&
            entry_len[d] > 8 && memcmp(loaded[d], KCACHE_CPU_MAGIC, 8) == 0)
            entry[d] = loaded[d];
        all = all && entry[d] && strlen(u->sym) <= PROGRAM_SYM_MAX;
        if (all) bytes += 8 * PROGRAM_UNIT_WORDS + strlen(u->sym) + entry_len[d];
    }
    if (all) {
        unsigned char *p = xmalloc(bytes), *at = p + 24;
        memcpy(p, KCACHE_CPU_PROGRAM_MAGIC, 8);
        kcache_put_u64(p + 8, (uint64_t)nk), kcache_put_u64(p + 16, (uint64_t)nd);
        size_t tail = 24 + (size_t)nd * 8 * PROGRAM_UNIT_WORDS;
        for (int i = 0; i < nk; i++) tail += 16 + 8 * (size_t)c->kernels[i].nbufs;
        for (int d = 0; d < nd; d++) {
            size_t sl = strlen(distinct[d]->sym);
            uint64_t f[PROGRAM_UNIT_WORDS] = {
                distinct[d]->key.h[0], distinct[d]->key.h[1], tail, sl, tail + sl, entry_len[d]};
            memcpy(p + tail, distinct[d]->sym, sl);
            memcpy(p + tail + sl, entry[d], entry_len[d]);
            tail += sl + entry_len[d];
            for (int k = 0; k < PROGRAM_UNIT_WORDS; k++, at += 8) kcache_put_u64(at, f[k]);
        }
        for (int i = 0; i < nk; i++) {
            const CpuKernelCode *kc = &c->kernels[i];
            kcache_put_u64(at, (uint64_t)unit_of[i]), kcache_put_u64(at + 8, (uint64_t)kc->nbufs);
            at += 16;
            for (int j = 0; j < kc->nbufs; j++, at += 8) kcache_put_u64(at, (uint64_t)kc->bufs[j]);
        }
        char err[512]; /* a cache that cannot be written costs time only */
        kcache_store(cache, pkey, p, bytes, err, sizeof err);
        free(p);
    }
    for (int d = 0; d < nd; d++) free(loaded[d]);
    free(loaded);
    free(entry_len);
    free(entry);
    free(unit_of);
    free(distinct);
}

void cpu_code_free(CpuCode *c) {
    if (!c) return;
    pthread_mutex_lock(&units.mu);
    for (int i = 0; i < c->kp->kernels.len; i++)
        if (c->unit[i]) unit_release(c->unit[i]);
    pthread_mutex_unlock(&units.mu);
    free(c->unit);
    free(c->kernels);
    free(c->target);
    arena_free(c->arena);
    free(c);
}

/* The canonical program, sizes (llvm_kernel_sizes on target) and key of
 * kernel i: name "kiln.STEM.KEY" needs the key, which hashes the stem, so
 * the key comes first.  A sized kernel whose form is among `forms` (NULL:
 * none) takes the prebuilt form's key and symbol (*form; else NULL). */
static KProgram *kernel_unit_program(Arena *a, const KProgram *kp, int i, const char *target,
                                     const KCacheHasher *prefix, const CpuPrebuiltForms *forms, BufMap *m,
                                     LlvmKernelSizes *sz, KCacheKey *key, const CpuPrebuiltForm **form) {
    const char *stem = name_stem(kp->kernels.data[i].name);
    KProgram *cp = canonical_kernel(a, kp, i, stem, m);
    cp->trace = kp->trace; /* bench --trace: the code generator's spans */
    bool sized = llvm_kernel_sizes(cp, 0, target, true, sz);
    *form = sized && forms ? form_find(forms, form_key(cp, sz, forms->helpers_suffix)) : NULL;
    if (*form) {
        *key = (KCacheKey){{(*form)->key[0], (*form)->key[1]}};
        cp->kernels.data[0].name = arena_strdup(a, (*form)->sym);
        return cp;
    }
    *key = sized ? sized_kernel_key(cp, sz, prefix) : kernel_key(cp, prefix);
    char hex[33];
    kcache_key_hex(*key, hex);
    cp->kernels.data[0].name = arena_printf(a, "kiln.%s.%s", stem, hex);
    return cp;
}

KCacheKey cpu_code_unit_key(const CpuCode *c, int kernel) { return c->unit[kernel]->key; }

/* The key prefix of kernels compiled for `cpu`, and (NULL or, heap) its
 * target's identity; the prebuilt forms it may use (NULL or: may be NULL). */
static bool keys_prefix(const char *cpu, KCacheHasher *prefix, char **target_out,
                        const CpuPrebuiltForms **forms, char *err, size_t errlen) {
    char *target = target_of(cpu, err, errlen);
    if (!target) return false;
    HelpersChoice hc;
    helpers_choose(target, &hc);
    if (forms) *forms = forms_for(&hc);
    char *keyed = keyed_target(target, &hc);
    *prefix = key_prefix(keyed);
    free(keyed);
    if (target_out)
        *target_out = target;
    else
        free(target);
    return true;
}

KCacheKey cpu_code_key(const KProgram *kp, int kernel, const char *cpu, char *err, size_t errlen) {
    KCacheKey key = {{0, 0}};
    KCacheHasher prefix;
    char *target;
    const CpuPrebuiltForms *forms;
    if (!keys_prefix(cpu, &prefix, &target, &forms, err, errlen)) return key;
    Arena *a = arena_new();
    BufMap m;
    LlvmKernelSizes sz;
    const CpuPrebuiltForm *form;
    KProgram *cp = kernel_unit_program(a, kp, kernel, target, &prefix, forms, &m, &sz, &key, &form);
    llvm_kernel_sizes_free(&sz);
    kprog_destroy(cp);
    arena_free(a);
    free(target);
    return key;
}

KCacheKey cpu_code_program_key(const KProgram *kp, const char *cpu, char *err, size_t errlen) {
    KCacheHasher prefix;
    return keys_prefix(cpu, &prefix, NULL, NULL, err, errlen) ? program_key(kp, &prefix)
                                                              : (KCacheKey){{0, 0}};
}

/* cpu_code_compile, the program entry tried first when whole (else every
 * unit on its own, the program entry written at the end); *entry_failed
 * says a program entry was found but its units did not load. */
static CpuCode *compile_program(const KProgram *kp, const CpuCodeOptions *opt, bool whole, bool *entry_failed,
                                CpuCodeStats *stats, char *err, size_t errlen) {
    double t0 = wall_ms();
    CpuCodeStats st = {0};
    st.kernels = kp->kernels.len;
    const char *cpu = opt ? opt->cpu : NULL;
    bool fresh = opt && opt->ir_text;
    if (fresh) *opt->ir_text = NULL;
    char *target = target_of(cpu, err, errlen);
    if (!target) return NULL;
    HelpersChoice hc;
    helpers_choose(target, &hc);
    hc.prebuilt = hc.prebuilt && !fresh; /* tests of the code generator compile everything */
    const CpuPrebuiltForms *forms = forms_for(&hc);
    char *keyed = keyed_target(target, &hc);
    int nk = kp->kernels.len;
    CpuCode *c = xcalloc(1, sizeof *c);
    c->kp = kp;
    c->target = xstrdup(target);
    c->arena = arena_new();
    c->unit = xcalloc((size_t)nk + 1, sizeof(Unit *));
    c->kernels = xcalloc((size_t)nk + 1, sizeof(CpuKernelCode));
    Arena *work_arena = arena_new();
    KProgram **cps = xcalloc((size_t)nk + 1, sizeof(KProgram *));
    KCacheKey *keys = xcalloc((size_t)nk + 1, sizeof(KCacheKey));
    const CpuPrebuiltForm **form = xcalloc((size_t)nk + 1, sizeof(CpuPrebuiltForm *));
    LlvmKernelSizes *sizes = xcalloc((size_t)nk + 1, sizeof(LlvmKernelSizes));
    KCacheHasher prefix = key_prefix(keyed);

    Work w = {0};
    KCache cache;
    kcache_open(&cache);
    w.use_cache = !fresh && cache.dir;
    if (cache.dir)
        snprintf(st.cache_dir, sizeof st.cache_dir, "%s", cache.dir);
    else
        snprintf(st.cache_off, sizeof st.cache_off, "%s", fresh ? "not used" : cache.why_off);

    /* the program's entry: every unit's object and each kernel's table */
    KCacheKey pkey = {{0, 0}};
    ProgramEntry pe = {0};
    whole = whole && w.use_cache && nk > 0;
    if (w.use_cache && nk > 0) pkey = program_key(kp, &prefix);
    if (whole) {
        int corrupt = cache.corrupt;
        double l0 = trace_clock_ms();
        KCacheResult got = kcache_load(&cache, pkey, &pe.data, &pe.len);
        whole = got == KC_HIT && program_parse(&pe, kp, work_arena);
        trace_span(kp->trace, "codegen", l0, trace_clock_ms(), "cache load of the program's entry: %s",
                   whole           ? "hit"
                   : got == KC_HIT ? "unusable"
                                   : kcache_result_name(got));
        if (!whole && (got == KC_HIT || cache.corrupt != corrupt)) st.cache_bad++;
    }
    for (int i = 0; i < nk; i++) {
        CpuKernelCode *kc = &c->kernels[i];
        const int *list;
        if (whole) {
            keys[i] = pe.units[pe.unit_of[i]].key;
            kc->nbufs = pe.nbufs[i], list = pe.bufs[i];
            /* its own sizes (the entry has its unit's first kernel's), not its key's form */
            llvm_kernel_sizes(kp, i, target, false, &sizes[i]);
        } else {
            BufMap m;
            cps[i] = kernel_unit_program(work_arena, kp, i, target, &prefix, forms, &m, &sizes[i], &keys[i],
                                         &form[i]);
            kc->nbufs = m.n, list = m.list;
        }
        int *own = ARENA_ARRAY(c->arena, int, kc->nbufs + 1);
        memcpy(own, list, sizeof(int) * (size_t)kc->nbufs);
        kc->bufs = own;
        if (sizes[i].sized) { /* its sizes, which its (shared) unit reads from the table */
            int64_t *v = ARENA_ARRAY(c->arena, int64_t, sizes[i].nvalues);
            memcpy(v, sizes[i].values, sizeof(int64_t) * (size_t)sizes[i].nvalues);
            kc->values = v;
        }
        if (kc->nbufs + CPU_TABLE_EXTRA > c->table_len) c->table_len = kc->nbufs + CPU_TABLE_EXTRA;
    }

    /* claim the units: found ones are shared, new ones built here */
    w.jobs = xcalloc((size_t)nk + 1, sizeof(Job));
    w.cpu = cpu;
    w.want_ir = fresh;
    w.keep_entries = w.use_cache && !whole && nk > 0;
    w.kp = kp;
    w.unit_of = c->unit;
    pthread_mutex_init(&w.mu, NULL);
    w.helpers = hc;
    st.helpers_prebuilt = hc.prebuilt;
    pthread_mutex_lock(&units.mu);
    if (fresh) { /* private helpers: a name of their own */
        size_t used = strlen(w.helpers.suffix);
        snprintf(w.helpers.suffix + used, sizeof w.helpers.suffix - used, ".p%u", ++units.serial);
    }
    for (int i = 0; i < nk; i++) {
        Unit *u = fresh ? NULL : unit_find(keys[i]);
        bool first_here = true;
        for (int e = 0; e < i && first_here; e++)
            if (c->unit[e] && keys[e].h[0] == keys[i].h[0] && keys[e].h[1] == keys[i].h[1])
                first_here = false;
        if (first_here) st.distinct++;
        if (u) {
            bool mine = false; /* one this call builds (an identical kernel before i) */
            for (int q = 0; q < w.njobs; q++) mine = mine || w.jobs[q].u == u;
            if (first_here && !mine) st.reused++;
            u->refs++;
            c->unit[i] = u;
            double now = trace_clock_ms();
            if (!mine)
                trace_span(kp->trace, "codegen", now, now, "code of %s: already in this process, %s",
                           kp->kernels.data[i].name, u->sym);
            continue;
        }
        const ProgramUnit *pu = whole ? &pe.units[pe.unit_of[i]] : NULL;
        u = xcalloc(1, sizeof *u);
        u->key = keys[i];
        u->refs = 1;
        u->state = UNIT_BUILDING;
        u->shared = !fresh;
        u->sized = sizes[i].sized, u->product = sizes[i].product;
        u->sym = xstrdup(pu ? pu->sym : cps[i]->kernels.data[0].name);
        if (fresh) { /* private: a name of its own beside any shared twin */
            StrBuf sb = {0};
            sb_printf(&sb, "%s.p%u", u->sym, ++units.serial);
            free(u->sym);
            u->sym = sb.data;
            cps[i]->kernels.data[0].name = arena_strdup(work_arena, u->sym);
        }
        if (u->shared) unit_insert(u);
        units.live++;
        c->unit[i] = u;
        w.jobs[w.njobs++] = (Job){.u = u,
                                  .cp = cps[i],
                                  .cost = kernel_cost(&kp->kernels.data[i]),
                                  .given = pu ? pu->entry : NULL,
                                  .given_len = pu ? pu->entry_len : 0,
                                  .form = form[i]};
    }
    pthread_mutex_unlock(&units.mu);

    /* (the JIT, when a unit needs one, is made by unit_link) */
    for (int a = 1; a < w.njobs; a++) /* costliest first (insertion sort) */
        for (int b = a; b > 0 && w.jobs[b].cost > w.jobs[b - 1].cost; b--) {
            Job t = w.jobs[b];
            w.jobs[b] = w.jobs[b - 1], w.jobs[b - 1] = t;
        }
    /* a program entry's units are only loaded: on this thread, together */
    st.jobs = opt && opt->jobs > 1 && !whole ? opt->jobs : 1;
    if (st.jobs > w.njobs) st.jobs = w.njobs > 0 ? w.njobs : 1;
    if (!whole || !load_given_together(&w)) run_jobs(&w, st.jobs);

    /* wait for units other threads are building, then collect */
    bool ok = true;
    pthread_mutex_lock(&units.mu);
    for (int i = 0; i < nk; i++) {
        Unit *u = c->unit[i];
        while (u->state == UNIT_BUILDING) pthread_cond_wait(&units.cv, &units.mu);
        if (u->state == UNIT_FAILED) {
            if (ok) snprintf(err, errlen, "%s: %s", kp->kernels.data[i].name, u->err);
            ok = false;
            continue;
        }
        if (u->sized != sizes[i].sized) { /* a program entry's unit shared by kernels that disagree */
            if (ok)
                snprintf(err, errlen, "%s: its code %s sizes from the table, the kernel %s",
                         kp->kernels.data[i].name, u->sized ? "reads its" : "has its own",
                         sizes[i].sized ? "gives them" : "has none");
            ok = false;
            continue;
        }
        CpuKernelCode *kc = &c->kernels[i];
        kc->fn = u->fn, kc->cols = u->cols, kc->scratch = u->scratch;
        kc->gather = u->gather, kc->gather_bytes = u->gather_bytes, kc->gather_tasks = u->gather_tasks;
        kc->gather_operand = (int)u->gather_operand;
        for (int x = 0; x < 2; x++)
            kc->prepack[x] = u->prepack[x], kc->prepack_bytes[x] = u->prepack_bytes[x];
        const LlvmKernelSizes *sz = &sizes[i];
        if (sz->sized) { /* the unit's sizes are its first kernel's: this one's own */
            kc->scratch = sz->scratch, kc->gather_bytes = sz->gather[0], kc->gather_tasks = sz->gather[1];
            kc->gather_operand = (int)sz->gather[2];
            if (kc->gather_bytes <= 0) kc->gather = NULL;
            for (int x = 0; x < 2; x++) kc->prepack_bytes[x] = sz->prepack[x];
        }
    }
    /* a failed unit leaves the table, so that a later compile tries again */
    for (int i = 0; i < nk; i++)
        if (c->unit[i]->state == UNIT_FAILED && c->unit[i]->shared) {
            unit_unlink(c->unit[i]);
            c->unit[i]->shared = false;
        }
    pthread_mutex_unlock(&units.mu);
    if (ok && w.keep_entries) program_store(&cache, pkey, c, &w);
    if (entry_failed) *entry_failed = !ok && whole;
    st.program_cached = ok && whole;

    if (ok && fresh) {
        StrBuf sb = {0};
        for (int q = 0; q < w.njobs; q++) sb_puts(&sb, w.jobs[q].ir ? w.jobs[q].ir : "");
        *opt->ir_text = sb.data ? sb.data : xstrdup("");
    }
    st.cache_hits = w.cache_hits, st.compiled = w.compiled, st.waited = w.waited, st.prebuilt = w.prebuilt;
    st.cache_bad += w.cache_bad;
    st.llvm_cpu_ms = w.llvm_cpu_ms, st.llvm = w.llvm, st.link_cpu_ms = w.link_ms, st.loaded = w.loaded;
    for (int q = 0; q < w.njobs; q++) free(w.jobs[q].ir), free(w.jobs[q].entry);
    free(w.jobs);
    VEC_FREE(w.deferred);
    pthread_mutex_destroy(&w.mu);
    kcache_close(&cache);
    free(pe.data);
    for (int i = 0; i < nk; i++) kprog_destroy(cps[i]), llvm_kernel_sizes_free(&sizes[i]);
    free(cps);
    free(keys);
    free(form);
    free(sizes);
    arena_free(work_arena);
    free(keyed);
    free(target);
    st.wall_ms = wall_ms() - t0;
    if (stats) *stats = st;
    if (!ok) {
        cpu_code_free(c);
        return NULL;
    }
    return c;
}

CpuCode *cpu_code_compile(const KProgram *kp, const CpuCodeOptions *opt, CpuCodeStats *stats, char *err,
                          size_t errlen) {
    double t0 = wall_ms();
    bool entry_failed = false;
    CpuCode *c = compile_program(kp, opt, true, &entry_failed, stats, err, errlen);
    if (!c && entry_failed) { /* its units one by one: rebuilt where they must be, the entry written anew */
        c = compile_program(kp, opt, false, NULL, stats, err, errlen);
        if (stats) stats->cache_bad++, stats->wall_ms = wall_ms() - t0;
    }
    return c;
}

const char *cpu_code_target(const CpuCode *c) { return c->target; }

const CpuKernelCode *cpu_code_kernel(const CpuCode *c, int i) {
    return i >= 0 && i < c->kp->kernels.len ? &c->kernels[i] : NULL;
}

int cpu_code_table_len(const CpuCode *c) { return c->table_len; }

void cpu_code_table(const CpuCode *c, int i, void *const *bufs, void *scratch, void *const packed[2],
                    void **table) {
    const CpuKernelCode *kc = &c->kernels[i];
    for (int j = 0; j < kc->nbufs; j++) table[j] = bufs[kc->bufs[j]];
    table[kc->nbufs] = scratch;
    table[kc->nbufs + 1] = packed ? packed[0] : NULL;
    table[kc->nbufs + 2] = packed ? packed[1] : NULL;
    table[kc->nbufs + 3] = (void *)kc->values; /* read only: llvm_values_slot */
}

bool cpu_code_run_serial(const CpuCode *c, void *const *bufs) {
    void **table = xcalloc((size_t)c->table_len + 1, sizeof(void *));
    bool ok = true;
    for (int i = 0; ok && i < c->kp->kernels.len; i++) {
        const CpuKernelCode *kc = &c->kernels[i];
        int64_t outer = c->kp->kernels.data[i].outer;
        void *scratch = kc->scratch > 0 ? host_line_alloc((size_t)kc->scratch) : NULL;
        void *packed[2] = {NULL, NULL};
        ok = kc->scratch <= 0 || scratch;
        for (int x = 0; ok && x < 2; x++) { /* an operand gathered once (llvm.h) takes its prepack slot */
            int64_t bytes =
                kc->gather_bytes > 0 && kc->gather_operand == x ? kc->gather_bytes : kc->prepack_bytes[x];
            if (bytes > 0) ok = (packed[x] = host_line_alloc((size_t)bytes)) != NULL;
        }
        if (ok) {
            cpu_code_table(c, i, bufs, scratch, packed, table);
            for (int x = 0; x < 2; x++) /* constant operands, packed for this call only */
                if (kc->prepack_bytes[x] > 0) kc->prepack[x](table);
            if (kc->gather) kc->gather(0, kc->gather_tasks, table);
            if (outer > 0) kc->fn(0, outer, table);
        }
        free(scratch);
        free(packed[0]);
        free(packed[1]);
    }
    free(table);
    return ok;
}

/* ------------------------------------------------- prebuilt forms (tools) */

bool cpu_code_prebuilt_helpers_suffix(char *buf, size_t len) {
    char err[256];
    char *target = target_of(NULL, err, sizeof err);
    if (!target) return false;
    HelpersChoice hc;
    helpers_choose(target, &hc);
    free(target);
    snprintf(buf, len, "%s", hc.suffix);
    return hc.prebuilt;
}

bool cpu_code_prebuild_form(const KProgram *kp, int kernel, bool (*known)(KCacheKey, void *), void *ctx,
                            KCacheKey *key, char **sym, char **entry, size_t *len, char *err, size_t errlen) {
    *sym = *entry = NULL, *len = 0;
    err[0] = 0;
    char *target = target_of(NULL, err, errlen);
    if (!target) return false;
    HelpersChoice hc;
    helpers_choose(target, &hc);
    Arena *a = arena_new();
    BufMap m;
    const char *stem = name_stem(kp->kernels.data[kernel].name);
    KProgram *cp = canonical_kernel(a, kp, kernel, stem, &m);
    LlvmKernelSizes sz;
    bool ok = false;
    if (!hc.prebuilt)
        snprintf(err, errlen, "the shared helpers are not prebuilt for this host: no form can be");
    else if (llvm_kernel_sizes(cp, 0, target, true, &sz)) {
        *key = form_key(cp, &sz, hc.suffix);
        ok = known && known(*key, ctx);
        char hex[33];
        kcache_key_hex(*key, hex);
        cp->kernels.data[0].name = arena_printf(a, "kiln.%s.f%s", stem, hex);
        LLVMTargetMachineRef tm = ok ? NULL : llvm_target_machine(NULL, true, err, errlen);
        if (tm) {
            LLVMContextRef lctx = llvm_context_new();
            Unit u = {.sized = true, .product = sz.product};
            int64_t gather[3] = {0, 0, 0};
            LLVMMemoryBufferRef obj =
                llvm_compile_object(lctx, tm, cp, hc.suffix, &u.uses_helpers, &u.scratch, u.prepack_bytes,
                                    gather, NULL, NULL, err, errlen);
            u.gather_bytes = gather[0], u.gather_tasks = gather[1], u.gather_operand = gather[2];
            if (obj) {
                *entry = entry_pack(&u, obj, len);
                *sym = xstrdup(cp->kernels.data[0].name);
                LLVMDisposeMemoryBuffer(obj);
                ok = true;
            }
            LLVMContextDispose(lctx);
            LLVMDisposeTargetMachine(tm);
        }
        llvm_kernel_sizes_free(&sz);
    }
    kprog_destroy(cp);
    arena_free(a);
    free(target);
    return ok;
}
