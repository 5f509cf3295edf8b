/*
 * mha_cached.c — one decoding (or chunked prefill) step of the multi-head
 * layer with a KV cache: the new tokens of several sequences are projected
 * once (three cblas_sgemm over all their rows), their Q and K rotated by
 * the layer's RoPE at the positions after each sequence's cached length,
 * K and V appended to the cache, the queries attended against the cache
 * (attend_cached.c) and the result projected (one more cblas_sgemm).
 *
 * Everything that can fail is checked or reserved first — the sequences,
 * the free pages for every sequence's new tokens together, the page
 * tables, the workspace, the threads and scratch — so that a failure
 * leaves the cache and out as they were.
 */
#include <string.h>

#include "attn_internal.h"

/* Every argument check: the layer, the cache's shape, the sequences
 * (open, each at most once), the tensors. */
static attn_status check_step(attn_context *ctx, const attn_mha *m, const attn_kv_cache *cache,
                              int64_t n_seqs, const int64_t *seqs, const int64_t *cu_q,
                              const float *query, const float *out, const char *f)
{
    if (!ctx)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "ctx is NULL");
    if (!m)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "mha is NULL");
    if (!cache)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "cache is NULL");
    attn_status st = attn_mha_check_weights_set(m, f);
    if (st != ATTN_OK)
        return st;
    if (m->kdim != m->embed_dim || m->vdim != m->embed_dim)
        return attn_fail(ATTN_ERR_SHAPE_MISMATCH, f,
                         "kdim (%lld) and vdim (%lld) must be embed_dim (%lld): the cached step "
                         "is self-attention", (long long)m->kdim, (long long)m->vdim,
                         (long long)m->embed_dim);
    if ((st = attn_cached_check_queries(cache, n_seqs, seqs, cu_q, f)) != ATTN_OK)
        return st;
    for (int64_t s = 0; s < n_seqs; s++)
        for (int64_t t = 0; t < s; t++)
            if (seqs[t] == seqs[s])
                return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f,
                                 "sequence %lld is listed twice (seqs[%lld] and seqs[%lld])",
                                 (long long)seqs[s], (long long)t, (long long)s);
    int64_t total_q = n_seqs > 0 ? cu_q[n_seqs] : 0;
    const int64_t dims[2] = {total_q, m->embed_dim};
    if ((st = attn_check_tensor(dims, 2, "query", f)) != ATTN_OK ||
        (st = attn_check_blas(total_q, "total_q", f)) != ATTN_OK ||
        (st = attn_check_data(query, total_q * m->embed_dim, "query", f)) != ATTN_OK)
        return st;
    return attn_cached_check_tensors(cache, m->num_kv_heads, m->head_dim, m->head_dim, total_q,
                                     m->num_heads, query, out, f);
}

/* The new tokens fit: the free pages cover every sequence's need at once,
 * and RoPE tables (if any) cover their positions. */
/* The partly filled last page of s that an append of n tokens writes into,
 * or -1. */
static int64_t page_written(const attn_kv_cache *cache, const attn_kv_seq *s, int64_t n)
{
    return n > 0 && s->len % cache->page_size != 0 ? s->pages[s->n_pages - 1] : -1;
}

/* Free pages the appends of all the sequences take, in list order, as
 * attn_kv_cache_write makes them: new pages, and a copy for each sequence
 * that writes into a shared page while another holder still shares it
 * (of r holders of a page that all write, the first r − 1 copy and the
 * last finds the page its own). */
static int64_t pages_needed(const attn_kv_cache *cache, int64_t n_seqs, const int64_t *seqs,
                            const int64_t *cu_q)
{
    int64_t needed = 0;
    for (int64_t s = 0; s < n_seqs; s++) {
        const attn_kv_seq *q = &cache->seqs[seqs[s]];
        int64_t n = cu_q[s + 1] - cu_q[s], page = page_written(cache, q, n), before = 0;
        needed += (q->len + n + cache->page_size - 1) / cache->page_size - q->n_pages;
        for (int64_t t = 0; page >= 0 && t < s; t++)
            before += page_written(cache, &cache->seqs[seqs[t]], cu_q[t + 1] - cu_q[t]) == page;
        if (page >= 0 && cache->refs[page] - before > 1)
            needed++;
    }
    return needed;
}

