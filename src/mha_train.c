/*
 * mha_train.c — training the multi-head layer: its flat parameter vector
 * (in nn.MultiheadAttention's named_parameters() order), dropout, the
 * training forward that keeps its activations, and the backward.
 *
 * With X_q, X_k, X_v the inputs, Q = X_q Wqᵀ + bq (likewise K, V), A the
 * attention of Q, K, V (attend.c) and out = A Woᵀ + bo, the backward is the
 * chain rule, each product through cblas_sgemm (linear.c):
 *
 *   dA = dOut · Wo,               dWo = dOutᵀ · A,   dbo = Σ_rows dOut
 *   dQ, dK, dV = attention backward of dA           (backward.c)
 *   dX_q = dQ · Wq,               dWq = dQᵀ · X_q,   dbq = Σ_rows dQ
 *   (likewise K and V)
 *
 * Self-attention passes one tensor as query, key and value: its gradient is
 * dX_q + dX_k + dX_v, which the caller asks for by passing the same pointer
 * (the products then accumulate into it).
 */
#include <string.h>

#include "attn_internal.h"

/* ---- flat parameters ----------------------------------------------------- */

/* Offsets of each projection's weight and bias in the flat vector (bias
 * offsets are -1 without bias): Wq, Wk, Wv, [bq, bk, bv], Wo, [bo]. */
typedef struct param_layout {
    int64_t weight[ATTN_MHA_PROJ], bias[ATTN_MHA_PROJ], count;
} param_layout;

static param_layout layout_of(const attn_mha *m)
{
    param_layout l;
    int64_t at = 0;
    for (int p = ATTN_PROJ_Q; p <= ATTN_PROJ_V; p++) {
        l.weight[p] = at;
        at += attn_mha_out_features(m, (attn_proj)p) * attn_mha_in_features(m, (attn_proj)p);
    }
    for (int p = ATTN_PROJ_Q; p <= ATTN_PROJ_V; p++) {
        l.bias[p] = m->has_bias ? at : -1;
        at += m->has_bias ? attn_mha_out_features(m, (attn_proj)p) : 0;
    }
    l.weight[ATTN_PROJ_O] = at;
    at += m->embed_dim * m->embed_dim;
    l.bias[ATTN_PROJ_O] = m->has_bias ? at : -1;
    at += m->has_bias ? m->embed_dim : 0;
    l.count = at;
    return l;
}

attn_status attn_mha_param_count(const attn_mha *mha, int64_t *count)
{
    if (!mha)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "mha is NULL");
    if (!count)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "count is NULL");
    *count = layout_of(mha).count;
    return ATTN_OK;
}

attn_status attn_mha_get_params(const attn_mha *mha, float *params)
{
    static const char *f = "attn_mha_get_params";
    if (!mha)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "mha is NULL");
    if (!params)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "params is NULL");
    attn_status st = attn_mha_check_weights_set(mha, f);
    if (st != ATTN_OK)
        return st;
    param_layout l = layout_of(mha);
    for (int p = 0; p < ATTN_MHA_PROJ; p++) {
        int64_t out = attn_mha_out_features(mha, (attn_proj)p);
        memcpy(params + l.weight[p], mha->weight[p],
               (size_t)(out * attn_mha_in_features(mha, (attn_proj)p)) * sizeof(float));
        if (mha->has_bias)
            memcpy(params + l.bias[p], mha->bias[p], (size_t)out * sizeof(float));
    }
    return ATTN_OK;
}

attn_status attn_mha_set_params(attn_mha *mha, const float *params)
{
    static const char *f = "attn_mha_set_params";
    if (!mha)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "mha is NULL");
    if (!params)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "params is NULL");
    param_layout l = layout_of(mha);
    for (int p = 0; p < ATTN_MHA_PROJ; p++) {
        int64_t out = attn_mha_out_features(mha, (attn_proj)p);
        memcpy(mha->weight[p], params + l.weight[p],
               (size_t)(out * attn_mha_in_features(mha, (attn_proj)p)) * sizeof(float));
        if (mha->has_bias)
            memcpy(mha->bias[p], params + l.bias[p], (size_t)out * sizeof(float));
        mha->set[p] = true;
    }
    mha->version = attn_next_version();
    return ATTN_OK;
}

attn_status attn_mha_set_dropout(attn_mha *mha, float p, uint64_t seed)
{
    if (!mha)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "mha is NULL");
    attn_status st = attn_dropout_set(&mha->dropout, p, seed, __func__);
    if (st == ATTN_OK)
        mha->version = attn_next_version();
    return st;
}

