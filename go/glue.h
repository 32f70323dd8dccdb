/* glue.h - the C side of the Go package's calls (glue.c), over the public
 * model API of include/kiln.h.
 *
 * cgo's rules (Go 1.19): a Go pointer passed to C must point at memory that
 * holds no Go pointers, and C may keep it only until the call returns.  A
 * run needs many Go slices at once (every input's data, where it lies, and
 * every result's Go-allocated memory), so they are handed over one per
 * nested call: kgo_pin(call, slot, p, h) puts p in the call's table (C
 * memory), calls back into Go (goKilnPinNext) for the next slot, and takes p
 * out again before it returns; the innermost callback runs the model while
 * every pointer is still inside its own call.  No Go pointer stays in C
 * memory after the call that passed it returns.  Most runs hand over a few
 * slices only: up to KGO_DIRECT go as the arguments of one call
 * (kgo_run_direct), with no callback. */
#ifndef KILN_GO_GLUE_H
#define KILN_GO_GLUE_H

#include "kiln.h"

#include <stdint.h>

/* One run's C-side state: the inputs' and outputs' descriptions (C memory;
 * data pointers set only while pinned) and the error. */
typedef struct {
    KilnModel *m;
    int nparams, nresults;
    KilnTensor *in, *out;
    int64_t *shapes; /* the inputs' shapes, copied */
    KilnError err;
} KgoCall;

KgoCall *kgo_call_new(KilnModel *m, int nparams, int nresults, int64_t total_rank);
void kgo_call_free(KgoCall *c);
/* Input i's dtype and shape (shape: a Go pointer, copied to shapes[at...]). */
void kgo_call_input(KgoCall *c, int i, int dtype, int rank, const int64_t *shape, int64_t at);
/* The results' types for these inputs (kiln_model_plan): c->out. */
int kgo_call_plan(KgoCall *c);
/* Slot < nparams: input slot's data; else result slot - nparams's. */
int kgo_pin(KgoCall *c, int slot, void *data, uintptr_t handle);
/* The innermost step: kiln_model_run_into with every pointer pinned. */
int kgo_call_run(KgoCall *c);
/* A run whose slices number KGO_DIRECT at most, without callbacks: they
 * are the arguments of this one call (slot[i] < 0: unused). */
enum { KGO_DIRECT = 8 };
int kgo_run_direct(KgoCall *c, const int *slot, void *p0, void *p1, void *p2, void *p3, void *p4, void *p5,
                   void *p6, void *p7);

/* Bind with the tensor's parts as separate arguments (shape and data are Go
 * pointers, read during the call: kiln_model_bind copies the data). */
int kgo_bind(KilnModel *m, const char *name, int dtype, int rank, const int64_t *shape, void *data,
             KilnError *err);

#endif
