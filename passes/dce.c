/* dce.c - dead code elimination.
 *
 * Contract: requires a verified graph; produces one holding only the nodes
 * that some result depends on, plus every parameter (the graph's interface
 * does not change even when a parameter is unused).  Order and Locs kept. */
#include "passes/pass.h"

#include <stdlib.h>

IRGraph *pass_dce(Arena *arena, const IRGraph *g, PassCtx *ctx) {
    int n = g->nodes.len;
    bool *live = xcalloc((size_t)n + 1, 1);
    for (int i = 0; i < g->results.len; i++) live[g->results.data[i]] = true;
    for (int i = 0; i < g->params.len; i++) live[g->params.data[i]] = true;
    for (int id = n - 1; id >= 0; id--) {
        if (!live[id]) continue;
        const Node *nd = ir_node(g, id);
        for (int k = 0; k < nd->nin; k++) live[nd->in[k]] = true;
    }
    Rewriter rw;
    rw_init(&rw, arena, g);
    int dropped = 0;
    for (int id = 0; id < n; id++) {
        if (live[id]) rw_copy(&rw, id);
        else dropped++;
    }
    free(live);
    if (dropped) {
        pass_remark(ctx, NULL, "removed %d dead node%s", dropped, dropped == 1 ? "" : "s");
        ctx->changes += dropped - 1;
    }
    return rw_finish(&rw);
}
