/*
 * attend.c — the attention pooling every layer shares (D2L §10.1–10.3):
 *
 *   weights = masked softmax(logits),   out = weights · V
 *
 * The logits come from a callback (scaled dot product, additive, Gaussian
 * kernel); everything after them is here once. The work is split into items
 * of (batch row, query head, block of query rows). For one item:
 *   S = logits of the block's rows against keys [j0, j1)  per-thread scratch
 *   P = exp(S − row max), masked, and 1/row sum           (softmax.c)
 *   O_blk = diag(1/sum) · P · V[j0:j1]                     cblas_sgemm
 * where [j0, j1) are the keys any row of the block can see (valid length,
 * causal limit, sliding window): blocks never compute keys they cannot use,
 * and keys beyond a batch row's valid length are never read. The masks and
 * the score modifiers (score_modifiers.c) of a row are looked up in one
 * place, attn_attend_row_mask, which the backward uses too. Blocks are 64–256 query rows
 * (block_rows.h). Scratch is block_q × len_kv
 * floats per thread (at most 4 MiB for len_kv ≤ 16384, 64 × len_kv
 * beyond); nothing of size len_q × len_kv is ever allocated.
 */
#include <string.h>

#include "attn_internal.h"
#include "block_rows.h"

int64_t attn_view_offset(const attn_view *t, int64_t b, int64_t h)
{
    return t->bshd ? (b * t->len * t->heads + h) * t->dim : (b * t->heads + h) * t->len * t->dim;
}

int64_t attn_view_stride(const attn_view *t)
{
    return t->bshd ? t->heads * t->dim : t->dim;
}

typedef struct attend_job {
    const attn_attend_args *a;
    attn_context *ctx;
    int64_t blocks_per_head;
    int64_t block_q;  /* query rows per item */
} attend_job;

/* The query's position on the key axis, which the causal rule, the window
 * and ALiBi measure from: i under top-left alignment; i + len_kv − len_q
 * under bottom-right and without causal (FlashAttention's alignment, so
 * that the last query faces the last key). */
static int64_t aligned_position(const attn_attend_args *a, int64_t i)
{
    return a->causal == ATTN_CAUSAL_TOP_LEFT ? i : i + a->len_kv - a->len_q;
}

static int64_t min_i64(int64_t x, int64_t y)
{
    return x < y ? x : y;
}

/* The keys query i of batch row b may see: below its valid length, up to
 * its position when causal, and inside the window [p − left, p + right].
 * The comparisons avoid forming p ± a window that may be near INT64_MAX. */
static attn_key_range row_keys(const attn_attend_args *a, int64_t b, int64_t i)
{
    int64_t p = aligned_position(a, i);
    attn_key_range r = {0, attn_mask_kv_limit(a->mask, b, i, a->len_kv)};
    if (a->causal != ATTN_CAUSAL_NONE)
        r.end = min_i64(r.end, p + 1);
    const attn_score_mods *w = a->mods;
    /* right < len_kv − p: the bound cuts keys (p can be far below 0 without
     * causal when len_q > len_kv); len_kv − p <= len_q cannot overflow. */
    if (w && w->window_right >= 0 && w->window_right < a->len_kv - p)
        r.end = min_i64(r.end, p + w->window_right + 1);
    if (w && w->window_left >= 0 && w->window_left < p)
        r.begin = p - w->window_left;
    if (r.end < r.begin)
        r.end = r.begin;
    return r;
}

attn_row_mask attn_attend_row_mask(const attn_attend_args *a, int64_t b, int64_t h, int64_t i,
                                   int64_t j0)
{
    const attn_mask *mask = a->mask;
    const attn_score_mods *mods = a->mods;
    attn_key_range r = row_keys(a, b, i);
    const uint8_t *keep = mask ? attn_mask_row(&mask->keep, b, h, i, sizeof(uint8_t)) : NULL;
    const float *bias = mask ? attn_mask_row(&mask->bias, b, h, i, sizeof(float)) : NULL;
    return (attn_row_mask){
        .visible_begin = r.begin - j0,
        .visible_end = r.end - j0,
        .keep = keep ? keep + j0 : NULL,
        .bias = bias ? bias + j0 : NULL,
        .softcap = mods ? mods->softcap : 0.0f,
        .alibi_slope = mods && mods->alibi ? mods->alibi[h] : 0.0f,
        .alibi_pos = aligned_position(a, i) - j0,
    };
}

int64_t attn_attend_block_rows(const attn_attend_args *a)
{
    return attn_query_block_rows(a->heads_q, a->len_q, a->len_kv, a->causal != ATTN_CAUSAL_NONE);
}

/* The keys any row in [i0, i1) may see: the logits are computed for them
 * only. Rows that see nothing do not widen the range. */
