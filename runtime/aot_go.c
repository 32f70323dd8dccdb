/* aot_go.c - NAME.go, the Go wrapper that `kiln aot` writes beside NAME.h
 * (for --target=cpu and --target=cuda), so that a Go service can ship a
 * compiled graph without the compiler or the kiln library.
 *
 * The bundle folder is a Go package (package NAME): cgo links NAME.o (cpu)
 * or compiles NAME.c against the CUDA driver API (cuda), and the wrapper
 * declares
 *     func Run(x []float32, ...) (out0 []float32, ..., err error)
 *     func RunInto(x []float32, ..., out0 []float32, ...) error
 * with one slice per parameter and per result, in the graph's order, each
 * of the element type of its dtype ([]uint16 for f16 and bf16, []bool for
 * bool) and of exactly its element count (checked: a wrong length is an
 * error, never a read past the end).  The slices are passed to NAME_run as
 * separate arguments, each read or written only during the call (cgo's
 * pointer rules).  Shapes are in the Params and Results variables.  NAME_run
 * keeps no state between calls, so Run is safe from many goroutines. */
#include "runtime/backend.h"
#include "runtime/outfile.h"

#include <stdlib.h>
#include <string.h>

static const char *go_type(KilnDType dt) {
    switch (dt) {
    case KILN_F32: return "float32";
    case KILN_F64: return "float64";
    case KILN_F16:
    case KILN_BF16: return "uint16";
    case KILN_I32: return "int32";
    case KILN_I64: return "int64";
    case KILN_BOOL: return "bool";
    case KILN_NUM_DTYPES: break;
    }
    return "byte";
}

/* cgo's name for the C element type of aot_c_type. */
static const char *cgo_type(KilnDType dt) {
    switch (dt) {
    case KILN_F32: return "C.float";
    case KILN_F64: return "C.double";
    case KILN_F16:
    case KILN_BF16: return "C.uint16_t";
    case KILN_I32: return "C.int32_t";
    case KILN_I64: return "C.int64_t";
    default: return "C.uint8_t";
    }
}

/* Go's keywords and the predeclared names the wrapper uses or that would
 * shadow something a reader expects. */
static bool go_reserved(const char *s) {
    static const char *const words[] = {
        "break", "case",    "chan",    "const",  "continue", "default", "defer",     "else",  "fallthrough",
        "for",   "func",    "go",      "goto",   "if",       "import",  "interface", "map",   "package",
        "range", "return",  "select",  "struct", "switch",   "type",    "var",       "bool",  "byte",
        "error", "float32", "float64", "int",    "int32",    "int64",   "uint16",    "uint8", "string",
        "len",   "make",    "nil",     "true",   "false",    "fmt",     "unsafe",    "C",     "err",
        "main",  "Run",     "RunInto", "Params", "Results",  "Tensor",  NULL};
    for (int i = 0; words[i]; i++)
        if (strcmp(s, words[i]) == 0) return true;
    return false;
}

/* `name` as a Go identifier that is not reserved, not k_* (the wrapper's
 * locals) and not out<N> (the results); `fallback` when nothing usable is
 * left. */
static char *go_ident(const char *name, const char *fallback) {
    StrBuf sb = {0};
    for (const char *p = name ? name : ""; *p; p++) {
        char c = *p;
        bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
        sb_printf(&sb, "%c", ok ? c : '_');
    }
    if (!sb.data || !sb.data[0] || (sb.data[0] >= '0' && sb.data[0] <= '9') || strcmp(sb.data, "_") == 0) {
        char *rest = sb.data ? xstrdup(sb.data) : xstrdup("");
        sb.len = 0;
        sb_printf(&sb, "%s%s", fallback, rest[0] ? "_" : "");
        sb_puts(&sb, rest);
        free(rest);
    }
    if (go_reserved(sb.data) || strncmp(sb.data, "k_", 2) == 0 || strncmp(sb.data, "out", 3) == 0)
        sb_puts(&sb, "_");
    return sb.data;
}

/* The parameters' Go names: unique, in order. */
static char **param_names(const IRGraph *g) {
    char **names = xcalloc((size_t)g->params.len + 1, sizeof *names);
    for (int i = 0; i < g->params.len; i++) {
        StrBuf fb = {0};
        sb_printf(&fb, "in%d", i);
        names[i] = go_ident(ir_node(g, g->params.data[i])->name, fb.data);
        sb_free(&fb);
        for (int j = 0; j < i; j++) {
            if (strcmp(names[i], names[j]) == 0) {
                StrBuf u = {0};
                sb_printf(&u, "%s_%d", names[i], i);
                free(names[i]);
                names[i] = u.data;
                j = -1; /* check the new name against all again */
            }
        }
    }
    return names;
}

