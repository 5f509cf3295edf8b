/*
 * test_edge.c — attn_sdpa_forward at the edges of the softmax:
 *  - a query row with no visible key (valid length 0, an all-zero bool row,
 *    -INFINITY bias on every key, causal bottom-right with len_q > len_kv)
 *    gives exactly 0 in out and weights and -INFINITY in lse, never NaN, while
 *    the other rows still match the float64 reference;
 *  - -INFINITY bias on all keys but one gives weight exactly 1 on that key;
 *  - a NaN in one query row changes only that row (the other rows are bitwise
 *    those of the run without the NaN, and match the reference);
 *  - NaN in keys/values at or beyond a batch row's per-batch valid length
 *    reaches no output (keys there are never read);
 *  - logits of ~1e6 neither overflow nor underflow (row max subtracted);
 *  - all-equal logits give uniform weights.
 */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <attn.h>

#include "test_util.h"

#define TOL 1e-5

typedef struct shape {
    int64_t B, Hq, Hkv, Lq, Lkv, D, Dv;
    attn_layout layout;
    attn_causal causal;
    float scale; /* 0: default */
} shape;

/* Inputs of one problem; the test fills rm (and sets the attn_mask alike). */
typedef struct prob {
    shape s;
    int64_t nq, nk, nv, no, nw, nl;
    float *q, *k, *v;
    ref_mask rm;
    attn_mask *mask;
} prob;

/* Outputs of the library (res) and of the reference (dres). */
typedef struct res { float *out, *w, *lse; } res;
typedef struct dres { double *out, *w, *lse; } dres;

static void *xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);
    assert_non_null(p);
    return p;
}

static void prob_init(prob *p, shape s, uint64_t seed)
{
    tu_rng rng;
    memset(p, 0, sizeof *p);
    p->s = s;
    p->nq = s.B * s.Hq * s.Lq * s.D;
    p->nk = s.B * s.Hkv * s.Lkv * s.D;
    p->nv = s.B * s.Hkv * s.Lkv * s.Dv;
    p->no = s.B * s.Hq * s.Lq * s.Dv;
    p->nw = s.B * s.Hq * s.Lq * s.Lkv;
    p->nl = s.B * s.Hq * s.Lq;
    p->q = xmalloc((size_t)p->nq * sizeof(float));
    p->k = xmalloc((size_t)p->nk * sizeof(float));
    p->v = xmalloc((size_t)p->nv * sizeof(float));
    tu_rng_seed(&rng, seed);
    tu_fill_normal(&rng, p->q, (size_t)p->nq, 0.0f, 1.0f);
    tu_fill_normal(&rng, p->k, (size_t)p->nk, 0.0f, 1.0f);
    tu_fill_uniform(&rng, p->v, (size_t)p->nv, -2.0f, 2.0f);
    assert_int_equal(attn_mask_create(&p->mask), ATTN_OK);
}

static void prob_free(prob *p)
{
    attn_mask_destroy(p->mask);
    free(p->q), free(p->k), free(p->v);
}

/* Set one mask kind on both the library's mask and the reference's. */
static void use_lengths(prob *p, const int64_t *len, int per_query)
{
    p->rm.lengths = len, p->rm.per_query = per_query;
    assert_int_equal(attn_mask_set_kv_lengths(p->mask, len, p->s.B, p->s.Lq, per_query),
                     ATTN_OK);
}

static void use_keep(prob *p, const uint8_t *keep, int64_t mb, int64_t mh, int64_t mq)
{
    p->rm.keep = keep, p->rm.keep_b = mb, p->rm.keep_h = mh, p->rm.keep_q = mq;
    assert_int_equal(attn_mask_set_bool(p->mask, keep, mb, mh, mq, p->s.Lkv), ATTN_OK);
}

static void use_bias(prob *p, const float *bias, int64_t mb, int64_t mh, int64_t mq)
{
    p->rm.bias = bias, p->rm.bias_b = mb, p->rm.bias_h = mh, p->rm.bias_q = mq;
    assert_int_equal(attn_mask_set_bias(p->mask, bias, mb, mh, mq, p->s.Lkv), ATTN_OK);
}

static double scale_of(const shape *s)
{
    return s->scale != 0.0f ? (double)s->scale : (double)(float)(1.0 / sqrt((double)s->D));
}

