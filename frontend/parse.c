/* parse.c - glue between the flex scanner, the bison grammar and the AST:
 * runs the parser over a Source and builds the AST in an arena. */
#include "frontend/parse.h"

#include "kiln.tab.h"
typedef KILN_YYSTYPE YYSTYPE;
typedef struct KilnLoc YYLTYPE; /* the scanner's header names the unprefixed types */
#include "kiln.lex.h"

#include <string.h>

Loc ctx_loc(ParseCtx *ctx, int line, int col) { return (Loc){ctx->src, line, col}; }

void parse_lex_error(ParseCtx *ctx, const struct KilnLoc *loc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    StrBuf sb = {0};
    sb_vprintf(&sb, fmt, ap);
    va_end(ap);
    diag_error(ctx->diags, ctx_loc(ctx, loc->first_line, loc->first_column), "%s", sb.data);
    sb_free(&sb);
}

void parse_too_deep(ParseCtx *ctx, const struct KilnLoc *loc, const char *what) {
    if (ctx->too_deep) return;
    parse_lex_error(ctx, loc, "%s", what);
    diag_hint(ctx->diags,
              "kiln reads at most %d levels of brackets, and fewer of unary operators or '**' in a "
              "row; name intermediate values with statements",
              PARSE_MAX_NESTING);
    ctx->too_deep = true;
    ctx->diags->suppress = true; /* what follows would only repeat it */
}

const char *parse_unicode_hint(const char *bytes, int len) {
    static const struct {
        const char *utf8, *message;
    } known[] = {
        {"\xc2\xa0", "a non-breaking space (U+00A0); use an ordinary space"},
        {"\xe2\x80\xaf", "a narrow non-breaking space (U+202F); use an ordinary space"},
        {"\xe2\x80\x8b", "a zero-width space (U+200B); delete it"},
        {"\xef\xbb\xbf", "a byte-order mark (U+FEFF) inside the text; delete it"},
        {"\xe3\x80\x80", "an ideographic space (U+3000); use an ordinary space"},
        {"\xe2\x80\x93", "an en dash (U+2013); use '-'"},
        {"\xe2\x80\x94", "an em dash (U+2014); use '-'"},
        {"\xe2\x88\x92", "a minus sign (U+2212); use '-'"},
        {"\xc3\x97", "a multiplication sign (U+00D7); use '*'"},
        {"\xe2\x80\x98", "a typographic quote (U+2018); use '\"' around strings"},
        {"\xe2\x80\x99", "a typographic quote (U+2019); use '\"' around strings"},
        {"\xe2\x80\x9c", "a typographic quote (U+201C); use '\"'"},
        {"\xe2\x80\x9d", "a typographic quote (U+201D); use '\"'"},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++)
        if ((int)strlen(known[i].utf8) == len && memcmp(known[i].utf8, bytes, (size_t)len) == 0)
            return known[i].message;
    return NULL;
}

PList *plist_new(ParseCtx *ctx) { return ARENA_NEW(ctx->arena, PList); }

PList *plist_push(ParseCtx *ctx, PList *l, void *item) {
    if (l->len == l->cap) {
        int cap = l->cap ? l->cap * 2 : 4;
        void **items = ARENA_ARRAY(ctx->arena, void *, cap);
        if (l->len) memcpy(items, l->items, sizeof(void *) * (size_t)l->len);
        l->items = items;
        l->cap = cap;
    }
    l->items[l->len++] = item;
    return l;
}

Expr *ast_expr(ParseCtx *ctx, ExprKind kind, Loc loc) {
    Expr *e = ARENA_NEW(ctx->arena, Expr);
    e->kind = kind;
    e->loc = loc;
    return e;
}

Expr *ast_binary(ParseCtx *ctx, OperatorTok op, Loc loc, Expr *lhs, Expr *rhs) {
    Expr *e = ast_expr(ctx, E_BINARY, loc);
    e->op = op;
    e->lhs = lhs;
    e->rhs = rhs;
    return e;
}

Expr *ast_unary(ParseCtx *ctx, OperatorTok op, Loc loc, Expr *operand) {
    Expr *e = ast_expr(ctx, E_UNARY, loc);
    e->op = op;
    e->lhs = operand;
    return e;
}

