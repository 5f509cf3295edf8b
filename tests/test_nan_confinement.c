/*
 * test_nan_confinement.c — NaN and Inf in one query, key or value row reach
 * exactly the outputs attn.h / API.md allow, and the poisoned results agree
 * with the float64 reference (NaN where it is NaN, ±Inf where it is ±Inf,
 * within 1e-5 elsewhere):
 *
 *  - SDPA, a NaN, +Inf or -Inf in one element of one query row: only that
 *    row's out, weights and lse change; every other output is bitwise that
 *    of the clean run;
 *  - SDPA, a NaN, +Inf or -Inf in one key row: the rows that see the key
 *    follow the reference (NaN, or — for a logit of -Inf — the key simply
 *    drops out); the rows that do not see it (bool, bias, causal, lengths)
 *    are bitwise clean;
 *  - SDPA, a NaN or +Inf in one value row: weights and lse are bitwise clean
 *    everywhere; rows that see the value follow the reference; rows that do
 *    not are bitwise clean or NaN (the 0·NaN of the P·V product, which
 *    API.md allows), and bitwise clean when the value is at or beyond the
 *    batch row's per-batch valid length (never read);
 *  - the multi-head and additive layers: a NaN query row reaches only its
 *    own output row (and its weights rows); NaN or Inf in key and value rows
 *    beyond a batch row's valid length reach nothing; a NaN key row reaches
 *    only the rows that see it.
 * Every case runs on 1 and 2 threads, which agree bitwise (NaN payloads
 * included). (tests/test_edge.c has the first NaN cases; this file extends
 * them to Inf, to keys and values one row at a time, and to the layers.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <attn.h>

#include "reliability_util.h"

#define TOL 1e-5

static const float poisons[3] = {NAN, INFINITY, -INFINITY};
static const char *const poison_name[3] = {"NaN", "+Inf", "-Inf"};
static int64_t cases_checked, zero_times_nan_rows, neg_inf_only_key_rows;

/* In a row the reference makes NaN, attn.h fixes no value for the weights
 * of keys the row cannot see: accept NaN there as well as 0. */
static void relax_masked_weights(float *w, const double *rw, int64_t rows, int64_t n)
{
    for (int64_t r = 0; r < rows; r++) {
        int nan_row = 0;
        for (int64_t j = 0; j < n; j++)
            nan_row |= isnan(rw[r * n + j]);
        for (int64_t j = 0; nan_row && j < n; j++)
            if (rw[r * n + j] == 0.0 && isnan(w[r * n + j]))
                w[r * n + j] = 0.0f;
    }
}

/* The SDPA problem of these tests: two blocks of query rows, GQA, all
 * three mask kinds with some rows fully masked. */
enum { B = 2, HQ = 4, HKV = 2, LQ = 70, LKV = 10, D = 6, DV = 5 };
static const int64_t lengths[B] = {LKV, 6};
static uint8_t keep[LQ * LKV];
static float bias[B * LKV];

static void make_problem(ru_sdpa *p, int layout, int causal, uint64_t seed)
{
    tu_rng rng;
    tu_rng_seed(&rng, seed);
    for (int x = 0; x < LQ * LKV; x++)
        keep[x] = tu_uniform(&rng) < 0.8;
    tu_fill_normal(&rng, bias, B * LKV, 0.0f, 1.0f);
    ru_sdpa_init(p, B, HQ, HKV, LQ, LKV, D, DV, (attn_layout)layout, (attn_causal)causal, 0.0f,
                 seed + 1);
    assert_int_equal(ru_sdpa_lengths(p, lengths, 0), ATTN_OK);
    assert_int_equal(ru_sdpa_keep(p, keep, 1, 1, LQ), ATTN_OK);
    assert_int_equal(ru_sdpa_bias(p, bias, B, 1, 1), ATTN_OK);
}

