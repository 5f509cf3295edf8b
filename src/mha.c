/*
 * mha.c — the multi-head attention layer (Vaswani et al. 2017 §3.2.2), with
 * the numbers of torch.nn.MultiheadAttention.
 *
 * forward = three projections (one sgemm each over every batch × sequence
 * row), the scaled dot-product attention of attend.c reading every head in
 * place from the projected [B, S, H·D] buffers (BSHD views, no per-head
 * copies), and the output projection (one more sgemm). The projected
 * activations live in the context's workspace (inference) or in an
 * attn_activations (training: mha_train.c, which also has the backward).
 */
#include <math.h>
#include <string.h>

#include "attn_internal.h"

static const char *const proj_names[ATTN_MHA_PROJ] = {"Q", "K", "V", "O"};

int64_t attn_mha_out_features(const attn_mha *m, attn_proj p)
{
    return p == ATTN_PROJ_K || p == ATTN_PROJ_V ? m->kv_dim : m->embed_dim;
}

int64_t attn_mha_in_features(const attn_mha *m, attn_proj p)
{
    return p == ATTN_PROJ_K ? m->kdim : p == ATTN_PROJ_V ? m->vdim : m->embed_dim;
}

void attn_mha_destroy(attn_mha *mha)
{
    if (!mha)
        return;
    for (int p = 0; p < ATTN_MHA_PROJ; p++) {
        attn_free(mha->weight[p]);
        attn_free(mha->bias[p]);
    }
    attn_score_mods_clear_alibi(&mha->mods);
    attn_rope_destroy(mha->rope);
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
                    .causal = ATTN_CAUSAL_NONE, .version = attn_next_version(),
                    .dropout = attn_dropout_make(0.0f, 0), .mods = attn_score_mods_none()};
    /* All weights are allocated here so that setting them cannot fail for
     * lack of memory and forward never allocates them. */
    for (int p = 0; p < ATTN_MHA_PROJ; p++) {
        size_t rows = (size_t)attn_mha_out_features(m, (attn_proj)p);
        m->weight[p] = attn_alloc(rows * (size_t)attn_mha_in_features(m, (attn_proj)p) * sizeof(float));
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
    size_t rows = (size_t)attn_mha_out_features(mha, which);
    memcpy(mha->weight[which], weight, rows * (size_t)attn_mha_in_features(mha, which) * sizeof(float));
    if (bias)
        memcpy(mha->bias[which], bias, rows * sizeof(float));
    mha->set[which] = true;
    mha->version = attn_next_version();
    return ATTN_OK;
}

attn_status attn_mha_set_causal(attn_mha *mha, attn_causal causal)
{
    if (!mha)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "mha is NULL");
    attn_status st = attn_check_causal(causal, __func__);
    if (st == ATTN_OK) {
        mha->causal = causal;
        mha->version = attn_next_version();
    }
    return st;
}

attn_status attn_mha_get_property(const attn_mha *mha, attn_mha_property what,
                                  int64_t *value)
{
    if (!mha)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "mha is NULL");
    if (!value)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "value is NULL");
    switch (what) {
    case ATTN_MHA_EMBED_DIM: *value = mha->embed_dim; break;
    case ATTN_MHA_NUM_HEADS: *value = mha->num_heads; break;
    case ATTN_MHA_NUM_KV_HEADS: *value = mha->num_kv_heads; break;
    case ATTN_MHA_HEAD_DIM: *value = mha->head_dim; break;
    case ATTN_MHA_KDIM: *value = mha->kdim; break;
    case ATTN_MHA_VDIM: *value = mha->vdim; break;
    case ATTN_MHA_BIAS: *value = mha->has_bias; break;
    case ATTN_MHA_CAUSAL: *value = mha->causal; break;
    case ATTN_MHA_HAS_MODIFIERS: *value = attn_mha_mods(mha) != NULL; break;
    case ATTN_MHA_HAS_ROPE: *value = mha->rope != NULL; break;
    case ATTN_MHA_HAS_DROPOUT: *value = mha->dropout.p > 0.0f; break;
    default:
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, __func__,
                         "what = %d is not an attn_mha_property", (int)what);
    }
    return ATTN_OK;
}

/* The score modifiers change the layer's function: activations filled
 * before are stale, as after attn_mha_set_causal. */
static attn_status modifiers_changed(attn_mha *mha, attn_status st)
{
    if (st == ATTN_OK)
        mha->version = attn_next_version();
    return st;
}

