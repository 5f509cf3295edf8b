/*
 * layer_norm.c — layer normalisation (Ba, Kiros and Hinton 2016, eq. 4;
 * torch.nn.LayerNorm; D2L §10.7.2's "add & norm") of one row of features,
 * its backward, and the gradients of its weight and bias.
 *
 *   y = x̂ · weight + bias,  x̂ = (x − mean) · rstd,  rstd = 1 / sqrt(var + eps)
 *
 * with the biased variance (divided by n), as PyTorch. The sums run in
 * double (two passes: the mean, then the squared deviations), so a row of
 * large, nearly equal features keeps its variance; the element-wise parts
 * run in float. The backward, with g = dy · weight:
 *
 *   dx = rstd · (g − mean(g) − x̂ · mean(g · x̂))
 *   d_weight = Σ_rows dy · x̂,   d_bias = Σ_rows dy
 *
 * The parameter gradients sum every row in order on one thread per block
 * of features, so their bits do not depend on the thread count.
 */
#include <math.h>

#include "attn_internal.h"

ATTN_VECTOR_CLONES
static double row_sum(const float *x, int64_t n)
{
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < n; j++)
        s += x[j];
    return s;
}

ATTN_VECTOR_CLONES
static double row_squared_deviation(const float *x, int64_t n, double mean)
{
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < n; j++) {
        double d = x[j] - mean;
        s += d * d;
    }
    return s;
}

ATTN_VECTOR_CLONES
static void normalise(const float *x, int64_t n, float mean, float rstd, const float *weight,
                      const float *bias, float *y)
{
#pragma omp simd
    for (int64_t j = 0; j < n; j++)
        y[j] = (x[j] - mean) * rstd * weight[j] + bias[j];
}

void attn_layer_norm_row(const float *x, int64_t n, const float *weight, const float *bias,
                         float eps, float *y, float *stats)
{
    double mean = row_sum(x, n) / (double)n;
    double var = row_squared_deviation(x, n, mean) / (double)n;
    float rstd = (float)(1.0 / sqrt(var + (double)eps));
    normalise(x, n, (float)mean, rstd, weight, bias, y);
    if (stats)
        stats[0] = (float)mean, stats[1] = rstd;
}

/* Σ g and Σ g · x̂ of a row, g = dy · weight. */
ATTN_VECTOR_CLONES
static void backward_sums(const float *x, const float *dy, const float *weight, int64_t n,
                          float mean, float rstd, double *sum_g, double *sum_gx)
{
    double sg = 0.0, sgx = 0.0;
#pragma omp simd reduction(+ : sg, sgx)
    for (int64_t j = 0; j < n; j++) {
        float g = dy[j] * weight[j];
        sg += g;
        sgx += g * ((x[j] - mean) * rstd);
    }
    *sum_g = sg, *sum_gx = sgx;
}

ATTN_VECTOR_CLONES
static void backward_row(const float *x, const float *dy, const float *weight, int64_t n,
                         float mean, float rstd, float mean_g, float mean_gx, const float *add,
                         float *dx)
{
    if (add) {
#pragma omp simd
        for (int64_t j = 0; j < n; j++)
            dx[j] = add[j] + rstd * (dy[j] * weight[j] - mean_g - (x[j] - mean) * rstd * mean_gx);
    } else {
#pragma omp simd
        for (int64_t j = 0; j < n; j++)
            dx[j] = rstd * (dy[j] * weight[j] - mean_g - (x[j] - mean) * rstd * mean_gx);
    }
}

void attn_layer_norm_backward_row(const float *x, const float *stats, const float *weight,
                                  const float *dy, int64_t n, const float *add, float *dx)
{
    float mean = stats[0], rstd = stats[1];
    double sum_g, sum_gx;
    backward_sums(x, dy, weight, n, mean, rstd, &sum_g, &sum_gx);
    backward_row(x, dy, weight, n, mean, rstd, (float)(sum_g / (double)n),
                 (float)(sum_gx / (double)n), add, dx);
}

/* Adds row r's dy · x̂ and dy to the sums of features [c0, c0 + m). */
ATTN_VECTOR_CLONES
static void accumulate_row(const float *x, const float *dy, float mean, float rstd, int64_t m,
                           double *sw, double *sb)
{
#pragma omp simd
    for (int64_t c = 0; c < m; c++) {
        sw[c] += dy[c] * ((x[c] - mean) * rstd);
        sb[c] += dy[c];
    }
}

void attn_layer_norm_param_grads(const float *x, const float *stats, const float *dy,
                                 int64_t rows, int64_t n, int64_t c0, int64_t m,
                                 float *d_weight, float *d_bias)
{
    double sw[ATTN_LAYER_NORM_FEATURE_BLOCK] = {0}, sb[ATTN_LAYER_NORM_FEATURE_BLOCK] = {0};
    for (int64_t r = 0; r < rows; r++)
        accumulate_row(x + r * n + c0, dy + r * n + c0, stats[2 * r], stats[2 * r + 1], m, sw,
                       sb);
    for (int64_t c = 0; c < m; c++)
        d_weight[c0 + c] = (float)sw[c], d_bias[c0 + c] = (float)sb[c];
}
