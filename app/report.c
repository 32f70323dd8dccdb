/* report.c - the bench report page (contract in report.h).
 *
 * The page, top to bottom: what was run and where; this machine's limits as
 * kiln measured them a moment ago, and how; the roofline chart (log-log:
 * arithmetic intensity in FLOP per byte against achieved GFLOP/s, under the
 * roof min(peak, bandwidth x intensity)), one dot per kernel sized by its
 * share of the run; the per-kernel table; the timeline of the compilation
 * (host threads) and of the median run (the device's launches); the fused
 * kernels as Graphviz draws them (codegen/dot.c), labelled with their times.
 * Everything is inline: the page opens from a file with no network.
 *
 * Numbers: a kernel's bytes and FLOPs are the scheduler's counts (Kernel.bytes,
 * .flops: each input read once, each output written once); its time is the
 * bench median.  The limits are what kiln's own generated code achieves on
 * simple kernels, a practical roof rather than a datasheet's. */
#include "app/report.h"

#include "app/viz.h"
#include "ir/make.h"
#include "runtime/outfile.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------------ measuring */

/* A graph of one f32 parameter x[n], built by `body` (the result's id). */
typedef int (*BodyFn)(IRMaker *m, int x, int64_t n);

/* The shortest launch of a timed run (not the warm-up) in a bench's trace. */
static double best_launch(Trace *tr) {
    TraceSpanView *s;
    int n = trace_spans(tr, &s), run;
    double best = INFINITY;
    for (int i = 0; i < n; i++)
        if (strcmp(s[i].cat, "kernel") == 0 && s[i].args && sscanf(s[i].args, "{\"run\": %d", &run) == 1 &&
            run > 0 && s[i].t1 - s[i].t0 < best)
            best = s[i].t1 - s[i].t0;
    free(s);
    return best;
}

/* Compiles g on be (no passes: the kernels are as written), runs it `runs`
 * times after a warm-up and gives the best time of its kernel: a machine's
 * limit is what it does when nothing else gets in the way. */
static KilnStatus time_graph(const Backend *be, const CompileOptions *opt, IRGraph *g, int runs, double *ms,
                             char *err, size_t errlen) {
    CompileOptions o = *opt;
    Trace *tr = trace_new(); /* every launch's time, for the best one */
    o.trace = tr;
    o.remarks = false;
    o.verbose = false;
    Executable *x = exec_compile(be, g, &o, err, errlen);
    if (!x) {
        trace_free(tr);
        return KILN_ERR_DEVICE;
    }
    int np = g->params.len;
    KilnTensor *in = xcalloc((size_t)np + 1, sizeof *in);
    KilnStatus st = KILN_OK;
    for (int i = 0; i < np && st == KILN_OK; i++) {
        const Node *p = ir_node(g, g->params.data[i]);
        if (!kiln_tensor_init(&in[i], p->dtype, p->rank, p->shape)) { /* zeros: timing needs no values */
            snprintf(err, errlen, "out of host memory for the measurement (%lld elements)",
                     (long long)ir_numel(p));
            st = KILN_ERR_DEVICE;
        }
    }
    BenchReport rep = {0};
    if (st == KILN_OK) st = exec_bench(x, in, runs, &rep, err, errlen);
    *ms = best_launch(tr);
    if (*ms == INFINITY) *ms = rep.run_ms; /* a device without kernels */
    VEC_FREE(rep.kernels);
    for (int i = 0; i < np; i++) kiln_tensor_free(&in[i]);
    free(in);
    exec_destroy(x);
    trace_free(tr);
    return st;
}

static IRGraph *vector_graph(Arena *a, const char *name, int64_t n, BodyFn body) {
    IRGraph *g = ir_graph_new(a, name);
    DiagList diags = {0};
    IRMaker m;
    mk_init(&m, g, &diags);
    Dim shape[1] = {n};
    int x = mk_param(&m, "x", KILN_F32, 1, shape, (Loc){0});
    mk_result(&m, body(&m, x, n));
    mk_free(&m);
    diag_clear(&diags);
    return g;
}

static int plus_one(IRMaker *m, int x, int64_t n) {
    (void)n;
    return mk_binary(m, OP_ADD, x, mk_const(m, 1, KILN_F32, (Loc){0}), (Loc){0});
}

enum { FMA_DEPTH = 64 }; /* multiply-adds per element of the chain */

static int fma_chain(IRMaker *m, int x, int64_t n) {
    (void)n;
    int a = mk_const(m, 1.0001, KILN_F32, (Loc){0}), b = mk_const(m, 1e-4, KILN_F32, (Loc){0});
    for (int i = 0; i < FMA_DEPTH; i++)
        x = mk_binary(m, OP_ADD, mk_binary(m, OP_MUL, x, a, (Loc){0}), b, (Loc){0});
    return x;
}

