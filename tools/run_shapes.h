/*
 * run_shapes.h — how `attn run` reads shapes from its files.
 *
 * Q, K and V have the same number of dimensions:
 *   4-D  [B, H, S, D]  (layout bhsd, the default) or [B, S, H, D] (bshd)
 *   3-D  [B, S, D]     one head
 *   2-D  [S, D]        one batch row, one head
 * The outputs follow: out has Q's shape with V's last dimension; weights are
 * [B, Hq, Lq, Lkv] (3-D inputs: [B, Lq, Lkv]; 2-D: [Lq, Lkv]) and lse the
 * same without the last dimension, whatever the layout.
 *
 * Masks (--mask, --bias) broadcast against the weights array as NumPy
 * broadcasts: their dimensions are aligned from the right, each must equal
 * the weights' dimension or be 1 (except the last, which is always Lkv), and
 * missing leading ones count as 1. So a 2-D mask is [Lq, Lkv], a 4-D one
 * [mb, mh, mq, Lkv], and a 3-D one is [mh, mq, Lkv] for 4-D inputs and
 * [mb, mq, Lkv] for 3-D inputs.
 *
 * Valid lengths (--valid-lens): 1-D [B] (one length per batch row) or 2-D
 * [B, Lq] (one per query); with 2-D inputs B is 1, and a 0-D scalar is
 * accepted as the one length. Each length is in [0, Lkv].
 *
 * Every check prints "attn run: <file>: <problem>" and returns CLI_REFUSED.
 */
#ifndef ATTN_TOOLS_RUN_SHAPES_H
#define ATTN_TOOLS_RUN_SHAPES_H

#include <stdint.h>

#include "npy.h"

typedef struct sdpa_shape {
    int ndim;      /* of Q, K and V: 2, 3 or 4 */
    int bshd;      /* 4-D files are [B, S, H, D] */
    int64_t batch, heads_q, heads_kv, len_q, len_kv, dim_qk, dim_v;
} sdpa_shape;

/* The three files, named by their paths. */
typedef struct qkv_files {
    const char *q_path, *k_path, *v_path;
    const npy_array *q, *k, *v;
} qkv_files;

/* Reads the attention's sizes from Q, K and V and checks that they agree
 * (dimensions, batch, key count, head dimension, K/V heads). Whether Q's
 * heads are a multiple of K's is left to libattn, whose message says so. */
int run_shape_read(const qkv_files *f, int bshd, sdpa_shape *s);

/* The shapes of the outputs; each returns the number of dimensions. */
int run_out_shape(const sdpa_shape *s, int64_t shape[4]);
int run_weights_shape(const sdpa_shape *s, int64_t shape[4]);
int run_lse_shape(const sdpa_shape *s, int64_t shape[3]);

/* The [mb, mh, mq, len_kv] of a keep-mask or bias file (see above). */
int run_mask_dims(const char *path, const npy_array *m, const sdpa_shape *s, int64_t dims[4]);

/* Checks a lengths file (int64) and says whether it is per query. */
int run_lengths_check(const char *path, const npy_array *lens, const sdpa_shape *s,
                      int *per_query);

#endif
