/*
 * reverse_train.h — UvA Deep Learning tutorial 6's sequence-reversal task
 * (Lippe, "Transformers and Multi-Head Attention", ReversePredictor),
 * trained from C: libattn's encoder layer between the tutorial's input and
 * output networks, with its data, loss, optimizer and schedule.
 *
 * A sequence of 16 digits 0..9 must be read back reversed: label i is
 * input 15 − i. Position i can only answer by attending to position 15 − i,
 * so the trained attention map is the anti-diagonal the tutorial shows.
 */
#ifndef ATTN_TOOLS_REVERSE_TRAIN_H
#define ATTN_TOOLS_REVERSE_TRAIN_H

#include <stdint.h>

#include <attn.h>

enum {
    REVERSE_CLASSES = 10,  /* num_categories */
    REVERSE_LEN = 16,      /* seq_len */
    REVERSE_DIM = 32,      /* model_dim */
    REVERSE_FF = 64,       /* dim_feedforward = 2 · model_dim */
    REVERSE_BATCH = 128,
    REVERSE_WARMUP = 50,   /* steps of the cosine warm-up */
};

/* Data parallelism (attn train reverse --mpi): called after every step's
 * backward with this process's flat gradient and its part's stats = {mean
 * loss, correct tokens}; must replace the gradient and the loss by their
 * means over the processes and the count by its sum, so that every process
 * takes the same step. Returns ATTN_OK or the status of its failure. */
typedef attn_status (*reverse_allreduce_fn)(void *arg, float *grads, int64_t count,
                                            double stats[2]);

typedef struct reverse_config {
    int epochs;               /* the tutorial: 10 */
    uint64_t seed;            /* data, initialisation and shuffling */
    int64_t train_size;       /* the tutorial: 50,000 sequences */
    int64_t test_size;        /* 1,000 here (the tutorial: 10,000) */
    /* Data parallelism: 0 or 1 process trains alone. With ranks > 1 (a
     * divisor of REVERSE_BATCH), process `rank` computes the sequences
     * [rank · b, (rank + 1) · b) of every batch, b = REVERSE_BATCH / ranks,
     * and allreduce averages the gradients; every process makes the same
     * data, initialisation and shuffles from the seed. */
    int rank, ranks;
    reverse_allreduce_fn allreduce;
    void *allreduce_arg;
} reverse_config;

typedef struct reverse_epoch {
    double loss;              /* mean training cross-entropy over the epoch */
    double accuracy;          /* training token accuracy over the epoch */
    double seconds;           /* wall time of the epoch */
} reverse_epoch;

typedef struct reverse_result {
    int64_t steps;            /* optimizer steps made */
    double *step_loss;        /* [steps]: the learning curve (malloc'd) */
    double test_accuracy;     /* token accuracy on the test set, in [0, 1] */
    double seconds;           /* training time, all epochs */
    int test_tokens[REVERSE_LEN];                   /* the first test sequence */
    float attention[REVERSE_LEN * REVERSE_LEN];     /* its trained attention map */
} reverse_result;

/* Called after each epoch. */
typedef void (*reverse_progress_fn)(void *arg, int epoch, int epochs, const reverse_epoch *e);

/* Trains the model on ctx's threads and evaluates it. Returns ATTN_OK or
 * the status of the failed libattn call (ATTN_ERR_OUT_OF_MEMORY also for the
 * program's own buffers); free r with reverse_result_free either way. */
attn_status reverse_train(attn_context *ctx, const reverse_config *c, reverse_result *r,
                          reverse_progress_fn progress, void *arg);
void reverse_result_free(reverse_result *r);

#endif
