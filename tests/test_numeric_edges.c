/*
 * test_numeric_edges.c — the softmax at the edges of float32, every case
 * compared with the float64 reference (test_util.h, tolerance 1e-5 in the
 * normalized error) and run on 1 and 2 threads (bitwise equal):
 *
 *  - logits around ±1e30, made by the scale (±2^100 ≈ ±1.27e30) or by the
 *    data (q and k entries ~1e15): no overflow, no NaN, all the weight
 *    exactly on the maximal logit (shared equally by exact ties);
 *  - finite biases of ±1e30 and −FLT_MAX (the "finite mask" of D2L's −1e6
 *    taken to the limit): all keys but one at −1e30 gives weight exactly 1,
 *    all keys at −1e30 gives uniform weights (the logits are all absorbed),
 *    +1e30 on two keys splits the weight 1/2–1/2;
 *  - all-equal logits: scale 0, a constant bias of ±1e30, −FLT_MAX, ±87 and
 *    1e-30 over q = 0, identical keys at logits of 1e30, 1000 keys: exactly
 *    uniform weights (bitwise equal within a row) and lse = c + log n;
 *  - a -INFINITY bias on every key but one, per row, on a full
 *    [B, H, Lq, Lkv] bias, also with huge logits: weight exactly 1 on that
 *    key, out bitwise its value row; when that key is also masked, zeros and
 *    lse = -INFINITY; the same for the multi-head and additive layers
 *    (against their float64 references);
 *  - Nadaraya–Watson far from every key (|(x − x_i)·w| up to 1e20): the
 *    nearest key's value, as the float64 reference gives;
 *  - subnormal q, k, v, scale and bias: finite results equal to the
 *    reference (within the spacing of subnormals for subnormal outputs), and
 *    the caller's thread still computes with subnormals afterwards (libattn
 *    sets neither flush-to-zero nor denormals-are-zero).
 * (tests/test_edge.c covers fully masked rows, logits of ~1e6 and the first
 * NaN cases; tests/test_nan_confinement.c covers NaN and Inf in inputs.)
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <attn.h>

#include "reliability_util.h"

#define TOL 1e-5

static int64_t cases_checked;

/* libattn on 1 and 2 threads (bitwise equal) and the reference agree to
 * TOL. Returns the 1-thread outputs and the reference for further checks. */
static void check(const ru_sdpa *p, const char *label, ru_out *r, ru_ref *d)
{
    ru_out r2;
    assert_int_equal(ru_sdpa_run(p, 1, r), ATTN_OK);
    assert_int_equal(ru_sdpa_run(p, 2, &r2), ATTN_OK);
    assert_int_equal(ru_sdpa_ref(p, d), 0);
    char what[160];
    snprintf(what, sizeof what, "%s: out", label);
    assert_true(ru_close(what, r->out, d->out, p->no, p->Dv, TOL));
    snprintf(what, sizeof what, "%s: weights", label);
    assert_true(ru_close(what, r->w, d->w, p->nw, p->Lkv, TOL));
    snprintf(what, sizeof what, "%s: lse", label);
    assert_true(ru_close(what, r->lse, d->lse, p->nl, 0, TOL));
    snprintf(what, sizeof what, "%s: 1 vs 2 threads", label);
    assert_true(ru_same_bits(what, r->out, r2.out, p->no));
    assert_true(ru_same_bits(what, r->w, r2.w, p->nw));
    assert_true(ru_same_bits(what, r->lse, r2.lse, p->nl));
    ru_out_free(&r2);
    cases_checked++;
}

/* Every row of weights is one-hot (one 1, the rest exactly 0) or, for an
 * empty row (lse -inf), all zero. Returns the number of one-hot rows. */
static int64_t expect_one_hot(const ru_sdpa *p, const ru_out *r)
{
    int64_t hot = 0;
    for (int64_t row = 0; row < p->nl; row++) {
        int ones = 0;
        for (int64_t j = 0; j < p->Lkv; j++) {
            float w = r->w[row * p->Lkv + j];
            assert_true(w == 0.0f || w == 1.0f);
            ones += w == 1.0f;
        }
        assert_true(ones == 1 || (ones == 0 && r->lse[row] == -INFINITY));
        hot += ones;
    }
    return hot;
}

