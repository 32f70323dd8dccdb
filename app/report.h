/* report.h - `kiln bench --report FILE.html` and the REPL's `:report`
 * (app/report.c): one self-contained HTML page about one benchmarked
 * graph -- the per-kernel table, a roofline chart against this machine's
 * memory bandwidth and peak FLOP/s as kiln measures them when the page is
 * made, a timeline of the compilation and of one run, and the fused-kernel
 * graph.  No network, no script, no file beside it: inline CSS and SVG. */
#ifndef KILN_REPORT_H
#define KILN_REPORT_H

#include "app/app.h"
#include "runtime/outfile.h"

/* Every page begins with REPORT_HTML_HEAD (runtime/outfile.h, which knows
 * kiln's pages by it). */

/* What the machine can do, as kiln's own generated code achieves it. */
typedef struct {
    const char *device; /* the backend that measured (cpu for every host device) */
    double gbps;        /* memory bandwidth, GB/s (1e9 bytes) */
    double gflops;      /* peak arithmetic, GFLOP/s */
    char how_bw[256];   /* how each was measured, for the page */
    char how_peak[256];
} MachineLimits;

/* Measures `be`'s machine (for a host device -- ref, kir, cuda-emu, cpu --
 * the host CPU through the cpu backend where it is built): bandwidth as the
 * best time of `y = x + 1` over f32 vectors far larger than the caches,
 * peak as the better of an f32 matmul and a chain of multiply-adds, each
 * grown until a run takes long enough to time.  About a second on a CPU. */
KilnStatus report_measure(const Backend *be, const CompileOptions *opt, MachineLimits *out, char *err,
                          size_t errlen);

typedef struct {
    const IRGraph *g;         /* the graph benchmarked (after the passes) */
    const Executable *exe;    /* compiled; its kernel program is what the page shows */
    const BenchReport *bench; /* exec_bench's medians */
    double compile_ms;
    Trace *trace; /* the compile phases and the runs (NULL: no timeline) */
    const CompileOptions *opt;
    const char *source;  /* what was benchmarked: a file, a REPL expression */
    const char *command; /* the command line, or NULL */
    const MachineLimits *limits;
} ReportInput;

/* The page, in html.  The graph's picture needs Graphviz's `dot`; without
 * it the page says so and shows the rest. */
void report_build(const ReportInput *in, StrBuf *html);

/* What `bench --report` and `:report` do: measures the machine (when
 * in->limits is NULL), builds the page and writes it to `path` whole
 * (runtime/outfile.h; the caller checked the path with outfile_check). */
KilnStatus report_write(const ReportInput *in, const char *path, char *err, size_t errlen);

#endif
