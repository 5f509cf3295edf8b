/*
 * nw_train.c — D2L §10.2.4, NWKernelRegression trained by SGD, in C.
 *
 * D2L's loop, per epoch: zero the gradient, l = (net(x_train, keys,
 * values) − y_train)², l.sum().backward(), step w -= lr · w.grad, print
 * l.sum(). Here the forward is attn_nadaraya_watson and the gradient
 * attn_nadaraya_watson_backward, one training point at a time because each
 * point has its own keys (the other 49 points), with d_out = 2 (f − y).
 */
#include <math.h>
#include <stdlib.h>

#include "nw_train.h"
#include "prng.h"

static float truth(float x)
{
    return 2.0f * sinf(x) + powf(x, 0.8f);
}

static int compare_floats(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

void nw_make_data(nw_data *d, unsigned long long seed)
{
    prng g;
    prng_seed(&g, seed);
    prng_fill_uniform(&g, d->x_train, NW_TRAIN, 0.0, 5.0);
    qsort(d->x_train, NW_TRAIN, sizeof d->x_train[0], compare_floats);
    for (int i = 0; i < NW_TRAIN; i++)
        d->y_train[i] = truth(d->x_train[i]) + (float)prng_normal(&g, 0.0, 0.5);
    for (int i = 0; i < NW_TEST; i++) {
        d->x_test[i] = 0.1f * (float)i;
        d->y_truth[i] = truth(d->x_test[i]);
    }
}

float nw_initial_w(unsigned long long seed)
{
    prng g;
    prng_seed(&g, seed);
    return (float)prng_uniform(&g);
}

/* Point i's keys and values: every other training point, in order. */
static void leave_one_out(const nw_data *d, int i, float *keys, float *values)
{
    for (int j = 0, n = 0; j < NW_TRAIN; j++)
        if (j != i)
            keys[n] = d->x_train[j], values[n] = d->y_train[j], n++;
}

/* One epoch: the loss at w and its gradient ∂L/∂w. */
static attn_status loss_and_gradient(attn_context *ctx, const nw_data *d, float w, double *loss,
                                     double *grad)
{
    float keys[NW_TRAIN - 1], values[NW_TRAIN - 1];
    *loss = 0.0, *grad = 0.0;
    for (int i = 0; i < NW_TRAIN; i++) {
        leave_one_out(d, i, keys, values);
        float f, d_out, d_w;
        attn_status st = attn_nadaraya_watson(ctx, 1, NW_TRAIN - 1, &d->x_train[i], keys,
                                              values, w, &f, NULL);
        if (st != ATTN_OK)
            return st;
        double r = (double)f - d->y_train[i];
        *loss += r * r;
        d_out = (float)(2.0 * r);
        st = attn_nadaraya_watson_backward(ctx, 1, NW_TRAIN - 1, &d->x_train[i], keys, values, w,
                                           &d_out, NULL, NULL, NULL, &d_w);
        if (st != ATTN_OK)
            return st;
        *grad += d_w;
    }
    return ATTN_OK;
}

attn_status nw_train(attn_context *ctx, const nw_data *d, float *w, int epochs, float lr,
                     double *losses, nw_epoch_fn on_epoch, void *arg)
{
    for (int e = 0; e < epochs; e++) {
        double loss, grad;
        attn_status st = loss_and_gradient(ctx, d, *w, &loss, &grad);
        if (st != ATTN_OK)
            return st;
        *w = (float)((double)*w - (double)lr * grad);
        if (losses)
            losses[e] = loss;
        if (on_epoch)
            on_epoch(arg, e + 1, epochs, loss, *w);
    }
    return ATTN_OK;
}