/* Runs libattn on `threads` threads into fresh NaN-filled outputs. */
static void run_lib(const prob *p, int threads, res *r)
{
    const shape *s = &p->s;
    attn_context *ctx = NULL;
    attn_sdpa *op = NULL;
    r->out = xmalloc((size_t)p->no * sizeof(float));
    r->w = xmalloc((size_t)p->nw * sizeof(float));
    r->lse = xmalloc((size_t)p->nl * sizeof(float));
    tu_fill_nan(r->out, (size_t)p->no);
    tu_fill_nan(r->w, (size_t)p->nw);
    tu_fill_nan(r->lse, (size_t)p->nl);
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    assert_int_equal(attn_context_set_num_threads(ctx, threads), ATTN_OK);
    assert_int_equal(attn_sdpa_create(&op, s->B, s->Hq, s->Hkv, s->Lq, s->Lkv, s->D, s->Dv),
                     ATTN_OK);
    assert_int_equal(attn_sdpa_set_layout(op, s->layout), ATTN_OK);
    assert_int_equal(attn_sdpa_set_causal(op, s->causal), ATTN_OK);
    if (s->scale != 0.0f)
        assert_int_equal(attn_sdpa_set_scale(op, s->scale), ATTN_OK);
    attn_status st = attn_sdpa_forward(ctx, op, p->q, p->k, p->v, p->mask, r->out, r->w, r->lse);
    if (st != ATTN_OK)
        print_error("%s: %s\n", attn_status_string(st), attn_last_error());
    assert_int_equal(st, ATTN_OK);
    attn_sdpa_destroy(op);
    attn_context_destroy(ctx);
}

static void run_ref(const prob *p, dres *d)
{
    const shape *s = &p->s;
    ref_shape rs = {s->B, s->Hq, s->Hkv, s->Lq, s->Lkv, s->D, s->Dv, (int)s->layout,
                    (int)s->causal, scale_of(s), NULL};
    d->out = xmalloc((size_t)p->no * sizeof(double));
    d->w = xmalloc((size_t)p->nw * sizeof(double));
    d->lse = xmalloc((size_t)p->nl * sizeof(double));
    assert_int_equal(ref_sdpa(&rs, p->q, p->k, p->v, &p->rm, d->out, d->w, d->lse), 0);
}

static void res_free(res *r) { free(r->out), free(r->w), free(r->lse); }
static void dres_free(dres *d) { free(d->out), free(d->w), free(d->lse); }

static void expect_close(const char *what, const float *a, const double *r, int64_t n,
                         int64_t row_len)
{
    int64_t at;
    double err = row_len ? tu_max_err(a, r, n, row_len, &at) : tu_max_err_lse(a, r, n, &at);
    if (err > TOL) {
        print_error("%s: normalized error %.3g at element %lld (libattn %.9g, reference %.9g)\n",
                    what, err, (long long)at, (double)a[at], r[at]);
        fail();
    }
}

/* All three outputs within TOL of the reference (exact zeros, -INFINITY and
 * NaN included, see tu_max_err). */
static void expect_match_ref(const prob *p, const res *r, const dres *d)
{
    expect_close("out", r->out, d->out, p->no, p->s.Dv);
    expect_close("weights", r->w, d->w, p->nw, p->s.Lkv);
    expect_close("lse", r->lse, d->lse, p->nl, 0);
}

/* Offset of row (b, h, i) of out in the op's layout (its Dv features follow). */
static int64_t out_row(const prob *p, int64_t b, int64_t h, int64_t i)
{
    return ref_index((int)p->s.layout, p->s.Hq, p->s.Lq, p->s.Dv, b, h, i, 0);
}

/* The rows with no visible key (the reference's lse is -INFINITY) are exact
 * zeros / -INFINITY in the library's output; there must be `expected` such
 * rows; nothing is NaN; everything matches the reference. */
