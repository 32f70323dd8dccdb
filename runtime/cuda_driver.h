/* cuda_driver.h - the CUDA driver API, loaded at run time.
 *
 * kiln never links -lcuda: a binary linked against it (even against the stub)
 * cannot start where no driver is installed.  cuda_driver_get() dlopen()s
 * libcuda.so.1 on first use and looks up every function kiln calls by its
 * versioned symbol name (cuMemAlloc_v2, ...); cuda.h gives the prototypes.
 *
 * Ownership: the one piece of process-wide state is the driver table below.
 * It is created lazily by the first cuda_driver_get() (under a pthread_once),
 * is immutable afterwards except for the test hook `fail_alloc_after`, and is
 * owned by the process; cuda_driver_unload() (tests, leak checkers) closes the
 * library once nothing uses it any more.  Contexts, modules and device memory
 * are NOT in the table: whoever creates them owns them (runtime/cuda.c keeps
 * them in its executable and releases them in its destroy function).
 *
 * Environment: KILN_LIBCUDA=PATH loads another library than libcuda.so.1
 * (e.g. the toolkit's stub, to test the messages); KILN_CUDA_FAIL_ALLOC=N
 * makes the Nth device allocation (1-based) fail with out of memory, to test
 * the error paths. */
#ifndef KILN_CUDA_DRIVER_H
#define KILN_CUDA_DRIVER_H

#include "codegen/cuda.h"
#include "runtime/kcache.h"
#include "runtime/exec.h"

#include <cuda.h>

/* X(field, function as named by cuda.h, symbol looked up, required) */
#define CUDA_DRIVER_FUNCS(X)                                                                                 \
    X(Init, cuInit, "cuInit", 1)                                                                             \
    X(DriverGetVersion, cuDriverGetVersion, "cuDriverGetVersion", 1)                                         \
    X(GetErrorName, cuGetErrorName, "cuGetErrorName", 1)                                                     \
    X(GetErrorString, cuGetErrorString, "cuGetErrorString", 1)                                               \
    X(DeviceGetCount, cuDeviceGetCount, "cuDeviceGetCount", 1)                                               \
    X(DeviceGet, cuDeviceGet, "cuDeviceGet", 1)                                                              \
    X(DeviceGetName, cuDeviceGetName, "cuDeviceGetName", 1)                                                  \
    X(DeviceGetAttribute, cuDeviceGetAttribute, "cuDeviceGetAttribute", 1)                                   \
    X(DevicePrimaryCtxRetain, cuDevicePrimaryCtxRetain, "cuDevicePrimaryCtxRetain", 1)                       \
    X(DevicePrimaryCtxRelease, cuDevicePrimaryCtxRelease, "cuDevicePrimaryCtxRelease_v2", 1)                 \
    X(CtxSetCurrent, cuCtxSetCurrent, "cuCtxSetCurrent", 1)                                                  \
    X(CtxSynchronize, cuCtxSynchronize, "cuCtxSynchronize", 1)                                               \
    X(MemAlloc, cuMemAlloc, "cuMemAlloc_v2", 1)                                                              \
    X(MemFree, cuMemFree, "cuMemFree_v2", 1)                                                                 \
    X(MemGetInfo, cuMemGetInfo, "cuMemGetInfo_v2", 1)                                                        \
    X(MemcpyHtoD, cuMemcpyHtoD, "cuMemcpyHtoD_v2", 1)                                                        \
    X(MemcpyDtoH, cuMemcpyDtoH, "cuMemcpyDtoH_v2", 1)                                                        \
    X(MemcpyDtoD, cuMemcpyDtoD, "cuMemcpyDtoD_v2", 1)                                                        \
    X(ModuleLoadData, cuModuleLoadData, "cuModuleLoadData", 1)                                               \
    X(ModuleLoadDataEx, cuModuleLoadDataEx, "cuModuleLoadDataEx", 1)                                         \
    X(ModuleUnload, cuModuleUnload, "cuModuleUnload", 1)                                                     \
    X(ModuleGetFunction, cuModuleGetFunction, "cuModuleGetFunction", 1)                                      \
    X(FuncSetAttribute, cuFuncSetAttribute, "cuFuncSetAttribute", 1)                                         \
    X(LaunchKernel, cuLaunchKernel, "cuLaunchKernel", 1)                                                     \
    X(EventCreate, cuEventCreate, "cuEventCreate", 1)                                                        \
    X(EventDestroy, cuEventDestroy, "cuEventDestroy_v2", 1)                                                  \
    X(EventRecord, cuEventRecord, "cuEventRecord", 1)                                                        \
    X(EventSynchronize, cuEventSynchronize, "cuEventSynchronize", 1)                                         \
    X(EventElapsedTime, cuEventElapsedTime, "cuEventElapsedTime_v2", 0)

typedef struct CudaDriver {
    void *lib;         /* the dlopen() handle */
    const char *path;  /* what was loaded */
    int version;       /* cuDriverGetVersion: 13000 for CUDA 13.0 */
    int device_count;
    CUresult init_result; /* of cuInit(0) */
    /* Older drivers lack cuEventElapsedTime_v2: then this is the v1 symbol. */
#define CUDA_DRIVER_FIELD(field, fn, sym, req) __typeof__(fn) *field;
    CUDA_DRIVER_FUNCS(CUDA_DRIVER_FIELD)
#undef CUDA_DRIVER_FIELD
    long fail_alloc_after; /* KILN_CUDA_FAIL_ALLOC; 0: never (test hook) */
    long allocs;           /* device allocations made so far (for the hook) */
} CudaDriver;

