/*
 * nn.c — nn.Linear, cross-entropy, Adam, gradient clipping and the cosine
 * warm-up schedule for the `attn train` models (see nn.h). The products
 * go through cblas_sgemm; the rest are plain loops over small arrays.
 */
#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn.h"

void nn_linear_place(nn_linear *l, int64_t in, int64_t out, float *params, float *grads,
                     int64_t *at)
{
    *l = (nn_linear){in, out, params + *at, params + *at + in * out, grads + *at,
                     grads + *at + in * out};
    *at += in * out + out;
}

void nn_linear_init(const nn_linear *l, prng *g)
{
    double bound = 1.0 / sqrt((double)l->in);
    prng_fill_uniform(g, l->w, l->in * l->out, -bound, bound);
    prng_fill_uniform(g, l->b, l->out, -bound, bound);
}

void nn_linear_forward(const nn_linear *l, int64_t rows, const float *x, float *y)
{
    for (int64_t r = 0; r < rows; r++)
        memcpy(y + r * l->out, l->b, (size_t)l->out * sizeof(float));
    if (rows > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)rows, (int)l->out, (int)l->in,
                    1.0f, x, (int)l->in, l->w, (int)l->in, 1.0f, y, (int)l->out);
}

void nn_linear_backward(const nn_linear *l, int64_t rows, const float *x, const float *dy,
                        float *dx)
{
    memset(l->dw, 0, (size_t)(l->in * l->out) * sizeof(float));
    if (rows > 0)
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)l->out, (int)l->in, (int)rows,
                    1.0f, dy, (int)l->out, x, (int)l->in, 0.0f, l->dw, (int)l->in);
    /* db = Σ_rows dy in double: row by row (contiguous), or column by
     * column if there is no memory for the sums. */
    double *sum = calloc((size_t)l->out, sizeof *sum);
    for (int64_t r = 0; sum && r < rows; r++) {
        const float *g = dy + r * l->out;
#pragma omp simd
        for (int64_t o = 0; o < l->out; o++)
            sum[o] += g[o];
    }
    for (int64_t o = 0; o < l->out; o++) {
        double s = 0.0;
        for (int64_t r = 0; !sum && r < rows; r++)
            s += dy[r * l->out + o];
        l->db[o] = (float)(sum ? sum[o] : s);
    }
    free(sum);
    if (dx && rows > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)l->in,
                    (int)l->out, 1.0f, dy, (int)l->out, l->w, (int)l->in, 0.0f, dx, (int)l->in);
}

/* glibc's math.h declares expf's vector forms (libmvec) only under
 * -ffast-math; declared here, `#pragma omp simd` loops call them. */
#pragma omp declare simd notinbranch
float expf(float);

/* The widest vector unit the CPU has, chosen at load time (GCC's function
 * multi-versioning), as libattn's own loops do. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__)
#define NN_VECTOR_CLONES __attribute__((target_clones("avx512f", "avx2", "default")))
#else
#define NN_VECTOR_CLONES
#endif

/* One row's max and Σ exp(z − max) over classes, vectorised: the exps go
 * to e (may be NULL). */
NN_VECTOR_CLONES
static float row_exp_sum(const float *z, int64_t classes, float *e, float *max_out)
{
    float max = z[0];
#pragma omp simd reduction(max : max)
    for (int64_t c = 1; c < classes; c++)
        max = z[c] > max ? z[c] : max;
    float sum = 0.0f;
    if (e) {
#pragma omp simd reduction(+ : sum)
        for (int64_t c = 0; c < classes; c++) {
            e[c] = expf(z[c] - max);
            sum += e[c];
        }
    } else {
#pragma omp simd reduction(+ : sum)
        for (int64_t c = 0; c < classes; c++)
            sum += expf(z[c] - max);
    }
    *max_out = max;
    return sum;
}

