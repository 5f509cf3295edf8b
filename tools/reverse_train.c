/*
 * reverse_train.c — UvA tutorial 6's ReversePredictor, trained from C.
 *
 * The model (TransformerPredictor with the tutorial's hyperparameters):
 *
 *   x      = one_hot(tokens) · W_inᵀ + b_in + PE      input_net, positional encoding
 *   y      = encoder layer(x)                          1 layer, 1 head, post-norm, ReLU,
 *                                                      dim_feedforward 64, dropout 0
 *   logits = Linear(ReLU(LayerNorm(Linear(y))))        output_net, 32 → 32 → 10
 *
 * trained with mean cross-entropy over every position, Adam (lr 5e-4) under
 * the tutorial's cosine warm-up (50 steps, over all the run's steps), the
 * gradient's norm clipped to 5 (its Trainer's gradient_clip_val), batches
 * of 128 shuffled each epoch with the last partial batch dropped. The
 * encoder layer, the positional encoding and the layer norm are libattn's;
 * the one-hot input layer is a column lookup (the same numbers as the
 * product with a one-hot vector), the rest is nn.h.
 *
 * The initialisation is PyTorch's for these modules: nn.Linear's default,
 * and for nn.TransformerEncoderLayer Xavier-uniform in_proj_weight, zero
 * in_proj_bias and out_proj.bias, norms at weight 1, bias 0.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "nn.h"
#include "prng.h"
#include "reverse_train.h"

enum { ROWS = REVERSE_BATCH * REVERSE_LEN };

typedef struct model {
    float *params, *grads;    /* every parameter, and its gradient, flat */
    int64_t count;
    nn_linear in, out1, out2;
    float *ln_w, *ln_b, *d_ln_w, *d_ln_b;
    float *enc_params, *enc_grads;
    int64_t enc_count;
    attn_encoder_layer *enc;
    float pe[REVERSE_LEN * REVERSE_DIM];
} model;

/* Activations of one batch (up to ROWS rows). */
typedef struct batch {
    int tokens[ROWS], labels[ROWS];
    float x[ROWS * REVERSE_DIM], y[ROWS * REVERSE_DIM], z1[ROWS * REVERSE_DIM],
        z2[ROWS * REVERSE_DIM], z3[ROWS * REVERSE_DIM], logits[ROWS * REVERSE_CLASSES];
    float d_logits[ROWS * REVERSE_CLASSES], dz[ROWS * REVERSE_DIM], dy[ROWS * REVERSE_DIM],
        dx[ROWS * REVERSE_DIM];
} batch;

static const float LN_EPS = 1e-5f;

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static void model_free(model *m)
{
    attn_encoder_layer_destroy(m->enc);
    free(m->params), free(m->grads);
}

static attn_status model_init(model *m, prng *g)
{
    *m = (model){0};
    attn_status st = attn_encoder_layer_create(&m->enc, REVERSE_DIM, 1, REVERSE_FF,
                                               ATTN_ACTIVATION_RELU, 0, LN_EPS);
    if (st == ATTN_OK)
        st = attn_encoder_layer_param_count(m->enc, &m->enc_count);
    if (st == ATTN_OK)
        st = attn_positional_encoding(m->pe, REVERSE_LEN, REVERSE_DIM, 0, 10000.0f);
    if (st != ATTN_OK)
        return st;
    int64_t d = REVERSE_DIM, c = REVERSE_CLASSES;
    m->count = (c * d + d) + m->enc_count + (d * d + d) + 2 * d + (d * c + c);
    m->params = calloc((size_t)m->count, sizeof(float));
    m->grads = calloc((size_t)m->count, sizeof(float));
    if (!m->params || !m->grads)
        return ATTN_ERR_OUT_OF_MEMORY;
    int64_t at = 0;
    nn_linear_place(&m->in, c, d, m->params, m->grads, &at);
    m->enc_params = m->params + at, m->enc_grads = m->grads + at;
    at += m->enc_count;
    nn_linear_place(&m->out1, d, d, m->params, m->grads, &at);
    m->ln_w = m->params + at, m->d_ln_w = m->grads + at;
    m->ln_b = m->ln_w + d, m->d_ln_b = m->d_ln_w + d;
    at += 2 * d;
    nn_linear_place(&m->out2, d, c, m->params, m->grads, &at);

    nn_linear_init(&m->in, g);
    nn_encoder_layer_init(m->enc_params, d, REVERSE_FF, g);
    nn_linear_init(&m->out1, g);
    for (int64_t i = 0; i < d; i++)
        m->ln_w[i] = 1.0f;
    nn_linear_init(&m->out2, g);
    return ATTN_OK;
}

