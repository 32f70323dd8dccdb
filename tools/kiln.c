/* kiln.c - the command line (shared/spec/cli.md):
 *   kiln check FILE | run FILE | emit FILE --emit=STAGE | aot | bench | repl | help | --version
 * Exit status: 0 success, 1 diagnosed input error, 2 usage, 3 device/environment. */
#include "app/app.h"
#include "app/repl.h"
#include "app/report.h"
#include "app/viz.h"
#include "codegen/dot.h"
#include "ir/kernel.h"
#include "passes/pass.h"
#include "runtime/cuda_toolkit.h"
#include "runtime/kcache.h"
#include "runtime/outfile.h"
#include "runtime/tensorio.h"

#include <time.h>

#ifndef KILN_NO_LLVM
#include "codegen/llvm.h"
/* Out of memory while libLLVM's static constructors run, before main, ends
 * as it does later: a message and exit status 3 (codegen/llvm_oom.cpp), not
 * an uncaught std::bad_alloc.  An executable's .preinit_array runs before
 * the initialisers of every shared library it loads. */
typedef void (*EarlyInit)(void);
__attribute__((section(".preinit_array"), used)) static const EarlyInit oom_handlers =
    llvm_install_oom_handlers;
#endif

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A mapped weights file (tensorio_map_file). */
typedef struct {
    const uint8_t *data;
    size_t len;
} TensorMap;

typedef struct {
    const char *command;
    const char *file;
    const char *graph;
    const char *device;
    const char *emit;
    const char *out;
    const char *target;
    const char *trace_out;  /* bench --trace FILE.json */
    const char *report_out; /* bench --report FILE.html */
    int argc;               /* the command line, for the report */
    char **argv;
    VEC(NamedTensor) tensors;
    VEC(DimBinding) dims;
    VEC(char *) weights;
    VEC(TensorMap) maps; /* --weights files mapped (their tensors are views) */
    uint64_t seed;
    int runs;
    bool json;
    bool verbose;
    bool compare; /* run --compare: errors against the f32 reference */
    bool force;   /* --force: replace an output file that kiln did not write */
    CompileOptions copt;
} Options;

static void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fputs("kiln: ", stderr);
    vfprintf(stderr, fmt, ap);
    fputs("\n(see 'kiln help')\n", stderr);
    va_end(ap);
}

static const char *const help_text[][2] = {
    {"check",
     "kiln check FILE\n  Parse and type-check FILE; print every diagnostic. Exit 0 if clean, 1 if not.\n"},
    {"run", "kiln run FILE [options]\n  Compile and run a graph; print its results or save them.\n"
            "  -g NAME                 the graph to run (default: the first)\n"
            "  --device=NAME           one of: {devices}\n"
            "  --in NAME=FILE.npy|FILE.pb  bind a parameter (repeatable; .pb: an ONNX TensorProto)\n"
            "  --weights FILE.safetensors  bind every parameter named in the file\n"
            "  --dim NAME=SIZE         bind a symbolic dimension (repeatable)\n"
            "  --seed N                seed for parameters left unbound (default 0)\n"
            "  --out FILE.npy | --out DIR   save results instead of printing them\n"
            "  --force                 let --out replace a file that is not a .npy\n"
            "  --precision=f32|f16|bf16|auto, -O0, -O2, -v (also: peak memory)\n"
            "  --compare               also run the f32 reference (ref, -O0) on the same inputs and\n"
            "                          print each result's max absolute and relative error\n"
            "  --passes=a,b,c          run exactly these graph passes (fold, simplify, cse, dce,\n"
            "                          decompose, precision); --print-after=PASS|all prints the IR\n"
            "  --fast-math             allow rewrites that are not exact (x + 0 -> x)\n"
            "  --remarks               say what the passes and the fusion scheduler did\n"},
    {"emit", "kiln emit FILE --emit=ast|ir|opt|kernels|{stages}|dot|svg [-o OUT] [-g NAME] [--dim N=S]\n"
             "  Print one stage of the compiler (-o: to OUT; --force replaces a file emit did not write).\n"
             "  dot: the fused kernels as Graphviz clusters; svg: the same drawn by Graphviz's `dot`.\n"
             "  --in and --weights bind dimensions and mark weights as constants, as in run.\n"},
    {"import", "kiln import MODEL.onnx -o DIR [--dim NAME=SIZE] [--force]\n"
               "  Write the ONNX model as readable kiln source, DIR/NAME.kiln (one statement per node), and its\n"
               "  weights, DIR/NAME.safetensors; kiln run DIR/NAME.kiln --weights DIR/NAME.safetensors runs it.\n"},
    {"aot", "kiln aot FILE --target=cuda[:sm_XX]|cpu -o DIR [--force]\n"
            "  Write a deployable bundle into DIR: a new or empty folder, or one kiln made\n"
            "  (replaced whole); --force adds the files to any other folder.\n"},
    {"bench",
     "kiln bench FILE [run options] [--runs=N] [--json] [--trace FILE.json] [--report FILE.html]\n"
     "  Time each kernel and the whole graph.\n"
     "  --trace FILE.json       write the compile phases and every kernel launch of every run as a\n"
     "                          Chrome trace (open it in Perfetto or chrome://tracing)\n"
     "  --report FILE.html      write one self-contained page: the kernel table, a roofline chart\n"
     "                          against this machine's bandwidth and peak (measured now, ~1 s), the\n"
     "                          timeline and the fused-kernel graph\n"},
    {"cache", "kiln cache [info|clear]\n  Where the cache of compiled code is (KILN_CACHE=DIR|off; else "
              "$XDG_CACHE_HOME/kiln,\n"
              "  ~/.cache/kiln) and what it holds; clear empties it.\n"},
    {"env", "kiln env [NAME]\n  What kiln finds of CUDA here (toolkit, NVRTC, headers, ptxas, driver, GPU)\n"
            "  as shell assignments KILN_NAME='value', or the value of one NAME.\n"},
    {"repl",
     "kiln repl [--device=NAME] [--plain]\n  The interactive prompt (':help' inside lists its commands);\n"
     "  --plain turns line editing off. Reads a script from a pipe without prompts.\n"},
};

/* Prints one help text with {devices} and {stages} replaced by the backend
 * table's device names and emit stages (runtime/backends.c), so that a new
 * backend appears in the help without an edit here. */
static void put_help(const char *text) {
    StrBuf devices = {0}, stages = {0};
    backend_names(&devices, "|");
    backend_stage_names(&stages, "|");
    const struct {
        const char *mark, *text;
    } fills[] = {{"{devices}", devices.data}, {"{stages}", stages.data}};
    const size_t nfills = sizeof fills / sizeof fills[0];
    for (const char *p = text; *p;) {
        size_t f = 0;
        while (f < nfills && strncmp(p, fills[f].mark, strlen(fills[f].mark)) != 0) f++;
        if (f == nfills) {
            putchar(*p++);
            continue;
        }
        fputs(fills[f].text, stdout);
        p += strlen(fills[f].mark);
    }
    sb_free(&devices);
    sb_free(&stages);
}

