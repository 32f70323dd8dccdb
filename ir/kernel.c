/* kernel.c - building kernel programs, printing them as text (`kiln emit
 * --emit=kernels`), verifying them, and what every emitter needs to know
 * about them: index ranges, reduction identities, the check of matmul
 * descriptions, and the legalisation that makes 16-bit rounding and
 * composite math explicit (contracts in kernel.h). */
#include "ir/kernel.h"

#include <math.h>
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
    KBuf b = {kind, index, dt, numel, node, 0, arena_strdup(p->arena, name), false, {0, 0, 0, 0}};
    VEC_PUSH(p->bufs, b);
    return p->bufs.len - 1;
}

Kernel *kprog_add_kernel(KProgram *p, KernelKind kind, const char *name, int64_t outer) {
    Kernel k = {.kind = kind, .outer = outer, .mm = {.a_buf = -1, .b_buf = -1}}; /* no matmul description */
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

static bool r_add(int64_t a, int64_t b, int64_t *r) { return !__builtin_add_overflow(a, b, r); }
static bool r_mul(int64_t a, int64_t b, int64_t *r) { return !__builtin_mul_overflow(a, b, r); }

/* Follows casts back to the instruction that made the value. */
static const KInst *through_casts(const Kernel *k, int i) {
    while (i >= 0 && i < k->insts.len && k->insts.data[i].kind == KI_CAST) i = k->insts.data[i].a;
    return i >= 0 && i < k->insts.len ? &k->insts.data[i] : NULL;
}

/* Where the description puts A's and B's element for output o and r. */
static void matmul_offsets(const KMatmul *mm, int64_t o, int64_t r, int64_t *oa, int64_t *ob) {
    int64_t n = o % mm->n, t = o / mm->n, m = t % mm->m, bi = t / mm->m;
    *oa = mm->a_off + m * mm->a_sm + r * mm->a_sk;
    *ob = mm->b_off + r * mm->b_sk + n * mm->b_sn;
    for (int d = mm->nbatch - 1; d >= 0; d--) {
        int64_t idx = bi % mm->batch_dims[d];
        bi /= mm->batch_dims[d];
        *oa += idx * mm->a_batch_stride[d];
        *ob += idx * mm->b_batch_stride[d];
    }
}

/* The smallest and largest offset a strided operand reaches. */
static void stride_span(int64_t off, const int64_t *extent, const int64_t *stride, int n, int64_t *lo,
                        int64_t *hi) {
    *lo = *hi = off;
    for (int i = 0; i < n; i++) {
        int64_t far = (extent[i] - 1) * stride[i];
        if (far < 0)
            *lo += far;
        else
            *hi += far;
    }
}

/* A matmul kernel's strided description (KMatmul, a_buf >= 0) must say
 * exactly what its instructions compute, since tiled emitters read A and B
 * through it instead: one sum over k of (casts of) two unguarded loads, then
 * an extent-1 map; the dims multiply to the outer range; the loads' indices
 * agree with the strides at sample points; every element the strides reach
 * lies in its buffer. */
static bool verify_matmul(const KProgram *p, const Kernel *k, char *err, size_t errlen) {
    const KMatmul *mm = &k->mm;
    const KStage *red = k->stages.len == 2 ? &k->stages.data[0] : NULL;
    if (!red || red->kind != KS_REDUCE || red->reduce != OP_SUM || k->stages.data[1].extent != 1 ||
        red->extent != mm->k) {
        snprintf(err, errlen, "%s: a described matmul is one sum over k, then a map of extent 1", k->name);
        return false;
    }
    int64_t batch = 1;
    bool dims_ok = mm->m > 0 && mm->n > 0 && mm->k > 0 && mm->nbatch >= 0 &&
                   (mm->nbatch == 0 || (mm->batch_dims && mm->a_batch_stride && mm->b_batch_stride));
    for (int d = 0; dims_ok && d < mm->nbatch; d++)
        dims_ok = mm->batch_dims[d] > 0 && r_mul(batch, mm->batch_dims[d], &batch);
    int64_t mn, outer;
    if (!dims_ok || batch != mm->batch || !r_mul(mm->m, mm->n, &mn) || !r_mul(mn, batch, &outer) ||
        outer != k->outer || mm->a_buf >= p->bufs.len || mm->b_buf < 0 || mm->b_buf >= p->bufs.len) {
        snprintf(err, errlen, "%s: the matmul's dims or buffers do not match the kernel", k->name);
        return false;
    }
    const KInst *v = through_casts(k, red->value);
    const KInst *x = v && v->kind == KI_ELEM && v->op == OP_MUL ? through_casts(k, v->a) : NULL;
    const KInst *y = x ? through_casts(k, v->b) : NULL;
    if (x && y && x->buf == mm->b_buf && y->buf == mm->a_buf && mm->a_buf != mm->b_buf) {
        const KInst *t = x;
        x = y, y = t;
    }
    if (!x || !y || x->kind != KI_LOAD || y->kind != KI_LOAD || x->b >= 0 || y->b >= 0 ||
        x->buf != mm->a_buf || y->buf != mm->b_buf) {
        snprintf(err, errlen, "%s: the matmul's sum is not of A[...] * B[...] as described", k->name);
        return false;
    }
    int64_t os[] = {0, 1, mm->n, mn, k->outer / 2 + 1, k->outer - 1}, rs[] = {0, 1, mm->k / 2, mm->k - 1};
    for (size_t i = 0; i < sizeof os / sizeof os[0]; i++) {
        for (size_t j = 0; j < sizeof rs / sizeof rs[0] && os[i] < k->outer; j++) {
            int64_t want_a, want_b, got_a, got_b;
            if (rs[j] >= mm->k) continue;
            matmul_offsets(mm, os[i], rs[j], &want_a, &want_b);
            if (!kernel_eval_index(k, x->a, os[i], rs[j], &got_a) ||
                !kernel_eval_index(k, y->a, os[i], rs[j], &got_b) || got_a != want_a || got_b != want_b) {
                snprintf(err, errlen,
                         "%s: at o=%lld r=%lld the loads read A[%lld], B[%lld]; the strides say A[%lld], "
                         "B[%lld]",
                         k->name, (long long)os[i], (long long)rs[j], (long long)got_a, (long long)got_b,
                         (long long)want_a, (long long)want_b);
                return false;
            }
        }
    }
    int nd = mm->nbatch + 2;
    int64_t *ext = xcalloc((size_t)nd, sizeof(int64_t)), *sa = xcalloc((size_t)nd, sizeof(int64_t)),
            *sb = xcalloc((size_t)nd, sizeof(int64_t));
    for (int d = 0; d < mm->nbatch; d++)
        ext[d] = mm->batch_dims[d], sa[d] = mm->a_batch_stride[d], sb[d] = mm->b_batch_stride[d];
    ext[nd - 2] = mm->m, sa[nd - 2] = mm->a_sm, sb[nd - 2] = 0;
    ext[nd - 1] = mm->k, sa[nd - 1] = mm->a_sk, sb[nd - 1] = mm->b_sk;
    int64_t alo, ahi, blo, bhi;
    stride_span(mm->a_off, ext, sa, nd, &alo, &ahi);
    ext[nd - 2] = mm->n, sb[nd - 2] = mm->b_sn;
    stride_span(mm->b_off, ext, sb, nd, &blo, &bhi);
    free(ext), free(sa), free(sb);
    if (alo < 0 || ahi >= p->bufs.data[mm->a_buf].numel || blo < 0 || bhi >= p->bufs.data[mm->b_buf].numel) {
        snprintf(err, errlen,
                 "%s: the matmul's strides reach outside A (%lld..%lld of %lld) or B (%lld..%lld of %lld)",
                 k->name, (long long)alo, (long long)ahi, (long long)p->bufs.data[mm->a_buf].numel,
                 (long long)blo, (long long)bhi, (long long)p->bufs.data[mm->b_buf].numel);
        return false;
    }
    return true;
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
            if (in->kind == KI_ELEM) {
                int arity = in->op >= 0 && in->op < OP_COUNT ? op_info[in->op].arity : -1;
                bool ok = arity >= 1 && op_is_elementwise(in->op) && in->a >= 0 &&
                          (in->b >= 0) == (arity >= 2) && (in->c >= 0) == (arity >= 3);
                if (!ok) {
                    snprintf(err, errlen, "%s: v%d is not an elementwise op with its operands", k->name, i);
                    return false;
                }
            }
            if (in->kind == KI_LOAD && (in->buf < 0 || in->buf >= p->bufs.len)) {
                snprintf(err, errlen, "%s: v%d loads from no buffer", k->name, i);
                return false;
            }
        }
        if (k->kind == KK_MATMUL && k->mm.a_buf >= 0 && !verify_matmul(p, k, err, errlen)) return false;
    }
    return true;
}

