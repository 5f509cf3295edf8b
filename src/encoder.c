/*
 * encoder.c — the Transformer encoder layer (Vaswani et al. 2017 §3.1; D2L
 * §10.7), with the numbers of PyTorch 1.13's nn.TransformerEncoderLayer:
 * its parameters, options and forward (the backward is encoder_train.c).
 *
 * The layer owns a multi-head layer (mha.c) for its self-attention and one
 * array, `tail`, for the rest of its parameters in named_parameters order.
 * A forward is the attention, two linear layers (linear.c: one sgemm per
 * block of rows) and row-wise passes over blocks of rows on the context's
 * threads, each fusing what one row needs at that point:
 *
 *   post-norm   A = SA(x)
 *               [rows] s1 = x + drop1(A);  h = LN1(s1)
 *               hidden = linear1(h);  [rows] g = drop(act(hidden));  F = linear2(g)
 *               [rows] s2 = h + drop2(F);  out = LN2(s2)
 *   pre-norm    [rows] n1 = LN1(x);  A = SA(n1)
 *               [rows] h = x + drop1(A);  n2 = LN2(h)
 *               hidden = linear1(n2);  [rows] g = drop(act(hidden));  F = linear2(g)
 *               [rows] out = h + drop2(F)
 *
 * Inference keeps nothing and works in place where it can (the activation
 * overwrites `hidden`, the norms their input; pre-norm keeps h in `out`);
 * training writes s1 or x, s2 or h, linear1's input, hidden, g and the
 * norms' statistics to the activations, and the attention's tape to
 * act->inner. `out` is written only after the attention, the last step that
 * can fail, and src is not read after the pass that writes `out` first, so
 * `out` may be `src`.
 */
#include <math.h>
#include <string.h>

#include "attn_internal.h"

/* ---- the layer ------------------------------------------------------------ */

static attn_encoder_tail tail_layout(int64_t d, int64_t ff)
{
    attn_encoder_tail t;
    t.w1 = 0;
    t.b1 = t.w1 + ff * d;
    t.w2 = t.b1 + ff;
    t.b2 = t.w2 + d * ff;
    t.norm1_w = t.b2 + d;
    t.norm1_b = t.norm1_w + d;
    t.norm2_w = t.norm1_b + d;
    t.norm2_b = t.norm2_w + d;
    t.count = t.norm2_b + d;
    return t;
}

int64_t attn_encoder_attention_params(const attn_encoder_layer *l)
{
    return 4 * l->d_model * l->d_model + 4 * l->d_model;
}

static attn_status check_create(int64_t d_model, int64_t nhead, int64_t dim_feedforward,
                                attn_activation activation, int norm_first, float eps,
                                const char *f)
{
    const int64_t sizes[3] = {d_model, nhead, dim_feedforward};
    static const char *names[3] = {"d_model", "nhead", "dim_feedforward"};
    attn_status st;
    if ((st = attn_check_min(sizes, names, 3, 1, f)) != ATTN_OK)
        return st;
    if (activation != ATTN_ACTIVATION_RELU && activation != ATTN_ACTIVATION_GELU)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "activation (%d) is not an attn_activation",
                         (int)activation);
    if (norm_first != 0 && norm_first != 1)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "norm_first (%d) is not 0 or 1",
                         norm_first);
    if (!(isfinite(eps) && eps > 0.0f))
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f,
                         "layer_norm_eps (%g) is not finite and > 0", (double)eps);
    if (d_model % nhead != 0)
        return attn_fail(ATTN_ERR_SHAPE_MISMATCH, f,
                         "d_model (%lld) is not a multiple of nhead (%lld)",
                         (long long)d_model, (long long)nhead);
    if (d_model > INT64_MAX / 3)
        return attn_fail(ATTN_ERR_SIZE_OVERFLOW, f, "d_model (%lld) is too large",
                         (long long)d_model);
    const int64_t in_proj[2] = {3 * d_model, d_model}, linear[2] = {dim_feedforward, d_model};
    if ((st = attn_check_tensor(in_proj, 2, "self_attn.in_proj_weight", f)) != ATTN_OK ||
        (st = attn_check_tensor(linear, 2, "linear1.weight", f)) != ATTN_OK)
        return st;
    if ((st = attn_check_blas(d_model, "d_model", f)) != ATTN_OK ||
        (st = attn_check_blas(dim_feedforward, "dim_feedforward", f)) != ATTN_OK)
        return st;
    /* The whole flat vector must fit too: 4·d² + 2·d·ff + ff + 9·d. */
    const attn_encoder_tail t = tail_layout(d_model, dim_feedforward);
    int64_t total;
    if (__builtin_add_overflow(t.count, 4 * d_model * d_model + 4 * d_model, &total) ||
        (uint64_t)total > SIZE_MAX / sizeof(float))
        return attn_fail(ATTN_ERR_SIZE_OVERFLOW, f, "the parameters do not fit in memory");
    return ATTN_OK;
}

