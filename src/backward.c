/*
 * backward.c — gradients of scaled dot-product attention: the
 * FlashAttention-2 backward (Dao 2023, "FlashAttention-2", Algorithm 2).
 *
 * The forward kept only out and the log-sum-exp of each row, so each block's
 * probabilities are recomputed from the logits:
 *
 *   S  = scale · Q_blk K[0:n]ᵀ                   (the forward's logits call)
 *   P  = exp(S − lse), masked as the forward     (softmax.c)
 *   dV[0:n] += Pᵀ · dO_blk                        cblas_sgemm
 *   dP = dO_blk · V[0:n]ᵀ                         cblas_sgemm
 *   dS = P ∘ (dP − D),  D = rowsum(dO_blk ∘ O_blk)
 *   dQ_blk  = scale · dS · K[0:n]                 cblas_sgemm
 *   dK[0:n] += scale · dSᵀ · Q_blk                cblas_sgemm
 *
 * with the forward's blocks of query rows and the keys [0, n) each block can
 * see (attend.c): the backward never reads a key the forward did not, and
 * its logits are the forward's bits.
 *
 * Why the work is split by (batch row, kv head), and not by block of keys
 * as in Algorithm 2: dK and dV sum over every query block and every query
 * head of a GQA group, and dQ over every key. An item that owns one kv head
 * does all of its group's query blocks in a fixed order, so it writes dK and
 * dV alone and each block's dQ in one product over all of its keys: no
 * atomics, no partial sums to merge, the same bits for any thread count, and
 * the five products the algorithm needs, no more. The cost is parallelism:
 * batch × heads_kv items (a single-sequence MQA backward runs on one thread
 * of the pool; the BLAS-threaded schedule spreads its GEMMs). Memory: two
 * blocks of block_rows × len_kv floats per thread (P and dP/dS; a third for
 * softcap's factors) and the block's D; never len_q × len_kv.
 *
 * A block computes only the keys [j0, j1) its rows may see (attend.c), so
 * with a sliding window it reads K and V rows j0.. only and adds to those
 * rows of dK and dV.
 */
#include <string.h>

#include "attn_internal.h"
#include "block_rows.h"

typedef struct backward_job {
    const attn_backward_args *ba;
    attn_context *ctx;
    int64_t block_q, blocks;
    size_t block_floats;  /* block_rows × len_kv: where dS starts in scratch */
    int threads;          /* element-wise sharing (BLAS-threaded schedule) */
} backward_job;

/* One block of query rows of (b, h) against keys [j0, j0 + n), in one
 * thread's scratch. */
typedef struct block_state {
    const backward_job *job;
    int64_t b, h, g, i0, rows, j0, n;
    float *p, *ds, *d;    /* [rows, n], [rows, n], [rows] */
    float *cap;           /* NULL, or [rows, n]: softcap's 1 − tanh² */
} block_state;

static const float *row_ptr(const float *base, const attn_view *view, int64_t b, int64_t h,
                            int64_t i)
{
    return base + attn_view_offset(view, b, h) + i * attn_view_stride(view);
}

static float dot(const float *x, const float *y, int64_t n)
{
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (int64_t c = 0; c < n; c++)
        sum += x[c] * y[c];
    return sum;
}

/* Rows [r0, r1) of the block: P from the logits and lse, and D. With
 * dropout, also the dropped weights P ∘ Z (Z = keep / (1 − p), the
 * forward's) in the dS buffer, which dV's product reads before dP's
 * overwrites it. */