static void print_help(const char *topic) {
    if (topic) {
        for (size_t i = 0; i < sizeof help_text / sizeof help_text[0]; i++) {
            if (strcmp(topic, help_text[i][0]) == 0) {
                put_help(help_text[i][1]);
                return;
            }
        }
    }
    printf("kiln %s - a tensor-graph compiler\n\nusage: kiln COMMAND [ARGS]\n\n", KILN_VERSION);
    for (size_t i = 0; i < sizeof help_text / sizeof help_text[0]; i++) put_help(help_text[i][1]);
    puts("kiln --version, kiln help [COMMAND]");
}

/* "NAME=VALUE" -> name, value; false if malformed. */
static bool split_eq(const char *s, char **name, const char **value) {
    const char *eq = strchr(s, '=');
    if (!eq || eq == s || !eq[1]) return false;
    *name = strndup(s, (size_t)(eq - s));
    *value = eq + 1;
    return true;
}

/* Takes an option's value from "--opt=V" or the next argument. */
static const char *opt_value(int argc, char **argv, int *i, const char *opt) {
    size_t n = strlen(opt);
    if (strncmp(argv[*i], opt, n) == 0 && argv[*i][n] == '=') return argv[*i] + n + 1;
    if (strcmp(argv[*i], opt) == 0) {
        if (*i + 1 >= argc) return NULL;
        return argv[++*i];
    }
    return NULL;
}

static bool is_opt(const char *arg, const char *opt) {
    size_t n = strlen(opt);
    return strncmp(arg, opt, n) == 0 && (arg[n] == 0 || arg[n] == '=');
}

static bool parse_int64(const char *s, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) return false;
    *out = v;
    return true;
}

static int parse_options(int argc, char **argv, int start, Options *o) {
    o->copt.opt_level = 2;
    o->runs = 0;
    for (int i = start; i < argc; i++) {
        const char *a = argv[i], *v;
        if (a[0] != '-' || a[1] == 0) {
            if (o->file) {
                usage_error("unexpected argument '%s'", a);
                return KILN_ERR_USAGE;
            }
            o->file = a;
        } else if (strcmp(a, "-g") == 0 || is_opt(a, "--graph")) {
            if (!(v = opt_value(argc, argv, &i, a[1] == 'g' ? "-g" : "--graph"))) goto missing;
            o->graph = v;
        } else if (is_opt(a, "--device")) {
            if (!(v = opt_value(argc, argv, &i, "--device"))) goto missing;
            o->device = v;
        } else if (is_opt(a, "--emit")) {
            if (!(v = opt_value(argc, argv, &i, "--emit"))) goto missing;
            o->emit = v;
        } else if (is_opt(a, "--target")) {
            if (!(v = opt_value(argc, argv, &i, "--target"))) goto missing;
            o->target = v;
        } else if (strcmp(a, "-o") == 0 || is_opt(a, "--out")) {
            if (!(v = opt_value(argc, argv, &i, a[1] == 'o' ? "-o" : "--out"))) goto missing;
            o->out = v;
        } else if (is_opt(a, "--in")) {
            char *name;
            const char *path;
            if (!(v = opt_value(argc, argv, &i, "--in"))) goto missing;
            if (!split_eq(v, &name, &path)) {
                usage_error("--in takes NAME=FILE.npy or NAME=FILE.pb, found '%s'", v);
                return KILN_ERR_USAGE;
            }
            for (int k = 0; k < o->tensors.len; k++) {
                if (strcmp(o->tensors.data[k].name, name) == 0) {
                    usage_error("--in %s is given twice ('%s' and '%s'); bind each parameter once", name,
                                o->tensors.data[k].path, path);
                    free(name);
                    return KILN_ERR_USAGE;
                }
            }
            StrBuf origin = {0};
            sb_printf(&origin, "--in %s=%s", name, path);
            NamedTensor nt = {
                .name = name, .role = TENSOR_INPUT, .path = strdup(path), .origin = origin.data};
            VEC_PUSH(o->tensors, nt);
        } else if (is_opt(a, "--weights")) {
            if (!(v = opt_value(argc, argv, &i, "--weights"))) goto missing;
            VEC_PUSH(o->weights, strdup(v));
        } else if (is_opt(a, "--dim")) {
            char *name;
            const char *size;
            int64_t n;
            if (!(v = opt_value(argc, argv, &i, "--dim"))) goto missing;
            bool named = split_eq(v, &name, &size);
            if (!named || !parse_int64(size, &n) || n <= 0) {
                if (named) free(name);
                usage_error("--dim takes NAME=SIZE with a positive SIZE, found '%s'", v);
                return KILN_ERR_USAGE;
            }
            DimBinding d = {name, n};
            VEC_PUSH(o->dims, d);
        } else if (is_opt(a, "--seed")) {
            int64_t n;
            if (!(v = opt_value(argc, argv, &i, "--seed"))) goto missing;
            if (!parse_int64(v, &n)) {
                usage_error("--seed takes an integer, found '%s'", v);
                return KILN_ERR_USAGE;
            }
            o->seed = (uint64_t)n;
        } else if (is_opt(a, "--runs")) {
            int64_t n;
            if (!(v = opt_value(argc, argv, &i, "--runs"))) goto missing;
            if (!parse_int64(v, &n) || n <= 0 || n > 1000000) {
                usage_error("--runs takes a positive integer, found '%s'", v);
                return KILN_ERR_USAGE;
            }
            o->runs = (int)n;
        } else if (is_opt(a, "--precision")) {
            if (!(v = opt_value(argc, argv, &i, "--precision"))) goto missing;
            if (strcmp(v, "f32") == 0) o->copt.precision = PREC_F32;
            else if (strcmp(v, "f16") == 0) o->copt.precision = PREC_F16;
            else if (strcmp(v, "bf16") == 0) o->copt.precision = PREC_BF16;
            else if (strcmp(v, "auto") == 0) o->copt.precision = PREC_AUTO;
            else {
                usage_error("--precision takes f32, f16, bf16 or auto, found '%s'", v);
                return KILN_ERR_USAGE;
            }
        } else if (is_opt(a, "--passes") || is_opt(a, "--print-after")) {
            bool list = is_opt(a, "--passes");
            char perr[512];
            if (!(v = opt_value(argc, argv, &i, list ? "--passes" : "--print-after"))) goto missing;
            if (!passes_check_names(v, !list, perr, sizeof perr)) {
                usage_error("%s: %s", list ? "--passes" : "--print-after", perr);
                return KILN_ERR_USAGE;
            }
            if (list) o->copt.passes = v;
            else o->copt.print_after = v;
        } else if (strcmp(a, "--fast-math") == 0) {
            o->copt.fast_math = true;
        } else if (strcmp(a, "--remarks") == 0) {
            o->copt.remarks = true;
        } else if (strcmp(a, "--force") == 0) {
            o->force = true;
        } else if (strcmp(a, "--compare") == 0) {
            o->compare = true;
        } else if (is_opt(a, "--cpu")) {
            if (!(v = opt_value(argc, argv, &i, "--cpu"))) goto missing;
            char cerr[8192];
            if (cpu_check_name(v, cerr, sizeof cerr) != KILN_OK) {
                usage_error("%s", cerr);
                return KILN_ERR_USAGE;
            }
            o->copt.cpu = v;
        } else if (is_opt(a, "--arch")) {
            if (!(v = opt_value(argc, argv, &i, "--arch"))) goto missing;
            o->copt.arch = v;
        } else if (strcmp(a, "-O0") == 0) {
            o->copt.opt_level = 0;
        } else if (strcmp(a, "-O2") == 0 || strcmp(a, "-O") == 0) {
            o->copt.opt_level = 2;
        } else if (is_opt(a, "--trace")) {
            if (!(v = opt_value(argc, argv, &i, "--trace"))) goto missing;
            o->trace_out = v;
        } else if (is_opt(a, "--report")) {
            if (!(v = opt_value(argc, argv, &i, "--report"))) goto missing;
            o->report_out = v;
        } else if (strcmp(a, "--json") == 0) {
            o->json = true;
        } else if (strcmp(a, "-v") == 0 || strcmp(a, "--verbose") == 0) {
            o->verbose = o->copt.verbose = true;
        } else {
            usage_error("unknown option '%s'", a);
            return KILN_ERR_USAGE;
        }
        continue;
    missing:
        usage_error("option '%s' needs a value", a);
        return KILN_ERR_USAGE;
    }
    if (!o->file) {
        usage_error("'%s' needs a FILE", o->command);
        return KILN_ERR_USAGE;
    }
    if ((o->trace_out || o->report_out) && strcmp(o->command, "bench") != 0) {
        usage_error("%s is an option of bench, not of %s", o->trace_out ? "--trace" : "--report", o->command);
        return KILN_ERR_USAGE;
    }
    return KILN_OK;
}