/* Within each row the visible weights are bitwise equal. */
static void expect_uniform_rows(const ru_sdpa *p, const ru_out *r, const ru_ref *d)
{
    for (int64_t row = 0; row < p->nl; row++) {
        float first = -1.0f;
        for (int64_t j = 0; j < p->Lkv; j++) {
            if (d->w[row * p->Lkv + j] == 0.0)
                continue;
            float w = r->w[row * p->Lkv + j];
            if (first < 0.0f)
                first = w;
            assert_true(ru_same_float(w, first));
        }
    }
}

/* A hard maximum: in each non-empty row the nonzero weights are bitwise
 * equal (the m keys tied at the maximum logit, usually one) and sum to 1. */
static void expect_hard_max(const ru_sdpa *p, const ru_out *r)
{
    for (int64_t row = 0; row < p->nl; row++) {
        float w0 = 0.0f;
        int m = 0;
        for (int64_t j = 0; j < p->Lkv; j++) {
            float w = r->w[row * p->Lkv + j];
            if (w == 0.0f)
                continue;
            if (m++ == 0)
                w0 = w;
            assert_true(ru_same_float(w, w0));
        }
        assert_true(m > 0 || r->lse[row] == -INFINITY);
        if (m > 0)
            assert_true(fabs((double)w0 * m - 1.0) <= 1e-6);
    }
}

/* ---- logits around ±1e30 ------------------------------------------------- */

/* x = round(8x)/8 · factor (factor a power of two): q·k sums products of
 * multiples of 1/64 exactly in float, so the library's logits differ from
 * the reference's by one rounding of the scale's product, not by a float
 * dot product's cancellation, which at 1e30 would be ~1e25. */
static void quantize(float *x, int64_t n, float factor)
{
    for (int64_t i = 0; i < n; i++)
        x[i] = roundf(x[i] * 8.0f) / 8.0f * factor;
}

static void test_logits_1e30_from_the_scale(void **state)
{
    (void)state;
    /* ±2^100 ≈ ±1.27e30, a power of two: exact however the GEMM applies it.
     * (oneDNN scales A by alpha as it packs it: with ±1e30 a true logit of
     * 0 came out as ~3e23, the rounding of 1e30·q, within any GEMM's error
     * bound but no longer the exact tie the reference has.) */
    static const float scales[2] = {0x1p100f, -0x1p100f};
    static const int64_t len[3] = {9, 4, 1};
    float bias[12];
    tu_rng rng;
    tu_rng_seed(&rng, 30);
    tu_fill_normal(&rng, bias, 12, 0.0f, 1.0f);
    for (int s = 0; s < 2; s++)
        for (int layout = 0; layout < 2; layout++)
            for (int causal = 0; causal < 2; causal++) {
                ru_sdpa p;
                ru_out r;
                ru_ref d;
                ru_sdpa_init(&p, 3, 4, 2, 70, 12, 8, 5, (attn_layout)layout,
                             (attn_causal)causal, scales[s], 31 + (uint64_t)(4 * s + layout));
                quantize(p.q, p.nq, 1.0f), quantize(p.k, p.nk, 1.0f);
                assert_int_equal(ru_sdpa_lengths(&p, len, 0), ATTN_OK);
                assert_int_equal(ru_sdpa_bias(&p, bias, 1, 1, 1), ATTN_OK);
                check(&p, "scale ±1e30", &r, &d);
                expect_hard_max(&p, &r);
                for (int64_t x = 0; x < p.nl; x++)
                    assert_false(isnan(r.lse[x]));
                ru_out_free(&r), ru_ref_free(&d), ru_sdpa_free(&p);
            }
}

static void test_logits_1e30_from_the_data(void **state)
{
    (void)state;
    for (int sign = 0; sign < 2; sign++) {
        ru_sdpa p;
        ru_out r;
        ru_ref d;
        ru_sdpa_init(&p, 2, 2, 1, 9, 16, 4, 3, ATTN_LAYOUT_BSHD, ATTN_CAUSAL_NONE, 1.0f,
                     40 + (uint64_t)sign);
        /* entries ~2^50 ≈ 1.1e15: |q·k| up to ~4e30 */
        quantize(p.q, p.nq, sign ? -0x1p50f : 0x1p50f);
        quantize(p.k, p.nk, 0x1p50f);
        check(&p, "q, k ~ 1e15", &r, &d);
        expect_hard_max(&p, &r);
        assert_int_equal(tu_count_nonfinite(r.out, p.no), 0);
        ru_out_free(&r), ru_ref_free(&d), ru_sdpa_free(&p);
    }
}

