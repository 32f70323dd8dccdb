/* ir.h - kiln's graph IR, grouped by the file that defines each part (as
 * chibicc does): the trace recorder, the op table and graph IR, printing and
 * verification, the reference interpreter.  It includes base/base.h
 * (utilities, diagnostics), so every layer above base/ gets both from
 * `#include "ir/ir.h"`.  The language's AST is in frontend/ast.h; later
 * stages (passes/, codegen/, runtime/) have their own headers that include
 * this one. */
#ifndef KILN_IR_H
#define KILN_IR_H

#include "base/base.h"

/* ----------------------------------------------------------------- trace.c */

/* A timeline of what one command did (`bench --trace`): spans on the
 * monotonic clock, each with a category, a name and the track it belongs
 * to, written as Chrome trace-event JSON (what chrome://tracing and
 * Perfetto open).  Every recorder takes a Trace that may be NULL -- then it
 * records nothing -- so that the layers hand it along (CompileOptions,
 * PassOptions, KProgram) without caring whether anyone listens.  Safe to
 * record into from several threads. */
typedef struct Trace Trace;
Trace *trace_new(void);
void trace_free(Trace *t);
double trace_clock_ms(void); /* the clock of every span, in ms */
/* A span on the calling host thread's own track ("kiln (host)"). */
void trace_span(Trace *t, const char *cat, double t0, double t1, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));
/* The track `thread` of `process` ("device cpu", "launches"), made on first
 * use; -1 when t is NULL. */
int trace_track(Trace *t, const char *process, const char *thread);
/* A span on `track`; args is a JSON object's text ("{...}") or NULL. */
void trace_span_on(Trace *t, int track, const char *cat, double t0, double t1, const char *args,
                   const char *fmt, ...) __attribute__((format(printf, 7, 8)));
/* The whole trace as Chrome trace-event JSON (JSON object format): spans as
 * complete events ("ph": "X", ts/dur in microseconds from the trace's
 * start), tracks named by metadata events.  other_data: more members of
 * "otherData" ("\"device\": \"cpu\"", no braces) or NULL. */
void trace_write_json(Trace *t, const char *other_data, StrBuf *out);
/* A span as read back (bench --report draws the timeline from these). */
typedef struct {
    const char *process, *thread, *cat, *name, *args; /* the trace's own strings; args may be NULL */
    double t0, t1;                                    /* ms from the start of the trace */
} TraceSpanView;
/* Every span, parents before children; returns the count (free() *out). */
int trace_spans(Trace *t, TraceSpanView **out);
/* s as a JSON string, quotes included. */
void json_quote(StrBuf *sb, const char *s);
/* How every trace kiln writes begins (runtime/outfile.c knows them by it). */
#define TRACE_JSON_HEAD "{\"otherData\": {\"generator\": \"kiln "

/* -------------------------------------------------------------------- ir.c */

typedef enum {
#define OP(e, name, kind, arity, flags) OP_##e,
#include "ir/ops.def"
#undef OP
    OP_COUNT
} Op;

typedef enum {
    OK_UNARY, OK_BINARY, OK_COMPARE, OK_LOGIC, OK_WHERE, OK_CAST,
    OK_REDUCE, OK_SHAPE, OK_CREATE, OK_NN, OK_SOURCE,
} OpKind;

enum {
    OPF_FLOAT = 1,
    OPF_INT_OK = 2,
    OPF_BUILTIN = 4,
    OPF_EXACT = 8, /* see ops.def */
    OPF_TRANSCENDENTAL = 16,
    OPF_VIEW = 32,
    OPF_HEAVY = 64,
};

typedef struct {
    const char *name;
    OpKind kind;
    int arity;
    int flags;
} OpInfo;
extern const OpInfo op_info[OP_COUNT];
bool op_lookup(const char *name, Op *out); /* builtin ops only */
/* The language's built-in functions that are not rows of ops.def but
 * composites the IR builder makes (ir/make.h), NULL-terminated: the front
 * ends' shared list of reserved names (the ONNX writer avoids them). */
