/*
 * sdpa.c — scaled dot-product attention (Vaswani et al. 2017, eq. 1).
 *
 * The work is split into items of (batch row, query head, block of query
 * rows). For one item:
 *   S = scale · Q_blk · K[0:n]ᵀ        cblas_sgemm into per-thread scratch
 *   P = masked softmax of each row of S  (softmax.c)
 *   O_blk = P · V[0:n]                  cblas_sgemm straight into `out`
 * where n is the number of keys any row of the block can see (valid length,
 * causal limit), so blocks never compute keys they cannot use and keys beyond
 * a batch row's valid length are never read. Scratch is block_q × len_kv
 * floats per thread; nothing of size len_q × len_kv is ever allocated.
 *
 * Q, K, V and out are read and written in place in either layout: a head of
 * a BSHD tensor is a strided matrix whose leading dimension is heads × dim.
 */
#include <math.h>
#include <string.h>

#include "attn_internal.h"

/* Query rows per item. 64 rows × len_kv floats keeps a block's logits in L2
 * for len_kv up to ~4096 while giving the GEMMs a useful M. The result of a
 * row does not depend on this choice being made per shape. */
#define ATTN_BLOCK_Q 64

struct attn_sdpa {
    int64_t batch, heads_q, heads_kv, len_q, len_kv, dim_qk, dim_v;
    attn_layout layout;
    attn_causal causal;
    float scale;
};

/* ---- creation and options ---------------------------------------------- */

static attn_status check_sizes(const int64_t *v, const char *const *names, int n, int64_t min,
                               const char *func)
{
    for (int i = 0; i < n; i++)
        if (v[i] < min)
            return attn_fail(ATTN_ERR_INVALID_ARGUMENT, func, "%s (%lld) is %s", names[i],
                             (long long)v[i], min == 0 ? "negative" : "below 1");
    return ATTN_OK;
}

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
        int64_t elems;
        if (!attn_tensor_elems(shapes[i], 4, sizeof(float), &elems))
            return attn_fail(ATTN_ERR_SIZE_OVERFLOW, func,
                             "%s of %lld×%lld×%lld×%lld floats does not fit in memory", names[i],
                             (long long)shapes[i][0], (long long)shapes[i][1],
                             (long long)shapes[i][2], (long long)shapes[i][3]);
    }
    return ATTN_OK;
}

/* Every value that reaches cblas_sgemm as a size or leading dimension. The
 * heads × dim products are formed with overflow checks: with batch = 0 the
 * tensor-size check above does not bound them. */
static attn_status check_blas_range(const attn_sdpa *s, const char *func)
{
    int64_t v[7] = {s->len_kv, s->dim_qk, s->dim_v, 0, 0, 0, 0};
    bool ok = attn_mul_i64(s->heads_q, s->dim_qk, &v[3]) &&
              attn_mul_i64(s->heads_q, s->dim_v, &v[4]) &&
              attn_mul_i64(s->heads_kv, s->dim_qk, &v[5]) &&
              attn_mul_i64(s->heads_kv, s->dim_v, &v[6]);
    static const char *names[7] = {"len_kv", "dim_qk", "dim_v", "heads_q × dim_qk",
                                   "heads_q × dim_v", "heads_kv × dim_qk", "heads_kv × dim_v"};
    if (!ok)
        return attn_fail(ATTN_ERR_UNSUPPORTED, func,
                         "heads × dim exceeds the BLAS integer range (%lld)", ATTN_BLAS_INT_MAX);
    for (int i = 0; i < 7; i++)
        if (v[i] > ATTN_BLAS_INT_MAX)
            return attn_fail(ATTN_ERR_UNSUPPORTED, func,
                             "%s (%lld) exceeds the BLAS integer range (%lld)", names[i],
                             (long long)v[i], ATTN_BLAS_INT_MAX);
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
    if ((st = check_sizes(counts, count_names, 3, 0, f)) != ATTN_OK ||
        (st = check_sizes(sizes, size_names, 4, 1, f)) != ATTN_OK)
        return st;
    if (heads_q % heads_kv != 0)
        return attn_fail(ATTN_ERR_SHAPE_MISMATCH, f,
                         "heads_q (%lld) is not a multiple of heads_kv (%lld)",
                         (long long)heads_q, (long long)heads_kv);

    attn_sdpa s = {.batch = batch, .heads_q = heads_q, .heads_kv = heads_kv, .len_q = len_q,
                   .len_kv = len_kv, .dim_qk = dim_qk, .dim_v = dim_v,
                   .layout = ATTN_LAYOUT_BHSD, .causal = ATTN_CAUSAL_NONE,
                   .scale = (float)(1.0 / sqrt((double)dim_qk))};
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
    if (causal != ATTN_CAUSAL_NONE && causal != ATTN_CAUSAL_TOP_LEFT &&
        causal != ATTN_CAUSAL_BOTTOM_RIGHT)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, __func__, "causal (%d) is not an attn_causal",
                         (int)causal);
    op->causal = causal;
    return ATTN_OK;
}

