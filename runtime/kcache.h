/* kcache.h - the on-disk kernel cache (PTX and anything else compiled from
 * text that is expensive to rebuild).
 *
 * Where: KILN_CACHE=DIR (an absolute path) names the folder; else
 * $XDG_CACHE_HOME/kiln, else ~/.cache/kiln (created 0700); KILN_CACHE=off
 * (or 0, no, false) disables it, and so does any other value but on (1,
 * yes, true: the default folder), saying why.
 * Size: the entries are kept under KILN_CACHE_MAX (a size: 500M, 2G; 0: no
 * limit; default 1 GiB), the least recently used going first (kcache_trim).
 * Key: 128 bits, two independent 64-bit hashes (FNV-1a, and a multiply-xorshift
 * hash) over length-prefixed parts: the source, the compiler's options, its
 * version and the target architecture -- whatever the caller says makes the
 * output differ.  File: <dir>/<32 hex digits>.kc.
 * Entry: a 40-byte header -- magic "KILNKC02", the key (2 x u64), the payload
 * length (u64) and a checksum of the payload (u64: the bulk digest's two
 * words xored; KILNKC01 entries, FNV-1a, are rebuilt), little-endian --
 * then the payload.  Entries are written to a temporary file in the same
 * directory and renamed into place, so a reader sees either no entry or a
 * whole one, and several kiln processes may fill the cache at once (the
 * last rename wins; every writer writes the same bytes).  A truncated or
 * corrupt entry fails the checks on load, is removed and reported as such, and
 * the caller rebuilds and stores it again.  Only a regular file is read as an
 * entry: a symlink, FIFO or device in its place counts as corrupt and is
 * removed, never followed, waited on or read.  Every cached artefact of kiln
 * (PTX, the cuda-emu shared objects, CPU object code, packed weights) goes
 * through here.
 * Building an entry may be announced with kcache_lock, so that a process
 * started at the same time waits for it rather than building it too.
 *
 * A KCache is a small owned handle (kcache_open / kcache_close); it holds no
 * file open between calls. */
#ifndef KILN_KCACHE_H
#define KILN_KCACHE_H

#include "ir/ir.h"
#include "runtime/threadpool.h"

typedef struct {
    uint64_t h[2];
} KCacheKey;

typedef struct {
    uint64_t a, b;
} KCacheHasher;

void kcache_hash_init(KCacheHasher *h);
/* Adds one part (its length first, so parts cannot run into each other). */
void kcache_hash_part(KCacheHasher *h, const void *data, size_t len);
void kcache_hash_str(KCacheHasher *h, const char *s);
/* Adds a large part (megabytes of weights) through a digest that runs at
 * memory speed (two 64-bit digests in one pass over 256 KiB blocks; host byte
 * order), its blocks spread over tp's threads (NULL: this thread; the
 * result is the same). */
void kcache_hash_bulk(KCacheHasher *h, const void *data, size_t len, ThreadPool *tp);
KCacheKey kcache_hash_done(const KCacheHasher *h);
/* Tests: the digest of data's first block (at most 256 KiB) by each variant
 * of the bulk digest this CPU runs (the portable one first, then e.g. the
 * AVX-512 one), into out[0..n); returns n (at most KCACHE_BULK_VARIANTS).
 * They must agree. */
#define KCACHE_BULK_VARIANTS 2
int kcache_bulk_variants(const void *data, size_t len, uint64_t out[][2]);
/* 32 hex digits and a NUL. */
void kcache_key_hex(KCacheKey k, char out[33]);

/* The size the folder's entries are kept under by default (KILN_CACHE_MAX). */
#define KCACHE_DEFAULT_MAX ((int64_t)1 << 30)

typedef struct {
    char *dir; /* NULL when the cache is off */
    char why_off[160];
    int64_t max_bytes;   /* KILN_CACHE_MAX, else KCACHE_DEFAULT_MAX; 0: no limit */
    char limit_note[96]; /* why KILN_CACHE_MAX was not taken ("" when it was, or unset) */
    /* counters, for -v and the tests */
    int hits, misses, corrupt, stores;
} KCache;

/* Opens the cache named by the environment.  Never fails: when the
 * directory cannot be created the cache is off and why_off says why. */
void kcache_open(KCache *c);
/* Opens a cache in `dir` (tests); dir NULL: off. */
void kcache_open_dir(KCache *c, const char *dir);
void kcache_close(KCache *c);

typedef enum { KC_HIT, KC_MISS, KC_CORRUPT, KC_OFF } KCacheResult;
const char *kcache_result_name(KCacheResult r);

