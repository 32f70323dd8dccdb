/* writer.c - `kiln import`: an imported model written back as kiln source.
 *
 * Contract: onnx_write_kiln prints the graph onnx_import built as one kiln
 * `graph` whose parameters are the model's inputs and then its weights, and
 * whose body has one statement per ONNX node (a node the importer lowered to
 * several IR nodes becomes one expression; an IR value used twice inside a
 * node gets a temporary of its own), each commented with the ONNX node's name
 * and op.  The weights come back as a tensor list named like the parameters
 * (for the .safetensors beside the source).  Reading the source with kiln's
 * front end and binding the weights gives the same graph, node for node, so
 * the pair runs as the .onnx does.
 *
 * Names: ONNX names (`/layer1/conv/Conv_output_0`, `input.1`) become
 * identifiers ([A-Za-z0-9_], not starting with a digit, not a keyword,
 * dtype or built-in function), unique in the graph; symbolic dimensions
 * likewise.  What the language cannot write is refused with a message: a
 * dimension without a name of its own (an opaque one), or an IR op with no
 * spelling.
 */
#include "onnx/import.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const OnnxModel *model;
    const OnnxImport *imp;
    const IRGraph *g;
    Arena *arena;
    const char **var; /* per IR node: its variable (params, statements), or NULL: inlined */
    int *uses;
    int *group;              /* per IR node: the ONNX node that made it, -1 before the first */
    const char **sym;        /* per symbolic dim index: its identifier */
    VEC(const char *) taken; /* identifiers in use */
    char *err;
    size_t errlen;
    bool failed;
} Writer;

static bool wfail(Writer *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static bool wfail(Writer *w, const char *fmt, ...) {
    if (w->failed) return false;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->err, w->errlen, fmt, ap);
    va_end(ap);
    w->failed = true;
    return false;
}

/* ---- identifiers ---- */

static bool reserved(const char *s) {
    static const char *const words[] = {"graph", "return", "and", "or",  "not", "true", "false", "f32",
                                        "f16",   "bf16",   "f64", "i32", "i64", "bool", NULL};
    for (int i = 0; words[i]; i++)
        if (strcmp(s, words[i]) == 0) return true;
    Op op;
    if (op_lookup(s, &op)) return true;
    for (int i = 0; lang_sugar_builtins[i]; i++)
        if (strcmp(s, lang_sugar_builtins[i]) == 0) return true;
    return false;
}

/* `name` as a fresh identifier: other characters become '_', a leading
 * digit or a reserved word gets a `v_` in front, a repeat a numeric suffix. */
