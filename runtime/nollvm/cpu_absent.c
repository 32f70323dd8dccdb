/* cpu_absent.c - the cpu device of a kiln built without LLVM (make KILN_LLVM=0,
 * e.g. the portable bundle `make gpu-bundle` for GPU machines that have no
 * LLVM 19).  The table row stays, so `--device=cpu`, `--emit=llvm` and
 * `aot --target=cpu` say why they cannot be used; the other devices work as
 * usual. */
#include "runtime/backend.h"

static const char NO_LLVM[] = "this kiln was built without LLVM (KILN_LLVM=0): the cpu device, "
                              "--emit=llvm and aot --target=cpu are not available; use --device=cuda, "
                              "cuda-emu, kir or ref";

static bool absent_available(char *why, size_t n) {
    snprintf(why, n, "%s", NO_LLVM);
    return false;
}

static KilnStatus absent_emit(const KProgram *kp, const CompileOptions *opt, FILE *out, char *err,
                              size_t errlen) {
    (void)kp, (void)opt, (void)out;
    snprintf(err, errlen, "%s", NO_LLVM);
    return KILN_ERR_DEVICE;
}

static KilnStatus absent_aot(const KProgram *kp, const IRGraph *g, const CompileOptions *opt,
                             const char *variant, const char *dir, char *err, size_t errlen) {
    (void)kp, (void)g, (void)opt, (void)variant, (void)dir;
    snprintf(err, errlen, "%s", NO_LLVM);
    return KILN_ERR_DEVICE;
}

static const EmitStage absent_stages[] = {
    {"llvm", "the kernels as LLVM IR (not in this build)", absent_emit},
    {NULL, NULL, NULL},
};

const Backend cpu_backend = {
    .name = "cpu",
    .summary = "LLVM JIT on the host's cores (not in this build)",
    .caps = BK_KERNELS | BK_HOST_MEMORY,
    .available = absent_available,
    .stages = absent_stages,
    .aot = {absent_aot, NULL},
};

KilnStatus cpu_check_name(const char *name, char *err, size_t errlen) {
    (void)name;
    snprintf(err, errlen, "--cpu: %s", NO_LLVM);
    return KILN_ERR_USAGE;
}
