/* cuda_env.c - `kiln env`: what kiln finds of CUDA on this machine, as shell
 * assignments (KILN_NAME='value'), so that scripts use the one toolkit search
 * (runtime/cuda_toolkit.c) and people see in one place what a GPU run will
 * use: the toolkit and how it was found, NVRTC and its builtins, headers,
 * ptxas, the driver and the GPU, and why any of them is unusable.
 *
 * Contract: cuda_env_describe() never fails; an empty value means "none".
 * It loads NVRTC and the driver (to ask their versions), nothing else. */
#include "runtime/cuda_driver.h"
#include "runtime/cuda_toolkit.h"

#include <string.h>

/* NAME='value' with the value quoted for sh. */
static void assign(StrBuf *out, const char *name, const char *value) {
    sb_printf(out, "%s='", name);
    for (const char *p = value ? value : ""; *p; p++) {
        if (*p == '\'')
            sb_puts(out, "'\\''");
        else if (*p == '\n')
            sb_puts(out, " ");
        else
            sb_printf(out, "%c", *p);
    }
    sb_puts(out, "'\n");
}

static void describe_nvrtc(StrBuf *out) {
    const CudaToolkit *tk = cuda_toolkit();
    assign(out, "KILN_CUDA_ROOT", tk->root);
    assign(out, "KILN_CUDA_FOUND_BY", tk->found_by);
    assign(out, "KILN_CUDA_LIB", tk->lib_dir);
    assign(out, "KILN_NVRTC", tk->nvrtc);
    assign(out, "KILN_NVRTC_BUILTINS", tk->builtins);
    assign(out, "KILN_CUDA_INCLUDE", tk->include);
    assign(out, "KILN_PTXAS", tk->ptxas);
    NvrtcInfo info;
    char err[1024] = "";
    StrBuf version = {0}, archs = {0};
    if (nvrtc_describe(&info, err, sizeof err)) {
        sb_printf(&version, "%d.%d", info.major, info.minor);
        for (int i = 0; i < info.narchs; i++) sb_printf(&archs, "%s%d", i ? " " : "", info.archs[i]);
    }
    assign(out, "KILN_NVRTC_VERSION", version.data);
    assign(out, "KILN_NVRTC_ARCHS", archs.data);
    assign(out, "KILN_NVRTC_PROBLEM", err);
    sb_free(&version), sb_free(&archs);
}

static void describe_driver(StrBuf *out) {
    char why[512] = "";
    const CudaDriver *d = cuda_driver_get(why, sizeof why);
    const CudaDriver *any = d ? d : cuda_driver_loaded();
    StrBuf version = {0}, arch = {0};
    char name[256] = "";
    if (any && any->version) sb_printf(&version, "%d.%d", any->version / 1000, any->version % 1000 / 10);
    CUdevice dev;
    if (d && d->DeviceGet(&dev, 0) == CUDA_SUCCESS) {
        int major = 0, minor = 0;
        if (d->DeviceGetName(name, (int)sizeof name, dev) != CUDA_SUCCESS) name[0] = 0;
        if (d->DeviceGetAttribute(&major, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, dev) ==
                CUDA_SUCCESS &&
            d->DeviceGetAttribute(&minor, CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, dev) == CUDA_SUCCESS)
            sb_printf(&arch, "sm_%d%d", major, minor);
    }
    assign(out, "KILN_CUDA_DRIVER", any ? any->path : "");
    assign(out, "KILN_CUDA_DRIVER_VERSION", version.data);
    assign(out, "KILN_GPU", name);
    assign(out, "KILN_GPU_ARCH", arch.data);
    assign(out, "KILN_GPU_PROBLEM", why);
    sb_free(&version), sb_free(&arch);
}

void cuda_env_describe(StrBuf *out) {
    describe_nvrtc(out);
    describe_driver(out);
}
