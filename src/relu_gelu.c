/*
 * relu_gelu.c — the feed-forward activations of the encoder layer and
 * their derivatives, over whole rows:
 *
 *   ReLU  y = max(x, 0)                    y' = [x > 0]
 *   GELU  y = x · Φ(x)                       y' = Φ(x) + x · φ(x)
 *
 * (Hendrycks and Gimpel 2016, the exact form that PyTorch's "gelu" computes,
 * not the tanh approximation; φ(x) = exp(−x²/2) / √(2π)). Φ(x) is computed
 * as erfc(−x/√2) / 2 rather than (1 + erf(x/√2)) / 2: for negative x the
 * sum cancels (at x = −5 it keeps one digit in float32), erfc does not, so
 * GELU keeps its relative accuracy on the whole line. A NaN input stays NaN,
 * as in PyTorch (max would hide it).
 *
 * erfcf and expf are declared "omp declare simd" so that GCC calls glibc's
 * vector versions (libmvec, glibc 2.35 and later: _ZGVeN16v_erfcf and the
 * like) from the `omp simd` loops, as softmax.c does for exp2f.
 */
#include <math.h>

#include "attn_internal.h"

#pragma omp declare simd notinbranch
float erfcf(float);
#pragma omp declare simd notinbranch
float expf(float);

#define ATTN_SQRT1_2 0.70710678118654752440f     /* 1/√2 */
#define ATTN_INV_SQRT_2PI 0.39894228040143267794f /* 1/√(2π) */

ATTN_VECTOR_CLONES
static void relu(const float *x, float *y, int64_t n)
{
#pragma omp simd
    for (int64_t j = 0; j < n; j++)
        y[j] = x[j] < 0.0f ? 0.0f : x[j];
}

ATTN_VECTOR_CLONES
static void gelu(const float *x, float *y, int64_t n)
{
#pragma omp simd
    for (int64_t j = 0; j < n; j++)
        y[j] = 0.5f * x[j] * erfcf(-x[j] * ATTN_SQRT1_2);
}

ATTN_VECTOR_CLONES
static void relu_backward(const float *x, const float *dy, float *dx, int64_t n)
{
#pragma omp simd
    for (int64_t j = 0; j < n; j++)
        dx[j] = x[j] > 0.0f ? dy[j] : 0.0f;
}

ATTN_VECTOR_CLONES
static void gelu_backward(const float *x, const float *dy, float *dx, int64_t n)
{
#pragma omp simd
    for (int64_t j = 0; j < n; j++) {
        float cdf = 0.5f * erfcf(-x[j] * ATTN_SQRT1_2);
        float pdf = ATTN_INV_SQRT_2PI * expf(-0.5f * x[j] * x[j]);
        dx[j] = dy[j] * (cdf + x[j] * pdf);
    }
}

void attn_activation_forward(attn_activation a, const float *x, float *y, int64_t n)
{
    if (a == ATTN_ACTIVATION_GELU)
        gelu(x, y, n);
    else
        relu(x, y, n);
}

void attn_activation_backward(attn_activation a, const float *x, const float *dy, float *dx,
                              int64_t n)
{
    if (a == ATTN_ACTIVATION_GELU)
        gelu_backward(x, dy, dx, n);
    else
        relu_backward(x, dy, dx, n);
}
