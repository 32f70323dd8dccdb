/* fuzz_onnx.c - libFuzzer target for the ONNX reader (onnx/reader.c) and
 * importer (onnx/import.c): the input is decoded as a ModelProto and, when
 * that succeeds, every initializer and tensor attribute is read into a host
 * tensor and the graph is imported (lowered to kiln's IR, folding what it
 * can); the same bytes are also decoded as a TensorProto (`--in NAME=FILE.pb`).
 * Seeds: tests/fuzz/corpus_onnx/ (node-test models and tensors of the ONNX
 * backend suite).  A crashing input goes into tests/fuzz/regress_onnx/, which
 * test_onnx replays. */
#include "onnx/onnx.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void read_tensor(const OnnxTensor *t) {
    KilnDType dt;
    KilnTensor out;
    char err[256];
    if (onnx_dtype_widened(t->data_type, &dt) && onnx_tensor_read(t, dt, &out, err, sizeof err))
        kiln_tensor_free(&out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    Arena *a = arena_new();
    OnnxModel m;
    char err[256];
    if (onnx_model_parse(data, size, a, &m, err, sizeof err)) {
        for (int i = 0; i < m.graph.ninitializers; i++) read_tensor(&m.graph.initializers[i]);
        for (int i = 0; i < m.graph.nnodes; i++)
            for (int k = 0; k < m.graph.nodes[i].nattrs; k++)
                if (m.graph.nodes[i].attrs[k].t) read_tensor(m.graph.nodes[i].attrs[k].t);
        DiagList diags = {0};
        OnnxImport imp;
        onnx_import(a, &m, NULL, &diags, &imp);
        onnx_import_free(&imp);
        diag_clear(&diags);
        onnx_model_close(&m);
    }
    arena_free(a);
    KilnTensor t;
    if (kiln_onnx_tensor_read_mem(data, size, &t, err, sizeof err)) kiln_tensor_free(&t);
    (void)onnx_looks_like_model(data, size);
    return 0;
}