double nn_cross_entropy(int64_t rows, int64_t classes, const float *logits, const int *labels,
                        float *d_logits, int64_t *correct)
{
    int64_t counted = 0;
    for (int64_t r = 0; r < rows; r++)
        counted += labels[r] >= 0;
    double total = 0.0;
    for (int64_t r = 0; r < rows; r++) {
        const float *z = logits + r * classes;
        float *d = d_logits ? d_logits + r * classes : NULL;
        if (labels[r] < 0) {  /* ignore_index: no loss, no gradient */
            if (d)
                memset(d, 0, (size_t)classes * sizeof(float));
            continue;
        }
        float max;
        float sum = row_exp_sum(z, classes, d, &max);
        double lse = (double)max + log((double)sum);
        total += lse - z[labels[r]];
        int64_t best = 0;
        for (int64_t c = 1; c < classes; c++)
            best = z[c] > z[best] ? c : best;
        *correct += best == labels[r];
        if (!d)
            continue;
        float f = (float)(1.0 / ((double)sum * (double)counted));
#pragma omp simd
        for (int64_t c = 0; c < classes; c++)
            d[c] *= f;  /* softmax / counted */
        d[labels[r]] -= (float)(1.0 / (double)counted);
    }
    return counted > 0 ? total / (double)counted : 0.0;
}

double nn_clip_grad_norm(float *g, int64_t n, double max_norm)
{
    double sq = 0.0;
    for (int64_t i = 0; i < n; i++)
        sq += (double)g[i] * g[i];
    double norm = sqrt(sq), factor = max_norm / (norm + 1e-6);
    if (factor < 1.0)
        for (int64_t i = 0; i < n; i++)
            g[i] = (float)(g[i] * factor);
    return norm;
}

int nn_adam_init(nn_adam *a, int64_t n)
{
    a->n = n, a->step = 0;
    a->m = calloc((size_t)(n > 0 ? n : 1), sizeof(float));
    a->v = calloc((size_t)(n > 0 ? n : 1), sizeof(float));
    if (a->m && a->v)
        return 0;
    nn_adam_free(a);
    return -1;
}

void nn_adam_free(nn_adam *a)
{
    free(a->m), free(a->v);
    a->m = a->v = NULL;
}

void nn_adamw_step(nn_adam *a, float *params, const float *grads, double lr,
                   double weight_decay, const unsigned char *decay)
{
    const double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    a->step++;
    double bc1 = 1.0 - pow(beta1, (double)a->step), bc2 = 1.0 - pow(beta2, (double)a->step);
    float step_size = (float)(lr / bc1), sqrt_bc2 = (float)sqrt(bc2);
    float shrink = (float)(1.0 - lr * weight_decay);
    for (int64_t i = 0; i < a->n; i++) {
        float g = grads[i];
        if (decay && decay[i])  /* decoupled: the parameter shrinks before the Adam step */
            params[i] *= shrink;
        a->m[i] = (float)beta1 * a->m[i] + (float)(1.0 - beta1) * g;
        a->v[i] = (float)beta2 * a->v[i] + (float)(1.0 - beta2) * g * g;
        params[i] -= step_size * a->m[i] / (sqrtf(a->v[i]) / sqrt_bc2 + (float)eps);
    }
}

void nn_adam_step(nn_adam *a, float *params, const float *grads, double lr)
{
    nn_adamw_step(a, params, grads, lr, 0.0, NULL);
}

void nn_encoder_layer_init(float *p, int64_t d, int64_t ff, prng *g)
{
    double xavier = sqrt(6.0 / (double)(d + 3 * d));
    prng_fill_uniform(g, p, 3 * d * d, -xavier, xavier);  /* in_proj_weight */
    memset(p + 3 * d * d, 0, (size_t)(3 * d) * sizeof(float));  /* in_proj_bias */
    float *out_proj = p + 3 * d * d + 3 * d;
    prng_fill_uniform(g, out_proj, d * d, -1.0 / sqrt((double)d), 1.0 / sqrt((double)d));
    memset(out_proj + d * d, 0, (size_t)d * sizeof(float));  /* out_proj.bias */
    nn_linear lin1 = {d, ff, out_proj + d * d + d, out_proj + d * d + d + ff * d, NULL, NULL};
    nn_linear lin2 = {ff, d, lin1.b + ff, lin1.b + ff + d * ff, NULL, NULL};
    nn_linear_init(&lin1, g);
    nn_linear_init(&lin2, g);
    float *norms = lin2.b + d;
    for (int64_t i = 0; i < d; i++) {
        norms[i] = 1.0f, norms[d + i] = 0.0f;          /* norm1.weight, norm1.bias */
        norms[2 * d + i] = 1.0f, norms[3 * d + i] = 0.0f;  /* norm2 */
    }
}

double nn_cosine_warmup(int64_t t, int64_t warmup, int64_t max_steps)
{
    double factor = 0.5 * (1.0 + cos(3.14159265358979323846 * (double)t / (double)max_steps));
    if (t <= warmup)
        factor *= (double)t / (double)warmup;
    return factor;
}
