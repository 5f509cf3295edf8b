/*
 * encoder_train.c — the backward of the encoder layer (encoder.c): the
 * chain rule through the passes of its forward, in reverse, with the
 * attention's backward from mha_train.c. With dY = ∂L/∂out:
 *
 *   post-norm   dS2 = LN2'(dY);  dF = drop2(dS2)
 *               dG = dF · W2;  dHidden = act'(hidden) ∘ drop(dG)
 *               dH = dS2 + dHidden · W1;  dS1 = LN1'(dH);  dA = drop1(dS1)
 *               dX = dS1 + SA'(dA)
 *   pre-norm    dF = drop2(dY);  dG = dF · W2;  dHidden = act'(hidden) ∘ drop(dG)
 *               dH = dY + LN2'(dHidden · W1);  dA = drop1(dH)
 *               dX = dH + LN1'(SA'(dA))
 *
 * (LN' is layer_norm.c's backward of a row; the parameter gradients come
 * from the same tensors: linear.c for linear1 and linear2, layer_norm.c for
 * the norms, mha_train.c for the attention.) Everything that can fail —
 * the workspace, the threads, the attention backward's scratch — is made
 * before the first output byte is written.
 */
#include <string.h>

#include "attn_internal.h"
#include "block_rows.h"

/* One pass over rows of d features: with x, dx = LN'(dy; x, stats, w) + add
 * (add may be NULL); without, dx = dy + add (dx NULL: nothing). Then, with
 * dd, dd = drop(dx, or dy when dx is NULL) (drop NULL: a plain copy). */
typedef struct grad_pass {
    int64_t rows, d;
    const float *x, *stats, *w, *dy, *add;
    float *dx;
    const attn_dropout *drop;
    uint32_t site;
    float *dd;
} grad_pass;

static void grad_rows(void *arg, int64_t item, int worker)
{
    (void)worker;
    const grad_pass *p = arg;
    int64_t r0, r1;
    attn_enc_block(item, p->rows, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        int64_t o = r * p->d;
        const float *dy = p->dy + o, *add = p->add ? p->add + o : NULL;
        if (p->x) {
            attn_layer_norm_backward_row(p->x + o, p->stats + ATTN_LAYER_NORM_STATS * r, p->w,
                                         dy, p->d, add, p->dx + o);
        } else if (p->dx) {
            for (int64_t j = 0; j < p->d; j++)
                p->dx[o + j] = dy[j] + add[j];
        }
        if (!p->dd)
            continue;
        memcpy(p->dd + o, p->dx ? p->dx + o : dy, (size_t)p->d * sizeof(float));
        if (p->drop)
            attn_dropout_apply_elements(p->drop, p->site, r, p->dd + o, p->d);
    }
}

/* dG becomes dHidden = act'(hidden) ∘ drop(dG), rows of ff features. */
typedef struct activation_grad_pass {
    int64_t rows, ff;
    attn_activation activation;
    const float *hidden;
    float *dg;
    const attn_dropout *drop;
} activation_grad_pass;

static void activation_grad_rows(void *arg, int64_t item, int worker)
{
    (void)worker;
    const activation_grad_pass *p = arg;
    int64_t r0, r1;
    attn_enc_block(item, p->rows, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        float *dg = p->dg + r * p->ff;
        if (p->drop)
            attn_dropout_apply_elements(p->drop, ATTN_DROP_SITE_FF, r, dg, p->ff);
        attn_activation_backward(p->activation, p->hidden + r * p->ff, dg, dg, p->ff);
    }
}

/* A norm's weight and bias gradients, by blocks of features. */
typedef struct norm_param_pass {
    int64_t rows, d;
    const float *x, *stats, *dy;
    float *d_weight, *d_bias;
} norm_param_pass;

