/* test_kcache.c - the on-disk kernel cache (runtime/kcache.c).
 *
 * Checks: keys (stable, sensitive to every part and to where parts split);
 * store/load round trips (empty, binary, large payloads); misses; truncated,
 * corrupted, misplaced and overlong entries detected, removed and rebuilt;
 * several processes writing and reading the same key at once never see a
 * partial entry and leave no temporary files; a FIFO or symlink in an
 * entry's place is neither waited on nor followed; the directory chosen from
 * XDG_CACHE_HOME / HOME; KILN_CACHE=off or DIR; per-key locks; info and
 * clear (`kiln cache`); trimming to KILN_CACHE_MAX, least recently used first;
 * bytes named by their place in a mapped file (base/mapped.c: only a file
 * unchanged for two seconds; only bytes wholly inside the mapping).
 * Prints "test_kcache: N passed, N failed" last; exits non-zero on failure. */
#include "runtime/kcache.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

/* Like CHECK for two integers, printing both. */
#define CHECK_EQ(expected, actual)                                                                           \
    do {                                                                                                     \
        long long e_ = (long long)(expected), a_ = (long long)(actual);                                      \
        if (e_ == a_) {                                                                                      \
            npass++;                                                                                         \
        } else {                                                                                             \
            nfail++;                                                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld vs %lld)\n", __FILE__, __LINE__, #expected, \
                    #actual, e_, a_);                                                                        \
        }                                                                                                    \
    } while (0)

static KCacheKey key_of(const char *source, const char *arch) {
    KCacheHasher h;
    kcache_hash_init(&h);
    kcache_hash_str(&h, source);
    kcache_hash_str(&h, "--gpu-architecture");
    kcache_hash_str(&h, arch);
    return kcache_hash_done(&h);
}

static bool key_eq(KCacheKey a, KCacheKey b) { return a.h[0] == b.h[0] && a.h[1] == b.h[1]; }

static long file_size(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 ? (long)st.st_size : -1;
}

/* Temporary files (".HEX.tmp.XXXXXX") left in dir. */
static int count_temps(const char *dir) {
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        if (strstr(e->d_name, ".tmp.")) n++;
    if (d) closedir(d);
    return n;
}

static void remove_tree(const char *dir) {
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
        StrBuf p = {0};
        sb_printf(&p, "%s/%s", dir, e->d_name);
        struct stat st;
        if (lstat(p.data, &st) == 0 && S_ISDIR(st.st_mode)) remove_tree(p.data);
        else unlink(p.data);
        sb_free(&p);
    }
    if (d) closedir(d);
    rmdir(dir);
}

static void test_keys(void) {
    KCacheKey a = key_of("__global__ void k() {}", "sm_90");
    ASSERT(key_eq(a, key_of("__global__ void k() {}", "sm_90")));
    ASSERT(!key_eq(a, key_of("__global__ void k() {} ", "sm_90")));
    ASSERT(!key_eq(a, key_of("__global__ void k() {}", "sm_80")));
    /* Parts are length-prefixed: "ab"+"c" is not "a"+"bc". */
    KCacheHasher h1, h2;
    kcache_hash_init(&h1);
    kcache_hash_str(&h1, "ab");
    kcache_hash_str(&h1, "c");
    kcache_hash_init(&h2);
    kcache_hash_str(&h2, "a");
    kcache_hash_str(&h2, "bc");
    KCacheKey k1 = kcache_hash_done(&h1), k2 = kcache_hash_done(&h2);
    ASSERT(!key_eq(k1, k2));
    ASSERT(k1.h[0] != k2.h[0] && k1.h[1] != k2.h[1]);
    char hex[33];
    kcache_key_hex(a, hex);
    CHECK_EQ(32, strlen(hex));
    /* No collisions among many near-identical sources, in either half. */
    enum { N = 2000 };
    KCacheKey *keys = xcalloc(N, sizeof *keys);
    char src[64];
    for (int i = 0; i < N; i++) {
        snprintf(src, sizeof src, "kernel %d", i);
        keys[i] = key_of(src, "sm_90");
    }
    int same = 0;
    for (int i = 0; i < N; i++)
        for (int j = i + 1; j < N; j++) same += keys[i].h[0] == keys[j].h[0] || keys[i].h[1] == keys[j].h[1];
    CHECK_EQ(0, same);
    free(keys);
}

