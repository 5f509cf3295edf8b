/*
 * test_encoder.c — the encoder layer's parts and its dropout, against
 * float64 references written here (PyTorch's numbers without dropout are
 * tests/test_encoder_torch.c's):
 *
 *  1. layer normalisation of a row (layer_norm.c), its backward and its
 *     parameters' gradients, on rows of very different scales — among them
 *     a large mean with a tiny spread, which a one-pass variance would
 *     lose; and the public attn_layer_norm and attn_layer_norm_backward
 *     (in place, NULL outputs, argument errors);
 *  2. ReLU and the exact GELU (relu_gelu.c) and their derivatives over
 *     [-12, 12], and NaN staying NaN;
 *  3. the layer with dropout at all four places (attention weights, after
 *     the activation, each block's output), post-norm and pre-norm, ReLU
 *     and GELU, causal: the training forward equals a float64 layer that
 *     applies the documented keep decisions (drawn here from the library's
 *     Philox, whose known answers test_dropout.c checks), and every
 *     gradient equals central finite differences of that float64 layer —
 *     so forward and backward apply the same masks at the same places;
 *  4. 1, 2 and 3 threads give the same bits, forward and backward, and out
 *     may be src.
 * The internal functions are reached by linking the library's objects.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../src/attn_internal.h"
#include "test_util.h"

static double *doubles(size_t n)
{
    double *p = calloc(n ? n : 1, sizeof *p);
    assert_non_null(p);
    return p;
}

static float *floats(size_t n)
{
    float *p = calloc(n ? n : 1, sizeof *p);
    assert_non_null(p);
    return p;
}

/* ---- 1. layer normalisation ------------------------------------------------ */

/* Float64 LayerNorm of one row: y, and x̂ for the backward. */
static void ref_layer_norm(const float *x, int64_t n, const float *w, const float *b, double eps,
                          double *y, double *xhat, double *rstd)
{
    double mean = 0.0, var = 0.0;
    for (int64_t j = 0; j < n; j++)
        mean += x[j];
    mean /= (double)n;
    for (int64_t j = 0; j < n; j++)
        var += (x[j] - mean) * (x[j] - mean);
    *rstd = 1.0 / sqrt(var / (double)n + eps);
    for (int64_t j = 0; j < n; j++) {
        xhat[j] = (x[j] - mean) * *rstd;
        y[j] = xhat[j] * w[j] + b[j];
    }
}

