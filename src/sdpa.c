/*
 * sdpa.c — scaled dot-product attention (Vaswani et al. 2017, eq. 1): the
 * attn_sdpa op (shapes and options), the validation of a forward call, and
 * the logits scale · Q Kᵀ, computed by cblas_sgemm on Q and K read in place
 * in either layout (a head of a BSHD tensor is a strided matrix whose leading
 * dimension is heads × dim). The softmax and P·V are attend.c's.
 */
#include <math.h>

#include "attn_internal.h"

struct attn_sdpa {
    int64_t batch, heads_q, heads_kv, len_q, len_kv, dim_qk, dim_v;
    attn_layout layout;
    attn_causal causal;
    float scale;
    attn_dropout dropout;  /* p = 0: none */
    attn_score_mods mods;  /* window, softcap, ALiBi (score_modifiers.c) */
};

/* ---- creation and options ---------------------------------------------- */

/* Each of q, k, v, out must have a byte count that fits in size_t. */
static attn_status check_tensor_bytes(const attn_sdpa *s, const char *func)
{
    const int64_t shapes[4][4] = {
        {s->batch, s->heads_q, s->len_q, s->dim_qk},
        {s->batch, s->heads_kv, s->len_kv, s->dim_qk},
        {s->batch, s->heads_kv, s->len_kv, s->dim_v},
        {s->batch, s->heads_q, s->len_q, s->dim_v},
    };
    static const char *names[4] = {"q", "k", "v", "out"};
    for (int i = 0; i < 4; i++) {
        attn_status st = attn_check_tensor(shapes[i], 4, names[i], func);
        if (st != ATTN_OK)
            return st;
    }
    return ATTN_OK;
}

/* Every value that reaches cblas_sgemm as a size or leading dimension. The
 * heads × dim products are formed with overflow checks: with batch = 0 the
 * tensor-size check above does not bound them. */
static attn_status check_blas_range(const attn_sdpa *s, const char *func)
{
    int64_t v[7] = {s->len_kv, s->dim_qk, s->dim_v, 0, 0, 0, 0};
    static const char *names[7] = {"len_kv", "dim_qk", "dim_v", "heads_q × dim_qk",
                                   "heads_q × dim_v", "heads_kv × dim_qk", "heads_kv × dim_v"};
    if (!attn_mul_i64(s->heads_q, s->dim_qk, &v[3]) || !attn_mul_i64(s->heads_q, s->dim_v, &v[4]) ||
        !attn_mul_i64(s->heads_kv, s->dim_qk, &v[5]) || !attn_mul_i64(s->heads_kv, s->dim_v, &v[6]))
        return attn_fail(ATTN_ERR_UNSUPPORTED, func,
                         "heads × dim exceeds the BLAS integer range (%lld)", ATTN_BLAS_INT_MAX);
    for (int i = 0; i < 7; i++) {
        attn_status st = attn_check_blas(v[i], names[i], func);
        if (st != ATTN_OK)
            return st;
    }
    return ATTN_OK;
}

attn_status attn_sdpa_create(attn_sdpa **op, int64_t batch, int64_t heads_q, int64_t heads_kv,
                             int64_t len_q, int64_t len_kv, int64_t dim_qk, int64_t dim_v)
{
    static const char *f = "attn_sdpa_create";
    if (!op)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "op is NULL");
    const int64_t counts[] = {batch, len_q, len_kv};
    static const char *count_names[] = {"batch", "len_q", "len_kv"};
    const int64_t sizes[] = {heads_q, heads_kv, dim_qk, dim_v};
    static const char *size_names[] = {"heads_q", "heads_kv", "dim_qk", "dim_v"};
    attn_status st;
    if ((st = attn_check_min(counts, count_names, 3, 0, f)) != ATTN_OK ||
        (st = attn_check_min(sizes, size_names, 4, 1, f)) != ATTN_OK)
        return st;
    if (heads_q % heads_kv != 0)
        return attn_fail(ATTN_ERR_SHAPE_MISMATCH, f,
                         "heads_q (%lld) is not a multiple of heads_kv (%lld)",
                         (long long)heads_q, (long long)heads_kv);

    attn_sdpa s = {.batch = batch, .heads_q = heads_q, .heads_kv = heads_kv, .len_q = len_q,
                   .len_kv = len_kv, .dim_qk = dim_qk, .dim_v = dim_v,
                   .layout = ATTN_LAYOUT_BHSD, .causal = ATTN_CAUSAL_NONE,
                   .scale = (float)(1.0 / sqrt((double)dim_qk)),
                   .dropout = attn_dropout_make(0.0f, 0), .mods = attn_score_mods_none()};
    if ((st = check_tensor_bytes(&s, f)) != ATTN_OK || (st = check_blas_range(&s, f)) != ATTN_OK)
        return st;

    attn_sdpa *p = attn_alloc(sizeof *p);
    if (!p)
        return attn_fail(ATTN_ERR_OUT_OF_MEMORY, f, "cannot allocate the op");
    *p = s;
    *op = p;
    return ATTN_OK;
}

