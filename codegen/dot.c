/* dot.c - a fused kernel program as Graphviz text (contract in dot.h).
 *
 * The picture, top to bottom in data-flow order:
 *  - each kernel is a cluster `cluster_kN`, labelled with its name, its kind
 *    and, when a bench run measured it, its median time and share of the run
 *    (the border thickens with the share);
 *  - inside, the graph nodes the kernel computes (Kernel.nodes).  To stay
 *    readable on models of hundreds of nodes, a linear chain -- each node the
 *    only in-kernel user of the one before -- is one box listing its ops in
 *    order ("matmul · add · gelu"), and a scalar constant is folded into the
 *    op that uses it ("mul 0.25"); the box's tooltip lists every node with
 *    its type and source line (quoting the line: the statement, or for an
 *    ONNX model the node, that made it);
 *  - a buffer written by one kernel and read by another is an edge between
 *    the boxes that write and read it, labelled with its size in bytes;
 *  - parameters are blue rounded boxes, results green bold ones; weights
 *    (constant parameters: bound from a weights file or an ONNX initializer)
 *    are grey-blue and dashed, so a model's inputs stand out among hundreds
 *    of weights; the parameters that feed only one kernel are one box for
 *    that kernel (a layer's weights and bias) -- an input never shares a box
 *    with weights -- the others one box each.
 * Nothing here depends on a backend: the same program gives the same text. */
#include "codegen/dot.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void fmt_bytes(StrBuf *sb, int64_t bytes) {
    static const char *const units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    double v = (double)bytes;
    int u = 0;
    while (v >= 1024 && u < 4) v /= 1024, u++;
    if (u == 0 || v == floor(v))
        sb_printf(sb, "%.0f %s", v, units[u]);
    else
        sb_printf(sb, v < 10 ? "%.2f %s" : v < 100 ? "%.1f %s" : "%.0f %s", v, units[u]);
}

void fmt_ms(StrBuf *sb, double ms) {
    if (ms < 1)
        sb_printf(sb, "%.3g us", ms * 1e3);
    else if (ms < 1000)
        sb_printf(sb, "%.3g ms", ms);
    else
        sb_printf(sb, "%.3g s", ms / 1e3);
}

/* One kernel as drawn: its nodes sorted by id, the box each belongs to (-1:
 * a constant folded into its user), and the buffers it reads and writes. */
typedef VEC(int) IntVec;

typedef struct {
    int *members;
    int nmembers;
    int *box;
    int nboxes;
    IntVec reads, writes;
} KernelView;

typedef struct {
    const KProgram *kp;
    const IRGraph *g;
    FILE *out;
    KernelView *views;
    int *param_box; /* per parameter: -1 its own box "pN", else the kernel whose box "qK" ("wK") holds it */
} Drawing;