static void test_layer_norm_against_float64(void **state)
{
    (void)state;
    enum { ROWS = 6, N = 200 };
    /* (mean, spread) per row: unit, tiny, huge, a large mean with a small
     * spread, a constant row (variance 0: x̂ = 0, y = bias), and a short one. */
    static const double shape[ROWS][2] = {{0, 1}, {0, 1e-3}, {0, 1e4}, {1e4, 1e-2},
                                          {3, 0}, {-2, 5}};
    tu_rng rng;
    tu_rng_seed(&rng, 1);
    float *x = floats(ROWS * N), *w = floats(N), *b = floats(N), *dy = floats(ROWS * N);
    float *y = floats(ROWS * N), *dx = floats(ROWS * N);
    float *stats = floats(ATTN_LAYER_NORM_STATS * ROWS);
    float *dw = floats(N), *db = floats(N);
    double *ry = doubles(N), *xhat = doubles(ROWS * N), *rdx = doubles(N);
    double *rdw = doubles(N), *rdb = doubles(N), rstd;
    tu_fill_uniform(&rng, w, N, 0.5f, 1.5f);
    tu_fill_uniform(&rng, b, N, -0.5f, 0.5f);
    tu_fill_normal(&rng, dy, ROWS * N, 0.0f, 1.0f);
    const double eps = 1e-5;
    for (int r = 0; r < ROWS; r++) {
        float *xr = x + r * N;
        for (int j = 0; j < N; j++)
            xr[j] = (float)(shape[r][0] + shape[r][1] * tu_normal(&rng));
        attn_layer_norm_row(xr, N, w, b, (float)eps, y + r * N, stats + ATTN_LAYER_NORM_STATS * r);
        ref_layer_norm(xr, N, w, b, eps, ry, xhat + r * N, &rstd);
        double e = tu_max_err(y + r * N, ry, N, N, NULL);
        print_message("row %d (mean %g, spread %g): y error %.2g\n", r, shape[r][0],
                      shape[r][1], e);
        assert_true(e <= 1e-6);
        /* dx = rstd (g − mean g − x̂ mean(g x̂)), g = dy · w. */
        const float *dyr = dy + r * N;
        double mg = 0.0, mgx = 0.0;
        for (int j = 0; j < N; j++)
            mg += dyr[j] * (double)w[j], mgx += dyr[j] * (double)w[j] * xhat[r * N + j];
        mg /= N, mgx /= N;
        for (int j = 0; j < N; j++)
            rdx[j] = rstd * (dyr[j] * (double)w[j] - mg - xhat[r * N + j] * mgx);
        attn_layer_norm_backward_row(xr, stats + ATTN_LAYER_NORM_STATS * r, w, dyr, N, NULL,
                                     dx + r * N);
        /* Rows with a spread far below eps are scaled by 1/sqrt(eps): judge
         * them against that scale (their dx is rounding of large terms). */
        double scale = 0.0;
        for (int j = 0; j < N; j++)
            scale = fmax(scale, fabs(rstd * dyr[j] * w[j]));
        double ed = 0.0;
        for (int j = 0; j < N; j++)
            ed = fmax(ed, fabs(dx[r * N + j] - rdx[j]) / scale);
        print_message("        dx error %.2g\n", ed);
        assert_true(ed <= 1e-5);
    }
    for (int j = 0; j < N; j++)
        for (int r = 0; r < ROWS; r++)
            rdw[j] += dy[r * N + j] * xhat[r * N + j], rdb[j] += dy[r * N + j];
    for (int c0 = 0; c0 < N; c0 += ATTN_LAYER_NORM_FEATURE_BLOCK) {
        int m = N - c0 < ATTN_LAYER_NORM_FEATURE_BLOCK ? N - c0 : ATTN_LAYER_NORM_FEATURE_BLOCK;
        attn_layer_norm_param_grads(x, stats, dy, ROWS, N, c0, m, dw, db);
    }
    double ew = tu_max_err(dw, rdw, N, N, NULL), eb = tu_max_err(db, rdb, N, N, NULL);
    print_message("d_weight error %.2g, d_bias error %.2g\n", ew, eb);
    assert_true(ew <= 1e-5 && eb <= 1e-6);
    free(x), free(w), free(b), free(dy), free(y), free(stats), free(dx), free(dw), free(db);
    free(ry), free(xhat), free(rdx), free(rdw), free(rdb);
}

/* The public calls: the same numbers over many rows, in place, NULL
 * outputs, and their argument checks (no output written on failure). */
