/*
 * fuzz_kv_cache.c — fuzz_api.c's operation 5: random sequences of
 * attn_kv_cache operations (open, append, fork, truncate, close, read, and
 * attn_sdpa_forward_cached) against a plain model of the cache.
 *
 * The model keeps, per sequence id, the tokens it holds (each token a
 * number; its K and V rows are made from that number) and its pages as
 * abstract page ids with reference counts, taking and giving pages exactly
 * as attn.h describes paging and copy-on-write: a fresh id per new page,
 * fork shares the ids, an append into a partly filled shared last page
 * replaces it with a fresh id, truncate and close drop ids. So the model
 * knows how many pages are free, and each call must return exactly the
 * status the model predicts: ATTN_ERR_STATE for an append that needs more
 * pages than are free (nothing appended), ATTN_ERR_INVALID_ARGUMENT for a
 * sequence that is not open or a bad length, ATTN_OK otherwise.
 * After every operation each open sequence's length must match, and every
 * few operations its tokens are read back and compared bit for bit; the
 * cached forward of one new query per open sequence is compared with a
 * float64 softmax over the model's tokens.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <attn.h>

#include "fuzz_common.h"

enum { MAX_SEQS = 8, MAX_PAGES = 24, MAX_TOKENS = 400 };
enum { HKV = 2, HQ = 4, D = 3, DV = 2 };

typedef struct model_seq {
    int open;
    int64_t len;
    int tokens[MAX_TOKENS];
    int64_t n_pages;
    int pages[MAX_PAGES];   /* abstract page ids */
} model_seq;

typedef struct model {
    int64_t page_size, num_pages;
    model_seq seq[MAX_SEQS];
    int refs[4096];         /* by abstract id */
    int next_id, next_token;
} model;

/* Pages in use: distinct ids with a reference. */
static int64_t free_pages(const model *m)
{
    int64_t used = 0;
    for (int i = 0; i < m->next_id; i++)
        used += m->refs[i] > 0;
    return m->num_pages - used;
}

static int64_t pages_needed(const model *m, const model_seq *s, int64_t n)
{
    int64_t pages = (s->len + n + m->page_size - 1) / m->page_size;
    int cow = n > 0 && s->len % m->page_size != 0 && m->refs[s->pages[s->n_pages - 1]] > 1;
    return pages - s->n_pages + cow;
}

/* Key and value rows of a token: small multiples of 1/8 from its number. */
static void token_rows(int t, float *k, float *v)
{
    for (int g = 0; g < HKV; g++) {
        for (int d = 0; d < D; d++)
            k[g * D + d] = (float)((t * 7 + g * 3 + d * 5) % 17 - 8) / 8.0f;
        for (int d = 0; d < DV; d++)
            v[g * DV + d] = (float)((t * 5 + g * 11 + d * 3) % 13 - 6) / 8.0f;
    }
}

static void model_append(model *m, model_seq *s, int64_t n, const int *tokens)
{
    if (n > 0 && s->len % m->page_size != 0 && m->refs[s->pages[s->n_pages - 1]] > 1) {
        m->refs[s->pages[s->n_pages - 1]]--;
        s->pages[s->n_pages - 1] = m->next_id;
        m->refs[m->next_id++] = 1;
    }
    for (int64_t t = 0; t < n; t++) {
        if (s->len == s->n_pages * m->page_size) {
            s->pages[s->n_pages++] = m->next_id;
            m->refs[m->next_id++] = 1;
        }
        s->tokens[s->len++] = tokens[t];
    }
}

static void model_drop_pages(model *m, model_seq *s, int64_t keep)
{
    for (int64_t p = keep; p < s->n_pages; p++)
        m->refs[s->pages[p]]--;
    s->n_pages = keep;
}

/* The smallest id the library would hand out: the first closed slot. */
static int model_free_slot(const model *m)
{
    for (int i = 0; i < MAX_SEQS; i++)
        if (!m->seq[i].open)
            return i;
    return -1;
}

/* A sequence id: mostly an open one, sometimes a closed or out-of-range one. */
static int64_t pick_seq(rd *r, const model *m)
{
    if (chance(r, 15))
        return pick(r, -2, MAX_SEQS + 1);
    int open[MAX_SEQS], n = 0;
    for (int i = 0; i < MAX_SEQS; i++)
        if (m->seq[i].open)
            open[n++] = i;
    return n ? open[pick(r, 0, n - 1)] : pick(r, -1, MAX_SEQS);
}

