/* import.h - the ONNX importer's internals, shared by import.c (the walk over
 * the graph: values, constants, folding, diagnostics) and the op files
 * (ops_*.c: one lowering function per ONNX operator, listed in onnx/ops.def).
 *
 * Every ONNX value (a name in the graph) becomes a Value.  A Value is known
 * at import time when its elements are (an initializer, a Constant, or a
 * node whose inputs are all known: the node is folded once, at import, by
 * running its lowering on a scratch graph in the reference interpreter), or
 * when it is a shape vector whose elements are dimensions (Shape -> Gather ->
 * Concat chains, evaluated on kiln's symbolic dimensions so that a
 * dynamic-batch model keeps its symbolic batch).  Otherwise it is a node of
 * the graph being built through ir/make.h, which checks every shape and
 * dtype by the language's rules.  A known value becomes a node only when an
 * operation needs it as a tensor: a splat as `full`, anything else as a graph
 * parameter bound to its data by name (a weight).
 */
#ifndef KILN_ONNX_IMPORT_H
#define KILN_ONNX_IMPORT_H

#include "ir/make.h"
#include "onnx/onnx.h"

/* An integer known at import time: a number, or a symbolic dimension. */
typedef struct {
    bool sym;  /* v is a symbolic Dim (< 0) of the graph */
    int64_t v; /* the number (any sign), or the Dim */
} SInt;

typedef struct Value {
    const char *name;
    int32_t odt;  /* the ONNX dtype */
    KilnDType dt; /* the kiln dtype that holds it (widened for int8 ...) */
    int rank;
    Dim *shape;             /* concrete or symbolic */
    int id;                 /* its node in the model's graph; -1 until needed; MK_ERROR after an error */
    bool failed;            /* the node that makes it failed (already reported) */
    const OnnxTensor *init; /* elements in the file (an initializer or a Constant's tensor) */
    KilnTensor *konst;      /* elements known at import time (read from init, or folded) */
    SInt *ints;             /* a shape vector: the elements of a rank-0/1 integer value, when known */
    int nints;
    int unmade; /* an optional output its node (index + 1) does not compute: refused where used */
    const KilnTensor *bound; /* an input's value as the user bound it (OnnxImportOptions.bound) */
} Value;

typedef struct Importer Importer;

/* What an op's lowering function sees. */
typedef struct {
    Importer *im;
    Arena *arena; /* the compilation's: for anything the lowering keeps */
    const OnnxNode *node;
    int index;     /* of the node in the graph */
    int64_t opset; /* of the node's domain */
    Loc loc;
    IRMaker *mk; /* where nodes go: the model's graph, or a scratch graph while folding */
    bool folding;
    Value **in; /* node->ninputs entries; NULL for an optional input left out */
    int nin;
    Value *out; /* node->noutputs entries, filled by the lowering */
    int nout;
    Value **alias;   /* per output: set when the output is an input (set_out_alias) */
    bool *attr_used; /* per attribute: read by the lowering (others are refused) */
    int *fold_ids;   /* folding: each input's node in the scratch graph, -1 until made */
    int nerrors_before;
} Ctx;

typedef bool (*LowerFn)(Ctx *c);

/* ---- import.c: helpers for the op files ---- */