static const attn_dropout *active_dropout(const attn_mha *m)
{
    return m->dropout.p > 0.0f ? &m->dropout : NULL;
}

/* ---- the training forward ------------------------------------------------ */

/* What the forward keeps, in act's slots. */
enum { ACT_QUERY, ACT_KEY, ACT_VALUE, ACT_QP, ACT_KP, ACT_VP, ACT_AP, ACT_LSE, ACT_COUNT };

attn_status attn_mha_forward_train(attn_context *ctx, const attn_mha *mha, int64_t batch,
                                   int64_t len_q, int64_t len_kv, const float *query,
                                   const float *key, const float *value, const attn_mask *mask,
                                   float *out, float *weights, attn_activations *act)
{
    static const char *f = "attn_mha_forward_train";
    const attn_mha_call c = {batch, len_q, len_kv, query, key, value, out, weights};
    attn_status st = attn_mha_validate_forward(ctx, mha, &c, mask, f);
    if (st != ATTN_OK)
        return st;
    if (!act)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "act is NULL");
    if ((st = attn_dropout_check_range(active_dropout(mha), batch, mha->num_heads, len_q,
                                       len_kv, f)) != ATTN_OK)
        return st;
    return attn_mha_forward_train_run(ctx, mha, &c, mask, act, f);
}

attn_status attn_mha_forward_train_run(attn_context *ctx, const attn_mha *mha,
                                       const attn_mha_call *c, const attn_mask *mask,
                                       attn_activations *act, const char *f)
{
    attn_status st;
    int64_t batch = c->batch, len_q = c->len_q, len_kv = c->len_kv;
    size_t nq = (size_t)(batch * len_q), nkv = (size_t)(batch * len_kv);
    size_t e = (size_t)mha->embed_dim, kv = (size_t)mha->kv_dim;
    /* Self-attention (one tensor as query, key and value) keeps one copy. */
    bool self = c->key == c->query && c->value == c->query && len_q == len_kv &&
                mha->kdim == mha->embed_dim && mha->vdim == mha->embed_dim;
    const size_t floats[ACT_COUNT] = {nq * e,  self ? 0 : nkv * (size_t)mha->kdim,
                                      self ? 0 : nkv * (size_t)mha->vdim,
                                      nq * e,  nkv * kv, nkv * kv, nq * e,
                                      (size_t)(batch * len_q * mha->num_heads)};
    if ((st = attn_activations_reserve(act, floats, ACT_COUNT, f)) != ATTN_OK)
        return st;
    const float *inputs[3] = {c->query, c->key, c->value};
    for (int i = ACT_QUERY; i <= ACT_VALUE; i++)
        if (floats[i] > 0)
            memcpy(act->slot[i], inputs[i], floats[i] * sizeof(float));
    if (self)
        act->slot[ACT_KEY] = act->slot[ACT_VALUE] = act->slot[ACT_QUERY];
    attn_mha_buffers buf = {.qp = act->slot[ACT_QP], .kp = act->slot[ACT_KP],
                            .vp = act->slot[ACT_VP], .ap = act->slot[ACT_AP],
                            .lse = act->slot[ACT_LSE], .dropout = active_dropout(mha)};
    if ((st = attn_mha_run(ctx, mha, c, mask, &buf, f)) != ATTN_OK)
        return st;
    act->owner = mha;
    act->version = mha->version;
    act->batch = batch, act->len_q = len_q, act->len_kv = len_kv;
    act->mask = mask;
    return ATTN_OK;
}

/* ---- the backward ---------------------------------------------------------- */

/* d_query, d_key, d_value may be equal (self-attention) when their shapes
 * are; otherwise no two outputs, nor an output and d_out, may share a
 * byte. */
static attn_status check_outputs(const attn_mha *m, const attn_activations *act,
                                 const float *d_out, float *const grad[4], const char *f)
{
    size_t nq = (size_t)(act->batch * act->len_q), nkv = (size_t)(act->batch * act->len_kv);
    const attn_buffer in = {d_out, nq, (size_t)m->embed_dim, "d_out"};
    const attn_buffer outs[4] = {{grad[0], nq, (size_t)m->embed_dim, "d_query"},
                                 {grad[1], nkv, (size_t)m->kdim, "d_key"},
                                 {grad[2], nkv, (size_t)m->vdim, "d_value"},
                                 {grad[3], 1, (size_t)layout_of(m).count, "d_params"}};
    return attn_check_outputs_disjoint(outs, 4, 3, &in, 1, f);
}

