/*
 * attend_cached.c — attention of new queries against a paged KV cache
 * (attn_sdpa_forward_cached, and the attention step of
 * attn_mha_forward_cached): many sequences of different lengths in one
 * call, causal bottom-right within each.
 *
 * Each sequence is one batch row of attend.c's pooling (its geometry,
 * block rows, key ranges, masks and score modifiers, and its block
 * function attn_attend_block), with two callbacks that read the cache page
 * by page: the logits scale · Q Kᵀ and P · V, each a cblas_sgemm (or
 * cblas_sgemv for a single query row) per page segment. The work items are
 * (sequence, kv head, block of query rows, block of keys), an item running
 * the query heads of its kv head's group one after the other over the same
 * keys. Keys are split into blocks when a sequence decodes (a few new rows:
 * blocks small enough to stay in L2 across the group's heads, so that K
 * and V come from memory once per group) or when the items would be fewer
 * than twice the threads (one long sequence still uses every core). Each
 * key block's rows are normalised over its own keys and come with their
 * log-sum-exp, and a last pass merges them exactly (merge.c;
 * flash-decoding, Dao et al. 2023): the result does not depend on the
 * split beyond float rounding.
 */
#include <string.h>

#include "attn_internal.h"
#include "block_rows.h"

/* Keys per block when a sequence's keys are split for parallelism: fewer
 * would make the merge and the per-call overheads dominate. */
#define KEY_BLOCK_MIN 512
/* Keys per block of a decoding sequence (few new rows): 512 keys of K and
 * V at d 128 are 512 KiB, which stay in a core's L2 while the item runs
 * the query heads of their group over them one after the other, so K and
 * V come from memory once per group, not once per query head. */
#define KEY_BLOCK_DECODE 512
/* A sequence with at most this many new rows decodes: its keys are split
 * into L2-sized blocks whatever the thread count. */
#define DECODE_ROWS 16
/* At most this many key blocks per sequence (merge.c gathers 64 parts). */
#define KEY_BLOCKS_MAX 64

/* What the two callbacks read: one sequence's pages and queries. */
typedef struct paged_arg {
    const attn_kv_cache *cache;
    const attn_kv_seq *seq;
    const float *q;        /* the sequence's first query row, head 0 */
    int64_t ldq;           /* between two query rows: heads_q × dim_qk, or dim_qk
                              when the rows are the heads of one query (decoding) */
    int64_t dim_qk, dim_v, group;
    float scale;
} paged_arg;

/* Calls fn for each page segment [j, j + len) of keys [j0, j0 + n). */
#define FOR_EACH_SEGMENT(pa, j0, n, body)                                                      \
    for (int64_t j = (j0); j < (j0) + (n);) {                                                  \
        int64_t ps = (pa)->cache->page_size, page = (pa)->seq->pages[j / ps];                  \
        int64_t off = j % ps, len = ps - off < (j0) + (n) - j ? ps - off : (j0) + (n) - j;      \
        body;                                                                                  \
        j += len;                                                                              \
    }

static void paged_logits(const void *arg, int64_t b, int64_t h, int64_t i0, int64_t rows,
                         int64_t j0, int64_t n, float *s)
{
    (void)b;
    const paged_arg *pa = arg;
    int64_t g = h / pa->group;
    const float *q = pa->q + i0 * pa->cache->heads_kv * pa->group * pa->dim_qk + h * pa->dim_qk;
    FOR_EACH_SEGMENT(pa, j0, n, {
        const float *k = attn_kv_cache_k_rows(pa->cache, page, g) + off * pa->dim_qk;
        if (rows == 1)
            attn_gemv_n(len, pa->dim_qk, pa->scale, k, pa->dim_qk, q, 0.0f, s + (j - j0));
        else
            attn_gemm_nt(rows, len, pa->dim_qk, pa->scale, q, pa->ldq, k, pa->dim_qk, 0.0f,
                         s + (j - j0), n);
    })
}

static void paged_values(const void *arg, int64_t b, int64_t g, int64_t rows, int64_t j0,
                         int64_t n, const float *p, float *out, int64_t ldo)
{
    (void)b;
    const paged_arg *pa = arg;
    FOR_EACH_SEGMENT(pa, j0, n, {
        const float *v = attn_kv_cache_v_rows(pa->cache, page, g) + off * pa->dim_v;
        float beta = j == j0 ? 0.0f : 1.0f;
        if (rows == 1)
            attn_gemv_t(len, pa->dim_v, 1.0f, v, pa->dim_v, p + (j - j0), beta, out);
        else
            attn_gemm_nn(rows, pa->dim_v, len, 1.0f, p + (j - j0), n, v, pa->dim_v, beta, out,
                         ldo);
    })
}