static int cmp_int(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

static int member_index(const KernelView *v, int node) {
    for (int i = 0; i < v->nmembers; i++)
        if (v->members[i] == node) return i;
    return -1;
}

static bool is_folded_const(const Node *n) { return n->op == OP_CONST && n->rank == 0; }

static void add_unique(IntVec *v, int x) {
    for (int i = 0; i < v->len; i++)
        if (v->data[i] == x) return;
    VEC_PUSH(*v, x);
}

/* Reads and writes of a kernel, by buffer. */
static void kernel_buffers(const Kernel *k, KernelView *v) {
    for (int i = 0; i < k->insts.len; i++)
        if (k->insts.data[i].kind == KI_LOAD) add_unique(&v->reads, k->insts.data[i].buf);
    if (k->kind == KK_MATMUL && k->mm.a_buf >= 0) add_unique(&v->reads, k->mm.a_buf);
    if (k->kind == KK_MATMUL && k->mm.b_buf >= 0) add_unique(&v->reads, k->mm.b_buf);
    for (int s = 0; s < k->stages.len; s++)
        for (int j = 0; j < k->stages.data[s].stores.len; j++)
            add_unique(&v->writes, k->stages.data[s].stores.data[j].buf);
}

/* Sorts the kernel's nodes into boxes (see the top of the file). */
static void kernel_boxes(const IRGraph *g, const Kernel *k, KernelView *v) {
    int m = k->nodes.len;
    v->members = xcalloc((size_t)m + 1, sizeof(int));
    v->box = xcalloc((size_t)m + 1, sizeof(int));
    memcpy(v->members, k->nodes.data, sizeof(int) * (size_t)m);
    qsort(v->members, (size_t)m, sizeof(int), cmp_int);
    v->nmembers = m;
    /* in-kernel users of each member, and whether a constant has one */
    int *users = xcalloc((size_t)m + 1, sizeof(int));
    for (int i = 0; i < m; i++) {
        const Node *n = ir_node(g, v->members[i]);
        for (int a = 0; a < n->nin; a++) {
            int j = member_index(v, n->in[a]);
            if (j >= 0 && j != i) users[j]++;
        }
    }
    for (int i = 0; i < m; i++) {
        const Node *n = ir_node(g, v->members[i]);
        if (is_folded_const(n) && users[i] > 0) {
            v->box[i] = -1;
            continue;
        }
        int producer = -1, nproducers = 0;
        for (int a = 0; a < n->nin; a++) {
            int j = member_index(v, n->in[a]);
            if (j < 0 || j == i || v->box[j] < 0 || j == producer) continue;
            producer = j;
            nproducers++;
        }
        v->box[i] = nproducers == 1 && users[producer] == 1 ? v->box[producer] : v->nboxes++;
    }
    free(users);
}

static void view_free(KernelView *v) {
    free(v->members);
    free(v->box);
    VEC_FREE(v->reads);
    VEC_FREE(v->writes);
}

/* A label or tooltip built with "\n" (and "\l") line breaks in `text`:
 * user text in it must already be escaped (esc()). */
static void esc(StrBuf *sb, const char *s) {
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') sb_puts(sb, "\\");
        if ((unsigned char)*s >= 0x20) sb_printf(sb, "%c", *s);
    }
}

static void type_text(StrBuf *sb, const IRGraph *g, const Node *n) {
    char *t = ir_type_str(g, n->dtype, n->rank, n->shape);
    esc(sb, t);
    free(t);
}

static int64_t buf_bytes(const KBuf *b) { return b->numel * (int64_t)kiln_dtype_size(b->dtype); }

/* The box of kernel ki that holds graph node `node`, or -1. */
static int box_of_node(const KernelView *v, int node) {
    int i = member_index(v, node);
    return i >= 0 ? v->box[i] : -1;
}

/* The box of kernel ki that writes buffer b: the one holding b's node, else
 * the kernel's last box. */
static int writer_box(const Drawing *d, int ki, const KBuf *b) {
    const KernelView *v = &d->views[ki];
    int box = box_of_node(v, b->node);
    return box >= 0 ? box : v->nboxes > 0 ? v->nboxes - 1 : 0;
}

/* The box of kernel ki that reads buffer b: the first whose node takes b's
 * node as an input, else the kernel's first box. */
static int reader_box(const Drawing *d, int ki, const KBuf *b) {
    const KernelView *v = &d->views[ki];
    for (int i = 0; i < v->nmembers; i++) {
        const Node *n = ir_node(d->g, v->members[i]);
        for (int a = 0; a < n->nin; a++)
            if (n->in[a] == b->node && v->box[i] >= 0) return v->box[i];
    }
    return 0;
}

static bool writes_buf(const KernelView *v, int buf) {
    for (int i = 0; i < v->writes.len; i++)
        if (v->writes.data[i] == buf) return true;
    return false;
}

static const char *kind_fill(KernelKind k) {
    switch (k) {
    case KK_MATMUL: return "#fef3c7";
    case KK_CONV: return "#ffedd5";
    case KK_ROW: return "#e0f2fe";
    case KK_REDUCE: return "#ede9fe";
    case KK_POOL: return "#fce7f3";
    case KK_COPY: return "#f1f5f9";
    case KK_ELEMENTWISE: break;
    }
    return "#ecfccb";
}

