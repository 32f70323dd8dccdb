/* kcache.c - the on-disk kernel cache: keys, atomic entries, checks on load
 * (format and guarantees in kcache.h). */
#include "runtime/kcache.h"
#include "runtime/outfile.h"

#include <dirent.h>
#if defined(__x86_64__)
#include <immintrin.h>
#endif
#include <sys/mman.h>
#include <sys/stat.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#define FNV_OFFSET 0xcbf29ce484222325ull
#define FNV_PRIME 0x100000001b3ull
#define HEADER_BYTES 40
#define TRIM_EVERY   16 /* stores, on average, between looks at the folder's size */
static const char MAGIC[8] = {'K', 'I', 'L', 'N', 'K', 'C', '0', '2'};

/* ------------------------------------------------------------------ hashing */

static uint64_t fnv1a(uint64_t h, const unsigned char *p, size_t n) {
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * FNV_PRIME;
    return h;
}

static uint64_t mix64(uint64_t x) { /* splitmix64's finaliser */
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ull;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

/* A second hash, independent of FNV: 8 bytes at a time through mix64. */
static uint64_t mxhash(uint64_t h, const unsigned char *p, size_t n) {
    size_t i = 0;
    for (; i + 8 <= n; i += 8) {
        uint64_t w = 0;
        for (int k = 0; k < 8; k++) w |= (uint64_t)p[i + k] << (8 * k);
        h = mix64(h ^ w) + 0x9e3779b97f4a7c15ull;
    }
    uint64_t w = 0;
    for (int k = 0; i < n; i++, k++) w |= (uint64_t)p[i] << (8 * k);
    return mix64(h ^ w ^ ((uint64_t)(n & 7) << 56)) + 0x9e3779b97f4a7c15ull;
}

/* ------------------------------------------------------- bulk digests */

/* A digest of megabytes (weights, packed entries) at memory speed.  The data
 * is cut into BULK_BLOCK-byte blocks, each digested on its own (so that a
 * pool's threads can share them; the result does not depend on how many),
 * and the blocks' digests are then hashed in order with the length.
 * A block: 64-byte stripes into two sets of eight 64-bit lanes (one vector
 * register each with AVX-512), a and b.  Stripe s of every 16 (a segment,
 * 1 KiB) meets keys of its own, lane words w: a += lo32(w ^ ka) * hi32(w ^
 * ka) + rot32(w), b += lo32(w ^ kb) * hi32(w ^ kb) + w; after each segment
 * both are scrambled (xorshift, multiply) so the order of segments counts
 * as the per-stripe keys make the order of stripes count; a block's last
 * partial stripe is zero-padded (its length goes into the final mix).  Each
 * word is read once for both digests; the products are the CPU's 32x32-bit
 * multiplies, so one core's memory bandwidth is the limit (two hashes of
 * xxHash64's rounds, one per digest, read the weights twice and took 18 ms
 * per 100 MB here against 9).  Host byte order: what these key (packed
 * weights) is of this machine only. */
#define BULK_BLOCK   (1 << 18)
#define BULK_SEGMENT 16 /* stripes between scrambles */
/* uint64_t, not unsigned long long: clang refuses to widen a scalar of another
 * type than the lanes' into a vector operand (CC=clang, the fuzz build) */
#define BULK_P1      ((uint64_t)0x9e3779b185ebca87ull)
#define BULK_P2      ((uint64_t)0xc2b2ae3d27d4eb4full)
#define BULK_P32     ((uint64_t)0x9e3779b1u)
typedef uint64_t BulkLanes __attribute__((vector_size(64)));

typedef struct {
    uint64_t key[2][BULK_SEGMENT][8]; /* a's and b's keys, per stripe of a segment */
    uint64_t start[2][8];             /* a's and b's lanes at the start of block 0 */
} BulkKeys;

static void bulk_keys(uint64_t seed, BulkKeys *k) {
    uint64_t x = seed;
    for (int d = 0; d < 2; d++)
        for (int s = 0; s < BULK_SEGMENT; s++)
            for (int l = 0; l < 8; l++) k->key[d][s][l] = mix64(x += BULK_P1);
    for (int d = 0; d < 2; d++)
        for (int l = 0; l < 8; l++) k->start[d][l] = mix64(x += BULK_P2);
}

/* Block `index` (n bytes, n <= BULK_BLOCK) into out[2], written once for
 * every variant below: MUL32(x) is lo32(x) * hi32(x) in each 64-bit lane
 * (the same numbers on every CPU, however computed). */
#define BULK_BLOCK_BODY(MUL32)                                                                               \
    BulkLanes a, b, w, ka, kb;                                                                               \
    memcpy(&a, k->start[0], 64), memcpy(&b, k->start[1], 64);                                                \
    a += index * BULK_P1, b ^= index * BULK_P2;                                                              \
    size_t s = 0, full = n / 64;                                                                             \
    for (; s < full; s++) {                                                                                  \
        memcpy(&w, p + 64 * s, 64);                                                                          \
        memcpy(&ka, k->key[0][s % BULK_SEGMENT], 64), memcpy(&kb, k->key[1][s % BULK_SEGMENT], 64);          \
        a += MUL32(w ^ ka) + ((w << 32) | (w >> 32));                                                        \
        b += MUL32(w ^ kb) + w;                                                                              \
        if (s % BULK_SEGMENT == BULK_SEGMENT - 1) {                                                          \
            a = (a ^ (a >> 47)) * BULK_P32;                                                                  \
            b = (b ^ (b >> 43)) * BULK_P32;                                                                  \
        }                                                                                                    \
    }                                                                                                        \
    if (n % 64) { /* the partial stripe, zero-padded */                                                      \
        unsigned char last[64] = {0};                                                                        \
        memcpy(last, p + 64 * s, n % 64);                                                                    \
        memcpy(&w, last, 64);                                                                                \
        memcpy(&ka, k->key[0][s % BULK_SEGMENT], 64), memcpy(&kb, k->key[1][s % BULK_SEGMENT], 64);          \
        a += MUL32(w ^ ka) + ((w << 32) | (w >> 32));                                                        \
        b += MUL32(w ^ kb) + w;                                                                              \
    }                                                                                                        \
    uint64_t la[8], lb[8], ha = mix64(n ^ index), hb = mix64(~n ^ index);                                    \
    memcpy(la, &a, 64), memcpy(lb, &b, 64);                                                                  \
    for (int l = 0; l < 8; l++) ha = mix64(ha ^ la[l]) + BULK_P1, hb = mix64(hb ^ lb[l]) + BULK_P2;          \
    out[0] = ha, out[1] = hb

#define BULK_MUL32_GENERIC(x) (((x) & (uint64_t)0xffffffff) * ((x) >> 32))
static void bulk_block_generic(const BulkKeys *k, uint64_t index, const unsigned char *p, size_t n,
                               uint64_t out[2]) {
    BULK_BLOCK_BODY(BULK_MUL32_GENERIC);
}
#if defined(__x86_64__)
/* vpmuludq: GCC does not see that the generic form's 64-bit product is one */
#define BULK_MUL32_AVX512(x) ((BulkLanes)_mm512_mul_epu32((__m512i)(x), (__m512i)((x) >> 32)))
__attribute__((target("avx512f"))) static void
bulk_block_avx512(const BulkKeys *k, uint64_t index, const unsigned char *p, size_t n, uint64_t out[2]) {
    BULK_BLOCK_BODY(BULK_MUL32_AVX512);
}
#endif

static void bulk_block(const BulkKeys *k, uint64_t index, const unsigned char *p, size_t n, uint64_t out[2]) {
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f")) {
        bulk_block_avx512(k, index, p, n, out);
        return;
    }
#endif
    bulk_block_generic(k, index, p, n, out);
}

