/* onnx.h - ONNX model files: the reader (reader.c) and the importer
 * (import.c and the op files beside it).
 *
 * The reader decodes the protobuf wire format of an ONNX ModelProto straight
 * from the mapped file (no protobuf library, see docs/onnx.md for why): names
 * and attributes are decoded into the caller's arena, tensor elements stay in
 * the file and are read in place when they are bound or folded.  The file is
 * untrusted: every length, offset, count and nesting is checked against the
 * bytes that exist, and a malformed file is refused with a message that names
 * the byte offset and the field being read.
 *
 * Field numbers and enum values are facts of the ONNX schema (onnx.proto,
 * IR version 10); the ones kiln reads are listed where they are decoded.
 */
#ifndef KILN_ONNX_H
#define KILN_ONNX_H

#include "ir/ir.h"

/* TensorProto.DataType values (onnx.proto). */
typedef enum {
    ONNX_UNDEFINED = 0,
    ONNX_FLOAT = 1,
    ONNX_UINT8 = 2,
    ONNX_INT8 = 3,
    ONNX_UINT16 = 4,
    ONNX_INT16 = 5,
    ONNX_INT32 = 6,
    ONNX_INT64 = 7,
    ONNX_STRING = 8,
    ONNX_BOOL = 9,
    ONNX_FLOAT16 = 10,
    ONNX_DOUBLE = 11,
    ONNX_UINT32 = 12,
    ONNX_UINT64 = 13,
    ONNX_COMPLEX64 = 14,
    ONNX_COMPLEX128 = 15,
    ONNX_BFLOAT16 = 16,
} OnnxDataType;

/* AttributeProto.AttributeType values. */
typedef enum {
    ONNX_ATTR_UNDEFINED = 0,
    ONNX_ATTR_FLOAT = 1,
    ONNX_ATTR_INT = 2,
    ONNX_ATTR_STRING = 3,
    ONNX_ATTR_TENSOR = 4,
    ONNX_ATTR_GRAPH = 5,
    ONNX_ATTR_FLOATS = 6,
    ONNX_ATTR_INTS = 7,
    ONNX_ATTR_STRINGS = 8,
    ONNX_ATTR_TENSORS = 9,
    ONNX_ATTR_GRAPHS = 10,
    ONNX_ATTR_SPARSE_TENSOR = 11,
    ONNX_ATTR_SPARSE_TENSORS = 12,
    ONNX_ATTR_TYPE_PROTO = 13,
    ONNX_ATTR_TYPE_PROTOS = 14,
} OnnxAttrType;

/* A span of the file (or of another buffer the model keeps alive). */
typedef struct {
    const uint8_t *data;
    size_t len;
} OnnxBytes;

/* Where a tensor's elements are. */
typedef enum {
    ONNX_DATA_NONE,  /* no elements given (only legal when there are none) */
    ONNX_DATA_RAW,   /* raw_data, or an external file's bytes: little-endian, packed */
    ONNX_DATA_TYPED, /* the typed repeated field that data_type selects (float_data ...) */
} OnnxDataKind;

typedef struct {
    const char *name; /* "" when the TensorProto has none */
    int32_t data_type;
    int rank;
    int64_t *dims;
    int64_t numel;     /* product of dims, checked against the data present */
    OnnxDataKind kind; /* ONNX_DATA_RAW: `raw` holds numel elements exactly */
    OnnxBytes raw;
    OnnxBytes message;  /* ONNX_DATA_TYPED: the TensorProto's bytes, decoded on use */
    size_t file_offset; /* of the TensorProto, for messages */
} OnnxTensor;

typedef struct {
    const char *name;
    int type; /* OnnxAttrType; 0 when the model leaves it out (IR version 1) */
    float f;
    int64_t i;
    OnnxBytes s;
    OnnxTensor *t;
    OnnxBytes g; /* a GraphProto, not decoded (subgraphs are refused by name) */
    float *floats;
    int nfloats;
    int64_t *ints;
    int nints;
    OnnxBytes *strings;
    int nstrings;
    int ntensors, ngraphs, nother; /* counted only: kiln does not read them */
    const char *ref_attr_name;     /* set inside functions only */
} OnnxAttr;