/* Reports a problem with this node: "Op 'name' (opset N): ..." */
bool node_error(Ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* "attribute NAME=VALUE is not supported" and the like, as node_error. */
bool unsupported(Ctx *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Attributes.  Each getter marks the attribute as read; a node attribute that
 * no getter read is refused after lowering (so none is silently ignored). */
const OnnxAttr *attr_find(Ctx *c, const char *name);
bool attr_int(Ctx *c, const char *name, int64_t dflt, int64_t *out);
bool attr_float(Ctx *c, const char *name, double dflt, double *out);
/* A string attribute, NUL-terminated in the arena; dflt when absent. */
bool attr_string(Ctx *c, const char *name, const char *dflt, const char **out);
/* An int list; *n = -1 when absent. */
bool attr_ints(Ctx *c, const char *name, const int64_t **out, int *n);
bool attr_floats(Ctx *c, const char *name, const float **out, int *n);
/* Marks an attribute as read without using it (one whose every value means the
 * same for inference, e.g. BatchNormalization's momentum). */
void attr_ignore(Ctx *c, const char *name);

/* Inputs.  in_id makes the input a node of the current target (a known value
 * becomes `full` or a weight); MK_ERROR after a diagnostic.  `has_in` is
 * whether optional input i is given. */
bool has_in(const Ctx *c, int i);
int in_id(Ctx *c, int i);
/* A constant the lowering computed (an interpolation matrix ...), as a node
 * of the current target: a weight named OUTPUT.what (t is moved). */
int c_tensor(Ctx *c, KilnTensor *t, const char *what);
/* The known integers of input i (a shape vector or a constant of rank <= 1):
 * NULL with a diagnostic naming `what` when they are not known at import. */
const SInt *in_ints(Ctx *c, int i, const char *what, int *n);
/* The same without a diagnostic (for the ints_* evaluators, which give up
 * quietly and let the op be lowered or folded). */
const SInt *in_ints_quiet(Ctx *c, int i, int *n);
/* The same, all numbers (no symbolic dimension): into out (arena). */
bool in_int_list(Ctx *c, int i, const char *what, int64_t **out, int *n);
/* A known scalar (any numeric dtype) as a double. */
bool in_scalar(Ctx *c, int i, const char *what, double *out);
/* The known tensor of input i, or NULL (no diagnostic). */
const KilnTensor *in_konst(Ctx *c, int i);

/* Outputs.  set_out gives output k the node `id` of the current target with
 * the ONNX dtype that its kiln dtype stands for; set_out_odt names the ONNX
 * dtype (a pass-through op keeps its input's, e.g. int8 held as i32). */
void set_out(Ctx *c, int k, int id);
void set_out_odt(Ctx *c, int k, int id, int32_t odt);
/* Output k is input i itself (Identity, Dropout): the same value under
 * another name, so that a weight shared through Identity nodes is one. */
void set_out_alias(Ctx *c, int k, int i);
/* A known output: a tensor of the model (a Constant's value), or one made
 * here (`t` is moved into the import, which frees it). */
bool set_out_tensor(Ctx *c, int k, const OnnxTensor *t);
bool set_out_konst(Ctx *c, int k, KilnTensor *t, int32_t odt);
/* A shape vector: n known integers, rank 0 (n == 1) or 1, ONNX dtype odt. */
void set_out_ints(Ctx *c, int k, const SInt *v, int n, int rank, int32_t odt);

/* Types of inputs (available for every input, known or not). */
static inline int in_rank(const Ctx *c, int i) { return c->in[i]->rank; }
static inline const Dim *in_shape(const Ctx *c, int i) { return c->in[i]->shape; }
static inline KilnDType in_dtype(const Ctx *c, int i) { return c->in[i]->dt; }

/* Normalises axis a of a rank-r tensor (negative from the end); false with a
 * diagnostic naming `what` when it is out of range. */
bool norm_axis(Ctx *c, int64_t a, int r, const char *what, int64_t *out);
/* Converts an ONNX dtype (an attribute such as Cast's `to`) for this node. */
bool kiln_dtype_for(Ctx *c, int32_t odt, const char *what, KilnDType *out);

/* GatherElements on nodes of the current target (ops_tensor.c), also used by
 * the losses (ops_nn.c). */
int gather_elements(Ctx *c, int x, int idx, int64_t axis);

/* Shorthands on the current target. */
MkLoc c_mkloc(Ctx *c);
int c_const(Ctx *c, double v, KilnDType dt);

/* ---- the op table (ops.def) ---- */

typedef struct {
    const char *op_type;
    int since; /* the oldest opset whose meaning of the op kiln implements */
    int needs; /* leading inputs the schema requires from `since` on */
    LowerFn lower;
    LowerFn ints; /* evaluates shape vectors (true when it did), or no_ints */
} OpDef;

const OpDef *onnx_find_op(const char *op_type);

#define ONNX_OP(name, since, needs, fn, ints)                                                                     \
    bool fn(Ctx *c);                                                                                         \
    bool ints(Ctx *c);
#include "onnx/ops.def"
#undef ONNX_OP

#endif
