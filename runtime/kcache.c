/* kcache.c - the on-disk kernel cache: keys, atomic entries, checks on load
 * (format and guarantees in kcache.h). */
#include "runtime/kcache.h"
#include "runtime/outfile.h"

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
static const char MAGIC[8] = {'K', 'I', 'L', 'N', 'K', 'C', '0', '1'};

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

void kcache_hash_str(KCacheHasher *h, const char *s) { kcache_hash_part(h, s ? s : "", s ? strlen(s) : 0); }

KCacheKey kcache_hash_done(const KCacheHasher *h) {
    KCacheKey k = {{mix64(h->a), mix64(h->b)}};
    return k;
}

void kcache_key_hex(KCacheKey k, char out[33]) {
    snprintf(out, 33, "%016llx%016llx", (unsigned long long)k.h[0], (unsigned long long)k.h[1]);
}

static uint64_t checksum(const void *data, size_t len) { return fnv1a(FNV_OFFSET, data, len); }

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

void kcache_open_dir(KCache *c, const char *dir) {
    memset(c, 0, sizeof *c);
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

static void put_u64(unsigned char *p, uint64_t v) {
    for (int k = 0; k < 8; k++) p[k] = (unsigned char)(v >> (8 * k));
}

static uint64_t get_u64(const unsigned char *p) {
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

KCacheResult kcache_load(KCache *c, KCacheKey key, char **data, size_t *len) {
    *data = NULL;
    *len = 0;
    if (!c->dir) return KC_OFF;
    char *path = kcache_path(c, key);
    /* Only a regular file is an entry: a symlink is not followed, and a FIFO
     * or device is neither waited on nor read (O_NONBLOCK, then fstat). */
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0 && errno == ENOENT) {
        free(path);
        c->misses++;
        return KC_MISS;
    }
    KCacheResult res = KC_CORRUPT;
    unsigned char hdr[HEADER_BYTES];
    struct stat st;
    char *buf = NULL;
    if (fd < 0 || fstat(fd, &st) != 0 || !S_ISREG(st.st_mode) || st.st_size < HEADER_BYTES ||
        !read_all(fd, hdr, HEADER_BYTES))
        goto done;
    uint64_t n = get_u64(hdr + 24);
    if (memcmp(hdr, MAGIC, 8) != 0 || get_u64(hdr + 8) != key.h[0] || get_u64(hdr + 16) != key.h[1] ||
        n != (uint64_t)st.st_size - HEADER_BYTES)
        goto done;
    buf = malloc((size_t)n + 1);
    if (!buf) goto done;
    if (!read_all(fd, buf, (size_t)n) || checksum(buf, (size_t)n) != get_u64(hdr + 32)) goto done;
    buf[n] = 0;
    *data = buf, *len = (size_t)n;
    buf = NULL;
    res = KC_HIT;
done:
    if (fd >= 0) close(fd);
    free(buf);
    if (res == KC_CORRUPT) {
        /* Remove it so the rebuilt entry replaces it (a concurrent writer's
         * good entry removed here is merely rebuilt once more). */
        unlink(path);
        c->corrupt++;
    } else {
        c->hits++;
    }
    free(path);
    return res;
}

bool kcache_store(KCache *c, KCacheKey key, const void *data, size_t len, char *err, size_t errlen) {
    if (!c->dir) return true;
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
    unsigned char hdr[HEADER_BYTES];
    memcpy(hdr, MAGIC, 8);
    put_u64(hdr + 8, key.h[0]);
    put_u64(hdr + 16, key.h[1]);
    put_u64(hdr + 24, len);
    put_u64(hdr + 32, checksum(data, len));
    bool written = write_fully(fd, hdr, HEADER_BYTES) && write_fully(fd, data, len);
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
done:
    sb_free(&tmp);
    free(path);
    return ok;
}