/* ---- finite biases of ±1e30 and -FLT_MAX ----------------------------------- */

static void test_huge_finite_biases(void **state)
{
    (void)state;
    enum { B = 2, H = 3, LQ = 6, LKV = 10 };
    static float bias[B * H * LQ * LKV];
    static const float masks[2] = {-1e30f, -FLT_MAX};
    tu_rng rng;
    tu_rng_seed(&rng, 50);
    for (int m = 0; m < 2; m++) {
        /* (a) all keys but one per row at the finite mask value: one-hot */
        for (int64_t row = 0; row < B * H * LQ; row++) {
            int64_t keep = tu_randint(&rng, 0, LKV - 1);
            for (int64_t j = 0; j < LKV; j++)
                bias[row * LKV + j] = j == keep ? 0.0f : masks[m];
        }
        ru_sdpa p;
        ru_out r;
        ru_ref d;
        ru_sdpa_init(&p, B, H, H, LQ, LKV, 8, 4, ATTN_LAYOUT_BHSD, 0, 0.0f, 51);
        assert_int_equal(ru_sdpa_bias(&p, bias, B, H, LQ), ATTN_OK);
        check(&p, "finite mask on all keys but one", &r, &d);
        assert_int_equal(expect_one_hot(&p, &r), p.nl);
        ru_out_free(&r), ru_ref_free(&d), ru_sdpa_free(&p);

        /* (b) every key at the mask value: the logits are absorbed, uniform */
        for (int64_t x = 0; x < B * H * LQ * LKV; x++)
            bias[x] = masks[m];
        ru_sdpa_init(&p, B, H, H, LQ, LKV, 8, 4, ATTN_LAYOUT_BHSD, 0, 0.0f, 52);
        assert_int_equal(ru_sdpa_bias(&p, bias, B, H, LQ), ATTN_OK);
        check(&p, "finite mask on every key", &r, &d);
        expect_uniform_rows(&p, &r, &d);
        ru_out_free(&r), ru_ref_free(&d), ru_sdpa_free(&p);
    }
    /* (c) +1e30 on keys 2 and 7: half the weight each */
    for (int64_t x = 0; x < B * H * LQ * LKV; x++)
        bias[x] = (x % LKV == 2 || x % LKV == 7) ? 1e30f : (float)tu_normal(&rng);
    ru_sdpa p;
    ru_out r;
    ru_ref d;
    ru_sdpa_init(&p, B, H, 1, LQ, LKV, 8, 4, ATTN_LAYOUT_BSHD, 0, 0.0f, 53);
    assert_int_equal(ru_sdpa_bias(&p, bias, B, H, LQ), ATTN_OK);
    check(&p, "+1e30 on two keys", &r, &d);
    for (int64_t x = 0; x < p.nw; x++)
        assert_true(r.w[x] == ((x % LKV == 2 || x % LKV == 7) ? 0.5f : 0.0f));
    ru_out_free(&r), ru_ref_free(&d), ru_sdpa_free(&p);
}

/* ---- all-equal logits -------------------------------------------------------- */