/* ------------------------------------------------------------ analyses the emitters share */

static bool is_index_arith(KInstKind kind) {
    return kind == KI_IADD || kind == KI_IMUL || kind == KI_IDIV || kind == KI_IMOD;
}

KRange *kernel_index_ranges(const Kernel *k) {
    int n = k->insts.len;
    KRange *rg = xcalloc((size_t)n + 1, sizeof(KRange));
    for (int i = 0; i < n; i++) {
        const KInst *in = &k->insts.data[i];
        KRange *r = &rg[i];
        KRange a = {0}, b = {0};
        if (is_index_arith(in->kind)) {
            if (in->a < 0 || in->b < 0 || in->a >= i || in->b >= i || !rg[in->a].known || !rg[in->b].known)
                continue;
            a = rg[in->a], b = rg[in->b];
        }
        switch (in->kind) {
        case KI_OUTER: *r = (KRange){0, k->outer > 0 ? k->outer - 1 : 0, true}; break;
        case KI_INDEX: *r = (KRange){0, in->value > 1 ? (int64_t)in->value - 1 : 0, true}; break; /* clamped */
        case KI_INNER: {
            int64_t e = in->stage >= 0 && in->stage < k->stages.len ? k->stages.data[in->stage].extent : 1;
            *r = (KRange){0, e > 0 ? e - 1 : 0, true};
            break;
        }
        case KI_CONST:
            if (dtype_is_int(in->dtype)) *r = (KRange){kinst_scalar(in).i, kinst_scalar(in).i, true};
            break;
        case KI_IADD: r->known = r_add(a.lo, b.lo, &r->lo) && r_add(a.hi, b.hi, &r->hi); break;
        case KI_IMUL: {
            int64_t c[4];
            if (!r_mul(a.lo, b.lo, &c[0]) || !r_mul(a.lo, b.hi, &c[1]) || !r_mul(a.hi, b.lo, &c[2]) ||
                !r_mul(a.hi, b.hi, &c[3]))
                break;
            r->lo = r->hi = c[0];
            for (int j = 1; j < 4; j++)
                r->lo = c[j] < r->lo ? c[j] : r->lo, r->hi = c[j] > r->hi ? c[j] : r->hi;
            r->known = true;
            break;
        }
        case KI_IDIV: /* truncating, by a positive divisor */
            if (b.lo <= 0) break;
            r->lo = a.lo >= 0 ? a.lo / b.hi : a.lo / b.lo;
            r->hi = a.hi >= 0 ? a.hi / b.lo : a.hi / b.hi;
            r->known = true;
            break;
        case KI_IMOD: /* takes the dividend's sign, by a positive divisor */
            if (b.lo <= 0) break;
            if (a.lo >= 0)
                *r = (KRange){0, a.hi < b.hi - 1 ? a.hi : b.hi - 1, true};
            else
                *r = (KRange){-(b.hi - 1), b.hi - 1, true};
            break;
        default: break;
        }
    }
    return rg;
}

