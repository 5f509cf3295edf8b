/*
 * reliability_util.h — helpers of the reliability tests (issue 6):
 * test_numeric_edges.c, test_nan_confinement.c, test_concurrency.c and
 * test_determinism.c. No CMocka dependency: the helpers report problems by
 * their return value and print what differs.
 *
 *  1. ru_sdpa: one SDPA problem — shapes, options, random inputs, and a mask
 *     held twice, as libattn's attn_mask and as test_util.h's ref_mask, so
 *     that the float64 reference (ref_sdpa) never sees libattn's structs;
 *  2. float64 references of the multi-head and additive layers, written
 *     from the formulas of attn.h (independent of src/), with the masks as a
 *     ref_mask (heads dim num_heads for MHA, 1 for additive);
 *  3. comparisons: tolerance (test_util.h's normalized error) and bitwise.
 */
#ifndef RELIABILITY_UTIL_H
#define RELIABILITY_UTIL_H

#include <stddef.h>
#include <stdint.h>

#include <attn.h>

#include "test_util.h"

/* malloc that aborts the test program on failure (never NULL, n = 0 ok). */
void *ru_alloc(size_t bytes);
float *ru_floats(int64_t n);               /* NaN-filled */
double *ru_doubles(int64_t n);             /* zero-filled */

/* ---- SDPA problems ------------------------------------------------------ */

typedef struct ru_sdpa {
    int64_t B, Hq, Hkv, Lq, Lkv, D, Dv;
    attn_layout layout;
    attn_causal causal;
    float scale;                      /* 0: the default 1/sqrt(D) */
    int64_t nq, nk, nv, no, nw, nl;   /* element counts of q k v out weights lse */
    float *q, *k, *v;                 /* owned */
    ref_mask rm;                      /* the reference's view of the mask */
    attn_mask *mask;                  /* libattn's view of the same arrays */
} ru_sdpa;

/* Fills q, k ~ N(0, 1) and v ~ U[-2, 2) from seed; no mask. */
void ru_sdpa_init(ru_sdpa *p, int64_t B, int64_t Hq, int64_t Hkv, int64_t Lq, int64_t Lkv,
                  int64_t D, int64_t Dv, attn_layout layout, attn_causal causal, float scale,
                  uint64_t seed);
void ru_sdpa_free(ru_sdpa *p);

/* Set one mask kind on both views (the arrays stay the caller's). Return the
 * libattn status. */
attn_status ru_sdpa_lengths(ru_sdpa *p, const int64_t *lengths, int per_query);
attn_status ru_sdpa_keep(ru_sdpa *p, const uint8_t *keep, int64_t mb, int64_t mh, int64_t mq);
attn_status ru_sdpa_bias(ru_sdpa *p, const float *bias, int64_t mb, int64_t mh, int64_t mq);

/* Outputs of libattn and of the reference. */
typedef struct ru_out {
    float *out, *w, *lse;
} ru_out;
typedef struct ru_ref {
    double *out, *w, *lse;
} ru_ref;

/* Runs libattn (a fresh context with `threads` threads, a fresh op) into
 * NaN-filled outputs it allocates. Returns the status. */
attn_status ru_sdpa_run(const ru_sdpa *p, int threads, ru_out *r);
/* The same on a given context and op (made by ru_sdpa_make_op). */
attn_status ru_sdpa_run_on(attn_context *ctx, const attn_sdpa *op, const ru_sdpa *p, ru_out *r);
attn_status ru_sdpa_make_op(const ru_sdpa *p, attn_sdpa **op);
/* The reference's description of p (the scale the op uses). */
ref_shape ru_sdpa_shape(const ru_sdpa *p);
/* The float64 reference; returns 0. */
int ru_sdpa_ref(const ru_sdpa *p, ru_ref *d);
void ru_out_free(ru_out *r);
void ru_ref_free(ru_ref *d);

/* Offset of the first feature of row (b, h, i) of out, in p's layout. */
int64_t ru_out_row(const ru_sdpa *p, int64_t b, int64_t h, int64_t i);

/* ---- float64 references of the layers ------------------------------------ */

/* nn.MultiheadAttention: Q = query Wqᵀ + bq etc., per head softmax(Q_h K_gᵀ /
 * sqrt(head_dim) + masks) V_g, out = concat Woᵀ + bo. w[p], b[p] for
 * p = Q, K, V, O as attn_mha_set_weights takes them (b[p] may be NULL).
 * mask: heads dim num_heads (keep_h / bias_h 1 or num_heads). out [batch,
 * len_q, embed], weights NULL or [batch, num_heads, len_q, len_kv]. */
typedef struct ru_mha {
    int64_t embed, heads, kv_heads, kdim, vdim;
    attn_causal causal;
    const float *w[4], *b[4];
    const ref_mods *mods;  /* NULL: none */
    int64_t rope_dim;      /* 0: no RoPE; else Q and K rotated by ref_rope_row */
    int rope_style;        /* 0 half, 1 interleaved */
    double rope_base;
} ru_mha;
void ru_ref_mha(const ru_mha *m, int64_t batch, int64_t len_q, int64_t len_kv, const float *query,
                const float *key, const float *value, const ref_mask *mask, double *out,
                double *weights);

/* The self-attention gradient check of the layer tests: the largest
 * |dx − num| / (1 + |num|) over every element of x [batch, len, embed],
 * where dx is libattn's ∂L/∂x (query = key = value = x) and num is ∂L/∂x by
 * central differences (steps 2^-10) of L = Σ d_out · out, out from
 * ru_ref_mha(m) without a mask. *worst gets the element's index. */
double ru_mha_self_grad_error(const ru_mha *m, int64_t batch, int64_t len, float *x,
                              const float *d_out, const float *dx, int64_t *worst);

/* Additive attention: score = w_vᵀ tanh(W_q q + W_k k) + masks, softmax, · V.
 * mask: heads dim 1. */
typedef struct ru_additive {
    int64_t qdim, kdim, hidden;
    const float *wq, *wk, *wv;
} ru_additive;
void ru_ref_additive(const ru_additive *a, int64_t batch, int64_t len_q, int64_t len_kv,
                     int64_t dim_v, const float *q, const float *k, const float *v,
                     const ref_mask *mask, double *out, double *weights);

/* ---- comparisons --------------------------------------------------------- */

/* tu_max_err (row_len > 0) or tu_max_err_lse (row_len = 0) <= tol; prints
 * the worst element otherwise. Returns 1 if close. */
int ru_close(const char *what, const float *a, const double *r, int64_t n, int64_t row_len,
             double tol);
/* n floats bitwise equal; prints the first difference otherwise. Returns 1
 * if equal. */
int ru_same_bits(const char *what, const float *a, const float *b, int64_t n);
/* Bitwise equality of two floats (NaN payloads included). */
int ru_same_float(float a, float b);

#endif /* RELIABILITY_UTIL_H */
