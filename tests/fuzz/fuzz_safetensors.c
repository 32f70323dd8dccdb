/* fuzz_safetensors.c - libFuzzer target for the safetensors reader
 * (kiln_safetensors_read_mem).
 * Build: clang -fsanitize=fuzzer,address,undefined -std=c11 -D_GNU_SOURCE -Iinclude -I. \
 *          tests/fuzz/fuzz_safetensors.c runtime/safetensors.c runtime/tensorio.c \
 *          runtime/outfile.c base/tensor.c base/util.c \
 *          -o build-fuzz/fuzz_safetensors
 * Seeds: tests/fuzz/corpus_safetensors/.  A crashing input goes into
 * tests/fuzz/regress_safetensors/, which test_tensorio replays. */
#include "kiln.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    KilnTensorList list;
    char err[256];
    if (kiln_safetensors_read_mem(data, size, &list, err, sizeof err))
        kiln_tensor_list_free(&list);
    return 0;
}
