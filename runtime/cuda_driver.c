/* cuda_driver.c - libcuda.so.1 through dlopen/dlsym; every call checked.
 * Contract: cuda_driver_get() is the only way to the driver; see
 * cuda_driver.h for who owns what. */
#include "runtime/cuda_driver.h"

#include <dlfcn.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* The driver table: written once under `once`, read-only afterwards (but for
 * the allocation counter of the test hook, updated atomically). */
static CudaDriver table;
static char table_why[512];
static bool table_ok;
static pthread_once_t once = PTHREAD_ONCE_INIT;

const char *cuda_result_advice(CUresult r) {
    switch ((int)r) {
    case CUDA_ERROR_STUB_LIBRARY:
        return "libcuda is the CUDA toolkit's stub library, not a driver: no NVIDIA driver is installed "
               "on this machine (use a device that runs on the host: `kiln help run` lists them)";
    case CUDA_ERROR_NO_DEVICE:
        return "the driver found no CUDA-capable GPU (check nvidia-smi and CUDA_VISIBLE_DEVICES)";
    case CUDA_ERROR_UNSUPPORTED_PTX_VERSION:
        return "the PTX was written by a newer NVRTC than this driver understands: update the NVIDIA "
               "driver, or use a CUDA toolkit no newer than the driver";
    case CUDA_ERROR_OUT_OF_MEMORY:
        return "the GPU does not have enough free memory for this graph (smaller sizes, or free the GPU "
               "used by other processes)";
    case CUDA_ERROR_SYSTEM_DRIVER_MISMATCH:
        return "the NVIDIA kernel module and libcuda.so.1 are of different versions (reboot or reinstall the driver)";
    case CUDA_ERROR_ILLEGAL_ADDRESS:
    case CUDA_ERROR_MISALIGNED_ADDRESS:
    case CUDA_ERROR_ILLEGAL_INSTRUCTION:
    case CUDA_ERROR_HARDWARE_STACK_ERROR:
    case CUDA_ERROR_LAUNCH_FAILED:
    case CUDA_ERROR_LAUNCH_TIMEOUT:
    case CUDA_ERROR_ASSERT:
        return "a kernel faulted and the context is unusable afterwards; the driver reports a fault at a "
               "later "
               "call, not necessarily the faulting kernel's own (KILN_CUDA_SYNC=1 synchronises after every "
               "launch "
               "to name it)";
    case CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES:
        return "the kernel needs more registers or shared memory per block than the GPU has for this launch";
    case CUDA_ERROR_INVALID_PTX: return "the driver's JIT compiler refused the PTX";
    case CUDA_ERROR_NO_BINARY_FOR_GPU:
        return "the code was compiled for another GPU architecture than this one (check --arch)";
    default:
        return "";
    }
}

bool cuda_check(const CudaDriver *d, CUresult r, const char *call, const char *file, int line, char *err,
                size_t errlen) {
    if (r == CUDA_SUCCESS) return true;
    const char *name = NULL, *text = NULL;
    if (d && d->GetErrorName && d->GetErrorName(r, &name) != CUDA_SUCCESS) name = NULL;
    if (d && d->GetErrorString && d->GetErrorString(r, &text) != CUDA_SUCCESS) text = NULL;
    if (!name) { /* the stub library names nothing */
        static const struct {
            CUresult r;
            const char *name;
        } known[] = {{CUDA_ERROR_OUT_OF_MEMORY, "CUDA_ERROR_OUT_OF_MEMORY"},
                     {CUDA_ERROR_STUB_LIBRARY, "CUDA_ERROR_STUB_LIBRARY"},
                     {CUDA_ERROR_NO_DEVICE, "CUDA_ERROR_NO_DEVICE"},
                     {CUDA_ERROR_UNSUPPORTED_PTX_VERSION, "CUDA_ERROR_UNSUPPORTED_PTX_VERSION"}};
        for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
            if (known[i].r == r) name = known[i].name;
    }
    const char *advice = cuda_result_advice(r);
    snprintf(err, errlen, "%s failed at %s:%d: %s (%d: %s)%s%s", call, file, line, name ? name : "CUDA error",
             (int)r, text ? text : "no description", advice[0] ? ": " : "", advice);
    return false;
}

