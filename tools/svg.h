/*
 * svg.h — what the SVG writers share: the document frame, text that is
 * always well-formed XML, and axis ticks at round numbers.
 *
 * Coordinates are SVG user units, one per CSS pixel; the writers place every
 * element in absolute coordinates (no transforms but text rotation), so a
 * reader of the file, or a test rendering it, can find a cell from the
 * numbers in it.
 */
#ifndef ATTN_TOOLS_SVG_H
#define ATTN_TOOLS_SVG_H

#include <stddef.h>

#include "strbuf.h"

/* The most ticks svg_ticks returns. */
#define SVG_MAX_TICKS 16

/* Appends the XML declaration, the <svg> element of the given size, a white
 * background and a group that sets the font; svg_end closes them. */
void svg_begin(strbuf *sb, double width, double height);
void svg_end(strbuf *sb);

/* Appends text as XML character data: & < > " ' escaped, control characters
 * dropped, and bytes that are not UTF-8 replaced by U+FFFD, so that any
 * command-line argument makes a well-formed document. */
void svg_escape(strbuf *sb, const char *text);

/* Appends a <line> from (x1, y1) to (x2, y2) in the given stroke colour and
 * width. */
void svg_line(strbuf *sb, double x1, double y1, double x2, double y2, const char *stroke,
              double width);

/* Appends a <text> element at (x, y) with anchor "start", "middle" or "end",
 * rotated by `rotate` degrees about (x, y) when non-zero. */
void svg_text(strbuf *sb, double x, double y, const char *anchor, double rotate,
              double font_size, const char *text);

/* Fills ticks[] with round values (1, 2 or 5 times a power of ten apart) in
 * [lo, hi], at most max_ticks (<= SVG_MAX_TICKS) of them, and *decimals with
 * the digits after the point that print them exactly. With integer_step the
 * step is at least 1 (for cell indices). Returns the number of ticks. */
int svg_ticks(double lo, double hi, int max_ticks, int integer_step, double *ticks,
              int *decimals);

/* Prints a tick value with the decimals svg_ticks chose (or %g when that
 * would be long) into out. */
void svg_format_number(double v, int decimals, char *out, size_t out_size);

#endif
