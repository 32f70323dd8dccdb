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
    KBuf b = {kind, index, dt, numel, node, 0, arena_strdup(p->arena, name), false};
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
    return kinst_const_scalar(k, dt, stage, scalar_from_double(value, dt));
}

int kinst_const_scalar(Kernel *k, KilnDType dt, int stage, Scalar value) {
    int id = kinst(k, KI_CONST, dt, stage, -1, -1, -1);
    kinst_set_scalar(&k->insts.data[id], value);
    return id;
}

void kinst_set_scalar(KInst *in, Scalar v) {
    if (dtype_is_intlike(in->dtype)) {
        in->ivalue = v.i;
        in->value = scalar_to_double(v, in->dtype);
    } else {
        in->value = v.f;
        in->ivalue = 0;
    }
}

Scalar kinst_scalar(const KInst *in) {
    /* an instruction made with only `value` set (ivalue 0) counts by value */
    if (dtype_is_intlike(in->dtype) && (double)in->ivalue == in->value) return (Scalar){.i = in->ivalue};
    return scalar_from_double(in->value, in->dtype);
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
    case KI_CONST:
        if (dtype_is_intlike(in->dtype))
            fprintf(out, "%lld", (long long)kinst_scalar(in).i);
        else
            fprintf(out, "%.9g", in->value);
        break;
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

/* Follows casts back to the instruction they convert. */
static const KInst *uncast(const Kernel *k, int i) {
    while (i >= 0 && k->insts.data[i].kind == KI_CAST) i = k->insts.data[i].a;
    return i >= 0 ? &k->insts.data[i] : NULL;
}

static bool gemm_operand_ok(const KProgram *p, int buf) {
    if (buf < 0 || buf >= p->bufs.len) return false;
    KilnDType dt = p->bufs.data[buf].dtype;
    return dt == KILN_F32 || dt == KILN_F16 || dt == KILN_BF16;
}

/* A conv kernel as a batched product; false when its geometry is not described. */
static bool conv_gemm(const Kernel *k, KGemm *g) {
    const KConv *cv = &k->conv;
    if (cv->x_buf < 0 || cv->w_buf < 0 || cv->op != OP_CONV2D || cv->groups <= 0 || cv->c % cv->groups ||
        cv->oc % cv->groups)
        return false;
    int64_t cg = cv->c / cv->groups, ocg = cv->oc / cv->groups, khw = cv->kh * cv->kw;
    /* the weights must be dense along (c, kh, kw): then k is one stride-1 axis */
    if (cv->ws[3] != 1 || cv->ws[2] != cv->kw || cv->ws[1] != khw || cv->ws[0] < cg * khw) return false;
    KMatmul *mm = &g->mm;
    memset(g, 0, sizeof *g);
    mm->a_buf = cv->w_buf, mm->b_buf = cv->x_buf;
    mm->nbatch = 2;
    g->batch_dims[0] = cv->n, g->batch_dims[1] = cv->groups;
    g->a_batch_stride[0] = 0, g->a_batch_stride[1] = ocg * cv->ws[0];
    g->b_batch_stride[0] = cv->xs[0], g->b_batch_stride[1] = cg * cv->xs[1];
    mm->batch = cv->n * cv->groups;
    mm->m = ocg, mm->n = cv->oh * cv->ow, mm->k = cg * khw;
    mm->a_sm = cv->ws[0], mm->a_sk = 1, mm->a_off = cv->w_off;
    mm->b_off = cv->x_off;
    bool pointwise = khw == 1 && cv->sh == 1 && cv->sw == 1 && cv->ph == 0 && cv->pw == 0 && cv->oh == cv->h &&
                     cv->ow == cv->w && cv->xs[3] == 1 && cv->xs[2] == cv->w;
    if (pointwise) mm->b_sk = cv->xs[1], mm->b_sn = 1;
    else g->conv = cv;
    return true;
}

bool kernel_gemm(const KProgram *p, const Kernel *k, KGemm *g) {
    if (k->kind == KK_MATMUL) {
        memset(g, 0, sizeof *g);
        g->mm = k->mm;
    } else if (k->kind != KK_CONV || !conv_gemm(k, g)) {
        return false;
    }
    KMatmul *mm = &g->mm;
    if (k->kind == KK_CONV) {
        mm->batch_dims = g->batch_dims;
        mm->a_batch_stride = g->a_batch_stride;
        mm->b_batch_stride = g->b_batch_stride;
    }
    if (k->stages.len != 2) return false;
    const KStage *red = &k->stages.data[0], *map = &k->stages.data[1];
    if (red->kind != KS_REDUCE || red->reduce != OP_SUM || red->acc_dtype != KILN_F32 || map->kind != KS_MAP ||
        map->extent != 1)
        return false;
    if (!gemm_operand_ok(p, mm->a_buf) || !gemm_operand_ok(p, mm->b_buf)) return false;
    if (mm->m <= 0 || mm->n <= 0 || mm->k <= 0 || mm->batch <= 0 || mm->k != red->extent ||
        mm->batch * mm->m * mm->n != k->outer || mm->nbatch < 0 || (mm->nbatch > 0 && !mm->batch_dims))
        return false;
    int64_t bprod = 1;
    for (int d = 0; d < mm->nbatch; d++) bprod *= mm->batch_dims[d];
    if (bprod != mm->batch) return false;
    /* the reduction's value: a product of a load of A and one of B (a conv's
     * input load may be guarded by the padding) */
    const KInst *v = uncast(k, red->value);
    if (!v || v->kind != KI_ELEM || v->op != OP_MUL) return false;
    const KInst *x = uncast(k, v->a), *y = uncast(k, v->b);
    if (!x || !y || x->kind != KI_LOAD || y->kind != KI_LOAD) return false;
    if (x->buf == mm->b_buf) {
        const KInst *t = x;
        x = y, y = t;
    }
    if (x->buf != mm->a_buf || y->buf != mm->b_buf || x->b >= 0 || (y->b >= 0 && k->kind != KK_CONV)) return false;
    return true;
}
