/* fuzz_npy.c - libFuzzer target for the .npy reader (kiln_npy_read_mem).
 * Build: clang -fsanitize=fuzzer,address,undefined -std=c11 -D_GNU_SOURCE -Iinclude -I. \
 *          tests/fuzz/fuzz_npy.c runtime/npy.c runtime/tensorio.c runtime/outfile.c \
 *          base/tensor.c base/util.c -o build-fuzz/fuzz_npy
 * Seeds: tests/fuzz/corpus_npy/.  A crashing input goes into
 * tests/fuzz/regress_npy/, which test_tensorio replays. */
#include "kiln.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    KilnTensor t;
    char err[256];
    if (kiln_npy_read_mem(data, size, &t, err, sizeof err))
        kiln_tensor_free(&t);
    return 0;
}