/* libattn on 1 and 2 threads (bitwise equal, NaN included). */
static void run_both(const ru_sdpa *p, ru_out *r)
{
    ru_out r2;
    assert_int_equal(ru_sdpa_run(p, 1, r), ATTN_OK);
    assert_int_equal(ru_sdpa_run(p, 2, &r2), ATTN_OK);
    assert_true(ru_same_bits("1 vs 2 threads: out", r->out, r2.out, p->no));
    assert_true(ru_same_bits("1 vs 2 threads: weights", r->w, r2.w, p->nw));
    assert_true(ru_same_bits("1 vs 2 threads: lse", r->lse, r2.lse, p->nl));
    ru_out_free(&r2);
}

/* Row (b, h, i) of out, weights and lse: bitwise equal in a and b? */
static int same_row(const ru_sdpa *p, const ru_out *a, const ru_out *c, int64_t b, int64_t h,
                    int64_t i)
{
    int64_t row = (b * p->Hq + h) * p->Lq + i, o = ru_out_row(p, b, h, i);
    for (int64_t e = 0; e < p->Dv; e++)
        if (!ru_same_float(a->out[o + e], c->out[o + e]))
            return 0;
    for (int64_t j = 0; j < p->Lkv; j++)
        if (!ru_same_float(a->w[row * p->Lkv + j], c->w[row * p->Lkv + j]))
            return 0;
    return ru_same_float(a->lse[row], c->lse[row]);
}

/* The poisoned run agrees with the reference d (made by ru_sdpa_ref on the
 * poisoned inputs; freed here). */
static void expect_ref_d(const ru_sdpa *p, ru_out *r, ru_ref d, const char *label)
{
    relax_masked_weights(r->w, d.w, p->nl, p->Lkv);
    char what[128];
    snprintf(what, sizeof what, "%s: out", label);
    assert_true(ru_close(what, r->out, d.out, p->no, p->Dv, TOL));
    snprintf(what, sizeof what, "%s: weights", label);
    assert_true(ru_close(what, r->w, d.w, p->nw, p->Lkv, TOL));
    snprintf(what, sizeof what, "%s: lse", label);
    assert_true(ru_close(what, r->lse, d.lse, p->nl, 0, TOL));
    ru_ref_free(&d);
}

static void expect_ref(const ru_sdpa *p, ru_out *r, const char *label)
{
    ru_ref d;
    assert_int_equal(ru_sdpa_ref(p, &d), 0);
    expect_ref_d(p, r, d, label);
}

/* ---- SDPA: one query row --------------------------------------------------- */

static void test_sdpa_poisoned_query_row(void **state)
{
    (void)state;
    for (int layout = 0; layout < 2; layout++)
        for (int kind = 0; kind < 3; kind++) {
            ru_sdpa p;
            ru_out clean, dirty;
            make_problem(&p, layout, ATTN_CAUSAL_NONE, 200 + (uint64_t)(3 * layout + kind));
            run_both(&p, &clean);
            /* batch row 0, head 3, query 65 (second block), feature 2 */
            const int64_t pb = 0, ph = 3, pi = 65, pd = 2;
            p.q[ref_index(layout, HQ, LQ, D, pb, ph, pi, pd)] = poisons[kind];
            run_both(&p, &dirty);
            for (int64_t b = 0; b < B; b++)
                for (int64_t h = 0; h < HQ; h++)
                    for (int64_t i = 0; i < LQ; i++)
                        if (!(b == pb && h == ph && i == pi) && !same_row(&p, &dirty, &clean, b, h, i))
                            fail_msg("%s in query (%lld, %lld, %lld) changed row (%lld, %lld, %lld)",
                                     poison_name[kind], (long long)pb, (long long)ph,
                                     (long long)pi, (long long)b, (long long)h, (long long)i);
            /* that row: NaN (a logit of +Inf meets one of -Inf or +Inf) */
            int64_t row = (pb * HQ + ph) * LQ + pi;
            assert_true(isnan(dirty.lse[row]));
            expect_ref(&p, &dirty, "poisoned query row");
            ru_out_free(&clean), ru_out_free(&dirty), ru_sdpa_free(&p);
            cases_checked++;
        }
}

/* ---- SDPA: one key row -------------------------------------------------------- */

