/* mapped.c - the files kiln maps read-only for their bytes (model files,
 * weights), each with its file's identity, so that bytes inside one can be
 * named by where they lie instead of read and hashed (base.h).
 *
 * The packed weights' cache keys a packed operand by the bytes it was
 * packed from; hashing those bytes read (and faulted in) the whole weight
 * file on every warm start, although the kernels then read only the packed
 * copy.  A file's identity -- device, inode, size, modification and change
 * times to the nanosecond -- names its bytes as well, on one condition
 * (git's "racily clean" rule): the file had not changed for two seconds
 * when it was mapped, so that a write in the same clock tick as the stat
 * cannot leave the times as they were.  A mapping of a file younger than
 * that is not registered, and its bytes are hashed as before.  The change
 * time cannot be set back by a user (touch -d sets it to now), so a file
 * rewritten in place always gets a new identity. */
#include "base/base.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Two seconds: older than any file system's timestamp granularity that
 * matters here (ext4 and xfs: nanoseconds; FAT: two seconds). */
enum { SETTLED_NS = 2000000000 };

typedef struct MappedFile MappedFile;
struct MappedFile {
    const unsigned char *base;
    size_t len;
    uint64_t id[5]; /* device, inode, size, mtime ns, ctime ns */
    MappedFile *next;
};

static struct {
    pthread_mutex_t mu;
    MappedFile *list;
} mapped = {PTHREAD_MUTEX_INITIALIZER, NULL};

static int64_t ns_of(struct timespec t) { return (int64_t)t.tv_sec * 1000000000 + t.tv_nsec; }

void mapped_file_register(const void *base, size_t len, const struct stat *st) {
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    int64_t changed = ns_of(st->st_mtim) > ns_of(st->st_ctim) ? ns_of(st->st_mtim) : ns_of(st->st_ctim);
    if (!base || len == 0 || ns_of(now) - changed < SETTLED_NS) return;
    MappedFile *m = xcalloc(1, sizeof *m);
    m->base = base, m->len = len;
    m->id[0] = (uint64_t)st->st_dev, m->id[1] = (uint64_t)st->st_ino, m->id[2] = (uint64_t)st->st_size;
    m->id[3] = (uint64_t)ns_of(st->st_mtim), m->id[4] = (uint64_t)ns_of(st->st_ctim);
    pthread_mutex_lock(&mapped.mu);
    m->next = mapped.list, mapped.list = m;
    pthread_mutex_unlock(&mapped.mu);
}

void mapped_file_unregister(const void *base) {
    pthread_mutex_lock(&mapped.mu);
    for (MappedFile **p = &mapped.list; *p; p = &(*p)->next)
        if ((*p)->base == base) {
            MappedFile *m = *p;
            *p = m->next;
            free(m);
            break;
        }
    pthread_mutex_unlock(&mapped.mu);
}

bool mapped_file_place(const void *p, size_t len, uint64_t out[MAPPED_PLACE_WORDS]) {
    const unsigned char *a = p;
    bool found = false;
    pthread_mutex_lock(&mapped.mu);
    for (const MappedFile *m = mapped.list; m && !found; m = m->next)
        if (a >= m->base && (size_t)(a - m->base) <= m->len && len <= m->len - (size_t)(a - m->base)) {
            memcpy(out, m->id, sizeof m->id);
            out[5] = (uint64_t)(a - m->base), out[6] = (uint64_t)len;
            found = true;
        }
    pthread_mutex_unlock(&mapped.mu);
    return found;
}
