/*
 * linear.c — y = x Wᵀ + b, the projection of torch.nn.Linear, as one
 * cblas_sgemm over all rows (batch × sequence) followed by the bias.
 */
#include "attn_internal.h"

void attn_linear(int64_t rows, int64_t in_features, int64_t out_features, const float *x,
                 const float *w, const float *b, float *y)
{
    if (rows == 0)
        return;
    attn_gemm_nt(rows, out_features, in_features, 1.0f, x, in_features, w, in_features, 0.0f, y,
                 out_features);
    if (!b)
        return;
    for (int64_t r = 0; r < rows; r++) {
        float *row = y + r * out_features;
        for (int64_t j = 0; j < out_features; j++)
            row[j] += b[j];
    }
}