static void test_round_trip(const char *dir) {
    KCache c;
    kcache_open_dir(&c, dir);
    ASSERT(c.dir != NULL);
    char err[256] = "", *data;
    size_t len;
    KCacheKey k = key_of("round trip", "sm_90");
    CHECK_EQ(KC_MISS, kcache_load(&c, k, &data, &len));
    ASSERT(data == NULL);
    const char ptx[] = "//\n// Generated by NVRTC\n.version 9.0\n.target sm_90\n";
    ASSERT(kcache_store(&c, k, ptx, strlen(ptx), err, sizeof err));
    CHECK_EQ(KC_HIT, kcache_load(&c, k, &data, &len));
    CHECK_EQ(strlen(ptx), len);
    ASSERT(data && memcmp(data, ptx, len) == 0 && data[len] == 0);
    free(data);

    /* binary payload with NUL bytes, and an empty one */
    unsigned char bin[300];
    for (int i = 0; i < 300; i++) bin[i] = (unsigned char)(i * 7);
    KCacheKey kb = key_of("binary", "sm_90"), ke = key_of("empty", "sm_90");
    ASSERT(kcache_store(&c, kb, bin, sizeof bin, err, sizeof err));
    ASSERT(kcache_store(&c, ke, "", 0, err, sizeof err));
    CHECK_EQ(KC_HIT, kcache_load(&c, kb, &data, &len));
    ASSERT(len == sizeof bin && memcmp(data, bin, len) == 0);
    free(data);
    CHECK_EQ(KC_HIT, kcache_load(&c, ke, &data, &len));
    CHECK_EQ(0, len);
    free(data);

    /* overwrite with new contents */
    ASSERT(kcache_store(&c, k, "v2", 2, err, sizeof err));
    CHECK_EQ(KC_HIT, kcache_load(&c, k, &data, &len));
    ASSERT(len == 2 && memcmp(data, "v2", 2) == 0);
    free(data);
    CHECK_EQ(0, count_temps(dir));
    CHECK_EQ(4, c.stores);
    kcache_close(&c);
}

/* Stores payload under k as a plain (kcache_store) or mapped
 * (kcache_store_mapped) entry. */
static bool store_as(KCache *c, KCacheKey k, const char *payload, bool mapped) {
    char err[256];
    return mapped ? kcache_store_mapped(c, k, payload, strlen(payload), err, sizeof err)
                  : kcache_store(c, k, payload, strlen(payload), err, sizeof err);
}

/* Loads k's entry as it was stored; *got is payload's bytes on a hit. */
static KCacheResult load_as(KCache *c, KCacheKey k, bool mapped, const char *payload, bool *got) {
    *got = false;
    if (mapped) {
        KCacheMap m;
        KCacheResult r = kcache_map(c, k, NULL, &m);
        if (r == KC_HIT) {
            *got = m.len == strlen(payload) && memcmp(m.data, payload, m.len) == 0 &&
                   (uintptr_t)m.data % 64 == 0;
            kcache_unmap(&m);
        }
        return r;
    }
    char *data;
    size_t len;
    KCacheResult r = kcache_load(c, k, &data, &len);
    if (r == KC_HIT) *got = len == strlen(payload) && memcmp(data, payload, len) == 0;
    free(data);
    return r;
}

/* Damages the entry of `k` with `how`, then checks it is detected, removed,
 * and that a store rebuilds it; a plain entry or a mapped one (header 64
 * bytes, payload used in place). */