static void free_options(Options *o) {
    for (int i = 0; i < o->tensors.len; i++) {
        free((char *)o->tensors.data[i].name);
        free((char *)o->tensors.data[i].path);
        free((char *)o->tensors.data[i].origin);
        if (o->tensors.data[i].view) o->tensors.data[i].tensor.data = NULL; /* a mapped file's */
        kiln_tensor_free(&o->tensors.data[i].tensor);
    }
    VEC_FREE(o->tensors);
    for (int i = 0; i < o->maps.len; i++) tensorio_unmap(o->maps.data[i].data, o->maps.data[i].len);
    VEC_FREE(o->maps);
    for (int i = 0; i < o->dims.len; i++) free((char *)o->dims.data[i].name);
    VEC_FREE(o->dims);
    for (int i = 0; i < o->weights.len; i++) free(o->weights.data[i]);
    VEC_FREE(o->weights);
}

/* Reads a --weights file: mapped, its tensors views of it (map), else read
 * and copied (also when it cannot be mapped: a pipe ...). */
static bool read_weights(Options *o, const char *path, bool map, KilnTensorList *list, bool *views, char *err,
                         size_t errlen) {
    TensorMap m;
    char merr[256];
    *views = map && tensorio_map_file(path, &m.data, &m.len, merr, sizeof merr);
    if (!*views) return kiln_safetensors_read(path, list, err, errlen);
    if (!safetensors_read_views(m.data, m.len, list, err, errlen)) {
        tensorio_prefix_error(err, errlen, path);
        tensorio_unmap(m.data, m.len);
        return false;
    }
    VEC_PUSH(o->maps, m);
    return true;
}

/* Reads the files of --in and --weights (map: the weights files mapped, their
 * tensors used in place, for a run that binds them as views: prepare()).
 * Returns a status. */
static int load_tensors(Options *o, bool map) {
    char err[512];
    for (int i = 0; i < o->tensors.len; i++) {
        NamedTensor *nt = &o->tensors.data[i];
        if (nt->role != TENSOR_INPUT) continue;
        if (!tensor_file_read(nt->path, &nt->tensor, err, sizeof err)) {
            fprintf(stderr, "kiln: --in %s: %s\n", nt->name, err);
            return KILN_ERR_INPUT;
        }
    }
    for (int w = 0; w < o->weights.len; w++) {
        KilnTensorList list = {0};
        bool views;
        if (!read_weights(o, o->weights.data[w], map, &list, &views, err, sizeof err)) {
            fprintf(stderr, "kiln: --weights: %s\n", err);
            return KILN_ERR_INPUT;
        }
        for (int i = 0; i < list.count; i++) {
            const char *path = o->weights.data[w];
            NamedTensor nt = {.name = list.names[i],
                              .tensor = list.tensors[i],
                              .role = TENSOR_WEIGHT,
                              .path = strdup(path),
                              .origin = strdup(path),
                              .view = views};
            VEC_PUSH(o->tensors, nt);
        }
        free(list.names);
        free(list.tensors);
    }
    return KILN_OK;
}

static int open_program(Options *o, Compilation *c, int *entry) {
    char err[512];
    KilnStatus st = compilation_open(c, o->file, err, sizeof err);
    if (st == KILN_ERR_USAGE) {
        fprintf(stderr, "kiln: %s\n", err);
        return KILN_ERR_USAGE;
    }
    diag_print(&c->diags, stderr);
    if (st != KILN_OK) {
        if (c->diags.nerrors == 0) fprintf(stderr, "kiln: %s\n", err);
        return st;
    }
    *entry = 0;
    if (o->graph && c->onnx) { /* a model holds one graph */
        if (strcmp(o->graph, c->onnx->graph.name) != 0) {
            fprintf(stderr, "kiln: %s is an ONNX model of one graph, '%s'; -g '%s' names no graph of it\n",
                    o->file, c->onnx->graph.name, o->graph);
            return KILN_ERR_USAGE;
        }
    } else if (o->graph) {
        *entry = program_find_graph(&c->prog, o->graph);
        if (*entry < 0) {
            fprintf(stderr, "kiln: %s has no graph named '%s'; it defines:", o->file, o->graph);
            for (int i = 0; i < c->prog.ngraphs; i++) fprintf(stderr, " %s", c->prog.graphs[i].name);
            fputc('\n', stderr);
            return KILN_ERR_USAGE;
        }
    }
    return KILN_OK;
}

static int cmd_check(Options *o) {
    Compilation c;
    int entry;
    int st = open_program(o, &c, &entry);
    if (st == KILN_OK && c.onnx) { /* a model is checked by importing it */
        st = compilation_check_onnx(&c, o->dims.data, o->dims.len);
        diag_print(&c.diags, stderr);
    }
    compilation_close(&c);
    return st;
}

static bool is_directory(const char *path) {
    struct stat s;
    return stat(path, &s) == 0 && S_ISDIR(s.st_mode);
}

/* The files a command reads, which no output may replace. */
static void collect_inputs(const Options *o, InputFiles *in) {
    input_files_add(in, o->file, "the program");
    for (int i = 0; i < o->weights.len; i++) input_files_add(in, o->weights.data[i], "a --weights file");
    for (int i = 0; i < o->tensors.len; i++) { /* a weight's file is among o->weights */
        const NamedTensor *nt = &o->tensors.data[i];
        if (nt->role != TENSOR_INPUT) continue;
        StrBuf what = {0};
        sb_printf(&what, "the --in %s file", nt->name);
        input_files_add(in, nt->path, what.data);
        sb_free(&what);
    }
}

/* Where result i goes: `out` itself, or OUT/i.npy when several results (or
 * a folder) are asked for. */
static bool out_is_dir(const char *out, int nresults) {
    return nresults != 1 || is_directory(out) || out[strlen(out) - 1] == '/';
}

