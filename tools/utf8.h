/*
 * utf8.h — recognising UTF-8 (RFC 3629), for the writers that must turn any
 * bytes into well-formed SVG, HTML or JSON text.
 */
#ifndef ATTN_TOOLS_UTF8_H
#define ATTN_TOOLS_UTF8_H

#include <stddef.h>

/* The length (1 to 4) of the valid UTF-8 sequence that starts at s, or 0 when
 * the bytes there are not one: overlong forms, surrogates and code points
 * beyond U+10FFFF are refused. s is NUL-terminated; a NUL ends any sequence. */
size_t utf8_sequence_length(const unsigned char *s);

/* The byte offset of the first invalid sequence in the n bytes at s, or -1
 * when they are all UTF-8 (an embedded NUL counts as invalid). s[n] must be
 * a NUL, which stops a truncated sequence at the end. */
long long utf8_first_invalid(const unsigned char *s, size_t n);

#endif
