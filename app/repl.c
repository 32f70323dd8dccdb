/* repl.c - the interactive prompt, `kiln repl` (user guide: docs/repl.md).
 *
 * A session keeps variables (a name bound to a host tensor) and the user's
 * graph definitions.  Each input is one of
 *     graph NAME(...) -> ... { ... }     a definition, kept for later calls
 *     a, b = EXPR                        binds the results to names
 *     EXPR                               prints the value, then its type
 *     :COMMAND ARGS                      see the command table near the end
 *
 * How a statement runs (eval_statement):
 *  1. it is parsed (parse_repl_line) into an arena of its own, a Line;
 *  2. the REPL-only built-ins rand, randn and load are evaluated to tensors,
 *     and each call is replaced by a fresh name (_rand0, _load1, ...);
 *  3. a graph is synthesized: `graph _repl(P: TYPE, ...) { return EXPR }`,
 *     whose parameters are the variables the expression names, with their
 *     concrete types.  It goes last in a Program after the user's graphs, so
 *     calls to those inline as in a file;
 *  4. the program is built (ir_build), optimised (passes_run, as `kiln run`
 *     does) and compiled on the current device, unless the cache already
 *     holds the same program for the same device and options;
 *  5. it runs, and the results are printed or bound.
 * An error at any step prints diagnostics that point into the typed text and
 * leaves every binding as it was.
 *
 * Reading: on a terminal, libedit edits lines (history in a file, Tab
 * completion); from a pipe, plain lines and no prompts.  An input goes on
 * over several lines while a bracket is open.
 */
#include "app/repl.h"

#include "app/app.h"
#include "app/report.h"
#include "app/viz.h"
#include "ir/kernel.h"
#include "passes/pass.h"
#include "runtime/outfile.h"

#include <ctype.h>
#include <errno.h>
#include <histedit.h>
#include <locale.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ====================================================================== the session */

typedef struct {
    char *name;
    KilnTensor value;
} Var;
typedef VEC(Var) VarVec;

/* A compiled statement, kept so that running the same program again on the
 * same device (a repeated line, :time) does not compile it again. */
/* A graph :load made from an ONNX model: its parameters are the model's
 * inputs, then its weights, which the session holds (under names no user can
 * type, "MODEL.WEIGHT") and passes to every call that gives the inputs only. */
typedef struct {
    char *graph;
    int ninputs;
    VarVec weights;
} ModelGraph;

typedef struct {
    char *key;       /* synthesized program text + input types + device + options */
    Arena *arena;    /* of the input that built it: Source, AST and IR */
    IRGraph *graph;
    Executable *exe;
    double compile_ms;
} Compiled;

typedef struct {
    /* where statements run */
    char *device;
    const Backend *backend;
    CompileOptions copt;
    /* what the user made */
    VarVec vars;
    VEC(GraphDef) graphs;       /* their ASTs live in graph_arenas */
    VEC(Arena *) graph_arenas;  /* kept until :reset, even after a redefinition */
    VEC(Compiled) cache;        /* emptied whenever the graphs change */
    VEC(ModelGraph) models;     /* graphs loaded from ONNX models, with their weights */
    uint64_t next_seed;         /* for rand/randn without seed= */
    /* input */
    int ninputs;                /* inputs read so far: <repl:N> */
    bool interactive;           /* stdin is a terminal: prompts and a banner */
    EditLine *el;               /* NULL: plain reading */
    History *hist;
    char *history_path;
    const char *prompt;
    /* outcome */
    bool any_failed;
    bool quit;
} Repl;

/* Set by Ctrl-C.  The one global here: a signal handler can reach nothing
 * else.  Reading a line, it abandons the line; running, it stops between
 * runs. */
static volatile sig_atomic_t interrupted;

static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

static const char *const repl_builtins[] = {"rand", "randn", "load", NULL};
static const char *const dtype_names[] = {"f32", "f16", "bf16", "f64", "i32", "i64", "bool", NULL};
/* :emit's stages before the backends' own (backend_stage) */
static const char *const graph_stages[] = {"ir", "opt", "kernels", "dot", NULL};
static const char *const precision_names[] = {"f32", "f16", "bf16", "auto", NULL}; /* Precision order */

/* ====================================================================== small helpers */

