/* kiln.y - the grammar of the kiln language (shared/spec/language.md).
 * A pure, reentrant parser with locations.  Precedence is spelled out as one
 * rule per level (loosest first), which keeps the grammar free of conflicts:
 *   or < and < not < comparison (no chaining) < + - < * / % @ < unary - + < ** < call, index
 * Actions only build the AST (frontend/parse.c); all checking happens later. */
%define api.pure full
%define api.prefix {kiln_yy}
%define parse.error custom
%define parse.lac full
%locations
%expect 0

%code requires {
#include "frontend/parse.h"
typedef void *yyscan_t;
#define KILN_YYLTYPE_IS_DECLARED 1
struct KilnLoc { int first_line, first_column, last_line, last_column; };
#define KILN_YYLTYPE struct KilnLoc
}

%code {
#include <string.h>
/* The parser's stack: deep enough for PARSE_MAX_NESTING brackets, shallow
 * enough that every later walk over an expression's nesting stays small. */
#define YYMAXDEPTH 4000
int kiln_yylex(KILN_YYSTYPE *lval, struct KilnLoc *lloc, yyscan_t scanner);
static void kiln_yyerror(const struct KilnLoc *loc, yyscan_t scanner, ParseCtx *ctx, const char *msg);
#define L(x) ctx_loc(ctx, (x).first_line, (x).first_column)
}

%param {yyscan_t scanner}
%parse-param {ParseCtx *ctx}

%union {
    Expr *expr;
    PList *list;
    const char *str;
    int64_t ival;
    double fval;
    Stmt *stmt;
    TypeExpr *type;
    GraphDef *graph;
}

%token START_PROGRAM START_REPL
%token GRAPH "graph" RETURN "return" AND "and" OR "or" NOT "not"
%token <str> IDENT "name"
%token <ival> INT_LIT "integer" BOOL_LIT "boolean"
%token <fval> FLOAT_LIT "number"
%token <str> STRING_LIT "string"
%token ARROW "->" EQ "==" NE "!=" LE "<=" GE ">=" POW "**"
%token NEWLINE "end of line"

%type <expr> expr or_expr and_expr not_expr cmp_expr cmp_chain add_expr mul_expr unary power postfix primary
%type <expr> arg index_item opt_expr
%type <list> args arg_list index_list list_items params param_list dims dim_list
%type <list> result_types type_list names ret_values stmt_seq body
%type <stmt> stmt
%type <type> type
%type <graph> graph
%type <ival> cmp_op

%%

input
    : START_PROGRAM opt_nl graph_list
    | START_REPL repl_line
    ;

graph_list
    : %empty
    | graph_list graph opt_nl           { plist_push(ctx, &ctx->graphs, $2); }
    | graph_list error '}' opt_nl
    ;

opt_nl
    : %empty
    | opt_nl NEWLINE
    ;

repl_line
    : opt_nl                            { ctx->repl->kind = REPL_EMPTY; }
    | opt_nl graph opt_nl               { ctx->repl->kind = REPL_GRAPH; ctx->repl->graph = *$2; }
    | opt_nl names '=' expr opt_terms   { ctx->repl->kind = REPL_ASSIGN; ctx->repl->stmt = *ast_assign(ctx, $2, $4); }
    | opt_nl expr opt_terms             { ctx->repl->kind = REPL_EXPR; ctx->repl->expr = $2; }
    ;

opt_terms
    : %empty
    | opt_terms NEWLINE
    | opt_terms ';'
    ;

/* graph NAME(PARAMS) -> TYPES { BODY } */
graph
    : GRAPH IDENT '(' params ')' ARROW result_types opt_nl '{' body '}'
                                        { $$ = ast_graph(ctx, $2, L(@2), $4, $7, $10); }
    ;

params
    : %empty                            { $$ = plist_new(ctx); }
    | param_list
    | param_list ','
    ;

param_list
    : IDENT ':' type                    { $$ = plist_push(ctx, plist_new(ctx), ast_param(ctx, $1, L(@1), $3)); }
    | param_list ',' IDENT ':' type     { $$ = plist_push(ctx, $1, ast_param(ctx, $3, L(@3), $5)); }
    ;

result_types
    : type                              { $$ = plist_push(ctx, plist_new(ctx), $1); }
    | '(' type_list ')'                 { $$ = $2; }
    ;

