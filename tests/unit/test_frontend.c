/* test_frontend.c - the parser and the checker on small programs.
 *
 * 1. Replays every input of tests/fuzz/regress_parser/ (programs that once
 *    crashed, hung or leaked in fuzz_parser) through parse + check + build:
 *    each must end in a diagnostic or a clean graph, not a crash.
 * 2. Parser facts, compared as the AST printer writes them: precedence and
 *    associativity, signed exponents, no chained comparisons, newlines inside
 *    brackets, ';' between statements, where syntax errors point.
 * Run from the repository root (make test does).  Last line:
 * "test_frontend: N passed, N failed". */
#include "frontend/ast.h"

#include <dirent.h>
#include <stdlib.h>
#include <string.h>

#include "check.h"

#define ASSERT_STR(want, got)                                                                                \
    do {                                                                                                     \
        const char *w_ = (want), *g_ = (got);                                                                \
        CHECK(g_ &&strcmp(w_, g_) == 0, "expected %s, got %s", w_, g_ ? g_ : "(nothing)");                   \
    } while (0)

/* ------------------------------------------------------------ a parse */

typedef struct {
    Arena *arena;
    Source src;
    DiagList diags;
    Program prog;
    bool parsed, checked;
    char *text; /* all diagnostics, printed */
} Run;

static Run *run_text(const char *text, size_t len) {
    Run *r = xcalloc(1, sizeof(Run));
    r->arena = arena_new();
    r->src = (Source){.path = "test.kiln", .text = arena_strndup(r->arena, text, len), .len = len};
    r->parsed = parse_program(r->arena, &r->src, &r->diags, &r->prog);
    r->checked = r->parsed && ir_check_program(&r->prog, &r->diags);
    size_t n = 0;
    FILE *f = open_memstream(&r->text, &n);
    diag_print(&r->diags, f);
    fclose(f);
    return r;
}

static Run *run(const char *text) { return run_text(text, strlen(text)); }

static void run_free(Run *r) {
    diag_clear(&r->diags);
    arena_free(r->arena);
    free(r->text);
    free(r);
}

/* The AST of the returned expression of `return EXPR` in a graph whose
 * parameters a, b, c, x, y, w are f32[4] (d is bool[4]). */
static char *return_ast(const char *expr) {
    StrBuf prog = {0};
    sb_printf(&prog, "graph f(a: f32[4], b: f32[4], c: f32[4], x: f32[4], y: f32[4], w: f32[4, 4],\n"
                     "        d: bool[4]) -> f32[4] {\n    return %s\n}\n", expr);
    Run *r = run(prog.data);
    sb_free(&prog);
    char *out = NULL;
    if (r->parsed && r->prog.ngraphs == 1) {
        const GraphDef *g = &r->prog.graphs[0];
        const Stmt *s = &g->body[g->nstmts - 1];
        StrBuf sb = {0};
        for (int i = 0; i < s->nvalues; i++) {
            if (i) sb_puts(&sb, " ");
            expr_print(s->values[i], &sb);
        }
        out = sb.data;
    } else {
        out = xstrdup(r->text ? r->text : "");
    }
    run_free(r);
    return out;
}

static void check_expr(const char *expr, const char *want) {
    char *got = return_ast(expr);
    CHECK(got && strcmp(got, want) == 0, "'%s' parses as %s, expected %s", expr, got, want);
    free(got);
}

/* ------------------------------------------------------------ regressions */

static void replay_regressions(const char *dir) {
    DIR *d = opendir(dir);
    CHECK(d != NULL, "cannot open %s (run from the repository root)", dir);
    if (!d) return;
    int count = 0;
    struct dirent *ent;
    static const DimBinding binds[] = {{"B", 2}, {"T", 3}, {"N", 4}};
    while ((ent = readdir(d))) {
        if (ent->d_name[0] == '.') continue;
        StrBuf path = {0};
        sb_printf(&path, "%s/%s", dir, ent->d_name);
        char *text, err[256];
        size_t len;
        if (!read_file(path.data, &text, &len, err, sizeof err)) {
            CHECK(false, "%s", err);
            sb_free(&path);
            continue;
        }
        /* what compilation_open does: no NUL bytes, then parse and check */
        if (!memchr(text, 0, len)) {
            Run *r = run_text(text, len);
            for (int gi = 0; r->checked && gi < r->prog.ngraphs; gi++) {
                IRGraph *g = ir_build(r->arena, &r->prog, gi, binds, 3, &r->diags);
                if (g) {
                    char verr[256];
                    CHECK(ir_verify(g, verr, sizeof verr), "%s: %s", path.data, verr);
                }
                ir_graph_destroy(g);
            }
            /* no crash is the test; a clean parse must not report errors */
            CHECK(r->checked == (r->diags.nerrors == 0), "%s: checked=%d with %d errors", path.data,
                  r->checked, r->diags.nerrors);
            run_free(r);
        }
        free(text);
        sb_free(&path);
        count++;
    }
    closedir(d);
    printf("replayed %d inputs of %s\n", count, dir);
}

/* ------------------------------------------------------------ parser facts */

