/*
 * test_decode.c — the paged KV cache and the cached forwards:
 *
 *  1. decoding token by token, and chunked prefills of 1, 7 and 64 tokens,
 *     several sequences of different lengths in one call, with GQA, a
 *     window, softcap and ALiBi, give the outputs and lse of one causal
 *     attn_sdpa_forward over each whole sequence (within 2e-6) and of the
 *     float64 reference (within 1e-5);
 *  2. a long sequence with few heads is split into key blocks whose
 *     partial results are merged (checked against the reference);
 *  3. fork (copy-on-write of a shared last page) and truncate, against
 *     recomputation from the tokens each sequence holds, and the tokens
 *     read back;
 *  4. running out of pages is ATTN_ERR_STATE with the cache unchanged;
 *  5. attn_mha_forward_cached token by token, with RoPE, GQA and a window,
 *     against attn_mha_forward over the whole sequence;
 *  6. attn_merge_partials against a float64 softmax over the union of the
 *     key sets, with empty parts and in place;
 *  7. errors of every new call, each leaving the cache and outputs as they
 *     were.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdbool.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <attn.h>

#include "reliability_util.h"
#include "test_util.h"

#define SAME_TOL 2e-6  /* cached against the library's full forward */
#define REF_TOL 1e-5   /* against the float64 reference */

/* One sequence's whole data, token-major: q [L, Hq, D], k [L, Hkv, D],
 * v [L, Hkv, Dv]. */
typedef struct seq_data {
    int64_t len;
    float *q, *k, *v;
} seq_data;

typedef struct decode_setup {
    int64_t Hq, Hkv, D, Dv;
    int window;
    int64_t left, right;
    float softcap;
    int alibi;
} decode_setup;

static seq_data seq_make(const decode_setup *s, int64_t len, uint64_t seed)
{
    tu_rng rng;
    tu_rng_seed(&rng, seed);
    seq_data d = {len, ru_floats(len * s->Hq * s->D), ru_floats(len * s->Hkv * s->D),
                  ru_floats(len * s->Hkv * s->Dv)};
    tu_fill_normal(&rng, d.q, (size_t)(len * s->Hq * s->D), 0.0f, 1.0f);
    tu_fill_normal(&rng, d.k, (size_t)(len * s->Hkv * s->D), 0.0f, 1.0f);
    tu_fill_uniform(&rng, d.v, (size_t)(len * s->Hkv * s->Dv), -2.0f, 2.0f);
    return d;
}

static void seq_free(seq_data *d)
{
    free(d->q), free(d->k), free(d->v);
}

static attn_sdpa *make_op(const decode_setup *s, int64_t len)
{
    attn_sdpa *op = NULL;
    assert_int_equal(attn_sdpa_create(&op, 1, s->Hq, s->Hkv, len, len, s->D, s->Dv), ATTN_OK);
    assert_int_equal(attn_sdpa_set_layout(op, ATTN_LAYOUT_BSHD), ATTN_OK);
    assert_int_equal(attn_sdpa_set_causal(op, ATTN_CAUSAL_BOTTOM_RIGHT), ATTN_OK);
    if (s->window)
        assert_int_equal(attn_sdpa_set_window(op, s->left, s->right), ATTN_OK);
    assert_int_equal(attn_sdpa_set_softcap(op, s->softcap), ATTN_OK);
    if (s->alibi)
        assert_int_equal(attn_sdpa_set_alibi(op, NULL), ATTN_OK);
    return op;
}

static attn_context *context(int threads)
{
    attn_context *ctx = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    if (threads > 0)
        assert_int_equal(attn_context_set_num_threads(ctx, threads), ATTN_OK);
    return ctx;
}

/* The full causal forward over a sequence: out [L, Hq, Dv] and lse
 * transposed to [L, Hq] (the cached call's order). */
static void full_forward(const decode_setup *s, const seq_data *d, float *out, float *lse)
{
    attn_sdpa *op = make_op(s, d->len);
    attn_context *ctx = context(1);
    float *lse_bhs = ru_floats(s->Hq * d->len);
    assert_int_equal(attn_sdpa_forward(ctx, op, d->q, d->k, d->v, NULL, out, NULL, lse_bhs),
                     ATTN_OK);
    for (int64_t h = 0; h < s->Hq; h++)
        for (int64_t i = 0; i < d->len; i++)
            lse[i * s->Hq + h] = lse_bhs[h * d->len + i];
    free(lse_bhs);
    attn_context_destroy(ctx);
    attn_sdpa_destroy(op);
}

/* The float64 reference of the same, with the test's own modifiers. */
static void reference(const decode_setup *s, const seq_data *d, double *out, double *lse)
{
    float *slopes = NULL;
    ref_mods m = {.window = s->window, .left = s->left, .right = s->right,
                  .softcap = s->softcap};
    if (s->alibi) {  /* Press et al. for a power of two: 2^(−8(h+1)/H) */
        slopes = ru_floats(s->Hq);
        for (int64_t h = 0; h < s->Hq; h++)
            slopes[h] = (float)pow(2.0, -8.0 * (double)(h + 1) / (double)s->Hq);
        m.alibi = slopes;
    }
    ref_shape rs = {1, s->Hq, s->Hkv, d->len, d->len, s->D, s->Dv, REF_BSHD,
                    REF_CAUSAL_BOTTOM_RIGHT, (double)(float)(1.0 / sqrt((double)s->D)), &m};
    double *lse_bhs = ru_doubles(s->Hq * d->len);
    assert_int_equal(ref_sdpa(&rs, d->q, d->k, d->v, NULL, out, NULL, lse_bhs), 0);
    for (int64_t h = 0; h < s->Hq; h++)
        for (int64_t i = 0; i < d->len; i++)
            lse[i * s->Hq + h] = lse_bhs[h * d->len + i];
    free(lse_bhs);
    free(slopes);
}

