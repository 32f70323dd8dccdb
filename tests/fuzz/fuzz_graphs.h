/* fuzz_graphs.h - what the fuzz targets that build graphs share (fuzz_parser,
 * fuzz_compile): sizes for the symbolic dimensions the seeds use, and whether
 * a graph is small enough for the stages a target runs after building it.
 * Included by one translation unit each. */
#ifndef KILN_TESTS_FUZZ_GRAPHS_H
#define KILN_TESTS_FUZZ_GRAPHS_H

#include "ir/ir.h"

static const DimBinding fuzz_binds[] = {{"B", 2}, {"T", 3}, {"N", 4}, {"M", 2}, {"C", 3},
                                        {"H", 5}, {"W", 5}, {"D", 2}, {"K", 3}};
enum { FUZZ_NBINDS = (int)(sizeof fuzz_binds / sizeof fuzz_binds[0]) };

/* At most max_nodes nodes, none with a dimension or element count above
 * max_elements. */
static inline bool fuzz_graph_fits(const IRGraph *g, int max_nodes, int64_t max_elements) {
    if (g->nodes.len > max_nodes) return false;
    for (int i = 0; i < g->nodes.len; i++) {
        const Node *n = ir_node(g, i);
        int64_t numel = 1;
        for (int k = 0; k < n->rank; k++) {
            if (n->shape[k] > max_elements) return false;
            numel *= n->shape[k];
            if (numel > max_elements) return false;
        }
    }
    return true;
}

#endif
