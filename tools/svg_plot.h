/*
 * svg_plot.h — a line plot in plain SVG, for the Nadaraya–Watson figure of
 * D2L §10.2 (plot_kernel_reg: the truth and the predictions as lines, the
 * training samples as translucent dots, x from 0 to 5, y from -1 to 5).
 *
 * Series are drawn in order, clipped to the axes, with a legend in the upper
 * left corner. A non-finite point breaks a line rather than spoiling it.
 */
#ifndef ATTN_TOOLS_SVG_PLOT_H
#define ATTN_TOOLS_SVG_PLOT_H

#include <stdint.h>

#include "strbuf.h"

typedef enum svg_mark {
    SVG_MARK_LINE   = 0, /* a solid line through the points */
    SVG_MARK_DASHED = 1, /* a dashed line */
    SVG_MARK_DOTS   = 2  /* a translucent dot at each point, no line */
} svg_mark;

typedef struct svg_series {
    const char *label;    /* legend text */
    const float *x, *y;   /* n points */
    int64_t n;
    svg_mark mark;
    const char *colour;   /* an SVG colour, e.g. "#1f77b4" */
} svg_series;

typedef struct svg_plot {
    const char *xlabel, *ylabel;
    double xmin, xmax, ymin, ymax;  /* the axes' ranges; xmin < xmax, ymin < ymax */
    const svg_series *series;
    int n_series;
} svg_plot;

/* Appends the SVG document for p to sb. */
void svg_plot_render(strbuf *sb, const svg_plot *p);

#endif