static char *result_path(const char *out, int i, int nresults) {
    StrBuf path = {0};
    if (out_is_dir(out, nresults))
        sb_printf(&path, "%s/%d.npy", out, i);
    else
        sb_puts(&path, out);
    return path.data;
}

/* Before any work: may --out receive nresults results? */
static int check_results_out(const Options *o, int nresults) {
    char err[1024];
    InputFiles in = {0};
    collect_inputs(o, &in);
    int st = KILN_OK;
    struct stat sb;
    if (out_is_dir(o->out, nresults) && stat(o->out, &sb) == 0 && !S_ISDIR(sb.st_mode)) {
        snprintf(err, sizeof err, "--out %s: %d results go into a folder, and %s is a file", o->out, nresults,
                 o->out);
        st = KILN_ERR_USAGE;
    }
    for (int i = 0; st == KILN_OK && i < nresults; i++) {
        char *path = result_path(o->out, i, nresults);
        if (!out_is_dir(o->out, nresults) || is_directory(o->out))
            st = outfile_check(path, OUT_NPY, &in, o->force, "--out", err, sizeof err);
        free(path);
    }
    input_files_free(&in);
    if (st != KILN_OK) fprintf(stderr, "kiln: %s\n", err);
    return st;
}

static int write_results(const char *out, const KilnTensor *results, int n) {
    char err[1024];
    if (out_is_dir(out, n) && !is_directory(out) && mkdir(out, 0777) != 0) {
        fprintf(stderr, "kiln: cannot create the folder %s: %s\n", out, strerror(errno));
        return KILN_ERR_DEVICE;
    }
    for (int i = 0; i < n; i++) {
        char *path = result_path(out, i, n);
        bool ok = kiln_npy_write(path, &results[i], err, sizeof err);
        free(path);
        if (!ok) {
            fprintf(stderr, "kiln: %s\n", err);
            return KILN_ERR_DEVICE;
        }
    }
    return KILN_OK;
}

/* run -v: the memory the fused program needs at its peak, as the fusion
 * scheduler plans it: the temporaries' arena plus inputs and outputs.  A
 * device that runs the graph itself (ref) has no kernel program: the plan is
 * made here, quietly. */
static void report_peak_memory(const IRGraph *g, const Executable *exe, const CompileOptions *copt) {
    char err[512];
    Arena *a = arena_new();
    CompileOptions quiet = *copt;
    quiet.remarks = quiet.verbose = false;
    const KProgram *kp = exec_program(exe);
    KProgram *own = kp ? NULL : exec_schedule(a, g, &quiet, err, sizeof err);
    if (own) kp = own;
    int64_t in = 0, out = 0;
    for (int i = 0; i < g->params.len; i++) {
        const Node *n = ir_node(g, g->params.data[i]);
        in += ir_numel(n) * (int64_t)kiln_dtype_size(n->dtype);
    }
    for (int i = 0; i < g->results.len; i++) {
        const Node *n = ir_node(g, g->results.data[i]);
        out += ir_numel(n) * (int64_t)kiln_dtype_size(n->dtype);
    }
    if (kp)
        fprintf(stderr, "kiln: peak memory %lld bytes: temporaries %lld (arena of %d kernels) + inputs %lld + "
                "outputs %lld\n", (long long)(kp->arena_bytes + in + out), (long long)kp->arena_bytes,
                kp->kernels.len, (long long)in, (long long)out);
    else
        fprintf(stderr, "kiln: peak memory unknown: %s\n", err);
    kprog_destroy(own);
    arena_free(a);
}

/* run --compare: runs the graph as written (-O0, f32, reference
 * interpreter) on the same inputs and prints, per result, the largest
 * absolute error, the largest relative error over the reference's nonzero
 * elements and the largest reference magnitude. */
static int compare_with_reference(Compilation *c, int entry, const BindRequest *req, const IRGraph *g,
                                  const KilnTensor *inputs, const KilnTensor *outputs) {
    char err[1024] = "";
    CompileOptions ref_opt = {.opt_level = 0, .precision = PREC_F32};
    IRGraph *rg = NULL;
    KilnTensor *rin = NULL;
    int st = driver_bind(c, entry, req, &ref_opt, &rg, &rin, err, sizeof err);
    if (st != KILN_OK) {
        fprintf(stderr, "kiln: --compare: %s\n", err);
        return st;
    }
    int nres = rg->results.len;
    KilnTensor *ref = xcalloc((size_t)nres + 1, sizeof(KilnTensor));
    if (!ref_run(rg, inputs, ref, err, sizeof err)) {
        fprintf(stderr, "kiln: --compare: %s\n", err);
        st = KILN_ERR_DEVICE;
    }
    for (int i = 0; st == KILN_OK && i < nres; i++) {
        double max_abs = 0, max_rel = 0, max_ref = 0;
        for (int64_t k = 0, n = kiln_tensor_numel(&ref[i]); k < n; k++) {
            double e = kiln_tensor_get(&ref[i], k), a = kiln_tensor_get(&outputs[i], k);
            double d = fabs(a - e);
            if (isnan(d)) d = (isnan(a) && isnan(e)) || a == e ? 0 : INFINITY;
            if (d > max_abs) max_abs = d;
            if (e != 0 && d / fabs(e) > max_rel) max_rel = d / fabs(e);
            if (fabs(e) > max_ref) max_ref = fabs(e);
        }
        const Node *r = ir_node(g, g->results.data[i]);
        char *t = ir_type_str(g, r->dtype, r->rank, r->shape);
        fprintf(stderr, "kiln: compare result %d %s with the f32 reference: max abs err %.3e, max rel err %.3e, "
                "max |ref| %.3e\n", i, t, max_abs, max_rel, max_ref);
        free(t);
    }
    for (int i = 0; i < nres; i++) kiln_tensor_free(&ref[i]);
    free(ref);
    driver_inputs_free(c, rg, rin); /* weights bound from a mapped file are views of it */
    ir_graph_destroy(rg);
    return st;
}

/* What `run` and `bench` share: the program opened and checked, inputs
 * bound, the graph compiled on the chosen device.  prepared_close frees it
 * all, whatever step failed. */
typedef struct {
    Compilation c;
    int entry;
    BindRequest req;
    IRGraph *g;
    KilnTensor *inputs;
    const Backend *be;
    Executable *exe;
} Prepared;

static double now_ms(void) { return clock_ms(CLOCK_MONOTONIC); }