static void damaged(const char *dir, const char *how, bool mapped) {
    KCache c;
    kcache_open_dir(&c, dir);
    StrBuf name = {0};
    sb_printf(&name, "%s%s", how, mapped ? " mapped" : "");
    KCacheKey k = key_of(name.data, "sm_90"), other = key_of("other", "sm_90");
    const char *payload = "0123456789abcdef0123456789abcdef";
    long head = mapped ? 64 : 40;
    bool got;
    ASSERT(store_as(&c, k, payload, mapped));
    char *path = kcache_path(&c, k);
    long size = file_size(path);
    CHECK_EQ(head + (long)strlen(payload), size);
    FILE *f;
    if (strcmp(how, "truncated") == 0) {
        ASSERT(truncate(path, size - 1) == 0);
    } else if (strcmp(how, "header only") == 0) {
        ASSERT(truncate(path, head) == 0);
    } else if (strcmp(how, "short header") == 0) {
        ASSERT(truncate(path, 10) == 0);
    } else if (strcmp(how, "empty") == 0) {
        ASSERT(truncate(path, 0) == 0);
    } else if (strcmp(how, "overlong") == 0) {
        ASSERT((f = fopen(path, "ab")) != NULL);
        fputs("junk", f);
        fclose(f);
    } else if (strcmp(how, "flipped payload") == 0 || strcmp(how, "flipped magic") == 0 ||
               strcmp(how, "flipped length") == 0) {
        long at = strcmp(how, "flipped payload") == 0 ? head + 10
                  : strcmp(how, "flipped magic") == 0 ? 0
                                                      : 24;
        ASSERT((f = fopen(path, "r+b")) != NULL);
        fseek(f, at, SEEK_SET);
        int ch = fgetc(f);
        fseek(f, at, SEEK_SET);
        fputc(ch ^ 0x20, f);
        fclose(f);
    } else if (strcmp(how, "fifo") == 0) { /* must not block the reader */
        ASSERT(unlink(path) == 0 && mkfifo(path, 0600) == 0);
    } else if (strcmp(how, "symlink") == 0) { /* to a whole, valid copy: still not followed */
        char *copy = xmalloc(strlen(path) + 8);
        sprintf(copy, "%s.copy", path);
        ASSERT(rename(path, copy) == 0 && symlink(copy, path) == 0);
        free(copy);
    } else if (strcmp(how, "misplaced") == 0) {
        /* another key's (valid) entry under this key's name */
        ASSERT(store_as(&c, other, payload, mapped));
        char *opath = kcache_path(&c, other);
        ASSERT(rename(opath, path) == 0);
        free(opath);
    } else if (strcmp(how, "other kind") == 0) {
        /* an entry of the other form under this key (plain for mapped ...) */
        ASSERT(store_as(&c, k, payload, !mapped));
    }
    KCacheResult r = load_as(&c, k, mapped, payload, &got);
    if (r != KC_CORRUPT)
        fprintf(stderr, "damaged entry (%s) loaded as %s\n", name.data, kcache_result_name(r));
    CHECK_EQ(KC_CORRUPT, r);
    ASSERT(!got);
    CHECK_EQ(-1, file_size(path)); /* removed */
    CHECK_EQ(KC_MISS, load_as(&c, k, mapped, payload, &got));
    ASSERT(store_as(&c, k, payload, mapped));
    CHECK_EQ(KC_HIT, load_as(&c, k, mapped, payload, &got));
    ASSERT(got);
    CHECK_EQ(1, c.corrupt);
    free(path);
    sb_free(&name);
    kcache_close(&c);
}

/* Mapped entries: a megabyte round trip (payload 64-byte aligned, used in
 * place), the bulk hash (every byte counts, lengths count), a payload left
 * mapped while its entry is replaced and removed, info's kind. */