attn_status attn_encoder_layer_create(attn_encoder_layer **layer, int64_t d_model,
                                      int64_t nhead, int64_t dim_feedforward,
                                      attn_activation activation, int norm_first,
                                      float layer_norm_eps)
{
    static const char *f = "attn_encoder_layer_create";
    if (!layer)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "layer is NULL");
    attn_status st = check_create(d_model, nhead, dim_feedforward, activation, norm_first,
                                  layer_norm_eps, f);
    if (st != ATTN_OK)
        return st;
    attn_encoder_layer *l = attn_alloc(sizeof *l);
    if (!l)
        return attn_fail(ATTN_ERR_OUT_OF_MEMORY, f, "cannot allocate the layer");
    *l = (attn_encoder_layer){.d_model = d_model, .nhead = nhead,
                              .dim_feedforward = dim_feedforward, .activation = activation,
                              .norm_first = norm_first == 1, .eps = layer_norm_eps,
                              .at = tail_layout(d_model, dim_feedforward),
                              .version = attn_next_version()};
    l->tail = attn_alloc((size_t)l->at.count * sizeof(float));
    /* The arguments were checked: attn_mha_create can fail only for memory. */
    if (!l->tail ||
        attn_mha_create(&l->self_attn, d_model, nhead, nhead, d_model, d_model, 1) != ATTN_OK) {
        attn_encoder_layer_destroy(l);
        return attn_fail(ATTN_ERR_OUT_OF_MEMORY, f, "cannot allocate the parameters");
    }
    *layer = l;
    return ATTN_OK;
}

void attn_encoder_layer_destroy(attn_encoder_layer *layer)
{
    if (!layer)
        return;
    attn_mha_destroy(layer->self_attn);
    attn_free(layer->tail);
    attn_free(layer);
}

attn_status attn_encoder_layer_set_causal(attn_encoder_layer *layer, attn_causal causal)
{
    if (!layer)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "layer is NULL");
    attn_status st = attn_check_causal(causal, __func__);
    if (st != ATTN_OK)
        return st;
    layer->self_attn->causal = causal;
    layer->self_attn->version = attn_next_version();
    layer->version = attn_next_version();
    return ATTN_OK;
}

attn_status attn_encoder_layer_set_dropout(attn_encoder_layer *layer, float p, uint64_t seed)
{
    if (!layer)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "layer is NULL");
    attn_status st = attn_dropout_set(&layer->dropout, p, seed, __func__);
    if (st != ATTN_OK)
        return st;
    /* The attention weights' site: the same p and key (counters ending in 0). */
    layer->self_attn->dropout = layer->dropout;
    layer->self_attn->version = attn_next_version();
    layer->version = attn_next_version();
    return ATTN_OK;
}

attn_status attn_encoder_layer_param_count(const attn_encoder_layer *layer, int64_t *count)
{
    if (!layer)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "layer is NULL");
    if (!count)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "count is NULL");
    *count = attn_encoder_attention_params(layer) + layer->at.count;
    return ATTN_OK;
}