static void norm_param_block(void *arg, int64_t item, int worker)
{
    (void)worker;
    const norm_param_pass *p = arg;
    int64_t c0 = item * ATTN_LAYER_NORM_FEATURE_BLOCK;
    int64_t m = p->d - c0 < ATTN_LAYER_NORM_FEATURE_BLOCK ? p->d - c0
                                                          : ATTN_LAYER_NORM_FEATURE_BLOCK;
    attn_layer_norm_param_grads(p->x, p->stats, p->dy, p->rows, p->d, c0, m, p->d_weight,
                                p->d_bias);
}

/* ---- one backward call ------------------------------------------------------ */

typedef struct backward_call {
    attn_context *ctx;
    const attn_encoder_layer *l;
    const attn_activations *act;
    const float *d_out;
    float *d_src, *d_params;
    float *tail_grad;          /* d_params past the attention's, or NULL */
    int64_t rows;
    int threads;
    const attn_dropout *drop;  /* the element sites', or NULL */
    float *d1, *d2, *d3, *dg;  /* [n, d] × 3 and [n, ff] of the workspace */
    float *mha_ws;
    const char *f;
} backward_call;

static void run_rows(const backward_call *c, attn_task_fn fn, void *pass)
{
    attn_context_run(c->ctx, c->threads, fn, pass, attn_enc_blocks(c->rows));
}

static const float *slot(const backward_call *c, int i)
{
    return c->act->slot[i];
}

static void norm_params(const backward_call *c, const float *x, const float *stats,
                        const float *dy, int64_t w_offset, int64_t b_offset)
{
    if (!c->tail_grad)
        return;
    norm_param_pass p = {c->rows, c->l->d_model, x, stats, dy, c->tail_grad + w_offset,
                         c->tail_grad + b_offset};
    attn_context_run(c->ctx, c->threads, norm_param_block, &p,
                     attn_ceil_div(c->l->d_model, ATTN_LAYER_NORM_FEATURE_BLOCK));
}

/* From dF [n, d]: linear2's and linear1's gradients, and the gradient of
 * linear1's input, dHidden · W1, into d_in with beta (1: added). */
static void feed_forward_backward(const backward_call *c, const float *d_f, float beta,
                                  float *d_in)
{
    const attn_encoder_layer *l = c->l;
    const attn_encoder_tail *at = &l->at;
    int64_t d = l->d_model, ff = l->dim_feedforward;
    if (c->tail_grad)
        attn_linear_backward_params(c->ctx, c->threads, c->rows, ff, d, slot(c, ATTN_ENC_ACT_OUT),
                                    d_f, c->tail_grad + at->w2, c->tail_grad + at->b2);
    attn_linear_backward_input(c->ctx, c->threads, c->rows, ff, d, d_f, l->tail + at->w2, 0.0f,
                               c->dg);
    activation_grad_pass ap = {c->rows, ff, l->activation, slot(c, ATTN_ENC_HIDDEN), c->dg,
                               c->drop};
    run_rows(c, activation_grad_rows, &ap);
    if (c->tail_grad)
        attn_linear_backward_params(c->ctx, c->threads, c->rows, d, ff, slot(c, ATTN_ENC_FF_IN),
                                    c->dg, c->tail_grad + at->w1, c->tail_grad + at->b1);
    attn_linear_backward_input(c->ctx, c->threads, c->rows, d, ff, c->dg, l->tail + at->w1, beta,
                               d_in);
}

/* The attention's backward of dA: its parameters' gradients into d_params,
 * its input's into d_in (NULL: not computed). */
static attn_status attention_backward(const backward_call *c, const float *d_a, float *d_in)
{
    float *const grad[4] = {d_in, d_in, d_in, c->d_params};
    return attn_mha_backward_run(c->ctx, c->l->self_attn, c->act->inner, d_a, grad, c->mha_ws,
                                 c->f);
}

