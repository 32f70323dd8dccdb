/* cuda_compat.c - which code the driver can load: PTX, SASS, or none.
 *
 * Contract: pure decisions over version numbers (CUDA versions written as
 * the driver API does, 1000 * major + 10 * minor: 13000 is CUDA 13.0), so
 * the tests can try every combination without a GPU.
 *
 * PTX written by NVRTC X.Y uses PTX ISA X.Y's (NVRTC 13.0 writes ISA 9.0),
 * which only a driver of CUDA X.Y or newer can JIT-compile
 * (CUDA_ERROR_UNSUPPORTED_PTX_VERSION otherwise).  SASS (a cubin for one GPU
 * architecture) needs no JIT and loads on any driver of the same CUDA major
 * version (minor version compatibility), but runs only on GPUs of that
 * architecture's major generation, same or higher minor (sm_80 SASS runs on
 * sm_86, not on sm_90).  Hence:
 *   driver >= NVRTC             PTX for compute_XX (the driver JIT-compiles it
 *                               for this GPU or any newer one)
 *   older driver, same major    SASS for the GPU (nvrtcGetCUBIN, sm_XX)
 *   older major                 refused, with both versions and what to do
 * An architecture NVRTC does not list: for PTX, the newest it lists that is
 * not newer than the GPU (PTX runs on newer GPUs); for SASS, the newest of
 * the GPU's generation; else refused. */
#include "runtime/cuda_driver.h"
#include "runtime/cuda_toolkit.h"

#include <string.h>

/* The oldest Linux driver branch of each CUDA release (NVIDIA's release
 * notes, "CUDA Toolkit and Corresponding Driver Versions"). */
static const struct {
    int cuda, driver;
} driver_branches[] = {{11000, 450}, {11010, 455}, {11020, 460}, {11030, 465}, {11040, 470},
                       {11050, 495}, {11060, 510}, {11070, 515}, {11080, 520}, {12000, 525},
                       {12010, 530}, {12020, 535}, {12030, 545}, {12040, 550}, {12050, 555},
                       {12060, 560}, {12080, 570}, {12090, 575}, {13000, 580}};

int cuda_min_linux_driver(int cuda_version) {
    int best = 0;
    for (size_t i = 0; i < sizeof driver_branches / sizeof driver_branches[0]; i++)
        if (driver_branches[i].cuda <= cuda_version) best = driver_branches[i].driver;
    return cuda_version >= driver_branches[0].cuda ? best : 0;
}

void cuda_version_text(int v, StrBuf *sb) {
    sb_printf(sb, "CUDA %d.%d", v / 1000, v % 1000 / 10);
    int drv = cuda_min_linux_driver(v);
    if (drv) sb_printf(sb, " (Linux driver R%d or newer)", drv);
}

bool cuda_choose_output(int nvrtc_version, int driver_version, bool force_sass, NvrtcOutput *out, char *err,
                        size_t errlen) {
    *out = NVRTC_PTX;
    if (force_sass) {
        *out = NVRTC_CUBIN;
        return true;
    }
    if (!driver_version || driver_version >= nvrtc_version) return true;
    if (driver_version / 1000 == nvrtc_version / 1000) {
        *out = NVRTC_CUBIN; /* minor version compatibility: SASS loads without the JIT */
        return true;
    }
    StrBuf need = {0};
    cuda_version_text(nvrtc_version, &need);
    snprintf(
        err, errlen,
        "the NVIDIA driver supports CUDA %d.%d, older than the CUDA %d.%d of NVRTC (%s): the PTX it writes "
        "needs %s, and its SASS a CUDA %d driver. Update the NVIDIA driver, or set CUDA_HOME to a CUDA %d.x "
        "toolkit no newer than %d.%d",
        driver_version / 1000, driver_version % 1000 / 10, nvrtc_version / 1000, nvrtc_version % 1000 / 10,
        cuda_toolkit()->nvrtc ? cuda_toolkit()->nvrtc : "not found", need.data, nvrtc_version / 1000,
        driver_version / 1000, driver_version / 1000, driver_version % 1000 / 10);
    sb_free(&need);
    return false;
}

static bool listed(const NvrtcInfo *info, int sm) { return nvrtc_supports_arch(info, sm); }

bool cuda_choose_arch(const NvrtcInfo *info, NvrtcOutput out, int wanted_sm, bool user_arch, int device_sm,
                      int *arch, char *err, size_t errlen) {
    int target = out == NVRTC_CUBIN && device_sm ? device_sm : wanted_sm;
    if (listed(info, target)) {
        *arch = target;
        return true;
    }
    *arch = 0;
    if (!user_arch || out == NVRTC_CUBIN)
        for (int i = 0; i < info->narchs; i++) {
            int a = info->archs[i];
            bool fits = out == NVRTC_CUBIN ? a / 10 == target / 10 && a <= target : a <= target;
            if (fits && a > *arch) *arch = a;
        }
    if (*arch) return true;
    StrBuf list = {0};
    nvrtc_arch_list(info, &list);
    snprintf(err, errlen, "NVRTC %d.%d (%s) cannot write %s for %s sm_%d; it compiles for %s%s", info->major,
             info->minor, info->path, out == NVRTC_CUBIN ? "SASS" : "PTX",
             user_arch && out == NVRTC_PTX ? "--arch" : "this GPU,", target, list.data,
             user_arch ? "" : ": use a CUDA toolkit that supports this GPU (set CUDA_HOME)");
    sb_free(&list);
    return false;
}