/* The largest normalised errors seen (tu_max_err), printed by each test. */
static double worst_same, worst_ref;

static void check_rows(const char *what, const float *a, const float *b, int64_t n,
                       int64_t row, double tol)
{
    double *r = ru_doubles(n);
    for (int64_t i = 0; i < n; i++)
        r[i] = b[i];
    assert_true(ru_close(what, a, r, n, row, tol));
    double e = tu_max_err(a, r, n, row, NULL);
    worst_same = e > worst_same ? e : worst_same;
    free(r);
}

static void print_worst(const char *test, int with_ref)
{
    if (with_ref)
        print_message("%s: cached vs one causal forward %.2g, vs float64 %.2g (normalised)\n",
                      test, worst_same, worst_ref);
    else
        print_message("%s: cached vs one causal forward %.2g (normalised)\n", test,
                      worst_same);
    worst_same = worst_ref = 0.0;
}

static void check_lse(const char *what, const float *a, const double *r, int64_t n, double tol)
{
    int64_t at;
    double e = tu_max_err_lse(a, r, n, &at);
    if (e > tol)
        fail_msg("%s: lse error %.3g at %lld (%.9g vs %.9g)", what, e, (long long)at,
                 (double)a[at], r[at]);
}

/* ---- 1. token by token and chunked prefill ----------------------------------- */

/* Feeds every sequence a first chunk of `first` tokens, then chunks of
 * `chunk` (the last chunk of each may be shorter; sequences that are done
 * drop out of the call) and keeps each row's cached out and lse. */
static void decode_all(const decode_setup *s, seq_data *d, int n, int64_t first, int64_t chunk,
                       int64_t page_size, int threads, float **out, float **lse)
{
    int64_t total = 0;
    for (int i = 0; i < n; i++)
        total += d[i].len;
    attn_kv_cache *cache = NULL;
    assert_int_equal(attn_kv_cache_create(&cache, s->Hkv, s->D, s->Dv, page_size,
                                          total / page_size + n + 1),
                     ATTN_OK);
    int64_t seqs[8], cu[9], ids[8];
    for (int i = 0; i < n; i++)
        assert_int_equal(attn_kv_cache_seq_open(cache, &ids[i]), ATTN_OK);
    attn_sdpa *op = make_op(s, 1);
    attn_context *ctx = context(threads);
    float *q = ru_floats(total * s->Hq * s->D);
    float *o = ru_floats(total * s->Hq * s->Dv), *l = ru_floats(total * s->Hq);
    for (int64_t done = 0, size = first;; done += size, size = chunk) {
        int m = 0;
        cu[0] = 0;
        for (int i = 0; i < n; i++) {
            if (done >= d[i].len)
                continue;
            int64_t c = d[i].len - done < size ? d[i].len - done : size;
            assert_int_equal(attn_kv_cache_append(cache, ids[i], c,
                                                  d[i].k + done * s->Hkv * s->D,
                                                  d[i].v + done * s->Hkv * s->Dv),
                             ATTN_OK);
            memcpy(q + cu[m] * s->Hq * s->D, d[i].q + done * s->Hq * s->D,
                   (size_t)(c * s->Hq * s->D) * sizeof(float));
            seqs[m] = ids[i];
            cu[m + 1] = cu[m] + c;
            m++;
        }
        if (m == 0)
            break;
        assert_int_equal(attn_sdpa_forward_cached(ctx, op, cache, m, seqs, cu, q, o, l),
                         ATTN_OK);
        m = 0;
        for (int i = 0; i < n; i++) {
            if (done >= d[i].len)
                continue;
            int64_t c = cu[m + 1] - cu[m];
            memcpy(out[i] + done * s->Hq * s->Dv, o + cu[m] * s->Hq * s->Dv,
                   (size_t)(c * s->Hq * s->Dv) * sizeof(float));
            memcpy(lse[i] + done * s->Hq, l + cu[m] * s->Hq, (size_t)(c * s->Hq) * sizeof(float));
            m++;
        }
    }
    for (int i = 0; i < n; i++) {
        int64_t len;
        assert_int_equal(attn_kv_cache_seq_len(cache, ids[i], &len), ATTN_OK);
        assert_int_equal(len, d[i].len);
    }
    free(q), free(o), free(l);
    attn_context_destroy(ctx);
    attn_sdpa_destroy(op);
    attn_kv_cache_destroy(cache);
}

/* chunks[c] tokens at a time after a first chunk of firsts[c] (NULL: the
 * same size). */