CUresult cuda_mem_alloc(const CudaDriver *d, CUdeviceptr *p, size_t bytes) {
    long n = __atomic_add_fetch(&table.allocs, 1, __ATOMIC_RELAXED);
    if (d->fail_alloc_after > 0 && n >= d->fail_alloc_after) return CUDA_ERROR_OUT_OF_MEMORY;
    return d->MemAlloc(p, bytes);
}

static void load(void) {
    const char *path = getenv("KILN_LIBCUDA");
    if (!path || !*path) path = "libcuda.so.1";
    table.path = path;
    table.lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (!table.lib) {
        const char *e = dlerror();
        snprintf(table_why, sizeof table_why,
                 "no CUDA driver: cannot load %s (%s); the NVIDIA driver is not installed here", path,
                 e ? e : "not found");
        return;
    }
#define CUDA_DRIVER_LOOKUP(field, fn, sym, req)                                                   \
    {                                                                                             \
        void *sym_ = dlsym(table.lib, sym);                                                       \
        memcpy(&table.field, &sym_, sizeof sym_);                                                 \
    }                                                                                             \
    if (!table.field && req) {                                                                    \
        snprintf(table_why, sizeof table_why, "%s has no symbol %s: the NVIDIA driver is too old", path, sym); \
        goto fail;                                                                                \
    }
    CUDA_DRIVER_FUNCS(CUDA_DRIVER_LOOKUP)
#undef CUDA_DRIVER_LOOKUP
    if (!table.EventElapsedTime) {
        void *sym = dlsym(table.lib, "cuEventElapsedTime");
        memcpy(&table.EventElapsedTime, &sym, sizeof sym);
    }
    if (!table.EventElapsedTime) {
        snprintf(table_why, sizeof table_why, "%s has no cuEventElapsedTime: the NVIDIA driver is too old", path);
        goto fail;
    }
    const char *fail = getenv("KILN_CUDA_FAIL_ALLOC");
    if (fail && *fail) table.fail_alloc_after = strtol(fail, NULL, 10);

    char err[400];
    size_t errlen = sizeof err;
    table.init_result = table.Init(0);
    if (!CU(&table, DriverGetVersion, &table.version)) table.version = 0;
    if (table.init_result != CUDA_SUCCESS) {
        cuda_check(&table, table.init_result, "cuInit(0)", __FILE__, __LINE__, err, errlen);
        snprintf(table_why, sizeof table_why, "%s", err);
        goto fail_keep;
    }
    if (!CU(&table, DeviceGetCount, &table.device_count)) {
        snprintf(table_why, sizeof table_why, "%s", err);
        goto fail_keep;
    }
    if (table.device_count == 0) {
        snprintf(table_why, sizeof table_why, "the CUDA driver found no GPU (%s)",
                 cuda_result_advice(CUDA_ERROR_NO_DEVICE));
        goto fail_keep;
    }
    table_ok = true;
    return;
fail:
    dlclose(table.lib);
    table.lib = NULL;
fail_keep:
    /* The library stays loaded (the functions may still name errors) but
     * the table is reported unusable. */
    return;
}

const CudaDriver *cuda_driver_get(char *why, size_t n) {
    pthread_once(&once, load);
    if (table_ok) return &table;
    if (why && n) snprintf(why, n, "%s", table_why);
    return NULL;
}

const CudaDriver *cuda_driver_loaded(void) {
    pthread_once(&once, load);
    return table.lib ? &table : NULL;
}

void cuda_driver_unload(void) {
    if (table.lib) dlclose(table.lib);
    table.lib = NULL;
    table_ok = false;
    snprintf(table_why, sizeof table_why, "the CUDA driver was unloaded");
}
