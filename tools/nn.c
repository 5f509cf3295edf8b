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
    for (int64_t o = 0; o < l->out; o++) {
        double s = 0.0;
        for (int64_t r = 0; r < rows; r++)
            s += dy[r * l->out + o];
        l->db[o] = (float)s;
    }
    if (dx && rows > 0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)rows, (int)l->in,
                    (int)l->out, 1.0f, dy, (int)l->out, l->w, (int)l->in, 0.0f, dx, (int)l->in);
}

double nn_cross_entropy(int64_t rows, int64_t classes, const float *logits, const int *labels,
                        float *d_logits, int64_t *correct)
{
    double total = 0.0;
    for (int64_t r = 0; r < rows; r++) {
        const float *z = logits + r * classes;
        int64_t best = 0;
        for (int64_t c = 1; c < classes; c++)
            best = z[c] > z[best] ? c : best;
        double sum = 0.0;
        for (int64_t c = 0; c < classes; c++)
            sum += exp((double)z[c] - z[best]);
        double lse = z[best] + log(sum);
        total += lse - z[labels[r]];
        if (best == labels[r])
            ++*correct;
        if (!d_logits)
            continue;
        for (int64_t c = 0; c < classes; c++)
            d_logits[r * classes + c] =
                (float)((exp((double)z[c] - lse) - (c == labels[r])) / (double)rows);
    }
    return rows > 0 ? total / (double)rows : 0.0;
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

void nn_adam_step(nn_adam *a, float *params, const float *grads, double lr)
{
    const double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;
    a->step++;
    double bc1 = 1.0 - pow(beta1, (double)a->step), bc2 = 1.0 - pow(beta2, (double)a->step);
    float step_size = (float)(lr / bc1), sqrt_bc2 = (float)sqrt(bc2);
    for (int64_t i = 0; i < a->n; i++) {
        float g = grads[i];
        a->m[i] = (float)beta1 * a->m[i] + (float)(1.0 - beta1) * g;
        a->v[i] = (float)beta2 * a->v[i] + (float)(1.0 - beta2) * g * g;
        params[i] -= step_size * a->m[i] / (sqrtf(a->v[i]) / sqrt_bc2 + (float)eps);
    }
}

double nn_cosine_warmup(int64_t t, int64_t warmup, int64_t max_steps)
{
    double factor = 0.5 * (1.0 + cos(3.14159265358979323846 * (double)t / (double)max_steps));
    if (t <= warmup)
        factor *= (double)t / (double)warmup;
    return factor;
}