bool kernel_eval_index(const Kernel *k, int i, int64_t o, int64_t r, int64_t *out) {
    if (i < 0 || i >= k->insts.len) return false;
    const KInst *in = &k->insts.data[i];
    int64_t a, b;
    switch (in->kind) {
    case KI_CONST: *out = dtype_is_intlike(in->dtype) ? kinst_scalar(in).i : (int64_t)in->value; return true;
    case KI_OUTER: *out = o; return true;
    case KI_INNER: *out = r; return true;
    case KI_IADD:
    case KI_IMUL:
    case KI_IDIV:
    case KI_IMOD:
        if (in->a >= i || in->b >= i) return false;
        if (!kernel_eval_index(k, in->a, o, r, &a) || !kernel_eval_index(k, in->b, o, r, &b)) return false;
        if (in->kind == KI_IADD) return r_add(a, b, out);
        if (in->kind == KI_IMUL) return r_mul(a, b, out);
        if (b == 0) return false;
        *out = in->kind == KI_IDIV ? a / b : a % b;
        return true;
    default: return false;
    }
}

Scalar kstage_identity(const KStage *st) {
    bool fl = dtype_is_float(st->acc_dtype);
    switch (st->reduce) {
    case OP_PROD: return fl ? (Scalar){.f = 1.0} : (Scalar){.i = 1};
    case OP_MAX:
    case OP_ARGMAX: return fl ? (Scalar){.f = -INFINITY} : (Scalar){.i = INT64_MIN};
    case OP_MIN:
    case OP_ARGMIN: return fl ? (Scalar){.f = INFINITY} : (Scalar){.i = INT64_MAX};
    default: return fl ? (Scalar){.f = 0.0} : (Scalar){.i = 0};
    }
}