/* One op of a box: its name, with a folded constant's value. */
static void op_text(StrBuf *sb, const Drawing *d, const KernelView *v, const Node *n) {
    sb_puts(sb, op_info[n->op].name);
    for (int a = 0; a < n->nin; a++) {
        int j = member_index(v, n->in[a]);
        if (j >= 0 && v->box[j] < 0) sb_printf(sb, " %.4g", ir_node(d->g, n->in[a])->value);
    }
}

enum { OPS_PER_LINE = 3, OPS_SHOWN = 9, LINE_SHOWN = 200 };

/* The text of the source line `loc` points into, trimmed, for a tooltip: the
 * statement of a kiln program, or the node of an ONNX model's listing. */
static void source_text(StrBuf *sb, Loc loc) {
    const char *p = loc.src ? loc.src->text : NULL;
    for (int l = 1; p && l < loc.line; l++)
        if ((p = strchr(p, '\n'))) p++;
    if (!p) return;
    p += strspn(p, " \t");
    int len = (int)strcspn(p, "\r\n"), cut = len;
    if (cut > LINE_SHOWN) /* cut a long line between UTF-8 characters */
        for (cut = LINE_SHOWN; cut > 0 && ((unsigned char)p[cut] & 0xC0) == 0x80;) cut--;
    char *line = xcalloc((size_t)cut + 1, 1);
    memcpy(line, p, (size_t)cut);
    sb_puts(sb, ": ");
    esc(sb, line);
    if (cut < len) sb_puts(sb, " …");
    free(line);
}

static void draw_box(const Drawing *d, int ki, int box) {
    const KernelView *v = &d->views[ki];
    StrBuf label = {0}, tip = {0};
    int nops = 0, first = -1, last = -1;
    Loc shown = {0}; /* the source line last quoted: quoted once for the nodes it makes */
    for (int i = 0; i < v->nmembers; i++) {
        if (v->box[i] != box) continue;
        const Node *n = ir_node(d->g, v->members[i]);
        if (first < 0) first = v->members[i];
        last = v->members[i];
        if (nops < OPS_SHOWN) {
            if (nops) sb_puts(&label, nops % OPS_PER_LINE ? " · " : " ·\\n");
            op_text(&label, d, v, n);
        }
        nops++;
        sb_printf(&tip, "%s%%%d = ", tip.len ? "\\n" : "", v->members[i]);
        op_text(&tip, d, v, n);
        sb_puts(&tip, " : ");
        type_text(&tip, d->g, n);
        if (n->loc.line > 0) {
            sb_printf(&tip, "  (line %d", n->loc.line);
            if (n->loc.line != shown.line || n->loc.src != shown.src) source_text(&tip, n->loc);
            sb_puts(&tip, ")");
            shown = n->loc;
        }
    }
    if (nops > OPS_SHOWN) sb_printf(&label, " … (%d ops)", nops);
    sb_puts(&label, "\\n");
    type_text(&label, d->g, ir_node(d->g, last));
    if (first == last)
        sb_printf(&label, "  %%%d", first);
    else
        sb_printf(&label, "  %%%d..%%%d", first, last);
    fprintf(d->out, "    k%dg%d [label=\"%s\", tooltip=\"%s\"];\n", ki, box, label.data, tip.data);
    sb_free(&label);
    sb_free(&tip);
}