typedef struct {
    const char *name; /* "" when the node has none */
    const char *op_type;
    const char *domain;  /* "" is the default domain ai.onnx */
    const char **inputs; /* "" marks an optional input left out */
    int ninputs;
    const char **outputs;
    int noutputs;
    OnnxAttr *attrs;
    int nattrs;
    size_t file_offset;
} OnnxNode;

/* One dimension of a value's declared shape. */
typedef struct {
    int64_t value;     /* >= 0 when known */
    const char *param; /* dim_param (a symbolic name), or NULL */
} OnnxDim;

typedef enum { ONNX_TYPE_NONE, ONNX_TYPE_TENSOR, ONNX_TYPE_OTHER } OnnxTypeKind;

typedef struct {
    const char *name;
    OnnxTypeKind kind; /* ONNX_TYPE_OTHER: a sequence, map, optional or sparse tensor */
    int32_t elem_type;
    bool has_shape; /* false: the rank is unknown too */
    int rank;
    OnnxDim *dims;
} OnnxValueInfo;

typedef struct {
    const char *name;
    OnnxNode *nodes;
    int nnodes;
    OnnxTensor *initializers;
    int ninitializers;
    int nsparse_initializers; /* counted only (refused) */
    OnnxValueInfo *inputs;
    int ninputs;
    OnnxValueInfo *outputs;
    int noutputs;
    OnnxValueInfo *value_info;
    int nvalue_info;
} OnnxGraph;

typedef struct {
    const char *domain; /* "" or "ai.onnx" is the default domain */
    int64_t version;
} OnnxOpset;

typedef struct OnnxMapping OnnxMapping;

typedef struct {
    const char *path; /* as given, for messages ("<memory>" when parsed from a buffer) */
    int64_t ir_version;
    OnnxOpset *opsets;
    int nopsets;
    const char *producer_name, *producer_version;
    int nfunctions, ntraining_infos; /* counted only */
    OnnxGraph graph;
    OnnxMapping *mappings; /* the model file and its external-data files */
} OnnxModel;

/* True when the bytes look like an ONNX model (a ModelProto whose first
 * fields decode and that has a graph or an ir_version).  Used to recognise a
 * model by content whatever its file name. */
bool onnx_looks_like_model(const uint8_t *data, size_t len);
/* The same for a file: reads at most its first bytes. */
bool onnx_file_looks_like_model(const char *path);

/* Maps the file read-only and decodes it.  External data (TensorProto
 * data_location EXTERNAL) is looked up beside the model file, mapped and
 * checked.  Structures live in `arena`; tensor bytes stay in the mappings
 * until onnx_model_close.  On failure err says why and nothing is left open. */
bool onnx_model_open(const char *path, Arena *arena, OnnxModel *out, char *err, size_t errlen);
/* Decodes a model held in memory (the fuzzer's entry point); the buffer must
 * outlive the model.  External data is refused. */
bool onnx_model_parse(const uint8_t *data, size_t len, Arena *arena, OnnxModel *out, char *err,
                      size_t errlen);
void onnx_model_close(OnnxModel *m);
/* Whether p points into one of the model's mapped files (a tensor's raw
 * bytes used in place: not to be freed). */
bool onnx_model_holds(const OnnxModel *m, const void *p);

/* Decodes one TensorProto (the `.pb` files of `--in NAME=FILE.pb` and of the
 * ONNX test suites). */
bool onnx_tensor_parse(const uint8_t *data, size_t len, Arena *arena, OnnxTensor *out, char *err,
                       size_t errlen);

/* The kiln dtype that holds this ONNX dtype exactly, if any. */
bool onnx_dtype_to_kiln(int32_t onnx_dtype, KilnDType *out);
/* "float", "int8", ... (the ONNX spelling), "type N" for unknown ones. */
const char *onnx_dtype_name(int32_t onnx_dtype);
/* The kiln dtype in which the elements of an ONNX dtype can be read without
 * loss for folding (int8/uint8/int16/uint16 -> i32, uint32 -> i64 ...), or
 * false (strings, complex, 8-bit floats). */
bool onnx_dtype_widened(int32_t onnx_dtype, KilnDType *out);