/* ---- the plan ------------------------------------------------------------- */

/* One sequence of a call. */
typedef struct cached_seq {
    attn_attend_args args;   /* batch 1, len_q = n_q, len_kv = n, causal bottom-right */
    paged_arg pa;
    int64_t cu;              /* its first query row */
    int64_t block_q, blocks; /* query blocks */
    bool head_rows;          /* one new token: a block's rows are its group's heads */
    int64_t key_blocks, key_block;
    int64_t item0;           /* its first work item */
    float *part_out, *part_lse;  /* [key_blocks, heads_q, n_q, dim_v], [.., n_q]: when split */
} cached_seq;

struct attn_cached_plan {
    const attn_cached_call *call;
    cached_seq *seqs;
    int64_t items;
    int threads;
    bool serial;             /* the BLAS threads its own calls: items on the caller */
    size_t scratch_floats;
    size_t partial_floats;
};

/* Key blocks of a sequence of n keys: L2-sized when it decodes, else as
 * many as the call wants for its threads (want), each of at least
 * KEY_BLOCK_MIN keys. */
static void split_keys(cached_seq *cs, int64_t n, int64_t want, int64_t page_size)
{
    int64_t blocks = cs->args.len_q <= DECODE_ROWS ? attn_ceil_div(n, KEY_BLOCK_DECODE) : want;
    if (blocks > attn_ceil_div(n, KEY_BLOCK_MIN))
        blocks = attn_ceil_div(n, KEY_BLOCK_MIN);
    if (blocks > KEY_BLOCKS_MAX)
        blocks = KEY_BLOCKS_MAX;
    if (blocks <= 1) {
        cs->key_blocks = 1;
        cs->key_block = n;
        return;
    }
    /* Whole pages per block: a segment never straddles two blocks. */
    int64_t len = attn_ceil_div(attn_ceil_div(n, blocks), page_size) * page_size;
    cs->key_block = len;
    cs->key_blocks = attn_ceil_div(n, len);
}

static void set_sequence(const attn_cached_call *c, int64_t s, int64_t n, cached_seq *cs)
{
    int64_t n_q = c->cu_q[s + 1] - c->cu_q[s];
    cs->cu = c->cu_q[s];
    /* q and out are bound when the plan runs (attn_cached_run): a layer
     * plans before its projections exist. */
    cs->head_rows = n_q == 1;
    cs->pa = (paged_arg){.cache = c->cache, .seq = &c->cache->seqs[c->seqs[s]],
                         .ldq = cs->head_rows ? c->dim_qk : c->heads_q * c->dim_qk,
                         .dim_qk = c->dim_qk, .dim_v = c->dim_v,
                         .group = c->heads_q / c->heads_kv, .scale = c->scale};
    cs->args = (attn_attend_args){
        .batch = 1, .heads_q = c->heads_q, .heads_kv = c->heads_kv, .len_q = n_q, .len_kv = n,
        .causal = ATTN_CAUSAL_BOTTOM_RIGHT, .logits = paged_logits, .logits_arg = &cs->pa,
        .values = paged_values, .values_arg = &cs->pa,
        .out_view = {c->heads_q, n_q, c->dim_v, true}, .mods = c->mods,
    };
    cs->block_q = attn_attend_block_rows(&cs->args);
    cs->blocks = attn_ceil_div(n_q, cs->block_q);
}

