/* ir.c - the op table, graph construction and symbolic dimensions. */
#include "ir/ir.h"

#include <stdlib.h>
#include <string.h>

const OpInfo op_info[OP_COUNT] = {
#define OP(e, name, kind, arity, flags) [OP_##e] = {name, kind, arity, flags},
#include "ir/ops.def"
#undef OP
};

bool op_lookup(const char *name, Op *out) {
    for (int i = 0; i < OP_COUNT; i++) {
        if ((op_info[i].flags & OPF_BUILTIN) && strcmp(op_info[i].name, name) == 0) {
            *out = (Op)i;
            return true;
        }
    }
    return false;
}

const char *const lang_sugar_builtins[] = {
    "clamp",     "linear",     "zeros",       "ones",       "squeeze", "unsqueeze", "global_avgpool",
    "batchnorm", "leaky_relu", "hardsigmoid", "reciprocal", "isnan",   "isinf",     NULL,
};

bool dtype_is_float(KilnDType dt) {
    return dt == KILN_F32 || dt == KILN_F16 || dt == KILN_BF16 || dt == KILN_F64;
}

bool dtype_is_int(KilnDType dt) { return dt == KILN_I32 || dt == KILN_I64; }

Scalar ir_node_scalar(const Node *n) {
    if (dtype_is_intlike(n->dtype) && (double)n->ival == n->value) return scalar_from_int(n->ival, n->dtype);
    return scalar_from_double(n->value, n->dtype);
}

void ir_set_value(Node *n, double v) {
    n->value = v;
    n->ival = scalar_convert((Scalar){.f = v}, KILN_F64, KILN_I64).i;
}

void ir_set_int_value(Node *n, int64_t v) {
    n->ival = v;
    n->value = scalar_to_double((Scalar){.i = v}, KILN_I64);
}

IRGraph *ir_graph_new(Arena *arena, const char *name) {
    IRGraph *g = ARENA_NEW(arena, IRGraph);
    g->arena = arena;
    g->name = arena_strdup(arena, name);
    return g;
}

void ir_graph_destroy(IRGraph *g) {
    if (!g) return;
    VEC_FREE(g->nodes);
    VEC_FREE(g->params);
    VEC_FREE(g->results);
    VEC_FREE(g->syms);
}

int ir_add_node(IRGraph *g, Op op, KilnDType dt, int rank, const Dim *shape, int nin,
                const int *in, Loc loc) {
    Node n = {.op = op, .dtype = dt, .rank = rank, .nin = nin, .loc = loc};
    n.shape = ARENA_ARRAY(g->arena, Dim, rank);
    if (rank) memcpy(n.shape, shape, sizeof(Dim) * (size_t)rank);
    n.in = ARENA_ARRAY(g->arena, int, nin);
    if (nin) memcpy(n.in, in, sizeof(int) * (size_t)nin);
    VEC_PUSH(g->nodes, n);
    return g->nodes.len - 1;
}

int64_t ir_numel(const Node *n) {
    int64_t total = 1;
    for (int i = 0; i < n->rank; i++) {
        if (DIM_IS_SYM(n->shape[i])) return -1;
        total *= n->shape[i];
    }
    return total;
}

/* Finds or adds a symbolic dimension (hash-consing by linear search: a graph
 * has a handful of them). */
static Dim intern_sym(IRGraph *g, SymDim s) {
    for (int i = 0; i < g->syms.len; i++) {
        SymDim *t = &g->syms.data[i];
        if (t->kind == s.kind && t->a == s.a && t->b == s.b &&
            ((!t->name && !s.name) || (t->name && s.name && strcmp(t->name, s.name) == 0)))
            return DIM_FROM_SYM(i);
    }
    if (s.name) s.name = arena_strdup(g->arena, s.name);
    VEC_PUSH(g->syms, s);
    return DIM_FROM_SYM(g->syms.len - 1);
}

Dim ir_sym_named(IRGraph *g, const char *name) {
    return intern_sym(g, (SymDim){.kind = SYM_NAMED, .name = name});
}

Dim ir_dim_opaque(IRGraph *g, const char *text) {
    return intern_sym(g, (SymDim){.kind = SYM_OPAQUE, .name = text});
}

/* Products are put in canonical order by the builder (dims_product), which
 * makes B*T and T*B the same Dim. */
/* Known sizes saturate at INT64_MAX rather than overflow; the builder
 * reports sizes that large. */