static void run_equivalence(const decode_setup *s, const int64_t *lens, int n,
                            const int64_t *chunks, const int64_t *firsts, int n_chunks,
                            int64_t page_size, int threads)
{
    seq_data d[8];
    float *full_out[8], *full_lse[8], *out[8], *lse[8];
    double *ref_out[8], *ref_lse[8];
    for (int i = 0; i < n; i++) {
        d[i] = seq_make(s, lens[i], 1000 + (uint64_t)i);
        full_out[i] = ru_floats(lens[i] * s->Hq * s->Dv);
        full_lse[i] = ru_floats(lens[i] * s->Hq);
        out[i] = ru_floats(lens[i] * s->Hq * s->Dv);
        lse[i] = ru_floats(lens[i] * s->Hq);
        ref_out[i] = ru_doubles(lens[i] * s->Hq * s->Dv);
        ref_lse[i] = ru_doubles(lens[i] * s->Hq);
        full_forward(s, &d[i], full_out[i], full_lse[i]);
        reference(s, &d[i], ref_out[i], ref_lse[i]);
    }
    for (int c = 0; c < n_chunks; c++) {
        decode_all(s, d, n, firsts ? firsts[c] : chunks[c], chunks[c], page_size, threads, out,
                   lse);
        for (int i = 0; i < n; i++) {
            char what[96];
            snprintf(what, sizeof what, "chunk %lld, sequence %d (%lld tokens): out vs full",
                     (long long)chunks[c], i, (long long)lens[i]);
            check_rows(what, out[i], full_out[i], lens[i] * s->Hq * s->Dv, s->Dv, SAME_TOL);
            double *fl = ru_doubles(lens[i] * s->Hq);
            for (int64_t x = 0; x < lens[i] * s->Hq; x++)
                fl[x] = full_lse[i][x];
            check_lse(what, lse[i], fl, lens[i] * s->Hq, SAME_TOL);
            free(fl);
            snprintf(what, sizeof what, "chunk %lld, sequence %d: out vs float64",
                     (long long)chunks[c], i);
            assert_true(ru_close(what, out[i], ref_out[i], lens[i] * s->Hq * s->Dv, s->Dv,
                                 REF_TOL));
            double e = tu_max_err(out[i], ref_out[i], lens[i] * s->Hq * s->Dv, s->Dv, NULL);
            worst_ref = e > worst_ref ? e : worst_ref;
            check_lse(what, lse[i], ref_lse[i], lens[i] * s->Hq, REF_TOL);
        }
    }
    for (int i = 0; i < n; i++) {
        seq_free(&d[i]);
        free(full_out[i]), free(full_lse[i]), free(out[i]), free(lse[i]);
        free(ref_out[i]), free(ref_lse[i]);
    }
}

static void test_decode_plain_gqa(void **state)
{
    (void)state;
    const decode_setup s = {.Hq = 8, .Hkv = 2, .D = 16, .Dv = 16};
    const int64_t lens[4] = {37, 100, 3, 150}, chunks[4] = {1, 7, 64, 1000};
    /* ATTN_TEST_QUICK=1 (the Valgrind run): token by token and 64 only. */
    const char *quick = getenv("ATTN_TEST_QUICK");
    const int64_t quick_chunks[2] = {1, 64};
    if (quick && quick[0] == '1')
        run_equivalence(&s, lens, 4, quick_chunks, NULL, 2, 16, 2);
    else
        run_equivalence(&s, lens, 4, chunks, NULL, 4, 16, 2);
    print_worst("decode_plain_gqa", 1);
}

static void test_decode_modifiers(void **state)
{
    (void)state;
    const decode_setup s = {.Hq = 4, .Hkv = 2, .D = 8, .Dv = 12, .window = 1, .left = 20,
                            .right = 0, .softcap = 3.0f, .alibi = 1};
    const int64_t lens[3] = {90, 41, 7}, chunks[3] = {1, 7, 64};
    run_equivalence(&s, lens, 3, chunks, NULL, 3, 8, 3);
    print_worst("decode_modifiers", 1);
}

static void test_decode_split_keys(void **state)
{
    (void)state;
    /* One sequence, two heads, 1100 keys on 4 threads: a chunk of 1000
     * queries splits its keys for the threads (4 query blocks for 8 items'
     * worth of threads), and the last 8 tokens, decoded one by one, into
     * L2-sized key blocks (3 of 512 keys); both merged. */
    const decode_setup s = {.Hq = 2, .Hkv = 1, .D = 32, .Dv = 32, .alibi = 1};
    const int64_t lens[1] = {1100}, chunks[2] = {1000, 1}, firsts[2] = {1000, 1092};
    run_equivalence(&s, lens, 1, chunks, firsts, 2, 32, 4);
    print_worst("decode_split_keys", 1);
}

/* ---- 3. fork and truncate ------------------------------------------------------- */

/* The cached last-token outputs of seq (its last n_new tokens, whose
 * queries are q) against the full forward of `whole`. */
static void check_against_whole(const decode_setup *s, attn_context *ctx, attn_kv_cache *cache,
                                int64_t seq, const seq_data *whole, int64_t n_new,
                                const char *what)
{
    attn_sdpa *op = make_op(s, 1);
    int64_t cu[2] = {0, n_new};
    float *o = ru_floats(n_new * s->Hq * s->Dv), *l = ru_floats(n_new * s->Hq);
    assert_int_equal(attn_sdpa_forward_cached(ctx, op, cache, 1, &seq, cu,
                                              whole->q + (whole->len - n_new) * s->Hq * s->D, o,
                                              l),
                     ATTN_OK);
    float *fo = ru_floats(whole->len * s->Hq * s->Dv), *fl = ru_floats(whole->len * s->Hq);
    full_forward(s, whole, fo, fl);
    check_rows(what, o, fo + (whole->len - n_new) * s->Hq * s->Dv, n_new * s->Hq * s->Dv,
               s->Dv, SAME_TOL);
    free(o), free(l), free(fo), free(fl);
    attn_sdpa_destroy(op);
}

