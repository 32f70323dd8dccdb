/* backends.c - the registry of devices the command line can name. */
#include "runtime/runtime.h"

#include <string.h>

const Backend *backend_find(const char *name, char *err, size_t errlen) {
    if (strcmp(name, "ref") == 0) return &ref_backend;
    if (strcmp(name, "cpu") == 0 || strcmp(name, "cuda") == 0 || strcmp(name, "cuda-emu") == 0) {
        snprintf(err, errlen, "the '%s' device is not available in this build yet; use --device=ref", name);
        return NULL;
    }
    snprintf(err, errlen, "unknown device '%s' (devices: ref, cpu, cuda, cuda-emu)", name);
    return NULL;
}

const char *backend_default(void) { return "ref"; }
