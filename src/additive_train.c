/*
 * additive_train.c — training additive (Bahdanau) attention: flat
 * parameters, the training forward and the backward.
 *
 * With qh = X_q W_qᵀ, kh = X_k W_kᵀ, t_ij = tanh(qh_i + kh_j), scores
 * s_ij = w_v · t_ij (masked), P = softmax(s) and out = P V:
 *
 *   dV_j   = Σ_i P_ij dO_i
 *   dS_ij  = P_ij (dO_i · V_j − dO_i · out_i)           (softmax Jacobian)
 *   dqh_i  = Σ_j dS_ij · w_v ∘ (1 − t_ij²),  dkh_j = Σ_i (the same)
 *   dw_v   = Σ_ij dS_ij · t_ij
 *   dX_q = dqh W_q, dW_q = dqhᵀ X_q (likewise keys)        cblas_sgemm
 *
 * The pairwise part costs what the forward's scores cost (hidden tanh per
 * pair, recomputed rather than stored: O(len_q · len_kv · hidden) memory
 * would be the price). Work items are batch rows, each owning its queries,
 * keys and values, so dkh and dV need no merging; dw_v is summed per batch
 * row and then over the rows in order: the same bits for any thread count.
 */
#include <math.h>
#include <string.h>

#include "attn_internal.h"

/* ---- flat parameters ------------------------------------------------------- */

static int64_t param_count(const attn_additive *op)
{
    return op->hidden * (op->query_dim + op->key_dim + 1);
}

attn_status attn_additive_param_count(const attn_additive *op, int64_t *count)
{
    if (!op)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "op is NULL");
    if (!count)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "count is NULL");
    *count = param_count(op);
    return ATTN_OK;
}

attn_status attn_additive_get_params(const attn_additive *op, float *params)
{
    static const char *f = "attn_additive_get_params";
    if (!op)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "op is NULL");
    if (!params)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "params is NULL");
    if (!op->set)
        return attn_fail(ATTN_ERR_STATE, f, "weights not set: call attn_additive_set_weights");
    size_t nq = (size_t)(op->hidden * op->query_dim), nk = (size_t)(op->hidden * op->key_dim);
    memcpy(params, op->w_q, nq * sizeof(float));
    memcpy(params + nq, op->w_k, nk * sizeof(float));
    memcpy(params + nq + nk, op->w_v, (size_t)op->hidden * sizeof(float));
    return ATTN_OK;
}

attn_status attn_additive_set_params(attn_additive *op, const float *params)
{
    static const char *f = "attn_additive_set_params";
    if (!op)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "op is NULL");
    if (!params)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "params is NULL");
    size_t nq = (size_t)(op->hidden * op->query_dim);
    return attn_additive_set_weights(op, params, params + nq,
                                     params + nq + (size_t)(op->hidden * op->key_dim));
}

/* ---- the training forward ---------------------------------------------------- */

enum { ACT_QUERIES, ACT_KEYS, ACT_VALUES, ACT_QH, ACT_KH, ACT_OUT, ACT_COUNT };

attn_status attn_additive_forward_train(attn_context *ctx, const attn_additive *op,
                                        int64_t batch, int64_t len_q, int64_t len_kv,
                                        int64_t dim_v, const float *queries, const float *keys,
                                        const float *values, const attn_mask *mask, float *out,
                                        float *weights, attn_activations *act)
{
    static const char *f = "attn_additive_forward_train";
    const attn_additive_call c = {batch, len_q, len_kv, dim_v, queries, keys, values, out,
                                  weights};
    attn_status st = attn_additive_validate_forward(ctx, op, &c, mask, f);
    if (st != ATTN_OK)
        return st;
    if (!act)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "act is NULL");
    size_t nq = (size_t)(batch * len_q), nkv = (size_t)(batch * len_kv);
    size_t h = (size_t)op->hidden;
    const size_t floats[ACT_COUNT] = {nq * (size_t)op->query_dim, nkv * (size_t)op->key_dim,
                                      nkv * (size_t)dim_v,        nq * h,
                                      nkv * h,                    nq * (size_t)dim_v};
    if ((st = attn_activations_reserve(act, floats, ACT_COUNT, f)) != ATTN_OK)
        return st;
    const float *inputs[3] = {queries, keys, values};
    for (int i = ACT_QUERIES; i <= ACT_VALUES; i++)
        if (floats[i] > 0)
            memcpy(act->slot[i], inputs[i], floats[i] * sizeof(float));
    st = attn_additive_run(ctx, op, &c, mask, act->slot[ACT_QH], act->slot[ACT_KH], f);
    if (st != ATTN_OK)
        return st;
    if (floats[ACT_OUT] > 0)
        memcpy(act->slot[ACT_OUT], out, floats[ACT_OUT] * sizeof(float));
    act->owner = op;
    act->version = op->version;
    act->batch = batch, act->len_q = len_q, act->len_kv = len_kv, act->dim_v = dim_v;
    act->mask = mask;
    return ATTN_OK;
}