/* whole = the first n tokens of a, then the tokens of b from b_from on. */
static seq_data splice(const decode_setup *s, const seq_data *a, int64_t n, const seq_data *b,
                       int64_t b_from, int64_t b_n)
{
    seq_data w = {n + b_n, ru_floats((n + b_n) * s->Hq * s->D),
                  ru_floats((n + b_n) * s->Hkv * s->D), ru_floats((n + b_n) * s->Hkv * s->Dv)};
    int64_t rq = s->Hq * s->D, rk = s->Hkv * s->D, rv = s->Hkv * s->Dv;
    memcpy(w.q, a->q, (size_t)(n * rq) * sizeof(float));
    memcpy(w.k, a->k, (size_t)(n * rk) * sizeof(float));
    memcpy(w.v, a->v, (size_t)(n * rv) * sizeof(float));
    memcpy(w.q + n * rq, b->q + b_from * rq, (size_t)(b_n * rq) * sizeof(float));
    memcpy(w.k + n * rk, b->k + b_from * rk, (size_t)(b_n * rk) * sizeof(float));
    memcpy(w.v + n * rv, b->v + b_from * rv, (size_t)(b_n * rv) * sizeof(float));
    return w;
}

static void append(const decode_setup *s, attn_kv_cache *cache, int64_t seq, const seq_data *d,
                   int64_t from, int64_t n)
{
    assert_int_equal(attn_kv_cache_append(cache, seq, n, d->k + from * s->Hkv * s->D,
                                          d->v + from * s->Hkv * s->Dv),
                     ATTN_OK);
}

static void test_fork_and_truncate(void **state)
{
    (void)state;
    const decode_setup s = {.Hq = 4, .Hkv = 2, .D = 8, .Dv = 8, .window = 1, .left = 30,
                            .right = 0};
    seq_data a = seq_make(&s, 60, 11), b = seq_make(&s, 60, 12);
    attn_kv_cache *cache = NULL;
    /* Page size 16: 50 tokens leave the 4th page partly filled and shared
     * after the fork, so both appends copy it. */
    assert_int_equal(attn_kv_cache_create(&cache, s.Hkv, s.D, s.Dv, 16, 20), ATTN_OK);
    attn_context *ctx = context(2);
    int64_t sa, sb;
    assert_int_equal(attn_kv_cache_seq_open(cache, &sa), ATTN_OK);
    append(&s, cache, sa, &a, 0, 50);
    assert_int_equal(attn_kv_cache_seq_fork(cache, sa, &sb), ATTN_OK);
    assert_true(sb != sa);
    append(&s, cache, sa, &a, 50, 10);
    append(&s, cache, sb, &b, 50, 10);
    seq_data wa = splice(&s, &a, 60, &b, 0, 0), wb = splice(&s, &a, 50, &b, 50, 10);
    /* What each sequence holds, read back token by token. */
    float *rk = ru_floats(60 * s.Hkv * s.D), *rv = ru_floats(60 * s.Hkv * s.Dv);
    assert_int_equal(attn_kv_cache_read(cache, sb, 0, 60, rk, rv), ATTN_OK);
    assert_true(ru_same_bits("read k of the fork", rk, wb.k, 60 * s.Hkv * s.D));
    assert_true(ru_same_bits("read v of the fork", rv, wb.v, 60 * s.Hkv * s.Dv));
    assert_int_equal(attn_kv_cache_read(cache, sa, 45, 15, rk, NULL), ATTN_OK);
    assert_true(ru_same_bits("read k[45:60] of the source", rk, wa.k + 45 * s.Hkv * s.D,
                             15 * s.Hkv * s.D));
    assert_int_equal(attn_kv_cache_read(cache, sa, 45, 16, rk, rv), ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_kv_cache_read(cache, sa, -1, 1, rk, rv), ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_kv_cache_read(cache, 9, 0, 1, rk, rv), ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_kv_cache_read(NULL, sa, 0, 1, rk, rv), ATTN_ERR_NULL_POINTER);
    free(rk), free(rv);
    check_against_whole(&s, ctx, cache, sa, &wa, 10, "fork: the source after both appends");
    check_against_whole(&s, ctx, cache, sb, &wb, 10, "fork: the copy after both appends");

    /* Roll the source back to 30 tokens and take 5 of b's instead. */
    assert_int_equal(attn_kv_cache_seq_truncate(cache, sa, 30), ATTN_OK);
    int64_t len;
    assert_int_equal(attn_kv_cache_seq_len(cache, sa, &len), ATTN_OK);
    assert_int_equal(len, 30);
    append(&s, cache, sa, &b, 30, 5);
    seq_data wt = splice(&s, &a, 30, &b, 30, 5);
    check_against_whole(&s, ctx, cache, sa, &wt, 5, "truncate to 30, then 5 new tokens");
    check_against_whole(&s, ctx, cache, sb, &wb, 10, "the fork is untouched by truncate");

    /* Closing gives pages back: a new sequence can take them. */
    assert_int_equal(attn_kv_cache_seq_close(cache, sa), ATTN_OK);
    assert_int_equal(attn_kv_cache_seq_close(cache, sb), ATTN_OK);
    int64_t sc;
    assert_int_equal(attn_kv_cache_seq_open(cache, &sc), ATTN_OK);
    assert_int_equal(sc, 0);  /* the smallest free id */
    seq_data big = seq_make(&s, 320, 13);
    append(&s, cache, sc, &big, 0, 320);  /* all 20 pages */
    check_against_whole(&s, ctx, cache, sc, &big, 3, "every page reused");

    seq_free(&a), seq_free(&b), seq_free(&wa), seq_free(&wb), seq_free(&wt), seq_free(&big);
    attn_context_destroy(ctx);
    attn_kv_cache_destroy(cache);
    print_worst("fork_and_truncate", 0);
}

