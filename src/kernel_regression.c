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
                            int64_t n, float *s)
{
    (void)b;
    (void)h;
    const kernel_arg *x = arg;
    for (int64_t r = 0; r < rows; r++)
        gaussian_row(x->queries[i0 + r], x->keys, x->w, n, s + r * n);
}

attn_status attn_nadaraya_watson(attn_context *ctx, int64_t n_queries, int64_t n_keys,
                                 const float *queries, const float *keys, const float *values,
                                 float w, float *out, float *weights)
{
    static const char *f = "attn_nadaraya_watson";
    if (!ctx)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "ctx is NULL");
    const int64_t counts[2] = {n_queries, n_keys};
    static const char *names[2] = {"n_queries", "n_keys"};
    const int64_t q[1] = {n_queries}, k[1] = {n_keys}, wd[2] = {n_queries, n_keys};
    attn_status st;
    if ((st = attn_check_min(counts, names, 2, 0, f)) != ATTN_OK)
        return st;
    if (!isfinite(w))
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "w (%g) is not finite", (double)w);
    if ((st = attn_check_tensor(q, 1, "queries", f)) != ATTN_OK ||
        (st = attn_check_tensor(k, 1, "keys", f)) != ATTN_OK ||
        (weights && (st = attn_check_tensor(wd, 2, "weights", f)) != ATTN_OK) ||
        (st = attn_check_blas(n_keys, "n_keys", f)) != ATTN_OK ||
        (st = attn_check_data(queries, n_queries, "queries", f)) != ATTN_OK ||
        (st = attn_check_data(keys, n_keys, "keys", f)) != ATTN_OK ||
        (st = attn_check_data(values, n_keys, "values", f)) != ATTN_OK ||
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
