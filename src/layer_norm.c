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
 *
 * The encoder layer calls the row functions from its passes; attn_layer_norm
 * and attn_layer_norm_backward, the public calls at the end, run them over
 * rows on the calling thread (a pre-norm stack's final norm, an output
 * network's norm).
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

static row_stats compute_stats(const float *x, int64_t n, float eps)
{
    double mean = row_sum(x, n) / (double)n;
    double var = row_squared_deviation(x, n, mean) / (double)n;
    row_stats s = {.hi = (float)mean, .rstd = (float)(1.0 / sqrt(var + (double)eps))};
    s.lo = (float)(mean - (double)s.hi);
    return s;
}

void attn_layer_norm_row(const float *x, int64_t n, const float *weight, const float *bias,
                         float eps, float *y, float *stats)
{
    row_stats s = compute_stats(x, n, eps);
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
    for (int64_t c = 0; c < m; c++) {
        if (d_weight)
            d_weight[c0 + c] = (float)sw[c];
        if (d_bias)
            d_bias[c0 + c] = (float)sb[c];
    }
}

/* ---- the public calls ------------------------------------------------------- */

/* The checks both calls share: the sizes, eps, x and weight. */
static attn_status check_common(int64_t rows, int64_t features, float eps, const float *x,
                                const float *weight, const char *f)
{
    attn_status st;
    const int64_t one[1] = {features};
    static const char *feature_name[1] = {"features"};
    if (rows < 0)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "rows (%lld) is negative",
                         (long long)rows);
    if ((st = attn_check_min(one, feature_name, 1, 1, f)) != ATTN_OK)
        return st;
    if (!(isfinite(eps) && eps > 0.0f))
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "eps (%g) is not finite and > 0",
                         (double)eps);
    const int64_t dims[2] = {rows, features};
    if ((st = attn_check_tensor(dims, 2, "x", f)) != ATTN_OK ||
        (st = attn_check_data(x, rows * features, "x", f)) != ATTN_OK)
        return st;
    return attn_check_data(weight, features, "weight", f);
}

attn_status attn_layer_norm(int64_t rows, int64_t features, const float *x, const float *weight,
                            const float *bias, float eps, float *y)
{
    static const char *f = "attn_layer_norm";
    attn_status st = check_common(rows, features, eps, x, weight, f);
    if (st != ATTN_OK)
        return st;
    int64_t n = rows * features;  /* fits: check_common checked x's size */
    if ((st = attn_check_data(bias, features, "bias", f)) != ATTN_OK ||
        (st = attn_check_data(y, n, "y", f)) != ATTN_OK)
        return st;
    size_t bytes = (size_t)n * sizeof(float), row = (size_t)features * sizeof(float);
    if (y != x && attn_ranges_overlap(y, bytes, x, bytes))
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "y overlaps x without being x");
    if (attn_ranges_overlap(y, bytes, weight, row) || attn_ranges_overlap(y, bytes, bias, row))
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "y overlaps weight or bias");
    for (int64_t r = 0; r < rows; r++)
        attn_layer_norm_row(x + r * features, features, weight, bias, eps, y + r * features,
                            NULL);
    return ATTN_OK;
}

attn_status attn_layer_norm_backward(int64_t rows, int64_t features, const float *x,
                                     const float *weight, float eps, const float *d_y,
                                     float *d_x, float *d_weight, float *d_bias)
{
    static const char *f = "attn_layer_norm_backward";
    attn_status st = check_common(rows, features, eps, x, weight, f);
    if (st != ATTN_OK)
        return st;
    int64_t n = rows * features;  /* fits: check_common checked x's size */
    if ((st = attn_check_data(d_y, n, "d_y", f)) != ATTN_OK)
        return st;
    /* d_x may be d_y (in place); nothing else may share a byte. */
    size_t nr = (size_t)rows, nf = (size_t)features;
    const attn_buffer in[3] = {{x, nr, nf, "x"}, {weight, 1, nf, "weight"},
                               {d_x == d_y ? NULL : d_y, nr, nf, "d_y"}};
    const attn_buffer out[3] = {{d_x, nr, nf, "d_x"}, {d_weight, 1, nf, "d_weight"},
                                {d_bias, 1, nf, "d_bias"}};
    if ((st = attn_check_outputs_disjoint(out, 3, 0, in, 3, f)) != ATTN_OK)
        return st;
    size_t row_bytes = nf * sizeof(float), all_bytes = (size_t)n * sizeof(float);
    if (d_x == d_y && (attn_ranges_overlap(d_weight, row_bytes, d_y, all_bytes) ||
                       attn_ranges_overlap(d_bias, row_bytes, d_y, all_bytes)))
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "d_weight or d_bias overlaps d_y");
    float *stats = attn_alloc((size_t)(rows > 0 ? rows : 1) * ATTN_LAYER_NORM_STATS *
                              sizeof(float));
    if (!stats)
        return attn_fail(ATTN_ERR_OUT_OF_MEMORY, f, "cannot allocate the rows' statistics");
    /* The statistics once (the forward's own code, so the same floats), then
     * the parameters' gradients before d_x, which may overwrite d_y. */
    for (int64_t r = 0; r < rows; r++) {
        row_stats rs = compute_stats(x + r * features, features, eps);
        float *sr = stats + ATTN_LAYER_NORM_STATS * r;
        sr[0] = rs.hi, sr[1] = rs.lo, sr[2] = rs.rstd;
    }
    if (d_weight || d_bias)
        for (int64_t c0 = 0; c0 < features; c0 += ATTN_LAYER_NORM_FEATURE_BLOCK) {
            int64_t m = features - c0 < ATTN_LAYER_NORM_FEATURE_BLOCK
                            ? features - c0 : ATTN_LAYER_NORM_FEATURE_BLOCK;
            attn_layer_norm_param_grads(x, stats, d_y, rows, features, c0, m, d_weight, d_bias);
        }
    if (d_x)
        for (int64_t r = 0; r < rows; r++)
            attn_layer_norm_backward_row(x + r * features, stats + ATTN_LAYER_NORM_STATS * r,
                                         weight, d_y + r * features, features, NULL,
                                         d_x + r * features);
    attn_free(stats);
    return ATTN_OK;
}