/* x = W_in[:, token] + b_in + PE[position] for each row. */
static void embed(const model *m, const int *tokens, int64_t rows, float *x)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t o = 0; o < REVERSE_DIM; o++)
            x[r * REVERSE_DIM + o] = m->in.w[o * REVERSE_CLASSES + tokens[r]] + m->in.b[o] +
                                     m->pe[(r % REVERSE_LEN) * REVERSE_DIM + o];
}

/* logits from the encoder's output y, through the output network. */
static attn_status output_net(const model *m, batch *b, int64_t rows)
{
    nn_linear_forward(&m->out1, rows, b->y, b->z1);
    attn_status st = attn_layer_norm(rows, REVERSE_DIM, b->z1, m->ln_w, m->ln_b, LN_EPS, b->z2);
    if (st != ATTN_OK)
        return st;
    for (int64_t i = 0; i < rows * REVERSE_DIM; i++)
        b->z3[i] = b->z2[i] > 0.0f ? b->z2[i] : 0.0f;
    nn_linear_forward(&m->out2, rows, b->z3, b->logits);
    return ATTN_OK;
}

/* The forward of one batch (training when act is not NULL) up to the logits. */
static attn_status forward(attn_context *ctx, const model *m, batch *b, int64_t sequences,
                           attn_activations *act)
{
    int64_t rows = sequences * REVERSE_LEN;
    embed(m, b->tokens, rows, b->x);
    attn_status st = attn_encoder_layer_forward(ctx, m->enc, sequences, REVERSE_LEN, b->x, NULL,
                                                b->y, act);
    return st != ATTN_OK ? st : output_net(m, b, rows);
}

/* Every gradient of the batch's mean loss over its `rows` rows, from
 * b->d_logits. */
static attn_status backward(attn_context *ctx, model *m, batch *b, int64_t rows,
                            attn_activations *act)
{
    nn_linear_backward(&m->out2, rows, b->z3, b->d_logits, b->dz);
    for (int64_t i = 0; i < rows * REVERSE_DIM; i++)
        b->dz[i] = b->z2[i] > 0.0f ? b->dz[i] : 0.0f;
    attn_status st = attn_layer_norm_backward(rows, REVERSE_DIM, b->z1, m->ln_w, LN_EPS, b->dz,
                                              b->dz, m->d_ln_w, m->d_ln_b);
    if (st != ATTN_OK)
        return st;
    nn_linear_backward(&m->out1, rows, b->y, b->dz, b->dy);
    if ((st = attn_encoder_layer_backward(ctx, m->enc, act, b->dy, b->dx, m->enc_grads)) !=
        ATTN_OK)
        return st;
    /* The one-hot input layer: column token of W_in collects each row's dx. */
    memset(m->in.dw, 0, sizeof(float) * REVERSE_CLASSES * REVERSE_DIM);
    for (int64_t o = 0; o < REVERSE_DIM; o++) {
        double s = 0.0;
        for (int64_t r = 0; r < rows; r++) {
            m->in.dw[o * REVERSE_CLASSES + b->tokens[r]] += b->dx[r * REVERSE_DIM + o];
            s += b->dx[r * REVERSE_DIM + o];
        }
        m->in.db[o] = (float)s;
    }
    return ATTN_OK;
}

/* The batch of sequences order[first ..] of data (reversed as labels). */
static void load_batch(batch *b, const unsigned char *data, const int64_t *order, int64_t first,
                       int64_t sequences)
{
    for (int64_t s = 0; s < sequences; s++) {
        const unsigned char *seq = data + order[first + s] * REVERSE_LEN;
        for (int64_t i = 0; i < REVERSE_LEN; i++) {
            b->tokens[s * REVERSE_LEN + i] = seq[i];
            b->labels[s * REVERSE_LEN + i] = seq[REVERSE_LEN - 1 - i];
        }
    }
}