typedef struct {
    const BulkKeys *keys;
    const unsigned char *p;
    size_t n;
    uint64_t (*block)[2]; /* per block: its digest */
} BulkJob;

static void bulk_task(void *ctx, int i, int thread) {
    (void)thread;
    const BulkJob *j = ctx;
    size_t at = (size_t)i * BULK_BLOCK, len = j->n - at < BULK_BLOCK ? j->n - at : BULK_BLOCK;
    bulk_block(j->keys, (uint64_t)i, j->p + at, len, j->block[i]);
}

int kcache_bulk_variants(const void *data, size_t len, uint64_t out[][2]) {
    BulkKeys keys;
    bulk_keys(1, &keys);
    len = len < BULK_BLOCK ? len : BULK_BLOCK;
    int n = 0;
    bulk_block_generic(&keys, 3, data, len, out[n++]);
#if defined(__x86_64__)
    if (__builtin_cpu_supports("avx512f")) bulk_block_avx512(&keys, 3, data, len, out[n++]);
#endif
    return n;
}

/* data's two 64-bit digests under seed; the blocks on tp's threads when
 * there are several (tp NULL: on this one). */
static void bulk_digest(uint64_t seed, const void *data, size_t n, ThreadPool *tp, uint64_t out[2]) {
    BulkKeys keys;
    bulk_keys(seed, &keys);
    size_t nblocks = n ? (n + BULK_BLOCK - 1) / BULK_BLOCK : 1;
    uint64_t one[1][2];
    BulkJob j = {&keys, data, n, nblocks > 1 ? xmalloc(nblocks * sizeof *j.block) : one};
    if (nblocks > 1 && tp_size(tp) > 1)
        tp_run(tp, bulk_task, &j, (int)nblocks);
    else
        for (size_t i = 0; i < nblocks; i++) bulk_task(&j, (int)i, 0);
    out[0] = mix64(seed ^ (uint64_t)n), out[1] = mix64(~seed ^ (uint64_t)n);
    for (size_t i = 0; i < nblocks; i++) {
        out[0] = mix64(out[0] ^ j.block[i][0]) + BULK_P1;
        out[1] = mix64(out[1] ^ j.block[i][1]) + BULK_P2;
    }
    if (j.block != one) free(j.block);
}