/* ---- the backward -------------------------------------------------------------- */

typedef struct pair_job {
    const attn_additive *op;
    const attn_activations *act;
    const attn_attend_args *a;     /* the forward's geometry and mask */
    const float *d_out;
    float *dqh, *dkh, *dv, *dwv;   /* dwv: [batch, hidden] partial sums */
    attn_context *ctx;
} pair_job;

/* One query row i of batch row b: its weights P (in p, n keys), dS (in ds),
 * and its contributions to dqh_i, dkh, dV and dw_v. */
static void backward_row(const pair_job *j, int64_t b, int64_t i, int64_t n, float *p,
                         float *ds)
{
    const attn_activations *act = j->act;
    const attn_additive *op = j->op;
    int64_t hd = op->hidden, dv = act->dim_v;
    const float *qh = act->slot[ACT_QH] + (b * act->len_q + i) * hd;
    const float *kh = act->slot[ACT_KH] + b * act->len_kv * hd;
    const float *v = act->slot[ACT_VALUES] + b * act->len_kv * dv;
    const float *d_out = j->d_out + (b * act->len_q + i) * dv;
    const float *out = act->slot[ACT_OUT] + (b * act->len_q + i) * dv;
    for (int64_t k = 0; k < n; k++)
        p[k] = attn_additive_score(qh, kh + k * hd, op->w_v, hd);
    attn_row_mask m = attn_attend_row_mask(j->a, b, 0, i, 0);
    float inv_sum;
    attn_softmax_row(p, n, &m, &inv_sum);
    float d = 0.0f;
    for (int64_t c = 0; c < dv; c++)
        d += d_out[c] * out[c];
    float *dqh = j->dqh + (b * act->len_q + i) * hd;
    float *dkh = j->dkh + b * act->len_kv * hd;
    float *dwv = j->dwv + b * hd;
    for (int64_t k = 0; k < n; k++) {
        float w = p[k] * inv_sum;
        if (w == 0.0f)
            continue;  /* masked: its value and score are not looked at */
        float dp = 0.0f;
        for (int64_t c = 0; c < dv; c++) {
            dp += d_out[c] * v[k * dv + c];
            j->dv[(b * act->len_kv + k) * dv + c] += w * d_out[c];
        }
        ds[k] = w * (dp - d);
        for (int64_t x = 0; x < hd; x++) {
            float t = tanhf(qh[x] + kh[k * hd + x]);
            float g = ds[k] * op->w_v[x] * (1.0f - t * t);
            dqh[x] += g;
            dkh[k * hd + x] += g;
            dwv[x] += ds[k] * t;
        }
    }
}

static void backward_batch_row(void *arg, int64_t b, int worker)
{
    const pair_job *j = arg;
    const attn_activations *act = j->act;
    float *p = j->ctx->scratch[worker], *ds = p + act->len_kv;
    int64_t hd = j->op->hidden;
    memset(j->dqh + b * act->len_q * hd, 0, (size_t)(act->len_q * hd) * sizeof(float));
    memset(j->dkh + b * act->len_kv * hd, 0, (size_t)(act->len_kv * hd) * sizeof(float));
    memset(j->dv + b * act->len_kv * act->dim_v, 0,
           (size_t)(act->len_kv * act->dim_v) * sizeof(float));
    memset(j->dwv + b * hd, 0, (size_t)hd * sizeof(float));
    for (int64_t i = 0; i < act->len_q; i++) {
        /* Additive attention has no window: a row's keys start at 0. */
        int64_t n = attn_attend_block_keys(j->a, b, i, i + 1).end;
        if (n > 0)
            backward_row(j, b, i, n, p, ds);
    }
}

/* Outputs of the same shape may be the same buffer (their sum); no other
 * overlap among outputs and d_out. */
static attn_status check_outputs(const attn_additive *op, const attn_activations *act,
                                 const float *d_out, float *const grad[4], const char *f)
{
    size_t nq = (size_t)(act->batch * act->len_q), nkv = (size_t)(act->batch * act->len_kv);
    const attn_buffer in = {d_out, nq, (size_t)act->dim_v, "d_out"};
    const attn_buffer outs[4] = {{grad[0], nq, (size_t)op->query_dim, "d_queries"},
                                 {grad[1], nkv, (size_t)op->key_dim, "d_keys"},
                                 {grad[2], nkv, (size_t)act->dim_v, "d_values"},
                                 {grad[3], 1, (size_t)param_count(op), "d_params"}};
    return attn_check_outputs_disjoint(outs, 4, 3, &in, 1, f);
}

