/* fuzz_objload.c - libFuzzer target for kiln's object loader (runtime/objload.c:
 * obj_load over the CPU units' x86-64 ELF objects).  Whatever the bytes, the
 * loader refuses them or loads them (never runs them here), and never reads or
 * writes outside the input and its own mapping.
 * Build: tests/fuzz/run.sh (FUZZ_TARGETS=objload).
 * Seeds: tests/fuzz/corpus_objload/ (kernel objects of kiln's code generator). */
#include "runtime/objload.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256];
    obj_free(obj_load(data, size, NULL, NULL, err, sizeof err));
    return 0;
}
