/* ref_backend.c - `--device=ref`: the reference interpreter (ir/interp.c)
 * runs the graph itself, in double precision: the oracle of every test.
 * The executor (exec.c) checks its inputs and merges bound parameters in. */
#include "runtime/backend.h"

const Backend ref_backend = {
    .name = "ref",
    .summary = "the reference interpreter, in double precision (the oracle)",
    .caps = 0,
    .run_graph = ref_run,
};