attn_status attn_encoder_layer_get_params(const attn_encoder_layer *layer, float *params)
{
    static const char *f = "attn_encoder_layer_get_params";
    if (!layer)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "layer is NULL");
    if (!params)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "params is NULL");
    if (!layer->set)
        return attn_fail(ATTN_ERR_STATE, f,
                         "the parameters are not set: call attn_encoder_layer_set_params");
    /* Set together with the tail: cannot fail. */
    (void)attn_mha_get_params(layer->self_attn, params);
    memcpy(params + attn_encoder_attention_params(layer), layer->tail,
           (size_t)layer->at.count * sizeof(float));
    return ATTN_OK;
}

attn_status attn_encoder_layer_set_params(attn_encoder_layer *layer, const float *params)
{
    static const char *f = "attn_encoder_layer_set_params";
    if (!layer)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "layer is NULL");
    if (!params)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "params is NULL");
    (void)attn_mha_set_params(layer->self_attn, params);
    memcpy(layer->tail, params + attn_encoder_attention_params(layer),
           (size_t)layer->at.count * sizeof(float));
    layer->set = true;
    layer->version = attn_next_version();
    return ATTN_OK;
}

/* ---- row-wise passes -------------------------------------------------------- */

/* One pass over rows of d_model features: sum = x + drop(a) (a NULL: sum =
 * x, copied unless sum is x), then, if norm_w, y = LN(sum) with its
 * statistics (stats NULL: not kept). drop (NULL: none) drops a in place. */
typedef struct residual_norm_pass {
    int64_t rows, d;
    const float *x;
    float *a;
    const attn_dropout *drop;
    uint32_t site;
    float *sum;
    const float *norm_w, *norm_b;
    float eps;
    float *y, *stats;
} residual_norm_pass;

static void residual_norm_rows(void *arg, int64_t item, int worker)
{
    (void)worker;
    const residual_norm_pass *p = arg;
    int64_t r0, r1;
    attn_enc_block(item, p->rows, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        const float *x = p->x + r * p->d;
        float *sum = p->sum + r * p->d;
        if (p->a) {
            float *a = p->a + r * p->d;
            if (p->drop)
                attn_dropout_apply_elements(p->drop, p->site, r, a, p->d);
            for (int64_t j = 0; j < p->d; j++)
                sum[j] = x[j] + a[j];
        } else if (sum != x) {
            memcpy(sum, x, (size_t)p->d * sizeof(float));
        }
        if (p->norm_w)
            attn_layer_norm_row(sum, p->d, p->norm_w, p->norm_b, p->eps, p->y + r * p->d,
                                p->stats ? p->stats + ATTN_LAYER_NORM_STATS * r : NULL);
    }
}

/* g = drop(act(hidden)) over rows of dim_feedforward features. */
typedef struct activation_pass {
    int64_t rows, ff;
    attn_activation activation;
    const float *hidden;
    float *g;
    const attn_dropout *drop;
} activation_pass;

static void activation_rows(void *arg, int64_t item, int worker)
{
    (void)worker;
    const activation_pass *p = arg;
    int64_t r0, r1;
    attn_enc_block(item, p->rows, &r0, &r1);
    for (int64_t r = r0; r < r1; r++) {
        attn_activation_forward(p->activation, p->hidden + r * p->ff, p->g + r * p->ff, p->ff);
        if (p->drop)
            attn_dropout_apply_elements(p->drop, ATTN_DROP_SITE_FF, r, p->g + r * p->ff, p->ff);
    }
}

/* ---- the forward ------------------------------------------------------------ */

/* Where one forward puts its intermediate tensors (see the top comment). */
typedef struct forward_buffers {
    const float *attn_in; /* the attention's input: x (post-norm) or n1 [n, d] */
    float *n1;            /* pre-norm: LN1(x) */
    float *a;         /* the attention's output, later F [n, d] */
    float *s1, *h;    /* post-norm: x + drop1(A) and h = LN1 of it */
    float *ln2_in;    /* post-norm: s2; pre-norm: h */
    float *ff_in;     /* linear1's input */
    float *hidden, *g;
    float *stats1, *stats2;  /* NULL in inference */
} forward_buffers;

