/* test_kcache.c - the on-disk kernel cache (runtime/kcache.c).
 *
 * Checks: keys (stable, sensitive to every part and to where parts split);
 * store/load round trips (empty, binary, large payloads); misses; truncated,
 * corrupted, misplaced and overlong entries detected, removed and rebuilt;
 * several processes writing and reading the same key at once never see a
 * partial entry and leave no temporary files; a FIFO or symlink in an
 * entry's place is neither waited on nor followed; the directory chosen from
 * XDG_CACHE_HOME / HOME; KILN_CACHE=off or DIR; per-key locks; info and
 * clear (`kiln cache`); trimming to KILN_CACHE_MAX, least recently used first.
 * Prints "test_kcache: N passed, N failed" last; exits non-zero on failure. */
#include "runtime/kcache.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static int passed, failed;

#define CHECK(expr)                                                                  \
    do {                                                                             \
        if (expr) {                                                                  \
            passed++;                                                                \
        } else {                                                                     \
            failed++;                                                                \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #expr); \
        }                                                                            \
    } while (0)

/* Like CHECK for two integers, printing both. */
#define CHECK_EQ(expected, actual)                                                            \
    do {                                                                                      \
        long long e_ = (long long)(expected), a_ = (long long)(actual);                       \
        if (e_ == a_) {                                                                       \
            passed++;                                                                         \
        } else {                                                                              \
            failed++;                                                                         \
            fprintf(stderr, "%s:%d: CHECK failed: %s == %s (%lld vs %lld)\n", __FILE__, __LINE__, \
                    #expected, #actual, e_, a_);                                              \
        }                                                                                     \
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
    CHECK(key_eq(a, key_of("__global__ void k() {}", "sm_90")));
    CHECK(!key_eq(a, key_of("__global__ void k() {} ", "sm_90")));
    CHECK(!key_eq(a, key_of("__global__ void k() {}", "sm_80")));
    /* Parts are length-prefixed: "ab"+"c" is not "a"+"bc". */
    KCacheHasher h1, h2;
    kcache_hash_init(&h1);
    kcache_hash_str(&h1, "ab");
    kcache_hash_str(&h1, "c");
    kcache_hash_init(&h2);
    kcache_hash_str(&h2, "a");
    kcache_hash_str(&h2, "bc");
    KCacheKey k1 = kcache_hash_done(&h1), k2 = kcache_hash_done(&h2);
    CHECK(!key_eq(k1, k2));
    CHECK(k1.h[0] != k2.h[0] && k1.h[1] != k2.h[1]);
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
    CHECK(c.dir != NULL);
    char err[256] = "", *data;
    size_t len;
    KCacheKey k = key_of("round trip", "sm_90");
    CHECK_EQ(KC_MISS, kcache_load(&c, k, &data, &len));
    CHECK(data == NULL);
    const char ptx[] = "//\n// Generated by NVRTC\n.version 9.0\n.target sm_90\n";
    CHECK(kcache_store(&c, k, ptx, strlen(ptx), err, sizeof err));
    CHECK_EQ(KC_HIT, kcache_load(&c, k, &data, &len));
    CHECK_EQ(strlen(ptx), len);
    CHECK(data && memcmp(data, ptx, len) == 0 && data[len] == 0);
    free(data);

    /* binary payload with NUL bytes, and an empty one */
    unsigned char bin[300];
    for (int i = 0; i < 300; i++) bin[i] = (unsigned char)(i * 7);
    KCacheKey kb = key_of("binary", "sm_90"), ke = key_of("empty", "sm_90");
    CHECK(kcache_store(&c, kb, bin, sizeof bin, err, sizeof err));
    CHECK(kcache_store(&c, ke, "", 0, err, sizeof err));
    CHECK_EQ(KC_HIT, kcache_load(&c, kb, &data, &len));
    CHECK(len == sizeof bin && memcmp(data, bin, len) == 0);
    free(data);
    CHECK_EQ(KC_HIT, kcache_load(&c, ke, &data, &len));
    CHECK_EQ(0, len);
    free(data);

    /* overwrite with new contents */
    CHECK(kcache_store(&c, k, "v2", 2, err, sizeof err));
    CHECK_EQ(KC_HIT, kcache_load(&c, k, &data, &len));
    CHECK(len == 2 && memcmp(data, "v2", 2) == 0);
    free(data);
    CHECK_EQ(0, count_temps(dir));
    CHECK_EQ(4, c.stores);
    kcache_close(&c);
}

/* Damages the entry of `k` with `how`, then checks it is detected, removed,
 * and that a store rebuilds it. */
static void damaged(const char *dir, const char *how) {
    KCache c;
    kcache_open_dir(&c, dir);
    char err[256], *data;
    size_t len;
    KCacheKey k = key_of(how, "sm_90"), other = key_of("other", "sm_90");
    const char *payload = "0123456789abcdef0123456789abcdef";
    CHECK(kcache_store(&c, k, payload, strlen(payload), err, sizeof err));
    char *path = kcache_path(&c, k);
    long size = file_size(path);
    CHECK_EQ(40 + (long)strlen(payload), size);
    FILE *f;
    if (strcmp(how, "truncated") == 0) {
        CHECK(truncate(path, size - 1) == 0);
    } else if (strcmp(how, "header only") == 0) {
        CHECK(truncate(path, 40) == 0);
    } else if (strcmp(how, "short header") == 0) {
        CHECK(truncate(path, 10) == 0);
    } else if (strcmp(how, "empty") == 0) {
        CHECK(truncate(path, 0) == 0);
    } else if (strcmp(how, "overlong") == 0) {
        CHECK((f = fopen(path, "ab")) != NULL);
        fputs("junk", f);
        fclose(f);
    } else if (strcmp(how, "flipped payload") == 0 || strcmp(how, "flipped magic") == 0 ||
               strcmp(how, "flipped length") == 0) {
        long at = strcmp(how, "flipped payload") == 0 ? 50 : strcmp(how, "flipped magic") == 0 ? 0 : 24;
        CHECK((f = fopen(path, "r+b")) != NULL);
        fseek(f, at, SEEK_SET);
        int ch = fgetc(f);
        fseek(f, at, SEEK_SET);
        fputc(ch ^ 0x20, f);
        fclose(f);
    } else if (strcmp(how, "fifo") == 0) { /* must not block the reader */
        CHECK(unlink(path) == 0 && mkfifo(path, 0600) == 0);
    } else if (strcmp(how, "symlink") == 0) { /* to a whole, valid copy: still not followed */
        char *copy = xmalloc(strlen(path) + 8);
        sprintf(copy, "%s.copy", path);
        CHECK(rename(path, copy) == 0 && symlink(copy, path) == 0);
        free(copy);
    } else if (strcmp(how, "misplaced") == 0) {
        /* another key's (valid) entry under this key's name */
        CHECK(kcache_store(&c, other, payload, strlen(payload), err, sizeof err));
        char *opath = kcache_path(&c, other);
        CHECK(rename(opath, path) == 0);
        free(opath);
    }
    KCacheResult r = kcache_load(&c, k, &data, &len);
    if (r != KC_CORRUPT) fprintf(stderr, "damaged entry (%s) loaded as %s\n", how, kcache_result_name(r));
    CHECK_EQ(KC_CORRUPT, r);
    CHECK(data == NULL);
    CHECK_EQ(-1, file_size(path)); /* removed */
    CHECK_EQ(KC_MISS, kcache_load(&c, k, &data, &len));
    CHECK(kcache_store(&c, k, payload, strlen(payload), err, sizeof err));
    CHECK_EQ(KC_HIT, kcache_load(&c, k, &data, &len));
    CHECK(data && len == strlen(payload) && memcmp(data, payload, len) == 0);
    free(data);
    CHECK_EQ(1, c.corrupt);
    free(path);
    kcache_close(&c);
}

static void test_damaged(const char *dir) {
    const char *hows[] = {"truncated",       "header only",   "short header",   "empty",     "overlong",
                          "flipped payload", "flipped magic", "flipped length", "misplaced", "fifo",
                          "symlink"};
    for (size_t i = 0; i < sizeof hows / sizeof hows[0]; i++) damaged(dir, hows[i]);
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
        CHECK(pids[p] > 0);
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
    CHECK(len == SIZE && memcmp(data, payload, SIZE) == 0);
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
    CHECK(c.dir && strcmp(c.dir, want.data) == 0);
    CHECK(kcache_store(&c, k, "x", 1, err, sizeof err));
    CHECK_EQ(KC_HIT, kcache_load(&c, k, &data, &len));
    free(data);
    struct stat st;
    CHECK(stat(want.data, &st) == 0 && (st.st_mode & 0777) == 0700);
    kcache_close(&c);

    unsetenv("XDG_CACHE_HOME");
    setenv("HOME", home.data, 1);
    kcache_open(&c);
    want.len = 0;
    sb_printf(&want, "%s/.cache/kiln", home.data);
    CHECK(c.dir && strcmp(c.dir, want.data) == 0);
    kcache_close(&c);

    const char *offs[] = {"off", "OFF", "0"};
    for (int i = 0; i < 3; i++) {
        setenv("KILN_CACHE", offs[i], 1);
        kcache_open(&c);
        CHECK(c.dir == NULL);
        CHECK(strstr(c.why_off, "KILN_CACHE") != NULL);
        CHECK_EQ(KC_OFF, kcache_load(&c, k, &data, &len));
        CHECK(kcache_store(&c, k, "x", 1, err, sizeof err)); /* a no-op that succeeds */
        CHECK(kcache_path(&c, k) == NULL);
        kcache_close(&c);
    }
    /* KILN_CACHE=DIR names the folder; on means the default; a relative
     * path (which would follow the working directory) turns it off */
    StrBuf named = {0};
    sb_printf(&named, "%s/named", dir);
    setenv("KILN_CACHE", named.data, 1);
    kcache_open(&c);
    CHECK(c.dir && strcmp(c.dir, named.data) == 0);
    kcache_close(&c);
    setenv("KILN_CACHE", "on", 1);
    kcache_open(&c);
    CHECK(c.dir && strcmp(c.dir, want.data) == 0);
    kcache_close(&c);
    setenv("KILN_CACHE", "relative/dir", 1);
    kcache_open(&c);
    CHECK(c.dir == NULL && strstr(c.why_off, "absolute") != NULL);
    kcache_close(&c);
    sb_free(&named);
    unsetenv("KILN_CACHE");

    /* a directory that cannot be made: the cache is off and says why */
    StrBuf file = {0};
    sb_printf(&file, "%s/plainfile", dir);
    FILE *f = fopen(file.data, "w");
    CHECK(f != NULL);
    if (f) fclose(f);
    sb_puts(&file, "/kiln");
    kcache_open_dir(&c, file.data);
    CHECK(c.dir == NULL);
    CHECK(strstr(c.why_off, "cannot create") != NULL);
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
    CHECK(kcache_store(&c, k, KCACHE_CPU_MAGIC "object", 14, err, sizeof err));
    CHECK(kcache_store(&c, other, "// ptx\n.version 8.0", 20, err, sizeof err));
    KCacheInfo info;
    CHECK(kcache_info(&c, &info, err, sizeof err));
    CHECK(info.entries >= 2);
    CHECK_EQ(1, info.kind_entries[KCK_CPU]);
    CHECK(info.kind_entries[KCK_PTX] >= 1);
    int64_t removed = 0, bytes = 0;
    CHECK(kcache_clear(&c, &removed, &bytes, err, sizeof err));
    CHECK(removed >= 2 && bytes > 0);
    CHECK(kcache_info(&c, &info, err, sizeof err));
    CHECK_EQ(0, info.entries);
    CHECK(file_size(junk.data) == 4);
    sb_free(&junk);
    kcache_close(&c);

    KCache off;
    kcache_open_dir(&off, NULL); /* off: empty, nothing to clear, no lock */
    CHECK(kcache_info(&off, &info, err, sizeof err) && info.entries == 0);
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
    CHECK(kcache_trim(&c, &removed, &bytes) && removed == 0); /* empty */
    enum { N = 10, PAYLOAD = 1000 };
    char payload[PAYLOAD];
    memset(payload, 'x', sizeof payload);
    KCacheKey keys[N];
    char name[32];
    for (int i = 0; i < N; i++) {
        snprintf(name, sizeof name, "trim %d", i);
        keys[i] = key_of(name, "sm_90");
        CHECK(kcache_store(&c, keys[i], payload, sizeof payload, err, sizeof err));
        /* mtimes a second apart, the first oldest */
        char *path = kcache_path(&c, keys[i]);
        struct timespec t[2] = {{1000000 + i, 0}, {1000000 + i, 0}};
        CHECK(utimensat(AT_FDCWD, path, t, 0) == 0);
        free(path);
    }
    int64_t entry = PAYLOAD + 40; /* the header */
    c.max_bytes = 0;              /* no limit */
    CHECK(kcache_trim(&c, &removed, &bytes) && removed == 0);
    c.max_bytes = N * entry;
    CHECK(kcache_trim(&c, &removed, &bytes) && removed == 0);
    /* entry 0 is used now: the newest */
    CHECK_EQ(KC_HIT, kcache_load(&c, keys[0], &data, &len));
    free(data);
    c.max_bytes = 6 * entry; /* over: down to 90 % of it, 5 entries */
    CHECK(kcache_trim(&c, &removed, &bytes));
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
        CHECK(c.limit_note[0] == 0);
        kcache_close(&c);
    }
    setenv("KILN_CACHE_MAX", "lots", 1);
    kcache_open_dir(&c, dir);
    CHECK(c.max_bytes == KCACHE_DEFAULT_MAX && strstr(c.limit_note, "not a size"));
    kcache_close(&c);
    unsetenv("KILN_CACHE_MAX");
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
    sb_printf(&sub, "%s/a/b", dir); /* created with its parents */
    test_round_trip(sub.data);
    test_damaged(sub.data);
    test_concurrent(sub.data);
    test_lock_info_clear(sub.data);
    test_trim(sub.data);
    test_environment(dir);
    sb_free(&sub);
    remove_tree(dir);
    printf("test_kcache: %d passed, %d failed\n", passed, failed);
    return failed ? 1 : 0;
}