static void repl_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void repl_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("error: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

static double now_ms(void) { return clock_ms(CLOCK_MONOTONIC); }

static bool in_list(const char *const *list, const char *s) {
    for (int i = 0; list[i]; i++)
        if (strcmp(list[i], s) == 0) return true;
    return false;
}

/* "f32[4, 4]", or "f32" for a scalar. */
static void tensor_type_text(const KilnTensor *t, StrBuf *sb) {
    sb_puts(sb, kiln_dtype_name(t->dtype));
    if (t->rank == 0) return;
    sb_puts(sb, "[");
    for (int k = 0; k < t->rank; k++) sb_printf(sb, "%s%lld", k ? ", " : "", (long long)t->shape[k]);
    sb_puts(sb, "]");
}

static void type_expr_text(const TypeExpr *t, StrBuf *sb) {
    sb_puts(sb, t->dtype_name);
    if (t->scalar) return;
    sb_puts(sb, "[");
    for (int k = 0; k < t->rank; k++) {
        if (k) sb_puts(sb, ", ");
        if (t->dims[k].name) sb_puts(sb, t->dims[k].name);
        else sb_printf(sb, "%lld", (long long)t->dims[k].size);
    }
    sb_puts(sb, "]");
}

/* "did you mean": the closest candidate within a third of the length. */

/* ====================================================================== variables, graphs, cache */

static Var *var_find(VarVec *vars, const char *name) {
    for (int i = 0; i < vars->len; i++)
        if (strcmp(vars->data[i].name, name) == 0) return &vars->data[i];
    return NULL;
}

/* Binds `name` to `t`, which the session now owns. */
static void var_bind(VarVec *vars, const char *name, KilnTensor t) {
    Var *v = var_find(vars, name);
    if (v) {
        kiln_tensor_free(&v->value);
        v->value = t;
        return;
    }
    Var nv = {xstrdup(name), t};
    VEC_PUSH(*vars, nv);
}

static void vars_free(VarVec *vars) {
    for (int i = 0; i < vars->len; i++) {
        free(vars->data[i].name);
        kiln_tensor_free(&vars->data[i].value);
    }
    VEC_FREE(*vars);
}

static void cache_clear(Repl *r) {
    for (int i = 0; i < r->cache.len; i++) {
        Compiled *c = &r->cache.data[i];
        exec_destroy(c->exe);
        ir_graph_destroy(c->graph);
        arena_free(c->arena);
        free(c->key);
    }
    VEC_FREE(r->cache);
}

static void models_clear(Repl *r) {
    for (int i = 0; i < r->models.len; i++) {
        free(r->models.data[i].graph);
        vars_free(&r->models.data[i].weights);
    }
    VEC_FREE(r->models);
}

static ModelGraph *find_model(Repl *r, const char *graph) {
    for (int i = 0; i < r->models.len; i++)
        if (strcmp(r->models.data[i].graph, graph) == 0) return &r->models.data[i];
    return NULL;
}

static void graphs_clear(Repl *r) {
    models_clear(r);
    cache_clear(r); /* compiled programs may point into the graphs' sources */
    VEC_FREE(r->graphs);
    for (int i = 0; i < r->graph_arenas.len; i++) arena_free(r->graph_arenas.data[i]);
    VEC_FREE(r->graph_arenas);
}

static int find_graph(const Repl *r, const char *name) {
    for (int i = 0; i < r->graphs.len; i++)
        if (strcmp(r->graphs.data[i].name, name) == 0) return i;
    return -1;
}

/* ====================================================================== one input: a Line */

/* Everything one input needs while it is evaluated.  Its arena holds the
 * Source, the AST and the IR; it is freed with the line unless a graph
 * definition or the cache keeps it. */
typedef struct {
    Arena *arena;
    bool arena_kept;
    Source *src;
    DiagList diags;
    VarVec temps; /* tensors made by rand/randn/load, under fresh names */
} Line;

static void line_open(Repl *r, Line *ln, const char *text) {
    memset(ln, 0, sizeof *ln);
    ln->arena = arena_new();
    ln->src = ARENA_NEW(ln->arena, Source);
    ln->src->path = arena_printf(ln->arena, "<repl:%d>", r->ninputs);
    ln->src->text = arena_strdup(ln->arena, text);
    ln->src->len = strlen(text);
}

/* Prints the line's diagnostics; returns whether there were none. */
static bool line_report(Line *ln) {
    diag_print(&ln->diags, stderr);
    bool clean = ln->diags.nerrors == 0;
    diag_clear(&ln->diags);
    return clean;
}

static void line_close(Line *ln) {
    line_report(ln);
    vars_free(&ln->temps);
    if (!ln->arena_kept) arena_free(ln->arena);
}

/* Parses the text from byte `skip` on (a command's expression).  The bytes
 * before it are blanked for the parser, so columns stay those of the typed
 * line, and put back for the messages. */
static bool line_parse(Line *ln, size_t skip, ReplLine *out) {
    const char *typed = ln->src->text;
    char *blanked = arena_strdup(ln->arena, typed);
    for (size_t i = 0; i < skip && blanked[i] && blanked[i] != '\n'; i++) blanked[i] = ' ';
    ln->src->text = blanked;
    bool ok = parse_repl_line(ln->arena, ln->src, &ln->diags, out);
    ln->src->text = typed;
    return ok;
}

/* ====================================================================== REPL-only built-ins */

/* splitmix64, as in driver.c: small, seedable, the same on every machine. */
static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static double uniform01(uint64_t *s) { return (double)(splitmix(s) >> 11) * 0x1.0p-53; }

static bool const_int(const Expr *e, int64_t *out) {
    if (e->kind == E_INT) {
        *out = e->ival;
        return true;
    }
    if (e->kind == E_UNARY && e->op == UN_NEG && e->lhs->kind == E_INT) {
        *out = -e->lhs->ival;
        return true;
    }
    return false;
}

/* rand(shape, DTYPE=f32, seed=N): uniform in [0, 1); randn: standard normal. */
static bool eval_random(Repl *r, Line *ln, const Expr *e, bool normal, KilnTensor *out) {
    DiagList *d = &ln->diags;
    if (e->nargs < 1 || e->nargs > 2) {
        diag_error(d, e->loc, "%s takes a shape and an optional dtype, found %d arguments", e->name, e->nargs);
        diag_hint(d, "for example %s([4, 4]) or %s([4, 4], f16, seed=1)", e->name, e->name);
        return false;
    }
    const Expr *shape = e->args[0];
    if (shape->kind != E_LIST) {
        diag_error(d, shape->loc, "the shape of %s must be a list of sizes, e.g. [4, 4]", e->name);
        return false;
    }
    int64_t *dims = ARENA_ARRAY(ln->arena, int64_t, shape->nargs + 1);
    int64_t numel = 1;
    for (int i = 0; i < shape->nargs; i++) {
        if (!const_int(shape->args[i], &dims[i]) || dims[i] <= 0) {
            diag_error(d, shape->args[i]->loc, "a size in the shape of %s must be a positive integer", e->name);
            return false;
        }
        if (dims[i] > ((int64_t)1 << 40) / numel) {
            diag_error(d, shape->loc, "the shape of %s is too large", e->name);
            return false;
        }
        numel *= dims[i];
    }
    KilnDType dt = KILN_F32;
    if (e->nargs == 2) {
        const Expr *a = e->args[1];
        if (a->kind != E_NAME || !kiln_dtype_from_name(a->name, &dt) || !dtype_is_float(dt)) {
            diag_error(d, a->loc, "the dtype of %s must be f32, f16, bf16 or f64", e->name);
            return false;
        }
    }
    uint64_t seed = r->next_seed++;
    for (int i = 0; i < e->nkwargs; i++) {
        const KwArg *kw = &e->kwargs[i];
        int64_t v;
        if (strcmp(kw->name, "seed") != 0) {
            diag_error(d, kw->loc, "%s takes no keyword argument '%s'", e->name, kw->name);
            diag_hint(d, "its only keyword argument is seed=N");
            return false;
        }
        if (!const_int(kw->value, &v) || v < 0) {
            diag_error(d, kw->value->loc, "seed must be a non-negative integer");
            return false;
        }
        seed = (uint64_t)v;
    }
    KilnTensor f64;
    if (!kiln_tensor_init(&f64, KILN_F64, shape->nargs, dims)) {
        diag_error(d, e->loc, "out of host memory for %s", e->name);
        return false;
    }
    uint64_t s = seed * 0x2545f4914f6cdd1dull + 1;
    double *v = f64.data;
    for (int64_t i = 0; i < numel; i++) {
        double u = uniform01(&s);
        v[i] = normal ? sqrt(-2 * log(1 - u)) * cos(2 * M_PI * uniform01(&s)) : u; /* Box-Muller */
    }
    if (dt == KILN_F64) {
        *out = f64;
        return true;
    }
    bool ok = tensor_convert(&f64, dt, out);
    kiln_tensor_free(&f64);
    if (!ok) diag_error(d, e->loc, "out of host memory for %s", e->name);
    return ok;
}

/* load("FILE.npy") */
static bool eval_load(Line *ln, const Expr *e, KilnTensor *out) {
    DiagList *d = &ln->diags;
    if (e->nargs != 1 || e->nkwargs != 0 || e->args[0]->kind != E_STRING) {
        diag_error(d, e->loc, "load takes one file name in quotes");
        diag_hint(d, "for example load(\"weights.npy\")");
        return false;
    }
    char err[512];
    if (!tensor_file_read(e->args[0]->name, out, err, sizeof err)) {
        diag_error(d, e->args[0]->loc, "%s", err); /* it names the file */
        return false;
    }
    return true;
}

static bool is_repl_builtin_call(const Repl *r, const Expr *e) {
    return e->kind == E_CALL && in_list(repl_builtins, e->name) && find_graph(r, e->name) < 0;
}

/* Evaluates every rand/randn/load call in `e` and puts a fresh name, bound
 * in ln->temps, in its place.  Reports errors; false if any. */
static bool eval_repl_builtins(Repl *r, Line *ln, Expr *e) {
    if (!e) return true;
    if (is_repl_builtin_call(r, e)) {
        KilnTensor t;
        bool ok = strcmp(e->name, "load") == 0 ? eval_load(ln, e, &t)
                                               : eval_random(r, ln, e, strcmp(e->name, "randn") == 0, &t);
        if (!ok) return false;
        for (int i = 0; i < t.rank; i++) {
            if (t.shape[i] == 0) {
                diag_error(&ln->diags, e->loc,
                           "the tensor has a dimension of size 0, which kiln's types cannot hold");
                kiln_tensor_free(&t);
                return false;
            }
        }
        const char *name;
        int n = ln->temps.len;
        do name = arena_printf(ln->arena, "_%s%d", e->name, n++);
        while (var_find(&r->vars, name));
        Var tmp = {xstrdup(name), t};
        VEC_PUSH(ln->temps, tmp);
        *e = (Expr){.kind = E_NAME, .loc = e->loc, .name = name};
        return true;
    }
    bool ok = eval_repl_builtins(r, ln, e->lhs);
    ok = eval_repl_builtins(r, ln, e->rhs) && ok;
    ok = eval_repl_builtins(r, ln, e->step) && ok;
    for (int i = 0; i < e->nargs; i++) ok = eval_repl_builtins(r, ln, e->args[i]) && ok;
    for (int i = 0; i < e->nkwargs; i++) ok = eval_repl_builtins(r, ln, e->kwargs[i].value) && ok;
    return ok;
}

/* A call of a graph loaded from a model that gives its inputs only gets the
 * model's weights as its remaining arguments. */
static void pass_model_weights(Repl *r, Line *ln, Expr *e) {
    if (!e) return;
    ModelGraph *mg = e->kind == E_CALL ? find_model(r, e->name) : NULL;
    if (mg && e->nargs == mg->ninputs) {
        Expr **args = ARENA_ARRAY(ln->arena, Expr *, e->nargs + mg->weights.len + 1);
        memcpy(args, e->args, sizeof(Expr *) * (size_t)e->nargs);
        for (int i = 0; i < mg->weights.len; i++) {
            args[e->nargs + i] = ARENA_NEW(ln->arena, Expr);
            *args[e->nargs + i] = (Expr){.kind = E_NAME, .loc = e->loc, .name = mg->weights.data[i].name};
        }
        e->args = args;
        e->nargs += mg->weights.len;
    }
    pass_model_weights(r, ln, e->lhs);
    pass_model_weights(r, ln, e->rhs);
    pass_model_weights(r, ln, e->step);
    for (int i = 0; i < e->nargs; i++) pass_model_weights(r, ln, e->args[i]);
    for (int i = 0; i < e->nkwargs; i++) pass_model_weights(r, ln, e->kwargs[i].value);
}

/* ====================================================================== synthesizing a statement's graph */

/* A variable the statement reads: a parameter of its graph. */
typedef struct {
    const char *name;
    const KilnTensor *value;
} Input;
typedef VEC(Input) InputVec;

/* Collects the variables `e` names, in order of first use, and reports
 * names that are neither variables nor dtypes. */
static bool collect_inputs(Repl *r, Line *ln, const Expr *e, InputVec *in) {
    if (!e) return true;
    if (e->kind == E_NAME) {
        for (int i = 0; i < in->len; i++)
            if (strcmp(in->data[i].name, e->name) == 0) return true;
        Var *v = var_find(&ln->temps, e->name);
        if (!v) v = var_find(&r->vars, e->name);
        for (int m = 0; !v && m < r->models.len; m++) v = var_find(&r->models.data[m].weights, e->name);
        KilnDType dt;
        if (v) {
            for (int k = 0; k < v->value.rank; k++) {
                if (v->value.shape[k] == 0) {
                    diag_error(&ln->diags, e->loc, "'%s' has a dimension of size 0, which kiln's types cannot hold",
                               e->name);
                    return false;
                }
            }
            Input x = {v->name, &v->value};
            VEC_PUSH(*in, x);
        } else if (!kiln_dtype_from_name(e->name, &dt)) {
            diag_error(&ln->diags, e->loc, "undefined name '%s'", e->name);
            Suggest s = {0};
            for (int i = 0; i < r->vars.len; i++) suggest_try(&s, e->name, r->vars.data[i].name);
            if (find_graph(r, e->name) >= 0)
                diag_hint(&ln->diags, "'%s' is a graph; call it: %s(...)", e->name, e->name);
            else if (s.best) diag_hint(&ln->diags, "did you mean '%s'?", s.best);
            else if (r->vars.len) diag_hint(&ln->diags, ":vars lists the variables");
            return false;
        }
        return true;
    }
    bool ok = collect_inputs(r, ln, e->lhs, in);
    ok = collect_inputs(r, ln, e->rhs, in) && ok;
    ok = collect_inputs(r, ln, e->step, in) && ok;
    for (int i = 0; i < e->nargs; i++) ok = collect_inputs(r, ln, e->args[i], in) && ok;
    for (int i = 0; i < e->nkwargs; i++) ok = collect_inputs(r, ln, e->kwargs[i].value, in) && ok;
    return ok;
}

/* The concrete type of a tensor as the parser would have made it.  No
 * location: the builder then lets `a, b = g(a)` bind `a` again. */
static TypeExpr tensor_type_expr(Arena *a, const KilnTensor *t) {
    TypeExpr ty = {.dtype_name = kiln_dtype_name(t->dtype), .rank = t->rank, .scalar = t->rank == 0};
    ty.dims = ARENA_ARRAY(a, DimExpr, t->rank + 1);
    for (int k = 0; k < t->rank; k++) ty.dims[k].size = t->shape[k];
    return ty;
}

/* What a statement compiles: the user's graphs, then its own graph last. */
typedef struct {
    GraphDef def; /* graph _repl(INPUTS) { [names = value]; return ... } */
    Program prog;
    InputVec inputs;
} Prepared;

/* Steps 2 and 3 of the file comment: REPL built-ins, inputs, the graph.
 * `assign` is the statement for `names = value`, NULL for an expression. */
static bool prepare(Repl *r, Line *ln, Expr *value, const Stmt *assign, Prepared *p) {
    memset(p, 0, sizeof *p);
    pass_model_weights(r, ln, value);
    if (!eval_repl_builtins(r, ln, value) || !collect_inputs(r, ln, value, &p->inputs)) return false;
    Arena *a = ln->arena;
    GraphDef *def = &p->def;
    def->name = "_repl";
    def->loc = value->loc;
    def->infer_results = true;
    def->nparams = p->inputs.len;
    def->params = ARENA_ARRAY(a, Param, p->inputs.len + 1);
    for (int i = 0; i < p->inputs.len; i++) { /* names copied: a cached graph keeps them */
        def->params[i] = (Param){.name = arena_strdup(a, p->inputs.data[i].name),
                                 .type = tensor_type_expr(a, p->inputs.data[i].value)};
    }
    Stmt ret = {.kind = S_RETURN, .loc = value->loc, .nvalues = 1};
    if (assign && assign->nnames > 1) { /* a, b = g(x); return a, b */
        ret.nvalues = assign->nnames;
        ret.values = ARENA_ARRAY(a, Expr *, assign->nnames);
        for (int k = 0; k < assign->nnames; k++) {
            ret.values[k] = ARENA_NEW(a, Expr);
            *ret.values[k] = (Expr){.kind = E_NAME, .loc = assign->name_locs[k], .name = assign->names[k]};
        }
        def->body = ARENA_ARRAY(a, Stmt, 2);
        def->body[def->nstmts++] = *assign;
    } else {
        ret.values = ARENA_ARRAY(a, Expr *, 1);
        ret.values[0] = value;
        def->body = ARENA_ARRAY(a, Stmt, 1);
    }
    def->body[def->nstmts++] = ret;
    def->nresults = ret.nvalues;
    p->prog.ngraphs = r->graphs.len + 1;
    p->prog.graphs = ARENA_ARRAY(a, GraphDef, p->prog.ngraphs);
    for (int i = 0; i < r->graphs.len; i++) p->prog.graphs[i] = r->graphs.data[i];
    p->prog.graphs[r->graphs.len] = *def;
    return true;
}

/* The cache key: the synthesized graph as text (parameter types included),
 * the device and the options.  The user's graphs are not in it: the cache
 * is emptied whenever they change. */
static char *program_key(const Repl *r, const GraphDef *def) {
    StrBuf sb = {0};
    sb_printf(&sb, "%s -O%d precision=%d (", r->device, r->copt.opt_level, (int)r->copt.precision);
    for (int i = 0; i < def->nparams; i++) {
        sb_printf(&sb, "%s%s: ", i ? ", " : "", def->params[i].name);
        type_expr_text(&def->params[i].type, &sb);
    }
    sb_puts(&sb, ")");
    for (int i = 0; i < def->nstmts; i++) {
        const Stmt *s = &def->body[i];
        sb_puts(&sb, s->kind == S_RETURN ? " (return" : " (=");
        for (int k = 0; s->kind == S_ASSIGN && k < s->nnames; k++) sb_printf(&sb, " %s", s->names[k]);
        for (int k = 0; k < s->nvalues; k++) {
            sb_puts(&sb, " ");
            expr_print(s->values[k], &sb);
        }
        sb_puts(&sb, ")");
    }
    return sb.data;
}

/* ====================================================================== building, compiling, running */

static IRGraph *build(Line *ln, const Prepared *p) {
    return ir_build(ln->arena, &p->prog, p->prog.ngraphs - 1, NULL, 0, &ln->diags);
}


/* Builds the statement's graph and runs the optimisation passes on it, as
 * `kiln run` does before a backend sees a graph.  NULL on an error
 * (reported). */
static IRGraph *build_optimised(Repl *r, Line *ln, const Prepared *p) {
    IRGraph *g = build(ln, p);
    if (!g) return NULL;
    char err[1024] = "";
    PassOptions po = driver_pass_options(&r->copt);
    IRGraph *o;
    if (passes_run(ln->arena, g, &po, &o, err, sizeof err) != KILN_OK)
        repl_error("%s", err[0] ? err : "an optimisation pass failed");
    if (o != g) ir_graph_destroy(g);
    return o;
}

/* The statement compiled for the current device: from the cache, or built
 * and compiled now (then the cache keeps the line's arena). */
static Compiled *compile(Repl *r, Line *ln, const Prepared *p, bool *was_cached) {
    char *key = program_key(r, &p->def);
    *was_cached = false;
    for (int i = 0; i < r->cache.len; i++) {
        if (strcmp(r->cache.data[i].key, key) == 0) {
            free(key);
            *was_cached = true;
            return &r->cache.data[i];
        }
    }
    double t0 = now_ms();
    IRGraph *g = build_optimised(r, ln, p);
    if (!g) {
        free(key);
        return NULL;
    }
    char err[1024] = "";
    Executable *exe = exec_compile(r->backend, g, &r->copt, err, sizeof err);
    if (!exe) {
        repl_error("%s", err[0] ? err : "the backend could not compile this");
        ir_graph_destroy(g);
        free(key);
        return NULL;
    }
    Compiled c = {key, ln->arena, g, exe, now_ms() - t0};
    ln->arena_kept = true;
    VEC_PUSH(r->cache, c);
    return &r->cache.data[r->cache.len - 1];
}

static void outputs_free(KilnTensor *out, int n) {
    for (int i = 0; out && i < n; i++) kiln_tensor_free(&out[i]);
    free(out);
}

/* One run; returns the results (the caller frees them) or NULL. */
static KilnTensor *run(const Compiled *c, const Prepared *p) {
    int n = c->graph->results.len;
    KilnTensor *in = xcalloc((size_t)p->inputs.len + 1, sizeof(KilnTensor));
    for (int i = 0; i < p->inputs.len; i++) in[i] = *p->inputs.data[i].value; /* borrowed */
    KilnTensor *out = xcalloc((size_t)n + 1, sizeof(KilnTensor));
    char err[1024] = "";
    bool ok = exec_run(c->exe, in, out, err, sizeof err) == KILN_OK;
    free(in);
    if (!ok) {
        repl_error("%s", err[0] ? err : "the run failed");
        outputs_free(out, n);
        return NULL;
    }
    return out;
}

static void print_value(const KilnTensor *t) {
    StrBuf sb = {0};
    tensor_format(t, &sb);
    sb_puts(&sb, "\n");
    tensor_type_text(t, &sb);
    printf("%s\n", sb.data);
    sb_free(&sb);
}

/* ====================================================================== statements and definitions */

/* `names = value` or an expression: the five steps of the file comment. */
static bool eval_statement(Repl *r, Line *ln, ReplLine *rl) {
    bool is_expr = rl->kind == REPL_EXPR;
    Stmt *assign = is_expr ? NULL : &rl->stmt;
    KilnDType dt;
    for (int k = 0; assign && k < assign->nnames; k++) {
        if (kiln_dtype_from_name(assign->names[k], &dt)) {
            diag_error(&ln->diags, assign->name_locs[k], "'%s' is a dtype and cannot name a variable",
                       assign->names[k]);
            return false;
        }
    }
    Prepared p;
    bool was_cached, ok = false;
    if (!prepare(r, ln, is_expr ? rl->expr : assign->values[0], assign, &p)) goto done;
    Compiled *c = compile(r, ln, &p, &was_cached);
    if (!c) goto done;
    KilnTensor *out = run(c, &p);
    if (!out) goto done;
    int n = c->graph->results.len;
    if (interrupted) {
        repl_error("interrupted");
        outputs_free(out, n);
        goto done;
    }
    for (int i = 0; i < n; i++) {
        if (is_expr) {
            print_value(&out[i]);
            kiln_tensor_free(&out[i]);
        } else {
            var_bind(&r->vars, assign->names[i], out[i]); /* takes the tensor */
        }
    }
    free(out);
    ok = true;
done:
    VEC_FREE(p.inputs);
    return ok;
}

/* Adds graph definitions to the session, replacing those of the same name,
 * once the whole new set checks.  `arena` holds their AST: kept on success. */
static bool define_graphs(Repl *r, Arena *arena, const GraphDef *defs, int n, DiagList *diags) {
    VEC(GraphDef) next = {0};
    for (int i = 0; i < r->graphs.len; i++) {
        bool replaced = false;
        for (int k = 0; k < n; k++) replaced = replaced || strcmp(defs[k].name, r->graphs.data[i].name) == 0;
        if (!replaced) VEC_PUSH(next, r->graphs.data[i]);
    }
    for (int k = 0; k < n; k++) VEC_PUSH(next, defs[k]);
    Program prog = {next.data, next.len};
    if (!ir_check_program(&prog, diags)) {
        VEC_FREE(next);
        return false;
    }
    cache_clear(r);
    VEC_FREE(r->graphs);
    r->graphs.data = next.data;
    r->graphs.len = next.len;
    r->graphs.cap = next.cap;
    VEC_PUSH(r->graph_arenas, arena);
    return true;
}

/* A statement or a graph definition. */
static bool eval_code(Repl *r, const char *text) {
    Line ln;
    line_open(r, &ln, text);
    ReplLine rl;
    bool ok = line_parse(&ln, 0, &rl);
    if (ok) {
        switch (rl.kind) {
        case REPL_EMPTY: break;
        case REPL_GRAPH:
            ok = define_graphs(r, ln.arena, &rl.graph, 1, &ln.diags);
            ln.arena_kept = ok;
            break;
        case REPL_ASSIGN:
        case REPL_EXPR: ok = eval_statement(r, &ln, &rl); break;
        }
    }
    ok = line_report(&ln) && ok;
    line_close(&ln);
    return ok;
}

/* ====================================================================== commands */

/* A command gets the whole input text and where its arguments start. */
typedef bool (*CommandFn)(Repl *r, const char *text, size_t args_at);

/* The next blank-separated word of *p, copied; NULL at the end. */
static char *take_word(const char **p) {
    while (isspace((unsigned char)**p)) ++*p;
    if (!**p) return NULL;
    const char *start = *p;
    while (**p && !isspace((unsigned char)**p)) ++*p;
    return strndup(start, (size_t)(*p - start));
}

/* The next word after an optional `--force` (*force says whether it was there). */
static char *take_forced_word(const char **p, bool *force) {
    char *word = take_word(p);
    *force = word && strcmp(word, "--force") == 0;
    if (*force) {
        free(word);
        word = take_word(p);
    }
    return word;
}

/* The rest of the text with blanks trimmed, copied; NULL if empty. */
static char *take_rest(const char *p) {
    while (isspace((unsigned char)*p)) p++;
    size_t n = strlen(p);
    while (n > 0 && isspace((unsigned char)p[n - 1])) n--;
    return n ? strndup(p, n) : NULL;
}

/* Parses the expression of :type, :time or :emit, starting at byte `at`. */
static Expr *parse_command_expr(Line *ln, size_t at, const char *command) {
    ReplLine rl;
    if (!line_parse(ln, at, &rl)) return NULL;
    if (rl.kind != REPL_EXPR) {
        repl_error("%s takes an expression, e.g. %s softmax(x)", command, command);
        return NULL;
    }
    return rl.expr;
}

static bool cmd_type(Repl *r, const char *text, size_t at) {
    Line ln;
    line_open(r, &ln, text);
    Prepared p = {0};
    Expr *e = parse_command_expr(&ln, at, ":type");
    IRGraph *g = e && prepare(r, &ln, e, NULL, &p) ? build(&ln, &p) : NULL;
    if (g) {
        for (int i = 0; i < g->results.len; i++) {
            const Node *n = ir_node(g, g->results.data[i]);
            char *t = ir_type_str(g, n->dtype, n->rank, n->shape);
            printf("%s\n", t);
            free(t);
        }
        ir_graph_destroy(g);
    }
    VEC_FREE(p.inputs);
    line_close(&ln);
    return g != NULL;
}

/* Prints one stage of the compiler for the statement's graph.  Each stage
 * past the kernels belongs to a backend of the table (exec_emit); a backend
 * not in this build answers with a message that says so. */
static bool emit_stage(Repl *r, const char *stage, IRGraph *g, Arena *arena) {
    char err[1024] = "";
    KilnStatus st = KILN_OK;
    if (strcmp(stage, "ir") == 0 || strcmp(stage, "opt") == 0) {
        ir_print(g, stdout);
    } else if (strcmp(stage, "dot") == 0) {
        st = viz_print_dot(g, &r->copt, NULL, stdout, err, sizeof err);
    } else if (strcmp(stage, "kernels") == 0) {
        KProgram *kp = exec_schedule(arena, g, &r->copt, err, sizeof err);
        if (kp) kprog_print(kp, g, stdout);
        else st = KILN_ERR_DEVICE;
        kprog_destroy(kp);
    } else {
        st = exec_emit(g, stage, &r->copt, stdout, err, sizeof err);
    }
    if (st != KILN_OK) repl_error("%s", err[0] ? err : "this stage failed");
    return st == KILN_OK;
}

static bool is_emit_stage(const char *stage) {
    return in_list(graph_stages, stage) || backend_stage(stage, NULL);
}

static bool cmd_emit(Repl *r, const char *text, size_t at) {
    const char *p = text + at;
    char *stage = take_word(&p);
    if (!stage || !is_emit_stage(stage)) {
        StrBuf names = {0};
        for (int i = 0; graph_stages[i]; i++) sb_printf(&names, "%s, ", graph_stages[i]);
        backend_stage_names(&names, ", ");
        if (stage)
            repl_error("unknown stage '%s'; stages are %s", stage, names.data);
        else repl_error(":emit takes a stage and an expression, e.g. :emit ir x @ y");
        sb_free(&names);
        free(stage);
        return false;
    }
    Line ln;
    line_open(r, &ln, text);
    Prepared pr = {0};
    Expr *e = parse_command_expr(&ln, (size_t)(p - text), ":emit STAGE");
    bool as_built = strcmp(stage, "ir") == 0; /* every later stage sees the optimised graph */
    IRGraph *g = NULL;
    if (e && prepare(r, &ln, e, NULL, &pr)) g = as_built ? build(&ln, &pr) : build_optimised(r, &ln, &pr);
    bool ok = g && emit_stage(r, stage, g, ln.arena);
    if (g) ir_graph_destroy(g);
    VEC_FREE(pr.inputs);
    line_close(&ln);
    free(stage);
    return ok;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* Compiles once (or finds it compiled), runs once to warm up, then runs
 * enough times to fill about half a second (3 to 100 runs); prints the
 * compile time and the median run time. */
static bool cmd_time(Repl *r, const char *text, size_t at) {
    Line ln;
    line_open(r, &ln, text);
    Prepared p = {0};
    bool ok = false, was_cached;
    Compiled *c = NULL;
    KilnTensor *out;
    VEC(double) times = {0};
    Expr *e = parse_command_expr(&ln, at, ":time");
    if (!e || !prepare(r, &ln, e, NULL, &p) || !(c = compile(r, &ln, &p, &was_cached))) goto done;
    int nres = c->graph->results.len;
    double t0 = now_ms();
    if (!(out = run(c, &p))) goto done;
    outputs_free(out, nres);
    double warm = now_ms() - t0;
    int runs = warm > 0 ? (int)(500 / warm) : 100;
    runs = runs < 3 ? 3 : runs > 100 ? 100 : runs;
    for (int i = 0; i < runs; i++) {
        if (interrupted) {
            repl_error("interrupted after %d runs", i);
            goto done;
        }
        t0 = now_ms();
        if (!(out = run(c, &p))) goto done;
        double t = now_ms() - t0;
        VEC_PUSH(times, t);
        outputs_free(out, nres);
    }
    qsort(times.data, (size_t)times.len, sizeof(double), cmp_double);
    double median = times.len % 2 ? times.data[times.len / 2]
                                  : (times.data[times.len / 2 - 1] + times.data[times.len / 2]) / 2;
    printf("compile %.3g ms%s, run %.3g ms (median of %d runs on %s)\n", c->compile_ms,
           was_cached ? " (cached)" : "", median, times.len, r->device);
    ok = true;
done:
    VEC_FREE(times);
    VEC_FREE(p.inputs);
    line_close(&ln);
    return ok;
}

/* Compiles EXPR afresh with a trace (the cache keeps no trace), benches it
 * (a warm-up and REPORT_RUNS runs) and writes the page `bench --report`
 * writes; the machine's limits are measured for it (about a second). */
enum { REPORT_RUNS = 20 };

static bool report_expr(Repl *r, Line *ln, const char *path, Expr *e, const char *source) {
    Prepared p = {0};
    Trace *tr = trace_new();
    IRGraph *g = NULL;
    Executable *exe = NULL;
    BenchReport rep = {0};
    KilnTensor *in = NULL;
    char err[1024] = "";
    bool ok = false;
    double t0 = now_ms();
    r->copt.trace = tr; /* the passes' and the backend's spans; never left set */
    if (prepare(r, ln, e, NULL, &p) && (g = build_optimised(r, ln, &p)))
        exe = exec_compile(r->backend, g, &r->copt, err, sizeof err);
    r->copt.trace = NULL;
    double compile_ms = now_ms() - t0;
    trace_span(tr, "compile", t0, t0 + compile_ms, "compile for %s", r->device);
    if (g && !exe) {
        repl_error("%s", err[0] ? err : "the backend could not compile this");
    } else if (exe) {
        in = xcalloc((size_t)p.inputs.len + 1, sizeof(KilnTensor));
        for (int i = 0; i < p.inputs.len; i++) in[i] = *p.inputs.data[i].value; /* borrowed */
        CompileOptions opt = r->copt;
        ReportInput ri = {g, exe, &rep, compile_ms, tr, &opt, source, NULL, NULL};
        if (exec_bench(exe, in, REPORT_RUNS, &rep, err, sizeof err) != KILN_OK ||
            report_write(&ri, path, err, sizeof err) != KILN_OK)
            repl_error("%s", err);
        else
            ok = printf("wrote %s: %d kernel%s, one run %.4g ms on %s\n", path, rep.kernels.len,
                        rep.kernels.len == 1 ? "" : "s", rep.run_ms, r->device) > 0;
    }
    VEC_FREE(rep.kernels);
    free(in);
    exec_destroy(exe);
    if (g) ir_graph_destroy(g);
    VEC_FREE(p.inputs);
    trace_free(tr);
    return ok;
}

/* :report [--force] FILE.html EXPR */
static bool cmd_report(Repl *r, const char *text, size_t at) {
    const char *p = text + at;
    bool force;
    char *path = take_forced_word(&p, &force);
    char err[1024];
    bool ok = false;
    if (!path) {
        repl_error(":report takes a file and an expression: :report r.html softmax(x @ w)");
    } else if (outfile_check(path, OUT_REPORT, NULL, force, ":report", err, sizeof err) != KILN_OK) {
        repl_error("%s", err);
    } else {
        Line ln;
        line_open(r, &ln, text);
        Expr *e = parse_command_expr(&ln, (size_t)(p - text), ":report FILE.html");
        char *source = take_rest(p);
        ok = e && report_expr(r, &ln, path, e, source ? source : "");
        free(source);
        line_close(&ln);
    }
    free(path);
    return ok;
}

static bool cmd_device(Repl *r, const char *text, size_t at) {
    char *name = take_rest(text + at);
    if (!name) {
        printf("%s\n", r->device);
        return true;
    }
    char err[512] = "";
    const Backend *b;
    if (backend_open(name, &b, err, sizeof err) != KILN_OK) {
        repl_error("%s", err);
        free(name);
        return false;
    }
    free(r->device);
    r->device = name;
    r->backend = b;
    return true;
}

static bool cmd_precision(Repl *r, const char *text, size_t at) {
    char *name = take_rest(text + at);
    if (!name) {
        printf("%s\n", precision_names[r->copt.precision]);
        return true;
    }
    int found = -1;
    for (int i = 0; precision_names[i]; i++)
        if (strcmp(precision_names[i], name) == 0) found = i;
    if (found < 0) repl_error("precisions are f32, f16, bf16 and auto, found '%s'", name);
    else r->copt.precision = (Precision)found;
    free(name);
    return found >= 0;
}

/* :save [--force] NAME FILE.npy: as `run --out`, an existing file is
 * replaced only when it is a .npy (runtime/outfile.h). */
static bool cmd_save(Repl *r, const char *text, size_t at) {
    const char *p = text + at;
    bool force;
    char *name = take_forced_word(&p, &force);
    char *path = take_rest(p);
    bool ok = false;
    Var *v = name ? var_find(&r->vars, name) : NULL;
    char err[1024];
    if (!name || !path) {
        repl_error(":save takes a variable and a file name: :save x x.npy");
    } else if (!v) {
        repl_error("no variable named '%s'", name);
    } else if (outfile_check(path, OUT_NPY, NULL, force, ":save", err, sizeof err) != KILN_OK) {
        repl_error("%s", err);
    } else if (!kiln_npy_write(path, &v->value, err, sizeof err)) {
        repl_error("%s", err);
    } else {
        ok = true;
    }
    free(name);
    free(path);
    return ok;
}

static bool cmd_vars(Repl *r, const char *text, size_t at) {
    (void)text, (void)at;
    StrBuf sb = {0};
    for (int i = 0; i < r->vars.len; i++) {
        sb_printf(&sb, "%s: ", r->vars.data[i].name);
        tensor_type_text(&r->vars.data[i].value, &sb);
        sb_puts(&sb, "\n");
    }
    for (int i = 0; i < r->graphs.len; i++) {
        const GraphDef *g = &r->graphs.data[i];
        sb_printf(&sb, "graph %s(", g->name);
        for (int k = 0; k < g->nparams; k++) {
            sb_printf(&sb, "%s%s: ", k ? ", " : "", g->params[k].name);
            type_expr_text(&g->params[k].type, &sb);
        }
        sb_puts(&sb, g->nresults == 1 ? ") -> " : ") -> (");
        for (int k = 0; k < g->nresults; k++) {
            if (k) sb_puts(&sb, ", ");
            type_expr_text(&g->results[k], &sb);
        }
        sb_puts(&sb, g->nresults == 1 ? "\n" : ")\n");
    }
    fputs(sb.data ? sb.data : "no variables and no graphs\n", stdout);
    sb_free(&sb);
    return true;
}

static bool cmd_reset(Repl *r, const char *text, size_t at) {
    (void)text, (void)at;
    vars_free(&r->vars);
    graphs_clear(r);
    return true;
}

/* :load MODEL.onnx: the model imported (its symbolic dimensions kept), written
 * as kiln source (as `kiln import` writes it) and defined as a graph named
 * after the file; its weights stay in the session, so a call passes the
 * model's inputs only: probs = resnet18(x). */
static bool load_model(Repl *r, const char *path) {
    Arena *arena = arena_new();
    OnnxModel *model = ARENA_NEW(arena, OnnxModel);
    char err[1024];
    if (!onnx_model_open(path, arena, model, err, sizeof err)) {
        repl_error("%s", err);
        arena_free(arena);
        return false;
    }
    DiagList diags = {0};
    OnnxImport imp = {0};
    StrBuf text = {0};
    KilnTensorList weights = {0};
    const char *base = strrchr(path, '/') ? strrchr(path, '/') + 1 : path;
    char *name = xstrdup(base), *dot = strrchr(name, '.');
    if (dot && dot != name) *dot = 0;
    bool ok = onnx_import(arena, model, NULL, &diags, &imp);
    if (ok && !onnx_write_kiln(arena, model, &imp, name, &text, &weights, err, sizeof err)) {
        repl_error("%s: %s", path, err);
        ok = false;
    }
    int ninputs = imp.ninputs;
    onnx_import_free(&imp);
    onnx_model_close(model); /* the weights were copied out of it */
    Program prog = {0};
    if (ok) {
        Source *src = ARENA_NEW(arena, Source);
        src->path = arena_printf(arena, "%s (imported)", path);
        src->text = arena_strndup(arena, text.data, text.len);
        src->len = text.len;
        ok = parse_program(arena, src, &diags, &prog) && prog.ngraphs == 1 &&
             define_graphs(r, arena, prog.graphs, 1, &diags);
    }
    diag_print(&diags, stderr);
    diag_clear(&diags);
    if (ok) {
        const char *gname = prog.graphs[0].name;
        ModelGraph *old = find_model(r, gname);
        if (old) { /* a model loaded again under the same name: the new weights */
            vars_free(&old->weights);
            free(old->graph);
            *old = r->models.data[--r->models.len];
        }
        ModelGraph mg = {xstrdup(gname), ninputs, {0}};
        for (int i = 0; i < weights.count; i++) {
            char *wn = arena_printf(arena, "%s.%s", gname, weights.names[i]);
            Var v = {xstrdup(wn), weights.tensors[i]};
            VEC_PUSH(mg.weights, v);
            free(weights.names[i]);
        }
        free(weights.names);
        free(weights.tensors);
        weights = (KilnTensorList){0};
        const GraphDef *def = &r->graphs.data[find_graph(r, gname)];
        VEC_PUSH(r->models, mg);
        printf("loaded %s from %s: %s(", gname, path, gname);
        for (int i = 0; i < ninputs; i++) {
            StrBuf t = {0};
            type_expr_text(&def->params[i].type, &t);
            printf("%s%s: %s", i ? ", " : "", def->params[i].name, t.data);
            sb_free(&t);
        }
        printf(") with %d weight%s\n", mg.weights.len, mg.weights.len == 1 ? "" : "s");
    } else {
        arena_free(arena);
    }
    kiln_tensor_list_free(&weights);
    sb_free(&text);
    free(name);
    return ok;
}

static bool cmd_load(Repl *r, const char *text, size_t at) {
    char *path = take_rest(text + at);
    if (!path) {
        repl_error(":load takes a .kiln file of graph definitions, or an ONNX model");
        return false;
    }
    if (onnx_file_looks_like_model(path)) {
        bool ok = load_model(r, path);
        free(path);
        return ok;
    }
    char err[512], *data;
    size_t len;
    if (!read_file(path, &data, &len, err, sizeof err)) {
        repl_error("%s", err);
        free(path);
        return false;
    }
    Arena *arena = arena_new();
    Source *src = ARENA_NEW(arena, Source);
    src->path = arena_strdup(arena, path);
    src->text = arena_strndup(arena, data, len);
    src->len = len;
    free(data);
    DiagList diags = {0};
    Program prog;
    bool ok = false;
    if (memchr(src->text, 0, len)) repl_error("%s contains a NUL byte; kiln programs are UTF-8 text", path);
    else ok = parse_program(arena, src, &diags, &prog) &&
              define_graphs(r, arena, prog.graphs, prog.ngraphs, &diags);
    diag_print(&diags, stderr);
    diag_clear(&diags);
    if (ok) {
        printf("loaded %d graph%s from %s:", prog.ngraphs, prog.ngraphs == 1 ? "" : "s", path);
        for (int i = 0; i < prog.ngraphs; i++) printf(" %s", prog.graphs[i].name);
        printf("\n");
    } else {
        arena_free(arena);
    }
    free(path);
    return ok;
}

static bool cmd_quit(Repl *r, const char *text, size_t at) {
    (void)text, (void)at;
    r->quit = true;
    return true;
}

static bool cmd_help(Repl *r, const char *text, size_t at);

static const struct {
    const char *name;
    const char *args;
    const char *help;
    CommandFn fn;
    bool takes_expr; /* may go on over several lines while a bracket is open */
} commands[] = {
    {"help", "", "this list", cmd_help, false},
    {"type", "EXPR", "the dtype and shape of EXPR, without running it", cmd_type, true},
    {"emit", "STAGE EXPR", "a compiler stage of EXPR: ir opt kernels llvm cuda ptx dot", cmd_emit, true},
    {"time", "EXPR", "compile time, then the median run time of EXPR", cmd_time, true},
    {"report", "[--force] FILE.html EXPR", "bench EXPR and write the report page (as bench --report)",
     cmd_report, true},
    {"device", "[NAME]", "show or change the device (names below)", cmd_device, false},
    {"precision", "[f32|f16|bf16|auto]", "show or change the precision policy", cmd_precision, false},
    {"save", "[--force] NAME FILE.npy", "write a variable to a .npy file (--force: over a non-.npy)",
     cmd_save, false},
    {"load", "FILE.kiln|MODEL.onnx", "add the graphs of a file, or an ONNX model as a graph", cmd_load, false},
    {"vars", "", "the variables and graphs", cmd_vars, false},
    {"reset", "", "drop every variable and graph", cmd_reset, false},
    {"quit", "", "leave (so does Ctrl-D)", cmd_quit, false},
};
enum { NCOMMANDS = sizeof commands / sizeof commands[0] };

static bool cmd_help(Repl *r, const char *text, size_t at) {
    (void)text, (void)at;
    printf("Statements:\n"
           "  x = EXPR             bind the value of EXPR (a, b = g(x) for several results)\n"
           "  EXPR                 print the value of EXPR and its type\n"
           "  graph f(...) -> ...  define a graph (may span lines while a bracket is open)\n"
           "Besides the language's built-ins: rand(SHAPE, seed=N), randn(SHAPE, seed=N), "
           "load(\"FILE.npy\").\n"
           "Commands:\n");
    for (int i = 0; i < NCOMMANDS; i++) {
        char head[64];
        snprintf(head, sizeof head, ":%s %s", commands[i].name, commands[i].args);
        printf("  %-32s %s\n", head, commands[i].help);
    }
    StrBuf names = {0};
    backend_names(&names, ", ");
    printf("Devices: %s (the backend table).  Now %s.\n", names.data, r->device);
    sb_free(&names);
    printf("Ctrl-C abandons a line or stops a run; Ctrl-D leaves.\n");
    return true;
}

/* Finds the command named by a whole word or a prefix of one name. */
static int find_command(const char *word) {
    int found = -1, nprefix = 0;
    for (int i = 0; i < NCOMMANDS; i++) {
        if (strcmp(commands[i].name, word) == 0) return i;
        if (strncmp(commands[i].name, word, strlen(word)) == 0) found = i, nprefix++;
    }
    if (strcmp(word, "q") == 0 || strcmp(word, "exit") == 0) return find_command("quit");
    return nprefix == 1 ? found : -1;
}

/* ":name args" */
static bool run_command(Repl *r, const char *text) {
    const char *p = text;
    while (isspace((unsigned char)*p)) p++;
    p++; /* ':' */
    const char *name_start = p;
    while (isalnum((unsigned char)*p) || *p == '_') p++;
    char *name = strndup(name_start, (size_t)(p - name_start));
    int c = find_command(name);
    if (c < 0) {
        Suggest s = {0};
        for (int i = 0; i < NCOMMANDS; i++) suggest_try(&s, name, commands[i].name);
        repl_error("unknown command ':%s'%s%s%s; :help lists them", name, s.best ? " (did you mean :" : "",
                   s.best ? s.best : "", s.best ? "?)" : "");
        free(name);
        return false;
    }
    free(name);
    return commands[c].fn(r, text, (size_t)(p - text));
}

/* ====================================================================== reading input */

/* The command an input starts with, or -1 for code. */
static int input_command(const char *text) {
    while (isspace((unsigned char)*text)) text++;
    if (*text != ':') return -1;
    char name[32];
    int n = 0;
    for (text++; (isalnum((unsigned char)*text) || *text == '_') && n < 31; text++) name[n++] = *text;
    name[n] = 0;
    return find_command(name);
}

/* Whether `text` is a whole input: every (, [ and { closed (outside comments
 * and strings), and a graph definition has reached its body.  Commands that
 * take no expression are always whole. */
static bool input_complete(const char *text) {
    const char *p = text;
    while (isspace((unsigned char)*p)) p++;
    if (*p == ':') {
        int c = input_command(p);
        if (c < 0 || !commands[c].takes_expr) return true;
    }
    bool is_graph = strncmp(p, "graph", 5) == 0 && !(isalnum((unsigned char)p[5]) || p[5] == '_');
    bool seen_body = false;
    int depth = 0;
    for (; *p; p++) {
        if (*p == '#') {
            while (*p && *p != '\n') p++;
            if (!*p) break;
        } else if (*p == '"') {
            for (p++; *p && *p != '"' && *p != '\n'; p++)
                if (*p == '\\' && p[1] && p[1] != '\n') p++;
            if (!*p) break;
        } else if (*p == '(' || *p == '[' || *p == '{') {
            depth++;
            seen_body = seen_body || *p == '{';
        } else if (*p == ')' || *p == ']' || *p == '}') {
            depth--;
        }
    }
    return depth <= 0 && (!is_graph || seen_body);
}

typedef enum { READ_OK, READ_EOF, READ_INTERRUPT } ReadStatus;

/* Waits until the terminal has input for the plain reader, or a Ctrl-C
 * came; false for the Ctrl-C.  SIGINT stays blocked from the test of
 * `interrupted` until ppoll unblocks it atomically for the wait: a Ctrl-C
 * that came after the test but before a blocking read began (a loaded
 * machine preempting the reader there) left getline waiting, the line and
 * the next one lost.  Valid because the plain reader's stdin is unbuffered
 * (kiln_repl): nothing waits in stdio's buffer that poll cannot see. */
static bool wait_for_terminal_input(void) {
    sigset_t with_int, orig;
    sigemptyset(&with_int);
    sigaddset(&with_int, SIGINT);
    sigprocmask(SIG_BLOCK, &with_int, &orig);
    while (!interrupted) {
        struct pollfd in = {.fd = STDIN_FILENO, .events = POLLIN};
        int ready = ppoll(&in, 1, NULL, &orig);
        if (ready > 0 || (ready < 0 && errno != EINTR)) break; /* input, end of file, or let getline say */
    }
    sigprocmask(SIG_SETMASK, &orig, NULL);
    return !interrupted;
}

/* One physical line, appended to `text` with its newline.  A Ctrl-C that
 * came while the line was typed abandons it, even one that came just before
 * the read began (and so could not interrupt it). */
static ReadStatus read_physical_line(Repl *r, const char *prompt, StrBuf *text) {
    if (r->el) {
        int count;
        r->prompt = prompt;
        const char *line = el_gets(r->el, &count);
        if (!line || interrupted) return interrupted ? READ_INTERRUPT : READ_EOF;
        size_t n = strlen(line);
        while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
        sb_printf(text, "%.*s\n", (int)n, line);
        bool blank = true;
        for (size_t i = 0; i < n; i++) blank = blank && isspace((unsigned char)line[i]);
        if (!blank) {
            char *entry = strndup(line, n);
            HistEvent ev;
            history(r->hist, &ev, H_ENTER, entry);
            free(entry);
        }
        return READ_OK;
    }
    if (r->interactive) {
        fputs(prompt, stdout);
        fflush(stdout);
        if (!wait_for_terminal_input()) return READ_INTERRUPT;
    }
    char *line = NULL;
    size_t cap = 0;
    ssize_t n = interrupted ? -1 : getline(&line, &cap, stdin);
    if (n < 0 || interrupted) {
        free(line);
        clearerr(stdin);
        return interrupted ? READ_INTERRUPT : READ_EOF;
    }
    while (n > 0 && (line[n - 1] == '\n' || line[n - 1] == '\r')) n--;
    sb_printf(text, "%.*s\n", (int)n, line);
    free(line);
    return READ_OK;
}

/* One whole input: more lines, with the continuation prompt, while a
 * bracket is open.  At the end of a pipe, what was read is the input. */
static ReadStatus read_input(Repl *r, StrBuf *text) {
    text->len = 0;
    if (text->data) text->data[0] = 0;
    for (;;) {
        ReadStatus st = read_physical_line(r, text->len ? "...> " : "kiln> ", text);
        if (st == READ_INTERRUPT) return st;
        if (st == READ_EOF) return text->len ? READ_OK : READ_EOF;
        if (input_complete(text->data)) return READ_OK;
    }
}

/* ====================================================================== libedit */

static char *el_prompt(EditLine *el) {
    Repl *r;
    el_get(el, EL_CLIENTDATA, &r);
    return (char *)r->prompt;
}

/* Reads one character for libedit.  Its own reader retries a read that a
 * signal interrupts, which would swallow Ctrl-C; this one gives up, and
 * el_gets returns NULL.  UTF-8 is decoded here. */
static int el_read_char(EditLine *el, wchar_t *wc) {
    (void)el;
    unsigned char buf[4];
    int need = 1;
    for (int got = 0; got < need;) {
        if (interrupted) return -1;
        ssize_t n = read(STDIN_FILENO, &buf[got], 1);
        if (n == 0) return 0;
        if (n < 0) {
            if (errno == EINTR && !interrupted) continue;
            return -1;
        }
        if (got++ == 0) /* the lead byte tells the length */
            need = buf[0] < 0xc0 ? 1 : buf[0] < 0xe0 ? 2 : buf[0] < 0xf0 ? 3 : 4;
    }
    wchar_t c = need == 1 ? buf[0] : buf[0] & (0x7f >> need);
    for (int i = 1; i < need; i++) c = (c << 6) | (buf[i] & 0x3f);
    *wc = c;
    return 1;
}

typedef VEC(const char *) NameVec;

/* Adds `name` to the completions if it starts with `prefix` (once). */
static void completion_add(NameVec *out, const char *name, const char *prefix) {
    if (strncmp(name, prefix, strlen(prefix)) != 0) return;
    for (int i = 0; i < out->len; i++)
        if (strcmp(out->data[i], name) == 0) return;
    VEC_PUSH(*out, name);
}

/* The completions of `prefix`, which starts at `start` in the line:
 * command names after ':', a command's fixed first argument (stage,
 * device, precision, variable), else variable, graph, built-in and dtype
 * names.  *suffix is what follows a unique completion. */
static void completions(Repl *r, const char *line, const char *start, const char *prefix, NameVec *out,
                        const char **suffix) {
    while (line < start && isspace((unsigned char)*line)) line++;
    *suffix = "";
    if (line == start - 1 && *line == ':') {
        for (int i = 0; i < NCOMMANDS; i++) completion_add(out, commands[i].name, prefix);
        *suffix = " ";
        return;
    }
    int c = *line == ':' ? input_command(line) : -1;
    const char *arg = line + 1;
    while (arg < start && !isspace((unsigned char)*arg)) arg++; /* past the command's name */
    while (arg < start && isspace((unsigned char)*arg)) arg++;
    CommandFn first_arg_of = c >= 0 && arg == start ? commands[c].fn : NULL;
    if (first_arg_of == cmd_emit) {
        for (int i = 0; graph_stages[i]; i++) completion_add(out, graph_stages[i], prefix);
        for (int b = 0; b < backend_count(); b++)
            for (const EmitStage *s = backend_at(b)->stages; s && s->name; s++)
                completion_add(out, s->name, prefix);
    } else if (first_arg_of == cmd_device) {
        for (int b = 0; b < backend_count(); b++) completion_add(out, backend_at(b)->name, prefix);
    } else if (first_arg_of == cmd_precision) {
        for (int i = 0; precision_names[i]; i++) completion_add(out, precision_names[i], prefix);
    }
    if (first_arg_of == cmd_emit || first_arg_of == cmd_device || first_arg_of == cmd_precision) {
        *suffix = " ";
        return;
    }
    for (int i = 0; i < r->vars.len; i++) completion_add(out, r->vars.data[i].name, prefix);
    if (first_arg_of == cmd_save) {
        *suffix = " ";
        return;
    }
    int nvars = out->len;
    for (int i = 0; i < r->graphs.len; i++) completion_add(out, r->graphs.data[i].name, prefix);
    for (int i = 0; i < OP_COUNT; i++)
        if (op_info[i].flags & OPF_BUILTIN) completion_add(out, op_info[i].name, prefix);
    for (int i = 0; lang_sugar_builtins[i]; i++) completion_add(out, lang_sugar_builtins[i], prefix);
    for (int i = 0; repl_builtins[i]; i++) completion_add(out, repl_builtins[i], prefix);
    if (out->len == 1 && nvars == 0) *suffix = "("; /* a function */
    for (int i = 0; dtype_names[i]; i++) completion_add(out, dtype_names[i], prefix);
}

/* Tab: completes the word before the cursor as far as every choice agrees;
 * with nothing to add, lists the choices under the line. */
static unsigned char el_complete(EditLine *el, int ch) {
    (void)ch;
    Repl *r;
    el_get(el, EL_CLIENTDATA, &r);
    const LineInfo *li = el_line(el);
    const char *start = li->cursor;
    while (start > li->buffer && (isalnum((unsigned char)start[-1]) || start[-1] == '_')) start--;
    char *prefix = strndup(start, (size_t)(li->cursor - start));
    size_t plen = strlen(prefix);
    NameVec cands = {0};
    const char *suffix;
    completions(r, li->buffer, start, prefix, &cands, &suffix);
    unsigned char ret = CC_REFRESH;
    if (cands.len == 0) {
        ret = CC_REFRESH_BEEP;
    } else if (cands.len == 1) {
        StrBuf ins = {0};
        sb_printf(&ins, "%s%s", cands.data[0] + plen, suffix);
        if (ins.data && ins.data[0]) el_insertstr(el, ins.data);
        sb_free(&ins);
    } else {
        size_t common = strlen(cands.data[0]);
        for (int i = 1; i < cands.len; i++) {
            size_t k = 0;
            while (k < common && cands.data[i][k] == cands.data[0][k]) k++;
            common = k;
        }
        if (common > plen) {
            char *ins = strndup(cands.data[0] + plen, common - plen);
            el_insertstr(el, ins);
            free(ins);
        } else {
            fputc('\n', stdout);
            for (int i = 0; i < cands.len; i++) printf("%s%s", i ? "  " : "", cands.data[i]);
            fputc('\n', stdout);
            fflush(stdout);
            ret = CC_REDISPLAY;
        }
    }
    VEC_FREE(cands);
    free(prefix);
    return ret;
}

/* $XDG_STATE_HOME/kiln/history if that variable is set, else ~/.kiln_history. */
static char *history_file(void) {
    const char *state = getenv("XDG_STATE_HOME"), *home = getenv("HOME");
    StrBuf sb = {0};
    if (state && *state) {
        mkdir(state, 0700);
        sb_printf(&sb, "%s/kiln", state);
        mkdir(sb.data, 0700);
        sb_puts(&sb, "/history");
    } else if (home && *home) {
        sb_printf(&sb, "%s/.kiln_history", home);
    }
    return sb.data;
}

static void editline_open(Repl *r) {
    setlocale(LC_CTYPE, "");
    HistEvent ev;
    r->hist = history_init();
    history(r->hist, &ev, H_SETSIZE, 1000);
    history(r->hist, &ev, H_SETUNIQUE, 1);
    r->history_path = history_file();
    if (r->history_path) history(r->hist, &ev, H_LOAD, r->history_path); /* none yet is fine */
    r->el = el_init("kiln", stdin, stdout, stderr);
    el_set(r->el, EL_CLIENTDATA, r);
    el_set(r->el, EL_EDITOR, "emacs");
    el_set(r->el, EL_PROMPT, el_prompt);
    el_set(r->el, EL_HIST, history, r->hist);
    el_set(r->el, EL_GETCFN, el_read_char);
    /* the wide form keeps these strings; the narrow one copies them and leaks the copies */
    el_wset(r->el, EL_ADDFN, L"kiln-complete", L"complete a name or a command", el_complete);
    el_set(r->el, EL_BIND, "^I", "kiln-complete", NULL);
    el_source(r->el, NULL); /* the user's ~/.editrc */
}

static void editline_close(Repl *r) {
    if (r->el) el_end(r->el);
    if (r->hist) {
        HistEvent ev;
        if (r->history_path && history(r->hist, &ev, H_SAVE, r->history_path) < 0)
            fprintf(stderr, "kiln: cannot save the history to %s\n", r->history_path);
        history_end(r->hist);
    }
    free(r->history_path);
}

/* ====================================================================== the loop */

static bool run_input(Repl *r, const char *text) {
    const char *p = text;
    while (isspace((unsigned char)*p)) p++;
    if (!*p) return true;
    r->ninputs++;
    return *p == ':' ? run_command(r, text) : eval_code(r, text);
}

int repl_main(const char *device, bool force_plain) {
    Repl r = {.copt = {.opt_level = 2, .precision = PREC_F32}};
    char err[512] = "";
    if (!device) device = backend_default();
    KilnStatus open = backend_open(device, &r.backend, err, sizeof err);
    if (open != KILN_OK) {
        fprintf(stderr, "kiln: %s\n", err);
        return open;
    }
    r.device = xstrdup(device);
    r.interactive = isatty(STDIN_FILENO);
    struct sigaction old_int, on_int = {.sa_handler = on_sigint}; /* no SA_RESTART: reads return */
    if (r.interactive) {
        sigemptyset(&on_int.sa_mask);
        sigaction(SIGINT, &on_int, &old_int);
        if (!force_plain && isatty(STDOUT_FILENO)) editline_open(&r);
        if (!r.el) setvbuf(stdin, NULL, _IONBF, 0); /* wait_for_terminal_input polls the descriptor */
        printf("kiln %s on device %s.  :help lists the commands; Ctrl-D leaves.\n", KILN_VERSION, r.device);
    }
    StrBuf text = {0};
    while (!r.quit) {
        ReadStatus st = read_input(&r, &text);
        if (st == READ_EOF) {
            if (r.interactive) putchar('\n');
            break;
        }
        if (st == READ_INTERRUPT) {
            putchar('\n');
        } else if (!run_input(&r, text.data)) {
            r.any_failed = true;
        }
        interrupted = 0;
        fflush(stdout);
    }
    sb_free(&text);
    if (r.interactive) {
        editline_close(&r);
        sigaction(SIGINT, &old_int, NULL);
    }
    vars_free(&r.vars);
    graphs_clear(&r);
    free(r.device);
    return r.any_failed && !r.interactive ? KILN_ERR_INPUT : KILN_OK;
}