void kcache_hash_init(KCacheHasher *h) {
    h->a = FNV_OFFSET;
    h->b = 0x6b696c6e6b636831ull; /* "kilnkch1" */
}

void kcache_hash_part(KCacheHasher *h, const void *data, size_t len) {
    unsigned char n[8];
    for (int k = 0; k < 8; k++) n[k] = (unsigned char)((uint64_t)len >> (8 * k));
    h->a = fnv1a(fnv1a(h->a, n, 8), data, len);
    h->b = mxhash(mxhash(h->b, n, 8), data, len);
}

void kcache_hash_bulk(KCacheHasher *h, const void *data, size_t len, ThreadPool *tp) {
    uint64_t d[2];
    bulk_digest(h->a ^ h->b, data, len, tp, d);
    kcache_hash_part(h, d, sizeof d);
}

void kcache_hash_str(KCacheHasher *h, const char *s) { kcache_hash_part(h, s ? s : "", s ? strlen(s) : 0); }

KCacheKey kcache_hash_done(const KCacheHasher *h) {
    KCacheKey k = {{mix64(h->a), mix64(h->b)}};
    return k;
}

void kcache_key_hex(KCacheKey k, char out[33]) {
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)k.h[0], (unsigned long long)k.h[1]);
}

/* An entry's checksum: the bulk digest, eight bytes a step (KILNKC01's
 * FNV-1a, a byte per multiply, took 0.23 ms of a warm MobileNetV2 start). */
static uint64_t checksum(const void *data, size_t len) {
    uint64_t d[2];
    bulk_digest(FNV_OFFSET, data, len, NULL, d);
    return d[0] ^ d[1];
}

/* ---------------------------------------------------------------- directory */

/* mkdir -p with mode 0700 for the parts it creates. */
static bool make_dirs(const char *path, char *why, size_t n) {
    char *p = xstrdup(path);
    bool ok = true;
    for (char *s = p + 1;; s++) {
        if (*s == '/' || *s == 0) {
            char c = *s;
            *s = 0;
            if (mkdir(p, 0700) != 0 && errno != EEXIST) {
                snprintf(why, n, "cannot create %s: %s", p, strerror(errno));
                ok = false;
                break;
            }
            *s = c;
            if (!c) break;
        }
    }
    struct stat st;
    if (ok && (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))) {
        snprintf(why, n, "%s is not a directory", path);
        ok = false;
    }
    free(p);
    return ok;
}