static void test_layer_norm_public_calls(void **state)
{
    (void)state;
    enum { ROWS = 5, N = 70 };
    tu_rng rng;
    tu_rng_seed(&rng, 2);
    float x[ROWS * N], w[N], b[N], dy[ROWS * N], y[ROWS * N], inplace[ROWS * N];
    float dx[ROWS * N], dx2[ROWS * N], dw[N], db[N], dw2[N];
    double ry[N], xhat[ROWS * N], rstd[ROWS], rdw[N] = {0}, rdb[N] = {0};
    tu_fill_normal(&rng, x, ROWS * N, 3.0f, 2.0f);
    tu_fill_uniform(&rng, w, N, 0.5f, 1.5f);
    tu_fill_uniform(&rng, b, N, -0.5f, 0.5f);
    tu_fill_normal(&rng, dy, ROWS * N, 0.0f, 1.0f);
    assert_int_equal(attn_layer_norm(ROWS, N, x, w, b, 1e-5f, y), ATTN_OK);
    memcpy(inplace, x, sizeof x);
    assert_int_equal(attn_layer_norm(ROWS, N, inplace, w, b, 1e-5f, inplace), ATTN_OK);
    assert_memory_equal(inplace, y, sizeof y);
    double ey = 0.0;
    for (int r = 0; r < ROWS; r++) {
        ref_layer_norm(x + r * N, N, w, b, 1e-5, ry, xhat + r * N, &rstd[r]);
        ey = fmax(ey, tu_max_err(y + r * N, ry, N, N, NULL));
    }
    assert_int_equal(attn_layer_norm_backward(ROWS, N, x, w, 1e-5f, dy, dx, dw, db), ATTN_OK);
    double edx = 0.0, ep = 0.0;
    for (int r = 0; r < ROWS; r++) {
        double mg = 0.0, mgx = 0.0, scale = 0.0, rdx[N];
        for (int j = 0; j < N; j++) {
            double g = dy[r * N + j] * (double)w[j];
            mg += g / N, mgx += g * xhat[r * N + j] / N;
            rdw[j] += dy[r * N + j] * xhat[r * N + j], rdb[j] += dy[r * N + j];
        }
        for (int j = 0; j < N; j++) {
            rdx[j] = rstd[r] * (dy[r * N + j] * (double)w[j] - mg - xhat[r * N + j] * mgx);
            scale = fmax(scale, fabs(rdx[j]));
        }
        for (int j = 0; j < N; j++)
            edx = fmax(edx, fabs(dx[r * N + j] - rdx[j]) / scale);
    }
    ep = fmax(tu_max_err(dw, rdw, N, N, NULL), tu_max_err(db, rdb, N, N, NULL));
    print_message("attn_layer_norm: y %.2g; backward: d_x %.2g, d_weight and d_bias %.2g\n",
                  ey, edx, ep);
    assert_true(ey <= 1e-6 && edx <= 1e-5 && ep <= 1e-5);
    /* d_x in place over d_y, d_bias not asked for: the same bits. */
    memcpy(dx2, dy, sizeof dy);
    assert_int_equal(attn_layer_norm_backward(ROWS, N, x, w, 1e-5f, dx2, dx2, dw2, NULL),
                     ATTN_OK);
    assert_memory_equal(dx2, dx, sizeof dx);
    assert_memory_equal(dw2, dw, sizeof dw);
    /* Errors: status, and the output untouched. */
    memcpy(dx2, dx, sizeof dx);
    assert_int_equal(attn_layer_norm(ROWS, 0, x, w, b, 1e-5f, y), ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_layer_norm(-1, N, x, w, b, 1e-5f, y), ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_layer_norm(ROWS, N, x, w, b, 0.0f, y), ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_layer_norm(ROWS, N, x, w, b, NAN, y), ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_layer_norm(ROWS, N, x, NULL, b, 1e-5f, y), ATTN_ERR_NULL_POINTER);
    assert_non_null(strstr(attn_last_error(), "weight is NULL"));
    assert_int_equal(attn_layer_norm(ROWS, N, x, w, b, 1e-5f, x + 1), ATTN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(attn_last_error(), "y overlaps x"));
    assert_int_equal(attn_layer_norm(0, N, NULL, w, b, 1e-5f, NULL), ATTN_OK);
    /* Sizes whose byte count overflows: refused before anything is read. */
    assert_int_equal(attn_layer_norm(INT64_MAX / 2, N, x, w, b, 1e-5f, y),
                     ATTN_ERR_SIZE_OVERFLOW);
    assert_int_equal(attn_layer_norm_backward(INT64_MAX, 2, x, w, 1e-5f, dy, dx2, NULL, NULL),
                     ATTN_ERR_SIZE_OVERFLOW);
    assert_int_equal(attn_layer_norm_backward(ROWS, N, x, w, 1e-5f, dy, dx2, dx2 + 3, NULL),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_layer_norm_backward(ROWS, N, x, w, 1e-5f, dy, dx2, NULL, dy),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_layer_norm_backward(ROWS, N, x, w, 1e-5f, NULL, dx2, NULL, NULL),
                     ATTN_ERR_NULL_POINTER);
    assert_memory_equal(dx2, dx, sizeof dx);
}

/* ---- 2. activations --------------------------------------------------------- */

/* The activation and its derivative; *terms = the size of the derivative's
 * terms (|Φ| + |x φ|), the scale of its rounding where they cancel (GELU's
 * derivative is 0 at x ≈ −0.75). */
