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

/* Ways the emulation behaves more like a GPU, to show what a GPU would:
 * poison: device memory the kernels should write (outputs, temporaries)
 *   starts as a pattern (all-ones bytes: NaN in every float type; 0xA5
 *   bytes in integers and bools) instead of zeros;
 * reverse: blocks and the threads of a block run in reverse order (a GPU
 *   promises no order);
 * tensor_cores: f16/bf16 matmuls take the tensor-core path (nvcuda::wmma,
 *   emulated) as on sm_80 and later GPUs.
 * KILN_EMU="poison,reverse,tensor-cores" (or "all") selects them for the
 * cuda-emu device. */
typedef struct {
    bool poison, reverse, tensor_cores;
} EmuModes;
bool cuda_emu_modes_parse(const char *spec, EmuModes *modes, char *err, size_t errlen);
void cuda_emu_set_reverse(EmuModule *m, bool reverse);

/* Runs every kernel of p through the backend's own prepare and launch, with
 * bufs[b] the host memory of buffer b (temporaries included); tensor_cores
 * renders f16/bf16 matmuls for nvcuda::wmma (emulated in kiln_emu.h) as the
 * GPU path does on sm_80+ (the backend does so for --arch=sm_80 or later). */
bool cuda_emu_run_program(const KProgram *p, void **bufs, bool tensor_cores, char *err, size_t errlen);

#endif