static attn_status check_room(const attn_mha *m, const attn_kv_cache *cache, int64_t n_seqs,
                              const int64_t *seqs, const int64_t *cu_q, const char *f)
{
    for (int64_t s = 0; s < n_seqs; s++) {
        const attn_kv_seq *q = &cache->seqs[seqs[s]];
        int64_t n = cu_q[s + 1] - cu_q[s];
        if (n > INT64_MAX / 2 - q->len)
            return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f,
                             "sequence %lld's length would overflow", (long long)seqs[s]);
        attn_status st;
        if (m->rope &&
            (st = attn_rope_check_positions(m->rope, 1, n, NULL, q->len, f)) != ATTN_OK)
            return st;
    }
    return attn_kv_cache_check_room(cache, n_seqs > 0 ? cu_q[n_seqs] : 0,
                                    pages_needed(cache, n_seqs, seqs, cu_q), f);
}

typedef attn_mha_step_buffers step_buffers;

static attn_status reserve_buffers(attn_context *ctx, const attn_mha *m, int64_t total_q,
                                   size_t partial_floats, step_buffers *b, const char *f)
{
    size_t nq = (size_t)total_q, e = (size_t)m->embed_dim, kv = (size_t)m->kv_dim, floats;
    if (__builtin_add_overflow(2 * nq * e + 2 * nq * kv, partial_floats, &floats))
        return attn_fail(ATTN_ERR_SIZE_OVERFLOW, f, "the step's buffers do not fit in memory");
    float *ws;
    attn_status st = attn_context_workspace(ctx, f, floats, &ws);
    if (st != ATTN_OK)
        return st;
    b->qp = ws;
    b->kp = b->qp + nq * e;
    b->vp = b->kp + nq * kv;
    b->ap = b->vp + nq * kv;
    b->partials = b->ap + nq * e;
    return ATTN_OK;
}

/* Each sequence's page table, and the RoPE's scratch for its rows. */
static attn_status reserve_tables_and_rope(attn_context *ctx, const attn_mha *m,
                                           attn_kv_cache *cache, int64_t n_seqs,
                                           const int64_t *seqs, const int64_t *cu_q,
                                           const char *f)
{
    for (int64_t s = 0; s < n_seqs; s++) {
        int64_t n = cu_q[s + 1] - cu_q[s];
        attn_status st = attn_kv_cache_reserve_table(cache, seqs[s], n, f);
        if (st == ATTN_OK && m->rope) {
            const attn_mha_views v = attn_mha_attention_views(m, n, n);
            if ((st = attn_rope_reserve(ctx, m->rope, v.q, 1, f)) == ATTN_OK)
                st = attn_rope_reserve(ctx, m->rope, v.kv, 1, f);
        }
        if (st != ATTN_OK)
            return st;
    }
    return ATTN_OK;
}

/* RoPE on each sequence's new rows of Q and K, at len, len + 1, ... */
static void rotate_new_tokens(attn_context *ctx, const attn_mha *m, const attn_kv_cache *cache,
                              int64_t n_seqs, const int64_t *seqs, const int64_t *cu_q,
                              const step_buffers *b, const char *f)
{
    if (!m->rope)
        return;
    for (int64_t s = 0; s < n_seqs; s++) {
        int64_t n = cu_q[s + 1] - cu_q[s], len = cache->seqs[seqs[s]].len;
        const attn_mha_views v = attn_mha_attention_views(m, n, n);
        (void)attn_rope_run(ctx, m->rope, v.q, 1, b->qp + cu_q[s] * m->embed_dim, NULL, len, 0,
                            f);
        (void)attn_rope_run(ctx, m->rope, v.kv, 1, b->kp + cu_q[s] * m->kv_dim, NULL, len, 0,
                            f);
    }
}