static void test_mapped(const char *dir) {
    KCache c;
    kcache_open_dir(&c, dir);
    char err[256];
    enum { SIZE = 1 << 20 };
    unsigned char *big = xmalloc(SIZE);
    for (int i = 0; i < SIZE; i++) big[i] = (unsigned char)(i * 131 + i / 4096);
    KCacheKey k = key_of("mapped big", "cpu");
    KCacheMap m;
    CHECK_EQ(KC_MISS, kcache_map(&c, k, NULL, &m));
    ASSERT(kcache_store_mapped(&c, k, big, SIZE, err, sizeof err));
    CHECK_EQ(KC_HIT, kcache_map(&c, k, NULL, &m));
    ASSERT(m.len == SIZE && memcmp(m.data, big, SIZE) == 0 && (uintptr_t)m.data % 64 == 0);
    /* replaced and removed meanwhile: the mapping keeps its bytes */
    big[7] ^= 1;
    ASSERT(kcache_store_mapped(&c, k, big, SIZE, err, sizeof err));
    big[7] ^= 1;
    ASSERT(memcmp(m.data, big, SIZE) == 0);
    char *path = kcache_path(&c, k);
    ASSERT(unlink(path) == 0);
    ASSERT(memcmp(m.data, big, SIZE) == 0);
    kcache_unmap(&m);
    ASSERT(m.map == NULL);
    free(path);

    /* the bulk hash: the same bytes give the same key; one bit, a byte
     * moved, or one byte more or less give another */
    KCacheHasher h;
    KCacheKey keys[6];
    size_t lens[6] = {SIZE, SIZE, SIZE, SIZE, SIZE - 1, 100};
    for (int v = 0; v < 6; v++) {
        if (v == 2) big[SIZE / 2] ^= 0x01;
        if (v == 3) big[SIZE / 2] ^= 0x01, big[SIZE - 3] ^= 0x80;
        kcache_hash_init(&h);
        kcache_hash_bulk(&h, big, lens[v], NULL);
        keys[v] = kcache_hash_done(&h);
        if (v == 3) big[SIZE - 3] ^= 0x80;
    }
    ASSERT(key_eq(keys[0], keys[1]));
    for (int a = 1; a < 6; a++)
        for (int b = a + 1; b < 6; b++) ASSERT(!key_eq(keys[a], keys[b]));
    free(big);
    kcache_close(&c);
}

/* The bulk digest over a dozen 256 KiB blocks and a partial one: the same on
 * any number of threads and by every variant (portable, AVX-512) of every
 * length up to a stripe past a segment; two 64-byte stripes swapped, or two
 * whole blocks, give another digest. */
static void test_bulk_digest(void) {
    enum { SIZE = 3 * (1 << 20) + 100 };
    unsigned char *big = xmalloc(SIZE);
    for (int i = 0; i < SIZE; i++) big[i] = (unsigned char)(i * 131 + i / 4096 + i / 1000003);
    ThreadPool *pools[3] = {NULL, tp_new(2), tp_new(3)};
    KCacheKey first = {{0, 0}};
    for (int t = 0; t < 3; t++) {
        KCacheHasher h;
        kcache_hash_init(&h);
        kcache_hash_bulk(&h, big, SIZE, pools[t]);
        KCacheKey k = kcache_hash_done(&h);
        if (t == 0) first = k;
        ASSERT(key_eq(k, first));
    }
    uint64_t v[KCACHE_BULK_VARIANTS][2];
    int agree = 1, variants = 0;
    for (size_t len = 0; len <= 1100; len += 1 + len / 7) {
        variants = kcache_bulk_variants(big + 5, len, v);
        for (int i = 1; i < variants; i++) agree &= v[i][0] == v[0][0] && v[i][1] == v[0][1];
    }
    variants = kcache_bulk_variants(big, SIZE, v);
    for (int i = 1; i < variants; i++) agree &= v[i][0] == v[0][0] && v[i][1] == v[0][1];
    CHECK(agree, "%d variants of the bulk digest disagree", variants);
    printf("test_kcache: %d variant(s) of the bulk digest on this CPU\n", variants);
    /* moved data: stripes 3 and 9 of a segment, then the first and second MiB */
    unsigned char tmp[1 << 20];
    KCacheKey moved[2];
    for (int m = 0; m < 2; m++) {
        size_t at = m ? 1 << 20 : 9 * 64, n = m ? 1 << 20 : 64, from = m ? 0 : 3 * 64;
        memcpy(tmp, big + from, n), memmove(big + from, big + at, n), memcpy(big + at, tmp, n);
        KCacheHasher h;
        kcache_hash_init(&h);
        kcache_hash_bulk(&h, big, SIZE, pools[1]);
        moved[m] = kcache_hash_done(&h);
        memcpy(tmp, big + from, n), memmove(big + from, big + at, n), memcpy(big + at, tmp, n);
    }
    ASSERT(!key_eq(moved[0], first) && !key_eq(moved[1], first) && !key_eq(moved[0], moved[1]));
    tp_free(pools[1]);
    tp_free(pools[2]);
    free(big);
}

