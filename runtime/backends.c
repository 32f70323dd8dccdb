/* backends.c - the registry of devices the command line can name, and the
 * default choice: cuda where a driver and a GPU are found, else cpu. */
#include "runtime/runtime.h"

#include <string.h>

const Backend *backend_find(const char *name, char *err, size_t errlen) {
    if (strcmp(name, "ref") == 0) return &ref_backend;
    if (strcmp(name, "kir") == 0) return &kir_backend;
    if (strcmp(name, "cpu") == 0) return &cpu_backend;
    if (strcmp(name, "cuda-emu") == 0) return &cuda_emu_backend;
    if (strcmp(name, "cuda") == 0) {
        char why[256];
        if (cuda_available(why, sizeof why)) return &cuda_backend;
        snprintf(err, errlen, "--device=cuda: %s", why);
        return NULL;
    }
    snprintf(err, errlen, "unknown device '%s' (devices: ref, cpu, cuda, cuda-emu)", name);
    return NULL;
}

const char *backend_default(void) {
    char why[256];
    if (cuda_available(why, sizeof why)) return "cuda";
#ifdef KILN_NO_LLVM
    return "ref"; /* built without LLVM: no cpu device */
#else
    return "cpu";
#endif
}