static int is_open(const model *m, int64_t seq)
{
    return seq >= 0 && seq < MAX_SEQS && m->seq[seq].open;
}

static void expect(attn_status got, attn_status want, const char *what)
{
    CHECK(got == want, "%s: status %s, the model says %s (%s)", what, attn_status_string(got),
          attn_status_string(want), attn_last_error());
}

static void check_lengths(const attn_kv_cache *c, const model *m)
{
    for (int i = 0; i < MAX_SEQS; i++) {
        int64_t len = -1;
        attn_status st = attn_kv_cache_seq_len(c, i, &len);
        expect(st, m->seq[i].open ? ATTN_OK : ATTN_ERR_INVALID_ARGUMENT, "seq_len");
        CHECK(!m->seq[i].open || len == m->seq[i].len, "seq %d: length %lld, model %lld", i,
              (long long)len, (long long)m->seq[i].len);
    }
}

static void check_contents(const attn_kv_cache *c, const model *m)
{
    static float k[MAX_TOKENS * HKV * D], v[MAX_TOKENS * HKV * DV];
    float kt[HKV * D], vt[HKV * DV];
    for (int i = 0; i < MAX_SEQS; i++) {
        const model_seq *s = &m->seq[i];
        if (!s->open)
            continue;
        expect(attn_kv_cache_read(c, i, 0, s->len, k, v), ATTN_OK, "read");
        for (int64_t t = 0; t < s->len; t++) {
            token_rows(s->tokens[t], kt, vt);
            CHECK(memcmp(k + t * HKV * D, kt, sizeof kt) == 0 &&
                      memcmp(v + t * HKV * DV, vt, sizeof vt) == 0,
                  "seq %d token %lld: the cache holds other K or V than token %d", i,
                  (long long)t, s->tokens[t]);
        }
    }
}

/* One query per open, non-empty sequence, against the model's tokens. */
static void check_attention(rd *r, attn_context *ctx, const attn_sdpa *op,
                            const attn_kv_cache *c, const model *m)
{
    int64_t seqs[MAX_SEQS], cu[MAX_SEQS + 1] = {0};
    int n = 0;
    for (int i = 0; i < MAX_SEQS; i++)
        if (m->seq[i].open && m->seq[i].len > 0 && chance(r, 80)) {
            seqs[n] = i;
            cu[n + 1] = n + 1;
            n++;
        }
    float *q = data(r, (int64_t)n * HQ * D, 8, 2);
    float out[MAX_SEQS * HQ * DV], lse[MAX_SEQS * HQ];
    expect(attn_sdpa_forward_cached(ctx, op, c, n, seqs, cu, q, out, lse), ATTN_OK,
           "forward_cached");
    float kt[HKV * D], vt[HKV * DV];
    double scale = (double)(float)(1.0 / sqrt((double)D));
    for (int s = 0; s < n; s++) {
        const model_seq *ms = &m->seq[seqs[s]];
        for (int h = 0; h < HQ; h++) {
            int g = h / (HQ / HKV);
            const float *qr = q + ((int64_t)s * HQ + h) * D;
            double mx = -INFINITY, sum = 0.0, acc[DV] = {0};
            double *l = xalloc((size_t)ms->len * sizeof *l);
            for (int64_t t = 0; t < ms->len; t++) {  /* bottom-right: the query sees all */
                token_rows(ms->tokens[t], kt, vt);
                double dot = 0.0;
                for (int d = 0; d < D; d++)
                    dot += (double)qr[d] * kt[g * D + d];
                l[t] = scale * dot;
                mx = l[t] > mx ? l[t] : mx;
            }
            for (int64_t t = 0; t < ms->len; t++) {
                token_rows(ms->tokens[t], kt, vt);
                double e = exp(l[t] - mx);
                sum += e;
                for (int d = 0; d < DV; d++)
                    acc[d] += e * vt[g * DV + d];
            }
            free(l);
            for (int d = 0; d < DV; d++) {
                double want = acc[d] / sum, got = out[((int64_t)s * HQ + h) * DV + d];
                CHECK(fabs(got - want) <= 1e-5 * (1.0 + fabs(want)),
                      "cached forward, seq %lld head %d: out[%d] %.9g, model %.9g",
                      (long long)seqs[s], h, d, got, want);
            }
            double want_lse = mx + log(sum), got_lse = lse[s * HQ + h];
            CHECK(fabs(got_lse - want_lse) <= 1e-5 * (1.0 + fabs(want_lse)),
                  "cached forward lse %.9g, model %.9g", got_lse, want_lse);
        }
    }
    free(q);
}