static void expect_empty_rows(const prob *p, const res *r, const dres *d, int64_t expected)
{
    const shape *s = &p->s;
    int64_t empty = 0;
    for (int64_t b = 0; b < s->B; b++)
        for (int64_t h = 0; h < s->Hq; h++)
            for (int64_t i = 0; i < s->Lq; i++) {
                int64_t row = (b * s->Hq + h) * s->Lq + i;
                if (d->lse[row] != -INFINITY)
                    continue;
                empty++;
                int ok = r->lse[row] == -INFINITY;
                for (int64_t j = 0; j < s->Lkv; j++)
                    ok &= r->w[row * s->Lkv + j] == 0.0f;
                for (int64_t x = 0; x < s->Dv; x++)
                    ok &= r->out[out_row(p, b, h, i) + x] == 0.0f;
                if (!ok) {
                    print_error("row (b %lld, h %lld, i %lld) has no visible key but is not "
                                "exactly 0 / -inf (lse %g, out[0] %g, w[0] %g)\n",
                                (long long)b, (long long)h, (long long)i, (double)r->lse[row],
                                (double)r->out[out_row(p, b, h, i)],
                                s->Lkv ? (double)r->w[row * s->Lkv] : 0.0);
                    fail();
                }
            }
    assert_int_equal(empty, expected);
    assert_int_equal(tu_count_nonfinite(r->out, p->no), 0);
    assert_int_equal(tu_count_nonfinite(r->w, p->nw), 0);
    for (int64_t x = 0; x < p->nl; x++)
        assert_false(isnan(r->lse[x]));
    expect_match_ref(p, r, d);
}

/* Runs both and checks the empty rows and the rest. */
static void check_empty(prob *p, int64_t expected)
{
    res r;
    dres d;
    run_lib(p, 1, &r);
    run_ref(p, &d);
    expect_empty_rows(p, &r, &d, expected);
    res_free(&r), dres_free(&d);
    prob_free(p);
}

/* ---- fully masked rows ---------------------------------------------------- */

static void test_zero_per_batch_length_gives_zero_rows(void **state)
{
    (void)state;
    static const int64_t len[3] = {3, 0, 6};
    for (int layout = 0; layout < 2; layout++) {
        prob p;
        prob_init(&p, (shape){3, 4, 2, 5, 6, 8, 7, (attn_layout)layout, 0, 0}, 11);
        use_lengths(&p, len, 0);
        check_empty(&p, 4 * 5); /* batch row 1: every head and query */
    }
}

static void test_zero_per_query_length_gives_zero_rows(void **state)
{
    (void)state;
    static const int64_t len[2 * 4] = {0, 2, 5, 0, 1, 0, 0, 5};
    prob p;
    prob_init(&p, (shape){2, 3, 1, 4, 5, 6, 6, ATTN_LAYOUT_BSHD, 0, 0}, 12);
    use_lengths(&p, len, 1);
    check_empty(&p, 4 * 3); /* 4 zero lengths, 3 heads each */
}

static void test_all_zero_bool_row_gives_zero_row(void **state)
{
    (void)state;
    enum { B = 2, H = 3, LQ = 4, LKV = 6 };
    static uint8_t keep[B * 1 * LQ * LKV]; /* [B, 1, Lq, Lkv]: broadcast on heads */
    for (int x = 0; x < B * LQ * LKV; x++)
        keep[x] = (uint8_t)(x % 3 != 0);
    memset(keep + (0 * LQ + 1) * LKV, 0, LKV); /* b 0, query 1 */
    memset(keep + (1 * LQ + 3) * LKV, 0, LKV); /* b 1, query 3 */
    prob p;
    prob_init(&p, (shape){B, H, 1, LQ, LKV, 5, 4, ATTN_LAYOUT_BHSD, 0, 0}, 13);
    use_keep(&p, keep, B, 1, LQ);
    check_empty(&p, 2 * H);
}

static void test_neg_inf_bias_on_every_key_gives_zero_row(void **state)
{
    (void)state;
    enum { H = 2, LQ = 5, LKV = 7 };
    static float bias[H * LQ * LKV]; /* [1, H, Lq, Lkv] */
    tu_rng rng;
    tu_rng_seed(&rng, 14);
    tu_fill_normal(&rng, bias, H * LQ * LKV, 0.0f, 2.0f);
    for (int j = 0; j < LKV; j++) {
        bias[(0 * LQ + 2) * LKV + j] = -INFINITY; /* head 0, query 2 */
        bias[(1 * LQ + 4) * LKV + j] = -INFINITY; /* head 1, query 4 */
    }
    bias[(1 * LQ + 0) * LKV + 3] = -INFINITY; /* a lone -inf: not an empty row */
    for (int layout = 0; layout < 2; layout++) {
        prob p;
        prob_init(&p, (shape){3, H, 1, LQ, LKV, 9, 3, (attn_layout)layout, 0, 0}, 15);
        use_bias(&p, bias, 1, H, LQ);
        check_empty(&p, 2 * 3); /* 2 rows in each of 3 batch rows */
    }
}

