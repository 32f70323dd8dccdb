/* kernel.c - building kernel programs and printing them as text
 * (`kiln emit --emit=kernels`). */
#include "codegen/kernel.h"

#include <stdlib.h>
#include <string.h>

KProgram *kprog_new(Arena *arena, const char *graph_name) {
    KProgram *p = ARENA_NEW(arena, KProgram);
    p->arena = arena;
    p->graph_name = arena_strdup(arena, graph_name);
    return p;
}

void kprog_destroy(KProgram *p) {
    if (!p) return;
    for (int i = 0; i < p->kernels.len; i++) {
        Kernel *k = &p->kernels.data[i];
        VEC_FREE(k->insts);
        for (int s = 0; s < k->stages.len; s++) VEC_FREE(k->stages.data[s].stores);
        VEC_FREE(k->stages);
        VEC_FREE(k->nodes);
    }
    VEC_FREE(p->kernels);
    VEC_FREE(p->bufs);
    VEC_FREE(p->result_buf);
}

int kprog_add_buf(KProgram *p, KBufKind kind, int index, KilnDType dt, int64_t numel, int node,
                  const char *name) {
    KBuf b = {kind, index, dt, numel, node, 0, arena_strdup(p->arena, name)};
    VEC_PUSH(p->bufs, b);
    return p->bufs.len - 1;
}

Kernel *kprog_add_kernel(KProgram *p, KernelKind kind, const char *name, int64_t outer) {
    Kernel k = {.kind = kind, .outer = outer};
    k.name = arena_strdup(p->arena, name);
    VEC_PUSH(p->kernels, k);
    return &p->kernels.data[p->kernels.len - 1];
}

int kernel_add_stage(Kernel *k, KStageKind kind, int64_t extent) {
    KStage s = {.kind = kind, .extent = extent, .value = -1};
    VEC_PUSH(k->stages, s);
    return k->stages.len - 1;
}

int kinst(Kernel *k, KInstKind kind, KilnDType dt, int stage, int a, int b, int c) {
    KInst in = {.kind = kind, .dtype = dt, .a = a, .b = b, .c = c, .buf = -1, .stage = stage};
    VEC_PUSH(k->insts, in);
    return k->insts.len - 1;
}

int kinst_const(Kernel *k, KilnDType dt, int stage, double value) {
    int id = kinst(k, KI_CONST, dt, stage, -1, -1, -1);
    k->insts.data[id].value = value;
    return id;
}

int kinst_elem(Kernel *k, Op op, KilnDType dt, int stage, int a, int b, int c) {
    int id = kinst(k, KI_ELEM, dt, stage, a, b, c);
    k->insts.data[id].op = op;
    return id;
}

int kinst_load(Kernel *k, int buf, KilnDType dt, int stage, int index, int guard) {
    int id = kinst(k, KI_LOAD, dt, stage, index, guard, -1);
    k->insts.data[id].buf = buf;
    return id;
}

void kstage_store(Kernel *k, int stage, int buf, int index, int value) {
    KStore s = {buf, index, value};
    VEC_PUSH(k->stages.data[stage].stores, s);
}

void kstage_reduce(Kernel *k, int stage, Op reduce, int value, KilnDType value_dtype) {
    KStage *s = &k->stages.data[stage];
    s->reduce = reduce;
    s->value = value;
    KilnDType acc = value_dtype == KILN_F64 ? KILN_F64 : dtype_is_float(value_dtype) ? KILN_F32 : KILN_I64;
    s->acc_dtype = acc;
    s->result_dtype = (reduce == OP_ARGMAX || reduce == OP_ARGMIN) ? KILN_I64 : acc;
}

const char *kernel_kind_name(KernelKind k) {
    static const char *const names[] = {"elementwise", "reduce", "row", "matmul", "conv", "pool", "copy"};
    return names[k];
}

static const char *const inst_names[] = {
    [KI_CONST] = "const", [KI_OUTER] = "outer", [KI_INNER] = "inner", [KI_ACC] = "acc",
    [KI_LOAD] = "load",   [KI_ELEM] = "elem",   [KI_CAST] = "cast",   [KI_IADD] = "iadd",
    [KI_IMUL] = "imul",   [KI_IDIV] = "idiv",   [KI_IMOD] = "imod",   [KI_ILT] = "ilt",
    [KI_INDEX] = "index",
};