attn_key_range attn_attend_block_keys(const attn_attend_args *a, int64_t b, int64_t i0,
                                      int64_t i1)
{
    attn_key_range all = {a->len_kv, 0};
    for (int64_t i = i0; i < i1; i++) {
        attn_key_range r = row_keys(a, b, i);
        if (r.begin == r.end)
            continue;
        all.begin = r.begin < all.begin ? r.begin : all.begin;
        all.end = r.end > all.end ? r.end : all.end;
    }
    if (all.end <= all.begin)
        all = (attn_key_range){0, 0};
    return all;
}

static void zero_rows(float *base, int64_t rows, int64_t stride, int64_t cols)
{
    for (int64_t r = 0; r < rows; r++)
        memset(base + r * stride, 0, (size_t)cols * sizeof(float));
}

/* weights[j0 + t] = p[t] · inv_sum for the computed keys, 0 outside them. */
static void write_weights(float *w, const float *p, int64_t j0, int64_t n, int64_t len_kv,
                          float inv_sum)
{
    memset(w, 0, (size_t)j0 * sizeof(float));
    for (int64_t t = 0; t < n; t++)
        w[j0 + t] = p[t] * inv_sum;
    memset(w + j0 + n, 0, (size_t)(len_kv - j0 - n) * sizeof(float));
}

/* Softmax of each row of the block (logits in s, keys [j0, j0 + n)) and the
 * optional weights and lse outputs. The rows stay unnormalised, their 1/sum
 * going to inv_sums: scaling the dim_v outputs of P·V afterwards is cheaper
 * than scaling n probabilities, and `out` is then the same whether or not
 * weights are requested. Rows [r0, r1) of the block. */
static void softmax_rows(const attn_attend_args *a, const attn_block *blk, float *s, int64_t r0,
                         int64_t r1, float *inv_sums)
{
    int64_t n = blk->keys.end - blk->keys.begin;
    for (int64_t r = r0; r < r1; r++) {
        /* Row r: query i0 + r of head h, or query i0 of head h + r. */
        int64_t i = blk->i0 + (blk->head_rows ? 0 : r), h = blk->h + (blk->head_rows ? r : 0);
        int64_t bh = blk->b * a->heads_q + h;
        float *row = s + r * n;
        attn_row_mask m = attn_attend_row_mask(a, blk->b, h, i, blk->keys.begin);
        float lse = attn_softmax_row(row, n, &m, &inv_sums[r]);
        if (a->dropout)
            attn_dropout_apply(a->dropout, bh, i, blk->keys.begin, row, n);
        if (blk->lse)
            blk->lse[r * blk->ld_lse] = lse;
        if (a->weights)
            write_weights(a->weights + (bh * a->len_q + i) * a->len_kv, row, blk->keys.begin, n,
                          a->len_kv, inv_sums[r]);
    }
}

/* out_row *= factor for each of the block's rows. */
static void scale_rows(float *out, int64_t rows, int64_t stride, int64_t cols,
                       const float *factors)
{
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++)
            out[r * stride + c] *= factors[r];
}

/* The item of the regular schedule: (batch row, head, block of query rows),
 * its outputs in out and lse. */
static attn_block locate_item(const attend_job *job, int64_t item)
{
    const attn_attend_args *a = job->a;
    attn_block blk = {0};
    int64_t bh = item / job->blocks_per_head;
    blk.b = bh / a->heads_q;
    blk.h = bh % a->heads_q;
    blk.i0 = item % job->blocks_per_head * job->block_q;
    blk.rows = a->len_q - blk.i0 < job->block_q ? a->len_q - blk.i0 : job->block_q;
    blk.keys = attn_attend_block_keys(a, blk.b, blk.i0, blk.i0 + blk.rows);
    blk.ldo = attn_view_stride(&a->out_view);
    blk.out = a->out + attn_view_offset(&a->out_view, blk.b, blk.h) + blk.i0 * blk.ldo;
    blk.lse = a->lse ? a->lse + bh * a->len_q + blk.i0 : NULL;
    blk.ld_lse = 1;
    return blk;
}

/* out_blk = diag(inv_sums) · P · V[j0 : j0 + n]: the callback's V (paged
 * caches), or a->v read in place. */
static void weighted_values(const attn_attend_args *a, const attn_block *blk, const float *p,
                            const float *inv_sums)
{
    int64_t n = blk->keys.end - blk->keys.begin;
    int64_t g = blk->h / (a->heads_q / a->heads_kv);
    if (a->values) {
        a->values(a->values_arg, blk->b, g, blk->rows, blk->keys.begin, n, p, blk->out,
                  blk->ldo);
    } else {
        int64_t ldv = attn_view_stride(&a->v_view);
        const float *v = a->v + attn_view_offset(&a->v_view, blk->b, g) + blk->keys.begin * ldv;
        if (blk->rows == 1)
            attn_gemv_t(n, a->v_view.dim, 1.0f, v, ldv, p, 0.0f, blk->out);
        else
            attn_gemm_nn(blk->rows, a->v_view.dim, n, 1.0f, p, n, v, ldv, 0.0f, blk->out,
                         blk->ldo);
    }
    scale_rows(blk->out, blk->rows, blk->ldo, a->out_view.dim, inv_sums);
}

