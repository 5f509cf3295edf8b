/*
 * nw_train.h — D2L §10.2.4 trained from C: the parametric Nadaraya–Watson
 * regression's width w learnt by SGD, each training input attending to the
 * other n − 1 (D2L's leave-one-out keys), with libattn's forward and
 * attn_nadaraya_watson_backward. Shared by `attn demo` and `attn train nw`.
 */
#ifndef ATTN_TOOLS_NW_TRAIN_H
#define ATTN_TOOLS_NW_TRAIN_H

#include <attn.h>

/* D2L §10.2.1's data: 50 sorted training inputs x ~ U[0, 5), targets
 * y = 2 sin x + x^0.8 + N(0, 0.5²), test inputs 0, 0.1, ..., 4.9 and the
 * noiseless truth there; from the fixed generator of prng.h. */
enum { NW_TRAIN = 50, NW_TEST = 50 };
typedef struct nw_data {
    float x_train[NW_TRAIN], y_train[NW_TRAIN];
    float x_test[NW_TEST], y_truth[NW_TEST];
} nw_data;
void nw_make_data(nw_data *d, unsigned long long seed);

/* The initial w of a run: D2L draws it with torch.rand((1,)), U[0, 1); this
 * draws it from prng.h seeded by `seed`. */
float nw_initial_w(unsigned long long seed);

/* Called after each epoch with its loss (before the step, as D2L prints it)
 * and w after the step. */
typedef void (*nw_epoch_fn)(void *arg, int epoch, int epochs, double loss, float w);

/* Trains w for `epochs` epochs of full-batch SGD with learning rate lr on
 * L(w) = Σ_i (f_w(x_i) − y_i)² (D2L: nn.MSELoss(reduction='none'), then
 * l.sum().backward()), where f_w(x_i) pools the other n − 1 points.
 * losses[epoch] gets each epoch's loss (may be NULL). Returns the first
 * failing status of libattn. */
attn_status nw_train(attn_context *ctx, const nw_data *d, float *w, int epochs, float lr,
                     double *losses, nw_epoch_fn on_epoch, void *arg);

#endif