static IRGraph *matmul_graph(Arena *a, int64_t n) {
    IRGraph *g = ir_graph_new(a, "kiln_peak_matmul");
    DiagList diags = {0};
    IRMaker m;
    mk_init(&m, g, &diags);
    Dim shape[2] = {n, n};
    int x = mk_param(&m, "a", KILN_F32, 2, shape, (Loc){0});
    int y = mk_param(&m, "b", KILN_F32, 2, shape, (Loc){0});
    mk_result(&m, mk_matmul(&m, x, y, (Loc){0}));
    mk_free(&m);
    diag_clear(&diags);
    return g;
}

/* Long enough to time a kernel well; the largest sizes tried. */
enum { ENOUGH_MS = 10, MAX_VECTOR = 64 << 20, MAX_MATMUL = 4096, RUNS = 5 };

KilnStatus report_measure(const Backend *be, const CompileOptions *opt, MachineLimits *out, char *err,
                          size_t errlen) {
    memset(out, 0, sizeof *out);
    /* a host device's machine is the host CPU, best measured through LLVM */
    const Backend *cpu = NULL;
    char why[256];
    if (!(be->caps & BK_ACCELERATOR) && backend_open("cpu", &cpu, why, sizeof why) == KILN_OK) be = cpu;
    out->device = be->name;
    Arena *a = arena_new();
    KilnStatus st = KILN_OK;
    double ms = 0;
    int64_t n = 16 << 20; /* 64 MiB each way: far beyond the caches */
    for (;; n *= 4) {     /* bandwidth: y = x + 1 reads 4n bytes and writes 4n */
        IRGraph *g = vector_graph(a, "kiln_peak_bandwidth", n, plus_one);
        st = time_graph(be, opt, g, RUNS, &ms, err, errlen);
        ir_graph_destroy(g);
        if (st != KILN_OK || ms >= ENOUGH_MS || n * 4 > MAX_VECTOR) break;
    }
    if (st == KILN_OK) {
        out->gbps = ms > 0 ? 8.0 * (double)n / ms / 1e6 : 0;
        snprintf(out->how_bw, sizeof out->how_bw,
                 "y = x + 1 over %lld f32 (%lld MiB read, as much written): best of %d runs, %.3g ms, on %s",
                 (long long)n, (long long)(n * 4 >> 20), RUNS, ms, be->name);
    }
    int64_t d = 512;
    double mm_gflops = 0, mm_ms = 0;
    for (; st == KILN_OK; d *= 2) { /* peak: an f32 matmul d x d x d */
        IRGraph *g = matmul_graph(a, d);
        st = time_graph(be, opt, g, RUNS, &mm_ms, err, errlen);
        ir_graph_destroy(g);
        if (st != KILN_OK || mm_ms >= ENOUGH_MS || d * 2 > MAX_MATMUL) break;
    }
    if (st == KILN_OK) mm_gflops = mm_ms > 0 ? 2.0 * (double)d * (double)d * (double)d / mm_ms / 1e6 : 0;
    int64_t fn = 2 << 20;
    double fma_ms = 0, fma_gflops = 0;
    for (; st == KILN_OK; fn *= 4) { /* and a chain of multiply-adds, FMA_DEPTH per element */
        IRGraph *g = vector_graph(a, "kiln_peak_fma", fn, fma_chain);
        st = time_graph(be, opt, g, RUNS, &fma_ms, err, errlen);
        ir_graph_destroy(g);
        if (st != KILN_OK || fma_ms >= ENOUGH_MS || fn * 4 > MAX_VECTOR) break;
    }
    if (st == KILN_OK) {
        fma_gflops = fma_ms > 0 ? 2.0 * FMA_DEPTH * (double)fn / fma_ms / 1e6 : 0;
        out->gflops = mm_gflops > fma_gflops ? mm_gflops : fma_gflops;
        snprintf(out->how_peak, sizeof out->how_peak,
                 "the better of an f32 matmul %lld x %lld x %lld (%.4g GFLOP/s) and %d multiply-adds on each "
                 "of %lld f32 (%.4g GFLOP/s), on %s",
                 (long long)d, (long long)d, (long long)d, mm_gflops, FMA_DEPTH, (long long)fn, fma_gflops,
                 be->name);
    }
    arena_free(a);
    if (st != KILN_OK) {
        char inner[1024];
        snprintf(inner, sizeof inner, "%s", err);
        snprintf(err, errlen, "measuring this machine's limits on %s: %s", be->name, inner);
    }
    return st;
}

/* ------------------------------------------------------------ page helpers */

static void html(StrBuf *sb, const char *s) {
    for (; *s; s++) {
        switch (*s) {
        case '<': sb_puts(sb, "&lt;"); break;
        case '>': sb_puts(sb, "&gt;"); break;
        case '&': sb_puts(sb, "&amp;"); break;
        case '"': sb_puts(sb, "&quot;"); break;
        default: sb_printf(sb, "%c", *s);
        }
    }
}

