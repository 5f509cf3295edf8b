/*
 * mha.c — the multi-head attention layer (Vaswani et al. 2017 §3.2.2), with
 * the numbers of torch.nn.MultiheadAttention.
 *
 * forward = three projections (one sgemm each over every batch × sequence
 * row), the scaled dot-product attention of attend.c reading every head in
 * place from the projected [B, S, H·D] buffers (BSHD views, no per-head
 * copies), and the output projection (one more sgemm). The projected
 * activations live in the context's workspace.
 */
#include <math.h>
#include <string.h>

#include "attn_internal.h"

enum { N_PROJ = 4 };
static const char *const proj_names[N_PROJ] = {"Q", "K", "V", "O"};

struct attn_mha {
    int64_t embed_dim, num_heads, num_kv_heads, head_dim, kdim, vdim;
    int64_t kv_dim;                 /* num_kv_heads × head_dim */
    bool has_bias;
    attn_causal causal;
    float *weight[N_PROJ];          /* [out_features, in_features] */
    float *bias[N_PROJ];            /* [out_features], NULL without bias */
    bool set[N_PROJ];
};

static int64_t out_features(const attn_mha *m, attn_proj p)
{
    return p == ATTN_PROJ_K || p == ATTN_PROJ_V ? m->kv_dim : m->embed_dim;
}

static int64_t in_features(const attn_mha *m, attn_proj p)
{
    return p == ATTN_PROJ_K ? m->kdim : p == ATTN_PROJ_V ? m->vdim : m->embed_dim;
}

void attn_mha_destroy(attn_mha *mha)
{
    if (!mha)
        return;
    for (int p = 0; p < N_PROJ; p++) {
        attn_free(mha->weight[p]);
        attn_free(mha->bias[p]);
    }
    attn_free(mha);
}

static attn_status check_create(int64_t embed_dim, int64_t num_heads, int64_t num_kv_heads,
                                int64_t kdim, int64_t vdim, int bias, const char *f)
{
    const int64_t sizes[5] = {embed_dim, num_heads, num_kv_heads, kdim, vdim};
    static const char *names[5] = {"embed_dim", "num_heads", "num_kv_heads", "kdim", "vdim"};
    attn_status st;
    if ((st = attn_check_min(sizes, names, 5, 1, f)) != ATTN_OK)
        return st;
    if (bias != 0 && bias != 1)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "bias (%d) is not 0 or 1", bias);
    if (embed_dim % num_heads != 0)
        return attn_fail(ATTN_ERR_SHAPE_MISMATCH, f,
                         "embed_dim (%lld) is not a multiple of num_heads (%lld)",
                         (long long)embed_dim, (long long)num_heads);
    if (num_heads % num_kv_heads != 0)
        return attn_fail(ATTN_ERR_SHAPE_MISMATCH, f,
                         "num_heads (%lld) is not a multiple of num_kv_heads (%lld)",
                         (long long)num_heads, (long long)num_kv_heads);
    /* kv_dim <= embed_dim, so these bound every weight's size. */
    const int64_t wq[2] = {embed_dim, embed_dim}, wk[2] = {embed_dim, kdim},
                  wv[2] = {embed_dim, vdim};
    if ((st = attn_check_tensor(wq, 2, "the Q weight", f)) != ATTN_OK ||
        (st = attn_check_tensor(wk, 2, "the K weight", f)) != ATTN_OK ||
        (st = attn_check_tensor(wv, 2, "the V weight", f)) != ATTN_OK ||
        (st = attn_check_blas(embed_dim, "embed_dim", f)) != ATTN_OK ||
        (st = attn_check_blas(kdim, "kdim", f)) != ATTN_OK ||
        (st = attn_check_blas(vdim, "vdim", f)) != ATTN_OK)
        return st;
    return ATTN_OK;
}