/* KILN_CACHE_MAX: a size (bytes, or with K, M, G: KiB, MiB, GiB). */
static void read_limit(KCache *c) {
    c->max_bytes = KCACHE_DEFAULT_MAX;
    const char *env = getenv("KILN_CACHE_MAX");
    if (!env || !env[0]) return;
    char *end;
    errno = 0;
    double v = strtod(env, &end);
    double unit = *end == 'K' || *end == 'k'   ? 1024.0
                  : *end == 'M' || *end == 'm' ? 1048576.0
                  : *end == 'G' || *end == 'g' ? 1073741824.0
                                               : 1.0;
    if (unit > 1) end++;
    if (errno || end == env || *end || !(v >= 0) || v * unit > 9e18) {
        snprintf(c->limit_note, sizeof c->limit_note,
                 "KILN_CACHE_MAX=%.40s is not a size: the default applies", env);
        return;
    }
    c->max_bytes = (int64_t)(v * unit);
}

void kcache_open_dir(KCache *c, const char *dir) {
    memset(c, 0, sizeof *c);
    read_limit(c);
    if (!dir) {
        snprintf(c->why_off, sizeof c->why_off, "off");
        return;
    }
    if (make_dirs(dir, c->why_off, sizeof c->why_off)) c->dir = xstrdup(dir);
}

void kcache_open(KCache *c) {
    const char *env = getenv("KILN_CACHE");
    if (env && (strcasecmp(env, "off") == 0 || strcmp(env, "0") == 0 || strcasecmp(env, "no") == 0 ||
                strcasecmp(env, "false") == 0)) {
        kcache_open_dir(c, NULL);
        snprintf(c->why_off, sizeof c->why_off, "KILN_CACHE=%s", env);
        return;
    }
    if (env && env[0] == '/') { /* KILN_CACHE=DIR */
        kcache_open_dir(c, env);
        return;
    }
    if (env && env[0] && strcasecmp(env, "on") != 0 && strcmp(env, "1") != 0 && strcasecmp(env, "yes") != 0 &&
        strcasecmp(env, "true") != 0) { /* a relative folder would change with the working directory */
        kcache_open_dir(c, NULL);
        snprintf(c->why_off, sizeof c->why_off, "KILN_CACHE=%.100s is neither off nor an absolute folder",
                 env);
        return;
    }
    StrBuf dir = {0};
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && xdg[0] == '/') sb_printf(&dir, "%s/kiln", xdg);
    else if (home && home[0] == '/') sb_printf(&dir, "%s/.cache/kiln", home);
    if (!dir.data) {
        kcache_open_dir(c, NULL);
        snprintf(c->why_off, sizeof c->why_off, "neither XDG_CACHE_HOME nor HOME is set");
        return;
    }
    kcache_open_dir(c, dir.data);
    sb_free(&dir);
}

void kcache_close(KCache *c) {
    free(c->dir);
    c->dir = NULL;
}

char *kcache_path(const KCache *c, KCacheKey key) {
    if (!c->dir) return NULL;
    char hex[33];
    kcache_key_hex(key, hex);
    StrBuf sb = {0};
    sb_printf(&sb, "%s/%s.kc", c->dir, hex);
    return sb.data;
}

const char *kcache_result_name(KCacheResult r) {
    static const char *const names[] = {"hit", "miss", "corrupt entry (rebuilt)", "off"};
    return names[r];
}

/* ------------------------------------------------------------ entries */

void kcache_put_u64(unsigned char *p, uint64_t v) {
    for (int k = 0; k < 8; k++) p[k] = (unsigned char)(v >> (8 * k));
}

uint64_t kcache_get_u64(const unsigned char *p) {
    uint64_t v = 0;
    for (int k = 0; k < 8; k++) v |= (uint64_t)p[k] << (8 * k);
    return v;
}

static bool read_all(int fd, void *buf, size_t n) {
    unsigned char *p = buf;
    while (n > 0) {
        ssize_t r = read(fd, p, n);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return false;
        p += r, n -= (size_t)r;
    }
    return true;
}

