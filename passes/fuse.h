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
    /* Whether the device runs convolution `consumer` reading its input
     * zero-padded in place and `producer` (the only writer of that input)
     * storing it row by row, so that the input is better kept padded in
     * the arena (pad_conv_inputs in fuse.c; the cpu's taps, codegen/llvm.c
     * llvm_conv_keeps_padded).  NULL: never. */
    bool (*keeps_padded)(const KProgram *p, const Kernel *producer, const Kernel *consumer);
} FuseOptions;

/* Returns NULL with a message in err. */
KProgram *fuse_graph(Arena *arena, const IRGraph *g, const FuseOptions *opt, char *err, size_t errlen);

#endif
