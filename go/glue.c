/* glue.c - the C side of the Go package (contract in glue.h). */
#include "glue.h"

#include <stdlib.h>
#include <string.h>

/* Defined in Go (kiln.go): pins the next slot, or runs when none is left. */
extern int goKilnPinNext(uintptr_t handle);

KgoCall *kgo_call_new(KilnModel *m, int nparams, int nresults, int64_t total_rank) {
    KgoCall *c = calloc(1, sizeof *c);
    if (!c) return NULL;
    c->m = m;
    c->nparams = nparams;
    c->nresults = nresults;
    c->in = calloc((size_t)nparams + 1, sizeof *c->in);
    c->out = calloc((size_t)nresults + 1, sizeof *c->out);
    c->shapes = calloc((size_t)total_rank + 1, sizeof *c->shapes);
    if (!c->in || !c->out || !c->shapes) {
        kgo_call_free(c);
        return NULL;
    }
    return c;
}

void kgo_call_free(KgoCall *c) {
    if (!c) return;
    kiln_error_clear(&c->err);
    free(c->in);
    free(c->out);
    free(c->shapes);
    free(c);
}

void kgo_call_input(KgoCall *c, int i, int dtype, int rank, const int64_t *shape, int64_t at) {
    if (rank > 0) memcpy(c->shapes + at, shape, sizeof(int64_t) * (size_t)rank);
    c->in[i] = (KilnTensor){(KilnDType)dtype, rank, c->shapes + at, NULL};
}

int kgo_call_plan(KgoCall *c) { return (int)kiln_model_plan(c->m, c->in, c->out, &c->err); }

static KilnTensor *slot_tensor(KgoCall *c, int slot) {
    return slot < c->nparams ? &c->in[slot] : &c->out[slot - c->nparams];
}

int kgo_pin(KgoCall *c, int slot, void *data, uintptr_t handle) {
    KilnTensor *t = slot_tensor(c, slot);
    t->data = data;
    int st = goKilnPinNext(handle);
    t->data = NULL; /* the Go pointer leaves C memory before this call returns */
    return st;
}

int kgo_call_run(KgoCall *c) { return (int)kiln_model_run_into(c->m, c->in, c->out, &c->err); }

int kgo_run_direct(KgoCall *c, const int *slot, void *p0, void *p1, void *p2, void *p3, void *p4, void *p5,
                   void *p6, void *p7) {
    void *p[KGO_DIRECT] = {p0, p1, p2, p3, p4, p5, p6, p7};
    for (int i = 0; i < KGO_DIRECT; i++)
        if (slot[i] >= 0) slot_tensor(c, slot[i])->data = p[i];
    int st = kgo_call_run(c);
    for (int i = 0; i < KGO_DIRECT; i++) /* no Go pointer stays behind */
        if (slot[i] >= 0) slot_tensor(c, slot[i])->data = NULL;
    return st;
}

int kgo_bind(KilnModel *m, const char *name, int dtype, int rank, const int64_t *shape, void *data,
             KilnError *err) {
    KilnTensor t = {(KilnDType)dtype, rank, (int64_t *)shape, data};
    return (int)kiln_model_bind(m, name, &t, err);
}
