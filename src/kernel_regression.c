/*
 * kernel_regression.c — Nadaraya–Watson kernel regression (Nadaraya 1964,
 * Watson 1964; D2L §10.2), the oldest attention: scalar queries attend
 * scalar keys through a Gaussian kernel, score(x, x_i) = −((x − x_i)·w)²/2,
 * and pool the values with the softmax of the scores. attend.c does the
 * pooling (one batch row, one head, dim_v = 1), subtracting the row maximum,
 * so a query far from every key gets its nearest keys' values rather than
 * 0/0 = NaN.
 */
#include <math.h>
#include <string.h>

#include "attn_internal.h"

typedef struct kernel_arg {
    const float *queries, *keys;
    float w;
} kernel_arg;

/* ((x − x_i)·w)², in double: in float the product overflows for large w or
 * far-apart points (w = 1e20 gives Inf), turning every logit into −Inf. */
static double scaled_sq_distance(float x, float key, float w)
{
    double t = ((double)x - (double)key) * (double)w;
    return t * t;
}

/* The logits −((x − x_i)·w)²/2 of one query, shifted by the row's largest
 * logit (computed in double) before they are rounded to float, so that the
 * nearest key's logit is exactly 0 and no row of finite logits rounds to all
 * −Inf. The softmax does not change under the shift. */
static void gaussian_row(float x, const float *keys, float w, int64_t n, float *s)
{
    double nearest = INFINITY;
    for (int64_t j = 0; j < n; j++) {
        double d2 = scaled_sq_distance(x, keys[j], w);
        nearest = d2 < nearest ? d2 : nearest;
    }
    for (int64_t j = 0; j < n; j++)
        s[j] = (float)(-0.5 * (scaled_sq_distance(x, keys[j], w) - nearest));
}

static void gaussian_logits(const void *arg, int64_t b, int64_t h, int64_t i0, int64_t rows,
                            int64_t j0, int64_t n, float *s)
{
    (void)b;
    (void)h;
    const kernel_arg *x = arg;
    for (int64_t r = 0; r < rows; r++)
        gaussian_row(x->queries[i0 + r], x->keys + j0, x->w, n, s + r * n);
}

/* The checks the forward and the backward share. */
static attn_status validate(attn_context *ctx, int64_t n_queries, int64_t n_keys,
                            const float *queries, const float *keys, const float *values,
                            float w, const char *f)
{
    if (!ctx)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "ctx is NULL");
    const int64_t counts[2] = {n_queries, n_keys};
    static const char *names[2] = {"n_queries", "n_keys"};
    const int64_t q[1] = {n_queries}, k[1] = {n_keys};
    attn_status st;
    if ((st = attn_check_min(counts, names, 2, 0, f)) != ATTN_OK)
        return st;
    if (!isfinite(w))
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "w (%g) is not finite", (double)w);
    if ((st = attn_check_tensor(q, 1, "queries", f)) != ATTN_OK ||
        (st = attn_check_tensor(k, 1, "keys", f)) != ATTN_OK ||
        (st = attn_check_blas(n_keys, "n_keys", f)) != ATTN_OK ||
        (st = attn_check_data(queries, n_queries, "queries", f)) != ATTN_OK ||
        (st = attn_check_data(keys, n_keys, "keys", f)) != ATTN_OK ||
        (st = attn_check_data(values, n_keys, "values", f)) != ATTN_OK)
        return st;
    return ATTN_OK;
}

attn_status attn_nadaraya_watson(attn_context *ctx, int64_t n_queries, int64_t n_keys,
                                 const float *queries, const float *keys, const float *values,
                                 float w, float *out, float *weights)
{
    static const char *f = "attn_nadaraya_watson";
    attn_status st = validate(ctx, n_queries, n_keys, queries, keys, values, w, f);
    if (st != ATTN_OK)
        return st;
    const int64_t wd[2] = {n_queries, n_keys};
    if ((weights && (st = attn_check_tensor(wd, 2, "weights", f)) != ATTN_OK) ||
        (st = attn_check_data(out, n_queries, "out", f)) != ATTN_OK)
        return st;

    const kernel_arg x = {queries, keys, w};
    attn_attend_args a = {
        .batch = 1, .heads_q = 1, .heads_kv = 1, .len_q = n_queries, .len_kv = n_keys,
        .causal = ATTN_CAUSAL_NONE, .mask = NULL, .logits = gaussian_logits, .logits_arg = &x,
        .v = values, .v_view = {1, n_keys, 1, false},
        .out = out, .out_view = {1, n_queries, 1, false},
        .weights = weights, .lse = NULL,
    };
    return attn_attend(ctx, &a, f);
}