static attn_status check_backward(attn_context *ctx, const attn_mha *m,
                                  const attn_activations *act, const float *d_out,
                                  float *const grad[4], const char *f)
{
    if (!ctx)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "ctx is NULL");
    if (!m)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "mha is NULL");
    attn_status st = attn_activations_check_filled(act, m, m->version, "attn_mha_forward_train",
                                                   "layer", "layer's parameters or options", f);
    if (st != ATTN_OK)
        return st;
    st = attn_check_data(d_out, act->batch * act->len_q * m->embed_dim, "d_out", f);
    if (st != ATTN_OK)
        return st;
    /* The mask is caller memory: its lengths may have changed since. */
    const attn_mask_dims md = {act->batch, m->num_heads, act->len_q, act->len_kv};
    if ((st = attn_mask_validate(act->mask, &md, f)) != ATTN_OK)
        return st;
    return check_outputs(m, act, d_out, grad, f);
}

/* dQ, dK, dV (each NULL if not needed) of the attention, from dA. */
static attn_status attention_backward(attn_context *ctx, const attn_mha *m,
                                      const attn_activations *act, const float *d_a, float *dq,
                                      float *dk, float *dv, const char *f)
{
    const attn_mha_views views = attn_mha_attention_views(m, act->len_q, act->len_kv);
    const attn_qk qk = {.q = act->slot[ACT_QP], .q_view = views.q, .k = act->slot[ACT_KP],
                        .k_view = views.kv, .scale = views.scale};
    attn_attend_args a = {
        .batch = act->batch, .heads_q = m->num_heads, .heads_kv = m->num_kv_heads,
        .len_q = act->len_q, .len_kv = act->len_kv, .causal = m->causal, .mask = act->mask,
        .v = act->slot[ACT_VP], .v_view = views.kv, .out = act->slot[ACT_AP],
        .out_view = views.q, .dropout = active_dropout(m), .mods = attn_mha_mods(m),
    };
    attn_dot_product_logits(&qk, &a);
    const attn_backward_args ba = {.fwd = &a, .qk = &qk, .lse = act->slot[ACT_LSE],
                                   .d_out = d_a, .d_q = dq, .d_k = dk, .d_v = dv};
    return attn_dot_product_backward(ctx, &ba, f);
}

/* The RoPE's scratch for the inverse rotation of dQ and dK, made before
 * anything is written. */
static attn_status reserve_rope(attn_context *ctx, const attn_mha *m,
                                const attn_activations *act, const char *f)
{
    if (!m->rope)
        return ATTN_OK;
    const attn_mha_views views = attn_mha_attention_views(m, act->len_q, act->len_kv);
    attn_status st = attn_rope_reserve(ctx, m->rope, views.q, act->batch, f);
    if (st == ATTN_OK)
        st = attn_rope_reserve(ctx, m->rope, views.kv, act->batch, f);
    return st;
}

/* The attention saw the rotated R·Q and R·K: their gradients come back to
 * the projections through Rᵀ, the inverse rotation (rope.c). Cannot fail
 * after reserve_rope. */
static void unrotate_gradients(attn_context *ctx, const attn_mha *m,
                               const attn_activations *act, float *dq, float *dk, const char *f)
{
    if (!m->rope)
        return;
    const attn_mha_views views = attn_mha_attention_views(m, act->len_q, act->len_kv);
    if (dq)
        (void)attn_rope_run(ctx, m->rope, views.q, act->batch, dq, NULL,
                            attn_mha_query_start(m, act->len_q, act->len_kv), 1, f);
    if (dk)
        (void)attn_rope_run(ctx, m->rope, views.kv, act->batch, dk, NULL, 0, 1, f);
}

size_t attn_mha_backward_floats(const attn_mha *m, const attn_activations *act)
{
    /* dA [nq, E], dQ [nq, E], dK, dV [nkv, kv_dim]. */
    size_t nq = (size_t)(act->batch * act->len_q), nkv = (size_t)(act->batch * act->len_kv);
    return 2 * nq * (size_t)m->embed_dim + 2 * nkv * (size_t)m->kv_dim;
}

/* The threads of the projections' gradients. */
static int projection_threads(attn_context *ctx, const attn_mha *m, const attn_activations *act)
{
    int64_t nq = act->batch * act->len_q, nkv = act->batch * act->len_kv;
    int64_t items = attn_linear_items(nq > nkv ? nq : nkv);
    if (attn_linear_param_items(m->embed_dim) > items)
        items = attn_linear_param_items(m->embed_dim);
    return attn_context_threads(ctx, items);
}

