/* cpu_absent.c - the cpu device of a kiln built without LLVM (make KILN_LLVM=0,
 * e.g. the portable bundle `make gpu-bundle` for GPU machines that have no
 * LLVM 19).  Every entry says so; the other devices work as usual. */
#include "runtime/runtime.h"

static const char NO_LLVM[] = "this kiln was built without LLVM (KILN_LLVM=0): the cpu device, "
                              "--emit=llvm and aot --target=cpu are not available; use --device=cuda, "
                              "cuda-emu, kir or ref";

static void *absent_compile(const IRGraph *g, const CompileOptions *opt, char *err, size_t errlen) {
    (void)g, (void)opt;
    snprintf(err, errlen, "%s", NO_LLVM);
    return NULL;
}

static bool absent_run(void *exe, const KilnTensor *in, KilnTensor *out, char *err, size_t errlen) {
    (void)exe, (void)in, (void)out;
    snprintf(err, errlen, "%s", NO_LLVM);
    return false;
}

static void absent_destroy(void *exe) { (void)exe; }

const Backend cpu_backend = {"cpu", absent_compile, absent_run, absent_destroy, NULL};

KilnStatus cpu_emit_llvm(const IRGraph *g, const CompileOptions *opt, FILE *out, char *err, size_t errlen) {
    (void)g, (void)opt, (void)out;
    snprintf(err, errlen, "%s", NO_LLVM);
    return KILN_ERR_DEVICE;
}

KilnStatus cpu_aot(const IRGraph *g, const CompileOptions *opt, const char *cpu_name, const char *dir,
                   char *err, size_t errlen) {
    (void)g, (void)opt, (void)cpu_name, (void)dir;
    snprintf(err, errlen, "%s", NO_LLVM);
    return KILN_ERR_DEVICE;
}

KilnStatus cpu_check_name(const char *name, char *err, size_t errlen) {
    (void)name;
    snprintf(err, errlen, "--cpu: %s", NO_LLVM);
    return KILN_ERR_USAGE;
}