/* info recognises mapped entries */
static void test_mapped_info(const char *dir) {
    KCache c;
    kcache_open_dir(&c, dir);
    char err[256];
    enum { SIZE = 4096 };
    unsigned char big[SIZE] = {1, 2, 3};
    KCacheKey k = key_of("mapped info", "cpu");
    KCacheInfo info;
    ASSERT(kcache_store_mapped(&c, k, big, SIZE, err, sizeof err));
    ASSERT(kcache_info(&c, &info, err, sizeof err));
    CHECK_EQ(1, info.kind_entries[KCK_PACKED]);
    ASSERT(strcmp(kcache_kind_name(KCK_PACKED), "packed weights") == 0);
    kcache_close(&c);
}

static void test_damaged(const char *dir) {
    const char *hows[] = {"truncated",       "header only",   "short header",   "empty",     "overlong",
                          "flipped payload", "flipped magic", "flipped length", "misplaced", "fifo",
                          "symlink",         "other kind"};
    for (int mapped = 0; mapped < 2; mapped++)
        for (size_t i = 0; i < sizeof hows / sizeof hows[0]; i++) damaged(dir, hows[i], mapped);
}

/* Several processes store and load the same key at once; every load is a
 * miss or the whole payload, never a damaged entry. */
static void test_concurrent(const char *dir) {
    enum { PROCS = 6, ROUNDS = 40, SIZE = 256 * 1024 };
    char *payload = xmalloc(SIZE);
    for (int i = 0; i < SIZE; i++) payload[i] = (char)('a' + (i * 31 + i / 1000) % 26);
    KCacheKey k = key_of("concurrent", "sm_90");
    pid_t pids[PROCS];
    for (int p = 0; p < PROCS; p++) {
        pids[p] = fork();
        if (pids[p] == 0) {
            KCache c;
            kcache_open_dir(&c, dir);
            int bad = 0;
            char err[256], *data;
            size_t len;
            for (int r = 0; r < ROUNDS; r++) {
                if (!kcache_store(&c, k, payload, SIZE, err, sizeof err)) {
                    fprintf(stderr, "child %d: %s\n", p, err);
                    bad++;
                }
                KCacheResult res = kcache_load(&c, k, &data, &len);
                if (res == KC_HIT && (len != SIZE || memcmp(data, payload, SIZE) != 0)) bad++;
                if (res == KC_CORRUPT) bad++;
                free(data);
            }
            kcache_close(&c);
            free(payload);
            _exit(bad ? 1 : 0);
        }
        ASSERT(pids[p] > 0);
    }
    int ok = 0;
    for (int p = 0; p < PROCS; p++) {
        int status = 0;
        if (pids[p] > 0 && waitpid(pids[p], &status, 0) == pids[p] && WIFEXITED(status) &&
            WEXITSTATUS(status) == 0)
            ok++;
    }
    CHECK_EQ(PROCS, ok);
    KCache c;
    kcache_open_dir(&c, dir);
    char *data;
    size_t len;
    CHECK_EQ(KC_HIT, kcache_load(&c, k, &data, &len));
    ASSERT(len == SIZE && memcmp(data, payload, SIZE) == 0);
    free(data);
    CHECK_EQ(0, count_temps(dir));
    kcache_close(&c);
    free(payload);
}