static attn_status check_backward(attn_context *ctx, const attn_additive *op,
                                  const attn_activations *act, const float *d_out,
                                  float *const grad[4], const char *f)
{
    if (!ctx)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "ctx is NULL");
    if (!op)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "op is NULL");
    attn_status st = attn_activations_check_filled(act, op, op->version,
                                                   "attn_additive_forward_train", "op",
                                                   "op's weights", f);
    if (st != ATTN_OK)
        return st;
    st = attn_check_data(d_out, act->batch * act->len_q * act->dim_v, "d_out", f);
    if (st != ATTN_OK)
        return st;
    const attn_mask_dims md = {act->batch, 1, act->len_q, act->len_kv};
    if ((st = attn_mask_validate(act->mask, &md, f)) != ATTN_OK)
        return st;
    return check_outputs(op, act, d_out, grad, f);
}

/* out (+)= src elementwise: a shared output receives the sum. */
static void store(float *out, const float *src, int64_t n, bool add)
{
    for (int64_t x = 0; x < n; x++)
        out[x] = add ? out[x] + src[x] : src[x];
}

attn_status attn_additive_backward(attn_context *ctx, const attn_additive *op,
                                   const attn_activations *act, const float *d_out,
                                   float *d_queries, float *d_keys, float *d_values,
                                   float *d_params)
{
    static const char *f = "attn_additive_backward";
    float *const grad[4] = {d_queries, d_keys, d_values, d_params};
    attn_status st = check_backward(ctx, op, act, d_out, grad, f);
    if (st != ATTN_OK)
        return st;
    int64_t nq = act->batch * act->len_q, nkv = act->batch * act->len_kv, hd = op->hidden;
    /* Workspace: dqh [nq, hidden], dkh [nkv, hidden], dV [nkv, dim_v],
     * dw_v partials [batch, hidden]. */
    float *ws;
    size_t floats = (size_t)(nq * hd) + (size_t)(nkv * hd) + (size_t)(nkv * act->dim_v) +
                    (size_t)(act->batch * hd);
    if ((st = attn_context_workspace(ctx, f, floats, &ws)) != ATTN_OK)
        return st;
    int64_t items = act->batch;
    if (attn_linear_items(nq > nkv ? nq : nkv) > items)
        items = attn_linear_items(nq > nkv ? nq : nkv);
    if (attn_linear_param_items(hd) > items)
        items = attn_linear_param_items(hd);
    int threads = attn_context_threads(ctx, items);
    if ((st = attn_context_reserve(ctx, f, threads, 2 * (size_t)act->len_kv)) != ATTN_OK)
        return st;

    const attn_additive_call c = {act->batch, act->len_q, act->len_kv, act->dim_v, NULL, NULL,
                                  act->slot[ACT_VALUES], NULL, NULL};
    const attn_additive_logits_arg x = {act->slot[ACT_QH], act->slot[ACT_KH], op->w_v,
                                        act->len_q, act->len_kv, hd};
    const attn_attend_args a = attn_additive_attend_args(&c, act->mask, &x);
    pair_job job = {.op = op, .act = act, .a = &a, .d_out = d_out, .dqh = ws,
                    .dkh = ws + nq * hd, .ctx = ctx};
    job.dv = job.dkh + nkv * hd;
    job.dwv = job.dv + nkv * act->dim_v;
    /* The pairwise part runs on libattn's threads in every schedule: it
     * makes no GEMM. */
    int pair_threads = threads < act->batch ? threads : (int)(act->batch > 0 ? act->batch : 1);
    attn_context_run(ctx, pair_threads, backward_batch_row, &job, act->batch);

    if (d_params) {
        size_t nwq = (size_t)(hd * op->query_dim), nwk = (size_t)(hd * op->key_dim);
        attn_linear_backward_params(ctx, threads, nq, op->query_dim, hd, act->slot[ACT_QUERIES],
                                    job.dqh, d_params, NULL);
        attn_linear_backward_params(ctx, threads, nkv, op->key_dim, hd, act->slot[ACT_KEYS],
                                    job.dkh, d_params + nwq, NULL);
        float *dwv = d_params + nwq + nwk;
        for (int64_t k = 0; k < hd; k++) {
            double sum = 0.0;
            for (int64_t b = 0; b < act->batch; b++)
                sum += job.dwv[b * hd + k];
            dwv[k] = (float)sum;
        }
    }
    if (d_queries)
        attn_linear_backward_input(ctx, threads, nq, op->query_dim, hd, job.dqh, op->w_q, 0.0f,
                                   d_queries);
    if (d_keys)
        attn_linear_backward_input(ctx, threads, nkv, op->key_dim, hd, job.dkh, op->w_k,
                                   d_keys == d_queries ? 1.0f : 0.0f, d_keys);
    if (d_values)
        store(d_values, job.dv, nkv * act->dim_v, d_values == d_queries || d_values == d_keys);
    return ATTN_OK;
}
