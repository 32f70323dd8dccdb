/* fuzz_objload.c - libFuzzer target for kiln's object loader (runtime/objload.c:
 * obj_load over the CPU units' x86-64 ELF objects, and obj_load_all over the
 * input twice and over its two halves, into one mapping).  Whatever the bytes,
 * the loader refuses them or loads them (never runs them here), and never
 * reads or writes outside the input and its own mapping.
 * Build: tests/fuzz/run.sh (FUZZ_TARGETS=objload).
 * Seeds: tests/fuzz/corpus_objload/ (kernel objects of kiln's code generator). */
#include "runtime/objload.h"

#include <stdint.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char err[256];
    obj_free(obj_load(data, size, NULL, NULL, err, sizeof err));
    const void *twice[2] = {data, data}, *halves[2] = {data, data + size / 2};
    size_t lens[2] = {size, size}, half_lens[2] = {size / 2, size - size / 2};
    ObjImage *im[2];
    if (obj_load_all(2, twice, lens, NULL, NULL, im, err, sizeof err)) obj_free(im[0]), obj_free(im[1]);
    if (obj_load_all(2, halves, half_lens, NULL, NULL, im, err, sizeof err)) obj_free(im[1]), obj_free(im[0]);
    return 0;
}
