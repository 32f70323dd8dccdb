/* verify.c - the IR's invariants, checked between passes in tests:
 * inputs precede their users, arities match the op table, shapes are
 * non-negative where concrete, results and params point at real nodes. */
#include "ir/ir.h"

bool ir_verify(const IRGraph *g, char *err, size_t errlen) {
    for (int i = 0; i < g->nodes.len; i++) {
        const Node *n = ir_node(g, i);
        if ((unsigned)n->op >= OP_COUNT) {
            snprintf(err, errlen, "%%%d: invalid op %d", i, (int)n->op);
            return false;
        }
        int arity = op_info[n->op].arity;
        if (arity >= 0 && n->nin != arity && !(n->op == OP_CONV2D)) {
            snprintf(err, errlen, "%%%d (%s): %d inputs, the op takes %d", i, op_info[n->op].name, n->nin,
                     arity);
            return false;
        }
        for (int k = 0; k < n->nin; k++) {
            if (n->in[k] < 0 || n->in[k] >= i) {
                snprintf(err, errlen, "%%%d (%s): input %d is %%%d, not an earlier node", i,
                         op_info[n->op].name, k, n->in[k]);
                return false;
            }
        }
        for (int k = 0; k < n->rank; k++) {
            if (DIM_IS_SYM(n->shape[k]) && DIM_SYM_INDEX(n->shape[k]) >= g->syms.len) {
                snprintf(err, errlen, "%%%d: dimension %d names an unknown symbol", i, k);
                return false;
            }
        }
        if (n->rank < 0 || (n->op == OP_CONST && n->rank != 0)) {
            snprintf(err, errlen, "%%%d: bad rank %d", i, n->rank);
            return false;
        }
    }
    for (int i = 0; i < g->results.len; i++) {
        if (g->results.data[i] < 0 || g->results.data[i] >= g->nodes.len) {
            snprintf(err, errlen, "result %d is not a node", i);
            return false;
        }
    }
    for (int i = 0; i < g->params.len; i++) {
        int p = g->params.data[i];
        if (p < 0 || p >= g->nodes.len || ir_node(g, p)->op != OP_PARAM) {
            snprintf(err, errlen, "param %d is not a param node", i);
            return false;
        }
    }
    return true;
}