void attn_sdpa_destroy(attn_sdpa *op)
{
    if (!op)
        return;
    attn_score_mods_clear_alibi(&op->mods);
    attn_free(op);
}

attn_status attn_sdpa_set_layout(attn_sdpa *op, attn_layout layout)
{
    if (!op)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "op is NULL");
    if (layout != ATTN_LAYOUT_BHSD && layout != ATTN_LAYOUT_BSHD)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, __func__, "layout (%d) is not an attn_layout",
                         (int)layout);
    op->layout = layout;
    return ATTN_OK;
}

attn_status attn_sdpa_set_scale(attn_sdpa *op, float scale)
{
    if (!op)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "op is NULL");
    if (!isfinite(scale))
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, __func__, "scale (%g) is not finite",
                         (double)scale);
    op->scale = scale;
    return ATTN_OK;
}

attn_status attn_sdpa_set_causal(attn_sdpa *op, attn_causal causal)
{
    if (!op)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "op is NULL");
    attn_status st = attn_check_causal(causal, __func__);
    if (st == ATTN_OK)
        op->causal = causal;
    return st;
}

attn_status attn_sdpa_set_dropout(attn_sdpa *op, float p, uint64_t seed)
{
    if (!op)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "op is NULL");
    return attn_dropout_set(&op->dropout, p, seed, __func__);
}

attn_status attn_sdpa_set_window(attn_sdpa *op, int64_t left, int64_t right)
{
    if (!op)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "op is NULL");
    return attn_score_mods_set_window(&op->mods, left, right, __func__);
}

attn_status attn_sdpa_set_softcap(attn_sdpa *op, float cap)
{
    if (!op)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "op is NULL");
    return attn_score_mods_set_softcap(&op->mods, cap, __func__);
}

attn_status attn_sdpa_set_alibi(attn_sdpa *op, const float *slopes)
{
    if (!op)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "op is NULL");
    return attn_score_mods_set_alibi(&op->mods, op->heads_q, slopes, __func__);
}

attn_status attn_sdpa_clear_alibi(attn_sdpa *op)
{
    if (!op)
        return attn_fail(ATTN_ERR_NULL_POINTER, __func__, "op is NULL");
    attn_score_mods_clear_alibi(&op->mods);
    return ATTN_OK;
}

/* The dropout a call applies (NULL: none). */
static const attn_dropout *active_dropout(const attn_sdpa *op)
{
    return op->dropout.p > 0.0f ? &op->dropout : NULL;
}

static attn_status check_dropout_range(const attn_sdpa *op, const char *f)
{
    return attn_dropout_check_range(active_dropout(op), op->batch, op->heads_q, op->len_q,
                                    op->len_kv, f);
}

attn_status attn_dropout_keep_mask(const attn_sdpa *op, uint8_t *keep)
{
    static const char *f = "attn_dropout_keep_mask";
    if (!op)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "op is NULL");
    const int64_t dims[4] = {op->batch, op->heads_q, op->len_q, op->len_kv};
    int64_t n;
    if (!attn_tensor_elems(dims, 4, sizeof(uint8_t), &n))
        return attn_fail(ATTN_ERR_SIZE_OVERFLOW, f, "keep [%lld, %lld, %lld, %lld] overflows",
                         (long long)dims[0], (long long)dims[1], (long long)dims[2],
                         (long long)dims[3]);
    attn_status st = attn_check_data(keep, n, "keep", f);
    if (st == ATTN_OK)
        st = check_dropout_range(op, f);
    if (st != ATTN_OK)
        return st;
    const attn_dropout none = attn_dropout_make(0.0f, 0);
    const attn_dropout *d = active_dropout(op) ? &op->dropout : &none;
    for (int64_t bh = 0; bh < op->batch * op->heads_q; bh++)
        for (int64_t i = 0; i < op->len_q; i++)
            attn_dropout_keep_row(d, bh, i, keep + (bh * op->len_q + i) * op->len_kv, op->len_kv);
    return ATTN_OK;
}