static int prepare(Options *o, Prepared *pr, bool announce, char *err, size_t errlen) {
    int st;
    memset(pr, 0, sizeof *pr);
    Trace *tr = o->copt.trace; /* bench --trace */
    double t[6];               /* -v: where the time went, phase by phase */
    double t0 = t[0] = trace_clock_ms();
    st = open_program(o, &pr->c, &pr->entry);
    trace_span(tr, "parse", t0, t[1] = trace_clock_ms(), "read and parse %s", o->file);
    if (st != KILN_OK) return st;
    t0 = trace_clock_ms();
    /* the weights are read in place from their mapped files (a model's,
     * --weights'): at any byte offset where the device takes them so (the
     * cpu), else where aligned to their elements; --compare's reference
     * reads the same inputs, aligned */
    const char *device = o->device ? o->device : backend_default();
    const Backend *dev = backend_lookup(device);
    bool unaligned = dev && backend_takes_unaligned(dev) && !o->compare;
    st = load_tensors(o, true);
    trace_span(tr, "parse", t0, t[2] = trace_clock_ms(), "read the input files");
    if (st != KILN_OK) return st;
    pr->req = (BindRequest){.tensors = o->tensors.data,
                            .ntensors = o->tensors.len,
                            .dims = o->dims.data,
                            .ndims = o->dims.len,
                            .seed = o->seed,
                            .notes = stderr,
                            .all_random_notes = o->verbose,
                            .map_weights = true,
                            .views_unaligned = unaligned};
    t0 = trace_clock_ms();
    st = driver_bind(&pr->c, pr->entry, &pr->req, &o->copt, &pr->g, &pr->inputs, err, errlen);
    trace_span(tr, "passes", t0, t[3] = trace_clock_ms(), "bind the inputs, build the IR, run the passes");
    if (st != KILN_OK) {
        diag_print(&pr->c.diags, stderr);
        if (err[0]) fprintf(stderr, "kiln: %s\n", err);
        return st;
    }
    if ((st = backend_open(device, &pr->be, err, errlen)) != KILN_OK) {
        fprintf(stderr, "kiln: %s\n", err);
        return st;
    }
    if (announce) fprintf(stderr, "kiln: running '%s' on device %s\n", pr->g->name, pr->be->name);
    t[4] = trace_clock_ms();
    if (!(pr->exe = exec_compile(pr->be, pr->g, &o->copt, err, errlen))) {
        fprintf(stderr, "kiln: %s\n", err);
        return KILN_ERR_DEVICE;
    }
    t[5] = trace_clock_ms();
    /* the weights once, for every run (the CPU packs them here) */
    if ((st = exec_bind_constants(pr->exe, pr->g, pr->inputs, err, errlen)) != KILN_OK) {
        fprintf(stderr, "kiln: %s\n", err);
        return st;
    }
    if (o->verbose) {
        fprintf(stderr,
                "kiln: phases: parse + check %.1f ms, read tensors %.1f ms, bind + passes %.1f ms, "
                "fusion + device code %.1f ms, constants bound %.1f ms",
                t[1] - t[0], t[2] - t[1], t[3] - t[2], t[5] - t[4], trace_clock_ms() - t[5]);
        const CompileStats *cs = o->copt.stats;
        if (cs && cs->packed)
            fprintf(stderr, " (%d packed operands, %d from the cache, %d keyed by their place in a file)",
                    cs->packed, cs->packed_cached, cs->packed_by_place);
        fputc('\n', stderr);
    }
    return KILN_OK;
}

static void prepared_close(Prepared *pr) {
    exec_destroy(pr->exe);
    if (pr->g) {
        driver_inputs_free(&pr->c, pr->g, pr->inputs);
        ir_graph_destroy(pr->g);
    }
    compilation_close(&pr->c);
}

static int cmd_run(Options *o) {
    Prepared pr;
    char err[1024] = "";
    KilnTensor *outputs = NULL;
    int st = prepare(o, &pr, !o->device || o->verbose, err, sizeof err);
    if (st != KILN_OK) goto done;
    const IRGraph *g = pr.g;
    int nres = g->results.len;
    if (o->out && (st = check_results_out(o, nres)) != KILN_OK) goto done;
    outputs = xcalloc((size_t)nres + 1, sizeof(KilnTensor));
    if ((st = exec_run(pr.exe, pr.inputs, outputs, err, sizeof err)) != KILN_OK) {
        fprintf(stderr, "kiln: %s\n", err);
        goto done;
    }
    if (o->verbose) report_peak_memory(g, pr.exe, &o->copt);
    if (o->compare && (st = compare_with_reference(&pr.c, pr.entry, &pr.req, g, pr.inputs, outputs)) != KILN_OK)
        goto done;
    if (o->out) {
        st = write_results(o->out, outputs, nres);
    } else {
        for (int i = 0; i < nres; i++) {
            StrBuf sb = {0};
            if (nres > 1) {
                const Node *r = ir_node(g, g->results.data[i]);
                char *t = ir_type_str(g, r->dtype, r->rank, r->shape);
                printf("# result %d: %s\n", i, t);
                free(t);
            }
            tensor_format(&outputs[i], &sb);
            printf("%s\n", sb.data ? sb.data : "");
            sb_free(&sb);
        }
    }
done:
    for (int i = 0; outputs && i < pr.g->results.len; i++) kiln_tensor_free(&outputs[i]);
    free(outputs);
    prepared_close(&pr);
    return st;
}

/* Stages past the IR need every dimension bound. */
static int require_concrete(const IRGraph *g) {
    const char *sym;
    if (ir_graph_is_concrete(g, &sym)) return KILN_OK;
    fprintf(stderr, "kiln: dimension %s is not bound; this stage needs concrete shapes: pass --dim %s=SIZE\n", sym, sym);
    return KILN_ERR_USAGE;
}

/* The stages of `emit`: these six, then every backend's (backend_stage). */
static const char *const graph_stages[] = {"ast", "ir", "opt", "kernels", "dot", "svg", NULL};

static bool is_graph_stage(const char *stage) {
    for (int i = 0; graph_stages[i]; i++)
        if (strcmp(graph_stages[i], stage) == 0) return true;
    return false;
}

static void stage_names(StrBuf *sb) {
    for (int i = 0; graph_stages[i]; i++) sb_printf(sb, "%s, ", graph_stages[i]);
    backend_stage_names(sb, ", ");
}

/* emit --emit=dot: the fused kernels for Graphviz; --emit=svg: drawn by it. */
static int emit_picture(const IRGraph *g, const CompileOptions *copt, bool svg, FILE *out, char *err,
                        size_t errlen) {
    if (!svg) return viz_print_dot(g, copt, NULL, out, err, errlen);
    char *dot = NULL, *pic = NULL;
    size_t dot_len = 0, pic_len = 0;
    FILE *mem = open_memstream(&dot, &dot_len);
    if (!mem) {
        snprintf(err, errlen, "out of memory");
        return KILN_ERR_DEVICE;
    }
    KilnStatus st = viz_print_dot(g, copt, NULL, mem, err, errlen);
    fclose(mem);
    if (st == KILN_OK) st = viz_render_svg(dot, dot_len, &pic, &pic_len, err, errlen);
    if (st == KILN_OK) fwrite(pic, 1, pic_len, out);
    free(dot);
    free(pic);
    return st;
}