/* A number for people: 3 significant digits, thousands with k/M/G. */
static void num(StrBuf *sb, double v) {
    static const char *const suffix[] = {"", "k", "M", "G", "T", "P"};
    int u = 0;
    while (fabs(v) >= 1000 && u < 5) v /= 1000, u++;
    sb_printf(sb, "%.3g%s", v, suffix[u]);
}

/* The stroke colour of a kernel kind on the page (darker than the dot fill). */
static const char *kind_ink(KernelKind k) {
    switch (k) {
    case KK_MATMUL: return "#b45309";
    case KK_CONV: return "#c2410c";
    case KK_ROW: return "#0369a1";
    case KK_REDUCE: return "#6d28d9";
    case KK_POOL: return "#be185d";
    case KK_COPY: return "#475569";
    case KK_ELEMENTWISE: break;
    }
    return "#4d7c0f";
}

static const char *cpu_model(char *buf, size_t n) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    snprintf(buf, n, "unknown CPU");
    if (!f) return buf;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) != 0) continue;
        const char *v = strchr(line, ':');
        if (!v) continue;
        v++;
        while (*v == ' ') v++;
        snprintf(buf, n, "%.*s", (int)strcspn(v, "\n"), v);
        break;
    }
    fclose(f);
    return buf;
}

static const char *const STYLE =
    "body{font:14px/1.45 system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;color:#0f172a;"
    "margin:24px auto;max-width:1100px;padding:0 16px}"
    "h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 8px;border-bottom:1px solid #e2e8f0}"
    ".meta{color:#475569;margin:0}.note{color:#475569;font-size:13px}"
    "table{border-collapse:collapse;font-variant-numeric:tabular-nums;font-size:13px}"
    "th,td{padding:3px 8px;border-bottom:1px solid #e2e8f0;text-align:right;white-space:nowrap}"
    "td.how{white-space:normal}"
    "th{background:#f8fafc;position:sticky;top:0}td.l,th.l{text-align:left}"
    ".kind{display:inline-block;width:9px;height:9px;border-radius:50%;margin-right:5px}"
    ".cards{display:flex;gap:12px;flex-wrap:wrap}.card{border:1px solid #e2e8f0;border-radius:8px;"
    "padding:8px 14px;min-width:150px}.card b{display:block;font-size:20px}"
    "svg text{font-family:system-ui,Helvetica,Arial,sans-serif}.graph svg{max-width:100%;height:auto}";

/* ------------------------------------------------------------ the roofline */

typedef struct {
    const ReportInput *in;
    const KProgram *kp;
    int nk;
} Page;

static double kernel_gflops(const KernelTiming *k) { return k->ms > 0 ? k->flops / k->ms / 1e6 : 0; }
static double kernel_gbps(const KernelTiming *k) { return k->ms > 0 ? k->bytes / k->ms / 1e6 : 0; }
static double kernel_ai(const KernelTiming *k) {
    return k->bytes > 0 ? (double)k->flops / (double)k->bytes : 0;
}

static KernelKind kind_of(const Page *p, int k) {
    return p->kp && k < p->kp->kernels.len ? p->kp->kernels.data[k].kind : KK_ELEMENTWISE;
}

enum { RW = 760, RH = 420, ML = 64, MR = 24, MT = 20, MB = 48 }; /* the chart and its margins */

