/* pipeline.c - the pass manager: picks the passes, runs them in order,
 * verifies the graph between them and prints it on request.
 *
 * Contract: takes a verified graph; returns an equivalent graph (same
 * parameters, same result types) in the same arena, having checked after
 * every pass that the IR is still valid (ir_verify), that every node's dtype
 * and shape agree with its inputs (check_types below) and that the graph's
 * interface did not change.  A failed check is an internal error naming the
 * pass.  Also home of the Rewriter every pass uses.
 *
 *     -O0:  nothing                        (plus precision if --precision != f32)
 *     -O2:  fold, simplify, cse, dce       (precision first if --precision != f32)
 *     --passes=a,b,c: exactly a, b, c      (precision first if asked and not listed)
 */
#include "passes/pass.h"

#include "ir/make.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- the passes */

typedef struct {
    const char *name;
    PassFn fn;
} PassEntry;

static const PassEntry pass_table[] = {
    {"precision", pass_precision}, /* f32 matmul/conv -> f16/bf16 (--precision) */
    {"fold", pass_fold},           /* constant folding */
    {"simplify", pass_simplify},   /* algebraic identities, exact unless --fast-math */
    {"cse", pass_cse},             /* common subexpressions */
    {"dce", pass_dce},             /* dead nodes */
    {"decompose", pass_decompose}, /* softmax, norms, gelu -> primitives (not at -O2) */
};
enum { NPASSES = sizeof pass_table / sizeof pass_table[0] };

static const char *const default_pipeline[] = {"fold", "simplify", "cse", "dce"};

static int pass_index(const char *name, size_t len) {
    for (int i = 0; i < NPASSES; i++)
        if (strlen(pass_table[i].name) == len && strncmp(pass_table[i].name, name, len) == 0) return i;
    return -1;
}

static void known_passes(StrBuf *sb) {
    for (int i = 0; i < NPASSES; i++) sb_printf(sb, "%s%s", i ? ", " : "", pass_table[i].name);
}

static bool unknown_pass(const char *name, size_t len, bool allow_all, char *err, size_t errlen) {
    StrBuf sb = {0};
    known_passes(&sb);
    snprintf(err, errlen, "unknown pass '%.*s' (passes: %s%s)", (int)len, name, sb.data, allow_all ? ", or all" : "");
    sb_free(&sb);
    return false;
}

bool passes_check_names(const char *list, bool allow_all, char *err, size_t errlen) {
    if (allow_all) {
        if (strcmp(list, "all") == 0 || pass_index(list, strlen(list)) >= 0) return true;
        return unknown_pass(list, strlen(list), true, err, errlen);
    }
    if (!list[0]) return true; /* --passes= : no pass at all */
    for (const char *p = list;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        if (pass_index(p, len) < 0) return unknown_pass(p, len, false, err, errlen);
        if (!comma) return true;
        p = comma + 1;
    }
}

/* The passes `opt` selects, in order, as indices into pass_table: a heap
 * array (free it) of *count entries. */
static int *select_passes(const PassOptions *opt, int *count) {
    size_t cap = sizeof default_pipeline / sizeof default_pipeline[0] + 2;
    for (const char *p = opt->passes; p && *p; p++) cap += *p == ',';
    int *out = xmalloc(sizeof(int) * cap);
    int n = 0;
    bool has_precision = false;
    if (opt->passes) {
        const char *p = opt->passes;
        while (p[0]) {
            const char *comma = strchr(p, ',');
            size_t len = comma ? (size_t)(comma - p) : strlen(p);
            int i = pass_index(p, len);
            if (i >= 0) out[n++] = i;
            if (i >= 0 && pass_table[i].fn == pass_precision) has_precision = true;
            if (!comma) break;
            p = comma + 1;
        }
    } else if (opt->opt_level > 0) {
        for (size_t k = 0; k < sizeof default_pipeline / sizeof default_pipeline[0]; k++)
            out[n++] = pass_index(default_pipeline[k], strlen(default_pipeline[k]));
    }
    if (opt->precision != PASS_PREC_F32 && !has_precision) {
        memmove(out + 1, out, sizeof(int) * (size_t)n);
        out[0] = pass_index("precision", 9);
        n++;
    }
    *count = n;
    return out;
}

void passes_describe(const PassOptions *opt, StrBuf *out) {
    int n;
    int *list = select_passes(opt, &n);
    if (n == 0) sb_puts(out, "(none)");
    for (int i = 0; i < n; i++) sb_printf(out, "%s%s", i ? "," : "", pass_table[list[i]].name);
    free(list);
}

