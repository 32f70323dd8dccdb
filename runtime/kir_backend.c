/* kir_backend.c - `--device=kir`: the fused kernels run by the kernel-IR
 * interpreter (ir/kinterp.c), one kernel at a time on host memory that
 * the executor (exec.c) binds.  It tests the scheduler apart from any code
 * generator. */
#include "runtime/backend.h"

static void *kir_prepare(const KProgram *kp, const CompileOptions *opt, char *err, size_t errlen) {
    (void)opt, (void)err, (void)errlen;
    return (void *)kp; /* nothing to compile: the interpreter reads the program */
}

static void kir_release(void *prog) { (void)prog; }

static bool kir_launch(void *prog, void *call, int kernel, void *const *bufs, char *err, size_t errlen) {
    (void)call, (void)err, (void)errlen;
    kinterp_run_kernel(prog, kernel, bufs);
    return true;
}

const Backend kir_backend = {
    .name = "kir",
    .summary = "the fused kernels, interpreted (tests the scheduler apart from code generation)",
    .caps = BK_KERNELS | BK_HOST_MEMORY,
    .kernels = {kir_prepare, kir_release, NULL, NULL, kir_launch, NULL},
};