static double ref_activation(attn_activation a, double x, double *derivative, double *terms)
{
    if (a == ATTN_ACTIVATION_RELU) {
        *derivative = *terms = x > 0 ? 1.0 : 0.0;
        return x > 0 ? x : 0.0;
    }
    double cdf = 0.5 * erfc(-x / sqrt(2.0));
    double xpdf = x * exp(-0.5 * x * x) / sqrt(2.0 * 3.14159265358979323846);
    *derivative = cdf + xpdf;
    *terms = cdf + fabs(xpdf);
    return x * cdf;
}

static void test_activations_against_float64(void **state)
{
    (void)state;
    enum { N = 4801 };
    float *x = floats(N), *y = floats(N), *dy = floats(N), *dx = floats(N);
    for (int i = 0; i < N; i++)
        x[i] = -12.0f + 24.0f * (float)i / (N - 1), dy[i] = 1.0f - 0.25f * (float)(i % 7);
    for (int a = ATTN_ACTIVATION_RELU; a <= ATTN_ACTIVATION_GELU; a++) {
        attn_activation_forward((attn_activation)a, x, y, N);
        attn_activation_backward((attn_activation)a, x, dy, dx, N);
        double ey = 0.0, ed = 0.0;
        for (int i = 0; i < N; i++) {
            double d, terms, r = ref_activation((attn_activation)a, x[i], &d, &terms);
            /* Relative to the value itself (GELU tends to 0 through −2e-32
             * at x = −12, and must keep its digits there), in units of the
             * function's condition number 1 + x²: the float32 rounding of
             * x/√2 alone moves erfc(−x/√2) by x² · 2^-24 relative. */
            double cond = 1.0 + (double)x[i] * x[i];
            ey = fmax(ey, (r == 0.0 ? fabs(y[i]) : fabs(y[i] - r) / fabs(r)) / cond);
            ed = fmax(ed, (terms == 0.0 ? fabs(dx[i])
                                        : fabs(dx[i] - dy[i] * d) / (fabs(dy[i]) * terms)) /
                              cond);
        }
        print_message("%s: value error %.2g, derivative error %.2g (relative, per 1 + x²)\n",
                      a ? "GELU" : "ReLU", ey, ed);
        assert_true(ey <= 2.5e-7 && ed <= 2.5e-7);
        float nan_in = NAN, nan_out;
        attn_activation_forward((attn_activation)a, &nan_in, &nan_out, 1);
        assert_true(isnan(nan_out));
    }
    free(x), free(y), free(dy), free(dx);
}

/* ---- 3. the layer with dropout, against a float64 layer ---------------------- */

typedef struct config {
    const char *name;
    int64_t d, heads, ff;
    attn_activation activation;
    int norm_first;
    int64_t batch, len;
    attn_causal causal;
    float p;
    uint64_t seed;
} config;

/* The keep decisions as multipliers (0 or 1/(1 − p)), drawn from the
 * library's generator: attention [B, H, L, L], the activation [n, ff], the
 * blocks' outputs [n, d] each. */
typedef struct masks {
    double *attn, *ff, *block1, *block2;
} masks;

static double *element_multipliers(const attn_dropout *drop, uint32_t site, int64_t rows,
                                   int64_t n)
{
    double *m = doubles((size_t)(rows * n));
    float *row = floats((size_t)n);
    for (int64_t r = 0; r < rows; r++) {
        for (int64_t c = 0; c < n; c++)
            row[c] = 1.0f;
        attn_dropout_apply_elements(drop, site, r, row, n);
        for (int64_t c = 0; c < n; c++)
            m[r * n + c] = row[c];
    }
    free(row);
    return m;
}

static masks make_masks(const config *c)
{
    attn_dropout drop = attn_dropout_make(c->p, c->seed);
    int64_t rows = c->batch * c->len;
    masks m = {doubles((size_t)(c->batch * c->heads * c->len * c->len)), NULL, NULL, NULL};
    uint8_t *keep = calloc((size_t)c->len, 1);
    for (int64_t bh = 0; bh < c->batch * c->heads; bh++)
        for (int64_t i = 0; i < c->len; i++) {
            attn_dropout_keep_row(&drop, bh, i, keep, c->len);
            for (int64_t j = 0; j < c->len; j++)
                m.attn[(bh * c->len + i) * c->len + j] = keep[j] ? (double)drop.scale : 0.0;
        }
    free(keep);
    m.ff = element_multipliers(&drop, ATTN_DROP_SITE_FF, rows, c->ff);
    m.block1 = element_multipliers(&drop, ATTN_DROP_SITE_BLOCK1, rows, c->d);
    m.block2 = element_multipliers(&drop, ATTN_DROP_SITE_BLOCK2, rows, c->d);
    return m;
}