static void draw_kernel(const Drawing *d, int ki, const DotTimes *t) {
    const Kernel *k = &d->kp->kernels.data[ki];
    const KernelView *v = &d->views[ki];
    StrBuf label = {0};
    esc(&label, k->name);
    sb_printf(&label, "\\n%s", kernel_kind_name(k->kind));
    double share = 0;
    if (t && t->kernel_ms && t->kernel_ms[ki] >= 0) {
        sb_puts(&label, " · ");
        fmt_ms(&label, t->kernel_ms[ki]);
        if (t->run_ms > 0) {
            share = t->kernel_ms[ki] / t->run_ms;
            sb_printf(&label, " (%.0f%%)", 100 * share);
        }
    }
    fprintf(d->out, "  subgraph cluster_k%d {\n    label=\"%s\"; fontsize=11;\n", ki, label.data);
    fprintf(d->out, "    style=\"rounded,filled\"; fillcolor=\"%s\"; color=\"%s\"; penwidth=%.2f;\n",
            kind_fill(k->kind), share > 0.05 ? "#b91c1c" : "#64748b", 1 + 4 * (share > 1 ? 1 : share));
    sb_free(&label);
    if (v->nboxes == 0) /* a kernel with no graph node of its own (a copy) */
        fprintf(d->out, "    k%dg0 [label=\"%s\", shape=plaintext];\n", ki, kernel_kind_name(k->kind));
    for (int b = 0; b < v->nboxes; b++) draw_box(d, ki, b);
    /* edges between the boxes, once each */
    IntVec seen = {0};
    for (int i = 0; i < v->nmembers; i++) {
        const Node *n = ir_node(d->g, v->members[i]);
        for (int a = 0; a < n->nin && v->box[i] >= 0; a++) {
            int from = box_of_node(v, n->in[a]);
            int key = from * (v->nboxes + 1) + v->box[i];
            if (from < 0 || from == v->box[i]) continue;
            bool dup = false;
            for (int s = 0; s < seen.len; s++) dup = dup || seen.data[s] == key;
            if (dup) continue;
            VEC_PUSH(seen, key);
            fprintf(d->out, "    k%dg%d -> k%dg%d;\n", ki, from, ki, v->box[i]);
        }
    }
    VEC_FREE(seen);
    fputs("  }\n", d->out);
}

/* An edge that carries a buffer: labelled with its bytes, its type in the
 * tooltip. */
static void buffer_edge(const Drawing *d, const char *from, const char *to, int64_t bytes, const char *tip) {
    StrBuf label = {0};
    fmt_bytes(&label, bytes);
    fprintf(d->out, "  %s -> %s [label=\"%s\", tooltip=\"%s\"];\n", from, to, label.data, tip);
    sb_free(&label);
}

static void buffer_tip(StrBuf *sb, const Drawing *d, const KBuf *b) {
    esc(sb, b->name);
    sb_puts(sb, ": ");
    if (b->node >= 0 && b->node < d->g->nodes.len) {
        type_text(sb, d->g, ir_node(d->g, b->node));
        sb_printf(sb, " (%%%d)", b->node);
    } else {
        sb_printf(sb, "%s[%lld]", kiln_dtype_name(b->dtype), (long long)b->numel);
    }
}

/* A weight: a parameter bound to the same data on every run (Node.flag). */
static bool is_weight(const Drawing *d, int p) { return ir_node(d->g, d->g->params.data[p])->flag; }

/* The dot name of the box that holds parameter p (its own, or its kernel's
 * box of inputs "qK" or of weights "wK"). */
static void param_name(char *s, size_t n, const Drawing *d, int p) {
    if (d->param_box[p] < 0)
        snprintf(s, n, "p%d", p);
    else
        snprintf(s, n, "%c%d", is_weight(d, p) ? 'w' : 'q', d->param_box[p]);
}

static int param_of_buf(const KBuf *b) { return b->kind == KB_INPUT ? b->index : -1; }

/* Parameters: their boxes (grouped per kernel when they feed only it, the
 * weights apart from the inputs), and one edge per (box, reading box) with
 * the bytes that flow along it. */