static int cmd_emit(Options *o) {
    if (!o->emit || (!is_graph_stage(o->emit) && !backend_stage(o->emit, NULL))) {
        StrBuf names = {0};
        stage_names(&names);
        if (!o->emit)
            usage_error("emit needs --emit=STAGE (%s)", names.data);
        else
            usage_error("unknown stage '%s' (stages: %s)", o->emit, names.data);
        sb_free(&names);
        return KILN_ERR_USAGE;
    }
    Compilation c;
    int entry, st;
    char err[1024] = "";
    if (o->out) { /* refused before any work */
        InputFiles in = {0};
        collect_inputs(o, &in);
        st = outfile_check(o->out, OUT_EMIT, &in, o->force, "-o", err, sizeof err);
        input_files_free(&in);
        if (st != KILN_OK) {
            fprintf(stderr, "kiln: %s\n", err);
            return st;
        }
    }
    /* The stage is printed into memory and written out only once it is
     * whole, so a failing emit leaves -o's file as it was. */
    char *text = NULL;
    size_t text_len = 0;
    FILE *out = open_memstream(&text, &text_len);
    if (!out) {
        fprintf(stderr, "kiln: out of memory\n");
        return KILN_ERR_DEVICE;
    }
    IRGraph *g = NULL;
    KilnTensor *inputs = NULL;
    if ((st = open_program(o, &c, &entry)) != KILN_OK) goto done;
    if (strcmp(o->emit, "ast") == 0) {
        ast_print(&c.prog, out);
        goto done;
    }
    /* --in and --weights bind dimensions and mark weights as constants here
     * as in run (the kernels and the picture depend on both) */
    if ((st = load_tensors(o, false)) != KILN_OK) goto done;
    BindRequest req = {.tensors = o->tensors.data,
                       .ntensors = o->tensors.len,
                       .dims = o->dims.data,
                       .ndims = o->dims.len,
                       .allow_symbolic = true};
    /* ir: as type-checked; every later stage after the passes */
    st = driver_bind(&c, entry, &req, strcmp(o->emit, "ir") == 0 ? NULL : &o->copt, &g, &inputs, err, sizeof err);
    if (st != KILN_OK) {
        diag_print(&c.diags, stderr);
        if (err[0]) fprintf(stderr, "kiln: %s\n", err);
        goto done;
    }
    if (strcmp(o->emit, "ir") == 0 || strcmp(o->emit, "opt") == 0) {
        ir_print(g, out);
    } else if (strcmp(o->emit, "dot") == 0 || strcmp(o->emit, "svg") == 0) {
        if ((st = emit_picture(g, &o->copt, strcmp(o->emit, "svg") == 0, out, err, sizeof err)) != KILN_OK)
            fprintf(stderr, "kiln: %s\n", err);
    } else if ((st = require_concrete(g)) != KILN_OK) {
        /* reported */
    } else if (strcmp(o->emit, "kernels") == 0) {
        KProgram *kp = exec_schedule(c.arena, g, &o->copt, err, sizeof err);
        if (kp) kprog_print(kp, g, out);
        else fprintf(stderr, "kiln: %s\n", err), st = KILN_ERR_DEVICE;
        kprog_destroy(kp);
    } else if ((st = exec_emit(g, o->emit, &o->copt, out, err, sizeof err)) != KILN_OK) {
        fprintf(stderr, "kiln: %s\n", err);
    }
done:
    if (g) ir_graph_destroy(g);
    compilation_close(&c);
    if (fclose(out) != 0 && st == KILN_OK) {
        fprintf(stderr, "kiln: out of memory for the output\n");
        st = KILN_ERR_DEVICE;
    }
    if (st == KILN_OK && o->out) {
        const void *part = text;
        if ((st = outfile_write(o->out, 1, &part, &text_len, err, sizeof err)) != KILN_OK)
            fprintf(stderr, "kiln: %s\n", err);
    } else if (st == KILN_OK) {
        fwrite(text, 1, text_len, stdout); /* checked with every other write at exit */
    }
    free(text);
    return st;
}

static int cmd_aot(Options *o) {
    if (!o->target || !o->out) {
        usage_error("aot needs --target=cuda[:sm_XX]|cpu and -o DIR");
        return KILN_ERR_USAGE;
    }
    char terr[512];
    if (!backend_aot_target(o->target, NULL, terr, sizeof terr)) {
        usage_error("%s", terr);
        return KILN_ERR_USAGE;
    }
    OutDir dir = {0};
    Compilation c;
    int entry, st;
    char err[4096] = "";
    IRGraph *g = NULL;
    KilnTensor *inputs = NULL;
    if ((st = open_program(o, &c, &entry)) != KILN_OK) goto done;
    BindRequest req = {.dims = o->dims.data, .ndims = o->dims.len, .allow_symbolic = true};
    st = driver_bind(&c, entry, &req, &o->copt, &g, &inputs, err, sizeof err);
    if (st != KILN_OK) {
        diag_print(&c.diags, stderr);
        if (err[0]) fprintf(stderr, "kiln: %s\n", err);
        goto done;
    }
    if ((st = require_concrete(g)) != KILN_OK) goto done;
    /* the bundle is written whole into a folder beside DIR, then put in place */
    InputFiles in = {0};
    collect_inputs(o, &in);
    st = outdir_begin(&dir, o->out, &in, o->force, "-o", err, sizeof err);
    input_files_free(&in);
    if (st == KILN_OK)
        st = exec_aot(g, o->target, &o->copt, dir.tmp, err, sizeof err);
    if (st == KILN_OK) st = outdir_commit(&dir, err, sizeof err);
    if (st != KILN_OK) fprintf(stderr, "kiln: %s\n", err);
done:
    outdir_end(&dir);
    if (g) ir_graph_destroy(g);
    compilation_close(&c);
    return st;
}

/* kiln import MODEL.onnx -o DIR: the model as kiln source (DIR/NAME.kiln, one
 * statement per ONNX node) and its weights (DIR/NAME.safetensors), NAME being
 * the model file's name without its extension.  The source is parsed and
 * checked before anything is written: what kiln writes, kiln reads. */
static int cmd_import(Options *o) {
    if (!o->out) {
        usage_error("import needs -o DIR");
        return KILN_ERR_USAGE;
    }
    OutDir dir = {0};
    Compilation c;
    int entry, st;
    char err[4096] = "";
    OnnxImport imp = {0};
    StrBuf text = {0};
    KilnTensorList weights = {0};
    if ((st = open_program(o, &c, &entry)) != KILN_OK) goto done;
    if (!c.onnx) {
        usage_error("import takes an ONNX model; %s is a kiln program", o->file);
        st = KILN_ERR_USAGE;
        goto done;
    }
    const char *base = strrchr(o->file, '/') ? strrchr(o->file, '/') + 1 : o->file;
    char *name = arena_strdup(c.arena, base), *dot = strrchr(name, '.');
    if (dot && dot != name) *dot = 0;
    OnnxImportOptions io = {.dims = o->dims.data, .ndims = o->dims.len};
    if (!onnx_import(c.arena, c.onnx, &io, &c.diags, &imp)) {
        diag_print(&c.diags, stderr);
        st = KILN_ERR_INPUT;
        goto done;
    }
    if (!onnx_write_kiln(c.arena, c.onnx, &imp, name, &text, &weights, err, sizeof err)) {
        fprintf(stderr, "kiln: import %s: %s\n", o->file, err);
        st = KILN_ERR_INPUT;
        goto done;
    }
    /* the source must read back (a writer bug is ours, not the user's file) */
    Source *src = ARENA_NEW(c.arena, Source);
    src->path = arena_printf(c.arena, "%s.kiln", name);
    src->text = arena_strndup(c.arena, text.data, text.len);
    src->len = text.len;
    Program prog;
    DiagList check = {0};
    if (!parse_program(c.arena, src, &check, &prog) || !ir_check_program(&prog, &check)) {
        diag_print(&check, stderr);
        diag_clear(&check);
        fprintf(stderr, "kiln: import %s: the source written does not check (a kiln bug)\n", o->file);
        st = KILN_ERR_DEVICE;
        goto done;
    }
    InputFiles in = {0};
    collect_inputs(o, &in);
    st = outdir_begin(&dir, o->out, &in, o->force, "-o", err, sizeof err);
    input_files_free(&in);
    if (st == KILN_OK) {
        StrBuf path = {0};
        sb_printf(&path, "%s/%s.kiln", dir.tmp, name);
        const void *parts[1] = {text.data};
        size_t lens[1] = {text.len};
        st = outfile_write(path.data, 1, parts, lens, err, sizeof err);
        sb_free(&path);
        sb_printf(&path, "%s/%s.safetensors", dir.tmp, name);
        if (st == KILN_OK && !kiln_safetensors_write(path.data, &weights, err, sizeof err)) st = KILN_ERR_DEVICE;
        sb_free(&path);
    }
    if (st == KILN_OK) st = outdir_commit(&dir, err, sizeof err);
    if (st != KILN_OK) fprintf(stderr, "kiln: %s\n", err);
    else fprintf(stderr, "kiln: wrote %s/%s.kiln and %s/%s.safetensors (%d weights)\n", o->out, name, o->out, name,
                 weights.count);
done:
    outdir_end(&dir);
    kiln_tensor_list_free(&weights);
    sb_free(&text);
    onnx_import_free(&imp);
    compilation_close(&c);
    return st;
}