static void shape_list(const Node *n, StrBuf *sb) {
    sb_puts(sb, "[]int64{");
    for (int k = 0; k < n->rank; k++) sb_printf(sb, "%s%lld", k ? ", " : "", (long long)n->shape[k]);
    sb_puts(sb, "}");
}

static void info_table(const IRGraph *g, const char *var, const int *ids, int count, char **names,
                       StrBuf *sb) {
    sb_printf(sb, "var %s = []Tensor{\n", var);
    for (int i = 0; i < count; i++) {
        const Node *n = ir_node(g, ids[i]);
        StrBuf nm = {0};
        if (names)
            sb_puts(&nm, n->name ? n->name : names[i]);
        else
            sb_printf(&nm, "out%d", i);
        sb_printf(sb, "\t{Name: \"");
        for (const char *p = nm.data; *p; p++) { /* a Go string literal */
            if (*p == '"' || *p == '\\')
                sb_printf(sb, "\\%c", *p);
            else if ((unsigned char)*p < 0x20 || (unsigned char)*p >= 0x7f)
                sb_printf(sb, "\\x%02x", (unsigned char)*p);
            else
                sb_printf(sb, "%c", *p);
        }
        char *type = ir_type_str(g, n->dtype, n->rank, n->shape);
        sb_printf(sb, "\", DType: \"%s\", Shape: ", kiln_dtype_name(n->dtype));
        shape_list(n, sb);
        sb_printf(sb, ", Type: \"%s\"},\n", type);
        free(type);
        sb_free(&nm);
    }
    sb_puts(sb, "}\n\n");
}

/* "x []float32, w []float32, out0 []float32" (params, results or both). */
static void go_args(const IRGraph *g, char **names, bool params, bool results, StrBuf *sb) {
    int n = 0;
    for (int i = 0; params && i < g->params.len; i++, n++)
        sb_printf(sb, "%s%s []%s", n ? ", " : "", names[i], go_type(ir_node(g, g->params.data[i])->dtype));
    for (int i = 0; results && i < g->results.len; i++, n++)
        sb_printf(sb, "%sout%d []%s", n ? ", " : "", i, go_type(ir_node(g, g->results.data[i])->dtype));
}