attn_status attn_cached_plan_make(attn_context *ctx, const attn_cached_call *c,
                                  const int64_t *lens, attn_cached_plan **plan, const char *f)
{
    attn_cached_plan *p = attn_alloc(sizeof *p);
    cached_seq *seqs = attn_alloc((size_t)(c->n_seqs > 0 ? c->n_seqs : 1) * sizeof *seqs);
    if (!p || !seqs) {
        attn_free(p), attn_free(seqs);
        return attn_fail(ATTN_ERR_OUT_OF_MEMORY, f, "cannot allocate the plan of %lld sequences",
                         (long long)c->n_seqs);
    }
    *p = (attn_cached_plan){.call = c, .seqs = seqs};
    int64_t base_items = 0;
    for (int64_t s = 0; s < c->n_seqs; s++) {
        set_sequence(c, s, lens[s], &seqs[s]);
        base_items += c->heads_kv * seqs[s].blocks;
    }
    /* Like attend.c: under the BLAS-threaded schedule the caller runs the
     * items (the BLAS threads each call); otherwise one item per thread. */
    p->serial = attn_context_schedule(ctx) == ATTN_SCHEDULE_BLAS_THREADS;
    int threads = p->serial ? 1 : attn_context_threads(ctx, INT64_MAX);
    int64_t want = base_items == 0 || base_items >= 2 * threads
                       ? 1 : attn_ceil_div(2 * threads, base_items);
    for (int64_t s = 0; s < c->n_seqs; s++) {
        cached_seq *cs = &seqs[s];
        split_keys(cs, lens[s], want, c->cache->page_size);
        cs->item0 = p->items;
        p->items += c->heads_kv * cs->blocks * cs->key_blocks;
        int64_t group = c->heads_q / c->heads_kv;
        int64_t rows = cs->head_rows ? (group < ATTN_BLOCK_Q_MAX ? group : ATTN_BLOCK_Q_MAX)
                       : cs->args.len_q < cs->block_q ? cs->args.len_q : cs->block_q;
        size_t floats = (size_t)(rows * (cs->key_block < lens[s] ? cs->key_block : lens[s]));
        p->scratch_floats = floats > p->scratch_floats ? floats : p->scratch_floats;
        if (cs->key_blocks > 1)
            p->partial_floats += (size_t)(cs->key_blocks * c->heads_q * cs->args.len_q *
                                          (c->dim_v + 1));
    }
    p->threads = p->serial ? 1 : attn_context_threads(ctx, p->items);
    attn_status st = attn_context_reserve(ctx, f, p->threads, p->scratch_floats);
    if (st != ATTN_OK) {
        attn_cached_plan_free(p);
        return st;
    }
    *plan = p;
    return ATTN_OK;
}

size_t attn_cached_plan_partial_floats(const attn_cached_plan *plan)
{
    return plan->partial_floats;
}

void attn_cached_plan_free(attn_cached_plan *plan)
{
    if (!plan)
        return;
    attn_free(plan->seqs);
    attn_free(plan);
}

/* ---- running it ---------------------------------------------------------- */

/* The sequence owning item (a binary search over item0). */
static int64_t sequence_of(const attn_cached_plan *p, int64_t item)
{
    int64_t lo = 0, hi = p->call->n_seqs - 1;
    while (lo < hi) {
        int64_t mid = lo + (hi - lo + 1) / 2;
        if (p->seqs[mid].item0 <= item)
            lo = mid;
        else
            hi = mid - 1;
    }
    return lo;
}

/* Item = (sequence, kv head, block of query rows, block of keys): the
 * query heads of the kv head's group, one after the other, over the same
 * keys (which stay in cache between them). */
static void run_item(const attn_cached_plan *p, int64_t item, float *scratch)
{
    const attn_cached_call *c = p->call;
    const cached_seq *cs = &p->seqs[sequence_of(p, item)];
    const attn_attend_args *a = &cs->args;
    int64_t local = item - cs->item0;
    int64_t kb = local % cs->key_blocks, rest = local / cs->key_blocks;
    int64_t g = rest / cs->blocks, group = c->heads_q / c->heads_kv;
    attn_block blk = {.b = 0, .i0 = rest % cs->blocks * cs->block_q};
    blk.rows = a->len_q - blk.i0 < cs->block_q ? a->len_q - blk.i0 : cs->block_q;
    attn_key_range keys = attn_attend_block_keys(a, 0, blk.i0, blk.i0 + blk.rows);
    int64_t k0 = kb * cs->key_block, k1 = k0 + cs->key_block;
    blk.keys.begin = keys.begin > k0 ? keys.begin : k0;
    blk.keys.end = keys.end < k1 ? keys.end : k1;
    if (blk.keys.end <= blk.keys.begin)
        blk.keys = (attn_key_range){0, 0};
    /* One new token: the group's heads are the block's rows (at most
     * ATTN_BLOCK_Q_MAX at a time), one GEMM over each page for all of
     * them; else each head's rows in turn. */
    int64_t step = cs->head_rows ? ATTN_BLOCK_Q_MAX : 1;
    blk.head_rows = cs->head_rows;
    for (blk.h = g * group; blk.h < (g + 1) * group; blk.h += step) {
        if (cs->head_rows)
            blk.rows = (g + 1) * group - blk.h < step ? (g + 1) * group - blk.h : step;
        if (cs->key_blocks == 1) {
            /* heads of one row are dim_v apart in out, rows of one head
             * heads_q · dim_v */
            blk.ldo = cs->head_rows ? c->dim_v : c->heads_q * c->dim_v;
            blk.out = a->out + blk.i0 * c->heads_q * c->dim_v + blk.h * c->dim_v;
            blk.lse = c->lse ? c->lse + (cs->cu + blk.i0) * c->heads_q + blk.h : NULL;
            blk.ld_lse = cs->head_rows ? 1 : c->heads_q;
        } else {
            /* partial rows [kb, heads_q, n_q]: heads n_q apart, rows 1 */
            int64_t part = (kb * c->heads_q + blk.h) * a->len_q + blk.i0;
            int64_t ld = cs->head_rows ? a->len_q : 1;
            blk.ldo = ld * c->dim_v;
            blk.out = cs->part_out + part * c->dim_v;
            blk.lse = cs->part_lse + part;
            blk.ld_lse = ld;
        }
        attn_attend_block(a, &blk, scratch);
    }
}