/* ---- 4. out of pages ------------------------------------------------------------- */

static void test_out_of_pages(void **state)
{
    (void)state;
    const decode_setup s = {.Hq = 2, .Hkv = 1, .D = 4, .Dv = 4};
    seq_data a = seq_make(&s, 40, 21);
    attn_kv_cache *cache = NULL;
    assert_int_equal(attn_kv_cache_create(&cache, 1, 4, 4, 8, 4), ATTN_OK);  /* 32 tokens */
    attn_context *ctx = context(1);
    int64_t s0, s1, len;
    assert_int_equal(attn_kv_cache_seq_open(cache, &s0), ATTN_OK);
    append(&s, cache, s0, &a, 0, 20);
    assert_int_equal(attn_kv_cache_append(cache, s0, 20, a.k + 20 * 4, a.v + 20 * 4),
                     ATTN_ERR_STATE);
    assert_non_null(strstr(attn_last_error(), "out of pages"));
    assert_int_equal(attn_kv_cache_seq_len(cache, s0, &len), ATTN_OK);
    assert_int_equal(len, 20);
    /* A fork of a partly filled page needs a page to append: 1 free page
     * left for the copy, then none. */
    assert_int_equal(attn_kv_cache_seq_fork(cache, s0, &s1), ATTN_OK);
    append(&s, cache, s1, &a, 20, 4);     /* copies page 2 into the last free page */
    assert_int_equal(attn_kv_cache_append(cache, s0, 5, a.k, a.v), ATTN_ERR_STATE);
    append(&s, cache, s0, &a, 20, 4);     /* fits in its own (no longer shared) page */
    seq_data w = splice(&s, &a, 24, &a, 0, 0);
    check_against_whole(&s, ctx, cache, s0, &w, 4, "after the failed appends");
    check_against_whole(&s, ctx, cache, s1, &w, 4, "the fork after the failed appends");
    seq_free(&a), seq_free(&w);
    attn_context_destroy(ctx);
    attn_kv_cache_destroy(cache);
}

/* Two forks of a partly filled page appended in one layer step: the first
 * copies the page, the second then has it alone, so one free page is
 * enough (the page count follows the appends in order). */
static void test_mha_cached_shared_page(void **state)
{
    (void)state;
    enum { E = 8, NH = 2 };
    attn_mha *mha = NULL;
    assert_int_equal(attn_mha_create(&mha, E, NH, NH, E, E, 0), ATTN_OK);
    int64_t count;
    assert_int_equal(attn_mha_param_count(mha, &count), ATTN_OK);
    float *params = ru_floats(count);
    tu_rng rng;
    tu_rng_seed(&rng, 61);
    tu_fill_normal(&rng, params, (size_t)count, 0.0f, 0.5f);
    assert_int_equal(attn_mha_set_params(mha, params), ATTN_OK);
    attn_kv_cache *cache = NULL;
    assert_int_equal(attn_kv_cache_create(&cache, NH, E / NH, E / NH, 4, 2), ATTN_OK);
    attn_context *ctx = context(1);
    float x[3 * E], out[3 * E];
    tu_fill_normal(&rng, x, 3 * E, 0.0f, 1.0f);
    int64_t a, b, len;
    assert_int_equal(attn_kv_cache_seq_open(cache, &a), ATTN_OK);
    int64_t cu2[2] = {0, 2};
    assert_int_equal(attn_mha_forward_cached(ctx, mha, cache, 1, &a, cu2, x, out), ATTN_OK);
    assert_int_equal(attn_kv_cache_seq_fork(cache, a, &b), ATTN_OK);
    int64_t both[2] = {a, b}, cu[3] = {0, 1, 2};
    assert_int_equal(attn_mha_forward_cached(ctx, mha, cache, 2, both, cu, x + 2 * E, out),
                     ATTN_OK);
    assert_int_equal(attn_kv_cache_seq_len(cache, b, &len), ATTN_OK);
    assert_int_equal(len, 3);
    /* Each now has a page of its own, 3 of 4 slots used, and no page is
     * free: a fourth token each fits, a fifth would need two pages. */
    assert_int_equal(attn_mha_forward_cached(ctx, mha, cache, 2, both, cu, x, out), ATTN_OK);
    int64_t cu_big[3] = {0, 1, 3};
    float xx[3 * E];
    memcpy(xx, x, sizeof xx);
    assert_int_equal(attn_mha_forward_cached(ctx, mha, cache, 2, both, cu_big, xx, out),
                     ATTN_ERR_STATE);
    free(params);
    attn_context_destroy(ctx);
    attn_kv_cache_destroy(cache);
    attn_mha_destroy(mha);
}

/* ---- 5. the multi-head layer ----------------------------------------------------- */