static void test_environment(const char *dir) {
    KCache c;
    char err[256], *data;
    size_t len;
    KCacheKey k = key_of("env", "sm_90");
    StrBuf xdg = {0}, home = {0}, want = {0};
    sb_printf(&xdg, "%s/xdg", dir);
    sb_printf(&home, "%s/home", dir);

    unsetenv("KILN_CACHE");
    setenv("XDG_CACHE_HOME", xdg.data, 1);
    kcache_open(&c);
    sb_printf(&want, "%s/kiln", xdg.data);
    ASSERT(c.dir && strcmp(c.dir, want.data) == 0);
    ASSERT(kcache_store(&c, k, "x", 1, err, sizeof err));
    CHECK_EQ(KC_HIT, kcache_load(&c, k, &data, &len));
    free(data);
    struct stat st;
    ASSERT(stat(want.data, &st) == 0 && (st.st_mode & 0777) == 0700);
    kcache_close(&c);

    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", home.data, 1);
    kcache_open(&c);
    want.len = 0;
    sb_printf(&want, "%s/.cache/kiln", home.data);
    ASSERT(c.dir && strcmp(c.dir, want.data) == 0);
    kcache_close(&c);

    const char *offs[] = {"off", "OFF", "0"};
    for (int i = 0; i < 3; i++) {
        setenv("KILN_CACHE", offs[i], 1);
        kcache_open(&c);
        ASSERT(c.dir == NULL);
        ASSERT(strstr(c.why_off, "KILN_CACHE") != NULL);
        CHECK_EQ(KC_OFF, kcache_load(&c, k, &data, &len));
        ASSERT(kcache_store(&c, k, "x", 1, err, sizeof err)); /* a no-op that succeeds */
        ASSERT(kcache_path(&c, k) == NULL);
        kcache_close(&c);
    }
    /* KILN_CACHE=DIR names the folder; on means the default; a relative
     * path (which would follow the working directory) turns it off */
    StrBuf named = {0};
    sb_printf(&named, "%s/named", dir);
    setenv("KILN_CACHE", named.data, 1);
    kcache_open(&c);
    ASSERT(c.dir && strcmp(c.dir, named.data) == 0);
    kcache_close(&c);
    setenv("KILN_CACHE", "on", 1);
    kcache_open(&c);
    ASSERT(c.dir && strcmp(c.dir, want.data) == 0);
    kcache_close(&c);
    setenv("KILN_CACHE", "relative/dir", 1);
    kcache_open(&c);
    ASSERT(c.dir == NULL && strstr(c.why_off, "absolute") != NULL);
    kcache_close(&c);
    sb_free(&named);
    unsetenv("KILN_CACHE");

    /* a directory that cannot be made: the cache is off and says why */
    StrBuf file = {0};
    sb_printf(&file, "%s/plainfile", dir);
    FILE *f = fopen(file.data, "w");
    ASSERT(f != NULL);
    if (f) fclose(f);
    sb_puts(&file, "/kiln");
    kcache_open_dir(&c, file.data);
    ASSERT(c.dir == NULL);
    ASSERT(strstr(c.why_off, "cannot create") != NULL);
    kcache_close(&c);
    sb_free(&file);
    sb_free(&xdg);
    sb_free(&home);
    sb_free(&want);
}

/* kcache_lock: one holder per key at a time, the lock dropped when its
 * holder lets go; info counts entries by kind; clear removes entries,
 * temporary files and the lock file, nothing else. */
