/*
 * nn.h — the small network pieces around libattn's layers that `attn train`
 * models share, written as a PyTorch user would expect them to behave:
 * nn.Linear (its products through cblas_sgemm), the cross-entropy loss,
 * torch.optim.Adam, clip_grad_norm_, and the UvA tutorial's cosine warm-up
 * schedule. They are not attention, so they live with the program rather
 * than in the library.
 *
 * Parameters and their gradients are views into two flat arrays of the
 * same layout, so the optimizer is one loop over one array.
 */
#ifndef ATTN_TOOLS_NN_H
#define ATTN_TOOLS_NN_H

#include <stdint.h>

#include "prng.h"

/* y = x Wᵀ + b with W [out, in], b [out] (nn.Linear); dw, db the same
 * places in the gradient array. */
typedef struct nn_linear {
    int64_t in, out;
    float *w, *b;
    float *dw, *db;
} nn_linear;

/* Points l at offset *at of params and grads and advances *at. */
void nn_linear_place(nn_linear *l, int64_t in, int64_t out, float *params, float *grads,
                     int64_t *at);
/* nn.Linear's default initialisation (kaiming_uniform with a = √5):
 * W and b uniform in ±1/√in. */
void nn_linear_init(const nn_linear *l, prng *g);
/* y [rows, out] = x [rows, in] · Wᵀ + b. */
void nn_linear_forward(const nn_linear *l, int64_t rows, const float *x, float *y);
/* dW = dyᵀ x, db = Σ_rows dy (overwritten), and dx [rows, in] = dy W unless
 * dx is NULL. */
void nn_linear_backward(const nn_linear *l, int64_t rows, const float *x, const float *dy,
                        float *dx);

/* Mean cross-entropy of logits [rows, classes] against labels (F.cross_entropy,
 * computed stably through the log-sum-exp) over the rows whose label is >= 0
 * (a negative label is ignore_index: no loss, a zero gradient row);
 * d_logits = (softmax − one_hot) / counted rows unless NULL; *correct +=
 * rows whose arg max is the label. */
double nn_cross_entropy(int64_t rows, int64_t classes, const float *logits, const int *labels,
                        float *d_logits, int64_t *correct);

/* Scales g [n] so that its 2-norm is at most max_norm (clip_grad_norm_,
 * factor max_norm / (norm + 1e-6)); returns the norm before clipping. */
double nn_clip_grad_norm(float *g, int64_t n, double max_norm);

/* torch.optim.Adam (Kingma and Ba 2015, with PyTorch's bias correction),
 * betas (0.9, 0.999), eps 1e-8, no weight decay. */
typedef struct nn_adam {
    int64_t n, step;
    float *m, *v;
} nn_adam;
/* 0, or -1 when out of memory. */
int nn_adam_init(nn_adam *a, int64_t n);
void nn_adam_free(nn_adam *a);
/* One step of params [n] against grads [n] at learning rate lr. */
void nn_adam_step(nn_adam *a, float *params, const float *grads, double lr);
/* torch.optim.AdamW (Loshchilov and Hutter 2019): the same step after
 * params[i] *= 1 − lr · weight_decay where decay[i] is non-zero (decay NULL:
 * none). */
void nn_adamw_step(nn_adam *a, float *params, const float *grads, double lr,
                   double weight_decay, const unsigned char *decay);

/* nn.TransformerEncoderLayer's initialisation of the flat parameters p
 * (attn_encoder_layer_get_params' layout) of d_model d and dim_feedforward
 * ff: in_proj_weight Xavier-uniform, in_proj_bias and out_proj.bias 0,
 * out_proj.weight, linear1 and linear2 nn.Linear's default, norms (1, 0). */
void nn_encoder_layer_init(float *p, int64_t d, int64_t ff, prng *g);

/* The UvA tutorial 6 CosineWarmupScheduler's factor at step t (0-based):
 * 0.5 · (1 + cos(π t / max_steps)), times t / warmup while t <= warmup. */
double nn_cosine_warmup(int64_t t, int64_t warmup, int64_t max_steps);

#endif