extern const char *const lang_sugar_builtins[];
static inline bool op_has(Op op, int flag) { return (op_info[op].flags & flag) != 0; }
static inline bool op_is_elementwise(Op op) {
    OpKind k = op_info[op].kind;
    return k == OK_UNARY || k == OK_BINARY || k == OK_COMPARE || k == OK_LOGIC || k == OK_WHERE ||
           k == OK_CAST;
}

bool dtype_is_float(KilnDType dt);
bool dtype_is_int(KilnDType dt);
/* Integers and bool: the dtypes whose values are exact integers. */
static inline bool dtype_is_intlike(KilnDType dt) { return dtype_is_int(dt) || dt == KILN_BOOL; }

/* One value of a kiln dtype, as every stage that computes with values holds
 * it: integers and bools exactly in i (a bool is 0 or 1), floating-point
 * values in f (already rounded to their dtype).  Which member counts is the
 * dtype's business, so a Scalar always travels with one. */
typedef union {
    double f;
    int64_t i;
} Scalar;

/* A dimension: a non-negative value is a known size; a negative value d is
 * the symbolic dimension number -(d+1) of the graph (see SymDim). */
typedef int64_t Dim;
#define DIM_IS_SYM(d) ((d) < 0)
#define DIM_SYM_INDEX(d) ((int)(-(d)-1))
#define DIM_FROM_SYM(i) ((Dim)(-(int64_t)(i)-1))

/* Symbolic dimensions: a named one (B), or one derived from others (B*T,
 * B+2, or an opaque size such as a clipped slice of a symbolic axis).
 * Derived dimensions are hash-consed, so equal expressions get equal Dims. */
typedef enum { SYM_NAMED, SYM_MUL, SYM_ADD, SYM_DIV, SYM_OPAQUE } SymKind;
typedef struct {
    SymKind kind;
    const char *name; /* SYM_NAMED, SYM_OPAQUE (its printed form) */
    Dim a, b;
} SymDim;

typedef struct {
    Op op;
    KilnDType dtype;
    int rank;
    Dim *shape;
    int nin;
    int *in; /* node ids, all smaller than this node's id */
    int64_t *ints; /* op attributes, see ops.def */
    int nints;
    double value;
    /* OP_CONST, OP_FULL, OP_PAD of an integer or bool dtype: the exact value,
     * of which `value` is the nearest double.  Set both with ir_set_value or
     * ir_set_int_value and read them with ir_node_scalar. */
    int64_t ival;
    bool flag;
    const char *name; /* OP_PARAM: the parameter name */
    Loc loc;
} Node;

typedef struct {
    const char *name;
    int node;
} NamedValue;

/* A graph in SSA form: nodes in topological order, referenced by index. */
typedef struct {
    Arena *arena;
    const char *name;
    VEC(Node) nodes;
    VEC(int) params;  /* node ids of OP_PARAM nodes, in declaration order */
    VEC(int) results; /* node ids of the results */
    VEC(SymDim) syms;
} IRGraph;

IRGraph *ir_graph_new(Arena *arena, const char *name);
void ir_graph_destroy(IRGraph *g); /* frees the vectors; the arena is the caller's */
int ir_add_node(IRGraph *g, Op op, KilnDType dt, int rank, const Dim *shape, int nin,
                const int *in, Loc loc);
static inline Node *ir_node(const IRGraph *g, int id) { return &g->nodes.data[id]; }
int64_t ir_numel(const Node *n); /* -1 if any dimension is symbolic */
Dim ir_sym_named(IRGraph *g, const char *name);
Dim ir_dim_mul(IRGraph *g, Dim a, Dim b);
Dim ir_dim_add(IRGraph *g, Dim a, Dim b);
Dim ir_dim_div(IRGraph *g, Dim a, Dim b); /* exact division, or an opaque dim */
Dim ir_dim_opaque(IRGraph *g, const char *text);
/* The value attribute of n (OP_CONST, OP_FULL, OP_PAD) in n's dtype: ival for
 * integer and bool dtypes when it agrees with `value` (code that sets only
 * `value` gets it truncated), else value rounded to the dtype. */