/* ---- forward ------------------------------------------------------------ */

/* Where head (b, h) of a tensor starts and how far apart its rows are. */
typedef struct strided {
    const float *base;
    int64_t heads, len, dim;
    bool bshd;
} strided;

static int64_t head_offset(const strided *t, int64_t b, int64_t h)
{
    return t->bshd ? (b * t->len * t->heads + h) * t->dim : (b * t->heads + h) * t->len * t->dim;
}

static int64_t row_stride(const strided *t)
{
    return t->bshd ? t->heads * t->dim : t->dim;
}

typedef struct forward_job {
    const attn_sdpa *op;
    const attn_mask *mask;
    attn_context *ctx;
    strided q, k, v, out;
    float *out_base, *weights, *lse;
    int64_t blocks_per_head;
} forward_job;

/* Keys j < the returned value are allowed by the causal rule for query i. */
static int64_t causal_end(const attn_sdpa *op, int64_t i)
{
    int64_t end;
    switch (op->causal) {
    case ATTN_CAUSAL_TOP_LEFT:     end = i + 1; break;
    case ATTN_CAUSAL_BOTTOM_RIGHT: end = i + 1 + op->len_kv - op->len_q; break;
    default:                       return op->len_kv;
    }
    return end < 0 ? 0 : end > op->len_kv ? op->len_kv : end;
}

/* Keys j < the returned value may be visible for query i of batch row b. */
static int64_t row_end(const forward_job *job, int64_t b, int64_t i)
{
    int64_t end = causal_end(job->op, i);
    int64_t lim = attn_mask_kv_limit(job->mask, b, i, job->op->len_kv);
    return lim < end ? lim : end;
}

/* The number of keys any row in [i0, i1) may see: the GEMMs stop there. */
static int64_t block_keys(const forward_job *job, int64_t b, int64_t i0, int64_t i1)
{
    int64_t n = 0;
    for (int64_t i = i0; i < i1 && n < job->op->len_kv; i++) {
        int64_t end = row_end(job, b, i);
        n = end > n ? end : n;
    }
    return n;
}

static void zero_rows(float *base, int64_t rows, int64_t stride, int64_t cols)
{
    for (int64_t r = 0; r < rows; r++)
        memset(base + r * stride, 0, (size_t)cols * sizeof(float));
}

/* Softmax of each row of the block (logits in scratch, n keys) and the
 * optional weights and lse outputs. */
static void softmax_block(const forward_job *job, float *s, int64_t b, int64_t h, int64_t i0,
                          int64_t rows, int64_t n)
{
    const attn_sdpa *op = job->op;
    const attn_mask *mask = job->mask;
    int64_t bh = b * op->heads_q + h;
    for (int64_t r = 0; r < rows; r++) {
        int64_t i = i0 + r;
        float *row = s + r * n;
        attn_row_mask m = {
            .visible_end = row_end(job, b, i),
            .keep = mask ? attn_mask_row(&mask->keep, b, h, i, sizeof(uint8_t)) : NULL,
            .bias = mask ? attn_mask_row(&mask->bias, b, h, i, sizeof(float)) : NULL,
        };
        float lse = attn_softmax_row(row, n, &m);
        if (job->lse)
            job->lse[bh * op->len_q + i] = lse;
        if (job->weights) {
            float *w = job->weights + (bh * op->len_q + i) * op->len_kv;
            memcpy(w, row, (size_t)n * sizeof(float));
            memset(w + n, 0, (size_t)(op->len_kv - n) * sizeof(float));
        }
    }
}