static void probabilities_part(const block_state *st, int64_t r0, int64_t r1)
{
    const attn_backward_args *ba = st->job->ba;
    const attn_attend_args *a = ba->fwd;
    int64_t bh = st->b * a->heads_q + st->h;
    for (int64_t r = r0; r < r1; r++) {
        int64_t i = st->i0 + r;
        attn_row_mask m = attn_attend_row_mask(a, st->b, st->h, i, st->j0);
        m.softcap_grad = st->cap ? st->cap + r * st->n : NULL;
        float *p = st->p + r * st->n;
        attn_softmax_row_from_lse(p, st->n, &m, ba->lse[bh * a->len_q + i]);
        if (a->dropout) {
            memcpy(st->ds + r * st->n, p, (size_t)st->n * sizeof *p);
            attn_dropout_apply(a->dropout, bh, i, st->j0, st->ds + r * st->n, st->n);
        }
        st->d[r] = dot(row_ptr(ba->d_out, &a->out_view, st->b, st->h, i),
                       row_ptr(a->out, &a->out_view, st->b, st->h, i), a->out_view.dim);
    }
}

/* Rows [r0, r1): dS = P ∘ (dP − D) over dP in place, where with dropout dP
 * is first ∂L/∂(P∘Z) ∘ Z (Srivastava et al. 2014; D = rowsum(dO ∘ O) is
 * unchanged, O being the dropped output). With a softcap, dS is the
 * gradient of the capped logit: times 1 − tanh²(s/cap) for the raw one
 * (FlashAttention-2's softcap backward). A weight of 0 (masked key, empty
 * row) gives exactly 0, not 0 · (dP − D): dP is NaN where a masked value
 * row holds NaN, and that must not reach dQ or dK. */
static void score_gradient_part(const block_state *st, int64_t r0, int64_t r1)
{
    const attn_attend_args *a = st->job->ba->fwd;
    int64_t bh = st->b * a->heads_q + st->h;
    for (int64_t r = r0; r < r1; r++) {
        const float *p = st->p + r * st->n;
        float *ds = st->ds + r * st->n;
        float d = st->d[r];
        if (a->dropout)
            attn_dropout_apply(a->dropout, bh, st->i0 + r, st->j0, ds, st->n);
        if (st->cap) {
            const float *cap = st->cap + r * st->n;
#pragma omp simd
            for (int64_t j = 0; j < st->n; j++)
                ds[j] = p[j] == 0.0f ? 0.0f : p[j] * (ds[j] - d) * cap[j];
        } else {
#pragma omp simd
            for (int64_t j = 0; j < st->n; j++)
                ds[j] = p[j] == 0.0f ? 0.0f : p[j] * (ds[j] - d);
        }
    }
}

typedef void (*part_fn)(const block_state *st, int64_t r0, int64_t r1);

typedef struct part_share {
    const block_state *st;
    part_fn fn;
    int64_t rows_per_part;
} part_share;

static void run_part(void *arg, int64_t part, int worker)
{
    (void)worker;
    const part_share *sh = arg;
    int64_t r0 = part * sh->rows_per_part;
    int64_t r1 = r0 + sh->rows_per_part < sh->st->rows ? r0 + sh->rows_per_part : sh->st->rows;
    sh->fn(sh->st, r0, r1);
}

/* fn over the block's rows: on the calling thread, or shared over the
 * context's threads when the GEMMs are the BLAS's to thread and the block
 * is large. Rows are independent, so the bits do not depend on the split. */
static void for_rows(const block_state *st, part_fn fn)
{
    const backward_job *job = st->job;
    int share = st->rows * st->n >= ATTN_SHARED_SOFTMAX_MIN ? job->threads : 1;
    if (share <= 1) {
        fn(st, 0, st->rows);
        return;
    }
    part_share sh = {st, fn, attn_ceil_div(st->rows, share)};
    attn_context_run(job->ctx, share, run_part, &sh, attn_ceil_div(st->rows, sh.rows_per_part));
}

static void zero_rows(float *base, int64_t rows, int64_t stride, int64_t cols)
{
    for (int64_t r = 0; r < rows; r++)
        memset(base + r * stride, 0, (size_t)cols * sizeof(float));
}