attn_status attn_mha_set_window(attn_mha *mha, int64_t left, int64_t right)
{
    if (!mha)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "mha is NULL");
    return modifiers_changed(mha, attn_score_mods_set_window(&mha->mods, left, right, __func__));
}

attn_status attn_mha_set_softcap(attn_mha *mha, float cap)
{
    if (!mha)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "mha is NULL");
    return modifiers_changed(mha, attn_score_mods_set_softcap(&mha->mods, cap, __func__));
}

attn_status attn_mha_set_alibi(attn_mha *mha, const float *slopes)
{
    if (!mha)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "mha is NULL");
    return modifiers_changed(
        mha, attn_score_mods_set_alibi(&mha->mods, mha->num_heads, slopes, __func__));
}

attn_status attn_mha_clear_alibi(attn_mha *mha)
{
    if (!mha)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "mha is NULL");
    attn_score_mods_clear_alibi(&mha->mods);
    return modifiers_changed(mha, ATTN_OK);
}

attn_status attn_mha_set_rope(attn_mha *mha, const attn_rope *rope)
{
    static const char *f = "attn_mha_set_rope";
    if (!mha)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "mha is NULL");
    attn_rope *copy = NULL;
    if (rope) {
        if (attn_rope_head_dim(rope) != mha->head_dim)
            return attn_fail(ATTN_ERR_SHAPE_MISMATCH, f,
                             "the rope's head_dim (%lld) is not the layer's (%lld)",
                             (long long)attn_rope_head_dim(rope), (long long)mha->head_dim);
        attn_status st = attn_rope_copy(rope, &copy, f);
        if (st != ATTN_OK)
            return st;
    }
    attn_rope_destroy(mha->rope);
    mha->rope = copy;
    return modifiers_changed(mha, ATTN_OK);
}

int64_t attn_mha_query_start(const attn_mha *m, int64_t len_q, int64_t len_kv)
{
    return m->causal == ATTN_CAUSAL_TOP_LEFT ? 0 : len_kv - len_q;
}

const attn_score_mods *attn_mha_mods(const attn_mha *m)
{
    return attn_score_mods_active(&m->mods) ? &m->mods : NULL;
}

attn_status attn_mha_check_weights_set(const attn_mha *m, const char *f)
{
    char missing[16] = "";
    for (int p = 0; p < ATTN_MHA_PROJ; p++)
        if (!m->set[p]) {
            strcat(missing, missing[0] ? ", " : "");
            strcat(missing, proj_names[p]);
        }
    if (!missing[0])
        return ATTN_OK;
    return attn_fail(ATTN_ERR_STATE, f,
                     "projection(s) %s not set: call attn_mha_set_weights for each", missing);
}

static attn_status check_forward(attn_context *ctx, const attn_mha *m, const attn_mha_call *c,
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
    if ((st = attn_mha_check_weights_set(m, f)) != ATTN_OK)
        return st;
    if (m->rope &&
        ((st = attn_rope_check_positions(m->rope, 1, c->len_q, NULL,
                                         attn_mha_query_start(m, c->len_q, c->len_kv), f)) !=
             ATTN_OK ||
         (st = attn_rope_check_positions(m->rope, 1, c->len_kv, NULL, 0, f)) != ATTN_OK))
        return st;
    const attn_mask_dims md = {c->batch, m->num_heads, c->len_q, c->len_kv};
    return attn_mask_validate(mask, &md, f);
}

/* Rotates the projected Q and K (BSHD views) by the layer's RoPE. */
static attn_status rotate_projections(attn_context *ctx, const attn_mha *m,
                                      const attn_mha_call *c, const attn_mha_views *views,
                                      float *qp, float *kp, const char *f)
{
    if (!m->rope)
        return ATTN_OK;
    attn_status st = attn_rope_run(ctx, m->rope, views->q, c->batch, qp, NULL,
                                   attn_mha_query_start(m, c->len_q, c->len_kv), 0, f);
    if (st == ATTN_OK)
        st = attn_rope_run(ctx, m->rope, views->kv, c->batch, kp, NULL, 0, 0, f);
    return st;
}

/* The workspace holds Q, K, V and the attention output A, each [B·S, ·]. */
static attn_status reserve_workspace(attn_context *ctx, const attn_mha *m,
                                     const attn_mha_call *c, float **ws, const char *f)
{
    size_t nq = (size_t)(c->batch * c->len_q), nkv = (size_t)(c->batch * c->len_kv);
    size_t e = (size_t)m->embed_dim, kv = (size_t)m->kv_dim, floats;
    /* Each term is a valid tensor's size; only the sum can overflow. */
    if (__builtin_add_overflow(2 * nq * e, 2 * nkv * kv, &floats))
        return attn_fail(ATTN_ERR_SIZE_OVERFLOW, f, "the projections do not fit in memory");
    return attn_context_workspace(ctx, f, floats, ws);
}