static void draw_params(Drawing *d) {
    const KProgram *kp = d->kp;
    int np = d->g->params.len, nk = kp->kernels.len;
    int *only = xcalloc((size_t)np + 1, sizeof(int)); /* the one kernel reading p, -1 none, -2 several */
    int *grouped = xcalloc(2 * ((size_t)nk + 1), sizeof(int)); /* per kernel: [inputs, weights] */
    for (int p = 0; p < np; p++) only[p] = -1;
    for (int ki = 0; ki < nk; ki++)
        for (int r = 0; r < d->views[ki].reads.len; r++) {
            int p = param_of_buf(&kp->bufs.data[d->views[ki].reads.data[r]]);
            if (p >= 0 && p < np) only[p] = only[p] == -1 || only[p] == ki ? ki : -2;
        }
    for (int p = 0; p < np; p++)
        if (only[p] >= 0) grouped[2 * only[p] + is_weight(d, p)]++;
    for (int p = 0; p < np; p++)
        d->param_box[p] = only[p] >= 0 && grouped[2 * only[p] + is_weight(d, p)] >= 2 ? only[p] : -1;
    static const char *const style[2] = {
        "shape=box, style=\"rounded,filled\", fillcolor=\"#dbeafe\", color=\"#2563eb\"",
        "shape=box, style=\"rounded,filled,dashed\", fillcolor=\"#eef2f7\", color=\"#64748b\""};
    for (int p = 0; p < np; p++) {
        const Node *n = ir_node(d->g, d->g->params.data[p]);
        StrBuf label = {0};
        esc(&label, n->name ? n->name : "?");
        sb_puts(&label, "\\n");
        type_text(&label, d->g, n);
        if (d->param_box[p] < 0)
            fprintf(d->out, "  p%d [label=\"%s\", %s];\n", p, label.data, style[is_weight(d, p)]);
        sb_free(&label);
    }
    for (int box = 0; box < 2 * nk; box++) {
        if (grouped[box] < 2) continue;
        StrBuf label = {0};
        for (int p = 0; p < np; p++) {
            if (d->param_box[p] != box / 2 || is_weight(d, p) != box % 2) continue;
            const Node *n = ir_node(d->g, d->g->params.data[p]);
            esc(&label, n->name ? n->name : "?");
            sb_puts(&label, "  ");
            type_text(&label, d->g, n);
            sb_puts(&label, "\\l");
        }
        fprintf(d->out, "  %c%d [label=\"%s\", %s];\n", box % 2 ? 'w' : 'q', box / 2, label.data,
                style[box % 2]);
        sb_free(&label);
    }
    /* edges: for each reading kernel, bytes summed per (parameter box, reader box) */
    for (int ki = 0; ki < nk; ki++) {
        const KernelView *v = &d->views[ki];
        for (int r = 0; r < v->reads.len; r++) {
            const KBuf *b = &kp->bufs.data[v->reads.data[r]];
            int p = param_of_buf(b);
            if (p < 0 || p >= np) continue;
            char from[32], to[32];
            param_name(from, sizeof from, d, p);
            int box = reader_box(d, ki, b);
            bool earlier = false; /* another buffer of this box already drew the edge */
            int64_t bytes = 0;
            StrBuf tip = {0};
            for (int s = 0; s < v->reads.len; s++) {
                const KBuf *o = &kp->bufs.data[v->reads.data[s]];
                int q = param_of_buf(o);
                if (q < 0 || q >= np) continue;
                char other[32];
                param_name(other, sizeof other, d, q);
                if (strcmp(other, from) != 0 || reader_box(d, ki, o) != box) continue;
                if (s < r) earlier = true;
                bytes += buf_bytes(o);
                if (tip.len) sb_puts(&tip, "\\n");
                buffer_tip(&tip, d, o);
            }
            snprintf(to, sizeof to, "k%dg%d", ki, box);
            if (!earlier) buffer_edge(d, from, to, bytes, tip.data);
            sb_free(&tip);
        }
    }
    free(only);
    free(grouped);
}

/* Buffers written by one kernel and read by a later one. */
static void draw_crossings(const Drawing *d) {
    const KProgram *kp = d->kp;
    for (int c = 0; c < kp->kernels.len; c++) {
        const KernelView *v = &d->views[c];
        for (int r = 0; r < v->reads.len; r++) {
            const KBuf *b = &kp->bufs.data[v->reads.data[r]];
            if (b->kind == KB_INPUT) continue;
            for (int p = 0; p < kp->kernels.len; p++) {
                if (p == c || !writes_buf(&d->views[p], v->reads.data[r])) continue;
                char from[32], to[32];
                snprintf(from, sizeof from, "k%dg%d", p, writer_box(d, p, b));
                snprintf(to, sizeof to, "k%dg%d", c, reader_box(d, c, b));
                StrBuf tip = {0};
                buffer_tip(&tip, d, b);
                buffer_edge(d, from, to, buf_bytes(b), tip.data);
                sb_free(&tip);
            }
        }
    }
}