static void test_lock_info_clear(const char *dir) {
    KCache c;
    char err[256];
    kcache_open_dir(&c, dir);
    KCacheKey k = key_of("locked", "sm_90"), other = key_of("other", "sm_90");
    int h1, h2;
    CHECK_EQ(KL_TAKEN, kcache_lock(&c, k, false, &h1));
    CHECK_EQ(KL_BUSY, kcache_lock(&c, k, false, &h2)); /* a second description: busy, even in one process */
    CHECK_EQ(-1, h2);
    if ((k.h[0] >> 24) != (other.h[0] >> 24)) {
        CHECK_EQ(KL_TAKEN, kcache_lock(&c, other, false, &h2));
        kcache_unlock(h2);
    }
    kcache_unlock(h1);
    CHECK_EQ(KL_TAKEN, kcache_lock(&c, k, true, &h2));
    kcache_unlock(h2);

    StrBuf junk = {0};
    sb_printf(&junk, "%s/notes.txt", dir); /* not the cache's: left alone */
    FILE *f = fopen(junk.data, "w");
    if (f) fputs("mine", f), fclose(f);
    ASSERT(kcache_store(&c, k, KCACHE_CPU_MAGIC "object", 14, err, sizeof err));
    ASSERT(kcache_store(&c, other, "// ptx\n.version 8.0", 20, err, sizeof err));
    KCacheKey program = key_of("program", "x86-64");
    ASSERT(kcache_store(&c, program, KCACHE_CPU_PROGRAM_MAGIC "units", 13, err, sizeof err));
    KCacheInfo info;
    ASSERT(kcache_info(&c, &info, err, sizeof err));
    ASSERT(info.entries >= 3);
    CHECK_EQ(1, info.kind_entries[KCK_CPU]);
    CHECK_EQ(1, info.kind_entries[KCK_CPU_PROGRAM]);
    ASSERT(strcmp(kcache_kind_name(KCK_CPU_PROGRAM), "CPU program code") == 0);
    ASSERT(info.kind_entries[KCK_PTX] >= 1);
    int64_t removed = 0, bytes = 0;
    ASSERT(kcache_clear(&c, &removed, &bytes, err, sizeof err));
    ASSERT(removed >= 3 && bytes > 0);
    ASSERT(kcache_info(&c, &info, err, sizeof err));
    CHECK_EQ(0, info.entries);
    ASSERT(file_size(junk.data) == 4);
    sb_free(&junk);
    kcache_close(&c);

    KCache off;
    kcache_open_dir(&off, NULL); /* off: empty, nothing to clear, no lock */
    ASSERT(kcache_info(&off, &info, err, sizeof err) && info.entries == 0);
    CHECK_EQ(KL_NONE, kcache_lock(&off, k, true, &h1));
    kcache_close(&off);
}

/* kcache_trim: over the limit, the least recently used entries go (loading
 * one marks it used), down to 90 % of the limit; none at or under it; 0 is
 * no limit; KILN_CACHE_MAX is read as a size. */
static void test_trim(const char *dir) {
    KCache c;
    char err[256], *data;
    size_t len;
    kcache_open_dir(&c, dir);
    int64_t removed, bytes;
    ASSERT(kcache_trim(&c, &removed, &bytes) && removed == 0); /* empty */
    enum { N = 10, PAYLOAD = 1000 };
    char payload[PAYLOAD];
    memset(payload, 'x', sizeof payload);
    KCacheKey keys[N];
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "trim %d", i);
        keys[i] = key_of(name, "sm_90");
        ASSERT(kcache_store(&c, keys[i], payload, sizeof payload, err, sizeof err));
        /* mtimes a second apart, the first oldest */
        char *path = kcache_path(&c, keys[i]);
        struct timespec t[2] = {{1000000 + i, 0}, {1000000 + i, 0}};
        ASSERT(utimensat(AT_FDCWD, path, t, 0) == 0);
        free(path);
    }
    int64_t entry = PAYLOAD + 40; /* the header */
    c.max_bytes = 0;              /* no limit */
    ASSERT(kcache_trim(&c, &removed, &bytes) && removed == 0);
    c.max_bytes = N * entry;
    ASSERT(kcache_trim(&c, &removed, &bytes) && removed == 0);
    /* entry 0 is used now: the newest */
    CHECK_EQ(KC_HIT, kcache_load(&c, keys[0], &data, &len));
    free(data);
    c.max_bytes = 6 * entry; /* over: down to 90 % of it, 5 entries */
    ASSERT(kcache_trim(&c, &removed, &bytes));
    CHECK_EQ(5, removed);
    CHECK_EQ(5 * entry, bytes);
    CHECK_EQ(KC_HIT, kcache_load(&c, keys[0], &data, &len));
    free(data);
    for (int i = 1; i <= 5; i++) CHECK_EQ(KC_MISS, kcache_load(&c, keys[i], &data, &len));
    for (int i = 6; i < N; i++) {
        CHECK_EQ(KC_HIT, kcache_load(&c, keys[i], &data, &len));
        free(data);
    }
    kcache_close(&c);

    const char *sizes[][2] = {
        {"2G", "2147483648"}, {"500M", "524288000"}, {"64k", "65536"}, {"0", "0"}, {"1234", "1234"}};
    for (int i = 0; i < 5; i++) {
        setenv("KILN_CACHE_MAX", sizes[i][0], 1);
        kcache_open_dir(&c, dir);
        CHECK_EQ(strtoll(sizes[i][1], NULL, 10), c.max_bytes);
        ASSERT(c.limit_note[0] == 0);
        kcache_close(&c);
    }
    setenv("KILN_CACHE_MAX", "lots", 1);
    kcache_open_dir(&c, dir);
    ASSERT(c.max_bytes == KCACHE_DEFAULT_MAX && strstr(c.limit_note, "not a size"));
    kcache_close(&c);
    unsetenv("KILN_CACHE_MAX");
}