static void test_all_equal_logits(void **state)
{
    (void)state;
    /* constant bias c over q = 0: every logit is exactly c */
    static const float consts[] = {1e30f, -1e30f, -FLT_MAX, 87.0f, -87.0f, 1e-30f, 0.0f};
    for (size_t c = 0; c < sizeof consts / sizeof consts[0]; c++) {
        float bias[13];
        for (int j = 0; j < 13; j++)
            bias[j] = consts[c];
        ru_sdpa p;
        ru_out r;
        ru_ref d;
        ru_sdpa_init(&p, 2, 2, 2, 5, 13, 6, 3, ATTN_LAYOUT_BHSD, 0, 0.0f, 60 + c);
        memset(p.q, 0, (size_t)p.nq * sizeof *p.q);
        assert_int_equal(ru_sdpa_bias(&p, bias, 1, 1, 1), ATTN_OK);
        check(&p, "constant logits", &r, &d);
        expect_uniform_rows(&p, &r, &d);
        for (int64_t x = 0; x < p.nl; x++) /* c + log 13 (c absorbs it when huge) */
            assert_true(fabs(r.lse[x] - ((double)consts[c] + log(13.0))) <=
                        TOL * (fabs((double)consts[c]) + 1.0));
        ru_out_free(&r), ru_ref_free(&d), ru_sdpa_free(&p);
    }
    /* scale 0: every logit is exactly 0; 1000 keys, per-query lengths */
    {
        enum { LQ = 7, LKV = 1000 };
        int64_t len[2 * LQ];
        tu_rng rng;
        tu_rng_seed(&rng, 70);
        for (int x = 0; x < 2 * LQ; x++)
            len[x] = tu_randint(&rng, 1, LKV);
        ru_sdpa p;
        ru_out r;
        ru_ref d;
        ru_sdpa_init(&p, 2, 3, 1, LQ, LKV, 5, 4, ATTN_LAYOUT_BSHD, 0, 0.0f, 71);
        /* ru_sdpa's scale 0 means the default: set 0 on the op itself */
        attn_context *ctx = NULL;
        attn_sdpa *op = NULL;
        assert_int_equal(attn_context_create(&ctx), ATTN_OK);
        assert_int_equal(ru_sdpa_make_op(&p, &op), ATTN_OK);
        assert_int_equal(attn_sdpa_set_scale(op, 0.0f), ATTN_OK);
        assert_int_equal(ru_sdpa_lengths(&p, len, 1), ATTN_OK);
        assert_int_equal(ru_sdpa_run_on(ctx, op, &p, &r), ATTN_OK);
        ref_shape s = {p.B, p.Hq, p.Hkv, p.Lq, p.Lkv, p.D, p.Dv, REF_BSHD, 0, 0.0, NULL};
        d.out = ru_doubles(p.no), d.w = ru_doubles(p.nw), d.lse = ru_doubles(p.nl);
        assert_int_equal(ref_sdpa(&s, p.q, p.k, p.v, &p.rm, d.out, d.w, d.lse), 0);
        assert_true(ru_close("scale 0, 1000 keys: out", r.out, d.out, p.no, p.Dv, TOL));
        assert_true(ru_close("scale 0, 1000 keys: weights", r.w, d.w, p.nw, p.Lkv, TOL));
        assert_true(ru_close("scale 0, 1000 keys: lse", r.lse, d.lse, p.nl, 0, TOL));
        expect_uniform_rows(&p, &r, &d);
        attn_sdpa_destroy(op);
        attn_context_destroy(ctx);
        ru_out_free(&r), ru_ref_free(&d), ru_sdpa_free(&p);
        cases_checked++;
    }
    /* identical keys at logits of ±1e30. Each query has one nonzero entry,
     * so that every logit of a row is one product q·k: exact ties whatever
     * order the GEMM sums in. (With full queries BLIS's edge kernel sums the
     * last column in another order than the others: 1-ulp differences, which
     * ±1e30 turns into one key taking all the weight.) */
    for (int sign = 0; sign < 2; sign++) {
        ru_sdpa p;
        ru_out r;
        ru_ref d;
        ru_sdpa_init(&p, 2, 2, 2, 66, 9, 4, 3, ATTN_LAYOUT_BHSD, ATTN_CAUSAL_NONE,
                     sign ? -1e30f : 1e30f, 80);
        for (int64_t x = 0; x < p.nk; x++)
            p.k[x] = p.k[x % p.D];
        for (int64_t x = 0; x < p.nq; x++)
            if (x % p.D != 0)
                p.q[x] = 0.0f;
        check(&p, "identical keys, logits ±1e30", &r, &d);
        expect_uniform_rows(&p, &r, &d);
        ru_out_free(&r), ru_ref_free(&d), ru_sdpa_free(&p);
    }
}

/* ---- -INFINITY bias on every key but one ---------------------------------------- */

