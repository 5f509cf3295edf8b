/*
 * svg_plot.c — a line plot in plain SVG (see svg_plot.h).
 */
#include "svg_plot.h"

#include <math.h>

#include "svg.h"

#define FONT 11.0
#define AX_X 56.0      /* the axes' top-left corner */
#define AX_Y 12.0
#define AX_W 440.0
#define AX_H 280.0

static double to_x(const svg_plot *p, double x)
{
    return AX_X + (x - p->xmin) / (p->xmax - p->xmin) * AX_W;
}

static double to_y(const svg_plot *p, double y)
{
    return AX_Y + AX_H - (y - p->ymin) / (p->ymax - p->ymin) * AX_H;
}

/* Grid lines and tick labels on both axes, then the frame and axis labels. */
static void render_axes(strbuf *sb, const svg_plot *p)
{
    double ticks[SVG_MAX_TICKS];
    int decimals;
    int n = svg_ticks(p->xmin, p->xmax, 8, 0, ticks, &decimals);
    for (int t = 0; t < n; t++) {
        double x = to_x(p, ticks[t]);
        char label[32];
        svg_format_number(ticks[t], decimals, label, sizeof label);
        svg_line(sb, x, AX_Y, x, AX_Y + AX_H + 3.0, "#e0e0e0", 0.8);
        svg_text(sb, x, AX_Y + AX_H + 3.0 + FONT + 1.0, "middle", 0, FONT, label);
    }
    n = svg_ticks(p->ymin, p->ymax, 8, 0, ticks, &decimals);
    for (int t = 0; t < n; t++) {
        double y = to_y(p, ticks[t]);
        char label[32];
        svg_format_number(ticks[t], decimals, label, sizeof label);
        svg_line(sb, AX_X - 3.0, y, AX_X + AX_W, y, "#e0e0e0", 0.8);
        svg_text(sb, AX_X - 5.0, y + FONT * 0.35, "end", 0, FONT, label);
    }
    strbuf_printf(sb, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"none\" "
                      "stroke=\"#000000\" stroke-width=\"0.8\"/>\n", AX_X, AX_Y, AX_W, AX_H);
    svg_text(sb, AX_X + AX_W / 2.0, AX_Y + AX_H + 2.0 * FONT + 12.0, "middle", 0, FONT + 1.0,
             p->xlabel);
    svg_text(sb, AX_X - 38.0, AX_Y + AX_H / 2.0, "middle", -90, FONT + 1.0, p->ylabel);
}

/* A line through the finite points; a non-finite one starts a new line. */
static void render_line(strbuf *sb, const svg_plot *p, const svg_series *s)
{
    const char *dash = s->mark == SVG_MARK_DASHED ? " stroke-dasharray=\"6 3\"" : "";
    int open = 0;
    for (int64_t i = 0; i < s->n; i++) {
        if (!isfinite(s->x[i]) || !isfinite(s->y[i])) {
            if (open)
                strbuf_puts(sb, "\"/>\n");
            open = 0;
            continue;
        }
        if (!open)
            strbuf_printf(sb, "<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\"%s "
                              "points=\"", s->colour, dash);
        strbuf_printf(sb, "%s%.2f,%.2f", open ? " " : "", to_x(p, s->x[i]), to_y(p, s->y[i]));
        open = 1;
    }
    if (open)
        strbuf_puts(sb, "\"/>\n");
}

static void render_dots(strbuf *sb, const svg_plot *p, const svg_series *s)
{
    strbuf_printf(sb, "<g fill=\"%s\" fill-opacity=\"0.5\">\n", s->colour);
    for (int64_t i = 0; i < s->n; i++)
        if (isfinite(s->x[i]) && isfinite(s->y[i]))
            strbuf_printf(sb, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3\"/>\n", to_x(p, s->x[i]),
                          to_y(p, s->y[i]));
    strbuf_puts(sb, "</g>\n");
}

static void render_legend(strbuf *sb, const svg_plot *p)
{
    double x = AX_X + 10.0, y = AX_Y + 10.0, row = FONT + 6.0;
    strbuf_printf(sb, "<rect x=\"%.2f\" y=\"%.2f\" width=\"150\" height=\"%.2f\" fill=\"#ffffff\" "
                      "fill-opacity=\"0.85\" stroke=\"#c0c0c0\" stroke-width=\"0.8\"/>\n",
                  x, y, row * p->n_series + 8.0);
    for (int i = 0; i < p->n_series; i++) {
        const svg_series *s = &p->series[i];
        double cy = y + 4.0 + row * (i + 0.5);
        if (s->mark == SVG_MARK_DOTS)
            strbuf_printf(sb, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"3\" fill=\"%s\" "
                              "fill-opacity=\"0.5\"/>\n", x + 18.0, cy, s->colour);
        else
            strbuf_printf(sb, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\" "
                              "stroke-width=\"1.6\"%s/>\n", x + 6.0, cy, x + 30.0, cy, s->colour,
                          s->mark == SVG_MARK_DASHED ? " stroke-dasharray=\"6 3\"" : "");
        svg_text(sb, x + 36.0, cy + FONT * 0.35, "start", 0, FONT, s->label);
    }
}

void svg_plot_render(strbuf *sb, const svg_plot *p)
{
    svg_begin(sb, AX_X + AX_W + 16.0, AX_Y + AX_H + 2.0 * FONT + 24.0);
    render_axes(sb, p);
    strbuf_printf(sb, "<clipPath id=\"axes\"><rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" "
                      "height=\"%.2f\"/></clipPath>\n<g clip-path=\"url(#axes)\">\n",
                  AX_X, AX_Y, AX_W, AX_H);
    for (int i = 0; i < p->n_series; i++) {
        if (p->series[i].mark == SVG_MARK_DOTS)
            render_dots(sb, p, &p->series[i]);
        else
            render_line(sb, p, &p->series[i]);
    }
    strbuf_puts(sb, "</g>\n");
    render_legend(sb, p);
    svg_end(sb);
}
