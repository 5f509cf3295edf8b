/*
 * svg_heatmap.h — attention weights as a grid of heatmaps, in plain SVG.
 *
 * This is D2L §10.1's show_heatmaps(matrices, xlabel, ylabel, titles) drawn
 * without matplotlib: matrices of shape [rows, cols, n_q, n_k] become a rows ×
 * cols grid of panels, each an image of n_q query rows (top to bottom) by n_k
 * key columns (left to right), like imshow. The x label goes under every
 * panel of the bottom row and the y label beside every panel of the first
 * column; tick labels appear only there too (sharex/sharey); titles, when
 * given, go above the panels. One colour bar at the right serves the whole
 * figure, and the colour map is matplotlib's 'Reds' (light = low, dark red =
 * high). Unlike the seed, whose colour bar belongs to the last panel drawn,
 * every panel here shares one scale: the minimum and maximum finite value of
 * all panels. NaN cells are left blank.
 *
 * For the reader of the file: each panel is a <g class="panel"
 * data-row="r" data-col="c"> holding the cells and a <rect class="frame">
 * whose x, y, width and height are the image area, n_k cells across and n_q
 * down, in pixels (no transforms).
 */
#ifndef ATTN_TOOLS_SVG_HEATMAP_H
#define ATTN_TOOLS_SVG_HEATMAP_H

#include <stdint.h>

#include "strbuf.h"

/* Beyond this many cells an SVG (one rectangle per run of equal cells)
 * becomes too large for a browser to open comfortably. */
#define SVG_HEATMAP_MAX_CELLS 1000000

/* Room for any message of svg_heatmap_check. */
#define SVG_HEATMAP_ERROR_SIZE 256

typedef struct svg_heatmap {
    int64_t rows, cols;        /* the grid of panels */
    int64_t n_q, n_k;          /* cells of one panel: query rows × key columns */
    const float *values;       /* [rows, cols, n_q, n_k], C order */
    const char *xlabel;        /* NULL: "Keys" */
    const char *ylabel;        /* NULL: "Queries" */
    const char *const *titles; /* NULL, or n_titles strings */
    int64_t n_titles;          /* cols: one per column, as the seed's titles[j];
                                  rows × cols: one per panel, row by row */
} svg_heatmap;

/* Sets the grid and panel sizes of h from the shape of a weights array, as
 * show_heatmaps reads it: 2-D [n_q, n_k] is one panel, 3-D [cols, n_q, n_k]
 * one row of panels, 4-D [rows, cols, n_q, n_k] a grid. Returns 0, or -1 for
 * any other number of dimensions. */
int svg_heatmap_set_shape(svg_heatmap *h, int ndim, const int64_t *shape);

/* Returns NULL if h can be drawn, else err saying why: no panels or no cells,
 * more than SVG_HEATMAP_MAX_CELLS cells, a title count that is neither cols
 * nor rows × cols. */
const char *svg_heatmap_check(const svg_heatmap *h, char err[SVG_HEATMAP_ERROR_SIZE]);

/* Appends the SVG document for h (which must pass svg_heatmap_check) to sb. */
void svg_heatmap_render(strbuf *sb, const svg_heatmap *h);

#endif