static void shuffle(int64_t *order, int64_t n, prng *g)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(prng_next(g) % (uint64_t)(i + 1)), t = order[i];
        order[i] = order[j], order[j] = t;
    }
}

static attn_status evaluate(attn_context *ctx, model *m, batch *b, const unsigned char *data,
                            const int64_t *order, int64_t n, double *accuracy)
{
    int64_t correct = 0;
    for (int64_t first = 0; first < n; first += REVERSE_BATCH) {
        int64_t sequences = n - first < REVERSE_BATCH ? n - first : REVERSE_BATCH;
        load_batch(b, data, order, first, sequences);
        attn_status st = forward(ctx, m, b, sequences, NULL);
        if (st != ATTN_OK)
            return st;
        nn_cross_entropy(sequences * REVERSE_LEN, REVERSE_CLASSES, b->logits, b->labels, NULL,
                         &correct);
    }
    *accuracy = n > 0 ? (double)correct / (double)(n * REVERSE_LEN) : 0.0;
    return ATTN_OK;
}

/* The trained layer's attention weights for the first test sequence: its
 * self-attention is a multi-head layer with the encoder's first parameters
 * (attn_mha_get_params' layout), applied to the layer's input (post-norm). */
static attn_status attention_map(const model *m, batch *b, const unsigned char *seq,
                                 attn_context *ctx, reverse_result *r)
{
    for (int i = 0; i < REVERSE_LEN; i++)
        r->test_tokens[i] = b->tokens[i] = seq[i];
    embed(m, b->tokens, REVERSE_LEN, b->x);
    attn_mha *mha = NULL;
    attn_status st = attn_mha_create(&mha, REVERSE_DIM, 1, 1, REVERSE_DIM, REVERSE_DIM, 1);
    if (st == ATTN_OK)
        st = attn_mha_set_params(mha, m->enc_params);
    if (st == ATTN_OK)
        st = attn_mha_forward(ctx, mha, 1, REVERSE_LEN, REVERSE_LEN, b->x, b->x, b->x, NULL, b->y,
                              r->attention);
    attn_mha_destroy(mha);
    return st;
}

static attn_status make_data(const reverse_config *c, prng *g, unsigned char **train,
                             unsigned char **test, int64_t **order)
{
    *train = malloc((size_t)(c->train_size * REVERSE_LEN) + 1);
    *test = malloc((size_t)(c->test_size * REVERSE_LEN) + 1);
    int64_t most = c->train_size > c->test_size ? c->train_size : c->test_size;
    *order = malloc((size_t)(most + 1) * sizeof(int64_t));
    if (!*train || !*test || !*order)
        return ATTN_ERR_OUT_OF_MEMORY;
    /* torch.randint(10, (size, 16)): uniform digits (the bias of 2^64 mod 10
     * is below 1e-18). */
    for (int64_t i = 0; i < c->train_size * REVERSE_LEN; i++)
        (*train)[i] = (unsigned char)(prng_next(g) % REVERSE_CLASSES);
    for (int64_t i = 0; i < c->test_size * REVERSE_LEN; i++)
        (*test)[i] = (unsigned char)(prng_next(g) % REVERSE_CLASSES);
    return ATTN_OK;
}

/* This process's part of every batch: all of it, or with data parallelism
 * its 1/ranks share (reverse_config). */
static int64_t part_size(const reverse_config *c)
{
    return c->ranks > 1 ? REVERSE_BATCH / c->ranks : REVERSE_BATCH;
}

static int64_t part_first(const reverse_config *c)
{
    return c->ranks > 1 ? c->rank * part_size(c) : 0;
}

/* One optimizer step on this process's part of batch k; *loss and *correct
 * receive the whole batch's mean loss and correct tokens. */
