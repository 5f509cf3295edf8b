/*
 * merge.c — softmax attention over a union of disjoint key sets from each
 * set's normalised output and log-sum-exp (Milakov and Gimelshein 2018's
 * online softmax applied to whole blocks; FlashAttention's rescaling;
 * flash-decoding's split-KV reduction):
 *
 *   lse = m + log Σ_p exp(lse_p − m),   m = max_p lse_p
 *   out = Σ_p exp(lse_p − lse) · out_p
 *
 * per row, in double. A part with lse = ±∞ saw no key and contributes
 * nothing (its out is not read), so the cached forward's key blocks and
 * the ring attention's shards may be empty for some rows.
 */
#include <math.h>

#include "attn_internal.h"

/* Whether a part's lse marks "no key": −∞ (libattn, FlashAttention-3) or
 * +∞ (FlashAttention-2). */
static bool empty_part(float lse)
{
    return isinf(lse);
}

void attn_merge_row(int64_t n_parts, int64_t dim_v, const float *const *outs,
                    const float *lses, float *out, float *lse)
{
    double m = -INFINITY;
    bool nan = false;
    for (int64_t p = 0; p < n_parts; p++) {
        if (isnan(lses[p]))
            nan = true;
        else if (!empty_part(lses[p]) && lses[p] > m)
            m = lses[p];
    }
    if (nan || m == -INFINITY) {  /* NaN everywhere, or no key in any part */
        for (int64_t c = 0; c < dim_v; c++)
            out[c] = nan ? NAN : 0.0f;
        *lse = nan ? NAN : -INFINITY;
        return;
    }
    double sum = 0.0;
    for (int64_t p = 0; p < n_parts; p++)
        if (!empty_part(lses[p]))
            sum += exp((double)lses[p] - m);
    double total = m + log(sum);
    /* Column by column, so that out may be outs[0]: element c of part 0 is
     * read before out[c] is written. */
    for (int64_t c = 0; c < dim_v; c++) {
        double acc = 0.0;
        for (int64_t p = 0; p < n_parts; p++)
            if (!empty_part(lses[p]))
                acc += exp((double)lses[p] - total) * outs[p][c];
        out[c] = (float)acc;
    }
    *lse = (float)total;
}

attn_status attn_merge_partials(int64_t n_parts, int64_t rows, int64_t dim_v,
                                const float *const *outs, const float *const *lses, float *out,
                                float *lse)
{
    static const char *f = "attn_merge_partials";
    if (n_parts < 1)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "n_parts (%lld) is below 1",
                         (long long)n_parts);
    if (rows < 0)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "rows (%lld) is negative",
                         (long long)rows);
    if (dim_v < 1)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "dim_v (%lld) is below 1",
                         (long long)dim_v);
    const int64_t dims[2] = {rows, dim_v};
    attn_status st = attn_check_tensor(dims, 2, "out", f);
    if (st != ATTN_OK)
        return st;
    if (!outs)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "outs is NULL");
    if (!lses)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "lses is NULL");
    if (rows == 0)
        return ATTN_OK;
    for (int64_t p = 0; p < n_parts; p++) {
        if (!outs[p])
            return attn_fail(ATTN_ERR_NULL_POINTER, f, "outs[%lld] is NULL", (long long)p);
        if (!lses[p])
            return attn_fail(ATTN_ERR_NULL_POINTER, f, "lses[%lld] is NULL", (long long)p);
    }
    if (!out)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "out is NULL");
    if (!lse)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "lse is NULL");
    size_t out_bytes = (size_t)(rows * dim_v) * sizeof(float), lse_bytes = (size_t)rows * 4;
    if (attn_ranges_overlap(out, out_bytes, lse, lse_bytes))
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "out overlaps lse");
    for (int64_t p = 0; p < n_parts; p++) {
        /* Only the exact pairs outs[0] = out and lses[0] = lse (in place)
         * are allowed; every other overlap is refused. */
        bool same_out = p == 0 && outs[p] == out, same_lse = p == 0 && lses[p] == lse;
        if ((!same_out && attn_ranges_overlap(out, out_bytes, outs[p], out_bytes)) ||
            attn_ranges_overlap(out, out_bytes, lses[p], lse_bytes))
            return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "out overlaps part %lld",
                             (long long)p);
        if ((!same_lse && attn_ranges_overlap(lse, lse_bytes, lses[p], lse_bytes)) ||
            attn_ranges_overlap(lse, lse_bytes, outs[p], out_bytes))
            return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "lse overlaps part %lld",
                             (long long)p);
    }
    /* Each row's parts, GATHER at a time: after the first group, the output
     * so far stands as the next group's part 0 (merging is associative). */
    enum { GATHER = 64 };
    for (int64_t r = 0; r < rows; r++) {
        const float *row_outs[GATHER];
        float row_lses[GATHER], acc_lse = -INFINITY;
        float *out_row = out + r * dim_v;
        for (int64_t p = 0; p < n_parts;) {
            int64_t k = 0;
            if (p > 0) {
                row_outs[k] = out_row;
                row_lses[k++] = acc_lse;
            }
            for (; p < n_parts && k < GATHER; p++, k++) {
                row_outs[k] = outs[p] + r * dim_v;
                row_lses[k] = lses[p][r];
            }
            attn_merge_row(k, dim_v, row_outs, row_lses, out_row, &acc_lse);
        }
        lse[r] = acc_lse;
    }
    return ATTN_OK;
}
