/*
 * kv_cache.c — paged key/value storage for many sequences (Kwon et al.
 * 2023, "Efficient Memory Management for Large Language Model Serving with
 * PagedAttention", §4.2): the cache owns num_pages pages of page_size
 * tokens; a sequence is a list of pages (its page table), filled in order,
 * so its memory grows a page at a time and nothing is ever copied to grow.
 *
 * A page holds K as [heads_kv, page_size, dim_qk] and V as [heads_kv,
 * page_size, dim_v]: one head's rows of a page are contiguous, a matrix
 * the logits' and P·V's cblas calls read with leading dimension dim.
 *
 * Fork shares every page of the source (a reference count per page); the
 * first append to a shared, partly filled last page copies that page
 * (copy-on-write), so beams and shared prompts cost one page each until
 * they diverge. Truncate drops whole pages past the new length (a shared
 * page only loses a reference). Every operation checks that it can finish
 * (free pages, page-table room) before it changes anything: running out of
 * pages is ATTN_ERR_STATE with the cache as it was.
 */
#include <string.h>

#include "attn_internal.h"

/* ---- creation -------------------------------------------------------------- */

attn_status attn_kv_cache_create(attn_kv_cache **cache, int64_t heads_kv, int64_t dim_qk,
                                 int64_t dim_v, int64_t page_size, int64_t num_pages)
{
    static const char *f = "attn_kv_cache_create";
    if (!cache)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "cache is NULL");
    const int64_t sizes[5] = {heads_kv, dim_qk, dim_v, page_size, num_pages};
    static const char *names[5] = {"heads_kv", "dim_qk", "dim_v", "page_size", "num_pages"};
    attn_status st;
    if ((st = attn_check_min(sizes, names, 5, 1, f)) != ATTN_OK)
        return st;
    const int64_t k_dims[4] = {num_pages, heads_kv, page_size, dim_qk},
                  v_dims[4] = {num_pages, heads_kv, page_size, dim_v};
    if ((st = attn_check_tensor(k_dims, 4, "the key pages", f)) != ATTN_OK ||
        (st = attn_check_tensor(v_dims, 4, "the value pages", f)) != ATTN_OK ||
        (st = attn_check_blas(dim_qk, "dim_qk", f)) != ATTN_OK ||
        (st = attn_check_blas(dim_v, "dim_v", f)) != ATTN_OK ||
        (st = attn_check_blas(page_size, "page_size", f)) != ATTN_OK)
        return st;
    attn_kv_cache *c = attn_alloc(sizeof *c);
    if (!c)
        return attn_fail(ATTN_ERR_OUT_OF_MEMORY, f, "cannot allocate the cache");
    *c = (attn_kv_cache){.heads_kv = heads_kv, .dim_qk = dim_qk, .dim_v = dim_v,
                         .page_size = page_size, .num_pages = num_pages};
    c->k = attn_alloc((size_t)(num_pages * heads_kv * page_size * dim_qk) * sizeof(float));
    c->v = attn_alloc((size_t)(num_pages * heads_kv * page_size * dim_v) * sizeof(float));
    c->refs = attn_alloc((size_t)num_pages * sizeof *c->refs);
    c->free_pages = attn_alloc((size_t)num_pages * sizeof *c->free_pages);
    if (!c->k || !c->v || !c->refs || !c->free_pages) {
        attn_kv_cache_destroy(c);
        return attn_fail(ATTN_ERR_OUT_OF_MEMORY, f,
                         "cannot allocate %lld pages of %lld tokens", (long long)num_pages,
                         (long long)page_size);
    }
    /* Free pages are taken from the end: page 0 first. */
    for (int64_t p = 0; p < num_pages; p++) {
        c->refs[p] = 0;
        c->free_pages[p] = num_pages - 1 - p;
    }
    c->n_free = num_pages;
    *cache = c;
    return ATTN_OK;
}

void attn_kv_cache_destroy(attn_kv_cache *cache)
{
    if (!cache)
        return;
    for (int64_t s = 0; s < cache->n_seqs; s++)
        attn_free(cache->seqs[s].pages);
    attn_free(cache->seqs);
    attn_free(cache->k);
    attn_free(cache->v);
    attn_free(cache->refs);
    attn_free(cache->free_pages);
    attn_free(cache);
}

/* ---- pages ----------------------------------------------------------------- */

static int64_t take_page(attn_kv_cache *c)
{
    int64_t p = c->free_pages[--c->n_free];
    c->refs[p] = 1;
    return p;
}

