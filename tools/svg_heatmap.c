/*
 * svg_heatmap.c — D2L's show_heatmaps as plain SVG (see svg_heatmap.h).
 */
#include "svg_heatmap.h"

#include <math.h>
#include <stdio.h>

#include "svg.h"

/* matplotlib's 'Reds' (ColorBrewer's 9-class Reds), which matplotlib
 * interpolates linearly in RGB between these nine equally spaced stops. */
static const unsigned char reds[9][3] = {
    {0xff, 0xf5, 0xf0}, {0xfe, 0xe0, 0xd2}, {0xfc, 0xbb, 0xa1}, {0xfc, 0x92, 0x72},
    {0xfb, 0x6a, 0x4a}, {0xef, 0x3b, 0x2c}, {0xcb, 0x18, 0x1d}, {0xa5, 0x0f, 0x15},
    {0x67, 0x00, 0x0d},
};

#define FONT 11.0
#define TICK 3.0        /* tick mark length */
#define GAP 14.0        /* between panels */
#define LEFT 62.0       /* y label and y tick labels */
#define BOTTOM 46.0     /* x tick labels and x label */
#define TITLE 18.0      /* a title line above a panel */
#define BAR_WIDTH 12.0
#define RIGHT 56.0      /* colour bar tick labels */

/* The figure's geometry, computed once. */
typedef struct layout {
    double cell, panel_w, panel_h, title_h;
    double grid_x, grid_y, grid_w, grid_h;
    double bar_x, bar_y, bar_h;
    double width, height;
    double vmin, vmax;
} layout;

/* Packed 0xRRGGBB of the colour map at t in [0, 1]. */
static unsigned long reds_at(double t)
{
    double pos = (t < 0 ? 0 : t > 1 ? 1 : t) * 8.0;
    int i = pos >= 8.0 ? 7 : (int)pos;
    double f = pos - i;
    unsigned long rgb = 0;
    for (int ch = 0; ch < 3; ch++) {
        double v = reds[i][ch] + f * (reds[i + 1][ch] - reds[i][ch]);
        rgb = rgb << 8 | (unsigned long)lround(v);
    }
    return rgb;
}

int svg_heatmap_set_shape(svg_heatmap *h, int ndim, const int64_t *shape)
{
    if (ndim < 2 || ndim > 4)
        return -1;
    h->rows = ndim == 4 ? shape[0] : 1;
    h->cols = ndim >= 3 ? shape[ndim - 3] : 1;
    h->n_q = shape[ndim - 2];
    h->n_k = shape[ndim - 1];
    return 0;
}

const char *svg_heatmap_check(const svg_heatmap *h, char err[SVG_HEATMAP_ERROR_SIZE])
{
    if (h->rows < 1 || h->cols < 1 || h->n_q < 1 || h->n_k < 1) {
        snprintf(err, SVG_HEATMAP_ERROR_SIZE,
                 "nothing to draw: %lld x %lld panels of %lld x %lld cells",
                 (long long)h->rows, (long long)h->cols, (long long)h->n_q, (long long)h->n_k);
        return err;
    }
    /* Divide instead of multiplying, so huge shapes cannot overflow. */
    int64_t limit = SVG_HEATMAP_MAX_CELLS;
    if (h->n_k > limit || h->n_q > limit / h->n_k || h->cols > limit / (h->n_q * h->n_k) ||
        h->rows > limit / (h->cols * h->n_q * h->n_k)) {
        snprintf(err, SVG_HEATMAP_ERROR_SIZE,
                 "%lld x %lld panels of %lld x %lld cells is more than the %d cells a "
                 "heatmap draws", (long long)h->rows, (long long)h->cols, (long long)h->n_q,
                 (long long)h->n_k, SVG_HEATMAP_MAX_CELLS);
        return err;
    }
    if (h->titles && h->n_titles != h->cols && h->n_titles != h->rows * h->cols) {
        snprintf(err, SVG_HEATMAP_ERROR_SIZE,
                 "%lld titles for %lld x %lld panels: give one per column (%lld) or one "
                 "per panel (%lld)", (long long)h->n_titles, (long long)h->rows,
                 (long long)h->cols, (long long)h->cols, (long long)(h->rows * h->cols));
        return err;
    }
    return NULL;
}

