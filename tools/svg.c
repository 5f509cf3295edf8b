/*
 * svg.c — the document frame, XML-safe text and round ticks (see svg.h).
 */
#include "svg.h"

#include <math.h>
#include <stdio.h>
#include <stdint.h>
#include <string.h>

#include "utf8.h"

void svg_begin(strbuf *sb, double width, double height)
{
    strbuf_printf(sb,
                  "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                  "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" "
                  "width=\"%.0f\" height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\">\n"
                  "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"#ffffff\"/>\n"
                  "<g font-family=\"DejaVu Sans, Helvetica, Arial, sans-serif\" "
                  "fill=\"#000000\">\n",
                  width, height, width, height, width, height);
}

void svg_end(strbuf *sb)
{
    strbuf_puts(sb, "</g>\n</svg>\n");
}

void svg_escape(strbuf *sb, const char *text)
{
    const unsigned char *s = (const unsigned char *)text;
    while (*s) {
        size_t n = utf8_sequence_length(s);
        if (n == 0) {
            strbuf_puts(sb, "\xEF\xBF\xBD");  /* U+FFFD REPLACEMENT CHARACTER */
            s++;
            continue;
        }
        switch (*s) {
        case '&':  strbuf_puts(sb, "&amp;"); break;
        case '<':  strbuf_puts(sb, "&lt;"); break;
        case '>':  strbuf_puts(sb, "&gt;"); break;
        case '"':  strbuf_puts(sb, "&quot;"); break;
        case '\'': strbuf_puts(sb, "&apos;"); break;
        default:
            if (*s >= 0x20 || *s == '\t')  /* XML 1.0 forbids the other C0 controls */
                strbuf_append(sb, (const char *)s, n);
        }
        s += n;
    }
}

void svg_line(strbuf *sb, double x1, double y1, double x2, double y2, const char *stroke,
              double width)
{
    strbuf_printf(sb, "<line x1=\"%.7g\" y1=\"%.7g\" x2=\"%.7g\" y2=\"%.7g\" stroke=\"%s\" "
                      "stroke-width=\"%.2g\"/>\n", x1, y1, x2, y2, stroke, width);
}

void svg_text(strbuf *sb, double x, double y, const char *anchor, double rotate,
              double font_size, const char *text)
{
    strbuf_printf(sb, "<text x=\"%.1f\" y=\"%.1f\" font-size=\"%.1f\" text-anchor=\"%s\"", x, y,
                  font_size, anchor);
    if (rotate != 0.0)
        strbuf_printf(sb, " transform=\"rotate(%.0f %.1f %.1f)\"", rotate, x, y);
    strbuf_puts(sb, ">");
    svg_escape(sb, text);
    strbuf_puts(sb, "</text>\n");
}

/* The smallest of 1, 2, 5 times a power of ten that is >= raw. */
static double round_step(double raw, int *decimals)
{
    double p = pow(10.0, floor(log10(raw)));
    static const double mult[] = {1.0, 2.0, 5.0, 10.0};
    double step = p * 10.0;
    for (size_t i = 0; i < 4; i++) {
        if (p * mult[i] >= raw * (1 - 1e-9)) {
            step = p * mult[i];
            break;
        }
    }
    int d = (int)-floor(log10(step) + 1e-9);
    *decimals = d > 0 ? d : 0;
    return step;
}

int svg_ticks(double lo, double hi, int max_ticks, int integer_step, double *ticks,
              int *decimals)
{
    *decimals = 0;
    if (!isfinite(lo) || !isfinite(hi) || !isfinite(hi - lo) || hi < lo || max_ticks < 1)
        return 0;
    if (max_ticks > SVG_MAX_TICKS)
        max_ticks = SVG_MAX_TICKS;
    if (hi == lo) {
        ticks[0] = lo;
        *decimals = integer_step ? 0 : 2;
        return 1;
    }
    double raw = (hi - lo) / (max_ticks > 1 ? max_ticks - 1 : 1);
    if (integer_step && raw < 1)
        raw = 1;
    double step = round_step(raw, decimals);
    /* Rounding can leave one tick too many; widen the step until they fit. */
    for (;;) {
        double first = ceil(lo / step - 1e-9) * step;
        int n = 0;
        for (double t = first; t <= hi + step * 1e-9 && n <= max_ticks; t = first + n * step)
            n++;
        if (n <= max_ticks) {
            for (int i = 0; i < n; i++) {
                ticks[i] = first + i * step;
                if (fabs(ticks[i]) < step * 1e-9)
                    ticks[i] = 0.0;  /* never print "-0.0" */
            }
            return n;
        }
        step = round_step(step * 1.01, decimals);
    }
}

void svg_format_number(double v, int decimals, char *out, size_t out_size)
{
    /* Fixed notation while it stays short; %g for extreme ranges. */
    if (decimals <= 6 && fabs(v) < 1e7)
        snprintf(out, out_size, "%.*f", decimals, v);
    else
        snprintf(out, out_size, "%.4g", v);
}
