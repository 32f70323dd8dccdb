/* ast.h - the language front end's syntax tree (frontend/): what the parser
 * (parse.c, grammar/) builds, ast.c prints and lower.c turns into graph IR
 * through the IR builder (ir/make.h).  Only the language front end and the
 * application (app/: the CLI driver, the REPL) use it; the ONNX front end is
 * its peer and builds IR without it. */
#ifndef KILN_AST_H
#define KILN_AST_H

#include "ir/ir.h"

typedef enum {
    E_INT,    /* ival */
    E_FLOAT,  /* fval */
    E_BOOL,   /* ival */
    E_NAME,   /* name */
    E_CALL,   /* name(args, kwargs) */
    E_BINARY, /* lhs op rhs */
    E_UNARY,  /* op lhs */
    E_INDEX,  /* lhs[args]; an arg may be E_SLICE */
    E_SLICE,  /* a:b:s inside an index; any of lhs, rhs, step may be NULL */
    E_LIST,   /* [args] */
    E_STRING, /* "text" in name; only the REPL's load("FILE.npy") takes one */
} ExprKind;

/* Binary and unary operator tokens of the language. */
typedef enum {
    BIN_ADD, BIN_SUB, BIN_MUL, BIN_DIV, BIN_MOD, BIN_MATMUL, BIN_POW,
    BIN_EQ, BIN_NE, BIN_LT, BIN_LE, BIN_GT, BIN_GE, BIN_AND, BIN_OR,
    UN_NEG, UN_PLUS, UN_NOT,
} OperatorTok;

typedef struct Expr Expr;
typedef struct {
    const char *name;
    Expr *value;
    Loc loc;
} KwArg;

struct Expr {
    ExprKind kind;
    Loc loc;
    OperatorTok op;
    int64_t ival;
    double fval;
    const char *name;
    Expr *lhs, *rhs, *step;
    Expr **args;
    int nargs;
    KwArg *kwargs;
    int nkwargs;
};

typedef struct {
    const char *name; /* NULL for a fixed size */
    int64_t size;
    Loc loc;
} DimExpr;

typedef struct {
    const char *dtype_name;
    Loc loc;
    DimExpr *dims;
    int rank;
    bool scalar; /* bare DTYPE, no brackets */
} TypeExpr;

typedef struct {
    const char *name;
    Loc loc;
    TypeExpr type;
} Param;

typedef enum { S_ASSIGN, S_RETURN } StmtKind;

typedef struct {
    StmtKind kind;
    Loc loc;
    const char **names; /* S_ASSIGN: one name, or several for `a, b = g(x)` */
    Loc *name_locs;
    int nnames;
    Expr **values; /* S_ASSIGN: one; S_RETURN: one per result */
    int nvalues;
} Stmt;

typedef struct {
    const char *name;
    Loc loc;
    Param *params;
    int nparams;
    TypeExpr *results;
    int nresults;
    Stmt *body;
    int nstmts;
    bool infer_results; /* the REPL's own graph: results take the returned values' types */
} GraphDef;

typedef struct {
    GraphDef *graphs;
    int ngraphs;
} Program;

/* What one REPL line parsed to. */
typedef enum { REPL_EMPTY, REPL_GRAPH, REPL_ASSIGN, REPL_EXPR } ReplKind;
typedef struct {
    ReplKind kind;
    GraphDef graph;
    Stmt stmt;  /* REPL_ASSIGN */
    Expr *expr; /* REPL_EXPR */
} ReplLine;

/* parse.c: the parser glue.  Syntax errors go to `diags`; the AST lives in
 * `arena`.  Return false if any syntax error was found (the Program then
 * holds whatever parsed). */
bool parse_program(Arena *arena, const Source *src, DiagList *diags, Program *out);
bool parse_repl_line(Arena *arena, const Source *src, DiagList *diags, ReplLine *out);
void ast_print(const Program *p, FILE *out);
void expr_print(const Expr *e, StrBuf *sb);

/* ----------------------------------------------------------------- lower.c */

/* Builds the IR of graph `entry` of `prog` through the IR builder (ir/make.h),
 * type-checking as it goes and inlining graph calls.  With bindings for all its symbolic dimensions the
 * result is concrete (every Dim >= 0).  Errors go to `diags`; returns NULL if
 * there were any. */
IRGraph *ir_build(Arena *arena, const Program *prog, int entry, const DimBinding *binds,
                  int nbinds, DiagList *diags);
/* Type-checks every graph of the program (symbolically); true if clean. */
bool ir_check_program(const Program *prog, DiagList *diags);
int program_find_graph(const Program *prog, const char *name);

#endif
