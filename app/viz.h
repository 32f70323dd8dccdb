/* viz.h - pictures of what kiln did (app/viz.c): the fused-kernel graph
 * for Graphviz (`emit --emit=dot`, the REPL's `:emit dot`), rendered to SVG
 * by Graphviz's `dot` program (`emit --emit=svg`, `bench --report`). */
#ifndef KILN_VIZ_H
#define KILN_VIZ_H

#include "app/app.h"
#include "codegen/dot.h"
#include "runtime/outfile.h"

/* The Graphviz text of graph g (after the passes): its fused kernels as
 * clusters (codegen/dot.h), scheduled as the devices schedule it.  A graph
 * with unbound symbolic dimensions cannot be scheduled: it is drawn as graph
 * nodes only, the title saying which --dim would show the kernels.  times
 * may be NULL.  KILN_ERR_DEVICE with a message if scheduling fails. */
KilnStatus viz_print_dot(const IRGraph *g, const CompileOptions *opt, const DotTimes *times, FILE *out,
                         char *err, size_t errlen);

/* Renders Graphviz text to SVG with the `dot` program found on PATH.  On
 * success *svg (malloc'd, NUL-terminated, *svg_len bytes) is the picture,
 * marked as kiln's in a comment after the XML declaration.  KILN_ERR_DEVICE
 * when `dot` is not installed or fails, saying so and how to install it. */
KilnStatus viz_render_svg(const char *dot, size_t dot_len, char **svg, size_t *svg_len, char *err,
                          size_t errlen);

/* The comment viz_render_svg puts in every SVG it makes is VIZ_SVG_MARK
 * (runtime/outfile.h, which recognises kiln's SVG by it). */

#endif