typedef struct forward_call {
    attn_context *ctx;
    const attn_encoder_layer *l;
    int64_t batch, len, rows;
    const float *src;
    const attn_mask *mask;
    float *out;
    attn_activations *act;   /* NULL: inference */
    attn_mha_step *step;     /* a cached step (attn_encoder_layer_forward_cached), or NULL */
    int threads;
    const char *f;
} forward_call;

static void run_rows(const forward_call *c, attn_task_fn fn, void *pass)
{
    attn_context_run(c->ctx, c->threads, fn, pass, attn_enc_blocks(c->rows));
}

static const attn_dropout *training_dropout(const forward_call *c)
{
    return c->act && c->l->dropout.p > 0.0f ? &c->l->dropout : NULL;
}

/* A = SA(attn_in), on the attention's tape in training. */
static attn_status self_attention(const forward_call *c, const forward_buffers *b,
                                  float *mha_ws)
{
    if (c->step) {
        attn_mha_step_run(c->step, b->attn_in, b->a);  /* prepared: cannot fail */
        return ATTN_OK;
    }
    const attn_mha *m = c->l->self_attn;
    const attn_mha_call mc = {c->batch, c->len, c->len, b->attn_in, b->attn_in, b->attn_in,
                              b->a, NULL};
    if (c->act) {
        attn_activations *inner;
        attn_status st = attn_activations_inner(c->act, &inner, c->f);
        if (st != ATTN_OK)
            return st;
        return attn_mha_forward_train_run(c->ctx, m, &mc, c->mask, inner, c->f);
    }
    size_t nd = (size_t)(c->rows * c->l->d_model);
    attn_mha_buffers buf = {.qp = mha_ws, .ap = mha_ws + nd, .kp = mha_ws + 2 * nd,
                            .vp = mha_ws + 3 * nd};
    return attn_mha_run(c->ctx, m, &mc, c->mask, &buf, c->f);
}

/* linear1, the activation and linear2: F into b->a. */
static void feed_forward(const forward_call *c, const forward_buffers *b)
{
    const attn_encoder_layer *l = c->l;
    const float *t = l->tail;
    attn_linear(c->ctx, c->threads, c->rows, l->d_model, l->dim_feedforward, b->ff_in,
                t + l->at.w1, t + l->at.b1, b->hidden);
    activation_pass ap = {c->rows, l->dim_feedforward, l->activation, b->hidden, b->g,
                          training_dropout(c)};
    run_rows(c, activation_rows, &ap);
    attn_linear(c->ctx, c->threads, c->rows, l->dim_feedforward, l->d_model, b->g,
                t + l->at.w2, t + l->at.b2, b->a);
}

static attn_status forward_post_norm(const forward_call *c, const forward_buffers *b,
                                     float *mha_ws)
{
    const attn_encoder_layer *l = c->l;
    const float *t = l->tail;
    attn_status st = self_attention(c, b, mha_ws);
    if (st != ATTN_OK)
        return st;
    residual_norm_pass p1 = {c->rows, l->d_model, c->src, b->a, training_dropout(c),
                             ATTN_DROP_SITE_BLOCK1, b->s1, t + l->at.norm1_w,
                             t + l->at.norm1_b, l->eps, b->h, b->stats1};
    run_rows(c, residual_norm_rows, &p1);
    feed_forward(c, b);
    residual_norm_pass p2 = {c->rows, l->d_model, b->h, b->a, training_dropout(c),
                             ATTN_DROP_SITE_BLOCK2, b->ln2_in, t + l->at.norm2_w,
                             t + l->at.norm2_b, l->eps, c->out, b->stats2};
    run_rows(c, residual_norm_rows, &p2);
    return ATTN_OK;
}