static void value_range(const svg_heatmap *h, double *vmin, double *vmax)
{
    int64_t n = h->rows * h->cols * h->n_q * h->n_k;
    double lo = INFINITY, hi = -INFINITY;
    for (int64_t i = 0; i < n; i++) {
        double v = h->values[i];
        if (isfinite(v)) {
            lo = v < lo ? v : lo;
            hi = v > hi ? v : hi;
        }
    }
    if (lo > hi)  /* no finite value at all */
        lo = 0.0, hi = 1.0;
    *vmin = lo;
    *vmax = hi;
}

static layout make_layout(const svg_heatmap *h)
{
    layout L;
    int64_t longest = h->n_q > h->n_k ? h->n_q : h->n_k;
    /* Panels about 200 px on their long side; whole pixels per cell keep the
     * cell edges sharp, and cells of small matrices stay at most 40 px. */
    L.cell = longest >= 200 ? 1.0 : floor(200.0 / (double)longest);
    if (L.cell > 40.0)
        L.cell = 40.0;
    L.panel_w = L.cell * (double)h->n_k;
    L.panel_h = L.cell * (double)h->n_q;
    L.title_h = h->titles ? TITLE : 0.0;
    L.grid_w = (double)h->cols * L.panel_w + (double)(h->cols - 1) * GAP;
    L.grid_h = (double)h->rows * (L.panel_h + L.title_h) + (double)(h->rows - 1) * GAP;
    /* The colour bar is 0.6 of the grid's height (the seed's shrink=0.6),
     * but never so short that its labels collide. */
    L.bar_h = fmax(0.6 * L.grid_h, 100.0);
    double plot_h = fmax(L.grid_h, L.bar_h);
    L.grid_x = LEFT;
    L.grid_y = floor(10.0 + (plot_h - L.grid_h) / 2.0);
    L.bar_x = L.grid_x + L.grid_w + 20.0;
    L.bar_y = floor(10.0 + (plot_h - L.bar_h) / 2.0);
    L.width = L.bar_x + BAR_WIDTH + RIGHT;
    L.height = 10.0 + plot_h + BOTTOM;
    value_range(h, &L.vmin, &L.vmax);
    return L;
}

/* The cells of one panel, one rectangle per run of equal colour in a row. */
static void render_cells(strbuf *sb, const layout *L, const float *m, int64_t n_q, int64_t n_k,
                         double x0, double y0)
{
    double span = L->vmax - L->vmin;
    strbuf_puts(sb, "<g shape-rendering=\"crispEdges\">\n");
    for (int64_t i = 0; i < n_q; i++) {
        for (int64_t j = 0; j < n_k;) {
            double v = m[i * n_k + j];
            if (isnan(v)) {
                j++;
                continue;
            }
            unsigned long rgb = reds_at(span > 0 ? (v - L->vmin) / span : 0.0);
            int64_t run = 1;
            while (j + run < n_k && !isnan(m[i * n_k + j + run]) &&
                   reds_at(span > 0 ? (m[i * n_k + j + run] - L->vmin) / span : 0.0) == rgb)
                run++;
            strbuf_printf(sb, "<rect x=\"%.7g\" y=\"%.7g\" width=\"%.7g\" height=\"%.7g\" "
                              "fill=\"#%06lx\"/>\n",
                          x0 + (double)j * L->cell, y0 + (double)i * L->cell,
                          (double)run * L->cell, L->cell, rgb);
            j += run;
        }
    }
    strbuf_puts(sb, "</g>\n");
}

/* Tick marks on every panel; their labels only where show_labels says. */
static void render_ticks(strbuf *sb, const layout *L, int64_t n, int vertical, double x0,
                         double y0, int show_labels)
{
    double length = (double)n * L->cell;
    int max_ticks = (int)fmin(6.0, fmax(2.0, length / (vertical ? 24.0 : 30.0)));
    double ticks[SVG_MAX_TICKS];
    int decimals;
    int count = svg_ticks(0.0, (double)(n - 1), max_ticks, 1, ticks, &decimals);
    for (int t = 0; t < count; t++) {
        double at = (ticks[t] + 0.5) * L->cell;
        char label[32];
        svg_format_number(ticks[t], 0, label, sizeof label);
        if (vertical) {
            svg_line(sb, x0 - TICK, y0 + at, x0, y0 + at, "#000000", 0.8);
            if (show_labels)
                svg_text(sb, x0 - TICK - 2.0, y0 + at + FONT * 0.35, "end", 0, FONT, label);
        } else {
            svg_line(sb, x0 + at, y0, x0 + at, y0 + TICK, "#000000", 0.8);
            if (show_labels)
                svg_text(sb, x0 + at, y0 + TICK + FONT + 1.0, "middle", 0, FONT, label);
        }
    }
}