/* Opens key's entry and reads its header (head bytes, into hdr): KC_MISS
 * (counted; nothing to close) when there is none, KC_HIT when the header
 * says `magic`, the key and a payload of *n bytes that the file holds
 * exactly, else KC_CORRUPT.  Only a regular file is an entry: a symlink is
 * not followed, and a FIFO or device is neither waited on nor read
 * (O_NONBLOCK, then fstat).  Unless a miss, *fd (maybe -1) and *path (heap)
 * go to close_entry. */
static KCacheResult open_entry(KCache *c, KCacheKey key, const char *magic, size_t head, unsigned char *hdr,
                               char **path, int *fd, uint64_t *n, struct stat *st) {
    *path = kcache_path(c, key);
    *fd = open(*path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (*fd < 0 && errno == ENOENT) {
        free(*path);
        c->misses++;
        return KC_MISS;
    }
    if (*fd < 0 || fstat(*fd, st) != 0 || !S_ISREG(st->st_mode) || st->st_size < (off_t)head ||
        !read_all(*fd, hdr, head))
        return KC_CORRUPT;
    *n = kcache_get_u64(hdr + 24);
    if (memcmp(hdr, magic, 8) != 0 || kcache_get_u64(hdr + 8) != key.h[0] ||
        kcache_get_u64(hdr + 16) != key.h[1] || *n != (uint64_t)st->st_size - head)
        return KC_CORRUPT;
    return KC_HIT;
}

/* Marks an entry used now (its mtime: kcache_trim removes the least
 * recently used first) unless it was within the last minute: trimming
 * needs no finer order, and a warm start loading some fifty entries made
 * as many inode writes. */
static void mark_used(int fd, const struct stat *st) {
    if (time(NULL) - st->st_mtime >= 60) futimens(fd, NULL);
}

/* Closes what open_entry opened and counts the result; a damaged entry is
 * removed so the rebuilt one replaces it (a concurrent writer's good entry
 * removed here is merely rebuilt once more). */
static KCacheResult close_entry(KCache *c, int fd, char *path, KCacheResult res) {
    if (fd >= 0) close(fd);
    if (res == KC_CORRUPT) {
        unlink(path);
        c->corrupt++;
    } else {
        c->hits++;
    }
    free(path);
    return res;
}

KCacheResult kcache_load(KCache *c, KCacheKey key, char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    if (!c->dir) return KC_OFF;
    char *path, *buf = NULL;
    int fd;
    uint64_t n;
    unsigned char hdr[HEADER_BYTES];
    struct stat st;
    KCacheResult res = open_entry(c, key, MAGIC, HEADER_BYTES, hdr, &path, &fd, &n, &st);
    if (res != KC_HIT) return res == KC_MISS ? res : close_entry(c, fd, path, res);
    res = KC_CORRUPT;
    buf = malloc((size_t)n + 1);
    if (buf && read_all(fd, buf, (size_t)n) && checksum(buf, (size_t)n) == kcache_get_u64(hdr + 32)) {
        buf[n] = 0;
        *data = buf, *len = (size_t)n;
        buf = NULL;
        res = KC_HIT;
        mark_used(fd, &st);
    }
    free(buf);
    return close_entry(c, fd, path, res);
}

/* Writes header + payload to a temporary file beside the entry and renames
 * it into place (kcache.h: a reader sees no entry or a whole one). */
static bool store_entry(KCache *c, KCacheKey key, const unsigned char *hdr, size_t hdr_len, const void *data,
                        size_t len, char *err, size_t errlen) {
    char hex[33];
    kcache_key_hex(key, hex);
    StrBuf tmp = {0};
    sb_printf(&tmp, "%s/.%s.tmp.XXXXXX", c->dir, hex);
    char *path = kcache_path(c, key);
    bool ok = false;
    int fd = mkstemp(tmp.data);
    if (fd < 0) {
        snprintf(err, errlen, "kernel cache: cannot create a file in %s: %s", c->dir, strerror(errno));
        goto done;
    }
    bool written = write_fully(fd, hdr, hdr_len) && write_fully(fd, data, len);
    int saved = errno;
    if (close(fd) != 0 && written) written = false, saved = errno;
    if (!written) {
        snprintf(err, errlen, "kernel cache: cannot write %s: %s", tmp.data, strerror(saved));
        unlink(tmp.data);
        goto done;
    }
    /* mkstemp made it 0600; entries are as private as the directory. */
    if (rename(tmp.data, path) != 0) {
        snprintf(err, errlen, "kernel cache: cannot rename %s to %s: %s", tmp.data, path, strerror(errno));
        unlink(tmp.data);
        goto done;
    }
    c->stores++;
    ok = true;
    /* about one store in TRIM_EVERY looks at the folder's size (a scan of
     * it costs a stat per entry) */
    if (key.h[1] % TRIM_EVERY == 0) kcache_trim(c, NULL, NULL);
done:
    sb_free(&tmp);
    free(path);
    return ok;
}

bool kcache_store(KCache *c, KCacheKey key, const void *data, size_t len, char *err, size_t errlen) {
    if (!c->dir) return true;
    unsigned char hdr[HEADER_BYTES];
    memcpy(hdr, MAGIC, 8);
    kcache_put_u64(hdr + 8, key.h[0]);
    kcache_put_u64(hdr + 16, key.h[1]);
    kcache_put_u64(hdr + 24, len);
    kcache_put_u64(hdr + 32, checksum(data, len));
    return store_entry(c, key, hdr, HEADER_BYTES, data, len, err, errlen);
}

/* ------------------------------------------------------- mapped entries */

/* The header of an entry used in place: magic, key, length, the payload's
 * two bulk digests, zeros up to 64 bytes, so that the payload of the
 * page-aligned mapping is 64-byte aligned. */
#define MAPPED_HEADER_BYTES 64
static const char MAPPED_MAGIC[8] = {'K', 'I', 'L', 'N', 'K', 'M', '0', '2'};
#define MAPPED_SEED 0x6b696c6e6d617032ull /* "kilnmap2" */

bool kcache_store_mapped(KCache *c, KCacheKey key, const void *data, size_t len, char *err, size_t errlen) {
    if (!c->dir) return true;
    unsigned char hdr[MAPPED_HEADER_BYTES] = {0};
    uint64_t sum[2];
    bulk_digest(MAPPED_SEED, data, len, NULL, sum);
    memcpy(hdr, MAPPED_MAGIC, 8);
    kcache_put_u64(hdr + 8, key.h[0]);
    kcache_put_u64(hdr + 16, key.h[1]);
    kcache_put_u64(hdr + 24, len);
    kcache_put_u64(hdr + 32, sum[0]);
    kcache_put_u64(hdr + 40, sum[1]);
    return store_entry(c, key, hdr, MAPPED_HEADER_BYTES, data, len, err, errlen);
}

KCacheResult kcache_map(KCache *c, KCacheKey key, ThreadPool *tp, KCacheMap *out) {
    memset(out, 0, sizeof *out);
    if (!c->dir) return KC_OFF;
    char *path;
    int fd;
    uint64_t n;
    unsigned char hdr[MAPPED_HEADER_BYTES];
    struct stat st;
    KCacheResult res = open_entry(c, key, MAPPED_MAGIC, MAPPED_HEADER_BYTES, hdr, &path, &fd, &n, &st);
    if (res != KC_HIT) return res == KC_MISS ? res : close_entry(c, fd, path, res);
    /* the size was checked against the file just opened; entries are only
     * ever replaced by a rename, never rewritten, so the pages stay */
    size_t map_len = MAPPED_HEADER_BYTES + (size_t)n;
    /* not MAP_POPULATE: the digest's threads fault the pages in side by
     * side (ResNet-50's 95 MB: populating took 3.0 ms on one thread, the
     * faults add 1 ms to the digest on two) */
    void *map = mmap(NULL, map_len, PROT_READ, MAP_PRIVATE, fd, 0);
    const unsigned char *payload =
        map == MAP_FAILED ? NULL : (const unsigned char *)map + MAPPED_HEADER_BYTES;
    uint64_t sum[2];
    if (payload) bulk_digest(MAPPED_SEED, payload, (size_t)n, tp, sum);
    if (payload && sum[0] == kcache_get_u64(hdr + 32) && sum[1] == kcache_get_u64(hdr + 40)) {
        *out = (KCacheMap){payload, (size_t)n, map, map_len};
        mark_used(fd, &st);
        return close_entry(c, fd, path, KC_HIT);
    }
    if (payload) munmap(map, map_len);
    return close_entry(c, fd, path, KC_CORRUPT);
}

void kcache_unmap(KCacheMap *m) {
    if (m->map) munmap(m->map, m->map_len);
    memset(m, 0, sizeof *m);
}

/* ------------------------------------------------------------------ locks */

KCacheLock kcache_lock(const KCache *c, KCacheKey key, bool wait, int *handle) {
    *handle = -1;
    if (!c->dir) return KL_NONE;
    StrBuf path = {0};
    sb_printf(&path, "%s/lock", c->dir);
    int fd = open(path.data, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    sb_free(&path);
    if (fd < 0) return KL_NONE;
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_len = 1};
    fl.l_start = (off_t)(key.h[0] >> 24); /* 40 bits: far below OFF_MAX */
    int r;
    while ((r = fcntl(fd, wait ? F_OFD_SETLKW : F_OFD_SETLK, &fl)) != 0 && errno == EINTR) {
    }
    if (r == 0) {
        *handle = fd;
        return KL_TAKEN;
    }
    bool busy = errno == EAGAIN || errno == EACCES;
    close(fd);
    return busy ? KL_BUSY : KL_NONE;
}

void kcache_unlock(int handle) {
    if (handle >= 0) close(handle); /* closing the description drops its lock */
}

/* ------------------------------------------------------- info and clear */

const char *kcache_kind_name(KCacheKind k) {
    static const char *const names[] = {"CPU object code",         "CPU program code", "PTX",
                                        "cuda-emu shared objects", "packed weights",   "other"};
    return names[k];
}

/* Entries are "<32 hex>.kc"; writers' temporary files ".<32 hex>.tmp.XXXXXX". */
static bool is_entry_name(const char *n) {
    size_t len = strlen(n);
    return len == 35 && strspn(n, "0123456789abcdef") == 32 && strcmp(n + 32, ".kc") == 0;
}
static bool is_temp_name(const char *n) {
    return n[0] == '.' && strspn(n + 1, "0123456789abcdef") == 32 && strncmp(n + 33, ".tmp.", 5) == 0;
}

static KCacheKind kind_of(int dirfd, const char *name) {
    int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    unsigned char head[HEADER_BYTES + 8] = {0};
    bool ok = fd >= 0 && read_all(fd, head, sizeof head);
    if (fd >= 0) close(fd);
    const unsigned char *p = head + HEADER_BYTES;
    if (!ok) return KCK_OTHER;
    if (memcmp(head, MAPPED_MAGIC, 8) == 0) return KCK_PACKED;
    if (memcmp(p, KCACHE_CPU_MAGIC, 8) == 0) return KCK_CPU;
    if (memcmp(p, KCACHE_CPU_PROGRAM_MAGIC, 8) == 0) return KCK_CPU_PROGRAM;
    if (memcmp(p, "\177ELF", 4) == 0) return KCK_SHARED_OBJECT;
    if (memcmp(p, "//", 2) == 0 || memcmp(p, ".version", 8) == 0) return KCK_PTX;
    return KCK_OTHER;
}

/* Calls fn for every entry and temporary file of the folder. */
static bool each_file(const KCache *c,
                      void (*fn)(void *ctx, int dirfd, const char *name, bool temp, const struct stat *st),
                      void *ctx, char *err, size_t errlen) {
    if (!c->dir) return true;
    DIR *d = opendir(c->dir);
    if (!d) {
        snprintf(err, errlen, "cannot read the cache folder %s: %s", c->dir, strerror(errno));
        return false;
    }
    struct dirent *e;
    while ((e = readdir(d))) {
        bool temp = is_temp_name(e->d_name);
        if (!temp && !is_entry_name(e->d_name)) continue;
        struct stat st;
        if (fstatat(dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) continue;
        if (!S_ISREG(st.st_mode)) st.st_size = 0;
        fn(ctx, dirfd(d), e->d_name, temp, &st);
    }
    closedir(d);
    return true;
}

/* ------------------------------------------------------------- trimming */

typedef struct {
    char name[40];
    int64_t bytes;
    struct timespec used; /* mtime: written, or loaded (kcache_load) */
} Aged;

typedef struct {
    VEC(Aged) entries;
    int64_t total;
} AgedList;

static void list_entry(void *ctx, int dirfd, const char *name, bool temp, const struct stat *st) {
    AgedList *l = ctx;
    (void)dirfd;
    if (temp) return;
    int64_t bytes = (int64_t)st->st_size;
    Aged a = {.bytes = bytes, .used = st->st_mtim};
    snprintf(a.name, sizeof a.name, "%s", name);
    VEC_PUSH(l->entries, a);
    l->total += bytes;
}

static int older_first(const void *x, const void *y) {
    const Aged *a = x, *b = y;
    if (a->used.tv_sec != b->used.tv_sec) return a->used.tv_sec < b->used.tv_sec ? -1 : 1;
    return a->used.tv_nsec < b->used.tv_nsec ? -1 : a->used.tv_nsec > b->used.tv_nsec;
}

bool kcache_trim(const KCache *c, int64_t *removed, int64_t *bytes) {
    if (removed) *removed = 0;
    if (bytes) *bytes = 0;
    if (!c->dir || c->max_bytes <= 0) return true;
    AgedList l = {0};
    char err[256];
    bool ok = each_file(c, list_entry, &l, err, sizeof err);
    if (ok && l.total > c->max_bytes) {
        /* the least recently used go, down to 90 % of the limit, so that
         * the next few stores do not scan again */
        qsort(l.entries.data, (size_t)l.entries.len, sizeof(Aged), older_first);
        int dirfd = open(c->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        for (int i = 0; dirfd >= 0 && i < l.entries.len && l.total > c->max_bytes / 10 * 9; i++) {
            /* one a process is reading stays readable to it; one it is
             * about to open is a miss, rebuilt */
            if (unlinkat(dirfd, l.entries.data[i].name, 0) != 0) continue;
            l.total -= l.entries.data[i].bytes;
            if (removed) (*removed)++;
            if (bytes) *bytes += l.entries.data[i].bytes;
        }
        if (dirfd >= 0) close(dirfd);
    }
    VEC_FREE(l.entries);
    return ok;
}

static void count_file(void *ctx, int dirfd, const char *name, bool temp, const struct stat *st) {
    KCacheInfo *info = ctx;
    int64_t bytes = (int64_t)st->st_size;
    if (temp) {
        info->temps++;
        return;
    }
    KCacheKind k = kind_of(dirfd, name);
    info->entries++, info->bytes += bytes;
    info->kind_entries[k]++, info->kind_bytes[k] += bytes;
}

bool kcache_info(const KCache *c, KCacheInfo *info, char *err, size_t errlen) {
    memset(info, 0, sizeof *info);
    return each_file(c, count_file, info, err, errlen);
}

typedef struct {
    int64_t removed, bytes;
} ClearCount;

static void remove_file(void *ctx, int dirfd, const char *name, bool temp, const struct stat *st) {
    ClearCount *cc = ctx;
    int64_t bytes = (int64_t)st->st_size;
    (void)temp;
    if (unlinkat(dirfd, name, 0) == 0) cc->removed++, cc->bytes += bytes;
}

bool kcache_clear(const KCache *c, int64_t *removed, int64_t *bytes, char *err, size_t errlen) {
    ClearCount cc = {0, 0};
    bool ok = each_file(c, remove_file, &cc, err, errlen);
    if (ok && c->dir) {
        StrBuf lock = {0};
        sb_printf(&lock, "%s/lock", c->dir);
        unlink(lock.data);
        sb_free(&lock);
    }
    *removed = cc.removed, *bytes = cc.bytes;
    return ok;
}