/* The driver table, loaded and cuInit()ed on first use; NULL with the reason
 * (meant for the user) when there is no usable driver: no libcuda.so.1, the
 * stub library, no device.  Thread-safe. */
const CudaDriver *cuda_driver_get(char *why, size_t n);
/* The table as loaded even when unusable (its version, path), or NULL when
 * no library could be loaded: for reports such as `kiln env`. */
const CudaDriver *cuda_driver_loaded(void);
/* Closes the library (tests only: nothing may use the table afterwards). */
void cuda_driver_unload(void);

/* Checks the result of one driver call.  On failure writes "CALL failed at
 * FILE:LINE: CUDA_ERROR_X (driver's text)" plus advice for the common codes
 * into err and returns false. */
bool cuda_check(const CudaDriver *d, CUresult r, const char *call, const char *file, int line, char *err,
                size_t errlen);
/* CU(d, Fn, args...) calls d->Fn(args...) and checks it; needs `err` and
 * `errlen` in scope.  Evaluates to true on success. */
#define CU(d, fn, ...) cuda_check((d), (d)->fn(__VA_ARGS__), "cu" #fn "(" #__VA_ARGS__ ")", __FILE__, __LINE__, err, errlen)

/* The device allocation choke point (honours KILN_CUDA_FAIL_ALLOC). */
CUresult cuda_mem_alloc(const CudaDriver *d, CUdeviceptr *p, size_t bytes);

/* Advice for a CUresult that users meet ("", when none). */
const char *cuda_result_advice(CUresult r);

/* ---------------------------------------------------- runtime/cuda.c
 * kiln's CUDA build pipeline, shared by the cuda backend, --emit=cuda/ptx and
 * `aot --target=cuda` (runtime/aot_cuda.c). */

/* What to build for: the architecture the CUDA C is written for, whether
 * the user chose it (--arch), PTX or SASS, and the GPU's (0: none). */
typedef struct {
    int sm;
    bool user_arch;
    NvrtcOutput output;
    int device_sm;
} CudaTarget;

/* One kernel program built for one target: cuda_codegen, and with want_code
 * the PTX or SASS (from the kernel cache, else NVRTC, then stored).  Owns
 * what it points to except the kernel program, which must outlive it. */
typedef struct {
    const KProgram *kp;
    CudaProgram cp;
    int arch_sm;
    char *ptx; /* NUL-terminated; ptx_len excludes the NUL.  A cubin when output is NVRTC_CUBIN */
    size_t ptx_len;
    NvrtcOutput output;
    int code_sm;        /* what NVRTC compiled for (cuda_choose_arch); 0 on a cache hit */
    KCacheResult cache; /* KC_OFF when no PTX was wanted */
    double codegen_ms, ptx_ms;
} CudaBuild;

KilnStatus cuda_build(const KProgram *kp, const CompileOptions *opt, int arch_sm, bool want_ptx, CudaBuild *b,
                      char *err, size_t errlen);
/* The same for any target: PTX or SASS (SASS only with want_code). */
KilnStatus cuda_build_target(const KProgram *kp, const CompileOptions *opt, const CudaTarget *t,
                             bool want_code, CudaBuild *b, char *err, size_t errlen);
void cuda_build_free(CudaBuild *b);
/* "sm_90", "90" or "compute_90" -> 90. */
bool cuda_parse_arch(const char *s, int *sm, char *err, size_t errlen);
/* opt->arch if given, else the GPU's compute capability, else sm_90. */
bool cuda_target_arch(const CompileOptions *opt, int *sm, char *err, size_t errlen);
/* Bytes of one buffer; the device layout of one run (see cuda.c): fills
 * off[p->bufs.len] and returns the bytes of the one allocation. */
int64_t cuda_buf_bytes(const KBuf *b);
int64_t cuda_layout(const KProgram *p, int64_t *off);
/* Whether a CUDA driver and device can be used; if not, why (for the user). */
bool cuda_available(char *why, size_t n);

/* runtime/aot_cuda.c: `aot --target=cuda[:sm_XX]` (the cuda backend's aot). */
KilnStatus cuda_aot(const KProgram *kp, const IRGraph *g, const CompileOptions *opt, const char *variant,
                    const char *dir, char *err, size_t errlen);

/* ---------------------------------------------------- runtime/cuda_compat.c
 * Which code the driver can load (versions as 1000 * major + 10 * minor). */

/* The oldest Linux driver branch for a CUDA version (580 for 13.0; 0 unknown). */
int cuda_min_linux_driver(int cuda_version);
/* "CUDA 13.0 (Linux driver R580 or newer)" */
void cuda_version_text(int cuda_version, StrBuf *sb);
/* PTX when the driver can JIT-compile NVRTC's PTX, SASS when it is older but
 * of the same major version (or force_sass), else false with a message
 * giving both versions and what to do. */
bool cuda_choose_output(int nvrtc_version, int driver_version, bool force_sass, NvrtcOutput *out, char *err,
                        size_t errlen);
/* The architecture to compile for: wanted_sm when NVRTC lists it (for SASS,
 * the GPU's), else the newest listed that runs on the GPU (not for an
 * explicit --arch with PTX); false with the list when none does. */
bool cuda_choose_arch(const NvrtcInfo *info, NvrtcOutput out, int wanted_sm, bool user_arch, int device_sm,
                      int *arch, char *err, size_t errlen);

#endif
