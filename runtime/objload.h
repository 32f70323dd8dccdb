/* objload.h - kiln's own loader for the object files of CPU units
 * (runtime/objload.c).
 *
 * A warm start links some thirty small cached objects; through ORC each
 * costs a JITLink graph, a memory allocation and its protection changes,
 * and the JIT itself must be made first.  The objects kiln's code generator
 * writes for x86-64 are simple: a few sections, no constructors, no
 * thread-local data, and the large code model's position-independent
 * relocations (GOTPC64, GOTOFF64, GOT64).  This loader takes exactly such
 * objects: one anonymous mapping per object (code, then read-only data and
 * a global offset table, then writable data), relocations applied in place,
 * then the code made executable and the read-only part read-only.
 *
 * Anything else — another architecture or file kind, a relocation kind or
 * section it does not know, a symbol it cannot resolve — is refused with a
 * reason, never half loaded: the caller links that object through ORC as
 * before.  Every offset, index and size in the file is checked against the
 * file before use: a damaged object is refused, never a crash.
 *
 * Nothing is registered for unwinding (kiln is C: no exception crosses a
 * kernel) or for debuggers and profilers: KILN_PERF keeps ORC. */
#ifndef KILN_OBJLOAD_H
#define KILN_OBJLOAD_H

#include <stdbool.h>
#include <stddef.h>

typedef struct ObjImage ObjImage;

/* The address of undefined symbol `name`, or NULL: then the process's own
 * symbols are searched (dlsym), as ORC's process generator does. */
typedef void *(*ObjResolveFn)(void *ctx, const char *name);

/* Whether this build's loader takes objects at all (x86-64 ELF hosts). */
bool obj_loader_available(void);

/* Loads the relocatable object data[0..len) into memory of its own.  NULL
 * with a reason in err when it is not an object this loader takes.
 * `resolve` may be NULL. */
ObjImage *obj_load(const void *data, size_t len, ObjResolveFn resolve, void *ctx, char *err, size_t errlen);

/* Loads the n objects data[k][0..len[k]) into one mapping of their own
 * (every code part side by side, then every read-only part, then every
 * writable one), each resolved with ctx[k] (ctx may be NULL): one mapping
 * and two protection changes for all (a warm start's thirty objects loaded
 * one by one spent most of their time mapping, faulting and protecting
 * pages).  All or none: false, out[] NULL and a reason naming the object
 * when any is refused.  The images share the mapping; the last obj_free
 * unmaps it.  obj_load is this for one object. */
bool obj_load_all(int n, const void *const *data, const size_t *len, ObjResolveFn resolve, void *const *ctx,
                  ObjImage **out, char *err, size_t errlen);

/* The address of global symbol `name` the object defines, or NULL. */
void *obj_symbol(const ObjImage *im, const char *name);

/* Bytes of the image's own parts (code, data and its offset table). */
size_t obj_size(const ObjImage *im);

void obj_free(ObjImage *im);

#endif