/* On KC_HIT, *data (heap, NUL-terminated after *len bytes) holds the payload.
 * KC_CORRUPT: the entry failed its checks and was removed. */
KCacheResult kcache_load(KCache *c, KCacheKey key, char **data, size_t *len);
/* Stores atomically.  False with a message (the caller may go on: a cache
 * that cannot be written only costs time). */
bool kcache_store(KCache *c, KCacheKey key, const void *data, size_t len, char *err, size_t errlen);
/* Entries used in place, read-only (the CPU's packed weights: megabytes
 * that a copy would cost more than a mapping): a 64-byte header (magic
 * "KILNKM02", the key, the payload length, the payload's two 64-bit bulk
 * digests as kcache_hash_bulk's) and the payload, which starts 64-byte
 * aligned in the mapping.  Stored atomically as other entries; kcache_map
 * maps it (MAP_POPULATE) and checks magic, key, length and digests, the
 * digests on tp's threads (NULL: this one) -- a failure is KC_CORRUPT:
 * removed, for the caller to rebuild.  A mapped entry stays valid while the folder
 * changes (a removed or replaced entry keeps its pages) but, as any mapped
 * file, must not be truncated in place meanwhile: kiln never does. */
typedef struct {
    const void *data; /* the payload */
    size_t len;
    void *map; /* what kcache_unmap releases */
    size_t map_len;
} KCacheMap;
bool kcache_store_mapped(KCache *c, KCacheKey key, const void *data, size_t len, char *err, size_t errlen);
KCacheResult kcache_map(KCache *c, KCacheKey key, ThreadPool *tp, KCacheMap *out);
void kcache_unmap(KCacheMap *m);

/* The path of the entry for `key` (heap); NULL when off. */
char *kcache_path(const KCache *c, KCacheKey key);

/* An advisory lock on key's entry, held by whoever builds it: an open file
 * description lock (fcntl F_OFD_SETLK) on one byte of <dir>/lock chosen by
 * the key, so it is per call, not per process, and the kernel drops it when
 * its holder exits or dies.  Two keys may share a byte: then one waits for
 * the other for nothing, never wrongly.  KL_TAKEN: *handle holds it
 * (kcache_unlock it); KL_BUSY: another holder has it (only when !wait);
 * KL_NONE: no lock is possible (cache off, the lock file cannot be opened)
 * and the caller simply builds. */
typedef enum { KL_TAKEN, KL_BUSY, KL_NONE } KCacheLock;
KCacheLock kcache_lock(const KCache *c, KCacheKey key, bool wait, int *handle);
void kcache_unlock(int handle);

/* What the folder holds (`kiln cache info`), by what the payloads are. */
typedef enum {
    KCK_CPU,
    KCK_CPU_PROGRAM,
    KCK_PTX,
    KCK_SHARED_OBJECT,
    KCK_PACKED,
    KCK_OTHER,
    KCK_COUNT
} KCacheKind;
const char *kcache_kind_name(KCacheKind k);
typedef struct {
    int64_t entries, bytes;
    int64_t kind_entries[KCK_COUNT], kind_bytes[KCK_COUNT];
    int64_t temps; /* temporary files of writers (running, or killed before renaming) */
} KCacheInfo;
/* False with a message when the folder cannot be read; an off cache is
 * empty. */
bool kcache_info(const KCache *c, KCacheInfo *info, char *err, size_t errlen);
/* Removes every entry, temporary file and the lock file (`kiln cache
 * clear`); *removed files, *bytes of them.  Other files are left alone.
 * A process compiling meanwhile only stores its entries again. */
bool kcache_clear(const KCache *c, int64_t *removed, int64_t *bytes, char *err, size_t errlen);
/* Little-endian u64 fields, as entry headers (and payloads that have
 * headers of their own) store them. */
void kcache_put_u64(unsigned char *p, uint64_t v);
uint64_t kcache_get_u64(const unsigned char *p);

/* Keeps the folder's entries within c->max_bytes: when they are over it,
 * the least recently used (written, or loaded: kcache_load and kcache_map
 * mark an entry they return, unless it was marked within the last minute)
 * are removed down to 90 % of it.  kcache_store calls it about
 * every TRIM_EVERY (16) stores.  *removed files, *bytes
 * of them (either may be NULL).  False when the folder cannot be read. */
bool kcache_trim(const KCache *c, int64_t *removed, int64_t *bytes);

/* The payload magic of CPU object entries (one unit's) and of CPU program
 * entries (every unit of one program; runtime/cpu_code.c), which
 * kcache_info recognises. */
#define KCACHE_CPU_MAGIC "KILNCPU1"
#define KCACHE_CPU_PROGRAM_MAGIC "KILNCPR1"

#endif