attn_status attn_mha_create(attn_mha **mha, int64_t embed_dim, int64_t num_heads,
                            int64_t num_kv_heads, int64_t kdim, int64_t vdim, int bias)
{
    static const char *f = "attn_mha_create";
    if (!mha)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "mha is NULL");
    attn_status st = check_create(embed_dim, num_heads, num_kv_heads, kdim, vdim, bias, f);
    if (st != ATTN_OK)
        return st;

    attn_mha *m = attn_alloc(sizeof *m);
    if (!m)
        return attn_fail(ATTN_ERR_OUT_OF_MEMORY, f, "cannot allocate the layer");
    int64_t head_dim = embed_dim / num_heads;
    *m = (attn_mha){.embed_dim = embed_dim, .num_heads = num_heads,
                    .num_kv_heads = num_kv_heads, .head_dim = head_dim, .kdim = kdim,
                    .vdim = vdim, .kv_dim = num_kv_heads * head_dim, .has_bias = bias == 1,
                    .causal = ATTN_CAUSAL_NONE};
    /* All weights are allocated here so that setting them cannot fail for
     * lack of memory and forward never allocates them. */
    for (int p = 0; p < N_PROJ; p++) {
        size_t rows = (size_t)out_features(m, (attn_proj)p);
        m->weight[p] = attn_alloc(rows * (size_t)in_features(m, (attn_proj)p) * sizeof(float));
        if (m->has_bias)
            m->bias[p] = attn_alloc(rows * sizeof(float));
        if (!m->weight[p] || (m->has_bias && !m->bias[p])) {
            attn_mha_destroy(m);
            return attn_fail(ATTN_ERR_OUT_OF_MEMORY, f, "cannot allocate the %s projection",
                             proj_names[p]);
        }
    }
    *mha = m;
    return ATTN_OK;
}

attn_status attn_mha_set_weights(attn_mha *mha, attn_proj which, const float *weight,
                                 const float *bias)
{
    static const char *f = "attn_mha_set_weights";
    if (!mha)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "mha is NULL");
    if (which < ATTN_PROJ_Q || which > ATTN_PROJ_O)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "which (%d) is not an attn_proj",
                         (int)which);
    if (!weight)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "weight of the %s projection is NULL",
                         proj_names[which]);
    if (mha->has_bias && !bias)
        return attn_fail(ATTN_ERR_NULL_POINTER, f,
                         "bias of the %s projection is NULL on a layer made with bias = 1",
                         proj_names[which]);
    if (!mha->has_bias && bias)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f,
                         "bias of the %s projection is given to a layer made with bias = 0",
                         proj_names[which]);
    size_t rows = (size_t)out_features(mha, which);
    memcpy(mha->weight[which], weight, rows * (size_t)in_features(mha, which) * sizeof(float));
    if (bias)
        memcpy(mha->bias[which], bias, rows * sizeof(float));
    mha->set[which] = true;
    return ATTN_OK;
}

attn_status attn_mha_set_causal(attn_mha *mha, attn_causal causal)
{
    if (!mha)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "mha is NULL");
    attn_status st = attn_check_causal(causal, __func__);
    if (st == ATTN_OK)
        mha->causal = causal;
    return st;
}

/* ATTN_ERR_STATE naming every projection not set yet. */
static attn_status check_weights_set(const attn_mha *m, const char *f)
{
    char missing[16] = "";
    for (int p = 0; p < N_PROJ; p++)
        if (!m->set[p]) {
            strcat(missing, missing[0] ? ", " : "");
            strcat(missing, proj_names[p]);
        }
    if (!missing[0])
        return ATTN_OK;
    return attn_fail(ATTN_ERR_STATE, f,
                     "projection(s) %s not set: call attn_mha_set_weights for each", missing);
}

typedef struct mha_call {
    int64_t batch, len_q, len_kv;
    const float *query, *key, *value;
    float *out, *weights;
} mha_call;

static attn_status check_forward(attn_context *ctx, const attn_mha *m, const mha_call *c,
                                 const attn_mask *mask, const char *f)
{
    if (!ctx)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "ctx is NULL");
    if (!m)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "mha is NULL");
    const int64_t counts[3] = {c->batch, c->len_q, c->len_kv};
    static const char *names[3] = {"batch", "len_q", "len_kv"};
    attn_status st;
    if ((st = attn_check_min(counts, names, 3, 0, f)) != ATTN_OK)
        return st;
    const int64_t q[3] = {c->batch, c->len_q, m->embed_dim}, k[3] = {c->batch, c->len_kv, m->kdim},
                  v[3] = {c->batch, c->len_kv, m->vdim},
                  w[4] = {c->batch, m->num_heads, c->len_q, c->len_kv};
    if ((st = attn_check_tensor(q, 3, "query", f)) != ATTN_OK ||
        (st = attn_check_tensor(k, 3, "key", f)) != ATTN_OK ||
        (st = attn_check_tensor(v, 3, "value", f)) != ATTN_OK ||
        (c->weights && (st = attn_check_tensor(w, 4, "weights", f)) != ATTN_OK))
        return st;
    if ((st = attn_check_blas(c->batch * c->len_q, "batch × len_q", f)) != ATTN_OK ||
        (st = attn_check_blas(c->batch * c->len_kv, "batch × len_kv", f)) != ATTN_OK ||
        (st = attn_check_blas(c->len_kv, "len_kv", f)) != ATTN_OK)
        return st;
    int64_t nq = c->batch * c->len_q, nkv = c->batch * c->len_kv;
    if ((st = attn_check_data(c->query, nq * m->embed_dim, "query", f)) != ATTN_OK ||
        (st = attn_check_data(c->key, nkv * m->kdim, "key", f)) != ATTN_OK ||
        (st = attn_check_data(c->value, nkv * m->vdim, "value", f)) != ATTN_OK ||
        (st = attn_check_data(c->out, nq * m->embed_dim, "out", f)) != ATTN_OK)
        return st;
    if ((st = check_weights_set(m, f)) != ATTN_OK)
        return st;
    const attn_mask_dims md = {c->batch, m->num_heads, c->len_q, c->len_kv};
    return attn_mask_validate(mask, &md, f);
}