/* ---- forward ------------------------------------------------------------ */

/* Scaled dot-product logits: S = scale · Q_blk · K[0:n]ᵀ, one cblas_sgemm
 * that reads both heads in place through their leading dimensions. */
static void dot_product_logits(const void *arg, int64_t b, int64_t h, int64_t i0, int64_t rows,
                               int64_t j0, int64_t n, float *s)
{
    const attn_qk *qk = arg;
    int64_t g = h / (qk->q_view.heads / qk->k_view.heads);
    int64_t ldq = attn_view_stride(&qk->q_view);
    const float *q = qk->q + attn_view_offset(&qk->q_view, b, h) + i0 * ldq;
    int64_t ldk = attn_view_stride(&qk->k_view);
    const float *k = qk->k + attn_view_offset(&qk->k_view, b, g) + j0 * ldk;
    if (rows == 1)
        attn_gemv_n(n, qk->q_view.dim, qk->scale, k, ldk, q, 0.0f, s);
    else
        attn_gemm_nt(rows, n, qk->q_view.dim, qk->scale, q, ldq, k, ldk, 0.0f, s, n);
}

void attn_dot_product_logits(const attn_qk *qk, attn_attend_args *a)
{
    a->logits = dot_product_logits;
    a->logits_arg = qk;
}

attn_status attn_dot_product_attend(attn_context *ctx, const attn_qk *qk, attn_attend_args *a,
                                    const char *func)
{
    attn_dot_product_logits(qk, a);
    return attn_attend(ctx, a, func);
}

static attn_status validate_forward(attn_context *ctx, const attn_sdpa *op, const float *q,
                                    const float *k, const float *v, const attn_mask *mask,
                                    const float *out, const float *weights, const char *f)
{
    if (!ctx)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "ctx is NULL");
    if (!op)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "op is NULL");
    int64_t nq = op->batch * op->heads_q * op->len_q;  /* checked at create */
    int64_t nkv = op->batch * op->heads_kv * op->len_kv;
    attn_status st;
    if ((st = attn_check_data(q, nq * op->dim_qk, "q", f)) != ATTN_OK ||
        (st = attn_check_data(k, nkv * op->dim_qk, "k", f)) != ATTN_OK ||
        (st = attn_check_data(v, nkv * op->dim_v, "v", f)) != ATTN_OK ||
        (st = attn_check_data(out, nq * op->dim_v, "out", f)) != ATTN_OK)
        return st;
    const int64_t weights_dims[4] = {op->batch, op->heads_q, op->len_q, op->len_kv};
    if (weights && (st = attn_check_tensor(weights_dims, 4, "weights", f)) != ATTN_OK)
        return st;
    const attn_mask_dims md = {op->batch, op->heads_q, op->len_q, op->len_kv};
    if ((st = attn_mask_validate(mask, &md, f)) != ATTN_OK)
        return st;
    return check_dropout_range(op, f);
}

/* The logits' inputs and the pooling's arguments of one call on op. */
static attn_qk make_qk(const attn_sdpa *op, const float *q, const float *k)
{
    bool bshd = op->layout == ATTN_LAYOUT_BSHD;
    return (attn_qk){
        .q = q, .q_view = {op->heads_q, op->len_q, op->dim_qk, bshd},
        .k = k, .k_view = {op->heads_kv, op->len_kv, op->dim_qk, bshd},
        .scale = op->scale,
    };
}

static attn_attend_args make_attend_args(const attn_sdpa *op, const attn_mask *mask,
                                         const float *v, float *out)
{
    bool bshd = op->layout == ATTN_LAYOUT_BSHD;
    return (attn_attend_args){
        .batch = op->batch, .heads_q = op->heads_q, .heads_kv = op->heads_kv,
        .len_q = op->len_q, .len_kv = op->len_kv, .causal = op->causal, .mask = mask,
        .v = v, .v_view = {op->heads_kv, op->len_kv, op->dim_v, bshd},
        .out = out, .out_view = {op->heads_q, op->len_q, op->dim_v, bshd},
        .dropout = active_dropout(op),
        .mods = attn_score_mods_active(&op->mods) ? &op->mods : NULL,
    };
}