static void test_mha_cached(void **state)
{
    (void)state;
    enum { E = 32, NH = 4, NKV = 2, L = 45 };
    tu_rng rng;
    tu_rng_seed(&rng, 31);
    attn_mha *mha = NULL;
    assert_int_equal(attn_mha_create(&mha, E, NH, NKV, E, E, 1), ATTN_OK);
    int64_t count;
    assert_int_equal(attn_mha_param_count(mha, &count), ATTN_OK);
    float *params = ru_floats(count);
    tu_fill_normal(&rng, params, (size_t)count, 0.0f, 0.3f);
    assert_int_equal(attn_mha_set_params(mha, params), ATTN_OK);
    assert_int_equal(attn_mha_set_causal(mha, ATTN_CAUSAL_TOP_LEFT), ATTN_OK);
    assert_int_equal(attn_mha_set_window(mha, 9, 0), ATTN_OK);
    attn_rope *rope = NULL;
    assert_int_equal(attn_rope_create(&rope, E / NH, E / NH, 10000.0f, ATTN_ROPE_HALF),
                     ATTN_OK);
    assert_int_equal(attn_mha_set_rope(mha, rope), ATTN_OK);
    attn_rope_destroy(rope);

    const int64_t lens[2] = {L, 17};
    float *x[2], *full[2], *step[2];
    attn_context *ctx = context(2);
    for (int i = 0; i < 2; i++) {
        x[i] = ru_floats(lens[i] * E), full[i] = ru_floats(lens[i] * E);
        step[i] = ru_floats(lens[i] * E);
        tu_fill_normal(&rng, x[i], (size_t)(lens[i] * E), 0.0f, 1.0f);
        assert_int_equal(attn_mha_forward(ctx, mha, 1, lens[i], lens[i], x[i], x[i], x[i], NULL,
                                          full[i], NULL),
                         ATTN_OK);
    }
    attn_kv_cache *cache = NULL;
    assert_int_equal(attn_kv_cache_create(&cache, NKV, E / NH, E / NH, 4, 32), ATTN_OK);
    int64_t ids[2];
    for (int i = 0; i < 2; i++)
        assert_int_equal(attn_kv_cache_seq_open(cache, &ids[i]), ATTN_OK);
    /* Both sequences token by token in one call while both last, then the
     * longer one alone. */
    float xin[2 * E], out[2 * E];
    for (int64_t t = 0; t < L; t++) {
        int64_t seqs[2], cu[3] = {0, 0, 0};
        int m = 0;
        for (int i = 0; i < 2; i++)
            if (t < lens[i]) {
                memcpy(xin + m * E, x[i] + t * E, E * sizeof(float));
                seqs[m] = ids[i];
                cu[m + 1] = cu[m] + 1;
                m++;
            }
        assert_int_equal(attn_mha_forward_cached(ctx, mha, cache, m, seqs, cu, xin, out),
                         ATTN_OK);
        m = 0;
        for (int i = 0; i < 2; i++)
            if (t < lens[i])
                memcpy(step[i] + t * E, out + (m++) * E, E * sizeof(float));
    }
    for (int i = 0; i < 2; i++) {
        char what[64];
        snprintf(what, sizeof what, "mha cached, sequence %d (%lld tokens)", i,
                 (long long)lens[i]);
        check_rows(what, step[i], full[i], lens[i] * E, E, SAME_TOL);
        free(x[i]), free(full[i]), free(step[i]);
    }
    free(params);
    attn_kv_cache_destroy(cache);
    attn_context_destroy(ctx);
    attn_mha_destroy(mha);
    print_worst("mha_cached", 0);
}

/* ---- 6. merging partial results ---------------------------------------------------- */

static void test_merge_partials(void **state)
{
    (void)state;
    /* Keys 0..29 split into parts [0,10), [10,10) (empty), [10,30); each
     * part's out and lse from attn_sdpa_forward on its keys. */
    const int64_t Lq = 6, D = 8, bounds[4] = {0, 10, 10, 30};
    tu_rng rng;
    tu_rng_seed(&rng, 41);
    float *q = ru_floats(Lq * D), *k = ru_floats(30 * D), *v = ru_floats(30 * D);
    tu_fill_normal(&rng, q, (size_t)(Lq * D), 0.0f, 1.5f);
    tu_fill_normal(&rng, k, 30 * D, 0.0f, 1.5f);
    tu_fill_uniform(&rng, v, 30 * D, -1.0f, 1.0f);
    attn_context *ctx = context(1);
    float *outs[3], *lses[3];
    for (int p = 0; p < 3; p++) {
        int64_t n = bounds[p + 1] - bounds[p];
        attn_sdpa *op = NULL;
        assert_int_equal(attn_sdpa_create(&op, 1, 1, 1, Lq, n, D, D), ATTN_OK);
        outs[p] = ru_floats(Lq * D), lses[p] = ru_floats(Lq);
        assert_int_equal(attn_sdpa_forward(ctx, op, q, k + bounds[p] * D, v + bounds[p] * D,
                                           NULL, outs[p], NULL, lses[p]),
                         ATTN_OK);
        attn_sdpa_destroy(op);
    }
    for (int64_t i = 0; i < Lq; i++)
        assert_true(isinf(lses[1][i]) && lses[1][i] < 0);
    ref_shape rs = {1, 1, 1, Lq, 30, D, D, REF_BHSD, REF_CAUSAL_NONE,
                    (double)(float)(1.0 / sqrt((double)D)), NULL};
    double *ref_out = ru_doubles(Lq * D), *ref_lse = ru_doubles(Lq);
    assert_int_equal(ref_sdpa(&rs, q, k, v, NULL, ref_out, NULL, ref_lse), 0);
    float *out = ru_floats(Lq * D), *lse = ru_floats(Lq);
    const float *const po[3] = {outs[0], outs[1], outs[2]};
    const float *const pl[3] = {lses[0], lses[1], lses[2]};
    assert_int_equal(attn_merge_partials(3, Lq, D, po, pl, out, lse), ATTN_OK);
    assert_true(ru_close("merged out", out, ref_out, Lq * D, D, REF_TOL));
    check_lse("merged", lse, ref_lse, Lq, REF_TOL);
    /* In place over part 0, and FlashAttention-2's +∞ for the empty part. */
    for (int64_t i = 0; i < Lq; i++)
        lses[1][i] = INFINITY;
    assert_int_equal(attn_merge_partials(3, Lq, D, po, pl, outs[0], lses[0]), ATTN_OK);
    assert_true(ru_same_bits("in place", outs[0], out, Lq * D));
    /* Every part empty: zeros and −∞. */
    float e_out[2 * 8], e_lse[2] = {-INFINITY, INFINITY}, m_out[8], m_lse[1];
    for (int i = 0; i < 16; i++)
        e_out[i] = NAN;  /* never read */
    const float *const eo[2] = {e_out, e_out + 8};
    const float *const el[2] = {&e_lse[0], &e_lse[1]};
    assert_int_equal(attn_merge_partials(2, 1, 8, eo, el, m_out, m_lse), ATTN_OK);
    for (int i = 0; i < 8; i++)
        assert_true(m_out[i] == 0.0f);
    assert_true(isinf(m_lse[0]) && m_lse[0] < 0);
    /* Errors. */
    assert_int_equal(attn_merge_partials(0, Lq, D, po, pl, out, lse), ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_merge_partials(3, -1, D, po, pl, out, lse), ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_merge_partials(3, Lq, 0, po, pl, out, lse), ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_merge_partials(3, Lq, D, NULL, pl, out, lse), ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_merge_partials(3, Lq, D, po, pl, NULL, lse), ATTN_ERR_NULL_POINTER);
    const float *const bad[3] = {outs[0], NULL, outs[2]};
    assert_int_equal(attn_merge_partials(3, Lq, D, bad, pl, out, lse), ATTN_ERR_NULL_POINTER);
    assert_non_null(strstr(attn_last_error(), "outs[1]"));
    assert_int_equal(attn_merge_partials(3, Lq, D, po, pl, outs[2], lse),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(attn_last_error(), "overlaps"));
    /* In place over outs[0] is allowed, but not with lses[0] inside out. */
    const float *const po_in[3] = {out, outs[1], outs[2]};
    const float *const pl_in[3] = {out + 2, lses[1], lses[2]};
    assert_int_equal(attn_merge_partials(3, Lq, D, po_in, pl_in, out, lse),
                     ATTN_ERR_INVALID_ARGUMENT);
    for (int p = 0; p < 3; p++)
        free(outs[p]), free(lses[p]);
    free(q), free(k), free(v), free(ref_out), free(ref_lse), free(out), free(lse);
    attn_context_destroy(ctx);
}

