/* ref_backend.c - the reference interpreter as a backend (`--device=ref`). */
#include "runtime/runtime.h"

static void *ref_compile(const IRGraph *g, const CompileOptions *opt, char *err, size_t errlen) {
    (void)opt, (void)err, (void)errlen;
    return (void *)g; /* nothing to compile: the interpreter walks the graph */
}

static bool ref_exec(void *exe, const KilnTensor *inputs, KilnTensor *outputs, char *err, size_t errlen) {
    return ref_run((const IRGraph *)exe, inputs, outputs, err, errlen);
}

static void ref_destroy(void *exe) { (void)exe; }

const Backend ref_backend = {"ref", ref_compile, ref_exec, ref_destroy, NULL};