static void test_neg_inf_bias_on_all_keys_but_one(void **state)
{
    (void)state;
    enum { B = 3, H = 4, HKV = 2, LQ = 67, LKV = 11 };
    static float bias[B * H * LQ * LKV];
    static int64_t only[B * H * LQ], len[B * LQ];
    tu_rng rng;
    tu_rng_seed(&rng, 90);
    for (int64_t row = 0; row < B * H * LQ; row++) {
        only[row] = tu_randint(&rng, 0, LKV - 1);
        for (int64_t j = 0; j < LKV; j++)
            bias[row * LKV + j] = j == only[row] ? (float)tu_normal(&rng) : -INFINITY;
    }
    for (int64_t x = 0; x < B * LQ; x++) /* hides the one key of some rows */
        len[x] = tu_randint(&rng, 0, LKV);
    static const float scales[3] = {0.0f, 1e30f, -1e30f};
    for (int s = 0; s < 3; s++)
        for (int with_len = 0; with_len < 2; with_len++) {
            ru_sdpa p;
            ru_out r;
            ru_ref d;
            ru_sdpa_init(&p, B, H, HKV, LQ, LKV, 6, 5, (attn_layout)(s % 2), ATTN_CAUSAL_NONE,
                         scales[s], 91 + (uint64_t)s);
            quantize(p.q, p.nq, 1.0f), quantize(p.k, p.nk, 1.0f);
            assert_int_equal(ru_sdpa_bias(&p, bias, B, H, LQ), ATTN_OK);
            if (with_len)
                assert_int_equal(ru_sdpa_lengths(&p, len, 1), ATTN_OK);
            check(&p, "-inf bias on all keys but one", &r, &d);
            int64_t hot = expect_one_hot(&p, &r), want = 0;
            for (int64_t b = 0; b < B; b++)
                for (int64_t h = 0; h < H; h++)
                    for (int64_t i = 0; i < LQ; i++) {
                        int64_t row = (b * H + h) * LQ + i, j = only[row];
                        int seen = !with_len || j < len[b * LQ + i];
                        want += seen;
                        const float *o = r.out + ru_out_row(&p, b, h, i);
                        for (int64_t e = 0; e < p.Dv; e++) {
                            float v = p.v[ref_index((int)p.layout, HKV, LKV, p.Dv, b,
                                                    h / (H / HKV), j, e)];
                            assert_true(ru_same_float(o[e], seen ? v : 0.0f));
                        }
                    }
            assert_int_equal(hot, want);
            ru_out_free(&r), ru_ref_free(&d), ru_sdpa_free(&p);
        }
}