static void release_page(attn_kv_cache *c, int64_t p)
{
    if (--c->refs[p] == 0)
        c->free_pages[c->n_free++] = p;
}

float *attn_kv_cache_k_rows(const attn_kv_cache *c, int64_t page, int64_t g)
{
    return c->k + (page * c->heads_kv + g) * c->page_size * c->dim_qk;
}

float *attn_kv_cache_v_rows(const attn_kv_cache *c, int64_t page, int64_t g)
{
    return c->v + (page * c->heads_kv + g) * c->page_size * c->dim_v;
}

static void copy_page(attn_kv_cache *c, int64_t dst, int64_t src)
{
    size_t k = (size_t)(c->heads_kv * c->page_size * c->dim_qk);
    size_t v = (size_t)(c->heads_kv * c->page_size * c->dim_v);
    memcpy(c->k + (size_t)dst * k, c->k + (size_t)src * k, k * sizeof(float));
    memcpy(c->v + (size_t)dst * v, c->v + (size_t)src * v, v * sizeof(float));
}

/* ---- sequences ------------------------------------------------------------- */

/* The sequence `seq`, or NULL (with the message) if it is not open. */
static attn_kv_seq *open_seq(const attn_kv_cache *c, int64_t seq, const char *f)
{
    if (seq < 0 || seq >= c->n_seqs || !c->seqs[seq].open) {
        attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "sequence %lld is not open", (long long)seq);
        return NULL;
    }
    return &c->seqs[seq];
}

const attn_kv_seq *attn_kv_cache_seq(const attn_kv_cache *c, int64_t seq, const char *f)
{
    return open_seq(c, seq, f);
}

/* Makes sure s's page table holds `pages` entries. ATTN_ERR_OUT_OF_MEMORY
 * with s unchanged. */
static attn_status reserve_pages(attn_kv_seq *s, int64_t pages, const char *f)
{
    if (pages <= s->cap_pages)
        return ATTN_OK;
    int64_t cap = s->cap_pages ? s->cap_pages : 4;
    while (cap < pages)
        cap *= 2;
    int64_t *p = attn_alloc((size_t)cap * sizeof *p);
    if (!p)
        return attn_fail(ATTN_ERR_OUT_OF_MEMORY, f, "cannot grow a page table to %lld pages",
                         (long long)cap);
    if (s->n_pages > 0)
        memcpy(p, s->pages, (size_t)s->n_pages * sizeof *p);
    attn_free(s->pages);
    s->pages = p;
    s->cap_pages = cap;
    return ATTN_OK;
}

/* A free slot of the sequence table (the lowest id), growing it if needed;
 * -1 with ATTN_ERR_OUT_OF_MEMORY's message. */
static int64_t free_slot(attn_kv_cache *c, const char *f)
{
    for (int64_t s = 0; s < c->n_seqs; s++)
        if (!c->seqs[s].open)
            return s;
    if (c->n_seqs == c->cap_seqs) {
        int64_t cap = c->cap_seqs ? 2 * c->cap_seqs : 8;
        attn_kv_seq *t = attn_alloc((size_t)cap * sizeof *t);
        if (!t) {
            attn_fail(ATTN_ERR_OUT_OF_MEMORY, f, "cannot grow the sequence table to %lld",
                      (long long)cap);
            return -1;
        }
        if (c->n_seqs > 0)
            memcpy(t, c->seqs, (size_t)c->n_seqs * sizeof *t);
        attn_free(c->seqs);
        c->seqs = t;
        c->cap_seqs = cap;
    }
    c->seqs[c->n_seqs] = (attn_kv_seq){0};
    return c->n_seqs++;
}

attn_status attn_kv_cache_seq_open(attn_kv_cache *cache, int64_t *seq)
{
    static const char *f = "attn_kv_cache_seq_open";
    if (!cache)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "cache is NULL");
    if (!seq)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "seq is NULL");
    int64_t s = free_slot(cache, f);
    if (s < 0)
        return ATTN_ERR_OUT_OF_MEMORY;
    cache->seqs[s].open = true;
    cache->seqs[s].len = 0;
    cache->seqs[s].n_pages = 0;
    *seq = s;
    return ATTN_OK;
}

attn_status attn_kv_cache_seq_close(attn_kv_cache *cache, int64_t seq)
{
    static const char *f = "attn_kv_cache_seq_close";
    if (!cache)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "cache is NULL");
    attn_kv_seq *s = open_seq(cache, seq, f);
    if (!s)
        return ATTN_ERR_INVALID_ARGUMENT;
    for (int64_t p = 0; p < s->n_pages; p++)
        release_page(cache, s->pages[p]);
    s->open = false;
    s->len = s->n_pages = 0;
    return ATTN_OK;
}