/* ---- 7. errors --------------------------------------------------------------------- */

static void test_errors(void **state)
{
    (void)state;
    attn_kv_cache *cache = NULL;
    assert_int_equal(attn_kv_cache_create(NULL, 1, 4, 4, 8, 4), ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_kv_cache_create(&cache, 0, 4, 4, 8, 4), ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_kv_cache_create(&cache, 1, 4, 4, 0, 4), ATTN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(attn_last_error(), "page_size"));
    assert_int_equal(attn_kv_cache_create(&cache, 1, 4, 4, 8, 0), ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_kv_cache_create(&cache, 1 << 20, 1 << 20, 4, 1 << 20, 1 << 20),
                     ATTN_ERR_SIZE_OVERFLOW);
    assert_null(cache);
    assert_int_equal(attn_kv_cache_create(&cache, 2, 4, 6, 8, 4), ATTN_OK);
    int64_t s0, s1, len;
    assert_int_equal(attn_kv_cache_seq_open(NULL, &s0), ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_kv_cache_seq_open(cache, NULL), ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_kv_cache_seq_open(cache, &s0), ATTN_OK);
    assert_int_equal(attn_kv_cache_seq_close(cache, 5), ATTN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(attn_last_error(), "not open"));
    assert_int_equal(attn_kv_cache_seq_close(cache, -1), ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_kv_cache_seq_fork(cache, 3, &s1), ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_kv_cache_seq_fork(cache, s0, NULL), ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_kv_cache_seq_len(cache, 9, &len), ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_kv_cache_seq_len(cache, s0, NULL), ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_kv_cache_seq_truncate(cache, s0, 1), ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_kv_cache_seq_truncate(cache, s0, -1), ATTN_ERR_INVALID_ARGUMENT);
    float k[3 * 2 * 4] = {0}, v[3 * 2 * 6] = {0};
    assert_int_equal(attn_kv_cache_append(cache, s0, -1, k, v), ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_kv_cache_append(cache, s0, 3, NULL, v), ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_kv_cache_append(cache, s0, 3, k, NULL), ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_kv_cache_append(cache, 7, 3, k, v), ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_kv_cache_append(cache, s0, 0, NULL, NULL), ATTN_OK);
    assert_int_equal(attn_kv_cache_append(cache, s0, 3, k, v), ATTN_OK);
    assert_int_equal(attn_kv_cache_seq_len(cache, s0, &len), ATTN_OK);
    assert_int_equal(len, 3);
    /* A closed sequence's id is not open any more. */
    assert_int_equal(attn_kv_cache_seq_open(cache, &s1), ATTN_OK);
    assert_int_equal(attn_kv_cache_seq_close(cache, s1), ATTN_OK);
    assert_int_equal(attn_kv_cache_append(cache, s1, 1, k, v), ATTN_ERR_INVALID_ARGUMENT);

    attn_context *ctx = context(1);
    attn_sdpa *op = NULL, *wrong = NULL;
    assert_int_equal(attn_sdpa_create(&op, 1, 4, 2, 1, 1, 4, 6), ATTN_OK);
    assert_int_equal(attn_sdpa_create(&wrong, 1, 4, 2, 1, 1, 4, 4), ATTN_OK);
    float q[2 * 4 * 4] = {0}, out[2 * 4 * 6], lse[8];
    for (int i = 0; i < 48; i++)
        out[i] = 7.0f;
    int64_t seqs[2] = {s0, s0}, cu[3] = {0, 1, 2}, bad_cu[3] = {1, 1, 2}, down[3] = {0, 2, 1};
    assert_int_equal(attn_sdpa_forward_cached(NULL, op, cache, 1, seqs, cu, q, out, lse),
                     ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_sdpa_forward_cached(ctx, NULL, cache, 1, seqs, cu, q, out, lse),
                     ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_sdpa_forward_cached(ctx, op, NULL, 1, seqs, cu, q, out, lse),
                     ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_sdpa_forward_cached(ctx, op, cache, -1, seqs, cu, q, out, lse),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_sdpa_forward_cached(ctx, op, cache, 1, NULL, cu, q, out, lse),
                     ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_sdpa_forward_cached(ctx, op, cache, 1, seqs, NULL, q, out, lse),
                     ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_sdpa_forward_cached(ctx, op, cache, 2, seqs, bad_cu, q, out, lse),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(attn_last_error(), "cu_q[0]"));
    assert_int_equal(attn_sdpa_forward_cached(ctx, op, cache, 2, seqs, down, q, out, lse),
                     ATTN_ERR_INVALID_ARGUMENT);
    int64_t closed[1] = {s1};
    assert_int_equal(attn_sdpa_forward_cached(ctx, op, cache, 1, closed, cu, q, out, lse),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_int_equal(attn_sdpa_forward_cached(ctx, wrong, cache, 1, seqs, cu, q, out, lse),
                     ATTN_ERR_SHAPE_MISMATCH);
    assert_int_equal(attn_sdpa_forward_cached(ctx, op, cache, 1, seqs, cu, NULL, out, lse),
                     ATTN_ERR_NULL_POINTER);
    assert_int_equal(attn_sdpa_forward_cached(ctx, op, cache, 1, seqs, cu, q, NULL, lse),
                     ATTN_ERR_NULL_POINTER);
    for (int i = 0; i < 48; i++)
        assert_true(out[i] == 7.0f);
    /* The same sequence twice is fine for reading; no sequence is too. */
    assert_int_equal(attn_sdpa_forward_cached(ctx, op, cache, 2, seqs, cu, q, out, lse),
                     ATTN_OK);
    assert_int_equal(attn_sdpa_forward_cached(ctx, op, cache, 0, NULL, NULL, NULL, NULL, NULL),
                     ATTN_OK);
    int64_t no_rows[2] = {0, 0};  /* a sequence with no new row: q, out may be NULL */
    assert_int_equal(attn_sdpa_forward_cached(ctx, op, cache, 1, seqs, no_rows, NULL, NULL, NULL),
                     ATTN_OK);

    attn_mha *mha = NULL, *cross = NULL;
    assert_int_equal(attn_mha_create(&mha, 8, 4, 2, 8, 8, 0), ATTN_OK);
    assert_int_equal(attn_mha_create(&cross, 8, 4, 2, 6, 8, 0), ATTN_OK);
    float x[2 * 8] = {0}, y[2 * 8];
    assert_int_equal(attn_mha_forward_cached(ctx, mha, cache, 1, seqs, cu, x, y),
                     ATTN_ERR_STATE);  /* weights not set */
    int64_t count;
    assert_int_equal(attn_mha_param_count(mha, &count), ATTN_OK);
    float *params = calloc((size_t)count, sizeof *params);
    assert_int_equal(attn_mha_set_params(mha, params), ATTN_OK);
    assert_int_equal(attn_mha_param_count(cross, &count), ATTN_OK);
    float *params2 = calloc((size_t)count, sizeof *params2);
    assert_int_equal(attn_mha_set_params(cross, params2), ATTN_OK);
    assert_int_equal(attn_mha_forward_cached(ctx, cross, cache, 1, seqs, cu, x, y),
                     ATTN_ERR_SHAPE_MISMATCH);
    assert_int_equal(attn_mha_forward_cached(ctx, mha, cache, 2, seqs, cu, x, y),
                     ATTN_ERR_INVALID_ARGUMENT);
    assert_non_null(strstr(attn_last_error(), "twice"));
    /* head_dim 2 against the cache's 4/6: a shape mismatch. */
    assert_int_equal(attn_mha_forward_cached(ctx, mha, cache, 1, seqs, cu, x, y),
                     ATTN_ERR_SHAPE_MISMATCH);
    assert_int_equal(attn_kv_cache_seq_len(cache, s0, &len), ATTN_OK);
    assert_int_equal(len, 3);
    free(params), free(params2);
    attn_mha_destroy(mha);
    attn_mha_destroy(cross);
    attn_sdpa_destroy(op);
    attn_sdpa_destroy(wrong);
    attn_context_destroy(ctx);
    attn_kv_cache_destroy(cache);
    attn_kv_cache_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_decode_plain_gqa),
        cmocka_unit_test(test_decode_modifiers),
        cmocka_unit_test(test_decode_split_keys),
        cmocka_unit_test(test_fork_and_truncate),
        cmocka_unit_test(test_out_of_pages),
        cmocka_unit_test(test_mha_cached),
        cmocka_unit_test(test_mha_cached_shared_page),
        cmocka_unit_test(test_merge_partials),
        cmocka_unit_test(test_errors),
    };
    return cmocka_run_group_tests_name("decode", tests, NULL, NULL);
}
