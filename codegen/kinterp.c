/* kinterp.c - a plain interpreter of the kernel IR, behind `--device=kir`
 * (runtime/kir_backend.c).  It runs the fused kernels exactly as
 * codegen/kernel.h describes them, so the scheduler (passes/fuse.c) is
 * tested against NumPy apart from any code generator: a wrong result here is
 * the scheduler's, not LLVM's or CUDA's. */
#include "codegen/kernel.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static double load(const KBuf *b, void *base, int64_t i) {
    KilnTensor t = {.dtype = b->dtype, .rank = 0, .data = base};
    return kiln_tensor_get(&t, i);
}

static void store(const KBuf *b, void *base, int64_t i, double v) {
    switch (b->dtype) {
    case KILN_F32: ((float *)base)[i] = (float)v; break;
    case KILN_F64: ((double *)base)[i] = v; break;
    case KILN_F16: ((uint16_t *)base)[i] = kiln_f32_to_f16((float)ref_round_to_dtype(v, KILN_F16)); break;
    case KILN_BF16: ((uint16_t *)base)[i] = kiln_f32_to_bf16((float)ref_round_to_dtype(v, KILN_BF16)); break;
    case KILN_I32: ((int32_t *)base)[i] = (int32_t)v; break;
    case KILN_I64: ((int64_t *)base)[i] = (int64_t)v; break;
    case KILN_BOOL: ((uint8_t *)base)[i] = v != 0; break;
    default: break;
    }
}

/* Evaluates the instructions of scope `scope` for the current o and r. */
static void eval_scope(const Kernel *k, const KProgram *p, void *const *bufs, double *val, const double *acc,
                       int scope, int64_t o, int64_t r) {
    for (int i = 0; i < k->insts.len; i++) {
        const KInst *in = &k->insts.data[i];
        if (in->stage != scope) continue;
        double a = in->a >= 0 && in->kind != KI_ACC ? val[in->a] : 0, b = in->b >= 0 ? val[in->b] : 0;
        double v = 0;
        switch (in->kind) {
        case KI_CONST: v = in->value; break;
        case KI_OUTER: v = (double)o; break;
        case KI_INNER: v = (double)r; break;
        case KI_ACC: v = acc[in->a]; break;
        case KI_LOAD:
            v = (in->b < 0 || b != 0) ? load(&p->bufs.data[in->buf], bufs[in->buf], (int64_t)a) : 0;
            v = ref_round_to_dtype(v, in->dtype);
            break;
        case KI_ELEM: {
            double ops[3] = {a, b, in->c >= 0 ? val[in->c] : 0};
            v = ref_eval_elementwise(in->op, in->dtype, in->flag, ops);
            break;
        }
        case KI_CAST: v = ref_round_to_dtype(dtype_is_int(in->dtype) ? trunc(a) : a, in->dtype); break;
        case KI_IADD: v = a + b; break;
        case KI_IMUL: v = a * b; break;
        case KI_IDIV: v = (double)((int64_t)a / (int64_t)b); break;
        case KI_IMOD: v = (double)((int64_t)a % (int64_t)b); break;
        case KI_ILT: v = a < b; break;
        case KI_INDEX: {
            int64_t i = (int64_t)a, n = (int64_t)in->value;
            if (i < 0) i += n;
            v = (double)(i < 0 ? 0 : i >= n ? n - 1 : i);
            break;
        }
        }
        val[i] = v;
    }
}

void kinterp_run_kernel(const KProgram *p, int kernel, void *const *bufs) {
    const Kernel *k = &p->kernels.data[kernel];
    double *val = xcalloc((size_t)k->insts.len + 1, sizeof(double));
    double *acc = xcalloc((size_t)k->stages.len + 1, sizeof(double));
    for (int64_t o = 0; o < k->outer; o++) {
        eval_scope(k, p, bufs, val, acc, -1, o, 0);
        for (int s = 0; s < k->stages.len; s++) {
            const KStage *st = &k->stages.data[s];
            double best = 0, cur = 0;
            int64_t best_i = -1;
            switch (st->reduce) {
            case OP_PROD: cur = 1; break;
            case OP_MAX: cur = -INFINITY; break;
            case OP_MIN: cur = INFINITY; break;
            default: cur = 0; break;
            }
            for (int64_t r = 0; r < st->extent; r++) {
                eval_scope(k, p, bufs, val, acc, s, o, r);
                if (st->kind == KS_MAP) {
                    for (int j = 0; j < st->stores.len; j++) {
                        const KStore *sto = &st->stores.data[j];
                        store(&p->bufs.data[sto->buf], bufs[sto->buf], (int64_t)val[sto->index], val[sto->value]);
                    }
                    continue;
                }
                double x = val[st->value];
                switch (st->reduce) {
                case OP_SUM: cur += x; break;
                case OP_PROD: cur *= x; break;
                case OP_MAX: cur = (isnan(x) || x > cur) ? x : cur; break;
                case OP_MIN: cur = (isnan(x) || x < cur) ? x : cur; break;
                case OP_ARGMAX:
                case OP_ARGMIN:
                    if (best_i < 0 || (!isnan(best) && (isnan(x) || (st->reduce == OP_ARGMAX ? x > best : x < best)))) {
                        best = x;
                        best_i = r;
                    }
                    break;
                default: break;
                }
            }
            if (st->kind == KS_REDUCE)
                acc[s] = (st->reduce == OP_ARGMAX || st->reduce == OP_ARGMIN) ? (double)best_i
                                                                              : ref_round_to_dtype(cur, st->acc_dtype);
        }
    }
    free(val);
    free(acc);
}