static attn_status train_step(attn_context *ctx, const reverse_config *c, model *m, batch *b,
                              const unsigned char *train, const int64_t *order, int64_t k,
                              attn_activations *act, nn_adam *adam, double lr, double *loss,
                              int64_t *correct)
{
    const int64_t sequences = part_size(c), rows = sequences * REVERSE_LEN;
    load_batch(b, train, order, k * REVERSE_BATCH + part_first(c), sequences);
    attn_status st = attn_encoder_layer_set_params(m->enc, m->enc_params);
    if (st == ATTN_OK)
        st = forward(ctx, m, b, sequences, act);
    if (st != ATTN_OK)
        return st;
    int64_t right = 0;
    double l = nn_cross_entropy(rows, REVERSE_CLASSES, b->logits, b->labels, b->d_logits, &right);
    if ((st = backward(ctx, m, b, rows, act)) != ATTN_OK)
        return st;
    double stats[2] = {l, (double)right};
    if (c->ranks > 1 && (st = c->allreduce(c->allreduce_arg, m->grads, m->count, stats)) !=
                            ATTN_OK)
        return st;
    nn_clip_grad_norm(m->grads, m->count, 5.0);
    nn_adam_step(adam, m->params, m->grads, lr);
    *loss = stats[0];
    *correct += (int64_t)stats[1];
    return ATTN_OK;
}

static attn_status train_epochs(attn_context *ctx, const reverse_config *c, model *m, batch *b,
                                const unsigned char *train, int64_t *order, prng *g,
                                reverse_result *r, reverse_progress_fn progress, void *arg)
{
    int64_t per_epoch = c->train_size / REVERSE_BATCH, max_steps = per_epoch * c->epochs;
    attn_activations *act = NULL;
    nn_adam adam;
    attn_status st = attn_activations_create(&act);
    if (st != ATTN_OK)
        return st;
    if (nn_adam_init(&adam, m->count) != 0) {
        attn_activations_destroy(act);
        return ATTN_ERR_OUT_OF_MEMORY;
    }
    double start = now();
    for (int epoch = 1; epoch <= c->epochs && st == ATTN_OK; epoch++) {
        double t0 = now(), loss = 0.0;
        int64_t correct = 0;
        for (int64_t i = 0; i < c->train_size; i++)
            order[i] = i;
        shuffle(order, c->train_size, g);
        for (int64_t k = 0; k < per_epoch && st == ATTN_OK; k++) {
            double l = 0.0;
            st = train_step(ctx, c, m, b, train, order, k, act, &adam,
                            5e-4 * nn_cosine_warmup(r->steps, REVERSE_WARMUP, max_steps), &l,
                            &correct);
            if (st == ATTN_OK) {
                r->step_loss[r->steps++] = l;
                loss += l;
            }
        }
        if (st == ATTN_OK && progress) {
            reverse_epoch e = {loss / (double)per_epoch,
                               (double)correct / (double)(per_epoch * ROWS), now() - t0};
            progress(arg, epoch, c->epochs, &e);
        }
    }
    r->seconds = now() - start;
    nn_adam_free(&adam);
    attn_activations_destroy(act);
    return st;
}

attn_status reverse_train(attn_context *ctx, const reverse_config *c, reverse_result *r,
                          reverse_progress_fn progress, void *arg)
{
    *r = (reverse_result){0};
    int64_t per_epoch = c->train_size / REVERSE_BATCH;
    r->step_loss = malloc((size_t)(per_epoch * c->epochs + 1) * sizeof(double));
    batch *b = malloc(sizeof *b);
    unsigned char *train = NULL, *test = NULL;
    int64_t *order = NULL;
    model m;
    prng g;
    prng_seed(&g, c->seed);
    attn_status st = model_init(&m, &g);
    if (st == ATTN_OK && (!r->step_loss || !b))
        st = ATTN_ERR_OUT_OF_MEMORY;
    if (st == ATTN_OK)
        st = make_data(c, &g, &train, &test, &order);
    if (st == ATTN_OK)
        st = train_epochs(ctx, c, &m, b, train, order, &g, r, progress, arg);
    if (st == ATTN_OK)
        st = attn_encoder_layer_set_params(m.enc, m.enc_params);
    if (st == ATTN_OK) {
        for (int64_t i = 0; i < c->test_size; i++)
            order[i] = i;
        st = evaluate(ctx, &m, b, test, order, c->test_size, &r->test_accuracy);
    }
    if (st == ATTN_OK && c->test_size > 0)
        st = attention_map(&m, b, test, ctx, r);
    model_free(&m);
    free(b), free(train), free(test), free(order);
    return st;
}

void reverse_result_free(reverse_result *r)
{
    free(r->step_loss);
    r->step_loss = NULL;
}
