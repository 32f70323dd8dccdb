/* cuda.h - CUDA C from the kernel IR (codegen/cuda.c), shared by the real
 * GPU runtime (runtime/cuda.c: NVRTC + driver API), the host emulation
 * (runtime/cuda_emu.c) and the AOT bundle writer. */
#ifndef KILN_CODEGEN_CUDA_H
#define KILN_CODEGEN_CUDA_H

#include "ir/kernel.h"

/* How to launch one kernel of the program.  Its parameters are, in order,
 * the buffers bufs[buf_args[0]], bufs[buf_args[1]], ... as device pointers
 * (T *), then nothing else: sizes are compiled in. */
typedef struct {
    const char *name; /* the extern "C" __global__ function */
    int *buf_args;
    int nargs;
    unsigned grid[3], block[3];
    unsigned shared_bytes; /* dynamic shared memory */
} CudaLaunch;

typedef struct {
    char *source; /* one translation unit with every kernel of the program (heap) */
    VEC(CudaLaunch) launches; /* in execution order, one per kernel */
} CudaProgram;

/* Renders every kernel of `p` as CUDA C.  `arch_sm` (e.g. 90) selects
 * features such as tensor-core paths; `emulated` renders for the host
 * emulation header (no inline PTX).  Returns false with a message. */
bool cuda_codegen(const KProgram *p, int arch_sm, bool emulated, CudaProgram *out, char *err, size_t errlen);
/* cuda_codegen with the tensor-core choice made by the caller (cuda_codegen
 * uses them for the GPU on sm_80 and later, never for the emulator). */
bool cuda_codegen_ex(const KProgram *p, int arch_sm, bool emulated, bool tensor_cores, CudaProgram *out,
                     char *err, size_t errlen);
void cuda_program_free(CudaProgram *cp);

/* runtime/nvrtc.c: the CUDA C to PTX for compute_XX, or to SASS (a cubin)
 * for sm_XX, with the NVRTC of the toolkit runtime/cuda_toolkit.c finds
 * (loaded at run time).  On refusal, err holds NVRTC's log with the source
 * lines around each error, and the status is KILN_ERR_DEVICE.  A cubin is
 * binary: out_len is its size; PTX is NUL-terminated. */
typedef enum { NVRTC_PTX, NVRTC_CUBIN } NvrtcOutput;
KilnStatus nvrtc_compile_to(const char *source, int arch_sm, NvrtcOutput what, char **out, size_t *out_len,
                            char *err, size_t errlen);
KilnStatus nvrtc_compile(const char *source, int arch_sm, char **ptx_out, size_t *ptx_len, char *err,
                         size_t errlen);

/* NVRTC's version and the architectures it compiles for (nvrtcGetSupportedArchs,
 * ascending), owned by the process; false with the reason when NVRTC cannot
 * be loaded. */
typedef struct {
    int major, minor;
    const int *archs;
    int narchs;
    const char *path;
} NvrtcInfo;
bool nvrtc_describe(NvrtcInfo *info, char *err, size_t errlen);
bool nvrtc_supports_arch(const NvrtcInfo *info, int sm);
/* "sm_75, sm_80, ..." */
void nvrtc_arch_list(const NvrtcInfo *info, StrBuf *sb);

#endif
