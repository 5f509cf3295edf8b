/*
 * additive.c — additive (Bahdanau) attention: score(q, k) = w_vᵀ tanh(W_q q
 * + W_k k) (Bahdanau et al. 2015, eq. 6; D2L §10.3.2).
 *
 * W_q q and W_k k are computed once per query and per key (one sgemm each,
 * into the context's workspace); only the tanh and the dot with w_v run per
 * (query, key) pair, over `hidden` in a loop the compiler vectorises. The
 * softmax, masks and P·V are attend.c's, with one head. Training (flat
 * parameters, the training forward, the backward): additive_train.c.
 */
#include <math.h>
#include <string.h>

#include "attn_internal.h"


void attn_additive_destroy(attn_additive *op)
{
    if (!op)
        return;
    attn_free(op->w_q);
    attn_free(op->w_k);
    attn_free(op->w_v);
    attn_free(op);
}

attn_status attn_additive_create(attn_additive **op, int64_t query_dim, int64_t key_dim,
                                 int64_t hidden)
{
    static const char *f = "attn_additive_create";
    if (!op)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "op is NULL");
    const int64_t sizes[3] = {query_dim, key_dim, hidden};
    static const char *names[3] = {"query_dim", "key_dim", "hidden"};
    const int64_t wq[2] = {hidden, query_dim}, wk[2] = {hidden, key_dim};
    attn_status st;
    if ((st = attn_check_min(sizes, names, 3, 1, f)) != ATTN_OK ||
        (st = attn_check_tensor(wq, 2, "w_q", f)) != ATTN_OK ||
        (st = attn_check_tensor(wk, 2, "w_k", f)) != ATTN_OK)
        return st;
    for (int i = 0; i < 3; i++)
        if ((st = attn_check_blas(sizes[i], names[i], f)) != ATTN_OK)
            return st;

    attn_additive *p = attn_alloc(sizeof *p);
    if (!p)
        return attn_fail(ATTN_ERR_OUT_OF_MEMORY, f, "cannot allocate the op");
    *p = (attn_additive){.query_dim = query_dim, .key_dim = key_dim, .hidden = hidden,
                         .version = attn_next_version()};
    p->w_q = attn_alloc((size_t)(hidden * query_dim) * sizeof(float));
    p->w_k = attn_alloc((size_t)(hidden * key_dim) * sizeof(float));
    p->w_v = attn_alloc((size_t)hidden * sizeof(float));
    if (!p->w_q || !p->w_k || !p->w_v) {
        attn_additive_destroy(p);
        return attn_fail(ATTN_ERR_OUT_OF_MEMORY, f, "cannot allocate the weights");
    }
    *op = p;
    return ATTN_OK;
}

attn_status attn_additive_set_weights(attn_additive *op, const float *w_q, const float *w_k,
                                      const float *w_v)
{
    static const char *f = "attn_additive_set_weights";
    if (!op)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "op is NULL");
    if (!w_q)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "w_q is NULL");
    if (!w_k)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "w_k is NULL");
    if (!w_v)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "w_v is NULL");
    memcpy(op->w_q, w_q, (size_t)(op->hidden * op->query_dim) * sizeof(float));
    memcpy(op->w_k, w_k, (size_t)(op->hidden * op->key_dim) * sizeof(float));
    memcpy(op->w_v, w_v, (size_t)op->hidden * sizeof(float));
    op->set = true;
    op->version = attn_next_version();
    return ATTN_OK;
}

float attn_additive_score(const float *qh, const float *kh, const float *w_v, int64_t hidden)
{
    float s = 0.0f;
    for (int64_t d = 0; d < hidden; d++)
        s += w_v[d] * tanhf(qh[d] + kh[d]);
    return s;
}

static void additive_logits(const void *arg, int64_t b, int64_t h, int64_t i0, int64_t rows,
                            int64_t j0, int64_t n, float *s)
{
    (void)h;
    const attn_additive_logits_arg *x = arg;
    const float *kh = x->kh + (b * x->len_kv + j0) * x->hidden;
    for (int64_t r = 0; r < rows; r++) {
        const float *qh = x->qh + (b * x->len_q + i0 + r) * x->hidden;
        for (int64_t j = 0; j < n; j++)
            s[r * n + j] = attn_additive_score(qh, kh + j * x->hidden, x->w_v, x->hidden);
    }
}

attn_attend_args attn_additive_attend_args(const attn_additive_call *c, const attn_mask *mask,
                                           const attn_additive_logits_arg *x)
{
    return (attn_attend_args){
        .batch = c->batch, .heads_q = 1, .heads_kv = 1, .len_q = c->len_q, .len_kv = c->len_kv,
        .causal = ATTN_CAUSAL_NONE, .mask = mask, .logits = additive_logits, .logits_arg = x,
        .v = c->values, .v_view = {1, c->len_kv, c->dim_v, false},
        .out = c->out, .out_view = {1, c->len_q, c->dim_v, false},
        .weights = c->weights, .lse = NULL,
    };
}