static void test_sdpa_poisoned_key_row(void **state)
{
    (void)state;
    for (int causal = 0; causal < 2; causal++)
        for (int kind = 0; kind < 3; kind++)
            for (int whole = 0; whole < 2; whole++) {
                ru_sdpa p;
                ru_out clean, dirty;
                ru_ref d;
                make_problem(&p, ATTN_LAYOUT_BSHD, causal, 210 + (uint64_t)(6 * causal + 2 * kind + whole));
                run_both(&p, &clean);
                assert_int_equal(ru_sdpa_ref(&p, &d), 0); /* clean: who sees the key */
                const int64_t pb = 1, pg = 1, pj = 4;
                for (int64_t e = whole ? 0 : 3; e < (whole ? D : 4); e++)
                    p.k[ref_index(ATTN_LAYOUT_BSHD, HKV, LKV, D, pb, pg, pj, e)] = poisons[kind];
                run_both(&p, &dirty);
                int64_t seeing = 0;
                for (int64_t b = 0; b < B; b++)
                    for (int64_t h = 0; h < HQ; h++)
                        for (int64_t i = 0; i < LQ; i++) {
                            int64_t row = (b * HQ + h) * LQ + i;
                            int sees = b == pb && h / (HQ / HKV) == pg && d.w[row * LKV + pj] > 0.0;
                            seeing += sees;
                            if (!sees && !same_row(&p, &dirty, &clean, b, h, i))
                                fail_msg("%s in key %lld reached row (%lld, %lld, %lld), which "
                                         "does not see it",
                                         poison_name[kind], (long long)pj, (long long)b,
                                         (long long)h, (long long)i);
                        }
                assert_true(seeing > 0);
                /* A row whose only visible key is the poisoned one, with a
                 * logit of -Inf: libattn counts that key as masked (as a
                 * -INFINITY bias), so the row has no visible key: zeros and
                 * lse -inf. The plain reference computes exp(-inf - -inf) =
                 * NaN there; attn.h fixes neither, so this is checked as what
                 * libattn does and counted. */
                ru_ref dd;
                assert_int_equal(ru_sdpa_ref(&p, &dd), 0);
                for (int64_t row = 0; row < p.nl; row++)
                    if (d.w[row * LKV + pj] == 1.0 && isnan(dd.lse[row]) &&
                        dirty.lse[row] == -INFINITY) {
                        int64_t b = row / (HQ * LQ), h = row / LQ % HQ, i = row % LQ;
                        int64_t o = ru_out_row(&p, b, h, i);
                        for (int64_t e = 0; e < DV; e++)
                            assert_true(dirty.out[o + e] == 0.0f), dd.out[o + e] = 0.0;
                        for (int64_t j = 0; j < LKV; j++)
                            assert_true(dirty.w[row * LKV + j] == 0.0f), dd.w[row * LKV + j] = 0.0;
                        dd.lse[row] = -INFINITY;
                        neg_inf_only_key_rows++;
                    }
                expect_ref_d(&p, &dirty, dd, "poisoned key row");
                ru_ref_free(&d);
                ru_out_free(&clean), ru_out_free(&dirty), ru_sdpa_free(&p);
                cases_checked++;
            }
}

/* ---- SDPA: one value row ------------------------------------------------------- */