type_list
    : type                              { $$ = plist_push(ctx, plist_new(ctx), $1); }
    | type_list ',' type                { $$ = plist_push(ctx, $1, $3); }
    ;

/* f32[B, 784] or a bare dtype for a scalar */
type
    : IDENT '[' dims ']'                { $$ = ast_type(ctx, $1, L(@1), $3, false); }
    | IDENT                             { $$ = ast_type(ctx, $1, L(@1), plist_new(ctx), true); }
    ;

dims
    : %empty                            { $$ = plist_new(ctx); }
    | dim_list
    ;

dim_list
    : INT_LIT                           { $$ = plist_push(ctx, plist_new(ctx), ast_dim(ctx, NULL, $1, L(@1))); }
    | IDENT                             { $$ = plist_push(ctx, plist_new(ctx), ast_dim(ctx, $1, 0, L(@1))); }
    | dim_list ',' INT_LIT              { $$ = plist_push(ctx, $1, ast_dim(ctx, NULL, $3, L(@3))); }
    | dim_list ',' IDENT                { $$ = plist_push(ctx, $1, ast_dim(ctx, $3, 0, L(@3))); }
    ;

/* A body: statements ended by newlines or ';' (the last may end at '}'). */
body
    : stmt_seq
    | stmt_seq stmt                     { $$ = plist_push(ctx, $1, $2); }
    ;

stmt_seq
    : %empty                            { $$ = plist_new(ctx); }
    | stmt_seq NEWLINE
    | stmt_seq ';'
    | stmt_seq stmt NEWLINE             { $$ = plist_push(ctx, $1, $2); }
    | stmt_seq stmt ';'                 { $$ = plist_push(ctx, $1, $2); }
    | stmt_seq error NEWLINE
    ;

stmt
    : names '=' expr                    { $$ = ast_assign(ctx, $1, $3); }
    | RETURN ret_values                 { $$ = ast_return(ctx, L(@1), $2); }
    ;

names
    : IDENT                             { $$ = plist_push(ctx, plist_new(ctx), ast_name_tok(ctx, $1, L(@1))); }
    | names ',' IDENT                   { $$ = plist_push(ctx, $1, ast_name_tok(ctx, $3, L(@3))); }
    ;

ret_values
    : expr                              { $$ = plist_push(ctx, plist_new(ctx), $1); }
    | ret_values ',' opt_nl expr        { $$ = plist_push(ctx, $1, $4); } /* may wrap after a comma */
    ;

expr: or_expr ;

or_expr
    : or_expr OR and_expr               { $$ = ast_binary(ctx, BIN_OR, L(@2), $1, $3); }
    | and_expr
    ;

and_expr
    : and_expr AND not_expr             { $$ = ast_binary(ctx, BIN_AND, L(@2), $1, $3); }
    | not_expr
    ;

not_expr
    : NOT not_expr                      { $$ = ast_unary(ctx, UN_NOT, L(@1), $2); }
    | cmp_expr
    ;

cmp_expr
    : cmp_chain
    | add_expr
    ;

/* a < b.  Comparisons do not chain: a < b < c parses, so that it can be
 * reported as what it is rather than as a stray token. */
cmp_chain
    : add_expr cmp_op add_expr          { $$ = ast_binary(ctx, (OperatorTok)$2, L(@2), $1, $3); }
    | cmp_chain cmp_op add_expr         { $$ = $1;
                                          diag_error(ctx->diags, L(@2), "comparisons do not chain");
                                          diag_hint(ctx->diags, "compare twice and join with 'and', e.g. (a < b) and (b < c)"); }
    ;

cmp_op
    : EQ                                { $$ = BIN_EQ; }
    | NE                                { $$ = BIN_NE; }
    | '<'                               { $$ = BIN_LT; }
    | LE                                { $$ = BIN_LE; }
    | '>'                               { $$ = BIN_GT; }
    | GE                                { $$ = BIN_GE; }
    ;

add_expr
    : add_expr '+' mul_expr             { $$ = ast_binary(ctx, BIN_ADD, L(@2), $1, $3); }
    | add_expr '-' mul_expr             { $$ = ast_binary(ctx, BIN_SUB, L(@2), $1, $3); }
    | mul_expr
    ;