static void cached_item(void *arg, int64_t item, int worker)
{
    const attn_cached_plan *p = arg;
    run_item(p, item, p->call->ctx->scratch[worker]);
}

/* The key blocks' rows of the split sequences, merged into out and lse. */
static void merge_key_blocks(const attn_cached_plan *p)
{
    const attn_cached_call *c = p->call;
    for (int64_t s = 0; s < c->n_seqs; s++) {
        const cached_seq *cs = &p->seqs[s];
        int64_t n_q = cs->args.len_q;
        if (cs->key_blocks == 1)
            continue;
        for (int64_t h = 0; h < c->heads_q; h++)
            for (int64_t i = 0; i < n_q; i++) {
                const float *outs[KEY_BLOCKS_MAX];
                float lses[KEY_BLOCKS_MAX], lse;
                for (int64_t kb = 0; kb < cs->key_blocks; kb++) {
                    int64_t part = (kb * c->heads_q + h) * n_q + i;
                    outs[kb] = cs->part_out + part * c->dim_v;
                    lses[kb] = cs->part_lse[part];
                }
                int64_t row = (cs->cu + i) * c->heads_q + h;
                attn_merge_row(cs->key_blocks, c->dim_v, outs, lses, c->out + row * c->dim_v,
                               &lse);
                if (c->lse)
                    c->lse[row] = lse;
            }
    }
}

void attn_cached_run(attn_cached_plan *p, float *partials)
{
    const attn_cached_call *c = p->call;
    if (p->items == 0)  /* no query row: q and out may be NULL, no pointer is formed */
        return;
    for (int64_t s = 0; s < c->n_seqs; s++) {
        cached_seq *cs = &p->seqs[s];
        cs->pa.q = c->q + cs->cu * c->heads_q * c->dim_qk;
        cs->args.out = c->out + cs->cu * c->heads_q * c->dim_v;
        if (cs->key_blocks == 1)
            continue;
        size_t n = (size_t)(cs->key_blocks * c->heads_q * cs->args.len_q);
        cs->part_out = partials;
        cs->part_lse = partials + n * (size_t)c->dim_v;
        partials += n * (size_t)(c->dim_v + 1);
    }
    if (p->serial) {
        for (int64_t item = 0; item < p->items; item++)
            run_item(p, item, c->ctx->scratch[0]);
    } else {
        attn_context_run(c->ctx, p->threads, cached_item, p, p->items);
    }
    merge_key_blocks(p);
}

/* ---- attn_sdpa_forward_cached ----------------------------------------------- */

