/* cpu_absent.c - the cpu device of a kiln built without LLVM (make KILN_LLVM=0,
 * e.g. the portable bundle `make gpu-bundle` for GPU machines that have no
 * LLVM 19).  The table row stays, so `--device=cpu`, `--emit=llvm` and
 * `aot --target=cpu` say why they cannot be used; the other devices work as
 * usual. */
#include "runtime/backend.h"

extern const Backend cpu_backend; /* this file's row, below */

/* Why the cpu device cannot be used, after `prefix`, naming the devices of
 * the table that can (so a new backend is offered without an edit here). */
static void no_llvm(const char *prefix, char *err, size_t errlen) {
    StrBuf others = {0};
    for (int i = 0; i < backend_count(); i++)
        if (backend_at(i) != &cpu_backend)
            sb_printf(&others, "%s%s", others.len ? ", " : "", backend_at(i)->name);
    snprintf(err, errlen,
             "%sthis kiln was built without LLVM (KILN_LLVM=0): the cpu device, --emit=llvm and "
             "aot --target=cpu are not available; use --device=NAME for one of: %s",
             prefix, others.data ? others.data : "");
    sb_free(&others);
}

static bool absent_available(char *why, size_t n) {
    no_llvm("", why, n);
    return false;
}

static KilnStatus absent_emit(const KProgram *kp, const CompileOptions *opt, FILE *out, char *err,
                              size_t errlen) {
    (void)kp, (void)opt, (void)out;
    no_llvm("", err, errlen);
    return KILN_ERR_DEVICE;
}

static KilnStatus absent_aot(const KProgram *kp, const IRGraph *g, const CompileOptions *opt,
                             const char *variant, const char *dir, char *err, size_t errlen) {
    (void)kp, (void)g, (void)opt, (void)variant, (void)dir;
    no_llvm("", err, errlen);
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
    no_llvm("--cpu: ", err, errlen);
    return KILN_ERR_USAGE;
}