/* ------------------------------------------------------------ legalisation */

typedef struct {
    VEC(KInst) out;
} Legal;

static int lg_push(Legal *lg, KInst in) {
    VEC_PUSH(lg->out, in);
    return lg->out.len - 1;
}

static int lg_cast(Legal *lg, int v, KilnDType to, int stage) {
    if (lg->out.data[v].dtype == to) return v;
    return lg_push(
        lg, (KInst){.kind = KI_CAST, .dtype = to, .a = v, .b = -1, .c = -1, .buf = -1, .stage = stage});
}

static int lg_elem(Legal *lg, Op op, KilnDType dt, int stage, int a, int b, bool flag) {
    KInst in = {.kind = KI_ELEM,
                .dtype = dt,
                .op = op,
                .a = a,
                .b = b,
                .c = -1,
                .buf = -1,
                .stage = stage,
                .flag = flag};
    return lg_push(lg, in);
}

static bool is_half(KilnDType dt) { return dt == KILN_F16 || dt == KILN_BF16; }

/* Whether a KI_ELEM needs legalising: rounding in a 16-bit float. */
static bool needs_legalising(const KInst *in) {
    if (in->kind != KI_ELEM) return false;
    OpKind kind = op_info[in->op].kind;
    bool arith = kind == OK_UNARY || kind == OK_BINARY;
    return arith && is_half(in->dtype) && !op_has(in->op, OPF_EXACT);
}

static void legalise_kernel(Kernel *k) {
    bool any = false;
    for (int i = 0; i < k->insts.len; i++) any = any || needs_legalising(&k->insts.data[i]);
    if (!any) return;
    Legal lg = {0};
    int *map = xcalloc((size_t)k->insts.len + 1, sizeof(int));
    for (int i = 0; i < k->insts.len; i++) {
        KInst in = k->insts.data[i];
        bool operands =
            in.kind != KI_ACC && in.kind != KI_CONST && in.kind != KI_OUTER && in.kind != KI_INNER;
        int *ops[3] = {&in.a, &in.b, &in.c};
        for (int x = 0; x < 3 && operands; x++)
            if (*ops[x] >= 0) *ops[x] = map[*ops[x]];
        if (!needs_legalising(&in)) {
            map[i] = lg_push(&lg, in);
            continue;
        }
        if (!is_half(in.dtype)) { /* a composite in its own dtype */
            map[i] = lg_elem(&lg, in.op, in.dtype, in.stage, in.a, in.b, in.flag);
            continue;
        }
        /* 16-bit floats: operands as the op's dtype (rounded), computed in
         * f32, the result rounded once to the op's dtype */
        int a = lg_cast(&lg, lg_cast(&lg, in.a, in.dtype, in.stage), KILN_F32, in.stage);
        int b = in.b >= 0 ? lg_cast(&lg, lg_cast(&lg, in.b, in.dtype, in.stage), KILN_F32, in.stage) : -1;
        int r = lg_elem(&lg, in.op, KILN_F32, in.stage, a, b, in.flag);
        map[i] = lg_push(
            &lg,
            (KInst){
                .kind = KI_CAST, .dtype = in.dtype, .a = r, .b = -1, .c = -1, .buf = -1, .stage = in.stage});
    }
    for (int s = 0; s < k->stages.len; s++) {
        KStage *st = &k->stages.data[s];
        if (st->value >= 0) st->value = map[st->value];
        for (int j = 0; j < st->stores.len; j++) {
            st->stores.data[j].index = map[st->stores.data[j].index];
            st->stores.data[j].value = map[st->stores.data[j].value];
        }
    }
    VEC_FREE(k->insts);
    k->insts.data = lg.out.data, k->insts.len = lg.out.len, k->insts.cap = lg.out.cap;
    free(map);
}

