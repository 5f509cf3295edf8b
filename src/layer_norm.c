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
 * run in float with the mean split in two floats, hi + lo: x − hi is exact
 * for x near the mean (Sterbenz), so x̂ = ((x − hi) − lo) · rstd keeps its
 * digits where x − (float)mean would not (a row of 1e4 ± 1e-2: float's
 * spacing at 1e4 is 1e-3, and x̂ would be 5% off). The backward, with
 * g = dy · weight:
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

/* A row's statistics: the mean as hi + lo, and rstd. */
typedef struct row_stats {
    float hi, lo, rstd;
} row_stats;

static row_stats stats_of(const float *stats)
{
    return (row_stats){stats[0], stats[1], stats[2]};
}

ATTN_VECTOR_CLONES
static void normalise(const float *x, int64_t n, row_stats s, const float *weight,
                      const float *bias, float *y)
{
#pragma omp simd
    for (int64_t j = 0; j < n; j++)
        y[j] = ((x[j] - s.hi) - s.lo) * s.rstd * weight[j] + bias[j];
}

void attn_layer_norm_row(const float *x, int64_t n, const float *weight, const float *bias,
                         float eps, float *y, float *stats)
{
    double mean = row_sum(x, n) / (double)n;
    double var = row_squared_deviation(x, n, mean) / (double)n;
    row_stats s = {.hi = (float)mean, .rstd = (float)(1.0 / sqrt(var + (double)eps))};
    s.lo = (float)(mean - (double)s.hi);
    normalise(x, n, s, weight, bias, y);
    if (stats)
        stats[0] = s.hi, stats[1] = s.lo, stats[2] = s.rstd;
}

/* Σ g and Σ g · x̂ of a row, g = dy · weight. */
ATTN_VECTOR_CLONES
static void backward_sums(const float *x, const float *dy, const float *weight, int64_t n,
                          row_stats s, double *sum_g, double *sum_gx)
{
    double sg = 0.0, sgx = 0.0;
#pragma omp simd reduction(+ : sg, sgx)
    for (int64_t j = 0; j < n; j++) {
        float g = dy[j] * weight[j];
        sg += g;
        sgx += g * (((x[j] - s.hi) - s.lo) * s.rstd);
    }
    *sum_g = sg, *sum_gx = sgx;
}

ATTN_VECTOR_CLONES
static void backward_row(const float *x, const float *dy, const float *weight, int64_t n,
                         row_stats s, float mean_g, float mean_gx, const float *add, float *dx)
{
    if (add) {
#pragma omp simd
        for (int64_t j = 0; j < n; j++)
            dx[j] = add[j] + s.rstd * (dy[j] * weight[j] - mean_g -
                                       ((x[j] - s.hi) - s.lo) * s.rstd * mean_gx);
    } else {
#pragma omp simd
        for (int64_t j = 0; j < n; j++)
            dx[j] = s.rstd * (dy[j] * weight[j] - mean_g -
                              ((x[j] - s.hi) - s.lo) * s.rstd * mean_gx);
    }
}

void attn_layer_norm_backward_row(const float *x, const float *stats, const float *weight,
                                  const float *dy, int64_t n, const float *add, float *dx)
{
    row_stats s = stats_of(stats);
    double sum_g, sum_gx;
    backward_sums(x, dy, weight, n, s, &sum_g, &sum_gx);
    backward_row(x, dy, weight, n, s, (float)(sum_g / (double)n), (float)(sum_gx / (double)n),
                 add, dx);
}

/* Adds a row's dy · x̂ and dy to the sums of features [c0, c0 + m). */
ATTN_VECTOR_CLONES
static void accumulate_row(const float *x, const float *dy, row_stats s, int64_t m, double *sw,
                           double *sb)
{
#pragma omp simd
    for (int64_t c = 0; c < m; c++) {
        sw[c] += dy[c] * (((x[c] - s.hi) - s.lo) * s.rstd);
        sb[c] += dy[c];
    }
}

void attn_layer_norm_param_grads(const float *x, const float *stats, const float *dy,
                                 int64_t rows, int64_t n, int64_t c0, int64_t m,
                                 float *d_weight, float *d_bias)
{
    double sw[ATTN_LAYER_NORM_FEATURE_BLOCK] = {0}, sb[ATTN_LAYER_NORM_FEATURE_BLOCK] = {0};
    for (int64_t r = 0; r < rows; r++)
        accumulate_row(x + r * n + c0, dy + r * n + c0,
                       stats_of(stats + ATTN_LAYER_NORM_STATS * r), m, sw, sb);
    for (int64_t c = 0; c < m; c++)
        d_weight[c0 + c] = (float)sw[c], d_bias[c0 + c] = (float)sb[c];
}
