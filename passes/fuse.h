/* fuse.h - the fusion scheduler (passes/fuse.c): turns a concrete graph into
 * a kernel program (ir/kernel.h), policy in docs/fusion.md.  The
 * executor (runtime/exec.c) calls it, with the same options for every
 * device. */
#ifndef KILN_FUSE_H
#define KILN_FUSE_H

#include "ir/kernel.h"

typedef struct {
    bool fuse;    /* false: one kernel per graph node (for -O0 and tests) */
    bool remarks; /* print fusion remarks to stderr */
} FuseOptions;

/* Returns NULL with a message in err. */
KProgram *fuse_graph(Arena *arena, const IRGraph *g, const FuseOptions *opt, char *err, size_t errlen);

#endif