static void roofline(StrBuf *sb, const Page *p) {
    const MachineLimits *lim = p->in->limits;
    const BenchReport *b = p->in->bench;
    double ridge = lim->gbps > 0 ? lim->gflops / lim->gbps : 1;
    double xlo = ridge / 64, xhi = ridge * 16, ylo = lim->gflops / 1e4, yhi = lim->gflops * 3;
    int placed = 0;
    for (int k = 0; k < b->kernels.len; k++) {
        const KernelTiming *t = &b->kernels.data[k];
        if (t->flops <= 0 || t->ms <= 0) continue;
        placed++;
        double ai = kernel_ai(t), gf = kernel_gflops(t);
        if (ai < xlo * 2) xlo = ai / 2;
        if (ai > xhi / 2) xhi = ai * 2;
        if (gf < ylo * 2) ylo = gf / 2;
        if (gf > yhi / 2) yhi = gf * 2; /* a noisy measurement can leave a kernel above the roof */
    }
    double lx0 = floor(log10(xlo)), lx1 = ceil(log10(xhi)), ly0 = floor(log10(ylo)), ly1 = ceil(log10(yhi));
#define XP(v) (ML + (log10(v) - lx0) / (lx1 - lx0) * (RW - ML - MR))
#define YP(v) (RH - MB - (log10(v) - ly0) / (ly1 - ly0) * (RH - MT - MB))
    sb_printf(sb,
              "<svg class=\"roofline\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\" role=\"img\" "
              "aria-label=\"roofline chart\">\n",
              RW, RH, RW, RH);
    sb_printf(sb, "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"#fff\" stroke=\"#cbd5e1\"/>\n",
              ML, MT, RW - ML - MR, RH - MT - MB);
    for (double e = lx0; e <= lx1; e++) {
        double x = XP(pow(10, e));
        sb_printf(sb, "<line x1=\"%.1f\" y1=\"%d\" x2=\"%.1f\" y2=\"%d\" stroke=\"#eef2f6\"/>", x, MT, x,
                  RH - MB);
        sb_printf(sb, "<text x=\"%.1f\" y=\"%d\" font-size=\"11\" text-anchor=\"middle\" fill=\"#475569\">",
                  x, RH - MB + 16);
        num(sb, pow(10, e));
        sb_puts(sb, "</text>\n");
    }
    for (double e = ly0; e <= ly1; e++) {
        double y = YP(pow(10, e));
        sb_printf(sb, "<line x1=\"%d\" y1=\"%.1f\" x2=\"%d\" y2=\"%.1f\" stroke=\"#eef2f6\"/>", ML, y,
                  RW - MR, y);
        sb_printf(sb, "<text x=\"%d\" y=\"%.1f\" font-size=\"11\" text-anchor=\"end\" fill=\"#475569\">",
                  ML - 6, y + 4);
        num(sb, pow(10, e));
        sb_puts(sb, "</text>\n");
    }
    sb_printf(sb,
              "<text x=\"%d\" y=\"%d\" font-size=\"12\" text-anchor=\"middle\">arithmetic intensity "
              "(FLOP per byte moved)</text>\n",
              (RW + ML - MR) / 2, RH - 10);
    sb_printf(sb,
              "<text transform=\"translate(16 %d) rotate(-90)\" font-size=\"12\" text-anchor=\"middle\">"
              "achieved GFLOP/s</text>\n",
              (RH - MB + MT) / 2);
    /* the roof: bandwidth x intensity up to the ridge, then the peak */
    double x0 = pow(10, lx0), x1 = pow(10, lx1);
    double rx = ridge < x0 ? x0 : ridge > x1 ? x1 : ridge;
    sb_printf(sb,
              "<polyline fill=\"none\" stroke=\"#dc2626\" stroke-width=\"2\" points=\"%.1f,%.1f %.1f,%.1f "
              "%.1f,%.1f\"/>\n",
              XP(x0), YP(fmax(lim->gbps * x0, pow(10, ly0))), XP(rx), YP(fmin(lim->gbps * rx, lim->gflops)),
              XP(x1), YP(lim->gflops));
    sb_printf(sb, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#dc2626\" text-anchor=\"end\">peak ",
              XP(x1) - 4, YP(lim->gflops) - 6);
    num(sb, lim->gflops);
    sb_puts(sb, " GFLOP/s</text>\n");
    sb_printf(sb, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"11\" fill=\"#dc2626\">", XP(x0) + 6,
              YP(fmax(lim->gbps * x0, pow(10, ly0))) - 8);
    num(sb, lim->gbps);
    sb_printf(sb, " GB/s</text>\n");
    /* the kernels, biggest first so that small ones stay visible on top */
    int *order = xcalloc((size_t)b->kernels.len + 1, sizeof(int));
    for (int k = 0; k < b->kernels.len; k++) order[k] = k;
    for (int i = 1; i < b->kernels.len; i++)
        for (int j = i; j > 0 && b->kernels.data[order[j]].ms > b->kernels.data[order[j - 1]].ms; j--) {
            int t = order[j];
            order[j] = order[j - 1], order[j - 1] = t;
        }
    for (int i = 0; i < b->kernels.len; i++) {
        int k = order[i];
        const KernelTiming *t = &b->kernels.data[k];
        if (t->flops <= 0 || t->ms <= 0) continue;
        double share = p->in->bench->run_ms > 0 ? t->ms / p->in->bench->run_ms : 0;
        double r = 4 + 14 * sqrt(share > 1 ? 1 : share);
        double cx = XP(kernel_ai(t)), cy = YP(kernel_gflops(t));
        sb_printf(sb, "<g><title>");
        html(sb, t->name);
        sb_printf(sb, ": %.4g ms, %.3g FLOP/byte, %.4g GFLOP/s, %.4g GB/s</title>", t->ms, kernel_ai(t),
                  kernel_gflops(t), kernel_gbps(t));
        sb_printf(
            sb,
            "<circle cx=\"%.1f\" cy=\"%.1f\" r=\"%.1f\" fill=\"%s\" fill-opacity=\"0.55\" stroke=\"%s\"/>",
            cx, cy, r, kind_ink(kind_of(p, k)), kind_ink(kind_of(p, k)));
        sb_printf(sb, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"10\" text-anchor=\"middle\">%d</text></g>\n",
                  cx, cy - r - 2, k);
    }
    free(order);
    sb_puts(sb, "</svg>\n");
#undef XP
#undef YP
    int unplaced = 0;
    for (int k = 0; k < b->kernels.len; k++)
        unplaced += b->kernels.data[k].flops <= 0 || b->kernels.data[k].ms <= 0;
    sb_printf(sb,
              "<p class=\"note\">Each dot is a kernel (its number in the table), its area the kernel's share "
              "of the run. The red roof is min(peak, bandwidth &times; intensity): a dot under the slope is "
              "bound by memory, under the flat part by arithmetic; the ridge is at %.3g FLOP/byte. The "
              "bandwidth is "
              "the main memory's: a kernel whose data stays in the caches can run above the slope.",
              ridge);
    if (unplaced)
        sb_printf(sb, " %d kernel%s doing no arithmetic (copies) %s not on the chart.", unplaced,
                  unplaced == 1 ? "" : "s", unplaced == 1 ? "is" : "are");
    sb_printf(sb, " %d placed.</p>\n", placed);
}

