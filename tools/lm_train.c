/*
 * lm_train.c — the training loop of the character language model (see
 * lm_train.h).
 *
 * Batches: the windows are shuffled every epoch, then cut into groups of
 * 16 batches whose windows are sorted by length, so that a batch pads
 * little (its length is its longest window's); the batches are then taken
 * in a random order. Padding rows get the label −1 (no loss), and, the
 * attention being causal, no real row sees them.
 *
 * AdamW decays the weight matrices (the embedding, the layers' projections
 * and linears, the head), not the biases and norms, as nanoGPT does.
 */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "lm_train.h"

lm_train_config lm_train_config_default(void)
{
    return (lm_train_config){.epochs = 40, .seed = 42, .batch = 32, .lr = 1e-3,
                             .weight_decay = 0.1, .clip = 1.0, .dropout = 0.1, .warmup = 50,
                             .patience = 0, .input_noise = 0.5};
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* ---- batches ------------------------------------------------------------------------ */

/* Inputs and labels [n, len] of windows ids[0 .. n), len their longest. */
static int64_t load_batch(const lm_windows *w, const int64_t *ids, int64_t n, int *tokens,
                          int *labels, int64_t *counted)
{
    int64_t len = 1;
    for (int64_t k = 0; k < n; k++)
        len = w->len[ids[k]] > len ? w->len[ids[k]] : len;
    *counted = 0;
    for (int64_t k = 0; k < n; k++) {
        int64_t id = ids[k];
        const int *t = w->tokens + w->begin[id];
        for (int64_t i = 0; i < len; i++) {
            int64_t r = k * len + i;
            int real = i < w->len[id];
            tokens[r] = real ? t[i] : LM_EOS;
            labels[r] = real && i >= w->skip[id] ? t[i + 1] : -1;
            *counted += labels[r] >= 0;
        }
    }
    return len;
}

static void shuffle(int64_t *a, int64_t n, prng *g)
{
    for (int64_t i = n - 1; i > 0; i--) {
        int64_t j = (int64_t)(prng_next(g) % (uint64_t)(i + 1)), t = a[i];
        a[i] = a[j], a[j] = t;
    }
}

static const lm_windows *sort_by;

static int longer_first(const void *a, const void *b)
{
    int64_t x = sort_by->len[*(const int64_t *)a], y = sort_by->len[*(const int64_t *)b];
    return (x < y) - (x > y);
}

/* order: the epoch's windows, batch after batch; starts: each batch's first. */
static int64_t plan_epoch(const lm_windows *w, int64_t batch, prng *g, int64_t *order,
                          int64_t *starts)
{
    for (int64_t i = 0; i < w->n; i++)
        order[i] = i;
    shuffle(order, w->n, g);
    int64_t group = 16 * batch;
    sort_by = w;
    for (int64_t s = 0; s < w->n; s += group)
        qsort(order + s, (size_t)(w->n - s < group ? w->n - s : group), sizeof *order,
              longer_first);
    int64_t n_batches = (w->n + batch - 1) / batch;
    for (int64_t k = 0; k < n_batches; k++)
        starts[k] = k * batch;
    shuffle(starts, n_batches, g);
    return n_batches;
}

/* ---- evaluation ---------------------------------------------------------------------- */

attn_status lm_evaluate(attn_context *ctx, lm_model *m, lm_batch *b, const lm_windows *w,
                        int64_t batch, double *loss)
{
    int64_t rows = batch * m->c.context;
    int *tokens = malloc((size_t)rows * sizeof *tokens);
    int *labels = malloc((size_t)rows * sizeof *labels);
    int64_t *ids = malloc((size_t)batch * sizeof *ids);
    attn_status st = tokens && labels && ids ? ATTN_OK : ATTN_ERR_OUT_OF_MEMORY;
    double total = 0.0;
    int64_t targets = 0;
    for (int64_t s = 0; s < w->n && st == ATTN_OK; s += batch) {
        int64_t n = w->n - s < batch ? w->n - s : batch, counted, correct = 0;
        for (int64_t k = 0; k < n; k++)
            ids[k] = s + k;
        int64_t len = load_batch(w, ids, n, tokens, labels, &counted);
        st = lm_model_forward(ctx, m, b, n, len, tokens, 0);
        if (st == ATTN_OK && counted > 0) {
            total += nn_cross_entropy(n * len, m->c.vocab_size, b->logits, labels, NULL,
                                      &correct) * (double)counted;
            targets += counted;
        }
    }
    free(tokens), free(labels), free(ids);
    *loss = targets > 0 ? total / (double)targets : 0.0;
    return st;
}

/* ---- training ------------------------------------------------------------------------ */

typedef struct trainer {
    int *tokens, *labels;
    int *plain;              /* the characters that are not structure tokens */
    int64_t n_plain;
    int64_t *order, *starts, *ids;
    unsigned char *decay;
    float *best;
    nn_adam adam;
    lm_batch b;
} trainer;

static void trainer_free(trainer *t, const lm_model *m)
{
    free(t->tokens), free(t->labels), free(t->order), free(t->starts), free(t->ids);
    free(t->plain);
    free(t->decay), free(t->best);
    nn_adam_free(&t->adam);
    lm_batch_free(&t->b, m);
}

static attn_status trainer_init(trainer *t, const lm_model *m, const lm_windows *w,
                                int64_t batch)
{
    *t = (trainer){0};
    int64_t rows = batch * m->c.context, n = w->n > 0 ? w->n : 1;
    t->tokens = malloc((size_t)rows * sizeof *t->tokens);
    t->labels = malloc((size_t)rows * sizeof *t->labels);
    t->order = malloc((size_t)n * sizeof *t->order);
    t->starts = malloc((size_t)n * sizeof *t->starts);
    t->ids = malloc((size_t)batch * sizeof *t->ids);
    t->decay = calloc((size_t)m->count, 1);
    t->best = malloc((size_t)m->count * sizeof *t->best);
    t->plain = malloc((size_t)m->c.vocab_size * sizeof *t->plain);
    if (!t->tokens || !t->labels || !t->order || !t->starts || !t->ids || !t->decay ||
        !t->best || !t->plain || nn_adam_init(&t->adam, m->count) != 0)
        return ATTN_ERR_OUT_OF_MEMORY;
    for (int tok = LM_SPECIALS; tok < m->c.vocab_size; tok++)
        if (!m->structure[tok])
            t->plain[t->n_plain++] = tok;
    for (int k = 0; k < m->n_tensors; k++)
        if (m->tensors[k].decay)
            memset(t->decay + m->tensors[k].offset, 1, (size_t)m->tensors[k].count);
    return lm_batch_create(&t->b, m, rows);
}

/* One optimizer step on the batch of windows ids[0 .. n): its loss. */
static attn_status train_step(attn_context *ctx, lm_model *m, trainer *t, const lm_windows *w,
                              int64_t n, const lm_train_config *c, double lr, uint64_t seed,
                              double *loss, int64_t *counted)
{
    int64_t len = load_batch(w, t->ids, n, t->tokens, t->labels, counted), correct = 0;
    if (c->input_noise > 0.0 && t->n_plain > 0) {
        /* Input characters replaced by random characters; never a line
         * break, a clause mark or <eos> either way, so the structure (and
         * the positions computed from it) stays. The targets stay. */
        prng g;
        prng_seed(&g, seed ^ 0x6e6f697365ULL);
        for (int64_t r = 0; r < n * len; r++)
            if (t->tokens[r] >= LM_SPECIALS && !m->structure[t->tokens[r]] &&
                prng_uniform(&g) < c->input_noise)
                t->tokens[r] = t->plain[prng_next(&g) % (uint64_t)t->n_plain];
    }
    attn_status st = lm_model_set_dropout(m, (float)c->dropout, seed);
    if (st == ATTN_OK)
        st = lm_model_forward(ctx, m, &t->b, n, len, t->tokens, 1);
    if (st != ATTN_OK)
        return st;
    *loss = nn_cross_entropy(n * len, m->c.vocab_size, t->b.logits, t->labels, t->b.d_logits,
                             &correct);
    if ((st = lm_model_backward(ctx, m, &t->b, n, len, t->tokens)) != ATTN_OK)
        return st;
    nn_clip_grad_norm(m->grads, m->count, c->clip);
    nn_adamw_step(&t->adam, m->params, m->grads, lr, c->weight_decay, t->decay);
    return lm_model_sync(m);
}

attn_status lm_train(attn_context *ctx, lm_model *m, const lm_windows *train,
                     const lm_windows *held, const lm_train_config *c, lm_train_result *r,
                     lm_progress_fn progress, void *arg)
{
    *r = (lm_train_result){.best_val_loss = 1e300};
    trainer t;
    attn_status st = trainer_init(&t, m, train, c->batch);
    int64_t per_epoch = (train->n + c->batch - 1) / c->batch;
    int64_t total_steps = per_epoch * c->epochs;
    r->step_loss = malloc((size_t)(total_steps > 0 ? total_steps : 1) * sizeof *r->step_loss);
    r->val_loss = malloc((size_t)c->epochs * sizeof *r->val_loss);
    if (st == ATTN_OK && (!r->step_loss || !r->val_loss))
        st = ATTN_ERR_OUT_OF_MEMORY;
    prng g;
    prng_seed(&g, c->seed);
    if (st == ATTN_OK) {
        lm_model_init(m, &g);
        st = lm_model_sync(m);
    }
    double start = now();
    for (int e = 0; e < c->epochs && st == ATTN_OK; e++) {
        double t0 = now(), sum = 0.0;
        int64_t targets = 0, n_batches = plan_epoch(train, c->batch, &g, t.order, t.starts);
        for (int64_t k = 0; k < n_batches && st == ATTN_OK; k++) {
            int64_t n = train->n - t.starts[k] < c->batch ? train->n - t.starts[k] : c->batch;
            memcpy(t.ids, t.order + t.starts[k], (size_t)n * sizeof *t.ids);
            double lr = c->lr * nn_cosine_warmup(r->steps + 1, c->warmup, total_steps);
            double loss;
            int64_t counted;
            st = train_step(ctx, m, &t, train, n, c, lr, prng_next(&g), &loss, &counted);
            if (st == ATTN_OK) {
                r->step_loss[r->steps++] = loss;
                sum += loss * (double)counted;
                targets += counted;
            }
        }
        double seconds = now() - t0, val = 0.0;
        if (st == ATTN_OK)
            st = lm_evaluate(ctx, m, &t.b, held, c->batch, &val);
        if (st != ATTN_OK)
            break;
        r->val_loss[r->epochs_run++] = val;
        if (val < r->best_val_loss) {
            r->best_val_loss = val, r->best_epoch = e + 1;
            memcpy(t.best, m->params, (size_t)m->count * sizeof *t.best);
        }
        lm_epoch ep = {targets > 0 ? sum / (double)targets : 0.0, val,
                       (double)targets / seconds, seconds};
        if (progress)
            progress(arg, e + 1, c->epochs, &ep);
        if (c->patience > 0 && e + 1 - r->best_epoch >= c->patience)
            break;
    }
    r->seconds = now() - start;
    if (st == ATTN_OK && r->best_epoch > 0 && !c->keep_last) {
        memcpy(m->params, t.best, (size_t)m->count * sizeof *t.best);
        st = lm_model_sync(m);
    }
    trainer_free(&t, m);
    return st;
}

void lm_train_result_free(lm_train_result *r)
{
    free(r->step_loss), free(r->val_loss);
    *r = (lm_train_result){0};
}