static void json_string(const char *s) {
    putchar('"');
    for (; *s; s++) {
        if (*s == '"' || *s == '\\') printf("\\%c", *s);
        else if ((unsigned char)*s < 0x20) printf("\\u%04x", *s);
        else putchar(*s);
    }
    putchar('"');
}

/* bench --trace: the timeline as Chrome trace-event JSON, written whole. */
static int write_trace(Options *o, Trace *tr, const IRGraph *g, const Backend *be, const BenchReport *rep,
                       double compile_ms) {
    StrBuf meta = {0}, json = {0};
    sb_puts(&meta, "\"graph\": ");
    json_quote(&meta, g->name);
    sb_puts(&meta, ", \"device\": ");
    json_quote(&meta, be->name);
    sb_printf(&meta, ", \"runs\": %d, \"compile_ms\": %.3f, \"run_ms\": %.6f", rep->runs, compile_ms,
              rep->run_ms);
    trace_write_json(tr, meta.data, &json);
    char err[1024];
    const void *part = json.data;
    int st = outfile_write(o->trace_out, 1, &part, &json.len, err, sizeof err);
    if (st != KILN_OK) fprintf(stderr, "kiln: %s\n", err);
    sb_free(&meta);
    sb_free(&json);
    return st;
}

/* bench --report: measures the machine, then writes the page whole. */
static int write_report(Options *o, Trace *tr, const Prepared *pr, const BenchReport *rep,
                        double compile_ms) {
    char err[1024];
    StrBuf cmd = {0};
    for (int i = 0; i < o->argc; i++) sb_printf(&cmd, "%s%s", i ? " " : "", o->argv[i]);
    ReportInput in = {pr->g, pr->exe, rep, compile_ms, tr, &o->copt, o->file, cmd.data, NULL};
    int st = report_write(&in, o->report_out, err, sizeof err);
    if (st != KILN_OK) fprintf(stderr, "kiln: --report %s: %s\n", o->report_out, err);
    sb_free(&cmd);
    return st;
}

/* Checks, before any work, that the files bench writes may be written. */
static int check_bench_outputs(Options *o) {
    if (o->trace_out && o->report_out && strcmp(o->trace_out, o->report_out) == 0) {
        usage_error("--trace and --report name the same file '%s'", o->trace_out);
        return KILN_ERR_USAGE;
    }
    InputFiles in = {0};
    collect_inputs(o, &in);
    char err[1024];
    int st = KILN_OK;
    if (o->trace_out) st = outfile_check(o->trace_out, OUT_TRACE, &in, o->force, "--trace", err, sizeof err);
    if (st == KILN_OK && o->report_out)
        st = outfile_check(o->report_out, OUT_REPORT, &in, o->force, "--report", err, sizeof err);
    input_files_free(&in);
    if (st != KILN_OK) fprintf(stderr, "kiln: %s\n", err);
    return st;
}

static int cmd_bench(Options *o) {
    Prepared pr;
    char err[4096] = "";
    BenchReport rep = {0};
    int runs = o->runs ? o->runs : 20;
    int st = check_bench_outputs(o);
    if (st != KILN_OK) return st;
    Trace *tr = o->trace_out || o->report_out ? trace_new() : NULL;
    o->copt.trace = tr;
    CompileStats cs = {0};
    o->copt.stats = &cs;
    double t0 = now_ms();
    st = prepare(o, &pr, false, err, sizeof err);
    if (st != KILN_OK) goto done;
    double compile_ms = now_ms() - t0;
    trace_span(tr, "compile", t0, t0 + compile_ms, "compile '%s' for %s", pr.g->name, pr.be->name);
    const IRGraph *g = pr.g;
    const Backend *be = pr.be;
    if ((st = exec_bench(pr.exe, pr.inputs, runs, &rep, err, sizeof err)) != KILN_OK) {
        fprintf(stderr, "kiln: %s\n", err);
        goto done;
    }
    if (o->trace_out && (st = write_trace(o, tr, g, be, &rep, compile_ms)) != KILN_OK) goto done;
    if (o->report_out && (st = write_report(o, tr, &pr, &rep, compile_ms)) != KILN_OK) goto done;
    if (o->json) {
        printf("{\"graph\": ");
        json_string(g->name);
        printf(", \"device\": ");
        json_string(be->name);
        printf(
            ", \"compile_ms\": %.3f, \"cache_hits\": %d, \"kernels_distinct\": %d, \"kernels_compiled\": %d, "
            "\"kernels_reused\": %d, \"packed_operands\": %d, \"packed_from_cache\": %d, "
            "\"packed_by_place\": %d, \"program_from_cache\": %d, \"kernels_prebuilt\": %d",
            compile_ms, cs.cache_hits, cs.distinct, cs.compiled, cs.reused, cs.packed, cs.packed_cached,
            cs.packed_by_place, cs.programs_cached, cs.prebuilt);
        printf(", \"run_ms\": %.6f, \"run_cpu_ms\": %.6f, \"runs\": %d, \"kernels\": [", rep.run_ms,
               rep.run_cpu_ms, rep.runs);
        for (int i = 0; i < rep.kernels.len; i++) {
            KernelTiming *k = &rep.kernels.data[i];
            printf("%s{\"name\": ", i ? ", " : "");
            json_string(k->name);
            printf(", \"ms\": %.6f, \"bytes\": %lld, \"flops\": %lld}", k->ms, (long long)k->bytes, (long long)k->flops);
        }
        printf("]}\n");
    } else {
        printf("graph %s on %s: compile %.1f ms", g->name, be->name, compile_ms);
        if (cs.distinct)
            printf(" (%d distinct of %d kernels: %d compiled, %d from the cache)", cs.distinct, cs.kernels,
                   cs.compiled, cs.cache_hits);
        printf(", %d runs (CPU %.2f ms a run, median)\n", rep.runs, rep.run_cpu_ms);
        printf("%-40s %12s %14s %10s %10s\n", "kernel", "median ms", "bytes", "GB/s", "GFLOP/s");
        int64_t tb = 0, tf = 0;
        for (int i = 0; i < rep.kernels.len; i++) {
            KernelTiming *k = &rep.kernels.data[i];
            tb += k->bytes, tf += k->flops;
            printf("%-40s %12.4f %14lld %10.2f %10.2f\n", k->name, k->ms, (long long)k->bytes,
                   k->ms > 0 ? k->bytes / k->ms / 1e6 : 0.0, k->ms > 0 ? k->flops / k->ms / 1e6 : 0.0);
        }
        printf("%-40s %12.4f %14lld %10.2f %10.2f\n", "(whole graph)", rep.run_ms, (long long)tb,
               rep.run_ms > 0 ? tb / rep.run_ms / 1e6 : 0.0, rep.run_ms > 0 ? tf / rep.run_ms / 1e6 : 0.0);
    }
done:
    VEC_FREE(rep.kernels);
    prepared_close(&pr);
    o->copt.trace = NULL;
    trace_free(tr);
    return st;
}