/* ------------------------------------------------------------ the table */

static void kernel_table(StrBuf *sb, const Page *p) {
    const MachineLimits *lim = p->in->limits;
    const BenchReport *b = p->in->bench;
    sb_puts(sb,
            "<table class=\"kernels\">\n<tr><th>#</th><th class=\"l\">kernel</th><th class=\"l\">kind</th>"
            "<th>median ms</th><th>share</th><th>bytes</th><th>FLOPs</th><th>FLOP/byte</th><th>GB/s</th>"
            "<th>GFLOP/s</th><th class=\"l\">bound by</th><th>of the roof</th></tr>\n");
    int64_t tb = 0, tf = 0;
    for (int k = 0; k < b->kernels.len; k++) {
        const KernelTiming *t = &b->kernels.data[k];
        KernelKind kind = kind_of(p, k);
        tb += t->bytes, tf += t->flops;
        double ai = kernel_ai(t), roof = fmin(lim->gflops, lim->gbps * ai);
        bool memory = lim->gbps * ai < lim->gflops;
        double of_roof = t->flops > 0 && roof > 0 ? kernel_gflops(t) / roof
                         : lim->gbps > 0          ? kernel_gbps(t) / lim->gbps
                                                  : 0;
        sb_printf(sb, "<tr><td>%d</td><td class=\"l\">", k);
        html(sb, t->name);
        sb_printf(sb, "</td><td class=\"l\"><span class=\"kind\" style=\"background:%s\"></span>%s</td>",
                  kind_ink(kind), kernel_kind_name(kind));
        sb_printf(sb, "<td>%.4g</td><td>%.1f%%</td><td>", t->ms, b->run_ms > 0 ? 100 * t->ms / b->run_ms : 0);
        num(sb, (double)t->bytes);
        sb_puts(sb, "</td><td>");
        num(sb, (double)t->flops);
        sb_printf(sb,
                  "</td><td>%.3g</td><td>%.4g</td><td>%.4g</td><td class=\"l\">%s</td><td>%.0f%%</td></tr>\n",
                  ai, kernel_gbps(t), kernel_gflops(t), memory || t->flops <= 0 ? "memory" : "arithmetic",
                  100 * of_roof);
    }
    sb_printf(sb, "<tr><th></th><th class=\"l\">whole run</th><th></th><th>%.4g</th><th></th><th>",
              b->run_ms);
    num(sb, (double)tb);
    sb_puts(sb, "</th><th>");
    num(sb, (double)tf);
    sb_printf(sb, "</th><th>%.3g</th><th>%.4g</th><th>%.4g</th><th></th><th></th></tr>\n</table>\n",
              tb > 0 ? (double)tf / (double)tb : 0, b->run_ms > 0 ? tb / b->run_ms / 1e6 : 0,
              b->run_ms > 0 ? tf / b->run_ms / 1e6 : 0);
    sb_puts(sb,
            "<p class=\"note\">bytes: each input read once and each output written once; &ldquo;of the "
            "roof&rdquo;: achieved GFLOP/s over the roof at the kernel's intensity (GB/s over the bandwidth "
            "for kernels without arithmetic).</p>\n");
}

/* ------------------------------------------------------------ the timeline */

enum { TW = 1040, LANE = 18, TL = 150 }; /* width, lane height, label column */