void pass_remark(PassCtx *ctx, const Node *n, const char *fmt, ...) {
    ctx->changes++;
    if (!ctx->opt->remarks) return;
    FILE *out = ctx->opt->dump ? ctx->opt->dump : stderr;
    fprintf(out, "remark: %s: ", ctx->pass);
    if (n) fprintf(out, "%s@%d:%d ", op_info[n->op].name, n->loc.line, n->loc.col);
    va_list ap;
    va_start(ap, fmt);
    vfprintf(out, fmt, ap);
    va_end(ap);
    fputc('\n', out);
}

/* ------------------------------------------------------------ the checks */

bool same_shape_dims(int rank_a, const Dim *a, int rank_b, const Dim *b) {
    return rank_a == rank_b && (rank_a == 0 || memcmp(a, b, sizeof(Dim) * (size_t)rank_a) == 0);
}

bool node_const_value(const Node *n, double *v) {
    Scalar s;
    if (!node_const_scalar(n, &s)) return false;
    *v = scalar_to_double(s, n->dtype);
    return true;
}

bool node_const_scalar(const Node *n, Scalar *v) {
    if (n->op != OP_CONST && n->op != OP_FULL) return false;
    *v = ir_node_scalar(n);
    return true;
}

/* Each node's dtype and shape against its inputs and attributes, by the
 * rules the builder applies (ir/make.c): what a pass must keep. */
static bool check_types(IRGraph *g, char *err, size_t errlen) {
    char why[400];
    for (int i = 0; i < g->nodes.len; i++) {
        if (mk_check_node(g, i, why, sizeof why)) continue;
        const Node *n = ir_node(g, i);
        char *t = ir_type_str(g, n->dtype, n->rank, n->shape);
        snprintf(err, errlen, "%%%d (%s : %s) %s", i, op_info[n->op].name, t, why);
        free(t);
        return false;
    }
    return true;
}

/* The new graph must take the same parameters and give results of the same
 * types as the old one. */
static bool check_interface(const IRGraph *old, const IRGraph *g, char *err, size_t errlen) {
    if (old->params.len != g->params.len || old->results.len != g->results.len) {
        snprintf(err, errlen, "the graph now has %d params and %d results, it had %d and %d", g->params.len,
                 g->results.len, old->params.len, old->results.len);
        return false;
    }
    for (int i = 0; i < g->params.len; i++) {
        const Node *a = ir_node(old, old->params.data[i]), *b = ir_node(g, g->params.data[i]);
        if (strcmp(a->name, b->name) != 0 || a->dtype != b->dtype ||
            !same_shape_dims(a->rank, a->shape, b->rank, b->shape)) {
            snprintf(err, errlen, "parameter %d (%s) changed", i, a->name);
            return false;
        }
    }
    for (int i = 0; i < g->results.len; i++) {
        const Node *a = ir_node(old, old->results.data[i]), *b = ir_node(g, g->results.data[i]);
        if (a->dtype != b->dtype || !same_shape_dims(a->rank, a->shape, b->rank, b->shape)) {
            char *ta = ir_type_str(old, a->dtype, a->rank, a->shape), *tb = ir_type_str(g, b->dtype, b->rank, b->shape);
            snprintf(err, errlen, "result %d is now %s, it was %s", i, tb, ta);
            free(ta), free(tb);
            return false;
        }
    }
    return true;
}

static bool verify_graph(IRGraph *g, char *err, size_t errlen) {
    return ir_verify(g, err, errlen) && check_types(g, err, errlen);
}

/* ------------------------------------------------------------ the pipeline */

static IRGraph *run_list(Arena *arena, IRGraph *g, const PassOptions *opt, const int *list, int n, char *err,
                         size_t errlen) {
    if (n == 0) return g;
    char why[512];
    if (!verify_graph(g, why, sizeof why)) {
        snprintf(err, errlen, "internal error: the graph is invalid before the passes: %s", why);
        return NULL;
    }
    FILE *dump = opt->dump ? opt->dump : stderr;
    IRGraph *cur = g;
    for (int k = 0; k < n; k++) {
        const PassEntry *p = &pass_table[list[k]];
        PassCtx ctx = {.opt = opt, .pass = p->name};
        double t0 = trace_clock_ms();
        IRGraph *next = p->fn(arena, cur, &ctx);
        bool ok = next && verify_graph(next, why, sizeof why) && check_interface(cur, next, why, sizeof why);
        trace_span(opt->trace, "passes", t0, trace_clock_ms(), "pass %s", p->name);
        if (!next) snprintf(why, sizeof why, "it returned no graph");
        if (!ok) {
            snprintf(err, errlen, "internal error: pass '%s' broke the graph: %s (run with --passes to "
                     "bisect, --print-after=all to see it)", p->name, why);
            if (next && next != cur) {
                if (opt->print_after) ir_print(next, dump);
                ir_graph_destroy(next);
            }
            if (cur != g) ir_graph_destroy(cur);
            return NULL;
        }
        if (opt->print_after && (strcmp(opt->print_after, "all") == 0 || strcmp(opt->print_after, p->name) == 0)) {
            fprintf(dump, "// after %s: %d nodes, %d rewrites\n", p->name, next->nodes.len, ctx.changes);
            ir_print(next, dump);
        }
        if (cur != g && next != cur) ir_graph_destroy(cur);
        cur = next;
    }
    return cur;
}

