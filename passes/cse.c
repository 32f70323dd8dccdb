/* cse.c - common subexpression elimination.
 *
 * Contract: requires a verified graph; produces one in which no two nodes
 * have the same op, dtype, shape, inputs and attributes (ints, value, flag):
 * later copies map to the first.  Commutative elementwise ops (add, mul,
 * maximum, minimum, eq, ne, and, or) match with their two inputs swapped.
 * Parameters are never merged.  Exact: equal nodes compute equal values
 * (every op is deterministic).  Keeps the first copy's Loc. */
#include "passes/pass.h"

#include <stdlib.h>
#include <string.h>

static bool commutative(Op op) {
    return op == OP_ADD || op == OP_MUL || op == OP_MAXIMUM || op == OP_MINIMUM || op == OP_EQ || op == OP_NE ||
           op == OP_AND || op == OP_OR;
}

static uint64_t mix(uint64_t h, uint64_t x) {
    h ^= x + 0x9e3779b97f4a7c15ull + (h << 6) + (h >> 2);
    return h * 0xff51afd7ed558ccdull;
}

/* Inputs in a canonical order: sorted for commutative ops. */
static void canonical_inputs(const Node *n, int *in) {
    for (int k = 0; k < n->nin; k++) in[k] = n->in[k];
    if (commutative(n->op) && n->nin == 2 && in[0] > in[1]) {
        int t = in[0];
        in[0] = in[1];
        in[1] = t;
    }
}

static uint64_t node_hash(const Node *n) {
    uint64_t h = mix((uint64_t)n->op, (uint64_t)n->dtype);
    h = mix(h, (uint64_t)n->rank);
    for (int k = 0; k < n->rank; k++) h = mix(h, (uint64_t)n->shape[k]);
    int in[3];
    if (n->nin <= 3) {
        canonical_inputs(n, in);
        for (int k = 0; k < n->nin; k++) h = mix(h, (uint64_t)in[k]);
    } else {
        for (int k = 0; k < n->nin; k++) h = mix(h, (uint64_t)n->in[k]);
    }
    for (int k = 0; k < n->nints; k++) h = mix(h, (uint64_t)n->ints[k]);
    uint64_t bits;
    memcpy(&bits, &n->value, sizeof bits);
    h = mix(h, bits);
    h = mix(h, (uint64_t)n->ival);
    return mix(h, (uint64_t)n->flag);
}

static bool node_equal(const Node *a, const Node *b) {
    if (a->op != b->op || a->dtype != b->dtype || a->nin != b->nin || a->nints != b->nints || a->flag != b->flag ||
        !same_shape_dims(a->rank, a->shape, b->rank, b->shape))
        return false;
    if (memcmp(&a->value, &b->value, sizeof a->value) != 0) return false; /* bitwise: -0 != 0, NaN == NaN */
    if (a->ival != b->ival) return false;                                 /* ints beyond 2^53 */
    if (a->nints && memcmp(a->ints, b->ints, sizeof(int64_t) * (size_t)a->nints) != 0) return false;
    if (a->nin <= 3) {
        int ia[3], ib[3];
        canonical_inputs(a, ia);
        canonical_inputs(b, ib);
        return memcmp(ia, ib, sizeof(int) * (size_t)a->nin) == 0;
    }
    return memcmp(a->in, b->in, sizeof(int) * (size_t)a->nin) == 0;
}

/* Open addressing over new node ids; the table doubles at half full. */
typedef struct {
    int *slots; /* -1: empty */
    size_t cap, used;
} Table;

static void table_put(Table *t, const IRGraph *g, int id);

static void table_grow(Table *t, const IRGraph *g) {
    Table bigger = {xmalloc(sizeof(int) * t->cap * 2), t->cap * 2, 0};
    for (size_t i = 0; i < bigger.cap; i++) bigger.slots[i] = -1;
    for (size_t i = 0; i < t->cap; i++)
        if (t->slots[i] >= 0) table_put(&bigger, g, t->slots[i]);
    free(t->slots);
    *t = bigger;
}

static void table_put(Table *t, const IRGraph *g, int id) {
    if (2 * (t->used + 1) > t->cap) table_grow(t, g);
    size_t i = node_hash(ir_node(g, id)) & (t->cap - 1);
    while (t->slots[i] >= 0) i = (i + 1) & (t->cap - 1);
    t->slots[i] = id;
    t->used++;
}

/* An existing new node equal to `probe` (not yet in the graph), or -1. */
static int table_find(const Table *t, const IRGraph *g, const Node *probe) {
    size_t i = node_hash(probe) & (t->cap - 1);
    for (; t->slots[i] >= 0; i = (i + 1) & (t->cap - 1))
        if (node_equal(ir_node(g, t->slots[i]), probe)) return t->slots[i];
    return -1;
}

IRGraph *pass_cse(Arena *arena, const IRGraph *g, PassCtx *ctx) {
    Rewriter rw;
    rw_init(&rw, arena, g);
    Table t = {xmalloc(sizeof(int) * 64), 64, 0};
    for (size_t i = 0; i < t.cap; i++) t.slots[i] = -1;
    for (int id = 0; id < g->nodes.len; id++) {
        const Node *n = ir_node(g, id);
        if (n->op == OP_PARAM) {
            rw_copy(&rw, id);
            continue;
        }
        /* the node as it would be in the new graph: inputs mapped */
        Node probe = *n;
        probe.in = xmalloc(sizeof(int) * ((size_t)n->nin + 1));
        for (int k = 0; k < n->nin; k++) probe.in[k] = rw.map[n->in[k]];
        int same = table_find(&t, rw.g, &probe);
        free(probe.in);
        if (same >= 0) {
            rw.map[id] = same;
            pass_remark(ctx, n, "is the same as %%%d", same);
            continue;
        }
        table_put(&t, rw.g, rw_copy(&rw, id));
    }
    free(t.slots);
    return rw_finish(&rw);
}
