/* cuda_toolkit.h - where the CUDA toolkit is: the one search of the project.
 *
 * Everything kiln takes from a CUDA toolkit comes from ONE folder found by
 * ONE rule (docs/gpu.md, "Which toolkit"): NVRTC (libnvrtc.so.N), its
 * builtins library (libnvrtc-builtins.so.N.M, from the same lib folder), the
 * headers NVRTC 13 no longer has built in (cuda_fp16.h, cuda_bf16.h, mma.h,
 * from the same toolkit's include folder) and ptxas (tests).  runtime/nvrtc.c
 * loads the libraries by full path from here, runtime/cuda.c keys the kernel
 * cache on what is here, and `kiln env` prints it for scripts.
 *
 * The search looks at files only (no dlopen), so the cache key costs a few
 * stat() calls and a warm cache hit never loads NVRTC. */
#ifndef KILN_CUDA_TOOLKIT_H
#define KILN_CUDA_TOOLKIT_H

#include "ir/ir.h"

/* Where to look: the process's environment, or a test's own. */
typedef struct {
    const char *cuda_home;       /* $CUDA_HOME: when set, the only place looked at */
    const char *cuda_path;       /* $CUDA_PATH: the same, when CUDA_HOME is unset */
    const char *path;            /* $PATH: a folder holding nvcc names its toolkit (bin/..) */
    const char *ld_library_path; /* $LD_LIBRARY_PATH: a folder holding NVRTC names its toolkit (..) */
    /* Then these folders in order; an entry ending in "-*" stands for the
     * folders it matches, newest version first (/usr/local/cuda-*). */
    const char *const *roots;
} CudaToolkitSearch;

typedef struct {
    char *root;      /* the toolkit folder, as found (NULL: none found) */
    char *found_by;  /* which rule found it: "CUDA_HOME", "nvcc on PATH", "/usr/local/cuda", ... */
    char *lib_dir;   /* the folder holding NVRTC */
    char *nvrtc;     /* full path of libnvrtc.so[.N] (NULL: none found) */
    int nvrtc_major; /* from the file name when it says (libnvrtc.so.13 -> 13), else 0 */
    char *builtins;  /* full path of libnvrtc-builtins.so.N.M beside it (NULL: missing) */
    int builtins_major, builtins_minor;
    char *include;       /* the folder holding cuda_fp16.h (NULL: missing) */
    char *ptxas;         /* bin/ptxas (NULL: missing) */
    char *problem;       /* why NVRTC cannot be used from here, naming what is missing (NULL: usable) */
    char *include_tried; /* the include folders looked at, for messages */
} CudaToolkit;

/* The default folders after CUDA_HOME, CUDA_PATH and nvcc on PATH. */
extern const char *const cuda_toolkit_default_roots[];

/* Runs the search; always fills tk (tk->problem says what is wrong). */
void cuda_toolkit_find(CudaToolkit *tk, const CudaToolkitSearch *where);
void cuda_toolkit_free(CudaToolkit *tk);

/* The process's toolkit: searched once from the environment (thread-safe),
 * then read-only and owned by the process. */
const CudaToolkit *cuda_toolkit(void);

/* What identifies the toolkit's compiler for the kernel cache: the real
 * paths, sizes and modification times of NVRTC, its builtins and the include
 * folder's cuda_fp16.h.  Appended to sb. */
void cuda_toolkit_identity(const CudaToolkit *tk, StrBuf *sb);

/* runtime/cuda_env.c, `kiln env`: the toolkit, NVRTC, the driver and the
 * GPU found here, as shell assignments (KILN_CUDA_ROOT='...' ...). */
void cuda_env_describe(StrBuf *out);

#endif