static void forward_item(void *arg, int64_t item, int worker)
{
    const forward_job *job = arg;
    const attn_sdpa *op = job->op;
    int64_t block = item % job->blocks_per_head;
    int64_t bh = item / job->blocks_per_head;
    int64_t b = bh / op->heads_q, h = bh % op->heads_q;
    int64_t g = h / (op->heads_q / op->heads_kv);
    int64_t i0 = block * ATTN_BLOCK_Q;
    int64_t rows = op->len_q - i0 < ATTN_BLOCK_Q ? op->len_q - i0 : ATTN_BLOCK_Q;

    const float *q = job->q.base + head_offset(&job->q, b, h) + i0 * row_stride(&job->q);
    const float *k = job->k.base + head_offset(&job->k, b, g);
    const float *v = job->v.base + head_offset(&job->v, b, g);
    float *out = job->out_base + head_offset(&job->out, b, h) + i0 * row_stride(&job->out);
    int64_t n = block_keys(job, b, i0, i0 + rows);
    float *s = job->ctx->scratch[worker];

    if (n > 0) {
        attn_gemm_nt(rows, n, op->dim_qk, op->scale, q, row_stride(&job->q), k,
                     row_stride(&job->k), 0.0f, s, n);
    }
    softmax_block(job, s, b, h, i0, rows, n);
    if (n > 0)
        attn_gemm_nn(rows, op->dim_v, n, 1.0f, s, n, v, row_stride(&job->v), 0.0f, out,
                     row_stride(&job->out));
    else
        zero_rows(out, rows, row_stride(&job->out), op->dim_v);
}

/* A data pointer may be NULL only when its tensor is empty. */
static attn_status require_data(const void *p, int64_t elems, const char *name, const char *f)
{
    if (!p && elems > 0)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "%s is NULL", name);
    return ATTN_OK;
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
    if ((st = require_data(q, nq * op->dim_qk, "q", f)) != ATTN_OK ||
        (st = require_data(k, nkv * op->dim_qk, "k", f)) != ATTN_OK ||
        (st = require_data(v, nkv * op->dim_v, "v", f)) != ATTN_OK ||
        (st = require_data(out, nq * op->dim_v, "out", f)) != ATTN_OK)
        return st;
    if (weights) {
        const int64_t dims[4] = {op->batch, op->heads_q, op->len_q, op->len_kv};
        int64_t elems;
        if (!attn_tensor_elems(dims, 4, sizeof(float), &elems))
            return attn_fail(ATTN_ERR_SIZE_OVERFLOW, f,
                             "weights of %lld×%lld×%lld×%lld floats does not fit in memory",
                             (long long)dims[0], (long long)dims[1], (long long)dims[2],
                             (long long)dims[3]);
    }
    const attn_mask_dims md = {op->batch, op->heads_q, op->len_q, op->len_kv};
    return attn_mask_validate(mask, &md, f);
}

attn_status attn_sdpa_forward(attn_context *ctx, const attn_sdpa *op, const float *q,
                              const float *k, const float *v, const attn_mask *mask, float *out,
                              float *weights, float *lse)
{
    static const char *f = "attn_sdpa_forward";
    attn_status st = validate_forward(ctx, op, q, k, v, mask, out, weights, f);
    if (st != ATTN_OK)
        return st;

    int64_t blocks = (op->len_q + ATTN_BLOCK_Q - 1) / ATTN_BLOCK_Q;
    int64_t items = op->batch * op->heads_q * blocks;
    if (items == 0)
        return ATTN_OK;
    int64_t block_rows = op->len_q < ATTN_BLOCK_Q ? op->len_q : ATTN_BLOCK_Q;
    int threads = attn_context_threads(ctx, items);
    if ((st = attn_context_reserve(ctx, f, threads, (size_t)(block_rows * op->len_kv))) !=
        ATTN_OK)
        return st;

    bool bshd = op->layout == ATTN_LAYOUT_BSHD;
    forward_job job = {
        .op = op, .mask = mask, .ctx = ctx,
        .q = {q, op->heads_q, op->len_q, op->dim_qk, bshd},
        .k = {k, op->heads_kv, op->len_kv, op->dim_qk, bshd},
        .v = {v, op->heads_kv, op->len_kv, op->dim_v, bshd},
        .out = {out, op->heads_q, op->len_q, op->dim_v, bshd},
        .out_base = out, .weights = weights, .lse = lse,
        .blocks_per_head = blocks,
    };
    attn_context_run(ctx, threads, forward_item, &job, items);
    return ATTN_OK;
}
