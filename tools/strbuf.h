/*
 * strbuf.h — a growing text buffer for the SVG writers.
 *
 * Documents are built in memory and written in one go (atomic_file.h), so a
 * picture is either complete on disk or absent. An allocation failure is
 * remembered in `failed` instead of being reported by every append: the
 * writers append freely and check once at the end.
 */
#ifndef ATTN_TOOLS_STRBUF_H
#define ATTN_TOOLS_STRBUF_H

#include <stdbool.h>
#include <stddef.h>

typedef struct strbuf {
    char *data;   /* NUL-terminated when len > 0; NULL before the first append */
    size_t len;   /* bytes used, without the NUL */
    size_t cap;   /* bytes allocated */
    bool failed;  /* an allocation failed: the text is incomplete */
} strbuf;

#define STRBUF_INIT {NULL, 0, 0, false}

/* Appends n bytes of s. */
void strbuf_append(strbuf *sb, const char *s, size_t n);

/* Appends a NUL-terminated string. */
void strbuf_puts(strbuf *sb, const char *s);

/* Appends printf-formatted text. */
#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
void strbuf_printf(strbuf *sb, const char *fmt, ...);

/* Frees the text and resets the buffer to empty. */
void strbuf_free(strbuf *sb);

#endif