/* The workspace holds Q, K, V and the attention output A, each [B·S, ·]. */
static attn_status reserve_workspace(attn_context *ctx, const attn_mha *m, const mha_call *c,
                                     float **ws, const char *f)
{
    size_t nq = (size_t)(c->batch * c->len_q), nkv = (size_t)(c->batch * c->len_kv);
    size_t e = (size_t)m->embed_dim, kv = (size_t)m->kv_dim, floats;
    /* Each term is a valid tensor's size; only the sum can overflow. */
    if (__builtin_add_overflow(2 * nq * e, 2 * nkv * kv, &floats))
        return attn_fail(ATTN_ERR_SIZE_OVERFLOW, f, "the projections do not fit in memory");
    return attn_context_workspace(ctx, f, floats, ws);
}

attn_status attn_mha_forward(attn_context *ctx, const attn_mha *mha, int64_t batch,
                             int64_t len_q, int64_t len_kv, const float *query, const float *key,
                             const float *value, const attn_mask *mask, float *out,
                             float *weights)
{
    static const char *f = "attn_mha_forward";
    const mha_call c = {batch, len_q, len_kv, query, key, value, out, weights};
    attn_status st = check_forward(ctx, mha, &c, mask, f);
    float *ws = NULL;
    if (st == ATTN_OK)
        st = reserve_workspace(ctx, mha, &c, &ws, f);
    if (st != ATTN_OK)
        return st;

    int64_t nq = batch * len_q, nkv = batch * len_kv;
    /* The projections' threads are made now: after the attention has written
     * `weights`, nothing may fail any more. */
    int threads = attn_context_threads(ctx, attn_linear_items(nq > nkv ? nq : nkv));
    if ((st = attn_context_reserve(ctx, f, threads, 0)) != ATTN_OK)
        return st;
    float *qp = ws, *ap = qp + nq * mha->embed_dim;
    float *kp = ap + nq * mha->embed_dim, *vp = kp + nkv * mha->kv_dim;
    attn_linear(ctx, threads, nq, mha->embed_dim, mha->embed_dim, query,
                mha->weight[ATTN_PROJ_Q], mha->bias[ATTN_PROJ_Q], qp);
    attn_linear(ctx, threads, nkv, mha->kdim, mha->kv_dim, key, mha->weight[ATTN_PROJ_K],
                mha->bias[ATTN_PROJ_K], kp);
    attn_linear(ctx, threads, nkv, mha->vdim, mha->kv_dim, value, mha->weight[ATTN_PROJ_V],
                mha->bias[ATTN_PROJ_V], vp);

    const attn_view q_view = {mha->num_heads, len_q, mha->head_dim, true};
    const attn_view kv_view = {mha->num_kv_heads, len_kv, mha->head_dim, true};
    const attn_qk qk = {.q = qp, .q_view = q_view, .k = kp, .k_view = kv_view,
                        .scale = (float)(1.0 / sqrt((double)mha->head_dim))};
    attn_attend_args a = {
        .batch = batch, .heads_q = mha->num_heads, .heads_kv = mha->num_kv_heads,
        .len_q = len_q, .len_kv = len_kv, .causal = mha->causal, .mask = mask,
        .v = vp, .v_view = kv_view, .out = ap, .out_view = q_view,
        .weights = weights, .lse = NULL,
    };
    /* May fail only for scratch or threads, before weights is written. */
    if ((st = attn_dot_product_attend(ctx, &qk, &a, f)) != ATTN_OK)
        return st;
    attn_linear(ctx, threads, nq, mha->embed_dim, mha->embed_dim, ap, mha->weight[ATTN_PROJ_O],
                mha->bias[ATTN_PROJ_O], out);
    return ATTN_OK;
}