static attn_status backward_post_norm(const backward_call *c)
{
    const attn_encoder_layer *l = c->l;
    const attn_encoder_tail *at = &l->at;
    const float *t = l->tail;
    int64_t d = l->d_model;
    /* dS2 into d1, dF into d2. */
    norm_params(c, slot(c, ATTN_ENC_LN2_IN), slot(c, ATTN_ENC_STATS2), c->d_out, at->norm2_w,
                at->norm2_b);
    grad_pass p1 = {c->rows, d, slot(c, ATTN_ENC_LN2_IN), slot(c, ATTN_ENC_STATS2),
                    t + at->norm2_w, c->d_out, NULL, c->d1, c->drop, ATTN_DROP_SITE_BLOCK2,
                    c->d2};
    run_rows(c, grad_rows, &p1);
    /* dH = dS2 + dHidden · W1, in d1. */
    feed_forward_backward(c, c->d2, 1.0f, c->d1);
    /* dS1 into d2, dA into d1. */
    norm_params(c, slot(c, ATTN_ENC_LN1_IN), slot(c, ATTN_ENC_STATS1), c->d1, at->norm1_w,
                at->norm1_b);
    grad_pass p2 = {c->rows, d, slot(c, ATTN_ENC_LN1_IN), slot(c, ATTN_ENC_STATS1),
                    t + at->norm1_w, c->d1, NULL, c->d2, c->drop, ATTN_DROP_SITE_BLOCK1,
                    c->d1};
    run_rows(c, grad_rows, &p2);
    attn_status st = attention_backward(c, c->d1, c->d_src);
    if (st != ATTN_OK || !c->d_src)
        return st;
    grad_pass p3 = {c->rows, d, NULL, NULL, NULL, c->d_src, c->d2, c->d_src, NULL, 0, NULL};
    run_rows(c, grad_rows, &p3);
    return ATTN_OK;
}

static attn_status backward_pre_norm(const backward_call *c)
{
    const attn_encoder_layer *l = c->l;
    const attn_encoder_tail *at = &l->at;
    const float *t = l->tail;
    int64_t d = l->d_model;
    /* dF = drop2(dY) into d2; dN2 = dHidden · W1 into d3. */
    grad_pass p1 = {c->rows, d, NULL, NULL, NULL, c->d_out, NULL, NULL, c->drop,
                    ATTN_DROP_SITE_BLOCK2, c->d2};
    run_rows(c, grad_rows, &p1);
    feed_forward_backward(c, c->d2, 0.0f, c->d3);
    /* dH = dY + LN2'(dN2) into d1, dA = drop1(dH) into d2. */
    norm_params(c, slot(c, ATTN_ENC_LN2_IN), slot(c, ATTN_ENC_STATS2), c->d3, at->norm2_w,
                at->norm2_b);
    grad_pass p2 = {c->rows, d, slot(c, ATTN_ENC_LN2_IN), slot(c, ATTN_ENC_STATS2),
                    t + at->norm2_w, c->d3, c->d_out, c->d1, c->drop, ATTN_DROP_SITE_BLOCK1,
                    c->d2};
    run_rows(c, grad_rows, &p2);
    /* dN1 into d3; dX = dH + LN1'(dN1). */
    attn_status st = attention_backward(c, c->d2, c->d3);
    if (st != ATTN_OK)
        return st;
    norm_params(c, slot(c, ATTN_ENC_LN1_IN), slot(c, ATTN_ENC_STATS1), c->d3, at->norm1_w,
                at->norm1_b);
    if (!c->d_src)
        return ATTN_OK;
    grad_pass p3 = {c->rows, d, slot(c, ATTN_ENC_LN1_IN), slot(c, ATTN_ENC_STATS1),
                    t + at->norm1_w, c->d3, c->d1, c->d_src, NULL, 0, NULL};
    run_rows(c, grad_rows, &p3);
    return ATTN_OK;
}

/* ---- checks and resources ---------------------------------------------------- */