KilnStatus aot_go_write(const IRGraph *g, const char *cname, const AotGoTarget *t, const char *dir, char *err,
                        size_t errlen) {
    char **names = param_names(g);
    char *pkg = go_ident(cname, "graph");
    int np = g->params.len, nr = g->results.len;
    StrBuf s = {0};
    sb_printf(&s, "// Code generated by kiln %s (kiln aot --target=%s); DO NOT EDIT.\n\n", KILN_VERSION,
              t->target);
    sb_printf(&s, "// Package %s runs graph '%s', compiled ahead of time by kiln for %s.\n", pkg, g->name,
              t->what);
    sb_printf(&s, "// Copy this folder into a Go module and import it.  It needs %s,\n", t->needs);
    sb_puts(&s, "// not kiln nor its library.  Run and RunInto may be called from many goroutines\n"
                "// at once; each call allocates and frees its own temporaries.\n");
    sb_printf(&s, "package %s\n\n/*\n%s#include \"%s.h\"\n", pkg, t->cgo, cname);
    if (t->cuda)
        sb_puts(
            &s,
            "#include <cuda.h>\n\n"
            "static const char *k_error_name(int r) {\n"
            "    const char *s = NULL;\n"
            "    return cuGetErrorName((CUresult)r, &s) == CUDA_SUCCESS && s ? s : \"unknown CUresult\";\n"
            "}\n");
    sb_puts(&s, "*/\nimport \"C\"\n\nimport (\n\t\"fmt\"\n\t\"unsafe\"\n)\n\n");
    sb_puts(&s, "// Tensor describes a parameter or a result: its dtype and shape.  Data is\n"
                "// passed as a flat slice in C order: []float32 for f32, []float64 for f64,\n"
                "// []int32, []int64, []bool, and []uint16 (the bit patterns) for f16 and bf16.\n"
                "type Tensor struct {\n\tName  string\n\tDType string\n\tShape []int64\n\tType  string // "
                "\"f32[2, 784]\"\n}\n\n");
    sb_puts(&s, "// Params are Run's inputs, in order.\n");
    info_table(g, "Params", g->params.data, np, names, &s);
    sb_puts(&s, "// Results are what Run returns, in order.\n");
    info_table(g, "Results", g->results.data, nr, NULL, &s);
    /* Run */
    sb_puts(&s, "// Run runs the graph once and returns its results in new slices.\nfunc Run(");
    go_args(g, names, true, false, &s);
    sb_puts(&s, ") (");
    go_args(g, names, false, true, &s);
    sb_printf(&s, "%serr error) {\n", nr ? ", " : "");
    for (int i = 0; i < nr; i++) {
        const Node *n = ir_node(g, g->results.data[i]);
        sb_printf(&s, "\tout%d = make([]%s, %lld)\n", i, go_type(n->dtype), (long long)ir_numel(n));
    }
    sb_puts(&s, "\terr = RunInto(");
    for (int i = 0; i < np + nr; i++)
        if (i < np)
            sb_printf(&s, "%s%s", i ? ", " : "", names[i]);
        else
            sb_printf(&s, "%sout%d", i ? ", " : "", i - np);
    sb_puts(&s, ")\n\treturn\n}\n\n");
    /* RunInto */
    sb_puts(&s, "// RunInto runs the graph once, writing the results into the slices given.\nfunc RunInto(");
    go_args(g, names, true, true, &s);
    sb_puts(&s, ") error {\n");
    sb_puts(&s, "\tk_lens := []int{");
    for (int i = 0; i < np; i++) sb_printf(&s, "%slen(%s)", i ? ", " : "", names[i]);
    for (int i = 0; i < nr; i++) sb_printf(&s, "%slen(out%d)", np + i ? ", " : "", i);
    sb_puts(&s, "}\n\tk_all := append(append([]Tensor{}, Params...), Results...)\n"
                "\tfor k_i, k_n := range k_lens {\n"
                "\t\tif k_t := k_all[k_i]; k_n != k_numel(k_t.Shape) {\n");
    sb_printf(&s,
              "\t\t\treturn fmt.Errorf(\"%s: %%s is %%s: it takes %%d elements, the slice has %%d\", "
              "k_t.Name, k_t.Type, k_numel(k_t.Shape), k_n)\n\t\t}\n\t}\n",
              pkg);
    sb_printf(&s, "\tk_r := C.%s_run(", cname);
    for (int i = 0; i < np + nr; i++) {
        const Node *n = ir_node(g, i < np ? g->params.data[i] : g->results.data[i - np]);
        StrBuf arg = {0};
        if (i < np)
            sb_puts(&arg, names[i]);
        else
            sb_printf(&arg, "out%d", i - np);
        sb_printf(&s, "%s(*%s)(k_ptr_%s(%s))", i ? ", " : "", cgo_type(n->dtype), go_type(n->dtype),
                  arg.data);
        sb_free(&arg);
    }
    sb_puts(&s, ")\n\tif k_r != 0 {\n");
    if (t->cuda)
        sb_printf(
            &s,
            "\t\treturn fmt.Errorf(\"%s_run failed: %%s (CUresult %%d)\", C.GoString(C.k_error_name(k_r)), "
            "int(k_r))\n",
            cname);
    else
        sb_printf(
            &s,
            "\t\treturn fmt.Errorf(\"%s_run failed (%%d): out of memory for the intermediates\", int(k_r))\n",
            cname);
    sb_puts(&s, "\t}\n\treturn nil\n}\n\n");
    sb_puts(&s,
            "func k_numel(shape []int64) int {\n\tn := 1\n\tfor _, d := range shape {\n\t\tn *= int(d)\n\t}\n"
            "\treturn n\n}\n\n");
    sb_puts(&s, "// k_ptr_T: a slice's first element, for the duration of the C call (nil when\n"
                "// empty): a pointer to Go memory that holds no Go pointers, as cgo requires.\n");
    bool used[KILN_NUM_DTYPES] = {false};
    for (int i = 0; i < np + nr; i++) {
        KilnDType dt = ir_node(g, i < np ? g->params.data[i] : g->results.data[i - np])->dtype;
        if (dt == KILN_BF16) dt = KILN_F16; /* the same Go type */
        if (used[dt]) continue;
        used[dt] = true;
        sb_printf(&s,
                  "func k_ptr_%s(s []%s) unsafe.Pointer {\n\tif len(s) == 0 {\n\t\treturn nil\n\t}\n"
                  "\treturn unsafe.Pointer(&s[0])\n}\n\n",
                  go_type(dt), go_type(dt));
    }
    if (s.len >= 2 && s.data[s.len - 2] == '\n') s.data[--s.len] = 0; /* gofmt: one newline at the end */
    StrBuf path = {0};
    sb_printf(&path, "%s/%s.go", dir, cname);
    const void *part = s.data;
    KilnStatus st = outfile_write(path.data, 1, &part, &s.len, err, errlen);
    sb_free(&path);
    sb_free(&s);
    for (int i = 0; i < np; i++) free(names[i]);
    free(names);
    free(pkg);
    return st;
}
