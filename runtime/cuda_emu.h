/* cuda_emu.h - the host emulation of the generated CUDA C (runtime/cuda_emu.c),
 * below the `cuda-emu` backend (whose table row needs no header): for tests
 * that run hand-written sources or hand-built kernel programs. */
#ifndef KILN_CUDA_EMU_H
#define KILN_CUDA_EMU_H

#include "codegen/cuda.h"

/* A compiled and loaded emulated program (cuda_codegen(..., emulated=true)). */
typedef struct EmuModule EmuModule;

/* Builds (or finds in the cache) and loads the shared object of cp. */
EmuModule *cuda_emu_load(const CudaProgram *cp, char *err, size_t errlen);
/* Runs launch i with host pointers args[j] for cp->launches.data[i].buf_args[j]. */
bool cuda_emu_launch(EmuModule *m, int i, void **args, char *err, size_t errlen);
void cuda_emu_unload(EmuModule *m);

/* Runs every kernel of p through the backend's own prepare and launch, with
 * bufs[b] the host memory of buffer b (temporaries included); tensor_cores
 * renders f16/bf16 matmuls for nvcuda::wmma (emulated in kiln_emu.h) as the
 * GPU path does on sm_80+ (the backend does so for --arch=sm_80 or later). */
bool cuda_emu_run_program(const KProgram *p, void **bufs, bool tensor_cores, char *err, size_t errlen);

#endif