static attn_status check_backward(const backward_call *c)
{
    const char *f = c->f;
    if (!c->ctx)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "ctx is NULL");
    if (!c->l)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "layer is NULL");
    const attn_encoder_layer *l = c->l;
    attn_status st = attn_activations_check_filled(c->act, l, l->version,
                                                   "attn_encoder_layer_forward (training)",
                                                   "layer", "layer's parameters or options", f);
    if (st != ATTN_OK)
        return st;
    const attn_activations *act = c->act;
    /* Filled with the layer: only a program writing into act could break this. */
    if ((st = attn_activations_check_filled(act->inner, l->self_attn, l->self_attn->version,
                                            "attn_encoder_layer_forward (training)", "layer",
                                            "layer's parameters or options", f)) != ATTN_OK)
        return st;
    int64_t rows = act->batch * act->len_q;
    if ((st = attn_check_data(c->d_out, rows * l->d_model, "d_out", f)) != ATTN_OK)
        return st;
    /* The mask is caller memory: its lengths may have changed since. */
    const attn_mask_dims md = {act->batch, l->nhead, act->len_q, act->len_kv};
    if ((st = attn_mask_validate(act->mask, &md, f)) != ATTN_OK)
        return st;
    int64_t count = attn_encoder_attention_params(l) + l->at.count;
    const attn_buffer in = {c->d_out, (size_t)rows, (size_t)l->d_model, "d_out"};
    const attn_buffer outs[2] = {{c->d_src, (size_t)rows, (size_t)l->d_model, "d_src"},
                                 {c->d_params, 1, (size_t)count, "d_params"}};
    return attn_check_outputs_disjoint(outs, 2, 0, &in, 1, f);
}

/* The workspace (d1, d2, d3, dG, then the attention's), the threads and the
 * attention backward's scratch. */
static attn_status reserve(backward_call *c)
{
    size_t nd = (size_t)(c->rows * c->l->d_model);
    size_t nf = (size_t)(c->rows * c->l->dim_feedforward);
    size_t mha = attn_mha_backward_floats(c->l->self_attn, c->act->inner), floats;
    if (__builtin_mul_overflow(nd, (size_t)3, &floats) ||
        __builtin_add_overflow(floats, nf, &floats) ||
        __builtin_add_overflow(floats, mha, &floats))
        return attn_fail(ATTN_ERR_SIZE_OVERFLOW, c->f, "the gradients do not fit in memory");
    float *ws;
    attn_status st = attn_context_workspace(c->ctx, c->f, floats, &ws);
    if (st != ATTN_OK)
        return st;
    c->d1 = ws, c->d2 = ws + nd, c->d3 = ws + 2 * nd, c->dg = ws + 3 * nd;
    c->mha_ws = c->dg + nf;
    /* The row passes' blocks, or the parameter gradients' blocks of
     * features when there are more of them. */
    int64_t items = attn_enc_blocks(c->rows);
    if (attn_linear_param_items(c->l->dim_feedforward) > items)
        items = attn_linear_param_items(c->l->dim_feedforward);
    c->threads = attn_context_threads(c->ctx, items);
    if ((st = attn_context_reserve(c->ctx, c->f, c->threads, 0)) != ATTN_OK)
        return st;
    return attn_mha_backward_reserve(c->ctx, c->l->self_attn, c->act->inner, c->f);
}

attn_status attn_encoder_layer_backward(attn_context *ctx, const attn_encoder_layer *layer,
                                        const attn_activations *act, const float *d_out,
                                        float *d_src, float *d_params)
{
    backward_call c = {.ctx = ctx, .l = layer, .act = act, .d_out = d_out, .d_src = d_src,
                       .d_params = d_params, .f = "attn_encoder_layer_backward"};
    attn_status st = check_backward(&c);
    if (st != ATTN_OK || (!d_src && !d_params))
        return st;
    c.rows = act->batch * act->len_q;
    c.tail_grad = d_params ? d_params + attn_encoder_attention_params(layer) : NULL;
    c.drop = layer->dropout.p > 0.0f ? &layer->dropout : NULL;
    if ((st = reserve(&c)) != ATTN_OK)
        return st;
    return layer->norm_first ? backward_pre_norm(&c) : backward_post_norm(&c);
}