/* A keyword argument travels through the grammar as a marker Expr (kind
 * E_CALL, name == KW_TAG, lhs = the value, step = the keyword) until
 * split_args moves it into the call's kwargs. */
static const char KW_TAG[] = "<kwarg>";

Expr *ast_kwarg(ParseCtx *ctx, const char *name, Loc loc, Expr *value) {
    Expr *e = ast_expr(ctx, E_CALL, loc);
    e->name = KW_TAG;
    e->lhs = value;
    e->step = (Expr *)(void *)name; /* the keyword, see split_args */
    return e;
}

static bool is_kwarg(const Expr *e) { return e->kind == E_CALL && e->name == KW_TAG; }

/* Splits a parsed argument list into positional and keyword arguments. */
static void split_args(ParseCtx *ctx, PList *args, Expr *into, const char *what) {
    int npos = 0, nkw = 0;
    for (int i = 0; i < args->len; i++) is_kwarg(args->items[i]) ? nkw++ : npos++;
    into->args = ARENA_ARRAY(ctx->arena, Expr *, npos);
    into->kwargs = ARENA_ARRAY(ctx->arena, KwArg, nkw);
    bool seen_kw = false;
    for (int i = 0; i < args->len; i++) {
        Expr *a = args->items[i];
        if (is_kwarg(a)) {
            seen_kw = true;
            into->kwargs[into->nkwargs++] = (KwArg){(const char *)(void *)a->step, a->lhs, a->loc};
        } else {
            if (seen_kw)
                diag_error(ctx->diags, a->loc, "positional argument after keyword arguments in %s",
                           what);
            into->args[into->nargs++] = a;
        }
    }
}

Expr *ast_call(ParseCtx *ctx, const char *name, Loc loc, PList *args) {
    Expr *e = ast_expr(ctx, E_CALL, loc);
    e->name = name;
    split_args(ctx, args, e, "a call");
    return e;
}

Expr *ast_list(ParseCtx *ctx, Loc loc, PList *items) {
    Expr *e = ast_expr(ctx, E_LIST, loc);
    split_args(ctx, items, e, "a list");
    for (int i = 0; i < e->nkwargs; i++)
        diag_error(ctx->diags, e->kwargs[i].loc, "a list cannot hold 'name = value' items");
    return e;
}

Expr *ast_index(ParseCtx *ctx, Loc loc, Expr *base, PList *items) {
    Expr *e = ast_expr(ctx, E_INDEX, loc);
    e->lhs = base;
    e->args = (Expr **)items->items;
    e->nargs = items->len;
    return e;
}

Expr *ast_slice(ParseCtx *ctx, Loc loc, Expr *a, Expr *b, Expr *s) {
    Expr *e = ast_expr(ctx, E_SLICE, loc);
    e->lhs = a;
    e->rhs = b;
    e->step = s;
    return e;
}

TypeExpr *ast_type(ParseCtx *ctx, const char *dtype, Loc loc, PList *dims, bool scalar) {
    TypeExpr *t = ARENA_NEW(ctx->arena, TypeExpr);
    t->dtype_name = dtype;
    t->loc = loc;
    t->scalar = scalar;
    t->rank = dims->len;
    t->dims = ARENA_ARRAY(ctx->arena, DimExpr, dims->len);
    for (int i = 0; i < dims->len; i++) t->dims[i] = *(DimExpr *)dims->items[i];
    return t;
}

DimExpr *ast_dim(ParseCtx *ctx, const char *name, int64_t size, Loc loc) {
    DimExpr *d = ARENA_NEW(ctx->arena, DimExpr);
    d->name = name;
    d->size = size;
    d->loc = loc;
    return d;
}

Param *ast_param(ParseCtx *ctx, const char *name, Loc loc, TypeExpr *type) {
    Param *p = ARENA_NEW(ctx->arena, Param);
    p->name = name;
    p->loc = loc;
    p->type = *type;
    return p;
}

NameTok *ast_name_tok(ParseCtx *ctx, const char *name, Loc loc) {
    NameTok *t = ARENA_NEW(ctx->arena, NameTok);
    t->name = name;
    t->loc = loc;
    return t;
}