attn_status attn_mha_step_prepare(attn_context *ctx, const attn_mha *mha, attn_kv_cache *cache,
                                  int64_t n_seqs, const int64_t *seqs, const int64_t *cu_q,
                                  const float *query, const float *out, size_t extra_floats,
                                  attn_mha_step *step, float **extra, const char *f)
{
    *step = (attn_mha_step){0};
    attn_status st = check_step(ctx, mha, cache, n_seqs, seqs, cu_q, query, out, f);
    if (st == ATTN_OK)
        st = check_room(mha, cache, n_seqs, seqs, cu_q, f);
    if (st != ATTN_OK)
        return st;
    int64_t total_q = n_seqs > 0 ? cu_q[n_seqs] : 0;
    int64_t *lens = attn_alloc((size_t)(n_seqs > 0 ? n_seqs : 1) * sizeof *lens);
    if (!lens)
        return attn_fail(ATTN_ERR_OUT_OF_MEMORY, f, "cannot allocate %lld lengths",
                         (long long)n_seqs);
    for (int64_t s = 0; s < n_seqs; s++)  /* the lengths once the new tokens are in */
        lens[s] = cache->seqs[seqs[s]].len + cu_q[s + 1] - cu_q[s];

    const attn_mha_views views = attn_mha_attention_views(mha, 0, 0);
    step->mha = mha;
    step->cache = cache;
    step->lens = lens;
    step->threads = attn_context_threads(ctx, attn_linear_items(total_q));
    step->call = (attn_cached_call){.ctx = ctx, .cache = cache, .n_seqs = n_seqs, .seqs = seqs,
                                    .cu_q = cu_q, .heads_q = mha->num_heads,
                                    .heads_kv = mha->num_kv_heads, .dim_qk = mha->head_dim,
                                    .dim_v = mha->head_dim, .scale = views.scale,
                                    .mods = attn_mha_mods(mha)};
    step_buffers *b = &step->buf;
    size_t partials;
    if ((st = attn_cached_plan_make(ctx, &step->call, lens, &step->plan, f)) != ATTN_OK)
        goto fail;
    if (__builtin_add_overflow(attn_cached_plan_partial_floats(step->plan), extra_floats,
                               &partials)) {
        st = attn_fail(ATTN_ERR_SIZE_OVERFLOW, f, "the step's buffers do not fit in memory");
        goto fail;
    }
    if ((st = reserve_buffers(ctx, mha, total_q, partials, b, f)) != ATTN_OK ||
        (st = attn_context_reserve(ctx, f, step->threads, 0)) != ATTN_OK ||
        (st = reserve_tables_and_rope(ctx, mha, cache, n_seqs, seqs, cu_q, f)) != ATTN_OK)
        goto fail;
    if (extra)  /* the caller's floats come after the partial results */
        *extra = b->partials + attn_cached_plan_partial_floats(step->plan);
    return ATTN_OK;
fail:
    attn_mha_step_end(step);
    return st;
}

void attn_mha_step_run(attn_mha_step *step, const float *query, float *out)
{
    const attn_mha *mha = step->mha;
    attn_cached_call *c = &step->call;
    const step_buffers *b = &step->buf;
    attn_context *ctx = c->ctx;
    attn_kv_cache *cache = step->cache;
    int64_t n_seqs = c->n_seqs, total_q = n_seqs > 0 ? c->cu_q[n_seqs] : 0;
    const int64_t *seqs = c->seqs, *cu_q = c->cu_q;
    int64_t e = mha->embed_dim, kv = mha->kv_dim;
    int threads = step->threads;
    attn_linear(ctx, threads, total_q, e, e, query, mha->weight[ATTN_PROJ_Q],
                mha->bias[ATTN_PROJ_Q], b->qp);
    attn_linear(ctx, threads, total_q, e, kv, query, mha->weight[ATTN_PROJ_K],
                mha->bias[ATTN_PROJ_K], b->kp);
    attn_linear(ctx, threads, total_q, e, kv, query, mha->weight[ATTN_PROJ_V],
                mha->bias[ATTN_PROJ_V], b->vp);
    rotate_new_tokens(ctx, mha, cache, n_seqs, seqs, cu_q, b, "attn_mha_step_run");
    for (int64_t s = 0; s < n_seqs; s++)
        attn_kv_cache_write(cache, seqs[s], cu_q[s + 1] - cu_q[s], b->kp + cu_q[s] * kv, kv,
                            b->vp + cu_q[s] * kv, kv);
    c->q = b->qp;
    c->out = b->ap;
    attn_cached_run(step->plan, b->partials);
    attn_linear(ctx, threads, total_q, e, e, b->ap, mha->weight[ATTN_PROJ_O],
                mha->bias[ATTN_PROJ_O], out);
}

void attn_mha_step_end(attn_mha_step *step)
{
    attn_cached_plan_free(step->plan);
    attn_free(step->lens);
    *step = (attn_mha_step){0};
}

attn_status attn_mha_forward_cached(attn_context *ctx, const attn_mha *mha, attn_kv_cache *cache,
                                    int64_t n_seqs, const int64_t *seqs, const int64_t *cu_q,
                                    const float *query, float *out)
{
    static const char *f = "attn_mha_forward_cached";
    attn_mha_step step;
    attn_status st = attn_mha_step_prepare(ctx, mha, cache, n_seqs, seqs, cu_q, query, out, 0,
                                           &step, NULL, f);
    if (st != ATTN_OK)
        return st;
    attn_mha_step_run(&step, query, out);  /* nothing can fail from here on */
    attn_mha_step_end(&step);
    return ATTN_OK;
}