static void test_causal_bottom_right_lq_gt_lkv_gives_zero_rows(void **state)
{
    (void)state;
    /* query i sees j <= i + 4 - 7: queries 0..2 see nothing. */
    for (int layout = 0; layout < 2; layout++) {
        prob p;
        prob_init(&p, (shape){2, 4, 2, 7, 4, 8, 8, (attn_layout)layout,
                              ATTN_CAUSAL_BOTTOM_RIGHT, 0},
                  16);
        check_empty(&p, 2 * 4 * 3);
    }
}

static void test_bias_neg_inf_on_all_keys_but_one_gives_weight_one(void **state)
{
    (void)state;
    enum { LQ = 4, LKV = 9 };
    static float bias[LQ * LKV]; /* [1, 1, Lq, Lkv] */
    static const int only[LQ] = {0, 8, 3, 5};
    for (int i = 0; i < LQ; i++)
        for (int j = 0; j < LKV; j++)
            bias[i * LKV + j] = j == only[i] ? 0.5f : -INFINITY;
    prob p;
    prob_init(&p, (shape){2, 2, 2, LQ, LKV, 6, 5, ATTN_LAYOUT_BSHD, 0, 0}, 17);
    use_bias(&p, bias, 1, 1, LQ);
    res r;
    dres d;
    run_lib(&p, 1, &r);
    run_ref(&p, &d);
    for (int64_t row = 0; row < p.nl; row++) {
        int i = (int)(row % LQ);
        for (int j = 0; j < LKV; j++)
            assert_true(r.w[row * LKV + j] == (j == only[i] ? 1.0f : 0.0f));
    }
    expect_empty_rows(&p, &r, &d, 0);
    res_free(&r), dres_free(&d);
    prob_free(&p);
}

/* ---- NaN confinement -------------------------------------------------------- */

static int same_float(float a, float b)
{
    return memcmp(&a, &b, sizeof a) == 0;
}

/* n elements all NaN (nan != 0), or bitwise equal to `clean`. */
static void expect_nan_or_same(const float *dirty, const float *clean, int64_t n, int nan)
{
    for (int64_t x = 0; x < n; x++)
        assert_true(nan ? isnan(dirty[x]) : same_float(dirty[x], clean[x]));
}

static void test_nan_in_one_query_row_reaches_only_that_row(void **state)
{
    (void)state;
    const int64_t nb = 1, nh = 4, ni = 2; /* the poisoned row (b, h, i) */
    for (int layout = 0; layout < 2; layout++) {
        prob p;
        res clean, dirty;
        dres d;
        prob_init(&p, (shape){2, 6, 2, 5, 8, 7, 6, (attn_layout)layout, 0, 0.5f}, 18);
        run_lib(&p, 2, &clean);
        p.q[ref_index(layout, 6, 5, 7, nb, nh, ni, 3)] = NAN;
        run_lib(&p, 2, &dirty);
        run_ref(&p, &d); /* NaN in that row, finite elsewhere */
        for (int64_t b = 0; b < 2; b++)
            for (int64_t h = 0; h < 6; h++)
                for (int64_t i = 0; i < 5; i++) {
                    int64_t row = (b * 6 + h) * 5 + i, o = out_row(&p, b, h, i);
                    int poisoned = b == nb && h == nh && i == ni;
                    expect_nan_or_same(dirty.out + o, clean.out + o, 6, poisoned);
                    expect_nan_or_same(dirty.w + row * 8, clean.w + row * 8, 8, poisoned);
                    expect_nan_or_same(dirty.lse + row, clean.lse + row, 1, poisoned);
                }
        expect_match_ref(&p, &dirty, &d);
        res_free(&clean), res_free(&dirty), dres_free(&d);
        prob_free(&p);
    }
}