/* One chart of spans [t0, t1] ms in lanes: the lane of each span given. */
static void timeline_chart(StrBuf *sb, const TraceSpanView *s, const int *lane, int n, double t0, double t1,
                           int nlanes, const char *const *lane_names, const char *const *colors) {
    int h = nlanes * LANE + 28;
    double span = t1 > t0 ? t1 - t0 : 1;
    sb_printf(sb, "<svg class=\"timeline\" width=\"%d\" height=\"%d\" viewBox=\"0 0 %d %d\">\n", TW, h, TW,
              h);
    for (int l = 0; l < nlanes; l++) {
        sb_printf(sb, "<text x=\"4\" y=\"%d\" font-size=\"11\" fill=\"#475569\">", l * LANE + 13);
        html(sb, lane_names[l]);
        sb_puts(sb, "</text>\n");
    }
    for (int i = 0; i < n; i++) {
        if (lane[i] < 0) continue;
        double x = TL + (s[i].t0 - t0) / span * (TW - TL - 8), w = (s[i].t1 - s[i].t0) / span * (TW - TL - 8);
        sb_printf(sb, "<g><title>");
        html(sb, s[i].name);
        sb_printf(sb,
                  ": %.4g ms</title><rect x=\"%.2f\" y=\"%d\" width=\"%.2f\" height=\"%d\" fill=\"%s\" "
                  "stroke=\"#fff\" stroke-width=\"0.5\"/>",
                  s[i].t1 - s[i].t0, x, lane[i] * LANE + 2, w < 0.5 ? 0.5 : w, LANE - 4, colors[i]);
        if (w > 60) {
            sb_printf(sb, "<text x=\"%.2f\" y=\"%d\" font-size=\"10\" fill=\"#fff\">", x + 3,
                      lane[i] * LANE + 13);
            StrBuf label = {0};
            sb_printf(&label, "%.*s", (int)(w / 6), s[i].name);
            html(sb, label.data);
            sb_free(&label);
            sb_puts(sb, "</text>");
        }
        sb_puts(sb, "</g>\n");
    }
    /* the time axis */
    int y = nlanes * LANE + 4;
    sb_printf(sb, "<line x1=\"%d\" y1=\"%d\" x2=\"%d\" y2=\"%d\" stroke=\"#94a3b8\"/>\n", TL, y, TW - 8, y);
    for (int i = 0; i <= 4; i++) {
        double x = TL + i * (TW - TL - 8) / 4.0;
        StrBuf t = {0};
        fmt_ms(&t, span * i / 4);
        sb_printf(
            sb, "<text x=\"%.1f\" y=\"%d\" font-size=\"10\" text-anchor=\"%s\" fill=\"#475569\">%s</text>\n",
            x, y + 14,
            i == 0   ? "start"
            : i == 4 ? "end"
                     : "middle",
            t.data);
        sb_free(&t);
    }
    sb_puts(sb, "</svg>\n");
}

static const char *phase_color(const char *cat) {
    if (strcmp(cat, "parse") == 0) return "#64748b";
    if (strcmp(cat, "passes") == 0) return "#7c3aed";
    if (strcmp(cat, "fusion") == 0) return "#0891b2";
    if (strcmp(cat, "codegen") == 0) return "#ea580c";
    return "#334155";
}

/* The compilation on the host threads (one lane per nesting depth of each
 * thread), then the run whose time is the median, on the device. */