static attn_status forward_pre_norm(const forward_call *c, const forward_buffers *b,
                                    float *mha_ws)
{
    const attn_encoder_layer *l = c->l;
    const float *t = l->tail;
    /* Training keeps a copy of x for LN1's backward (s1 is its slot). */
    residual_norm_pass p1 = {c->rows, l->d_model, c->src, NULL, NULL, 0,
                             b->s1 ? b->s1 : (float *)c->src, t + l->at.norm1_w,
                             t + l->at.norm1_b, l->eps, b->n1, b->stats1};
    run_rows(c, residual_norm_rows, &p1);
    attn_status st = self_attention(c, b, mha_ws);
    if (st != ATTN_OK)
        return st;
    residual_norm_pass p2 = {c->rows, l->d_model, c->src, b->a, training_dropout(c),
                             ATTN_DROP_SITE_BLOCK1, b->ln2_in, t + l->at.norm2_w,
                             t + l->at.norm2_b, l->eps, b->ff_in, b->stats2};
    run_rows(c, residual_norm_rows, &p2);
    feed_forward(c, b);
    residual_norm_pass p3 = {c->rows, l->d_model, b->ln2_in, b->a, training_dropout(c),
                             ATTN_DROP_SITE_BLOCK2, c->out, NULL, NULL, 0.0f, NULL, NULL};
    run_rows(c, residual_norm_rows, &p3);
    return ATTN_OK;
}

static attn_status check_forward(const forward_call *c)
{
    const char *f = c->f;
    if (!c->ctx)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "ctx is NULL");
    if (!c->l)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "layer is NULL");
    if (!c->l->set)
        return attn_fail(ATTN_ERR_STATE, f,
                         "the parameters are not set: call attn_encoder_layer_set_params");
    /* The layer's own arguments by their names (batch, len, src, out), then
     * what is left of the attention's checks (the mask). */
    const int64_t counts[2] = {c->batch, c->len}, x[3] = {c->batch, c->len, c->l->d_model};
    static const char *names[2] = {"batch", "len"};
    attn_status st;
    if ((st = attn_check_min(counts, names, 2, 0, f)) != ATTN_OK ||
        (st = attn_check_tensor(x, 3, "src", f)) != ATTN_OK ||
        (st = attn_check_blas(c->batch * c->len, "batch × len", f)) != ATTN_OK ||
        (st = attn_check_data(c->src, c->batch * c->len * c->l->d_model, "src", f)) != ATTN_OK ||
        (st = attn_check_data(c->out, c->batch * c->len * c->l->d_model, "out", f)) != ATTN_OK)
        return st;
    const attn_mha_call mc = {c->batch, c->len, c->len, c->src, c->src, c->src, c->out, NULL};
    if ((st = attn_mha_validate_forward(c->ctx, c->l->self_attn, &mc, c->mask, f)) != ATTN_OK)
        return st;
    const int64_t hidden[3] = {c->batch, c->len, c->l->dim_feedforward};
    if ((st = attn_check_tensor(hidden, 3, "the feed-forward's hidden activations", f)) !=
        ATTN_OK)
        return st;
    size_t bytes = (size_t)(c->batch * c->len * c->l->d_model) * sizeof(float);
    if (c->out != c->src && attn_ranges_overlap(c->out, bytes, c->src, bytes))
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "out overlaps src without being src");
    if (c->act)
        return attn_dropout_check_range(training_dropout(c), c->batch, c->l->nhead, c->len,
                                        c->len, f);
    return ATTN_OK;
}

/* Sums of buffer sizes, in floats, failing on overflow. */
static bool add_floats(size_t *total, size_t count, size_t floats)
{
    size_t product;
    return !__builtin_mul_overflow(count, floats, &product) &&
           !__builtin_add_overflow(*total, product, total);
}

/* Inference's own buffers, in ws [2·n·d + n·ff]: A and h (post-norm) or
 * n1 (pre-norm) [n, d], and hidden [n, ff] (the activation in place). */
static void place_inference_buffers(const forward_call *c, float *ws, forward_buffers *b)
{
    size_t nd = (size_t)(c->rows * c->l->d_model);
    float *a = ws, *t = a + nd;
    *b = (forward_buffers){.a = a, .hidden = t + nd, .g = t + nd};
    if (c->l->norm_first) {
        b->n1 = t, b->attn_in = t, b->ff_in = t, b->ln2_in = c->out;
    } else {
        b->attn_in = c->src, b->s1 = t, b->h = t, b->ff_in = t, b->ln2_in = c->out;
    }
}