static void test_nan_in_kv_beyond_per_batch_length_reaches_no_output(void **state)
{
    (void)state;
    static const int64_t len[3] = {5, 0, 9};
    enum { B = 3, HQ = 4, HKV = 2, LQ = 6, LKV = 9, D = 5, DV = 4 };
    static float bias[LQ * LKV]; /* [1, 1, Lq, Lkv] */
    tu_rng rng;
    tu_rng_seed(&rng, 19);
    tu_fill_normal(&rng, bias, LQ * LKV, 0.0f, 1.0f);
    for (int layout = 0; layout < 2; layout++)
        for (int causal = 0; causal < 3; causal++) {
            prob p;
            res clean, dirty;
            dres d;
            prob_init(&p, (shape){B, HQ, HKV, LQ, LKV, D, DV, (attn_layout)layout,
                                  (attn_causal)causal, 0},
                      20);
            use_lengths(&p, len, 0);
            use_bias(&p, bias, 1, 1, LQ);
            run_lib(&p, 2, &clean);
            run_ref(&p, &d); /* on clean data */
            for (int64_t b = 0; b < B; b++)
                for (int64_t g = 0; g < HKV; g++)
                    for (int64_t j = len[b]; j < LKV; j++) {
                        for (int64_t x = 0; x < D; x++)
                            p.k[ref_index(layout, HKV, LKV, D, b, g, j, x)] = NAN;
                        for (int64_t x = 0; x < DV; x++)
                            p.v[ref_index(layout, HKV, LKV, DV, b, g, j, x)] = NAN;
                    }
            run_lib(&p, 2, &dirty);
            expect_empty_rows(&p, &dirty, &d, HQ * LQ); /* batch row 1 */
            /* never read: bitwise what the clean run gave */
            assert_memory_equal(dirty.out, clean.out, (size_t)p.no * sizeof(float));
            assert_memory_equal(dirty.w, clean.w, (size_t)p.nw * sizeof(float));
            assert_memory_equal(dirty.lse, clean.lse, (size_t)p.nl * sizeof(float));
            res_free(&clean), res_free(&dirty), dres_free(&d);
            prob_free(&p);
        }
}

/* In a row that is NaN (it sees a NaN), attn.h fixes no value for the
 * weights of the keys it may not see: accept NaN there as well as 0. */
static void relax_masked_weights_of_nan_rows(const prob *p, res *r, const dres *d)
{
    for (int64_t row = 0; row < p->nl; row++)
        if (isnan(d->lse[row]))
            for (int64_t j = 0; j < p->s.Lkv; j++)
                if (d->w[row * p->s.Lkv + j] == 0.0 && isnan(r->w[row * p->s.Lkv + j]))
                    r->w[row * p->s.Lkv + j] = 0.0f;
}

/* A NaN in a key (not a value, so the 0·NaN of P·V cannot carry it) that a
 * row may not see, by each kind of mask, reaches no output of that row; the
 * rows that see it are NaN (all compared with the reference on that data). */
static void test_nan_in_key_hidden_by_each_mask_kind_stays_out(void **state)
{
    (void)state;
    enum { LQ = 4, LKV = 6, J = 2 }; /* key J holds the NaN */
    static uint8_t keep[LQ * LKV];
    static float bias[LQ * LKV];
    static const int64_t len[LQ] = {2, 2, 6, 1};
    for (int x = 0; x < LQ * LKV; x++) {
        keep[x] = x % LKV != J;
        bias[x] = x % LKV == J ? -INFINITY : 0.25f * (float)(x % 5);
    }
    static const char *const kind_name[4] = {"bool keep", "causal top-left",
                                             "per-query lengths", "-inf bias"};
    for (int kind = 0; kind < 4; kind++) {
        prob p;
        res r;
        dres d;
        attn_causal causal = kind == 1 ? ATTN_CAUSAL_TOP_LEFT : ATTN_CAUSAL_NONE;
        prob_init(&p, (shape){1, 2, 1, LQ, LKV, 5, 3, ATTN_LAYOUT_BHSD, causal, 0}, 24);
        if (kind == 0) /* no row sees J */
            use_keep(&p, keep, 1, 1, LQ);
        else if (kind == 2) /* only query 2 sees J */
            use_lengths(&p, len, 1);
        else if (kind == 3) /* no row sees J */
            use_bias(&p, bias, 1, 1, LQ);
        /* kind 1, causal top-left: queries 2 and 3 see J */
        p.k[ref_index(0, 1, LKV, 5, 0, 0, J, 1)] = NAN;
        run_lib(&p, 1, &r);
        run_ref(&p, &d);
        print_message("      NaN in key %d hidden by %s\n", J, kind_name[kind]);
        relax_masked_weights_of_nan_rows(&p, &r, &d);
        expect_match_ref(&p, &r, &d);
        res_free(&r), dres_free(&d);
        prob_free(&p);
    }
}