attn_mha_views attn_mha_attention_views(const attn_mha *m, int64_t len_q, int64_t len_kv)
{
    return (attn_mha_views){
        .q = {m->num_heads, len_q, m->head_dim, true},
        .kv = {m->num_kv_heads, len_kv, m->head_dim, true},
        .scale = (float)(1.0 / sqrt((double)m->head_dim)),
    };
}

attn_status attn_mha_run(attn_context *ctx, const attn_mha *mha, const attn_mha_call *c,
                         const attn_mask *mask, attn_mha_buffers *buf, const char *f)
{
    int64_t nq = c->batch * c->len_q, nkv = c->batch * c->len_kv;
    /* The projections' threads are made now: after the attention has written
     * `weights`, nothing may fail any more. */
    int threads = attn_context_threads(ctx, attn_linear_items(nq > nkv ? nq : nkv));
    attn_status st = attn_context_reserve(ctx, f, threads, 0);
    if (st != ATTN_OK)
        return st;
    attn_linear(ctx, threads, nq, mha->embed_dim, mha->embed_dim, c->query,
                mha->weight[ATTN_PROJ_Q], mha->bias[ATTN_PROJ_Q], buf->qp);
    attn_linear(ctx, threads, nkv, mha->kdim, mha->kv_dim, c->key, mha->weight[ATTN_PROJ_K],
                mha->bias[ATTN_PROJ_K], buf->kp);
    attn_linear(ctx, threads, nkv, mha->vdim, mha->kv_dim, c->value, mha->weight[ATTN_PROJ_V],
                mha->bias[ATTN_PROJ_V], buf->vp);

    const attn_mha_views views = attn_mha_attention_views(mha, c->len_q, c->len_kv);
    if ((st = rotate_projections(ctx, mha, c, &views, buf->qp, buf->kp, f)) != ATTN_OK)
        return st;
    const attn_qk qk = {.q = buf->qp, .q_view = views.q, .k = buf->kp, .k_view = views.kv,
                        .scale = views.scale};
    attn_attend_args a = {
        .batch = c->batch, .heads_q = mha->num_heads, .heads_kv = mha->num_kv_heads,
        .len_q = c->len_q, .len_kv = c->len_kv, .causal = mha->causal, .mask = mask,
        .v = buf->vp, .v_view = views.kv, .out = buf->ap, .out_view = views.q,
        .weights = c->weights, .lse = buf->lse, .dropout = buf->dropout,
        .mods = attn_mha_mods(mha),
    };
    /* May fail only for scratch or threads, before weights is written. */
    if ((st = attn_dot_product_attend(ctx, &qk, &a, f)) != ATTN_OK)
        return st;
    attn_linear(ctx, threads, nq, mha->embed_dim, mha->embed_dim, buf->ap,
                mha->weight[ATTN_PROJ_O], mha->bias[ATTN_PROJ_O], c->out);
    return ATTN_OK;
}

attn_status attn_mha_validate_forward(attn_context *ctx, const attn_mha *m,
                                      const attn_mha_call *c, const attn_mask *mask,
                                      const char *f)
{
    return check_forward(ctx, m, c, mask, f);
}

attn_status attn_mha_forward(attn_context *ctx, const attn_mha *mha, int64_t batch,
                             int64_t len_q, int64_t len_kv, const float *query, const float *key,
                             const float *value, const attn_mask *mask, float *out,
                             float *weights)
{
    static const char *f = "attn_mha_forward";
    const attn_mha_call c = {batch, len_q, len_kv, query, key, value, out, weights};
    attn_status st = check_forward(ctx, mha, &c, mask, f);
    float *ws = NULL;
    if (st == ATTN_OK)
        st = reserve_workspace(ctx, mha, &c, &ws, f);
    if (st != ATTN_OK)
        return st;
    int64_t nq = batch * len_q, nkv = batch * len_kv;
    /* Inference: no dropout, no lse. */
    attn_mha_buffers buf = {.qp = ws, .ap = ws + nq * mha->embed_dim};
    buf.kp = buf.ap + nq * mha->embed_dim;
    buf.vp = buf.kp + nkv * mha->kv_dim;
    return attn_mha_run(ctx, mha, &c, mask, &buf, f);
}