static void test_precedence(void) {
    check_expr("-x ** 2", "(- (** x 2))");            /* ** binds tighter than unary - */
    check_expr("-2 ** 2", "(- (** 2 2))");
    check_expr("2 ** -1", "(** 2 (- 1))");             /* a signed exponent */
    check_expr("2 ** 3 ** 2", "(** 2 (** 3 2))");      /* right-associative */
    check_expr("a - b - c", "(- (- a b) c)");          /* left-associative */
    check_expr("a / b / c", "(/ (/ a b) c)");
    check_expr("a - b + c", "(+ (- a b) c)");
    check_expr("a + b * c", "(+ a (* b c))");
    check_expr("a * b @ w", "(@ (* a b) w)");          /* * and @ share a level */
    check_expr("x @ w + b", "(+ (@ x w) b)");
    check_expr("a % b * c", "(* (% a b) c)");
    check_expr("-x[0]", "(- (index x 0))");            /* indexing binds tightest */
    check_expr("x[1:3] + a[::2]", "(+ (index x (slice 1 3 _)) (index a (slice _ _ 2)))");
    check_expr("- -x", "(- (- x))");
    check_expr("+x * -y", "(* (+ x) (- y))");
    check_expr("not d and d", "(and (not d) d)");
    check_expr("not a < b", "(not (< a b))");          /* not is looser than comparisons */
    check_expr("d or d and d", "(or d (and d d))");
    check_expr("a + b == c * x", "(== (+ a b) (* c x))");
    check_expr("(a < b) == d", "(== (< a b) d)");      /* parenthesised comparisons compose */
    check_expr("1.0", "1.0");                          /* floats print as floats */
    check_expr("1e-5", "1e-05");
    check_expr(".5", "0.5");
    check_expr("sum(x, axis=-1, keepdims=true)", "(call sum x axis=(- 1) keepdims=true)");
}

static void test_comparisons_do_not_chain(void) {
    static const char *const chains[] = {"a < b < c", "a == b == c", "a < b >= c", "a != b < c"};
    for (size_t i = 0; i < sizeof chains / sizeof chains[0]; i++) {
        char *got = return_ast(chains[i]);
        CHECK(strstr(got, "error:") && strstr(got, "do not chain"), "'%s' gives %s", chains[i], got);
        free(got);
    }
    Run *r = run("graph f(a: f32[4], b: f32[4], c: f32[4]) -> bool[4] {\n    return a < b < c\n}\n");
    CHECK(!r->parsed && r->diags.nerrors == 1, "parsed=%d errors=%d", r->parsed, r->diags.nerrors);
    CHECK(r->diags.nerrors > 0 && r->diags.items.data[0].loc.line == 2 &&
              r->diags.items.data[0].loc.col == 18,
          "reported at %d:%d, expected the second '<' at 2:18", r->diags.items.data[0].loc.line,
          r->diags.items.data[0].loc.col);
    run_free(r);
}

static void test_statements(void) {
    /* newlines inside (...) and [...] are ignored */
    Run *r =
        run("graph f(x: f32[2, 3],\n        w: f32[3,\n               4]) -> f32[2,\n 4] {\n"
            "    y = matmul(\n        x,\n        w\n    )\n    z = reshape(y, [\n2, 4])\n    return z\n}\n");
    CHECK(r->checked, "wrapped lines: %s", r->text);
    CHECK(r->prog.ngraphs == 1 && r->prog.graphs[0].nstmts == 3, "%d statements",
          r->prog.ngraphs ? r->prog.graphs[0].nstmts : -1);
    run_free(r);
    /* ';' separates statements, and may end the last */
    r = run("graph f(x: f32[4]) -> f32[4] { y = x * 2.0; z = y + 1.0; return z; }\n");
    CHECK(r->checked, "';' separated: %s", r->text);
    CHECK(r->prog.ngraphs == 1 && r->prog.graphs[0].nstmts == 3, "%d statements",
          r->prog.ngraphs ? r->prog.graphs[0].nstmts : -1);
    run_free(r);
    /* a newline outside brackets ends a statement */
    r = run("graph f(x: f32[4]) -> f32[4] {\n    y = x +\n        1.0\n    return y\n}\n");
    CHECK(!r->parsed && strstr(r->text, "test.kiln:2:12: error:"), "dangling '+': %s", r->text);
    run_free(r);
    /* return a, b may wrap after the comma */
    r = run("graph f(x: f32[4]) -> (f32[4], f32[4]) {\n    return x,\n           -x\n}\n");
    CHECK(r->checked, "return wrapped after a comma: %s", r->text);
    run_free(r);
    /* comments, blank lines, no final newline */
    r = run("# a comment\n\ngraph f(x: f32[4]) -> f32[4] {  # here too\n\n    return x  # and here\n}");
    CHECK(r->checked, "comments: %s", r->text);
    run_free(r);
    /* two graphs on one file; the second calls nothing */
    r = run("graph f(x: f32[4]) -> f32[4] { return g(x) }\ngraph g(x: f32[4]) -> f32[4] { return x }\n");
    CHECK(r->checked && r->prog.ngraphs == 2, "two graphs: %s", r->text);
    run_free(r);
}