static void timeline(StrBuf *sb, const Page *p) {
    TraceSpanView *s;
    int n = trace_spans(p->in->trace, &s);
    int *lane = xcalloc((size_t)n + 1, sizeof(int));
    const char **colors = xcalloc((size_t)n + 1, sizeof(char *));
    VEC(const char *) names = {0};
    VEC(const char *) threads = {0};
    /* compile: lanes by (thread, depth) */
    double c0 = 1e300, c1 = -1e300;
    for (int i = 0; i < n; i++) {
        lane[i] = -1;
        if (strcmp(s[i].process, "kiln (host)") != 0) continue;
        if (s[i].t0 < c0) c0 = s[i].t0;
        if (s[i].t1 > c1) c1 = s[i].t1;
    }
    enum { MAX_DEPTH = 4 };
    for (int i = 0; i < n; i++) {
        if (strcmp(s[i].process, "kiln (host)") != 0) continue;
        int th = -1;
        for (int t = 0; t < threads.len; t++)
            if (strcmp(threads.data[t], s[i].thread) == 0) th = t;
        if (th < 0) {
            VEC_PUSH(threads, s[i].thread);
            th = threads.len - 1;
        }
        int depth = 0; /* spans of the same thread that contain this one */
        for (int j = 0; j < i; j++)
            depth += strcmp(s[j].process, s[i].process) == 0 && strcmp(s[j].thread, s[i].thread) == 0 &&
                     s[j].t0 <= s[i].t0 && s[j].t1 >= s[i].t1;
        lane[i] = th * MAX_DEPTH + (depth < MAX_DEPTH ? depth : MAX_DEPTH - 1);
        colors[i] = phase_color(s[i].cat);
    }
    /* lanes in use, renumbered */
    int *used = xcalloc((size_t)threads.len * MAX_DEPTH + 1, sizeof(int));
    for (int i = 0; i < n; i++)
        if (lane[i] >= 0) used[lane[i]] = 1;
    int nl = 0;
    for (int l = 0; l < threads.len * MAX_DEPTH; l++) {
        if (!used[l]) {
            used[l] = -1;
            continue;
        }
        used[l] = nl++;
        VEC_PUSH(names, l % MAX_DEPTH == 0 ? threads.data[l / MAX_DEPTH] : "");
    }
    for (int i = 0; i < n; i++)
        if (lane[i] >= 0) lane[i] = used[lane[i]];
    free(used);
    if (nl > 0) {
        sb_puts(sb, "<h3>Compilation, on the host threads</h3>\n");
        timeline_chart(sb, s, lane, n, c0, c1, nl, names.data, colors);
        sb_puts(sb,
                "<p class=\"note\">grey: reading and parsing; violet: building the IR and the passes; cyan: "
                "fusion; orange: code generation (per kernel, then the backend's compiler).</p>\n");
    }
    /* the median run: the run span whose length is the median */
    VEC(int) runs = {0};
    for (int i = 0; i < n; i++)
        if (strcmp(s[i].cat, "run") == 0 && strcmp(s[i].name, "warm-up run") != 0) VEC_PUSH(runs, i);
    if (runs.len > 0) {
        for (int a = 1; a < runs.len; a++)
            for (int b = a; b > 0 && s[runs.data[b]].t1 - s[runs.data[b]].t0 <
                                         s[runs.data[b - 1]].t1 - s[runs.data[b - 1]].t0;
                 b--) {
                int t = runs.data[b];
                runs.data[b] = runs.data[b - 1], runs.data[b - 1] = t;
            }
        const TraceSpanView *r = &s[runs.data[runs.len / 2]];
        for (int i = 0; i < n; i++) {
            lane[i] = -1;
            if (strcmp(s[i].cat, "kernel") != 0 || s[i].t0 < r->t0 || s[i].t1 > r->t1 ||
                strcmp(s[i].process, r->process) != 0)
                continue;
            lane[i] = 0;
            colors[i] = "#334155";
            for (int k = 0; p->kp && k < p->kp->kernels.len; k++)
                if (strcmp(p->kp->kernels.data[k].name, s[i].name) == 0)
                    colors[i] = kind_ink(p->kp->kernels.data[k].kind);
        }
        sb_printf(sb, "<h3>");
        html(sb, r->name);
        sb_puts(sb, ", the median run, on ");
        html(sb, r->process);
        sb_puts(sb, "</h3>\n");
        const char *lane_name[1] = {"kernel launches"};
        timeline_chart(sb, s, lane, n, r->t0, r->t1, 1, lane_name, colors);
    }
    VEC_FREE(runs);
    VEC_FREE(names);
    VEC_FREE(threads);
    free(colors);
    free(lane);
    free(s);
}

/* ------------------------------------------------------------ the graph */

static void graph_picture(StrBuf *sb, const Page *p) {
    if (!p->kp) {
        sb_puts(sb,
                "<p class=\"note\">This device runs whole graphs: there are no fused kernels to draw.</p>\n");
        return;
    }
    double *ms = xcalloc((size_t)p->nk + 1, sizeof(double));
    for (int k = 0; k < p->nk; k++)
        ms[k] = k < p->in->bench->kernels.len ? p->in->bench->kernels.data[k].ms : -1;
    DotTimes times = {ms, p->in->bench->run_ms, exec_backend(p->in->exe)->name};
    char *dot = NULL, *svg = NULL;
    size_t dot_len = 0, svg_len = 0;
    FILE *mem = open_memstream(&dot, &dot_len);
    if (mem) {
        kprog_print_dot(p->kp, p->in->g, &times, mem);
        fclose(mem);
    }
    char err[1024] = "";
    if (dot && viz_render_svg(dot, dot_len, &svg, &svg_len, err, sizeof err) == KILN_OK) {
        const char *start = strstr(svg, "<svg");
        sb_puts(sb, "<div class=\"graph\">\n");
        sb_puts(sb, start ? start : "");
        sb_puts(sb, "</div>\n");
    } else {
        sb_puts(sb, "<p class=\"note\">The graph is not drawn: ");
        html(sb, err[0] ? err : "out of memory");
        sb_puts(sb, ".</p>\n");
    }
    free(dot);
    free(svg);
    free(ms);
}

/* ------------------------------------------------------------ the page */