/* ---- backward ----------------------------------------------------------- */

/* With s_ij = −((x_i − k_j)·w)²/2, weights a_ij = softmax_j(s_ij) and
 * out_i = Σ_j a_ij v_j, the gradient of the loss through the logits is
 * ∂L/∂s_ij = a_ij · dO_i · (v_j − out_i) (the softmax's Jacobian), and
 *   ∂s_ij/∂x_i = −(x_i − k_j)·w²,  ∂s_ij/∂k_j = (x_i − k_j)·w²,
 *   ∂s_ij/∂w = −(x_i − k_j)²·w.
 * One query row at a time, on the calling thread: d_keys, d_values and d_w
 * sum over the rows in their order (the same bits every time), and the
 * seeds' problems have tens of points. */
typedef struct nw_grads {
    float *d_queries;
    double *d_keys, *d_values;   /* NULL, or [n_keys] sums in double */
    double d_w;
} nw_grads;

static void backward_row(const kernel_arg *x, int64_t i, int64_t n, const float *values,
                         float d_out, float *p, nw_grads *g)
{
    gaussian_row(x->queries[i], x->keys, x->w, n, p);
    float inv_sum;
    const attn_row_mask none = {.visible_begin = 0, .visible_end = n};
    attn_softmax_row(p, n, &none, &inv_sum);
    double out = 0.0;
    for (int64_t j = 0; j < n; j++)
        out += (double)p[j] * inv_sum * values[j];
    double w2 = (double)x->w * x->w, dq = 0.0;
    for (int64_t j = 0; j < n; j++) {
        double a = (double)p[j] * inv_sum;
        if (a == 0.0)
            continue;
        double ds = a * d_out * ((double)values[j] - out);
        double diff = (double)x->queries[i] - (double)x->keys[j];
        dq -= ds * diff * w2;
        if (g->d_keys)
            g->d_keys[j] += ds * diff * w2;
        if (g->d_values)
            g->d_values[j] += a * d_out;
        g->d_w -= ds * diff * diff * x->w;
    }
    if (g->d_queries)
        g->d_queries[i] = (float)dq;
}

attn_status attn_nadaraya_watson_backward(attn_context *ctx, int64_t n_queries, int64_t n_keys,
                                          const float *queries, const float *keys,
                                          const float *values, float w, const float *d_out,
                                          float *d_queries, float *d_keys, float *d_values,
                                          float *d_w)
{
    static const char *f = "attn_nadaraya_watson_backward";
    attn_status st = validate(ctx, n_queries, n_keys, queries, keys, values, w, f);
    if (st != ATTN_OK || (st = attn_check_data(d_out, n_queries, "d_out", f)) != ATTN_OK)
        return st;
    size_t nq = (size_t)n_queries, nk = (size_t)n_keys;
    const attn_buffer ins[4] = {{queries, nq, 1, "queries"}, {keys, nk, 1, "keys"},
                                {values, nk, 1, "values"},   {d_out, nq, 1, "d_out"}};
    const attn_buffer outs[4] = {{d_queries, nq, 1, "d_queries"}, {d_keys, nk, 1, "d_keys"},
                                 {d_values, nk, 1, "d_values"},   {d_w, 1, 1, "d_w"}};
    if ((st = attn_check_outputs_disjoint(outs, 4, 0, ins, 4, f)) != ATTN_OK)
        return st;
    /* Scratch: the d_keys and d_values sums in double, then one row of
     * weights (attn_alloc's buffers are 64-byte aligned, so are the
     * doubles). */
    if ((st = attn_context_reserve(ctx, f, 1, 5 * (size_t)n_keys)) != ATTN_OK)
        return st;
    double *sums = (double *)(void *)ctx->scratch[0];
    memset(sums, 0, 2 * (size_t)n_keys * sizeof *sums);
    nw_grads g = {d_queries, d_keys ? sums : NULL, d_values ? sums + n_keys : NULL, 0.0};
    if (d_queries)
        memset(d_queries, 0, nq * sizeof(float));  /* rows with no key stay 0 */
    const kernel_arg x = {queries, keys, w};
    float *p = (float *)(void *)(sums + 2 * n_keys);
    for (int64_t i = 0; i < n_queries && n_keys > 0; i++)
        backward_row(&x, i, n_keys, values, d_out[i], p, &g);
    for (int64_t j = 0; j < n_keys; j++) {
        if (d_keys)
            d_keys[j] = (float)sums[j];
        if (d_values)
            d_values[j] = (float)sums[n_keys + j];
    }
    if (d_w)
        *d_w = (float)g.d_w;
    return ATTN_OK;
}
