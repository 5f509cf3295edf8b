/*
 * softmax.c — the masked, numerically safe softmax of one row of logits.
 *
 * Three passes over a row that is already scale·q·kᵀ (the GEMM applied the
 * scale): (1) mask and bias, tracking the maximum and whether any key is
 * visible; (2) exp(x − max) and the sum; (3) multiply by 1/sum. Subtracting
 * the maximum keeps exp in range for any logits (D2L §4.4 "softmax
 * revisited"; Milakov & Gimelshein 2018); the log-sum-exp follows for free as
 * max + log(sum).
 */
#include <math.h>
#include <string.h>

#include "attn_internal.h"

/* Pass 1: masked keys become -INFINITY, the bias is added. Returns the number
 * of keys that are visible (not masked and not biased to -INFINITY) and
 * stores their maximum. NaN logits count as visible and never win the
 * maximum, so they propagate through exp to the whole row (and only it). */
static int64_t mask_and_max(float *row, int64_t n, const attn_row_mask *m, float *max_out)
{
    int64_t end = m->visible_end < n ? m->visible_end : n;
    for (int64_t j = end; j < n; j++)
        row[j] = -INFINITY;
    if (m->keep)
        for (int64_t j = 0; j < end; j++)
            row[j] = m->keep[j] ? row[j] : -INFINITY;
    /* A -INFINITY bias masks the key whatever its logit: NaN + -Inf would be
     * NaN and leak a masked key's NaN into the whole row. */
    if (m->bias)
        for (int64_t j = 0; j < end; j++)
            row[j] = m->bias[j] == -INFINITY ? -INFINITY : row[j] + m->bias[j];

    float max = -INFINITY;
    int64_t visible = 0;
    for (int64_t j = 0; j < end; j++) {
        max = row[j] > max ? row[j] : max;
        visible += row[j] != -INFINITY;
    }
    *max_out = max;
    return visible;
}

/* Pass 2: row[j] = exp(row[j] − max); returns the sum (in double: the sum of
 * up to len_kv terms in [0, 1] loses no digit that matters that way). */
static double exp_and_sum(float *row, int64_t n, float max)
{
    double sum = 0.0;
    for (int64_t j = 0; j < n; j++) {
        row[j] = expf(row[j] - max);
        sum += row[j];
    }
    return sum;
}

float attn_softmax_row(float *row, int64_t n, const attn_row_mask *m)
{
    float max;
    if (mask_and_max(row, n, m, &max) == 0) {
        memset(row, 0, (size_t)n * sizeof *row);
        return -INFINITY;
    }
    /* Every visible logit NaN: max stayed -INFINITY; x − max would be +Inf
     * or NaN, so make the NaN explicit instead of relying on that. */
    if (max == -INFINITY)
        max = NAN;
    double sum = exp_and_sum(row, n, max);
    float inv = (float)(1.0 / sum);
    for (int64_t j = 0; j < n; j++)
        row[j] *= inv;
    return max + (float)log(sum);
}