static void render_panel(strbuf *sb, const svg_heatmap *h, const layout *L, int64_t r,
                         int64_t c)
{
    double x0 = L->grid_x + (double)c * (L->panel_w + GAP);
    double y0 = L->grid_y + (double)r * (L->panel_h + L->title_h + GAP) + L->title_h;
    const float *m = h->values + (r * h->cols + c) * h->n_q * h->n_k;
    strbuf_printf(sb, "<g class=\"panel\" data-row=\"%lld\" data-col=\"%lld\">\n", (long long)r,
                  (long long)c);
    if (h->titles) {
        const char *title = h->titles[h->n_titles == h->cols ? c : r * h->cols + c];
        svg_text(sb, x0 + L->panel_w / 2.0, y0 - 6.0, "middle", 0, FONT + 1.0, title);
    }
    render_cells(sb, L, m, h->n_q, h->n_k, x0, y0);
    strbuf_printf(sb, "<rect class=\"frame\" x=\"%.7g\" y=\"%.7g\" width=\"%.7g\" height=\"%.7g\" "
                      "fill=\"none\" stroke=\"#000000\" stroke-width=\"0.8\"/>\n",
                  x0, y0, L->panel_w, L->panel_h);
    int bottom = r == h->rows - 1, left = c == 0;
    render_ticks(sb, L, h->n_k, 0, x0, y0 + L->panel_h, bottom);
    render_ticks(sb, L, h->n_q, 1, x0, y0, left);
    if (bottom)
        svg_text(sb, x0 + L->panel_w / 2.0, y0 + L->panel_h + TICK + 2.0 * FONT + 8.0, "middle",
                 0, FONT + 1.0, h->xlabel ? h->xlabel : "Keys");
    if (left)
        svg_text(sb, x0 - 44.0, y0 + L->panel_h / 2.0, "middle", -90, FONT + 1.0,
                 h->ylabel ? h->ylabel : "Queries");
    strbuf_puts(sb, "</g>\n");
}

/* The shared colour bar: a gradient through the nine stops, vmin at the
 * bottom, with round ticks on its right. */
static void render_colour_bar(strbuf *sb, const layout *L)
{
    strbuf_puts(sb, "<defs><linearGradient id=\"reds\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">\n");
    for (int i = 0; i < 9; i++)
        strbuf_printf(sb, "<stop offset=\"%.4f\" stop-color=\"#%02x%02x%02x\"/>\n", i / 8.0,
                      reds[i][0], reds[i][1], reds[i][2]);
    strbuf_puts(sb, "</linearGradient></defs>\n");
    strbuf_printf(sb, "<rect class=\"colorbar\" x=\"%.7g\" y=\"%.7g\" width=\"%.7g\" "
                      "height=\"%.7g\" fill=\"url(#reds)\" stroke=\"#000000\" "
                      "stroke-width=\"0.8\"/>\n",
                  L->bar_x, L->bar_y, BAR_WIDTH, L->bar_h);
    double ticks[SVG_MAX_TICKS];
    int decimals;
    int count = svg_ticks(L->vmin, L->vmax, 6, 0, ticks, &decimals);
    double span = L->vmax - L->vmin;
    for (int t = 0; t < count; t++) {
        double y = L->bar_y + L->bar_h * (span > 0 ? 1.0 - (ticks[t] - L->vmin) / span : 1.0);
        char label[32];
        svg_format_number(ticks[t], decimals, label, sizeof label);
        double x = L->bar_x + BAR_WIDTH;
        svg_line(sb, x, y, x + TICK, y, "#000000", 0.8);
        svg_text(sb, x + TICK + 2.0, y + FONT * 0.35, "start", 0, FONT, label);
    }
}

void svg_heatmap_render(strbuf *sb, const svg_heatmap *h)
{
    layout L = make_layout(h);
    svg_begin(sb, ceil(L.width), ceil(L.height));
    for (int64_t r = 0; r < h->rows; r++)
        for (int64_t c = 0; c < h->cols; c++)
            render_panel(sb, h, &L, r, c);
    render_colour_bar(sb, &L);
    svg_end(sb);
}