static const char *ident(Writer *w, const char *name) {
    StrBuf sb = {0};
    /* PyTorch's exporter names values "/encoder/layer.0/Add_output_0": the
     * path is kept, the slash in front and the "_output_0" are not */
    size_t len = strlen(name);
    if (len > 9 && strcmp(name + len - 9, "_output_0") == 0) len -= 9;
    if (name[0] == '/' && len > 1) name++, len--;
    if (!len || (name[0] >= '0' && name[0] <= '9')) sb_puts(&sb, "v_");
    for (size_t i = 0; i < len; i++) {
        char ch = name[i];
        bool ok =
            ch == '_' || (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9');
        sb_printf(&sb, "%c", ok ? ch : '_');
    }
    if (reserved(sb.data)) {
        char *t = sb.data;
        sb = (StrBuf){0};
        sb_printf(&sb, "v_%s", t);
        free(t);
    }
    const char *base = arena_strdup(w->arena, sb.data), *s = base;
    sb_free(&sb);
    for (int n = 2;; n++) {
        bool clash = false;
        for (int i = 0; i < w->taken.len && !clash; i++) clash = strcmp(w->taken.data[i], s) == 0;
        if (!clash) break;
        s = arena_printf(w->arena, "%s_%d", base, n);
    }
    VEC_PUSH(w->taken, s);
    return s;
}

/* ---- dimensions, types and constants ---- */

static void dim(Writer *w, Dim d, StrBuf *sb) {
    if (!DIM_IS_SYM(d)) {
        sb_printf(sb, "%lld", (long long)d);
        return;
    }
    const SymDim *s = &w->g->syms.data[DIM_SYM_INDEX(d)];
    static const char ops[] = {[SYM_MUL] = '*', [SYM_ADD] = '+', [SYM_DIV] = '/'};
    switch (s->kind) {
    case SYM_NAMED: sb_puts(sb, w->sym[DIM_SYM_INDEX(d)]); break;
    case SYM_MUL:
    case SYM_ADD:
    case SYM_DIV:
        sb_puts(sb, "(");
        dim(w, s->a, sb);
        sb_printf(sb, " %c ", ops[s->kind]);
        dim(w, s->b, sb);
        sb_puts(sb, ")");
        break;
    case SYM_OPAQUE:
        wfail(w, "the dimension %s has no name kiln source can write; bind its symbols with --dim", s->name);
        break;
    }
}

static void dims(Writer *w, const Dim *d, int n, StrBuf *sb) {
    sb_puts(sb, "[");
    for (int i = 0; i < n; i++) {
        if (i) sb_puts(sb, ", ");
        dim(w, d[i], sb);
    }
    sb_puts(sb, "]");
}

/* A type in a signature: only plain names and numbers are allowed there. */
static void type(Writer *w, const Node *n, StrBuf *sb) {
    sb_puts(sb, kiln_dtype_name(n->dtype));
    sb_puts(sb, "[");
    for (int i = 0; i < n->rank; i++) {
        if (i) sb_puts(sb, ", ");
        Dim d = n->shape[i];
        if (DIM_IS_SYM(d) && w->g->syms.data[DIM_SYM_INDEX(d)].kind != SYM_NAMED) {
            StrBuf t = {0};
            dim(w, d, &t);
            wfail(
                w,
                "a parameter or result has the derived dimension %s, which a kiln type cannot hold; bind its "
                "symbols with --dim",
                t.data ? t.data : "?");
            sb_free(&t);
        }
        dim(w, d, sb);
    }
    sb_puts(sb, "]");
}

/* A floating-point literal with as many digits as dtype dt needs to come
 * back exactly (infinities and NaN as divisions, which the language folds). */
static void float_literal(double v, KilnDType dt, StrBuf *sb) {
    if (isnan(v)) {
        sb_puts(sb, "(0.0 / 0.0)");
    } else if (isinf(v)) {
        sb_puts(sb, v > 0 ? "(1.0 / 0.0)" : "(-1.0 / 0.0)");
    } else {
        char buf[64];
        snprintf(buf, sizeof buf, dt == KILN_F64 ? "%.17g" : "%.9g", v);
        if (!strpbrk(buf, ".en")) strcat(buf, ".0");
        sb_printf(sb, v < 0 ? "(%s)" : "%s", buf);
    }
}

/* The value attribute of a node as a literal of its dtype (integers exact). */
static void number(const Node *n, StrBuf *sb) {
    Scalar s = ir_node_scalar(n);
    if (n->dtype == KILN_BOOL)
        sb_puts(sb, s.i ? "true" : "false");
    else if (!dtype_is_float(n->dtype))
        sb_printf(sb, "%lld", (long long)s.i);
    else
        float_literal(s.f, n->dtype, sb);
}

/* ---- expressions ---- */

static bool is_leaf(const Node *n) { return n->op == OP_CONST || n->op == OP_FULL || n->op == OP_IOTA; }

static void expr(Writer *w, int id, StrBuf *sb);

/* Operand k of node n; a rank-0 constant beside a tensor is a plain literal,
 * which takes that tensor's dtype, as the constant had. */
static void operand(Writer *w, const Node *n, int k, StrBuf *sb) {
    const Node *a = ir_node(w->g, n->in[k]);
    bool sibling_tensor = false;
    for (int j = 0; j < n->nin; j++)
        if (j != k && !is_leaf(ir_node(w->g, n->in[j]))) sibling_tensor = true;
    if (a->op == OP_CONST && sibling_tensor)
        number(a, sb);
    else
        expr(w, n->in[k], sb);
}

static const char *binary_token(Op op) {
    switch (op) {
    case OP_ADD: return "+";
    case OP_SUB: return "-";
    case OP_MUL: return "*";
    case OP_DIV: return "/";
    case OP_MOD: return "%";
    case OP_POW: return "**";
    case OP_EQ: return "==";
    case OP_NE: return "!=";
    case OP_LT: return "<";
    case OP_LE: return "<=";
    case OP_GT: return ">";
    case OP_GE: return ">=";
    case OP_AND: return "and";
    case OP_OR: return "or";
    default: return NULL;
    }
}

static void int_list(const int64_t *v, int n, StrBuf *sb) {
    sb_puts(sb, "[");
    for (int i = 0; i < n; i++) sb_printf(sb, "%s%lld", i ? ", " : "", (long long)v[i]);
    sb_puts(sb, "]");
}

static void pads_2d(int64_t top, int64_t bottom, int64_t left, int64_t right, StrBuf *sb) {
    sb_printf(sb, "padding=[[%lld, %lld], [%lld, %lld]]", (long long)top, (long long)bottom, (long long)left,
              (long long)right);
}

/* n - 1 - arange(n): the indices that reverse an axis of size n. */
static void reversed_iota(Writer *w, Dim n, StrBuf *sb) {
    sb_puts(sb, "((");
    dim(w, n, sb);
    sb_puts(sb, " - 1) - arange(");
    dim(w, n, sb);
    sb_puts(sb, ", i64))");
}

static void node_expr(Writer *w, int id, StrBuf *sb) {
    const Node *n = ir_node(w->g, id);
    const char *tok = binary_token(n->op);
    OpKind kind = op_info[n->op].kind;
    if (tok) {
        sb_puts(sb, "(");
        operand(w, n, 0, sb);
        sb_printf(sb, " %s ", tok);
        operand(w, n, 1, sb);
        sb_puts(sb, ")");
        return;
    }
    switch (n->op) {
    case OP_CONST:
        sb_printf(sb, "full([], "), number(n, sb), sb_printf(sb, ", %s)", kiln_dtype_name(n->dtype));
        return;
    case OP_FULL:
        sb_puts(sb, "full(");
        dims(w, n->shape, n->rank, sb);
        sb_puts(sb, ", ");
        number(n, sb);
        sb_printf(sb, ", %s)", kiln_dtype_name(n->dtype));
        return;
    case OP_IOTA:
        sb_puts(sb, "arange(");
        dim(w, n->shape[0], sb);
        sb_printf(sb, ", %s)", kiln_dtype_name(n->dtype));
        return;
    case OP_NOT: sb_puts(sb, "(not "), expr(w, n->in[0], sb), sb_puts(sb, ")"); return;
    case OP_CAST:
        sb_puts(sb, "cast("), expr(w, n->in[0], sb), sb_printf(sb, ", %s)", kiln_dtype_name(n->dtype));
        return;
    case OP_GELU:
        sb_puts(sb, "gelu("), expr(w, n->in[0], sb), sb_puts(sb, n->flag ? ", approximate=true)" : ")");
        return;
    case OP_MAXIMUM:
    case OP_MINIMUM:
    case OP_WHERE:
        sb_printf(sb, "%s(", op_info[n->op].name);
        for (int k = 0; k < n->nin; k++) {
            if (k) sb_puts(sb, ", ");
            operand(w, n, k, sb);
        }
        sb_puts(sb, ")");
        return;
    case OP_MATMUL:
        sb_puts(sb, "("), expr(w, n->in[0], sb), sb_puts(sb, " @ "), expr(w, n->in[1], sb), sb_puts(sb, ")");
        return;
    case OP_RESHAPE:
    case OP_BROADCAST:
        sb_printf(sb, "%s(", op_info[n->op].name), expr(w, n->in[0], sb), sb_puts(sb, ", ");
        dims(w, n->shape, n->rank, sb);
        sb_puts(sb, ")");
        return;
    case OP_TRANSPOSE:
        sb_puts(sb, "transpose("), expr(w, n->in[0], sb), sb_puts(sb, ", "), int_list(n->ints, n->nints, sb),
            sb_puts(sb, ")");
        return;
    case OP_SLICE: {
        const Node *x = ir_node(w->g, n->in[0]);
        int last = -1; /* the last axis that is not taken whole */
        for (int k = 0; k < n->rank; k++)
            if (n->ints[2 * k] != 0 || n->ints[2 * k + 1] != 1 || n->shape[k] != x->shape[k]) last = k;
        expr(w, n->in[0], sb);
        sb_puts(sb, "[");
        for (int k = 0; k <= last; k++) {
            int64_t start = n->ints[2 * k], step = n->ints[2 * k + 1];
            if (k) sb_puts(sb, ", ");
            if (start == 0 && step == 1 && n->shape[k] == x->shape[k]) {
                sb_puts(sb, ":");
                continue;
            }
            if (DIM_IS_SYM(n->shape[k])) wfail(w, "a slice of symbolic size; bind its symbols with --dim");
            sb_printf(sb, "%lld:%lld", (long long)start, (long long)(start + step * (n->shape[k] - 1) + 1));
            if (step != 1) sb_printf(sb, ":%lld", (long long)step);
        }
        sb_puts(sb, last < 0 ? ":]" : "]");
        return;
    }
    case OP_PAD:
        sb_puts(sb, "pad("), expr(w, n->in[0], sb), sb_puts(sb, ", [");
        for (int k = 0; k < n->rank; k++)
            sb_printf(sb, "%s[%lld, %lld]", k ? ", " : "", (long long)n->ints[2 * k],
                      (long long)n->ints[2 * k + 1]);
        sb_puts(sb, "], value=");
        number(n, sb);
        sb_puts(sb, ")");
        return;
    case OP_CONCAT:
        sb_puts(sb, "concat([");
        for (int k = 0; k < n->nin; k++) {
            if (k) sb_puts(sb, ", ");
            expr(w, n->in[k], sb);
        }
        sb_printf(sb, "], axis=%lld)", (long long)n->ints[0]);
        return;
    case OP_TAKE:
        sb_puts(sb, "take("), expr(w, n->in[0], sb), sb_puts(sb, ", "), expr(w, n->in[1], sb);
        sb_printf(sb, ", axis=%lld)", (long long)n->ints[0]);
        return;
    case OP_SOFTMAX:
    case OP_LOG_SOFTMAX:
        sb_printf(sb, "%s(", op_info[n->op].name), expr(w, n->in[0], sb);
        sb_printf(sb, ", axis=%lld)", (long long)n->ints[0]);
        return;
    case OP_LAYERNORM:
    case OP_RMSNORM:
        sb_printf(sb, "%s(", op_info[n->op].name);
        for (int k = 0; k < n->nin; k++) {
            if (k) sb_puts(sb, ", ");
            expr(w, n->in[k], sb);
        }
        sb_printf(sb, ", axis=%lld, eps=", (long long)n->ints[0]);
        float_literal(n->value, KILN_F64, sb);
        sb_puts(sb, ")");
        return;
    case OP_CONV2D: {
        const int64_t *v = n->ints; /* sh, sw, top, left, dh, dw, groups, bottom, right */
        sb_puts(sb, "conv2d(");
        for (int k = 0; k < n->nin; k++) {
            if (k) sb_puts(sb, ", ");
            expr(w, n->in[k], sb);
        }
        sb_printf(sb, ", stride=[%lld, %lld], ", (long long)v[0], (long long)v[1]);
        pads_2d(v[2], n->nints >= 9 ? v[7] : v[2], v[3], n->nints >= 9 ? v[8] : v[3], sb);
        sb_printf(sb, ", dilation=[%lld, %lld], groups=%lld)", (long long)v[4], (long long)v[5],
                  (long long)v[6]);
        return;
    }
    case OP_MAXPOOL2D:
    case OP_AVGPOOL2D: {
        const int64_t *v = n->ints; /* kh, kw, sh, sw, top, left, bottom, right, ceil, include_pad */
        bool ten = n->nints >= 10;
        sb_printf(sb, "%s(", op_info[n->op].name), expr(w, n->in[0], sb);
        sb_printf(sb, ", [%lld, %lld], stride=[%lld, %lld], ", (long long)v[0], (long long)v[1],
                  (long long)v[2], (long long)v[3]);
        pads_2d(v[4], ten ? v[6] : v[4], v[5], ten ? v[7] : v[5], sb);
        if (ten && v[8]) sb_puts(sb, ", ceil_mode=true");
        if (ten && n->op == OP_AVGPOOL2D && !v[9]) sb_puts(sb, ", count_include_pad=false");
        sb_puts(sb, ")");
        return;
    }
    case OP_CUMSUM: {
        int64_t axis = n->ints[0];
        bool exclusive = n->ints[1] != 0, reverse = n->ints[2] != 0;
        /* the language's cumsum is inclusive and forward: reverse by taking the
         * axis backwards, exclusive by subtracting the element itself */
        StrBuf x = {0};
        if (reverse) {
            sb_puts(&x, "take("), expr(w, n->in[0], &x), sb_puts(&x, ", ");
            reversed_iota(w, n->shape[axis], &x);
            sb_printf(&x, ", axis=%lld)", (long long)axis);
        } else {
            expr(w, n->in[0], &x);
        }
        StrBuf c = {0};
        sb_printf(&c, exclusive ? "(cumsum(%s, axis=%lld) - %s)" : "cumsum(%s, axis=%lld)", x.data,
                  (long long)axis, x.data);
        if (reverse) {
            sb_printf(sb, "take(%s, ", c.data);
            reversed_iota(w, n->shape[axis], sb);
            sb_printf(sb, ", axis=%lld)", (long long)axis);
        } else {
            sb_puts(sb, c.data);
        }
        sb_free(&x);
        sb_free(&c);
        return;
    }
    default: break;
    }
    if (kind == OK_UNARY) {
        sb_printf(sb, "%s(", op_info[n->op].name), expr(w, n->in[0], sb), sb_puts(sb, ")");
        return;
    }
    if (kind == OK_REDUCE) {
        sb_printf(sb, "%s(", op_info[n->op].name), expr(w, n->in[0], sb);
        bool arg = n->op == OP_ARGMAX || n->op == OP_ARGMIN;
        if (arg && n->nints == 1)
            sb_printf(sb, ", axis=%lld", (long long)n->ints[0]);
        else if (!arg)
            sb_puts(sb, ", axis="), int_list(n->ints, n->nints, sb);
        sb_puts(sb, n->flag ? ", keepdims=true)" : ")");
        return;
    }
    wfail(w, "kiln source has no spelling for the IR op %s", op_info[n->op].name);
}

static void expr(Writer *w, int id, StrBuf *sb) {
    if (w->var[id])
        sb_puts(sb, w->var[id]);
    else
        node_expr(w, id, sb);
}

/* ---- the graph ---- */

static const char *onnx_name_of(const OnnxImport *imp, int id) {
    for (int i = 0; i < imp->named.len; i++)
        if (imp->named.data[i].id == id) return imp->named.data[i].name;
    return NULL;
}

bool onnx_write_kiln(Arena *arena, const OnnxModel *m, const OnnxImport *imp, const char *graph_name,
                     StrBuf *src, KilnTensorList *weights, char *err, size_t errlen) {
    const IRGraph *g = imp->g;
    int n = g->nodes.len;
    Writer w = {.model = m, .imp = imp, .g = g, .arena = arena, .err = err, .errlen = errlen};
    w.var = ARENA_ARRAY(arena, const char *, n + 1);
    w.uses = ARENA_ARRAY(arena, int, n + 1);
    w.group = ARENA_ARRAY(arena, int, n + 1);
    w.sym = ARENA_ARRAY(arena, const char *, g->syms.len + 1);
    memset(weights, 0, sizeof *weights);
    /* which ONNX node made each IR node */
    for (int id = 0, k = 0; id < n; id++) {
        while (k < imp->node_last.len && imp->node_last.data[k] < id) k++;
        w.group[id] = k < imp->node_last.len ? k : -1;
    }
    for (int id = 0; id < n; id++)
        for (int k = 0; k < ir_node(g, id)->nin; k++) w.uses[ir_node(g, id)->in[k]]++;
    for (int i = 0; i < g->results.len; i++) w.uses[g->results.data[i]] += 2; /* a result gets a statement */
    const char *gname = ident(&w, graph_name);
    for (int i = 0; i < g->syms.len; i++)
        if (g->syms.data[i].kind == SYM_NAMED) w.sym[i] = ident(&w, g->syms.data[i].name);
    for (int i = 0; i < g->params.len; i++)
        w.var[g->params.data[i]] = ident(&w, ir_node(g, g->params.data[i])->name);
    /* statements: named ONNX values, values used more than once or outside their node, results */
    for (int id = 0; id < n; id++) {
        const Node *nd = ir_node(g, id);
        bool result = false;
        for (int i = 0; i < g->results.len; i++) result = result || g->results.data[i] == id;
        if (nd->op == OP_PARAM || (is_leaf(nd) && !result)) continue;
        bool own = w.uses[id] != 1 || onnx_name_of(imp, id) || result;
        for (int u = id + 1; u < n && !own; u++)
            for (int k = 0; k < ir_node(g, u)->nin; k++)
                if (ir_node(g, u)->in[k] == id && w.group[u] != w.group[id]) own = true;
        if (own) {
            const char *on = onnx_name_of(imp, id);
            w.var[id] = (const char *)1; /* named below, in order */
            if (on) w.var[id] = ident(&w, on);
        }
    }
    for (int id = 0; id < n; id++)
        if (w.var[id] == (const char *)1) w.var[id] = ident(&w, arena_printf(arena, "t%d", id));
    /* header */
    int64_t opset = onnx_model_opset(m);
    sb_printf(src, "# Imported from %s by `kiln import` (ONNX IR version %lld, opset %lld%s%s%s).\n", m->path,
              (long long)m->ir_version, (long long)opset, m->producer_name[0] ? ", made by " : "",
              m->producer_name,
              m->producer_version[0] ? arena_printf(arena, " %s", m->producer_version) : "");
    sb_printf(src, "# Inputs first, then the weights, which the .safetensors file beside this one holds:\n"
                   "#   kiln run FILE.kiln --weights FILE.safetensors --in NAME=...\n");
    sb_printf(src, "graph %s(", gname);
    for (int i = 0; i < g->params.len; i++) {
        const Node *p = ir_node(g, g->params.data[i]);
        if (i) sb_puts(src, i == imp->ninputs ? ",\n        # weights\n        " : ",\n        ");
        sb_printf(src, "%s: ", w.var[g->params.data[i]]);
        type(&w, p, src);
    }
    sb_puts(src, ") -> ");
    if (g->results.len != 1) sb_puts(src, "(");
    for (int i = 0; i < g->results.len; i++) {
        if (i) sb_puts(src, ", ");
        type(&w, ir_node(g, g->results.data[i]), src);
    }
    sb_puts(src, g->results.len != 1 ? ") {\n" : " {\n");
    /* body, in node order */
    for (int id = 0; id < n; id++) {
        const Node *nd = ir_node(g, id);
        if (!w.var[id] || nd->op == OP_PARAM) continue;
        StrBuf e = {0};
        node_expr(&w, id, &e);
        const char *text = e.data ? e.data : "";
        size_t len = strlen(text);
        if (len > 2 && text[0] == '(' && text[len - 1] == ')') { /* drop the outermost parentheses */
            int depth = 0;
            bool outer = true;
            for (size_t i = 0; i < len - 1 && outer; i++) {
                depth += text[i] == '(' ? 1 : text[i] == ')' ? -1 : 0;
                if (depth == 0) outer = false;
            }
            if (outer) text++, len -= 2;
        }
        sb_printf(src, "    %s = %.*s", w.var[id], (int)len, text);
        int grp = w.group[id];
        if (grp >= 0 && grp < m->graph.nnodes && onnx_name_of(imp, id)) {
            const OnnxNode *on = &m->graph.nodes[grp];
            sb_printf(src, "    # %s%s%s", on->name[0] ? on->name : "", on->name[0] ? ": " : "", on->op_type);
        }
        sb_puts(src, "\n");
        sb_free(&e);
    }
    sb_puts(src, "    return ");
    for (int i = 0; i < g->results.len; i++) sb_printf(src, "%s%s", i ? ", " : "", w.var[g->results.data[i]]);
    sb_puts(src, "\n}\n");
    /* the weights, named as their parameters */
    int nw = imp->weights.len;
    weights->names = xcalloc((size_t)nw + 1, sizeof(char *));
    weights->tensors = xcalloc((size_t)nw + 1, sizeof(KilnTensor));
    for (int i = 0; i < nw && !w.failed; i++) {
        const OnnxWeight *wt = &imp->weights.data[i];
        const Node *p = ir_node(g, g->params.data[imp->ninputs + i]);
        char e[512];
        KilnTensor *t = &weights->tensors[i];
        bool ok = wt->data ? onnx_tensor_read(wt->data, p->dtype, t, e, sizeof e)
                           : kiln_tensor_init(t, p->dtype, wt->folded->rank, wt->folded->shape);
        int64_t total = wt->data ? 0 : kiln_tensor_numel(wt->folded);
        if (ok && !wt->data && wt->folded->dtype == p->dtype)
            memcpy(t->data, wt->folded->data, (size_t)total * kiln_dtype_size(p->dtype));
        else if (ok && !wt->data)
            for (int64_t k = 0; k < total; k++) kiln_tensor_set(t, k, kiln_tensor_get(wt->folded, k));
        if (!ok) wfail(&w, "weight '%s': %s", wt->name, wt->data ? e : "out of host memory");
        weights->names[i] = xstrdup(w.var[g->params.data[imp->ninputs + i]]);
        weights->count = i + 1;
    }
    VEC_FREE(w.taken);
    if (w.failed) kiln_tensor_list_free(weights);
    return !w.failed;
}