attn_status attn_additive_validate_forward(attn_context *ctx, const attn_additive *op,
                                           const attn_additive_call *c, const attn_mask *mask,
                                           const char *f)
{
    if (!ctx)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "ctx is NULL");
    if (!op)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "op is NULL");
    const int64_t counts[3] = {c->batch, c->len_q, c->len_kv};
    static const char *names[3] = {"batch", "len_q", "len_kv"};
    attn_status st;
    if ((st = attn_check_min(counts, names, 3, 0, f)) != ATTN_OK)
        return st;
    if (c->dim_v < 1)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "dim_v (%lld) is below 1",
                         (long long)c->dim_v);
    const int64_t q[3] = {c->batch, c->len_q, op->query_dim},
                  k[3] = {c->batch, c->len_kv, op->key_dim},
                  v[3] = {c->batch, c->len_kv, c->dim_v}, o[3] = {c->batch, c->len_q, c->dim_v},
                  qh[3] = {c->batch, c->len_q, op->hidden}, kh[3] = {c->batch, c->len_kv, op->hidden},
                  w[3] = {c->batch, c->len_q, c->len_kv};
    if ((st = attn_check_tensor(q, 3, "queries", f)) != ATTN_OK ||
        (st = attn_check_tensor(k, 3, "keys", f)) != ATTN_OK ||
        (st = attn_check_tensor(v, 3, "values", f)) != ATTN_OK ||
        (st = attn_check_tensor(o, 3, "out", f)) != ATTN_OK ||
        (st = attn_check_tensor(qh, 3, "the projected queries", f)) != ATTN_OK ||
        (st = attn_check_tensor(kh, 3, "the projected keys", f)) != ATTN_OK ||
        (c->weights && (st = attn_check_tensor(w, 3, "weights", f)) != ATTN_OK))
        return st;
    if ((st = attn_check_blas(c->dim_v, "dim_v", f)) != ATTN_OK ||
        (st = attn_check_blas(c->len_kv, "len_kv", f)) != ATTN_OK ||
        (st = attn_check_blas(c->batch * c->len_q, "batch × len_q", f)) != ATTN_OK ||
        (st = attn_check_blas(c->batch * c->len_kv, "batch × len_kv", f)) != ATTN_OK)
        return st;
    int64_t nq = c->batch * c->len_q, nkv = c->batch * c->len_kv;
    if ((st = attn_check_data(c->queries, nq * op->query_dim, "queries", f)) != ATTN_OK ||
        (st = attn_check_data(c->keys, nkv * op->key_dim, "keys", f)) != ATTN_OK ||
        (st = attn_check_data(c->values, nkv * c->dim_v, "values", f)) != ATTN_OK ||
        (st = attn_check_data(c->out, nq * c->dim_v, "out", f)) != ATTN_OK)
        return st;
    if (!op->set)
        return attn_fail(ATTN_ERR_STATE, f, "weights not set: call attn_additive_set_weights");
    const attn_mask_dims md = {c->batch, 1, c->len_q, c->len_kv};
    return attn_mask_validate(mask, &md, f);
}

attn_status attn_additive_run(attn_context *ctx, const attn_additive *op,
                              const attn_additive_call *c, const attn_mask *mask, float *qh,
                              float *kh, const char *f)
{
    int64_t nq = c->batch * c->len_q, nkv = c->batch * c->len_kv;
    int threads = attn_context_threads(ctx, attn_linear_items(nq > nkv ? nq : nkv));
    attn_status st = attn_context_reserve(ctx, f, threads, 0);
    if (st != ATTN_OK)
        return st;
    attn_linear(ctx, threads, nq, op->query_dim, op->hidden, c->queries, op->w_q, NULL, qh);
    attn_linear(ctx, threads, nkv, op->key_dim, op->hidden, c->keys, op->w_k, NULL, kh);
    const attn_additive_logits_arg x = {qh, kh, op->w_v, c->len_q, c->len_kv, op->hidden};
    attn_attend_args a = attn_additive_attend_args(c, mask, &x);
    return attn_attend(ctx, &a, f);
}

attn_status attn_additive_forward(attn_context *ctx, const attn_additive *op, int64_t batch,
                                  int64_t len_q, int64_t len_kv, int64_t dim_v,
                                  const float *queries, const float *keys, const float *values,
                                  const attn_mask *mask, float *out, float *weights)
{
    static const char *f = "attn_additive_forward";
    const attn_additive_call c = {batch,  len_q, len_kv, dim_v, queries,
                                  keys,   values, out,   weights};
    attn_status st = attn_additive_validate_forward(ctx, op, &c, mask, f);
    if (st != ATTN_OK)
        return st;
    size_t nq = (size_t)(batch * len_q), nkv = (size_t)(batch * len_kv), floats;
    if (__builtin_add_overflow(nq * (size_t)op->hidden, nkv * (size_t)op->hidden, &floats))
        return attn_fail(ATTN_ERR_SIZE_OVERFLOW, f, "the projections do not fit in memory");
    float *qh;
    if ((st = attn_context_workspace(ctx, f, floats, &qh)) != ATTN_OK)
        return st;
    return attn_additive_run(ctx, op, &c, mask, qh, qh + nq * (size_t)op->hidden, f);
}