static void free_masks(masks *m)
{
    free(m->attn), free(m->ff), free(m->block1), free(m->block2);
}

/* y[rows, out] = x[rows, in] · Wᵀ + b. */
static void ref_linear(const double *x, const double *w, const double *b, int64_t rows,
                       int64_t in, int64_t out, double *y)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < out; o++) {
            double s = b[o];
            for (int64_t i = 0; i < in; i++)
                s += x[r * in + i] * w[o * in + i];
            y[r * out + o] = s;
        }
}

static void ref_norm_rows(const double *x, const double *w, const double *b, int64_t rows,
                          int64_t n, double *y)
{
    for (int64_t r = 0; r < rows; r++) {
        const double *xr = x + r * n;
        double mean = 0.0, var = 0.0;
        for (int64_t j = 0; j < n; j++)
            mean += xr[j];
        mean /= (double)n;
        for (int64_t j = 0; j < n; j++)
            var += (xr[j] - mean) * (xr[j] - mean);
        double rstd = 1.0 / sqrt(var / (double)n + 1e-5);
        for (int64_t j = 0; j < n; j++)
            y[r * n + j] = (xr[j] - mean) * rstd * w[j] + b[j];
    }
}

/* out = self-attention of y (nn.MultiheadAttention's numbers, causal if
 * set, weights times the dropout multipliers). */
static void ref_attention(const config *c, const masks *m, const double *p, const double *y,
                          double *out)
{
    int64_t d = c->d, n = c->batch * c->len, hd = d / c->heads, L = c->len;
    double *q = doubles((size_t)(3 * n * d)), *k = q + n * d, *v = k + n * d;
    double *a = doubles((size_t)(n * d)), *s = doubles((size_t)L);
    const double *wo = p + 3 * d * d + 3 * d;
    ref_linear(y, p, p + 3 * d * d, n, d, d, q);
    ref_linear(y, p + d * d, p + 3 * d * d + d, n, d, d, k);
    ref_linear(y, p + 2 * d * d, p + 3 * d * d + 2 * d, n, d, d, v);
    for (int64_t b = 0; b < c->batch; b++)
        for (int64_t h = 0; h < c->heads; h++)
            for (int64_t i = 0; i < L; i++) {
                int64_t end = c->causal ? i + 1 : L;
                double max = -INFINITY, sum = 0.0;
                for (int64_t j = 0; j < end; j++) {
                    s[j] = 0.0;
                    for (int64_t t = 0; t < hd; t++)
                        s[j] += q[(b * L + i) * d + h * hd + t] * k[(b * L + j) * d + h * hd + t];
                    s[j] /= sqrt((double)hd);
                    max = fmax(max, s[j]);
                }
                for (int64_t j = 0; j < end; j++)
                    sum += (s[j] = exp(s[j] - max));
                const double *keep = m->attn + ((b * c->heads + h) * L + i) * L;
                for (int64_t t = 0; t < hd; t++) {
                    double acc = 0.0;
                    for (int64_t j = 0; j < end; j++)
                        acc += s[j] / sum * keep[j] * v[(b * L + j) * d + h * hd + t];
                    a[(b * L + i) * d + h * hd + t] = acc;
                }
            }
    ref_linear(a, wo, wo + d * d, n, d, d, out);
    free(q), free(a), free(s);
}