/* Reads a tensor's elements into a new host tensor of dtype `as` (from the
 * tensor's own dtype, converting values; uint64 values above INT64_MAX are
 * refused).  False with a message on malformed data or out of memory. */
bool onnx_tensor_read(const OnnxTensor *t, KilnDType as, KilnTensor *out, char *err, size_t errlen);

/* `.pb` TensorProto files: kiln_onnx_tensor_read_file in include/kiln.h. */

/* ---- the importer (import.c) ---- */

/* A graph parameter bound to data of the model: an initializer or a Constant
 * (elements in the file, read when bound), or a constant folded at import. */
typedef struct {
    const char *name; /* the parameter's name: the ONNX value's */
    const OnnxTensor *data;
    KilnTensor *folded; /* when data is NULL (owned by the OnnxImport) */
} OnnxWeight;

typedef struct {
    int id;
    const char *name;
} OnnxNamedNode;

typedef struct {
    /* Sizes of symbolic dimensions (dim_param names, or NAME_dimK for an
     * input's dimension that the model leaves unnamed); the rest stay symbolic. */
    const DimBinding *dims;
    int ndims;
    /* Initializers that are also graph inputs and that the user binds: they
     * are parameters, not constants. */
    const char *const *overrides;
    int noverrides;
    /* Values the user binds to inputs (by name; may be NULL): an input whose
     * value an operation needs when the model is imported (Reshape's shape,
     * Unsqueeze's axes, ...) is specialised to it; the graph then holds for
     * these values only, which is what `run` and `bench` compile for. */
    const char *const *bound_names;
    const KilnTensor *const *bound;
    int nbound;
} OnnxImportOptions;

typedef struct {
    IRGraph *g;
    int ninputs;             /* g->params[0 .. ninputs) are the model's inputs ... */
    VEC(OnnxWeight) weights; /* ... and g->params[ninputs + i] is weights[i] */
    VEC(int) node_last;           /* per ONNX node: the last IR node id it made, for `kiln import` */
    VEC(OnnxNamedNode) named;     /* IR nodes that are ONNX values, with their names */
    VEC(KilnTensor *) owned; /* folded constants */
} OnnxImport;

/* Lowers the model's graph into kiln's graph IR (through ir/make.h) in
 * `arena`.  Diagnostics, one per problem and naming the node, its op and
 * opset, go to `diags` (their locations point into a listing of the nodes,
 * one line each); false when there were any. */
bool onnx_import(Arena *arena, const OnnxModel *m, const OnnxImportOptions *opt, DiagList *diags,
                 OnnxImport *out);
void onnx_import_free(OnnxImport *imp);

/* writer.c: the imported graph as kiln source, one statement per ONNX node
 * (graph `graph_name`; parameters: the inputs, then the weights), and the
 * weights as a tensor list named like their parameters. */
bool onnx_write_kiln(Arena *arena, const OnnxModel *m, const OnnxImport *imp, const char *graph_name, StrBuf *src,
                     KilnTensorList *weights, char *err, size_t errlen);
/* A graph holding only the parameters for the model's inputs, as onnx_import
 * would declare them (symbolic dimensions named): what the driver binds the
 * user's tensors and --dim sizes against before importing. */
IRGraph *onnx_declare_inputs(Arena *arena, const OnnxModel *m, const OnnxImportOptions *opt, DiagList *diags);
/* Whether `name` is an initializer that the graph also lists as an input (a
 * default value the user may replace with --in). */
bool onnx_is_overridable(const OnnxModel *m, const char *name);

/* A model input as the user binds it (graph inputs that are not initializers). */
typedef struct {
    const char *name;
    KilnDType dtype;
    bool dtype_ok; /* false: the ONNX dtype has no kiln equivalent */
    int rank;
    int64_t *dims;     /* >= 0 known, -1 symbolic */
    const char **syms; /* the symbolic name of each dim (NULL when known) */
} OnnxInput;
/* The model's inputs in order (arena); those the importer refuses are listed too. */
int onnx_model_inputs(Arena *arena, const OnnxModel *m, OnnxInput **out);
/* The default-domain opset of the model, or -1. */
int64_t onnx_model_opset(const OnnxModel *m);

#endif