static void test_sdpa_poisoned_value_row(void **state)
{
    (void)state;
    /* j = 3: visible in both batch rows; j = 8: beyond batch row 1's
     * per-batch length (6), never read there */
    static const int64_t js[2] = {3, 8};
    for (int kind = 0; kind < 2; kind++)
        for (int t = 0; t < 2; t++)
            for (int64_t pb = 0; pb < B; pb++) {
                ru_sdpa p;
                ru_out clean, dirty;
                ru_ref d, dd;
                make_problem(&p, ATTN_LAYOUT_BHSD, ATTN_CAUSAL_TOP_LEFT,
                             230 + (uint64_t)(4 * kind + 2 * t + pb));
                run_both(&p, &clean);
                assert_int_equal(ru_sdpa_ref(&p, &d), 0);
                const int64_t pg = 0, pj = js[t];
                for (int64_t e = 0; e < DV; e++)
                    p.v[ref_index(ATTN_LAYOUT_BHSD, HKV, LKV, DV, pb, pg, pj, e)] = poisons[kind];
                run_both(&p, &dirty);
                assert_true(ru_same_bits("value poison: weights", dirty.w, clean.w, p.nw));
                assert_true(ru_same_bits("value poison: lse", dirty.lse, clean.lse, p.nl));
                int never_read = pj >= lengths[pb];
                assert_int_equal(ru_sdpa_ref(&p, &dd), 0);
                for (int64_t b = 0; b < B; b++)
                    for (int64_t h = 0; h < HQ; h++)
                        for (int64_t i = 0; i < LQ; i++) {
                            int64_t row = (b * HQ + h) * LQ + i, o = ru_out_row(&p, b, h, i);
                            int sees = b == pb && h / (HQ / HKV) == pg && d.w[row * LKV + pj] > 0.0;
                            if (sees) { /* the reference's NaN or Inf, exactly */
                                for (int64_t e = 0; e < DV; e++)
                                    assert_true(ru_same_float(dirty.out[o + e], (float)dd.out[o + e]) ||
                                                (isnan(dirty.out[o + e]) && isnan(dd.out[o + e])));
                                continue;
                            }
                            if (same_row(&p, &dirty, &clean, b, h, i))
                                continue;
                            /* the 0·NaN of P·V: allowed unless never read */
                            int all_nan = 1;
                            for (int64_t e = 0; e < DV; e++)
                                all_nan &= isnan(dirty.out[o + e]) != 0;
                            if (never_read || b != pb || !all_nan)
                                fail_msg("%s in value %lld of batch row %lld reached row (%lld, "
                                         "%lld, %lld), which does not see it%s",
                                         poison_name[kind], (long long)pj, (long long)pb,
                                         (long long)b, (long long)h, (long long)i,
                                         never_read ? " (beyond its valid length: never read)"
                                                    : "");
                            zero_times_nan_rows++;
                        }
                if (never_read)
                    assert_true(ru_same_bits("value beyond the valid length: out", dirty.out,
                                             clean.out, p.no));
                ru_ref_free(&d), ru_ref_free(&dd);
                ru_out_free(&clean), ru_out_free(&dirty), ru_sdpa_free(&p);
                cases_checked++;
            }
}

/* ---- the layers --------------------------------------------------------------- */

enum { MB = 2, E = 8, NH = 2, NKV = 1, KD = 5, VD = 3, MLQ = 7, MLKV = 6 };
static const int64_t mlen[MB] = {MLKV, 4};

typedef struct layer_run {
    float *out, *w;
} layer_run;

/* MHA (causal top-left, per-batch lengths) on 1 and 2 threads; returns the
 * 1-thread outputs, checks the 2-thread ones are bitwise equal. */
static void run_mha(const attn_mha *m, const attn_mask *mask, const float *q, const float *k,
                    const float *v, layer_run *r)
{
    float *out2 = ru_floats(MB * MLQ * E), *w2 = ru_floats(MB * NH * MLQ * MLKV);
    r->out = ru_floats(MB * MLQ * E), r->w = ru_floats(MB * NH * MLQ * MLKV);
    for (int t = 1; t <= 2; t++) {
        attn_context *ctx = NULL;
        assert_int_equal(attn_context_create(&ctx), ATTN_OK);
        assert_int_equal(attn_context_set_num_threads(ctx, t), ATTN_OK);
        assert_int_equal(attn_mha_forward(ctx, m, MB, MLQ, MLKV, q, k, v, mask,
                                          t == 1 ? r->out : out2, t == 1 ? r->w : w2),
                         ATTN_OK);
        attn_context_destroy(ctx);
    }
    assert_true(ru_same_bits("mha 1 vs 2 threads: out", r->out, out2, MB * MLQ * E));
    assert_true(ru_same_bits("mha 1 vs 2 threads: weights", r->w, w2, MB * NH * MLQ * MLKV));
    free(out2), free(w2);
}