static void print_inst(const KProgram *p, const Kernel *k, int i, FILE *out) {
    const KInst *in = &k->insts.data[i];
    fprintf(out, "      v%d = ", i);
    switch (in->kind) {
    case KI_CONST: fprintf(out, "%.9g", in->value); break;
    case KI_OUTER: fputs("o", out); break;
    case KI_INNER: fputs("r", out); break;
    case KI_ACC: fprintf(out, "acc%d", in->a); break;
    case KI_LOAD:
        fprintf(out, "%s[v%d]", p->bufs.data[in->buf].name, in->a);
        if (in->b >= 0) fprintf(out, " if v%d", in->b);
        break;
    case KI_ELEM:
        fprintf(out, "%s%s", op_info[in->op].name, in->flag ? "~" : "");
        for (int x = 0, ops[3] = {in->a, in->b, in->c}; x < 3; x++)
            if (ops[x] >= 0) fprintf(out, "%sv%d", x ? ", " : " ", ops[x]);
        break;
    case KI_INDEX: fprintf(out, "index v%d of %.0f", in->a, in->value); break;
    default:
        fprintf(out, "%s v%d", inst_names[in->kind], in->a);
        if (in->b >= 0) fprintf(out, ", v%d", in->b);
        break;
    }
    fprintf(out, " : %s\n", kiln_dtype_name(in->dtype));
}

void kprog_print(const KProgram *p, const IRGraph *g, FILE *out) {
    fprintf(out, "program %s: %d kernels\n", p->graph_name, p->kernels.len);
    int64_t temps = 0;
    for (int i = 0; i < p->bufs.len; i++) {
        const KBuf *b = &p->bufs.data[i];
        static const char *const kinds[] = {"input", "output", "temp"};
        fprintf(out, "  buffer %s: %s %s[%lld]", b->name, kinds[b->kind], kiln_dtype_name(b->dtype),
                (long long)b->numel);
        if (b->kind == KB_TEMP) {
            fprintf(out, " at arena+%lld", (long long)b->offset);
            temps += b->numel * (int64_t)kiln_dtype_size(b->dtype);
        }
        fputc('\n', out);
    }
    fprintf(out, "  arena: %lld bytes (intermediates total %lld bytes)\n", (long long)p->arena_bytes,
            (long long)temps);
    for (int ki = 0; ki < p->kernels.len; ki++) {
        const Kernel *k = &p->kernels.data[ki];
        fprintf(out, "  kernel %s (%s), outer %lld, fuses", k->name, kernel_kind_name(k->kind), (long long)k->outer);
        for (int i = 0; i < k->nodes.len; i++) {
            const Node *n = g ? ir_node(g, k->nodes.data[i]) : NULL;
            fprintf(out, " %%%d%s%s", k->nodes.data[i], n ? ":" : "", n ? op_info[n->op].name : "");
        }
        fputc('\n', out);
        for (int i = 0; i < k->insts.len; i++)
            if (k->insts.data[i].stage == -1) print_inst(p, k, i, out);
        for (int s = 0; s < k->stages.len; s++) {
            const KStage *st = &k->stages.data[s];
            if (st->kind == KS_REDUCE)
                fprintf(out, "    stage %d: acc%d = %s over r < %lld of v%d (%s)\n", s, s, op_info[st->reduce].name,
                        (long long)st->extent, st->value, kiln_dtype_name(st->acc_dtype));
            else
                fprintf(out, "    stage %d: map over r < %lld\n", s, (long long)st->extent);
            for (int i = 0; i < k->insts.len; i++)
                if (k->insts.data[i].stage == s) print_inst(p, k, i, out);
            for (int j = 0; st->kind == KS_MAP && j < st->stores.len; j++)
                fprintf(out, "      %s[v%d] = v%d\n", p->bufs.data[st->stores.data[j].buf].name,
                        st->stores.data[j].index, st->stores.data[j].value);
        }
    }
}

bool kprog_verify(const KProgram *p, char *err, size_t errlen) {
    for (int ki = 0; ki < p->kernels.len; ki++) {
        const Kernel *k = &p->kernels.data[ki];
        if (k->stages.len == 0 || k->stages.data[k->stages.len - 1].kind != KS_MAP) {
            snprintf(err, errlen, "%s: the last stage must be a map", k->name);
            return false;
        }
        for (int i = 0; i < k->insts.len; i++) {
            const KInst *in = &k->insts.data[i];
            int ops[3] = {in->a, in->b, in->c};
            int nops = in->kind == KI_ACC || in->kind == KI_CONST || in->kind == KI_OUTER || in->kind == KI_INNER ? 0 : 3;
            for (int x = 0; x < nops; x++) {
                if (ops[x] < 0) continue;
                if (ops[x] >= i) {
                    snprintf(err, errlen, "%s: v%d uses v%d, not an earlier instruction", k->name, i, ops[x]);
                    return false;
                }
                int s = k->insts.data[ops[x]].stage;
                if (s != -1 && s != in->stage) {
                    snprintf(err, errlen, "%s: v%d (stage %d) uses v%d of stage %d", k->name, i, in->stage, ops[x], s);
                    return false;
                }
            }
            if (in->kind == KI_ACC && (in->a < 0 || in->a >= in->stage || in->stage < 0)) {
                snprintf(err, errlen, "%s: v%d reads acc%d from stage %d", k->name, i, in->a, in->stage);
                return false;
            }
            if (in->kind == KI_LOAD && (in->buf < 0 || in->buf >= p->bufs.len)) {
                snprintf(err, errlen, "%s: v%d loads from no buffer", k->name, i);
                return false;
            }
        }
    }
    return true;
}