void report_build(const ReportInput *in, StrBuf *out) {
    const KProgram *kp = exec_program(in->exe);
    Page p = {in, kp, kp ? kp->kernels.len : 0};
    const char *device = exec_backend(in->exe)->name;
    const MachineLimits *lim = in->limits;
    char date[64], cpu[256];
    time_t now = time(NULL);
    struct tm tm;
    strftime(date, sizeof date, "%Y-%m-%d %H:%M %Z", localtime_r(&now, &tm));
    sb_printf(out, "%s %s: bench --report -->\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n",
              REPORT_HTML_HEAD, KILN_VERSION);
    sb_puts(out, "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n<title>kiln: ");
    html(out, in->g->name);
    sb_printf(out, " on %s</title>\n<style>%s</style>\n</head>\n<body>\n<h1>", device, STYLE);
    html(out, in->g->name);
    sb_printf(out, " on %s</h1>\n<p class=\"meta\">", device);
    html(out, in->source ? in->source : "");
    sb_printf(out, " &middot; kiln %s &middot; %s &middot; %s, %ld logical CPUs</p>\n", KILN_VERSION, date,
              cpu_model(cpu, sizeof cpu), sysconf(_SC_NPROCESSORS_ONLN));
    if (in->command) {
        sb_puts(out, "<p class=\"meta\"><code>");
        html(out, in->command);
        sb_puts(out, "</code></p>\n");
    }
    const BenchReport *b = in->bench;
    int64_t tb = 0, tf = 0;
    for (int k = 0; k < b->kernels.len; k++) tb += b->kernels.data[k].bytes, tf += b->kernels.data[k].flops;
    sb_puts(out, "<h2>Summary</h2>\n<div class=\"cards\">");
    sb_printf(out, "<div class=\"card\">one run<b>%.4g ms</b>median of %d</div>", b->run_ms, b->runs);
    sb_printf(out, "<div class=\"card\">compile<b>%.4g ms</b>%d kernel%s</div>", in->compile_ms, p.nk,
              p.nk == 1 ? "" : "s");
    sb_printf(out, "<div class=\"card\">achieved<b>%.4g GFLOP/s</b>%.4g GB/s</div>",
              b->run_ms > 0 ? tf / b->run_ms / 1e6 : 0, b->run_ms > 0 ? tb / b->run_ms / 1e6 : 0);
    sb_printf(out, "<div class=\"card\">this machine<b>%.4g GFLOP/s</b>%.4g GB/s</div></div>\n", lim->gflops,
              lim->gbps);
    sb_puts(out, "<h2>This machine, measured by kiln for this report</h2>\n<table>\n");
    sb_printf(out, "<tr><td class=\"l\">memory bandwidth</td><td><b>%.4g GB/s</b></td><td class=\"l how\">",
              lim->gbps);
    html(out, lim->how_bw);
    sb_printf(out,
              "</td></tr>\n<tr><td class=\"l\">peak arithmetic</td><td><b>%.4g GFLOP/s</b></td>"
              "<td class=\"l how\">",
              lim->gflops);
    html(out, lim->how_peak);
    sb_puts(out, "</td></tr>\n</table>\n<p class=\"note\">What kiln's own generated code achieves on these "
                 "kernels now, on this machine: a practical roof, not the datasheet's.");
    double load[3];
    if (getloadavg(load, 3) == 3)
        sb_printf(out, " The load average was %.2g on %ld logical CPUs while measuring%s", load[0],
                  sysconf(_SC_NPROCESSORS_ONLN),
                  load[0] > sysconf(_SC_NPROCESSORS_ONLN)
                      ? ": other work shared the machine, so the limits (taken "
                        "on all cores) may be low."
                      : ".");
    int above = 0;
    for (int k = 0; k < b->kernels.len; k++) {
        const KernelTiming *t = &b->kernels.data[k];
        above += t->flops > 0 && kernel_gflops(t) > fmin(lim->gflops, lim->gbps * kernel_ai(t));
    }
    if (above)
        sb_printf(out,
                  " %d kernel%s ran above the roof: from the caches (the bandwidth is the main memory's), or "
                  "on a machine that was less busy during the bench than during these measurements.",
                  above, above == 1 ? "" : "s");
    sb_puts(out, "</p>\n");
    if (p.nk > 0) {
        sb_puts(out, "<h2>Roofline</h2>\n");
        roofline(out, &p);
        sb_puts(out, "<h2>Kernels</h2>\n");
        kernel_table(out, &p);
    } else {
        sb_printf(out,
                  "<h2>Kernels</h2>\n<p class=\"note\">The %s device runs whole graphs: no kernels to "
                  "time one by one.</p>\n",
                  device);
    }
    if (in->trace) {
        sb_puts(out, "<h2>Timeline</h2>\n");
        timeline(out, &p);
    }
    sb_puts(out, "<h2>Fused kernels</h2>\n");
    graph_picture(out, &p);
    sb_puts(out, "</body>\n</html>\n");
}

KilnStatus report_write(const ReportInput *in, const char *path, char *err, size_t errlen) {
    MachineLimits lim;
    ReportInput with = *in;
    if (!with.limits) {
        KilnStatus st = report_measure(exec_backend(in->exe), in->opt, &lim, err, errlen);
        if (st != KILN_OK) return st;
        with.limits = &lim;
    }
    StrBuf page = {0};
    report_build(&with, &page);
    const void *part = page.data;
    KilnStatus st = outfile_write(path, 1, &part, &page.len, err, errlen);
    sb_free(&page);
    return st;
}