/* The whole layer in float64 with the masks: out [n, d]. */
static void ref_layer(const config *c, const masks *m, const double *p, const double *x,
                      double *out)
{
    int64_t d = c->d, ff = c->ff, n = c->batch * c->len;
    const double *t = p + 4 * d * d + 4 * d;  /* linear1, linear2, norm1, norm2 */
    const double *w1 = t, *b1 = w1 + ff * d, *w2 = b1 + ff, *b2 = w2 + d * ff;
    const double *n1w = b2 + d, *n1b = n1w + d, *n2w = n1b + d, *n2b = n2w + d;
    double *a = doubles((size_t)(n * d)), *h = doubles((size_t)(n * d));
    double *u = doubles((size_t)(n * d)), *hid = doubles((size_t)(n * ff));
    double *f = doubles((size_t)(n * d)), dummy;
    if (c->norm_first) {
        ref_norm_rows(x, n1w, n1b, n, d, u);
        ref_attention(c, m, p, u, a);
        for (int64_t i = 0; i < n * d; i++)
            h[i] = x[i] + a[i] * m->block1[i];
        ref_norm_rows(h, n2w, n2b, n, d, u);
    } else {
        ref_attention(c, m, p, x, a);
        for (int64_t i = 0; i < n * d; i++)
            u[i] = x[i] + a[i] * m->block1[i];
        ref_norm_rows(u, n1w, n1b, n, d, h);
        memcpy(u, h, (size_t)(n * d) * sizeof *u);
    }
    ref_linear(u, w1, b1, n, d, ff, hid);
    for (int64_t i = 0; i < n * ff; i++)
        hid[i] = ref_activation(c->activation, hid[i], &dummy, &dummy) * m->ff[i];
    ref_linear(hid, w2, b2, n, ff, d, f);
    for (int64_t i = 0; i < n * d; i++)
        out[i] = h[i] + f[i] * m->block2[i];
    if (!c->norm_first) {
        memcpy(u, out, (size_t)(n * d) * sizeof *u);
        ref_norm_rows(u, n2w, n2b, n, d, out);
    }
    free(a), free(h), free(u), free(hid), free(f);
}

typedef struct fd_problem {
    const config *c;
    const masks *m;
    double *p, *x, *out;
    const float *d_out;
} fd_problem;

static double ref_loss(const fd_problem *fp)
{
    int64_t n = fp->c->batch * fp->c->len * fp->c->d;
    ref_layer(fp->c, fp->m, fp->p, fp->x, fp->out);
    double loss = 0.0;
    for (int64_t i = 0; i < n; i++)
        loss += fp->out[i] * fp->d_out[i];
    return loss;
}

static double central_difference(fd_problem *fp, double *v)
{
    const double h = 1e-5, keep = *v;
    *v = keep + h;
    double up = ref_loss(fp);
    *v = keep - h;
    double down = ref_loss(fp);
    *v = keep;
    return (up - down) / (2.0 * h);
}

/* max |lib − fd| over [lo, hi), normalised by max(max |fd| there, floor). */
static double grad_error(const float *lib, const double *fd, int64_t lo, int64_t hi,
                         double floor)
{
    double scale = floor, e = 0.0;
    for (int64_t i = lo; i < hi; i++)
        scale = fmax(scale, fabs(fd[i]));
    for (int64_t i = lo; i < hi; i++)
        e = fmax(e, fabs(lib[i] - fd[i]) / scale);
    return e;
}

static attn_encoder_layer *make_layer(const config *c, tu_rng *rng, float *params,
                                      int64_t *count)
{
    attn_encoder_layer *l = NULL;
    assert_int_equal(attn_encoder_layer_create(&l, c->d, c->heads, c->ff, c->activation,
                                               c->norm_first, 1e-5f), ATTN_OK);
    assert_int_equal(attn_encoder_layer_param_count(l, count), ATTN_OK);
    int64_t d = c->d, norms = 4 * d * d + 4 * d + 2 * d * c->ff + c->ff + d;
    tu_fill_uniform(rng, params, (size_t)*count, -0.4f, 0.4f);
    for (int64_t i = 0; i < d; i++)  /* the norms' weights near 1 */
        params[norms + i] += 1.0f, params[norms + 2 * d + i] += 1.0f;
    assert_int_equal(attn_encoder_layer_set_params(l, params), ATTN_OK);
    assert_int_equal(attn_encoder_layer_set_causal(l, c->causal), ATTN_OK);
    assert_int_equal(attn_encoder_layer_set_dropout(l, c->p, c->seed), ATTN_OK);
    return l;
}