static void test_mha_poisoned_rows(void **state)
{
    (void)state;
    tu_rng rng;
    tu_rng_seed(&rng, 300);
    int64_t kvd = E / NH * NKV;
    const int64_t wsz[4] = {E * E, kvd * KD, kvd * VD, E * E}, bsz[4] = {E, kvd, kvd, E};
    float *w[4], *bb[4];
    attn_mha *m = NULL;
    assert_int_equal(attn_mha_create(&m, E, NH, NKV, KD, VD, 1), ATTN_OK);
    assert_int_equal(attn_mha_set_causal(m, ATTN_CAUSAL_TOP_LEFT), ATTN_OK);
    for (int x = 0; x < 4; x++) {
        w[x] = ru_floats(wsz[x]), bb[x] = ru_floats(bsz[x]);
        tu_fill_uniform(&rng, w[x], (size_t)wsz[x], -0.5f, 0.5f);
        tu_fill_uniform(&rng, bb[x], (size_t)bsz[x], -0.5f, 0.5f);
        assert_int_equal(attn_mha_set_weights(m, (attn_proj)x, w[x], bb[x]), ATTN_OK);
    }
    ru_mha rm = {E, NH, NKV, KD, VD, ATTN_CAUSAL_TOP_LEFT, {w[0], w[1], w[2], w[3]},
                 {bb[0], bb[1], bb[2], bb[3]}, NULL, 0, 0, 0.0};
    attn_mask *mask = NULL;
    assert_int_equal(attn_mask_create(&mask), ATTN_OK);
    assert_int_equal(attn_mask_set_kv_lengths(mask, mlen, MB, 0, 0), ATTN_OK);
    ref_mask refm = {.lengths = mlen};
    float *q = ru_floats(MB * MLQ * E), *k = ru_floats(MB * MLKV * KD), *v = ru_floats(MB * MLKV * VD);
    tu_fill_normal(&rng, q, MB * MLQ * E, 0.0f, 1.0f);
    tu_fill_normal(&rng, k, MB * MLKV * KD, 0.0f, 1.0f);
    tu_fill_normal(&rng, v, MB * MLKV * VD, 0.0f, 1.0f);
    layer_run clean, dirty;
    run_mha(m, mask, q, k, v, &clean);
    double *rout = ru_doubles(MB * MLQ * E), *rw = ru_doubles(MB * NH * MLQ * MLKV);

    for (int c = 0; c < 3; c++) {
        float *q2 = ru_floats(MB * MLQ * E), *k2 = ru_floats(MB * MLKV * KD);
        float *v2 = ru_floats(MB * MLKV * VD);
        memcpy(q2, q, sizeof(float) * MB * MLQ * E), memcpy(k2, k, sizeof(float) * MB * MLKV * KD);
        memcpy(v2, v, sizeof(float) * MB * MLKV * VD);
        const int64_t pb = 1, pi = 3, pj = 2; /* query row (1, 3); key row (1, 2) */
        if (c == 0)
            q2[(pb * MLQ + pi) * E + 5] = NAN;
        else if (c == 1) /* NaN keys, ±Inf values beyond batch row 1's length 4 */
            for (int64_t j = mlen[pb]; j < MLKV; j++) {
                tu_fill_nan(k2 + (pb * MLKV + j) * KD, KD);
                for (int64_t e = 0; e < VD; e++)
                    v2[(pb * MLKV + j) * VD + e] = e % 2 ? INFINITY : -INFINITY;
            }
        else
            k2[(pb * MLKV + pj) * KD + 1] = NAN;
        run_mha(m, mask, q2, k2, v2, &dirty);
        for (int64_t b = 0; b < MB; b++)
            for (int64_t i = 0; i < MLQ; i++) {
                /* c 0: only query row (pb, pi); c 1: nothing; c 2: the rows of
                 * batch row pb that see key pj (causal: i >= pj) */
                int hit = (c == 0 && b == pb && i == pi) || (c == 2 && b == pb && i >= pj);
                int same = ru_same_bits("", dirty.out + (b * MLQ + i) * E,
                                        clean.out + (b * MLQ + i) * E, E) || hit;
                for (int64_t h = 0; h < NH && !hit; h++)
                    same &= ru_same_bits("", dirty.w + ((b * NH + h) * MLQ + i) * MLKV,
                                         clean.w + ((b * NH + h) * MLQ + i) * MLKV, MLKV);
                if (!same)
                    fail_msg("mha case %d: row (%lld, %lld) changed", c, (long long)b,
                             (long long)i);
                for (int64_t e = 0; hit && e < E; e++)
                    assert_true(isnan(dirty.out[(b * MLQ + i) * E + e]));
            }
        ru_ref_mha(&rm, MB, MLQ, MLKV, q2, k2, v2, &refm, rout, rw);
        relax_masked_weights(dirty.w, rw, MB * NH * MLQ, MLKV);
        assert_true(ru_close("mha poisoned: out", dirty.out, rout, MB * MLQ * E, E, TOL));
        assert_true(ru_close("mha poisoned: weights", dirty.w, rw, MB * NH * MLQ * MLKV, MLKV, TOL));
        free(dirty.out), free(dirty.w), free(q2), free(k2), free(v2);
        cases_checked++;
    }
    free(clean.out), free(clean.w), free(rout), free(rw), free(q), free(k), free(v);
    for (int x = 0; x < 4; x++)
        free(w[x]), free(bb[x]);
    attn_mask_destroy(mask);
    attn_mha_destroy(m);
}

