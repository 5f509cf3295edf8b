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

static void gaussian_logits(const void *arg, int64_t b, int64_t h, int64_t i0, int64_t rows,
                            int64_t n, float *s)
{
    (void)b;
    (void)h;
    const kernel_arg *x = arg;
    for (int64_t r = 0; r < rows; r++) {
        float q = x->queries[i0 + r];
        for (int64_t j = 0; j < n; j++) {
            float d = (q - x->keys[j]) * x->w;
            s[r * n + j] = -0.5f * d * d;
        }
    }
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