attn_status attn_cached_check_queries(const attn_kv_cache *cache, int64_t n_seqs,
                                      const int64_t *seqs, const int64_t *cu_q, const char *f)
{
    if (n_seqs < 0)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "n_seqs (%lld) is negative",
                         (long long)n_seqs);
    if (n_seqs == 0)
        return ATTN_OK;
    if (!seqs)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "seqs is NULL");
    if (!cu_q)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "cu_q is NULL");
    if (cu_q[0] != 0)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "cu_q[0] (%lld) is not 0",
                         (long long)cu_q[0]);
    for (int64_t s = 0; s < n_seqs; s++) {
        if (cu_q[s + 1] < cu_q[s])
            return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f,
                             "cu_q[%lld] (%lld) is below cu_q[%lld] (%lld)", (long long)(s + 1),
                             (long long)cu_q[s + 1], (long long)s, (long long)cu_q[s]);
        if (!attn_kv_cache_seq(cache, seqs[s], f))
            return ATTN_ERR_INVALID_ARGUMENT;
    }
    return ATTN_OK;
}

static attn_status check_cache_shape(const attn_kv_cache *cache, int64_t heads_kv,
                                     int64_t dim_qk, int64_t dim_v, const char *f)
{
    if (cache->heads_kv != heads_kv || cache->dim_qk != dim_qk || cache->dim_v != dim_v)
        return attn_fail(ATTN_ERR_SHAPE_MISMATCH, f,
                         "the cache holds %lld heads of dims %lld/%lld, the attention %lld of "
                         "%lld/%lld", (long long)cache->heads_kv, (long long)cache->dim_qk,
                         (long long)cache->dim_v, (long long)heads_kv, (long long)dim_qk,
                         (long long)dim_v);
    return ATTN_OK;
}

attn_status attn_cached_check_tensors(const attn_kv_cache *cache, int64_t heads_kv,
                                      int64_t dim_qk, int64_t dim_v, int64_t total_q,
                                      int64_t heads_q, const float *q, const float *out,
                                      const char *f)
{
    attn_status st = check_cache_shape(cache, heads_kv, dim_qk, dim_v, f);
    if (st != ATTN_OK)
        return st;
    const int64_t q_dims[3] = {total_q, heads_q, dim_qk}, o_dims[3] = {total_q, heads_q, dim_v};
    if ((st = attn_check_tensor(q_dims, 3, "q", f)) != ATTN_OK ||
        (st = attn_check_tensor(o_dims, 3, "out", f)) != ATTN_OK ||
        (st = attn_check_data(q, total_q * heads_q * dim_qk, "q", f)) != ATTN_OK ||
        (st = attn_check_data(out, total_q * heads_q * dim_v, "out", f)) != ATTN_OK)
        return st;
    return ATTN_OK;
}

attn_status attn_sdpa_forward_cached(attn_context *ctx, const attn_sdpa *op,
                                     const attn_kv_cache *cache, int64_t n_seqs,
                                     const int64_t *seqs, const int64_t *cu_q, const float *q,
                                     float *out, float *lse)
{
    static const char *f = "attn_sdpa_forward_cached";
    if (!ctx)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "ctx is NULL");
    if (!op)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "op is NULL");
    if (!cache)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "cache is NULL");
    attn_status st = attn_cached_check_queries(cache, n_seqs, seqs, cu_q, f);
    if (st != ATTN_OK)
        return st;
    attn_cached_call c = attn_sdpa_cached_call(op);
    int64_t total_q = n_seqs > 0 ? cu_q[n_seqs] : 0;
    if ((st = attn_cached_check_tensors(cache, c.heads_kv, c.dim_qk, c.dim_v, total_q,
                                        c.heads_q, q, out, f)) != ATTN_OK)
        return st;
    c.ctx = ctx, c.cache = cache, c.n_seqs = n_seqs, c.seqs = seqs, c.cu_q = cu_q, c.q = q;
    c.out = out, c.lse = lse;
    int64_t *lens = attn_alloc((size_t)(n_seqs > 0 ? n_seqs : 1) * sizeof *lens);
    if (!lens)
        return attn_fail(ATTN_ERR_OUT_OF_MEMORY, f, "cannot allocate %lld lengths",
                         (long long)n_seqs);
    for (int64_t s = 0; s < n_seqs; s++)
        lens[s] = cache->seqs[seqs[s]].len;
    attn_cached_plan *plan = NULL;
    float *partials = NULL;
    st = attn_cached_plan_make(ctx, &c, lens, &plan, f);
    size_t need = st == ATTN_OK ? attn_cached_plan_partial_floats(plan) : 0;
    if (st == ATTN_OK && need > 0)
        st = attn_context_workspace(ctx, f, need, &partials);
    if (st == ATTN_OK)
        attn_cached_run(plan, partials);
    attn_cached_plan_free(plan);
    attn_free(lens);
    return st;
}