attn_status attn_sdpa_forward(attn_context *ctx, const attn_sdpa *op, const float *q,
                              const float *k, const float *v, const attn_mask *mask, float *out,
                              float *weights, float *lse)
{
    static const char *f = "attn_sdpa_forward";
    attn_status st = validate_forward(ctx, op, q, k, v, mask, out, weights, f);
    if (st != ATTN_OK)
        return st;
    const attn_qk qk = make_qk(op, q, k);
    attn_attend_args a = make_attend_args(op, mask, v, out);
    a.weights = weights;
    a.lse = lse;
    return attn_dot_product_attend(ctx, &qk, &a, f);
}

attn_cached_call attn_sdpa_cached_call(const attn_sdpa *op)
{
    return (attn_cached_call){.heads_q = op->heads_q, .heads_kv = op->heads_kv,
                              .dim_qk = op->dim_qk, .dim_v = op->dim_v, .scale = op->scale,
                              .mods = attn_score_mods_active(&op->mods) ? &op->mods : NULL};
}

/* ---- backward ----------------------------------------------------------- */

/* A gradient output must not share a byte with any input or with another
 * output: the backward zeroes d_k and d_v before it reads q, k, v. */
static attn_status check_gradients_disjoint(const attn_sdpa *op, const float *const in[6],
                                            float *const grad[3], const char *f)
{
    size_t nq = (size_t)(op->batch * op->heads_q * op->len_q);
    size_t nkv = (size_t)(op->batch * op->heads_kv * op->len_kv);
    size_t dqk = (size_t)op->dim_qk, dv = (size_t)op->dim_v;
    const attn_buffer ins[6] = {{in[0], nq, dqk, "q"},  {in[1], nkv, dqk, "k"},
                                {in[2], nkv, dv, "v"},  {in[3], nq, dv, "out"},
                                {in[4], nq, 1, "lse"},  {in[5], nq, dv, "d_out"}};
    const attn_buffer outs[3] = {{grad[0], nq, dqk, "d_q"}, {grad[1], nkv, dqk, "d_k"},
                                 {grad[2], nkv, dv, "d_v"}};
    return attn_check_outputs_disjoint(outs, 3, 0, ins, 6, f);
}

static attn_status validate_backward(attn_context *ctx, const attn_sdpa *op,
                                     const float *const in[6], float *const grad[3],
                                     const attn_mask *mask, const char *f)
{
    attn_status st = validate_forward(ctx, op, in[0], in[1], in[2], mask, in[3], NULL, f);
    if (st != ATTN_OK)
        return st;
    int64_t nq = op->batch * op->heads_q * op->len_q;
    if ((st = attn_check_data(in[4], nq, "lse", f)) != ATTN_OK ||
        (st = attn_check_data(in[5], nq * op->dim_v, "d_out", f)) != ATTN_OK)
        return st;
    return check_gradients_disjoint(op, in, grad, f);
}

attn_status attn_sdpa_backward(attn_context *ctx, const attn_sdpa *op, const float *q,
                               const float *k, const float *v, const attn_mask *mask,
                               const float *out, const float *lse, const float *d_out,
                               float *d_q, float *d_k, float *d_v)
{
    static const char *f = "attn_sdpa_backward";
    const float *const in[6] = {q, k, v, out, lse, d_out};
    float *const grad[3] = {d_q, d_k, d_v};
    attn_status st = validate_backward(ctx, op, in, grad, mask, f);
    if (st != ATTN_OK)
        return st;
    const attn_qk qk = make_qk(op, q, k);
    /* The backward only reads out (attn_attend_args has one pointer for
     * both uses). */
    attn_attend_args a = make_attend_args(op, mask, v, (float *)out);
    attn_dot_product_logits(&qk, &a);
    const attn_backward_args ba = {.fwd = &a, .qk = &qk, .lse = lse, .d_out = d_out,
                                   .d_q = d_q, .d_k = d_k, .d_v = d_v};
    return attn_dot_product_backward(ctx, &ba, f);
}
