/* pass.h - the graph-to-graph optimisation passes and their pipeline
 * (docs/passes.md).
 *
 * Every pass takes a verified graph and returns a new graph built into the
 * same arena; it never edits its input.  The new graph keeps the parameters
 * (same order, names, types), the results' dtypes and shapes, topological
 * order and every surviving node's source Loc.  passes_run (pipeline.c)
 * verifies the graph after each pass and can print it (--print-after).
 *
 *     passes_run:  [precision] -> fold -> simplify -> cse -> dce     (-O2)
 *
 * Passes: fold.c, simplify.c, cse.c, dce.c, decompose.c, precision.c. */
#ifndef KILN_PASS_H
#define KILN_PASS_H

#include "ir/ir.h"

typedef enum { PASS_PREC_F32, PASS_PREC_F16, PASS_PREC_BF16, PASS_PREC_AUTO } PassPrecision;

typedef struct {
    int opt_level;           /* 0: no optimisation pass; >= 1: the default pipeline */
    const char *passes;      /* "fold,cse": exactly these, in order (any opt level); NULL: default */
    const char *print_after; /* a pass name, or "all": ir_print to `dump` after it; NULL: never */
    FILE *dump;              /* where --print-after and remarks go; NULL: stderr */
    bool fast_math;          /* allow rewrites that are not exact in IEEE arithmetic */
    bool remarks;            /* one line per rewrite ("remark: fold: ...") */
    PassPrecision precision; /* != F32: the precision pass runs first, at every opt level */
    Trace *trace;            /* a span per pass is recorded here (ir.h); NULL: none */
} PassOptions;

/* Runs the pipeline on g.  *out is g itself when no pass runs, else a new
 * graph in `arena` (the caller then owns both: ir_graph_destroy each).
 * Intermediate graphs are destroyed here.  Returns KILN_OK, or with *out
 * NULL and a message in err: KILN_ERR_USAGE for an unknown pass name in
 * opt->passes or opt->print_after, KILN_ERR_DEVICE (exit 3: not the user's
 * fault) when a pass broke the IR (an internal error naming the pass). */
KilnStatus passes_run(Arena *arena, IRGraph *g, const PassOptions *opt, IRGraph **out, char *err,
                      size_t errlen);

/* Checks a --passes list ("a,b,c") or, with allow_all, a --print-after
 * name; false with a message naming the known passes. */
bool passes_check_names(const char *list, bool allow_all, char *err, size_t errlen);

/* The pipeline that `opt` selects, as "fold,simplify,cse,dce" (for docs and -v). */
void passes_describe(const PassOptions *opt, StrBuf *out);

/* ------------------------------------------------------------ pass context */

typedef struct {
    const PassOptions *opt;
    const char *pass; /* the running pass's name, for remarks */
    int changes;      /* rewrites made by the running pass */
} PassCtx;

/* "remark: PASS: op@line:col MESSAGE" when remarks are on; counts a change. */
void pass_remark(PassCtx *ctx, const Node *n, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

typedef IRGraph *(*PassFn)(Arena *arena, const IRGraph *g, PassCtx *ctx);

IRGraph *pass_fold(Arena *arena, const IRGraph *g, PassCtx *ctx);
IRGraph *pass_simplify(Arena *arena, const IRGraph *g, PassCtx *ctx);
IRGraph *pass_cse(Arena *arena, const IRGraph *g, PassCtx *ctx);
IRGraph *pass_dce(Arena *arena, const IRGraph *g, PassCtx *ctx);
IRGraph *pass_decompose(Arena *arena, const IRGraph *g, PassCtx *ctx);
IRGraph *pass_precision(Arena *arena, const IRGraph *g, PassCtx *ctx);

/* --------------------------------------------------------------- rewriter */

/* Copies a graph node by node through an old -> new id map.  A pass walks
 * the old nodes in order and, for each, either copies it (rw_copy), builds
 * replacement nodes (rw_add ...) or maps it to an existing new node
 * (rw->map[old] = new).  Inputs are mapped before their users, so the new
 * graph stays in topological order.  Node pointers into rw->g go stale on
 * every add: take them again (rw_node) after adding. */
typedef struct {
    const IRGraph *old;
    IRGraph *g;
    int *map; /* old id -> new id, -1 while unmapped (dropped) */
} Rewriter;

void rw_init(Rewriter *rw, Arena *arena, const IRGraph *old);
/* Copies old node `id` with its inputs mapped; sets and returns map[id]. */
int rw_copy(Rewriter *rw, int id);
/* A copy of old node `id` (op, dtype, shape, attributes, Loc) with the given
 * new inputs instead of its own; does not touch the map. */
int rw_clone(Rewriter *rw, int id, int nin, const int *new_in);
int rw_add(Rewriter *rw, Op op, KilnDType dt, int rank, const Dim *shape, int nin, const int *new_in, Loc loc);
/* A constant: OP_CONST for rank 0, else OP_FULL; value rounded to dt. */
int rw_const(Rewriter *rw, KilnDType dt, int rank, const Dim *shape, double value, Loc loc);
/* The same with a value already of dtype dt (exact for integers). */
int rw_const_scalar(Rewriter *rw, KilnDType dt, int rank, const Dim *shape, Scalar value, Loc loc);
void rw_set_ints(Rewriter *rw, int id, const int64_t *ints, int n);
static inline Node *rw_node(Rewriter *rw, int new_id) { return ir_node(rw->g, new_id); }
/* The new node that old node `id` maps to. */
static inline Node *rw_mapped(Rewriter *rw, int id) { return ir_node(rw->g, rw->map[id]); }
/* Maps params and results, frees the map, returns the new graph. */
IRGraph *rw_finish(Rewriter *rw);

/* ----------------------------------------------------------------- helpers */

bool same_shape_dims(int rank_a, const Dim *a, int rank_b, const Dim *b);
/* If node n is a constant (OP_CONST, or OP_FULL) sets *v to its value as
 * the interpreter sees it (rounded to its dtype). */
bool node_const_value(const Node *n, double *v);
/* The same, exact for every dtype (ir_node_scalar). */
bool node_const_scalar(const Node *n, Scalar *v);

#endif