void attn_attend_block(const attn_attend_args *a, const attn_block *blk, float *s)
{
    float inv_sums[ATTN_BLOCK_Q_MAX];
    int64_t n = blk->keys.end - blk->keys.begin;
    if (n == 0) {  /* no row sees a key: lse and weights of empty rows, zero outputs */
        softmax_rows(a, blk, s, 0, blk->rows, inv_sums);
        zero_rows(blk->out, blk->rows, blk->ldo, a->out_view.dim);
        return;
    }
    a->logits(a->logits_arg, blk->b, blk->h, blk->i0, blk->rows, blk->keys.begin, n, s);
    softmax_rows(a, blk, s, 0, blk->rows, inv_sums);
    weighted_values(a, blk, s, inv_sums);
}

/* The item schedule: one thread does all of an item, with a single-threaded
 * BLAS inside. */
static void attend_item(void *arg, int64_t item, int worker)
{
    const attend_job *job = arg;
    attn_block blk = locate_item(job, item);
    attn_attend_block(job->a, &blk, job->ctx->scratch[worker]);
}

/* The BLAS-threaded schedule (context.c says when): the calling thread
 * takes the items one after the other and makes their GEMMs, which the BLAS
 * library spreads over its own threads; between them, the block's softmax
 * rows are shared out over libattn's threads (d64 L2048 on 2 cores: 62 ms
 * instead of 70 with the softmax on the calling thread alone in one quiet
 * run, no clear difference in others; the best setting, one BLAS thread,
 * 53-55). Same GEMMs and the same softmax per row as attend_item, so the
 * same bits as the item schedule for the same BLAS.
 *
 * A block's softmax is shared out only from ATTN_SHARED_SOFTMAX_MIN logits
 * on (attn_internal.h says why). */

typedef struct softmax_share {
    const attn_attend_args *a;
    const attn_block *blk;
    float *s;
    float *inv_sums;
    int64_t rows_per_part;
} softmax_share;

static void softmax_part(void *arg, int64_t part, int worker)
{
    (void)worker;
    const softmax_share *sh = arg;
    int64_t r0 = part * sh->rows_per_part;
    int64_t r1 = r0 + sh->rows_per_part < sh->blk->rows ? r0 + sh->rows_per_part : sh->blk->rows;
    softmax_rows(sh->a, sh->blk, sh->s, r0, r1, sh->inv_sums);
}

static void attend_blas_threaded(attn_context *ctx, const attend_job *job, int threads,
                                 int64_t items)
{
    const attn_attend_args *a = job->a;
    float *s = ctx->scratch[0];
    float inv_sums[ATTN_BLOCK_Q_MAX];
    for (int64_t item = 0; item < items; item++) {
        attn_block blk = locate_item(job, item);
        int64_t n = blk.keys.end - blk.keys.begin;
        if (n == 0) {
            attn_attend_block(a, &blk, s);
            continue;
        }
        a->logits(a->logits_arg, blk.b, blk.h, blk.i0, blk.rows, blk.keys.begin, n, s);
        int share = blk.rows * n >= ATTN_SHARED_SOFTMAX_MIN ? threads : 1;
        softmax_share sh = {a, &blk, s, inv_sums, attn_ceil_div(blk.rows, share)};
        attn_context_run(ctx, share, softmax_part, &sh, attn_ceil_div(blk.rows, sh.rows_per_part));
        weighted_values(a, &blk, s, inv_sums);
    }
}

attn_status attn_attend(attn_context *ctx, const attn_attend_args *a, const char *func)
{
    int64_t block_q = attn_attend_block_rows(a);
    int64_t blocks = attn_ceil_div(a->len_q, block_q);
    int64_t items = a->batch * blocks * a->heads_q;  /* batch × blocks fits: blocks <= len_q */
    if (items == 0)
        return ATTN_OK;
    int64_t block_rows = a->len_q < block_q ? a->len_q : block_q;
    /* The BLAS-threaded schedule has one block of logits at a time (the
     * calling thread's scratch) and shares its rows out; the item schedule
     * one block per thread. */
    bool blas_threaded = attn_context_schedule(ctx) == ATTN_SCHEDULE_BLAS_THREADS;
    int threads = attn_context_threads(ctx, blas_threaded ? block_rows : items);
    size_t block_floats = (size_t)(block_rows * a->len_kv);
    attn_status st = blas_threaded
        ? attn_context_reserve(ctx, func, 1, block_floats)
        : attn_context_reserve(ctx, func, threads, block_floats);
    if (st == ATTN_OK && blas_threaded)
        st = attn_context_reserve(ctx, func, threads, 0);
    if (st != ATTN_OK)
        return st;
    attend_job job = {.a = a, .ctx = ctx, .blocks_per_head = blocks, .block_q = block_q};
    if (blas_threaded)
        attend_blas_threaded(ctx, &job, threads, items);
    else
        attn_context_run(ctx, threads, attend_item, &job, items);
    return ATTN_OK;
}