/* ---- numerical range ---------------------------------------------------------- */

static void test_logits_of_millions_do_not_overflow(void **state)
{
    (void)state;
    /* q = [c, x], k = [1000, y] with c in ±1500..8000, small integers x, y
     * and scale 1: every logit 1000·c + x·y (|.| up to 8e6 < 2^24) is exact in
     * float, so the library and the reference see the same logits; exp of
     * them without the row max would overflow (or underflow to 0/0). */
    static const float big[4] = {3000.0f, -3000.0f, 4000.0f, -1500.0f};
    for (int layout = 0; layout < 2; layout++) {
        prob p;
        tu_rng rng;
        tu_rng_seed(&rng, 21);
        prob_init(&p, (shape){2, 2, 1, 4, 7, 2, 3, (attn_layout)layout, 0, 1.0f}, 22);
        for (int64_t b = 0; b < 2; b++) {
            for (int64_t h = 0; h < 2; h++)
                for (int64_t i = 0; i < 4; i++) {
                    p.q[ref_index(layout, 2, 4, 2, b, h, i, 0)] = big[i] * (float)(h + 1);
                    p.q[ref_index(layout, 2, 4, 2, b, h, i, 1)] = (float)tu_randint(&rng, -3, 3);
                }
            for (int64_t j = 0; j < 7; j++) {
                p.k[ref_index(layout, 1, 7, 2, b, 0, j, 0)] = 1000.0f;
                p.k[ref_index(layout, 1, 7, 2, b, 0, j, 1)] = (float)tu_randint(&rng, -3, 3);
            }
        }
        res r;
        dres d;
        run_lib(&p, 1, &r);
        run_ref(&p, &d);
        expect_empty_rows(&p, &r, &d, 0);
        assert_int_equal(tu_count_nonfinite(r.lse, p.nl), 0);
        res_free(&r), dres_free(&d);
        prob_free(&p);
    }
}

static void test_equal_logits_give_uniform_weights(void **state)
{
    (void)state;
    enum { LKV = 11 };
    for (int variant = 0; variant < 2; variant++) {
        prob p;
        prob_init(&p, (shape){2, 3, 3, 4, LKV, 8, 5, ATTN_LAYOUT_BHSD, 0, 0}, 23);
        if (variant == 0) /* q = 0: every logit is exactly 0 */
            memset(p.q, 0, (size_t)p.nq * sizeof(float));
        else /* every key the same vector: equal logits up to rounding */
            for (int64_t x = 0; x < p.nk; x++)
                p.k[x] = p.k[x % 8];
        res r;
        dres d;
        run_lib(&p, 1, &r);
        run_ref(&p, &d);
        for (int64_t x = 0; x < p.nw; x++)
            assert_true(fabs(r.w[x] - 1.0 / LKV) <= TOL / LKV);
        if (variant == 0) {
            for (int64_t x = 0; x < p.nw; x++)
                assert_true(same_float(r.w[x], r.w[x - x % LKV]));
            for (int64_t x = 0; x < p.nl; x++)
                assert_true(fabs(r.lse[x] - log((double)LKV)) <= TOL);
        }
        expect_empty_rows(&p, &r, &d, 0);
        res_free(&r), dres_free(&d);
        prob_free(&p);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_zero_per_batch_length_gives_zero_rows),
        cmocka_unit_test(test_zero_per_query_length_gives_zero_rows),
        cmocka_unit_test(test_all_zero_bool_row_gives_zero_row),
        cmocka_unit_test(test_neg_inf_bias_on_every_key_gives_zero_row),
        cmocka_unit_test(test_causal_bottom_right_lq_gt_lkv_gives_zero_rows),
        cmocka_unit_test(test_bias_neg_inf_on_all_keys_but_one_gives_weight_one),
        cmocka_unit_test(test_nan_in_one_query_row_reaches_only_that_row),
        cmocka_unit_test(test_nan_in_kv_beyond_per_batch_length_reaches_no_output),
        cmocka_unit_test(test_nan_in_key_hidden_by_each_mask_kind_stays_out),
        cmocka_unit_test(test_logits_of_millions_do_not_overflow),
        cmocka_unit_test(test_equal_logits_give_uniform_weights),
    };
    return cmocka_run_group_tests_name("sdpa_edge_cases", tests, NULL, NULL);
}