static void draw_results(const Drawing *d) {
    const KProgram *kp = d->kp;
    for (int r = 0; r < d->g->results.len; r++) {
        const Node *n = ir_node(d->g, d->g->results.data[r]);
        StrBuf label = {0};
        sb_printf(&label, "result %d\\n", r);
        type_text(&label, d->g, n);
        fprintf(d->out,
                "  r%d [label=\"%s\", shape=box, style=\"rounded,filled,bold\", fillcolor=\"#dcfce7\", "
                "color=\"#16a34a\"];\n",
                r, label.data);
        sb_free(&label);
        int rb = r < kp->result_buf.len ? kp->result_buf.data[r] : -1;
        if (rb < 0 || rb >= kp->bufs.len) continue;
        const KBuf *b = &kp->bufs.data[rb];
        char to[32];
        snprintf(to, sizeof to, "r%d", r);
        StrBuf tip = {0};
        buffer_tip(&tip, d, b);
        int p = param_of_buf(b);
        if (p >= 0 && p < d->g->params.len) {
            char from[32];
            param_name(from, sizeof from, d, p);
            buffer_edge(d, from, to, buf_bytes(b), tip.data);
        }
        for (int ki = 0; p < 0 && ki < kp->kernels.len; ki++) {
            if (!writes_buf(&d->views[ki], rb)) continue;
            char from[32];
            snprintf(from, sizeof from, "k%dg%d", ki, writer_box(d, ki, b));
            buffer_edge(d, from, to, buf_bytes(b), tip.data);
        }
        sb_free(&tip);
    }
}

void kprog_print_dot(const KProgram *kp, const IRGraph *g, const DotTimes *times, FILE *out) {
    int nk = kp->kernels.len;
    Drawing d = {kp, g, out, xcalloc((size_t)nk + 1, sizeof(KernelView)),
                 xcalloc((size_t)g->params.len + 1, sizeof(int))};
    for (int ki = 0; ki < nk; ki++) {
        kernel_boxes(g, &kp->kernels.data[ki], &d.views[ki]);
        kernel_buffers(&kp->kernels.data[ki], &d.views[ki]);
    }
    fputs("digraph \"", out);
    ir_dot_escaped(g->name, out);
    fputs("\" {\n", out);
    StrBuf title = {0};
    esc(&title, g->name);
    sb_printf(&title, ": %d kernel%s from %d graph nodes", nk, nk == 1 ? "" : "s", g->nodes.len);
    if (times && times->device) {
        sb_puts(&title, "; ");
        esc(&title, times->device);
    }
    if (times && times->run_ms > 0) {
        sb_puts(&title, ", one run ");
        fmt_ms(&title, times->run_ms);
    }
    fprintf(out, "  label=\"%s\"; labelloc=t; fontname=\"Helvetica\"; fontsize=14;\n", title.data);
    sb_free(&title);
    fputs("  rankdir=TB; newrank=true; nodesep=0.25; ranksep=0.35;\n"
          "  node [shape=box, fontname=\"Helvetica\", fontsize=10, height=0.3, margin=\"0.08,0.04\", "
          "style=filled, fillcolor=white];\n"
          "  edge [fontname=\"Helvetica\", fontsize=9, arrowsize=0.6, color=\"#475569\"];\n",
          out);
    for (int ki = 0; ki < nk; ki++) draw_kernel(&d, ki, times);
    draw_params(&d);
    draw_crossings(&d);
    draw_results(&d);
    fputs("}\n", out);
    for (int ki = 0; ki < nk; ki++) view_free(&d.views[ki]);
    free(d.views);
    free(d.param_box);
}