/* The floats of place_inference_buffers, plus `more` [n, d] buffers. */
static attn_status inference_floats(const forward_call *c, size_t more, size_t *floats)
{
    size_t nd = (size_t)(c->rows * c->l->d_model), nf = (size_t)(c->rows * c->l->dim_feedforward);
    *floats = 0;
    if (!add_floats(floats, 2 + more, nd) || !add_floats(floats, 1, nf))
        return attn_fail(ATTN_ERR_SIZE_OVERFLOW, c->f, "the activations do not fit in memory");
    return ATTN_OK;
}

/* Inference: everything in the context's workspace, the attention's four
 * projections [n, d] first. */
static attn_status inference_buffers(const forward_call *c, forward_buffers *b, float **mha_ws)
{
    size_t floats;
    float *ws;
    attn_status st = inference_floats(c, 4, &floats);
    if (st == ATTN_OK)
        st = attn_context_workspace(c->ctx, c->f, floats, &ws);
    if (st != ATTN_OK)
        return st;
    *mha_ws = ws;
    place_inference_buffers(c, ws + 4 * (size_t)(c->rows * c->l->d_model), b);
    return ATTN_OK;
}

/* Training: the tensors the backward needs on act's slots (ATTN_ENC_*),
 * A and (pre-norm) n1 in the workspace. */
static attn_status training_buffers(const forward_call *c, forward_buffers *b)
{
    size_t nd = (size_t)(c->rows * c->l->d_model), nf = (size_t)(c->rows * c->l->dim_feedforward);
    size_t stats = ATTN_LAYER_NORM_STATS * (size_t)c->rows;
    const size_t floats[ATTN_ENC_SLOTS] = {nd, nd, nd, nf, nf, stats, stats};
    attn_status st = attn_activations_reserve(c->act, floats, ATTN_ENC_SLOTS, c->f);
    float *ws;
    if (st == ATTN_OK)
        st = attn_context_workspace(c->ctx, c->f, (c->l->norm_first ? 2 : 1) * nd, &ws);
    if (st != ATTN_OK)
        return st;
    float *const *slot = c->act->slot;
    *b = (forward_buffers){.a = ws, .s1 = slot[ATTN_ENC_LN1_IN], .ln2_in = slot[ATTN_ENC_LN2_IN],
                           .ff_in = slot[ATTN_ENC_FF_IN], .hidden = slot[ATTN_ENC_HIDDEN],
                           .g = slot[ATTN_ENC_ACT_OUT], .stats1 = slot[ATTN_ENC_STATS1],
                           .stats2 = slot[ATTN_ENC_STATS2]};
    if (c->l->norm_first) {
        b->n1 = ws + nd, b->attn_in = b->n1;
    } else {
        b->attn_in = c->src, b->h = b->ff_in;
    }
    return ATTN_OK;
}

attn_status attn_encoder_layer_forward(attn_context *ctx, const attn_encoder_layer *layer,
                                       int64_t batch, int64_t len, const float *src,
                                       const attn_mask *mask, float *out, attn_activations *act)
{
    forward_call c = {.ctx = ctx, .l = layer, .batch = batch, .len = len, .src = src,
                      .mask = mask, .out = out, .act = act, .f = "attn_encoder_layer_forward"};
    attn_status st = check_forward(&c);
    if (st != ATTN_OK)
        return st;
    if (act)
        act->owner = NULL;  /* empty until this forward has filled it */
    c.rows = batch * len;
    /* The row passes' blocks are the finest split (the linears' are 256 rows). */
    c.threads = attn_context_threads(ctx, attn_enc_blocks(c.rows));
    if ((st = attn_context_reserve(ctx, c.f, c.threads, 0)) != ATTN_OK)
        return st;
    forward_buffers b = {0};
    float *mha_ws = NULL;
    st = act ? training_buffers(&c, &b) : inference_buffers(&c, &b, &mha_ws);
    if (st != ATTN_OK)
        return st;
    /* The attention is the last step that can fail (memory), and out is
     * written only after it. */
    st = layer->norm_first ? forward_pre_norm(&c, &b, mha_ws) : forward_post_norm(&c, &b, mha_ws);
    if (st != ATTN_OK)
        return st;
    if (act) {
        act->owner = layer;
        act->version = layer->version;
        act->batch = batch, act->len_q = len, act->len_kv = len;
        act->mask = mask;
    }
    return ATTN_OK;
}

