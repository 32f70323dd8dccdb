/* dot.h - a fused kernel program drawn for Graphviz (codegen/dot.c): the
 * picture behind `kiln emit --emit=dot|svg`, the REPL's `:emit dot` and the
 * graph of `bench --report`.  Every kernel is a cluster; the values that
 * cross between kernels are edges labelled with their bytes; parameters and
 * results are drawn apart from the kernels. */
#ifndef KILN_DOT_H
#define KILN_DOT_H

#include "ir/kernel.h"

/* What a bench run measured, to label the clusters with (all optional). */
typedef struct {
    const double *kernel_ms; /* per kernel of the program, median ms; NULL: not measured */
    double run_ms;           /* median of one whole run; <= 0: unknown */
    const char *device;      /* where it ran ("cpu"); NULL: say nothing */
} DotTimes;

/* Prints the Graphviz text of kp, the kernels of concrete graph g.  times
 * may be NULL. */
void kprog_print_dot(const KProgram *kp, const IRGraph *g, const DotTimes *times, FILE *out);

/* "512 B", "4 KiB", "1.5 MiB", "2.00 GiB": a byte count for people. */
void fmt_bytes(StrBuf *sb, int64_t bytes);
/* "12.3 us", "1.25 ms", "2.1 s": a duration given in ms, for people. */
void fmt_ms(StrBuf *sb, double ms);

#endif
