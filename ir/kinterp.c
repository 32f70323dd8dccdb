/* kinterp.c - a plain interpreter of the kernel IR, behind `--device=kir`
 * (runtime/kir_backend.c).  It runs the fused kernels exactly as
 * ir/kernel.h describes them, so the scheduler (passes/fuse.c) is
 * tested against NumPy apart from any code generator: a wrong result here is
 * the scheduler's, not LLVM's or CUDA's. */
#include "ir/kernel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Element i of buffer b, as a Scalar of the buffer's dtype (exact). */
static Scalar load(const KBuf *b, void *base, int64_t i) {
    KilnTensor t = {.dtype = b->dtype, .rank = 0, .data = base};
    if (dtype_is_intlike(b->dtype)) return (Scalar){.i = kiln_tensor_get_i64(&t, i)};
    return (Scalar){.f = kiln_tensor_get(&t, i)};
}

/* Stores v (of dtype vt) into element i of buffer b, converted as a cast. */
static void store(const KBuf *b, void *base, int64_t i, Scalar v, KilnDType vt) {
    KilnTensor t = {.dtype = b->dtype, .rank = 0, .data = base};
    Scalar x = scalar_convert(v, vt, b->dtype);
    if (dtype_is_intlike(b->dtype))
        kiln_tensor_set_i64(&t, i, x.i);
    else
        kiln_tensor_set(&t, i, x.f); /* already of the buffer's dtype: exact */
}

/* Evaluates the instructions of scope `scope` for the current o and r. */
static void eval_scope(const Kernel *k, const KProgram *p, void *const *bufs, Scalar *val, const Scalar *acc,
                       int scope, int64_t o, int64_t r) {
    for (int i = 0; i < k->insts.len; i++) {
        const KInst *in = &k->insts.data[i];
        if (in->stage != scope) continue;
        Scalar a = in->a >= 0 && in->kind != KI_ACC ? val[in->a] : (Scalar){0},
               b = in->b >= 0 ? val[in->b] : (Scalar){0};
        KilnDType at = in->a >= 0 && in->kind != KI_ACC ? k->insts.data[in->a].dtype : KILN_I64;
        Scalar v = {0};
        switch (in->kind) {
        case KI_CONST: v = kinst_scalar(in); break;
        case KI_OUTER: v.i = o; break;
        case KI_INNER: v.i = r; break;
        case KI_ACC: v = acc[in->a]; break;
        case KI_LOAD: {
            const KBuf *kb = &p->bufs.data[in->buf];
            if (in->b < 0 || b.i != 0)
                v = scalar_convert(load(kb, bufs[in->buf], a.i), kb->dtype, in->dtype);
            else
                v = scalar_from_int(0, in->dtype);
            break;
        }
        case KI_ELEM: {
            Scalar ops[3] = {a, b, in->c >= 0 ? val[in->c] : (Scalar){0}};
            KilnDType in_dt = in->op == OP_WHERE ? k->insts.data[in->b].dtype : at;
            v = ref_eval_scalar(in->op, in->dtype, in_dt, in->flag, ops);
            break;
        }
        case KI_CAST: v = scalar_convert(a, at, in->dtype); break;
        case KI_IADD: v.i = (int64_t)((uint64_t)a.i + (uint64_t)b.i); break;
        case KI_IMUL: v.i = (int64_t)((uint64_t)a.i * (uint64_t)b.i); break;
        case KI_IDIV: v.i = b.i ? a.i / b.i : 0; break;
        case KI_IMOD: v.i = b.i ? a.i % b.i : 0; break;
        case KI_ILT: v.i = a.i < b.i; break;
        case KI_INDEX: {
            int64_t i = a.i, n = (int64_t)in->value;
            if (i < 0) i += n;
            v.i = i < 0 ? 0 : i >= n ? n - 1 : i;
            break;
        }
        }
        val[i] = v;
    }
}

/* Whether x should replace the best so far (max/min and the arg forms;
 * the first NaN wins and stays). */
static bool kbetter(Op op, Scalar x, Scalar best, bool intlike) {
    bool is_max = op == OP_MAX || op == OP_ARGMAX;
    if (intlike) return is_max ? x.i > best.i : x.i < best.i;
    if (isnan(best.f)) return false;
    return isnan(x.f) || (is_max ? x.f > best.f : x.f < best.f);
}

void kinterp_run_kernel(const KProgram *p, int kernel, void *const *bufs) {
    const Kernel *k = &p->kernels.data[kernel];
    Scalar *val = xcalloc((size_t)k->insts.len + 1, sizeof(Scalar));
    Scalar *acc = xcalloc((size_t)k->stages.len + 1, sizeof(Scalar));
    for (int64_t o = 0; o < k->outer; o++) {
        eval_scope(k, p, bufs, val, acc, -1, o, 0);
        for (int s = 0; s < k->stages.len; s++) {
            const KStage *st = &k->stages.data[s];
            KilnDType vt = st->value >= 0 ? k->insts.data[st->value].dtype : KILN_F64;
            bool intlike = dtype_is_intlike(vt);
            /* floats accumulate in double and round once to acc_dtype; integers wrap in int64 */
            Scalar cur = kstage_identity(st), best = {0};
            int64_t best_i = -1;
            for (int64_t r = 0; r < st->extent; r++) {
                eval_scope(k, p, bufs, val, acc, s, o, r);
                if (st->kind == KS_MAP) {
                    for (int j = 0; j < st->stores.len; j++) {
                        const KStore *sto = &st->stores.data[j];
                        store(&p->bufs.data[sto->buf], bufs[sto->buf], val[sto->index].i, val[sto->value],
                              k->insts.data[sto->value].dtype);
                    }
                    continue;
                }
                Scalar x = val[st->value];
                switch (st->reduce) {
                case OP_SUM:
                    if (intlike)
                        cur.i = (int64_t)((uint64_t)cur.i + (uint64_t)x.i);
                    else
                        cur.f += x.f;
                    break;
                case OP_PROD:
                    if (intlike)
                        cur.i = (int64_t)((uint64_t)cur.i * (uint64_t)x.i);
                    else
                        cur.f *= x.f;
                    break;
                case OP_MAX:
                case OP_MIN:
                    if (kbetter(st->reduce, x, cur, intlike)) cur = x;
                    break;
                case OP_ARGMAX:
                case OP_ARGMIN:
                    if (best_i < 0 || kbetter(st->reduce, x, best, intlike)) {
                        best = x;
                        best_i = r;
                    }
                    break;
                default: break;
                }
            }
            if (st->kind == KS_REDUCE) {
                if (st->reduce == OP_ARGMAX || st->reduce == OP_ARGMIN)
                    acc[s] = scalar_from_int(best_i, st->result_dtype);
                else
                    acc[s] = scalar_convert(cur, intlike ? KILN_I64 : KILN_F64, st->result_dtype);
            }
        }
    }
    free(val);
    free(acc);
}