Scalar ir_node_scalar(const Node *n);
void ir_set_value(Node *n, double v);      /* an integer dtype takes v truncated, saturating */
void ir_set_int_value(Node *n, int64_t v); /* exact for integer dtypes; a float dtype rounds */
void ir_dim_print(const IRGraph *g, Dim d, StrBuf *sb);
void ir_type_print(const IRGraph *g, KilnDType dt, int rank, const Dim *shape, StrBuf *sb);
/* Returns a heap string such as "f32[B, 784]"; free() it. */
char *ir_type_str(const IRGraph *g, KilnDType dt, int rank, const Dim *shape);
bool ir_graph_is_concrete(const IRGraph *g, const char **first_sym);

/* print.c: `emit --emit=ir` and `--emit=dot`. */
void ir_print(const IRGraph *g, FILE *out);
/* title: a label on top, or NULL. */
void ir_print_dot(const IRGraph *g, const char *title, FILE *out);
/* Writes s inside a Graphviz string: quotes and backslashes escaped,
 * control characters dropped. */
void ir_dot_escaped(const char *s, FILE *out);

/* verify.c: checks the IR's invariants; returns false and says why. */
bool ir_verify(const IRGraph *g, char *err, size_t errlen);

/* ----------------------------------------------------------- dimensions */

/* A symbolic dimension bound to a size by the user (--dim, input shapes);
 * both front ends and the runtime take them. */
typedef struct {
    const char *name;
    int64_t size;
} DimBinding;

/* ---------------------------------------------------------------- interp.c */

/* The reference interpreter: plain loops, floats in double and each op's
 * result rounded to its dtype, integers exactly in int64 wrapping to their
 * width (NumPy's semantics).  `g` must be concrete.  inputs[i] matches
 * g->params[i]; outputs (g->results.len of them) are allocated here.
 * Returns false with a message in err on failure (out of memory). */
bool ref_run(const IRGraph *g, const KilnTensor *inputs, KilnTensor *outputs, char *err,
             size_t errlen);

/* The scalar semantics every device follows (docs/language.md, "Numbers"):
 *  - conversions (scalar_convert), as NumPy's astype: to a float, rounding to
 *    nearest even once (an integer to f16 or bf16 goes through f32, as
 *    ml_dtypes' bfloat16 does); float -> integer truncates toward zero
 *    and saturates at the dtype's ends, NaN -> 0 (NumPy leaves this
 *    undefined; XLA does the same); integer -> narrower integer wraps
 *    (two's complement); -> bool is != 0;
 *  - integer arithmetic wraps to the dtype's width; x % 0 = 0 (NumPy's
 *    result), the remainder takes the divisor's sign; x ** -n = 0 except for
 *    bases 1 and -1 (NumPy refuses it).
 * ref_eval_scalar is one elementwise op (OK_UNARY ... OK_CAST) on operands
 * of dtype in_dt (for where: x[0] is the bool condition, x[1], x[2] in_dt),
 * with a result of dtype dt. */
Scalar scalar_convert(Scalar v, KilnDType from, KilnDType to);
Scalar scalar_from_double(double v, KilnDType dt);
Scalar scalar_from_int(int64_t v, KilnDType dt);
double scalar_to_double(Scalar v, KilnDType dt);    /* an int64 beyond 2^53 rounds to nearest */
bool scalar_same(Scalar a, Scalar b, KilnDType dt); /* bitwise for floats: -0 != 0, NaN == NaN */
Scalar ref_eval_scalar(Op op, KilnDType dt, KilnDType in_dt, bool flag, const Scalar *x);
/* The same on doubles, for floating-point dtypes (an integer beyond 2^53
 * does not survive the trip: use ref_eval_scalar). */
double ref_eval_elementwise(Op op, KilnDType dt, bool flag, const double *operands);
/* The size an average-pooling window divides by along one axis (PyTorch's
 * and ONNX's rule): the window [start, start + k), cut at the padded end
 * size + pad_end, and without include_pad to the input [0, size). */
int64_t ref_pool_count(int64_t start, int64_t k, int64_t size, int64_t pad_end, bool include_pad);
/* Rounds a double to what dtype `dt` can hold (f16/bf16 to nearest even). */
double ref_round_to_dtype(double v, KilnDType dt);

#endif