static void test_neg_inf_bias_all_but_one_in_the_layers(void **state)
{
    (void)state;
    enum { B = 2, E = 12, NH = 3, NKV = 1, KD = 7, VD = 5, LQ = 9, LKV = 8 };
    enum { AQ = 4, AK = 6, AH = 10, DV = 3 };
    static float bias[B * NH * LQ * LKV];
    tu_rng rng;
    tu_rng_seed(&rng, 100);
    for (int64_t row = 0; row < B * NH * LQ; row++) {
        int64_t keep = tu_randint(&rng, 0, LKV - 1);
        for (int64_t j = 0; j < LKV; j++)
            bias[row * LKV + j] = j == keep ? 0.5f : -INFINITY;
    }
    ref_mask rm = {.bias = bias, .bias_b = B, .bias_h = NH, .bias_q = LQ};
    attn_mask *mask = NULL;
    attn_context *ctx = NULL;
    assert_int_equal(attn_mask_create(&mask), ATTN_OK);
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    assert_int_equal(attn_mask_set_bias(mask, bias, B, NH, LQ, LKV), ATTN_OK);

    /* MHA */
    int64_t kvd = E / NH * NKV;
    float *w[4], *bb[4];
    const int64_t wsz[4] = {E * E, kvd * KD, kvd * VD, E * E}, bsz[4] = {E, kvd, kvd, E};
    for (int x = 0; x < 4; x++) {
        w[x] = ru_floats(wsz[x]), bb[x] = ru_floats(bsz[x]);
        tu_fill_uniform(&rng, w[x], (size_t)wsz[x], -0.5f, 0.5f);
        tu_fill_uniform(&rng, bb[x], (size_t)bsz[x], -0.5f, 0.5f);
    }
    float *q = ru_floats(B * LQ * E), *k = ru_floats(B * LKV * KD), *v = ru_floats(B * LKV * VD);
    tu_fill_normal(&rng, q, B * LQ * E, 0.0f, 1.0f);
    tu_fill_normal(&rng, k, B * LKV * KD, 0.0f, 1.0f);
    tu_fill_normal(&rng, v, B * LKV * VD, 0.0f, 1.0f);
    attn_mha *mha = NULL;
    assert_int_equal(attn_mha_create(&mha, E, NH, NKV, KD, VD, 1), ATTN_OK);
    for (int x = 0; x < 4; x++)
        assert_int_equal(attn_mha_set_weights(mha, (attn_proj)x, w[x], bb[x]), ATTN_OK);
    float *out = ru_floats(B * LQ * E), *wts = ru_floats(B * NH * LQ * LKV);
    assert_int_equal(attn_mha_forward(ctx, mha, B, LQ, LKV, q, k, v, mask, out, wts), ATTN_OK);
    ru_mha m = {E, NH, NKV, KD, VD, ATTN_CAUSAL_NONE, {w[0], w[1], w[2], w[3]},
                {bb[0], bb[1], bb[2], bb[3]}, NULL, 0, 0, 0.0};
    double *rout = ru_doubles(B * LQ * E), *rw = ru_doubles(B * NH * LQ * LKV);
    ru_ref_mha(&m, B, LQ, LKV, q, k, v, &rm, rout, rw);
    assert_true(ru_close("mha: out", out, rout, B * LQ * E, E, TOL));
    assert_true(ru_close("mha: weights", wts, rw, B * NH * LQ * LKV, LKV, TOL));
    for (int64_t x = 0; x < B * NH * LQ * LKV; x++)
        assert_true(wts[x] == (bias[x] == -INFINITY ? 0.0f : 1.0f));
    attn_mha_destroy(mha);
    free(out), free(wts), free(rout), free(rw), free(q), free(k), free(v);
    for (int x = 0; x < 4; x++)
        free(w[x]), free(bb[x]);

    /* additive: heads dim 1, so the first head's rows of the bias */
    attn_mask_destroy(mask);
    assert_int_equal(attn_mask_create(&mask), ATTN_OK);
    assert_int_equal(attn_mask_set_bias(mask, bias, B, 1, LQ, LKV), ATTN_OK);
    ref_mask ra = {.bias = bias, .bias_b = B, .bias_h = 1, .bias_q = LQ};
    /* with bias_h = 1 the rows [b][0][i] are read at b * LQ + i: the same
     * arrays, reinterpreted as [B, 1, LQ, LKV] — the first B·LQ rows */
    float *wq = ru_floats(AH * AQ), *wk = ru_floats(AH * AK), *wv = ru_floats(AH);
    tu_fill_normal(&rng, wq, AH * AQ, 0.0f, 1.0f);
    tu_fill_normal(&rng, wk, AH * AK, 0.0f, 1.0f);
    tu_fill_normal(&rng, wv, AH, 0.0f, 1.0f);
    q = ru_floats(B * LQ * AQ), k = ru_floats(B * LKV * AK), v = ru_floats(B * LKV * DV);
    tu_fill_normal(&rng, q, B * LQ * AQ, 0.0f, 1.0f);
    tu_fill_normal(&rng, k, B * LKV * AK, 0.0f, 1.0f);
    tu_fill_normal(&rng, v, B * LKV * DV, 0.0f, 1.0f);
    attn_additive *add = NULL;
    assert_int_equal(attn_additive_create(&add, AQ, AK, AH), ATTN_OK);
    assert_int_equal(attn_additive_set_weights(add, wq, wk, wv), ATTN_OK);
    out = ru_floats(B * LQ * DV), wts = ru_floats(B * LQ * LKV);
    assert_int_equal(attn_additive_forward(ctx, add, B, LQ, LKV, DV, q, k, v, mask, out, wts),
                     ATTN_OK);
    ru_additive a = {AQ, AK, AH, wq, wk, wv};
    rout = ru_doubles(B * LQ * DV), rw = ru_doubles(B * LQ * LKV);
    ru_ref_additive(&a, B, LQ, LKV, DV, q, k, v, &ra, rout, rw);
    assert_true(ru_close("additive: out", out, rout, B * LQ * DV, DV, TOL));
    assert_true(ru_close("additive: weights", wts, rw, B * LQ * LKV, LKV, TOL));
    for (int64_t x = 0; x < B * LQ * LKV; x++)
        assert_true(wts[x] == (bias[x] == -INFINITY ? 0.0f : 1.0f));
    attn_additive_destroy(add);
    free(out), free(wts), free(rout), free(rw), free(q), free(k), free(v);
    free(wq), free(wk), free(wv);
    attn_mask_destroy(mask);
    attn_context_destroy(ctx);
    cases_checked += 2;
}

