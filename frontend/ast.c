/* ast.c - printing the AST (`kiln emit --emit=ast`), as an S-expression per
 * statement so that tests can compare it as text. */
#include "frontend/ast.h"

#include <stdlib.h>
#include <string.h>

static const char *const operator_text[] = {
    [BIN_ADD] = "+", [BIN_SUB] = "-",   [BIN_MUL] = "*", [BIN_DIV] = "/", [BIN_MOD] = "%",
    [BIN_MATMUL] = "@", [BIN_POW] = "**", [BIN_EQ] = "==", [BIN_NE] = "!=", [BIN_LT] = "<",
    [BIN_LE] = "<=", [BIN_GT] = ">",    [BIN_GE] = ">=", [BIN_AND] = "and", [BIN_OR] = "or",
    [UN_NEG] = "-", [UN_PLUS] = "+",    [UN_NOT] = "not",
};

/* The shortest text that reads back as the same double, always with a '.'
 * or an exponent so that a float literal never prints like an integer. */
static void float_print(double v, StrBuf *sb) {
    char buf[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(buf, sizeof buf, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) break;
    }
    sb_puts(sb, buf);
    if (!strpbrk(buf, ".eEni")) sb_puts(sb, ".0"); /* not for inf, nan */
}

void expr_print(const Expr *e, StrBuf *sb) {
    if (!e) {
        sb_puts(sb, "_");
        return;
    }
    switch (e->kind) {
    case E_INT: sb_printf(sb, "%lld", (long long)e->ival); break;
    case E_FLOAT: float_print(e->fval, sb); break;
    case E_BOOL: sb_puts(sb, e->ival ? "true" : "false"); break;
    case E_NAME: sb_puts(sb, e->name); break;
    case E_STRING: sb_printf(sb, "\"%s\"", e->name); break;
    case E_BINARY: { /* a left-deep chain (x + x + ... + x) in a loop, not one call per term */
        int n = 0;
        const Expr *x = e;
        for (; x->kind == E_BINARY; x = x->lhs) n++;
        const Expr **spine = xmalloc(sizeof(Expr *) * (size_t)n);
        n = 0;
        for (x = e; x->kind == E_BINARY; x = x->lhs) {
            spine[n++] = x;
            sb_printf(sb, "(%s ", operator_text[x->op]);
        }
        expr_print(x, sb);
        while (n > 0) {
            sb_puts(sb, " ");
            expr_print(spine[--n]->rhs, sb);
            sb_puts(sb, ")");
        }
        free(spine);
        break;
    }
    case E_UNARY:
        sb_printf(sb, "(%s ", operator_text[e->op]);
        expr_print(e->lhs, sb);
        sb_puts(sb, ")");
        break;
    case E_CALL:
    case E_LIST:
    case E_INDEX:
        if (e->kind == E_CALL) sb_printf(sb, "(call %s", e->name);
        if (e->kind == E_LIST) sb_puts(sb, "(list");
        if (e->kind == E_INDEX) {
            sb_puts(sb, "(index ");
            expr_print(e->lhs, sb);
        }
        for (int i = 0; i < e->nargs; i++) {
            sb_puts(sb, " ");
            expr_print(e->args[i], sb);
        }
        for (int i = 0; i < e->nkwargs; i++) {
            sb_printf(sb, " %s=", e->kwargs[i].name);
            expr_print(e->kwargs[i].value, sb);
        }
        sb_puts(sb, ")");
        break;
    case E_SLICE:
        sb_puts(sb, "(slice ");
        expr_print(e->lhs, sb);
        sb_puts(sb, " ");
        expr_print(e->rhs, sb);
        sb_puts(sb, " ");
        expr_print(e->step, sb);
        sb_puts(sb, ")");
        break;
    }
}

static void type_print(const TypeExpr *t, FILE *out) {
    fprintf(out, "%s", t->dtype_name);
    if (t->scalar) return;
    fputc('[', out);
    for (int i = 0; i < t->rank; i++) {
        if (i) fputs(", ", out);
        if (t->dims[i].name)
            fputs(t->dims[i].name, out);
        else
            fprintf(out, "%lld", (long long)t->dims[i].size);
    }
    fputc(']', out);
}

void ast_print(const Program *p, FILE *out) {
    for (int gi = 0; gi < p->ngraphs; gi++) {
        const GraphDef *g = &p->graphs[gi];
        fprintf(out, "(graph %s  # %d:%d\n  (params", g->name, g->loc.line, g->loc.col);
        for (int i = 0; i < g->nparams; i++) {
            fprintf(out, " (%s ", g->params[i].name);
            type_print(&g->params[i].type, out);
            fputc(')', out);
        }
        fputs(")\n  (results", out);
        for (int i = 0; i < g->nresults; i++) {
            fputc(' ', out);
            type_print(&g->results[i], out);
        }
        fputs(")", out);
        for (int i = 0; i < g->nstmts; i++) {
            const Stmt *s = &g->body[i];
            StrBuf sb = {0};
            if (s->kind == S_ASSIGN) {
                sb_puts(&sb, "(=");
                for (int k = 0; k < s->nnames; k++) sb_printf(&sb, " %s", s->names[k]);
            } else {
                sb_puts(&sb, "(return");
            }
            for (int k = 0; k < s->nvalues; k++) {
                sb_puts(&sb, " ");
                expr_print(s->values[k], &sb);
            }
            fprintf(out, "\n  %s)  # %d:%d", sb.data, s->loc.line, s->loc.col);
            sb_free(&sb);
        }
        fputs("\n)\n", out); /* on its own line: a '#' comment ends the line before */
    }
}