Stmt *ast_assign(ParseCtx *ctx, PList *names, Expr *value) {
    Stmt *s = ARENA_NEW(ctx->arena, Stmt);
    s->kind = S_ASSIGN;
    s->nnames = names->len;
    s->names = ARENA_ARRAY(ctx->arena, const char *, names->len);
    s->name_locs = ARENA_ARRAY(ctx->arena, Loc, names->len);
    for (int i = 0; i < names->len; i++) {
        NameTok *t = names->items[i];
        s->names[i] = t->name;
        s->name_locs[i] = t->loc;
    }
    s->loc = s->name_locs[0];
    s->values = ARENA_ARRAY(ctx->arena, Expr *, 1);
    s->values[0] = value;
    s->nvalues = 1;
    return s;
}

Stmt *ast_return(ParseCtx *ctx, Loc loc, PList *values) {
    Stmt *s = ARENA_NEW(ctx->arena, Stmt);
    s->kind = S_RETURN;
    s->loc = loc;
    s->values = (Expr **)values->items;
    s->nvalues = values->len;
    return s;
}

GraphDef *ast_graph(ParseCtx *ctx, const char *name, Loc loc, PList *params, PList *results,
                    PList *body) {
    GraphDef *g = ARENA_NEW(ctx->arena, GraphDef);
    g->name = name;
    g->loc = loc;
    g->nparams = params->len;
    g->params = ARENA_ARRAY(ctx->arena, Param, params->len);
    for (int i = 0; i < params->len; i++) g->params[i] = *(Param *)params->items[i];
    g->nresults = results->len;
    g->results = ARENA_ARRAY(ctx->arena, TypeExpr, results->len);
    for (int i = 0; i < results->len; i++) g->results[i] = *(TypeExpr *)results->items[i];
    g->nstmts = body->len;
    g->body = ARENA_ARRAY(ctx->arena, Stmt, body->len);
    for (int i = 0; i < body->len; i++) g->body[i] = *(Stmt *)body->items[i];
    return g;
}

static bool run_parser(ParseCtx *ctx, int start_token) {
    yyscan_t scanner;
    if (kiln_yylex_init_extra(ctx, &scanner) != 0) {
        diag_error(ctx->diags, (Loc){0}, "cannot start the scanner");
        return false;
    }
    ctx->start_token = start_token;
    ctx->line = ctx->col = 1;
    ctx->suppressed = ctx->diags->suppress;
    int before = ctx->diags->nerrors;
    /* a UTF-8 byte-order mark at the start of a file is not part of the text */
    size_t skip = ctx->src->len >= 3 && memcmp(ctx->src->text, "\xef\xbb\xbf", 3) == 0 ? 3 : 0;
    YY_BUFFER_STATE buf = kiln_yy_scan_bytes(ctx->src->text + skip, (int)(ctx->src->len - skip), scanner);
    int rc = kiln_yyparse(scanner, ctx);
    kiln_yy_delete_buffer(buf, scanner);
    kiln_yylex_destroy(scanner);
    ctx->diags->suppress = ctx->suppressed;
    if (rc == 2 && !ctx->too_deep) diag_error(ctx->diags, (Loc){0}, "the parser ran out of memory");
    if (rc != 0 && ctx->diags->nerrors == before)
        diag_error(ctx->diags, (Loc){ctx->src, ctx->line, ctx->col}, "cannot parse this input");
    return ctx->diags->nerrors == before;
}

bool parse_program(Arena *arena, const Source *src, DiagList *diags, Program *out) {
    ParseCtx ctx = {.arena = arena, .src = src, .diags = diags, .program = out};
    bool ok = run_parser(&ctx, START_PROGRAM);
    out->ngraphs = ctx.graphs.len;
    out->graphs = ARENA_ARRAY(arena, GraphDef, ctx.graphs.len);
    for (int i = 0; i < ctx.graphs.len; i++) out->graphs[i] = *(GraphDef *)ctx.graphs.items[i];
    return ok;
}

bool parse_repl_line(Arena *arena, const Source *src, DiagList *diags, ReplLine *out) {
    memset(out, 0, sizeof *out);
    ParseCtx ctx = {.arena = arena, .src = src, .diags = diags, .repl = out};
    return run_parser(&ctx, START_REPL);
}
