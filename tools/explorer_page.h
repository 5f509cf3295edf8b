/*
 * explorer_page.h — the page of `attn explore`: attention weights, their
 * token labels and the explorer (tools/explorer/explorer.js and .css) in one
 * self-contained HTML file that opens from disk, with no server and no
 * network: its Content-Security-Policy lets only its own script and style
 * sheet run (by their SHA-256) and forbids every request.
 *
 * What other programs may read from the page is in ../shared/API.md: each
 * query token of the head view has data-query="i", each key token
 * data-key="j" (0-based); hovering or focusing a query token shows its
 * non-zero weights as text with 4 decimals.
 */
#ifndef ATTN_TOOLS_EXPLORER_PAGE_H
#define ATTN_TOOLS_EXPLORER_PAGE_H

#include <stdint.h>

#include "strbuf.h"

#define EXPLORER_ERROR_SIZE 320

/* What one page holds at most. Beyond these the page would be too slow to
 * draw or too long to read (a token column taller than a browser's canvas);
 * explore_cmd.c refuses larger inputs and says how to cut them down. */
#define EXPLORER_MAX_TOKENS 1024          /* queries, and keys */
#define EXPLORER_MAX_CELLS (INT64_C(1) << 21) /* weights: about 11 MB of page */

/* A row of weights must sum to 1 within this (float32 rounding over up to
 * EXPLORER_MAX_TOKENS keys stays far below), or be all zero (every key
 * masked). Anything else is not a softmax over the last axis. */
#define EXPLORER_ROW_SUM_TOLERANCE 1e-3

typedef struct explorer_page {
    const char *title;   /* the heading (UTF-8); NULL: "Attention weights" */
    const char *source;  /* shown under the heading (the input's name), or NULL */
    /* layers, sequences (batch), heads, queries, keys */
    int64_t shape[5];
    /* shape[0] numbers to call the layers by (the input's own, when some were
     * left out), or NULL for 0, 1, ... */
    const int64_t *layer_numbers;
    /* the weights, shape[0] * ... * shape[4] floats, row-major: each row
     * (one query's weights over the keys) a softmax: in [0, 1], summing to 1,
     * or all zero */
    const float *weights;
    /* labels of the queries: shape[3] of them (every sequence the same) or
     * shape[1] * shape[3] (sequence by sequence), UTF-8; NULL: the query's
     * index. Invalid UTF-8 is shown as U+FFFD. */
    const char *const *query_tokens;
    int64_t n_query_tokens;
    /* labels of the keys, likewise with shape[4]; NULL: the query labels
     * when there are as many queries as keys (self-attention), else the key's
     * index */
    const char *const *key_tokens;
    int64_t n_key_tokens;
} explorer_page;

/* What explorer_page_check returns when the shape is beyond the limits
 * above (the caller may say how to cut the input down). */
#define EXPLORER_TOO_LARGE 2

/* 0 when p can be drawn; otherwise, with a message in err naming what is
 * wrong, EXPLORER_TOO_LARGE (too many tokens or weights) or 1 (an empty
 * axis, a NaN, infinite, negative or too large weight and where, a row that
 * is not a softmax, a wrong number of labels). */
int explorer_page_check(const explorer_page *p, char err[EXPLORER_ERROR_SIZE]);

/* The shape checks alone, for a caller that knows the shape before it has
 * the weights: 0, 1 (an empty axis) or EXPLORER_TOO_LARGE, with err. */
int explorer_page_check_shape(const int64_t shape[5], char err[EXPLORER_ERROR_SIZE]);

/* Appends the whole HTML page for p, which explorer_page_check accepted. */
void explorer_page_render(strbuf *sb, const explorer_page *p);

#endif