enum { AQ = 4, AK = 3, AH = 6, ADV = 2, ALQ = 66, ALKV = 7 };

static void test_additive_poisoned_rows(void **state)
{
    (void)state;
    tu_rng rng;
    tu_rng_seed(&rng, 400);
    static const int64_t alen[MB] = {ALKV, 5};
    static uint8_t akeep[ALQ * ALKV];
    for (int x = 0; x < ALQ * ALKV; x++) /* key 1 hidden from even query rows */
        akeep[x] = !(x % ALKV == 1 && (x / ALKV) % 2 == 0);
    float *wq = ru_floats(AH * AQ), *wk = ru_floats(AH * AK), *wv = ru_floats(AH);
    tu_fill_normal(&rng, wq, AH * AQ, 0.0f, 1.0f);
    tu_fill_normal(&rng, wk, AH * AK, 0.0f, 1.0f);
    tu_fill_normal(&rng, wv, AH, 0.0f, 1.0f);
    attn_additive *op = NULL;
    assert_int_equal(attn_additive_create(&op, AQ, AK, AH), ATTN_OK);
    assert_int_equal(attn_additive_set_weights(op, wq, wk, wv), ATTN_OK);
    attn_mask *mask = NULL;
    assert_int_equal(attn_mask_create(&mask), ATTN_OK);
    assert_int_equal(attn_mask_set_kv_lengths(mask, alen, MB, 0, 0), ATTN_OK);
    assert_int_equal(attn_mask_set_bool(mask, akeep, 1, 1, ALQ, ALKV), ATTN_OK);
    ref_mask refm = {.lengths = alen, .keep = akeep, .keep_b = 1, .keep_h = 1, .keep_q = ALQ};
    ru_additive ra = {AQ, AK, AH, wq, wk, wv};
    int64_t nq = MB * ALQ * AQ, nk = MB * ALKV * AK, nv = MB * ALKV * ADV;
    int64_t no = MB * ALQ * ADV, nw = MB * ALQ * ALKV;
    float *q = ru_floats(nq), *k = ru_floats(nk), *v = ru_floats(nv);
    tu_fill_normal(&rng, q, (size_t)nq, 0.0f, 1.0f);
    tu_fill_normal(&rng, k, (size_t)nk, 0.0f, 1.0f);
    tu_fill_normal(&rng, v, (size_t)nv, 0.0f, 1.0f);
    double *rout = ru_doubles(no), *rw = ru_doubles(nw);

    float *out[2][2], *w[2][2]; /* [clean/dirty][1 thread / 2 threads] */
    for (int c = 0; c < 3; c++) {
        float *q2 = ru_floats(nq), *k2 = ru_floats(nk), *v2 = ru_floats(nv);
        memcpy(q2, q, sizeof(float) * (size_t)nq), memcpy(k2, k, sizeof(float) * (size_t)nk);
        memcpy(v2, v, sizeof(float) * (size_t)nv);
        const int64_t pb = 1, pi = 64, pj = 1;
        if (c == 0)
            q2[(pb * ALQ + pi) * AQ] = NAN;
        else if (c == 1)
            for (int64_t j = alen[pb]; j < ALKV; j++) {
                tu_fill_nan(k2 + (pb * ALKV + j) * AK, AK);
                for (int64_t e = 0; e < ADV; e++)
                    v2[(pb * ALKV + j) * ADV + e] = INFINITY;
            }
        else
            k2[(pb * ALKV + pj) * AK + 2] = NAN;
        for (int dirty = 0; dirty < 2; dirty++)
            for (int t = 0; t < 2; t++) {
                attn_context *ctx = NULL;
                out[dirty][t] = ru_floats(no), w[dirty][t] = ru_floats(nw);
                assert_int_equal(attn_context_create(&ctx), ATTN_OK);
                assert_int_equal(attn_context_set_num_threads(ctx, t + 1), ATTN_OK);
                assert_int_equal(attn_additive_forward(ctx, op, MB, ALQ, ALKV, ADV,
                                                       dirty ? q2 : q, dirty ? k2 : k,
                                                       dirty ? v2 : v, mask, out[dirty][t],
                                                       w[dirty][t]),
                                 ATTN_OK);
                attn_context_destroy(ctx);
            }
        assert_true(ru_same_bits("additive 1 vs 2 threads", out[1][0], out[1][1], no));
        assert_true(ru_same_bits("additive 1 vs 2 threads", w[1][0], w[1][1], nw));
        for (int64_t b = 0; b < MB; b++)
            for (int64_t i = 0; i < ALQ; i++) {
                /* c 2: key 1 is seen by the odd query rows of batch row pb */
                int hit = (c == 0 && b == pb && i == pi) || (c == 2 && b == pb && i % 2 == 1);
                int64_t o = (b * ALQ + i) * ADV, r = (b * ALQ + i) * ALKV;
                if (!hit && !(ru_same_bits("", out[1][0] + o, out[0][0] + o, ADV) &&
                              ru_same_bits("", w[1][0] + r, w[0][0] + r, ALKV)))
                    fail_msg("additive case %d: row (%lld, %lld) changed", c, (long long)b,
                             (long long)i);
                for (int64_t e = 0; hit && e < ADV; e++)
                    assert_true(isnan(out[1][0][o + e]));
            }
        ru_ref_additive(&ra, MB, ALQ, ALKV, ADV, q2, k2, v2, &refm, rout, rw);
        relax_masked_weights(w[1][0], rw, MB * ALQ, ALKV);
        assert_true(ru_close("additive poisoned: out", out[1][0], rout, no, ADV, TOL));
        assert_true(ru_close("additive poisoned: weights", w[1][0], rw, nw, ALKV, TOL));
        for (int x = 0; x < 2; x++)
            for (int t = 0; t < 2; t++)
                free(out[x][t]), free(w[x][t]);
        free(q2), free(k2), free(v2);
        cases_checked++;
    }
    free(q), free(k), free(v), free(rout), free(rw), free(wq), free(wk), free(wv);
    attn_mask_destroy(mask);
    attn_additive_destroy(op);
}

static int report(void **state)
{
    (void)state;
    print_message("nan-confinement: %lld poisoned cases confined as documented and equal to the "
                  "float64 reference; %lld rows took a value's NaN through 0·NaN in P·V "
                  "(allowed); %lld rows whose only visible key got a -Inf logit gave zeros\n",
                  (long long)cases_checked, (long long)zero_times_nan_rows,
                  (long long)neg_inf_only_key_rows);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_sdpa_poisoned_query_row),
        cmocka_unit_test(test_sdpa_poisoned_key_row),
        cmocka_unit_test(test_sdpa_poisoned_value_row),
        cmocka_unit_test(test_mha_poisoned_rows),
        cmocka_unit_test(test_additive_poisoned_rows),
    };
    return cmocka_run_group_tests_name("nan_confinement", tests, NULL, report);
}