mul_expr
    : mul_expr '*' unary                { $$ = ast_binary(ctx, BIN_MUL, L(@2), $1, $3); }
    | mul_expr '/' unary                { $$ = ast_binary(ctx, BIN_DIV, L(@2), $1, $3); }
    | mul_expr '%' unary                { $$ = ast_binary(ctx, BIN_MOD, L(@2), $1, $3); }
    | mul_expr '@' unary                { $$ = ast_binary(ctx, BIN_MATMUL, L(@2), $1, $3); }
    | unary
    ;

unary
    : '-' unary                         { $$ = ast_unary(ctx, UN_NEG, L(@1), $2); }
    | '+' unary                         { $$ = ast_unary(ctx, UN_PLUS, L(@1), $2); }
    | power
    ;

/* right-associative; the exponent may carry a sign: 2 ** -1 */
power
    : postfix POW unary                 { $$ = ast_binary(ctx, BIN_POW, L(@2), $1, $3); }
    | postfix
    ;

postfix
    : primary
    | postfix '[' index_list ']'        { $$ = ast_index(ctx, L(@2), $1, $3); }
    ;

primary
    : IDENT                             { $$ = ast_expr(ctx, E_NAME, L(@1)); $$->name = $1; }
    | INT_LIT                           { $$ = ast_expr(ctx, E_INT, L(@1)); $$->ival = $1; }
    | FLOAT_LIT                         { $$ = ast_expr(ctx, E_FLOAT, L(@1)); $$->fval = $1; }
    | BOOL_LIT                          { $$ = ast_expr(ctx, E_BOOL, L(@1)); $$->ival = $1; }
    | STRING_LIT                        { $$ = ast_expr(ctx, E_STRING, L(@1)); $$->name = $1; }
    | IDENT '(' args ')'                { $$ = ast_call(ctx, $1, L(@1), $3); }
    | '(' expr ')'                      { $$ = $2; }
    | '[' list_items ']'                { $$ = ast_list(ctx, L(@1), $2); }
    ;

args
    : %empty                            { $$ = plist_new(ctx); }
    | arg_list
    | arg_list ','
    ;

arg_list
    : arg                               { $$ = plist_push(ctx, plist_new(ctx), $1); }
    | arg_list ',' arg                  { $$ = plist_push(ctx, $1, $3); }
    ;

arg
    : expr
    | IDENT '=' expr                    { $$ = ast_kwarg(ctx, $1, L(@1), $3); }
    ;

list_items
    : %empty                            { $$ = plist_new(ctx); }
    | arg_list                          /* keyword items are refused by the checker */
    | arg_list ','
    ;

index_list
    : index_item                        { $$ = plist_push(ctx, plist_new(ctx), $1); }
    | index_list ',' index_item         { $$ = plist_push(ctx, $1, $3); }
    ;

index_item
    : expr
    | opt_expr ':' opt_expr             { $$ = ast_slice(ctx, L(@2), $1, $3, NULL); }
    | opt_expr ':' opt_expr ':' opt_expr { $$ = ast_slice(ctx, L(@2), $1, $3, $5); }
    ;

opt_expr
    : %empty                            { $$ = NULL; }
    | expr
    ;

%%

/* Called by bison only when its stack overflows (YYMAXDEPTH). */
static void kiln_yyerror(const struct KilnLoc *loc, yyscan_t scanner, ParseCtx *ctx, const char *msg) {
    (void)scanner, (void)msg;
    parse_too_deep(ctx, loc, "the expression nests too deeply here");
}

/* Syntax errors read "expected X or Y, found Z" at the offending token.  A
 * token is named as the user would say it: a name, an integer, 'graph', '->'. */
static const char *token_text(yysymbol_kind_t sym) {
    switch (sym) {
    case YYSYMBOL_YYEOF: return "end of file";
    case YYSYMBOL_NEWLINE: return "end of line";
    case YYSYMBOL_IDENT: return "a name";
    case YYSYMBOL_INT_LIT: return "an integer";
    case YYSYMBOL_FLOAT_LIT: return "a number";
    case YYSYMBOL_BOOL_LIT: return "a boolean";
    case YYSYMBOL_STRING_LIT: return "a string";
    default: return NULL; /* quoted by the caller */
    }
}