/* kiln env [NAME]: every KILN_NAME='value' line, or one value. */
static int cmd_env(int argc, char **argv) {
    if (argc > 1) {
        usage_error("env takes at most one NAME");
        return KILN_ERR_USAGE;
    }
    StrBuf all = {0};
    cuda_env_describe(&all);
    int st = KILN_OK;
    if (argc == 0) {
        fputs(all.data, stdout);
    } else {
        size_t n = strlen(argv[0]);
        const char *line = all.data;
        while (line && *line && !(strncmp(line, argv[0], n) == 0 && line[n] == '=')) {
            line = strchr(line, '\n');
            if (line) line++;
        }
        if (line && *line) { /* NAME='value' -> value, quotes undone */
            for (const char *p = line + n + 2; *p && *p != '\n'; p++) {
                if (strncmp(p, "'\\''", 4) == 0)
                    putchar('\''), p += 3;
                else if (!(*p == '\'' && p[1] == '\n'))
                    putchar(*p);
            }
            putchar('\n');
        } else {
            usage_error("env knows no '%s' (kiln env lists the names)", argv[0]);
            st = KILN_ERR_USAGE;
        }
    }
    sb_free(&all);
    return st;
}

/* kiln cache [info|clear]: the on-disk cache (runtime/kcache.h) of compiled
 * code, CPU objects and PTX alike. */
static int cmd_cache(int argc, char **argv) {
    const char *what = argc > 0 ? argv[0] : "info";
    if (argc > 1 || (strcmp(what, "info") != 0 && strcmp(what, "clear") != 0)) {
        usage_error("cache takes info or clear, found '%s'", argc > 1 ? argv[1] : what);
        return KILN_ERR_USAGE;
    }
    KCache c;
    kcache_open(&c);
    char err[512];
    int st = KILN_OK;
    StrBuf sb = {0};
    if (!c.dir) {
        printf("cache: off (%s)\n", c.why_off);
    } else if (strcmp(what, "clear") == 0) {
        int64_t removed, bytes;
        if (kcache_clear(&c, &removed, &bytes, err, sizeof err)) {
            fmt_bytes(&sb, bytes);
            printf("cache: %s: removed %lld files (%s)\n", c.dir, (long long)removed, sb.data);
        } else {
            fprintf(stderr, "kiln: %s\n", err);
            st = KILN_ERR_DEVICE;
        }
    } else {
        KCacheInfo info;
        if (kcache_info(&c, &info, err, sizeof err)) {
            fmt_bytes(&sb, info.bytes);
            printf("cache: %s\nentries: %lld (%s)\n", c.dir, (long long)info.entries, sb.data);
            sb.len = 0;
            if (c.max_bytes > 0) fmt_bytes(&sb, c.max_bytes);
            printf("limit: %s (KILN_CACHE_MAX; the least recently used entries go first)%s%s\n",
                   c.max_bytes > 0 ? sb.data : "none", c.limit_note[0] ? ": " : "", c.limit_note);
            for (int k = 0; k < KCK_COUNT; k++) {
                if (!info.kind_entries[k]) continue;
                sb.len = 0;
                fmt_bytes(&sb, info.kind_bytes[k]);
                printf("  %-26s %8lld  %s\n", kcache_kind_name((KCacheKind)k),
                       (long long)info.kind_entries[k], sb.data);
            }
            if (info.temps)
                printf("unfinished writes: %lld (removed by kiln cache clear)\n", (long long)info.temps);
        } else {
            fprintf(stderr, "kiln: %s\n", err);
            st = KILN_ERR_DEVICE;
        }
    }
    sb_free(&sb);
    kcache_close(&c);
    return st;
}

static int kiln_main(int argc, char **argv) {
    if (argc < 2) {
        if (isatty(0) && isatty(1)) return repl_main(NULL, false);
        print_help(NULL);
        return KILN_ERR_USAGE;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--version") == 0 || strcmp(cmd, "version") == 0) {
        printf("kiln %s\n", KILN_VERSION);
        return 0;
    }
    if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
        print_help(argc > 2 ? argv[2] : NULL);
        return 0;
    }
    Options o = {.command = cmd, .argc = argc, .argv = argv};
    int st;
    static const struct {
        const char *name;
        int (*fn)(Options *);
    } commands[] = {{"check", cmd_check}, {"run", cmd_run}, {"emit", cmd_emit}, {"aot", cmd_aot}, {"bench", cmd_bench},
                    {"import", cmd_import}};
    int which = -1;
    for (int i = 0; i < (int)(sizeof commands / sizeof commands[0]); i++)
        if (strcmp(cmd, commands[i].name) == 0) which = i;
    if (which >= 0) {
        st = parse_options(argc, argv, 2, &o);
        if (st == KILN_OK) st = commands[which].fn(&o);
    } else if (strcmp(cmd, "env") == 0) {
        st = cmd_env(argc - 2, argv + 2);
    } else if (strcmp(cmd, "cache") == 0) {
        st = cmd_cache(argc - 2, argv + 2);
    } else if (strcmp(cmd, "repl") == 0) { /* kiln repl [--device=NAME] [--plain] */
        const char *device = NULL, *v;
        bool plain = false;
        st = KILN_OK;
        for (int i = 2; i < argc && st == KILN_OK; i++) {
            if (strcmp(argv[i], "--plain") == 0) plain = true;
            else if (is_opt(argv[i], "--device") && (v = opt_value(argc, argv, &i, "--device"))) device = v;
            else usage_error("repl takes --device=NAME and --plain, found '%s'", argv[i]), st = KILN_ERR_USAGE;
        }
        if (st == KILN_OK) st = repl_main(device, plain);
    } else {
        usage_error("unknown command '%s'", cmd);
        st = KILN_ERR_USAGE;
    }
    free_options(&o);
    return st;
}

int main(int argc, char **argv) {
    stdio_guard_begin();
    return stdio_guard_end(kiln_main(argc, argv));
}