attn_status attn_kv_cache_seq_fork(attn_kv_cache *cache, int64_t src, int64_t *dst)
{
    static const char *f = "attn_kv_cache_seq_fork";
    if (!cache)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "cache is NULL");
    if (!dst)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "dst is NULL");
    if (!open_seq(cache, src, f))
        return ATTN_ERR_INVALID_ARGUMENT;
    int64_t d = free_slot(cache, f);  /* may move the table: look src up again */
    if (d < 0)
        return ATTN_ERR_OUT_OF_MEMORY;
    attn_kv_seq *t = &cache->seqs[d], *s = &cache->seqs[src];
    attn_status st = reserve_pages(t, s->n_pages, f);
    if (st != ATTN_OK)
        return st;  /* the slot stays closed: nothing changed that anyone sees */
    if (s->n_pages > 0)  /* an empty source has no page table yet */
        memcpy(t->pages, s->pages, (size_t)s->n_pages * sizeof *t->pages);
    for (int64_t p = 0; p < s->n_pages; p++)
        cache->refs[s->pages[p]]++;
    t->n_pages = s->n_pages;
    t->len = s->len;
    t->open = true;
    *dst = d;
    return ATTN_OK;
}

attn_status attn_kv_cache_seq_truncate(attn_kv_cache *cache, int64_t seq, int64_t len)
{
    static const char *f = "attn_kv_cache_seq_truncate";
    if (!cache)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "cache is NULL");
    attn_kv_seq *s = open_seq(cache, seq, f);
    if (!s)
        return ATTN_ERR_INVALID_ARGUMENT;
    if (len < 0 || len > s->len)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f,
                         "len (%lld) is outside [0, the sequence's length %lld]", (long long)len,
                         (long long)s->len);
    int64_t keep = (len + cache->page_size - 1) / cache->page_size;
    for (int64_t p = keep; p < s->n_pages; p++)
        release_page(cache, s->pages[p]);
    s->n_pages = keep;
    s->len = len;
    return ATTN_OK;
}

attn_status attn_kv_cache_seq_len(const attn_kv_cache *cache, int64_t seq, int64_t *len)
{
    static const char *f = "attn_kv_cache_seq_len";
    if (!cache)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "cache is NULL");
    if (!len)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "len is NULL");
    const attn_kv_seq *s = open_seq(cache, seq, f);
    if (!s)
        return ATTN_ERR_INVALID_ARGUMENT;
    *len = s->len;
    return ATTN_OK;
}

/* ---- append ---------------------------------------------------------------- */

/* Whether s's last page is partly filled and shared: appending to it must
 * copy it first. */
static bool last_page_shared(const attn_kv_cache *c, const attn_kv_seq *s)
{
    return s->len % c->page_size != 0 && c->refs[s->pages[s->n_pages - 1]] > 1;
}

int64_t attn_kv_cache_pages_needed(const attn_kv_cache *cache, const attn_kv_seq *s, int64_t n)
{
    int64_t pages = (s->len + n + cache->page_size - 1) / cache->page_size;
    return pages - s->n_pages + (n > 0 && last_page_shared(cache, s) ? 1 : 0);
}

attn_status attn_kv_cache_check_room(const attn_kv_cache *cache, int64_t n, int64_t needed,
                                     const char *f)
{
    if (needed > cache->n_free)
        return attn_fail(ATTN_ERR_STATE, f,
                         "out of pages: %lld new tokens need %lld more pages, %lld of %lld "
                         "are free", (long long)n, (long long)needed, (long long)cache->n_free,
                         (long long)cache->num_pages);
    return ATTN_OK;
}

attn_status attn_kv_cache_reserve_table(attn_kv_cache *cache, int64_t seq, int64_t n,
                                        const char *f)
{
    attn_kv_seq *s = &cache->seqs[seq];
    return reserve_pages(s, (s->len + n + cache->page_size - 1) / cache->page_size, f);
}

/* Every check of appending n tokens to seq, and its page table's room. */
static attn_status reserve_append(attn_kv_cache *cache, int64_t seq, int64_t n, const char *f)
{
    const attn_kv_seq *s = open_seq(cache, seq, f);
    if (!s)
        return ATTN_ERR_INVALID_ARGUMENT;
    if (n > INT64_MAX - s->len - cache->page_size)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "the sequence's length would overflow");
    attn_status st = attn_kv_cache_check_room(cache, n, attn_kv_cache_pages_needed(cache, s, n),
                                              f);
    return st != ATTN_OK ? st : attn_kv_cache_reserve_table(cache, seq, n, f);
}