/* ---- subnormal inputs ------------------------------------------------------------ */

/* |a - r| <= TOL·(|r| + rowmax|r|) + n_terms · 2^-149: the normalized error,
 * plus the spacing of subnormals for each rounded term of a sum. */
static void expect_close_subnormal(const char *what, const float *a, const double *r, int64_t n,
                                   int64_t row_len, int64_t n_terms)
{
    const double spacing = ldexp(1.0, -149);
    for (int64_t r0 = 0; r0 < n; r0 += row_len) {
        double rowmax = 0.0;
        for (int64_t x = r0; x < r0 + row_len; x++)
            rowmax = fmax(rowmax, fabs(r[x]));
        for (int64_t x = r0; x < r0 + row_len; x++) {
            double lim = TOL * (fabs(r[x]) + rowmax) + (double)n_terms * spacing;
            if (!(fabs((double)a[x] - r[x]) <= lim))
                fail_msg("%s: element %lld: libattn %.9g, reference %.9g (limit %.3g)", what,
                         (long long)x, (double)a[x], r[x], lim);
        }
    }
}

static void test_subnormal_inputs(void **state)
{
    (void)state;
    enum { B = 2, H = 2, LQ = 5, LKV = 9, D = 6, DV = 4 };
    static const int64_t len[B] = {9, 3};
    for (int what = 0; what < 5; what++) {
        ru_sdpa p;
        ru_out r;
        ru_ref d;
        /* 0: q and k subnormal; 1: v subnormal; 2: everything subnormal;
         * 3: scale subnormal; 4: bias subnormal */
        float scale = what == 3 ? 1e-40f : 0.0f;
        ru_sdpa_init(&p, B, H, 1, LQ, LKV, D, DV, ATTN_LAYOUT_BHSD, 0, scale, 110 + what);
        assert_true(fpclassify(1e-40f) == FP_SUBNORMAL);
        if (what == 0 || what == 2) {
            for (int64_t x = 0; x < p.nq; x++)
                p.q[x] *= 1e-39f;
            for (int64_t x = 0; x < p.nk; x++)
                p.k[x] *= 1e-39f;
        }
        if (what == 1 || what == 2)
            for (int64_t x = 0; x < p.nv; x++)
                p.v[x] *= 1e-39f;
        float bias[LKV];
        for (int j = 0; j < LKV; j++)
            bias[j] = (float)(j + 1) * 1e-41f;
        if (what == 4)
            assert_int_equal(ru_sdpa_bias(&p, bias, 1, 1, 1), ATTN_OK);
        assert_int_equal(ru_sdpa_lengths(&p, len, 0), ATTN_OK);
        assert_int_equal(ru_sdpa_run(&p, 1, &r), ATTN_OK);
        assert_int_equal(ru_sdpa_ref(&p, &d), 0);
        assert_int_equal(tu_count_nonfinite(r.out, p.no), 0);
        assert_int_equal(tu_count_nonfinite(r.w, p.nw), 0);
        expect_close_subnormal("subnormal: out", r.out, d.out, p.no, DV, LKV + 1);
        assert_true(ru_close("subnormal: weights", r.w, d.w, p.nw, LKV, TOL));
        assert_true(ru_close("subnormal: lse", r.lse, d.lse, p.nl, 0, TOL));
        if (what == 1 || what == 2) { /* outputs are subnormal, not flushed to 0 */
            int64_t subnormal = 0;
            for (int64_t x = 0; x < p.no; x++)
                subnormal += fpclassify(r.out[x]) == FP_SUBNORMAL;
            assert_true(subnormal > p.no / 2);
        }
        ru_out_free(&r), ru_ref_free(&d), ru_sdpa_free(&p);
        cases_checked++;
    }
    /* The calling thread still has gradual underflow: libattn changed
     * neither flush-to-zero nor denormals-are-zero. */
    volatile float tiny = 1e-38f, sub = 1e-40f;
    assert_true(tiny / 16.0f != 0.0f);
    assert_true(sub * 1.0f != 0.0f);
    assert_true(fpclassify(tiny / 16.0f) == FP_SUBNORMAL);
}