/* The five products of one block (fewer when a gradient is not wanted). */
static void backward_block(block_state *st)
{
    const attn_backward_args *ba = st->job->ba;
    const attn_attend_args *a = ba->fwd;
    const attn_qk *qk = ba->qk;
    int64_t ldq = attn_view_stride(&qk->q_view), ldk = attn_view_stride(&qk->k_view);
    int64_t ldv = attn_view_stride(&a->v_view), ldo = attn_view_stride(&a->out_view);
    int64_t dim_qk = qk->q_view.dim, dim_v = a->v_view.dim;
    const float *d_out = row_ptr(ba->d_out, &a->out_view, st->b, st->h, st->i0);
    if (st->n == 0) {  /* no row sees a key: zero dQ, nothing for dK, dV */
        if (ba->d_q)
            zero_rows(ba->d_q + (row_ptr(qk->q, &qk->q_view, st->b, st->h, st->i0) - qk->q),
                      st->rows, ldq, dim_qk);
        return;
    }
    a->logits(a->logits_arg, st->b, st->h, st->i0, st->rows, st->j0, st->n, st->p);
    for_rows(st, probabilities_part);
    if (ba->d_v)  /* dV += (P ∘ Z)ᵀ dO: the dropped weights, in ds with dropout */
        attn_gemm_tn(st->n, dim_v, st->rows, 1.0f, a->dropout ? st->ds : st->p, st->n, d_out,
                     ldo, 1.0f,
                     ba->d_v + attn_view_offset(&a->v_view, st->b, st->g) + st->j0 * ldv, ldv);
    if (!ba->d_q && !ba->d_k)
        return;
    const float *v = a->v + attn_view_offset(&a->v_view, st->b, st->g) + st->j0 * ldv;
    attn_gemm_nt(st->rows, st->n, dim_v, 1.0f, d_out, ldo, v, ldv, 0.0f, st->ds, st->n);
    for_rows(st, score_gradient_part);
    const float *q = row_ptr(qk->q, &qk->q_view, st->b, st->h, st->i0);
    const float *k = qk->k + attn_view_offset(&qk->k_view, st->b, st->g) + st->j0 * ldk;
    if (ba->d_q)
        attn_gemm_nn(st->rows, dim_qk, st->n, qk->scale, st->ds, st->n, k, ldk, 0.0f,
                     ba->d_q + (q - qk->q), ldq);
    if (ba->d_k)
        attn_gemm_tn(st->n, dim_qk, st->rows, qk->scale, st->ds, st->n, q, ldq, 1.0f,
                     ba->d_k + attn_view_offset(&qk->k_view, st->b, st->g) + st->j0 * ldk, ldk);
}

static bool softcapped(const attn_attend_args *a)
{
    return a->mods && a->mods->softcap > 0.0f;
}

/* Item = (batch row b, kv head g): dK and dV of that head from zero, then
 * every block of every query head of its group, in order. */
static void backward_group(const backward_job *job, int64_t item, float *scratch)
{
    const attn_backward_args *ba = job->ba;
    const attn_attend_args *a = ba->fwd;
    const attn_qk *qk = ba->qk;
    int64_t b = item / a->heads_kv, g = item % a->heads_kv;
    if (ba->d_k)
        zero_rows(ba->d_k + attn_view_offset(&qk->k_view, b, g), a->len_kv,
                  attn_view_stride(&qk->k_view), qk->k_view.dim);
    if (ba->d_v)
        zero_rows(ba->d_v + attn_view_offset(&a->v_view, b, g), a->len_kv,
                  attn_view_stride(&a->v_view), a->v_view.dim);
    int64_t group = a->heads_q / a->heads_kv;
    for (int64_t h = g * group; h < (g + 1) * group; h++) {
        for (int64_t blk = 0; blk < job->blocks; blk++) {
            block_state st = {.job = job, .b = b, .h = h, .g = g, .i0 = blk * job->block_q};
            st.rows = a->len_q - st.i0 < job->block_q ? a->len_q - st.i0 : job->block_q;
            attn_key_range keys = attn_attend_block_keys(a, b, st.i0, st.i0 + st.rows);
            st.j0 = keys.begin;
            st.n = keys.end - keys.begin;
            st.p = scratch;
            st.ds = scratch + job->block_floats;
            st.d = scratch + 2 * job->block_floats;
            if (softcapped(a))
                st.cap = st.d + job->block_q;
            backward_block(&st);
        }
    }
}