static void check_dropout_case(const config *c)
{
    tu_rng rng;
    tu_rng_seed(&rng, c->seed);
    int64_t n = c->batch * c->len, nd = n * c->d, count;
    float *params = floats(4 * (size_t)(c->d * c->d + c->d * c->ff) + 16 * (size_t)c->d +
                           (size_t)c->ff);
    attn_encoder_layer *l = make_layer(c, &rng, params, &count);
    float *x = floats((size_t)nd), *d_out = floats((size_t)nd), *out = floats((size_t)nd);
    float *d_src = floats((size_t)nd), *d_params = floats((size_t)count);
    tu_fill_normal(&rng, x, (size_t)nd, 0.0f, 1.0f);
    tu_fill_normal(&rng, d_out, (size_t)nd, 0.0f, 1.0f);
    attn_context *ctx = NULL;
    attn_activations *act = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    assert_int_equal(attn_activations_create(&act), ATTN_OK);
    assert_int_equal(attn_encoder_layer_forward(ctx, l, c->batch, c->len, x, NULL, out, act),
                     ATTN_OK);
    assert_int_equal(attn_encoder_layer_backward(ctx, l, act, d_out, d_src, d_params), ATTN_OK);

    masks m = make_masks(c);
    fd_problem fp = {c, &m, doubles((size_t)count), doubles((size_t)nd), doubles((size_t)nd),
                     d_out};
    for (int64_t i = 0; i < count; i++)
        fp.p[i] = params[i];
    for (int64_t i = 0; i < nd; i++)
        fp.x[i] = x[i];
    ref_loss(&fp);
    double e_out = tu_max_err(out, fp.out, nd, c->d, NULL);
    double *fd_src = doubles((size_t)nd), *fd_params = doubles((size_t)count);
    for (int64_t i = 0; i < nd; i++)
        fd_src[i] = central_difference(&fp, &fp.x[i]);
    for (int64_t i = 0; i < count; i++)
        fd_params[i] = central_difference(&fp, &fp.p[i]);
    /* One scale for the attention's parameters, where d_bk is 0 but for
     * rounding; each of the others on its own. */
    int64_t d = c->d, attn = 4 * d * d + 4 * d, ff = c->ff;
    const int64_t edges[] = {0, attn, attn + ff * d, attn + ff * d + ff, attn + 2 * ff * d + ff,
                             attn + 2 * ff * d + ff + d, count};
    double e_src = grad_error(d_src, fd_src, 0, nd, 0.0), e_params = 0.0;
    for (size_t b = 0; b + 1 < sizeof edges / sizeof edges[0]; b++)
        e_params = fmax(e_params, grad_error(d_params, fd_params, edges[b], edges[b + 1], 0.0));
    int64_t dropped = 0;
    for (int64_t i = 0; i < n * ff; i++)
        dropped += m.ff[i] == 0.0;
    print_message("%s: %lld of %lld activations dropped; out %.2g, d_src %.2g, d_params %.2g\n",
                  c->name, (long long)dropped, (long long)(n * ff), e_out, e_src, e_params);
    assert_true(dropped > 0 && dropped < n * ff);
    assert_true(e_out <= 1e-5);
    assert_true(e_src <= 1e-4 && e_params <= 1e-4);

    free_masks(&m);
    free(fp.p), free(fp.x), free(fp.out), free(fd_src), free(fd_params);
    free(params), free(x), free(d_out), free(out), free(d_src), free(d_params);
    attn_activations_destroy(act);
    attn_context_destroy(ctx);
    attn_encoder_layer_destroy(l);
}

