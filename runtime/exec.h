/* exec.h - the executor: one graph compiled for one backend, and its runs
 * (runtime/exec.c).  Every device runs through here.
 *
 * exec_compile: exec_schedule (fuse_graph with the options every device
 *     shares, then kprog_verify), the backend's prepare(), and a record of
 *     the parameters' and results' types, so that a run depends on nothing
 *     but the executable (graph-level backends, i.e. ref, keep the graph:
 *     it must outlive the executable).
 * exec_run: checks the inputs, allocates the outputs, binds every buffer
 *     (host backends use the caller's memory in place and one host arena for
 *     the temporaries; device backends get one device allocation per run,
 *     laid out by exec_layout, with copies in and out), launches the kernels
 *     in order, waits, and copies results that another buffer holds.
 * exec_bench: the same with inputs bound once, per-kernel medians.
 *
 * Concurrency: after exec_compile and any exec_bind, an Executable is read
 * only.  exec_run and exec_bench may be called from several threads at once
 * on one Executable: each call has its own outputs, temporaries, device
 * memory and backend call state (CPU scratch, CUDA events and launch
 * arguments); the compiled code, the kernel program and the bound parameters
 * are shared, read only.  exec_bind and exec_destroy must not overlap any
 * other call on the same Executable (a caller serving requests binds first,
 * then runs from as many threads as it likes). */
#ifndef KILN_EXEC_H
#define KILN_EXEC_H

#include "runtime/backend.h"

/* Timing of one `bench`: per kernel and for the whole graph (medians). */
typedef struct {
    const char *name;
    double ms;
    int64_t bytes, flops;
} KernelTiming;

typedef struct {
    double run_ms; /* median of one whole run of the graph's kernels, inputs in place */
    /* median CPU time of one run, the process's (all its threads: with more than one,
     * the workers' spinning too): on a loaded machine a run's wall time moves by 20-50 %
     * and CPU time less, and within one process it needs no compile subtracted */
    double run_cpu_ms;
    int runs;
    VEC(KernelTiming) kernels; /* names point into the executable */
} BenchReport;

typedef struct Executable Executable;

/* Compiles concrete graph g for backend be.  NULL with a message in err. */
Executable *exec_compile(const Backend *be, const IRGraph *g, const CompileOptions *opt, char *err,
                         size_t errlen);
void exec_destroy(Executable *x);

/* Binds parameter `param` once: a copy of t (on the device for device
 * backends) is used by every later run, which then ignores inputs[param]
 * (it may be a zeroed KilnTensor).  Binding again replaces the copy. */
KilnStatus exec_bind(Executable *x, int param, const KilnTensor *t, char *err, size_t errlen);
/* Binds every parameter that g (the graph x was compiled from) marks
 * constant (Node.flag of a `param`: bound from a weights file or a model's
 * initializers, see driver_bind) to its tensor in inputs[], in place as
 * exec_bind_shared does (no host copy of a model's weights): those tensors
 * must stay unchanged until x is destroyed or they are bound again. */
KilnStatus exec_bind_constants(Executable *x, const IRGraph *g, const KilnTensor *inputs, char *err, size_t errlen);

/* As exec_bind, but without a host copy: the executable uses t's data in
 * place (host backends) or copies it to the device once.  t's data must
 * stay unchanged until the binding is replaced or the executable destroyed:
 * a caller that compiles one graph for several shapes binds one copy of
 * its weights to every executable (app/api.c). */
KilnStatus exec_bind_shared(Executable *x, int param, const KilnTensor *t, char *err, size_t errlen);
/* Brackets a group of binds (exec_bind, exec_bind_shared): begin true
 * before the first, false after the last, also after one that failed; no
 * run in between.  The backend may leave a bind's work to the end and do
 * all of it then (the CPU packs the operands on its pool's threads:
 * BackendKernels.bind_batch).  False (err set) when that work failed: the
 * executable is then not fit to run (destroy it).  exec_bind_constants and
 * app/api.c's binds use it. */
bool exec_bind_batch(Executable *x, bool begin, char *err, size_t errlen);
/* The batch's end after binds that came to status st (a failed one too:
 * what the batch left undone is then done or dropped): st, or where st was
 * KILN_OK and the batch's work failed, KILN_ERR_DEVICE with err set. */
KilnStatus exec_bind_batch_end(Executable *x, KilnStatus st, char *err, size_t errlen);

/* One run: inputs[i] for parameter i (dtype and element count must match),
 * outputs[i] (nresults of them) allocated here, owned by the caller.  On
 * failure nothing is left allocated.  KILN_ERR_USAGE for inputs that do not
 * fit, KILN_ERR_DEVICE for a device or memory failure. */
KilnStatus exec_run(const Executable *x, const KilnTensor *inputs, KilnTensor *outputs, char *err,
                    size_t errlen);

/* As exec_run, into outputs the caller allocated: outputs[i] has result
 * i's dtype and element count and its own memory, which host backends'
 * kernels write directly (no copy); nothing is allocated for the results.
 * KILN_ERR_USAGE for outputs that do not fit. */
KilnStatus exec_run_into(const Executable *x, const KilnTensor *inputs, KilnTensor *outputs, char *err,
                         size_t errlen);

/* Runs `runs` times after a warm-up; fills rep (VEC_FREE rep->kernels). */
KilnStatus exec_bench(const Executable *x, const KilnTensor *inputs, int runs, BenchReport *rep, char *err,
                      size_t errlen);

const Backend *exec_backend(const Executable *x);
int exec_nparams(const Executable *x);
int exec_nresults(const Executable *x);
/* The kernel program (NULL for graph-level backends). */
const KProgram *exec_program(const Executable *x);

/* fuse_graph with the options every device shares (-O0: one kernel per
 * node; --remarks), then kprog_legalise and kprog_verify.  Used by exec_compile, `emit` and
 * `aot`.  The program lives in `arena`; kprog_destroy it.  NULL with a
 * message in err. */
KProgram *exec_schedule(Arena *arena, const IRGraph *g, const CompileOptions *opt, char *err, size_t errlen);
/* The same for backend be (NULL: as exec_schedule): where it says a
 * convolution's input is better kept padded between its producer and
 * itself (BackendKernels.keeps_padded), the program keeps it so. */
KProgram *exec_schedule_for(Arena *arena, const IRGraph *g, const CompileOptions *opt, const Backend *be,
                            char *err, size_t errlen);

/* Prints emit stage `stage` of a backend (backend_stage) for concrete graph
 * g; writes the AOT bundle of backend `target` ("cuda:sm_80") into dir. */
KilnStatus exec_emit(const IRGraph *g, const char *stage, const CompileOptions *opt, FILE *out, char *err,
                     size_t errlen);
KilnStatus exec_aot(const IRGraph *g, const char *target, const CompileOptions *opt, const char *dir,
                    char *err, size_t errlen);

/* The device memory of one run: every buffer not skipped (skip may be NULL)
 * at a multiple of `align`, inputs and outputs first, then the temporaries'
 * arena at the offsets the scheduler chose.  Fills off[p->bufs.len] (-1 for
 * skipped buffers) and returns the bytes of the one allocation. */
int64_t exec_layout(const KProgram *p, int64_t align, const bool *skip, int64_t *off);

#endif
