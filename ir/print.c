/* print.c - the IR as text (`emit --emit=ir`, `--print-after`) and as a
 * Graphviz graph (`emit --emit=dot`).  One line per node:
 *     %5 = add %3, %4 : f32[B, 256]    # mlp.kiln:3:21
 * The text is stable so tests can keep golden copies of it. */
#include "ir/ir.h"

#include <stdlib.h>

/* conv2d, the pools and cumsum, whose ints are several attributes: each by
 * name, the defaults of the Version 1 flags left out. */
static bool print_window_attrs(const Node *n, FILE *out) {
    const int64_t *v = n->ints;
    if (n->op == OP_CONV2D && n->nints == 9) {
        fprintf(out, " {stride=[%lld, %lld], pad=[%lld, %lld, %lld, %lld], dilation=[%lld, %lld], groups=%lld}",
                (long long)v[0], (long long)v[1], (long long)v[2], (long long)v[7], (long long)v[3], (long long)v[8],
                (long long)v[4], (long long)v[5], (long long)v[6]);
        return true;
    }
    if ((n->op == OP_MAXPOOL2D || n->op == OP_AVGPOOL2D) && n->nints == 10) {
        fprintf(out, " {kernel=[%lld, %lld], stride=[%lld, %lld], pad=[%lld, %lld, %lld, %lld]%s%s}", (long long)v[0],
                (long long)v[1], (long long)v[2], (long long)v[3], (long long)v[4], (long long)v[6], (long long)v[5],
                (long long)v[7], v[8] ? ", ceil_mode" : "", v[9] ? "" : ", count_include_pad=false");
        return true;
    }
    if (n->op == OP_CUMSUM && n->nints == 3) {
        fprintf(out, " {axis=%lld%s%s}", (long long)v[0], v[1] ? ", exclusive" : "", v[2] ? ", reverse" : "");
        return true;
    }
    return false;
}

/* A value attribute: exact for integer dtypes, %.9g for floats. */
static void print_value(const Node *n, FILE *out) {
    if (dtype_is_intlike(n->dtype))
        fprintf(out, "%lld", (long long)ir_node_scalar(n).i);
    else
        fprintf(out, "%.9g", n->value);
}

static void print_attrs(const Node *n, FILE *out) {
    if (print_window_attrs(n, out)) return;
    switch (op_info[n->op].kind) {
    case OK_REDUCE:
        fputs(" {axes=[", out);
        for (int i = 0; i < n->nints; i++) fprintf(out, "%s%lld", i ? ", " : "", (long long)n->ints[i]);
        fprintf(out, "]%s}", n->flag ? ", keepdims" : "");
        return;
    case OK_SOURCE:
        if (n->op == OP_CONST) fputs(" {value=", out), print_value(n, out), fputs("}", out);
        if (n->op == OP_PARAM && n->flag) fputs(" {constant}", out);
        return;
    case OK_CREATE:
        if (n->op == OP_FULL) fputs(" {value=", out), print_value(n, out), fputs("}", out);
        return;
    default: break;
    }
    if (n->op == OP_GELU && n->flag) fputs(" {approximate}", out);
    if (n->nints == 0 && n->op != OP_PAD && n->op != OP_LAYERNORM && n->op != OP_RMSNORM) return;
    const char *label = "ints";
    switch (n->op) {
    case OP_TRANSPOSE: label = "perm"; break;
    case OP_SLICE: label = "start,step"; break;
    case OP_PAD: label = "lo,hi"; break;
    case OP_CONCAT: case OP_SOFTMAX: case OP_LOG_SOFTMAX: case OP_TAKE:
    case OP_LAYERNORM: case OP_RMSNORM: label = "axis"; break;
    case OP_CONV2D: label = "stride,pad,dilation,groups"; break;
    case OP_MAXPOOL2D: case OP_AVGPOOL2D: label = "kernel,stride,pad"; break;
    default: break;
    }
    fprintf(out, " {%s=[", label);
    for (int i = 0; i < n->nints; i++) fprintf(out, "%s%lld", i ? ", " : "", (long long)n->ints[i]);
    fputs("]", out);
    if (n->op == OP_PAD) fputs(", value=", out), print_value(n, out);
    if (n->op == OP_LAYERNORM || n->op == OP_RMSNORM) fprintf(out, ", eps=%.9g", n->value);
    fputs("}", out);
}

static void print_type(const IRGraph *g, const Node *n, FILE *out) {
    char *t = ir_type_str(g, n->dtype, n->rank, n->shape);
    fputs(t, out);
    free(t);
}

void ir_print(const IRGraph *g, FILE *out) {
    fprintf(out, "graph %s(", g->name);
    for (int i = 0; i < g->params.len; i++) {
        const Node *p = ir_node(g, g->params.data[i]);
        fprintf(out, "%s%s: ", i ? ", " : "", p->name);
        print_type(g, p, out);
    }
    fputs(")\n", out);
    for (int i = 0; i < g->nodes.len; i++) {
        const Node *n = ir_node(g, i);
        fprintf(out, "  %%%d = %s", i, op_info[n->op].name);
        if (n->op == OP_PARAM) fprintf(out, " %s", n->name);
        for (int k = 0; k < n->nin; k++) fprintf(out, "%s%%%d", k ? ", " : " ", n->in[k]);
        print_attrs(n, out);
        fputs(" : ", out);
        print_type(g, n, out);
        if (n->loc.line > 0) fprintf(out, "    # %d:%d", n->loc.line, n->loc.col);
        fputc('\n', out);
    }
    fputs("  return", out);
    for (int i = 0; i < g->results.len; i++) fprintf(out, "%s%%%d", i ? ", " : " ", g->results.data[i]);
    fputc('\n', out);
}

void ir_dot_escaped(const char *s, FILE *out) {
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') fputc('\\', out);
        if ((unsigned char)*s >= 0x20) fputc(*s, out);
    }
}

void ir_print_dot(const IRGraph *g, const char *title, FILE *out) {
    fputs("digraph \"", out);
    ir_dot_escaped(g->name, out);
    fputs("\" {\n  rankdir=TB;\n  node [shape=box, fontname=\"monospace\"];\n", out);
    if (title) {
        fputs("  label=\"", out);
        ir_dot_escaped(title, out);
        fputs("\"; labelloc=t;\n", out);
    }
    for (int i = 0; i < g->nodes.len; i++) {
        const Node *n = ir_node(g, i);
        char *t = ir_type_str(g, n->dtype, n->rank, n->shape);
        fprintf(out, "  n%d [label=\"%%%d %s%s", i, i, op_info[n->op].name, n->op == OP_PARAM ? " " : "");
        if (n->op == OP_PARAM) ir_dot_escaped(n->name, out);
        fprintf(out, "\\n%s\"%s];\n", t,
                n->op == OP_PARAM ? ", style=\"rounded,filled\", fillcolor=\"#dbeafe\"" : "");
        free(t);
        for (int k = 0; k < n->nin; k++) fprintf(out, "  n%d -> n%d;\n", n->in[k], i);
    }
    for (int i = 0; i < g->results.len; i++)
        fprintf(
            out,
            "  r%d [label=\"result %d\", shape=box, style=\"rounded,filled,bold\", fillcolor=\"#dcfce7\"];\n"
            "  n%d -> r%d;\n",
            i, i, g->results.data[i], i);
    fputs("}\n", out);
}