/* ---- Nadaraya–Watson far from every key ------------------------------------------- */

/* attn.h: "The row maximum is subtracted, so queries far from every key do
 * not underflow to NaN". Far enough that the float square ((x − x_i)·w)²
 * overflows (|(x − x_i)·w| > 1.8e19), every logit of the row would be −Inf
 * — a row with no visible key — while the float64 reference gives the
 * nearest key all the weight. Each case's differences are exact in float. */
static void test_nadaraya_watson_far_from_every_key(void **state)
{
    (void)state;
    static const struct {
        float q, w;
        float keys[3], values[3];
    } cases[] = {
        {0.0f, 1e20f, {1.0f, 2.0f, 4.0f}, {5.0f, 7.0f, 11.0f}},       /* w huge */
        {3e19f, 1.0f, {0.0f, 1e19f, -1e19f}, {5.0f, 7.0f, 11.0f}},    /* x far */
        {-4e19f, 0.5f, {0.0f, -1e19f, 2e19f}, {-1.0f, 3.0f, 2.0f}},
        {0.0f, 1e19f, {1.0f, 2.0f, 4.0f}, {5.0f, 7.0f, 11.0f}},       /* just below */
    };
    attn_context *ctx = NULL;
    assert_int_equal(attn_context_create(&ctx), ATTN_OK);
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        float out = NAN, w[3] = {NAN, NAN, NAN};
        assert_int_equal(attn_nadaraya_watson(ctx, 1, 3, &cases[c].q, cases[c].keys,
                                              cases[c].values, cases[c].w, &out, w),
                         ATTN_OK);
        /* float64 reference: −((x − x_i)·w)²/2, max subtracted */
        double l[3], m = -INFINITY, sum = 0.0, ref_out = 0.0, ref_w[3];
        for (int j = 0; j < 3; j++) {
            double d = ((double)cases[c].q - cases[c].keys[j]) * cases[c].w;
            l[j] = -0.5 * d * d;
            m = fmax(m, l[j]);
        }
        for (int j = 0; j < 3; j++)
            sum += exp(l[j] - m);
        for (int j = 0; j < 3; j++) {
            ref_w[j] = exp(l[j] - m) / sum;
            ref_out += ref_w[j] * cases[c].values[j];
        }
        char what[96];
        snprintf(what, sizeof what, "nadaraya-watson x %g, w %g: out", (double)cases[c].q,
                 (double)cases[c].w);
        assert_true(ru_close(what, &out, &ref_out, 1, 1, TOL));
        snprintf(what, sizeof what, "nadaraya-watson x %g, w %g: weights", (double)cases[c].q,
                 (double)cases[c].w);
        assert_true(ru_close(what, w, ref_w, 3, 3, TOL));
        cases_checked++;
    }
    attn_context_destroy(ctx);
}

static int report(void **state)
{
    (void)state;
    print_message("numeric-edges: %lld cases agree with the float64 reference (tol %g), "
                  "1 and 2 threads bitwise equal\n",
                  (long long)cases_checked, TOL);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_logits_1e30_from_the_scale),
        cmocka_unit_test(test_logits_1e30_from_the_data),
        cmocka_unit_test(test_huge_finite_biases),
        cmocka_unit_test(test_all_equal_logits),
        cmocka_unit_test(test_neg_inf_bias_on_all_keys_but_one),
        cmocka_unit_test(test_neg_inf_bias_all_but_one_in_the_layers),
        cmocka_unit_test(test_subnormal_inputs),
        cmocka_unit_test(test_nadaraya_watson_far_from_every_key),
    };
    return cmocka_run_group_tests_name("numeric_edges", tests, NULL, report);
}