KilnStatus passes_run(Arena *arena, IRGraph *g, const PassOptions *opt, IRGraph **out, char *err,
                      size_t errlen) {
    *out = NULL;
    if (opt->passes && !passes_check_names(opt->passes, false, err, errlen)) return KILN_ERR_USAGE;
    if (opt->print_after && !passes_check_names(opt->print_after, true, err, errlen)) return KILN_ERR_USAGE;
    int n;
    int *list = select_passes(opt, &n);
    *out = run_list(arena, g, opt, list, n, err, errlen);
    free(list);
    return *out ? KILN_OK : KILN_ERR_DEVICE;
}

/* ------------------------------------------------------------ the rewriter */

void rw_init(Rewriter *rw, Arena *arena, const IRGraph *old) {
    rw->old = old;
    rw->g = ir_graph_new(arena, old->name);
    for (int i = 0; i < old->syms.len; i++) VEC_PUSH(rw->g->syms, old->syms.data[i]);
    rw->map = xmalloc(sizeof(int) * ((size_t)old->nodes.len + 1));
    for (int i = 0; i < old->nodes.len; i++) rw->map[i] = -1;
}

int rw_add(Rewriter *rw, Op op, KilnDType dt, int rank, const Dim *shape, int nin, const int *new_in, Loc loc) {
    return ir_add_node(rw->g, op, dt, rank, shape, nin, new_in, loc);
}

void rw_set_ints(Rewriter *rw, int id, const int64_t *ints, int n) {
    Node *nd = rw_node(rw, id);
    nd->ints = ARENA_ARRAY(rw->g->arena, int64_t, n);
    if (n) memcpy(nd->ints, ints, sizeof(int64_t) * (size_t)n);
    nd->nints = n;
}

int rw_clone(Rewriter *rw, int id, int nin, const int *new_in) {
    const Node *n = ir_node(rw->old, id);
    int k = rw_add(rw, n->op, n->dtype, n->rank, n->shape, nin, new_in, n->loc);
    rw_set_ints(rw, k, n->ints, n->nints);
    Node *c = rw_node(rw, k);
    c->value = n->value;
    c->ival = n->ival;
    c->flag = n->flag;
    c->name = n->name;
    return k;
}

int rw_copy(Rewriter *rw, int id) {
    const Node *n = ir_node(rw->old, id);
    int *in = xmalloc(sizeof(int) * ((size_t)n->nin + 1));
    for (int k = 0; k < n->nin; k++) in[k] = rw->map[n->in[k]];
    rw->map[id] = rw_clone(rw, id, n->nin, in);
    free(in);
    return rw->map[id];
}

int rw_const(Rewriter *rw, KilnDType dt, int rank, const Dim *shape, double value, Loc loc) {
    return rw_const_scalar(rw, dt, rank, shape, scalar_from_double(value, dt), loc);
}

int rw_const_scalar(Rewriter *rw, KilnDType dt, int rank, const Dim *shape, Scalar value, Loc loc) {
    int k = rw_add(rw, rank == 0 ? OP_CONST : OP_FULL, dt, rank, shape, 0, NULL, loc);
    if (dtype_is_intlike(dt))
        ir_set_int_value(rw_node(rw, k), value.i);
    else
        rw_node(rw, k)->value = value.f;
    return k;
}

IRGraph *rw_finish(Rewriter *rw) {
    for (int i = 0; i < rw->old->params.len; i++) VEC_PUSH(rw->g->params, rw->map[rw->old->params.data[i]]);
    for (int i = 0; i < rw->old->results.len; i++) VEC_PUSH(rw->g->results, rw->map[rw->old->results.data[i]]);
    free(rw->map);
    rw->map = NULL;
    return rw->g;
}
