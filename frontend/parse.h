/* parse.h - what the scanner and the grammar share with the parser glue. */
#ifndef KILN_PARSE_H
#define KILN_PARSE_H

#include "frontend/ast.h"

/* An arena-backed growable list of pointers, for the grammar's lists. */
typedef struct {
    void **items;
    int len, cap;
} PList;

typedef struct ParseCtx {
    Arena *arena;
    const Source *src;
    DiagList *diags;
    int start_token;     /* returned first by the scanner */
    int line, col;       /* scanner position */
    int depth;           /* open ( and [ */
    bool too_deep;       /* the nesting limit was reported: the rest of the input is not read */
    bool suppressed;     /* the DiagList's suppress flag before parsing, restored after */
    int eof_newline_sent;
    Program *program;    /* whole-file result */
    ReplLine *repl;      /* REPL result */
    PList graphs;        /* GraphDef * */
} ParseCtx;

struct KilnLoc;
void parse_lex_error(ParseCtx *ctx, const struct KilnLoc *loc, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Brackets may nest this deep (as clang's -fbracket-depth): a limit that
 * keeps every walk over an expression's nesting shallow; past it one error
 * is reported and the rest of the input is not read. */
enum { PARSE_MAX_NESTING = 256 };
/* Reports the nesting limit once and stops the diagnostics of this parse. */
void parse_too_deep(ParseCtx *ctx, const struct KilnLoc *loc, const char *what);
/* A precise message for a non-ASCII character the scanner met (a
 * non-breaking space, a typographic quote or dash...); NULL for others. */
const char *parse_unicode_hint(const char *bytes, int len);

/* AST construction helpers used by the grammar's actions. */
PList *plist_new(ParseCtx *ctx);
PList *plist_push(ParseCtx *ctx, PList *l, void *item);
Expr *ast_expr(ParseCtx *ctx, ExprKind kind, Loc loc);
Expr *ast_binary(ParseCtx *ctx, OperatorTok op, Loc loc, Expr *lhs, Expr *rhs);
Expr *ast_unary(ParseCtx *ctx, OperatorTok op, Loc loc, Expr *operand);
Expr *ast_call(ParseCtx *ctx, const char *name, Loc loc, PList *args);
Expr *ast_list(ParseCtx *ctx, Loc loc, PList *items);
Expr *ast_index(ParseCtx *ctx, Loc loc, Expr *base, PList *items);
Expr *ast_kwarg(ParseCtx *ctx, const char *name, Loc loc, Expr *value);
Expr *ast_slice(ParseCtx *ctx, Loc loc, Expr *a, Expr *b, Expr *s);
TypeExpr *ast_type(ParseCtx *ctx, const char *dtype, Loc loc, PList *dims, bool scalar);
DimExpr *ast_dim(ParseCtx *ctx, const char *name, int64_t size, Loc loc);
Param *ast_param(ParseCtx *ctx, const char *name, Loc loc, TypeExpr *type);
Stmt *ast_assign(ParseCtx *ctx, PList *names, Expr *value);
Stmt *ast_return(ParseCtx *ctx, Loc loc, PList *values);
GraphDef *ast_graph(ParseCtx *ctx, const char *name, Loc loc, PList *params, PList *results,
                    PList *body);
Loc ctx_loc(ParseCtx *ctx, int line, int col);

/* Names of identifiers in a PList of names carry their location in a NameTok. */
typedef struct {
    const char *name;
    Loc loc;
} NameTok;
NameTok *ast_name_tok(ParseCtx *ctx, const char *name, Loc loc);

#endif