void fuzz_kv_cache(rd *r)
{
    model *m = xalloc(sizeof *m);
    memset(m, 0, sizeof *m);
    m->page_size = pick(r, 1, 9);
    m->num_pages = pick(r, 1, MAX_PAGES);
    attn_kv_cache *c = NULL;
    expect(attn_kv_cache_create(&c, HKV, D, DV, m->page_size, m->num_pages), ATTN_OK, "create");
    attn_context *ctx = make_context(r);
    attn_sdpa *op = NULL;
    expect(attn_sdpa_create(&op, 1, HQ, HKV, 1, 1, D, DV), ATTN_OK, "sdpa_create");
    int ops = (int)pick(r, 1, 60);
    for (int i = 0; i < ops; i++) {
        int64_t seq = pick_seq(r, m), len;
        switch (u8(r) % 8) {
        case 0: {  /* open */
            int slot = model_free_slot(m);
            if (slot < 0)
                break;  /* the model's table is full; the library's would grow */
            expect(attn_kv_cache_seq_open(c, &len), ATTN_OK, "open");
            CHECK(len == slot, "open gave id %lld, the smallest free is %d", (long long)len,
                  slot);
            m->seq[slot] = (model_seq){.open = 1};
            break;
        }
        case 1: case 2: case 3: {  /* append */
            int64_t n = pick(r, 0, 40);
            int tokens[40];
            static float k[40 * HKV * D], v[40 * HKV * DV];
            for (int64_t t = 0; t < n; t++) {
                tokens[t] = m->next_token++;
                token_rows(tokens[t], k + t * HKV * D, v + t * HKV * DV);
            }
            attn_status want = ATTN_OK;
            if (!is_open(m, seq))
                want = ATTN_ERR_INVALID_ARGUMENT;
            else if (m->seq[seq].len + n > MAX_TOKENS)
                break;  /* beyond the model's arrays */
            else if (pages_needed(m, &m->seq[seq], n) > free_pages(m))
                want = ATTN_ERR_STATE;
            expect(attn_kv_cache_append(c, seq, n, k, v), want, "append");
            if (want == ATTN_OK)
                model_append(m, &m->seq[seq], n, tokens);
            break;
        }
        case 4: {  /* fork */
            int slot = model_free_slot(m);
            if (slot < 0)
                break;
            int64_t dst = -7;
            expect(attn_kv_cache_seq_fork(c, seq, &dst),
                   is_open(m, seq) ? ATTN_OK : ATTN_ERR_INVALID_ARGUMENT, "fork");
            if (!is_open(m, seq)) {
                CHECK(dst == -7, "a failed fork wrote dst");
                break;
            }
            CHECK(dst == slot, "fork gave id %lld, the smallest free is %d", (long long)dst,
                  slot);
            m->seq[slot] = m->seq[seq];
            for (int64_t p = 0; p < m->seq[slot].n_pages; p++)
                m->refs[m->seq[slot].pages[p]]++;
            break;
        }
        case 5: {  /* truncate */
            int64_t to = !is_open(m, seq) || chance(r, 5) ? pick(r, -1, 3)
                         : chance(r, 10) ? m->seq[seq].len + pick(r, 0, 2)
                                         : m->seq[seq].len * (int64_t)u8(r) / 255;
            int ok = is_open(m, seq) && to >= 0 && to <= m->seq[seq].len;
            expect(attn_kv_cache_seq_truncate(c, seq, to),
                   ok ? ATTN_OK : ATTN_ERR_INVALID_ARGUMENT, "truncate");
            if (ok) {
                model_drop_pages(m, &m->seq[seq], (to + m->page_size - 1) / m->page_size);
                m->seq[seq].len = to;
            }
            break;
        }
        case 6: {  /* close */
            expect(attn_kv_cache_seq_close(c, seq),
                   is_open(m, seq) ? ATTN_OK : ATTN_ERR_INVALID_ARGUMENT, "close");
            if (is_open(m, seq)) {
                model_drop_pages(m, &m->seq[seq], 0);
                m->seq[seq].open = 0;
                m->seq[seq].len = 0;
            }
            break;
        }
        default:
            check_contents(c, m);
            check_attention(r, ctx, op, c, m);
            break;
        }
        check_lengths(c, m);
    }
    check_contents(c, m);
    attn_sdpa_destroy(op);
    attn_context_destroy(ctx);
    attn_kv_cache_destroy(c);
    free(m);
}