/* mapped_file_register/place on a block standing for a mapping: a settled
 * file's bytes get their place (file words, offset, length), bytes past the
 * end or of a file changed just now none, nor anything once unregistered. */
static void test_mapped_place(void) {
    unsigned char *block = xmalloc(4096);
    struct stat st = {0};
    st.st_dev = 7, st.st_ino = 42, st.st_size = 4096;
    st.st_mtim.tv_sec = time(NULL) - 60, st.st_ctim.tv_sec = time(NULL) - 30;
    uint64_t w[MAPPED_PLACE_WORDS], w2[MAPPED_PLACE_WORDS];
    mapped_file_register(block, 4096, &st);
    CHECK(mapped_file_place(block + 100, 200, w) && w[0] == 7 && w[1] == 42 && w[2] == 4096 && w[5] == 100 &&
              w[6] == 200,
          "the place of bytes inside a settled mapping");
    CHECK(mapped_file_place(block + 3896, 200, w2) && w2[5] == 3896, "bytes that end at the mapping's end");
    CHECK(!mapped_file_place(block + 3900, 200, w2), "bytes that run past the mapping's end have a place");
    CHECK(!mapped_file_place(block + 4096, 1, w2), "bytes past the mapping have a place");
    mapped_file_unregister(block);
    CHECK(!mapped_file_place(block + 100, 200, w2), "a place after unregistering");
    st.st_ctim.tv_sec = time(NULL); /* changed just now: its times may not show the next write */
    mapped_file_register(block, 4096, &st);
    CHECK(!mapped_file_place(block + 100, 200, w2), "a file changed just now has places");
    mapped_file_unregister(block);
    free(block);
}

int main(void) {
    alarm(120); /* a reader blocked on a FIFO would hang here: fail instead */
    char dir[] = "/tmp/test_kcache.XXXXXX";
    if (!mkdtemp(dir)) {
        perror("test_kcache: mkdtemp");
        return 1;
    }
    StrBuf sub = {0};
    test_keys();
    test_mapped_place();
    sb_printf(&sub, "%s/a/b", dir); /* created with its parents */
    test_round_trip(sub.data);
    test_damaged(sub.data);
    test_concurrent(sub.data);
    test_lock_info_clear(sub.data);
    test_trim(sub.data);
    test_environment(dir);
    sb_free(&sub);
    sb_printf(&sub, "%s/mapped", dir);
    test_mapped(sub.data);
    sb_free(&sub);
    sb_printf(&sub, "%s/mapped-info", dir);
    test_mapped_info(sub.data);
    sb_free(&sub);
    test_bulk_digest();
    remove_tree(dir);
    printf("test_kcache: %d passed, %d failed\n", npass, nfail);
    return nfail ? 1 : 0;
}