static void test_dropout_against_float64(void **state)
{
    (void)state;
    static const config cases[] = {
        {"post-norm ReLU", 8, 2, 16, ATTN_ACTIVATION_RELU, 0, 2, 5, ATTN_CAUSAL_NONE, 0.25f, 7},
        {"post-norm GELU causal", 8, 2, 12, ATTN_ACTIVATION_GELU, 0, 2, 6, ATTN_CAUSAL_TOP_LEFT,
         0.3f, 8},
        {"pre-norm ReLU causal", 12, 3, 16, ATTN_ACTIVATION_RELU, 1, 1, 7, ATTN_CAUSAL_TOP_LEFT,
         0.2f, 9},
        {"pre-norm GELU", 8, 1, 16, ATTN_ACTIVATION_GELU, 1, 3, 4, ATTN_CAUSAL_NONE, 0.25f, 10},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_dropout_case(&cases[i]);
}

/* ---- 4. threads and in place ----------------------------------------------------- */

static void test_threads_same_bits(void **state)
{
    (void)state;
    for (int norm_first = 0; norm_first <= 1; norm_first++) {
        const config c = {"threads", 32, 4, 64, ATTN_ACTIVATION_GELU, norm_first, 3, 70,
                          ATTN_CAUSAL_TOP_LEFT, 0.1f, 11};
        tu_rng rng;
        tu_rng_seed(&rng, 12);
        int64_t nd = c.batch * c.len * c.d, count;
        float *params = floats(4 * (size_t)(c.d * c.d + c.d * c.ff) + 16 * (size_t)c.d +
                               (size_t)c.ff);
        attn_encoder_layer *l = make_layer(&c, &rng, params, &count);
        float *x = floats((size_t)nd), *d_out = floats((size_t)nd);
        tu_fill_normal(&rng, x, (size_t)nd, 0.0f, 1.0f);
        tu_fill_normal(&rng, d_out, (size_t)nd, 0.0f, 1.0f);
        float *res[4][4];  /* by thread count: out, d_src, d_params, inference out */
        for (int t = 1; t <= 3; t++) {
            attn_context *ctx = NULL;
            attn_activations *act = NULL;
            assert_int_equal(attn_context_create(&ctx), ATTN_OK);
            assert_int_equal(attn_context_set_num_threads(ctx, t), ATTN_OK);
            assert_int_equal(attn_activations_create(&act), ATTN_OK);
            res[t][0] = floats((size_t)nd), res[t][1] = floats((size_t)nd);
            res[t][2] = floats((size_t)count), res[t][3] = floats((size_t)nd);
            assert_int_equal(attn_encoder_layer_forward(ctx, l, c.batch, c.len, x, NULL,
                                                        res[t][0], act), ATTN_OK);
            assert_int_equal(attn_encoder_layer_backward(ctx, l, act, d_out, res[t][1],
                                                         res[t][2]), ATTN_OK);
            /* Inference in place: out = src. */
            memcpy(res[t][3], x, (size_t)nd * sizeof(float));
            assert_int_equal(attn_encoder_layer_forward(ctx, l, c.batch, c.len, res[t][3], NULL,
                                                        res[t][3], NULL), ATTN_OK);
            attn_activations_destroy(act);
            attn_context_destroy(ctx);
        }
        /* In place equals out of place. */
        attn_context *ctx = NULL;
        float *separate = floats((size_t)nd);
        assert_int_equal(attn_context_create(&ctx), ATTN_OK);
        assert_int_equal(attn_encoder_layer_forward(ctx, l, c.batch, c.len, x, NULL, separate,
                                                    NULL), ATTN_OK);
        assert_memory_equal(separate, res[1][3], (size_t)nd * sizeof(float));
        const int64_t sizes[4] = {nd, nd, count, nd};
        for (int t = 2; t <= 3; t++)
            for (int k = 0; k < 4; k++)
                assert_memory_equal(res[1][k], res[t][k], (size_t)sizes[k] * sizeof(float));
        print_message("%s: 1, 2 and 3 threads give the same bits\n",
                      norm_first ? "pre-norm" : "post-norm");
        for (int t = 1; t <= 3; t++)
            for (int k = 0; k < 4; k++)
                free(res[t][k]);
        free(separate), free(params), free(x), free(d_out);
        attn_context_destroy(ctx);
        attn_encoder_layer_destroy(l);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_layer_norm_against_float64),
        cmocka_unit_test(test_layer_norm_public_calls),
        cmocka_unit_test(test_activations_against_float64),
        cmocka_unit_test(test_dropout_against_float64),
        cmocka_unit_test(test_threads_same_bits),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