void kprog_legalise(KProgram *p) {
    for (int i = 0; i < p->kernels.len; i++) legalise_kernel(&p->kernels.data[i]);
}

bool kprog_is_legal(const KProgram *p, char *err, size_t errlen) {
    for (int ki = 0; ki < p->kernels.len; ki++) {
        const Kernel *k = &p->kernels.data[ki];
        for (int i = 0; i < k->insts.len; i++) {
            const KInst *in = &k->insts.data[i];
            if (!needs_legalising(in)) continue;
            snprintf(err, errlen, "%s: v%d (%s on %s) was not legalised (kprog_legalise)", k->name, i,
                     op_info[in->op].name, kiln_dtype_name(in->dtype));
            return false;
        }
    }
    return true;
}

/* Follows casts back to the instruction they convert. */
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
    const KInst *v = through_casts(k, red->value);
    if (!v || v->kind != KI_ELEM || v->op != OP_MUL) return false;
    const KInst *x = through_casts(k, v->a), *y = through_casts(k, v->b);
    if (!x || !y || x->kind != KI_LOAD || y->kind != KI_LOAD) return false;
    if (x->buf == mm->b_buf) {
        const KInst *t = x;
        x = y, y = t;
    }
    if (x->buf != mm->a_buf || y->buf != mm->b_buf || x->b >= 0 || (y->b >= 0 && k->kind != KK_CONV)) return false;
    return true;
}

void kconv_padded_plane(const KConv *cv, int64_t *hp, int64_t *wp) {
    int64_t rows = (cv->oh - 1) * cv->sh + (cv->kh - 1) * cv->dh + 1;
    int64_t cols = (cv->ow - 1) * cv->sw + (cv->kw - 1) * cv->dw + 1;
    *hp = cv->ph + cv->h > rows ? cv->ph + cv->h : rows;
    *wp = cv->pw + cv->w > cols ? cv->pw + cv->w : cols;
}

bool kernel_direct(const KProgram *p, const Kernel *k) {
    const KConv *cv = &k->conv;
    if ((k->kind != KK_CONV && k->kind != KK_POOL) || cv->x_buf < 0 || cv->x_buf >= p->bufs.len ||
        k->stages.len != 2)
        return false;
    const KStage *red = &k->stages.data[0], *map = &k->stages.data[1];
    if (red->kind != KS_REDUCE || red->acc_dtype != KILN_F32 || map->kind != KS_MAP || map->extent != 1)
        return false;
    if (cv->groups <= 0 || cv->c % cv->groups || cv->oc % cv->groups || cv->ow <= 0) return false;
    KilnDType xdt = p->bufs.data[cv->x_buf].dtype;
    if (xdt != KILN_F32 && xdt != KILN_F16 && xdt != KILN_BF16) return false;
    if (cv->op == OP_CONV2D) {
        KGemm g;
        return red->reduce == OP_SUM && kernel_gemm(p, k, &g); /* the same shape of reduction */
    }
    if (cv->groups != cv->c || cv->oc != cv->c) return false;
    return red->reduce == (cv->op == OP_MAXPOOL2D ? OP_MAX : OP_SUM);
}