static void token_put(StrBuf *sb, yysymbol_kind_t sym, bool article) {
    const char *text = token_text(sym), *name = yysymbol_name(sym);
    if (text && !article && strncmp(text, "a ", 2) == 0) text += 2;
    if (text && !article && strncmp(text, "an ", 3) == 0) text += 3;
    if (text) sb_puts(sb, text);
    else if (name[0] == '\'') sb_puts(sb, name); /* '}' is quoted already */
    else sb_printf(sb, "'%s'", name);
}

/* Whether sym is one of the tokens named in `names` (as yysymbol_name spells
 * them, separated by spaces); by name, so that the grammar may add tokens. */
static bool sym_in(yysymbol_kind_t sym, const char *names) {
    const char *name = yysymbol_name(sym);
    size_t len = strlen(name);
    for (const char *p = names; *p;) {
        size_t k = strcspn(p, " ");
        if (k == len && strncmp(p, name, len) == 0) return true;
        p += k + (p[k] == ' ');
    }
    return false;
}

static bool starts_expr(yysymbol_kind_t s) {
    return s == YYSYMBOL_IDENT || s == YYSYMBOL_INT_LIT || s == YYSYMBOL_FLOAT_LIT ||
           s == YYSYMBOL_BOOL_LIT || s == YYSYMBOL_STRING_LIT || sym_in(s, "not '(' '[' '+' '-'");
}

static bool is_operator(yysymbol_kind_t s) {
    return sym_in(s, "and or == != <= >= ** '<' '>' '+' '-' '*' '/' '%' '@' '['");
}

static int yyreport_syntax_error(const yypcontext_t *pctx, yyscan_t scanner, ParseCtx *ctx) {
    (void)scanner;
    enum { MAX_SHOWN = 5 };
    yysymbol_kind_t expected[YYNTOKENS];
    int n = yypcontext_expected_tokens(pctx, expected, YYNTOKENS);
    const struct KilnLoc *loc = yypcontext_location(pctx);
    yysymbol_kind_t found = yypcontext_token(pctx);
    /* Where any expression may start, say "an expression" rather than list
     * its first tokens; likewise "an operator" where any may follow. */
    bool any_expr = false, any_op = false;
    for (int i = 0; i < n; i++) {
        any_expr = any_expr || expected[i] == YYSYMBOL_FLOAT_LIT;
        any_op = any_op || sym_in(expected[i], "'*'");
    }
    const char *items[YYNTOKENS + 2];
    yysymbol_kind_t syms[YYNTOKENS + 2];
    int m = 0;
    if (any_expr) items[m] = "an expression", syms[m++] = YYSYMBOL_YYEMPTY;
    if (any_op) items[m] = "an operator", syms[m++] = YYSYMBOL_YYEMPTY;
    for (int i = 0; i < n; i++) {
        if ((any_expr && starts_expr(expected[i])) || (any_op && is_operator(expected[i]))) continue;
        items[m] = NULL, syms[m++] = expected[i];
    }
    StrBuf msg = {0};
    if (m > 0 && m <= MAX_SHOWN) {
        sb_puts(&msg, "expected ");
        for (int i = 0; i < m; i++) {
            sb_puts(&msg, i == 0 ? "" : i == m - 1 ? " or " : ", ");
            if (items[i]) sb_puts(&msg, items[i]);
            else token_put(&msg, syms[i], true);
        }
        sb_puts(&msg, ", found ");
        token_put(&msg, found, true);
    } else {
        sb_puts(&msg, "unexpected ");
        token_put(&msg, found, false);
    }
    if (found == YYSYMBOL_YYEOF && ctx->depth > 0) sb_puts(&msg, " (a bracket is still open)");
    Loc l = ctx_loc(ctx, loc->first_line, loc->first_column);
    /* After an error earlier on the same line (a stray character the scanner
     * dropped, say), a syntax error there is most likely its echo. */
    const DiagList *d = ctx->diags;
    const Diag *last = d->items.len ? &d->items.data[d->items.len - 1] : NULL;
    if (!(last && last->loc.src == l.src && last->loc.line == l.line && last->loc.col <= l.col))
        diag_error(ctx->diags, l, "%s", msg.data);
    sb_free(&msg);
    /* Forget open brackets: the next newline then ends the broken statement,
     * where the parser recovers, instead of the rest of the file being
     * swallowed as one statement. */
    ctx->depth = 0;
    return 0;
}