/* ---- the cached forward ------------------------------------------------------ */

/* Every check but the step's (the cache's shape and room); sets c->rows. */
static attn_status check_forward_cached(forward_call *c, const attn_kv_cache *cache,
                                        int64_t n_seqs, const int64_t *seqs, const int64_t *cu_q)
{
    const char *f = c->f;
    if (!c->ctx)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "ctx is NULL");
    if (!c->l)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "layer is NULL");
    if (!cache)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "cache is NULL");
    if (!c->l->set)
        return attn_fail(ATTN_ERR_STATE, f,
                         "the parameters are not set: call attn_encoder_layer_set_params");
    if (c->l->self_attn->causal == ATTN_CAUSAL_NONE)
        return attn_fail(ATTN_ERR_STATE, f,
                         "the layer is not causal: a cached step attends to the tokens before "
                         "it only, so call attn_encoder_layer_set_causal first");
    attn_status st = attn_cached_check_queries(cache, n_seqs, seqs, cu_q, f);
    if (st != ATTN_OK)
        return st;
    c->rows = n_seqs > 0 ? cu_q[n_seqs] : 0;
    const int64_t x[2] = {c->rows, c->l->d_model}, hidden[2] = {c->rows, c->l->dim_feedforward};
    if ((st = attn_check_tensor(x, 2, "src", f)) != ATTN_OK ||
        (st = attn_check_tensor(hidden, 2, "the feed-forward's hidden activations", f)) !=
            ATTN_OK ||
        (st = attn_check_blas(c->rows, "total_q", f)) != ATTN_OK ||
        (st = attn_check_data(c->src, c->rows * c->l->d_model, "src", f)) != ATTN_OK ||
        (st = attn_check_data(c->out, c->rows * c->l->d_model, "out", f)) != ATTN_OK)
        return st;
    size_t bytes = (size_t)(c->rows * c->l->d_model) * sizeof(float);
    if (c->out != c->src && attn_ranges_overlap(c->out, bytes, c->src, bytes))
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "out overlaps src without being src");
    return ATTN_OK;
}

attn_status attn_encoder_layer_forward_cached(attn_context *ctx, const attn_encoder_layer *layer,
                                              attn_kv_cache *cache, int64_t n_seqs,
                                              const int64_t *seqs, const int64_t *cu_q,
                                              const float *src, float *out)
{
    forward_call c = {.ctx = ctx, .l = layer, .src = src, .out = out,
                      .f = "attn_encoder_layer_forward_cached"};
    attn_status st = check_forward_cached(&c, cache, n_seqs, seqs, cu_q);
    if (st != ATTN_OK)
        return st;
    c.batch = 1, c.len = c.rows;  /* the row passes see one flat batch */
    c.threads = attn_context_threads(ctx, attn_enc_blocks(c.rows));
    size_t floats;
    if ((st = attn_context_reserve(ctx, c.f, c.threads, 0)) != ATTN_OK ||
        (st = inference_floats(&c, 0, &floats)) != ATTN_OK)
        return st;
    /* The step checks the cache, the sequences' room and the RoPE positions,
     * and reserves its buffers and ours in one workspace: after it nothing
     * can fail. */
    attn_mha_step step;
    float *ws;
    if ((st = attn_mha_step_prepare(ctx, layer->self_attn, cache, n_seqs, seqs, cu_q, src, out,
                                    floats, &step, &ws, c.f)) != ATTN_OK)
        return st;
    forward_buffers b;
    place_inference_buffers(&c, ws, &b);
    c.step = &step;
    st = layer->norm_first ? forward_pre_norm(&c, &b, NULL) : forward_post_norm(&c, &b, NULL);
    attn_mha_step_end(&step);
    return st;
}