void attn_kv_cache_write(attn_kv_cache *cache, int64_t seq, int64_t n, const float *k,
                         int64_t ldk, const float *v, int64_t ldv)
{
    attn_kv_seq *s = &cache->seqs[seq];
    int64_t ps = cache->page_size, h = cache->heads_kv;
    int64_t dk = cache->dim_qk, dv = cache->dim_v;
    if (n > 0 && last_page_shared(cache, s)) {  /* copy-on-write */
        int64_t old = s->pages[s->n_pages - 1], fresh = take_page(cache);
        copy_page(cache, fresh, old);
        release_page(cache, old);
        s->pages[s->n_pages - 1] = fresh;
    }
    for (int64_t t = 0; t < n; t++, s->len++) {
        if (s->len == s->n_pages * ps)
            s->pages[s->n_pages++] = take_page(cache);
        int64_t page = s->pages[s->len / ps], slot = s->len % ps;
        for (int64_t g = 0; g < h; g++) {
            memcpy(attn_kv_cache_k_rows(cache, page, g) + slot * dk, k + t * ldk + g * dk,
                   (size_t)dk * sizeof(float));
            memcpy(attn_kv_cache_v_rows(cache, page, g) + slot * dv, v + t * ldv + g * dv,
                   (size_t)dv * sizeof(float));
        }
    }
}

attn_status attn_kv_cache_append(attn_kv_cache *cache, int64_t seq, int64_t n, const float *k,
                                 const float *v)
{
    static const char *f = "attn_kv_cache_append";
    if (!cache)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "cache is NULL");
    if (n < 0)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f, "n (%lld) is negative", (long long)n);
    const int64_t k_dims[3] = {n, cache->heads_kv, cache->dim_qk},
                  v_dims[3] = {n, cache->heads_kv, cache->dim_v};
    attn_status st;
    if ((st = attn_check_tensor(k_dims, 3, "k", f)) != ATTN_OK ||
        (st = attn_check_tensor(v_dims, 3, "v", f)) != ATTN_OK ||
        (st = attn_check_data(k, n * cache->heads_kv * cache->dim_qk, "k", f)) != ATTN_OK ||
        (st = attn_check_data(v, n * cache->heads_kv * cache->dim_v, "v", f)) != ATTN_OK ||
        (st = reserve_append(cache, seq, n, f)) != ATTN_OK)
        return st;
    attn_kv_cache_write(cache, seq, n, k, cache->heads_kv * cache->dim_qk, v,
                        cache->heads_kv * cache->dim_v);
    return ATTN_OK;
}

attn_status attn_kv_cache_read(const attn_kv_cache *cache, int64_t seq, int64_t start, int64_t n,
                               float *k, float *v)
{
    static const char *f = "attn_kv_cache_read";
    if (!cache)
        return attn_fail(ATTN_ERR_NULL_POINTER, f, "cache is NULL");
    const attn_kv_seq *s = open_seq(cache, seq, f);
    if (!s)
        return ATTN_ERR_INVALID_ARGUMENT;
    if (start < 0 || n < 0 || start > s->len || n > s->len - start)
        return attn_fail(ATTN_ERR_INVALID_ARGUMENT, f,
                         "tokens [%lld, %lld + %lld) are not within the sequence's %lld",
                         (long long)start, (long long)start, (long long)n, (long long)s->len);
    int64_t h = cache->heads_kv, dk = cache->dim_qk, dv = cache->dim_v, ps = cache->page_size;
    attn_status st;
    if ((k && (st = attn_check_data(k, n * h * dk, "k", f)) != ATTN_OK) ||
        (v && (st = attn_check_data(v, n * h * dv, "v", f)) != ATTN_OK))
        return st;
    for (int64_t t = 0; t < n; t++) {
        int64_t page = s->pages[(start + t) / ps], slot = (start + t) % ps;
        for (int64_t g = 0; g < h; g++) {
            if (k)
                memcpy(k + (t * h + g) * dk, attn_kv_cache_k_rows(cache, page, g) + slot * dk,
                       (size_t)dk * sizeof(float));
            if (v)
                memcpy(v + (t * h + g) * dv, attn_kv_cache_v_rows(cache, page, g) + slot * dv,
                       (size_t)dv * sizeof(float));
        }
    }
    return ATTN_OK;
}