attn_status attn_mha_backward_reserve(attn_context *ctx, const attn_mha *m,
                                      const attn_activations *act, const char *f)
{
    attn_status st = attn_context_reserve(ctx, f, projection_threads(ctx, m, act), 0);
    if (st == ATTN_OK)
        st = reserve_rope(ctx, m, act, f);
    if (st != ATTN_OK)
        return st;
    const attn_attend_args a = {.batch = act->batch, .heads_q = m->num_heads,
                                .heads_kv = m->num_kv_heads, .len_q = act->len_q,
                                .len_kv = act->len_kv, .causal = m->causal,
                                .mask = act->mask, .mods = attn_mha_mods(m)};
    return attn_dot_product_backward_reserve(ctx, &a, f);
}

attn_status attn_mha_backward_run(attn_context *ctx, const attn_mha *mha,
                                  const attn_activations *act, const float *d_out,
                                  float *const grad[4], float *ws, const char *f)
{
    float *d_query = grad[0], *d_key = grad[1], *d_value = grad[2], *d_params = grad[3];
    int64_t nq = act->batch * act->len_q, nkv = act->batch * act->len_kv;
    int64_t e = mha->embed_dim, kv = mha->kv_dim;
    float *d_a = ws, *dq = d_a + nq * e, *dk = dq + nq * e, *dv = dk + nkv * kv;
    int threads = projection_threads(ctx, mha, act);
    attn_status st = attn_context_reserve(ctx, f, threads, 0);
    if (st != ATTN_OK)
        return st;

    if ((st = reserve_rope(ctx, mha, act, f)) != ATTN_OK)
        return st;
    /* Nothing below writes an output before the attention's backward, the
     * last step that can fail (its scratch). */
    const float *wo = mha->weight[ATTN_PROJ_O];
    attn_linear_backward_input(ctx, threads, nq, e, e, d_out, wo, 0.0f, d_a);
    bool need[3] = {d_query || d_params, d_key || d_params, d_value || d_params};
    if ((st = attention_backward(ctx, mha, act, d_a, need[0] ? dq : NULL, need[1] ? dk : NULL,
                                 need[2] ? dv : NULL, f)) != ATTN_OK)
        return st;
    unrotate_gradients(ctx, mha, act, need[0] ? dq : NULL, need[1] ? dk : NULL, f);

    if (d_params) {
        param_layout l = layout_of(mha);
        const float *x[ATTN_MHA_PROJ] = {act->slot[ACT_QUERY], act->slot[ACT_KEY],
                                         act->slot[ACT_VALUE], act->slot[ACT_AP]};
        const float *dy[ATTN_MHA_PROJ] = {dq, dk, dv, d_out};
        const int64_t rows[ATTN_MHA_PROJ] = {nq, nkv, nkv, nq};
        for (int p = 0; p < ATTN_MHA_PROJ; p++)
            attn_linear_backward_params(ctx, threads, rows[p],
                                        attn_mha_in_features(mha, (attn_proj)p),
                                        attn_mha_out_features(mha, (attn_proj)p), x[p], dy[p],
                                        d_params + l.weight[p],
                                        mha->has_bias ? d_params + l.bias[p] : NULL);
    }
    /* The input gradients; a buffer shared by several of them sums them. */
    if (d_query)
        attn_linear_backward_input(ctx, threads, nq, e, e, dq, mha->weight[ATTN_PROJ_Q], 0.0f,
                                   d_query);
    if (d_key)
        attn_linear_backward_input(ctx, threads, nkv, mha->kdim, kv, dk,
                                   mha->weight[ATTN_PROJ_K], d_key == d_query ? 1.0f : 0.0f,
                                   d_key);
    if (d_value)
        attn_linear_backward_input(ctx, threads, nkv, mha->vdim, kv, dv,
                                   mha->weight[ATTN_PROJ_V],
                                   d_value == d_query || d_value == d_key ? 1.0f : 0.0f,
                                   d_value);
    return ATTN_OK;
}

attn_status attn_mha_backward(attn_context *ctx, const attn_mha *mha,
                              const attn_activations *act, const float *d_out, float *d_query,
                              float *d_key, float *d_value, float *d_params)
{
    static const char *f = "attn_mha_backward";
    float *const grad[4] = {d_query, d_key, d_value, d_params};
    attn_status st = check_backward(ctx, mha, act, d_out, grad, f);
    if (st != ATTN_OK)
        return st;
    float *ws;
    if ((st = attn_context_workspace(ctx, f, attn_mha_backward_floats(mha, act), &ws)) != ATTN_OK)
        return st;
    return attn_mha_backward_run(ctx, mha, act, d_out, grad, ws, f);
}
