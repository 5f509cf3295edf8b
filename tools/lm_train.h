/*
 * lm_train.h — training the character language model (lm_model.h) on
 * poems (lm_corpus.h): next-token cross-entropy, AdamW with linear
 * warm-up and cosine decay, gradient-norm clipping, dropout in the layers,
 * and the validation loss on held-out poems after every epoch; the
 * parameters of the epoch with the lowest validation loss are the ones
 * kept (early stopping), unless keep_last.
 */
#ifndef ATTN_TOOLS_LM_TRAIN_H
#define ATTN_TOOLS_LM_TRAIN_H

#include <stdint.h>

#include "lm_corpus.h"
#include "lm_model.h"

typedef struct lm_train_config {
    int epochs;
    uint64_t seed;           /* the split, the initial weights, the batches, dropout */
    int64_t batch;           /* windows per step */
    double lr, weight_decay, clip, dropout;
    int64_t warmup;          /* steps of linear warm-up */
    int patience;            /* stop after this many epochs without a better
                                validation loss (0: never) */
    int keep_last;           /* keep the last epoch's parameters, not the best */
    double input_noise;      /* share of input characters replaced by random ones */
} lm_train_config;

lm_train_config lm_train_config_default(void);

typedef struct lm_epoch {
    double train_loss;       /* nats per target token, mean over the epoch */
    double val_loss;         /* nats per target token on the held-out poems */
    double chars_per_second; /* training targets per second */
    double seconds;
} lm_epoch;

typedef void (*lm_progress_fn)(void *arg, int epoch, int epochs, const lm_epoch *e);

typedef struct lm_train_result {
    int epochs_run, best_epoch;
    double best_val_loss;
    int64_t steps;
    double *step_loss;       /* [steps] (malloc'd) */
    double *val_loss;        /* [epochs_run] */
    double seconds;
} lm_train_result;

/* Trains m (created, not initialised) on train's windows, validating on
 * held's, and leaves the best epoch's parameters in m (synced). Returns
 * ATTN_OK or the failed call's status; free r with lm_train_result_free
 * either way. */
attn_status lm_train(attn_context *ctx, lm_model *m, const lm_windows *train,
                     const lm_windows *held, const lm_train_config *c, lm_train_result *r,
                     lm_progress_fn progress, void *arg);
void lm_train_result_free(lm_train_result *r);

/* The mean next-token loss of the model over every counted target of w
 * (inference: no dropout). */
attn_status lm_evaluate(attn_context *ctx, lm_model *m, lm_batch *b, const lm_windows *w,
                        int64_t batch, double *loss);

#endif