static void backward_item(void *arg, int64_t item, int worker)
{
    const backward_job *job = arg;
    backward_group(job, item, job->ctx->scratch[worker]);
}

/* How a backward of these shapes runs: rows per block, the scratch each
 * thread needs, and on how many threads. */
typedef struct backward_plan {
    int64_t block_q, block_rows;
    size_t block_floats, floats;
    bool blas_threaded;
    int threads;
} backward_plan;

static backward_plan plan_of(attn_context *ctx, const attn_attend_args *a)
{
    backward_plan p;
    p.block_q = attn_attend_block_rows(a);
    p.block_rows = a->len_q < p.block_q ? a->len_q : p.block_q;
    p.block_floats = (size_t)(p.block_rows * a->len_kv);
    /* P, dS, D, and softcap's factors when it is on. */
    p.floats = (softcapped(a) ? 3 : 2) * p.block_floats + (size_t)p.block_q;
    /* As the forward: the BLAS-threaded schedule runs the items on the
     * calling thread and shares each block's element-wise rows; the others
     * run one item per thread. */
    p.blas_threaded = attn_context_schedule(ctx) == ATTN_SCHEDULE_BLAS_THREADS;
    p.threads = attn_context_threads(ctx, p.blas_threaded ? p.block_rows
                                                          : a->batch * a->heads_kv);
    return p;
}

static attn_status reserve(attn_context *ctx, const backward_plan *p, const char *func)
{
    attn_status st = p->blas_threaded ? attn_context_reserve(ctx, func, 1, p->floats)
                                      : attn_context_reserve(ctx, func, p->threads, p->floats);
    if (st == ATTN_OK && p->blas_threaded)
        st = attn_context_reserve(ctx, func, p->threads, 0);
    return st;
}

/* With no query and no key there is nothing to do, and batch × heads_kv,
 * unchecked for empty tensors, may not fit. */
static bool nothing_to_do(const attn_attend_args *a)
{
    return (a->len_q == 0 && a->len_kv == 0) || a->batch * a->heads_kv == 0;
}

attn_status attn_dot_product_backward_reserve(attn_context *ctx, const attn_attend_args *a,
                                              const char *func)
{
    if (nothing_to_do(a))
        return ATTN_OK;
    const backward_plan p = plan_of(ctx, a);
    return reserve(ctx, &p, func);
}

attn_status attn_dot_product_backward(attn_context *ctx, const attn_backward_args *ba,
                                      const char *func)
{
    const attn_attend_args *a = ba->fwd;
    if (nothing_to_do(a) || (!ba->d_q && !ba->d_k && !ba->d_v))
        return ATTN_OK;
    int64_t items = a->batch * a->heads_kv;
    const backward_plan p = plan_of(ctx, a);
    attn_status st = reserve(ctx, &p, func);
    if (st != ATTN_OK)
        return st;
    backward_job job = {.ba = ba, .ctx = ctx, .block_q = p.block_q,
                        .blocks = attn_ceil_div(a->len_q, p.block_q),
                        .block_floats = p.block_floats, .threads = p.blas_threaded ? p.threads : 1};
    if (p.blas_threaded) {
        for (int64_t item = 0; item < items; item++)
            backward_group(&job, item, ctx->scratch[0]);
    } else {
        attn_context_run(ctx, p.threads, backward_item, &job, items);
    }
    return ATTN_OK;
}