Dim ir_dim_mul(IRGraph *g, Dim a, Dim b) {
    Dim r;
    if (!DIM_IS_SYM(a) && !DIM_IS_SYM(b)) return __builtin_mul_overflow(a, b, &r) ? INT64_MAX : r;
    if (a == 1) return b;
    if (b == 1) return a;
    if (a == 0 || b == 0) return 0;
    return intern_sym(g, (SymDim){.kind = SYM_MUL, .a = a, .b = b});
}

Dim ir_dim_add(IRGraph *g, Dim a, Dim b) {
    Dim r;
    if (!DIM_IS_SYM(a) && !DIM_IS_SYM(b)) return __builtin_add_overflow(a, b, &r) ? INT64_MAX : r;
    if (a == 0) return b;
    if (b == 0) return a;
    if (a > b) { Dim t = a; a = b; b = t; }
    return intern_sym(g, (SymDim){.kind = SYM_ADD, .a = a, .b = b});
}

Dim ir_dim_div(IRGraph *g, Dim a, Dim b) {
    if (!DIM_IS_SYM(a) && !DIM_IS_SYM(b)) return b ? a / b : 0;
    if (b == 1) return a;
    if (a == b) return 1;
    /* (x*y)/y == x */
    if (DIM_IS_SYM(a)) {
        SymDim s = g->syms.data[DIM_SYM_INDEX(a)];
        if (s.kind == SYM_MUL && s.b == b) return s.a;
        if (s.kind == SYM_MUL && s.a == b) return s.b;
        if (s.kind == SYM_MUL && !DIM_IS_SYM(b) && !DIM_IS_SYM(s.a) && s.a % b == 0)
            return ir_dim_mul(g, s.a / b, s.b);
    }
    return intern_sym(g, (SymDim){.kind = SYM_DIV, .a = a, .b = b});
}

static void dim_print_prec(const IRGraph *g, Dim d, StrBuf *sb, int outer_prec) {
    if (!DIM_IS_SYM(d)) {
        sb_printf(sb, "%lld", (long long)d);
        return;
    }
    const SymDim *s = &g->syms.data[DIM_SYM_INDEX(d)];
    switch (s->kind) {
    case SYM_NAMED:
    case SYM_OPAQUE: sb_puts(sb, s->name); return;
    case SYM_ADD:
        if (outer_prec > 1) sb_puts(sb, "(");
        dim_print_prec(g, s->a, sb, 1);
        sb_puts(sb, "+");
        dim_print_prec(g, s->b, sb, 1);
        if (outer_prec > 1) sb_puts(sb, ")");
        return;
    case SYM_MUL:
    case SYM_DIV:
        dim_print_prec(g, s->a, sb, 2);
        sb_puts(sb, s->kind == SYM_MUL ? "*" : "/");
        dim_print_prec(g, s->b, sb, 3);
        return;
    }
}

void ir_dim_print(const IRGraph *g, Dim d, StrBuf *sb) { dim_print_prec(g, d, sb, 0); }

void ir_type_print(const IRGraph *g, KilnDType dt, int rank, const Dim *shape, StrBuf *sb) {
    sb_puts(sb, kiln_dtype_name(dt));
    sb_puts(sb, "[");
    for (int i = 0; i < rank; i++) {
        if (i) sb_puts(sb, ", ");
        ir_dim_print(g, shape[i], sb);
    }
    sb_puts(sb, "]");
}

char *ir_type_str(const IRGraph *g, KilnDType dt, int rank, const Dim *shape) {
    StrBuf sb = {0};
    ir_type_print(g, dt, rank, shape, &sb);
    return sb.data;
}

bool ir_graph_is_concrete(const IRGraph *g, const char **first_sym) {
    for (int i = 0; i < g->nodes.len; i++) {
        const Node *n = ir_node(g, i);
        for (int k = 0; k < n->rank; k++) {
            if (DIM_IS_SYM(n->shape[k])) {
                if (first_sym) {
                    /* name the user-visible symbol behind a derived one */
                    Dim d = n->shape[k];
                    while (DIM_IS_SYM(d) && g->syms.data[DIM_SYM_INDEX(d)].kind != SYM_NAMED &&
                           g->syms.data[DIM_SYM_INDEX(d)].kind != SYM_OPAQUE) {
                        const SymDim *s = &g->syms.data[DIM_SYM_INDEX(d)];
                        d = DIM_IS_SYM(s->a) ? s->a : s->b;
                    }
                    *first_sym = g->syms.data[DIM_SYM_INDEX(d)].name;
                }
                return false;
            }
        }
    }
    return true;
}