static void test_syntax_errors(void) {
    /* an unclosed bracket at the end of the file says so, where the file ends */
    Run *r = run("graph f(x: f32[4]) -> f32[4] {\n    return relu(x\n\n");
    CHECK(strstr(r->text, "test.kiln:2:18: error:") && strstr(r->text, "end of file") &&
              strstr(r->text, "bracket"),
          "unclosed bracket: %s", r->text);
    run_free(r);
    /* a missing '}' at the end of the file */
    r = run("graph f(x: f32[4]) -> f32[4] {\n    return x\n");
    CHECK(strstr(r->text, "end of file") && r->diags.nerrors == 1, "missing '}': %s", r->text);
    run_free(r);
    /* an operand missing: "expected an expression" */
    r = run("graph f(x: f32[4]) -> f32[4] {\n    return x + * 2.0\n}\n");
    CHECK(strstr(r->text, "2:16: error: expected an expression, found '*'"), "%s", r->text);
    run_free(r);
    /* tokens are named as the user writes them */
    r = run("graph f(x: f32[4]) f32[4] {\n    return x\n}\n");
    CHECK(strstr(r->text, "expected '->', found a name"), "%s", r->text);
    run_free(r);
    /* an empty file parses to no graph (the CLI reports that) */
    r = run("");
    CHECK(r->parsed && r->prog.ngraphs == 0, "empty file: %s", r->text);
    run_free(r);
    /* deep nesting ends in a diagnostic, not a crash */
    StrBuf deep = {0};
    sb_puts(&deep, "graph f(x: f32[4]) -> f32[4] {\n    return ");
    for (int i = 0; i < 20000; i++) sb_puts(&deep, "(");
    sb_puts(&deep, "x");
    for (int i = 0; i < 20000; i++) sb_puts(&deep, ")");
    sb_puts(&deep, "\n}\n");
    r = run(deep.data);
    CHECK(r->diags.nerrors > 0 && strstr(r->text, "nests too deeply"), "deep nesting: %.200s", r->text);
    run_free(r);
    sb_free(&deep);
}

static void test_constants(void) {
    /* constant expressions follow Python: int ** negative int is a float */
    Run *r = run("graph f(x: f32[4], i: i32[4]) -> (f32[4], i32[4]) {\n"
                 "    return x * 2 ** -1, i + 2 ** 3\n}\n");
    CHECK(r->checked, "2 ** -1: %s", r->text);
    run_free(r);
    r = run("graph f(i: i32[4]) -> i32[4] {\n    return i + 2 ** -1\n}\n");
    CHECK(!r->checked && strstr(r->text, "literal 0.5"), "i + 2 ** -1: %s", r->text);
    run_free(r);
    /* integer constants wrap as i64 does, without undefined behaviour */
    r = run("graph f(i: i64[4]) -> i64[4] {\n"
            "    return i + 9223372036854775807 * 3 + (-9223372036854775807 - 1) % -1 + 3 ** 99\n}\n");
    CHECK(r->checked, "wrapping constants: %s", r->text);
    run_free(r);
}

static void test_symbolic(void) {
    /* windows over a symbolic size are sizes of their own, equal only to themselves */
    Run *r = run("graph f(x: f32[1, 1, H, W], a: f32[1, 1, 3, 3], b: f32[1, 1, 5, 5]) -> f32[1, 1, H, W] {\n"
                 "    return conv2d(x, a) + conv2d(x, b)\n}\n");
    CHECK(!r->checked && strstr(r->text, "cannot broadcast f32[1, 1, H-2, W-2] with f32[1, 1, H-4, W-4]"),
          "different windows: %s", r->text);
    run_free(r);
    r = run("graph f(x: f32[1, 1, H, W], a: f32[1, 1, 3, 3]) -> f32[1, 1, H, W] {\n"
            "    return conv2d(x, a, padding=1) + maxpool2d(x, 3, stride=1, padding=1)\n}\n");
    CHECK(r->checked, "same-size windows: %s", r->text);
    run_free(r);
    /* products of symbolic sizes in any order are one size */
    r = run(
        "graph f(x: f32[B, T, 4]) -> f32[T, B, 4] {\n    return reshape(x, [T * B, 4]) + reshape(x, [B*T, 4])"
        " + 0.0 * reshape(x, [T, B, 4])[0]\n}\n");
    CHECK(!r->checked && strstr(r->text, "cannot broadcast"), "B*T vs [B, 4]: %s", r->text);
    run_free(r);
    r = run("graph f(x: f32[B, T, 4]) -> f32[B, T, 4] {\n"
            "    return reshape(reshape(x, [T * B, 4]) + reshape(x, [B*T, 4]), [B, T, -1])\n}\n");
    CHECK(r->checked, "B*T == T*B: %s", r->text);
    run_free(r);
}

int main(void) {
    replay_regressions("tests/fuzz/regress_parser");
    test_precedence();
    test_comparisons_do_not_chain();
    test_statements();
    test_syntax_errors();
    test_constants();
    test_symbolic();
    printf("test_frontend: %d passed, %d failed\n", npass, nfail);
    return nfail != 0;
}
